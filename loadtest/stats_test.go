package main

import (
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	var l latencies
	for i := 100; i >= 1; i-- {
		l.add(time.Duration(i) * time.Millisecond)
	}
	for q, want := range map[float64]time.Duration{0.5: 50, 0.95: 95, 0.99: 99, 1: 100, 0: 1} {
		if got := l.percentile(q); got != want*time.Millisecond {
			t.Errorf("p%v = %v, want %v", q*100, got, want*time.Millisecond)
		}
	}
	var empty latencies
	if empty.percentile(0.99) != 0 {
		t.Error("an empty percentile is not 0")
	}
}

func TestContentRoundTrip(t *testing.T) {
	at := time.Unix(1700000000, 123456789)
	c := makeContent(17, 4242, at, 64)
	if len(c) != 64 {
		t.Errorf("content is %d bytes, want 64", len(c))
	}
	s, seq, sent, ok := parseContent(c)
	if !ok || s != 17 || seq != 4242 || !sent.Equal(at) {
		t.Errorf("parseContent(%q) = %d %d %v %v", c, s, seq, sent, ok)
	}
	for _, bad := range []string{"hello", "lt x 1 2 ", "lt 1 2"} {
		if _, _, _, ok := parseContent(bad); ok {
			t.Errorf("parseContent(%q) accepted it", bad)
		}
	}
}
