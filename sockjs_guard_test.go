package main

import (
	"net/http"
	"strings"
	"testing"
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
