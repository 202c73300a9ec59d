package main

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"
)

// dialFrom opens a raw websocket that claims, through X-Forwarded-For, to come from addr; the
// server believes it when 127.0.0.1 is a trusted proxy.
func dialFrom(t testing.TB, srv *testServer, addr string) *client {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws/websocket", http.Header{"X-Forwarded-For": {addr}})
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, &rawWS{c})
}

// concurrently sends one frame on each of n fresh connections at once and returns the replies.
func concurrently(t *testing.T, srv *testServer, n int, cmd string, fields map[string]any) []map[string]any {
	t.Helper()
	conns := make([]*client, n)
	for i := range conns {
		conns[i] = dialRaw(t, srv)
	}
	replies := make([]map[string]any, n)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			replies[i] = c.call(cmd, fields)
		}()
	}
	wg.Wait()
	return replies
}

func countErrors(replies []map[string]any, substr string) int {
	n := 0
	for _, r := range replies {
		if e, _ := r["error"].(string); strings.Contains(e, substr) {
			n++
		}
	}
	return n
}

// Simultaneous guesses cannot all pass a check that only looks: each spends its token before
// bcrypt runs, and one guess per user is checked at a time.
func TestSimultaneousPasswordGuessesAreLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.guessBackoff = time.Hour // after the free guesses, nothing more gets through in this test
	srv := startServer(t, cfg)
	victim := register(t, srv, "victim")
	replies := concurrently(t, srv, 150, "ValidateUser", map[string]any{"username": victim.name, "password": "a wrong guess"})
	checked := countErrors(replies, "Invalid username or password.")
	if checked > freeGuesses || checked == 0 {
		t.Fatalf("%d of 150 simultaneous guesses were checked; want 1 to %d", checked, freeGuesses)
	}
	c := dialRaw(t, srv)
	for {
		e, _ := c.call("ValidateUser", map[string]any{"username": victim.name, "password": "a wrong guess"})["error"].(string)
		if !strings.Contains(e, "Invalid username or password.") {
			break
		}
		checked++
	}
	if checked != freeGuesses {
		t.Fatalf("%d guesses were checked in all; want %d", checked, freeGuesses)
	}
	c.fails("ValidateUser", map[string]any{"username": victim.name, "password": testPassword}, "Too many failed attempts")
}

func TestBackoffIsPerAddressAndSparesResumeTokens(t *testing.T) {
	cfg := testConfig(t)
	cfg.TrustedProxies = "127.0.0.1"
	cfg.guessBackoff = time.Hour
	srv := startServer(t, cfg)
	c := dialFrom(t, srv, "198.51.100.7")
	c.name = uniqueName("victim")
	token := c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword})["session"].(string)

	attacker := dialFrom(t, srv, "203.0.113.9")
	for range freeGuesses {
		attacker.fails("ValidateUser", map[string]any{"username": c.name, "password": "a wrong guess"}, "Invalid username or password.")
	}
	attacker.fails("ValidateUser", map[string]any{"username": c.name, "password": testPassword}, "try again in")
	// The same attacker behind the same IPv6 /64 is the same address.
	v6 := dialFrom(t, srv, "2001:db8:1:2::a")
	for range freeGuesses {
		v6.fails("ValidateUser", map[string]any{"username": c.name, "password": "a wrong guess"}, "Invalid username or password.")
	}
	dialFrom(t, srv, "2001:db8:1:2:ffff::b").fails("ValidateUser", map[string]any{"username": c.name, "password": testPassword}, "try again in")

	dialFrom(t, srv, "203.0.113.9").ok("ValidateUser", map[string]any{"username": c.name, "session": token})
	dialFrom(t, srv, "198.51.100.7").ok("ValidateUser", map[string]any{"username": c.name, "password": testPassword})
}

func TestSimultaneousResetAnswersAreLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.guessBackoff = time.Hour
	cfg.TrustedProxies = "127.0.0.1"
	srv := startServer(t, cfg)
	c := dialRaw(t, srv)
	c.name = uniqueName("resettable")
	c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword, "secQuests": []map[string]any{
		{"Question": "pet?", "Answer": "Rex"}, {"Question": "city?", "Answer": "Oslo"}}})
	wrong := []map[string]any{{"Answer": "x"}, {"Answer": "y"}}
	replies := concurrently(t, srv, 100, "ResetUserPassword", map[string]any{"username": c.name, "password": "new password 1", "secQuests": wrong})
	checked := 0
	for _, r := range replies {
		if r["success"] == "false" {
			checked++
		}
	}
	if checked > freeGuesses || checked == 0 {
		t.Fatalf("%d of 100 simultaneous answers were checked; want 1 to %d", checked, freeGuesses)
	}
	right := []map[string]any{{"Answer": "rex"}, {"Answer": "oslo"}}
	dialRaw(t, srv).fails("ResetUserPassword", map[string]any{"username": c.name, "password": "new password 1", "secQuests": right}, "Too many failed attempts")
	// The password was not reset (checked from an address without a back-off).
	dialFrom(t, srv, "198.51.100.99").ok("ValidateUser", map[string]any{"username": c.name, "password": testPassword})
}

func TestPasswordChecksOfLoggedInUsersAreLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.guessBackoff = time.Hour
	cfg.TrustedProxies = "127.0.0.1"
	srv := startServer(t, cfg)
	c := register(t, srv, "sessionthief")
	for range freeGuesses {
		c.fails("DeleteUser", map[string]any{"password": "not it at all"}, "Wrong password.")
	}
	c.fails("ChangeUserPassword", map[string]any{"OldPassword": testPassword, "NewPassword": "another password"}, "Too many failed attempts")
	c.fails("DeleteUser", map[string]any{"password": testPassword}, "Too many failed attempts")
	dialFrom(t, srv, "198.51.100.99").ok("ValidateUser", map[string]any{"username": c.name, "password": testPassword})
}

// bcrypt compares only the first 72 bytes: a longer password must not log in.
func TestOverlongPasswordsAreRefusedAtLogin(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c := dialRaw(t, srv)
	c.name = uniqueName("long")
	pw := strings.Repeat("p", maxPassword)
	c.ok("CreateUser", map[string]any{"username": c.name, "password": pw})
	d := dialRaw(t, srv)
	d.fails("ValidateUser", map[string]any{"username": c.name, "password": pw + "anything"}, "Invalid username or password.")
	d.fails("ChangeUserPassword", map[string]any{"OldPassword": pw + "x", "NewPassword": "whatever123"}, "not logged in")
	c.fails("ChangeUserPassword", map[string]any{"OldPassword": pw + "x", "NewPassword": "whatever123"}, "Wrong password.")
	d.ok("ValidateUser", map[string]any{"username": c.name, "password": pw})
}

// A taken name is refused before any bcrypt or budget is spent; new accounts per address are
// budgeted.
func TestRegistrationBudget(t *testing.T) {
	cfg := testConfig(t)
	cfg.RegistrationsPerDay = 2
	srv := startServer(t, cfg)
	first := register(t, srv, "budget")
	c := dialRaw(t, srv)
	for range 5 {
		c.fails("CreateUser", map[string]any{"username": first.name, "password": testPassword}, "Username already taken.")
	}
	register(t, srv, "budget")
	c.fails("CreateUser", map[string]any{"username": uniqueName("budget"), "password": testPassword}, "Too many new accounts")
}

// While one login from an address is being checked, a second one at once is refused.
func TestHandshakesPerAddress(t *testing.T) {
	cfg := testConfig(t)
	cfg.HandshakesPerAddr = 1
	srv := startServer(t, cfg)
	name := uniqueName("slowhash")
	// A costly hash makes the first login take long enough to overlap the others.
	hash, _ := bcrypt.GenerateFromPassword([]byte(testPassword), 13)
	u := &UserRecord{Username: name, PasswordHash: string(hash), UserID: randomToken()}
	if err := putRecord(t.Context(), srv.db.quick, userKey(name), u, PutOptions{Mode: CreateOnly}); err != nil {
		t.Fatal(err)
	}
	replies := concurrently(t, srv, 4, "ValidateUser", map[string]any{"username": name, "password": testPassword})
	if busy := countErrors(replies, "Too many logins in progress"); busy == 0 {
		t.Fatalf("no login was refused while another was in progress: %v", replies)
	}
}

func TestConnectionsPerAddressAndLoginDeadline(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConnsPerAddr = 3
	cfg.LoginTimeout = 300 * time.Millisecond
	srv := startServer(t, cfg)
	var open []*websocket.Conn
	for range 3 {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws/websocket", nil)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, ws)
	}
	if ws, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws/websocket", nil); err == nil {
		ws.Close()
		t.Fatal("a fourth connection from one address was accepted")
	}
	// Connections that do not log in are closed at the deadline, which frees the address.
	for _, ws := range open {
		_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
		_, _, err := ws.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != closeLoginTimeout {
			t.Fatalf("idle unauthenticated connection: %v, want close %d", err, closeLoginTimeout)
		}
		ws.Close()
	}
	waitUntil(t, "the address's connections to be released", func() bool {
		ws, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws/websocket", nil)
		if err == nil {
			ws.Close()
		}
		return err == nil
	})
}

func TestClientAddressBehindTrustedProxies(t *testing.T) {
	ps, err := parseProxies("10.0.0.0/8, 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseProxies("not-an-address"); err == nil {
		t.Error("a bad -trusted-proxies entry was accepted")
	}
	cases := []struct{ remote, xff, want string }{
		{"198.51.100.1:1234", "203.0.113.5", "198.51.100.1"},                // untrusted peer: its header is ignored
		{"127.0.0.1:1234", "203.0.113.5", "203.0.113.5"},                    // trusted peer
		{"127.0.0.1:1234", "1.2.3.4, 203.0.113.5, 10.1.1.1", "203.0.113.5"}, // rightmost untrusted hop
		{"127.0.0.1:1234", "", "127.0.0.1"},
		{"127.0.0.1:1234", "garbage", "127.0.0.1"},
		{"[::ffff:127.0.0.1]:1", "203.0.113.5", "203.0.113.5"},
	}
	for _, tc := range cases {
		r, _ := http.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := ps.clientAddr(r).String(); got != tc.want {
			t.Errorf("clientAddr(%s, %q) = %s, want %s", tc.remote, tc.xff, got, tc.want)
		}
	}
	a := limitKey(netip.MustParseAddr("2001:db8:1:2:3:4:5:6"))
	b := limitKey(netip.MustParseAddr("2001:db8:1:2:ffff::1"))
	if a != b || a != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 limit keys %s and %s, want one /64", a, b)
	}
}

// Contact discovery is budgeted per user per day, and lookups that find nobody are throttled.
func TestContactLookupsAreBudgeted(t *testing.T) {
	cfg := testConfig(t)
	cfg.LookupsPerDay = 10
	relay := withMailRelay(t, &cfg)
	srv := startServer(t, cfg)
	known := dialRaw(t, srv)
	known.name = uniqueName("known")
	known.ok("CreateUser", map[string]any{"username": known.name, "password": testPassword, "email": known.name + "@example.org"})
	verified(t, relay, known, "email", strings.ToLower(known.name)+"@example.org", "")
	c := register(t, srv, "prober")
	var emails []map[string]any
	for i := range 7 {
		emails = append(emails, map[string]any{"Name": "x", "Email": fmt.Sprintf("nobody%d@example.org", i)})
	}
	emails = append(emails, map[string]any{"Name": "K", "Email": known.name + "@example.org"})
	found := c.ok("MatchUsers", map[string]any{"Emails": emails})["Users"].([]any)
	if len(found) != 1 || found[0].(map[string]any)["Username"] != known.name {
		t.Fatalf("MatchUsers: %v", found)
	}
	c.ok("GetUserByUsername", map[string]any{"username": known.name})
	c.fails("MatchUsers", map[string]any{"Emails": emails[:2]}, "Too many lookups today")
	c.ok("GetUserByEmail", map[string]any{"email": known.name + "@example.org"})
	c.fails("GetUserByUsername", map[string]any{"username": known.name}, "Too many lookups today")

	d := register(t, startServer(t, testConfig(t)), "guesser")
	for i := range missBurst {
		d.fails("GetUserByEmail", map[string]any{"email": fmt.Sprintf("guess%d@example.org", i)}, "No such user.")
	}
	d.fails("GetUserByUsername", map[string]any{"username": d.name}, "unknown users")
}

// The login gate admits loginsAtOnce at a time; the next waits, and gives up when its context
// ends (or loginQueueWait passes) instead of piling onto the database; beyond the queue's room
// a login is refused at once.
func TestLoginGate(t *testing.T) {
	g := newGate(2, 1)
	if !g.enter(t.Context()) || !g.enter(t.Context()) {
		t.Fatal("the first two were not admitted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if g.enter(ctx) {
		t.Fatal("a third was admitted while two are in")
	}
	waiter := make(chan bool)
	go func() { waiter <- g.enter(t.Context()) }()
	waitUntil(t, "the waiter to queue", func() bool { return g.waiting.Load() == 1 })
	// The queue is full: refused without queueing (a watcher ends the wait of one that queues).
	full, stop := context.WithCancel(t.Context())
	var queued atomic.Bool
	go func() {
		for full.Err() == nil {
			if g.waiting.Load() > 1 {
				queued.Store(true)
				stop()
			}
			runtime.Gosched()
		}
	}()
	admitted := g.enter(full)
	stop()
	if admitted || queued.Load() {
		t.Fatalf("a login beyond the queue's room was admitted (%v) or queued (%v)", admitted, queued.Load())
	}
	g.leave()
	if !<-waiter {
		t.Fatal("the waiter got no place after one left")
	}
	g.leave()
	if !g.enter(t.Context()) {
		t.Fatal("no place after one left")
	}
}

// TestMailRecipientsPerDay: outbound mail counts its recipients against a daily budget
// (-mail-recipients-per-day), so that 50 recipients a message cannot make 10,000 a day; the
// refused message is neither sent nor stored, and invitations count too.
func TestMailRecipientsPerDay(t *testing.T) {
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	cfg.MailsPerDay, cfg.MailRcptsPerDay = 0, 60
	srv := startServer(t, cfg)
	alice := register(t, srv, "rcpts")
	to := func(n, from int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("r%d@example.com", from+i))
		}
		return out
	}
	alice.ok("SendEmailMessage", map[string]any{"To": to(40, 0), "Cc": to(10, 40), "Subject": "fifty"})
	alice.fails("SendEmailMessage", map[string]any{"To": to(11, 50), "Subject": "sixty-one"}, "Too many recipients today")
	alice.ok("SendEmailMessage", map[string]any{"To": to(10, 50), "Subject": "sixty"})
	alice.fails("SendEmailInvite", map[string]any{"email": "friend@example.com"}, "Too many recipients today")
	alice.fails("SendEmailMessage", map[string]any{"To": to(1, 60), "Subject": "one more"}, "Too many recipients today")

	msgs, err := relay.Wait(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	rcpts := 0
	for _, m := range msgs {
		rcpts += len(m.To)
	}
	sent := 0
	for _, e := range emails(alice.ok("GetAllEmails", nil)) {
		if e["Folder"] == "sent" {
			sent++
		}
	}
	if len(msgs) != 2 || rcpts != 60 || sent != 2 {
		t.Fatalf("relayed %d messages to %d recipients, %d in Sent; want 2, 60, 2", len(msgs), rcpts, sent)
	}
	// Another user has a budget of their own.
	register(t, srv, "rcpts2").ok("SendEmailMessage", map[string]any{"To": to(50, 0), "Subject": "mine"})
}
