package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Mailbox quota (-mail-quota, DESIGN §4): a mailbox holds at most that many bytes of mail —
// bodies, attachments (each copy counts for its mailbox, though stored once) and headers — of
// every folder but what was removed for good. Inbound mail past it is refused (SMTP 552 at RCPT
// when the mailbox is already full, or at DATA; HTTP 413) and the owner finds one notice in
// the inbox, which is not itself counted, until emptying the Trash brings the mailbox under
// its quota again. Mail has its own quota, apart from uploads' Quota: strangers can send mail,
// and their mail must not use up the space the user's own files need.

const (
	mailFullSubject = "Your mailbox is full"
	mailFullText    = "Your mailbox has reached its limit of %s, so new mail to %s is being refused and its senders are told so.\n\nDelete mail you no longer need and empty the Trash to receive mail again.\n"
)

// mailboxUsed is the bytes a mailbox holds.
func mailboxUsed(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, owner string) (int64, error) {
	var used int64
	err := q.QueryRow(ctx, "SELECT COALESCE(sum(size), 0)::bigint FROM mail WHERE owner = $1 AND NOT removed", owner).Scan(&used)
	if err != nil {
		return 0, fmt.Errorf("reading the mailbox's size: %w", err)
	}
	return used, nil
}

// checkQuota refuses size more bytes in owner's mailbox (inside mailTx, which holds the lock).
func (db *Database) checkQuota(ctx context.Context, tx pgx.Tx, owner string, size int64) error {
	if db.cfg.MailQuota <= 0 {
		return nil
	}
	used, err := mailboxUsed(ctx, tx, owner)
	if err != nil {
		return err
	}
	if size > db.cfg.MailQuota-used {
		return errMailboxFull
	}
	return nil
}

// mailboxFull reports whether user's mailbox has no room left (RCPT's early answer); storage
// errors say no, and delivery checks again.
func (db *Database) mailboxFull(ctx context.Context, user string) bool {
	if db.cfg.MailQuota <= 0 {
		return false
	}
	used, err := mailboxUsed(ctx, db.pool, upperName(user))
	if err != nil {
		slog.Error("checking a mailbox's quota", "err", err)
		return false
	}
	if used >= db.cfg.MailQuota {
		db.noticeMailboxFull(ctx, user)
		return true
	}
	return false
}

// mailboxState is what GetAllEmails says of the mailbox: its size, and whether mail was
// refused since it last had room.
func (db *Database) mailboxState(ctx context.Context, owner string) (used int64, full bool, err error) {
	if used, err = mailboxUsed(ctx, db.pool, owner); err != nil {
		return 0, false, err
	}
	err = db.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM mail_full WHERE owner = $1)", owner).Scan(&full)
	if err != nil {
		return 0, false, fmt.Errorf("reading the mailbox's state: %w", err)
	}
	return used, full || (db.cfg.MailQuota > 0 && used >= db.cfg.MailQuota), nil
}

// noticeMailboxFull puts the notice in user's inbox, once until the mailbox has room again.
func (db *Database) noticeMailboxFull(ctx context.Context, user string) {
	key := upperName(user)
	tag, err := db.pool.Exec(ctx, "INSERT INTO mail_full (owner) VALUES ($1) ON CONFLICT DO NOTHING", key)
	if err != nil {
		slog.Error("recording a full mailbox", "err", err)
		return
	}
	if tag.RowsAffected() == 0 {
		return
	}
	slog.Info("a mailbox is full: refusing its mail", "user", user)
	e := &Email{Folder: folderInbox, Unread: true, From: db.mailFrom(), FromName: "pingedchat",
		Subject: mailFullSubject, Text: fmt.Sprintf(mailFullText, formatBytes(db.cfg.MailQuota), db.mailAddress(user)),
		Auth: "local"}
	if err := db.deliverEmail(ctx, user, e, 0, "EmailReceived", ""); err != nil {
		slog.Error("telling a user the mailbox is full", "err", err)
	}
}

// clearMailboxFull forgets that mail was refused once the mailbox has room (inside mailTx).
func (db *Database) clearMailboxFull(ctx context.Context, tx pgx.Tx, owner string) error {
	used, err := mailboxUsed(ctx, tx, owner)
	if err != nil {
		return err
	}
	if db.cfg.MailQuota > 0 && used >= db.cfg.MailQuota {
		return nil
	}
	if _, err := tx.Exec(ctx, "DELETE FROM mail_full WHERE owner = $1", owner); err != nil {
		return fmt.Errorf("clearing the mailbox-full notice: %w", err)
	}
	return nil
}

// formatBytes is a size for people: "1 GiB", "500 MiB".
func formatBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// quotaPrecheck refuses a message that one of its recipients' mailboxes cannot take, before
// any is stored, so that a refusal refuses it for all (delivery checks again under the lock).
func (db *Database) quotaPrecheck(ctx context.Context, rcpts []string, p *parsedMail) error {
	if db.cfg.MailQuota <= 0 {
		return nil
	}
	size := p.storedSize()
	for _, addr := range rcpts {
		t, ok, err := db.resolveRecipient(ctx, strings.TrimSpace(addr))
		if err != nil || !ok || t.cid != "" {
			continue // receiveMail answers for these
		}
		users := []string{t.user}
		if t.role != "" {
			users = db.cfg.adminNames() // postmaster@ and abuse@ go to the admins' mailboxes
		}
		for _, user := range users {
			if err := db.quotaRoom(ctx, user, size); err != nil {
				return err
			}
		}
	}
	return nil
}

// quotaRoom refuses size more bytes for user's mailbox when it cannot take them (nil for a
// user who does not exist: delivery skips them).
func (db *Database) quotaRoom(ctx context.Context, user string, size int64) error {
	used, err := mailboxUsed(ctx, db.pool, upperName(user))
	if err != nil {
		return err
	}
	if size > db.cfg.MailQuota-used {
		db.noticeMailboxFull(ctx, user)
		return errMailboxFull
	}
	return nil
}
