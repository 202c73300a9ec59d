package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// Hostile tests of inbound mail's bounds, through real sockets: bodies that never finish,
// many stalled posts at once, unauthenticated posts, SMTP connections that never speak.

// rawPost opens a connection and sends a POST's head with a Content-Length of size and then
// prefix bytes of its body, no more.
func rawPost(t *testing.T, srv *testServer, path string, hdr map[string]string, size int, prefix int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var b strings.Builder
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", path, srv.addr, size)
	for k, v := range hdr {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		t.Fatal(err)
	}
	if prefix > 0 {
		if _, err := c.Write(bytes.Repeat([]byte("x"), prefix)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// responseStatus reads the status code the server answers on c before the body was sent
// (0 when it closed the connection without one).
func responseStatus(t *testing.T, c net.Conn) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("no answer within %v: the server is waiting for the body", waitTimeout)
		}
		return 0
	}
	res.Body.Close()
	return res.StatusCode
}

// Without -inbound-token and -mandrill-key (or with the example env file's FILL_ME), neither
// endpoint exists, and a post of 23 MiB is answered at once without its body; the start-up log
// says both are off.
func TestInboundEndpointsOffUnlessConfigured(t *testing.T) {
	for _, v := range []string{"", "FILL_ME"} {
		cfg := testConfig(t)
		cfg.MailDomain, cfg.InboundToken, cfg.MandrillKey = testMailDomain, v, v
		srv := startServer(t, cfg)
		for _, path := range []string{"/inbound/email", "/inbound/mandrill"} {
			c := rawPost(t, srv, path, map[string]string{"Content-Type": "message/rfc822"}, 23<<20, 0)
			if code := responseStatus(t, c); code != http.StatusNotFound {
				t.Errorf("token %q: POST %s: %d, want 404", v, path, code)
			}
		}
		res, err := http.Head("http://" + srv.addr + "/inbound/mandrill")
		if err != nil || res.StatusCode != http.StatusNotFound {
			t.Errorf("token %q: HEAD /inbound/mandrill: %v %v", v, res, err)
		}
	}
	var log bytes.Buffer
	logInbound(defaultConfig(), slog.New(slog.NewTextHandler(&log, nil)))
	for _, want := range []string{"/inbound/email is off", "/inbound/mandrill is off"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("start-up log lacks %q:\n%s", want, log.String())
		}
	}
}

// A post without the token (or with a wrong one) is refused before a byte of its body is read.
func TestUnauthenticatedInboundIsRefusedBeforeTheBody(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.InboundToken, cfg.MandrillKey = testMailDomain, testInboundToken, "mandrill-key"
	srv := startServer(t, cfg)
	for _, path := range []string{"/inbound/email", "/inbound/mandrill"} {
		for name, hdr := range map[string]map[string]string{
			"no token":    {"Content-Type": "message/rfc822"},
			"wrong token": {"Content-Type": "message/rfc822", "Authorization": "Bearer not-the-token"},
		} {
			c := rawPost(t, srv, path, hdr, 23<<20, 0)
			if code := responseStatus(t, c); code != http.StatusUnauthorized {
				t.Errorf("%s, %s: %d, want 401", path, name, code)
			}
		}
	}
	if n := srv.db.inbound.peak.Load(); n != 0 {
		t.Fatalf("%d unauthenticated bodies were read", n)
	}
}

// 24 authenticated posts of 23 MiB that stall after 64 KiB: at most -inbound-parses bodies are
// read at once, each is cut off at its deadline, the others are told to come back, and every
// connection ends; goroutines go back to where they were.
func TestStalledInboundBodiesAreCutOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.InboundToken = testMailDomain, testInboundToken
	cfg.InboundParses, cfg.inboundBodyTimeout = 2, time.Second
	srv := startServer(t, cfg)
	g := srv.db.inbound
	before := runtime.NumGoroutine()
	const posts = 24
	hdr := map[string]string{"Content-Type": "message/rfc822", "Authorization": "Bearer " + testInboundToken}
	conns := make([]net.Conn, posts)
	for i := range conns {
		conns[i] = rawPost(t, srv, "/inbound/email", hdr, 23<<20, 64<<10)
	}
	var wg sync.WaitGroup
	codes := make([]int, posts)
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(2 * waitTimeout))
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				codes[i] = res.StatusCode
				res.Body.Close()
			} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
				codes[i] = -1 // still open
			}
		}()
	}
	wg.Wait()
	cut, busy := 0, 0
	for i, code := range codes {
		switch code {
		case http.StatusRequestTimeout, 0:
			cut++
		case http.StatusServiceUnavailable:
			busy++
		default:
			t.Errorf("post %d: %d", i, code)
		}
	}
	if cut+busy != posts || g.cutOff.Load() != int64(cut) || g.busy.Load() != int64(busy) {
		t.Fatalf("cut off %d (server: %d), told to come back %d (server: %d) of %d", cut, g.cutOff.Load(), busy, g.busy.Load(), posts)
	}
	if p := g.peak.Load(); p > int64(cfg.InboundParses) {
		t.Fatalf("%d bodies read at once, over -inbound-parses %d", p, cfg.InboundParses)
	}
	waitUntil(t, "every place given back", func() bool { return g.reading.Load() == 0 && len(g.places) == 0 })
	for _, c := range conns {
		c.Close()
	}
	waitUntil(t, "the server's goroutines to end", func() bool { return runtime.NumGoroutine() <= before+4 })
}

// smtpDial opens a raw connection to the SMTP receiver from a loopback address.
func smtpDial(t *testing.T, srv *testServer, from string) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", srv.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// smtpLine reads one reply line.
func smtpLine(t *testing.T, c net.Conn, r *bufio.Reader) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(waitTimeout))
	line, err := r.ReadString('\n')
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "still open"
	}
	if err != nil {
		return "closed: " + err.Error()
	}
	return line
}

// SMTP connections that never say EHLO are counted when accepted: 8 per address, then 421;
// -smtp-max-conns in all; each closed at the end of its lifetime.
func TestSilentSMTPConnectionsAreCounted(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.SMTPListen, cfg.SMTPMaxConns, cfg.smtpLifetime = testMailDomain, "127.0.0.1:0", 12, 3*time.Second
	srv := startServer(t, cfg)
	ln := srv.smtpd.ln
	var held []net.Conn
	for i := 0; i < smtpConnsPerAddr; i++ {
		c, r := smtpDial(t, srv, "127.0.0.1")
		if line := smtpLine(t, c, r); !strings.HasPrefix(line, "220") {
			t.Fatalf("connection %d: %q", i, line)
		}
		held = append(held, c)
	}
	c, r := smtpDial(t, srv, "127.0.0.1")
	if line := smtpLine(t, c, r); !strings.HasPrefix(line, "421") {
		t.Fatalf("connection %d from one address: %q, want 421", smtpConnsPerAddr+1, line)
	}
	// Another address may open the rest of the global cap, and no more.
	for i := smtpConnsPerAddr; i < 12; i++ {
		c, r := smtpDial(t, srv, "127.0.0.2")
		if line := smtpLine(t, c, r); !strings.HasPrefix(line, "220") {
			t.Fatalf("connection %d: %q", i, line)
		}
	}
	c, r = smtpDial(t, srv, "127.0.0.3")
	if line := smtpLine(t, c, r); !strings.HasPrefix(line, "421") {
		t.Fatalf("connection over -smtp-max-conns: %q, want 421", line)
	}
	if n := ln.open(); n != 12 {
		t.Fatalf("%d connections counted, want 12", n)
	}
	// Closing one gives its place back.
	held[0].Close()
	waitUntil(t, "the place to be given back", func() bool { return ln.open() == 11 })
	c, r = smtpDial(t, srv, "127.0.0.1")
	if line := smtpLine(t, c, r); !strings.HasPrefix(line, "220") {
		t.Fatalf("after one closed: %q", line)
	}
	// Silent connections end with their lifetime (go-smtp's own time-out is a minute).
	if line := smtpLine(t, held[1], bufio.NewReader(held[1])); !strings.HasPrefix(line, "closed") {
		t.Fatalf("a silent connection past its lifetime: %q", line)
	}
	waitUntil(t, "every connection to end", func() bool { return ln.open() == 0 })
}

// A message sent in BDAT chunks that each come just within go-smtp's read time-out is cut
// off at the message's deadline, and its parse place is given back.
func TestSlowSMTPMessageIsCutOff(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.SMTPListen, cfg.inboundBodyTimeout = testMailDomain, "127.0.0.1:0", time.Second
	srv := startServer(t, cfg)
	c0 := register(t, srv, "slowpoke")
	c, r := smtpDial(t, srv, "127.0.0.1")
	smtpLine(t, c, r)
	send := func(s string) {
		if _, err := io.WriteString(c, s); err != nil {
			t.Fatal(err)
		}
	}
	send("EHLO client.example\r\n")
	for line := smtpLine(t, c, r); strings.HasPrefix(line, "250-"); line = smtpLine(t, c, r) {
	}
	send("MAIL FROM:<x@example.net>\r\n")
	smtpLine(t, c, r)
	send("RCPT TO:<" + c0.name + "@" + testMailDomain + ">\r\n")
	if line := smtpLine(t, c, r); !strings.HasPrefix(line, "250") {
		t.Fatalf("RCPT: %q", line)
	}
	g := srv.db.inbound
	chunk := "From: x@example.net\r\n"
	ended := false
	for i := 0; i < 100 && !ended; i++ {
		if _, err := io.WriteString(c, fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk)); err != nil {
			ended = true
			break
		}
		line := smtpLine(t, c, r)
		ended = strings.HasPrefix(line, "closed") || !strings.HasPrefix(line, "250")
		time.Sleep(100 * time.Millisecond) // a sender that drips, not synchronisation
	}
	if !ended || g.cutOff.Load() != 1 {
		t.Fatalf("a dripping message was not cut off (ended %v, cut off %d)", ended, g.cutOff.Load())
	}
	waitUntil(t, "the parse place to be given back", func() bool { return g.reading.Load() == 0 })
}

// Mandrill's form is limited near the mail limit: a larger one is refused from its
// Content-Length, before it is read.
func TestMandrillFormLimit(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.MandrillKey = testMailDomain, "mandrill-key"
	srv := startServer(t, cfg)
	c := rawPost(t, srv, "/inbound/mandrill", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 40<<20, 0)
	if code := responseStatus(t, c); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a 40 MiB form: %d, want 413", code)
	}
	if maxMandrillBody > maxInboundMail*3/2 {
		t.Fatalf("the Mandrill form limit %d is far above the mail limit %d", maxMandrillBody, maxInboundMail)
	}
}
