// Package redact keeps presigned URLs and other secrets out of text that
// people read: task messages, logs, emails, pages.
//
// A presigned S3 URL is a bearer credential for as long as it is valid:
// whoever reads it may PUT (or GET) the object. Go's *url.Error prints the
// whole URL of a failed request, query and all, so an error that wraps one
// would carry the signature into a task message, the worker's log and the
// owner's email. URL and Error name the host and path only; Text strips the
// query of any URL that looks presigned from free text.
package redact

import (
	"errors"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
)

// URL returns u as host/path with no scheme, userinfo, query or fragment:
// what an error may say about a request.
func URL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Host + u.EscapedPath()
}

// URLString is URL of a URL in text form; text that does not parse is
// cut at its first '?' or '#'.
func URLString(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		if i := strings.IndexAny(s, "?#"); i >= 0 {
			s = s[:i]
		}
		return s
	}
	return URL(u)
}

// Error describes a failed HTTP request without its URL's query: a
// *url.Error inside err becomes "PUT host/path: cause". Other errors are
// returned as they are, with any presigned URL in their text stripped
// (Text). A nil err is nil.
func Error(err error) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return &requestError{op: ue.Op, where: URLString(ue.URL), err: ue.Err, whole: err, ue: ue}
	}
	if s := err.Error(); Text(s) != s {
		return &textError{msg: Text(s), err: err}
	}
	return err
}

// requestError is a *url.Error's meaning without its URL's query. Unwrap
// gives the cause (timeouts, connection refused, context cancellation
// still match errors.Is), not the *url.Error that would print the URL.
type requestError struct {
	op, where string
	err       error
	whole     error // the error Error was given
	ue        *url.Error
}

func (e *requestError) Error() string {
	msg := e.whole.Error()
	// Whatever wrapped the *url.Error keeps its words; only the URL's
	// own text is replaced.
	full := e.ue.Error()
	short := strings.ToUpper(e.op) + " " + e.where + ": " + Text(errString(e.err))
	if i := strings.Index(msg, full); i >= 0 {
		return Text(msg[:i] + short + msg[i+len(full):])
	}
	return Text(short)
}

func errString(err error) string {
	if err == nil {
		return "request failed"
	}
	return err.Error()
}

func (e *requestError) Unwrap() error { return e.err }

// Timeout says whether the request timed out, like *url.Error.
func (e *requestError) Timeout() bool { return e.ue.Timeout() }

// textError is an error whose text had a presigned URL.
type textError struct {
	msg string
	err error
}

func (e *textError) Error() string { return e.msg }
func (e *textError) Unwrap() error { return e.err }

var (
	// urlPattern finds URLs in text; it stops at quotes and brackets so
	// Go's quoted `Put "http://..."` form is found.
	urlPattern = regexp.MustCompile(`(?i)\b[a-z][a-z0-9+.-]*://[^\s"'<>()\[\]{}]+`)
	// presigned are the query parameters of AWS SigV4 and SigV2 presigned
	// URLs (and of a session token riding along).
	presigned = regexp.MustCompile(`(?i)(x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid|(^|[?&])signature)=`)
	// strayParam is a signature or credential parameter outside a URL
	// (a query string printed alone).
	strayParam = regexp.MustCompile(`(?i)(x-amz-signature|x-amz-credential|x-amz-security-token|awsaccesskeyid|signature)=[^&\s"'<>]*`)
)

// Text strips the query string and fragment of every URL in s that looks
// presigned (X-Amz-Signature, X-Amz-Credential, X-Amz-Security-Token,
// AWSAccessKeyId or Signature parameters), leaving scheme, host and path,
// and blanks such parameters found outside a URL. Other text is unchanged.
func Text(s string) string {
	if !presigned.MatchString(s) && !strayParam.MatchString(s) {
		return s
	}
	s = urlPattern.ReplaceAllStringFunc(s, func(m string) string {
		i := strings.IndexAny(m, "?#")
		if i < 0 || !presigned.MatchString(m[i:]) {
			return m
		}
		return m[:i]
	})
	return strayParam.ReplaceAllStringFunc(s, func(m string) string {
		return m[:strings.IndexByte(m, '=')+1] + "REDACTED"
	})
}

// ReplaceAttr is a slog.HandlerOptions.ReplaceAttr that passes string and
// error values through Text, so a log line never carries a presigned URL
// even when an error from outside this module quotes one.
func ReplaceAttr(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); Text(s) != s {
			a.Value = slog.StringValue(Text(s))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			if s := err.Error(); Text(s) != s {
				a.Value = slog.StringValue(Text(s))
			}
		}
	}
	return a
}
