package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jhillyerd/enmime/v2"
)

// Mail attachments: files under -files-dir/mail/blobs/<id>, the id a hash of the content, so a
// message sent to many mailboxes (or the same file sent again) is stored once; mail_blobs counts
// the e-mails holding each, and the last one to let go deletes the file. They are served only
// through URLs signed for their owner, always as downloads that cannot run in our origin
// (DESIGN §4). Older attachments lie under -files-dir/mail/<owner hash>/<random id>, uncounted.

const attachmentURLTTL = 24 * time.Hour

var attachmentIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// ownerDir is the directory of a user's older attachments, and the name their URLs carry: a
// hash, so no name reaches the path.
func (db *Database) ownerDir(user string) string {
	sum := sha256.Sum256([]byte("mail:" + upperName(user)))
	return filepath.Join(db.cfg.FilesDir, "mail", hex.EncodeToString(sum[:12]))
}

// blobPath is where the shared file of an attachment id lies.
func (db *Database) blobPath(id string) string {
	return filepath.Join(db.cfg.FilesDir, "mail", "blobs", id)
}

// blob is one part of a parsed message, as stored.
type blob struct {
	att     Attachment
	content []byte
}

// blobs describes p's parts (once per message, whatever the number of recipients): each
// attachment's id is the first 128 bits of its content's SHA-256.
func (p *parsedMail) blobs() []blob {
	out := make([]blob, 0, len(p.parts))
	for _, part := range p.parts {
		sum := sha256.Sum256(part.Content)
		out = append(out, blob{content: part.Content, att: Attachment{
			ID: base64.RawURLEncoding.EncodeToString(sum[:16]), Name: attachmentName(part),
			Type: cleanMediaType(part.ContentType), Size: int64(len(part.Content)),
			CID: cleanLine(strings.Trim(part.ContentID, "<>"))}})
	}
	return out
}

// storedSize is what p costs a mailbox's quota: its bodies, attachments and headers.
func (p *parsedMail) storedSize() int64 {
	n := int64(len(p.text) + len(p.html) + len(p.subject) + len(p.from) + len(p.fromName) + 1024)
	for _, part := range p.parts {
		n += int64(len(part.Content))
	}
	return n
}

// holdBlobs counts one more holder of each blob (inside the e-mail's transaction, in id order
// so that transactions cannot deadlock) and writes the files that are missing. The counted row
// stays locked until the transaction ends, so releaseBlobs cannot delete a file between the
// check and the commit. It returns the files it wrote.
func (db *Database) holdBlobs(ctx context.Context, tx pgx.Tx, blobs []blob) ([]string, error) {
	byID := map[string]*blob{}
	refs := map[string]int{}
	for i := range blobs {
		byID[blobs[i].att.ID] = &blobs[i]
		refs[blobs[i].att.ID]++
	}
	var written []string
	for _, id := range slices.Sorted(maps.Keys(refs)) {
		if _, err := tx.Exec(ctx, `INSERT INTO mail_blobs (id, refs) VALUES ($1, $2)
			ON CONFLICT (id) DO UPDATE SET refs = mail_blobs.refs + $2`, id, refs[id]); err != nil {
			removeFiles(written)
			return nil, fmt.Errorf("counting an attachment: %w", err)
		}
		path := db.blobPath(id)
		if _, err := os.Stat(path); err == nil {
			continue
		}
		if err := writeFileAtomic(path, byID[id].content); err != nil {
			removeFiles(written)
			return nil, fmt.Errorf("storing an attachment: %w", err)
		}
		written = append(written, path)
	}
	return written, nil
}

// releaseBlobs lets go of attachments of e-mails that are going (inside their transaction):
// a blob nobody holds any more is deleted with its file, while its row is still locked. Older,
// uncounted attachments are files of the owner's own.
func (db *Database) releaseBlobs(ctx context.Context, tx pgx.Tx, owner string, atts []Attachment) error {
	refs := map[string]int{}
	for _, a := range atts {
		if attachmentIDRe.MatchString(a.ID) {
			refs[a.ID]++
		}
	}
	for _, id := range slices.Sorted(maps.Keys(refs)) {
		var left int64
		err := tx.QueryRow(ctx, "UPDATE mail_blobs SET refs = refs - $2 WHERE id = $1 RETURNING refs", id, refs[id]).Scan(&left)
		if errors.Is(err, pgx.ErrNoRows) {
			removeFiles([]string{filepath.Join(db.ownerDir(owner), id)})
			continue
		}
		if err != nil {
			return fmt.Errorf("releasing an attachment: %w", err)
		}
		if left > 0 {
			continue
		}
		if _, err := tx.Exec(ctx, "DELETE FROM mail_blobs WHERE id = $1", id); err != nil {
			return fmt.Errorf("releasing an attachment: %w", err)
		}
		removeFiles([]string{db.blobPath(id)})
	}
	return nil
}

// writeFileAtomic writes a whole new file or none (a crash leaves no half file under the name).
func writeFileAtomic(path string, content []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after the rename, nothing
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// removeFiles deletes files; failures other than absence are logged.
func removeFiles(paths []string) {
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Error("removing an attachment file", "err", err)
		}
	}
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
	path := s.db.blobPath(id)
	if _, err := os.Stat(path); err != nil {
		path = filepath.Join(s.cfg.FilesDir, "mail", dir, id) // an older, uncounted attachment
	}
	serveStored(w, r, path)
}
