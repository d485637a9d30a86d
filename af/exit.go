package main

import (
	"context"
	"errors"
	"flag"
	"io/fs"
	"net"
	"net/http"

	"github.com/aws/smithy-go"
	dockerclient "github.com/docker/docker/client"

	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/submit"
)

// af's exit codes, the same for every subcommand. README's "Scripting af"
// and `af --help` document them; exitCode is the one mapping from an
// error to a code.
const (
	// exitOK: the command did what was asked (a job: it completed).
	exitOK = 0
	// exitJobFailed: the job failed (its graph failed or was canceled, a
	// task's own fault), or af could not do what was asked for a reason
	// that is neither a usage error nor the infrastructure's.
	exitJobFailed = 1
	// exitUsage: the command line or its input is wrong: a bad flag, a
	// filter file that is missing or invalid or selects nothing, an
	// image that is not there, a graph id the queue does not know, a
	// token the queue refuses (any 4xx but 429).
	exitUsage = 2
	// exitInfra: something af depends on failed: the queue unreachable
	// or answering 5xx (or 429: over a limit, try later), S3 or STS,
	// the Docker engine.
	exitInfra = 3
	// exitInterrupted: SIGINT or SIGTERM stopped af (128 + SIGINT, as
	// shells report it).
	exitInterrupted = 130
)

// exitCodesHelp is the table `af --help` prints.
const exitCodesHelp = `Exit codes (every command):
  0  done (a job: it completed)
  1  the job failed: its graph failed or was canceled, a task's own fault
  2  usage: a bad flag or argument, a filter file that is missing, invalid
     or selects nothing, a missing image, an unknown graph id, a refused token
  3  infrastructure: the queue unreachable or a server error, S3 or STS, Docker
  130 interrupted (Ctrl-C, SIGTERM)
`

// Markers for errors whose exit code is not clear from their type. Wrap
// an error in one with badInput, jobFailed or infra (its text stays as
// it was), or with %w: fmt.Errorf("%w: want one graph id", errUsage).
var (
	// errUsage marks an error the user fixes by changing the command
	// line; af prints "Run 'af CMD --help' for usage." after it. Exit 2.
	errUsage = errors.New("usage")
	// errBadInput is bad input that is not the command line's shape (a
	// filter file, a job's files): exit 2 without the --help hint. Its
	// text is not printed; say what is wrong in the wrapping message.
	errBadInput = errors.New("bad input")
	// errJobFailed: the job did not complete; af printed why. Exit 1.
	errJobFailed = errors.New("the job did not complete")
	// errInfra marks a failure of something af depends on. Exit 3.
	errInfra = errors.New("infrastructure")
)

// marked is an error with an exit-code marker; its text is the error's.
type marked struct{ err, mark error }

func (m marked) Error() string   { return m.err.Error() }
func (m marked) Unwrap() []error { return []error{m.err, m.mark} }

func withMark(mark, err error) error {
	if err == nil {
		return nil
	}
	return marked{err: err, mark: mark}
}

// badInput marks err as the user's input's fault (exit 2).
func badInput(err error) error { return withMark(errBadInput, err) }

// jobFailed marks err as the job's failure (exit 1).
func jobFailed(err error) error { return withMark(errJobFailed, err) }

// infra marks err as a failure of something af depends on (exit 3).
func infra(err error) error { return withMark(errInfra, err) }

// exitCode maps the error a subcommand returned to af's exit code.
// Explicit markers win (errUsage, errBadInput, errJobFailed, errInfra),
// then what the error is: a 4xx from the queue is usage, a 5xx or an
// unreachable queue infrastructure, as are S3/STS and Docker connection
// errors; a file the user named that does not exist is usage. Anything
// else is 1.
func exitCode(err error) int {
	var apiErr *queueclient.APIError
	var smithyErr *smithy.OperationError
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage), errors.Is(err, errBadInput):
		return exitUsage
	case errors.Is(err, errJobFailed):
		return exitJobFailed
	case errors.Is(err, errInfra):
		return exitInfra
	case errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.Is(err, queueclient.ErrInsecureHTTP):
		// Refused before anything was sent: the command line decides.
		return exitUsage
	case errors.Is(err, queueclient.ErrUnreachable), errors.Is(err, queueclient.ErrCertificate):
		return exitInfra
	case errors.As(err, &apiErr):
		if apiErr.Status >= 500 || apiErr.Status == http.StatusTooManyRequests {
			return exitInfra
		}
		return exitUsage
	case errors.Is(err, submit.ErrNoFiles), errors.Is(err, submit.ErrInput):
		return exitUsage
	case errors.As(err, &smithyErr), dockerclient.IsErrConnectionFailed(err), errors.As(err, &opErr), errors.As(err, &dnsErr):
		// Before the file errors: a missing Docker socket is ENOENT.
		return exitInfra
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return exitUsage
	}
	return exitJobFailed
}
