package runner

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/taskdef"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
)

func baseSpec() Spec {
	return Spec{
		TaskID:     "task-0001",
		RunID:      2,
		WorkerID:   "host-a",
		Kind:       taskdef.KindMapper,
		Image:      "af/os-count",
		Cmd:        []string{"python3", "-m", "af_helper", "map"},
		ScratchDir: "/var/lib/af/tasks/task-0001/scratch",
		MaxRunTime: time.Hour,
	}
}

func TestContainerConfigLockdown(t *testing.T) {
	t.Parallel()
	cfg, hc, err := ContainerConfig(baseSpec())
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	pids := DefaultPids
	wantHC := &container.HostConfig{
		NetworkMode:    "none",
		CapDrop:        []string{"ALL"},
		SecurityOpt:    []string{"no-new-privileges"},
		ReadonlyRootfs: true,
		Tmpfs:          map[string]string{"/tmp": "rw,noexec,nosuid,nodev,size=64m"},
		Mounts: []mount.Mount{{
			Type: mount.TypeBind, Source: "/var/lib/af/tasks/task-0001/scratch", Target: "/scratch",
		}},
		IpcMode:     container.IPCModePrivate,
		LogConfig:   container.LogConfig{Type: "none"},
		Init:        &yes,
		OomScoreAdj: 500,
		Resources: container.Resources{
			Memory: 2 << 30, MemorySwap: 2 << 30, NanoCPUs: 1e9, PidsLimit: &pids,
		},
	}
	if !reflect.DeepEqual(hc, wantHC) {
		t.Errorf("host config\n got %+v\nwant %+v", hc, wantHC)
	}
	wantCfg := &container.Config{
		Image:           "af/os-count",
		Cmd:             []string{"python3", "-m", "af_helper", "map"},
		Env:             []string{"HOME=/tmp", "AF_INPUT=-", "AF_OUTPUT=/scratch/output", "AF_TASK_KIND=map"},
		User:            "10001:10001",
		AttachStdout:    true,
		AttachStderr:    true,
		NetworkDisabled: true,
		Labels: map[string]string{
			"af.managed": "true", "af.task-id": "task-0001", "af.run-id": "2",
			"af.worker-id": "host-a", "af.task-kind": "mapper",
		},
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("config\n got %+v\nwant %+v", cfg, wantCfg)
	}
	if hc.Privileged || len(hc.CapAdd) > 0 || len(hc.Binds) > 0 || hc.AutoRemove || hc.OomKillDisable != nil || hc.PublishAllPorts {
		t.Error("host config grants something it must not")
	}
}

func TestContainerConfigVariants(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		edit  func(*Spec)
		check func(t *testing.T, cfg *container.Config, hc *container.HostConfig)
	}{
		{"stdin input", func(s *Spec) { s.Input = InputStdin }, func(t *testing.T, cfg *container.Config, hc *container.HostConfig) {
			if !cfg.OpenStdin || !cfg.StdinOnce || !cfg.AttachStdin || !slices.Contains(cfg.Env, "AF_INPUT=-") {
				t.Errorf("stdin not wired: %+v", cfg)
			}
		}},
		{"fifo input", func(s *Spec) { s.Input = InputFIFO }, func(t *testing.T, cfg *container.Config, hc *container.HostConfig) {
			if cfg.OpenStdin || cfg.AttachStdin || !slices.Contains(cfg.Env, "AF_INPUT=/scratch/input") {
				t.Errorf("fifo not wired: %+v", cfg)
			}
		}},
		{"reducer", func(s *Spec) { s.Kind = taskdef.KindReducer }, func(t *testing.T, cfg *container.Config, hc *container.HostConfig) {
			if !slices.Contains(cfg.Env, "AF_TASK_KIND=reduce") || cfg.Labels[LabelTaskKind] != "reducer" {
				t.Errorf("kind: %+v", cfg)
			}
		}},
		{"limits", func(s *Spec) { s.Limits = taskdef.Limits{MemoryBytes: 512 << 20, CPUs: 1.5, Pids: 32} }, func(t *testing.T, cfg *container.Config, hc *container.HostConfig) {
			if hc.Memory != 512<<20 || hc.MemorySwap != 512<<20 || hc.NanoCPUs != 15e8 || *hc.PidsLimit != 32 {
				t.Errorf("limits: %+v", hc.Resources)
			}
		}},
		{"custom user", func(s *Spec) { s.User = "2000:3000" }, func(t *testing.T, cfg *container.Config, hc *container.HostConfig) {
			if cfg.User != "2000:3000" {
				t.Errorf("user %q", cfg.User)
			}
		}},
		{"no init", func(s *Spec) { s.NoInit = true }, func(t *testing.T, cfg *container.Config, hc *container.HostConfig) {
			if hc.Init == nil || *hc.Init {
				t.Errorf("init %v", hc.Init)
			}
		}},
		{"entrypoint", func(s *Spec) { s.Entrypoint = []string{"/job/run"}; s.Cmd = nil }, func(t *testing.T, cfg *container.Config, hc *container.HostConfig) {
			if !slices.Equal(cfg.Entrypoint, []string{"/job/run"}) || cfg.Cmd != nil {
				t.Errorf("entrypoint %v cmd %v", cfg.Entrypoint, cfg.Cmd)
			}
		}},
		{"env kept sorted, credentials dropped, HOME respected", func(s *Spec) {
			s.Env = map[string]string{"ZED": "1", taskdef.EnvCredentials: "c2VhbGVk", "OWNER": "a@example.com", "INPUT_TASK_IDS": "a b", "HOME": "/scratch"}
		}, func(t *testing.T, cfg *container.Config, hc *container.HostConfig) {
			want := []string{"HOME=/scratch", "INPUT_TASK_IDS=a b", "OWNER=a@example.com", "ZED=1", "AF_INPUT=-", "AF_OUTPUT=/scratch/output", "AF_TASK_KIND=map"}
			if !slices.Equal(cfg.Env, want) {
				t.Errorf("env %q, want %q", cfg.Env, want)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := baseSpec()
			tc.edit(&s)
			cfg, hc, err := ContainerConfig(s)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg, hc)
		})
	}
}

func TestContainerConfigRefuses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		edit    func(*Spec)
		payload bool // a *ConfigError: the task's fault
		want    string
	}{
		{"aws secret", func(s *Spec) { s.Env = map[string]string{"AWS_SECRET_ACCESS_KEY": "x"} }, true, "AWS_SECRET_ACCESS_KEY looks like a secret"},
		{"aws region", func(s *Spec) { s.Env = map[string]string{"AWS_REGION": "us-east-1"} }, true, "AWS_REGION looks like a secret"},
		{"token", func(s *Spec) { s.Env = map[string]string{"GITHUB_TOKEN": "x"} }, true, "GITHUB_TOKEN looks like a secret"},
		{"password", func(s *Spec) { s.Env = map[string]string{"db_password": "x"} }, true, "db_password looks like a secret"},
		{"access key id in a value", func(s *Spec) { s.Env = map[string]string{"NOTES": "key AKIAIOSFODNN7EXAMPLE here"} }, true, "value of NOTES contains an AWS access key id"},
		{"reserved", func(s *Spec) { s.Env = map[string]string{"AF_OUTPUT": "/etc/passwd"} }, true, "AF_OUTPUT is set by the worker"},
		{"bad name", func(s *Spec) { s.Env = map[string]string{"A=B": "x"} }, true, `"A=B" is not a valid variable name`},
		{"nul", func(s *Spec) { s.Env = map[string]string{"A": "x\x00y"} }, true, "contains a NUL byte"},
		{"root user", func(s *Spec) { s.User = "0:0" }, true, "is root"},
		{"root group", func(s *Spec) { s.User = "1000:0" }, true, "non-root group"},
		{"named user", func(s *Spec) { s.User = "root" }, true, "must be numeric uid:gid"},
		{"no image", func(s *Spec) { s.Image = "" }, true, "task has no image"},
		{"bad kind", func(s *Spec) { s.Kind = "combiner" }, true, `task kind "combiner"`},
		{"tiny memory", func(s *Spec) { s.Limits.MemoryBytes = 1 << 20 }, true, "below the 6 MiB minimum"},
		{"negative cpus", func(s *Spec) { s.Limits.CPUs = -1 }, true, "cpu limit -1"},
		{"absurd cpus", func(s *Spec) { s.Limits.CPUs = 1.4e10 }, true, "must be between 0.01 and 4096"},
		{"negative pids", func(s *Spec) { s.Limits.Pids = -5 }, true, "pids limit -5"},
		{"relative scratch", func(s *Spec) { s.ScratchDir = "scratch" }, false, "must be an absolute host path"},
		{"relative job dir", func(s *Spec) { s.JobDir = "job" }, true, `job dir "job": give an absolute path`},
		{"no worker id", func(s *Spec) { s.WorkerID = "" }, false, "no worker id"},
		{"no task id", func(s *Spec) { s.TaskID = "" }, false, "no task id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := baseSpec()
			tc.edit(&s)
			_, _, err := ContainerConfig(s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			var ce *ConfigError
			if errors.As(err, &ce) != tc.payload {
				t.Errorf("ConfigError %v, want %v", errors.As(err, &ce), tc.payload)
			}
			if strings.Contains(err.Error(), "AKIAIOSFODNN7EXAMPLE") {
				t.Error("the error repeats the secret")
			}
		})
	}
}

// TestContainerConfigJobDir: af run --local --job-dir mounts the analyst's
// job directory read-only at /job, not recursively, with private
// propagation; the scratch mount stays the only writable one, and without
// JobDir (every worker) there is no second mount.
func TestContainerConfigJobDir(t *testing.T) {
	t.Parallel()
	s := baseSpec()
	_, hc, err := ContainerConfig(s)
	if err != nil || len(hc.Mounts) != 1 {
		t.Fatalf("without JobDir: %v, mounts %+v; want the scratch mount alone", err, hc.Mounts)
	}
	s.JobDir = "/home/analyst/my-job"
	_, hc, err = ContainerConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(hc.Mounts) != 2 {
		t.Fatalf("mounts %+v; want scratch and the job dir", hc.Mounts)
	}
	m := hc.Mounts[1]
	if m.Type != mount.TypeBind || m.Source != s.JobDir || m.Target != JobMount || JobMount != "/job" || !m.ReadOnly ||
		m.BindOptions == nil || !m.BindOptions.NonRecursive || m.BindOptions.Propagation != mount.PropagationRPrivate {
		t.Errorf("job dir mount %+v; want %s read-only, non-recursive, rprivate at /job", m, s.JobDir)
	}
	if hc.Mounts[0].ReadOnly || hc.Mounts[0].Target != ScratchMount {
		t.Errorf("scratch mount %+v changed", hc.Mounts[0])
	}
}

// The runner and the helpers must agree on where things are.
func TestContractMatchesJobspec(t *testing.T) {
	t.Parallel()
	if got := ScratchMount + "/" + InputFIFOName; got != jobspec.InputFIFO {
		t.Errorf("fifo %s, jobspec says %s", got, jobspec.InputFIFO)
	}
	if got := ScratchMount + "/" + OutputName; got != jobspec.OutputFile {
		t.Errorf("output %s, jobspec says %s", got, jobspec.OutputFile)
	}
	s := baseSpec()
	s.Input = InputFIFO
	cfg, _, err := ContainerConfig(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{jobspec.EnvInput + "=" + jobspec.InputFIFO, jobspec.EnvOutput + "=" + jobspec.OutputFile, jobspec.EnvTaskKind + "=" + jobspec.TaskMap} {
		if !slices.Contains(cfg.Env, want) {
			t.Errorf("env %q lacks %s", cfg.Env, want)
		}
	}
}

func TestParseUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in       string
		uid, gid int
		ok       bool
	}{
		{"", 10001, 10001, true},
		{"2000:3000", 2000, 3000, true},
		{"2000", 0, 0, false},
		{"a:b", 0, 0, false},
		{"1:2:3", 0, 0, false},
		{" 1:2", 0, 0, false},
	} {
		uid, gid, err := ParseUser(tc.in)
		if (err == nil) != tc.ok || uid != tc.uid || gid != tc.gid {
			t.Errorf("ParseUser(%q) = %d, %d, %v", tc.in, uid, gid, err)
		}
	}
}

// FuzzContainerConfig checks the security invariants hold for any task
// env and user: whatever ContainerConfig accepts never carries
// credentials, never runs as root, and is always locked down.
func FuzzContainerConfig(f *testing.F) {
	f.Add("FOO", "bar", "", 0.0, int64(0))
	f.Add("CREDENTIALS", "abc", "10001:10001", 1.0, int64(100))
	f.Add("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE", "0:0", 2.5, int64(-1))
	f.Add("aws_session_token", "x", "root", 0.001, int64(1))
	f.Add("X", "ASIAABCDEFGHIJKLMNOP", "1:1", 1e9, int64(1<<40))
	f.Add("HOME", "/", "00:7", 0.5, int64(7))
	f.Fuzz(func(t *testing.T, name, value, user string, cpus float64, pids int64) {
		s := baseSpec()
		s.Env = map[string]string{name: value, taskdef.EnvCredentials: "sealed"}
		s.User = user
		s.Limits = taskdef.Limits{CPUs: cpus, Pids: pids}
		cfg, hc, err := ContainerConfig(s)
		if err != nil {
			if strings.Contains(err.Error(), value) && len(value) > 3 && secretValuePattern.MatchString(value) {
				t.Errorf("error repeats a secret value: %v", err)
			}
			return
		}
		uid, gid, perr := ParseUser(cfg.User)
		if perr != nil || uid == 0 || gid == 0 {
			t.Errorf("accepted user %q", cfg.User)
		}
		for _, kv := range cfg.Env {
			n, v, _ := strings.Cut(kv, "=")
			if n == taskdef.EnvCredentials || strings.HasPrefix(strings.ToUpper(n), "AWS_") || secretValuePattern.MatchString(v) {
				t.Errorf("secret reached the container env: %q", kv)
			}
		}
		if hc.NetworkMode != "none" || !hc.ReadonlyRootfs || !slices.Equal(hc.CapDrop, []string{"ALL"}) ||
			hc.PidsLimit == nil || *hc.PidsLimit < 1 || hc.NanoCPUs < 1e7 || hc.Memory < minMemoryBytes || len(hc.Mounts) != 1 {
			t.Errorf("not locked down: %+v", hc)
		}
	})
}
