package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/nats-io/nats.go"
)

// A logged-in session is one goroutine: its Run loop reads the client's frames itself (no
// reader goroutine and channel beside it) and forwards the user's events between frames. The
// dispatcher (userhub.go) appends an event to the session's queue and, if the loop is waiting
// for a frame, wakes it: the wait's context is done when the session's wake channel closes.
// sockjs-go's receive can be abandoned that way without losing a frame (the frame stays in
// its buffer for the next receive). An idle session therefore holds no queue and no channel
// of its own, only what its wait needs.

// sessionEvents is a session's part of event delivery.
type sessionEvents struct {
	mu        sync.Mutex
	queue     []*nats.Msg   // events not yet forwarded, at most pushBuffer
	resyncDue bool          // a Resync push is due (resync.go)
	stopping  bool          // the server is stopping: no more waits
	wake      chan struct{} // closed to end the loop's wait for a frame; nil when not waiting
}

// enqueue adds an event for the session; false means its queue is full (it cannot keep up).
func (s *Session) enqueue(msg *nats.Msg) bool {
	e := &s.events
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.queue) >= pushBuffer {
		return false
	}
	e.queue = append(e.queue, msg)
	e.wakeLocked()
	return true
}

// requestResync asks the session's loop to send a Resync push; one pending request is enough.
func (s *Session) requestResync() {
	e := &s.events
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resyncDue = true
	e.wakeLocked()
}

// stopWaiting ends the loop's wait for a frame and any later one (the server is stopping).
func (s *Session) stopWaiting() {
	e := &s.events
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopping = true
	e.wakeLocked()
}

func (e *sessionEvents) wakeLocked() {
	if e.wake != nil {
		close(e.wake)
		e.wake = nil
	}
}

// take removes what is due: the queued events, and whether a Resync is.
func (s *Session) take() ([]*nats.Msg, bool) {
	e := &s.events
	e.mu.Lock()
	defer e.mu.Unlock()
	q, r := e.queue, e.resyncDue
	e.queue, e.resyncDue = nil, false
	return q, r
}

// forwardPending forwards every event already waiting, and a due Resync; several at once go out
// in one write (writecork.go).
func (s *Session) forwardPending() {
	for {
		q, resync := s.take()
		if len(q) == 0 && !resync {
			return
		}
		batch := len(q) > 1 || len(q) > 0 && (resync || isSequence(q[0]))
		if batch {
			s.corker.cork()
		}
		for _, msg := range q {
			s.forward(msg)
		}
		if resync {
			s.sendRaw(resyncPayload)
		}
		if batch {
			s.corker.uncork()
		}
	}
}

// isSequence tells an event that carries several frames (groupcommit.go).
func isSequence(msg *nats.Msg) bool {
	return len(msg.Data) > 0 && msg.Data[0] == frameSeparator
}

// waitChan arms the wake channel for a wait; nil means something is due already. stopping
// means the server is stopping: there is no more waiting.
func (s *Session) waitChan() (wake chan struct{}, stopping bool) {
	e := &s.events
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopping {
		return nil, true
	}
	if len(e.queue) > 0 || e.resyncDue {
		return nil, false
	}
	e.wake = make(chan struct{})
	return e.wake, false
}

// errWoken ends a wait for a frame because something else is due.
var errWoken = errors.New("woken for events")

// wakeCtx is the context of one wait for a frame: done when woken. Its parent is the server's
// context (through the session's), whose end wakes every waiting loop through the dispatcher
// (Database.dispatch calls stopWaiting), so Done needs only the channel.
type wakeCtx struct {
	context.Context
	wake chan struct{}
}

func (c wakeCtx) Done() <-chan struct{} { return c.wake }

func (c wakeCtx) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	select {
	case <-c.wake:
		return errWoken
	default:
		return nil
	}
}

// nextFrame waits for the client's next frame, forwarding events meanwhile. It returns false
// when the session has ended (the client went away, it was closed, or the server is stopping).
func (s *Session) nextFrame(ctx context.Context) (string, bool) {
	for ctx.Err() == nil {
		s.forwardPending()
		wake, stopping := s.waitChan()
		if stopping {
			// Not "until ctx ends": the server's context is done before each session's own
			// (cancelling ten thousand children takes a while), and a loop that went round
			// until then would spin, starving the very cancellation it waits for.
			return "", false
		}
		if wake == nil {
			continue
		}
		frame, err := s.sock.RecvCtx(wakeCtx{ctx, wake})
		switch {
		case err == nil:
			return frame, true
		case !errors.Is(err, errWoken):
			return "", false // the session is closed, or the server is stopping
		}
	}
	return "", false
}

// dispatchTo hands an event to one session of its user, closing the session if it cannot keep
// up (called with the hubs' lock held).
func dispatchTo(s *Session, msg *nats.Msg) {
	if s.enqueue(msg) {
		return
	}
	if s.markSlow() {
		slog.Warn("closing session that cannot keep up with its events", "user", s.user)
		// Not here: closing may wait for a write to that session's stalled client.
		go s.close(closeSlow, "too slow: reconnect to resync")
	}
}

// loginDeadline is the context of the handshake: it ends after -login-timeout.
func (s *Session) loginDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if d := s.db.cfg.LoginTimeout; d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}
