package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// freshDatabase creates an empty database for one test and returns its connection string.
func freshDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("pingedchat_schema_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), "dbname=postgres")
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(context.Background())
		}
	})
	return "dbname=" + name
}

// The first release's schema, as a database of that time has it: no schema_version table.
const schemaV1Fixture = `
CREATE TABLE scheduled_messages (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	cid        text        NOT NULL,
	f_username text        NOT NULL,
	content    text        NOT NULL,
	send_at    timestamptz NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX scheduled_messages_send_at ON scheduled_messages (send_at);
CREATE INDEX scheduled_messages_user ON scheduled_messages (upper(f_username));
INSERT INTO scheduled_messages (cid, f_username, content, send_at)
	VALUES ('00000000-0000-0000-0000-000000000001', 'old_user', 'kept across the upgrade', now() + interval '1 day');`

// An old database is upgraded once, even by two instances starting together, and keeps its data.
func TestOldSchemaIsUpgraded(t *testing.T) {
	dsn := freshDatabase(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, schemaV1Fixture); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Postgres = dsn
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv, err := NewServer(ctx, cfg)
			if err == nil {
				srv.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("starting on the old schema: %v", err)
		}
	}
	var versions []int
	rows, _ := conn.Query(ctx, "SELECT version FROM schema_version ORDER BY version")
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || len(versions) != schemaVersion() || versions[len(versions)-1] != schemaVersion() {
		t.Fatalf("schema_version rows %v (%v); want 1 to %d once each", versions, err, schemaVersion())
	}
	var kept int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM scheduled_messages WHERE content = 'kept across the upgrade'").Scan(&kept); err != nil || kept != 1 {
		t.Fatalf("the old data after the upgrade: %d, %v", kept, err)
	}
	if _, err := conn.Exec(ctx, "SELECT 1 FROM pending_deletions"); err != nil {
		t.Fatalf("the new table after the upgrade: %v", err)
	}

	// A database migrated by a newer release is refused by this one.
	if _, err := conn.Exec(ctx, "INSERT INTO schema_version (version) VALUES ($1)", schemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(ctx, cfg); err == nil || !strings.Contains(err.Error(), "newer than this pingedchat") {
		t.Fatalf("a newer schema: %v", err)
	}
}
