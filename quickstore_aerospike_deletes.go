package main

import (
	"context"
	"fmt"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"
)

// Deletes that stay deleted on Aerospike Community Edition. CE has no durable deletes: a delete
// drops the record from the index only, and a cold start (a restart that rebuilds the index
// from the storage device) brings back every deleted record whose data is still on the device.
// A revoked resume token, a deleted user or a released e-mail lookup would come back. So this
// backend never deletes: Delete overwrites the record with a tombstone, a record whose only bin
// is tombstoneBin. A cold start keeps the newest version of a record, which is the tombstone,
// and every read treats a tombstone as missing.
//
// A tombstone keeps the TTL the record had left: a session's tombstone expires when the session
// would have, and then both versions are expired and a cold start skips them. A record written
// without a TTL (users, lookups, conversations) leaves a tombstone that never expires: a few
// bytes per deleted record, the price of it staying deleted. A create-only write over a
// tombstone replaces it (compare-and-set on the tombstone's generation), so the key is free
// again, but its generation goes on from the tombstone's rather than starting at 1.

// tombstoneBin marks a deleted record. Callers cannot write it: checkAerospikeBins refuses it.
const tombstoneBin = "_deleted"

func isTombstone(bins as.BinMap) bool {
	_, ok := bins[tombstoneBin]
	return ok
}

// liveRecord reads key's record; a tombstone reads as missing (nil, nil), like a missing one.
func (s *aerospikeQuickStore) liveRecord(deadline time.Time, k *as.Key) (*as.Record, as.Error) {
	policy := aerospikeBasePolicy(deadline, aerospikeAttempts)
	rec, aerr := retryTransient(deadline, func() (*as.Record, as.Error) { return s.get(&policy, k) })
	if aerospikeResultCode(aerr) == types.KEY_NOT_FOUND_ERROR {
		return nil, nil
	}
	if aerr != nil {
		return nil, aerr
	}
	if isTombstone(rec.Bins) {
		return nil, nil
	}
	return rec, nil
}

// createOverTombstone is a create-only write that found the key taken: if a tombstone took it,
// the write replaces the tombstone; a live record means ErrExists.
func (s *aerospikeQuickStore) createOverTombstone(deadline time.Time, k *as.Key, bins Bins, opts PutOptions) (*as.Record, error) {
	ops := aerospikePutOps(bins, true) // a replace: the tombstone's mark goes with it
	for time.Now().Before(deadline) {
		policy := aerospikeBasePolicy(deadline, aerospikeAttempts)
		rec, aerr := s.get(&policy, k)
		switch {
		case aerospikeResultCode(aerr) == types.KEY_NOT_FOUND_ERROR:
			return nil, errRetryCreate // deleted meanwhile: create it afresh
		case aerr != nil:
			return nil, s.translate(aerr, false, false)
		case !isTombstone(rec.Bins):
			return nil, ErrExists
		}
		replace := opts
		replace.Mode = Replace
		out, changed, err := s.casWrite(deadline, k, ops, replace, rec.Generation)
		if changed {
			continue // someone else wrote it meanwhile: look again
		}
		return out, err
	}
	return nil, fmt.Errorf("%w: the deadline passed while replacing a tombstone", ErrUnavailable)
}

// casWrite writes ops expecting generation gen, resending only what a read proves did not
// happen; changed reports that the record's generation was no longer gen.
func (s *aerospikeQuickStore) casWrite(deadline time.Time, k *as.Key, ops []*as.Operation, opts PutOptions, gen uint32) (rec *as.Record, changed bool, err error) {
	opts.Generation = gen
	wp, err := aerospikeWritePolicy(deadline, opts)
	if err != nil {
		return nil, false, err
	}
	out, aerr := s.operateRaw(wp, k, ops...)
	for s.shouldResend(aerr, deadline, k, gen, false) {
		wp.BasePolicy = aerospikeBasePolicy(deadline, 0)
		out, aerr = s.operateRaw(wp, k, ops...)
	}
	if aerospikeResultCode(aerr) == types.GENERATION_ERROR {
		return nil, true, nil
	}
	if aerr != nil {
		return nil, false, s.translate(aerr, true, true)
	}
	return out, false, nil
}

// errRetryCreate: the tombstone in the way went; the create-only write should try again.
var errRetryCreate = fmt.Errorf("retry create")

// mustExistWrite is an update-only or replace-only write without an expected generation: the
// record must exist and not be a tombstone, which only a read can tell, so the write expects the
// generation that read saw.
func (s *aerospikeQuickStore) mustExistWrite(deadline time.Time, k *as.Key, ops []*as.Operation, opts PutOptions) (*as.Record, error) {
	for time.Now().Before(deadline) {
		rec, aerr := s.liveRecord(deadline, k)
		if aerr != nil {
			return nil, s.translate(aerr, false, false)
		}
		if rec == nil {
			return nil, ErrNotFound
		}
		out, changed, err := s.casWrite(deadline, k, ops, opts, rec.Generation)
		if changed {
			continue
		}
		return out, err
	}
	return nil, fmt.Errorf("%w: the deadline passed while writing", ErrUnavailable)
}

// ModifyMaps is one Operate of map puts and removes on an existing record. It cannot leave a
// tombstone alone without reading it first, so it reads the tombstone bin in the same
// command: a tombstone changed this way is still a tombstone (reads ignore its other bins, a
// create replaces all of them), and the caller is told the record is missing. The record's TTL
// stays as it was. Map puts and removes are idempotent, so network errors are retried.
func (s *aerospikeQuickStore) ModifyMaps(ctx context.Context, key Key, ops []MapOp) (uint32, error) {
	if err := checkMapOps(ops); err != nil {
		return 0, fmt.Errorf("modify %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("modify %s: %w", key, err)
	}
	k, err := s.key(key)
	if err != nil {
		return 0, fmt.Errorf("modify %s: %w", key, err)
	}
	deadline := aerospikeDeadline(ctx)
	policy, err := aerospikeWritePolicy(deadline, PutOptions{Mode: UpdateOnly})
	if err != nil {
		return 0, fmt.Errorf("modify %s: %w", key, err)
	}
	policy.Expiration = as.TTLDontUpdate
	aops := make([]*as.Operation, 0, len(ops)+1)
	for _, o := range ops {
		if o.Value == nil {
			aops = append(aops, as.MapRemoveByKeyOp(o.Bin, o.Key, as.MapReturnType.NONE))
		} else {
			aops = append(aops, as.MapPutOp(as.DefaultMapPolicy(), o.Bin, o.Key, o.Value))
		}
	}
	aops = append(aops, as.GetBinOp(tombstoneBin))
	rec, aerr := retryTransient(deadline, func() (*as.Record, as.Error) { return s.operateRaw(policy, k, aops...) })
	if aerr != nil {
		return 0, fmt.Errorf("modify %s: %w", key, s.translate(aerr, true, false))
	}
	if isTombstone(rec.Bins) {
		return 0, fmt.Errorf("modify %s: %w", key, ErrNotFound)
	}
	return rec.Generation, nil
}

// ModifyMapsMany runs ModifyMaps on the records, a few at a time.
func (s *aerospikeQuickStore) ModifyMapsMany(ctx context.Context, keys []Key, ops []MapOp) ([]error, error) {
	errs := make([]error, len(keys))
	err := forEachConcurrently(ctx, len(keys), func(i int) error {
		_, errs[i] = s.ModifyMaps(ctx, keys[i], ops)
		return nil
	})
	return errs, err
}

// Delete replaces the record with a tombstone that expires when the record would have. With an
// expected generation, only that version is deleted.
func (s *aerospikeQuickStore) Delete(ctx context.Context, key Key, generation uint32) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	k, err := s.key(key)
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	deadline := aerospikeDeadline(ctx)
	for time.Now().Before(deadline) {
		rec, aerr := s.liveRecord(deadline, k)
		switch {
		case aerr != nil:
			return false, fmt.Errorf("delete %s: %w", key, s.translate(aerr, false, false))
		case rec == nil && generation != 0:
			return false, fmt.Errorf("delete %s: %w", key, ErrGeneration)
		case rec == nil:
			return false, nil
		case generation != 0 && rec.Generation != generation:
			return false, fmt.Errorf("delete %s: %w", key, ErrGeneration)
		}
		err := s.writeTombstone(deadline, k, rec)
		if err == errChanged && generation == 0 {
			continue // changed meanwhile: delete whatever is there now
		}
		if err == errChanged {
			return false, fmt.Errorf("delete %s: %w", key, ErrGeneration)
		}
		if err != nil {
			return false, fmt.Errorf("delete %s: %w", key, err)
		}
		return true, nil
	}
	return false, fmt.Errorf("delete %s: %w: the deadline passed", key, ErrUnavailable)
}

// errChanged: the record changed since it was read.
var errChanged = fmt.Errorf("changed meanwhile")

// writeTombstone replaces rec's version of the record with a tombstone; errChanged means the
// record changed since rec was read.
func (s *aerospikeQuickStore) writeTombstone(deadline time.Time, k *as.Key, rec *as.Record) error {
	wp := as.NewWritePolicy(rec.Generation, tombstoneExpiration(rec.Expiration))
	wp.BasePolicy = aerospikeBasePolicy(deadline, 0) // compare-and-set: see the type's comment
	wp.CommitLevel = as.COMMIT_ALL
	wp.SendKey = true
	wp.RecordExistsAction = as.REPLACE_ONLY
	wp.GenerationPolicy = as.EXPECT_GEN_EQUAL
	ops := []*as.Operation{as.PutOp(as.NewBin(tombstoneBin, 1))}
	_, aerr := s.operateRaw(wp, k, ops...)
	for s.shouldResend(aerr, deadline, k, rec.Generation, false) {
		wp.BasePolicy = aerospikeBasePolicy(deadline, 0)
		_, aerr = s.operateRaw(wp, k, ops...)
	}
	if aerr == nil {
		return nil
	}
	switch aerospikeResultCode(aerr) {
	case types.GENERATION_ERROR, types.KEY_NOT_FOUND_ERROR:
		return errChanged
	}
	return s.translate(aerr, true, true)
}

// tombstoneExpiration is the TTL a tombstone gets: what the record had left, or never.
func tombstoneExpiration(left uint32) uint32 {
	if left == 0 || left == as.TTLDontExpire {
		return as.TTLDontExpire
	}
	return left
}
