// Package version says which build of af and worker is running: the
// version the Makefile stamps in with -ldflags -X (from `git describe`),
// else the module version and VCS revision Go recorded in the binary.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at link time:
//
//	go build -ldflags "-X github.com/af-project/af/internal/version.version=$(git describe --tags --always --dirty)"
//
// The Makefile does; a plain `go build` leaves it empty.
var version string

// Info is what a binary knows about its build.
type Info struct {
	// Version is the stamped version, else the module's version from
	// the build info ("(devel)" for a build inside the module), else
	// "unknown".
	Version string
	// Revision is the VCS commit Go recorded ("" when built with
	// -buildvcs=false, as the Makefile and tests do), Modified whether
	// the work tree had changes.
	Revision string
	Modified bool
	// Go is the toolchain that built the binary.
	Go string
}

// Get reads the build's version.
func Get() Info {
	return from(version, debug.ReadBuildInfo)
}

func from(stamped string, read func() (*debug.BuildInfo, bool)) Info {
	in := Info{Version: stamped, Go: runtime.Version()}
	bi, ok := read()
	if ok {
		if in.Version == "" && bi.Main.Version != "" {
			in.Version = bi.Main.Version
		}
		if bi.GoVersion != "" {
			in.Go = bi.GoVersion
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				in.Revision = s.Value
			case "vcs.modified":
				in.Modified = s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		in.Version = "unknown"
	}
	return in
}

// String is the one line `af --version` and `worker --version` print
// after the command's name: "v1.2.0-3-gabc1234 (revision abc1234…, go1.26.8)".
func (in Info) String() string {
	s := in.Version
	var extra string
	if in.Revision != "" {
		rev := in.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		extra = "revision " + rev
		if in.Modified {
			extra += " (modified)"
		}
		extra += ", "
	}
	return fmt.Sprintf("%s (%s%s)", s, extra, in.Go)
}
