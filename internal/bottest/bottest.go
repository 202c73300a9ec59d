// Package bottest is a local stand-in for the Giphy search API and Open-Meteo's geocoding and
// forecast APIs, for tests. It answers with recorded bodies (testdata/bots) after checking the
// query parameters the real APIs require, and serves the GIFs its answers point to.
package bottest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Server is the fake Giphy and Open-Meteo.
type Server struct {
	*httptest.Server
	APIKey string
	// MediaBase replaces {{MEDIA}} in the Giphy bodies (default: this server's /media).
	MediaBase string

	dir  string
	mu   sync.Mutex
	hang bool
	held int // requests hanging now
	stop chan struct{}
	errs []string
}

// New serves the bodies in dir (testdata/bots) on loopback.
func New(dir, apiKey string) *Server {
	s := &Server{APIKey: apiKey, dir: dir, stop: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/gifs/search", s.giphy)
	mux.HandleFunc("GET /v1/search", s.geocoding)
	mux.HandleFunc("GET /v1/forecast", s.forecast)
	mux.HandleFunc("GET /media/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/gif")
		http.ServeFile(w, r, filepath.Join(dir, "dot.gif"))
	})
	s.Server = httptest.NewServer(s.hangable(mux))
	s.MediaBase = s.URL + "/media"
	return s
}

// Hang makes the API requests wait until the client gives up or the server closes.
func (s *Server) Hang(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hang = on
}

// Hanging is how many requests are being held by Hang now.
func (s *Server) Hanging() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held
}

// Errors are the requests the real APIs would refuse.
func (s *Server) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

// Close stops the server, releasing hanging requests first.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.mu.Unlock()
	s.Server.Close()
}

func (s *Server) hangable(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		hang := s.hang && !strings.HasPrefix(r.URL.Path, "/media/")
		if hang {
			s.held++
		}
		s.mu.Unlock()
		if hang {
			defer func() {
				s.mu.Lock()
				s.held--
				s.mu.Unlock()
			}()
			select {
			case <-r.Context().Done():
			case <-s.stop:
			}
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) fail(w http.ResponseWriter, code int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	s.errs = append(s.errs, msg)
	s.mu.Unlock()
	if code != 0 { // 0: the answer is written already
		http.Error(w, msg, code)
	}
}

func (s *Server) body(w http.ResponseWriter, name string) {
	b, err := os.ReadFile(filepath.Join(s.dir, name))
	if err != nil {
		s.fail(w, 500, "%v", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(strings.ReplaceAll(string(b), "{{MEDIA}}", s.MediaBase)))
}

// giphy: GET /v1/gifs/search?api_key&q[&limit&rating]; a query of "nothing" finds nothing.
func (s *Server) giphy(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("api_key") != s.APIKey {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"data":[],"meta":{"status":401,"msg":"No API key found in request.","response_id":""}}`))
		return
	}
	if q.Get("q") == "" {
		s.fail(w, 400, "giphy: no q")
		return
	}
	if q.Get("q") == "nothing" {
		s.body(w, "giphy_search_empty.json")
		return
	}
	s.body(w, "giphy_search.json")
}

// geocoding: GET /v1/search?name[&count&language&format]; only Berlin exists.
func (s *Server) geocoding(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("name")
	if name == "" {
		s.fail(w, 400, "geocoding: no name")
		return
	}
	if !strings.EqualFold(name, "Berlin") {
		s.body(w, "geocoding_empty.json")
		return
	}
	s.body(w, "geocoding_berlin.json")
}

// forecast: GET /v1/forecast?latitude&longitude&daily=…; Open-Meteo refuses a request without
// coordinates with 400 and {"error":true,"reason":…}.
func (s *Server) forecast(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("latitude") == "" || q.Get("longitude") == "" {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":true,"reason":"Parameter 'latitude' and 'longitude' must have the same number of elements"}`))
		s.fail(w, 0, "forecast: no coordinates")
		return
	}
	for _, v := range []string{"weather_code", "temperature_2m_max", "temperature_2m_min"} {
		if !strings.Contains(q.Get("daily"), v) {
			s.fail(w, 400, "forecast: daily=%q lacks %s", q.Get("daily"), v)
			return
		}
	}
	if !strings.HasPrefix(q.Get("latitude"), "52.52") || !strings.HasPrefix(q.Get("longitude"), "13.41") {
		s.fail(w, 400, "forecast: coordinates %s,%s are not Berlin's", q.Get("latitude"), q.Get("longitude"))
		return
	}
	s.body(w, "forecast_berlin.json")
}
