package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

// countingConn records each write its connection gets.
type countingConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	closed bool
	fail   error // when set, every write fails with it
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *countingConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *countingConn) got() (n int, all string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes), string(bytes.Join(c.writes, nil))
}

func TestCorkedWritesGoOutTogether(t *testing.T) {
	under := &countingConn{}
	g := &guardConn{Conn: under}
	_, _ = g.Write([]byte("a"))
	if n, _ := under.got(); n != 1 {
		t.Fatalf("an uncorked write made %d writes", n)
	}
	g.cork()
	for _, s := range []string{"b", "c", "d"} {
		if n, err := g.Write([]byte(s)); n != 1 || err != nil {
			t.Fatalf("corked write: %d, %v", n, err)
		}
	}
	if n, _ := under.got(); n != 1 {
		t.Fatalf("corked writes reached the connection before uncork: %d writes", n)
	}
	g.uncork()
	if n, all := under.got(); n != 2 || all != "abcd" {
		t.Fatalf("after uncork: %d writes, %q; want 2, \"abcd\"", n, all)
	}
	g.uncork() // twice is harmless
	// Past the limit a corked connection writes anyway, in order.
	g.cork()
	big := strings.Repeat("x", corkLimit)
	_, _ = g.Write([]byte("e"))
	_, _ = g.Write([]byte(big))
	if n, _ := under.got(); n != 3 {
		t.Fatalf("a corked connection over the limit kept its writes: %d writes", n)
	}
	_, _ = g.Write([]byte("f"))
	g.uncork()
	if n, all := under.got(); n != 4 || all != "abcde"+big+"f" {
		t.Fatalf("over the limit: %d writes", n)
	}
	// Closing writes what a cork kept (a close frame) first.
	g.cork()
	_, _ = g.Write([]byte("bye"))
	_ = g.Close()
	if _, all := under.got(); !strings.HasSuffix(all, "bye") || !under.closed {
		t.Fatalf("close lost the corked write or did not close: closed %v", under.closed)
	}
	var none *guardConn
	none.cork() // sessions on HTTP transports have none
	none.uncork()
}

// A corked write that fails when it finally goes out closes the connection, as the frame's own
// write failing would have ended the session.
func TestFailedCorkedWriteClosesTheConnection(t *testing.T) {
	under := &countingConn{fail: errors.New("broken pipe")}
	g := &guardConn{Conn: under}
	g.cork()
	if _, err := g.Write([]byte("frame")); err != nil {
		t.Fatalf("a corked write failed at once: %v", err)
	}
	g.uncork()
	if !under.closed {
		t.Fatal("the connection stayed open after its corked frames could not be written")
	}
}

// Sessions on both websocket transports find their connection, and a burst of events forwarded
// through corked writes arrives whole and in order, frame by frame.
func TestSessionsCorkTheirWebsocket(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandBurst = 1000
	srv := startServer(t, cfg)
	alice := register(t, srv, "alice")
	raw := register(t, srv, "rawbob")
	sock := dialSockJS(t, srv)
	sock.name = "sockbob"
	sock.ok("ValidateUser", map[string]any{"Username": raw.name, "Password": testPassword})
	cid := newConvo(t, alice, "burst", raw)
	srv.db.hubs.mu.Lock()
	hub := srv.db.hubs.byUser[upperName(raw.name)]
	sessions := len(hub.sessions)
	for s := range hub.sessions {
		if s.corker == nil {
			t.Errorf("a websocket session of %s has no connection to cork", raw.name)
		}
	}
	srv.db.hubs.mu.Unlock()
	if sessions != 2 {
		t.Fatalf("%s has %d sessions, want 2", raw.name, sessions)
	}
	const n = 40
	for i := range n {
		b, _ := json.Marshal(map[string]any{"cmd": "SendMessage", "rid": fmt.Sprintf("b%d", i),
			"CID": cid, "content": fmt.Sprintf("burst %d %s", i, strings.Repeat("é", i))})
		alice.sendRaw(string(b))
	}
	for _, c := range []*client{raw, sock} {
		for i := range n {
			p := c.waitPush("message", isMsgIn(cid))
			if want := fmt.Sprintf("burst %d %s", i, strings.Repeat("é", i)); p["content"] != want {
				t.Fatalf("%s got %q as message %d", c.name, p["content"], i)
			}
		}
	}
}
