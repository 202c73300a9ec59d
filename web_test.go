package main

// Browser tests of the web client (web/, embedded): headless Chromium driven by chromedp, against
// a real server (PostgreSQL, embedded NATS). Two users in two separate browser contexts (separate
// storage, like two people's browsers) register, talk, go offline and come back; more contexts
// log in without websockets. Screenshots go to testdata/artifacts/. PINGED_BROWSER_LOG=1 prints
// the pages' console output even when the test passes.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which ./add_deps.sh installs. The tests never use a browser
// that a tool downloads.
const chromiumPath = "/usr/bin/chromium"

const (
	browserWait  = 15 * time.Second // the longest any one condition may take
	artifactsDir = "testdata/artifacts"
)

// startBrowser launches one headless Chromium for the test, with a fresh profile and the
// background networking that would hammer a machine without internet turned off.
func startBrowser(t testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is needed for the web client's tests and is missing at %s: run ./add_deps.sh (it installs Debian's chromium)", chromiumPath)
	}
	profile := t.TempDir()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.UserDataDir(profile),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider"),
		// Several windows run side by side; none may be throttled as a background one.
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.WindowSize(1280, 800),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Registered after TempDir, so it runs before the profile is removed: the browser is gone.
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium (%s): %v; ./add_deps.sh installs it", chromiumPath, err)
	}
	return ctx
}

// page is one person's browser: its own browser context (storage, IndexedDB, localStorage).
type page struct {
	name string // the username, once registered
	ctx  context.Context
	base string

	mu   sync.Mutex
	logs []string
}

func newPage(t testing.TB, browser context.Context, base string, width, height int64) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	p := &page{ctx: ctx, base: base}
	// The first action creates the tab; it must not run under a per-call timeout.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(width, height)); err != nil {
		t.Fatal(err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.logs = append(p.logs, m.String())
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("PINGED_BROWSER_LOG") != "" {
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, l := range p.logs {
				t.Logf("console of %s: %s", p.label(), l)
			}
		}
	})
	return p
}

func (p *page) label() string {
	if p.name == "" {
		return "browser"
	}
	return p.name
}

// do runs actions with a deadline.
func (p *page) do(t testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", p.label(), err)
	}
}

// eval evaluates a JavaScript expression into out (awaiting a promise).
func (p *page) eval(t testing.TB, expr string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, awaitPromise))
	if err != nil {
		t.Fatalf("%s: evaluating %s: %v", p.label(), expr, err)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s: evaluating %s: decoding %s: %v", p.label(), expr, raw, err)
		}
	}
}

func awaitPromise(params *runtime.EvaluateParams) { params.AwaitPromise = new(true) }

// waitJS waits until a JavaScript expression is truthy, polling it.
func (p *page) waitJS(t testing.TB, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(browserWait)
	var err error
	for time.Now().Before(deadline) {
		// A navigation (a reload, a logout) ends a poll early: poll again in the new document.
		ctx, cancel := context.WithDeadline(p.ctx, deadline.Add(time.Second))
		_, err = chromedp.Run(ctx, chromedp.Poll[bool](fmt.Sprintf("!!(%s)", expr),
			chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(time.Until(deadline))))
		cancel()
		if err == nil || errors.Is(err, chromedp.ErrPollingTimeout) {
			break
		}
	}
	if err != nil {
		var state string
		sctx, scancel := context.WithTimeout(p.ctx, 2*time.Second)
		defer scancel()
		state, _ = chromedp.Run(sctx, chromedp.Evaluate[string](
			`document.body.dataset.conn + " | " + document.getElementById('toasts').innerText`))
		t.Fatalf("%s: waiting for %s (%s): %v; connection and toasts: %s", p.label(), what, expr, err, state)
	}
}

func (p *page) waitVisible(t testing.TB, sel string) {
	t.Helper()
	p.do(t, chromedp.WaitVisible(chromedp.CSS(sel)))
}

// typeInto focuses a field and types text into it (as an input method would: one input event).
func (p *page) typeInto(t testing.TB, sel, text string) {
	t.Helper()
	p.do(t, chromedp.Focus(chromedp.CSS(sel)), chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		_, err := cdp.Call(ctx, tgt, input.InsertText, input.InsertTextParams{Text: text})
		return err
	}))
}

// pressEnter sends the Enter key as a keyboard does (keydown and keyup, no separate character
// event), so the composer's Enter-to-send is what is tested.
func (p *page) pressEnter(t testing.TB) {
	t.Helper()
	p.do(t, chromedp.Func(func(ctx context.Context, tgt *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			_, err := cdp.Call(ctx, tgt, input.DispatchKeyEvent, input.DispatchKeyEventParams{
				Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 13, NativeVirtualKeyCode: 13,
			})
			if err != nil {
				return err
			}
		}
		return nil
	}))
}

// send writes a message in the open conversation and presses Enter.
func (p *page) send(t testing.TB, text string) {
	t.Helper()
	p.typeInto(t, "#composer-input", text)
	p.pressEnter(t)
}

func (p *page) screenshot(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("%s: screenshot: %v", p.label(), err)
	}
	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(artifactsDir, name), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// js quotes a Go string as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// messageCount is an expression counting the open conversation's messages whose text is exactly s.
func messageCount(s string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages .msg .text')].filter((e) => e.textContent === %s).length`, js(s))
}

// messageState is an expression for the delivery state of the message with text s (empty if none).
func messageState(s string) string {
	return fmt.Sprintf(`([...document.querySelectorAll('#messages .msg')].find((li) => li.querySelector('.text').textContent === %s) || {dataset: {}}).dataset.state || ''`, js(s))
}

// register fills in the registration form.
func (p *page) register(t testing.TB, name string) {
	t.Helper()
	p.do(t, chromedp.Navigate(p.base+"/"))
	p.waitVisible(t, "#auth-view")
	p.do(t, chromedp.Click(chromedp.ID("tab-register")))
	p.waitVisible(t, "#register-form")
	p.typeInto(t, "#reg-username", name)
	p.typeInto(t, "#reg-password", testPassword)
	p.typeInto(t, "#reg-a1", "Rex")
	p.typeInto(t, "#reg-a2", "Lyon")
	p.do(t, chromedp.Click(chromedp.CSS("#register-form button[type=submit]")))
	p.name = name
	p.waitJS(t, "the chat view after registering", `!document.getElementById('chat-view').hidden && document.body.dataset.conn === 'online'`)
	var transport string
	p.eval(t, `document.body.dataset.transport`, &transport)
	if transport != "websocket" {
		t.Errorf("%s: SockJS chose %q; websocket is the default where it works", name, transport)
	}
}

// openConvo clicks a conversation in the list.
func (p *page) openConvo(t testing.TB, title string) {
	t.Helper()
	sel := fmt.Sprintf(`[...document.querySelectorAll('.convo-item')].find((b) => b.querySelector('.ci-name').textContent === %s)`, js(title))
	p.waitJS(t, "conversation "+title+" in the list", sel)
	p.eval(t, sel+".click()", nil)
	p.waitJS(t, "conversation "+title+" open", fmt.Sprintf(`!document.getElementById('convo').hidden && document.getElementById('convo-title').textContent === %s`, js(title)))
}

// storedMessages counts, through a Go client of the server, the stored messages with text s.
func storedMessages(c *client, cid, s string) int {
	rep := c.ok("GetAllConvoData", map[string]any{"CID": cid})
	msgs, _ := rep["Messages"].([]any)
	n := 0
	for _, m := range msgs {
		if mm, _ := m.(map[string]any); mm["content"] == s {
			n++
		}
	}
	return n
}

func TestWebClient(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t) // first: without Chromium, fail before anything else starts
	srv := startServer(t, testConfig(t))
	base := "http://" + srv.addr

	alice := newPage(t, browser, base, 1280, 800) // desktop
	bob := newPage(t, browser, base, 390, 844)    // phone
	aliceName, bobName := uniqueName("alice"), uniqueName("bob")
	var cid string
	const title = "Weekend plans"

	if !t.Run("register", func(t *testing.T) {
		alice.do(t, chromedp.Navigate(base+"/"))
		alice.waitVisible(t, "#login-form")
		alice.screenshot(t, "login.png")
		alice.register(t, aliceName)
		bob.register(t, bobName)
	}) {
		return
	}

	if !t.Run("create conversation", func(t *testing.T) {
		alice.do(t, chromedp.Click(chromedp.ID("new-convo-btn")))
		alice.waitVisible(t, "#new-convo-dialog")
		// The server's refusal reaches the user in words.
		alice.typeInto(t, "#new-people", "nobody_"+aliceName)
		alice.do(t, chromedp.Click(chromedp.CSS("#new-convo-form button[type=submit]")))
		alice.waitJS(t, "the server's error in the dialog", fmt.Sprintf(`document.querySelector('#new-convo-form .form-error').textContent === %s`,
			js("Couldn't create the conversation: No such user: nobody_"+aliceName+".")))
		alice.do(t, chromedp.Click(chromedp.CSS(`#new-chips button`))) // unpick the unknown name
		alice.typeInto(t, "#new-name", title)
		alice.typeInto(t, "#new-people", bobName)
		alice.pressEnter(t) // makes the name a chip
		alice.waitJS(t, "bob picked", fmt.Sprintf(`document.querySelector('#new-chips .chip span').textContent === %s`, js(bobName)))
		alice.do(t, chromedp.Click(chromedp.CSS("#new-convo-form button[type=submit]")))
		alice.waitJS(t, "the new conversation open", fmt.Sprintf(`document.getElementById('convo-title').textContent === %s`, js(title)))
		alice.eval(t, `pingedchat.chat.openCid`, &cid)
		if !validCID(cid) {
			t.Fatalf("open conversation id %q", cid)
		}
		bob.openConvo(t, title)
	}) {
		return
	}

	if !t.Run("live messages, typing and read receipts", func(t *testing.T) {
		hello := "Hi " + bobName + "! Saturday at 10? 🌞"
		alice.send(t, hello)
		alice.waitJS(t, "alice's message acknowledged", messageState(hello)+` === 'sent'`)
		bob.waitJS(t, "alice's message arriving live", messageCount(hello)+` === 1`)

		bob.typeInto(t, "#composer-input", "Sounds")
		alice.waitJS(t, "bob typing", fmt.Sprintf(`document.getElementById('typing').textContent === %s`, js(bobName+" is typing…")))
		bob.typeInto(t, "#composer-input", " good!\nI'll bring coffee.")
		bob.pressEnter(t)
		reply := "Sounds good!\nI'll bring coffee."
		bob.waitJS(t, "bob's reply acknowledged", messageState(reply)+` === 'sent'`)
		alice.waitJS(t, "bob's reply arriving live", messageCount(reply)+` === 1`)
		alice.waitJS(t, "the typing line cleared by the message", `document.getElementById('typing').textContent === ''`)
		// Each has seen the other's newest message: the read receipts say so.
		alice.waitJS(t, "bob's read receipt", fmt.Sprintf(`[...document.querySelectorAll('#messages .receipts .seen')].some((e) => e.textContent === %s)`, js("Seen by "+bobName)))
		bob.waitJS(t, "alice's read receipt", fmt.Sprintf(`[...document.querySelectorAll('#messages .receipts .seen')].some((e) => e.textContent === %s)`, js("Seen by "+aliceName)))
		alice.send(t, "Great, see you there.")
		bob.waitJS(t, "the third message", messageCount("Great, see you there.")+` === 1`)
		alice.screenshot(t, "chat.png")
		bob.screenshot(t, "chat-phone.png")
	}) {
		return
	}

	if !t.Run("members and rename", func(t *testing.T) {
		carol := register(t, srv, "carol")
		alice.do(t, chromedp.Click(chromedp.ID("members-btn")))
		alice.waitVisible(t, "#members-dialog")
		alice.typeInto(t, "#add-people", carol.name)
		alice.do(t, chromedp.Click(chromedp.CSS("#add-form button[type=submit]")))
		carol.waitPush("AddUsersToConversation", func(p map[string]any) bool {
			return p["cmd"] == "AddUsersToConversation" && p["CID"] == cid
		})
		alice.waitJS(t, "carol listed", fmt.Sprintf(`[...document.querySelectorAll('#member-list .member-name')].some((e) => e.textContent === %s)`, js(carol.name)))
		alice.screenshot(t, "members.png")
		alice.eval(t, fmt.Sprintf(`document.querySelector('#member-list button[aria-label=%s]').click()`, js("Remove "+carol.name)), nil)
		alice.waitVisible(t, "#confirm-dialog")
		alice.do(t, chromedp.Click(chromedp.ID("confirm-yes")))
		carol.waitPush("RemoveUserFromConversation", func(p map[string]any) bool {
			removed, _ := p["Removed"].([]any)
			return p["cmd"] == "RemoveUserFromConversation" && len(removed) == 1 && removed[0] == carol.name
		})
		alice.waitJS(t, "carol gone from the list", fmt.Sprintf(`![...document.querySelectorAll('#member-list .member-name')].some((e) => e.textContent === %s)`, js(carol.name)))
		// The change is in both timelines, as a system line, not a message.
		alice.waitJS(t, "the removal in the timeline", fmt.Sprintf(`[...document.querySelectorAll('#messages .event')].some((e) => e.textContent.startsWith(%s))`, js("You removed "+carol.name)))
		bob.waitJS(t, "the removal in bob's timeline", fmt.Sprintf(`[...document.querySelectorAll('#messages .event')].some((e) => e.textContent.startsWith(%s))`, js(aliceName+" removed "+carol.name)))
		alice.do(t, chromedp.Click(chromedp.CSS("#members-dialog [data-close]")))

		// A name that looks like markup stays text, in both users' views.
		evil := `Plans <b>bold</b><img src=x onerror="window.__xss=3">`
		alice.do(t, chromedp.Click(chromedp.ID("rename-btn")))
		alice.waitVisible(t, "#rename-dialog")
		alice.eval(t, `document.getElementById('rename-input').select()`, nil)
		alice.typeInto(t, "#rename-input", evil)
		alice.do(t, chromedp.Click(chromedp.CSS("#rename-form button[type=submit]")))
		alice.waitJS(t, "renamed", fmt.Sprintf(`document.getElementById('convo-title').textContent === %s`, js(evil)))
		bob.waitJS(t, "renamed for bob", fmt.Sprintf(`document.getElementById('convo-title').textContent === %s`, js(evil)))
		for _, p := range []*page{alice, bob} {
			var n int
			p.eval(t, `document.querySelectorAll('#convo-title *, .ci-name *').length`, &n)
			if n != 0 {
				t.Errorf("%s: the conversation name became %d elements", p.name, n)
			}
		}
	}) {
		return
	}

	if !t.Run("message content is text, never HTML", func(t *testing.T) {
		payload := `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>not bold</b>`
		alice.send(t, payload)
		bob.waitJS(t, "the payload as text", messageCount(payload)+` === 1`)
		alice.waitJS(t, "the payload acknowledged", messageState(payload)+` === 'sent'`)
		for _, p := range []*page{alice, bob} {
			var res struct {
				XSS      string `json:"xss"`
				Elements int    `json:"elements"`
			}
			p.eval(t, `({xss: typeof window.__xss, elements: document.querySelectorAll('#messages img, #messages script, #messages b, .ci-last *').length})`, &res)
			if res.XSS != "undefined" || res.Elements != 0 {
				t.Errorf("%s: window.__xss is %s and the messages hold %d img/script/b elements", p.name, res.XSS, res.Elements)
			}
		}
	}) {
		return
	}

	if !t.Run("offline queue, reload from IndexedDB, exactly-once delivery", func(t *testing.T) {
		aliceGo := login(t, srv, aliceName)
		bobGo := login(t, srv, bobName) // sees what bob's sessions are sent
		wsPattern := []*network.BlockPattern{{URLPattern: base + "/ws/*", Block: true}}

		// Cut bob off: the browser reports offline (the client drops its socket at once) and no
		// request may reach the SockJS endpoint.
		bob.setNetwork(t, true, wsPattern)
		bob.waitJS(t, "bob offline", `document.body.dataset.conn === 'offline'`)

		// alice writes meanwhile; bob's other session gets it, bob's browser does not.
		missed := "Did you see the forecast? Rain until noon."
		alice.send(t, missed)
		alice.waitJS(t, "alice's message acknowledged", messageState(missed)+` === 'sent'`)
		bobGo.waitPush("alice's message to bob's Go session", func(p map[string]any) bool {
			return p["cmd"] == "SendMessage" && p["content"] == missed
		})
		var n int
		bob.eval(t, messageCount(missed), &n)
		if n != 0 {
			t.Fatalf("bob's browser received a message while offline: its socket did not drop")
		}

		queued := "Written offline — send when you can ✈️"
		bob.send(t, queued)
		bob.waitJS(t, "the message queued", messageState(queued)+` === 'pending'`)
		bob.screenshot(t, "offline-phone.png")
		if got := storedMessages(aliceGo, cid, queued); got != 0 {
			t.Fatalf("the server stored the offline message %d times before bob reconnected", got)
		}

		// Reload while the server is still out of reach: the history and the queued message come
		// from IndexedDB.
		bob.eval(t, `pingedchat.flush()`, nil)
		bob.setNetwork(t, false, wsPattern)
		bob.do(t, chromedp.Reload())
		bob.waitJS(t, "history from IndexedDB", `document.querySelectorAll('#messages .msg').length >= 4`)
		bob.waitJS(t, "the queued message still queued", messageState(queued)+` === 'pending'`)
		var state string
		bob.eval(t, `document.body.dataset.conn`, &state)
		if state == "online" || state == "syncing" {
			t.Fatalf("bob logged in although the SockJS endpoint is blocked (state %s)", state)
		}

		// Back online: the outbox is sent, and the sync brings what was missed.
		bob.setNetwork(t, true, nil)
		bob.waitJS(t, "bob offline once more", `document.body.dataset.conn === 'offline'`)
		bob.setNetwork(t, false, nil)
		bob.waitJS(t, "bob online again", `document.body.dataset.conn === 'online'`)
		bob.waitJS(t, "the queued message acknowledged", messageState(queued)+` === 'sent'`)
		bob.waitJS(t, "the missed message synced", messageCount(missed)+` === 1`)
		alice.waitJS(t, "the queued message delivered", messageCount(queued)+` === 1`)
		if got := storedMessages(aliceGo, cid, queued); got != 1 {
			t.Fatalf("the server stored the offline message %d times, want exactly once", got)
		}
		bob.eval(t, messageCount(queued), &n)
		if n != 1 {
			t.Fatalf("bob shows his offline message %d times, want once", n)
		}
	}) {
		return
	}

	if !t.Run("reload shows history at once", func(t *testing.T) {
		alice.do(t, chromedp.Reload())
		alice.waitJS(t, "history after reload", messageCount("Great, see you there.")+` === 1`)
		alice.waitJS(t, "alice online again", `document.body.dataset.conn === 'online'`)
		alice.send(t, "Still here after a reload.")
		bob.waitJS(t, "message after alice's reload", messageCount("Still here after a reload.")+` === 1`)
	}) {
		return
	}

	if !t.Run("a lost push is fetched when the server says Resync", func(t *testing.T) {
		// Stored, but its push lost (as when NATS was away): nothing shows until the server tells
		// the clients to resync; then it does, once, without a reload.
		lost := "Sent while the fan-out was down."
		m := &Message{CID: cid, FUsername: bobName, Content: lost, Kind: "text", ClientID: "lost-1"}
		if _, err := srv.db.insertMessage(t.Context(), srv.db.pool, m); err != nil {
			t.Fatal(err)
		}
		alice.send(t, "A later message, pushed live.")
		bob.waitJS(t, "the later message", messageCount("A later message, pushed live.")+` === 1`)
		var shown int
		alice.eval(t, messageCount(lost), &shown)
		if shown != 0 {
			t.Fatalf("the lost message showed without a resync")
		}
		srv.db.resyncSessions()
		alice.waitJS(t, "the lost message after Resync", messageCount(lost)+` === 1`)
		bob.waitJS(t, "the lost message after Resync", messageCount(lost)+` === 1`)
	}) {
		return
	}

	for _, tr := range []struct{ param, want string }{
		{"xhr-streaming,xhr-polling", "xhr-streaming"},
		{"xhr-polling", "xhr-polling"},
	} {
		if !t.Run("without websockets: "+tr.want, func(t *testing.T) {
			other := newPage(t, browser, base, 1024, 700)
			other.name = aliceName + " (" + tr.want + ")"
			other.do(t, chromedp.Navigate(base+"/?transports="+tr.param))
			other.waitVisible(t, "#login-form")
			other.typeInto(t, "#login-username", aliceName)
			other.typeInto(t, "#login-password", "not the password")
			other.do(t, chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
			other.waitJS(t, "the login error", `document.querySelector('#login-form .form-error').textContent === "Couldn't log in: Invalid username or password."`)
			other.eval(t, `document.getElementById('login-password').select()`, nil)
			other.typeInto(t, "#login-password", testPassword)
			other.do(t, chromedp.Click(chromedp.CSS("#login-form button[type=submit]")))
			other.waitJS(t, "logged in", `document.body.dataset.conn === 'online'`)
			var transport string
			other.eval(t, `document.body.dataset.transport`, &transport)
			if transport != tr.want {
				t.Fatalf("SockJS transport %q, want %q", transport, tr.want)
			}
			other.openConvo(t, `Plans <b>bold</b><img src=x onerror="window.__xss=3">`)
			out := "Sent over " + tr.want
			other.send(t, out)
			other.waitJS(t, "acknowledged over "+tr.want, messageState(out)+` === 'sent'`)
			bob.waitJS(t, "arriving from "+tr.want, messageCount(out)+` === 1`)
			back := "Received over " + tr.want + "?"
			bob.send(t, back)
			other.waitJS(t, "a reply over "+tr.want, messageCount(back)+` === 1`)
		}) {
			return
		}
	}
	if !t.Run("scroll-back and leave", func(t *testing.T) {
		// dave writes 70 messages before adding alice: her first sync fetches the latest 50, and
		// the 20 before them come from GetMoreConvoMessages when she scrolls to the top.
		dave := register(t, srv, "dave")
		rep := dave.ok("CreateConversation", map[string]any{"Name": "History", "Members": []string{}})
		history, _ := rep["CID"].(string)
		for i := 1; i <= 70; i++ {
			dave.ok("SendMessage", map[string]any{"CID": history, "content": fmt.Sprintf("History %d", i), "client_id": fmt.Sprintf("h%d", i)})
		}
		dave.ok("AddUsersToConversation", map[string]any{"CID": history, "Members": []string{aliceName}})
		alice.openConvo(t, "History")
		// 70 messages and the event of alice being added: the latest page of 50 has 49 of them.
		alice.waitJS(t, "the latest page", `document.querySelectorAll('#messages .msg').length === 49 && `+messageCount("History 70")+` === 1 && document.querySelectorAll('#messages .event').length === 1`)
		alice.eval(t, `document.getElementById('scroller').scrollTop = 0`, nil)
		alice.waitJS(t, "older messages from the server", `document.querySelectorAll('#messages .msg').length === 70 && `+messageCount("History 1")+` === 1`)
		alice.waitJS(t, "the start of the conversation", `document.getElementById('history-note').textContent === 'This is the start of the conversation.'`)

		alice.do(t, chromedp.Click(chromedp.ID("members-btn")))
		alice.waitVisible(t, "#members-dialog")
		alice.do(t, chromedp.Click(chromedp.ID("leave-btn")))
		alice.waitVisible(t, "#confirm-dialog")
		alice.do(t, chromedp.Click(chromedp.ID("confirm-yes")))
		dave.waitPush("alice leaving", func(p map[string]any) bool {
			removed, _ := p["Removed"].([]any)
			return p["cmd"] == "RemoveUserFromConversation" && len(removed) == 1 && removed[0] == aliceName
		})
		alice.waitJS(t, "History gone from the list", `![...document.querySelectorAll('.ci-name')].some((e) => e.textContent === 'History')`)
	}) {
		return
	}

	t.Run("logout", func(t *testing.T) {
		var session string
		bob.eval(t, `JSON.parse(localStorage.getItem('pingedchat.auth')).session`, &session)
		bob.do(t, chromedp.Click(chromedp.ID("back-btn")))
		bob.do(t, chromedp.Click(chromedp.ID("logout-btn")))
		bob.waitVisible(t, "#confirm-dialog")
		bob.do(t, chromedp.Click(chromedp.ID("confirm-yes")))
		bob.waitJS(t, "the login form after logout", `!document.getElementById('auth-view').hidden && document.getElementById('chat-view').hidden`)
		var saved string
		bob.eval(t, `localStorage.getItem('pingedchat.auth') || ''`, &saved)
		if saved != "" {
			t.Errorf("the session survived logout: %s", saved)
		}
		// The session token is revoked on the server too.
		c := dialRaw(t, srv)
		c.fails("ValidateUser", map[string]any{"username": bobName, "session": session}, "Session expired")
	})
	t.Logf("browser tests took %v", time.Since(start).Round(time.Millisecond))
}

// setNetwork emulates the browser going offline or online, and blocks the given URL patterns.
func (p *page) setNetwork(t testing.TB, offline bool, blocked []*network.BlockPattern) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	if blocked == nil {
		blocked = []*network.BlockPattern{}
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: blocked}); err != nil {
		t.Fatal(err)
	}
	state := network.OverrideNetworkStateParams{Offline: offline, DownloadThroughput: -1, UploadThroughput: -1}
	if _, err := chromedp.Call(ctx, network.OverrideNetworkState, state); err != nil {
		t.Fatal(err)
	}
}
