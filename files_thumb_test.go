package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"net/http"
	"runtime"
	"testing"
)

// pngClaiming is a valid PNG header whose IHDR claims w×h pixels, with one tiny IDAT.
func pngClaiming(t testing.TB, w, h uint32) []byte {
	return pngClaimingDepth(t, w, h, 8)
}

// pngClaimingDepth is pngClaiming with 8- or 16-bit RGBA samples.
func pngClaimingDepth(t testing.TB, w, h uint32, depth byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	buf.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		_ = binary.Write(&buf, binary.BigEndian, uint32(len(data)))
		buf.WriteString(typ)
		buf.Write(data)
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		_ = binary.Write(&buf, binary.BigEndian, crc.Sum32())
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = depth, 6 // RGBA
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return buf.Bytes()
}

// progressiveJPEGClaiming is a few hundred bytes of progressive JPEG (SOF2) that claims w×h
// pixels in three full-resolution components, with a quantization table, a Huffman table and a
// first scan, so that a decoder gets as far as allocating its coefficients.
func progressiveJPEGClaiming(t testing.TB, w, h uint16) []byte {
	t.Helper()
	var b bytes.Buffer
	seg := func(marker byte, data []byte) {
		b.Write([]byte{0xff, marker})
		_ = binary.Write(&b, binary.BigEndian, uint16(len(data)+2))
		b.Write(data)
	}
	b.Write([]byte{0xff, 0xd8})
	seg(0xdb, append([]byte{0x00}, bytes.Repeat([]byte{1}, 64)...)) // DQT 0
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 3}
	for id := byte(1); id <= 3; id++ {
		sof = append(sof, id, 0x11, 0) // 1×1 sampling: no chroma subsampling
	}
	seg(0xc2, sof)
	// DHT: DC table 0 with a single 1-bit code for category 0.
	dht := append([]byte{0x00, 1}, make([]byte, 15)...)
	seg(0xc4, append(dht, 0))
	seg(0xda, []byte{3, 1, 0x00, 2, 0x00, 3, 0x00, 0, 0, 0}) // DC first scan of all three
	b.Write(bytes.Repeat([]byte{0x00}, 64))
	b.Write([]byte{0xff, 0xd9})
	return b.Bytes()
}

func TestThumbnailsOfPNGAndJPEG(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 1000, 500))
	var pngBuf, jpgBuf bytes.Buffer
	if err := png.Encode(&pngBuf, src); err != nil {
		t.Fatal(err)
	}
	if err := jpeg.Encode(&jpgBuf, src, nil); err != nil {
		t.Fatal(err)
	}
	for typ, data := range map[string][]byte{"image/png": pngBuf.Bytes(), "image/jpeg": jpgBuf.Bytes()} {
		th, err := makeThumbnail(bytes.NewReader(data), typ)
		if err != nil || th == nil {
			t.Fatalf("%s: thumbnail %v", typ, err)
		}
		img, err := png.Decode(bytes.NewReader(th))
		if err != nil || img.Bounds().Dx() != thumbSize || img.Bounds().Dy() != thumbSize/2 {
			t.Fatalf("%s: thumbnail %v, %v", typ, img.Bounds(), err)
		}
	}
	// Not an image (SVG included): no thumbnail, no error.
	if th, err := makeThumbnail(bytes.NewReader([]byte("<svg/>")), "text/xml; charset=utf-8"); th != nil || err != nil {
		t.Fatalf("SVG thumbnail: %v %v", th != nil, err)
	}
}

// TestImageCostFromHeaders: the bytes a decode allocates, from the header alone.
func TestImageCostFromHeaders(t *testing.T) {
	var baseline bytes.Buffer
	if err := jpeg.Encode(&baseline, image.NewRGBA(image.Rect(0, 0, 64, 48)), nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		typ  string
		want int64
	}{
		{"baseline 4:2:0 JPEG", baseline.Bytes(), "image/jpeg", 64*48 + 2*32*24},
		{"progressive 4:4:4 JPEG", progressiveJPEGClaiming(t, 7000, 7000), "image/jpeg", 5 * 3 * 7000 * 7000},
		{"8-bit RGBA PNG", pngClaimingDepth(t, 1000, 1000, 8), "image/png", 4 * 1000 * 1000},
		{"16-bit RGBA PNG", pngClaimingDepth(t, 1000, 1000, 16), "image/png", 8 * 1000 * 1000},
	} {
		got, err := imageCost(bytes.NewReader(tc.data), tc.typ)
		if err != nil || got != tc.want {
			t.Errorf("%s: cost %d (%v), want %d", tc.name, got, err, tc.want)
		}
	}
}

func TestThumbnailRefusesBombWithoutAllocating(t *testing.T) {
	for name, bomb := range map[string][]byte{
		"10 gigapixel PNG":       pngClaiming(t, 100000, 100000),
		"16-bit PNG":             pngClaimingDepth(t, 5000, 5000, 16),
		"progressive JPEG 7000²": progressiveJPEGClaiming(t, 7000, 7000),
	} {
		typ := http.DetectContentType(bomb)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := makeThumbnail(bytes.NewReader(bomb), typ)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, errImageTooLarge) && !errors.Is(err, errDecodeCost) {
			t.Fatalf("%s (%s): %v, want refused", name, typ, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
			t.Fatalf("refusing the %s allocated %d bytes", name, grew)
		}
	}
}

// TestThumbnailBombsThroughUploads: tiny files that claim huge decoded images (a progressive
// JPEG of 7000×7000, a 16-bit PNG), uploaded through the real socket, are stored and shown as
// files but never decoded: the server allocates a few megabytes for them, not the hundreds a
// decode would take.
func TestThumbnailBombsThroughUploads(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	alice := register(t, srv, "tbomb")
	cid := newConvo(t, alice, "bombs")
	for _, b := range []struct {
		name string
		data []byte
	}{
		{"16-bit PNG", pngClaimingDepth(t, 5000, 5000, 16)},
		{"progressive JPEG", progressiveJPEGClaiming(t, 7000, 7000)},
	} {
		name, bomb := b.name, b.data
		typ := http.DetectContentType(bomb)
		target := uploadTarget(alice, cid, "bomb", len(bomb), typ)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		status, body := putBody(t, srv, target, bytes.NewReader(bomb), int64(len(bomb)))
		runtime.ReadMemStats(&after)
		if status != http.StatusOK {
			t.Fatalf("%s (%d bytes): %d %s", name, len(bomb), status, body)
		}
		var res UploadResult
		if err := json.Unmarshal([]byte(body), &res); err != nil || res.Thumb || res.Type != typ {
			t.Fatalf("%s: answer %s (%v), want no thumbnail", name, body, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
			t.Fatalf("%s of %d bytes: the server allocated %d MB", name, len(bomb), grew>>20)
		}
		if resp := getFile(t, srv, res.FileURL+"/thumb?t="+fileToken(alice)); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("%s: thumbnail answered %d", name, resp.StatusCode)
		}
	}
}

// TestThumbnailsAreFairAndSkippedWhenBusy: one uploader's many images wait in their own line:
// another uploader's image is made right after the one being made, before the first uploader's
// others; past its share an uploader's images get no thumbnail (the upload still succeeds).
// The order is the order of the FileThumb pushes a member of both conversations gets.
func TestThumbnailsAreFairAndSkippedWhenBusy(t *testing.T) {
	cfg := testConfig(t)
	srv := startServer(t, cfg)
	alice, bob, carol := register(t, srv, "tfa"), register(t, srv, "tfb"), register(t, srv, "tfc")
	flood := newConvo(t, alice, "flood", carol)
	quiet := newConvo(t, bob, "quiet", carol)
	gate := make(chan struct{})
	first := true
	hook := func(string) {
		if first {
			first = false
			<-gate // the worker holds the first image until every upload is in
		}
	}
	srv.db.files.thumbs.hook.Store(&hook)
	img := testPNG(t, 40, 30)
	upload := func(c *client, cid string) UploadResult {
		t.Helper()
		target := uploadTarget(c, cid, "pic.png", len(img), "image/png")
		status, body := putBody(t, srv, target, bytes.NewReader(img), int64(len(img)))
		var res UploadResult
		if err := json.Unmarshal([]byte(body), &res); status != http.StatusOK || err != nil {
			t.Fatalf("upload: %d %s", status, body)
		}
		return res
	}
	var aliceURLs []string
	for i := range 12 {
		res := upload(alice, flood)
		if res.Thumb != (i < thumbPerUser) {
			t.Fatalf("alice's image %d: Thumb %v, want %v (share of %d)", i, res.Thumb, i < thumbPerUser, thumbPerUser)
		}
		aliceURLs = append(aliceURLs, res.FileURL)
	}
	bobs := upload(bob, quiet)
	if !bobs.Thumb {
		t.Fatal("bob's image was not queued")
	}
	close(gate)
	var order []string
	for range thumbPerUser + 1 {
		p := carol.waitPush("FileThumb", func(p map[string]any) bool { return p["cmd"] == "FileThumb" })
		order = append(order, p["fileURL"].(string))
	}
	want := []string{aliceURLs[0], bobs.FileURL, aliceURLs[1], aliceURLs[2], aliceURLs[3]}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("thumbnails made in the order %v, want %v (bob's second)", order, want)
		}
	}
	tok := fileToken(carol)
	if resp := getFile(t, srv, bobs.FileURL+"/thumb?t="+tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's thumbnail: %d", resp.StatusCode)
	}
	skipped := aliceURLs[thumbPerUser]
	if resp := getFile(t, srv, skipped+"/thumb?t="+tok); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a skipped image's thumbnail: %d, want 404", resp.StatusCode)
	}
	if resp := getFile(t, srv, skipped+"?t="+tok); resp.StatusCode != http.StatusOK {
		t.Fatalf("a skipped image itself: %d, want 200", resp.StatusCode)
	}
}
