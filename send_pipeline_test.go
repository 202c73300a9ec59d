package main

import (
	"encoding/json"
	"fmt"
	"testing"
)

// One session sends many messages without waiting for acknowledgements: each is acknowledged
// once, they are stored and delivered in the order sent (ids and m_times follow the order of the
// frames), a refused one among them is answered without holding up the rest, and sends from the
// one session share commits.
func TestPipelinedSendsKeepTheirOrderAndShareCommits(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandBurst = 1000
	srv := startServer(t, cfg)
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	cid := newConvo(t, alice, "pipe", bob)
	const n = 60
	for i := range n {
		req := map[string]any{"cmd": "SendMessage", "rid": fmt.Sprintf("p%d", i), "CID": cid,
			"content": fmt.Sprintf("m%d", i), "client_id": fmt.Sprintf("pipe-%d", i)}
		if i == n/2 {
			req["content"] = " " // refused: empty
		}
		b, _ := json.Marshal(req)
		alice.sendRaw(string(b))
	}
	var last float64
	for i := range n {
		rep := alice.waitReply(fmt.Sprintf("p%d", i))
		if i == n/2 {
			if rep["error"] != "empty message" {
				t.Fatalf("the empty send answered %v", rep)
			}
			continue
		}
		if rep["error"] != nil || rep["client_id"] != fmt.Sprintf("pipe-%d", i) {
			t.Fatalf("send %d answered %v", i, rep)
		}
		id := rep["id"].(float64)
		if id <= last {
			t.Fatalf("send %d stored with id %v after id %v: not in the order sent", i, id, last)
		}
		last = id
	}
	// Delivered in the order stored, although each send is finished by its own goroutine.
	for i := range n {
		if i == n/2 {
			continue
		}
		p := bob.waitPush("message", isMsgIn(cid))
		if p["content"] != fmt.Sprintf("m%d", i) {
			t.Fatalf("bob got %v as message %d", p["content"], i)
		}
	}
	groups, written := insertGroups(t, srv)
	t.Logf("%d sends in %d groups", int(written), groups)
	if groups >= uint64(written) {
		t.Errorf("%d sends of one session in %d groups: none shared a commit", int(written), groups)
	}
}

// Any other command waits for the session's sends before it: a GetConvoData sent right behind
// a burst of sends (no waiting for their acknowledgements) sees every one of them. The test
// holds the conversation's insert lock until the sends are waiting for it, so the read would
// come first if it did not wait.
func TestCommandAfterPipelinedSendsSeesThem(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandBurst = 1000
	srv := startServer(t, cfg)
	alice := register(t, srv, "alice")
	cid := newConvo(t, alice, "then read")
	holder, err := srv.db.pool.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Release()
	key := lockKey(cid)
	if _, err := holder.Exec(t.Context(), "SELECT pg_advisory_lock($1)", key); err != nil {
		t.Fatal(err)
	}
	const n = 20
	for i := range n {
		b, _ := json.Marshal(map[string]any{"cmd": "SendMessage", "rid": fmt.Sprintf("s%d", i),
			"CID": cid, "content": fmt.Sprintf("m%d", i)})
		alice.sendRaw(string(b))
	}
	alice.sendRaw(`{"cmd": "GetConvoData", "rid": "read", "CID": "` + cid + `"}`)
	waitUntil(t, "a send waiting for the conversation's lock", func() bool {
		var waiting int
		_ = srv.db.pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
			AND NOT granted AND classid = $1 AND objid = $2`, uint32(uint64(key)>>32), uint32(key)).Scan(&waiting)
		return waiting > 0
	})
	if _, err := holder.Exec(t.Context(), "SELECT pg_advisory_unlock($1)", key); err != nil {
		t.Fatal(err)
	}
	data := alice.waitReply("read")
	msgs, _ := data["Messages"].([]any)
	got := 0
	for _, m := range msgs {
		if m.(map[string]any)["kind"] == "text" {
			got++
		}
	}
	if got != n {
		t.Fatalf("GetConvoData right after %d pipelined sends saw %d of them", n, got)
	}
	for i := range n {
		if rep := alice.waitReply(fmt.Sprintf("s%d", i)); rep["error"] != nil {
			t.Fatalf("send %d: %v", i, rep)
		}
	}
}

// A stream of sends with two outstanding, so that sends keep arriving as the conversation's
// writer runs out of work and retires: every send is still stored in the order sent. (The
// interleaving that once broke this, a send joining a writer as it retired, is rare here;
// TestRetiredWriterTakesNoSends forces it.)
func TestPipelinedStreamStaysInOrderAcrossIdleWriters(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandBurst = 100000
	cfg.CommandRate = 100000
	srv := startServer(t, cfg)
	alice := register(t, srv, "alice")
	cid := newConvo(t, alice, "stream")
	const n, window = 600, 2
	send := func(i int) {
		b, _ := json.Marshal(map[string]any{"cmd": "SendMessage", "rid": fmt.Sprintf("s%d", i),
			"CID": cid, "content": fmt.Sprintf("m%d", i)})
		alice.sendRaw(string(b))
	}
	ids := make([]float64, n)
	for i := range window {
		send(i)
	}
	for i := range n {
		rep := alice.waitReply(fmt.Sprintf("s%d", i))
		if rep["error"] != nil {
			t.Fatalf("send %d: %v", i, rep)
		}
		ids[i], _ = rep["id"].(float64)
		if i+window < n {
			send(i + window)
		}
	}
	for i := 1; i < n; i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("send %d stored with id %v, after send %d's %v", i, ids[i], i-1, ids[i-1])
		}
	}
}
