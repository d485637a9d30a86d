package server

import (
	"encoding/json"
	"strings"
	"testing"
)

// graphBody is a one-mapper graph with edit applied to its JSON text.
func graphBody(t *testing.T, e *env, edit func(m map[string]any)) string {
	t.Helper()
	g := testGraph(1, e.clock.Now())
	b, err := json.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func task0(m map[string]any) map[string]any {
	return m["tasks"].([]any)[0].(map[string]any)["task"].(map[string]any)
}

func payload0(m map[string]any) map[string]any { return task0(m)["payload"].(map[string]any) }

// TestEvery4xxNamesTheField sends af serve the mistakes a client can
// make and checks that each 4xx answer names the field (or the query
// parameter) at fault: the CLI maps those names to its flags.
func TestEvery4xxNamesTheField(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	cases := []struct {
		name   string
		rc     routeCase
		tok    string
		status int
		field  []string
	}{
		{"wrong type", routeCase{method: "POST", path: "/api/v1/graphs", body: graphBody(t, e, func(m map[string]any) { payload0(m)["maxRunTime"] = "an hour" })}, submitTok, 400,
			[]string{"field tasks[0].task.payload.maxRunTime: want a whole number, not a JSON string"}},
		{"wrong type at the top", routeCase{method: "POST", path: "/api/v1/graphs", body: `{"graphId": 7}`}, submitTok, 400, []string{"field graphId: want a string, not a JSON number"}},
		{"unknown task field", routeCase{method: "POST", path: "/api/v1/graphs", body: graphBody(t, e, func(m map[string]any) { payload0(m)["maxRunSeconds"] = 3 })}, submitTok, 400,
			[]string{"maxRunSeconds"}},
		{"no image", routeCase{method: "POST", path: "/api/v1/graphs", body: graphBody(t, e, func(m map[string]any) { payload0(m)["image"] = "" })}, submitTok, 400, []string{"image"}},
		{"negative max run time", routeCase{method: "POST", path: "/api/v1/graphs", body: graphBody(t, e, func(m map[string]any) { payload0(m)["maxRunTime"] = -1 })}, submitTok, 400, []string{"maxRunTime"}},
		{"bad priority", routeCase{method: "POST", path: "/api/v1/graphs", body: graphBody(t, e, func(m map[string]any) { m["priority"] = "urgent" })}, submitTok, 400, []string{"priority"}},
		{"deadline before created", routeCase{method: "POST", path: "/api/v1/graphs", body: graphBody(t, e, func(m map[string]any) { task0(m)["deadline"] = "2000-01-01T00:00:00Z" })}, submitTok, 400, []string{"deadline"}},
		{"bad limit", routeCase{method: "GET", path: "/api/v1/graphs?limit=lots"}, readTok, 400, []string{"limit"}},
		{"bad wait", routeCase{method: "POST", path: "/api/v1/claim-work?wait=soon", body: `{}`}, workTok, 400, []string{"wait"}},
		{"claim wrong type", routeCase{method: "POST", path: "/api/v1/claim-work", body: `{"tasks": "two"}`}, workTok, 400, []string{"field tasks: want a whole number, not a JSON string"}},
		{"bad run id", routeCase{method: "POST", path: "/api/v1/tasks/abcdefgh/runs/x/completed", body: `{}`}, workTok, 400, []string{"run id"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			status, body := do(t, e, c.rc, c.tok)
			var eb struct{ Error, Code string }
			if err := json.Unmarshal([]byte(body), &eb); err != nil {
				t.Fatalf("body %q is not JSON", body)
			}
			if status != c.status {
				t.Errorf("status %d, want %d: %s", status, c.status, eb.Error)
			}
			for _, f := range c.field {
				if !strings.Contains(eb.Error, f) {
					t.Errorf("answer %q does not name %q", eb.Error, f)
				}
			}
		})
	}
}
