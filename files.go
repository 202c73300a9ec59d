package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pquerna/ffjson/ffjson"
)

// Uploaded files (DESIGN §3.2 Files, §4): upload targets, the upload and file routes, quota
// reservations. The bytes live on local disk under -files-dir/uploads, or in an S3-compatible
// store with -s3-url (files_s3.go).

const (
	uploadTTL     = 15 * time.Minute // how long an upload URL is valid
	pendingTTL    = time.Hour        // how long the record of an unused upload URL is kept
	fileTokenTTL  = time.Hour        // how long a GetFileToken token is valid (the client renews it)
	maxFileName   = 255
	maxMIME       = 100
	profileCID    = "profile"
	fileURLPrefix = "/files/"
	// maxImagePixels bounds what is decoded for a thumbnail: a header claiming more is refused.
	maxImagePixels = 50_000_000
	maxProfileSize = 10 << 20 // bytes of a profile picture
)

var (
	fileIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
	mimePattern   = regexp.MustCompile(`^[a-zA-Z0-9!#$&^_.+-]+/[a-zA-Z0-9!#$&^_.+-]+$`)
	errOverQuota  = errors.New("over quota")
	// errQuotaUnderflow: more space given back than is counted. Never clamped to 0: that would
	// turn a bookkeeping error (or an overflow) into free space; the count is left as it is.
	errQuotaUnderflow = errors.New("giving back more quota than is used")
)

// File records live in namespace users, whose Aerospike configuration allows expiring records
// (a pending upload expires with pendingTTL unless it is used).
func fileKey(id string) Key { return Key{nsUsers, "files", id} }

// Files is the upload and download side of the server, shared by all sessions.
type Files struct {
	db     *Database
	dir    string // -files-dir/uploads
	key    []byte // HMAC key for upload URLs and file tokens
	s3     *s3Store
	thumbs *thumbnails // files_thumb.go
}

// newFiles reads (or creates, once for all instances) the signing key and prepares storage.
func newFiles(ctx context.Context, db *Database) (*Files, error) {
	key, err := sharedSecret(ctx, db.quick, "files")
	if err != nil {
		return nil, err
	}
	f := &Files{db: db, dir: filepath.Join(db.cfg.FilesDir, "uploads"), key: key, thumbs: newThumbnails(db.metrics)}
	if !notConfigured(db.cfg.S3URL) {
		if f.s3, err = newS3Store(db.cfg); err != nil {
			return nil, err
		}
		return f, nil
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("creating the upload directory: %w", err)
	}
	return f, nil
}

// sharedSecret is a random key stored once in the quick store, so every instance signs alike.
func sharedSecret(ctx context.Context, q QuickStore, name string) ([]byte, error) {
	key := Key{nsUsers, "secrets", name}
	buf := make([]byte, 32)
	_, _ = rand.Read(buf)
	err := putRecord(ctx, q, key, &SecretRecord{Value: hex.EncodeToString(buf)}, PutOptions{Mode: CreateOnly})
	if err != nil && !errors.Is(err, ErrExists) {
		return nil, fmt.Errorf("storing the %s secret: %w", name, err)
	}
	rec, _, err := getRecord[SecretRecord](ctx, q, key)
	if err != nil {
		return nil, fmt.Errorf("reading the %s secret: %w", name, err)
	}
	return hex.DecodeString(rec.Value)
}

func (f *Files) mac(parts ...string) []byte {
	m := hmac.New(sha256.New, f.key)
	m.Write([]byte(strings.Join(parts, "\x00")))
	return m.Sum(nil)
}

func (f *Files) uploadSig(id, exp string) string { return hex.EncodeToString(f.mac("upload", id, exp)) }

// A file token (GetFileToken) lets one session's user fetch conversation files until it expires:
// "user.sid.exp.mac". sid names the session's resume token by an HMAC of its hash (the URL shows
// nothing that could be looked up or replayed as a login); the MAC also covers the user's UserID
// and session epoch, which are not in the token. So a token stops working when its session logs
// out (the hash leaves the user's Tokens), when the password is changed or reset (the epoch moves)
// and when the account is deleted and its name registered again (another UserID), with no state
// kept per token: serving a file reads the user's record, which these all change.

// fileSessionID is the sid of the session whose resume token has this hash.
func (f *Files) fileSessionID(tokenHash string) string {
	return base64.RawURLEncoding.EncodeToString(f.mac("file-session", tokenHash)[:15])
}

func (f *Files) fileTokenMAC(u *UserRecord, sid, exp string) []byte {
	return f.mac("get", u.Username, u.UserID, strconv.FormatInt(u.SessionEpoch, 10), sid, exp)
}

// fileToken is a token for u's session with the resume token of this hash, valid until exp.
func (f *Files) fileToken(u *UserRecord, tokenHash string, exp time.Time) string {
	sid, e := f.fileSessionID(tokenHash), strconv.FormatInt(exp.Unix(), 10)
	return u.Username + "." + sid + "." + e + "." + base64.RawURLEncoding.EncodeToString(f.fileTokenMAC(u, sid, e))
}

// tokenUser is the user a valid, unexpired token of a live session was issued to.
func (f *Files) tokenUser(ctx context.Context, tok string) (string, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 4 || !validUsername(parts[0]) {
		return "", false
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || time.Now().Unix() > exp {
		return "", false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil {
		return "", false
	}
	u, err := f.db.getUserData(ctx, parts[0])
	if err != nil || !hmac.Equal(sig, f.fileTokenMAC(u, parts[1], parts[2])) {
		return "", false
	}
	for _, h := range u.Tokens {
		if hmac.Equal([]byte(f.fileSessionID(h)), []byte(parts[1])) {
			return u.Username, true
		}
	}
	return "", false // the session logged out, or its token was evicted by newer logins
}

func newFileID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fileIDOf is the id in one of this server's file URLs ("/files/<id>"), or "".
func fileIDOf(u string) string {
	id, ok := strings.CutPrefix(u, fileURLPrefix)
	if !ok || !fileIDPattern.MatchString(id) {
		return ""
	}
	return id
}

// checkFileName refuses names that could mean a path or hide characters.
func checkFileName(name string) error {
	bad := name == "" || name == "." || name == ".." || len(name) > maxFileName || !utf8.ValidString(name) ||
		strings.ContainsAny(name, "/\\\x00") || strings.ContainsFunc(name, unicode.IsControl)
	if bad {
		return clientErr("Name must be a file name of 1 to %d bytes, without / \\ or control characters.", maxFileName)
	}
	if hasHiddenRune(name) {
		return errHiddenChars("A file name")
	}
	return nil
}

// rasterImage says whether a sniffed type is shown inline: SVG (a document with scripts) is not.
func rasterImage(typ string) bool {
	switch typ {
	case "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp":
		return true
	}
	return false
}

func (f *Files) getFile(ctx context.Context, id string) (*FileRecord, error) {
	rec, _, err := getRecord[FileRecord](ctx, f.db.quick, fileKey(id))
	return rec, err
}

func (f *Files) updateFile(ctx context.Context, id string, fn func(*FileRecord) error) (*FileRecord, error) {
	return updateRecord(ctx, f.db.quick, fileKey(id), fn)
}

// reserve adds n bytes to user's QuotaUsed if they fit (n < 0 gives space back). Both
// comparisons are written so that they cannot overflow: Quota and QuotaUsed are never negative,
// so Quota-QuotaUsed and QuotaUsed+n (n < 0) stay in range whatever n is.
func (f *Files) reserve(ctx context.Context, user string, n int64) (*UserRecord, error) {
	return f.db.updateUser(ctx, user, func(u *UserRecord) error {
		if n > 0 && n > u.Quota-u.QuotaUsed {
			return errOverQuota
		}
		if n < 0 && u.QuotaUsed+n < 0 {
			return errQuotaUnderflow
		}
		u.QuotaUsed += n
		return nil
	})
}

// fitsQuota says whether n more bytes fit in u's quota, without overflowing.
func fitsQuota(u *UserRecord, n int64) bool { return n >= 0 && n <= u.Quota-u.QuotaUsed }

// release gives n bytes back to user, logging (not failing) when it cannot.
func (f *Files) release(user string, n int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := f.reserve(ctx, user, -n); err != nil && !isNotFound(err) {
		slog.Error("giving quota back", "user", user, "bytes", n, "err", err)
	}
}

// path is where a stored file (or its thumbnail) lives on disk; the id is validated hex.
func (f *Files) path(id string, thumb bool) string {
	p := filepath.Join(f.dir, id[:2], id)
	if thumb {
		p += ".thumb"
	}
	return p
}

// deleteBytes removes a file's stored bytes and thumbnail.
func (f *Files) deleteBytes(ctx context.Context, rec *FileRecord) error {
	if f.s3 != nil {
		return f.s3.remove(ctx, rec.ID)
	}
	for _, thumb := range []bool{false, true} {
		if err := os.Remove(f.path(rec.ID, thumb)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("deleting file %s: %w", rec.ID, err)
		}
	}
	return nil
}

// upload receives the bytes for a signed upload URL: PUT or POST, the body is the file.
func (f *Files) upload(w http.ResponseWriter, r *http.Request) {
	id, exp := r.PathValue("id"), r.URL.Query().Get("exp")
	if f.s3 != nil || !fileIDPattern.MatchString(id) {
		http.NotFound(w, r)
		return
	}
	e, err := strconv.ParseInt(exp, 10, 64)
	sig := []byte(r.URL.Query().Get("sig"))
	if err != nil || time.Now().Unix() > e || subtle.ConstantTimeCompare(sig, []byte(f.uploadSig(id, exp))) != 1 {
		http.Error(w, "invalid or expired upload URL", http.StatusForbidden)
		return
	}
	ctx := r.Context()
	// Single use: only one request moves the record from pending to uploading.
	claimed := false
	rec, err := f.updateFile(ctx, id, func(rec *FileRecord) error {
		claimed = false
		if rec.State != "pending" {
			return errNoChange
		}
		rec.State, claimed = "uploading", true
		return nil
	})
	if err != nil || !claimed {
		http.Error(w, "upload URL already used", http.StatusForbidden)
		return
	}
	status, msg := f.receive(ctx, w, r, rec)
	if status != http.StatusOK {
		slog.Debug("upload refused", "id", id, "user", rec.Owner, "status", status, "why", msg)
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	buf, _ := ffjson.Marshal(&UploadResult{FileURL: fileURLPrefix + id, Type: rec.Type, Size: rec.Size, Thumb: rec.Thumb})
	_, _ = w.Write(buf)
}

// receive stores the body of an upload whose URL has just been claimed, or undoes everything.
func (f *Files) receive(ctx context.Context, w http.ResponseWriter, r *http.Request, rec *FileRecord) (int, string) {
	fail := func(status int, msg string) (int, string) {
		_, _ = f.db.quick.Delete(context.WithoutCancel(ctx), fileKey(rec.ID), 0)
		return status, msg
	}
	if r.ContentLength >= 0 && r.ContentLength != rec.Size {
		return fail(http.StatusBadRequest, "the body is not the declared size")
	}
	if _, err := f.reserve(ctx, rec.Owner, rec.Size); err != nil {
		if errors.Is(err, errOverQuota) {
			return fail(http.StatusRequestEntityTooLarge, "over your quota")
		}
		return fail(http.StatusServiceUnavailable, "storage unavailable, try again shortly")
	}
	stored := false
	defer func() {
		if !stored {
			f.release(rec.Owner, rec.Size)
		}
	}()
	// A slow sender may take its time, but not forever: no server-wide ReadTimeout exists.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Hour))
	tmp, err := os.CreateTemp(filepath.Join(f.dir, "tmp"), "up-*")
	if err != nil {
		slog.Error("creating an upload file", "err", err)
		return fail(http.StatusInternalServerError, "cannot store the file")
	}
	defer func() {
		tmp.Close()
		_ = os.Remove(tmp.Name()) // after the rename this finds nothing
	}()
	n, err := io.Copy(tmp, io.LimitReader(r.Body, rec.Size+1)) // Size < MaxInt64: checkUploadSize
	if err != nil {
		return fail(http.StatusBadRequest, "reading the upload failed")
	}
	if n != rec.Size {
		return fail(http.StatusBadRequest, "the body is not the declared size")
	}
	head := make([]byte, 512)
	m, _ := tmp.ReadAt(head, 0)
	rec.Type = http.DetectContentType(head[:m])
	if rasterImage(rec.Type) {
		// Only the header is read here; the thumbnail is made later (files_thumb.go).
		if _, err := imageCost(tmp, rec.Type); errors.Is(err, errImageTooLarge) {
			return fail(http.StatusUnprocessableEntity, "the image is too large (more than 50 megapixels)")
		}
	}
	if err := tmp.Sync(); err != nil {
		return fail(http.StatusInternalServerError, "cannot store the file")
	}
	if err := os.MkdirAll(filepath.Dir(f.path(rec.ID, false)), 0o700); err != nil {
		return fail(http.StatusInternalServerError, "cannot store the file")
	}
	if err := os.Rename(tmp.Name(), f.path(rec.ID, false)); err != nil {
		return fail(http.StatusInternalServerError, "cannot store the file")
	}
	typ := rec.Type
	if _, err := f.updateFile(ctx, rec.ID, func(r *FileRecord) error {
		r.State, r.Type, r.Thumb, r.Counted, r.Expires = "stored", typ, false, true, ""
		return nil
	}); err != nil {
		_ = f.deleteBytes(context.WithoutCancel(ctx), rec)
		return fail(http.StatusServiceUnavailable, "storage unavailable, try again shortly")
	}
	stored = true
	// Thumb in the answer: a thumbnail is on its way (FileThumb says when it is there).
	rec.Thumb = f.queueThumbnail(rec, tmp)
	f.db.pushQuota(ctx, rec.Owner) // the user's sessions show the space used
	return http.StatusOK, ""
}

// serve answers GET /files/{id} and /files/{id}/thumb.
func (f *Files) serve(w http.ResponseWriter, r *http.Request) {
	f.serveFile(w, r, false)
}

func (f *Files) serveThumb(w http.ResponseWriter, r *http.Request) {
	f.serveFile(w, r, true)
}

func (f *Files) serveFile(w http.ResponseWriter, r *http.Request, thumb bool) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	id := r.PathValue("id")
	if !fileIDPattern.MatchString(id) {
		http.NotFound(w, r)
		return
	}
	rec, err := f.getFile(r.Context(), id)
	if err != nil || rec.State != "stored" || (thumb && !rec.Thumb) {
		http.NotFound(w, r)
		return
	}
	if status := f.mayRead(r, rec); status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	typ, disposition := fileDisposition(rec)
	if thumb {
		typ, disposition = "image/png", "inline"
	}
	if rec.CID == profileCID {
		h.Set("Cache-Control", "public, max-age=86400")
	} else {
		h.Set("Cache-Control", "private, max-age=3600")
	}
	if f.s3 != nil {
		f.s3.redirect(w, r, rec, typ, disposition)
		return
	}
	h.Set("Content-Type", typ)
	h.Set("Content-Disposition", disposition)
	serveStored(w, r, f.path(id, thumb))
}

// serveStored answers with a stored file (uploads, mail attachments) whose headers are set
// already: ranges and conditional requests by http.ServeContent, 404 when it is gone.
func serveStored(w http.ResponseWriter, r *http.Request, path string) {
	file, err := os.Open(path)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "", st.ModTime(), file)
}

// mayRead: profile pictures to anyone; conversation files to its members with a valid token.
func (f *Files) mayRead(r *http.Request, rec *FileRecord) int {
	if rec.CID == profileCID {
		// Public only while it is its owner's picture and a picture: no public file hosting.
		u, err := f.db.getUserData(r.Context(), rec.Owner)
		if err != nil || u.ProfilePic != fileURLPrefix+rec.ID || !rasterImage(rec.Type) {
			return http.StatusNotFound
		}
		return http.StatusOK
	}
	user, ok := f.tokenUser(r.Context(), r.URL.Query().Get("t"))
	if !ok {
		return http.StatusForbidden
	}
	c, err := f.db.getConvo(r.Context(), rec.CID)
	if err != nil || !c.isMember(user) {
		return http.StatusNotFound // a non-member learns nothing about the file
	}
	return http.StatusOK
}

// fileDisposition is the type and Content-Disposition a stored file is served with: raster
// images inline, everything else (SVG and HTML included) as a download.
func fileDisposition(rec *FileRecord) (typ, disposition string) {
	typ = rec.Type
	if typ == "" {
		typ = "application/octet-stream"
	}
	if rasterImage(typ) {
		return typ, "inline"
	}
	d := mime.FormatMediaType("attachment", map[string]string{"filename": rec.Name})
	if d == "" {
		d = "attachment"
	}
	return typ, d
}

// target describes where the client uploads a file it described (GetS3PolicyData).
func (f *Files) target(ctx context.Context, u *UserRecord, cid string, req *Request) (*UploadTarget, error) {
	id := newFileID()
	expires := time.Now().Add(uploadTTL)
	rec := &FileRecord{ID: id, Owner: u.Username, OwnerID: u.UserID, CID: cid, Name: req.Name, Size: req.Size,
		ContentType: req.ContentType, State: "pending", Expires: formatTime(expires), Created: formatTime(time.Now())}
	ttl := pendingTTL
	if f.s3 != nil {
		ttl = s3PendingTTL // until the sweeper has given its reservation back
	}
	if err := putRecord(ctx, f.db.quick, fileKey(id), rec, PutOptions{Mode: CreateOnly, TTL: ttl}); err != nil {
		return nil, fmt.Errorf("storing the upload: %w", err)
	}
	t := &UploadTarget{FileURL: fileURLPrefix + id, Expires: formatTime(expires), Fields: map[string]string{}}
	if f.s3 != nil {
		if err := f.s3.reserveTarget(ctx, f, rec, expires); err != nil {
			return nil, err
		}
		return f.s3.postPolicy(ctx, t, rec, expires)
	}
	exp := strconv.FormatInt(expires.Unix(), 10)
	t.Method = "PUT"
	t.URL = fileURLPrefix + "upload/" + id + "?exp=" + exp + "&sig=" + f.uploadSig(id, exp)
	return t, nil
}

// claim checks that fileURL is a stored file of user, uploaded for cid, and returns its record.
// With S3 it confirms the upload first and counts it against the quota.
func (f *Files) claim(ctx context.Context, user, cid, fileURL string) (*FileRecord, error) {
	id := fileIDOf(fileURL)
	if id == "" {
		return nil, clientErr("fileURL must be a file uploaded to this server (/files/<id>).")
	}
	rec, err := f.getFile(ctx, id)
	if isNotFound(err) || err == nil && (!strings.EqualFold(rec.Owner, user) || rec.CID != cid) {
		return nil, clientErr("fileURL is not a file you uploaded for this.")
	}
	if err != nil {
		return nil, err
	}
	if f.s3 != nil && rec.State != "stored" {
		return f.s3.confirm(ctx, f, rec)
	}
	if rec.State != "stored" {
		return nil, clientErr("That file has not been uploaded yet.")
	}
	return rec, nil
}

// remove deletes a stored file's bytes and record and gives its space back.
func (f *Files) remove(ctx context.Context, rec *FileRecord) error {
	if err := f.deleteBytes(ctx, rec); err != nil {
		return err
	}
	existed, err := f.db.quick.Delete(ctx, fileKey(rec.ID), 0)
	if err != nil {
		return fmt.Errorf("deleting file record %s: %w", rec.ID, err)
	}
	if existed && rec.Counted {
		f.release(rec.Owner, rec.Size)
	}
	return nil
}
