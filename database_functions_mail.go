package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/ffjson/ffjson"
)

// Mailboxes: every user's mail in the one `mail` table, keyed by (owner, id), with an m_time
// that strictly increases per mailbox so that GetAllEmails since an M_time misses nothing
// (DESIGN §3.2, §4).

const (
	mailPage       = 50
	maxMailRcpts   = 50
	maxMailText    = 100_000
	maxMailSubject = 998 // RFC 5322's line limit
	folderInbox    = "inbox"
	folderSent     = "sent"
	folderDrafts   = "drafts"
)

// mailAddress is a user's own address.
func (db *Database) mailAddress(user string) string {
	return user + "@" + db.cfg.MailDomain
}

// mailRequest decodes the mail fields of the frame req came in.
func mailRequest(req *Request) (*MailRequest, error) {
	mr := new(MailRequest)
	if req.frame == "" {
		return mr, nil
	}
	if err := ffjson.UnmarshalFast([]byte(req.frame), mr); err != nil {
		return nil, clientErr("invalid mail request: %v", err)
	}
	return mr, nil
}

// mailTx runs fn in a transaction holding the mailbox's lock; base is an m_time no earlier than
// now and later than every m_time in the mailbox, so fn's rows (base, base+1, …) come after
// everything a client may have synced.
func (db *Database) mailTx(ctx context.Context, owner string, fn func(tx pgx.Tx, base int64) error) error {
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("beginning mailbox transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('mail:' || $1))", owner); err != nil {
		return fmt.Errorf("locking mailbox: %w", err)
	}
	var newest int64
	if err := tx.QueryRow(ctx, "SELECT COALESCE(max(m_time), 0) FROM mail WHERE owner = $1", owner).Scan(&newest); err != nil {
		return fmt.Errorf("reading mailbox m_time: %w", err)
	}
	base := max(time.Now().UnixMicro(), newest+1)
	if err := fn(tx, base); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing mailbox change: %w", err)
	}
	return nil
}

const emailColumns = `id, m_time, folder, unread, starred, deleted, removed, from_addr, from_name,
	to_addrs, cc_addrs, subject, text_body, html_body, date, message_id, in_reply_to, attachments,
	sender_auth, unverified`

func scanEmail(row pgx.Row) (*Email, error) {
	var e Email
	var mt int64
	var date time.Time
	var atts []byte
	if err := row.Scan(&e.ID, &mt, &e.Folder, &e.Unread, &e.Starred, &e.Deleted, &e.Removed,
		&e.From, &e.FromName, &e.To, &e.Cc, &e.Subject, &e.Text, &e.HTML, &date, &e.MessageID,
		&e.InReplyTo, &atts, &e.Auth, &e.Unverified); err != nil {
		return nil, err
	}
	e.MTime, e.Date = formatTime(time.UnixMicro(mt)), formatTime(date)
	if err := json.Unmarshal(atts, &e.Attachments); err != nil {
		return nil, fmt.Errorf("decoding attachments of e-mail %d: %w", e.ID, err)
	}
	return &e, nil
}

// insertEmail stores e in owner's mailbox (inside mailTx), setting its ID and M_time.
func insertEmail(ctx context.Context, tx pgx.Tx, owner string, mt int64, e *Email, size int64) error {
	atts, err := json.Marshal(nonNil(e.Attachments))
	if err != nil {
		return err
	}
	date := time.Now()
	if t, err := parseTime(e.Date); err == nil && e.Date != "" {
		date = t
	}
	err = tx.QueryRow(ctx, `INSERT INTO mail (owner, id, m_time, folder, unread, starred, from_addr,
		from_name, to_addrs, cc_addrs, subject, text_body, html_body, date, message_id, in_reply_to,
		attachments, size, sender_auth, unverified)
		SELECT $1, COALESCE(max(id), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
			$15, $16, $17, $18, $19 FROM mail WHERE owner = $1
		RETURNING id`, owner, mt, e.Folder, e.Unread, e.Starred, e.From, e.FromName,
		nonNil(e.To), nonNil(e.Cc), e.Subject, e.Text, e.HTML, date, e.MessageID,
		e.InReplyTo, atts, size, e.Auth, e.Unverified).Scan(&e.ID)
	if err != nil {
		return fmt.Errorf("storing e-mail: %w", err)
	}
	e.MTime, e.Date = formatTime(time.UnixMicro(mt)), formatTime(date)
	return nil
}

// deliverEmail stores e in owner's mailbox and pushes it to the owner's sessions as push (with
// the session skip left out).
func (db *Database) deliverEmail(ctx context.Context, owner string, e *Email, size int64, push, skip string) error {
	key := upperName(owner)
	if err := db.mailTx(ctx, key, func(tx pgx.Tx, base int64) error {
		return insertEmail(ctx, tx, key, base, e, size)
	}); err != nil {
		return err
	}
	db.pushEmail(owner, e, push, skip)
	return nil
}

// pushEmail sends e's summary to the owner's sessions (but skip) as cmd: never the bodies, which
// GetEmail fetches, so that a push stays far below NATS's maximum payload (mail_read.go).
func (db *Database) pushEmail(owner string, e *Email, cmd, skip string) {
	payload, err := ffjson.Marshal(&EmailReply{Cmd: cmd, Email: summarize(e)})
	if err != nil {
		slog.Error("encoding an e-mail push", "err", err)
		return
	}
	db.publish([]string{owner}, payload, skip)
	ffjson.Pool(payload)
}

// deleteMailbox removes a user's mail, lets go of its attachments and deletes the user's older
// attachment files (DeleteUser; idempotent).
func (db *Database) deleteMailbox(ctx context.Context, user string) error {
	key := upperName(user)
	err := db.mailTx(ctx, key, func(tx pgx.Tx, _ int64) error {
		var atts []Attachment
		rows, err := tx.Query(ctx, "SELECT attachments FROM mail WHERE owner = $1 AND attachments <> '[]'", key)
		if err != nil {
			return fmt.Errorf("reading the mailbox's attachments: %w", err)
		}
		for rows.Next() {
			var raw []byte
			var list []Attachment
			if err := rows.Scan(&raw); err != nil {
				rows.Close()
				return fmt.Errorf("reading the mailbox's attachments: %w", err)
			}
			_ = json.Unmarshal(raw, &list)
			atts = append(atts, list...)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading the mailbox's attachments: %w", err)
		}
		if err := db.releaseBlobs(ctx, tx, user, atts); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "DELETE FROM mail WHERE owner = $1", key); err != nil {
			return fmt.Errorf("deleting the mailbox: %w", err)
		}
		_, err = tx.Exec(ctx, "DELETE FROM mail_full WHERE owner = $1", key)
		return err
	})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(db.ownerDir(user)); err != nil {
		return fmt.Errorf("deleting attachments: %w", err)
	}
	return nil
}

// queueUnreadEmails counts the unread mail in a user's inbox, for the user view's batch.
func queueUnreadEmails(b *pgx.Batch, user string, n *int64) {
	b.Queue(`SELECT count(*) FROM mail WHERE owner = $1 AND folder = 'inbox'
		AND unread AND NOT deleted AND NOT removed`, upperName(user)).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(n); err != nil {
			return fmt.Errorf("counting unread e-mail: %w", err)
		}
		return nil
	})
}

// The list queries (summaries: mail_read.go), each for at most $last rows.
var (
	mailListSince = "SELECT " + summaryColumns + ` FROM mail WHERE owner = $1 AND m_time > $2
		ORDER BY m_time LIMIT $3`
	mailListBefore = "SELECT " + summaryColumns + ` FROM mail WHERE owner = $1 AND id < $2
		AND NOT removed ORDER BY id DESC LIMIT $3`
	mailListNewest = "SELECT " + summaryColumns + ` FROM mail WHERE owner = $1
		AND NOT removed ORDER BY id DESC LIMIT $2`
)

func getAllEmails(ctx context.Context, s *Session, req *Request) (reply, error) {
	mr, err := mailRequest(req)
	if err != nil {
		return nil, err
	}
	owner := s.upper
	rep := &EmailsReply{Emails: []Email{}, MailAddress: s.db.mailAddress(s.user)}
	var newest int64
	if err := s.db.pool.QueryRow(ctx, "SELECT COALESCE(max(m_time), 0) FROM mail WHERE owner = $1", owner).Scan(&newest); err != nil {
		return nil, fmt.Errorf("reading mailbox m_time: %w", err)
	}
	var rows pgx.Rows
	switch {
	case mr.MTime != "":
		since, err := parseTime(mr.MTime)
		if err != nil {
			return nil, err
		}
		rows, err = s.db.pool.Query(ctx, mailListSince, owner, since.UnixMicro(), mailPage+1)
		if err != nil {
			return nil, fmt.Errorf("reading mail since %s: %w", mr.MTime, err)
		}
	case mr.BeforeID > 0:
		rows, err = s.db.pool.Query(ctx, mailListBefore, owner, mr.BeforeID, mailPage+1)
	default:
		rows, err = s.db.pool.Query(ctx, mailListNewest, owner, mailPage+1)
	}
	if err != nil {
		return nil, fmt.Errorf("reading mail: %w", err)
	}
	if err := readSummaries(rows, rep); err != nil {
		return nil, err
	}
	if rep.MailUsed, rep.MailboxFull, err = s.db.mailboxState(ctx, owner); err != nil {
		return nil, err
	}
	rep.MailQuota = s.db.cfg.MailQuota
	rep.MTime = formatTime(time.UnixMicro(newest))
	if mr.MTime != "" && rep.More {
		rep.MTime = rep.Emails[len(rep.Emails)-1].MTime
	}
	if newest == 0 {
		rep.MTime = ""
	}
	return rep, nil
}

// markEmail makes the command that sets one flag of an e-mail.
func markEmail(column string, flag func(*MailRequest) *bool) commandFunc {
	return func(ctx context.Context, s *Session, req *Request) (reply, error) {
		mr, err := mailRequest(req)
		if err != nil {
			return nil, err
		}
		v := flag(mr)
		if mr.ID <= 0 || v == nil {
			return nil, clientErr("ID and the flag's value are required.")
		}
		return s.changeEmail(ctx, mr.ID, "UPDATE mail SET "+column+" = $4, m_time = $3 WHERE owner = $1 AND id = $2 AND NOT removed", *v)
	}
}

// changeEmail runs one UPDATE (owner $1, id $2, m_time $3, then args) on one of the session
// user's e-mails, answers the e-mail and tells the user's other sessions.
func (s *Session) changeEmail(ctx context.Context, id int64, update string, args ...any) (reply, error) {
	var e *Email
	err := s.db.mailTx(ctx, s.upper, func(tx pgx.Tx, base int64) error {
		tag, err := tx.Exec(ctx, update, append([]any{s.upper, id, base}, args...)...)
		if err != nil {
			return fmt.Errorf("changing e-mail %d: %w", id, err)
		}
		if tag.RowsAffected() == 0 {
			return clientErr("No such e-mail.")
		}
		e, err = emailSummary(ctx, tx, s.upper, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.db.pushEmail(s.user, e, "EmailUpdated", s.id)
	return &EmailReply{Email: *e}, nil
}

func removeDeletedEmails(ctx context.Context, s *Session, _ *Request) (reply, error) {
	var gone []Email
	err := s.db.mailTx(ctx, s.upper, func(tx pgx.Tx, base int64) error {
		rows, err := tx.Query(ctx, `UPDATE mail m SET removed = true, m_time = $2 + r.n, text_body = '',
			html_body = '', subject = '', from_addr = '', from_name = '', to_addrs = '{}', cc_addrs = '{}',
			attachments = '[]'
			FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM mail
				WHERE owner = $1 AND deleted AND NOT removed) r
			WHERE m.owner = $1 AND m.id = r.id
			RETURNING m.id, m.m_time, (SELECT attachments FROM mail o WHERE o.owner = $1 AND o.id = m.id)`, s.upper, base)
		if err != nil {
			return fmt.Errorf("emptying the trash: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var e Email
			var mt int64
			var atts []byte
			if err := rows.Scan(&e.ID, &mt, &atts); err != nil {
				return err
			}
			e.MTime, e.Removed = formatTime(time.UnixMicro(mt)), true
			_ = json.Unmarshal(atts, &e.Attachments)
			gone = append(gone, e)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		var atts []Attachment
		for _, e := range gone {
			atts = append(atts, e.Attachments...)
		}
		if err := s.db.releaseBlobs(ctx, tx, s.user, atts); err != nil {
			return err
		}
		return s.db.clearMailboxFull(ctx, tx, s.upper)
	})
	if err != nil {
		return nil, err
	}
	for i := range gone {
		e := Email{ID: gone[i].ID, MTime: gone[i].MTime, Removed: true}
		s.db.pushEmail(s.user, &e, "EmailUpdated", s.id)
	}
	return nil, nil
}

// checkDraft validates what a draft or an outgoing e-mail says; strict is for sending.
func checkDraft(mr *MailRequest, strict bool) error {
	switch {
	case len(mr.To)+len(mr.Cc) > maxMailRcpts:
		return clientErr("At most %d recipients.", maxMailRcpts)
	case utf8.RuneCountInString(mr.Subject) > maxMailSubject || strings.ContainsAny(mr.Subject, "\r\n\x00"):
		return clientErr("The subject must be one line of at most %d characters.", maxMailSubject)
	case utf8.RuneCountInString(mr.Text) > maxMailText || strings.ContainsRune(mr.Text, 0):
		return clientErr("The text is too long (at most %d characters).", maxMailText)
	case strict && len(mr.To)+len(mr.Cc) == 0:
		return clientErr("Add a recipient.")
	}
	for _, a := range append(append([]string{}, mr.To...), mr.Cc...) {
		if len(a) > 320 {
			return clientErr("Address too long.")
		}
		if strict {
			if _, err := cleanAddress(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// cleanAddress parses one recipient address ("Name <a@b>" or "a@b") to its bare address.
func cleanAddress(a string) (string, error) {
	p, err := mail.ParseAddress(strings.TrimSpace(a))
	if err != nil || strings.ContainsAny(p.Address, "\r\n<>") || !strings.Contains(p.Address, "@") {
		return "", clientErr("Invalid address %q.", truncate(a, 60))
	}
	return p.Address, nil
}

func addNewDraft(ctx context.Context, s *Session, req *Request) (reply, error) {
	mr, err := mailRequest(req)
	if err != nil {
		return nil, err
	}
	if err := checkDraft(mr, false); err != nil {
		return nil, err
	}
	if mr.ID > 0 {
		return s.changeEmail(ctx, mr.ID, `UPDATE mail SET to_addrs = $4, cc_addrs = $5, subject = $6,
			text_body = $7, m_time = $3, date = now() WHERE owner = $1 AND id = $2 AND folder = 'drafts' AND NOT removed`,
			nonNil(mr.To), nonNil(mr.Cc), mr.Subject, mr.Text)
	}
	e := &Email{Folder: folderDrafts, From: s.db.mailAddress(s.user), To: mr.To, Cc: mr.Cc,
		Subject: mr.Subject, Text: mr.Text}
	if mr.InReplyTo > 0 {
		e.InReplyTo = s.db.messageIDOf(ctx, s.upper, mr.InReplyTo)
	}
	if err := s.db.deliverEmail(ctx, s.user, e, int64(len(e.Text)), "EmailUpdated", s.id); err != nil {
		return nil, err
	}
	return &EmailReply{Email: summarize(e)}, nil
}

// emailByID reads one e-mail of a mailbox.
func (db *Database) emailByID(ctx context.Context, owner string, id int64) (*Email, error) {
	e, err := scanEmail(db.pool.QueryRow(ctx, "SELECT "+emailColumns+" FROM mail WHERE owner = $1 AND id = $2 AND NOT removed", owner, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, clientErr("No such e-mail.")
	}
	return e, err
}

func sendEmailMessage(ctx context.Context, s *Session, req *Request) (reply, error) {
	mr, err := mailRequest(req)
	if err != nil {
		return nil, err
	}
	if !s.db.mailConfigured() {
		return nil, errMailNotConfigured
	}
	if err := checkDraft(mr, true); err != nil {
		return nil, err
	}
	var rcpts []string
	for _, a := range append(append([]string{}, mr.To...), mr.Cc...) {
		addr, _ := cleanAddress(a)
		rcpts = append(rcpts, addr)
	}
	if err := s.db.limits.spendMail(s.upper, len(rcpts)); err != nil {
		return nil, err
	}
	from := s.db.mailAddress(s.user)
	out := outMail{From: from, FromName: s.user, To: mr.To, Cc: mr.Cc, Subject: mr.Subject, Body: mr.Text}
	if mr.InReplyTo > 0 {
		out.InReplyTo = s.db.messageIDOf(ctx, s.upper, mr.InReplyTo)
	}
	data, msgID, err := formatMail(out)
	if err != nil {
		return nil, clientErr("Invalid address.")
	}
	e := &Email{Folder: folderSent, From: from, FromName: s.user, To: mr.To, Cc: mr.Cc,
		Subject: mr.Subject, Text: mr.Text, MessageID: msgID, InReplyTo: out.InReplyTo}
	err = s.db.mailTx(ctx, s.upper, func(tx pgx.Tx, base int64) error {
		if err := enqueueMail(ctx, tx, s.upper, from, rcpts, data); err != nil {
			return err
		}
		if mr.ID > 0 {
			if _, err := tx.Exec(ctx, `UPDATE mail SET removed = true, m_time = $3, text_body = '', subject = ''
				WHERE owner = $1 AND id = $2 AND folder = 'drafts'`, s.upper, mr.ID, base); err != nil {
				return fmt.Errorf("removing the sent draft: %w", err)
			}
			base++
		}
		return insertEmail(ctx, tx, s.upper, base, e, int64(len(data)))
	})
	if err != nil {
		return nil, err
	}
	s.db.wakeOutbox()
	if mr.ID > 0 {
		s.db.pushEmail(s.user, &Email{ID: mr.ID, MTime: e.MTime, Removed: true}, "EmailUpdated", s.id)
	}
	s.db.pushEmail(s.user, e, "EmailUpdated", s.id)
	return &EmailReply{Email: summarize(e)}, nil
}

const inviteBody = "%s invites you to chat on pingedchat.\n\nJoin here: %s\n"

func sendEmailInvite(ctx context.Context, s *Session, req *Request) (reply, error) {
	if !s.db.mailConfigured() {
		return nil, errMailNotConfigured
	}
	var to string
	var err error
	switch {
	case req.Email != "" && req.Phone != "":
		return nil, clientErr("Give an e-mail address or a phone number, not both.")
	case req.Email != "":
		to, err = normalEmail(req.Email)
	case req.Phone != "":
		var phone string
		if phone, err = normalPhone(req.Phone); err == nil {
			to, err = smsAddress(phone, req.Carrier)
		}
	default:
		return nil, clientErr("Give an e-mail address, or a phone number and its carrier.")
	}
	if err != nil {
		return nil, err
	}
	note := strings.TrimSpace(req.Message)
	if utf8.RuneCountInString(note) > 500 || strings.ContainsRune(note, 0) {
		return nil, clientErr("The invitation's message is too long (at most 500 characters).")
	}
	if err := s.db.limits.spendMail(s.upper, 1); err != nil {
		return nil, err
	}
	body := fmt.Sprintf(inviteBody, s.user, s.db.publicURL())
	subject := s.user + " invites you to pingedchat"
	if req.Phone != "" {
		subject, body = "", truncateRunes(fmt.Sprintf("%s invites you to pingedchat: %s", s.user, s.db.publicURL()), 160)
	} else if note != "" {
		body = note + "\n\n" + body
	}
	from := s.db.mailAddress(s.user)
	data, _, err := formatMail(outMail{From: from, FromName: s.user, To: []string{to}, Subject: subject, Body: body})
	if err != nil {
		return nil, clientErr("Invalid address.")
	}
	if err := enqueueMail(ctx, s.db.pool, s.upper, from, []string{to}, data); err != nil {
		return nil, err
	}
	s.db.wakeOutbox()
	return nil, nil
}

// truncateRunes keeps the first n characters of s.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// publicURL is where people reach this server's web client.
func (db *Database) publicURL() string {
	if db.cfg.PublicURL != "" {
		return db.cfg.PublicURL
	}
	if d := strings.TrimSpace(strings.Split(db.cfg.AcmeDomain, ",")[0]); d != "" {
		return "https://" + d + "/"
	}
	return "http://" + db.cfg.MailDomain + "/"
}
