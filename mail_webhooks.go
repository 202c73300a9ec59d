package main

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sort"
	"strings"
)

// Inbound mail over HTTP (DESIGN §5.1): POST /inbound/email with a raw message, for any mail
// server that can pipe mail to a URL, and POST /inbound/mandrill, Mandrill's inbound webhook.
// Both go through parseMail; a malformed payload answers 400 and stores nothing.

// Mandrill's events carry the raw message base64-free but JSON-escaped inside a form field:
// allow for that growth over the message limit.
const maxMandrillBody = maxInboundMail*2 + 1<<20

// inboundAllowed checks -inbound-token when it is set.
func (s *Server) inboundAllowed(r *http.Request) bool {
	if notConfigured(s.cfg.InboundToken) {
		return true
	}
	got := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if got == "" {
		got = r.URL.Query().Get("token")
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.InboundToken)) == 1
}

// inboundEmail answers POST /inbound/email: the body is one RFC 5322 message; it goes to the
// mail domain's addresses among ?to= (repeatable) or, without it, its To and Cc headers. ?from=
// is the envelope sender (SMS replies are taken only with it).
func (s *Server) inboundEmail(w http.ResponseWriter, r *http.Request) {
	if !s.inboundAllowed(r) {
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
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxInboundMail))
	if err != nil {
		http.Error(w, "message too large", http.StatusRequestEntityTooLarge)
		return
	}
	p, err := parseMail(raw)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.envFrom, p.remote = r.URL.Query().Get("from"), s.inboundRemote(r)
	rcpts := r.URL.Query()["to"]
	if len(rcpts) == 0 {
		rcpts = p.headerRecipients()
	}
	s.deliverInbound(w, r, rcpts, p, "http")
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
	n, err := s.db.receiveMail(r.Context(), rcpts, p, via)
	if err != nil {
		slog.Error("storing inbound mail", "via", via, "err", err)
		http.Error(w, "try again later", http.StatusServiceUnavailable)
		return -1
	}
	return n
}

// inboundMandrill answers Mandrill's inbound webhook: HEAD (Mandrill's check when the webhook is
// added) with 200, POST with the events of the form field mandrill_events.
func (s *Server) inboundMandrill(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	if !s.inboundAllowed(r) {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if !s.unknownAllowance(w, r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxMandrillBody)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "malformed form", http.StatusBadRequest)
		return
	}
	if !notConfigured(s.cfg.MandrillKey) && !s.mandrillSigned(r) {
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
		if s.deliverInbound(w, r, []string{in.to}, in.p, "mandrill") < 0 {
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// mandrillInbound is one inbound event's message with the address it came to: kept together,
// so that other events in the batch (clicks, opens) cannot shift one onto another's recipient.
type mandrillInbound struct {
	to string
	p  *parsedMail
}

// parseMandrill parses every inbound event before any is stored, so that a malformed payload
// stores nothing.
func parseMandrill(events []MandrillEvent) ([]mandrillInbound, error) {
	var out []mandrillInbound
	for _, ev := range events {
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
		out = append(out, mandrillInbound{to: ev.Msg.Email, p: p})
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
