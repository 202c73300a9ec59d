package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// Many sessions sending to one conversation at once: every send is acknowledged after its own
// group's commit, stored once, with ids and m_times strictly increasing together; and the sends
// that met a running insert were written in groups.
func TestConcurrentSendsAreGroupCommitted(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandBurst = 1000
	srv := startServer(t, cfg)
	const senders, each = 10, 30
	owner := register(t, srv, "owner")
	var clients []*client
	for range senders {
		clients = append(clients, register(t, srv, "sender"))
	}
	cid := newConvo(t, owner, "busy", clients...)
	var wg sync.WaitGroup
	acks := make([][]map[string]any, senders)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range each {
				// The client_id of every third one is sent twice: the resend must not be stored.
				id := fmt.Sprintf("%d-%d", i, j)
				acks[i] = append(acks[i], c.call("SendMessage", map[string]any{"CID": cid, "content": id, "client_id": id}))
				if j%3 == 0 {
					acks[i] = append(acks[i], c.call("SendMessage", map[string]any{"CID": cid, "content": id, "client_id": id}))
				}
			}
		}()
	}
	wg.Wait()
	byClientID := map[string]float64{}
	for _, list := range acks {
		for _, a := range list {
			if a["error"] != nil {
				t.Fatalf("send failed: %v", a)
			}
			cidKey := a["client_id"].(string)
			if prev, ok := byClientID[cidKey]; ok && prev != a["id"].(float64) {
				t.Fatalf("a resend of %s was stored again: ids %v and %v", cidKey, prev, a["id"])
			}
			byClientID[cidKey] = a["id"].(float64)
		}
	}
	var rows []struct {
		id int64
		mt string
	}
	r, err := srv.db.pool.Query(t.Context(), fmt.Sprintf("SELECT id, m_time::text FROM %s ORDER BY m_time", convTable(cid)))
	if err != nil {
		t.Fatal(err)
	}
	for r.Next() {
		var row struct {
			id int64
			mt string
		}
		_ = r.Scan(&row.id, &row.mt)
		rows = append(rows, row)
	}
	if len(rows) != senders*each {
		t.Fatalf("%d rows stored, want %d", len(rows), senders*each)
	}
	if !sort.SliceIsSorted(rows, func(i, j int) bool { return rows[i].id < rows[j].id }) {
		t.Fatal("ids do not increase with m_time")
	}
	for i := 1; i < len(rows); i++ {
		if rows[i].id == rows[i-1].id || rows[i].mt == rows[i-1].mt {
			t.Fatalf("rows %d and %d share an id or an m_time: %v %v", i-1, i, rows[i-1], rows[i])
		}
	}
	groups, written := insertGroups(t, srv)
	t.Logf("%d sends (%d stored) in %d groups", int(written), len(rows), groups)
	if groups >= uint64(written) {
		t.Errorf("%d sends in %d groups: no send was grouped", int(written), groups)
	}
}

// A written group is delivered in commit order, one NATS message per member for each run of
// messages to the same members: a JSON text sequence when the run has several, a plain frame
// when one; a run ends where the members change or the sequence would pass its bound; failed
// sends and resends are not delivered by the writer.
func TestGroupIsDeliveredAsSequences(t *testing.T) {
	srv := startServer(t, testConfig(t))
	user := uniqueName("seq")
	sub, err := srv.db.nc.SubscribeSync(userSubject(upperName(user)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.db.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	three := &ConvoRecord{CID: "c1", Members: []string{user, "other"}}
	two := &ConvoRecord{CID: "c1", Members: []string{user}}
	big := strings.Repeat("x", maxSequence/2)
	var group []*queuedInsert
	add := func(to *ConvoRecord, content string, dup bool, err error) {
		group = append(group, &queuedInsert{m: &Message{Cmd: "SendMessage", CID: "c1",
			ID: int64(len(group) + 1), FUsername: "other", Content: content}, to: to, dup: dup, err: err})
	}
	add(three, "a", false, nil)
	add(three, "b", false, nil)
	add(three, "resent", true, nil)
	add(three, "failed", false, errors.New("no"))
	add(three, "c", false, nil)
	add(two, "d", false, nil) // the members changed
	add(two, big, false, nil)
	add(two, big, false, nil) // over the bound with the one before
	add(nil, "not ours", false, nil)
	srv.db.deliverGroup(group)
	srv.db.publish([]string{user}, []byte("end"), "") // after the group's, in order

	var got [][]string
	for {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("after %d NATS messages: %v", len(got), err)
		}
		if string(msg.Data) == "end" {
			break
		}
		var frames []string
		if isSequence(msg) {
			for f := range bytes.SplitSeq(msg.Data[1:], []byte{frameSeparator}) {
				frames = append(frames, string(f))
			}
		} else {
			frames = []string{string(msg.Data)}
		}
		var contents []string
		for _, f := range frames {
			var m Message
			if err := json.Unmarshal([]byte(f), &m); err != nil {
				t.Fatalf("frame %q: %v", f, err)
			}
			contents = append(contents, m.Content)
		}
		got = append(got, contents)
	}
	want := [][]string{{"a", "b", "c"}, {"d", big}, {big}}
	for i, w := range want {
		if i >= len(got) || !slices.Equal(got[i], w) {
			t.Fatalf("NATS message %d carried %d frames %.20q, want %.20q", i, len(got[i]), got[i], w)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d NATS messages, want %d", len(got), len(want))
	}
}

// insertGroups reads the group commit histogram: how many groups wrote how many sends.
func insertGroups(t *testing.T, srv *testServer) (groups uint64, written float64) {
	t.Helper()
	var h dto.Metric
	if err := srv.db.metrics.insertGroups.Write(&h); err != nil {
		t.Fatal(err)
	}
	return h.GetHistogram().GetSampleCount(), h.GetHistogram().GetSampleSum()
}

// A send that finds a conversation's writer just as it goes idle does not join it: the writer
// retires, and the send goes to a successor, so that one writer per conversation is ever in use.
func TestRetiredWriterTakesNoSends(t *testing.T) {
	srv := startServer(t, testConfig(t))
	db := srv.db
	cid := newCID()
	w := &convWriter{cid: cid, running: true}
	db.writers.Store(cid, w)
	found, _ := db.writers.Load(cid) // a send finds the writer…
	if db.finishGroup(w) {           // …as its last group ends
		t.Fatal("an empty writer has more to write")
	}
	q := &queuedInsert{m: &Message{CID: cid}, done: make(chan struct{})}
	if _, ok := found.(*convWriter).enqueue(q); ok {
		t.Fatal("a retired writer took a send: two writers of one conversation could run at once")
	}
	q, lead := db.queueInsert(&Message{CID: cid}, nil)
	next, _ := db.writers.Load(cid)
	if lead == nil || next == w || next == nil {
		t.Fatalf("the send after a retirement did not lead a successor (lead %v, same writer %v)", lead != nil, next == w)
	}
	next.(*convWriter).mu.Lock()
	defer next.(*convWriter).mu.Unlock()
	if len(next.(*convWriter).queue) != 1 || next.(*convWriter).queue[0] != q {
		t.Fatal("the send is not queued on the successor")
	}
}
