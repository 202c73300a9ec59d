package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"pingedchat/internal/dnstest"
)

// writeDKIMKey writes key as PEM (PKCS #1 for RSA, PKCS #8 otherwise) and returns the path.
func writeDKIMKey(t testing.TB, key any) string {
	t.Helper()
	var block *pem.Block
	if k, ok := key.(*rsa.PrivateKey); ok {
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}
	} else {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	path := filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testRSAKey is one 2048-bit key per run: generating one takes a noticeable fraction of a second.
var testRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func startDNS(t *testing.T) *dnstest.Server {
	t.Helper()
	s, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// verifyDKIM checks msg's signatures with the keys dns publishes.
func verifyDKIM(t *testing.T, dns *dnstest.Server, msg []byte) []*dkim.Verification {
	t.Helper()
	r := dns.Resolver()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) { return r.LookupTXT(context.Background(), name) },
	})
	if err != nil {
		t.Fatalf("verifying DKIM: %v", err)
	}
	return vs
}

// Every way out — a verification code sent at once, mail a user sends and an invitation, both
// through the queue — reaches the relay signed for -mail-domain with the configured key, and
// the signature verifies against the published record; changing a signed header afterwards,
// or adding a second From above the first, breaks it.
func TestOutboundMailIsDKIMSigned(t *testing.T) {
	dns := startDNS(t)
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	cfg.DKIMKey, cfg.DKIMSelector = writeDKIMKey(t, testRSAKey()), "s2026"
	value, err := dkimRecordValue(testRSAKey())
	if err != nil {
		t.Fatal(err)
	}
	dns.TXT("s2026._domainkey.chat.example.org", value)
	srv := startServer(t, cfg)

	email := strings.ToLower(uniqueName("dk")) + "@example.org"
	c, _ := registerWith(t, srv, "dkim", map[string]any{"email": email})
	verified(t, relay, c, "email", email, "")
	c.ok("SendEmailMessage", map[string]any{"To": []string{"far@example.com"}, "Subject": "Grüße, signed"})
	c.ok("SendEmailInvite", map[string]any{"email": "friend@example.com", "Message": "Join us!"})
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	msgs, err := relay.Wait(ctx, 3)
	if err != nil {
		t.Fatalf("waiting for 3 messages: %v (got %d)", err, len(msgs))
	}
	for i, m := range msgs {
		vs := verifyDKIM(t, dns, m.Data)
		if len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "chat.example.org" {
			t.Fatalf("message %d: verifications %+v\n%s", i, vs, m.Data)
		}
		v := vs[0]
		if !strings.EqualFold(strings.Join(v.HeaderKeys, ":"), strings.Join(dkimHeaders, ":")) {
			t.Errorf("message %d signs %v", i, v.HeaderKeys)
		}
		if exp := v.Expiration.Sub(v.Time); exp != dkimExpiry {
			t.Errorf("message %d: signature valid for %v, want %v", i, exp, dkimExpiry)
		}
	}

	// Tampering after signing is caught.
	orig := msgs[1].Data
	tampered := bytes.Replace(orig, []byte("Subject: "), []byte("Subject: URGENT "), 1)
	prepended := append([]byte("From: Bank <security@chat.example.org>\r\n"), orig...)
	bodyChanged := bytes.Replace(orig, []byte("\r\n\r\n"), []byte("\r\n\r\nClick here.\r\n"), 1)
	for name, msg := range map[string][]byte{"subject changed": tampered, "second From": prepended, "body changed": bodyChanged} {
		vs := verifyDKIM(t, dns, msg)
		if len(vs) != 1 || vs[0].Err == nil {
			t.Errorf("%s: verifies, want a failure", name)
		}
	}
	// A record that does not match the key (a key rotated without publishing) fails too.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherValue, _ := dkimRecordValue(other)
	dns.Remove("s2026._domainkey.chat.example.org")
	dns.TXT("s2026._domainkey.chat.example.org", otherValue)
	if vs := verifyDKIM(t, dns, orig); len(vs) != 1 || vs[0].Err == nil {
		t.Error("verifies against another key's record")
	}
}

// An Ed25519 key (RFC 8463) signs as well, and its record is the bare 32-byte key.
func TestDKIMEd25519(t *testing.T) {
	dns := startDNS(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	cfg.MailDomain, cfg.DKIMKey = "Chat.Example.org", writeDKIMKey(t, priv)
	s, err := loadDKIM(cfg)
	if err != nil {
		t.Fatal(err)
	}
	value, _ := dkimRecordValue(s.key)
	if !strings.HasPrefix(value, "v=DKIM1; k=ed25519; p=") || len(value) > 255 {
		t.Fatalf("record %q", value)
	}
	dns.TXT("pingedchat._domainkey.chat.example.org", value)
	msg, _, err := formatMail(outMail{From: "a@chat.example.org", To: []string{"b@example.com"}, Subject: "hi", Body: "hello\n"})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := s.sign(msg, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if vs := verifyDKIM(t, dns, signed); len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "chat.example.org" {
		t.Fatalf("verifications %+v", vs)
	}
}

// A key that cannot sign stops start-up with a message that says why, rather than mail going
// out unsigned.
func TestDKIMKeyProblemsStopStartup(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("GODEBUG", "rsa1024min=0") // Go refuses to make a key this short otherwise
	small, err := rsa.GenerateKey(rand.Reader, 512)
	if err != nil {
		t.Fatal(err)
	}
	smallKey := writeDKIMKey(t, small)
	os.Unsetenv("GODEBUG")
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	garbage := filepath.Join(dir, "garbage.pem")
	_ = os.WriteFile(garbage, []byte("not a key\n"), 0o600)
	huge := filepath.Join(dir, "huge.pem")
	_ = os.WriteFile(huge, bytes.Repeat([]byte("A"), maxDKIMKeyFile+1), 0o600)
	good := writeDKIMKey(t, testRSAKey())
	for _, tc := range []struct {
		name, key, selector, domain, want string
	}{
		{"missing file", filepath.Join(dir, "none.pem"), "s", "chat.example.org", "no such file"},
		{"not PEM", garbage, "s", "chat.example.org", "no PEM block"},
		{"too large", huge, "s", "chat.example.org", "larger than"},
		{"short RSA", smallKey, "s", "chat.example.org", "512-bit"},
		{"ECDSA", writeDKIMKey(t, ec), "s", "chat.example.org", "want an RSA or Ed25519"},
		{"selector with a space", good, "s 1", "chat.example.org", "-dkim-selector"},
		{"selector injecting a tag", good, "s; p=", "chat.example.org", "-dkim-selector"},
		{"no mail domain", good, "s", "localhost", "-mail-domain"},
	} {
		cfg := testConfig(t)
		cfg.DKIMKey, cfg.DKIMSelector, cfg.MailDomain = tc.key, tc.selector, tc.domain
		_, err := NewServer(t.Context(), cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: start-up error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	// FILL_ME, as in the env file, means unsigned.
	cfg := defaultConfig()
	cfg.DKIMKey = "FILL_ME"
	if s, err := loadDKIM(cfg); s != nil || err != nil {
		t.Fatalf("FILL_ME: %v, %v", s, err)
	}
}

// Long records are split into character-strings of at most 255 bytes for the zone file.
func TestZoneTXTSplitsLongRecords(t *testing.T) {
	value, err := dkimRecordValue(testRSAKey())
	if err != nil {
		t.Fatal(err)
	}
	z := zoneTXT(value)
	if !strings.HasPrefix(z, `( "v=DKIM1; k=rsa; p=`) || !strings.HasSuffix(z, `" )`) {
		t.Fatalf("zone text %s", z)
	}
	var joined string
	for _, part := range strings.Split(strings.Trim(z, "( )"), `" "`) {
		part = strings.Trim(part, `"`)
		if len(part) > 255 {
			t.Fatalf("a character-string of %d bytes", len(part))
		}
		joined += part
	}
	if joined != value {
		t.Fatal("the parts do not join to the record")
	}
	if p, ok := dkimPublicKeyFromRecord(value); !ok || !strings.HasSuffix(value, p) {
		t.Fatalf("p= read back as %q", p)
	}
	if zoneTXT(`v=spf1 "x"`) != `"v=spf1 \"x\""` {
		t.Fatal("quotes not escaped")
	}
}
