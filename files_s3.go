package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Files in an S3-compatible store (-s3-url http(s)://host[:port]/bucket). minio-go is one module
// that speaks to any S3-compatible store and builds presigned POST policies itself (the AWS SDK
// needs several modules for the same). Uploads go straight from the browser to the store under a
// POST policy that pins the key, the size and the content type; downloads are redirects to short
// presigned GETs.
//
// A policy can be used again and again until it expires, by anyone who has it, and the server
// learns of a POST only when the file is claimed (UpdateConvoFiles, ChangeProfilePic). So the
// quota is reserved when the policy is handed out (and recorded in s3_uploads), the policy names
// an incoming key that nothing is ever served from, and a claim copies the object to its final
// key — which no policy names — before checking its size and type there: what was checked is
// what is served, whatever is posted later. After a policy has expired, a sweeper deletes what
// is left under its incoming key and, if it was never claimed, the file and its reservation.

const (
	s3GetTTL     = 5 * time.Minute
	s3PendingTTL = 24 * time.Hour  // an unclaimed S3 upload's record: until the sweeper's turn
	s3SweepEvery = time.Minute     // how often expired upload policies are swept
	s3SweepGrace = 5 * time.Minute // the store's clock may be behind ours
	s3SweepBatch = 500             // policies swept per turn
)

type s3Store struct {
	client *minio.Client
	bucket string
}

func newS3Store(cfg Config) (*s3Store, error) {
	u, err := url.Parse(cfg.S3URL)
	bucket := strings.Trim(u.Path, "/")
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || bucket == "" || strings.Contains(bucket, "/") {
		return nil, fmt.Errorf("-s3-url must be http(s)://host[:port]/bucket, not %q", cfg.S3URL)
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.S3AccessKey, cfg.S3SecretKey, ""),
		Secure: u.Scheme == "https",
		Region: cfg.S3Region,
	})
	if err != nil {
		return nil, fmt.Errorf("configuring S3: %w", err)
	}
	return &s3Store{client: client, bucket: bucket}, nil
}

func s3Key(id string) string { return "uploads/" + id }

// s3IncomingKey is where a policy lets the browser POST: never served from.
func s3IncomingKey(id string) string { return "incoming/" + id }

// reserveTarget reserves an upload's size of its owner's quota when its policy is handed out, and
// records the policy for the sweeper. On failure nothing stays reserved or recorded.
func (s *s3Store) reserveTarget(ctx context.Context, f *Files, rec *FileRecord, expires time.Time) error {
	bg := context.WithoutCancel(ctx)
	undo := func() {
		_, _ = f.db.quick.Delete(bg, fileKey(rec.ID), 0)
		_, _ = f.db.pool.Exec(bg, "DELETE FROM s3_uploads WHERE id = $1", rec.ID)
	}
	if _, err := f.db.pool.Exec(ctx, "INSERT INTO s3_uploads (id, owner, expires) VALUES ($1, $2, $3)",
		rec.ID, rec.Owner, expires); err != nil {
		undo()
		return fmt.Errorf("recording the upload: %w", err)
	}
	if _, err := f.reserve(ctx, rec.Owner, rec.Size); err != nil {
		undo()
		if errors.Is(err, errOverQuota) {
			return clientErr("Over your quota: uploads in progress hold the space; this file needs %s.", byteSize(rec.Size))
		}
		return err
	}
	// If this fails, the sweeper finds the record uncounted and the space stays reserved: too
	// much counted, never too little.
	if _, err := f.updateFile(ctx, rec.ID, func(r *FileRecord) error {
		r.Counted = true
		return nil
	}); err != nil {
		return fmt.Errorf("recording the reservation: %w", err)
	}
	rec.Counted = true
	f.db.pushQuota(ctx, rec.Owner)
	return nil
}

// postPolicy fills t with a presigned POST for rec: exactly rec.Size bytes of rec.ContentType.
func (s *s3Store) postPolicy(ctx context.Context, t *UploadTarget, rec *FileRecord, expires time.Time) (*UploadTarget, error) {
	p := minio.NewPostPolicy()
	err := errors.Join(p.SetBucket(s.bucket), p.SetKey(s3IncomingKey(rec.ID)), p.SetExpires(expires),
		p.SetContentType(rec.ContentType), p.SetContentLengthRange(rec.Size, rec.Size))
	if err != nil {
		return nil, fmt.Errorf("building the S3 policy: %w", err)
	}
	u, fields, err := s.client.PresignedPostPolicy(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("signing the S3 policy: %w", err)
	}
	t.Method, t.URL, t.Fields = "POST", u.String(), fields
	return t, nil
}

// confirm claims a pending upload: the posted object is copied to its final key, and only that
// copy is checked (size, sniffed type) and served. The space was reserved with the policy.
func (s *s3Store) confirm(ctx context.Context, f *Files, rec *FileRecord) (*FileRecord, error) {
	if rec.State != "pending" {
		return nil, clientErr("That file has not been uploaded yet.")
	}
	_, err := s.client.CopyObject(ctx, minio.CopyDestOptions{Bucket: s.bucket, Object: s3Key(rec.ID)},
		minio.CopySrcOptions{Bucket: s.bucket, Object: s3IncomingKey(rec.ID)})
	if minio.ToErrorResponse(err).StatusCode == http.StatusNotFound {
		return nil, clientErr("That file has not been uploaded yet.")
	}
	if err != nil {
		return nil, fmt.Errorf("copying the upload to its place: %w", err)
	}
	st, err := s.client.StatObject(ctx, s.bucket, s3Key(rec.ID), minio.StatObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the uploaded object: %w", err)
	}
	if st.Size != rec.Size {
		_ = f.remove(ctx, rec)
		return nil, clientErr("The upload is not the declared size.")
	}
	typ, err := s.sniff(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	stored, err := f.updateFile(ctx, rec.ID, func(r *FileRecord) error {
		if r.State == "stored" {
			return errNoChange // another claim was first: same bytes
		}
		r.State, r.Type, r.Expires = "stored", typ, ""
		return nil
	})
	if isNotFound(err) {
		_ = s.removeKey(context.WithoutCancel(ctx), s3Key(rec.ID)) // swept meanwhile
		return nil, clientErr("That upload has expired; upload the file again.")
	}
	if err != nil {
		return nil, err
	}
	_ = s.removeKey(ctx, s3IncomingKey(rec.ID)) // what the sweeper would delete anyway
	return stored, nil
}

// sniff is the type of an object's first 512 bytes.
func (s *s3Store) sniff(ctx context.Context, id string) (string, error) {
	opts := minio.GetObjectOptions{}
	_ = opts.SetRange(0, 511)
	obj, err := s.client.GetObject(ctx, s.bucket, s3Key(id), opts)
	if err != nil {
		return "", fmt.Errorf("reading the uploaded object: %w", err)
	}
	defer obj.Close()
	head, err := io.ReadAll(io.LimitReader(obj, 512))
	if err != nil {
		return "", fmt.Errorf("reading the uploaded object: %w", err)
	}
	return http.DetectContentType(head), nil
}

// remove deletes a file's objects: the served one and anything left under its incoming key.
func (s *s3Store) remove(ctx context.Context, id string) error {
	return errors.Join(s.removeKey(ctx, s3Key(id)), s.removeKey(ctx, s3IncomingKey(id)))
}

func (s *s3Store) removeKey(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("deleting object %s: %w", key, err)
	}
	return nil
}

// runSweeper sweeps expired upload policies every s3SweepEvery until ctx ends.
func (f *Files) runSweeper(ctx context.Context) {
	t := time.NewTicker(s3SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.sweepUploads(ctx, time.Now())
		}
	}
}

// sweepUploads handles the upload policies that had expired (with a grace for the store's clock)
// at now; it returns how many it finished.
func (f *Files) sweepUploads(ctx context.Context, now time.Time) int {
	rows, err := f.db.pool.Query(ctx, "SELECT id FROM s3_uploads WHERE expires < $1 ORDER BY expires LIMIT $2",
		now.Add(-s3SweepGrace), s3SweepBatch)
	if err != nil {
		slog.Error("listing expired uploads", "err", err)
		return 0
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		slog.Error("listing expired uploads", "err", err)
		return 0
	}
	done := 0
	for _, id := range ids {
		if err := f.sweepUpload(ctx, id); err != nil {
			slog.Warn("sweeping an expired upload", "id", id, "err", err) // again next turn
			continue
		}
		done++
	}
	return done
}

// sweepUpload ends one expired policy: nothing can be posted under it any more, so whatever is
// at its incoming key goes (a claimed file was copied away; a POST after the claim or one never
// claimed is an orphan); a file never claimed goes with its reservation. The record is deleted
// only at the generation read, so a claim at the same moment either wins or finds it gone; the
// space is given back only by the deletion that happened (a crash in between leaves it
// counted, never given back twice).
func (f *Files) sweepUpload(ctx context.Context, id string) error {
	if err := f.s3.removeKey(ctx, s3IncomingKey(id)); err != nil {
		return err
	}
	rec, gen, err := getRecord[FileRecord](ctx, f.db.quick, fileKey(id))
	if err != nil && !isNotFound(err) {
		return err
	}
	if err == nil && rec.State != "stored" {
		if err := f.s3.removeKey(ctx, s3Key(id)); err != nil {
			return err
		}
		deleted, err := f.db.quick.Delete(ctx, fileKey(id), gen)
		if err != nil {
			return err // ErrGeneration: claimed (or changed) meanwhile; look again next turn
		}
		if deleted && rec.Counted {
			f.release(rec.Owner, rec.Size)
			f.db.pushQuota(ctx, rec.Owner)
		}
	}
	_, err = f.db.pool.Exec(ctx, "DELETE FROM s3_uploads WHERE id = $1", id)
	return err
}

// redirect sends the client to a short presigned GET carrying the type and disposition.
func (s *s3Store) redirect(w http.ResponseWriter, r *http.Request, rec *FileRecord, typ, disposition string) {
	params := url.Values{"response-content-type": {typ}, "response-content-disposition": {disposition}}
	u, err := s.client.PresignedGetObject(r.Context(), s.bucket, s3Key(rec.ID), s3GetTTL, params)
	if err != nil {
		http.Error(w, "storage unavailable", http.StatusServiceUnavailable)
		return
	}
	http.Redirect(w, r, u.String(), http.StatusFound)
}
