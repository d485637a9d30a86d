// Package taskdef holds the task and graph shapes that travel over the
// queue's HTTP API: what `af submit` posts, what a worker claims and
// reports, and what `af status` and the monitor page read. It is the one
// contract shared by the queue, its client, the worker and submit, so it has
// no dependencies on any of them.
package taskdef

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Kind says which half of the MapReduce a task runs.
type Kind string

const (
	// KindMapper tasks read input files from S3 and emit sorted key/value
	// pairs as public/result.txt.
	KindMapper Kind = "mapper"
	// KindReducer tasks merge their dependencies' results and produce the
	// job's result.
	KindReducer Kind = "reducer"
)

// Priority orders claims: every pending task of a higher priority is
// handed out before any of a lower one. Empty means PriorityNormal (the
// queue stores normal as empty so that equal definitions stay byte-equal).
type Priority string

const (
	// PriorityHigh goes before normal and low; the server's config may
	// keep it for some owners (priority.high_owners).
	PriorityHigh Priority = "high"
	// PriorityNormal is the default.
	PriorityNormal Priority = "normal"
	// PriorityLow runs when nothing of normal or high priority waits.
	PriorityLow Priority = "low"
)

// Priorities lists the priorities from the first served to the last.
var Priorities = []Priority{PriorityHigh, PriorityNormal, PriorityLow}

// ParsePriority checks a priority named by a user; "" is normal.
func ParsePriority(s string) (Priority, error) {
	switch Priority(s) {
	case "", PriorityNormal:
		return PriorityNormal, nil
	case PriorityHigh, PriorityLow:
		return Priority(s), nil
	}
	return "", fmt.Errorf("priority %q must be high, normal or low", s)
}

// Requires is TaskCluster's dependency condition.
type Requires string

const (
	// RequiresAllCompleted (the default) schedules the task once every
	// dependency completed; a dependency that fails for good resolves the
	// task exception/dependency-failed.
	RequiresAllCompleted Requires = "all-completed"
	// RequiresAllResolved schedules the task once every dependency resolved,
	// whatever the outcome.
	RequiresAllResolved Requires = "all-resolved"
)

// Well-known environment variables of a task payload. They keep the names
// the original Analysis Framework used so existing jobs read them unchanged.
const (
	// EnvCredentials carries the sealed, base64-encoded S3 credentials
	// (internal/creds). Only the worker opens it; it never reaches the job
	// container.
	EnvCredentials = "CREDENTIALS"
	// EnvOwner is the email address notified when the graph ends.
	EnvOwner = "OWNER"
	// EnvInputTaskIDs is the space-separated list of mapper task ids whose
	// public/result.txt a reducer merges.
	EnvInputTaskIDs = "INPUT_TASK_IDS"
)

// ResultArtifact is the artifact name of every task's output: a mapper's
// sorted key/value lines, the reducer's job result.
const ResultArtifact = "public/result.txt"

// LiveLogArtifact is the artifact name of a task's log; it is refreshed
// while the task runs and kept after it ends.
const LiveLogArtifact = "public/logs/live.log"

// InputFile is one S3 object a mapper reads.
type InputFile struct {
	Key  string `json:"key"`
	Size int64  `json:"size"`
}

// Limits are the resources a task's container may use. Zero means the
// worker's default.
type Limits struct {
	MemoryBytes int64   `json:"memoryBytes,omitempty"`
	CPUs        float64 `json:"cpus,omitempty"`
	Pids        int64   `json:"pids,omitempty"`
}

// Payload is what the worker needs to run the task.
type Payload struct {
	Kind  Kind   `json:"kind"`
	Image string `json:"image"`
	// Env reaches the job container except for EnvCredentials, which the
	// worker consumes itself.
	Env map[string]string `json:"env,omitempty"`
	// Bucket holds the inputs of a mapper.
	Bucket string `json:"bucket,omitempty"`
	// Prefix is where the storage layout starts inside Bucket; with Schema
	// (the dimension names in order) it lets the worker tell the job each
	// file's dimensions.
	Prefix string   `json:"prefix,omitempty"`
	Schema []string `json:"schema,omitempty"`
	// Layout says where each of Schema's dimensions lives in a key
	// (layout.Schema.Layout's text: "kk:any" for two key=value
	// directories, say); empty for telemetry-server's .vN layout.
	Layout string `json:"layout,omitempty"`
	// Inputs are the mapper's files, largest first.
	Inputs []InputFile `json:"inputs,omitempty"`
	// InputETags, when set, are Inputs' versions in the same order,
	// unquoted S3 ETags separated by single spaces (an empty one for a
	// file with none; see SplitETags): the worker reads each file only at
	// that version (If-Match), so a file rewritten after submission fails
	// the task rather than feeding it other data. One string per task,
	// not a field of InputFile nor a list of strings, so that graphs
	// without it cost nothing and af serve holds one allocation per task
	// for it (TestGraphBodyMemory); a space is no character of an ETag.
	InputETags string `json:"inputETags,omitempty"`
	// MaxRunTime is the container's wall-clock limit in seconds.
	MaxRunTime int    `json:"maxRunTime"`
	Limits     Limits `json:"limits,omitempty"`
}

// JoinETags is InputETags' form of a list of ETags ("" when none is set).
func JoinETags(tags []string) string {
	for _, t := range tags {
		if t != "" {
			return strings.Join(tags, " ")
		}
	}
	return ""
}

// SplitETags is InputETags as a list (nil when empty).
func SplitETags(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// Metadata describes a task for people.
type Metadata struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Owner       string `json:"owner"`
	Source      string `json:"source,omitempty"`
}

// Task is a task's definition: immutable once created. Creating the same
// task id again with an equal definition is a no-op; with a different one it
// is a conflict.
type Task struct {
	GraphID      string    `json:"graphId"`
	Dependencies []string  `json:"dependencies,omitempty"`
	Requires     Requires  `json:"requires,omitempty"`
	Retries      int       `json:"retries"`
	Created      time.Time `json:"created"`
	Deadline     time.Time `json:"deadline"`
	Expires      time.Time `json:"expires"`
	Metadata     Metadata  `json:"metadata"`
	Payload      Payload   `json:"payload"`
	// Priority is the task's claim priority; empty takes its graph's
	// (normal for a task created alone). A task of a graph must not name
	// another priority than the graph's.
	Priority Priority `json:"priority,omitempty"`
}

// GraphTask pairs a task id with its definition inside a graph request.
type GraphTask struct {
	TaskID string `json:"taskId"`
	Task   Task   `json:"task"`
}

// Graph is the body of POST /api/v1/graphs: every task of a job, created in
// one transaction.
type Graph struct {
	GraphID string `json:"graphId"`
	Name    string `json:"name"`
	Owner   string `json:"owner"`
	// Priority is high, normal (the default, also when empty) or low.
	Priority Priority    `json:"priority,omitempty"`
	Tasks    []GraphTask `json:"tasks"`
}

// TaskState is a task's place in its lifecycle; the queue's transition
// function is the only thing that moves it.
type TaskState string

const (
	// StateUnscheduled: created, waiting for its dependencies.
	StateUnscheduled TaskState = "unscheduled"
	// StatePending: ready, waiting for a worker to claim it.
	StatePending TaskState = "pending"
	// StateRunning: claimed by a worker holding a lease.
	StateRunning TaskState = "running"
	// StateCompleted: the run succeeded.
	StateCompleted TaskState = "completed"
	// StateFailed: the job's own code failed (a failure, not an exception).
	StateFailed TaskState = "failed"
	// StateException: infrastructure or the queue ended the run (claim
	// expired, worker shutdown, malformed payload, deadline, canceled).
	StateException TaskState = "exception"
)

// Resolved reports whether s is final for the run.
func (s TaskState) Resolved() bool {
	return s == StateCompleted || s == StateFailed || s == StateException
}

// Reasons a run was created (TaskCluster's reasonCreated).
const (
	ReasonScheduled    = "scheduled"
	ReasonRetry        = "retry"
	ReasonTaskRetry    = "task-retry"
	ReasonRerun        = "rerun"
	ReasonException    = "exception"
	ReasonDependencies = "dependencies"
)

// Reasons a run was resolved (TaskCluster's reasonResolved).
const (
	ReasonCompleted        = "completed"
	ReasonFailed           = "failed"
	ReasonDeadlineExceeded = "deadline-exceeded"
	ReasonCanceled         = "canceled"
	ReasonSuperseded       = "superseded"
	ReasonClaimExpired     = "claim-expired"
	ReasonWorkerShutdown   = "worker-shutdown"
	ReasonMalformedPayload = "malformed-payload"
	ReasonResourceUnavail  = "resource-unavailable"
	ReasonInternalError    = "internal-error"
	ReasonIntermittentTask = "intermittent-task"
	ReasonDependencyFailed = "dependency-failed"
)

// Stats are what a run processed. Workers send them with reclaim (progress)
// and with the final report; the monitor page and `af submit --wait` show
// them.
type Stats struct {
	Files      int64 `json:"files"`
	Bytes      int64 `json:"bytes"`      // compressed input bytes read
	RawBytes   int64 `json:"rawBytes"`   // uncompressed input bytes
	RecordsIn  int64 `json:"recordsIn"`  // records fed to the job
	RecordsOut int64 `json:"recordsOut"` // key/value pairs the job wrote
	BadLines   int64 `json:"badLines"`
	BadFiles   int64 `json:"badFiles"`
}

// Run is one attempt at a task.
type Run struct {
	RunID          int        `json:"runId"`
	State          TaskState  `json:"state"`
	ReasonCreated  string     `json:"reasonCreated"`
	ReasonResolved string     `json:"reasonResolved,omitempty"`
	WorkerGroup    string     `json:"workerGroup,omitempty"`
	WorkerID       string     `json:"workerId,omitempty"`
	TakenUntil     *time.Time `json:"takenUntil,omitempty"`
	Scheduled      *time.Time `json:"scheduled,omitempty"`
	Started        *time.Time `json:"started,omitempty"`
	Resolved       *time.Time `json:"resolved,omitempty"`
	Stats          Stats      `json:"stats"`
	// Message says why a run failed or ended in exception, for people.
	Message string `json:"message,omitempty"`
	// The audit trail: which identity created the run (a rerun's caller;
	// "af serve" for a schedule or retry of its own), claimed it (the
	// worker pool's identity) and resolved it (the reporting worker, the
	// canceling user, or "af serve" for an expiry or deadline).
	CreatedBy  string `json:"createdBy,omitempty"`
	ClaimedBy  string `json:"claimedBy,omitempty"`
	ResolvedBy string `json:"resolvedBy,omitempty"`
	// TokenHash is the SHA-256 of the run's token (see Claim.RunToken),
	// kept by the queue to check run-scoped calls. It never leaves the
	// queue: not encoded, and cleared in the statuses the queue returns.
	TokenHash []byte `json:"-"`
}

// TaskStatus is a task's current state and run history.
type TaskStatus struct {
	TaskID       string    `json:"taskId"`
	GraphID      string    `json:"graphId"`
	State        TaskState `json:"state"`
	RetriesLeft  int       `json:"retriesLeft"`
	Runs         []Run     `json:"runs"`
	Deadline     time.Time `json:"deadline"`
	Expires      time.Time `json:"expires"`
	Name         string    `json:"name"`
	Kind         Kind      `json:"kind"`
	InputFiles   int       `json:"inputFiles"`
	InputBytes   int64     `json:"inputBytes"`
	Dependencies []string  `json:"dependencies,omitempty"`
	// CreatedBy is the identity that created the task.
	CreatedBy string `json:"createdBy,omitempty"`
}

// GraphState summarises a graph: running until every task resolved, then
// completed if all completed, canceled if `af cancel` ended it, otherwise
// failed. A rerun of any of its tasks (or `af rerun GRAPH --failed`)
// makes it running again.
type GraphState string

const (
	// GraphRunning: some task is not resolved yet.
	GraphRunning GraphState = "running"
	// GraphCompleted: every task completed.
	GraphCompleted GraphState = "completed"
	// GraphFailed: every task resolved and at least one did not complete.
	GraphFailed GraphState = "failed"
	// GraphCanceled: a cancel resolved the graph; the tasks it stopped
	// are exception/canceled. Its tasks cannot be rerun one by one; only
	// `af rerun GRAPH --failed` re-opens it.
	GraphCanceled GraphState = "canceled"
)

// Resolved reports whether the graph has ended (for now: a rerun may
// re-open it).
func (s GraphState) Resolved() bool { return s != GraphRunning && s != "" }

// GraphStatus is GET /api/v1/graphs/{id}: the graph and every task's status.
type GraphStatus struct {
	GraphID  string       `json:"graphId"`
	Name     string       `json:"name"`
	Owner    string       `json:"owner"`
	Priority Priority     `json:"priority,omitempty"`
	State    GraphState   `json:"state"`
	Created  time.Time    `json:"created"`
	Resolved *time.Time   `json:"resolved,omitempty"`
	Tasks    []TaskStatus `json:"tasks"`
	// ResultTaskID is the reducer whose public/result.txt is the job's
	// result.
	ResultTaskID string `json:"resultTaskId,omitempty"`
	// CreatedBy is the identity that created the graph (an admin creating
	// it on behalf of Owner, or Owner itself); CanceledBy the one whose
	// cancel last ended it.
	CreatedBy  string `json:"createdBy,omitempty"`
	CanceledBy string `json:"canceledBy,omitempty"`
	// Totals sums the tasks' counts, the mappers' (the graph's input)
	// apart from the reducer's (TotalsOf). The queue sets it on every
	// graph status it returns.
	Totals *GraphTotals `json:"totals,omitempty"`
	// Schedule names the schedule run the graph is (af serve made it);
	// nil for a graph af submit made.
	Schedule *GraphSchedule `json:"schedule,omitempty"`
	// Workers is what af serve has seen of the workers asking for work,
	// while the graph runs (af serve fills it in; the queue does not).
	Workers *WorkerActivity `json:"workers,omitempty"`
}

// WorkerActivity is af serve's view of the workers, so a follower of a
// graph that does not move can say that no worker is claiming. It is kept
// in memory since af serve started (Since).
type WorkerActivity struct {
	// Since is when af serve started watching.
	Since time.Time `json:"since"`
	// LiveWorkers counts the workers that asked for work (claimWork)
	// within the last LiveWindowSeconds; a worker whose every slot is busy
	// asks for none and is not counted.
	LiveWorkers       int `json:"liveWorkers"`
	LiveWindowSeconds int `json:"liveWindowSeconds"`
	// LastPoll is the last time any worker asked for work, LastClaim the
	// last time one was handed a task (of any graph); nil: not since
	// Since.
	LastPoll  *time.Time `json:"lastPoll,omitempty"`
	LastClaim *time.Time `json:"lastClaim,omitempty"`
}

// What a rerun does to a task, in RerunEffect.Effect.
const (
	// RerunScheduled: a task the rerun asked for; it has a new pending
	// run, or (State unscheduled) waits for dependencies that are
	// themselves being rerun.
	RerunScheduled = "rerun"
	// RerunWaits: a dependent that had not run on the old output
	// (unscheduled, pending, or ended by a dependency's failure) waits
	// until the rerun dependency completes again.
	RerunWaits = "waits"
	// RerunRunsAgain: a dependent that ran on the old output (completed,
	// failed, or running: its run is superseded) runs again as a new run
	// once the rerun dependency completes.
	RerunRunsAgain = "runs-again"
	// RerunUnchanged: a dependent left as it was because another of its
	// dependencies failed for good, so it could not run anyway.
	RerunUnchanged = "unchanged"
)

// RerunEffect is one task a rerun changed (or deliberately left alone).
type RerunEffect struct {
	TaskID string `json:"taskId"`
	Name   string `json:"name"`
	Kind   Kind   `json:"kind"`
	// From and To are the task's state before and after the rerun.
	From TaskState `json:"from"`
	To   TaskState `json:"to"`
	// Effect is RerunScheduled, RerunWaits, RerunRunsAgain or
	// RerunUnchanged.
	Effect string `json:"effect"`
	// Message says why, for people (e.g. which dependency failed).
	Message string `json:"message,omitempty"`
}

// RerunResponse answers POST /api/v1/tasks/{id}/rerun: the task's new
// status (the embedded fields, so it also decodes as a TaskStatus) and
// what became of the tasks that depend on it.
type RerunResponse struct {
	TaskStatus
	Dependents []RerunEffect `json:"dependents,omitempty"`
}

// GraphRerunResponse answers POST /api/v1/graphs/{id}/rerun?failed=true:
// the graph's new status, the failed and exception tasks that were rerun,
// and what became of their dependents that were not rerun themselves.
type GraphRerunResponse struct {
	Graph      GraphStatus   `json:"graph"`
	Rerun      []RerunEffect `json:"rerun"`
	Dependents []RerunEffect `json:"dependents,omitempty"`
}

// ClaimRequest is the body of POST /api/v1/claim-work.
type ClaimRequest struct {
	WorkerGroup string `json:"workerGroup"`
	WorkerID    string `json:"workerId"`
	Tasks       int    `json:"tasks"`
}

// RunTokenHeader carries a run's token on the run-scoped routes (reclaim,
// artifact creation, the completed/failed/exception reports).
const RunTokenHeader = "X-AF-Run-Token"

// ReaderRunHeader names the run ("TASKID/RUNID") whose token a worker's
// read carries in RunTokenHeader: a worker identity reads a task's status
// and artifacts only for a running run it holds, of that task or of a
// task that depends on it (a reducer fetching its mappers' results).
const ReaderRunHeader = "X-AF-Reader-Run"

// Claim is one task handed to a worker.
type Claim struct {
	TaskID     string    `json:"taskId"`
	RunID      int       `json:"runId"`
	TakenUntil time.Time `json:"takenUntil"`
	// RunToken is the run's secret (32 random bytes, unpadded base64url),
	// handed out once, to the worker that claimed the run. Renewing,
	// uploading for and reporting the run need it besides a work token,
	// so another holder of the shared work token cannot act for the run.
	RunToken string `json:"runToken"`
	Task     Task   `json:"task"`
}

// RawClaim is a Claim whose task definition is still the JSON the queue
// stored at creation; encoded, it is the same as the Claim.
type RawClaim struct {
	TaskID     string          `json:"taskId"`
	RunID      int             `json:"runId"`
	TakenUntil time.Time       `json:"takenUntil"`
	RunToken   string          `json:"runToken"`
	Task       json.RawMessage `json:"task"`
}

// ClaimResponse answers claim-work; it is empty when the long-poll timed out.
type ClaimResponse struct {
	Tasks []Claim `json:"tasks"`
}

// ReclaimRequest renews a lease and carries progress.
type ReclaimRequest struct {
	Stats Stats `json:"stats"`
}

// ReclaimResponse carries the new lease.
type ReclaimResponse struct {
	TakenUntil time.Time `json:"takenUntil"`
}

// ReportRequest is the body of the completed, failed and exception routes.
// Reason is required for exception (worker-shutdown, malformed-payload,
// resource-unavailable, internal-error, intermittent-task).
type ReportRequest struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Stats   Stats  `json:"stats"`
}

// ReportResponse tells the reporting worker the task's new status and
// whether its report ended the graph (for its log: the owner's email comes
// from af serve's outbox, not from the worker).
type ReportResponse struct {
	Status        TaskStatus `json:"status"`
	GraphResolved bool       `json:"graphResolved"`
	GraphState    GraphState `json:"graphState"`
}

// ArtifactRequest asks for a presigned upload URL.
type ArtifactRequest struct {
	ContentType string `json:"contentType"`
}

// ArtifactResponse is a presigned PUT URL valid until Expires.
type ArtifactResponse struct {
	PutURL  string    `json:"putUrl"`
	Expires time.Time `json:"expires"`
	// ContentType must be sent with the PUT for the signature to match.
	ContentType string `json:"contentType"`
	// Headers are every header the PUT must carry for the signature to
	// match (Content-Type among them, and Expires, which records the
	// task's expiry on the object).
	Headers map[string]string `json:"headers,omitempty"`
}

// idPattern is the shape of task and graph ids: TaskCluster's slugid
// alphabet, bounded so ids are safe in URLs, S3 keys and bbolt keys.
var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{8,64}$`)

// ValidID checks a task or graph id.
func ValidID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("id %q must be 8 to 64 characters of A-Z, a-z, 0-9, '_' or '-'", id)
	}
	return nil
}

// NewID returns a fresh random id in TaskCluster's slugid form: 16 random
// bytes, URL-safe base64 without padding (22 characters).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("taskdef: crypto/rand failed: %v", err))
	}
	s := base64.RawURLEncoding.EncodeToString(b[:])
	// A leading '-' reads as a flag on command lines; slugid avoids it the
	// same way.
	if s[0] == '-' {
		s = "A" + s[1:]
	}
	return s
}

// GraphSummary is one row of GET /api/v1/graphs: a graph without its
// tasks, with how many tasks are in each state.
type GraphSummary struct {
	GraphID  string            `json:"graphId"`
	Name     string            `json:"name"`
	Owner    string            `json:"owner"`
	Priority Priority          `json:"priority,omitempty"`
	State    GraphState        `json:"state"`
	Created  time.Time         `json:"created"`
	Resolved *time.Time        `json:"resolved,omitempty"`
	Tasks    int               `json:"tasks"`
	Counts   map[TaskState]int `json:"counts"`
	// CreatedBy is the identity that created the graph.
	CreatedBy string `json:"createdBy,omitempty"`
}

// CodeOverLimit is the ErrorResponse code of a 429 that a per-owner limit
// of the server's config refused (max_pending_per_owner): waiting a few
// seconds will not help, so clients do not retry it.
const CodeOverLimit = "OverLimit"

// ErrorResponse is the body of every error answer of the API (any 4xx or
// 5xx the server itself writes). Code is a stable name for the kind of
// error (NotFound, Conflict, IndexSource, ...); Error says what happened
// and how to fix it. Code comes first, so the body reads as it did when
// it was a JSON object with sorted keys.
type ErrorResponse struct {
	Code  string `json:"code"`
	Error string `json:"error"`
}

// GraphList is GET /api/v1/graphs, newest first.
type GraphList struct {
	Graphs []GraphSummary `json:"graphs"`
}

// GraphListQuery is the query of GET /api/v1/graphs: at most Limit graphs
// (0: the server's default, 100; at most 1000), of Owner (exact), whose
// name contains Name (any case), in any of States. The server answers 400
// naming a parameter it cannot use, or one it does not know.
type GraphListQuery struct {
	Limit  int
	Owner  string
	Name   string
	States []GraphState
}

// Encode is the query string, without "?" ("" when every field is zero).
func (q GraphListQuery) Encode() string {
	v := url.Values{}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Owner != "" {
		v.Set("owner", q.Owner)
	}
	if q.Name != "" {
		v.Set("name", q.Name)
	}
	for _, s := range q.States {
		v.Add("state", string(s))
	}
	return v.Encode()
}

// Artifact is one stored artifact of a run.
type Artifact struct {
	Name         string    `json:"name"`
	Size         int64     `json:"size"`
	LastModified time.Time `json:"lastModified"`
}

// ArtifactList is GET /api/v1/tasks/{id}/runs/{run}/artifacts.
type ArtifactList struct {
	TaskID    string     `json:"taskId"`
	RunID     int        `json:"runId"`
	Artifacts []Artifact `json:"artifacts"`
}

// IndexResult is POST /api/v1/index/query: the input objects a filter
// selects. The server streams it; Error is set when the query failed after
// the response started, and the client must then treat it as failed.
type IndexResult struct {
	Bucket  string      `json:"bucket"`
	Prefix  string      `json:"prefix"`
	Objects []InputFile `json:"objects"`
	Files   int64       `json:"files"`
	Bytes   int64       `json:"bytes"`
	// Schema and Layout are the index's dimensions and where they live
	// (as in Payload); both empty from a server that predates them, which
	// means telemetry-server's schema and .vN layout.
	Schema []string `json:"schema,omitempty"`
	Layout string   `json:"layout,omitempty"`
	// ETags are Objects' ETags in the same order, sent only when the
	// query asked for them (?etags=1).
	ETags []string `json:"etags,omitempty"`
	Error string   `json:"error,omitempty"`
}

// IndexBuildRequest is the body of POST /api/v1/index/build. Empty fields
// mean the source the index was last built from.
type IndexBuildRequest struct {
	Bucket string `json:"bucket,omitempty"`
	// Prefix is nil (null or absent) to keep the index's prefix; a pointer
	// to "" asks for the whole bucket.
	Prefix *string `json:"prefix,omitempty"`
	// Schema is the telemetry_schema.json document; empty keeps the
	// index's.
	Schema json.RawMessage `json:"schema,omitempty"`
}

// IndexBuildReport is the answer of POST /api/v1/index/build: what the
// build found and changed. Its JSON keys are the Go field names (the
// index's own report was sent as is before it moved here, and clients
// read those names).
type IndexBuildReport struct {
	Bucket, Prefix string
	// Listed is every object under the prefix; Indexed those that fit the
	// layout and are now in the index; Skipped those that do not fit.
	Listed, Indexed, Skipped int
	// Added, Updated (size, ETag or last-modified changed), Removed (no
	// longer listed) and Unchanged compare the listing with the index as
	// it was.
	Added, Updated, Removed, Unchanged int
	// SkippedKeys are the keys outside the layout, in listing order; the
	// server sends at most the first thousand.
	SkippedKeys []string
	// Duration is in nanoseconds on the wire.
	Duration time.Duration
}

// IndexStats is GET /api/v1/index/stats: the whole index's totals and each
// dimension's distinct values. JSON keys are the Go field names.
type IndexStats struct {
	Bucket, Prefix string
	Schema         IndexSchema
	// Built is when the last build finished (zero if none finished).
	Built   time.Time
	Objects int
	Bytes   int64
	// Dims has one entry per schema dimension, in schema order.
	Dims []IndexDimStats
}

// IndexSchema names the index's dimensions, in key order.
type IndexSchema struct {
	Fields []string
	// Layout says where each dimension lives (layout.Schema.Layout's
	// text); empty for telemetry-server's .vN layout.
	Layout string `json:",omitempty"`
}

// IndexDimStats lists one dimension's distinct values.
type IndexDimStats struct {
	Field string
	// Values are sorted by value.
	Values []IndexValueCount
}

// IndexValueCount is how many objects, and bytes, have one value.
type IndexValueCount struct {
	Value   string
	Objects int
	Bytes   int64
}

// User is an identity af serve knows (GET /api/v1/users), never with its
// token. Source is "users" for the identities `af users add` made and
// "config" for the tokens of af serve's config file (shared role tokens,
// kept working as named identities; changed by editing the file).
type User struct {
	Name    string     `json:"name"`
	Role    string     `json:"role"`
	Email   string     `json:"email,omitempty"`
	Source  string     `json:"source"`
	Created *time.Time `json:"created,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
	Rotated *time.Time `json:"rotated,omitempty"`
	Revoked *time.Time `json:"revoked,omitempty"`
}

// UserList is GET /api/v1/users, by name.
type UserList struct {
	Users []User `json:"users"`
}

// UserRequest is POST /api/v1/users (admin): a new identity. Name is a
// person's email address or a pool's or service's name; Role is submit,
// work, read or admin; Email is where the owner's emails go (default:
// Name, when it is an address); Expires, when set, ends the token.
type UserRequest struct {
	Name    string     `json:"name"`
	Role    string     `json:"role"`
	Email   string     `json:"email,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

// UserToken answers the routes that make a token (add, rotate): the
// identity and its token, shown this once and kept by the server only as
// a hash.
type UserToken struct {
	User  User   `json:"user"`
	Token string `json:"token"`
}
