package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// s3Retry is how a read of one S3 object rides out a fault of S3 or of
// the network: every failed GET, and every body that breaks off before
// its end, is retried from the byte reached after a backoff, until Tries
// attempts in a row failed without a byte of progress. The defaults wait
// 20-40 s in all, longer than a MinIO restart or a short partition.
type s3Retry struct {
	// Tries is how many failures in a row (a GET that fails, a body that
	// breaks before a byte) end the read.
	Tries int
	// First is the first backoff; each next one doubles, up to Max.
	First, Max time.Duration
	// Clock sleeps between tries (a fake one in tests).
	Clock Clock
}

// defaultS3Retry is what workers use: 10 tries, 250 ms doubling to 8 s.
var defaultS3Retry = s3Retry{Tries: 10, First: 250 * time.Millisecond, Max: 8 * time.Second}

func (p s3Retry) fill() s3Retry {
	if p.Tries <= 0 {
		p.Tries = defaultS3Retry.Tries
	}
	if p.First <= 0 {
		p.First = defaultS3Retry.First
	}
	if p.Max < p.First {
		p.Max = max(defaultS3Retry.Max, p.First)
	}
	if p.Clock == nil {
		p.Clock = SystemClock{}
	}
	return p
}

// wait is the pause before retry n (n >= 1): the doubling window, of
// which the upper half is kept, so concurrent readers spread out without
// any of them retrying at once.
func (p s3Retry) wait(n int) time.Duration {
	w := p.First << min(n-1, 20)
	if w > p.Max || w <= 0 {
		w = p.Max
	}
	half := int64(w / 2)
	return time.Duration(half + rand.Int64N(half+1))
}

// s3Unavailable is an S3 read whose retries ran out: a fault of S3 or of
// the path to it, not of the object.
type s3Unavailable struct {
	bucket, key string
	tries       int
	err         error
}

func (e *s3Unavailable) Error() string {
	return fmt.Sprintf("s3 GET %s/%s: %v after %d tries", e.bucket, e.key, e.err, e.tries)
}

func (e *s3Unavailable) Unwrap() error { return e.err }

// s3ObjectChanged is an object rewritten while it was read: the bytes
// already delivered belong to its old version, so the rest cannot be
// spliced on.
type s3ObjectChanged struct {
	bucket, key, etag string
	at                int64
	// pinned: etag is the version the graph recorded when it was made,
	// and the object no longer is it.
	pinned bool
}

func (e *s3ObjectChanged) Error() string {
	if e.pinned {
		return fmt.Sprintf("s3 object %s/%s is no longer the version this graph was made with (ETag %s): the graph reads exactly the files it recorded, and this one was rewritten since; submit the filter again (af submit) to run over the data as it is now", e.bucket, e.key, e.etag)
	}
	return fmt.Sprintf("s3 object %s/%s changed while it was read (its ETag is no longer %s at byte %d); rerun the task to read its new version", e.bucket, e.key, e.etag, e.at)
}

// resumingReader reads one S3 object. When the body breaks off before its
// end, or a GET fails for a reason of S3 or the network, it GETs the rest
// (Range: bytes=N-) with If-Match the first answer's ETag, so that a
// changed object is an error instead of a splice of two versions; a task
// that pins the object's ETag starts with that one, so even the first GET
// asks for its version. Errors
// of the object itself (missing, access denied, bad credentials) are
// returned at once, as the SDK gave them.
type resumingReader struct {
	ctx         context.Context
	s3          ObjectGetter
	bucket, key string
	policy      s3Retry

	body io.ReadCloser
	// etag is the version every GET asks for (If-Match): the pinned one
	// from the start, else the first answer's.
	etag string
	// pinned: etag is the task's, not the first answer's.
	pinned bool
	// started: a GET has answered (later ones resume at off).
	started bool
	// size is the object's length from the first answer (-1 unknown);
	// off is how many of its bytes were delivered.
	size, off int64
	// onRetry, when set, is told of each retry (the task's log).
	onRetry func(try int, wait time.Duration, err error)
	// err ends every later Read once the retries ran out.
	err error
	// fails counts the failed GETs and broken bodies since the last byte
	// arrived.
	fails int
}

// openS3 GETs an object, retrying faults of S3, and returns a reader of
// its whole body that resumes cut streams. A pinned ETag (quoted, as S3
// sends it) makes even the first GET conditional: another version of the
// object is an *s3ObjectChanged with pinned set.
func openS3(ctx context.Context, get ObjectGetter, bucket, key, pinned string, policy s3Retry, onRetry func(int, time.Duration, error)) (*resumingReader, error) {
	r := &resumingReader{ctx: ctx, s3: get, bucket: bucket, key: key, policy: policy.fill(), size: -1, onRetry: onRetry, etag: pinned, pinned: pinned != ""}
	if err := r.get(nil); err != nil {
		return nil, err
	}
	return r, nil
}

// changed is the error of an object that is no longer version r.etag.
func (r *resumingReader) changed() error {
	return &s3ObjectChanged{bucket: r.bucket, key: r.key, etag: r.etag, at: r.off, pinned: r.pinned}
}

// get (re)opens the body at r.off, retrying transient faults; cause is
// the error that ended the previous body (nil on the first GET).
func (r *resumingReader) get(cause error) error {
	last := cause
	for {
		if last != nil {
			r.fails++
			if r.fails >= r.policy.Tries {
				return &s3Unavailable{bucket: r.bucket, key: r.key, tries: r.fails, err: last}
			}
			d := r.policy.wait(r.fails)
			if r.onRetry != nil {
				r.onRetry(r.fails+1, d, last)
			}
			select {
			case <-r.ctx.Done():
				return r.ctx.Err()
			case <-r.policy.Clock.After(d):
			}
		}
		in := &s3.GetObjectInput{Bucket: aws.String(r.bucket), Key: aws.String(r.key)}
		if r.etag != "" {
			in.IfMatch = aws.String(r.etag)
		}
		if r.started && r.etag != "" {
			in.Range = aws.String("bytes=" + strconv.FormatInt(r.off, 10) + "-")
		}
		out, err := r.s3.GetObject(r.ctx, in)
		if err == nil {
			switch tag := aws.ToString(out.ETag); {
			case r.etag == "":
				r.etag = tag
			case tag != "" && tag != r.etag:
				// If-Match not honoured (a proxy, an old store): another
				// version, which must not be spliced on or read instead.
				out.Body.Close()
				return r.changed()
			}
			if !r.started && out.ContentLength != nil {
				r.size = *out.ContentLength
			}
			r.started = true
			r.body = out.Body
			return nil
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		if r.etag != "" && preconditionFailed(err) {
			return r.changed()
		}
		if !transientS3(err) {
			return err
		}
		last = err
	}
}

// Read reads the object, resuming where a broken body stopped.
func (r *resumingReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	for {
		n, err := r.body.Read(p)
		r.off += int64(n)
		if n > 0 {
			r.fails = 0
		}
		switch {
		case err == nil:
			return n, nil
		case err == io.EOF && (r.size < 0 || r.off >= r.size):
			return n, io.EOF
		case r.ctx.Err() != nil:
			r.err = r.ctx.Err()
			return n, r.err
		}
		if err == io.EOF {
			// Fewer bytes than the answer's Content-Length: cut.
			err = io.ErrUnexpectedEOF
		}
		if rerr := r.retry(err); rerr != nil {
			// The bytes that did arrive go on; the error follows.
			r.err = rerr
			if n > 0 {
				return n, nil
			}
			return 0, rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// retry replaces the broken body with a ranged GET from r.off.
func (r *resumingReader) retry(cause error) error {
	r.body.Close()
	r.body = io.NopCloser(eofReader{})
	if r.size >= 0 && r.off >= r.size {
		// Every byte arrived; the break was after the last one.
		return nil
	}
	return r.get(cause)
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// Close closes the current body.
func (r *resumingReader) Close() error {
	err := r.body.Close()
	r.body = io.NopCloser(eofReader{})
	return err
}

// preconditionFailed is S3's answer to an If-Match that no longer holds.
func preconditionFailed(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && ae.ErrorCode() == "PreconditionFailed" {
		return true
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed
}

// transientS3 says whether another GET may succeed: connection errors,
// timeouts, throttling and 5xx answers are S3's or the network's; 4xx
// answers (missing, denied, bad credentials) are about the object or the
// job and are not retried.
func transientS3(err error) bool {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		// Status 0: the SDK's wrapper of a request that got no answer
		// (connection refused, reset, timed out).
		s := re.HTTPStatusCode()
		return s == 0 || s >= 500 || s == http.StatusTooManyRequests || s == http.StatusRequestTimeout
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed":
			return true
		}
		return false
	}
	// No answer at all: a refused or broken connection, a timeout.
	return true
}
