package index

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/af-project/af/internal/layout"
)

func ptr[T any](v T) *T { return &v }

// TestRefreshRule is the one rule both `af index build --db` and the
// server's build route follow.
func TestRefreshRule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	other := layout.Schema{Fields: []string{"x", "y"}}
	fresh := openTemp(t, Options{})
	built := openTemp(t, Options{})
	if _, err := built.Refresh(ctx, &memLister{}, Request{Bucket: "b", Prefix: ptr("p")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		db             *DB
		req            Request
		bucket, prefix string
		schema         layout.Schema
		wantErr        error
		wantMsg        string
	}{
		{name: "first build needs a bucket", db: fresh, req: Request{Prefix: ptr("p")}, wantErr: ErrInvalidRequest, wantMsg: "--bucket is required"},
		{name: "first build defaults", db: fresh, req: Request{Bucket: "b"}, bucket: "b", prefix: "", schema: layout.Telemetry()},
		{name: "first build's schema", db: fresh, req: Request{Bucket: "b", Prefix: ptr("q/"), FirstSchema: other}, bucket: "b", prefix: "q/", schema: other},
		{name: "first build, too few dimensions", db: fresh, req: Request{Bucket: "b", Schema: &layout.Schema{Fields: []string{"x"}}}, wantErr: ErrInvalidRequest},
		{name: "refresh", db: built, req: Request{}, bucket: "b", prefix: "p/", schema: layout.Telemetry()},
		{name: "refresh naming the same source", db: built, req: Request{Bucket: "b", Prefix: ptr("p"), FirstSchema: other}, bucket: "b", prefix: "p/", schema: layout.Telemetry()},
		{name: "another prefix", db: built, req: Request{Prefix: ptr("q")}, wantErr: ErrOtherSource,
			wantMsg: "the index holds s3://b/p/ and cannot also hold s3://b/q/ (an index covers one bucket and prefix): to refresh it, run `af index build` without --bucket and --prefix; to index s3://b/q/, start a new index in another file (`af index build --db NEW.db --bucket b --prefix \"q/\"`"},
		{name: "the whole bucket is another prefix", db: built, req: Request{Prefix: ptr("")}, wantErr: ErrOtherSource, wantMsg: "cannot also hold s3://b/ "},
		{name: "another bucket keeps the prefix", db: built, req: Request{Bucket: "c"}, wantErr: ErrOtherSource, wantMsg: "cannot also hold s3://c/p/"},
		{name: "another schema", db: built, req: Request{Schema: &other}, wantErr: ErrOtherSource, wantMsg: "was built with the dimensions"},
	} {
		bucket, prefix, schema, err := tc.db.Resolve(tc.req)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.wantErr, tc.wantMsg)
			}
			if _, rerr := tc.db.Refresh(ctx, &memLister{}, tc.req, nil); rerr == nil || rerr.Error() != err.Error() {
				t.Errorf("%s: Refresh says %v, Resolve %v", tc.name, rerr, err)
			}
			continue
		}
		if err != nil || bucket != tc.bucket || prefix != tc.prefix || !schema.Equal(tc.schema) {
			t.Errorf("%s: %q %q %v %v, want %q %q %v", tc.name, bucket, prefix, schema, err, tc.bucket, tc.prefix, tc.schema)
		}
	}
	// The refused builds changed nothing.
	b, p, s, err := built.Source()
	if err != nil || b != "b" || p != "p/" || !s.Equal(layout.Telemetry()) {
		t.Errorf("source after refusals: %q %q %v %v", b, p, s, err)
	}
}
