package registry_test

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/af-project/af/internal/registry"
	"github.com/af-project/af/internal/registrytest"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in                 string
		domain, path, name string
		tag, digest        string
		explicit           bool
	}{
		{"af/os-count", "docker.io", "af/os-count", "af/os-count", "latest", "", false},
		{"af/os-count:v2", "docker.io", "af/os-count", "af/os-count", "v2", "", false},
		{"python", "docker.io", "library/python", "python", "latest", "", false},
		{"127.0.0.1:5000/af/os-count:v1", "127.0.0.1:5000", "af/os-count", "127.0.0.1:5000/af/os-count", "v1", "", true},
		{"localhost/x", "localhost", "x", "localhost/x", "latest", "", true},
		{"reg.example.com/team/job@sha256:" + strings.Repeat("a", 64), "reg.example.com", "team/job", "reg.example.com/team/job", "", "sha256:" + strings.Repeat("a", 64), true},
	}
	for _, tt := range tests {
		r, err := registry.Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if r.Domain != tt.domain || r.Path != tt.path || r.Name != tt.name || r.Tag != tt.tag || r.Digest != tt.digest || r.ExplicitDomain != tt.explicit {
			t.Errorf("Parse(%q) = %+v", tt.in, r)
		}
	}
	for _, bad := range []string{"", "a b", "x:y:z", "x@sha256:short"} {
		if _, err := registry.Parse(bad); err == nil || !strings.Contains(err.Error(), "NAME[:TAG]") {
			t.Errorf("Parse(%q) = %v, want an error saying the form", bad, err)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	enc := base64.StdEncoding.EncodeToString
	cfg := `{"auths": {
		"127.0.0.1:5000": {"auth": "` + enc([]byte("u1:p:w")) + `"},
		"https://index.docker.io/v1/": {"auth": "` + enc([]byte("hub:secret")) + `"},
		"https://reg.example.com": {"username": "u3", "password": "p3"}
	}, "credsStore": "desktop"}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := registry.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	for domain, want := range map[string]string{"127.0.0.1:5000": "u1:p:w", "docker.io": "hub:secret", "reg.example.com": "u3:p3", "other.example.com": ":"} {
		a := c.For(domain)
		if got := a.Username + ":" + a.Password; got != want {
			t.Errorf("For(%s) = %s, want %s", domain, got, want)
		}
	}
	if h := c.For("127.0.0.1:5000").EngineHeader(); h == "" || c.For("nope").EngineHeader() != "" {
		t.Errorf("EngineHeader: %q for credentials, want it empty without", h)
	}
	// No file: anonymous, no error. A broken file names itself.
	if c, err := registry.LoadConfig(t.TempDir()); err != nil || !c.For("x").Empty() {
		t.Errorf("missing config: %v", err)
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "config.json"), []byte(`{"auths": {"h": {"auth": "!!"}}}`), 0o600)
	if _, err := registry.LoadConfig(bad); err == nil || !strings.Contains(err.Error(), "docker login h") {
		t.Errorf("bad auth: %v, want it to say docker login h", err)
	}
}

// TestDigestFromARealRegistry pushes an image to Debian's docker-registry
// on loopback and resolves its tag with and without the credentials.
func TestDigestFromARealRegistry(t *testing.T) {
	t.Parallel()
	reg := registrytest.Start(t)
	ref := reg.Host + "/af-test/tiny:v1"
	registrytest.Build(t, ref, "scratch", map[string]string{"/f": t.Name()})
	pushed := reg.Push(t, ref)

	creds, err := registry.LoadConfig(reg.DockerConfig)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r, _ := registry.Parse(ref)
	got, err := (&registry.Client{Config: creds}).Digest(ctx, r)
	if err != nil || got != pushed {
		t.Fatalf("Digest(%s) = %s, %v; docker push said %s", ref, got, err, pushed)
	}
	if r.Pinned(got) != reg.Host+"/af-test/tiny@"+pushed {
		t.Errorf("Pinned = %s", r.Pinned(got))
	}

	anon, _ := registry.LoadConfig(t.TempDir())
	_, err = (&registry.Client{Config: anon}).Digest(ctx, r)
	if !errors.Is(err, registry.ErrUnauthorized) || !strings.Contains(err.Error(), "docker login "+reg.Host) {
		t.Errorf("without credentials: %v, want ErrUnauthorized saying docker login", err)
	}
	missing, _ := registry.Parse(reg.Host + "/af-test/tiny:nope")
	_, err = (&registry.Client{Config: creds}).Digest(ctx, missing)
	if !errors.Is(err, registry.ErrNotFound) || !strings.Contains(err.Error(), "docker push") {
		t.Errorf("unknown tag: %v, want ErrNotFound saying docker push", err)
	}
}
