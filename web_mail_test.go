package main

// Browser test of the web client's Mail view: mail delivered to the built-in SMTP receiver shows
// up live, is read (text as text, hostile HTML only in a sandboxed frame, attachments as
// downloads), starred, deleted and the Trash emptied; a reply is composed with its draft saved
// while typing and sent through the local relay; an invitation goes out by e-mail; the phone
// layout walks list → message → back. One server (mailServer) and one browser; a Go client logged
// in as the same user is the "other device" that sees the drafts and flags.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// mailItem is an expression for the list entry (a button) of the e-mail with this subject.
func mailItem(subject string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#mail-list .mail-item')].find((b) => b.querySelector('.mi-subject').textContent === %s)`, js(subject))
}

// folder clicks a folder of the mail view.
func (p *page) folder(t testing.TB, name string) {
	t.Helper()
	p.click(t, fmt.Sprintf(`#mail-folders [data-folder=%s]`, name))
	p.waitJS(t, "folder "+name, fmt.Sprintf(`document.getElementById('mail-pane').dataset.folder === %s`, js(name)))
}

// openMail clicks the e-mail with this subject and waits for it in the reader.
func (p *page) openMail(t testing.TB, subject string) {
	t.Helper()
	p.waitJS(t, "e-mail "+subject+" listed", mailItem(subject))
	p.eval(t, mailItem(subject)+".click()", nil)
	p.waitJS(t, "e-mail "+subject+" open", `!document.getElementById('mail-message').hidden && `+textIs("#mail-subject", subject))
}

// emailWith finds, through a Go client, the e-mail with this subject (nil if none).
func emailWith(c *client, subject string) map[string]any {
	for _, e := range emails(c.ok("GetAllEmails", nil)) {
		if e["Subject"] == subject {
			return e
		}
	}
	return nil
}

func TestWebMail(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	srv, relay := mailServer(t)
	base := "http://" + srv.addr
	alice := newPage(t, browser, base, 1280, 800)
	name := uniqueName("alice")
	alice.register(t, name)
	addr := name + "@" + testMailDomain
	other := login(t, srv, name) // alice's other device
	const report, hostile = "Quarterly report ✓", "You won!"

	if !t.Run("inbox", func(t *testing.T) {
		alice.click(t, "#mail-btn")
		alice.waitJS(t, "the empty inbox", `document.getElementById('chat-view').dataset.view === 'mail' && `+
			textIs("#mail-empty", "No e-mail yet.")+` && `+textIs("#mail-address", addr))
		for _, f := range []string{"multipart_attachments.eml", "hostile.eml"} {
			if err := smtpSend(t, srv, "sender@example.net", []string{addr}, sampleMail(t, f, addr)); err != nil {
				t.Fatal(err)
			}
		}
		alice.waitJS(t, "both e-mails live, unread", `document.querySelectorAll('#mail-list .mail-item.unread').length === 2 && `+
			textIs("#mail-badge", "2")+` && `+textIs("#mail-folders [data-folder=inbox] .count", "2"))
		alice.screenshot(t, "mail-inbox.png")
	}) {
		return
	}

	if !t.Run("read", func(t *testing.T) {
		alice.openMail(t, report)
		alice.waitJS(t, "marked read", textIs("#mail-badge", "1")+` && !`+mailItem(report)+`.classList.contains('unread')`)
		other.waitPush("the read flag on the other device", func(p map[string]any) bool {
			e, _ := p["Email"].(map[string]any)
			return p["cmd"] == "EmailUpdated" && e["Subject"] == report && e["Unread"] == nil
		})
		alice.waitJS(t, "sender and recipients", `[...document.querySelectorAll('#mail-headers dd')].map((d) => d.textContent).join('|')`+
			fmt.Sprintf(`.startsWith(%s)`, js("Carol Example <carol@example.net>|"+addr+"|someone@example.net|")))
		// The download links come with the body (GetEmail), a moment after the headers.
		alice.waitJS(t, "the attachments' links", `document.querySelectorAll('#mail-attachments a').length === 2`)
		var atts []string
		alice.eval(t, `[...document.querySelectorAll('#mail-attachments a')].map((a) => a.getAttribute('download') + ' ' + new URL(a.href).pathname + ' ' + a.textContent)`, &atts)
		if len(atts) != 2 || !strings.Contains(atts[0], " /mail/attachments/") {
			t.Errorf("attachment links: %q", atts)
		}
		// Its HTML is shown in the frame; the plain text on demand, as text.
		alice.waitJS(t, "the HTML in a frame, with its own image inline", `(document.querySelector('#mail-content iframe.mail-html') || {srcdoc: ''}).srcdoc`+
			`.includes('<img src="data:image/png;base64,iVBORw0KGgo')`)
		alice.click(t, "#mail-plain-btn")
		alice.waitJS(t, "the plain text", `(document.querySelector('#mail-content .mail-text') || {}).textContent.includes('Café at noon?\n\nCarol')`)

		alice.openMail(t, hostile)
		var frame struct {
			Sandbox, Srcdoc string
			Reachable       bool
			Stolen          string
		}
		alice.waitJS(t, "the hostile HTML in a frame, loaded", `(document.querySelector('#mail-content iframe.mail-html') || {dataset: {}}).dataset.loaded && `+
			`!`+mailItem(hostile)+`.classList.contains('unread')`)
		alice.eval(t, `(() => { const f = document.querySelector('#mail-content iframe.mail-html');
			let reachable = false; try { reachable = !!f.contentDocument; } catch (e) {}
			return {Sandbox: f.getAttribute('sandbox'), Srcdoc: f.srcdoc, Reachable: reachable, Stolen: typeof window.steal}; })()`, &frame)
		if frame.Sandbox != "allow-popups allow-popups-to-escape-sandbox" || frame.Reachable || frame.Stolen != "undefined" {
			t.Errorf("the frame: sandbox %q, reachable from the page %v, steal %s", frame.Sandbox, frame.Reachable, frame.Stolen)
		}
		if !strings.Contains(frame.Srcdoc, `content="default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'"`) ||
			strings.Contains(strings.ToLower(frame.Srcdoc), "<script") || !strings.Contains(frame.Srcdoc, "Claim now") {
			t.Errorf("the frame's document: %s", frame.Srcdoc)
		}
		alice.screenshot(t, "mail-html.png")

		// The frame itself runs nothing, even HTML that the server would never let through:
		// a script there would tell the page by postMessage, which crosses the sandbox.
		alice.eval(t, `window.addEventListener('message', (e) => (window.ranInFrame = String(e.data)));
			pingedchat.mail.apply({ID: 999999, M_time: '9999', Folder: 'inbox', Subject: 'Raw',
				HTML: '<script>parent.postMessage("script", "*")</script><img src="data:," onerror="parent.postMessage(\'onerror\', \'*\')">'});
			pingedchat.mail.open(999999)`, nil)
		alice.waitJS(t, "the raw HTML loaded", `document.querySelector('#mail-content iframe.mail-html').dataset.loaded`)
		alice.openMail(t, report) // a round trip later, any message would have arrived
		var ran string
		alice.eval(t, `String(window.ranInFrame)`, &ran)
		if ran != "undefined" {
			t.Errorf("a script ran in the e-mail's frame: %v", ran)
		}
		alice.eval(t, `pingedchat.mail.apply({ID: 999999, M_time: '99999', Removed: true}); pingedchat.mail.render()`, nil)
	}) {
		return
	}

	if !t.Run("star, delete, empty trash", func(t *testing.T) {
		alice.openMail(t, hostile)
		alice.click(t, "#mail-message [data-act=star]")
		alice.waitJS(t, "starred", textIs("#mail-message [data-act=star]", "Unstar"))
		alice.folder(t, "starred")
		alice.waitJS(t, "in Starred", `document.querySelectorAll('#mail-list .mail-item').length === 1 && `+mailItem(hostile))
		if e := emailWith(other, hostile); e["Starred"] != true {
			t.Errorf("the server's copy: %v", e)
		}
		alice.openMail(t, hostile)
		alice.click(t, "#mail-message [data-act=delete]")
		alice.waitJS(t, "gone from Starred", `!`+mailItem(hostile))
		alice.folder(t, "trash")
		alice.waitJS(t, "in the Trash", mailItem(hostile)+` && !document.getElementById('mail-trash-bar').hidden`)
		alice.click(t, "#mail-empty-trash")
		alice.waitVisible(t, "#confirm-dialog")
		alice.click(t, "#confirm-yes")
		alice.waitJS(t, "the Trash emptied", textIs("#mail-empty", "The Trash is empty.")+` && !`+mailItem(hostile))
		if e := emailWith(other, hostile); e != nil {
			t.Errorf("still on the server: %v", e)
		}
	}) {
		return
	}

	if !t.Run("reply with a draft", func(t *testing.T) {
		alice.folder(t, "inbox")
		alice.openMail(t, report)
		alice.click(t, "#mail-message [data-act=reply]")
		alice.waitVisible(t, "#compose-dialog")
		var f struct{ To, Subject, Text string }
		alice.eval(t, `({To: document.getElementById('compose-to').value, Subject: document.getElementById('compose-subject').value,
			Text: document.getElementById('compose-text').value})`, &f)
		if f.To != "carol@example.net" || f.Subject != "Re: "+report || !strings.Contains(f.Text, "\n> the report is attached. Café at noon?\n") {
			t.Errorf("the reply as prepared: %+v", f)
		}
		alice.typeInto(t, "#compose-text", "Yes, see you there.")
		alice.waitJS(t, "the draft saved", textIs("#compose-state", "Draft saved."))
		// Pushes carry the draft's summary (its preview); its text is GetEmail's.
		draft := other.waitPush("the draft on the other device", func(p map[string]any) bool {
			e, _ := p["Email"].(map[string]any)
			text, _ := e["Preview"].(string)
			return p["cmd"] == "EmailUpdated" && e["Folder"] == "drafts" && strings.HasPrefix(text, "Yes, see you there. On ")
		})["Email"].(map[string]any)
		alice.typeInto(t, "#compose-text", " Bring the slides.")
		updated := other.waitPush("the draft updated", func(p map[string]any) bool {
			e, _ := p["Email"].(map[string]any)
			text, _ := e["Preview"].(string)
			return p["cmd"] == "EmailUpdated" && strings.HasPrefix(text, "Yes, see you there. Bring the slides.")
		})["Email"].(map[string]any)
		if updated["ID"] != draft["ID"] {
			t.Errorf("a second draft (%v) instead of updating the first (%v)", updated["ID"], draft["ID"])
		}
		if text, _ := fetchEmail(other, draft["ID"])["Text"].(string); !strings.HasPrefix(text, "Yes, see you there. Bring the slides.\n") {
			t.Errorf("the draft's text: %q", text)
		}
		alice.screenshot(t, "mail-compose.png")
		// Closed, the draft waits in Drafts; opened from there, it is edited and sent as it is.
		alice.click(t, "#compose-form .actions [data-close]")
		alice.folder(t, "drafts")
		alice.waitJS(t, "the draft listed", mailItem("Re: "+report)+` && `+textIs("#mail-folders [data-folder=drafts] .count", "1"))
		alice.eval(t, mailItem("Re: "+report)+".click()", nil)
		alice.waitJS(t, "the draft in the composer", `document.getElementById('compose-dialog').open && `+textIs("#compose-title", "Draft")+
			` && document.getElementById('compose-text').value.startsWith('Yes, see you there. Bring the slides.\n')`)
		alice.click(t, "#compose-form button[type=submit]")
		alice.waitJS(t, "sent or refused", `!document.getElementById('compose-dialog').open || document.querySelector('#compose-form .form-error').textContent !== ''`)
		var refused string
		alice.eval(t, `document.getElementById('compose-dialog').open ? document.querySelector('#compose-form .form-error').textContent : ''`, &refused)
		if refused != "" {
			t.Fatalf("sending the draft: %s", refused)
		}
		msgs, err := relay.Wait(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		data := string(msgs[0].Data)
		if msgs[0].To[0] != "carol@example.net" || !strings.Contains(data, "In-Reply-To: <report-1@example.net>") ||
			!strings.Contains(data, "Yes, see you there. Bring the slides.") {
			t.Errorf("relayed reply to %v:\n%s", msgs[0].To, data)
		}
		alice.folder(t, "drafts")
		alice.waitJS(t, "no draft left", textIs("#mail-empty", "No drafts."))
		alice.folder(t, "sent")
		alice.waitJS(t, "the sent copy", mailItem("Re: "+report))
	}) {
		return
	}

	if !t.Run("invite", func(t *testing.T) {
		alice.click(t, "#mail-invite-btn")
		alice.waitVisible(t, "#invite-dialog")
		alice.typeInto(t, "#invite-email", "friend@example.com")
		alice.typeInto(t, "#invite-message", "Come and chat!")
		alice.click(t, "#invite-form button[type=submit]")
		alice.waitJS(t, "invited", `!document.getElementById('invite-dialog').open`)
		msgs, err := relay.Wait(t.Context(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if m := msgs[1]; m.To[0] != "friend@example.com" || !strings.Contains(string(m.Data), "Come and chat!") {
			t.Errorf("invitation to %v:\n%s", m.To, m.Data)
		}
	}) {
		return
	}

	if !t.Run("sync after a reconnect", func(t *testing.T) {
		alice.folder(t, "inbox")
		alice.setNetwork(t, true, nil)
		alice.waitJS(t, "offline", `document.body.dataset.conn === 'offline'`)
		// Missed while offline: new mail, and a flag set on the other device.
		if err := smtpSend(t, srv, "juergen@example.de", []string{addr}, sampleMail(t, "latin1.eml", addr)); err != nil {
			t.Fatal(err)
		}
		other.waitPush("the new mail on the other device", isCmd("EmailReceived"))
		other.ok("MarkEmailStarred", map[string]any{"ID": emailWith(other, report)["ID"], "Starred": true})
		alice.setNetwork(t, false, nil)
		alice.waitJS(t, "online again", `document.body.dataset.conn === 'online'`)
		alice.waitJS(t, "the missed mail and flag synced", mailItem("Grüße aus Köln")+` && `+mailItem(report)+
			`.querySelector('.mi-flags').textContent === '★' && `+textIs("#mail-badge", "1"))
		alice.openMail(t, "Grüße aus Köln")
		alice.waitJS(t, "read", `!document.getElementById('mail-badge').textContent || document.getElementById('mail-badge').hidden`)
	}) {
		return
	}

	t.Run("phone layout", func(t *testing.T) {
		phone := newPage(t, browser, base, 390, 844)
		phone.logIn(t, name, testPassword)
		phone.click(t, "#mail-btn")
		phone.waitJS(t, "the mail list alone", `document.getElementById('sidebar').offsetParent === null && `+mailItem(report))
		// Marked unread on the other device: both browsers follow.
		other.ok("MarkEmailUnread", map[string]any{"ID": emailWith(other, report)["ID"], "Unread": true})
		for _, p := range []*page{alice, phone} {
			p.waitJS(t, "unread again", textIs("#mail-badge", "1"))
		}
		phone.screenshot(t, "mail-phone-list.png")
		phone.openMail(t, report)
		phone.waitJS(t, "the message alone, read", `document.querySelector('.mail-list-col').offsetParent === null && `+
			textIs("#mail-message [data-act=unread]", "Mark unread")+` && document.querySelector('#mail-content iframe').dataset.loaded`)
		phone.screenshot(t, "mail-phone-read.png")
		phone.pressKey(t, "Escape", 27)
		phone.waitJS(t, "the list after Escape", `document.querySelector('.mail-reader').offsetParent === null`)
		phone.openMail(t, report)
		phone.click(t, "#mail-list-back")
		phone.waitJS(t, "the list again", `document.querySelector('.mail-reader').offsetParent === null && `+mailItem(report))
		phone.click(t, "#mail-back")
		phone.waitJS(t, "the sidebar again", `document.getElementById('sidebar').offsetParent !== null`)

		// Settings: the carrier goes with the phone number; the mailbox address is shown.
		phone.openSettings(t)
		phone.waitJS(t, "the mail address", textIs("#set-mail-address", addr))
		phone.typeInto(t, "#phone-input", "+15550107788")
		phone.do(t, chromedp.SetValue(chromedp.CSS("#phone-carrier"), "tmobile"))
		phone.click(t, "#phone-form button[type=submit]")
		phone.waitJS(t, "saved", textIs("#phone-state", "Not verified"))
		phone.screenshot(t, "mail-settings-phone.png")
		if v := other.ok("GetUserView", nil); v["Carrier"] != "tmobile" || v["Phone"] != "+15550107788" {
			t.Errorf("the server's view: phone %v carrier %v", v["Phone"], v["Carrier"])
		}

		// A mailbox larger than a page: the newest 50 after a reload, the rest on "Load older".
		for i := range 50 {
			msg := fmt.Sprintf("From: news@example.net\r\nTo: %s\r\nSubject: News %d\r\n\r\nIssue %d\r\n", addr, i, i)
			if err := smtpSend(t, srv, "news@example.net", []string{addr}, []byte(msg)); err != nil {
				t.Fatal(err)
			}
		}
		phone.do(t, chromedp.Reload())
		phone.waitJS(t, "online again", `document.body.dataset.conn === 'online'`)
		phone.click(t, "#mail-btn")
		phone.waitJS(t, "the newest page", `document.querySelectorAll('#mail-list .mail-item').length === 50 && `+
			`!document.getElementById('mail-older').hidden && !`+mailItem(report)+` && `+textIs("#mail-badge", "50"))
		phone.click(t, "#mail-older")
		phone.waitJS(t, "the older ones", mailItem(report)+` && document.getElementById('mail-older').hidden && `+
			`document.querySelectorAll('#mail-list .mail-item').length === 52`)
	})
	t.Logf("web mail test took %v", time.Since(start).Round(time.Millisecond))
}

// The list carries summaries: an e-mail's body comes when it is opened (GetEmail), with a
// loading state meanwhile, is kept on the device (IndexedDB) so that it opens without the
// server next time, and an e-mail opened offline whose body never came says so, then loads once
// the connection is back.
func TestWebMailBodyOnOpen(t *testing.T) {
	browser := startBrowser(t)
	srv, _ := mailServer(t)
	p := newPage(t, browser, "http://"+srv.addr, 1280, 800)
	name := uniqueName("reader")
	p.register(t, name)
	addr := name + "@" + testMailDomain
	const report, latin = "Quarterly report ✓", "Grüße aus Köln"
	// Every request the page makes is recorded; a GetEmail waits while window.hold is pending.
	const record = `(() => { const chat = pingedchat.chat; const orig = chat.request.bind(chat);
		window.sent = []; window.hold = null;
		chat.request = (cmd, fields, opts) => { window.sent.push(cmd);
			return cmd === 'GetEmail' && window.hold ? window.hold.then(() => orig(cmd, fields, opts)) : orig(cmd, fields, opts); };
		return true; })()`
	fetched := func() int {
		var n int
		p.eval(t, `window.sent.filter((c) => c === 'GetEmail').length`, &n)
		return n
	}
	p.eval(t, record, nil)
	p.click(t, "#mail-btn")
	for _, f := range []string{"multipart_attachments.eml", "latin1.eml"} {
		if err := smtpSend(t, srv, "sender@example.net", []string{addr}, sampleMail(t, f, addr)); err != nil {
			t.Fatal(err)
		}
	}
	p.waitJS(t, "both listed with their previews", mailItem(report)+` && `+mailItem(latin)+` && `+mailItem(report)+
		`.querySelector('.mi-snippet').textContent.startsWith('Hello, the report is attached. Café at noon?')`)
	var id int
	p.eval(t, mailItem(report)+`.dataset.id * 1`, &id)
	var kept bool
	p.eval(t, fmt.Sprintf(`!!pingedchat.chat.store.mailBody(%d)`, id), &kept)
	if n := fetched(); n != 0 || kept {
		t.Fatalf("bodies fetched before anything was opened: %d GetEmail, kept %v", n, kept)
	}

	// Opened: the headers at once, the body loading (announced, busy), then shown.
	p.eval(t, `window.hold = new Promise((r) => (window.release = r)); true`, nil)
	p.openMail(t, report)
	p.waitJS(t, "the loading state", textIs("#mail-content [role=status]", "Loading the message…")+
		` && document.getElementById('mail-content').getAttribute('aria-busy') === 'true'`+
		` && document.querySelector('#mail-attachments .mail-att.pending') && !document.querySelector('#mail-attachments a')`)
	p.screenshot(t, "mail-body-loading.png")
	p.eval(t, `window.release(); window.hold = null; true`, nil)
	p.waitJS(t, "the body shown", `(document.querySelector('#mail-content iframe.mail-html') || {dataset: {}}).dataset.loaded`+
		` && document.getElementById('mail-content').getAttribute('aria-busy') === 'false'`+
		` && document.querySelectorAll('#mail-attachments a[download]').length === 2`)
	p.eval(t, fmt.Sprintf(`!!pingedchat.chat.store.mailBody(%d)`, id), &kept)
	if n := fetched(); n != 1 || !kept {
		t.Fatalf("after opening: %d GetEmail, kept %v", n, kept)
	}

	// Offline, an e-mail whose body never came says so, and loads when the connection is back.
	p.setNetwork(t, true, nil)
	p.waitJS(t, "offline", `document.body.dataset.conn === 'offline'`)
	p.openMail(t, latin)
	p.waitJS(t, "not downloaded", textIs("#mail-content [role=status]", "This e-mail has not been downloaded yet. It loads when you are back online."))
	p.screenshot(t, "mail-body-offline.png")
	// Answering it needs its text: said too.
	p.click(t, "#mail-message [data-act=reply]")
	p.waitJS(t, "no reply without the text", `document.getElementById('toasts').innerText.includes('has not been downloaded yet')`+
		` && !document.getElementById('compose-dialog').open`)
	p.setNetwork(t, false, nil)
	p.waitJS(t, "loaded once online", `(document.querySelector('#mail-content .mail-text') || {}).textContent.includes('Grüße aus Köln, à bientôt!')`)
	// …and one read before opens offline from the device.
	p.setNetwork(t, true, nil)
	p.waitJS(t, "offline", `document.body.dataset.conn === 'offline'`)
	p.openMail(t, report)
	p.waitJS(t, "the body from the device", `(document.querySelector('#mail-content iframe.mail-html') || {dataset: {}}).dataset.loaded`)
	p.setNetwork(t, false, nil)
	p.waitJS(t, "online", `document.body.dataset.conn === 'online'`)

	// After a reload the bodies read are still on the device: opening one asks the server nothing.
	p.eval(t, `pingedchat.chat.store.save().then(() => true)`, nil)
	p.do(t, chromedp.Reload())
	p.waitJS(t, "online again", `document.body.dataset.conn === 'online'`)
	p.eval(t, record, nil)
	p.click(t, "#mail-btn")
	p.openMail(t, report)
	p.waitJS(t, "the body from the device", `(document.querySelector('#mail-content iframe.mail-html') || {dataset: {}}).dataset.loaded`+
		` && document.querySelectorAll('#mail-attachments a[download]').length === 2`)
	if n := fetched(); n != 0 {
		t.Fatalf("%d GetEmail for a body kept on the device", n)
	}
	// Reply quotes the whole text.
	p.click(t, "#mail-message [data-act=reply]")
	p.waitJS(t, "the reply quoting the text", `document.getElementById('compose-dialog').open && `+
		`document.getElementById('compose-text').value.includes('\n> the report is attached. Café at noon?\n')`)
}
