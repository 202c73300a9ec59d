package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
)

// Schema versions. The server records in schema_version which of the migrations below it has
// applied, and applies the missing ones at start-up, in order, each in the transaction that
// records it. The whole run holds an advisory lock, so instances starting together migrate once:
// the others wait, then find nothing to do. A migration is never edited once released: a change
// is a new one at the end. Conversation tables are created with their conversation (at the
// version of the release that creates them).

// schemaLock is the advisory lock key of migrations (any constant no other lock uses).
const schemaLock = 0x70696e6765640001

// migrations[i] brings the schema from version i to i+1.
var migrations = []string{
	// 1: scheduled messages (the first release).
	`CREATE TABLE IF NOT EXISTS scheduled_messages (
		id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		cid        text        NOT NULL,
		f_username text        NOT NULL,
		content    text        NOT NULL,
		send_at    timestamptz NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE INDEX IF NOT EXISTS scheduled_messages_send_at ON scheduled_messages (send_at);
	CREATE INDEX IF NOT EXISTS scheduled_messages_user ON scheduled_messages (upper(f_username));`,
	// 2: resumable user deletion (database_functions_delete.go).
	`CREATE TABLE IF NOT EXISTS pending_deletions (
		username text        PRIMARY KEY, -- upper case
		started  timestamptz NOT NULL DEFAULT now()
	);`,
	// 3: conversation tables of version 2 (convtable.go) exist from now on, which releases
	// before this one could not write to: recording the version keeps them from starting.
	`SELECT 1;`,
	// 4: mailboxes, the outbound mail queue and the SMS bridge's pacing
	// (database_functions_mail.go, mail_queue.go, sms.go).
	`CREATE TABLE IF NOT EXISTS mail (
		owner       text        NOT NULL, -- upper case
		id          bigint      NOT NULL,
		m_time      bigint      NOT NULL, -- µs, strictly increasing per owner
		folder      text        NOT NULL,
		unread      bool        NOT NULL DEFAULT false,
		starred     bool        NOT NULL DEFAULT false,
		deleted     bool        NOT NULL DEFAULT false,
		removed     bool        NOT NULL DEFAULT false,
		from_addr   text        NOT NULL DEFAULT '',
		from_name   text        NOT NULL DEFAULT '',
		to_addrs    text[]      NOT NULL DEFAULT '{}',
		cc_addrs    text[]      NOT NULL DEFAULT '{}',
		subject     text        NOT NULL DEFAULT '',
		text_body   text        NOT NULL DEFAULT '',
		html_body   text        NOT NULL DEFAULT '',
		date        timestamptz NOT NULL DEFAULT now(),
		message_id  text        NOT NULL DEFAULT '',
		in_reply_to text        NOT NULL DEFAULT '',
		attachments jsonb       NOT NULL DEFAULT '[]',
		size        bigint      NOT NULL DEFAULT 0,
		PRIMARY KEY (owner, id)
	);
	CREATE INDEX IF NOT EXISTS mail_sync ON mail (owner, m_time);
	CREATE TABLE IF NOT EXISTS mail_outbox (
		id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		sender     text        NOT NULL, -- upper-case username, '' for the server's own mail
		mail_from  text        NOT NULL,
		rcpts      text[]      NOT NULL,
		data       bytea       NOT NULL,
		attempts   int         NOT NULL DEFAULT 0,
		next_try   timestamptz NOT NULL DEFAULT now(),
		last_error text        NOT NULL DEFAULT '',
		created_at timestamptz NOT NULL DEFAULT now()
	);
	CREATE INDEX IF NOT EXISTS mail_outbox_next_try ON mail_outbox (next_try);
	CREATE TABLE IF NOT EXISTS sms_sent (
		username text        NOT NULL, -- upper case
		cid      text        NOT NULL,
		at       timestamptz NOT NULL,
		PRIMARY KEY (username, cid)
	);`,
	// 5: the shared full-text index of messages (search.go); conversation tables of version 3
	// (convtable.go), which releases before this one could not write to, exist from now on.
	`CREATE TABLE IF NOT EXISTS message_search (
		cid    uuid        NOT NULL,
		m_time timestamptz NOT NULL,
		id     bigint      NOT NULL,
		tsv    tsvector    NOT NULL,
		PRIMARY KEY (cid, m_time)
	);
	CREATE INDEX IF NOT EXISTS message_search_tsv ON message_search USING gin (tsv);
	CREATE INDEX IF NOT EXISTS message_search_m_time ON message_search (m_time);`,
	// 6: revocations that outlive a crash of the quick store (revocations.go), and deletions
	// that stay until a minute after they finished, so that a record a crash brought back is
	// deleted again (database_functions_delete.go).
	`CREATE TABLE IF NOT EXISTS revoked_tokens (
		hash    text        PRIMARY KEY, -- SHA-256 of a resume token, hex
		expires timestamptz NOT NULL     -- when the token would have expired anyway
	);
	CREATE INDEX IF NOT EXISTS revoked_tokens_expires ON revoked_tokens (expires);
	CREATE TABLE IF NOT EXISTS revoked_epochs (
		user_id text        PRIMARY KEY,
		epoch   bigint      NOT NULL, -- the user's tokens of older epochs are revoked
		expires timestamptz NOT NULL
	);
	CREATE INDEX IF NOT EXISTS revoked_epochs_expires ON revoked_epochs (expires);
	ALTER TABLE pending_deletions ADD COLUMN IF NOT EXISTS user_id text NOT NULL DEFAULT '';
	ALTER TABLE pending_deletions ADD COLUMN IF NOT EXISTS finished timestamptz;
	CREATE INDEX IF NOT EXISTS pending_deletions_user_id ON pending_deletions (user_id);`,
	// 7 (files, S3 mode): upload targets handed out, whose quota is reserved at issue, for the
	// sweeper to give back when unclaimed and to delete what was posted under them (files_s3.go).
	`CREATE TABLE IF NOT EXISTS s3_uploads (
		id      text        PRIMARY KEY, -- the file id
		owner   text        NOT NULL,
		expires timestamptz NOT NULL     -- when its presigned POST stops working
	);
	CREATE INDEX IF NOT EXISTS s3_uploads_expires ON s3_uploads (expires);`,
	// 8 (issue 25, inbound mail: mail_auth.go, mail_attachments.go, mail_quota.go): the sender's
	// verdict, attachments stored once and counted, and mailboxes whose owner was told they
	// are full.
	`ALTER TABLE mail ADD COLUMN IF NOT EXISTS sender_auth text NOT NULL DEFAULT '';
	ALTER TABLE mail ADD COLUMN IF NOT EXISTS unverified bool NOT NULL DEFAULT false;
	CREATE TABLE IF NOT EXISTS mail_blobs (
		id   text   PRIMARY KEY,
		refs bigint NOT NULL
	);
	CREATE TABLE IF NOT EXISTS mail_full (
		owner text        PRIMARY KEY,
		since timestamptz NOT NULL DEFAULT now()
	);`,
}

// schemaVersion is the version this binary needs.
func schemaVersion() int { return len(migrations) }

// migrate brings the database to schemaVersion. A database newer than this binary is refused:
// running an old binary on a new schema could misread it.
func (db *Database) migrate(ctx context.Context) error {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(schemaLock)); err != nil {
		return fmt.Errorf("migrating: taking the schema lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", int64(schemaLock)) }()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    int PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_version").Scan(&current); err != nil {
		return fmt.Errorf("migrating: reading the schema version: %w", err)
	}
	if current > schemaVersion() {
		return fmt.Errorf("the database's schema is version %d, newer than this pingedchat's %d: run the newer release", current, schemaVersion())
	}
	for v := current; v < schemaVersion(); v++ {
		if err := applyMigration(ctx, conn.Conn(), v+1, migrations[v]); err != nil {
			return err
		}
		slog.Info("migrated the database", "version", v+1)
	}
	return nil
}

func applyMigration(ctx context.Context, conn *pgx.Conn, version int, sql string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sql); err != nil {
			return fmt.Errorf("migration %d: %w", version, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version) VALUES ($1)", version); err != nil {
			return fmt.Errorf("recording migration %d: %w", version, err)
		}
		return nil
	})
}
