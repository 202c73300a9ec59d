package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// Push notifications to recipients who have no live session (DESIGN §5.2). The message path
// only puts a job on a bounded queue; a few workers check presence across instances, read the
// recipients' devices and call the providers, so that no provider, however slow, can delay a
// message or its acknowledgement.

// PushConfig is the push part of Config; empty or FILL_ME turns a provider off.
type PushConfig struct {
	FCMCredentials  string // service-account JSON file
	FCMURL          string
	APNsKeyFile     string // .p8 key
	APNsKeyID       string
	APNsTeamID      string
	APNsTopic       string // the app's bundle id
	APNsURL         string
	VAPIDPublicKey  string
	VAPIDPrivateKey string
	VAPIDSubject    string
	PushWorkers     int
	PushQueue       int
	// PushAllowPrivate lets pushes go to private, loopback and link-local addresses (a push
	// service on the operator's own network); off, only public addresses are dialled.
	PushAllowPrivate bool

	// Set by tests only.
	webPushAllowHTTP bool           // accept http://127.0.0.1 subscription endpoints
	apnsRoots        *x509.CertPool // trusted for the APNs server (nil: the system's)
	pushRetryBase    time.Duration  // first retry's back-off (0: one second)
}

const (
	defaultFCMURL  = "https://fcm.googleapis.com"
	defaultAPNsURL = "https://api.push.apple.com"

	pushRetries       = 2 // after the first attempt, for transient failures only
	pushMaxRetryAfter = 30 * time.Second
	pushTitleChars    = 40
	pushBodyChars     = 120
)

// pushNote is one notification, the same for every provider.
type pushNote struct {
	Title, Body, CID, Sender string
}

// pushProvider sends one notification to one device token of its platforms.
type pushProvider interface {
	name() string
	platforms() []string
	send(ctx context.Context, token string, n pushNote) error
}

// errInvalidToken: the provider says the device is gone; the token is removed from the user.
var errInvalidToken = errors.New("device token invalid")

// transientError is a failure worth retrying (network, 5xx, 429), after retryAfter if set.
type transientError struct {
	retryAfter time.Duration
	err        error
}

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// httpOutcome maps a provider's HTTP status to an error: invalid for the given statuses,
// transient for 429 and 5xx (with Retry-After), permanent otherwise.
func httpOutcome(resp *http.Response, detail string, invalid ...int) error {
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case containsInt(invalid, resp.StatusCode):
		return fmt.Errorf("%w: %d %s", errInvalidToken, resp.StatusCode, detail)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return &transientError{retryAfter: retryAfter(resp.Header.Get("Retry-After")),
			err: fmt.Errorf("status %d %s", resp.StatusCode, detail)}
	}
	return fmt.Errorf("status %d %s", resp.StatusCode, detail)
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// retryAfter reads a Retry-After header in seconds or as an HTTP date (0 if absent or bad).
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if n, err := strconv.Atoi(h); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// networkErr marks an error from the HTTP round trip itself as transient.
func networkErr(doing string, err error) error {
	return &transientError{err: fmt.Errorf("%s: %w", doing, err)}
}

type pushJob struct {
	recipients        []string
	sender, cid, text string
}

// pusher is the queue, its workers and the configured providers.
type pusher struct {
	db         *Database
	queue      *pushQueue
	workers    int
	byPlatform map[string]pushProvider
	retryBase  time.Duration
	sends      *prometheus.CounterVec
	dropped    prometheus.Counter
}

// newPusher builds the configured providers; nil when none is configured (or works).
func newPusher(db *Database) *pusher {
	cfg := db.cfg.PushConfig
	p := &pusher{db: db, byPlatform: map[string]pushProvider{}, retryBase: cfg.pushRetryBase, workers: cfg.PushWorkers}
	if p.workers <= 0 {
		p.workers = 4
	}
	p.queue = newPushQueue(cmp.Or(max(cfg.PushQueue, 0), 1024), p.workers)
	if p.retryBase <= 0 {
		p.retryBase = time.Second
	}
	// A provider that cannot be set up is logged and left off; the others still work.
	var providers []pushProvider
	add := func(name string, pr pushProvider, err error) {
		if err != nil {
			slog.Error("push provider off", "provider", name, "err", err)
			return
		}
		providers = append(providers, pr)
	}
	if !notConfigured(cfg.FCMCredentials) {
		f, err := newFCM(cfg)
		add("fcm", f, err)
	}
	if !notConfigured(cfg.APNsKeyFile) {
		a, err := newAPNs(cfg)
		add("apns", a, err)
	}
	if !notConfigured(cfg.VAPIDPublicKey) {
		w, err := newWebPush(db.cfg)
		add("webpush", w, err)
	}
	if len(providers) == 0 {
		return nil
	}
	for _, pr := range providers {
		for _, pl := range pr.platforms() {
			p.byPlatform[pl] = pr
		}
		slog.Info("push provider configured", "provider", pr.name())
	}
	p.registerMetrics(db.metrics)
	return p
}

func (p *pusher) registerMetrics(m *Metrics) {
	p.sends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pinged_push_sends_total",
		Help: "Push notifications attempted, by provider (fcm, apns, webpush) and outcome (ok, invalid_token, error, retry).",
	}, []string{"provider", "outcome"})
	p.dropped = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pinged_push_dropped_total",
		Help: "Push tasks (messages to look up, deliveries) dropped, oldest first, because the push queue was full.",
	})
	if m != nil && m.reg != nil {
		m.reg.MustRegister(p.sends, p.dropped)
	}
}

// startPushAndBots builds the push workers and the bots and starts the workers under wg until
// ctx ends. Pushes are a comfort: the chat works without them.
func (db *Database) startPushAndBots(ctx context.Context, wg *sync.WaitGroup) {
	db.bots = newBots(db)
	p := newPusher(db)
	if p == nil {
		return
	}
	db.push = p
	for i := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Protect(ctx, fmt.Sprintf("push worker %d", i), p.work)
		}()
	}
}

// notifyMessage queues the push for a stored message's offline recipients: users' own
// messages only (not bot answers or autoreplies).
func (db *Database) notifyMessage(c *ConvoRecord, m *Message) {
	if m.Kind != "text" {
		return
	}
	db.notifyOffline(context.Background(), c.Members, m.FUsername, c.CID, m.Content)
}

// notifyOffline queues a notification from sender about text in conversation cid for those of
// recipients (the sender is skipped) who have no live session. It never blocks: a full queue
// drops its oldest task, with a log line and a metric.
func (db *Database) notifyOffline(ctx context.Context, recipients []string, sender, cid, text string) {
	p := db.push
	if p == nil || ctx.Err() != nil {
		return
	}
	p.enqueue(&pushTask{job: &pushJob{recipients: recipients, sender: sender, cid: cid, text: text}})
}

// enqueue adds a task, dropping the oldest one when the queue is full.
func (p *pusher) enqueue(t *pushTask) {
	if old := p.queue.add(t, time.Now()); old != nil {
		p.dropped.Inc()
		if old.job != nil {
			slog.Warn("push queue full, notification dropped", "cid", old.job.cid, "sender", old.job.sender)
		} else {
			slog.Warn("push queue full, notification dropped", "cid", old.note.CID, "user", old.user, "provider", old.prov.name())
		}
	}
}

// work runs tasks until ctx ends: the oldest that may run, waiting when none may.
func (p *pusher) work(ctx context.Context) {
	for {
		t, due := p.queue.next(time.Now())
		if t != nil {
			p.run(ctx, t)
			p.queue.finish(t)
			continue
		}
		if !p.wait(ctx, due) {
			return
		}
	}
}

// wait waits until a task is added or finished, or until due (if set); false when ctx ended.
func (p *pusher) wait(ctx context.Context, due time.Time) bool {
	var timer <-chan time.Time
	if !due.IsZero() {
		tm := time.NewTimer(time.Until(due))
		defer tm.Stop()
		timer = tm.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-p.queue.wake:
	case <-timer:
	}
	return true
}

func (p *pusher) run(ctx context.Context, t *pushTask) {
	if t.job != nil {
		p.expand(ctx, t.job)
		return
	}
	p.deliver(ctx, t)
}

// expand turns a message's job into one delivery per device of each offline recipient.
func (p *pusher) expand(ctx context.Context, job *pushJob) {
	note := makeNote(job.sender, job.text, job.cid)
	for _, r := range job.recipients {
		if strings.EqualFold(r, job.sender) || p.db.userOnline(ctx, r) {
			continue
		}
		u, err := p.db.getUserData(ctx, r)
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				slog.Warn("push: reading recipient", "user", r, "err", err)
			}
			continue
		}
		for _, platform := range mapKeys(u.Devices) {
			prov := p.byPlatform[platform]
			if prov == nil {
				continue
			}
			for _, tok := range u.Devices[platform] {
				p.enqueue(&pushTask{prov: prov, user: u.Username, platform: platform, token: tok,
					host: pushHost(prov, tok), note: note})
			}
		}
	}
}

// pushHost is the host a delivery goes to, for the per-host budget: a Web Push endpoint's, or
// the provider's own.
func pushHost(prov pushProvider, tok string) string {
	if prov.name() == webPushPlatform {
		if u, err := url.Parse(endpointOf(tok)); err == nil && u.Host != "" {
			return strings.ToLower(u.Host)
		}
	}
	return prov.name()
}

// deliver makes one attempt at one device. A transient failure goes back on the queue, due
// after its back-off (no worker waits it out); a token the provider says is invalid is removed.
func (p *pusher) deliver(ctx context.Context, t *pushTask) {
	actx, cancel := context.WithTimeout(ctx, pushAttemptLimit)
	err := t.prov.send(actx, t.token, t.note)
	cancel()
	name := t.prov.name()
	var te *transientError
	switch {
	case err == nil:
		p.sends.WithLabelValues(name, "ok").Inc()
	case errors.Is(err, errInvalidToken):
		p.sends.WithLabelValues(name, "invalid_token").Inc()
		slog.Info("push: removing invalid device", "provider", name, "user", t.user, "err", err)
		if err := p.db.removeDevice(ctx, t.user, t.platform, t.token); err != nil {
			slog.Warn("push: removing invalid device", "user", t.user, "err", err)
		}
	case ctx.Err() != nil:
		// shutting down
	case errors.As(err, &te) && t.attempt < pushRetries:
		p.sends.WithLabelValues(name, "retry").Inc()
		wait := p.retryBase << t.attempt
		if te.retryAfter > 0 {
			wait = min(te.retryAfter, pushMaxRetryAfter)
		}
		retry := *t
		retry.attempt++
		retry.notBefore = time.Now().Add(wait)
		p.enqueue(&retry)
	default:
		p.sends.WithLabelValues(name, "error").Inc()
		slog.Warn("push failed", "provider", name, "user", t.user, "err", err)
	}
}

// removeDevice drops one token from a user's devices of a platform.
func (db *Database) removeDevice(ctx context.Context, user, platform, tok string) error {
	_, err := db.updateUser(ctx, user, func(u *UserRecord) error {
		list := u.Devices[platform]
		out := list[:0:0]
		for _, d := range list {
			if d != tok {
				out = append(out, d)
			}
		}
		if len(out) == len(list) {
			return errNoChange
		}
		u.Devices[platform] = out
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// makeNote builds the notification as the original titled it.
func makeNote(sender, text, cid string) pushNote {
	t := strings.TrimSpace(text)
	title := sender + " - " + firstChars(t, pushTitleChars)
	if name, picture, ok := fileMessage(t); ok {
		// A shared file (DESIGN §3.2's file message): its name, not its JSON.
		t, title = name, sender+" sent you a file"
		if picture {
			title = sender + " sent you a picture"
		}
		return pushNote{Title: title, Body: firstChars(t, pushBodyChars), CID: cid, Sender: sender}
	}
	switch linkKind(t) {
	case "picture":
		title = sender + " sent you a picture"
	case "link":
		title = sender + " sent you a link"
	}
	return pushNote{Title: title, Body: firstChars(t, pushBodyChars), CID: cid, Sender: sender}
}

// fileMessage reads a file message's name and whether it is a raster image.
func fileMessage(t string) (name string, picture bool, ok bool) {
	var m struct {
		File *struct {
			URL  string `json:"url"`
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"file"`
	}
	if !strings.HasPrefix(t, `{"file"`) || json.Unmarshal([]byte(t), &m) != nil || m.File == nil ||
		!strings.HasPrefix(m.File.URL, "/files/") {
		return "", false, false
	}
	switch m.File.Type {
	case "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp":
		picture = true
	}
	return m.File.Name, picture, true
}

// linkKind is "picture" when the whole text is one http(s) URL to an image file, "link" when
// it is any other single http(s) URL, "" otherwise.
func linkKind(t string) string {
	if t == "" || strings.ContainsAny(t, " \t\r\n") {
		return ""
	}
	u, err := url.Parse(t)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	switch strings.ToLower(path.Ext(u.Path)) {
	case ".png", ".jpg", ".jpeg", ".gif", ".webp":
		return "picture"
	}
	return "link"
}

// firstChars is the first n characters (runes) of s.
func firstChars(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for j := range s {
		if i == n {
			return s[:j]
		}
		i++
	}
	return s
}
