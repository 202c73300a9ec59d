package main

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Conversation activity in the user view: each conversation's newest m_time and the user's
// unread count in it. Counting is the costliest part of a login (an index range of up to
// maxUnreadCount entries per conversation), and after a restart all of a user's sessions (tabs,
// devices) log in again together, so each user hub (userhub.go) keeps the activity its sessions
// last read. It is never staler than an event in flight:
//   - every event for the user empties it: a message, edit, deletion or reaction in any of the
//     user's conversations is published to every member's subject, and a publish refused while
//     NATS was away is repaired with a Resync to the user, an event too;
//   - it is emptied when the NATS connection drops, and nothing is stored while it is down;
//   - a read that began before an event is not stored (the hub's generation);
//   - an entry answers only for the base time it was counted from (a read receipt or an unread
//     count set since moves the base), and lives at most activityTTL.

const activityTTL = 30 * time.Second

// activity is one conversation's newest m_time (its creation time when it has no messages) and
// the messages after base that count as unread.
type activity struct {
	base, mtime string
	unread      int64
	at          time.Time
}

// cachedActivity fills the summaries whose activity u's hub holds for their base time; it
// returns which it filled and the hub's generation, for storeActivity.
func (h *hubs) cachedActivity(upper string, out []ConvoSummary, bases []string) (filled []bool, gen uint64) {
	filled = make([]bool, len(out))
	h.mu.Lock()
	defer h.mu.Unlock()
	hub := h.byUser[upper]
	if hub == nil {
		return filled, 0
	}
	for i := range out {
		a, ok := hub.activity[out[i].CID]
		if !ok || a.base != bases[i] || time.Since(a.at) > activityTTL {
			continue
		}
		out[i].MTime, out[i].UnreadCount, filled[i] = a.mtime, a.unread, true
	}
	return filled, hub.gen
}

// storeActivity keeps what a user view read, unless an event reached the hub since gen (or
// the hub is gone, or NATS is not connected: then no event could empty it).
func (h *hubs) storeActivity(upper string, gen uint64, connected bool, out []ConvoSummary, bases []string, filled []bool) {
	if !connected {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	hub := h.byUser[upper]
	if hub == nil || hub.gen != gen {
		return
	}
	if hub.activity == nil {
		hub.activity = make(map[string]activity, len(out))
	}
	now := time.Now()
	for i := range out {
		if !filled[i] {
			hub.activity[out[i].CID] = activity{base: bases[i], mtime: out[i].MTime, unread: out[i].UnreadCount, at: now}
		}
	}
}

// forgetActivity empties a hub's activity (h.mu held): an event for its user arrived.
func (hub *userHub) forgetActivity() {
	hub.gen++
	hub.activity = nil
}

// forgetAllActivity empties every hub's activity: the NATS connection dropped, and events
// may be lost until the sessions resync.
func (h *hubs) forgetAllActivity() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, hub := range h.byUser {
		hub.forgetActivity()
	}
}

// queueActivity asks, in the batch, the activity of each summary not filled already: its
// M_time (its newest message) and unread count (messages from others after its base time).
func queueActivity(b *pgx.Batch, user string, out []ConvoSummary, bases []string, filled []bool) {
	for i := range out {
		if filled[i] {
			continue
		}
		base := bases[i]
		if base == "" {
			base = "-infinity"
		}
		b.Queue(fmt.Sprintf(`SELECT (SELECT max(m_time) FROM %[1]s),
			(SELECT count(*) FROM (SELECT 1 FROM %[1]s WHERE m_time > $1::timestamptz AND f_username <> $2 AND kind NOT IN ('event', 'edit', 'delete', 'reaction') LIMIT %[2]d) x)`,
			convTable(out[i].CID), maxUnreadCount), base, user).QueryRow(func(row pgx.Row) error {
			var mt *time.Time
			if err := row.Scan(&mt, &out[i].UnreadCount); err != nil {
				return fmt.Errorf("reading activity of %s: %w", out[i].CID, err)
			}
			if mt != nil {
				out[i].MTime = formatTime(*mt)
			}
			return nil
		})
	}
}
