package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// postgresQuickStore keeps quick-store records in one table, so that a single machine needs no
// Aerospike. Every operation is one statement: merging bins is jsonb's ||, the generation check
// is part of the WHERE clause, and an expired record is treated as missing (and overwritten).
type postgresQuickStore struct {
	pool *pgxpool.Pool
}

const quickstoreSchema = `
CREATE TABLE IF NOT EXISTS quickstore (
	ns         text   NOT NULL,
	set_name   text   NOT NULL,
	key        text   NOT NULL,
	bins       jsonb  NOT NULL,
	generation bigint NOT NULL,
	expires_at timestamptz,
	PRIMARY KEY (ns, set_name, key)
);
CREATE INDEX IF NOT EXISTS quickstore_expires ON quickstore (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS quickstore_entries (
	ns       text  NOT NULL,
	set_name text  NOT NULL,
	key      text  NOT NULL,
	bin      text  NOT NULL,
	ekey     text  NOT NULL,
	value    jsonb NOT NULL,
	PRIMARY KEY (ns, set_name, key, bin, ekey)
);`

func newPostgresQuickStore(ctx context.Context, pool *pgxpool.Pool) (QuickStore, error) {
	// Under the schema lock (schema.go): CREATE TABLE IF NOT EXISTS is not safe against another
	// instance creating the same table at the same moment.
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, quickstoreSchema)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating quickstore table: %w", err)
	}
	return &postgresQuickStore{pool: pool}, nil
}

// Sweep deletes expired records; Aerospike's nsup does this for the other backend.
func (s *postgresQuickStore) Sweep(ctx context.Context) error {
	// Records first, then their entries, in the order every writer locks them.
	if _, err := s.pool.Exec(ctx, `WITH gone AS (DELETE FROM quickstore WHERE expires_at <= now()
			RETURNING ns, set_name, key)
		DELETE FROM quickstore_entries e USING gone
		WHERE e.ns = gone.ns AND e.set_name = gone.set_name AND e.key = gone.key`); err != nil {
		return fmt.Errorf("sweeping expired records: %w", err)
	}
	return nil
}

// Close does nothing: the pool belongs to the Database.
func (s *postgresQuickStore) Close() {}

const qsLive = `(quickstore.expires_at IS NULL OR quickstore.expires_at > now())`

func (s *postgresQuickStore) Get(ctx context.Context, key Key) (*Record, error) {
	recs, err := s.read(ctx, []Key{key}, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if recs[0] == nil {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return recs[0], nil
}

// GetBins reads the record and keeps the named bins, filling the map bins among them from
// their entries, and counts the entries of the maps in sizeOf.
func (s *postgresQuickStore) GetBins(ctx context.Context, key Key, names []string, sizeOf ...string) (*Record, error) {
	if err := checkGetBins(names, sizeOf); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	recs, err := s.read(ctx, []Key{key}, nonNil(names), nonNil(sizeOf))
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if recs[0] == nil {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return recs[0], nil
}

// GetMany is one round trip for every key.
func (s *postgresQuickStore) GetMany(ctx context.Context, keys []Key) ([]*Record, error) {
	if len(keys) == 0 {
		return []*Record{}, nil
	}
	recs, err := s.read(ctx, keys, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("get %d records: %w", len(keys), err)
	}
	return recs, nil
}

func (s *postgresQuickStore) Put(ctx context.Context, key Key, bins Bins, opts PutOptions) (uint32, error) {
	q, args, err := putStatement(key, bins, opts)
	if err != nil {
		return 0, err
	}
	var gen int64
	err = s.pool.QueryRow(ctx, q, args...).Scan(&gen)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("put %s: %w", key, putFailure(opts))
	}
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	return uint32(gen), nil
}

// putStatement is the one statement of a Put, answering the new generation (no row: the write
// did not happen, putFailure says why).
func putStatement(key Key, bins Bins, opts PutOptions) (string, []any, error) {
	if err := checkPut(bins, opts); err != nil {
		return "", nil, fmt.Errorf("put %s: %w", key, err)
	}
	set, removed, err := encodeBins(bins)
	if err != nil {
		return "", nil, fmt.Errorf("put %s: %w", key, err)
	}
	var expires *time.Time
	if opts.TTL > 0 {
		t := time.Now().Add(opts.TTL)
		expires = &t
	}
	merge := opts.Mode == Upsert || opts.Mode == UpdateOnly
	newBins := `$4::jsonb`
	if merge {
		newBins = `(quickstore.bins || $4::jsonb) - $6::text[]`
	}
	args := []any{key.Namespace, key.Set, key.Key, set, expires}
	if merge {
		args = append(args, removed)
	}
	var q string
	switch {
	case opts.Generation != 0 || opts.Mode == UpdateOnly || opts.Mode == ReplaceOnly:
		// The record must exist (and, with a generation, have that generation).
		args = append(args, int64(opts.Generation))
		q = `UPDATE quickstore SET bins = ` + newBins + `, generation = generation + 1, expires_at = $5
			WHERE ns = $1 AND set_name = $2 AND key = $3 AND ` + qsLive + `
			AND ($` + fmt.Sprint(len(args)) + `::bigint IN (0, generation)) RETURNING generation`
	case opts.Mode == CreateOnly:
		// An expired record counts as missing, so it may be overwritten.
		q = `INSERT INTO quickstore AS quickstore VALUES ($1, $2, $3, $4, 1, $5)
			ON CONFLICT (ns, set_name, key) DO UPDATE SET bins = EXCLUDED.bins, generation = 1,
			expires_at = EXCLUDED.expires_at WHERE NOT ` + qsLive + ` RETURNING generation`
	default: // Upsert, Replace
		q = `INSERT INTO quickstore AS quickstore VALUES ($1, $2, $3, $4, 1, $5)
			ON CONFLICT (ns, set_name, key) DO UPDATE SET
			bins = CASE WHEN ` + qsLive + ` THEN ` + newBins + ` ELSE EXCLUDED.bins END,
			generation = CASE WHEN ` + qsLive + ` THEN quickstore.generation + 1 ELSE 1 END,
			expires_at = EXCLUDED.expires_at RETURNING generation`
	}
	q, args = withEntriesRemoved(bins, opts, q, args)
	return q, args, nil
}

// putFailure is the error of a write whose statement matched no row.
func putFailure(opts PutOptions) error {
	switch {
	case opts.Generation != 0:
		return ErrGeneration
	case opts.Mode == CreateOnly:
		return ErrExists
	}
	return ErrNotFound
}

func (s *postgresQuickStore) Delete(ctx context.Context, key Key, generation uint32) (bool, error) {
	var live bool
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM quickstore WHERE ns = $1 AND set_name = $2 AND key = $3
		AND ($4 = 0 OR (generation = $4 AND `+qsLive+`)) RETURNING `+qsLive,
		key.Namespace, key.Set, key.Key, int64(generation)).QueryRow(func(row pgx.Row) error { return row.Scan(&live) })
	b.Queue(`DELETE FROM quickstore_entries e WHERE ns = $1 AND set_name = $2 AND key = $3
		AND NOT EXISTS (SELECT 1 FROM quickstore q WHERE q.ns = $1 AND q.set_name = $2 AND q.key = $3)`,
		key.Namespace, key.Set, key.Key)
	err := s.pool.SendBatch(ctx, b).Close() // one implicit transaction
	if errors.Is(err, pgx.ErrNoRows) {
		if generation != 0 {
			return false, fmt.Errorf("delete %s: %w", key, ErrGeneration)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("delete %s: %w", key, err)
	}
	return live, nil
}

// Bins are stored as JSON. JSON has no byte strings, so []byte is tagged {"$b": base64}, and a
// map that itself looks like a tag is wrapped as {"$m": map}; numbers are integers.

func encodeBins(bins Bins) (set []byte, removed []string, err error) {
	out := make(map[string]any, len(bins))
	removed = []string{}
	for name, v := range bins {
		if v == nil {
			removed = append(removed, name)
			continue
		}
		out[name] = tagValue(v)
	}
	set, err = json.Marshal(out)
	return set, removed, err
}

func tagValue(v any) any {
	switch x := v.(type) {
	case []byte:
		return map[string]any{"$b": base64.StdEncoding.EncodeToString(x)}
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = tagValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = tagValue(e)
		}
		if isTag(x) {
			return map[string]any{"$m": out}
		}
		return out
	}
	return v
}

func isTag(m map[string]any) bool {
	if len(m) != 1 {
		return false
	}
	_, b := m["$b"]
	_, mm := m["$m"]
	_, e := m[entriesMarker]
	return b || mm || e
}

func decodeBins(raw []byte) (Bins, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("decoding bins: %w", err)
	}
	bins := make(Bins, len(m))
	for k, v := range m {
		x, err := untagValue(v)
		if err != nil {
			return nil, fmt.Errorf("decoding bin %q: %w", k, err)
		}
		bins[k] = x
	}
	return bins, nil
}

func untagValue(v any) (any, error) {
	switch x := v.(type) {
	case json.Number:
		return x.Int64()
	case []any:
		for i, e := range x {
			d, err := untagValue(e)
			if err != nil {
				return nil, err
			}
			x[i] = d
		}
		return x, nil
	case map[string]any:
		if s, ok := x["$b"].(string); ok && len(x) == 1 {
			return base64.StdEncoding.DecodeString(s)
		}
		if inner, ok := x["$m"].(map[string]any); ok && len(x) == 1 {
			x = inner
		}
		for k, e := range x {
			d, err := untagValue(e)
			if err != nil {
				return nil, err
			}
			x[k] = d
		}
		return x, nil
	}
	return v, nil
}
