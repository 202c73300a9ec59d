package main

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// webFiles is the static web client, served at / unless -web-dir names a directory.
//
//go:embed web
var webFiles embed.FS

// webFS is the web client's files: the embedded copy, or -web-dir opened as an os.Root, so that
// no path (a symlink, "..") can reach outside the directory.
func webFS(dir string) (fs.FS, error) {
	if dir != "" {
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, fmt.Errorf("opening -web-dir: %w", err)
		}
		return root.FS(), nil
	}
	return fs.Sub(webFiles, "web")
}

// webHandler serves the web client's files: never a dotfile, never a directory listing. Every
// file is served with a strong ETag of its content and "Cache-Control: no-cache": the URLs do
// not change with the content (no build step renames files), so a browser must revalidate —
// a 304 costs a round trip and no body — and an update is never stuck in a cache. Text is
// gzipped for clients that accept it (once per file version, kept in memory); formats that are
// compressed already are not. The service worker (sw.js) gets its version stamped in: a hash of
// every file, so that any change to the client installs a new worker and a fresh cache.
func webHandler(files fs.FS) http.Handler {
	assets := &webAssets{files: files, cache: map[string]*webAsset{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		if strings.Contains(p, "/.") {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(p, "/")
		if name == "" {
			name = "index.html"
		}
		// Missing, a directory, or refused by the root (a symlink out): all not found.
		a, err := assets.get(name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		a.serve(w, r)
	})
}

// swFile is the service worker; swVersionLine is the line of it that the server fills in.
const (
	swFile        = "sw.js"
	swVersionLine = "const VERSION = 'dev';"
)

// webAsset is one file of the web client as served: its bytes, a gzip copy where that helps,
// and their validators.
type webAsset struct {
	name    string
	modTime time.Time
	size    int64  // of the file as stored (before the service worker is stamped)
	stamp   string // the service worker: the version stamped in
	ctype   string
	body    []byte
	etag    string
	gz      []byte // nil: not compressed (already compressed, too small, or no smaller)
	gzETag  string
}

// webAssets keeps the served form of each file, made the first time it is asked for and again
// whenever the file changes (a -web-dir being edited; the embedded files never do).
type webAssets struct {
	files fs.FS
	mu    sync.Mutex
	cache map[string]*webAsset
}

// get returns the served form of a file (name is slash-separated, without a leading slash).
func (a *webAssets) get(name string) (*webAsset, error) {
	st, err := fs.Stat(a.files, name)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fs.ErrNotExist
	}
	a.mu.Lock()
	cached := a.cache[name]
	a.mu.Unlock()
	version := ""
	if name == swFile {
		if version, err = a.version(); err != nil {
			return nil, err
		}
	}
	if cached != nil && cached.size == st.Size() && cached.modTime.Equal(st.ModTime()) && cached.stamp == version {
		return cached, nil
	}
	body, err := fs.ReadFile(a.files, name)
	if err != nil {
		return nil, err
	}
	size := int64(len(body))
	if name == swFile {
		body = []byte(strings.Replace(string(body), swVersionLine, "const VERSION = '"+version+"';", 1))
	}
	asset := newWebAsset(name, st.ModTime(), size, body)
	asset.stamp = version
	a.mu.Lock()
	a.cache[name] = asset
	a.mu.Unlock()
	return asset, nil
}

// version is a hash of every file but the service worker: it changes whenever any of them does.
func (a *webAssets) version() (string, error) {
	var names []string
	err := fs.WalkDir(a.files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != "." {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() && p != swFile {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)
	h := sha256.New()
	for _, n := range names {
		f, err := a.get(n)
		if err != nil {
			continue // not served either (a link out of -web-dir, a file gone meanwhile)
		}
		fmt.Fprintf(h, "%s\x00%s\x00", n, f.etag)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// compressedTypes are formats whose bytes are compressed already: gzip would only cost time.
var compressedTypes = map[string]bool{
	".png": true, ".jpg": true, ".jpeg": true, ".gif": true, ".webp": true, ".avif": true,
	".woff": true, ".woff2": true, ".gz": true, ".br": true, ".zst": true, ".zip": true, ".pdf": true,
	".mp3": true, ".mp4": true, ".ogg": true, ".webm": true,
}

func newWebAsset(name string, modTime time.Time, size int64, body []byte) *webAsset {
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(body)
	}
	sum := sha256.Sum256(body)
	tag := base64.RawURLEncoding.EncodeToString(sum[:18])
	a := &webAsset{name: name, modTime: modTime, size: size, ctype: ctype, body: body, etag: `"` + tag + `"`}
	if compressible(name, ctype) && len(body) >= 256 {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		_, _ = zw.Write(body)
		_ = zw.Close()
		if buf.Len() < len(body)*9/10 {
			a.gz, a.gzETag = buf.Bytes(), `"`+tag+`-gzip"`
		}
	}
	return a
}

// compressible: text formats (HTML, CSS, JavaScript, JSON, SVG, plain text…), never a format
// that is compressed already.
func compressible(name, ctype string) bool {
	if compressedTypes[strings.ToLower(path.Ext(name))] {
		return false
	}
	mt, _, _ := strings.Cut(ctype, ";")
	mt = strings.TrimSpace(strings.ToLower(mt))
	return strings.HasPrefix(mt, "text/") || mt == "application/javascript" || mt == "application/json" ||
		mt == "application/manifest+json" || mt == "application/xml" || mt == "image/svg+xml" || strings.HasSuffix(mt, "+json")
}

// serve writes the asset, gzipped if the client takes it; http.ServeContent answers
// conditional requests (If-None-Match → 304), HEAD and ranges.
func (a *webAsset) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("Cache-Control", "no-cache")
	body, etag := a.body, a.etag
	if a.gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag = a.gz, a.gzETag
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, a.name, a.modTime, bytes.NewReader(body))
}

// acceptsGzip reads an Accept-Encoding header: gzip (or x-gzip, or *) with a quality above 0.
func acceptsGzip(header string) bool {
	gz, star := -1.0, -1.0
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
		}
		switch strings.ToLower(strings.TrimSpace(coding)) {
		case "gzip", "x-gzip":
			gz = max(gz, q)
		case "*":
			star = q
		}
	}
	if gz >= 0 {
		return gz > 0
	}
	return star > 0
}

// webCSP matches the policy in web/index.html; as a header it can also forbid framing by
// other sites, which a meta tag cannot.
const webCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https://*.giphy.com; " +
	"connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'self'"

// securityHeaders adds the headers every page of the web client is served with; over TLS also
// HSTS, so that a browser that once reached us never tries plain HTTP again.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", webCSP)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Referrer-Policy", "no-referrer")
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		}
		h.ServeHTTP(w, r)
	})
}
