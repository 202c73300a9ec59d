package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestIsPublicAddr(t *testing.T) {
	for _, s := range []string{
		"127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
		"0.1.2.3", "224.0.0.1", "255.255.255.255", "240.0.0.1", "198.18.0.1", "192.0.2.1",
		"::", "::1", "fe80::1", "fc00::1", "fd12::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
		"64:ff9b::a00:1", "2002:a00:1::1", "2001::1", "2001:db8::1", "fec0::1",
	} {
		if isPublicAddr(netip.MustParseAddr(s)) {
			t.Errorf("%s counted as public", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "142.250.74.100", "2606:4700:4700::1111", "2a00:1450:4007:80e::200a", "::ffff:8.8.8.8"} {
		if !isPublicAddr(netip.MustParseAddr(s)) {
			t.Errorf("%s counted as not public", s)
		}
	}
}

// TestWebPushRefusesInternalEndpoints: without -push-allow-private, AddWebDev refuses endpoints
// that name an internal address or localhost, and a stored subscription whose name resolves to
// one (as a name rebound after registration would) is never connected to: the dialer checks the
// address it connects to, after DNS.
func TestWebPushRefusesInternalEndpoints(t *testing.T) {
	cfg := testConfig(t)
	rig := newPushRig(t, &cfg)
	cfg.PushAllowPrivate = false
	srv := startServer(t, cfg)
	alice, bob := register(t, srv, "ssa"), register(t, srv, "ssb")
	sub, _, err := rig.wp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]", "[fe80::1]", "[::ffff:127.0.0.1]",
		"100.64.0.1", "0.0.0.0", "localhost", "LOCALHOST.", "metadata.localhost", "192.168.0.10:8443"} {
		s := sub
		s.Endpoint = "https://" + host + "/push/x"
		bob.fails("AddWebDev", map[string]any{"device": s.JSON()}, "not a private or local address")
	}
	public := sub
	public.Endpoint = "https://push.example.net/send/abc"
	bob.ok("AddWebDev", map[string]any{"device": public.JSON()})

	// Stored as if registered when the names were public: the loopback push service by address
	// and by a name, and the cloud metadata address.
	port := rig.wp.URL[strings.LastIndex(rig.wp.URL, ":"):]
	var devices []string
	for _, base := range []string{rig.wp.URL, "http://localhost" + port, "http://169.254.169.254"} {
		s := sub
		s.Endpoint = base + "/push/" + strings.TrimPrefix(sub.Endpoint, rig.wp.URL+"/push/")
		devices = append(devices, s.JSON())
	}
	if _, err := srv.db.updateUser(t.Context(), bob.name, func(u *UserRecord) error {
		u.Devices[webPushPlatform] = devices
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cid := newConvo(t, alice, "ssrf", bob)
	bob.conn.close()
	waitOffline(t, srv, bob.name)
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "hello"})
	errs := func() float64 { return testutil.ToFloat64(srv.db.push.sends.WithLabelValues("webpush", "error")) }
	waitUntil(t, "the three pushes refused", func() bool { return errs() == 3 })
	if r := testutil.ToFloat64(srv.db.push.sends.WithLabelValues("webpush", "retry")); r != 0 {
		t.Fatalf("%v retries of refused addresses", r)
	}
	if n := rig.wp.Requests(); n != 0 {
		t.Fatalf("the loopback push service got %d requests", n)
	}
}

// TestWebPushFollowsNoRedirects: a push service answering 307 to an internal URL gets its POST
// (it is where the subscription points), the internal URL gets nothing, and the push counts as
// failed.
func TestWebPushFollowsNoRedirects(t *testing.T) {
	cfg := testConfig(t)
	rig := newPushRig(t, &cfg) // -push-allow-private: the redirecting service is on loopback
	var internal, redirected atomic.Int32
	inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		internal.Add(1)
	}))
	t.Cleanup(inside.Close)
	var sawVAPID atomic.Bool
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		redirected.Add(1)
		sawVAPID.Store(strings.HasPrefix(r.Header.Get("Authorization"), "vapid "))
		http.Redirect(w, r, inside.URL+"/latest/meta-data/", http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	srv := startServer(t, cfg)
	alice, bob := register(t, srv, "rda"), register(t, srv, "rdb")
	sub, _, err := rig.wp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	sub.Endpoint = redirector.URL + "/push/s1"
	bob.ok("AddWebDev", map[string]any{"device": sub.JSON()})
	cid := newConvo(t, alice, "redirect", bob)
	bob.conn.close()
	waitOffline(t, srv, bob.name)
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "hello"})
	waitUntil(t, "the push failed", func() bool {
		return testutil.ToFloat64(srv.db.push.sends.WithLabelValues("webpush", "error")) == 1
	})
	if redirected.Load() != 1 || !sawVAPID.Load() || internal.Load() != 0 {
		t.Fatalf("redirector %d (VAPID %v), internal %d: want 1, true, 0", redirected.Load(), sawVAPID.Load(), internal.Load())
	}
}

// TestPushDialerChecksTheConnectedAddress: the dialer refuses a name that resolves to loopback,
// at connect time.
func TestPushDialerChecksTheConnectedAddress(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(ts.Close)
	port := ts.URL[strings.LastIndex(ts.URL, ":"):]
	c := pushHTTPClient(false, nil)
	for _, u := range []string{ts.URL, "http://localhost" + port} {
		_, err := c.Post(u, "text/plain", nil)
		if !errors.Is(err, errNotPublic) {
			t.Fatalf("POST %s: %v, want %v", u, err, errNotPublic)
		}
	}
	resp, err := pushHTTPClient(true, nil).Post(ts.URL, "text/plain", nil)
	if err != nil {
		t.Fatalf("allowed private: %v", err)
	}
	resp.Body.Close()
}
