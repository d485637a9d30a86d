package submit

// This file: af submit's look at the job before anything is posted: the
// image's analysis-tools.yml parses, its entry points exist and fit its
// language, and a Python job compiles.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/runner"
)

// JobError is a job that would fail on every worker, found before
// posting: the message names the file, the line or the field, and the
// fix.
type JobError struct{ Msg string }

func (e *JobError) Error() string { return e.Msg }

// compileTimeout bounds the Python compile check's container.
const compileTimeout = 60 * time.Second

// compileScript compiles each FIELD=PATH argument's file without running
// it (compile(), as py_compile does, writing nothing) and prints one
// message a problem: a missing file, a compiled program where a module
// is wanted, a syntax error with its line and caret. It exits 1 on any.
const compileScript = `import sys
bad = 0
def say(m):
    global bad
    bad = 1
    sys.stdout.write(m + "\n")
for arg in sys.argv[1:]:
    field, path = arg.split("=", 1)
    where = "%s: in /etc/analysis-tools.yml" % field
    try:
        with open(path, "rb") as f:
            src = f.read()
    except FileNotFoundError:
        say("%s does not exist in the image: check %s, and that the image's Dockerfile copies the file there" % (path, where))
        continue
    except IsADirectoryError:
        say("%s is a directory, not a Python module: set %s to the module's .py file" % (path, where))
        continue
    except OSError as e:
        say("%s cannot be read in the image (%s): make it readable by every user (chmod a+r)" % (path, e.strerror))
        continue
    if src.startswith(b"\x7fELF"):
        say("%s is a compiled program, not a Python module: a Go job (sdk/afjob) needs language: go in /etc/analysis-tools.yml, any other executable language: binary" % path)
        continue
    try:
        compile(src, path, "exec", dont_inherit=True)
    except SyntaxError as e:
        say("%s line %s: %s: %s" % (e.filename or path, e.lineno, type(e).__name__, e.msg))
        if e.text:
            text = e.text.rstrip("\n")
            sys.stdout.write("    %s\n" % text.strip())
            if e.offset:
                sys.stdout.write("    %s^\n" % (" " * max(0, e.offset - 1 - (len(text) - len(text.lstrip())))))
    except ValueError as e:
        say("%s: %s" % (path, e))
sys.exit(bad)
`

// CheckJob reads image's analysis-tools.yml and checks the job it names
// through rn: every entry point exists, a Python job compiles, a Go or
// binary job's entry points are programs. A job that would fail is a
// *JobError. An image that is not on this engine, or an engine that is not
// reachable, is said on warn and checked no further (the workers may
// have it).
func CheckJob(ctx context.Context, rn *runner.Runner, image string, warn io.Writer) error {
	_, err := checkJob(ctx, rn, image, warn)
	return err
}

// checkJob is CheckJob, also returning the analysis-tools.yml it read (nil
// when it could not read one), which the graph's provenance records.
func checkJob(ctx context.Context, rn *runner.Runner, image string, warn io.Writer) ([]byte, error) {
	data, err := rn.ReadImageFile(ctx, image, jobspec.Path, 1<<20)
	if err != nil {
		return nil, checkJobErr(image, err, warn)
	}
	return data, checkSpec(ctx, rn, image, data)
}

// checkJobErr is what a failed read of analysis-tools.yml means.
func checkJobErr(image string, err error, warn io.Writer) error {
	switch {
	case errors.Is(err, runner.ErrNoImageFile):
		return &JobError{Msg: fmt.Sprintf("image %s has no %s, so no worker can run it: add one to the image (COPY analysis-tools.yml %s; see images/README.md)", image, jobspec.Path, jobspec.Path)}
	case errors.Is(err, runner.ErrNotImageFile), errors.Is(err, runner.ErrImageFileTooLarge):
		return &JobError{Msg: fmt.Sprintf("image %s: %v: make %s a regular file of a few lines", image, err, jobspec.Path)}
	case err != nil:
		if cerrdefs.IsNotFound(err) {
			fmt.Fprintf(warn, "af: image %s is not on this host's Docker engine: its %s and job were not checked before posting\n", image, jobspec.Path)
			return nil
		}
		fmt.Fprintf(warn, "af: could not read %s from image %s (%v): the job was not checked before posting\n", jobspec.Path, image, err)
	}
	return nil
}

// checkSpec checks the job analysis-tools.yml (data) describes.
func checkSpec(ctx context.Context, rn *runner.Runner, image string, data []byte) error {
	spec, err := jobspec.Parse(image+":"+jobspec.Path, data)
	if err != nil {
		return &JobError{Msg: err.Error()}
	}
	entries := entryPoints(spec)
	if spec.Language == jobspec.Python {
		return compilePython(ctx, rn, image, entries)
	}
	for _, e := range entries {
		if err := checkProgram(ctx, rn, image, spec, e); err != nil {
			return err
		}
	}
	return nil
}

// entryPoint is a file analysis-tools.yml names, with its field.
type entryPoint struct{ field, path string }

func entryPoints(s jobspec.Spec) []entryPoint {
	mapper, reducer := "mapper", "reducer"
	if s.Original {
		mapper, reducer = "script", "script"
	}
	out := []entryPoint{{mapper, s.Mapper}}
	if s.Reducer != s.Mapper {
		out = append(out, entryPoint{reducer, s.Reducer})
	}
	switch s.Combine {
	case jobspec.CombineAuto, jobspec.CombineTrue, jobspec.CombineFalse:
	default:
		if s.Combine != s.Mapper && s.Combine != s.Reducer {
			out = append(out, entryPoint{"combine", s.Combine})
		}
	}
	return out
}

func compilePython(ctx context.Context, rn *runner.Runner, image string, entries []entryPoint) error {
	cmd := []string{"python3", "-c", compileScript}
	for _, e := range entries {
		cmd = append(cmd, e.field+"="+e.path)
	}
	res, err := rn.RunCheck(ctx, image, cmd, compileTimeout)
	if err != nil {
		return fmt.Errorf("compile the job in image %s: %w", image, err)
	}
	out := strings.TrimSpace(res.Output)
	switch {
	case res.ExitCode == 0:
		return nil
	case strings.Contains(out, "exec python3 failed"):
		return &JobError{Msg: fmt.Sprintf("image %s has no python3, so it cannot run a language: python job: a Go job (sdk/afjob) needs language: go in %s, another executable language: binary; a Python job's image is built FROM af/python", image, jobspec.Path)}
	case res.ExitCode == 1 && out != "":
		return &JobError{Msg: fmt.Sprintf("image %s: the job does not compile, so every task would fail; fix it and rebuild the image:\n%s", image, out)}
	}
	return fmt.Errorf("compile the job in image %s: exit %d: %s", image, res.ExitCode, out)
}

// checkProgram checks a go or binary job's entry point: it exists, may be
// executed, and is a binary or a #! script.
func checkProgram(ctx context.Context, rn *runner.Runner, image string, spec jobspec.Spec, e entryPoint) error {
	where := fmt.Sprintf("%s: in %s", e.field, jobspec.Path)
	head, mode, err := rn.ImageFileHead(ctx, image, e.path, 4)
	switch {
	case errors.Is(err, runner.ErrNoImageFile):
		return &JobError{Msg: fmt.Sprintf("image %s has no %s, the job's %s: check %s, and that the image's Dockerfile copies the program there", image, e.path, e.field, where)}
	case errors.Is(err, runner.ErrNotImageFile):
		if mode.IsDir() {
			return &JobError{Msg: fmt.Sprintf("image %s: %s (the job's %s) is a directory: set %s to the program", image, e.path, e.field, where)}
		}
		return nil // a link: the engine follows it at run time
	case err != nil:
		return fmt.Errorf("check the job's %s in image %s: %w", e.field, image, err)
	}
	if mode&0o111 == 0 {
		hint := "make it executable in the image (chmod +x)"
		if strings.HasSuffix(e.path, ".py") {
			hint = "a Python module needs language: python"
		}
		return &JobError{Msg: fmt.Sprintf("image %s: %s (the job's %s) is not executable, so language: %s cannot run it: %s", image, e.path, e.field, spec.Language, hint)}
	}
	if !strings.HasPrefix(string(head), "\x7fELF") && !strings.HasPrefix(string(head), "#!") {
		return &JobError{Msg: fmt.Sprintf("image %s: %s (the job's %s) is neither a compiled program nor a #! script, so language: %s cannot run it: a Python module needs language: python in %s", image, e.path, e.field, spec.Language, jobspec.Path)}
	}
	return nil
}
