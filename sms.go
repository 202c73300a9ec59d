package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The SMS bridge (DESIGN §3.2): members who are away and have a verified phone with a carrier
// get a conversation's new messages as short mail to their carrier's e-mail-to-SMS gateway, from
// a reply address of their own, <CID>.<token>@<mail domain>, so that a reply comes back to the
// conversation (mail_inbound.go). The token is an HMAC of the member and the conversation under
// a server secret: only that member's phone ever sees it, so nobody else can post as them by
// forging a From header.

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
	uid   string // the user's UserID (its reply tokens are made for it)
	until time.Time
}

// smsEntryOf is the gateway address user can get SMS at ("" for none) and their UserID.
func (db *Database) smsEntryOf(ctx context.Context, user string) smsEntry {
	key := upperName(user)
	if v, ok := db.sms.m.Load(key); ok && time.Now().Before(v.(smsEntry).until) {
		return v.(smsEntry)
	}
	var e smsEntry
	if u, err := db.getUserData(ctx, user); err == nil {
		e.addr, e.uid = verifiedGateway(u), u.UserID
	}
	e.until = time.Now().Add(smsCacheTTL)
	db.sms.m.Store(key, e)
	return e
}

// smsAddressOf is the gateway address user can get SMS at, or "".
func (db *Database) smsAddressOf(ctx context.Context, user string) string {
	return db.smsEntryOf(ctx, user).addr
}

// verifiedGateway is the gateway address of u's verified phone, or "".
func verifiedGateway(u *UserRecord) string {
	if !u.PhoneVerified || u.Phone == "" || u.Carrier == "" {
		return ""
	}
	addr, _ := smsAddress(u.Phone, u.Carrier)
	return addr
}

// Reply addresses: <cid>.<token>@<mail domain>. The token is the first 80 bits of an
// HMAC-SHA256 under the server's "sms-reply" key of the member's upper-case name, their UserID
// (a name registered again gets new tokens) and the conversation, in lower-case base32: 16
// characters, safe in a local part (53 characters with the CID, under SMTP's 64).
const (
	smsKeyName   = "sms-reply"
	smsTokenSize = 10 // bytes of the HMAC kept
)

var (
	smsTokenEnc = base32.StdEncoding.WithPadding(base32.NoPadding)
	smsTokenRe  = regexp.MustCompile(`^[a-z2-7]{16}$`)
)

func smsToken(key []byte, member, uid, cid string) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s\x00%s\x00%s", upperName(member), uid, cid)
	return strings.ToLower(smsTokenEnc.EncodeToString(m.Sum(nil)[:smsTokenSize]))
}

// smsReplyAddress is the address member's SMS about cid come from and their replies go to.
func (db *Database) smsReplyAddress(ctx context.Context, member, uid, cid string) (string, error) {
	key, err := db.serverKey(ctx, smsKeyName)
	if err != nil {
		return "", fmt.Errorf("reading the SMS reply key: %w", err)
	}
	return cid + "." + smsToken(key, member, uid, cid) + "@" + db.cfg.MailDomain, nil
}

// resolveSMSReply maps the local part of a reply address to the conversation and the member its
// token was made for; ok is false for anything else (a plain CID, a token of nobody).
func (db *Database) resolveSMSReply(ctx context.Context, local string) (mailTarget, bool, error) {
	cid, tok, found := strings.Cut(strings.ToLower(local), ".")
	if !found || !validCID(cid) || !smsTokenRe.MatchString(tok) {
		return mailTarget{}, false, nil
	}
	c, err := db.getConvo(ctx, cid)
	if isNotFound(err) {
		return mailTarget{}, false, nil
	}
	if err != nil {
		return mailTarget{}, false, err
	}
	key, err := db.serverKey(ctx, smsKeyName)
	if err != nil {
		return mailTarget{}, false, fmt.Errorf("reading the SMS reply key: %w", err)
	}
	for _, member := range c.Members {
		// Only members who can get SMS were ever given a token.
		e := db.smsEntryOf(ctx, member)
		if e.addr != "" && hmac.Equal([]byte(smsToken(key, member, e.uid, cid)), []byte(tok)) {
			return mailTarget{cid: cid, member: member, uid: e.uid}, true, nil
		}
	}
	return mailTarget{}, false, nil
}

// errSMSRefused: a reply that is not from the member its address was made for.
var errSMSRefused = errors.New("not the member's verified phone")

// smsSender checks, on fresh records, that t's member is still in the conversation and is the
// user the token was made for, and that every one of senders (the envelope sender, and the
// header From once the message is read) is their verified phone's gateway address. It answers
// the conversation and the member's registered name, or an error wrapping errSMSRefused.
func (db *Database) smsSender(ctx context.Context, t mailTarget, senders ...string) (*ConvoRecord, string, error) {
	c, err := db.getConvo(ctx, t.cid)
	if isNotFound(err) {
		return nil, "", fmt.Errorf("%w: no such conversation", errSMSRefused)
	}
	if err != nil {
		return nil, "", err
	}
	if !slices.ContainsFunc(c.Members, func(m string) bool { return upperName(m) == upperName(t.member) }) {
		return nil, "", fmt.Errorf("%w: no longer a member", errSMSRefused)
	}
	u, err := db.getUserData(ctx, t.member)
	if isNotFound(err) {
		return nil, "", fmt.Errorf("%w: no such user", errSMSRefused)
	}
	if err != nil {
		return nil, "", err
	}
	gw := verifiedGateway(u)
	if u.UserID != t.uid || gw == "" {
		return nil, "", fmt.Errorf("%w: another user, or no verified phone", errSMSRefused)
	}
	for _, s := range senders {
		if !sameASCIIAddress(s, gw) {
			return nil, "", fmt.Errorf("%w: from %q", errSMSRefused, truncate(s, 80))
		}
	}
	return c, u.Username, nil
}

// sameASCIIAddress compares two addresses ignoring ASCII case only (gateway addresses are
// ASCII; Unicode case folding would let a KELVIN SIGN stand for a k).
func sameASCIIAddress(a, b string) bool {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	return a != "" && isASCII(a) && isASCII(b) && strings.EqualFold(a, b)
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
	e := db.smsEntryOf(ctx, member)
	to := e.addr
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
	from, err := db.smsReplyAddress(ctx, member, e.uid, cid)
	if err != nil {
		return err
	}
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
// its address was made for, if both its envelope sender and its From are that member's
// verified phone and they are still a member; anything else is dropped with a log line (and
// errSMSRefused).
func (db *Database) smsReply(ctx context.Context, t mailTarget, p *parsedMail) error {
	if p.fromCount != 1 {
		return db.dropSMSReply(t, p, fmt.Errorf("%w: %d From addresses", errSMSRefused, p.fromCount))
	}
	c, sender, err := db.smsSender(ctx, t, p.envFrom, p.from)
	if err != nil {
		return db.dropSMSReply(t, p, err)
	}
	text := smsReplyText(p.text)
	if text == "" {
		return db.dropSMSReply(t, p, fmt.Errorf("%w: empty", errSMSRefused))
	}
	// The same reply delivered twice (an SMTP retry) is stored once.
	sum := sha256.Sum256([]byte(p.messageID + "\x00" + p.from + "\x00" + p.text))
	m := &Message{Cmd: "SendMessage", CID: t.cid, FUsername: sender, Content: text, Kind: "text",
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

// dropSMSReply logs why a reply was not posted and passes err on (storage errors unchanged).
func (db *Database) dropSMSReply(t mailTarget, p *parsedMail, err error) error {
	if !errors.Is(err, errSMSRefused) {
		return err
	}
	slog.Info("dropping SMS reply", "cid", t.cid, "member", t.member, "envelope", truncate(p.envFrom, 80),
		"from", truncate(p.from, 80), "why", err)
	db.metrics.mailSent("dropped")
	return err
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
