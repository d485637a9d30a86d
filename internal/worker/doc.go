// Package worker is the worker daemon's logic: it claims tasks from the
// queue, opens their sealed credentials, streams the inputs from S3 into the
// job's container, publishes the output and logs as artifacts, and resolves
// the task. It sends no email and holds no SMTP settings: the queue
// transaction that ends a graph writes the owner's email to af serve's
// outbox (internal/outbox), which delivers it.
//
// Sealed credentials are bound to the graph, the job image and the input
// key prefixes af submit minted them for (creds.Credentials.Permits): a
// mapper whose graph, image, bucket, prefix or input keys differ, such as
// a task added to someone else's graph with another image, is refused as
// a malformed payload before any S3 request, so no input reaches code the
// graph's owner did not submit.
//
// A run ends one of three ways, as in taskcluster's generic-worker:
// completed; failed, when the job's own code or data is at fault (non-zero
// exit, max run time, out of memory, bad input past the job's thresholds);
// or exception, when the infrastructure is (image missing, S3 unreachable,
// Docker errors, worker shutdown, malformed payload).
//
// # Faults of the host are retried; faults of the job are failures
//
// Transient faults are retried where they happen first, then as new runs:
//
//   - An S3 input read that fails, or whose body breaks off, resumes from
//     the byte reached with a ranged GET carrying the first answer's ETag
//     as If-Match (resumingReader), so an object rewritten meanwhile is a
//     bad file, never a splice of two versions. Ten GETs in a row without
//     progress, about 40 s of backoff, end the run exception/
//     resource-unavailable ("s3 GET bucket/key: ... after N tries"), which
//     the queue retries as a new run. A missing object is a bad file (the
//     job's max_bad_files decides); denied or expired credentials are a
//     malformed payload. Neither is retried.
//   - Artifact uploads (result, logs) retry connection errors, 5xx and an
//     expired presigned URL with a fresh URL each time
//     (queueclient.Run.UploadArtifact), then end exception/
//     resource-unavailable. A reducer's downloads of its mappers' results
//     retry like input reads; a missing result is not retried.
//   - A task whose image is not on this worker is handed back at once
//     (exception/resource-unavailable, naming the image and how to load
//     it) and the worker pauses its claims, 2 s doubling to 30 s, so a
//     worker that has the image claims the new run. On a pool where no
//     worker has it, the task ends after its retries with that message.
//   - The worker's own disk full (ENOSPC, EDQUOT) while it prepares the
//     task's dirs, sorts the output or fetches a reducer's inputs is
//     exception/resource-unavailable naming the disk, not a failure.
//   - A finished run's report that cannot reach the queue is retried with
//     backoff until the run's lease (takenUntil) would expire, and the
//     lease renewer keeps renewing meanwhile, so a queue that is back
//     within the lease gets the report and the task is not run again.
//     After the lease the worker gives up and logs that the queue runs the
//     task again.
//
// What the job did itself (its exit status, its output, its data) is never
// retried automatically: a rerun would fail the same way.
package worker
