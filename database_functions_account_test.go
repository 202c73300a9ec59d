package main

import (
	"strings"
	"testing"
)

// registerWith creates a user with extra CreateUser fields.
func registerWith(t *testing.T, srv *testServer, prefix string, fields map[string]any) (*client, map[string]any) {
	t.Helper()
	c := dialRaw(t, srv)
	c.name = uniqueName(prefix)
	req := map[string]any{"username": c.name, "password": testPassword}
	for k, v := range fields {
		req[k] = v
	}
	return c, c.ok("CreateUser", req)
}

func TestPasswordReset(t *testing.T) {
	srv := startServer(t, testConfig(t))
	u, _ := registerWith(t, srv, "forgetful", map[string]any{"secQuests": []map[string]any{
		{"Question": "First pet?", "Answer": "Rex"}, {"Question": "Town?", "Answer": "Ghent"}}})
	c := dialRaw(t, srv)
	q := c.ok("GetPasswordResetUser", map[string]any{"username": strings.ToLower(u.name)})
	if q["Username"] != u.name || len(q["Questions"].([]any)) != 2 || q["Questions"].([]any)[0] != "First pet?" {
		t.Fatalf("questions: %v", q)
	}
	plain := register(t, srv, "noquests")
	c.fails("GetPasswordResetUser", map[string]any{"username": plain.name}, "not set up")
	c.fails("GetPasswordResetUser", map[string]any{"username": uniqueName("ghost")}, "No such user")

	wrong := c.ok("ResetUserPassword", map[string]any{"username": u.name, "password": "new password 1",
		"secQuests": []map[string]any{{"Answer": "rex"}, {"Answer": "Paris"}}})
	if wrong["success"] != "false" {
		t.Fatalf("one wrong answer: %v", wrong)
	}
	right := c.ok("ResetUserPassword", map[string]any{"username": u.name, "password": "new password 1",
		"secQuests": []map[string]any{{"Answer": "  REX "}, {"Answer": "ghent"}}})
	if right["success"] != "true" {
		t.Fatalf("right answers: %v", right)
	}
	// The old session is closed and the old password is gone.
	u.waitFor("old session closed after reset", func() bool { return u.closed != nil })
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": u.name, "password": testPassword}, "Invalid username or password")
	dialRaw(t, srv).ok("ValidateUser", map[string]any{"username": u.name, "password": "new password 1"})
}

func TestChangeUserPasswordRevokesOtherSessions(t *testing.T) {
	srv := startServer(t, testConfig(t))
	a := dialRaw(t, srv)
	a.name = uniqueName("changer")
	oldToken := a.ok("CreateUser", map[string]any{"username": a.name, "password": testPassword})["session"]
	other := login(t, srv, a.name)
	a.fails("ChangeUserPassword", map[string]any{"OldPassword": "not it at all", "NewPassword": "brand new pw"}, "Wrong password")
	a.fails("ChangeUserPassword", map[string]any{"OldPassword": testPassword, "NewPassword": "short"}, "at least 8")
	view := a.ok("ChangeUserPassword", map[string]any{"OldPassword": testPassword, "NewPassword": "brand new pw"})
	other.waitFor("other session closed", func() bool { return other.closed != nil })
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": a.name, "session": oldToken}, "expired or revoked")
	dialRaw(t, srv).ok("ValidateUser", map[string]any{"username": a.name, "session": view["session"]})
	a.ok("CreateConversation", map[string]any{"Name": "this session goes on"})
}

func TestChangeEmailPhoneAndProfile(t *testing.T) {
	cfg := testConfig(t)
	relay := withMailRelay(t, &cfg)
	srv := startServer(t, cfg)
	phone := uniquePhone()
	a, _ := registerWith(t, srv, "mover", map[string]any{"email": "old@" + strings.ReplaceAll(strings.ToLower(uniqueName("d")), "_", "-") + ".org", "phone": phone})
	a2 := login(t, srv, a.name)
	b := register(t, srv, "taker")
	newEmail := strings.ToLower(uniqueName("new")) + "@example.org"
	a.ok("ChangeUserEmail", map[string]any{"email": newEmail})
	if p := a2.waitPush("UpdateUser", isCmd("UpdateUser")); p["Email"] != newEmail {
		t.Fatalf("other session's UpdateUser: %v", p)
	}
	verified(t, relay, a, "email", newEmail, "")
	verified(t, relay, a, "phone", strings.ReplaceAll(strings.TrimPrefix(phone, "+1"), " ", "")+"@vtext.com", "verizon")
	b.fails("ChangeUserEmail", map[string]any{"email": strings.ToUpper(newEmail)}, "already used")
	b.fails("ChangeUserPhone", map[string]any{"phone": phone}, "already used")
	// Released on change: b can take a's old phone once a moves on.
	a.ok("ChangeUserPhone", map[string]any{"phone": uniquePhone()})
	b.ok("ChangeUserPhone", map[string]any{"phone": phone})
	verified(t, relay, b, "phone", strings.ReplaceAll(strings.TrimPrefix(phone, "+1"), " ", "")+"@tmomail.net", "tmobile")
	a.fails("ChangeUserEmail", map[string]any{"email": "nope"}, "Invalid e-mail")

	pic := uploadFile(t, srv, a, profileCID, "me.png", testPNG(t, 8, 8))
	a.ok("ChangeProfilePic", map[string]any{"ProfilePic": pic})
	a.fails("ChangeProfilePic", map[string]any{"ProfilePic": "javascript:alert(1)"}, "ProfilePic")
	pub := b.ok("GetUserByEmail", map[string]any{"email": newEmail})
	if pub["Username"] != a.name || pub["ProfilePic"] != pic || pub["Email"] != nil {
		t.Fatalf("GetUserByEmail: %v", pub)
	}
	byName := b.ok("GetUserByUsername", map[string]any{"username": strings.ToUpper(a.name)})
	if byName["Username"] != a.name || byName["Phone"] != nil {
		t.Fatalf("GetUserByUsername: %v", byName)
	}
	b.fails("GetUserByUsername", map[string]any{"username": uniqueName("nobody")}, "No such user")
	b.fails("GetUserByEmail", map[string]any{"email": "nobody@nowhere.example"}, "No such user")

	m := b.ok("MatchUsers", map[string]any{
		"Phones": []map[string]any{{"Name": "Bee", "PhoneNum": phone}, {"Name": "None", "PhoneNum": "+19999999999"}},
		"Emails": []map[string]any{{"Name": "Ay", "Email": newEmail}, {"Name": "Bad", "Email": "x"}}})
	users := m["Users"].([]any)
	if len(users) != 2 || users[0].(map[string]any)["Username"] != b.name || users[0].(map[string]any)["Name"] != "Bee" ||
		users[1].(map[string]any)["Username"] != a.name || users[1].(map[string]any)["Email"] != newEmail {
		t.Fatalf("MatchUsers: %v", m)
	}
	many := make([]map[string]any, maxMatch+1)
	for i := range many {
		many[i] = map[string]any{"Name": "n", "PhoneNum": "+15550000000"}
	}
	b.fails("MatchUsers", map[string]any{"Phones": many}, "At most")
}

func TestDeleteUserRemovesEverything(t *testing.T) {
	srv := startServer(t, testConfig(t))
	phone := uniquePhone()
	gone, _ := registerWith(t, srv, "leaver", map[string]any{"phone": phone})
	gone2 := login(t, srv, gone.name)
	friend := register(t, srv, "friend")
	cid := newConvo(t, friend, "keep", gone)
	gone.ok("SendMessage", map[string]any{"CID": cid, "content": "my last words"})
	gone.ok("AddFriend", map[string]any{"friend_UID": friend.name})
	friend.ok("AcceptFriendRequest", map[string]any{"friend_UID": gone.name})
	gone.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(3600)), "Content": "later"})

	gone.fails("DeleteUser", map[string]any{"password": "wrong one!"}, "Wrong password")
	gone.ok("DeleteUser", map[string]any{"password": testPassword})
	for _, c := range []*client{gone, gone2} {
		c.waitPush("DeleteUser push", isCmd("DeleteUser"))
		c.waitFor("session closed", func() bool { return c.closed != nil })
	}
	left := friend.waitPush("leave", isCmd("RemoveUserFromConversation"))
	if left["Removed"].([]any)[0] != gone.name {
		t.Fatalf("leave push: %v", left)
	}
	fv := friend.waitPush("friend list update", func(p map[string]any) bool {
		return p["cmd"] == "UpdateUser" && len(p["Friends"].([]any)) == 0
	})
	_ = fv
	// What they wrote stays, and the timeline says they left.
	msgs := friend.ok("GetAllConvoData", map[string]any{"CID": cid})["Messages"].([]any)
	if len(msgs) != 2 || msgs[0].(map[string]any)["f_username"] != gone.name ||
		msgs[1].(map[string]any)["kind"] != kindEvent || msgs[1].(map[string]any)["content"] != `{"type":"leave"}` {
		t.Fatalf("messages after delete: %v", msgs)
	}
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": gone.name, "password": testPassword}, "Invalid username or password")
	var n int
	if err := srv.db.pool.QueryRow(t.Context(), "SELECT count(*) FROM scheduled_messages WHERE f_username = $1", gone.name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("scheduled messages left: %d %v", n, err)
	}
	// Name, phone are free again.
	again := dialRaw(t, srv)
	again.ok("CreateUser", map[string]any{"username": gone.name, "password": testPassword, "phone": phone})
}

func TestDevices(t *testing.T) {
	srv := startServer(t, testConfig(t))
	a := register(t, srv, "devices")
	a.ok("AddAndroidDev", map[string]any{"device": "tok1"})
	a.ok("AddAndroidDev", map[string]any{"device": "tok1"}) // idempotent
	a.ok("ChangeAndroidDev", map[string]any{"device": "tok2", "old_device": "tok1"})
	a.fails("ChangeAndroidDev", map[string]any{"device": "tok3", "old_device": "tok1"}, "not registered")
	a.ok("RemoveAndroidDev", map[string]any{"device": "tok2"})
	a.fails("AddIosDev", map[string]any{"device": ""}, "device must be")
	u, err := srv.db.getUser(t.Context(), a.name)
	if err != nil || len(u.Devices["android"]) != 0 {
		t.Fatalf("devices: %v %v", u.Devices, err)
	}
}
