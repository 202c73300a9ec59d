package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pquerna/ffjson/ffjson"
)

// Typed records above the QuickStore interface. Each record keeps its struct, marshalled with
// ffjson, in one bin; read-modify-write goes through updateRecord, a generation compare-and-set
// with retries, so concurrent changes to one record never lose an update.

const (
	nsUsers  = "users"
	nsConvos = "convos"
	dataBin  = "data"
	// casAttempts bounds read-modify-write retries; only heavy contention on one record uses
	// more than a few.
	casAttempts = 50
)

func userKey(name string) Key      { return Key{nsUsers, "username", upperName(name)} }
func emailKey(email string) Key    { return Key{nsUsers, "email", email} }
func phoneKey(phone string) Key    { return Key{nsUsers, "phone", phone} }
func sessionKey(hash string) Key   { return Key{nsUsers, "session", hash} }
func convoKey(cid string) Key      { return Key{nsConvos, "convos", cid} }
func upperName(name string) string { return strings.ToUpper(name) }

// errNoChange, returned by an update function, skips the write.
var errNoChange = errors.New("no change")

// getRecord reads and decodes a typed record.
func getRecord[T any](ctx context.Context, q QuickStore, key Key) (*T, uint32, error) {
	rec, err := q.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	v, err := decodeRecord[T](key, rec)
	if err != nil {
		return nil, 0, err
	}
	return v, rec.Generation, nil
}

// decodeRecord decodes the data bin of a record.
func decodeRecord[T any](key Key, rec *Record) (*T, error) {
	data, ok := rec.Bins[dataBin].(string)
	if !ok {
		return nil, fmt.Errorf("record %s has no data bin", key)
	}
	v := new(T)
	if err := ffjson.Unmarshal([]byte(data), v); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", key, err)
	}
	return v, nil
}

// encodeRecord encodes a typed record's data bin.
func encodeRecord(key Key, v any) (string, error) {
	data, err := ffjson.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding %s: %w", key, err)
	}
	s := string(data)
	ffjson.Pool(data)
	return s, nil
}

// putRecord encodes and writes a typed record.
func putRecord(ctx context.Context, q QuickStore, key Key, v any, opts PutOptions) error {
	data, err := encodeRecord(key, v)
	if err != nil {
		return err
	}
	_, err = q.Put(ctx, key, Bins{dataBin: data}, opts)
	return err
}

// updateRecord applies fn to the current record and writes it back if the record has not
// changed meanwhile, retrying otherwise. fn may return errNoChange to skip the write.
func updateRecord[T any](ctx context.Context, q QuickStore, key Key, fn func(*T) error) (*T, error) {
	for range casAttempts {
		v, gen, err := getRecord[T](ctx, q, key)
		if err != nil {
			return nil, err
		}
		if err := fn(v); errors.Is(err, errNoChange) {
			return v, nil
		} else if err != nil {
			return nil, err
		}
		err = putRecord(ctx, q, key, v, PutOptions{Mode: ReplaceOnly, Generation: gen})
		if errors.Is(err, ErrGeneration) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return v, nil
	}
	return nil, fmt.Errorf("updating %s: too much contention", key)
}

// getUser reads a user; one being deleted counts as gone.
func (db *Database) getUser(ctx context.Context, name string) (*UserRecord, error) {
	u, _, err := db.getUserRecord(ctx, name)
	if err == nil && u.Deleting {
		return nil, ErrNotFound
	}
	return u, err
}

// updateConvo changes a conversation's record (getConvo is in convcache.go).
func (db *Database) updateConvo(ctx context.Context, cid string, fn func(*ConvoRecord) error) (*ConvoRecord, error) {
	wrote := false // whether the last try went on to write
	c, err := updateRecord(ctx, db.quick, convoKey(cid), func(c *ConvoRecord) error {
		ferr := fn(c)
		wrote = ferr == nil
		return ferr
	})
	if wrote {
		db.convoChanged(cid) // even after an error: the write may have happened
	}
	return c, err
}

// tokenHash is how a session token is stored: only its SHA-256.
func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// newSession stores a resume token for the user and returns it.
func (db *Database) newSession(ctx context.Context, u *UserRecord) (token, hash string, err error) {
	token = randomToken()
	hash = tokenHash(token)
	rec := SessionRecord{Username: u.Username, Epoch: u.SessionEpoch, UserID: u.UserID,
		Expires: formatTime(time.Now().Add(db.cfg.SessionTTL))}
	if err := putRecord(ctx, db.quick, sessionKey(hash), &rec, PutOptions{Mode: CreateOnly, TTL: db.cfg.SessionTTL}); err != nil {
		return "", "", fmt.Errorf("storing session: %w", err)
	}
	// The user keeps at most -max-sessions-per-user tokens: the oldest go.
	var evicted []string
	_, err = db.updateUser(ctx, u.Username, func(u *UserRecord) error {
		u.Tokens = append(u.Tokens, hash)
		evicted = nil
		if n := db.cfg.MaxSessionsPerUser; n > 0 && len(u.Tokens) > n {
			evicted = slices.Clone(u.Tokens[:len(u.Tokens)-n])
			u.Tokens = slices.Clone(u.Tokens[len(u.Tokens)-n:])
		}
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("listing session: %w", err)
	}
	if err := db.revokeTokens(ctx, u.Username, evicted, "too many logins: this one was the oldest"); err != nil {
		return "", "", err
	}
	return token, hash, nil
}

// revokeTokens deletes resume tokens of user and closes the sessions that use them. The
// revocation is committed to PostgreSQL first, so that no crash of the quick store undoes it
// (revocations.go).
func (db *Database) revokeTokens(ctx context.Context, user string, hashes []string, reason string) error {
	if err := db.recordRevokedTokens(ctx, hashes); err != nil {
		return err
	}
	for _, h := range hashes {
		if _, err := db.quick.Delete(ctx, sessionKey(h), 0); err != nil && !isNotFound(err) {
			return fmt.Errorf("revoking session: %w", err)
		}
		db.publishRevoke(user, h, reason)
	}
	return nil
}

// resumeSession finds the user of a live, unrevoked resume token.
func (db *Database) resumeSession(ctx context.Context, username, token string) (*UserRecord, string, error) {
	hash := tokenHash(token)
	rec, _, err := getRecord[SessionRecord](ctx, db.quick, sessionKey(hash))
	if err != nil {
		return nil, "", err
	}
	exp, err := parseTime(rec.Expires)
	if err != nil || time.Now().After(exp) || !strings.EqualFold(rec.Username, username) {
		return nil, "", ErrNotFound
	}
	u, err := db.getUser(ctx, rec.Username)
	if err != nil {
		return nil, "", err
	}
	if u.SessionEpoch != rec.Epoch || u.UserID != rec.UserID {
		return nil, "", ErrNotFound // revoked by a password change
	}
	if revoked, err := db.revoked(ctx, u, hash); err != nil || revoked {
		return nil, "", cmp.Or(err, ErrNotFound)
	}
	return u, hash, nil
}
