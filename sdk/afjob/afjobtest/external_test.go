package afjobtest_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestJobInAnotherModule builds and tests a job in a module of its own, as
// an analyst's repository would: its go.mod requires
// github.com/af-project/af/sdk and replaces it with a checkout of af's sdk/
// directory (images/README.md, "Writing a Go job"). Offline: GOPROXY=off,
// GOFLAGS=-mod=mod, no workspace; the SDK needs no other module.
func TestJobInAnotherModule(t *testing.T) {
	t.Parallel()
	_, file, _, _ := runtime.Caller(0)
	sdkDir, err := filepath.Abs(filepath.Join(filepath.Dir(file), "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module example.com/osjob\n\ngo 1.26.0\n\nrequire github.com/af-project/af/sdk v0.0.0\n\nreplace github.com/af-project/af/sdk => " + sdkDir + "\n",
		"main.go": `package main

import "github.com/af-project/af/sdk/afjob"

var job = afjob.Job{
	Map: func(id string, dims []string, doc []byte, ctx *afjob.Context) error {
		os, ok := afjob.Field(doc, "info", "OS")
		if !ok {
			return ctx.Write("UNKNOWN", 1)
		}
		return ctx.Write(afjob.String(os), 1)
	},
	Reduce: func(key []byte, values [][]byte, ctx *afjob.Context) error {
		return ctx.WriteCSV(afjob.String(key), len(values))
	},
}

func main() { afjob.Main(job) }
`,
		"main_test.go": `package main

import (
	"testing"

	"github.com/af-project/af/sdk/afjob/afjobtest"
)

func TestJob(t *testing.T) {
	out, err := afjobtest.Run(job, []afjobtest.Doc{
		{File: "f", ID: "a", JSON: ` + "`" + `{"info":{"OS":"Linux, of course"}}` + "`" + `},
		{ID: "b", JSON: ` + "`" + `{}` + "`" + `},
	})
	if err != nil || out != "\"Linux, of course\",1\nUNKNOWN,1\n" {
		t.Fatalf("got %q, %v", out, err)
	}
}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"build", "-o", filepath.Join(dir, "job"), "."},
		{"vet", "./..."},
		{"test", "-count=1", "./..."},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("go %s in a module of the job's own: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "job")); err != nil || fi.Size() == 0 {
		t.Fatalf("no job binary: %v", err)
	}
}
