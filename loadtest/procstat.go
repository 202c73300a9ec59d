package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times; it is 100 on every Linux we run on, and
// reading it properly (sysconf) would need cgo.
const clockTicks = 100

// readRSS is a process's resident set in bytes, from /proc/<pid>/status.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading RSS of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parsing VmRSS of %d: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS for %d", pid)
}

// readCPU is a process's user+system CPU time so far, from /proc/<pid>/stat.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("reading CPU of %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces; the fields after its ')' are fixed.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, _ := strconv.ParseInt(f[12], 10, 64) // field 15
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// postgresCPU is the CPU time so far of the PostgreSQL processes serving database dbname (their
// process title names it) plus the shared WAL writer, checkpointer and background writer. Other
// work on the same cluster is left out, as far as the titles allow.
func postgresCPU(dbname string) time.Duration {
	var total time.Duration
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		title, err := os.ReadFile(d + "/cmdline")
		if err != nil || !strings.HasPrefix(string(title), "postgres: ") {
			continue
		}
		t := string(title)
		shared := strings.Contains(t, "walwriter") || strings.Contains(t, "checkpointer") ||
			strings.Contains(t, "background writer")
		if !shared && (dbname == "" || !strings.Contains(t, " "+dbname+" ")) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(d))
		if cpu, err := readCPU(pid); err == nil {
			total += cpu
		}
	}
	return total
}

// machineCPU is the busy and total CPU time of the whole machine so far, from /proc/stat.
func machineCPU() (busy, total time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		d := time.Duration(n) * time.Second / clockTicks
		if i >= 8 { // guest times are already counted in user
			break
		}
		total += d
		if i != 3 && i != 4 { // idle, iowait
			busy += d
		}
	}
	return busy, total
}

// cpuWatch measures the CPU used by the server, its PostgreSQL backends, this tool and the whole
// machine over a phase, so that the report shows who was busy (the machine may be shared). A
// phase may come in parts: pause and resume add up the parts.
type cpuWatch struct {
	pid, self                    int
	dbname                       string
	start                        time.Time
	srv, pg, tool, qs, busy, all time.Duration // at the start of the current part
	paused                       bool
	total                        cpuTotals // of the parts before
}

type cpuTotals struct{ wall, srv, pg, tool, qs, busy, all time.Duration }

// quickStorePID is the process of a real Aerospike node the tool started (-quickstore asd), 0
// otherwise; its CPU is reported beside PostgreSQL's.
var quickStorePID int

func startCPUWatch(pid int, dbname string) *cpuWatch {
	w := &cpuWatch{pid: pid, self: os.Getpid(), dbname: dbname}
	w.resume()
	return w
}

// resume starts a part.
func (w *cpuWatch) resume() {
	w.start = time.Now()
	w.srv, w.pg, w.tool, w.qs = w.sample()
	w.busy, w.all = machineCPU()
	w.paused = false
}

// pause ends a part, adding it to the totals.
func (w *cpuWatch) pause() {
	if w.paused {
		return
	}
	srv, pg, tool, qs := w.sample()
	busy, all := machineCPU()
	w.total.wall += time.Since(w.start)
	w.total.srv += srv - w.srv
	w.total.pg += pg - w.pg
	w.total.tool += tool - w.tool
	w.total.qs += qs - w.qs
	w.total.busy += busy - w.busy
	w.total.all += all - w.all
	w.paused = true
}

func (w *cpuWatch) sample() (srv, pg, tool, qs time.Duration) {
	if w.pid > 0 {
		srv, _ = readCPU(w.pid)
	}
	if quickStorePID > 0 {
		qs, _ = readCPU(quickStorePID)
	}
	tool, _ = readCPU(w.self)
	return srv, postgresCPU(w.dbname), tool, qs
}

// report adds the CPU each party used during the phase (all its parts), in percent of one core,
// and returns the server's share in cores (0 when its process is not known).
func (w *cpuWatch) report(s *Section) float64 {
	w.pause()
	t := w.total
	wall := t.wall.Seconds()
	pct := func(d time.Duration) float64 { return 100 * d.Seconds() / wall }
	if w.pid > 0 {
		s.add("server CPU", pct(t.srv), "% of a core")
	}
	s.add("postgres CPU (this database's backends + WAL writer, checkpointer)", pct(t.pg), "% of a core")
	if quickStorePID > 0 {
		s.add("aerospike CPU (asd)", pct(t.qs), "% of a core")
	}
	s.add("loadtest CPU", pct(t.tool), "% of a core")
	if t.all > 0 {
		s.add("machine CPU busy", 100*float64(t.busy)/float64(t.all), "% of all cores")
		// /proc/stat counts every core: its busy time over the wall time is in cores.
		ours := t.srv + t.pg + t.tool + t.qs
		s.add("everything else (other users' work, unattributed kernel time)", max(pct(t.busy-ours), 0), "% of a core")
	}
	return t.srv.Seconds() / wall
}

// readThreads is a process's OS thread count, from /proc/<pid>/status.
func readThreads(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("reading threads of %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no Threads for %d", pid)
}
