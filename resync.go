package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Telling clients to resync. Live pushes travel over NATS, and NATS delivers at most once: while
// an instance's connection is down, or before its subscriptions are back after a reconnect,
// events published for its sessions are lost. Stored messages are not (they are in PostgreSQL),
// so a client that is told it may have missed something fetches it: each session on an instance
// whose NATS connection dropped or came back gets a Resync push, which the client answers with
// GetUserView and GetConvoData since its sync point for every conversation (DESIGN §5).
// Publishes that NATS refused outright are remembered, and once the connection is back their
// users are told to resync too (and a refused revocation is sent again).

// resyncPayload is the Resync push.
var resyncPayload = []byte(`{"cmd":"Resync"}`)

// maxMissed bounds the remembered refused publishes; past it every user with a session anywhere
// is told to resync (a broadcast subject every session listens on).
const maxMissed = 10_000

// broadcastSubject reaches every session of every instance.
const broadcastSubject = "pinged.all"

// missedPublishes are the subjects whose publishes NATS refused, and the revocations among
// them, to be repaired on reconnect.
type missedPublishes struct {
	mu       sync.Mutex
	subjects map[string]bool
	closes   []*nats.Msg
	overflow bool
}

func (m *missedPublishes) add(msg *nats.Msg) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.subjects == nil {
		m.subjects = map[string]bool{}
	}
	if len(m.subjects)+len(m.closes) >= maxMissed {
		m.overflow = true
		return
	}
	if msg.Header.Get(hdrClose) != "" {
		m.closes = append(m.closes, msg)
		return
	}
	m.subjects[msg.Subject] = true
}

// take empties the record and returns it.
func (m *missedPublishes) take() (subjects map[string]bool, closes []*nats.Msg, overflow bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	subjects, closes, overflow = m.subjects, m.closes, m.overflow
	m.subjects, m.closes, m.overflow = nil, nil, false
	return subjects, closes, overflow
}

// natsDisconnected is NATS's disconnect handler: sessions here may miss events from now on.
func (db *Database) natsDisconnected(_ *nats.Conn, err error) {
	slog.Warn("NATS connection lost; telling sessions to resync", "err", err)
	db.metrics.natsError()
	db.convos.clear() // invalidations cannot arrive now
	db.hubs.forgetAllActivity()
	db.resyncSessions()
}

// natsReconnected is NATS's reconnect handler. Once the server has our subscriptions again (a
// flush is the round trip that proves it), every session here resyncs, and the publishes that
// were refused meanwhile are repaired.
func (db *Database) natsReconnected(nc *nats.Conn) {
	go func() {
		if err := nc.FlushTimeout(10 * time.Second); err != nil {
			slog.Warn("NATS flush after reconnect", "err", err)
		}
		slog.Info("NATS connection back; telling sessions to resync", "url", nc.ConnectedUrlRedacted())
		db.convos.clear() // invalidations may have been lost while it was away
		db.hubs.forgetAllActivity()
		db.resyncSessions()
		db.repairMissed()
	}()
}

// resyncSessions tells every logged-in session on this instance to resync.
func (db *Database) resyncSessions() {
	db.eachSession((*Session).requestResync)
}

// repairMissed publishes what was refused while NATS was away: revocations again, and a Resync
// to every user whose events were lost.
func (db *Database) repairMissed() {
	subjects, closes, overflow := db.missed.take()
	if overflow {
		db.publishMsg(&nats.Msg{Subject: broadcastSubject, Data: resyncPayload})
	}
	for _, m := range closes {
		db.publishMsg(m)
	}
	for subj := range subjects {
		db.publishMsg(&nats.Msg{Subject: subj, Data: resyncPayload})
	}
}

// publishMsg publishes one message, remembering it when NATS refuses it.
func (db *Database) publishMsg(msg *nats.Msg) {
	err := db.nc.PublishMsg(msg)
	if errors.Is(err, nats.ErrMaxPayload) && len(msg.Data) > len(resyncPayload) {
		// Too large for NATS, which no retry mends: the sessions are told to fetch what they
		// missed instead, with the headers kept (a cache invalidation, a close).
		slog.Error("an event was too large for NATS; sending a Resync instead", "subject", msg.Subject, "bytes", len(msg.Data))
		err = db.nc.PublishMsg(&nats.Msg{Subject: msg.Subject, Header: msg.Header, Data: resyncPayload})
	}
	if err != nil {
		db.metrics.natsError()
		slog.Error("publishing event", "subject", msg.Subject, "err", err)
		db.missed.add(msg)
	}
}

// getUserView answers with the user's own view (DESIGN §3.3): what a client reads again after
// a Resync, since conversations may have been created or left meanwhile.
func getUserView(ctx context.Context, s *Session, _ *Request) (reply, error) {
	u, err := s.db.getUser(ctx, s.user)
	if err != nil {
		return nil, err
	}
	return s.db.userView(ctx, u)
}
