package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jhillyerd/enmime/v2"
)

// Mail attachments: files under -files-dir/mail/<owner hash>/<random id>, served only through
// URLs signed for their owner, always as downloads that cannot run in our origin (DESIGN §4).

const attachmentURLTTL = 24 * time.Hour

var attachmentIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// ownerDir is the directory of a user's attachments: a hash, so no name reaches the path.
func (db *Database) ownerDir(user string) string {
	sum := sha256.Sum256([]byte("mail:" + upperName(user)))
	return filepath.Join(db.cfg.FilesDir, "mail", hex.EncodeToString(sum[:12]))
}

// storeAttachment writes one part to a new file of user's and describes it.
func (db *Database) storeAttachment(user string, part *enmime.Part) (Attachment, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	a := Attachment{ID: base64.RawURLEncoding.EncodeToString(b), Name: attachmentName(part),
		Type: cleanMediaType(part.ContentType), Size: int64(len(part.Content)),
		CID: cleanLine(strings.Trim(part.ContentID, "<>"))}
	dir := db.ownerDir(user)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return a, err
	}
	if err := os.WriteFile(filepath.Join(dir, a.ID), part.Content, 0o600); err != nil {
		return a, err
	}
	return a, nil
}

// attachmentName is a part's file name as shown: its base name, one line, never empty.
func attachmentName(part *enmime.Part) string {
	name := cleanLine(part.FileName)
	name = strings.NewReplacer("/", "_", "\\", "_").Replace(name)
	if name == "" || name == "." || name == ".." {
		name = "attachment"
	}
	return truncateRunes(name, 200)
}

func cleanMediaType(t string) string {
	mt, _, err := mime.ParseMediaType(t)
	if err != nil || len(mt) > 100 {
		return "application/octet-stream"
	}
	return mt
}

// removeAttachments deletes attachment files (after their e-mail is gone); failures are logged.
func (db *Database) removeAttachments(user string, atts []Attachment) {
	dir := db.ownerDir(user)
	for _, a := range atts {
		if !attachmentIDRe.MatchString(a.ID) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, a.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Error("removing an attachment", "user", user, "err", err)
		}
	}
}

// serverKey is a secret of this deployment, the same on every instance: the quick store's
// shared secret (files.go), read once per instance.
func (db *Database) serverKey(ctx context.Context, name string) ([]byte, error) {
	if k, ok := db.keys.Load(name); ok {
		return k.([]byte), nil
	}
	key, err := sharedSecret(ctx, db.quick, name)
	if err != nil {
		return nil, err
	}
	db.keys.Store(name, key)
	return key, nil
}

// attachmentSig signs what an attachment URL says.
func attachmentSig(key []byte, dir, id, name, typ string, exp int64) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s\x00%s\x00%s\x00%s\x00%d", dir, id, name, typ, exp)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// signAttachments gives each attachment of e a download URL valid for a day (the expiry is
// rounded to the hour, so the same e-mail read twice gets the same URL and caches).
func (db *Database) signAttachments(owner string, e *Email) {
	if len(e.Attachments) == 0 {
		return
	}
	key, err := db.serverKey(context.Background(), "attachments")
	if err != nil {
		slog.Error("signing attachment URLs", "err", err)
		return
	}
	dir := filepath.Base(db.ownerDir(owner))
	exp := time.Now().Add(attachmentURLTTL).Truncate(time.Hour).Add(time.Hour).Unix()
	atts := make([]Attachment, len(e.Attachments))
	for i, a := range e.Attachments {
		q := url.Values{"n": {a.Name}, "t": {a.Type}, "exp": {strconv.FormatInt(exp, 10)},
			"sig": {attachmentSig(key, dir, a.ID, a.Name, a.Type, exp)}}
		a.URL = "/mail/attachments/" + dir + "/" + a.ID + "?" + q.Encode()
		atts[i] = a
	}
	e.Attachments = atts
}

var ownerDirRe = regexp.MustCompile(`^[0-9a-f]{24}$`)

// serveAttachment answers GET /mail/attachments/{dir}/{id} for a valid, unexpired signature,
// as a download (never rendered in our origin).
func (s *Server) serveAttachment(w http.ResponseWriter, r *http.Request) {
	dir, id := r.PathValue("dir"), r.PathValue("id")
	q := r.URL.Query()
	exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
	if !ownerDirRe.MatchString(dir) || !attachmentIDRe.MatchString(id) || err != nil || time.Now().Unix() > exp {
		http.NotFound(w, r)
		return
	}
	key, err := s.db.serverKey(r.Context(), "attachments")
	if err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	want := attachmentSig(key, dir, id, q.Get("n"), q.Get("t"), exp)
	if !hmac.Equal([]byte(want), []byte(q.Get("sig"))) {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": q.Get("n")}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Cache-Control", "private, max-age=3600")
	serveStored(w, r, filepath.Join(s.cfg.FilesDir, "mail", dir, id))
}
