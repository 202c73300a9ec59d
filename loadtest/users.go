package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// user is an account the tool created, with a resume token.
type user struct {
	name    string
	session string
}

// createUsers registers n users over n short-lived sessions. The server hashes each password
// with bcrypt (about 50 ms of CPU at cost 10), so two at a time keep both cores busy without
// queueing behind each other.
func createUsers(ctx context.Context, url string, n int, prefix, password string) ([]user, error) {
	users := make([]user, n)
	run := fmt.Sprintf("%s%x", prefix, rand.Uint32()&0xffffff)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	start := time.Now()
	for i := range users {
		g.Go(func() error {
			name := fmt.Sprintf("%s_%d", run, i)
			c, err := dial(gctx, url, nil)
			if err != nil {
				return err
			}
			defer c.close()
			rep, err := c.call(gctx, map[string]any{"cmd": "CreateUser", "username": name, "password": password})
			if err != nil {
				return fmt.Errorf("creating user %s: %w", name, err)
			}
			users[i] = user{name: name, session: rep.Session}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	logf("created %d users in %s", n, time.Since(start).Round(time.Millisecond))
	return users, nil
}

// resume opens a session logged in as u with its resume token (no bcrypt on the server).
func resume(ctx context.Context, url string, u user, onPush func(*frame, time.Time)) (*wsClient, error) {
	c, err := dial(ctx, url, onPush)
	if err != nil {
		return nil, err
	}
	if _, err := c.call(ctx, map[string]any{"cmd": "ValidateUser", "username": u.name, "session": u.session}); err != nil {
		c.close()
		return nil, fmt.Errorf("resuming %s: %w", u.name, err)
	}
	return c, nil
}

// openSessions opens n sessions, the i-th logged in as users[i % len(users)], conc at a time.
func openSessions(ctx context.Context, url string, users []user, n, conc int, onPush func(i int) func(*frame, time.Time)) ([]*wsClient, error) {
	clients := make([]*wsClient, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(conc)
	for i := range clients {
		g.Go(func() error {
			var push func(*frame, time.Time)
			if onPush != nil {
				push = onPush(i)
			}
			c, err := resume(gctx, url, users[i%len(users)], push)
			clients[i] = c
			return err
		})
	}
	err := g.Wait()
	if err != nil {
		closeAll(clients)
		return nil, err
	}
	return clients, nil
}

// closeAll closes clients concurrently (a close waits for the read goroutine).
func closeAll(clients []*wsClient) {
	var wg sync.WaitGroup
	for _, c := range clients {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.close() }()
		}
	}
	wg.Wait()
}
