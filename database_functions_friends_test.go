package main

import (
	"sync"
	"testing"
)

// friendNames lists a user's friend list as stored.
func friendNames(t *testing.T, srv *testServer, name string) (friends, incoming, outgoing []string) {
	t.Helper()
	u, err := srv.db.getUser(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	names := func(l []FriendView) []string {
		out := []string{}
		for _, f := range l {
			out = append(out, f.Username)
		}
		return out
	}
	return names(u.Friends), names(u.Incoming), names(u.Outgoing)
}

func TestFriendRequests(t *testing.T) {
	srv := startServer(t, testConfig(t))
	a := register(t, srv, "asker")
	b := register(t, srv, "askee")
	a.fails("AddFriend", map[string]any{"friend_UID": a.name}, "yourself")
	a.fails("AddFriend", map[string]any{"friend_UID": uniqueName("ghost")}, "No such user")
	a.ok("AddFriend", map[string]any{"friend_UID": b.name, "Message": "hi, it's a"})
	a.fails("AddFriend", map[string]any{"friend_UID": b.name}, "already sent")
	p := b.waitPush("incoming request", func(p map[string]any) bool {
		return p["cmd"] == "UpdateUser" && len(p["IncomingPendingFriends"].([]any)) == 1
	})
	if in := p["IncomingPendingFriends"].([]any)[0].(map[string]any); in["Username"] != a.name || in["Message"] != "hi, it's a" {
		t.Fatalf("incoming: %v", in)
	}
	b.fails("AcceptFriendRequest", map[string]any{"friend_UID": uniqueName("x")}, "No such user")
	b.ok("DenyFriendRequest", map[string]any{"friend_UID": a.name})
	if f, in, out := friendNames(t, srv, a.name); len(f)+len(in)+len(out) != 0 {
		t.Fatalf("after deny, a has %v %v %v", f, in, out)
	}
	a.ok("AddFriend", map[string]any{"friend_UID": b.name})
	b.ok("AcceptFriendRequest", map[string]any{"friend_UID": a.name})
	a.waitPush("friendship", func(p map[string]any) bool {
		return p["cmd"] == "UpdateUser" && len(p["Friends"].([]any)) == 1
	})
	a.fails("AddFriend", map[string]any{"friend_UID": b.name}, "friends already")
	b.ok("RemoveFriend", map[string]any{"friend_UID": a.name})
	b.fails("RemoveFriend", map[string]any{"friend_UID": a.name}, "not your friend")
	for _, n := range []string{a.name, b.name} {
		if f, in, out := friendNames(t, srv, n); len(f)+len(in)+len(out) != 0 {
			t.Fatalf("after remove, %s has %v %v %v", n, f, in, out)
		}
	}
}

// Many users befriending one another at once, in both directions, end up consistent: every pair
// is friends on both sides, with nothing left pending.
func TestConcurrentFriendRequestsStayConsistent(t *testing.T) {
	srv := startServer(t, testConfig(t))
	const n = 5
	users := make([]*client, n)
	for i := range users {
		users[i] = register(t, srv, "mutual")
	}
	var wg sync.WaitGroup
	// Each user asks everyone else, all users at once (a session answers in order, so the
	// concurrency is between users, as with real clients).
	for i := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 1; j < n; j++ {
				rep := users[i].call("AddFriend", map[string]any{"friend_UID": users[(i+j)%n].name})
				if e, _ := rep["error"].(string); e != "" && e != "You are friends already." {
					t.Errorf("AddFriend %d→%d: %v", i, (i+j)%n, e)
				}
			}
		}()
	}
	wg.Wait()
	for _, u := range users {
		f, in, out := friendNames(t, srv, u.name)
		if len(f) != n-1 || len(in) != 0 || len(out) != 0 {
			t.Errorf("%s: friends %v, incoming %v, outgoing %v", u.name, f, in, out)
		}
	}
}
