package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/af-project/af/internal/clocktest"
	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/queueclient"
	"github.com/af-project/af/internal/testbin"
	"github.com/af-project/af/internal/tlstest"
)

func mustCA(t *testing.T) *tlstest.CA {
	t.Helper()
	ca, err := tlstest.NewCA("af test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func mustLeaf(t *testing.T, ca *tlstest.CA, o tlstest.LeafOptions) *tlstest.Leaf {
	t.Helper()
	l, err := ca.Server(o, "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestLoadCertificate: each way the certificate files can be wrong is an
// error naming the file and the fix; a certificate outside its validity
// (or close to its end) loads, with a warning naming the file.
func TestLoadCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := mustCA(t)
	now := time.Now()
	good := mustLeaf(t, ca, tlstest.LeafOptions{})
	other := mustLeaf(t, ca, tlstest.LeafOptions{})
	expired := mustLeaf(t, ca, tlstest.LeafOptions{NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour)})
	future := mustLeaf(t, ca, tlstest.LeafOptions{NotBefore: now.Add(time.Hour), NotAfter: now.Add(48 * time.Hour)})
	soon := mustLeaf(t, ca, tlstest.LeafOptions{NotAfter: now.Add(3 * 24 * time.Hour)})
	cert := writeFile(t, filepath.Join(dir, "cert.pem"), good.CertPEM)
	key := writeFile(t, filepath.Join(dir, "key.pem"), good.KeyPEM)
	otherKey := writeFile(t, filepath.Join(dir, "other-key.pem"), other.KeyPEM)
	empty := writeFile(t, filepath.Join(dir, "empty.pem"), nil)
	pair := func(name string, l *tlstest.Leaf) (string, string) {
		return writeFile(t, filepath.Join(dir, name+".pem"), l.CertPEM), writeFile(t, filepath.Join(dir, name+"-key.pem"), l.KeyPEM)
	}
	expCert, expKey := pair("expired", expired)
	futCert, futKey := pair("future", future)
	soonCert, soonKey := pair("soon", soon)
	missing := filepath.Join(dir, "missing.pem")
	openKey := writeFile(t, filepath.Join(dir, "open-key.pem"), good.KeyPEM)
	if err := os.Chmod(openKey, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, cert, key string
		err             []string // all in the error; nil: loads
		warn            string
	}{
		{"ok", cert, key, nil, ""},
		{"cert missing", missing, key, []string{"tls_cert (--tls-cert) " + missing, "no such file", "give the path"}, ""},
		{"key missing", cert, missing, []string{"tls_key (--tls-key) " + missing, "no such file"}, ""},
		// Root reads any file, so a directory stands in for an
		// unreadable one.
		{"cert unreadable", dir, key, []string{"tls_cert (--tls-cert) " + dir, "is a directory"}, ""},
		{"cert empty", empty, key, []string{"tls_cert " + empty, "holds no PEM certificate"}, ""},
		{"swapped", key, cert, []string{"tls_cert " + key, "holds a private key", "swapped"}, ""},
		{"key empty", cert, empty, []string{"tls_key " + empty, "holds no PEM private key"}, ""},
		{"key of another cert", cert, otherKey, []string{cert, otherKey, "does not match", "the key must be the one the certificate was issued for"}, ""},
		{"expired", expCert, expKey, nil, "tls_cert " + expCert + " expired on"},
		{"not yet valid", futCert, futKey, nil, "tls_cert " + futCert + " is not valid until"},
		{"expiring soon", soonCert, soonKey, nil, "tls_cert " + soonCert + " expires on"},
		{"key readable by others", cert, openKey, nil, "tls_key " + openKey + " has mode 0644: others on this host can read the server's private key; run chmod 600"},
	}
	for _, c := range cases {
		_, warnings, err := LoadCertificate(c.cert, c.key, now)
		if c.err == nil {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			}
		} else {
			if err == nil {
				t.Errorf("%s: loaded, want an error", c.name)
				continue
			}
			for _, w := range c.err {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: error %q lacks %q", c.name, err, w)
				}
			}
		}
		got := strings.Join(warnings, "\n")
		if (c.warn == "") != (got == "") || !strings.Contains(got, c.warn) {
			t.Errorf("%s: warnings %q, want %q", c.name, got, c.warn)
		}
	}
}

func TestConfigTLS(t *testing.T) {
	t.Parallel()
	base := "tokens: [{name: a, role: admin, token: 0123456789abcdef0123}]\nlisten: 127.0.0.1:8443\n"
	cases := []struct {
		name, yaml, err, monitor string
	}{
		{"plain", base, "", "http://127.0.0.1:8443"},
		{"tls", base + "tls_cert: c.pem\ntls_key: k.pem\n", "", "https://127.0.0.1:8443"},
		{"tls with monitor_url", base + "tls_cert: c.pem\ntls_key: k.pem\nmonitor_url: https://af.example.org/\n", "", "https://af.example.org"},
		{"cert alone", base + "tls_cert: c.pem\n", "tls_cert and tls_key go together", ""},
		{"key alone", base + "tls_key: k.pem\n", "tls_cert and tls_key go together", ""},
		{"misspelt", base + "tls_certificate: c.pem\n", "tls_certificate", ""},
	}
	for _, c := range cases {
		cfg, err := ParseConfig("af.yaml", []byte(c.yaml))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), "af.yaml") {
				t.Errorf("%s: %v, want an error naming af.yaml and %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if cfg.MonitorURL != c.monitor {
			t.Errorf("%s: monitor_url %q, want %q", c.name, cfg.MonitorURL, c.monitor)
		}
	}
}

// tlsEnv is a Server over a real queue serving https on loopback from
// certificate files in a temp dir, on a fake clock.
type tlsEnv struct {
	url, certFile, keyFile string
	ca                     *tlstest.CA
	leaf                   *tlstest.Leaf
	clock                  interface{ Advance(time.Duration) }
	logs                   *testbin.SyncBuffer
}

func newTLSEnv(t *testing.T) *tlsEnv {
	t.Helper()
	dir := t.TempDir()
	e := &tlsEnv{ca: mustCA(t), logs: &testbin.SyncBuffer{}}
	e.leaf = mustLeaf(t, e.ca, tlstest.LeafOptions{})
	files, err := tlstest.WriteFiles(dir, "queue", e.ca, e.leaf)
	if err != nil {
		t.Fatal(err)
	}
	e.certFile, e.keyFile = files.Cert, files.Key
	// The fake clock starts now: the certificates are made for now.
	clock := clocktest.New(time.Now())
	e.clock = clock
	logger := slog.New(slog.NewJSONHandler(e.logs, nil))
	q, err := queue.Open(filepath.Join(dir, "queue.db"), queue.Options{Clock: clock, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	// Reads are open here so the transport checks see the API's own
	// answers (a 404 for a graph that does not exist) without a token.
	open := true
	cfg := Config{Data: dir, TLSCert: e.certFile, TLSKey: e.keyFile, PublicReads: &open,
		Tokens: []Token{{Name: "the-submitter", Role: RoleSubmit, Token: submitTok}}}
	if err := cfg.Normalize("test config"); err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, Deps{Queue: q, Logger: logger, Clock: clock, CertCheckEvery: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	e.url = "https://" + ln.Addr().String()
	return e
}

// peerCert is the certificate the server presents to a client trusting
// the CA.
func (e *tlsEnv) peerCert(t *testing.T) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(e.url, "https://"), &tls.Config{RootCAs: e.ca.Pool(), ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// TestServeTLS: with tls_cert/tls_key the server answers https, to TLS
// 1.2 and 1.3 clients trusting its CA, under its IP and its name; it
// refuses TLS 1.1, answers plain http on its port with a 400 and no API
// answer, and a client without the CA gets ErrCertificate.
func TestServeTLS(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), MinVersion: v, MaxVersion: v}}}
		for _, u := range []string{e.url, strings.Replace(e.url, "127.0.0.1", "localhost", 1)} {
			resp, err := hc.Get(u + "/api/v1/graphs/nosuchgraph0")
			if err != nil {
				t.Fatalf("TLS %x %s: %v", v, u, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || resp.TLS == nil || resp.TLS.Version != v {
				t.Errorf("TLS %x %s: %s over %+v, want a 404 over TLS %x", v, u, resp.Status, resp.TLS, v)
			}
		}
	}
	// HTTP/1.1 only, even to a client that would take HTTP/2.
	h2 := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool()}}}
	if resp, err := h2.Get(e.url + "/api/v1/graphs/nosuchgraph0"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
		if resp.ProtoMajor != 1 {
			t.Errorf("an HTTP/2-capable client got %s, want HTTP/1.1", resp.Proto)
		}
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.ca.Pool(), MaxVersion: tls.VersionTLS11}}}
	if resp, err := old.Get(e.url + "/api/v1/graphs/nosuchgraph0"); err == nil {
		resp.Body.Close()
		t.Errorf("a TLS 1.1 client got %s, want a failed handshake", resp.Status)
	}
	resp, err := http.Get(strings.Replace(e.url, "https://", "http://", 1) + "/api/v1/graphs/nosuchgraph0")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "HTTPS") {
		t.Errorf("plain http: %s %q, want 400 saying the server speaks HTTPS", resp.Status, body)
	}
	_, err = queueclient.New(e.url, submitTok).Graph(context.Background(), "nosuchgraph0")
	if !errors.Is(err, queueclient.ErrCertificate) {
		t.Errorf("a client without the CA: %v, want ErrCertificate", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.ca.Cert)
	_, err = queueclient.New(e.url, submitTok, queueclient.WithRootCAs(pool)).Graph(context.Background(), "nosuchgraph0")
	if !errors.Is(err, queueclient.ErrNotFound) {
		t.Errorf("a client with the CA: %v, want ErrNotFound (the server's answer)", err)
	}
}

// TestCertificateReload: renewed files are served from the first
// handshake after the check interval, without a restart; files that do
// not load (a key that does not match, as midway through a renewal) keep
// the last good certificate and log an error naming the file, once.
func TestCertificateReload(t *testing.T) {
	t.Parallel()
	e := newTLSEnv(t)
	if got := e.peerCert(t); !got.Equal(e.leaf.Cert) {
		t.Fatal("the server does not present its tls_cert")
	}
	// Half a renewal: the new certificate, the old key.
	renewed := mustLeaf(t, e.ca, tlstest.LeafOptions{})
	writeFile(t, e.certFile, renewed.CertPEM)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(e.certFile, later, later); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		e.clock.Advance(2 * time.Second)
		if got := e.peerCert(t); !got.Equal(e.leaf.Cert) {
			t.Fatal("a certificate whose key is not there yet replaced the good one")
		}
	}
	if n := strings.Count(e.logs.String(), "do not load"); n != 1 || !strings.Contains(e.logs.String(), e.certFile) {
		t.Errorf("logged %d load failures, want 1 naming %s:\n%s", n, e.certFile, e.logs.String())
	}
	// The renewal completes.
	writeFile(t, e.keyFile, renewed.KeyPEM)
	if err := os.Chtimes(e.keyFile, later, later); err != nil {
		t.Fatal(err)
	}
	// Within the check interval the old one is still served...
	if got := e.peerCert(t); !got.Equal(e.leaf.Cert) {
		t.Error("the files were looked at again before the check interval passed")
	}
	e.clock.Advance(2 * time.Second)
	// ...after it, the new one.
	if got := e.peerCert(t); !got.Equal(renewed.Cert) {
		t.Error("the renewed certificate is not served after the check interval")
	}
	if !bytes.Contains([]byte(e.logs.String()), []byte("loaded the renewed certificate")) {
		t.Errorf("no log of the reload:\n%s", e.logs.String())
	}
}
