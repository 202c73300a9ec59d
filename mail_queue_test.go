package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"pingedchat/internal/smtptest"
)

// The outbound queue survives a restart while the relay is down, and a refusal comes back as a
// bounce in the sender's inbox.

// deadRelay is an address nothing listens on.
func deadRelay(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestOutboxRetriesAcrossRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain = testMailDomain
	cfg.SMTPURL = "smtp://" + deadRelay(t) + "?insecure=1"
	cfg.outboxRetry = 20 * time.Millisecond
	first, err := NewServer(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = first.Serve(ln) }()
	ts := &testServer{Server: first, addr: ln.Addr().String()}
	c := register(t, ts, "ivy")
	subject := "queued " + uniqueName("s")
	c.ok("SendEmailMessage", map[string]any{"To": []string{"far@example.com"}, "Subject": subject, "Text": "hello"})
	pool := testPool(t)
	attempts := func() int {
		var n int
		_ = pool.QueryRow(context.Background(), "SELECT COALESCE(max(attempts), -1) FROM mail_outbox WHERE $1 = ANY(rcpts)", "far@example.com").Scan(&n)
		return n
	}
	waitUntil(t, "a failed attempt", func() bool { return attempts() >= 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	first.Shutdown(ctx)
	cancel()

	relay := withMailRelay(t, &cfg)
	cfg.MailDomain = testMailDomain
	startServer(t, cfg)
	msgs, err := relay.Wait(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msgs[0].Data), subject) || msgs[0].To[0] != "far@example.com" {
		t.Fatalf("relayed after the restart: %s", msgs[0].Data)
	}
	waitUntil(t, "the queue to empty", func() bool { return attempts() == -1 })
}

func TestPermanentRefusalBounces(t *testing.T) {
	cfg := testConfig(t)
	relay, err := smtptest.Start(smtptest.Options{RejectRcpt: func(a string) bool { return strings.HasPrefix(a, "gone@") }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = relay.Close() })
	cfg.SMTPURL, cfg.MailDomain = "smtp://"+relay.Addr()+"?insecure=1", testMailDomain
	srv := startServer(t, cfg)
	c := register(t, srv, "jay")
	c.ok("SendEmailMessage", map[string]any{"To": []string{"gone@example.com"}, "Subject": "hi"})
	e := fetchEmail(c, c.waitPush("bounce", isCmd("EmailReceived"))["Email"].(map[string]any)["ID"])
	if !strings.HasPrefix(e["Subject"].(string), bounceSubject) || !strings.Contains(e["Text"].(string), "550") {
		t.Fatalf("bounce: %v", e)
	}
}

// A relay that does not offer STARTTLS is refused unless -smtp-url says ?insecure=1.
func TestRelayWithoutSTARTTLSIsRefused(t *testing.T) {
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	cfg.SMTPURL = strings.TrimSuffix(cfg.SMTPURL, "?insecure=1")
	srv := startServer(t, cfg)
	c, _ := registerWith(t, srv, "plain", map[string]any{"email": strings.ToLower(uniqueName("p")) + "@example.org"})
	c.fails("SendVerificationCode", map[string]any{"kind": "email"}, "Sending the code failed")
	if n := len(relay.Messages()); n != 0 {
		t.Fatalf("relay got %d messages over plain text", n)
	}
}

func TestParseSMTPURL(t *testing.T) {
	for raw, want := range map[string]relayConfig{
		"smtp://u:p@mail.example.com":         {addr: "mail.example.com:587", host: "mail.example.com", user: "u", password: "p"},
		"smtps://mail.example.com":            {addr: "mail.example.com:465", host: "mail.example.com", implicitTLS: true},
		"smtp://127.0.0.1:2525?insecure=1":    {addr: "127.0.0.1:2525", host: "127.0.0.1", insecure: true},
		"smtp://u%40x:p%2Fq@relay.example:25": {addr: "relay.example:25", host: "relay.example", user: "u@x", password: "p/q"},
	} {
		got, err := parseSMTPURL(raw)
		if err != nil || got != want {
			t.Errorf("%s: %+v %v", raw, got, err)
		}
	}
	for _, bad := range []string{"http://x", "smtp://", "relay:25"} {
		if _, err := parseSMTPURL(bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
