// Package index is the file index: a bbolt database of every input object
// under one bucket and prefix (key, size, ETag, last-modified, dimensions),
// built and refreshed from an S3 listing and queried with a filter.
//
// Objects are stored under their key relative to the prefix. In the layout
// every dimension value is followed by a byte that cannot occur inside it
// ("/" after a directory level, "." after a file-name dimension), so the
// relative key is itself a composite key of the dimensions in schema order:
// all files with the same leading dimension values are one contiguous run,
// and a query seeks from run to run (a skip scan) instead of reading every
// key. Because it is the key itself, the index order is S3's listing order,
// which lets a refresh merge a listing with the stored keys in one pass.
package index

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/af-project/af/internal/layout"
)

// FormatVersion is the version of the index file format this code writes
// and reads. A file with a newer version is refused rather than misread.
//
// Version 2 adds the layout (meta key "layout", Schema.Layout's text) for
// indexes of another layout than telemetry-server's .vN one; an index of
// that layout keeps writing version 1, so older af reads it as before,
// while one of another layout says 2, which older af refuses instead of
// misreading its keys.
const FormatVersion = 2

// DefaultTimeout is how long Open waits for another process's lock.
const DefaultTimeout = time.Second

var (
	metaBucket    = []byte("meta")
	objectsBucket = []byte("objects")

	metaFormat     = []byte("format")
	metaBucketName = []byte("bucket")
	metaPrefix     = []byte("prefix")
	metaSchema     = []byte("schema")
	metaBuilt      = []byte("built")
	metaLayout     = []byte("layout")
)

// ErrInUse means another process holds the index file open for writing.
var ErrInUse = errors.New("index in use")

// ErrNotBuilt means the index file exists but no build has stored anything
// in it yet.
var ErrNotBuilt = errors.New("index not built")

// Clock gives the time; tests pass a fixed one.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Options configure Open.
type Options struct {
	// Logger receives build summaries; nil discards them.
	Logger *slog.Logger
	// ReadOnly opens with a shared lock, so several readers can query at
	// once, and never creates the file.
	ReadOnly bool
	// Timeout bounds the wait for another process's lock; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Clock times builds and queries; nil means the real clock.
	Clock Clock
}

// DB is an open index file.
type DB struct {
	bolt  *bolt.DB
	path  string
	log   *slog.Logger
	clock Clock
	// batchSize is how many listed objects a build writes per
	// transaction; tests lower it to cross batch boundaries.
	batchSize int
	// pageSize, when set, asks S3 for smaller listing pages than its
	// 1,000 so tests cross page boundaries with few objects.
	pageSize int32
}

// Open opens the index at path, creating it unless opts.ReadOnly.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open index %s: %w (build it with `af index build --bucket BUCKET --db %s`)", path, err, path)
		}
	}
	b, err := bolt.Open(path, 0o644, &bolt.Options{
		Timeout:      opts.Timeout,
		ReadOnly:     opts.ReadOnly,
		FreelistType: bolt.FreelistMapType,
		// Map a gigabyte of address space up front: growing the map
		// copies every node a build holds in memory, each time.
		InitialMmapSize: 1 << 30,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("%w: the index at %s is in use (is `af serve` running? query through it or stop it)", ErrInUse, path)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("open index %s: %w (it is not an af index or it is damaged: move it away and run `af index build`)", path, err)
	case err != nil:
		return nil, fmt.Errorf("open index %s: %w", path, err)
	}
	db := &DB{bolt: b, path: path, log: opts.Logger, clock: opts.Clock, batchSize: defaultBatchSize}
	if err := db.init(opts.ReadOnly); err != nil {
		b.Close()
		return nil, err
	}
	return db, nil
}

// init creates the buckets of a new file and checks the format of an
// existing one.
func (db *DB) init(readOnly bool) error {
	check := func(tx *bolt.Tx) (fresh bool, err error) {
		meta := tx.Bucket(metaBucket)
		if meta == nil {
			if tx.Bucket(objectsBucket) != nil || !isEmpty(tx) {
				return false, fmt.Errorf("open index %s: it is a bbolt file but not an af index (no meta bucket): use another --db", db.path)
			}
			return true, nil
		}
		v, err := strconv.Atoi(string(meta.Get(metaFormat)))
		if err != nil {
			return false, fmt.Errorf("open index %s: its format version %q is unreadable (damaged file?): move it away and run `af index build`", db.path, meta.Get(metaFormat))
		}
		if v > FormatVersion {
			return false, fmt.Errorf("open index %s: it has format version %d, newer than this af understands (%d): upgrade af or build a new index with another --db", db.path, v, FormatVersion)
		}
		if tx.Bucket(objectsBucket) == nil {
			return false, fmt.Errorf("open index %s: it has no objects bucket (damaged file?): move it away and run `af index build`", db.path)
		}
		return false, nil
	}
	if readOnly {
		return db.bolt.View(func(tx *bolt.Tx) error {
			fresh, err := check(tx)
			if err == nil && fresh {
				return fmt.Errorf("open index %s: %w: run `af index build --bucket BUCKET --db %s`", db.path, ErrNotBuilt, db.path)
			}
			return err
		})
	}
	return db.bolt.Update(func(tx *bolt.Tx) error {
		fresh, err := check(tx)
		if err != nil || !fresh {
			return err
		}
		meta, err := tx.CreateBucket(metaBucket)
		if err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		if err := meta.Put(metaFormat, []byte("1")); err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		if _, err := tx.CreateBucket(objectsBucket); err != nil {
			return fmt.Errorf("create index: %w", err)
		}
		return nil
	})
}

func isEmpty(tx *bolt.Tx) bool {
	k, _ := tx.Cursor().First()
	return k == nil
}

// Close closes the file and releases its lock.
func (db *DB) Close() error { return db.bolt.Close() }

// Path is the file the index lives in.
func (db *DB) Path() string { return db.path }

type source struct {
	bucket, prefix string
	schema         layout.Schema
	built          time.Time
}

func readSource(tx *bolt.Tx) (source, bool, error) {
	meta := tx.Bucket(metaBucket)
	b := meta.Get(metaBucketName)
	if b == nil {
		return source{}, false, nil
	}
	s := source{bucket: string(b), prefix: string(meta.Get(metaPrefix))}
	var fields []string
	if err := json.Unmarshal(meta.Get(metaSchema), &fields); err != nil {
		return source{}, false, fmt.Errorf("read index schema: %w", err)
	}
	schema, err := layout.ParseLayout(fields, string(meta.Get(metaLayout)))
	if err != nil {
		return source{}, false, fmt.Errorf("read index schema: %w (damaged file? move it away and run `af index build`)", err)
	}
	s.schema = schema
	if t := meta.Get(metaBuilt); t != nil {
		s.built, _ = time.Parse(time.RFC3339Nano, string(t))
	}
	return s, true, nil
}

// builtSource reads what the index was built from, or says that it has
// not been built.
func (db *DB) builtSource(tx *bolt.Tx) (source, error) {
	s, ok, err := readSource(tx)
	if err != nil {
		return source{}, err
	}
	if !ok {
		return source{}, fmt.Errorf("%w: the index at %s is empty: run `af index build --bucket BUCKET --db %s`", ErrNotBuilt, db.path, db.path)
	}
	return s, nil
}

// Source returns what the index was built from: the bucket, the prefix
// (normalised to end in "/" when not empty) and the schema. It returns
// ErrNotBuilt before the first build.
func (db *DB) Source() (bucket, prefix string, schema layout.Schema, err error) {
	err = db.bolt.View(func(tx *bolt.Tx) error {
		s, err := db.builtSource(tx)
		bucket, prefix, schema = s.bucket, s.prefix, s.schema
		return err
	})
	return bucket, prefix, schema, err
}
