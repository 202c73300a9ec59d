package main

// Browser tests of the web client's friends dialog: a request with a note, accepted live on
// the other side; a chat started from a friend (a second click opens the same conversation);
// declining, cancelling and removing; finding people by username, e-mail and phone (verified
// only); and finding an address book's people from a vCard file and pasted CSV, 500 entries a
// call (a large CSV file), without the contacts' names leaving the browser. One server (with a local SMTP relay, so
// that Go clients can verify their e-mail and phone) and one browser; the helpers are
// web_test.go's, web_settings_test.go's and web_polish_test.go's.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// person is an expression for the row of a user in a people list (a CSS selector of the list).
func person(list, name string) string {
	return fmt.Sprintf(`document.querySelector(%s)`, js(fmt.Sprintf(`%s [data-user="%s"]`, list, name)))
}

// button is a CSS selector for the button with an accessible name inside scope.
func button(scope, label string) string {
	return fmt.Sprintf(`%s button[aria-label=%s]`, scope, js(label))
}

// testPhone makes a phone number (E.164, North American) that no other test uses.
func testPhone() string {
	return fmt.Sprintf("+1555%03d%04d", os.Getpid()%1000, userSeq.Add(1)%10000)
}

// hasFriend is an expression: a user view's list (a Go client's push) names the user.
func hasFriend(p map[string]any, list, name string) bool {
	l, _ := p[list].([]any)
	for _, f := range l {
		if m, _ := f.(map[string]any); m != nil && strings.EqualFold(fmt.Sprint(m["Username"]), name) {
			return true
		}
	}
	return false
}

// captureFrames starts recording the frames the page sends on its socket (window.sentFrames).
func (p *page) captureFrames(t testing.TB) {
	t.Helper()
	p.eval(t, `(() => {
		const s = window.pingedchat.conn.sock;
		if (s.captured) return true;
		const send = s.send.bind(s);
		window.sentFrames = [];
		s.send = (d) => { window.sentFrames.push(JSON.parse(d)); send(d); };
		s.captured = true;
		return true;
	})()`, nil)
}

func TestWebFriends(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	srv := startServer(t, cfg)
	base := "http://" + srv.addr

	alice := newPage(t, browser, base, 1280, 800) // desktop
	bob := newPage(t, browser, base, 390, 844)    // phone
	aliceName, bobName := uniqueName("alice"), uniqueName("bob")

	// dave has verified his e-mail address and phone number; erin has an unverified address.
	dave := dialRaw(t, srv)
	dave.name = uniqueName("dave")
	daveEmail, davePhone := strings.ToLower(dave.name)+"@example.org", testPhone()
	dave.ok("CreateUser", map[string]any{"username": dave.name, "password": testPassword, "email": daveEmail, "phone": davePhone})
	dave.ok("SendVerificationCode", map[string]any{"kind": "email"})
	dave.ok("VerifyContact", map[string]any{"kind": "email", "code": receivedCode(t, relay, 1, daveEmail)})
	dave.ok("SendVerificationCode", map[string]any{"kind": "phone", "carrier": "att"})
	sms, err := smsAddress(davePhone, "att")
	if err != nil {
		t.Fatal(err)
	}
	dave.ok("VerifyContact", map[string]any{"kind": "phone", "code": receivedCode(t, relay, 2, sms)})
	erin := dialRaw(t, srv)
	erin.name = uniqueName("erin")
	erinEmail := strings.ToLower(erin.name) + "@example.org"
	erin.ok("CreateUser", map[string]any{"username": erin.name, "password": testPassword, "email": erinEmail})

	if !t.Run("request and accept", func(t *testing.T) {
		alice.register(t, aliceName)
		bob.register(t, bobName)
		alice.click(t, "#friends-btn")
		alice.waitVisible(t, "#friends-dialog")
		alice.waitJS(t, "no friends yet", `!document.getElementById('friend-empty').hidden && document.getElementById('incoming-section').hidden`)
		// Usernames are found without regard to case, and shown as registered.
		alice.typeInto(t, "#find-input", strings.ToUpper(bobName))
		alice.typeInto(t, "#friend-message", "Hi bob, it's alice from the book club")
		alice.click(t, "#find-form button[type=submit]")
		alice.waitJS(t, "bob found", person("#find-results", bobName))
		alice.click(t, button("#find-results", "Add "+bobName+" as a friend"))
		alice.waitJS(t, "the request sent", person("#outgoing-list", bobName)+` && `+
			person("#find-results", bobName)+`.querySelector('.pill').textContent === 'Request sent' && `+
			textIs("#find-form .form-ok", "Friend request sent to "+bobName+"."))

		// Bob hears of it at once, before opening anything.
		bob.waitJS(t, "the badge", `!document.getElementById('friends-badge').hidden && `+textIs("#friends-badge", "1")+
			` && document.getElementById('friends-btn').getAttribute('aria-label') === 'Friends, 1 new request'`)
		bob.waitJS(t, "a toast", toastVisible(aliceName+" wants to be your friend.", ""))
		bob.screenshot(t, "friends-badge-phone.png")
		bob.click(t, "#friends-btn")
		bob.waitVisible(t, "#friends-dialog")
		bob.waitJS(t, "the request with its note", person("#incoming-list", aliceName)+` && `+
			person("#incoming-list", aliceName)+`.querySelector('.sub').textContent === "“Hi bob, it's alice from the book club”"`)
		bob.screenshot(t, "friends-request-phone.png")
		bob.click(t, button("#incoming-list", "Accept "+aliceName))
		bob.waitJS(t, "alice a friend", person("#friend-list", aliceName)+` && document.getElementById('incoming-section').hidden && `+
			`document.getElementById('friends-badge').hidden && document.getElementById('friend-empty').hidden`)
		// The focus stays with the person: on their row in the friends list.
		bob.waitJS(t, "focus on alice's row", `document.activeElement.closest('[data-user]') === `+person("#friend-list", aliceName))

		alice.waitJS(t, "bob a friend, live", person("#friend-list", bobName)+` && document.getElementById('outgoing-section').hidden && `+
			person("#find-results", bobName)+`.querySelector('button').textContent === 'Chat'`)
		alice.waitJS(t, "a toast", toastVisible(bobName+" accepted your friend request.", ""))
		alice.screenshot(t, "friends.png")
	}) {
		return
	}

	if !t.Run("start a chat", func(t *testing.T) {
		bob.click(t, button("#friend-list", "Start a chat with "+aliceName))
		bob.waitJS(t, "the new conversation open", `!document.getElementById('friends-dialog').open && !document.getElementById('convo').hidden && `+
			textIs("#convo-title", aliceName))
		bob.send(t, "Hello, friend")
		bob.waitJS(t, "sent", messageState("Hello, friend")+` === 'sent'`)

		// Alice's button opens the same conversation, not a second one.
		alice.waitJS(t, "the conversation in alice's list", fmt.Sprintf(
			`[...document.querySelectorAll('.convo-item .ci-name')].filter((e) => e.textContent === %s).length === 1`, js(bobName)))
		alice.click(t, button("#friend-list", "Start a chat with "+bobName))
		alice.waitJS(t, "the conversation open", `!document.getElementById('friends-dialog').open && `+textIs("#convo-title", bobName)+
			` && `+messageCount("Hello, friend")+` === 1 && document.activeElement.id === 'composer-input'`)
		alice.waitJS(t, "still one conversation", fmt.Sprintf(
			`[...document.querySelectorAll('.convo-item .ci-name')].filter((e) => e.textContent === %s).length === 1`, js(bobName)))
		rep := login(t, srv, aliceName).ok("GetUserView", nil)
		if cids, _ := rep["CIDs"].([]any); len(cids) != 1 {
			t.Fatalf("alice is in %d conversations, want 1: %v", len(cids), rep["CIDs"])
		}
	}) {
		return
	}

	if !t.Run("decline, cancel and remove", func(t *testing.T) {
		carol := register(t, srv, "carol")
		// The note is the sender's words: shown as text, never as markup.
		carol.ok("AddFriend", map[string]any{"friend_UID": aliceName, "Message": `<b id="x">bold</b><img src=x onerror="window.pwned=1">`})
		alice.waitJS(t, "the badge", textIs("#friends-badge", "1"))
		alice.click(t, "#friends-btn")
		alice.waitJS(t, "carol's request", person("#incoming-list", carol.name))
		alice.waitJS(t, "the note as text", person("#incoming-list", carol.name)+`.querySelector('.sub').textContent.includes('<b id="x">bold</b>') && `+
			`!document.querySelector('#incoming-list b, #incoming-list img') && !window.pwned`)
		alice.click(t, button("#incoming-list", "Decline "+carol.name))
		alice.waitJS(t, "declined", `document.getElementById('incoming-section').hidden && document.getElementById('friends-badge').hidden`)
		carol.waitPush("alice's answer", func(p map[string]any) bool {
			return p["cmd"] == "UpdateUser" && !hasFriend(p, "OutgoingPendingFriends", aliceName) && !hasFriend(p, "Friends", aliceName)
		})

		// A request sent, then withdrawn.
		alice.replaceText(t, "#find-input", carol.name)
		alice.click(t, "#find-form button[type=submit]")
		alice.waitJS(t, "carol found", person("#find-results", carol.name)+` && `+person("#find-results", carol.name)+`.querySelector('button')`)
		alice.click(t, button("#find-results", "Add "+carol.name+" as a friend"))
		alice.waitJS(t, "the request sent", person("#outgoing-list", carol.name))
		carol.waitPush("alice's request", func(p map[string]any) bool {
			return p["cmd"] == "UpdateUser" && hasFriend(p, "IncomingPendingFriends", aliceName)
		})
		alice.click(t, button("#outgoing-list", "Cancel your request to "+carol.name))
		alice.waitJS(t, "withdrawn", `document.getElementById('outgoing-section').hidden && `+
			person("#find-results", carol.name)+`.querySelector('button').textContent === 'Add friend'`)
		carol.waitPush("the request withdrawn", func(p map[string]any) bool {
			return p["cmd"] == "UpdateUser" && !hasFriend(p, "IncomingPendingFriends", aliceName)
		})

		// Removing a friend asks first, and ends it on both sides.
		alice.click(t, button("#friend-list", "Remove "+bobName+" from your friends"))
		alice.waitVisible(t, "#confirm-dialog")
		alice.click(t, "#confirm-yes")
		alice.waitJS(t, "bob removed", `!`+person("#friend-list", bobName)+` && !document.getElementById('friend-empty').hidden`)
		bob.click(t, "#back-btn") // on the phone the sidebar is behind the conversation
		bob.click(t, "#friends-btn")
		bob.waitJS(t, "alice gone from bob's friends", `document.getElementById('friends-dialog').open && !`+person("#friend-list", aliceName)+
			` && !document.getElementById('friend-empty').hidden`)
		bob.click(t, "#friends-dialog [data-close]")
	}) {
		return
	}

	if !t.Run("find by e-mail and phone", func(t *testing.T) {
		// An address is matched whatever its case; a number whatever its punctuation.
		alice.replaceText(t, "#find-input", strings.ToUpper(daveEmail))
		alice.click(t, "#find-form button[type=submit]")
		alice.waitJS(t, "dave by e-mail", person("#find-results", dave.name)+` && `+textIs("#find-none", ""))
		pretty := fmt.Sprintf("%s (%s) %s-%s", davePhone[:2], davePhone[2:5], davePhone[5:8], davePhone[8:])
		alice.replaceText(t, "#find-input", pretty)
		alice.eval(t, `document.getElementById('find-results').replaceChildren()`, nil) // see the new answer arrive
		alice.click(t, "#find-form button[type=submit]")
		alice.waitJS(t, "dave by phone", person("#find-results", dave.name)+` && `+
			person("#find-results", dave.name)+`.querySelector('.sub').textContent === `+js(davePhone))
		// Nobody is found by an address they have not verified.
		alice.replaceText(t, "#find-input", erinEmail)
		alice.click(t, "#find-form button[type=submit]")
		alice.waitJS(t, "erin not found", textIs("#find-none", "Nobody has verified "+erinEmail+" here.")+
			` && !document.querySelector('#find-results li')`)
		alice.replaceText(t, "#find-input", "nobody_"+aliceName)
		alice.click(t, "#find-form button[type=submit]")
		alice.waitJS(t, "no such user", textIs("#find-none", "Nobody here is called nobody_"+aliceName+". Usernames are matched exactly."))
		alice.replaceText(t, "#find-input", "555 0100 222")
		alice.click(t, "#find-form button[type=submit]")
		alice.waitJS(t, "a number needs its country code", textIs("#find-form .form-error",
			"Write the number in the international form: a plus, the country code, then the number (+15551234567)."))
	}) {
		return
	}

	if !t.Run("contacts", func(t *testing.T) {
		dir := t.TempDir()
		national := davePhone[2:5] + "-" + davePhone[5:8] + "-" + davePhone[8:] // without +1
		vcf := strings.Join([]string{
			"BEGIN:VCARD", "VERSION:3.0", "FN:Dave Doe", "N:Doe;Dave;;;",
			"item1.EMAIL;type=INTERNET;type=pref:" + strings.ToUpper(daveEmail),
			"TEL;TYPE=CELL:" + national, "END:VCARD",
			"BEGIN:VCARD", "VERSION:3.0", "FN:Erin Example", "EMAIL;TYPE=HOME:" + erinEmail, "END:VCARD",
			"BEGIN:VCARD", "VERSION:2.1", "N;CHARSET=UTF-8;ENCODING=QUOTED-PRINTABLE:M=C3=BCller;J=C3=BCrgen",
			"EMAIL:jurgen_" + aliceName + "@example.net", "END:VCARD",
			"BEGIN:VCARD", "VERSION:3.0", "FN:No Address", "NOTE:nothing to look up", "END:VCARD", "",
		}, "\r\n")
		path := filepath.Join(dir, "contacts.vcf")
		if err := os.WriteFile(path, []byte(vcf), 0o644); err != nil {
			t.Fatal(err)
		}
		alice.captureFrames(t)
		alice.typeInto(t, "#contacts-cc", "+1")
		alice.do(t, chromedp.SetUploadFiles(chromedp.CSS("#contacts-file"), []string{path}))
		alice.waitJS(t, "dave found in the address book", person("#contacts-results", dave.name)+` && `+
			textIs("#contacts-form .form-ok", "Looked up 3 e-mail addresses and 1 phone number from 3 contacts: 1 person is here."))
		alice.waitJS(t, "dave's name from the address book", person("#contacts-results", dave.name)+
			`.querySelector('.sub').textContent === `+js("Dave Doe · "+daveEmail+" · "+davePhone))
		// Only addresses and numbers went to the server, never the names in the address book.
		var frames []map[string]any
		alice.eval(t, `window.sentFrames.filter((f) => f.cmd === 'MatchUsers')`, &frames)
		if len(frames) != 1 {
			t.Fatalf("%d MatchUsers requests, want 1: %v", len(frames), frames)
		}
		raw, _ := json.Marshal(frames[0])
		for _, name := range []string{"Dave", "Erin", "Jürgen", "Müller"} {
			if strings.Contains(string(raw), name) {
				t.Errorf("the request carries the contact name %q: %s", name, raw)
			}
		}
		alice.screenshot(t, "friends-contacts.png")
		alice.click(t, button("#contacts-results", "Add "+dave.name+" as a friend"))
		alice.waitJS(t, "the request sent", person("#contacts-results", dave.name)+`.querySelector('.pill').textContent === 'Request sent'`)
		dave.waitPush("alice's request", func(p map[string]any) bool {
			return p["cmd"] == "UpdateUser" && hasFriend(p, "IncomingPendingFriends", aliceName)
		})

		// A large address book goes in calls of at most 500.
		var csv strings.Builder
		csv.WriteString("Name,E-mail Address,Mobile Phone\n")
		for i := range 1200 {
			fmt.Fprintf(&csv, "\"Person, %d\",p%d_%s@example.net,\n", i, i, aliceName)
		}
		fmt.Fprintf(&csv, "Dave,%s,\n", daveEmail)
		big := filepath.Join(dir, "contacts.csv")
		if err := os.WriteFile(big, []byte(csv.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		alice.eval(t, `window.sentFrames.length = 0`, nil)
		alice.do(t, chromedp.SetUploadFiles(chromedp.CSS("#contacts-file"), []string{big}))
		alice.waitJS(t, "1201 looked up", textIs("#contacts-form .form-ok",
			"Looked up 1201 e-mail addresses from 1201 contacts: 1 person is here.")+` && `+person("#contacts-results", dave.name))
		var sizes []int
		alice.eval(t, `window.sentFrames.filter((f) => f.cmd === 'MatchUsers').map((f) => f.Emails.length + f.Phones.length)`, &sizes)
		if fmt.Sprint(sizes) != "[500 500 201]" {
			t.Errorf("MatchUsers calls of %v entries, want [500 500 201]", sizes)
		}
		// Pasted, and nothing readable in it: said so.
		alice.typeInto(t, "#contacts-text", "just some words")
		alice.click(t, "#contacts-form button[type=submit]")
		alice.waitJS(t, "nothing to look up", textIs("#contacts-form .form-error",
			"What you pasted has no e-mail addresses or phone numbers that could be read (a vCard .vcf or a CSV file is needed)."))
	}) {
		return
	}

	t.Run("phone layout", func(t *testing.T) {
		bob.click(t, "#friends-btn")
		bob.waitVisible(t, "#friends-dialog")
		bob.typeInto(t, "#find-input", aliceName)
		bob.click(t, "#find-form button[type=submit]")
		bob.waitJS(t, "alice found", person("#find-results", aliceName))
		// Nothing wider than the screen; the dialog fills it.
		bob.waitJS(t, "no sideways scrolling", `(() => {
			const d = document.getElementById('friends-dialog');
			const r = d.getBoundingClientRect();
			return d.scrollWidth <= d.clientWidth && r.width <= window.innerWidth && r.left >= 0;
		})()`)
		bob.screenshot(t, "friends-phone.png")
	})
	t.Logf("friends browser tests took %v", time.Since(start).Round(time.Millisecond))
}
