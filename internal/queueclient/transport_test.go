package queueclient

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/af-project/af/internal/tlstest"
)

func TestIsLoopback(t *testing.T) {
	t.Parallel()
	cases := []struct {
		host string
		want bool
	}{
		{"127.0.0.1", true},
		{"127.255.3.4", true},
		{"::1", true},
		{"[::1]", true},
		{"::ffff:127.0.0.1", true},
		{"localhost", true},
		{"LocalHost", true},
		{"localhost.", true},
		// Not certainly this machine.
		{"127.1", false},     // a short form some resolvers read as 127.0.0.1, Go's parser does not
		{"0.0.0.0", false},   // the unspecified address, not loopback
		{"::", false},        // likewise
		{"10.0.0.1", false},  // another host
		{"128.0.0.1", false}, // just outside 127.0.0.0/8
		{"queue.example.org", false},
		{"localhost.example.org", false}, // DNS decides where it goes
		{"foo.localhost", false},
		{"::1%lo", false}, // a zone: not the plain loopback address
		{"", false},
		{"[::1", false},
	}
	for _, c := range cases {
		if got := IsLoopback(c.host); got != c.want {
			t.Errorf("IsLoopback(%q) = %v, want %v", c.host, got, c.want)
		}
	}
}

// redirectTo is an HTTP client whose every connection goes to addr,
// whatever host the URL names: a test server stands in for a remote host.
func redirectTo(addr string) *http.Client {
	var d net.Dialer
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}}
}

// TestPlainHTTPTokenOnlyToLoopback: over plain http to a host that is not
// loopback, a call carrying the token fails before anything is sent
// (the server stands in for that host and sees no request), naming the
// host; WithInsecureHTTP sends it; a call without a token (reads) and any
// call to a loopback URL are sent.
func TestPlainHTTPTokenOnlyToLoopback(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var lastAuth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		lastAuth.Store(r.Header.Get("Authorization"))
		_, _ = w.Write([]byte("key"))
	}))
	defer srv.Close()
	hc := redirectTo(srv.Listener.Addr().String())
	cases := []struct {
		name, url, token string
		opts             []Option
		refused          bool
	}{
		{"remote ip", "http://10.0.0.1:8080", "tok-123", nil, true},
		{"dns name", "http://queue.example.org", "tok-123", nil, true},
		{"unspecified", "http://0.0.0.0:8080", "tok-123", nil, true},
		{"short form", "http://127.1:8080", "tok-123", nil, true},
		{"remote allowed", "http://10.0.0.1:8080", "tok-123", []Option{WithInsecureHTTP()}, false},
		{"no token", "http://10.0.0.1:8080", "", nil, false},
		{"loopback v4", "http://127.0.0.1:8080", "tok-123", nil, false},
		{"loopback v6", "http://[::1]:8080", "tok-123", nil, false},
		{"localhost", "http://localhost:8080", "tok-123", nil, false},
	}
	for _, c := range cases {
		before := calls.Load()
		cl := New(c.url, c.token, append([]Option{WithHTTPClient(hc), WithRetries(1)}, c.opts...)...)
		_, err := cl.PoolKey(context.Background())
		sent := calls.Load() - before
		if c.refused {
			if !errors.Is(err, ErrInsecureHTTP) || sent != 0 {
				t.Errorf("%s: err %v, %d requests sent; want ErrInsecureHTTP and none", c.name, err, sent)
				continue
			}
			host := strings.TrimPrefix(c.url, "http://")
			if !strings.Contains(err.Error(), host) || !strings.Contains(err.Error(), "https://") {
				t.Errorf("%s: error %q should name %s and the https fix", c.name, err, host)
			}
			if !errors.Is(cl.CheckTransport(), ErrInsecureHTTP) {
				t.Errorf("%s: CheckTransport() = %v, want ErrInsecureHTTP", c.name, cl.CheckTransport())
			}
			continue
		}
		if err != nil || sent != 1 {
			t.Errorf("%s: err %v, %d requests; want one request", c.name, err, sent)
		}
		if want := map[bool]string{true: "Bearer " + c.token, false: ""}[c.token != ""]; lastAuth.Load() != want {
			t.Errorf("%s: Authorization %q, want %q", c.name, lastAuth.Load(), want)
		}
		if err := cl.CheckTransport(); err != nil {
			t.Errorf("%s: CheckTransport() = %v", c.name, err)
		}
	}
}

// TestRootCAs: a client given the test CA (LoadCAFile: the system pool
// plus the file) talks to an https server whose certificate the CA
// signed; one without it fails at once with ErrCertificate, dialling once
// (an untrusted certificate is not retried).
func TestRootCAs(t *testing.T) {
	t.Parallel()
	ca, err := tlstest.NewCA("af test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server(tlstest.LeafOptions{}, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	files, err := tlstest.WriteFiles(t.TempDir(), "queue", ca, leaf)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := leaf.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("key")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	var conns atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	pool, err := LoadCAFile(files.CA)
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{srv.URL, strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)} {
		for name, opts := range map[string][]Option{
			"default transport": {WithRootCAs(pool)},
			"own client":        {WithHTTPClient(&http.Client{}), WithRootCAs(pool)},
		} {
			b, err := New(url, "tok-123", opts...).PoolKey(context.Background())
			if err != nil || string(b) != "key" {
				t.Errorf("%s %s with the CA: %q, %v", url, name, b, err)
			}
		}
	}
	before := conns.Load()
	_, err = New(srv.URL, "tok-123", WithBackoff(1, 1)).PoolKey(context.Background())
	if !errors.Is(err, ErrCertificate) || errors.Is(err, ErrUnreachable) {
		t.Fatalf("without the CA: %v, want ErrCertificate (not ErrUnreachable)", err)
	}
	if !strings.Contains(err.Error(), "certificate") {
		t.Errorf("error %q does not say it is the certificate", err)
	}
	if n := conns.Load() - before; n != 1 {
		t.Errorf("without the CA the client connected %d times, want 1 (no retries)", n)
	}
}

func TestLoadCAFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := tlstest.NewCA("af test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server(tlstest.LeafOptions{}, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.pem"), "no such file"},
		{"empty", write("empty.pem", ""), "holds no PEM certificate"},
		{"not pem", write("der.pem", "hello"), "holds no PEM certificate"},
		{"a key", write("key.pem", string(leaf.KeyPEM)), "holds a private key"},
		{"bad cert", write("bad.pem", "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n"), "certificate 1"},
	}
	for _, c := range cases {
		_, err := LoadCAFile(c.path)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.path)) {
			t.Errorf("%s: LoadCAFile = %v, want an error naming the file and %q", c.name, err, c.want)
		}
	}
	if _, err := LoadCAFile(write("ok.pem", string(ca.PEM))); err != nil {
		t.Errorf("a CA certificate: %v", err)
	}
}
