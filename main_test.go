package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
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
