package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Filling the disk with mail: recipients per message, attachments stored once, the per-sender
// rate and the mailbox quota, through the real SMTP receiver and HTTP endpoint.

// blobRefs is how many e-mails hold the attachment with content.
func blobRefs(t *testing.T, srv *testServer, content string) (id string, refs int64) {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	id = base64.RawURLEncoding.EncodeToString(sum[:16])
	err := srv.db.pool.QueryRow(context.Background(), "SELECT refs FROM mail_blobs WHERE id = $1", id).Scan(&refs)
	if err != nil {
		return id, 0
	}
	return id, refs
}

// mailFiles counts the attachment files under -files-dir.
func mailFiles(t *testing.T, srv *testServer) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(filepath.Join(srv.cfg.FilesDir, "mail"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// One message to several mailboxes, and again to one of them, stores each attachment once;
// the file goes when the last e-mail holding it is removed for good or its owner deleted.
func TestAttachmentsAreStoredOnce(t *testing.T) {
	srv, _ := mailServer(t)
	a, b := register(t, srv, "sharea"), register(t, srv, "shareb")
	addrA, addrB := a.name+"@"+testMailDomain, b.name+"@"+testMailDomain
	msg := uniqueAttachments(t, addrA, a.name)
	for _, to := range [][]string{{addrA, addrB}, {addrA}} {
		if err := smtpSend(t, srv, "carol@example.net", to, msg); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*client{a, a, b} {
		c.waitPush("EmailReceived", isCmd("EmailReceived"))
	}
	pdf := samplePDF(a.name)
	id, refs := blobRefs(t, srv, pdf)
	if n := mailFiles(t, srv); refs != 3 || n != 2 {
		t.Fatalf("three copies of two attachments: %d files, the PDF held %d times", n, refs)
	}
	got := emails(b.ok("GetAllEmails", nil))
	var url string
	for _, att := range fetchEmail(b, got[0]["ID"])["Attachments"].([]any) {
		if att.(map[string]any)["Name"] == "report.pdf" {
			url = "http://" + srv.addr + att.(map[string]any)["URL"].(string)
		}
	}
	download := func() (int, string) {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	// a removes both of hers for good: b's copy still downloads.
	for _, e := range emails(a.ok("GetAllEmails", nil)) {
		a.ok("MarkEmailDeleted", map[string]any{"ID": e["ID"], "Deleted": true})
	}
	a.ok("RemoveDeletedEmails", nil)
	if _, refs := blobRefs(t, srv, pdf); refs != 1 {
		t.Fatalf("after a's two copies went: held %d times", refs)
	}
	if code, body := download(); code != 200 || body != pdf {
		t.Fatalf("b's copy after a's went: %d %q", code, body)
	}
	// b deletes the account: the file and its count go.
	b.ok("DeleteUser", map[string]any{"password": testPassword})
	if _, refs := blobRefs(t, srv, pdf); refs != 0 {
		t.Fatalf("after the last holder went: held %d times", refs)
	}
	if _, err := os.Stat(srv.db.blobPath(id)); !os.IsNotExist(err) {
		t.Fatalf("the file of an attachment nobody holds: %v", err)
	}
	if code, _ := download(); code != http.StatusNotFound {
		t.Fatalf("download after the last holder went: %d", code)
	}
}

// At most 50 recipients per message on every way in: SMTP's 51st RCPT is refused, and over
// HTTP 51 ?to= or 51 of our addresses in the headers refuse the message.
func TestAtMost50RecipientsPerMessage(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.SMTPListen, cfg.InboundToken = testMailDomain, "127.0.0.1:0", testInboundToken
	srv := startServer(t, cfg)
	c := register(t, srv, "many")
	addr := c.name + "@" + testMailDomain
	var rcpts []string
	q := url.Values{}
	for i := 0; i < 50; i++ {
		rcpts = append(rcpts, addr)
		q.Add("to", addr)
	}
	q.Add("to", addr)
	msg := plainMail("x@example.net", strings.Join(append(rcpts, addr), ", "), "many")
	if code := postMail(t, srv, "/inbound/email?"+q.Encode(), "message/rfc822", msg, withToken); code != http.StatusBadRequest {
		t.Errorf("51 ?to=: %d", code)
	}
	if code := postMail(t, srv, "/inbound/email", "message/rfc822", msg, withToken); code != http.StatusBadRequest {
		t.Errorf("51 of our addresses in To: %d", code)
	}
	err := smtpSend(t, srv, "x@example.net", append(rcpts, addr), msg)
	if err == nil || !strings.Contains(err.Error(), "452") {
		t.Errorf("51 RCPT: %v", err)
	}
	if got := emails(c.ok("GetAllEmails", nil)); len(got) != 0 {
		t.Fatalf("stored %d", len(got))
	}
	// 50 are fine (once each: the same mailbox twice is one delivery).
	if err := smtpSend(t, srv, "x@example.net", rcpts, msg); err != nil {
		t.Fatal(err)
	}
	c.waitPush("EmailReceived", isCmd("EmailReceived"))
}

// One sender address may make -inbound-mails-per-hour deliveries an hour, over SMTP and HTTP;
// another sender is not held back by it.
func TestInboundSenderRate(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.SMTPListen, cfg.InboundToken, cfg.InboundPerHour = testMailDomain, "127.0.0.1:0", testInboundToken, 3
	srv := startServer(t, cfg)
	c := register(t, srv, "rated")
	addr := c.name + "@" + testMailDomain
	for i := 0; i < 3; i++ {
		if err := smtpSend(t, srv, "spammer@example.net", []string{addr}, plainMail("spammer@example.net", addr, "s")); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if err := smtpSend(t, srv, "spammer@example.net", []string{addr}, plainMail("spammer@example.net", addr, "s")); err == nil || !strings.Contains(err.Error(), "450") {
		t.Fatalf("a fourth message within the hour: %v", err)
	}
	if code := postMail(t, srv, "/inbound/email?from=spammer@example.net&to="+addr, "message/rfc822", plainMail("spammer@example.net", addr, "s"), withToken); code != http.StatusTooManyRequests {
		t.Fatalf("the same sender over HTTP: %d", code)
	}
	if err := smtpSend(t, srv, "friend@example.org", []string{addr}, plainMail("friend@example.org", addr, "f")); err != nil {
		t.Fatalf("another sender: %v", err)
	}
}

// A mailbox holds -mail-quota bytes: past it mail is refused (SMTP 552 at DATA, then at RCPT
// once full; HTTP 413), the owner is told once, GetAllEmails says so, and emptying the Trash
// makes room again (and a later refusal tells the owner again).
func TestMailboxQuota(t *testing.T) {
	cfg := testConfig(t)
	cfg.MailDomain, cfg.SMTPListen, cfg.InboundToken, cfg.MailQuota = testMailDomain, "127.0.0.1:0", testInboundToken, 40_000
	srv := startServer(t, cfg)
	c := register(t, srv, "full")
	addr := c.name + "@" + testMailDomain
	big := func(subject string, n int) []byte {
		return []byte("From: x@example.net\r\nTo: " + addr + "\r\nSubject: " + subject + "\r\n\r\n" + strings.Repeat("abcdefghij\r\n", n/12) + "\r\n")
	}
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, big("first", 30_000)); err != nil {
		t.Fatal(err)
	}
	c.waitPush("first", isCmd("EmailReceived"))
	if rep := c.ok("GetAllEmails", nil); rep["MailboxFull"] != false || rep["MailQuota"] != float64(40_000) || rep["MailUsed"].(float64) < 30_000 {
		t.Fatalf("a mailbox with room: %v %v %v", rep["MailboxFull"], rep["MailQuota"], rep["MailUsed"])
	}
	// To two mailboxes, one of which cannot take it: refused for both.
	d := register(t, srv, "roomy")
	if err := smtpSend(t, srv, "x@example.net", []string{d.name + "@" + testMailDomain, addr}, big("second", 30_000)); err == nil || !strings.Contains(err.Error(), "552") {
		t.Fatalf("past the quota over SMTP: %v", err)
	}
	if got := emails(d.ok("GetAllEmails", nil)); len(got) != 0 {
		t.Fatalf("the other recipient got a message refused for one: %v", got)
	}
	notice := c.waitPush("the notice", func(m map[string]any) bool {
		return m["cmd"] == "EmailReceived" && m["Email"].(map[string]any)["Subject"] == mailFullSubject
	})["Email"].(map[string]any)
	if !strings.Contains(fetchEmail(c, notice["ID"])["Text"].(string), "39 KiB") || notice["Unverified"] == true || notice["Auth"] != "local" {
		t.Fatalf("the notice: %v", notice)
	}
	if code := postMail(t, srv, "/inbound/email?to="+addr, "message/rfc822", big("third", 30_000), withToken); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("past the quota over HTTP: %d", code)
	}
	// Small mail still fits; then the mailbox is full and RCPT says so.
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, big("small", 7_000)); err != nil {
		t.Fatalf("mail that fits: %v", err)
	}
	if err := smtpSend(t, srv, "y@example.net", []string{addr}, big("more", 3_000)); err == nil || !strings.Contains(err.Error(), "552") {
		t.Fatalf("to a full mailbox: %v", err)
	}
	rep := c.ok("GetAllEmails", nil)
	notices := 0
	for _, e := range emails(rep) {
		if e["Subject"] == mailFullSubject {
			notices++
		}
	}
	if notices != 1 || rep["MailboxFull"] != true {
		t.Fatalf("%d notices, MailboxFull %v", notices, rep["MailboxFull"])
	}
	// Emptying the Trash makes room, and the next time it fills the owner hears again.
	for _, e := range emails(rep) {
		if e["Subject"] != mailFullSubject {
			c.ok("MarkEmailDeleted", map[string]any{"ID": e["ID"], "Deleted": true})
		}
	}
	c.ok("RemoveDeletedEmails", nil)
	if rep := c.ok("GetAllEmails", nil); rep["MailboxFull"] != false {
		t.Fatalf("after emptying the Trash: %v", rep["MailboxFull"])
	}
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, big("again", 30_000)); err != nil {
		t.Fatalf("after emptying the Trash: %v", err)
	}
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, big("over", 30_000)); err == nil {
		t.Fatal("past the quota again: accepted")
	}
	notices = 0
	for _, e := range emails(c.ok("GetAllEmails", nil)) {
		if e["Subject"] == mailFullSubject {
			notices++
		}
	}
	if notices != 2 {
		t.Fatalf("%d notices after filling up twice", notices)
	}
}
