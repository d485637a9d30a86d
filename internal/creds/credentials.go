// Package creds makes the S3 credentials a job carries: temporary, scoped
// to reading (GetObject) the smallest set of key prefixes covering the
// files the job selected (ScopeFor), and sealed, bound to the job's graph,
// the job image it was submitted with, and those prefixes, so that only
// the worker pool can open them and only for that graph's inputs read by
// that image (Permits).
//
// af submit calls Mint (STS AssumeRole with a session policy, or
// GetFederationToken) and Seal (an anonymous NaCl box to the pool's public
// key); the sealed, base64-encoded blob travels in the task payload as the
// CREDENTIALS environment variable. The worker calls Open with the pool's
// private key and AWSConfig to download the inputs. `af keygen` makes the
// key pair with GenerateKeyPair.
//
// Plaintext credentials must never reach a log, a task definition or a
// page, so Credentials redacts itself in every printing path (fmt, slog,
// JSON, YAML).
package creds

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/af-project/af/internal/awsconf"
)

// redacted replaces secrets wherever Credentials is printed.
const redacted = "REDACTED"

// Credentials are temporary S3 credentials scoped to one job's inputs.
//
// The secret and token are exported because the worker must hand them to
// the AWS SDK, but the value never prints them: String, GoString, Format,
// LogValue, MarshalJSON and MarshalYAML all redact.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Region and Endpoint say where to use them; Endpoint is empty for AWS.
	Region   string
	Endpoint string
	// Expiration is when STS stops honouring them.
	Expiration time.Time
	// Bucket and Prefix are the index's, as the task payloads name them.
	Bucket string
	Prefix string
	// Prefixes are the key prefixes the session policy grants (GetObject
	// on keys starting with one of them): Scope.Prefixes.
	Prefixes []string
	// GraphID is the graph they were minted for; Permits refuses them in
	// any other.
	GraphID string
	// Image is the job image the graph was submitted with; Permits
	// refuses them in a task that runs any other (a task added to the
	// graph with another image would hand the graph's inputs to other
	// code).
	Image string
}

// redactedView is what every printing path shows: the access key id is
// kept because it is not secret and names the session in CloudTrail and
// MinIO logs.
type redactedView struct {
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	SessionToken    string    `json:"session_token"`
	Region          string    `json:"region,omitempty"`
	Endpoint        string    `json:"endpoint,omitempty"`
	Expiration      time.Time `json:"expiration"`
	Bucket          string    `json:"bucket,omitempty"`
	Prefix          string    `json:"prefix,omitempty"`
	Prefixes        []string  `json:"prefixes,omitempty"`
	GraphID         string    `json:"graph_id,omitempty"`
	Image           string    `json:"image,omitempty"`
}

func (c Credentials) view() redactedView {
	v := redactedView{
		AccessKeyID: c.AccessKeyID, Region: c.Region, Endpoint: c.Endpoint,
		Expiration: c.Expiration, Bucket: c.Bucket, Prefix: c.Prefix, Prefixes: c.Prefixes, GraphID: c.GraphID, Image: c.Image,
	}
	if c.SecretAccessKey != "" {
		v.SecretAccessKey = redacted
	}
	if c.SessionToken != "" {
		v.SessionToken = redacted
	}
	return v
}

// String shows the scope and expiry, never the secret or token.
func (c Credentials) String() string {
	return fmt.Sprintf("credentials %s for graph %s, image %s, %d prefix(es) of s3://%s/%s (region %s, expires %s, secret and token redacted)",
		c.AccessKeyID, c.GraphID, c.Image, len(c.Prefixes), c.Bucket, c.Prefix, c.Region, c.Expiration.UTC().Format(time.RFC3339))
}

// GoString keeps %#v from dumping the fields.
func (c Credentials) GoString() string {
	return fmt.Sprintf("creds.Credentials{AccessKeyID:%q, SecretAccessKey:%q, SessionToken:%q, Region:%q, Endpoint:%q, Expiration:%q, Bucket:%q, Prefix:%q, Prefixes:%q, GraphID:%q, Image:%q}",
		c.AccessKeyID, c.view().SecretAccessKey, c.view().SessionToken, c.Region, c.Endpoint,
		c.Expiration.UTC().Format(time.RFC3339), c.Bucket, c.Prefix, c.Prefixes, c.GraphID, c.Image)
}

// Format routes every verb through String or GoString: without it %x, %d
// or %q on the struct would print its fields one by one.
func (c Credentials) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, c.GoString())
		return
	}
	io.WriteString(f, c.String())
}

// LogValue makes slog print a redacted group instead of reflecting over
// the fields.
func (c Credentials) LogValue() slog.Value {
	v := c.view()
	return slog.GroupValue(
		slog.String("access_key_id", v.AccessKeyID),
		slog.String("secret_access_key", v.SecretAccessKey),
		slog.String("session_token", v.SessionToken),
		slog.String("region", v.Region),
		slog.String("endpoint", v.Endpoint),
		slog.Time("expiration", v.Expiration),
		slog.String("bucket", v.Bucket),
		slog.String("prefix", v.Prefix),
		slog.Any("prefixes", v.Prefixes),
		slog.String("graph_id", v.GraphID),
		slog.String("image", v.Image),
	)
}

// MarshalJSON writes the redacted view. Credentials are never meant to be
// serialised in the clear; Seal has its own envelope.
func (c Credentials) MarshalJSON() ([]byte, error) {
	return json.Marshal(c.view())
}

// MarshalYAML writes the redacted view (gopkg.in/yaml.v3 calls it).
func (c Credentials) MarshalYAML() (any, error) {
	return c.view(), nil
}

// AWSConfig returns a config that uses exactly these credentials, region
// and endpoint. The worker first replaces Endpoint (and Region, when it
// has one) with its own, after refusing an envelope that names another
// endpoint: a submitter must not choose where the worker connects. The
// host's AWS environment supplies only transport settings.
func (c Credentials) AWSConfig(ctx context.Context) (aws.Config, error) {
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return aws.Config{}, fmt.Errorf("%w: credentials have no access key id or secret", ErrMalformed)
	}
	cfg, err := awsconf.Load(ctx, awsconf.Options{
		Endpoint: c.Endpoint, Region: c.Region,
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
	})
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config for job credentials: %w", err)
	}
	if c.Endpoint == "" {
		cfg.BaseEndpoint = nil
	} else {
		cfg.BaseEndpoint = aws.String(c.Endpoint)
	}
	if c.Region != "" {
		cfg.Region = c.Region
	}
	return cfg, nil
}
