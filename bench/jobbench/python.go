package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/af-project/af/internal/miniotest"
)

// pyResult is what the baseline scripts print.
type pyResult struct {
	Counts         map[string]int `json:"counts"`
	Seconds        float64        `json:"seconds"`
	StartupSeconds float64        `json:"startup_seconds"`
	RawBytes       int64          `json:"raw_bytes"`
	// CPUSeconds is the CPU time of the timed span, in every process the
	// script ran (Dask's workers too).
	CPUSeconds float64 `json:"cpu_seconds"`
}

// runPython runs one baseline script against the benchmark's MinIO.
func (e *env) runPython(ctx context.Context, python, dir, script string, args ...string) (pyResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{filepath.Join(dir, script), inputBucket, dataPrefix + "/"}, args...)...)
	cmd.Env = append(os.Environ(),
		"AWS_ENDPOINT_URL="+e.minio.Endpoint,
		"AWS_ACCESS_KEY_ID="+miniotest.RootUser,
		"AWS_SECRET_ACCESS_KEY="+miniotest.RootPassword,
		"AWS_REGION=us-east-1",
		"PYTHONPATH="+dir,
		// One thread per process, as the workers' jobs have one CPU each.
		"OMP_NUM_THREADS=1",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return pyResult{}, fmt.Errorf("%s %s: %w\n%s", python, script, err, tailOf(stderr.String(), 4000))
	}
	lines := bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n"))
	var res pyResult
	if err := json.Unmarshal(lines[len(lines)-1], &res); err != nil {
		return pyResult{}, fmt.Errorf("%s: unreadable result %q: %w\n%s", script, tailOf(stdout.String(), 400), err, tailOf(stderr.String(), 4000))
	}
	return res, nil
}

func tailOf(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}
