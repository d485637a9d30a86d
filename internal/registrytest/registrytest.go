// Package registrytest runs a real container registry for tests: Debian's
// docker-registry (the CNCF distribution registry) on a free 127.0.0.1
// port, with its own config, storage in the test's temporary directory and
// htpasswd (basic) authentication, and a Docker config directory whose
// auths hold its credentials (DOCKER_CONFIG for the docker CLI, af submit
// and the worker). The Docker engine allows plain http to 127.0.0.0/8
// registries, so no TLS is needed. A missing docker-registry fails the
// test with the command that installs it; nothing skips.
package registrytest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Binary is Debian's docker-registry.
const Binary = "docker-registry"

// Server is a running registry.
type Server struct {
	// Host is host:port, the reference's registry part (127.0.0.1:PORT).
	Host string
	// User and Password are the credentials it accepts.
	User, Password string
	// DockerConfig is a directory with a config.json whose auths hold
	// them: DOCKER_CONFIG for docker, af submit and workers.
	DockerConfig string
	// Logs holds the registry's output.
	Logs *bytes.Buffer
}

// Start runs a registry until the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath(Binary)
	if err != nil {
		t.Fatalf("%s is not installed (%v): apt-get install docker-registry (scripts/host-deps.sh test installs it)", Binary, err)
	}
	dir := t.TempDir()
	s := &Server{User: "af-test", Password: fmt.Sprintf("pw-%d", time.Now().UnixNano()), DockerConfig: filepath.Join(dir, "docker"), Logs: &bytes.Buffer{}}
	hash, err := bcrypt.GenerateFromPassword([]byte(s.Password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(s.User+":"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Host = ln.Addr().String()
	ln.Close() // the registry binds it next; nothing else on loopback races for it in a test
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
auth:
  htpasswd:
    realm: af-test
    path: %s
`, filepath.Join(dir, "storage"), s.Host, htpasswd)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(s.DockerConfig, 0o700); err != nil {
		t.Fatal(err)
	}
	dc, _ := json.Marshal(map[string]any{"auths": map[string]any{
		s.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(s.User + ":" + s.Password))},
	}})
	if err := os.WriteFile(filepath.Join(s.DockerConfig, "config.json"), dc, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = s.Logs, s.Logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("registry log:\n%s", tail(s.Logs.String(), 8000))
		}
	})
	// Ready when /v2/ answers (401: it wants the credentials).
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.Host+"/v2/", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return s
			}
		}
		select {
		case <-done:
			t.Fatalf("%s exited at start:\n%s", Binary, s.Logs.String())
		case <-ctx.Done():
			t.Fatalf("%s did not answer on %s within 30s (last: %v):\n%s", Binary, s.Host, err, s.Logs.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Docker runs the docker CLI with the registry's credentials (push, tag)
// and a deadline, and returns its combined output.
func (s *Server) Docker(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+s.DockerConfig)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Build builds an image on the engine, FROM base with files written over
// it (path in the image → content), tagged tag and labelled af.test, and
// returns its image id; the test's end removes it. No registry is needed:
// Push sends it to one.
func Build(t testing.TB, tag, base string, files map[string]string) (id string) {
	t.Helper()
	dir := t.TempDir()
	df := "FROM " + base + "\nLABEL af.test=registrytest\n"
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for i, p := range paths {
		local := fmt.Sprintf("f%d", i)
		if err := os.WriteFile(filepath.Join(dir, local), []byte(files[p]), 0o644); err != nil {
			t.Fatal(err)
		}
		df += "COPY " + local + " " + p + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	iid := filepath.Join(t.TempDir(), "iid")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "--iidfile", iid, "-t", tag, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build %s: %v\n%s", tag, err, out)
	}
	b, err := os.ReadFile(iid)
	if err != nil {
		t.Fatal(err)
	}
	id = strings.TrimSpace(string(b))
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", id).Run() })
	return id
}

var pushDigest = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64})`)

// Push pushes tag (an image on the engine named for this registry) with
// the registry's credentials and returns the manifest digest it printed.
func (s *Server) Push(t testing.TB, tag string) (digest string) {
	t.Helper()
	m := pushDigest.FindStringSubmatch(s.Docker(t, "push", tag))
	if m == nil {
		t.Fatalf("docker push %s printed no digest", tag)
	}
	return m[1]
}
