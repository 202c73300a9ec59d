package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	natsserver "github.com/nats-io/nats-server/v2/server"
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

// selfSignedCert writes a certificate for 127.0.0.1 and its key into dir.
func selfSignedCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestTLSServesWSSAndRedirects(t *testing.T) {
	cfg := testConfig(t)
	cfg.TLSCert, cfg.TLSKey = selfSignedCert(t, t.TempDir())
	srv := startServer(t, cfg)
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	ws, _, err := dialer.Dial("wss://"+srv.addr+"/ws/websocket", nil)
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	c := newClient(t, &rawWS{ws})
	c.name = uniqueName("tls")
	c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword})

	// HSTS once TLS works.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + srv.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
		t.Errorf("no HSTS over TLS: %v", resp.Header)
	}

	hosts := []string{"chat.example.org", "www.example.org"}
	redirects := []struct{ tlsAddr, url, want string }{
		{":8443", "http://chat.example.org/path?q=1", "https://chat.example.org:8443/path?q=1"},
		{":443", "http://chat.example.org:80/", "https://chat.example.org/"},
		{":443", "http://WWW.example.org/", "https://WWW.example.org/"},
		// A Host the certificate does not name is never reflected.
		{":443", "http://evil.example.net/login", "https://chat.example.org/login"},
	}
	for _, r := range redirects {
		rec := httptest.NewRecorder()
		redirectHandler(r.tlsAddr, hosts).ServeHTTP(rec, httptest.NewRequest("GET", r.url, nil))
		if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != r.want {
			t.Errorf("redirect of %s: %d %s, want %s", r.url, rec.Code, rec.Header().Get("Location"), r.want)
		}
	}
	got, err := certHosts(cfg.TLSCert, cfg.TLSKey)
	if err != nil || len(got) == 0 {
		t.Fatalf("certHosts: %v %v", got, err)
	}
}

func TestUnreachableDependenciesAreNamed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := testConfig(t)
	cfg.Postgres = "host=127.0.0.1 port=1 dbname=nothing connect_timeout=2"
	if _, err := NewServer(ctx, cfg); err == nil || !strings.Contains(err.Error(), "PostgreSQL") || !strings.Contains(err.Error(), "add_deps.sh") {
		t.Errorf("unreachable PostgreSQL: %v", err)
	}
	cfg = testConfig(t)
	cfg.NATS = "nats://127.0.0.1:1"
	if _, err := NewServer(ctx, cfg); err == nil || !strings.Contains(err.Error(), "NATS") {
		t.Errorf("unreachable NATS: %v", err)
	}
	cfg = testConfig(t)
	cfg.QuickStore = "redis://x"
	if _, err := NewServer(ctx, cfg); err == nil || !strings.Contains(err.Error(), "-quickstore") {
		t.Errorf("unknown quick store: %v", err)
	}
}

// -web-dir serves through an os.Root: no dotfiles, no directory listings, no symlinks out.
func TestWebDirServesOnlyItsFiles(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "index.html"), []byte("<p>hi</p>"), 0o644))
	must(os.WriteFile(filepath.Join(dir, ".env"), []byte("SECRET=1"), 0o644))
	must(os.Mkdir(filepath.Join(dir, "js"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "js", "app.js"), []byte("1"), 0o644))
	must(os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("outside"), 0o644))
	must(os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "escape.txt")))
	cfg := testConfig(t)
	cfg.WebDir = dir
	srv := startServer(t, cfg)
	for path, want := range map[string]int{
		"/": 200, "/js/app.js": 200, "/.env": 404, "/js/": 404, "/js": 404, "/escape.txt": 404,
	} {
		resp, err := http.Get("http://" + srv.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, resp.StatusCode, want)
		}
	}
}

// /healthz answers while the process runs; /readyz only while PostgreSQL, the quick store and
// NATS are reachable and the server is not draining.
func TestHealthAndReadiness(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	cfg := testConfig(t)
	cfg.NATS = ns.ClientURL()
	srv := startServer(t, cfg)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	ns.Shutdown()
	waitUntil(t, "/readyz to report NATS", func() bool {
		code, body := get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "nats")
	})
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while NATS is away: %d", code)
	}
	srv.draining.Store(true) // what Shutdown does first
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Fatalf("/readyz while draining: %d %s", code, body)
	}
}

func TestVersionString(t *testing.T) {
	v := versionString()
	if !strings.HasPrefix(v, "pingedchat ") || !strings.Contains(v, runtime.Version()) {
		t.Fatalf("version: %q", v)
	}
}
