package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is what a run measured: figures grouped in sections, and the targets judged from them.
type Report struct {
	Mode     string         `json:"mode"`
	Started  time.Time      `json:"started"`
	Elapsed  string         `json:"elapsed"`
	Machine  Machine        `json:"machine"`
	Options  map[string]any `json:"options"`
	Sections []*Section     `json:"sections"`
	Targets  []Target       `json:"targets"`
	Notes    []string       `json:"notes,omitempty"`
}

// Section is one group of figures, e.g. pingedchat's or a reference's.
type Section struct {
	Name    string   `json:"name"`
	Figures []Figure `json:"figures"`
}

// Figure is one measured value.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Target is one goal of BENCHMARKS.md with the value measured against it.
type Target struct {
	Name     string  `json:"name"`
	Goal     string  `json:"goal"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
}

// Machine describes where the run happened, since every figure depends on it.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemTotal  string `json:"mem_total"`
	GoVersion string `json:"go_version"`
	Postgres  string `json:"postgres,omitempty"`
	LoadAvg   string `json:"load_avg_at_start"`
}

func newReport(o Options, tgt *target) *Report {
	return &Report{
		Mode:    o.Mode,
		Started: time.Now(),
		Machine: Machine{
			CPUs: runtime.NumCPU(), CPUModel: cpuModel(), MemTotal: memTotal(),
			GoVersion: runtime.Version(), Postgres: tgt.pgVersion, LoadAvg: loadAvg(),
		},
		Options: optionsMap(o),
	}
}

// optionsMap keeps the options that shape the mode's figures.
func optionsMap(o Options) map[string]any {
	m := map[string]any{"duration": o.Duration.String(), "start": o.Start}
	if o.Overlay != "" {
		m["overlay"] = o.Overlay
	}
	switch o.Mode {
	case "messages":
		m["users"], m["k"], m["rate"], m["window"], m["size"] = o.Users, o.K, o.Rate, o.Window, o.Size
	case "idle":
		m["sessions"] = o.Sessions
	case "logins":
		m["clients"] = o.Clients
	case "history":
		m["clients"], m["rows"] = o.Clients, o.Rows
	case "convos":
		m["clients"], m["convos"], m["k"] = o.Clients, o.Convos, o.K
	}
	return m
}

func (r *Report) section(name string) *Section {
	s := &Section{Name: name}
	r.Sections = append(r.Sections, s)
	return s
}

func (s *Section) add(name string, value float64, unit string) {
	s.Figures = append(s.Figures, Figure{Name: name, Value: value, Unit: unit})
}

// atLeast records a target met when measured ≥ goal.
func (r *Report) atLeast(name string, measured, goal float64, unit string) {
	r.Targets = append(r.Targets, Target{Name: name, Goal: "≥ " + trimFloat(goal), Measured: measured, Unit: unit, Met: measured >= goal})
}

// atMost records a target met when measured ≤ goal.
func (r *Report) atMost(name string, measured, goal float64, unit string) {
	r.Targets = append(r.Targets, Target{Name: name, Goal: "≤ " + trimFloat(goal), Measured: measured, Unit: unit, Met: measured <= goal})
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *Report) finish() {
	r.Elapsed = time.Since(r.Started).Round(time.Millisecond).String()
}

func (r *Report) print(w io.Writer, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
		return
	}
	m := r.Machine
	fmt.Fprintf(w, "pingedchat loadtest — mode %s — %s, took %s\n", r.Mode, r.Started.Format(time.RFC3339), r.Elapsed)
	fmt.Fprintf(w, "machine: %d CPUs (%s), %s RAM, %s, %s; load average at start %s\n",
		m.CPUs, m.CPUModel, m.MemTotal, m.GoVersion, m.Postgres, m.LoadAvg)
	fmt.Fprintf(w, "options: %v\n", r.Options)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range r.Sections {
		fmt.Fprintf(tw, "\n[%s]\n", s.Name)
		for _, f := range s.Figures {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", f.Name, trimFloat(f.Value), f.Unit)
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintf(tw, "\n[targets]\n")
		for _, t := range r.Targets {
			verdict := "MISSED"
			if t.Met {
				verdict = "met"
			}
			fmt.Fprintf(tw, "  %s\t%s %s\t(goal %s)\t%s\n", t.Name, trimFloat(t.Measured), t.Unit, t.Goal, verdict)
		}
	}
	_ = tw.Flush()
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// trimFloat prints a figure with as many decimals as its size deserves.
func trimFloat(v float64) string {
	switch a := max(v, -v); {
	case a == 0 || a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 0.1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.4f", v)
	}
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb float64
			_, _ = fmt.Sscan(strings.TrimSpace(v), &kb)
			return fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	return "unknown"
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
