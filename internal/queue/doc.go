// Package queue is af's control plane: a durable TaskCluster-style task
// queue in one bbolt file. It has no HTTP in it; internal/server puts routes
// on top of this API.
//
// # Task states
//
// A task has one state (taskdef.TaskState) and a list of runs, each with the
// same state type and TaskCluster's reasonCreated / reasonResolved:
//
//	             deps satisfied            claim
//	unscheduled ───────────────▶ pending ─────────▶ running ──┬─▶ completed
//	     │                        ▲  │                │       ├─▶ failed
//	     │                        │  │   retry while  │       └─▶ exception
//	     │                        │  │   retries left │
//	     │                        │  └────────────────┘◀── claim-expired,
//	     │                        │                         worker-shutdown,
//	     │                        │                         intermittent-task,
//	     │                        │                         resource-unavailable
//	     │                        └──── rerun ◀──── completed | failed | exception
//	     │
//	     └──▶ exception (deadline-exceeded, canceled, dependency-failed);
//	          pending ──▶ exception (deadline-exceeded, canceled)
//
//	  completed | failed | exception ──rerun──▶ unscheduled   (waits for a
//	  pending | running ──superseded──▶ unscheduled            rerun dependency)
//
// The table `transitions` (transition.go) lists every allowed (from, to)
// pair and the reasons that may take it; the function `transition` is the
// only code that changes a state, and it checks the table first. A failed
// run is the job's own failure and never retries automatically; the
// exception reasons claim-expired, worker-shutdown, intermittent-task and
// resource-unavailable retry as a new run while retriesLeft > 0 and are
// final after that; malformed-payload, internal-error, superseded,
// deadline-exceeded, canceled and dependency-failed are final at once.
//
// The split is the host's fault against the job's: resource-unavailable is
// what a worker reports once its own retries of a service are exhausted
// (S3 down longer than it waits, uploads refused, its disk full, a job image
// it lacks), so a new run, on another worker or later, may succeed, and the
// last run's message names what was unavailable. A job that exits non-zero
// or writes a bad output is failed; a payload the worker refuses is
// malformed-payload; neither is retried.
//
// Dependencies follow TaskCluster's requires: with all-completed (the
// default) a task becomes pending when every dependency completed, and is
// resolved exception/dependency-failed as soon as one resolves any other
// way (cascading to its own dependents), so the graph ends instead of
// waiting for its deadline; with all-resolved it becomes pending once every
// dependency resolved, however. Each (dependency, dependent) pair carries a
// flag so that a dependency counts once; a rerun clears the flags of the
// dependents it makes wait, so the new run counts again.
//
// # Reruns
//
// Rerun (af rerun TASK) gives a resolved task a new run with a fresh retry
// budget, as TaskCluster's rerunTask, and in the same transaction keeps
// its graph sound (rerun.go):
//
//   - a dependent that has not run on the task's old output yet
//     (unscheduled, pending, or ended dependency-failed) goes back to, or
//     stays, unscheduled until every dependency completed again: "the
//     reducer will wait for the new run". A pending dependent's unclaimed
//     run ends exception/superseded.
//   - a dependent that ran on it (completed or failed) is re-opened
//     unscheduled, and one that is running has its run ended
//     exception/superseded (its worker's late reclaim or report gets
//     ErrRunNotCurrent); either runs again as a new run (reasonCreated
//     rerun) once the dependency completed: "the reducer will run again on
//     the new outputs". Their own dependents follow the same rules.
//   - a dependent that another dependency failed for good is left as it
//     is.
//
// So a reducer only ever runs while every mapper's latest run is
// completed, and the latest run's result (what the worker reads, run -1)
// is the one it merges. A task that depends on a task failed for good
// cannot be rerun (rerun that one first); a task past its deadline, or
// whose dependent would have to run again past its deadline, cannot
// either. RerunFailed (af rerun GRAPH --failed) reruns every failed or
// exception task of a graph in one transaction under the same rules
// (tasks whose dependencies are rerun with them wait unscheduled).
//
// # Graphs
//
// A graph is running until every task resolved, then completed if all
// completed, canceled if CancelGraph resolved it, failed otherwise; any
// rerun re-opens it as running. CancelGraph ends every unresolved task
// exception/canceled with no message of its own: the graph's state says
// canceled once. A canceled graph's tasks cannot be rerun one by one
// (ErrConflict); RerunFailed, which reruns its canceled tasks with the
// failed ones, is how it is re-opened. The report whose transaction
// resolved the last task gets ReportResponse.GraphResolved (a retried
// report of that same run gets it again). The same transaction writes the
// owner's email to the outbox (outbox.go), whatever ended the graph: a
// report, a tick (deadline, lost lease with no retries left) or a cancel;
// af serve's sender (internal/outbox) delivers it. Workers send no email.
//
// # Leases
//
// Claim hands out a pending task (see Claim order) and sets the run's
// takenUntil to now + LeaseDuration; Reclaim extends it. Tick, run by the server on a
// ticker, ends every running run whose takenUntil passed
// (exception/claim-expired, then a new pending run if retries remain) and
// every unresolved task past its deadline (exception/deadline-exceeded). A
// report or reclaim that names a run which is no longer the current running
// run gets ErrRunNotCurrent, so two workers never own the same run: the
// loser of a lease learns it at its next call. All time comes from
// Options.Clock, so tests advance a fake clock and call Tick.
//
// ClaimWait is the long-poll: it waits on an in-memory broadcast that is
// fired after any commit that made a task pending (or, with a running cap,
// took a task out of running), then claims.
//
// # Claim order
//
// A task has a priority (high, normal, low; its graph's), and belongs to
// its graph's owner. A claim takes the highest priority with a claimable
// task; within it, with fair shares (the default), the owner with the
// fewest running tasks (of any priority), then the oldest task; with
// Scheduling.FIFO, the oldest task whoever owns it. An owner at
// Scheduling.MaxRunningPerOwner is skipped. Creating a graph or task that
// would take its owner past Scheduling.MaxPendingPerOwner tasks waiting
// (pending or unscheduled) is ErrOverLimit; asking for high when
// Scheduling.HighOwners does not list the owner is ErrForbidden. The
// pending index is keyed by (priority, owner, scheduled, task id), so a
// claim reads one key per (priority, owner) with pending tasks, and the
// owners' unscheduled, pending and running counts live in a bucket that
// transition updates in the same transaction as the state (fair.go).
//
// # Durability
//
// Every state change is one bbolt read-write transaction, committed with
// fsync before the call returns: what a caller was told happened is on
// disk. Nothing about tasks is kept only in memory (the broadcast channel
// is a wake-up hint, never state), so after a crash or kill -9 Open reloads
// everything; a run whose lease passed during the outage expires on the
// first Tick and retries, and a completed task is never run again because
// its completion was committed before its worker heard "ok".
//
// Task and graph records use a compact binary encoding (codec.go) because
// they are rewritten on every transition; definitions are JSON, written
// once. A write that is queued is carried out even if its caller's context
// ends meanwhile (a claim whose HTTP client went away is then recovered by
// lease expiry, as in TaskCluster), so a caller is never told "failed" about
// a change that was committed.
//
// Writes go through one writer goroutine that commits every request waiting
// at that moment in one transaction (group commit): concurrent claims and
// reports share an fsync without any added delay. The indexes keep each
// operation O(log n): pending ordered by (priority, owner, scheduled, task
// id), running by
// (takenUntil, task id), deadlines by (deadline, task id), reverse
// dependencies by (dependency, dependent), tasks per graph, and per-state
// counters for the graph summary and metrics.
//
// The file carries a schema version in its meta bucket. Open migrates a
// schema-1 file (af before priorities: one pending index in time order) in
// the transaction that opens it (TestMigrateSchema1), and refuses a file
// with a newer version, a bbolt file without our meta bucket, or a damaged
// file, with a message naming it, after checking it through a read-only
// open, so a refused file is left exactly as it was.
package queue
