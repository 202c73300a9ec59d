package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Account commands: the user view, logout.

// maxUnreadCount caps counted unread messages, so that a long-unread conversation costs a bounded
// index scan; clients show it as "999+".
const maxUnreadCount = 999

// userView is what the user sees of itself (DESIGN §3.3).
func (db *Database) userView(ctx context.Context, u *UserRecord) (*UserView, error) {
	v := &UserView{
		Username: u.Username, Email: u.Email, Phone: u.Phone, AutoreplyMessage: u.AutoreplyMessage,
		Friends: nonNil(u.Friends), IncomingPendingFriends: nonNil(u.Incoming),
		OutgoingPendingFriends: nonNil(u.Outgoing), ProfilePic: u.ProfilePic,
		Quota: u.Quota, QuotaUsed: u.QuotaUsed,
	}
	var err error
	if v.CIDs, err = db.convoSummaries(ctx, u); err != nil {
		return nil, err
	}
	if v.ScheduledMessages, err = db.scheduledOf(ctx, u.Username); err != nil {
		return nil, err
	}
	return v, nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// convoSummaries lists the user's conversations, most recent first, with unread counts. The
// metadata records are read concurrently; the message tables are asked in one batch.
func (db *Database) convoSummaries(ctx context.Context, u *UserRecord) ([]ConvoSummary, error) {
	convos, err := db.getConvos(ctx, mapKeys(u.Convos))
	if err != nil {
		return nil, err
	}
	out := make([]ConvoSummary, 0, len(convos))
	bases := make([]string, 0, len(convos))
	for _, c := range convos {
		if c == nil || !c.isMember(u.Username) {
			continue // left or deleted meanwhile
		}
		out = append(out, ConvoSummary{CID: c.CID, Name: c.Name, MTime: c.Created})
		bases = append(bases, unreadBase(c.ReadTimes[upperName(u.Username)], u.Convos[c.CID]))
	}
	if err := db.fillActivity(ctx, u.Username, out, bases); err != nil {
		return nil, err
	}
	for i := range out {
		if uc := u.Convos[out[i].CID]; uc != nil && uc.UnreadAt != "" && uc.UnreadAt == bases[i] {
			out[i].UnreadCount = min(out[i].UnreadCount+uc.Unread, maxUnreadCount)
		}
	}
	slices.SortFunc(out, func(a, b ConvoSummary) int { return cmp.Compare(b.MTime, a.MTime) })
	return out, nil
}

// unreadBase is the time after which messages count as unread: the read time, or the time an
// unread count was set explicitly, whichever is later.
func unreadBase(readTime string, uc *UserConvo) string {
	if uc != nil && uc.UnreadAt > readTime {
		return uc.UnreadAt
	}
	return readTime
}

// fillActivity sets each summary's M_time (its newest message) and unread count (messages from
// others after its base time) with one batch of queries.
func (db *Database) fillActivity(ctx context.Context, user string, out []ConvoSummary, bases []string) error {
	if len(out) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for i, c := range out {
		t := convTable(c.CID)
		base := bases[i]
		if base == "" {
			base = "-infinity"
		}
		b.Queue(fmt.Sprintf(`SELECT (SELECT max(m_time) FROM %[1]s),
			(SELECT count(*) FROM (SELECT 1 FROM %[1]s WHERE m_time > $1::timestamptz AND f_username <> $2 LIMIT %[2]d) x)`,
			t, maxUnreadCount), base, user)
	}
	res := db.pool.SendBatch(ctx, b)
	defer res.Close()
	for i := range out {
		var mt *time.Time
		if err := res.QueryRow().Scan(&mt, &out[i].UnreadCount); err != nil {
			return fmt.Errorf("reading activity of %s: %w", out[i].CID, err)
		}
		if mt != nil {
			out[i].MTime = formatTime(*mt)
		}
	}
	return res.Close()
}

// getConvos reads several conversation records concurrently; a missing one is nil.
func (db *Database) getConvos(ctx context.Context, cids []string) ([]*ConvoRecord, error) {
	out := make([]*ConvoRecord, len(cids))
	errs := make([]error, len(cids))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, cid := range cids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := db.getConvo(ctx, cid)
			if err != nil && !isNotFound(err) {
				errs[i] = err
			}
			out[i] = c
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func logout(ctx context.Context, s *Session, _ *Request) (reply, error) {
	if _, err := s.db.quick.Delete(ctx, sessionKey(s.tokenHash), 0); err != nil {
		return nil, fmt.Errorf("revoking session: %w", err)
	}
	s.closeAfterReply = "logged out"
	return nil, nil
}
