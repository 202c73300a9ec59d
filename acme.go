package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// Automatic TLS. With -acme-domain the server obtains its certificates from an ACME CA (Let's
// Encrypt unless -acme-ca names another) and renews them by itself, keeping the account key and
// certificates under -data-dir/acme, so a restart serves the stored certificate without asking
// the CA. It answers TLS-ALPN-01 challenges on the TLS listener and HTTP-01 on the redirect
// listener (-redirect-addr, :80 by default with ACME).
//
// golang.org/x/crypto/acme/autocert rather than certmagic: it is maintained with the Go project,
// is already in our module graph (x/crypto gives us bcrypt), does exactly this (one manager, a
// directory cache, TLS-ALPN-01 and HTTP-01, renewal at a third of the lifetime left) and nothing
// more; certmagic's extra (DNS challenges, storage plug-ins, OCSP stapling) would be a large
// dependency tree for features a one-machine deployment does not need.

// acmeManager builds the certificate manager, or nil without -acme-domain.
func acmeManager(cfg Config) (*autocert.Manager, []string, error) {
	domains := acmeDomains(cfg.AcmeDomain)
	if len(domains) == 0 {
		return nil, nil, nil
	}
	if cfg.TLSCert != "" {
		return nil, nil, fmt.Errorf("-acme-domain and -tls-cert: choose one way to get certificates")
	}
	client := &acme.Client{DirectoryURL: cfg.AcmeCA}
	if cfg.acmeRoots != nil {
		client.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.acmeRoots}}}
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(domains...),
		Cache:      autocert.DirCache(filepath.Join(cfg.DataDir, "acme")),
		Email:      cfg.AcmeEmail,
		Client:     client,
	}
	return m, domains, nil
}

func acmeDomains(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ",") {
		if d = strings.ToLower(strings.TrimSpace(d)); d != "" {
			out = append(out, d)
		}
	}
	return out
}
