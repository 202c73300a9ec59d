package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// The convos mode: CreateConversation as conversations grow to -convos, and what each one costs
// on disk, against a bare CREATE TABLE of the same shape at the same concurrency.
//
// The two are measured in turns, convoRounds of each, so that both see the same machine: file
// creation here slows for minutes after many files were deleted (ext4 without a journal skips
// recently freed inodes while allocating, and the last run dropped its database), and a reference
// measured all before or all after the server's run was 2.4 times faster after than before.

const convoRounds = 10

// createPhase is one side of the convos mode: what it creates and what that cost.
type createPhase struct {
	s       *Section
	create  func(ctx context.Context, w, i int) error
	watch   *cpuWatch
	elapsed time.Duration
	errs    int64
	rounds  []float64 // items per second in each round
	growth  diskSnapshot
	last    diskSnapshot
}

// run creates items lo..hi-1 from workers goroutines and adds the time, CPU and disk growth.
func (p *createPhase) run(ctx context.Context, lo, hi, workers int, disk *diskProbe) {
	before := disk.snapshot(ctx)
	p.watch.resume()
	var next, errs atomic.Int64
	next.Store(int64(lo))
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < hi && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				if err := p.create(ctx, w, i); err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	p.watch.pause()
	p.elapsed += d
	p.errs += errs.Load()
	p.rounds = append(p.rounds, perSecond(int64(hi-lo)-errs.Load(), d))
	p.last = disk.snapshot(ctx)
	p.growth.relations += p.last.relations - before.relations
	p.growth.files += p.last.files - before.files
	p.growth.bytes += p.last.bytes - before.bytes
}

// report adds the phase's results for n items and returns its rate and files and bytes per item.
func (p *createPhase) report(n int, disk *diskProbe) (rate, files float64) {
	rate = perSecond(int64(n)-p.errs, p.elapsed)
	p.s.add("created", float64(int64(n)-p.errs), "")
	p.s.add("errors", float64(p.errs), "")
	p.s.add("rate", rate, "/s")
	for i, r := range p.rounds {
		p.s.add(fmt.Sprintf("rate in round %d", i+1), r, "/s")
	}
	p.watch.report(p.s)
	files, _ = disk.report(p.s, p.growth, p.last, n)
	return rate, files
}

func runConvos(ctx context.Context, tgt *target, o Options, rep *Report) error {
	users, err := createUsers(ctx, tgt.url, max(o.Clients, o.K), "ltc", o.Password)
	if err != nil {
		return err
	}
	clients, err := openSessions(ctx, tgt.url, users[:o.Clients], o.Clients, o.Clients, nil)
	if err != nil {
		return err
	}
	defer closeAll(clients)
	disk := newDiskProbe(ctx, tgt)
	prefix := fmt.Sprintf("loadtest_ct_%x_", rand.Uint32()&0xffffff)
	defer dropTables(tgt, prefix, o.Convos) // at the end: deleting files slows creating them
	ours := &createPhase{
		s:     rep.section(fmt.Sprintf("pingedchat: CreateConversation (%d members) ×%d from %d concurrent sessions", o.K, o.Convos, o.Clients)),
		watch: startCPUWatch(tgt.pid, tgt.dbname),
		create: func(ctx context.Context, w, i int) error {
			members := make([]string, 0, o.K-1)
			for j := 1; j < o.K; j++ {
				members = append(members, users[(w+j)%len(users)].name)
			}
			_, err := clients[w].call(ctx, map[string]any{"cmd": "CreateConversation", "Name": fmt.Sprintf("c%d", i), "Members": members})
			return err
		},
	}
	ref := &createPhase{
		s:     rep.section(fmt.Sprintf("reference: bare CREATE TABLE + index of the same shape ×%d, %d connections", o.Convos, o.Clients)),
		watch: startCPUWatch(0, tgt.dbname),
		create: func(ctx context.Context, _, i int) error {
			_, err := tgt.pool.Exec(ctx, fmt.Sprintf(convTableDDL, fmt.Sprintf("%s%d", prefix, i)))
			return err
		},
	}
	ours.watch.pause()
	ref.watch.pause()
	logf("creating %d conversations from %d sessions and %d bare tables from %d connections, in %d turns each",
		o.Convos, o.Clients, o.Convos, o.Clients, convoRounds)
	p := tgt.startCPUProfile(ctx, 2*estimateCreateTime(o), "convos")
	for r := range convoRounds {
		lo, hi := r*o.Convos/convoRounds, (r+1)*o.Convos/convoRounds
		ours.run(ctx, lo, hi, o.Clients, disk)
		ref.run(ctx, lo, hi, o.Clients, disk)
	}
	p.wait(rep)
	rate, files := ours.report(o.Convos, disk)
	if ours.errs > 0 {
		rep.note("%d CreateConversation calls failed", ours.errs)
	}
	refRate, _ := ref.report(o.Convos, disk)
	if ref.errs > 0 {
		return fmt.Errorf("reference CREATE TABLE failed %d times", ref.errs)
	}
	own, err := ownRelationBytes(ctx, tgt, `conv\_%`)
	if err != nil {
		return err
	}
	ownPer := float64(own) / float64(max(o.Convos, 1)) / 1024
	ours.s.add("own relation bytes per conversation (table, TOAST, indexes, sequence)", ownPer, "KiB")
	if own, err := ownRelationBytes(ctx, tgt, strings.ReplaceAll(prefix, "_", `\_`)+"%"); err == nil {
		ref.s.add("own relation bytes per table (table, TOAST, indexes, sequence)", float64(own)/float64(max(o.Convos, 1))/1024, "KiB")
	}
	c := rep.section("pingedchat vs reference")
	c.add("CreateConversation rate ÷ bare CREATE TABLE rate", ratio(rate, refRate), "×")
	// The directory's growth (files above) also counts other tables' free space and visibility
	// maps as they appear; the target counts the conversations' own files.
	nFiles, err := disk.ownFiles(ctx, `conv\_%`)
	if err != nil {
		rep.note("counting the conversations' files: %v", err)
	}
	if err == nil && nFiles >= 0 {
		ownFiles := float64(nFiles) / float64(max(o.Convos, 1))
		ours.s.add("own relation files per conversation (table, TOAST, indexes, every fork)", ownFiles, "files")
		rep.atMost("relation files per empty conversation", math.Round(ownFiles*100)/100, 5, "files")
	} else if files >= 0 {
		rep.atMost("relation files per empty conversation (directory growth)", math.Round(files*100)/100, 5, "files")
	}
	rep.atMost("own relation bytes per empty conversation", ownPer, 32, "KiB")
	rep.atLeast("CreateConversation ÷ bare CREATE TABLE", ratio(rate, refRate), 0.8, "×")
	if o.Convos < 10_000 {
		rep.note("the conversation targets are defined as conversations grow to 10,000; this run made %d", o.Convos)
	}
	return nil
}

// estimateCreateTime guesses how long creating the conversations takes, for the CPU profile.
func estimateCreateTime(o Options) time.Duration {
	return min(max(time.Duration(o.Convos)*5*time.Millisecond, 2*time.Second), 30*time.Second)
}

// diskProbe counts what the database holds on disk: its relations (SQL) and, when the server's
// data directory is on this machine and readable, its files and their bytes.
type diskProbe struct {
	pool interface {
		QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
		Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	}
	dir string // base/<database oid> under the data directory, or empty
}

type diskSnapshot struct {
	relations int64 // rows in pg_class: tables, indexes, sequences, TOAST tables
	files     int64
	bytes     int64
}

func newDiskProbe(ctx context.Context, tgt *target) *diskProbe {
	var oid uint32
	if err := tgt.pool.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = current_database()").Scan(&oid); err != nil {
		return &diskProbe{pool: tgt.pool}
	}
	data := dataDirectory(ctx, tgt)
	dir := filepath.Join(data, "base", fmt.Sprint(oid))
	if _, err := os.Stat(dir); data == "" || err != nil {
		logf("database directory not readable here; counting relations only")
		return &diskProbe{pool: tgt.pool}
	}
	return &diskProbe{pool: tgt.pool, dir: dir}
}

// dataDirectory is PostgreSQL's data directory: SHOW needs privileges the role may lack, so fall
// back to the working directory of a local PostgreSQL process (every one chdirs there).
func dataDirectory(ctx context.Context, tgt *target) string {
	var dir string
	if err := tgt.pool.QueryRow(ctx, "SHOW data_directory").Scan(&dir); err == nil {
		return dir
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		title, err := os.ReadFile(p + "/cmdline")
		if err != nil || !strings.HasPrefix(string(title), "postgres: ") {
			continue
		}
		if cwd, err := os.Readlink(p + "/cwd"); err == nil {
			return cwd
		}
	}
	return ""
}

func (d *diskProbe) snapshot(ctx context.Context) diskSnapshot {
	var s diskSnapshot
	_ = d.pool.QueryRow(ctx, "SELECT count(*) FROM pg_class").Scan(&s.relations)
	if d.dir != "" {
		entries, _ := os.ReadDir(d.dir)
		for _, e := range entries {
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				s.files++
				s.bytes += info.Size()
			}
		}
	}
	return s
}

// report adds the growth per item and returns files and bytes per item (-1 when unknown); last
// is the latest snapshot.
func (d *diskProbe) report(s *Section, growth, last diskSnapshot, n int) (files, bytes float64) {
	if n == 0 {
		return -1, -1
	}
	s.add("new relations (pg_class rows) per item", float64(growth.relations)/float64(n), "")
	if d.dir == "" {
		return -1, -1
	}
	files = float64(growth.files) / float64(n)
	bytes = float64(growth.bytes) / float64(n)
	s.add("files in the database directory", float64(last.files), "")
	s.add("new files per item", files, "files")
	s.add("new bytes on disk per item (relation files + catalog growth)", bytes/1024, "KiB")
	return files, bytes
}

// ownFiles counts the files of the tables named like like, with their TOAST tables and every
// index: each relation's main file and whichever of its other forks exist (-1: the directory is
// not readable here).
func (d *diskProbe) ownFiles(ctx context.Context, like string) (int, error) {
	if d.dir == "" {
		return -1, nil
	}
	rows, err := d.pool.Query(ctx, `SELECT pg_relation_filenode(r.oid)::bigint FROM pg_class c JOIN pg_class r
			ON r.oid IN (c.oid, c.reltoastrelid)
			OR r.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN (c.oid, c.reltoastrelid))
		WHERE c.relkind = 'r' AND c.relname LIKE $1`, like)
	if err != nil {
		return 0, fmt.Errorf("listing %s relations: %w", like, err)
	}
	nodes, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("listing %s relations: %w", like, err)
	}
	n := 0
	for _, node := range nodes {
		for _, fork := range []string{"", "_fsm", "_vm", "_init"} {
			if _, err := os.Stat(filepath.Join(d.dir, fmt.Sprint(node)+fork)); err == nil {
				n++
			}
		}
	}
	return n, nil
}

// ownRelationBytes is what the conversation tables' own relations hold, summed: the table, its
// TOAST table and indexes (pg_total_relation_size) and its identity sequence. Catalog growth is
// not included; the directory figures show it.
func ownRelationBytes(ctx context.Context, tgt *target, like string) (int64, error) {
	var size int64
	err := tgt.pool.QueryRow(ctx, `SELECT COALESCE(sum(pg_total_relation_size(c.oid) + COALESCE((
			SELECT sum(pg_relation_size(d.objid)) FROM pg_depend d JOIN pg_class s ON s.oid = d.objid
			WHERE d.classid = 'pg_class'::regclass AND d.refobjid = c.oid AND s.relkind = 'S'), 0)), 0)::bigint
		FROM pg_class c WHERE c.relkind = 'r' AND c.relname LIKE $1`, like).Scan(&size)
	if err != nil {
		return 0, fmt.Errorf("sizing %s tables: %w", like, err)
	}
	return size, nil
}

// dropTables removes the reference tables, a hundred per statement.
func dropTables(tgt *target, prefix string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 0; i < n; i += 100 {
		var names []string
		for j := i; j < min(i+100, n); j++ {
			names = append(names, fmt.Sprintf("%s%d", prefix, j))
		}
		if _, err := tgt.pool.Exec(ctx, "DROP TABLE IF EXISTS "+strings.Join(names, ", ")); err != nil {
			logf("dropping reference tables: %v", err)
			return
		}
	}
}
