package main

import (
	"testing"
)

// The conversation cache never lets a change be missed: a member removed on one instance is
// refused at once on the other, an addition and an autoreply set on one take effect on the
// other, and during a NATS outage (when no invalidation can arrive) nothing cached is used.
func TestConversationCacheAcrossInstances(t *testing.T) {
	ns := startNATSProc(t, 0)
	cfg := testConfig(t)
	cfg.NATS = ns.url()
	a, b := startServer(t, cfg), startServer(t, cfg)
	alice := register(t, a, "alice")
	bob := register(t, b, "bob")
	carol := register(t, b, "carol")
	cid := newConvo(t, alice, "cached", bob)
	bob.ok("SendMessage", map[string]any{"CID": cid, "content": "warms B's cache"})
	alice.ok("GetConvoData", map[string]any{"CID": cid})

	// An addition on A: carol, on B, may write as soon as she hears of it.
	alice.ok("AddUsersToConversation", map[string]any{"CID": cid, "Members": []string{carol.name}})
	carol.waitPush("her addition", func(p map[string]any) bool { return p["cmd"] == "AddUsersToConversation" && p["CID"] == cid })
	carol.ok("SendMessage", map[string]any{"CID": cid, "content": "I am in"})

	// An autoreply set on A is sent for a message on B (no push tells B's sessions of it).
	alice.ok("SaveAutoreplyMessage", map[string]any{"Message": "away today"})
	waitUntil(t, "alice's autoreply to bob's message on B", func() bool {
		bob.ok("SendMessage", map[string]any{"CID": cid, "content": "anyone?"})
		for _, p := range bob.pushesMatching(isMsgIn(cid)) {
			if p["kind"] == "autoreply" {
				return true
			}
		}
		return false
	})

	// A removal on A: once bob has heard of it on B, B refuses him.
	alice.ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": bob.name})
	bob.waitPush("his removal", func(p map[string]any) bool { return p["cmd"] == "RemoveUserFromConversation" && p["CID"] == cid })
	bob.fails("SendMessage", map[string]any{"CID": cid, "content": "still here?"}, "not a member")

	// During a NATS outage B caches nothing: carol, removed on A meanwhile, is refused on B.
	carol.ok("SendMessage", map[string]any{"CID": cid, "content": "warms B's cache again"})
	ns.kill()
	waitUntil(t, "B to notice the outage", func() bool { return b.db.nc.IsReconnecting() })
	alice.ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": carol.name})
	carol.fails("SendMessage", map[string]any{"CID": cid, "content": "during the outage"}, "not a member")
}
