package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestCeilingFlagsHelp: --help names each ceiling's flag, its variable
// and its default.
func TestCeilingFlagsHelp(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	for _, want := range []string{
		"-max-task-memory", "AF_MAX_TASK_MEMORY", "-max-task-cpus", "AF_MAX_TASK_CPUS",
		"-max-task-pids", "AF_MAX_TASK_PIDS", "(default 4096)", "-max-run-time", "AF_MAX_RUN_TIME", "(default 24h0m0s)",
		"-reap-every", "AF_REAP_EVERY", "(default 30s)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestCeilingFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--max-task-memory", "1MiB"}, nil, "--max-task-memory 1MiB is below Docker's minimum"},
		{[]string{"--max-task-memory", "12XB"}, nil, `unknown unit "XB"`},
		{[]string{"--max-task-cpus", "100000"}, nil, "--max-task-cpus 100000: this host has"},
		{[]string{"--max-task-pids", "1000000000"}, nil, "--max-task-pids 1000000000 must be between 1 and the kernel's maximum"},
		{[]string{"--max-run-time", "0s"}, nil, "--max-run-time 0s must be at least a second"},
		{[]string{"--reap-every", "0s"}, nil, "--reap-every 0s must be positive"},
		{nil, map[string]string{"AF_MAX_TASK_MEMORY": "lots"}, `AF_MAX_TASK_MEMORY="lots"`},
		{nil, map[string]string{"AF_MAX_TASK_PIDS": "many"}, `AF_MAX_TASK_PIDS="many"`},
		{nil, map[string]string{"AF_MAX_TASK_CPUS": "0.001"}, "--max-task-cpus 0.001 must be at least 0.01"},
	} {
		t.Run(strings.Join(tc.args, " ")+mapString(tc.env), func(t *testing.T) {
			t.Setenv("AF_TOKEN", "t")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out bytes.Buffer
			err := run(context.Background(), tc.args, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("worker %v %v: err = %v, want %q", tc.args, tc.env, err, tc.want)
			}
		})
	}
}

func mapString(m map[string]string) string {
	s := ""
	for k, v := range m {
		s += k + "=" + v
	}
	return s
}
