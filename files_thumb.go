package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	// Decoders for the raster types shown inline (image.Decode finds them by registration).
	_ "image/gif"
	_ "image/jpeg"

	"github.com/pquerna/ffjson/ffjson"
	"github.com/prometheus/client_golang/prometheus"
	_ "golang.org/x/image/bmp"
	"golang.org/x/image/draw"
	_ "golang.org/x/image/webp"
)

// Thumbnails of uploaded images: at most thumbSize on each side, PNG. They are made off the
// upload path: an upload only queues its image, and a worker makes the thumbnail and tells the
// conversation's members (FileThumb), so that the client, which showed the file without one,
// shows it then. A thumbnail is a comfort: when the queue or the uploader's share of it is full,
// or the image would cost too much to decode, there is none.
//
// What a decode costs is known before it starts: the bytes of the decoded image (and of the
// decoder's working buffers) follow from the header: width × height × bytes per pixel, where
// the bytes per pixel depend on the format, its bit depth and layout. A progressive JPEG keeps
// 4 bytes per sample of coefficients besides the picture (15 bytes a pixel without chroma
// subsampling), a 16-bit PNG 8 bytes a pixel, an interlaced PNG a second copy: so a 342-byte file
// that claims 7000×7000 pixels would take 700 MB. An image over thumbDecodeBytes is not decoded;
// one over maxImagePixels is refused at upload.

const (
	thumbSize        = 320
	thumbDecodeBytes = 128 << 20 // the most one thumbnail's decode may allocate
	thumbWorkers     = 1         // decodes at once: memory is thumbWorkers × thumbDecodeBytes
	thumbQueueLen    = 64        // images waiting or being decoded, all users
	thumbPerUser     = 4         // of those, one uploader's
	jpegHeaderScan   = 1 << 20   // bytes read looking for a JPEG's frame header
)

var (
	errImageTooLarge = errors.New("image too large")
	errDecodeCost    = errors.New("image too costly to decode for a thumbnail")
)

// imageCost is what decoding an image of sniffed type typ would allocate, in bytes, from its
// header; errImageTooLarge when it claims more than maxImagePixels (or no pixels).
func imageCost(r io.ReaderAt, typ string) (int64, error) {
	cfg, _, err := image.DecodeConfig(io.NewSectionReader(r, 0, 1<<62))
	if err != nil {
		return 0, err
	}
	if err := checkImageSize(cfg); err != nil {
		return 0, err
	}
	px := int64(cfg.Width) * int64(cfg.Height)
	switch typ {
	case "image/jpeg":
		return jpegCost(r, cfg)
	case "image/png":
		return pngCost(r, px)
	case "image/gif":
		return px, nil // a paletted frame within the logical screen
	case "image/webp":
		return webpCost(r, px), nil
	}
	return 4 * px, nil // BMP: RGBA
}

func checkImageSize(cfg image.Config) error {
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxImagePixels {
		return errImageTooLarge
	}
	return nil
}

// pngCost reads the IHDR: 16-bit samples decode to 8 bytes a pixel, palettes to 1, the rest
// to 4; Adam7 interlacing decodes each pass into an image of its own before merging.
func pngCost(r io.ReaderAt, px int64) (int64, error) {
	var ihdr [13]byte
	if _, err := r.ReadAt(ihdr[:], 16); err != nil {
		return 0, fmt.Errorf("reading the PNG header: %w", err)
	}
	depth, colorType, interlace := ihdr[8], ihdr[9], ihdr[12]
	bpp := int64(4)
	switch {
	case depth == 16:
		bpp = 8
	case colorType == 3:
		bpp = 1
	}
	if interlace != 0 {
		bpp *= 2
	}
	return px * bpp, nil
}

// webpCost: lossy WebP decodes to 4:2:0 YCbCr (1.5 bytes a pixel, with room for the decoder's
// rows); lossless, or the extended format that may be either and carry alpha, to 32-bit pixels
// through transforms that allocate copies.
func webpCost(r io.ReaderAt, px int64) int64 {
	var fourcc [4]byte
	if _, err := r.ReadAt(fourcc[:], 12); err == nil && string(fourcc[:]) == "VP8 " {
		return 3 * px
	}
	return 16 * px
}

// jpegCost reads the frame header (SOFn): the components and their sampling factors give the
// planes Go's decoder allocates (rounded up to whole MCUs); a progressive frame (SOF2) adds a
// block of 64 int32 coefficients per 8×8 block of each plane; four components (CMYK) add the
// black plane and the converted 4-byte image.
func jpegCost(r io.ReaderAt, cfg image.Config) (int64, error) {
	sof, progressive, err := jpegFrame(r)
	if err != nil {
		return 0, err
	}
	n := int(sof[5])
	if n != 1 && n != 3 && n != 4 || len(sof) < 6+3*n {
		return 0, fmt.Errorf("JPEG with %d components", n)
	}
	hmax, vmax := 1, 1
	for i := range n {
		hv := sof[6+3*i+1]
		hmax, vmax = max(hmax, int(hv>>4)), max(vmax, int(hv&15))
	}
	mcuW, mcuH := int64(8*hmax), int64(8*vmax)
	w := (int64(cfg.Width) + mcuW - 1) / mcuW * mcuW
	h := (int64(cfg.Height) + mcuH - 1) / mcuH * mcuH
	var planes int64
	for i := range n {
		hv := sof[6+3*i+1]
		planes += w * h * int64(hv>>4) * int64(hv&15) / int64(hmax*vmax)
	}
	cost := planes
	if progressive {
		cost += 4 * planes
	}
	if n == 4 {
		cost += 4 * w * h
	}
	return cost, nil
}

// jpegFrame finds a JPEG's SOF segment (after the length) and whether it is progressive.
func jpegFrame(r io.ReaderAt) ([]byte, bool, error) {
	br := bufio.NewReader(io.NewSectionReader(r, 2, jpegHeaderScan)) // after SOI
	for {
		b, err := br.ReadByte()
		if err != nil {
			return nil, false, fmt.Errorf("no JPEG frame header: %w", err)
		}
		if b != 0xff {
			continue
		}
		m, err := br.ReadByte()
		if err != nil {
			return nil, false, fmt.Errorf("no JPEG frame header: %w", err)
		}
		if m == 0xff || m == 0 || m == 0x01 || m >= 0xd0 && m <= 0xd8 {
			continue // fill, stuffing, TEM, RSTn, SOI: no length
		}
		var l [2]byte
		if _, err := io.ReadFull(br, l[:]); err != nil {
			return nil, false, fmt.Errorf("reading a JPEG segment: %w", err)
		}
		n := int(binary.BigEndian.Uint16(l[:])) - 2
		if n < 0 {
			return nil, false, errors.New("bad JPEG segment length")
		}
		if m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc {
			seg := make([]byte, n)
			if _, err := io.ReadFull(br, seg); err != nil || n < 6 {
				return nil, false, errors.New("short JPEG frame header")
			}
			return seg, m == 0xc2 || m == 0xc6 || m == 0xca || m == 0xce, nil
		}
		if _, err := br.Discard(n); err != nil {
			return nil, false, fmt.Errorf("reading a JPEG segment: %w", err)
		}
	}
}

// makeThumbnail returns a PNG thumbnail of an image of sniffed type typ: nil for what is not a
// raster image or does not decode, errImageTooLarge or errDecodeCost (before anything is
// decoded) for what would cost too much.
func makeThumbnail(r io.ReaderAt, typ string) ([]byte, error) {
	if !rasterImage(typ) {
		return nil, nil
	}
	cost, err := imageCost(r, typ)
	if errors.Is(err, errImageTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, nil // served as sniffed; a browser will show it broken at worst
	}
	if cost > thumbDecodeBytes {
		return nil, errDecodeCost
	}
	img, _, err := image.Decode(io.NewSectionReader(r, 0, 1<<62))
	if err != nil {
		return nil, nil
	}
	return thumbnailPNG(img)
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

// thumbJob is a stored image waiting for its thumbnail.
type thumbJob struct {
	id, owner, cid, typ string
}

// thumbQueue holds thumbnail jobs by uploader and hands out the oldest job of the uploader
// served least recently, so that one uploader's many images delay another's by at most one
// image per worker.
type thumbQueue struct {
	mu     sync.Mutex
	byUser map[string][]thumbJob // waiting
	served map[string]uint64     // when each uploader with jobs was last served (0: not yet)
	since  map[string]uint64     // when each uploader's oldest waiting job came
	active map[string]int        // waiting or being made, by uploader
	total  int
	seq    uint64
	wake   chan struct{}
}

func newThumbQueue() *thumbQueue {
	return &thumbQueue{byUser: map[string][]thumbJob{}, served: map[string]uint64{}, since: map[string]uint64{},
		active: map[string]int{}, wake: make(chan struct{}, 1)}
}

// offer queues j unless the queue or its uploader's share is full.
func (q *thumbQueue) offer(j thumbJob) bool {
	q.mu.Lock()
	if q.total >= thumbQueueLen || q.active[j.owner] >= thumbPerUser {
		q.mu.Unlock()
		return false
	}
	q.seq++
	if len(q.byUser[j.owner]) == 0 {
		q.since[j.owner] = q.seq
	}
	q.byUser[j.owner] = append(q.byUser[j.owner], j)
	q.active[j.owner]++
	q.total++
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// next takes the oldest job of the uploader served least recently.
func (q *thumbQueue) next() (thumbJob, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	user := ""
	for u := range q.byUser {
		if user == "" || q.served[u] < q.served[user] || q.served[u] == q.served[user] && q.since[u] < q.since[user] {
			user = u
		}
	}
	if user == "" {
		return thumbJob{}, false
	}
	jobs := q.byUser[user]
	j := jobs[0]
	q.seq++
	q.served[user], q.since[user] = q.seq, q.seq
	if len(jobs) > 1 {
		q.byUser[user] = jobs[1:]
	} else {
		delete(q.byUser, user)
		delete(q.since, user)
	}
	return j, true
}

func (q *thumbQueue) done(j thumbJob) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.total--
	if q.active[j.owner]--; q.active[j.owner] <= 0 {
		delete(q.active, j.owner)
		delete(q.served, j.owner) // nothing left of theirs: forget them
	}
}

// thumbnails is the queue, its workers and their counters.
type thumbnails struct {
	queue    *thumbQueue
	outcomes *prometheus.CounterVec
	// hook, set by tests, runs in the worker before each job.
	hook atomic.Pointer[func(owner string)]
}

func newThumbnails(m *Metrics) *thumbnails {
	t := &thumbnails{queue: newThumbQueue(), outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pinged_thumbnails_total",
		Help: "Thumbnails by outcome: made, busy (the queue or the uploader's share of it was full), costly (too costly to decode), failed.",
	}, []string{"outcome"})}
	if m != nil && m.reg != nil {
		m.reg.MustRegister(t.outcomes)
	}
	return t
}

// start runs the thumbnail workers, and with S3 the sweeper of expired uploads, under wg until
// ctx ends.
func (f *Files) start(ctx context.Context, wg *sync.WaitGroup) {
	if f.s3 != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Protect(ctx, "upload sweeper", f.runSweeper)
		}()
	}
	for i := range thumbWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Protect(ctx, fmt.Sprintf("thumbnail worker %d", i), f.thumbWork)
		}()
	}
}

func (f *Files) thumbWork(ctx context.Context) {
	q := f.thumbs.queue
	for {
		j, ok := q.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
			}
			continue
		}
		if h := f.thumbs.hook.Load(); h != nil {
			(*h)(j.owner)
		}
		outcome := f.makeStoredThumb(ctx, j)
		q.done(j)
		f.thumbs.outcomes.WithLabelValues(outcome).Inc()
		select {
		case q.wake <- struct{}{}: // another worker may take the next
		default:
		}
	}
}

// queueThumbnail offers a stored image of rec's to the thumbnail workers; whether it was taken.
// One whose header says it would cost too much to decode is not offered.
func (f *Files) queueThumbnail(rec *FileRecord, file io.ReaderAt) bool {
	if !rasterImage(rec.Type) {
		return false
	}
	if cost, err := imageCost(file, rec.Type); err != nil || cost > thumbDecodeBytes {
		f.thumbs.outcomes.WithLabelValues("costly").Inc()
		return false
	}
	if !f.thumbs.queue.offer(thumbJob{id: rec.ID, owner: upperName(rec.Owner), cid: rec.CID, typ: rec.Type}) {
		f.thumbs.outcomes.WithLabelValues("busy").Inc()
		slog.Debug("thumbnail skipped: busy", "id", rec.ID, "user", rec.Owner)
		return false
	}
	return true
}

// makeStoredThumb makes one job's thumbnail, records it and tells the members; the outcome.
func (f *Files) makeStoredThumb(ctx context.Context, j thumbJob) string {
	file, err := os.Open(f.path(j.id, false))
	if err != nil {
		return "failed" // removed meanwhile
	}
	thumb, err := makeThumbnail(file, j.typ)
	file.Close()
	if errors.Is(err, errDecodeCost) || errors.Is(err, errImageTooLarge) {
		return "costly"
	}
	if err != nil || thumb == nil {
		return "failed"
	}
	if err := f.writeThumb(j.id, thumb); err != nil {
		slog.Warn("storing a thumbnail", "id", j.id, "err", err)
		return "failed"
	}
	if _, err := f.updateFile(ctx, j.id, func(r *FileRecord) error {
		if r.State != "stored" {
			return errNoChange
		}
		r.Thumb = true
		return nil
	}); err != nil {
		_ = os.Remove(f.path(j.id, true)) // the file went meanwhile
		return "failed"
	}
	f.announceThumb(ctx, j)
	return "made"
}

// writeThumb puts a thumbnail beside its file, whole or not at all.
func (f *Files) writeThumb(id string, thumb []byte) error {
	tmp, err := os.CreateTemp(filepath.Join(f.dir, "tmp"), "thumb-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename this finds nothing
	_, err = tmp.Write(thumb)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), f.path(id, true))
}

// announceThumb pushes FileThumb {CID, fileURL} to the members of the file's conversation.
func (f *Files) announceThumb(ctx context.Context, j thumbJob) {
	if j.cid == profileCID {
		return
	}
	c, err := f.db.getConvo(ctx, j.cid)
	if err != nil {
		return
	}
	payload, err := ffjson.Marshal(&FilesPush{Cmd: "FileThumb", CID: j.cid, FileURL: fileURLPrefix + j.id})
	if err != nil {
		return
	}
	f.db.publish(c.Members, payload, "")
	ffjson.Pool(payload)
}
