package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"os"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
	"pingedchat/internal/smtptest"
)

// Tests of the mailbox commands, driven over a real socket, with mail arriving through the
// built-in SMTP receiver and leaving through internal/smtptest as the relay.

const testMailDomain = "chat.example.org"

// mailServer starts a server with the SMTP receiver on loopback and a local relay.
func mailServer(t *testing.T) (*testServer, *smtptest.Server) {
	t.Helper()
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	cfg.SMTPListen = "127.0.0.1:0"
	cfg.MailDomain = testMailDomain
	return startServer(t, cfg), relay
}

// sampleMail reads testdata/mail/name with {TO} replaced.
func sampleMail(t *testing.T, name, to string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/mail/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("{TO}"), []byte(to))
}

// samplePDF is a unique PDF, so that a test's attachment is not shared with another test's
// (attachments are stored once per content, and the tests share one database).
func samplePDF(tag string) string { return "%PDF-1.4\n% " + tag + "\n%%EOF\n" }

// uniqueAttachments is multipart_attachments.eml for to, its PDF samplePDF(tag).
func uniqueAttachments(t *testing.T, to, tag string) []byte {
	t.Helper()
	old := "JVBERi0xLjQKJSBhIHRpbnkgdGVzdCBkb2N1bWVudAoxIDAgb2JqPDw+PmVuZG9iagp0cmFpbGVy\nPDw+PgolJUVPRgo=\n"
	b := sampleMail(t, "multipart_attachments.eml", to)
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	if !bytes.Contains(b, []byte(old)) {
		t.Fatal("multipart_attachments.eml's PDF changed")
	}
	return bytes.Replace(b, []byte(old), []byte(base64.StdEncoding.EncodeToString([]byte(samplePDF(tag)))+"\n"), 1)
}

// smtpSend hands one message to the server's SMTP receiver and returns its answer.
func smtpSend(t *testing.T, srv *testServer, from string, to []string, msg []byte) error {
	t.Helper()
	c, err := smtp.Dial(srv.SMTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.SendMail(from, to, bytes.NewReader(msg))
}

// emails returns the e-mails of a GetAllEmails reply.
func emails(rep map[string]any) []map[string]any {
	var out []map[string]any
	list, _ := rep["Emails"].([]any)
	for _, e := range list {
		out = append(out, e.(map[string]any))
	}
	return out
}

// fetchEmail reads one e-mail whole (GetEmail).
func fetchEmail(c *client, id any) map[string]any {
	c.t.Helper()
	return c.ok("GetEmail", map[string]any{"ID": id})["Email"].(map[string]any)
}

func TestMailboxCommands(t *testing.T) {
	srv, relay := mailServer(t)
	alice := register(t, srv, "alice")
	other := login(t, srv, alice.name)
	addr := alice.name + "@" + testMailDomain

	rep := alice.ok("GetAllEmails", nil)
	if rep["MailAddress"] != addr || len(emails(rep)) != 0 || rep["More"] != false {
		t.Fatalf("empty mailbox: %v", rep)
	}
	if err := smtpSend(t, srv, "carol@example.net", []string{addr}, sampleMail(t, "latin1.eml", addr)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{alice, other} {
		p := c.waitPush("EmailReceived", isCmd("EmailReceived"))
		e := p["Email"].(map[string]any)
		if e["Subject"] != "Grüße aus Köln" || e["Unread"] != true || e["Folder"] != "inbox" {
			t.Fatalf("EmailReceived: %v", e)
		}
	}
	rep = alice.ok("GetAllEmails", nil)
	list := emails(rep)
	if len(list) != 1 {
		t.Fatalf("mailbox: %v", rep)
	}
	id, since := list[0]["ID"], rep["M_time"].(string)
	if v := alice.ok("GetUserView", nil); v["UnreadEmails"] != 1.0 || v["MailAddress"] != addr {
		t.Fatalf("user view: unread %v, address %v", v["UnreadEmails"], v["MailAddress"])
	}

	// Flags: answered with the e-mail, told to the other session, and seen by a sync since.
	e := alice.ok("MarkEmailUnread", map[string]any{"ID": id, "Unread": false})["Email"].(map[string]any)
	if e["Unread"] != nil && e["Unread"] != false {
		t.Fatalf("MarkEmailUnread: %v", e)
	}
	other.waitPush("EmailUpdated", isCmd("EmailUpdated"))
	alice.ok("MarkEmailStarred", map[string]any{"ID": id, "Starred": true})
	changed := emails(other.ok("GetAllEmails", map[string]any{"M_time": since}))
	if len(changed) != 1 || changed[0]["Starred"] != true {
		t.Fatalf("changes since %s: %v", since, changed)
	}
	alice.fails("MarkEmailStarred", map[string]any{"ID": 999999, "Starred": true}, "No such e-mail.")
	alice.fails("MarkEmailStarred", map[string]any{"ID": id}, "required")

	// Someone else's mailbox is out of reach.
	mallory := register(t, srv, "mallory")
	mallory.fails("MarkEmailDeleted", map[string]any{"ID": id, "Deleted": true}, "No such e-mail.")
	mallory.fails("GetEmail", map[string]any{"ID": id}, "No such e-mail.")
	mallory.fails("GetEmail", nil, "ID is required.")
	if e := fetchEmail(alice, id); !strings.Contains(e["Text"].(string), "Grüße aus Köln, à bientôt!") || e["Subject"] != "Grüße aus Köln" {
		t.Fatalf("GetEmail: %v", e)
	}
	if got := emails(mallory.ok("GetAllEmails", nil)); len(got) != 0 {
		t.Fatalf("mallory sees %v", got)
	}

	// Drafts are created and updated; sending one removes it and keeps the sent copy.
	d := alice.ok("AddNewDraft", map[string]any{"To": []string{"bob@example.com"}, "Subject": "Draft"})["Email"].(map[string]any)
	if d["Folder"] != "drafts" {
		t.Fatalf("draft: %v", d)
	}
	d = alice.ok("AddNewDraft", map[string]any{"ID": d["ID"], "To": []string{"Bob <bob@example.com>"}, "Subject": "Hello Bob", "Text": "Hi!\nSee you."})["Email"].(map[string]any)
	if d["Preview"] != "Hi! See you." || d["Text"] != nil || fetchEmail(alice, d["ID"])["Text"] != "Hi!\nSee you." {
		t.Fatalf("the draft updated: %v", d)
	}
	sent := alice.ok("SendEmailMessage", map[string]any{"ID": d["ID"], "To": []string{"Bob <bob@example.com>"},
		"Subject": "Hello Bob", "Text": "Hi!\nSee you.", "InReplyTo": id})["Email"].(map[string]any)
	if sent["Folder"] != "sent" || sent["MessageID"] == "" || sent["InReplyTo"] != "<latin1@example.de>" {
		t.Fatalf("sent copy: %v", sent)
	}
	msgs, err := relay.Wait(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	data := string(m.Data)
	for _, want := range []string{"From: \"" + alice.name + "\" <" + addr + ">", "To: \"Bob\" <bob@example.com>",
		"Subject: Hello Bob", "In-Reply-To: <latin1@example.de>", "Message-ID: " + sent["MessageID"].(string), "Date: "} {
		if !strings.Contains(data, want) {
			t.Fatalf("relayed mail lacks %q:\n%s", want, data)
		}
	}
	if m.From != addr || len(m.To) != 1 || m.To[0] != "bob@example.com" {
		t.Fatalf("envelope: %s → %v", m.From, m.To)
	}
	all := emails(alice.ok("GetAllEmails", nil))
	folders := map[string]int{}
	for _, e := range all {
		folders[e["Folder"].(string)]++
	}
	if folders["drafts"] != 0 || folders["sent"] != 1 || folders["inbox"] != 1 {
		t.Fatalf("folders after sending the draft: %v", folders)
	}
	alice.fails("SendEmailMessage", map[string]any{"To": []string{"not an address"}, "Subject": "x"}, "Invalid address")
	alice.fails("SendEmailMessage", map[string]any{"Subject": "x"}, "Add a recipient.")
	alice.fails("SendEmailMessage", map[string]any{"To": []string{"a@b.example"}, "Subject": "a\r\nBcc: x@y"}, "one line")

	// Trash and empty trash: removed for good, and other devices learn of it by syncing.
	since = alice.ok("GetAllEmails", nil)["M_time"].(string)
	alice.ok("MarkEmailDeleted", map[string]any{"ID": id, "Deleted": true})
	alice.ok("RemoveDeletedEmails", nil)
	changed = emails(other.ok("GetAllEmails", map[string]any{"M_time": since}))
	last := changed[len(changed)-1]
	if last["ID"] != id || last["Removed"] != true || last["Subject"] != nil {
		t.Fatalf("removed e-mail as synced: %v", changed)
	}
	for _, e := range emails(alice.ok("GetAllEmails", nil)) {
		if e["ID"] == id {
			t.Fatalf("removed e-mail still listed: %v", e)
		}
	}
	alice.fails("GetEmail", map[string]any{"ID": id}, "No such e-mail.")
}

// Pages of 50, newest first, and an incremental sync that pages forward with More.
func TestMailboxPaging(t *testing.T) {
	srv, _ := mailServer(t)
	alice := register(t, srv, "alice")
	addr := alice.name + "@" + testMailDomain
	for i := range 55 {
		msg := "From: x@example.net\r\nTo: " + addr + "\r\nSubject: n" + string(rune('A'+i%26)) + "\r\n\r\nbody\r\n"
		if err := smtpSend(t, srv, "x@example.net", []string{addr}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	first := alice.ok("GetAllEmails", nil)
	page := emails(first)
	if len(page) != 50 || first["More"] != true || page[0]["ID"].(float64) < page[49]["ID"].(float64) {
		t.Fatalf("first page: %d, More %v", len(page), first["More"])
	}
	rest := emails(alice.ok("GetAllEmails", map[string]any{"BeforeID": page[49]["ID"]}))
	if len(rest) != 5 {
		t.Fatalf("second page: %d", len(rest))
	}
	sync := alice.ok("GetAllEmails", map[string]any{"M_time": "2000-01-01T00:00:00.000000Z"})
	if len(emails(sync)) != 50 || sync["More"] != true {
		t.Fatalf("sync page: %d More %v", len(emails(sync)), sync["More"])
	}
	sync = alice.ok("GetAllEmails", map[string]any{"M_time": sync["M_time"]})
	if len(emails(sync)) != 5 || sync["More"] != false {
		t.Fatalf("second sync page: %d More %v", len(emails(sync)), sync["More"])
	}
}

// Without -smtp-url, sending answers a clear error and the mailbox still works.
func TestMailWithoutRelay(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c := register(t, srv, "norelay")
	c.fails("SendEmailMessage", map[string]any{"To": []string{"a@example.com"}}, "no -smtp-url")
	c.fails("SendEmailInvite", map[string]any{"email": "a@example.com"}, "no -smtp-url")
	c.ok("AddNewDraft", map[string]any{"Subject": "kept"})
	if got := emails(c.ok("GetAllEmails", nil)); len(got) != 1 {
		t.Fatalf("drafts without a relay: %v", got)
	}
}

// Invitations go by e-mail, or by SMS through the carrier's gateway, with a link here.
func TestSendEmailInvite(t *testing.T) {
	srv, relay := mailServer(t)
	c := register(t, srv, "inviter")
	c.ok("SendEmailInvite", map[string]any{"email": "friend@example.com", "Message": "Join us!"})
	c.ok("SendEmailInvite", map[string]any{"phone": "+15551234567", "carrier": "tmobile"})
	c.fails("SendEmailInvite", map[string]any{"phone": "+15551234567", "carrier": "nope"}, "Unknown carrier")
	c.fails("SendEmailInvite", nil, "Give an e-mail address")
	msgs, err := relay.Wait(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	byRcpt := map[string]string{}
	for _, m := range msgs {
		byRcpt[m.To[0]] = string(m.Data)
	}
	if d := byRcpt["friend@example.com"]; !strings.Contains(d, "Join us!") || !strings.Contains(d, "http://"+testMailDomain+"/") ||
		!strings.Contains(d, c.name+" invites you") {
		t.Fatalf("invitation e-mail:\n%s", d)
	}
	if d := byRcpt["5551234567@tmomail.net"]; !strings.Contains(d, "invites you to pingedchat") {
		t.Fatalf("invitation SMS: %v", byRcpt)
	}
}

// Deleting a user deletes their mailbox and attachment files.
func TestDeleteUserDeletesMailbox(t *testing.T) {
	srv, _ := mailServer(t)
	c := register(t, srv, "leaver")
	addr := c.name + "@" + testMailDomain
	if err := smtpSend(t, srv, "carol@example.net", []string{addr}, uniqueAttachments(t, addr, c.name)); err != nil {
		t.Fatal(err)
	}
	c.waitPush("EmailReceived", isCmd("EmailReceived"))
	sum := sha256.Sum256([]byte(samplePDF(c.name)))
	pdf := srv.db.blobPath(base64.RawURLEncoding.EncodeToString(sum[:16]))
	if _, err := os.Stat(pdf); err != nil {
		t.Fatalf("attachments were not stored: %v", err)
	}
	c.ok("DeleteUser", map[string]any{"password": testPassword})
	var n int
	if err := srv.db.pool.QueryRow(context.Background(), "SELECT count(*) FROM mail WHERE owner = $1", upperName(c.name)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("mail rows left: %d (%v)", n, err)
	}
	if _, err := os.Stat(pdf); !os.IsNotExist(err) {
		t.Fatalf("attachment file left: %v", err)
	}
}
