package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
)

func TestTwoInstancesShareNATSAndPostgres(t *testing.T) {
	natsURL := startNATS(t)
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.NATS, cfgB.NATS = natsURL, natsURL
	a := startServer(t, cfgA)
	b := startServer(t, cfgB)
	alice := register(t, a, "onA")
	bob := register(t, b, "onB")
	alice2 := login(t, b, alice.name) // alice on both instances
	cid := newConvo(t, bob, "across", alice)
	alice2.waitPush("conversation on B", isCmd("CreateConversation"))
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "from instance B"})
	for _, c := range []*client{alice, alice2} {
		if p := c.waitPush("message from B", isMsgIn(cid)); p["content"] != "from instance B" {
			t.Fatalf("got %v", p)
		}
	}
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "from instance A"})
	bob.waitPush("message from A", func(p map[string]any) bool { return p["content"] == "from instance A" })
}

// syncBuffer is a log sink that tests can read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// captureLogs sends slog output to a buffer for the rest of the test.
func captureLogs(t *testing.T) *syncBuffer {
	buf := &syncBuffer{}
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	return buf
}

func TestPanickingCommandIsRecoveredAndLogged(t *testing.T) {
	functs["PanicForTest"] = func(context.Context, *Session, *Request) (reply, error) {
		var m map[string]int
		m["boom"]++ // a nil-map write: a real runtime panic
		return nil, nil
	}
	t.Cleanup(func() { delete(functs, "PanicForTest") })
	logs := captureLogs(t)
	srv := startServer(t, testConfig(t))
	c := register(t, srv, "panicky")
	c.fails("PanicForTest", nil, "internal error")
	out := logs.String()
	if !strings.Contains(out, "panic recovered") || !strings.Contains(out, "assignment to entry in nil map") ||
		!strings.Contains(out, "database_test.go") || !strings.Contains(out, "level=ERROR") {
		t.Fatalf("panic not logged with its stack at error level:\n%s", out)
	}
	// The session goes on.
	c.ok("CreateConversation", map[string]any{"Name": "after the panic"})
}

func TestProtectRestartsAfterPanic(t *testing.T) {
	logs := captureLogs(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := 0
	Protect(ctx, "flaky", func(context.Context) {
		runs++
		if runs < 3 {
			panic(fmt.Sprintf("failure %d", runs))
		}
	})
	if runs != 3 {
		t.Fatalf("fn ran %d times, want 3 (two panics, then a normal return)", runs)
	}
	if n := strings.Count(logs.String(), "panic recovered"); n != 2 {
		t.Fatalf("%d panics logged, want 2:\n%s", n, logs)
	}
}

// A session whose client stops reading must not make anyone else lose events: it is closed,
// and the others get everything.
func TestSlowSessionIsClosedWithoutHurtingOthers(t *testing.T) {
	logs := captureLogs(t)
	srv := startServer(t, testConfig(t))
	fast := register(t, srv, "fast")
	slowName := uniqueName("slow")
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	// Register, read the reply, then never read again.
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"cmd":"CreateUser","username":"`+slowName+`","password":"`+testPassword+`"}`))
	if _, _, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv.db.natsd))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	payload := []byte(`{"cmd":"Noise","pad":"` + strings.Repeat("x", 16<<10) + `"}`)
	// The slow user gets far more than its pending limit; the fast one gets fewer events than
	// the limit, so it cannot overflow even if the machine is too busy to drain it meanwhile.
	const events, ticks = 2000, pushBuffer / 2
	for i := range events {
		_ = nc.Publish(userSubject(upperName(slowName)), payload)
		if i < ticks {
			_ = nc.Publish(userSubject(upperName(fast.name)), []byte(fmt.Sprintf(`{"cmd":"Tick","n":%d}`, i)))
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range ticks {
		fast.waitPush(fmt.Sprintf("tick %d", i), func(p map[string]any) bool { return p["cmd"] == "Tick" && p["n"] == float64(i) })
	}
	waitUntil(t, "the slow session to be closed", func() bool {
		return strings.Contains(logs.String(), "closing session that cannot keep up")
	})
}

// Sessions busy with their own commands still forward their events: members of one
// conversation who all pipeline sends get three events per command of their own, which must not
// overflow their event buffers.
func TestBusySessionsKeepUpWithTheirEvents(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandRate, cfg.CommandBurst = 100000, 100000
	srv := startServer(t, cfg)
	users := []*client{register(t, srv, "busy"), register(t, srv, "busy"), register(t, srv, "busy")}
	cid := newConvo(t, users[0], "busy", users[1], users[2])
	const n = pushBuffer
	for i := range n {
		for _, u := range users {
			u.sendRaw(fmt.Sprintf(`{"cmd":"SendMessage","rid":"p%d","CID":"%s","content":"m%d"}`, i, cid, i))
		}
	}
	for _, u := range users {
		for i := range n {
			if rep := u.waitReply(fmt.Sprintf("p%d", i)); rep["ok"] != true {
				t.Fatalf("%s: send %d: %v", u.name, i, rep)
			}
		}
		u.waitFor("every event", func() bool { // called with u.mu held
			count := 0
			for _, p := range u.pushes {
				if isMsgIn(cid)(p) {
					count++
				}
			}
			return count == n*len(users)
		})
	}
}

// pgProxy forwards TCP connections to the local PostgreSQL socket and can cut them all, which is
// what a PostgreSQL outage looks like to the server.
type pgProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	down  bool
	conns []net.Conn
}

func startPGProxy(t *testing.T) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.down {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("unix", "/run/postgresql/.s.PGSQL.5432")
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *pgProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// cut closes every connection and refuses new ones until restore.
func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *pgProxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// A PostgreSQL outage reads the same to a client as a quick-store outage, and the server
// carries on when PostgreSQL is back.
func TestPostgresOutageAnswersStorageUnavailable(t *testing.T) {
	proxy := startPGProxy(t)
	cfg := testConfig(t)
	cfg.Postgres = fmt.Sprintf("host=127.0.0.1 port=%d %s connect_timeout=2", proxy.port(), testDatabase(t))
	srv := startServer(t, cfg)
	alice := register(t, srv, "alice")
	cid := newConvo(t, alice, "")
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "before"})
	proxy.cut()
	alice.fails("SendMessage", map[string]any{"CID": cid, "content": "during"}, "storage unavailable, try again shortly")
	proxy.restore()
	waitUntil(t, "PostgreSQL to be usable again", func() bool {
		return alice.call("SendMessage", map[string]any{"CID": cid, "content": "after", "client_id": "after-1"})["error"] == nil
	})
}
