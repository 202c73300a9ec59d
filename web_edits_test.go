package main

// Browser test of replies, mentions, reactions, edits, deletions and search (actions.js,
// search.js): two people in two browser sessions, each action made through the UI on one side
// and seen on the other. One server, one browser; the helpers are web_test.go's and
// web_settings_test.go's.

import (
	"fmt"
	"testing"
	"time"
)

// msgLI is an expression for the <li> of the open conversation's message whose text is s.
func msgLI(s string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#messages .msg')].find((li) => (li.querySelector('.text') || {}).textContent === %s)`, js(s))
}

// act opens the actions of the message with text s (as a long press does) and clicks one. A
// message has its actions once the server has it (its acknowledgement may come after the
// other members already see it).
func (p *page) act(t testing.TB, s, action string) {
	t.Helper()
	p.waitJS(t, "the message "+s+" with its actions", fmt.Sprintf(`(() => { const li = %s; return !!(li && li.querySelector(%s)); })()`,
		msgLI(s), js(".msg-actions ."+action)))
	p.eval(t, fmt.Sprintf(`(() => { const li = %s; li.classList.add('show-actions'); li.querySelector(%s).click(); return true; })()`,
		msgLI(s), js(".msg-actions ."+action)), nil)
}

func TestWebEdits(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	srv := startServer(t, testConfig(t))
	base := "http://" + srv.addr
	alice := newPage(t, browser, base, 1280, 800)
	bob := newPage(t, browser, base, 1280, 800)
	aliceName, bobName := uniqueName("alice"), uniqueName("bob")
	const title = "Lunch"

	alice.register(t, aliceName)
	bob.register(t, bobName)
	alice.click(t, "#new-convo-btn")
	alice.waitVisible(t, "#new-convo-dialog")
	alice.typeInto(t, "#new-name", title)
	alice.typeInto(t, "#new-people", bobName)
	alice.click(t, "#new-convo-form button[type=submit]")
	alice.waitJS(t, "the conversation open", textIs("#convo-title", title))
	alice.send(t, "Lunch at noon?")
	alice.send(t, "oops, wrong chat")
	bob.openConvo(t, title)
	bob.waitJS(t, "alice's messages", msgLI("oops, wrong chat"))

	// Reply, with an @-completed mention.
	bob.act(t, "Lunch at noon?", "reply")
	bob.waitJS(t, "the reply bar", `!document.getElementById('reply-bar').hidden && document.getElementById('reply-text').textContent.includes('Lunch at noon?')`)
	bob.typeInto(t, "#composer-input", "@"+aliceName[:3])
	bob.waitJS(t, "the member offered", fmt.Sprintf(`!document.getElementById('mention-list').hidden && `+
		`[...document.querySelectorAll('.mention-option')].some((b) => b.textContent === %s)`, js("@"+aliceName)))
	bob.click(t, ".mention-option")
	bob.typeInto(t, "#composer-input", "sounds good")
	bob.waitJS(t, "the completed name", fmt.Sprintf(`document.getElementById('composer-input').value === %s`, js("@"+aliceName+" sounds good")))
	bob.pressEnter(t)
	reply := "@" + aliceName + " sounds good"
	bob.waitJS(t, "the reply bar gone", `document.getElementById('reply-bar').hidden`)
	for _, p := range []*page{alice, bob} {
		p.waitJS(t, "the reply with its quote", fmt.Sprintf(`(() => { const li = %s; return li && li.dataset.state === 'sent' && `+
			`li.querySelector('.quote-text')?.textContent === 'Lunch at noon?' && li.querySelector('.mention')?.textContent === %s; })()`,
			msgLI(reply), js("@"+aliceName)))
	}
	alice.waitJS(t, "alice sees she is mentioned", msgLI(reply)+`.classList.contains('mentioned')`)
	// The quote shows the original.
	alice.eval(t, msgLI(reply)+`.querySelector('.quote').click()`, nil)
	alice.waitJS(t, "the original flashed", msgLI("Lunch at noon?")+`.classList.contains('flash')`)

	// Reactions: alice reacts to the reply, bob joins through the chip.
	alice.act(t, reply, "react")
	alice.eval(t, msgLI(reply)+`.querySelector('.emoji-btn[aria-label="React with 👍"]').click()`, nil)
	chip := func(n int) string {
		return fmt.Sprintf(`(() => { const c = %s.querySelector('.reactions .react-chip'); return c && c.textContent === %s; })()`, msgLI(reply), js(fmt.Sprint("👍", n)))
	}
	bob.waitJS(t, "alice's reaction", chip(1)+` && `+msgLI(reply)+fmt.Sprintf(`.querySelector('.react-chip').title.includes(%s)`, js(aliceName)))
	bob.eval(t, msgLI(reply)+`.querySelector('.react-chip').click()`, nil)
	alice.waitJS(t, "two reactions", chip(2)+` && `+msgLI(reply)+`.querySelector('.react-chip').getAttribute('aria-pressed') === 'true'`)

	// Edit: Enter saves; the other side sees the new text, marked edited.
	alice.act(t, "Lunch at noon?", "edit")
	alice.waitJS(t, "the editor", `document.activeElement && document.activeElement.classList.contains('edit-input')`)
	alice.eval(t, `document.activeElement.value = ''`, nil)
	alice.typeInto(t, ".edit-input", "Lunch at one?")
	alice.pressEnter(t)
	for _, p := range []*page{alice, bob} {
		p.waitJS(t, "the edited message", msgLI("Lunch at one?")+` && `+msgLI("Lunch at one?")+`.querySelector('.edited') && `+messageCount("Lunch at noon?")+` === 0`)
	}

	// Delete, after confirming: a placeholder stays.
	alice.act(t, "oops, wrong chat", "delete")
	alice.waitVisible(t, "#confirm-dialog")
	alice.click(t, "#confirm-yes")
	for _, p := range []*page{alice, bob} {
		p.waitJS(t, "the placeholder", messageCount("oops, wrong chat")+` === 0 && `+messageCount("Message deleted")+` === 1`)
	}
	bob.waitJS(t, "no actions on another's message but reply, react, copy", fmt.Sprintf(`!%s.querySelector('.act.edit') && !%s.querySelector('.act.delete')`, msgLI("Lunch at one?"), msgLI("Lunch at one?")))
	alice.screenshot(t, "edits-alice.png")
	bob.screenshot(t, "edits-bob.png")

	// Search finds the edited text, not the deleted one, and opens the conversation there.
	bob.typeInto(t, "#search-input", "lunch on")
	bob.pressEnter(t)
	bob.waitJS(t, "searched", `!document.getElementById('search-panel').hidden && document.getElementById('search-status').textContent !== 'Searching…'`)
	bob.screenshot(t, "edits-search.png")
	bob.waitJS(t, "one hit, marked", `document.querySelectorAll('.search-hit').length === 1 && `+
		`[...document.querySelectorAll('.search-hit mark')].map((m) => m.textContent).join(',') === 'Lunch,one'`)
	bob.screenshot(t, "edits-search.png")
	bob.eval(t, `document.querySelector('.search-hit').click()`, nil)
	bob.waitJS(t, "the message shown", msgLI("Lunch at one?")+`.classList.contains('flash')`)
	bob.eval(t, `document.getElementById('search-input').value = ''`, nil)
	bob.typeInto(t, "#search-input", "wrong chat")
	bob.pressEnter(t)
	bob.waitJS(t, "nothing found", textIs("#search-status", "No messages found."))
	t.Logf("browser flow took %s", time.Since(start).Round(time.Millisecond))
}
