package server

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/taskdef"
)

// ownedGraph is n independent mappers of owner at priority p.
func ownedGraph(owner string, p taskdef.Priority, n int, created time.Time) taskdef.Graph {
	g := flatGraphAt(n, created)
	g.Owner, g.Priority = owner, p
	for i := range g.Tasks {
		g.Tasks[i].Task.Metadata.Owner = owner
	}
	return g
}

func flatGraphAt(n int, created time.Time) taskdef.Graph {
	g := testGraph(n, created)
	return taskdef.Graph{GraphID: g.GraphID, Name: g.Name, Owner: g.Owner, Tasks: g.Tasks[:n]}
}

// The refusals of priorities and per-owner caps over HTTP: status, code,
// and a message that says what to change.
func TestSchedulingRefusals(t *testing.T) {
	t.Parallel()
	high := []string{"alice@example.com"}
	e := newEnv(t, envOpts{config: func(c *Config) {
		n := 5
		c.MaxPendingPerOwner = &n
		c.Priority.HighOwners = &high
	}})
	ctx := ctxT(t)
	now := e.clock.Now()
	if _, err := e.submit.CreateGraph(ctx, ownedGraph("bob@example.com", "", 4, now)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		do     func() error
		status int
		code   string
		says   []string
	}{
		{"bad priority", func() error {
			_, err := e.submit.CreateGraph(ctx, ownedGraph("bob@example.com", "urgent", 1, now))
			return err
		}, 400, "InvalidRequest", []string{`priority "urgent" must be high, normal or low`, "--priority"}},
		{"bad task priority", func() error {
			task := testTask("", "t", now)
			task.Priority = "asap"
			_, err := e.submit.CreateTask(ctx, taskdef.NewID(), task)
			return err
		}, 400, "InvalidRequest", []string{`priority "asap" must be high, normal or low`}},
		{"high for an owner the config does not list", func() error {
			_, err := e.submit.CreateGraph(ctx, ownedGraph("bob@example.com", taskdef.PriorityHigh, 1, now))
			return err
		}, 403, "Forbidden", []string{"priority.high_owners", `"bob@example.com" is not one of them`, "--priority normal"}},
		{"a graph over the pending cap", func() error {
			_, err := e.submit.CreateGraph(ctx, ownedGraph("bob@example.com", "", 2, now))
			return err
		}, 429, taskdef.CodeOverLimit, []string{"over the limit of 5 tasks per owner", "max_pending_per_owner"}},
		{"a task over the pending cap", func() error {
			task := testTask("", "t", now)
			task.Metadata.Owner = "bob@example.com"
			if _, err := e.submit.CreateTask(ctx, taskdef.NewID(), task); err != nil {
				return fmt.Errorf("the fifth task: %w", err)
			}
			_, err := e.submit.CreateTask(ctx, taskdef.NewID(), task)
			return err
		}, 429, taskdef.CodeOverLimit, []string{"has 5 tasks waiting to run", "max_pending_per_owner"}},
	}
	for _, tc := range tests {
		err := tc.do()
		var ae *queueclient.APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code != tc.code {
			t.Errorf("%s: got %v, want %d %s", tc.name, err, tc.status, tc.code)
			continue
		}
		for _, s := range tc.says {
			if !strings.Contains(ae.Message, s) {
				t.Errorf("%s: message %q does not say %q", tc.name, ae.Message, s)
			}
		}
	}
	// The client does not retry a 429 of a limit: one request each.
	if n := metricSum(t, e.srv.metricsText(t), `af_http_request_duration_seconds_count\{code="429",route="[^"]*"\}`); n != 2 {
		t.Errorf("%v requests answered 429, want 2 (the client must not retry a per-owner limit)", n)
	}
	// alice, whom the config lists, may; the status says so.
	g := ownedGraph("alice@example.com", taskdef.PriorityHigh, 1, now)
	if _, err := e.submit.CreateGraph(ctx, g); err != nil {
		t.Errorf("alice at high: %v", err)
	}
	st, err := e.submit.Graph(ctx, g.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Owner != "alice@example.com" || st.Priority != taskdef.PriorityHigh {
		t.Errorf("graph %s owner %q priority %q, want alice's at high", g.GraphID, st.Owner, st.Priority)
	}
}

// metricSum adds the values of the series matching re.
func metricSum(t *testing.T, text, re string) float64 {
	t.Helper()
	rx := regexp.MustCompile("^" + re + ` (\S+)$`)
	var sum float64
	for _, line := range strings.Split(text, "\n") {
		if m := rx.FindStringSubmatch(line); m != nil {
			v, err := strconv.ParseFloat(m[1], 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			sum += v
		}
	}
	return sum
}

func TestMetricsByOwnerAndClaimWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	// 22 owners: the 20 with the most tasks are named, the rest summed.
	for i := range 22 {
		if _, err := e.submit.CreateGraph(ctx, ownedGraph(fmt.Sprintf("user%02d@example.com", i), "", 30-i, e.clock.Now())); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(time.Second)
	}
	if _, err := e.submit.CreateGraph(ctx, ownedGraph("hal@example.com", taskdef.PriorityHigh, 2, e.clock.Now())); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(90 * time.Second)
	claims, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 3}, 0)
	if err != nil || len(claims) != 3 {
		t.Fatalf("claim: %v, %d tasks", err, len(claims))
	}
	text := e.srv.metricsText(t)
	for _, c := range []struct {
		series string
		want   float64
	}{
		// hal's two high tasks, after 90 s pending, and then user00's
		// oldest (every owner has 0 running), after 112 s, were claimed.
		{`af_owner_tasks\{owner="user00@example.com",state="pending"\}`, 29},
		{`af_owner_tasks\{owner="user00@example.com",state="running"\}`, 1},
		{`af_owner_tasks\{owner="user19@example.com",state="pending"\}`, 11},
		// user20 and user21 (10 and 9 tasks) and hal (2) are past the 20
		// named owners.
		{`af_owner_tasks\{owner="user20@example.com",state="pending"\}`, 0},
		{`af_owner_tasks\{owner="hal@example.com",state="running"\}`, 0},
		{`af_owner_tasks\{owner="\(other\)",state="pending"\}`, 19},
		{`af_owner_tasks\{owner="\(other\)",state="running"\}`, 2},
		{`af_owner_tasks\{owner="[^"]*",state="[^"]*"\}`, sumTo(30) - sumTo(8) + 2},
		{`af_claim_wait_seconds_count\{priority="high"\}`, 2},
		{`af_claim_wait_seconds_sum\{priority="high"\}`, 180},
		{`af_claim_wait_seconds_count\{priority="normal"\}`, 1},
		{`af_claim_wait_seconds_sum\{priority="normal"\}`, 112},
		{`af_claim_wait_seconds_count\{priority="low"\}`, 0},
		{`af_claim_wait_seconds_bucket\{priority="high",le="60"\}`, 0},
		{`af_claim_wait_seconds_bucket\{priority="high",le="300"\}`, 2},
	} {
		if got := metricSum(t, text, c.series); got != c.want {
			t.Errorf("%s = %v, want %v", c.series, got, c.want)
		}
	}
	if n := strings.Count(text, "\naf_owner_tasks{"); n != 21*3 {
		t.Errorf("%d af_owner_tasks series, want 63 (20 owners and (other), 3 states each)", n)
	}
}

// sumTo is 1+2+...+n.
func sumTo(n int) float64 { return float64(n * (n + 1) / 2) }

// The fairness scenario through af serve: alice's 3,000-mapper graph and
// its reducer, then bob's 20 mappers and reducer; four workers claim one
// task at a time over HTTP and complete it. Bob's graph must end before
// half of alice's mappers have completed (internal/queue
// TestFairShareScenario runs the whole scenario, and FIFO, on the fake
// clock).
func TestFairShareOverHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := ctxT(t)
	alice := testGraph(3000, e.clock.Now())
	alice.Owner = "alice@example.com"
	if _, err := e.submit.CreateGraph(ctx, alice); err != nil {
		t.Fatal(err)
	}
	// The workers are busy with alice's backfill when bob posts.
	var running []taskdef.Claim
	for w := range 4 {
		cs, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: fmt.Sprint("w", w), Tasks: 1}, 0)
		if err != nil || len(cs) != 1 {
			t.Fatalf("claim: %v, %d tasks", err, len(cs))
		}
		running = append(running, cs[0])
	}
	e.clock.Advance(40 * time.Millisecond)
	bob := testGraph(20, e.clock.Now())
	bob.Owner = "bob@example.com"
	if _, err := e.submit.CreateGraph(ctx, bob); err != nil {
		t.Fatal(err)
	}
	aliceDone := 0
	for cycle := 0; ; cycle++ {
		if cycle > 3000 {
			t.Fatal("bob's graph did not end")
		}
		// The oldest running task completes, and its worker claims again.
		c := running[0]
		running = running[1:]
		r, err := e.work.Claimed(c).ReportCompleted(ctx, taskdef.ReportRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Task.GraphID == alice.GraphID && c.Task.Payload.Kind == taskdef.KindMapper {
			aliceDone++
		}
		if r.GraphResolved && c.Task.GraphID == bob.GraphID {
			if r.GraphState != taskdef.GraphCompleted {
				t.Fatalf("bob's graph ended %s", r.GraphState)
			}
			break
		}
		e.clock.Advance(15 * time.Second)
		cs, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
		if err != nil || len(cs) != 1 {
			t.Fatalf("claim: %v, %d tasks", err, len(cs))
		}
		running = append(running, cs[0])
	}
	if aliceDone >= 1500 {
		t.Errorf("bob's graph ended when %d of alice's 3000 mappers had completed, want fewer than half", aliceDone)
	}
	st, err := e.submit.Graph(ctx, alice.GraphID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != taskdef.GraphRunning {
		t.Errorf("alice's graph is %s, want still running", st.State)
	}
	t.Logf("bob's graph ended when %d of alice's 3000 mappers had completed", aliceDone)
}

// fair_share in the config picks the claim order af serve's queue uses.
func TestFairShareConfigSwitch(t *testing.T) {
	t.Parallel()
	off := false
	tests := []struct {
		name string
		fair *bool
		want []string
	}{
		{"default: fair shares", nil, []string{"alice", "bob", "alice", "bob", "alice"}},
		{"fair_share: false", &off, []string{"alice", "alice", "alice", "alice", "bob"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{config: func(c *Config) { c.FairShare = tc.fair }})
			ctx := ctxT(t)
			owners := map[string]string{}
			for _, o := range []struct {
				owner string
				n     int
			}{{"alice", 4}, {"bob", 2}} {
				g := ownedGraph(o.owner, "", o.n, e.clock.Now())
				if _, err := e.submit.CreateGraph(ctx, g); err != nil {
					t.Fatal(err)
				}
				owners[g.GraphID] = o.owner
				e.clock.Advance(time.Second)
			}
			var got []string
			for range tc.want {
				cs, err := e.work.ClaimWork(ctx, taskdef.ClaimRequest{WorkerGroup: "g", WorkerID: "w", Tasks: 1}, 0)
				if err != nil || len(cs) != 1 {
					t.Fatalf("claim: %v, %d tasks", err, len(cs))
				}
				got = append(got, owners[cs[0].Task.GraphID])
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("claimed the tasks of %v, want %v", got, tc.want)
			}
		})
	}
}
