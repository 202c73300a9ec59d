package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/pquerna/ffjson/ffjson"
)

// File and quota commands (DESIGN §3.2 Files). The routes that move the bytes are in files.go.

var errNotImage = errors.New("not an image")

func getS3PolicyData(ctx context.Context, s *Session, req *Request) (reply, error) {
	if req.CID != profileCID {
		if _, err := s.memberConvo(ctx, req.CID); err != nil {
			return nil, err
		}
	}
	if err := checkFileName(req.Name); err != nil {
		return nil, err
	}
	if err := s.db.cfg.checkUploadSize(req.Size); err != nil {
		return nil, err
	}
	if len(req.ContentType) > maxMIME || !mimePattern.MatchString(req.ContentType) {
		return nil, clientErr("ContentType must be a MIME type such as image/png.")
	}
	if req.CID == profileCID && (req.Size > maxProfileSize || !rasterImage(req.ContentType)) {
		return nil, clientErr("A profile picture is a PNG, JPEG, GIF, WebP or BMP image of at most %s.", byteSize(maxProfileSize))
	}
	u, err := s.db.getUserData(ctx, s.user)
	if err != nil {
		return nil, err
	}
	if !fitsQuota(u, req.Size) {
		return nil, clientErr("Over your quota: %s used of %s, and this file needs %s.",
			byteSize(u.QuotaUsed), byteSize(u.Quota), byteSize(req.Size))
	}
	return s.db.files.target(ctx, u, req.CID, req)
}

// checkUploadSize refuses a size that is not positive or over -max-file-size. Whatever the flag,
// a file is smaller than MaxInt64 bytes, so that Size+1 (the upload's read limit) cannot overflow.
func (cfg Config) checkUploadSize(n int64) error {
	if n <= 0 || n == math.MaxInt64 {
		return clientErr("Size must be the file's size in bytes.")
	}
	if cfg.MaxFileSize > 0 && n > cfg.MaxFileSize {
		return clientErr("A file may be at most %s; this one is %s.", byteSize(cfg.MaxFileSize), byteSize(n))
	}
	return nil
}

// byteSize writes n bytes for people.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// getFileToken hands out a file token tied to this session (files.go says how it is revoked).
func getFileToken(ctx context.Context, s *Session, req *Request) (reply, error) {
	u, err := s.db.getUserData(ctx, s.user)
	if err != nil {
		return nil, err
	}
	exp := time.Now().Add(fileTokenTTL)
	return &FileToken{Token: s.db.files.fileToken(u, s.tokenHash, exp), Expires: formatTime(exp)}, nil
}

// removeConvoFile deletes a conversation's file: its uploader (a member) or an administrator.
func removeConvoFile(ctx context.Context, s *Session, req *Request) (reply, error) {
	admin := s.db.cfg.isAdmin(s.user)
	if !admin {
		if _, err := s.memberConvo(ctx, req.CID); err != nil {
			return nil, err
		}
	} else if !validCID(req.CID) {
		return nil, clientErr("invalid CID")
	}
	id := fileIDOf(req.FileURL)
	if id == "" {
		return nil, clientErr("fileURL must be a file of this server (/files/<id>).")
	}
	rec, err := s.db.files.getFile(ctx, id)
	if isNotFound(err) || err == nil && rec.CID != req.CID {
		return nil, clientErr("No such file in this conversation.")
	}
	if err != nil {
		return nil, err
	}
	if upperName(rec.Owner) != s.upper && !admin {
		return nil, clientErr("Only the uploader or an administrator may remove a file.")
	}
	if err := s.db.files.remove(ctx, rec); err != nil {
		return nil, err
	}
	c, err := s.db.updateConvo(ctx, req.CID, func(c *ConvoRecord) error {
		i := slices.Index(c.Files, req.FileURL)
		if i < 0 {
			return errNoChange
		}
		c.Files = slices.Delete(c.Files, i, i+1)
		return nil
	})
	if err != nil {
		return nil, err
	}
	payload, err := ffjson.Marshal(&FilesPush{Cmd: "RemoveConvoFile", CID: c.CID, FileURL: req.FileURL})
	if err != nil {
		return nil, err
	}
	s.db.publish(c.Members, payload, "")
	ffjson.Pool(payload)
	s.db.pushQuota(ctx, rec.Owner)
	return nil, nil
}

// addNoOverflow is a+b and whether it fits in an int64.
func addNoOverflow(a, b int64) (int64, bool) {
	sum := a + b
	return sum, (b >= 0) == (sum >= a)
}

// pushQuota sends a user's sessions their view after their QuotaUsed changed.
func (db *Database) pushQuota(ctx context.Context, user string) {
	u, err := db.getUser(ctx, user)
	if err == nil {
		err = db.publishUserView(ctx, u, "")
	}
	if err != nil && !isNotFound(err) {
		slog.Warn("pushing the user view after a quota change", "user", user, "err", err)
	}
}

// changeProfilePic sets the picture to one of the user's own profile uploads (or none); the
// previous picture is deleted and its space given back.
func changeProfilePic(ctx context.Context, s *Session, req *Request) (reply, error) {
	if req.ProfilePic != "" {
		rec, err := s.db.files.claim(ctx, s.user, profileCID, req.ProfilePic)
		if err == nil && !rasterImage(rec.Type) {
			err = errNotImage
		}
		if err != nil {
			return nil, clientErr("ProfilePic must be a picture you uploaded as your profile picture (/files/<id>).")
		}
	}
	old := ""
	if _, err := s.db.updateUser(ctx, s.user, func(u *UserRecord) error {
		old, u.ProfilePic = u.ProfilePic, req.ProfilePic
		return nil
	}); err != nil {
		return nil, err
	}
	if old != req.ProfilePic {
		s.db.files.removeProfilePic(ctx, s.user, old)
	}
	return s.changeSelf(ctx, func(*UserRecord) error { return errNoChange })
}

// removeProfilePic deletes a user's former (or, at DeleteUser, current) profile picture file.
// Failures are logged: the picture is no longer served either way.
func (f *Files) removeProfilePic(ctx context.Context, user, url string) {
	id := fileIDOf(url)
	if f == nil || id == "" {
		return
	}
	rec, err := f.getFile(ctx, id)
	if err != nil || rec.CID != profileCID || upperName(rec.Owner) != upperName(user) {
		return
	}
	if err := f.remove(ctx, rec); err != nil {
		slog.Warn("deleting a profile picture", "user", user, "err", err)
	}
}

// quotaCommand is AddToQuota (used false) or AddToQuotaUsed: administrators only.
func quotaCommand(used bool) commandFunc {
	return func(ctx context.Context, s *Session, req *Request) (reply, error) {
		if !s.db.cfg.isAdmin(s.user) {
			return nil, clientErr("Only administrators may change quotas.")
		}
		if !validUsername(req.Username) {
			return nil, clientErr("invalid username")
		}
		u, err := s.db.updateUser(ctx, req.Username, func(u *UserRecord) error {
			if u.Deleting {
				return ErrNotFound
			}
			field := &u.Quota
			if used {
				field = &u.QuotaUsed
			}
			sum, ok := addNoOverflow(*field, req.Size)
			if !ok {
				return clientErr("That would overflow the quota.")
			}
			*field = max(0, sum) // an administrator's correction floors at 0 (DESIGN §3.2)
			return nil
		})
		if isNotFound(err) {
			return nil, clientErr("No such user.")
		}
		if err != nil {
			return nil, err
		}
		if err := s.db.publishUserView(ctx, u, ""); err != nil {
			slog.Warn("pushing the user view after a quota change", "user", u.Username, "err", err)
		}
		return &QuotaReply{Username: u.Username, Quota: u.Quota, QuotaUsed: u.QuotaUsed}, nil
	}
}
