// Package notify composes and sends the email a graph's owner gets when
// the graph ends: job name, outcome, monitor and result links, and for
// failures which tasks failed and why, sent over SMTP with STARTTLS and
// AUTH PLAIN as the relay needs. af serve's outbox (internal/outbox)
// decides when to send and retries; this package makes one attempt.
//
// With no SMTP server configured the message is logged at info level in
// full, so it is never lost; credentials are never logged.
package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"strings"
	"time"
	"unicode"
)

// Clock tells the time for the Date header; tests fix it.
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Message is an email to one recipient.
type Message struct {
	// To is the recipient, an RFC 5322 address ("ana@example.org" or
	// "Ana <ana@example.org>").
	To string
	// Subject is free text; control characters are replaced so it cannot
	// add headers.
	Subject string
	// Text is the plain-text body.
	Text string
	// HTML, if set, is sent as an alternative to Text.
	HTML string
	// MessageID, if set, is the Message-ID header ("<id@host>"); empty
	// makes a random one. The outbox sets the same one on every attempt
	// of an email so a relay can drop a duplicate.
	MessageID string
}

// ErrRecipientRefused marks a delivery the relay refused for good at RCPT
// (a 5xx reply such as 550 no such user); other failures may pass.
var ErrRecipientRefused = errors.New("the relay refuses the recipient permanently")

// Mailer sends messages through one relay.
type Mailer struct {
	cfg   SMTPConfig
	log   *slog.Logger
	clock Clock
	quiet bool
}

// Option configures a Mailer.
type Option func(*Mailer)

// WithClock sets the clock used for the Date header.
func WithClock(c Clock) Option { return func(m *Mailer) { m.clock = c } }

// Quiet leaves logging each delivery and failure to the caller (the outbox
// logs its own, and keeps the message to retry, so the body need not be
// logged to be kept). Messages with no SMTP server configured are still
// logged: that is their delivery.
func Quiet() Option { return func(m *Mailer) { m.quiet = true } }

// Describe says where messages go, without the password.
func (m *Mailer) Describe() string { return m.cfg.String() }

// New makes a Mailer. A cfg without Host makes a Mailer that logs messages
// instead of sending them. logger may be nil (discard).
func New(cfg SMTPConfig, logger *slog.Logger, opts ...Option) (*Mailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("notify: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	m := &Mailer{cfg: cfg, log: logger, clock: systemClock{}}
	for _, o := range opts {
		o(m)
	}
	return m, nil
}

// Configured reports whether messages go to an SMTP server rather than to
// the log.
func (m *Mailer) Configured() bool { return m.cfg.Host != "" }

// Send delivers msg, or logs it when no SMTP server is configured. A
// delivery that fails is logged in full too (so the message is not lost)
// and returned as an error naming the relay's address.
func (m *Mailer) Send(ctx context.Context, msg Message) error {
	to, err := mail.ParseAddress(msg.To)
	if err != nil {
		return fmt.Errorf("notify: recipient %q is not an email address: %w", msg.To, err)
	}
	from, err := mail.ParseAddress(m.cfg.from())
	if err != nil {
		return fmt.Errorf("notify: sender %q is not an email address: %w", m.cfg.from(), err)
	}
	raw, err := m.render(from, to, msg)
	if err != nil {
		return fmt.Errorf("notify: compose message to %s: %w", to.Address, err)
	}
	if !m.Configured() {
		m.log.Info("notify: no SMTP server configured, message logged instead of sent",
			"to", to.Address, "subject", cleanHeader(msg.Subject), "body", msg.Text)
		return nil
	}
	if err := m.deliver(ctx, from.Address, to.Address, raw); err != nil {
		if m.quiet {
			return fmt.Errorf("notify: send to %s via SMTP server %s: %w", to.Address, m.cfg.Addr(), err)
		}
		m.log.Error("notify: message not delivered",
			"smtp", m.cfg, "to", to.Address, "subject", cleanHeader(msg.Subject), "body", msg.Text, "err", err)
		return fmt.Errorf("notify: send to %s via SMTP server %s: %w", to.Address, m.cfg.Addr(), err)
	}
	if m.quiet {
		return nil
	}
	m.log.Info("notify: message sent", "smtp", m.cfg, "to", to.Address, "subject", cleanHeader(msg.Subject))
	return nil
}

func (m *Mailer) deliver(ctx context.Context, from, to string, raw []byte) error {
	timeout := m.cfg.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := m.cfg.Addr()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	// net/smtp has no context support: a deadline bounds every read and
	// write, and cancellation closes the connection under it.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()

	// fail prefers the context's error: a connection closed by
	// cancellation or cut by the deadline reports "use of closed network
	// connection" or "i/o timeout", which say less.
	fail := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return fmt.Errorf("%w: no answer within %s (%w)", context.DeadlineExceeded, timeout, err)
		}
		return err
	}
	tlsCfg := m.tlsConfig()
	if m.cfg.ImplicitTLS {
		tc := tls.Client(conn, tlsCfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(fmt.Errorf("tls handshake: %w", err))
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, m.cfg.Host)
	if err != nil {
		return fail(fmt.Errorf("greeting: %w", err))
	}
	defer c.Close()
	if err := c.Hello(localName()); err != nil {
		return fail(fmt.Errorf("ehlo: %w", err))
	}
	if !m.cfg.ImplicitTLS && m.cfg.startTLS() != StartTLSNever {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsCfg); err != nil {
				return fail(fmt.Errorf("starttls: %w", err))
			}
		} else if m.cfg.startTLS() == StartTLSAlways {
			return errors.New("server does not offer STARTTLS and starttls=always: fix the relay or use starttls=auto")
		}
	}
	if m.cfg.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return errors.New("server does not offer AUTH (it may only offer it after STARTTLS): check the relay's settings or drop the username")
		}
		// PlainAuth itself refuses to send the password over a connection
		// that is neither TLS nor to localhost.
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, m.cfg.Password, m.cfg.Host)); err != nil {
			return fail(fmt.Errorf("auth as %s: %w", m.cfg.Username, err))
		}
	}
	if err := c.Mail(from); err != nil {
		return fail(fmt.Errorf("mail from %s: %w", from, err))
	}
	if err := c.Rcpt(to); err != nil {
		var te *textproto.Error
		if errors.As(err, &te) && te.Code >= 500 && te.Code < 600 {
			// The relay refuses this recipient for good (550 no such
			// user): no retry of this message can succeed.
			return fmt.Errorf("%w: rcpt to %s: %w", ErrRecipientRefused, to, err)
		}
		return fail(fmt.Errorf("rcpt to %s: %w", to, err))
	}
	w, err := c.Data()
	if err != nil {
		return fail(fmt.Errorf("data: %w", err))
	}
	if _, err := w.Write(raw); err != nil {
		return fail(fmt.Errorf("data: %w", err))
	}
	if err := w.Close(); err != nil {
		return fail(fmt.Errorf("data: %w", err))
	}
	// The message is accepted once DATA ends; a failed QUIT loses nothing.
	_ = c.Quit()
	return nil
}

func (m *Mailer) tlsConfig() *tls.Config {
	var c *tls.Config
	if m.cfg.TLSConfig != nil {
		c = m.cfg.TLSConfig.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.ServerName == "" {
		c.ServerName = m.cfg.Host
	}
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}

func localName() string {
	// The EHLO name only needs to be syntactically valid; "localhost" is
	// what net/smtp would send and what relays accept from clients.
	return "localhost"
}

// render builds the message: headers (every value sanitised or encoded so
// no input can add a header) and a quoted-printable body, multipart when
// there is an HTML alternative.
func (m *Mailer) render(from, to *mail.Address, msg Message) ([]byte, error) {
	var b bytes.Buffer
	id := randomHex(12)
	msgID := "<" + id + "@af>"
	if v := cleanLimit(msg.MessageID, 200); validMessageID(v) {
		msgID = v
	}
	writeHeader := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	writeHeader("From", from.String())
	writeHeader("To", to.String())
	writeHeader("Subject", encodeSubject(msg.Subject))
	writeHeader("Date", m.clock.Now().Format(time.RFC1123Z))
	writeHeader("Message-ID", msgID)
	// RFC 3834: tells vacation responders not to answer.
	writeHeader("Auto-Submitted", "auto-generated")
	writeHeader("MIME-Version", "1.0")
	if msg.HTML == "" {
		writeHeader("Content-Type", `text/plain; charset="utf-8"`)
		writeHeader("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, msg.Text); err != nil {
			return nil, err
		}
		return b.Bytes(), nil
	}
	boundary := "af-" + id
	writeHeader("Content-Type", `multipart/alternative; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	for _, part := range []struct{ ctype, body string }{{"text/plain", msg.Text}, {"text/html", msg.HTML}} {
		b.WriteString("--" + boundary + "\r\n")
		writeHeader("Content-Type", part.ctype+`; charset="utf-8"`)
		writeHeader("Content-Transfer-Encoding", "quoted-printable")
		b.WriteString("\r\n")
		if err := writeQP(&b, part.body); err != nil {
			return nil, err
		}
		b.WriteString("\r\n")
	}
	b.WriteString("--" + boundary + "--\r\n")
	return b.Bytes(), nil
}

func writeQP(b *bytes.Buffer, s string) error {
	// Quoted-printable keeps lines under SMTP's limit and ends them CRLF
	// whatever the input's line ends.
	w := quotedprintable.NewWriter(b)
	if _, err := w.Write([]byte(strings.ReplaceAll(s, "\r\n", "\n"))); err != nil {
		return err
	}
	return w.Close()
}

// maxSubjectRunes keeps the encoded Subject well under SMTP's 998-byte
// line limit.
const maxSubjectRunes = 150

// cleanHeader replaces control characters (CR and LF among them) with
// spaces and trims the result, so a value cannot end its header line.
func cleanHeader(s string) string { return cleanLimit(s, maxSubjectRunes) }

func cleanLimit(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > limit {
		s = string(r[:limit-1]) + "…"
	}
	return s
}

func encodeSubject(s string) string {
	s = cleanHeader(s)
	enc := mime.QEncoding.Encode("utf-8", s)
	if enc == s {
		return s
	}
	// Fold between encoded words so each line stays short.
	return strings.ReplaceAll(enc, "?= =?", "?=\r\n =?")
}

// validMessageID accepts "<left@right>" of printable ASCII without spaces
// or further angle brackets, so the header cannot be broken by the value.
func validMessageID(s string) bool {
	if len(s) < 5 || s[0] != '<' || s[len(s)-1] != '>' || strings.Count(s, "@") != 1 {
		return false
	}
	for _, r := range s[1 : len(s)-1] {
		if r <= ' ' || r > '~' || r == '<' || r == '>' {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
