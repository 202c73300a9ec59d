package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Conversation tables: conv_<32 hex digits of the CID>, one per conversation (DESIGN §4).
//
// A table is five relations and 24 KB when empty: the heap, its TOAST table and TOAST index, the
// primary key on m_time (unique and strictly increasing already, and what every history query
// orders by) and the unique client_id index. id has no sequence: it is assigned under the
// conversation's insert lock as the newest row's id + 1, so ids increase with m_time too.
//
// Tables made by releases before this one (version 1: an identity id as primary key, and a
// separate m_time index: seven relations) are migrated lazily, the first time this process
// writes to one, under the same lock that inserts take, so a write never sees a half-migrated
// table; reads work on both shapes. Each table records its version in its comment.

// convColumnsV3 are the columns version 3 added: edits, deletions, reactions, replies and
// mentions. A new table has them from its CREATE TABLE; a version 2 table gets them by ALTER.
var convColumnsV3 = []string{"target bigint", "reaction_on boolean", "edited timestamptz",
	"changed timestamptz", "deleted boolean", "reactions jsonb", "reply_to bigint",
	"quote_from text", "quote text", "mentions text[]"}

// convTableMigrationV3 is the migration from version 2: the columns of edits, deletions,
// reactions, replies and mentions (nullable without a default: nothing is rewritten), and the
// table's messages into the search table (%[2]s is the CID).
var convTableMigrationV3 = `ALTER TABLE %[1]s ADD COLUMN ` + strings.Join(convColumnsV3, ", ADD COLUMN ") + `;
		INSERT INTO message_search (cid, m_time, id, tsv)
			SELECT '%[2]s', m_time, id, to_tsvector('simple', content) FROM %[1]s
			WHERE ` + searchableKind + `
			ON CONFLICT DO NOTHING;
		COMMENT ON TABLE %[1]s IS '` + convTableVersion + `';`

// convTableDDL creates a current table (%[1]s) in one statement, so that a new conversation
// costs PostgreSQL one CREATE TABLE and no ALTER. It is also the shape the load generator's
// reference creates.
var convTableDDL = `CREATE TABLE %[1]s (
	m_time     timestamptz PRIMARY KEY,
	id         bigint      NOT NULL,
	f_username text        NOT NULL,
	content    text        NOT NULL,
	kind       text        NOT NULL DEFAULT 'text',
	client_id  text        UNIQUE,
	` + strings.Join(convColumnsV3, ",\n\t") + `
);
COMMENT ON TABLE %[1]s IS '` + convTableVersion + `';`

const (
	convTableVersion   = "pingedchat conv v3"
	convTableVersionV2 = "pingedchat conv v2"
	// The migration from version 1: the identity (and its sequence) and the id key go, m_time
	// becomes the key, its separate index goes.
	convTableMigrationV2 = `ALTER TABLE %[1]s ALTER COLUMN id DROP IDENTITY;
		ALTER TABLE %[1]s DROP CONSTRAINT %[1]s_pkey;
		ALTER TABLE %[1]s ADD CONSTRAINT %[1]s_pkey PRIMARY KEY (m_time);
		DROP INDEX IF EXISTS %[1]s_m_time;
		COMMENT ON TABLE %[1]s IS '` + convTableVersionV2 + `';`
	// searchableKind selects the rows that are messages (not change rows) and not deleted.
	searchableKind = `kind NOT IN ('edit', 'delete', 'reaction', 'event', 'bot') AND deleted IS NOT TRUE`
)

// createConvoTable creates a conversation's message table.
func (db *Database) createConvoTable(ctx context.Context, cid string) error {
	t := convTable(cid)
	_, err := db.pool.Exec(ctx, fmt.Sprintf(convTableDDL, t))
	if err != nil {
		return fmt.Errorf("creating table %s: %w", t, err)
	}
	db.convTables.Store(cid, true)
	return nil
}

func (db *Database) dropConvoTable(ctx context.Context, cid string) {
	_, _ = db.pool.Exec(ctx, "DROP TABLE IF EXISTS "+convTable(cid))
	_, _ = db.pool.Exec(ctx, "DELETE FROM message_search WHERE cid = $1", cid)
	db.convTables.Delete(cid)
}

// ensureConvTable migrates a conversation's table to the current version if it is older; the
// answer is remembered for the life of the process.
func (db *Database) ensureConvTable(ctx context.Context, cid string) error {
	return db.ensureConvTables(ctx, []string{cid})
}

// ensureConvTables is ensureConvTable for several conversations: the current tables among them
// are found with one query and no lock (a table's version only rises, so a current one stays
// current; after a restart every table is checked once, and all of a login's at once), and only
// older ones take the lock to migrate.
func (db *Database) ensureConvTables(ctx context.Context, cids []string) error {
	var names []string
	byName := map[string]string{}
	for _, cid := range cids {
		if _, ok := db.convTables.Load(cid); !ok {
			names = append(names, convTable(cid))
			byName[convTable(cid)] = cid
		}
	}
	if len(names) == 0 {
		return nil
	}
	rows, err := db.pool.Query(ctx, `SELECT t FROM unnest($1::text[]) AS t
		WHERE obj_description(to_regclass(t), 'pg_class') = $2`, names, convTableVersion)
	if err != nil {
		return fmt.Errorf("checking the versions of conversation tables: %w", err)
	}
	current, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("checking the versions of conversation tables: %w", err)
	}
	for _, t := range current {
		db.convTables.Store(byName[t], true)
		delete(byName, t)
	}
	for _, cid := range byName {
		if err := db.migrateConvTable(ctx, cid); err != nil {
			return err
		}
	}
	return nil
}

// migrateConvTable brings an older table to the current version, under the lock that inserts
// take, so that no write sees it half-migrated.
func (db *Database) migrateConvTable(ctx context.Context, cid string) error {
	t := convTable(cid)
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(cid)); err != nil {
			return err
		}
		var comment *string
		if err := tx.QueryRow(ctx, "SELECT obj_description(to_regclass($1), 'pg_class')", t).Scan(&comment); err != nil {
			return err
		}
		if comment != nil && *comment == convTableVersion {
			return nil // migrated meanwhile
		}
		if comment == nil || *comment != convTableVersionV2 {
			if _, err := tx.Exec(ctx, fmt.Sprintf(convTableMigrationV2, t)); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, fmt.Sprintf(convTableMigrationV3, t, cid))
		return err
	})
	if err != nil {
		return fmt.Errorf("migrating table %s: %w", t, err)
	}
	db.convTables.Store(cid, true)
	return nil
}

// lockKey is the advisory lock that serialises inserts into one conversation, so that m_times
// are strictly increasing in commit order.
func lockKey(cid string) int64 {
	b, _ := hex.DecodeString(strings.ReplaceAll(cid, "-", "")[:16])
	return int64(binary.BigEndian.Uint64(b))
}

// querier is a pool or a transaction.
type querier interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// insertMessage stores a message and returns it with its id and m_time. A message whose
// client_id is already stored is not stored again: the stored one is returned with dup set.
//
// The lock and the insert go in one batch, which PostgreSQL runs as one implicit transaction:
// the lock is held until the commit, and the insert's own snapshot (taken after the lock) sees
// the newest row, so m_time = max(now, newest + 1µs) and id = newest id + 1 are strictly
// increasing. The newest row is one probe of the m_time key.
func (db *Database) insertMessage(ctx context.Context, q querier, m *Message) (dup bool, err error) {
	if err := db.ensureConvTable(ctx, m.CID); err != nil {
		return false, err
	}
	t := convTable(m.CID)
	var clientID *string
	if m.ClientID != "" {
		clientID = &m.ClientID
	}
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1)", lockKey(m.CID))
	b.Queue(insertSQL(m.CID), insertArgs(m)...)
	res := q.SendBatch(ctx, b)
	if _, err := res.Exec(); err != nil {
		res.Close()
		return false, fmt.Errorf("locking %s: %w", t, err)
	}
	var mt time.Time
	err = scanInserted(res.QueryRow(), m, &mt)
	if cerr := res.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if errors.Is(err, pgx.ErrNoRows) && clientID != nil {
		return true, storedByClientID(ctx, q, m)
	}
	if err != nil {
		return false, fmt.Errorf("inserting into %s: %w", t, err)
	}
	m.MTime = formatTime(mt)
	return false, nil
}

// insertSQL inserts one message ($1 sender, $2 content, $3 kind, $4 client_id, $5 reply_to,
// $6 the m_time of the message answered, $7 mentions, $8 the CID) after the conversation's newest row, and
// its words into the search table; a client_id already stored inserts nothing. The quote is
// read here, under the lock, so that a reply never quotes a message deleted before it.
// Run it under the lock.
func insertSQL(cid string) string {
	return fmt.Sprintf(`WITH ins AS (
		INSERT INTO %[1]s (m_time, id, f_username, content, kind, client_id, reply_to, quote_from, quote, mentions)
		SELECT GREATEST(clock_timestamp(), COALESCE(last.m_time, '-infinity') + interval '1 microsecond'),
			COALESCE(last.id, 0) + 1, $1, $2, $3, $4, $5::bigint, r.f_username,
			CASE WHEN r.deleted THEN '' ELSE left(r.content, %[2]d) END, $7::text[]
		FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT m_time, id FROM %[1]s ORDER BY m_time DESC LIMIT 1) last ON true
			LEFT JOIN %[1]s r ON r.m_time = $6::timestamptz AND r.id = $5::bigint
		ON CONFLICT (client_id) DO NOTHING RETURNING id, m_time, kind, content, deleted, quote_from, quote),
	idx AS (INSERT INTO message_search (cid, m_time, id, tsv)
		SELECT $8::uuid, m_time, id, to_tsvector('simple', content) FROM ins WHERE `+searchableKind+`)
	SELECT id, m_time, quote_from, quote FROM ins`, convTable(cid), quoteLength)
}

// insertArgs are insertSQL's parameters for m.
func insertArgs(m *Message) []any {
	var clientID, replyTime *string
	var replyTo *int64
	if m.ClientID != "" {
		clientID = &m.ClientID
	}
	if m.ReplyTo != 0 {
		replyTo, replyTime = &m.ReplyTo, &m.ReplyMTime
	}
	return []any{m.FUsername, m.Content, m.Kind, clientID, replyTo, replyTime, m.Mentions, m.CID}
}

// scanInserted reads insertSQL's result into m.
func scanInserted(row pgx.Row, m *Message, mt *time.Time) error {
	var from, quote *string
	if err := row.Scan(&m.ID, mt, &from, &quote); err != nil {
		return err
	}
	if from != nil && quote != nil {
		m.Quote = &Quote{FUsername: *from, Content: *quote}
	}
	return nil
}

// storedByClientID fills m from the stored message (or change row) with m's client_id.
func storedByClientID(ctx context.Context, q querier, m *Message) error {
	want := m.FUsername
	err := scanMessage(q.QueryRow(ctx, fmt.Sprintf(
		"SELECT %s FROM %s WHERE client_id = $1", messageColumns, convTable(m.CID)), m.ClientID), m)
	if err != nil {
		return fmt.Errorf("reading message by client_id: %w", err)
	}
	if !strings.EqualFold(m.FUsername, want) {
		return clientErr("client_id already used by another message")
	}
	return nil
}
