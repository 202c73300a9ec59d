package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The TLS part of `pingedchat check` (check.go): a certificate file that loads, matches its key,
// is in date and names the public host; or, with ACME, an account directory that is writable
// and domains that lead to this host — by an address of its own interfaces or, behind NAT or a
// port forward, by fetching a token served where the CA's HTTP-01 challenge will arrive.

// certWarnBefore: a certificate this close to its end is worth a warning.
const certWarnBefore = 14 * 24 * time.Hour

func (c *checker) checkTLS(ctx context.Context) {
	domains := acmeDomains(c.cfg.AcmeDomain)
	switch {
	case len(domains) > 0 && c.cfg.TLSCert != "":
		c.add(checkFail, "tls", "-acme-domain and -tls-cert: choose one way to get certificates")
	case len(domains) > 0:
		c.checkACME(ctx, domains)
	case c.cfg.TLSCert != "":
		c.checkCertFile()
	default:
		c.add(checkSkip, "tls", "off: plain HTTP on %s (a TLS proxy in front, or -acme-domain)", c.cfg.Addr)
	}
}

func (c *checker) checkCertFile() {
	pair, err := tls.LoadX509KeyPair(c.cfg.TLSCert, c.cfg.TLSKey)
	if err != nil {
		c.add(checkFail, "tls", "loading -tls-cert and -tls-key: %v", err)
		return
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		c.add(checkFail, "tls", "parsing -tls-cert: %v", err)
		return
	}
	now := time.Now()
	names := strings.Join(certNames(leaf), ", ")
	switch {
	case now.Before(leaf.NotBefore):
		c.add(checkFail, "tls", "the certificate for %s is not valid before %s", names, leaf.NotBefore.UTC().Format(time.RFC3339))
		return
	case now.After(leaf.NotAfter):
		c.add(checkFail, "tls", "the certificate for %s expired on %s", names, leaf.NotAfter.UTC().Format(time.RFC3339))
		return
	}
	if c.cfg.PublicURL != "" {
		if u, err := url.Parse(c.cfg.PublicURL); err == nil && u.Hostname() != "" {
			if err := leaf.VerifyHostname(u.Hostname()); err != nil {
				c.add(checkWarn, "tls", "the certificate is for %s, not %s (-public-url): browsers will refuse it", names, u.Hostname())
			}
		}
	}
	inter := x509.NewCertPool()
	for _, der := range pair.Certificate[1:] {
		if cert, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(cert)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Intermediates: inter}); err != nil {
		c.add(checkWarn, "tls", "the certificate for %s is not trusted by this host's CA roots (%v): browsers will warn; put the full chain in -tls-cert", names, err)
	}
	left := leaf.NotAfter.Sub(now)
	if left < certWarnBefore {
		c.add(checkWarn, "tls", "the certificate for %s expires in %d day(s): renew it", names, int(left.Hours()/24))
		return
	}
	c.add(checkOK, "tls", "certificate for %s, valid until %s", names, leaf.NotAfter.UTC().Format("2006-01-02"))
}

func certNames(leaf *x509.Certificate) []string {
	names := slices.Clone(leaf.DNSNames)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		names = []string{leaf.Subject.CommonName}
	}
	return names
}

func (c *checker) checkACME(ctx context.Context, domains []string) {
	if _, err := writableDir(c.cfg.DataDir); err != nil {
		c.add(checkFail, "tls", "-data-dir %s (the ACME account and certificates): %v", c.cfg.DataDir, err)
	} else {
		c.add(checkOK, "tls", "ACME from %s; account and certificates kept in %s", c.cfg.AcmeCA, c.cfg.DataDir)
	}
	local, err := c.localAddrs()
	if err != nil {
		c.add(checkWarn, "acme", "listing this host's addresses: %v", err)
	}
	for _, d := range domains {
		c.checkDomainLeadsHere(ctx, d, local)
	}
}

// checkDomainLeadsHere: the CA connects to the domain's addresses, so they must be this host's.
func (c *checker) checkDomainLeadsHere(ctx context.Context, domain string, local []net.IP) {
	addrs, err := c.resolver.LookupIPAddr(ctx, domain)
	if err != nil && !isDNSNotFound(err) {
		c.add(checkFail, "acme "+domain, "looking up %s: %v", domain, err)
		return
	}
	if len(addrs) == 0 {
		c.add(checkFail, "acme "+domain, "%s has no address (A or AAAA record): the CA cannot reach this host; add the record below", domain)
		c.record(domain, "A", "<this host's public IPv4 address>")
		return
	}
	shown := make([]string, len(addrs))
	for i, a := range addrs {
		shown[i] = a.IP.String()
		if slices.ContainsFunc(local, a.IP.Equal) {
			c.add(checkOK, "acme "+domain, "resolves to %s, an address of this host", a.IP)
			return
		}
	}
	st, detail := c.probeHTTP01(ctx, domain, addrs)
	c.add(st, "acme "+domain, "resolves to %s, %s", strings.Join(shown, ", "), detail)
}

// probeHTTP01 serves a token on the redirect listener's address (:80 with ACME), where the CA's
// HTTP-01 challenge arrives, and fetches it by the domain's addresses: getting it back proves
// that the name leads here, whatever NAT or port forward is in between.
func (c *checker) probeHTTP01(ctx context.Context, domain string, addrs []net.IPAddr) (checkStatus, string) {
	addr := c.cfg.RedirectAddr
	if addr == "" {
		addr = ":80" // where the CA asks
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return checkWarn, fmt.Sprintf("not an address of this host's interfaces; listening on %s to try whether it leads here failed (%v: is pingedchat running, or is the port privileged?)", addr, err)
	}
	token := randomToken()
	path := "/.well-known/acme-challenge/pingedchat-check-" + token
	srv := &http.Server{ReadHeaderTimeout: c.probe, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, token)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	_, port, _ := net.SplitHostPort(ln.Addr().String())
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		var errs []error
		for _, a := range addrs {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(a.IP.String(), port))
			if err == nil {
				return conn, nil
			}
			errs = append(errs, err)
		}
		return nil, errors.Join(errs...)
	}
	client := &http.Client{
		Timeout:       c.probe,
		Transport:     &http.Transport{DialContext: dial, Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	host := domain
	if port != "80" {
		host = net.JoinHostPort(domain, port)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+path, nil)
	if err != nil {
		return checkFail, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return checkFail, fmt.Sprintf("which does not lead to this host's port %s (%v): the CA's challenges would go elsewhere; point the name here, or forward port %s", port, err, port)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	if resp.StatusCode != http.StatusOK || string(body) != token {
		return checkFail, fmt.Sprintf("where port %s answers, but not from this host (HTTP %d): the CA's challenges would go elsewhere", port, resp.StatusCode)
	}
	return checkOK, fmt.Sprintf("which leads to this host (a token served on port %s came back)", port)
}
