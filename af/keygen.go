package main

import (
	"context"
	"fmt"
	"io"

	"github.com/af-project/af/internal/creds"
)

func init() {
	register(command{
		name:    "keygen",
		summary: "make the worker pool's key pair (af.key for workers, af.pub for the queue)",
		run:     runKeygen,
	})
}

// runKeygen writes af.key/af.pub and tells the operator where each goes:
// the split is the whole point, so the hint is part of the output.
func runKeygen(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("keygen", "keygen [--dir DIR] [--force]", stderr)
	dir := fs.String("dir", envOr("AF_KEY_DIR", "."), "directory to write af.key and af.pub into (env AF_KEY_DIR)")
	force := fs.Bool("force", false, "replace an existing af.key/af.pub (workers with the old af.key can no longer open new jobs' credentials)")
	if err := parseErr(fs.Parse(args)); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected arguments %q (use --dir DIR to choose where the keys go)", errUsage, fs.Args())
	}
	pubPath, keyPath, err := creds.GenerateKeyPair(*dir, *force)
	if err != nil {
		return err
	}
	pub, err := creds.LoadPublicKey(pubPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "private key: %s (mode 0600)\npublic key:  %s\n%s\n\n", keyPath, pubPath, pub)
	fmt.Fprintf(stdout, "Give %s to the workers only (worker --key %s); anyone holding it can open every job's credentials.\n", keyPath, keyPath)
	fmt.Fprintf(stdout, "Publish %s through the queue (pool_key: %s in af serve's config); af submit seals credentials to the key the queue serves.\n", pubPath, pubPath)
	return nil
}
