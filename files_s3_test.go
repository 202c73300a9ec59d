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

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
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
	if target["Method"] != "POST" || !strings.Contains(target["URL"].(string), "chatfiles") || fields["key"] != "uploads/"+fileIDOf(target["FileURL"].(string)) {
		t.Fatalf("S3 target: %v", target)
	}
	raw, err := base64.StdEncoding.DecodeString(fields["policy"].(string))
	if err != nil {
		t.Fatal(err)
	}
	var policy struct{ Conditions []any }
	_ = json.Unmarshal(raw, &policy)
	conds, _ := json.Marshal(policy.Conditions)
	for _, want := range []string{`["content-length-range",` + itoa(len(svg)) + `,` + itoa(len(svg)) + `]`, `["eq","$Content-Type","image/svg+xml"]`, `["eq","$key","uploads/`} {
		if !strings.Contains(string(conds), want) {
			t.Fatalf("policy %s lacks %s", conds, want)
		}
	}
	if status := postForm(t, target, svg); status/100 != 2 {
		t.Fatalf("POST to the store: %d", status)
	}
	// Not counted until confirmed; confirmed by UpdateConvoFiles.
	if _, used := quotaOf(alice); used != 0 {
		t.Fatalf("QuotaUsed %d before confirmation", used)
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
