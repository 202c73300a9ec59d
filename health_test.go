package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestReadyzTellsOnlyTheStatus: when PostgreSQL refuses the server, /readyz (public, no
// credentials) answers 503 naming the dependency, and nothing of the error (the database's name,
// the role, the address): that goes to the log.
func TestReadyzTellsOnlyTheStatus(t *testing.T) {
	cfg := testConfig(t)
	cfg.Postgres = freshDatabase(t)
	dbName := strings.TrimPrefix(cfg.Postgres, "dbname=")
	srv := startServer(t, cfg)
	logs := captureLogs(t)
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + srv.addr + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("/readyz: %d %q", code, body)
	}

	ctx := context.Background()
	admin, err := pgx.Connect(ctx, "dbname=postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+dbName+" ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.Exec(ctx, "ALTER DATABASE "+dbName+" ALLOW_CONNECTIONS true") })
	if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", dbName); err != nil {
		t.Fatal(err)
	}

	var body string
	waitUntil(t, "/readyz to report PostgreSQL", func() bool {
		var code int
		code, body = get()
		return code == http.StatusServiceUnavailable && strings.Contains(body, "postgres")
	})
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		if line != "postgres: unavailable" && line != "quick store: unavailable" {
			t.Errorf("/readyz line %q: want only a dependency's status", line)
		}
	}
	if strings.Contains(body, dbName) || strings.Contains(body, "accepting") || strings.Contains(body, "127.0.0.1") {
		t.Fatalf("/readyz shows the error: %q", body)
	}
	waitUntil(t, "the reason in the log", func() bool {
		out := logs.String()
		return strings.Contains(out, "not ready") && strings.Contains(out, "dependency=postgres") && strings.Contains(out, dbName)
	})
}
