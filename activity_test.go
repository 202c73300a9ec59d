package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// unreadIn is a conversation's unread count and M_time in a login's user view.
func unreadIn(t *testing.T, view map[string]any, cid string) (float64, string) {
	t.Helper()
	list, _ := view["CIDs"].([]any)
	for _, e := range list {
		if m, _ := e.(map[string]any); m["CID"] == cid {
			n, _ := m["UnreadCount"].(float64)
			mt, _ := m["M_time"].(string)
			return n, mt
		}
	}
	t.Fatalf("conversation %s is not in the user view %v", cid, view["CIDs"])
	return 0, ""
}

// A login while another session of the user is here takes the conversations' activity from
// the user's hub; the next event for the user empties it, so a login after a new message
// counts again.
func TestLoginReusesActivityUntilAnEvent(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	cid := newConvo(t, bob, "", alice)
	for i := range 3 {
		bob.ok("SendMessage", map[string]any{"CID": cid, "content": fmt.Sprintf("message %d", i)})
	}
	logIn := func() map[string]any {
		c := dialRaw(t, srv)
		c.name = alice.name
		return c.ok("ValidateUser", map[string]any{"username": alice.name, "password": testPassword})
	}
	if n, _ := unreadIn(t, logIn(), cid); n != 3 {
		t.Fatalf("first login: %v unread, want 3", n)
	}
	// A row no event announced (the hub cannot know of it): a second login is served from the
	// hub, which is how we see that it was.
	_, err := srv.db.pool.Exec(context.Background(), fmt.Sprintf(`INSERT INTO %s (m_time, id, f_username, content)
		SELECT clock_timestamp(), max(id) + 1, $1, 'unannounced' FROM %[1]s`, convTable(cid)), bob.name)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := unreadIn(t, logIn(), cid); n != 3 {
		t.Fatalf("second login: %v unread, want the 3 the hub holds", n)
	}
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "announced"})
	push := alice.waitPush("the announced message", func(p map[string]any) bool { return p["content"] == "announced" })
	n, mt := unreadIn(t, logIn(), cid)
	if n != 5 {
		t.Fatalf("login after an event: %v unread, want 5 (counted again)", n)
	}
	if want, _ := push["m_time"].(string); mt != want {
		t.Fatalf("login after an event: M_time %s, want the new message's %s", mt, want)
	}
}

// The hub's activity answers only for its base time and TTL, is not stored by a read that an
// event overtook or while NATS is down, and all of it goes when the NATS connection drops.
func TestActivityCacheRules(t *testing.T) {
	h := newHubs()
	h.byUser["ALICE"] = &userHub{sessions: map[*Session]struct{}{}}
	read := func(base string) ([]ConvoSummary, []bool, uint64) {
		out := []ConvoSummary{{CID: "c1", MTime: "created"}}
		filled, gen := h.cachedActivity("ALICE", out, []string{base})
		return out, filled, gen
	}
	store := func(gen uint64, connected bool) {
		out := []ConvoSummary{{CID: "c1", MTime: "newest", UnreadCount: 7}}
		h.storeActivity("ALICE", gen, connected, out, []string{"b1"}, []bool{false})
	}
	_, filled, gen := read("b1")
	if filled[0] {
		t.Fatal("an empty hub filled a summary")
	}
	store(gen, false)
	if _, filled, _ := read("b1"); filled[0] {
		t.Fatal("activity read while NATS was down was stored")
	}
	store(gen, true)
	out, filled, gen := read("b1")
	if !filled[0] || out[0].MTime != "newest" || out[0].UnreadCount != 7 {
		t.Fatalf("stored activity not served: %+v %v", out, filled)
	}
	if _, filled, _ := read("b2"); filled[0] {
		t.Fatal("activity counted from another base time was served")
	}
	h.mu.Lock()
	h.byUser["ALICE"].forgetActivity() // an event arrived
	h.mu.Unlock()
	store(gen, true) // a read that began before it
	if _, filled, _ := read("b1"); filled[0] {
		t.Fatal("a read overtaken by an event was stored")
	}
	_, _, gen = read("b1")
	store(gen, true)
	h.forgetAllActivity() // NATS dropped
	if _, filled, _ := read("b1"); filled[0] {
		t.Fatal("activity survived the NATS connection dropping")
	}
	_, _, gen = read("b1")
	store(gen, true)
	h.byUser["ALICE"].activity["c1"] = activity{base: "b1", at: time.Now().Add(-activityTTL - time.Second)}
	if _, filled, _ := read("b1"); filled[0] {
		t.Fatal("activity older than activityTTL was served")
	}
}
