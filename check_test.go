package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/SherClockHolmes/webpush-go"
	"github.com/jackc/pgx/v5"

	"pingedchat/internal/apnstest"
	"pingedchat/internal/asdnode"
	"pingedchat/internal/dnstest"
	"pingedchat/internal/fcmtest"
	"pingedchat/internal/smtptest"
)

// Tests of `pingedchat check` (check.go, check_mail.go, check_tls.go): each dependency against a
// real local server, once configured well and once misconfigured.

// checkOnly runs the named checks of cfg (nil: all), after tweak, and returns the checker and
// its printed report.
func checkOnly(t *testing.T, cfg Config, tweak func(*checker), checks ...func(*checker) func(context.Context)) (*checker, string) {
	t.Helper()
	c := newChecker(cfg)
	c.timeout = 5 * time.Second
	c.probe = 2 * time.Second
	if tweak != nil {
		tweak(c)
	}
	if len(checks) == 0 {
		c.run(t.Context())
	} else {
		for _, f := range checks {
			ctx, cancel := context.WithTimeout(t.Context(), c.timeout)
			f(c)(ctx)
			cancel()
		}
	}
	var out bytes.Buffer
	c.write(&out)
	return c, out.String()
}

// wantItem finds the line about what and checks its status and that its text says want.
func wantItem(t *testing.T, c *checker, out, what string, st checkStatus, want string) {
	t.Helper()
	for _, it := range c.items {
		if it.what == what {
			if it.status != st || !strings.Contains(it.detail, want) {
				t.Errorf("%s: %s %q, want %s containing %q\n%s", what, it.status, it.detail, st, want, out)
			}
			return
		}
	}
	t.Errorf("no line about %s\n%s", what, out)
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var (
	checkPostgresOf = func(c *checker) func(context.Context) { return c.checkPostgres }
	checkQuickOf    = func(c *checker) func(context.Context) { return c.checkQuickStore }
	checkNATSOf     = func(c *checker) func(context.Context) { return c.checkNATS }
	checkFilesOf    = func(c *checker) func(context.Context) { return c.checkFiles }
	checkTLSOf      = func(c *checker) func(context.Context) { return c.checkTLS }
	checkRelayOf    = func(c *checker) func(context.Context) { return c.checkRelay }
	checkDKIMOf     = func(c *checker) func(context.Context) { return c.checkDKIM }
	checkMailDNSOf  = func(c *checker) func(context.Context) { return c.checkMailDNS }
	checkPushOf     = func(c *checker) func(context.Context) { return c.checkPush }
)

func TestCheckPostgres(t *testing.T) {
	cfg := testConfig(t)
	startServer(t, cfg) // migrated: the schema is current
	c, out := checkOnly(t, cfg, nil, checkPostgresOf)
	wantItem(t, c, out, "postgres", checkOK, "(current)")

	// A database that does not exist yet is fine: the role may create it, and the server does.
	missing := cfg
	missing.Postgres = fmt.Sprintf("dbname=pingedchat_check_missing_%d", time.Now().UnixNano())
	c, out = checkOnly(t, missing, nil, checkPostgresOf)
	wantItem(t, c, out, "postgres", checkOK, "does not exist yet")

	// Nothing listening.
	_, port, _ := net.SplitHostPort(closedPort(t))
	down := cfg
	down.Postgres = "host=127.0.0.1 port=" + port + " dbname=x connect_timeout=2"
	c, out = checkOnly(t, down, nil, checkPostgresOf)
	wantItem(t, c, out, "postgres", checkFail, "is PostgreSQL running")

	// A database a newer release migrated: the server would refuse it.
	newer := fmt.Sprintf("pingedchat_check_newer_%d", os.Getpid())
	admin, err := pgx.Connect(t.Context(), "dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(t.Context(), "CREATE DATABASE "+newer); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+newer+" WITH (FORCE)") })
	conn, err := pgx.Connect(t.Context(), "dbname="+newer)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(t.Context(), fmt.Sprintf("CREATE TABLE schema_version (version int); INSERT INTO schema_version VALUES (%d)", schemaVersion()+1))
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	future := cfg
	future.Postgres = "dbname=" + newer
	c, out = checkOnly(t, future, nil, checkPostgresOf)
	wantItem(t, c, out, "postgres", checkFail, "newer release")
}

func TestCheckQuickStoreAerospike(t *testing.T) {
	node := asdnode.Start(t, asdnode.Options{})
	cfg := testConfig(t)
	cfg.QuickStore = node.Spec()
	c, out := checkOnly(t, cfg, nil, checkQuickOf)
	wantItem(t, c, out, "quick store", checkOK, "namespaces present")

	cfg.QuickStore = node.Spec() + "?users=nosuchns"
	c, out = checkOnly(t, cfg, nil, checkQuickOf)
	wantItem(t, c, out, "quick store", checkFail, `no namespace "nosuchns"`)

	cfg.QuickStore = "aerospike://" + closedPort(t)
	c, out = checkOnly(t, cfg, nil, checkQuickOf)
	wantItem(t, c, out, "quick store", checkFail, "is the server running")

	cfg.QuickStore = "redis://x"
	c, out = checkOnly(t, cfg, nil, checkQuickOf)
	wantItem(t, c, out, "quick store", checkFail, "unknown -quickstore")
}

func TestCheckNATS(t *testing.T) {
	cfg := testConfig(t)
	cfg.NATS = startNATS(t)
	c, out := checkOnly(t, cfg, nil, checkNATSOf)
	wantItem(t, c, out, "nats", checkOK, "connected to")

	cfg.NATS = "nats://" + closedPort(t)
	c, out = checkOnly(t, cfg, nil, checkNATSOf)
	wantItem(t, c, out, "nats", checkFail, "connecting to nats://127.0.0.1")

	cfg.NATS = ""
	c, out = checkOnly(t, cfg, nil, checkNATSOf)
	wantItem(t, c, out, "nats", checkOK, "embedded")
}

// The relay is tried the way the queue uses it — STARTTLS, AUTH, the sender — and nothing is
// sent.
func TestCheckSMTPRelay(t *testing.T) {
	certFile, keyFile := selfSignedCert(t, t.TempDir())
	tlsCfg, roots := tlsConfigFor(t, certFile, keyFile)
	relay, err := smtptest.Start(smtptest.Options{Username: "relayuser", Password: "relaypass", TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	cfg := testConfig(t)
	cfg.MailDomain, cfg.smtpRoots = "chat.example.org", roots
	cfg.SMTPURL = "smtp://relayuser:relaypass@" + relay.Addr()
	c, out := checkOnly(t, cfg, nil, checkRelayOf)
	wantItem(t, c, out, "smtp relay", checkOK, "STARTTLS, authenticated as relayuser, sender pingedchat@chat.example.org accepted")
	if strings.Contains(out, "relaypass") {
		t.Errorf("the report shows the password:\n%s", out)
	}

	cfg.SMTPURL = "smtp://relayuser:wrong@" + relay.Addr()
	c, out = checkOnly(t, cfg, nil, checkRelayOf)
	wantItem(t, c, out, "smtp relay", checkFail, "authenticating")

	// A relay that does not offer STARTTLS is refused, as the queue refuses it.
	plain, err := smtptest.Start(smtptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	cfg.SMTPURL = "smtp://" + plain.Addr()
	c, out = checkOnly(t, cfg, nil, checkRelayOf)
	wantItem(t, c, out, "smtp relay", checkFail, "STARTTLS")
	if len(relay.Messages())+len(plain.Messages()) != 0 {
		t.Fatal("check sent mail")
	}

	cfg.SMTPURL = ""
	c, out = checkOnly(t, cfg, nil, checkRelayOf)
	wantItem(t, c, out, "smtp relay", checkSkip, "not configured")
}

func TestCheckS3Bucket(t *testing.T) {
	cfg := testConfig(t)
	base := startFakeS3(t, "chatfiles")
	cfg.S3AccessKey, cfg.S3SecretKey = "AKIDTEST", "secret-for-tests"
	cfg.S3URL = base + "/chatfiles"
	c, out := checkOnly(t, cfg, nil, checkFilesOf)
	wantItem(t, c, out, "s3", checkOK, "chatfiles: writable")

	cfg.S3URL = base + "/nosuchbucket"
	c, out = checkOnly(t, cfg, nil, checkFilesOf)
	wantItem(t, c, out, "s3", checkFail, "does not exist")

	cfg.S3URL = "ftp://example.org/b"
	c, out = checkOnly(t, cfg, nil, checkFilesOf)
	wantItem(t, c, out, "s3", checkFail, "-s3-url must be")
}

func TestCheckFilesDir(t *testing.T) {
	cfg := testConfig(t)
	c, out := checkOnly(t, cfg, nil, checkFilesOf)
	wantItem(t, c, out, "files", checkOK, "is writable")
	if entries, _ := os.ReadDir(cfg.FilesDir); len(entries) != 0 {
		t.Fatalf("check left %v behind", entries)
	}

	cfg.FilesDir = filepath.Join(t.TempDir(), "not", "yet")
	c, out = checkOnly(t, cfg, nil, checkFilesOf)
	wantItem(t, c, out, "files", checkOK, "does not exist yet")
	if _, err := os.Stat(cfg.FilesDir); !os.IsNotExist(err) {
		t.Fatal("check created -files-dir")
	}

	file := filepath.Join(t.TempDir(), "a-file")
	_ = os.WriteFile(file, nil, 0o600)
	cfg.FilesDir = filepath.Join(file, "files")
	c, out = checkOnly(t, cfg, nil, checkFilesOf)
	wantItem(t, c, out, "files", checkFail, "is not a directory")
}

func TestCheckPushCredentials(t *testing.T) {
	dir := t.TempDir()
	fcm, err := fcmtest.New()
	if err != nil {
		t.Fatal(err)
	}
	defer fcm.Close()
	apns, err := apnstest.New("org.example.chat")
	if err != nil {
		t.Fatal(err)
	}
	defer apns.Close()
	priv, pub, err := webpush.GenerateVAPIDKeys()
	if err != nil {
		t.Fatal(err)
	}
	otherPriv, _, _ := webpush.GenerateVAPIDKeys()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := testConfig(t)
	cfg.FCMCredentials = write("fcm.json", fcm.CredentialsJSON())
	cfg.APNsKeyFile, cfg.APNsKeyID, cfg.APNsTeamID, cfg.APNsTopic = write("apns.p8", apns.KeyP8()), "KEY1", "TEAM1", "org.example.chat"
	cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey = pub, priv
	c, out := checkOnly(t, cfg, nil, checkPushOf)
	wantItem(t, c, out, "push fcm", checkOK, "parses")
	wantItem(t, c, out, "push apns", checkOK, "parses")
	wantItem(t, c, out, "push webpush", checkOK, "pair")

	badKey := strings.Replace(string(fcm.CredentialsJSON()), "MII", "XXX", 1)
	cfg.FCMCredentials = write("fcm-bad.json", []byte(badKey))
	cfg.APNsKeyID = ""
	cfg.VAPIDPrivateKey = otherPriv
	c, out = checkOnly(t, cfg, nil, checkPushOf)
	wantItem(t, c, out, "push fcm", checkFail, "private_key")
	wantItem(t, c, out, "push apns", checkFail, "-apns-key-id")
	wantItem(t, c, out, "push webpush", checkFail, "not the public half")

	c, out = checkOnly(t, testConfig(t), nil, checkPushOf)
	wantItem(t, c, out, "push", checkSkip, "no provider")
}

// certFor writes a certificate for names valid from nb to na, and its key.
func certFor(t *testing.T, names []string, nb, na time.Time) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func TestCheckTLSCertificate(t *testing.T) {
	now := time.Now()
	cfg := testConfig(t)
	cfg.PublicURL = "https://chat.example.org/"
	cfg.TLSCert, cfg.TLSKey = certFor(t, []string{"chat.example.org"}, now.Add(-time.Hour), now.Add(90*24*time.Hour))
	c, out := checkOnly(t, cfg, nil, checkTLSOf)
	// Self-signed: it loads and is in date, but browsers will not trust it.
	wantItem(t, c, out, "tls", checkWarn, "not trusted")
	if c.failures() != 0 {
		t.Fatalf("a usable certificate fails:\n%s", out)
	}

	cfg.TLSCert, cfg.TLSKey = certFor(t, []string{"chat.example.org"}, now.Add(-48*time.Hour), now.Add(-time.Hour))
	c, out = checkOnly(t, cfg, nil, checkTLSOf)
	wantItem(t, c, out, "tls", checkFail, "expired")

	otherCert, _ := certFor(t, []string{"chat.example.org"}, now.Add(-time.Hour), now.Add(time.Hour))
	_, otherKey := certFor(t, []string{"chat.example.org"}, now.Add(-time.Hour), now.Add(time.Hour))
	cfg.TLSCert, cfg.TLSKey = otherCert, otherKey
	c, out = checkOnly(t, cfg, nil, checkTLSOf)
	wantItem(t, c, out, "tls", checkFail, "private key does not match")

	cfg.TLSCert, cfg.TLSKey = "", ""
	c, out = checkOnly(t, cfg, nil, checkTLSOf)
	wantItem(t, c, out, "tls", checkSkip, "plain HTTP")
}

func startTestDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// An ACME domain must lead to this host: by an address of its own, or — behind NAT — by a
// token served where the CA's HTTP-01 challenge arrives coming back when fetched by the name.
func TestCheckACMEDomainResolvesHere(t *testing.T) {
	dns := startTestDNS(t)
	dns.A("here.example.org", "127.0.0.1")
	dns.A("away.example.org", "192.0.2.1") // TEST-NET-1: nobody's
	cfg := testConfig(t)
	cfg.mailDNS = dns.Resolver()
	cfg.DataDir = t.TempDir()
	cfg.AcmeDomain = "here.example.org,away.example.org,missing.example.org"
	cfg.RedirectAddr = "127.0.0.1:0"
	c, out := checkOnly(t, cfg, nil, checkTLSOf)
	wantItem(t, c, out, "acme here.example.org", checkOK, "an address of this host")
	wantItem(t, c, out, "acme away.example.org", checkFail, "does not lead to this host")
	wantItem(t, c, out, "acme missing.example.org", checkFail, "no address")
	if !strings.Contains(out, "missing.example.org.\t3600\tIN\tA\t<this host's public IPv4 address>") {
		t.Errorf("no A record line for missing.example.org:\n%s", out)
	}

	// Behind NAT no interface has the public address: the probe through the name decides.
	notHere := func(c *checker) { c.localAddrs = func() ([]net.IP, error) { return nil, nil } }
	cfg.AcmeDomain = "here.example.org"
	c, out = checkOnly(t, cfg, notHere, checkTLSOf)
	wantItem(t, c, out, "acme here.example.org", checkOK, "leads to this host (a token served on port")

	// Something else answers on the port the name leads to.
	other, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("no 127.0.0.2 here: %v", err)
	}
	defer other.Close()
	go func() {
		for {
			conn, err := other.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				buf := make([]byte, 1024)
				_, _ = conn.Read(buf)
				_, _ = conn.Write([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"))
			}()
		}
	}()
	_, port, _ := net.SplitHostPort(other.Addr().String())
	dns.A("elsewhere.example.org", "127.0.0.2")
	cfg.AcmeDomain, cfg.RedirectAddr = "elsewhere.example.org", "127.0.0.1:"+port
	c, out = checkOnly(t, cfg, notHere, checkTLSOf)
	wantItem(t, c, out, "acme elsewhere.example.org", checkFail, "not from this host (HTTP 404)")

	// The port is taken (the server runs): nothing is claimed either way.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg.AcmeDomain, cfg.RedirectAddr = "here.example.org", busy.Addr().String()
	c, out = checkOnly(t, cfg, notHere, checkTLSOf)
	wantItem(t, c, out, "acme here.example.org", checkWarn, "address already in use")
}

// mailCheckConfig is a configuration that sends through relay (plain, on loopback) as
// chat.example.org with a DKIM key and receives on -smtp-listen, resolving with dns.
func mailCheckConfig(t *testing.T, dns *dnstest.Server, relay *smtptest.Server) Config {
	cfg := testConfig(t)
	cfg.mailDNS = dns.Resolver()
	cfg.MailDomain, cfg.PublicURL = "chat.example.org", "https://chat.example.org/"
	cfg.SMTPURL = "smtp://" + relay.Addr() + "?insecure=1"
	cfg.SMTPListen = ":25"
	cfg.DKIMKey, cfg.DKIMSelector = writeDKIMKey(t, testRSAKey()), "s1"
	return cfg
}

// A domain without MX, SPF, DMARC or DKIM records gets each exact line to add; with them
// published, nothing is asked for. The lines are checked by publishing exactly what was
// printed and checking again.
func TestCheckMailDNS(t *testing.T) {
	dns := startTestDNS(t)
	relay, err := smtptest.Start(smtptest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	cfg := mailCheckConfig(t, dns, relay)
	mailChecks := []func(*checker) func(context.Context){checkRelayOf, checkDKIMOf, checkMailDNSOf}

	c, out := checkOnly(t, cfg, nil, mailChecks...)
	wantItem(t, c, out, "smtp relay", checkOK, "plain text (?insecure=1)")
	wantItem(t, c, out, "mx", checkFail, "no MX record for chat.example.org")
	wantItem(t, c, out, "spf", checkFail, "no SPF record")
	wantItem(t, c, out, "dmarc", checkWarn, "no DMARC record")
	wantItem(t, c, out, "dkim", checkFail, "no DKIM record at s1._domainkey.chat.example.org")
	for _, want := range []string{
		"chat.example.org.\t3600\tIN\tMX\t10 chat.example.org.",
		"chat.example.org.\t3600\tIN\tTXT\t\"v=spf1 mx a:chat.example.org ~all\"",
		"_dmarc.chat.example.org.\t3600\tIN\tTXT\t\"v=DMARC1; p=none; rua=mailto:postmaster@chat.example.org\"",
		"s1._domainkey.chat.example.org.\t3600\tIN\tTXT\t( \"v=DKIM1; k=rsa; p=",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no line %q in\n%s", want, out)
		}
	}
	if c.failures() != 3 {
		t.Errorf("%d failures, want 3 (MX, SPF, DKIM)", c.failures())
	}

	// Publish exactly what was printed.
	for _, line := range c.records {
		f := strings.Split(line, "\t")
		name, typ, value := strings.TrimSuffix(f[0], "."), f[3], f[4]
		switch typ {
		case "MX":
			pref, host, _ := strings.Cut(value, " ")
			if pref != "10" {
				t.Fatalf("MX %q", value)
			}
			dns.MX(name, 10, host)
		case "TXT":
			dns.TXT(name, unzoneTXT(t, value))
		}
	}
	c, out = checkOnly(t, cfg, nil, mailChecks...)
	if c.failures() != 0 || len(c.records) != 0 {
		t.Fatalf("after publishing the printed records:\n%s", out)
	}
	wantItem(t, c, out, "dkim", checkOK, "matches the key")
	if !strings.Contains(out, "The DKIM record, published and matching: s1._domainkey.chat.example.org.\t3600\tIN\tTXT\t( \"v=DKIM1; k=rsa; p=") {
		t.Errorf("the DKIM record is not printed:\n%s", out)
	}

	// Misconfigured records: two SPF records, an SPF that lets anyone send, the DKIM record
	// of another key.
	dns.Remove("chat.example.org")
	dns.MX("chat.example.org", 10, "chat.example.org")
	dns.TXT("chat.example.org", "v=spf1 mx ~all")
	dns.TXT("chat.example.org", "v=spf1 a ~all")
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherValue, _ := dkimRecordValue(other)
	dns.Remove("s1._domainkey.chat.example.org")
	dns.TXT("s1._domainkey.chat.example.org", otherValue)
	c, out = checkOnly(t, cfg, nil, mailChecks...)
	wantItem(t, c, out, "spf", checkFail, "2 SPF records")
	wantItem(t, c, out, "dkim", checkFail, "holds another key")
	dns.Remove("chat.example.org")
	dns.MX("chat.example.org", 10, "chat.example.org")
	dns.TXT("chat.example.org", "v=spf1 +all")
	c, out = checkOnly(t, cfg, nil, mailChecks...)
	wantItem(t, c, out, "spf", checkWarn, "lets anyone send")

	// Signing for one domain while mail comes From another does not count for DMARC.
	cfg.MailFrom = "noreply@other.example.net"
	c, out = checkOnly(t, cfg, nil, checkDKIMOf)
	wantItem(t, c, out, "dkim", checkWarn, "mail comes from other.example.net but is signed for chat.example.org")
	cfg.MailFrom = "noreply@news.chat.example.org"
	if c, out = checkOnly(t, cfg, nil, checkDKIMOf); len(c.items) != 1 || c.items[0].status != checkFail {
		t.Errorf("a subdomain's From is aligned:\n%s", out)
	}
	cfg.MailFrom = ""

	// The default mail domain cannot send or receive mail.
	cfg.MailDomain = "localhost"
	c, out = checkOnly(t, cfg, nil, checkMailDNSOf)
	wantItem(t, c, out, "mail domain", checkFail, "-mail-domain is \"localhost\"")
}

// unzoneTXT reads a zone file's TXT value back: quoted strings, perhaps in parentheses.
func unzoneTXT(t *testing.T, v string) string {
	t.Helper()
	v = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(v, "( "), " )"))
	var out strings.Builder
	for _, part := range strings.Split(v, `" "`) {
		out.WriteString(strings.ReplaceAll(strings.Trim(part, `"`), `\"`, `"`))
	}
	return out.String()
}

// The subcommand reads the configuration as the server does: an env file, PINGED_* variables,
// -NAME-file secrets, flags over all of them; and its exit status says whether anything needed
// is wrong.
func TestCheckSubcommandReadsTheServersConfiguration(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PINGED_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	natsURL := startNATS(t)
	natsFile := filepath.Join(dir, "nats-url")
	_ = os.WriteFile(natsFile, []byte(natsURL+"\n"), 0o600)
	good := testDatabase(t)
	envFile := filepath.Join(dir, "pingedchat.env")
	_ = os.WriteFile(envFile, []byte(strings.Join([]string{
		"# as deploy/pingedchat.env",
		"PINGED_POSTGRES=host=127.0.0.1 port=" + strings.Split(closedPort(t), ":")[1] + " dbname=nothing connect_timeout=2",
		"PINGED_NATS_FILE=" + natsFile,
		"PINGED_FILES_DIR=" + dir,
		"PINGED_SMTP_URL=FILL_ME",
		"",
	}, "\n")), 0o600)
	for _, name := range []string{"PINGED_POSTGRES", "PINGED_NATS_FILE", "PINGED_FILES_DIR", "PINGED_SMTP_URL"} {
		t.Setenv(name, "") // restored after the test: loadEnvFile sets them
	}

	var out bytes.Buffer
	err := runCheck(t.Context(), []string{"-env-file", envFile, "-postgres", good}, &out)
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out.String())
	}
	for _, want := range []string{"ok  postgres", "ok  nats  connected  to  nats://127.0.0.1", "--  smtp  relay"} {
		if !strings.Contains(strings.Join(strings.Fields(out.String()), "  "), want) {
			t.Errorf("no %q in\n%s", want, out.String())
		}
	}

	// Without the flag, the env file's PostgreSQL is used, and it is down: an error (exit 1).
	out.Reset()
	err = runCheck(t.Context(), []string{"--env-file=" + envFile}, &out)
	if err == nil || !strings.Contains(err.Error(), "1 problem") || !strings.Contains(out.String(), "FAIL  postgres") {
		t.Fatalf("check with PostgreSQL down: %v\n%s", err, out.String())
	}

	// A configuration the server would refuse is refused before any check.
	t.Setenv("PINGED_NATS", natsURL)
	err = runCheck(t.Context(), []string{"-env-file", envFile}, &out)
	if err == nil || !strings.Contains(err.Error(), "PINGED_NATS and PINGED_NATS_FILE are both set") {
		t.Fatalf("PINGED_NATS with PINGED_NATS_FILE: %v", err)
	}
	_ = os.WriteFile(envFile, []byte("PINGED_POSTGRES\n"), 0o600)
	if err := runCheck(t.Context(), []string{"-env-file", envFile}, &out); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("a broken env file: %v", err)
	}
	if err := runCheck(t.Context(), []string{"-env-file"}, &out); err == nil {
		t.Fatal("-env-file without a name accepted")
	}
}

// The healthcheck subcommand asks the server where -addr says, over TLS when it speaks TLS.
func TestHealthcheckSubcommand(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	_, port, _ := net.SplitHostPort(srv.addr)
	if ok, err := runSubcommand(t.Context(), []string{"healthcheck", "-addr", ":" + port}); !ok || err != nil {
		t.Fatalf("healthcheck of a running server: %v, %v", ok, err)
	}
	if _, err := runSubcommand(t.Context(), []string{"healthcheck", "-addr", closedPort(t)}); err == nil {
		t.Fatal("healthcheck of nothing passed")
	}

	tcfg := testConfig(t)
	tcfg.TLSCert, tcfg.TLSKey = selfSignedCert(t, t.TempDir())
	tsrv := startServer(t, tcfg)
	if _, err := runSubcommand(t.Context(), []string{"healthcheck", "-addr", tsrv.addr, "-tls-cert", tcfg.TLSCert, "-tls-key", tcfg.TLSKey}); err != nil {
		t.Fatalf("healthcheck over TLS: %v", err)
	}
	// Something that answers, but not 200.
	if _, err := runSubcommand(t.Context(), []string{"healthcheck", "-addr", tsrv.addr}); err == nil {
		t.Fatal("plain HTTP to a TLS port passed")
	}
}
