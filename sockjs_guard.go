package main

import (
	"net/http"
	"regexp"
	"time"
)

// Guards on SockJS's HTTP side (SECURITY.md). A SockJS session id in a URL is enough to drive
// that session, so requests from foreign origins are refused outright, and the transports that
// exist for cross-origin use from old browsers (JSONP, htmlfile, EventSource and the iframe
// page) are off unless -legacy-transports turns them on. Every HTTP transport gets a deadline
// on each write and on reading a send's body, so a client that stops reading or trickles its
// request cannot hold a session (and the messages queued for it) forever.

// transportTimeout is the default deadline of each write to an xhr-streaming or polling response
// and of reading one xhr_send body.
const transportTimeout = 30 * time.Second

var (
	// modernTransport matches what the web client uses: the info request, websockets (SockJS
	// and raw) and the XHR streaming and polling transports.
	modernTransport = regexp.MustCompile(`^/ws/(info|websocket|[^/.]+/[^/.]+/(websocket|xhr|xhr_send|xhr_streaming))$`)
	sendPath        = regexp.MustCompile(`/(xhr_send|jsonp_send)$`)
)

// guardTransports wraps the SockJS handler with the checks above.
func (s *Server) guardTransports(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" && !s.checkOrigin(r) {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		if !s.cfg.LegacyTransports && r.URL.Path != "/ws" && r.URL.Path != "/ws/" && !modernTransport.MatchString(r.URL.Path) {
			http.NotFound(w, r)
			return
		}
		if r.Header.Get("Upgrade") != "" {
			h.ServeHTTP(w, r) // websockets have their own write timeout and frame guard
			return
		}
		rc := http.NewResponseController(w)
		if sendPath.MatchString(r.URL.Path) {
			_ = rc.SetReadDeadline(time.Now().Add(s.cfg.transportTimeout))
		}
		h.ServeHTTP(&deadlineWriter{ResponseWriter: w, rc: rc, timeout: s.cfg.transportTimeout}, r)
	})
}

// deadlineWriter sets a write deadline before every write, so a response that the client stops
// reading fails (and its session closes) instead of blocking the session forever.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.ResponseWriter.Write(p)
}

func (d *deadlineWriter) Flush() {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout))
	_ = d.rc.Flush()
}

func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }
