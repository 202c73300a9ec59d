package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"time"

	"github.com/igm/sockjs-go/v3/sockjs"
)

// echoCommand runs a bare sockjs-go echo server: the idle mode's memory reference. It runs as a
// separate process (this binary, re-executed) so that its RSS is measured exactly like the
// server's.
const echoCommand = "echoserver"

func runEchoServer(args []string) error {
	fs := flag.NewFlagSet(echoCommand, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "address to serve on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// The same transport options as the server's routes, so that only the chat logic differs.
	opts := sockjs.DefaultOptions
	opts.RawWebsocket = true
	opts.WebsocketWriteTimeout = 10 * time.Second
	opts.CheckOrigin = func(*http.Request) bool { return true }
	h := sockjs.NewHandler("/ws", opts, func(s sockjs.Session) {
		for {
			msg, err := s.Recv()
			if err != nil {
				return
			}
			if err := s.Send(msg); err != nil {
				return
			}
		}
	})
	// DefaultServeMux holds net/http/pprof (imported in profile.go): the idle mode reads the
	// echo server's memory statistics from it, as it does the server's with -pprof.
	mux := http.DefaultServeMux
	mux.Handle("/ws/", h)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	err := srv.ListenAndServe()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// echoProcess is a running echo server.
type echoProcess struct {
	cmd    *exec.Cmd
	url    string
	addr   string
	exited chan struct{}
}

// startEcho runs this binary's echo server on a free loopback port.
func startEcho(ctx context.Context) (*echoProcess, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this binary: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	e := &echoProcess{cmd: exec.Command(self, echoCommand, "-addr", addr), url: "ws://" + addr + "/ws/websocket", addr: addr, exited: make(chan struct{})}
	e.cmd.Stderr = os.Stderr
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the echo server: %w", err)
	}
	go func() { _ = e.cmd.Wait(); close(e.exited) }()
	t := &target{exited: e.exited}
	if err := t.waitReady(ctx, addr); err != nil {
		e.stop()
		return nil, fmt.Errorf("echo server: %w", err)
	}
	return e, nil
}

func (e *echoProcess) pid() int { return e.cmd.Process.Pid }

func (e *echoProcess) stop() {
	_ = e.cmd.Process.Kill()
	<-e.exited
}
