package main

import (
	"context"
	"sync"
)

// Pipelined sends. A client may send several SendMessages without waiting for their
// acknowledgements (native clients and tools may; the load generator keeps a window; the web
// client sends its outbox one at a time, so that a refused message never lets a later one
// overtake it). Answered one at a time, each would wait for its own commit before the next was
// even read, so a session could never have more than one message in a group commit. Instead the
// session's loop checks each SendMessage and queues it in its conversation's writer in the order
// received (so one session's messages to a conversation are stored in that order); the writer
// publishes them in commit order, and a goroutine per send waits for the commit, runs what the
// message sets off and acknowledges. Any other command first waits until the session's sends
// are acknowledged, so it sees their effect as it would have before (a Leave after a send cannot
// overtake it), and a session ends only once they are.

// maxPipelinedSends bounds a session's sends being stored at once; the loop waits for a slot.
const maxPipelinedSends = 16

// sendPipeline is a session's sends in flight. The slots channel is made at the first send, so
// a session that never sends holds none.
type sendPipeline struct {
	slots    chan struct{}
	inflight sync.WaitGroup
}

// pipelineSend answers a SendMessage without holding the session's loop for its commit.
func (s *Session) pipelineSend(ctx context.Context, req *Request) {
	p := &s.sends
	if p.slots == nil {
		p.slots = make(chan struct{}, maxPipelinedSends)
	}
	p.slots <- struct{}{}
	p.inflight.Add(1)
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	release := func() {
		cancel()
		<-p.slots
		p.inflight.Done()
	}
	checked, q, lead := s.queueSend(ctx, req)
	if q == nil {
		release()
		return
	}
	go func() {
		defer release()
		defer s.recoverCommand(req)
		rep, err := s.storeSend(ctx, checked, q, lead)
		s.answer(req, rep, err)
	}()
}

// queueSend checks a SendMessage and queues its insert; a nil q means it was answered already
// (refused).
func (s *Session) queueSend(ctx context.Context, req *Request) (checked *checkedSend, q *queuedInsert, lead func()) {
	defer s.recoverCommand(req)
	checked, err := s.checkSend(ctx, req)
	if err != nil {
		s.answer(req, nil, err)
		return nil, nil, nil
	}
	q, lead = s.db.queueInsert(checked.m, checked.c)
	return checked, q, lead
}

// waitSends waits until the session's sends in flight are acknowledged.
func (s *Session) waitSends() {
	s.sends.inflight.Wait()
}
