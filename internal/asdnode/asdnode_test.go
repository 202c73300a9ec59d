package asdnode

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
)

// The shipped configuration becomes a test node's: its own directory, loopback, its ports and
// seeds; the namespaces' settings untouched.
func TestNodeConfigRewritesOnlyPlacement(t *testing.T) {
	conf, err := os.ReadFile(filepath.Join("..", "..", "aerospike.conf"))
	if err != nil {
		t.Fatal(err)
	}
	got := nodeConfig(string(conf), "/d", []int{10, 11, 12}, []int{12, 22}, "")
	for _, want := range []string{
		"work-directory /d", "pidfile /d/asd.pid", "user-path /d/usr/udf/lua",
		"file /d/data/users.dat", "file /d/data/convos.dat", "filesize 256M",
		"port 10\n", "port 11\n", "port 12\n", "mesh-seed-address-port 127.0.0.1 22\n",
		"replication-factor 2", "nsup-period 120", "cluster-name pingedchat",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config lacks %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"address any", "/opt/aerospike", "port 3000", "127.0.0.1 12\n", "filesize 4G"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("config still has %q", unwanted)
		}
	}
}

// A node starts from the shipped configuration, serves both namespaces, and comes back after
// a crash.
func TestNodeStartsKillsAndRestarts(t *testing.T) {
	c := Start(t, Options{})
	n := c.Nodes[0]
	ns, err := n.Info("namespaces")
	if err != nil || !strings.Contains(ns, "users") || !strings.Contains(ns, "convos") {
		t.Fatalf("namespaces: %q, %v", ns, err)
	}
	// A record flushed before a crash is there after it.
	client, err := as.NewClient("127.0.0.1", n.Port)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := as.NewKey("convos", "t", "kept")
	if err := client.Put(nil, k, as.BinMap{"v": 1}); err != nil {
		t.Fatal(err)
	}
	client.Close()
	if err := n.WaitFlushed("convos", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	n.Kill()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitStable(1, time.Minute); err != nil {
		t.Fatal(err)
	}
	client, err = as.NewClient("127.0.0.1", n.Port)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if rec, err := client.Get(nil, k); err != nil || rec.Bins["v"] != 1 {
		t.Fatalf("after the crash: %v, %v", rec, err)
	}
}
