package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // the echo server serves it; see runEchoServer
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// profiler saves the started server's pprof profiles of a measured phase (with -pprof).
type profiler struct {
	addr, dir string
	done      chan error
}

// startCPUProfile begins a CPU profile of the next d on the server; wait returns its file's
// path. Without -pprof it does nothing.
func (t *target) startCPUProfile(ctx context.Context, d time.Duration, name string) *profiler {
	if t.pprofAddr == "" {
		return nil
	}
	p := &profiler{addr: t.pprofAddr, dir: t.profDir, done: make(chan error, 1)}
	secs := max(int(d.Seconds()), 1)
	go func() {
		p.done <- p.fetch(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), name+".cpu.pprof")
	}()
	return p
}

// wait waits for the profile and tells where it is (nil-safe).
func (p *profiler) wait(rep *Report) {
	if p == nil {
		return
	}
	if err := <-p.done; err != nil {
		rep.note("CPU profile failed: %v", err)
	}
}

// heapProfile saves the server's goroutines (as text, grouped by stack) and its heap profile
// now (with -pprof): together they show what each held session costs.
func (t *target) heapProfile(ctx context.Context, name string, rep *Report) {
	if t.pprofAddr == "" {
		return
	}
	p := &profiler{addr: t.pprofAddr, dir: t.profDir}
	if err := p.fetch(ctx, "/debug/pprof/goroutine?debug=1", name+".goroutines.txt"); err != nil {
		rep.note("goroutine profile failed: %v", err)
	}
	if err := p.fetch(ctx, "/debug/pprof/heap?gc=1", name+".heap.pprof"); err != nil {
		rep.note("heap profile failed: %v", err)
	}
}

func (p *profiler) fetch(ctx context.Context, path, file string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.addr+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("fetching %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetching %s: %s", path, resp.Status)
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", p.dir, err)
	}
	out := filepath.Join(p.dir, file)
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("creating %s: %w", out, err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		return fmt.Errorf("saving %s: %w", out, err)
	}
	logf("saved %s (go tool pprof -top %s)", out, out)
	return nil
}

// memStats is the part of a Go server's runtime.MemStats that splits its memory per session.
type memStats struct {
	heapInuse, stackInuse, sys int64
}

// readMemStats reads a Go process's MemStats from its pprof endpoint (heap?debug=1 ends with
// them as "# Name = value" lines); ok is false without an endpoint.
func readMemStats(ctx context.Context, pprofAddr string) (m memStats, ok bool) {
	if pprofAddr == "" {
		return m, false
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+pprofAddr+"/debug/pprof/heap?debug=1", nil)
	if err != nil {
		return m, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, false
	}
	defer resp.Body.Close()
	fields := map[string]*int64{"HeapInuse": &m.heapInuse, "Stack": &m.stackInuse, "Sys": &m.sys}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		name, value, found := strings.Cut(strings.TrimPrefix(sc.Text(), "# "), " = ")
		if dst := fields[name]; found && dst != nil {
			// "Stack = inuse / sys": the first number is what the stacks use.
			*dst, _ = strconv.ParseInt(strings.Fields(value)[0], 10, 64)
		}
	}
	return m, sc.Err() == nil
}
