package index

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/layout"
)

// memLister is an in-memory S3 listing for unit tests and benchmarks; the
// MinIO integration test covers the same Build path against real S3.
type memLister struct {
	objs     []types.Object // sorted by key
	pageSize int
	calls    int
}

func (m *memLister) put(key string, size int64, etag string, mtime time.Time) {
	o := types.Object{Key: aws.String(key), Size: aws.Int64(size), ETag: aws.String(`"` + etag + `"`), LastModified: aws.Time(mtime)}
	i, found := slices.BinarySearchFunc(m.objs, key, func(o types.Object, k string) int { return strings.Compare(*o.Key, k) })
	if found {
		m.objs[i] = o
		return
	}
	m.objs = slices.Insert(m.objs, i, o)
}

func (m *memLister) remove(key string) {
	m.objs = slices.DeleteFunc(m.objs, func(o types.Object) bool { return *o.Key == key })
}

func (m *memLister) ListObjectsV2(_ context.Context, in *s3.ListObjectsV2Input, _ ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	m.calls++
	size := m.pageSize
	if size <= 0 {
		size = 1000
	}
	start := 0
	if t := aws.ToString(in.ContinuationToken); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil {
			return nil, fmt.Errorf("bad token %q", t)
		}
		start = n
	}
	prefix := aws.ToString(in.Prefix)
	out := &s3.ListObjectsV2Output{}
	i := start
	for ; i < len(m.objs) && len(out.Contents) < size; i++ {
		if strings.HasPrefix(*m.objs[i].Key, prefix) {
			out.Contents = append(out.Contents, m.objs[i])
		}
	}
	if i < len(m.objs) {
		out.IsTruncated = aws.Bool(true)
		out.NextContinuationToken = aws.String(strconv.Itoa(i))
	}
	return out, nil
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

var t0 = time.Date(2014, 3, 10, 12, 0, 0, 0, time.UTC)

func openTemp(t testing.TB, opts Options) *DB {
	t.Helper()
	db, err := Open(filepath.Join(t.TempDir(), "index.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// md5ish is a deterministic 32-hex-digit ETag for n.
func md5ish(n int) string { return fmt.Sprintf("%032x", n*7919+1) }

// collect runs a query and returns the keys it selected.
func collect(t testing.TB, db *DB, f *filter.Filter) ([]Object, QueryStats) {
	t.Helper()
	var got []Object
	st, err := db.Query(context.Background(), f, func(o Object) error { got = append(got, o); return nil })
	if err != nil {
		t.Fatalf("query %s: %v", f.Name, err)
	}
	return got, st
}

// brute returns the keys of objs (under prefix) that f selects, by
// parsing and matching every key: what a query must return.
func brute(t testing.TB, objs []types.Object, prefix string, f *filter.Filter) []string {
	t.Helper()
	var want []string
	s := layout.Telemetry()
	for _, o := range objs {
		dims, err := s.Parse(prefix, *o.Key)
		if err == nil && f.Match(dims) {
			want = append(want, *o.Key)
		}
	}
	sort.Strings(want)
	return want
}

func keys(objs []Object) []string {
	ks := make([]string, len(objs))
	for i, o := range objs {
		ks[i] = o.Key
	}
	return ks
}

// mustFilter builds a filter over the telemetry schema from raw
// allowed_values per dimension ("" means "*").
func mustFilter(t testing.TB, av ...string) *filter.Filter {
	t.Helper()
	fields := layout.Telemetry().Fields
	parts := make([]string, len(fields))
	for i, f := range fields {
		v := `"*"`
		if i < len(av) && av[i] != "" {
			v = av[i]
		}
		parts[i] = fmt.Sprintf(`{"field_name": %q, "allowed_values": %s}`, f, v)
	}
	doc := `{"version": 1, "dimensions": [` + strings.Join(parts, ",") + `]}`
	f, err := filter.Parse(strings.Join(av, "|"), []byte(doc), layout.Telemetry())
	if err != nil {
		t.Fatal(err)
	}
	return f
}
