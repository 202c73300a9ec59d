package main

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// registerNamed creates the user name on a new connection and returns the logged-in client.
func registerNamed(t *testing.T, srv *testServer, name string) *client {
	t.Helper()
	c := dialRaw(t, srv)
	c.name = name
	c.ok("CreateUser", map[string]any{"username": name, "password": testPassword})
	return c
}

// Nobody can register as the server's own mail: -mail-from's local part and the role names,
// in any case; CheckUsername reports them taken.
func TestReservedNamesAtRegistration(t *testing.T) {
	cfg := testConfig(t)
	robot := uniqueName("robot")
	cfg.MailDomain, cfg.MailFrom = testMailDomain, robot+"@"+testMailDomain
	srv := startServer(t, cfg)
	c := dialRaw(t, srv)
	for _, name := range []string{"postmaster", "Postmaster", "ABUSE", "noreply", "no_reply", "NoReply", "admin",
		"Administrator", "root", "hostmaster", "webmaster", "mailer_daemon", "pingedchat", "PingedChat", robot, strings.ToUpper(robot)} {
		rep := c.call("CreateUser", map[string]any{"username": name, "password": testPassword})
		if e, _ := rep["error"].(string); !strings.Contains(e, "is reserved for the server's own mail") {
			t.Errorf("CreateUser %q: %v", name, rep)
		}
		if rep := c.ok("CheckUsername", map[string]any{"username": name}); rep["Available"] != false {
			t.Errorf("CheckUsername %q: %v", name, rep)
		}
	}
	if rep := c.ok("CheckUsername", map[string]any{"username": uniqueName("admins")}); rep["Available"] != true {
		t.Errorf("a name that only starts like a reserved one: %v", rep)
	}
}

// A -mail-from of the mail domain that a user already has stops the server at start-up, with
// an error naming the flag; one of another domain does not.
func TestMailFromOfAUserRefusedAtStart(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain = testMailDomain
	srv := startServer(t, cfg)
	taken := register(t, srv, "taken")

	cfg.MailFrom = strings.ToUpper(taken.name) + "@" + strings.ToUpper(testMailDomain)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := NewServer(ctx, cfg)
	if err == nil {
		s.Close()
		t.Fatal("started with a -mail-from that is a user's address")
	}
	if !strings.Contains(err.Error(), "-mail-from") || !strings.Contains(err.Error(), taken.name) {
		t.Fatalf("start-up error: %v", err)
	}
	cfg.MailFrom = taken.name + "@elsewhere.example"
	s, err = NewServer(ctx, cfg)
	if err != nil {
		t.Fatalf("a -mail-from of another domain: %v", err)
	}
	s.Close()
}

// Mail for postmaster@ and abuse@ (any case, and Postmaster without a domain, RFC 5321
// §4.5.1), by SMTP and by HTTP, reaches every -admin's mailbox once and nobody else's; without
// -admins it is refused like any unknown address.
func TestPostmasterAndAbuseReachTheAdmins(t *testing.T) {
	cfg := testConfig(t)
	first, second := uniqueName("boss"), uniqueName("deputy")
	cfg.SMTPListen, cfg.MailDomain, cfg.InboundToken = "127.0.0.1:0", testMailDomain, "inbound-secret"
	cfg.Admins = first + ", " + second + ",gone_admin"
	srv := startServer(t, cfg)
	boss, deputy := registerNamed(t, srv, first), registerNamed(t, srv, second)
	user := register(t, srv, "user")

	msg := func(to, subject string) []byte {
		return []byte("From: reporter@example.net\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + randomToken() + "@example.net>\r\n\r\nabout a user\r\n")
	}
	pm := "Postmaster@" + strings.ToUpper(testMailDomain)
	if err := smtpSend(t, srv, "reporter@example.net", []string{pm, boss.name + "@" + testMailDomain}, msg(pm, "to postmaster")); err != nil {
		t.Fatal(err)
	}
	abuse := "abuse@" + testMailDomain
	if code := postRaw(t, srv, cfg.InboundToken, url.Values{"to": {abuse}}, msg(abuse, "to abuse")); code != http.StatusOK {
		t.Fatalf("abuse@ over HTTP: %d", code)
	}
	// go-smtp's parser wants a domain in RCPT (501 for <Postmaster>); the HTTP way takes it.
	if code := postRaw(t, srv, cfg.InboundToken, url.Values{"to": {"Postmaster"}}, msg("Postmaster", "to bare postmaster")); code != http.StatusOK {
		t.Fatalf("bare Postmaster over HTTP: %d", code)
	}

	want := "to abuse|to bare postmaster|to postmaster"
	for _, c := range []*client{boss, deputy} {
		var subjects []string
		for _, e := range emails(c.ok("GetAllEmails", nil)) {
			subjects = append(subjects, e["Subject"].(string))
		}
		slices.Sort(subjects)
		if got := strings.Join(subjects, "|"); got != want {
			t.Errorf("%s's mailbox: %s, want %s (each once)", c.name, got, want)
		}
	}
	if got := emails(user.ok("GetAllEmails", nil)); len(got) != 0 {
		t.Errorf("a user who is not an admin got %d e-mails", len(got))
	}

	cfg.Admins, cfg.SMTPListen = "", "127.0.0.1:0"
	plain := startServer(t, cfg)
	if err := smtpSend(t, plain, "reporter@example.net", []string{"postmaster@" + testMailDomain}, msg(pm, "nobody")); err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("postmaster@ without -admins: %v", err)
	}
}
