package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"regexp"
	"strings"
	"testing"

	"pingedchat/internal/smtptest"
)

// withMailRelay points cfg at a local SMTP relay (internal/smtptest) and returns it.
func withMailRelay(t testing.TB, cfg *Config) *smtptest.Server {
	t.Helper()
	relay, err := smtptest.Start(smtptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	cfg.SMTPURL, cfg.MailDomain = "smtp://"+relay.Addr()+"?insecure=1", "chat.example.org"
	return relay
}

var codeRe = regexp.MustCompile(`\b[0-9]{6}\b`)

// receivedCode waits for message n (counting from 1) at the relay, checks its recipient, and
// returns the code in it.
func receivedCode(t testing.TB, relay *smtptest.Server, n int, to string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	msgs, err := relay.Wait(ctx, n)
	if err != nil {
		t.Fatalf("waiting for mail %d: %v (got %d)", n, err, len(msgs))
	}
	m := msgs[n-1]
	if len(m.To) != 1 || m.To[0] != to {
		t.Fatalf("mail %d went to %v, want %s", n, m.To, to)
	}
	code := codeRe.FindString(string(m.Data))
	if code == "" {
		t.Fatalf("no code in mail %d: %s", n, m.Data)
	}
	return code
}

// verified runs the whole verification of c's e-mail (kind "email") or phone (kind "phone",
// through carrier), and returns the user view.
func verified(t testing.TB, relay *smtptest.Server, c *client, kind, to, carrier string) map[string]any {
	t.Helper()
	before := len(relay.Messages())
	c.ok("SendVerificationCode", map[string]any{"kind": kind, "carrier": carrier})
	code := receivedCode(t, relay, before+1, to)
	return c.ok("VerifyContact", map[string]any{"kind": kind, "code": code})
}

// An address claims nothing until its owner proves it with a code: nobody can squat another's
// address, contact discovery finds only verified ones, and verified ones stay unique.
func TestContactVerification(t *testing.T) {
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	srv := startServer(t, cfg)
	email := strings.ToLower(uniqueName("kate")) + "@example.org"
	owner, view := registerWith(t, srv, "owner", map[string]any{"email": email})
	if view["EmailVerified"] != false {
		t.Fatalf("a new address is verified: %v", view)
	}
	squatter, _ := registerWith(t, srv, "squatter", map[string]any{"email": strings.ToUpper(email)})
	other := register(t, srv, "other")
	other.fails("GetUserByEmail", map[string]any{"email": email}, "No such user")

	squatter.ok("SendVerificationCode", map[string]any{"kind": "email"})
	receivedCode(t, relay, 1, email) // the squatter's code goes to the owner's mailbox
	for range codeTries - 1 {
		squatter.fails("VerifyContact", map[string]any{"kind": "email", "code": "000000"}, "Wrong code.")
	}
	squatter.fails("VerifyContact", map[string]any{"kind": "email", "code": "000001"}, "Too many wrong codes")
	squatter.fails("VerifyContact", map[string]any{"kind": "email", "code": "000002"}, "Too many wrong codes")

	owner.ok("SendVerificationCode", map[string]any{"kind": "email"})
	code := receivedCode(t, relay, 2, email)
	owner.fails("VerifyContact", map[string]any{"kind": "phone", "code": code}, "No code is pending")
	if v := owner.ok("VerifyContact", map[string]any{"kind": "email", "code": code}); v["EmailVerified"] != true {
		t.Fatalf("after VerifyContact: %v", v)
	}
	owner.fails("VerifyContact", map[string]any{"kind": "email", "code": code}, "No code is pending") // used up
	if pub := other.ok("GetUserByEmail", map[string]any{"email": email}); pub["Username"] != owner.name {
		t.Fatalf("GetUserByEmail: %v", pub)
	}
	dialRaw(t, srv).fails("CreateUser", map[string]any{"username": uniqueName("late"), "password": testPassword, "email": email}, "E-mail address already used.")
	squatter.ok("SendVerificationCode", map[string]any{"kind": "email"})
	squatter.fails("VerifyContact", map[string]any{"kind": "email", "code": receivedCode(t, relay, 3, email)}, "already used")

	// Phones, through the carrier's e-mail-to-SMS gateway.
	phone := uniquePhone()
	owner.ok("ChangeUserPhone", map[string]any{"phone": phone})
	owner.fails("SendVerificationCode", map[string]any{"kind": "phone", "carrier": "nope"}, "Unknown carrier")
	digits := strings.ReplaceAll(strings.TrimPrefix(phone, "+1"), " ", "")
	if v := verified(t, relay, owner, "phone", digits+"@txt.att.net", "att"); v["PhoneVerified"] != true {
		t.Fatalf("after VerifyContact: %v", v)
	}
	found := other.ok("MatchUsers", map[string]any{"Phones": []map[string]any{{"Name": "K", "PhoneNum": phone}}})["Users"].([]any)
	if len(found) != 1 {
		t.Fatalf("MatchUsers by verified phone: %v", found)
	}
	// Changing the address unverifies it and releases the old one.
	if v := owner.ok("ChangeUserEmail", map[string]any{"email": "new-" + email}); v["EmailVerified"] != false {
		t.Fatalf("a changed address stays verified: %v", v)
	}
	other.fails("GetUserByEmail", map[string]any{"email": email}, "No such user")
	if v := verified(t, relay, squatter, "email", email, ""); v["EmailVerified"] != true {
		t.Fatalf("the released address could not be verified by another: %v", v)
	}
}

func TestVerificationWithoutMailIsAClearError(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c, _ := registerWith(t, srv, "nomail", map[string]any{"email": strings.ToLower(uniqueName("n")) + "@example.org"})
	c.fails("SendVerificationCode", map[string]any{"kind": "email"}, "does not send e-mail")
	c.fails("SendVerificationCode", map[string]any{"kind": "fax"}, "kind must be")
	register(t, srv, "noaddress").fails("SendVerificationCode", map[string]any{"kind": "phone", "carrier": "att"}, "no phone")
}

// The relay is reached with STARTTLS and AUTH PLAIN when it offers them.
func TestMailRelayWithSTARTTLSAndAuth(t *testing.T) {
	certFile, keyFile := selfSignedCert(t, t.TempDir())
	tlsCfg, roots := tlsConfigFor(t, certFile, keyFile)
	relay, err := smtptest.Start(smtptest.Options{Username: "relayuser", Password: "relaypass", TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	cfg := testConfig(t)
	cfg.SMTPURL, cfg.smtpRoots = "smtp://relayuser:relaypass@"+relay.Addr(), roots
	cfg.MailFrom = "noreply@chat.example.org"
	srv := startServer(t, cfg)
	email := strings.ToLower(uniqueName("tls")) + "@example.org"
	c, _ := registerWith(t, srv, "tls", map[string]any{"email": email})
	verified(t, relay, c, "email", email, "")
	m := relay.Messages()[0]
	if m.Auth != "relayuser" || m.From != "noreply@chat.example.org" || !strings.Contains(string(m.Data), "Subject: Your pingedchat code") {
		t.Fatalf("relayed message: auth %q from %q\n%s", m.Auth, m.From, m.Data)
	}
	cfg.SMTPURL = "smtp://relayuser:wrong@" + relay.Addr()
	d, _ := registerWith(t, startServer(t, cfg), "refused", map[string]any{"email": "x" + email})
	d.fails("SendVerificationCode", map[string]any{"kind": "email"}, "Sending the code failed")
}

func tlsConfigFor(t *testing.T, certFile, keyFile string) (*tls.Config, *x509.CertPool) {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	return &tls.Config{Certificates: []tls.Certificate{pair}}, roots
}
