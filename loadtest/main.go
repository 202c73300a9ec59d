// Command loadtest measures a running pingedchat (or one it starts itself) against references
// measured in the same run: raw PostgreSQL inserts and queries, raw NATS delivery, a bare
// sockjs-go server's memory, bcrypt's rate and bare CREATE TABLE.
//
//	go run ./loadtest -start -mode messages -users 30 -k 3 -rate 1000 -duration 20s
//	go run ./loadtest -url ws://127.0.0.1:8080/ws/websocket -postgres dbname=pingedchat -pid 1234 -mode history
//
// Modes: messages, idle, logins, history, convos, storm. See BENCHMARKS.md for the figures and targets.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Options are the command line.
type Options struct {
	Mode     string
	URL      string
	Start    bool
	Postgres string // the database the server uses, for modes that fill or inspect it
	PID      int
	Users    int
	K        int
	Rate     float64
	Window   int
	Duration time.Duration
	Size     int
	Sessions int
	Clients  int
	Rows     int
	Convos   int
	JSON     bool
	Pprof    string // with -start: where the built server serves net/http/pprof
	ProfDir  string
	Keep     bool
	Password string
	Overlay  string // with -start: a go build -overlay file, to measure a candidate change
	Quick    string // with -start: postgres, aerotest (an Aerospike-protocol server in this tool), asd (a real node the tool starts) or aerospike://HOST:PORT
}

func parseOptions(args []string) (Options, error) {
	var o Options
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.StringVar(&o.Mode, "mode", "messages", "messages, idle, logins, history, convos or storm")
	fs.StringVar(&o.URL, "url", "", "websocket URL of a running server, e.g. ws://127.0.0.1:8080/ws/websocket (start it with -command-rate 100000 -command-burst 100000)")
	fs.BoolVar(&o.Start, "start", false, "build and start a pingedchat on a fresh database instead of -url")
	fs.StringVar(&o.Postgres, "postgres", "", "with -url: the server's database (history fills it, convos inspects it, messages and convos put their reference tables there)")
	fs.IntVar(&o.PID, "pid", 0, "with -url: the server's process id, for RSS and CPU")
	fs.IntVar(&o.Users, "users", 0, "simulated users (messages: senders and receivers; 0 = the mode's default)")
	fs.IntVar(&o.K, "k", 3, "members per conversation (messages, convos)")
	fs.Float64Var(&o.Rate, "rate", 0, "messages: target total messages per second; 0 = as fast as acknowledgements allow")
	fs.IntVar(&o.Window, "window", 4, "messages: outstanding (unacknowledged) sends allowed per sender")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "how long each measured phase runs")
	fs.IntVar(&o.Size, "size", 64, "messages: content length in bytes")
	fs.IntVar(&o.Sessions, "sessions", 2000, "idle: sessions to hold; storm: sessions that reconnect")
	fs.IntVar(&o.Clients, "clients", 8, "history, logins, convos: concurrent clients")
	fs.IntVar(&o.Rows, "rows", 100_000, "history: messages in the conversation")
	fs.IntVar(&o.Convos, "convos", 1000, "convos: conversations to create")
	fs.BoolVar(&o.JSON, "json", false, "print the report as JSON")
	fs.StringVar(&o.Pprof, "pprof", "", "with -start: serve net/http/pprof from the built server on this address (e.g. 127.0.0.1:6061) and save profiles of the measured phase")
	fs.StringVar(&o.ProfDir, "profdir", "/tmp/loadtest-prof", "where -pprof saves profiles")
	fs.BoolVar(&o.Keep, "keep", false, "with -start: keep the database afterwards")
	fs.StringVar(&o.Overlay, "overlay", "", "with -start: build the server with this go build -overlay JSON file, to measure a candidate change without editing the tree")
	fs.StringVar(&o.Quick, "quickstore", "postgres", "with -start: where the server keeps users and conversation metadata: postgres; aerotest (the Aerospike-protocol test server internal/aerotest, run inside this tool); asd (a real Aerospike CE node the tool starts from aerospike.conf, internal/asdnode); or aerospike://HOST:PORT (a running Aerospike)")
	fs.StringVar(&o.Password, "password", "loadtest password 1", "password of the users the tool creates")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	return o, o.check()
}

func (o *Options) check() error {
	switch o.Mode {
	case "messages", "idle", "logins", "history", "convos", "storm":
	default:
		return fmt.Errorf("unknown -mode %q", o.Mode)
	}
	if o.Start == (o.URL != "") {
		return errors.New("give exactly one of -start and -url")
	}
	if (o.Pprof != "" || o.Overlay != "" || o.Quick != "postgres") && !o.Start {
		return errors.New("-pprof, -overlay and -quickstore need -start (they change how the server is built or run)")
	}
	if o.Quick != "postgres" && o.Quick != "aerotest" && o.Quick != "asd" && !strings.HasPrefix(o.Quick, "aerospike://") {
		return fmt.Errorf("unknown -quickstore %q", o.Quick)
	}
	if o.K < 2 {
		return errors.New("-k must be at least 2")
	}
	if o.Window < 1 || o.Clients < 1 || o.Duration <= 0 {
		return errors.New("-window, -clients and -duration must be positive")
	}
	if o.Size < 40 {
		o.Size = 40 // room for the tracking header
	}
	return nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == echoCommand {
		if err := runEchoServer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "echoserver:", err)
			os.Exit(1)
		}
		return
	}
	opts, err := parseOptions(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, opts)
	if rep != nil {
		rep.print(os.Stdout, opts.JSON)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// run sets up the target server, runs the mode against it and tears the server down.
func run(ctx context.Context, o Options) (*Report, error) {
	if n, err := raiseFileLimit(); err != nil {
		logf("could not raise the open-file limit (%v); it is %d", err, n)
	}
	tgt, err := openTarget(ctx, o)
	if err != nil {
		return nil, err
	}
	defer tgt.close()
	rep := newReport(o, tgt)
	modes := map[string]func(context.Context, *target, Options, *Report) error{
		"messages": runMessages,
		"idle":     runIdle,
		"logins":   runLogins,
		"history":  runHistory,
		"convos":   runConvos,
		"storm":    runStorm,
	}
	err = modes[o.Mode](ctx, tgt, o, rep)
	rep.finish()
	return rep, err
}

// raiseFileLimit lifts the soft open-file limit to the hard one: every session is a socket, and
// a started server inherits the raised limit.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("reading RLIMIT_NOFILE: %w", err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return lim.Cur, fmt.Errorf("raising RLIMIT_NOFILE: %w", err)
	}
	return lim.Cur, nil
}

// logf reports progress on stderr, so that stdout holds only the report.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}
