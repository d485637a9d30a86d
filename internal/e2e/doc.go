// Package e2e holds the end-to-end tests of af as an analyst uses it: the
// real `af` and `worker` binaries, a real filter, MinIO, the queue server,
// Docker, SMTP and headless Chromium. It has no non-test code.
package e2e
