package creds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/af-project/af/internal/awsconf"
)

func TestSessionPolicy(t *testing.T) {
	t.Parallel()
	type stmt struct {
		Action    []string
		Resource  []string
		Condition map[string]map[string]string
	}
	tests := []struct {
		name, bucket, prefix string
		get                  string
	}{
		{"prefix", "telemetry-published-v2", "saved_session/Firefox/", "arn:aws:s3:::telemetry-published-v2/saved_session/Firefox/*"},
		{"whole bucket", "inputs", "", "arn:aws:s3:::inputs/*"},
		{"quote in prefix", "inputs", `a"b/`, `arn:aws:s3:::inputs/a"b/*`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := SessionPolicy(tc.bucket, tc.prefix)
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Version   string
				Statement []stmt
			}
			if err := json.Unmarshal([]byte(p), &doc); err != nil {
				t.Fatalf("policy is not JSON: %v\n%s", err, p)
			}
			// One statement: GetObject only. The worker never lists, so
			// there is no s3:ListBucket to scope.
			if doc.Version != "2012-10-17" || len(doc.Statement) != 1 {
				t.Fatalf("policy %s", p)
			}
			get := doc.Statement[0]
			if fmt.Sprint(get.Action) != "[s3:GetObject]" || fmt.Sprint(get.Resource) != "["+tc.get+"]" || get.Condition != nil {
				t.Errorf("get statement %+v", get)
			}
		})
	}
}

func TestMintValidatesBeforeCallingSTS(t *testing.T) {
	t.Parallel()
	// Nothing listens here: a request that got past validation would fail
	// with a connection error instead of the expected message.
	local := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1")}
	awsCfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("https://sts.us-east-1.amazonaws.com")}
	tests := []struct {
		name string
		cfg  aws.Config
		req  MintRequest
		want string
	}{
		{"no bucket", local, MintRequest{}, "no input bucket"},
		{"uppercase bucket", local, MintRequest{Bucket: "Inputs"}, "not a valid S3 bucket name"},
		{"short bucket", local, MintRequest{Bucket: "ab"}, "not a valid S3 bucket name"},
		{"bucket with slash", local, MintRequest{Bucket: "a/b"}, "not a valid S3 bucket name"},
		{"double dot bucket", local, MintRequest{Bucket: "a..b"}, "two dots"},
		{"ip bucket", local, MintRequest{Bucket: "192.168.1.1"}, "IP address"},
		{"wildcard prefix", local, MintRequest{Bucket: "inputs", Prefix: "a*/"}, "wildcards"},
		{"question prefix", local, MintRequest{Bucket: "inputs", Prefix: "a?"}, "wildcards"},
		{"variable prefix", local, MintRequest{Bucket: "inputs", Prefix: "${aws:username}/"}, "variable"},
		{"leading slash", local, MintRequest{Bucket: "inputs", Prefix: "/a"}, "drop the leading /"},
		{"control prefix", local, MintRequest{Bucket: "inputs", Prefix: "a\nb"}, "control characters"},
		{"long prefix", local, MintRequest{Bucket: "inputs", Prefix: strings.Repeat("a", 1025)}, "at most 1024"},
		{"invalid utf8 prefix", local, MintRequest{Bucket: "inputs", Prefix: "a\xffb"}, "UTF-8"},
		{"ttl too short", local, MintRequest{Bucket: "inputs", TTL: 10 * time.Minute}, "15m0s to 12h0m0s"},
		{"ttl too long for role", local, MintRequest{Bucket: "inputs", TTL: 13 * time.Hour}, "--credentials-ttl"},
		{"ttl too long for federation", local, MintRequest{Bucket: "inputs", TTL: 37 * time.Hour, Mode: ModeFederationToken}, "15m0s to 36h0m0s"},
		{"bad session name", local, MintRequest{Bucket: "inputs", SessionName: "has space"}, "session name"},
		{"federation name too long", local, MintRequest{Bucket: "inputs", Mode: ModeFederationToken, SessionName: strings.Repeat("a", 33)}, "2 to 32"},
		{"unknown mode", local, MintRequest{Bucket: "inputs", Mode: Mode(7)}, "unknown"},
		{"no role on AWS", awsCfg, MintRequest{Bucket: "inputs"}, "--role-arn"},
		{"bad role ARN", local, MintRequest{Bucket: "inputs", RoleARN: "readers"}, "not an ARN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Mint(context.Background(), tc.cfg, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Mint error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Mode{"": ModeAssumeRole, "assume-role": ModeAssumeRole, "Federation-Token": ModeFederationToken} {
		got, err := ParseMode(in)
		if err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v", in, got, err)
		}
		if in != "" && !strings.EqualFold(got.String(), in) {
			t.Errorf("%v.String() = %q", got, got.String())
		}
	}
	if _, err := ParseMode("web-identity"); err == nil || !strings.Contains(err.Error(), "federation-token") {
		t.Errorf("unknown mode: %v", err)
	}
}

// fakeSTS answers STS query-protocol requests with a canned status and XML
// body, and records the form it got. It exists only for what MinIO cannot
// do (GetFederationToken, AWS-only error codes); the AssumeRole path is
// covered for real in minio_test.go.
type fakeSTS struct {
	status int
	body   string
	mu     sync.Mutex
	form   url.Values
}

func (f *fakeSTS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.form = r.PostForm
	f.mu.Unlock()
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(f.status)
	fmt.Fprint(w, f.body)
}

func stsErrorXML(code, msg string) string {
	return `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>` + code +
		`</Code><Message>` + msg + `</Message></Error><RequestId>req-1</RequestId></ErrorResponse>`
}

func fakeConfig(t *testing.T, h http.Handler) aws.Config {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cfg, err := awsconf.Load(context.Background(), awsconf.Options{
		Endpoint: srv.URL, Region: "us-east-1", AccessKeyID: "AKIDCALLER", SecretAccessKey: "caller-secret",
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.RetryMaxAttempts = 1
	return cfg
}

func TestMintFederationToken(t *testing.T) {
	t.Parallel()
	exp := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	f := &fakeSTS{status: 200, body: `<GetFederationTokenResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetFederationTokenResult>
<Credentials><SessionToken>fedtoken</SessionToken><SecretAccessKey>fedsecret</SecretAccessKey><Expiration>` + exp.Format(time.RFC3339) + `</Expiration><AccessKeyId>ASIAFED</AccessKeyId></Credentials>
<FederatedUser><Arn>arn:aws:sts::123456789012:federated-user/af-submit</Arn><FederatedUserId>123456789012:af-submit</FederatedUserId></FederatedUser>
<PackedPolicySize>6</PackedPolicySize></GetFederationTokenResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></GetFederationTokenResponse>`}
	cfg := fakeConfig(t, f)
	c, err := Mint(context.Background(), cfg, MintRequest{Bucket: "inputs", Prefix: "p/", Mode: ModeFederationToken, TTL: 36 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if c.AccessKeyID != "ASIAFED" || c.SecretAccessKey != "fedsecret" || c.SessionToken != "fedtoken" || !c.Expiration.Equal(exp) || c.Bucket != "inputs" || c.Prefix != "p/" {
		t.Fatalf("minted %#v", c)
	}
	policy, _ := SessionPolicy("inputs", "p/")
	f.mu.Lock()
	form := f.form
	f.mu.Unlock()
	if form.Get("Action") != "GetFederationToken" || form.Get("Name") != "af-submit" || form.Get("DurationSeconds") != "129600" || form.Get("Policy") != policy {
		t.Fatalf("request form %v", form)
	}
}

func TestMintExplainsSTSErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mode   Mode
		status int
		code   string
		msg    string
		want   []string
	}{
		{"federation denied", ModeFederationToken, 403, "AccessDenied",
			"User: arn:aws:iam::123456789012:user/ana is not authorized to perform: sts:GetFederationToken",
			[]string{"refused GetFederationToken", "lacks permission sts:GetFederationToken"}},
		{"assume role denied", ModeAssumeRole, 403, "AccessDenied",
			"User: arn:aws:iam::123456789012:user/ana is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/r",
			[]string{"lacks permission sts:AssumeRole on arn:aws:iam::123456789012:role/readers", "trust policy"}},
		{"invalid key", ModeAssumeRole, 403, "InvalidClientTokenId", "The security token included in the request is invalid.",
			[]string{"did not accept the caller's AWS credentials", "InvalidClientTokenId"}},
		{"bad signature", ModeFederationToken, 403, "SignatureDoesNotMatch", "The request signature we calculated does not match",
			[]string{"did not accept the caller's AWS credentials"}},
		{"caller session expired", ModeAssumeRole, 400, "ExpiredToken", "The security token included in the request is expired",
			[]string{"caller's own AWS session has expired"}},
		{"duration over role max", ModeAssumeRole, 400, "ValidationError",
			"The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
			[]string{"lower --credentials-ttl", "maximum session duration"}},
		{"policy too large", ModeAssumeRole, 400, "PackedPolicyTooLarge", "Packed policy consumes 120% of allotted space",
			[]string{"too large", "shorter prefix"}},
		{"malformed policy", ModeAssumeRole, 400, "MalformedPolicyDocument", "Syntax errors in policy.",
			[]string{"rejected the session policy for s3://inputs/p/"}},
		{"region disabled", ModeAssumeRole, 403, "RegionDisabledException", "STS is not activated in this region",
			[]string{"not activated in this region"}},
		{"other", ModeAssumeRole, 500, "InternalFailure", "boom", []string{"STS AssumeRole failed (InternalFailure)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := fakeConfig(t, &fakeSTS{status: tc.status, body: stsErrorXML(tc.code, tc.msg)})
			_, err := Mint(context.Background(), cfg, MintRequest{
				Bucket: "inputs", Prefix: "p/", Mode: tc.mode, RoleARN: "arn:aws:iam::123456789012:role/readers",
			})
			if err == nil {
				t.Fatal("minted despite the error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			var ae smithy.APIError
			if !errors.As(err, &ae) || ae.ErrorCode() != tc.code {
				t.Errorf("original STS error not kept in the chain: %v", err)
			}
		})
	}
}

// TestIsExpiredToken classifies errors as the SDK really produces them,
// parsed from S3's and STS's wire formats, since MinIO's minimum session
// (15 minutes) makes a real expiry impractical in a test.
func TestIsExpiredToken(t *testing.T) {
	t.Parallel()
	s3Expired := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message><RequestId>r</RequestId></Error>`)
	}))
	t.Cleanup(s3Expired.Close)
	c := testCreds()
	c.Endpoint = s3Expired.URL
	cfg, err := c.AWSConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg.RetryMaxAttempts = 1
	_, s3Err := awsconf.S3(cfg).GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(c.Bucket), Key: aws.String(c.Prefix + "x.log")})
	if s3Err == nil {
		t.Fatal("no error from the expired-token server")
	}
	stsCfg := fakeConfig(t, &fakeSTS{status: 400, body: stsErrorXML("ExpiredTokenException", "Token expired")})
	_, stsErr := awsconf.STS(stsCfg).GetCallerIdentity(context.Background(), nil)

	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"s3 ExpiredToken", s3Err, true},
		{"s3 ExpiredToken wrapped", fmt.Errorf("download: %w", s3Err), true},
		{"sts ExpiredTokenException", stsErr, true},
		{"sealed expiry", fmt.Errorf("open: %w", ErrExpired), true},
		{"access denied", &smithy.GenericAPIError{Code: "AccessDenied"}, false},
		{"invalid token", &smithy.GenericAPIError{Code: "InvalidToken"}, false},
		{"plain", errors.New("ExpiredToken"), false},
		{"nil", nil, false},
	}
	for _, tc := range tests {
		if got := IsExpiredToken(tc.err); got != tc.want {
			t.Errorf("%s: IsExpiredToken(%v) = %v", tc.name, tc.err, got)
		}
	}

	explained := ExplainExpired(s3Err, c)
	if !errors.Is(explained, ErrExpired) || !strings.Contains(explained.Error(), "2026-03-01T13:00:00Z") || !strings.Contains(explained.Error(), "--credentials-ttl") {
		t.Errorf("ExplainExpired = %v", explained)
	}
	var ae smithy.APIError
	if !errors.As(explained, &ae) {
		t.Errorf("ExplainExpired dropped the S3 error: %v", explained)
	}
	if other := errors.New("timeout"); ExplainExpired(other, c) != other {
		t.Error("ExplainExpired changed an unrelated error")
	}
}

// Without a role on AWS the message names what is missing: every
// setting, with how to set each for MinIO and for AWS, when there are no
// AWS settings at all; the role (and the region) when there are
// credentials.
func TestNoRoleErrorNamesTheSettings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    awsconf.Present
		want []string
	}{
		{"no AWS settings at all", awsconf.Present{}, []string{"no AWS settings", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", "~/.aws/credentials",
			"For MinIO or another S3 service: export AWS_ENDPOINT_URL=http://HOST:9000", "for AWS:", "AWS_REGION", "--role-arn ARN (or AF_ROLE_ARN)", "--credentials-mode federation-token"}},
		{"credentials, no role, no region", awsconf.Present{Credentials: "AWS_PROFILE=analyst"}, []string{"no role to assume", "credentials from AWS_PROFILE=analyst", "--role-arn ARN or set AF_ROLE_ARN and AWS_REGION", "set AWS_ENDPOINT_URL for MinIO"}},
		{"credentials and region", awsconf.Present{Credentials: "AWS_ACCESS_KEY_ID", Region: "eu-west-1"}, []string{"set AF_ROLE_ARN (or use"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			msg := noRoleError(tc.p).Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}
