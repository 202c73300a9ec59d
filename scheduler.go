package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// runScheduler delivers due scheduled messages every -schedule-interval (DESIGN §6).
func (db *Database) runScheduler(ctx context.Context) {
	t := time.NewTicker(db.cfg.ScheduleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			db.deliverDue(ctx)
			db.recordBacklog(ctx)
			db.sweepQuickStore(ctx)
			db.finishPendingDeletions(ctx)
			db.pruneRevocations(ctx)
		}
	}
}

var errNothingDue = errors.New("nothing due")

// scheduledClientID prefixes the client_id of a delivered scheduled message; SendMessage refuses
// it, so that nobody can take a scheduled message's key and stop its delivery.
const scheduledClientID = "scheduled-"

// deliverDue delivers every scheduled message that is due, one transaction each. A row that
// fails is left for the next tick and skipped in this one, so one bad row never holds up the
// rows behind it.
func (db *Database) deliverDue(ctx context.Context) {
	skip := []int64{}
	for ctx.Err() == nil {
		id, err := db.deliverOneDue(ctx, skip)
		if errors.Is(err, errNothingDue) {
			return
		}
		if err != nil {
			slog.Error("delivering scheduled message", "id", id, "err", err)
			if id == 0 {
				return // not about a row: the database is unwell; try at the next tick
			}
			skip = append(skip, id)
		}
	}
}

// deliverOneDue takes the oldest due row (skipping rows another instance holds), stores it in
// its conversation and deletes it in one transaction, and publishes after the commit: a crash
// before the commit leaves it scheduled, after it the message is stored exactly once.
func (db *Database) deliverOneDue(ctx context.Context, skip []int64) (id int64, err error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("beginning: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	m := &Message{Cmd: "SendMessage", Kind: "text"}
	err = tx.QueryRow(ctx, `SELECT id, cid, f_username, content FROM scheduled_messages
		WHERE send_at <= now() AND id <> ALL($1) ORDER BY send_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`, skip).
		Scan(&id, &m.CID, &m.FUsername, &m.Content)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, errNothingDue
	}
	if err != nil {
		return 0, fmt.Errorf("taking due row: %w", err)
	}
	c, err := db.getConvo(ctx, m.CID)
	if err != nil && !isNotFound(err) {
		return id, err
	}
	member := c != nil && c.isMember(m.FUsername)
	dup := false
	if member {
		m.ClientID = fmt.Sprintf("%s%d", scheduledClientID, id)
		if dup, err = db.insertMessage(ctx, tx, m); err != nil {
			return id, err
		}
	} else {
		slog.Warn("dropping scheduled message: its sender left the conversation", "id", id, "cid", m.CID, "user", m.FUsername)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM scheduled_messages WHERE id = $1", id); err != nil {
		return id, fmt.Errorf("deleting delivered row %d: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return id, fmt.Errorf("committing scheduled message %d: %w", id, err)
	}
	switch {
	case member && dup:
		// Stored by an earlier try that may have died before publishing: publish again
		// (clients drop a message id they already have).
		if err := db.deliver(c, m); err != nil {
			slog.Error("delivering message", "cid", c.CID, "id", m.ID, "err", err)
		}
	case member:
		db.afterSend(ctx, c, m)
	}
	return id, nil
}

// recordBacklog sets the metric of scheduled messages that are due but not delivered.
func (db *Database) recordBacklog(ctx context.Context) {
	var n int
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM scheduled_messages WHERE send_at <= now()").Scan(&n); err == nil {
		db.metrics.setScheduledBacklog(n)
	}
}

// sweepQuickStore removes expired records from a backend that does not expire them itself.
func (db *Database) sweepQuickStore(ctx context.Context) {
	sw, ok := db.quick.(interface{ Sweep(context.Context) error })
	if !ok {
		return
	}
	if err := sw.Sweep(ctx); err != nil {
		slog.Error("quick store sweep", "err", err)
	}
}
