package main

import (
	"context"
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
