package main

import (
	"testing"
)

// A blocked user cannot add the blocker to conversations or ask to be their friend; nobody is
// put in more than -max-convos-per-user conversations; additions are budgeted per hour; and a
// user can always leave.
func TestBlockingAndConversationLimits(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxConvosPerUser = 2
	srv := startServer(t, cfg)
	victim := register(t, srv, "victim")
	pest := register(t, srv, "pest")
	friend := register(t, srv, "friend")

	pest.ok("AddFriend", map[string]any{"friend_UID": victim.name})
	view := victim.ok("BlockUser", map[string]any{"Username": pest.name})
	if b := view["Blocked"].([]any); len(b) != 1 || b[0] != pest.name || len(view["IncomingPendingFriends"].([]any)) != 0 {
		t.Fatalf("view after BlockUser: %v", view)
	}
	victim.fails("BlockUser", map[string]any{"Username": victim.name}, "yourself")
	victim.fails("BlockUser", map[string]any{"Username": uniqueName("ghost")}, "No such user")
	pest.fails("CreateConversation", map[string]any{"Name": "spam", "Members": []string{victim.name}}, "cannot be added")
	cid := newConvo(t, pest, "lure", friend)
	pest.fails("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{victim.name}}, "cannot be added")
	pest.ok("RemoveFriend", map[string]any{"friend_UID": victim.name})
	pest.fails("AddFriend", map[string]any{"friend_UID": victim.name}, "cannot be asked")

	// Unblocked, pest may add victim — until victim is in the most conversations there can be.
	victim.ok("UnblockUser", map[string]any{"Username": pest.name})
	mine := newConvo(t, pest, "again", victim) // pest 2, victim 1
	newConvo(t, friend, "hello", victim)       // friend 2, victim 2
	other := register(t, srv, "other")
	other.fails("CreateConversation", map[string]any{"Name": "one more", "Members": []string{victim.name}}, "cannot be added")
	victim.fails("CreateConversation", map[string]any{"Name": "mine"}, "leave one first")
	// A user can always leave, which makes room.
	victim.ok("RemoveUserFromConversation", map[string]any{"CID": mine})
	newConvo(t, other, "now there is room", victim)
}

func TestConversationsWithOthersAreBudgeted(t *testing.T) {
	cfg := testConfig(t)
	cfg.ConvosPerHour = 2
	srv := startServer(t, cfg)
	busy := register(t, srv, "busy")
	friend := register(t, srv, "friend")
	extra := register(t, srv, "extra")
	cid := newConvo(t, busy, "one", friend)
	busy.ok("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{extra.name}})
	busy.fails("CreateConversation", map[string]any{"Name": "three", "Members": []string{friend.name}}, "this hour")
	// Conversations with nobody else are not budgeted.
	busy.ok("CreateConversation", map[string]any{"Name": "notes to self"})
}
