package smtptest

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const plainMsg = "From: af <af@example.org>\r\nTo: ana@example.org\r\nSubject: =?utf-8?q?caf=C3=A9_done?=\r\n\r\nhello\r\n.dot line\r\n"

func send(t *testing.T, s *Server, tlsCfg *tls.Config, auth sasl.Client, data string) error {
	t.Helper()
	var c *smtp.Client
	var err error
	if tlsCfg != nil {
		c, err = smtp.DialStartTLS(s.Addr(), tlsCfg)
	} else {
		c, err = smtp.Dial(s.Addr())
	}
	if err != nil {
		return err
	}
	defer c.Close()
	if auth != nil {
		if err := c.Auth(auth); err != nil {
			return err
		}
	}
	if err := c.SendMail("af@example.org", []string{"ana@example.org", "bo@example.org"}, strings.NewReader(data)); err != nil {
		return err
	}
	return c.Quit()
}

func TestReceive(t *testing.T) {
	t.Parallel()
	got := make(chan Message, 1)
	s := Start(t, OnMessage(func(m Message) { got <- m }))
	if err := send(t, s, nil, nil, plainMsg); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := s.WaitFor(t, 1, 10*time.Second)
	m := msgs[0]
	if m.From != "af@example.org" || strings.Join(m.To, ",") != "ana@example.org,bo@example.org" {
		t.Errorf("envelope from %q to %v", m.From, m.To)
	}
	if m.Subject != "café done" {
		t.Errorf("subject %q, want the decoded %q", m.Subject, "café done")
	}
	if m.Text != "hello\r\n.dot line\r\n" {
		t.Errorf("text %q", m.Text)
	}
	if m.TLS || m.AuthUser != "" {
		t.Errorf("TLS %v auth %q on a plain unauthenticated connection", m.TLS, m.AuthUser)
	}
	select {
	case cb := <-got:
		if cb.Subject != m.Subject {
			t.Errorf("callback got subject %q", cb.Subject)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnMessage callback not called")
	}
}

func TestWaitDeadline(t *testing.T) {
	t.Parallel()
	s := Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs, err := s.Wait(ctx, 1)
	if !errors.Is(err, context.Canceled) || len(msgs) != 0 {
		t.Fatalf("Wait on an idle server = %v, %v; want no messages and context.Canceled", msgs, err)
	}
	if !strings.Contains(err.Error(), "0 of 1") {
		t.Errorf("error %q does not say how many arrived", err)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := Start(t, WithAuth("relay", "s3cret"))
	cases := []struct {
		name    string
		auth    sasl.Client
		wantErr bool
	}{
		{"no auth", nil, true},
		{"wrong password", sasl.NewPlainClient("", "relay", "nope"), true},
		{"right password", sasl.NewPlainClient("", "relay", "s3cret"), false},
	}
	for _, tc := range cases {
		err := send(t, s, nil, tc.auth, plainMsg)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: send error %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
	msgs := s.WaitFor(t, 1, 10*time.Second)
	if len(msgs) != 1 || msgs[0].AuthUser != "relay" {
		t.Fatalf("messages %d, auth user %q; want exactly the authenticated one", len(msgs), msgs[0].AuthUser)
	}
}

func TestStartTLS(t *testing.T) {
	t.Parallel()
	cert, err := SelfSigned()
	if err != nil {
		t.Fatal(err)
	}
	s := Start(t, WithTLS(cert), WithAuth("relay", "s3cret"))

	// AUTH is only offered after STARTTLS.
	if err := send(t, s, nil, sasl.NewPlainClient("", "relay", "s3cret"), plainMsg); err == nil {
		t.Fatal("AUTH accepted before STARTTLS")
	}
	// A client that does not trust the test CA refuses the certificate.
	if err := send(t, s, &tls.Config{ServerName: "127.0.0.1"}, nil, plainMsg); err == nil {
		t.Fatal("STARTTLS succeeded without trusting the test CA")
	}
	trusted := &tls.Config{ServerName: "127.0.0.1", RootCAs: cert.Roots}
	if err := send(t, s, trusted, sasl.NewPlainClient("", "relay", "s3cret"), plainMsg); err != nil {
		t.Fatalf("send over STARTTLS: %v", err)
	}
	m := s.WaitFor(t, 1, 10*time.Second)[0]
	if !m.TLS || m.AuthUser != "relay" {
		t.Fatalf("TLS %v auth %q, want TLS and relay", m.TLS, m.AuthUser)
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, data, subject, text, html string
		bad                             bool
	}{
		{
			name:    "multipart alternative with quoted-printable",
			data:    "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nlong=\r\n line caf=C3=A9\r\n--BB\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\nPGI+aGk8L2I+\r\n--BB--\r\n",
			subject: "x", text: "long line café", html: "<b>hi</b>",
		},
		{name: "no content type", data: "Subject: s\r\n\r\nbody", subject: "s", text: "body"},
		{name: "not a message", data: "garbage without a blank line", bad: true},
		{name: "bad content type", data: "Content-Type: multipart/\r\n\r\nx", bad: true},
	}
	for _, tc := range cases {
		m := Parse([]byte(tc.data))
		if (m.ParseErr != nil) != tc.bad {
			t.Errorf("%s: ParseErr %v, want error %v", tc.name, m.ParseErr, tc.bad)
			continue
		}
		if tc.bad {
			continue
		}
		if m.Subject != tc.subject || m.Text != tc.text || m.HTML != tc.html {
			t.Errorf("%s: subject %q text %q html %q", tc.name, m.Subject, m.Text, m.HTML)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(plainMsg))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Transfer-Encoding: base64\r\n\r\n!!\r\n--a--"))
	f.Add([]byte("Subject: =?utf-8?b?////?=\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m := Parse(data)
		if string(m.Data) != string(data) {
			t.Fatal("Parse changed Data")
		}
	})
}
