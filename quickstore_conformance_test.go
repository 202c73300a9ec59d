package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"pingedchat/internal/aerotest"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"
)

// One conformance suite for every QuickStore backend: the same calls must give the same
// results, whichever backend runs them. Each run uses a fresh random set, and each subtest its
// own store and keys, so runs (and backends sharing a server) never see each other's records.
// One set per run rather than per subtest, because a real Aerospike namespace never forgets a
// set name and holds at most 4095 of them.

// coldRestart, when not nil, restarts the backend's server the way that loses its index
// (Aerospike CE's cold start); nil when the test cannot restart it.
func runQuickStoreConformance(t *testing.T, open func(t *testing.T) QuickStore, coldRestart func(t *testing.T)) {
	set := qsRandomSet(t)
	tests := []struct {
		name string
		fn   func(*testing.T, *qsFixture)
	}{
		{"DeletesStayDeleted", func(t *testing.T, f *qsFixture) { qsDeletesStayDeleted(t, f, coldRestart) }},
		{"GetMissing", qsGetMissing},
		{"PutModesOnMissingRecord", qsPutModesOnMissing},
		{"PutModesOnExistingRecord", qsPutModesOnExisting},
		{"NilRemovesBin", qsNilRemovesBin},
		{"ExpectedGeneration", qsExpectedGeneration},
		{"Delete", qsDelete},
		{"TTLExpiry", qsTTLExpiry},
		{"CreateOnlyRace", qsCreateOnlyRace},
		{"CompareAndSetCounter", qsCASCounter},
		{"LargeBins", qsLargeBins},
		{"Unicode", qsUnicode},
		{"ListsAndMaps", qsListsAndMaps},
		{"BadBins", qsBadBins},
		{"ModifyMaps", qsModifyMaps},
		{"GetMany", qsGetMany},
		{"ModifyMapsThenPut", qsModifyMapsThenPut},
		{"ModifyMapsMany", qsModifyMapsMany},
		{"ModifyMapsConcurrently", qsModifyMapsConcurrently},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newQSFixture(t, open(t), set)
			f.prefix = tc.name + "/"
			tc.fn(t, f)
		})
	}
}

// qsFixture is one subtest's store, context, and place for its records.
type qsFixture struct {
	t      *testing.T
	q      QuickStore
	ctx    context.Context
	set    string
	prefix string // of every key, so subtests sharing a set never share a record
}

func newQSFixture(t *testing.T, q QuickStore, set string) *qsFixture {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return &qsFixture{t: t, q: q, ctx: ctx, set: set}
}

func qsRandomSet(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "conf_" + hex.EncodeToString(b[:])
}

func (f *qsFixture) key(ns, k string) Key {
	return Key{Namespace: ns, Set: f.set, Key: f.prefix + k}
}

// put writes and fails the test on error, returning the new generation.
func (f *qsFixture) put(k Key, bins Bins, opts PutOptions) uint32 {
	f.t.Helper()
	gen, err := f.q.Put(f.ctx, k, bins, opts)
	if err != nil {
		f.t.Fatalf("put %s %v: %v", k, opts, err)
	}
	return gen
}

// putErr writes and requires the error want (by errors.Is).
func (f *qsFixture) putErr(k Key, bins Bins, opts PutOptions, want error) {
	f.t.Helper()
	if _, err := f.q.Put(f.ctx, k, bins, opts); !errors.Is(err, want) {
		f.t.Fatalf("put %s %+v: got %v, want %v", k, opts, err, want)
	}
}

// expect reads k and requires exactly these bins and generation (0: any).
func (f *qsFixture) expect(k Key, want Bins, gen uint32) {
	f.t.Helper()
	rec, err := f.q.Get(f.ctx, k)
	if err != nil {
		f.t.Fatalf("get %s: %v", k, err)
	}
	if gen != 0 && rec.Generation != gen {
		f.t.Fatalf("get %s: generation %d, want %d", k, rec.Generation, gen)
	}
	if !qsSameBins(rec.Bins, want) {
		f.t.Fatalf("get %s:\n got  %#v\n want %#v", k, rec.Bins, want)
	}
}

// expectMissingEventually is expectMissing for right after a server restart: a read that
// fails because the server is not back yet is tried again, within a deadline.
func (f *qsFixture) expectMissingEventually(k Key) {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := f.q.Get(f.ctx, k)
		if errors.Is(err, ErrNotFound) {
			return
		}
		if err == nil {
			f.t.Fatalf("%s came back after the restart", k)
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("get %s after the restart: %v", k, err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval while the server comes back
	}
}

func (f *qsFixture) expectMissing(k Key) {
	f.t.Helper()
	if rec, err := f.q.Get(f.ctx, k); !errors.Is(err, ErrNotFound) {
		f.t.Fatalf("get %s: got %v, %v; want ErrNotFound", k, rec, err)
	}
}

// qsSameBins compares bins strictly: same names, same Go types, same values.
func qsSameBins(got, want Bins) bool {
	if len(got) != len(want) {
		return false
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok || !qsSameValue(g, w) {
			return false
		}
	}
	return true
}

func qsSameValue(got, want any) bool {
	switch w := want.(type) {
	case []byte:
		g, ok := got.([]byte)
		return ok && bytes.Equal(g, w)
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return false
		}
		for i := range w {
			if !qsSameValue(g[i], w[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		g, ok := got.(map[string]any)
		return ok && qsSameBins(Bins(g), Bins(w))
	case string, int64:
		return got == want // compares dynamic types too: int is not int64
	}
	return false
}

func qsGetMissing(t *testing.T, f *qsFixture) {
	f.expectMissing(f.key(nsUsers, "nobody"))
	f.expectMissing(f.key(nsConvos, "nothing"))
}

func qsPutModesOnMissing(t *testing.T, f *qsFixture) {
	bins := Bins{"a": "x", "n": int64(1)}
	for _, mode := range []PutMode{Upsert, CreateOnly, Replace} {
		k := f.key(nsUsers, fmt.Sprintf("create-%d", mode))
		if gen := f.put(k, bins, PutOptions{Mode: mode}); gen != 1 {
			t.Fatalf("mode %d on a missing record: generation %d, want 1", mode, gen)
		}
		f.expect(k, bins, 1)
	}
	for _, mode := range []PutMode{UpdateOnly, ReplaceOnly} {
		k := f.key(nsUsers, fmt.Sprintf("update-%d", mode))
		f.putErr(k, bins, PutOptions{Mode: mode}, ErrNotFound)
		f.expectMissing(k)
	}
}

func qsPutModesOnExisting(t *testing.T, f *qsFixture) {
	k := f.key(nsConvos, "c1")
	f.put(k, Bins{"a": "1", "b": int64(2)}, PutOptions{Mode: CreateOnly})

	if gen := f.put(k, Bins{"c": int64(3)}, PutOptions{}); gen != 2 {
		t.Fatalf("upsert: generation %d, want 2", gen)
	}
	f.expect(k, Bins{"a": "1", "b": int64(2), "c": int64(3)}, 2)

	f.putErr(k, Bins{"a": "lost"}, PutOptions{Mode: CreateOnly}, ErrExists)
	f.expect(k, Bins{"a": "1", "b": int64(2), "c": int64(3)}, 2)

	f.put(k, Bins{"a": "one"}, PutOptions{Mode: UpdateOnly})
	f.expect(k, Bins{"a": "one", "b": int64(2), "c": int64(3)}, 3)

	f.put(k, Bins{"d": "only"}, PutOptions{Mode: Replace})
	f.expect(k, Bins{"d": "only"}, 4)

	if gen := f.put(k, Bins{"e": int64(5), "f": "six"}, PutOptions{Mode: ReplaceOnly}); gen != 5 {
		t.Fatalf("replace-only: generation %d, want 5", gen)
	}
	f.expect(k, Bins{"e": int64(5), "f": "six"}, 5)
}

func qsNilRemovesBin(t *testing.T, f *qsFixture) {
	k := f.key(nsUsers, "nil")
	f.put(k, Bins{"a": "1", "b": "2", "c": "3"}, PutOptions{})
	f.put(k, Bins{"b": nil, "d": "4"}, PutOptions{})
	f.expect(k, Bins{"a": "1", "c": "3", "d": "4"}, 2)
	f.put(k, Bins{"a": nil, "absent": nil}, PutOptions{Mode: UpdateOnly})
	f.expect(k, Bins{"c": "3", "d": "4"}, 3)
	// In a replace a nil bin is simply not there afterwards.
	f.put(k, Bins{"x": "new", "c": nil}, PutOptions{Mode: Replace})
	f.expect(k, Bins{"x": "new"}, 4)
}

func qsExpectedGeneration(t *testing.T, f *qsFixture) {
	k := f.key(nsConvos, "cas")
	gen := f.put(k, Bins{"v": int64(1)}, PutOptions{})
	gen2 := f.put(k, Bins{"v": int64(2)}, PutOptions{Generation: gen})
	if gen2 != gen+1 {
		t.Fatalf("CAS write: generation %d, want %d", gen2, gen+1)
	}
	f.putErr(k, Bins{"v": int64(99)}, PutOptions{Generation: gen}, ErrGeneration)
	f.expect(k, Bins{"v": int64(2)}, gen2)

	// Every mode that may find the record honours the expected generation.
	g := gen2
	for _, mode := range []PutMode{Upsert, UpdateOnly, Replace, ReplaceOnly} {
		f.putErr(k, Bins{"v": "stale"}, PutOptions{Mode: mode, Generation: g - 1}, ErrGeneration)
		g = f.put(k, Bins{"v": fmt.Sprint(mode)}, PutOptions{Mode: mode, Generation: g})
	}
	f.expect(k, Bins{"v": fmt.Sprint(ReplaceOnly)}, g)

	// An expected generation on a missing record is a mismatch, whatever the mode.
	missing := f.key(nsConvos, "cas-missing")
	for _, mode := range []PutMode{Upsert, UpdateOnly, Replace, ReplaceOnly} {
		f.putErr(missing, Bins{"v": "x"}, PutOptions{Mode: mode, Generation: 3}, ErrGeneration)
	}
	f.expectMissing(missing)
}

func qsDelete(t *testing.T, f *qsFixture) {
	k := f.key(nsUsers, "del")
	gen := f.put(k, Bins{"a": "x"}, PutOptions{})

	if _, err := f.q.Delete(f.ctx, k, gen+1); !errors.Is(err, ErrGeneration) {
		t.Fatalf("delete with a stale generation: %v, want ErrGeneration", err)
	}
	f.expect(k, Bins{"a": "x"}, gen)
	if existed, err := f.q.Delete(f.ctx, k, gen); err != nil || !existed {
		t.Fatalf("delete with the right generation: %v, %v", existed, err)
	}
	f.expectMissing(k)
	if existed, err := f.q.Delete(f.ctx, k, 0); err != nil || existed {
		t.Fatalf("delete of a missing record: %v, %v; want false, nil", existed, err)
	}
	if _, err := f.q.Delete(f.ctx, k, 1); !errors.Is(err, ErrGeneration) {
		t.Fatalf("delete of a missing record with a generation: %v, want ErrGeneration", err)
	}

	// Unconditional delete; then the key is free again: a create-only write makes a new record.
	// (Its generation need not start at 1: on Aerospike it goes on from the tombstone's.)
	f.put(k, Bins{"a": "y"}, PutOptions{})
	if existed, err := f.q.Delete(f.ctx, k, 0); err != nil || !existed {
		t.Fatalf("delete: %v, %v", existed, err)
	}
	gen = f.put(k, Bins{"a": "z"}, PutOptions{Mode: CreateOnly})
	f.expect(k, Bins{"a": "z"}, gen)
	f.putErr(k, Bins{"a": "w"}, PutOptions{Mode: CreateOnly}, ErrExists)
	// Update-only and replace-only writes find a deleted record missing.
	if _, err := f.q.Delete(f.ctx, k, 0); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []PutMode{UpdateOnly, ReplaceOnly} {
		f.putErr(k, Bins{"a": "v"}, PutOptions{Mode: mode}, ErrNotFound)
	}
	// An upsert over a deleted record writes a fresh one, without anything of the old.
	gen = f.put(k, Bins{"b": "fresh"}, PutOptions{})
	f.expect(k, Bins{"b": "fresh"}, gen)
}

// qsDeletesStayDeleted: deleted records stay deleted across a restart that rebuilds the
// server's index (Aerospike CE brings back deleted data on a cold start unless it is
// overwritten): tokens with a TTL, and records without one, deleted with and without an
// expected generation; and a key freed by a delete can be created again and survive too.
func qsDeletesStayDeleted(t *testing.T, f *qsFixture, coldRestart func(t *testing.T)) {
	token := f.key(nsUsers, "token")
	user := f.key(nsUsers, "user")
	convo := f.key(nsConvos, "convo")
	reborn := f.key(nsUsers, "reborn")
	f.put(token, Bins{"u": "alice"}, PutOptions{TTL: time.Hour})
	userGen := f.put(user, Bins{"u": "bob"}, PutOptions{})
	f.put(convo, Bins{"m": []any{"a", "b"}}, PutOptions{})
	f.put(reborn, Bins{"v": "first"}, PutOptions{})
	for _, k := range []Key{token, convo, reborn} {
		if existed, err := f.q.Delete(f.ctx, k, 0); err != nil || !existed {
			t.Fatalf("delete %s: %v %v", k, existed, err)
		}
	}
	if existed, err := f.q.Delete(f.ctx, user, userGen); err != nil || !existed {
		t.Fatalf("delete with generation: %v %v", existed, err)
	}
	rebornGen := f.put(reborn, Bins{"v": "second"}, PutOptions{Mode: CreateOnly})
	if coldRestart == nil {
		t.Log("no cold restart for this server: only the reads after the deletes are checked")
	} else {
		coldRestart(t)
	}
	for _, k := range []Key{token, user, convo} {
		f.expectMissingEventually(k)
	}
	f.expect(reborn, Bins{"v": "second"}, rebornGen)
	// The freed keys can be used again.
	gen := f.put(token, Bins{"u": "carol"}, PutOptions{Mode: CreateOnly, TTL: time.Hour})
	f.expect(token, Bins{"u": "carol"}, gen)
}

// qsTTLExpiry needs the users namespace to allow TTLs (nsup-period set, as aerospike.conf does).
func qsTTLExpiry(t *testing.T, f *qsFixture) {
	short := f.key(nsUsers, "short")
	kept := f.key(nsUsers, "kept")
	start := time.Now()
	f.put(short, Bins{"s": "bye"}, PutOptions{TTL: time.Second})
	f.put(kept, Bins{"s": "stay"}, PutOptions{TTL: time.Second})
	f.put(kept, Bins{"s": "stay"}, PutOptions{}) // TTL 0: from now on it never expires
	f.expect(short, Bins{"s": "bye"}, 1)

	deadline := start.Add(10 * time.Second)
	for {
		_, err := f.q.Get(f.ctx, short)
		if errors.Is(err, ErrNotFound) {
			break
		}
		if err != nil {
			t.Fatalf("get while waiting for expiry: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("a record with a 1 s TTL still exists after 10 s")
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	if elapsed := time.Since(start); elapsed < 900*time.Millisecond {
		t.Fatalf("a record with a 1 s TTL expired after %v", elapsed)
	}
	f.expect(kept, Bins{"s": "stay"}, 2)

	// An expired record counts as missing: a create-only write starts it over.
	if gen := f.put(short, Bins{"s": "again"}, PutOptions{Mode: CreateOnly}); gen != 1 {
		t.Fatalf("create over an expired record: generation %d, want 1", gen)
	}
	f.expect(short, Bins{"s": "again"}, 1)
}

func qsCreateOnlyRace(t *testing.T, f *qsFixture) {
	const racers = 16
	k := f.key(nsUsers, "unique")
	start := make(chan struct{})
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = f.q.Put(f.ctx, k, Bins{"owner": int64(i)}, PutOptions{Mode: CreateOnly})
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("racers %d and %d both created the record", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, ErrExists):
			t.Fatalf("racer %d: %v, want nil or ErrExists", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no racer created the record")
	}
	f.expect(k, Bins{"owner": int64(winner)}, 1)
}

// qsCASCounter increments one counter from several goroutines by read-modify-write with a
// generation check, retrying on conflict; no increment may be lost or applied twice.
func qsCASCounter(t *testing.T, f *qsFixture) {
	const workers, increments = 8, 25
	k := f.key(nsConvos, "counter")
	f.put(k, Bins{"n": int64(0)}, PutOptions{Mode: CreateOnly})
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range increments {
				if err := qsIncrement(f, k); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f.expect(k, Bins{"n": int64(workers * increments)}, 1+workers*increments)
}

func qsIncrement(f *qsFixture, k Key) error {
	for attempt := 0; attempt < 1000; attempt++ {
		rec, err := f.q.Get(f.ctx, k)
		if err != nil {
			return err
		}
		n, _ := rec.Bins["n"].(int64)
		_, err = f.q.Put(f.ctx, k, Bins{"n": n + 1}, PutOptions{Mode: ReplaceOnly, Generation: rec.Generation})
		if !errors.Is(err, ErrGeneration) {
			return err
		}
	}
	return errors.New("increment: too many generation conflicts")
}

func qsLargeBins(t *testing.T, f *qsFixture) {
	blob := make([]byte, 100<<10)
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("large bin ✓ ", 100<<10/14)
	k := f.key(nsConvos, "large")
	f.put(k, Bins{"text": text, "blob": blob}, PutOptions{})
	f.expect(k, Bins{"text": text, "blob": blob}, 1)
}

func qsUnicode(t *testing.T, f *qsFixture) {
	bins := Bins{
		"name":  "Zoë Ñandú — 名前 🚀",
		"list":  []any{"ключ", "🔑", "tab\there"},
		"map":   map[string]any{"ключ": "значение", "😀": "smile"},
		"empty": "",
	}
	for _, key := range []string{"ключ-🔑-鍵", "Ünïcödé", "spaces and\ttabs"} {
		k := f.key(nsUsers, key)
		f.put(k, bins, PutOptions{Mode: CreateOnly})
		f.expect(k, bins, 1)
	}
	f.expectMissing(f.key(nsUsers, "KЛЮЧ-🔑-鍵")) // keys are exact, not case-folded
}

func qsListsAndMaps(t *testing.T, f *qsFixture) {
	k := f.key(nsConvos, "cdt")
	in := Bins{
		"members": []any{"alice", "bob", int64(3), int(4), []byte{0, 1, 2}, []any{"nested", int64(-1)},
			map[string]any{"in": "list"}},
		"meta": map[string]any{
			"name": "team", "n": int64(-5), "big": int64(math.MaxInt64), "small": int64(math.MinInt64),
			"files": []any{}, "none": map[string]any{}, "blob": []byte("b"),
			"deep": map[string]any{"l": []any{map[string]any{"x": int64(1)}}},
			"tag":  map[string]any{"$b": "not base64!"}, "tag2": map[string]any{"$m": "x"},
		},
		"count":  int(7),
		"emptyL": []any{},
		"emptyM": map[string]any{},
	}
	want := Bins{
		"members": []any{"alice", "bob", int64(3), int64(4), []byte{0, 1, 2}, []any{"nested", int64(-1)},
			map[string]any{"in": "list"}},
		"meta":   in["meta"],
		"count":  int64(7), // int is accepted and read back as int64
		"emptyL": []any{},
		"emptyM": map[string]any{},
	}
	f.put(k, in, PutOptions{})
	f.expect(k, want, 1)
}

func qsBadBins(t *testing.T, f *qsFixture) {
	k := f.key(nsUsers, "bad")
	for name, bins := range map[string]Bins{
		"float":           {"f": 1.5},
		"bool":            {"b": true},
		"typed slice":     {"s": []string{"a"}},
		"nil in list":     {"l": []any{"a", nil}},
		"nil in map":      {"m": map[string]any{"k": nil}},
		"float in map":    {"m": map[string]any{"k": 2.5}},
		"long bin name":   {"sixteen-bytes-xx": "x"},
		"empty bin name":  {"": "x"},
		"int32":           {"i": int32(1)},
		"nested bad type": {"l": []any{[]any{uint(1)}}},
	} {
		if _, err := f.q.Put(f.ctx, k, bins, PutOptions{}); !errors.Is(err, ErrBadBin) {
			t.Errorf("%s: got %v, want ErrBadBin", name, err)
		}
	}
	f.expectMissing(k)
}

func qsModifyMaps(t *testing.T, f *qsFixture) {
	k := f.key(nsUsers, "maps")
	ops := []MapOp{{Bin: "convos", Key: "c1", Value: int64(1)}}
	if _, err := f.q.ModifyMaps(f.ctx, k, ops); !errors.Is(err, ErrNotFound) {
		t.Fatalf("modify a missing record: %v, want ErrNotFound", err)
	}
	f.expectMissing(k)
	f.put(k, Bins{"data": "x", "convos": map[string]any{"c0": int64(7)}}, PutOptions{Mode: CreateOnly})
	gen, err := f.q.ModifyMaps(f.ctx, k, []MapOp{
		{Bin: "convos", Key: "c1", Value: int64(1)},
		{Bin: "synced", Key: "c1", Value: "2026-11-28T00:00:00Z"},
		{Bin: "unread", Key: "c1", Value: []any{int64(3), "at"}},
		{Bin: "convos", Key: "c0", Value: int64(8)},
		{Bin: "gone", Key: "c9"}, // removing from a missing bin creates nothing
	})
	if err != nil || gen != 2 {
		t.Fatalf("modify: generation %d, %v; want 2", gen, err)
	}
	f.expect(k, Bins{"data": "x", "convos": map[string]any{"c0": int64(8), "c1": int64(1)},
		"synced": map[string]any{"c1": "2026-11-28T00:00:00Z"}, "unread": map[string]any{"c1": []any{int64(3), "at"}}}, 2)
	// Removing the last entry leaves an empty map; removing twice is harmless.
	for range 2 {
		if _, err := f.q.ModifyMaps(f.ctx, k, []MapOp{{Bin: "convos", Key: "c0"}, {Bin: "synced", Key: "c1"},
			{Bin: "unread", Key: "c1"}}); err != nil {
			t.Fatal(err)
		}
	}
	f.expect(k, Bins{"data": "x", "convos": map[string]any{"c1": int64(1)}, "synced": map[string]any{},
		"unread": map[string]any{}}, 4)
	for name, bad := range map[string][]MapOp{
		"none":         nil,
		"tag key":      {{Bin: "convos", Key: "$b", Value: "x"}},
		"empty key":    {{Bin: "convos", Key: "", Value: "x"}},
		"float":        {{Bin: "convos", Key: "k", Value: 1.5}},
		"reserved":     {{Bin: "_deleted", Key: "k", Value: "x"}},
		"long binname": {{Bin: "sixteen-bytes-xx", Key: "k", Value: "x"}},
	} {
		if _, err := f.q.ModifyMaps(f.ctx, k, bad); !errors.Is(err, ErrBadBin) {
			t.Errorf("%s: got %v, want ErrBadBin", name, err)
		}
	}
	// A deleted record stays deleted (on Aerospike CE: its tombstone stays one).
	if _, err := f.q.Delete(f.ctx, k, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.q.ModifyMaps(f.ctx, k, ops); !errors.Is(err, ErrNotFound) {
		t.Fatalf("modify a deleted record: %v, want ErrNotFound", err)
	}
	f.expectMissing(k)
	f.put(k, Bins{"data": "new"}, PutOptions{Mode: CreateOnly})
	f.expect(k, Bins{"data": "new"}, 0)
}

func qsGetMany(t *testing.T, f *qsFixture) {
	a, b, gone := f.key(nsConvos, "a"), f.key(nsUsers, "b"), f.key(nsConvos, "gone")
	f.put(a, Bins{"data": "A"}, PutOptions{})
	f.put(b, Bins{"data": "B", "n": int64(2)}, PutOptions{})
	f.put(b, Bins{"data": "B2"}, PutOptions{})
	f.put(gone, Bins{"data": "x"}, PutOptions{})
	if _, err := f.q.Delete(f.ctx, gone, 0); err != nil {
		t.Fatal(err)
	}
	recs, err := f.q.GetMany(f.ctx, []Key{b, gone, a, f.key(nsUsers, "never"), b})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || recs[1] != nil || recs[3] != nil || recs[0] == nil || recs[2] == nil || recs[4] == nil {
		t.Fatalf("GetMany: %v", recs)
	}
	if !qsSameBins(recs[0].Bins, Bins{"data": "B2", "n": int64(2)}) || recs[0].Generation != 2 ||
		!qsSameBins(recs[2].Bins, Bins{"data": "A"}) || recs[2].Generation != 1 {
		t.Fatalf("GetMany: %+v %+v", recs[0], recs[2])
	}
	if recs, err := f.q.GetMany(f.ctx, nil); err != nil || len(recs) != 0 {
		t.Fatalf("GetMany of nothing: %v, %v", recs, err)
	}
	// GetBins: only the bins named, maps changed entry by entry included.
	if _, err := f.q.ModifyMaps(f.ctx, b, []MapOp{{Bin: "m", Key: "k", Value: "v"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		names, sizeOf []string
		want          Bins
		sizes         map[string]int64
	}{
		{[]string{"data"}, nil, Bins{"data": "B2"}, map[string]int64{}},
		{[]string{"m", "n", "none"}, nil, Bins{"m": map[string]any{"k": "v"}, "n": int64(2)}, map[string]int64{}},
		{[]string{"none"}, nil, Bins{}, map[string]int64{}},
		{[]string{"data"}, []string{"m", "none"}, Bins{"data": "B2"}, map[string]int64{"m": 1, "none": 0}},
	} {
		rec, err := f.q.GetBins(f.ctx, b, tc.names, tc.sizeOf...)
		if err != nil || rec.Generation != 3 || !qsSameBins(rec.Bins, tc.want) || !maps.Equal(rec.Sizes, tc.sizes) {
			t.Fatalf("GetBins %v %v: %+v, %v; want %v %v", tc.names, tc.sizeOf, rec, err, tc.want, tc.sizes)
		}
	}
	if _, err := f.q.GetBins(f.ctx, gone, []string{"data"}, "m"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetBins of a deleted record: %v", err)
	}
	for _, bad := range [][2][]string{{{"m"}, {"m"}}, {{"data", "data"}, nil}, {nil, nil}, {{"_deleted"}, nil}, {{""}, nil}} {
		if _, err := f.q.GetBins(f.ctx, b, bad[0], bad[1]...); !errors.Is(err, ErrBadBin) {
			t.Errorf("GetBins %q sizes %q: %v, want ErrBadBin", bad[0], bad[1], err)
		}
	}
}

// qsModifyMapsThenPut: whatever a backend keeps of entry-by-entry changes, writes of the whole
// record or bin, deletes and expiry treat the map as an ordinary bin.
func qsModifyMapsThenPut(t *testing.T, f *qsFixture) {
	k := f.key(nsUsers, "mp")
	mod := func(ops ...MapOp) {
		t.Helper()
		if _, err := f.q.ModifyMaps(f.ctx, k, ops); err != nil {
			t.Fatal(err)
		}
	}
	f.put(k, Bins{"data": "x"}, PutOptions{Mode: CreateOnly})
	mod(MapOp{Bin: "m", Key: "a", Value: int64(1)}, MapOp{Bin: "m", Key: "b", Value: "two"}, MapOp{Bin: "m", Key: "a"})
	f.expect(k, Bins{"data": "x", "m": map[string]any{"b": "two"}}, 2)
	// Merging other bins keeps the map; writing the map whole replaces it.
	f.put(k, Bins{"data": "y"}, PutOptions{Mode: UpdateOnly})
	f.expect(k, Bins{"data": "y", "m": map[string]any{"b": "two"}}, 3)
	f.put(k, Bins{"m": map[string]any{"z": int64(26)}}, PutOptions{})
	f.expect(k, Bins{"data": "y", "m": map[string]any{"z": int64(26)}}, 4)
	mod(MapOp{Bin: "m", Key: "y", Value: int64(25)})
	f.expect(k, Bins{"data": "y", "m": map[string]any{"y": int64(25), "z": int64(26)}}, 5)
	// Removing the bin, replacing the record, deleting it: the map goes with it.
	f.put(k, Bins{"m": nil}, PutOptions{})
	f.expect(k, Bins{"data": "y"}, 6)
	mod(MapOp{Bin: "m", Key: "q", Value: "Q"})
	f.put(k, Bins{"data": "r"}, PutOptions{Mode: Replace})
	f.expect(k, Bins{"data": "r"}, 8)
	mod(MapOp{Bin: "m", Key: "q", Value: "Q"})
	if _, err := f.q.Delete(f.ctx, k, 0); err != nil {
		t.Fatal(err)
	}
	f.put(k, Bins{"data": "new"}, PutOptions{Mode: CreateOnly})
	rec, err := f.q.Get(f.ctx, k)
	if err != nil || !qsSameBins(rec.Bins, Bins{"data": "new"}) {
		t.Fatalf("after delete and create: %+v, %v", rec, err)
	}
	// An expired record's map does not come back with a new record under its key.
	e := f.key(nsUsers, "mpttl")
	f.put(e, Bins{"data": "x"}, PutOptions{Mode: CreateOnly, TTL: time.Second})
	if _, err := f.q.ModifyMaps(f.ctx, e, []MapOp{{Bin: "m", Key: "old", Value: "v"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := f.q.Get(f.ctx, e); errors.Is(err, ErrNotFound) {
			break
		} else if err != nil || time.Now().After(deadline) {
			t.Fatalf("waiting for a 1 s TTL to expire: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	f.put(e, Bins{"data": "fresh"}, PutOptions{})
	rec, err = f.q.Get(f.ctx, e)
	if err != nil || !qsSameBins(rec.Bins, Bins{"data": "fresh"}) {
		t.Fatalf("after expiry: %+v, %v", rec, err)
	}
}

func qsModifyMapsMany(t *testing.T, f *qsFixture) {
	a, b, missing := f.key(nsUsers, "a"), f.key(nsUsers, "b"), f.key(nsUsers, "missing")
	f.put(a, Bins{"data": "A"}, PutOptions{Mode: CreateOnly})
	f.put(b, Bins{"data": "B", "m": map[string]any{"old": int64(1)}}, PutOptions{Mode: CreateOnly})
	errs, err := f.q.ModifyMapsMany(f.ctx, []Key{b, missing, a}, []MapOp{{Bin: "m", Key: "c1", Value: int64(7)}})
	if err != nil || len(errs) != 3 || errs[0] != nil || !errors.Is(errs[1], ErrNotFound) || errs[2] != nil {
		t.Fatalf("ModifyMapsMany: %v, %v", errs, err)
	}
	f.expect(a, Bins{"data": "A", "m": map[string]any{"c1": int64(7)}}, 2)
	f.expect(b, Bins{"data": "B", "m": map[string]any{"old": int64(1), "c1": int64(7)}}, 2)
	f.expectMissing(missing)
}

// qsModifyMapsConcurrently: writers changing different entries of one map at once lose none,
// and a compare-and-set writer of another bin is told of each change (the generation moves).
func qsModifyMapsConcurrently(t *testing.T, f *qsFixture) {
	k := f.key(nsUsers, "race")
	f.put(k, Bins{"data": "x"}, PutOptions{Mode: CreateOnly})
	const writers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				cid := fmt.Sprintf("c%d-%d", w, i)
				if _, err := f.q.ModifyMaps(f.ctx, k, []MapOp{{Bin: "convos", Key: cid, Value: int64(i)}}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	rec, err := f.q.Get(f.ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := rec.Bins["convos"].(map[string]any); len(m) != writers*each || rec.Generation != 1+writers*each {
		t.Fatalf("%d entries at generation %d, want %d at %d", len(m), rec.Generation, writers*each, 1+writers*each)
	}
}

// The Aerospike backend, against the wire-compatible test server and, when AEROSPIKE_HOST is
// set (host:port), against that real server too.

// qsStartAerotest runs a test server with the namespaces aerospike.conf has: users expires
// records (sessions), so it has an nsup-period; convos does not.
func qsStartAerotest(t *testing.T, addr string) *aerotest.Server {
	t.Helper()
	srv, err := aerotest.Start(aerotest.Config{
		Addr: addr,
		Namespaces: map[string]aerotest.NamespaceConfig{
			"users":  {NsupPeriod: time.Second},
			"convos": {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func qsOpenAerospike(t *testing.T, spec string) QuickStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, err := openAerospikeQuickStore(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(q.Close)
	return q
}

func TestQuickStoreAerospike(t *testing.T) {
	t.Parallel() // its own servers; it mostly waits for the real node
	srv := qsStartAerotest(t, "")
	t.Run("aerotest", func(t *testing.T) {
		runQuickStoreConformance(t, func(t *testing.T) QuickStore {
			return qsOpenAerospike(t, "aerospike://"+srv.Addr())
		}, func(t *testing.T) {
			if err := srv.ColdRestart(); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("real", func(t *testing.T) {
		real := startRealAerospike(t)
		runQuickStoreConformance(t, func(t *testing.T) QuickStore { return qsOpenAerospike(t, real.spec) },
			real.crashAfterFlush)
	})
}

func TestQuickStorePostgres(t *testing.T) {
	runQuickStoreConformance(t, func(t *testing.T) QuickStore {
		q, err := newPostgresQuickStore(context.Background(), testPool(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(q.Close)
		return q
	}, func(*testing.T) {}) // PostgreSQL's deletes are durable: a restart changes nothing

}

func qsEnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// TestQuickStoreAerospikeReconnect stops the server under a live store: commands answer an
// error within a bounded time instead of hanging, and work again once the server is back on
// the same port, without reopening the store.
func TestQuickStoreAerospikeReconnect(t *testing.T) {
	srv := qsStartAerotest(t, "")
	f := newQSFixture(t, qsOpenAerospike(t, "aerospike://"+srv.Addr()), qsRandomSet(t))
	k := f.key(nsUsers, "survivor")
	f.put(k, Bins{"v": "before"}, PutOptions{})

	srv.Stop()
	const bound = 3 * time.Second // the store's total timeout is 2 s
	for name, op := range map[string]func() error{
		"get": func() error { _, err := f.q.Get(f.ctx, k); return err },
		"put": func() error { _, err := f.q.Put(f.ctx, k, Bins{"v": "during"}, PutOptions{}); return err },
	} {
		began := time.Now()
		err := op()
		if elapsed := time.Since(began); elapsed > bound {
			t.Fatalf("%s against a stopped server took %v, want under %v", name, elapsed, bound)
		}
		if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), srv.Addr()) ||
			strings.Contains(err.Error(), "\n") {
			t.Fatalf("%s while the server is down: %v; want a one-line error naming %s", name, err, srv.Addr())
		}
		t.Logf("%s while down: %v", name, err)
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	deadline := restarted.Add(15 * time.Second)
	for {
		rec, err := f.q.Get(f.ctx, k)
		if err == nil {
			if !qsSameBins(rec.Bins, Bins{"v": "before"}) {
				t.Fatalf("after restart: %#v", rec.Bins)
			}
			t.Logf("recovered %v after the restart", time.Since(restarted).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover within 15 s of the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	f.put(k, Bins{"v": "after"}, PutOptions{})
	f.expect(k, Bins{"v": "after"}, 0)
}

// Started together with Aerospike, pingedchat waits for it (-quickstore-wait) instead of
// exiting; with no wait left it gives up with the clear error.
func TestQuickStoreWaitsForAerospikeAtStartUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	if _, err := waitForAerospike(context.Background(), "aerospike://"+addr, 0); err == nil || !strings.Contains(err.Error(), "-quickstore postgres") {
		t.Fatalf("no wait: %v", err)
	}
	started := make(chan *aerotest.Server, 1)
	late := time.AfterFunc(700*time.Millisecond, func() { // the scenario: Aerospike comes up later
		srv, err := aerotest.Start(aerotest.Config{Addr: addr, Namespaces: map[string]aerotest.NamespaceConfig{"users": {NsupPeriod: time.Second}, "convos": {}}})
		if err != nil {
			t.Error(err)
		}
		started <- srv
	})
	defer late.Stop()
	q, err := waitForAerospike(context.Background(), "aerospike://"+addr, 20*time.Second)
	if err != nil {
		t.Fatalf("waiting for a late Aerospike: %v", err)
	}
	q.Close()
	if srv := <-started; srv != nil {
		srv.Close()
	}
}

// Result codes: the cluster's transient states read as "storage unavailable" and the ones the
// server answered without applying the command are retried; answers about the record are not.
func TestAerospikeResultCodeClassification(t *testing.T) {
	cases := []struct {
		code                 types.ResultCode
		unavailable, retried bool
	}{
		{types.PARTITION_UNAVAILABLE, true, true},
		{types.CLUSTER_KEY_MISMATCH, true, true},
		{types.KEY_BUSY, true, true},
		{types.DEVICE_OVERLOAD, true, true},
		{types.SERVER_MEM_ERROR, true, false},
		{types.TIMEOUT, true, false},
		{types.SERVER_NOT_AVAILABLE, true, false},
		{types.MAX_RETRIES_EXCEEDED, true, false},
		{types.NO_AVAILABLE_CONNECTIONS_TO_NODE, true, false},
		{types.NETWORK_ERROR, true, false},
		{types.INVALID_NODE_ERROR, true, false},
		{types.NO_RESPONSE, true, false},
		{types.KEY_NOT_FOUND_ERROR, false, false},
		{types.GENERATION_ERROR, false, false},
		{types.KEY_EXISTS_ERROR, false, false},
		{types.PARAMETER_ERROR, false, false},
		{types.RECORD_TOO_BIG, false, false},
		{types.FAIL_FORBIDDEN, false, false},
		{types.PARSE_ERROR, false, false},
		{types.SERVER_ERROR, false, false},
	}
	for _, c := range cases {
		if got := aerospikeUnavailable(c.code); got != c.unavailable {
			t.Errorf("%v: unavailable %v, want %v", c.code, got, c.unavailable)
		}
		if got := aerospikeTransientAnswer(&as.AerospikeError{ResultCode: c.code}); got != c.retried {
			t.Errorf("%v: retried %v, want %v", c.code, got, c.retried)
		}
	}
}

func TestOpenAerospikeQuickStoreErrors(t *testing.T) {
	// Nothing listens on a port we just released.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	ctx := context.Background()
	if _, err := openAerospikeQuickStore(ctx, "aerospike://"+dead); err == nil ||
		!strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "-quickstore postgres") ||
		strings.Contains(err.Error(), "\n") {
		t.Fatalf("connecting to nothing: %v; want a one-line error naming %s and the way out", err, dead)
	}

	// A server without the convos namespace.
	srv, err := aerotest.Start(aerotest.Config{Namespaces: map[string]aerotest.NamespaceConfig{"users": {}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := openAerospikeQuickStore(ctx, "aerospike://"+srv.Addr()); err == nil || !strings.Contains(err.Error(), `"convos"`) {
		t.Fatalf("missing namespace: %v; want an error naming convos", err)
	}
	// ... which the spec can map onto one that exists.
	q, err := openAerospikeQuickStore(ctx, "aerospike://"+srv.Addr()+"?convos=users")
	if err != nil {
		t.Fatal(err)
	}
	q.Close()
}

func TestParseAerospikeSpec(t *testing.T) {
	good := map[string]string{
		"aerospike://db1:3000":                       "db1:3000 users convos",
		"aerospike://db1,db2:4000":                   "db1:3000,db2:4000 users convos",
		"aerospike://[::1]:3100?users=u&convos=c":    "::1:3100 u c",
		"aerospike://10.0.0.1:3000?convos=chat_meta": "10.0.0.1:3000 users chat_meta",
	}
	for spec, want := range good {
		got, err := parseAerospikeSpec(spec)
		if err != nil {
			t.Errorf("%s: %v", spec, err)
			continue
		}
		var hosts []string
		for _, h := range got.hosts {
			hosts = append(hosts, fmt.Sprintf("%s:%d", h.Name, h.Port))
		}
		if s := strings.Join(hosts, ",") + " " + got.nsMap[nsUsers] + " " + got.nsMap[nsConvos]; s != want {
			t.Errorf("%s: got %q, want %q", spec, s, want)
		}
	}
	for _, spec := range []string{"aerospike://", "aerospike://h:0", "aerospike://h:x", "aerospike://h,,g",
		"aerospike://h?sessions=x", "aerospike://h?users=", "redis://h", "aerospike://h?users=a&users=b"} {
		if _, err := parseAerospikeSpec(spec); err == nil {
			t.Errorf("%s: accepted", spec)
		}
	}
}

func TestAerospikeExpiration(t *testing.T) {
	for ttl, want := range map[time.Duration]uint32{
		0: math.MaxUint32, -time.Second: math.MaxUint32, time.Nanosecond: 1,
		time.Second: 1, 1500 * time.Millisecond: 2, time.Hour: 3600,
	} {
		if got, err := aerospikeExpiration(ttl); err != nil || got != want {
			t.Errorf("aerospikeExpiration(%v) = %d, %v; want %d", ttl, got, err, want)
		}
	}
	if _, err := aerospikeExpiration(11 * 365 * 24 * time.Hour); err == nil {
		t.Error("an 11-year TTL was accepted")
	}
}

// A TTL in a namespace without nsup-period is refused by Aerospike 8 (and the test server);
// the error must say what to change.
func TestQuickStoreAerospikeTTLNeedsNsup(t *testing.T) {
	srv := qsStartAerotest(t, "")
	f := newQSFixture(t, qsOpenAerospike(t, "aerospike://"+srv.Addr()), qsRandomSet(t))
	_, err := f.q.Put(f.ctx, f.key(nsConvos, "ttl"), Bins{"a": "x"}, PutOptions{TTL: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "nsup-period") {
		t.Fatalf("TTL into a namespace without nsup: %v; want an error naming nsup-period", err)
	}
	f.expectMissing(f.key(nsConvos, "ttl"))
}

// After a quick restart with no traffic in between, the store's pooled connections are dead.
// Reads and idempotent writes retry; writes that cannot be retried blindly (create-only,
// expected generation, delete) must still succeed the first time, because a read proves they
// did not reach the server.
func TestQuickStoreAerospikeQuickRestart(t *testing.T) {
	srv := qsStartAerotest(t, "")
	f := newQSFixture(t, qsOpenAerospike(t, "aerospike://"+srv.Addr()), qsRandomSet(t))
	keys := []Key{f.key(nsUsers, "a"), f.key(nsUsers, "b"), f.key(nsUsers, "c")}
	// Several concurrent writers, so that the pool holds several connections.
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.q.Put(f.ctx, f.key(nsConvos, fmt.Sprint("warm", i)), Bins{"v": "x"}, PutOptions{}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	gen := f.put(keys[0], Bins{"v": int64(1)}, PutOptions{})
	delGen := f.put(keys[2], Bins{"v": "bye"}, PutOptions{})

	srv.Stop()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	f.put(keys[0], Bins{"v": int64(2)}, PutOptions{Mode: ReplaceOnly, Generation: gen})
	f.put(keys[1], Bins{"v": "new"}, PutOptions{Mode: CreateOnly})
	if existed, err := f.q.Delete(f.ctx, keys[2], delGen); err != nil || !existed {
		t.Fatalf("delete after restart: %v, %v", existed, err)
	}
	f.expect(keys[0], Bins{"v": int64(2)}, gen+1)
	f.expect(keys[1], Bins{"v": "new"}, 1)
	f.expectMissing(keys[2])
}
