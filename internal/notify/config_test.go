package notify

import (
	"strings"
	"testing"
	"time"
)

func TestParseFlag(t *testing.T) {
	t.Parallel()
	env := map[string]string{PasswordEnv: "from-env"}
	getenv := func(k string) string { return env[k] }
	cases := []struct {
		in      string
		want    SMTPConfig
		addr    string
		wantErr string
	}{
		{in: "", want: SMTPConfig{}},
		{in: "mail.example.org", want: SMTPConfig{Host: "mail.example.org"}, addr: "mail.example.org:25"},
		{in: "127.0.0.1:2525", want: SMTPConfig{Host: "127.0.0.1", Port: 2525}, addr: "127.0.0.1:2525"},
		{in: "[::1]:2525", want: SMTPConfig{Host: "::1", Port: 2525}, addr: "[::1]:2525"},
		{in: "smtp://relay.example.org:587?starttls=always&from=af@example.org&timeout=5s",
			want: SMTPConfig{Host: "relay.example.org", Port: 587, StartTLS: "always", From: "af@example.org", Timeout: 5 * time.Second}, addr: "relay.example.org:587"},
		{in: "smtp://bot@relay.example.org:587", want: SMTPConfig{Host: "relay.example.org", Port: 587, Username: "bot", Password: "from-env"}},
		{in: "smtp://bot:inline@relay.example.org", want: SMTPConfig{Host: "relay.example.org", Username: "bot", Password: "inline"}},
		{in: "smtps://bot@relay.example.org", want: SMTPConfig{Host: "relay.example.org", Username: "bot", Password: "from-env", ImplicitTLS: true}, addr: "relay.example.org:465"},
		{in: "smtp://relay.example.org?starttls=never", want: SMTPConfig{Host: "relay.example.org", StartTLS: "never"}},
		{in: "http://relay.example.org", wantErr: `scheme "http" must be smtp or smtps`},
		{in: "smtp://relay.example.org?starttls=maybe", wantErr: `starttls "maybe" must be auto, always or never`},
		{in: "smtps://relay.example.org?starttls=always", wantErr: "does not apply to smtps"},
		{in: "smtp://relay.example.org?tls=1", wantErr: `unknown parameter "tls"`},
		{in: "smtp://relay.example.org?timeout=soon", wantErr: `timeout "soon"`},
		{in: "smtp://relay.example.org?from=not-an-address", wantErr: "from address"},
		{in: "relay.example.org:99999", wantErr: "between 1 and 65535"},
		{in: "relay.example.org:smtp", wantErr: "between 1 and 65535"},
		{in: "smtp://:25", wantErr: "no host"},
		{in: "smtp://relay.example.org/path", wantErr: "unexpected path"},
		{in: "smtp://bot:topsecret@relay.example.org?bogus=1", wantErr: "unknown parameter"},
	}
	for _, tc := range cases {
		got, err := ParseFlag(tc.in, getenv)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseFlag(%q) error %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "topsecret") {
				t.Errorf("ParseFlag(%q) error shows the password: %v", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseFlag(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseFlag(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		if tc.addr != "" && got.Addr() != tc.addr {
			t.Errorf("ParseFlag(%q).Addr() = %q, want %q", tc.in, got.Addr(), tc.addr)
		}
	}
}

func TestConfigStringHidesPassword(t *testing.T) {
	t.Parallel()
	c := SMTPConfig{Host: "relay.example.org", Port: 587, Username: "bot", Password: "hunter2", From: "af@example.org"}
	for _, s := range []string{c.String(), c.LogValue().String()} {
		if strings.Contains(s, "hunter2") || !strings.Contains(s, "bot@relay.example.org:587") {
			t.Errorf("%q", s)
		}
	}
	if s := (SMTPConfig{}).String(); !strings.Contains(s, "logged") {
		t.Errorf("empty config describes itself as %q", s)
	}
}

func FuzzParseFlag(f *testing.F) {
	for _, s := range []string{"", "host", "host:25", "smtp://u:p@h:1?starttls=always&from=a@b.c", "smtps://h", "[::1]", "smtp://%zz", "smtp://h?timeout=-1s"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseFlag(s, func(string) string { return "envpw" })
		if err != nil {
			if c != (SMTPConfig{}) {
				t.Fatalf("error %v with a non-zero config %+v", err, c)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseFlag(%q) returned a config that does not validate: %v", s, err)
		}
		if c.Host == "" {
			return
		}
		if strings.ContainsAny(c.Host, "\r\n") {
			t.Fatalf("host %q has a line break", c.Host)
		}
		// The description round-trips.
		back, err := ParseFlag(c.String(), func(string) string { return c.Password })
		if err != nil {
			t.Fatalf("String() %q of %q does not parse: %v", c.String(), s, err)
		}
		if back.Host != c.Host || back.Addr() != c.Addr() || back.Username != c.Username || back.ImplicitTLS != c.ImplicitTLS {
			t.Fatalf("round trip of %q: %+v became %+v", s, c, back)
		}
	})
}
