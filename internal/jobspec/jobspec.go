// Package jobspec reads a job image's /etc/analysis-tools.yml, which says
// how to run the analyst's code, and holds the names of the container
// contract that the worker, the runner and the job helpers share.
//
// # analysis-tools.yml
//
//	language: python            # python | go | binary
//	mapper: /job/job.py         # python: a module file; go/binary: an executable
//	reducer: /job/job.py        # optional; defaults to mapper
//	combine: auto               # python: auto (use combine() if the module has one),
//	                            # true (require it), false (never), or a module file
//	decompress: auto            # auto: by file extension; none: pass files through as stored
//	arguments: []               # extra arguments, see Command
//	max_bad_files: 0            # missing or corrupt input files a mapper tolerates
//	max_bad_line_ratio: 1.0     # bad lines / lines above which a mapper fails
//
// Relative mapper, reducer and combine paths are resolved under /job.
// The defaults are those of telemetry-server: any corrupt or missing file
// fails the task (max_bad_files: 0), bad lines are skipped and counted
// (max_bad_line_ratio: 1.0 never fails on them).
//
// The original Analysis Framework's form is accepted too:
//
//	language: python
//	script: "mapper.py"         # resolved under /home/worker, as AF did
//	arguments: []
//
// It runs the script's `mapper(uuid, file, json)` (which returns "key value"
// lines) and, when present, `reduce(key, values)` through the same helper.
//
// # The container contract
//
// The container runs Command(kind) with the scratch dir bind-mounted
// read-write at ScratchDir, a read-only root filesystem and a tmpfs /tmp.
// EnvInput names where the records arrive (a FIFO in the scratch dir, or "-"
// for stdin) in the framed format of internal/records for a mapper, or as
// sorted `<json key>\t<json value>` lines for a reducer; EnvOutput names the
// file to write `<json key>\t<json value>` lines to (the reducer writes the
// job's result, in whatever text form its context produces); EnvTaskKind is
// TaskMap or TaskReduce. The task's own environment variables are passed as
// well.
package jobspec

import (
	"errors"
	"fmt"
	"math"
	"path"
	"strconv"
	"strings"

	"github.com/af-project/af/internal/taskdef"
	"gopkg.in/yaml.v3"

	"github.com/af-project/af/sdk/contract"
)

// Path is where a job image keeps its spec.
const Path = "/etc/analysis-tools.yml"

// The container contract's names, shared by the worker, the runner and the
// helpers. They are defined in sdk/contract, which the Go SDK imports
// without this package's YAML parsing.
const (
	EnvInput    = contract.EnvInput
	EnvOutput   = contract.EnvOutput
	EnvTaskKind = contract.EnvTaskKind
	ScratchDir  = contract.ScratchDir
	InputFIFO   = contract.InputFIFO
	OutputFile  = contract.OutputFile
	StdinInput  = contract.StdinInput
	TaskMap     = contract.TaskMap
	TaskReduce  = contract.TaskReduce
	// UserID is the non-root user job containers run as (the af user of
	// the base image).
	UserID = "10001:10001"
)

// JobDir resolves relative mapper/reducer paths; AFWorkerDir resolves the
// original form's script, where AF's base image kept it.
const (
	JobDir      = "/job"
	AFWorkerDir = "/home/worker"
)

// Language is how the mapper and reducer run.
type Language string

// The languages.
const (
	Python Language = "python"
	Go     Language = "go"
	Binary Language = "binary"
)

// Decompress says whether the worker decompresses inputs.
type Decompress string

// The decompress modes.
const (
	DecompressAuto Decompress = "auto"
	DecompressNone Decompress = "none"
)

// Combine modes for Python jobs; any other value is a module file.
const (
	CombineAuto  = "auto"
	CombineTrue  = "true"
	CombineFalse = "false"
)

// Spec is a parsed, validated analysis-tools.yml.
type Spec struct {
	Language Language
	Mapper   string
	Reducer  string
	// Combine is CombineAuto, CombineTrue, CombineFalse or a module path.
	Combine    string
	Decompress Decompress
	Arguments  []string
	// MaxBadFiles is how many missing or corrupt input files a mapper
	// tolerates before it fails.
	MaxBadFiles int
	// MaxBadLineRatio is the share of bad lines above which a mapper
	// fails; 1 never fails on bad lines.
	MaxBadLineRatio float64
	// Original is set for AF's original form (script:).
	Original bool
}

type raw struct {
	Language        string    `yaml:"language"`
	Mapper          string    `yaml:"mapper"`
	Reducer         string    `yaml:"reducer"`
	Combine         yaml.Node `yaml:"combine"`
	Decompress      string    `yaml:"decompress"`
	Arguments       []string  `yaml:"arguments"`
	MaxBadFiles     *int      `yaml:"max_bad_files"`
	MaxBadLineRatio *float64  `yaml:"max_bad_line_ratio"`
	Script          string    `yaml:"script"`
}

// Parse reads a spec; name (usually Path) labels errors.
func Parse(name string, data []byte) (Spec, error) {
	fail := func(format string, a ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("%s: "+format, append([]any{name}, a...)...)
	}
	var r raw
	lines, err := decodeRaw(data, &r)
	// at names a key's line, for an error about its value.
	at := func(key string) string {
		if n, ok := lines[key]; ok {
			return fmt.Sprintf("line %d: ", n)
		}
		return ""
	}
	if err != nil {
		if errors.Is(err, errEmpty) {
			return fail("empty file; write at least `language: python` and `mapper: /job/job.py`")
		}
		return fail("%v", err)
	}
	s := Spec{
		Language:        Language(strings.ToLower(strings.TrimSpace(r.Language))),
		Decompress:      DecompressAuto,
		Arguments:       r.Arguments,
		MaxBadLineRatio: 1,
		Combine:         CombineAuto,
	}
	switch s.Language {
	case Python, Go, Binary:
	case "":
		return fail("key language is missing; add a line language: python (or go, or binary)")
	default:
		return fail("%skey language: %q is not one of python, go, binary; set language: python for a module file, go for an afjob binary, binary for any other executable", at("language"), r.Language)
	}
	if r.Script != "" {
		if r.Mapper != "" || r.Reducer != "" {
			return fail("%skeys script and mapper/reducer are both set; use mapper and reducer (script is AF's original form)", at("script"))
		}
		if s.Language != Python {
			return fail("%skey script (AF's original form) needs language: python; for %s use mapper and reducer", at("script"), s.Language)
		}
		s.Original = true
		s.Mapper = resolve(AFWorkerDir, r.Script)
		s.Reducer = s.Mapper
	} else {
		if strings.TrimSpace(r.Mapper) == "" {
			return fail("key mapper is missing; add a line mapper: with the job's %s", map[Language]string{Python: "module file, e.g. /job/job.py", Go: "binary, e.g. /job/job", Binary: "executable"}[s.Language])
		}
		s.Mapper = resolve(JobDir, r.Mapper)
		s.Reducer = s.Mapper
		if strings.TrimSpace(r.Reducer) != "" {
			s.Reducer = resolve(JobDir, r.Reducer)
		}
	}
	if !r.Combine.IsZero() {
		if r.Combine.Kind != yaml.ScalarNode {
			return fail("line %d: key combine: want auto, true, false or a module file", r.Combine.Line)
		}
		v := strings.TrimSpace(r.Combine.Value)
		if b, err := strconv.ParseBool(v); err == nil && r.Combine.Tag == "!!bool" {
			v = strconv.FormatBool(b)
		}
		switch v {
		case CombineAuto, CombineTrue, CombineFalse:
			s.Combine = v
		case "":
			return fail("%skey combine is empty; want auto, true, false or a module file", at("combine"))
		default:
			s.Combine = resolve(JobDir, v)
		}
		if s.Language != Python && s.Combine != CombineAuto && s.Combine != CombineFalse {
			return fail("%skey combine applies to language: python only; a %s job combines in its own code: remove combine", at("combine"), s.Language)
		}
	}
	switch d := Decompress(strings.ToLower(strings.TrimSpace(r.Decompress))); d {
	case "", DecompressAuto:
	case DecompressNone, "false", "no":
		s.Decompress = DecompressNone
	default:
		return fail("%skey decompress: %q is not auto or none", at("decompress"), r.Decompress)
	}
	if r.MaxBadFiles != nil {
		if *r.MaxBadFiles < 0 {
			return fail("%skey max_bad_files: %d is negative; use 0 to fail on the first corrupt or missing file", at("max_bad_files"), *r.MaxBadFiles)
		}
		s.MaxBadFiles = *r.MaxBadFiles
	}
	if r.MaxBadLineRatio != nil {
		v := *r.MaxBadLineRatio
		if math.IsNaN(v) || v < 0 || v > 1 {
			return fail("%skey max_bad_line_ratio: %v is not between 0 and 1 (1 never fails on bad lines)", at("max_bad_line_ratio"), v)
		}
		s.MaxBadLineRatio = v
	}
	for i, a := range s.Arguments {
		if strings.ContainsRune(a, 0) {
			return fail("%skey arguments[%d] contains a NUL byte", at("arguments"), i)
		}
	}
	for _, p := range []string{s.Mapper, s.Reducer, s.Combine} {
		if strings.ContainsRune(p, 0) {
			return fail("a path contains a NUL byte")
		}
	}
	return s, nil
}

func resolve(dir, p string) string {
	p = strings.TrimSpace(p)
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	return path.Join(dir, p)
}

// Command is what the container runs for a task of this kind.
//
//	python:  python3 -m af_helper map|reduce [--af-original] [--combine auto|true|false|FILE] FILE [arguments...]
//	go:      MAPPER map [arguments...]   /  REDUCER reduce [arguments...]
//	binary:  MAPPER [arguments...]       /  REDUCER [arguments...]   (EnvTaskKind says which)
func (s Spec) Command(kind taskdef.Kind) []string {
	task, file := TaskMap, s.Mapper
	if kind == taskdef.KindReducer {
		task, file = TaskReduce, s.Reducer
	}
	var cmd []string
	switch s.Language {
	case Python:
		cmd = []string{"python3", "-m", "af_helper", task}
		if s.Original {
			cmd = append(cmd, "--af-original")
		}
		if s.Combine != CombineAuto {
			cmd = append(cmd, "--combine", s.Combine)
		}
		cmd = append(cmd, file)
	case Go:
		cmd = []string{file, task}
	default:
		cmd = []string{file}
	}
	return append(cmd, s.Arguments...)
}

// TooManyBadFiles reports whether bad (missing or corrupt) files fail the
// task.
func (s Spec) TooManyBadFiles(bad int) bool { return bad > s.MaxBadFiles }

// TooManyBadLines reports whether bad lines out of lines fail the task.
func (s Spec) TooManyBadLines(bad, lines int64) bool {
	if bad == 0 || lines == 0 {
		return false
	}
	return float64(bad)/float64(lines) > s.MaxBadLineRatio
}
