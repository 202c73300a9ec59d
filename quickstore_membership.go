package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// A user's conversations live beside the user's record data, in three map bins keyed by CID,
// so that joining, leaving and the user's own read state change one entry each with
// QuickStore.ModifyMaps (an Aerospike map put or remove in one Operate, or one UPDATE on
// PostgreSQL): no read, no compare-and-set, nothing to retry when another conversation
// changes the same record at the same moment (DESIGN §4).
//
//	convos  CID → when the user joined (Unix seconds)
//	synced  CID → the M_time the user's client reported having synced to
//	unread  CID → [count, M_time]: an unread count the user set, and when
//
// Only convos says who is a member; an entry of synced or unread without one in convos is
// ignored (leaving removes all three in one step, but a client's UpdateConvoMtime may land
// just after it).
//
// Records written before this layout keep the map in their data bin (UserRecord.LegacyConvos).
// They are read as they are, and moved into the bins by the first write of the record through
// updateUser (a compare-and-set, so no concurrent change is lost); leaving a conversation
// moves them first, so that the entry it removes is not left behind in the data bin.

const (
	convosBin = "convos"
	syncedBin = "synced"
	unreadBin = "unread"
)

// userFromRecord decodes a user record: its data bin and its conversation bins.
func userFromRecord(key Key, rec *Record) (*UserRecord, error) {
	u, err := decodeRecord[UserRecord](key, rec)
	if err != nil {
		return nil, err
	}
	u.Convos = make(map[string]*UserConvo, len(u.LegacyConvos))
	for cid, uc := range u.LegacyConvos {
		if uc == nil {
			uc = &UserConvo{}
		}
		u.Convos[cid] = uc
	}
	joined, _ := rec.Bins[convosBin].(map[string]any)
	synced, _ := rec.Bins[syncedBin].(map[string]any)
	unread, _ := rec.Bins[unreadBin].(map[string]any)
	for cid := range joined {
		uc := u.Convos[cid]
		if uc == nil {
			uc = &UserConvo{}
			u.Convos[cid] = uc
		}
		if s, ok := synced[cid].(string); ok {
			uc.SyncedMtime = s
		}
		if l, ok := unread[cid].([]any); ok && len(l) == 2 {
			uc.Unread, _ = l[0].(int64)
			uc.UnreadAt, _ = l[1].(string)
		}
	}
	return u, nil
}

// convoBins are the conversation bins holding u.Convos whole (for moving a legacy record).
func convoBins(u *UserRecord) Bins {
	joined, synced, unread := map[string]any{}, map[string]any{}, map[string]any{}
	now := time.Now().Unix()
	for cid, uc := range u.Convos {
		joined[cid] = now
		if uc.SyncedMtime != "" {
			synced[cid] = uc.SyncedMtime
		}
		if uc.UnreadAt != "" {
			unread[cid] = []any{uc.Unread, uc.UnreadAt}
		}
	}
	return Bins{convosBin: joined, syncedBin: synced, unreadBin: unread}
}

// addUsersConvo lists a conversation in several users' records at once (one commit on
// PostgreSQL); errs[i] is users[i]'s outcome, ErrNotFound if the user is gone.
func (db *Database) addUsersConvo(ctx context.Context, users []string, cid string) ([]error, error) {
	keys := make([]Key, len(users))
	for i, u := range users {
		keys[i] = userKey(u)
	}
	return db.quick.ModifyMapsMany(ctx, keys, []MapOp{{Bin: convosBin, Key: cid, Value: time.Now().Unix()}})
}

// removeUserConvo takes a conversation, and the user's state in it, out of the user's record.
func (db *Database) removeUserConvo(ctx context.Context, user, cid string) error {
	if err := db.moveLegacyConvos(ctx, user); err != nil {
		return err
	}
	_, err := db.quick.ModifyMaps(ctx, userKey(user), []MapOp{
		{Bin: convosBin, Key: cid}, {Bin: syncedBin, Key: cid}, {Bin: unreadBin, Key: cid}})
	return err
}

// moveLegacyConvos moves a record's conversations out of its data bin, if they are still there.
func (db *Database) moveLegacyConvos(ctx context.Context, user string) error {
	u, _, err := db.getUserRecord(ctx, user)
	if err != nil || u.LegacyConvos == nil {
		return err
	}
	_, err = db.updateUser(ctx, user, func(*UserRecord) error { return nil })
	return err
}

// setSynced records the M_time up to which the user's client has synced a conversation.
func (db *Database) setSynced(ctx context.Context, user, cid, mtime string) error {
	_, err := db.quick.ModifyMaps(ctx, userKey(user), []MapOp{{Bin: syncedBin, Key: cid, Value: mtime}})
	return err
}

// setUnread records an unread count the user set for a conversation, as of its M_time at.
func (db *Database) setUnread(ctx context.Context, user, cid string, n int64, at string) error {
	_, err := db.quick.ModifyMaps(ctx, userKey(user), []MapOp{{Bin: unreadBin, Key: cid, Value: []any{n, at}}})
	return err
}

// getUserData reads a user without its conversations (Convos stays nil), only counting them
// when -max-convos-per-user needs the count: what most commands need, at the cost of one small
// read however many conversations the user is in. One being deleted counts as gone.
func (db *Database) getUserData(ctx context.Context, name string) (*UserRecord, error) {
	key := userKey(name)
	var count []string
	if db.cfg.MaxConvosPerUser > 0 {
		count = []string{convosBin}
	}
	rec, err := db.quick.GetBins(ctx, key, []string{dataBin}, count...)
	if err != nil {
		return nil, err
	}
	u, err := decodeRecord[UserRecord](key, rec)
	if err != nil {
		return nil, err
	}
	if u.Deleting {
		return nil, ErrNotFound
	}
	u.nConvos = int(rec.Sizes[convosBin]) + len(u.LegacyConvos) // both only while moving
	return u, nil
}

// convoCount is how many conversations the user is in, whichever way it was read.
func (u *UserRecord) convoCount() int {
	if u.Convos != nil {
		return len(u.Convos)
	}
	return u.nConvos
}

// getUserRecord reads a user record, one being deleted included, with its generation.
func (db *Database) getUserRecord(ctx context.Context, name string) (*UserRecord, uint32, error) {
	key := userKey(name)
	rec, err := db.quick.Get(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	u, err := userFromRecord(key, rec)
	if err != nil {
		return nil, 0, err
	}
	return u, rec.Generation, nil
}

// updateUser applies fn to the user's record and writes its data bin back if the record has
// not changed meanwhile, retrying otherwise; fn may return errNoChange to skip the write. fn
// must not change u.Convos (addUsersConvo and the functions beside it do). A record still in
// the old layout has its conversations moved into their bins by the same write.
func (db *Database) updateUser(ctx context.Context, name string, fn func(*UserRecord) error) (*UserRecord, error) {
	key := userKey(name)
	for range casAttempts {
		u, gen, err := db.getUserRecord(ctx, name)
		if err != nil {
			return nil, err
		}
		err = fn(u)
		if errors.Is(err, errNoChange) && u.LegacyConvos == nil {
			return u, nil
		}
		if err != nil && !errors.Is(err, errNoChange) {
			return nil, err
		}
		bins := Bins{}
		if u.LegacyConvos != nil {
			bins = convoBins(u)
			u.LegacyConvos = nil
		}
		if bins[dataBin], err = encodeRecord(key, u); err != nil {
			return nil, err
		}
		_, err = db.quick.Put(ctx, key, bins, PutOptions{Mode: UpdateOnly, Generation: gen})
		if errors.Is(err, ErrGeneration) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return u, nil
	}
	return nil, fmt.Errorf("updating %s: too much contention", key)
}
