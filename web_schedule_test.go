package main

// Browser tests of scheduled messages: "Send later" from the composer (a quick choice, checks
// before asking the server), the conversation's pending list surviving a reload, Cancel (also of
// one already gone on the server), and a message delivered by the scheduler showing as a normal
// message on both sides. One server with a short -schedule-interval and one browser; the
// helpers are web_test.go's and web_settings_test.go's.

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// scheduledOf lists a user's scheduled messages as the server has them (a new Go session).
func scheduledOf(t testing.TB, srv *testServer, name string) []map[string]any {
	t.Helper()
	rep := login(t, srv, name).ok("GetUserView", nil)
	list, _ := rep["ScheduledMessages"].([]any)
	out := []map[string]any{}
	for _, s := range list {
		if m, ok := s.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// pickTime sets the date-and-time field as its picker does: a whole value and an input event
// (the native picker cannot be driven by keys the same way in every locale). expr is a
// JavaScript Date.
func (p *page) pickTime(t testing.TB, expr string) {
	t.Helper()
	p.eval(t, fmt.Sprintf(`(() => {
		const d = %s;
		const pad = (n) => String(n).padStart(2, '0');
		const f = document.getElementById('schedule-when');
		f.value = d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + 'T' +
			pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
		f.dispatchEvent(new Event('input', {bubbles: true}));
		f.dispatchEvent(new Event('change', {bubbles: true}));
		return f.value;
	})()`, expr), nil)
}

func TestWebSchedule(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	cfg := testConfig(t)
	cfg.ScheduleInterval = 200 * time.Millisecond
	srv := startServer(t, cfg)
	base := "http://" + srv.addr

	alice := newPage(t, browser, base, 1280, 800) // desktop
	bob := newPage(t, browser, base, 390, 844)    // phone
	aliceName, bobName := uniqueName("alice"), uniqueName("bob")
	const title = "Plans"
	// Times show in the browser's zone: UTC, so that "tomorrow 09:00" is 09:00Z on the wire.
	for _, p := range []*page{alice, bob} {
		if _, err := chromedp.Call(p.ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "UTC"}); err != nil {
			t.Fatal(err)
		}
	}

	if !t.Run("schedule and cancel", func(t *testing.T) {
		alice.register(t, aliceName)
		bob.register(t, bobName)
		alice.click(t, "#new-convo-btn")
		alice.waitVisible(t, "#new-convo-dialog")
		alice.typeInto(t, "#new-name", title)
		alice.typeInto(t, "#new-people", bobName)
		alice.click(t, "#new-convo-form button[type=submit]")
		alice.waitJS(t, "the conversation open", textIs("#convo-title", title)+` && document.getElementById('scheduled').hidden`)

		// What is in the composer is what gets scheduled.
		alice.typeInto(t, "#composer-input", "See you at nine")
		alice.click(t, "#schedule-btn")
		alice.waitVisible(t, "#schedule-dialog")
		alice.waitJS(t, "the draft in the dialog", `document.getElementById('schedule-text').value === 'See you at nine' && `+
			textIs("#schedule-where", "In "+title)+` && document.activeElement.id === 'schedule-when'`)
		alice.click(t, "#schedule-form button[type=submit]")
		alice.waitJS(t, "a time is needed", textIs("#schedule-form .form-error", "Pick the day and time to send it."))
		alice.pickTime(t, `new Date(Date.now() - 60000)`)
		alice.click(t, "#schedule-form button[type=submit]")
		alice.waitJS(t, "a past time is refused", textIs("#schedule-form .form-error", "Pick a time in the future."))
		alice.click(t, "#schedule-form [data-tomorrow-hour]")
		alice.screenshot(t, "schedule-dialog.png")
		alice.click(t, "#schedule-form button[type=submit]")
		alice.waitJS(t, "listed", `!document.getElementById('schedule-dialog').open && !document.getElementById('scheduled').hidden && `+
			textIs("#scheduled-count", "1 scheduled message")+` && `+textIs("#scheduled-list .scheduled-item time", "Tomorrow, 09:00")+
			` && `+textIs("#scheduled-list .scheduled-text", "See you at nine")+
			` && document.getElementById('composer-input').value === '' && document.activeElement.id === 'composer-input'`)
		alice.waitJS(t, "the toast", toastVisible("Scheduled for Tomorrow, 09:00.", "#composer"))
		tomorrow := time.Now().UTC().AddDate(0, 0, 1)
		want := time.Date(tomorrow.Year(), tomorrow.Month(), tomorrow.Day(), 9, 0, 0, 0, time.UTC).Format("2006-01-02T15:04:05.000000Z")
		if s := scheduledOf(t, srv, aliceName); len(s) != 1 || s[0]["Time"] != want || s[0]["Content"] != "See you at nine" {
			t.Fatalf("the server has %v, want one at %s", s, want)
		}
		var shown int
		alice.eval(t, `document.querySelectorAll('#messages .msg').length`, &shown)
		if shown != 0 {
			t.Fatalf("%d messages shown; a scheduled one is not a message yet", shown)
		}
		alice.screenshot(t, "schedule-listed.png")

		// A reload shows it again (the server's list; the device's copy until then).
		alice.eval(t, `pingedchat.flush()`, nil)
		alice.do(t, chromedp.Reload())
		alice.waitJS(t, "the conversation after a reload", textIs("#convo-title", title))
		alice.waitJS(t, "online", `document.body.dataset.conn === 'online'`)
		alice.waitJS(t, "listed after a reload", textIs("#scheduled-list .scheduled-text", "See you at nine"))

		// A second one, cancelled on another device: Cancel here says so and drops it.
		alice.typeInto(t, "#composer-input", "Bring the map")
		alice.click(t, "#schedule-btn")
		alice.waitVisible(t, "#schedule-dialog")
		alice.click(t, "#schedule-form [data-in-minutes]")
		alice.click(t, "#schedule-form button[type=submit]")
		alice.waitJS(t, "two listed", textIs("#scheduled-count", "2 scheduled messages"))
		var id float64
		for _, s := range scheduledOf(t, srv, aliceName) {
			if s["Content"] == "Bring the map" {
				id, _ = s["ID"].(float64)
			}
		}
		if id == 0 {
			t.Fatal("the second scheduled message is not on the server")
		}
		login(t, srv, aliceName).ok("RemoveScheduledMessage", map[string]any{"ID": id})
		alice.click(t, fmt.Sprintf(`#scheduled-list [data-id="%d"] button`, int64(id)))
		alice.waitJS(t, "gone, with the reason", textIs("#scheduled-count", "1 scheduled message")+` && `+
			toastVisible("Couldn't cancel the scheduled message: No such scheduled message (or it was sent already).", "#composer"))

		// Cancel: gone here and on the server.
		alice.click(t, button("#scheduled-list", "Cancel the message for Tomorrow, 09:00: See you at nine"))
		alice.waitJS(t, "cancelled", `document.getElementById('scheduled').hidden && document.activeElement.id === 'composer-input'`)
		if s := scheduledOf(t, srv, aliceName); len(s) != 0 {
			t.Fatalf("the server still has %v", s)
		}
	}) {
		return
	}

	if !t.Run("delivered", func(t *testing.T) {
		const text = "Ping from one second ago"
		alice.click(t, "#schedule-btn")
		alice.waitVisible(t, "#schedule-dialog")
		alice.typeInto(t, "#schedule-text", text)
		alice.pickTime(t, `new Date(Date.now() + 1500)`)
		alice.click(t, "#schedule-form button[type=submit]")
		alice.waitJS(t, "listed", `!document.getElementById('schedule-dialog').open && `+textIs("#scheduled-list .scheduled-text", text))
		// The scheduler sends it: a normal message, once, and the list empties.
		alice.waitJS(t, "delivered", messageState(text)+` === 'sent' && `+messageCount(text)+` === 1 && document.getElementById('scheduled').hidden`)
		bob.openConvo(t, title)
		bob.waitJS(t, "bob has it from alice", messageCount(text)+` === 1 && `+
			msgItem(text)+`.classList.contains('theirs') && `+msgItem(text)+`.querySelector('.author').textContent === `+js(aliceName+": "))
		if s := scheduledOf(t, srv, aliceName); len(s) != 0 {
			t.Fatalf("the server still has %v", s)
		}
	}) {
		return
	}

	t.Run("phone", func(t *testing.T) {
		bob.typeInto(t, "#composer-input", "Remind me about the tickets, please, and the hotel booking too")
		bob.click(t, "#schedule-btn")
		bob.waitVisible(t, "#schedule-dialog")
		bob.click(t, "#schedule-form [data-tomorrow-hour]")
		bob.click(t, "#schedule-form button[type=submit]")
		bob.waitJS(t, "listed", textIs("#scheduled-count", "1 scheduled message"))
		// Everything fits the screen: the composer's buttons and the list.
		bob.waitJS(t, "fits", `(() => {
			const w = window.innerWidth;
			return ['#composer .send', '#schedule-btn', '#scheduled-list button'].every((s) => {
				const r = document.querySelector(s).getBoundingClientRect();
				return r.left >= 0 && r.right <= w;
			}) && document.documentElement.scrollWidth <= w;
		})()`)
		bob.screenshot(t, "schedule-phone.png")
		// Folded away, it takes one line.
		bob.click(t, "#scheduled-toggle")
		bob.waitJS(t, "folded", `document.getElementById('scheduled-list').hidden && document.getElementById('scheduled-toggle').getAttribute('aria-expanded') === 'false'`)
	})
	t.Logf("scheduled-message browser tests took %v", time.Since(start).Round(time.Millisecond))
}
