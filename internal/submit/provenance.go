package submit

// This file: what a graph is made from (taskdef.Provenance), and `af
// resubmit`, which makes the same graph again from it.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/version"
)

// Record is the pin as a provenance record keeps it.
func (p ImagePin) Record() taskdef.ImageRecord {
	return taskdef.ImageRecord{Asked: p.Asked, Ref: p.Ref, Source: p.Source}
}

// RecordOf completes prov (who made the graph, the image, the filter) with
// what BuildGraph made the graph from: o, with its GraphID set, as given
// to BuildGraph; the defaults o left zero are recorded as the values used.
// The input files are left out: the graph's mappers carry them, and af
// serve adds them to the record it answers.
func RecordOf(prov taskdef.Provenance, o GraphOptions) taskdef.Provenance {
	o = o.withDefaults()
	prov.GraphID = o.GraphID
	prov.Created = o.Now.UTC().Truncate(time.Millisecond)
	if prov.AfVersion == "" {
		prov.AfVersion = version.Get().Version
	}
	prov.Job = taskdef.JobOptions{
		Name: o.Name, Owner: o.Owner, Priority: o.Priority, MaxLoadBytes: o.MaxLoadBytes, MaxFilesPerTask: o.MaxFilesPerTask,
		MaxRunTime: int(o.MaxRunTime / time.Second), Deadline: int(o.Deadline / time.Second), Retries: o.Retries, Limits: o.Limits,
	}
	prov.Env = o.Env
	prov.Bucket, prov.Prefix, prov.Schema, prov.Layout = o.Bucket, o.Prefix, o.Schema, o.Layout
	// The inputs are the graph's own tasks' (af serve adds them on GET).
	prov.Inputs, prov.ETags, prov.Loads = nil, nil, nil
	return prov
}

// ResubmitRequest is one `af resubmit`: the graph to run again and what
// may differ (who owns the new graph, its name and priority, and the
// credentials' settings, which are minted afresh).
type ResubmitRequest struct {
	// Of is the graph's provenance (GET /api/v1/graphs/{id}/provenance).
	Of taskdef.Provenance
	// Name, Owner and Priority replace the original's when set; an empty
	// Owner is the caller's identity, as for af submit.
	Name     string
	Owner    string
	Priority taskdef.Priority

	IndexDB string

	CredentialOptions
}

// ErrInputsChanged is a resubmission refused because the inputs are no
// longer what the graph read; InputsChangedError says which.
var ErrInputsChanged = errors.New("the inputs changed")

// InputsChangedError lists the recorded inputs that are gone or were
// rewritten since the graph was made.
type InputsChangedError struct {
	GraphID        string
	Gone, Changed  []string
	Total          int
	Bucket, Prefix string
}

func (e *InputsChangedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "graph %s cannot run exactly again: of its %d input files in s3://%s/%s", e.GraphID, e.Total, e.Bucket, e.Prefix)
	var parts []string
	if n := len(e.Gone); n == 1 {
		parts = append(parts, fmt.Sprintf(" 1 is gone (%s)", e.Gone[0]))
	} else if n > 1 {
		parts = append(parts, fmt.Sprintf(" %d are gone (%s)", n, firstFew(e.Gone)))
	}
	if n := len(e.Changed); n == 1 {
		parts = append(parts, fmt.Sprintf(" 1 was rewritten (its ETag or size differs: %s)", e.Changed[0]))
	} else if n > 1 {
		parts = append(parts, fmt.Sprintf(" %d were rewritten (their ETag or size differs: %s)", n, firstFew(e.Changed)))
	}
	b.WriteString(strings.Join(parts, " and"))
	b.WriteString(", as the index has them now. af resubmit reads only the files the graph read, at the versions it read; run the filter again with af submit (the filter is in `af provenance GRAPH`) to process the data as it is now, or refresh the index (af index build) if it is out of date")
	return b.String()
}

func (e *InputsChangedError) Unwrap() []error { return []error{ErrInputsChanged, ErrInput} }

func firstFew(keys []string) string {
	const n = 3
	if len(keys) <= n {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:n], ", ") + fmt.Sprintf(", and %d more", len(keys)-n)
}

// Replan plans the graph r.Of describes again, as a new graph: the same
// pinned image, the same input files at the same versions, env and job
// options, with fresh credentials sealed to the new graph. The inputs are
// checked against the index first (by the filter as it was rendered):
// a file gone or rewritten since refuses the resubmission with an
// *InputsChangedError, and the tasks pin every file's ETag, so a file
// rewritten after this check fails its task instead of being read.
func (s *Submitter) Replan(ctx context.Context, r ResubmitRequest) (Plan, error) {
	p := r.Of
	switch {
	case len(p.Inputs) == 0:
		return Plan{}, fmt.Errorf("graph %s's record lists no input files; it cannot be resubmitted", p.GraphID)
	case len(p.ETags) != 0 && len(p.ETags) != len(p.Inputs):
		return Plan{}, fmt.Errorf("graph %s's record has %d ETags for %d input files; it is damaged and cannot be resubmitted", p.GraphID, len(p.ETags), len(p.Inputs))
	case sum(p.Loads) != len(p.Inputs):
		return Plan{}, fmt.Errorf("graph %s's record splits %d of its %d input files into mappers; it is damaged and cannot be resubmitted", p.GraphID, sum(p.Loads), len(p.Inputs))
	case p.Image.Ref == "":
		return Plan{}, fmt.Errorf("graph %s's record names no image; it cannot be resubmitted", p.GraphID)
	case p.Image.Source == "unpinned":
		return Plan{}, InputError(fmt.Errorf("graph %s ran image %s unpinned (it was submitted with --no-image-check), so which build it ran is not known: submit it again with af submit to run the image as it is now", p.GraphID, p.Image.Ref))
	}
	pin := ImagePin{Asked: p.Image.Asked, Ref: p.Image.Ref, Source: p.Image.Source,
		Note: fmt.Sprintf("image %s is pinned as graph %s ran it: %s", p.Image.Asked, p.GraphID, p.Image.Ref)}
	if p.Image.Source == "image-id" || p.Image.Source == "repo-digest" {
		// Only this host's engine can say whether it still holds it.
		if err := s.checkImage(ctx, p.Image.Ref); err != nil {
			return Plan{}, fmt.Errorf("graph %s ran image %s (%s): %w", p.GraphID, p.Image.Asked, p.Image.Ref, err)
		}
	}
	t0 := s.now()
	if err := s.checkInputs(ctx, p, r.IndexDB); err != nil {
		return Plan{}, err
	}
	prio := p.Job.Priority
	if r.Priority != "" {
		prio = r.Priority
	}
	name := p.Job.Name
	if r.Name != "" {
		name = r.Name
	}
	req := Request{
		Image: p.Image.Ref, Name: name, Owner: r.Owner, Priority: prio, Env: p.Env,
		MaxLoadBytes: p.Job.MaxLoadBytes, MaxFilesPerTask: p.Job.MaxFilesPerTask,
		MaxRunTime: time.Duration(p.Job.MaxRunTime) * time.Second, Deadline: time.Duration(p.Job.Deadline) * time.Second,
		Retries: p.Job.Retries, Limits: p.Job.Limits, CredentialOptions: r.CredentialOptions,
	}
	req.loads = p.Loads // the same mappers, each over the same files
	res := taskdef.IndexResult{Bucket: p.Bucket, Prefix: p.Prefix, Schema: p.Schema, Layout: p.Layout, Objects: p.Inputs, ETags: p.ETags}
	again := taskdef.Provenance{
		MadeBy: "af resubmit", ResubmitOf: p.GraphID, Image: p.Image, JobSpec: p.JobSpec,
		FilterName: p.FilterName, Filter: p.Filter, Rendered: p.Rendered, Schedule: p.Schedule, Target: p.Target,
	}
	return s.assemble(ctx, req, pin, res, p.Schema, t0, again)
}

// checkInputs queries the index with the filter as it was rendered and
// checks that every recorded input is still there, at its recorded
// version (and size, where no ETag was recorded).
func (s *Submitter) checkInputs(ctx context.Context, p taskdef.Provenance, indexDB string) error {
	now, _, err := s.query(ctx, Request{FilterName: "the filter graph " + p.GraphID + " was made with", FilterJSON: p.Rendered, IndexDB: indexDB})
	if err != nil {
		return fmt.Errorf("check graph %s's inputs against the index: %w", p.GraphID, err)
	}
	if now.Bucket != p.Bucket || now.Prefix != p.Prefix {
		return InputError(fmt.Errorf("graph %s read s3://%s/%s, and the index now holds s3://%s/%s: its inputs cannot be checked, so it cannot run exactly again", p.GraphID, p.Bucket, p.Prefix, now.Bucket, now.Prefix))
	}
	type version struct {
		size int64
		etag string
	}
	have := make(map[string]version, len(now.Objects))
	for i, o := range now.Objects {
		v := version{size: o.Size}
		if i < len(now.ETags) {
			v.etag = now.ETags[i]
		}
		have[o.Key] = v
	}
	e := &InputsChangedError{GraphID: p.GraphID, Total: len(p.Inputs), Bucket: p.Bucket, Prefix: p.Prefix}
	for i, in := range p.Inputs {
		v, ok := have[in.Key]
		var was string
		if i < len(p.ETags) {
			was = p.ETags[i]
		}
		switch {
		case !ok:
			e.Gone = append(e.Gone, in.Key)
		case was != "" && v.etag != "" && was != v.etag, v.size != in.Size:
			e.Changed = append(e.Changed, in.Key)
		}
	}
	if len(e.Gone)+len(e.Changed) > 0 {
		return e
	}
	return nil
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}
