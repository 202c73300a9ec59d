package main

import (
	"fmt"
	"os"
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
