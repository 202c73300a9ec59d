package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Backups: `pingedchat backup DIR` and `pingedchat restore DIR`, with the server's own flags (or
// PINGED_* variables) saying where the data is. The PostgreSQL database — messages, scheduled
// messages, schema version and, with the default quick store, users and conversations — is
// dumped by pg_dump in its directory format, in parallel, as one consistent snapshot, and
// restored by pg_restore. An Aerospike quick store is backed up with Aerospike's own tools
// (asbackup/asrestore), which know its storage far better than a scan from here would; the
// command says so rather than pretend.

// backupManifest describes a backup, so that a restore knows what it holds.
type backupManifest struct {
	Created       string `json:"created"`
	Version       string `json:"version"`
	SchemaVersion int    `json:"schema_version"`
	QuickStore    string `json:"quickstore"`
}

const backupPGDir = "postgres"

// runTool is how backup and restore run pg_dump and pg_restore, connected to conninfo through a
// service file in their environment (pgconninfo.go), never through their arguments, which any
// local user sees in the process list; a failure carries their output.
func runTool(ctx context.Context, conninfo, name string, args ...string) error {
	env, cleanup, err := serviceFileEnv(conninfo)
	if err != nil {
		return err
	}
	defer cleanup()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if errors.Is(err, exec.ErrNotFound) {
		return fmt.Errorf("%s is not installed: it comes with PostgreSQL's client tools (apt install postgresql-client)", name)
	}
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// backup writes a backup of cfg's data into dir, which must not exist yet or be empty.
func backup(ctx context.Context, cfg Config, dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("backup: %s is not empty", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	schema, err := readSchemaVersion(ctx, cfg.Postgres)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := runTool(ctx, cfg.Postgres, "pg_dump", "--format=directory", "--jobs=2", "--no-owner",
		"--file="+filepath.Join(dir, backupPGDir)); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	m := backupManifest{Created: formatTime(time.Now()), Version: versionString(), SchemaVersion: schema, QuickStore: redactURL(cfg.QuickStore)}
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if strings.HasPrefix(cfg.QuickStore, "aerospike://") {
		return fmt.Errorf("backup: PostgreSQL is in %s, but users and conversations are in Aerospike: back those up with asbackup (Aerospike's tool) at the same time", dir)
	}
	return nil
}

// restore loads a backup into cfg's database. The database must be new (created if missing)
// unless force is set, in which case what the backup holds replaces what is there.
func restore(ctx context.Context, cfg Config, dir string, force bool) error {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return fmt.Errorf("restore: %s is not a pingedchat backup: %w", dir, err)
	}
	var m backupManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("restore: reading the manifest: %w", err)
	}
	if m.SchemaVersion > schemaVersion() {
		return fmt.Errorf("restore: the backup's schema is version %d, newer than this pingedchat's %d: restore with the newer release", m.SchemaVersion, schemaVersion())
	}
	pool, err := openPostgres(ctx, cfg.Postgres, nil) // creates the database if it is missing
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	var used bool
	err = pool.QueryRow(ctx, "SELECT to_regclass('schema_version') IS NOT NULL OR to_regclass('scheduled_messages') IS NOT NULL").Scan(&used)
	pool.Close()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if used && !force {
		return errors.New("restore: the database already holds pingedchat data; restore into a new database, or add -force to replace it")
	}
	// --dbname names the service: the connection itself is in the tool's environment.
	args := []string{"--jobs=2", "--no-owner", "--dbname=service=" + backupService}
	if force {
		args = append(args, "--clean", "--if-exists")
	}
	if err := runTool(ctx, cfg.Postgres, "pg_restore", append(args, filepath.Join(dir, backupPGDir))...); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

func readSchemaVersion(ctx context.Context, connString string) (int, error) {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return 0, fmt.Errorf("connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	var v int
	err = conn.QueryRow(ctx, "SELECT COALESCE(max(version), 0) FROM schema_version").Scan(&v)
	return v, err
}

// runSubcommand runs `pingedchat backup|restore [flags] DIR`, `pingedchat check` (check.go)
// and `pingedchat healthcheck` (healthcheck.go); ok is false when args name no subcommand.
func runSubcommand(ctx context.Context, args []string) (ok bool, err error) {
	if len(args) > 0 && args[0] == "check" {
		return true, runCheck(ctx, args[1:], os.Stdout)
	}
	if len(args) > 0 && args[0] == "healthcheck" {
		return true, runHealthcheck(ctx, args[1:])
	}
	if len(args) == 0 || (args[0] != "backup" && args[0] != "restore") {
		return false, nil
	}
	cmd, rest := args[0], args[1:]
	force := false
	if cmd == "restore" && len(rest) > 0 && (rest[0] == "-force" || rest[0] == "--force") {
		force, rest = true, rest[1:]
	}
	if len(rest) == 0 {
		return true, fmt.Errorf("usage: pingedchat %s [server flags] DIR", cmd)
	}
	dir := rest[len(rest)-1]
	cfg, err := parseFlags(rest[:len(rest)-1])
	if err != nil {
		return true, err
	}
	if cmd == "backup" {
		return true, backup(ctx, cfg, dir)
	}
	return true, restore(ctx, cfg, dir, force)
}
