package redact

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

const signed = "http://127.0.0.1:9000/art/T1/0/public/logs/live.log?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20300102%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20300102T030405Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=0123abcd"

func TestText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"no url here", "no url here"},
		{"see http://af.example.org/graphs/G1?x=1", "see http://af.example.org/graphs/G1?x=1"},
		{`Put "` + signed + `": dial tcp: connection refused`, `Put "http://127.0.0.1:9000/art/T1/0/public/logs/live.log": dial tcp: connection refused`},
		{"url " + signed + " then more", "url http://127.0.0.1:9000/art/T1/0/public/logs/live.log then more"},
		{"<a href='https://s3.amazonaws.com/b/k?AWSAccessKeyId=AKIA&Expires=1&Signature=abc%3D'>", "<a href='https://s3.amazonaws.com/b/k'>"},
		{"HTTPS://H/P?x-amz-signature=1#frag", "HTTPS://H/P"},
		{"query alone: X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=ff", "query alone: X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"},
		{"two " + signed + " and " + signed, "two http://127.0.0.1:9000/art/T1/0/public/logs/live.log and http://127.0.0.1:9000/art/T1/0/public/logs/live.log"},
	} {
		if got := Text(tc.in); got != tc.want {
			t.Errorf("Text(%q)\n got %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestURLString(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		signed:                           "127.0.0.1:9000/art/T1/0/public/logs/live.log",
		"http://user:pw@h:1/a%20b?q=1#f": "h:1/a%20b",
		"not a url?q=1":                  "not a url",
		"%zz?X-Amz-Signature=1":          "%zz",
	} {
		if got := URLString(in); got != want {
			t.Errorf("URLString(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestError fails real requests (a closed port, a canceled context) to a
// presigned URL and checks the error names host and path only, keeps its
// cause for errors.Is, and keeps the words that wrapped it.
func TestError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	u := strings.Replace(signed, "127.0.0.1:9000", addr, 1)
	req, _ := http.NewRequest(http.MethodPut, u, strings.NewReader("x"))
	_, err = http.DefaultClient.Do(req)
	if err == nil {
		t.Fatal("PUT to a closed port worked")
	}
	if !strings.Contains(err.Error(), "X-Amz-Signature") {
		t.Fatalf("Go's error does not show the URL any more (%v); the test needs another way to make one", err)
	}
	wrapped := fmt.Errorf("upload artifact live.log: %w", err)
	got := Error(wrapped)
	msg := got.Error()
	want := "upload artifact live.log: PUT " + addr + "/art/T1/0/public/logs/live.log: "
	if !strings.HasPrefix(msg, want) || strings.Contains(msg, "?") || strings.Contains(msg, "X-Amz") {
		t.Fatalf("Error = %q, want prefix %q and no query", msg, want)
	}
	var oe *net.OpError
	if !errors.As(got, &oe) {
		t.Errorf("cause lost: %T %v", got, got)
	}
	var ue *url.Error
	if errors.As(got, &ue) {
		t.Errorf("the *url.Error (which prints the URL) is still reachable")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	_, err = http.DefaultClient.Do(req)
	got = Error(err)
	if !errors.Is(got, context.Canceled) || strings.Contains(got.Error(), "X-Amz") || !strings.HasPrefix(got.Error(), "GET ") {
		t.Errorf("canceled: %v", got)
	}

	if Error(nil) != nil {
		t.Error("Error(nil) is not nil")
	}
	plain := os.ErrNotExist
	if Error(plain) != plain {
		t.Error("an error without a URL changed")
	}
	if got := Error(errors.New("S3 said " + signed)).Error(); got != "S3 said http://127.0.0.1:9000/art/T1/0/public/logs/live.log" {
		t.Errorf("text error: %q", got)
	}
}

func FuzzText(f *testing.F) {
	f.Add(signed)
	f.Add("X-Amz-Signature=1 http://h/p?Signature=2")
	f.Fuzz(func(t *testing.T, s string) {
		out := Text(s)
		if Text(out) != out {
			t.Fatalf("Text is not idempotent: %q -> %q -> %q", s, out, Text(out))
		}
		lower := strings.ToLower(out)
		for _, p := range []string{"x-amz-signature=", "x-amz-credential="} {
			for i := strings.Index(lower, p); i >= 0; {
				rest := lower[i+len(p):]
				if !strings.HasPrefix(rest, "redacted") {
					t.Fatalf("%q left in %q", p, out)
				}
				j := strings.Index(rest, p)
				if j < 0 {
					break
				}
				i += len(p) + j
			}
		}
	})
}
