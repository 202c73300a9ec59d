package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/textproto"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The outbound mail queue: mail people send waits in mail_outbox until the relay takes it, so a
// restart or a relay outage loses nothing (DESIGN §4). Every instance runs a worker; rows are
// taken FOR UPDATE SKIP LOCKED, so each is sent by one of them.

const (
	outboxPoll      = 15 * time.Second // how often a worker looks without being woken
	outboxGiveUp    = 48 * time.Hour
	outboxMaxDelay  = time.Hour
	outboxBatch     = 20
	bounceSubject   = "Undeliverable: "
	bounceFromLocal = "mailer-daemon"
)

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// enqueueMail adds a message to the queue (in a transaction, or on its own with the pool).
func enqueueMail(ctx context.Context, tx execer, sender, from string, rcpts []string, data []byte) error {
	_, err := tx.Exec(ctx, `INSERT INTO mail_outbox (sender, mail_from, rcpts, data) VALUES ($1, $2, $3, $4)`,
		sender, from, rcpts, data)
	if err != nil {
		return fmt.Errorf("queueing mail: %w", err)
	}
	return nil
}

// wakeOutbox tells this instance's worker that mail is waiting.
func (db *Database) wakeOutbox() {
	select {
	case db.outboxWake <- struct{}{}:
	default:
	}
}

// runOutbox sends queued mail until ctx ends.
func (db *Database) runOutbox(ctx context.Context) {
	if !db.mailConfigured() {
		return
	}
	t := time.NewTicker(outboxPoll)
	defer t.Stop()
	for {
		for db.sendDue(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-db.outboxWake:
		}
	}
}

// sendDue sends up to a batch of due rows; it reports whether there may be more.
func (db *Database) sendDue(ctx context.Context) bool {
	n := 0
	for n < outboxBatch {
		done, err := db.sendOneDue(ctx)
		if err != nil {
			if ctx.Err() == nil {
				slog.Error("sending queued mail", "err", err)
			}
			return false
		}
		if !done {
			return false
		}
		n++
	}
	return true
}

// sendOneDue takes the oldest due row, holding it locked while the relay is talked to, and
// deletes it on success or reschedules it on a transient failure.
func (db *Database) sendOneDue(ctx context.Context) (bool, error) {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("beginning: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var (
		id              int64
		sender, from    string
		rcpts           []string
		data            []byte
		attempts        int
		created         time.Time
		permanent, err2 error
	)
	err = tx.QueryRow(ctx, `SELECT id, sender, mail_from, rcpts, data, attempts, created_at FROM mail_outbox
		WHERE next_try <= now() ORDER BY next_try, id LIMIT 1 FOR UPDATE SKIP LOCKED`).
		Scan(&id, &sender, &from, &rcpts, &data, &attempts, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("taking queued mail: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err2 = db.relay(sctx, from, rcpts, data)
	cancel()
	switch {
	case err2 == nil:
		_, err = tx.Exec(ctx, "DELETE FROM mail_outbox WHERE id = $1", id)
		db.metrics.mailSent("sent")
	case isPermanentSMTP(err2) || time.Since(created) > outboxGiveUp:
		permanent = err2
		_, err = tx.Exec(ctx, "DELETE FROM mail_outbox WHERE id = $1", id)
		db.metrics.mailSent("bounced")
	default:
		delay := min(db.outboxRetry()<<min(attempts, 16), outboxMaxDelay)
		_, err = tx.Exec(ctx, `UPDATE mail_outbox SET attempts = attempts + 1, next_try = now() + $2::interval,
			last_error = $3 WHERE id = $1`, id, delay.String(), truncate(err2.Error(), 500))
		db.metrics.mailSent("retry")
		slog.Warn("mail relay failed; will retry", "id", id, "attempt", attempts+1, "in", delay, "err", err2)
	}
	if err != nil {
		return false, fmt.Errorf("updating queued mail %d: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("committing queued mail %d: %w", id, err)
	}
	if permanent != nil && sender != "" {
		db.bounce(ctx, sender, rcpts, permanent)
	}
	return true, nil
}

// outboxRetry is the first retry's delay (tests shorten it).
func (db *Database) outboxRetry() time.Duration {
	if db.cfg.outboxRetry > 0 {
		return db.cfg.outboxRetry
	}
	return 30 * time.Second
}

// isPermanentSMTP: the relay refused for good (5xx); anything else may pass on a later try.
func isPermanentSMTP(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code >= 500
	}
	var te *textproto.Error
	return errors.As(err, &te) && te.Code >= 500
}

// bounce tells the sender, in their inbox, that mail could not be delivered.
func (db *Database) bounce(ctx context.Context, sender string, rcpts []string, cause error) {
	u, err := db.getUserData(ctx, sender)
	if err != nil {
		return // the sender is gone
	}
	e := &Email{Folder: folderInbox, Unread: true, From: bounceFromLocal + "@" + db.cfg.MailDomain,
		FromName: "Mail Delivery", To: []string{db.mailAddress(u.Username)},
		Subject: bounceSubject + fmt.Sprint(rcpts),
		Text:    fmt.Sprintf("Your message to %v could not be delivered.\n\nThe mail server said: %v\n", rcpts, cause)}
	if err := db.deliverEmail(ctx, u.Username, e, int64(len(e.Text)), "EmailReceived", ""); err != nil {
		slog.Error("storing a bounce", "user", sender, "err", err)
	}
}
