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
	Username, Password string                 // if set, AUTH PLAIN is advertised and required before MAIL; wrong credentials answer 535
	TLS                *tls.Config            // if set, STARTTLS is advertised and supported
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
			sess := &session{srv: s, conn: conn, r: newReader(conn)}
			sess.run()
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
	if c.reply(220, "smtptest ESMTP ready") != nil {
		return
	}
	for {
		err := c.command()
		if errors.Is(err, errLineTooLong) {
			c.reply(500, "line too long")
			c.hangUp()
		}
		if err != nil {
			return
		}
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

// readLine reads one line without its line ending. The deadline also bounds the reply that
// follows, in case the client stops reading.
func (c *session) readLine() (string, error) {
	c.conn.SetDeadline(time.Now().Add(commandTimeout))
	line, err := c.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if len(line) > maxLine {
		return "", errLineTooLong
	}
	return string(line), nil
}

// reply sends a reply of one or more lines, all but the last marked as continued.
func (c *session) reply(code int, lines ...string) error {
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%d%s%s\r\n", code, sep, l)
	}
	_, err := io.WriteString(c.conn, b.String())
	return err
}

// command reads and handles one command. A non-nil error ends the session.
func (c *session) command() error {
	line, err := c.readLine()
	if err != nil {
		return err
	}
	verb, arg, _ := strings.Cut(line, " ")
	arg = strings.TrimSpace(arg)
	switch strings.ToUpper(verb) {
	case "EHLO":
		return c.hello(arg, true)
	case "HELO":
		return c.hello(arg, false)
	case "STARTTLS":
		return c.startTLS(arg)
	case "AUTH":
		return c.authenticate(arg)
	case "MAIL":
		return c.mail(arg)
	case "RCPT":
		return c.rcpt(arg)
	case "DATA":
		return c.data(arg)
	case "RSET":
		c.reset()
		return c.reply(250, "OK")
	case "NOOP":
		return c.reply(250, "OK")
	case "QUIT":
		c.reply(221, "bye")
		return errQuit
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

func (c *session) startTLS(arg string) error {
	switch {
	case c.srv.opts.TLS == nil:
		return c.reply(502, "STARTTLS not available")
	case c.tls:
		return c.reply(503, "already using TLS")
	case arg != "":
		return c.reply(501, "STARTTLS takes no parameters")
	}
	if err := c.reply(220, "ready to start TLS"); err != nil {
		return err
	}
	tc := tls.Server(c.conn, c.srv.opts.TLS)
	if err := tc.Handshake(); err != nil {
		return err
	}
	// RFC 3207 section 4.2: forget everything learnt before the upgrade and wait for a new
	// EHLO. The new reader also drops any plaintext the client pipelined after STARTTLS, which
	// must not be taken as sent over TLS.
	c.conn, c.r, c.tls = tc, newReader(tc), true
	c.greeted, c.auth = false, ""
	c.reset()
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
		if err := c.reply(334, ""); err != nil {
			return err
		}
		line, err := c.readLine()
		if err != nil {
			return err
		}
		resp = line
	}
	if resp == "*" {
		return c.reply(501, "authentication cancelled")
	}
	user, pass, ok := decodePlain(resp)
	if !ok {
		return c.reply(501, "malformed AUTH PLAIN response")
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
	if err != nil {
		return "", "", false
	}
	parts := strings.Split(string(b), "\x00")
	if len(parts) != 3 {
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
	rest, ok := cutPrefixFold(arg, "FROM:")
	addr, params, ok2 := parsePath(rest)
	if !ok || !ok2 {
		return c.reply(501, "syntax: MAIL FROM:<address>")
	}
	for _, p := range params {
		key, val, _ := strings.Cut(p, "=")
		if !strings.EqualFold(key, "SIZE") {
			continue // BODY=, SMTPUTF8 and the rest change nothing here
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 {
			return c.reply(501, "bad SIZE parameter")
		}
		if n > int64(c.maxData()) {
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
	rest, ok := cutPrefixFold(arg, "TO:")
	addr, _, ok2 := parsePath(rest) // parameters such as NOTIFY= are ignored
	if !ok || !ok2 || addr == "" {
		return c.reply(501, "syntax: RCPT TO:<address>")
	}
	if reject := c.srv.opts.RejectRcpt; reject != nil && reject(addr) {
		return c.reply(550, "mailbox unavailable")
	}
	c.to = append(c.to, addr)
	return c.reply(250, "OK")
}

func (c *session) data(arg string) error {
	switch {
	case arg != "":
		return c.reply(501, "DATA takes no parameters")
	case !c.inMail || len(c.to) == 0:
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
		if len(body)+len(line)+2 > limit {
			tooBig = true
		}
		if !tooBig {
			body = append(append(body, line...), "\r\n"...)
		}
	}
}

// parsePath splits "<address> PARAM=value ..." into the address and its parameters.
func parsePath(s string) (addr string, params []string, ok bool) {
	s = strings.TrimLeft(s, " ")
	end := strings.IndexByte(s, '>')
	if !strings.HasPrefix(s, "<") || end < 0 {
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
