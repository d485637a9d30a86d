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
package worker
