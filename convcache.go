package main

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// The conversation cache. Every command about a conversation reads its metadata (members first),
// so each instance keeps the records it read for a few seconds — but only where a change can
// never be missed:
//   - every write of a conversation record (updateConvo, deleteConvo) drops it here and
//     publishes its CID on convoSubject, and every instance drops it on receipt;
//   - a push about a conversation's members carries the CID in a header, and the session that
//     forwards it drops the record before its client sees the push, so a member who saw their
//     removal is refused at once on the instance they are on;
//   - nothing is cached while NATS is down, and the whole cache is dropped when the connection
//     drops and when it comes back (invalidations may have been lost meanwhile);
//   - an entry lives at most convoCacheTTL, and a read that began before an invalidation is not
//     stored.
// Callers must not change a record getConvo returns: it may be shared.

const (
	convoSubject  = "pinged.convo" // data: the CID of a conversation record that changed
	hdrConvo      = "Pinged-Convo" // on pushes about a conversation's members
	convoCacheTTL = 5 * time.Second
	convoCacheMax = 20_000
)

type convoCache struct {
	mu      sync.Mutex
	entries map[string]cachedConvo
	epoch   uint64 // bumped by every invalidation
}

type cachedConvo struct {
	c  *ConvoRecord
	at time.Time
}

func (cc *convoCache) get(cid string) *ConvoRecord {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	e, ok := cc.entries[cid]
	if !ok || time.Since(e.at) > convoCacheTTL {
		return nil
	}
	return e.c
}

// put stores c unless an invalidation happened since epoch (when the read began).
func (cc *convoCache) put(cid string, c *ConvoRecord, epoch uint64) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.epoch != epoch {
		return
	}
	if cc.entries == nil || len(cc.entries) >= convoCacheMax {
		cc.entries = map[string]cachedConvo{} // crude, but bounded: a full cache starts over
	}
	cc.entries[cid] = cachedConvo{c: c, at: time.Now()}
}

func (cc *convoCache) currentEpoch() uint64 {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.epoch
}

func (cc *convoCache) drop(cid string) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	delete(cc.entries, cid)
	cc.epoch++
}

func (cc *convoCache) clear() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.entries = nil
	cc.epoch++
}

// getConvo reads a conversation's record, from the cache when it may.
func (db *Database) getConvo(ctx context.Context, cid string) (*ConvoRecord, error) {
	if c := db.convos.get(cid); c != nil {
		return c, nil
	}
	epoch := db.convos.currentEpoch()
	c, _, err := getRecord[ConvoRecord](ctx, db.quick, convoKey(cid))
	if err == nil && db.nc.Status() == nats.CONNECTED {
		db.convos.put(cid, c, epoch)
	}
	return c, err
}

// convoChanged drops a conversation from every instance's cache after its record was written.
func (db *Database) convoChanged(cid string) {
	db.convos.drop(cid)
	db.publishMsg(&nats.Msg{Subject: convoSubject, Data: []byte(cid)})
}

// subscribeConvoChanges listens for other instances' invalidations.
func (db *Database) subscribeConvoChanges() error {
	_, err := db.nc.Subscribe(convoSubject, func(m *nats.Msg) { db.convos.drop(string(m.Data)) })
	return err
}

// publishAbout pushes payload to users like publish, marked as being about conversation cid's
// members, so that forwarding it drops the conversation from the cache first.
func (db *Database) publishAbout(cid string, users []string, payload []byte) {
	for _, u := range users {
		db.publishMsg(&nats.Msg{Subject: userSubject(upperName(u)), Data: payload,
			Header: nats.Header{hdrConvo: []string{cid}}})
	}
}
