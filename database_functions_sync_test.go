package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// fillConvo stores n messages of from in cid straight through insertMessage.
func fillConvo(t *testing.T, srv *testServer, cid, from string, n int) {
	t.Helper()
	for i := range n {
		m := &Message{CID: cid, FUsername: from, Content: fmt.Sprintf("%s %03d", from, i), Kind: "text"}
		if _, err := srv.db.insertMessage(t.Context(), srv.db.pool, m); err != nil {
			t.Fatal(err)
		}
	}
}

// syncEntries is a SyncConvos reply's conversations.
func syncEntries(t *testing.T, rep map[string]any) []map[string]any {
	t.Helper()
	list, ok := rep["Convos"].([]any)
	if !ok {
		t.Fatalf("SyncConvos reply without Convos: %v", rep)
	}
	out := make([]map[string]any, len(list))
	for i, e := range list {
		out[i] = e.(map[string]any)
	}
	return out
}

// Each conversation of a SyncConvos is answered exactly as GetConvoData answers it (forward
// pages with More, the latest page, an empty one); one the user is not in, or that does not
// exist, is answered "not a member" and nothing else.
func TestSyncConvosAnswersLikeGetConvoData(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	talk := newConvo(t, alice, "talk", bob)
	long := newConvo(t, alice, "long")
	empty := newConvo(t, alice, "empty")
	latest := newConvo(t, alice, "latest")
	bobs := newConvo(t, bob, "bob's")
	alice.ok("SendMessage", map[string]any{"CID": talk, "content": "one"})
	for _, c := range []string{"two", "three"} {
		bob.ok("SendMessage", map[string]any{"CID": talk, "content": c})
	}
	fillConvo(t, srv, long, alice.name, pageSize+7)
	fillConvo(t, srv, bobs, bob.name, 2)
	fillConvo(t, srv, latest, alice.name, 10)
	oneAt := alice.ok("GetConvoData", map[string]any{"CID": talk})["Messages"].([]any)[0].(map[string]any)["m_time"].(string)
	const epoch = "2000-01-01T00:00:00.000000Z"
	asked := []map[string]any{
		{"CID": talk, "M_time": oneAt},
		{"CID": long, "M_time": epoch},
		{"CID": bobs, "M_time": epoch},
		{"CID": "01234567-89ab-cdef-0123-456789abcdef"},
		{"CID": empty, "M_time": epoch},
		{"CID": latest},
	}
	got := syncEntries(t, alice.ok("SyncConvos", map[string]any{"Convos": asked}))
	if len(got) != len(asked) {
		t.Fatalf("SyncConvos answered %d of %d conversations (%d messages in all fit)", len(got), len(asked), 2+pageSize+10)
	}
	for i, a := range asked {
		if got[i]["CID"] != a["CID"] {
			t.Fatalf("entry %d is %v, want %v: answers come in the order asked", i, got[i]["CID"], a["CID"])
		}
		if a["CID"] == bobs || i == 3 {
			if got[i]["error"] != "not a member" || got[i]["Name"] != "" || len(got[i]["Messages"].([]any)) != 0 {
				t.Fatalf("a conversation alice is not in answered %v", got[i])
			}
			continue
		}
		want := alice.ok("GetConvoData", a)
		for _, k := range []string{"CID", "Name", "M_time", "Members", "Files", "Messages", "More"} {
			w, _ := json.Marshal(want[k])
			g, _ := json.Marshal(got[i][k])
			if string(w) != string(g) {
				t.Fatalf("entry %d (%v) %s = %s, GetConvoData says %s", i, a, k, g, w)
			}
		}
	}
	if n := len(got[1]["Messages"].([]any)); n != pageSize || got[1]["More"] != true {
		t.Fatalf("a long conversation: %d messages, More %v; want a page and More", n, got[1]["More"])
	}
}

// A SyncConvos reply holds at most syncMessagesMax messages: it answers the conversations in
// the order asked until the next page would pass that, and the client asks again for the rest.
func TestSyncConvosReplyIsBounded(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	var asked []map[string]any
	for i := range syncMessagesMax/pageSize + 1 {
		cid := newConvo(t, alice, fmt.Sprintf("c%d", i))
		fillConvo(t, srv, cid, alice.name, pageSize+1)
		asked = append(asked, map[string]any{"CID": cid, "M_time": "2000-01-01T00:00:00.000000Z"})
	}
	got := syncEntries(t, alice.ok("SyncConvos", map[string]any{"Convos": asked}))
	if len(got) != syncMessagesMax/pageSize {
		t.Fatalf("answered %d conversations of a page each; the budget is %d messages", len(got), syncMessagesMax)
	}
	rest := syncEntries(t, alice.ok("SyncConvos", map[string]any{"Convos": asked[len(got):]}))
	if len(rest) != len(asked)-len(got) || len(rest[0]["Messages"].([]any)) != pageSize {
		t.Fatalf("asking again for the rest answered %v", rest)
	}
}

// Bad SyncConvos requests are refused whole.
func TestSyncConvosRejectsBadRequests(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	cid := newConvo(t, alice, "")
	many := make([]map[string]any, syncConvosMax+1)
	for i := range many {
		many[i] = map[string]any{"CID": fmt.Sprintf("01234567-89ab-cdef-0123-%012x", i)}
	}
	for _, c := range []struct {
		convos any
		want   string
	}{
		{nil, "Convos: give 1 to"},
		{many, "Convos: give 1 to"},
		{[]map[string]any{{"CID": "../etc"}}, "invalid CID"},
		{[]map[string]any{{"CID": cid}, {"CID": cid}}, "given twice"},
		{[]map[string]any{{"CID": cid, "M_time": "yesterday"}}, "invalid time"},
	} {
		rep := alice.call("SyncConvos", map[string]any{"Convos": c.convos})
		if e, _ := rep["error"].(string); !strings.Contains(e, c.want) {
			t.Fatalf("SyncConvos %v answered %v, want an error with %q", c.convos, rep, c.want)
		}
	}
}
