package aerotest

import (
	"bytes"
	"time"
)

// Result codes, with the numbers a real Aerospike server sends.
const (
	resultOK           = 0
	resultNotFound     = 2  // KEY_NOT_FOUND_ERROR
	resultGeneration   = 3  // GENERATION_ERROR
	resultParameter    = 4  // PARAMETER_ERROR
	resultExists       = 5  // KEY_EXISTS_ERROR
	resultRecordTooBig = 13 // RECORD_TOO_BIG
	resultUnsupported  = 16 // UNSUPPORTED_FEATURE: real Aerospike has it, this server does not
	resultKeyMismatch  = 19 // KEY_MISMATCH
	resultNamespace    = 20 // INVALID_NAMESPACE
	resultBinName      = 21 // BIN_NAME_TOO_LONG
	resultForbidden    = 22 // FAIL_FORBIDDEN
	// ENTERPRISE_ONLY: what Community Edition answers a durable delete
	resultEnterpriseOnly = 25
)

// Special record TTLs on the wire.
const (
	ttlNamespaceDefault = 0
	ttlNeverExpire      = 0xFFFFFFFF
	ttlDontUpdate       = 0xFFFFFFFE
	maxTTL              = 10 * 365 * 24 * 3600 // ten years, the server's limit
	maxBinNameLen       = 15
)

// handleMessage parses and executes one AS_MSG. A message that cannot be parsed is a protocol
// error and closes the connection, as on a real server.
func (s *Server) handleMessage(body []byte, now time.Time) ([]byte, error) {
	m, err := parseMessage(body)
	if err != nil {
		return nil, err
	}
	return s.execute(m, now).encode(), nil
}

// execute runs one single-record command under its namespace's lock, which makes each command
// atomic with respect to every other.
func (s *Server) execute(m *message, now time.Time) reply {
	if !onlyRecordFields(m) {
		// Batch, scan, query, UDF and filter expressions: refuse, and mark the reply last so
		// that a client reading a multi-record stream stops.
		return reply{result: resultUnsupported, last: true}
	}
	nsName, ok := m.fields[fieldNamespace]
	if !ok {
		return reply{result: resultParameter}
	}
	ns := s.store.namespaces[string(nsName)]
	if ns == nil {
		return reply{result: resultNamespace}
	}
	raw := m.fields[fieldDigest]
	if len(raw) != 20 {
		return reply{result: resultParameter}
	}
	var digest [20]byte
	copy(digest[:], raw)

	ns.mu.Lock()
	defer ns.mu.Unlock()
	switch {
	case m.info2&info2Write != 0 && m.info2&info2Delete != 0:
		return ns.delete(m, digest)
	case m.info2&info2Write != 0:
		return ns.write(m, digest, now)
	case m.info1&info1Read != 0:
		return ns.read(m, digest, now)
	}
	return reply{result: resultParameter}
}

// onlyRecordFields reports whether m carries only the fields of a single-record command.
func onlyRecordFields(m *message) bool {
	for typ := range m.fields {
		switch typ {
		case fieldNamespace, fieldSet, fieldKey, fieldDigest:
		default:
			return false
		}
	}
	return true
}

// read answers a get: all bins, named bins, or the header only.
func (ns *namespace) read(m *message, digest [20]byte, now time.Time) reply {
	r := ns.records[digest]
	if r == nil || !r.live(now) {
		return reply{result: resultNotFound}
	}
	for _, o := range m.ops {
		if o.code != opRead && o.code != opCDTRead {
			return reply{result: resultUnsupported}
		}
	}
	if code := checkCDTFlags(m); code != resultOK {
		return reply{result: code}
	}
	rep := reply{generation: uint32(r.gen), voidTime: r.voidTime()}
	switch {
	case m.info1&info1NoBinData != 0:
	case m.info1&info1GetAll != 0 && len(m.ops) == 0:
		rep.bins = r.bins // bins are never modified in place, so sharing is safe
	default:
		for _, o := range m.ops {
			var code byte
			if rep.bins, code = appendRead(rep.bins, r.bins, o, m); code != resultOK {
				return reply{result: code}
			}
		}
	}
	return rep
}

// checkCDTFlags refuses a map operation in a message without respond-all-ops (which the client
// leaves off when it reads all bins), as the real server does.
func checkCDTFlags(m *message) byte {
	for _, o := range m.ops {
		if (o.code == opCDTRead || o.code == opCDTModify) && m.info2&info2RespondAll == 0 {
			return resultParameter
		}
	}
	return resultOK
}

// delete removes a record. Like Aerospike CE it finds a record that has expired but that nsup
// has not removed yet, so such a delete succeeds.
func (ns *namespace) delete(m *message, digest [20]byte) reply {
	if m.info2&info2DurableDelete != 0 {
		return reply{result: resultEnterpriseOnly} // Community Edition has no durable deletes
	}
	r := ns.records[digest]
	if r == nil {
		return reply{result: resultNotFound}
	}
	if !setMatches(m, r) {
		return reply{result: resultParameter}
	}
	if !generationOK(m, r.gen) {
		return reply{result: resultGeneration}
	}
	if !keyMatches(m, r) {
		return reply{result: resultKeyMismatch}
	}
	ns.remove(digest)
	return reply{}
}

// write runs a put, touch or operate, checking in the order a real server does.
func (ns *namespace) write(m *message, digest [20]byte, now time.Time) reply {
	if code := ns.checkTTL(m.recordTTL); code != resultOK {
		return reply{result: code}
	}
	plan, code := planWrite(m)
	if code == resultOK {
		code = checkCDTFlags(m)
	}
	if code != resultOK {
		return reply{result: code}
	}
	old := ns.records[digest]
	live := old != nil && old.live(now)
	var oldGen uint16 // an expired record is re-created from scratch, generation and all
	if live {
		oldGen = old.gen
	}
	switch {
	case plan.mustExist && !live:
		return reply{result: resultNotFound}
	case m.info2&info2CreateOnly != 0 && live:
		return reply{result: resultExists}
	case !generationOK(m, oldGen):
		return reply{result: resultGeneration}
	case live && !setMatches(m, old):
		return reply{result: resultParameter}
	case live && !keyMatches(m, old):
		return reply{result: resultKeyMismatch}
	}
	var start []bin
	if live && !plan.replace {
		start = old.bins
	}
	bins, out, code := applyOps(start, m)
	if code != resultOK {
		return reply{result: code}
	}
	if len(bins) == 0 {
		// Removing the last bin deletes the record; there was nothing to remove if it
		// did not exist.
		if !live {
			return reply{result: resultNotFound}
		}
		ns.remove(digest)
		return reply{bins: out}
	}
	rec := ns.newVersion(m, old, live, bins, now)
	if rec.size() > ns.cfg.MaxRecordSize {
		return reply{result: resultRecordTooBig}
	}
	ns.put(digest, rec)
	return reply{generation: uint32(rec.gen), voidTime: rec.voidTime(), bins: out}
}

// newVersion builds the record a successful write leaves behind.
func (ns *namespace) newVersion(m *message, old *record, live bool, bins []bin, now time.Time) *record {
	rec := &record{set: string(m.fields[fieldSet]), key: m.fields[fieldKey], bins: bins, gen: 1}
	if live {
		rec.set = old.set
		if old.key != nil {
			rec.key = old.key
		}
		rec.gen = old.gen + 1
		if rec.gen == 0 {
			rec.gen = 1
		}
	}
	rec.expires = ns.expiry(m.recordTTL, old, live, now)
	return rec
}

// checkTTL refuses TTLs out of range, and a TTL in a namespace that never removes expired
// records (nsup-period 0), as Aerospike 8 does.
func (ns *namespace) checkTTL(ttl uint32) byte {
	if ttl > maxTTL && ttl != ttlNeverExpire && ttl != ttlDontUpdate {
		return resultParameter
	}
	expiring := int32(ttl) > 0 || (ttl == ttlNamespaceDefault && ns.cfg.DefaultTTL > 0)
	if expiring && ns.cfg.NsupPeriod <= 0 {
		return resultForbidden
	}
	return resultOK
}

// expiry turns a wire TTL into the record's expiry time (zero: never).
func (ns *namespace) expiry(ttl uint32, old *record, live bool, now time.Time) time.Time {
	switch ttl {
	case ttlNeverExpire:
		return time.Time{}
	case ttlDontUpdate:
		if live {
			return old.expires
		}
		return ns.defaultExpiry(now)
	case ttlNamespaceDefault:
		return ns.defaultExpiry(now)
	}
	return now.Add(time.Duration(ttl) * time.Second)
}

func (ns *namespace) defaultExpiry(now time.Time) time.Time {
	if ns.cfg.DefaultTTL <= 0 {
		return time.Time{}
	}
	return now.Add(ns.cfg.DefaultTTL)
}

// writePlan is what a write's flags and operations ask for.
type writePlan struct {
	mustExist bool // update-only, replace-only, or a touch
	replace   bool // drop the bins the write does not name
}

// planWrite validates a write's operations against its flags, with the real server's codes.
func planWrite(m *message) (writePlan, byte) {
	p := writePlan{
		mustExist: m.info3&(info3UpdateOnly|info3ReplOnly) != 0,
		replace:   m.info3&(info3CreateRepl|info3ReplOnly) != 0,
	}
	if len(m.ops) == 0 {
		return p, resultParameter
	}
	hasRead, hasReadAll := false, false
	for _, o := range m.ops {
		if o.code == opTouch {
			if p.replace {
				return p, resultParameter
			}
			p.mustExist = true
			continue
		}
		if len(o.name) > maxBinNameLen {
			return p, resultBinName
		}
		switch o.code {
		case opWrite:
			if o.ptype == particleNull && p.replace {
				return p, resultParameter // a bin delete makes no sense in a replace
			}
		case opDeleteAll:
			if p.replace {
				return p, resultParameter
			}
		case opCDTModify: // map put and remove-by-key only (cdt.go)
		case opCDTRead: // map size (cdt.go)
			hasRead = true
		case opRead:
			hasRead = true
			if o.name == "" && m.info1&info1GetAll != 0 {
				if hasReadAll {
					return p, resultParameter
				}
				hasReadAll = true
			}
		default:
			return p, resultUnsupported // add, append, other CDT, bit, HLL and expression ops
		}
	}
	if hasRead && m.info1&info1Read == 0 {
		return p, resultParameter
	}
	if m.info1&info1GetAll != 0 && !hasReadAll {
		return p, resultParameter
	}
	return p, resultOK
}

// applyOps runs a write's operations in order on a copy of start, returning the new bins and
// the bins that the operations answer. A failing operation fails the whole write. With
// respond-all-ops (which the client sets for map operations) every operation answers: a write
// or a removal with a nil bin of its name, as the real server does.
func applyOps(start []bin, m *message) (bins, out []bin, code byte) {
	respondAll := m.info2&info2RespondAll != 0
	bins = append([]bin(nil), start...)
	for _, o := range m.ops {
		switch o.code {
		case opWrite:
			bins = setBin(bins, o)
			if respondAll {
				out = append(out, bin{name: o.name})
			}
		case opDeleteAll:
			bins = bins[:0]
		case opRead, opCDTRead:
			if out, code = appendRead(out, bins, o, m); code != resultOK {
				return nil, nil, code
			}
		case opCDTModify:
			var res []bin
			if bins, res, code = applyMapOp(bins, o); code != resultOK {
				return nil, nil, code
			}
			if res == nil && respondAll {
				res = []bin{{name: o.name}}
			}
			out = append(out, res...)
		}
	}
	return bins, out, resultOK
}

func setBin(bins []bin, o op) []bin {
	for i := range bins {
		if bins[i].name != o.name {
			continue
		}
		if o.ptype == particleNull {
			return append(bins[:i:i], bins[i+1:]...)
		}
		bins[i] = bin{name: o.name, ptype: o.ptype, data: o.value}
		return bins
	}
	if o.ptype == particleNull {
		return bins
	}
	return append(bins, bin{name: o.name, ptype: o.ptype, data: o.value})
}

// appendRead adds what one read operation answers to out: a named bin, every bin (read all), a
// map's size. What is missing answers nothing, or with respond-all-ops a nil bin of the
// operation's name (an unnamed one for a header read), as on the real server.
func appendRead(out, bins []bin, o op, m *message) ([]bin, byte) {
	respondAll := m.info2&info2RespondAll != 0
	if m.info1&info1NoBinData != 0 {
		if respondAll {
			out = append(out, bin{name: o.name})
		}
		return out, resultOK
	}
	var found []bin
	switch {
	case o.code == opCDTRead:
		var code byte
		if found, code = readMap(bins, o); code != resultOK {
			return nil, code
		}
	case o.name == "" && m.info1&info1GetAll != 0:
		return append(out, bins...), resultOK
	case o.name != "":
		for _, b := range bins {
			if b.name == o.name {
				found = append(found, b)
			}
		}
	}
	if len(found) == 0 && respondAll {
		found = []bin{{name: o.name}}
	}
	return append(out, found...), resultOK
}

// generationOK applies the expected-generation policy of m to a record at generation gen (0
// for a record that does not exist).
func generationOK(m *message, gen uint16) bool {
	switch {
	case m.info2&info2Generation != 0:
		return m.generation == uint32(gen)
	case m.info2&info2GenGT != 0:
		return m.generation > uint32(gen)
	}
	return true
}

// setMatches reports whether m names r's set, or no set at all.
func setMatches(m *message, r *record) bool {
	set, ok := m.fields[fieldSet]
	return !ok || len(set) == 0 || string(set) == r.set
}

// keyMatches reports whether a user key sent with m agrees with the one r stores.
func keyMatches(m *message, r *record) bool {
	key, ok := m.fields[fieldKey]
	return !ok || r.key == nil || bytes.Equal(key, r.key)
}
