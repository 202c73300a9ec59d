package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// The server's own mail identities (DESIGN §5.1): names a user may not register because mail
// to or from them would be taken for the server's (its -mail-from, the RFC 2142 role mailboxes,
// the bounce sender), and postmaster@ and abuse@, which reach the -admins (RFC 5321 §4.5.1).

// reservedNames are refused at registration, besides -mail-from's local part. Names with a
// hyphen cannot be usernames anyway; they are listed so that the list says what is meant.
var reservedNames = []string{"postmaster", "abuse", "noreply", "no-reply", "no_reply", "admin",
	"administrator", "root", "hostmaster", "webmaster", "mailer-daemon", "mailer_daemon",
	bounceFromLocal, "pingedchat"}

// reservedName reports whether name is one of the server's own mail identities.
func (db *Database) reservedName(name string) bool {
	u := upperName(name)
	if u == upperName(db.mailFromLocal()) {
		return true
	}
	for _, r := range reservedNames {
		if u == upperName(r) {
			return true
		}
	}
	return false
}

// mailFromLocal is the local part of the server's own From address.
func (db *Database) mailFromLocal() string {
	from := db.mailFrom()
	if at := strings.LastIndexByte(from, '@'); at >= 0 {
		return from[:at]
	}
	return from
}

// checkMailFrom refuses to start when -mail-from is an address of the mail domain that a user
// already has: that user would send mail as the server and get the replies to it.
func (db *Database) checkMailFrom(ctx context.Context) error {
	from := db.mailFrom()
	at := strings.LastIndexByte(from, '@')
	if at <= 0 || !strings.EqualFold(from[at+1:], db.cfg.MailDomain) || !validUsername(from[:at]) {
		return nil
	}
	u, err := db.getUserData(ctx, from[:at])
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("checking -mail-from %s: %w", from, err)
	}
	return fmt.Errorf("-mail-from %s is the mailbox of the user %q: the server's mail would come from them "+
		"and their replies go to them; choose another -mail-from (e.g. noreply@%s)", from, u.Username, db.cfg.MailDomain)
}

// adminNames are the users named in -admins.
func (c Config) adminNames() []string {
	var out []string
	for _, a := range strings.Split(c.Admins, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// adminMailboxes are the registered names of the -admins who exist and have not had p yet
// (seen, keyed like mailTarget.key); mail for postmaster@ or abuse@ goes to them.
func (db *Database) adminMailboxes(ctx context.Context, role string, p *parsedMail, seen map[string]bool) []string {
	var out []string
	found := 0
	for _, a := range db.cfg.adminNames() {
		u, err := db.getUserData(ctx, a)
		if err != nil {
			if !isNotFound(err) {
				slog.Error("reading an admin for "+role+"@ mail", "admin", a, "err", err)
			}
			continue
		}
		found++
		if k := (mailTarget{user: u.Username}).key(); !seen[k] {
			seen[k] = true
			out = append(out, u.Username)
		}
	}
	if found == 0 {
		slog.Warn("mail for "+role+"@ reached no admin (is -admins set to existing users?)", "from", truncate(p.from, 80))
	}
	return out
}
