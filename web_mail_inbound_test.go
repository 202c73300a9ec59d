package main

// Browser test of what inbound mail's checks show in the Mail view: an e-mail whose sender
// could not be verified says so in the list (to screen readers too) and in the reader, one that
// verified does not; a mailbox past its quota says it is full until the Trash is emptied.

import (
	"strings"
	"testing"
)

func TestWebMailSenderAndQuota(t *testing.T) {
	browser := startBrowser(t)
	dns := fakeDNS{}
	cfg := testConfig(t)
	cfg.MailDomain, cfg.SMTPListen, cfg.mailDNS, cfg.MailQuota = testMailDomain, "127.0.0.1:0", dns, 40_000
	srv := startServer(t, cfg)
	p := newPage(t, browser, "http://"+srv.addr, 1280, 800)
	name := uniqueName("ursula")
	p.register(t, name)
	addr := name + "@" + testMailDomain
	p.click(t, "#mail-btn")
	p.waitJS(t, "the empty inbox", textIs("#mail-empty", "No e-mail yet.")+` && document.getElementById('mail-full').hidden`)

	const forged, signed = "Your bank account", "Signed newsletter"
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, plainMail("security@bank.example", addr, strings.ReplaceAll(forged, " ", "_"))); err != nil {
		t.Fatal(err)
	}
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, dkimSigned(t, dns, "news.example", plainMail("editor@news.example", addr, strings.ReplaceAll(signed, " ", "_")))); err != nil {
		t.Fatal(err)
	}
	unverified, verified := strings.ReplaceAll(forged, " ", "_"), strings.ReplaceAll(signed, " ", "_")
	p.waitJS(t, "both listed", mailItem(unverified)+` && `+mailItem(verified))
	p.waitJS(t, "the unverified one marked in the list, for eyes and screen readers",
		mailItem(unverified)+`.querySelector('.mi-unverified') && `+mailItem(unverified)+`.getAttribute('aria-label').includes('(unverified sender)') && `+
			`!`+mailItem(verified)+`.querySelector('.mi-unverified') && !`+mailItem(verified)+`.getAttribute('aria-label').includes('unverified')`)
	p.openMail(t, unverified)
	p.waitJS(t, "the reader's note", `!document.getElementById('mail-unverified').hidden && `+
		`document.getElementById('mail-unverified').getAttribute('role') === 'note' && `+
		`document.getElementById('mail-unverified').textContent.includes('could not confirm that this e-mail comes from security@bank.example')`)
	p.screenshot(t, "mail-unverified.png")
	p.openMail(t, verified)
	p.waitJS(t, "no note for a verified sender", `document.getElementById('mail-unverified').hidden`)

	// Filling the mailbox: the sender is refused, the owner told, and the view says so.
	big := []byte("From: x@example.net\r\nTo: " + addr + "\r\nSubject: big\r\n\r\n" + strings.Repeat("abcdefghij\r\n", 3000) + "\r\n")
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, big); err != nil {
		t.Fatal(err)
	}
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, big); err == nil || !strings.Contains(err.Error(), "552") {
		t.Fatalf("past the quota: %v", err)
	}
	p.waitJS(t, "the full mailbox said, as a status", `!document.getElementById('mail-full').hidden && `+
		`document.getElementById('mail-full').getAttribute('role') === 'status' && `+
		`document.getElementById('mail-full').textContent.startsWith('Your mailbox is full') && `+mailItem(mailFullSubject))
	p.screenshot(t, "mail-full.png")
	// Deleting the big one and emptying the Trash makes room.
	p.openMail(t, "big")
	p.click(t, "#mail-message [data-act=delete]")
	p.folder(t, "trash")
	p.waitJS(t, "in the Trash", mailItem("big"))
	p.click(t, "#mail-empty-trash")
	p.waitVisible(t, "#confirm-dialog")
	p.click(t, "#confirm-yes")
	p.waitJS(t, "room again", `document.getElementById('mail-full').hidden`)
	if err := smtpSend(t, srv, "x@example.net", []string{addr}, big); err != nil {
		t.Fatalf("after emptying the Trash: %v", err)
	}
}
