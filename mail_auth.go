package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/mail"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-msgauth/dmarc"
	"golang.org/x/net/publicsuffix"
)

// Who sent an inbound message (DESIGN §5.1): SPF (blitiri.com.ar/go/spf, on the SMTP client's
// address and envelope sender), DKIM and DMARC (emersion/go-msgauth). The From header counts as
// verified when an SPF pass or a DKIM signature that passes is aligned with its domain (DMARC's
// rule, relaxed unless the domain's record asks for strict). Mail is kept either way, marked
// unverified, except mail claiming our own -mail-domain, which must verify.

const (
	authTimeout  = 10 * time.Second // all of one message's look-ups
	maxDKIMSigs  = 5                // signatures verified per message
	authPass     = "pass"
	authNone     = "none"
	authFail     = "fail"
	authTempFail = "temperror"
)

// mailResolver is the DNS the checks use: net.Resolver, or local records in tests.
type mailResolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

func (db *Database) resolver() mailResolver {
	if db.cfg.mailDNS != nil {
		return db.cfg.mailDNS
	}
	return net.DefaultResolver
}

// senderAuth is the verdict on a message's From.
type senderAuth struct {
	spf, dkim, dmarc string
	verified         bool
}

// String is the verdict as stored and shown: "spf=pass dkim=none dmarc=none".
func (a senderAuth) String() string {
	return "spf=" + a.spf + " dkim=" + a.dkim + " dmarc=" + a.dmarc
}

// senderEvidence is what the way in knows of where a message came from.
type senderEvidence struct {
	ip      net.IP // the SMTP client's address (nil: unknown)
	helo    string
	envFrom string // the envelope sender ("" for the null sender, or unknown)
	spf     string // an SPF result the webhook gives instead (with no ip)
	spfFrom string // the domain that result is for
}

// checkSender verifies raw's From header (p.from) from ev.
func (db *Database) checkSender(ctx context.Context, raw []byte, p *parsedMail, ev senderEvidence) senderAuth {
	ctx, cancel := context.WithTimeout(ctx, authTimeout)
	defer cancel()
	r := db.resolver()
	lookupTXT := func(name string) ([]string, error) { return r.LookupTXT(ctx, name) }
	a := senderAuth{spf: authNone, dkim: authNone, dmarc: authNone}
	fromDomain := domainOf(p.from)

	spfDomain := ""
	switch {
	case ev.ip != nil:
		res, _ := spf.CheckHostWithSender(ev.ip, ev.helo, ev.envFrom, spf.WithResolver(r), spf.WithContext(ctx))
		a.spf = strings.ToLower(string(res))
		if spfDomain = domainOf(ev.envFrom); spfDomain == "" {
			spfDomain = strings.ToLower(ev.helo) // the null sender: SPF checks the HELO name
		}
	case ev.spf != "":
		a.spf, spfDomain = strings.ToLower(ev.spf), strings.ToLower(ev.spfFrom)
	}

	var dkimDomains []string
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: lookupTXT, MaxVerifications: maxDKIMSigs})
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		slog.Debug("DKIM verification", "err", err)
	}
	for _, v := range vs {
		switch {
		case v.Err == nil:
			a.dkim = authPass
			dkimDomains = append(dkimDomains, strings.ToLower(v.Domain))
		case a.dkim == authNone && dkim.IsTempFail(v.Err):
			a.dkim = authTempFail
		case a.dkim != authPass:
			a.dkim = authFail
		}
	}
	if fromDomain == "" {
		return a
	}

	rec, recErr := lookupDMARC(fromDomain, lookupTXT)
	spfStrict, dkimStrict := false, false
	if rec != nil {
		spfStrict, dkimStrict = rec.SPFAlignment == dmarc.AlignmentStrict, rec.DKIMAlignment == dmarc.AlignmentStrict
	}
	if a.spf == authPass && aligned(spfDomain, fromDomain, spfStrict) {
		a.verified = true
	}
	for _, d := range dkimDomains {
		if aligned(d, fromDomain, dkimStrict) {
			a.verified = true
		}
	}
	switch {
	case rec != nil && a.verified:
		a.dmarc = authPass
	case rec != nil:
		a.dmarc = authFail
	case recErr != nil && dmarc.IsTempFail(recErr):
		a.dmarc = authTempFail
	}
	return a
}

// lookupDMARC finds the From domain's DMARC record, or its organisational domain's.
func lookupDMARC(domain string, lookupTXT func(string) ([]string, error)) (*dmarc.Record, error) {
	opts := &dmarc.LookupOptions{LookupTXT: lookupTXT}
	rec, err := dmarc.LookupWithOptions(domain, opts)
	if !errors.Is(err, dmarc.ErrNoPolicy) {
		return rec, err
	}
	if org := orgDomain(domain); org != domain {
		return dmarc.LookupWithOptions(org, opts)
	}
	return nil, err
}

// aligned is DMARC's identifier alignment: the same domain (strict), or the same
// organisational domain (relaxed).
func aligned(d, from string, strict bool) bool {
	if d == "" {
		return false
	}
	if strict {
		return d == from
	}
	return orgDomain(d) == orgDomain(from)
}

// orgDomain is a domain's registrable part (example.co.uk for mail.example.co.uk).
func orgDomain(d string) string {
	if org, err := publicsuffix.EffectiveTLDPlusOne(d); err == nil {
		return org
	}
	return d
}

// domainOf is an address's domain, lower case ("" when it has none).
func domainOf(addr string) string {
	addr = strings.TrimSpace(strings.Trim(strings.TrimSpace(addr), "<>"))
	if a, err := mail.ParseAddress(addr); err == nil {
		addr = a.Address
	}
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(addr[at+1:]), ".")
}

// claimsOwnDomain reports whether p's From is in our mail domain (or under it).
func (db *Database) claimsOwnDomain(p *parsedMail) bool {
	d, own := domainOf(p.from), strings.ToLower(db.cfg.MailDomain)
	return d != "" && (d == own || strings.HasSuffix(d, "."+own))
}

// returnPathDomain is the domain of the message's Return-Path header, which the receiving mail
// server writes from the envelope sender (for webhooks, whose SPF result is for that sender).
func returnPathDomain(raw []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return ""
	}
	return domainOf(m.Header.Get("Return-Path"))
}
