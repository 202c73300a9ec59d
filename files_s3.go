package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Files in an S3-compatible store (-s3-url http(s)://host[:port]/bucket). minio-go is one module
// that speaks to any S3-compatible store and builds presigned POST policies itself (the AWS SDK
// needs several modules for the same). Uploads go straight from the browser to the store under a
// POST policy that pins the key, the size and the content type; downloads are redirects to short
// presigned GETs.

const s3GetTTL = 5 * time.Minute

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

// postPolicy fills t with a presigned POST for rec: exactly rec.Size bytes of rec.ContentType.
func (s *s3Store) postPolicy(ctx context.Context, t *UploadTarget, rec *FileRecord, expires time.Time) (*UploadTarget, error) {
	p := minio.NewPostPolicy()
	err := errors.Join(p.SetBucket(s.bucket), p.SetKey(s3Key(rec.ID)), p.SetExpires(expires),
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

// confirm checks that the object of a pending upload is there with its declared size, counts it
// against the owner's quota (deleting it when it no longer fits) and marks it stored.
func (s *s3Store) confirm(ctx context.Context, f *Files, rec *FileRecord) (*FileRecord, error) {
	st, err := s.client.StatObject(ctx, s.bucket, s3Key(rec.ID), minio.StatObjectOptions{})
	if err != nil {
		return nil, clientErr("That file has not been uploaded yet.")
	}
	if st.Size != rec.Size {
		_ = f.remove(ctx, rec)
		return nil, clientErr("The upload is not the declared size.")
	}
	typ, err := s.sniff(ctx, rec.ID)
	if err != nil {
		return nil, err
	}
	// Reserve first: a compare-and-set retry must not count the file twice.
	if _, err := f.reserve(ctx, rec.Owner, rec.Size); errors.Is(err, errOverQuota) {
		_ = f.remove(ctx, rec) // not counted yet: nothing to give back
		return nil, clientErr("Over your quota: the file was not kept.")
	} else if err != nil {
		return nil, err
	}
	won := false
	stored, err := f.updateFile(ctx, rec.ID, func(r *FileRecord) error {
		won = false
		if r.State == "stored" {
			return errNoChange
		}
		r.State, r.Type, r.Counted, r.Expires, won = "stored", typ, true, "", true
		return nil
	})
	if err != nil || !won {
		f.release(rec.Owner, rec.Size) // failed, or another request counted it already
	} else {
		f.db.pushQuota(ctx, rec.Owner)
	}
	return stored, err
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

func (s *s3Store) remove(ctx context.Context, id string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, s3Key(id), minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("deleting object %s: %w", id, err)
	}
	return nil
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
