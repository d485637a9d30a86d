package queueclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
)

// ErrInsecureHTTP is returned, before anything is sent, by a call that
// would carry a bearer token or a run token over plain http to a host
// that is not loopback (see IsLoopback), unless the client was made
// WithInsecureHTTP. Anyone on the path would read the token.
var ErrInsecureHTTP = errors.New("refusing to send a token over plain http to a host that is not loopback")

// WithInsecureHTTP lets the client send its tokens over plain http to any
// host. Use it only on a network where nobody can listen in (the `af` and
// `worker` commands set it for --insecure-http / AF_INSECURE_HTTP=1).
func WithInsecureHTTP() Option { return func(c *Client) { c.insecureHTTP = true } }

// WithRootCAs makes the client trust the certificate authorities of pool
// for https, in place of the system's (LoadCAFile returns the system's
// with a CA file added). It applies to the queue and to the presigned S3
// URLs the client follows, which share the transport, so a pool that
// lacks the system's CAs would break https S3 endpoints: pass
// LoadCAFile's pool, not one holding the private CA alone. With
// WithHTTPClient it changes a clone of that client's *http.Transport
// (options apply in order, so give WithHTTPClient first).
func WithRootCAs(pool *x509.CertPool) Option { return func(c *Client) { c.roots = pool } }

// LoadCAFile returns the system's certificate pool with the PEM
// certificates of path added: the private CA that signed `af serve`'s
// certificate (--tls-cert). An error names the file and what is wrong
// with it.
func LoadCAFile(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w (give the PEM file of the CA that signed af serve's certificate)", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		// No system pool (an unusual platform): the file's CAs alone.
		pool = x509.NewCertPool()
	}
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, fmt.Errorf("CA file %s holds a private key: give the CA's certificate only, and keep the key secret", path)
			}
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("CA file %s: certificate %d: %w", path, n+1, err)
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate (want -----BEGIN CERTIFICATE----- blocks)", path)
	}
	return pool, nil
}

// IsLoopback reports whether host, a URL's host name without port
// (brackets around an IPv6 address are allowed), names this machine for
// certain: an address in 127.0.0.0/8 or ::1 (also IPv4-mapped), or the
// name localhost (with or without the final dot). Anything else is not,
// even when it might resolve to loopback: 0.0.0.0, short forms such as
// 127.1 that only some resolvers read as addresses, and every other
// name, since DNS decides where a name goes.
func IsLoopback(host string) bool {
	h := host
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	if strings.EqualFold(strings.TrimSuffix(h, "."), "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	if err != nil || a.Zone() != "" {
		return false
	}
	return a.Unmap().IsLoopback()
}

// checkTransport is nil when tokens may go to base: https, a loopback
// host, or WithInsecureHTTP. It is decided once, in New.
func checkTransport(base string, insecure bool) error {
	u, err := url.Parse(base)
	if err != nil || insecure || !strings.EqualFold(u.Scheme, "http") || IsLoopback(u.Hostname()) {
		// A URL that does not parse fails on its first request anyway.
		return nil
	}
	return &InsecureHTTPError{Host: u.Host}
}

// InsecureHTTPError is ErrInsecureHTTP for one host.
type InsecureHTTPError struct{ Host string }

// Error names the host and the fixes.
func (e *InsecureHTTPError) Error() string {
	return fmt.Sprintf("%s (%s): use an https:// queue URL (af serve --tls-cert/--tls-key), or allow plain http on a trusted network", ErrInsecureHTTP, e.Host)
}

// Is matches ErrInsecureHTTP.
func (e *InsecureHTTPError) Is(target error) bool { return target == ErrInsecureHTTP }

// CheckTransport returns the error every call carrying a token would
// (ErrInsecureHTTP) or nil, so a command can refuse at start.
func (c *Client) CheckTransport() error {
	if c.token == "" {
		return nil
	}
	return c.insecure
}

// withRoots returns hc changed to trust roots: a clone of its
// *http.Transport (or of the default one) with RootCAs set.
func withRoots(hc *http.Client, roots *x509.CertPool) *http.Client {
	var t *http.Transport
	switch rt := hc.Transport.(type) {
	case nil:
		t = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		t = rt.Clone()
	default:
		// A transport of the caller's own kind keeps its TLS settings.
		return hc
	}
	if t.TLSClientConfig == nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	t.TLSClientConfig.RootCAs = roots
	cc := *hc
	cc.Transport = t
	return &cc
}

// isCertError reports whether err is the TLS handshake's refusal of the
// server's certificate.
func isCertError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &hostname)
}

// certError is ErrCertificate with the handshake's reason.
type certError struct {
	base string
	err  error
}

func (e *certError) Error() string {
	return fmt.Sprintf("%s at %s: %v", ErrCertificate, e.base, e.err)
}

func (e *certError) Unwrap() []error { return []error{e.err, ErrCertificate} }
