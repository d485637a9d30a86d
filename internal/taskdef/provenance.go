package taskdef

import (
	"encoding/json"
	"time"
)

// Provenance is what a graph was made from, recorded by whoever made it
// (af submit, af resubmit, a schedule) just after the graph:
// PUT /api/v1/graphs/{id}/provenance, once; GET reads it for anyone who
// may read the graph. With it `af resubmit GRAPH` runs exactly the same
// job again: the same pinned image, the same input files at the same
// versions (ETags), the same env and job options. It is kept apart from
// the graph so the graph's own create stays as lean as it was, and is
// deleted with the graph; its input list is the graph's own (see Inputs).
type Provenance struct {
	GraphID string `json:"graphId"`
	// MadeBy is "af submit", "af resubmit" or "schedule".
	MadeBy  string    `json:"madeBy"`
	Created time.Time `json:"created"`
	// AfVersion is the maker's af version.
	AfVersion string `json:"afVersion,omitempty"`
	// ResubmitOf is the graph this one runs again (af resubmit).
	ResubmitOf string `json:"resubmitOf,omitempty"`

	// Image is how the job image was pinned: every task runs Image.Ref.
	Image ImageRecord `json:"image"`
	// JobSpec is the image's /etc/analysis-tools.yml as af submit read it
	// (empty when the maker had no Docker engine to read it with; the
	// pinned image holds it either way).
	JobSpec string `json:"jobSpec,omitempty"`

	// FilterName names the filter (its path, or the schedule's template).
	FilterName string `json:"filterName,omitempty"`
	// Filter is the filter as given: the file, or the schedule's template
	// with its placeholders.
	Filter json.RawMessage `json:"filter"`
	// Rendered is the filter the index was queried with: the template
	// rendered for the run's target, else the same as Filter.
	Rendered json.RawMessage `json:"rendered"`
	// Schedule and Target say which run of which schedule this is.
	Schedule string     `json:"schedule,omitempty"`
	Target   *time.Time `json:"target,omitempty"`

	// Job is the options the graph was built with.
	Job JobOptions `json:"job"`
	// Env is the job's --env (without what af sets itself).
	Env map[string]string `json:"env,omitempty"`

	// Bucket, Prefix, Schema and Layout are the index's source, as in
	// Payload.
	Bucket string   `json:"bucket"`
	Prefix string   `json:"prefix"`
	Schema []string `json:"schema,omitempty"`
	Layout string   `json:"layout,omitempty"`
	// Inputs are every file the mappers read, mapper by mapper, and
	// ETags (the same order, unquoted; "" for none) each file's version
	// when it was selected; Loads is how many of them each mapper reads.
	// The server fills the three on GET from the graph's mapper tasks,
	// which carry them already (Payload.Inputs, Payload.InputETags): a
	// PUT sends none, so recording a graph costs a few kilobytes however
	// many files it reads.
	Inputs []InputFile `json:"inputs,omitempty"`
	ETags  []string    `json:"etags,omitempty"`
	Loads  []int       `json:"loads,omitempty"`
}

// ImageRecord is how a job image was pinned (submit.ImagePin on the wire).
type ImageRecord struct {
	// Asked is the image as given; Ref what every task runs.
	Asked string `json:"asked"`
	Ref   string `json:"ref"`
	// Source is registry, digest, repo-digest, image-id or unpinned.
	Source string `json:"source"`
}

// JobOptions are the flags that shaped a graph besides its inputs.
type JobOptions struct {
	Name            string   `json:"name"`
	Owner           string   `json:"owner,omitempty"`
	Priority        Priority `json:"priority,omitempty"`
	MaxLoadBytes    int64    `json:"maxLoadBytes,omitempty"`
	MaxFilesPerTask int      `json:"maxFilesPerTask,omitempty"`
	// MaxRunTime and Deadline are in seconds.
	MaxRunTime int    `json:"maxRunTime,omitempty"`
	Deadline   int    `json:"deadline,omitempty"`
	Retries    int    `json:"retries,omitempty"`
	Limits     Limits `json:"limits,omitzero"`
}
