package main

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
)

// Outbound DKIM (RFC 6376). With -dkim-key every message the relay is handed — verification
// codes, mail people send, invitations, SMS through gateways — carries a DKIM-Signature of
// -mail-domain, made with emersion/go-msgauth (which inbound mail already verifies with), at the
// moment it is handed over: a message that waited in the queue is signed when it leaves, so a
// key rotated meanwhile is the one used. Receivers look the public key up at
// <selector>._domainkey.<mail-domain>; `pingedchat check` prints that TXT record.

const (
	// dkimExpiry is the signature's x=: a signature cannot be replayed by whoever received a
	// message for longer than this (a receiver verifies on arrival; the queue gives up after
	// 48 hours and signs each attempt afresh).
	dkimExpiry = 7 * 24 * time.Hour
	// maxDKIMKeyFile bounds what -dkim-key may hold: a PEM key is a few kilobytes.
	maxDKIMKeyFile = 64 << 10
	// minDKIMRSABits: receivers ignore shorter keys (RFC 8301).
	minDKIMRSABits = 1024
)

// dkimHeaders are the signed header fields. From is listed twice, and fields a message may lack
// are listed too: a signed absent field makes the signature fail if one is added later (RFC 6376
// §5.4.2), so nobody can prepend a second From or a Subject to a signed message.
var dkimHeaders = []string{"From", "From", "To", "Cc", "Subject", "Date", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"Reply-To", "Sender"}

// dkimSigner signs outbound mail for one domain with one key.
type dkimSigner struct {
	domain, selector string
	key              crypto.Signer
}

// loadDKIM reads -dkim-key; nil without one. A key that cannot be used stops start-up: mail
// that goes out unsigned when the operator asked for signatures would be filed as spam quietly.
func loadDKIM(cfg Config) (*dkimSigner, error) {
	if notConfigured(cfg.DKIMKey) {
		return nil, nil
	}
	if !validDKIMSelector(cfg.DKIMSelector) {
		return nil, fmt.Errorf("-dkim-selector %q: want a DNS label (letters, digits, dashes; dots between labels)", cfg.DKIMSelector)
	}
	if notConfigured(cfg.MailDomain) || cfg.MailDomain == "localhost" {
		return nil, errors.New("-dkim-key needs -mail-domain: the domain whose DNS publishes the key")
	}
	key, err := readDKIMKey(cfg.DKIMKey)
	if err != nil {
		return nil, fmt.Errorf("-dkim-key: %w", err)
	}
	return &dkimSigner{domain: strings.ToLower(cfg.MailDomain), selector: cfg.DKIMSelector, key: key}, nil
}

// validDKIMSelector: a selector is a dot-separated list of DNS labels (RFC 6376 §3.1).
func validDKIMSelector(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		if strings.Trim(strings.ToLower(label), "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}

// readDKIMKey reads a PEM private key: RSA (PKCS #1 or #8, at least 1024 bits; 2048 is what
// receivers expect) or Ed25519 (PKCS #8; RFC 8463, which not every receiver verifies yet).
func readDKIMKey(path string) (crypto.Signer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxDKIMKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxDKIMKeyFile {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a PEM key", path, maxDKIMKeyFile)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block (make one with: openssl genrsa -out dkim.pem 2048)", path)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s: a %q PEM block, want RSA PRIVATE KEY or PRIVATE KEY", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < minDKIMRSABits {
			return nil, fmt.Errorf("%s: a %d-bit RSA key; receivers ignore DKIM keys under %d bits (use 2048)", path, k.N.BitLen(), minDKIMRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%s: a %T, want an RSA or Ed25519 key", path, key)
}

// sign returns msg with a DKIM-Signature field prepended.
func (s *dkimSigner) sign(msg []byte, now time.Time) ([]byte, error) {
	opts := &dkim.SignOptions{
		Domain:                 s.domain,
		Selector:               s.selector,
		Signer:                 s.key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             dkimHeaders,
		Expiration:             now.Add(dkimExpiry),
	}
	signer, err := dkim.NewSigner(opts)
	if err != nil {
		return nil, fmt.Errorf("DKIM: %w", err)
	}
	if _, err := signer.Write(msg); err != nil {
		_ = signer.Close()
		return nil, fmt.Errorf("DKIM signing: %w", err)
	}
	if err := signer.Close(); err != nil {
		return nil, fmt.Errorf("DKIM signing: %w", err)
	}
	var out bytes.Buffer
	out.Grow(len(msg) + 512)
	out.WriteString(signer.Signature())
	out.Write(msg)
	return out.Bytes(), nil
}

// dkimRecordName is where receivers look the key up.
func dkimRecordName(selector, domain string) string {
	return selector + "._domainkey." + strings.ToLower(strings.TrimSuffix(domain, "."))
}

// dkimRecordValue is the TXT record's text for the public half of key.
func dkimRecordValue(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("unsupported DKIM key %T", key.Public())
}

// zoneTXT writes a TXT value as a zone file's character-strings: at most 255 bytes each (a
// 2048-bit RSA key's record is longer), in parentheses when it takes several.
func zoneTXT(value string) string {
	var parts []string
	for len(value) > 0 {
		n := min(len(value), 255)
		parts = append(parts, `"`+strings.ReplaceAll(value[:n], `"`, `\"`)+`"`)
		value = value[n:]
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, " ") + " )"
}

// dkimPublicKeyFromRecord reads p= out of a published DKIM record (its strings joined).
func dkimPublicKeyFromRecord(txt string) (string, bool) {
	for _, tag := range strings.Split(txt, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(tag), "=")
		if ok && strings.TrimSpace(k) == "p" {
			return strings.Join(strings.Fields(v), ""), true
		}
	}
	return "", false
}
