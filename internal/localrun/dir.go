package localrun

// This file: a local directory laid out like the bucket, seen as S3 (a
// listing for the index, GETs for the worker's feeder).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// dirStore serves the regular files under root as S3 objects whose keys
// are their slash-separated paths relative to root (telemetry-server's
// --local-only --data-dir). Its whole listing is one page.
type dirStore struct{ root string }

// ListObjectsV2 lists every regular file under the input's prefix, in key
// order. Links and other non-regular files are left out.
func (d dirStore) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	prefix := aws.ToString(in.Prefix)
	var objs []types.Object
	err := filepath.WalkDir(d.root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(d.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		objs = append(objs, types.Object{
			Key: aws.String(key), Size: aws.Int64(fi.Size()), ETag: aws.String(etag(fi)),
			LastModified: aws.Time(fi.ModTime()),
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list data dir %s: %w", d.root, err)
	}
	// WalkDir's lexical order is per directory; S3's is of whole keys.
	slices.SortFunc(objs, func(a, b types.Object) int { return strings.Compare(*a.Key, *b.Key) })
	return &s3.ListObjectsV2Output{Contents: objs, KeyCount: aws.Int32(int32(len(objs))), IsTruncated: aws.Bool(false)}, nil
}

func etag(fi fs.FileInfo) string {
	return fmt.Sprintf(`"%x-%x"`, fi.Size(), fi.ModTime().UnixNano())
}

// GetObject opens the file at the key (a Range from a resumed read is
// honoured). A missing file is S3's NoSuchKey, so the worker's feeder
// calls it a missing file as it would in S3.
func (d dirStore) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	key := aws.ToString(in.Key)
	clean := path.Clean("/" + key)[1:]
	if clean != key || key == "" {
		return nil, &smithy.GenericAPIError{Code: "InvalidKey", Message: fmt.Sprintf("key %q is not a plain path under the data dir", key)}
	}
	f, err := os.Open(filepath.Join(d.root, filepath.FromSlash(key)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &smithy.GenericAPIError{Code: "NoSuchKey", Message: fmt.Sprintf("%s: no such file", key)}
	}
	if err != nil {
		return nil, &smithy.GenericAPIError{Code: "LocalReadError", Message: err.Error()}
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, &smithy.GenericAPIError{Code: "LocalReadError", Message: fmt.Sprintf("%s is not a regular file", key)}
	}
	tag := etag(fi)
	if m := aws.ToString(in.IfMatch); m != "" && m != tag {
		f.Close()
		return nil, &smithy.GenericAPIError{Code: "PreconditionFailed", Message: key + " changed"}
	}
	size := fi.Size()
	var body io.Reader = f
	if r := aws.ToString(in.Range); r != "" {
		var off int64
		if _, err := fmt.Sscanf(r, "bytes=%d-", &off); err != nil || off < 0 || off > size {
			f.Close()
			return nil, &smithy.GenericAPIError{Code: "InvalidRange", Message: r}
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			f.Close()
			return nil, &smithy.GenericAPIError{Code: "LocalReadError", Message: err.Error()}
		}
		size -= off
	}
	return &s3.GetObjectOutput{Body: readCloser{body, f}, ETag: aws.String(tag), ContentLength: aws.Int64(size)}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
