package localrun

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/af-project/af/internal/taskdef"
)

// TestDirStore: a data dir as S3, listed in key order with links left
// out, read whole or from a byte, a missing file NoSuchKey and a changed
// one PreconditionFailed, as the worker's resuming reader expects.
func TestDirStore(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, p := range []string{"b/x.gz", "a/y.gz", "a.b/z", "a/b/c"} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte("0123456789"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(root, "a", "link")); err != nil {
		t.Fatal(err)
	}
	d := dirStore{root: root}
	ctx := context.Background()
	out, err := d.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Prefix: aws.String("a")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, *o.Key)
	}
	// S3's order of whole keys: "a.b/z" < "a/b/c" ('.' < '/').
	if want := []string{"a.b/z", "a/b/c", "a/y.gz"}; !slices.Equal(keys, want) {
		t.Fatalf("listed %q, want %q", keys, want)
	}
	tag := *out.Contents[0].ETag
	for _, tc := range []struct {
		name        string
		in          s3.GetObjectInput
		body, errIs string
	}{
		{name: "whole", in: s3.GetObjectInput{Key: aws.String("a/y.gz")}, body: "0123456789"},
		{name: "from byte 4", in: s3.GetObjectInput{Key: aws.String("a.b/z"), Range: aws.String("bytes=4-"), IfMatch: aws.String(tag)}, body: "456789"},
		{name: "changed", in: s3.GetObjectInput{Key: aws.String("a.b/z"), IfMatch: aws.String(`"other"`)}, errIs: "PreconditionFailed"},
		{name: "missing", in: s3.GetObjectInput{Key: aws.String("a/none")}, errIs: "NoSuchKey"},
		{name: "outside", in: s3.GetObjectInput{Key: aws.String("a/../../etc/passwd")}, errIs: "InvalidKey"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := d.GetObject(ctx, &tc.in)
			if tc.errIs != "" {
				var ae smithy.APIError
				if !errors.As(err, &ae) || ae.ErrorCode() != tc.errIs {
					t.Fatalf("err %v, want %s", err, tc.errIs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer got.Body.Close()
			b, err := io.ReadAll(got.Body)
			if err != nil || string(b) != tc.body || *got.ContentLength != int64(len(tc.body)) {
				t.Fatalf("body %q (length %d), %v; want %q", b, *got.ContentLength, err, tc.body)
			}
		})
	}
}

// TestSelectionSample: n files spread evenly, the first and last kept.
func TestSelectionSample(t *testing.T) {
	t.Parallel()
	var s Selection
	for _, k := range []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"} {
		s.Files = append(s.Files, taskdef.InputFile{Key: k})
	}
	all := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}
	for _, tc := range []struct {
		n    int
		want []string
	}{
		{1, []string{"0"}},
		{2, []string{"0", "9"}},
		{4, []string{"0", "3", "6", "9"}},
		{0, all},
		{20, all},
	} {
		var got []string
		for _, f := range s.Sample(tc.n).Files {
			got = append(got, f.Key)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Sample(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestPrefixWriterEscapes: a task's log reaches the terminal line by line
// with its name in front, and none of the job's control characters (an
// escape sequence could rewrite what the terminal shows) gets through.
func TestPrefixWriterEscapes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		writes []string
		want   string
	}{
		{"lines", []string{"a\nb", "c\n"}, "[m] a\n[m] bc\n"},
		{"escape sequence", []string{"\x1b[2J\x1b]0;owned\x07hi\n"}, "[m] \\x1b[2J\\x1b]0;owned\\x07hi\n"},
		{"carriage return and tab", []string{"x\ry\tz\n"}, "[m] x\\x0dy\tz\n"},
		{"unterminated last line", []string{"end"}, "[m] end\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var b strings.Builder
			p := newPrefixWriter(&b, "[m] ")
			for _, w := range tc.writes {
				if _, err := p.Write([]byte(w)); err != nil {
					t.Fatal(err)
				}
			}
			p.Flush()
			if b.String() != tc.want {
				t.Fatalf("got %q, want %q", b.String(), tc.want)
			}
		})
	}
}
