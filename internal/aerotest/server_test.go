package aerotest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"
)

// These tests drive the server with the real client, so that they check wire compatibility
// and the result codes together.

func startServer(t *testing.T) *Server {
	t.Helper()
	srv, err := Start(Config{Namespaces: map[string]NamespaceConfig{
		"users":  {NsupPeriod: 100 * time.Millisecond},
		"convos": {},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv
}

func connect(t *testing.T, srv *Server) *as.Client {
	t.Helper()
	policy := as.NewClientPolicy()
	policy.Timeout = 2 * time.Second
	policy.TendInterval = 50 * time.Millisecond
	c, err := as.NewClientWithPolicy(policy, srv.Host(), srv.Port())
	if err != nil {
		t.Fatalf("connecting to %s: %v", srv.Addr(), err)
	}
	t.Cleanup(c.Close)
	return c
}

func key(t *testing.T, ns, set, k string) *as.Key {
	t.Helper()
	key, err := as.NewKey(ns, set, k)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func wantCode(t *testing.T, err error, code types.ResultCode) {
	t.Helper()
	var ae *as.AerospikeError
	if !errors.As(err, &ae) || !ae.Matches(code) {
		t.Fatalf("got error %v, want result code %d", err, code)
	}
}

func mustGet(t *testing.T, c *as.Client, k *as.Key) *as.Record {
	t.Helper()
	rec, err := c.Get(nil, k)
	if err != nil {
		t.Fatalf("get %v: %v", k, err)
	}
	return rec
}

func TestStartRefusesNonLoopback(t *testing.T) {
	if _, err := Start(Config{Addr: "0.0.0.0:0", Namespaces: map[string]NamespaceConfig{"x": {}}}); err == nil {
		t.Fatal("Start on 0.0.0.0 succeeded")
	}
	if _, err := Start(Config{}); err == nil {
		t.Fatal("Start without namespaces succeeded")
	}
}

func TestClusterInfo(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	nodes := c.GetNodes()
	if len(nodes) != 1 {
		t.Fatalf("client sees %d nodes, want 1", len(nodes))
	}
	info, err := nodes[0].RequestInfo(as.NewInfoPolicy(), "namespaces", "build", "bogus")
	if err != nil {
		t.Fatal(err)
	}
	if info["namespaces"] != "convos;users" || info["build"] != buildVersion {
		t.Fatalf("info = %v", info)
	}
	if !strings.HasPrefix(info["bogus"], "ERROR") {
		t.Fatalf("unknown info command answered %q", info["bogus"])
	}
}

func TestPutGetParticleTypes(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	k := key(t, "convos", "c", "k1")
	bins := as.BinMap{
		"s": "héllo ✓",
		"i": 42,
		"n": -7,
		"b": []byte{0, 1, 2, 255},
		"l": []any{"a", 1, []byte{9}, []any{"x"}},
		"m": map[string]any{"k": "v", "n": 3, "inner": map[string]any{"z": []any{1}}},
	}
	if err := c.Put(nil, k, bins); err != nil {
		t.Fatal(err)
	}
	rec := mustGet(t, c, k)
	if rec.Generation != 1 || rec.Expiration != ^uint32(0) {
		t.Fatalf("generation %d expiration %d, want 1 and never", rec.Generation, rec.Expiration)
	}
	if rec.Bins["s"] != "héllo ✓" || rec.Bins["i"] != 42 || rec.Bins["n"] != -7 ||
		!bytes.Equal(rec.Bins["b"].([]byte), []byte{0, 1, 2, 255}) {
		t.Fatalf("scalar bins = %v", rec.Bins)
	}
	l := rec.Bins["l"].([]any)
	if len(l) != 4 || l[0] != "a" || l[1] != 1 || !bytes.Equal(l[2].([]byte), []byte{9}) {
		t.Fatalf("list bin = %#v", l)
	}
	m := rec.Bins["m"].(map[any]any)
	if m["k"] != "v" || m["n"] != 3 || m["inner"].(map[any]any)["z"].([]any)[0] != 1 {
		t.Fatalf("map bin = %#v", m)
	}
}

func TestRecordExistsActions(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	k := key(t, "users", "u", "alice")
	with := func(action as.RecordExistsAction) *as.WritePolicy {
		p := as.NewWritePolicy(0, 0)
		p.RecordExistsAction = action
		return p
	}

	wantCode(t, c.Put(with(as.UPDATE_ONLY), k, as.BinMap{"a": 1}), types.KEY_NOT_FOUND_ERROR)
	wantCode(t, c.Put(with(as.REPLACE_ONLY), k, as.BinMap{"a": 1}), types.KEY_NOT_FOUND_ERROR)
	if err := c.Put(with(as.CREATE_ONLY), k, as.BinMap{"a": 1, "b": 2}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Put(with(as.CREATE_ONLY), k, as.BinMap{"a": 9}), types.KEY_EXISTS_ERROR)

	// Update merges; a nil bin removes it.
	if err := c.Put(with(as.UPDATE), k, as.BinMap{"b": nil, "c": 3}); err != nil {
		t.Fatal(err)
	}
	rec := mustGet(t, c, k)
	if len(rec.Bins) != 2 || rec.Bins["a"] != 1 || rec.Bins["c"] != 3 || rec.Generation != 2 {
		t.Fatalf("after merge: %v gen %d", rec.Bins, rec.Generation)
	}
	// Replace drops every bin it does not name; a bin delete cannot be part of it.
	if err := c.Put(with(as.REPLACE), k, as.BinMap{"d": "x"}); err != nil {
		t.Fatal(err)
	}
	if rec = mustGet(t, c, k); len(rec.Bins) != 1 || rec.Bins["d"] != "x" || rec.Generation != 3 {
		t.Fatalf("after replace: %v gen %d", rec.Bins, rec.Generation)
	}
	wantCode(t, c.Put(with(as.REPLACE), k, as.BinMap{"d": nil}), types.PARAMETER_ERROR)
	if err := c.Put(with(as.UPDATE_ONLY), k, as.BinMap{"e": 5}); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(with(as.REPLACE_ONLY), k, as.BinMap{"f": 6}); err != nil {
		t.Fatal(err)
	}
	if rec = mustGet(t, c, k); len(rec.Bins) != 1 || rec.Bins["f"] != 6 || rec.Generation != 5 {
		t.Fatalf("after replace-only: %v gen %d", rec.Bins, rec.Generation)
	}

	// Removing the last bin deletes the record; removing from nothing finds nothing.
	if err := c.Put(nil, k, as.BinMap{"f": nil}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Get(nil, k)
	wantCode(t, err, types.KEY_NOT_FOUND_ERROR)
	wantCode(t, c.Put(nil, k, as.BinMap{"f": nil}), types.KEY_NOT_FOUND_ERROR)
}

func TestGenerationPolicy(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	k := key(t, "users", "u", "gen")
	expect := func(gen uint32) *as.WritePolicy {
		p := as.NewWritePolicy(gen, 0)
		p.GenerationPolicy = as.EXPECT_GEN_EQUAL
		return p
	}
	// A missing record has generation 0 for the check.
	wantCode(t, c.Put(expect(1), k, as.BinMap{"a": 1}), types.GENERATION_ERROR)
	if err := c.Put(nil, k, as.BinMap{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(expect(1), k, as.BinMap{"a": 2}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.Put(expect(1), k, as.BinMap{"a": 3}), types.GENERATION_ERROR)
	rec := mustGet(t, c, k)
	if rec.Generation != 2 || rec.Bins["a"] != 2 {
		t.Fatalf("after CAS: %v gen %d", rec.Bins, rec.Generation)
	}

	// Operate returns the new generation, which is how a store learns it from a write.
	rec, err := c.Operate(expect(2), k, as.PutOp(as.NewBin("a", 4)))
	if err != nil || rec.Generation != 3 {
		t.Fatalf("operate: %v, %v", rec, err)
	}

	// Delete with a stale generation fails, with the right one succeeds.
	_, err = c.Delete(expect(1), k)
	wantCode(t, err, types.GENERATION_ERROR)
	existed, err := c.Delete(expect(3), k)
	if err != nil || !existed {
		t.Fatalf("delete: %v, %v", existed, err)
	}
	existed, err = c.Delete(nil, k)
	if err != nil || existed {
		t.Fatalf("second delete: %v, %v", existed, err)
	}
}

func TestGenerationWrapsLikeServer(t *testing.T) {
	r := &record{gen: 0xFFFF}
	ns := &namespace{}
	next := ns.newVersion(&message{recordTTL: ttlNeverExpire, fields: map[byte][]byte{}}, r, true, nil, time.Now())
	if next.gen != 1 {
		t.Fatalf("generation after 65535 = %d, want 1", next.gen)
	}
}

func TestHeaderExistsTouch(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	k := key(t, "users", "u", "t")
	wantCode(t, c.Touch(nil, k), types.KEY_NOT_FOUND_ERROR)
	if ok, err := c.Exists(nil, k); err != nil || ok {
		t.Fatalf("exists on missing: %v, %v", ok, err)
	}
	if err := c.Put(nil, k, as.BinMap{"a": "x"}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.Exists(nil, k); err != nil || !ok {
		t.Fatalf("exists: %v, %v", ok, err)
	}
	if err := c.Touch(as.NewWritePolicy(0, 60), k); err != nil {
		t.Fatal(err)
	}
	rec, err := c.GetHeader(nil, k)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Generation != 2 || len(rec.Bins) != 0 || rec.Expiration < 58 || rec.Expiration > 61 {
		t.Fatalf("header after touch: gen %d exp %d bins %v", rec.Generation, rec.Expiration, rec.Bins)
	}
	rec, err = c.Get(nil, k, "a", "missing")
	if err != nil || len(rec.Bins) != 1 || rec.Bins["a"] != "x" {
		t.Fatalf("named get: %v, %v", rec, err)
	}
}

func TestOperate(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	k := key(t, "convos", "c", "op")
	rec, err := c.Operate(nil, k, as.PutOp(as.NewBin("a", 1)), as.PutOp(as.NewBin("b", "x")), as.GetBinOp("a"))
	if err != nil || rec.Generation != 1 || rec.Bins["a"] != 1 || len(rec.Bins) != 1 {
		t.Fatalf("operate put+get: %v, %v", rec, err)
	}
	rec, err = c.Operate(nil, k, as.PutOp(as.NewBin("c", 2)), as.GetOp())
	if err != nil || len(rec.Bins) != 3 || rec.Generation != 2 {
		t.Fatalf("operate put+get all: %v, %v", rec, err)
	}
	_, err = c.Operate(nil, k, as.AddOp(as.NewBin("a", 1)))
	wantCode(t, err, types.UNSUPPORTED_FEATURE)
}

func TestTTL(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)

	// A TTL in a namespace without nsup is refused, as by Aerospike 8.
	wantCode(t, c.Put(as.NewWritePolicy(0, 5), key(t, "convos", "c", "ttl"), as.BinMap{"a": 1}), types.FAIL_FORBIDDEN)
	// Never-expire and the (zero) default are fine there.
	if err := c.Put(as.NewWritePolicy(0, as.TTLDontExpire), key(t, "convos", "c", "ttl"), as.BinMap{"a": 1}); err != nil {
		t.Fatal(err)
	}

	k := key(t, "users", "session", "s1")
	if err := c.Put(as.NewWritePolicy(0, 1), k, as.BinMap{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if rec := mustGet(t, c, k); rec.Expiration < 1 || rec.Expiration > 2 {
		t.Fatalf("expiration %d, want about 1 s", rec.Expiration)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Get(nil, k)
		if err != nil {
			wantCode(t, err, types.KEY_NOT_FOUND_ERROR)
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("record with a 1 s TTL still there after 5 s")
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	// An expired record is re-created from scratch by a create-only write.
	if err := c.Put(&as.WritePolicy{BasePolicy: *as.NewPolicy(), RecordExistsAction: as.CREATE_ONLY}, k, as.BinMap{"b": 2}); err != nil {
		t.Fatal(err)
	}
	if rec := mustGet(t, c, k); rec.Generation != 1 || len(rec.Bins) != 1 {
		t.Fatalf("re-created: %v gen %d", rec.Bins, rec.Generation)
	}
}

func TestStopRestartKeepsData(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	k := key(t, "users", "u", "persist")
	if err := c.Put(nil, k, as.BinMap{"a": 1}); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	srv.Stop()
	policy := as.NewPolicy()
	policy.TotalTimeout = 300 * time.Millisecond
	if _, err := c.Get(policy, k); err == nil {
		t.Fatal("get succeeded while the server was stopped")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", srv.Addr(), addr)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		rec, err := c.Get(policy, k)
		if err == nil {
			if rec.Bins["a"] != 1 {
				t.Fatalf("after restart: %v", rec.Bins)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("client did not recover after restart: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	if srv.Len("users") != 1 {
		t.Fatalf("Len = %d", srv.Len("users"))
	}
}

// A cold restart brings back what Community Edition brings back: deleted records that have not
// expired, unless a newer version was written after the delete.
func TestColdRestartBringsBackDeletedRecords(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	deleted, overwritten, expiring := key(t, "users", "u", "deleted"), key(t, "users", "u", "overwritten"), key(t, "users", "u", "expiring")
	for _, k := range []*as.Key{deleted, overwritten} {
		if err := c.Put(nil, k, as.BinMap{"a": 1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(as.NewWritePolicy(0, 1), expiring, as.BinMap{"a": 1}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []*as.Key{deleted, overwritten, expiring} {
		if _, err := c.Delete(nil, k); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Put(nil, overwritten, as.BinMap{"tomb": 1}); err != nil {
		t.Fatal(err)
	}
	srv.Stop() // a warm restart keeps the index: nothing comes back
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.Len("users") != 1 {
		t.Fatalf("after a warm restart Len = %d, want 1", srv.Len("users"))
	}
	waitExpired := time.Now().Add(1100 * time.Millisecond)
	for time.Now().Before(waitExpired) {
		time.Sleep(50 * time.Millisecond) // the 1 s TTL must pass: time itself is the condition
	}
	if err := srv.ColdRestart(); err != nil {
		t.Fatal(err)
	}
	policy := as.NewPolicy()
	policy.TotalTimeout = 3 * time.Second
	rec, err := c.Get(policy, deleted)
	if err != nil || rec.Bins["a"] != 1 {
		t.Fatalf("the deleted record after a cold restart: %v %v, want it back", rec, err)
	}
	if rec, err := c.Get(policy, overwritten); err != nil || rec.Bins["tomb"] != 1 || rec.Bins["a"] != nil {
		t.Fatalf("the overwritten record after a cold restart: %v %v, want its newest version", rec, err)
	}
	if _, err := c.Get(policy, expiring); err == nil {
		t.Fatal("an expired deleted record came back")
	}
}

func TestCompressedRequest(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	p := as.NewWritePolicy(0, 0)
	p.UseCompression = true
	k := key(t, "convos", "c", "big")
	big := strings.Repeat("compress me ", 10000)
	if err := c.Put(p, k, as.BinMap{"s": big}); err != nil {
		t.Fatal(err)
	}
	if rec := mustGet(t, c, k); rec.Bins["s"] != big {
		t.Fatal("compressed write did not round-trip")
	}
}

func TestRecordTooBig(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	err := c.Put(nil, key(t, "convos", "c", "huge"), as.BinMap{"b": make([]byte, 2<<20)})
	wantCode(t, err, types.RECORD_TOO_BIG)
}

func TestBatchIsRefused(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	_, err := c.BatchGet(nil, []*as.Key{key(t, "users", "u", "a"), key(t, "users", "u", "b")})
	wantCode(t, err, types.UNSUPPORTED_FEATURE)
}

// rawCommand sends one hand-built AS_MSG and returns the reply's result code, for what the
// client itself never sends (it checks namespaces and bin names before sending).
func rawCommand(t *testing.T, srv *Server, ns, binName string) byte {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var body []byte
	hdr := make([]byte, asMsgHeaderSize)
	hdr[0], hdr[2] = asMsgHeaderSize, info2Write
	binary.BigEndian.PutUint32(hdr[10:], ttlNeverExpire)
	binary.BigEndian.PutUint16(hdr[18:], 2)
	binary.BigEndian.PutUint16(hdr[20:], 1)
	body = append(body, hdr...)
	field := func(typ byte, data []byte) {
		body = binary.BigEndian.AppendUint32(body, uint32(len(data)+1))
		body = append(append(body, typ), data...)
	}
	field(fieldNamespace, []byte(ns))
	field(fieldDigest, make([]byte, 20))
	value := []byte("v")
	body = binary.BigEndian.AppendUint32(body, uint32(4+len(binName)+len(value)))
	body = append(body, opWrite, 3, 0, byte(len(binName)))
	body = append(append(body, binName...), value...)
	if _, err := conn.Write(append(protoHeader(protoMessage, len(body)), body...)); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, 8+asMsgHeaderSize)
	if _, err := io.ReadFull(conn, resp); err != nil {
		t.Fatal(err)
	}
	return resp[8+5]
}

func TestRawResultCodes(t *testing.T) {
	srv := startServer(t)
	if code := rawCommand(t, srv, "nope", "a"); code != resultNamespace {
		t.Fatalf("unknown namespace answered %d, want %d", code, resultNamespace)
	}
	if code := rawCommand(t, srv, "convos", "sixteen-bytes-xx"); code != resultBinName {
		t.Fatalf("long bin name answered %d, want %d", code, resultBinName)
	}
	if code := rawCommand(t, srv, "convos", "ok"); code != resultOK {
		t.Fatalf("good write answered %d", code)
	}
}

func TestClientRefusesUnknownNamespace(t *testing.T) {
	srv := startServer(t)
	c := connect(t, srv)
	err := c.Put(nil, key(t, "nope", "s", "k"), as.BinMap{"a": 1})
	wantCode(t, err, types.INVALID_NAMESPACE)
}
