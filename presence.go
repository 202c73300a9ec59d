package main

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// Presence: whether a user has a live session on any instance, for the notifications that go
// only to people who are away (the SMS bridge). It costs no subscription of its own: the
// question is a request on the user's event subject, which exists exactly while some instance
// holds a session of the user (userhub.go); that instance's dispatcher answers it, and NATS
// answers "no responders" at once when nobody holds one.

const (
	hdrPresence     = "Pinged-Presence"
	presenceTimeout = 500 * time.Millisecond
)

// online reports whether user has a live session anywhere. When it cannot tell (NATS away, no
// answer in time) it says yes: a missed notification is better than one to someone reading.
func (db *Database) online(ctx context.Context, user string) bool {
	msg := nats.NewMsg(userSubject(upperName(user)))
	msg.Header.Set(hdrPresence, "?")
	ctx, cancel := context.WithTimeout(ctx, presenceTimeout)
	defer cancel()
	_, err := db.nc.RequestMsgWithContext(ctx, msg)
	return !errors.Is(err, nats.ErrNoResponders)
}

// answerPresence answers a presence request for a hub that has sessions; it reports whether msg
// was one (so that it is not forwarded to the sessions).
func answerPresence(msg *nats.Msg, sessions int) bool {
	if msg.Header == nil || msg.Header.Get(hdrPresence) == "" {
		return false
	}
	if sessions > 0 && msg.Reply != "" {
		_ = msg.Respond(nil)
	}
	return true
}
