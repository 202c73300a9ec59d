package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the server's Prometheus metrics. They live on a private registry rather than the
// global default one, so that a test binary can start many servers without duplicate
// registrations. Every method is safe on a nil *Metrics, so code paths that run without metrics
// (tools, tests that build a Database by hand) need no checks.
type Metrics struct {
	reg *prometheus.Registry

	sessions         prometheus.Gauge
	commands         *prometheus.CounterVec
	deliverLatency   prometheus.Histogram
	sendPhases       *prometheus.SummaryVec
	storeErrors      *prometheus.CounterVec
	natsErrors       prometheus.Counter
	scheduledBacklog prometheus.Gauge
	connsRefused     prometheus.Counter
	insertGroups     prometheus.Histogram
	mail             *prometheus.CounterVec

	// knownCommands bounds the cmd label: a client can send any string as cmd, and one series
	// per distinct string would let it grow the server's memory without limit.
	knownCommands map[string]bool
}

// Command outcomes, the values of the commands counter's outcome label.
const (
	outcomeOK          = "ok"
	outcomeError       = "error"
	outcomeRateLimited = "rate_limited"
	outcomePanic       = "panic"
)

// Stores, the values of the store-errors counter's store label.
const (
	storePostgres   = "postgres"
	storeQuickStore = "quickstore"
)

// unknownLabel stands for any command name or store that is not known in advance.
const unknownLabel = "unknown"

// deliverBuckets spans a loopback delivery (well under a millisecond) to a badly backed-up one
// (seconds); the 25 ms bucket edge matches the p99 target of BENCHMARKS.md.
var deliverBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// newMetrics makes the metrics on a fresh registry, with the Go runtime and process collectors
// beside them. Call it after package initialisation: it reads the command maps.
func newMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinged_sessions",
			Help: "Open SockJS sessions, logged in or not.",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinged_commands_total",
			Help: "Commands received, by command name (unknown for names the server does not know) and outcome (ok, error, rate_limited, panic).",
		}, []string{"cmd", "outcome"}),
		deliverLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pinged_deliver_latency_seconds",
			Help:    "Time from a message's m_time to the moment a session forwards it to its client.",
			Buckets: deliverBuckets,
		}),
		sendPhases: prometheus.NewSummaryVec(prometheus.SummaryOpts{
			Name:       "pinged_send_phase_seconds",
			Help:       "Where a SendMessage's time goes on the sending instance: check (membership and content), store (waiting for its group, insert, commit), publish (the fan-out and what follows a stored message).",
			Objectives: map[float64]float64{0.5: 0.01, 0.99: 0.001},
			MaxAge:     time.Minute,
		}, []string{"phase"}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinged_store_errors_total",
			Help: "Failed operations on a store (postgres or quickstore).",
		}, []string{"store"}),
		natsErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinged_nats_errors_total",
			Help: "NATS errors: failed publishes and asynchronous errors such as slow consumers.",
		}),
		scheduledBacklog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinged_scheduled_backlog",
			Help: "Scheduled messages that were due at the scheduler's last run and not yet delivered.",
		}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinged_conns_refused_total",
			Help: "Connections closed on accept because their address had -max-conns-per-addr open.",
		}),
		insertGroups: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "pinged_insert_group_size",
			Help:    "Messages written to one conversation in one commit (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		mail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinged_mail_total",
			Help: "Mail handled, by outcome: sent, retry, bounced (the relay), received, dropped (inbound for nobody or refused), sms (bridge messages queued).",
		}, []string{"outcome"}),
		knownCommands: knownCommandNames(),
	}
	m.reg.MustRegister(m.sessions, m.commands, m.deliverLatency, m.sendPhases, m.storeErrors, m.natsErrors,
		m.scheduledBacklog, m.connsRefused, m.insertGroups, m.mail, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// knownCommandNames is every command a session can send, before or after login.
func knownCommandNames() map[string]bool {
	known := make(map[string]bool, len(functs)+len(handshakeFuncts))
	for name := range functs {
		known[name] = true
	}
	for name := range handshakeFuncts {
		known[name] = true
	}
	return known
}

// mailSent counts mail handled, by outcome.
func (m *Metrics) mailSent(outcome string) {
	if m != nil {
		m.mail.WithLabelValues(outcome).Inc()
	}
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *Metrics) sessionOpened() {
	if m != nil {
		m.sessions.Inc()
	}
}

func (m *Metrics) sessionClosed() {
	if m != nil {
		m.sessions.Dec()
	}
}

// command counts one command with its outcome; names the server does not know count as unknown.
func (m *Metrics) command(cmd, outcome string) {
	if m == nil {
		return
	}
	if !m.knownCommands[cmd] {
		cmd = unknownLabel
	}
	m.commands.WithLabelValues(cmd, outcome).Inc()
}

// delivered records the latency of one message forwarded to a client, from its m_time.
func (m *Metrics) delivered(mtime time.Time) {
	if m != nil {
		m.deliverLatency.Observe(time.Since(mtime).Seconds())
	}
}

// Phases of a SendMessage, the sendPhases label: the checks; the store (waiting for its group,
// the insert, the commit, and the group's publishes, which the writer makes in commit order);
// what follows (notifications, bots, autoreplies).
const (
	phaseCheck   = "check"
	phaseStore   = "store"
	phasePublish = "publish"
)

// sendPhase records how long one phase of a SendMessage took, since start; it returns now, the
// next phase's start.
func (m *Metrics) sendPhase(phase string, start time.Time) time.Time {
	now := time.Now()
	if m != nil {
		m.sendPhases.WithLabelValues(phase).Observe(now.Sub(start).Seconds())
	}
	return now
}

// mtimeKey is how a marshalled Message names its m_time. A content string cannot contain it:
// JSON escapes the quotes inside a string, so the first match is the real key.
var mtimeKey = []byte(`"m_time":"`)

// deliveredPayload records the latency of a forwarded event if it is a message, reading its
// m_time from the marshalled bytes: sessions forward the bytes as they are and never decode
// them, and a full decode per delivery would cost more than the send itself. Other events
// (conversation updates spell it M_time) are ignored.
func (m *Metrics) deliveredPayload(payload []byte) {
	if m == nil {
		return
	}
	i := bytes.Index(payload, mtimeKey)
	if i < 0 {
		return
	}
	rest := payload[i+len(mtimeKey):]
	if len(rest) < len(timeLayout) {
		return
	}
	t, err := time.Parse(timeLayout, string(rest[:len(timeLayout)]))
	if err != nil {
		return
	}
	m.delivered(t)
}

// storeError counts one failed store operation; store is storePostgres or storeQuickStore.
func (m *Metrics) storeError(store string) {
	if m == nil {
		return
	}
	if store != storePostgres && store != storeQuickStore {
		store = unknownLabel
	}
	m.storeErrors.WithLabelValues(store).Inc()
}

func (m *Metrics) connRefused() {
	if m != nil {
		m.connsRefused.Inc()
	}
}

func (m *Metrics) insertGroup(n int) {
	if m != nil {
		m.insertGroups.Observe(float64(n))
	}
}

func (m *Metrics) natsError() {
	if m != nil {
		m.natsErrors.Inc()
	}
}

// setScheduledBacklog records how many scheduled messages are due and not yet delivered.
func (m *Metrics) setScheduledBacklog(n int) {
	if m != nil {
		m.scheduledBacklog.Set(float64(n))
	}
}

// pgTracer counts failed PostgreSQL statements as store errors; set it as the pool's
// ConnConfig.Tracer. Statements on the quickstore table count for the quick store (the default
// backend shares the pool), everything else for postgres. A cancelled context is the client or
// the server going away, not a store failure, so it is not counted.
func (m *Metrics) pgTracer() pgx.QueryTracer {
	return &pgTracer{m: m}
}

type pgTracer struct{ m *Metrics }

// quickstoreStatement marks, in a traced statement's context, one that touches the quickstore
// table; only those carry a value, so ordinary statements allocate nothing.
type quickstoreStatement struct{}

func (t *pgTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if strings.Contains(data.SQL, "quickstore") {
		return context.WithValue(ctx, quickstoreStatement{}, true)
	}
	return ctx
}

func (t *pgTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	if !countable(data.Err) {
		return
	}
	if ctx.Value(quickstoreStatement{}) != nil {
		t.m.storeError(storeQuickStore)
		return
	}
	t.m.storeError(storePostgres)
}

// batchEnded is set, in a batch's context, once the batch's end has been seen: pgx v5.12 traces
// the end of a batch that fails before it is sent twice (in SendBatch and again in Close).
type batchEnded struct{}

// Batches (message inserts) are counted once, at their end: after a failed statement the rest
// of the batch fails too, and that is one failure.
func (t *pgTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return context.WithValue(ctx, batchEnded{}, new(atomic.Bool))
}

func (t *pgTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (t *pgTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	if ended, ok := ctx.Value(batchEnded{}).(*atomic.Bool); ok && ended.Swap(true) {
		return
	}
	if countable(data.Err) {
		t.m.storeError(storePostgres)
	}
}

// countable tells store failures from outcomes that are not: success, and cancellation.
func countable(err error) bool {
	return err != nil && !errors.Is(err, context.Canceled)
}

// wrapQuickStore counts a quick-store backend's failures as store errors; it is for backends
// that do not go through the pgx pool (Aerospike), whose errors pgTracer already counts. The
// interface's expected outcomes (not found, exists, generation mismatch) are not failures.
func (m *Metrics) wrapQuickStore(q QuickStore) QuickStore {
	if m == nil {
		return q
	}
	return &countingQuickStore{QuickStore: q, m: m}
}

type countingQuickStore struct {
	QuickStore
	m *Metrics
}

func (c *countingQuickStore) count(err error) error {
	if countable(err) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrExists) && !errors.Is(err, ErrGeneration) {
		c.m.storeError(storeQuickStore)
	}
	return err
}

func (c *countingQuickStore) Get(ctx context.Context, key Key) (*Record, error) {
	r, err := c.QuickStore.Get(ctx, key)
	return r, c.count(err)
}

func (c *countingQuickStore) Put(ctx context.Context, key Key, bins Bins, opts PutOptions) (uint32, error) {
	gen, err := c.QuickStore.Put(ctx, key, bins, opts)
	return gen, c.count(err)
}

func (c *countingQuickStore) GetBins(ctx context.Context, key Key, names []string, sizeOf ...string) (*Record, error) {
	r, err := c.QuickStore.GetBins(ctx, key, names, sizeOf...)
	return r, c.count(err)
}

func (c *countingQuickStore) GetMany(ctx context.Context, keys []Key) ([]*Record, error) {
	r, err := c.QuickStore.GetMany(ctx, keys)
	return r, c.count(err)
}

func (c *countingQuickStore) ModifyMapsMany(ctx context.Context, keys []Key, ops []MapOp) ([]error, error) {
	errs, err := c.QuickStore.ModifyMapsMany(ctx, keys, ops)
	return errs, c.count(err)
}

func (c *countingQuickStore) ModifyMaps(ctx context.Context, key Key, ops []MapOp) (uint32, error) {
	gen, err := c.QuickStore.ModifyMaps(ctx, key, ops)
	return gen, c.count(err)
}

func (c *countingQuickStore) Delete(ctx context.Context, key Key, generation uint32) (bool, error) {
	ok, err := c.QuickStore.Delete(ctx, key, generation)
	return ok, c.count(err)
}
