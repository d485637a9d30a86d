package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

func init() {
	register(command{
		name:    "users",
		summary: "manage identities (admin): add, list, rotate, revoke",
		run:     runUsers,
	})
}

const usersUsage = `users add NAME --role submit|work|read|admin [--email ADDR] [--expires 720h]
       af users list
       af users rotate NAME
       af users revoke NAME
(each with [--queue URL] [--token ADMIN_TOKEN])`

func runUsers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: want add, list, rotate or revoke: af %s", errUsage, usersUsage)
	}
	sub, rest := args[0], args[1:]
	fs := newFlags("users "+sub, usersUsage, stderr)
	qf := addQueueFlags(fs)
	var role, email *string
	var expires *time.Duration
	if sub == "add" {
		role = fs.String("role", "", "the identity's role: submit (people who run jobs), work (a worker pool), read (reads every graph) or admin")
		email = fs.String("email", "", "where the identity's graphs' emails go (default: NAME, when it is an address)")
		expires = fs.Duration("expires", 0, "the token stops working this long from now (default: never)")
	}
	if err := parseErr(fs.Parse(interleave(fs, rest))); err != nil {
		return err
	}
	q, err := qf.client()
	if err != nil {
		return err
	}
	switch sub {
	case "add":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: want one NAME (a person's email address, or a pool's or service's name)", errUsage)
		}
		if *role == "" {
			return fmt.Errorf("%w: --role is required (submit, work, read or admin)", errUsage)
		}
		req := taskdef.UserRequest{Name: fs.Arg(0), Role: *role, Email: *email}
		if *expires < 0 {
			return fmt.Errorf("%w: --expires %s must be positive", errUsage, *expires)
		}
		if *expires > 0 {
			t := time.Now().Add(*expires).UTC()
			req.Expires = &t
		}
		out, err := q.AddUser(ctx, req)
		if err != nil {
			return explainQueueErr(err, *qf.url)
		}
		// The token alone on stdout, so `TOKEN=$(af users add ...)` works;
		// what it is goes to stderr.
		fmt.Fprintln(stdout, out.Token)
		fmt.Fprintf(stderr, "identity %s (role %s) added; the token above is shown this once\n", out.User.Name, out.User.Role)
		return nil
	case "rotate":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: want one NAME", errUsage)
		}
		out, err := q.RotateUser(ctx, fs.Arg(0))
		if err != nil {
			return explainQueueErr(err, *qf.url)
		}
		fmt.Fprintln(stdout, out.Token)
		fmt.Fprintf(stderr, "identity %s has a new token (above, shown this once); the old one no longer works\n", out.User.Name)
		return nil
	case "revoke":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: want one NAME", errUsage)
		}
		u, err := q.RevokeUser(ctx, fs.Arg(0))
		if err != nil {
			return explainQueueErr(err, *qf.url)
		}
		fmt.Fprintf(stdout, "identity %s revoked at %s\n", u.Name, u.Revoked.Local().Format(time.DateTime))
		return nil
	case "list":
		if fs.NArg() != 0 {
			return fmt.Errorf("%w: list takes no arguments", errUsage)
		}
		us, err := q.Users(ctx)
		if err != nil {
			return explainQueueErr(err, *qf.url)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tSOURCE\tEMAIL\tEXPIRES\tSTATE")
		for _, u := range us {
			exp, state := "-", "active"
			if u.Expires != nil {
				exp = u.Expires.Local().Format(time.DateTime)
				if !time.Now().Before(*u.Expires) {
					state = "expired"
				}
			}
			if u.Revoked != nil {
				state = "revoked"
			}
			em := u.Email
			if em == "" {
				em = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, u.Role, u.Source, em, exp, state)
		}
		return tw.Flush()
	}
	return fmt.Errorf("%w: unknown users command %q: want add, list, rotate or revoke", errUsage, sub)
}
