package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The one parser, on real sample messages (testdata/mail).

func TestParseSampleMessages(t *testing.T) {
	for _, tc := range []struct {
		file, subject, from, text string
		attachments               int
	}{
		{"multipart_attachments.eml", "Quarterly report ✓", "carol@example.net", "Café at noon?", 2},
		{"latin1.eml", "Grüße aus Köln", "juergen@example.de", "Grüße aus Köln, à bientôt!", 0},
		{"shiftjis.eml", "会議の件", "taro@example.jp", "こんにちは、世界。会議は明日です。", 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			p, err := parseMail(sampleMail(t, tc.file, "dora@"+testMailDomain))
			if err != nil {
				t.Fatal(err)
			}
			if p.subject != tc.subject || p.from != tc.from || !strings.Contains(p.text, tc.text) || len(p.parts) != tc.attachments {
				t.Fatalf("parsed: subject %q from %q parts %d text %q", p.subject, p.from, len(p.parts), p.text)
			}
		})
	}
	p, _ := parseMail(sampleMail(t, "latin1.eml", "x@y"))
	if p.fromName != "Jürgen Müller" {
		t.Fatalf("encoded-word display name: %q", p.fromName)
	}
}

// Everything that could run, load or phone home is gone after sanitising; the content stays.
func TestHostileHTMLIsSanitised(t *testing.T) {
	p, err := parseMail(sampleMail(t, "hostile.eml", "x@"+testMailDomain))
	if err != nil {
		t.Fatal(err)
	}
	low := strings.ToLower(p.html)
	for _, bad := range []string{"<script", "steal", "onload", "onerror", "javascript:", "tracker.example.com",
		"<iframe", "<form", "<input", "<style", "style="} {
		if strings.Contains(low, bad) {
			t.Errorf("sanitised HTML still has %q:\n%s", bad, p.html)
		}
	}
	for _, good := range []string{"Click", `href="https://example.com/claim"`, `rel="nofollow noreferrer noopener"`, "Claim now"} {
		if !strings.Contains(p.html, good) {
			t.Errorf("sanitised HTML lost %q:\n%s", good, p.html)
		}
	}
	p, _ = parseMail(sampleMail(t, "multipart_attachments.eml", "x@y"))
	if !strings.Contains(p.html, `src="cid:logo@example.net"`) {
		t.Errorf("an image from the message itself was dropped:\n%s", p.html)
	}
}

func TestMalformedMessagesAreRefused(t *testing.T) {
	for name, raw := range map[string]string{
		"not mail":      "hello there",
		"no From":       "To: a@b\r\nSubject: x\r\n\r\nbody",
		"broken header": "From a@b\r\n\r\nbody",
	} {
		if _, err := parseMail([]byte(raw)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
}

// Mail arrives by SMTP with its attachments, which download only through their signed URL, as
// attachments that cannot run in our origin.
func TestInboundAttachmentsAreServedSafely(t *testing.T) {
	srv, _ := mailServer(t)
	c := register(t, srv, "dora")
	addr := c.name + "@" + testMailDomain
	if err := smtpSend(t, srv, "carol@example.net", []string{addr}, uniqueAttachments(t, addr, c.name)); err != nil {
		t.Fatal(err)
	}
	pushed := c.waitPush("EmailReceived", isCmd("EmailReceived"))["Email"].(map[string]any)
	// The push is the summary: attachments described, without URLs; GetEmail has them.
	for _, a := range pushed["Attachments"].([]any) {
		if a.(map[string]any)["URL"] != nil {
			t.Fatalf("a URL in the push: %v", pushed)
		}
	}
	if pushed["AttachmentCount"] != 2.0 || pushed["Text"] != nil || !strings.Contains(pushed["Preview"].(string), "Café at noon?") {
		t.Fatalf("pushed: %v", pushed)
	}
	e := fetchEmail(c, pushed["ID"])
	atts := e["Attachments"].([]any)
	if len(atts) != 2 || !strings.Contains(e["Text"].(string), "Café at noon?") {
		t.Fatalf("received: %v", e)
	}
	var pdf map[string]any
	for _, a := range atts {
		if a.(map[string]any)["Name"] == "report.pdf" {
			pdf = a.(map[string]any)
		}
	}
	if pdf == nil || pdf["Type"] != "application/pdf" {
		t.Fatalf("attachments: %v", atts)
	}
	url := "http://" + srv.addr + pdf["URL"].(string)
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	h := res.Header
	if res.StatusCode != 200 || !strings.HasPrefix(string(body), "%PDF-1.4") ||
		!strings.HasPrefix(h.Get("Content-Disposition"), "attachment") || h.Get("X-Content-Type-Options") != "nosniff" ||
		!strings.Contains(h.Get("Content-Security-Policy"), "sandbox") || h.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("download: %d %v", res.StatusCode, h)
	}
	for name, bad := range map[string]string{
		"forged signature": strings.Replace(url, "sig=", "sig=A", 1),
		"renamed":          strings.Replace(url, "n=report.pdf", "n=report.html", 1),
		"other file":       strings.Replace(url, pdf["ID"].(string), strings.Repeat("A", 22), 1),
		"traversal":        "http://" + srv.addr + "/mail/attachments/..%2F..%2Fetc/passwd",
	} {
		res, err := http.Get(bad)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("%s: %d", name, res.StatusCode)
		}
	}
	// Emptying the Trash deletes the files too.
	c.ok("MarkEmailDeleted", map[string]any{"ID": e["ID"], "Deleted": true})
	c.ok("RemoveDeletedEmails", nil)
	res, err = http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("an attachment of an e-mail removed for good: %d", res.StatusCode)
	}
}

// The SMTP receiver refuses mail for nobody at RCPT and messages over 25 MB, and stores nothing.
func TestSMTPReceiverRefuses(t *testing.T) {
	srv, _ := mailServer(t)
	c := register(t, srv, "erin")
	addr := c.name + "@" + testMailDomain
	msg := sampleMail(t, "latin1.eml", addr)
	for _, to := range []string{"nobody_here@" + testMailDomain, c.name + "@elsewhere.example"} {
		err := smtpSend(t, srv, "x@example.net", []string{to}, msg)
		if err == nil || !strings.Contains(err.Error(), "550") {
			t.Errorf("mail for %s: %v", to, err)
		}
	}
	big := append(append([]byte("From: x@example.net\r\nTo: "+addr+"\r\nSubject: big\r\n\r\n"),
		[]byte(strings.Repeat(strings.Repeat("x", 998)+"\r\n", 26<<20/1000))...), "\r\n"...)
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, big); err == nil || !strings.Contains(err.Error(), "552") {
		t.Errorf("a 26 MB message: %v", err)
	}
	if got := emails(c.ok("GetAllEmails", nil)); len(got) != 0 {
		t.Fatalf("stored: %v", got)
	}
	// …while ordinary mail still arrives.
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, msg); err != nil {
		t.Fatal(err)
	}
	c.waitPush("EmailReceived", isCmd("EmailReceived"))
}
