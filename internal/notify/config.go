package notify

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// StartTLS modes.
const (
	// StartTLSAuto upgrades the connection when the server offers STARTTLS.
	StartTLSAuto = "auto"
	// StartTLSAlways refuses to send unless the connection is upgraded.
	StartTLSAlways = "always"
	// StartTLSNever sends in the clear (a relay on the same host).
	StartTLSNever = "never"
)

// PasswordEnv is the environment variable the SMTP password is read from
// when the --smtp value names a user without a password, so the password
// stays out of process listings and shell history.
const PasswordEnv = "AF_SMTP_PASSWORD"

// DefaultTimeout bounds one delivery (connect, handshake and every
// command) when SMTPConfig.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// SMTPConfig says how to reach the relay. The zero value (no Host) means
// "no SMTP configured": messages are logged instead of sent.
type SMTPConfig struct {
	Host string
	// Port defaults to 25 (465 with ImplicitTLS).
	Port int
	// Username and Password enable AUTH PLAIN. The password is only sent
	// over TLS, or in the clear to a loopback relay.
	Username string
	Password string
	// From is the sender address; default "af@localhost".
	From string
	// StartTLS is "auto" (default), "always" or "never". It does not apply
	// with ImplicitTLS.
	StartTLS string
	// ImplicitTLS speaks TLS from the first byte (smtps, port 465).
	ImplicitTLS bool
	// Timeout bounds one delivery; default DefaultTimeout.
	Timeout time.Duration
	// TLSConfig is the base TLS configuration (RootCAs for a private CA);
	// ServerName defaults to Host.
	TLSConfig *tls.Config
}

// Addr is host:port.
func (c SMTPConfig) Addr() string {
	port := c.Port
	if port == 0 {
		port = 25
		if c.ImplicitTLS {
			port = 465
		}
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(port))
}

// String describes the configuration without the password.
func (c SMTPConfig) String() string {
	if c.Host == "" {
		return "no SMTP server (messages are logged)"
	}
	scheme := "smtp"
	if c.ImplicitTLS {
		scheme = "smtps"
	}
	u := url.URL{Scheme: scheme, Host: c.Addr()}
	if c.Username != "" {
		u.User = url.User(c.Username)
	}
	q := url.Values{}
	if !c.ImplicitTLS {
		q.Set("starttls", c.startTLS())
	}
	if c.From != "" {
		q.Set("from", c.From)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// LogValue keeps the password out of logs whatever handler is used.
func (c SMTPConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

func (c SMTPConfig) startTLS() string {
	if c.StartTLS == "" {
		return StartTLSAuto
	}
	return c.StartTLS
}

func (c SMTPConfig) from() string {
	if c.From == "" {
		return "af@localhost"
	}
	return c.From
}

func (c SMTPConfig) timeout() time.Duration {
	if c.Timeout <= 0 {
		return DefaultTimeout
	}
	return c.Timeout
}

// Validate checks the configuration; the errors say which part is wrong.
func (c SMTPConfig) Validate() error {
	if c.Host == "" {
		return nil
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("smtp port %d must be between 1 and 65535", c.Port)
	}
	switch c.startTLS() {
	case StartTLSAuto, StartTLSAlways, StartTLSNever:
	default:
		return fmt.Errorf("smtp starttls %q must be auto, always or never", c.StartTLS)
	}
	if _, err := mail.ParseAddress(c.from()); err != nil {
		return fmt.Errorf("smtp from address %q: %w", c.From, err)
	}
	if c.Password != "" && c.Username == "" {
		return fmt.Errorf("smtp password given without a username")
	}
	return nil
}

// ParseFlag reads the value of --smtp:
//
//	""                                   no SMTP: messages are logged
//	host | host:port                     plain SMTP, STARTTLS when offered
//	smtp://[user[:pass]@]host[:port][?starttls=auto|always|never&from=addr&timeout=30s]
//	smtps://[user[:pass]@]host[:port][?from=addr&timeout=30s]   TLS from the start
//
// The default port is 25 (465 for smtps). When a user is given without a
// password, the password is read from getenv(PasswordEnv); prefer that to
// a password in the URL, which other users can see in the process list.
func ParseFlag(value string, getenv func(string) string) (SMTPConfig, error) {
	value = strings.TrimSpace(value)
	if value == "" {
		return SMTPConfig{}, nil
	}
	var c SMTPConfig
	if !strings.Contains(value, "://") {
		host, port, err := splitHostPort(value)
		if err != nil {
			return SMTPConfig{}, fmt.Errorf("--smtp %q: %w (want host, host:port or smtp://user@host:port)", value, err)
		}
		c.Host, c.Port = host, port
		return c, c.Validate()
	}
	u, err := url.Parse(value)
	if err != nil {
		// url.Parse quotes the input, password included: say where
		// without echoing it.
		return SMTPConfig{}, fmt.Errorf("--smtp is not a valid URL (want smtp://user@host:port?starttls=auto)")
	}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		c.ImplicitTLS = true
	default:
		return SMTPConfig{}, fmt.Errorf("--smtp scheme %q must be smtp or smtps", u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return SMTPConfig{}, fmt.Errorf("--smtp %s: unexpected path %q", c.redacted(u), u.Path)
	}
	c.Host, c.Port, err = splitHostPort(u.Host)
	if err != nil {
		return SMTPConfig{}, fmt.Errorf("--smtp %s: %w", c.redacted(u), err)
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
		if c.Password == "" && getenv != nil {
			c.Password = getenv(PasswordEnv)
		}
	}
	q := u.Query()
	for k := range q {
		switch k {
		case "starttls", "from", "timeout":
		default:
			return SMTPConfig{}, fmt.Errorf("--smtp %s: unknown parameter %q (known: starttls, from, timeout)", c.redacted(u), k)
		}
	}
	c.StartTLS = q.Get("starttls")
	if c.ImplicitTLS && c.StartTLS != "" {
		return SMTPConfig{}, fmt.Errorf("--smtp %s: starttls does not apply to smtps (TLS from the start)", c.redacted(u))
	}
	c.From = q.Get("from")
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			return SMTPConfig{}, fmt.Errorf("--smtp %s: timeout %q must be a positive duration like 30s", c.redacted(u), t)
		}
		c.Timeout = d
	}
	if err := c.Validate(); err != nil {
		return SMTPConfig{}, fmt.Errorf("--smtp %s: %w", c.redacted(u), err)
	}
	return c, nil
}

func (SMTPConfig) redacted(u *url.URL) string { return u.Redacted() }

func splitHostPort(s string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		// No port: the whole thing is the host (an IPv6 literal needs
		// brackets to carry a port anyway).
		host, portStr = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), ""
	}
	if host == "" {
		return "", 0, fmt.Errorf("no host")
	}
	if !validHost(host) {
		return "", 0, fmt.Errorf("host %q is not a host name or IP address", host)
	}
	if portStr == "" {
		return host, 0, nil
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q must be a number between 1 and 65535", portStr)
	}
	return host, port, nil
}

// validHost accepts IP addresses and DNS names (letters, digits, '-', '_'
// and dots), which is everything a relay can be reached by.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}
