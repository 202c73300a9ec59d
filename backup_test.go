package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A backup restored into a new database serves the same users, conversations, messages and
// scheduled messages.
func TestBackupAndRestore(t *testing.T) {
	cfg := testConfig(t)
	cfg.Postgres = freshDatabase(t)
	srv := startServer(t, cfg)
	alice := register(t, srv, "alice")
	bob := register(t, srv, "bob")
	cid := newConvo(t, alice, "kept", bob)
	for _, m := range []string{"one", "two", "three"} {
		alice.ok("SendMessage", map[string]any{"CID": cid, "content": m})
	}
	alice.ok("AddScheduledMessage", map[string]any{"CID": cid, "Time": formatTime(timeIn(3600)), "Content": "later"})

	dir := filepath.Join(t.TempDir(), "backup")
	ok, err := runSubcommand(context.Background(), []string{"backup", "-postgres", cfg.Postgres, dir})
	if !ok || err != nil {
		t.Fatalf("backup: %v %v", ok, err)
	}
	if err := backup(context.Background(), cfg, dir); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a second backup into the same directory: %v", err)
	}

	restored := testConfig(t)
	restored.Postgres = freshDatabase(t)
	if _, err := runSubcommand(context.Background(), []string{"restore", "-postgres", restored.Postgres, dir}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if _, err := runSubcommand(context.Background(), []string{"restore", "-postgres", restored.Postgres, dir}); err == nil || !strings.Contains(err.Error(), "-force") {
		t.Fatalf("restoring over data without -force: %v", err)
	}
	if _, err := runSubcommand(context.Background(), []string{"restore", "-force", "-postgres", restored.Postgres, dir}); err != nil {
		t.Fatalf("restore -force: %v", err)
	}

	again := startServer(t, restored)
	a := login(t, again, alice.name)
	data := a.ok("GetConvoData", map[string]any{"CID": cid})
	msgs := data["Messages"].([]any)
	if data["Name"] != "kept" || len(msgs) != 3 || msgs[2].(map[string]any)["content"] != "three" {
		t.Fatalf("restored conversation: %v", data)
	}
	view := dialRaw(t, again).ok("ValidateUser", map[string]any{"username": bob.name, "password": testPassword})
	if len(view["CIDs"].([]any)) != 1 {
		t.Fatalf("bob's conversations after the restore: %v", view["CIDs"])
	}
	sched := a.ok("GetUserView", nil)["ScheduledMessages"].([]any)
	if len(sched) != 1 || sched[0].(map[string]any)["Content"] != "later" {
		t.Fatalf("scheduled messages after the restore: %v", sched)
	}
	// The restored server goes on: new messages, live.
	b := login(t, again, bob.name)
	a.ok("SendMessage", map[string]any{"CID": cid, "content": "after the restore"})
	b.waitPush("a live message after the restore", func(p map[string]any) bool { return p["content"] == "after the restore" })
}

// TestBackupKeepsThePasswordOffTheCommandLine: pg_dump and pg_restore are in every local user's
// process list, so -postgres (here with a password, which the local socket's authentication does
// not ask for) reaches them through a service file in their environment. Wrappers in PATH record
// the arguments the real tools are run with and the service file they are pointed at.
func TestBackupKeepsThePasswordOffTheCommandLine(t *testing.T) {
	const secret = "s3cret pass"
	cfg := testConfig(t)
	db := freshDatabase(t)
	cfg.Postgres = db + ` password='` + secret + `' application_name=pinged\ backup`
	srv := startServer(t, cfg)
	alice := register(t, srv, "pwalice")
	cid := newConvo(t, alice, "kept")
	alice.ok("SendMessage", map[string]any{"CID": cid, "content": "still here"})

	bin := t.TempDir()
	logf := filepath.Join(bin, "calls.log")
	for _, tool := range []string{"pg_dump", "pg_restore"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Skip(tool, "is not installed")
		}
		script := fmt.Sprintf("#!/bin/sh\n{ echo \"ARGV %s $*\"; echo \"SERVICE $PGSERVICE\"; cat \"$PGSERVICEFILE\"; } >> %s\nexec %s \"$@\"\n", tool, logf, real)
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))

	dir := filepath.Join(t.TempDir(), "backup")
	if err := backup(context.Background(), cfg, dir); err != nil {
		t.Fatalf("backup: %v", err)
	}
	restored := testConfig(t)
	restored.Postgres = freshDatabase(t) + ` password='` + secret + `'`
	if err := restore(context.Background(), restored, dir, false); err != nil {
		t.Fatalf("restore: %v", err)
	}
	b, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	calls := string(b)
	var argvs int
	for _, line := range strings.Split(calls, "\n") {
		if strings.HasPrefix(line, "ARGV ") {
			argvs++
			if strings.Contains(line, "s3cret") || strings.Contains(line, "password") {
				t.Errorf("a tool's arguments carry the password: %s", line)
			}
		}
	}
	if argvs != 2 || !strings.Contains(calls, "password="+secret+"\n") || !strings.Contains(calls, "dbname="+strings.TrimPrefix(db, "dbname=")+"\n") ||
		!strings.Contains(calls, "application_name=pinged backup\n") {
		t.Fatalf("the tools' calls:\n%s", calls)
	}
	// The service file is gone with the tool.
	for _, line := range strings.Split(calls, "\n") {
		if p, ok := strings.CutPrefix(line, "SERVICE "); ok && p != backupService {
			t.Errorf("PGSERVICE %q", p)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(os.TempDir(), "pingedchat-pg-*")); len(m) > 0 {
		t.Errorf("service files left behind: %v", m)
	}

	again := startServer(t, restored)
	data := login(t, again, alice.name).ok("GetConvoData", map[string]any{"CID": cid})
	if msgs := data["Messages"].([]any); len(msgs) != 1 || msgs[0].(map[string]any)["content"] != "still here" {
		t.Fatalf("restored conversation: %v", data)
	}
}

func TestParseConninfo(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
	}{
		{"", map[string]string{}},
		{"dbname=pingedchat", map[string]string{"dbname": "pingedchat"}},
		{` host = /run/postgresql  dbname=x password='it''s' `, nil},
		{`host=db password='a b\'c\\d' user=u\ v`, map[string]string{"host": "db", "password": `a b'c\d`, "user": "u v"}},
		{"postgres://bob:p%40ss%3A@db.example:5433/chat?sslmode=require&application_name=a%20b",
			map[string]string{"user": "bob", "password": "p@ss:", "host": "db.example", "port": "5433", "dbname": "chat",
				"sslmode": "require", "application_name": "a b"}},
		{"postgresql://h1:5432,[::1]:5433,h3/db", map[string]string{"host": "h1,::1,h3", "port": "5432,5433,", "dbname": "db"}},
		{"postgresql:///db?host=/run/postgresql", map[string]string{"dbname": "db", "host": "/run/postgresql"}},
		{"postgres://u@h", map[string]string{"user": "u", "host": "h"}},
	} {
		got, err := parseConninfo(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("%q: %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("%q: %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"dbname", "dbname=x password='open", "=x"} {
		if _, err := parseConninfo(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, _, err := serviceFileEnv("service=other"); err == nil {
		t.Error("a service in -postgres accepted")
	}
}
