package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"syscall"
	"testing"
	"time"
)

// rawSMTP is a client that speaks SMTP by hand over TCP, to see every answer as it is.
type rawSMTP struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

func dialSMTP(t *testing.T, srv *testServer) *rawSMTP {
	t.Helper()
	conn, err := net.Dial("tcp", srv.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(waitTimeout))
	s := &rawSMTP{t: t, conn: conn, tp: textproto.NewConn(conn)}
	if code, msg := s.read(); code != 220 {
		t.Fatalf("greeting: %d %s", code, msg)
	}
	return s
}

// read reads one answer; a closed connection is code 0.
func (s *rawSMTP) read() (int, string) {
	s.t.Helper()
	code, msg, err := s.tp.ReadResponse(0)
	var ne net.Error
	switch {
	case err == nil:
		return code, msg
	case errors.As(err, &ne) && ne.Timeout():
		s.t.Fatalf("no SMTP answer: %v", err)
	case errors.Is(err, io.EOF) || errors.As(err, &ne) || errors.Is(err, syscall.ECONNRESET):
		return 0, "closed"
	}
	s.t.Fatalf("reading an SMTP answer: %v", err)
	return 0, ""
}

// cmd sends one command and reads its answer.
func (s *rawSMTP) cmd(format string, args ...any) (int, string) {
	s.t.Helper()
	if err := s.tp.PrintfLine(format, args...); err != nil {
		return 0, "closed"
	}
	return s.read()
}

// closed reports whether the server has closed the connection (reading gives EOF or a reset).
func (s *rawSMTP) closed() bool {
	s.t.Helper()
	_, err := s.tp.ReadLine()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.t.Fatal("the connection is still open")
	}
	return err != nil
}

// Probing for users with RCPT: five unknown recipients a connection (550), and the connection
// ends; 30 an hour from one address, then that address gets 421 for everything (known users
// too, so the answers tell nothing), and 429 on the HTTP inbound endpoint.
func TestSMTPRecipientProbing(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTPListen, cfg.MailDomain, cfg.InboundToken = "127.0.0.1:0", testMailDomain, "inbound-secret"
	srv := startServer(t, cfg)
	known := register(t, srv, "known")
	guess := 0
	unknown := func() string { guess++; return fmt.Sprintf("<guess_%d_%d@%s>", guess, userSeq.Add(1), testMailDomain) }

	// 400 guesses on one connection: five are answered, then it is closed.
	s := dialSMTP(t, srv)
	s.cmd("EHLO prober.example")
	if code, msg := s.cmd("MAIL FROM:<p@prober.example>"); code != 250 {
		t.Fatalf("MAIL: %d %s", code, msg)
	}
	answered550 := 0
	for range 400 {
		code, _ := s.cmd("RCPT TO:%s", unknown())
		if code == 0 {
			break
		}
		if code != 550 {
			t.Fatalf("RCPT of an unknown user: %d", code)
		}
		answered550++
	}
	if answered550 != smtpUnknownPerConn {
		t.Fatalf("answered %d unknown recipients on one connection, want %d", answered550, smtpUnknownPerConn)
	}

	// Known recipients before the limit are taken as usual on a new connection.
	s = dialSMTP(t, srv)
	s.cmd("EHLO prober.example")
	s.cmd("MAIL FROM:<p@prober.example>")
	if code, msg := s.cmd("RCPT TO:<%s@%s>", known.name, testMailDomain); code != 250 {
		t.Fatalf("a known user: %d %s", code, msg)
	}
	for range smtpUnknownPerConn - 1 {
		if code, _ := s.cmd("RCPT TO:%s", unknown()); code != 550 {
			t.Fatalf("an unknown user: %d", code)
		}
	}
	if code, _ := s.cmd("RCPT TO:%s", unknown()); code != 550 || !s.closed() {
		t.Fatalf("the fifth unknown user: %d, or the connection stayed open", code)
	}

	// Spend the rest of the address's hour on further connections (10 spent so far).
	for spent := 2 * smtpUnknownPerConn; spent < unknownRcptsPerHour; spent += smtpUnknownPerConn {
		s = dialSMTP(t, srv)
		s.cmd("EHLO prober.example")
		s.cmd("MAIL FROM:<p@prober.example>")
		for range smtpUnknownPerConn {
			s.cmd("RCPT TO:%s", unknown())
		}
	}
	s = dialSMTP(t, srv)
	s.cmd("EHLO prober.example")
	if code, msg := s.cmd("MAIL FROM:<p@prober.example>"); code != 421 || !s.closed() {
		t.Fatalf("MAIL from an address out of unknown recipients: %d %s", code, msg)
	}
	// The HTTP endpoint counts against the same allowance.
	msg := []byte("From: p@prober.example\r\nTo: " + known.name + "@" + testMailDomain + "\r\nSubject: hi\r\n\r\nhello\r\n")
	if code := postRaw(t, srv, cfg.InboundToken, url.Values{"to": {known.name + "@" + testMailDomain}}, msg); code != http.StatusTooManyRequests {
		t.Fatalf("HTTP from an address out of unknown recipients: %d", code)
	}
	if got := emails(known.ok("GetAllEmails", nil)); len(got) != 0 {
		t.Fatalf("stored: %v", got)
	}
}

// The HTTP inbound endpoint's unknown recipients spend the same allowance as SMTP's.
func TestInboundHTTPRecipientProbing(t *testing.T) {
	cfg := testConfig(t)
	cfg.SMTPListen, cfg.MailDomain, cfg.InboundToken = "127.0.0.1:0", testMailDomain, "inbound-secret"
	srv := startServer(t, cfg)
	known := register(t, srv, "known")
	msg := []byte("From: p@prober.example\r\nSubject: hi\r\n\r\nhello\r\n")
	q := url.Values{}
	for i := range unknownRcptsPerHour {
		q.Add("to", fmt.Sprintf("guess_%d_%d@%s", i, userSeq.Add(1), testMailDomain))
	}
	if code := postRaw(t, srv, cfg.InboundToken, q, msg); code != http.StatusOK {
		t.Fatalf("a post for nobody: %d", code)
	}
	if code := postRaw(t, srv, cfg.InboundToken, url.Values{"to": {known.name + "@" + testMailDomain}}, msg); code != http.StatusTooManyRequests {
		t.Fatalf("after %d unknown recipients over HTTP: %d", unknownRcptsPerHour, code)
	}
	s := dialSMTP(t, srv)
	s.cmd("EHLO prober.example")
	if code, _ := s.cmd("MAIL FROM:<p@prober.example>"); code != 421 {
		t.Fatalf("SMTP after the HTTP probing: %d", code)
	}
}
