package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"
)

// Reading a mailbox an attacker filled with large mails (issue 25, items 2 and 23): the lists
// carry summaries, bounded in count and bytes; the query reads no bodies; the server's memory
// stays bounded however many listings run; GetEmail brings one e-mail whole; and the live push
// of a mail larger than NATS's maximum payload still arrives.

const largeBody = 1_000_000 // bytes of each body of largeMail (the stored maximum is 1 MiB)

// largeMail is a message with a text and an HTML body of largeBody bytes each, of random
// (incompressible) text in 76-character lines; the HTML ends with END-OF-HTML.
func largeMail(t testing.TB, to string) []byte {
	t.Helper()
	raw := make([]byte, largeBody*3/4)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	text := base64.StdEncoding.EncodeToString(raw)
	var lines strings.Builder
	for i := 0; i < len(text); i += 76 {
		lines.WriteString(text[i:min(i+76, len(text))])
		lines.WriteString("\r\n")
	}
	body := lines.String()
	return []byte("From: Mallory <mallory@example.com>\r\nTo: " + to + "\r\nSubject: Large\r\nMessage-ID: <large@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b\"\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello " + body +
		"--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello " + body[:len(body)-40] + "END-OF-HTML</p>\r\n--b--\r\n")
}

// rawFrame is the frame of c's reply rid, or of the first push with cmd, as it came off the wire.
func rawFrame(c *client, rid, cmd string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.raw {
		var v struct{ Rid, Cmd string }
		if json.Unmarshal([]byte(f), &v) == nil && ((rid != "" && v.Rid == rid) || (rid == "" && v.Cmd == cmd)) {
			return f
		}
	}
	return ""
}

// callRaw calls and returns the reply with its size on the wire.
func callRaw(c *client, cmd string, fields map[string]any) (map[string]any, int) {
	c.t.Helper()
	rid := fmt.Sprintf("r%d", c.ridSeq.Add(1))
	req := map[string]any{"cmd": cmd, "rid": rid}
	for k, v := range fields {
		req[k] = v
	}
	b, _ := json.Marshal(req)
	c.sendRaw(string(b))
	rep := c.waitReply(rid)
	if e, has := rep["error"]; has {
		c.t.Fatalf("%s: %s: %v", c.name, cmd, e)
	}
	return rep, len(rawFrame(c, rid, ""))
}

// mailRows counts the rows of a mailbox.
func mailRows(t testing.TB, srv *testServer, user string) int {
	var n int
	if err := srv.db.pool.QueryRow(context.Background(), "SELECT count(*) FROM mail WHERE owner = $1", upperName(user)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// copyEmails adds n copies of a user's e-mail id to the mailbox (newer ids and m_times).
func copyEmails(t testing.TB, srv *testServer, user string, id int64, n int) {
	t.Helper()
	_, err := srv.db.pool.Exec(context.Background(), `INSERT INTO mail (owner, id, m_time, folder, unread, starred,
		deleted, removed, from_addr, from_name, to_addrs, cc_addrs, subject, text_body, html_body, date, message_id,
		in_reply_to, attachments, size)
		SELECT owner, id + g, m_time + g, folder, unread, starred, deleted, removed, from_addr, from_name, to_addrs,
			cc_addrs, subject || ' ' || g, text_body, html_body, date, message_id, in_reply_to, attachments, size
		FROM mail, generate_series(1, $3::int) g WHERE owner = $1 AND id = $2`, upperName(user), id, n)
	if err != nil {
		t.Fatal(err)
	}
}

// checkSummaries fails unless every e-mail of a list is a summary: no bodies, a short preview.
func checkSummaries(t *testing.T, list []map[string]any) {
	t.Helper()
	for _, e := range list {
		p, _ := e["Preview"].(string)
		if e["Text"] != nil || e["HTML"] != nil || utf8.RuneCountInString(p) > mailPreview {
			t.Errorf("not a summary: %.300v", e)
			return
		}
	}
}

func TestMailListingIsBounded(t *testing.T) {
	srv, _ := mailServer(t)
	victim := register(t, srv, "victim")
	addr := victim.name + "@" + testMailDomain
	if err := smtpSend(t, srv, "mallory@example.com", []string{addr}, largeMail(t, addr)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the large mail stored", func() bool { return mailRows(t, srv, victim.name) == 1 })
	copyEmails(t, srv, victim.name, 1, 59) // 60 e-mails of 2 MB: 120 MB of bodies

	// Every way of listing answers a page of summaries, far below the page's byte cap.
	for name, fields := range map[string]map[string]any{
		"newest": nil, "before": {"BeforeID": 60}, "since": {"M_time": "2000-01-01T00:00:00.000000Z"},
	} {
		rep, size := callRaw(victim, "GetAllEmails", fields)
		list := emails(rep)
		checkSummaries(t, list)
		if len(list) != 50 || rep["More"] != true || size > mailPageBytes {
			t.Errorf("%s: %d e-mails, More %v, %d bytes", name, len(list), rep["More"], size)
		} else if p, _ := list[0]["Preview"].(string); !strings.HasPrefix(p, "Hello ") {
			t.Errorf("%s: preview %q", name, p)
		} else {
			t.Logf("%s: %d e-mails in %d bytes", name, len(list), size)
		}
	}

	// The list query reads no bodies: a TOAST block or two a row (the start of the text, for the
	// preview), where the two bodies take about 250. Counted by PostgreSQL for this transaction,
	// with every row read as a listing reads it.
	ctx := context.Background()
	tx, err := srv.db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// The backend's counts not yet reported are in it too: the difference is this query's.
	const toastBlocks = "SELECT pg_stat_get_xact_blocks_fetched(reltoastrelid) FROM pg_class WHERE oid = 'mail'::regclass"
	var earlier int64
	if err := tx.QueryRow(ctx, toastBlocks).Scan(&earlier); err != nil {
		t.Fatal(err)
	}
	rows, err := tx.Query(ctx, mailListNewest, upperName(victim.name), mailPage+1)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	var blocks int64
	if err := tx.QueryRow(ctx, toastBlocks).Scan(&blocks); err != nil {
		t.Fatal(err)
	}
	blocks -= earlier
	if n != mailPage+1 || blocks > 4*int64(n) {
		t.Errorf("the list query read %d TOAST blocks for %d e-mails", blocks, n)
	} else {
		t.Logf("the list query read %d TOAST blocks for %d e-mails", blocks, n)
	}
	_ = tx.Rollback(ctx)

	// Four listings at once allocate little in the server (which runs in this process).
	readers := []*client{victim}
	for range 3 {
		readers = append(readers, login(t, srv, victim.name))
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rids := make([]string, len(readers))
	for i, c := range readers {
		rids[i] = fmt.Sprintf("mem%d", i)
		c.sendRaw(fmt.Sprintf(`{"cmd":"GetAllEmails","rid":%q}`, rids[i]))
	}
	for i, c := range readers {
		if list := emails(c.waitReply(rids[i])); len(list) != 50 {
			t.Fatalf("listing %d: %d e-mails", i, len(list))
		}
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Errorf("four listings allocated %d MB", alloc>>20)
	} else {
		t.Logf("four listings allocated %.1f MB", float64(alloc)/(1<<20))
	}

	// One e-mail, whole, on demand.
	e := fetchEmail(victim, 60)
	text, _ := e["Text"].(string)
	html, _ := e["HTML"].(string)
	if len(text) < largeBody || !strings.HasPrefix(text, "Hello ") || !strings.Contains(html, "END-OF-HTML") {
		t.Fatalf("GetEmail: text %d bytes, HTML %d bytes", len(text), len(html))
	}
}

// A page stops at mailPageBytes as well as at mailPage e-mails, and paging, either way, misses
// nothing and repeats nothing. Long header fields are cut in the summaries.
func TestMailPageByteCap(t *testing.T) {
	srv, _ := mailServer(t)
	c := register(t, srv, "wide")
	owner := upperName(c.name)
	var to []string
	for i := range summaryAddrs + 5 {
		to = append(to, fmt.Sprintf("%s%d@example.com", strings.Repeat("x", 300), i))
	}
	var atts []Attachment
	for i := range summaryAtts + 10 {
		atts = append(atts, Attachment{ID: fmt.Sprintf("%022d", i), Name: strings.Repeat("n", 200), Type: "text/plain", Size: 1})
	}
	attsJSON, _ := json.Marshal(atts)
	_, err := srv.db.pool.Exec(context.Background(), `INSERT INTO mail (owner, id, m_time, folder, from_addr, to_addrs,
		subject, text_body, attachments) SELECT $1::text, g, (extract(epoch FROM now()) * 1e6)::bigint + g, 'inbox', 'a@example.com', $2::text[], repeat('s', 998),
		repeat('word ', 100000), $3::jsonb FROM generate_series(1, 60) g`, owner, to, string(attsJSON))
	if err != nil {
		t.Fatal(err)
	}
	const envelope = 1 << 10 // a reply's fields beside its e-mails
	seen := map[float64]int{}
	pages := 0
	for before := 0.0; ; {
		fields := map[string]any{}
		if before > 0 {
			fields["BeforeID"] = before
		}
		rep, size := callRaw(c, "GetAllEmails", fields)
		list := emails(rep)
		checkSummaries(t, list)
		if len(list) == 0 || size > mailPageBytes+envelope {
			t.Fatalf("page %d: %d e-mails in %d bytes", pages, len(list), size)
		}
		pages++
		for _, e := range list {
			seen[e["ID"].(float64)]++
			before = e["ID"].(float64)
		}
		if pages == 1 {
			e := list[0]
			if len(list) >= mailPage || rep["More"] != true || len(e["To"].([]any)) != summaryAddrs ||
				len(e["Attachments"].([]any)) != summaryAtts || e["AttachmentCount"] != float64(summaryAtts+10) ||
				e["Preview"] != strings.TrimSpace(strings.Repeat("word ", 40)) {
				t.Fatalf("first page: %d e-mails, More %v; first %.400v", len(list), rep["More"], e)
			}
			t.Logf("first page: %d e-mails in %d bytes", len(list), size)
		}
		if rep["More"] != true {
			break
		}
	}
	since, sinced := "2000-01-01T00:00:00.000000Z", 0
	for {
		rep, size := callRaw(c, "GetAllEmails", map[string]any{"M_time": since})
		if size > mailPageBytes+envelope {
			t.Fatalf("sync page of %d bytes", size)
		}
		sinced += len(emails(rep))
		since = rep["M_time"].(string)
		if rep["More"] != true {
			break
		}
	}
	if len(seen) != 60 || sinced != 60 || pages < 2 {
		t.Fatalf("paged by id: %d distinct of 60 in %d pages; by M_time: %d", len(seen), pages, sinced)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("e-mail %v listed %d times", id, n)
		}
	}
	// The whole e-mail keeps every address and attachment.
	e := fetchEmail(c, 1)
	if len(e["To"].([]any)) != len(to) || len(e["Attachments"].([]any)) != len(atts) {
		t.Fatalf("GetEmail: %d addresses, %d attachments", len(e["To"].([]any)), len(e["Attachments"].([]any)))
	}
}

// A 2 MB e-mail (4 MB as JSON: over NATS's 1 MB maximum payload) is still pushed live: as its
// summary, which the client completes with GetEmail.
func TestLargeEmailIsPushed(t *testing.T) {
	srv, _ := mailServer(t)
	c := register(t, srv, "big")
	addr := c.name + "@" + testMailDomain
	if err := smtpSend(t, srv, "mallory@example.com", []string{addr}, largeMail(t, addr)); err != nil {
		t.Fatal(err)
	}
	e := c.waitPush("EmailReceived of a 2 MB e-mail", isCmd("EmailReceived"))["Email"].(map[string]any)
	checkSummaries(t, []map[string]any{e})
	if size := len(rawFrame(c, "", "EmailReceived")); e["Subject"] != "Large" || size > 4<<10 {
		t.Fatalf("the push (%d bytes): %.300v", size, e)
	}
	if text, _ := fetchEmail(c, e["ID"])["Text"].(string); len(text) < largeBody {
		t.Fatalf("GetEmail: %d bytes of text", len(text))
	}
}

// Whatever is published, a push NATS would refuse as too large reaches the user's sessions as
// a Resync, which makes them fetch what they missed.
func TestOversizedPushBecomesResync(t *testing.T) {
	srv := startServer(t, testConfig(t))
	c := register(t, srv, "huge")
	payload := []byte(`{"cmd":"Huge","Data":"` + strings.Repeat("x", 2<<20) + `"}`)
	srv.db.publish([]string{c.name}, payload, "")
	c.waitPush("a Resync instead", isCmd("Resync"))
	if got := c.pushesMatching(isCmd("Huge")); len(got) != 0 {
		t.Fatalf("the oversized push arrived")
	}
}
