package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// SyncConvos: a client that comes back (a login, a Resync) reads what is new in many
// conversations with one command, answered from one quick-store read (of the records not
// cached) and one PostgreSQL batch, instead of a command and a round trip per conversation.
// Each conversation is answered as GetConvoData would answer it; the reply holds at most
// syncMessagesMax messages in all, so it answers the conversations in the order asked until
// that budget runs out, and the client asks again for the rest.

const (
	syncConvosMax   = 20           // conversations per SyncConvos
	syncMessagesMax = 2 * pageSize // messages per SyncConvos reply, all conversations together
)

// syncPage is one conversation's part of a SyncConvos: what the client asked and the batch read.
type syncPage struct {
	point  SyncPoint
	since  time.Time // zero: the latest page
	c      *ConvoRecord
	msgs   []Message
	newest string // the conversation's M_time (readNewest)
}

func syncConvos(ctx context.Context, s *Session, req *Request) (reply, error) {
	pages, err := parseSyncPoints(req.Convos)
	if err != nil {
		return nil, err
	}
	cids := make([]string, len(pages))
	for i, p := range pages {
		cids[i] = p.point.CID
	}
	recs, err := s.db.getConvos(ctx, cids)
	if err != nil {
		return nil, err
	}
	var readable []string
	for i, p := range pages {
		if recs[i] != nil && recs[i].isMember(s.user) {
			p.c = recs[i] // the others are answered "not a member", like GetConvoData
			readable = append(readable, p.c.CID)
		}
	}
	if err := s.db.ensureConvTables(ctx, readable); err != nil { // reads select version 3's columns
		return nil, err
	}
	b := &pgx.Batch{}
	for _, p := range pages {
		if p.c != nil {
			p.queue(b)
		}
	}
	if err := s.db.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("reading conversations to sync: %w", err)
	}
	if err := s.db.readNewest(ctx, pages); err != nil {
		return nil, err
	}
	return &SyncReply{Convos: answerSync(pages)}, nil
}

// readNewest reads, in one more batch, the newest m_time of the conversations whose page does
// not end with their newest message (an empty page, or one with more after it); the others'
// is their page's last message.
func (db *Database) readNewest(ctx context.Context, pages []*syncPage) error {
	b := &pgx.Batch{}
	for _, p := range pages {
		if p.c == nil {
			continue
		}
		if n := len(p.msgs); n > 0 && !p.more() {
			p.newest = max(p.msgs[0].MTime, p.msgs[n-1].MTime) // the latest page is newest first
			continue
		}
		b.Queue("SELECT max(m_time) FROM " + convTable(p.c.CID)).QueryRow(func(row pgx.Row) error {
			var mt *time.Time
			if err := row.Scan(&mt); err != nil {
				return fmt.Errorf("reading the newest message of %s: %w", p.c.CID, err)
			}
			p.newest = mtimeOf(p.c, mt)
			return nil
		})
	}
	if b.Len() == 0 {
		return nil
	}
	if err := db.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("reading conversations to sync: %w", err)
	}
	return nil
}

// parseSyncPoints checks a SyncConvos request: 1 to syncConvosMax distinct conversations, each
// with a valid CID and, if given, a valid M_time.
func parseSyncPoints(points []SyncPoint) ([]*syncPage, error) {
	if len(points) == 0 || len(points) > syncConvosMax {
		return nil, clientErr("Convos: give 1 to %d conversations", syncConvosMax)
	}
	pages := make([]*syncPage, len(points))
	seen := make(map[string]bool, len(points))
	for i, pt := range points {
		if !validCID(pt.CID) {
			return nil, clientErr("invalid CID")
		}
		if seen[pt.CID] {
			return nil, clientErr("Convos: %s is given twice", pt.CID)
		}
		seen[pt.CID] = true
		p := &syncPage{point: pt}
		if pt.MTime != "" {
			t, err := parseTime(pt.MTime)
			if err != nil {
				return nil, err
			}
			p.since = t
		}
		pages[i] = p
	}
	return pages, nil
}

// queue adds the page's read to the batch: its messages forward from since (one more than a
// page, to see whether there are more), or the latest page.
func (p *syncPage) queue(b *pgx.Batch) {
	scan := func(rows pgx.Rows) error {
		for rows.Next() {
			m := Message{CID: p.c.CID}
			if err := scanMessage(rows, &m); err != nil {
				return fmt.Errorf("reading messages of %s: %w", p.c.CID, err)
			}
			p.msgs = append(p.msgs, m)
		}
		return rows.Err()
	}
	if p.point.MTime == "" {
		b.Queue(latestPageSQL(p.c.CID)).Query(scan)
	} else {
		b.Queue(forwardPageSQL(p.c.CID), p.since).Query(scan)
	}
}

// more says whether the page stops short of newer messages (it read one past a page).
func (p *syncPage) more() bool { return p.point.MTime != "" && len(p.msgs) > pageSize }

// answerSync turns the pages read into the reply: the conversations in the order asked, each
// like GetConvoData's reply (or "not a member"), until the next would pass syncMessagesMax.
func answerSync(pages []*syncPage) []ConvoData {
	out := make([]ConvoData, 0, len(pages))
	budget := syncMessagesMax
	for _, p := range pages {
		if p.c == nil {
			out = append(out, ConvoData{CID: p.point.CID, Error: errNotMember.Error(), Members: []MemberView{}, Files: []string{}, Messages: []Message{}})
			continue
		}
		more := p.more()
		if more {
			p.msgs = p.msgs[:pageSize]
		}
		if len(p.msgs) > budget {
			break // asked again by the client
		}
		budget -= len(p.msgs)
		if p.point.MTime == "" {
			slices.Reverse(p.msgs)
		}
		out = append(out, p.data(more))
	}
	return out
}

// data is the page as GetConvoData answers it.
func (p *syncPage) data(more bool) ConvoData {
	d := convoDataOf(p.c, p.newest, nonNil(p.msgs))
	d.More = more
	return *d
}

func (r *SyncReply) setReply(cmd, rid string) { r.Cmd, r.Rid = cmd, rid }
