package main

import (
	"slices"
	"sync"
	"time"
)

// latencies collects samples from many goroutines; percentiles sort them once at the end. Runs
// here produce at most a few million samples, so keeping them all is cheaper and exact compared
// with a histogram.
type latencies struct {
	mu      sync.Mutex
	samples []time.Duration
	sorted  bool
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.samples = append(l.samples, d)
	l.sorted = false
	l.mu.Unlock()
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.samples)
}

// percentile is the q-quantile (0 ≤ q ≤ 1) by the nearest-rank method, or 0 without samples.
func (l *latencies) percentile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.samples) == 0 {
		return 0
	}
	if !l.sorted {
		slices.Sort(l.samples)
		l.sorted = true
	}
	i := int(q*float64(len(l.samples))+0.5) - 1
	return l.samples[min(max(i, 0), len(l.samples)-1)]
}

// addTo adds p50, p95, p99 and max to a section, in milliseconds.
func (l *latencies) addTo(s *Section, what string) {
	s.add(what+" samples", float64(l.count()), "")
	for _, p := range []struct {
		name string
		q    float64
	}{{"p50", 0.50}, {"p95", 0.95}, {"p99", 0.99}, {"max", 1}} {
		s.add(what+" "+p.name, ms(l.percentile(p.q)), "ms")
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// perSecond is n events over d as a rate.
func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// ratio is a/b, or 0 when b is 0, so that a failed reference does not print Inf.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
