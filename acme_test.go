package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Automatic TLS against Pebble, Let's Encrypt's own ACME test CA, built from its module and run
// on loopback ports with pebble-challtestsrv as its DNS (every name resolves to 127.0.0.1). Pebble
// validates the challenge against our listeners for real.

const acmeTestDomain = "chat.pinged.test"

// pebbleCA is a running Pebble.
type pebbleCA struct {
	t       *testing.T
	args    []string
	cmd     *exec.Cmd
	dirURL  string
	roots   *x509.CertPool // trusts Pebble's API certificate
	stopped chan struct{}
}

// startPebble runs challtestsrv and Pebble; Pebble checks HTTP-01 on httpPort and TLS-ALPN-01
// on tlsPort of 127.0.0.1, and issues certificates valid for validity.
func startPebble(t *testing.T, httpPort, tlsPort int, validity time.Duration) *pebbleCA {
	t.Helper()
	modDir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/letsencrypt/pebble/v2").Output()
	if err != nil {
		t.Fatalf("finding the pebble module: %v", err)
	}
	certs := filepath.Join(strings.TrimSpace(string(modDir)), "test", "certs")

	dnsPort := freePort(t)
	dns := exec.Command(buildTool(t, "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv"),
		"-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "", "-management", fmt.Sprintf("127.0.0.1:%d", freePort(t)))
	if err := dns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dns.Process.Kill(); _ = dns.Wait() })

	apiPort := freePort(t)
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  fmt.Sprintf("127.0.0.1:%d", apiPort),
		"managementListenAddress":        fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"certificate":                    filepath.Join(certs, "localhost", "cert.pem"),
		"privateKey":                     filepath.Join(certs, "localhost", "key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"profiles":                       map[string]any{"default": map[string]any{"description": "test", "validityPeriod": int(validity.Seconds())}},
	}}
	confFile := filepath.Join(t.TempDir(), "pebble.json")
	b, _ := json.Marshal(conf)
	if err := os.WriteFile(confFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(certs, "pebble.minica.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p := &pebbleCA{t: t, dirURL: fmt.Sprintf("https://127.0.0.1:%d/dir", apiPort), roots: x509.NewCertPool(),
		args: []string{"-config", confFile, "-dnsserver", fmt.Sprintf("127.0.0.1:%d", dnsPort)}}
	p.roots.AppendCertsFromPEM(pem)
	p.start()
	t.Cleanup(p.kill)
	return p
}

func (p *pebbleCA) start() {
	p.t.Helper()
	p.cmd = exec.Command(buildTool(p.t, "github.com/letsencrypt/pebble/v2/cmd/pebble"), p.args...)
	// No random sleeps before validation, no nonce rejections: the test's time is its own.
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	if testing.Verbose() {
		p.cmd.Stdout, p.cmd.Stderr = os.Stderr, os.Stderr
	}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.stopped = make(chan struct{})
	go func(cmd *exec.Cmd, stopped chan struct{}) { _ = cmd.Wait(); close(stopped) }(p.cmd, p.stopped)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots}}}
	waitUntil(p.t, "Pebble to answer", func() bool {
		resp, err := client.Get(p.dirURL)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
}

func (p *pebbleCA) kill() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.stopped
	p.cmd = nil
}

// servedCert does a TLS handshake for the domain and returns the certificate served.
func servedCert(t *testing.T, addr string) (*x509.Certificate, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 30 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: acmeTestDomain, InsecureSkipVerify: true}) // Pebble's roots change per run
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

func TestACMEWithPebble(t *testing.T) {
	tlsPort, httpPort := freePort(t), freePort(t)
	const validity = 15 * time.Second // renewal comes at two thirds of it
	ca := startPebble(t, httpPort, tlsPort, validity)
	dataDir := t.TempDir()
	acmeServer := func() *testServer {
		cfg := testConfig(t)
		cfg.Addr = fmt.Sprintf("127.0.0.1:%d", tlsPort)
		cfg.AcmeDomain, cfg.AcmeCA, cfg.acmeRoots, cfg.DataDir = acmeTestDomain, ca.dirURL, ca.roots, dataDir
		srv := startServer(t, cfg)
		go func() { _ = srv.ServeRedirect(fmt.Sprintf("127.0.0.1:%d", httpPort)) }()
		return srv
	}
	srv := acmeServer()

	first, err := servedCert(t, srv.addr) // the first handshake obtains the certificate
	if err != nil {
		t.Fatalf("TLS with a certificate from Pebble: %v", err)
	}
	if len(first.DNSNames) != 1 || first.DNSNames[0] != acmeTestDomain || !strings.Contains(first.Issuer.CommonName, "Pebble") {
		t.Fatalf("served certificate: names %v, issuer %q", first.DNSNames, first.Issuer.CommonName)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "acme", acmeTestDomain)); err != nil {
		t.Fatalf("the certificate is not stored under -data-dir: %v", err)
	}
	// Over that certificate: HSTS, and a session.
	tlsClient := &tls.Config{ServerName: acmeTestDomain, InsecureSkipVerify: true}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsClient}}
	resp, err := hc.Get("https://" + srv.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS over ACME TLS")
	}
	dialer := websocket.Dialer{TLSClientConfig: tlsClient}
	ws, _, err := dialer.Dial("wss://"+srv.addr+"/ws/websocket", nil)
	if err != nil {
		t.Fatalf("wss: %v", err)
	}
	c := newClient(t, &rawWS{ws})
	c.name = uniqueName("acme")
	c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword})

	// The redirect listener answers ACME's HTTP-01 path itself and redirects the rest to the
	// certificate's host.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(path string) *http.Response {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path), nil)
		req.Host = "evil.example"
		var resp *http.Response
		waitUntil(t, "the redirect listener", func() bool {
			var err error
			resp, err = noRedirect.Do(req)
			return err == nil
		})
		resp.Body.Close()
		return resp
	}
	if r := get("/login"); r.StatusCode != http.StatusMovedPermanently || r.Header.Get("Location") != fmt.Sprintf("https://%s:%d/login", acmeTestDomain, tlsPort) {
		t.Errorf("redirect: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if r := get("/.well-known/acme-challenge/unknown-token"); r.StatusCode == http.StatusMovedPermanently {
		t.Error("the HTTP-01 path was redirected instead of answered")
	}

	// A restart serves the stored certificate without asking the CA (which is down).
	srv.Shutdown(t.Context())
	ca.kill()
	srv = acmeServer()
	again, err := servedCert(t, srv.addr)
	if err != nil {
		t.Fatalf("after a restart with the CA down: %v", err)
	}
	if again.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("after a restart: serial %v, want the stored %v", again.SerialNumber, first.SerialNumber)
	}

	// Near expiry the certificate is renewed by itself.
	ca.start()
	deadline := first.NotAfter.Add(10 * time.Second)
	for {
		cert, err := servedCert(t, srv.addr)
		if err == nil && cert.SerialNumber.Cmp(first.SerialNumber) != 0 {
			if !cert.NotAfter.After(first.NotAfter) {
				t.Fatalf("renewed certificate expires %v, not after %v", cert.NotAfter, first.NotAfter)
			}
			if time.Now().After(first.NotAfter) {
				t.Fatalf("a new certificate only after the old one expired (%v): not a renewal", first.NotAfter)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the certificate (valid until %v) was not renewed: %v", first.NotAfter, err)
		}
		time.Sleep(250 * time.Millisecond) // polling interval: the renewal runs on its own timer
	}
}
