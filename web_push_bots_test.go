package main

// Browser test of push notifications and bot answers in the web client. Notifications: the
// permission is granted through CDP (headless Chromium shows no prompt), "Enable notifications"
// is clicked, and the client asks the server for its VAPID key and tries to subscribe; headless
// Chromium has no push service, so the subscription itself may fail, and the settings must say
// so while in-page notifications work. The service worker's push handler is tested by a push
// delivered through CDP (ServiceWorker.deliverPushMessage) with the payload the server sends:
// it must show a notification with the server's title and body. Bots: @giphy and @forecast
// answered by the local Giphy and Open-Meteo (internal/bottest); the GIF is served over HTTPS
// from "media.giphy.com", which the browser resolves to a local TLS server, so that the page's
// Content-Security-Policy (img-src https://*.giphy.com) is the one in production.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"
)

func TestWebPushAndBots(t *testing.T) {
	media := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/gif")
		http.ServeFile(w, r, "testdata/bots/dot.gif")
	}))
	t.Cleanup(media.Close)
	_, mediaPort, _ := net.SplitHostPort(media.Listener.Addr().String())
	chrome := startBrowser(t,
		chromedp.Flag("host-resolver-rules", "MAP media.giphy.com 127.0.0.1:"+mediaPort),
		chromedp.Flag("ignore-certificate-errors", true))

	cfg := testConfig(t)
	rig := newPushRig(t, &cfg)
	svc := startBotServices(t, &cfg)
	svc.MediaBase = "https://media.giphy.com/media"
	srv := startServer(t, cfg)
	base := "http://" + srv.addr
	alice := newPage(t, chrome, base, 1280, 800)
	aliceName := uniqueName("alice")
	bob := register(t, srv, "bob")
	var cid, webSub string

	if !t.Run("enable notifications", func(t *testing.T) {
		alice.register(t, aliceName)
		alice.waitJS(t, "the service worker in control", `navigator.serviceWorker.controller !== null`)
		alice.waitAsync(t, "no push subscription before the click",
			`navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription()).then((s) => s === null)`, "true")
		alice.setNotificationPermission(t, "granted")
		alice.openSettings(t)
		alice.click(t, "#notify-on")
		alice.waitJS(t, "on, and push tried", textIs("#notify-state", "On")+
			` && ['on', 'failed'].includes(document.getElementById('push-state').dataset.state)`)
		var state, text string
		alice.eval(t, `document.getElementById('push-state').dataset.state`, &state)
		alice.eval(t, `document.getElementById('push-state').textContent`, &text)
		t.Logf("push subscription in headless Chromium: %s (%s)", state, text)
		if state == "on" {
			waitUntil(t, "the subscription at the server", func() bool {
				u, err := srv.db.getUser(context.Background(), aliceName)
				return err == nil && len(u.Devices[webPushPlatform]) == 1
			})
		}
		alice.screenshot(t, "push-settings.png")

		// The rest of the client's part, with the browser's push service stood in for by the
		// local one: PushManager.subscribe answers a subscription of internal/webpushtest.
		sub, subID, err := rig.wp.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		alice.eval(t, fmt.Sprintf(`(() => {
			const s = %s;
			const fake = {endpoint: s.endpoint, toJSON: () => ({endpoint: s.endpoint, expirationTime: null, keys: s.keys}),
				unsubscribe: async () => true};
			let current = null;
			PushManager.prototype.subscribe = async function (opts) {
				window.__pushKey = btoa(String.fromCharCode(...new Uint8Array(opts.applicationServerKey)))
					.replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
				current = fake;
				return fake;
			};
			PushManager.prototype.getSubscription = async function () { return current; };
		})()`, sub.JSON()), nil)
		alice.click(t, "#notify-on") // off
		alice.waitJS(t, "off", textIs("#notify-state", "Off"))
		alice.click(t, "#notify-on") // on again: subscribes
		alice.waitJS(t, "push on", `document.getElementById('push-state').dataset.state === 'on' && `+
			`window.__pushKey === `+js(cfg.VAPIDPublicKey))
		waitUntil(t, "the subscription at the server", func() bool {
			u, err := srv.db.getUser(context.Background(), aliceName)
			return err == nil && len(u.Devices[webPushPlatform]) == 1 && endpointOf(u.Devices[webPushPlatform][0]) == sub.Endpoint
		})
		alice.click(t, "#settings-dialog .dialog-head [data-close]")
		webSub = subID
	}) {
		return
	}

	t.Run("a push shows a notification", func(t *testing.T) {
		regs := chromedp.Events(alice.ctx, serviceworker.WorkerRegistrationUpdated)
		alice.do(t, chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
			_, err := cdp.Call(ctx, tgt, serviceworker.Enable, cdp.Empty{})
			return err
		}))
		var reg serviceworker.RegistrationID
		for ev, err := range regs {
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range ev.Registrations {
				if r.ScopeURL == base+"/" && !r.IsDeleted {
					reg = r.RegistrationID
				}
			}
			if reg != "" {
				break
			}
		}
		// A push delivered to a worker still installing (fetching the shell) is lost: wait for it.
		alice.waitAsync(t, "the service worker active", `navigator.serviceWorker.ready.then((r) => String(!!r.active && r.active.state === 'activated'))`, "true")
		cid = newConvoWith(t, bob, aliceName)
		payload, _ := json.Marshal(webPushPayload{Title: bob.name + " - see you at eight", Body: "see you at eight",
			CID: cid, Sender: bob.name, Kind: "message"})
		want := bob.name + " - see you at eight | see you at eight"
		// DevTools hands the push to the registration's current worker; on a loaded machine the
		// first one now and then arrives while the worker is being replaced and is dropped (a
		// real push service retries). Deliver again if none showed: the tag makes it one.
		for attempt := range 3 {
			alice.do(t, chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
				_, err := cdp.Call(ctx, tgt, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
					Origin: base, RegistrationID: reg, Data: string(payload)})
				return err
			}))
			if attempt == 2 || alice.showsWithin(t, notifications, want, 5*time.Second) {
				break
			}
		}
		alice.waitAsync(t, "the notification", notifications, want)
		alice.waitAsync(t, "tagged with the conversation", `navigator.serviceWorker.getRegistration().then((r) => r.getNotifications())`+
			`.then((l) => l.some((n) => n.tag === 'pingedchat-`+cid+`' && n.data.cid === '`+cid+`'))`, "true")
	})

	t.Run("bot answers", func(t *testing.T) {
		alice.openConvo(t, bob.name)
		alice.send(t, "@giphy funny cat")
		alice.waitJS(t, "the GIF shown", `(() => {
			const img = document.querySelector('.msg.bot .bot-gif img');
			return !!img && img.complete && img.naturalWidth > 0 && img.src.startsWith('https://media.giphy.com/') &&
				img.alt === 'Cat Typing GIF' && img.closest('.msg').querySelector('.bot-attr').textContent === 'Powered by GIPHY';
		})()`)
		alice.send(t, "@forecast Berlin")
		alice.waitJS(t, "the forecast card", textIs(".bot-forecast .fc-place", "Berlin, Land Berlin, Germany")+
			` && document.querySelectorAll('.bot-forecast .fc-days li').length === 3`+
			` && document.querySelector('.bot-forecast .fc-days li').textContent === 'Todaylight rain3–9 °C'`)
		alice.send(t, "@forecast <b>Atlantis</b>")
		alice.waitJS(t, "the failure as text", fmt.Sprintf(`[...document.querySelectorAll('.msg.bot .bot-error')].some((p) => p.textContent === %s)`+
			` && !document.querySelector('.msg.bot b')`, js(`No place called "<b>Atlantis</b>" found.`)))
		alice.screenshot(t, "bots.png")
		// The user's own messages came first, as sent.
		var order []string
		alice.eval(t, `[...document.querySelectorAll('#messages .msg')].map((m) => m.classList.contains('bot') ? 'bot' : m.querySelector('.text').textContent)`, &order)
		want := []string{"@giphy funny cat", "bot", "@forecast Berlin", "bot", "@forecast <b>Atlantis</b>", "bot"}
		if fmt.Sprint(order) != fmt.Sprint(want) {
			t.Fatalf("messages %q, want %q", order, want)
		}
	})

	t.Run("the server pushes to the closed page", func(t *testing.T) {
		alice.do(t, chromedp.Navigate("about:blank"))
		waitOffline(t, srv, aliceName)
		bob.ok("SendMessage", map[string]any{"CID": cid, "content": "are you there?"})
		p := receive(t, rig.wp.Received, "the web push")
		var pl webPushPayload
		if err := json.Unmarshal(p.Plaintext, &pl); err != nil || p.ID != webSub || pl.CID != cid ||
			pl.Title != bob.name+" - are you there?" {
			t.Fatalf("web push to %s: %q (%v)", p.ID, p.Plaintext, err)
		}
		// The browser's device id from registration is not a push target and stays.
		if u, err := srv.db.getUser(context.Background(), aliceName); err != nil || len(u.Devices["web"]) != 1 {
			t.Fatalf("device ids after the push: %v (%v)", u, err)
		}
	})
}
