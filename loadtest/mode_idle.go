package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/errgroup"
)

// The idle mode: hold N logged-in, idle sessions and report the server's memory per session,
// against a bare sockjs-go echo server holding as many sessions, measured the same way.

// idleUsers is how many accounts the idle sessions share: creating an account costs a bcrypt
// hash, while a resumed session costs the server what any session costs (its own subscription,
// goroutines and buffers), so a few accounts with many sessions each measure the same thing.
const idleUsers = 20

// settle is how long the sessions sit idle before the RSS is read, so that start-up garbage and
// in-flight work have settled.
const settle = 3 * time.Second

func runIdle(ctx context.Context, tgt *target, o Options, rep *Report) error {
	if tgt.pid <= 0 {
		return errors.New("the idle mode reads the server's RSS: use -start, or -pid with -url")
	}
	users, err := createUsers(ctx, tgt.url, min(idleUsers, o.Sessions), "lti", o.Password)
	if err != nil {
		return err
	}
	s := rep.section(fmt.Sprintf("pingedchat: %d idle logged-in sessions (%d accounts)", o.Sessions, len(users)))
	perSession, err := measureSessions(ctx, s, tgt.pid, tgt.pprofAddr, o.Sessions, func(ctx context.Context, n int) ([]*wsClient, error) {
		return openSessions(ctx, tgt.url, users, n, 32, nil)
	}, func() { tgt.heapProfile(ctx, "idle", rep) })
	if err != nil {
		return err
	}
	echoPer, err := referenceEcho(ctx, o.Sessions, rep)
	if err != nil {
		return err
	}
	c := rep.section("pingedchat vs reference")
	r := ratio(perSession, echoPer)
	c.add("memory per session ÷ bare sockjs-go", r, "×")
	rep.atMost("idle session memory ÷ bare sockjs-go", r, 1.2, "×")
	if o.Sessions != 10_000 {
		rep.note("the idle target is defined at 10,000 sessions; this run held %d", o.Sessions)
	}
	return nil
}

// measureSessions reads pid's RSS, opens n sessions with open, lets them sit idle, reads the RSS
// again, runs held (if any) while they are still open, and closes them; it returns the RSS
// growth per session in bytes.
func measureSessions(ctx context.Context, s *Section, pid int, pprofAddr string, n int, open func(context.Context, int) ([]*wsClient, error), held func()) (float64, error) {
	time.Sleep(time.Second)
	before, err := readRSS(pid)
	if err != nil {
		return 0, err
	}
	msBefore, haveMS := readMemStats(ctx, pprofAddr)
	start := time.Now()
	clients, err := open(ctx, n)
	if err != nil {
		return 0, err
	}
	defer closeAll(clients)
	opened := time.Since(start)
	logf("opened %d sessions in %s; idling %s", n, opened.Round(time.Millisecond), settle)
	time.Sleep(settle)
	after, err := readRSS(pid)
	if err != nil {
		return 0, err
	}
	per := float64(after-before) / float64(n)
	s.add("sessions opened", float64(n), "")
	s.add("open rate", perSecond(int64(n), opened), "sessions/s")
	s.add("RSS before", float64(before)/(1<<20), "MiB")
	s.add("RSS with the sessions", float64(after)/(1<<20), "MiB")
	s.add("RSS per session", per/1024, "KiB")
	if threads, err := readThreads(pid); err == nil {
		s.add("OS threads", float64(threads), "")
	}
	if msAfter, ok := readMemStats(ctx, pprofAddr); ok && haveMS {
		// Read after the RSS: fetching the statistics allocates a little.
		perKiB := func(a, b int64) float64 { return float64(a-b) / float64(n) / 1024 }
		s.add("Go heap in use per session", perKiB(msAfter.heapInuse, msBefore.heapInuse), "KiB")
		s.add("goroutine stacks per session", perKiB(msAfter.stackInuse, msBefore.stackInuse), "KiB")
		s.add("Go runtime Sys per session", perKiB(msAfter.sys, msBefore.sys), "KiB")
	}
	if held != nil {
		held()
	}
	return per, nil
}

// referenceEcho measures a bare sockjs-go echo server holding n sessions; it returns the RSS
// growth per session in bytes.
func referenceEcho(ctx context.Context, n int, rep *Report) (float64, error) {
	e, err := startEcho(ctx)
	if err != nil {
		return 0, err
	}
	defer e.stop()
	s := rep.section(fmt.Sprintf("reference: bare sockjs-go echo server (RawWebsocket), %d sessions", n))
	return measureSessions(ctx, s, e.pid(), e.addr, n, func(ctx context.Context, n int) ([]*wsClient, error) {
		return openEchoSessions(ctx, e.url, n)
	}, nil)
}

// openEchoSessions opens n sessions and makes each round-trip one frame, so that each session is
// fully set up on the server, as a login does on pingedchat.
func openEchoSessions(ctx context.Context, url string, n int) ([]*wsClient, error) {
	clients := make([]*wsClient, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(32)
	for i := range clients {
		g.Go(func() error {
			c, err := dial(gctx, url, nil)
			if err != nil {
				return err
			}
			clients[i] = c
			_, err = c.call(gctx, map[string]any{"cmd": "ping"})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		closeAll(clients)
		return nil, err
	}
	return clients, nil
}
