package main

// Tests of the web client's shell: how web.go serves the files (gzip where it helps and never
// for compressed formats, strong ETags, 304s, no-cache, the security headers, the service
// worker's stamped version), and the service worker in a browser: the app loads with the
// network gone (the login card, then the chat from IndexedDB), and a changed client is taken up
// on the next load with the old cache deleted.
//
// The browser reaches the server through a small front server made here: it serves the web
// client from a copy in a temporary directory (as -web-dir does, so that the test can change a
// file) and passes /ws to the real server. Switched "down", it drops every request, so that the
// service worker's own fetches fail too, not only the page's.

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/chromedp/chromedp"
)

var swVersionRe = regexp.MustCompile(`const VERSION = '([0-9a-f]{16})';`)

// plainClient never asks for or decodes gzip by itself: what the server sends is what is seen.
var plainClient = &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: 10 * time.Second}

func fetch(t testing.TB, method, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := plainClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func gunzip(t testing.TB, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// frontServer serves the web client from dir and passes /ws to the pingedchat server.
type frontServer struct {
	url  string
	dir  string
	down atomic.Bool
}

func startFront(t *testing.T, srv *testServer) *frontServer {
	t.Helper()
	f := &frontServer{dir: t.TempDir()}
	// A copy of the embedded client.
	err := fs.WalkDir(webFiles, "web", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := webFiles.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(f.dir, filepath.FromSlash(strings.TrimPrefix(p, "web/")))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	files, err := webFS(f.dir)
	if err != nil {
		t.Fatal(err)
	}
	target := &url.URL{Scheme: "http", Host: srv.addr}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the server checks the Origin against the Host the browser used
	}}
	web := securityHeaders(webHandler(files))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f.down.Load() {
			panic(http.ErrAbortHandler) // the connection drops: a network error, not an answer
		}
		if r.URL.Path == "/ws" || strings.HasPrefix(r.URL.Path, "/ws/") {
			proxy.ServeHTTP(w, r)
			return
		}
		web.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: h}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		hs.Close()
	})
	f.url = "http://" + ln.Addr().String()
	return f
}

// showsWithin reports whether an asynchronous expression resolves to want within d (without
// failing the test: the caller decides what a miss means).
func (p *page) showsWithin(t testing.TB, expr, want string, d time.Duration) bool {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		var got string
		p.eval(t, `Promise.resolve(`+expr+`).then(String)`, &got)
		if got == want {
			return true
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
	return false
}

// waitAsync waits until an asynchronous expression (a promise) resolves to want: a poll starts
// a new evaluation when the last one has finished (or has been pending for a second: one may
// never settle), at most every 250 ms (asking the browser's notification store many times a
// second can hold up a notification being shown), and compares the newest result.
func (p *page) waitAsync(t testing.TB, what, expr, want string) {
	t.Helper()
	key := js(what)
	cond := fmt.Sprintf(`(() => {
		const all = window.__waitAsync || (window.__waitAsync = {});
		const s = all[%s] || (all[%s] = {seq: 0, since: 0, pending: false, got: -1, value: undefined});
		if ((!s.pending && Date.now() - s.since >= 250) || Date.now() - s.since > 1000) {
			const seq = ++s.seq;
			s.pending = true;
			s.since = Date.now();
			const keep = (v) => {
				if (seq > s.got) { s.got = seq; s.value = v; }
				if (seq === s.seq) s.pending = false;
			};
			Promise.resolve(%s).then((v) => keep(String(v)), (e) => keep('error: ' + e));
		}
		return s.value === %s;
	})()`, key, key, expr, js(want))
	ctx, cancel := context.WithTimeout(p.ctx, browserWait)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(25*time.Millisecond)))
	if err != nil {
		var last string
		lctx, lcancel := context.WithTimeout(p.ctx, 2*time.Second)
		defer lcancel()
		last, _ = chromedp.Run(lctx, chromedp.Evaluate[string](fmt.Sprintf(`String(((window.__waitAsync || {})[%s] || {}).value)`, key)))
		t.Fatalf("%s: waiting for %s: %v; last: %q, want %q", p.label(), what, err, last, want)
	}
}

// shellList reads the service worker's list of files to cache.
func shellList(t testing.TB, sw []byte) []string {
	t.Helper()
	m := regexp.MustCompile(`(?s)const SHELL = \[(.*?)\];`).FindSubmatch(sw)
	if m == nil {
		t.Fatal("no SHELL list in sw.js")
	}
	var out []string
	for _, q := range regexp.MustCompile(`'([^']*)'`).FindAllSubmatch(m[1], -1) {
		out = append(out, string(q[1]))
	}
	return out
}

func TestWebShellHTTP(t *testing.T) {
	srv := startServer(t, testConfig(t))
	base := "http://" + srv.addr

	t.Run("gzip, ETag and 304", func(t *testing.T) {
		want, err := webFiles.ReadFile("web/js/app.js")
		if err != nil {
			t.Fatal(err)
		}
		resp, body := fetch(t, "GET", base+"/js/app.js", map[string]string{"Accept-Encoding": "gzip, deflate, br"})
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("Content-Encoding") != "gzip" || !strings.Contains(h.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("status %d, Content-Encoding %q, Vary %q", resp.StatusCode, h.Get("Content-Encoding"), h.Get("Vary"))
		}
		if got := gunzip(t, body); !bytes.Equal(got, want) {
			t.Fatalf("the gzipped body is not app.js (%d bytes, want %d)", len(got), len(want))
		}
		if len(body) >= len(want)/2 {
			t.Errorf("gzip made %d bytes of %d", len(body), len(want))
		}
		etag := h.Get("ETag")
		if !regexp.MustCompile(`^"[A-Za-z0-9_-]+-gzip"$`).MatchString(etag) {
			t.Fatalf("ETag %q: want a strong tag of the gzipped form", etag)
		}
		if h.Get("Cache-Control") != "no-cache" || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") {
			t.Errorf("Cache-Control %q, Content-Type %q", h.Get("Cache-Control"), h.Get("Content-Type"))
		}
		if h.Get("Content-Security-Policy") != webCSP || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("security headers missing: %v", h)
		}

		resp, body = fetch(t, "GET", base+"/js/app.js", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": etag})
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != etag {
			t.Fatalf("revalidation: status %d, %d bytes, ETag %q", resp.StatusCode, len(body), resp.Header.Get("ETag"))
		}
		if resp.Header.Get("Content-Security-Policy") != webCSP {
			t.Error("a 304 without the security headers")
		}

		// Without gzip: the file as it is, with its own tag, which revalidates too.
		resp, body = fetch(t, "GET", base+"/js/app.js", nil)
		plainTag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" || !bytes.Equal(body, want) || plainTag == etag || plainTag == "" {
			t.Fatalf("identity: status %d, encoding %q, ETag %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), plainTag)
		}
		if resp, _ := fetch(t, "GET", base+"/js/app.js", map[string]string{"If-None-Match": plainTag}); resp.StatusCode != http.StatusNotModified {
			t.Fatalf("identity revalidation: status %d", resp.StatusCode)
		}
		// The gzip tag does not validate the identity form.
		if resp, _ := fetch(t, "GET", base+"/js/app.js", map[string]string{"If-None-Match": etag}); resp.StatusCode != 200 {
			t.Fatalf("the gzip ETag matched the identity form: status %d", resp.StatusCode)
		}
		for ae, gz := range map[string]bool{"gzip;q=0": false, "*": true, "br, gzip;q=0.5": true, "identity": false, "*;q=0, gzip": true, "GZIP": true} {
			resp, _ := fetch(t, "GET", base+"/js/app.js", map[string]string{"Accept-Encoding": ae})
			if (resp.Header.Get("Content-Encoding") == "gzip") != gz {
				t.Errorf("Accept-Encoding %q: Content-Encoding %q", ae, resp.Header.Get("Content-Encoding"))
			}
		}
		// HEAD: the headers, no body.
		resp, body = fetch(t, "HEAD", base+"/style.css", map[string]string{"Accept-Encoding": "gzip"})
		if resp.StatusCode != 200 || len(body) != 0 || resp.Header.Get("Content-Encoding") != "gzip" {
			t.Errorf("HEAD: status %d, %d bytes, encoding %q", resp.StatusCode, len(body), resp.Header.Get("Content-Encoding"))
		}
	})

	t.Run("the page and the service worker", func(t *testing.T) {
		resp, body := fetch(t, "GET", base+"/", map[string]string{"Accept-Encoding": "gzip"})
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" || !bytes.Contains(gunzip(t, body), []byte("<title>pingedchat</title>")) {
			t.Fatalf("/: status %d, Cache-Control %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
		resp, body = fetch(t, "GET", base+"/sw.js", nil)
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-cache" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
			t.Fatalf("sw.js: status %d, headers %v", resp.StatusCode, resp.Header)
		}
		if !swVersionRe.Match(body) || bytes.Contains(body, []byte(swVersionLine)) {
			t.Fatalf("sw.js has no version stamped in: %s", body[:min(len(body), 2000)])
		}
		// The worker caches every file the page loads: the page, its styles and scripts, the icon.
		var files []string
		_ = fs.WalkDir(webFiles, "web", func(p string, d fs.DirEntry, err error) error {
			rel := strings.TrimPrefix(p, "web/")
			if err == nil && !d.IsDir() && rel != swFile && regexp.MustCompile(`\.(js|css|svg)$`).MatchString(rel) {
				files = append(files, rel)
			}
			return err
		})
		files = append(files, "./")
		shell := shellList(t, body)
		sort.Strings(files)
		sort.Strings(shell)
		if strings.Join(files, " ") != strings.Join(shell, " ") {
			t.Fatalf("sw.js caches %v; the client has %v", shell, files)
		}
		for _, f := range shell {
			if resp, _ := fetch(t, "GET", base+"/"+strings.TrimPrefix(f, "./"), nil); resp.StatusCode != 200 {
				t.Errorf("%s: status %d", f, resp.StatusCode)
			}
		}
	})

	t.Run("refused", func(t *testing.T) {
		for _, p := range []string{"/js/", "/js", "/nope.js", "/.git/config", "/js/.hidden"} {
			if resp, _ := fetch(t, "GET", base+p, nil); resp.StatusCode != 404 {
				t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
			}
		}
		if resp, _ := fetch(t, "POST", base+"/js/app.js", nil); resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST: status %d", resp.StatusCode)
		}
	})

	t.Run("compressed formats, small files, changes", func(t *testing.T) {
		zeros := bytes.Repeat([]byte{0}, 4096)
		text := bytes.Repeat([]byte("body { color: red; }\n"), 200)
		mfs := fstest.MapFS{
			"index.html":  {Data: []byte("<!doctype html><title>x</title>")},
			"sw.js":       {Data: []byte("const VERSION = 'dev';\nconst SHELL = [];\n")},
			"style.css":   {Data: text, ModTime: time.Unix(1000, 0)},
			"photo.png":   {Data: zeros}, // compresses very well, and is never compressed
			"font.woff2":  {Data: zeros},
			"archive.gz":  {Data: zeros},
			"small.js":    {Data: []byte("export const x = 1;\n")},
			"notes.txt":   {Data: text},
			".secret.txt": {Data: text},
		}
		h := webHandler(mfs)
		get := func(p string, header map[string]string) *httptest.ResponseRecorder {
			req := httptest.NewRequest("GET", p, nil)
			for k, v := range header {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec
		}
		gz := map[string]string{"Accept-Encoding": "gzip"}
		for p, want := range map[string]bool{"/style.css": true, "/notes.txt": true, "/photo.png": false, "/font.woff2": false, "/archive.gz": false, "/small.js": false} {
			rec := get(p, gz)
			if rec.Code != 200 || (rec.Header().Get("Content-Encoding") == "gzip") != want {
				t.Errorf("%s: status %d, Content-Encoding %q, want gzip %v", p, rec.Code, rec.Header().Get("Content-Encoding"), want)
			}
			if rec.Header().Get("ETag") == "" || rec.Header().Get("Cache-Control") != "no-cache" {
				t.Errorf("%s: ETag %q, Cache-Control %q", p, rec.Header().Get("ETag"), rec.Header().Get("Cache-Control"))
			}
		}
		if rec := get("/.secret.txt", nil); rec.Code != 404 {
			t.Errorf("a dotfile: status %d", rec.Code)
		}
		// A changed file (a -web-dir being edited) has a new tag and a new service worker.
		tag := get("/style.css", gz).Header().Get("ETag")
		v1 := swVersionRe.FindString(get("/sw.js", nil).Body.String())
		if again := swVersionRe.FindString(get("/sw.js", nil).Body.String()); v1 == "" || again != v1 {
			t.Fatalf("sw.js versions %q then %q, want one stable version", v1, again)
		}
		mfs["style.css"] = &fstest.MapFile{Data: append(text, "a { color: blue; }\n"...), ModTime: time.Unix(2000, 0)}
		rec := get("/style.css", gz)
		if tag2 := rec.Header().Get("ETag"); tag2 == tag || !bytes.HasSuffix(gunzip(t, rec.Body.Bytes()), []byte("a { color: blue; }\n")) {
			t.Errorf("after a change: ETag %q (was %q)", tag2, tag)
		}
		if rec := get("/style.css", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": tag}); rec.Code != 200 {
			t.Errorf("the old tag still validates: status %d", rec.Code)
		}
		if v2 := swVersionRe.FindString(get("/sw.js", nil).Body.String()); v2 == "" || v2 == v1 {
			t.Errorf("sw.js version %q after a change (was %q)", v2, v1)
		}
	})
}

// A -web-dir with a link out of it: the link is not served, and does not stop the service
// worker from being served.
func TestWebShellWebDirLinkOut(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	for name, body := range map[string]string{"index.html": "<p>hi</p>", "sw.js": "const VERSION = 'dev';\n", "app.js": "1"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("outside"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(dir, "escape.txt")); err != nil {
		t.Fatal(err)
	}
	files, err := webFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	h := webHandler(files)
	for p, want := range map[string]int{"/sw.js": 200, "/escape.txt": 404, "/app.js": 200, "/": 200} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != want {
			t.Errorf("%s: status %d, want %d", p, rec.Code, want)
		}
		if p == "/sw.js" && !swVersionRe.MatchString(rec.Body.String()) {
			t.Errorf("sw.js without its version: %q", rec.Body.String())
		}
	}
}

func TestWebShellOffline(t *testing.T) {
	start := time.Now()
	browser := startBrowser(t)
	srv := startServer(t, testConfig(t))
	front := startFront(t, srv)
	p := newPage(t, browser, front.url, 1280, 800)
	bobGo := register(t, srv, "bob")

	// cacheNames is an expression: the service worker's caches.
	const cacheNames = `caches.keys().then((k) => k.filter((n) => n.startsWith('pingedchat-shell-')).sort().join(' '))`

	var version string

	// offline cuts the page off: the browser reports offline, and the front server drops every
	// request, the service worker's included.
	offline := func(t *testing.T, off bool) {
		front.down.Store(off)
		p.setNetwork(t, off, nil)
	}

	if !t.Run("installed", func(t *testing.T) {
		p.do(t, chromedp.Navigate(front.url+"/"))
		p.waitVisible(t, "#login-form")
		p.waitJS(t, "the service worker in control", `navigator.serviceWorker.controller !== null`)
		resp, body := fetch(t, "GET", front.url+"/sw.js", nil)
		m := swVersionRe.FindSubmatch(body)
		if resp.StatusCode != 200 || m == nil {
			t.Fatalf("sw.js: status %d", resp.StatusCode)
		}
		version = string(m[1])
		p.waitAsync(t, "the shell cached", cacheNames, "pingedchat-shell-"+version)
	}) {
		return
	}

	if !t.Run("offline: the login card", func(t *testing.T) {
		offline(t, true)
		p.do(t, chromedp.Reload())
		p.waitVisible(t, "#login-form")
		p.waitJS(t, "styled and scripted", `getComputedStyle(document.querySelector('.auth-card')).borderRadius !== '0px' && `+
			`document.getElementById('reg-q1').options.length > 0 && document.body.dataset.conn === 'offline'`)
		p.screenshot(t, "shell-offline-login.png")
		offline(t, false)
	}) {
		return
	}

	if !t.Run("offline: the chat from IndexedDB", func(t *testing.T) {
		name := uniqueName("alice")
		p.register(t, name)
		cid := newConvoWith(t, bobGo, name)
		bobGo.ok("SendMessage", map[string]any{"CID": cid, "content": "Kept on this device"})
		p.openConvo(t, bobGo.name)
		p.waitJS(t, "the message", messageCount("Kept on this device")+` === 1`)
		p.eval(t, `pingedchat.flush()`, nil)
		offline(t, true)
		p.do(t, chromedp.Reload())
		p.waitJS(t, "the chat without a network", `!document.getElementById('chat-view').hidden && `+
			textIs("#convo-title", bobGo.name)+` && `+messageCount("Kept on this device")+` === 1 && document.body.dataset.conn === 'offline'`)
		p.screenshot(t, "shell-offline-chat.png")
		offline(t, false)
		p.waitJS(t, "online again", `document.body.dataset.conn === 'online'`)
	}) {
		return
	}

	t.Run("an update is taken up on the next load", func(t *testing.T) {
		css := filepath.Join(front.dir, "style.css")
		b, err := os.ReadFile(css)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, "\n.me-name::after { content: \" (v2)\"; }\n"...)
		later := time.Now().Add(2 * time.Second)
		if err := os.WriteFile(css, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_ = os.Chtimes(css, later, later)
		_, body := fetch(t, "GET", front.url+"/sw.js", nil)
		m := swVersionRe.FindSubmatch(body)
		if m == nil || string(m[1]) == version {
			t.Fatalf("the service worker's version did not change with style.css")
		}
		v2 := string(m[1])
		// This load is still the old version's; meanwhile the new one installs and takes over,
		// and the old cache goes.
		p.do(t, chromedp.Reload())
		p.waitAsync(t, "only the new cache", cacheNames, "pingedchat-shell-"+v2)
		p.do(t, chromedp.Reload())
		p.waitJS(t, "the new style", `!document.getElementById('chat-view').hidden && `+
			`getComputedStyle(document.getElementById('me-name'), '::after').content === '" (v2)"'`)
		// And the new version works offline too.
		offline(t, true)
		p.do(t, chromedp.Reload())
		p.waitJS(t, "the new style offline", `getComputedStyle(document.getElementById('me-name'), '::after').content === '" (v2)"' && `+
			messageCount("Kept on this device")+` === 1`)
		offline(t, false)
	})
	t.Logf("shell browser tests took %v", time.Since(start).Round(time.Millisecond))
}

// newConvoWith creates a conversation of a Go client with a user and returns its CID.
func newConvoWith(t testing.TB, owner *client, other string) string {
	t.Helper()
	rep := owner.ok("CreateConversation", map[string]any{"Name": "", "Members": []string{other}})
	cid, _ := rep["CID"].(string)
	if !validCID(cid) {
		t.Fatalf("CreateConversation ack without CID: %v", rep)
	}
	return cid
}
