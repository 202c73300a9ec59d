// Command pingedchat is a self-hosted, real-time chat server: one binary that serves a static
// web client and a SockJS endpoint, stores messages in PostgreSQL (one table per conversation),
// users and conversation metadata in a quick store, and fans events out over NATS.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/igm/sockjs-go/v3/sockjs"
	"golang.org/x/crypto/bcrypt"
)

// Config is everything the server can be told; flags fill it, each with a PINGED_* fallback.
type Config struct {
	Addr             string
	Postgres         string
	QuickStore       string
	NATS             string
	ScheduleInterval time.Duration
	TLSCert          string
	TLSKey           string
	RedirectAddr     string
	LogLevel         string
	WebDir           string
	AllowedOrigins   string
	SessionTTL       time.Duration
	ShutdownTimeout  time.Duration
	CommandRate      float64
	CommandBurst     int
	DebugAddr        string

	// Set by tests only.
	bcryptCost int
}

func defaultConfig() Config {
	return Config{
		Addr:             ":8080",
		Postgres:         "dbname=pingedchat",
		QuickStore:       "postgres",
		ScheduleInterval: 2 * time.Minute,
		LogLevel:         "info",
		SessionTTL:       30 * 24 * time.Hour,
		ShutdownTimeout:  10 * time.Second,
		CommandRate:      20,
		CommandBurst:     100,
		bcryptCost:       bcrypt.DefaultCost,
	}
}

// parseFlags reads flags, falling back to PINGED_<NAME> environment variables (dashes become
// underscores) for every flag not given on the command line.
func parseFlags(args []string) (Config, error) {
	cfg := defaultConfig()
	fset := flag.NewFlagSet("pingedchat", flag.ContinueOnError)
	fset.StringVar(&cfg.Addr, "addr", cfg.Addr, "address to serve HTTP (or HTTPS with -tls-cert) on")
	fset.StringVar(&cfg.Postgres, "postgres", cfg.Postgres, "PostgreSQL connection string (libpq defaults; the database is created if missing)")
	fset.StringVar(&cfg.QuickStore, "quickstore", cfg.QuickStore, "quick store for users and conversation metadata: postgres, or aerospike://host:3000[,host2:3000]")
	fset.StringVar(&cfg.NATS, "nats", cfg.NATS, "NATS URL (nats://host:4222, comma-separated for a cluster); empty runs an embedded NATS server")
	fset.DurationVar(&cfg.ScheduleInterval, "schedule-interval", cfg.ScheduleInterval, "how often scheduled messages are delivered")
	fset.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "TLS certificate file; with -tls-key serves HTTPS")
	fset.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "TLS key file")
	fset.StringVar(&cfg.RedirectAddr, "redirect-addr", cfg.RedirectAddr, "with TLS, an address (e.g. :80) answering 301 to https")
	fset.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fset.StringVar(&cfg.WebDir, "web-dir", cfg.WebDir, "serve the web client from this directory instead of the embedded copy (development)")
	fset.StringVar(&cfg.AllowedOrigins, "allowed-origins", cfg.AllowedOrigins, "comma-separated origins allowed to open sessions besides the server's own ('*' for any)")
	fset.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "how long a login's resume token stays valid")
	fset.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long graceful shutdown waits for requests to drain")
	fset.Float64Var(&cfg.CommandRate, "command-rate", cfg.CommandRate, "commands per second a session may send on average")
	fset.IntVar(&cfg.CommandBurst, "command-burst", cfg.CommandBurst, "commands a session may send in a burst above -command-rate")
	fset.StringVar(&cfg.DebugAddr, "debug-addr", cfg.DebugAddr, "serve /metrics and /debug/pprof here (e.g. 127.0.0.1:6060) instead of /metrics on -addr")
	fset.Usage = func() {
		fmt.Fprintf(fset.Output(), "Usage: pingedchat [flags]\n\nEvery flag can also be set by the environment variable PINGED_<FLAG>, e.g. PINGED_POSTGRES.\n\n")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		return cfg, err
	}
	given := map[string]bool{}
	fset.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fset.VisitAll(func(f *flag.Flag) {
		env := "PINGED_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok && !given[f.Name] {
			if err := f.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s: %w", env, err)
			}
		}
	})
	if envErr != nil {
		return cfg, envErr
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, errors.New("-tls-cert and -tls-key go together")
	}
	return cfg, nil
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pingedchat:", err)
		os.Exit(2)
	}
	setupLogging(cfg.LogLevel)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		slog.Error("pingedchat stopped", "err", err)
		os.Exit(1)
	}
}

func setupLogging(level string) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
}

// run serves until ctx ends, then shuts down gracefully.
func run(ctx context.Context, cfg Config) error {
	srv, err := NewServer(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listening on %s: %w (is another server using it? choose one with -addr)", cfg.Addr, err)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.RedirectAddr != "" && cfg.TLSCert != "" {
		go func() { errc <- srv.ServeRedirect(cfg.RedirectAddr) }()
	}
	if cfg.DebugAddr != "" {
		dbg := &http.Server{Addr: cfg.DebugAddr, Handler: srv.debugRoutes(), ReadHeaderTimeout: 10 * time.Second}
		go func() { slog.Error("debug server stopped", "err", dbg.ListenAndServe()) }()
	}
	slog.Info("pingedchat listening", "addr", ln.Addr().String(), "tls", cfg.TLSCert != "")
	select {
	case <-ctx.Done():
		slog.Info("shutting down")
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	srv.Shutdown(sctx)
	return err
}

// Server is one pingedchat instance: the shared Database, the SockJS handler and the HTTP
// servers.
type Server struct {
	cfg    Config
	db     *Database
	ctx    context.Context
	cancel context.CancelFunc
	http   *http.Server
	redir  *http.Server
	bg     sync.WaitGroup
}

// NewServer connects to every dependency and starts the background goroutines.
func NewServer(ctx context.Context, cfg Config) (*Server, error) {
	db, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, db: db, ctx: sctx, cancel: cancel}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return sctx },
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		Protect(sctx, "scheduler", db.runScheduler)
	}()
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	opts := sockjs.DefaultOptions
	opts.SockJSURL = "/vendor/sockjs.min.js"
	opts.RawWebsocket = true
	opts.WebsocketWriteTimeout = 10 * time.Second
	// One origin check for both the websocket upgrades and the CORS answers of the XHR
	// transports: the server's own origin and -allowed-origins.
	opts.CheckOrigin = s.checkOrigin
	opts.WebsocketUpgrader = &websocket.Upgrader{CheckOrigin: s.checkOrigin}
	sock := sockjs.NewHandler("/ws", opts, func(sess sockjs.Session) { s.db.sockHandler(s.ctx, sess) })
	mux.Handle("/ws/", guardWebsockets(limitBody(sock), hardFrameLimit))
	mux.Handle("/", securityHeaders(http.FileServerFS(s.webFS())))
	if s.cfg.DebugAddr == "" {
		mux.Handle("/metrics", s.db.metrics.Handler())
	}
	return mux
}

// debugRoutes are served on -debug-addr: metrics and the profiler, never on the public port.
func (s *Server) debugRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.db.metrics.Handler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// webCSP matches the policy in web/index.html; as a header it can also forbid framing by
// other sites, which a meta tag cannot.
const webCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"

// securityHeaders adds the headers every page of the web client is served with.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", webCSP)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// limitBody caps request bodies (SockJS's xhr_send and friends) at the hard frame limit.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, hardFrameLimit)
		h.ServeHTTP(w, r)
	})
}

// checkOrigin allows websocket upgrades from the server's own origin and the configured ones.
func (s *Server) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser
	}
	for _, o := range strings.Split(s.cfg.AllowedOrigins, ",") {
		if o = strings.TrimSpace(o); o == "*" || (o != "" && strings.EqualFold(o, origin)) {
			return true
		}
	}
	host := strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")
	return strings.EqualFold(host, r.Host)
}

func (s *Server) webFS() fs.FS {
	if s.cfg.WebDir != "" {
		return os.DirFS(s.cfg.WebDir)
	}
	sub, err := fs.Sub(webFiles, "web")
	if err != nil {
		panic(err) // the embedded tree always has web/
	}
	return sub
}

// Serve serves HTTP, or HTTPS when a certificate is configured, on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	var err error
	if s.cfg.TLSCert != "" {
		err = s.http.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
	} else {
		err = s.http.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeRedirect answers every request on addr with a 301 to the same URL over https.
func (s *Server) ServeRedirect(addr string) error {
	s.redir = &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, Handler: redirectHandler(s.cfg.Addr)}
	err := s.redir.ListenAndServe()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// redirectHandler sends a request to the same host and path over https, on the port of tlsAddr.
func redirectHandler(tlsAddr string) http.Handler {
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if tlsPort != "" && tlsPort != "443" {
			host = net.JoinHostPort(host, tlsPort)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
}

// Shutdown stops accepting, closes every session, waits for handlers to drain (until ctx
// ends), then closes the shared connections.
func (s *Server) Shutdown(ctx context.Context) {
	s.cancel() // ends every session's Run loop and the scheduler
	if err := s.http.Shutdown(ctx); err != nil {
		slog.Warn("http shutdown", "err", err)
	}
	if s.redir != nil {
		_ = s.redir.Shutdown(ctx)
	}
	s.db.sessions.Wait()
	s.bg.Wait()
	s.db.Close()
}

// Close releases everything without waiting (for start-up failures and tests).
func (s *Server) Close() {
	s.cancel()
	_ = s.http.Close()
	s.bg.Wait()
	s.db.Close()
}
