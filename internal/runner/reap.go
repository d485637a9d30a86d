package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
)

// Defaults of the expired-container reaper.
const (
	// DefaultReapEvery is how often a worker looks for expired containers.
	DefaultReapEvery = 30 * time.Second
	// DefaultReapGrace is how long past its deadline label a container may
	// live before any worker removes it. The container's own worker kills
	// it at its maxRunTime, counted from the start (the label counts from
	// just before the create, up to two Docker call timeouts earlier),
	// then drains its output (up to a call timeout), inspects and removes
	// it; the grace leaves it all that, so the reaper only ever removes
	// containers whose worker is gone.
	DefaultReapGrace = 2 * time.Minute
)

// ReapOptions tune ReapLoop.
type ReapOptions struct {
	// Every is the period (default DefaultReapEvery); it runs on the
	// Runner's Clock.
	Every time.Duration
	// Grace is how long past its deadline a container is left to its own
	// worker (default DefaultReapGrace).
	Grace time.Duration
}

// Reaped is one container ReapExpired removed.
type Reaped struct {
	ContainerID string
	TaskID      string
	RunID       string
	WorkerID    string
	Deadline    time.Time
	State       string
}

// ReapExpired stops and removes every af container on the engine whose
// LabelDeadline is more than grace in the past, whichever worker id it
// carries: a container outlives its deadline only when the worker that ran
// it died (killed, crashed, or its host rebooted without it). Deadlines are
// compared with the host's wall clock, as they were written with it.
// Containers without the label are left alone (see LabelDeadline). It
// returns what it removed, also when some removals failed.
func (r *Runner) ReapExpired(ctx context.Context, grace time.Duration) ([]Reaped, error) {
	if grace < 0 {
		grace = 0
	}
	cctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	list, err := r.docker.ContainerList(cctx, container.ListOptions{
		All: true,
		Filters: filters.NewArgs(
			filters.Arg("label", LabelManaged+"=true"),
			filters.Arg("label", LabelDeadline),
		),
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("reap expired containers: listing containers: %w", err)
	}
	now := time.Now()
	var reaped []Reaped
	var errs []error
	for _, c := range list {
		label, ok := c.Labels[LabelDeadline]
		if c.Labels[LabelManaged] != "true" || !ok {
			// The daemon filtered already; this guards against one that
			// ignores a filter.
			continue
		}
		deadline, err := ParseDeadline(label)
		if err != nil {
			// Only a worker writes the label; a bad one is not ours to
			// judge, so it is left for ReapOrphans and said once a period.
			r.log.Warn("an af container has an unreadable deadline label; leaving it", "container", shortID(c.ID), "err", err)
			continue
		}
		if !now.After(deadline.Add(grace)) {
			continue
		}
		// Force removal kills the container first.
		cctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
		err = r.docker.ContainerRemove(cctx, c.ID, container.RemoveOptions{Force: true, RemoveVolumes: true})
		cancel()
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("removing %s: %w", shortID(c.ID), err))
			continue
		}
		if cerrdefs.IsNotFound(err) {
			// Its own worker, or another reaper, removed it meanwhile.
			continue
		}
		rp := Reaped{
			ContainerID: c.ID, TaskID: c.Labels[LabelTaskID], RunID: c.Labels[LabelRunID],
			WorkerID: c.Labels[LabelWorkerID], Deadline: deadline, State: c.State,
		}
		reaped = append(reaped, rp)
		r.log.Warn("removed a job container past its deadline: its worker is gone", "container", shortID(c.ID),
			"task", rp.TaskID, "run", rp.RunID, "containerWorker", rp.WorkerID, "deadline", label,
			"overdue", now.Sub(deadline).Round(time.Second), "state", c.State)
	}
	if len(errs) > 0 {
		return reaped, fmt.Errorf("reap expired containers: %w", errors.Join(errs...))
	}
	return reaped, nil
}

// ReapLoop calls ReapExpired at once and then every o.Every until ctx
// ends. Failures are logged and retried next period: the engine being
// briefly away must not stop the reaping for good.
func (r *Runner) ReapLoop(ctx context.Context, o ReapOptions) {
	if o.Every <= 0 {
		o.Every = DefaultReapEvery
	}
	if o.Grace <= 0 {
		o.Grace = DefaultReapGrace
	}
	for {
		if _, err := r.ReapExpired(ctx, o.Grace); err != nil && ctx.Err() == nil {
			r.log.Warn("reaping expired job containers", "err", err, "retry_in", o.Every)
		}
		select {
		case <-ctx.Done():
			return
		case <-r.opts.Clock.After(o.Every):
		}
	}
}
