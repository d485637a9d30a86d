// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on
// a loopback port, for tests of code that sends email and for `make demo`,
// where it stands in for the site's relay and prints what it receives.
//
// The server speaks real SMTP: EHLO, optional STARTTLS with a certificate
// the caller provides (SelfSigned makes one), optional AUTH PLAIN, MAIL,
// RCPT and DATA. Every accepted message is parsed (headers, subject, the
// text/plain and text/html parts) and kept; tests wait for messages on a
// channel with a deadline instead of sleeping.
package smtptest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted.
type Message struct {
	// From is the envelope sender (MAIL FROM).
	From string
	// To are the envelope recipients (RCPT TO).
	To []string
	// Data is the message exactly as received after DATA, CRLF line ends.
	Data []byte
	// Header is the parsed header; nil if the message did not parse.
	Header mail.Header
	// Subject is the decoded Subject header.
	Subject string
	// Text is the decoded text/plain body (the whole body when the message
	// is not MIME).
	Text string
	// HTML is the decoded text/html part, if any.
	HTML string
	// TLS says whether the message came over a TLS connection (STARTTLS).
	TLS bool
	// AuthUser is the user that authenticated, or "".
	AuthUser string
	// ParseErr says why Data did not parse as a mail message, if it did not.
	ParseErr error
}

// Option configures a Server.
type Option func(*config)

type config struct {
	username, password string
	tls                *TLS
	implicitTLS        bool
	onMessage          func(Message)
	logger             *slog.Logger
	refuse             int
	rejectRcpt         map[string]bool
}

// WithAuth requires AUTH PLAIN with these credentials before MAIL.
func WithAuth(username, password string) Option {
	return func(c *config) { c.username, c.password = username, password }
}

// WithTLS offers STARTTLS with this certificate. When auth is also
// required, the server only offers AUTH after STARTTLS, as real relays do.
func WithTLS(t *TLS) Option { return func(c *config) { c.tls = t } }

// WithImplicitTLS speaks TLS from the first byte (smtps) with the
// certificate given by WithTLS, instead of offering STARTTLS.
func WithImplicitTLS() Option { return func(c *config) { c.implicitTLS = true } }

// OnMessage calls fn for every accepted message, in the order received,
// from the connection's goroutine (fn must not block for long).
func OnMessage(fn func(Message)) Option { return func(c *config) { c.onMessage = fn } }

// RefuseFirst answers the first n MAIL commands with 451 4.3.0 (a
// temporary refusal, as a relay under load or greylisting gives), so
// senders' retries can be tested; Refused counts them.
func RefuseFirst(n int) Option { return func(c *config) { c.refuse = n } }

// RejectRecipient answers RCPT TO addr with 550 5.1.1 (no such user), a
// permanent refusal.
func RejectRecipient(addr string) Option {
	return func(c *config) {
		if c.rejectRcpt == nil {
			c.rejectRcpt = map[string]bool{}
		}
		c.rejectRcpt[strings.ToLower(addr)] = true
	}
}

// WithLogger logs connection errors to l.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// Server is a running SMTP server.
type Server struct {
	srv  *smtp.Server
	ln   net.Listener
	cfg  config
	done chan struct{}

	mu       sync.Mutex
	messages []Message
	refused  int
	// changed is closed and replaced whenever a message arrives, so any
	// number of waiters wake up without polling.
	changed chan struct{}
}

// Listen starts a server on addr ("127.0.0.1:0" picks a free port).
func Listen(addr string, opts ...Option) (*Server, error) {
	s := &Server{done: make(chan struct{}), changed: make(chan struct{})}
	for _, o := range opts {
		o(&s.cfg)
	}
	if s.cfg.logger == nil {
		s.cfg.logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("smtptest: listen on %s: %w", addr, err)
	}
	if s.cfg.implicitTLS {
		if s.cfg.tls == nil {
			ln.Close()
			return nil, errors.New("smtptest: WithImplicitTLS needs WithTLS")
		}
		ln = tls.NewListener(ln, s.cfg.tls.Server)
	}
	s.ln = ln
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "localhost"
	srv.MaxMessageBytes = 10 << 20
	srv.MaxRecipients = 50
	srv.ReadTimeout = time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = logAdapter{s.cfg.logger}
	if s.cfg.tls != nil && !s.cfg.implicitTLS {
		srv.TLSConfig = s.cfg.tls.Server
	} else {
		// Without TLS the only way to test AUTH is in the clear; this is a
		// loopback test server, never a relay.
		srv.AllowInsecureAuth = true
	}
	s.srv = srv
	go func() {
		defer close(s.done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, smtp.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.cfg.logger.Error("smtptest: serve", "err", err)
		}
	}()
	return s, nil
}

// Start starts a server on a free loopback port for the test and stops it
// when the test ends. It fails the test if the server cannot start.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", opts...)
	if err != nil {
		t.Fatalf("smtptest: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is the address's host part.
func (s *Server) Host() string {
	h, _, _ := net.SplitHostPort(s.Addr())
	return h
}

// Port is the address's port.
func (s *Server) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	err := s.srv.Close()
	// go-smtp only closes listeners Serve has registered; one closed
	// before Serve started running would leave Serve blocked in Accept.
	_ = s.ln.Close()
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

// Refused is how many MAIL commands RefuseFirst refused so far.
func (s *Server) Refused() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refused
}

// Messages returns a copy of the messages received so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Wait blocks until at least n messages arrived or ctx ends, and returns
// the messages received so far either way (the error says which).
func (s *Server) Wait(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		got, changed := len(s.messages), s.changed
		s.mu.Unlock()
		if got >= n {
			return s.Messages(), nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return s.Messages(), fmt.Errorf("smtptest: %d of %d messages arrived at %s: %w", got, n, s.Addr(), ctx.Err())
		}
	}
}

// WaitRefused blocks until RefuseFirst has refused at least n MAIL
// commands or ctx ends.
func (s *Server) WaitRefused(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		got, changed := s.refused, s.changed
		s.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("smtptest: %d of %d refusals at %s: %w", got, n, s.Addr(), ctx.Err())
		}
	}
}

// WaitFor is Wait with a deadline for tests: it fails the test when fewer
// than n messages arrived within d.
func (s *Server) WaitFor(t testing.TB, n int, d time.Duration) []Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	msgs, err := s.Wait(ctx, n)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return msgs
}

func (s *Server) deliver(m Message) {
	s.mu.Lock()
	s.messages = append(s.messages, m)
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if s.cfg.onMessage != nil {
		s.cfg.onMessage(m)
	}
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{srv: s, conn: c}, nil
}

type session struct {
	srv      *Server
	conn     *smtp.Conn
	authUser string
	from     string
	to       []string
}

var _ smtp.AuthSession = (*session)(nil)

func (se *session) AuthMechanisms() []string {
	if se.srv.cfg.username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if mech != sasl.Plain || se.srv.cfg.username == "" {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return smtp.ErrAuthFailed
		}
		if username != se.srv.cfg.username || password != se.srv.cfg.password {
			return smtp.ErrAuthFailed
		}
		se.authUser = username
		return nil
	}), nil
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.srv.cfg.username != "" && se.authUser == "" {
		return smtp.ErrAuthRequired
	}
	srv := se.srv
	srv.mu.Lock()
	refuse := srv.refused < srv.cfg.refuse
	if refuse {
		srv.refused++
		close(srv.changed)
		srv.changed = make(chan struct{})
	}
	srv.mu.Unlock()
	if refuse {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "smtptest: try again later"}
	}
	se.from = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if se.srv.cfg.rejectRcpt[strings.ToLower(to)] {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "smtptest: no such user"}
	}
	se.to = append(se.to, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := se.conn.TLSConnectionState()
	isTLS = isTLS || se.srv.cfg.implicitTLS
	m := Parse(data)
	m.From, m.To, m.TLS, m.AuthUser = se.from, append([]string(nil), se.to...), isTLS, se.authUser
	se.srv.deliver(m)
	return nil
}

func (se *session) Reset()        { se.from, se.to = "", nil }
func (se *session) Logout() error { return nil }

// Parse parses a raw message: headers, decoded subject, and the text and
// HTML bodies (multipart/alternative or single part, quoted-printable or
// base64 transfer encodings). A message that does not parse keeps its Data
// and reports ParseErr.
func Parse(data []byte) Message {
	m := Message{Data: data}
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		m.ParseErr = err
		return m
	}
	m.Header = msg.Header
	dec := new(mime.WordDecoder)
	if subj, err := dec.DecodeHeader(msg.Header.Get("Subject")); err == nil {
		m.Subject = subj
	} else {
		m.Subject = msg.Header.Get("Subject")
	}
	if err := m.readPart(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body); err != nil {
		m.ParseErr = err
	}
	return m
}

func (m *Message) readPart(contentType, encoding string, body io.Reader) error {
	mediaType, params, err := mime.ParseMediaType(contentType)
	if contentType == "" {
		mediaType, err = "text/plain", nil
	}
	if err != nil {
		return fmt.Errorf("content-type %q: %w", contentType, err)
	}
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("multipart: %w", err)
			}
			if err := m.readPart(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err != nil {
				return err
			}
		}
	}
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, body) // skips CR and LF
	}
	b, err := io.ReadAll(body)
	if err != nil {
		return fmt.Errorf("%s body: %w", mediaType, err)
	}
	switch mediaType {
	case "text/plain":
		if m.Text == "" {
			m.Text = string(b)
		}
	case "text/html":
		if m.HTML == "" {
			m.HTML = string(b)
		}
	}
	return nil
}

type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Printf(format string, v ...any) { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a logAdapter) Println(v ...any)               { a.l.Warn(strings.TrimSpace(fmt.Sprintln(v...))) }
