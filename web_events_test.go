package main

// Browser test of timeline events: a member removed by someone else reads it in the timeline,
// keeps the conversation readable (without a composer) across a reload, and clears it.

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

func TestWebRemovedMemberKeepsTheTimeline(t *testing.T) {
	browser := startBrowser(t)
	srv := startServer(t, testConfig(t))
	alice := newPage(t, browser, "http://"+srv.addr, 1280, 800)
	aliceName := uniqueName("alice")
	alice.register(t, aliceName)
	bob := register(t, srv, "bob")
	rep := bob.ok("CreateConversation", map[string]any{"Name": "Book club", "Members": []string{aliceName}})
	cid := rep["CID"].(string)
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "Chapter 3 by Friday"})
	alice.openConvo(t, "Book club")
	bob.ok("ChangeConvoName", map[string]any{"CID": cid, "Name": "Book club 2"})
	alice.waitJS(t, "the rename as a system line", fmt.Sprintf(`[...document.querySelectorAll('#messages .event')].some((e) => e.textContent.startsWith(%s))`,
		js(bob.name+" renamed the conversation to “Book club 2”")))

	bob.ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": aliceName})
	removedLine := fmt.Sprintf(`[...document.querySelectorAll('#messages .event')].some((e) => e.textContent.startsWith(%s))`, js(bob.name+" removed you"))
	alice.waitJS(t, "the removal in the timeline", removedLine)
	alice.waitJS(t, "no composer, a notice instead", `document.getElementById('composer').hidden && !document.getElementById('removed-bar').hidden`)
	alice.waitJS(t, "the history still readable", fmt.Sprintf(`[...document.querySelectorAll('#messages .msg .text')].some((e) => e.textContent === %s)`, js("Chapter 3 by Friday")))
	var unread string
	alice.eval(t, `[...document.querySelectorAll('.convo-item .badge')].map((b) => b.textContent).join(',')`, &unread)
	if unread != "" {
		t.Errorf("events counted as unread: %q", unread)
	}
	alice.screenshot(t, "removed-member.png")

	// A reload keeps it (the server no longer lists it), until the user clears it.
	alice.eval(t, `pingedchat.flush()`, nil)
	alice.do(t, chromedp.Reload())
	alice.openConvo(t, "Book club 2")
	alice.waitJS(t, "the removal after a reload", removedLine)
	alice.click(t, "#forget-convo")
	alice.waitJS(t, "the conversation cleared", `![...document.querySelectorAll('.ci-name')].some((e) => e.textContent === 'Book club 2')`)
}
