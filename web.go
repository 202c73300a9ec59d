package main

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
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

// webHandler serves the web client's files: never a dotfile, never a directory listing.
func webHandler(files fs.FS) http.Handler {
	fileServer := http.FileServerFS(files)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := path.Clean("/" + r.URL.Path)
		if strings.Contains(p, "/.") {
			http.NotFound(w, r)
			return
		}
		if p != "/" {
			// Missing, a directory, or refused by the root (a symlink out): all not found.
			if st, err := fs.Stat(files, strings.TrimPrefix(p, "/")); err != nil || st.IsDir() {
				http.NotFound(w, r)
				return
			}
		}
		fileServer.ServeHTTP(w, r)
	})
}

// webCSP matches the policy in web/index.html; as a header it can also forbid framing by
// other sites, which a meta tag cannot.
const webCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
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
