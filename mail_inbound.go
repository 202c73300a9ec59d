package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jhillyerd/enmime/v2"
	"github.com/microcosm-cc/bluemonday"
)

// Inbound mail: three ways in (mail_smtpd.go's SMTP receiver, POST /inbound/email and POST
// /inbound/mandrill in mail_webhooks.go) and one parser, here (DESIGN §5.1).

const (
	maxInboundMail = 25 << 20 // a whole message, attachments included
	maxStoredText  = 1 << 20  // text and HTML bodies kept of a message
)

var errMalformedMail = errors.New("malformed message")

// parsedMail is an inbound message, parsed once for every recipient.
type parsedMail struct {
	from, fromName string
	to, cc         []string
	subject        string
	text, html     string
	date           time.Time
	messageID      string
	inReplyTo      string
	parts          []*enmime.Part // attachments and inline parts, stored once (mail_attachments.go)
	size           int64
	fromCount      int        // addresses in the From header
	auth           senderAuth // set by the way in (mail_auth.go)
	// Set by the way in: the envelope sender (SMTP's MAIL FROM, /inbound/email's ?from=,
	// Mandrill's msg.sender), and the per-address limit key of who handed the message in.
	envFrom, remote string
}

// parseMail reads an RFC 5322 message: charsets, RFC 2047 words, multipart alternative and
// mixed, inline parts and attachments (enmime), the HTML sanitised.
func parseMail(raw []byte) (*parsedMail, error) {
	if len(raw) > maxInboundMail {
		return nil, fmt.Errorf("%w: larger than %d bytes", errMalformedMail, maxInboundMail)
	}
	// net/mail is strict about the header block, which enmime forgives: a payload that is not
	// a message at all is refused here.
	hdr, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformedMail, err)
	}
	if hdr.Header.Get("From") == "" {
		return nil, fmt.Errorf("%w: no From header", errMalformedMail)
	}
	env, err := enmime.ReadEnvelope(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errMalformedMail, err)
	}
	p := &parsedMail{subject: cleanLine(env.GetHeader("Subject")), size: int64(len(raw)),
		text: limitText(env.Text), html: sanitizeHTML(limitText(env.HTML)),
		messageID: cleanLine(env.GetHeader("Message-Id")), inReplyTo: cleanLine(env.GetHeader("In-Reply-To"))}
	if from, err := env.AddressList("From"); err == nil && len(from) > 0 {
		p.from, p.fromName, p.fromCount = from[0].Address, cleanLine(from[0].Name), len(from)
	} else {
		p.from = cleanLine(env.GetHeader("From"))
	}
	p.to, p.cc = addressList(env, "To"), addressList(env, "Cc")
	if p.date, err = env.Date(); err != nil {
		p.date = time.Now()
	}
	p.parts = append(append(append(p.parts, env.Attachments...), env.Inlines...), env.OtherParts...)
	return p, nil
}

func addressList(env *enmime.Envelope, key string) []string {
	list, err := env.AddressList(key)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(list))
	for _, a := range list {
		out = append(out, a.Address)
	}
	return out
}

// cleanLine makes a header value safe to store and show: one line, valid UTF-8, bounded.
func cleanLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return truncateRunes(strings.TrimSpace(s), maxMailSubject)
}

func limitText(s string) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) > maxStoredText {
		s = s[:maxStoredText]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

// mailPolicy is the allow-list HTML mail is sanitised with: structure and text formatting,
// links (http, https, mailto only; rel=nofollow noopener), and images only from the message
// itself (cid:) or inline raster data (PNG, JPEG, GIF, WebP) — never a remote URL, which would
// tell the sender when it was read, nor an SVG or any other data: document, which can carry
// script. No scripts, styles, event attributes, forms, frames or objects.
var mailPolicy = func() *bluemonday.Policy {
	p := bluemonday.NewPolicy()
	p.AllowElements("p", "br", "div", "span", "b", "i", "u", "s", "strong", "em", "small", "big",
		"sub", "sup", "blockquote", "pre", "code", "ul", "ol", "li", "dl", "dt", "dd", "h1", "h2",
		"h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tfoot", "tr", "td", "th",
		"caption", "center", "font", "abbr", "address", "cite", "q", "del", "ins", "mark")
	p.AllowAttrs("title", "dir", "lang").Globally()
	p.AllowAttrs("align", "valign", "width", "height", "colspan", "rowspan", "bgcolor", "border",
		"cellpadding", "cellspacing").OnElements("table", "tr", "td", "th", "div", "p", "img")
	p.AllowAttrs("color", "face", "size").OnElements("font")
	p.AllowAttrs("href").Matching(linkHref).OnElements("a")
	p.AllowAttrs("src").Matching(inlineImageSrc).OnElements("img")
	p.AllowAttrs("alt").OnElements("img")
	p.AllowURLSchemes("http", "https", "mailto", "cid")
	// data: is a scheme of every URL attribute to bluemonday: allowed for raster images only,
	// and linkHref keeps it out of links.
	p.AllowURLSchemeWithCustomPolicy("data", rasterDataURI)
	p.RequireParseableURLs(true)
	p.RequireNoFollowOnLinks(true)
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	return p
}()

var (
	inlineImageSrc = regexp.MustCompile(`^(?i:cid:[^\s"'<>]+|data:image/(png|gif|jpeg|webp);base64,[A-Za-z0-9+/=\s]+)$`)
	linkHref       = regexp.MustCompile(`^\s*(?i:https?://|mailto:)`)
	rasterDataType = regexp.MustCompile(`^(?i:image/(png|gif|jpeg|webp);base64,)`)
)

// rasterDataURI accepts a data: URL only of a base64 PNG, JPEG, GIF or WebP image.
func rasterDataURI(u *url.URL) bool {
	prefix := rasterDataType.FindString(u.Opaque)
	if prefix == "" || u.RawQuery != "" || u.Fragment != "" {
		return false
	}
	_, err := base64.StdEncoding.DecodeString(u.Opaque[len(prefix):])
	return err == nil
}

// sanitizeHTML keeps what mailPolicy allows of an HTML body.
func sanitizeHTML(html string) string {
	if strings.TrimSpace(html) == "" {
		return ""
	}
	return mailPolicy.Sanitize(html)
}

// mailTarget is where an inbound address leads: a user's mailbox, the -admins' mailboxes
// (postmaster@ and abuse@), or a conversation as one of its members (SMS replies).
type mailTarget struct {
	user string // the user's name as registered
	role string // "postmaster" or "abuse": delivered to the -admins
	cid  string
	// member and uid: whose reply address it is (sms.go)
	member, uid string
}

func (t mailTarget) key() string {
	return upperName(t.user) + "|" + t.role + "|" + t.cid + "|" + upperName(t.member)
}

// resolveRecipient maps an address of the mail domain to a mailbox or a conversation; ok is
// false for anything else.
func (db *Database) resolveRecipient(ctx context.Context, addr string) (mailTarget, bool, error) {
	if strings.EqualFold(addr, "postmaster") { // RFC 5321 §4.5.1: accepted without a domain
		addr += "@" + db.cfg.MailDomain
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || !strings.EqualFold(addr[at+1:], db.cfg.MailDomain) {
		return mailTarget{}, false, nil
	}
	local := addr[:at]
	if role := strings.ToLower(local); role == "postmaster" || role == "abuse" {
		return mailTarget{role: role}, len(db.cfg.adminNames()) > 0, nil
	}
	if validUsername(local) {
		u, err := db.getUserData(ctx, local)
		if err == nil {
			return mailTarget{user: u.Username}, true, nil
		}
		if !isNotFound(err) {
			return mailTarget{}, false, err
		}
	}
	// A plain <CID>@ is nobody: replies come only to a member's own reply address.
	return db.resolveSMSReply(ctx, local)
}

// receiveMail delivers one parsed message to each recipient address (envelope recipients, or
// the headers' when the way in has no envelope). It returns how many took it. Addresses that
// lead nowhere are counted against p.remote's allowance of unknown recipients.
func (db *Database) receiveMail(ctx context.Context, rcpts []string, p *parsedMail, via string) (int, error) {
	if len(rcpts) > maxMailRcpts {
		return 0, errTooManyRcpts
	}
	seen := map[string]bool{}
	n := 0
	for _, addr := range rcpts {
		t, ok, err := db.resolveRecipient(ctx, strings.TrimSpace(addr))
		if err != nil {
			return n, err
		}
		if !ok {
			slog.Info("dropping inbound mail for nobody", "via", via, "to", truncate(addr, 80), "from", truncate(p.from, 80))
			db.metrics.mailSent("dropped")
			db.countUnknownRecipient(p.remote)
			continue
		}
		if seen[t.key()] {
			continue
		}
		seen[t.key()] = true
		took, err := db.deliverTo(ctx, t, p, seen)
		if errors.Is(err, errSMSRefused) {
			db.countUnknownRecipient(p.remote)
			continue
		}
		if err != nil {
			return n, err
		}
		n += took
	}
	return n, nil
}

// deliverTo delivers p to one target: a conversation, a mailbox, or each admin's mailbox (once
// per user, with seen).
func (db *Database) deliverTo(ctx context.Context, t mailTarget, p *parsedMail, seen map[string]bool) (int, error) {
	if t.cid != "" {
		return 1, db.smsReply(ctx, t, p)
	}
	users := []string{t.user}
	if t.role != "" {
		users = db.adminMailboxes(ctx, t.role, p, seen)
	}
	for _, user := range users {
		if err := db.storeInbound(ctx, user, p); err != nil {
			return 0, err
		}
		db.metrics.mailSent("received")
	}
	return len(users), nil
}

// storeInbound puts p in user's inbox within the mailbox's quota, its parts stored once and
// shared by every copy (mail_attachments.go); a refusal for the quota tells the owner once.
func (db *Database) storeInbound(ctx context.Context, user string, p *parsedMail) error {
	e := &Email{Folder: folderInbox, Unread: true, From: p.from, FromName: p.fromName, To: p.to,
		Cc: p.cc, Subject: p.subject, Text: p.text, HTML: p.html, Date: formatTime(p.date),
		MessageID: p.messageID, InReplyTo: p.inReplyTo, Auth: p.auth.String(), Unverified: !p.auth.verified}
	blobs := p.blobs()
	for _, b := range blobs {
		e.Attachments = append(e.Attachments, b.att)
	}
	size := p.storedSize()
	key := upperName(user)
	err := db.mailTx(ctx, key, func(tx pgx.Tx, base int64) error {
		if err := db.checkQuota(ctx, tx, key, size); err != nil {
			return err
		}
		written, err := db.holdBlobs(ctx, tx, blobs)
		if err != nil {
			return err
		}
		if err := insertEmail(ctx, tx, key, base, e, size); err != nil {
			removeFiles(written) // nobody else can hold them: their rows are locked until rollback
			return err
		}
		return nil
	})
	if errors.Is(err, errMailboxFull) {
		db.noticeMailboxFull(ctx, user)
	}
	if err != nil {
		return err
	}
	db.pushEmail(user, e, "EmailReceived", "")
	return nil
}

// headerRecipients are the mail domain's addresses among the To and Cc headers (for ways in
// without an envelope).
func (p *parsedMail) headerRecipients(domain string) []string {
	var out []string
	for _, a := range append(append([]string{}, p.to...), p.cc...) {
		if strings.EqualFold(domainOf(a), domain) {
			out = append(out, a)
		}
	}
	return out
}
