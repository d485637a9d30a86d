// Package awsconf loads AWS configuration the standard way (environment,
// shared config and credentials files, profiles, AWS_ENDPOINT_URL) and makes
// S3 and STS clients that also work against MinIO and other S3-compatible
// endpoints.
package awsconf

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// DefaultRegion is used when neither the environment nor a profile names a
// region; MinIO accepts any region and AWS needs one to sign.
const DefaultRegion = "us-east-1"

// Options override parts of the standard configuration. Zero values keep
// what the environment says.
type Options struct {
	// Endpoint replaces AWS_ENDPOINT_URL (for example a MinIO server).
	Endpoint string
	// Region replaces AWS_REGION / the profile's region.
	Region string
	// Profile selects a shared-config profile (AWS_PROFILE otherwise).
	Profile string
	// Static credentials, used by tests and by workers holding opened
	// credentials; empty means the default credential chain.
	AccessKeyID, SecretAccessKey, SessionToken string
}

// Load builds an aws.Config from the standard sources plus opts.
func Load(ctx context.Context, opts Options) (aws.Config, error) {
	var lo []func(*config.LoadOptions) error
	if opts.Region != "" {
		lo = append(lo, config.WithRegion(opts.Region))
	}
	if opts.Profile != "" {
		lo = append(lo, config.WithSharedConfigProfile(opts.Profile))
	}
	if opts.AccessKeyID != "" {
		lo = append(lo, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(
			opts.AccessKeyID, opts.SecretAccessKey, opts.SessionToken)))
	}
	if opts.Endpoint != "" {
		if _, err := url.ParseRequestURI(opts.Endpoint); err != nil {
			return aws.Config{}, fmt.Errorf("endpoint %q is not a URL (want e.g. http://127.0.0.1:9000): %w", opts.Endpoint, err)
		}
		lo = append(lo, config.WithBaseEndpoint(opts.Endpoint))
	}
	cfg, err := config.LoadDefaultConfig(ctx, lo...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load aws config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	return cfg, nil
}

// Endpoint returns the custom endpoint in effect for cfg ("" for AWS).
func Endpoint(cfg aws.Config) string {
	if cfg.BaseEndpoint != nil {
		return *cfg.BaseEndpoint
	}
	return os.Getenv("AWS_ENDPOINT_URL")
}

// usePathStyle reports whether an endpoint needs path-style addressing:
// anything that is not AWS's own S3 (MinIO serves buckets under the path).
func usePathStyle(endpoint string) bool {
	if endpoint == "" {
		return false
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return true
	}
	return !strings.HasSuffix(u.Hostname(), ".amazonaws.com")
}

// S3 returns an S3 client for cfg, path-style when the endpoint is not AWS.
func S3(cfg aws.Config) *s3.Client {
	ep := Endpoint(cfg)
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = usePathStyle(ep)
	})
}

// STS returns an STS client for cfg.
func STS(cfg aws.Config) *sts.Client {
	return sts.NewFromConfig(cfg)
}

// WorkerS3 is where a worker reads job inputs: the endpoint and region its
// own configuration names, never what a task says.
type WorkerS3 struct {
	// Endpoint is the S3 endpoint URL; "" is AWS's regional S3.
	Endpoint string
	// Region is the worker's region, "" when its configuration names none
	// (the job's region is then used, once checked for shape).
	Region string
}

// ResolveWorkerS3 reads the S3 endpoint and region the standard AWS
// configuration gives this process: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL,
// the shared config's endpoint_url (services section included), and
// AWS_REGION or the profile's region. flagEndpoint, when set, wins.
func ResolveWorkerS3(ctx context.Context, flagEndpoint string) (WorkerS3, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return WorkerS3{}, fmt.Errorf("load aws config: %w", err)
	}
	w := WorkerS3{Region: cfg.Region}
	if flagEndpoint != "" {
		w.Endpoint = flagEndpoint
	} else {
		// The S3 client applies the service-specific sources
		// (AWS_ENDPOINT_URL_S3, [services] in the shared config) over
		// BaseEndpoint; reading its options sees exactly what it would use.
		if ep := s3.NewFromConfig(cfg).Options().BaseEndpoint; ep != nil {
			w.Endpoint = *ep
		}
	}
	if w.Endpoint != "" {
		n, err := NormalizeEndpoint(w.Endpoint)
		if err != nil {
			return WorkerS3{}, err
		}
		w.Endpoint = n
	}
	return w, nil
}

// NormalizeEndpoint puts an endpoint URL in the form endpoints are
// compared in: lowercase scheme and host, no trailing slash, no user,
// query or fragment allowed.
func NormalizeEndpoint(ep string) (string, error) {
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("S3 endpoint %q is not an http(s) URL like http://127.0.0.1:9000", ep)
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.EscapedPath(), "/"), nil
}

// PinnedS3 returns an S3 client for cfg that talks to endpoint and nowhere
// else: the endpoint is set after every configuration source has been
// applied ("" means AWS's regional endpoint for cfg.Region), and its HTTP
// client follows no redirect (the SDK's default follows 307 and 308 to
// any host).
func PinnedS3(cfg aws.Config, endpoint string) *s3.Client {
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		if endpoint == "" {
			o.BaseEndpoint = nil
		} else {
			o.BaseEndpoint = aws.String(endpoint)
		}
		o.UsePathStyle = usePathStyle(endpoint)
		o.HTTPClient = noRedirectClient
	})
}

// noRedirectClient is the SDK's transport with redirects refused: the
// response comes back to the SDK as the error it is.
var noRedirectClient = &http.Client{
	Transport: awshttp.NewBuildableClient().GetTransport(),
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	},
}
