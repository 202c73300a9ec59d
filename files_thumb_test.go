package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"runtime"
	"testing"
)

// pngClaiming is a valid PNG header whose IHDR claims w×h pixels, with one tiny IDAT.
func pngClaiming(t testing.TB, w, h uint32) []byte {
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
	ihdr[8], ihdr[9] = 8, 6 // 8-bit RGBA
	chunk("IHDR", ihdr)
	chunk("IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk("IEND", nil)
	return buf.Bytes()
}

func TestThumbnailsOfPNGAndJPEG(t *testing.T) {
	f := &Files{thumb: make(chan struct{}, 1)}
	src := image.NewRGBA(image.Rect(0, 0, 1000, 500))
	var pngBuf, jpgBuf bytes.Buffer
	if err := png.Encode(&pngBuf, src); err != nil {
		t.Fatal(err)
	}
	if err := jpeg.Encode(&jpgBuf, src, nil); err != nil {
		t.Fatal(err)
	}
	for typ, data := range map[string][]byte{"image/png": pngBuf.Bytes(), "image/jpeg": jpgBuf.Bytes()} {
		th, err := f.makeThumbnail(bytes.NewReader(data), typ)
		if err != nil || th == nil {
			t.Fatalf("%s: thumbnail %v", typ, err)
		}
		img, err := png.Decode(bytes.NewReader(th))
		if err != nil || img.Bounds().Dx() != thumbSize || img.Bounds().Dy() != thumbSize/2 {
			t.Fatalf("%s: thumbnail %v, %v", typ, img.Bounds(), err)
		}
	}
	// Not an image (SVG included): no thumbnail, no error.
	if th, err := f.makeThumbnail(bytes.NewReader([]byte("<svg/>")), "text/xml; charset=utf-8"); th != nil || err != nil {
		t.Fatalf("SVG thumbnail: %v %v", th != nil, err)
	}
}

func TestThumbnailRefusesBombWithoutAllocating(t *testing.T) {
	f := &Files{thumb: make(chan struct{}, 1)}
	bomb := pngClaiming(t, 100000, 100000) // 10 gigapixels: 40 GB decoded
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := f.makeThumbnail(bytes.NewReader(bomb), "image/png")
	runtime.ReadMemStats(&after)
	if !errors.Is(err, errImageTooLarge) {
		t.Fatalf("bomb: %v, want errImageTooLarge", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("refusing the bomb allocated %d bytes", grew)
	}
}
