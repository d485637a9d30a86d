package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/taskdef"
)

// hideLength makes the client send a body chunked, without Content-Length.
type hideLength struct{ io.Reader }

// post sends body to path with token and returns the status and answer.
func post(t *testing.T, method, url, token string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBodyCaps: every route that takes a body refuses one over its cap
// with 413 and a message naming the cap (and, for graphs, the config key
// and how to make the graph smaller): at once when Content-Length says so,
// and after reading the cap when the body is chunked.
func TestBodyCaps(t *testing.T) {
	t.Parallel()
	const graphCap = 200 << 10
	e := newEnv(t, envOpts{maxGraphBytes: graphCap})
	g := testGraph(1, e.clock.Now())
	if _, err := e.submit.CreateGraph(ctxT(t), g); err != nil {
		t.Fatal(err)
	}
	run := "/api/v1/tasks/" + g.Tasks[0].TaskID + "/runs/0"
	for _, tc := range []struct {
		method, path, token string
		limit               int64
		want                string
		// chunked: the handler reads the body before anything else can
		// refuse the request, so a chunked body reaches the cap too.
		chunked bool
	}{
		{"POST", "/api/v1/graphs", submitTok, graphCap, "max_graph_bytes", true},
		{"PUT", "/api/v1/tasks/" + taskdef.NewID(), submitTok, graphCap, "fewer input files", true},
		{"POST", "/api/v1/claim-work?wait=0", workTok, maxSmallBody, "the limit of POST /api/v1/claim-work", true},
		{"POST", run + "/reclaim", workTok, maxSmallBody, "the limit of POST /api/v1/tasks/{id}/runs/{run}/reclaim", true},
		{"POST", run + "/completed", workTok, maxSmallBody, "the limit of POST /api/v1/tasks/{id}/runs/{run}/completed", true},
		{"POST", run + "/failed", workTok, maxSmallBody, "the limit of POST /api/v1/tasks/{id}/runs/{run}/failed", true},
		{"POST", run + "/exception", workTok, maxSmallBody, "the limit of POST /api/v1/tasks/{id}/runs/{run}/exception", true},
		{"POST", run + "/artifacts/public/result.txt", workTok, maxSmallBody, "the limit of POST /api/v1/tasks/{id}/runs/{run}/artifacts/{name...}", false},
		{"POST", "/api/v1/index/query", submitTok, maxFilterBody, "list fewer values", true},
		{"POST", "/api/v1/index/build", submitTok, maxSmallBody, "the limit of POST /api/v1/index/build", false},
		{"POST", "/api/v1/graphs/" + g.GraphID + "/cancel", submitTok, maxSmallBody, "the limit of POST /api/v1/graphs/{id}/cancel", false},
		{"POST", "/api/v1/tasks/" + g.Tasks[0].TaskID + "/rerun", submitTok, maxSmallBody, "the limit of POST /api/v1/tasks/{id}/rerun", false},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			t.Parallel()
			// A JSON object one byte over the cap.
			body := func() io.Reader {
				pad := tc.limit + 1 - int64(len(`{"graphId":""}`))
				return io.MultiReader(strings.NewReader(`{"graphId":"`), io.LimitReader(repeatReader('a'), pad), strings.NewReader(`"}`))
			}
			ways := []string{"content-length"}
			if tc.chunked {
				ways = append(ways, "chunked")
			}
			for _, way := range ways {
				b := body()
				if way == "content-length" {
					data, _ := io.ReadAll(b)
					b = strings.NewReader(string(data))
				} else {
					b = hideLength{b}
				}
				status, msg := post(t, tc.method, e.http.URL+tc.path, tc.token, b)
				if status != http.StatusRequestEntityTooLarge || !strings.Contains(msg, fmt.Sprintf("larger than %d bytes", tc.limit)) ||
					!strings.Contains(msg, tc.want) || !strings.Contains(msg, `"code":"TooLarge"`) {
					t.Errorf("%s: %d %s", way, status, msg)
				}
			}
		})
	}
}

type repeatReader byte

func (r repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r)
	}
	return len(p), nil
}

// TestGraphBodyDecode: the streamed graph decoder accepts what the whole
// body decoder did (field names in any case, whitespace) and refuses, with
// a 400 that says why, what it refused, plus a graph whose tasks come
// before its graphId.
func TestGraphBodyDecode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	task := func(g taskdef.Graph) string {
		b, _ := json.Marshal(g.Tasks[0])
		return string(b)
	}
	for _, tc := range []struct {
		name string
		body func(g taskdef.Graph) string
		want string // "" for success
	}{
		{"plain", func(g taskdef.Graph) string {
			return fmt.Sprintf(`{"graphId":%q,"name":"n","owner":"o","tasks":[%s]}`, g.GraphID, task(g))
		}, ""},
		{"keys in another case, whitespace", func(g taskdef.Graph) string {
			return fmt.Sprintf(" {\n \"GraphId\" : %q , \"Tasks\" : [ %s ] , \"NAME\":\"n\" }\n", g.GraphID, task(g))
		}, ""},
		{"tasks before graphId", func(g taskdef.Graph) string {
			return fmt.Sprintf(`{"tasks":[%s],"graphId":%q}`, task(g), g.GraphID)
		}, `\"graphId\" must come before \"tasks\"`},
		{"tasks twice", func(g taskdef.Graph) string {
			return fmt.Sprintf(`{"graphId":%q,"tasks":[%s],"tasks":[]}`, g.GraphID, task(g))
		}, `\"tasks\" appears twice`},
		{"unknown field", func(g taskdef.Graph) string {
			return fmt.Sprintf(`{"graphId":%q,"colour":1,"tasks":[%s]}`, g.GraphID, task(g))
		}, `unknown field \"colour\"`},
		{"unknown task field", func(g taskdef.Graph) string {
			return fmt.Sprintf(`{"graphId":%q,"tasks":[%s]}`, g.GraphID, strings.Replace(task(g), `"retries"`, `"retires"`, 1))
		}, `tasks[0]: json: unknown field \"retires\"`},
		{"number too large for its field", func(g taskdef.Graph) string {
			return fmt.Sprintf(`{"graphId":%q,"tasks":[%s]}`, g.GraphID, strings.Replace(task(g), `"maxRunTime":600`, `"maxRunTime":1e30`, 1))
		}, `field tasks[0].task.payload.maxRunTime: want a whole number, 1e30 does not fit`},
		{"trailing data", func(g taskdef.Graph) string {
			return fmt.Sprintf(`{"graphId":%q,"tasks":[%s]} {}`, g.GraphID, task(g))
		}, "trailing data"},
		{"tasks null", func(g taskdef.Graph) string { return fmt.Sprintf(`{"graphId":%q,"tasks":null}`, g.GraphID) }, "needs at least one task"},
		{"tasks not an array", func(g taskdef.Graph) string { return fmt.Sprintf(`{"graphId":%q,"tasks":{}}`, g.GraphID) }, `\"tasks\" must be an array`},
		{"not an object", func(taskdef.Graph) string { return `[1]` }, "must be a JSON object"},
		{"empty", func(taskdef.Graph) string { return `` }, "empty"},
		{"one task over the value cap", func(g taskdef.Graph) string {
			g.Tasks[0].Task.Metadata.Description = strings.Repeat("d", maxGraphValue)
			return fmt.Sprintf(`{"graphId":%q,"tasks":[%s]}`, g.GraphID, task(g))
		}, "tasks[0]: a task (or another value) of the graph is larger than 16777216 bytes"},
		{"truncated", func(g taskdef.Graph) string {
			return fmt.Sprintf(`{"graphId":%q,"tasks":[%s`, g.GraphID, task(g))
		}, "request body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := testGraph(1, e.clock.Now())
			g.Tasks = g.Tasks[:1]
			status, msg := post(t, "POST", e.http.URL+"/api/v1/graphs", submitTok, strings.NewReader(tc.body(g)))
			switch {
			case tc.want == "" && status != http.StatusOK:
				t.Fatalf("%d %s", status, msg)
			case tc.want != "" && (status/100 != 4 || !strings.Contains(msg, tc.want)):
				t.Fatalf("%d %s, want 400 (413 for a value too large) with %q", status, msg, tc.want)
			}
		})
	}
}

// TestGraphNumberRanges: every number of a posted task the queue stores
// or acts on is range-checked; an absurd or negative one is a 400 that
// names the task and the field, and no graph is created.
func TestGraphNumberRanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	for _, tc := range []struct {
		name   string
		change func(t *taskdef.Task)
		want   string
	}{
		{"negative retries", func(t *taskdef.Task) { t.Retries = -1 }, "retries -1 must be between 0 and 50"},
		{"huge retries", func(t *taskdef.Task) { t.Retries = 1 << 40 }, "retries 1099511627776 must be between 0 and 50"},
		{"zero maxRunTime", func(t *taskdef.Task) { t.Payload.MaxRunTime = 0 }, "payload.maxRunTime 0 must be a positive number of seconds"},
		{"negative maxRunTime", func(t *taskdef.Task) { t.Payload.MaxRunTime = -5 }, "payload.maxRunTime -5"},
		{"maxRunTime that overflows a duration", func(t *taskdef.Task) { t.Payload.MaxRunTime = 1 << 40 }, fmt.Sprintf("at most %d", queue.MaxRunTime)},
		{"negative memory", func(t *taskdef.Task) { t.Payload.Limits.MemoryBytes = -1 }, "payload.limits.memoryBytes -1"},
		{"absurd memory", func(t *taskdef.Task) { t.Payload.Limits.MemoryBytes = 1 << 50 }, "payload.limits.memoryBytes 1125899906842624"},
		{"negative cpus", func(t *taskdef.Task) { t.Payload.Limits.CPUs = -0.5 }, "payload.limits.cpus -0.5"},
		{"absurd cpus", func(t *taskdef.Task) { t.Payload.Limits.CPUs = 1e9 }, "payload.limits.cpus 1e+09"},
		{"negative pids", func(t *taskdef.Task) { t.Payload.Limits.Pids = -1 }, "payload.limits.pids -1"},
		{"absurd pids", func(t *taskdef.Task) { t.Payload.Limits.Pids = 1e9 }, "payload.limits.pids 1000000000"},
		{"negative input size", func(t *taskdef.Task) { t.Payload.Inputs[0].Size = -1 }, "payload.inputs[0].size -1"},
		{"absurd input size", func(t *taskdef.Task) { t.Payload.Inputs[0].Size = 1 << 62 }, "payload.inputs[0].size 4611686018427387904"},
		{"input sizes that overflow their sum", func(t *taskdef.Task) {
			for i := range 20 {
				t.Payload.Inputs = append(t.Payload.Inputs, taskdef.InputFile{Key: fmt.Sprint("k", i), Size: queue.MaxInputSize})
			}
		}, "payload.inputs: more than 1125899906842624 bytes in one task"},
		{"too many inputs", func(t *taskdef.Task) {
			t.Payload.Inputs = make([]taskdef.InputFile, queue.MaxInputs+1)
			for i := range t.Payload.Inputs {
				t.Payload.Inputs[i] = taskdef.InputFile{Key: "k", Size: 1}
			}
		}, "payload.inputs: 100001 files, at most 100000"},
		{"deadline before created", func(t *taskdef.Task) { t.Deadline = t.Created.Add(-time.Hour) }, "must be after created"},
		{"deadline too far", func(t *taskdef.Task) { t.Deadline = t.Created.Add(400 * 24 * time.Hour); t.Expires = t.Deadline }, "deadline is 9600h0m0s after created"},
		{"created in 1900", func(t *taskdef.Task) { t.Created = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC) }, "created 1900-01-01T00:00:00Z is outside 1971..2200"},
		{"expires before deadline", func(t *taskdef.Task) { t.Expires = t.Deadline.Add(-time.Minute) }, "expires"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := testGraph(2, e.clock.Now())
			tc.change(&g.Tasks[1].Task)
			_, err := e.submit.CreateGraph(ctxT(t), g)
			where := fmt.Sprintf("tasks[1] (%s): ", g.Tasks[1].TaskID)
			if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), where) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want 400 with %q%q", err, where, tc.want)
			}
			if _, err := e.submit.Graph(ctxT(t), g.GraphID); err == nil {
				t.Fatal("the refused graph exists")
			}
		})
	}
}
