package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pquerna/ffjson/ffjson"
)

// Message commands: sending, and reading history. Each conversation's messages live in their
// own table, conv_<32 hex digits of the CID>.

const pageSize = 50

func checkContent(content string) error {
	switch {
	case strings.TrimSpace(content) == "":
		return clientErr("empty message")
	case utf8.RuneCountInString(content) > maxContent:
		return clientErr("message too long: at most %d characters", maxContent)
	case strings.ContainsRune(content, 0):
		return clientErr("message contains a NUL character")
	}
	return nil
}

// sendMessage is SendMessage answered in one go. A session's loop pipelines its SendMessages
// instead (send_pipeline.go), with the same three steps: checkSend, queueInsert, storeSend.
func sendMessage(ctx context.Context, s *Session, req *Request) (reply, error) {
	p, err := s.checkSend(ctx, req)
	if err != nil {
		return nil, err
	}
	q, lead := s.db.queueInsert(p.m, p.c)
	return s.storeSend(ctx, p, q, lead)
}

// checkedSend is a SendMessage that passed its checks, on its way to the store.
type checkedSend struct {
	c     *ConvoRecord
	m     *Message
	start time.Time // of the phase being timed
}

// checkSend checks a SendMessage and builds the message to store.
func (s *Session) checkSend(ctx context.Context, req *Request) (*checkedSend, error) {
	start := time.Now()
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	if err := checkContent(req.Content); err != nil {
		return nil, err
	}
	if len(req.ClientID) > maxClientID {
		return nil, clientErr("client_id longer than %d characters", maxClientID)
	}
	if strings.HasPrefix(req.ClientID, scheduledClientID) {
		return nil, clientErr("client_id may not start with %q", scheduledClientID)
	}
	m := &Message{Cmd: "SendMessage", CID: c.CID, FUsername: s.user, Content: req.Content,
		Kind: "text", ClientID: req.ClientID}
	if err := s.addReplyAndMentions(ctx, c, req, m); err != nil { // database_functions_edit.go
		return nil, err
	}
	return &checkedSend{c: c, m: m, start: s.db.metrics.sendPhase(phaseCheck, start)}, nil
}

// storeSend waits for a queued send's group to be written (writing it, when lead is given) and
// finishes the send.
func (s *Session) storeSend(ctx context.Context, p *checkedSend, q *queuedInsert, lead func()) (reply, error) {
	if lead != nil {
		lead()
	}
	dup, err := q.wait(ctx)
	return s.sendStored(ctx, p, dup, err)
}

// sendStored finishes a SendMessage once its insert is done (and, if newly stored, delivered by
// the writer, groupcommit.go): what else the message sets off, and the acknowledgement.
func (s *Session) sendStored(ctx context.Context, p *checkedSend, dup bool, err error) (reply, error) {
	if err != nil {
		return nil, err
	}
	c, m := p.c, p.m
	start := s.db.metrics.sendPhase(phaseStore, p.start)
	if dup {
		// A resend of a stored message, perhaps to another instance after the first died
		// before publishing: publish it again (clients drop an id they already have).
		if err := s.db.deliver(c, m); err != nil {
			slog.Error("delivering message", "cid", c.CID, "id", m.ID, "err", err)
		}
	} else {
		s.db.afterDelivered(ctx, c, m)
	}
	s.db.metrics.sendPhase(phasePublish, start)
	return &AckReply{OK: true, CID: m.CID, ID: m.ID, MTime: m.MTime, ClientID: m.ClientID}, nil
}

// afterSend delivers a stored message and sends the autoreplies it triggers. The message is
// committed already, so failures here are logged: the clients resync by M_time.
func (db *Database) afterSend(ctx context.Context, c *ConvoRecord, m *Message) {
	if err := db.deliver(c, m); err != nil {
		slog.Error("delivering message", "cid", c.CID, "id", m.ID, "err", err)
	}
	db.afterDelivered(ctx, c, m)
}

// afterDelivered is what a delivered message sets off besides: notifications to offline members,
// bots and autoreplies.
func (db *Database) afterDelivered(ctx context.Context, c *ConvoRecord, m *Message) {
	db.notifyMessage(c, m) // push.go
	db.smsNotify(c, m)     // sms.go
	db.runBots(c, m)       // bots.go
	if len(c.Autoreplies) == 0 && len(c.AutoreplySent) == 0 {
		return // the common case: no record to touch
	}
	if err := db.sendAutoreplies(ctx, c.CID, m.FUsername); err != nil {
		slog.Error("sending autoreplies", "cid", c.CID, "err", err)
	}
}

// sendAutoreplies re-arms the sender's autoreply in this conversation (the sender wrote here)
// and sends, once, the autoreply of every other member who has one.
func (db *Database) sendAutoreplies(ctx context.Context, cid, sender string) error {
	var due []*Message
	c, err := db.updateConvo(ctx, cid, func(c *ConvoRecord) error {
		due = due[:0]
		changed := c.AutoreplySent[upperName(sender)]
		delete(c.AutoreplySent, upperName(sender))
		for _, member := range c.Members {
			key := upperName(member)
			text := c.Autoreplies[key]
			if text == "" || strings.EqualFold(member, sender) || c.AutoreplySent[key] {
				continue
			}
			if c.AutoreplySent == nil {
				c.AutoreplySent = map[string]bool{}
			}
			c.AutoreplySent[key] = true
			changed = true
			due = append(due, &Message{Cmd: "SendMessage", CID: cid, FUsername: member, Content: text, Kind: "autoreply"})
		}
		if !changed {
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, m := range due {
		if _, err := db.insertMessage(ctx, db.pool, m); err != nil {
			return err
		}
		if err := db.deliver(c, m); err != nil {
			return err
		}
	}
	return nil
}

// deliver pushes a stored message to every session of every member, marshalled once.
func (db *Database) deliver(c *ConvoRecord, m *Message) error {
	payload, err := messagePayload(c, m)
	if err != nil {
		return err
	}
	db.publish(c.Members, payload, "")
	ffjson.Pool(payload)
	return nil
}

// messagePayload is the SendMessage push of m to c's members (from ffjson's pool).
func messagePayload(c *ConvoRecord, m *Message) ([]byte, error) {
	m.TUIDs = make([]string, 0, len(c.Members))
	for _, u := range c.Members {
		if !strings.EqualFold(u, m.FUsername) {
			m.TUIDs = append(m.TUIDs, u)
		}
	}
	payload, err := ffjson.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshalling message %d of %s: %w", m.ID, c.CID, err)
	}
	return payload, nil
}

// queryMessages runs a query over a conversation table that selects messageColumns.
func (db *Database) queryMessages(ctx context.Context, cid, sql string, args ...any) ([]Message, error) {
	if err := db.ensureConvTable(ctx, cid); err != nil { // reads select version 3's columns
		return nil, err
	}
	rows, err := db.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("reading messages of %s: %w", cid, err)
	}
	out := []Message{}
	defer rows.Close()
	for rows.Next() {
		m := Message{CID: cid}
		if err := scanMessage(rows, &m); err != nil {
			return nil, fmt.Errorf("reading messages of %s: %w", cid, err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading messages of %s: %w", cid, err)
	}
	return out, nil
}

// convoData is a conversation's state with the given messages. newest says whether msgs
// reach the conversation's newest message, whose m_time is then the conversation's M_time and
// needs no query.
func (s *Session) convoData(ctx context.Context, c *ConvoRecord, msgs []Message, newest bool) (*ConvoData, error) {
	var mtime string
	if newest && len(msgs) > 0 {
		mtime = max(msgs[0].MTime, msgs[len(msgs)-1].MTime)
	} else {
		var err error
		if mtime, err = s.db.convoMtime(ctx, c); err != nil {
			return nil, err
		}
	}
	return convoDataOf(c, mtime, msgs), nil
}

// convoDataOf is the reply about c with msgs, whose newest message is at mtime.
func convoDataOf(c *ConvoRecord, mtime string, msgs []Message) *ConvoData {
	p := convoPush("", c, mtime)
	return &ConvoData{CID: c.CID, Name: c.Name, MTime: mtime, Members: p.Members, Files: p.Files, Messages: msgs}
}

// GetConvoData and GetAllConvoData read forward from a time in pages: never more than pageSize
// messages in one reply, so that no conversation, however long or hostile its content, makes
// one reply (and the memory behind it) unbounded. A page that stops short says More, and the
// client asks again from its last m_time.
func getConvoData(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	if req.MTime == "" {
		msgs, err := s.db.queryMessages(ctx, c.CID, latestPageSQL(c.CID))
		if err != nil {
			return nil, err
		}
		slices.Reverse(msgs)
		return s.convoData(ctx, c, msgs, true)
	}
	since, err := parseTime(req.MTime)
	if err != nil {
		return nil, err
	}
	return s.pageForward(ctx, c, since)
}

// getAllConvoData is the whole history, oldest first, one page at a time: without M_time
// from the beginning, with it after that time.
func getAllConvoData(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	since := time.Time{}
	if req.MTime != "" {
		if since, err = parseTime(req.MTime); err != nil {
			return nil, err
		}
	}
	return s.pageForward(ctx, c, since)
}

// latestPageSQL reads a conversation's newest page, newest first.
func latestPageSQL(cid string) string {
	return fmt.Sprintf("SELECT %s FROM %s ORDER BY m_time DESC LIMIT %d", messageColumns, convTable(cid), pageSize)
}

// forwardPageSQL reads the messages after $1, oldest first: one more than a page, which says
// whether there are more.
func forwardPageSQL(cid string) string {
	return fmt.Sprintf("SELECT %s FROM %s WHERE m_time > $1 ORDER BY m_time LIMIT %d", messageColumns, convTable(cid), pageSize+1)
}

// pageForward is the page of messages after since, oldest first.
func (s *Session) pageForward(ctx context.Context, c *ConvoRecord, since time.Time) (*ConvoData, error) {
	msgs, err := s.db.queryMessages(ctx, c.CID, forwardPageSQL(c.CID), since)
	if err != nil {
		return nil, err
	}
	more := len(msgs) > pageSize
	if more {
		msgs = msgs[:pageSize]
	}
	data, err := s.convoData(ctx, c, msgs, !more)
	if err != nil {
		return nil, err
	}
	data.More = more
	return data, nil
}

func getMoreConvoMessages(ctx context.Context, s *Session, req *Request) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	before, err := parseTime(req.MTime)
	if err != nil {
		return nil, err
	}
	msgs, err := s.db.queryMessages(ctx, c.CID, fmt.Sprintf(
		"SELECT %s FROM %s WHERE m_time < $1 ORDER BY m_time DESC LIMIT %d", messageColumns, convTable(c.CID), pageSize), before)
	if err != nil {
		return nil, err
	}
	return s.convoData(ctx, c, msgs, false)
}
