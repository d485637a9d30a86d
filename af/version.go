package main

import (
	"context"
	"fmt"
	"io"

	"github.com/af-project/af/internal/version"
)

func init() {
	register(command{
		name:    "version",
		summary: "print af's version (also af --version)",
		run:     runVersion,
	})
}

func runVersion(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "version", stderr)
	if err := parseErr(fs.Parse(args)); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: version takes no arguments", errUsage)
	}
	_, err := fmt.Fprintf(stdout, "af %s\n", version.Get())
	return err
}
