package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"pingedchat/internal/asdnode"
)

// The Aerospike backend against a real Aerospike CE node: internal/asdnode starts one from
// the project's aerospike.conf (the binary from AEROSPIKE_ASD or ../shared/aerospike/asd.gz;
// without one these tests skip, except under .ci/run, which requires it), or AEROSPIKE_HOST
// names an external server (host:port; AEROSPIKE_USERS_NS and AEROSPIKE_CONVOS_NS its
// namespaces), which cannot be restarted from here.

// realAerospike is a real server for one test.
type realAerospike struct {
	spec    string
	cluster *asdnode.Cluster // nil for an external server
}

func startRealAerospike(t *testing.T) *realAerospike {
	t.Helper()
	if host := os.Getenv("AEROSPIKE_HOST"); host != "" {
		return &realAerospike{spec: fmt.Sprintf("aerospike://%s?users=%s&convos=%s", host,
			qsEnvOr("AEROSPIKE_USERS_NS", "users"), qsEnvOr("AEROSPIKE_CONVOS_NS", "convos"))}
	}
	c := asdnode.Start(t, asdnode.Options{})
	return &realAerospike{spec: c.Spec(), cluster: c}
}

// crashAfterFlush waits until the node has written everything to its file, kills it (SIGKILL)
// and cold-starts it: what is acknowledged and flushed survives, deleted records come back
// unless a newer version (a tombstone) was flushed after them.
func (r *realAerospike) crashAfterFlush(t *testing.T) {
	t.Helper()
	r.restart(t, func(n *asdnode.Node) {
		var g errgroup.Group
		for _, ns := range []string{nsUsers, nsConvos} {
			g.Go(func() error { return n.WaitFlushed(ns, 30*time.Second) })
		}
		if err := g.Wait(); err != nil {
			t.Fatal(err)
		}
		n.Kill()
	})
}

// cleanRestart stops the node with SIGTERM (it flushes) and cold-starts it.
func (r *realAerospike) cleanRestart(t *testing.T) {
	t.Helper()
	r.restart(t, (*asdnode.Node).Term)
}

func (r *realAerospike) restart(t *testing.T, stop func(*asdnode.Node)) {
	t.Helper()
	if r.cluster == nil {
		t.Skip("an external Aerospike (AEROSPIKE_HOST) cannot be restarted from here")
	}
	for _, n := range r.cluster.Nodes {
		stop(n)
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.cluster.WaitStable(len(r.cluster.Nodes), time.Minute); err != nil {
		t.Fatal(err)
	}
}

// A two-node cluster with replication-factor 2 (aerospike.conf's) loses a node to SIGKILL while
// users register, create conversations and send: everything acknowledged stays readable
// through the server while the survivor works alone, after the killed node rejoins and the
// migrations finish, and then from the rejoined node alone (so the data really went back to
// it). A command refused while the cluster re-forms says the storage is unavailable, never
// "internal error".
func TestTwoAerospikeNodesSurviveAKill(t *testing.T) {
	t.Parallel() // it mostly waits for the nodes
	cluster := asdnode.Start(t, asdnode.Options{Nodes: 2})
	cfg := testConfig(t)
	cfg.QuickStore = cluster.Spec()
	cfg.QuickStoreWait = 30 * time.Second
	srv := startServer(t, cfg)
	w := &clusterWorkload{t: t, srv: srv}

	for len(w.users) < 6 {
		w.step()
	}
	cluster.Nodes[1].Kill()
	for stable, _ := cluster.Nodes[0].Stable(1); !stable; stable, _ = cluster.Nodes[0].Stable(1) {
		w.step() // while the survivor re-forms the cluster
	}
	for after := len(w.users); len(w.users) < after+6; {
		w.step() // the survivor alone
	}
	t.Logf("%d users, %d conversations acknowledged; %d commands refused as unavailable", len(w.users), len(w.convos), w.refused)
	w.verify("with one node killed")

	if err := cluster.Nodes[1].Start(); err != nil {
		t.Fatal(err)
	}
	if err := cluster.WaitStable(2, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	w.step()
	w.verify("after the node rejoined and migrations finished")

	cluster.Nodes[0].Kill() // now only the rejoined node has the data
	if err := cluster.WaitStable(1, time.Minute); err != nil {
		t.Fatal(err)
	}
	w.verify("from the rejoined node alone")
}

// clusterWorkload registers users, each of whom creates a conversation with the previous user
// and sends a message in it, and remembers what was acknowledged.
type clusterWorkload struct {
	t       *testing.T
	srv     *testServer
	users   []clusterUser
	convos  []clusterConvo
	refused int
}

type clusterUser struct{ name, token string }

type clusterConvo struct{ cid, owner, message string }

// step does one user's registration, conversation and message; each acknowledged part is
// remembered, a part refused as unavailable is given up (and counted).
func (w *clusterWorkload) step() {
	w.t.Helper()
	c := dialRaw(w.t, w.srv)
	c.name = uniqueName("mesh")
	rep := w.call(c, "CreateUser", map[string]any{"username": c.name, "password": testPassword})
	if rep == nil {
		return
	}
	w.users = append(w.users, clusterUser{c.name, rep["session"].(string)})
	if len(w.users) < 2 {
		return
	}
	peer := w.users[len(w.users)-2].name
	rep = w.call(c, "CreateConversation", map[string]any{"Name": "mesh", "Members": []string{peer}})
	if rep == nil {
		return
	}
	cc := clusterConvo{cid: rep["CID"].(string), owner: c.name, message: "hello from " + c.name}
	if w.call(c, "SendMessage", map[string]any{"CID": cc.cid, "content": cc.message}) != nil {
		w.convos = append(w.convos, cc)
	}
}

// call runs a command and returns its reply, or nil when it was refused as unavailable; any
// other error fails the test.
func (w *clusterWorkload) call(c *client, cmd string, fields map[string]any) map[string]any {
	w.t.Helper()
	rep := c.call(cmd, fields)
	e, failed := rep["error"].(string)
	switch {
	case !failed:
		return rep
	case strings.Contains(e, "storage unavailable"):
		w.refused++
		return nil
	}
	w.t.Fatalf("%s %s while a node was away: %q, want success or \"storage unavailable\"", c.name, cmd, e)
	return nil
}

// verify reads back every acknowledged user (password and resume token) and conversation
// (its record and its message), retrying while the cluster says it is unavailable.
func (w *clusterWorkload) verify(when string) {
	w.t.Helper()
	retry := func(what string, try func() map[string]any) map[string]any {
		w.t.Helper()
		var rep map[string]any
		waitUntil(w.t, what+" "+when, func() bool {
			rep = try()
			e, _ := rep["error"].(string)
			return !strings.Contains(e, "storage unavailable")
		})
		if e, failed := rep["error"]; failed {
			w.t.Fatalf("%s %s: %v", what, when, e)
		}
		return rep
	}
	for _, u := range w.users {
		retry("login of "+u.name, func() map[string]any {
			return dialRaw(w.t, w.srv).call("ValidateUser", map[string]any{"username": u.name, "password": testPassword})
		})
		retry("resume of "+u.name, func() map[string]any {
			return dialRaw(w.t, w.srv).call("ValidateUser", map[string]any{"username": u.name, "session": u.token})
		})
	}
	for _, cc := range w.convos {
		owner := dialRaw(w.t, w.srv)
		owner.ok("ValidateUser", map[string]any{"username": cc.owner, "password": testPassword})
		data := retry("conversation "+cc.cid, func() map[string]any {
			return owner.call("GetAllConvoData", map[string]any{"CID": cc.cid})
		})
		msgs, _ := data["Messages"].([]any)
		if len(msgs) == 0 || msgs[len(msgs)-1].(map[string]any)["content"] != cc.message {
			w.t.Fatalf("conversation %s %s: messages %v, want %q", cc.cid, when, msgs, cc.message)
		}
	}
}

// The crash window, closed for revocations: on a single node, a Logout, a DeleteUser and a
// ChangeUserPassword acknowledged just before a SIGKILL may be undone in the quick store (CE
// flushes about once a second), but the revocations committed to PostgreSQL hold: the revoked
// token, the deleted user's password and token, and the token from before the password change
// are all refused after the node comes back; the scheduler deletes the account that came back
// again, and its name is free.
func TestRevocationsSurviveAnAerospikeCrash(t *testing.T) {
	t.Parallel() // its own node and server
	real := startRealAerospike(t)
	if real.cluster == nil {
		t.Skip("an external Aerospike (AEROSPIKE_HOST) cannot be crashed from here")
	}
	node := real.cluster.Nodes[0]
	cfg := testConfig(t)
	cfg.QuickStore = real.spec
	cfg.QuickStoreWait = 30 * time.Second
	srv := startServer(t, cfg)
	registered := func(prefix string) (*client, string) {
		c := dialRaw(t, srv)
		c.name = uniqueName(prefix)
		return c, c.ok("CreateUser", map[string]any{"username": c.name, "password": testPassword})["session"].(string)
	}
	out, outToken := registered("loggedout")
	gone, goneToken := registered("deleted")
	changer, changerToken := registered("changer")
	var g errgroup.Group
	for _, ns := range []string{nsUsers, nsConvos} {
		g.Go(func() error { return node.WaitFlushed(ns, 30*time.Second) })
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err) // everything so far is on the node's file: the crash can only undo what follows
	}

	out.ok("Logout", nil)
	gone.ok("DeleteUser", map[string]any{"password": testPassword})
	changer.ok("ChangeUserPassword", map[string]any{"OldPassword": testPassword, "NewPassword": "a new password"})
	node.Kill()
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	if err := real.cluster.WaitStable(1, time.Minute); err != nil {
		t.Fatal(err)
	}

	// What the quick store alone remembers: the window is real when these came back.
	q := qsOpenAerospike(t, real.spec)
	_, sessErr := q.Get(t.Context(), sessionKey(tokenHash(outToken)))
	_, userErr := q.Get(t.Context(), userKey(gone.name))
	t.Logf("after the crash the quick store has the logged-out token: %v; the deleted user: %v", sessErr == nil, userErr == nil)

	resume := func(name, token string) map[string]any {
		var rep map[string]any
		waitUntil(t, "the quick store to answer again", func() bool {
			rep = dialRaw(t, srv).call("ValidateUser", map[string]any{"username": name, "session": token})
			e, _ := rep["error"].(string)
			return !strings.Contains(e, "storage unavailable")
		})
		return rep
	}
	for _, tc := range []struct{ who, name, token string }{
		{"logged out", out.name, outToken}, {"deleted", gone.name, goneToken}, {"before the password change", changer.name, changerToken},
	} {
		if e, _ := resume(tc.name, tc.token)["error"].(string); !strings.Contains(e, "expired or revoked") {
			t.Errorf("the token %s works after the crash: %q", tc.who, e)
		}
	}
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": gone.name, "password": testPassword}, "Invalid username or password")
	dialRaw(t, srv).fails("ValidateUser", map[string]any{"username": changer.name, "password": testPassword}, "Invalid username or password")

	// A minute on, the scheduler confirms the deletion: an account that came back goes again.
	if _, err := srv.db.pool.Exec(t.Context(), "UPDATE pending_deletions SET finished = now() - interval '1 hour' WHERE username = upper($1)", gone.name); err != nil {
		t.Fatal(err)
	}
	srv.db.finishPendingDeletions(t.Context())
	srv.db.finishPendingDeletions(t.Context()) // a deletion redone is confirmed later again
	if _, _, err := srv.db.getUserRecord(t.Context(), gone.name); !isNotFound(err) {
		t.Fatalf("the deleted user's record after the scheduler's check: %v", err)
	}
	dialRaw(t, srv).ok("CreateUser", map[string]any{"username": gone.name, "password": testPassword})
}
