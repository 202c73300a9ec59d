package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
)

// Scheduled-message commands; scheduler.go delivers them.

const maxScheduleAhead = 366 * 24 * time.Hour

func addScheduledMessage(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	at, err := parseTime(req.Time)
	if err != nil {
		return nil, err
	}
	if now := time.Now(); !at.After(now) || at.After(now.Add(maxScheduleAhead)) {
		return nil, clientErr("Time must be in the future and at most a year ahead.")
	}
	if err := checkContent(req.Content); err != nil {
		return nil, err
	}
	// The cap keeps the user view (which lists them all) bounded. Two sessions adding at the
	// same moment may pass it together by one each; that bounds it all the same.
	var id int64
	err = s.db.pool.QueryRow(ctx, `INSERT INTO scheduled_messages (cid, f_username, content, send_at)
		SELECT $1, $2, $3, $4
		WHERE $5 <= 0 OR (SELECT count(*) FROM scheduled_messages WHERE upper(f_username) = $6) < $5
		RETURNING id`, c.CID, s.user, req.Content, at, s.db.cfg.MaxScheduledPerUser, s.upper).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, clientErr("At most %d scheduled messages at a time.", s.db.cfg.MaxScheduledPerUser)
	}
	if err != nil {
		return nil, fmt.Errorf("storing scheduled message: %w", err)
	}
	s.scheduledChanged(ctx)
	return &AckReply{OK: true, CID: c.CID, ID: id, MTime: formatTime(at)}, nil
}

// scheduledChanged tells the user's other sessions (UpdateUser) that their scheduled messages
// changed. The change is stored already, so a failure is logged: they see it at their next view.
func (s *Session) scheduledChanged(ctx context.Context) {
	u, err := s.db.getUser(ctx, s.user)
	if err == nil {
		err = s.db.publishUserView(ctx, u, s.id)
	}
	if err != nil {
		slog.Error("telling other sessions of a scheduled message", "user", s.user, "err", err)
	}
}

func removeScheduledMessage(ctx context.Context, s *Session, req *Request) (reply, error) {
	var sql string
	var args []any
	if req.ID != 0 {
		sql, args = "DELETE FROM scheduled_messages WHERE id = $1 AND upper(f_username) = $2", []any{req.ID, s.upper}
	} else {
		at, err := parseTime(req.Time)
		if err != nil {
			return nil, err
		}
		sql = `DELETE FROM scheduled_messages WHERE id = (SELECT id FROM scheduled_messages
			WHERE cid = $1 AND send_at = $2 AND content = $3 AND upper(f_username) = $4 LIMIT 1)`
		args = []any{req.CID, at, req.Content, s.upper}
	}
	tag, err := s.db.pool.Exec(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("removing scheduled message: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return nil, clientErr("No such scheduled message (or it was sent already).")
	}
	s.scheduledChanged(ctx)
	return nil, nil
}

func removeAllScheduledMessages(ctx context.Context, s *Session, _ *Request) (reply, error) {
	if _, err := s.db.pool.Exec(ctx, "DELETE FROM scheduled_messages WHERE upper(f_username) = $1", s.upper); err != nil {
		return nil, fmt.Errorf("removing scheduled messages: %w", err)
	}
	s.scheduledChanged(ctx)
	return nil, nil
}

// queueScheduledOf lists a user's scheduled messages, soonest first, in the user view's batch.
func queueScheduledOf(b *pgx.Batch, user string, out *[]ScheduledView) {
	b.Queue(`SELECT id, cid, send_at, content FROM scheduled_messages
		WHERE upper(f_username) = $1 ORDER BY send_at, id`, upperName(user)).Query(func(rows pgx.Rows) error {
		views, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ScheduledView, error) {
			var v ScheduledView
			var at time.Time
			err := row.Scan(&v.ID, &v.CID, &at, &v.Content)
			v.Time = formatTime(at)
			return v, err
		})
		if err != nil {
			return fmt.Errorf("listing scheduled messages: %w", err)
		}
		*out = nonNil(views)
		return nil
	})
}
