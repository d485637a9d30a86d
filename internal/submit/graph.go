// Package submit turns a filter and a job image into a task graph on the
// queue: it finds the input files through the index, mints and seals
// scoped S3 credentials, balances the files into mapper loads, posts the
// graph in one request, and follows it to its result.
package submit

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/af-project/af/internal/partition"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/sdk/contract"
)

// Defaults of a job's graph.
const (
	// DefaultMaxLoadBytes keeps mappers small enough that a day of data
	// spreads over every worker slot (about 5 s of Python per 64 MiB of
	// gzip) while a task's fixed cost (~0.3 s) stays a small share.
	DefaultMaxLoadBytes    int64 = 64 << 20 // compressed input bytes per mapper
	DefaultMaxFilesPerTask       = 500
	DefaultMaxRunTime            = 2 * time.Hour
	DefaultDeadline              = 10 * time.Hour
	DefaultRetries               = 5
)

// GraphOptions describe the graph of one job.
type GraphOptions struct {
	GraphID string // empty: a fresh id
	Name    string
	Owner   string
	// Priority is the graph's (empty: normal); its tasks take it.
	Priority taskdef.Priority
	Image    string

	Bucket string
	Prefix string
	Schema []string
	// Layout is where Schema's dimensions live (layout.Schema.Layout).
	Layout string
	Files  []taskdef.InputFile
	// ETags, when set, are Files' versions in the same order (unquoted):
	// each mapper carries its files' as Payload.InputETags, so the
	// workers read those versions and no other.
	ETags []string
	// Loads, when set, is how many of Files (in order) each mapper reads,
	// instead of balancing them: af resubmit makes the same mappers again.
	Loads []int

	MaxLoadBytes    int64
	MaxFilesPerTask int
	// Env reaches every task's container (OWNER and INPUT_TASK_IDS are
	// set by BuildGraph; CREDENTIALS is refused here).
	Env map[string]string
	// SealedCredentials is the base64 sealed box for the mappers; only
	// mappers get it (the reducer reads through the queue).
	SealedCredentials string
	MaxRunTime        time.Duration
	Deadline          time.Duration // from Now
	Retries           int
	Limits            taskdef.Limits
	Now               time.Time
}

// BuildGraph makes the mapper tasks (one per balanced load) and the reducer
// that depends on them all.
func BuildGraph(o GraphOptions) (taskdef.Graph, error) {
	if len(o.Files) == 0 {
		return taskdef.Graph{}, errors.New("no input files: the filter selects nothing")
	}
	if o.Image == "" {
		return taskdef.Graph{}, errors.New("no image")
	}
	if err := CheckEnv(o.Env); err != nil {
		return taskdef.Graph{}, err
	}
	if len(o.ETags) != 0 && len(o.ETags) != len(o.Files) {
		return taskdef.Graph{}, fmt.Errorf("%d ETags for %d input files: give one per file, in the same order", len(o.ETags), len(o.Files))
	}
	o = o.withDefaults()
	now := o.Now.UTC().Truncate(time.Millisecond)
	deadline := now.Add(o.Deadline)
	// Artifacts outlive the deadline by a week so results can be fetched
	// after a job that ran to its deadline.
	expires := deadline.Add(7 * 24 * time.Hour)

	loads, err := o.loads()
	if err != nil {
		return taskdef.Graph{}, err
	}
	var etags map[string]string
	for i, tag := range o.ETags {
		if tag == "" {
			continue
		}
		if etags == nil {
			etags = make(map[string]string, len(o.ETags))
		}
		etags[o.Files[i].Key] = tag
	}
	g := taskdef.Graph{GraphID: o.GraphID, Name: o.Name, Owner: o.Owner, Priority: o.Priority}
	base := func(kind taskdef.Kind, name string) taskdef.Task {
		env := make(map[string]string, len(o.Env)+2)
		for k, v := range o.Env {
			env[k] = v
		}
		if o.Owner != "" {
			env[taskdef.EnvOwner] = o.Owner
		}
		return taskdef.Task{
			GraphID: o.GraphID, Retries: o.Retries, Created: now, Deadline: deadline, Expires: expires,
			Metadata: taskdef.Metadata{Name: name, Owner: o.Owner, Description: fmt.Sprintf("%s of job %q", kind, o.Name), Source: "af submit"},
			Payload: taskdef.Payload{
				Kind: kind, Image: o.Image, Env: env, MaxRunTime: int(o.MaxRunTime / time.Second), Limits: o.Limits,
			},
		}
	}
	ids := make([]string, len(loads))
	width := len(fmt.Sprint(len(loads)))
	for i, load := range loads {
		t := base(taskdef.KindMapper, fmt.Sprintf("mapper %0*d/%d", width, i+1, len(loads)))
		// Largest first: a mapper starts on its biggest file while the
		// others download.
		sort.SliceStable(load, func(a, b int) bool { return load[a].Size > load[b].Size })
		t.Payload.Inputs = load
		if etags != nil {
			tags := make([]string, len(load))
			for j, in := range load {
				tags[j] = etags[in.Key]
			}
			t.Payload.InputETags = taskdef.JoinETags(tags)
		}
		t.Payload.Bucket, t.Payload.Prefix, t.Payload.Schema, t.Payload.Layout = o.Bucket, o.Prefix, o.Schema, o.Layout
		if o.SealedCredentials != "" {
			t.Payload.Env[taskdef.EnvCredentials] = o.SealedCredentials
		}
		ids[i] = taskdef.NewID()
		g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: ids[i], Task: t})
	}
	r := base(taskdef.KindReducer, "reducer")
	r.Dependencies = ids
	r.Requires = taskdef.RequiresAllCompleted
	r.Payload.Env[taskdef.EnvInputTaskIDs] = strings.Join(ids, " ")
	g.Tasks = append(g.Tasks, taskdef.GraphTask{TaskID: taskdef.NewID(), Task: r})
	return g, nil
}

// loads splits Files into the mappers' loads: as Loads says, or balanced.
func (o GraphOptions) loads() ([][]taskdef.InputFile, error) {
	if len(o.Loads) == 0 {
		return partition.Balance(o.Files, o.MaxLoadBytes, o.MaxFilesPerTask), nil
	}
	out := make([][]taskdef.InputFile, 0, len(o.Loads))
	rest := o.Files
	for i, n := range o.Loads {
		if n <= 0 || n > len(rest) {
			return nil, fmt.Errorf("load %d reads %d files, and %d of the %d input files are left: the loads must split the files exactly", i, n, len(rest), len(o.Files))
		}
		out = append(out, slices.Clone(rest[:n]))
		rest = rest[n:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("the loads read %d of the %d input files: they must split the files exactly", len(o.Files)-len(rest), len(o.Files))
	}
	return out, nil
}

// withDefaults fills the options left zero with the defaults.
func (o GraphOptions) withDefaults() GraphOptions {
	if o.MaxLoadBytes <= 0 {
		o.MaxLoadBytes = DefaultMaxLoadBytes
	}
	if o.MaxFilesPerTask <= 0 {
		o.MaxFilesPerTask = DefaultMaxFilesPerTask
	}
	if o.MaxRunTime <= 0 {
		o.MaxRunTime = DefaultMaxRunTime
	}
	if o.Deadline <= 0 {
		o.Deadline = DefaultDeadline
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.GraphID == "" {
		o.GraphID = taskdef.NewID()
	}
	if o.Name == "" {
		o.Name = o.Image
	}
	return o
}

// Summary counts what a graph reads.
func Summary(g taskdef.Graph) (mappers int, files int, bytes int64) {
	for _, t := range g.Tasks {
		if t.Task.Payload.Kind == taskdef.KindMapper {
			mappers++
			files += len(t.Task.Payload.Inputs)
			for _, in := range t.Task.Payload.Inputs {
				bytes += in.Size
			}
		}
	}
	return mappers, files, bytes
}

// CheckEnv refuses --env variables that af or the worker sets: the
// worker would refuse every task that carries the container contract's
// names, so it is said before anything is minted or posted.
func CheckEnv(env map[string]string) error {
	for k := range env {
		switch up := strings.ToUpper(k); up {
		case taskdef.EnvCredentials, taskdef.EnvOwner, taskdef.EnvInputTaskIDs:
			return fmt.Errorf("--env %s: af sets %s itself; remove --env %s", k, up, k)
		case contract.EnvInput, contract.EnvOutput, contract.EnvTaskKind:
			return fmt.Errorf("--env %s: the worker sets %s for the job's container (see images/README.md); remove --env %s and read it in the job", k, up, k)
		}
	}
	return nil
}
