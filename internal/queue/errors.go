package queue

import (
	"errors"
	"fmt"
)

// queueError is a sentinel that may belong to a broader class, so that
// errors.Is(ErrRunNotCurrent, ErrConflict) holds and an HTTP layer can map
// whole classes to one status code.
type queueError struct {
	msg    string
	parent error
}

func (e *queueError) Error() string { return e.msg }

// Is lets a sentinel match its class.
func (e *queueError) Is(target error) bool {
	return e.parent != nil && e.parent == target
}

var (
	// ErrNotFound: the task or graph does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request is malformed; the wrapping message names the
	// field (HTTP 400).
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the request contradicts the stored state, e.g. a
	// different definition under an existing id (HTTP 409).
	ErrConflict = errors.New("conflict")
	// ErrRunNotCurrent: a reclaim or report names a run that is no longer
	// the task's current running run, typically because its lease expired,
	// the graph was canceled or the run was superseded (HTTP 409). It
	// matches ErrConflict too.
	ErrRunNotCurrent error = &queueError{msg: "run is not the current running run", parent: ErrConflict}
	// ErrDeadlineExceeded: the task is past its deadline, so it cannot be
	// reclaimed or rerun (HTTP 409). It matches ErrConflict too.
	ErrDeadlineExceeded error = &queueError{msg: "task deadline exceeded", parent: ErrConflict}
	// ErrNotRunOwner: a run-scoped call (reclaim, report, artifact
	// creation) did not carry the run's token, so it does not come from
	// the worker that claimed the run (HTTP 403). Nothing was changed.
	ErrNotRunOwner = errors.New("the run belongs to the worker that claimed it")
	// ErrOverLimit: the request would take its owner over a per-owner
	// limit of the config (HTTP 429); the message names the config key.
	// Nothing was changed.
	ErrOverLimit = errors.New("over a limit")
	// ErrClosed: the queue was closed.
	ErrClosed = errors.New("queue is closed")
)

// ConflictError is the ErrConflict returned when an id already holds a
// different definition; Diffs lists what differs, one entry per field, as
// `field (stored vs requested)`.
type ConflictError struct {
	// What names the thing that exists, e.g. `task abcdefgh` or `graph x`.
	What  string
	Diffs []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%s exists with a different definition: %s", e.What, joinDiffs(e.Diffs))
}

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

func joinDiffs(d []string) string {
	const max = 8
	s := ""
	for i, x := range d {
		if i == max {
			s += fmt.Sprintf(", and %d more", len(d)-max)
			break
		}
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}

// invalidf returns an ErrInvalid with a message naming the field.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// conflictf returns an ErrConflict with a message.
func conflictf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrConflict, fmt.Sprintf(format, args...))
}

// forbiddenf returns an ErrForbidden with a message.
func forbiddenf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrForbidden, fmt.Sprintf(format, args...))
}

// overLimitf returns an ErrOverLimit with a message.
func overLimitf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrOverLimit, fmt.Sprintf(format, args...))
}

// notFoundf returns an ErrNotFound with a message.
func notFoundf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))
}

// refusal reports whether err is one of the queue's own refusals, which an
// operation returns before it writes anything, so the group commit may keep
// the rest of the batch.
func refusal(err error) bool {
	return errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) ||
		errors.Is(err, ErrConflict) || errors.Is(err, ErrNotRunOwner) ||
		errors.Is(err, ErrForbidden) || errors.Is(err, ErrOverLimit)
}
