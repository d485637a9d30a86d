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
	for _, want := range []string{"--queue URL --token T --key af.key", "AF_QUEUE_URL", "-capacity",
		"-max-scratch-bytes", "AF_WORKER_MAX_SCRATCH_BYTES", "(default 10GiB)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("AF_TOKEN", "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--queue", "http://127.0.0.1:1"}, "no token"},
		{[]string{"--token", "t", "--input", "pipe"}, `--input "pipe": want fifo or stdin`},
		{[]string{"--token", "t", "--key", "/nonexistent/af.key"}, "/nonexistent/af.key"},
		{[]string{"--token", "t", "--log-level", "loud"}, "--log-level"},
		{[]string{"--token", "t", "--gzip", "zlib"}, `--gzip: gzip decoder "zlib": want auto, isal or go`},
		{[]string{"--token", "t", "--max-scratch-bytes", "10 gigs"}, `"10 gigs" is not a byte count`},
		{[]string{"--token", "t", "--max-scratch-bytes", "-1"}, `"-1" is not a byte count`},
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

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		show string
	}{
		{"1048576", 1 << 20, "1MiB"}, {"10GiB", 10 << 30, "10GiB"}, {"10G", 10 << 30, "10GiB"}, {"512MiB", 512 << 20, "512MiB"},
		{"3K", 3 << 10, "3KiB"}, {"1TiB", 1 << 40, "1TiB"}, {"1000", 1000, "1000"}, {"0", 0, "0"}, {"7B", 7, "7"},
	} {
		var b byteSize
		if err := b.Set(tc.in); err != nil || int64(b) != tc.want || b.String() != tc.show {
			t.Errorf("Set(%q): %d %q %v, want %d %q", tc.in, int64(b), b.String(), err, tc.want, tc.show)
		}
	}
	for _, bad := range []string{"", "GiB", "1.5GiB", "-3", "99999999999TiB", "1PiB"} {
		var b byteSize
		if err := b.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted: %d", bad, int64(b))
		}
	}
}
