package main

import (
	"context"
	"time"
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
		}
	}
}

// scheduledOf lists a user's scheduled messages, soonest first.
func (db *Database) scheduledOf(ctx context.Context, user string) ([]ScheduledView, error) {
	rows, err := db.pool.Query(ctx, `SELECT id, cid, send_at, content FROM scheduled_messages
		WHERE upper(f_username) = upper($1) ORDER BY send_at, id`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ScheduledView{}
	for rows.Next() {
		var v ScheduledView
		var at time.Time
		if err := rows.Scan(&v.ID, &v.CID, &at, &v.Content); err != nil {
			return nil, err
		}
		v.Time = formatTime(at)
		out = append(out, v)
	}
	return out, rows.Err()
}
