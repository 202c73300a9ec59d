package main

import (
	"fmt"
	"testing"
)

// relations counts a table's relations (itself, its TOAST table and their indexes, and any
// sequence it owns) and their total size in bytes.
func relations(t *testing.T, srv *testServer, table string) (n int, bytes int64) {
	t.Helper()
	err := srv.db.pool.QueryRow(t.Context(), `
		WITH tbl AS (SELECT oid, reltoastrelid FROM pg_class WHERE oid = to_regclass($1)),
		rels AS (
			SELECT oid FROM tbl
			UNION SELECT reltoastrelid FROM tbl WHERE reltoastrelid <> 0
			UNION SELECT indexrelid FROM pg_index WHERE indrelid IN (SELECT oid FROM tbl UNION SELECT reltoastrelid FROM tbl)
			UNION SELECT d.objid FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
				WHERE d.refobjid = (SELECT oid FROM tbl))
		SELECT count(*), COALESCE(sum(pg_relation_size(oid)), 0) FROM rels`, table).Scan(&n, &bytes)
	if err != nil {
		t.Fatal(err)
	}
	return n, bytes
}

// An empty conversation costs at most five relations and 32 KB.
func TestEmptyConversationTableIsSmall(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c := register(t, srv, "small")
	cid := newConvo(t, c, "")
	n, bytes := relations(t, srv, convTable(cid))
	if n > 5 || bytes > 32<<10 {
		t.Fatalf("an empty conversation table: %d relations, %d bytes; want ≤ 5 and ≤ 32 KB", n, bytes)
	}
	t.Logf("an empty conversation: %d relations, %d bytes", n, bytes)
}

// A table made by an older release (identity id key, separate m_time index) keeps working: the
// first write migrates it, its messages and ids are kept, ids go on from the newest, and a
// resend of an old message is still recognised, and its messages are searchable.
func TestOldConversationTableIsMigratedOnFirstWrite(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	cid := newConvo(t, alice, "", bob)
	tbl := convTable(cid)
	_, err := srv.db.pool.Exec(t.Context(), fmt.Sprintf(`
		DROP TABLE %[1]s;
		CREATE TABLE %[1]s (
			id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
			f_username text        NOT NULL,
			m_time     timestamptz NOT NULL,
			content    text        NOT NULL,
			kind       text        NOT NULL DEFAULT 'text',
			client_id  text        UNIQUE
		);
		CREATE INDEX %[1]s_m_time ON %[1]s (m_time);
		INSERT INTO %[1]s (f_username, m_time, content, client_id) VALUES
			('%[2]s', now() - interval '3 minutes', 'old one', 'old-1'),
			('%[2]s', now() - interval '2 minutes', 'old two', NULL),
			('%[2]s', now() - interval '1 minute', 'old three', 'old-3');`, tbl, alice.name))
	if err != nil {
		t.Fatal(err)
	}
	srv.db.convTables.Delete(cid) // as after a restart onto the upgraded release
	if n, _ := relations(t, srv, tbl); n != 7 {
		t.Fatalf("the old table has %d relations, want 7", n)
	}
	// Reads work before any write.
	if msgs := bob.ok("GetConvoData", map[string]any{"CID": cid})["Messages"].([]any); len(msgs) != 3 {
		t.Fatalf("old messages: %v", msgs)
	}
	ack := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "new one", "client_id": "new-1"})
	if ack["id"] != float64(4) {
		t.Fatalf("the first new message's id: %v, want 4", ack["id"])
	}
	resent := alice.ok("SendMessage", map[string]any{"CID": cid, "content": "old one", "client_id": "old-1"})
	if resent["id"] != float64(1) {
		t.Fatalf("a resend of an old message: %v, want id 1", resent)
	}
	if n, _ := relations(t, srv, tbl); n > 5 {
		t.Fatalf("after the migration the table has %d relations, want ≤ 5", n)
	}
	var pk string
	_ = srv.db.pool.QueryRow(t.Context(), "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = to_regclass($1) AND indisprimary", tbl).Scan(&pk)
	if want := "(m_time)"; len(pk) < len(want) || pk[len(pk)-len(want):] != want {
		t.Fatalf("primary key after the migration: %s", pk)
	}
	msgs := bob.ok("GetConvoData", map[string]any{"CID": cid})["Messages"].([]any)
	var got []string
	for _, m := range msgs {
		mm := m.(map[string]any)
		got = append(got, fmt.Sprintf("%v:%v", mm["id"], mm["content"]))
	}
	if fmt.Sprint(got) != "[1:old one 2:old two 3:old three 4:new one]" {
		t.Fatalf("messages after the migration: %v", got)
	}
	// The migration put the old messages into the search index (version 3).
	if hits := bob.ok("SearchMessages", map[string]any{"query": "old"})["Results"].([]any); len(hits) != 3 {
		t.Fatalf("old messages found after the migration: %v", hits)
	}
}
