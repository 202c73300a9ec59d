package main

import (
	"context"
	"testing"
	"time"
)

func TestPostgresSweepRemovesExpiredRows(t *testing.T) {
	ctx := context.Background()
	pool := testPool(t)
	q, err := newPostgresQuickStore(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	key := Key{"users", "sweeptest", randomToken()}
	if _, err := q.Put(ctx, key, Bins{"v": "x"}, PutOptions{TTL: time.Second}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.ModifyMaps(ctx, key, []MapOp{{Bin: "m", Key: "k", Value: "v"}}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the record to expire", func() bool {
		_, err := q.Get(ctx, key)
		return isNotFound(err)
	})
	if err := q.(*postgresQuickStore).Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	for _, table := range []string{"quickstore", "quickstore_entries"} {
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE key = $1", key.Key).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%d rows left in %s after the sweep (%v)", n, table, err)
		}
	}
}
