package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// The SMS bridge both ways: a message to an away member goes to their carrier's gateway from the
// conversation's address; their reply from that gateway address comes back into the
// conversation as them; a reply from any other phone is dropped.
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
	if sms.To[0] != gateway || sms.From != cid+"@"+testMailDomain ||
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
	stranger := "From: 5559999999@txt.att.net\r\nTo: " + cid + "@" + testMailDomain + "\r\nSubject: \r\n\r\nI am not bob\r\n"
	if err := smtpSend(t, srv, "5559999999@txt.att.net", []string{cid + "@" + testMailDomain}, []byte(stranger)); err != nil {
		t.Fatal(err)
	}
	reply := "From: " + gateway + "\r\nTo: " + cid + "@" + testMailDomain + "\r\nMessage-ID: <r1@txt.att.net>\r\nSubject: \r\n\r\nYes, see you at 8\r\n\r\n> " + alice.name + ": Are you coming tonight?\r\n"
	if err := smtpSend(t, srv, gateway, []string{cid + "@" + testMailDomain}, []byte(reply)); err != nil {
		t.Fatal(err)
	}
	p := alice.waitPush("bob's SMS reply", func(p map[string]any) bool {
		return p["cmd"] == "SendMessage" && p["f_username"] != alice.name
	})
	if p["f_username"] != bob.name || p["content"] != "Yes, see you at 8" || p["CID"] != cid {
		t.Fatalf("reply in the conversation: %v", p)
	}
	// The same reply delivered again (an SMTP retry) is stored once.
	if err := smtpSend(t, srv, gateway, []string{cid + "@" + testMailDomain}, []byte(reply)); err != nil {
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
