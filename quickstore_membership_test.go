package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMembershipChangesAreNeverLost: conversations joined, left and marked at the same moment
// on one user's record all land, because each is one atomic map change, not a rewrite of the
// record under compare-and-set.
func TestMembershipChangesAreNeverLost(t *testing.T) {
	srv := startServer(t, testConfig(t))
	bob := register(t, srv, "bob")
	const n = 12
	owners := make([]*client, n)
	for i := range owners {
		owners[i] = register(t, srv, "own")
	}
	cids := make([]string, n)
	var wg sync.WaitGroup
	for i, o := range owners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep := o.call("CreateConversation", map[string]any{"Name": fmt.Sprint("c", i), "Members": []string{bob.name}})
			cids[i], _ = rep["CID"].(string)
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := srv.db.getUser(ctx, bob.name)
	if err != nil {
		t.Fatal(err)
	}
	for i, cid := range cids {
		if u.Convos[cid] == nil {
			t.Fatalf("conversation %d (%q) missing from bob's record: %v", i, cid, u.Convos)
		}
	}
	// Half are left while bob marks the others, all at once.
	for i, cid := range cids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				owners[i].ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": bob.name})
				return
			}
			if err := srv.db.setSynced(ctx, bob.name, cid, fmt.Sprintf("2026-11-28T00:00:%02d.000000Z", i)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if u, err = srv.db.getUser(ctx, bob.name); err != nil {
		t.Fatal(err)
	}
	for i, cid := range cids {
		uc := u.Convos[cid]
		switch {
		case i%2 == 0 && uc != nil:
			t.Errorf("conversation %d still listed after bob was removed", i)
		case i%2 == 1 && (uc == nil || uc.SyncedMtime != fmt.Sprintf("2026-11-28T00:00:%02d.000000Z", i)):
			t.Errorf("conversation %d: %+v, want its sync point", i, uc)
		}
	}
}

// TestLegacyUserRecordsMoveTheirConversations: a record written before the conversation bins
// (the map inside the data bin) is read as it is, moved by the next write, and leaving works
// on it without leaving the entry behind.
func TestLegacyUserRecordsMoveTheirConversations(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	keep := newConvo(t, alice, "keep", bob)
	leave := newConvo(t, alice, "leave", bob)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, key := srv.db.quick, userKey(alice.name)

	// Rewrite alice's record the old way.
	u, _, err := srv.db.getUserRecord(ctx, alice.name)
	if err != nil {
		t.Fatal(err)
	}
	u.LegacyConvos = map[string]*UserConvo{
		keep:  {SyncedMtime: "2026-01-01T00:00:00.000000Z", Unread: 2, UnreadAt: "2026-01-02T00:00:00.000000Z"},
		leave: {},
	}
	data, err := encodeRecord(key, u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Put(ctx, key, Bins{dataBin: data}, PutOptions{Mode: ReplaceOnly}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(data, `"Convos":{`) {
		t.Fatalf("the legacy layout was not written: %s", data)
	}

	got, err := srv.db.getUser(ctx, alice.name)
	if err != nil {
		t.Fatal(err)
	}
	if uc := got.Convos[keep]; uc == nil || uc.Unread != 2 || got.Convos[leave] == nil {
		t.Fatalf("legacy record read as %+v", got.Convos)
	}

	// Leaving moves the rest into the bins first.
	alice.ok("RemoveUserFromConversation", map[string]any{"CID": leave, "Username": alice.name})
	rec, err := q.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := rec.Bins[dataBin].(string); strings.Contains(s, `"Convos"`) {
		t.Errorf("the data bin still holds the conversations: %s", s)
	}
	joined, _ := rec.Bins[convosBin].(map[string]any)
	if _, ok := joined[keep]; !ok || len(joined) != 1 {
		t.Errorf("conversation bin %v, want only %s", joined, keep)
	}
	got, err = srv.db.getUser(ctx, alice.name)
	if err != nil {
		t.Fatal(err)
	}
	uc := got.Convos[keep]
	if len(got.Convos) != 1 || uc == nil || uc.SyncedMtime != "2026-01-01T00:00:00.000000Z" || uc.Unread != 2 ||
		uc.UnreadAt != "2026-01-02T00:00:00.000000Z" {
		t.Errorf("after moving: %+v, %+v", got.Convos, uc)
	}
}
