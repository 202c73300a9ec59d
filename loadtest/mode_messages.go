package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The messages mode: users in conversations of K members send messages; every member session
// (the sender's too) must receive each acknowledged message exactly once. Latency is measured
// by the receiving client from the send time embedded in the content.

const defaultMessageUsers = 30

// sender is one user's session and what it sent.
type sender struct {
	idx   int
	conv  int
	cid   string
	c     *wsClient
	mu    sync.Mutex
	acked []uint32    // sequence numbers the server acknowledged
	dead  atomic.Bool // the connection failed: the sender stops
	next  uint32      // the sequence number of its next send (rounds continue it)
}

// inbox is what one session received, keyed by sender<<32|seq; only its read goroutine writes.
type inbox struct {
	mu  sync.Mutex
	got map[uint64]uint16
}

type messagesRun struct {
	o       Options
	senders []*sender
	inboxes []*inbox
	groups  [][]int // conversation → member indices

	latency, ackLatency latencies
	sent, acked, errs   atomic.Int64
	deliveries          atomic.Int64
	lastAck, lastDeliv  atomic.Int64 // unix nanoseconds
	firstErr            atomic.Value

	ackSpan, delivSpan time.Duration // sending time up to the last ack and delivery, over the rounds
	warming            atomic.Bool   // a warm-up round: counted, its latencies not kept
}

func runMessages(ctx context.Context, tgt *target, o Options, rep *Report) error {
	if o.Users == 0 {
		o.Users = defaultMessageUsers
	}
	o.Users -= o.Users % o.K
	if o.Users < o.K {
		return fmt.Errorf("-users must be at least -k (%d)", o.K)
	}
	rep.Options["users"] = o.Users
	r := &messagesRun{o: o}
	if err := r.setup(ctx, tgt.url); err != nil {
		return err
	}
	defer closeAll(r.clients())
	s := rep.section("pingedchat")
	rssBefore := tgt.rss()
	var paced *pacedReference
	if o.Rate > 0 {
		var err error
		if paced, err = openPacedReference(ctx, tgt, o.Rate, o.Users); err != nil {
			return err
		}
		defer paced.close()
	}
	watch := startCPUWatch(tgt.pid, tgt.dbname)
	prof := tgt.startCPUProfile(ctx, o.Duration, "messages")
	if paced == nil {
		r.round(ctx, o.Duration)
	} else {
		// At a paced rate the figure is a tail latency, which a disk stall in one phase would
		// decide: the server and the paced reference alternate in rounds, so that both meet
		// the same disk. Each first runs a round whose latencies are not kept: new tables,
		// connections and caches are not what the tail should measure.
		r.warming.Store(true)
		r.round(ctx, pacedWarmup)
		r.warming.Store(false)
		watch.pause() // nor its CPU
		paced.warmUp(ctx, pacedWarmup)
		for range pacedRounds {
			watch.resume()
			r.round(ctx, o.Duration/pacedRounds)
			watch.pause()
			paced.round(ctx, o.Duration/pacedRounds)
		}
	}
	prof.wait(rep)
	watch.report(s)
	delivered := r.report(s)
	if rss := tgt.rss(); rss > 0 {
		s.add("server RSS before", float64(rssBefore)/(1<<20), "MiB")
		s.add("server RSS after", float64(rss)/(1<<20), "MiB")
	}
	lost, dups, stray := r.verify()
	s.add("lost deliveries", float64(lost), "")
	s.add("duplicate deliveries", float64(dups), "")
	s.add("deliveries of unacknowledged messages", float64(stray), "")
	rawRate, err := referenceInserts(ctx, tgt, o.Duration, rep)
	if err != nil {
		return err
	}
	var pacedP99 time.Duration
	if paced != nil {
		pacedP99 = paced.report(rep)
	}
	natsP99, err := referenceNATS(ctx, o, r.groups, delivered, rep)
	if err != nil {
		return err
	}
	r.judge(rep, ratio(delivered, rawRate), natsP99, pacedP99, lost+dups)
	return nil
}

// setup creates the users, opens a session each and groups them into conversations.
func (r *messagesRun) setup(ctx context.Context, url string) error {
	users, err := createUsers(ctx, url, r.o.Users, "ltm", r.o.Password)
	if err != nil {
		return err
	}
	r.inboxes = make([]*inbox, len(users))
	for i := range r.inboxes {
		r.inboxes[i] = &inbox{got: make(map[uint64]uint16, 1<<12)}
	}
	clients, err := openSessions(ctx, url, users, len(users), 16, func(i int) func(*frame, time.Time) {
		return func(f *frame, at time.Time) { r.receive(i, f, at) }
	})
	if err != nil {
		return err
	}
	r.senders = make([]*sender, len(users))
	for i, c := range clients {
		r.senders[i] = &sender{idx: i, conv: i / r.o.K, c: c}
	}
	return r.createConversations(ctx, users)
}

func (r *messagesRun) createConversations(ctx context.Context, users []user) error {
	for g := 0; g < len(users)/r.o.K; g++ {
		members := make([]int, r.o.K)
		names := make([]string, 0, r.o.K-1)
		for j := range members {
			members[j] = g*r.o.K + j
			if j > 0 {
				names = append(names, users[members[j]].name)
			}
		}
		rep, err := r.senders[members[0]].c.call(ctx, map[string]any{
			"cmd": "CreateConversation", "Name": fmt.Sprintf("loadtest %d", g), "Members": names})
		if err != nil {
			return fmt.Errorf("creating conversation %d: %w", g, err)
		}
		for _, m := range members {
			r.senders[m].cid = rep.CID
		}
		r.groups = append(r.groups, members)
	}
	return nil
}

func (r *messagesRun) clients() []*wsClient {
	out := make([]*wsClient, len(r.senders))
	for i, s := range r.senders {
		out[i] = s.c
	}
	return out
}

// contentPrefix marks the tool's messages; the content is "lt SENDER SEQ UNIXNANO xxx…".
const contentPrefix = "lt "

func makeContent(sender int, seq uint32, at time.Time, size int) string {
	head := fmt.Sprintf("%s%d %d %d ", contentPrefix, sender, seq, at.UnixNano())
	if len(head) >= size {
		return head
	}
	return head + strings.Repeat("x", size-len(head))
}

// parseContent reads back what makeContent wrote.
func parseContent(content string) (sender int, seq uint32, sent time.Time, ok bool) {
	rest, found := strings.CutPrefix(content, contentPrefix)
	if !found {
		return 0, 0, time.Time{}, false
	}
	f := strings.SplitN(rest, " ", 4)
	if len(f) < 3 {
		return 0, 0, time.Time{}, false
	}
	s, err1 := strconv.Atoi(f[0])
	q, err2 := strconv.ParseUint(f[1], 10, 32)
	ns, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, time.Time{}, false
	}
	return s, uint32(q), time.Unix(0, ns), true
}

// receive handles a push on session i's read goroutine.
func (r *messagesRun) receive(i int, f *frame, at time.Time) {
	if f.Cmd != "SendMessage" {
		return
	}
	s, seq, sent, ok := parseContent(f.Content)
	if !ok {
		return
	}
	if !r.warming.Load() {
		r.latency.add(at.Sub(sent))
	}
	in := r.inboxes[i]
	in.mu.Lock()
	in.got[uint64(s)<<32|uint64(seq)]++
	in.mu.Unlock()
	r.deliveries.Add(1)
	r.lastDeliv.Store(at.UnixNano())
}

// round sends for d and waits for the deliveries, adding to the sending time.
func (r *messagesRun) round(ctx context.Context, d time.Duration) {
	start := time.Now()
	r.sendAll(ctx, start.Add(d))
	r.drain(ctx)
	if last := time.Unix(0, r.lastAck.Load()); last.After(start) {
		r.ackSpan += last.Sub(start)
	}
	if last := time.Unix(0, r.lastDeliv.Load()); last.After(start) {
		r.delivSpan += last.Sub(start)
	}
}

// sendAll runs every sender until end and waits for their outstanding sends.
func (r *messagesRun) sendAll(ctx context.Context, end time.Time) {
	var wg sync.WaitGroup
	for _, s := range r.senders {
		wg.Add(1)
		go func() { defer wg.Done(); r.sendLoop(ctx, s, end) }()
	}
	wg.Wait()
}

// sendLoop sends until end: paced to its share of -rate, or back to back; at most -window sends
// are unacknowledged at a time.
func (r *messagesRun) sendLoop(ctx context.Context, s *sender, end time.Time) {
	window := make(chan struct{}, r.o.Window)
	var interval time.Duration
	if r.o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(len(r.senders)) / r.o.Rate)
	}
	start := time.Now()
	// Stagger the senders so that paced sends do not arrive in bursts.
	offset := time.Duration(s.idx) * interval / time.Duration(len(r.senders))
	for i := 0; ctx.Err() == nil && !s.dead.Load(); i++ {
		if interval > 0 {
			if d := time.Until(start.Add(offset + time.Duration(i)*interval)); d > 0 {
				time.Sleep(d)
			}
		}
		if time.Now().After(end) {
			break
		}
		window <- struct{}{}
		r.sendOne(s, s.next, func() { <-window })
		s.next++
	}
	for range r.o.Window { // wait for the outstanding sends
		select {
		case window <- struct{}{}:
		case <-time.After(callTimeout):
			return
		}
	}
}

func (r *messagesRun) sendOne(s *sender, seq uint32, release func()) {
	at := time.Now()
	req := map[string]any{"cmd": "SendMessage", "CID": s.cid,
		"content":   makeContent(s.idx, seq, at, r.o.Size),
		"client_id": fmt.Sprintf("%d-%d", s.idx, seq)}
	r.sent.Add(1)
	s.c.send(req, func(f *frame, err error) {
		defer release()
		if err == nil && f.Error != "" {
			err = &serverError{f.Error}
		}
		if err != nil {
			r.errs.Add(1)
			r.firstErr.CompareAndSwap(nil, err.Error())
			if !isServerError(err) {
				s.dead.Store(true) // the session is gone; sending on would only spin
			}
			return
		}
		now := time.Now()
		if !r.warming.Load() {
			r.ackLatency.add(now.Sub(at))
		}
		r.acked.Add(1)
		r.lastAck.Store(now.UnixNano())
		s.mu.Lock()
		s.acked = append(s.acked, seq)
		s.mu.Unlock()
	})
}

// drain waits until every expected delivery arrived, or nothing arrived for 5 s.
func (r *messagesRun) drain(ctx context.Context) {
	want := r.acked.Load() * int64(r.o.K)
	last, since := r.deliveries.Load(), time.Now()
	for ctx.Err() == nil && r.deliveries.Load() < want && time.Since(since) < 5*time.Second {
		time.Sleep(20 * time.Millisecond)
		if n := r.deliveries.Load(); n != last {
			last, since = n, time.Now()
		}
	}
}

// report adds the throughput and latency figures; it returns fully delivered messages per second.
func (r *messagesRun) report(s *Section) float64 {
	ackSpan, delivSpan := r.ackSpan, r.delivSpan
	s.add("messages sent", float64(r.sent.Load()), "")
	s.add("send errors (error replies, timeouts, closed sessions)", float64(r.errs.Load()), "")
	s.add("sessions closed during the run", float64(r.closedSessions()), "")
	s.add("messages stored (acknowledged)", float64(r.acked.Load()), "")
	s.add("stored rate", perSecond(r.acked.Load(), ackSpan), "msg/s")
	delivered := perSecond(r.fullyDelivered(), delivSpan)
	s.add("stored+delivered rate (to every member session)", delivered, "msg/s")
	s.add("deliveries", float64(r.deliveries.Load()), "")
	s.add("delivery rate", perSecond(r.deliveries.Load(), delivSpan), "deliveries/s")
	r.latency.addTo(s, "send→receive latency")
	r.ackLatency.addTo(s, "send→ack latency")
	return delivered
}

// closedSessions counts sessions whose connection ended (the server closes sessions that cannot
// keep up with their events).
func (r *messagesRun) closedSessions() int {
	n := 0
	for _, s := range r.senders {
		if s.c.failed() != nil {
			n++
		}
	}
	return n
}

// fullyDelivered counts acknowledged messages that reached every member session.
func (r *messagesRun) fullyDelivered() int64 {
	var n int64
	r.eachExpected(func(key uint64, members []int) {
		for _, m := range members {
			if r.count(m, key) == 0 {
				return
			}
		}
		n++
	})
	return n
}

// eachExpected calls fn for every acknowledged message with the sessions that must receive it.
func (r *messagesRun) eachExpected(fn func(key uint64, members []int)) {
	for _, s := range r.senders {
		s.mu.Lock()
		acked := append([]uint32(nil), s.acked...)
		s.mu.Unlock()
		for _, seq := range acked {
			fn(uint64(s.idx)<<32|uint64(seq), r.groups[s.conv])
		}
	}
}

func (r *messagesRun) count(session int, key uint64) uint16 {
	in := r.inboxes[session]
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.got[key]
}

// verify counts expected deliveries that are missing, extra copies, and deliveries of messages
// that were never acknowledged (for example because the acknowledgement timed out).
func (r *messagesRun) verify() (lost, dups, stray int64) {
	expected := map[uint64]bool{}
	r.eachExpected(func(key uint64, members []int) {
		expected[key] = true
		for _, m := range members {
			switch n := r.count(m, key); {
			case n == 0:
				lost++
			case n > 1:
				dups += int64(n - 1)
			}
		}
	})
	for _, in := range r.inboxes {
		in.mu.Lock()
		for key := range in.got {
			if !expected[key] {
				stray++
			}
		}
		in.mu.Unlock()
	}
	return lost, dups, stray
}

// judge records the targets that apply to this run's shape.
func (r *messagesRun) judge(rep *Report, insertRatio float64, natsP99, pacedP99 time.Duration, bad int64) {
	s := rep.section("pingedchat vs references")
	p99 := r.latency.percentile(0.99)
	s.add("stored+delivered rate ÷ raw insert rate", insertRatio, "×")
	s.add("send→receive p99 ÷ raw NATS p99", ratio(ms(p99), ms(natsP99)), "×")
	rep.atMost("lost + duplicated deliveries", float64(bad), 0, "")
	if r.o.Rate == 0 {
		rep.atLeast(fmt.Sprintf("stored+delivered ÷ raw inserts (k=%d, max rate)", r.o.K), insertRatio, 0.6, "×")
	} else {
		s.add("send→receive p99 ÷ paced raw insert p99", ratio(ms(p99), ms(pacedP99)), "×")
		rep.atMost(fmt.Sprintf("send→receive p99 ÷ raw insert p99 at %.0f msg/s", r.o.Rate), ratio(ms(p99), ms(pacedP99)), 3, "×")
		rep.atMost(fmt.Sprintf("send→receive p99 at %.0f msg/s", r.o.Rate), ms(p99), 25, "ms")
		if r.o.Rate != 1000 {
			rep.note("the p99 target is defined at 1,000 msg/s; this run offered %.0f msg/s", r.o.Rate)
		}
		rep.note("the throughput ratio target applies to -rate 0 (as fast as acknowledgements allow)")
	}
	if r.o.K != 3 {
		rep.note("the targets are defined for 3-member conversations; this run used -k %d", r.o.K)
	}
	if e, ok := r.firstErr.Load().(string); ok {
		rep.note("%d sends failed; the first: %s", r.errs.Load(), e)
	}
}
