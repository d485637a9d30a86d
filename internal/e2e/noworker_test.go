package e2e

import (
	"bufio"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clustertest"
)

// With no worker, af submit --wait says so on stderr once the notice's
// time has passed, instead of only counting seconds.
func TestSubmitWaitSaysNoWorkerClaims(t *testing.T) {
	t.Parallel()
	afBin, _ := binaries(t)
	clustertest.RequireImages(t, "af/os-count")
	c := clustertest.Start(t, clustertest.Options{})
	filterData(t, c)
	cmd := afCmd(c, afBin, "submit", "filters/Filter.json", "af/os-count", "--wait", "--no-worker-notice", "2s")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		var seen []string
		for sc.Scan() {
			seen = append(seen, sc.Text())
			if strings.Contains(sc.Text(), "no worker has claimed a task for") {
				found <- sc.Text()
				return
			}
		}
		found <- "NOT FOUND in:\n" + strings.Join(seen, "\n")
	}()
	select {
	case line := <-found:
		for _, w := range []string{"af: no worker has claimed a task for", "none has asked af serve for work", "start a worker"} {
			if !strings.Contains(line, w) {
				t.Fatalf("stderr lacks %q: %s", w, line)
			}
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no notice within 60 s")
	}
}
