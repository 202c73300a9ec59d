package main

import (
	"fmt"
	"strings"
	"testing"
)

func TestSearchQuery(t *testing.T) {
	for in, want := range map[string]string{
		"Hello wor":               "'hello' & 'wor':*",
		"  ":                      "",
		"a'b & !c:* | d<->e \\ f": "'a' & 'b' & 'c' & 'd' & 'e' & 'f':*",
		"Grüße, мир 42":           "'grüße' & 'мир' & '42':*",
		"1 2 3 4 5 6 7 8 9 10":    "'1' & '2' & '3' & '4' & '5' & '6' & '7' & '8':*",
	} {
		if got := searchQuery(in); got != want {
			t.Errorf("searchQuery(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitMarks(t *testing.T) {
	got := fmt.Sprint(splitMarks("a " + markStart + "b" + markStop + " c " + markStart + "d" + markStop))
	if want := "[{a  false} {b true} { c  false} {d true}]"; got != want {
		t.Fatalf("splitMarks: %s, want %s", got, want)
	}
}

func searchTexts(rep map[string]any) []string {
	var out []string
	for _, r := range rep["Results"].([]any) {
		var b strings.Builder
		for _, p := range r.(map[string]any)["snippet"].([]any) {
			part := p.(map[string]any)
			if part["mark"] == true {
				fmt.Fprintf(&b, "[%s]", part["text"])
			} else {
				b.WriteString(part["text"].(string))
			}
		}
		out = append(out, b.String())
	}
	return out
}

// Search finds messages by their current text (prefix on the last word), marks the matches,
// never finds deleted messages, looks only in the user's conversations (not one left), and pages
// newest first.
func TestSearchMessages(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	carol := register(t, srv, "carol")
	shared := newConvo(t, alice, "shared", bob, carol)
	private := newConvo(t, alice, "private", bob)

	m1 := alice.ok("SendMessage", map[string]any{"CID": shared, "content": "the quick brown fox"})
	alice.ok("SendMessage", map[string]any{"CID": private, "content": "a secret brownie recipe"})
	m3 := bob.ok("SendMessage", map[string]any{"CID": shared, "content": "delete this brown note"})
	alice.ok("SendMessage", map[string]any{"CID": shared, "content": "fake " + markStart + "mark" + markStop + " brown"})

	if got := searchTexts(alice.ok("SearchMessages", map[string]any{"query": "brow"})); len(got) != 4 ||
		got[0] != "fake mark [brown]" || got[3] != "the quick [brown] fox" {
		t.Fatalf("alice searching 'brow': %q", got)
	}
	// Carol is not in the private conversation.
	if got := searchTexts(carol.ok("SearchMessages", map[string]any{"query": "brownie"})); len(got) != 0 {
		t.Fatalf("carol found %q", got)
	}
	bob.ok("DeleteMessage", map[string]any{"CID": shared, "id": m3["id"]})
	alice.ok("EditMessage", map[string]any{"CID": shared, "id": m1["id"], "content": "the slow red fox"})
	if got := searchTexts(alice.ok("SearchMessages", map[string]any{"query": "brown"})); len(got) != 2 {
		t.Fatalf("after the edit and the deletion, 'brown': %q", got)
	}
	if got := searchTexts(alice.ok("SearchMessages", map[string]any{"query": "slow fo"})); fmt.Sprint(got) != "[the [slow] red [fox]]" {
		t.Fatalf("the edited text: %q", got)
	}
	rep := alice.ok("SearchMessages", map[string]any{"query": "red", "CID": private})
	if len(rep["Results"].([]any)) != 0 {
		t.Fatalf("search in one conversation: %v", rep)
	}
	hit := alice.ok("SearchMessages", map[string]any{"query": "red", "CID": shared})["Results"].([]any)[0].(map[string]any)
	if hit["CID"] != shared || hit["id"] != m1["id"] || hit["f_username"] != alice.name || hit["m_time"] != m1["m_time"] {
		t.Fatalf("a hit: %v", hit)
	}
	alice.fails("SearchMessages", map[string]any{"query": " !! "}, "at least one word")

	// Leaving a conversation takes it out of the user's searches.
	bob.ok("RemoveUserFromConversation", map[string]any{"CID": private, "Username": bob.name})
	if got := searchTexts(bob.ok("SearchMessages", map[string]any{"query": "secret"})); len(got) != 0 {
		t.Fatalf("bob found %q in a conversation he left", got)
	}

	// Pages of 20, newest first.
	for i := range 25 {
		bob.ok("SendMessage", map[string]any{"CID": shared, "content": fmt.Sprint("paging word ", i)})
	}
	page := bob.ok("SearchMessages", map[string]any{"query": "paging"})
	got := searchTexts(page)
	if len(got) != 20 || page["More"] != true || got[0] != "[paging] word 24" {
		t.Fatalf("the first page: %d %v %q", len(got), page["More"], got)
	}
	results := page["Results"].([]any)
	last := results[len(results)-1].(map[string]any)["m_time"]
	page = bob.ok("SearchMessages", map[string]any{"query": "paging", "before": last})
	if got := searchTexts(page); len(got) != 5 || page["More"] != nil || got[4] != "[paging] word 0" {
		t.Fatalf("the second page: %v %q", page["More"], got)
	}
}
