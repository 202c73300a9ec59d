package main

// Browser test of the web client's sync after a connection comes back (DESIGN §3.2, SyncConvos):
// many conversations and a long catch-up are read a batch of conversations per request, page by
// page, and nothing is missed or shown twice.

import (
	"fmt"
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestWebSyncsManyConversationsAfterReconnect(t *testing.T) {
	browser := startBrowser(t)
	srv := startServer(t, testConfig(t))
	base := "http://" + srv.addr
	carol := newPage(t, browser, base, 1280, 800)
	carol.register(t, uniqueName("carol"))
	dave := register(t, srv, "dave")
	const title = "Long catch-up"
	long := longConvoWith(t, dave, carol, title)
	// A sync point in it: the client's sync point moves only with history pages, which a login
	// reads for a conversation with news.
	dave.ok("SendMessage", map[string]any{"CID": long, "content": "Before you left"})
	carol.waitJS(t, "the first message", fmt.Sprintf(`pingedchat.chat.store.ordered(%s).length === 1`, js(long)))
	carol.do(t, chromedp.Reload())
	carol.waitJS(t, "a sync point after the reload", fmt.Sprintf(`document.body.dataset.conn === 'online' &&
		pingedchat.chat.needsSync.size === 0 && !!(pingedchat.chat.store.convo(%s) || {}).syncedTo`, js(long)))

	carol.setNetwork(t, true, []*network.BlockPattern{{URLPattern: base + "/ws/*", Block: true}})
	carol.waitJS(t, "carol offline", `document.body.dataset.conn === 'offline'`)
	// Meanwhile: 120 messages in the conversation carol has (three pages), and more new
	// conversations than one SyncConvos asks for, each with a message.
	const catchUp, newConvos = 2*pageSize + 20, syncConvosMax + 2
	for i := range catchUp {
		m := &Message{CID: long, FUsername: dave.name, Content: fmt.Sprintf("Catch-up %03d", i), Kind: "text"}
		if _, err := srv.db.insertMessage(t.Context(), srv.db.pool, m); err != nil {
			t.Fatal(err)
		}
	}
	var fresh []string
	for i := range newConvos {
		rep := dave.ok("CreateConversation", map[string]any{"Name": fmt.Sprintf("New %02d", i), "Members": []string{carol.name}})
		cid, _ := rep["CID"].(string)
		dave.ok("SendMessage", map[string]any{"CID": cid, "content": fmt.Sprintf("Hello from %02d", i)})
		fresh = append(fresh, cid)
	}
	syncs := func() float64 {
		return testutil.ToFloat64(srv.db.metrics.commands.WithLabelValues("SyncConvos", outcomeOK))
	}
	gets := func() float64 {
		return testutil.ToFloat64(srv.db.metrics.commands.WithLabelValues("GetConvoData", outcomeOK))
	}
	syncsBefore, getsBefore := syncs(), gets()

	carol.setNetwork(t, false, nil)
	carol.waitJS(t, "carol online and synced", `document.body.dataset.conn === 'online' && pingedchat.chat.needsSync.size === 0`)
	carol.waitJS(t, "every catch-up message once, in order", fmt.Sprintf(`(() => {
		const texts = pingedchat.chat.store.ordered(%s).map((m) => m.content).filter((c) => c.startsWith('Catch-up '));
		return texts.length === %d && new Set(texts).size === texts.length && texts.every((c, i) => i === 0 || texts[i - 1] < c);
	})()`, js(long), catchUp))
	for i, cid := range fresh {
		carol.waitJS(t, fmt.Sprintf("new conversation %d with its message", i), fmt.Sprintf(`(() => {
			const s = pingedchat.chat.store, c = s.convo(%s);
			return !!c && c.Name === %[2]s && s.ordered(%[1]s).some((m) => m.content === %[3]s);
		})()`, js(cid), js(fmt.Sprintf("New %02d", i)), js(fmt.Sprintf("Hello from %02d", i))))
	}
	// 23 conversations (3 pages for one of them) in a few SyncConvos, none one at a time.
	if n := syncs() - syncsBefore; n < 2 || n > 6 {
		t.Fatalf("the sync took %v SyncConvos requests, want 2 to 6 (20 conversations and 100 messages a reply)", n)
	}
	if n := gets() - getsBefore; n != 0 {
		t.Fatalf("the sync read %v conversations one at a time with GetConvoData", n)
	}
	carol.openConvo(t, title)
	carol.waitJS(t, "the newest catch-up message on screen", messageCount(fmt.Sprintf("Catch-up %03d", catchUp-1))+` === 1`)
	carol.screenshot(t, "sync-catch-up.png")
}

// A resume the server refuses as busy (after a restart everyone logs in at once) shows as the
// connection's state, not as an error, and logs in by itself once the server admits it.
func TestWebBusyLoginIsAStateNotAnError(t *testing.T) {
	browser := startBrowser(t)
	srv := startServer(t, testConfig(t))
	erin := newPage(t, browser, "http://"+srv.addr, 1280, 800)
	erin.register(t, uniqueName("erin"))

	// Every login place taken and the queue full: the next login is refused at once.
	g := srv.db.limits.logins
	for range cap(g.places) {
		g.places <- struct{}{}
	}
	g.waiting.Add(g.max)
	released := false
	release := func() {
		if released {
			return
		}
		released = true
		g.waiting.Add(-g.max)
		for range cap(g.places) {
			g.leave()
		}
	}
	defer release()

	erin.do(t, chromedp.Reload())
	erin.waitJS(t, "the busy state", `document.body.dataset.conn === 'busy' &&
		document.getElementById('conn-text').textContent.includes('Server busy')`)
	var toasts string
	erin.eval(t, `[...document.querySelectorAll('#toasts .toast')].map((e) => e.textContent).join(' | ')`, &toasts)
	if toasts != "" {
		t.Fatalf("a busy server showed toasts: %s", toasts)
	}
	erin.screenshot(t, "busy-login.png")
	release()
	erin.waitJS(t, "logged in once admitted", `document.body.dataset.conn === 'online'`)
}
