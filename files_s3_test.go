package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
)

// The S3 mode against gofakes3 run in-process on loopback. gofakes3 accepts browser POST
// uploads and honours response-content-* overrides on GET, but checks neither signatures nor
// policy conditions: the policy's conditions are checked here by decoding it, and a body of
// the wrong size (which a real store refuses by policy) is caught at confirmation.

func startFakeS3(t *testing.T, bucket string) string {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(ts.Close)
	return ts.URL
}

// postForm sends data to a presigned POST target as a browser form would.
func postForm(t *testing.T, target map[string]any, data []byte) int {
	t.Helper()
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	for k, v := range target["Fields"].(map[string]any) {
		_ = w.WriteField(k, v.(string))
	}
	fw, _ := w.CreateFormFile("file", "upload")
	fw.Write(data)
	w.Close()
	resp, err := http.Post(target["URL"].(string), w.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestS3UploadsUsePresignedPostAndGet(t *testing.T) {
	cfg := testConfig(t)
	cfg.S3URL = startFakeS3(t, "chatfiles") + "/chatfiles"
	cfg.S3AccessKey, cfg.S3SecretKey = "AKIDTEST", "secret-for-tests"
	srv := startServer(t, cfg)
	alice, bob, eve := register(t, srv, "s3a"), register(t, srv, "s3b"), register(t, srv, "s3e")
	cid := newConvo(t, alice, "s3", bob)
	svg := []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)

	target := uploadTarget(alice, cid, "x.svg", len(svg), "image/svg+xml")
	fields := target["Fields"].(map[string]any)
	if target["Method"] != "POST" || !strings.Contains(target["URL"].(string), "chatfiles") || fields["key"] != "incoming/"+fileIDOf(target["FileURL"].(string)) {
		t.Fatalf("S3 target: %v", target)
	}
	raw, err := base64.StdEncoding.DecodeString(fields["policy"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var policy struct{ Conditions []any }
	_ = json.Unmarshal(raw, &policy)
	conds, _ := json.Marshal(policy.Conditions)
	for _, want := range []string{`["content-length-range",` + itoa(len(svg)) + `,` + itoa(len(svg)) + `]`, `["eq","$Content-Type","image/svg+xml"]`, `["eq","$key","incoming/`} {
		if !strings.Contains(string(conds), want) {
			t.Fatalf("policy %s lacks %s", conds, want)
		}
	}
	if status := postForm(t, target, svg); status/100 != 2 {
		t.Fatalf("POST to the store: %d", status)
	}
	// Counted from the moment the policy was handed out; confirmed by UpdateConvoFiles.
	if _, used := quotaOf(alice); used != int64(len(svg)) {
		t.Fatalf("QuotaUsed %d before confirmation, want %d", used, len(svg))
	}
	url := target["FileURL"].(string)
	alice.ok("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": url})
	if _, used := quotaOf(alice); used != int64(len(svg)) {
		t.Fatalf("QuotaUsed %d after confirmation, want %d", used, len(svg))
	}

	// Served through a short presigned GET that makes the SVG a sandboxed download.
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get("http://" + srv.addr + url + "?t=" + fileToken(bob))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.Contains(loc, "X-Amz-Signature=") || !strings.Contains(loc, "X-Amz-Expires=300") {
		t.Fatalf("GET: %d to %q", resp.StatusCode, loc)
	}
	resp, err = http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, svg) || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || strings.Contains(resp.Header.Get("Content-Type"), "svg") {
		t.Fatalf("presigned GET: %q %v", got, resp.Header)
	}
	if resp := getFile(t, srv, url+"?t="+fileToken(eve)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("non-member: %d", resp.StatusCode)
	}

	// A body of another size is caught at confirmation and not kept.
	target = uploadTarget(alice, cid, "y.bin", 10, "application/octet-stream")
	if status := postForm(t, target, make([]byte, 20)); status/100 != 2 {
		t.Fatalf("POST: %d", status)
	}
	alice.fails("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": target["FileURL"]}, "not the declared size")

	// Removal deletes the object and gives the space back.
	alice.ok("RemoveConvoFile", map[string]any{"CID": cid, "fileURL": url})
	if _, used := quotaOf(alice); used != 0 {
		t.Fatalf("QuotaUsed %d after removal", used)
	}
	if resp, err := http.Get(loc); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("object after removal: %v %v", resp.StatusCode, err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// s3Object reads an object of the fake store's bucket (nil when there is none).
func s3Object(t *testing.T, srv *testServer, key string) []byte {
	t.Helper()
	s := srv.db.files.s3
	obj, err := s.client.GetObject(t.Context(), s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if minio.ToErrorResponse(err).StatusCode == http.StatusNotFound {
		return nil
	}
	if err != nil {
		t.Fatalf("reading %s: %v", key, err)
	}
	return b
}

// TestS3ReservesAtIssueSweepsAndServesWhatWasChecked: the quota is reserved when a policy is
// handed out (two policies cannot both take the last space); an unclaimed upload is deleted
// after its policy expired and its space given back; a claimed file is copied to a key no policy
// names, so posting again under its policy (an HTML page after a picture was checked) changes
// nothing that is served, and what was posted is swept.
func TestS3ReservesAtIssueSweepsAndServesWhatWasChecked(t *testing.T) {
	cfg := testConfig(t)
	cfg.S3URL = startFakeS3(t, "chatfiles") + "/chatfiles"
	cfg.S3AccessKey, cfg.S3SecretKey = "AKIDTEST", "secret-for-tests"
	cfg.DefaultQuota = 1000
	srv := startServer(t, cfg)
	alice, bob := register(t, srv, "s3r"), register(t, srv, "s3s")
	cid := newConvo(t, alice, "s3 reserve", bob)
	f := srv.db.files

	// Reserved at issue: the second policy for the same space is refused.
	unclaimed := uploadTarget(alice, cid, "a.bin", 600, "application/octet-stream")
	if _, used := quotaOf(alice); used != 600 {
		t.Fatalf("QuotaUsed %d after a policy of 600, want 600", used)
	}
	alice.fails("GetS3PolicyData", map[string]any{"CID": cid, "Name": "b.bin", "Size": 600, "ContentType": "application/octet-stream"}, "Over your quota")
	if status := postForm(t, unclaimed, make([]byte, 600)); status/100 != 2 {
		t.Fatalf("POST: %d", status)
	}
	// Not yet expired: the sweeper leaves it.
	f.sweepUploads(t.Context(), time.Now())
	if _, used := quotaOf(alice); used != 600 || s3Object(t, srv, s3IncomingKey(fileIDOf(unclaimed["FileURL"].(string)))) == nil {
		t.Fatalf("an unexpired upload was swept (QuotaUsed %d)", used)
	}

	// A picture, claimed; then the same policy used again for an HTML page.
	pic := testPNG(t, 20, 20)
	target := uploadTarget(alice, cid, "pic.png", len(pic), "image/png")
	if status := postForm(t, target, pic); status/100 != 2 {
		t.Fatalf("POST: %d", status)
	}
	url := target["FileURL"].(string)
	alice.ok("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": url})
	id := fileIDOf(url)
	page := append([]byte("<html><script>alert(1)</script>"), make([]byte, len(pic))...)[:len(pic)]
	if status := postForm(t, target, page); status/100 != 2 {
		t.Fatalf("POST again: %d", status)
	}
	alice.ok("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": url}) // claiming again changes nothing
	if got := s3Object(t, srv, s3Key(id)); !bytes.Equal(got, pic) {
		t.Fatalf("served object after a second POST: %q", got[:min(len(got), 32)])
	}
	rec, err := f.getFile(t.Context(), id)
	if err != nil || rec.Type != "image/png" {
		t.Fatalf("record %+v (%v)", rec, err)
	}
	if _, used := quotaOf(alice); used != 600+int64(len(pic)) {
		t.Fatalf("QuotaUsed %d, want %d", used, 600+len(pic))
	}

	// After expiry (and the grace for the store's clock) both policies are swept: the unclaimed
	// file and its reservation go, the claimed one stays, and nothing is left under the
	// incoming keys.
	later := time.Now().Add(uploadTTL + s3SweepGrace + time.Minute)
	// (The database is shared with other tests: count nothing but this test's files.)
	f.sweepUploads(t.Context(), later)
	if _, used := quotaOf(alice); used != int64(len(pic)) {
		t.Fatalf("QuotaUsed %d after the sweep, want %d", used, len(pic))
	}
	for _, key := range []string{s3IncomingKey(id), s3IncomingKey(fileIDOf(unclaimed["FileURL"].(string))), s3Key(fileIDOf(unclaimed["FileURL"].(string)))} {
		if got := s3Object(t, srv, key); got != nil {
			t.Fatalf("%s left after the sweep", key)
		}
	}
	if got := s3Object(t, srv, s3Key(id)); !bytes.Equal(got, pic) {
		t.Fatal("the claimed file was swept")
	}
	alice.fails("UpdateConvoFiles", map[string]any{"CID": cid, "fileURL": unclaimed["FileURL"]}, "not a file you uploaded")
	var left int
	if err := srv.db.pool.QueryRow(t.Context(), "SELECT count(*) FROM s3_uploads WHERE owner = $1", alice.name).Scan(&left); err != nil || left != 0 {
		t.Fatalf("%d policies of alice's left to sweep (%v)", left, err)
	}
}
