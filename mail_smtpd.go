package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// The built-in SMTP receiver (-smtp-listen), on emersion/go-smtp's server: it takes mail only
// for the mail domain's users and SMS reply addresses (550 at RCPT for anything else), at
// most 25 MB a message and 50 recipients. Connections are counted when accepted (8 per client
// address, -smtp-max-conns in all) and live at most smtpSessionLifetime; a message is read only
// in one of the parse places (mail_guard.go) and within smtpDataTimeout (DESIGN §5.1).
// Unknown recipients are limited per connection and per address, so that RCPT is no cheaper a
// way than CheckUsername to list the users.

const (
	smtpConnsPerAddr = 8
	smtpMaxRcpts     = maxMailRcpts
	smtpTimeout      = 60 * time.Second
	// smtpUnknownPerConn unknown recipients are answered 550; the last of them also ends the
	// connection (any command still buffered is answered 421).
	smtpUnknownPerConn = 5
	// unknownRcptsPerHour unknown recipients per client address, over SMTP and the HTTP
	// inbound endpoints together; once spent, the address gets 421 (HTTP 429) for everything,
	// known recipients too, until it refills, so the answers tell nothing.
	unknownRcptsPerHour = 30
)

// smtpd is the running receiver.
type smtpd struct {
	srv  *smtp.Server
	ln   *smtpListener
	done chan struct{}
}

// startSMTP listens on -smtp-listen and serves in the background.
func (s *Server) startSMTP() error {
	if s.cfg.SMTPListen == "" {
		return nil
	}
	raw, err := net.Listen("tcp", s.cfg.SMTPListen)
	if err != nil {
		return err
	}
	d := &smtpd{ln: newSMTPListener(raw, s.cfg), done: make(chan struct{})}
	d.srv = smtp.NewServer(&smtpBackend{db: s.db, ctx: s.ctx})
	d.srv.Domain = s.cfg.MailDomain
	d.srv.MaxMessageBytes = maxInboundMail
	d.srv.MaxRecipients = smtpMaxRcpts
	d.srv.ReadTimeout, d.srv.WriteTimeout = smtpTimeout, smtpTimeout
	d.srv.ErrorLog = slogSMTPLogger{}
	s.smtpd = d
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) {
			slog.Error("SMTP receiver stopped", "err", err)
		}
	}()
	return nil
}

// stopSMTP closes the receiver and waits for it.
func (s *Server) stopSMTP() {
	if s.smtpd == nil {
		return
	}
	_ = s.smtpd.srv.Close()
	<-s.smtpd.done
}

// SMTPAddr is where the receiver listens ("" when it is off).
func (s *Server) SMTPAddr() string {
	if s.smtpd == nil {
		return ""
	}
	return s.smtpd.ln.Addr().String()
}

type slogSMTPLogger struct{}

func (slogSMTPLogger) Printf(format string, v ...any) { slog.Debug("smtp: " + format) }
func (slogSMTPLogger) Println(v ...any)               { slog.Debug("smtp", "msg", v) }

type smtpBackend struct {
	db  *Database
	ctx context.Context
}

// NewSession starts a connection's transactions (the listener has admitted it already).
func (b *smtpBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	remote := c.Conn().RemoteAddr().String()
	var ip net.IP
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		ip = net.IP(ap.Addr().Unmap().AsSlice())
	}
	return &smtpSession{b: b, c: c, key: addrKey(remote), ip: ip}, nil
}

// smtpSession is one connection's transaction state.
type smtpSession struct {
	b       *smtpBackend
	c       *smtp.Conn
	key     string // the client address, for its limits
	ip      net.IP
	from    string
	rcpts   []string
	unknown int  // unknown recipients named on this connection
	closing bool // the connection is being ended: every command is answered 421
}

var errProbing = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "Too many unknown recipients; closing"}

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.closing || !s.b.db.limits.unknownRcpts.has(s.key) {
		s.hangUp()
		return errProbing
	}
	s.from = from
	return nil
}

var errNoSuchUser = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}

// Rcpt accepts only the mail domain's users and the reply addresses of members' phones (for
// those, only from the member's gateway address: the header From is checked at DATA).
func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.closing || !s.b.db.limits.unknownRcpts.has(s.key) {
		s.hangUp()
		return errProbing
	}
	ctx, cancel := context.WithTimeout(s.b.ctx, 10*time.Second)
	defer cancel()
	t, ok, err := s.acceptable(ctx, to)
	if err != nil {
		slog.Error("SMTP: resolving a recipient", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	if !ok {
		s.b.db.metrics.mailSent("dropped")
		s.b.db.countUnknownRecipient(s.key)
		if s.unknown++; s.unknown >= smtpUnknownPerConn {
			s.hangUp()
		}
		return errNoSuchUser
	}
	if t.user != "" && s.b.db.mailboxFull(ctx, t.user) {
		return smtpErrorFor(errMailboxFull)
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

// acceptable resolves `to` and reports whether mail to it from the session's envelope sender
// is taken.
func (s *smtpSession) acceptable(ctx context.Context, to string) (mailTarget, bool, error) {
	t, ok, err := s.b.db.resolveRecipient(ctx, to)
	if err != nil || !ok || t.cid == "" {
		return t, ok, err
	}
	_, _, err = s.b.db.smsSender(ctx, t, s.from)
	if errors.Is(err, errSMSRefused) {
		slog.Info("SMTP: refusing an SMS reply", "cid", t.cid, "envelope", truncate(s.from, 80), "why", err)
		return t, false, nil
	}
	return t, err == nil, err
}

// hangUp ends the connection after the answer being written: reading stops (TCP's CloseRead),
// so go-smtp sees the end of input and closes, and commands already buffered get 421.
func (s *smtpSession) hangUp() {
	s.closing = true
	var c net.Conn = s.c.Conn()
	for {
		if cr, ok := c.(interface{ CloseRead() error }); ok {
			_ = cr.CloseRead()
			return
		}
		inner, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			_ = c.Close() // no half-close here: the answer may be lost, the connection is not kept
			return
		}
		c = inner.NetConn()
	}
}

// countUnknownRecipient spends one of key's unknown recipients ("" for none).
func (db *Database) countUnknownRecipient(key string) {
	if key != "" {
		db.limits.unknownRcpts.spend(key, 1)
	}
}

// Data reads the message in a parse place within smtpDataTimeout, parses and checks it once
// and delivers it to every accepted recipient.
func (s *smtpSession) Data(r io.Reader) error {
	if s.closing {
		return errProbing
	}
	g := s.b.db.inbound
	if !g.enter(s.b.ctx, s.key) {
		return smtpErrorFor(errInboundBusy)
	}
	defer g.leave(s.key)
	// The whole message, however it is sent (DATA, or BDAT chunks that each reset go-smtp's
	// read deadline), gets one deadline: past it the connection is closed.
	cut := time.AfterFunc(g.dataTimeout, func() { g.cutOff.Add(1); _ = s.c.Close() })
	defer cut.Stop()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(r, maxInboundMail+1)); err != nil {
		return err // go-smtp answers 552 when the message passes MaxMessageBytes
	}
	cut.Stop()
	p, err := parseMail(buf.Bytes())
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "Malformed message"}
	}
	p.envFrom, p.remote = s.from, s.key
	ctx, cancel := context.WithTimeout(s.b.ctx, 60*time.Second)
	defer cancel()
	p.auth = s.b.db.checkSender(ctx, buf.Bytes(), p, senderEvidence{ip: s.ip, helo: s.c.Hostname(), envFrom: s.from})
	buf = bytes.Buffer{} // the parsed message is all that is kept from here on
	if err := s.b.db.admitMessage(p, len(s.rcpts), s.from, s.key); err != nil {
		return smtpErrorFor(err)
	}
	err = s.b.db.quotaPrecheck(ctx, s.rcpts, p)
	if err == nil {
		_, err = s.b.db.receiveMail(ctx, s.rcpts, p, "smtp")
	}
	if err != nil {
		if e := smtpErrorFor(err); e != nil {
			return e
		}
		slog.Error("SMTP: storing inbound mail", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Try again later"}
	}
	return nil
}

func (s *smtpSession) Reset() { s.from, s.rcpts = "", nil }

func (s *smtpSession) Logout() error { return nil }

// addrKey is the per-address limit's key (IPv6 by /64, as elsewhere).
func addrKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return strings.ToLower(remote)
	}
	return limitKey(ap.Addr().Unmap())
}
