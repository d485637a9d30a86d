package worker

import (
	"strings"
	"testing"
)

func TestFailureMessage(t *testing.T) {
	t.Parallel()
	tb := "af_helper: map failed on record 1 of k.gz (document d):\nTraceback (most recent call last):\n  File \"/job/job.py\", line 3, in map\nValueError: bad\n"
	for _, tc := range []struct {
		name, runner, out, want string
	}{
		{"no output", "the job exited with code 1", "", "the job exited with code 1"},
		{"blank output", "the job exited with code 1", "\n \n", "the job exited with code 1"},
		{"traceback: exception first", "the job exited with code 1", tb,
			"the job exited with code 1: ValueError: bad\n" + strings.TrimSpace(tb)},
		{"one line", "the job exited with code 2", "af_helper: no map()\n",
			"the job exited with code 2: af_helper: no map()\naf_helper: no map()"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := failureMessage(tc.runner, tc.out); got != tc.want {
				t.Fatalf("got\n%q\nwant\n%q", got, tc.want)
			}
		})
	}
}

func TestOutputTailKeepsTheEndFromALineStart(t *testing.T) {
	t.Parallel()
	o := &outputTail{max: 64}
	for i := 0; i < 100; i++ {
		_, _ = o.Write([]byte(strings.Repeat("x", 9) + "\n"))
	}
	_, _ = o.Write([]byte("last line\n"))
	got := o.String()
	if len(got) > 64 || !strings.HasSuffix(got, "last line\n") || !strings.HasPrefix(got, "xxxxxxxxx\n") {
		t.Fatalf("tail %q", got)
	}
}
