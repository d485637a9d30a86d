package runner

import (
	"slices"
	"testing"
	"time"
)

// The check container af submit compiles a job in is as locked down as a
// task's: no network, no capabilities, read-only root, non-root, limits,
// and labels a reaper finds.
func TestCheckConfigIsLockedDown(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	cfg, host, err := CheckConfig("af/os-count", "af-submit-h", []string{"python3", "-c", "pass"}, deadline)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case !cfg.NetworkDisabled || host.NetworkMode != "none":
		t.Error("the check container has a network")
	case !slices.Equal(host.CapDrop, []string{"ALL"}) || !slices.Contains(host.SecurityOpt, "no-new-privileges"):
		t.Errorf("capabilities %v, security %v", host.CapDrop, host.SecurityOpt)
	case !host.ReadonlyRootfs || host.Tmpfs["/tmp"] == "":
		t.Error("the root is writable or /tmp is missing")
	case cfg.User != DefaultUser:
		t.Errorf("user %q", cfg.User)
	case host.Resources.Memory <= 0 || host.Resources.PidsLimit == nil || *host.Resources.PidsLimit <= 0 || host.Resources.NanoCPUs <= 0:
		t.Errorf("limits %+v", host.Resources)
	case len(host.Mounts) != 0 || len(host.Binds) != 0:
		t.Errorf("mounts %v %v", host.Mounts, host.Binds)
	case cfg.Labels[LabelManaged] != "true" || cfg.Labels[LabelWorkerID] != "af-submit-h" || cfg.Labels[LabelDeadline] != FormatDeadline(deadline) || cfg.Labels[LabelTaskID] != CheckTaskID:
		t.Errorf("labels %v", cfg.Labels)
	}
	for _, bad := range []struct {
		image, worker string
		cmd           []string
		deadline      time.Time
	}{
		{"", "w", []string{"x"}, deadline}, {"i", "", []string{"x"}, deadline}, {"i", "w", nil, deadline}, {"i", "w", []string{"x"}, time.Time{}},
	} {
		if _, _, err := CheckConfig(bad.image, bad.worker, bad.cmd, bad.deadline); err == nil {
			t.Errorf("CheckConfig(%q, %q, %q, %v) accepted", bad.image, bad.worker, bad.cmd, bad.deadline)
		}
	}
}
