package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"time"
)

// Outbound HTTP for pushes. A Web Push subscription's endpoint is a URL the user gives us, so
// the server must not become a way into its own network (SSRF): the dialer connects only to
// public unicast addresses, checked in the dialer's Control, i.e. after DNS and for the very
// address being connected to (a name that resolves to a public address when it is registered
// and to 127.0.0.1 later gains nothing); redirects are never followed (a 307 would repeat the
// POST, VAPID Authorization included, to wherever it points); no proxy is used (the check
// would see only the proxy). -push-allow-private lifts the address check for push services on
// the operator's own network (and the tests' loopback servers). FCM and APNs are reached at
// configured URLs only (the device token is in the body, or checked as 64 hex digits before it
// goes into APNs's path), but get the same short timeouts: a slow or dead host must not hold a
// worker long (push.go's budgets bound how many).

const (
	pushDialTimeout   = 3 * time.Second // TCP connect
	pushTLSTimeout    = 3 * time.Second // TLS handshake
	pushHeaderTimeout = 5 * time.Second // from the request sent to the response's headers
	pushAttemptLimit  = 8 * time.Second // one attempt, all included
)

var errNotPublic = errors.New("not a public address")

// nonPublic are the IANA special-purpose ranges that netip's predicates do not already cover,
// and ranges that embed or translate to IPv4 addresses (NAT64, 6to4, Teredo).
var nonPublic = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24",
		"198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
		"64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16",
		"3fff::/20", "5f00::/16", "fec0::/10",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// isPublicAddr reports whether a is a public unicast address.
func isPublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsPrivate() || a.IsMulticast() ||
		a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// publicOnly is a net.Dialer Control: it refuses to connect to anything but a public address.
func publicOnly(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q", errNotPublic, address)
	}
	if !isPublicAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s", errNotPublic, ap.Addr())
	}
	return nil
}

// pushDialer is the dialer of push requests: short connect timeout, public addresses only unless
// allowPrivate.
func pushDialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: pushDialTimeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = publicOnly
	}
	return d
}

// pushHTTPClient is the HTTP client of push requests: no proxy, no redirects, short timeouts.
func pushHTTPClient(allowPrivate bool, roots *tls.Config) *http.Client {
	tr := &http.Transport{
		Proxy:                  nil, // dial the endpoint itself, so that the address check sees it
		DialContext:            pushDialer(allowPrivate).DialContext,
		TLSClientConfig:        roots,
		TLSHandshakeTimeout:    pushTLSTimeout,
		ResponseHeaderTimeout:  pushHeaderTimeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   pushAttemptLimit,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // answered as the 3xx it is: a failed push
		},
	}
}

// checkEndpointHost refuses, at registration, an endpoint host that is plainly not public: an
// address literal of a private, loopback, link-local … range, or localhost. Names are checked
// when they are dialled (publicOnly), whatever they resolve to then.
func checkEndpointHost(host string, allowPrivate bool) error {
	if allowPrivate {
		return nil
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return errNotPublic
	}
	if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil && !isPublicAddr(a) {
		return errNotPublic
	}
	return nil
}

// dialTLSWithTimeout is an HTTP/2 transport's dial (APNs) with the push timeouts.
func dialTLSWithTimeout(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, pushDialTimeout+pushTLSTimeout)
	defer cancel()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: pushDialTimeout}, Config: cfg}
	return d.DialContext(ctx, network, addr)
}
