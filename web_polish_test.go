package main

// Browser tests of the web client's details: read markers, one conversation per pair of people,
// toasts above dialogs and clear of the message box, the "Add people" picker after a refusal,
// the pending icon, day separators, clock times and initials, and what the settings say on a
// server without a mail relay. One server (no SMTP relay) and one browser; the helpers are
// web_test.go's and web_settings_test.go's.

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// msgItem is an expression for the <li> of the open conversation's message with text s.
func msgItem(s string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages .msg')].find((li) => li.querySelector('.text').textContent === %s)`, js(s))
}

// receiptsOf is an expression for the read marker under the message with text s ("" if none).
func receiptsOf(s string) string {
	return fmt.Sprintf(`(((%s || document.createElement('li')).querySelector('.receipts .seen') || {}).textContent || '')`, msgItem(s))
}

// toastVisible is an expression: a toast with this text is on screen, on top of everything
// else at its centre (not under a dialog's backdrop), and does not overlap the element avoid
// (a CSS selector; "" for none).
func toastVisible(text, avoid string) string {
	return fmt.Sprintf(`(() => {
		const t = [...document.querySelectorAll('.toast')].find((e) => e.querySelector('p').textContent === %s);
		if (!t) return false;
		const r = t.getBoundingClientRect();
		const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
		if (!hit || !t.contains(hit)) return false;
		const a = %s && document.querySelector(%s);
		if (!a) return true;
		const b = a.getBoundingClientRect();
		return r.bottom <= b.top || r.top >= b.bottom || r.right <= b.left || r.left >= b.right;
	})()`, js(text), js(avoid), js(avoid))
}

func TestWebPolish(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	srv := startServer(t, testConfig(t)) // no -smtp-url
	base := "http://" + srv.addr

	alice := newPage(t, browser, base, 1280, 800) // desktop
	bob := newPage(t, browser, base, 390, 844)    // phone
	aliceName, bobName := uniqueName("alice"), uniqueName("bob")
	// Times show in the browser's zone: make it known, so that 06:12 UTC reads 06:12.
	for _, p := range []*page{alice, bob} {
		if _, err := chromedp.Call(p.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "UTC"}); err != nil {
			t.Fatal(err)
		}
	}
	var direct string

	if !t.Run("verification without a mail relay", func(t *testing.T) {
		alice.register(t, aliceName)
		bob.register(t, bobName)
		alice.openSettings(t)
		alice.typeInto(t, "#email-input", strings.ToLower(aliceName)+"@example.org")
		alice.click(t, "#email-form button[type=submit]")
		alice.waitJS(t, "the address saved", textIs("#email-state", "Not verified"))
		alice.click(t, "#email-verify [data-send]")
		alice.waitJS(t, "the server's reason", textIs("#email-verify .form-error",
			"Couldn't send a code: This server does not send e-mail or SMS (no -smtp-url is configured)."))
		alice.click(t, "#settings-dialog .dialog-head [data-close]")
	}) {
		return
	}

	if !t.Run("one conversation per pair of people", func(t *testing.T) {
		alice.click(t, "#new-convo-btn")
		alice.waitVisible(t, "#new-convo-dialog")
		alice.click(t, "#new-convo-form button[type=submit]")
		alice.waitJS(t, "nobody picked", textIs("#new-convo-form .form-error", "Add at least one person to talk to."))
		alice.typeInto(t, "#new-people", bobName)
		alice.pressEnter(t)
		alice.click(t, "#new-convo-form button[type=submit]")
		alice.waitJS(t, "the conversation with bob open", textIs("#convo-title", bobName))
		alice.eval(t, `pingedchat.chat.openCid`, &direct)
		bob.openConvo(t, aliceName)

		// Once more with bob: the same conversation opens, and no new one is made.
		alice.click(t, "#new-convo-btn")
		alice.waitVisible(t, "#new-convo-dialog")
		alice.typeInto(t, "#new-people", bobName)
		alice.pressEnter(t)
		alice.click(t, "#new-convo-form button[type=submit]")
		alice.waitJS(t, "the existing conversation", fmt.Sprintf(`!document.getElementById('new-convo-dialog').open && pingedchat.chat.openCid === %s`, js(direct)))
		alice.waitJS(t, "why", toastVisible(fmt.Sprintf("You already have a conversation with %s; here it is.", bobName), "#composer"))
		if n := len(login(t, srv, aliceName).ok("GetUserView", nil)["CIDs"].([]any)); n != 1 {
			t.Fatalf("alice is in %d conversations, want 1", n)
		}
	}) {
		return
	}

	if !t.Run("read markers never under the reader's own message", func(t *testing.T) {
		mine := "Lunch at noon?"
		alice.send(t, mine)
		alice.waitJS(t, "alice's message sent", messageState(mine)+` === 'sent'`)
		bob.waitJS(t, "alice's message at bob's", messageCount(mine)+` === 1`)

		// bob answers from another device that sends no read time: writing counts as reading.
		bobGo := login(t, srv, bobName)
		reply := "Noon works."
		ack := bobGo.ok("SendMessage", map[string]any{"CID": direct, "content": reply, "client_id": "noon-1"})
		alice.waitJS(t, "bob's reply", messageCount(reply)+` === 1`)
		seenByBob := "Seen by " + bobName
		alice.waitJS(t, "bob's marker under alice's message", receiptsOf(mine)+` === `+js(seenByBob))
		bobGo.ok("UpdateUserStatus", map[string]any{"CID": direct, "NewReadTime": ack["m_time"]})
		alice.waitJS(t, "bob's read time", fmt.Sprintf(`pingedchat.chat.store.convo(%s).Members.some((m) => m.username === %s && m.read_time >= %s)`,
			js(direct), js(bobName), js(ack["m_time"].(string))))
		var under struct{ Mine, Reply string }
		alice.eval(t, fmt.Sprintf(`({Mine: %s, Reply: %s})`, receiptsOf(mine), receiptsOf(reply)), &under)
		if under.Mine != seenByBob || under.Reply != "" {
			t.Errorf("alice's view: under her message %q, under bob's %q; want bob's marker under hers only", under.Mine, under.Reply)
		}
		// bob's view: alice has read his reply; her marker goes under it, never under her own.
		seenByAlice := "Seen by " + aliceName
		bob.waitJS(t, "alice's marker under bob's reply", receiptsOf(reply)+` === `+js(seenByAlice))
		bob.eval(t, fmt.Sprintf(`({Mine: %s, Reply: %s})`, receiptsOf(mine), receiptsOf(reply)), &under)
		if under.Mine != "" {
			t.Errorf("bob's view: %q under alice's own message", under.Mine)
		}
		var selfSeen int
		alice.eval(t, fmt.Sprintf(`[...document.querySelectorAll('#messages .seen')].filter((e) => e.textContent.includes(%s)).length`, js(aliceName)), &selfSeen)
		if selfSeen != 0 {
			t.Errorf("alice sees %d markers of her own", selfSeen)
		}
		bob.screenshot(t, "receipts-phone.png")
	}) {
		return
	}

	if !t.Run("add people: a refused name leaves the picker; toasts above the dialog", func(t *testing.T) {
		carol := register(t, srv, "carol")
		alice.click(t, "#members-btn")
		alice.waitVisible(t, "#members-dialog")
		nobody := "nobody_" + aliceName
		alice.typeInto(t, "#add-people", nobody)
		alice.pressEnter(t)
		alice.typeInto(t, "#add-people", carol.name)
		alice.pressEnter(t)
		alice.click(t, "#add-form button[type=submit]")
		alice.waitJS(t, "the refusal", textIs("#add-form .form-error", "Couldn't add people: No such user: "+nobody+"."))
		alice.waitJS(t, "only carol left in the picker", fmt.Sprintf(
			`[...document.querySelectorAll('#add-chips .chip span')].map((e) => e.textContent).join() === %s`, js(carol.name)))
		alice.click(t, "#add-form button[type=submit]")
		alice.waitJS(t, "carol added", fmt.Sprintf(`[...document.querySelectorAll('#member-list .member-name')].some((e) => e.textContent === %s)`, js(carol.name)))
		// The confirmation shows while the dialog is still open: above its backdrop, usable.
		added := "Added " + carol.name + "."
		alice.waitJS(t, "the toast above the dialog", toastVisible(added, "")+` && document.getElementById('toasts').parentElement.id === 'members-dialog'`)
		alice.screenshot(t, "toast-dialog.png")
		alice.click(t, "#members-dialog .actions [data-close]")
		alice.waitJS(t, "the toasts back in the page", `document.getElementById('toasts').parentElement === document.body`)
	}) {
		return
	}

	if !t.Run("error toasts clear of the message box", func(t *testing.T) {
		long := strings.Repeat("x", 8001)
		want := "Couldn't send your message: a message has at most 8000 characters (this one has 8001)."
		for _, p := range []*page{alice, bob} {
			p.send(t, long)
			p.waitJS(t, "the error toast, clear of the composer", toastVisible(want, "#composer"))
			p.replaceText(t, "#composer-input", "")
		}
		bob.screenshot(t, "toast-phone.png")
	}) {
		return
	}

	if !t.Run("pending icon", func(t *testing.T) {
		bob.setNetwork(t, true, []*network.BlockPattern{{URLPattern: base + "/ws/*", Block: true}})
		bob.waitJS(t, "bob offline", `document.body.dataset.conn === 'offline'`)
		queued := "Sent from the tunnel."
		bob.send(t, queued)
		bob.waitJS(t, "queued", messageState(queued)+` === 'pending'`)
		bob.click(t, "#back-btn")
		item := fmt.Sprintf(`document.querySelector(%s)`, js(`.convo-item[data-cid="`+direct+`"]`))
		bob.waitJS(t, "the pending icon", item+`.querySelector('.ci-pending svg') && !`+item+`.textContent.includes('⏱')`)
		bob.screenshot(t, "pending-phone.png")
		bob.setNetwork(t, false, nil)
		bob.waitJS(t, "sent once online", item+` && !`+item+`.querySelector('.ci-pending')`)
	}) {
		return
	}

	t.Run("days, clock times and initials", func(t *testing.T) {
		// dave's conversation has history on three days; alice joins it afterwards.
		dave := register(t, srv, "dave")
		rep := dave.ok("CreateConversation", map[string]any{"Name": "Old times", "Members": []string{}})
		cid, _ := rep["CID"].(string)
		texts := []string{"Three days ago", "Yesterday morning", "Today, just now"}
		ids := make([]int64, len(texts))
		for i, s := range texts {
			ack := dave.ok("SendMessage", map[string]any{"CID": cid, "content": s, "client_id": fmt.Sprintf("day-%d", i)})
			ids[i] = int64(ack["id"].(float64))
		}
		now := time.Now().UTC()
		day := func(back int, h, m int) time.Time {
			d := now.AddDate(0, 0, -back)
			return time.Date(d.Year(), d.Month(), d.Day(), h, m, 0, 0, time.UTC)
		}
		for i, at := range []time.Time{day(3, 9, 5), day(1, 6, 12)} {
			if _, err := srv.db.pool.Exec(t.Context(), "UPDATE "+convTable(cid)+" SET m_time = $1 WHERE id = $2", at, ids[i]); err != nil {
				t.Fatal(err)
			}
		}
		dave.ok("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{aliceName}})
		alice.openConvo(t, "Old times")
		alice.waitJS(t, "the history", messageCount(texts[0])+` === 1 && `+messageCount(texts[2])+` === 1`)
		var got struct {
			Days     []string
			Times    []string
			Avatars  []string
			Me, Item string
		}
		alice.eval(t, `({
			Days: [...document.querySelectorAll('#messages .day')].map((e) => e.textContent),
			Times: [...document.querySelectorAll('#messages .msg .meta time')].map((e) => e.textContent),
			Avatars: [...document.querySelectorAll('#messages .msg .avatar')].map((e) => e.textContent),
			Me: document.getElementById('me-avatar').textContent,
			Item: document.querySelector('.convo-item[aria-current=true] .avatar').textContent,
		})`, &got)
		if len(got.Days) != 3 || got.Days[1] != "Yesterday" || got.Days[2] != "Today" ||
			!strings.Contains(got.Days[0], fmt.Sprint(day(3, 0, 0).Year())) || !strings.Contains(got.Days[0], day(3, 0, 0).Month().String()) {
			t.Errorf("day separators %q, want the date three days ago, Yesterday, Today", got.Days)
		}
		if len(got.Times) != 3 || got.Times[0] != "09:05" || got.Times[1] != "06:12" {
			t.Errorf("clock times %q, want 09:05 and 06:12 first", got.Times)
		}
		if strings.Join(got.Avatars, ",") != "D,D,D" || got.Me != "A" || got.Item != "OT" {
			t.Errorf("initials: messages %q, alice %q, the conversation %q; want D (not D plus a digit), A, OT", got.Avatars, got.Me, got.Item)
		}
		alice.screenshot(t, "days.png")
	})

	t.Run("a taken username while typing", func(t *testing.T) {
		carol := newPage(t, browser, base, 1280, 800)
		carol.do(t, chromedp.Navigate(base+"/"))
		carol.waitVisible(t, "#auth-view")
		carol.click(t, "#tab-register")
		carol.waitJS(t, "connected (the name check needs an open connection)", `document.body.dataset.conn === 'connected'`)
		carol.typeInto(t, "#reg-username", strings.ToUpper(aliceName))
		carol.waitJS(t, "the name reported taken", textIs("#reg-username-hint", "“"+strings.ToUpper(aliceName)+"” is taken; try another.")+
			` && document.getElementById('reg-username').getAttribute('aria-invalid') === 'true'`)
		carol.typeInto(t, "#reg-username", "x")
		carol.waitJS(t, "a free name clears it", textIs("#reg-username-hint", "3 to 32 letters, digits or underscores."))
	})

	t.Run("a name reserved for the server's own mail", func(t *testing.T) {
		dave := newPage(t, browser, base, 390, 844)
		dave.do(t, chromedp.Navigate(base+"/"))
		dave.waitVisible(t, "#auth-view")
		dave.click(t, "#tab-register")
		dave.waitJS(t, "connected (the name check needs an open connection)", `document.body.dataset.conn === 'connected'`)
		dave.typeInto(t, "#reg-username", "Postmaster")
		dave.waitJS(t, "the name reported taken", textIs("#reg-username-hint", "“Postmaster” is taken; try another.")+
			` && document.getElementById('reg-username').getAttribute('aria-invalid') === 'true'`)
		dave.typeInto(t, "#reg-password", testPassword)
		dave.click(t, "#register-form button[type=submit]")
		dave.waitJS(t, "the server's reason", textIs("#register-form .form-error",
			`Couldn't create your account: The name "Postmaster" is reserved for the server's own mail; choose another.`))
		dave.waitJS(t, "still on the registration form", `!document.getElementById('register-form').hidden && document.getElementById('chat-view').hidden`)
	})
	t.Logf("browser tests took %v", time.Since(start).Round(time.Millisecond))
}
