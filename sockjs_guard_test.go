package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SockJS's HTTP transports: a foreign origin is refused, and the cross-origin transports
// (JSONP, htmlfile, EventSource, iframe) are off unless -legacy-transports asks for them.
func TestSockJSHTTPTransportsAreGuarded(t *testing.T) {
	srv := startServer(t, testConfig(t))
	base := "http://" + srv.addr + "/ws/000/" + randomToken()[:8]
	do := func(method, url, origin string) int {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(`["{}"]`))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do("POST", base+"/xhr", "http://"+srv.addr); code != http.StatusOK {
		t.Errorf("same-origin xhr: %d", code)
	}
	for _, path := range []string{"/xhr", "/xhr_send", "/xhr_streaming"} {
		if code := do("POST", base+path, "https://evil.example"); code != http.StatusForbidden {
			t.Errorf("foreign-origin %s: %d, want 403", path, code)
		}
	}
	for _, url := range []string{base + "/jsonp?c=x", base + "/htmlfile?c=x", base + "/eventsource", "http://" + srv.addr + "/ws/iframe.html"} {
		if code := do("GET", url, ""); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", url, code)
		}
	}
	cfg := testConfig(t)
	cfg.LegacyTransports = true
	legacy := startServer(t, cfg)
	if code := do("GET", "http://"+legacy.addr+"/ws/iframe.html", ""); code != http.StatusOK {
		t.Errorf("iframe with -legacy-transports: %d", code)
	}
}

// A client that opens an xhr-streaming response and stops reading cannot hold its session (and
// what is queued for it) forever: a write that cannot finish within the deadline ends the
// response, and with it the session.
func TestStalledXHRStreamingReaderIsClosed(t *testing.T) {
	cfg := testConfig(t)
	cfg.transportTimeout = 500 * time.Millisecond
	srv := startServer(t, cfg)
	base := "http://" + srv.addr + "/ws/000/" + randomToken()[:8]

	// The reader: a raw TCP connection with a small receive window that never reads.
	dialer := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := dialer.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s/xhr_streaming HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\n\r\n",
		strings.TrimPrefix(base, "http://"+srv.addr), srv.addr)

	send := func(frames ...string) int {
		t.Helper()
		body, _ := json.Marshal(frames)
		resp, err := http.Post(base+"/xhr_send", "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitUntil(t, "the session to open", func() bool { return send() != http.StatusNotFound })
	name := uniqueName("stalled")
	send(fmt.Sprintf(`{"cmd":"CreateUser","username":%q,"password":%q}`, name, testPassword))
	waitUntil(t, "the user to exist", func() bool { _, err := srv.db.getUser(t.Context(), name); return err == nil })
	big := strings.Repeat("<", maxContent)
	// Replies far larger than any socket buffer: each history page is about 2.4 MB on the wire.
	sender := register(t, srv, "feeder")
	cid := newConvo(t, sender, "")
	sender.ok("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{name}})
	for range pageSize {
		m := &Message{CID: cid, FUsername: sender.name, Content: big, Kind: "text"}
		if _, err := srv.db.insertMessage(t.Context(), srv.db.pool, m); err != nil {
			t.Fatal(err)
		}
	}
	for range 4 {
		if send(fmt.Sprintf(`{"cmd":"GetConvoData","CID":%q}`, cid)) == http.StatusNotFound {
			break
		}
	}
	waitUntil(t, "the stalled session to close", func() bool { return send() == http.StatusNotFound })
}
