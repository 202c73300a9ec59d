package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/pquerna/ffjson/ffjson"
)

// Group commit. Every insert into a conversation holds that conversation's lock through its own
// commit (that is what keeps m_time strictly increasing in commit order, across instances), so
// a busy conversation's messages would wait for one disk sync each. Instead, the sends to one
// conversation that arrive on this instance while an insert into it is running wait for it to
// finish and are then written together: one lock, one statement each in one pipelined
// transaction, one commit, one sync. A lone message goes at once (no timer), an acknowledgement
// waits only for its own group's commit, and different conversations are written in parallel.

// maxGroup bounds a group, so that one commit never grows without limit.
const maxGroup = 256

// convWriter queues the sends to one conversation. At most one writer of a conversation is in
// use at a time: an idle one retires (leaves db.writers) and takes no more sends, which go to
// its successor. (Two at once would keep m_time increasing, the lock sees to that, but could
// store one session's pipelined sends in either order.)
type convWriter struct {
	cid     string
	mu      sync.Mutex
	queue   []*queuedInsert
	running bool // a group is being written
	retired bool // idle and out of db.writers
}

type queuedInsert struct {
	m    *Message
	to   *ConvoRecord // when not nil, the writer delivers m to its members once newly stored
	dup  bool
	err  error
	done chan struct{}
}

// insertGrouped stores m like insertMessage does, written together with the other sends to its
// conversation that are waiting at the same moment.
func (db *Database) insertGrouped(ctx context.Context, m *Message) (dup bool, err error) {
	q, lead := db.queueInsert(m, nil)
	if lead != nil {
		lead()
	}
	return q.wait(ctx)
}

// queueInsert puts m in its conversation's queue; the sends queued by one goroutine are stored
// in the order queued. With to, the writer delivers m to to's members once it is newly stored
// (not a resend), in commit order and batched with its group (deliverGroup). When lead is not
// nil, the caller must call it (in any goroutine): it writes the groups waiting on the
// conversation until none is left.
func (db *Database) queueInsert(m *Message, to *ConvoRecord) (q *queuedInsert, lead func()) {
	q = &queuedInsert{m: m, to: to, done: make(chan struct{})}
	for {
		v, _ := db.writers.LoadOrStore(m.CID, &convWriter{cid: m.CID})
		w := v.(*convWriter)
		leads, ok := w.enqueue(q)
		if !ok {
			continue // it retired meanwhile: find or make its successor
		}
		if leads {
			lead = func() { db.writeGroups(w) }
		}
		return q, lead
	}
}

// enqueue adds q to w's queue and tells whether the caller must lead (write the queue); ok is
// false when w has retired.
func (w *convWriter) enqueue(q *queuedInsert) (leads, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.retired {
		return false, false
	}
	w.queue = append(w.queue, q)
	leads = !w.running
	w.running = true
	return leads, true
}

// finishGroup tells whether more sends wait on w after a group; if none do, w retires, so that
// db.writers holds only busy conversations.
func (db *Database) finishGroup(w *convWriter) (more bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) > 0 {
		return true
	}
	w.running, w.retired = false, true
	db.writers.CompareAndDelete(w.cid, w)
	return false
}

// wait waits for q's group to be written.
func (q *queuedInsert) wait(ctx context.Context) (dup bool, err error) {
	select {
	case <-q.done:
		return q.dup, q.err
	case <-ctx.Done():
		// It may still be written: the client's resend (same client_id) will find it.
		return false, fmt.Errorf("waiting for the write: %w", ctx.Err())
	}
}

// writeGroups writes the first group waiting on w; if more arrived meanwhile, another goroutine
// writes them, so that this caller's acknowledgement waits only for its own group.
func (db *Database) writeGroups(w *convWriter) {
	w.mu.Lock()
	n := min(len(w.queue), maxGroup)
	group := w.queue[:n:n]
	w.queue = w.queue[n:]
	w.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	db.writeGroup(ctx, group)
	cancel()
	db.metrics.insertGroup(len(group))

	if db.finishGroup(w) {
		go db.writeGroups(w)
	}
}

// writeGroup inserts the group in one transaction; if that fails, each message on its own, so
// that one bad message cannot fail the others. Then it delivers the stored ones.
func (db *Database) writeGroup(ctx context.Context, group []*queuedInsert) {
	defer func() {
		db.deliverGroup(group)
		for _, q := range group {
			close(q.done)
		}
	}()
	if len(group) == 1 {
		group[0].dup, group[0].err = db.insertMessage(ctx, db.pool, group[0].m)
		return
	}
	err := db.insertMany(ctx, group)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
	case errors.As(err, &pgErr):
		// A statement failed, so the transaction did not commit: try each on its own.
		for _, q := range group {
			q.dup, q.err = db.insertMessage(ctx, db.pool, q.m)
		}
	default:
		// The commit's outcome is unknown: every sender is told, and a resend with the same
		// client_id finds what was stored.
		for _, q := range group {
			q.err = err
		}
	}
}

// insertMany writes several messages of one conversation under one lock and one commit: the
// statements are pipelined in one batch, which PostgreSQL runs as one implicit transaction, and
// each insert sees the rows of the ones before it.
func (db *Database) insertMany(ctx context.Context, group []*queuedInsert) error {
	cid := group[0].m.CID
	if err := db.ensureConvTable(ctx, cid); err != nil {
		return err
	}
	b := &pgx.Batch{}
	b.Queue("SELECT pg_advisory_xact_lock($1)", lockKey(cid))
	for _, q := range group {
		b.Queue(insertSQL(cid), insertArgs(q.m)...)
	}
	res := db.pool.SendBatch(ctx, b)
	if _, err := res.Exec(); err != nil {
		res.Close()
		return fmt.Errorf("locking %s: %w", convTable(cid), err)
	}
	var dups []*queuedInsert
	for _, q := range group {
		var mt time.Time
		err := scanInserted(res.QueryRow(), q.m, &mt)
		switch {
		case errors.Is(err, pgx.ErrNoRows) && q.m.ClientID != "":
			dups = append(dups, q)
		case err != nil:
			res.Close()
			return fmt.Errorf("inserting into %s: %w", convTable(cid), err)
		default:
			q.m.MTime = formatTime(mt)
		}
	}
	if err := res.Close(); err != nil {
		return fmt.Errorf("committing into %s: %w", convTable(cid), err)
	}
	for _, q := range dups { // stored before (a resend): answer with the stored message
		q.dup, q.err = true, storedByClientID(ctx, db.pool, q.m)
	}
	return nil
}

// Batched delivery. The writer publishes a group's new messages in commit order, so an instance
// delivers a conversation's messages in the order stored; and consecutive ones for the same
// members go as one NATS message per member, a JSON text sequence (RFC 7464: each frame after
// an ASCII record separator, which JSON text cannot contain unescaped). A session forwards the
// frames of a sequence one by one, in one write (session_events.go, writecork.go), so a group
// costs each member one publish and each session one system call instead of one per message.

// frameSeparator starts each frame of a sequence.
const frameSeparator = 0x1e

// maxSequence bounds a sequence, so that the events a session may queue (pushBuffer) stay
// bounded in bytes as well as in number.
const maxSequence = 64 << 10

// deliverGroup publishes the newly stored messages of a written group that have members to go to.
func (db *Database) deliverGroup(group []*queuedInsert) {
	var seq []byte // the sequence being built, for members
	var members []string
	frames := 0
	flush := func() {
		switch frames {
		case 0:
			return
		case 1:
			db.publish(members, seq[1:], "") // a lone message goes as it always did
		default:
			db.publish(members, seq, "")
		}
		seq, frames = nil, 0
	}
	for _, q := range group {
		if q.err != nil || q.dup || q.to == nil {
			continue
		}
		payload, err := messagePayload(q.to, q.m)
		if err != nil {
			slog.Error("delivering message", "cid", q.to.CID, "id", q.m.ID, "err", err)
			continue
		}
		if frames > 0 && (!slices.Equal(members, q.to.Members) || len(seq)+1+len(payload) > maxSequence) {
			flush()
		}
		members = q.to.Members
		seq = append(append(seq, frameSeparator), payload...)
		frames++
		ffjson.Pool(payload)
	}
	flush()
}
