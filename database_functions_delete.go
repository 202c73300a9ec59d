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
//
// A finished deletion's row stays a minute longer, and the scheduler then checks once more that
// the record is gone: a quick store that loses recent writes in a crash (Aerospike CE, within
// flush-max-ms) may bring the whole account back, and the check deletes it again (by its
// UserID, even without the Deleting mark, which the crash took too). Meanwhile nobody can log
// in as it (revocations.go). A minute is far beyond any flush; a store that is down at the
// check is checked again at the next tick.

// deletionRetryAfter is how old a pending deletion must be before the scheduler takes it over
// from the command that started it, and how long after it finished it is confirmed.
const deletionRetryAfter = time.Minute

func deleteUser(ctx context.Context, s *Session, req *Request) (reply, error) {
	u, err := s.checkPasswordOf(ctx, req.Password)
	if err != nil {
		return nil, err
	}
	if err := s.db.beginDeletion(ctx, u); err != nil {
		return nil, err
	}
	if err := s.db.finishDeletion(ctx, s.user, u.UserID); err != nil {
		// Recorded already: the scheduler completes it. The user is gone for every purpose.
		slog.Error("deleting user; the scheduler will finish", "user", s.user, "err", err)
	}
	return nil, nil
}

// beginDeletion records the deletion durably and marks the user as being deleted.
func (db *Database) beginDeletion(ctx context.Context, u *UserRecord) error {
	if _, err := db.pool.Exec(ctx, `INSERT INTO pending_deletions (username, user_id) VALUES ($1, $2)
		ON CONFLICT (username) DO UPDATE SET user_id = excluded.user_id, started = now(), finished = NULL`,
		u.upper(), u.UserID); err != nil {
		return fmt.Errorf("recording deletion: %w", err)
	}
	_, err := db.updateUser(ctx, u.Username, func(u *UserRecord) error {
		u.Deleting = true
		return nil
	})
	return err
}

// finishDeletion removes everything of the user with this UserID (marked Deleting, or brought
// back by a crash of the quick store); it may run any number of times. userID "" is a deletion
// recorded before UserIDs were: only a record marked Deleting is its.
func (db *Database) finishDeletion(ctx context.Context, user, userID string) error {
	for range casAttempts {
		u, gen, err := db.getUserRecord(ctx, user)
		if isNotFound(err) {
			return db.deletionDone(ctx, user)
		}
		if err != nil {
			return err
		}
		if !u.Deleting && (userID == "" || u.UserID != userID) {
			return db.forgetDeletion(ctx, user) // a new account with the name: not ours
		}
		if !u.Deleting {
			// Back from a crash that took its deletion: mark it again first.
			if err := db.beginDeletion(ctx, u); err != nil {
				return err
			}
			slog.Warn("a deleted user came back (the quick store lost its deletion); deleting it again", "user", user)
			continue
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
		return db.deletionDone(ctx, user)
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

// deletionDone notes that the user's record is gone: the first time, when the deletion finished;
// a minute or more later, which confirms it, the row goes.
func (db *Database) deletionDone(ctx context.Context, user string) error {
	if _, err := db.pool.Exec(ctx, `DELETE FROM pending_deletions WHERE username = $1 AND finished < $2`,
		upperName(user), time.Now().Add(-deletionRetryAfter)); err != nil {
		return fmt.Errorf("forgetting confirmed deletion: %w", err)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE pending_deletions SET finished = now() WHERE username = $1 AND finished IS NULL`,
		upperName(user)); err != nil {
		return fmt.Errorf("noting finished deletion: %w", err)
	}
	return nil
}

func (db *Database) forgetDeletion(ctx context.Context, user string) error {
	if _, err := db.pool.Exec(ctx, "DELETE FROM pending_deletions WHERE username = $1", upperName(user)); err != nil {
		return fmt.Errorf("forgetting finished deletion: %w", err)
	}
	return nil
}

// finishPendingDeletions completes deletions that their command did not, and confirms finished
// ones a minute on (run by the scheduler's tick).
func (db *Database) finishPendingDeletions(ctx context.Context) {
	type pending struct{ Username, UserID string }
	rows, err := db.pool.Query(ctx, `SELECT username, user_id FROM pending_deletions
		WHERE coalesce(finished, started) < $1 ORDER BY started LIMIT 100`,
		time.Now().Add(-deletionRetryAfter))
	if err != nil {
		slog.Error("listing pending deletions", "err", err)
		return
	}
	users, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pending])
	if err != nil {
		slog.Error("listing pending deletions", "err", err)
		return
	}
	for _, u := range users {
		if err := db.finishDeletion(ctx, u.Username, u.UserID); err != nil {
			slog.Error("finishing deletion", "user", u.Username, "err", err)
		}
	}
}
