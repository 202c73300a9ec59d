package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"pingedchat/internal/smtptest"
)

// replyAddressRe matches a member's reply address for cid: <cid>.<16 base32 characters>@domain.
func replyAddressRe(cid string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(cid) + `\.[a-z2-7]{16}@` + regexp.QuoteMeta(testMailDomain) + `$`)
}

// phoneUser registers a user with a verified phone on AT&T and returns it with its gateway address.
func phoneUser(t *testing.T, srv *testServer, relay *smtptest.Server, prefix string) (*client, string) {
	t.Helper()
	c := register(t, srv, prefix)
	digits := fmt.Sprintf("555%07d", (os.Getpid()*1000+int(userSeq.Add(1)))%10_000_000) // unique per run
	c.ok("ChangeUserPhone", map[string]any{"phone": "+1" + digits})
	verified(t, relay, c, "phone", digits+"@txt.att.net", "att")
	return c, digits + "@txt.att.net"
}

// smsMail is a reply as a phone's gateway sends it.
func smsMail(from, to, text string) []byte {
	return []byte("From: " + from + "\r\nTo: " + to + "\r\nMessage-ID: <" + randomToken() + "@txt.att.net>\r\nSubject: \r\n\r\n" + text + "\r\n")
}

// postRaw posts msg to /inbound/email with the bearer token and query.
func postRaw(t *testing.T, srv *testServer, token string, q url.Values, msg []byte) int {
	t.Helper()
	return postMail(t, srv, "/inbound/email?"+q.Encode(), "message/rfc822", msg, map[string]string{"Authorization": "Bearer " + token})
}

// othersMessages are the contents of cid's messages not sent by c, oldest first, as "name: text".
func othersMessages(c *client, cid string) []string {
	var out []string
	for _, m := range c.ok("GetConvoData", map[string]any{"CID": cid})["Messages"].([]any) {
		m := m.(map[string]any)
		if m["f_username"] != c.name && m["kind"] != kindEvent {
			out = append(out, fmt.Sprint(m["f_username"], ": ", m["content"]))
		}
	}
	return out
}

// The SMS bridge both ways: a message to an away member goes to their carrier's gateway from
// their own reply address for the conversation; their reply from that gateway address comes back
// into the conversation as them; a reply from any other phone is dropped.
func TestSMSRoundTrip(t *testing.T) {
	srv, relay := mailServer(t)
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	digits := fmt.Sprintf("555%07d", (os.Getpid()*1000+int(userSeq.Add(1)))%10_000_000) // unique per run
	gateway := digits + "@txt.att.net"
	bob.ok("ChangeUserPhone", map[string]any{"phone": "+1" + digits})
	view := verified(t, relay, bob, "phone", gateway, "att")
	if view["PhoneVerified"] != true || view["Carrier"] != "att" {
		t.Fatalf("verified phone: %v", view)
	}
	cid := newConvo(t, alice, "dinner", bob)
	before := len(relay.Messages())

	// While bob is online nothing goes by SMS; once he is away, it does.
	if !srv.db.online(t.Context(), bob.name) {
		t.Fatal("bob is connected but not online")
	}
	bob.conn.close()
	waitUntil(t, "bob to be away", func() bool { return !srv.db.online(context.Background(), bob.name) })
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "Are you coming tonight?"})
	msgs, err := relay.Wait(t.Context(), before+1)
	if err != nil {
		t.Fatal(err)
	}
	sms := msgs[before]
	replyTo := sms.From
	if sms.To[0] != gateway || !replyAddressRe(cid).MatchString(replyTo) ||
		!strings.Contains(string(sms.Data), alice.name+": Are you coming tonight?") {
		t.Fatalf("SMS: %s → %v\n%s", sms.From, sms.To, sms.Data)
	}
	// At most one a minute per conversation.
	queued := func() int {
		var n int
		_ = srv.db.pool.QueryRow(context.Background(), "SELECT count(*) FROM mail_outbox WHERE $1 = ANY(rcpts)", gateway).Scan(&n)
		return n
	}
	waitUntil(t, "the first SMS to leave the queue", func() bool { return queued() == 0 })
	if err := srv.db.smsOne(t.Context(), bob.name, cid, &Message{CID: cid, FUsername: alice.name, Content: "again", Kind: "text"}); err != nil {
		t.Fatal(err)
	}
	if n := queued(); n != 0 || len(relay.Messages()) != before+1 {
		t.Fatalf("a second SMS within a minute: %d queued, %d relayed", n, len(relay.Messages())-before)
	}

	// A stranger's phone is dropped; bob's reply arrives as bob, without the quoted text.
	stranger := "From: 5559999999@txt.att.net\r\nTo: " + replyTo + "\r\nSubject: \r\n\r\nI am not bob\r\n"
	if err := smtpSend(t, srv, "5559999999@txt.att.net", []string{replyTo}, []byte(stranger)); err == nil || !strings.Contains(err.Error(), "550") {
		t.Fatalf("a stranger's phone: %v", err)
	}
	reply := "From: " + gateway + "\r\nTo: " + replyTo + "\r\nMessage-ID: <r1@txt.att.net>\r\nSubject: \r\n\r\nYes, see you at 8\r\n\r\n> " + alice.name + ": Are you coming tonight?\r\n"
	if err := smtpSend(t, srv, gateway, []string{replyTo}, []byte(reply)); err != nil {
		t.Fatal(err)
	}
	p := alice.waitPush("bob's SMS reply", func(p map[string]any) bool {
		return p["cmd"] == "SendMessage" && p["f_username"] != alice.name
	})
	if p["f_username"] != bob.name || p["content"] != "Yes, see you at 8" || p["CID"] != cid {
		t.Fatalf("reply in the conversation: %v", p)
	}
	// The same reply delivered again (an SMTP retry) is stored once.
	if err := smtpSend(t, srv, gateway, []string{replyTo}, []byte(reply)); err != nil {
		t.Fatal(err)
	}
	history := alice.ok("GetConvoData", map[string]any{"CID": cid})
	var fromBob []string
	for _, m := range history["Messages"].([]any) {
		m := m.(map[string]any)
		if m["f_username"] != alice.name {
			fromBob = append(fromBob, m["content"].(string))
		}
	}
	if len(fromBob) != 1 || fromBob[0] != "Yes, see you at 8" {
		t.Fatalf("messages not from alice: %q", fromBob)
	}
}

// Posting as another member through the SMS bridge, by every way in (raw SMTP to -smtp-listen,
// POST /inbound/email): a forged From header, a forged envelope, a guessed token, another
// member's reply address, the old plain <CID>@ address, and a member who was removed. Only a
// reply to the member's own address, from their verified phone in both the envelope and the
// header, while they are a member, is posted.
func TestSMSRepliesOnlyFromTheirMember(t *testing.T) {
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	cfg.SMTPListen, cfg.MailDomain, cfg.InboundToken = "127.0.0.1:0", testMailDomain, "inbound-secret"
	srv := startServer(t, cfg)
	alice := register(t, srv, "alice")
	bob, gwB := phoneUser(t, srv, relay, "bob")
	carol, gwC := phoneUser(t, srv, relay, "carol")
	cid := newConvo(t, alice, "trip", bob, carol)

	// Bob is away: his SMS comes from his own reply address for this conversation.
	bob.conn.close()
	waitUntil(t, "bob to be away", func() bool { return !srv.db.online(context.Background(), bob.name) })
	before := len(relay.Messages())
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "Train at 9?"})
	msgs, err := relay.Wait(t.Context(), before+1)
	if err != nil {
		t.Fatal(err)
	}
	replyB := msgs[before].From
	if !replyAddressRe(cid).MatchString(replyB) || msgs[before].To[0] != gwB {
		t.Fatalf("bob's SMS: from %s to %v", replyB, msgs[before].To)
	}
	uc, err := srv.db.getUserData(t.Context(), carol.name)
	if err != nil {
		t.Fatal(err)
	}
	replyC, err := srv.db.smsReplyAddress(t.Context(), carol.name, uc.UserID, cid)
	if err != nil || replyC == replyB || !replyAddressRe(cid).MatchString(replyC) {
		t.Fatalf("carol's reply address %q (bob's %q): %v", replyC, replyB, err)
	}
	key, _ := srv.db.serverKey(t.Context(), smsKeyName)
	if smsToken(key, bob.name, "one-id", cid) == smsToken(key, bob.name, "another-id", cid) {
		t.Fatal("a name registered again would get the same token")
	}
	plain := cid + "@" + testMailDomain
	guessed := cid + ".aaaaaaaaaaaaaaaa@" + testMailDomain
	attacker := "mallory@evil.example"

	refusedOverSMTP := map[string]struct{ envelope, to, from string }{
		"forged header From":                         {attacker, replyB, gwB},
		"a guessed token":                            {gwB, guessed, gwB},
		"carol's address, bob's phone":               {gwB, replyC, gwB},
		"bob's address, carol's phone":               {gwC, replyB, gwC},
		"the old plain CID address":                  {gwB, plain, gwB},
		"bob's address in upper case, carol's phone": {gwC, strings.ToUpper(replyB), gwC},
	}
	for name, c := range refusedOverSMTP {
		err := smtpSend(t, srv, c.envelope, []string{c.to}, smsMail(c.from, c.to, "posted as bob: "+name))
		if err == nil || !strings.Contains(err.Error(), "550") {
			t.Errorf("%s: want 550 at RCPT, got %v", name, err)
		}
	}
	// Accepted at RCPT (the envelope is bob's phone) but the header is not: dropped at DATA.
	if err := smtpSend(t, srv, gwB, []string{replyB}, smsMail(attacker, replyB, "posted as bob: forged envelope")); err != nil {
		t.Errorf("forged envelope: %v", err)
	}
	if err := smtpSend(t, srv, gwB, []string{replyB}, smsMail(gwB+", "+attacker, replyB, "posted as bob: two From addresses")); err != nil {
		t.Errorf("two From addresses: %v", err)
	}
	droppedOverHTTP := map[string]url.Values{
		"forged header From": {"to": {replyB}, "from": {attacker}},
		"no envelope sender": {"to": {replyB}},
		"the old plain CID":  {"to": {plain}, "from": {gwB}},
		"a guessed token":    {"to": {guessed}, "from": {gwB}},
		"carol's address":    {"to": {replyC}, "from": {gwB}},
	}
	for name, q := range droppedOverHTTP {
		if code := postRaw(t, srv, cfg.InboundToken, q, smsMail(gwB, q.Get("to"), "posted as bob over HTTP: "+name)); code != http.StatusOK {
			t.Errorf("%s over HTTP: %d", name, code)
		}
	}
	if code := postRaw(t, srv, cfg.InboundToken, url.Values{"to": {replyB}, "from": {gwB}}, smsMail(attacker, replyB, "posted as bob over HTTP: forged envelope")); code != http.StatusOK {
		t.Errorf("forged envelope over HTTP: %d", code)
	}

	// Bob's own replies, by SMTP and by HTTP, are posted as him (after everything above: each
	// way in stores before it answers).
	if err := smtpSend(t, srv, gwB, []string{replyB}, smsMail(gwB, replyB, "yes, by SMTP")); err != nil {
		t.Fatal(err)
	}
	if code := postRaw(t, srv, cfg.InboundToken, url.Values{"to": {strings.ToUpper(replyB)}, "from": {gwB}}, smsMail(strings.ToUpper(gwB), replyB, "yes, by HTTP")); code != http.StatusOK {
		t.Fatalf("bob's reply over HTTP: %d", code)
	}
	want := []string{bob.name + ": yes, by SMTP", bob.name + ": yes, by HTTP"}
	waitUntil(t, "bob's two replies", func() bool { return len(othersMessages(alice, cid)) >= 2 })
	if got := othersMessages(alice, cid); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("messages not from alice: %q, want %q", got, want)
	}

	// Removed from the conversation, bob's phone can no longer post to it.
	alice.ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": bob.name})
	if err := smtpSend(t, srv, gwB, []string{replyB}, smsMail(gwB, replyB, "still here, by SMTP")); err == nil || !strings.Contains(err.Error(), "550") {
		t.Errorf("a removed member over SMTP: %v", err)
	}
	if code := postRaw(t, srv, cfg.InboundToken, url.Values{"to": {replyB}, "from": {gwB}}, smsMail(gwB, replyB, "still here, by HTTP")); code != http.StatusOK {
		t.Errorf("a removed member over HTTP: %d", code)
	}
	carol.ok("SendMessage", map[string]any{"CID": cid, "content": "after bob left"})
	if got := othersMessages(alice, cid); len(got) != 3 || strings.Join(got[:2], "|") != strings.Join(want, "|") {
		t.Fatalf("messages not from alice after bob's removal: %q", got)
	}
}
