// Package runner runs one task's job container on the local Docker engine:
// it builds a locked-down container configuration, feeds the container its
// input (over an attached stdin or a FIFO in the task's scratch dir),
// streams its stdout and stderr into the task's live log with a size bound,
// enforces maxRunTime, and tells the job's own failure (exit code, OOM,
// timeout) apart from an infrastructure exception (image missing, daemon
// error). It always removes the container it made, reaps containers an
// earlier worker process left behind, and removes any worker's containers
// that outlived their deadline (see ReapExpired).
package runner

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/taskdef"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
)

// Container contract, as internal/jobspec defines it for the job helpers.
const (
	// EnvInput is the path the helper reads its records from: the FIFO's
	// path inside the container, or "-" for stdin.
	EnvInput = jobspec.EnvInput
	// EnvOutput is the path of the file the helper writes its key/value
	// lines to.
	EnvOutput = jobspec.EnvOutput
	// EnvTaskKind is jobspec.TaskMap or jobspec.TaskReduce.
	EnvTaskKind = jobspec.EnvTaskKind
	// ScratchMount is where the task's scratch dir appears in the container,
	// the only writable place besides the /tmp tmpfs.
	ScratchMount = jobspec.ScratchDir
	// JobMount is where a Spec's JobDir appears, read-only: the image's
	// job directory (jobspec.JobDir), whose paths analysis-tools.yml names.
	JobMount = jobspec.JobDir
	// InputFIFOName is the FIFO's name inside the scratch dir
	// (jobspec.InputFIFO in the container).
	InputFIFOName = "input"
	// OutputName is the output file's name inside the scratch dir
	// (jobspec.OutputFile in the container).
	OutputName = "output"
	// StdinInput is EnvInput's value when the records come on stdin.
	StdinInput = jobspec.StdinInput
)

// Labels on every container the runner creates. ReapOrphans finds its
// leftovers by them, and people find a task's container with
// `docker ps --filter label=af.task-id=...`.
const (
	LabelManaged  = "af.managed"
	LabelTaskID   = "af.task-id"
	LabelRunID    = "af.run-id"
	LabelWorkerID = "af.worker-id"
	LabelTaskKind = "af.task-kind"
	// LabelDeadline is when the container's maxRunTime ends (Spec.Deadline,
	// RFC 3339 in UTC, by the host's wall clock). Any worker on the host
	// removes an af container once this label, plus a grace, is past,
	// whichever worker made it: see ReapExpired. Containers without it
	// (made by older workers, or with no maxRunTime) are left to
	// ReapOrphans of their own worker id.
	LabelDeadline = "af.deadline"
)

// Worker defaults for limits a task leaves at zero.
const (
	DefaultMemoryBytes int64   = 2 << 30
	DefaultCPUs        float64 = 1
	DefaultPids        int64   = 256
	// DefaultUser is the numeric user the job runs as: numeric so it needs
	// no passwd entry in the image, high so it matches no host account.
	DefaultUser = jobspec.UserID
	// TmpfsOptions bounds /tmp: noexec so a job cannot drop and run a
	// binary there, sized so it cannot eat the worker's RAM.
	TmpfsOptions = "rw,noexec,nosuid,nodev,size=64m"
	// minMemoryBytes is Docker's own lower bound; below it create fails
	// with a less helpful message.
	minMemoryBytes = 6 << 20
	// maxCPUs keeps NanoCPUs far from overflow; the runner caps a task's
	// CPUs to the host's anyway.
	maxCPUs = 4096
	// MaxPids is the largest pids limit the kernel takes (PID_MAX_LIMIT
	// on 64-bit Linux): above it writing pids.max fails with EINVAL, and
	// the OCI runtime fails the container's start with a message that
	// names a cgroup file rather than the task's limit.
	MaxPids int64 = 4 << 20
)

// InputMode says how the worker feeds records to the container.
type InputMode int

const (
	// InputNone: the container gets no input (stdin is closed).
	InputNone InputMode = iota
	// InputStdin: the runner attaches to the container's stdin and copies
	// Streams.Stdin into it; the bytes pass through the Docker daemon.
	InputStdin
	// InputFIFO: the runner writes Streams.Stdin into the FIFO that
	// PrepareScratch made in the scratch dir; the bytes never touch the
	// daemon.
	InputFIFO
)

func (m InputMode) String() string {
	switch m {
	case InputNone:
		return "none"
	case InputStdin:
		return "stdin"
	case InputFIFO:
		return "fifo"
	}
	return "InputMode(" + strconv.Itoa(int(m)) + ")"
}

// Spec is everything needed to run one task's container.
type Spec struct {
	TaskID   string
	RunID    int
	WorkerID string
	Kind     taskdef.Kind
	// Image must already be on this worker (PullImage fetches one first).
	Image string
	// Entrypoint and Cmd override the image's when non-empty; the worker
	// derives them from the image's analysis-tools.yml.
	Entrypoint []string
	Cmd        []string
	// Env is the task payload's environment. CREDENTIALS is dropped (the
	// worker consumes it); anything else that looks like a secret makes
	// ContainerConfig refuse the task.
	Env map[string]string
	// ScratchDir is the host directory mounted read-write at /scratch; see
	// PrepareScratch.
	ScratchDir string
	// JobDir, when set, is a host directory (absolute) mounted read-only
	// at /job in place of the image's own: `af run --local --job-dir`, so
	// an analyst's edit to job.py runs without a docker build. A worker
	// never sets it: on the cluster /job is the image's.
	JobDir string
	Input  InputMode
	// User is "uid:gid", numeric; empty means DefaultUser. Root is refused.
	User string
	// Limits are the task's; zeros take the Default* values.
	Limits taskdef.Limits
	// MaxRunTime is the container's wall-clock limit; the runner kills the
	// container when it expires. Zero means no limit.
	MaxRunTime time.Duration
	// Deadline is when MaxRunTime ends, by the host's wall clock; it goes
	// into the LabelDeadline label so that other workers can remove the
	// container should this one die. Run sets it (now + MaxRunTime) when
	// it is zero and MaxRunTime is set; zero means no label.
	Deadline time.Time
	// ScratchLimit is the most the job may store in ScratchDir, in bytes
	// (the worker's --max-scratch-bytes); zero means no limit. Run watches
	// the dir's usage and stops a job over it; ContainerConfig also makes
	// it, plus one byte, every file's size limit (RLIMIT_FSIZE), so one
	// file cannot overshoot it between two looks, and a file stopped there
	// is over the limit: the job fails with the scratch limit's message
	// rather than only its own "file too large".
	ScratchLimit int64
	// NoInit leaves out Docker's init process (tini). Without it the job is
	// PID 1: it gets no default signal handling and must reap its own
	// children, so only engines without docker-init should set it.
	NoInit bool
}

// ConfigError is a Spec that cannot become a safe container because of
// the task's payload: it is malformed, which is the submitter's problem.
// Mistakes of the worker's own (no scratch dir, no ids) are plain errors.
type ConfigError struct {
	Msg string
}

func (e *ConfigError) Error() string { return e.Msg }

func configErr(format string, args ...any) error {
	return &ConfigError{Msg: fmt.Sprintf(format, args...)}
}

var (
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// secretNamePattern matches variable names that by convention hold a
	// secret. A task must never carry a plaintext secret, and the job
	// container must never see one, so these are refused rather than
	// silently dropped: the submitter learns of the leak.
	secretNamePattern = regexp.MustCompile(`(?i)^AWS_|SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|PRIVATE_?KEY|ACCESS_?KEY|API_?KEY|SESSION_?KEY`)
	// secretValuePattern matches AWS access key ids (long-term AKIA, and
	// ASIA for temporary ones) whatever the variable is called.
	secretValuePattern = regexp.MustCompile(`\b(AKIA|ASIA)[A-Z0-9]{16}\b`)
	userPattern        = regexp.MustCompile(`^([0-9]+):([0-9]+)$`)
)

// FilterEnv returns the environment the job container gets from the task's
// env: sorted NAME=value pairs without CREDENTIALS, and an error naming the
// first variable that looks like a secret or collides with the container
// contract.
func FilterEnv(env map[string]string) ([]string, error) {
	names := make([]string, 0, len(env))
	for name := range env {
		names = append(names, name)
	}
	sort.Strings(names)
	out := make([]string, 0, len(names))
	for _, name := range names {
		value := env[name]
		switch {
		case name == taskdef.EnvCredentials:
			continue
		case !envNamePattern.MatchString(name):
			return nil, configErr("task env: %q is not a valid variable name: use letters, digits and '_'", name)
		case name == EnvInput || name == EnvOutput || name == EnvTaskKind:
			return nil, configErr("task env: %s is set by the worker (it is the container's %s); remove it from the task: af submit --env %s=… sets it", name, map[string]string{EnvInput: "input", EnvOutput: "output file", EnvTaskKind: "task kind"}[name], name)
		case secretNamePattern.MatchString(name):
			return nil, configErr("task env: %s looks like a secret; tasks must not carry credentials in plaintext (S3 access goes through the sealed CREDENTIALS), remove it", name)
		case secretValuePattern.MatchString(value):
			return nil, configErr("task env: the value of %s contains an AWS access key id; tasks must not carry credentials in plaintext, remove it", name)
		case strings.ContainsRune(value, 0):
			return nil, configErr("task env: the value of %s contains a NUL byte", name)
		}
		out = append(out, name+"="+value)
	}
	return out, nil
}

// ContainerConfig builds the container for spec. It is pure so the whole
// security posture of a job container can be read, and tested, in one
// place: no network, no capabilities, no privilege escalation, a numeric
// non-root user, a read-only root with only /scratch and a small /tmp
// writable, and memory, CPU and pids limits.
func ContainerConfig(spec Spec) (*container.Config, *container.HostConfig, error) {
	if spec.Image == "" {
		return nil, nil, configErr("task has no image: set payload.image")
	}
	if spec.TaskID == "" {
		return nil, nil, errors.New("spec has no task id")
	}
	if spec.WorkerID == "" {
		return nil, nil, errors.New("spec has no worker id")
	}
	if spec.ScratchDir == "" || !strings.HasPrefix(spec.ScratchDir, "/") {
		return nil, nil, fmt.Errorf("scratch dir %q must be an absolute host path", spec.ScratchDir)
	}
	if spec.Kind != taskdef.KindMapper && spec.Kind != taskdef.KindReducer {
		return nil, nil, configErr("task kind %q: must be %q or %q", spec.Kind, taskdef.KindMapper, taskdef.KindReducer)
	}
	user := spec.User
	if user == "" {
		user = DefaultUser
	}
	m := userPattern.FindStringSubmatch(user)
	if m == nil {
		return nil, nil, configErr("container user %q must be numeric uid:gid, like %q", user, DefaultUser)
	}
	uid, uerr := strconv.ParseUint(m[1], 10, 31)
	gid, gerr := strconv.ParseUint(m[2], 10, 31)
	if uerr != nil || gerr != nil {
		return nil, nil, configErr("container user %q is out of range: uid and gid must be below 2^31", user)
	}
	if uid == 0 {
		return nil, nil, configErr("container user %q is root: job containers run as a non-root user", user)
	}
	if gid == 0 {
		return nil, nil, configErr("container group in %q is root: job containers run with a non-root group", user)
	}
	memory, cpus, pids, err := limits(spec.Limits)
	if err != nil {
		return nil, nil, err
	}
	env, err := FilterEnv(spec.Env)
	if err != nil {
		return nil, nil, err
	}

	input := ""
	switch spec.Input {
	case InputNone, InputStdin:
		input = StdinInput
	case InputFIFO:
		input = ScratchMount + "/" + InputFIFOName
	default:
		return nil, nil, configErr("unknown input mode %v", spec.Input)
	}
	if _, ok := spec.Env["HOME"]; !ok {
		// With a numeric user there is no passwd entry, so HOME would be
		// "/", which is read-only; tools that write dotfiles go to /tmp.
		env = append(env, "HOME=/tmp")
	}
	task := jobspec.TaskMap
	if spec.Kind == taskdef.KindReducer {
		task = jobspec.TaskReduce
	}
	env = append(env,
		EnvInput+"="+input,
		EnvOutput+"="+ScratchMount+"/"+OutputName,
		EnvTaskKind+"="+task,
	)

	stdin := spec.Input == InputStdin
	cfg := &container.Config{
		Image:      spec.Image,
		Entrypoint: spec.Entrypoint,
		Cmd:        spec.Cmd,
		Env:        env,
		User:       user,
		// Attaching stdin is what lets the runner close it to signal the
		// end of the input; StdinOnce makes that close reach the process.
		AttachStdin:     stdin,
		OpenStdin:       stdin,
		StdinOnce:       stdin,
		AttachStdout:    true,
		AttachStderr:    true,
		NetworkDisabled: true,
		Labels: map[string]string{
			LabelManaged:  "true",
			LabelTaskID:   spec.TaskID,
			LabelRunID:    strconv.Itoa(spec.RunID),
			LabelWorkerID: spec.WorkerID,
			LabelTaskKind: string(spec.Kind),
		},
	}
	if !spec.Deadline.IsZero() {
		cfg.Labels[LabelDeadline] = FormatDeadline(spec.Deadline)
	}
	pidsLimit := pids
	initProc := !spec.NoInit
	mounts := []mount.Mount{{
		Type:   mount.TypeBind,
		Source: spec.ScratchDir,
		Target: ScratchMount,
	}}
	if spec.JobDir != "" {
		if !filepath.IsAbs(spec.JobDir) {
			return nil, nil, configErr("job dir %q: give an absolute path", spec.JobDir)
		}
		mounts = append(mounts, mount.Mount{
			Type: mount.TypeBind, Source: spec.JobDir, Target: JobMount, ReadOnly: true,
			BindOptions: &mount.BindOptions{Propagation: mount.PropagationRPrivate, NonRecursive: true},
		})
	}
	host := &container.HostConfig{
		NetworkMode:    "none",
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": TmpfsOptions},
		Mounts:         mounts,
		IpcMode:        container.IPCModePrivate,
		// The runner streams the output through attach and keeps a
		// bounded copy itself; a json-file log would be a second, unbounded
		// copy on the worker's disk.
		LogConfig:  container.LogConfig{Type: "none"},
		AutoRemove: false,
		Init:       &initProc,
		// A runaway job, not the worker, is what the kernel should kill
		// first if the host itself runs out of memory.
		OomScoreAdj: 500,
		Resources: container.Resources{
			Memory:     memory,
			MemorySwap: memory,
			NanoCPUs:   int64(math.Round(cpus * 1e9)),
			PidsLimit:  &pidsLimit,
		},
	}
	if spec.ScratchLimit > 0 {
		fsize := spec.ScratchLimit + 1
		host.Ulimits = []*container.Ulimit{{Name: "fsize", Soft: fsize, Hard: fsize}}
	}
	return cfg, host, nil
}

// ImageFileTaskID is the LabelTaskID of the containers ReadImageFile
// creates: they belong to no task.
const ImageFileTaskID = "image-file-reader"

// ImageFileConfig is the container ReadImageFile copies a file out of. It
// is created and never started, so nothing of the image runs; it is still
// labelled like every container the runner creates, with a deadline, so
// any worker's reaper removes it should this worker die before it does.
func ImageFileConfig(image, workerID string, deadline time.Time) (*container.Config, *container.HostConfig, error) {
	if image == "" {
		return nil, nil, configErr("task has no image: set payload.image")
	}
	if workerID == "" {
		return nil, nil, errors.New("image file reader has no worker id")
	}
	if deadline.IsZero() {
		return nil, nil, errors.New("image file reader has no deadline")
	}
	cfg := &container.Config{
		Image: image,
		// Images FROM scratch have no command; this one never runs.
		Cmd:             []string{"/af-image-file-reader-never-runs"},
		NetworkDisabled: true,
		Labels: map[string]string{
			LabelManaged:  "true",
			LabelTaskID:   ImageFileTaskID,
			LabelWorkerID: workerID,
			LabelDeadline: FormatDeadline(deadline),
		},
	}
	host := &container.HostConfig{
		NetworkMode: "none",
		LogConfig:   container.LogConfig{Type: "none"},
	}
	return cfg, host, nil
}

// FormatDeadline is t as the LabelDeadline label holds it: whole seconds,
// rounded up so the label never comes before the deadline.
func FormatDeadline(t time.Time) string {
	if s := t.Truncate(time.Second); !s.Equal(t) {
		t = s.Add(time.Second)
	}
	return t.UTC().Format(time.RFC3339)
}

// ParseDeadline reads a LabelDeadline label.
func ParseDeadline(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("deadline label %q: %w", s, err)
	}
	return t, nil
}

func limits(l taskdef.Limits) (memory int64, cpus float64, pids int64, err error) {
	memory, cpus, pids = l.MemoryBytes, l.CPUs, l.Pids
	if memory == 0 {
		memory = DefaultMemoryBytes
	}
	if cpus == 0 {
		cpus = DefaultCPUs
	}
	if pids == 0 {
		pids = DefaultPids
	}
	switch {
	case memory < minMemoryBytes:
		return 0, 0, 0, configErr("task memory limit %d bytes is below the 6 MiB minimum: raise payload.limits.memoryBytes", memory)
	case cpus < 0.01 || cpus > maxCPUs || math.IsNaN(cpus):
		return 0, 0, 0, configErr("task cpu limit %v must be between 0.01 and %d: fix payload.limits.cpus", cpus, maxCPUs)
	case pids < 1:
		return 0, 0, 0, configErr("task pids limit %d must be positive: fix payload.limits.pids", pids)
	case pids > MaxPids:
		return 0, 0, 0, configErr("task pids limit %d is above the kernel's maximum %d: lower payload.limits.pids", pids, MaxPids)
	}
	return memory, cpus, pids, nil
}
