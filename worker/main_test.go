package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/af-project/af/internal/decompress"
)

func TestHelpNeverPrintsTheToken(t *testing.T) {
	t.Setenv("AF_TOKEN", "secret-work-token-value")
	var out bytes.Buffer
	err := run(context.Background(), []string{"--help"}, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(out.String(), "secret-work-token-value") {
		t.Fatalf("--help printed the token:\n%s", out.String())
	}
	for _, want := range []string{"--queue URL --token T --key af.key", "AF_QUEUE_URL", "-capacity", "-s3-endpoint", "AF_WORKER_S3_ENDPOINT", "AWS_ENDPOINT_URL",
		"-max-scratch-bytes", "AF_WORKER_MAX_SCRATCH_BYTES", "(default 10GiB)",
		"-smtp string\n    \tdeprecated and ignored: af serve sends the owners' emails from its outbox"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("AF_TOKEN", "")
	t.Setenv("AF_QUEUE_URL", "")
	t.Setenv("AF_CA_FILE", "")
	t.Setenv("AF_INSECURE_HTTP", "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--queue", "http://127.0.0.1:1"}, "no token"},
		{[]string{"--token", "t", "--input", "pipe"}, `--input "pipe": want fifo or stdin`},
		{[]string{"--token", "t", "--key", "/nonexistent/af.key"}, "/nonexistent/af.key"},
		// --smtp is ignored, not parsed: a value that is no SMTP URL does
		// not stop the worker (the key does, here).
		{[]string{"--token", "t", "--smtp", "smtp://%zz", "--key", "/nonexistent/af.key"}, "/nonexistent/af.key"},
		{[]string{"--token", "t", "--log-level", "loud"}, "--log-level"},
		{[]string{"--token", "t", "--gzip", "zlib"}, `--gzip: gzip decoder "zlib": want auto, isal or go`},
		{[]string{"--token", "t", "--max-scratch-bytes", "10 gigs"}, `size "10 gigs": unknown unit`},
		// The work token goes over plain http only to loopback unless
		// the operator allows it; allowed, the start goes on (to the
		// key, here).
		{[]string{"--token", "t", "--queue", "http://10.0.0.1:8080"}, "refusing to send a token over plain http to a host that is not loopback (10.0.0.1:8080): use an https:// queue URL"},
		{[]string{"--token", "t", "--queue", "http://queue.example.org"}, "pass --insecure-http or set AF_INSECURE_HTTP=1"},
		{[]string{"--token", "t", "--queue", "http://10.0.0.1:8080", "--insecure-http", "--key", "/nonexistent/af.key"}, "/nonexistent/af.key"},
		{[]string{"--token", "t", "--queue", "https://10.0.0.1:8080", "--key", "/nonexistent/af.key"}, "/nonexistent/af.key"},
		{[]string{"--token", "t", "--ca", "/nonexistent/ca.pem"}, "--ca (AF_CA_FILE): CA file: open /nonexistent/ca.pem: no such file or directory"},
	}
	if !decompress.BuiltWithISAL {
		tests = append(tests, struct {
			args []string
			want string
		}{[]string{"--token", "t", "--gzip", "isal"}, "--gzip: gzip decoder isal is not available: this binary was built without ISA-L"})
	}
	for _, tc := range tests {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, &out)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("worker %v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}
