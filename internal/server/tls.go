package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"
)

// TLS reports whether the server serves https (tls_cert and tls_key set).
func (c *Config) TLS() bool { return c.TLSCert != "" }

// DefaultCertCheckEvery is how often, at most, a handshake makes the
// server look whether tls_cert or tls_key changed on disk.
const DefaultCertCheckEvery = 10 * time.Second

// certExpiryWarning is how long before its expiry a certificate is
// warned about.
const certExpiryWarning = 7 * 24 * time.Hour

// LoadCertificate reads the PEM certificate (chain) at certFile and its
// private key at keyFile, as `af serve --tls-cert/--tls-key` (tls_cert,
// tls_key) name them. Errors name the file and how to fix it: missing or
// unreadable, no PEM block of the right kind, a key that does not match
// the certificate. warnings are for a certificate that expired, is not
// valid yet, or expires within a week (clients will refuse it, or soon,
// but the operator may be renewing it, so the server still starts), and
// for a key file others may read.
func LoadCertificate(certFile, keyFile string, now time.Time) (cert tls.Certificate, warnings []string, err error) {
	certPEM, err := readTLSFile("tls_cert (--tls-cert)", certFile)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	keyPEM, err := readTLSFile("tls_key (--tls-key)", keyFile)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	if !hasPEM(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		if hasPEM(certPEM, isKeyType) {
			return tls.Certificate{}, nil, fmt.Errorf("tls_cert %s holds a private key, not a certificate: are --tls-cert and --tls-key swapped?", certFile)
		}
		return tls.Certificate{}, nil, fmt.Errorf("tls_cert %s holds no PEM certificate (want -----BEGIN CERTIFICATE-----, the server's certificate first, then its intermediates)", certFile)
	}
	if !hasPEM(keyPEM, isKeyType) {
		return tls.Certificate{}, nil, fmt.Errorf("tls_key %s holds no PEM private key (want -----BEGIN PRIVATE KEY----- or an EC/RSA PRIVATE KEY block, unencrypted)", keyFile)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, fmt.Errorf("tls_cert %s and tls_key %s: %w (the key must be the one the certificate was issued for)", certFile, keyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return tls.Certificate{}, nil, fmt.Errorf("tls_cert %s: %w", certFile, err)
		}
	}
	if fi, err := os.Stat(keyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		warnings = append(warnings, fmt.Sprintf("tls_key %s has mode %04o: others on this host can read the server's private key; run chmod 600 %s", keyFile, fi.Mode().Perm(), keyFile))
	}
	switch {
	case now.After(leaf.NotAfter):
		warnings = append(warnings, fmt.Sprintf("tls_cert %s expired on %s: clients will refuse it; renew it (af serve picks up the new files without a restart)", certFile, leaf.NotAfter.UTC().Format(time.RFC3339)))
	case now.Before(leaf.NotBefore):
		warnings = append(warnings, fmt.Sprintf("tls_cert %s is not valid until %s: clients will refuse it until then (is this host's clock right?)", certFile, leaf.NotBefore.UTC().Format(time.RFC3339)))
	case leaf.NotAfter.Sub(now) < certExpiryWarning:
		warnings = append(warnings, fmt.Sprintf("tls_cert %s expires on %s: renew it soon (af serve picks up the new files without a restart)", certFile, leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	return cert, warnings, nil
}

func readTLSFile(what, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s %s: %w: give the path of the PEM file", what, path, err)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("%s %s: %w: af serve's user must be able to read it (chmod or chown it)", what, path, err)
	case err != nil:
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	return b, nil
}

func hasPEM(data []byte, want func(string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if want(b.Type) {
			return true
		}
	}
}

func isKeyType(t string) bool {
	return t == "PRIVATE KEY" || len(t) > len(" PRIVATE KEY") && t[len(t)-len(" PRIVATE KEY"):] == " PRIVATE KEY"
}

// certReloader serves the certificate of two files and takes up new
// ones when the files change, so a renewed certificate needs no restart.
// A change that does not load (a half-written file, a key that does not
// match yet) keeps the last good certificate and is logged, naming the
// file: a renewal in progress never takes the server down.
type certReloader struct {
	certFile, keyFile string
	every             time.Duration
	now               func() time.Time
	log               *slog.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	stamp    string // the files' sizes and modification times
	checked  time.Time
	lastFail string // the stamp of the files that last failed to load
}

func newCertReloader(certFile, keyFile string, every time.Duration, now func() time.Time, log *slog.Logger) (*certReloader, []string, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, every: every, now: now, log: log}
	r.stamp = r.fileStamp()
	cert, warnings, err := LoadCertificate(certFile, keyFile, now())
	if err != nil {
		return nil, nil, err
	}
	r.cert, r.checked = &cert, now()
	return r, warnings, nil
}

func (r *certReloader) fileStamp() string {
	var b bytes.Buffer
	for _, p := range []string{r.certFile, r.keyFile} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d/%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

// GetCertificate is tls.Config's: the current certificate, reloaded
// first when the files changed since the last look (at most every
// r.every).
func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked) < r.every {
		return r.cert, nil
	}
	r.checked = now
	stamp := r.fileStamp()
	if stamp == r.stamp {
		return r.cert, nil
	}
	cert, warnings, err := LoadCertificate(r.certFile, r.keyFile, now)
	if err != nil {
		// Logged once per state of the files, not per handshake; the
		// stamp stays old so the next look tries again.
		if stamp != r.lastFail {
			r.log.Error("tls: the changed certificate files do not load; still serving the previous certificate", "err", err)
			r.lastFail = stamp
		}
		return r.cert, nil
	}
	r.cert, r.stamp, r.lastFail = &cert, stamp, ""
	for _, w := range warnings {
		r.log.Warn(w)
	}
	r.log.Info("tls: loaded the renewed certificate", "cert", r.certFile)
	return r.cert, nil
}

// tlsConfig is the server's: TLS 1.2 at least, the reloader's
// certificate, HTTP/1.1 only (see httpProtocols).
func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: r.GetCertificate,
		NextProtos:     []string{"http/1.1"},
	}
}

// httpProtocols are the protocols the server speaks over TLS: HTTP/1.1
// alone, as over plain http. Offering HTTP/2 took the CPU per
// claim+complete cycle from +8% over plain http to +54%
// (BenchmarkClaimComplete16TLS, BENCHMARKS.md): the worker protocol is
// many small requests, and a worker's concurrent calls already have a
// connection each.
func httpProtocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	return &p
}
