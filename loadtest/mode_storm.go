package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"
)

// The storm mode (issue 17, item 5): -sessions sessions over -users users, each user in 10
// conversations of -k members holding 100 messages each; the server restarts; every session
// reconnects with the web client's back-off (equal jitter, 500 ms doubling to 10 s), resumes
// with its token (a resume refused as busy is tried again on the same connection after
// 2.5–7.5 s, as the web client does) and resyncs each of its conversations from its sync point as the web client
// does (SyncConvos with each one's M_time, 20 at a time, following More). Reported: the time until
// every session is live and resynced, errors, server and PostgreSQL CPU, and reconnects per
// second. The reference issues the same reads straight at PostgreSQL from 8 connections: per
// session the session and user records, then each conversation's record and its messages since
// the sync point.

const (
	stormConvosPerUser = 10
	stormMessages      = 100
	stormBackoffBase   = 500 * time.Millisecond
	stormBackoffCap    = 10 * time.Second
	stormLoginRetry    = 5 * time.Second  // the web client's LOGIN_RETRY_MS
	stormSyncBatch     = 20               // conversations per SyncConvos, as the web client's syncRound
	stormProfile       = 15 * time.Second // with -pprof: the CPU profile of the storm's start
)

// stormConvo is a conversation and the sync point every session holds for it.
type stormConvo struct {
	cid, since string
}

// stormSession is one simulated tab: a user, its conversations, its connection.
type stormSession struct {
	u      user
	convos []*stormConvo
	c      *wsClient
}

func runStorm(ctx context.Context, tgt *target, o Options, rep *Report) error {
	if tgt.cmd == nil {
		return errors.New("storm restarts the server: use -start")
	}
	nUsers := o.Users
	if nUsers == 0 {
		nUsers = 1000
	}
	if o.K > nUsers {
		return errors.New("-k must not exceed -users")
	}
	users, err := createUsers(ctx, tgt.url, nUsers, "lts", o.Password)
	if err != nil {
		return err
	}
	byUser, err := stormConversations(ctx, tgt, users, o.K)
	if err != nil {
		return err
	}
	sessions := make([]*stormSession, o.Sessions)
	for i := range sessions {
		sessions[i] = &stormSession{u: users[i%len(users)], convos: byUser[i%len(users)]}
	}
	if err := stormConnect(ctx, tgt, sessions); err != nil {
		return err
	}
	s := rep.section(fmt.Sprintf("pingedchat: reconnect storm, %d sessions over %d users, %d conversations each (k=%d, %d messages)",
		len(sessions), len(users), stormConvosPerUser, o.K, stormMessages))
	done, elapsedFromReady, _, curve, err := stormRestart(ctx, tgt, sessions, s, rep)
	if err != nil {
		return err
	}
	c := rep.section("reconnects per second after the restart (the client back-off's spread)")
	for i, n := range curve {
		c.add(fmt.Sprintf("second %d", i), float64(n), "")
	}
	refElapsed, err := stormReference(ctx, tgt, sessions, rep)
	if err != nil {
		return err
	}
	r := rep.section("pingedchat vs reference")
	r.add("storm ÷ the same reads straight at PostgreSQL", ratio(elapsedFromReady.Seconds(), refElapsed.Seconds()), "×")
	rep.atMost("storm time ÷ reference", ratio(elapsedFromReady.Seconds(), refElapsed.Seconds()), 2, "×")
	if done != len(sessions) {
		rep.note("only %d of %d sessions resynced", done, len(sessions))
	}
	return nil
}

// stormConversations creates len(users)*10/k conversations of k members, so that every user is
// in 10, fills each with 100 messages, adds one newer message after the sync point, and returns
// every user's conversations.
func stormConversations(ctx context.Context, tgt *target, users []user, k int) ([][]*stormConvo, error) {
	n := len(users) * stormConvosPerUser / k
	byUser := make([][]*stormConvo, len(users))
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	start := time.Now()
	for j := range n {
		g.Go(func() error {
			owner := (j * k) % len(users)
			members := make([]string, 0, k-1)
			for i := 1; i < k; i++ {
				members = append(members, users[(j*k+i)%len(users)].name)
			}
			c, err := resume(gctx, tgt.url, users[owner], nil)
			if err != nil {
				return err
			}
			defer c.close()
			f, err := c.call(gctx, map[string]any{"cmd": "CreateConversation", "Name": fmt.Sprintf("storm %d", j), "Members": members})
			if err != nil {
				return fmt.Errorf("creating conversation %d: %w", j, err)
			}
			since, err := fillStorm(gctx, tgt, f.CID, users[owner].name)
			if err != nil {
				return err
			}
			sc := &stormConvo{cid: f.CID, since: since}
			mu.Lock()
			for i := range k {
				u := (j*k + i) % len(users)
				byUser[u] = append(byUser[u], sc)
			}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	logf("created and filled %d conversations in %s", n, time.Since(start).Round(time.Millisecond))
	return byUser, nil
}

// fillStorm puts 100 messages into a conversation and one more after them, and returns the
// m_time of the 100th: the sync point the sessions hold.
func fillStorm(ctx context.Context, tgt *target, cid, from string) (string, error) {
	table := convTableName(cid)
	var since time.Time
	err := tgt.pool.QueryRow(ctx, fmt.Sprintf(`WITH ins AS (INSERT INTO %s (id, f_username, m_time, content, kind)
		SELECT g, $1, now() - interval '1 hour' + g * interval '1 millisecond',
		       'storm message number ' || g || ' with some ordinary chat text', 'text'
		FROM generate_series(1, $2::int) g RETURNING m_time)
		SELECT max(m_time) FROM ins`, table), from, stormMessages).Scan(&since)
	if err != nil {
		return "", fmt.Errorf("filling %s: %w", table, err)
	}
	if _, err := tgt.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, f_username, m_time, content, kind)
		VALUES ($2, $1, now() - interval '1 minute', 'sent while you were away', 'text')`, table), from, stormMessages+1); err != nil {
		return "", fmt.Errorf("filling %s: %w", table, err)
	}
	return since.UTC().Format("2006-01-02T15:04:05.000000Z"), nil
}

// stormConnect opens every session with its resume token.
func stormConnect(ctx context.Context, tgt *target, sessions []*stormSession) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	start := time.Now()
	for _, s := range sessions {
		g.Go(func() error {
			c, err := resume(gctx, tgt.url, s.u, nil)
			s.c = c
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	logf("opened %d sessions in %s", len(sessions), time.Since(start).Round(time.Millisecond))
	return nil
}

// stormRestart restarts the server and lets every session come back as the web client does.
// It returns how many resynced, the time from the server listening again to the last resync,
// the failed attempts, and reconnects per second from that moment.
func stormRestart(ctx context.Context, tgt *target, sessions []*stormSession, sec *Section, rep *Report) (int, time.Duration, int64, []int, error) {
	logf("restarting the server")
	if err := tgt.restart(ctx); err != nil {
		return 0, 0, 0, nil, err
	}
	ready := time.Now()
	watch := startCPUWatch(tgt.pid, tgt.dbname) // the new process, from its start
	prof := tgt.startCPUProfile(ctx, stormProfile, "storm")
	logf("the server listens again; %d sessions reconnecting", len(sessions))
	var done, errs atomic.Int64
	var mu sync.Mutex
	var connects []time.Duration
	var logins, syncs latencies // a successful resume (dial and ValidateUser); its resync
	var last time.Time
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-s.c.done // the restart closed it
			at, n, ok := s.comeBack(ctx, tgt.url, &logins, &syncs)
			errs.Add(int64(n))
			if !ok {
				return
			}
			done.Add(1)
			mu.Lock()
			connects = append(connects, at.Sub(ready))
			if now := time.Now(); now.After(last) {
				last = now
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	prof.wait(rep)
	sec.add("sessions live and resynced", float64(done.Load()), "")
	sec.add("failed attempts (retried)", float64(errs.Load()), "")
	sec.add("time from the server listening again to the last resync", last.Sub(ready).Seconds(), "s")
	logins.addTo(sec, "resume (dial, ValidateUser)")
	syncs.addTo(sec, "resync")
	watch.report(sec)
	sort.Slice(connects, func(i, j int) bool { return connects[i] < connects[j] })
	var curve []int
	for _, d := range connects {
		sec := max(0, int(d/time.Second))
		for len(curve) <= sec {
			curve = append(curve, 0)
		}
		curve[sec]++
	}
	for _, s := range sessions {
		if s.c != nil {
			s.c.close()
		}
	}
	return int(done.Load()), last.Sub(ready), errs.Load(), curve, nil
}

// comeBack reconnects with the web client's back-off until the session is resumed and resynced
// (or ctx ends); it returns when it connected, the failed attempts, and whether it made it.
func (s *stormSession) comeBack(ctx context.Context, url string, logins, syncs *latencies) (time.Time, int, bool) {
	failures := 0
	for attempt := 0; ctx.Err() == nil; attempt++ {
		ceiling := min(stormBackoffCap, stormBackoffBase<<min(attempt, 10))
		delay := ceiling/2 + rand.N(ceiling/2)
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return time.Time{}, failures, false
		}
		began := time.Now()
		c, refused, err := s.resume(ctx, url)
		failures += refused
		if err != nil {
			failures++
			continue
		}
		at := time.Now()
		s.c = c
		if err := s.resync(ctx); err != nil {
			failures++
			c.close()
			s.c = nil
			continue
		}
		logins.add(at.Sub(began))
		syncs.add(time.Since(at))
		return at, failures, true
	}
	return time.Time{}, failures, false
}

// resume dials and resumes as the web client does: a login the server refuses as busy is tried
// again on the same connection after 2.5–7.5 s (LOGIN_RETRY_MS); any other failure closes it.
// It returns the refusals too.
func (s *stormSession) resume(ctx context.Context, url string) (*wsClient, int, error) {
	c, err := dial(ctx, url, nil)
	if err != nil {
		return nil, 0, err
	}
	for refused := 0; ; refused++ {
		f, err := c.call(ctx, map[string]any{"cmd": "ValidateUser", "username": s.u.name, "session": s.u.session})
		if err == nil {
			return c, refused, nil
		}
		if f == nil || !strings.Contains(f.Error, "busy") {
			c.close()
			return nil, refused, err
		}
		select {
		case <-time.After(stormLoginRetry/2 + rand.N(stormLoginRetry)):
		case <-ctx.Done():
			c.close()
			return nil, refused, ctx.Err()
		}
	}
}

// resync reads every conversation since its sync point as the web client does: SyncConvos
// with up to 20 at a time, asking again for those left out of a reply and those whose page
// says More, from their new sync point.
func (s *stormSession) resync(ctx context.Context) error {
	since := make(map[string]string, len(s.convos))
	var order []string
	for _, sc := range s.convos {
		since[sc.cid] = sc.since
		order = append(order, sc.cid)
	}
	for len(order) > 0 {
		asked := make([]map[string]any, 0, stormSyncBatch)
		for _, cid := range order[:min(len(order), stormSyncBatch)] {
			asked = append(asked, map[string]any{"CID": cid, "M_time": since[cid]})
		}
		f, err := s.c.call(ctx, map[string]any{"cmd": "SyncConvos", "Convos": asked})
		if err != nil {
			return err
		}
		if len(f.Convos) == 0 {
			return errors.New("SyncConvos answered no conversation")
		}
		done := map[string]bool{}
		for _, c := range f.Convos {
			if c.Error != "" {
				return fmt.Errorf("SyncConvos %s: %s", c.CID, c.Error)
			}
			done[c.CID] = !c.More || len(c.Messages) == 0
			if len(c.Messages) > 0 {
				since[c.CID] = lastMTime(&c)
			}
		}
		rest := order[:0]
		for _, cid := range order {
			if finished, answered := done[cid]; !answered || !finished {
				rest = append(rest, cid)
			}
		}
		order = rest
	}
	return nil
}

// lastMTime is the m_time of a page's last message.
func lastMTime(f *frame) string {
	var m struct {
		MTime string `json:"m_time"`
	}
	_ = json.Unmarshal(f.Messages[len(f.Messages)-1], &m)
	return m.MTime
}

// stormReference issues the storm's reads straight at the stores from 8 connections: per
// session its session and user records, then per conversation its record and its messages
// since the sync point. The records come from where the server keeps them: PostgreSQL's
// quickstore table (each session's two records in one round trip, each conversation's record
// and messages in one), or the Aerospike node (-quickstore aerotest, asd or aerospike://: one
// Get per record, the messages from PostgreSQL).
func stormReference(ctx context.Context, tgt *target, sessions []*stormSession, rep *Report) (time.Duration, error) {
	reads, err := tgt.stormReads()
	if err != nil {
		return 0, err
	}
	defer reads.close()
	logf("reference: the same reads straight at the stores from 8 connections")
	watch := startCPUWatch(0, tgt.dbname)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	for range 8 {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(sessions) {
					return nil
				}
				s := sessions[i]
				if err := reads.session(gctx, tokenHashOf(s.u.session), strings.ToUpper(s.u.name)); err != nil {
					return fmt.Errorf("reference: reading records: %w", err)
				}
				for _, sc := range s.convos {
					if err := reads.convo(gctx, sc.cid, sc.since); err != nil {
						return fmt.Errorf("reference: reading a conversation: %w", err)
					}
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return 0, err
	}
	elapsed := time.Since(start)
	s := rep.section(fmt.Sprintf("reference: the same reads straight at the stores, 8 connections, %d sessions", len(sessions)))
	s.add("time", elapsed.Seconds(), "s")
	watch.report(s)
	return elapsed, nil
}

// stormReads are the reference's reads against the server's stores.
type stormReads struct {
	session func(ctx context.Context, tokenHash, upperName string) error
	convo   func(ctx context.Context, cid, since string) error
	close   func()
}

func messagesSince(cid string) string {
	return fmt.Sprintf(`SELECT id, f_username, m_time, content, kind FROM %s
		WHERE m_time > $1::timestamptz ORDER BY m_time LIMIT 51`, convTableName(cid))
}

func (t *target) stormReads() (*stormReads, error) {
	if len(t.quickArgs) == 0 {
		const rec = `SELECT bins::text FROM quickstore WHERE ns = $1 AND set_name = $2 AND key = $3`
		return &stormReads{
			session: func(ctx context.Context, hash, name string) error {
				b := &pgx.Batch{}
				b.Queue(rec, "users", "session", hash)
				b.Queue(rec, "users", "username", name)
				return t.pool.SendBatch(ctx, b).Close()
			},
			convo: func(ctx context.Context, cid, since string) error {
				b := &pgx.Batch{}
				b.Queue(rec, "convos", "convos", cid)
				b.Queue(messagesSince(cid), since)
				return t.pool.SendBatch(ctx, b).Close()
			},
			close: func() {},
		}, nil
	}
	host, portStr, err := net.SplitHostPort(strings.Split(strings.TrimPrefix(t.quickArgs[1], "aerospike://"), ",")[0])
	if err != nil {
		return nil, fmt.Errorf("reference: the quick store %q: %w", t.quickArgs[1], err)
	}
	port, _ := strconv.Atoi(portStr)
	policy := as.NewClientPolicy()
	policy.Timeout = 30 * time.Second // aerotest shares this process with 10,000 sessions
	client, err := as.NewClientWithPolicy(policy, host, port)
	if err != nil {
		return nil, fmt.Errorf("reference: connecting to Aerospike: %w", err)
	}
	get := func(ns, set, key string) error {
		k, err := as.NewKey(ns, set, key)
		if err == nil {
			_, err = client.Get(nil, k)
		}
		return err
	}
	return &stormReads{
		session: func(ctx context.Context, hash, name string) error {
			return errors.Join(get("users", "session", hash), get("users", "username", name))
		},
		convo: func(ctx context.Context, cid, since string) error {
			if err := get("convos", "convos", cid); err != nil {
				return err
			}
			rows, err := t.pool.Query(ctx, messagesSince(cid), since)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		},
		close: client.Close,
	}, nil
}

// tokenHashOf is how the server keys a resume token: its SHA-256 in hex.
func tokenHashOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// restart stops the started server (SIGTERM: it closes every session) and starts it again on
// the same address and database.
func (t *target) restart(ctx context.Context) error {
	addr := t.url[len("ws://") : len(t.url)-len("/ws/websocket")]
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.exited:
	case <-time.After(30 * time.Second):
		_ = t.cmd.Process.Kill()
		<-t.exited
	}
	if err := t.launch(addr, t.pprofAddr); err != nil {
		return err
	}
	return t.waitReady(ctx, addr)
}
