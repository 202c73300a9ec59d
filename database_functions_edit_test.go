package main

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// viewMsg is a client's copy of one message, built from rows the way the web client does:
// change rows apply to their target when newer than what it shows, and are not shown.
type viewMsg struct {
	ID        int64
	From      string
	Content   string
	Edited    string
	Deleted   bool
	Reactions string
	Changed   string
	ReplyTo   int64
	Quote     string
}

func applyRows(view map[int64]*viewMsg, rows []map[string]any) {
	for _, r := range rows {
		id := int64(r["id"].(float64))
		mt, _ := r["m_time"].(string)
		switch r["kind"] {
		case "edit", "delete", "reaction":
			t := view[int64(r["target"].(float64))]
			if t == nil || mt <= t.Changed {
				continue
			}
			t.Changed = mt
			switch r["kind"] {
			case "edit":
				t.Content, t.Edited = r["content"].(string), mt
			case "delete":
				t.Content, t.Deleted, t.Reactions = "", true, ""
			case "reaction":
				t.Reactions = fmt.Sprint(r["reactions"])
			}
		default:
			v := &viewMsg{ID: id, From: r["f_username"].(string), Content: r["content"].(string)}
			v.Edited, _ = r["edited"].(string)
			v.Deleted, _ = r["deleted"].(bool)
			v.Changed, _ = r["changed"].(string)
			if rs, ok := r["reactions"]; ok {
				v.Reactions = fmt.Sprint(rs)
			}
			if rt, ok := r["reply_to"].(float64); ok {
				v.ReplyTo = int64(rt)
			}
			if q, ok := r["quote"].(map[string]any); ok {
				v.Quote = fmt.Sprint(q["f_username"], ": ", q["content"])
			}
			view[id] = v
		}
	}
}

func rowsOf(data map[string]any) []map[string]any {
	var out []map[string]any
	for _, m := range data["Messages"].([]any) {
		out = append(out, m.(map[string]any))
	}
	return out
}

// syncSince follows GetConvoData pages from a sync point, as a reconnecting client does.
func syncSince(c *client, cid, since string) []map[string]any {
	var all []map[string]any
	for {
		data := c.ok("GetConvoData", map[string]any{"CID": cid, "M_time": since})
		rows := rowsOf(data)
		all = append(all, rows...)
		if data["More"] != true || len(rows) == 0 {
			return all
		}
		since = rows[len(rows)-1]["m_time"].(string)
	}
}

func viewString(view map[int64]*viewMsg) string {
	ids := make([]int64, 0, len(view))
	for id := range view {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b strings.Builder
	for _, id := range ids {
		v := view[id]
		fmt.Fprintf(&b, "%d %s %q edited=%v deleted=%v reactions=%s reply=%d quote=%q\n",
			id, v.From, v.Content, v.Edited != "", v.Deleted, v.Reactions, v.ReplyTo, v.Quote)
	}
	return b.String()
}

// A client that was offline while messages were edited, deleted and reacted to gets every change
// exactly once, in order, from GetConvoData since its sync point, and its view then equals a
// fresh client's (which gets current state and the change rows that led to it).
func TestOfflineClientGetsEveryChangeOnceInOrder(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	carol := register(t, srv, "carol")
	cid := newConvo(t, alice, "edits", bob, carol)
	var ids []float64
	var times []string
	for i, text := range []string{"helo world", "second", "third"} {
		ack := alice.ok("SendMessage", map[string]any{"CID": cid, "content": text, "client_id": fmt.Sprint("s", i)})
		ids, times = append(ids, ack["id"].(float64)), append(times, ack["m_time"].(string))
	}
	// Carol syncs, then goes away.
	carolView := map[int64]*viewMsg{}
	first := rowsOf(carol.ok("GetConvoData", map[string]any{"CID": cid}))
	applyRows(carolView, first)
	syncPoint := first[len(first)-1]["m_time"].(string)
	carol.conn.close()

	alice.ok("EditMessage", map[string]any{"CID": cid, "id": ids[0], "M_time": times[0], "content": "hello world"})
	bob.ok("React", map[string]any{"CID": cid, "id": ids[0], "emoji": "👍", "on": true})
	alice.ok("React", map[string]any{"CID": cid, "id": ids[0], "emoji": "👍", "on": true})
	bob.ok("React", map[string]any{"CID": cid, "id": ids[0], "emoji": "🎉", "on": true})          // replaces bob's 👍
	alice.ok("EditMessage", map[string]any{"CID": cid, "id": ids[0], "content": "hello, world"}) // found without M_time
	reply := bob.ok("SendMessage", map[string]any{"CID": cid, "content": "answer @" + alice.name, "reply_to": ids[1], "reply_m_time": times[1]})
	alice.ok("DeleteMessage", map[string]any{"CID": cid, "id": ids[1]})
	bob.ok("React", map[string]any{"CID": cid, "id": reply["id"], "emoji": "❤️", "on": true})
	bob.ok("React", map[string]any{"CID": cid, "id": reply["id"], "emoji": "❤️", "on": false})
	// Bob saw each change live.
	bob.waitPush("the last change", func(p map[string]any) bool { return p["kind"] == "reaction" && p["on"] == nil })

	carol = login(t, srv, carol.name)
	// Changes are not unread messages: three from alice and bob's reply are.
	for _, c := range carol.ok("GetUserView", nil)["CIDs"].([]any) {
		if c := c.(map[string]any); c["CID"] == cid && c["UnreadCount"] != float64(4) {
			t.Fatalf("carol's unread count: %v, want 4", c["UnreadCount"])
		}
	}
	rows := syncSince(carol, cid, syncPoint)
	var kinds []string
	seen := map[float64]bool{}
	last := syncPoint
	for _, r := range rows {
		kinds = append(kinds, r["kind"].(string))
		if seen[r["id"].(float64)] {
			t.Fatalf("row %v twice", r["id"])
		}
		seen[r["id"].(float64)] = true
		if mt := r["m_time"].(string); mt <= last {
			t.Fatalf("rows out of order: %s after %s", mt, last)
		}
		last = r["m_time"].(string)
	}
	// Bob's 🎉 replaced his 👍 row, and his ❤️ taken back its adding row: a user's reaction
	// rows on a message coalesce within a minute.
	want := "[edit reaction reaction edit text delete reaction]"
	if fmt.Sprint(kinds) != want {
		t.Fatalf("rows since the sync point: %v, want %s", kinds, want)
	}
	// The reply carries the quote and the mention; the deletion emptied the quote.
	if r := rows[4]; r["reply_to"] != ids[1] || fmt.Sprint(r["mentions"]) != fmt.Sprintf("[%s]", alice.name) {
		t.Fatalf("the reply: %v", r)
	}
	if rows[2]["content"] != "🎉" || rows[2]["f_username"] != bob.name ||
		rows[6]["on"] != nil || rows[6]["content"] != "❤️" || rows[6]["f_username"] != bob.name {
		t.Fatalf("reactions changed and taken back: %v, %v", rows[2], rows[6])
	}
	applyRows(carolView, rows)

	fresh := map[int64]*viewMsg{}
	applyRows(fresh, rowsOf(login(t, srv, bob.name).ok("GetConvoData", map[string]any{"CID": cid})))
	if got, want := viewString(carolView), viewString(fresh); got != want {
		t.Fatalf("the synced view:\n%s\na fresh client's:\n%s", got, want)
	}
	v := fresh[int64(ids[0])]
	if v.Content != "hello, world" || v.Edited == "" ||
		v.Reactions != fmt.Sprintf("[map[emoji:👍 users:[%s]] map[emoji:🎉 users:[%s]]]", alice.name, bob.name) {
		t.Fatalf("the edited message: %+v", v)
	}
	if d := fresh[int64(ids[1])]; !d.Deleted || d.Content != "" {
		t.Fatalf("the deleted message: %+v", d)
	}
	if r := fresh[int64(reply["id"].(float64))]; r.Quote != alice.name+": " || r.Reactions != "" {
		t.Fatalf("the reply to a deleted message: %+v", r)
	}
	t.Logf("view:\n%s", viewString(fresh))
}

// Only the author edits or deletes (an administrator deletes any message); a non-member can do
// nothing to a conversation and learns nothing about it; deleted messages and change rows take
// no changes; an edit window, when set, is kept.
func TestEditAndDeletePermissions(t *testing.T) {
	cfg := testConfig(t)
	adminName := uniqueName("admin")
	cfg.Admins = adminName
	srv := startServer(t, cfg)
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	eve := register(t, srv, "eve")
	admin := dialRaw(t, srv)
	admin.name = adminName
	admin.ok("CreateUser", map[string]any{"username": adminName, "password": testPassword})
	cid := newConvo(t, alice, "", bob, admin)
	ack := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "mine"})
	id := ack["id"]

	bob.fails("EditMessage", map[string]any{"CID": cid, "id": id, "content": "yours"}, "only its author")
	bob.fails("DeleteMessage", map[string]any{"CID": cid, "id": id}, "only its author or an administrator")
	admin.fails("EditMessage", map[string]any{"CID": cid, "id": id, "content": "admin's"}, "only its author")
	for _, cmd := range []map[string]any{
		{"cmd": "EditMessage", "CID": cid, "id": id, "content": "x"},
		{"cmd": "DeleteMessage", "CID": cid, "id": id},
		{"cmd": "React", "CID": cid, "id": id, "emoji": "👍", "on": true},
		{"cmd": "SendMessage", "CID": cid, "content": "x", "reply_to": id},
		{"cmd": "SearchMessages", "CID": cid, "query": "mine"},
	} {
		name := cmd["cmd"].(string)
		delete(cmd, "cmd")
		eve.fails(name, cmd, "not a member")
	}
	// Nor for a conversation that does not exist.
	eve.fails("React", map[string]any{"CID": "00000000-0000-4000-8000-000000000000", "id": 1, "emoji": "👍", "on": true}, "not a member")

	bob.fails("React", map[string]any{"CID": cid, "id": id, "emoji": "", "on": true}, "one emoji")
	bob.fails("React", map[string]any{"CID": cid, "id": id, "emoji": "a\nb", "on": true}, "one emoji")
	bob.fails("React", map[string]any{"CID": cid, "id": id, "emoji": "thisistoolong", "on": true}, "one emoji")
	bob.fails("React", map[string]any{"CID": cid, "id": 999, "emoji": "👍", "on": true}, "no such message")
	bob.fails("SendMessage", map[string]any{"CID": cid, "content": "x", "reply_to": 999}, "no such message")
	alice.fails("EditMessage", map[string]any{"CID": cid, "id": id, "content": " "}, "empty message")

	r := bob.ok("React", map[string]any{"CID": cid, "id": id, "emoji": "👍", "on": true})
	bob.fails("React", map[string]any{"CID": cid, "id": r["id"], "emoji": "👍", "on": true}, "no such message") // a change row

	srv.db.cfg.EditWindow = time.Nanosecond
	alice.fails("EditMessage", map[string]any{"CID": cid, "id": id, "content": "late"}, "may be edited for")
	srv.db.cfg.EditWindow = 0
	alice.ok("EditMessage", map[string]any{"CID": cid, "id": id, "content": "mine, edited"})

	admin.ok("DeleteMessage", map[string]any{"CID": cid, "id": id})
	alice.fails("EditMessage", map[string]any{"CID": cid, "id": id, "content": "again"}, "message deleted")
	bob.fails("React", map[string]any{"CID": cid, "id": id, "emoji": "👍", "on": true}, "message deleted")
	own := bob.ok("SendMessage", map[string]any{"CID": cid, "content": "bob's"})
	bob.ok("DeleteMessage", map[string]any{"CID": cid, "id": own["id"]})
}

// A change resent with the same client_id (its acknowledgement was lost) is stored once and
// answered with the stored row; a client_id of another message is refused.
func TestChangesAreIdempotentByClientID(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	cid := newConvo(t, alice, "", bob)
	m := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "one", "client_id": "c-send"})
	edit := map[string]any{"CID": cid, "id": m["id"], "content": "two", "client_id": "c-edit"}
	a1 := alice.ok("EditMessage", edit)
	a2 := alice.ok("EditMessage", edit)
	if a1["id"] != a2["id"] || a1["m_time"] != a2["m_time"] {
		t.Fatalf("a resent edit: %v then %v", a1, a2)
	}
	react := map[string]any{"CID": cid, "id": m["id"], "emoji": "👍", "on": true, "client_id": "c-react"}
	if r1, r2 := bob.ok("React", react), bob.ok("React", react); r1["id"] != r2["id"] {
		t.Fatalf("a resent reaction: %v then %v", r1, r2)
	}
	alice.fails("DeleteMessage", map[string]any{"CID": cid, "id": m["id"], "client_id": "c-edit"}, "client_id already used")
	alice.fails("DeleteMessage", map[string]any{"CID": cid, "id": m["id"], "client_id": "c-send"}, "client_id already used")
	bob.fails("EditMessage", map[string]any{"CID": cid, "id": m["id"], "content": "x", "client_id": "c-edit"}, "client_id already used")
	rows := rowsOf(alice.ok("GetConvoData", map[string]any{"CID": cid}))
	if len(rows) != 3 {
		t.Fatalf("rows: %v", rows)
	}
}

// Two edits at once: both are stored, in an order, and the message ends as the later one says.
func TestConcurrentEditsEndInOneState(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	alice2 := login(t, srv, alice.name)
	cid := newConvo(t, alice, "")
	m := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "start"})
	for round := range 5 {
		var wg sync.WaitGroup
		acks := make([]map[string]any, 2)
		for i, c := range []*client{alice, alice2} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				acks[i] = c.call("EditMessage", map[string]any{"CID": cid, "id": m["id"], "content": fmt.Sprint("round ", round, " by ", i)})
			}()
		}
		wg.Wait()
		if acks[0]["error"] != nil || acks[1]["error"] != nil || acks[0]["m_time"] == acks[1]["m_time"] {
			t.Fatalf("acks: %v", acks)
		}
		later := 0
		if acks[1]["m_time"].(string) > acks[0]["m_time"].(string) {
			later = 1
		}
		view := map[int64]*viewMsg{}
		applyRows(view, rowsOf(alice.ok("GetConvoData", map[string]any{"CID": cid})))
		if got, want := view[int64(m["id"].(float64))].Content, fmt.Sprint("round ", round, " by ", later); got != want {
			t.Fatalf("after two edits at once: %q, want %q (the later one)", got, want)
		}
	}
}

func TestMentionsIn(t *testing.T) {
	members := []string{"Alice", "bob_2", "Carol"}
	got := mentionsIn("hi @alice and @BOB_2, @alice again, mail x@carol.com, @dave, @car, (@Carol)", members)
	if want := "[Alice bob_2 Carol]"; fmt.Sprint(got) != want {
		t.Fatalf("mentions: %v, want %s", got, want)
	}
	if got := mentionsIn("no one @ all", members); got != nil {
		t.Fatalf("mentions: %v", got)
	}
}

// A reply's push carries the quote and the members mentioned; history serves the same.
func TestReplyPushCarriesQuoteAndMentions(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	cid := newConvo(t, alice, "", bob)
	long := strings.Repeat("é", 150)
	m := alice.ok("SendMessage", map[string]any{"CID": cid, "content": long})
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "@" + alice.name + " yes, @nobody_here", "reply_to": m["id"], "client_id": "r1"})
	p := alice.waitPush("the reply", func(p map[string]any) bool { return p["client_id"] == "r1" })
	q, _ := p["quote"].(map[string]any)
	if q == nil || q["f_username"] != alice.name || q["content"] != strings.Repeat("é", quoteLength) || p["reply_to"] != m["id"] {
		t.Fatalf("the reply's push: %v", p)
	}
	if fmt.Sprint(p["mentions"]) != fmt.Sprintf("[%s]", alice.name) {
		t.Fatalf("mentions: %v", p["mentions"])
	}
	rows := rowsOf(alice.ok("GetConvoData", map[string]any{"CID": cid}))
	if h := rows[len(rows)-1]; fmt.Sprint(h["quote"]) != fmt.Sprint(q) || fmt.Sprint(h["mentions"]) != fmt.Sprint(p["mentions"]) {
		t.Fatalf("the reply in history: %v", h)
	}
}

// TestReactionChangesAreBounded: a user's reaction changes to one message within a minute leave
// one row (each replaces the one before; every client still ends in the same state, live or
// syncing), and after reactionBurst changes the next is refused until time has passed; other
// users and other messages have budgets of their own.
func TestReactionChangesAreBounded(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "rbalice")
	bob := register(t, srv, "rbbob")
	carol := register(t, srv, "rbcarol")
	cid := newConvo(t, alice, "reactions", bob, carol)
	ack := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "react to me"})
	id, mt := ack["id"], ack["m_time"]
	syncPoint := mt.(string)
	other := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "and to me"})

	for i := range reactionBurst - 1 { // on, off, on … on
		bob.ok("React", map[string]any{"CID": cid, "ID": id, "M_time": mt, "emoji": "👍", "on": i%2 == 0})
	}
	bob.ok("React", map[string]any{"CID": cid, "ID": id, "M_time": mt, "emoji": "❤️", "on": true})
	carol.ok("React", map[string]any{"CID": cid, "ID": id, "M_time": mt, "emoji": "👍", "on": true})
	bob.fails("React", map[string]any{"CID": cid, "ID": id, "M_time": mt, "emoji": "👍", "on": true},
		"You are changing your reaction to this message too often; wait a moment.")
	bob.ok("React", map[string]any{"CID": cid, "ID": other["id"], "emoji": "😀", "on": true})

	var rows map[string]int64 = map[string]int64{}
	r, err := srv.db.pool.Query(t.Context(), fmt.Sprintf(`SELECT f_username, count(*) FROM %s
		WHERE kind = 'reaction' AND target = $1 GROUP BY f_username`, convTable(cid)), int64(id.(float64)))
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var who string
		var n int64
		if err := r.Scan(&who, &n); err != nil {
			t.Fatal(err)
		}
		rows[who] = n
	}
	r.Close()
	if len(rows) != 2 || rows[bob.name] != 1 || rows[carol.name] != 1 {
		t.Fatalf("reaction rows per user: %v, want one each", rows)
	}

	want := fmt.Sprintf("[map[emoji:❤️ users:[%s]] map[emoji:👍 users:[%s]]]", bob.name, carol.name)
	// Alice saw every change live and ends where the rows end.
	live := map[int64]*viewMsg{}
	applyRows(live, []map[string]any{{"id": id, "f_username": alice.name, "content": "react to me", "m_time": mt}})
	for range reactionBurst + 1 {
		p := alice.waitPush("a reaction", func(p map[string]any) bool { return p["kind"] == "reaction" && p["target"] == id })
		applyRows(live, []map[string]any{p})
	}
	synced := map[int64]*viewMsg{}
	applyRows(synced, []map[string]any{{"id": id, "f_username": alice.name, "content": "react to me", "m_time": mt}})
	applyRows(synced, syncSince(alice, cid, syncPoint))
	fresh := map[int64]*viewMsg{}
	applyRows(fresh, rowsOf(alice.ok("GetConvoData", map[string]any{"CID": cid})))
	idn := int64(id.(float64))
	if live[idn].Reactions != want || synced[idn].Reactions != want || fresh[idn].Reactions != want {
		t.Fatalf("reactions live %s, synced %s, fresh %s; want %s", live[idn].Reactions, synced[idn].Reactions, fresh[idn].Reactions, want)
	}
}
