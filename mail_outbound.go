package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strings"
	"time"
)

// Outbound mail, through the relay of -smtp-relay (the operator's mail provider or their own
// MTA; submission with STARTTLS when the relay offers it, and AUTH PLAIN when -smtp-user is
// set). Without a relay, sending answers errMailNotConfigured and everything else works.

var errMailNotConfigured = clientErr("This server does not send e-mail or SMS (no -smtp-relay is configured).")

// notConfigured reports whether a setting is left empty or at the FILL_ME placeholder.
func notConfigured(v string) bool { return v == "" || v == "FILL_ME" }

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
	To      []string
	Subject string
	Body    string // plain text
}

// sendMail sends m through the relay.
func (db *Database) sendMail(ctx context.Context, m outMail) error {
	cfg := db.cfg
	if notConfigured(cfg.SMTPRelay) {
		return errMailNotConfigured
	}
	msg, err := formatMail(db.mailFrom(), m)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := relay(ctx, cfg, db.mailFrom(), m.To, msg); err != nil {
		return fmt.Errorf("sending mail through %s: %w", cfg.SMTPRelay, err)
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

// formatMail renders m as an RFC 5322 message in UTF-8, quoted-printable.
func formatMail(from string, m outMail) ([]byte, error) {
	for _, to := range append([]string{from}, m.To...) {
		if _, err := mail.ParseAddress(to); err != nil || strings.ContainsAny(to, "\r\n") {
			return nil, fmt.Errorf("bad address %q", to)
		}
	}
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", from)
	hdr("To", strings.Join(m.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	hdr("Date", time.Now().UTC().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+randomToken()+"@"+from[strings.LastIndexByte(from, '@')+1:]+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(strings.ReplaceAll(m.Body, "\n", "\r\n"))); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// relay hands one message to the SMTP relay, within ctx.
func relay(ctx context.Context, cfg Config, from string, to []string, msg []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.SMTPRelay)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(cfg.SMTPRelay)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello(cfg.MailDomain); err != nil {
		return err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, RootCAs: cfg.smtpRoots}); err != nil {
			return err
		}
	}
	if !notConfigured(cfg.SMTPUser) {
		if err := c.Auth(smtp.PlainAuth("", cfg.SMTPUser, cfg.SMTPPassword, host)); err != nil {
			return err
		}
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	for _, rcpt := range to {
		if err := c.Rcpt(rcpt); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
