package creds

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"

	"github.com/af-project/af/internal/awsconf"
)

// Mode says which STS call mints the credentials.
type Mode int

const (
	// ModeAssumeRole calls AssumeRole with a session policy; AWS and MinIO
	// both serve it. It is the default.
	ModeAssumeRole Mode = iota
	// ModeFederationToken calls GetFederationToken, for accounts whose
	// submitters are IAM users without a role to assume. MinIO does not
	// serve it.
	ModeFederationToken
)

// String is the flag spelling of m.
func (m Mode) String() string {
	switch m {
	case ModeAssumeRole:
		return "assume-role"
	case ModeFederationToken:
		return "federation-token"
	default:
		return fmt.Sprintf("Mode(%d)", int(m))
	}
}

// ParseMode reads the --credentials-mode flag ("" means assume-role).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "assume-role", "assumerole":
		return ModeAssumeRole, nil
	case "federation-token", "federationtoken", "get-federation-token":
		return ModeFederationToken, nil
	default:
		return 0, fmt.Errorf("credentials mode %q is unknown: use assume-role (the default) or federation-token", s)
	}
}

// TTL bounds STS enforces. AssumeRole sessions may also be capped lower by
// the role's MaxSessionDuration (and to 1 h when chaining roles).
const (
	DefaultTTL        = 12 * time.Hour
	MinTTL            = 15 * time.Minute
	MaxAssumeRoleTTL  = 12 * time.Hour
	MaxFederationTTL  = 36 * time.Hour
	defaultSession    = "af-submit"
	maxSessionName    = 64
	maxFederationName = 32
	maxPrefixLen      = 1024
)

// minioRoleARN stands in for a role on non-AWS endpoints: MinIO's
// AssumeRole ignores the ARN (the session inherits the caller's rights,
// narrowed by the policy) but the API requires one.
const minioRoleARN = "arn:aws:iam::000000000000:role/af-job-inputs"

// MintRequest says what the credentials may read and for how long.
type MintRequest struct {
	// Bucket and Prefix are the index's: the task payloads name them.
	Bucket, Prefix string
	// Prefixes are the key prefixes the credentials may read (GetObject)
	// and nothing else: Scope.Prefixes from ScopeFor. Empty means Prefix
	// alone (an empty Prefix then grants the whole bucket).
	Prefixes []string
	// GraphID is the graph the credentials are for; it is sealed with
	// them and the worker refuses them in any other graph.
	GraphID string
	// Image is the job image the graph runs; it is sealed with them and
	// the worker refuses them in a task that runs another.
	Image string
	// TTL is how long the credentials live; zero means DefaultTTL. It
	// must outlive the graph (see Deadline).
	TTL time.Duration
	// Mode picks AssumeRole (default) or GetFederationToken.
	Mode Mode
	// RoleARN is the role to assume. Required against AWS (--role-arn,
	// AF_ROLE_ARN); on other endpoints a placeholder is used when empty.
	RoleARN string
	// SessionName names the STS session (the federated user's name in
	// federation-token mode) in audit logs; default "af-submit".
	SessionName string
	// Deadline, when set, is the graph's deadline: Mint fails if STS
	// grants credentials that expire before it, since the last tasks
	// would then fail to read their inputs.
	Deadline time.Time
}

var (
	bucketRE      = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)
	ipLikeRE      = regexp.MustCompile(`^\d+\.\d+\.\d+\.\d+$`)
	sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]+$`)
)

// validateBucket applies S3's bucket naming rules, so a typo fails here
// with a reason rather than as an STS policy error.
func validateBucket(b string) error {
	switch {
	case b == "":
		return errors.New("no input bucket: name the bucket the job reads (s3://BUCKET/PREFIX)")
	case !bucketRE.MatchString(b):
		return fmt.Errorf("input bucket %q is not a valid S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit", b)
	case strings.Contains(b, ".."):
		return fmt.Errorf("input bucket %q is not a valid S3 bucket name: it has two dots in a row", b)
	case ipLikeRE.MatchString(b):
		return fmt.Errorf("input bucket %q is not a valid S3 bucket name: it looks like an IP address", b)
	}
	return nil
}

// validatePrefix refuses what would widen or break the policy: IAM
// wildcards and policy variables would grant more than the prefix.
func validatePrefix(p string) error {
	switch {
	case len(p) > maxPrefixLen:
		return fmt.Errorf("input prefix is %d bytes; S3 keys are at most %d", len(p), maxPrefixLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("input prefix %q is not valid UTF-8", p)
	case strings.ContainsAny(p, "*?"):
		return fmt.Errorf("input prefix %q contains * or ?, which IAM policies treat as wildcards and would widen the grant: give a literal prefix", p)
	case strings.Contains(p, "${"):
		return fmt.Errorf("input prefix %q contains ${, which IAM policies treat as a variable: give a literal prefix", p)
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("input prefix %q starts with /: S3 keys in s3://BUCKET/PREFIX start after the bucket's slash, drop the leading /", p)
	case strings.IndexFunc(p, unicode.IsControl) >= 0:
		return fmt.Errorf("input prefix %q contains control characters", p)
	}
	return nil
}

// isAWSEndpoint reports whether cfg talks to AWS itself (no custom
// endpoint, or an amazonaws.com one), where a real role ARN is needed.
func isAWSEndpoint(cfg aws.Config) bool {
	ep := awsconf.Endpoint(cfg)
	if ep == "" {
		return true
	}
	u, err := url.Parse(ep)
	if err != nil {
		return false
	}
	h := strings.ToLower(u.Hostname())
	return strings.HasSuffix(h, ".amazonaws.com") || strings.HasSuffix(h, ".amazonaws.com.cn")
}

// normalize fills defaults and checks req against what STS accepts, so
// mistakes are reported in terms of af's flags.
func (req *MintRequest) normalize(cfg aws.Config) error {
	if err := validateBucket(req.Bucket); err != nil {
		return err
	}
	if err := validatePrefix(req.Prefix); err != nil {
		return err
	}
	if len(req.Prefixes) == 0 {
		req.Prefixes = []string{req.Prefix}
	}
	for _, p := range req.Prefixes {
		if err := validatePrefix(p); err != nil {
			return err
		}
		if !strings.HasPrefix(p, req.Prefix) {
			return fmt.Errorf("key prefix %q is not under the input prefix %q", p, req.Prefix)
		}
	}
	if req.TTL == 0 {
		req.TTL = DefaultTTL
	}
	req.TTL = req.TTL.Truncate(time.Second)
	maxTTL, call := MaxAssumeRoleTTL, "AssumeRole"
	if req.Mode == ModeFederationToken {
		maxTTL, call = MaxFederationTTL, "GetFederationToken"
	} else if req.Mode != ModeAssumeRole {
		return fmt.Errorf("credentials mode %v is unknown: use assume-role or federation-token", req.Mode)
	}
	if req.TTL < MinTTL || req.TTL > maxTTL {
		return fmt.Errorf("credentials TTL %s is outside what STS allows for %s (%s to %s): set --credentials-ttl within that range", req.TTL, call, MinTTL, maxTTL)
	}
	if req.SessionName == "" {
		req.SessionName = defaultSession
	}
	maxName := maxSessionName
	if req.Mode == ModeFederationToken {
		maxName = maxFederationName
	}
	if len(req.SessionName) < 2 || len(req.SessionName) > maxName || !sessionNameRE.MatchString(req.SessionName) {
		return fmt.Errorf("session name %q is not valid for %s: 2 to %d letters, digits and +=,.@_-", req.SessionName, call, maxName)
	}
	if req.Mode == ModeAssumeRole {
		if req.RoleARN == "" {
			if isAWSEndpoint(cfg) {
				return noRoleError(awsconf.Settings(cfg))
			}
			req.RoleARN = minioRoleARN
		}
		if !strings.HasPrefix(req.RoleARN, "arn:") || strings.Count(req.RoleARN, ":") < 5 || len(req.RoleARN) < 20 {
			return fmt.Errorf("role ARN %q is not an ARN: want arn:aws:iam::ACCOUNT:role/NAME", req.RoleARN)
		}
	}
	return nil
}

// Mint asks STS for temporary credentials that can only read (GetObject)
// the keys of the request's bucket under its Prefixes. cfg carries the caller's credentials, region and
// endpoint (awsconf.Load). Errors say which permission or setting to fix.
func Mint(ctx context.Context, cfg aws.Config, req MintRequest) (Credentials, error) {
	if err := req.normalize(cfg); err != nil {
		return Credentials{}, fmt.Errorf("mint credentials: %w", err)
	}
	policy, err := SessionPolicyFor(req.Bucket, req.Prefixes)
	if err != nil {
		return Credentials{}, fmt.Errorf("mint credentials: %w", err)
	}
	client := awsconf.STS(cfg)
	secs := aws.Int32(int32(req.TTL / time.Second))
	var out *ststypes.Credentials
	switch req.Mode {
	case ModeFederationToken:
		resp, err := client.GetFederationToken(ctx, &sts.GetFederationTokenInput{
			Name: aws.String(req.SessionName), Policy: aws.String(policy), DurationSeconds: secs,
		})
		if err != nil {
			return Credentials{}, explainSTSError(req, err)
		}
		out = resp.Credentials
	default:
		resp, err := client.AssumeRole(ctx, &sts.AssumeRoleInput{
			RoleArn: aws.String(req.RoleARN), RoleSessionName: aws.String(req.SessionName),
			Policy: aws.String(policy), DurationSeconds: secs,
		})
		if err != nil {
			return Credentials{}, explainSTSError(req, err)
		}
		out = resp.Credentials
	}
	if out == nil || aws.ToString(out.AccessKeyId) == "" || aws.ToString(out.SecretAccessKey) == "" || out.Expiration == nil {
		return Credentials{}, fmt.Errorf("mint credentials: STS %s answered without complete credentials", req.Mode)
	}
	c := Credentials{
		AccessKeyID: aws.ToString(out.AccessKeyId), SecretAccessKey: aws.ToString(out.SecretAccessKey),
		SessionToken: aws.ToString(out.SessionToken), Expiration: out.Expiration.UTC(),
		Region: cfg.Region, Endpoint: awsconf.Endpoint(cfg), Bucket: req.Bucket, Prefix: req.Prefix,
		GraphID: req.GraphID, Image: req.Image, Prefixes: slices.Clone(req.Prefixes),
	}
	if c.Region == "" {
		c.Region = awsconf.DefaultRegion
	}
	if !req.Deadline.IsZero() && c.Expiration.Before(req.Deadline) {
		return Credentials{}, fmt.Errorf("mint credentials: STS granted credentials until %s, before the graph's deadline %s; raise --credentials-ttl (and the role's maximum session duration) or shorten the deadline",
			c.Expiration.Format(time.RFC3339), req.Deadline.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// explainSTSError turns an STS refusal into a message that says what to
// fix, keeping the original error in the chain for errors.As.
func explainSTSError(req MintRequest, err error) error {
	call, perm := "AssumeRole", fmt.Sprintf("sts:AssumeRole on %s (and the role's trust policy must allow the caller)", req.RoleARN)
	if req.Mode == ModeFederationToken {
		call, perm = "GetFederationToken", "sts:GetFederationToken (and it must call with an IAM user's long-term keys, not a role session)"
	}
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		if strings.Contains(err.Error(), "retrieve credentials") {
			return fmt.Errorf("mint credentials: no usable AWS credentials to call STS %s: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE: %w", call, err)
		}
		return fmt.Errorf("mint credentials: STS %s: %w", call, err)
	}
	code, msg := ae.ErrorCode(), ae.ErrorMessage()
	lmsg := strings.ToLower(msg)
	switch {
	case code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" || code == "InvalidAccessKeyId" || code == "IncompleteSignature" ||
		(code == "AccessDenied" && (strings.Contains(lmsg, "access key id") || strings.Contains(lmsg, "signature"))):
		// MinIO reports bad keys as AccessDenied with these messages;
		// they are not a missing permission.
		return fmt.Errorf("mint credentials: STS did not accept the caller's AWS credentials (%s: %s): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE and the endpoint: %w", code, msg, err)
	case code == "AccessDenied" || code == "AccessDeniedException":
		return fmt.Errorf("mint credentials: STS refused %s for the caller: it lacks permission %s; grant it or use credentials that have it: %w", call, perm, err)
	case code == "ExpiredToken" || code == "ExpiredTokenException":
		return fmt.Errorf("mint credentials: the caller's own AWS session has expired: refresh it (for example `aws sso login`) and retry: %w", err)
	case code == "MalformedPolicyDocument" || code == "MalformedPolicyDocumentException":
		return fmt.Errorf("mint credentials: STS rejected the session policy for s3://%s/%s (%s): %w", req.Bucket, req.Prefix, msg, err)
	case code == "PackedPolicyTooLarge" || code == "PackedPolicyTooLargeException":
		return fmt.Errorf("mint credentials: the session policy for %d prefixes of s3://%s/%s is too large for STS (packed): select fewer partitions or use a shorter prefix: %w", len(req.Prefixes), req.Bucket, req.Prefix, err)
	case code == "RegionDisabledException":
		return fmt.Errorf("mint credentials: STS is not activated in this region: activate it in IAM account settings or set AWS_REGION to one where it is: %w", err)
	case strings.Contains(lmsg, "unsupported action"):
		return fmt.Errorf("mint credentials: this endpoint does not serve STS %s (MinIO serves only AssumeRole): use --credentials-mode assume-role: %w", call, err)
	case strings.Contains(lmsg, "durationseconds") || strings.Contains(lmsg, "expiry") || strings.Contains(lmsg, "duration"):
		return fmt.Errorf("mint credentials: STS refused a %s session (%s): lower --credentials-ttl, or raise the role's maximum session duration (role chaining caps it at 1h): %w", req.TTL, msg, err)
	default:
		return fmt.Errorf("mint credentials: STS %s failed (%s): %w", call, code, err)
	}
}

// IsExpiredToken reports whether err says the credentials expired: an S3
// or STS ExpiredToken error (smithy code ExpiredToken or
// ExpiredTokenException), or ErrExpired from Open. The worker uses it to
// report an exception that names the TTL instead of a bare 400.
func IsExpiredToken(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrExpired) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "ExpiredToken", "ExpiredTokenException":
			return true
		}
	}
	return false
}

// ExplainExpired wraps an S3 ExpiredToken error with ErrExpired and a
// message naming the credentials' sealed expiry and the flag to raise;
// other errors pass through unchanged.
func ExplainExpired(err error, c Credentials) error {
	if err == nil || errors.Is(err, ErrExpired) || !IsExpiredToken(err) {
		return err
	}
	return fmt.Errorf("%w: S3 refused %s as expired (sealed expiry %s); resubmit the job, with a longer --credentials-ttl if it runs longer than that: %w",
		ErrExpired, c.AccessKeyID, c.Expiration.UTC().Format(time.RFC3339), err)
}

// noRoleError explains an assume-role mint on AWS with no role: when no
// AWS settings are there at all (the usual case of a first try), which
// ones to set for MinIO and for AWS; otherwise the role that is missing.
func noRoleError(p awsconf.Present) error {
	if p.Credentials == "" {
		return errors.New("no AWS settings: af submit mints the job's read-only S3 credentials with STS from your own, and found no AWS_ENDPOINT_URL, " +
			"no credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or ~/.aws/credentials) and no --role-arn. " +
			"For MinIO or another S3 service: export AWS_ENDPOINT_URL=http://HOST:9000 AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=...; " +
			"for AWS: set credentials (aws configure, or those variables), AWS_REGION, and --role-arn ARN (or AF_ROLE_ARN) of a role that can read the input bucket, " +
			"or use --credentials-mode federation-token")
	}
	region := ""
	if p.Region == "" {
		region = " and AWS_REGION"
	}
	return fmt.Errorf("no role to assume: with credentials from %s and no AWS_ENDPOINT_URL, af talks to AWS, whose STS needs the ARN of a role that can read the inputs; pass --role-arn ARN or set AF_ROLE_ARN%s (or use --credentials-mode federation-token), or set AWS_ENDPOINT_URL for MinIO or another S3 service", p.Credentials, region)
}
