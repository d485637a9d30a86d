package schedule

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// State is a schedule's lifecycle.
type State string

const (
	// Active: the scheduler makes its runs as they fall due. Create and
	// Resume move a schedule here.
	Active State = "active"
	// Paused: no run is made; Pause moves a schedule here from Active.
	// Missed ticks are made up on Resume only with catch-up.
	Paused State = "paused"
)

// RunState is a run record's lifecycle, as far as the scheduler is
// concerned; once launched, the graph's own state is the queue's.
type RunState string

const (
	// RunLaunching: the scheduler has taken the run (with the tick, in one
	// transaction) and is creating its graph; a scheduler that restarts
	// finds it here and creates the graph again, under the same id, which
	// the queue refuses as a duplicate if the first attempt got through.
	RunLaunching RunState = "launching"
	// RunLaunched: the graph exists on the queue. Moved here from
	// RunLaunching when the queue accepted it.
	RunLaunched RunState = "launched"
	// RunQueued: a backfill run waiting for room under its --parallel
	// bound; the scheduler moves it to RunLaunching when fewer of the
	// backfill's runs are active. Backfill records runs here.
	RunQueued RunState = "queued"
	// RunRefused: the run could not be made for a reason of its own (its
	// filter rendered invalid, it selects no files); Message says why.
	// Moved here from RunLaunching.
	RunRefused RunState = "refused"
)

// Kind says who asked for a run.
type Kind string

const (
	// KindScheduled runs are made by the cron ticks.
	KindScheduled Kind = "scheduled"
	// KindBackfill runs are asked for with af backfill; they claim behind
	// the schedule's own runs.
	KindBackfill Kind = "backfill"
)

// Schedule is one recurring analysis as stored.
type Schedule struct {
	Name  string `json:"name"`
	Owner string `json:"owner"`
	State State  `json:"state"`
	// Cron is a standard 5-field expression evaluated in Timezone.
	Cron     string `json:"cron"`
	Timezone string `json:"timezone,omitempty"`
	// Template is the filter template (see Render).
	Template     json.RawMessage   `json:"template"`
	Image        string            `json:"image"`
	Env          map[string]string `json:"env,omitempty"`
	Catchup      bool              `json:"catchup,omitempty"`
	MaxActive    int               `json:"max_active,omitempty"`
	ExpectWithin time.Duration     `json:"expect_within,omitempty"`
	Created      time.Time         `json:"created"`
	Updated      time.Time         `json:"updated"`
	// LastTick is the last tick the scheduler dealt with: the next run is
	// the first tick after it. Create, and Resume without catch-up, set it
	// to the time of the change.
	LastTick time.Time `json:"last_tick"`
	// Generation tells a schedule apart from an earlier one of the same
	// name, so their runs' graph ids differ.
	Generation int64 `json:"generation"`
}

// RunRecord is one run of a schedule.
type RunRecord struct {
	Schedule string    `json:"schedule"`
	Kind     Kind      `json:"kind"`
	Target   time.Time `json:"target"`
	Due      time.Time `json:"due"`
	GraphID  string    `json:"graph_id"`
	State    RunState  `json:"state"`
	Created  time.Time `json:"created"`
	Message  string    `json:"message,omitempty"`
	// Alerted is when the owner was told the run is late (zero: not yet).
	Alerted time.Time `json:"alerted,omitzero"`
	// Parallel bounds how many of a backfill's runs are active at once.
	Parallel int `json:"parallel,omitempty"`
	// Done is set once the scheduler saw the graph end; it stops asking.
	Done bool `json:"done,omitempty"`
	// Completed: it ended completed. Published is when its result was
	// copied to its stable name (zero: not yet).
	Completed bool      `json:"completed,omitempty"`
	Published time.Time `json:"published,omitzero"`
}

// Errors of the store.
var (
	ErrNotFound = errors.New("no such schedule")
	ErrExists   = errors.New("a schedule of that name exists")
	ErrState    = errors.New("not allowed in the schedule's state")
	ErrInvalid  = errors.New("invalid schedule")
)

var (
	bSchedules = []byte("schedules")       // name -> Schedule JSON
	bRuns      = []byte("schedule_runs")   // name -> sub-bucket: target (RFC3339Nano, UTC) + kind -> RunRecord JSON
	bByGraph   = []byte("schedule_graphs") // graph id -> GraphRef JSON
)

// GraphRef names the schedule run a graph belongs to.
type GraphRef struct {
	Schedule string    `json:"schedule"`
	Target   time.Time `json:"target"`
	Kind     Kind      `json:"kind"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// Store keeps schedules and their runs in buckets of their own in a bbolt
// file (af serve's queue.db, as internal/users does).
type Store struct {
	db  *bolt.DB
	now func() time.Time
}

// NewStore opens the store's buckets in db.
func NewStore(db *bolt.DB, now func() time.Time) (*Store, error) {
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bSchedules, bRuns, bByGraph} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("schedule store: %w", err)
	}
	return &Store{db: db, now: now}, nil
}

// Check validates a schedule's fields without storing it.
func Check(s *Schedule) error {
	if !nameRE.MatchString(s.Name) {
		return fmt.Errorf("%w: name %q: use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", ErrInvalid, s.Name)
	}
	if _, err := Parse(s.Cron, s.Timezone); err != nil {
		return fmt.Errorf("%w: --cron: %w", ErrInvalid, err)
	}
	if s.Image == "" {
		return fmt.Errorf("%w: no image: say which job image each run runs", ErrInvalid)
	}
	if s.MaxActive < 0 {
		return fmt.Errorf("%w: --max-active %d: give 0 (no bound) or more", ErrInvalid, s.MaxActive)
	}
	if s.ExpectWithin < 0 {
		return fmt.Errorf("%w: --expect-within %s: give a positive duration such as 6h", ErrInvalid, s.ExpectWithin)
	}
	return nil
}

// Create stores a new active schedule; its first run is the first tick
// after now.
func (st *Store) Create(s Schedule) (Schedule, error) {
	if err := Check(&s); err != nil {
		return Schedule{}, err
	}
	now := st.now()
	s.State, s.Created, s.Updated, s.LastTick = Active, now, now, now
	s.Generation = now.UnixNano()
	err := st.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSchedules)
		if b.Get([]byte(s.Name)) != nil {
			return fmt.Errorf("%w: %s (update it, or delete it first)", ErrExists, s.Name)
		}
		if err := put(b, s.Name, s); err != nil {
			return err
		}
		// Runs of an earlier schedule of the same name go with it.
		if err := deleteRuns(tx, s.Name); err != nil {
			return err
		}
		_, err := tx.Bucket(bRuns).CreateBucket([]byte(s.Name))
		return err
	})
	return s, err
}

// Get returns the named schedule.
func (st *Store) Get(name string) (Schedule, error) {
	var s Schedule
	err := st.db.View(func(tx *bolt.Tx) error {
		var err error
		s, err = get(tx, name)
		return err
	})
	return s, err
}

// List returns every schedule, by name.
func (st *Store) List() ([]Schedule, error) {
	var out []Schedule
	err := st.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bSchedules).ForEach(func(_, v []byte) error {
			var s Schedule
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			out = append(out, s)
			return nil
		})
	})
	return out, err
}

// Update changes a schedule through fn, in one transaction; fn may not
// change its name, state, owner or bookkeeping.
func (st *Store) Update(name string, fn func(*Schedule) error) (Schedule, error) {
	var s Schedule
	err := st.db.Update(func(tx *bolt.Tx) error {
		old, err := get(tx, name)
		if err != nil {
			return err
		}
		s = old
		if err := fn(&s); err != nil {
			return err
		}
		s.Name, s.State, s.Owner, s.Created, s.LastTick, s.Generation = old.Name, old.State, old.Owner, old.Created, old.LastTick, old.Generation
		if err := Check(&s); err != nil {
			return err
		}
		s.Updated = st.now()
		return put(tx.Bucket(bSchedules), name, s)
	})
	return s, err
}

// transitions are the allowed from-states of each move.
var transitions = map[State][]State{
	Paused: {Active},
	Active: {Paused},
}

// SetState moves a schedule to state, from one of the states the move
// allows, in one transaction. LastTick stays: on resume the scheduler
// makes every run missed while paused with catch-up, and only the newest
// without it (see Cron.Due), as Airflow does when a DAG is unpaused.
func (st *Store) SetState(name string, to State) (Schedule, error) {
	var s Schedule
	err := st.db.Update(func(tx *bolt.Tx) error {
		var err error
		if s, err = get(tx, name); err != nil {
			return err
		}
		ok := false
		for _, from := range transitions[to] {
			ok = ok || s.State == from
		}
		if !ok {
			return fmt.Errorf("%w: %s is %s already", ErrState, name, s.State)
		}
		s.State, s.Updated = to, st.now()
		return put(tx.Bucket(bSchedules), name, s)
	})
	return s, err
}

// Delete removes a schedule and its run records (not its graphs).
func (st *Store) Delete(name string) error {
	return st.db.Update(func(tx *bolt.Tx) error {
		if _, err := get(tx, name); err != nil {
			return err
		}
		if err := tx.Bucket(bSchedules).Delete([]byte(name)); err != nil {
			return err
		}
		return deleteRuns(tx, name)
	})
}

// deleteRuns removes a schedule's run records and their graph refs.
func deleteRuns(tx *bolt.Tx, name string) error {
	rb := tx.Bucket(bRuns).Bucket([]byte(name))
	if rb == nil {
		return nil
	}
	byGraph := tx.Bucket(bByGraph)
	if err := rb.ForEach(func(_, v []byte) error {
		var r RunRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		return byGraph.Delete([]byte(r.GraphID))
	}); err != nil {
		return err
	}
	return tx.Bucket(bRuns).DeleteBucket([]byte(name))
}

// ByGraph finds the schedule run a graph belongs to.
func (st *Store) ByGraph(graphID string) (GraphRef, bool) {
	var ref GraphRef
	ok := false
	_ = st.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bByGraph).Get([]byte(graphID))
		ok = v != nil && json.Unmarshal(v, &ref) == nil
		return nil
	})
	return ref, ok
}

// Runs returns the schedule's run records, oldest target first.
func (st *Store) Runs(name string) ([]RunRecord, error) {
	var out []RunRecord
	err := st.db.View(func(tx *bolt.Tx) error {
		if _, err := get(tx, name); err != nil {
			return err
		}
		return tx.Bucket(bRuns).Bucket([]byte(name)).ForEach(func(_, v []byte) error {
			var r RunRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			out = append(out, r)
			return nil
		})
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Target.Before(out[j].Target) })
	return out, err
}

// take records runs as launching and moves the schedule's LastTick to
// lastTick, in one transaction, so a tick is dealt with exactly once: the
// runs exist (and will be launched, again after a restart) or the tick is
// still ahead. A run whose target and kind are recorded already is left
// as it is (a backfill asked twice).
func (st *Store) take(name string, generation int64, runs []RunRecord, lastTick time.Time) ([]RunRecord, error) {
	var taken []RunRecord
	err := st.db.Update(func(tx *bolt.Tx) error {
		s, err := get(tx, name)
		if err != nil {
			return err
		}
		if s.Generation != generation {
			return fmt.Errorf("%w: %s was replaced", ErrNotFound, name)
		}
		b := tx.Bucket(bRuns).Bucket([]byte(name))
		for _, r := range runs {
			k := runKey(r.Target, r.Kind)
			if b.Get(k) != nil {
				continue
			}
			if err := putKey(b, k, r); err != nil {
				return err
			}
			if err := put(tx.Bucket(bByGraph), r.GraphID, GraphRef{Schedule: name, Target: r.Target, Kind: r.Kind}); err != nil {
				return err
			}
			taken = append(taken, r)
		}
		if !lastTick.IsZero() && lastTick.After(s.LastTick) {
			s.LastTick = lastTick
			return put(tx.Bucket(bSchedules), name, s)
		}
		return nil
	})
	return taken, err
}

// setRun rewrites one run record through fn.
func (st *Store) setRun(name string, target time.Time, kind Kind, fn func(*RunRecord)) error {
	return st.db.Update(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bRuns).Bucket([]byte(name))
		if rb == nil {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		k := runKey(target, kind)
		v := rb.Get(k)
		if v == nil {
			return fmt.Errorf("%w: no run of %s for %s", ErrNotFound, name, target)
		}
		var r RunRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		fn(&r)
		return putKey(rb, k, r)
	})
}

// GraphID is the id of the graph of a schedule's run: derived from the
// schedule's name, generation, the target and kind, so that launching a
// run twice (after a restart) asks the queue for the same graph, which it
// refuses as a duplicate.
func GraphID(name string, generation int64, target time.Time, kind Kind) string {
	h := sha256.Sum256(fmt.Appendf(nil, "af-schedule\x00%s\x00%d\x00%s\x00%s", name, generation, target.UTC().Format(time.RFC3339Nano), kind))
	s := base64.RawURLEncoding.EncodeToString(h[:16])
	if s[0] == '-' {
		s = "A" + s[1:]
	}
	return s
}

func runKey(target time.Time, kind Kind) []byte {
	return []byte(target.UTC().Format("20060102T150405.000000000Z") + "/" + string(kind))
}

func get(tx *bolt.Tx, name string) (Schedule, error) {
	v := tx.Bucket(bSchedules).Get([]byte(name))
	if v == nil {
		return Schedule{}, fmt.Errorf("%w: %s (af schedule list shows the schedules)", ErrNotFound, name)
	}
	var s Schedule
	if err := json.NewDecoder(bytes.NewReader(v)).Decode(&s); err != nil {
		return Schedule{}, fmt.Errorf("schedule %s: %w", name, err)
	}
	return s, nil
}

func put(b *bolt.Bucket, name string, v any) error { return putKey(b, []byte(name), v) }

func putKey(b *bolt.Bucket, k []byte, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(k, data)
}
