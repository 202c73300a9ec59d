package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/ffjson/ffjson"
)

// DeleteUser, resumable. The user record is first marked Deleting (from then on nobody can log
// in as it, add it or befriend it, and its name stays taken) and the deletion is recorded in
// pending_deletions; then its lookups, memberships, friendships, scheduled messages and tokens
// go; the record itself goes last, by generation, so that a membership added meanwhile is seen
// and removed first. A deletion interrupted half-way (a crash, a store outage) is finished by
// the scheduler's tick on any instance. So a new account with the old name can only be made
// once nothing refers to the old one, and it inherits nothing.

// deletionRetryAfter is how old a pending deletion must be before the scheduler takes it over
// from the command that started it.
const deletionRetryAfter = time.Minute

func deleteUser(ctx context.Context, s *Session, req *Request) (reply, error) {
	if _, err := s.checkPasswordOf(ctx, req.Password); err != nil {
		return nil, err
	}
	if err := s.db.beginDeletion(ctx, s.user); err != nil {
		return nil, err
	}
	if err := s.db.finishDeletion(ctx, s.user); err != nil {
		// Recorded already: the scheduler completes it. The user is gone for every purpose.
		slog.Error("deleting user; the scheduler will finish", "user", s.user, "err", err)
	}
	return nil, nil
}

// beginDeletion marks the user as being deleted and records the deletion durably.
func (db *Database) beginDeletion(ctx context.Context, user string) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO pending_deletions (username) VALUES ($1)
		ON CONFLICT (username) DO NOTHING`, upperName(user)); err != nil {
		return fmt.Errorf("recording deletion: %w", err)
	}
	_, err := db.updateUser(ctx, user, func(u *UserRecord) error {
		u.Deleting = true
		return nil
	})
	return err
}

// finishDeletion removes everything of a user marked Deleting; it may run any number of times.
func (db *Database) finishDeletion(ctx context.Context, user string) error {
	for range casAttempts {
		u, gen, err := db.getUserRecord(ctx, user)
		if isNotFound(err) {
			return db.forgetDeletion(ctx, user)
		}
		if err != nil {
			return err
		}
		if !u.Deleting {
			return db.forgetDeletion(ctx, user) // not ours to delete (a stale row)
		}
		if err := db.removeTraces(ctx, u); err != nil {
			return err
		}
		// Only if nothing changed the record meanwhile (a conversation joined, a request
		// received): otherwise go round and remove that too.
		_, err = db.quick.Delete(ctx, userKey(user), gen)
		if errors.Is(err, ErrGeneration) {
			continue
		}
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting user record: %w", err)
		}
		db.releaseLookups(ctx, u)
		payload, err := ffjson.Marshal(&AckReply{Cmd: "DeleteUser", OK: true})
		if err != nil {
			return err
		}
		db.publishClose(u.Username, payload, "user deleted", "")
		ffjson.Pool(payload)
		return db.forgetDeletion(ctx, user)
	}
	return fmt.Errorf("deleting %s: its record keeps changing", user)
}

// removeTraces removes the user from conversations and friends' lists, and deletes its
// scheduled messages and resume tokens. Each step is idempotent.
func (db *Database) removeTraces(ctx context.Context, u *UserRecord) error {
	for _, cid := range mapKeys(u.Convos) {
		err := db.removeMember(ctx, cid, u.Username, u.Username)
		if errors.Is(err, errNotMember) {
			err = db.leaveConvo(ctx, cid, u.Username) // left already; only its own list is stale
		}
		if err != nil {
			return err
		}
	}
	for _, f := range slices.Concat(u.Friends, u.Incoming, u.Outgoing) {
		if err := db.forgetFriend(ctx, f.Username, u.Username); err != nil {
			return err
		}
	}
	if _, err := db.pool.Exec(ctx, "DELETE FROM scheduled_messages WHERE upper(f_username) = $1", u.upper()); err != nil {
		return fmt.Errorf("deleting scheduled messages: %w", err)
	}
	if err := db.deleteMailbox(ctx, u.Username); err != nil {
		return err
	}
	// Files shared in conversations stay, like the messages; the profile picture goes.
	db.files.removeProfilePic(ctx, u.Username, u.ProfilePic)
	// The tokens' records only: the sessions are closed with the DeleteUser push at the end.
	for _, h := range u.Tokens {
		if _, err := db.quick.Delete(ctx, sessionKey(h), 0); err != nil && !isNotFound(err) {
			return fmt.Errorf("deleting session: %w", err)
		}
	}
	return nil
}

func (db *Database) forgetDeletion(ctx context.Context, user string) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM pending_deletions WHERE username = $1", upperName(user)); err != nil {
		return fmt.Errorf("forgetting finished deletion: %w", err)
	}
	return nil
}

// finishPendingDeletions completes deletions that their command did not (run by the
// scheduler's tick).
func (db *Database) finishPendingDeletions(ctx context.Context) {
	rows, err := db.pool.Query(ctx, "SELECT username FROM pending_deletions WHERE started < $1 ORDER BY started LIMIT 100",
		time.Now().Add(-deletionRetryAfter))
	if err != nil {
		slog.Error("listing pending deletions", "err", err)
		return
	}
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		slog.Error("listing pending deletions", "err", err)
		return
	}
	for _, u := range users {
		if err := db.finishDeletion(ctx, u); err != nil {
			slog.Error("finishing deletion", "user", u, "err", err)
		}
	}
}
