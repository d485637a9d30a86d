package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/creds"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/server"
)

func init() {
	register(command{
		name:    "serve",
		summary: "run the queue server (API, artifacts, file index, monitor, metrics)",
		run:     runServe,
	})
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("serve", "serve [--listen ADDR] [--data DIR] [--config FILE] [--tls-cert FILE --tls-key FILE] [--print-token ROLE]", stderr)
	listen := fs.String("listen", server.DefaultListen, "HTTP address to listen on")
	data := fs.String("data", "af-data", "data directory (queue.db, index.db, and config.yaml when --config is not given)")
	cfgPath := fs.String("config", "", "config file (YAML); default <data>/config.yaml, created (mode 0600) with fresh tokens on first start, which shows them only when stdout is a terminal")
	poolKey := fs.String("pool-key", "", "the worker pool's public key `FILE` (af.pub from af keygen), served to submitters; overrides pool_key in the config")
	smtpAddr := fs.String("smtp", "", "SMTP relay `HOST:PORT` af serve emails owners through (from its outbox, with retries); overrides smtp.addr in the config, whose smtp: section has the sender, user, password_env, starttls and retry settings; empty logs the emails")
	tlsCert := fs.String("tls-cert", "", "serve https only (TLS 1.2 or later) with the PEM certificate `FILE` (the server's certificate, then any intermediates); needs --tls-key; renewed files are picked up without a restart; overrides tls_cert in the config. Clients whose system does not trust its CA take the CA with --ca or AF_CA_FILE")
	tlsKey := fs.String("tls-key", "", "the PEM private key `FILE` of --tls-cert (unencrypted; keep it mode 0600); overrides tls_key in the config")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	printToken := fs.String("print-token", "", "print the token of `ROLE` (admin, submit or work) from the config and exit, e.g. export AF_TOKEN=$(af serve --data DIR --print-token submit); tokens are never logged")
	if err := parseErr(fs.Parse(args)); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", errUsage, *logLevel)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *printToken != "" {
		path := *cfgPath
		if path == "" {
			path = filepath.Join(*data, server.ConfigFileName)
		}
		return printRoleToken(stdout, path, server.Role(*printToken))
	}

	var (
		cfg     server.Config
		path    string
		created bool
		err     error
	)
	if *cfgPath != "" {
		path = *cfgPath
		cfg, err = server.LoadConfig(path)
		if err != nil {
			return err
		}
		if set["data"] {
			cfg.Data = *data
		}
	} else {
		cfg, path, created, err = server.EnsureConfig(*data)
		if err != nil {
			return err
		}
		cfg.Data = *data
	}
	// A monitor URL that was only derived from the listen address and
	// the scheme follows the flags that change them.
	derived := cfg.MonitorURL == cfg.Scheme()+"://"+cfg.Listen
	if set["listen"] {
		cfg.Listen = *listen
	}
	if *tlsCert != "" || *tlsKey != "" {
		if *tlsCert == "" || *tlsKey == "" {
			return fmt.Errorf("%w: --tls-cert and --tls-key go together: give the certificate and its private key", errUsage)
		}
		cfg.TLSCert, cfg.TLSKey = *tlsCert, *tlsKey
	}
	if derived {
		cfg.MonitorURL = cfg.Scheme() + "://" + cfg.Listen
	}
	if *poolKey != "" {
		cfg.PoolKey = *poolKey
	}
	if *smtpAddr != "" {
		cfg.SMTP.Addr = *smtpAddr
	}
	// A relative data dir in a config file is relative to the file.
	if *cfgPath != "" && !set["data"] && !filepath.IsAbs(cfg.Data) {
		cfg.Data = filepath.Join(filepath.Dir(path), cfg.Data)
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}

	logger := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))
	if cfg.PoolKey != "" {
		// Refuse a wrong key file now rather than on every submit.
		if _, err := creds.LoadPublicKey(cfg.PoolKey); err != nil {
			return fmt.Errorf("pool key: %w", err)
		}
	} else {
		fmt.Fprintf(stdout, "af serve: no pool key configured: submitters cannot seal credentials until you run `af keygen` and restart with --pool-key af.pub (or pool_key in %s)\n", path)
	}
	if created {
		printFirstStart(stdout, path, cfg, isTerminal(stdout))
	} else {
		fmt.Fprintf(stdout, "af serve: config %s\n", path)
		if w := configModeWarning(path); w != "" {
			fmt.Fprintln(stdout, w)
		}
	}

	server.TuneGC()
	q, err := queue.Open(filepath.Join(cfg.Data, "queue.db"), queue.Options{
		Logger:        logger.With("component", "queue"),
		LeaseDuration: time.Duration(cfg.LeaseDuration),
		Scheduling:    cfg.Scheduling(),
	})
	if err != nil {
		return err
	}
	defer q.Close()

	// One S3 client serves the artifact bucket and lists input buckets
	// for index builds; credentials come from the standard AWS env.
	client, presign, acfg, err := artifactClients(ctx, cfg.S3)
	if err != nil {
		return err
	}
	// The same AWS settings mint scheduled runs' credentials.
	deps := server.Deps{Queue: q, Logger: logger, S3: client, Presign: presign, AWS: &acfg}
	if cfg.S3.Bucket != "" {
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		made, err := server.EnsureBucket(cctx, client, cfg.S3.Bucket)
		cancel()
		switch {
		case err != nil:
			// The queue works without S3; artifact calls will fail with
			// S3's error until it is reachable.
			logger.Warn("artifact bucket unavailable; artifact routes will fail until S3 is reachable", "bucket", cfg.S3.Bucket, "err", err)
		case made:
			logger.Info("created artifact bucket", "bucket", cfg.S3.Bucket)
		}
	}
	srv, err := server.New(cfg, deps)
	if err != nil {
		return err
	}
	for _, w := range srv.TLSWarnings() {
		fmt.Fprintf(stdout, "af serve: warning: %s\n", w)
	}
	fmt.Fprintf(stdout, "af serve: listening on %s (data %s)\n", queueURL(cfg), cfg.Data)
	if err := srv.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// artifactClients makes the S3 client of the artifact bucket and the
// presigner whose URLs workers and browsers follow.
func artifactClients(ctx context.Context, c server.S3Config) (*s3.Client, *s3.PresignClient, aws.Config, error) {
	acfg, err := awsconf.Load(ctx, awsconf.Options{Endpoint: c.Endpoint, Region: c.Region})
	if err != nil {
		return nil, nil, aws.Config{}, fmt.Errorf("artifact bucket: %w", err)
	}
	client := awsconf.S3(acfg)
	presign := s3.NewPresignClient(client)
	if c.PublicEndpoint != "" {
		pcfg, err := awsconf.Load(ctx, awsconf.Options{Endpoint: c.PublicEndpoint, Region: c.Region})
		if err != nil {
			return nil, nil, aws.Config{}, fmt.Errorf("artifact bucket public endpoint: %w", err)
		}
		presign = s3.NewPresignClient(awsconf.S3(pcfg))
	}
	return client, presign, acfg, nil
}

// printFirstStart tells the operator, once, where the generated config is
// and how to use its tokens. The tokens themselves are shown only when
// stdout is a terminal: stdout of a service is usually a log file or a
// journal, which must never hold a token, so there it names the file (mode
// 0600) and the command that reads a token out of it.
func printFirstStart(w io.Writer, path string, cfg server.Config, terminal bool) {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	fmt.Fprintf(w, "af serve: created %s (mode 0600) with fresh admin, submit and work tokens; keep it private.\n", path)
	url := queueURL(cfg)
	if !terminal {
		fmt.Fprintf(w, "af serve: the tokens are in that file only (not in this output); point af and worker at this server with:\n"+
			"  export AF_QUEUE_URL=%s\n"+
			"  export AF_TOKEN=$(af serve --config %s --print-token submit)   # workers: --print-token work\n", url, shellQuote(path))
		fmt.Fprintf(w, "af serve: give each person and worker pool an identity of its own (its graphs are its own):\n"+
			"  AF_TOKEN=$(af serve --config %s --print-token admin) af users add alice@example.com --role submit\n", shellQuote(path))
		return
	}
	for _, t := range cfg.Tokens {
		fmt.Fprintf(w, "  %-6s token: %s\n", t.Role, t.Token)
	}
	var submit string
	for _, t := range cfg.Tokens {
		if t.Role == server.RoleSubmit {
			submit = t.Token
		}
	}
	fmt.Fprintf(w, "Point af and worker at this server (shown once, on this terminal only; later: af serve --config %s --print-token ROLE):\n"+
		"  export AF_QUEUE_URL=%s\n  export AF_TOKEN=%s   # the submit token; workers use the work token\n", shellQuote(path), url, submit)
	fmt.Fprintf(w, "Give each person and worker pool an identity of its own (its graphs are its own), with the admin token:\n"+
		"  af users add alice@example.com --role submit   # prints alice's token, once\n")
}

// printRoleToken prints the first token of role from the config at path,
// for scripts: export AF_TOKEN=$(af serve --print-token submit).
func printRoleToken(w io.Writer, path string, role server.Role) error {
	switch role {
	case server.RoleAdmin, server.RoleSubmit, server.RoleWork:
	default:
		return fmt.Errorf("%w: --print-token %q: want admin, submit or work", errUsage, role)
	}
	cfg, err := server.LoadConfig(path)
	if err != nil {
		return err
	}
	hashed := false
	for _, t := range cfg.Tokens {
		if t.Role != role {
			continue
		}
		if t.Token != "" {
			_, err := fmt.Fprintln(w, t.Token)
			return err
		}
		hashed = true
	}
	if hashed {
		return fmt.Errorf("%s keeps the %s token only as its sha256: the token itself is wherever you stored it when you hashed it", path, role)
	}
	return fmt.Errorf("%s has no token with role %s: add one under tokens: (name, role, token)", path, role)
}

// configModeWarning says so when the config file, which holds bearer
// tokens, is readable or writable by others than its owner.
func configModeWarning(path string) string {
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm()&0o077 == 0 {
		return ""
	}
	return fmt.Sprintf("af serve: warning: %s holds bearer tokens but has mode %04o: run chmod 600 %s", path, fi.Mode().Perm(), shellQuote(path))
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=+,@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// queueURL is the URL clients on this host use for the config's listen
// address: https when the server has a certificate.
func queueURL(cfg server.Config) string {
	scheme := cfg.Scheme()
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return scheme + "://" + cfg.Listen
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
