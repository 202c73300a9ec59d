package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"pingedchat/internal/aerotest"
	"pingedchat/internal/asdnode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// target is the pingedchat under test: where to connect, its process (when local) and its
// database (when known).
type target struct {
	url       string
	pid       int
	pgConn    string // connection string of the server's database; empty if unknown
	dbname    string
	pgVersion string
	pprofAddr string // with -pprof, the started server's pprof listener
	profDir   string

	pool    *pgxpool.Pool
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	binPath string
	dropDB  bool

	quickArgs []string         // the server's -quickstore, when not its default
	aero      *aerotest.Server // with -quickstore aerotest
	asd       *asdnode.Cluster // with -quickstore asd
}

// defaultServerDB is the server's own default -postgres, assumed with -url when -postgres is not
// given.
const defaultServerDB = "dbname=pingedchat"

func openTarget(ctx context.Context, o Options) (*target, error) {
	t := &target{url: o.URL, pid: o.PID, pgConn: o.Postgres, profDir: o.ProfDir}
	if o.Start {
		if err := t.start(ctx, o); err != nil {
			t.close()
			return nil, err
		}
	} else if t.pgConn == "" {
		t.pgConn = defaultServerDB
		logf("no -postgres: assuming the server uses %q (its default)", defaultServerDB)
	}
	cfg, err := pgx.ParseConfig(t.pgConn)
	if err != nil {
		t.close()
		return nil, fmt.Errorf("parsing -postgres %q: %w", t.pgConn, err)
	}
	t.dbname = cfg.Database
	if err := t.connectPool(ctx); err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// connectPool opens the tool's own pool on the server's database, for fills and references.
func (t *target) connectPool(ctx context.Context) error {
	pcfg, err := pgxpool.ParseConfig(t.pgConn)
	if err != nil {
		return fmt.Errorf("parsing %q: %w", t.pgConn, err)
	}
	pcfg.MaxConns = 16
	if t.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return fmt.Errorf("connecting to %q: %w", t.pgConn, err)
	}
	if err := t.pool.QueryRow(ctx, "SHOW server_version").Scan(&t.pgVersion); err != nil {
		return fmt.Errorf("connecting to %q (is PostgreSQL running? ./add_deps.sh): %w", t.pgConn, err)
	}
	t.pgVersion = "PostgreSQL " + strings.Fields(t.pgVersion)[0]
	return nil
}

// start creates a fresh database, builds the server from the module this tool belongs to and
// runs it on a free loopback port with the rate limit lifted.
func (t *target) start(ctx context.Context, o Options) error {
	t.dbname = fmt.Sprintf("loadtest_%d_%x", os.Getpid(), rand.Uint32()&0xffff)
	if err := adminExec(ctx, "CREATE DATABASE "+t.dbname); err != nil {
		return err
	}
	t.dropDB = !o.Keep
	t.pgConn = "dbname=" + t.dbname
	if err := t.build(ctx, o.Pprof != "", o.Overlay); err != nil {
		return err
	}
	switch {
	case o.Quick == "aerotest":
		if err := t.startAerotest(); err != nil {
			return err
		}
	case o.Quick == "asd":
		if err := t.startAsd(); err != nil {
			return err
		}
	case strings.HasPrefix(o.Quick, "aerospike://"):
		t.quickArgs = []string{"-quickstore", o.Quick}
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	if err := t.launch(addr, o.Pprof); err != nil {
		return err
	}
	t.url = "ws://" + addr + "/ws/websocket"
	return t.waitReady(ctx, addr)
}

// startAerotest runs the Aerospike-protocol test server in this process, with the namespaces
// aerospike.conf has, for the server's quick store. It lives as long as the tool, so a storm's
// restarted server finds its records. Its CPU counts as the tool's.
func (t *target) startAerotest() error {
	srv, err := aerotest.Start(aerotest.Config{Namespaces: map[string]aerotest.NamespaceConfig{
		"users":  {NsupPeriod: time.Second},
		"convos": {},
	}})
	if err != nil {
		return fmt.Errorf("starting aerotest: %w", err)
	}
	t.aero = srv
	t.quickArgs = []string{"-quickstore", "aerospike://" + srv.Addr()}
	logf("quick store: aerotest on %s (in this process)", srv.Addr())
	return nil
}

// startAsd runs a real Aerospike CE node from the project's aerospike.conf (internal/asdnode;
// the binary from AEROSPIKE_ASD or ../shared/aerospike/asd.gz) for the server's quick store. It
// lives as long as the tool; its CPU is reported as aerospike's.
func (t *target) startAsd() error {
	c, err := asdnode.StartCluster(asdnode.Options{})
	t.asd = c
	if err != nil {
		return fmt.Errorf("starting a real Aerospike node: %w", err)
	}
	quickStorePID = c.Nodes[0].PID()
	t.quickArgs = []string{"-quickstore", c.Spec()}
	logf("quick store: a real Aerospike node on %s (pid %d)", c.Nodes[0].Addr(), quickStorePID)
	return nil
}

// adminExec runs a statement on the maintenance database (CREATE/DROP DATABASE cannot run in
// the database they name).
func adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, "dbname=postgres")
	if err != nil {
		return fmt.Errorf("connecting to PostgreSQL database postgres (run ./add_deps.sh): %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// pprofOverlay is added to the server's package at build time only (go build -overlay), so that
// profiling needs no change to the server's files: it serves net/http/pprof on the address in
// PINGED_LOADTEST_PPROF. The server routes through its own mux, so DefaultServeMux holds only
// pprof.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("PINGED_LOADTEST_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// build compiles the server (the module root of the current directory) into /tmp, with the
// pprof file and the user's overlay added when asked for.
func (t *target) build(ctx context.Context, withPprof bool, userOverlay string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	t.binPath = filepath.Join(os.TempDir(), fmt.Sprintf("loadtest-pingedchat-%d", os.Getpid()))
	args := []string{"build", "-o", t.binPath}
	if withPprof || userOverlay != "" {
		overlay, err := writeOverlay(root, withPprof, userOverlay)
		if err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(overlay))
		args = append(args, "-overlay", overlay)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, ".")...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the server in %s: %w\n%s", root, err, out)
	}
	logf("built the server in %s", time.Since(start).Round(time.Millisecond))
	return nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("finding the pingedchat module (run from its directory): %v", err)
	}
	return filepath.Dir(gomod), nil
}

// writeOverlay writes the overlay description: the user's replacements (if any) plus the pprof
// file (if asked for); it returns the description's path.
func writeOverlay(root string, withPprof bool, userOverlay string) (string, error) {
	var desc struct{ Replace map[string]string }
	if userOverlay != "" {
		b, err := os.ReadFile(userOverlay)
		if err != nil {
			return "", fmt.Errorf("reading -overlay: %w", err)
		}
		if err := json.Unmarshal(b, &desc); err != nil {
			return "", fmt.Errorf("parsing -overlay %s: %w", userOverlay, err)
		}
	}
	if desc.Replace == nil {
		desc.Replace = map[string]string{}
	}
	dir, err := os.MkdirTemp("", "loadtest-overlay")
	if err != nil {
		return "", fmt.Errorf("creating overlay dir: %w", err)
	}
	if withPprof {
		src := filepath.Join(dir, "pprof.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
			return "", fmt.Errorf("writing overlay: %w", err)
		}
		desc.Replace[filepath.Join(root, "loadtest_pprof_overlay.go")] = src
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return "", fmt.Errorf("writing overlay: %w", err)
	}
	path := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("writing overlay: %w", err)
	}
	return path, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// launch runs the built server; its log goes to a file whose path the report names.
func (t *target) launch(addr, pprofAddr string) error {
	t.logPath = t.binPath + ".log"
	logFile, err := os.Create(t.logPath)
	if err != nil {
		return fmt.Errorf("creating server log: %w", err)
	}
	defer logFile.Close()
	t.cmd = exec.Command(t.binPath, "-addr", addr, "-postgres", t.pgConn,
		"-command-rate", "100000", "-command-burst", "100000", "-log-level", "warn",
		// Every simulated user comes from loopback: lift the per-address and per-user limits.
		"-max-conns-per-addr", "0", "-handshakes-per-addr", "0", "-registrations-per-day", "0",
		"-lookups-per-day", "0", "-convos-per-hour", "0", "-max-convos-per-user", "0")
	t.cmd.Args = append(t.cmd.Args, t.quickArgs...)
	t.cmd.Stdout, t.cmd.Stderr = logFile, logFile
	t.cmd.Env = os.Environ()
	if pprofAddr != "" {
		t.cmd.Env = append(t.cmd.Env, "PINGED_LOADTEST_PPROF="+pprofAddr)
		t.pprofAddr = pprofAddr
	}
	if err := t.cmd.Start(); err != nil {
		return fmt.Errorf("starting the server: %w", err)
	}
	t.pid = t.cmd.Process.Pid
	t.exited = make(chan struct{})
	go func() { _ = t.cmd.Wait(); close(t.exited) }()
	logf("started the server (pid %d) on %s, database %s, log %s", t.pid, addr, t.dbname, t.logPath)
	return nil
}

// waitReady waits until the server accepts connections, or fails if it exits first.
func (t *target) waitReady(ctx context.Context, addr string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		select {
		case <-t.exited:
			log, _ := os.ReadFile(t.logPath)
			return fmt.Errorf("the server exited at start-up:\n%s", log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("the server did not listen within 60 s")
}

// close stops a started server gracefully and drops its database.
func (t *target) close() {
	if t.pool != nil {
		t.pool.Close()
	}
	if t.cmd != nil && t.cmd.Process != nil {
		_ = t.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-t.exited:
		case <-time.After(20 * time.Second):
			_ = t.cmd.Process.Kill()
			<-t.exited
		}
	}
	if t.aero != nil {
		t.aero.Close()
	}
	if t.asd != nil {
		t.asd.Close()
	}
	if t.binPath != "" {
		_ = os.Remove(t.binPath)
	}
	if t.dropDB {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := adminExec(ctx, "DROP DATABASE IF EXISTS "+t.dbname+" WITH (FORCE)"); err != nil {
			logf("dropping %s: %v", t.dbname, err)
		}
	}
}

// rss is the server's resident set, or -1 when its process is not known.
func (t *target) rss() int64 {
	if t.pid <= 0 {
		return -1
	}
	n, err := readRSS(t.pid)
	if err != nil {
		return -1
	}
	return n
}
