package worker

// This file: a job whose program could not start, told in terms of
// analysis-tools.yml rather than the init process's words.

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/af-project/af/internal/jobspec"
	"github.com/af-project/af/internal/taskdef"
)

// tiniExec is the line Docker's init (tini) prints when it cannot exec
// the container's command: "[FATAL tini (7)] exec /job/x failed: No such
// file or directory".
// It is the output's first line: the command never ran, so nothing else
// printed before it.
var tiniExec = regexp.MustCompile(`^\s*\[FATAL tini \(\d+\)\] exec (.+) failed: (.+)`)

// startFailure explains a run whose command never started, or "" when
// the job started (its own exit code and output say why it failed). The
// init process exits 127 when the command is not found, 126 when it may
// not be executed, and 1 when the kernel cannot run the file (exec format
// error); each is the job spec's language or mapper/reducer field.
func startFailure(spec jobspec.Spec, kind taskdef.Kind, exitCode int, jobOutput string) string {
	m := tiniExec.FindStringSubmatch(jobOutput)
	if m == nil {
		return ""
	}
	prog, why := strings.TrimSpace(m[1]), strings.TrimSpace(m[2])
	field, file := "mapper", spec.Mapper
	if kind == taskdef.KindReducer {
		field, file = "reducer", spec.Reducer
	}
	if spec.Original {
		field = "script"
	}
	where := fmt.Sprintf("%s: in %s", field, jobspec.Path)
	said := fmt.Sprintf(" (exit %d: %s)", exitCode, strings.TrimSpace(m[0]))
	lower := strings.ToLower(why)
	switch {
	case spec.Language == jobspec.Python && prog == "python3":
		return fmt.Sprintf("the image has no python3, so it cannot run a language: python job: a Go job (sdk/afjob) needs language: go in %s with mapper: naming its binary, another executable language: binary; a Python job's image is built FROM af/python%s",
			jobspec.Path, said)
	case strings.Contains(lower, "no such file"):
		return fmt.Sprintf("the job's %s %s was not found in the image: check %s against the files the image's Dockerfile copies (or, for a dynamically linked binary, build it static: CGO_ENABLED=0)%s",
			field, prog, where, said)
	case strings.Contains(lower, "permission denied"):
		hint := "make it executable in the image (chmod +x)"
		if strings.HasSuffix(file, ".py") {
			hint = "a Python module needs language: python"
		}
		return fmt.Sprintf("the job's %s %s cannot be executed: with language: %s, %s must name an executable program; %s%s",
			field, prog, spec.Language, where, hint, said)
	case strings.Contains(lower, "exec format error"):
		return fmt.Sprintf("the job's %s %s is not a program this worker can run (exec format error): a Python module needs language: python in %s, a script a #! line, and a binary must be built for linux on the workers' architecture%s",
			field, prog, jobspec.Path, said)
	}
	return fmt.Sprintf("the job's %s %s could not be started: check %s%s", field, prog, where, said)
}
