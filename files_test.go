package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Test helpers for uploads: ask for a target, send the bytes over a real socket.

// uploadTarget asks GetS3PolicyData for a target for data.
func uploadTarget(c *client, cid, name string, size int, typ string) map[string]any {
	c.t.Helper()
	return c.ok("GetS3PolicyData", map[string]any{"CID": cid, "Name": name, "Size": size, "ContentType": typ})
}

// putBody sends body to an upload target's URL on srv and returns the status and answer.
func putBody(t testing.TB, srv *testServer, target map[string]any, body io.Reader, length int64) (int, string) {
	t.Helper()
	req, err := http.NewRequest("PUT", "http://"+srv.addr+target["URL"].(string), body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = length
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// uploadFile uploads data as name for cid (or "profile") and returns its file URL.
func uploadFile(t testing.TB, srv *testServer, c *client, cid, name string, data []byte) string {
	t.Helper()
	typ := "application/octet-stream"
	if cid == profileCID {
		typ = "image/png"
	}
	target := uploadTarget(c, cid, name, len(data), typ)
	status, body := putBody(t, srv, target, bytes.NewReader(data), int64(len(data)))
	if status != http.StatusOK {
		t.Fatalf("upload of %s: %d %s", name, status, body)
	}
	var res UploadResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || res.FileURL != target["FileURL"] {
		t.Fatalf("upload answer %q: %v", body, err)
	}
	return res.FileURL
}

// getFile GETs a path on srv.
func getFile(t testing.TB, srv *testServer, path string) *http.Response {
	t.Helper()
	resp, err := http.Get("http://" + srv.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func fileToken(c *client) string {
	c.t.Helper()
	return c.ok("GetFileToken", nil)["Token"].(string)
}

func quotaOf(c *client) (quota, used int64) {
	c.t.Helper()
	v := c.ok("GetUserView", nil)
	return int64(v["Quota"].(float64)), int64(v["QuotaUsed"].(float64))
}

func testPNG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := range w {
		for y := range h {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// storedFiles lists the files under the upload directory (temporary ones included).
func storedFiles(t testing.TB, cfg Config) []string {
	t.Helper()
	var names []string
	_ = filepath.WalkDir(filepath.Join(cfg.FilesDir, "uploads"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	return names
}

func TestUploadURLsAreSignedExpiringAndSingleUse(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	alice := register(t, srv, "upl")
	cid := newConvo(t, alice, "uploads")
	data := []byte("hello, file")

	// Forged: another id's signature, a changed expiry, no signature.
	target := uploadTarget(alice, cid, "a.txt", len(data), "text/plain")
	url := target["URL"].(string)
	forged := []string{
		strings.Replace(url, "sig=", "sig=0", 1),
		strings.Replace(url, "exp=", "exp=9", 1),
		url[:strings.Index(url, "&sig=")],
		strings.Replace(url, url[len("/files/upload/"):len("/files/upload/")+32], strings.Repeat("a", 32), 1),
	}
	for _, u := range forged {
		if status, _ := putBody(t, srv, map[string]any{"URL": u}, bytes.NewReader(data), int64(len(data))); status != http.StatusForbidden {
			t.Fatalf("forged %s: status %d, want 403", u, status)
		}
	}
	// Used once, then refused.
	if status, body := putBody(t, srv, target, bytes.NewReader(data), int64(len(data))); status != http.StatusOK {
		t.Fatalf("upload: %d %s", status, body)
	}
	if status, _ := putBody(t, srv, target, bytes.NewReader(data), int64(len(data))); status != http.StatusForbidden {
		t.Fatalf("reused upload URL: status %d, want 403", status)
	}
	// Expired: sign an expiry in the past with the server's own key.
	id := newFileID()
	past := fmt.Sprint(time.Now().Add(-time.Minute).Unix())
	expired := "/files/upload/" + id + "?exp=" + past + "&sig=" + srv.db.files.uploadSig(id, past)
	if status, _ := putBody(t, srv, map[string]any{"URL": expired}, bytes.NewReader(data), int64(len(data))); status != http.StatusForbidden {
		t.Fatalf("expired upload URL: status %d, want 403", status)
	}
	// Concurrent uses of one URL: exactly one stores.
	target = uploadTarget(alice, cid, "b.txt", len(data), "text/plain")
	var wg sync.WaitGroup
	statuses := make(chan int, 4)
	for range 4 {
		wg.Go(func() {
			s, _ := putBody(t, srv, target, bytes.NewReader(data), int64(len(data)))
			statuses <- s
		})
	}
	wg.Wait()
	close(statuses)
	oks := 0
	for s := range statuses {
		if s == http.StatusOK {
			oks++
		}
	}
	if oks != 1 {
		t.Fatalf("%d of 4 concurrent uses of one upload URL succeeded", oks)
	}
	if _, used := quotaOf(alice); used != 2*int64(len(data)) {
		t.Fatalf("QuotaUsed %d, want %d", used, 2*len(data))
	}
}

func TestUploadSizeAndQuotaAreEnforcedBeforeStoring(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultQuota = 1000
	srv := startServer(t, cfg)
	alice := register(t, srv, "quota")
	cid := newConvo(t, alice, "quota")

	alice.fails("GetS3PolicyData", map[string]any{"CID": cid, "Name": "big.bin", "Size": 1001, "ContentType": "application/octet-stream"}, "Over your quota")

	// A body longer or shorter than declared is refused and nothing kept.
	for _, n := range []int{99, 101} {
		target := uploadTarget(alice, cid, "x.bin", 100, "application/octet-stream")
		// Without a Content-Length (chunked), so that the body itself is measured.
		status, _ := putBody(t, srv, target, io.MultiReader(bytes.NewReader(make([]byte, n))), -1)
		if status != http.StatusBadRequest {
			t.Fatalf("%d bytes for 100 declared: status %d, want 400", n, status)
		}
		// With a Content-Length that disagrees: refused before reading.
		target = uploadTarget(alice, cid, "x.bin", 100, "application/octet-stream")
		if status, _ := putBody(t, srv, target, bytes.NewReader(make([]byte, n)), int64(n)); status != http.StatusBadRequest {
			t.Fatalf("Content-Length %d for 100 declared: status %d, want 400", n, status)
		}
	}
	if files := storedFiles(t, cfg); len(files) != 0 {
		t.Fatalf("wrong-size uploads left %v", files)
	}
	if _, used := quotaOf(alice); used != 0 {
		t.Fatalf("QuotaUsed %d after refused uploads", used)
	}

	// Two targets that each fit but not together: both pass GetS3PolicyData, one upload
	// is refused with 413 before a byte is stored.
	t1 := uploadTarget(alice, cid, "one.bin", 600, "application/octet-stream")
	t2 := uploadTarget(alice, cid, "two.bin", 600, "application/octet-stream")
	var wg sync.WaitGroup
	res := make([]int, 2)
	for i, tg := range []map[string]any{t1, t2} {
		wg.Go(func() { res[i], _ = putBody(t, srv, tg, bytes.NewReader(make([]byte, 600)), 600) })
	}
	wg.Wait()
	if !(res[0] == 200 && res[1] == 413 || res[0] == 413 && res[1] == 200) {
		t.Fatalf("two uploads over quota together: statuses %v, want one 200 and one 413", res)
	}
	if files := storedFiles(t, cfg); len(files) != 1 {
		t.Fatalf("stored %v, want one file", files)
	}
	if _, used := quotaOf(alice); used != 600 {
		t.Fatalf("QuotaUsed %d, want 600", used)
	}
}

func TestUploadNamesAreChecked(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	alice := register(t, srv, "names")
	cid := newConvo(t, alice, "names")
	for _, name := range []string{"../../etc/passwd", "..", ".", "a/b", `a\b`, "nul\x00.png", "bell\a", "", strings.Repeat("n", 256)} {
		alice.fails("GetS3PolicyData", map[string]any{"CID": cid, "Name": name, "Size": 10, "ContentType": "text/plain"}, "Name must be")
	}
	alice.fails("GetS3PolicyData", map[string]any{"CID": cid, "Name": "ok.txt", "Size": 10, "ContentType": "text/html\r\nX: y"}, "ContentType")
	alice.fails("GetS3PolicyData", map[string]any{"CID": cid, "Name": "ok.txt", "Size": 0, "ContentType": "text/plain"}, "Size")
	// The stored name is never the user's: a name that looks like a path stays a label.
	url := uploadFile(t, srv, alice, cid, "..%2F..%2Fx.txt", []byte("content"))
	for _, p := range storedFiles(t, cfg) {
		if strings.Contains(p, "x.txt") || !strings.HasSuffix(p, fileIDOf(url)) {
			t.Fatalf("stored as %s", p)
		}
	}
	// Path tricks in file URLs find nothing.
	for _, p := range []string{"/files/..%2F..%2Fetc%2Fpasswd", "/files/" + fileIDOf(url) + "%00", "/files/" + strings.ToUpper(fileIDOf(url))} {
		if resp := getFile(t, srv, p+"?t="+fileToken(alice)); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestFilesAreServedSafelyAndOnlyToMembers(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	alice, bob, eve := register(t, srv, "fa"), register(t, srv, "fb"), register(t, srv, "fe")
	cid := newConvo(t, alice, "safe", bob)
	svg := []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>`)
	svgURL := uploadFile(t, srv, alice, cid, "pic.svg", svg)
	pngURL := uploadFile(t, srv, alice, cid, "pic.png", testPNG(t, 40, 30))

	// Without a token, with a forged one, or as a non-member: refused.
	if resp := getFile(t, srv, pngURL); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("no token: %d", resp.StatusCode)
	}
	bobTok := fileToken(bob)
	forged := strings.Replace(bobTok, bob.name, eve.name, 1)
	if resp := getFile(t, srv, pngURL+"?t="+forged); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("forged token: %d", resp.StatusCode)
	}
	if resp := getFile(t, srv, pngURL+"?t="+fileToken(eve)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("non-member: %d, want 404", resp.StatusCode)
	}
	bobRec, _ := srv.db.getUser(t.Context(), bob.name)
	expired := srv.db.files.fileToken(bobRec, bobRec.Tokens[len(bobRec.Tokens)-1], time.Now().Add(-time.Second))
	if resp := getFile(t, srv, pngURL+"?t="+expired); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("expired token: %d", resp.StatusCode)
	}

	// The SVG (with a script) is a download, never a page: sniffed type, nosniff, sandbox.
	resp := getFile(t, srv, svgURL+"?t="+bobTok)
	body, _ := io.ReadAll(resp.Body)
	h := resp.Header
	if resp.StatusCode != 200 || !bytes.Equal(body, svg) ||
		!strings.HasPrefix(h.Get("Content-Disposition"), "attachment") || !strings.Contains(h.Get("Content-Disposition"), "pic.svg") ||
		h.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(h.Get("Content-Security-Policy"), "sandbox") ||
		!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || strings.Contains(h.Get("Content-Type"), "svg") {
		t.Fatalf("SVG served as %d %v", resp.StatusCode, h)
	}
	// The PNG is shown inline, with its thumbnail.
	resp = getFile(t, srv, pngURL+"?t="+bobTok)
	if resp.Header.Get("Content-Type") != "image/png" || resp.Header.Get("Content-Disposition") != "inline" ||
		resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("PNG served as %v", resp.Header)
	}
	bob.waitPush("FileThumb", func(p map[string]any) bool {
		return p["cmd"] == "FileThumb" && p["fileURL"] == pngURL && p["CID"] == cid
	})
	resp = getFile(t, srv, pngURL+"/thumb?t="+bobTok)
	thumb, _ := io.ReadAll(resp.Body)
	if img, err := png.Decode(bytes.NewReader(thumb)); err != nil || img.Bounds().Dx() != 40 {
		t.Fatalf("thumbnail: %v", err)
	}
	// A member who leaves loses access.
	bob.ok("RemoveUserFromConversation", map[string]any{"CID": cid, "Username": bob.name})
	if resp := getFile(t, srv, pngURL+"?t="+bobTok); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("after leaving: %d, want 404", resp.StatusCode)
	}
}

func TestDecompressionBombIsRefused(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	alice := register(t, srv, "bomb")
	cid := newConvo(t, alice, "bomb")
	bomb := pngClaiming(t, 100000, 100000)
	target := uploadTarget(alice, cid, "bomb.png", len(bomb), "image/png")
	if status, body := putBody(t, srv, target, bytes.NewReader(bomb), int64(len(bomb))); status != http.StatusUnprocessableEntity {
		t.Fatalf("bomb upload: %d %s, want 422", status, body)
	}
	if files := storedFiles(t, cfg); len(files) != 0 {
		t.Fatalf("bomb left %v", files)
	}
	if _, used := quotaOf(alice); used != 0 {
		t.Fatalf("QuotaUsed %d after a refused bomb", used)
	}
}

// storedFileRecord records a stored file of owner for cid without bytes (for list limits).
func storedFileRecord(t testing.TB, srv *testServer, owner, cid string) string {
	t.Helper()
	id := newFileID()
	rec := &FileRecord{ID: id, Owner: owner, CID: cid, Name: "f", Size: 1, State: "stored"}
	if err := putRecord(t.Context(), srv.db.quick, fileKey(id), rec, PutOptions{Mode: CreateOnly}); err != nil {
		t.Fatal(err)
	}
	return fileURLPrefix + id
}

// TestQuotaIntegerEdges: sizes at the integer edges are refused with a clear error and change
// nothing; in particular 2^63−1 (whose sum with the space used wraps negative) neither passes
// the quota check nor, after a failed upload gives it back, resets the space used to 0.
func TestQuotaIntegerEdges(t *testing.T) {
	cfg := testConfig(t)
	cfg.DefaultQuota = 1000
	cfg.MaxFileSize = 0 // only the quota limits sizes: the comparisons alone must hold
	srv := startServer(t, cfg)
	alice := register(t, srv, "edge")
	cid := newConvo(t, alice, "edges")
	uploadFile(t, srv, alice, cid, "first.bin", make([]byte, 400))
	policy := func(size any) map[string]any {
		return map[string]any{"CID": cid, "Name": "x.bin", "Size": size, "ContentType": "application/octet-stream"}
	}
	for _, size := range []int64{-1, 0, math.MinInt64, math.MaxInt64} {
		alice.fails("GetS3PolicyData", policy(size), "Size must be")
	}
	for _, size := range []int64{601, math.MaxInt64 - 1, math.MaxInt64 - 399, math.MaxInt64 - 400} {
		alice.fails("GetS3PolicyData", policy(size), "Over your quota")
	}
	// 2^63 does not fit an int64 at all: refused as a bad request.
	alice.sendRaw(`{"cmd":"GetS3PolicyData","rid":"big","CID":"` + cid + `","Name":"x.bin","Size":9223372036854775808,"ContentType":"text/plain"}`)
	if rep := alice.waitReply("big"); rep["error"] == nil {
		t.Fatalf("Size 2^63: %v", rep)
	}
	if _, used := quotaOf(alice); used != 400 {
		t.Fatalf("QuotaUsed %d after refused sizes, want 400", used)
	}

	// The reservation itself, at the edges: over quota by one, 2^63−1, giving back more than used.
	f := srv.db.files
	for _, n := range []int64{601, math.MaxInt64} {
		if _, err := f.reserve(t.Context(), alice.name, n); !errors.Is(err, errOverQuota) {
			t.Fatalf("reserve(%d): %v, want over quota", n, err)
		}
	}
	for _, n := range []int64{-401, math.MinInt64, -math.MaxInt64} {
		if _, err := f.reserve(t.Context(), alice.name, n); !errors.Is(err, errQuotaUnderflow) {
			t.Fatalf("reserve(%d): %v, want an underflow refused", n, err)
		}
	}
	if _, used := quotaOf(alice); used != 400 {
		t.Fatalf("QuotaUsed %d after refused reservations, want 400", used)
	}
	// Exactly what is left fits; one byte more does not.
	target := uploadTarget(alice, cid, "rest.bin", 600, "application/octet-stream")
	alice.fails("GetS3PolicyData", policy(int64(601)), "Over your quota")
	if status, body := putBody(t, srv, target, bytes.NewReader(make([]byte, 600)), 600); status != http.StatusOK {
		t.Fatalf("upload of exactly the space left: %d %s", status, body)
	}
	if _, used := quotaOf(alice); used != 1000 {
		t.Fatalf("QuotaUsed %d, want 1000", used)
	}
}

// TestMaxFileSize: -max-file-size refuses a larger file before any upload URL is given.
func TestMaxFileSize(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxFileSize = 100
	srv := startServer(t, cfg)
	alice := register(t, srv, "maxf")
	cid := newConvo(t, alice, "maxf")
	alice.fails("GetS3PolicyData", map[string]any{"CID": cid, "Name": "big.bin", "Size": 101, "ContentType": "application/octet-stream"}, "at most 100 B")
	uploadFile(t, srv, alice, cid, "ok.bin", make([]byte, 100))
}

// TestFileTokensEndWithTheirSession: a file token stops working when the session that asked for
// it logs out (another session's goes on), when the password is changed or reset, and after an
// hour; a token edited to name another session or user is refused.
func TestFileTokensEndWithTheirSession(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	alice, _ := registerWith(t, srv, "tok", map[string]any{"secQuests": []map[string]any{
		{"Question": "First pet?", "Answer": "Rex"}, {"Question": "Town?", "Answer": "Ghent"}}})
	cid := newConvo(t, alice, "tokens")
	url := uploadFile(t, srv, alice, cid, "a.txt", []byte("secret plans"))
	status := func(tok string) int {
		t.Helper()
		return getFile(t, srv, url+"?t="+tok).StatusCode
	}
	second, third := login(t, srv, alice.name), login(t, srv, alice.name)
	rep := alice.ok("GetFileToken", nil)
	tok1 := rep["Token"].(string)
	exp, err := time.Parse(time.RFC3339Nano, rep["Expires"].(string))
	if err != nil || exp.Before(time.Now().Add(50*time.Minute)) || exp.After(time.Now().Add(61*time.Minute)) {
		t.Fatalf("token expires %v (%v), want in an hour", rep["Expires"], err)
	}
	tok2, tok3 := fileToken(second), fileToken(third)
	for _, tok := range []string{tok1, tok2, tok3} {
		if s := status(tok); s != http.StatusOK {
			t.Fatalf("fresh token: %d", s)
		}
	}
	// Edited tokens: another session's id with this MAC, another user's name.
	p1, p2 := strings.Split(tok1, "."), strings.Split(tok2, ".")
	for _, forged := range []string{
		strings.Join([]string{p1[0], p2[1], p1[2], p1[3]}, "."),
		strings.Join([]string{p1[0], p1[1], "99999999999", p1[3]}, "."),
		"someone_else." + strings.Join(p1[1:], "."),
		tok1 + ".x",
	} {
		if s := status(forged); s != http.StatusForbidden {
			t.Fatalf("forged token %q: %d, want 403", forged, s)
		}
	}

	alice.ok("Logout", nil)
	if s := status(tok1); s != http.StatusForbidden {
		t.Fatalf("token of a logged-out session: %d, want 403", s)
	}
	if s := status(tok2); s != http.StatusOK {
		t.Fatalf("another session's token after a logout: %d, want 200", s)
	}

	second.ok("ChangeUserPassword", map[string]any{"OldPassword": testPassword, "NewPassword": "another password 2"})
	if s := status(tok2); s != http.StatusForbidden {
		t.Fatalf("token from before the password change, same session: %d, want 403", s)
	}
	if s := status(tok3); s != http.StatusForbidden {
		t.Fatalf("token of another session after a password change: %d, want 403", s)
	}
	tok2 = fileToken(second) // the session goes on with a new resume token, and a new file token
	if s := status(tok2); s != http.StatusOK {
		t.Fatalf("new token after the password change: %d", s)
	}

	c := dialRaw(t, srv)
	if r := c.ok("ResetUserPassword", map[string]any{"username": alice.name, "password": "new password 3",
		"secQuests": []map[string]any{{"Answer": "rex"}, {"Answer": "ghent"}}}); r["success"] != "true" {
		t.Fatalf("reset: %v", r)
	}
	if s := status(tok2); s != http.StatusForbidden {
		t.Fatalf("token after a password reset: %d, want 403", s)
	}
}
