package taskdef

import (
	"encoding/json"
	"time"
)

// ScheduleSpec is a recurring analysis as `af schedule create` sends it
// (POST /api/v1/schedules): a filter template run through an image on a
// cron expression. Owner defaults to the caller (an admin may name
// another).
type ScheduleSpec struct {
	Name  string `json:"name"`
	Owner string `json:"owner,omitempty"`
	// Cron is a standard 5-field expression (or @daily and the like),
	// evaluated in Timezone (IANA name; empty is UTC).
	Cron     string `json:"cron"`
	Timezone string `json:"timezone,omitempty"`
	// Template is the filter template: a filter whose strings may hold
	// __TARGET_DATE__ and the other placeholders of internal/schedule.
	Template json.RawMessage   `json:"template"`
	Image    string            `json:"image"`
	Env      map[string]string `json:"env,omitempty"`
	// Catchup makes every run missed while af serve was down or the
	// schedule paused; without it only the newest is made.
	Catchup bool `json:"catchup,omitempty"`
	// MaxActive bounds the schedule's runs not yet ended (0: no bound).
	MaxActive int `json:"maxActive,omitempty"`
	// ExpectWithin (a Go duration, e.g. "6h") emails the owner once per
	// run that has not completed that long after it fell due.
	ExpectWithin string `json:"expectWithin,omitempty"`
}

// ScheduleUpdate is POST /api/v1/schedules/{name}: the fields given
// replace the schedule's; absent ones stay.
type ScheduleUpdate struct {
	Cron         *string           `json:"cron,omitempty"`
	Timezone     *string           `json:"timezone,omitempty"`
	Template     json.RawMessage   `json:"template,omitempty"`
	Image        *string           `json:"image,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Catchup      *bool             `json:"catchup,omitempty"`
	MaxActive    *int              `json:"maxActive,omitempty"`
	ExpectWithin *string           `json:"expectWithin,omitempty"`
}

// ScheduleStatus is a schedule as the server answers: its spec, its
// state (active or paused) and when its next run falls due.
type ScheduleStatus struct {
	ScheduleSpec
	State   string    `json:"state"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// LastTick is the last tick the scheduler dealt with.
	LastTick time.Time `json:"lastTick"`
	// NextDue is the next tick (zero when paused) and NextTarget the
	// target that run processes.
	NextDue    time.Time `json:"nextDue,omitzero"`
	NextTarget time.Time `json:"nextTarget,omitzero"`
}

// ScheduleList is GET /api/v1/schedules.
type ScheduleList struct {
	Schedules []ScheduleStatus `json:"schedules"`
}

// ScheduleRun is one run of a schedule: its target, the graph that runs
// it and how that went.
type ScheduleRun struct {
	// Kind is scheduled or backfill.
	Kind string `json:"kind"`
	// Target is the start of the run's cron interval (the date it
	// processes); Label is its date (20131011), or date and hour for
	// schedules that tick more than daily (2013101116), in the schedule's
	// zone.
	Target time.Time `json:"target"`
	Label  string    `json:"label"`
	Due    time.Time `json:"due"`
	// RunState is the scheduler's: queued, launching, launched or
	// refused (Message says why).
	RunState string `json:"runState"`
	Message  string `json:"message,omitempty"`
	GraphID  string `json:"graphId,omitempty"`
	// GraphState, Created, Resolved, Files and Bytes are the graph's once
	// launched.
	GraphState GraphState `json:"graphState,omitempty"`
	Created    time.Time  `json:"created,omitzero"`
	Resolved   *time.Time `json:"resolved,omitempty"`
	// Files and Bytes are the mappers' input.
	Files int   `json:"files,omitempty"`
	Bytes int64 `json:"bytes,omitempty"`
	// ResultTaskID is the reducer whose public/result.txt is the result.
	ResultTaskID string `json:"resultTaskId,omitempty"`
	// Alerted is when the owner was told the run is late.
	Alerted time.Time `json:"alerted,omitzero"`
}

// ScheduleRuns is GET /api/v1/schedules/{name}/runs: the schedule and its
// runs, oldest target first.
type ScheduleRuns struct {
	Schedule ScheduleStatus `json:"schedule"`
	Runs     []ScheduleRun  `json:"runs"`
}

// BackfillRequest is POST /api/v1/schedules/{name}/backfill: one run per
// target date from From to To (both inclusive; 20131011 or 2013-10-11),
// at most Parallel of them running at once (0: no bound).
type BackfillRequest struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Parallel int    `json:"parallel,omitempty"`
}

// BackfillResponse lists the runs a backfill recorded (targets recorded
// already are not repeated).
type BackfillResponse struct {
	Runs []ScheduleRun `json:"runs"`
}

// GraphSchedule, on a graph's status, names the schedule whose run it is.
type GraphSchedule struct {
	Name   string    `json:"name"`
	Kind   string    `json:"kind"`
	Target time.Time `json:"target"`
	Label  string    `json:"label"`
}
