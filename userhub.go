package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// User hubs: one NATS subscription per user per instance, shared by that user's sessions here.
// A user with many sessions (tabs, devices) costs one subscription, not one each, in the client
// and in an embedded server. Every hub's subscription delivers into one channel (no goroutine per
// subscription); one dispatcher goroutine hands each event to the sessions of its user, each
// into its own bounded queue. A session whose queue is full cannot keep up with its events: it is
// closed (its client reconnects and resyncs) and nobody else loses anything.

const (
	inboxSize = 1 << 16 // events received and not yet dispatched, for the whole instance
)

// userHub is one user's subscription here and the sessions that share it.
type userHub struct {
	sub      *nats.Subscription
	sessions map[*Session]struct{}
	gen      uint64              // events received: bumped by each (activity.go)
	activity map[string]activity // by CID, what the user's sessions last read (activity.go)
}

// hubs holds the instance's user hubs.
type hubs struct {
	mu     sync.Mutex
	byUser map[string]*userHub             // upper-case username
	bySub  map[*nats.Subscription]*userHub // for NATS's slow-consumer errors
	inbox  chan *nats.Msg
}

func newHubs() *hubs {
	return &hubs{byUser: map[string]*userHub{}, bySub: map[*nats.Subscription]*userHub{}, inbox: make(chan *nats.Msg, inboxSize)}
}

// join adds s to its user's hub, subscribing first if it is the user's first session here. It
// returns once the NATS server has the subscription (when NATS is connected), so that no event
// published after the login reply is missed.
func (db *Database) join(s *Session) error {
	h := db.hubs
	h.mu.Lock()
	hub := h.byUser[s.upper]
	if hub == nil {
		sub, err := db.nc.ChanSubscribe(userSubject(s.upper), h.inbox)
		if err != nil {
			h.mu.Unlock()
			return fmt.Errorf("subscribing to events: %w", err)
		}
		// The instance's inbox takes every user's events: NATS's per-subscription limit must
		// not stop one user's events while the inbox still has room.
		_ = sub.SetPendingLimits(-1, -1)
		hub = &userHub{sub: sub, sessions: map[*Session]struct{}{}}
		h.byUser[s.upper], h.bySub[sub] = hub, hub
	}
	hub.sessions[s] = struct{}{}
	h.mu.Unlock()
	if db.nc.Status() != nats.CONNECTED {
		return nil // sent on reconnect, after which every session resyncs
	}
	if err := db.nc.FlushTimeout(5 * time.Second); err != nil {
		db.leave(s)
		return fmt.Errorf("subscribing to events: %w", err)
	}
	return nil
}

// leave removes s from its hub, and the hub's subscription with its last session.
func (db *Database) leave(s *Session) {
	h := db.hubs
	h.mu.Lock()
	defer h.mu.Unlock()
	hub := h.byUser[s.upper]
	if hub == nil {
		return
	}
	delete(hub.sessions, s)
	if len(hub.sessions) == 0 {
		delete(h.byUser, s.upper)
		delete(h.bySub, hub.sub)
		_ = hub.sub.Unsubscribe()
	}
}

// eachSession calls fn for every logged-in session here.
func (db *Database) eachSession(fn func(*Session)) {
	h := db.hubs
	h.mu.Lock()
	var all []*Session
	for _, hub := range h.byUser {
		for s := range hub.sessions {
			all = append(all, s)
		}
	}
	h.mu.Unlock()
	for _, s := range all {
		fn(s)
	}
}

// sessionsOfSub are the sessions sharing a subscription (nil if it is no hub's).
func (db *Database) sessionsOfSub(sub *nats.Subscription) []*Session {
	h := db.hubs
	h.mu.Lock()
	defer h.mu.Unlock()
	hub := h.bySub[sub]
	if hub == nil {
		return nil
	}
	out := make([]*Session, 0, len(hub.sessions))
	for s := range hub.sessions {
		out = append(out, s)
	}
	return out
}

// dispatch hands every event in the inbox to the sessions of its user, until ctx (the
// server's) ends; then it ends every session's wait for a frame, so their loops return.
func (db *Database) dispatch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			db.eachSession((*Session).stopWaiting)
			return
		case msg := <-db.hubs.inbox:
			db.dispatchOne(msg)
		}
	}
}

func (db *Database) dispatchOne(msg *nats.Msg) {
	h := db.hubs
	h.mu.Lock()
	defer h.mu.Unlock()
	hub := h.bySub[msg.Sub]
	if hub == nil {
		return // its last session left meanwhile
	}
	if answerPresence(msg) { // presence.go
		return
	}
	hub.forgetActivity()
	for s := range hub.sessions {
		dispatchTo(s, msg)
	}
}
