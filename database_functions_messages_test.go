package main

import (
	"fmt"
	"sort"
	"strings"
	"testing"
)

func isMsgIn(cid string) func(map[string]any) bool {
	return func(p map[string]any) bool { return p["cmd"] == "SendMessage" && p["CID"] == cid }
}

func TestMessagesFlowLiveBothWays(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	alice2 := login(t, srv, alice.name) // alice's second session
	cid := newConvo(t, alice, "lunch", bob)
	alice2.waitPush("CreateConversation", isCmd("CreateConversation"))

	const n = 10
	var lastTime string
	for i := range n {
		from, to := alice, bob
		if i%2 == 1 {
			from, to = bob, alice
		}
		content := fmt.Sprintf("message %d from %s", i, from.name)
		ack := from.ok("SendMessage", map[string]any{"CID": cid, "content": content, "client_id": fmt.Sprintf("c%d", i)})
		if ack["ok"] != true || ack["CID"] != cid || ack["client_id"] != fmt.Sprintf("c%d", i) {
			t.Fatalf("ack: %v", ack)
		}
		mt, _ := ack["m_time"].(string)
		if len(mt) != len(timeLayout) || mt <= lastTime {
			t.Fatalf("m_time %q not fixed-width or not after %q", mt, lastTime)
		}
		lastTime = mt
		for _, c := range []*client{to, from, alice2} {
			p := c.waitPush(c.name+" gets message "+fmt.Sprint(i), isMsgIn(cid))
			if p["content"] != content || p["f_username"] != from.name || p["m_time"] != mt || p["id"] != ack["id"] {
				t.Fatalf("%s got %v, want %q from %s at %s", c.name, p, content, from.name, mt)
			}
			if _, has := p["rid"]; has {
				t.Fatalf("push carries a rid: %v", p)
			}
		}
	}

	// A resend with the same client_id stores nothing new and answers the stored message.
	again := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "message 0 from " + alice.name, "client_id": "c0"})
	all := alice.ok("GetAllConvoData", map[string]any{"CID": cid})
	msgs := all["Messages"].([]any)
	if len(msgs) != n {
		t.Fatalf("GetAllConvoData has %d messages, want %d", len(msgs), n)
	}
	if first := msgs[0].(map[string]any); again["id"] != first["id"] || again["m_time"] != first["m_time"] {
		t.Fatalf("resend ack %v does not name the stored message %v", again, first)
	}
	// Someone else's client_id is not theirs to reuse.
	bob.fails("SendMessage", map[string]any{"CID": cid, "content": "x", "client_id": "c0"}, "client_id already used")

	// GetConvoData with M_time returns exactly the newer messages, oldest first.
	mid := msgs[5].(map[string]any)["m_time"].(string)
	newer := alice.ok("GetConvoData", map[string]any{"CID": cid, "M_time": mid})["Messages"].([]any)
	if len(newer) != 4 || newer[0].(map[string]any)["content"] != msgs[6].(map[string]any)["content"] {
		t.Fatalf("GetConvoData since %s: %v", mid, newer)
	}
	latest := bob.ok("GetConvoData", map[string]any{"CID": cid})
	if got := len(latest["Messages"].([]any)); got != n || latest["Name"] != "lunch" || latest["M_time"] != lastTime {
		t.Fatalf("GetConvoData: %d messages, name %v, M_time %v", got, latest["Name"], latest["M_time"])
	}
}

func TestGetMoreConvoMessagesPagesEveryMessageOnce(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandBurst = 1000
	srv := startServer(t, cfg)
	alice := register(t, srv, "pager")
	bob := register(t, srv, "pagee")
	cid := newConvo(t, alice, "", bob)
	const n = 123
	sent := map[string]bool{}
	for i := range n {
		content := fmt.Sprintf("m%03d", i)
		alice.ok("SendMessage", map[string]any{"CID": cid, "content": content})
		sent[content] = true
	}
	page := bob.ok("GetConvoData", map[string]any{"CID": cid})["Messages"].([]any)
	if len(page) != pageSize {
		t.Fatalf("latest page has %d messages", len(page))
	}
	seen := map[string]int{}
	var times []string
	for _, m := range page {
		seen[m.(map[string]any)["content"].(string)]++
		times = append(times, m.(map[string]any)["m_time"].(string))
	}
	oldest := page[0].(map[string]any)["m_time"].(string)
	for {
		more := bob.ok("GetMoreConvoMessages", map[string]any{"CID": cid, "M_time": oldest})["Messages"].([]any)
		if len(more) == 0 {
			break
		}
		for i, m := range more {
			mm := m.(map[string]any)
			seen[mm["content"].(string)]++
			times = append(times, mm["m_time"].(string))
			if i > 0 && mm["m_time"].(string) >= more[i-1].(map[string]any)["m_time"].(string) {
				t.Fatalf("GetMoreConvoMessages not newest first: %v", more)
			}
		}
		oldest = more[len(more)-1].(map[string]any)["m_time"].(string)
	}
	if len(seen) != n {
		t.Fatalf("paged %d distinct messages, want %d", len(seen), n)
	}
	for c, k := range seen {
		if k != 1 || !sent[c] {
			t.Fatalf("message %q seen %d times", c, k)
		}
	}
	sort.Strings(times)
	for i := 1; i < len(times); i++ {
		if times[i] == times[i-1] {
			t.Fatalf("two messages share m_time %s", times[i])
		}
	}
}

// History forward from a time (the form a syncing client uses) and the whole history come in
// pages of at most pageSize with More, however long the conversation and however its content
// escapes: no reply grows with the conversation.
func TestHistoryRepliesArePaged(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "hoarder")
	cid := newConvo(t, alice, "")
	const n = 2*pageSize + 7
	big := strings.Repeat("<", maxContent) // ffjson writes each as \u003c: 6 bytes
	for i := range n {
		m := &Message{CID: cid, FUsername: alice.name, Content: fmt.Sprintf("%03d%s", i, big[3:]), Kind: "text"}
		if _, err := srv.db.insertMessage(t.Context(), srv.db.pool, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, cmd := range []string{"GetConvoData", "GetAllConvoData"} {
		since := "2000-01-01T00:00:00.000000Z"
		var got []string
		for pages := 0; ; pages++ {
			before := len(alice.raw)
			rep := alice.ok(cmd, map[string]any{"CID": cid, "M_time": since})
			alice.mu.Lock()
			frame := alice.raw[before]
			alice.mu.Unlock()
			if limit := (pageSize + 1) * 6 * maxContent; len(frame) > limit {
				t.Fatalf("%s reply of %d bytes; a page is at most %d", cmd, len(frame), limit)
			}
			msgs := rep["Messages"].([]any)
			if len(msgs) > pageSize {
				t.Fatalf("%s page of %d messages", cmd, len(msgs))
			}
			for _, m := range msgs {
				got = append(got, m.(map[string]any)["content"].(string)[:3])
			}
			if rep["More"] != true {
				break
			}
			if pages > n {
				t.Fatalf("%s: More never ends", cmd)
			}
			since = msgs[len(msgs)-1].(map[string]any)["m_time"].(string)
		}
		if len(got) != n || got[0] != "000" || got[n-1] != fmt.Sprintf("%03d", n-1) || !sort.StringsAreSorted(got) {
			t.Fatalf("%s paged %d messages (%v…), want %d in order", cmd, len(got), got[:min(3, len(got))], n)
		}
	}
}

func TestSendMessageRejectsBadContent(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "content")
	cid := newConvo(t, alice, "solo")
	long := make([]rune, maxContent+1)
	for i := range long {
		long[i] = 'é'
	}
	alice.fails("SendMessage", map[string]any{"CID": cid, "content": string(long)}, "too long")
	alice.fails("SendMessage", map[string]any{"CID": cid, "content": "  "}, "empty message")
	alice.fails("SendMessage", map[string]any{"CID": cid, "content": "a\x00b"}, "NUL")
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": string(long[:maxContent])})
	if got := len(alice.ok("GetAllConvoData", map[string]any{"CID": cid})["Messages"].([]any)); got != 1 {
		t.Fatalf("%d messages stored, want 1", got)
	}
}
