package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/pquerna/ffjson/ffjson"
)

// Reading a mailbox (DESIGN §3.2 "Mail"). Lists, pushes and the flag, draft and send answers
// carry e-mail summaries — headers, flags, a short preview and attachment metadata, every field
// bounded — and GetEmail carries one e-mail whole, with signed attachment URLs. A mailbox filled
// with large mails then costs a listing what a mailbox of small ones does, and no push comes near
// NATS's maximum payload (issue 25, items 2 and 23).

const (
	mailPageBytes   = 256 << 10 // encoded e-mails of a list page, beyond its first one
	mailPreview     = 200       // characters of a summary's Preview
	mailPreviewScan = 400       // characters of the text body read for it
	summaryAddrs    = 20        // addresses of To and of Cc in a summary…
	summaryAddrLen  = 320       // …each at most this many bytes (RFC 5321's path)
	summaryAtts     = 20        // attachments described in a summary
	summaryAttName  = 200       // characters of an attachment's name (as stored: mail_attachments.go)
	summaryAttType  = 100       // bytes of its media type
)

// summaryColumns read an e-mail's summary without reading its bodies: left() of a TOASTed text
// fetches only the chunks holding its first characters (with the default pglz compression too;
// measured: one TOAST block a row, two when compressed, where two bodies of 1 MB take 250; with
// lz4 PostgreSQL fetches the compressed value whole), and the address lists and the attachment
// array are cut in SQL, so nothing unbounded reaches this process.
var summaryColumns = fmt.Sprintf(`id, m_time, folder, unread, starred, deleted, removed,
	left(from_addr, %[1]d), left(from_name, %[2]d),
	ARRAY(SELECT left(a, %[1]d) FROM unnest(to_addrs[1:%[3]d]) WITH ORDINALITY AS t(a, n) ORDER BY n),
	ARRAY(SELECT left(a, %[1]d) FROM unnest(cc_addrs[1:%[3]d]) WITH ORDINALITY AS t(a, n) ORDER BY n),
	left(subject, %[2]d), left(text_body, %[4]d), date, left(message_id, %[2]d), left(in_reply_to, %[2]d),
	jsonb_path_query_array(attachments, '$[0 to %[5]d]'), jsonb_array_length(attachments),
	left(sender_auth, %[2]d), unverified`,
	summaryAddrLen, maxMailSubject, summaryAddrs, mailPreviewScan, summaryAtts-1)

// scanSummary reads a row of summaryColumns as a summary.
func scanSummary(row pgx.Row) (*Email, error) {
	var e Email
	var mt int64
	var date time.Time
	var atts []byte
	if err := row.Scan(&e.ID, &mt, &e.Folder, &e.Unread, &e.Starred, &e.Deleted, &e.Removed,
		&e.From, &e.FromName, &e.To, &e.Cc, &e.Subject, &e.Text, &date, &e.MessageID,
		&e.InReplyTo, &atts, &e.AttachCount, &e.Auth, &e.Unverified); err != nil {
		return nil, err
	}
	e.MTime, e.Date = formatTime(time.UnixMicro(mt)), formatTime(date)
	if err := json.Unmarshal(atts, &e.Attachments); err != nil {
		return nil, fmt.Errorf("decoding attachments of e-mail %d: %w", e.ID, err)
	}
	s := summarize(&e)
	return &s, nil
}

// summarize is e as lists and pushes carry it. It gives the same summary whether e is whole
// (just stored) or was read with summaryColumns, and a summary again for a summary.
func summarize(e *Email) Email {
	if e.Removed {
		return Email{ID: e.ID, MTime: e.MTime, Removed: true}
	}
	s := *e
	if e.Text != "" {
		s.Preview = mailPreviewOf(e.Text)
	}
	s.Text, s.HTML = "", ""
	s.From = truncateBytes(e.From, summaryAddrLen)
	s.FromName, s.Subject = truncateRunes(e.FromName, maxMailSubject), truncateRunes(e.Subject, maxMailSubject)
	s.MessageID, s.InReplyTo = truncateRunes(e.MessageID, maxMailSubject), truncateRunes(e.InReplyTo, maxMailSubject)
	s.Auth = truncateRunes(e.Auth, maxMailSubject) // Unverified is kept as it is
	s.To, s.Cc = summaryList(e.To), summaryList(e.Cc)
	s.AttachCount = max(e.AttachCount, len(e.Attachments))
	s.Attachments = nil
	for _, a := range e.Attachments[:min(len(e.Attachments), summaryAtts)] {
		s.Attachments = append(s.Attachments, Attachment{ID: a.ID, Name: truncateRunes(a.Name, summaryAttName),
			Type: truncateBytes(a.Type, summaryAttType), Size: a.Size})
	}
	return s
}

func summaryList(addrs []string) []string {
	if len(addrs) == 0 {
		return nil
	}
	out := make([]string, 0, min(len(addrs), summaryAddrs))
	for _, a := range addrs[:min(len(addrs), summaryAddrs)] {
		out = append(out, truncateBytes(a, summaryAddrLen))
	}
	return out
}

// mailPreviewOf is the start of a text as one line: its first mailPreviewScan characters, white
// space collapsed, at most mailPreview characters.
func mailPreviewOf(text string) string {
	n, i := 0, 0
	for i < len(text) && n < mailPreviewScan {
		_, size := utf8.DecodeRuneInString(text[i:])
		i += size
		n++
	}
	return strings.TrimSpace(truncateRunes(strings.Join(strings.Fields(text[:i]), " "), mailPreview))
}

// truncateBytes keeps at most n bytes of s, never splitting a character.
func truncateBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// encodedSize is how many bytes e takes in a reply.
func encodedSize(e *Email) (int, error) {
	b, err := ffjson.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("encoding e-mail %d: %w", e.ID, err)
	}
	n := len(b)
	ffjson.Pool(b)
	return n + 1, nil // and its comma
}

// readSummaries fills rep with the summaries of rows (at most mailPage+1 of them): at most
// mailPage, and past the first no more than mailPageBytes in all; More when one was left out.
func readSummaries(rows pgx.Rows, rep *EmailsReply) error {
	defer rows.Close()
	total := 0
	for rows.Next() {
		e, err := scanSummary(rows)
		if err != nil {
			return fmt.Errorf("reading mail: %w", err)
		}
		size, err := encodedSize(e)
		if err != nil {
			return err
		}
		if len(rep.Emails) > 0 && (len(rep.Emails) >= mailPage || total+size > mailPageBytes) {
			rep.More = true
			return nil
		}
		total += size
		rep.Emails = append(rep.Emails, *e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading mail: %w", err)
	}
	return nil
}

// emailSummary reads the summary of one e-mail (removed ones too, as markers).
func emailSummary(ctx context.Context, q pgx.Tx, owner string, id int64) (*Email, error) {
	e, err := scanSummary(q.QueryRow(ctx, "SELECT "+summaryColumns+" FROM mail WHERE owner = $1 AND id = $2", owner, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, clientErr("No such e-mail.")
	}
	return e, err
}

// getEmail answers one e-mail whole: its bodies, every address and attachment, signed URLs.
func getEmail(ctx context.Context, s *Session, req *Request) (reply, error) {
	mr, err := mailRequest(req)
	if err != nil {
		return nil, err
	}
	if mr.ID <= 0 {
		return nil, clientErr("ID is required.")
	}
	e, err := s.db.emailByID(ctx, s.upper, mr.ID)
	if err != nil {
		return nil, err
	}
	e.Preview, e.AttachCount = mailPreviewOf(e.Text), len(e.Attachments)
	s.db.signAttachments(s.user, e)
	return &EmailReply{Email: *e}, nil
}

// messageIDOf is the Message-ID of one of owner's e-mails ("" for none), read without its bodies.
func (db *Database) messageIDOf(ctx context.Context, owner string, id int64) string {
	var mid string
	if err := db.pool.QueryRow(ctx, "SELECT message_id FROM mail WHERE owner = $1 AND id = $2 AND NOT removed",
		owner, id).Scan(&mid); err != nil {
		return ""
	}
	return mid
}
