package main

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// A loop told that the server is stopping ends at once, even while its own context is still
// live: the server's context ends before its thousands of children are cancelled one by one,
// and a loop that went round until its own ended would spin (which once made a shutdown with
// 10,000 sessions take 84 s instead of a fraction of one).
func TestNextFrameEndsWhenTheServerStops(t *testing.T) {
	s := &Session{}
	s.stopWaiting()
	done := make(chan bool, 1)
	go func() {
		_, ok := s.nextFrame(context.Background())
		done <- ok
	}()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("nextFrame returned a frame after the server stopped")
		}
	case <-time.After(5 * time.Second): // a failure detector: it returns at once when right
		t.Fatal("nextFrame did not return after the server stopped")
	}
}

// Events wait in a bounded queue: the first pushBuffer are taken, in order, then the session
// counts as too slow; a due Resync is taken once.
func TestSessionEventQueue(t *testing.T) {
	s := &Session{}
	for i := range pushBuffer {
		if !s.enqueue(&nats.Msg{Subject: "e", Data: []byte{byte(i)}}) {
			t.Fatalf("event %d refused", i)
		}
	}
	if s.enqueue(&nats.Msg{Subject: "e"}) {
		t.Fatal("an event beyond the queue's bound was taken")
	}
	s.requestResync()
	s.requestResync()
	q, resync := s.take()
	if len(q) != pushBuffer || q[0].Data[0] != 0 || q[pushBuffer-1].Data[0] != byte(pushBuffer-1) || !resync {
		t.Fatalf("took %d events (resync %v)", len(q), resync)
	}
	if q, resync := s.take(); len(q) != 0 || resync {
		t.Fatalf("took %d events and resync %v again", len(q), resync)
	}
	// A wait is armed only when nothing is due, and an event ends it.
	wake, stopping := s.waitChan()
	if wake == nil || stopping {
		t.Fatal("no wait armed with nothing due")
	}
	s.enqueue(&nats.Msg{Subject: "e"})
	select {
	case <-wake:
	default:
		t.Fatal("an event did not end the wait")
	}
	if wake, _ := s.waitChan(); wake != nil {
		t.Fatal("a wait armed with an event due")
	}
}
