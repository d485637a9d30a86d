package queue

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Clock is where the queue reads the time. Leases, deadlines and run
// timestamps all come from it, so tests drive expiry by advancing a fake
// clock and calling Tick instead of sleeping.
type Clock interface {
	Now() time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// DefaultLeaseDuration is the claim lease: a worker that neither reclaims
// nor reports within it loses the run. TaskCluster uses 20 minutes; for
// hourly jobs a dead worker's task should come back sooner, and workers
// renew at a third of the remaining lease, so 5 minutes costs one small
// request per running task every 100 s or so.
const DefaultLeaseDuration = 5 * time.Minute

// DefaultRetries is how many automatic retries a task gets when its
// submitter does not say; the queue itself never fills it in (Retries is
// explicit in taskdef.Task), callers that build definitions use it.
const DefaultRetries = 5

// initialMmap is the queue file's initial memory mapping (address space,
// not memory).
const initialMmap = 1 << 30

// Options configure Open. The zero value is usable.
type Options struct {
	// Clock defaults to SystemClock.
	Clock Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
	// LeaseDuration is how long a claim or reclaim holds a run:
	// takenUntil = now + LeaseDuration. Default DefaultLeaseDuration.
	LeaseDuration time.Duration
	// DefaultRetries is kept for callers that build definitions; see the
	// DefaultRetries constant. The queue does not use it.
	DefaultRetries int
	// LockTimeout bounds how long Open waits for another process to release
	// the file; default 1 s.
	LockTimeout time.Duration
	// Scheduling is the claim order and the per-owner caps; the zero
	// value shares workers fairly with no caps.
	Scheduling Scheduling
}

// Queue is the durable task queue: every state lives in one bbolt file and
// every state change is one transaction on it.
type Queue struct {
	db    *bolt.DB
	path  string
	clock Clock
	log   *slog.Logger
	lease time.Duration
	sched Scheduling
	// claimObs is told each claim's waits (the server's histogram).
	claimObs atomic.Pointer[ClaimObserver]
	writes   chan *writeReq
	stop     chan struct{}
	done     chan struct{}

	closeOnce sync.Once
	// closeMu orders Close after every write already queued.
	closeMu sync.RWMutex
	closed  bool

	// commits and committed count transactions and the writes they carried,
	// so benchmarks can report the group-commit batch size.
	commits, committed atomic.Int64

	// wakeMu guards wake, a channel closed (and replaced) whenever a task
	// becomes pending, so long-polling claimers wake without polling.
	wakeMu sync.Mutex
	wake   chan struct{}
	// outboxWake (under wakeMu) is closed when an outbox entry is
	// written; nil until a sender asks for it.
	outboxWake chan struct{}
}

// Open creates the queue database at path or opens an existing one. A file
// that is not an af queue database (no meta bucket, or not bbolt at all) or
// that has a newer schema version is refused with a clear message and left
// untouched: it is checked through a read-only open before any write.
func Open(path string, opts Options) (*Queue, error) {
	if opts.Clock == nil {
		opts.Clock = SystemClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = DefaultLeaseDuration
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = time.Second
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := checkExisting(path, opts.LockTimeout); err != nil {
			return nil, err
		}
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open queue database %s: %w", path, err)
	}
	db, err := openBolt(path, &bolt.Options{
		Timeout:        opts.LockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
		// Address space only: growing past the mapping remaps the file
		// and re-copies every live node of the transaction, which
		// dominated creating a large graph.
		InitialMmapSize: initialMmap,
	})
	if err != nil {
		return nil, err
	}
	if err := db.Update(initSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue database %s: %w", path, err)
	}
	if err := db.Update(initExpiry); err != nil {
		db.Close()
		return nil, fmt.Errorf("open queue database %s: %w", path, err)
	}
	q := &Queue{
		db:     db,
		path:   path,
		clock:  opts.Clock,
		log:    opts.Logger,
		lease:  opts.LeaseDuration,
		sched:  opts.Scheduling,
		writes: make(chan *writeReq, 1024),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		wake:   make(chan struct{}),
	}
	go q.writer()
	return q, nil
}

// openBolt opens the file and turns bbolt's errors (and its panics on some
// damaged files) into messages that say what to do.
func openBolt(path string, o *bolt.Options) (db *bolt.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("open queue database %s: file is damaged or not a bbolt database (%v)", path, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, o)
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("open queue database %s: it is in use by another process (is another af serve running on this data dir?)", path)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return nil, fmt.Errorf("open queue database %s: not an af queue database or damaged: %w", path, err)
	default:
		return nil, fmt.Errorf("open queue database %s: %w", path, err)
	}
}

// checkExisting opens an existing file read-only and refuses it unless it
// carries our meta bucket with a schema version this code understands.
func checkExisting(path string, timeout time.Duration) error {
	db, err := openBolt(path, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bMeta)
		if m == nil {
			empty := true
			_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
			if empty {
				return nil // a bbolt file nobody has written yet: ours to initialise
			}
			return fmt.Errorf("open queue database %s: not an af queue database (no %q bucket); point --data at a directory of its own", path, bMeta)
		}
		v, err := schemaVersion(m)
		if err != nil {
			return fmt.Errorf("open queue database %s: %w", path, err)
		}
		if v > SchemaVersion {
			return fmt.Errorf("open queue database %s: schema version %d is newer than this af supports (%d); run a newer af", path, v, SchemaVersion)
		}
		return nil
	})
}

// Close stops accepting writes, finishes the ones in flight and closes the
// file.
func (q *Queue) Close() error {
	var err error
	q.closeOnce.Do(func() {
		q.closeMu.Lock()
		q.closed = true
		q.closeMu.Unlock()
		close(q.stop)
		<-q.done
		err = q.db.Close()
	})
	return err
}

// Path is the database file.
func (q *Queue) Path() string { return q.path }

// LeaseDuration is how long a claim or reclaim holds a run.
func (q *Queue) LeaseDuration() time.Duration { return q.lease }

// notify wakes every ClaimWait; called after a commit that made a task
// pending.
func (q *Queue) notify() {
	q.wakeMu.Lock()
	close(q.wake)
	q.wake = make(chan struct{})
	q.wakeMu.Unlock()
}

func (q *Queue) waitCh() <-chan struct{} {
	q.wakeMu.Lock()
	defer q.wakeMu.Unlock()
	return q.wake
}

// Bolt is the queue's bbolt database, for the packages that keep buckets
// of their own in the same file (internal/users: identities and
// sessions). They must not touch the queue's buckets.
func (q *Queue) Bolt() *bolt.DB { return q.db }
