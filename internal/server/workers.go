package server

// This file: what af serve has seen of the workers asking for work, so a
// graph's followers (af submit --wait, the monitor page) can say that no
// live worker is claiming.

import (
	"sync"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// workerLiveWindow is how recently a worker must have asked for work to
// count as live: a worker long-polls claimWork back to back (each poll at
// most maxClaimWait), so two polls' time, plus slack.
const workerLiveWindow = 2*maxClaimWait + 10*time.Second

// pollGrain is the resolution of WorkerActivity.LastPoll: coarse, so a
// quiet graph's status (and its ETag) does not change with every poll.
const pollGrain = 10 * time.Second

// workerActivity tracks claimWork calls in memory.
type workerActivity struct {
	mu        sync.Mutex
	since     time.Time
	polls     map[string]time.Time // worker group/id → last claimWork
	lastPoll  time.Time
	lastClaim time.Time
}

func newWorkerActivity(now time.Time) *workerActivity {
	return &workerActivity{since: now, polls: map[string]time.Time{}}
}

// polled records a claimWork by worker that was handed claimed tasks.
func (a *workerActivity) polled(worker string, now time.Time, claimed int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.polls[worker] = now
	a.lastPoll = now
	if claimed > 0 {
		a.lastClaim = now
	}
	if len(a.polls) > 4096 {
		// Forget the workers gone for good, so ids that change on every
		// start do not grow the map without bound.
		for w, t := range a.polls {
			if now.Sub(t) > workerLiveWindow {
				delete(a.polls, w)
			}
		}
	}
}

// wire is the activity as the status API shows it at now.
func (a *workerActivity) wire(now time.Time) *taskdef.WorkerActivity {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := &taskdef.WorkerActivity{Since: a.since.UTC(), LiveWindowSeconds: int(workerLiveWindow / time.Second)}
	for _, t := range a.polls {
		if now.Sub(t) <= workerLiveWindow {
			out.LiveWorkers++
		}
	}
	if !a.lastPoll.IsZero() {
		t := a.lastPoll.Truncate(pollGrain).UTC()
		out.LastPoll = &t
	}
	if !a.lastClaim.IsZero() {
		t := a.lastClaim.UTC()
		out.LastClaim = &t
	}
	return out
}
