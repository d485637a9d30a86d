package clustertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// JobImage builds a job image from base with files written over
// it (path in the image → content), tagged by a hash of all of it and
// labelled af.test, so an unchanged one is reused across runs. An image
// not FROM af/os-count-go (a Python one) gets this tree's af_helper.py, so
// tests see the helper they are built with, not the one in af/python.
func JobImage(t testing.TB, name, base string, files map[string]string) string {
	t.Helper()
	if base != "af/os-count-go" {
		// This tree's helper, not the one af/python was built with.
		helper, err := os.ReadFile(filepath.Join(repoRoot(t), "images/python/af_helper.py"))
		if err != nil {
			t.Fatal(err)
		}
		files["/usr/lib/python3/dist-packages/af_helper.py"] = string(helper)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	baseID, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", base).Output()
	if err != nil {
		t.Fatalf("inspect %s: %v", base, err)
	}
	dir := t.TempDir()
	h := sha256.New()
	h.Write(baseID)
	df := "FROM " + base + "\nLABEL af.test=jobimage\n"
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
		fmt.Fprintf(h, "%s %d\n%s", p, len(files[p]), files[p])
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	tag := "af-test/" + name + ":" + hex.EncodeToString(h.Sum(nil))[:12]
	if exec.CommandContext(ctx, "docker", "image", "inspect", tag).Run() == nil {
		return tag
	}
	if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", tag, dir).CombinedOutput(); err != nil {
		t.Fatalf("docker build %s: %v\n%s", tag, err, out)
	}
	return tag
}

// repoRoot is the repository's root, found from the working directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}
