package main

import (
	"fmt"
	"sort"
	"sync"
	"testing"

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
	var h dto.Metric
	if err := srv.db.metrics.insertGroups.Write(&h); err != nil {
		t.Fatal(err)
	}
	groups, written := h.GetHistogram().GetSampleCount(), h.GetHistogram().GetSampleSum()
	t.Logf("%d sends (%d stored) in %d groups", int(written), len(rows), groups)
	if groups >= uint64(written) {
		t.Errorf("%d sends in %d groups: no send was grouped", int(written), groups)
	}
}
