package main

// Browser test of what issue 25's hardening shows users: names with hidden characters refused
// with the server's words, message bodies shown with their own direction (dir="auto", so their
// bidirectional controls end with them), forged file names shown without hidden characters, a
// reaction changed too often, and a search that took too long.

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestWebHardening(t *testing.T) {
	browser := startBrowser(t)
	cfg := testConfig(t)
	cfg.SearchTimeout = 300 * time.Millisecond
	srv := startServer(t, cfg)
	alice := newPage(t, browser, "http://"+srv.addr, 1280, 800)
	aliceName := uniqueName("alice")
	alice.register(t, aliceName)
	bob := register(t, srv, "bob")
	raw := login(t, srv, aliceName)

	// A conversation's name with U+202E: the dialog says why it is refused.
	alice.click(t, "#new-convo-btn")
	alice.waitVisible(t, "#new-convo-dialog")
	alice.eval(t, `document.getElementById('new-name').value = 'Plans\u202Ecod.exe'`, nil)
	alice.typeInto(t, "#new-people", bob.name)
	alice.click(t, "#new-convo-form button[type=submit]")
	alice.waitJS(t, "the refusal in the dialog", `document.querySelector('#new-convo-form .form-error').textContent.includes('may not contain control characters or invisible formatting characters')`)
	alice.eval(t, `document.getElementById('new-convo-dialog').close()`, nil)

	cid := newConvo(t, raw, "Bidi", bob)
	const body = "abc \u202Edef\u202C ghi"
	ack := raw.ok("SendMessage", map[string]any{"CID": cid, "content": body})
	raw.ok("SendMessage", map[string]any{"CID": cid, "content": `{"file":{"url":"/files/0123456789abcdef0123456789abcdef","name":"pay\u202Efdp.exe","size":10,"type":"application/pdf"}}`})
	alice.openConvo(t, "Bidi")
	alice.waitJS(t, "the body, with its own direction", fmt.Sprintf(`(() => { const p = %s?.querySelector('.text'); return p && p.dir === 'auto'; })()`, msgLI(body)))
	alice.waitJS(t, "the forged file name without its hidden character", `(() => { const n = document.querySelector('#messages .file-name'); return n && n.textContent === 'payfdp.exe' && n.dir === 'auto'; })()`)

	// Reactions: ten changes by alice elsewhere, then the eleventh in the page is refused.
	for i := range reactionBurst {
		raw.ok("React", map[string]any{"CID": cid, "ID": ack["id"], "M_time": ack["m_time"], "emoji": "👍", "on": i%2 == 0})
	}
	alice.act(t, body, "react")
	alice.eval(t, msgLI(body)+`.querySelector('.emoji-btn[aria-label="React with 👍"]').click()`, nil)
	alice.waitJS(t, "the refusal", `document.getElementById('toasts').innerText.includes('You are changing your reaction to this message too often')`)

	// A search held up past -search-timeout says so in the search panel's status.
	tx, err := testPool(t).Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(context.Background(), "LOCK TABLE message_search IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	alice.typeInto(t, "#search-input", "ghi")
	alice.pressEnter(t)
	alice.waitJS(t, "the search's answer", `document.getElementById('search-status').textContent.includes('The search took too long; try more specific words.')`)
	alice.screenshot(t, "hardening-search.png")
	if err := tx.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	alice.pressEnter(t)
	alice.waitJS(t, "the search's hit", textIs("#search-status", "1 message found"))
	var role string
	alice.eval(t, `document.getElementById('search-status').getAttribute('role')`, &role)
	if !strings.Contains(role, "status") {
		t.Fatalf("search status role %q: a screen reader must hear it", role)
	}
}
