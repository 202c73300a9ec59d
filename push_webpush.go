package main

import (
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	webpush "github.com/SherClockHolmes/webpush-go"
)

// Web Push to browsers: RFC 8291 message encryption (aes128gcm) and RFC 8292 VAPID, both done by
// github.com/SherClockHolmes/webpush-go, the Go implementation the Web Push libraries list
// names. A browser's subscription is stored as canonical JSON among the user's "webpush" devices
// ("web" holds the browser device ids given at registration, which are not push targets).

const (
	maxEndpoint     = 1024
	maxWebPushSubs  = 5         // browser subscriptions per user: each is an endpoint the workers call
	webPushPlatform = "webpush" // the Devices key of browser push subscriptions
)

type webPushProvider struct {
	opts webpush.Options
}

func newWebPush(cfg Config) (*webPushProvider, error) {
	pub, err := decodeB64URL(cfg.VAPIDPublicKey)
	if err != nil || len(pub) != 65 {
		return nil, fmt.Errorf("-vapid-public-key is not a base64url P-256 point")
	}
	if _, err := ecdh.P256().NewPublicKey(pub); err != nil {
		return nil, fmt.Errorf("-vapid-public-key: %w", err)
	}
	priv, err := decodeB64URL(cfg.VAPIDPrivateKey)
	if err != nil || len(priv) != 32 {
		return nil, fmt.Errorf("-vapid-private-key is not a base64url P-256 private key")
	}
	// webpush-go prefixes "mailto:" to anything that is not an https URL.
	sub := strings.TrimPrefix(cmpOr(cfg.VAPIDSubject, "pingedchat@"+cfg.MailDomain), "mailto:")
	return &webPushProvider{opts: webpush.Options{
		HTTPClient:      pushHTTPClient(cfg.PushAllowPrivate, nil),
		Subscriber:      sub,
		VAPIDPublicKey:  cfg.VAPIDPublicKey,
		VAPIDPrivateKey: cfg.VAPIDPrivateKey,
		TTL:             24 * 60 * 60,
		Urgency:         webpush.UrgencyHigh,
	}}, nil
}

func (w *webPushProvider) name() string        { return "webpush" }
func (w *webPushProvider) platforms() []string { return []string{webPushPlatform} }

// webPushPayload is what the service worker receives (web/sw.js).
type webPushPayload struct {
	Title  string `json:"title"`
	Body   string `json:"body"`
	CID    string `json:"CID"`
	Sender string `json:"sender"`
	Kind   string `json:"kind"`
}

func (w *webPushProvider) send(ctx context.Context, device string, n pushNote) error {
	var sub webpush.Subscription
	if err := json.Unmarshal([]byte(device), &sub); err != nil {
		return fmt.Errorf("%w: stored subscription unreadable", errInvalidToken)
	}
	body, err := json.Marshal(webPushPayload{Title: n.Title, Body: n.Body, CID: n.CID, Sender: n.Sender, Kind: "message"})
	if err != nil {
		return err
	}
	opts := w.opts
	resp, err := webpush.SendNotificationWithContext(ctx, body, &sub, &opts)
	if errors.Is(err, errNotPublic) {
		return fmt.Errorf("sending web push: %w", err) // not retried: it would be refused again
	}
	if err != nil {
		return networkErr("sending web push", err)
	}
	defer resp.Body.Close()
	detail, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return httpOutcome(resp, "from the push service: "+strings.TrimSpace(string(detail)), http.StatusNotFound, http.StatusGone)
}

// decodeB64URL reads base64url with or without padding (browsers give it without).
func decodeB64URL(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// parseWebSubscription validates a browser's PushSubscription JSON and returns its canonical
// form. Endpoints must be https (tests may allow http on loopback).
func (cfg Config) parseWebSubscription(raw string) (webpush.Subscription, string, error) {
	var sub webpush.Subscription
	if err := json.Unmarshal([]byte(raw), &sub); err != nil {
		return sub, "", clientErr("device must be a push subscription as JSON")
	}
	u, err := url.Parse(sub.Endpoint)
	okScheme := err == nil && (u.Scheme == "https" ||
		(cfg.webPushAllowHTTP && u.Scheme == "http" && u.Hostname() == "127.0.0.1"))
	if !okScheme || u.Host == "" || u.User != nil || len(sub.Endpoint) > maxEndpoint {
		return sub, "", clientErr("the subscription's endpoint must be an https URL of at most %d characters", maxEndpoint)
	}
	if checkEndpointHost(u.Hostname(), cfg.PushAllowPrivate) != nil {
		return sub, "", clientErr("the subscription's endpoint must be a push service on the internet, not a private or local address")
	}
	p, err := decodeB64URL(sub.Keys.P256dh)
	if err == nil {
		_, err = ecdh.P256().NewPublicKey(p)
	}
	if err != nil {
		return sub, "", clientErr("the subscription's p256dh key is not a P-256 point")
	}
	if a, err := decodeB64URL(sub.Keys.Auth); err != nil || len(a) != 16 {
		return sub, "", clientErr("the subscription's auth secret must be 16 bytes")
	}
	canon, err := json.Marshal(sub)
	if err != nil {
		return sub, "", err
	}
	return sub, string(canon), nil
}

// endpointOf is a stored subscription's endpoint ("" if unreadable).
func endpointOf(device string) string {
	var sub webpush.Subscription
	_ = json.Unmarshal([]byte(device), &sub)
	return sub.Endpoint
}

// addWebDev registers (or replaces, by endpoint) a browser's push subscription.
func addWebDev(ctx context.Context, s *Session, req *Request) (reply, error) {
	if s.db.push == nil || s.db.push.byPlatform[webPushPlatform] == nil {
		return nil, clientErr("web push is not configured")
	}
	sub, canon, err := s.db.cfg.parseWebSubscription(req.Device)
	if err != nil {
		return nil, err
	}
	_, err = s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		if u.Devices == nil {
			u.Devices = map[string][]string{}
		}
		list := []string{}
		for _, d := range u.Devices[webPushPlatform] {
			if d == canon {
				return errNoChange
			}
			if endpointOf(d) != sub.Endpoint {
				list = append(list, d)
			}
		}
		// A browser's subscription may change without its old one being removed: the newest
		// replaces the oldest rather than being refused.
		if len(list) >= maxWebPushSubs {
			list = list[len(list)-maxWebPushSubs+1:]
		}
		u.Devices[webPushPlatform] = append(list, canon)
		return nil
	})
	return nil, err
}

// removeWebDev drops a browser's subscription, named by its JSON or its endpoint, or (as before
// push existed) a browser device id given at registration.
func removeWebDev(ctx context.Context, s *Session, req *Request) (reply, error) {
	dev := strings.TrimSpace(req.Device)
	endpoint := dev
	if e := endpointOf(dev); e != "" {
		endpoint = e
	}
	if dev == "" {
		return nil, clientErr("device must be a push subscription, its endpoint or a device id")
	}
	_, err := s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		changed := false
		for _, platform := range []string{"web", webPushPlatform} {
			list := u.Devices[platform]
			out := []string{}
			for _, d := range list {
				if d != dev && (platform != webPushPlatform || endpointOf(d) != endpoint) {
					out = append(out, d)
				}
			}
			if len(out) != len(list) {
				u.Devices[platform], changed = out, true
			}
		}
		if !changed {
			return errNoChange
		}
		return nil
	})
	return nil, err
}

// PushConfigReply answers GetPushConfig.
type PushConfigReply struct {
	Cmd            string `json:"cmd"`
	Rid            string `json:"rid,omitempty"`
	VAPIDPublicKey string `json:"VAPIDPublicKey"`
}

func (r *PushConfigReply) setReply(cmd, rid string) { r.Cmd, r.Rid = cmd, rid }

// getPushConfig gives a browser the key to subscribe with (empty: Web Push is off).
func getPushConfig(_ context.Context, s *Session, _ *Request) (reply, error) {
	r := &PushConfigReply{}
	if s.db.push != nil && s.db.push.byPlatform[webPushPlatform] != nil {
		r.VAPIDPublicKey = strings.TrimRight(s.db.cfg.VAPIDPublicKey, "=")
	}
	return r, nil
}
