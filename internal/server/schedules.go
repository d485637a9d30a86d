package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/schedule"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
)

// ScheduleConfig is how af serve makes scheduled runs. A run is an
// ordinary graph, made by the server for the schedule's owner: the server
// renders the filter template for the run's target, queries its index,
// mints the run's scoped S3 credentials with its own AWS settings (the
// standard AWS environment of the af serve process, as for the artifact
// bucket) and seals them to the pool key.
type ScheduleConfig struct {
	// CredentialsMode is assume-role (the default) or federation-token,
	// as af submit's --credentials-mode.
	CredentialsMode string `yaml:"credentials_mode,omitempty"`
	// RoleARN is the role assumed to mint a run's credentials (assume-role
	// on AWS; MinIO ignores it).
	RoleARN string `yaml:"role_arn,omitempty"`
	// Deadline bounds each run's graph (default af submit's, 10h).
	Deadline Duration `yaml:"deadline,omitempty"`
	// MaxBackfill bounds the runs one backfill makes (default 1000).
	MaxBackfill int `yaml:"max_backfill,omitempty"`
	// DockerConfig is the directory whose config.json holds the registry
	// credentials a run's image tag is resolved with (default Docker's
	// default config dir, $DOCKER_CONFIG or ~/.docker).
	DockerConfig string `yaml:"docker_config,omitempty"`
}

// defaultMaxBackfill is ScheduleConfig.MaxBackfill's default.
const defaultMaxBackfill = 1000

// afterClock is a clock that can also wait (the system clock, or the
// tests' fake clock); the scheduler needs both.
type afterClock interface {
	queue.Clock
	After(d time.Duration) <-chan time.Time
}

type systemAfter struct{ queue.Clock }

func (systemAfter) After(d time.Duration) <-chan time.Time { return time.After(d) }

// newScheduler opens the schedule store in the queue's file and builds
// the scheduler that makes runs through the server.
func (s *Server) newScheduler() error {
	st, err := schedule.NewStore(s.q.Bolt(), s.clock.Now)
	if err != nil {
		return err
	}
	clock, ok := s.clock.(afterClock)
	if !ok {
		clock = systemAfter{s.clock}
	}
	s.schedules = st
	s.scheduler = &schedule.Scheduler{
		Store:    st,
		Launcher: schedLauncher{s},
		Alerter:  schedAlerter{s},
		Clock:    clock,
		Logger:   s.log.With("component", "scheduler"),
		// A graph's end writes its outbox entry: the scheduler looks at
		// once whether a run ended (to publish its result, or to make
		// room under max-active).
		Wake: s.q.OutboxSignal,
	}
	return nil
}

// schedLauncher makes a run's graph the way af submit makes one.
type schedLauncher struct{ s *Server }

func (l schedLauncher) Launch(ctx context.Context, sc schedule.Schedule, run schedule.RunRecord) error {
	s := l.s
	if _, err := s.q.GraphOwner(ctx, run.GraphID); err == nil {
		return nil // made by an earlier attempt
	} else if !errors.Is(err, queue.ErrNotFound) {
		return err
	}
	c, err := schedule.Parse(sc.Cron, sc.Timezone)
	if err != nil {
		return &schedule.Refusal{Msg: err.Error()}
	}
	label := c.Label(run.Target)
	db, err := s.openIndex()
	if err != nil {
		return fmt.Errorf("open the index: %w", err)
	}
	bucket, prefix, schema, err := db.Source()
	if err != nil {
		return fmt.Errorf("the index has no source yet (af index build): %w", err)
	}
	f, rendered, err := schedule.RenderFilter("the filter template of "+sc.Name, sc.Template, run.Target, c.Location(), schema)
	if err != nil {
		return &schedule.Refusal{Msg: err.Error()}
	}
	var files []taskdef.InputFile
	var etags []string
	if _, err := db.Query(ctx, f, func(o index.Object) error {
		files = append(files, taskdef.InputFile{Key: o.Key, Size: o.Size})
		etags = append(etags, o.ETag)
		return nil
	}); err != nil {
		return fmt.Errorf("query the index: %w", err)
	}
	if len(files) == 0 {
		return &schedule.Refusal{Msg: fmt.Sprintf("the filter rendered for %s selects no files in s3://%s/%s: check the template's dates, or refresh the index (af index build) if the data has arrived", label, bucket, prefix)}
	}
	if s.cfg.PoolKey == "" {
		return errors.New("af serve has no pool key to seal a scheduled run's credentials: run af keygen and set pool_key")
	}
	pub, err := creds.LoadPublicKey(s.cfg.PoolKey)
	if err != nil {
		return fmt.Errorf("pool key: %w", err)
	}
	if s.aws == nil {
		return errors.New("af serve has no AWS settings to mint a scheduled run's credentials: start it with the standard AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL for MinIO)")
	}
	mode, err := creds.ParseMode(s.cfg.Schedules.CredentialsMode)
	if err != nil {
		return fmt.Errorf("schedules.credentials_mode: %w", err)
	}
	now := s.clock.Now()
	deadline := time.Duration(s.cfg.Schedules.Deadline)
	if deadline <= 0 {
		deadline = submit.DefaultDeadline
	}
	ttl, deadline := submit.CredentialsTTL(0, deadline, mode)
	pin, err := s.pinScheduledImage(ctx, sc.Image)
	if err != nil {
		return err
	}
	sealed, err := submit.SealCredentials(ctx, *s.aws, pub, submit.CredentialsRequest{
		GraphID: run.GraphID, Image: pin.Ref, Bucket: bucket, Prefix: prefix, Schema: schema.Fields, Layout: schema.Layout(), Files: files,
		TTL: ttl, Mode: mode, RoleARN: s.cfg.Schedules.RoleARN, Deadline: now.Add(deadline),
	})
	if err != nil {
		return err
	}
	prio := taskdef.PriorityNormal
	if run.Kind == schedule.KindBackfill {
		// Behind every schedule's own runs in claim order.
		prio = taskdef.PriorityLow
	}
	opts := submit.GraphOptions{
		GraphID: run.GraphID, Name: sc.Name + "@" + label, Owner: sc.Owner, Priority: prio, Image: pin.Ref,
		Bucket: bucket, Prefix: prefix, Schema: schema.Fields, Layout: schema.Layout(), Files: files, ETags: etags, Env: sc.Env,
		SealedCredentials: sealed.Sealed, Deadline: deadline, Now: now,
	}
	g, err := submit.BuildGraph(opts)
	if err != nil {
		return &schedule.Refusal{Msg: err.Error()}
	}
	actx := queue.WithActor(ctx, queue.Actor{Name: "scheduler:" + sc.Name, MayChange: func(string, string) error { return nil }})
	if _, err := s.q.CreateGraph(actx, g); err != nil {
		if _, gerr := s.q.GraphOwner(ctx, run.GraphID); gerr == nil {
			return nil // created by an attempt that raced this one
		}
		var ce *queue.ConflictError
		if errors.As(err, &ce) || errors.Is(err, queue.ErrInvalid) || errors.Is(err, queue.ErrOverLimit) {
			return &schedule.Refusal{Msg: "the queue refused the run's graph: " + err.Error()}
		}
		return err
	}
	target := run.Target
	prov := taskdef.Provenance{
		MadeBy: "schedule", Image: pin.Record(),
		FilterName: "the filter template of schedule " + sc.Name, Filter: sc.Template, Rendered: rendered,
		Schedule: sc.Name, Target: &target,
	}
	// A launch repeated after a crash finds the graph made and returns
	// above, so a record lost here stays lost: the run goes on, and only
	// its resubmission is refused (said in the log).
	if err := s.q.PutProvenance(ctx, submit.RecordOf(prov, opts)); err != nil {
		s.log.Warn("a scheduled run's provenance was not recorded; it runs, but af resubmit will refuse it", "schedule", sc.Name, "graph", run.GraphID, "err", err)
	}
	return nil
}

func (l schedLauncher) Graphs(ctx context.Context, ids []string) (map[string]schedule.GraphState, error) {
	states, err := l.s.q.GraphStates(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]schedule.GraphState, len(ids))
	for _, id := range ids {
		st, ok := states[id]
		// A graph that is gone expired and was swept: it ended long ago.
		out[id] = schedule.GraphState{Ended: !ok || st.Resolved(), Completed: st == taskdef.GraphCompleted}
	}
	return out, nil
}

// Publish copies a completed run's result artifact to
// <s3.prefix>schedules/NAME/LABEL/result.txt in the artifact bucket, a
// name other tools can read without asking af. No artifact bucket: there
// is nothing to copy to, and nothing is retried.
func (l schedLauncher) Publish(ctx context.Context, sc schedule.Schedule, run schedule.RunRecord) error {
	s := l.s
	if s.s3 == nil || s.cfg.S3.Bucket == "" {
		return nil
	}
	g, err := s.q.Graph(ctx, run.GraphID)
	if errors.Is(err, queue.ErrNotFound) || errors.Is(err, queue.ErrExpired) {
		return nil // gone before it could be copied; nothing left to copy
	}
	if err != nil {
		return err
	}
	if g.ResultTaskID == "" {
		return nil
	}
	t, err := s.q.Task(ctx, g.ResultTaskID)
	if err != nil {
		return err
	}
	if len(t.Runs) == 0 {
		return nil
	}
	c, err := schedule.Parse(sc.Cron, sc.Timezone)
	if err != nil {
		return nil
	}
	src := s.artifactKey(g.ResultTaskID, t.Runs[len(t.Runs)-1].RunID, taskdef.ResultArtifact)
	_, err = s.s3.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket:     aws.String(s.cfg.S3.Bucket),
		Key:        aws.String(s.ScheduleResultKey(sc.Name, c.Label(run.Target))),
		CopySource: aws.String(s.cfg.S3.Bucket + "/" + escapeKey(src)),
	})
	if err != nil {
		return fmt.Errorf("copy the result to its schedule's name: %w", err)
	}
	return nil
}

// escapeKey URL-encodes each segment of a key, as CopySource wants.
func escapeKey(k string) string {
	parts := strings.Split(k, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

// ScheduleResultKey is where a scheduled run's result is copied in the
// artifact bucket: <s3.prefix>schedules/NAME/LABEL/result.txt.
func (s *Server) ScheduleResultKey(name, label string) string {
	return s.cfg.S3.Prefix + "schedules/" + name + "/" + label + "/result.txt"
}

// schedAlerter writes a late run's alert into the queue's outbox, keyed
// by the run's graph, so the sender emails it once.
type schedAlerter struct{ s *Server }

func (a schedAlerter) Late(ctx context.Context, sc schedule.Schedule, run schedule.RunRecord) error {
	return a.s.q.OutboxAlert(ctx, run.GraphID, queue.AlertLate, run.Due.Add(sc.ExpectWithin))
}

// --- HTTP ---

func (s *Server) scheduleRoutes(mux *http.ServeMux) {
	s.route(mux, "POST /api/v1/schedules", RoleSubmit, s.createSchedule)
	s.route(mux, "GET /api/v1/schedules", accessAuth, s.listSchedules)
	s.route(mux, "GET /api/v1/schedules/{name}", accessAuth, s.getSchedule)
	s.route(mux, "POST /api/v1/schedules/{name}", RoleSubmit, s.updateSchedule)
	s.route(mux, "DELETE /api/v1/schedules/{name}", RoleSubmit, s.deleteSchedule)
	s.route(mux, "POST /api/v1/schedules/{name}/pause", RoleSubmit, s.setScheduleState(schedule.Paused))
	s.route(mux, "POST /api/v1/schedules/{name}/resume", RoleSubmit, s.setScheduleState(schedule.Active))
	s.route(mux, "POST /api/v1/schedules/{name}/backfill", RoleSubmit, s.backfill)
	s.route(mux, "GET /api/v1/schedules/{name}/runs", accessAuth, s.scheduleRuns)
}

// scheduleErr maps the store's errors to answers.
func scheduleErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, schedule.ErrNotFound):
		return &httpError{status: http.StatusNotFound, code: "NotFound", msg: err.Error()}
	case errors.Is(err, schedule.ErrExists), errors.Is(err, schedule.ErrState):
		return &httpError{status: http.StatusConflict, code: "Conflict", msg: err.Error()}
	case errors.Is(err, schedule.ErrInvalid), errors.Is(err, schedule.ErrBadCron), errors.Is(err, schedule.ErrTemplate):
		return &httpError{status: http.StatusBadRequest, code: "InvalidSchedule", msg: err.Error()}
	}
	return err
}

// mayChangeSchedule is mayChange's rule for a schedule: its owner or an
// admin (or the shared submit token for an owner no identity is).
func (s *Server) mayChangeSchedule(id identity, sc schedule.Schedule) error {
	if s.owns(id, sc.Owner) {
		return nil
	}
	return forbidden("schedule %s is owned by %s; only its owner or an admin may change it (you are %s)", sc.Name, sc.Owner, id.Name)
}

// mayReadSchedule: its owner, an admin or read identity, or anyone with
// public reads.
func (s *Server) mayReadSchedule(r *http.Request, sc schedule.Schedule) error {
	if s.cfg.Reads() {
		return nil
	}
	id := who(r)
	if id.Role == RoleRead || s.owns(id, sc.Owner) {
		return nil
	}
	return forbidden("schedule %s is owned by %s; you (%s) may read only your own schedules", sc.Name, sc.Owner, id.Name)
}

// checkTemplate renders a schedule's template for its next run and parses
// it against the index's schema, so a template that cannot make a valid
// filter is refused at create time with the rendered text.
func (s *Server) checkTemplate(sc schedule.Schedule) error {
	if !json.Valid(sc.Template) {
		return badRequest("template: not JSON; give the filter template file (a filter whose strings may hold __TARGET_DATE__)")
	}
	c, err := schedule.Parse(sc.Cron, sc.Timezone)
	if err != nil {
		return scheduleErr(fmt.Errorf("%w: --cron: %w", schedule.ErrInvalid, err))
	}
	db, err := s.openIndex()
	if err != nil {
		return err
	}
	_, _, schema, err := db.Source()
	if err != nil {
		return indexErr(err)
	}
	next := c.RunAt(c.Next(s.clock.Now()))
	if _, _, err := schedule.RenderFilter("template", sc.Template, next.Target, c.Location(), schema); err != nil {
		return &httpError{status: http.StatusBadRequest, code: "InvalidTemplate", msg: err.Error()}
	}
	return nil
}

func specToSchedule(in taskdef.ScheduleSpec) (schedule.Schedule, error) {
	sc := schedule.Schedule{
		Name: in.Name, Owner: in.Owner, Cron: in.Cron, Timezone: in.Timezone, Template: in.Template,
		Image: in.Image, Env: in.Env, Catchup: in.Catchup, MaxActive: in.MaxActive,
	}
	if in.ExpectWithin != "" {
		d, err := time.ParseDuration(in.ExpectWithin)
		if err != nil || d <= 0 {
			return sc, badRequest("expectWithin %q: give a positive duration such as 6h or 90m (--expect-within)", in.ExpectWithin)
		}
		sc.ExpectWithin = d
	}
	return sc, nil
}

func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) error {
	var in taskdef.ScheduleSpec
	if err := decode(w, r, maxSmallBody, &in); err != nil {
		return err
	}
	owner, err := s.ownerFor(who(r), in.Owner)
	if err != nil {
		return err
	}
	in.Owner = owner
	sc, err := specToSchedule(in)
	if err != nil {
		return err
	}
	if err := schedule.Check(&sc); err != nil {
		return scheduleErr(err)
	}
	if err := s.checkTemplate(sc); err != nil {
		return err
	}
	sc, err = s.schedules.Create(sc)
	if err != nil {
		return scheduleErr(err)
	}
	s.scheduler.Kick()
	return writeJSON(w, http.StatusOK, s.scheduleStatus(sc))
}

func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) error {
	list, err := s.schedules.List()
	if err != nil {
		return err
	}
	out := taskdef.ScheduleList{Schedules: []taskdef.ScheduleStatus{}}
	for _, sc := range list {
		if s.mayReadSchedule(r, sc) == nil {
			out.Schedules = append(out.Schedules, s.scheduleStatus(sc))
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// readableSchedule loads the path's schedule and checks the caller may
// read it.
func (s *Server) readableSchedule(r *http.Request) (schedule.Schedule, error) {
	sc, err := s.schedules.Get(r.PathValue("name"))
	if err != nil {
		return sc, scheduleErr(err)
	}
	return sc, s.mayReadSchedule(r, sc)
}

func (s *Server) getSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.readableSchedule(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.scheduleStatus(sc))
}

func (s *Server) updateSchedule(w http.ResponseWriter, r *http.Request) error {
	var in taskdef.ScheduleUpdate
	if err := decode(w, r, maxSmallBody, &in); err != nil {
		return err
	}
	old, err := s.schedules.Get(r.PathValue("name"))
	if err != nil {
		return scheduleErr(err)
	}
	if err := s.mayChangeSchedule(who(r), old); err != nil {
		return err
	}
	var expect time.Duration
	if in.ExpectWithin != nil && *in.ExpectWithin != "" {
		if expect, err = time.ParseDuration(*in.ExpectWithin); err != nil || expect <= 0 {
			return badRequest("expectWithin %q: give a positive duration such as 6h (--expect-within)", *in.ExpectWithin)
		}
	}
	apply := func(sc *schedule.Schedule) {
		if in.Cron != nil {
			sc.Cron = *in.Cron
		}
		if in.Timezone != nil {
			sc.Timezone = *in.Timezone
		}
		if in.Template != nil {
			sc.Template = in.Template
		}
		if in.Image != nil {
			sc.Image = *in.Image
		}
		if in.Env != nil {
			sc.Env = in.Env
		}
		if in.Catchup != nil {
			sc.Catchup = *in.Catchup
		}
		if in.MaxActive != nil {
			sc.MaxActive = *in.MaxActive
		}
		if in.ExpectWithin != nil {
			sc.ExpectWithin = expect
		}
	}
	probe := old
	apply(&probe)
	if err := schedule.Check(&probe); err != nil {
		return scheduleErr(err)
	}
	if err := s.checkTemplate(probe); err != nil {
		return err
	}
	sc, err := s.schedules.Update(old.Name, func(sc *schedule.Schedule) error { apply(sc); return nil })
	if err != nil {
		return scheduleErr(err)
	}
	s.scheduler.Kick()
	return writeJSON(w, http.StatusOK, s.scheduleStatus(sc))
}

func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.schedules.Get(r.PathValue("name"))
	if err != nil {
		return scheduleErr(err)
	}
	if err := s.mayChangeSchedule(who(r), sc); err != nil {
		return err
	}
	if err := s.schedules.Delete(sc.Name); err != nil {
		return scheduleErr(err)
	}
	return writeJSON(w, http.StatusOK, s.scheduleStatus(sc))
}

func (s *Server) setScheduleState(to schedule.State) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		sc, err := s.schedules.Get(r.PathValue("name"))
		if err != nil {
			return scheduleErr(err)
		}
		if err := s.mayChangeSchedule(who(r), sc); err != nil {
			return err
		}
		sc, err = s.schedules.SetState(sc.Name, to)
		if err != nil {
			return scheduleErr(err)
		}
		s.scheduler.Kick()
		return writeJSON(w, http.StatusOK, s.scheduleStatus(sc))
	}
}

func (s *Server) backfill(w http.ResponseWriter, r *http.Request) error {
	var in taskdef.BackfillRequest
	if err := decode(w, r, maxSmallBody, &in); err != nil {
		return err
	}
	sc, err := s.schedules.Get(r.PathValue("name"))
	if err != nil {
		return scheduleErr(err)
	}
	if err := s.mayChangeSchedule(who(r), sc); err != nil {
		return err
	}
	c, err := schedule.Parse(sc.Cron, sc.Timezone)
	if err != nil {
		return scheduleErr(err)
	}
	from, err := c.ParseDate(in.From)
	if err != nil {
		return badRequest("from (--from): %v", err)
	}
	to, err := c.ParseDate(in.To)
	if err != nil {
		return badRequest("to (--to): %v", err)
	}
	// --to names a date (or hour): every tick within it is a target.
	if len(strings.Trim(in.To, "-")) <= 10 && !c.SubDaily() {
		to = to.AddDate(0, 0, 1).Add(-time.Nanosecond)
	} else {
		to = to.Add(time.Hour - time.Nanosecond)
	}
	if in.Parallel < 0 {
		return badRequest("parallel (--parallel) %d: give 0 (no bound) or more", in.Parallel)
	}
	limit := s.cfg.Schedules.MaxBackfill
	if limit <= 0 {
		limit = defaultMaxBackfill
	}
	runs, err := s.scheduler.Backfill(sc.Name, from, to, in.Parallel, limit)
	if err != nil {
		return scheduleErr(err)
	}
	out := taskdef.BackfillResponse{Runs: []taskdef.ScheduleRun{}}
	for _, run := range runs {
		out.Runs = append(out.Runs, s.wireRun(r.Context(), c, run))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) scheduleRuns(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.readableSchedule(r)
	if err != nil {
		return err
	}
	c, err := schedule.Parse(sc.Cron, sc.Timezone)
	if err != nil {
		return scheduleErr(err)
	}
	runs, err := s.schedules.Runs(sc.Name)
	if err != nil {
		return scheduleErr(err)
	}
	out := taskdef.ScheduleRuns{Schedule: s.scheduleStatus(sc), Runs: make([]taskdef.ScheduleRun, 0, len(runs))}
	for _, run := range runs {
		out.Runs = append(out.Runs, s.wireRun(r.Context(), c, run))
	}
	return writeJSON(w, http.StatusOK, out)
}

// wireRun is a run record with its graph's state and counts.
func (s *Server) wireRun(ctx context.Context, c *schedule.Cron, run schedule.RunRecord) taskdef.ScheduleRun {
	out := taskdef.ScheduleRun{
		Kind: string(run.Kind), Target: run.Target, Label: c.Label(run.Target), Due: run.Due,
		RunState: string(run.State), Message: run.Message, Alerted: run.Alerted,
	}
	if run.State != schedule.RunLaunched {
		return out
	}
	out.GraphID = run.GraphID
	g, err := s.q.Graph(ctx, run.GraphID)
	if err != nil {
		out.Message = "the graph is gone (expired): " + err.Error()
		return out
	}
	out.GraphState, out.Created, out.Resolved, out.ResultTaskID = g.State, g.Created, g.Resolved, g.ResultTaskID
	for _, t := range g.Tasks {
		if t.Kind == taskdef.KindMapper {
			out.Files += t.InputFiles
			out.Bytes += t.InputBytes
		}
	}
	return out
}

func (s *Server) scheduleStatus(sc schedule.Schedule) taskdef.ScheduleStatus {
	out := taskdef.ScheduleStatus{
		ScheduleSpec: taskdef.ScheduleSpec{
			Name: sc.Name, Owner: sc.Owner, Cron: sc.Cron, Timezone: sc.Timezone, Template: sc.Template,
			Image: sc.Image, Env: sc.Env, Catchup: sc.Catchup, MaxActive: sc.MaxActive,
		},
		State: string(sc.State), Created: sc.Created, Updated: sc.Updated, LastTick: sc.LastTick,
	}
	if sc.ExpectWithin > 0 {
		out.ExpectWithin = sc.ExpectWithin.String()
	}
	if c, err := schedule.Parse(sc.Cron, sc.Timezone); err == nil && sc.State == schedule.Active {
		next := c.Next(sc.LastTick)
		out.NextDue, out.NextTarget = next, c.Prev(next)
	}
	return out
}

// graphSchedule names the schedule run a graph is, for its page's link
// (nil for a graph af submit made).
func (s *Server) graphSchedule(graphID string) *taskdef.GraphSchedule {
	ref, ok := s.schedules.ByGraph(graphID)
	if !ok {
		return nil
	}
	out := &taskdef.GraphSchedule{Name: ref.Schedule, Kind: string(ref.Kind), Target: ref.Target}
	if sc, err := s.schedules.Get(ref.Schedule); err == nil {
		if c, err := schedule.Parse(sc.Cron, sc.Timezone); err == nil {
			out.Label = c.Label(ref.Target)
		}
	}
	return out
}
