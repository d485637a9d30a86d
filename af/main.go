// Command af is the analyst's and operator's tool: submit jobs, build and
// query the file index, serve the queue, and follow graphs. Each subcommand
// lives in its own file and registers itself in init; the logic lives in
// internal packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one `af` subcommand.
type command struct {
	name    string
	summary string
	// run gets the arguments after the subcommand name. It returns
	// errUsage (wrapped or not) for bad flags so main prints the usage.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

var commands = map[string]command{}

// register adds a subcommand; each subcommand file calls it from init.
func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("af: duplicate command " + c.name)
	}
	commands[c.name] = c
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "af runs MapReduce jobs over files in S3 on a pool of Docker workers.\n\nUsage: af <command> [flags] [args]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'af <command> --help' (or 'af help <command>') for a command's flags;\n'af --version' prints af's version.\n\n%s", exitCodesHelp)
	fmt.Fprintf(w, "\nWith --wait, af submit writes only the result to standard output; progress,\nlinks and errors go to standard error (see README's \"Scripting af\").\n")
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is af with its arguments; it returns the exit code (exitCode's
// table). Help that was asked for goes to stdout with exit 0; a usage
// error goes to stderr with exit 2.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	case "help":
		if len(args) == 1 {
			usage(stdout)
			return exitOK
		}
		// af help CMD [SUB] is af CMD [SUB] --help.
		args = append(append([]string(nil), args[1:]...), "--help")
	case "-version", "--version":
		args = []string{"version"}
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "af: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	if asksHelp(args[1:]) {
		// Every command prints its --help to what it is given as
		// stderr (the flag package's output); asked for, it is the
		// command's output.
		stderr = stdout
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := c.run(ctx, args[1:], stdout, stderr)
	code := exitCode(err)
	switch {
	case code == exitOK:
	case errors.Is(err, errUsage):
		msg := strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
		if msg != errUsage.Error() {
			fmt.Fprintf(stderr, "af %s: %s\n", c.name, msg)
		}
		fmt.Fprintf(stderr, "Run 'af %s --help' for usage.\n", c.name)
	case code == exitInterrupted && ctx.Err() != nil:
		fmt.Fprintf(stderr, "af %s: interrupted\n", c.name)
	default:
		fmt.Fprintf(stderr, "af %s: %v\n", c.name, err)
	}
	return code
}

// asksHelp reports whether the arguments ask for help: -h, -help or
// --help before a "--".
func asksHelp(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help", "--h":
			return true
		}
	}
	return false
}

// newFlags makes a FlagSet whose --help prints the command's synopsis and
// flags. Subcommands call fs.Parse and pass the error through parseErr.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("af "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: af %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseErr turns a flag parse error into errUsage (flag already printed
// the detail) while letting --help through.
func parseErr(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %v", errUsage, err)
}

// envOr returns the environment variable's value, or def when it is unset.
func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
