package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Presence: whether a user has a live session on any instance, for the notifications that go
// only to people who are away (push, the SMS bridge). It costs no subscription of its own: the
// question is a request on the user's event subject, which exists exactly while some instance
// holds a session of the user (userhub.go); that instance's dispatcher answers it, and NATS
// answers "no responders" at once when nobody holds one (DESIGN §5.2).

const (
	hdrPresence     = "Pinged-Presence" // a presence request on a user's event subject
	presenceTimeout = 500 * time.Millisecond
)

// presenceState is what is known of a user's sessions.
type presenceState int

const (
	presenceUnknown presenceState = iota // NATS away or no answer in time
	presenceOnline
	presenceOffline
)

// presence asks whether user has a live session: here, or on an instance that answers.
func (db *Database) presence(ctx context.Context, user string) presenceState {
	up := upperName(user)
	db.hubs.mu.Lock()
	_, here := db.hubs.byUser[up]
	db.hubs.mu.Unlock()
	if here {
		return presenceOnline
	}
	if db.nc == nil || db.nc.Status() != nats.CONNECTED {
		return presenceUnknown
	}
	rctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	_, err := db.nc.RequestMsgWithContext(rctx, &nats.Msg{Subject: userSubject(up), Header: nats.Header{hdrPresence: []string{"1"}}})
	switch {
	case err == nil:
		return presenceOnline
	case errors.Is(err, nats.ErrNoResponders):
		return presenceOffline
	default:
		slog.Debug("presence request", "user", user, "err", err)
		return presenceUnknown
	}
}

// userOnline is presence for push: unknown counts as offline, since a duplicate notification
// beats a missed one.
func (db *Database) userOnline(ctx context.Context, user string) bool {
	return db.presence(ctx, user) == presenceOnline
}

// online is presence for the SMS bridge: unknown counts as online, since an SMS costs the
// recipient and one too many is worse than one missed.
func (db *Database) online(ctx context.Context, user string) bool {
	return db.presence(ctx, user) != presenceOffline
}

// answerPresence answers a presence request that reached a hub of this instance (called by the
// dispatcher); it reports whether msg was one, so that it is not forwarded to the sessions.
func answerPresence(msg *nats.Msg) bool {
	if msg.Header == nil || msg.Header.Get(hdrPresence) == "" {
		return false
	}
	if msg.Reply != "" {
		_ = msg.Respond(nil)
	}
	return true
}
