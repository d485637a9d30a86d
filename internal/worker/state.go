package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// The worker records every run it holds (task, run and the run's token)
// in its state dir, so that a process of the same worker id started after
// a crash or a kill hands those runs back at once (exception/
// worker-shutdown: the queue runs them again) instead of leaving them to
// wait out their lease. The run token is a secret: the dir is private
// (0700, files 0600) and lies outside the scratch root, whose task dirs
// are bind-mounted into the jobs' containers.

// RestartMessage is the message of a run a restarted worker hands back.
const RestartMessage = "the worker restarted; the queue runs the task again"

// runRecord is one held run.
type runRecord struct {
	TaskID   string    `json:"taskId"`
	RunID    int       `json:"runId"`
	RunToken string    `json:"runToken"`
	Claimed  time.Time `json:"claimed"`
}

// runState is the state dir.
type runState struct{ dir string }

// DefaultStateDir is the state dir of a scratch root: beside it, named
// after it, so one worker id's scratch root and state dir go together.
func DefaultStateDir(scratchRoot string) string {
	clean := filepath.Clean(scratchRoot)
	return filepath.Join(filepath.Dir(clean), filepath.Base(clean)+".state")
}

// openRunState makes dir private and checks it is a real directory of
// this user that is not inside scratchRoot.
func openRunState(dir, scratchRoot string) (*runState, error) {
	dir = filepath.Clean(dir)
	if abs, err := filepath.Abs(dir); err == nil {
		if root, err := filepath.Abs(scratchRoot); err == nil {
			if rel, err := filepath.Rel(root, abs); err == nil && (rel == "." || !strings.HasPrefix(rel, "..")) {
				return nil, fmt.Errorf("state dir %s is inside the scratch root %s, where jobs' scratch dirs live: choose one outside it", dir, scratchRoot)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("state dir %s is not a directory (a symlink?): remove it or choose another with --state-dir", dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("state dir %s belongs to uid %d, not this worker (uid %d): remove it or choose another with --state-dir", dir, st.Uid, os.Geteuid())
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	return &runState{dir: dir}, nil
}

func recordName(taskID string, runID int) string {
	return taskID + "-" + strconv.Itoa(runID) + ".json"
}

// record writes the run's record atomically (a temporary file renamed
// into place), so a kill mid-write leaves the old state or the new.
func (s *runState) record(c taskdef.Claim) error {
	if err := taskdef.ValidID(c.TaskID); err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	b, err := json.Marshal(runRecord{TaskID: c.TaskID, RunID: c.RunID, RunToken: c.RunToken, Claimed: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	f, err := os.CreateTemp(s.dir, ".run-*.tmp") // 0600
	if err != nil {
		return fmt.Errorf("record run: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(s.dir, recordName(c.TaskID, c.RunID)))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("record run: %w", err)
	}
	return nil
}

// forget removes a run's record.
func (s *runState) forget(taskID string, runID int) error {
	err := os.Remove(filepath.Join(s.dir, recordName(taskID, runID)))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forget run: %w", err)
	}
	return nil
}

// list reads every record. Leftover temporary files (a kill mid-write)
// and records that do not parse are removed: the run they named is left
// to its lease.
func (s *runState) list(log *slog.Logger) ([]runRecord, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("read state dir: %w", err)
	}
	var out []runRecord
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(s.dir, name)
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".json") {
			log.Warn("removing a stray entry of the state dir", "path", path)
			_ = os.RemoveAll(path)
			continue
		}
		var r runRecord
		b, err := os.ReadFile(path)
		if err == nil {
			err = json.Unmarshal(b, &r)
		}
		if err == nil {
			err = taskdef.ValidID(r.TaskID)
		}
		if err == nil && name != recordName(r.TaskID, r.RunID) {
			err = fmt.Errorf("the file's name does not match task %s run %d", r.TaskID, r.RunID)
		}
		if err != nil {
			log.Warn("removing an unreadable run record; its run waits out its lease", "path", path, "err", err)
			_ = os.Remove(path)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// handBack reports every run a previous process of this worker id held as
// exception/worker-shutdown, so the queue runs them again now rather than
// when their leases run out, and forgets them. A run the queue no longer
// holds for us (expired, canceled, resolved) is forgotten too; one the
// queue could not be asked about stays for the next start, and its lease
// covers it meanwhile.
func (w *Worker) handBack(ctx context.Context) {
	recs, err := w.state.list(w.log)
	if err != nil {
		w.log.Warn("runs of the previous worker process", "err", err)
		return
	}
	for _, r := range recs {
		if ctx.Err() != nil {
			return
		}
		log := w.log.With("task", r.TaskID, "run", r.RunID)
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		resp, err := w.cfg.Queue.Run(r.TaskID, r.RunID, r.RunToken).ReportException(rctx, taskdef.ReportRequest{
			Reason: taskdef.ReasonWorkerShutdown, Message: RestartMessage,
		})
		switch {
		case err == nil:
			log.Info("handed back a run the previous worker process held", "state", resp.Status.State, "graphResolved", resp.GraphResolved)
		case errors.Is(err, queueclient.ErrConflict), errors.Is(err, queueclient.ErrNotFound), errors.Is(err, queueclient.ErrForbidden):
			log.Info("a run the previous worker process held is no longer ours", "err", err)
		default:
			cancel()
			log.Warn("hand back a run the previous worker process held; its lease covers it", "err", err)
			continue
		}
		cancel()
		if err := w.state.forget(r.TaskID, r.RunID); err != nil {
			log.Warn("forget a handed-back run", "err", err)
		}
	}
}
