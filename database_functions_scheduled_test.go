package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func timeIn(seconds int) time.Time { return time.Now().Add(time.Duration(seconds) * time.Second) }

func TestScheduledMessageCommands(t *testing.T) {
	srv := startServer(t, testConfig(t))
	a := register(t, srv, "planner")
	b := register(t, srv, "planned")
	outsider := register(t, srv, "notin")
	cid := newConvo(t, a, "", b)
	a.fails("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(-60)), "Content": "past"}, "in the future")
	a.fails("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(400 * 24 * 3600)), "Content": "far"}, "a year")
	a.fails("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(60)), "Content": ""}, "empty")
	outsider.fails("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(60)), "Content": "x"}, "not a member")
	at := formatTime(timeIn(3600))
	first := a.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": at, "Content": "one"})
	a.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": at, "Content": "two"})
	a.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": at, "Content": "three"})
	view := dialRaw(t, srv).ok("ValidateUser", map[string]any{"username": a.name, "password": testPassword})
	list := view["ScheduledMessages"].([]any)
	if len(list) != 3 || list[0].(map[string]any)["ID"] != first["id"] || list[0].(map[string]any)["Time"] != at {
		t.Fatalf("user view ScheduledMessages: %v (first ack %v)", list, first)
	}
	b.fails("RemoveScheduledMessage", map[string]any{"ID": first["id"]}, "No such scheduled message")
	a.ok("RemoveScheduledMessage", map[string]any{"ID": first["id"]})
	a.fails("RemoveScheduledMessage", map[string]any{"ID": first["id"]}, "No such scheduled message")
	a.ok("RemoveScheduledMessage", map[string]any{"CID": cid, "Time": at, "Content": "two"})
	a.ok("RemoveAllScheduledMessages", nil)
	view = dialRaw(t, srv).ok("ValidateUser", map[string]any{"username": a.name, "password": testPassword})
	if n := len(view["ScheduledMessages"].([]any)); n != 0 {
		t.Fatalf("%d scheduled messages left", n)
	}
}

// The user's other sessions hear of scheduled messages added and removed (UpdateUser).
func TestScheduledChangesReachOtherSessions(t *testing.T) {
	srv := startServer(t, testConfig(t))
	a := register(t, srv, "planner")
	other := login(t, srv, a.name)
	cid := newConvo(t, a, "")
	ack := a.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(3600)), "Content": "later"})
	other.waitPush("the new scheduled message", func(p map[string]any) bool {
		list, _ := p["ScheduledMessages"].([]any)
		return p["cmd"] == "UpdateUser" && len(list) == 1 && list[0].(map[string]any)["ID"] == ack["id"]
	})
	a.ok("RemoveScheduledMessage", map[string]any{"ID": ack["id"]})
	other.waitPush("its removal", func(p map[string]any) bool {
		list, ok := p["ScheduledMessages"].([]any)
		return p["cmd"] == "UpdateUser" && ok && len(list) == 0
	})
}

func TestScheduledMessagesPerUserAreCapped(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxScheduledPerUser = 3
	srv := startServer(t, cfg)
	a := register(t, srv, "prolific")
	cid := newConvo(t, a, "")
	for i := range 3 {
		a.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(3600)), "Content": fmt.Sprint(i)})
	}
	a.fails("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(3600)), "Content": "4"}, "At most 3")
}

// Nobody can take a scheduled message's client_id, and a row that cannot be delivered does not
// hold up the rows behind it.
func TestOneBadScheduledRowDoesNotStopTheQueue(t *testing.T) {
	srv := startServer(t, testConfig(t))
	a := register(t, srv, "sched")
	b := register(t, srv, "squatter")
	cid := newConvo(t, a, "", b)
	due := func(content string) int64 {
		var id int64
		err := srv.db.pool.QueryRow(t.Context(), `INSERT INTO scheduled_messages (cid, f_username, content, send_at)
			VALUES ($1, $2, $3, now() - interval '1 minute') RETURNING id`, cid, a.name, content).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	bad, good := due("blocked"), due("behind it")
	t.Cleanup(func() { // every test shares the database: leave no undeliverable row behind
		_, _ = srv.db.pool.Exec(context.Background(), "DELETE FROM scheduled_messages WHERE id = $1", bad)
	})
	b.fails("SendMessage", map[string]any{"CID": cid, "content": "mine", "client_id": fmt.Sprintf("scheduled-%d", bad)}, "may not start with")
	// A row from before the prefix was reserved: another member's message holds its key.
	squat := &Message{CID: cid, FUsername: b.name, Content: "squat", Kind: "text", ClientID: fmt.Sprintf("scheduled-%d", bad)}
	if _, err := srv.db.insertMessage(t.Context(), srv.db.pool, squat); err != nil {
		t.Fatal(err)
	}
	srv.db.deliverDue(t.Context())
	b.waitPush("the message behind the bad row", func(p map[string]any) bool { return p["content"] == "behind it" })
	if n := countContent(t, srv, cid, "behind it"); n != 1 {
		t.Fatalf("message behind the bad row stored %d times", n)
	}
	var left int
	_ = srv.db.pool.QueryRow(t.Context(), "SELECT count(*) FROM scheduled_messages WHERE id = ANY($1)", []int64{bad, good}).Scan(&left)
	if left != 1 {
		t.Fatalf("%d of the two rows left; want the bad one only", left)
	}
}

// countContent counts the stored messages of a conversation with the given content.
func countContent(t *testing.T, srv *testServer, cid, content string) int {
	t.Helper()
	var n int
	err := srv.db.pool.QueryRow(t.Context(), fmt.Sprintf("SELECT count(*) FROM %s WHERE content = $1", convTable(cid)), content).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Two instances run the ticker at once; each due message is stored and delivered once.
func TestScheduledMessagesDeliveredOnceByTwoInstances(t *testing.T) {
	natsURL := startNATS(t)
	cfg := testConfig(t)
	cfg.NATS, cfg.ScheduleInterval = natsURL, 20*time.Millisecond
	srvA, srvB := startServer(t, cfg), startServer(t, cfg)
	a := register(t, srvA, "sched")
	b := register(t, srvB, "schedrecv")
	cid := newConvo(t, a, "", b)
	const n = 20
	for i := range n {
		a.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(time.Now().Add(300 * time.Millisecond)), "Content": fmt.Sprintf("s%d", i)})
	}
	for i := range n {
		p := b.waitPush(fmt.Sprint("scheduled ", i), isMsgIn(cid))
		if p["f_username"] != a.name {
			t.Fatalf("scheduled message from %v", p["f_username"])
		}
	}
	for i := range n {
		if got := countContent(t, srvA, cid, fmt.Sprintf("s%d", i)); got != 1 {
			t.Fatalf("s%d stored %d times", i, got)
		}
	}
	if extra := b.pushesMatching(isMsgIn(cid)); len(extra) != 0 {
		t.Fatalf("duplicate deliveries: %v", extra)
	}
}

// A server that stops (or crashes) before a message is due leaves it scheduled; the next
// instance delivers it once.
func TestScheduledMessageSurvivesRestart(t *testing.T) {
	cfg := testConfig(t)
	cfg.ScheduleInterval = time.Hour // never ticks while it runs
	first := startServer(t, cfg)
	a := register(t, first, "crashy")
	b := register(t, first, "waiter")
	cid := newConvo(t, a, "", b)
	a.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(time.Now().Add(200 * time.Millisecond)), "Content": "after the crash"})
	first.Close() // abrupt: no graceful drain

	cfg.ScheduleInterval = 20 * time.Millisecond
	second := startServer(t, cfg)
	b2 := login(t, second, b.name)
	b2.waitPush("scheduled message after restart", func(p map[string]any) bool { return p["content"] == "after the crash" })
	waitUntil(t, "the row to be gone", func() bool {
		var n int
		_ = second.db.pool.QueryRow(t.Context(), "SELECT count(*) FROM scheduled_messages WHERE cid = $1", cid).Scan(&n)
		return n == 0
	})
	if got := countContent(t, second, cid, "after the crash"); got != 1 {
		t.Fatalf("stored %d times", got)
	}
}

func TestScheduledMessageFromLeaverIsDropped(t *testing.T) {
	logs := captureLogs(t)
	cfg := testConfig(t)
	cfg.ScheduleInterval = 20 * time.Millisecond
	srv := startServer(t, cfg)
	a := register(t, srv, "quitter")
	b := register(t, srv, "stayer")
	cid := newConvo(t, a, "", b)
	a.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(time.Now().Add(time.Second)), "Content": "never"})
	a.ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": a.name})
	waitUntil(t, "the drop to be logged", func() bool { return strings.Contains(logs.String(), "dropping scheduled message") })
	if got := countContent(t, srv, cid, "never"); got != 0 {
		t.Fatalf("stored %d times", got)
	}
}

func TestAutoreplyOncePerConversation(t *testing.T) {
	srv := startServer(t, testConfig(t))
	away := register(t, srv, "away")
	writer := register(t, srv, "writer")
	cid := newConvo(t, writer, "", away)
	away.ok("SaveAutoreplyMessage", map[string]any{"Message": "On holiday until Monday."})
	writer.ok("SendMessage", map[string]any{"CID": cid, "content": "are you there?"})
	auto := writer.waitPush("autoreply", func(p map[string]any) bool { return p["kind"] == "autoreply" })
	if auto["f_username"] != away.name || auto["content"] != "On holiday until Monday." {
		t.Fatalf("autoreply: %v", auto)
	}
	writer.ok("SendMessage", map[string]any{"CID": cid, "content": "hello??"})
	writer.waitPush("second message echo", func(p map[string]any) bool { return p["content"] == "hello??" })
	// Once the away user writes there, it is armed again.
	away.ok("SendMessage", map[string]any{"CID": cid, "content": "quick note from the beach"})
	writer.ok("SendMessage", map[string]any{"CID": cid, "content": "enjoy!"})
	writer.waitPush("second autoreply", func(p map[string]any) bool { return p["kind"] == "autoreply" })
	msgs := writer.ok("GetAllConvoData", map[string]any{"CID": cid})["Messages"].([]any)
	autos := 0
	for _, m := range msgs {
		if m.(map[string]any)["kind"] == "autoreply" {
			autos++
		}
	}
	if autos != 2 || len(msgs) != 6 {
		t.Fatalf("%d autoreplies in %d messages, want 2 in 6: %v", autos, len(msgs), msgs)
	}
	away.ok("SaveAutoreplyMessage", map[string]any{"Message": ""}) // off
	writer.ok("SendMessage", map[string]any{"CID": cid, "content": "last"})
	if n := len(writer.ok("GetAllConvoData", map[string]any{"CID": cid})["Messages"].([]any)); n != 7 {
		t.Fatalf("%d messages after turning autoreply off, want 7", n)
	}
}
