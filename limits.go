package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Abuse limits (SECURITY.md lists them with their defaults): guesses at passwords and security
// answers, registrations, contact lookups, and connections and handshakes per client address.
// They are kept in memory, per instance.

// Guess limits. A guess spends its tokens before the bcrypt comparison, so simultaneous guesses
// cannot all pass a check that only looks; a right guess gives them back.
const (
	addrGuessBurst = 50 // guesses from one address, at any users
	addrGuessEvery = 2 * time.Second
	userGuessBurst = 200 // guesses at one user, from all addresses together
	userGuessEvery = 20 * time.Second
	// From one address at one user, freeGuesses wrong guesses cost nothing; each one after
	// doubles the wait before the next (-guess-backoff 1 s, 2 s, 4 s … up to maxBackoff). The wait is a
	// back-off, not a lock: the user's resume tokens keep working, and another address (the
	// user's own) is not slowed by someone else's guesses.
	freeGuesses   = 5
	maxBackoff    = 5 * time.Minute
	backoffForget = time.Hour // a pair that stops guessing starts afresh after this
	limiterCap    = 100_000   // entries per map before full or forgotten ones are dropped
)

// bucket is a token bucket: burst tokens, one more every `every`.
type bucket struct {
	tokens float64
	last   time.Time
}

// bucketSet is a token bucket per key.
type bucketSet struct {
	burst float64
	every time.Duration
	m     map[string]*bucket
}

func newBucketSet(burst int, every time.Duration) bucketSet {
	return bucketSet{burst: float64(burst), every: every, m: map[string]*bucket{}}
}

// get returns key's bucket refilled up to now.
func (s *bucketSet) get(key string, now time.Time) *bucket {
	b := s.m[key]
	if b == nil {
		if len(s.m) >= limiterCap {
			s.forgetFull(now)
		}
		b = &bucket{tokens: s.burst, last: now}
		s.m[key] = b
	}
	if s.every > 0 {
		b.tokens = min(s.burst, b.tokens+float64(now.Sub(b.last))/float64(s.every))
	}
	b.last = now
	return b
}

func (s *bucketSet) forgetFull(now time.Time) {
	for k, b := range s.m {
		if s.every <= 0 || b.tokens+float64(now.Sub(b.last))/float64(s.every) >= s.burst {
			delete(s.m, k)
		}
	}
}

// has reports whether key has n tokens.
func (s *bucketSet) has(key string, n float64, now time.Time) bool {
	return s.get(key, now).tokens >= n
}

// take spends n tokens of key's bucket if it has them.
func (s *bucketSet) take(key string, n float64, now time.Time) bool {
	b := s.get(key, now)
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

func (s *bucketSet) refund(key string, n float64) {
	if b := s.m[key]; b != nil {
		b.tokens = min(s.burst, b.tokens+n)
	}
}

// guessLimiter limits guesses at passwords and security answers.
type guessLimiter struct {
	mu       sync.Mutex
	byAddr   bucketSet
	byUser   bucketSet
	backoff  map[string]*backoff // user + "\x00" + address
	inflight map[string]bool     // users with a guess being checked
	base     time.Duration       // the first back-off
}

type backoff struct {
	fails int
	last  time.Time
}

func newGuessLimiter(base time.Duration) *guessLimiter {
	return &guessLimiter{
		base:     base,
		byAddr:   newBucketSet(addrGuessBurst, addrGuessEvery),
		byUser:   newBucketSet(userGuessBurst, userGuessEvery),
		backoff:  map[string]*backoff{},
		inflight: map[string]bool{},
	}
}

// guess is one admitted guess; end it with its outcome.
type guess struct {
	l          *guessLimiter
	user, addr string
}

// begin admits one guess at user from addr, or answers why not. Only one guess per user is
// checked at a time.
func (l *guessLimiter) begin(user, addr string) (*guess, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.inflight[user] {
		return nil, clientErr("Another attempt for this user is being checked; try again.")
	}
	if wait := l.backoffOf(user, addr, now); wait > 0 {
		return nil, clientErr("Too many failed attempts; try again in %d s.", int(wait.Seconds()+0.999))
	}
	if !l.byAddr.has(addr, 1, now) || !l.byUser.has(user, 1, now) {
		return nil, clientErr("Too many failed attempts; try again later.")
	}
	l.byAddr.take(addr, 1, now)
	l.byUser.take(user, 1, now)
	l.inflight[user] = true
	return &guess{l: l, user: user, addr: addr}, nil
}

// backoffOf is how long the pair must still wait before its next guess.
func (l *guessLimiter) backoffOf(user, addr string, now time.Time) time.Duration {
	b := l.backoff[user+"\x00"+addr]
	if b == nil {
		return 0
	}
	if now.Sub(b.last) > backoffForget {
		delete(l.backoff, user+"\x00"+addr)
		return 0
	}
	if b.fails < freeGuesses {
		return 0
	}
	d := min(l.base<<min(b.fails-freeGuesses, 20), max(maxBackoff, l.base))
	return b.last.Add(d).Sub(now)
}

// end records the guess's outcome: a right one gives its tokens back and clears the back-off.
func (g *guess) end(right bool) {
	l := g.l
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inflight, g.user)
	key := g.user + "\x00" + g.addr
	if right {
		l.byAddr.refund(g.addr, 1)
		l.byUser.refund(g.user, 1)
		delete(l.backoff, key)
		return
	}
	b := l.backoff[key]
	if b == nil {
		if len(l.backoff) >= limiterCap {
			clear(l.backoff)
		}
		b = &backoff{}
		l.backoff[key] = b
	}
	b.fails++
	b.last = time.Now()
}

// budget is a token bucket per key for things that are spent in amounts: registrations per
// address, contact lookups per user.
type budget struct {
	mu  sync.Mutex
	set bucketSet
}

func newBudget(burst int, refill time.Duration) *budget {
	every := time.Duration(0)
	if burst > 0 {
		every = refill / time.Duration(burst)
	}
	return &budget{set: newBucketSet(burst, every)}
}

// spend takes n from key's budget if it has n. A budget of 0 is unlimited.
func (b *budget) spend(key string, n int) bool {
	if b.set.burst <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set.take(key, float64(n), time.Now())
}

// refund gives back n that spend took.
func (b *budget) refund(key string, n int) {
	if b.set.burst <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.set.refund(key, float64(n))
}

// spendMail spends one outbound mail and its recipients from user's daily budgets (-mails-per-day,
// -mail-recipients-per-day): 50 recipients a message would otherwise make 10,000 a day.
func (l *limits) spendMail(user string, rcpts int) error {
	if !l.mails.spend(user, 1) {
		return clientErr("Too many e-mails today; try again tomorrow.")
	}
	if !l.mailRcpts.spend(user, rcpts) {
		l.mails.refund(user, 1)
		return clientErr("Too many recipients today; try again tomorrow, or write to fewer people.")
	}
	return nil
}

// has reports whether key's budget has a token left.
func (b *budget) has(key string) bool {
	if b.set.burst <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.set.has(key, 1, time.Now())
}

// addrCounter counts things in progress per address, up to a maximum each.
type addrCounter struct {
	mu  sync.Mutex
	max int
	n   map[string]int
}

func newAddrCounter(max int) *addrCounter { return &addrCounter{max: max, n: map[string]int{}} }

// acquire counts one more for addr unless it is at the maximum (0: no maximum).
func (c *addrCounter) acquire(addr string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max > 0 && c.n[addr] >= c.max {
		return false
	}
	c.n[addr]++
	return true
}

func (c *addrCounter) release(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[addr]--; c.n[addr] <= 0 {
		delete(c.n, addr)
	}
}

// Client addresses.

// proxies are the reverse proxies whose X-Forwarded-For is believed (-trusted-proxies).
type proxies []netip.Prefix

func parseProxies(s string) (proxies, error) {
	var out proxies
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("-trusted-proxies: %q is not an address or CIDR", f)
			}
			f = netip.PrefixFrom(a, a.BitLen()).String()
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("-trusted-proxies: %q is not an address or CIDR", f)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (ps proxies) trusts(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// clientAddr is the address a request comes from: its peer, or, when the peer is a trusted
// proxy, the rightmost X-Forwarded-For entry that is not one.
func (ps proxies) clientAddr(r *http.Request) netip.Addr {
	peer := peerAddr(r.RemoteAddr)
	if !peer.IsValid() || !ps.trusts(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer // a malformed hop: trust nothing further left
		}
		if !ps.trusts(a) {
			return a.Unmap()
		}
	}
	return peer
}

func peerAddr(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// limitKey is the address's key in per-address limits: IPv6 addresses by their /64, which
// is what one subscriber usually gets.
func limitKey(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// connLimitListener refuses a connection when its address already has max open (the peer's
// address: behind a trusted proxy the proxy is the peer, and is not limited).
type connLimitListener struct {
	net.Listener
	counter  *addrCounter
	proxies  proxies
	onRefuse func()
}

func (l *connLimitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := peerAddr(c.RemoteAddr().String())
		if l.proxies.trusts(peer) {
			return c, nil
		}
		key := limitKey(peer)
		if !l.counter.acquire(key) {
			if l.onRefuse != nil {
				l.onRefuse()
			}
			_ = c.Close()
			continue
		}
		return &countedConn{Conn: c, release: func() { l.counter.release(key) }}, nil
	}
}

type countedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// NetConn is the connection it counts (so that callers can reach TCP's CloseRead).
func (c *countedConn) NetConn() net.Conn { return c.Conn }

func (c *countedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// limits are the abuse limits of one instance.
type limits struct {
	proxies       proxies
	guesses       *guessLimiter
	registrations *budget      // per address, per day
	lookups       *budget      // per user, per day
	lookupMisses  *budget      // per user: single lookups that found nobody
	convoChanges  *budget      // per user, per hour: conversations created or joined by others
	handshakes    *addrCounter // pre-login commands in progress per address
	codes         *budget      // verification codes sent per user, per day
	mails         *budget      // e-mails and invitations sent per user, per day
	mailRcpts     *budget      // their recipients, per user, per day
	reactions     *budget      // reaction changes per user per message (database_functions_edit.go)
	nameChecks    *budget      // CheckUsername per address, per hour
	unknownRcpts  *budget      // inbound mail recipients that lead nowhere, per address, per hour
	logins        *gate        // pre-login commands running on the instance
}

// Admission of logins (conn.go): at most loginsAtOnce pre-login commands run at once on an
// instance (a login reads the user's conversations and more: about the PostgreSQL pool's size
// keeps it busy without queueing inside it); up to loginQueueMax more wait, each up to
// loginQueueWait, and the rest are told at once that the server is busy, which clients answer
// by trying again a little later (the web client after 2.5–7.5 s, on the same connection).
// After a restart every client logs in again at once. Refusing at once what the queue cannot
// serve soon keeps the queue fed by jittered retries; when every waiter instead waited out its
// time and was refused together, their retries came back together and the server idled between
// waves (a 10,000-session storm: no logins for 2 s after a spike; with the bound the curve has
// no such gap, in about the same total time: 47 s against 41–49 s). The wait is long (half the
// web client's 20 s request time-out) for when logins are slow.
const (
	loginsAtOnce   = 16
	loginQueueMax  = 2048
	loginQueueWait = 10 * time.Second
	errServerBusy  = "The server is busy; try again in a moment."
)

// gate is a counting semaphore with a bounded queue.
type gate struct {
	places  chan struct{}
	waiting atomic.Int64
	max     int64 // waiters allowed
}

func newGate(places, queue int) *gate {
	return &gate{places: make(chan struct{}, places), max: int64(queue)}
}

// enter takes a place, waiting up to loginQueueWait (or ctx) if the queue has room; false
// when none came free.
func (g *gate) enter(ctx context.Context) bool {
	select {
	case g.places <- struct{}{}:
		return true
	default:
	}
	if g.waiting.Add(1) > g.max {
		g.waiting.Add(-1)
		return false
	}
	defer g.waiting.Add(-1)
	t := time.NewTimer(loginQueueWait)
	defer t.Stop()
	select {
	case g.places <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (g *gate) leave() { <-g.places }

// nameChecksPerHour bounds CheckUsername per address: plenty for typing names.
const nameChecksPerHour = 300

const (
	missBurst = 20 // single lookups that find nobody, per user, then one a minute
	missEvery = time.Minute
)

func newLimits(cfg Config) *limits {
	ps, _ := parseProxies(cfg.TrustedProxies) // checked by parseFlags
	return &limits{
		proxies:       ps,
		guesses:       newGuessLimiter(cfg.guessBackoff),
		registrations: newBudget(cfg.RegistrationsPerDay, 24*time.Hour),
		lookups:       newBudget(cfg.LookupsPerDay, 24*time.Hour),
		lookupMisses:  newBudget(missBurst, missBurst*missEvery),
		convoChanges:  newBudget(cfg.ConvosPerHour, time.Hour),
		handshakes:    newAddrCounter(cfg.HandshakesPerAddr),
		codes:         newBudget(codesPerDay, 24*time.Hour),
		mails:         newBudget(cfg.MailsPerDay, 24*time.Hour),
		mailRcpts:     newBudget(cfg.MailRcptsPerDay, 24*time.Hour),
		reactions:     newBudget(reactionBurst, reactionBurst*reactionEvery),
		nameChecks:    newBudget(nameChecksPerHour, time.Hour),
		unknownRcpts:  newBudget(unknownRcptsPerHour, time.Hour),
		logins:        newGate(loginsAtOnce, loginQueueMax),
	}
}

// abort ends a guess that was never checked (a storage error): its tokens go back and the
// back-off is unchanged.
func (g *guess) abort() {
	l := g.l
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.inflight, g.user)
	l.byAddr.refund(g.addr, 1)
	l.byUser.refund(g.user, 1)
}
