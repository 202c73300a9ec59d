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
		}
	}
}

var errNothingDue = errors.New("nothing due")

// deliverDue delivers every scheduled message that is due, one transaction each.
func (db *Database) deliverDue(ctx context.Context) {
	for ctx.Err() == nil {
		err := db.deliverOneDue(ctx)
		if errors.Is(err, errNothingDue) {
			return
		}
		if err != nil {
			slog.Error("delivering scheduled message", "err", err)
			return
		}
	}
}

// deliverOneDue takes the oldest due row (skipping rows another instance holds), stores it in
// its conversation and deletes it in one transaction, and publishes after the commit: a crash
// before the commit leaves it scheduled, after it the message is stored exactly once.
func (db *Database) deliverOneDue(ctx context.Context) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var id int64
	m := &Message{Cmd: "SendMessage", Kind: "text"}
	err = tx.QueryRow(ctx, `SELECT id, cid, f_username, content FROM scheduled_messages
		WHERE send_at <= now() ORDER BY send_at, id LIMIT 1 FOR UPDATE SKIP LOCKED`).
		Scan(&id, &m.CID, &m.FUsername, &m.Content)
	if errors.Is(err, pgx.ErrNoRows) {
		return errNothingDue
	}
	if err != nil {
		return fmt.Errorf("taking due row: %w", err)
	}
	c, err := db.getConvo(ctx, m.CID)
	if err != nil && !isNotFound(err) {
		return err
	}
	member := c != nil && c.isMember(m.FUsername)
	dup := false
	if member {
		m.ClientID = fmt.Sprintf("scheduled-%d", id)
		if dup, err = db.insertMessage(ctx, tx, m); err != nil {
			return err
		}
	} else {
		slog.Warn("dropping scheduled message: its sender left the conversation", "id", id, "cid", m.CID, "user", m.FUsername)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM scheduled_messages WHERE id = $1", id); err != nil {
		return fmt.Errorf("deleting delivered row %d: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing scheduled message %d: %w", id, err)
	}
	if member && !dup {
		db.afterSend(ctx, c, m)
	}
	return nil
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
