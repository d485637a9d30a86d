package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// A 4xx that names a field gets the flag that sets it.
func TestExplainFieldErr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status   int
		msg      string
		wantFlag string // "" : unchanged
	}{
		{400, "request body: field tasks[0].task.payload.maxRunTime: want a whole number, not a JSON string", "(set by --max-run-time)"},
		{400, "task mapper-1: deadline 2000-01-01T00:00:00Z is before created", "(set by --deadline)"},
		{400, `priority "urgent" is not high, normal or low`, "(set by --priority)"},
		{403, "owner bob: only an admin may name another owner", "(set by --owner)"},
		{400, "task x: payload.image is empty", "(set by IMAGE"},
		{400, "email \"x\" is not an address (--email)", ""},
		{400, "request body: trailing data after the JSON value", ""},
		{500, "deadline passed", ""},
	} {
		err := explainFieldErr(&queueclient.APIError{Status: tc.status, Message: tc.msg, Method: "POST", Path: "/api/v1/graphs"})
		var ae *queueclient.APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%q: the APIError is lost: %v", tc.msg, err)
		}
		if tc.wantFlag == "" && err.Error() != ae.Error() {
			t.Errorf("%q: changed to %q", tc.msg, err)
		}
		if !strings.Contains(err.Error(), tc.wantFlag) {
			t.Errorf("%q: %q does not name %q", tc.msg, err, tc.wantFlag)
		}
	}
}

// af status's reason column keeps a long message's first line whole
// enough to name the error and the user's file and line at its end.
func TestStatusReasonKeepsTheUsersLine(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	msg := "the job exited with code 1: af_helper: /job/job.py line 4: SyntaxError: expected ':'\nTraceback...\n"
	long := "the job exited with code 1: KeyError: 'a rather long key name that the job did not expect to find missing' (at /job/job.py line 14)\n"
	st := taskdef.GraphStatus{GraphID: "g", State: taskdef.GraphFailed, Created: now.Add(-time.Minute), Tasks: []taskdef.TaskStatus{{
		TaskID: "t1", Name: "mapper-0", Kind: taskdef.KindMapper, State: taskdef.StateFailed,
		Runs: []taskdef.Run{{State: taskdef.StateFailed, ReasonResolved: "failed", Message: msg}},
	}, {
		TaskID: "t2", Name: "mapper-1", Kind: taskdef.KindMapper, State: taskdef.StateFailed,
		Runs: []taskdef.Run{{State: taskdef.StateFailed, ReasonResolved: "failed", Message: long}},
	}}}
	var b strings.Builder
	if err := printStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"the job exited with code 1: af_helper: /job/job.py line 4: SyntaxError: expected ':'", "the job exited with code 1: KeyErr", " … ", "(at /job/job.py line 14)"} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("status lacks %q:\n%s", w, b.String())
		}
	}
}
