package worker

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/taskdef"
)

// Ceilings are the most a task may ask of this worker. A task asking for
// more is refused as exception/malformed-payload naming the ceiling and
// its flag; a task leaving a limit at zero gets the runner's default,
// lowered to the ceiling.
type Ceilings struct {
	// MemoryBytes bounds payload.limits.memoryBytes (--max-task-memory).
	MemoryBytes int64
	// CPUs bounds payload.limits.cpus (--max-task-cpus); at most the
	// host's CPUs, which is all Docker gives a container.
	CPUs float64
	// Pids bounds payload.limits.pids (--max-task-pids).
	Pids int64
	// RunTime bounds payload.maxRunTime (--max-run-time).
	RunTime time.Duration
}

// Defaults of the ceilings that do not depend on the host.
const (
	// DefaultMaxTaskMemory is the memory ceiling on hosts with at least
	// twice as much RAM; smaller hosts get half their RAM.
	DefaultMaxTaskMemory int64 = 8 << 30
	// DefaultMaxTaskPids bounds a task's processes and threads: plenty
	// for a job and its helpers, and a fork bomb stops far from the
	// host's pid_max.
	DefaultMaxTaskPids int64 = 4096
	// DefaultMaxRunTime is the run time ceiling: a day.
	DefaultMaxRunTime = 24 * time.Hour
)

// Limits of payload counts and sizes. They are far above what `af submit`
// makes, and keep a forged payload from making the worker allocate or
// loop without bound, or pass the kernel's exec limits.
const (
	maxInputsPerTask  = 100_000
	maxETagBytes      = 128
	maxReducerInputs  = 100_000 // the queue's bound on dependencies
	maxSchemaFields   = 64
	maxEnvVars        = 1000
	maxKeyBytes       = 1024 // S3's key length limit
	maxEnvValueBytes  = 128<<10 - 1
	maxContainerEnv   = 1 << 20
	maxCredentialBlob = 1 << 20
)

// DefaultCeilings are the ceilings of a worker on this host: memory
// DefaultMaxTaskMemory or half the RAM if that is less, CPUs the host's
// count, pids DefaultMaxTaskPids, run time DefaultMaxRunTime.
func DefaultCeilings() Ceilings {
	mem := DefaultMaxTaskMemory
	if ram := hostRAM(); ram > 0 && ram/2 < mem {
		mem = ram / 2
	}
	return Ceilings{MemoryBytes: mem, CPUs: float64(runtime.NumCPU()), Pids: DefaultMaxTaskPids, RunTime: DefaultMaxRunTime}
}

func hostRAM() int64 {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}

// fill gives zero fields their defaults.
func (c Ceilings) fill() Ceilings {
	d := DefaultCeilings()
	if c.MemoryBytes == 0 {
		c.MemoryBytes = d.MemoryBytes
	}
	if c.CPUs == 0 {
		c.CPUs = d.CPUs
	}
	if c.Pids == 0 {
		c.Pids = d.Pids
	}
	if c.RunTime == 0 {
		c.RunTime = d.RunTime
	}
	return c
}

// Check says what is wrong with ceilings a worker is started with, in the
// flags' terms.
func (c Ceilings) Check() error {
	hostCPUs := float64(runtime.NumCPU())
	switch {
	case c.MemoryBytes < 6<<20:
		return fmt.Errorf("--max-task-memory %s is below Docker's minimum of 6 MiB", FormatBytes(c.MemoryBytes))
	case math.IsNaN(c.CPUs) || c.CPUs < 0.01:
		return fmt.Errorf("--max-task-cpus %v must be at least 0.01", c.CPUs)
	case c.CPUs > hostCPUs:
		return fmt.Errorf("--max-task-cpus %v: this host has %v CPUs, and Docker refuses a container asking for more", c.CPUs, hostCPUs)
	case c.Pids < 1 || c.Pids > runner.MaxPids:
		return fmt.Errorf("--max-task-pids %d must be between 1 and the kernel's maximum %d", c.Pids, runner.MaxPids)
	case c.RunTime < time.Second:
		return fmt.Errorf("--max-run-time %s must be at least a second", c.RunTime)
	}
	return nil
}

// limits are the container limits a task runs with: its own, zeros
// replaced by the runner's defaults lowered to the ceilings. p passed
// checkPayload.
func (c Ceilings) limits(l taskdef.Limits) taskdef.Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = min(runner.DefaultMemoryBytes, c.MemoryBytes)
	}
	if l.CPUs == 0 {
		l.CPUs = min(runner.DefaultCPUs, c.CPUs)
	}
	if l.Pids == 0 {
		l.Pids = min(runner.DefaultPids, c.Pids)
	}
	return l
}

// checkPayload range-checks every number and count of a task's payload
// the worker uses, against the ceilings and against what the kernel,
// Docker and the worker itself can take. A non-nil error is the
// submitter's: the task is exception/malformed-payload with its text,
// which says what to change. Zero limits mean the worker's default; a
// maxRunTime must be given.
func checkPayload(p taskdef.Payload, c Ceilings) error {
	if p.Image == "" || (p.Kind != taskdef.KindMapper && p.Kind != taskdef.KindReducer) {
		return fmt.Errorf("payload needs an image and kind mapper or reducer (got image %q, kind %q)", p.Image, p.Kind)
	}
	l := p.Limits
	switch {
	case l.MemoryBytes < 0:
		return fmt.Errorf("payload.limits.memoryBytes %d is negative: give the task's memory in bytes, or 0 for the worker's default", l.MemoryBytes)
	case l.MemoryBytes > c.MemoryBytes:
		return fmt.Errorf("the task asks for %s of memory; this worker allows at most %s (--max-task-memory); submit with less", FormatBytes(l.MemoryBytes), FormatBytes(c.MemoryBytes))
	case l.MemoryBytes != 0 && l.MemoryBytes < 6<<20:
		return fmt.Errorf("payload.limits.memoryBytes %d is below Docker's minimum of 6 MiB: raise it, or give 0 for the worker's default", l.MemoryBytes)
	}
	switch {
	case math.IsNaN(l.CPUs) || math.IsInf(l.CPUs, 0) || l.CPUs < 0:
		return fmt.Errorf("payload.limits.cpus %v is not a CPU count: give a number like 1 or 0.5, or 0 for the worker's default", l.CPUs)
	case l.CPUs > c.CPUs:
		return fmt.Errorf("the task asks for %v CPUs; this worker allows at most %v (--max-task-cpus); submit with fewer", l.CPUs, c.CPUs)
	case l.CPUs != 0 && l.CPUs < 0.01:
		return fmt.Errorf("payload.limits.cpus %v is below Docker's minimum of 0.01: raise it, or give 0 for the worker's default", l.CPUs)
	}
	switch {
	case l.Pids < 0:
		return fmt.Errorf("payload.limits.pids %d is negative: give the most processes and threads the job may run, or 0 for the worker's default", l.Pids)
	case l.Pids > c.Pids:
		return fmt.Errorf("the task asks for %d processes; this worker allows at most %d (--max-task-pids); submit with fewer", l.Pids, c.Pids)
	}
	// Compared in seconds, before any multiplication can overflow.
	maxSecs := int64(c.RunTime / time.Second)
	switch {
	case p.MaxRunTime <= 0:
		return fmt.Errorf("payload.maxRunTime %d must be a positive number of seconds (at most %d on this worker)", p.MaxRunTime, maxSecs)
	case int64(p.MaxRunTime) > maxSecs:
		return fmt.Errorf("the task asks for a run time of %s; this worker allows at most %s (--max-run-time); submit with a shorter --max-run-time",
			secondsString(int64(p.MaxRunTime)), c.RunTime)
	}

	if len(p.Inputs) > maxInputsPerTask {
		return fmt.Errorf("the task has %d input files; a task may have at most %d: split the inputs into more tasks", len(p.Inputs), maxInputsPerTask)
	}
	var total int64
	for i, in := range p.Inputs {
		switch {
		case in.Key == "" || len(in.Key) > maxKeyBytes:
			return fmt.Errorf("payload.inputs[%d].key must be 1 to %d bytes (got %d)", i, maxKeyBytes, len(in.Key))
		case in.Size < 0:
			return fmt.Errorf("payload.inputs[%d].size %d is negative", i, in.Size)
		case in.Size > math.MaxInt64-total:
			return fmt.Errorf("payload.inputs: the sizes add up to more than 2^63 bytes")
		}
		total += in.Size
	}
	// Counted before it is split: a hostile string of spaces would split
	// into millions of entries.
	if n := strings.Count(p.InputETags, " ") + 1; p.InputETags != "" && n != len(p.Inputs) {
		return fmt.Errorf("payload.inputETags has %d entries for %d inputs: it must list one ETag per input file, in the same order, separated by single spaces", n, len(p.Inputs))
	}
	for i, tag := range taskdef.SplitETags(p.InputETags) {
		// It becomes an If-Match header: printable, unquoted, short.
		if len(tag) > maxETagBytes || strings.ContainsFunc(tag, func(r rune) bool { return r <= ' ' || r > '~' || r == '"' || r == '\\' }) {
			return fmt.Errorf("payload.inputETags[%d] must be an unquoted S3 ETag of at most %d printable characters", i, maxETagBytes)
		}
	}
	if len(p.Schema) > maxSchemaFields {
		return fmt.Errorf("payload.schema has %d fields; at most %d", len(p.Schema), maxSchemaFields)
	}
	if len(p.Layout) > maxSchemaFields+16 {
		return fmt.Errorf("payload.layout has %d bytes; at most %d", len(p.Layout), maxSchemaFields+16)
	}
	if _, err := layout.FromWire(p.Schema, p.Layout); err != nil {
		return fmt.Errorf("payload.schema and payload.layout: %w", err)
	}
	if len(p.Env) > maxEnvVars {
		return fmt.Errorf("payload.env has %d variables; at most %d", len(p.Env), maxEnvVars)
	}
	envBytes := 0
	for name, value := range p.Env {
		if name == taskdef.EnvCredentials {
			if len(value) > maxCredentialBlob {
				return fmt.Errorf("payload.env.%s is %d bytes; sealed credentials are at most %d", name, len(value), maxCredentialBlob)
			}
			continue
		}
		// The kernel refuses to exec with a longer NAME=value string.
		if len(name)+1+len(value) > maxEnvValueBytes {
			return fmt.Errorf("payload.env.%.64s is %d bytes; a variable may be at most %d bytes (the kernel's limit)", name, len(name)+1+len(value), maxEnvValueBytes)
		}
		envBytes += len(name) + 1 + len(value)
	}
	if envBytes > maxContainerEnv {
		return fmt.Errorf("payload.env is %d bytes; the job's environment may be at most %d", envBytes, maxContainerEnv)
	}
	if p.Kind == taskdef.KindReducer {
		ids := strings.Fields(p.Env[taskdef.EnvInputTaskIDs])
		if len(ids) > maxReducerInputs {
			return fmt.Errorf("payload.env.%s names %d tasks; a reducer may merge at most %d", taskdef.EnvInputTaskIDs, len(ids), maxReducerInputs)
		}
		for _, id := range ids {
			if err := taskdef.ValidID(id); err != nil {
				return fmt.Errorf("payload.env.%s: %w", taskdef.EnvInputTaskIDs, err)
			}
		}
	}
	return nil
}

func secondsString(s int64) string {
	if s <= int64(math.MaxInt64/time.Second) {
		return (time.Duration(s) * time.Second).String()
	}
	return strconv.FormatInt(s, 10) + "s (over 290 years)"
}

// FormatBytes writes n in the largest binary unit that keeps it whole
// ("8GiB", "1536MiB", "100B"); ParseBytes reads it back.
func FormatBytes(n int64) string {
	for _, u := range byteUnits {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

var byteUnits = []struct {
	name string
	size int64
}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// ParseBytes reads a size: a whole number of bytes, or a number with a
// binary unit (KiB, MiB, GiB, TiB; K, M, G, T and KB, MB, GB, TB mean the
// same), like "8GiB" or "1.5G".
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	num, unit := t[:i], strings.ToUpper(strings.TrimSpace(t[i:]))
	var mult int64
	switch unit {
	case "", "B":
		mult = 1
	case "K", "KB", "KIB":
		mult = 1 << 10
	case "M", "MB", "MIB":
		mult = 1 << 20
	case "G", "GB", "GIB":
		mult = 1 << 30
	case "T", "TB", "TIB":
		mult = 1 << 40
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (use B, KiB, MiB, GiB or TiB)", s, t[i:])
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number of bytes like 8GiB or 512MiB", s)
	}
	v := math.Round(f * float64(mult))
	if v >= math.MaxInt64 {
		return 0, errors.New("size " + strconv.Quote(s) + " is too large")
	}
	return int64(v), nil
}
