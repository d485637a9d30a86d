package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/submit"
)

// credentialFlags are the flags of a job's S3 credentials, af submit's and
// af resubmit's.
type credentialFlags struct {
	pubKey, mode, roleARN *string
	ttl                   *time.Duration
}

func addCredentialFlags(fs *flag.FlagSet, ttlHelp string) credentialFlags {
	return credentialFlags{
		pubKey:  fs.String("public-key", envOr("AF_PUBLIC_KEY", ""), "the worker pool's public key file af.pub (env AF_PUBLIC_KEY; default: the key the queue publishes)"),
		ttl:     fs.Duration("credentials-ttl", 0, ttlHelp),
		mode:    fs.String("credentials-mode", "assume-role", "how credentials are minted: assume-role or federation-token"),
		roleARN: fs.String("role-arn", envOr("AF_ROLE_ARN", ""), "role to assume on AWS (env AF_ROLE_ARN)"),
	}
}

// options checks --credentials-mode and loads --public-key.
func (c credentialFlags) options() (submit.CredentialOptions, error) {
	mode, err := creds.ParseMode(*c.mode)
	if err != nil {
		return submit.CredentialOptions{}, fmt.Errorf("%w: --credentials-mode: %v", errUsage, err)
	}
	o := submit.CredentialOptions{CredentialsTTL: *c.ttl, CredentialsMode: mode, RoleARN: *c.roleARN}
	if *c.pubKey != "" {
		if o.PublicKey, err = creds.LoadPublicKey(*c.pubKey); err != nil {
			return submit.CredentialOptions{}, err
		}
	}
	return o, nil
}

// outputFlags say what af submit and af resubmit print (submitOutputs).
type outputFlags struct {
	wait, asJSON, quiet *bool
	out                 *string
}

// outputHelp is the help of the output flags that differs by command.
type outputHelp struct{ wait, out, json, quiet string }

func addOutputFlags(fs *flag.FlagSet, h outputHelp) outputFlags {
	return outputFlags{
		wait:   fs.Bool("wait", false, h.wait),
		out:    fs.String("o", "", h.out),
		asJSON: fs.Bool("json", false, h.json),
		quiet:  fs.Bool("q", false, h.quiet),
	}
}

// check refuses -o without --wait; later says how else to save it.
func (o outputFlags) check(later string) error {
	if *o.out != "" && !*o.wait {
		return fmt.Errorf("%w: -o FILE writes the result, which only --wait waits for: add --wait%s", errUsage, later)
	}
	return nil
}

func (o outputFlags) outputs(stdout, stderr io.Writer) submitOutputs {
	return submitOutputs{json: *o.asJSON, quiet: *o.quiet, wait: *o.wait, path: *o.out, stdout: stdout, stderr: stderr}
}
