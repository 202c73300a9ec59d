package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The SMS bridge (DESIGN §3.2): members who are away and have a verified phone with a carrier
// get a conversation's new messages as short mail to their carrier's e-mail-to-SMS gateway, from
// <CID>@<mail domain>, so that a reply comes back to the conversation (mail_inbound.go).

const (
	smsChars    = 140
	smsInterval = time.Minute // per member and conversation
	smsCacheTTL = time.Minute
)

// smsCache remembers, per instance and briefly, who can get SMS at all, so that the common case
// (nobody in a conversation has a phone set up) reads no user records on the message path.
type smsCache struct {
	m sync.Map // upper-case name → smsEntry
}

type smsEntry struct {
	addr  string // the gateway address, "" for none
	until time.Time
}

// smsAddressOf is the gateway address user can get SMS at, or "".
func (db *Database) smsAddressOf(ctx context.Context, user string) string {
	key := upperName(user)
	if v, ok := db.sms.m.Load(key); ok && time.Now().Before(v.(smsEntry).until) {
		return v.(smsEntry).addr
	}
	addr := ""
	if u, err := db.getUserData(ctx, user); err == nil && u.PhoneVerified && u.Phone != "" && u.Carrier != "" {
		addr, _ = smsAddress(u.Phone, u.Carrier)
	}
	db.sms.m.Store(key, smsEntry{addr: addr, until: time.Now().Add(smsCacheTTL)})
	return addr
}

// forgetSMS drops a user from the cache after their phone or carrier changed.
func (db *Database) forgetSMS(user string) { db.sms.m.Delete(upperName(user)) }

// smsNotify sends m to the members who are away and can get SMS. It runs after the message is
// stored and delivered, on its own goroutine: it never delays the sender's acknowledgement.
func (db *Database) smsNotify(c *ConvoRecord, m *Message) {
	if !db.mailConfigured() || m.Kind != "text" {
		return
	}
	members := append([]string{}, c.Members...)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, member := range members {
			if strings.EqualFold(member, m.FUsername) {
				continue
			}
			if err := db.smsOne(ctx, member, c.CID, m); err != nil {
				slog.Error("sending an SMS", "user", member, "cid", c.CID, "err", err)
			}
		}
	}()
}

// smsOne sends m to member if they can get SMS, are away, and had none about the conversation
// in the last minute.
func (db *Database) smsOne(ctx context.Context, member, cid string, m *Message) error {
	to := db.smsAddressOf(ctx, member)
	if to == "" || db.online(ctx, member) {
		return nil
	}
	var due bool
	err := db.pool.QueryRow(ctx, `INSERT INTO sms_sent (username, cid, at) VALUES ($1, $2, now())
		ON CONFLICT (username, cid) DO UPDATE SET at = now() WHERE sms_sent.at < now() - $3::interval
		RETURNING true`, upperName(member), cid, smsInterval.String()).Scan(&due)
	if err == pgx.ErrNoRows {
		return nil // one went out less than a minute ago
	}
	if err != nil {
		return fmt.Errorf("pacing: %w", err)
	}
	from := cid + "@" + db.cfg.MailDomain
	body := truncateRunes(m.FUsername+": "+m.Content, smsChars)
	data, _, err := formatMail(outMail{From: from, FromName: m.FUsername, To: []string{to}, Body: body})
	if err != nil {
		return err
	}
	if err := enqueueMail(ctx, db.pool, "", from, []string{to}, data); err != nil {
		return err
	}
	db.metrics.mailSent("sms")
	db.wakeOutbox()
	return nil
}

// smsReply sends a reply that came back from a gateway into the conversation, as the member
// whose verified phone that gateway address is; anything else is dropped with a log line.
func (db *Database) smsReply(ctx context.Context, cid string, p *parsedMail) error {
	c, err := db.getConvo(ctx, cid)
	if err != nil {
		if isNotFound(err) {
			slog.Info("dropping SMS reply: no such conversation", "cid", cid)
			return nil
		}
		return err
	}
	var sender string
	for _, member := range c.Members {
		if addr := db.smsAddressOf(ctx, member); addr != "" && strings.EqualFold(addr, p.from) {
			sender = member
			break
		}
	}
	text := smsReplyText(p.text)
	if sender == "" || text == "" {
		slog.Info("dropping SMS reply: not from a member's verified phone, or empty", "cid", cid, "from", truncate(p.from, 80))
		db.metrics.mailSent("dropped")
		return nil
	}
	// The same reply delivered twice (an SMTP retry) is stored once.
	sum := sha256.Sum256([]byte(p.messageID + "\x00" + p.from + "\x00" + p.text))
	m := &Message{Cmd: "SendMessage", CID: cid, FUsername: sender, Content: text, Kind: "text",
		ClientID: "sms-" + hex.EncodeToString(sum[:16])}
	dup, err := db.insertGrouped(ctx, m)
	if err != nil {
		return err
	}
	if dup {
		return db.deliver(c, m)
	}
	db.afterSend(ctx, c, m)
	return nil
}

// smsReplyText is the reply itself: without quoted lines and what the phone appended below
// them, trimmed, at most a message's length.
func smsReplyText(text string) string {
	var keep []string
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, ">") || t == "--" || strings.HasPrefix(t, "-----Original Message") {
			break
		}
		keep = append(keep, line)
	}
	return truncateRunes(strings.TrimSpace(strings.Join(keep, "\n")), maxContent)
}
