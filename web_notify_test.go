package main

// Browser tests of notifications while the page is hidden: the permission is asked for on the
// user's click (refused, then allowed, through CDP's permission settings: headless Chromium shows
// no prompt), a message from someone else while the window is minimised shows a real
// notification (read back through the service worker's getNotifications) with a WebAudio chime
// (its oscillators counted, its AudioContext running), and nothing for one's own messages, for a
// visible page, or once turned off. A click on a system notification cannot be made headless:
// what the service worker sends the page on one is dispatched to the page instead. One server and
// one browser; the helpers are web_test.go's, web_settings_test.go's and web_shell_test.go's.

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// notifications is an expression for the page's notifications that are showing, as
// "title | body" in alphabetical order, joined by " ; " (a promise: see waitAsync).
const notifications = `navigator.serviceWorker.getRegistration()
	.then((r) => (r ? r.getNotifications() : []))
	.then((l) => l.map((n) => n.title + ' | ' + n.body).sort().join(' ; '))`

// setNotificationPermission sets what the browser answers the page about notifications.
func (p *page) setNotificationPermission(t testing.TB, setting browser.PermissionSetting) {
	t.Helper()
	_, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
		Permission: &browser.PermissionDescriptor{Name: "notifications"}, Setting: setting,
		Origin: p.base, BrowserContextID: chromedp.FromContext(p.ctx).BrowserContextID,
	})
	if err != nil {
		t.Fatal(err)
	}
}

// minimize minimises the page's window (the page becomes hidden) or restores it.
func (p *page) minimize(t testing.TB, on bool) {
	t.Helper()
	w, err := chromedp.CallBrowser(p.ctx, browser.GetWindowForTarget, browser.GetWindowForTargetParams{
		TargetID: chromedp.FromContext(p.ctx).Target.TargetID,
	})
	if err != nil {
		t.Fatal(err)
	}
	state := browser.WindowStateNormal
	if on {
		state = browser.WindowStateMinimized
	}
	if _, err := chromedp.CallBrowser(p.ctx, browser.SetWindowBounds, browser.SetWindowBoundsParams{
		WindowID: w.WindowID, Bounds: &browser.Bounds{WindowState: state},
	}); err != nil {
		t.Fatal(err)
	}
	want := "visible"
	if on {
		want = "hidden"
	}
	p.waitJS(t, "the page "+want, `document.visibilityState === `+js(want))
}

// preview is an expression: the conversation list shows text as the last message of title.
func preview(title, text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('.convo-item')].some((b) => b.querySelector('.ci-name').textContent === %s && `+
		`b.querySelector('.ci-last').textContent.endsWith(%s))`, js(title), js(text))
}

func TestWebNotify(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	srv := startServer(t, testConfig(t))
	base := "http://" + srv.addr
	alice := newPage(t, browser, base, 1280, 800)
	aliceName := uniqueName("alice")
	bob := register(t, srv, "bob")
	var trip, direct string

	if !t.Run("asked on the user's click", func(t *testing.T) {
		alice.register(t, aliceName)
		alice.waitJS(t, "the service worker in control", `navigator.serviceWorker.controller !== null`)
		alice.setNotificationPermission(t, "denied")
		alice.openSettings(t)
		alice.waitJS(t, "off", textIs("#notify-state", "Off")+` && !document.getElementById('notify-on').checked && `+
			`document.getElementById('notify-sound').disabled`)
		alice.click(t, "#notify-on")
		alice.waitJS(t, "refused by the browser", textIs("#notify-form .form-error",
			"Notifications are blocked for this site: allow them in your browser's site settings, then turn this on again.")+
			` && !document.getElementById('notify-on').checked && `+textIs("#notify-state", "Off"))

		alice.setNotificationPermission(t, "granted")
		alice.click(t, "#notify-on")
		alice.waitJS(t, "on", textIs("#notify-state", "On")+` && document.getElementById('notify-on').checked && `+
			`!document.getElementById('notify-sound').disabled && document.getElementById('notify-sound').checked && `+
			textIs("#notify-form .form-error", "")+` && JSON.parse(localStorage.getItem('pingedchat.notify')).enabled === true`)
		// The click started the sound, as browsers require.
		alice.waitJS(t, "the sound ready", `pingedchat.notifier.audio && pingedchat.notifier.audio.state === 'running'`)
		alice.screenshot(t, "settings-notifications.png")
		alice.click(t, "#settings-dialog .dialog-head [data-close]")
	}) {
		return
	}

	if !t.Run("hidden: a notification and a chime", func(t *testing.T) {
		trip = newConvoWith(t, bob, aliceName)
		bob.ok("ChangeConvoName", map[string]any{"CID": trip, "Name": "Trip"})
		direct = newConvoWith(t, bob, aliceName)
		alice.waitJS(t, "both conversations", `document.querySelectorAll('.convo-item').length === 2 && `+
			`[...document.querySelectorAll('.ci-name')].some((e) => e.textContent === 'Trip')`)
		alice.eval(t, `(() => {
			window.chimes = 0;
			const make = AudioContext.prototype.createOscillator;
			AudioContext.prototype.createOscillator = function () { window.chimes++; return make.call(this); };
			return true;
		})()`, nil)

		alice.minimize(t, true)
		// Alice's own message from her phone: no notification.
		login(t, srv, aliceName).ok("SendMessage", map[string]any{"CID": direct, "content": "From my phone"})
		alice.waitJS(t, "her own message arrived", preview(bob.name, "You: From my phone"))
		bob.ok("SendMessage", map[string]any{"CID": trip, "content": "Are you there?\nThe train leaves at 9."})
		alice.waitAsync(t, "the notification", notifications, bob.name+" in Trip | Are you there? The train leaves at 9.")
		alice.waitJS(t, "the chime", `window.chimes === 2 && pingedchat.notifier.audio.state === 'running'`)
		// Just the two of them: the title is the sender.
		bob.ok("SendMessage", map[string]any{"CID": direct, "content": "Just us"})
		alice.waitAsync(t, "the second notification", notifications,
			bob.name+" in Trip | Are you there? The train leaves at 9. ; "+bob.name+" | Just us")
		alice.waitJS(t, "two chimes", `window.chimes === 4`)
		// A newer message in a conversation replaces its notification.
		bob.ok("SendMessage", map[string]any{"CID": direct, "content": "Hello?"})
		alice.waitAsync(t, "replaced", notifications,
			bob.name+" in Trip | Are you there? The train leaves at 9. ; "+bob.name+" | Hello?")
	}) {
		return
	}

	if !t.Run("back on the page", func(t *testing.T) {
		alice.minimize(t, false)
		alice.waitAsync(t, "the notifications closed", notifications, "")
		chimes := 0
		alice.eval(t, `window.chimes`, &chimes)
		bob.ok("SendMessage", map[string]any{"CID": trip, "content": "Seen live"})
		alice.waitJS(t, "the message", preview("Trip", bob.name+": Seen live"))
		alice.waitAsync(t, "no notification for a page in sight", notifications, "")
		alice.waitJS(t, "no chime", fmt.Sprintf(`window.chimes === %d`, chimes))
		// A click on a notification: the service worker tells the page, which opens the conversation.
		alice.eval(t, fmt.Sprintf(`navigator.serviceWorker.dispatchEvent(new MessageEvent('message', {data: {type: 'pingedchat-open', cid: %s}}))`, js(trip)), nil)
		alice.waitJS(t, "the conversation open", textIs("#convo-title", "Trip"))
	}) {
		return
	}

	if !t.Run("kept, and turned off", func(t *testing.T) {
		alice.do(t, chromedp.Reload())
		alice.waitJS(t, "online", `document.body.dataset.conn === 'online'`)
		alice.openSettings(t)
		alice.waitJS(t, "still on", textIs("#notify-state", "On")+` && document.getElementById('notify-on').checked`)
		alice.click(t, "#notify-on")
		alice.waitJS(t, "off", textIs("#notify-state", "Off")+` && `+textIs("#notify-form .form-ok", "Notifications off."))
		alice.click(t, "#settings-dialog .dialog-head [data-close]")
	}) {
		return
	}

	t.Run("off: nothing", func(t *testing.T) {
		alice.eval(t, `(() => {
			window.chimes = 0;
			const make = AudioContext.prototype.createOscillator;
			AudioContext.prototype.createOscillator = function () { window.chimes++; return make.call(this); };
			return true;
		})()`, nil)
		alice.minimize(t, true)
		bob.ok("SendMessage", map[string]any{"CID": direct, "content": "Anyone?"})
		alice.waitJS(t, "the message", preview(bob.name, bob.name+": Anyone?"))
		alice.waitAsync(t, "no notification", notifications, "")
		alice.waitJS(t, "no chime", `window.chimes === 0`)
		alice.minimize(t, false)
	})
	t.Logf("notification browser tests took %v", time.Since(start).Round(time.Millisecond))
}
