package main

import (
	"context"
	"net"
	"os"
	"slices"
	"strings"
)

// The mail part of `pingedchat check` (check.go): the relay as the outbound queue reaches it,
// the DKIM key and its record, and the mail domain's MX, SPF and DMARC records, with the exact
// lines to add when they are missing.

func (c *checker) checkRelay(ctx context.Context) {
	if notConfigured(c.cfg.SMTPURL) {
		c.add(checkSkip, "smtp relay", "not configured (-smtp-url): no outbound mail (sending answers a clear error)")
		return
	}
	cl, rc, err := dialRelay(ctx, c.cfg)
	if err != nil {
		c.add(checkFail, "smtp relay", "%s: %v", rc.addr, err)
		return
	}
	defer cl.Close()
	from := (&Database{cfg: c.cfg}).mailFrom()
	if err := cl.Mail(from, nil); err != nil {
		c.add(checkFail, "smtp relay", "%s refuses the sender %s: %v (set -mail-from to an address the relay lets you send as)", rc.addr, from, err)
		return
	}
	_ = cl.Reset()
	_ = cl.Quit()
	how := "STARTTLS"
	switch {
	case rc.implicitTLS:
		how = "TLS"
	case rc.insecure:
		how = "plain text (?insecure=1)"
	}
	auth := "without authentication"
	if rc.user != "" {
		auth = "authenticated as " + rc.user
	}
	if rc.insecure && !rc.implicitTLS && !isLoopbackHost(rc.host) {
		c.add(checkWarn, "smtp relay", "%s: %s, %s, sender %s accepted; mail and credentials cross the network in the clear: drop ?insecure=1", rc.addr, how, auth, from)
		return
	}
	c.add(checkOK, "smtp relay", "%s: %s, %s, sender %s accepted (nothing sent)", rc.addr, how, auth, from)
}

func (c *checker) checkDKIM(ctx context.Context) {
	if notConfigured(c.cfg.DKIMKey) {
		if notConfigured(c.cfg.SMTPURL) {
			c.add(checkSkip, "dkim", "not configured (-dkim-key)")
			return
		}
		c.add(checkWarn, "dkim", "outbound mail is not signed, and receivers may file it as spam: make a key (openssl genrsa -out dkim.pem 2048, mode 0600) and set -dkim-key")
		return
	}
	s, err := loadDKIM(c.cfg)
	if err != nil {
		c.add(checkFail, "dkim", "%v", err)
		return
	}
	if st, err := os.Stat(c.cfg.DKIMKey); err == nil && st.Mode().Perm()&0o077 != 0 {
		c.add(checkWarn, "dkim key", "%s is readable by others (mode %o): chmod 600 it", c.cfg.DKIMKey, st.Mode().Perm())
	}
	if from := domainOf((&Database{cfg: c.cfg}).mailFrom()); !dkimAligned(from, s.domain) {
		c.add(checkWarn, "dkim", "mail comes from %s but is signed for %s: DMARC counts a signature only for its own domain; make -mail-from an address of %s", from, s.domain, s.domain)
	}
	value, err := dkimRecordValue(s.key)
	if err != nil {
		c.add(checkFail, "dkim", "%v", err)
		return
	}
	name := dkimRecordName(s.selector, s.domain)
	want, _ := dkimPublicKeyFromRecord(value)
	txts, err := c.resolver.LookupTXT(ctx, name)
	if err != nil && !isDNSNotFound(err) {
		c.add(checkWarn, "dkim", "looking up %s: %v; the record it needs is below", name, err)
		c.record(name, "TXT", zoneTXT(value))
		return
	}
	var published []string
	for _, t := range txts {
		if p, ok := dkimPublicKeyFromRecord(t); ok {
			published = append(published, p)
		}
	}
	switch {
	case slices.Contains(published, want):
		c.add(checkOK, "dkim", "mail is signed with selector %s for %s; the record at %s matches the key", s.selector, s.domain, name)
		c.note("The DKIM record, published and matching: %s", zoneLine(name, "TXT", zoneTXT(value)))
	case len(published) == 0:
		c.add(checkFail, "dkim", "no DKIM record at %s: receivers cannot verify the signatures; publish the record below", name)
		c.record(name, "TXT", zoneTXT(value))
	default:
		c.add(checkFail, "dkim", "the record at %s holds another key (or p= is empty: revoked): replace it with the one below", name)
		c.record(name, "TXT", zoneTXT(value))
	}
}

func (c *checker) checkMailDNS(ctx context.Context) {
	out, in := !notConfigured(c.cfg.SMTPURL), c.cfg.SMTPListen != ""
	if !out && !in {
		c.add(checkSkip, "mail dns", "neither outbound mail (-smtp-url) nor the SMTP receiver (-smtp-listen) is configured")
		return
	}
	domain := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(c.cfg.MailDomain), "."))
	if domain == "" || domain == "localhost" || !strings.Contains(domain, ".") {
		c.add(checkFail, "mail domain", "-mail-domain is %q: set it to your domain (users' addresses are name@domain, and the server's mail comes from it)", c.cfg.MailDomain)
		return
	}
	c.checkMX(ctx, domain, in)
	if out {
		c.checkSPF(ctx, domain)
		c.checkDMARC(ctx, domain)
	}
}

func (c *checker) checkMX(ctx context.Context, domain string, inbound bool) {
	mxs, err := c.resolver.LookupMX(ctx, domain)
	if err != nil && !isDNSNotFound(err) {
		c.add(checkWarn, "mx", "looking up the MX of %s: %v", domain, err)
		return
	}
	var hosts []string
	for _, mx := range mxs {
		if h := strings.TrimSuffix(mx.Host, "."); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) > 0 {
		c.add(checkOK, "mx", "%s receives mail at %s", domain, strings.Join(hosts, ", "))
		if inbound {
			if _, port, _ := net.SplitHostPort(c.cfg.SMTPListen); port != "25" {
				c.note("-smtp-listen is %s: other servers deliver to port 25 of %s, so forward it there (or receive on :25).", c.cfg.SMTPListen, strings.Join(hosts, ", "))
			}
		}
		return
	}
	c.record(domain, "MX", "10 "+c.publicHost()+".")
	if inbound {
		c.add(checkFail, "mx", "no MX record for %s: mail to its users cannot find -smtp-listen; add the record below", domain)
		return
	}
	c.add(checkWarn, "mx", "no MX record for %s: replies to its addresses cannot arrive, and some receivers refuse mail from a domain without one", domain)
}

func (c *checker) checkSPF(ctx context.Context, domain string) {
	txts, err := c.resolver.LookupTXT(ctx, domain)
	if err != nil && !isDNSNotFound(err) {
		c.add(checkWarn, "spf", "looking up the TXT records of %s: %v", domain, err)
		return
	}
	var spf []string
	for _, t := range txts {
		if l := strings.ToLower(strings.TrimSpace(t)); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			spf = append(spf, t)
		}
	}
	switch len(spf) {
	case 0:
		suggestion, relayHost := c.suggestSPF()
		c.add(checkFail, "spf", "no SPF record for %s: receivers cannot tell that the relay may send its mail; add the record below", domain)
		c.record(domain, "TXT", zoneTXT(suggestion))
		if relayHost != "" {
			c.note("SPF: if your relay's provider documents an SPF include (include:...), use it in place of a:%s.", relayHost)
		}
	case 1:
		for _, term := range strings.Fields(strings.ToLower(spf[0])) {
			if term == "all" || term == "+all" {
				c.add(checkWarn, "spf", "%s: %q lets anyone send as %s; end it with ~all or -all", domain, spf[0], domain)
				return
			}
		}
		c.add(checkOK, "spf", "%s: %s", domain, spf[0])
	default:
		c.add(checkFail, "spf", "%s has %d SPF records, which receivers treat as an error (permerror): merge them into one", domain, len(spf))
	}
}

// suggestSPF is an SPF record for the domain: its MX hosts and the relay (this host's public
// name when the relay runs here); with the relay's host name when it is elsewhere.
func (c *checker) suggestSPF() (record, relayHost string) {
	mech := "a:" + c.publicHost()
	if rc, err := parseSMTPURL(c.cfg.SMTPURL); err == nil && !isLoopbackHost(rc.host) {
		relayHost = rc.host
		switch ip := net.ParseIP(rc.host); {
		case ip == nil:
			mech = "a:" + rc.host
		case ip.To4() != nil:
			mech = "ip4:" + ip.String()
		default:
			mech = "ip6:" + ip.String()
		}
	}
	return "v=spf1 mx " + mech + " ~all", relayHost
}

func (c *checker) checkDMARC(ctx context.Context, domain string) {
	name := "_dmarc." + domain
	txts, err := c.resolver.LookupTXT(ctx, name)
	if err != nil && !isDNSNotFound(err) {
		c.add(checkWarn, "dmarc", "looking up %s: %v", name, err)
		return
	}
	var dmarc []string
	for _, t := range txts {
		if strings.HasPrefix(strings.ToUpper(strings.TrimSpace(t)), "V=DMARC1") {
			dmarc = append(dmarc, t)
		}
	}
	switch len(dmarc) {
	case 0:
		c.add(checkWarn, "dmarc", "no DMARC record at %s: large receivers expect one; add the record below", name)
		c.record(name, "TXT", zoneTXT("v=DMARC1; p=none; rua=mailto:postmaster@"+domain))
		c.note("DMARC: reports go to postmaster@%s (the -admins' mailboxes); once they show your mail passing, raise p=none to p=quarantine.", domain)
	case 1:
		c.add(checkOK, "dmarc", "%s: %s", name, dmarc[0])
	default:
		c.add(checkFail, "dmarc", "%s has %d DMARC records: receivers then apply none; keep one", name, len(dmarc))
	}
}

// isLoopbackHost: localhost, or a loopback address.
func isLoopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// dkimAligned: a signature for d counts for mail From domain from under DMARC's relaxed rule
// as far as it can be told without the public suffix list: the same domain, or one under the
// other.
func dkimAligned(from, d string) bool {
	from, d = strings.ToLower(from), strings.ToLower(d)
	return from == d || strings.HasSuffix(from, "."+d) || strings.HasSuffix(d, "."+from)
}
