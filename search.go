package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SearchMessages (DESIGN §3.2, §4): full-text search over the conversations the user is a
// member of, through the shared index message_search, which the inserts, edits and deletions
// of messages keep in their own transactions. The hits' current text is read from their
// conversation tables for the snippets.

const (
	searchPage     = 20
	maxSearchWords = 8
	maxSearchQuery = 200 // characters
	// The snippet's marks: private-use characters, removed from the text before it is marked,
	// so that no message can fake one.
	markStart = "\uE000"
	markStop  = "\uE001"
)

func (r *SearchReply) setReply(cmd, rid string) { r.Cmd, r.Rid = cmd, rid }

// searchQuery turns what the user typed into a tsquery: its letter and digit runs, ANDed, the
// last one a prefix. Nothing else of the input reaches the query's syntax.
func searchQuery(input string) string {
	words := strings.FieldsFunc(strings.ToLower(input), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	if len(words) > maxSearchWords {
		words = words[:maxSearchWords]
	}
	for i, w := range words {
		words[i] = "'" + w + "'"
	}
	if len(words) == 0 {
		return ""
	}
	words[len(words)-1] += ":*"
	return strings.Join(words, " & ")
}

func searchMessages(ctx context.Context, s *Session, req *Request) (reply, error) {
	if len([]rune(req.Query)) > maxSearchQuery {
		return nil, clientErr("a search has at most %d characters", maxSearchQuery)
	}
	q := searchQuery(req.Query)
	if q == "" {
		return nil, clientErr("search for at least one word")
	}
	before := time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
	if req.Before != "" {
		var err error
		if before, err = parseTime(req.Before); err != nil {
			return nil, err
		}
	}
	cids, err := s.searchScope(ctx, req.CID)
	if err != nil {
		return nil, err
	}
	out := &SearchReply{Results: []SearchResult{}}
	if len(cids) == 0 {
		return out, nil
	}
	err = s.db.searchTx(ctx, func(tx pgx.Tx) error {
		hits, err := searchIndex(ctx, tx, q, cids, before)
		if err != nil {
			return err
		}
		if len(hits) > searchPage {
			hits, out.More = hits[:searchPage], true
		}
		out.Results, err = snippets(ctx, tx, q, hits)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// errSearchTooLong answers a search that ran into -search-timeout.
var errSearchTooLong = clientErr("The search took too long; try more specific words.")

// searchTx runs a search's statements in one read-only transaction in which each may run for
// -search-timeout at most (statement_timeout), so that no search, however common its words,
// holds a connection and a core for long; one that runs out answers errSearchTooLong.
func (db *Database) searchTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	err := pgx.BeginTxFunc(ctx, db.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if d := db.cfg.SearchTimeout; d > 0 {
			ms := strconv.FormatInt(max(d.Milliseconds(), 1), 10)
			if _, err := tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true)", ms); err != nil {
				return fmt.Errorf("setting the search's time limit: %w", err)
			}
		}
		return fn(tx)
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "57014" /* query_canceled */ && ctx.Err() == nil {
		return errSearchTooLong
	}
	return err
}

// searchQuerier is a pool or a transaction, as searches use them.
type searchQuerier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// searchScope is the conversations a search may look in: the one named, if the user is a
// member, else every conversation the user is a member of now.
func (s *Session) searchScope(ctx context.Context, cid string) ([]string, error) {
	if cid != "" {
		c, err := s.memberConvo(ctx, cid)
		if err != nil {
			return nil, err
		}
		return []string{c.CID}, nil
	}
	u, err := s.db.getUser(ctx, s.user)
	if err != nil {
		return nil, fmt.Errorf("reading the user's conversations: %w", err)
	}
	cids := make([]string, 0, len(u.Convos))
	for c := range u.Convos {
		if validCID(c) {
			cids = append(cids, c)
		}
	}
	return cids, nil
}

// searchCap is where a search stops collecting every match of its words (the first phase) and
// walks the index newest first instead (the second): beyond it matches are dense enough that the
// walk finds a page soon.
var searchCap = 50000

// searchFewConvos: up to this many conversations, a search walks each one's key newest first.
// (Variables for the tests.)
var searchFewConvos = 10

// searchIndex is up to a page and one of hits (CID, m_time, id), newest first, in two phases.
// First every match of the words (from the GIN index, at most searchCap), then the user's
// newest among them; a word matching more than searchCap messages is instead found by walking
// the m_time index newest first, testing each message. Left to itself the planner walks the
// m_time index for words of middling frequency too, which reads far more rows than the matches.
// Both run with their parameters as constants (QueryExecModeExec: a plan for these values), so
// that membership is a hash probe rather than a scan of the CID list per row.
//
// A search in a few conversations (one, with CID) goes straight to the second query: the
// primary key (cid, m_time) walks each conversation newest first.
func searchIndex(ctx context.Context, db searchQuerier, q string, cids []string, before time.Time) ([]SearchResult, error) {
	if len(cids) <= searchFewConvos {
		return searchNewestFirst(ctx, db, q, cids, before)
	}
	rows, err := db.Query(ctx, `WITH hits AS MATERIALIZED (
			SELECT cid, m_time, id FROM message_search
			WHERE tsv @@ to_tsquery('simple', $1) AND m_time < $3 LIMIT $4)
		SELECT n.n, h.cid::text, h.m_time, h.id FROM (SELECT count(*) AS n FROM hits) n
		LEFT JOIN LATERAL (SELECT cid, m_time, id FROM hits WHERE cid = ANY($2::uuid[])
			ORDER BY m_time DESC LIMIT $5) h ON true`,
		pgx.QueryExecModeExec, q, cids, before, searchCap, searchPage+1)
	if err != nil {
		return nil, fmt.Errorf("searching: %w", err)
	}
	hits, n, err := scanHits(rows, true)
	if err != nil || n < int64(searchCap) {
		return hits, err
	}
	return searchNewestFirst(ctx, db, q, cids, before)
}

// searchNewestFirst is the second phase: the user's matches, newest first, by whatever index the
// planner picks for these values.
func searchNewestFirst(ctx context.Context, db searchQuerier, q string, cids []string, before time.Time) ([]SearchResult, error) {
	rows, err := db.Query(ctx, `SELECT cid::text, m_time, id FROM message_search
		WHERE tsv @@ to_tsquery('simple', $1) AND cid = ANY($2::uuid[]) AND m_time < $3
		ORDER BY m_time DESC LIMIT $4`, pgx.QueryExecModeExec, q, cids, before, searchPage+1)
	if err != nil {
		return nil, fmt.Errorf("searching: %w", err)
	}
	hits, _, err := scanHits(rows, false)
	return hits, err
}

// scanHits reads search hits (after the count of matches, when withCount; a row without a hit
// only carries the count).
func scanHits(rows pgx.Rows, withCount bool) ([]SearchResult, int64, error) {
	defer rows.Close()
	var hits []SearchResult
	var n int64
	for rows.Next() {
		var cid *string
		var mt *time.Time
		var id *int64
		dest := []any{&cid, &mt, &id}
		if withCount {
			dest = append([]any{&n}, dest...)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, 0, fmt.Errorf("searching: %w", err)
		}
		if cid != nil && mt != nil && id != nil {
			hits = append(hits, SearchResult{CID: *cid, MTime: formatTime(*mt), ID: *id})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("searching: %w", err)
	}
	return hits, n, nil
}

// snippets reads the hits' authors and current text, marked where they match, in one batch.
// A hit deleted since it was indexed (a race with its deletion) is left out.
func snippets(ctx context.Context, db searchQuerier, q string, hits []SearchResult) ([]SearchResult, error) {
	out := []SearchResult{}
	if len(hits) == 0 {
		return out, nil
	}
	opts := "StartSel=" + markStart + ", StopSel=" + markStop + ", MaxWords=30, MinWords=15, ShortWord=0"
	b := &pgx.Batch{}
	for _, h := range hits {
		at, _ := parseTime(h.MTime)
		b.Queue(fmt.Sprintf(`SELECT f_username, ts_headline('simple', translate(content, $3, ''), to_tsquery('simple', $4), $5)
			FROM %s WHERE m_time = $1 AND id = $2 AND deleted IS NOT TRUE`, convTable(h.CID)),
			at, h.ID, markStart+markStop, q, opts)
	}
	res := db.SendBatch(ctx, b)
	defer res.Close()
	for _, h := range hits {
		var text string
		err := res.QueryRow().Scan(&h.FUsername, &text)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading a search hit in %s: %w", h.CID, err)
		}
		h.Snippet = splitMarks(text)
		out = append(out, h)
	}
	return out, nil
}

// splitMarks cuts a headline at its marks into plain and marked runs.
func splitMarks(s string) []SnippetPart {
	var out []SnippetPart
	for s != "" {
		i := strings.Index(s, markStart)
		if i < 0 {
			out = append(out, SnippetPart{Text: s})
			break
		}
		if i > 0 {
			out = append(out, SnippetPart{Text: s[:i]})
		}
		s = s[i+len(markStart):]
		j := strings.Index(s, markStop)
		if j < 0 {
			j = len(s)
		}
		out = append(out, SnippetPart{Text: s[:j], Mark: true})
		s = strings.TrimPrefix(s[j:], markStop)
	}
	return out
}
