package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/aerospike/aerospike-client-go/v7/types"
)

// aerospikeQuickStore keeps quick-store records in Aerospike (client v7). Every Put is one
// Operate command, because the server answers a write with the record's new generation and
// Operate is the call that hands it back (Put discards it).
//
// Policies, and why each is set as it is:
//
//   - Timeouts. Each attempt may wait aerospikeSocketTimeout (1 s) on its socket, and a whole
//     store call, retries and checks included, aerospikeTotalTimeout (2 s), or less when the
//     caller's context has an earlier deadline. A healthy server answers in a millisecond;
//     without these bounds a chat request would hang on a dead server instead of answering an
//     error. The client policy's Timeout (5 s) bounds connecting, seeding and the tend's info
//     requests.
//   - Retries. The client retries a command after a network error or timeout (not after a
//     server's answer), and such an error may come after the server applied the command. So
//     a command is retried blindly only if running it twice cannot change the data or the
//     answer: reads (Get) and the writes that just write the same bins again (Upsert, Replace,
//     UpdateOnly, ReplaceOnly without an expected generation) get up to aerospikeAttempts
//     attempts within the total timeout. A create-only write, a write with an expected
//     generation, and every Delete get one attempt: retrying a create that did happen would
//     answer ErrExists to its own creator, retrying an applied compare-and-set would answer
//     ErrGeneration and make the caller's read-modify-write loop apply its change twice, and
//     retrying an applied delete would answer "did not exist". When such a command fails in
//     doubt, the store reads the record, and sends the command again only if the read proves
//     it did not happen (the expected generation is still there, or the record to create is
//     still missing). That is what the first commands after a server restart need: they go
//     out on pooled connections the server closed, and never reach it. Otherwise the error
//     says the outcome is unknown, so the caller re-reads instead of guessing. (The v7 client
//     counts MaxRetries as attempts: MaxRetries 0 and 1 both mean one attempt.)
//   - CommitLevel COMMIT_ALL: a write is acknowledged only once every replica has it, so a
//     write we answered as done survives the loss of the node that took it.
//   - SendKey: the user key is stored with the record, so records can be inspected with aql or
//     asinfo by key (Aerospike otherwise keeps only the key's digest).
//   - Expiration: TTL 0 in our interface means "never", which is TTLDontExpire, not 0 (0 would
//     mean the namespace's default-ttl). A positive TTL becomes whole seconds, rounded up so a
//     record never lives shorter than asked. A TTL needs nsup-period set on the namespace in
//     aerospike.conf; otherwise the server refuses it with FAIL_FORBIDDEN, reported as such.
//   - RecordExistsAction follows PutMode one to one (UPDATE, CREATE_ONLY, UPDATE_ONLY, REPLACE,
//     REPLACE_ONLY), and GenerationPolicy is EXPECT_GEN_EQUAL when an expected generation is
//     given, so the check and the write are one atomic server-side step.
//   - DurableDelete stays off: it is an Enterprise feature, and Community Edition refuses it.
//   - Reconnection is the client's: its tend goroutine (every TendInterval, 1 s) notices when a
//     node stops and comes back, so the same store works again after an outage without a
//     restart; meanwhile commands fail within the timeouts above.
type aerospikeQuickStore struct {
	client *as.Client
	hosts  string            // for error messages
	nsMap  map[string]string // logical namespace ("users", "convos") → server namespace
}

const (
	aerospikeDefaultPort    = 3000
	aerospikeConnectTimeout = 5 * time.Second
	aerospikeSocketTimeout  = time.Second
	aerospikeTotalTimeout   = 2 * time.Second
	aerospikeAttempts       = 10 // within the total timeout; only network errors use them
	aerospikeRetrySleep     = 20 * time.Millisecond
	aerospikeMaxTTL         = 10 * 365 * 24 * time.Hour // the server refuses longer TTLs
)

// aerospikeSpec is a parsed aerospike://host:port[,host:port][?users=NS&convos=NS].
type aerospikeSpec struct {
	hosts []*as.Host
	nsMap map[string]string
}

func parseAerospikeSpec(spec string) (aerospikeSpec, error) {
	rest, ok := strings.CutPrefix(spec, "aerospike://")
	if !ok {
		return aerospikeSpec{}, fmt.Errorf("quick store %q: must start with aerospike://", spec)
	}
	hostPart, query, _ := strings.Cut(rest, "?")
	out := aerospikeSpec{nsMap: map[string]string{nsUsers: nsUsers, nsConvos: nsConvos}}
	for _, h := range strings.Split(hostPart, ",") {
		host, err := parseAerospikeHost(h)
		if err != nil {
			return aerospikeSpec{}, fmt.Errorf("quick store %q: %w", spec, err)
		}
		out.hosts = append(out.hosts, host)
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return aerospikeSpec{}, fmt.Errorf("quick store %q: %w", spec, err)
	}
	for name, v := range values {
		if _, known := out.nsMap[name]; !known || len(v) != 1 || v[0] == "" || len(v[0]) > 31 {
			return aerospikeSpec{}, fmt.Errorf("quick store %q: options are users=NAMESPACE and convos=NAMESPACE, once each", spec)
		}
		out.nsMap[name] = v[0]
	}
	return out, nil
}

// parseAerospikeHost reads host[:port], port 3000 by default; IPv6 hosts go in brackets.
func parseAerospikeHost(s string) (*as.Host, error) {
	if s == "" {
		return nil, errors.New("empty host")
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		host, portStr = strings.Trim(s, "[]"), strconv.Itoa(aerospikeDefaultPort)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 || host == "" {
		return nil, fmt.Errorf("bad host %q: want host or host:port", s)
	}
	return as.NewHost(host, port), nil
}

// waitForAerospike opens the store, trying again with back-off for up to wait: a node that has
// just started refuses clients for a few seconds ("not yet fully initialized"), and pingedchat
// started together with Aerospike should wait for it rather than exit. A bad spec or a missing
// namespace is not worth waiting for.
func waitForAerospike(ctx context.Context, spec string, wait time.Duration) (QuickStore, error) {
	if _, err := parseAerospikeSpec(spec); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	pause := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		q, err := openAerospikeQuickStore(ctx, spec)
		var ae *aerospikeError
		if err == nil || !errors.As(err, &ae) || !ae.unavailable || time.Now().Add(pause).After(deadline) {
			return q, err
		}
		slog.Warn("Aerospike is not ready; waiting", "attempt", attempt, "err", err, "gives_up_in", time.Until(deadline).Round(time.Second))
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pause):
		}
		pause = min(2*pause, 4*time.Second)
	}
}

// openAerospikeQuickStore connects to the cluster that spec names and checks that it has the
// namespaces the store uses.
func openAerospikeQuickStore(ctx context.Context, spec string) (QuickStore, error) {
	cfg, err := parseAerospikeSpec(spec)
	if err != nil {
		return nil, err
	}
	hosts := aerospikeHostList(cfg.hosts)
	policy := as.NewClientPolicy()
	policy.Timeout = aerospikeTimeout(ctx, aerospikeConnectTimeout)
	policy.FailIfNotConnected = true
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("connecting to Aerospike at %s: %w", hosts, err)
	}
	client, aerr := as.NewClientWithPolicyAndHost(policy, cfg.hosts...)
	if aerr != nil {
		return nil, &aerospikeError{err: aerr, unavailable: true, msg: fmt.Sprintf("connecting to Aerospike at %s: %s; "+
			"is the server running and reachable there? Start it, fix the -quickstore address, "+
			"or use -quickstore postgres", hosts, briefAerospikeError(aerr))}
	}
	s := &aerospikeQuickStore{client: client, hosts: hosts, nsMap: cfg.nsMap}
	if err := s.checkNamespaces(); err != nil {
		client.Close()
		return nil, err
	}
	return s, nil
}

func aerospikeHostList(hosts []*as.Host) string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = net.JoinHostPort(h.Name, strconv.Itoa(h.Port))
	}
	return strings.Join(names, ",")
}

// checkNamespaces fails start-up clearly when the server lacks a namespace, instead of every
// later command failing with INVALID_NAMESPACE.
func (s *aerospikeQuickStore) checkNamespaces() error {
	nodes := s.client.GetNodes()
	if len(nodes) == 0 {
		return fmt.Errorf("aerospike at %s: no cluster node is reachable", s.hosts)
	}
	info, err := nodes[0].RequestInfo(as.NewInfoPolicy(), "namespaces")
	if err != nil {
		return fmt.Errorf("asking Aerospike at %s for its namespaces: %w", s.hosts, err)
	}
	have := strings.Split(info["namespaces"], ";")
	for _, logical := range []string{nsUsers, nsConvos} {
		name := s.nsMap[logical]
		if !slices.Contains(have, name) {
			return fmt.Errorf("aerospike at %s has no namespace %q for %s records (it has %q): "+
				"add it to aerospike.conf, or name another with ?%s=NAMESPACE", s.hosts, name, logical, info["namespaces"], logical)
		}
	}
	return nil
}

// Close stops the client's tend goroutine and closes its connections.
func (s *aerospikeQuickStore) Close() { s.client.Close() }

func (s *aerospikeQuickStore) key(key Key) (*as.Key, error) {
	ns, ok := s.nsMap[key.Namespace]
	if !ok {
		return nil, fmt.Errorf("unknown quick-store namespace %q (want %s or %s)", key.Namespace, nsUsers, nsConvos)
	}
	k, err := as.NewKey(ns, key.Set, key.Key)
	if err != nil {
		return nil, fmt.Errorf("building Aerospike key: %w", err)
	}
	return k, nil
}

// aerospikeTimeout is d, or less if ctx ends sooner (but at least a millisecond, so that a
// context about to end still gets a clear timeout error rather than no bound at all).
func aerospikeTimeout(ctx context.Context, d time.Duration) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		if left := time.Until(deadline); left < d {
			return max(left, time.Millisecond)
		}
	}
	return d
}

// aerospikeDeadline is when a whole store call must be done, retries and checks included.
func aerospikeDeadline(ctx context.Context) time.Time {
	return time.Now().Add(aerospikeTimeout(ctx, aerospikeTotalTimeout))
}

// aerospikeBasePolicy is the policy every command starts from (see the type's comment for why): its
// total timeout is what is left until the call's deadline.
func aerospikeBasePolicy(deadline time.Time, attempts int) as.BasePolicy {
	p := *as.NewPolicy()
	p.SocketTimeout = aerospikeSocketTimeout
	p.TotalTimeout = max(time.Until(deadline), time.Millisecond)
	p.MaxRetries = attempts
	p.SleepBetweenRetries = aerospikeRetrySleep
	return p
}

// get and operateRaw are the only ways this backend reads records from the client. A real
// server answers an operate with respond-all-ops (which the client sets for any map
// operation) with a bin for every operation, nil where a bin is missing or the operation
// returns nothing; to the store a nil bin is an absent bin, so it is dropped here, once,
// before any code looks at the bins (tombstone checks, GetBins, map sizes, ModifyMaps).
func (s *aerospikeQuickStore) get(policy *as.BasePolicy, k *as.Key) (*as.Record, as.Error) {
	rec, err := s.client.Get(policy, k)
	return withoutNilBins(rec), err
}

func (s *aerospikeQuickStore) operateRaw(policy *as.WritePolicy, k *as.Key, ops ...*as.Operation) (*as.Record, as.Error) {
	rec, err := s.client.Operate(policy, k, ops...)
	return withoutNilBins(rec), err
}

func withoutNilBins(rec *as.Record) *as.Record {
	if rec != nil {
		maps.DeleteFunc(rec.Bins, func(_ string, v any) bool { return v == nil })
	}
	return rec
}

func (s *aerospikeQuickStore) Get(ctx context.Context, key Key) (*Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	k, err := s.key(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	rec, aerr := s.liveRecord(aerospikeDeadline(ctx), k)
	if aerr != nil {
		return nil, fmt.Errorf("get %s: %w", key, s.translate(aerr, false, false))
	}
	if rec == nil {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	bins, err := binsFromAerospike(rec.Bins)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return &Record{Bins: bins, Generation: rec.Generation}, nil
}

// GetBins reads the named bins and the map sizes in one Operate, with the tombstone bin.
func (s *aerospikeQuickStore) GetBins(ctx context.Context, key Key, names []string, sizeOf ...string) (*Record, error) {
	if err := checkGetBins(names, sizeOf); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	k, err := s.key(key)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	ops := []*as.Operation{as.GetBinOp(tombstoneBin)}
	for _, n := range names {
		ops = append(ops, as.GetBinOp(n))
	}
	for _, n := range sizeOf {
		ops = append(ops, as.MapSizeOp(n))
	}
	deadline := aerospikeDeadline(ctx)
	policy := as.NewWritePolicy(0, 0) // Operate takes a write policy; these ops only read
	policy.BasePolicy = aerospikeBasePolicy(deadline, aerospikeAttempts)
	rec, aerr := retryTransient(deadline, func() (*as.Record, as.Error) { return s.operateRaw(policy, k, ops...) })
	if aerospikeResultCode(aerr) == types.KEY_NOT_FOUND_ERROR || (aerr == nil && isTombstone(rec.Bins)) {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if aerr != nil {
		return nil, fmt.Errorf("get %s: %w", key, s.translate(aerr, false, false))
	}
	sizes := make(map[string]int64, len(sizeOf))
	for _, n := range sizeOf {
		v, _ := rec.Bins[n].(int)
		sizes[n] = int64(v)
		delete(rec.Bins, n)
	}
	bins, err := binsFromAerospike(rec.Bins)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	return &Record{Bins: bins, Generation: rec.Generation, Sizes: sizes}, nil
}

// GetMany reads the records concurrently, each as Get does. (A batch read would be one
// command, but the test server does not speak batch; at the sizes used here — a user's
// conversations — concurrent reads cost about the same.)
func (s *aerospikeQuickStore) GetMany(ctx context.Context, keys []Key) ([]*Record, error) {
	out := make([]*Record, len(keys))
	err := forEachConcurrently(ctx, len(keys), func(i int) error {
		rec, err := s.Get(ctx, keys[i])
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		out[i] = rec
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (s *aerospikeQuickStore) Put(ctx context.Context, key Key, bins Bins, opts PutOptions) (uint32, error) {
	if err := checkPut(bins, opts); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	k, err := s.key(key)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	deadline := aerospikeDeadline(ctx)
	policy, err := aerospikeWritePolicy(deadline, opts)
	if err != nil {
		return 0, fmt.Errorf("put %s: %w", key, err)
	}
	ops := aerospikePutOps(bins, opts.Mode == Replace || opts.Mode == ReplaceOnly)
	if len(ops) == 0 {
		return 0, fmt.Errorf("put %s: %w: no bin to write (Aerospike keeps no record without bins)", key, ErrBadBin)
	}
	if (opts.Mode == UpdateOnly || opts.Mode == ReplaceOnly) && opts.Generation == 0 {
		rec, err := s.mustExistWrite(deadline, k, ops, opts)
		if err != nil {
			return 0, fmt.Errorf("put %s: %w", key, err)
		}
		return rec.Generation, nil
	}
	for {
		rec, err := s.operate(deadline, k, policy, ops, opts)
		if errors.Is(err, ErrExists) && opts.Mode == CreateOnly {
			rec, err = s.createOverTombstone(deadline, k, bins, opts)
			if errors.Is(err, errRetryCreate) {
				continue
			}
		}
		if err != nil {
			return 0, fmt.Errorf("put %s: %w", key, err)
		}
		return rec.Generation, nil
	}
}

// operate runs one write: retried after a transient answer, resent after an in-doubt failure
// only when a read proves it did not happen.
func (s *aerospikeQuickStore) operate(deadline time.Time, k *as.Key, policy *as.WritePolicy, ops []*as.Operation, opts PutOptions) (*as.Record, error) {
	once := policy.MaxRetries == 0
	rec, aerr := retryTransient(deadline, func() (*as.Record, as.Error) { return s.operateRaw(policy, k, ops...) })
	for once && s.shouldResend(aerr, deadline, k, opts.Generation, opts.Mode == CreateOnly) {
		policy.BasePolicy = aerospikeBasePolicy(deadline, 0)
		rec, aerr = s.operateRaw(policy, k, ops...)
	}
	if aerr != nil {
		return nil, s.translate(aerr, true, opts.Generation != 0)
	}
	return rec, nil
}

// shouldResend decides whether to send again a write that may not be retried blindly: only if
// it failed in doubt and a read proves that it did not happen, because the record still has
// the generation the write expected (every write bumps it) or the record it was to create is
// still missing. The read is repeated, within the deadline, while it too fails on the network:
// after a server restart several pooled connections may be dead in a row.
func (s *aerospikeQuickStore) shouldResend(aerr as.Error, deadline time.Time, k *as.Key, expectGen uint32, create bool) bool {
	if aerr == nil || !aerr.IsInDoubt() {
		return false
	}
	for time.Now().Before(deadline) {
		policy := aerospikeBasePolicy(deadline, aerospikeAttempts)
		rec, err := s.client.GetHeader(&policy, k)
		switch {
		case err == nil:
			return expectGen != 0 && rec.Generation == expectGen
		case aerospikeResultCode(err) == types.KEY_NOT_FOUND_ERROR:
			return create && expectGen == 0
		}
	}
	return false
}

// aerospikeResultCode is the result code of the client's latest error.
func aerospikeResultCode(err error) types.ResultCode {
	var ae *as.AerospikeError
	if errors.As(err, &ae) {
		return ae.ResultCode
	}
	return types.COMMON_ERROR
}

// aerospikeWritePolicy turns PutOptions into the client's write policy.
func aerospikeWritePolicy(deadline time.Time, opts PutOptions) (*as.WritePolicy, error) {
	exp, err := aerospikeExpiration(opts.TTL)
	if err != nil {
		return nil, err
	}
	p := as.NewWritePolicy(0, exp)
	attempts := aerospikeAttempts
	if opts.Mode == CreateOnly || opts.Generation != 0 {
		attempts = 0 // not idempotent: see the type's comment
	}
	p.BasePolicy = aerospikeBasePolicy(deadline, attempts)
	p.CommitLevel = as.COMMIT_ALL
	p.SendKey = true
	p.RecordExistsAction = recordExistsAction(opts.Mode)
	if opts.Generation != 0 {
		p.GenerationPolicy = as.EXPECT_GEN_EQUAL
		p.Generation = opts.Generation
	}
	return p, nil
}

// aerospikeExpiration converts our TTL (0 = forever) into Aerospike's, in whole seconds rounded up.
func aerospikeExpiration(ttl time.Duration) (uint32, error) {
	if ttl <= 0 {
		return as.TTLDontExpire, nil
	}
	if ttl > aerospikeMaxTTL {
		return 0, fmt.Errorf("TTL %v is longer than Aerospike's maximum of ten years", ttl)
	}
	return uint32((ttl + time.Second - 1) / time.Second), nil
}

func recordExistsAction(mode PutMode) as.RecordExistsAction {
	switch mode {
	case CreateOnly:
		return as.CREATE_ONLY
	case UpdateOnly:
		return as.UPDATE_ONLY
	case Replace:
		return as.REPLACE
	case ReplaceOnly:
		return as.REPLACE_ONLY
	}
	return as.UPDATE
}

// aerospikePutOps writes each bin; a nil bin removes it. A replace drops the nil bins: it removes every
// bin it does not write anyway, and the server refuses a bin removal inside a replace.
func aerospikePutOps(bins Bins, replace bool) []*as.Operation {
	ops := make([]*as.Operation, 0, len(bins)+1)
	for name, v := range bins {
		if v == nil && replace {
			continue
		}
		ops = append(ops, as.PutOp(as.NewBin(name, v)))
	}
	if !replace && len(ops) > 0 {
		// A merge over a tombstone must not keep its mark (quickstore_aerospike_deletes.go).
		ops = append(ops, as.PutOp(as.NewBin(tombstoneBin, nil)))
	}
	return ops
}

// translate maps a client error onto the store's errors. A missing record under an expected
// generation is a generation mismatch, as the interface says. Other errors keep the client's
// error underneath (for errors.As) but read as one short line: the client chains an error for
// every retry, which can make its own message hundreds of lines long.
func (s *aerospikeQuickStore) translate(err as.Error, write, withGeneration bool) error {
	var ae *as.AerospikeError
	if !errors.As(err, &ae) {
		return fmt.Errorf("aerospike at %s: %w", s.hosts, err)
	}
	switch ae.ResultCode {
	case types.KEY_NOT_FOUND_ERROR:
		if withGeneration {
			return ErrGeneration
		}
		return ErrNotFound
	case types.GENERATION_ERROR:
		return ErrGeneration
	case types.KEY_EXISTS_ERROR:
		return ErrExists
	case types.BIN_NAME_TOO_LONG, types.BIN_TYPE_ERROR:
		return fmt.Errorf("%w: %w", ErrBadBin, &aerospikeError{msg: "aerospike answered " + ae.ResultCode.String(), err: err})
	}
	return &aerospikeError{msg: s.describe(ae, err, write), err: err, unavailable: aerospikeUnavailable(ae.ResultCode)}
}

// aerospikeUnavailable reports whether a result code means that the cluster could not serve
// the command just now (a node down or restarting, partitions migrating, an overload), as
// opposed to an answer about the record or the request. The client reports its own failures
// (network, no connection, retries exhausted) with negative codes.
func aerospikeUnavailable(code types.ResultCode) bool {
	switch code {
	case types.TIMEOUT, types.PARTITION_UNAVAILABLE, types.CLUSTER_KEY_MISMATCH, types.KEY_BUSY,
		types.DEVICE_OVERLOAD, types.SERVER_MEM_ERROR:
		return true
	case types.SERIALIZE_ERROR, types.PARSE_ERROR, types.TYPE_NOT_SUPPORTED, types.CLUSTER_NAME_MISMATCH_ERROR,
		types.RECORDSET_CLOSED, types.QUERY_TERMINATED, types.SCAN_TERMINATED:
		return false
	}
	return code < 0
}

// aerospikeTransientAnswer reports whether err is the server's answer that it could not serve a
// command now: such a command was not applied, so it may be sent again, whatever it is.
func aerospikeTransientAnswer(err as.Error) bool {
	if err == nil || err.IsInDoubt() {
		return false
	}
	switch aerospikeResultCode(err) {
	case types.PARTITION_UNAVAILABLE, types.CLUSTER_KEY_MISMATCH, types.KEY_BUSY, types.DEVICE_OVERLOAD:
		return true
	}
	return false
}

// retryTransient runs cmd again, with back-off, while the cluster answers that it cannot serve
// it yet (for about two seconds after a node restarts, reads answer PARTITION_UNAVAILABLE), until
// the deadline.
func retryTransient[T any](deadline time.Time, cmd func() (T, as.Error)) (T, as.Error) {
	wait := 25 * time.Millisecond
	for {
		v, err := cmd()
		if !aerospikeTransientAnswer(err) || time.Now().Add(wait).After(deadline) {
			return v, err
		}
		time.Sleep(wait) // back-off before asking the cluster again
		wait = min(2*wait, 400*time.Millisecond)
	}
}

// describe says in one line what went wrong and what to do about it.
func (s *aerospikeQuickStore) describe(ae *as.AerospikeError, err error, write bool) string {
	code := ae.ResultCode.String()
	cause := briefAerospikeError(err)
	switch {
	case ae.ResultCode == types.FAIL_FORBIDDEN:
		return fmt.Sprintf("aerospike at %s refused the write (%s): a TTL needs nsup-period set on the namespace in aerospike.conf", s.hosts, code)
	case ae.ResultCode == types.RECORD_TOO_BIG:
		return fmt.Sprintf("aerospike at %s refused the write (%s): the record is larger than the namespace allows (max-record-size in aerospike.conf)", s.hosts, code)
	case ae.ResultCode != types.TIMEOUT && ae.ResultCode > 0:
		return fmt.Sprintf("aerospike at %s answered %s", s.hosts, code)
	}
	if write && ae.InDoubt {
		return fmt.Sprintf("aerospike at %s did not confirm the write (%s), so it may or may not have been applied: re-read before retrying", s.hosts, cause)
	}
	return fmt.Sprintf("aerospike at %s is unavailable (%s)", s.hosts, cause)
}

// briefAerospikeError is a client error's result code and, if there is one, the innermost error
// below the client's chain (such as EOF or a refused connection), on one line.
func briefAerospikeError(err error) string {
	var ae *as.AerospikeError
	if !errors.As(err, &ae) {
		return err.Error()
	}
	brief := ae.ResultCode.String()
	for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
		if _, ok := e.(*as.AerospikeError); !ok {
			return brief + "; last cause: " + strings.ReplaceAll(e.Error(), "\n", " ")
		}
	}
	return brief
}

// aerospikeError reads as msg and unwraps to the client's error; it is ErrUnavailable when the
// server could not be reached or did not answer in time.
type aerospikeError struct {
	msg         string
	err         error
	unavailable bool
}

func (e *aerospikeError) Error() string        { return e.msg }
func (e *aerospikeError) Unwrap() error        { return e.err }
func (e *aerospikeError) Is(target error) bool { return e.unavailable && target == ErrUnavailable }

// binsFromAerospike converts what the client decodes (int, []interface{},
// map[interface{}]interface{}) into the types the interface promises (int64, []any,
// map[string]any), which is also what the PostgreSQL store returns.
func binsFromAerospike(in as.BinMap) (Bins, error) {
	out := make(Bins, len(in))
	for name, v := range in {
		x, err := valueFromAerospike(v)
		if err != nil {
			return nil, fmt.Errorf("bin %q: %w", name, err)
		}
		out[name] = x
	}
	return out, nil
}

func valueFromAerospike(v any) (any, error) {
	switch x := v.(type) {
	case string, int64:
		return x, nil
	case int:
		return int64(x), nil
	case []byte:
		if x == nil {
			return []byte{}, nil
		}
		return x, nil
	case []any:
		return listFromAerospike(x)
	case map[any]any:
		return mapFromAerospike(x)
	}
	return nil, fmt.Errorf("%w: %T, written by something other than this store", ErrBadBin, v)
}

func listFromAerospike(in []any) ([]any, error) {
	out := make([]any, len(in))
	for i, e := range in {
		x, err := valueFromAerospike(e)
		if err != nil {
			return nil, err
		}
		out[i] = x
	}
	return out, nil
}

func mapFromAerospike(in map[any]any) (map[string]any, error) {
	out := make(map[string]any, len(in))
	for k, e := range in {
		name, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("%w: map key of type %T", ErrBadBin, k)
		}
		x, err := valueFromAerospike(e)
		if err != nil {
			return nil, err
		}
		out[name] = x
	}
	return out, nil
}
