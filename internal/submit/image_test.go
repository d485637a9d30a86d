package submit

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/af-project/af/internal/registry"
	"github.com/af-project/af/internal/runner"
)

// TestPinImage covers the pins that need no registry; the registry's
// (REGISTRY/NAME:TAG to NAME@sha256:…) is e2e's TestRegistryPinnedDigest,
// against a real one.
func TestPinImage(t *testing.T) {
	t.Parallel()
	d, err := runner.NewDockerClient()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	info, err := runner.InspectImage(context.Background(), d, "af/os-count")
	if err != nil {
		t.Fatalf("%v: run `make images`", err)
	}
	digest := "sha256:" + strings.Repeat("b", 64)
	tests := []struct {
		name, image      string
		docker           bool
		ref, source, err string
	}{
		{"by digest", "reg.example.com/job@" + digest, true, "reg.example.com/job@" + digest, "digest", ""},
		{"hand-loaded: its image id", "af/os-count", true, info.ID, "image-id", ""},
		{"hand-loaded, latest implied", "af/os-count:latest", true, info.ID, "image-id", ""},
		{"no engine asked", "af/os-count", false, "af/os-count", "unpinned", ""},
		{"not on this host", "af-test/no-such-image:x", true, "", "", "is not on this host's Docker engine"},
		{"not a reference", "Bad Image", true, "", "", "IMAGE: image \"Bad Image\" is not an image reference"},
		{"registry unreachable", "127.0.0.1:1/af/x:v1", true, "", "", "resolve image 127.0.0.1:1/af/x:v1 to its digest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := &Submitter{Registry: &registry.Client{}}
			if tt.docker {
				s.Docker = d
			}
			pin, err := s.PinImage(context.Background(), tt.image)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("PinImage(%s) = %+v, %v; want an error saying %q", tt.image, pin, err, tt.err)
				}
				return
			}
			if err != nil || pin.Ref != tt.ref || pin.Source != tt.source || pin.Note == "" {
				t.Fatalf("PinImage(%s) = %+v, %v; want %s from %s", tt.image, pin, err, tt.ref, tt.source)
			}
			if pin.Pinned() != (tt.source != "unpinned") {
				t.Errorf("Pinned() = %v", pin.Pinned())
			}
		})
	}
	if _, err := runner.InspectImage(context.Background(), d, "af-test/no-such-image:x"); !errors.Is(err, runner.ErrImageNotFound) {
		t.Errorf("InspectImage of a missing image: %v, want ErrImageNotFound", err)
	}
}
