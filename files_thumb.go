package main

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"io"

	// Decoders for the raster types shown inline (image.Decode finds them by registration).
	_ "image/gif"
	_ "image/jpeg"

	_ "golang.org/x/image/bmp"
	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp"
)

// Thumbnails of uploaded images: at most thumbSize on each side, PNG, made at upload time.

const thumbSize = 320

var errImageTooLarge = errors.New("image too large")

// makeThumbnail returns a PNG thumbnail of an image of sniffed type typ, nil for what is not a
// raster image or does not decode. The header's dimensions are checked before anything is
// decoded: a small file may claim a huge picture (a decompression bomb), refused with
// errImageTooLarge before its pixels are allocated.
func (f *Files) makeThumbnail(r io.ReaderAt, typ string) ([]byte, error) {
	if !rasterImage(typ) {
		return nil, nil
	}
	cfg, _, err := image.DecodeConfig(io.NewSectionReader(r, 0, 1<<62))
	if err != nil {
		return nil, nil // served as sniffed; a browser will show it broken at worst
	}
	if err := checkImageSize(cfg); err != nil {
		return nil, err
	}
	f.thumb <- struct{}{}
	defer func() { <-f.thumb }()
	img, _, err := image.Decode(io.NewSectionReader(r, 0, 1<<62))
	if err != nil {
		return nil, nil
	}
	return thumbnailPNG(img)
}

func checkImageSize(cfg image.Config) error {
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxImagePixels {
		return errImageTooLarge
	}
	return nil
}

// thumbnailPNG scales img to fit thumbSize×thumbSize, keeping its aspect ratio.
func thumbnailPNG(img image.Image) ([]byte, error) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w > thumbSize || h > thumbSize {
		if w >= h {
			w, h = thumbSize, max(1, h*thumbSize/w)
		} else {
			w, h = max(1, w*thumbSize/h), thumbSize
		}
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.ApproxBiLinear.Scale(dst, dst.Bounds(), img, b, draw.Src, nil)
	var buf bytes.Buffer
	if err := png.Encode(&buf, dst); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
