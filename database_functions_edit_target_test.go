package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"
)

// targetRows is the size of the conversation TestChangeTargetsAreFoundOutsideTheLock fills.
const targetRows = 500_000

// TestChangeTargetsAreFoundOutsideTheLock: in a conversation of half a million rows, a change
// naming an id that does not exist is refused with a clear error after a bounded search (a few
// hundred pages read, not the table's thousands), and the search runs before the conversation's
// lock is taken: while a bogus edit is held inside its search, another member's message is
// stored and acknowledged. Old messages are still found by id alone (no m_time), including in a
// table whose ids are slightly out of m_time order, as the first release's may be.
func TestChangeTargetsAreFoundOutsideTheLock(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "bigedit")
	bob := register(t, srv, "bigbob")
	cid := newConvo(t, alice, "big", bob)
	ctx := context.Background()
	table := convTable(cid)
	// Rows 1..targetRows but every thousandth id (a hole: an id that does not exist), the first
	// half a year before the second, µs apart by varying steps: ids increase with m_time.
	start := time.Now()
	_, err := srv.db.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (m_time, id, f_username, content, kind)
		SELECT now() - CASE WHEN i < $1 / 2 THEN interval '400 days' ELSE interval '1 day' END
				+ (i * 1000 + i %% 7) * interval '1 microsecond',
			i, $2, 'seeded ' || i, 'text'
		FROM generate_series(1, $1::int) i WHERE i %% 1000 <> 0`, table), targetRows, alice.name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.db.pool.Exec(ctx, "ANALYZE "+table); err != nil {
		t.Fatal(err)
	}
	t.Logf("filled %d rows in %s", targetRows, time.Since(start).Round(time.Millisecond))

	// Every id is found, or not, as it exists, without its m_time.
	for _, id := range []int64{1, 2, 999, 1000, 1001, targetRows/2 - 1, targetRows / 2, targetRows/2 + 1, 123457, 250000, 250001,
		targetRows - 1, targetRows, targetRows + 1, 0, -5, 1 << 40} {
		m, err := findTarget(ctx, srv.db.pool, cid, id, "")
		exists := id >= 1 && id <= targetRows && id%1000 != 0
		if exists && (err != nil || m.ID != id || m.Content != fmt.Sprint("seeded ", id)) || !exists && err != errNoSuchMessage {
			t.Errorf("id %d: %+v %v (exists: %v)", id, m, err, exists)
		}
	}
	// Two neighbours out of order are found too.
	if _, err := srv.db.pool.Exec(ctx, fmt.Sprintf(`UPDATE %s SET id = CASE id WHEN 300100 THEN 300101 ELSE 300100 END
		WHERE id IN (300100, 300101)`, table)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{300100, 300101} {
		if m, err := findTarget(ctx, srv.db.pool, cid, id, ""); err != nil || m.ID != id {
			t.Errorf("swapped id %d: %+v %v", id, m, err)
		}
	}

	// The search is bounded: pages read for an id that does not exist, against the table's.
	var pages int64
	if err := srv.db.pool.QueryRow(ctx, "SELECT pg_relation_size($1) / 8192", table).Scan(&pages); err != nil {
		t.Fatal(err)
	}
	var plan string
	if err := srv.db.pool.QueryRow(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+findByIDSQL(cid), int64(250000)).Scan(&plan); err != nil {
		t.Fatal(err)
	}
	var p []struct {
		Plan struct {
			Hit  int64 `json:"Shared Hit Blocks"`
			Read int64 `json:"Shared Read Blocks"`
		}
		Time float64 `json:"Execution Time"`
	}
	if err := json.Unmarshal([]byte(plan), &p); err != nil || len(p) != 1 {
		t.Fatalf("plan %s: %v", plan, err)
	}
	t.Logf("a missing id: %d pages read of the table's %d, %.2f ms", p[0].Plan.Hit+p[0].Plan.Read, pages, p[0].Time)
	if n := p[0].Plan.Hit + p[0].Plan.Read; n > 1000 || pages < 5000 {
		t.Fatalf("a missing id read %d pages of %d", n, pages)
	}

	// Old messages are edited and reacted to by id alone.
	alice.ok("EditMessage", map[string]any{"CID": cid, "ID": 7, "content": "seven, edited"})
	bob.ok("React", map[string]any{"CID": cid, "ID": 400001, "emoji": "👍", "on": true})
	bob.waitPush("the edit", func(p map[string]any) bool { return p["kind"] == "edit" && p["target"] == float64(7) })

	// A bogus edit held inside its search does not hold the conversation.
	const missing = 250000
	entered, release := make(chan struct{}), make(chan struct{})
	var once, unblock sync.Once
	hook := func(c string, id int64) {
		if c == cid && id == missing {
			once.Do(func() { close(entered) })
			<-release
		}
	}
	targetSearchHook.Store(&hook)
	t.Cleanup(func() {
		unblock.Do(func() { close(release) })
		targetSearchHook.Store(nil)
	})
	alice.sendRaw(fmt.Sprintf(`{"cmd":"EditMessage","rid":"bogus","CID":%q,"ID":%d,"M_time":"2001-01-01T00:00:00.000000Z","content":"x"}`, cid, missing))
	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("the bogus edit never searched")
	}
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "not held up"})
	unblock.Do(func() { close(release) })
	if rep := alice.waitReply("bogus"); rep["error"] != "no such message in this conversation" {
		t.Fatalf("bogus edit: %v", rep)
	}
	began := time.Now()
	bob.fails("DeleteMessage", map[string]any{"CID": cid, "ID": missing}, "no such message in this conversation")
	bob.fails("React", map[string]any{"CID": cid, "ID": targetRows * 2, "emoji": "👍", "on": true}, "no such message")
	bob.fails("SendMessage", map[string]any{"CID": cid, "content": "re", "reply_to": missing}, "no such message")
	t.Logf("three bogus changes answered in %s", time.Since(began).Round(time.Microsecond))
}
