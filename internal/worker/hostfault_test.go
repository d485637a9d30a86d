package worker

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/af-project/af/internal/taskdef"
)

// TestFullDiskIsTheHostsFault: a write of the worker's own that meets a
// full disk (a real ENOSPC, from /dev/full) is exception/
// resource-unavailable, which the queue retries on another worker, and
// the message names the worker and its scratch root; other errors of the
// worker's own files stay internal errors.
func TestFullDiskIsTheHostsFault(t *testing.T) {
	t.Parallel()
	f, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Fatalf("open /dev/full: %v", err)
	}
	defer f.Close()
	_, full := f.Write(make([]byte, 4096))
	if full == nil {
		t.Fatal("writing /dev/full succeeded")
	}
	w := &Worker{cfg: Config{WorkerID: "w-disk", ScratchRoot: "/var/lib/af-scratch"}}
	tests := []struct {
		name       string
		err        error
		wantReason string
		want       []string
	}{
		{"ENOSPC", full, taskdef.ReasonResourceUnavail, []string{"sort mapper output", "w-disk", "/var/lib/af-scratch", "is full", "the queue runs the task again"}},
		{"wrapped ENOSPC", errors.Join(errors.New("spill"), full), taskdef.ReasonResourceUnavail, []string{"is full"}},
		{"other", os.ErrPermission, taskdef.ReasonInternalError, []string{"sort mapper output"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o := w.hostFault("sort mapper output", tc.err)
			if o.state != taskdef.StateException || o.reason != tc.wantReason {
				t.Fatalf("outcome %s/%s, want exception/%s", o.state, o.reason, tc.wantReason)
			}
			for _, s := range tc.want {
				if !strings.Contains(o.message, s) {
					t.Errorf("message %q lacks %q", o.message, s)
				}
			}
		})
	}
}
