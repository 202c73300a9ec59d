package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/sideshow/apns2"
	"github.com/sideshow/apns2/payload"
	"github.com/sideshow/apns2/token"
	"golang.org/x/net/http2"
)

// Apple Push Notification service over HTTP/2 with token (.p8) authentication, for iOS.
// github.com/sideshow/apns2 is the widely used Go client: it keeps the HTTP/2 connection, signs
// and renews the ES256 provider token (every 50 minutes, as Apple asks) and sets the headers.
// We give it our own HTTP/2 transport so that tests can trust a local server's certificate.

type apnsProvider struct {
	client *apns2.Client
	topic  string
}

func newAPNs(cfg PushConfig) (*apnsProvider, error) {
	key, err := token.AuthKeyFromFile(cfg.APNsKeyFile)
	if err != nil {
		return nil, fmt.Errorf("reading -apns-key-file: %w", err)
	}
	if cfg.APNsKeyID == "" || cfg.APNsTeamID == "" || cfg.APNsTopic == "" {
		return nil, fmt.Errorf("APNs needs -apns-key-id, -apns-team-id and -apns-topic with -apns-key-file")
	}
	c := apns2.NewTokenClient(&token.Token{AuthKey: key, KeyID: cfg.APNsKeyID, TeamID: cfg.APNsTeamID})
	c.Host = strings.TrimRight(cmpOr(cfg.APNsURL, defaultAPNsURL), "/")
	c.HTTPClient = &http.Client{
		Transport: &http2.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.apnsRoots, MinVersion: tls.VersionTLS12},
			DialTLSContext: dialTLSWithTimeout, ReadIdleTimeout: 30 * time.Second, PingTimeout: pushHeaderTimeout},
		Timeout: pushAttemptLimit,
	}
	return &apnsProvider{client: c, topic: cfg.APNsTopic}, nil
}

// normalizeDevice checks a device token of a platform at registration and gives the form it is
// stored in. An APNs device token is 32 bytes written as 64 hex digits (either case; stored in
// lower case, as Apple gives them); it goes into the path of the request to Apple, so nothing
// else may pass. FCM registration tokens have no documented form: they travel in a JSON body.
func normalizeDevice(platform, dev string) (string, error) {
	if platform != "ios" {
		return dev, nil
	}
	if len(dev) != 64 || strings.Trim(strings.ToLower(dev), "0123456789abcdef") != "" {
		return "", clientErr("an APNs device token is 64 hexadecimal digits")
	}
	return strings.ToLower(dev), nil
}

func (a *apnsProvider) name() string        { return "apns" }
func (a *apnsProvider) platforms() []string { return []string{"ios"} }

func (a *apnsProvider) send(ctx context.Context, tok string, n pushNote) error {
	if norm, err := normalizeDevice("ios", tok); err != nil || norm != tok {
		// Registered before tokens were checked: never put it in a URL; drop it.
		return fmt.Errorf("%w: not 64 lower-case hex digits", errInvalidToken)
	}
	p := payload.NewPayload().AlertTitle(n.Title).AlertBody(n.Body).Sound("default").
		ThreadID(n.CID).Custom("CID", n.CID).Custom("sender", n.Sender)
	res, err := a.client.PushWithContext(ctx, &apns2.Notification{
		DeviceToken: tok, Topic: a.topic, PushType: apns2.PushTypeAlert, Payload: p,
	})
	if err != nil {
		return networkErr("sending to APNs", err)
	}
	switch {
	case res.Sent():
		return nil
	case res.StatusCode == http.StatusGone,
		res.Reason == apns2.ReasonBadDeviceToken, res.Reason == apns2.ReasonDeviceTokenNotForTopic:
		return fmt.Errorf("%w: APNs %d %s", errInvalidToken, res.StatusCode, res.Reason)
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		return &transientError{err: fmt.Errorf("APNs %d %s", res.StatusCode, res.Reason)}
	}
	return fmt.Errorf("APNs %d %s", res.StatusCode, res.Reason)
}
