package aerotest

import (
	"maps"
	"testing"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"
)

func TestMapPutAndRemoveByKey(t *testing.T) {
	c := connect(t, startServer(t))
	k := key(t, "users", "username", "ANN")
	wp := as.NewWritePolicy(0, 0)
	wp.RecordExistsAction = as.UPDATE_ONLY

	// Update-only: no record, no change.
	_, err := c.Operate(wp, k, as.MapPutOp(as.DefaultMapPolicy(), "convos", "c1", 1))
	wantCode(t, err, types.KEY_NOT_FOUND_ERROR)

	// A map written whole, then changed entry by entry, across bins, in one operate.
	if err := c.Put(nil, k, as.BinMap{"data": "x", "convos": map[string]any{"c0": 7}}); err != nil {
		t.Fatal(err)
	}
	rec, err := c.Operate(wp, k,
		as.MapPutOp(as.DefaultMapPolicy(), "convos", "c1", 1),
		as.MapPutOp(as.DefaultMapPolicy(), "synced", "c1", "2026-01-01"),
		as.MapPutOp(as.DefaultMapPolicy(), "convos", "c0", 8), // replaces the entry
		as.MapRemoveByKeyOp("unread", "c9", as.MapReturnType.NONE),
	)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Generation != 2 {
		t.Errorf("generation %d after two writes, want 2", rec.Generation)
	}
	got := mustGet(t, c, k).Bins
	wantMap(t, got["convos"], map[any]any{"c0": 8, "c1": 1})
	wantMap(t, got["synced"], map[any]any{"c1": "2026-01-01"})
	if v, ok := got["unread"]; ok {
		t.Errorf("removing from a missing bin created it: %v", v)
	}
	if got["data"] != "x" {
		t.Errorf("other bins changed: %v", got)
	}

	if _, err := c.Operate(wp, k, as.MapRemoveByKeyOp("convos", "c0", as.MapReturnType.NONE),
		as.MapRemoveByKeyOp("convos", "nope", as.MapReturnType.NONE)); err != nil {
		t.Fatal(err)
	}
	wantMap(t, mustGet(t, c, k).Bins["convos"], map[any]any{"c1": 1})

	// Not a map; and what this server does not do is refused, not ignored.
	_, err = c.Operate(wp, k, as.MapPutOp(as.DefaultMapPolicy(), "data", "a", 1))
	wantCode(t, err, types.BIN_TYPE_ERROR)
	_, err = c.Operate(wp, k, as.MapRemoveByKeyOp("convos", "c1", as.MapReturnType.VALUE))
	wantCode(t, err, types.UNSUPPORTED_FEATURE)
	ordered := as.NewMapPolicy(as.MapOrder.KEY_ORDERED, as.MapWriteMode.UPDATE)
	_, err = c.Operate(wp, k, as.MapPutOp(ordered, "convos", "c2", 1))
	wantCode(t, err, types.UNSUPPORTED_FEATURE)
	wantMap(t, mustGet(t, c, k).Bins["convos"], map[any]any{"c1": 1})
}

// TestMapManyEntries crosses msgpack's fixmap (15) and map16 sizes.
func TestMapManyEntries(t *testing.T) {
	c := connect(t, startServer(t))
	k := key(t, "users", "username", "BOB")
	want := map[any]any{}
	for i := range 40 {
		cid := string(rune('a'+i%26)) + string(rune('A'+i/26))
		want[cid] = cid + "-value"
		if _, err := c.Operate(nil, k, as.MapPutOp(as.DefaultMapPolicy(), "convos", cid, cid+"-value")); err != nil {
			t.Fatal(err)
		}
	}
	wantMap(t, mustGet(t, c, k).Bins["convos"], want)
	for cid := range maps.Keys(maps.Clone(want)) {
		if cid.(string)[0] > 'f' {
			delete(want, cid)
			if _, err := c.Operate(nil, k, as.MapRemoveByKeyOp("convos", cid, as.MapReturnType.NONE)); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantMap(t, mustGet(t, c, k).Bins["convos"], want)

	// The size, with other bins, without reading the map.
	rec, err := c.Operate(nil, k, as.MapSizeOp("convos"), as.MapSizeOp("missing"))
	if err != nil || rec.Bins["convos"] != len(want) {
		t.Fatalf("map size: %v, %v; want %d", rec, err, len(want))
	}
	// A missing bin answers nil, present in the reply, as on a real server (fidelity_test.go).
	if v, ok := rec.Bins["missing"]; !ok || v != nil {
		t.Errorf("a missing bin's size: %v, want a nil bin", rec.Bins)
	}
}

func wantMap(t *testing.T, got any, want map[any]any) {
	t.Helper()
	m, ok := got.(map[any]any)
	if !ok || !maps.Equal(m, want) {
		t.Errorf("map bin %#v, want %v", got, want)
	}
}
