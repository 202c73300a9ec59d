package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// The history mode: GetConvoData (the latest 50 messages) on a conversation of -rows messages
// from -clients concurrent sessions, against the same page read by the raw query through pgx at
// the same concurrency.

func runHistory(ctx context.Context, tgt *target, o Options, rep *Report) error {
	users, err := createUsers(ctx, tgt.url, 1, "lth", o.Password)
	if err != nil {
		return err
	}
	clients, err := openSessions(ctx, tgt.url, users, o.Clients, o.Clients, nil)
	if err != nil {
		return err
	}
	defer closeAll(clients)
	ack, err := clients[0].call(ctx, map[string]any{"cmd": "CreateConversation", "Name": "history", "Members": []string{}})
	if err != nil {
		return err
	}
	table := convTableName(ack.CID)
	if err := fillHistory(ctx, tgt, table, users[0].name, o.Rows); err != nil {
		return err
	}
	s := rep.section(fmt.Sprintf("pingedchat: GetConvoData (latest 50) on %d messages, %d concurrent sessions", o.Rows, o.Clients))
	logf("GetConvoData from %d sessions for %s", o.Clients, o.Duration)
	watch := startCPUWatch(tgt.pid, tgt.dbname)
	p := tgt.startCPUProfile(ctx, o.Duration, "history")
	var short atomic.Int64
	ok, errs, lat, elapsed, firstErr := hammer(ctx, o.Clients, o.Duration, func(ctx context.Context, w int) error {
		reply, err := clients[w].call(ctx, map[string]any{"cmd": "GetConvoData", "CID": ack.CID})
		if err == nil && len(reply.Messages) != 50 {
			short.Add(1)
		}
		return err
	})
	p.wait(rep)
	addQueryFigures(s, ok, errs, lat, elapsed)
	watch.report(s)
	if firstErr != "" {
		rep.note("GetConvoData: %d errors, the first: %s", errs, firstErr)
	}
	if n := short.Load(); n > 0 {
		rep.note("%d GetConvoData replies did not hold 50 messages", n)
	}
	raw, err := referenceHistory(ctx, tgt, table, o, rep)
	if err != nil {
		return err
	}
	c := rep.section("pingedchat vs reference")
	r := ratio(ms(lat.percentile(0.99)), ms(raw.percentile(0.99)))
	c.add("GetConvoData p50 ÷ raw p50", ratio(ms(lat.percentile(0.5)), ms(raw.percentile(0.5))), "×")
	c.add("GetConvoData p99 ÷ raw p99", r, "×")
	rep.atMost("GetConvoData p99 ÷ raw query p99", r, 1.5, "×")
	return nil
}

// convTableName is the server's table for a conversation: conv_ and the CID's 32 hex digits.
func convTableName(cid string) string {
	return "conv_" + strings.ReplaceAll(cid, "-", "")
}

// fillHistory puts n messages into the conversation's table in one statement, with strictly
// increasing m_times ending an hour ago, then analyses it as autovacuum eventually would.
func fillHistory(ctx context.Context, tgt *target, table, from string, n int) error {
	start := time.Now()
	_, err := tgt.pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %s (id, f_username, m_time, content, kind)
		SELECT g, $1, now() - interval '1 hour' - ($2 - g) * interval '1 millisecond',
		       'history message number ' || g || ' with some ordinary chat text', 'text'
		FROM generate_series(1, $2::int) g`, table), from, n)
	if err != nil {
		return fmt.Errorf("filling %s: %w", table, err)
	}
	if _, err := tgt.pool.Exec(ctx, "ANALYZE "+table); err != nil {
		return fmt.Errorf("analysing %s: %w", table, err)
	}
	logf("filled %s with %d messages in %s", table, n, time.Since(start).Round(time.Millisecond))
	return nil
}

func addQueryFigures(s *Section, ok, errs int64, lat *latencies, elapsed time.Duration) {
	s.add("queries", float64(ok), "")
	s.add("errors", float64(errs), "")
	s.add("rate", perSecond(ok, elapsed), "/s")
	lat.addTo(s, "latency")
}

// referenceHistory runs the raw query for the same page from -clients goroutines on as many
// pooled connections, scanning every row as the server does.
func referenceHistory(ctx context.Context, tgt *target, table string, o Options, rep *Report) (*latencies, error) {
	logf("reference: raw history query from %d goroutines for %s", o.Clients, o.Duration)
	sql := "SELECT id, f_username, m_time, content, kind, client_id FROM " + table + " ORDER BY m_time DESC LIMIT 50"
	watch := startCPUWatch(0, tgt.dbname)
	ok, errs, lat, elapsed, firstErr := hammer(ctx, o.Clients, o.Duration, func(ctx context.Context, _ int) error {
		rows, err := tgt.pool.Query(ctx, sql)
		if err != nil {
			return err
		}
		defer rows.Close()
		var (
			id                  int64
			from, content, kind string
			clientID            *string
			mtime               time.Time
		)
		n := 0
		for rows.Next() {
			if err := rows.Scan(&id, &from, &mtime, &content, &kind, &clientID); err != nil {
				return err
			}
			n++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if n != 50 {
			return fmt.Errorf("the raw query returned %d rows, want 50", n)
		}
		return nil
	})
	s := rep.section(fmt.Sprintf("reference: raw pgx query (ORDER BY m_time DESC LIMIT 50), %d concurrent clients", o.Clients))
	addQueryFigures(s, ok, errs, lat, elapsed)
	watch.report(s)
	if firstErr != "" {
		return nil, fmt.Errorf("reference query: %s", firstErr)
	}
	return lat, nil
}
