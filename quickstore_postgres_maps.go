package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
)

// Map bins changed entry by entry (ModifyMaps) live beside their record on this backend, one
// row per entry in quickstore_entries, so that changing one entry writes one small row, not the
// whole record again (a user in a thousand conversations has a map of a thousand entries, and
// rewriting a TOASTed jsonb of that size for each join and leave is what made CreateConversation
// slow). The record's own bins hold a marker, {"$e": 1}, where such a map is, so that an empty
// map still exists; Get assembles the map from the entries.
//
// A bin written whole by Put is an ordinary bin again (its entries go in the same transaction);
// the first ModifyMaps on an ordinary map bin moves its entries out first. Deleting a record,
// replacing it, or it expiring takes its entries with it.

// entriesMarker is the key of the marker a map bin kept as entries holds in the record's bins.
const entriesMarker = "$e"

// read reads records (nil where missing), in one round trip of simple statements (cheap to
// plan, which matters more than their number): the records' bins, the entries of their map
// bins (grouped into one JSON object per bin by PostgreSQL), and the entry counts asked for.
// With names (not nil) each record keeps only those bins, and only their entries are read.
func (s *postgresQuickStore) read(ctx context.Context, keys []Key, names, sizeOf []string) ([]*Record, error) {
	ns, sets, ks := make([]string, len(keys)), make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		ns[i], sets[i], ks[i] = k.Namespace, k.Set, k.Key
	}
	out := make([]*Record, len(keys))
	raws := make([][]byte, len(keys))
	maps := map[int]map[string][]byte{} // record → bin → its entries as a JSON object
	b := &pgx.Batch{}
	readRecord := func(rows pgx.Rows) error {
		for rows.Next() {
			var i, gen int64
			var raw []byte
			if err := rows.Scan(&i, &raw, &gen); err != nil {
				return err
			}
			raws[i-1] = raw
			out[i-1] = &Record{Generation: uint32(gen)}
		}
		return rows.Err()
	}
	readEntries := func(rows pgx.Rows) error {
		for rows.Next() {
			var i int64
			var bin string
			var obj []byte
			if err := rows.Scan(&i, &bin, &obj); err != nil {
				return err
			}
			if maps[int(i-1)] == nil {
				maps[int(i-1)] = map[string][]byte{}
			}
			maps[int(i-1)][bin] = obj
		}
		return rows.Err()
	}
	if len(keys) == 1 {
		// The common case, in statements whose plans are cheap to make for every call.
		b.Queue(`SELECT 1, bins::text, generation FROM quickstore WHERE ns = $1 AND set_name = $2 AND key = $3
			AND `+qsLive, ns[0], sets[0], ks[0]).Query(readRecord)
		if names == nil {
			b.Queue(`SELECT 1, bin, jsonb_object_agg(ekey, value)::text FROM quickstore_entries
				WHERE ns = $1 AND set_name = $2 AND key = $3 GROUP BY bin`, ns[0], sets[0], ks[0]).Query(readEntries)
		}
		// With names, the entries are read only if one of the named bins turns out to be a map
		// kept as entries (below): most reads name bins that are not.
	} else {
		b.Queue(`SELECT k.i, q.bins::text, q.generation
			FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(ns, set_name, key, i)
			JOIN quickstore q ON q.ns = k.ns AND q.set_name = k.set_name AND q.key = k.key
			WHERE q.expires_at IS NULL OR q.expires_at > now()`, ns, sets, ks).Query(readRecord)
		b.Queue(`SELECT k.i, e.bin, jsonb_object_agg(e.ekey, e.value)::text
			FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(ns, set_name, key, i)
			JOIN quickstore_entries e ON e.ns = k.ns AND e.set_name = k.set_name AND e.key = k.key
			WHERE $4::text[] IS NULL OR e.bin = ANY($4)
			GROUP BY k.i, e.bin`, ns, sets, ks, names).Query(readEntries)
	}
	counts := map[string]int64{}
	if len(sizeOf) > 0 {
		b.Queue(`SELECT bin, count(*) FROM quickstore_entries WHERE ns = $1 AND set_name = $2 AND key = $3
			AND bin = ANY($4) GROUP BY bin`, ns[0], sets[0], ks[0], sizeOf).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var bin string
				var n int64
				if err := rows.Scan(&bin, &n); err != nil {
					return err
				}
				counts[bin] = n
			}
			return rows.Err()
		})
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	if len(keys) == 1 && names != nil && out[0] != nil {
		if err := s.readNamedEntries(ctx, keys[0], raws[0], names, maps); err != nil {
			return nil, err
		}
	}
	for i, rec := range out {
		if rec == nil {
			continue
		}
		all, err := decodeBins(raws[i])
		if err != nil {
			return nil, err
		}
		if rec.Bins, err = assembleBins(all, maps[i], names); err != nil {
			return nil, err
		}
		if sizeOf != nil {
			rec.Sizes = mapSizes(all, counts, sizeOf)
		}
	}
	return out, nil
}

// readNamedEntries reads the entries of the named bins of one record that are maps kept as
// entries, if there are any.
func (s *postgresQuickStore) readNamedEntries(ctx context.Context, key Key, raw []byte, names []string, maps map[int]map[string][]byte) error {
	all, err := decodeBins(raw)
	if err != nil {
		return err
	}
	var want []string
	for _, n := range names {
		if isEntriesMarker(all[n]) {
			want = append(want, n)
		}
	}
	if len(want) == 0 {
		return nil
	}
	rows, err := s.pool.Query(ctx, `SELECT bin, jsonb_object_agg(ekey, value)::text FROM quickstore_entries
		WHERE ns = $1 AND set_name = $2 AND key = $3 AND bin = ANY($4) GROUP BY bin`,
		key.Namespace, key.Set, key.Key, want)
	if err != nil {
		return err
	}
	defer rows.Close()
	maps[0] = map[string][]byte{}
	for rows.Next() {
		var bin string
		var obj []byte
		if err := rows.Scan(&bin, &obj); err != nil {
			return err
		}
		maps[0][bin] = obj
	}
	return rows.Err()
}

// assembleBins keeps the named bins (all if names is nil) and puts the entries of the map bins
// kept as entries in place of their markers; a marker without entries is an empty map.
func assembleBins(all Bins, entries map[string][]byte, names []string) (Bins, error) {
	bins := all
	if names != nil {
		bins = make(Bins, len(names))
		for _, n := range names {
			if v, ok := all[n]; ok {
				bins[n] = v
			}
		}
	}
	for name, v := range bins {
		if !isEntriesMarker(v) {
			continue
		}
		m := map[string]any{}
		if obj, ok := entries[name]; ok {
			decoded, err := decodeBins(obj)
			if err != nil {
				return nil, fmt.Errorf("decoding the entries of %s: %w", name, err)
			}
			m = decoded
		}
		bins[name] = m
	}
	return bins, nil
}

// mapSizes counts the entries of the maps in sizeOf: kept as entries, or ordinary map bins.
func mapSizes(all Bins, counts map[string]int64, sizeOf []string) map[string]int64 {
	sizes := make(map[string]int64, len(sizeOf))
	for _, n := range sizeOf {
		switch v := all[n].(type) {
		case map[string]any:
			if isEntriesMarker(v) {
				sizes[n] = counts[n]
			} else {
				sizes[n] = int64(len(v))
			}
		default:
			sizes[n] = 0
		}
	}
	return sizes
}

// isEntriesMarker reports whether a decoded bin value is the marker of a map kept as entries
// (untagValue leaves the marker as it is: it is not a tag it knows).
func isEntriesMarker(v any) bool {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false
	}
	_, ok = m[entriesMarker]
	return ok
}

// withEntriesRemoved wraps a Put's statement q so that the same statement removes the entries
// its write replaces: those of the bins it writes, all of them for a replace or over an
// expired record. Only if the write happens (a failed compare-and-set removes nothing), and
// after the record's row is locked by the write, the order ModifyMaps locks in too.
func withEntriesRemoved(bins Bins, opts PutOptions, q string, args []any) (string, []any) {
	written := make([]string, 0, len(bins))
	for name := range bins {
		written = append(written, name)
	}
	replace := opts.Mode == Replace || opts.Mode == ReplaceOnly || opts.Mode == CreateOnly
	n := len(args)
	args = append(args, replace, written)
	return fmt.Sprintf(`WITH old AS (SELECT (expires_at IS NULL OR expires_at > now()) AS live FROM quickstore old
			WHERE old.ns = $1 AND old.set_name = $2 AND old.key = $3),
		w AS (%s),
		d AS (DELETE FROM quickstore_entries WHERE ns = $1 AND set_name = $2 AND key = $3 AND EXISTS (SELECT 1 FROM w)
			AND ($%d OR bin = ANY($%d) OR NOT EXISTS (SELECT 1 FROM old WHERE live)))
		SELECT generation FROM w`, q, n+1, n+2), args
}

// ModifyMaps is one implicit transaction of a few statements, sent together: lock the record,
// move any ordinary map bin it touches into entries, mark the bins, apply the removals and
// puts. Several operations on one entry collapse into the last.
func (s *postgresQuickStore) ModifyMaps(ctx context.Context, key Key, ops []MapOp) (uint32, error) {
	var gen uint32
	errs, err := s.modifyMaps(ctx, []Key{key}, ops, []*uint32{&gen})
	if err == nil {
		err = errs[0]
	}
	return gen, err
}

// ModifyMapsMany is ModifyMaps for several records in one implicit transaction: one round trip
// and one commit (one disk sync) for all. The records are locked in key order, so that two such
// calls cannot wait on each other in opposite orders.
func (s *postgresQuickStore) ModifyMapsMany(ctx context.Context, keys []Key, ops []MapOp) ([]error, error) {
	gens := make([]*uint32, len(keys))
	for i := range gens {
		gens[i] = new(uint32)
	}
	return s.modifyMaps(ctx, keys, ops, gens)
}

func (s *postgresQuickStore) modifyMaps(ctx context.Context, keys []Key, ops []MapOp, gens []*uint32) ([]error, error) {
	if err := checkMapOps(ops); err != nil {
		return nil, fmt.Errorf("modify: %w", err)
	}
	p, err := planMapOps(ops)
	if err != nil {
		return nil, fmt.Errorf("modify: %w", err)
	}
	order := make([]int, len(keys))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(keys[a].String(), keys[b].String()) })
	errs := make([]error, len(keys))
	b := &pgx.Batch{}
	for _, i := range order {
		queueModify(b, keys[i], p, gens[i], &errs[i])
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("modify %d records: %w", len(keys), err)
	}
	return errs, nil
}

// queueModify adds one record's statements to the batch; a missing record sets *notFound. The
// first locks the record, moves any ordinary map bin it touches into entries (from the record
// as it was), marks the bins and bumps the generation; removals and puts follow.
func queueModify(b *pgx.Batch, key Key, p mapPlan, gen *uint32, notFound *error) {
	k := []any{key.Namespace, key.Set, key.Key}
	b.Queue(`WITH old AS (SELECT bins FROM quickstore WHERE ns = $1 AND set_name = $2 AND key = $3
			AND `+qsLive+` FOR UPDATE),
		moved AS (INSERT INTO quickstore_entries (ns, set_name, key, bin, ekey, value)
			SELECT $1, $2, $3, b.bin, e.key, e.value FROM old, unnest($4::text[]) AS b(bin),
				jsonb_each(old.bins->b.bin) AS e
			WHERE jsonb_typeof(old.bins->b.bin) = 'object' AND NOT old.bins->b.bin ? '`+entriesMarker+`'
			ON CONFLICT DO NOTHING),
		marked AS (UPDATE quickstore SET generation = quickstore.generation + 1,
			bins = quickstore.bins || (SELECT coalesce(jsonb_object_agg(b.bin, '{"`+entriesMarker+`": 1}'::jsonb), '{}')
				FROM unnest($4::text[]) AS b(bin) WHERE b.bin = ANY($5) OR old.bins ? b.bin)
			FROM old WHERE ns = $1 AND set_name = $2 AND key = $3 RETURNING quickstore.generation)
		SELECT generation FROM marked`,
		append(k, p.bins, p.putBins)...).QueryRow(func(row pgx.Row) error {
		var g int64
		err := row.Scan(&g)
		if errors.Is(err, pgx.ErrNoRows) {
			// No live record: its statements change nothing (each requires the record).
			*notFound = fmt.Errorf("modify %s: %w", key, ErrNotFound)
			return nil
		}
		*gen = uint32(g)
		return err
	})
	if len(p.delBins) > 0 {
		b.Queue(`DELETE FROM quickstore_entries WHERE ns = $1 AND set_name = $2 AND key = $3
			AND (bin, ekey) IN (SELECT * FROM unnest($4::text[], $5::text[]))`, append(k, p.delBins, p.delKeys)...)
	}
	if len(p.putBins) > 0 {
		b.Queue(`INSERT INTO quickstore_entries (ns, set_name, key, bin, ekey, value)
			SELECT $1, $2, $3, p.bin, p.ekey, p.value FROM unnest($4::text[], $5::text[], $6::jsonb[]) AS p(bin, ekey, value)
			WHERE EXISTS (SELECT 1 FROM quickstore WHERE ns = $1 AND set_name = $2 AND key = $3 AND `+qsLive+`)
			ON CONFLICT (ns, set_name, key, bin, ekey) DO UPDATE SET value = EXCLUDED.value`,
			append(k, p.putBins, p.putKeys, p.putValues)...)
	}
}

// mapPlan is ModifyMaps's operations as the statements' arrays.
type mapPlan struct {
	bins                        []string // every bin touched
	delBins, delKeys            []string
	putBins, putKeys, putValues []string
}

func planMapOps(ops []MapOp) (mapPlan, error) {
	var p mapPlan
	last := map[[2]string]int{}
	for i, o := range ops {
		last[[2]string{o.Bin, o.Key}] = i
	}
	seen := map[string]bool{}
	for i, o := range ops {
		if !seen[o.Bin] {
			seen[o.Bin] = true
			p.bins = append(p.bins, o.Bin)
		}
		if last[[2]string{o.Bin, o.Key}] != i {
			continue
		}
		if o.Value == nil {
			p.delBins, p.delKeys = append(p.delBins, o.Bin), append(p.delKeys, o.Key)
			continue
		}
		v, err := json.Marshal(tagValue(o.Value))
		if err != nil {
			return p, err
		}
		p.putBins, p.putKeys, p.putValues = append(p.putBins, o.Bin), append(p.putKeys, o.Key), append(p.putValues, string(v))
	}
	return p, nil
}
