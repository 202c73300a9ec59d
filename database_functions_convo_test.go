package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

func TestNonMemberIsRefusedAndLearnsNothing(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "owner")
	bob := register(t, srv, "member")
	eve := register(t, srv, "outsider")
	cid := newConvo(t, alice, "secret plans", bob)
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "the secret"})
	bob.waitPush("the secret", isMsgIn(cid))

	missing := newCID() // a conversation that does not exist answers exactly the same
	for _, target := range []string{cid, missing} {
		for _, tc := range []struct {
			cmd    string
			fields map[string]any
		}{
			{"SendMessage", map[string]any{"content": "let me in", "f_username": alice.name, "Username": alice.name}},
			{"GetConvoData", nil},
			{"GetMoreConvoMessages", map[string]any{"M_time": "2100-01-01T00:00:00.000000Z"}},
			{"GetAllConvoData", nil},
			{"AddUsersToConversation", map[string]any{"Members": []string{eve.name}}},
			{"RemoveUserFromConversation", map[string]any{"Username": bob.name}},
			{"ChangeConvoName", map[string]any{"Name": "pwned"}},
			{"UpdateConvoFiles", map[string]any{"fileURL": "https://evil.example/x"}},
			{"UpdateUserStatus", map[string]any{"Typing": true}},
			{"UpdateUnreadCount", map[string]any{"unread_count": 0}},
			{"UpdateConvoMtime", map[string]any{"M_time": "2100-01-01T00:00:00.000000Z"}},
		} {
			fields := map[string]any{"CID": target}
			for k, v := range tc.fields {
				fields[k] = v
			}
			rep := eve.call(tc.cmd, fields)
			if len(rep) != 3 || rep["error"] != "not a member" || rep["cmd"] != tc.cmd {
				t.Errorf("%s on %s: got %v, want exactly {cmd, rid, error: not a member}", tc.cmd, target, rep)
			}
		}
	}
	// SyncConvos answers the existing conversation and the missing one alike.
	entries := syncEntries(t, eve.ok("SyncConvos", map[string]any{"Convos": []map[string]any{{"CID": cid}, {"CID": missing, "M_time": "2000-01-01T00:00:00.000000Z"}}}))
	for i, e := range entries {
		e["CID"] = "x"
		if got, want := fmt.Sprint(e), fmt.Sprint(map[string]any{"CID": "x", "Name": "", "M_time": "", "Members": []any{}, "Files": []any{}, "Messages": []any{}, "error": "not a member"}); got != want {
			t.Errorf("SyncConvos entry %d for an outsider: %s, want %s", i, got, want)
		}
	}
	// Nothing changed and nothing reached the outsider.
	data := alice.ok("GetAllConvoData", map[string]any{"CID": cid})
	if data["Name"] != "secret plans" || len(data["Messages"].([]any)) != 1 || len(data["Members"].([]any)) != 2 {
		t.Fatalf("conversation changed by an outsider: %v", data)
	}
	eve.mu.Lock()
	for _, raw := range eve.raw {
		if strings.Contains(raw, "secret") || strings.Contains(raw, cid) && !strings.Contains(raw, "not a member") {
			t.Errorf("outsider received %s", raw)
		}
	}
	eve.mu.Unlock()
}

func TestRequestNamesNeverChangeWhoActs(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "actor")
	bob := register(t, srv, "victim")
	cid := newConvo(t, alice, "", bob)
	// Alice claims to be Bob: the message is still hers.
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "who am i", "f_username": bob.name, "Username": bob.name, "username": bob.name})
	p := bob.waitPush("message", isMsgIn(cid))
	if p["f_username"] != alice.name {
		t.Fatalf("message attributed to %v, want %s", p["f_username"], alice.name)
	}
	// A created conversation always includes its creator, whoever the request names.
	rep := alice.ok("CreateConversation", map[string]any{"Name": "mine", "Members": []string{bob.name}, "Username": bob.name})
	push := alice.waitPush("own conversation", func(p map[string]any) bool { return p["CID"] == rep["CID"] })
	if m := push["Members"].([]any); m[0].(map[string]any)["username"] != alice.name {
		t.Fatalf("creator not first member: %v", m)
	}
}

func TestInjectionAttemptsAreRefusedOrStoredVerbatim(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "inject")
	bob := register(t, srv, "target")
	cid := newConvo(t, alice, "x'); DROP TABLE scheduled_messages; --", bob)
	for _, bad := range []string{
		cid + "; DROP TABLE quickstore",
		"00000000-0000-0000-0000-000000000000' OR '1'='1",
		strings.ToUpper(cid),
		"../../etc/passwd",
		"",
	} {
		alice.fails("GetConvoData", map[string]any{"CID": bad}, "invalid CID")
		alice.fails("SendMessage", map[string]any{"CID": bad, "content": "x"}, "invalid CID")
	}
	payloads := []string{
		"'; DROP TABLE " + convTable(cid) + "; --",
		`Robert"); DELETE FROM quickstore; --`,
		"$1 $2 \\x00 %s %d",
	}
	for _, p := range payloads {
		alice.ok("SendMessage", map[string]any{"CID": cid, "content": p})
	}
	alice.fails("CreateConversation", map[string]any{"Members": []string{"x' OR 1=1 --"}}, "Invalid username")
	alice.fails("GetConvoData", map[string]any{"CID": cid, "M_time": "2020-01-01' OR 1=1 --"}, "invalid time")
	msgs := bob.ok("GetAllConvoData", map[string]any{"CID": cid})["Messages"].([]any)
	if len(msgs) != len(payloads) {
		t.Fatalf("%d messages, want %d", len(msgs), len(payloads))
	}
	for i, m := range msgs {
		if m.(map[string]any)["content"] != payloads[i] {
			t.Errorf("message %d = %q, want %q verbatim", i, m.(map[string]any)["content"], payloads[i])
		}
	}
	var n int
	if err := srv.db.pool.QueryRow(context.Background(), "SELECT count(*) FROM scheduled_messages").Scan(&n); err != nil {
		t.Fatalf("scheduled_messages gone: %v", err)
	}
}

func TestMembershipChanges(t *testing.T) {
	cfg := testConfig(t)
	cfg.CommandBurst = 1000 // for the files below
	srv := startServer(t, cfg)
	alice := register(t, srv, "host")
	bob := register(t, srv, "guest")
	carol := register(t, srv, "late")
	cid := newConvo(t, alice, "team", bob)

	alice.fails("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{uniqueName("ghost")}}, "No such user")
	alice.fails("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{bob.name}}, "member already")
	alice.ok("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{strings.ToLower(carol.name)}})
	for _, c := range []*client{alice, bob, carol} {
		p := c.waitPush("added", isCmd("AddUsersToConversation"))
		if len(p["Members"].([]any)) != 3 {
			t.Fatalf("%s: members after add: %v", c.name, p["Members"])
		}
	}
	// Carol's user view lists it now.
	if v := login(t, srv, carol.name); !strings.Contains(strings.Join(v.raw, ""), cid) {
		t.Fatalf("carol's user view lacks %s", cid)
	}

	bob.ok("ChangeConvoName", map[string]any{"CID": cid, "Name": "renamed"})
	carol.waitPush("rename", func(p map[string]any) bool { return p["cmd"] == "ChangeConvoName" && p["Name"] == "renamed" })
	bob.fails("ChangeConvoName", map[string]any{"CID": cid, "Name": strings.Repeat("n", maxConvoName+1)}, "at most")

	first := uploadFile(t, srv, carol, cid, "a.png", testPNG(t, 4, 4))
	carol.ok("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": first})
	alice.waitPush("files", func(p map[string]any) bool {
		// The push carries the change, not the whole list.
		return p["cmd"] == "UpdateConvoFiles" && p["fileURL"] == first && p["Files"] == nil
	})
	carol.fails("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": "javascript:alert(1)"}, "fileURL")
	for i := 1; i <= maxFiles; i++ {
		url := storedFileRecord(t, srv, carol.name, cid)
		if i == maxFiles {
			carol.fails("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": url}, "at most")
			break
		}
		carol.ok("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": url})
	}
	if files := bob.ok("GetConvoData", map[string]any{"CID": cid})["Files"].([]any); len(files) != maxFiles {
		t.Fatalf("%d files listed, want %d", len(files), maxFiles)
	}

	// Carol leaves: everyone including Carol hears it; Carol is then an outsider.
	carol.ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": carol.name})
	for _, c := range []*client{alice, bob, carol} {
		p := c.waitPush("left", isCmd("RemoveUserFromConversation"))
		if p["Removed"].([]any)[0] != carol.name || len(p["Members"].([]any)) != 2 {
			t.Fatalf("%s: leave push %v", c.name, p)
		}
	}
	carol.fails("GetConvoData", map[string]any{"CID": cid}, "not a member")
	alice.fails("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": carol.name}, "not a member")
}

func TestReadReceiptsTypingAndUnreadCounts(t *testing.T) {
	srv := startServer(t, testConfig(t))
	alice := register(t, srv, "reader")
	bob := register(t, srv, "writer")
	cid := newConvo(t, alice, "", bob)
	var last string
	for i := range 3 {
		last = bob.ok("SendMessage", map[string]any{"CID": cid, "content": "hi " + string(rune('a'+i))})["m_time"].(string)
	}
	unread := func(c *client) float64 {
		v := dialRaw(t, srv).ok("ValidateUser", map[string]any{"username": c.name, "password": testPassword})
		for _, s := range v["CIDs"].([]any) {
			if s.(map[string]any)["CID"] == cid {
				return s.(map[string]any)["UnreadCount"].(float64)
			}
		}
		t.Fatalf("%s: user view lacks %s", c.name, cid)
		return 0
	}
	if n := unread(alice); n != 3 {
		t.Fatalf("alice unread = %v, want 3", n)
	}
	if n := unread(bob); n != 0 {
		t.Fatalf("bob unread = %v, want 0 (own messages)", n)
	}
	alice.ok("UpdateUserStatus", map[string]any{"CID": cid, "NewReadTime": last, "Typing": true})
	p := bob.waitPush("read receipt", isCmd("UpdateUserStatus"))
	if p["NewReadTime"] != last || p["Typing"] != true || p["Username"] != alice.name {
		t.Fatalf("status push %v", p)
	}
	// Read time never moves back.
	alice.ok("UpdateUserStatus", map[string]any{"CID": cid, "NewReadTime": "2000-01-01T00:00:00.000000Z"})
	if p := bob.waitPush("second receipt", isCmd("UpdateUserStatus")); p["NewReadTime"] != last {
		t.Fatalf("read time moved back: %v", p)
	}
	if n := unread(alice); n != 0 {
		t.Fatalf("alice unread after reading = %v, want 0", n)
	}
	alice.ok("UpdateUnreadCount", map[string]any{"CID": cid, "unread_count": 2})
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "one more"})
	if n := unread(alice); n != 3 {
		t.Fatalf("alice unread after marking 2 unread and one new = %v, want 3", n)
	}
	alice.fails("UpdateUnreadCount", map[string]any{"CID": cid, "unread_count": -1}, "unread_count")
	alice.fails("UpdateUserStatus", map[string]any{"CID": cid}, "NewReadTime or Typing")
	alice.ok("UpdateConvoMtime", map[string]any{"CID": cid, "M_time": last})
	alice.fails("UpdateConvoMtime", map[string]any{"CID": cid, "M_time": "yesterday"}, "invalid time")
}
