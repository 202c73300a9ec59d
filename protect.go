package main

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"
)

// Protect runs fn until it returns or ctx ends. A panic in fn is recovered, logged at error
// level with its stack, and fn is started again after a back-off that doubles (from 100 ms to
// 30 s) while panics keep coming and resets once fn has run for a minute without one.
func Protect(ctx context.Context, name string, fn func(ctx context.Context)) {
	backoff := protectMinBackoff
	for {
		start := time.Now()
		if !runRecovered(ctx, name, fn) {
			return // returned normally
		}
		if time.Since(start) > time.Minute {
			backoff = protectMinBackoff
		}
		slog.Info("restarting after panic", "goroutine", name, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, protectMaxBackoff)
	}
}

const (
	protectMinBackoff = 100 * time.Millisecond
	protectMaxBackoff = 30 * time.Second
)

// runRecovered runs fn and reports whether it panicked.
func runRecovered(ctx context.Context, name string, fn func(ctx context.Context)) (panicked bool) {
	defer func() {
		if r := recover(); r != nil {
			panicked = true
			logPanic(name, r)
		}
	}()
	fn(ctx)
	return false
}

// logPanic logs a recovered panic with the stack of the goroutine that panicked.
func logPanic(where string, r any) {
	slog.Error("panic recovered", "in", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}
