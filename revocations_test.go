package main

import (
	"testing"
	"time"
)

// A quick store that forgets a revocation (as Aerospike CE does in a crash: here the records are
// put back as they were) does not undo it: the revocations committed to PostgreSQL are
// consulted at every login and resume. On the default quick store, so that it runs everywhere;
// TestRevocationsSurviveAnAerospikeCrash does the same with a real node and a real crash.
func TestRevocationsHoldWhenTheQuickStoreForgets(t *testing.T) {
	srv := startServer(t, testConfig(t))
	ctx := t.Context()
	registered := func(prefix string) (*client, string) {
		c := dialRaw(t, srv)
		c.name = uniqueName(prefix)
		return c, c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword})["session"].(string)
	}
	// snapshot returns a function that writes the records back as they are now.
	snapshot := func(keys ...Key) (restore func()) {
		saved := map[Key]Bins{}
		for _, k := range keys {
			rec, err := srv.db.quick.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			saved[k] = rec.Bins
		}
		return func() {
			for k, bins := range saved {
				if _, err := srv.db.quick.Put(ctx, k, bins, PutOptions{Mode: Replace}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	resumeFails := func(name, token string) {
		t.Helper()
		dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": name, "session": token}, "expired or revoked")
	}

	out, outToken := registered("forgetlogout")
	restore := snapshot(sessionKey(tokenHash(outToken)), userKey(out.name))
	out.ok("Logout", nil)
	restore()
	resumeFails(out.name, outToken)
	dialRaw(t, srv).ok("ValidateUser", map[string]any{"username": out.name, "password": testPassword}) // only the token went

	changer, changerToken := registered("forgetchange")
	restore = snapshot(sessionKey(tokenHash(changerToken)), userKey(changer.name))
	changer.ok("ChangeUserPassword", map[string]any{"OldPassword": testPassword, "NewPassword": "a new password"})
	restore()
	resumeFails(changer.name, changerToken)
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": changer.name, "password": testPassword}, "Invalid username or password")

	gone, goneToken := registered("forgetdelete")
	restore = snapshot(sessionKey(tokenHash(goneToken)), userKey(gone.name))
	gone.ok("DeleteUser", map[string]any{"password": testPassword})
	restore()
	resumeFails(gone.name, goneToken)
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": gone.name, "password": testPassword}, "Invalid username or password")
	// The scheduler's confirmation a minute on finds the record back and deletes it again; the
	// next one forgets the deletion, and the name is free.
	age := func() {
		if _, err := srv.db.pool.Exec(ctx, "UPDATE pending_deletions SET started = now() - interval '1 hour', finished = now() - interval '1 hour' WHERE username = upper($1)", gone.name); err != nil {
			t.Fatal(err)
		}
	}
	age()
	srv.db.finishPendingDeletions(ctx)
	if _, _, err := srv.db.getUserRecord(ctx, gone.name); !isNotFound(err) {
		t.Fatalf("the account that came back was not deleted again: %v", err)
	}
	age()
	srv.db.finishPendingDeletions(ctx)
	var rows int
	if err := srv.db.pool.QueryRow(ctx, "SELECT count(*) FROM pending_deletions WHERE username = upper($1)", gone.name).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("the confirmed deletion's row: %d, %v", rows, err)
	}
	dialRaw(t, srv).ok("CreateUser", map[string]any{"username": gone.name, "password": testPassword})
}

// Revocations are kept as long as the tokens they revoke could live, then pruned.
func TestRevocationsArePrunedWhenTheirTokensWouldHaveExpired(t *testing.T) {
	srv := startServer(t, testConfig(t))
	ctx := t.Context()
	if err := srv.db.recordRevokedTokens(ctx, []string{"old-hash", "new-hash"}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.db.pool.Exec(ctx, "UPDATE revoked_tokens SET expires = $1 WHERE hash = 'old-hash'", time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	srv.db.pruneRevocations(ctx)
	var left []string
	rows, err := srv.db.pool.Query(ctx, "SELECT hash FROM revoked_tokens WHERE hash IN ('old-hash', 'new-hash')")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			t.Fatal(err)
		}
		left = append(left, h)
	}
	if len(left) != 1 || left[0] != "new-hash" {
		t.Fatalf("after pruning: %v, want only new-hash", left)
	}
}
