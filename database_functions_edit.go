package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Edits, deletions, reactions, replies and mentions (DESIGN §3.2, §4). Every change is a row of
// its own in the conversation's table (kind edit, delete or reaction, naming its target), so
// that incremental sync by m_time carries it like any message; in the same transaction the
// target row is brought to its current state, so that history pages serve current state.

const (
	quoteLength      = 100 // characters of the original a reply quotes
	maxEmojiRunes    = 8
	maxEmojiBytes    = 32
	maxReactionKinds = 20 // different emoji on one message

	// Reaction changes are bounded twice (DESIGN §3.2). Stored: a user's reaction change to a
	// message replaces their previous reaction row on it when that row is younger than
	// reactionCoalesce and among the conversation's newest reactionCoalesceScan rows (so the
	// look for it is bounded, under the lock); the new row carries the message's whole reaction
	// state, so nobody misses anything. Pushed: reactionBurst changes per user per message,
	// then one per reactionEvery.
	reactionCoalesceScan = 256
	reactionBurst        = 10
	reactionEvery        = 6 * time.Second
)

// reactionCoalesce is the window in which a user's reaction rows on one message coalesce (a
// variable for the tests; 0: never).
var reactionCoalesce = time.Minute

// changeKinds are the kinds of change rows: never shown as messages, never searched.
var changeKinds = map[string]bool{"edit": true, "delete": true, "reaction": true}

const messageColumns = `id, f_username, m_time, content, kind, COALESCE(client_id, ''), target,
	reaction_on, edited, changed, deleted, reactions, reply_to, quote_from, quote, mentions`

// scanMessage reads one row of messageColumns into m (m.CID is the caller's).
func scanMessage(row pgx.Row, m *Message) error {
	var mt time.Time
	var target, replyTo *int64
	var on, deleted *bool
	var edited, changed *time.Time
	var reactions []byte
	var quoteFrom, quote *string
	err := row.Scan(&m.ID, &m.FUsername, &mt, &m.Content, &m.Kind, &m.ClientID, &target,
		&on, &edited, &changed, &deleted, &reactions, &replyTo, &quoteFrom, &quote, &m.Mentions)
	if err != nil {
		return err
	}
	m.MTime = formatTime(mt)
	m.Target, m.ReplyTo = deref(target), deref(replyTo)
	m.On, m.Deleted = deref(on), deref(deleted)
	m.Edited, m.Changed = "", ""
	if edited != nil {
		m.Edited = formatTime(*edited)
	}
	if changed != nil {
		m.Changed = formatTime(*changed)
	}
	if m.Kind == "edit" {
		m.Edited = m.MTime // the edit's own time: the target's edited mark after it
	}
	m.Reactions = nil
	if len(reactions) > 0 {
		if err := json.Unmarshal(reactions, &m.Reactions); err != nil {
			return fmt.Errorf("reading reactions: %w", err)
		}
	}
	m.Quote = nil
	if quoteFrom != nil && quote != nil {
		m.Quote = &Quote{FUsername: *quoteFrom, Content: *quote}
	}
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// mentionsIn is the members named as @username in content, in the spelling of the member list,
// each once, in order of appearance. An @ inside a word (an e-mail address) names nobody.
func mentionsIn(content string, members []string) []string {
	var out []string
	seen := map[string]bool{}
	for i := 0; i < len(content); i++ {
		if content[i] != '@' || (i > 0 && isNameByte(content[i-1])) {
			continue
		}
		j := i + 1
		for j < len(content) && isNameByte(content[j]) {
			j++
		}
		name := content[i+1 : j]
		i = j - 1
		if !validUsername(name) || seen[upperName(name)] {
			continue
		}
		for _, m := range members {
			if strings.EqualFold(m, name) {
				seen[upperName(name)] = true
				out = append(out, m)
				break
			}
		}
	}
	return out
}

func isNameByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// addReplyAndMentions fills a new message's reply (checking that the message answered is one
// of this conversation's) and its mentions.
func (s *Session) addReplyAndMentions(ctx context.Context, c *ConvoRecord, req *Request, m *Message) error {
	m.Mentions = mentionsIn(m.Content, c.Members)
	if req.ReplyTo == 0 {
		return nil
	}
	if err := s.db.ensureConvTable(ctx, c.CID); err != nil {
		return err
	}
	t, err := findTarget(ctx, s.db.pool, c.CID, req.ReplyTo, req.ReplyMTime)
	if err != nil {
		return err
	}
	m.ReplyTo, m.ReplyMTime = t.ID, t.MTime
	return nil
}

// errNoSuchMessage answers a change or reply that names no message of the conversation.
var errNoSuchMessage = clientErr("no such message in this conversation")

// targetSearchHook, when set (tests), is called as a target's search begins.
var targetSearchHook atomic.Pointer[func(cid string, id int64)]

// findTarget reads the message with the given id, taking no lock: one probe of the key when its
// m_time is given (and right), else a binary search over the key (findByIDSQL), since ids
// increase with m_time. Change rows are not messages. Its cost does not grow with the
// conversation: an id that does not exist costs as little as one that does.
func findTarget(ctx context.Context, q querier, cid string, id int64, mtime string) (*Message, error) {
	if id <= 0 {
		return nil, errNoSuchMessage
	}
	if hook := targetSearchHook.Load(); hook != nil {
		(*hook)(cid, id)
	}
	t := &Message{CID: cid}
	var err error = pgx.ErrNoRows
	if at, perr := parseTime(mtime); mtime != "" && perr == nil {
		err = scanMessage(q.QueryRow(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE m_time = $1 AND id = $2",
			messageColumns, convTable(cid)), at, id), t)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		err = scanMessage(q.QueryRow(ctx, findByIDSQL(cid), id), t)
	}
	if errors.Is(err, pgx.ErrNoRows) || err == nil && changeKinds[t.Kind] {
		return nil, errNoSuchMessage
	}
	if err != nil {
		return nil, fmt.Errorf("reading message %d of %s: %w", id, cid, err)
	}
	return t, nil
}

// findByIDSQL finds the row with id $1 without an index on id (DESIGN §4: a conversation stays
// five relations) and without scanning: ids increase with m_time, so a binary search over the
// m_time key finds it, one probe of the key per step, at most 64 steps (the µs between the
// first and the newest row halve at each; about 45 for ten years). lo is always the time of a
// row whose id is at most $1, and every row at or after hi has a greater id; the search ends
// when lo's row is $1 or nothing lies between lo and hi. An id beyond the newest row's, or
// before the first's, ends it at once. The rows next to where it ended are looked at too, so
// that tables from the first release, whose ids may be slightly out of m_time order, still
// find their messages. Times are µs since the epoch in bigints: exact, whatever the time zone.
func findByIDSQL(cid string) string {
	return fmt.Sprintf(`WITH RECURSIVE
	ends AS (SELECT f.m_time AS lo_t, f.id AS lo_id, l.m_time AS hi_t, l.id AS hi_id
		FROM (SELECT m_time, id FROM %[2]s ORDER BY m_time LIMIT 1) f,
			(SELECT m_time, id FROM %[2]s ORDER BY m_time DESC LIMIT 1) l),
	s(lo, lo_id, hi, n) AS (
		SELECT (extract(epoch FROM lo_t) * 1000000)::bigint, lo_id, (extract(epoch FROM hi_t) * 1000000)::bigint + 1, 0
		FROM ends WHERE lo_id <= $1 AND hi_id >= $1
		UNION ALL
		SELECT CASE WHEN p.id <= $1 THEN p.us ELSE s.lo END, CASE WHEN p.id <= $1 THEN p.id ELSE s.lo_id END,
			CASE WHEN p.id <= $1 THEN s.hi ELSE m.mid END, s.n + 1
		FROM s CROSS JOIN LATERAL (SELECT s.lo + (s.hi - s.lo) / 2 AS mid) m
			LEFT JOIN LATERAL (SELECT id, (extract(epoch FROM m_time) * 1000000)::bigint AS us FROM %[2]s
				WHERE m_time >= to_timestamp(0) + m.mid * interval '1 microsecond' ORDER BY m_time LIMIT 1) p ON true
		WHERE s.lo_id <> $1 AND s.hi - s.lo > 1 AND s.n < 64),
	at AS (SELECT to_timestamp(0) + lo * interval '1 microsecond' AS t FROM s ORDER BY n DESC LIMIT 1)
	SELECT %[1]s FROM (
		(SELECT * FROM %[2]s WHERE m_time <= (SELECT t FROM at) ORDER BY m_time DESC LIMIT 16)
		UNION ALL
		(SELECT * FROM %[2]s WHERE m_time > (SELECT t FROM at) ORDER BY m_time LIMIT 16)) w
	WHERE id = $1 LIMIT 1`, messageColumns, convTable(cid))
}

// readTarget reads the target found by findTarget again, under the conversation's lock, for its
// current state: one probe of the key.
func readTarget(ctx context.Context, q querier, found *Message) (*Message, error) {
	at, err := parseTime(found.MTime)
	if err != nil {
		return nil, err
	}
	t := &Message{CID: found.CID}
	err = scanMessage(q.QueryRow(ctx, fmt.Sprintf("SELECT %s FROM %s WHERE m_time = $1 AND id = $2",
		messageColumns, convTable(found.CID)), at, found.ID), t)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, errNoSuchMessage
	}
	if err != nil {
		return nil, fmt.Errorf("reading message %d of %s: %w", found.ID, found.CID, err)
	}
	return t, nil
}

// changeFunc checks that the session's user may make the change and applies it to the
// target's state, filling the change row's content and state.
type changeFunc func(s *Session, c *ConvoRecord, target, row *Message) error

func editMessage(ctx context.Context, s *Session, req *Request) (reply, error) {
	if err := checkContent(req.Content); err != nil {
		return nil, err
	}
	return s.change(ctx, req, "edit", func(s *Session, c *ConvoRecord, t, row *Message) error {
		if !strings.EqualFold(t.FUsername, s.user) || t.Kind != "text" {
			return clientErr("only its author may edit a message")
		}
		if w := s.db.cfg.EditWindow; w > 0 {
			if at, err := parseTime(t.MTime); err == nil && time.Since(at) > w {
				return clientErr("a message may be edited for %s after it was sent", w)
			}
		}
		t.Content, row.Content = req.Content, req.Content
		t.Mentions = mentionsIn(req.Content, c.Members)
		row.Mentions = t.Mentions // the edit row carries the new text's mentions
		return nil
	})
}

func deleteMessage(ctx context.Context, s *Session, req *Request) (reply, error) {
	return s.change(ctx, req, "delete", func(s *Session, _ *ConvoRecord, t, _ *Message) error {
		if !strings.EqualFold(t.FUsername, s.user) && !s.db.cfg.isAdmin(s.user) {
			return clientErr("only its author or an administrator may delete a message")
		}
		t.Content, t.Deleted, t.Reactions, t.Mentions = "", true, nil, nil
		return nil
	})
}

func react(ctx context.Context, s *Session, req *Request) (reply, error) {
	if err := checkEmoji(req.Emoji); err != nil {
		return nil, err
	}
	if !s.db.limits.reactions.spend(s.upper+"\x00"+req.CID+"\x00"+strconv.FormatInt(req.ID, 10), 1) {
		return nil, clientErr("You are changing your reaction to this message too often; wait a moment.")
	}
	return s.change(ctx, req, "reaction", func(s *Session, _ *ConvoRecord, t, row *Message) error {
		r, err := setReaction(t.Reactions, s.user, req.Emoji, req.On)
		if err != nil {
			return err
		}
		t.Reactions = r
		row.Content, row.On, row.Reactions = req.Emoji, req.On, r
		return nil
	})
}

// checkEmoji accepts a short string of printable characters without spaces: an emoji (with
// its modifiers and joiners) or a few characters. Bidirectional controls and invisible format
// characters are refused (validate.go, hiddenRune) but for the joiner, and for tag characters
// in a subdivision flag (U+1F3F4 then tags: 🏴󠁧󠁢󠁳󠁣󠁴󠁿), the one emoji that needs them.
func checkEmoji(e string) error {
	if e == "" || len(e) > maxEmojiBytes || utf8.RuneCountInString(e) > maxEmojiRunes || !utf8.ValidString(e) {
		return clientErr("a reaction is one emoji")
	}
	flag := strings.HasPrefix(e, "\U0001F3F4")
	for _, r := range e {
		if unicode.IsSpace(r) || r == utf8.RuneError {
			return clientErr("a reaction is one emoji")
		}
		if hiddenRune(r) && !(flag && r >= 0xE0020 && r <= 0xE007F) {
			return errHiddenChars("A reaction")
		}
	}
	return nil
}

// setReaction gives user the reaction emoji (on) or none (off): one emoji per user per message.
func setReaction(rs []Reaction, user, emoji string, on bool) ([]Reaction, error) {
	out := make([]Reaction, 0, len(rs)+1)
	found := false
	for _, r := range rs {
		users := make([]string, 0, len(r.Users))
		for _, u := range r.Users {
			if !strings.EqualFold(u, user) {
				users = append(users, u)
			}
		}
		if on && r.Emoji == emoji {
			users, found = append(users, user), true
		}
		if len(users) > 0 {
			out = append(out, Reaction{Emoji: r.Emoji, Users: users})
		}
	}
	if on && !found {
		if len(out) >= maxReactionKinds {
			return nil, clientErr("at most %d different reactions on a message", maxReactionKinds)
		}
		out = append(out, Reaction{Emoji: emoji, Users: []string{user}})
	}
	return out, nil
}

// change stores a change row and the target's new state in one transaction, under the
// conversation's lock, then pushes the change row. A resend (same client_id) stores nothing new
// and pushes the stored row again.
func (s *Session) change(ctx context.Context, req *Request, kind string, apply changeFunc) (reply, error) {
	c, err := s.memberConvo(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	if len(req.ClientID) > maxClientID {
		return nil, clientErr("client_id longer than %d characters", maxClientID)
	}
	if strings.HasPrefix(req.ClientID, scheduledClientID) {
		return nil, clientErr("client_id may not start with %q", scheduledClientID)
	}
	if err := s.db.ensureConvTable(ctx, c.CID); err != nil {
		return nil, err
	}
	// The target is found before the lock is taken, so that no search, however long the
	// conversation and whatever the id, holds up the conversation's sends; under the lock it is
	// read again by its key for its current state.
	found, err := findTarget(ctx, s.db.pool, c.CID, req.ID, req.MTime)
	if err != nil {
		return nil, err
	}
	row := &Message{Cmd: "SendMessage", CID: c.CID, FUsername: s.user, Kind: kind, ClientID: req.ClientID}
	err = pgx.BeginFunc(ctx, s.db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(c.CID)); err != nil {
			return fmt.Errorf("locking %s: %w", convTable(c.CID), err)
		}
		if req.ClientID != "" {
			err := storedByClientID(ctx, tx, row)
			if err == nil && (row.Kind != kind || row.Target != req.ID) {
				return clientErr("client_id already used by another message")
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err // nil: a resend, answered with the stored row
			}
			row.FUsername, row.Kind = s.user, kind
		}
		t, err := readTarget(ctx, tx, found)
		if err != nil {
			return err
		}
		if t.Deleted {
			return clientErr("message deleted")
		}
		row.Target = t.ID
		if err := apply(s, c, t, row); err != nil {
			return err
		}
		return storeChange(ctx, tx, t, row)
	})
	if err != nil {
		return nil, err
	}
	if err := s.db.deliver(c, row); err != nil {
		slog.Error("delivering a change", "cid", c.CID, "id", row.ID, "err", err)
	}
	return &AckReply{OK: true, CID: row.CID, ID: row.ID, MTime: row.MTime, ClientID: row.ClientID}, nil
}

// storeChange inserts the change row after the conversation's newest row and writes the
// target's new state, its search entry, and (for a deletion) the quotes of replies to it.
// Run it under the lock.
func storeChange(ctx context.Context, tx pgx.Tx, t, row *Message) error {
	tbl := convTable(t.CID)
	var clientID *string
	if row.ClientID != "" {
		clientID = &row.ClientID
	}
	var reactions []byte
	if row.Kind == "reaction" {
		reactions, _ = json.Marshal(nonNil(row.Reactions))
	}
	var mt time.Time
	err := tx.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %[1]s (m_time, id, f_username, content, kind, client_id, target, reaction_on, reactions, mentions)
		SELECT GREATEST(clock_timestamp(), COALESCE(last.m_time, '-infinity') + interval '1 microsecond'),
			COALESCE(last.id, 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8
		FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT m_time, id FROM %[1]s ORDER BY m_time DESC LIMIT 1) last ON true
		RETURNING id, m_time`, tbl),
		row.FUsername, row.Content, row.Kind, clientID, row.Target, row.On, reactions, row.Mentions).Scan(&row.ID, &mt)
	if err != nil {
		return fmt.Errorf("storing a change in %s: %w", tbl, err)
	}
	row.MTime = formatTime(mt)
	if row.Kind == "edit" {
		row.Edited = row.MTime
		t.Edited = row.MTime
	}
	t.Changed = row.MTime
	var tReactions []byte
	if len(t.Reactions) > 0 {
		tReactions, _ = json.Marshal(t.Reactions)
	}
	at, _ := parseTime(t.MTime)
	var edited *time.Time
	if t.Edited != "" {
		e, _ := parseTime(t.Edited)
		edited = &e
	}
	b := &pgx.Batch{}
	b.Queue(fmt.Sprintf(`UPDATE %s SET content = $2, edited = $3, changed = $4, deleted = $5, reactions = $6,
		mentions = $7 WHERE m_time = $1`, tbl), at, t.Content, edited, mt, t.Deleted, tReactions, t.Mentions)
	switch row.Kind {
	case "edit":
		b.Queue(`UPDATE message_search SET tsv = to_tsvector('simple', $3) WHERE cid = $1 AND m_time = $2`,
			t.CID, at, t.Content)
	case "reaction":
		if reactionCoalesce > 0 {
			// Inserted first, so the new row comes after the one it replaces whatever the clock.
			b.Queue(fmt.Sprintf(`DELETE FROM %[1]s WHERE m_time = (SELECT m_time FROM (
					SELECT m_time, kind, target, f_username FROM %[1]s WHERE m_time < $1 AND m_time > $2
					ORDER BY m_time DESC LIMIT %[2]d) r
				WHERE kind = 'reaction' AND target = $3 AND upper(f_username) = upper($4) ORDER BY m_time DESC LIMIT 1)`,
				tbl, reactionCoalesceScan), mt, mt.Add(-reactionCoalesce), t.ID, row.FUsername)
		}
	case "delete":
		b.Queue(`DELETE FROM message_search WHERE cid = $1 AND m_time = $2`, t.CID, at)
		// Replies come after what they answer: the scan stops at the target.
		b.Queue(fmt.Sprintf(`UPDATE %s SET quote = '' WHERE m_time > $1 AND reply_to = $2`, tbl), at, t.ID)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("updating message %d of %s: %w", t.ID, tbl, err)
	}
	return nil
}
