package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// `pingedchat healthcheck [server flags]` asks the server on this host for /healthz and exits 0
// when it answers 200: the container image's HEALTHCHECK, since a scratch image has no shell
// and no curl. It reads the configuration as the server does (PINGED_ADDR in the container), so
// it asks where the server listens, over TLS when the server speaks it.

const healthcheckTimeout = 5 * time.Second

func runHealthcheck(ctx context.Context, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	target, serverName, err := healthURL(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
	defer cancel()
	// The certificate names the public host, not the loopback address asked here: this is a
	// liveness probe of our own process, not a check of the certificate (`pingedchat check`).
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: serverName}}
	client := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s: %s", target, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

// healthURL is /healthz at -addr, on loopback when -addr names every interface, and the name to
// ask for in TLS's SNI (an ACME certificate is chosen by it).
func healthURL(cfg Config) (target, serverName string, err error) {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return "", "", fmt.Errorf("healthcheck: -addr %q: %w", cfg.Addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	if cfg.TLSCert != "" || cfg.AcmeDomain != "" {
		scheme = "https"
		if d := acmeDomains(cfg.AcmeDomain); len(d) > 0 {
			serverName = d[0]
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/healthz", serverName, nil
}
