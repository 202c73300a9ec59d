package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestWebClientIsServedWithSecurityHeaders(t *testing.T) {
	srv := startServer(t, testConfig(t))
	resp, err := http.Get("http://" + srv.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), "vendor/sockjs.min.js") {
		t.Fatalf("GET /: %d %.200s", resp.StatusCode, body)
	}
	for h, want := range map[string]string{
		"Content-Security-Policy": "frame-ancestors 'self'",
		"X-Content-Type-Options":  "nosniff",
	} {
		if got := resp.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s = %q, want it to contain %q", h, got, want)
		}
	}
	// The SockJS info endpoint answers under /ws.
	info, err := http.Get("http://" + srv.addr + "/ws/info")
	if err != nil || info.StatusCode != 200 {
		t.Fatalf("GET /ws/info: %v %v", info, err)
	}
	info.Body.Close()
}

func TestFlagsFallBackToEnvironment(t *testing.T) {
	t.Setenv("PINGED_ADDR", "127.0.0.1:9999")
	t.Setenv("PINGED_SCHEDULE_INTERVAL", "5s")
	t.Setenv("PINGED_LOG_LEVEL", "debug")
	cfg, err := parseFlags([]string{"-log-level", "warn"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:9999" || cfg.ScheduleInterval.Seconds() != 5 || cfg.LogLevel != "warn" {
		t.Fatalf("config %+v: the environment fills flags not given, a given flag wins", cfg)
	}
	t.Setenv("PINGED_SCHEDULE_INTERVAL", "soon")
	if _, err := parseFlags(nil); err == nil || !strings.Contains(err.Error(), "PINGED_SCHEDULE_INTERVAL") {
		t.Fatalf("bad environment value: %v", err)
	}
	if _, err := parseFlags([]string{"-tls-cert", "x.pem"}); err == nil {
		t.Fatal("-tls-cert without -tls-key accepted")
	}
}

func TestGracefulShutdownClosesSessions(t *testing.T) {
	cfg := testConfig(t)
	srv, err := NewServer(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	ts := &testServer{Server: srv, addr: ln.Addr().String()}
	c := register(t, ts, "shutdown")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	c.waitFor("the session to be closed", func() bool { return c.closed != nil })
	if !strings.Contains(c.closed.Error(), "1001") {
		t.Fatalf("closed with %v, want 1001 (going away)", c.closed)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve returned %v", err)
	}
}
