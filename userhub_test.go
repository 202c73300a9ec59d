package main

import "testing"

// The sessions of one user on an instance share one NATS subscription; each still gets every
// event; the subscription goes with the user's last session.
func TestSessionsOfAUserShareOneSubscription(t *testing.T) {
	srv := startServer(t, testConfig(t))
	before := srv.db.nc.NumSubscriptions()
	alice := register(t, srv, "alice")
	others := []*client{login(t, srv, alice.name), login(t, srv, alice.name)}
	if n := srv.db.nc.NumSubscriptions() - before; n != 1 {
		t.Fatalf("three sessions of one user hold %d subscriptions, want 1", n)
	}
	bob := register(t, srv, "bob")
	cid := newConvo(t, bob, "", alice)
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "to all of alice's sessions"})
	for _, c := range append(others, alice) {
		c.waitPush("the message", func(p map[string]any) bool { return p["content"] == "to all of alice's sessions" })
	}
	for _, c := range append(others, alice) {
		c.conn.close()
	}
	waitUntil(t, "alice's subscription to go with her last session", func() bool {
		return srv.db.nc.NumSubscriptions()-before == 1 // bob's is left
	})
}
