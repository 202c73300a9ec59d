package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// fakeDNS is the DNS of inbound mail's checks in tests: TXT records by name; every other name
// and type does not exist. No look-up leaves the machine.
type fakeDNS map[string][]string

func notFound(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

func (d fakeDNS) LookupTXT(_ context.Context, name string) ([]string, error) {
	if txt, ok := d[strings.ToLower(strings.TrimSuffix(name, "."))]; ok {
		return txt, nil
	}
	return nil, notFound(name)
}
func (d fakeDNS) LookupMX(_ context.Context, name string) ([]*net.MX, error) {
	return nil, notFound(name)
}
func (d fakeDNS) LookupIPAddr(_ context.Context, name string) ([]net.IPAddr, error) {
	return nil, notFound(name)
}
func (d fakeDNS) LookupAddr(_ context.Context, addr string) ([]string, error) {
	return nil, notFound(addr)
}

// dkimSigned signs msg for domain with a new key and publishes the key in dns.
func dkimSigned(t *testing.T, dns fakeDNS, domain string, msg []byte) []byte {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	dns["sel._domainkey."+domain] = []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}
	var out bytes.Buffer
	if err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{Domain: domain, Selector: "sel", Signer: priv}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func plainMail(from, to, subject string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@x>\r\n\r\nHello.\r\n")
}

// authServer is a mail server whose checks see dns, with the inbound token set.
func authServer(t *testing.T, dns fakeDNS) *testServer {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.SMTPListen, cfg.InboundToken, cfg.mailDNS = testMailDomain, "127.0.0.1:0", testInboundToken, dns
	return startServer(t, cfg)
}

// Inbound mail is stored with its SPF, DKIM and DMARC verdict, and marked unverified unless an
// aligned SPF pass or DKIM signature vouches for its From; mail claiming our own domain must
// verify or is refused (SMTP 550, HTTP 403). Every look-up goes to local records.
func TestSenderVerification(t *testing.T) {
	dns := fakeDNS{
		"spf.example":              {"v=spf1 ip4:127.0.0.1 -all"},
		"nospf.example":            {"v=spf1 -all"},
		"_dmarc.strict.example":    {"v=DMARC1; p=reject; aspf=s"},
		"mail.strict.example":      {"v=spf1 ip4:127.0.0.1 -all"},
		"_dmarc." + testMailDomain: {"v=DMARC1; p=reject"},
	}
	srv := authServer(t, dns)
	c := register(t, srv, "vera")
	addr := c.name + "@" + testMailDomain
	receive := func(what string) map[string]any {
		t.Helper()
		e := c.waitPush("EmailReceived "+what, func(m map[string]any) bool {
			return m["cmd"] == "EmailReceived" && m["Email"].(map[string]any)["Subject"] == what
		})["Email"].(map[string]any)
		return e
	}
	for _, tc := range []struct {
		name, envFrom, from string
		sign                string // DKIM-sign for this domain
		auth                string
		unverified          bool
	}{
		{"nothing", "a@nowhere.example", "a@nowhere.example", "", "spf=none dkim=none dmarc=none", true},
		{"spf", "a@spf.example", "a@spf.example", "", "spf=pass dkim=none dmarc=none", false},
		{"spffail", "a@nospf.example", "a@nospf.example", "", "spf=fail dkim=none dmarc=none", true},
		{"spfunaligned", "bounce@spf.example", "boss@elsewhere.example", "", "spf=pass dkim=none dmarc=none", true},
		{"dkim", "a@nowhere.example", "a@signed.example", "signed.example", "spf=none dkim=pass dmarc=none", false},
		{"dkimunaligned", "a@nowhere.example", "a@victim.example", "attacker.example", "spf=none dkim=pass dmarc=none", true},
		{"strictsubdomain", "a@mail.strict.example", "a@strict.example", "", "spf=pass dkim=none dmarc=fail", true},
		{"ourown", "x@" + testMailDomain, "boss@" + testMailDomain, testMailDomain, "spf=none dkim=pass dmarc=pass", false},
	} {
		msg := plainMail(tc.from, addr, tc.name)
		if tc.sign != "" {
			msg = dkimSigned(t, dns, tc.sign, msg)
		}
		if err := smtpSend(t, srv, tc.envFrom, []string{addr}, msg); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		e := receive(tc.name)
		if e["Auth"] != tc.auth || (e["Unverified"] == true) != tc.unverified {
			t.Errorf("%s: Auth %v, Unverified %v; want %q, %v", tc.name, e["Auth"], e["Unverified"], tc.auth, tc.unverified)
		}
	}
	// A forged From in our own domain: SMTP 550, HTTP 403, nothing stored.
	forged := plainMail("admin@"+testMailDomain, addr, "forged")
	if err := smtpSend(t, srv, "admin@"+testMailDomain, []string{addr}, forged); err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("a forged From in our domain over SMTP: %v", err)
	}
	if code := postMail(t, srv, "/inbound/email?to="+addr, "message/rfc822", forged, withToken); code != http.StatusForbidden {
		t.Errorf("a forged From in our domain over HTTP: %d", code)
	}
	// A signature for another domain does not make it ours.
	if err := smtpSend(t, srv, "x@attacker.example", []string{addr}, dkimSigned(t, dns, "attacker.example", forged)); err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("our domain signed by another: %v", err)
	}
	// Over HTTP the pipe may say where the mail came from; without it, SPF is unknown.
	if code := postMail(t, srv, "/inbound/email?ip=127.0.0.1&from=a@spf.example&to="+addr, "message/rfc822", plainMail("a@spf.example", addr, "httpspf"), withToken); code != http.StatusOK {
		t.Fatalf("HTTP with SPF evidence: %d", code)
	}
	if e := receive("httpspf"); e["Auth"] != "spf=pass dkim=none dmarc=none" || e["Unverified"] == true {
		t.Errorf("HTTP with SPF evidence: %v %v", e["Auth"], e["Unverified"])
	}
	if code := postMail(t, srv, "/inbound/email?to="+addr, "message/rfc822", plainMail("a@spf.example", addr, "httpnone"), withToken); code != http.StatusOK {
		t.Fatalf("HTTP without evidence: %d", code)
	}
	if e := receive("httpnone"); e["Unverified"] != true {
		t.Errorf("HTTP without evidence: %v %v", e["Auth"], e["Unverified"])
	}
	// The list's summaries (read without bodies) and GetEmail carry the verdict too.
	listed := 0
	for _, e := range emails(c.ok("GetAllEmails", nil)) {
		if e["Subject"] == "forged" {
			t.Fatalf("a forged e-mail was stored: %v", e)
		}
		if e["Subject"] == "nothing" || e["Subject"] == "spf" {
			listed++
			whole := fetchEmail(c, e["ID"])
			want := e["Subject"] == "nothing"
			if (e["Unverified"] == true) != want || e["Auth"] == nil || whole["Auth"] != e["Auth"] || (whole["Unverified"] == true) != want {
				t.Errorf("%v: listed Auth %v, Unverified %v; GetEmail Auth %v, Unverified %v", e["Subject"], e["Auth"], e["Unverified"], whole["Auth"], whole["Unverified"])
			}
		}
	}
	if listed != 2 {
		t.Fatalf("listed %d of the two e-mails looked for", listed)
	}
}
