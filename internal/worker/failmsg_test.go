package worker

import (
	"strings"
	"testing"
)

func TestFailureMessage(t *testing.T) {
	t.Parallel()
	tb := "af_helper: map failed on record 1 of k.gz (document d):\nTraceback (most recent call last):\n  File \"/job/job.py\", line 3, in map\nValueError: bad\n"
	goPanic := "afjob: map failed: panic: runtime error: index out of range [3] with length 3\ngoroutine 1 [running]:\n" +
		strings.Repeat("main.f()\n\t/src/main.go:10 +0x1d\n", 10)
	for _, tc := range []struct {
		name, runner, out, want string
	}{
		{"no output", "the job exited with code 1", "", "the job exited with code 1"},
		{"blank output", "the job exited with code 1", "\n \n", "the job exited with code 1"},
		{"traceback: exception first", "the job exited with code 1", tb,
			"the job exited with code 1: ValueError: bad\n" + strings.TrimSpace(tb)},
		{"go panic: the panic, not its stack", "the job exited with code 1", goPanic,
			"the job exited with code 1: afjob: map failed: panic: runtime error: index out of range [3] with length 3\n" + lastLines(strings.TrimSpace(goPanic), 12)},
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
