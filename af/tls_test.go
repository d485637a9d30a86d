package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/af-project/af/internal/server"
	"github.com/af-project/af/internal/tlstest"
)

// TestQueueFlagsTransport: every command that talks to the queue refuses
// to send the token over plain http to a host that is not loopback,
// naming --insecure-http and AF_INSECURE_HTTP, and a bad --ca is named
// with its env variable. (Nothing listens at these addresses: the
// refusal comes first; queueclient's TestPlainHTTPTokenOnlyToLoopback
// shows nothing is sent.)
func TestQueueFlagsTransport(t *testing.T) {
	t.Setenv("AF_TOKEN", "tok-0123456789abcdef")
	t.Setenv("AF_QUEUE_URL", "")
	t.Setenv("AF_CA_FILE", "")
	t.Setenv("AF_INSECURE_HTTP", "")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"status", "g1", "--queue", "http://10.0.0.1:8080"}, "refusing to send a token over plain http to a host that is not loopback (10.0.0.1:8080)"},
		{[]string{"cancel", "g1", "--queue", "http://af.example.org"}, "pass --insecure-http or set AF_INSECURE_HTTP=1"},
		{[]string{"rerun", "t1", "--queue", "http://0.0.0.0:8080"}, "--insecure-http"},
		{[]string{"result", "g1", "--queue", "http://127.1:8080"}, "--insecure-http"},
		{[]string{"logs", "t1", "--queue", "http://10.0.0.1:8080"}, "--insecure-http"},
		{[]string{"index", "stats", "--queue", "http://10.0.0.1:8080"}, "--insecure-http"},
		{[]string{"submit", "filters/Filter.json", "af/os-count", "--no-image-check", "--queue", "http://10.0.0.1:8080"}, "--insecure-http"},
		{[]string{"status", "g1", "--ca", "/nonexistent/ca.pem"}, "--ca (AF_CA_FILE): CA file: open /nonexistent/ca.pem: no such file"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		code := run(c.args, &out, &out)
		// Refused before anything is sent: the command line is to change
		// (exit 2, usage).
		if code != exitUsage || !strings.Contains(out.String(), c.want) {
			t.Errorf("af %v: exit %d\n%s\nwant exit 2 and %q", c.args, code, out.String(), c.want)
		}
	}
	// Allowed by the flag or the environment, the client is made (and
	// would send; no request is made here).
	for _, c := range []struct {
		env  string
		args []string
		ok   bool
	}{
		{"", nil, false},
		{"", []string{"--insecure-http"}, true},
		{"1", nil, true},
		{"true", nil, true},
		{"0", nil, false},
		{"1", []string{"--insecure-http=false"}, false},
	} {
		t.Setenv("AF_INSECURE_HTTP", c.env)
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		qf := addQueueFlags(fs)
		if err := fs.Parse(append([]string{"--queue", "http://10.0.0.1:8080"}, c.args...)); err != nil {
			t.Fatal(err)
		}
		if _, err := qf.client(); (err == nil) != c.ok {
			t.Errorf("AF_INSECURE_HTTP=%q %v: %v, want allowed=%v", c.env, c.args, err, c.ok)
		}
	}
}

// TestPrintFirstStartTLS: with a certificate the hints are https.
func TestPrintFirstStartTLS(t *testing.T) {
	t.Parallel()
	cfg := server.Config{Listen: "0.0.0.0:8443", TLSCert: "c.pem", TLSKey: "k.pem", Tokens: []server.Token{{Name: "submit", Role: server.RoleSubmit, Token: server.NewToken()}}}
	var b bytes.Buffer
	printFirstStart(&b, "/var/lib/af/config.yaml", cfg, false)
	if !strings.Contains(b.String(), "export AF_QUEUE_URL=https://127.0.0.1:8443") {
		t.Errorf("first start output lacks the https URL:\n%s", b.String())
	}
}

// TestServeTLSFlagErrors: af serve refuses half a certificate and a bad
// certificate file before it serves, naming the flag or the file.
func TestServeTLSFlagErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := tlstest.NewCA("af test CA")
	if err != nil {
		t.Fatal(err)
	}
	a, err := ca.Server(tlstest.LeafOptions{}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.Server(tlstest.LeafOptions{}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	files, err := tlstest.WriteFiles(dir, "a", ca, a)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := filepath.Join(dir, "other-key.pem")
	if err := os.WriteFile(otherKey, other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--tls-cert", files.Cert}, 2, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-key", files.Key}, 2, "--tls-cert and --tls-key go together"},
		{[]string{"--tls-cert", filepath.Join(dir, "nope.pem"), "--tls-key", files.Key}, 2, "tls_cert (--tls-cert) " + filepath.Join(dir, "nope.pem")},
		{[]string{"--tls-cert", files.Cert, "--tls-key", otherKey}, 1, "the key must be the one the certificate was issued for"},
	}
	for i, c := range cases {
		var out bytes.Buffer
		args := append([]string{"serve", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "data", string(rune('a'+i)))}, c.args...)
		if code := run(args, &out, &out); code != c.code || !strings.Contains(out.String(), c.want) {
			t.Errorf("af %v: exit %d\n%s\nwant exit %d and %q", args, code, out.String(), c.code, c.want)
		}
	}
}
