// Package asdnode runs real Aerospike Community Edition nodes (the asd binary) for tests: one
// node or a mesh of several, on free loopback ports in a temporary directory, configured from
// the project's aerospike.conf, so that what the tests prove holds for the configuration we
// ship. It finds the binary in AEROSPIKE_ASD (a path to asd, or to asd.gz) or as
// shared/aerospike/asd.gz in a directory above the module's root (the workplace's
// ../shared/aerospike/asd.gz).
//
// Without a binary, Start skips the test with a line saying how to run it, unless
// PINGED_REQUIRE_AEROSPIKE=1 (what .ci/run sets): then it fails, so CI never skips the real
// server silently.
package asdnode

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	as "github.com/aerospike/aerospike-client-go/v7"
)

// RequireEnv, set to 1, turns a missing binary from a skip into a failure.
const RequireEnv = "PINGED_REQUIRE_AEROSPIKE"

// startTimeout bounds how long a node may take to form its cluster (2–10 s seen here).
const startTimeout = 60 * time.Second

// Options shape a cluster.
type Options struct {
	// Nodes is how many nodes form the mesh; 0 means 1.
	Nodes int
	// FileSize replaces each namespace's filesize (the shipped 4G is sparse but sizes the
	// node's memory arenas); empty keeps 256M, which is plenty for tests.
	FileSize string
}

// Cluster is a set of nodes that mesh with each other.
type Cluster struct {
	Nodes []*Node
}

// Node is one asd process and its directory. It may be stopped and started again on the same
// directory and ports (a cold start from its data files).
type Node struct {
	Dir   string
	Port  int // service port: clients connect here
	bin   string
	log   string
	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{} // closed when cmd has exited
	runID int           // counts starts, so that the log is read from this run's start
	logAt int64         // the log's size when this run started
}

// Addr is host:port for clients.
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port)) }

// Spec is the -quickstore value that names every node of the cluster.
func (c *Cluster) Spec() string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return "aerospike://" + strings.Join(addrs, ",")
}

var (
	unpackOnce sync.Once
	unpacked   string
	unpackErr  error
)

// Binary returns the path of a runnable asd, unpacking asd.gz once per process; "" with a
// reason when there is none.
func Binary() (string, error) {
	unpackOnce.Do(func() { unpacked, unpackErr = findBinary() })
	return unpacked, unpackErr
}

func findBinary() (string, error) {
	src := os.Getenv("AEROSPIKE_ASD")
	if src == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", err
		}
		for dir := filepath.Dir(root); ; dir = filepath.Dir(dir) {
			p := filepath.Join(dir, "shared", "aerospike", "asd.gz")
			if _, err := os.Stat(p); err == nil {
				src = p
				break
			}
			if dir == filepath.Dir(dir) {
				return "", errors.New("no Aerospike server binary: set AEROSPIKE_ASD=/path/to/asd (or asd.gz), or put asd.gz at ../shared/aerospike/ beside the checkout")
			}
		}
	}
	if !strings.HasSuffix(src, ".gz") {
		return src, nil
	}
	return gunzipExecutable(src)
}

// gunzipExecutable unpacks src into a fresh temporary file that lives as long as the process.
func gunzipExecutable(src string) (string, error) {
	in, err := os.Open(src)
	if err != nil {
		return "", fmt.Errorf("opening %s: %w", src, err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", src, err)
	}
	dir, err := os.MkdirTemp("", "asd-bin-")
	if err != nil {
		return "", err
	}
	dst := filepath.Join(dir, "asd")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, zr); err != nil {
		out.Close()
		return "", fmt.Errorf("unpacking %s: %w", src, err)
	}
	return dst, out.Close()
}

// moduleRoot is the directory holding go.mod, found upwards from the working directory (a
// test runs in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		if dir == filepath.Dir(dir) {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = filepath.Dir(dir)
	}
}

// Start runs a cluster of opts.Nodes nodes for a test and waits until every node sees all of
// them. The nodes are killed and their directories removed when the test ends. Without a
// binary it skips (or fails: see RequireEnv).
func Start(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	if _, err := Binary(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			tb.Fatalf("a real Aerospike node is required here (%s=1): %v", RequireEnv, err)
		}
		tb.Skipf("skipped: %v; the aerotest runs cover the backend meanwhile", err)
	}
	c, err := StartCluster(opts)
	if c != nil {
		tb.Cleanup(c.Close)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// StartCluster runs a cluster of opts.Nodes nodes, each in a new temporary directory, and waits
// until every node sees all of them. Close stops it. On an error the nodes started so far
// are in the returned cluster, for Close.
func StartCluster(opts Options) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	conf, err := os.ReadFile(filepath.Join(root, "aerospike.conf"))
	if err != nil {
		return nil, err
	}
	count := max(opts.Nodes, 1)
	ports, err := freePorts(3 * count)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	var seeds []int
	for i := range count {
		seeds = append(seeds, ports[3*i+2])
	}
	for i := range count {
		dir, err := os.MkdirTemp("", "asdnode-")
		if err != nil {
			return c, err
		}
		n := &Node{Dir: dir, Port: ports[3*i], bin: bin, log: filepath.Join(dir, "asd.log")}
		c.Nodes = append(c.Nodes, n)
		if err := n.prepare(nodeConfig(string(conf), dir, ports[3*i:3*i+3], seeds, opts.FileSize)); err != nil {
			return c, err
		}
	}
	for _, n := range c.Nodes {
		if err := n.Start(); err != nil {
			return c, err
		}
	}
	return c, c.WaitStable(count, startTimeout)
}

// Close kills every node and removes their directories.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Kill()
		os.RemoveAll(n.Dir)
	}
}

// PID is the node's process id, 0 when it is not running.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// prepare writes the configuration and the directories asd insists on.
func (n *Node) prepare(cfg string) error {
	for _, d := range []string{"smd", "data", filepath.Join("usr", "udf", "lua")} {
		if err := os.MkdirAll(filepath.Join(n.Dir, d), 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(n.Dir, "aerospike.conf"), []byte(cfg), 0o644)
}

// Start runs the node's process (again): a start after Kill or Term is a cold start from its
// data files. It returns once the process runs, not once it serves: see WaitStable.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("node %s is already running", n.Addr())
	}
	logf, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	st, err := logf.Stat()
	if err != nil {
		return err
	}
	n.logAt = st.Size()
	cmd := exec.Command(n.bin, "--config-file", filepath.Join(n.Dir, "aerospike.conf"), "--foreground")
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting asd: %w", err)
	}
	n.cmd, n.done, n.runID = cmd, make(chan struct{}), n.runID+1
	go func(done chan struct{}) { cmd.Wait(); close(done) }(n.done)
	return nil
}

// Kill ends the node with SIGKILL, a crash: writes acknowledged within about flush-max-ms are
// lost, and deleted records come back at the next (cold) start.
func (n *Node) Kill() { n.stop(syscall.SIGKILL) }

// Term ends the node with SIGTERM, a clean shutdown that flushes everything.
func (n *Node) Term() { n.stop(syscall.SIGTERM) }

func (n *Node) stop(sig syscall.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return
	}
	n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(startTimeout):
		n.cmd.Process.Kill()
		<-n.done
	}
	n.cmd = nil
}

// Running reports whether the node's process is up.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Log is what the node has logged in its current run.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.log)
	if int64(len(b)) < n.logAt {
		return string(b)
	}
	return string(b[n.logAt:])
}

// Info asks the node one info command.
func (n *Node) Info(cmd string) (string, error) {
	conn, err := as.NewConnection(as.NewClientPolicy(), as.NewHost("127.0.0.1", n.Port))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	out, err := conn.RequestInfo(cmd)
	if err != nil {
		return "", err
	}
	return out[cmd], nil
}

// WaitStable waits until every running node reports a cluster of size nodes with no
// migrations left (the info command cluster-stable), or fails after timeout.
func (c *Cluster) WaitStable(size int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		for {
			ok, last := n.Stable(size)
			if ok {
				break
			}
			if n.exited() {
				return fmt.Errorf("asd on %s exited while starting; its log ends:\n%s", n.Addr(), tail(n.Log(), 20))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("asd on %s: no stable cluster of %d within %v (last answer %q); its log ends:\n%s",
					n.Addr(), size, timeout, last, tail(n.Log(), 20))
			}
			time.Sleep(100 * time.Millisecond) // polling the node's own answer, within the deadline
		}
	}
	return nil
}

// Stable reports whether the node sees a cluster of size nodes with no migrations left, and
// otherwise what it answered.
func (n *Node) Stable(size int) (bool, string) {
	out, err := n.Info(fmt.Sprintf("cluster-stable:size=%d;ignore-migrations=false", size))
	if err == nil && out != "" && !strings.HasPrefix(out, "ERROR") {
		return true, out
	}
	return false, fmt.Sprint(out, err)
}

func (n *Node) exited() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

// WaitFlushed returns once everything written to namespace ns before the call is on the node's
// storage file, so that a SIGKILL loses none of it. Community Edition flushes a namespace's
// write buffer about every flush-max-ms when it holds something new; the node counts the
// flushes (storage-engine.stripe[…].writes and partial_writes). Two counted flushes, each
// after a marker write that makes the buffer dirty, are enough: flushes run one after another,
// so the second began after the first ended, which was after the call began, and a flush
// writes everything in the buffer.
func (n *Node) WaitFlushed(ns string, timeout time.Duration) error {
	client, err := as.NewClientWithPolicyAndHost(as.NewClientPolicy(), as.NewHost("127.0.0.1", n.Port))
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", n.Addr(), err)
	}
	defer client.Close()
	key, err := as.NewKey(ns, "asdnode", "flush-marker")
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for range 2 {
		before, err := n.flushes(ns)
		if err != nil {
			return err
		}
		if err := client.Put(nil, key, as.BinMap{"at": time.Now().UnixNano()}); err != nil {
			return fmt.Errorf("writing the flush marker: %w", err)
		}
		for {
			now, err := n.flushes(ns)
			if err != nil {
				return err
			}
			if now > before {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("asd on %s: namespace %s not flushed within %v", n.Addr(), ns, timeout)
			}
			time.Sleep(20 * time.Millisecond) // polling the node's counters, within the deadline
		}
	}
	return nil
}

// flushes is how many times the node has written namespace ns's buffers to its file.
func (n *Node) flushes(ns string) (int, error) {
	stats, err := n.Info("namespace/" + ns)
	if err != nil {
		return 0, err
	}
	total, found := 0, false
	for _, kv := range strings.Split(stats, ";") {
		name, value, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "storage-engine.stripe[") &&
			(strings.HasSuffix(name, "].writes") || strings.HasSuffix(name, "].partial_writes")) {
			v, err := strconv.Atoi(value)
			if err != nil {
				return 0, fmt.Errorf("asd on %s: %s=%q", n.Addr(), name, value)
			}
			total, found = total+v, true
		}
	}
	if !found {
		return 0, fmt.Errorf("asd on %s: no flush counters in namespace/%s", n.Addr(), ns)
	}
	return total, nil
}

// WaitLog waits until the node's current run has logged a line matching re.
func (n *Node) WaitLog(re *regexp.Regexp, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !re.MatchString(n.Log()) {
		if time.Now().After(deadline) {
			return fmt.Errorf("asd on %s: nothing matching %q logged within %v; its log ends:\n%s", n.Addr(), re, timeout, tail(n.Log(), 20))
		}
		time.Sleep(50 * time.Millisecond) // polling the log file, within the deadline
	}
	return nil
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}

// freePorts asks the kernel for n free loopback ports (held together so they differ).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// nodeConfig rewrites the shipped configuration for one test node: its directory for work,
// data and UDFs, loopback addresses, its three ports (service, fabric, heartbeat), the mesh
// seeds, and a test-sized filesize. Everything else (namespaces, replication factor, TTL
// settings, flush-max-ms) stays as shipped.
func nodeConfig(conf, dir string, ports, seeds []int, fileSize string) string {
	if fileSize == "" {
		fileSize = "256M"
	}
	var out strings.Builder
	var stack []string
	in := func(path ...string) bool {
		return len(stack) == len(path) && strings.Join(stack, "/") == strings.Join(path, "/")
	}
	sc := bufio.NewScanner(strings.NewReader(conf))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(strings.SplitN(line, "#", 2)[0])
		switch {
		case len(f) == 0:
		case f[len(f)-1] == "{":
			stack = append(stack, f[0])
			out.WriteString(line + "\n")
			switch {
			case in("service"):
				fmt.Fprintf(&out, "\twork-directory %s\n\tpidfile %s\n", dir, filepath.Join(dir, "asd.pid"))
			case in("network", "fabric"):
				out.WriteString("\t\taddress 127.0.0.1\n")
			case in("network", "heartbeat"):
				for _, p := range seeds {
					if p != ports[2] {
						fmt.Fprintf(&out, "\t\tmesh-seed-address-port 127.0.0.1 %d\n", p)
					}
				}
			}
			continue
		case f[0] == "}":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case f[0] == "address" && (in("network", "service") || in("network", "heartbeat")):
			line = "\t\taddress 127.0.0.1"
		case f[0] == "port" && in("network", "service"):
			line = fmt.Sprintf("\t\tport %d", ports[0])
		case f[0] == "port" && in("network", "fabric"):
			line = fmt.Sprintf("\t\tport %d", ports[1])
		case f[0] == "port" && in("network", "heartbeat"):
			line = fmt.Sprintf("\t\tport %d", ports[2])
		case f[0] == "file" && len(stack) == 2 && stack[0] == "namespace":
			line = "\t\tfile " + filepath.Join(dir, "data", filepath.Base(f[1]))
		case f[0] == "filesize" && len(stack) == 2 && stack[0] == "namespace":
			line = "\t\tfilesize " + fileSize
		}
		out.WriteString(line + "\n")
	}
	fmt.Fprintf(&out, "mod-lua {\n\tuser-path %s\n}\n", filepath.Join(dir, "usr", "udf", "lua"))
	return out.String()
}
