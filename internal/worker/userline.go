package worker

// This file: finding the user's own file and line in a failed job's
// output, so every message about the failure names it.

import (
	"regexp"
	"strings"
)

var (
	// pyFrame is a Python traceback's frame line, and a SyntaxError's
	// location line (which has no ", in function").
	pyFrame = regexp.MustCompile(`^\s*File "([^"]+)", line (\d+)`)
	// goFrame is the file line under a Go stack frame's function line.
	goFrame = regexp.MustCompile(`^\t(/\S+\.go):(\d+)`)
)

// userLocation returns where in the job's own code it failed, as "FILE
// line N" (Python) or "FILE:N" (Go), or "". For Python it is the last
// frame outside the helper and the Python library (the innermost of the
// user's), for a Go panic the first frame outside the runtime, the
// standard library and the SDK.
func userLocation(jobOutput string) string {
	lines := strings.Split(jobOutput, "\n")
	py, pyAny := "", ""
	for _, l := range lines {
		m := pyFrame.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		loc := m[1] + " line " + m[2]
		pyAny = loc
		if !pythonLibrary(m[1]) {
			py = loc
		}
	}
	if py != "" {
		return py
	}
	if pyAny != "" {
		return pyAny
	}
	panicked := false
	for i, l := range lines {
		if strings.Contains(l, "panic: ") || strings.HasPrefix(l, "goroutine ") {
			panicked = true
		}
		if !panicked || i == 0 {
			continue
		}
		m := goFrame.FindStringSubmatch(l)
		if m == nil || !goUserFunc(lines[i-1]) {
			continue
		}
		return m[1] + ":" + m[2]
	}
	return ""
}

// pythonLibrary reports whether a traceback's file is the helper's or
// Python's own, not the job's.
func pythonLibrary(file string) bool {
	return strings.HasPrefix(file, "<") || strings.HasPrefix(file, "/usr/lib/python") ||
		strings.HasPrefix(file, "/usr/local/lib/python") || strings.HasSuffix(file, "/af_helper.py")
}

// goUserFunc reports whether a Go stack frame's function line is the
// job's code: package main or a module's package (its path's first
// element has a dot), but not the SDK's; the standard library's packages
// have no dot in their first element.
func goUserFunc(fn string) bool {
	fn = strings.TrimSpace(fn)
	if strings.HasPrefix(fn, "main.") {
		return true
	}
	first, _, _ := strings.Cut(fn, "/")
	return strings.Contains(first, ".") && strings.Contains(fn, "/") && !strings.Contains(fn, "/sdk/afjob.")
}
