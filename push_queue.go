package main

import (
	"slices"
	"sync"
	"time"
)

// The push queue (DESIGN §5.2): what the push workers take their work from. A task is a message
// whose recipients are to be looked up (a job), or one delivery to one device. It is bounded and
// drops its OLDEST task when full, so that a backlog cannot keep new messages from being pushed.
// Deliveries have budgets: those to one user, and those to one host (a Web Push endpoint's, or
// FCM or APNs), may occupy only a share of the workers at once, so that a user with many dead
// endpoints, or a push service that never answers, slows only itself while the other workers go
// on with everyone else's. A delivery to retry waits in the queue until it is due, not in a
// worker.

// pushTask is a job (job set) or a delivery.
type pushTask struct {
	job *pushJob
	// A delivery: one provider, one device of user.
	prov                        pushProvider
	user, platform, token, host string
	note                        pushNote
	attempt                     int       // attempts made before this one
	notBefore                   time.Time // a retry's back-off
	born                        time.Time // when it (or its first attempt) was queued
}

type pushQueue struct {
	mu        sync.Mutex
	tasks     []*pushTask // oldest first
	limit     int
	userShare int            // deliveries to one user running at once
	hostShare int            // deliveries to one host running at once
	running   map[string]int // by "u\x00"+user and "h\x00"+host
	wake      chan struct{}  // a task was added or finished: idle workers look again
}

// newPushQueue holds up to limit tasks for the given number of workers: a user's deliveries
// may occupy a quarter of them, a host's half (at least one each).
func newPushQueue(limit, workers int) *pushQueue {
	return &pushQueue{limit: limit, userShare: max(1, workers/4), hostShare: max(1, workers/2),
		running: map[string]int{}, wake: make(chan struct{}, 1)}
}

func (q *pushQueue) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// add queues t in the order of its age (a retry keeps its first attempt's) and returns the
// oldest task, dropped, when the queue was full.
func (q *pushQueue) add(t *pushTask, now time.Time) (dropped *pushTask) {
	if t.born.IsZero() {
		t.born = now
	}
	q.mu.Lock()
	if len(q.tasks) >= q.limit {
		if len(q.tasks) == 0 || !t.born.After(q.tasks[0].born) {
			q.mu.Unlock()
			return t // older than everything queued (a retry): it is the one to go
		}
		dropped = q.tasks[0]
		q.tasks = slices.Delete(q.tasks, 0, 1)
	}
	i, _ := slices.BinarySearchFunc(q.tasks, t.born, func(x *pushTask, b time.Time) int {
		if x.born.After(b) {
			return 1
		}
		return -1 // equal ages keep their arrival order
	})
	q.tasks = slices.Insert(q.tasks, i, t)
	q.mu.Unlock()
	q.poke()
	return dropped
}

// next takes the oldest task that may run now, counting it as running; with none it returns
// when the earliest retry is due (zero: nothing is waiting on time).
func (q *pushQueue) next(now time.Time) (*pushTask, time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var due time.Time
	for i, t := range q.tasks {
		if t.job == nil {
			if now.Before(t.notBefore) {
				if due.IsZero() || t.notBefore.Before(due) {
					due = t.notBefore
				}
				continue
			}
			if q.running["u\x00"+t.user] >= q.userShare || q.running["h\x00"+t.host] >= q.hostShare {
				continue
			}
			q.running["u\x00"+t.user]++
			q.running["h\x00"+t.host]++
		}
		q.tasks = slices.Delete(q.tasks, i, i+1)
		if len(q.tasks) > 0 {
			q.poke() // there may be more for another idle worker
		}
		return t, time.Time{}
	}
	return nil, due
}

// finish ends a task that next handed out.
func (q *pushQueue) finish(t *pushTask) {
	if t.job != nil {
		return
	}
	q.mu.Lock()
	for _, k := range []string{"u\x00" + t.user, "h\x00" + t.host} {
		if q.running[k]--; q.running[k] <= 0 {
			delete(q.running, k)
		}
	}
	q.mu.Unlock()
	q.poke() // a budget freed up
}
