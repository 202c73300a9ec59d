// Package smtptest is a small SMTP server for tests. The program under test sends mail through
// it as its relay, and the test then checks what arrived. It speaks enough of RFC 5321 (with
// STARTTLS, AUTH PLAIN, SIZE and PIPELINING) for Go's net/smtp client and most submission
// clients, records every message it accepts, and delivers nothing.
//
// A Server listens on 127.0.0.1 only and serves each connection in its own goroutine.
package smtptest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	maxLine        = 4096             // longest command or data line, without its line ending
	maxDataDefault = 32 << 20         // DATA limit when Options.MaxSize is 0
	commandTimeout = 30 * time.Second // per read, so a stalled client cannot hold a goroutine forever
)

var (
	errLineTooLong = errors.New("smtptest: line too long")
	errQuit        = errors.New("smtptest: client quit")
)

// Message is one accepted message.
type Message struct {
	From string   // MAIL FROM address (without <>)
	To   []string // RCPT TO addresses (without <>)
	Data []byte   // the DATA content, dot-unstuffed, with CRLF line endings, without the final ".\r\n"
	Auth string   // the username given with AUTH PLAIN, "" if none
}

// Options configures a Server. The zero value accepts any mail without authentication.
type Options struct {
	Username, Password string                 // if set, AUTH PLAIN is advertised and required (MAIL before it answers 530); wrong credentials answer 535
	TLS                *tls.Config            // if set, STARTTLS is advertised and supported; the session starts over after it (RFC 3207)
	RejectRcpt         func(addr string) bool // if set and returns true, RCPT TO answers 550
	MaxSize            int                    // if > 0, advertised as SIZE and a larger DATA answers 552
}

// Server is an SMTP server on 127.0.0.1 that records every message it accepts.
type Server struct {
	opts Options
	ln   net.Listener
	wg   sync.WaitGroup // the accept loop and every connection, so Close can wait for them

	mu      sync.Mutex
	closed  bool
	conns   map[net.Conn]struct{}
	msgs    []Message
	changed chan struct{} // closed and replaced whenever a message arrives, to wake Wait
}

// Start listens on 127.0.0.1:0 and serves in the background until Close.
func Start(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ln: ln, conns: map[net.Conn]struct{}{}, changed: make(chan struct{})}
	s.wg.Go(s.serve)
	return s, nil
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Messages returns a copy of the messages received so far, oldest first.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		// Deep copies, so a test that edits what it got cannot change what later calls see.
		m.To, m.Data = slices.Clone(m.To), bytes.Clone(m.Data)
		out[i] = m
	}
	return out
}

// Wait blocks until at least n messages were received and returns them all. If ctx ends first
// it returns what did arrive with ctx's error, so a failing test can show it.
func (s *Server) Wait(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		have, changed := len(s.msgs), s.changed
		s.mu.Unlock()
		if have >= n {
			return s.Messages(), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return s.Messages(), ctx.Err()
		}
	}
}

// Close stops listening, closes open connections and waits for their goroutines to end. It is
// safe to call more than once; later calls return nil.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait() // outside the lock: the connections take it to untrack themselves
	return err
}

func (s *Server) serve() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return // the listener was closed; a loopback test server has no other errors worth retrying
		}
		if !s.track(conn) {
			conn.Close()
			return
		}
		s.wg.Go(func() {
			defer s.untrack(conn)
			(&session{srv: s, conn: conn, r: newReader(conn)}).run()
		})
	}
}

// track registers an accepted connection for Close, unless Close already ran.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

func (s *Server) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	close(s.changed)
	s.changed = make(chan struct{})
}

// session is the state of one connection.
type session struct {
	srv  *Server
	conn net.Conn // the TCP connection, or its TLS layer after STARTTLS
	r    *bufio.Reader
	tls  bool

	greeted bool   // EHLO or HELO seen
	auth    string // user authenticated with AUTH PLAIN
	inMail  bool   // MAIL accepted: a transaction is open
	from    string
	to      []string
}

// newReader sizes the buffer so that ReadSlice fails on a line longer than maxLine plus CRLF.
func newReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, maxLine+2) }

func (c *session) run() {
	err := c.reply(220, "smtptest ESMTP ready")
	for err == nil {
		err = c.command()
	}
	if errors.Is(err, errLineTooLong) {
		c.reply(500, "line too long")
		c.hangUp()
	}
}

// hangUp prepares to close a connection the server gives up on. Closing a socket with unread
// input makes the kernel send RST, which can destroy the last reply before the client reads it;
// so shut down the sending side first and discard what the client still sends, for a while.
func (c *session) hangUp() {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, io.LimitReader(c.conn, 1<<20))
}

// readLine reads one line without its line ending (a bare LF ends a line too). The deadline also bounds the reply that
// follows, in case the client stops reading.
func (c *session) readLine() (string, error) {
	c.conn.SetDeadline(time.Now().Add(commandTimeout))
	line, err := c.r.ReadSlice('\n')
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > maxLine {
		return "", errLineTooLong
	}
	return string(line), err
}

// reply sends a reply of one or more lines, all but the last marked as continued.
func (c *session) reply(code int, lines ...string) error {
	var b strings.Builder
	for _, l := range lines[:len(lines)-1] {
		fmt.Fprintf(&b, "%d-%s\r\n", code, l)
	}
	fmt.Fprintf(&b, "%d %s\r\n", code, lines[len(lines)-1])
	_, err := io.WriteString(c.conn, b.String())
	return err
}

// commands maps each verb, in upper case, to its handler, which gets the rest of the line.
var commands = map[string]func(c *session, arg string) error{
	"EHLO":     func(c *session, arg string) error { return c.hello(arg, true) },
	"HELO":     func(c *session, arg string) error { return c.hello(arg, false) },
	"STARTTLS": (*session).startTLS,
	"AUTH":     (*session).authenticate,
	"MAIL":     (*session).mail,
	"RCPT":     (*session).rcpt,
	"DATA":     (*session).data,
	"RSET":     func(c *session, _ string) error { c.reset(); return c.reply(250, "OK") },
	"NOOP":     func(c *session, _ string) error { return c.reply(250, "OK") },
	"QUIT":     func(c *session, _ string) error { c.reply(221, "bye"); return errQuit },
}

// command reads and handles one command. A non-nil error ends the session.
func (c *session) command() error {
	line, err := c.readLine()
	if err != nil {
		return err
	}
	verb, arg, _ := strings.Cut(line, " ")
	if handle, ok := commands[strings.ToUpper(verb)]; ok {
		return handle(c, strings.TrimSpace(arg))
	}
	return c.reply(502, "command not implemented")
}

// reset ends the mail transaction, if any.
func (c *session) reset() { c.inMail, c.from, c.to = false, "", nil }

func (c *session) maxData() int {
	if c.srv.opts.MaxSize > 0 {
		return c.srv.opts.MaxSize
	}
	return maxDataDefault
}

func (c *session) hello(domain string, extended bool) error {
	if domain == "" {
		return c.reply(501, "domain required")
	}
	c.reset()
	c.greeted = true
	if !extended {
		return c.reply(250, "smtptest")
	}
	o := c.srv.opts
	lines := []string{"smtptest greets " + domain, "8BITMIME", "SMTPUTF8", "PIPELINING"}
	if o.MaxSize > 0 {
		lines = append(lines, "SIZE "+strconv.Itoa(o.MaxSize))
	}
	if o.TLS != nil && !c.tls {
		lines = append(lines, "STARTTLS")
	}
	if o.Username != "" {
		lines = append(lines, "AUTH PLAIN")
	}
	return c.reply(250, lines...)
}

func (c *session) startTLS(string) error {
	switch {
	case c.srv.opts.TLS == nil:
		return c.reply(502, "STARTTLS not available")
	case c.tls:
		return c.reply(503, "already using TLS")
	}
	if err := c.reply(220, "ready to start TLS"); err != nil {
		return err
	}
	tc := tls.Server(c.conn, c.srv.opts.TLS)
	if err := tc.Handshake(); err != nil {
		return err
	}
	// RFC 3207 section 4.2: forget everything learnt before the upgrade (EHLO, AUTH, any
	// transaction). The new reader also drops any plaintext the client pipelined after
	// STARTTLS, which must not be taken as sent over TLS.
	*c = session{srv: c.srv, conn: tc, r: newReader(tc), tls: true}
	return nil
}

// authenticate handles AUTH PLAIN, with the initial response on the command line or after a
// 334 continuation.
func (c *session) authenticate(arg string) error {
	o := c.srv.opts
	switch {
	case o.Username == "":
		return c.reply(502, "AUTH not available")
	case !c.greeted || c.auth != "" || c.inMail:
		return c.reply(503, "bad sequence of commands")
	}
	mech, resp, hasResp := strings.Cut(arg, " ")
	if !strings.EqualFold(mech, "PLAIN") {
		return c.reply(504, "unrecognized authentication type")
	}
	if !hasResp {
		var err error
		if err = c.reply(334, ""); err == nil {
			resp, err = c.readLine()
		}
		if err != nil {
			return err
		}
	}
	user, pass, ok := decodePlain(resp)
	if !ok { // including "*", with which the client cancels
		return c.reply(501, "malformed or cancelled AUTH PLAIN response")
	}
	if user != o.Username || pass != o.Password {
		return c.reply(535, "authentication credentials invalid")
	}
	c.auth = user
	return c.reply(235, "authentication successful")
}

// decodePlain decodes an AUTH PLAIN response: base64 of authzid NUL authcid NUL password
// (RFC 4616). It returns the authcid, which is the username.
func decodePlain(resp string) (user, pass string, ok bool) {
	if resp == "=" {
		resp = "" // RFC 4954: "=" stands for an empty response
	}
	b, err := base64.StdEncoding.DecodeString(resp)
	parts := strings.Split(string(b), "\x00")
	if err != nil || len(parts) != 3 {
		return "", "", false
	}
	return parts[1], parts[2], true
}

func (c *session) mail(arg string) error {
	switch {
	case !c.greeted || c.inMail:
		return c.reply(503, "bad sequence of commands")
	case c.srv.opts.Username != "" && c.auth == "":
		return c.reply(530, "authentication required") // RFC 4954's code for this
	}
	addr, params, ok := parsePath(arg, "FROM:")
	if !ok {
		return c.reply(501, "syntax: MAIL FROM:<address>")
	}
	for _, p := range params { // BODY=, SMTPUTF8 and the rest change nothing here
		v, isSize := cutPrefixFold(p, "SIZE=")
		n, err := strconv.Atoi(v)
		if isSize && (err != nil || n < 0) {
			return c.reply(501, "bad SIZE parameter")
		}
		if isSize && n > c.maxData() { // RFC 1870: refuse early what DATA would refuse
			return c.reply(552, "message exceeds fixed maximum message size")
		}
	}
	c.inMail, c.from, c.to = true, addr, nil
	return c.reply(250, "OK")
}

func (c *session) rcpt(arg string) error {
	if !c.inMail {
		return c.reply(503, "bad sequence of commands")
	}
	addr, _, ok := parsePath(arg, "TO:") // parameters such as NOTIFY= are ignored
	if !ok || addr == "" {
		return c.reply(501, "syntax: RCPT TO:<address>")
	}
	if reject := c.srv.opts.RejectRcpt; reject != nil && reject(addr) {
		return c.reply(550, "mailbox unavailable")
	}
	c.to = append(c.to, addr)
	return c.reply(250, "OK")
}

func (c *session) data(string) error {
	if !c.inMail || len(c.to) == 0 {
		return c.reply(503, "bad sequence of commands")
	}
	if err := c.reply(354, "end data with <CR><LF>.<CR><LF>"); err != nil {
		return err
	}
	body, tooBig, err := c.readData()
	if err != nil {
		return err
	}
	msg := Message{From: c.from, To: c.to, Data: body, Auth: c.auth}
	c.reset() // the transaction ends whether or not the message is accepted
	if tooBig {
		return c.reply(552, "message exceeds fixed maximum message size")
	}
	c.srv.record(msg)
	return c.reply(250, "OK: message accepted")
}

// readData reads the message up to the line ".", undoing dot-stuffing. Past the size limit it
// keeps reading but drops the content, so the 552 comes in step with the client and the
// session can go on.
func (c *session) readData() (body []byte, tooBig bool, err error) {
	limit := c.maxData()
	for {
		line, err := c.readLine()
		if err != nil {
			return nil, false, err
		}
		if line == "." {
			return body, tooBig, nil
		}
		line = strings.TrimPrefix(line, ".")
		tooBig = tooBig || len(body)+len(line)+2 > limit
		if !tooBig {
			body = append(append(body, line...), "\r\n"...)
		}
	}
}

// parsePath splits the argument of MAIL or RCPT, "FROM:<address> PARAM=value ..." or
// "TO:<address> ...", into the address and its parameters.
func parsePath(arg, prefix string) (addr string, params []string, ok bool) {
	s, ok := cutPrefixFold(arg, prefix)
	s = strings.TrimLeft(s, " ")
	end := strings.IndexByte(s, '>')
	if !ok || !strings.HasPrefix(s, "<") || end < 0 {
		return "", nil, false
	}
	return s[1:end], strings.Fields(s[end+1:]), true
}

// cutPrefixFold is strings.CutPrefix, ignoring case, since commands are case-insensitive.
func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}
