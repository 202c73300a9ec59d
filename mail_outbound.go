package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Outbound mail, through the relay of -smtp-url (the operator's mail provider or their own MTA),
// with emersion/go-smtp's client: smtp:// submits with STARTTLS, which is required (a relay that
// does not offer it is refused, so that credentials and mail never cross the network in the
// clear), smtps:// speaks TLS from the start, and ?insecure=1 allows a plain connection for local
// testing. Mail people send waits in the mail_outbox table (mail_queue.go); verification codes
// go at once, since the person is waiting for them.

var errMailNotConfigured = clientErr("This server does not send e-mail or SMS (no -smtp-url is configured).")

// notConfigured reports whether a setting is left empty or at the FILL_ME placeholder.
func notConfigured(v string) bool { return v == "" || strings.Contains(v, "FILL_ME") }

// mailConfigured reports whether the server can send mail.
func (db *Database) mailConfigured() bool { return !notConfigured(db.cfg.SMTPURL) }

// relayConfig is -smtp-url taken apart.
type relayConfig struct {
	addr, host     string
	implicitTLS    bool
	insecure       bool
	user, password string
}

// parseSMTPURL reads smtp://user:pass@host:port, smtps://… or smtp://host:port?insecure=1.
func parseSMTPURL(raw string) (relayConfig, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return relayConfig{}, fmt.Errorf("-smtp-url: %w", err)
	}
	rc := relayConfig{host: u.Hostname(), insecure: u.Query().Get("insecure") == "1"}
	switch u.Scheme {
	case "smtp":
		rc.addr = hostPortOr(u, "587")
	case "smtps":
		rc.addr, rc.implicitTLS = hostPortOr(u, "465"), true
	default:
		return relayConfig{}, fmt.Errorf("-smtp-url: scheme must be smtp or smtps, not %q", u.Scheme)
	}
	if rc.host == "" {
		return relayConfig{}, errors.New("-smtp-url: no host")
	}
	if u.User != nil {
		rc.user = u.User.Username()
		rc.password, _ = u.User.Password()
	}
	return rc, nil
}

func hostPortOr(u *url.URL, port string) string {
	if u.Port() != "" {
		return u.Host
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// smsGateways are e-mail-to-SMS gateways by carrier: an SMS to +15551234567 on carrier "att"
// is an e-mail to 5551234567@txt.att.net, as the original did it.
var smsGateways = map[string]string{
	"att":        "txt.att.net",
	"tmobile":    "tmomail.net",
	"verizon":    "vtext.com",
	"sprint":     "messaging.sprintpcs.com",
	"uscellular": "email.uscc.net",
	"cricket":    "sms.cricketwireless.net",
	"boost":      "sms.myboostmobile.com",
	"virgin":     "vmobl.com",
	"metropcs":   "mymetropcs.com",
	"googlefi":   "msg.fi.google.com",
}

// smsAddress is the gateway address that reaches phone on carrier.
func smsAddress(phone, carrier string) (string, error) {
	gw, ok := smsGateways[strings.ToLower(strings.TrimSpace(carrier))]
	if !ok {
		return "", clientErr("Unknown carrier %q.", truncate(carrier, 30))
	}
	digits := strings.TrimPrefix(phone, "+")
	if strings.HasPrefix(digits, "1") && len(digits) == 11 {
		digits = digits[1:] // North American gateways take the ten-digit number
	}
	return digits + "@" + gw, nil
}

// outMail is one message to send.
type outMail struct {
	From      string // the envelope and header From; the server's own address when empty
	FromName  string
	To, Cc    []string
	Subject   string
	Body      string // plain text
	InReplyTo string // the Message-ID answered, if any
}

// sendMail sends m through the relay at once (verification codes: the person is waiting).
func (db *Database) sendMail(ctx context.Context, m outMail) error {
	if !db.mailConfigured() {
		return errMailNotConfigured
	}
	if m.From == "" {
		m.From = db.mailFrom()
	}
	msg, _, err := formatMail(m)
	if err != nil {
		return err
	}
	var rcpts []string
	for _, a := range append(append([]string{}, m.To...), m.Cc...) {
		addr, err := cleanAddress(a)
		if err != nil {
			return err
		}
		rcpts = append(rcpts, addr)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.relay(ctx, m.From, rcpts, msg); err != nil {
		return fmt.Errorf("sending mail: %w", err)
	}
	return nil
}

// mailFrom is the address the server's own mail comes from.
func (db *Database) mailFrom() string {
	if !notConfigured(db.cfg.MailFrom) {
		return db.cfg.MailFrom
	}
	return "pingedchat@" + db.cfg.MailDomain
}

// formatMail renders m as an RFC 5322 message in UTF-8, quoted-printable, and returns it with
// its Message-ID.
func formatMail(m outMail) ([]byte, string, error) {
	from := (&mail.Address{Name: m.FromName, Address: m.From}).String()
	var to, cc []string
	for _, list := range []struct {
		in  []string
		out *[]string
	}{{m.To, &to}, {m.Cc, &cc}} {
		for _, a := range list.in {
			p, err := mail.ParseAddress(strings.TrimSpace(a))
			if err != nil || strings.ContainsAny(a, "\r\n") {
				return nil, "", fmt.Errorf("bad address %q", a)
			}
			*list.out = append(*list.out, p.String())
		}
	}
	if _, err := mail.ParseAddress(m.From); err != nil || strings.ContainsAny(m.From, "\r\n") {
		return nil, "", fmt.Errorf("bad address %q", m.From)
	}
	msgID := "<" + randomToken() + "@" + m.From[strings.LastIndexByte(m.From, '@')+1:] + ">"
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", from)
	hdr("To", strings.Join(to, ", "))
	if len(cc) > 0 {
		hdr("Cc", strings.Join(cc, ", "))
	}
	if m.Subject != "" {
		hdr("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	}
	hdr("Date", time.Now().UTC().Format(time.RFC1123Z))
	hdr("Message-ID", msgID)
	if m.InReplyTo != "" && !strings.ContainsAny(m.InReplyTo, "\r\n") {
		hdr("In-Reply-To", m.InReplyTo)
		hdr("References", m.InReplyTo)
	}
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n")
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, "", err
	}
	if err := qp.Close(); err != nil {
		return nil, "", err
	}
	return b.Bytes(), msgID, nil
}

// newRelayClient starts the SMTP session: STARTTLS unless the connection is TLS already or
// -smtp-url allows plain text. (go-smtp introduces itself as "localhost" when it starts with
// STARTTLS; relays accept that from submission clients.)
func newRelayClient(conn net.Conn, rc relayConfig, tlsConf *tls.Config, domain string) (*smtp.Client, error) {
	if rc.implicitTLS || rc.insecure {
		c := smtp.NewClient(conn)
		if err := c.Hello(domain); err != nil {
			return nil, fmt.Errorf("greeting the relay: %w", err)
		}
		return c, nil
	}
	c, err := smtp.NewClientStartTLS(conn, tlsConf)
	if err != nil {
		return nil, fmt.Errorf("STARTTLS (required; add ?insecure=1 to -smtp-url only for local testing): %w", err)
	}
	return c, nil
}

// relay hands one message to the SMTP relay, within ctx, DKIM-signed with -dkim-key.
func (db *Database) relay(ctx context.Context, from string, to []string, msg []byte) error {
	if db.dkim != nil {
		var err error
		if msg, err = db.dkim.sign(msg, time.Now()); err != nil {
			return err
		}
	}
	c, _, err := dialRelay(ctx, db.cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SendMail(from, to, bytes.NewReader(msg)); err != nil {
		return err
	}
	return c.Quit()
}

// dialRelay connects to -smtp-url's relay within ctx, secures the session (STARTTLS unless the
// URL says otherwise) and authenticates when the URL has credentials. `pingedchat check` uses
// it too, so the check goes exactly the way mail does.
func dialRelay(ctx context.Context, cfg Config) (*smtp.Client, relayConfig, error) {
	rc, err := parseSMTPURL(cfg.SMTPURL)
	if err != nil {
		return nil, rc, err
	}
	tlsConf := &tls.Config{ServerName: rc.host, RootCAs: cfg.smtpRoots}
	var d net.Dialer
	var conn net.Conn
	if rc.implicitTLS {
		conn, err = (&tls.Dialer{NetDialer: &d, Config: tlsConf}).DialContext(ctx, "tcp", rc.addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", rc.addr)
	}
	if err != nil {
		return nil, rc, fmt.Errorf("connecting to %s: %w", rc.addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := newRelayClient(conn, rc, tlsConf, cfg.MailDomain)
	if err != nil {
		conn.Close()
		return nil, rc, err
	}
	if rc.user != "" {
		if err := c.Auth(sasl.NewPlainClient("", rc.user, rc.password)); err != nil {
			c.Close()
			return nil, rc, fmt.Errorf("authenticating: %w", err)
		}
	}
	return c, rc, nil
}
