package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"pingedchat/internal/apnstest"
	"pingedchat/internal/fcmtest"
	"pingedchat/internal/webpushtest"
)

func TestPushTitles(t *testing.T) {
	long := strings.Repeat("é", 50)
	for _, tc := range []struct{ text, title string }{
		{"hello there", "ann - hello there"},
		{long, "ann - " + strings.Repeat("é", 40)},
		{"https://example.com/cat.JPG", "ann sent you a picture"},
		{"https://example.com/a/b?x=1", "ann sent you a link"},
		{"see https://example.com", "ann - see https://example.com"},
		{"ftp://example.com/x.png", "ann - ftp://example.com/x.png"},
		{`{"file":{"url":"/files/0123456789abcdef0123456789abcdef","name":"cat.png","size":9,"type":"image/png","thumb":true}}`, "ann sent you a picture"},
		{`{"file":{"url":"/files/0123456789abcdef0123456789abcdef","name":"notes.txt","size":9,"type":"text/plain"}}`, "ann sent you a file"},
	} {
		n := makeNote("ann", tc.text, "cid")
		if n.Title != tc.title || n.CID != "cid" || n.Sender != "ann" {
			t.Errorf("%q: got %+v, want title %q", tc.text, n, tc.title)
		}
	}
	if n := makeNote("ann", long+long+long, "c"); len([]rune(n.Body)) != pushBodyChars {
		t.Errorf("body not cut to %d characters: %d", pushBodyChars, len([]rune(n.Body)))
	}
}

// pushRig is the three fake providers and a config that uses them.
type pushRig struct {
	fcm  *fcmtest.Server
	apns *apnstest.Server
	wp   *webpushtest.Server
}

func newPushRig(t *testing.T, cfg *Config) *pushRig {
	t.Helper()
	fcm, err := fcmtest.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fcm.Close)
	apns, err := apnstest.New("org.pinged.app")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(apns.Close)
	vapidPriv, vapidPub, err := webpush.GenerateVAPIDKeys()
	if err != nil {
		t.Fatal(err)
	}
	wp, err := webpushtest.New(vapidPub)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(wp.Close)
	dir := t.TempDir()
	cfg.FCMCredentials = filepath.Join(dir, "fcm.json")
	cfg.APNsKeyFile = filepath.Join(dir, "apns.p8")
	if err := os.WriteFile(cfg.FCMCredentials, fcm.CredentialsJSON(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.APNsKeyFile, apns.KeyP8(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.FCMURL = fcm.URL
	cfg.APNsURL, cfg.APNsKeyID, cfg.APNsTeamID, cfg.APNsTopic, cfg.apnsRoots = apns.URL, apns.KeyID, apns.TeamID, apns.Topic, apns.Roots()
	cfg.VAPIDPublicKey, cfg.VAPIDPrivateKey, cfg.VAPIDSubject = vapidPub, vapidPriv, "ops@pinged.test"
	cfg.webPushAllowHTTP, cfg.PushAllowPrivate = true, true // the fakes are on loopback
	cfg.pushRetryBase = 10 * time.Millisecond
	t.Cleanup(func() {
		for _, errs := range [][]string{fcm.Errors(), apns.Errors(), wp.Errors()} {
			for _, e := range errs {
				t.Errorf("push service saw: %s", e)
			}
		}
	})
	return &pushRig{fcm: fcm, apns: apns, wp: wp}
}

// registerDevices gives c one device of every platform; it returns the web subscription's id.
func (r *pushRig) registerDevices(t *testing.T, c *client, tag string) string {
	t.Helper()
	c.ok("AddAndroidDev", map[string]any{"device": "android-" + tag})
	c.ok("AddFireosDev", map[string]any{"device": "fireos-" + tag})
	c.ok("AddIosDev", map[string]any{"device": strings.ToUpper(iosToken(tag))}) // stored in lower case
	sub, id, err := r.wp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	c.ok("AddWebDev", map[string]any{"device": sub.JSON()})
	return id
}

// iosToken is a well-formed APNs device token (64 hex digits) made from tag.
func iosToken(tag string) string {
	sum := sha256.Sum256([]byte(tag))
	return hex.EncodeToString(sum[:])
}

// TestAPNsDeviceTokensAreChecked: an iOS device token must be 64 hex digits (it goes into the
// path of the request to Apple); upper case is accepted and stored in lower case, so that the
// same device registered twice is one device.
func TestAPNsDeviceTokensAreChecked(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c := register(t, srv, "apnstok")
	good := iosToken("device")
	for _, bad := range []string{"iosbob", good[:63], good + "0", strings.Replace(good, "a", "g", 1),
		"../../3/device/" + good[15:], good[:62] + "%2f", good[:32] + " " + good[33:]} {
		c.fails("AddIosDev", map[string]any{"device": bad}, "64 hexadecimal digits")
	}
	c.ok("AddIosDev", map[string]any{"device": strings.ToUpper(good)})
	c.ok("AddIosDev", map[string]any{"device": good}) // the same device
	c.fails("ChangeIosDev", map[string]any{"device": "not hex", "old_device": good}, "64 hexadecimal digits")
	other := iosToken("other")
	c.ok("ChangeIosDev", map[string]any{"device": other, "old_device": strings.ToUpper(good)})
	u, err := srv.db.getUser(t.Context(), c.name)
	if err != nil || !slices.Equal(u.Devices["ios"], []string{other}) {
		t.Fatalf("ios devices %v (%v), want just %s", u.Devices["ios"], err, other)
	}
	c.ok("RemoveIosDev", map[string]any{"device": strings.ToUpper(other)})
	u, _ = srv.db.getUser(t.Context(), c.name)
	if len(u.Devices["ios"]) != 0 {
		t.Fatalf("ios devices after removal: %v", u.Devices["ios"])
	}
	// Android and Fire OS tokens have no documented form and are not checked.
	c.ok("AddAndroidDev", map[string]any{"device": "any:thing-goes_here"})
}

func waitOffline(t *testing.T, srv *testServer, name string) {
	t.Helper()
	waitUntil(t, name+" offline", func() bool { return !srv.db.userOnline(context.Background(), name) })
}

func receive[T any](t *testing.T, ch chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// TestPushReachesOfflineDevices: an offline recipient gets the message on every platform, with
// the original's title and the CID; tokens the providers call invalid are removed; a recipient
// online on another instance gets nothing.
func TestPushReachesOfflineDevices(t *testing.T) {
	natsURL := startNATS(t)
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.NATS, cfgB.NATS = natsURL, natsURL
	rig := newPushRig(t, &cfgA)
	a := startServer(t, cfgA)
	b := startServer(t, cfgB)

	alice := register(t, a, "pa")
	bob := register(t, a, "pb")
	carol := register(t, a, "pc")
	if rep := bob.ok("GetPushConfig", nil); rep["VAPIDPublicKey"] != strings.TrimRight(cfgA.VAPIDPublicKey, "=") {
		t.Fatalf("GetPushConfig: %v", rep)
	}
	bobWeb := rig.registerDevices(t, bob, "bob")
	carolWeb := rig.registerDevices(t, carol, "carol")
	cid := newConvo(t, alice, "push", bob, carol)
	bob.conn.close()
	carol.conn.close()
	waitOffline(t, a, bob.name)
	waitOffline(t, a, carol.name)

	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "Are you coming tonight? We start at eight sharp, bring snacks"})
	wantTitle := alice.name + " - Are you coming tonight? We start at eigh"
	fcmGot := map[string]bool{}
	for range 4 { // android and fireos, for bob and carol
		m := receive(t, rig.fcm.Received, "FCM send")
		if m.Notification["title"] != wantTitle || m.Data["CID"] != cid || m.Data["sender"] != alice.name {
			t.Fatalf("FCM message: %+v", m)
		}
		fcmGot[m.Token] = true
	}
	for _, tok := range []string{"android-bob", "fireos-bob", "android-carol", "fireos-carol"} {
		if !fcmGot[tok] {
			t.Errorf("no FCM push to %s: %v", tok, fcmGot)
		}
	}
	for range 2 {
		n := receive(t, rig.apns.Received, "APNs push")
		alert := n.Payload["aps"].(map[string]any)["alert"].(map[string]any)
		if alert["title"] != wantTitle || n.Payload["CID"] != cid || n.Topic != "org.pinged.app" {
			t.Fatalf("APNs push: %+v", n)
		}
	}
	webGot := map[string]bool{}
	for range 2 {
		p := receive(t, rig.wp.Received, "web push")
		var pl webPushPayload
		if err := json.Unmarshal(p.Plaintext, &pl); err != nil || pl.Title != wantTitle || pl.CID != cid || p.TTL != "86400" {
			t.Fatalf("web push %s: %q (%v)", p.ID, p.Plaintext, err)
		}
		webGot[p.ID] = true
	}
	if !webGot[bobWeb] || !webGot[carolWeb] {
		t.Fatalf("web pushes to %v, want %s and %s", webGot, bobWeb, carolWeb)
	}

	// Bob's devices are all gone now; the next message removes them from his record.
	rig.fcm.MarkInvalid("android-bob")
	rig.apns.MarkInvalid(iosToken("bob"))
	rig.wp.MarkGone(bobWeb)
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "https://example.com/photo.png"})
	waitUntil(t, "bob's invalid devices removed", func() bool {
		u, err := a.db.getUser(context.Background(), bob.name)
		return err == nil && len(u.Devices["android"]) == 0 && len(u.Devices["ios"]) == 0 &&
			len(u.Devices[webPushPlatform]) == 0 && slices.Equal(u.Devices["fireos"], []string{"fireos-bob"})
	})
	drain(rig)

	// Bob comes back on the other instance: alice's instance must learn that over NATS. Carol
	// (after bob among the members, so handled after him in the same job) is the sentinel.
	bob2 := login(t, b, bob.name)
	_ = bob2
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "welcome back"})
	for got := 0; got < 4; {
		select {
		case m := <-rig.fcm.Received:
			if !strings.HasSuffix(m.Token, "-carol") {
				t.Fatalf("push to online bob: %+v", m)
			}
			got++
		case n := <-rig.apns.Received:
			if n.Token != iosToken("carol") {
				t.Fatalf("push to online bob: %+v", n)
			}
			got++
		case p := <-rig.wp.Received:
			if p.ID != carolWeb {
				t.Fatalf("push to online bob: %s", p.ID)
			}
			got++
		case <-time.After(waitTimeout):
			t.Fatalf("timed out waiting for carol's pushes")
		}
	}
	if n := testutil.ToFloat64(a.db.push.sends.WithLabelValues("fcm", "invalid_token")); n != 1 {
		t.Errorf("fcm invalid_token count %v", n)
	}
}

// drain empties the providers' queues of received pushes after the invalid-token round, whose
// count depends on which tokens were still registered.
func drain(r *pushRig) {
	for {
		select {
		case <-r.fcm.Received:
		case <-r.apns.Received:
		case <-r.wp.Received:
		default:
			return
		}
	}
}

// TestPushHangingProvidersDoNotDelayMessages: while every provider holds its requests without
// answering, messages are still stored, acknowledged and delivered, in order; the full push
// queue drops jobs (counted) instead of blocking.
func TestPushHangingProvidersDoNotDelayMessages(t *testing.T) {
	cfg := testConfig(t)
	rig := newPushRig(t, &cfg)
	cfg.PushWorkers, cfg.PushQueue = 1, 2
	rig.fcm.Hang(true)
	rig.apns.Hang(true)
	rig.wp.Hang(true)
	logs := captureLogs(t)
	srv := startServer(t, cfg)
	alice := register(t, srv, "ha")
	bob := register(t, srv, "hb")
	carol := register(t, srv, "hc")
	rig.registerDevices(t, bob, "bob")
	cid := newConvo(t, alice, "hang", bob, carol)
	bob.conn.close()
	waitOffline(t, srv, bob.name)

	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "first"})
	waitUntil(t, "a provider holding a push", func() bool {
		return rig.fcm.Hanging()+rig.apns.Hanging()+rig.wp.Hanging() > 0
	})
	const n = 30
	rids := make([]string, n)
	for i := range n {
		rids[i] = fmt.Sprintf("m%d", i)
		b, _ := json.Marshal(map[string]any{"cmd": "SendMessage", "rid": rids[i], "CID": cid, "content": fmt.Sprintf("msg %d", i), "client_id": rids[i]})
		alice.sendRaw(string(b))
	}
	for i, rid := range rids {
		if rep := alice.waitReply(rid); rep["ok"] != true {
			t.Fatalf("message %d: %v", i, rep)
		}
	}
	for i := range n {
		p := carol.waitPush("message", isMsgIn(cid))
		if p["content"] == "first" {
			p = carol.waitPush("message", isMsgIn(cid))
		}
		if p["content"] != fmt.Sprintf("msg %d", i) {
			t.Fatalf("carol got %v as message %d", p["content"], i)
		}
	}
	// The worker was stuck on the first push all along: the queue of 2 overflowed.
	if testutil.ToFloat64(srv.db.push.dropped) == 0 {
		t.Fatal("no push job dropped with a queue of 2 and a stuck worker")
	}
	if !strings.Contains(logs.String(), "push queue full") {
		t.Fatal("no log line for the dropped pushes")
	}
	stored := 0
	for i := range n {
		stored += storedMessages(alice, cid, fmt.Sprintf("msg %d", i))
	}
	if stored != n {
		t.Fatalf("%d messages stored, want %d", stored, n)
	}
}

func TestWebDevValidation(t *testing.T) {
	cfg := testConfig(t)
	rig := newPushRig(t, &cfg)
	cfg.webPushAllowHTTP = false
	srv := startServer(t, cfg)
	c := register(t, srv, "wd")
	sub, _, err := rig.wp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	c.fails("AddWebDev", map[string]any{"device": sub.JSON()}, "https URL")
	good := sub
	good.Endpoint = "https://push.example.net/send/abc"
	c.ok("AddWebDev", map[string]any{"device": good.JSON()})
	c.ok("AddWebDev", map[string]any{"device": good.JSON()}) // idempotent
	badSub := good
	badSub.Keys.P256dh = "AAAA"
	c.fails("AddWebDev", map[string]any{"device": badSub.JSON()}, "p256dh")
	badSub = good
	badSub.Keys.Auth = "AAAA"
	c.fails("AddWebDev", map[string]any{"device": badSub.JSON()}, "auth secret")
	c.fails("AddWebDev", map[string]any{"device": "not json"}, "push subscription")
	u, _ := srv.db.getUser(context.Background(), c.name)
	if len(u.Devices[webPushPlatform]) != 1 {
		t.Fatalf("web devices %v", u.Devices[webPushPlatform])
	}
	c.ok("RemoveWebDev", map[string]any{"device": good.Endpoint})
	u, _ = srv.db.getUser(context.Background(), c.name)
	if len(u.Devices[webPushPlatform]) != 0 {
		t.Fatalf("web devices after removal %v", u.Devices[webPushPlatform])
	}

	// Without VAPID keys there is no web push, and the server says so; a bad key turns off only
	// Web Push (logged), not the server or the other providers.
	bad := testConfig(t)
	newPushRig(t, &bad)
	bad.VAPIDPublicKey = "not-a-key"
	logs := captureLogs(t)
	misconf := startServer(t, bad)
	if misconf.db.push == nil || misconf.db.push.byPlatform["android"] == nil || misconf.db.push.byPlatform[webPushPlatform] != nil {
		t.Fatalf("providers with a bad VAPID key: %+v", misconf.db.push)
	}
	if !strings.Contains(logs.String(), "push provider off") {
		t.Fatal("no log line for the provider left off")
	}
	plain := startServer(t, testConfig(t))
	d := register(t, plain, "wn")
	d.fails("AddWebDev", map[string]any{"device": good.JSON()}, "not configured")
	if rep := d.ok("GetPushConfig", nil); rep["VAPIDPublicKey"] != "" {
		t.Fatalf("GetPushConfig without web push: %v", rep)
	}
}

// TestPushRetriesTransientErrorsOnly: 503 and 429 are retried until the push goes through; a
// 400 that does not name the token is logged and counted, not retried, and the token stays.
func TestPushRetriesTransientErrorsOnly(t *testing.T) {
	cfg := testConfig(t)
	rig := newPushRig(t, &cfg)
	srv := startServer(t, cfg)
	alice := register(t, srv, "ra")
	bob := register(t, srv, "rb")
	bob.ok("AddAndroidDev", map[string]any{"device": "android-r"})
	cid := newConvo(t, alice, "retry", bob)
	bob.conn.close()
	waitOffline(t, srv, bob.name)
	sends := func(outcome string) float64 {
		return testutil.ToFloat64(srv.db.push.sends.WithLabelValues("fcm", outcome))
	}

	rig.fcm.FailNext(503, 429)
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "through in the end"})
	if m := receive(t, rig.fcm.Received, "FCM send after retries"); m.Notification["body"] != "through in the end" {
		t.Fatalf("got %+v", m)
	}
	waitUntil(t, "ok counted", func() bool { return sends("ok") == 1 })
	if r := sends("retry"); r != 2 || rig.fcm.Sends() != 3 {
		t.Fatalf("retries %v, sends %d; want 2 and 3", r, rig.fcm.Sends())
	}

	rig.fcm.FailNext(400)
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "refused"})
	waitUntil(t, "error counted", func() bool { return sends("error") == 1 })
	if rig.fcm.Sends() != 4 || sends("retry") != 2 {
		t.Fatalf("a 400 was retried: %d sends", rig.fcm.Sends())
	}
	u, _ := srv.db.getUser(context.Background(), bob.name)
	if !slices.Equal(u.Devices["android"], []string{"android-r"}) {
		t.Fatalf("token removed after a 400 that does not name it: %v", u.Devices)
	}
}

func TestPushHTTPOutcomes(t *testing.T) {
	resp := func(code int, retry string) *http.Response {
		h := http.Header{}
		if retry != "" {
			h.Set("Retry-After", retry)
		}
		return &http.Response{StatusCode: code, Header: h}
	}
	var te *transientError
	if err := httpOutcome(resp(201, ""), "", 404, 410); err != nil {
		t.Fatalf("201: %v", err)
	}
	if err := httpOutcome(resp(410, ""), "", 404, 410); !errors.Is(err, errInvalidToken) {
		t.Fatalf("410: %v", err)
	}
	if err := httpOutcome(resp(429, "7"), "", 404); !errors.As(err, &te) || te.retryAfter != 7*time.Second {
		t.Fatalf("429: %v", err)
	}
	if err := httpOutcome(resp(503, ""), ""); !errors.As(err, &te) {
		t.Fatalf("503: %v", err)
	}
	if err := httpOutcome(resp(413, ""), "", 404); err == nil || errors.As(err, &te) || errors.Is(err, errInvalidToken) {
		t.Fatalf("413 must be a plain error: %v", err)
	}
	if d := retryAfter(time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)); d < 58*time.Second || d > time.Minute {
		t.Fatalf("Retry-After as a date: %v", d)
	}
}
