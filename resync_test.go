package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
)

// Live delivery that never silently misses (issue 9): every client that stays connected sees
// every acknowledged message, live or through a Resync it is told to do. NATS here is a real
// nats-server process, built from the module the server embeds, killed with SIGKILL.

// toolBinaries are programs the tests build from modules in go.mod, once per test run.
var toolBinaries struct {
	mu    sync.Mutex
	built map[string]string // package → path
	dir   string
}

// buildTool builds a main package of a module the project requires and returns its path.
func buildTool(t testing.TB, pkg string) string {
	t.Helper()
	toolBinaries.mu.Lock()
	defer toolBinaries.mu.Unlock()
	if p := toolBinaries.built[pkg]; p != "" {
		return p
	}
	if toolBinaries.dir == "" {
		dir, err := os.MkdirTemp("", "pinged-tools-")
		if err != nil {
			t.Fatal(err)
		}
		toolBinaries.dir, toolBinaries.built = dir, map[string]string{}
	}
	path := filepath.Join(toolBinaries.dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	toolBinaries.built[pkg] = path
	return path
}

func natsServerBinary(t testing.TB) string { return buildTool(t, "github.com/nats-io/nats-server/v2") }

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// natsProc is one nats-server process on fixed loopback ports, so that it can be killed and
// started again where its clients expect it.
type natsProc struct {
	t       testing.TB
	port    int
	args    []string
	cmd     *exec.Cmd
	stopped chan struct{}
}

func (n *natsProc) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// startNATSProc starts nats-server on a free port; routes (cluster URLs of other nodes) make it
// part of a cluster listening for routes on clusterPort.
func startNATSProc(t testing.TB, clusterPort int, routes ...string) *natsProc {
	t.Helper()
	n := &natsProc{t: t, port: freePort(t)}
	n.args = []string{"-a", "127.0.0.1", "-p", strconv.Itoa(n.port)}
	if clusterPort > 0 {
		n.args = append(n.args, "--cluster_name", "pinged", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", clusterPort))
		for _, r := range routes {
			n.args = append(n.args, "--routes", r)
		}
	}
	n.start()
	t.Cleanup(n.kill)
	return n
}

func (n *natsProc) start() {
	n.t.Helper()
	n.cmd = exec.Command(natsServerBinary(n.t), n.args...)
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.stopped = make(chan struct{})
	go func(cmd *exec.Cmd, stopped chan struct{}) { _ = cmd.Wait(); close(stopped) }(n.cmd, n.stopped)
	waitUntil(n.t, "nats-server to listen", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *natsProc) kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.stopped
	n.cmd = nil
}

// watcher follows one client's pushes as the web client does: it records every message id of
// a conversation pushed live, and on a Resync fetches the conversation from its sync point (the
// newest m_time a history page gave it), page by page.
type watcher struct {
	c       *client
	cid     string
	mu      sync.Mutex
	seen    map[float64]bool
	resyncs int
	syncTo  string
	done    chan struct{}
	stop    chan struct{}
}

func watch(c *client, cid string) *watcher {
	w := &watcher{c: c, cid: cid, seen: map[float64]bool{}, syncTo: formatTime(time.Now().Add(-time.Minute)),
		done: make(chan struct{}), stop: make(chan struct{})}
	go w.run()
	return w
}

func (w *watcher) run() {
	defer close(w.done)
	for next := 0; ; {
		w.c.mu.Lock()
		pushes, cond, closed := w.c.pushes[next:], w.c.cond, w.c.closed
		next = len(w.c.pushes)
		w.c.mu.Unlock()
		for _, p := range pushes {
			switch p["cmd"] {
			case "SendMessage":
				if p["CID"] == w.cid {
					w.mu.Lock()
					w.seen[p["id"].(float64)] = true
					w.mu.Unlock()
				}
			case "Resync":
				w.mu.Lock()
				w.resyncs++
				w.mu.Unlock()
				w.fetch()
			}
		}
		if closed != nil && len(pushes) == 0 {
			return
		}
		select {
		case <-cond:
		case <-w.stop:
			return
		}
	}
}

func (w *watcher) fetch() {
	for {
		rep := w.c.call("GetConvoData", map[string]any{"CID": w.cid, "M_time": w.syncTo})
		if rep["error"] != nil {
			return // storage away too: the next Resync or the test's end will tell
		}
		msgs, _ := rep["Messages"].([]any)
		w.mu.Lock()
		for _, m := range msgs {
			mm := m.(map[string]any)
			w.seen[mm["id"].(float64)] = true
			w.syncTo = mm["m_time"].(string)
		}
		w.mu.Unlock()
		if rep["More"] != true {
			return
		}
	}
}

// missing waits until the watcher has seen the last acknowledged message (which arrives live
// once things are healthy again), stops it, and returns the acknowledged ids it never saw.
func (w *watcher) missing(t *testing.T, acked []float64) []float64 {
	t.Helper()
	last := acked[len(acked)-1]
	waitUntil(t, w.c.name+" to see the last message", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.seen[last]
	})
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []float64
	for _, id := range acked {
		if !w.seen[id] {
			out = append(out, id)
		}
	}
	return out
}

// sender sends messages at about 20 a second until stopped and returns the acknowledged ids.
func sender(t *testing.T, c *client, cid string, stop <-chan struct{}) <-chan []float64 {
	out := make(chan []float64, 1)
	go func() {
		var acked []float64
		defer func() { out <- acked }()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			rep := c.call("SendMessage", map[string]any{"CID": cid, "content": fmt.Sprint("m", i), "client_id": fmt.Sprint("c", i)})
			if id, ok := rep["id"].(float64); ok {
				acked = append(acked, id)
			}
		}
	}()
	return out
}

// untilAcked waits until the sender has had n more acknowledgements, by watching its client.
func untilAcked(t *testing.T, c *client, n int) {
	t.Helper()
	c.mu.Lock()
	start := len(c.replies)
	c.mu.Unlock()
	c.waitFor(fmt.Sprintf("%d more replies", n), func() bool { return len(c.replies) >= start+n })
}

func TestNATSOutageTellsSessionsToResync(t *testing.T) {
	ns := startNATSProc(t, 0)
	cfg := testConfig(t)
	cfg.NATS = ns.url()
	a, b := startServer(t, cfg), startServer(t, cfg)
	alice := register(t, a, "alice")
	bob := register(t, b, "bob")
	cid := newConvo(t, alice, "", bob)
	w := watch(bob, cid)

	stop := make(chan struct{})
	acked := sender(t, alice, cid, stop)
	untilAcked(t, alice, 5)
	ns.kill()
	untilAcked(t, alice, 10) // acknowledged (stored) while NATS is away
	ns.start()
	bob.waitFor("a Resync after NATS came back", func() bool {
		for _, p := range bob.pushes {
			if p["cmd"] == "Resync" {
				return true
			}
		}
		return false
	})
	untilAcked(t, alice, 5)
	close(stop)
	ids := <-acked
	if miss := w.missing(t, ids); len(miss) > 0 {
		t.Fatalf("bob never saw %d of %d acknowledged messages (%d resyncs): %v", len(miss), len(ids), w.resyncs, miss)
	}
	if w.resyncs == 0 {
		t.Fatal("bob was never told to resync")
	}
	// Logins go on promptly while NATS is away.
	ns.kill()
	start := time.Now()
	login(t, b, bob.name)
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a login during a NATS outage took %v", d)
	}
}

// A three-node NATS cluster; the two instances connect to different nodes. When the node of
// one instance dies, that instance reconnects through another node and its sessions resync;
// nothing acknowledged is missed.
func TestNATSClusterNodeLoss(t *testing.T) {
	c1, c2, c3 := freePort(t), freePort(t), freePort(t)
	route := func(p int) string { return fmt.Sprintf("nats://127.0.0.1:%d", p) }
	n1 := startNATSProc(t, c1, route(c2), route(c3))
	n2 := startNATSProc(t, c2, route(c1), route(c3))
	startNATSProc(t, c3, route(c1), route(c2))
	waitRoutes(t, n1.url(), n2.url())
	cfgA, cfgB := testConfig(t), testConfig(t)
	cfgA.NATS, cfgB.NATS = n1.url(), n2.url()
	a, b := startServer(t, cfgA), startServer(t, cfgB)
	alice := register(t, a, "alice")
	bob := register(t, b, "bob")
	carol := register(t, a, "carol") // a second reader on the instance whose node dies
	cid := newConvo(t, alice, "", bob, carol)
	wb, wc := watch(bob, cid), watch(carol, cid)

	stop := make(chan struct{})
	acked := sender(t, bob, cid, stop)
	untilAcked(t, bob, 5)
	n1.kill()
	carol.waitFor("a Resync on the instance whose node died", func() bool {
		for _, p := range carol.pushes {
			if p["cmd"] == "Resync" {
				return true
			}
		}
		return false
	})
	untilAcked(t, bob, 10)
	close(stop)
	ids := <-acked
	for name, w := range map[string]*watcher{"bob": wb, "carol": wc} {
		if miss := w.missing(t, ids); len(miss) > 0 {
			t.Errorf("%s never saw %d of %d acknowledged messages: %v", name, len(miss), len(ids), miss)
		}
	}
	// Sessions on A keep working through another node.
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "still here"})
	bob.waitPush("after the node loss", func(p map[string]any) bool { return p["content"] == "still here" })
}

// waitRoutes waits until a message published on node `from` reaches a subscriber on node `to`.
func waitRoutes(t *testing.T, from, to string) {
	t.Helper()
	pub, err := nats.Connect(from)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := nats.Connect(to)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan *nats.Msg, 64)
	if _, err := sub.ChanSubscribe("probe", got); err != nil {
		t.Fatal(err)
	}
	_ = sub.Flush()
	waitUntil(t, "the cluster's routes", func() bool {
		_ = pub.Publish("probe", nil)
		_ = pub.Flush()
		select {
		case <-got:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
}

// A resend that finds its message stored publishes it again: the first instance may have died
// between the commit and the publish.
func TestResendOfAStoredMessagePublishesIt(t *testing.T) {
	srv := startServer(t, testConfig(t))
	carol := register(t, srv, "carol")
	dave := register(t, srv, "dave")
	cid := newConvo(t, carol, "", dave)
	// Stored by an instance that died before publishing.
	m := &Message{CID: cid, FUsername: carol.name, Content: "did you get this?", Kind: "text", ClientID: "carol-1"}
	if _, err := srv.db.insertMessage(t.Context(), srv.db.pool, m); err != nil {
		t.Fatal(err)
	}
	ack := carol.ok("SendMessage", map[string]any{"CID": cid, "content": "did you get this?", "client_id": "carol-1"})
	if ack["id"] != float64(m.ID) {
		t.Fatalf("resend ack %v, want id %d", ack, m.ID)
	}
	p := dave.waitPush("the resent message", isMsgIn(cid))
	if p["id"] != float64(m.ID) || p["content"] != "did you get this?" {
		t.Fatalf("push: %v", p)
	}
}

// On the raw websocket the server pings every heartbeat; a client that stops answering is closed
// within a few heartbeats, while one that answers stays.
func TestHalfDeadRawWebsocketIsClosed(t *testing.T) {
	cfg := testConfig(t)
	cfg.heartbeat = 100 * time.Millisecond
	srv := startServer(t, cfg)
	healthy := register(t, srv, "healthy")

	ws, _, err := websocket.DefaultDialer.Dial("ws://"+srv.addr+"/ws/websocket", http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetPingHandler(func(string) error { return nil }) // reads, but never answers a ping
	name := uniqueName("halfdead")
	_ = ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(`{"cmd":"CreateUser","username":%q,"password":%q}`, name, testPassword)))
	_ = ws.SetReadDeadline(time.Now().Add(waitTimeout))
	for {
		_, _, err := ws.ReadMessage()
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the server kept a connection that answers no pings")
		}
		if err != nil {
			break
		}
	}
	healthy.ok("GetUserByUsername", map[string]any{"username": healthy.name})
}
