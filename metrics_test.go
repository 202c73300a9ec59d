package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// scrape returns the metrics handler's text output.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("metrics handler answered %d", rec.Code)
	}
	body, err := io.ReadAll(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// wantLines fails unless every line is in the scraped text.
func wantLines(t *testing.T, text string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("metrics output lacks line %q", l)
		}
	}
}

func TestMetricsSessions(t *testing.T) {
	m := newMetrics()
	m.sessionOpened()
	m.sessionOpened()
	m.sessionOpened()
	m.sessionClosed()
	wantLines(t, scrape(t, m), "# TYPE pinged_sessions gauge", "pinged_sessions 2")
}

func TestMetricsCommands(t *testing.T) {
	m := newMetrics()
	m.command("SendMessage", outcomeOK)
	m.command("SendMessage", outcomeOK)
	m.command("ValidateUser", outcomeError)
	m.command("GetConvoData", outcomeRateLimited)
	m.command("SendMessage", outcomePanic)
	// Names the server does not know share one series, whatever a client sends.
	m.command("NoSuchCommand", outcomeError)
	m.command(strings.Repeat("x", 1000), outcomeError)
	text := scrape(t, m)
	wantLines(t, text,
		"# TYPE pinged_commands_total counter",
		`pinged_commands_total{cmd="SendMessage",outcome="ok"} 2`,
		`pinged_commands_total{cmd="ValidateUser",outcome="error"} 1`,
		`pinged_commands_total{cmd="GetConvoData",outcome="rate_limited"} 1`,
		`pinged_commands_total{cmd="SendMessage",outcome="panic"} 1`,
		`pinged_commands_total{cmd="unknown",outcome="error"} 2`)
	if strings.Contains(text, "NoSuchCommand") {
		t.Error("an unknown command name became a label value")
	}
}

func TestMetricsDeliverLatency(t *testing.T) {
	m := newMetrics()
	m.delivered(time.Now().Add(-3 * time.Millisecond))
	m.delivered(time.Now().Add(-2 * time.Second))
	wantLines(t, scrape(t, m),
		"# TYPE pinged_deliver_latency_seconds histogram",
		`pinged_deliver_latency_seconds_bucket{le="0.0025"} 0`,
		`pinged_deliver_latency_seconds_bucket{le="0.005"} 1`,
		`pinged_deliver_latency_seconds_bucket{le="2.5"} 2`,
		`pinged_deliver_latency_seconds_bucket{le="+Inf"} 2`,
		"pinged_deliver_latency_seconds_count 2")
}

func TestMetricsDeliveredPayload(t *testing.T) {
	m := newMetrics()
	msg := &Message{Cmd: "SendMessage", CID: newCID(), ID: 1, FUsername: "alice",
		MTime: formatTime(time.Now().Add(-7 * time.Millisecond)),
		// Content that mimics the key must not be taken for it.
		Content: `"m_time":"1999-01-01T00:00:00.000000Z"`}
	payload, err := msg.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	m.deliveredPayload(payload)
	m.deliveredPayload([]byte(`{"cmd":"UpdateUserStatus","CID":"x","Typing":true}`))
	m.deliveredPayload([]byte(`{"cmd":"ChangeConvoName","M_time":"2024-01-01T00:00:00.000000Z"}`))
	m.deliveredPayload([]byte(`{"m_time":"garbage"}`))
	wantLines(t, scrape(t, m),
		`pinged_deliver_latency_seconds_bucket{le="0.005"} 0`,
		`pinged_deliver_latency_seconds_bucket{le="0.01"} 1`,
		"pinged_deliver_latency_seconds_count 1")
}

func TestMetricsStoreAndNATSErrors(t *testing.T) {
	m := newMetrics()
	m.storeError(storePostgres)
	m.storeError(storeQuickStore)
	m.storeError(storeQuickStore)
	m.storeError("redis")
	m.natsError()
	wantLines(t, scrape(t, m),
		"# TYPE pinged_store_errors_total counter",
		`pinged_store_errors_total{store="postgres"} 1`,
		`pinged_store_errors_total{store="quickstore"} 2`,
		`pinged_store_errors_total{store="unknown"} 1`,
		"# TYPE pinged_nats_errors_total counter",
		"pinged_nats_errors_total 1")
}

func TestMetricsScheduledBacklog(t *testing.T) {
	m := newMetrics()
	m.setScheduledBacklog(42)
	m.setScheduledBacklog(7)
	wantLines(t, scrape(t, m), "# TYPE pinged_scheduled_backlog gauge", "pinged_scheduled_backlog 7")
}

// Each server has its own registry, so several can run in one process.
func TestMetricsPrivateRegistries(t *testing.T) {
	a, b := newMetrics(), newMetrics()
	a.natsError()
	wantLines(t, scrape(t, a), "pinged_nats_errors_total 1")
	wantLines(t, scrape(t, b), "pinged_nats_errors_total 0", "pinged_sessions 0")
	if !strings.Contains(scrape(t, a), "go_goroutines") {
		t.Error("the Go runtime collector is missing")
	}
}

// A nil *Metrics is a valid no-op, for code paths that run without metrics.
func TestMetricsNilIsNoOp(t *testing.T) {
	var m *Metrics
	m.sessionOpened()
	m.sessionClosed()
	m.command("SendMessage", outcomeOK)
	m.delivered(time.Now())
	m.deliveredPayload([]byte(`{"m_time":"2024-01-01T00:00:00.000000Z"}`))
	m.storeError(storePostgres)
	m.natsError()
	m.setScheduledBacklog(1)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 404 {
		t.Errorf("nil metrics handler answered %d, want 404", rec.Code)
	}
}

func TestMetricsPgTracer(t *testing.T) {
	m := newMetrics()
	tr := m.pgTracer().(*pgTracer)
	fail := errors.New("connection reset")
	run := func(sql string, err error) {
		ctx := tr.TraceQueryStart(context.Background(), nil, pgx.TraceQueryStartData{SQL: sql})
		tr.TraceQueryEnd(ctx, nil, pgx.TraceQueryEndData{Err: err})
	}
	run("SELECT bins::text, generation FROM quickstore WHERE ns = $1", fail)
	run("SELECT id FROM conv_0123 ORDER BY m_time DESC LIMIT 50", fail)
	run("SELECT id FROM conv_0123 ORDER BY m_time DESC LIMIT 50", nil)
	run("SELECT id FROM conv_0123 ORDER BY m_time DESC LIMIT 50", context.Canceled)
	bctx := tr.TraceBatchStart(context.Background(), nil, pgx.TraceBatchStartData{})
	tr.TraceBatchQuery(bctx, nil, pgx.TraceBatchQueryData{Err: fail})
	tr.TraceBatchQuery(bctx, nil, pgx.TraceBatchQueryData{Err: fail})
	tr.TraceBatchEnd(bctx, nil, pgx.TraceBatchEndData{Err: fail})
	tr.TraceBatchEnd(bctx, nil, pgx.TraceBatchEndData{Err: fail}) // pgx may report an end twice
	wantLines(t, scrape(t, m),
		`pinged_store_errors_total{store="postgres"} 2`,
		`pinged_store_errors_total{store="quickstore"} 1`)
}

// failingStore answers every call with its error.
type failingStore struct{ err error }

func (f failingStore) Get(context.Context, Key) (*Record, error) { return nil, f.err }
func (f failingStore) Put(context.Context, Key, Bins, PutOptions) (uint32, error) {
	return 0, f.err
}
func (f failingStore) Delete(context.Context, Key, uint32) (bool, error) { return false, f.err }
func (f failingStore) Close()                                            {}
func (f failingStore) GetBins(context.Context, Key, []string, ...string) (*Record, error) {
	return nil, f.err
}
func (f failingStore) GetMany(context.Context, []Key) ([]*Record, error) { return nil, f.err }
func (f failingStore) ModifyMapsMany(context.Context, []Key, []MapOp) ([]error, error) {
	return nil, f.err
}
func (f failingStore) ModifyMaps(context.Context, Key, []MapOp) (uint32, error) {
	return 0, f.err
}

func TestMetricsWrapQuickStore(t *testing.T) {
	m := newMetrics()
	ctx := context.Background()
	for _, err := range []error{ErrNotFound, ErrExists, ErrGeneration, context.Canceled} {
		q := m.wrapQuickStore(failingStore{fmt.Errorf("get: %w", err)})
		if _, got := q.Get(ctx, Key{}); !errors.Is(got, err) {
			t.Errorf("the wrapper changed the error %v into %v", err, got)
		}
	}
	q := m.wrapQuickStore(failingStore{errors.New("timeout talking to node")})
	_, _ = q.Get(ctx, Key{})
	_, _ = q.Put(ctx, Key{}, Bins{}, PutOptions{})
	_, _ = q.Delete(ctx, Key{}, 0)
	wantLines(t, scrape(t, m), `pinged_store_errors_total{store="quickstore"} 3`)
	var none *Metrics
	if got := none.wrapQuickStore(failingStore{}); got != (failingStore{}) {
		t.Error("a nil *Metrics must not wrap the store")
	}
}

// pgx calls the tracer for real statements and batches on a pool configured with it.
func TestMetricsPgTracerOnPool(t *testing.T) {
	m := newMetrics()
	cfg, err := pgxpool.ParseConfig(testDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = m.pgTracer()
	ctx := context.Background()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "SELECT * FROM metrics_test_no_such_table"); err == nil {
		t.Fatal("a query on a missing table succeeded")
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT * FROM metrics_test_no_such_table")
	_ = pool.SendBatch(ctx, b).Close()
	wantLines(t, scrape(t, m), `pinged_store_errors_total{store="postgres"} 2`)
}

// The running server counts what happens over a real socket and serves it at /metrics on -addr
// only to the holder of -metrics-token (and never without one).
func TestMetricsEndToEnd(t *testing.T) {
	cfg := testConfig(t)
	cfg.MetricsToken = "s3cret-metrics"
	srv := startServer(t, cfg)
	a := register(t, srv, "metered")
	b := register(t, srv, "meteree")
	cid := newConvo(t, a, "", b)
	a.ok("SendMessage", map[string]any{"CID": cid, "content": "counted"})
	b.waitPush("message", isMsgIn(cid))
	a.call("NoSuchCommand", nil)
	get := func(srv *testServer, auth string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+srv.addr+"/metrics", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, auth := range []string{"", "Bearer wrong"} {
		if resp := get(srv, auth); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("/metrics with %q: %d, want 401", auth, resp.StatusCode)
		}
	}
	if resp := get(startServer(t, testConfig(t)), ""); resp.StatusCode == http.StatusOK {
		t.Errorf("/metrics is public on -addr without -metrics-token")
	}
	resp := get(srv, "Bearer s3cret-metrics")
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`pinged_sessions 2`,
		`pinged_commands_total{cmd="SendMessage",outcome="ok"} 1`,
		`pinged_commands_total{cmd="CreateUser",outcome="ok"} 2`,
		`pinged_commands_total{cmd="unknown",outcome="error"} 1`,
		`pinged_deliver_latency_seconds_count 2`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}
