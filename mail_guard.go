package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// Bounds on what outsiders can make inbound mail cost (SECURITY.md, DESIGN §5.1): how many
// messages are read and parsed at once across the SMTP receiver and the HTTP endpoints (a 25 MB
// message costs several times that while parsed), for how long one body may take to arrive, and
// how many deliveries one sender address or client address may make per hour.

const (
	// inboundParsesPerAddr is how many of the parse places one client address may hold, so a
	// few slow senders cannot take them all.
	inboundParsesPerAddr = 2
	// inboundParseWait is how long a message waits for a place before it is told to come back
	// (HTTP 503, SMTP 451): mail servers retry.
	inboundParseWait = 5 * time.Second
	// inboundBodyTimeout is how long one HTTP body may take to arrive, whole.
	inboundBodyTimeout = 60 * time.Second
	// smtpDataTimeout is how long one SMTP message (DATA or every BDAT chunk) may take, whole.
	smtpDataTimeout = 3 * time.Minute
	// smtpSessionLifetime is how long one SMTP connection may stay open, whatever it does.
	smtpSessionLifetime = 10 * time.Minute
)

// inboundGuard is one instance's admission of inbound mail.
type inboundGuard struct {
	places  chan struct{} // parse places
	perAddr *addrCounter  // parse places held per client address
	senders *budget       // deliveries per sender address, per hour
	clients *budget       // deliveries per client address, per hour (SMTP)

	bodyTimeout time.Duration
	dataTimeout time.Duration

	reading atomic.Int64 // messages being read or parsed now
	peak    atomic.Int64 // the most read or parsed at once
	busy    atomic.Int64 // messages told to come back because every place was taken
	cutOff  atomic.Int64 // bodies cut off at their deadline
}

func newInboundGuard(cfg Config) *inboundGuard {
	g := &inboundGuard{
		places:      make(chan struct{}, max(cfg.InboundParses, 1)),
		perAddr:     newAddrCounter(inboundParsesPerAddr),
		senders:     newBudget(cfg.InboundPerHour, time.Hour),
		clients:     newBudget(cfg.InboundPerHour*5, time.Hour),
		bodyTimeout: inboundBodyTimeout,
		dataTimeout: smtpDataTimeout,
	}
	if cfg.inboundBodyTimeout > 0 {
		g.bodyTimeout, g.dataTimeout = cfg.inboundBodyTimeout, cfg.inboundBodyTimeout
	}
	return g
}

// enter takes a parse place for a message from addr ("" for an authenticated webhook), waiting
// up to inboundParseWait; release must be called when it returns true.
func (g *inboundGuard) enter(ctx context.Context, addr string) bool {
	if addr != "" && !g.perAddr.acquire(addr) {
		g.busy.Add(1)
		return false
	}
	t := time.NewTimer(inboundParseWait)
	defer t.Stop()
	select {
	case g.places <- struct{}{}:
		n := g.reading.Add(1)
		for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
		}
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	if addr != "" {
		g.perAddr.release(addr)
	}
	g.busy.Add(1)
	return false
}

func (g *inboundGuard) leave(addr string) {
	g.reading.Add(-1)
	<-g.places
	if addr != "" {
		g.perAddr.release(addr)
	}
}

// allowSender spends n deliveries of the sender address's and (if known) the client address's
// hourly budgets; false when either is spent.
func (g *inboundGuard) allowSender(sender, client string, n int) bool {
	if s := strings.ToLower(strings.TrimSpace(sender)); s != "" && !g.senders.spend(s, n) {
		return false
	}
	return client == "" || g.clients.spend(client, n)
}

// SMTP connections are counted when accepted, before a word is said (go-smtp opens a session
// only at EHLO): at most smtpConnsPerAddr per client address and -smtp-max-conns in all, each
// closed after its lifetime.

// smtpListener admits connections within the caps; the rest hear 421 and are closed.
type smtpListener struct {
	net.Listener
	perAddr  *addrCounter
	total    atomic.Int64
	max      int64
	lifetime time.Duration
	refused  atomic.Int64
}

func newSMTPListener(ln net.Listener, cfg Config) *smtpListener {
	l := &smtpListener{Listener: ln, perAddr: newAddrCounter(smtpConnsPerAddr),
		max: int64(cfg.SMTPMaxConns), lifetime: smtpSessionLifetime}
	if cfg.smtpLifetime > 0 {
		l.lifetime = cfg.smtpLifetime
	}
	return l
}

const smtpBusyReply = "421 4.7.0 Too many connections, try again later\r\n"

func (l *smtpListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := addrKey(c.RemoteAddr().String())
		if !l.admit(key) {
			l.refused.Add(1)
			go refuseSMTP(c)
			continue
		}
		sc := &smtpConn{Conn: c}
		sc.release = func() { l.total.Add(-1); l.perAddr.release(key) }
		sc.timer = time.AfterFunc(l.lifetime, func() { _ = sc.Close() })
		return sc, nil
	}
}

// admit counts one more connection from key unless a cap is reached.
func (l *smtpListener) admit(key string) bool {
	if l.max > 0 && l.total.Add(1) > l.max {
		l.total.Add(-1)
		return false
	} else if l.max <= 0 {
		l.total.Add(1)
	}
	if !l.perAddr.acquire(key) {
		l.total.Add(-1)
		return false
	}
	return true
}

// open is how many connections are counted now.
func (l *smtpListener) open() int64 { return l.total.Load() }

// refuseSMTP tells a connection over the caps why, briefly, and closes it.
func refuseSMTP(c net.Conn) {
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte(smtpBusyReply))
	_ = c.Close()
}

// smtpConn is an admitted connection: closing it (once) gives its place back.
type smtpConn struct {
	net.Conn
	once    sync.Once
	release func()
	timer   *time.Timer
}

// NetConn is the accepted connection, so that a session can half-close it (hangUp).
func (c *smtpConn) NetConn() net.Conn { return c.Conn }

func (c *smtpConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.timer.Stop()
		c.release()
	})
	return err
}

// Why inbound mail is refused, each with its SMTP and HTTP answer.
var (
	errInboundBusy   = errors.New("the server is busy; try again later")
	errSenderRate    = errors.New("too many messages from this sender; try again later")
	errTooManyRcpts  = fmt.Errorf("at most %d recipients per message", maxMailRcpts)
	errMailboxFull   = errors.New("the recipient's mailbox is full")
	errSpoofedDomain = errors.New("the From address is in this server's own domain but did not pass SPF or DKIM")
	errBodyTimeout   = errors.New("the message took too long to arrive")
)

// smtpErrorFor is the SMTP reply for an inbound refusal (nil for others).
func smtpErrorFor(err error) *smtp.SMTPError {
	switch {
	case errors.Is(err, errInboundBusy):
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "Busy, try again later"}
	case errors.Is(err, errSenderRate):
		return &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Too many messages from this sender, try again later"}
	case errors.Is(err, errTooManyRcpts):
		return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 5, 3}, Message: "Too many recipients"}
	case errors.Is(err, errMailboxFull):
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "Mailbox full"}
	case errors.Is(err, errSpoofedDomain):
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 26}, Message: "From in our own domain failed SPF and DKIM"}
	}
	return nil
}

// httpStatusFor is the HTTP status for an inbound refusal (0 for others).
func httpStatusFor(err error) int {
	switch {
	case errors.Is(err, errInboundBusy):
		return http.StatusServiceUnavailable
	case errors.Is(err, errSenderRate):
		return http.StatusTooManyRequests
	case errors.Is(err, errTooManyRcpts):
		return http.StatusBadRequest
	case errors.Is(err, errMailboxFull):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errSpoofedDomain):
		return http.StatusForbidden
	case errors.Is(err, errBodyTimeout):
		return http.StatusRequestTimeout
	}
	return 0
}

// admitMessage is the checks every way in makes once a message is parsed and its sender
// verified: its own domain must verify, and the sender must be within its rate.
func (db *Database) admitMessage(p *parsedMail, rcpts int, sender, client string) error {
	if rcpts > maxMailRcpts {
		return errTooManyRcpts
	}
	if db.claimsOwnDomain(p) && !p.auth.verified {
		slog.Warn("refusing inbound mail claiming our own domain", "from", truncate(p.from, 80), "auth", p.auth.String(), "client", client)
		return errSpoofedDomain
	}
	if !db.inbound.allowSender(sender, client, rcpts) {
		return errSenderRate
	}
	return nil
}
