package index

import (
	"context"
	"errors"
	"fmt"

	smithy "github.com/aws/smithy-go"

	"github.com/af-project/af/internal/layout"
)

// The refresh rule, in one place: `af index build --db FILE` and the
// server's POST /api/v1/index/build both call Refresh, so they accept and
// refuse the same requests with the same messages.
//
//   - Before the first completed build the index holds nothing: the request
//     must name a bucket; the prefix defaults to "" and the schema to
//     Request.FirstSchema.
//   - After it, whatever the request leaves out is what the index holds,
//     and a request for another bucket, prefix or schema is refused
//     (ErrOtherSource): an index covers one source, and its stored keys are
//     relative to that prefix and ordered by that schema. A new source
//     needs a new index file.

var (
	// ErrInvalidRequest means the request itself is unusable (no bucket
	// on a first build, a schema with too few dimensions): a 400.
	ErrInvalidRequest = errors.New("invalid index build request")
	// ErrOtherSource means the request names another bucket, prefix or
	// schema than the index holds: a 409 that says what it holds.
	ErrOtherSource = errors.New("the index holds another source")
	// ErrBucket means S3 refused to list the bucket (it does not exist,
	// its name is invalid, or the credentials may not list it): the
	// request's fault, not a transient one, so never worth retrying.
	ErrBucket = errors.New("the bucket cannot be listed")
)

// Request is what a build asks for. The zero value refreshes what the
// index holds.
type Request struct {
	// Bucket is the input bucket; empty means the index's.
	Bucket string
	// Prefix is the key prefix; nil means the index's ("" on a first
	// build). A pointer, because "" (the whole bucket) is a prefix one
	// may ask for.
	Prefix *string
	// Schema names the dimensions; nil means the index's.
	Schema *layout.Schema
	// FirstSchema is the schema of a first build that names none; the
	// zero value means layout.Telemetry().
	FirstSchema layout.Schema
}

// SourceError is ErrOtherSource with what the index holds and what was
// asked for.
type SourceError struct {
	HeldBucket, HeldPrefix   string
	HeldSchema               layout.Schema
	AskedBucket, AskedPrefix string
	AskedSchema              layout.Schema
}

// Error says what the index holds and how to start a new index. It names
// no file, so the local command and the server say the same thing.
func (e *SourceError) Error() string {
	held := fmt.Sprintf("s3://%s/%s", e.HeldBucket, e.HeldPrefix)
	asked := fmt.Sprintf("s3://%s/%s", e.AskedBucket, e.AskedPrefix)
	newIndex := fmt.Sprintf("start a new index in another file (`af index build --db NEW.db --bucket %s --prefix %q`; the index of af serve is DATA/index.db: stop the server and move that file away first)",
		e.AskedBucket, e.AskedPrefix)
	if held != asked {
		return fmt.Sprintf("the index holds %s and cannot also hold %s (an index covers one bucket and prefix): to refresh it, run `af index build` without --bucket and --prefix; to index %s, %s",
			held, asked, asked, newIndex)
	}
	return fmt.Sprintf("the index of %s was built with the dimensions %s, not %s: to refresh it, run `af index build` without --schema; to index it with other dimensions, %s",
		held, e.HeldSchema, e.AskedSchema, newIndex)
}

// Unwrap makes the error match ErrOtherSource.
func (e *SourceError) Unwrap() error { return ErrOtherSource }

// Resolve applies the refresh rule to a request: the bucket, prefix
// (normalised) and schema a build would list, or why it may not.
func (db *DB) Resolve(req Request) (bucket, prefix string, schema layout.Schema, err error) {
	heldBucket, heldPrefix, heldSchema, err := db.Source()
	built := err == nil
	if err != nil && !errors.Is(err, ErrNotBuilt) {
		return "", "", layout.Schema{}, err
	}
	bucket, prefix, schema = req.Bucket, "", req.FirstSchema
	if req.Prefix != nil {
		prefix = layout.NormalizePrefix(*req.Prefix)
	}
	if len(schema.Fields) == 0 {
		schema = layout.Telemetry()
	}
	if req.Schema != nil {
		schema = *req.Schema
	}
	if !built {
		if bucket == "" {
			return "", "", layout.Schema{}, fmt.Errorf("%w: --bucket is required: the index has never been built, so name the S3 bucket holding the input files", ErrInvalidRequest)
		}
		return bucket, prefix, schema, checkSchema(schema)
	}
	if bucket == "" {
		bucket = heldBucket
	}
	if req.Prefix == nil {
		prefix = heldPrefix
	}
	if req.Schema == nil {
		schema = heldSchema
	}
	if err := sameSource(heldBucket, heldPrefix, heldSchema, bucket, prefix, schema); err != nil {
		return "", "", layout.Schema{}, err
	}
	return bucket, prefix, schema, nil
}

// Refresh resolves the request (see Resolve) and builds: the one entry
// point of both `af index build` and the server's build route.
func (db *DB) Refresh(ctx context.Context, lister Lister, req Request, progress func(BuildProgress)) (BuildReport, error) {
	bucket, prefix, schema, err := db.Resolve(req)
	if err != nil {
		return BuildReport{Bucket: req.Bucket}, err
	}
	return db.Build(ctx, lister, bucket, prefix, schema, progress)
}

func checkSchema(schema layout.Schema) error {
	if len(schema.Fields) < 2 && schema.Places == nil {
		return fmt.Errorf("%w: the schema has %d dimension(s); the layout needs at least 2", ErrInvalidRequest, len(schema.Fields))
	}
	if _, err := layout.ParseLayout(schema.Fields, schema.Layout()); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidRequest, err)
	}
	return nil
}

// sameSource refuses a build of another source than the index holds.
func sameSource(heldBucket, heldPrefix string, heldSchema layout.Schema, bucket, prefix string, schema layout.Schema) error {
	if heldBucket == bucket && heldPrefix == prefix && heldSchema.Equal(schema) {
		return nil
	}
	return &SourceError{
		HeldBucket: heldBucket, HeldPrefix: heldPrefix, HeldSchema: heldSchema,
		AskedBucket: bucket, AskedPrefix: prefix, AskedSchema: schema,
	}
}

// listErr turns S3's refusals to list a bucket into ErrBucket with a
// message that says what to check; other errors (the network, a 5xx) stay
// as they are.
func listErr(bucket, prefix string, err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return fmt.Errorf("list s3://%s/%s: %w", bucket, prefix, err)
	}
	switch ae.ErrorCode() {
	case "NoSuchBucket":
		return fmt.Errorf("%w: bucket %q does not exist (S3 NoSuchBucket listing s3://%s/%s): check --bucket", ErrBucket, bucket, bucket, prefix)
	case "InvalidBucketName":
		return fmt.Errorf("%w: %q is not a valid bucket name (S3 InvalidBucketName): check --bucket", ErrBucket, bucket)
	case "AccessDenied", "AllAccessDisabled":
		return fmt.Errorf("%w: listing s3://%s/%s is denied to these credentials (S3 %s): check --bucket, or grant s3:ListBucket on it", ErrBucket, bucket, prefix, ae.ErrorCode())
	}
	return fmt.Errorf("list s3://%s/%s: %w", bucket, prefix, err)
}
