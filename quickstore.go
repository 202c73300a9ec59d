package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The quick store is a small record interface with Aerospike's semantics: a record lives under
// namespace, set and key, holds named bins, and carries a generation that every write bumps, so
// that read-modify-write can be a compare-and-set. Two backends implement it: PostgreSQL (the
// default, quickstore_postgres.go) and Aerospike (quickstore_aerospike.go).
//
// Bin values are restricted to what both backends store without loss: string, int64 (int is
// accepted and read back as int64), []byte, []any and map[string]any of those. A nil bin value in
// a merging write removes that bin, as in Aerospike.

// Key names one record.
type Key struct {
	Namespace string
	Set       string
	Key       string
}

func (k Key) String() string { return k.Namespace + "/" + k.Set + "/" + k.Key }

// Bins are a record's named values.
type Bins map[string]any

// Record is what Get returns.
type Record struct {
	Bins       Bins
	Generation uint32
	// Sizes are the entry counts GetBins was asked for, by bin.
	Sizes map[string]int64
}

// PutMode says what a write does with an existing record (Aerospike's RecordExistsAction).
type PutMode int

const (
	// Upsert creates the record or merges the bins into the existing one.
	Upsert PutMode = iota
	// CreateOnly creates the record; an existing one fails with ErrExists.
	CreateOnly
	// UpdateOnly merges the bins into an existing record; a missing one fails with ErrNotFound.
	UpdateOnly
	// Replace creates the record or replaces all its bins.
	Replace
	// ReplaceOnly replaces all bins of an existing record; a missing one fails with ErrNotFound.
	ReplaceOnly
)

// PutOptions qualify a write.
type PutOptions struct {
	Mode PutMode
	// Generation, when not zero, is the generation the record must have for the write to
	// happen; otherwise it fails with ErrGeneration (also when the record is missing).
	Generation uint32
	// TTL, when positive, is how long the record lives after this write; zero means forever.
	TTL time.Duration
}

// Errors every backend returns (wrapped) so that callers can test them with errors.Is.
var (
	ErrNotFound   = errors.New("record not found")
	ErrExists     = errors.New("record already exists")
	ErrGeneration = errors.New("record generation mismatch")
	ErrBadBin     = errors.New("unsupported bin value")
	// ErrUnavailable means the store could not be reached; the operation may be retried.
	ErrUnavailable = errors.New("quick store unavailable")
)

// QuickStore is the record interface both backends implement.
type QuickStore interface {
	// Get reads a record; a missing or expired one is ErrNotFound.
	Get(ctx context.Context, key Key) (*Record, error)
	// GetBins reads only the named bins of a record (those it has), and the number of entries of
	// each map bin in sizeOf (Record.Sizes; 0 for a missing bin), without reading those maps; a
	// missing or expired record is ErrNotFound.
	GetBins(ctx context.Context, key Key, names []string, sizeOf ...string) (*Record, error)
	// GetMany reads several records at once; a missing or expired one is nil in the result.
	GetMany(ctx context.Context, keys []Key) ([]*Record, error)
	// Put writes bins as opts say and returns the record's new generation.
	Put(ctx context.Context, key Key, bins Bins, opts PutOptions) (uint32, error)
	// Delete removes a record and reports whether it existed. With generation not zero the
	// record is deleted only if it has that generation (ErrGeneration otherwise).
	Delete(ctx context.Context, key Key, generation uint32) (bool, error)
	// ModifyMaps changes entries of an existing record's map bins, in order, in one atomic
	// step that reads nothing first and checks no generation, so concurrent changes to other
	// entries are never lost and never retried against. A missing map bin is an empty map
	// (removing from it creates nothing). A missing record is ErrNotFound. Sending it twice
	// changes nothing more than once, so it may be retried.
	ModifyMaps(ctx context.Context, key Key, ops []MapOp) (uint32, error)
	// ModifyMapsMany applies the same operations to several records, each as ModifyMaps does
	// (one atomic step per record, not one for all); errs[i] is keys[i]'s outcome (ErrNotFound
	// for a missing record), err a failure of the whole call.
	ModifyMapsMany(ctx context.Context, keys []Key, ops []MapOp) (errs []error, err error)
	// Close releases the backend's connections.
	Close()
}

// MapOp changes one entry of a map bin: Value nil removes Key, anything else puts it.
type MapOp struct {
	Bin   string
	Key   string
	Value any
}

// checkMapOps validates map operations before they reach a backend. Keys may not start with
// "$", which the PostgreSQL backend's JSON tags reserve.
func checkMapOps(ops []MapOp) error {
	if len(ops) == 0 {
		return fmt.Errorf("%w: no map operation", ErrBadBin)
	}
	for _, o := range ops {
		if err := checkBins(Bins{o.Bin: o.Value}); err != nil {
			return err
		}
		if o.Key == "" || strings.HasPrefix(o.Key, "$") || strings.ContainsRune(o.Key, 0) {
			return fmt.Errorf("%w: map key %q", ErrBadBin, o.Key)
		}
	}
	return nil
}

// openQuickStore opens the backend that the -quickstore flag names.
func openQuickStore(ctx context.Context, spec string, db *Database) (QuickStore, error) {
	switch {
	case spec == "" || spec == "postgres":
		return newPostgresQuickStore(ctx, db.pool)
	case strings.HasPrefix(spec, "aerospike://"):
		q, err := waitForAerospike(ctx, spec, db.cfg.QuickStoreWait)
		if err != nil {
			return nil, err
		}
		return db.metrics.wrapQuickStore(q), nil
	}
	return nil, fmt.Errorf("unknown -quickstore %q: use postgres or aerospike://host:3000", spec)
}

// checkPut validates a write before it reaches a backend, so both backends refuse the same
// input in the same way: a record without bins does not exist in Aerospike, so a write that
// would leave none is refused; create-only with an expected generation is contradictory.
func checkPut(bins Bins, opts PutOptions) error {
	if err := checkBins(bins); err != nil {
		return err
	}
	if opts.Mode == CreateOnly && opts.Generation != 0 {
		return fmt.Errorf("%w: create-only with an expected generation", ErrBadBin)
	}
	if opts.Mode == CreateOnly || opts.Mode == Replace || opts.Mode == ReplaceOnly {
		for _, v := range bins {
			if v != nil {
				return nil
			}
		}
		return fmt.Errorf("%w: a write that leaves no bins", ErrBadBin)
	}
	return nil
}

// checkBins validates bin values: the types both backends store, bin names Aerospike accepts,
// and no NUL in strings (PostgreSQL's jsonb cannot hold one).
// checkGetBins validates what GetBins is asked for: at least one bin, each a valid name, and each
// once (on Aerospike two operations on one bin answer as one list, which would blur a bin's
// value with its size).
func checkGetBins(names, sizeOf []string) error {
	if len(names)+len(sizeOf) == 0 {
		return fmt.Errorf("%w: no bin named", ErrBadBin)
	}
	seen := make(map[string]bool, len(names)+len(sizeOf))
	for _, n := range slices.Concat(names, sizeOf) {
		if err := checkBins(Bins{n: nil}); err != nil {
			return err
		}
		if seen[n] {
			return fmt.Errorf("%w: bin %q asked for twice", ErrBadBin, n)
		}
		seen[n] = true
	}
	return nil
}

func checkBins(bins Bins) error {
	for name, v := range bins {
		if name == "" || len(name) > 15 {
			return fmt.Errorf("%w: bin name %q must be 1 to 15 bytes", ErrBadBin, name)
		}
		if strings.HasPrefix(name, "_") {
			return fmt.Errorf("%w: bin names starting with _ are the store's own", ErrBadBin)
		}
		if err := checkBinValue(v, true); err != nil {
			return fmt.Errorf("bin %q: %w", name, err)
		}
	}
	return nil
}

func checkBinValue(v any, top bool) error {
	switch x := v.(type) {
	case nil:
		if top {
			return nil // removes the bin
		}
		return fmt.Errorf("%w: nil inside a list or map", ErrBadBin)
	case string:
		if strings.ContainsRune(x, 0) {
			return fmt.Errorf("%w: NUL in a string", ErrBadBin)
		}
		return nil
	case int64, int, []byte:
		return nil
	case []any:
		for _, e := range x {
			if err := checkBinValue(e, false); err != nil {
				return err
			}
		}
		return nil
	case map[string]any:
		for _, e := range x {
			if err := checkBinValue(e, false); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%w: %T", ErrBadBin, v)
}
