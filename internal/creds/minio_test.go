package creds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/af-project/af/internal/awsconf"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/miniotest"
)

// Integration tests against a real MinIO serving STS AssumeRole: the
// session policy Mint writes is enforced by the server, not by us.

const (
	inputBucket = "af-inputs"
	otherBucket = "af-other"
	inputPrefix = "saved_session/Firefox/"
)

var objects = map[string]string{
	inputBucket + "/" + inputPrefix + "nightly/1.log":     "in prefix",
	inputBucket + "/" + inputPrefix + "release/a/2.log":   "deeper in prefix",
	inputBucket + "/saved_session/Fennec/nightly/3.log":   "sibling prefix",
	inputBucket + "/saved_session/Firefox-other/4.log":    "prefix lookalike",
	inputBucket + "/idle_daily/Firefox/5.log":             "other reason",
	otherBucket + "/" + inputPrefix + "nightly/1.log":     "other bucket",
	otherBucket + "/secrets.txt":                          "other bucket root",
	inputBucket + "/" + inputPrefix + "nightly/empty.log": "",
}

func startMinIO(t *testing.T) *miniotest.Server {
	t.Helper()
	s := miniotest.Start(t, inputBucket, otherBucket)
	for path, body := range objects {
		bucket, key, _ := strings.Cut(path, "/")
		s.Put(t, bucket, key, []byte(body))
	}
	return s
}

// jobS3 mints credentials for the request, passes them through Seal and
// Open as af submit and the worker do, and returns an S3 client using
// them.
func jobS3(t *testing.T, s *miniotest.Server, req MintRequest) (*s3.Client, Credentials) {
	t.Helper()
	ctx := context.Background()
	if req.GraphID == "" {
		req.GraphID = "graph-" + t.Name()[:min(len(t.Name()), 40)]
		req.GraphID = strings.Map(func(r rune) rune {
			if r <= ' ' || r > '~' {
				return '_'
			}
			return r
		}, req.GraphID)
	}
	if req.Image == "" {
		req.Image = "af/os-count"
	}
	minted, err := Mint(ctx, s.Config, req)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	pub, priv := testKeys()
	blob := mustSeal(t, minted, pub)
	opened, err := Open(blob, priv, time.Now())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if !sameCreds(opened, minted) {
		// Times compare by value here: Mint returns UTC like Open does.
		t.Fatalf("opened %v, minted %v", opened, minted)
	}
	cfg, err := opened.AWSConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return awsconf.S3(cfg), opened
}

func wantAccessDenied(t *testing.T, what string, err error) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "AccessDenied" {
		t.Errorf("%s: want AccessDenied from S3, got %v", what, err)
	}
}

func TestMintedCredentialsAreScopedToPrefix(t *testing.T) {
	t.Parallel()
	s := startMinIO(t)
	ctx := context.Background()
	before := time.Now()
	client, c := jobS3(t, s, MintRequest{Bucket: inputBucket, Prefix: inputPrefix, TTL: time.Hour})

	if c.AccessKeyID == miniotest.RootUser || c.SessionToken == "" || c.SecretAccessKey == "" {
		t.Fatalf("not temporary credentials: %v", c)
	}
	if c.Endpoint != s.Endpoint || c.Region != awsconf.DefaultRegion || c.Bucket != inputBucket || c.Prefix != inputPrefix {
		t.Fatalf("minted %v", c)
	}
	if lo, hi := before.Add(time.Hour-time.Minute), time.Now().Add(time.Hour+time.Minute); c.Expiration.Before(lo) || c.Expiration.After(hi) {
		t.Fatalf("expiration %v not about an hour from now", c.Expiration)
	}

	reads := []struct {
		bucket, key string
		allowed     bool
	}{
		{inputBucket, inputPrefix + "nightly/1.log", true},
		{inputBucket, inputPrefix + "release/a/2.log", true},
		{inputBucket, inputPrefix + "nightly/empty.log", true},
		{inputBucket, "saved_session/Fennec/nightly/3.log", false},
		{inputBucket, "saved_session/Firefox-other/4.log", false},
		{inputBucket, "idle_daily/Firefox/5.log", false},
		{otherBucket, inputPrefix + "nightly/1.log", false},
		{otherBucket, "secrets.txt", false},
	}
	for _, r := range reads {
		t.Run("get "+r.bucket+"/"+r.key, func(t *testing.T) {
			t.Parallel()
			out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(r.bucket), Key: aws.String(r.key)})
			if !r.allowed {
				wantAccessDenied(t, "read outside the grant", err)
				return
			}
			if err != nil {
				t.Fatalf("read inside the grant: %v", err)
			}
			body, _ := io.ReadAll(out.Body)
			out.Body.Close()
			if want := objects[r.bucket+"/"+r.key]; string(body) != want {
				t.Fatalf("body %q, want %q", body, want)
			}
		})
	}

	writes := []struct{ bucket, key string }{
		{inputBucket, inputPrefix + "nightly/new.log"},
		{inputBucket, inputPrefix + "nightly/1.log"}, // overwrite an input
		{inputBucket, "elsewhere/new.log"},
		{otherBucket, "new.log"},
	}
	for _, w := range writes {
		t.Run("put "+w.bucket+"/"+w.key, func(t *testing.T) {
			t.Parallel()
			_, err := client.PutObject(ctx, &s3.PutObjectInput{
				Bucket: aws.String(w.bucket), Key: aws.String(w.key), Body: bytes.NewReader([]byte("x")),
			})
			wantAccessDenied(t, "write", err)
		})
	}
	t.Run("delete input", func(t *testing.T) {
		t.Parallel()
		key := inputPrefix + "release/a/2.log"
		_, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(inputBucket), Key: aws.String(key)})
		wantAccessDenied(t, "delete", err)
		if _, err := s.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(inputBucket), Key: aws.String(key)}); err != nil {
			t.Fatalf("input gone after refused delete: %v", err)
		}
	})

	// The worker never lists, so the policy grants no s3:ListBucket.
	for _, l := range []struct{ bucket, prefix string }{
		{inputBucket, inputPrefix}, {inputBucket, inputPrefix + "release/"}, {inputBucket, ""},
		{inputBucket, "saved_session/"}, {otherBucket, ""}, {otherBucket, inputPrefix},
	} {
		t.Run("list "+l.bucket+"/"+l.prefix, func(t *testing.T) {
			t.Parallel()
			in := &s3.ListObjectsV2Input{Bucket: aws.String(l.bucket)}
			if l.prefix != "" {
				in.Prefix = aws.String(l.prefix)
			}
			_, err := client.ListObjectsV2(ctx, in)
			wantAccessDenied(t, "list", err)
		})
	}
	t.Run("list buckets", func(t *testing.T) {
		t.Parallel()
		_, err := client.ListBuckets(ctx, &s3.ListBucketsInput{})
		wantAccessDenied(t, "list buckets", err)
	})
	t.Run("create bucket", func(t *testing.T) {
		t.Parallel()
		_, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("af-new-bucket")})
		wantAccessDenied(t, "create bucket", err)
	})
}

func TestMintedCredentialsForWholeBucket(t *testing.T) {
	t.Parallel()
	s := startMinIO(t)
	ctx := context.Background()
	client, _ := jobS3(t, s, MintRequest{Bucket: inputBucket, TTL: MinTTL, SessionName: "af-whole-bucket"})

	for _, key := range []string{inputPrefix + "nightly/1.log", "idle_daily/Firefox/5.log"} {
		if _, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(inputBucket), Key: aws.String(key)}); err != nil {
			t.Errorf("read %s in the granted bucket: %v", key, err)
		}
	}
	_, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(inputBucket)})
	wantAccessDenied(t, "list the granted bucket (the worker never lists)", err)
	_, err = client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(otherBucket), Key: aws.String("secrets.txt")})
	wantAccessDenied(t, "read other bucket", err)
	_, err = client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(otherBucket)})
	wantAccessDenied(t, "list other bucket", err)
	_, err = client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(inputBucket), Key: aws.String("x"), Body: bytes.NewReader(nil)})
	wantAccessDenied(t, "write granted bucket", err)
}

// TestMintRefusals covers STS refusing the caller for real: MinIO answers
// AssumeRole from a temporary session with AccessDenied, bad keys with
// AccessDenied + a signature message, and GetFederationToken as
// unsupported.
func TestMintRefusals(t *testing.T) {
	t.Parallel()
	s := startMinIO(t)
	ctx := context.Background()
	_, minted := jobS3(t, s, MintRequest{Bucket: inputBucket, Prefix: inputPrefix})

	withKeys := func(id, secret, token string) aws.Config {
		cfg, err := awsconf.Load(ctx, awsconf.Options{
			Endpoint: s.Endpoint, Region: awsconf.DefaultRegion,
			AccessKeyID: id, SecretAccessKey: secret, SessionToken: token,
		})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	tests := []struct {
		name string
		cfg  aws.Config
		req  MintRequest
		want []string
	}{
		{"caller lacks sts:AssumeRole", withKeys(minted.AccessKeyID, minted.SecretAccessKey, minted.SessionToken),
			MintRequest{Bucket: inputBucket, Prefix: inputPrefix, RoleARN: "arn:aws:iam::123456789012:role/readers"},
			[]string{"refused AssumeRole", "lacks permission sts:AssumeRole on arn:aws:iam::123456789012:role/readers"}},
		{"wrong secret", withKeys(miniotest.RootUser, "not-the-password", ""),
			MintRequest{Bucket: inputBucket},
			[]string{"did not accept the caller's AWS credentials", "AWS_SECRET_ACCESS_KEY"}},
		{"unknown key id", withKeys("NOSUCHKEY", "whatever-secret", ""),
			MintRequest{Bucket: inputBucket},
			[]string{"did not accept the caller's AWS credentials"}},
		{"federation token unsupported", s.Config,
			MintRequest{Bucket: inputBucket, Mode: ModeFederationToken},
			[]string{"does not serve STS GetFederationToken", "--credentials-mode assume-role"}},
		{"expires before deadline", s.Config,
			MintRequest{Bucket: inputBucket, TTL: MinTTL, Deadline: time.Now().Add(time.Hour)},
			[]string{"before the graph's deadline", "--credentials-ttl"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Mint(ctx, tc.cfg, tc.req)
			if err == nil {
				t.Fatalf("minted %v", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// scopedS3 computes the scope of selected as af submit does (ScopeFor),
// mints credentials for exactly those prefixes on MinIO, and returns a
// client using them after a Seal/Open round trip.
func scopedS3(t *testing.T, s *miniotest.Server, selected []string) (*s3.Client, Scope) {
	t.Helper()
	sc, err := ScopeFor(inputBucket, "v2", layout.Telemetry(), selected)
	if err != nil {
		t.Fatal(err)
	}
	client, c := jobS3(t, s, MintRequest{Bucket: inputBucket, Prefix: "v2", Prefixes: sc.Prefixes, TTL: MinTTL})
	if !slices.Equal(c.Prefixes, sc.Prefixes) {
		t.Fatalf("sealed prefixes %q, scope %q", c.Prefixes, sc.Prefixes)
	}
	return client, sc
}

func checkReads(t *testing.T, s *miniotest.Server, client *s3.Client, allowed, refused []string) {
	t.Helper()
	ctx := context.Background()
	for _, k := range allowed {
		out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(inputBucket), Key: aws.String(k)})
		if err != nil {
			t.Errorf("read %s (in scope): %v", k, err)
			continue
		}
		body, _ := io.ReadAll(out.Body)
		out.Body.Close()
		if string(body) != k {
			t.Errorf("read %s: body %q", k, body)
		}
	}
	for _, k := range refused {
		// The object exists: root can read it.
		if _, err := s.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(inputBucket), Key: aws.String(k)}); err != nil {
			t.Fatalf("fixture %s missing: %v", k, err)
		}
		_, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(inputBucket), Key: aws.String(k)})
		wantAccessDenied(t, "read "+k+" (not selected)", err)
	}
}

// TestMintedCredentialsReadOnlySelectedPrefixes: S3 itself refuses the
// minted credentials every key the filter did not select, in a sibling
// dimension value or in the very directory of selected files, while the
// selected files read fine.
func TestMintedCredentialsReadOnlySelectedPrefixes(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t, inputBucket)
	k := func(channel, build, date, uuid string) string {
		return key("v2", "saved_session", "Firefox", channel, "40.0", build, date, uuid)
	}
	selected := []string{k("release", "20150101000000", "20150105", "a"), k("release", "20150101000000", "20150105", "b"), k("beta", "20150102000000", "20150106", "c")}
	unselected := []string{
		k("nightly", "20150101000000", "20150105", "d"),                                            // sibling channel value
		k("release", "20150101000000", "20150106", "e"),                                            // same directory, other date
		k("release", "20150103000000", "20150105", "f"),                                            // same directory, other build
		k("release", "201501010000001", "20150105", "g"),                                           // build id extending a selected one
		key("v2", "saved_session", "Fennec", "release", "40.0", "20150101000000", "20150105", "h"), // sibling app
		"v2/saved_session/Firefox/release/40.0/notes.txt",                                          // same directory, not a log
		"outside/v2/x",
	}
	for _, key := range append(slices.Clone(selected), unselected...) {
		s.Put(t, inputBucket, key, []byte(key))
	}
	client, sc := scopedS3(t, s, selected)
	if sc.Widened || len(sc.Prefixes) != 2 {
		t.Fatalf("scope %+v", sc)
	}
	checkReads(t, s, client, selected, unselected)
}

// TestMintedCredentialsWidened: when the leaf prefixes do not fit the
// session policy, the scope widens one dimension (here to the build) and
// S3 enforces the wider prefix: the build's other days read, other builds
// in the same directory and sibling directories do not.
func TestMintedCredentialsWidened(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t, inputBucket)
	k := func(channel, build, date string) string {
		return key("v2", "saved_session", "Firefox", channel, "40.0", build, date, "u")
	}
	var selected []string
	for d := range 40 {
		selected = append(selected, k("release", "20150101000000", fmt.Sprintf("201502%02d", d)))
	}
	sameBuildOtherDay := k("release", "20150101000000", "20150301")
	unselected := []string{k("release", "20150109000000", "20150201"), k("beta", "20150101000000", "20150201")}
	for _, key := range append(append(slices.Clone(selected), sameBuildOtherDay), unselected...) {
		s.Put(t, inputBucket, key, []byte(key))
	}
	client, sc := scopedS3(t, s, selected)
	if !sc.Widened || sc.Dimension != "appBuildID" || sc.Narrowest != 40 || len(sc.Prefixes) != 1 {
		t.Fatalf("scope %+v", sc)
	}
	checkReads(t, s, client, append(slices.Clone(selected), sameBuildOtherDay), unselected)
}

// TestMintAcceptsPolicyAtTheLimit: MinIO's STS takes a session policy
// just under MaxSessionPolicy, the largest ScopeFor produces.
func TestMintAcceptsPolicyAtTheLimit(t *testing.T) {
	t.Parallel()
	s := miniotest.Start(t, inputBucket)
	var prefixes []string
	for i := 0; ; i++ {
		next := append(slices.Clone(prefixes), fmt.Sprintf("v2/saved_session/Firefox/release/40.0/20150101000000.201502%03d.", i))
		p, err := SessionPolicyFor(inputBucket, next)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > MaxSessionPolicy {
			break
		}
		prefixes = next
	}
	p, _ := SessionPolicyFor(inputBucket, prefixes)
	if len(p) < MaxSessionPolicy-100 {
		t.Fatalf("policy only %d characters", len(p))
	}
	if _, err := Mint(context.Background(), s.Config, MintRequest{Bucket: inputBucket, Prefix: "v2", Prefixes: prefixes, TTL: MinTTL}); err != nil {
		t.Fatalf("mint with a %d-character policy: %v", len(p), err)
	}
	// One prefix more is over the limit, and MinIO refuses it: the limit
	// is the server's, not only ours.
	over := append(slices.Clone(prefixes), "v2/saved_session/Firefox/release/40.0/20150101000000.20150399.")
	if _, err := Mint(context.Background(), s.Config, MintRequest{Bucket: inputBucket, Prefix: "v2", Prefixes: over, TTL: MinTTL}); err == nil {
		t.Fatal("MinIO accepted a session policy over 2048 characters")
	} else {
		t.Logf("over the limit: %v", err)
	}
}
