package main

import (
	"testing"
)

// A deletion that stops half-way (here: marked and recorded, then the instance "dies") leaves
// a user that nobody can log in as, add or befriend, whose name stays taken; the scheduler's
// tick finishes it, and a new account with the name then inherits nothing.
func TestInterruptedDeletionIsFinished(t *testing.T) {
	srv := startServer(t, testConfig(t))
	gone, _ := registerWith(t, srv, "halfgone", map[string]any{"phone": uniquePhone()})
	friend := register(t, srv, "friend")
	cid := newConvo(t, friend, "old times", gone)
	gone.ok("SendMessage", map[string]any{"CID": cid, "content": "before"})

	u, err := srv.db.getUser(t.Context(), gone.name)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.db.beginDeletion(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": gone.name, "password": testPassword}, "Invalid username or password")
	dialRaw(t, srv).fails("CreateUser", map[string]any{"username": gone.name, "password": testPassword}, "Username already taken.")
	friend.fails("CreateConversation", map[string]any{"Name": "x", "Members": []string{gone.name}}, "No such user")
	friend.fails("AddFriend", map[string]any{"friend_UID": gone.name}, "No such user")

	if _, err := srv.db.pool.Exec(t.Context(), "UPDATE pending_deletions SET started = now() - interval '1 hour'"); err != nil {
		t.Fatal(err)
	}
	srv.db.finishPendingDeletions(t.Context())
	gone.waitFor("the deleted user's session to close", func() bool { return gone.closed != nil })
	left := friend.waitPush("leave", isCmd("RemoveUserFromConversation"))
	if left["Removed"].([]any)[0] != gone.name {
		t.Fatalf("leave push: %v", left)
	}
	// The finished deletion stays a minute, then a check that the record is still gone
	// confirms it and the row goes.
	pending := func() (n int) {
		_ = srv.db.pool.QueryRow(t.Context(), "SELECT count(*) FROM pending_deletions WHERE username = upper($1)", gone.name).Scan(&n)
		return n
	}
	if pending() != 1 {
		t.Fatal("the finished deletion's row went before it was confirmed")
	}
	if _, err := srv.db.pool.Exec(t.Context(), "UPDATE pending_deletions SET finished = now() - interval '1 hour' WHERE username = upper($1)", gone.name); err != nil {
		t.Fatal(err)
	}
	srv.db.finishPendingDeletions(t.Context())
	if n := pending(); n != 0 {
		t.Fatalf("%d deletions still pending after the confirmation", n)
	}

	heir := dialRaw(t, srv)
	heir.name = gone.name
	view := heir.ok("CreateUser", map[string]any{"username": gone.name, "password": testPassword})
	if len(view["CIDs"].([]any)) != 0 {
		t.Fatalf("the new account inherited conversations: %v", view["CIDs"])
	}
	heir.fails("GetConvoData", map[string]any{"CID": cid}, "not a member")
}
