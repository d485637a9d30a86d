package runner

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"
)

// TestImageFileConfig: the reader's container is labelled like every
// container the runner creates, with a deadline any reaper honours, and
// has no network.
func TestImageFileConfig(t *testing.T) {
	t.Parallel()
	deadline := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	cfg, hc, err := ImageFileConfig("af/python", "w1", deadline)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{LabelManaged: "true", LabelTaskID: ImageFileTaskID, LabelWorkerID: "w1", LabelDeadline: "2026-01-02T03:04:06Z"}
	for k, v := range want {
		if cfg.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, cfg.Labels[k], v)
		}
	}
	if cfg.Image != "af/python" || !cfg.NetworkDisabled || hc.NetworkMode != "none" || len(cfg.Cmd) == 0 {
		t.Errorf("config %+v host %+v", cfg, hc)
	}
	for _, tc := range []struct {
		name, image, worker string
		deadline            time.Time
	}{
		{"no image", "", "w1", deadline},
		{"no worker", "af/python", "", deadline},
		{"no deadline", "af/python", "w1", time.Time{}},
	} {
		if _, _, err := ImageFileConfig(tc.image, tc.worker, tc.deadline); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// TestReadImageFile reads out of a real image on the engine: a regular
// file, and each refusal; every path removes its container (newEnv's
// cleanup fails the test on a leftover).
func TestReadImageFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Options{})
	image := probe(t)
	ctx := context.Background()

	data, err := e.r.ReadImageFile(ctx, image, "/probe", 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x7fELF")) {
		t.Errorf("read %d bytes that are not the probe binary", len(data))
	}
	for _, tc := range []struct {
		name, path string
		max        int64
		want       error
	}{
		{"missing", "/etc/analysis-tools.yml", 1 << 20, ErrNoImageFile},
		{"a directory", "/", 1 << 20, ErrNotImageFile},
		{"too large", "/probe", 16, ErrImageFileTooLarge},
	} {
		if _, err := e.r.ReadImageFile(ctx, image, tc.path, tc.max); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if left := e.containers(); len(left) != 0 {
		t.Errorf("%d reader container(s) left", len(left))
	}
}
