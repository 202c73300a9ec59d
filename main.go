// Command pingedchat is a self-hosted, real-time chat server: one binary that serves a static
// web client and a SockJS endpoint, stores messages in PostgreSQL (one table per conversation),
// users and conversation metadata in a quick store, and fans events out over NATS.
package main

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"github.com/igm/sockjs-go/v3/sockjs"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
	"golang.org/x/crypto/bcrypt"
)

// Config is everything the server can be told; flags fill it, each with a PINGED_* fallback.
type Config struct {
	Addr             string
	Postgres         string
	QuickStore       string
	QuickStoreWait   time.Duration
	NATS             string
	ScheduleInterval time.Duration
	TLSCert          string
	TLSKey           string
	RedirectAddr     string
	AcmeDomain       string
	AcmeEmail        string
	AcmeCA           string
	DataDir          string
	LogLevel         string
	WebDir           string
	AllowedOrigins   string
	SessionTTL       time.Duration
	ShutdownTimeout  time.Duration
	CommandRate      float64
	CommandBurst     int
	DebugAddr        string

	// Abuse limits (SECURITY.md); 0 turns a limit off.
	TrustedProxies      string
	LoginTimeout        time.Duration
	MaxConnsPerAddr     int
	HandshakesPerAddr   int
	RegistrationsPerDay int
	LookupsPerDay       int
	MaxConvosPerUser    int
	ConvosPerHour       int
	MaxSessionsPerUser  int
	MaxScheduledPerUser int
	MetricsToken        string
	LegacyTransports    bool
	ShowVersion         bool

	// Outbound mail (mail_outbound.go); FILL_ME or empty: not configured.
	SMTPURL      string
	MailFrom     string
	MailDomain   string
	PublicURL    string
	SMTPListen   string
	MandrillKey  string
	InboundToken string
	MailsPerDay  int
	// MailRcptsPerDay bounds recipients of a user's outbound mail and invitations per day.
	MailRcptsPerDay int
	// DKIM signing of outbound mail (dkim.go): a PEM key file and its DNS selector.
	DKIMKey      string
	DKIMSelector string

	// Inbound mail's bounds (mail_guard.go, mail_quota.go; SECURITY.md).
	InboundParses  int
	InboundPerHour int
	SMTPMaxConns   int
	MailQuota      int64

	// Files (uploads, mail attachments) and administrators.
	FilesDir     string
	Admins       string
	DefaultQuota int64
	MaxFileSize  int64  // bytes of one upload; 0: only the quota limits it
	S3URL        string // FILL_ME or empty: files on local disk
	S3AccessKey  string
	S3SecretKey  string
	S3Region     string

	PushConfig // push.go
	BotConfig  // bots.go

	// EditWindow is how long after sending a message its author may edit it (0: always).
	EditWindow time.Duration
	// SearchTimeout bounds each statement of a search (search.go; 0: no bound).
	SearchTimeout time.Duration

	// Set by tests only.
	bcryptCost       int
	guessBackoff     time.Duration
	transportTimeout time.Duration
	smtpRoots        *x509.CertPool // trusted for the relay's STARTTLS (nil: the system's)
	acmeRoots        *x509.CertPool // trusted for the ACME CA's API (nil: the system's)
	heartbeat        time.Duration  // how often sessions are sent a heartbeat
	outboxRetry      time.Duration  // the outbound mail queue's first retry delay

	// Set by inbound mail's tests only.
	inboundBodyTimeout time.Duration // one inbound body's deadline (mail_guard.go)
	smtpLifetime       time.Duration // one SMTP connection's lifetime
	mailDNS            mailResolver  // SPF, DKIM and DMARC look-ups (nil: the system's)
}

func defaultConfig() Config {
	return Config{
		Addr:             ":8080",
		Postgres:         "dbname=pingedchat",
		QuickStore:       "postgres",
		QuickStoreWait:   30 * time.Second,
		ScheduleInterval: 2 * time.Minute,
		AcmeCA:           acme.LetsEncryptURL,
		DataDir:          "./data",
		LogLevel:         "info",
		SessionTTL:       30 * 24 * time.Hour,
		ShutdownTimeout:  10 * time.Second,
		CommandRate:      20,
		CommandBurst:     100,
		bcryptCost:       bcrypt.DefaultCost,
		guessBackoff:     time.Second,
		transportTimeout: transportTimeout,
		heartbeat:        10 * time.Second,

		LoginTimeout:        30 * time.Second,
		MaxConnsPerAddr:     256,
		HandshakesPerAddr:   4,
		RegistrationsPerDay: 20,
		LookupsPerDay:       2000,
		MaxConvosPerUser:    1000,
		ConvosPerHour:       100,
		MaxSessionsPerUser:  50,
		MaxScheduledPerUser: 100,
		MailDomain:          "localhost",
		FilesDir:            "./data/files",
		MailsPerDay:         200,
		MailRcptsPerDay:     500,
		DKIMSelector:        "pingedchat",
		InboundParses:       4,
		InboundPerHour:      300,
		SMTPMaxConns:        256,
		MailQuota:           1 << 30,
		PushConfig:          PushConfig{FCMURL: defaultFCMURL, APNsURL: defaultAPNsURL, PushWorkers: 4, PushQueue: 1024},
		BotConfig:           BotConfig{GiphyURL: defaultGiphyURL, GeocodingURL: defaultGeocodingURL, ForecastURL: defaultForecastURL},
		DefaultQuota:        2 << 30,
		MaxFileSize:         1 << 30,
		S3Region:            "us-east-1",
		SearchTimeout:       2 * time.Second,
	}
}

// isAdmin reports whether user is one of -admins.
func (c Config) isAdmin(user string) bool {
	for _, a := range strings.Split(c.Admins, ",") {
		if a = strings.TrimSpace(a); a != "" && a == user {
			return true
		}
	}
	return false
}

// parseFlags reads flags, falling back to PINGED_<NAME> environment variables (dashes become
// underscores) for every flag not given on the command line.
func parseFlags(args []string) (Config, error) {
	cfg := defaultConfig()
	fset := flag.NewFlagSet("pingedchat", flag.ContinueOnError)
	fset.StringVar(&cfg.Addr, "addr", cfg.Addr, "address to serve HTTP (or HTTPS with -tls-cert) on")
	fset.StringVar(&cfg.Postgres, "postgres", cfg.Postgres, "PostgreSQL connection string (libpq defaults; the database is created if missing)")
	fset.StringVar(&cfg.QuickStore, "quickstore", cfg.QuickStore, "quick store for users and conversation metadata: postgres, or aerospike://host:3000[,host2:3000]")
	fset.DurationVar(&cfg.QuickStoreWait, "quickstore-wait", cfg.QuickStoreWait, "at start-up, how long to wait for an Aerospike quick store that is not ready yet")
	fset.StringVar(&cfg.NATS, "nats", cfg.NATS, "NATS URL (nats://host:4222, comma-separated for a cluster); empty runs an embedded NATS server")
	fset.DurationVar(&cfg.ScheduleInterval, "schedule-interval", cfg.ScheduleInterval, "how often scheduled messages are delivered")
	fset.StringVar(&cfg.TLSCert, "tls-cert", cfg.TLSCert, "TLS certificate file; with -tls-key serves HTTPS")
	fset.StringVar(&cfg.TLSKey, "tls-key", cfg.TLSKey, "TLS key file")
	fset.StringVar(&cfg.RedirectAddr, "redirect-addr", cfg.RedirectAddr, "with TLS, an address (e.g. :80) answering 301 to https (and ACME HTTP-01; :80 by default with -acme-domain)")
	fset.StringVar(&cfg.AcmeDomain, "acme-domain", cfg.AcmeDomain, "comma-separated domains to get TLS certificates for from an ACME CA (Let's Encrypt), renewed automatically")
	fset.StringVar(&cfg.AcmeEmail, "acme-email", cfg.AcmeEmail, "contact address for the ACME account (expiry warnings)")
	fset.StringVar(&cfg.AcmeCA, "acme-ca", cfg.AcmeCA, "the ACME CA's directory URL")
	fset.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "where the server keeps its files (ACME account and certificates)")
	fset.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	fset.StringVar(&cfg.WebDir, "web-dir", cfg.WebDir, "serve the web client from this directory instead of the embedded copy (development)")
	fset.StringVar(&cfg.AllowedOrigins, "allowed-origins", cfg.AllowedOrigins, "comma-separated origins allowed to open sessions besides the server's own ('*' for any)")
	fset.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "how long a login's resume token stays valid")
	fset.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", cfg.ShutdownTimeout, "how long graceful shutdown waits for requests to drain")
	fset.Float64Var(&cfg.CommandRate, "command-rate", cfg.CommandRate, "commands per second a session may send on average")
	fset.IntVar(&cfg.CommandBurst, "command-burst", cfg.CommandBurst, "commands a session may send in a burst above -command-rate")
	fset.StringVar(&cfg.DebugAddr, "debug-addr", cfg.DebugAddr, "serve /metrics and /debug/pprof here (e.g. 127.0.0.1:6060)")
	fset.StringVar(&cfg.MetricsToken, "metrics-token", cfg.MetricsToken, "also serve /metrics on -addr to requests with 'Authorization: Bearer <token>'")
	fset.StringVar(&cfg.SMTPURL, "smtp-url", cfg.SMTPURL, "SMTP relay for outbound mail: smtp://user:pass@host:587 (STARTTLS required), smtps://…, or smtp://host:port?insecure=1 for local testing; empty or FILL_ME: no mail")
	fset.StringVar(&cfg.PublicURL, "public-url", cfg.PublicURL, "the URL people open the web client at, for invitations (default https://<first -acme-domain>/ or http://<mail-domain>/)")
	fset.StringVar(&cfg.SMTPListen, "smtp-listen", cfg.SMTPListen, "address for the built-in SMTP receiver of inbound mail (e.g. :2525, or :25 behind MX); empty: off")
	fset.StringVar(&cfg.MandrillKey, "mandrill-key", cfg.MandrillKey, "Mandrill webhook key: POST /inbound/mandrill is served, and checks X-Mandrill-Signature with it; empty or FILL_ME: the endpoint is off (404)")
	fset.StringVar(&cfg.InboundToken, "inbound-token", cfg.InboundToken, "POST /inbound/email is served, to requests with 'Authorization: Bearer <token>' (or ?token=), as is /inbound/mandrill when -mandrill-key is set too; empty or FILL_ME: /inbound/email is off (404)")
	fset.IntVar(&cfg.MailsPerDay, "mails-per-day", cfg.MailsPerDay, "e-mails and invitations a user may send per day; 0 for no limit")
	fset.IntVar(&cfg.MailRcptsPerDay, "mail-recipients-per-day", cfg.MailRcptsPerDay, "recipients (To and Cc of each e-mail, each invitation) a user may send to per day; 0 for no limit")
	fset.IntVar(&cfg.InboundParses, "inbound-parses", cfg.InboundParses, "inbound messages read and parsed at once (SMTP and HTTP together); the rest wait briefly, then hear 451 or 503")
	fset.IntVar(&cfg.InboundPerHour, "inbound-mails-per-hour", cfg.InboundPerHour, "inbound deliveries per sender address per hour (5 times that per SMTP client address); 0 for no limit")
	fset.IntVar(&cfg.SMTPMaxConns, "smtp-max-conns", cfg.SMTPMaxConns, "connections the SMTP receiver holds at once (8 per client address); 0 for no global limit")
	fset.Int64Var(&cfg.MailQuota, "mail-quota", cfg.MailQuota, "bytes of mail (bodies and attachments) one mailbox may hold; inbound mail past it is refused; 0 for no limit")
	fset.StringVar(&cfg.MailFrom, "mail-from", cfg.MailFrom, "From address of the server's mail (default pingedchat@<mail-domain>)")
	fset.StringVar(&cfg.MailDomain, "mail-domain", cfg.MailDomain, "the domain of the server's mail addresses")
	fset.StringVar(&cfg.DKIMKey, "dkim-key", cfg.DKIMKey, "PEM private key (RSA 2048: openssl genrsa -out dkim.pem 2048) to DKIM-sign outbound mail for -mail-domain; pingedchat check prints its DNS record; empty or FILL_ME: unsigned")
	fset.StringVar(&cfg.DKIMSelector, "dkim-selector", cfg.DKIMSelector, "the DKIM selector: the key is published at <selector>._domainkey.<mail-domain>")
	fset.StringVar(&cfg.FilesDir, "files-dir", cfg.FilesDir, "where uploaded files and mail attachments are stored")
	fset.Int64Var(&cfg.DefaultQuota, "default-quota", cfg.DefaultQuota, "bytes of uploads a new user may store")
	fset.Int64Var(&cfg.MaxFileSize, "max-file-size", cfg.MaxFileSize, "bytes of one uploaded file; 0 for no limit but the quota")
	fset.StringVar(&cfg.S3URL, "s3-url", cfg.S3URL, "store uploads in an S3-compatible bucket, http(s)://host[:port]/bucket, instead of -files-dir; empty or FILL_ME: local disk")
	fset.StringVar(&cfg.S3AccessKey, "s3-access-key", cfg.S3AccessKey, "access key for -s3-url")
	fset.StringVar(&cfg.S3SecretKey, "s3-secret-key", cfg.S3SecretKey, "secret key for -s3-url")
	fset.StringVar(&cfg.S3Region, "s3-region", cfg.S3Region, "region for -s3-url")
	fset.StringVar(&cfg.Admins, "admins", cfg.Admins, "comma-separated usernames of administrators (quotas, deleting any message)")
	// Push (push.go) and bots (bots.go).
	fset.StringVar(&cfg.FCMCredentials, "fcm-credentials", cfg.FCMCredentials, "Firebase service-account JSON file for pushes to Android and Fire OS (FCM HTTP v1); empty or FILL_ME: off")
	fset.StringVar(&cfg.FCMURL, "fcm-url", cfg.FCMURL, "FCM API base URL")
	fset.StringVar(&cfg.APNsKeyFile, "apns-key-file", cfg.APNsKeyFile, "APNs token-authentication key (.p8) for pushes to iOS; empty or FILL_ME: off")
	fset.StringVar(&cfg.APNsKeyID, "apns-key-id", cfg.APNsKeyID, "the .p8 key's id")
	fset.StringVar(&cfg.APNsTeamID, "apns-team-id", cfg.APNsTeamID, "the Apple developer team id")
	fset.StringVar(&cfg.APNsTopic, "apns-topic", cfg.APNsTopic, "the iOS app's bundle id (apns-topic)")
	fset.StringVar(&cfg.APNsURL, "apns-url", cfg.APNsURL, "APNs base URL (https://api.sandbox.push.apple.com for development builds)")
	fset.StringVar(&cfg.VAPIDPublicKey, "vapid-public-key", cfg.VAPIDPublicKey, "VAPID public key (base64url P-256 point) for Web Push to browsers; empty or FILL_ME: off")
	fset.StringVar(&cfg.VAPIDPrivateKey, "vapid-private-key", cfg.VAPIDPrivateKey, "VAPID private key (base64url)")
	fset.StringVar(&cfg.VAPIDSubject, "vapid-subject", cfg.VAPIDSubject, "VAPID contact: an e-mail address or https URL (default pingedchat@<mail-domain>)")
	fset.IntVar(&cfg.PushWorkers, "push-workers", cfg.PushWorkers, "goroutines sending pushes")
	fset.IntVar(&cfg.PushQueue, "push-queue", cfg.PushQueue, "push tasks waiting (messages to look up, deliveries to devices), beyond which the oldest are dropped (and counted)")
	fset.BoolVar(&cfg.PushAllowPrivate, "push-allow-private", cfg.PushAllowPrivate, "let Web Push go to private, loopback and link-local addresses (a push service on your own network); off: public addresses only")
	fset.StringVar(&cfg.GiphyKey, "giphy-key", cfg.GiphyKey, "Giphy API key for the @giphy bot; empty or FILL_ME: the bot answers that it is not configured")
	fset.StringVar(&cfg.GiphyURL, "giphy-url", cfg.GiphyURL, "Giphy API base URL")
	fset.StringVar(&cfg.GeocodingURL, "geocoding-url", cfg.GeocodingURL, "Open-Meteo geocoding API base URL (@forecast)")
	fset.StringVar(&cfg.ForecastURL, "forecast-url", cfg.ForecastURL, "Open-Meteo forecast API base URL (@forecast)")
	fset.DurationVar(&cfg.EditWindow, "edit-window", cfg.EditWindow, "how long after sending a message its author may edit it (0: no limit)")
	fset.DurationVar(&cfg.SearchTimeout, "search-timeout", cfg.SearchTimeout, "how long each statement of a search may run before the user is told to use more specific words; 0 for no limit")
	fset.BoolVar(&cfg.ShowVersion, "version", false, "print the version, commit and Go version, and exit")
	fset.BoolVar(&cfg.LegacyTransports, "legacy-transports", cfg.LegacyTransports, "also offer SockJS's JSONP, htmlfile, EventSource and iframe transports (for very old browsers)")
	fset.StringVar(&cfg.TrustedProxies, "trusted-proxies", cfg.TrustedProxies, "comma-separated addresses or CIDRs of reverse proxies whose X-Forwarded-For names the client")
	fset.DurationVar(&cfg.LoginTimeout, "login-timeout", cfg.LoginTimeout, "how long a connection may stay open without logging in")
	fset.IntVar(&cfg.MaxConnsPerAddr, "max-conns-per-addr", cfg.MaxConnsPerAddr, "open connections per client address (IPv6: per /64); 0 for no limit")
	fset.IntVar(&cfg.HandshakesPerAddr, "handshakes-per-addr", cfg.HandshakesPerAddr, "login and registration commands in progress at once per client address; 0 for no limit")
	fset.IntVar(&cfg.RegistrationsPerDay, "registrations-per-day", cfg.RegistrationsPerDay, "new accounts per client address per day; 0 for no limit")
	fset.IntVar(&cfg.LookupsPerDay, "lookups-per-day", cfg.LookupsPerDay, "contact lookups (GetUserByEmail, GetUserByUsername, MatchUsers entries) per user per day; 0 for no limit")
	fset.IntVar(&cfg.MaxConvosPerUser, "max-convos-per-user", cfg.MaxConvosPerUser, "conversations a user may be a member of; 0 for no limit")
	fset.IntVar(&cfg.ConvosPerHour, "convos-per-hour", cfg.ConvosPerHour, "conversations a user may create, or add people to, per hour; 0 for no limit")
	fset.IntVar(&cfg.MaxSessionsPerUser, "max-sessions-per-user", cfg.MaxSessionsPerUser, "resume tokens kept per user (the oldest is revoked); 0 for no limit")
	fset.IntVar(&cfg.MaxScheduledPerUser, "max-scheduled-per-user", cfg.MaxScheduledPerUser, "pending scheduled messages per user; 0 for no limit")
	secretFiles := addSecretFileFlags(fset) // secretflags.go
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
		if f.Name == "version" {
			return // an action, not a setting: PINGED_VERSION would make every start just print
		}
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
	if err := applySecretFiles(fset, secretFiles, given); err != nil {
		return cfg, err
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return cfg, errors.New("-tls-cert and -tls-key go together")
	}
	if _, err := parseProxies(cfg.TrustedProxies); err != nil {
		return cfg, err
	}
	if cfg.DefaultQuota < 0 || cfg.MaxFileSize < 0 {
		return cfg, errors.New("-default-quota and -max-file-size are byte counts (0 or more)")
	}
	if cfg.AcmeDomain != "" && !given["redirect-addr"] && os.Getenv("PINGED_REDIRECT_ADDR") == "" {
		cfg.RedirectAddr = ":80" // where the CA checks HTTP-01 challenges
	}
	return cfg, nil
}

func main() {
	if ok, err := runSubcommand(context.Background(), os.Args[1:]); ok {
		if err != nil {
			fmt.Fprintln(os.Stderr, "pingedchat:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pingedchat:", err)
		os.Exit(2)
	}
	if cfg.ShowVersion {
		fmt.Println(versionString())
		return
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
	// TCP keepalive finds peers that vanished (a laptop closed, a NAT that forgot us) within
	// about half a minute, on every transport.
	lc := net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}}
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		srv.Close()
		return fmt.Errorf("listening on %s: %w (is another server using it? choose one with -addr)", cfg.Addr, err)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.RedirectAddr != "" && srv.tlsOn() {
		go func() { errc <- srv.ServeRedirect(cfg.RedirectAddr) }()
	}
	if cfg.DebugAddr != "" {
		dbg := &http.Server{Addr: cfg.DebugAddr, Handler: srv.debugRoutes(), ReadHeaderTimeout: 10 * time.Second}
		go func() { slog.Error("debug server stopped", "err", dbg.ListenAndServe()) }()
	}
	slog.Info("pingedchat listening", "addr", ln.Addr().String(), "tls", srv.tlsOn(), "acme", cfg.AcmeDomain)
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
	web    fs.FS
	acme   *autocert.Manager // with -acme-domain
	hosts  []string          // the names the certificate is for (redirects go only there)
	smtpd  *smtpd            // the inbound mail receiver, with -smtp-listen (mail_smtpd.go)
	// draining is set when shutdown begins: /readyz answers 503 from then on.
	draining atomic.Bool
	bg       sync.WaitGroup
}

// NewServer connects to every dependency and starts the background goroutines.
func NewServer(ctx context.Context, cfg Config) (*Server, error) {
	db, err := Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := db.checkMailFrom(ctx); err != nil {
		db.Close()
		return nil, err
	}
	web, err := webFS(cfg.WebDir)
	if err != nil {
		db.Close()
		return nil, err
	}
	m, domains, err := acmeManager(cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, db: db, ctx: sctx, cancel: cancel, web: web, acme: m, hosts: domains}
	s.http = &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		// No ReadTimeout or WriteTimeout: they would cut SockJS's long-lived streaming
		// responses. sockjs_guard.go sets per-write and per-body deadlines instead.
		IdleTimeout: 2 * time.Minute,
		BaseContext: func(net.Listener) context.Context { return sctx },
		ErrorLog:    slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	if err := s.startSMTP(); err != nil {
		cancel()
		db.Close()
		return nil, fmt.Errorf("starting the SMTP receiver on %s: %w", cfg.SMTPListen, err)
	}
	logInbound(cfg, slog.Default())
	s.bg.Add(3)
	go func() {
		defer s.bg.Done()
		Protect(sctx, "scheduler", db.runScheduler)
	}()
	go func() {
		defer s.bg.Done()
		Protect(sctx, "outbound mail", db.runOutbox)
	}()
	go func() {
		defer s.bg.Done()
		Protect(sctx, "event dispatcher", db.dispatch)
	}()
	db.startPushAndBots(sctx, &s.bg)
	db.files.start(sctx, &s.bg)
	return s, nil
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	opts := sockjs.DefaultOptions
	opts.SockJSURL = "/vendor/sockjs.min.js"
	opts.RawWebsocket = true
	opts.WebsocketWriteTimeout = 10 * time.Second
	opts.HeartbeatDelay = s.cfg.heartbeat // SockJS "h" frames; pings on the raw websocket
	// One origin check for both the websocket upgrades and the CORS answers of the XHR
	// transports: the server's own origin and -allowed-origins.
	opts.CheckOrigin = s.checkOrigin
	opts.WebsocketUpgrader = &websocket.Upgrader{CheckOrigin: s.checkOrigin}
	sock := sockjs.NewHandler("/ws", opts, func(sess sockjs.Session) { s.db.sockHandler(s.ctx, sess) })
	// A raw websocket client that has not answered two pings and a half is gone.
	rawIdle := s.cfg.heartbeat*5/2 + time.Second
	mux.Handle("/ws/", s.guardTransports(guardWebsockets(limitBody(sock), hardFrameLimit, "/ws/websocket", rawIdle)))
	mux.Handle("/", securityHeaders(webHandler(s.web)))
	mux.HandleFunc("POST /inbound/email", s.inboundEmail)
	mux.HandleFunc("POST /inbound/mandrill", s.inboundMandrill)
	mux.HandleFunc("HEAD /inbound/mandrill", s.inboundMandrill)
	mux.HandleFunc("GET /mail/attachments/{dir}/{id}", s.serveAttachment)
	mux.HandleFunc("PUT /files/upload/{id}", s.db.files.upload)
	mux.HandleFunc("POST /files/upload/{id}", s.db.files.upload)
	mux.HandleFunc("GET /files/{id}", s.db.files.serve)
	mux.HandleFunc("GET /files/{id}/thumb", s.db.files.serveThumb)
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if !notConfigured(s.cfg.MetricsToken) {
		mux.Handle("/metrics", requireBearer(s.cfg.MetricsToken, s.db.metrics.Handler()))
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

// Serve serves HTTP, or HTTPS when a certificate is configured, on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if s.cfg.MaxConnsPerAddr > 0 {
		ln = &connLimitListener{Listener: ln, counter: newAddrCounter(s.cfg.MaxConnsPerAddr),
			proxies: s.db.limits.proxies, onRefuse: s.db.metrics.connRefused}
	}
	var err error
	switch {
	case s.acme != nil:
		err = s.http.Serve(tls.NewListener(ln, s.acme.TLSConfig()))
	case s.cfg.TLSCert != "":
		err = s.http.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
	default:
		err = s.http.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ServeRedirect answers every request on addr with a 301 to the same URL over https, on a
// host that the certificate names.
func (s *Server) ServeRedirect(addr string) error {
	hosts := s.hosts
	if s.acme == nil {
		var err error
		if hosts, err = certHosts(s.cfg.TLSCert, s.cfg.TLSKey); err != nil {
			return err
		}
	}
	var h http.Handler = redirectHandler(s.cfg.Addr, hosts)
	if s.acme != nil {
		h = s.acme.HTTPHandler(h) // HTTP-01 challenges first, everything else redirected
	}
	s.redir = &http.Server{Addr: addr, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, Handler: h}
	err := s.redir.ListenAndServe()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// redirectHandler sends a request to the same path over https, on the port of tlsAddr. The
// host is the request's when it is one of hosts (the certificate's names), else the first of
// them: a redirect never sends a browser to a host that an attacker put in the request.
func redirectHandler(tlsAddr string, hosts []string) http.Handler {
	_, tlsPort, _ := net.SplitHostPort(tlsAddr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !slices.ContainsFunc(hosts, func(h string) bool { return strings.EqualFold(h, host) }) {
			if len(hosts) == 0 {
				http.Error(w, "unknown host", http.StatusMisdirectedRequest)
				return
			}
			host = hosts[0]
		}
		if tlsPort != "" && tlsPort != "443" {
			host = net.JoinHostPort(host, tlsPort)
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusMovedPermanently)
	})
}

// tlsOn reports whether the server speaks TLS (a certificate file, or ACME).
func (s *Server) tlsOn() bool { return s.cfg.TLSCert != "" || s.acme != nil }

// certHosts are the host names and addresses a certificate is for.
func certHosts(certFile, keyFile string) ([]string, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading -tls-cert: %w", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parsing -tls-cert: %w", err)
	}
	hosts := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		hosts = append(hosts, ip.String())
	}
	return hosts, nil
}

// requireBearer serves h only to requests with the token as a bearer credential.
func requireBearer(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Shutdown stops accepting, closes every session, waits for handlers to drain (until ctx
// ends), then closes the shared connections.
func (s *Server) Shutdown(ctx context.Context) {
	s.draining.Store(true)
	s.cancel() // ends every session's Run loop and the scheduler
	if err := s.http.Shutdown(ctx); err != nil {
		slog.Warn("http shutdown", "err", err)
	}
	if s.redir != nil {
		_ = s.redir.Shutdown(ctx)
	}
	s.stopSMTP()
	s.db.sessions.Wait()
	s.bg.Wait()
	s.db.Close()
}

// Close releases everything without waiting (for start-up failures and tests).
func (s *Server) Close() {
	s.cancel()
	_ = s.http.Close()
	s.stopSMTP()
	s.bg.Wait()
	s.db.Close()
}
