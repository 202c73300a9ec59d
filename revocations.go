package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Revocations that outlive a crash of the quick store. Aerospike Community Edition loses what it
// acknowledged within flush-max-ms (1 s) of a crash of a single node, and a revocation is such a
// write: a resume token's tombstone (Logout, a token evicted by a newer login), a password
// change's new session epoch, a deletion. A revocation undone that way would let a stolen token
// or an old password work again, or bring a deleted account back. So each is also committed to
// PostgreSQL (synced) before it is acknowledged, and every password login and resume consults
// it, whichever the quick store: a revoked token stays revoked, tokens of an old epoch stay
// revoked, and an account whose deletion is pending or was finished less than a minute ago
// cannot log in (its row in pending_deletions; the scheduler deletes a record that came back
// again, database_functions_delete.go). One indexed query per login or resume.
//
// Rows of revoked tokens and epochs are kept as long as a token they revoke could live
// (-session-ttl), then pruned by the scheduler.

// recordRevokedTokens commits the revocation of the tokens with these hashes.
func (db *Database) recordRevokedTokens(ctx context.Context, hashes []string) error {
	if len(hashes) == 0 {
		return nil
	}
	_, err := db.pool.Exec(ctx, `INSERT INTO revoked_tokens (hash, expires)
		SELECT unnest($1::text[]), now() + $2::interval ON CONFLICT (hash) DO NOTHING`,
		hashes, db.cfg.SessionTTL)
	if err != nil {
		return fmt.Errorf("recording revoked tokens: %w", err)
	}
	return nil
}

// recordSessionEpoch commits that the user's tokens of epochs before u's are revoked.
func (db *Database) recordSessionEpoch(ctx context.Context, u *UserRecord) error {
	_, err := db.pool.Exec(ctx, `INSERT INTO revoked_epochs (user_id, epoch, expires)
		VALUES ($1, $2, now() + $3::interval)
		ON CONFLICT (user_id) DO UPDATE SET epoch = greatest(revoked_epochs.epoch, excluded.epoch), expires = excluded.expires`,
		u.UserID, u.SessionEpoch, db.cfg.SessionTTL)
	if err != nil {
		return fmt.Errorf("recording the session epoch: %w", err)
	}
	return nil
}

// revoked reports whether a login as u, by password (tokenHash "") or by the resume token
// with that hash, must be refused whatever the quick store says: the token was revoked, the
// record is older than the user's latest password change (a crash lost the change: the old
// password and its tokens stay refused), or the account is being or was lately deleted.
func (db *Database) revoked(ctx context.Context, u *UserRecord, tokenHash string) (bool, error) {
	var out bool
	err := db.pool.QueryRow(ctx, `SELECT
		   EXISTS (SELECT 1 FROM revoked_tokens WHERE hash = $1)
		OR EXISTS (SELECT 1 FROM revoked_epochs WHERE user_id = $2 AND epoch > $3)
		OR EXISTS (SELECT 1 FROM pending_deletions WHERE user_id = $2)`,
		tokenHash, u.UserID, u.SessionEpoch).Scan(&out)
	if err != nil {
		return false, fmt.Errorf("checking revocations: %w", err)
	}
	return out, nil
}

// pruneRevocations forgets revocations of tokens that have expired anyway (the scheduler's tick).
func (db *Database) pruneRevocations(ctx context.Context) {
	for _, table := range []string{"revoked_tokens", "revoked_epochs"} {
		if _, err := db.pool.Exec(ctx, "DELETE FROM "+table+" WHERE expires < $1", time.Now()); err != nil {
			slog.Error("pruning revocations", "table", table, "err", err)
		}
	}
}
