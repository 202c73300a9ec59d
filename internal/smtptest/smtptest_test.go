package smtptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	from = "sender@example.com"
	host = "127.0.0.1" // what net/smtp checks the certificate and PlainAuth against
)

var to = []string{"a@example.com", "b@example.com"}

// serverTLS holds a self-signed certificate for 127.0.0.1 that TestMain makes the system trust.
var serverTLS *tls.Config

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	cert, certPEM, err := selfSigned()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "smtptest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(path, certPEM, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// smtp.SendMail verifies the server against the system roots and takes no others. On
	// Linux and the BSDs SSL_CERT_FILE replaces those roots, and nothing has loaded them yet.
	os.Setenv("SSL_CERT_FILE", path)
	serverTLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	return m.Run()
}

func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smtptest"},
		IPAddresses:           []net.IP{net.ParseIP(host)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true, // it is its own root
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, nil
}

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func wait(t *testing.T, s *Server, n int) []Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	msgs, err := s.Wait(ctx, n)
	if err != nil {
		t.Fatalf("waiting for %d messages: %v; have %d", n, err, len(msgs))
	}
	return msgs
}

func wantCode(t *testing.T, err error, code int) {
	t.Helper()
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != code {
		t.Fatalf("error %v, want SMTP code %d", err, code)
	}
}

func TestSendMailPlain(t *testing.T) {
	s := start(t, Options{})
	body := "Subject: hi\r\n\r\nfirst\r\n.one dot\r\n..two dots\r\n.\r\n"
	if err := smtp.SendMail(s.Addr(), nil, from, to, []byte(body)); err != nil {
		t.Fatal(err)
	}
	m := wait(t, s, 1)[0]
	if m.From != from || !slices.Equal(m.To, to) || m.Auth != "" {
		t.Errorf("got From %q To %q Auth %q", m.From, m.To, m.Auth)
	}
	if string(m.Data) != body {
		t.Errorf("Data = %q, want %q", m.Data, body)
	}
	s.Messages()[0].To[0] = "changed"
	if got := s.Messages()[0].To[0]; got != to[0] {
		t.Errorf("Messages shares storage with the caller: To[0] = %q", got)
	}
}

func TestSendMailAuthSTARTTLS(t *testing.T) {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		t.Skip("SSL_CERT_FILE does not replace the platform verifier here")
	}
	s := start(t, Options{Username: "user", Password: "secret", TLS: serverTLS})
	err := smtp.SendMail(s.Addr(), smtp.PlainAuth("", "user", "secret", host), from, to, []byte("hi\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m := wait(t, s, 1)[0]; m.Auth != "user" || string(m.Data) != "hi\r\n" {
		t.Errorf("got Auth %q Data %q", m.Auth, m.Data)
	}
	err = smtp.SendMail(s.Addr(), smtp.PlainAuth("", "user", "wrong", host), from, to, []byte("hi\r\n"))
	wantCode(t, err, 535)
	wantCode(t, smtp.SendMail(s.Addr(), nil, from, to, []byte("hi\r\n")), 530)
	if n := len(s.Messages()); n != 1 {
		t.Errorf("%d messages, want 1", n)
	}
}

func TestRejectRcpt(t *testing.T) {
	s := start(t, Options{RejectRcpt: func(addr string) bool { return addr == to[1] }})
	wantCode(t, smtp.SendMail(s.Addr(), nil, from, to, []byte("x\r\n")), 550)
	if err := smtp.SendMail(s.Addr(), nil, from, to[:1], []byte("y\r\n")); err != nil {
		t.Fatal(err)
	}
	// The first message was refused before DATA, so the only one recorded is the second.
	if m := wait(t, s, 1); len(m) != 1 || string(m[0].Data) != "y\r\n" {
		t.Errorf("got %+v", m)
	}
}

func TestMaxSize(t *testing.T) {
	s := start(t, Options{MaxSize: 1000})
	big := strings.Repeat("0123456789abcdef\r\n", 100)
	wantCode(t, smtp.SendMail(s.Addr(), nil, from, to, []byte(big)), 552)
	if err := smtp.SendMail(s.Addr(), nil, from, to, []byte(big[:990])); err != nil {
		t.Fatal(err)
	}
	if m := wait(t, s, 1); len(m) != 1 || string(m[0].Data) != big[:990] {
		t.Errorf("got %d messages, first %d bytes", len(m), len(m[0].Data))
	}
}

// dial opens a raw session and reads the greeting.
func dial(t *testing.T, s *Server) *textproto.Conn {
	t.Helper()
	c, err := textproto.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	expect(t, c, 220)
	return c
}

func expect(t *testing.T, c *textproto.Conn, code int) string {
	t.Helper()
	_, msg, err := c.ReadResponse(code)
	if err != nil {
		t.Fatalf("want %d: %v", code, err)
	}
	return msg
}

func send(t *testing.T, c *textproto.Conn, line string, code int) string {
	t.Helper()
	if err := c.PrintfLine("%s", line); err != nil {
		t.Fatal(err)
	}
	return expect(t, c, code)
}

func TestProtocol(t *testing.T) {
	s := start(t, Options{Username: "u", Password: "p", MaxSize: 100})
	c := dial(t, s)
	send(t, c, "MAIL FROM:<a@x>", 503)
	ext := send(t, c, "ehlo client", 250)
	if !strings.Contains(ext, "SIZE 100") || !strings.Contains(ext, "AUTH PLAIN") || strings.Contains(ext, "STARTTLS") {
		t.Errorf("EHLO reply %q", ext)
	}
	send(t, c, "mail from:<a@x>", 530)
	send(t, c, "AUTH PLAIN", 334)
	send(t, c, base64.StdEncoding.EncodeToString([]byte("\x00u\x00p")), 235)
	send(t, c, "AUTH PLAIN", 503)
	send(t, c, "RCPT TO:<b@x>", 503)
	send(t, c, "MAIL FROM:<a@x> SIZE=500", 552)
	send(t, c, "Mail From:<a@x> SIZE=50 BODY=8BITMIME SMTPUTF8", 250)
	send(t, c, "DATA", 503)
	send(t, c, "VRFY b@x", 502)
	send(t, c, "RSET", 250)

	// PIPELINING: the whole transaction in one write, then the replies in order.
	c.W.WriteString("MAIL FROM:<a@x>\r\nrcpt to:<b@x>\r\nNOOP\r\nDATA\r\n..x\r\n.\r\n")
	c.W.Flush()
	for _, code := range []int{250, 250, 250, 354, 250} {
		expect(t, c, code)
	}
	m := wait(t, s, 1)[0]
	if m.From != "a@x" || !slices.Equal(m.To, []string{"b@x"}) || string(m.Data) != ".x\r\n" || m.Auth != "u" {
		t.Errorf("got %+v", m)
	}

	send(t, c, "NOOP "+strings.Repeat("x", 5000), 500)
	if _, err := c.ReadLine(); err == nil {
		t.Error("connection still open after a too-long line")
	}
}

// TestSTARTTLSResets checks that the session starts over after STARTTLS (RFC 3207).
func TestSTARTTLSResets(t *testing.T) {
	if runtime.GOOS == "darwin" || runtime.GOOS == "windows" {
		t.Skip("SSL_CERT_FILE does not replace the platform verifier here")
	}
	s := start(t, Options{Username: "u", Password: "p", TLS: serverTLS})
	conn, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := textproto.NewConn(conn)
	expect(t, c, 220)
	if ext := send(t, c, "EHLO client", 250); !strings.Contains(ext, "STARTTLS") {
		t.Fatalf("EHLO reply %q", ext)
	}
	send(t, c, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00u\x00p")), 235)
	send(t, c, "STARTTLS", 220)

	c = textproto.NewConn(tls.Client(conn, &tls.Config{ServerName: host}))
	send(t, c, "MAIL FROM:<a@x>", 503) // the EHLO before STARTTLS no longer counts
	if ext := send(t, c, "EHLO client", 250); strings.Contains(ext, "STARTTLS") {
		t.Errorf("STARTTLS offered again over TLS: %q", ext)
	}
	send(t, c, "MAIL FROM:<a@x>", 530) // nor does the AUTH
	send(t, c, "STARTTLS", 503)
}

func TestWaitContext(t *testing.T) {
	s := start(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if msgs, err := s.Wait(ctx, 1); !errors.Is(err, context.Canceled) || len(msgs) != 0 {
		t.Errorf("Wait = %v, %v", msgs, err)
	}
}

func TestClose(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := textproto.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expect(t, c, 220)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadLine(); err == nil {
		t.Error("open connection survived Close")
	}
	if conn, err := net.Dial("tcp", s.Addr()); err == nil {
		conn.Close()
		t.Error("dial succeeded after Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
