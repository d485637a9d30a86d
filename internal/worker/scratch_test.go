package worker

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestSweepScratchRemovesOnlyTaskDirs(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	stale := []string{"QV0oNj8A-2RtClIv-pF42Q-0", "abcdefgh-12"}
	kept := []string{"notes", "short-1", "QV0oNj8A2RtClIvpF42Q-x", "QV0oNj8A2RtClIvpF42Q-"}
	for _, d := range append(slices.Clone(stale), kept...) {
		if err := os.MkdirAll(filepath.Join(root, d, "inputs"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, d, "output"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A file named like a task dir is not one.
	if err := os.WriteFile(filepath.Join(root, "abcdefgh-13"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, "abcdefgh-13")
	n, err := sweepScratch(root)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(stale) {
		t.Fatalf("removed %d, want %d", n, len(stale))
	}
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	slices.Sort(left)
	slices.Sort(kept)
	if !slices.Equal(left, kept) {
		t.Fatalf("left %v, want %v", left, kept)
	}
}
