package aerotest

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"

	"pingedchat/internal/asdnode"
)

// Fidelity: the same client commands against this server and against a real Aerospike CE node
// (started from the project's aerospike.conf by internal/asdnode) give the same transcript:
// result codes, generations, the bins a reply carries (nil ones included) and the TTL class.
// A difference is a place where this server is kinder (or harsher) than the real one, and so
// where code tested here could fail in production.

// scenario runs commands through a client and writes what each answered into a transcript.
type scenario struct {
	name string
	run  func(f *fid)
}

// fid is one scenario's run on one server.
type fid struct {
	t   *testing.T
	c   *as.Client
	set string
	out strings.Builder
}

func (f *fid) key(ns, k string) *as.Key {
	key, err := as.NewKey(ns, f.set, k)
	if err != nil {
		f.t.Fatal(err)
	}
	return key
}

// note writes one step's outcome: the result code, and for a record its generation, bins and
// TTL class.
func (f *fid) note(step string, rec *as.Record, err error) {
	fmt.Fprintf(&f.out, "%s: %s", step, codeOf(err))
	if rec != nil {
		fmt.Fprintf(&f.out, " gen=%d exp=%s bins=%s", rec.Generation, ttlClass(rec.Expiration), showBins(rec.Bins))
	}
	f.out.WriteString("\n")
}

func codeOf(err error) string {
	if err == nil {
		return "OK"
	}
	var ae *as.AerospikeError
	if errors.As(err, &ae) {
		return fmt.Sprintf("%d(%s)", ae.ResultCode, ae.ResultCode)
	}
	return "client:" + err.Error()
}

// ttlClass is a TTL as a class a transcript can compare: never, or minutes left rounded (the
// two servers round seconds differently).
func ttlClass(exp uint32) string {
	switch {
	case exp == as.TTLDontExpire:
		return "never"
	case exp == 0:
		return "0"
	}
	return fmt.Sprintf("~%dm", (exp+30)/60)
}

func showBins(bins as.BinMap) string {
	if bins == nil {
		return "nil"
	}
	names := make([]string, 0, len(bins))
	for n := range bins {
		names = append(names, n)
	}
	slices.Sort(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s:%s", n, showValue(bins[n]))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func showValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "<nil>"
	case as.OpResults:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = showValue(e)
		}
		return "ops[" + strings.Join(parts, ",") + "]"
	case map[any]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, fmt.Sprintf("%v=%s", k, showValue(x[k])))
		}
		slices.Sort(keys)
		return "map{" + strings.Join(keys, ",") + "}"
	}
	return fmt.Sprintf("%T(%v)", v, v)
}

func wp(f func(p *as.WritePolicy)) *as.WritePolicy {
	p := as.NewWritePolicy(0, 0)
	p.SendKey = true
	if f != nil {
		f(p)
	}
	return p
}

func (f *fid) put(step string, k *as.Key, p *as.WritePolicy, bins as.BinMap) {
	f.note(step, nil, f.c.Put(p, k, bins))
}

func (f *fid) get(step string, k *as.Key, names ...string) {
	rec, err := f.c.Get(nil, k, names...)
	f.note(step, rec, err)
}

func (f *fid) operate(step string, k *as.Key, p *as.WritePolicy, ops ...*as.Operation) {
	rec, err := f.c.Operate(p, k, ops...)
	f.note(step, rec, err)
}

var fidelityScenarios = []scenario{
	{"named bins", func(f *fid) {
		k := f.key("convos", "a")
		f.put("put", k, wp(nil), as.BinMap{"a": 1, "b": "x"})
		f.get("get all", k)
		f.get("get named, one missing", k, "a", "c")
		f.get("get named, all missing", k, "c", "d")
		rec, err := f.c.GetHeader(nil, k)
		f.note("header", rec, err)
		f.get("get named of a missing record", f.key("convos", "nope"), "a")
		ok, err := f.c.Exists(nil, f.key("convos", "nope"))
		f.note(fmt.Sprint("exists missing ", ok), nil, err)
	}},
	{"operate reads", func(f *fid) {
		k := f.key("convos", "b")
		f.put("put", k, wp(nil), as.BinMap{"a": 1})
		f.operate("read present and missing", k, wp(nil), as.GetBinOp("a"), as.GetBinOp("c"))
		f.operate("read the same bin twice", k, wp(nil), as.GetBinOp("a"), as.GetBinOp("a"))
		f.operate("read all", k, wp(nil), as.GetOp())
		f.operate("header", k, wp(nil), as.GetHeaderOp())
		f.operate("read of a missing record", f.key("convos", "nope"), wp(nil), as.GetBinOp("a"))
	}},
	{"operate writes and reads", func(f *fid) {
		k := f.key("convos", "c")
		f.operate("write then read", k, wp(nil), as.PutOp(as.NewBin("a", 1)), as.GetBinOp("a"))
		f.operate("write, read missing", k, wp(nil), as.PutOp(as.NewBin("b", 2)), as.GetBinOp("zz"))
		f.operate("write and read all", k, wp(nil), as.PutOp(as.NewBin("c", 3)), as.GetOp())
		f.operate("write only", k, wp(nil), as.PutOp(as.NewBin("d", 4)))
		f.operate("remove a bin, read it", k, wp(nil), as.PutOp(as.NewBin("d", nil)), as.GetBinOp("d"))
		f.get("after", k)
		mput := as.MapPutOp(as.DefaultMapPolicy(), "m", "k", 1)
		f.operate("put, map put, read missing", k, wp(nil), as.PutOp(as.NewBin("e", 5)), mput, as.GetBinOp("zz"))
		f.operate("remove a bin, map put, read it", k, wp(nil), as.PutOp(as.NewBin("e", nil)), mput, as.GetBinOp("e"))
		f.operate("touch and map put", k, wp(nil), as.TouchOp(), mput)
		f.operate("read all and map put", k, wp(nil), as.GetOp(), mput)
		f.operate("header and map size", k, wp(nil), as.GetHeaderOp(), as.MapSizeOp("m"))
		f.operate("durable write", k, wp(func(p *as.WritePolicy) { p.DurableDelete = true }), as.PutOp(as.NewBin("f", 1)))
		f.operate("durable removal of every bin", k, wp(func(p *as.WritePolicy) { p.DurableDelete = true }), as.PutOp(as.NewBin("a", nil)))
		f.get("after", k)
	}},
	{"map ops", func(f *fid) {
		k := f.key("convos", "d")
		put := func(key string, v any) *as.Operation { return as.MapPutOp(as.DefaultMapPolicy(), "m", key, v) }
		f.operate("map put on a missing record", k, wp(nil), put("k1", 1))
		f.operate("two puts on one bin", k, wp(nil), put("k2", 2), put("k3", 3))
		f.operate("put and read a missing bin", k, wp(nil), put("k4", 4), as.GetBinOp("zz"))
		f.operate("remove, put, size, read", k, wp(nil),
			as.MapRemoveByKeyOp("m", "k1", as.MapReturnType.NONE), put("k5", 5), as.MapSizeOp("m"), as.GetBinOp("m"))
		f.operate("remove from a missing bin", k, wp(nil), as.MapRemoveByKeyOp("n", "x", as.MapReturnType.NONE))
		f.operate("size of a missing bin", k, wp(nil), as.MapSizeOp("n"))
		f.operate("size of a missing bin and a read", k, wp(nil), as.MapSizeOp("n"), as.GetBinOp("m"))
		f.get("after", k)
		f.operate("size of a missing record", f.key("convos", "nope"), wp(nil), as.MapSizeOp("m"))
		f.operate("remove from a missing record", f.key("convos", "nope"), wp(nil), as.MapRemoveByKeyOp("m", "x", as.MapReturnType.NONE))
		f.operate("update-only map put on a missing record", f.key("convos", "nope"),
			wp(func(p *as.WritePolicy) { p.RecordExistsAction = as.UPDATE_ONLY }), put("k", 1))
		s := f.key("convos", "s")
		f.put("a string bin", s, wp(nil), as.BinMap{"m": "text"})
		f.operate("map put on a string bin", s, wp(nil), put("k", 1))
		f.operate("size of a string bin", s, wp(nil), as.MapSizeOp("m"))
	}},
	{"record exists actions and generations", func(f *fid) {
		k := f.key("convos", "e")
		create := wp(func(p *as.WritePolicy) { p.RecordExistsAction = as.CREATE_ONLY })
		f.operate("create", k, create, as.PutOp(as.NewBin("a", 1)))
		f.operate("create again", k, create, as.PutOp(as.NewBin("a", 2)))
		f.operate("update", k, wp(nil), as.PutOp(as.NewBin("b", 2)))
		f.operate("replace", k, wp(func(p *as.WritePolicy) { p.RecordExistsAction = as.REPLACE }), as.PutOp(as.NewBin("c", 3)))
		f.get("after replace", k)
		for _, a := range []as.RecordExistsAction{as.UPDATE_ONLY, as.REPLACE_ONLY} {
			f.operate(fmt.Sprint("action ", a, " on a missing record"), f.key("convos", "nope"),
				wp(func(p *as.WritePolicy) { p.RecordExistsAction = a }), as.PutOp(as.NewBin("a", 1)))
		}
		expect := func(gen uint32) *as.WritePolicy {
			return wp(func(p *as.WritePolicy) { p.GenerationPolicy, p.Generation = as.EXPECT_GEN_EQUAL, gen })
		}
		f.operate("expect the current generation", k, expect(3), as.PutOp(as.NewBin("d", 4)))
		f.operate("expect a stale generation", k, expect(3), as.PutOp(as.NewBin("d", 5)))
		f.operate("expect generation 1 of a missing record", f.key("convos", "nope"), expect(1), as.PutOp(as.NewBin("a", 1)))
		f.operate("expect generation 0 of a missing record", f.key("convos", "nope0"), expect(0), as.PutOp(as.NewBin("a", 1)))
		f.operate("replace with a bin removal", k, wp(func(p *as.WritePolicy) { p.RecordExistsAction = as.REPLACE }),
			as.PutOp(as.NewBin("a", 1)), as.PutOp(as.NewBin("b", nil)))
		f.operate("only a removal, missing record", f.key("convos", "nope"), wp(nil), as.PutOp(as.NewBin("a", nil)))
		f.operate("remove the last bins", k, wp(nil), as.PutOp(as.NewBin("c", nil)), as.PutOp(as.NewBin("d", nil)))
		f.get("after removing every bin", k)
		f.operate("bin name of 16 bytes", k, wp(nil), as.PutOp(as.NewBin("abcdefghijklmnop", 1)))
		f.operate("bin name of 15 bytes", k, wp(nil), as.PutOp(as.NewBin("abcdefghijklmno", 1)))
	}},
	{"touch and delete", func(f *fid) {
		k := f.key("convos", "f")
		f.operate("touch a missing record", k, wp(nil), as.TouchOp())
		f.put("put", k, wp(nil), as.BinMap{"a": 1})
		f.operate("touch", k, wp(nil), as.TouchOp())
		existed, err := f.c.Delete(wp(func(p *as.WritePolicy) { p.GenerationPolicy, p.Generation = as.EXPECT_GEN_EQUAL, 1 }), k)
		f.note(fmt.Sprint("delete at a stale generation ", existed), nil, err)
		existed, err = f.c.Delete(wp(func(p *as.WritePolicy) { p.DurableDelete = true }), k)
		f.note(fmt.Sprint("durable delete ", existed), nil, err)
		existed, err = f.c.Delete(nil, k)
		f.note(fmt.Sprint("delete ", existed), nil, err)
		existed, err = f.c.Delete(nil, k)
		f.note(fmt.Sprint("delete again ", existed), nil, err)
	}},
	{"TTLs", func(f *fid) {
		k := f.key("users", "g")
		ttl := func(e uint32) *as.WritePolicy { return wp(func(p *as.WritePolicy) { p.Expiration = e }) }
		f.operate("create with the namespace default", k, ttl(as.TTLServerDefault), as.PutOp(as.NewBin("a", 1)), as.GetHeaderOp())
		f.operate("update with 10 minutes", k, ttl(600), as.PutOp(as.NewBin("a", 2)), as.GetHeaderOp())
		f.operate("update, TTL unchanged", k, ttl(as.TTLDontUpdate), as.PutOp(as.NewBin("a", 3)), as.GetHeaderOp())
		f.operate("update with the default", k, ttl(as.TTLServerDefault), as.PutOp(as.NewBin("a", 4)), as.GetHeaderOp())
		f.operate("update to never", k, ttl(600), as.PutOp(as.NewBin("a", 5)))
		f.operate("", k, ttl(as.TTLDontExpire), as.PutOp(as.NewBin("a", 6)), as.GetHeaderOp())
		f.operate("create, TTL unchanged", f.key("users", "g2"), ttl(as.TTLDontUpdate), as.PutOp(as.NewBin("a", 1)), as.GetHeaderOp())
		f.operate("map op, TTL unchanged", k, ttl(as.TTLDontUpdate), as.MapPutOp(as.DefaultMapPolicy(), "m", "k", 1), as.GetHeaderOp())
		f.operate("TTL of eleven years", k, ttl(11*365*24*3600), as.PutOp(as.NewBin("a", 1)))
		f.operate("TTL in convos", f.key("convos", "g"), ttl(600), as.PutOp(as.NewBin("a", 1)), as.GetHeaderOp())
	}},
	{"sizes", func(f *fid) {
		k := f.key("convos", "h")
		f.operate("a 1 MiB bin", k, wp(nil), as.PutOp(as.NewBin("a", make([]byte, 1<<20))))
		f.operate("a 900 KiB bin", k, wp(nil), as.PutOp(as.NewBin("a", make([]byte, 900<<10))))
		f.operate("header after", k, wp(nil), as.GetHeaderOp())
	}},
}

// runScenarios runs every scenario on a server at addr, each in its own set.
func runScenarios(t *testing.T, addr string, run string) map[string]string {
	t.Helper()
	policy := as.NewClientPolicy()
	policy.Timeout = 10 * time.Second
	h, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	c, err := as.NewClientWithPolicyAndHost(policy, as.NewHost(h, p))
	if err != nil {
		t.Fatalf("connecting to %s: %v", addr, err)
	}
	defer c.Close()
	out := map[string]string{}
	for i, s := range fidelityScenarios {
		f := &fid{t: t, c: c, set: fmt.Sprintf("fid%s%d", run, i)}
		s.run(f)
		out[s.name] = f.out.String()
	}
	return out
}

func TestFidelityToARealNode(t *testing.T) {
	real := asdnode.Start(t, asdnode.Options{})
	srv, err := Start(Config{Namespaces: map[string]NamespaceConfig{
		"users":  {NsupPeriod: 120 * time.Second},
		"convos": {NsupPeriod: 120 * time.Second},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	run := fmt.Sprint(time.Now().UnixNano())
	want := runScenarios(t, real.Nodes[0].Addr(), run)
	for _, s := range fidelityScenarios {
		t.Logf("%s\n%s", s.name, want[s.name])
	}
	got := runScenarios(t, srv.Addr(), run)
	for _, s := range fidelityScenarios {
		if got[s.name] != want[s.name] {
			t.Errorf("%s: aerotest differs from the real node\n%s", s.name, lineDiff(want[s.name], got[s.name]))
		}
	}
}

// lineDiff shows the real node's lines and aerotest's where they differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "  real:     %s\n  aerotest: %s\n", wl, gl)
		}
	}
	return b.String()
}

var _ = types.OK
