package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// References for the messages mode, measured in the same run on the same machine.

// convTableDDL is the shape of a conversation's table; it mirrors convTableDDL in
// convtable.go (without its version comment), so that the references pay for the same columns
// and indexes.
const convTableDDL = `
	CREATE TABLE %[1]s (
		m_time     timestamptz PRIMARY KEY,
		id         bigint      NOT NULL,
		f_username text        NOT NULL,
		content    text        NOT NULL,
		kind       text        NOT NULL DEFAULT 'text',
		client_id  text        UNIQUE,
		target bigint, reaction_on boolean, edited timestamptz, changed timestamptz,
		deleted boolean, reactions jsonb, reply_to bigint, quote_from text, quote text,
		mentions text[]
	);`

const refConns = 8

// refInsertSQL is the references' single-row insert ($1 sender, $2 content, $3 client_id,
// $4 id) into table.
func refInsertSQL(table string) string {
	return "INSERT INTO " + table + " (m_time, id, f_username, content, kind, client_id) VALUES (clock_timestamp(), $4, $1, $2, 'text', $3) ON CONFLICT DO NOTHING"
}

// referenceInserts measures single-row autocommit inserts into a conversation-shaped table from
// refConns connections for d; it returns rows per second.
func referenceInserts(ctx context.Context, tgt *target, d time.Duration, rep *Report) (float64, error) {
	table := fmt.Sprintf("loadtest_ref_%x", rand.Uint64())
	if _, err := tgt.pool.Exec(ctx, fmt.Sprintf(convTableDDL, table)); err != nil {
		return 0, fmt.Errorf("creating reference table: %w", err)
	}
	defer func() { _, _ = tgt.pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) }()
	logf("reference: raw inserts from %d connections for %s", refConns, d)
	content := makeContent(0, 0, time.Now(), 64)
	// The id comes from the client here (the server takes the newest row's + 1 under its lock);
	// two connections may read the same microsecond, so a clash on the m_time key is skipped.
	insert := refInsertSQL(table)
	var rows, errs atomic.Int64
	var lat latencies
	watch := startCPUWatch(0, tgt.dbname)
	end := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range refConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(end) && ctx.Err() == nil; i++ {
				t0 := time.Now()
				if _, err := tgt.pool.Exec(ctx, insert, "ref_user", content, strconv.Itoa(w)+"-"+strconv.Itoa(i), w*1_000_000_000+i); err != nil {
					errs.Add(1)
					continue
				}
				lat.add(time.Since(t0))
				rows.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	s := rep.section(fmt.Sprintf("reference: raw pgx single-row autocommit INSERT, %d connections", refConns))
	rate := perSecond(rows.Load(), elapsed)
	s.add("rows inserted", float64(rows.Load()), "")
	s.add("errors", float64(errs.Load()), "")
	s.add("insert rate", rate, "rows/s")
	lat.addTo(s, "insert latency")
	watch.report(s)
	return rate, nil
}

// referenceNATS publishes the same traffic shape (each message to each member's subject, at the
// rate pingedchat delivered) through an embedded, in-process NATS server, with one subscription
// per user as the server has, and measures publish→deliver latency. It returns the p99.
func referenceNATS(ctx context.Context, o Options, groups [][]int, rate float64, rep *Report) (time.Duration, error) {
	ns, nc, err := startEmbeddedNATS()
	if err != nil {
		return 0, err
	}
	defer ns.Shutdown()
	defer nc.Close()
	var lat latencies
	var got atomic.Int64
	users := len(groups) * o.K
	stop, err := subscribeUsers(nc, users, &lat, &got)
	if err != nil {
		return 0, err
	}
	defer stop()
	d := min(o.Duration, 10*time.Second)
	logf("reference: NATS publish→deliver at %.0f msg/s for %s", rate, d)
	sent := publishPaced(ctx, nc, groups, rate, d)
	deadline := time.Now().Add(5 * time.Second)
	for got.Load() < sent*int64(o.K) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	s := rep.section("reference: embedded NATS, in-process, publish→deliver at pingedchat's delivered rate")
	s.add("messages published", float64(sent), "")
	s.add("deliveries", float64(got.Load()), "")
	lat.addTo(s, "publish→deliver latency")
	return lat.percentile(0.99), nil
}

func startEmbeddedNATS() (*natsserver.Server, *nats.Conn, error) {
	ns, err := natsserver.NewServer(&natsserver.Options{DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		return nil, nil, fmt.Errorf("starting embedded NATS: %w", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("embedded NATS did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		ns.Shutdown()
		return nil, nil, fmt.Errorf("connecting to embedded NATS: %w", err)
	}
	return ns, nc, nil
}

// subscribeUsers subscribes one channel per user, each drained by its own goroutine, as the
// server's sessions do; deliveries record their latency from the nanosecond stamp in the data.
func subscribeUsers(nc *nats.Conn, users int, lat *latencies, got *atomic.Int64) (func(), error) {
	var subs []*nats.Subscription
	done := make(chan struct{})
	var wg sync.WaitGroup
	for u := range users {
		ch := make(chan *nats.Msg, 512)
		sub, err := nc.ChanSubscribe("ref.user."+strconv.Itoa(u), ch)
		if err != nil {
			close(done)
			return nil, fmt.Errorf("subscribing: %w", err)
		}
		subs = append(subs, sub)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case m := <-ch:
					ns, _ := strconv.ParseInt(string(m.Data[:19]), 10, 64)
					lat.add(time.Since(time.Unix(0, ns)))
					got.Add(1)
				case <-done:
					return
				}
			}
		}()
	}
	if err := nc.Flush(); err != nil {
		close(done)
		return nil, fmt.Errorf("flushing subscriptions: %w", err)
	}
	return func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
		close(done)
		wg.Wait()
	}, nil
}

// publishPaced publishes messages round-robin over the groups at rate for d, each to every
// member's subject; it returns how many messages it published.
func publishPaced(ctx context.Context, nc *nats.Conn, groups [][]int, rate float64, d time.Duration) int64 {
	if rate <= 0 {
		return 0
	}
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var n int64
	for time.Since(start) < d && ctx.Err() == nil {
		if wait := time.Until(start.Add(time.Duration(n) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		data := []byte(strconv.FormatInt(time.Now().UnixNano(), 10) + " reference payload of a chat message, about the size of one")
		for _, m := range groups[int(n)%len(groups)] {
			_ = nc.Publish("ref.user."+strconv.Itoa(m), data)
		}
		n++
	}
	_ = nc.Flush()
	return n
}

// pacedRounds is how many rounds the messages mode alternates with its paced reference, after
// a warm-up of pacedWarmup each.
const (
	pacedRounds = 5
	pacedWarmup = 2 * time.Second
)

// pacedReference is single-row autocommit inserts offered at a rate from conns connections, run
// in rounds alternating with the server's; its latencies add up over the rounds.
type pacedReference struct {
	tgt        *target
	pool       *pgxpool.Pool
	table      string
	rate       float64
	conns      int
	insert     string
	content    string
	seq        atomic.Int64
	rows, errs atomic.Int64
	lat        latencies
	watch      *cpuWatch
	active     time.Duration
	warming    bool // a warm-up round: its latencies are not kept
}

func openPacedReference(ctx context.Context, tgt *target, rate float64, conns int) (*pacedReference, error) {
	pcfg, err := pgxpool.ParseConfig(tgt.pgConn)
	if err != nil {
		return nil, err
	}
	pcfg.MaxConns, pcfg.MinConns = int32(conns), int32(conns)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("connecting for the paced reference: %w", err)
	}
	p := &pacedReference{tgt: tgt, pool: pool, rate: rate, conns: conns,
		table: fmt.Sprintf("loadtest_paced_%x", rand.Uint64()), content: makeContent(0, 0, time.Now(), 64)}
	if _, err := pool.Exec(ctx, fmt.Sprintf(convTableDDL, p.table)); err != nil {
		pool.Close()
		return nil, fmt.Errorf("creating reference table: %w", err)
	}
	p.insert = refInsertSQL(p.table)
	p.watch = startCPUWatch(0, tgt.dbname)
	p.watch.pause()
	return p, nil
}

// round offers the inserts for d.
func (p *pacedReference) round(ctx context.Context, d time.Duration) {
	logf("reference: raw inserts at %.0f/s from %d connections for %s", p.rate, p.conns, d)
	p.watch.resume()
	defer p.watch.pause()
	start := time.Now()
	end := start.Add(d)
	interval := time.Duration(float64(time.Second) * float64(p.conns) / p.rate) // per connection
	var wg sync.WaitGroup
	for w := range p.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := start.Add(time.Duration(w) * interval / time.Duration(p.conns)) // staggered
			for ctx.Err() == nil {
				if wait := time.Until(next); wait > 0 {
					time.Sleep(wait) // pacing: the offered rate is the point of this reference
				}
				if time.Now().After(end) {
					return
				}
				next = next.Add(interval)
				n := p.seq.Add(1)
				t0 := time.Now()
				if _, err := p.pool.Exec(ctx, p.insert, "ref_user", p.content, strconv.FormatInt(n, 10), n); err != nil {
					p.errs.Add(1)
					continue
				}
				if !p.warming {
					p.lat.add(time.Since(t0))
				}
				p.rows.Add(1)
			}
		}()
	}
	wg.Wait()
	p.active += time.Since(start)
}

// warmUp runs a round whose latencies are not kept.
func (p *pacedReference) warmUp(ctx context.Context, d time.Duration) {
	p.warming = true
	p.round(ctx, d)
	p.warming = false
}

// report adds the reference's section and returns its p99.
func (p *pacedReference) report(rep *Report) time.Duration {
	s := rep.section(fmt.Sprintf("reference: raw pgx single-row autocommit INSERT at %.0f/s, %d connections, in %d rounds alternating with pingedchat's after a warm-up", p.rate, p.conns, pacedRounds))
	s.add("rows inserted", float64(p.rows.Load()), "")
	s.add("errors", float64(p.errs.Load()), "")
	s.add("insert rate", perSecond(p.rows.Load(), p.active), "rows/s")
	p.lat.addTo(s, "insert latency")
	p.watch.report(s)
	return p.lat.percentile(0.99)
}

func (p *pacedReference) close() {
	_, _ = p.tgt.pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+p.table)
	p.pool.Close()
}
