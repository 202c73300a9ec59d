package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// Firebase Cloud Messaging, HTTP v1 API, for Android and Fire OS devices. golang.org/x/oauth2
// signs the service account's JWT assertion, exchanges it at the account's token_uri for an
// access token and caches the token until it expires; the send itself is one JSON POST.

const fcmScope = "https://www.googleapis.com/auth/firebase.messaging"

type fcmProvider struct {
	tokens  oauth2.TokenSource // cached, renewed when expired
	client  *http.Client
	sendURL string
}

func newFCM(cfg PushConfig) (*fcmProvider, error) {
	b, err := os.ReadFile(cfg.FCMCredentials)
	if err != nil {
		return nil, fmt.Errorf("reading -fcm-credentials: %w", err)
	}
	var sa struct {
		ProjectID string `json:"project_id"`
	}
	if err := json.Unmarshal(b, &sa); err != nil || sa.ProjectID == "" {
		return nil, fmt.Errorf("reading -fcm-credentials: no project_id in the service-account JSON (%v)", err)
	}
	jc, err := google.JWTConfigFromJSON(b, fcmScope)
	if err != nil {
		return nil, fmt.Errorf("reading -fcm-credentials: %w", err)
	}
	// The token exchange happens outside any request's context: bound it by a client timeout.
	// FCM's URLs come from the configuration, never from users: the address check is not needed
	// (and a test or self-hosted stand-in may be local), the short timeouts are.
	client := pushHTTPClient(true, nil)
	tokenCtx := context.WithValue(context.Background(), oauth2.HTTPClient, client)
	base := strings.TrimRight(cmpOr(cfg.FCMURL, defaultFCMURL), "/")
	return &fcmProvider{tokens: oauth2.ReuseTokenSource(nil, jc.TokenSource(tokenCtx)),
		client:  client,
		sendURL: base + "/v1/projects/" + sa.ProjectID + "/messages:send"}, nil
}

func (f *fcmProvider) name() string        { return "fcm" }
func (f *fcmProvider) platforms() []string { return []string{"android", "fireos"} }

// fcmMessage is the v1 API's message resource, the parts we use.
type fcmMessage struct {
	Message struct {
		Token        string            `json:"token"`
		Notification map[string]string `json:"notification"`
		Data         map[string]string `json:"data"`
		Android      fcmAndroid        `json:"android"`
	} `json:"message"`
}

type fcmAndroid struct {
	Priority     string            `json:"priority"`
	Notification map[string]string `json:"notification"`
}

// fcmError is the body of a failed v1 call (google.rpc.Status with FcmError details).
type fcmError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
		Details []struct {
			Type      string `json:"@type"`
			ErrorCode string `json:"errorCode"`
		} `json:"details"`
	} `json:"error"`
}

func (f *fcmProvider) send(ctx context.Context, token string, n pushNote) error {
	var m fcmMessage
	m.Message.Token = token
	m.Message.Notification = map[string]string{"title": n.Title, "body": n.Body}
	m.Message.Data = map[string]string{"CID": n.CID, "sender": n.Sender, "kind": "message"}
	m.Message.Android = fcmAndroid{Priority: "high", Notification: map[string]string{"tag": n.CID}}
	body, err := json.Marshal(&m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.sendURL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	tok, err := f.token(ctx)
	if err != nil {
		return networkErr("getting an FCM access token", err)
	}
	tok.SetAuthHeader(req)
	resp, err := f.client.Do(req)
	if err != nil {
		return networkErr("sending to FCM", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	var fe fcmError
	_ = json.Unmarshal(raw, &fe)
	detail := fe.Error.Status + " " + fe.Error.Message
	for _, d := range fe.Error.Details {
		if d.ErrorCode == "UNREGISTERED" {
			return fmt.Errorf("%w: FCM %s", errInvalidToken, d.ErrorCode)
		}
	}
	// An invalid registration token is a 400 INVALID_ARGUMENT that names the token.
	if resp.StatusCode == http.StatusBadRequest && strings.Contains(strings.ToLower(fe.Error.Message), "registration token") {
		return fmt.Errorf("%w: FCM %s", errInvalidToken, detail)
	}
	return httpOutcome(resp, "from FCM: "+detail, http.StatusNotFound)
}

// token gets the access token, giving up when ctx ends (the token source itself takes no
// context, so a hung token endpoint would otherwise hold a worker through shutdown).
func (f *fcmProvider) token(ctx context.Context) (*oauth2.Token, error) {
	type result struct {
		tok *oauth2.Token
		err error
	}
	ch := make(chan result, 1)
	go func() {
		t, err := f.tokens.Token()
		ch <- result{t, err}
	}()
	select {
	case r := <-ch:
		return r.tok, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cmpOr is the first non-empty, configured value.
func cmpOr(v, def string) string {
	if notConfigured(v) {
		return def
	}
	return v
}
