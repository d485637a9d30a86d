package miniotest

import (
	"context"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestStartServesS3(t *testing.T) {
	t.Parallel()
	s := Start(t, "inputs")
	s.Put(t, "inputs", "a/b.txt", []byte("hello"))
	out, err := s.S3.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("inputs"), Key: aws.String("a/b.txt")})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	defer out.Body.Close()
	body, _ := io.ReadAll(out.Body)
	if string(body) != "hello" {
		t.Fatalf("got %q, want hello", body)
	}
}

func TestStopEndsServer(t *testing.T) {
	t.Parallel()
	s, err := Launch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.S3.ListBuckets(context.Background(), &s3.ListBucketsInput{}); err == nil {
		t.Fatal("server still answers after Stop")
	}
}

// TestKillAndRestartKeepData: a killed server refuses connections, and
// Restart brings it back on the same endpoint with its objects.
func TestKillAndRestartKeepData(t *testing.T) {
	t.Parallel()
	s := Start(t, "inputs")
	s.Put(t, "inputs", "k", []byte("kept"))
	s.Kill()
	ctx := context.Background()
	if _, err := s.S3.ListBuckets(ctx, &s3.ListBucketsInput{}); err == nil {
		t.Fatal("server still answers after Kill")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	out, err := s.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("inputs"), Key: aws.String("k")})
	if err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	defer out.Body.Close()
	if body, _ := io.ReadAll(out.Body); string(body) != "kept" {
		t.Fatalf("got %q after restart, want kept", body)
	}
}
