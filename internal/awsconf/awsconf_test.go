package awsconf

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestPinnedS3FollowsNoRedirect: an S3 endpoint answering 307 (which the
// SDK's own client follows, to any host) does not make the worker's client
// contact the host it names.
func TestPinnedS3FollowsNoRedirect(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.Write([]byte("data from elsewhere"))
	}))
	defer other.Close()
	for _, code := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound, http.StatusMovedPermanently} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			var hits atomic.Int64
			s3srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				http.Redirect(w, r, other.URL+r.URL.Path, code)
			}))
			defer s3srv.Close()
			cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIA", "secret", "")}
			client := PinnedS3(cfg, s3srv.URL)
			_, err := client.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
			if err == nil {
				t.Fatal("GetObject succeeded through a redirect")
			}
			if hits.Load() == 0 {
				t.Fatal("the pinned endpoint was not asked")
			}
			if n := elsewhere.Load(); n != 0 {
				t.Fatalf("the redirect target received %d request(s)", n)
			}
		})
	}
}

// TestPinnedS3IgnoresConfiguredEndpoint: the client talks to the endpoint
// it was given even when the config (or a task) names another.
func TestPinnedS3IgnoresConfiguredEndpoint(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "us-east-1", BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Credentials: credentials.NewStaticCredentialsProvider("AKIA", "secret", "")}
	_, _ = PinnedS3(cfg, srv.URL).GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if hits.Load() == 0 {
		t.Fatal("the pinned endpoint was not used")
	}
}

func TestNormalizeEndpoint(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"http://127.0.0.1:9000", "http://127.0.0.1:9000"},
		{"HTTP://MinIO.Example:9000/", "http://minio.example:9000"},
		{"https://s3.eu-west-1.amazonaws.com", "https://s3.eu-west-1.amazonaws.com"},
		{"127.0.0.1:9000", ""},
		{"ftp://x", ""},
		{"http://user:pw@host", ""},
		{"http://host/?x=1", ""},
		{"http://", ""},
	}
	for _, tc := range tests {
		got, err := NormalizeEndpoint(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("NormalizeEndpoint(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeEndpoint(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestResolveWorkerS3 reads the worker's endpoint the standard way, the
// flag first.
func TestResolveWorkerS3(t *testing.T) {
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	tests := []struct {
		name, generic, s3only, flag, region string
		want                                string
	}{
		{"nothing: AWS", "", "", "", "", ""},
		{"AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", "", "", "", "http://127.0.0.1:9000"},
		{"AWS_ENDPOINT_URL_S3 wins", "http://127.0.0.1:9000", "http://127.0.0.1:9001", "", "", "http://127.0.0.1:9001"},
		{"flag wins", "http://127.0.0.1:9000", "http://127.0.0.1:9001", "http://minio:9000", "eu-west-1", "http://minio:9000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range map[string]string{"AWS_ENDPOINT_URL": tc.generic, "AWS_ENDPOINT_URL_S3": tc.s3only, "AWS_REGION": tc.region} {
				t.Setenv(k, v)
			}
			w, err := ResolveWorkerS3(context.Background(), tc.flag)
			if err != nil {
				t.Fatal(err)
			}
			if w.Endpoint != tc.want || w.Region != tc.region {
				t.Fatalf("got %+v, want endpoint %q region %q", w, tc.want, tc.region)
			}
		})
	}
	if _, err := ResolveWorkerS3(context.Background(), "minio:9000"); err == nil {
		t.Fatal("accepted an endpoint without a scheme")
	}
}
