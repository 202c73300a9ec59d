package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The logins mode: session-token resumes per second and password logins per second, each a new
// connection (a reconnecting client), against bcrypt's own rate at the server's cost.

// serverBcryptCost is bcrypt.DefaultCost, what the server hashes passwords with.
const serverBcryptCost = bcrypt.DefaultCost

func runLogins(ctx context.Context, tgt *target, o Options, rep *Report) error {
	users, err := createUsers(ctx, tgt.url, o.Clients, "ltl", o.Password)
	if err != nil {
		return err
	}
	resumeRate, _ := loginPhase(ctx, tgt, o, rep, "session-token resumes (ValidateUser {username, session})", "resume",
		func(u user) map[string]any {
			return map[string]any{"cmd": "ValidateUser", "username": u.name, "session": u.session}
		}, users)
	passwordRate, serverCores := loginPhase(ctx, tgt, o, rep, "password logins (ValidateUser {username, password})", "password",
		func(u user) map[string]any {
			return map[string]any{"cmd": "ValidateUser", "username": u.name, "password": o.Password}
		}, users)
	bcryptRate, err := referenceBcrypt(ctx, min(o.Duration, 5*time.Second), rep)
	if err != nil {
		return err
	}
	c := rep.section("pingedchat vs reference")
	c.add("password logins ÷ bcrypt compares", ratio(passwordRate, bcryptRate), "×")
	// The machine may be shared: per CPU-second of the server against per CPU-second of the
	// reference tells the server's own overhead apart from CPU it did not get.
	if serverCores > 0 {
		c.add("per server CPU-second ÷ per reference CPU-second",
			ratio(passwordRate/serverCores, bcryptRate/float64(runtime.NumCPU())), "×")
	}
	rep.atLeast("session-token resumes", resumeRate, 2000, "/s")
	rep.atLeast("password logins ÷ bcrypt rate", ratio(passwordRate, bcryptRate), 0.9, "×")
	return nil
}

// loginPhase runs -clients workers that each connect, log in with req(user) and disconnect,
// for -duration; it returns successful logins per second and the server's CPU use in cores.
func loginPhase(ctx context.Context, tgt *target, o Options, rep *Report, title, prof string, req func(user) map[string]any, users []user) (float64, float64) {
	logf("%s: %d clients for %s", title, o.Clients, o.Duration)
	s := rep.section("pingedchat: " + title + fmt.Sprintf(", %d concurrent clients, new connection each", o.Clients))
	watch := startCPUWatch(tgt.pid, tgt.dbname)
	p := tgt.startCPUProfile(ctx, o.Duration, "logins-"+prof)
	ok, errs, lat, elapsed, firstErr := hammer(ctx, o.Clients, o.Duration, func(ctx context.Context, w int) error {
		c, err := dial(ctx, tgt.url, nil)
		if err != nil {
			return err
		}
		defer c.close()
		_, err = c.call(ctx, req(users[w%len(users)]))
		return err
	})
	p.wait(rep)
	rate := perSecond(ok, elapsed)
	s.add("logins", float64(ok), "")
	s.add("errors", float64(errs), "")
	s.add("login rate", rate, "/s")
	lat.addTo(s, "connect+login latency")
	cores := watch.report(s)
	if firstErr != "" {
		rep.note("%s: %d errors, the first: %s", title, errs, firstErr)
	}
	return rate, cores
}

// hammer runs fn from workers goroutines back to back for d and counts and times the calls.
func hammer(ctx context.Context, workers int, d time.Duration, fn func(ctx context.Context, worker int) error) (ok, errs int64, lat *latencies, elapsed time.Duration, firstErr string) {
	var nOK, nErr atomic.Int64
	var first atomic.Value
	lat = new(latencies)
	end := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) && ctx.Err() == nil {
				t0 := time.Now()
				if err := fn(ctx, w); err != nil {
					nErr.Add(1)
					first.CompareAndSwap(nil, err.Error())
					continue
				}
				lat.add(time.Since(t0))
				nOK.Add(1)
			}
		}()
	}
	wg.Wait()
	firstErr, _ = first.Load().(string)
	return nOK.Load(), nErr.Load(), lat, time.Since(start), firstErr
}

// referenceBcrypt measures bcrypt.CompareHashAndPassword at the server's cost in this process,
// one goroutine per CPU (bcrypt is CPU-bound, so that is the machine's rate).
func referenceBcrypt(ctx context.Context, d time.Duration, rep *Report) (float64, error) {
	const password = "loadtest password 1"
	hash, err := bcrypt.GenerateFromPassword([]byte(password), serverBcryptCost)
	if err != nil {
		return 0, fmt.Errorf("hashing: %w", err)
	}
	logf("reference: bcrypt cost %d compares on %d goroutines for %s", serverBcryptCost, runtime.NumCPU(), d)
	ok, _, lat, elapsed, _ := hammer(ctx, runtime.NumCPU(), d, func(context.Context, int) error {
		return bcrypt.CompareHashAndPassword(hash, []byte(password))
	})
	rate := perSecond(ok, elapsed)
	s := rep.section(fmt.Sprintf("reference: bcrypt.CompareHashAndPassword, cost %d, %d goroutines, in-process", serverBcryptCost, runtime.NumCPU()))
	s.add("compares", float64(ok), "")
	s.add("compare rate", rate, "/s")
	s.add("compare p50", ms(lat.percentile(0.5)), "ms")
	return rate, nil
}
