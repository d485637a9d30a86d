package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/af-project/af/internal/queueclient"
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
