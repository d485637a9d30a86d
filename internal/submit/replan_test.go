package submit_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/af-project/af/internal/runner"
	"github.com/af-project/af/internal/submit"
	"github.com/af-project/af/internal/taskdef"
)

// TestReplanRefuses: af resubmit refuses, before asking the index or
// minting anything, a graph whose image ran unpinned, a damaged record,
// and an image id this host's engine no longer holds.
func TestReplanRefuses(t *testing.T) {
	t.Parallel()
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	good := taskdef.Provenance{
		GraphID: "graph-rp", Image: taskdef.ImageRecord{Asked: "af/x", Ref: "sha256:" + strings.Repeat("0", 64), Source: "image-id"},
		Inputs: []taskdef.InputFile{{Key: "a", Size: 1}, {Key: "b", Size: 2}}, Loads: []int{2},
	}
	for _, tc := range []struct {
		name  string
		edit  func(p *taskdef.Provenance)
		input bool // the user's to fix (exit 2)
		want  string
	}{
		{"unpinned image", func(p *taskdef.Provenance) {
			p.Image = taskdef.ImageRecord{Asked: "af/x", Ref: "af/x", Source: "unpinned"}
		}, true,
			"graph graph-rp ran image af/x unpinned (it was submitted with --no-image-check), so which build it ran is not known"},
		{"loads that do not cover the inputs", func(p *taskdef.Provenance) { p.Loads = []int{1} }, false, "splits 1 of its 2 input files into mappers; it is damaged"},
		{"no inputs", func(p *taskdef.Provenance) { p.Inputs, p.Loads = nil, nil }, false, "lists no input files"},
		{"an image id the engine lacks", func(*taskdef.Provenance) {}, true, "is not on this host's Docker engine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := good
			tc.edit(&p)
			// No queue and no AWS settings: a refusal must come first.
			_, err := (&submit.Submitter{Docker: d}).Replan(context.Background(), submit.ResubmitRequest{Of: p})
			if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, submit.ErrInput) != tc.input {
				t.Fatalf("Replan = %v; want %q (input error: %v)", err, tc.want, tc.input)
			}
		})
	}
}
