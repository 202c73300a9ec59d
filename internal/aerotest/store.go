package aerotest

import (
	"sync"
	"time"
)

// citrusleafEpoch is where Aerospike's void times count from (2010-01-01 UTC).
const citrusleafEpoch = 1262304000

const defaultMaxRecordSize = 1 << 20

// bin is one named value, kept exactly as the client sent it (particle type and bytes), so
// strings, integers, blobs and msgpack lists and maps round-trip without this server having to
// understand them.
type bin struct {
	name  string
	ptype byte
	data  []byte
}

// record is one stored record. An expired record stays in the map until nsup removes it, as on
// a real server: reads and writes treat it as missing, a delete still finds it.
type record struct {
	set     string
	key     []byte // user key field as sent (particle type + value), nil unless sent
	bins    []bin  // in first-written order, as the server returns them
	gen     uint16 // the server keeps 16 bits and wraps to 1, never to 0
	expires time.Time
}

func (r *record) live(now time.Time) bool {
	return r.expires.IsZero() || now.Before(r.expires)
}

// voidTime is the expiry as the wire carries it: seconds since the citrusleaf epoch, rounded
// up, or 0 for never.
func (r *record) voidTime() uint32 {
	if r.expires.IsZero() {
		return 0
	}
	secs := r.expires.Unix()
	if r.expires.Nanosecond() > 0 {
		secs++
	}
	return uint32(secs - citrusleafEpoch)
}

func (r *record) findBin(name string) int {
	for i := range r.bins {
		if r.bins[i].name == name {
			return i
		}
	}
	return -1
}

func (r *record) size() int {
	n := len(r.key)
	for _, b := range r.bins {
		n += len(b.name) + len(b.data) + 4
	}
	return n
}

type namespace struct {
	name string
	cfg  NamespaceConfig

	mu      sync.Mutex // held for a whole command, which makes each command atomic
	records map[[20]byte]*record
	// ghosts are the last versions of deleted records. Community Edition deletes from the
	// index only; the data stays on the device until a newer version of the record is written
	// (or defragmentation reclaims it), and a cold start brings it back unless it has expired.
	ghosts map[[20]byte]*record
}

type store struct {
	namespaces map[string]*namespace
}

func newStore(cfgs map[string]NamespaceConfig) *store {
	s := &store{namespaces: map[string]*namespace{}}
	for name, cfg := range cfgs {
		if cfg.MaxRecordSize <= 0 {
			cfg.MaxRecordSize = defaultMaxRecordSize
		}
		s.namespaces[name] = &namespace{name: name, cfg: cfg, records: map[[20]byte]*record{}, ghosts: map[[20]byte]*record{}}
	}
	return s
}

func (s *store) clear() {
	for _, ns := range s.namespaces {
		ns.mu.Lock()
		ns.records = map[[20]byte]*record{}
		ns.ghosts = map[[20]byte]*record{}
		ns.mu.Unlock()
	}
}

func (s *store) len(name string, now time.Time) int {
	ns := s.namespaces[name]
	if ns == nil {
		return 0
	}
	ns.mu.Lock()
	defer ns.mu.Unlock()
	n := 0
	for _, r := range ns.records {
		if r.live(now) {
			n++
		}
	}
	return n
}

// reap removes a namespace's expired records, as nsup does.
func (s *store) reap(name string, now time.Time) {
	ns := s.namespaces[name]
	ns.mu.Lock()
	defer ns.mu.Unlock()
	for d, r := range ns.records {
		if !r.live(now) {
			delete(ns.records, d)
		}
	}
}

// remove deletes a record from the index, leaving its data behind as a ghost.
func (ns *namespace) remove(digest [20]byte) {
	if r := ns.records[digest]; r != nil {
		ns.ghosts[digest] = r
	}
	delete(ns.records, digest)
}

// put stores a new version of a record, which supersedes any ghost of it.
func (ns *namespace) put(digest [20]byte, r *record) {
	ns.records[digest] = r
	delete(ns.ghosts, digest)
}

// coldStart rebuilds the index from the "device": every deleted record whose last version has
// not expired comes back, as on Aerospike Community Edition.
func (s *store) coldStart(now time.Time) {
	for _, ns := range s.namespaces {
		ns.mu.Lock()
		for d, g := range ns.ghosts {
			if g.live(now) && ns.records[d] == nil {
				ns.records[d] = g
			}
		}
		ns.ghosts = map[[20]byte]*record{}
		ns.mu.Unlock()
	}
}
