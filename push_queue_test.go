package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"pingedchat/internal/webpushtest"
)

// deadHosts are Web Push services that take requests and never answer, like a port that
// accepts connections and then says nothing.
func deadHosts(t *testing.T, cfg Config, n int) []*webpushtest.Server {
	t.Helper()
	var out []*webpushtest.Server
	for range n {
		s, err := webpushtest.New(cfg.VAPIDPublicKey)
		if err != nil {
			t.Fatal(err)
		}
		s.Hang(true)
		t.Cleanup(s.Close)
		out = append(out, s)
	}
	return out
}

// subscribeAt registers n subscriptions for c, spread over the hosts.
func subscribeAt(t *testing.T, c *client, hosts []*webpushtest.Server, n int) {
	t.Helper()
	for i := range n {
		sub, _, err := hosts[i%len(hosts)].Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		c.ok("AddWebDev", map[string]any{"device": sub.JSON()})
	}
}

// TestPushDeadEndpointsDoNotDelayOthers: users whose subscriptions point at services that never
// answer keep at most their share of the push workers busy, so that another user's push goes
// out while theirs are still held. Per user: one user's endpoints on several dead hosts; per
// host: several users' endpoints on one dead host. Without the budgets (every worker on a dead
// endpoint for its attempt, retries and all) the victim's push waits for minutes.
func TestPushDeadEndpointsDoNotDelayOthers(t *testing.T) {
	for _, tc := range []struct {
		name            string
		attackers, subs int // per attacker
		hosts           int
	}{
		{"one user, many hosts", 1, maxWebPushSubs, maxWebPushSubs},
		{"many users, one host", 4, maxWebPushSubs, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			rig := newPushRig(t, &cfg)
			cfg.PushWorkers = 4
			dead := deadHosts(t, cfg, tc.hosts)
			srv := startServer(t, cfg)
			alice, victim := register(t, srv, "dda"), register(t, srv, "ddv")
			var attackers []*client
			for range tc.attackers {
				m := register(t, srv, "ddm")
				subscribeAt(t, m, dead, tc.subs)
				attackers = append(attackers, m)
			}
			sub, id, err := rig.wp.Subscribe()
			if err != nil {
				t.Fatal(err)
			}
			victim.ok("AddWebDev", map[string]any{"device": sub.JSON()})
			trap := newConvo(t, alice, "trap", attackers...)
			cid := newConvo(t, alice, "ordinary", victim)
			for _, c := range append(attackers, victim) {
				c.conn.close()
				waitOffline(t, srv, c.name)
			}
			// Enough messages to the attackers for every worker, and more.
			for i := range 8 {
				alice.ok("SendMessage", map[string]any{"CID": trap, "content": fmt.Sprintf("bait %d", i)})
			}
			held := func() int {
				n := 0
				for _, d := range dead {
					n += d.Held()
				}
				return n
			}
			waitUntil(t, "dead hosts holding pushes", func() bool { return held() > 0 })
			alice.ok("SendMessage", map[string]any{"CID": cid, "content": "for the victim"})
			p := receive(t, rig.wp.Received, "the victim's push")
			if p.ID != id || !strings.Contains(string(p.Plaintext), "for the victim") {
				t.Fatalf("push %s: %s", p.ID, p.Plaintext)
			}
			// Still held: the victim did not wait for them. And never more than the budgets allow.
			h := held()
			limit := max(1, cfg.PushWorkers/4) * tc.attackers
			limit = min(limit, max(1, cfg.PushWorkers/2)*tc.hosts, cfg.PushWorkers-1)
			if h == 0 || h > limit {
				t.Fatalf("%d pushes held by dead hosts when the victim's went out, want 1 to %d", h, limit)
			}
		})
	}
}

// TestPushQueueDropsOldestFirst: when the queue is full the oldest task goes, so that the newest
// messages are the ones pushed once the stuck worker is free again.
func TestPushQueueDropsOldestFirst(t *testing.T) {
	cfg := testConfig(t)
	rig := newPushRig(t, &cfg)
	cfg.PushWorkers, cfg.PushQueue = 1, 2
	srv := startServer(t, cfg)
	alice, bob := register(t, srv, "doa"), register(t, srv, "dob")
	sub, _, err := rig.wp.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	bob.ok("AddWebDev", map[string]any{"device": sub.JSON()})
	cid := newConvo(t, alice, "oldest", bob)
	bob.conn.close()
	waitOffline(t, srv, bob.name)
	rig.wp.Hang(true)
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "m0"})
	waitUntil(t, "the first push held", func() bool { return rig.wp.Held() == 1 })
	for i := 1; i <= 5; i++ {
		alice.ok("SendMessage", map[string]any{"CID": cid, "content": fmt.Sprintf("m%d", i)})
	}
	waitUntil(t, "three dropped", func() bool { return dropped(srv) == 3 })
	rig.wp.Hang(false)
	var got []string
	for range 3 {
		p := receive(t, rig.wp.Received, "a push")
		for _, m := range []string{"m0", "m1", "m2", "m3", "m4", "m5"} {
			if strings.Contains(string(p.Plaintext), `"body":"`+m+`"`) {
				got = append(got, m)
			}
		}
	}
	if strings.Join(got, ",") != "m0,m4,m5" {
		t.Fatalf("pushed %v, want m0 (held) then the newest, m4 and m5", got)
	}
}

func dropped(srv *testServer) float64 {
	return testutil.ToFloat64(srv.db.push.dropped)
}

// TestWebPushSubscriptionCap: a user keeps at most maxWebPushSubs subscriptions; a new one
// replaces the oldest.
func TestWebPushSubscriptionCap(t *testing.T) {
	cfg := testConfig(t)
	rig := newPushRig(t, &cfg)
	srv := startServer(t, cfg)
	c := register(t, srv, "cap")
	var endpoints []string
	for range maxWebPushSubs + 2 {
		sub, _, err := rig.wp.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		c.ok("AddWebDev", map[string]any{"device": sub.JSON()})
		endpoints = append(endpoints, sub.Endpoint)
	}
	u, err := srv.db.getUser(t.Context(), c.name)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, d := range u.Devices[webPushPlatform] {
		kept = append(kept, endpointOf(d))
	}
	if strings.Join(kept, " ") != strings.Join(endpoints[2:], " ") {
		t.Fatalf("kept %v, want the newest %d of %v", kept, maxWebPushSubs, endpoints)
	}
}
