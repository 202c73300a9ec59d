package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"
)

// Inbound mail over HTTP (DESIGN §5.1): POST /inbound/email with a raw message, for any mail
// server that can pipe mail to a URL, and POST /inbound/mandrill, Mandrill's inbound webhook.
// Both go through parseMail; a malformed payload answers 400 and stores nothing.

// Both are served only when configured: /inbound/email with -inbound-token, /inbound/mandrill
// with -mandrill-key (and -inbound-token too when both are set); otherwise they answer 404. The
// token is checked before a byte of the body is read; a body is read only in one of the parse
// places (mail_guard.go), whole within inboundBodyTimeout.

// Mandrill's events carry the raw message JSON-escaped inside a form field: a base64 message
// grows by about a tenth; allow a quarter.
const maxMandrillBody = maxInboundMail + maxInboundMail/4 + 1<<20

// logInbound says at start-up which inbound ways are open.
func logInbound(cfg Config, log *slog.Logger) {
	if notConfigured(cfg.InboundToken) {
		log.Info("inbound mail over HTTP: POST /inbound/email is off (set -inbound-token to serve it)")
	} else {
		log.Info("inbound mail over HTTP: POST /inbound/email is on, with -inbound-token")
	}
	if notConfigured(cfg.MandrillKey) {
		log.Info("inbound mail over HTTP: POST /inbound/mandrill is off (set -mandrill-key to serve it)")
	} else {
		log.Info("inbound mail over HTTP: POST /inbound/mandrill is on, with -mandrill-key")
	}
}

// inboundToken reports whether r carries -inbound-token.
func (s *Server) inboundToken(r *http.Request) bool {
	if notConfigured(s.cfg.InboundToken) {
		return false
	}
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if got == "" {
		got = r.URL.Query().Get("token")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.InboundToken)) == 1
}

// inboundEmail answers POST /inbound/email: the body is one RFC 5322 message; it goes to the
// mail domain's addresses among ?to= (repeatable, at most 50) or, without it, its To and Cc
// headers. The mail server piping it may say where it came from, for SPF: ?ip= (the client's
// address), ?helo= and ?from= (the envelope sender; SMS replies are taken only with it).
func (s *Server) inboundEmail(w http.ResponseWriter, r *http.Request) {
	if notConfigured(s.cfg.InboundToken) {
		http.NotFound(w, r)
		return
	}
	if !s.inboundToken(r) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if !s.unknownAllowance(w, r) {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "message/rfc822" {
		http.Error(w, "Content-Type must be message/rfc822", http.StatusUnsupportedMediaType)
		return
	}
	q := r.URL.Query()
	rcpts := q["to"]
	if len(rcpts) > maxMailRcpts {
		http.Error(w, errTooManyRcpts.Error(), http.StatusBadRequest)
		return
	}
	raw, done, err := s.readInbound(w, r, "", maxInboundMail, false)
	if err != nil {
		inboundError(w, err)
		return
	}
	defer done()
	p, err := parseMail(raw.Bytes())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.envFrom, p.remote = q.Get("from"), s.inboundRemote(r)
	ev := senderEvidence{ip: net.ParseIP(q.Get("ip")), helo: q.Get("helo"), envFrom: p.envFrom}
	p.auth = s.db.checkSender(r.Context(), raw.Bytes(), p, ev)
	raw.Reset()
	if len(rcpts) == 0 {
		rcpts = p.headerRecipients(s.cfg.MailDomain)
	}
	sender := ev.envFrom
	if sender == "" {
		sender = p.from
	}
	if err := s.db.admitMessage(p, len(rcpts), sender, ""); err != nil {
		inboundError(w, err)
		return
	}
	s.deliverInbound(w, r, rcpts, p, "http")
}

// readInbound reads r's body (at most limit bytes; as a form into r.PostForm when form is set)
// in a parse place, within the body deadline; done gives the place back. addr is the client's
// limit key, "" for a request that carried the inbound token.
func (s *Server) readInbound(w http.ResponseWriter, r *http.Request, addr string, limit int64, form bool) (*bytes.Buffer, func(), error) {
	if r.ContentLength > limit {
		return nil, nil, errTooLarge
	}
	g := s.db.inbound
	if !g.enter(r.Context(), addr) {
		return nil, nil, errInboundBusy
	}
	done := func() { g.leave(addr) }
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(g.bodyTimeout)
	_ = rc.SetReadDeadline(deadline)
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	body := new(bytes.Buffer)
	var err error
	if form {
		err = r.ParseForm()
	} else {
		_, err = io.Copy(body, r.Body)
	}
	if err != nil {
		// The rest of the body is never read: the connection closes after the answer (a
		// handler's r.Body that is not net/http's own would otherwise be drained first).
		w.Header().Set("Connection", "close")
		done()
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return nil, nil, errTooLarge
		case errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(deadline):
			g.cutOff.Add(1)
			return nil, nil, errBodyTimeout
		}
		return nil, nil, fmt.Errorf("%w: %v", errBadBody, err)
	}
	_ = rc.SetReadDeadline(time.Time{})
	return body, done, nil
}

var (
	errTooLarge = errors.New("message too large")
	errBadBody  = errors.New("reading the body")
)

// inboundError answers a refusal.
func inboundError(w http.ResponseWriter, err error) {
	code := httpStatusFor(err)
	switch {
	case errors.Is(err, errTooLarge):
		code = http.StatusRequestEntityTooLarge
	case code == 0:
		code = http.StatusBadRequest
	}
	if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "60")
	}
	http.Error(w, err.Error(), code)
}

// inboundRemote is the limit key of the client handing mail in over HTTP.
func (s *Server) inboundRemote(r *http.Request) string {
	return limitKey(s.db.limits.proxies.clientAddr(r))
}

// unknownAllowance answers 429 when the client has named too many unknown recipients lately
// (the SMTP receiver's limit, mail_smtpd.go): nothing is read or delivered.
func (s *Server) unknownAllowance(w http.ResponseWriter, r *http.Request) bool {
	if s.db.limits.unknownRcpts.has(s.inboundRemote(r)) {
		return true
	}
	w.Header().Set("Retry-After", "120")
	http.Error(w, "too many unknown recipients; try again later", http.StatusTooManyRequests)
	return false
}

// deliverInbound stores p for rcpts and answers how many took it.
func (s *Server) deliverInbound(w http.ResponseWriter, r *http.Request, rcpts []string, p *parsedMail, via string) int {
	err := s.db.quotaPrecheck(r.Context(), rcpts, p)
	n := 0
	if err == nil {
		n, err = s.db.receiveMail(r.Context(), rcpts, p, via)
	}
	if code := httpStatusFor(err); code != 0 {
		inboundError(w, err)
		return -1
	}
	if err != nil {
		slog.Error("storing inbound mail", "via", via, "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
		return -1
	}
	return n
}

// inboundMandrill answers Mandrill's inbound webhook: HEAD (Mandrill's check when the webhook is
// added) with 200, POST with the events of the form field mandrill_events, signed with
// -mandrill-key.
func (s *Server) inboundMandrill(w http.ResponseWriter, r *http.Request) {
	if notConfigured(s.cfg.MandrillKey) {
		http.NotFound(w, r)
		return
	}
	addr := ""
	if !notConfigured(s.cfg.InboundToken) {
		if !s.inboundToken(r) {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	} else {
		addr = s.inboundRemote(r)
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	if !s.unknownAllowance(w, r) {
		return
	}
	_, done, err := s.readInbound(w, r, addr, maxMandrillBody, true)
	if err != nil {
		inboundError(w, err)
		return
	}
	defer done()
	if !s.mandrillSigned(r) {
		slog.Warn("refusing a Mandrill webhook with a wrong signature", "remote", r.RemoteAddr)
		http.Error(w, "bad signature", http.StatusForbidden)
		return
	}
	var events []MandrillEvent
	if err := json.Unmarshal([]byte(r.PostForm.Get("mandrill_events")), &events); err != nil {
		http.Error(w, "mandrill_events must be a JSON array of events", http.StatusBadRequest)
		return
	}
	inbound, err := parseMandrill(events)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, in := range inbound {
		in.p.remote = s.inboundRemote(r)
		if err := s.admitMandrill(r.Context(), in.ev, in.p); err != nil {
			inboundError(w, err)
			return
		}
		if s.deliverInbound(w, r, []string{in.ev.Msg.Email}, in.p, "mandrill") < 0 {
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// admitMandrill verifies one Mandrill message's sender (DKIM ourselves; SPF as Mandrill found
// it, for the Return-Path Mandrill wrote) and applies admitMessage. ev must be p's own event.
func (s *Server) admitMandrill(ctx context.Context, ev *MandrillEvent, p *parsedMail) error {
	raw := []byte(ev.Msg.RawMsg)
	p.auth = s.db.checkSender(ctx, raw, p, senderEvidence{spf: ev.Msg.SPF.Result, spfFrom: returnPathDomain(raw)})
	sender := p.envFrom
	if sender == "" {
		sender = p.from
	}
	return s.db.admitMessage(p, 1, sender, "")
}

// mandrillInbound is one inbound event with its parsed message: kept together, so that other
// events in the batch (clicks, opens) cannot shift one onto another's recipient or verdict.
type mandrillInbound struct {
	ev *MandrillEvent
	p  *parsedMail
}

// parseMandrill parses every inbound event before any is stored, so that a malformed payload
// stores nothing.
func parseMandrill(events []MandrillEvent) ([]mandrillInbound, error) {
	var out []mandrillInbound
	for i := range events {
		ev := &events[i]
		if ev.Event != "inbound" {
			continue
		}
		if ev.Msg.RawMsg == "" || ev.Msg.Email == "" {
			return nil, errors.New("an inbound event needs msg.raw_msg and msg.email")
		}
		p, err := parseMail([]byte(ev.Msg.RawMsg))
		if err != nil {
			return nil, err
		}
		p.envFrom = ev.Msg.Sender
		out = append(out, mandrillInbound{ev: ev, p: p})
	}
	return out, nil
}

// mandrillSigned checks X-Mandrill-Signature: base64 HMAC-SHA1, keyed with the webhook key, of
// the webhook's URL followed by every POST field's name and value, sorted by name.
func (s *Server) mandrillSigned(r *http.Request) bool {
	got, err := base64.StdEncoding.DecodeString(r.Header.Get("X-Mandrill-Signature"))
	if err != nil {
		return false
	}
	want := mandrillSignature(s.cfg.MandrillKey, s.webhookURL(r), r.PostForm)
	return hmac.Equal(got, want)
}

func mandrillSignature(key, url string, form map[string][]string) []byte {
	names := make([]string, 0, len(form))
	for k := range form {
		names = append(names, k)
	}
	sort.Strings(names)
	m := hmac.New(sha1.New, []byte(key))
	io.WriteString(m, url)
	for _, k := range names {
		for _, v := range form[k] {
			io.WriteString(m, k)
			io.WriteString(m, v)
		}
	}
	return m.Sum(nil)
}

// webhookURL is the URL Mandrill was given for this endpoint: -public-url's origin and the
// request's path and query.
func (s *Server) webhookURL(r *http.Request) string {
	return strings.TrimSuffix(s.db.publicURL(), "/") + r.URL.RequestURI()
}
