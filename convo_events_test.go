package main

import (
	"encoding/json"
	"testing"
)

// Renames, additions and removals are stored in the timeline as events that every member (and
// the removed member) receives, that a later sync brings back, and that are never unread.
func TestTimelineEvents(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice, bob, carol := register(t, srv, "alice"), register(t, srv, "bob"), register(t, srv, "carol")
	cid := newConvo(t, alice, "plans", bob)
	event := func(c *client, typ string) convoEvent {
		t.Helper()
		var ev convoEvent
		c.waitPush("event "+typ, func(p map[string]any) bool {
			ev = convoEvent{}
			return p["cmd"] == "SendMessage" && p["kind"] == kindEvent && p["CID"] == cid &&
				json.Unmarshal([]byte(p["content"].(string)), &ev) == nil && ev.Type == typ
		})
		return ev
	}
	alice.ok("ChangeConvoName", map[string]any{"CID": cid, "Name": "Friday plans"})
	for _, c := range []*client{alice, bob} {
		if ev := event(c, "rename"); ev.Name != "Friday plans" {
			t.Fatalf("rename event: %+v", ev)
		}
	}
	alice.ok("ChangeConvoName", map[string]any{"CID": cid, "Name": "Friday plans"}) // no change, no event
	alice.ok("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{carol.name}})
	if ev := event(bob, "add"); len(ev.Users) != 1 || ev.Users[0] != carol.name {
		t.Fatalf("add event: %+v", ev)
	}
	alice.ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": bob.name})
	if ev := event(bob, "remove"); len(ev.Users) != 1 || ev.Users[0] != bob.name {
		t.Fatalf("the removed member's event: %+v", ev)
	}
	carol.ok("RemoveUserFromConversation", map[string]any{"CID": cid})
	event(alice, "leave")

	history := alice.ok("GetConvoData", map[string]any{"CID": cid})["Messages"].([]any)
	var types []string
	for _, m := range history {
		var ev convoEvent
		_ = json.Unmarshal([]byte(m.(map[string]any)["content"].(string)), &ev)
		types = append(types, ev.Type)
	}
	if len(types) != 4 || types[0] != "rename" || types[1] != "add" || types[2] != "remove" || types[3] != "leave" {
		t.Fatalf("timeline: %v", types)
	}
	for _, s := range alice.ok("GetUserView", nil)["CIDs"].([]any) {
		if s := s.(map[string]any); s["CID"] == cid && s["UnreadCount"] != 0.0 {
			t.Fatalf("events counted as unread: %v", s)
		}
	}
}
