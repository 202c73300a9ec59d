package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Inbound mail over HTTP: the raw-message endpoint and Mandrill's webhook.

func postMail(t *testing.T, srv *testServer, path, ctype string, body []byte, hdr map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+srv.addr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

const testInboundToken = "inbound-s3cret"

var withToken = map[string]string{"Authorization": "Bearer " + testInboundToken}

func TestInboundEmailEndpoint(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.InboundToken = testMailDomain, testInboundToken
	srv := startServer(t, cfg)
	c := register(t, srv, "fay")
	addr := c.name + "@" + testMailDomain
	if code := postMail(t, srv, "/inbound/email", "text/plain", sampleMail(t, "shiftjis.eml", addr), withToken); code != http.StatusUnsupportedMediaType {
		t.Errorf("wrong content type: %d", code)
	}
	if code := postMail(t, srv, "/inbound/email", "message/rfc822", []byte("not a message"), withToken); code != http.StatusBadRequest {
		t.Errorf("malformed: %d", code)
	}
	if code := postMail(t, srv, "/inbound/email", "message/rfc822", sampleMail(t, "shiftjis.eml", "nobody_x@"+testMailDomain), withToken); code != http.StatusOK {
		t.Errorf("mail for nobody (dropped): %d", code)
	}
	if code := postMail(t, srv, "/inbound/email", "message/rfc822", sampleMail(t, "shiftjis.eml", addr), withToken); code != http.StatusOK {
		t.Fatalf("good mail: %d", code)
	}
	e := fetchEmail(c, c.waitPush("EmailReceived", isCmd("EmailReceived"))["Email"].(map[string]any)["ID"])
	if e["Subject"] != "会議の件" || !strings.Contains(e["Text"].(string), "会議は明日です") {
		t.Fatalf("Shift_JIS mail: %v", e)
	}
	if got := emails(c.ok("GetAllEmails", nil)); len(got) != 1 {
		t.Fatalf("stored: %d e-mails, want only the good one", len(got))
	}
}

// -inbound-token guards both endpoints when set.
func TestInboundToken(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.InboundToken = testMailDomain, "s3cret"
	srv := startServer(t, cfg)
	c := register(t, srv, "gil")
	msg := sampleMail(t, "latin1.eml", c.name+"@"+testMailDomain)
	if code := postMail(t, srv, "/inbound/email", "message/rfc822", msg, nil); code != http.StatusUnauthorized {
		t.Errorf("without the token: %d", code)
	}
	if code := postMail(t, srv, "/inbound/email", "message/rfc822", msg, map[string]string{"Authorization": "Bearer s3cret"}); code != http.StatusOK {
		t.Errorf("with the token: %d", code)
	}
	c.waitPush("EmailReceived", isCmd("EmailReceived"))
}

func TestMandrillWebhook(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.MandrillKey = testMailDomain, "mandrill-webhook-key"
	srv := startServer(t, cfg)
	c := register(t, srv, "hal")
	addr := c.name + "@" + testMailDomain
	events := string(sampleMail(t, "mandrill_inbound.json", addr))
	form := url.Values{"mandrill_events": {events}}
	sign := func(key string) string {
		return base64.StdEncoding.EncodeToString(mandrillSignature(key, "http://"+testMailDomain+"/inbound/mandrill", form))
	}
	post := func(f url.Values, sig string) int {
		return postMail(t, srv, "/inbound/mandrill", "application/x-www-form-urlencoded", []byte(f.Encode()),
			map[string]string{"X-Mandrill-Signature": sig})
	}

	res, err := http.Head("http://" + srv.addr + "/inbound/mandrill")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("HEAD check: %v %v", res, err)
	}
	if code := post(form, sign("a forged key")); code != http.StatusForbidden {
		t.Errorf("forged signature: %d", code)
	}
	bad := url.Values{"mandrill_events": {`[{"event":"inbound","msg":{"email":"` + addr + `","raw_msg":"garbage"}}]`}}
	if code := post(bad, base64.StdEncoding.EncodeToString(mandrillSignature(cfg.MandrillKey, "http://"+testMailDomain+"/inbound/mandrill", bad))); code != http.StatusBadRequest {
		t.Errorf("malformed raw_msg: %d", code)
	}
	notJSON := url.Values{"mandrill_events": {"{"}}
	if code := post(notJSON, base64.StdEncoding.EncodeToString(mandrillSignature(cfg.MandrillKey, "http://"+testMailDomain+"/inbound/mandrill", notJSON))); code != http.StatusBadRequest {
		t.Errorf("malformed JSON: %d", code)
	}
	if got := emails(c.ok("GetAllEmails", nil)); len(got) != 0 {
		t.Fatalf("refused payloads stored %v", got)
	}
	if code := post(form, sign(cfg.MandrillKey)); code != http.StatusOK {
		t.Fatalf("signed webhook: %d", code)
	}
	e := fetchEmail(c, c.waitPush("EmailReceived", isCmd("EmailReceived"))["Email"].(map[string]any)["ID"])
	if e["Subject"] != "Lunch on Friday?" || e["From"] != "dana@example.org" || e["FromName"] != "Dana Sender" ||
		!strings.Contains(e["HTML"].(string), "<b>lunch</b>") {
		t.Fatalf("Mandrill mail: %v", e)
	}
}

// A Mandrill batch mixing event types: each inbound event's message goes to that event's
// recipient, whatever other events (clicks, opens) come before it.
func TestMandrillBatchKeepsEventsWithTheirMessages(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.MandrillKey = testMailDomain, "mandrill-webhook-key"
	srv := startServer(t, cfg)
	a := register(t, srv, "ann")
	b := register(t, srv, "ben")
	addrA, addrB := a.name+"@"+testMailDomain, b.name+"@"+testMailDomain
	raw := func(to, subject string) string {
		return "From: dana@example.org\r\nTo: " + to + "\r\nSubject: " + subject + "\r\nMessage-ID: <" + randomToken() + "@example.org>\r\n\r\n" + subject + "\r\n"
	}
	events := []map[string]any{
		{"event": "click", "msg": map[string]any{"email": addrA, "url": "https://example.org/"}},
		{"event": "inbound", "msg": map[string]any{"email": addrB, "raw_msg": raw(addrB, "only for ben")}},
		{"event": "open", "msg": map[string]any{"email": addrA}},
		{"event": "inbound", "msg": map[string]any{"email": addrA, "raw_msg": raw(addrA, "only for ann")}},
	}
	js, err := json.Marshal(events)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"mandrill_events": {string(js)}}
	sig := base64.StdEncoding.EncodeToString(mandrillSignature(cfg.MandrillKey, "http://"+testMailDomain+"/inbound/mandrill", form))
	if code := postMail(t, srv, "/inbound/mandrill", "application/x-www-form-urlencoded", []byte(form.Encode()),
		map[string]string{"X-Mandrill-Signature": sig}); code != http.StatusOK {
		t.Fatalf("signed batch: %d", code)
	}
	for c, want := range map[*client]string{a: "only for ann", b: "only for ben"} {
		got := emails(c.ok("GetAllEmails", nil))
		if len(got) != 1 || got[0]["Subject"] != want {
			var subjects []any
			for _, e := range got {
				subjects = append(subjects, e["Subject"])
			}
			t.Errorf("%s's mailbox: %v, want only %q", c.name, subjects, want)
		}
	}
}
