package worker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/browsertest"
	"github.com/af-project/af/internal/clustertest"
	"github.com/af-project/af/internal/taskdef"
)

// userErrorImage is clustertest.JobImage with this tree's af_helper in
// every Python image.
func userErrorImage(t *testing.T, name, base string, files map[string]string) string {
	t.Helper()
	return clustertest.JobImage(t, "usererr-"+name, base, files)
}

// TestUserErrorsReachTheTaskMessage runs jobs an analyst gets wrong on
// real workers and checks that each task's message (what af status, the
// page and the email show) names the user's file and line, or the
// analysis-tools.yml field and the fix, and that the log shows the same.
func TestUserErrorsReachTheTaskMessage(t *testing.T) {
	t.Parallel()
	clustertest.RequireImages(t, "af/os-count", "af/os-count-go")
	const pySpec = "language: python\nmapper: /job/job.py\n"
	syntaxJob := "import json\n\n\ndef map(key, dims, value, context)\n    context.write(1, 1)\n\n\ndef reduce(key, values, context):\n    pass\n"
	for _, tc := range []struct {
		name    string
		image   func(t *testing.T) string
		env     map[string]string
		state   taskdef.TaskState
		message []string // each in the mapper's message
		first   []string // each in the message's first line
		log     []string // each in the mapper's log
		page    []string // each in the monitor page's list of failures
	}{
		{
			name: "syntax error in job.py",
			image: func(t *testing.T) string {
				return userErrorImage(t, "syntax", "af/os-count", map[string]string{"/job/job.py": syntaxJob})
			},
			state:   taskdef.StateFailed,
			first:   []string{"/job/job.py line 4", "SyntaxError"},
			message: []string{`File "/job/job.py", line 4`, "def map(key, dims, value, context)", "python3 -m py_compile /job/job.py"},
			log:     []string{`File "/job/job.py", line 4`},
			page:    []string{"/job/job.py line 4: SyntaxError", `File "/job/job.py", line 4`},
		},
		{
			name:    "AF_OUTPUT in the task's env",
			image:   func(t *testing.T) string { return userErrorImage(t, "env", "af/os-count", map[string]string{}) },
			env:     map[string]string{"AF_OUTPUT": "/tmp/out"},
			state:   taskdef.StateException,
			first:   []string{"AF_OUTPUT is set by the worker", "remove it", "--env"},
			message: []string{"AF_OUTPUT"},
		},
		{
			name: "a Python job under language: go",
			image: func(t *testing.T) string {
				return userErrorImage(t, "py-as-go", "af/os-count", map[string]string{"/etc/analysis-tools.yml": "language: go\nmapper: /job/job.py\n"})
			},
			state: taskdef.StateFailed,
			first: []string{"/job/job.py", "mapper:", "/etc/analysis-tools.yml", "language: python"},
		},
		{
			name: "a Go binary under language: python",
			image: func(t *testing.T) string {
				return userErrorImage(t, "go-as-py", "af/os-count-go", map[string]string{"/etc/analysis-tools.yml": "language: python\nmapper: /job/os-count\n"})
			},
			state: taskdef.StateFailed,
			first: []string{"python3", "language: go", "/etc/analysis-tools.yml"},
		},
		{
			name: "a missing Go entry point",
			image: func(t *testing.T) string {
				return userErrorImage(t, "go-missing", "af/os-count-go", map[string]string{"/etc/analysis-tools.yml": "language: go\nmapper: /job/os-cont\n"})
			},
			state: taskdef.StateFailed,
			first: []string{"/job/os-cont", "mapper:", "/etc/analysis-tools.yml", "not found"},
		},
		{
			name: "an unknown key in analysis-tools.yml",
			image: func(t *testing.T) string {
				return userErrorImage(t, "yaml-key", "af/os-count", map[string]string{"/etc/analysis-tools.yml": pySpec + "maper: /job/job.py\n"})
			},
			state: taskdef.StateException,
			first: []string{"/etc/analysis-tools.yml: line 3: unknown key \"maper\"", "did you mean mapper?"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			image := tc.image(t)
			c := clustertest.Start(t, clustertest.Options{})
			_, files := jobData(t, c, 3)
			g := graphFor(t, c, image, files[:2])
			for i := range g.Tasks {
				for k, v := range tc.env {
					g.Tasks[i].Task.Payload.Env[k] = v
				}
			}
			if _, err := c.Submit.CreateGraph(context.Background(), g); err != nil {
				t.Fatal(err)
			}
			c.StartWorker(t, "w-"+g.GraphID[:6], clustertest.WorkerOptions{Capacity: 1})
			c.WaitGraph(t, g.GraphID, 90*time.Second)
			gs, err := c.Submit.Graph(context.Background(), g.GraphID)
			if err != nil {
				t.Fatal(err)
			}
			var mapper *taskdef.TaskStatus
			for i := range gs.Tasks {
				if gs.Tasks[i].Kind == taskdef.KindMapper && len(gs.Tasks[i].Runs) > 0 {
					mapper = &gs.Tasks[i]
					break
				}
			}
			if mapper == nil {
				t.Fatalf("no mapper ran: %+v", gs.Tasks)
			}
			run := mapper.Runs[len(mapper.Runs)-1]
			msg := run.Message
			t.Logf("%s %s: %s", mapper.State, run.ReasonResolved, msg)
			if mapper.State != tc.state {
				t.Errorf("mapper %s, want %s", mapper.State, tc.state)
			}
			first, _, _ := strings.Cut(msg, "\n")
			for _, w := range tc.first {
				if !strings.Contains(first, w) {
					t.Errorf("the message's first line lacks %q:\n%s", w, first)
				}
			}
			for _, w := range tc.message {
				if !strings.Contains(msg, w) {
					t.Errorf("the message lacks %q:\n%s", w, msg)
				}
			}
			if len(tc.log) > 0 {
				rc, err := c.Submit.GetArtifact(context.Background(), mapper.TaskID, run.RunID, taskdef.LiveLogArtifact)
				logText := readAll(t, rc, err)
				for _, w := range tc.log {
					if !strings.Contains(logText, w) {
						t.Errorf("the log lacks %q:\n%s", w, logText)
					}
				}
			}
			if len(tc.page) > 0 {
				pageShows(t, c, g.GraphID, tc.page)
			}
			for _, leak := range []string{c.Dir, "afrootpassword"} {
				if strings.Contains(msg, leak) {
					t.Errorf("the message leaks %q: %s", leak, msg)
				}
			}
		})
	}
}

// pageShows signs in to the cluster's monitor with the submit token and
// checks that the graph's page lists its failures with each of want.
func pageShows(t *testing.T, c *clustertest.Cluster, graphID string, want []string) {
	t.Helper()
	tab := browsertest.Start(t).NewTab(t)
	const wait = 30 * time.Second
	if err := tab.Navigate(c.URL+"/signin?next=/graphs/"+graphID, wait); err != nil {
		t.Fatal(err)
	}
	if err := tab.Eval(`document.getElementById('signin-token').value = '`+c.SubmitToken+`'; true`, nil); err != nil {
		t.Fatal(err)
	}
	if err := tab.Click(`#signin-submit`, wait); err != nil {
		t.Fatal(err)
	}
	if err := tab.WaitFor(`location.pathname === '/graphs/`+graphID+`' && !document.getElementById('failures').hidden`, wait); err != nil {
		t.Fatal(err)
	}
	var text string
	if err := tab.Eval(`document.getElementById('failures-list').textContent`, &text); err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("the page's failures lack %q:\n%s", w, text)
		}
	}
}
