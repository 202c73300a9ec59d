package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"
)

// Test infrastructure: a fresh PostgreSQL database per test binary run, real servers on
// loopback, and clients over a real websocket (raw, or SockJS framed).

var testDB struct {
	once sync.Once
	name string
	err  error
}

// testDatabase creates (once per run) a fresh database and returns its connection string.
// PostgreSQL must be running with a role for this OS user: ./add_deps.sh sets that up.
func testDatabase(t testing.TB) string {
	t.Helper()
	testDB.once.Do(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, "dbname=postgres")
		if err != nil {
			testDB.err = fmt.Errorf("connecting to PostgreSQL (run ./add_deps.sh): %w", err)
			return
		}
		defer conn.Close(ctx)
		testDB.name = fmt.Sprintf("pingedchat_test_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
		_, testDB.err = conn.Exec(ctx, "CREATE DATABASE "+testDB.name)
	})
	if testDB.err != nil {
		t.Fatal(testDB.err)
	}
	return "dbname=" + testDB.name
}

func TestMain(m *testing.M) {
	if os.Getenv("PINGED_TEST_LOG") == "" {
		slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	}
	code := m.Run()
	if testDB.name != "" && code == 0 {
		ctx := context.Background()
		if conn, err := pgx.Connect(ctx, "dbname=postgres"); err == nil {
			_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+testDB.name+" WITH (FORCE)")
			conn.Close(ctx)
		}
	}
	os.Exit(code)
}

// testPool is a pool on the test database, closed with the test.
func testPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// testQuickStore, when set, is the -quickstore of every test server (the end-to-end suites run
// once per backend).
var testQuickStore string

func testConfig(t testing.TB) Config {
	cfg := defaultConfig()
	if testQuickStore != "" {
		cfg.QuickStore = testQuickStore
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.Postgres = testDatabase(t)
	cfg.bcryptCost = bcrypt.MinCost
	// Every test user comes from 127.0.0.1: the per-address limits are tested on their own.
	cfg.MaxConnsPerAddr, cfg.HandshakesPerAddr, cfg.RegistrationsPerDay = 0, 0, 0
	cfg.LookupsPerDay, cfg.ConvosPerHour = 0, 0
	cfg.QuickStoreWait = 2 * time.Second
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.mailDNS = fakeDNS{} // inbound mail's SPF/DKIM/DMARC look-ups never leave the machine
	if tt, ok := t.(interface{ TempDir() string }); ok {
		cfg.FilesDir = tt.TempDir()
	}
	return cfg
}

type testServer struct {
	*Server
	addr string
}

// startServer runs a pingedchat instance on loopback until the test ends.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := NewServer(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	return &testServer{Server: srv, addr: ln.Addr().String()}
}

// startNATS runs a NATS server on loopback that several instances can share.
func startNATS(t testing.TB) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns.ClientURL()
}

// frameConn is one transport to the server: raw websocket or SockJS framed.
type frameConn interface {
	write(msg string) error
	read() ([]string, error) // the next messages, blocking
	close()
}

type rawWS struct{ c *websocket.Conn }

func (r *rawWS) write(msg string) error { return r.c.WriteMessage(websocket.TextMessage, []byte(msg)) }
func (r *rawWS) close()                 { _ = r.c.Close() }
func (r *rawWS) read() ([]string, error) {
	_, p, err := r.c.ReadMessage()
	if err != nil {
		return nil, err
	}
	return []string{string(p)}, nil
}

// sockjsWS speaks SockJS's framing over its websocket transport: "o" opens, "a[…]" carries
// messages, "h" is a heartbeat, "c[code,reason]" closes; the client sends JSON arrays.
type sockjsWS struct{ c *websocket.Conn }

func (s *sockjsWS) write(msg string) error {
	b, _ := json.Marshal([]string{msg})
	return s.c.WriteMessage(websocket.TextMessage, b)
}
func (s *sockjsWS) close() { _ = s.c.Close() }
func (s *sockjsWS) read() ([]string, error) {
	for {
		_, p, err := s.c.ReadMessage()
		if err != nil {
			return nil, err
		}
		switch {
		case len(p) == 0 || p[0] == 'o' || p[0] == 'h':
			continue
		case p[0] == 'c':
			return nil, fmt.Errorf("closed by server: %s", p[1:])
		case p[0] == 'a':
			var msgs []string
			if err := json.Unmarshal(p[1:], &msgs); err != nil {
				return nil, fmt.Errorf("bad SockJS frame %q: %w", p, err)
			}
			return msgs, nil
		default:
			return nil, fmt.Errorf("unexpected SockJS frame %q", p)
		}
	}
}

// client is a test user's connection: calls wait for their reply (matched by rid); pushes
// (frames without rid) are queued for waitPush.
type client struct {
	t      testing.TB
	conn   frameConn
	name   string
	ridSeq atomic.Int64

	mu      sync.Mutex
	cond    chan struct{} // closed and replaced whenever something arrives
	replies map[string]map[string]any
	pushes  []map[string]any
	raw     []string // every frame received, in order
	closed  error
}

const waitTimeout = 10 * time.Second

func dialRaw(t testing.TB, srv *testServer) *client {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws/websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, &rawWS{c})
}

func dialSockJS(t testing.TB, srv *testServer) *client {
	t.Helper()
	url := fmt.Sprintf("ws://%s/ws/000/%s/websocket", srv.addr, randomToken()[:8])
	c, _, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {"http://" + srv.addr}})
	if err != nil {
		t.Fatal(err)
	}
	return newClient(t, &sockjsWS{c})
}

func newClient(t testing.TB, conn frameConn) *client {
	c := &client{t: t, conn: conn, cond: make(chan struct{}), replies: map[string]map[string]any{}}
	go c.readLoop()
	t.Cleanup(conn.close)
	return c
}

func (c *client) readLoop() {
	for {
		msgs, err := c.conn.read()
		c.mu.Lock()
		if err != nil {
			c.closed = err
			close(c.cond)
			c.mu.Unlock()
			return
		}
		for _, m := range msgs {
			c.raw = append(c.raw, m)
			var v map[string]any
			if json.Unmarshal([]byte(m), &v) != nil {
				v = map[string]any{"unparsable": m}
			}
			if rid, ok := v["rid"].(string); ok {
				c.replies[rid] = v
			} else {
				c.pushes = append(c.pushes, v)
			}
		}
		close(c.cond)
		c.cond = make(chan struct{})
		c.mu.Unlock()
	}
}

// waitFor waits until check (called with c.mu held) returns true.
func (c *client) waitFor(what string, check func() bool) {
	c.t.Helper()
	deadline := time.After(waitTimeout)
	for {
		c.mu.Lock()
		ok, closed, cond := check(), c.closed, c.cond
		c.mu.Unlock()
		if ok {
			return
		}
		if closed != nil {
			c.t.Fatalf("%s: waiting for %s: connection closed: %v", c.name, what, closed)
		}
		select {
		case <-cond:
		case <-deadline:
			c.t.Fatalf("%s: timed out waiting for %s", c.name, what)
		}
	}
}

// sendRaw sends a frame as is.
func (c *client) sendRaw(frame string) {
	c.t.Helper()
	if err := c.conn.write(frame); err != nil {
		c.t.Fatalf("%s: write: %v", c.name, err)
	}
}

// call sends a command with a fresh rid and returns its direct reply.
func (c *client) call(cmd string, fields map[string]any) map[string]any {
	c.t.Helper()
	rid := fmt.Sprintf("r%d", c.ridSeq.Add(1))
	req := map[string]any{"cmd": cmd, "rid": rid}
	for k, v := range fields {
		req[k] = v
	}
	b, _ := json.Marshal(req)
	c.sendRaw(string(b))
	return c.waitReply(rid)
}

func (c *client) waitReply(rid string) map[string]any {
	c.t.Helper()
	var rep map[string]any
	c.waitFor("reply "+rid, func() bool { rep = c.replies[rid]; return rep != nil })
	return rep
}

// ok calls and fails the test unless the reply has no error.
func (c *client) ok(cmd string, fields map[string]any) map[string]any {
	c.t.Helper()
	rep := c.call(cmd, fields)
	if e, has := rep["error"]; has {
		c.t.Fatalf("%s: %s: unexpected error %v", c.name, cmd, e)
	}
	if rep["cmd"] != cmd {
		c.t.Fatalf("%s: %s: reply has cmd %v", c.name, cmd, rep["cmd"])
	}
	return rep
}

// fails calls and fails the test unless the reply is an error containing want.
func (c *client) fails(cmd string, fields map[string]any, want string) map[string]any {
	c.t.Helper()
	rep := c.call(cmd, fields)
	e, _ := rep["error"].(string)
	if !strings.Contains(e, want) {
		c.t.Fatalf("%s: %s: want error containing %q, got %v", c.name, cmd, want, rep)
	}
	return rep
}

// waitPush returns the first queued push (removing it and every push before it) that matches.
func (c *client) waitPush(what string, match func(map[string]any) bool) map[string]any {
	c.t.Helper()
	var got map[string]any
	c.waitFor(what, func() bool {
		for i, p := range c.pushes {
			if match(p) {
				got = p
				c.pushes = c.pushes[i+1:]
				return true
			}
		}
		return false
	})
	return got
}

// pushesMatching returns the queued pushes that match, leaving the queue as it is.
func (c *client) pushesMatching(match func(map[string]any) bool) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, p := range c.pushes {
		if match(p) {
			out = append(out, p)
		}
	}
	return out
}

func isCmd(cmd string) func(map[string]any) bool {
	return func(p map[string]any) bool { return p["cmd"] == cmd }
}

var userSeq atomic.Int64

// uniqueName makes a username no other test uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid()%10000, userSeq.Add(1))
}

const testPassword = "correct horse battery"

// register creates a user on a new raw-websocket connection and returns the logged-in client.
func register(t testing.TB, srv *testServer, prefix string) *client {
	t.Helper()
	c := dialRaw(t, srv)
	c.name = uniqueName(prefix)
	rep := c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword})
	if rep["session"] == "" || rep["Username"] != c.name {
		t.Fatalf("CreateUser reply: %v", rep)
	}
	return c
}

// login opens another logged-in connection for an existing user.
func login(t testing.TB, srv *testServer, name string) *client {
	t.Helper()
	c := dialRaw(t, srv)
	c.name = name
	c.ok("ValidateUser", map[string]any{"username": name, "password": testPassword})
	return c
}

// newConvo creates a conversation of owner with others and waits for the owner's push.
func newConvo(t testing.TB, owner *client, name string, others ...*client) string {
	t.Helper()
	members := []string{}
	for _, o := range others {
		members = append(members, o.name)
	}
	rep := owner.ok("CreateConversation", map[string]any{"Name": name, "Members": members})
	cid, _ := rep["CID"].(string)
	if !validCID(cid) {
		t.Fatalf("CreateConversation ack without CID: %v", rep)
	}
	for _, c := range append([]*client{owner}, others...) {
		c.waitPush("CreateConversation "+cid, func(p map[string]any) bool {
			return p["cmd"] == "CreateConversation" && p["CID"] == cid
		})
	}
	return cid
}

// waitUntil polls cond (for state that no client event signals) until it holds or the deadline.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
