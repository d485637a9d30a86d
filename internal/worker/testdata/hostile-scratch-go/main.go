// Command hostile-scratch-go is the Go twin of testdata/hostile-scratch:
// os-count that, in the tasks of the kind AF_TEST_ATTACK_TASK names (map
// or reduce), replaces /scratch/output after writing it, with a symlink
// to the host file AF_TEST_CANARY (AF_TEST_ATTACK=symlink-output, also
// planting symlinks to AF_TEST_PLANT at the names the worker once used in
// /scratch) or with a FIFO (fifo-output). internal/worker/hostile_test.go
// builds it FROM scratch into af-test/hostile-scratch-go.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/af-project/af/sdk/afjob"
)

func main() {
	attack := os.Getenv("AF_TEST_ATTACK")
	kind := os.Getenv("AF_TASK_KIND")
	if len(os.Args) > 1 {
		kind = os.Args[1]
	}
	mine := os.Getenv("AF_TEST_ATTACK_TASK") == kind
	scratch := filepath.Dir(os.Getenv("AF_OUTPUT"))
	if mine && attack == "symlink-output" {
		if target := os.Getenv("AF_TEST_PLANT"); target != "" {
			for _, name := range []string{"result.sorted", "inputs", "work", "af-sort-run-1", "af-sort-run-2"} {
				_ = os.Symlink(target, filepath.Join(scratch, name))
			}
		}
	}
	afjob.Main(afjob.Job{
		Map: func(_ string, _ []string, doc []byte, ctx *afjob.Context) error {
			name, ok := afjob.Field(doc, "info", "OS")
			if !ok {
				return ctx.Write("UNKNOWN", 1)
			}
			return ctx.Write(afjob.String(name), 1)
		},
		Combine: sum,
		Reduce:  sum,
	})
	if !mine {
		return
	}
	// After the output is written: one rename, so the worker never sees
	// it missing.
	tmp := filepath.Join(scratch, "output.new")
	var err error
	switch attack {
	case "symlink-output":
		err = os.Symlink(os.Getenv("AF_TEST_CANARY"), tmp)
	case "fifo-output":
		err = syscall.Mkfifo(tmp, 0o600)
	default:
		return
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(scratch, "output"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "hostile:", err)
		os.Exit(1)
	}
	fmt.Println("hostile: replaced /scratch/output (" + attack + ")")
}

func sum(key []byte, values [][]byte, ctx *afjob.Context) error {
	var n int64
	for _, v := range values {
		i, err := afjob.Int(v)
		if err != nil {
			return err
		}
		n += i
	}
	return ctx.Write(afjob.String(key), n)
}
