package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	tok := strings.Repeat("a", 43)
	hash := strings.Repeat("0f", 32)
	cases := []struct {
		name, yaml string
		err        string // substring; "" means valid
		check      func(t *testing.T, c Config)
	}{
		{"minimal", "tokens: [{name: a, role: admin, token: " + tok + "}]", "", func(t *testing.T, c Config) {
			if c.Listen != DefaultListen || c.Reads() || time.Duration(c.LeaseDuration) != DefaultLease ||
				time.Duration(c.ArtifactGrace) != DefaultArtifactGrace || c.MaxGraphBytes != DefaultMaxGraphBytes ||
				c.MonitorURL != "http://"+DefaultListen {
				t.Errorf("defaults: %+v", c)
			}
		}},
		{"full", `listen: 0.0.0.0:9000
data: /var/lib/af
public_reads: false
tokens:
  - {name: a, role: admin, token: ` + tok + `}
  - {name: w, role: work, sha256: ` + hash + `}
s3: {endpoint: "http://minio:9000", public_endpoint: "http://s3.example.org", region: eu-west-1, bucket: arts, prefix: "af/"}
pool_key: /etc/af/af.pub
smtp: {addr: "smtp:25", from: "af@example.org", username: u, password_env: AF_SMTP_PASSWORD, starttls: always, retry_min: 10s, retry_max: 20m, give_up_after: 48h}
monitor_url: https://af.example.org/
lease_duration: 90s
artifact_grace: 1m
max_graph_bytes: 1000
`, "", func(t *testing.T, c Config) {
			if c.Reads() || c.S3.Bucket != "arts" || c.S3.PublicEndpoint != "http://s3.example.org" || c.MonitorURL != "https://af.example.org" ||
				time.Duration(c.LeaseDuration) != 90*time.Second || c.MaxGraphBytes != 1000 || c.SMTP.PasswordEnv != "AF_SMTP_PASSWORD" ||
				c.SMTP.StartTLS != "always" || time.Duration(c.SMTP.RetryMin) != 10*time.Second || time.Duration(c.SMTP.RetryMax) != 20*time.Minute ||
				time.Duration(c.SMTP.GiveUpAfter) != 48*time.Hour {
				t.Errorf("parsed %+v", c)
			}
		}},
		{"scheduling defaults", "tokens: [{name: a, role: admin, token: " + tok + "}]", "", func(t *testing.T, c Config) {
			s := c.Scheduling()
			if s.FIFO || s.MaxPendingPerOwner != DefaultMaxPendingPerOwner || s.MaxRunningPerOwner != 0 || s.HighOwners != nil {
				t.Errorf("default scheduling %+v, want fair shares, %d pending per owner, no running cap, high open to all", s, DefaultMaxPendingPerOwner)
			}
		}},
		{"scheduling keys", "tokens: [{name: a, role: admin, token: " + tok + "}]\nfair_share: false\nmax_pending_per_owner: 0\nmax_running_per_owner: 8\npriority: {high_owners: [alice@example.com]}", "", func(t *testing.T, c Config) {
			s := c.Scheduling()
			if !s.FIFO || s.MaxPendingPerOwner != 0 || s.MaxRunningPerOwner != 8 || len(s.HighOwners) != 1 || s.HighOwners[0] != "alice@example.com" {
				t.Errorf("scheduling %+v", s)
			}
		}},
		{"high for nobody", "tokens: [{name: a, role: admin, token: " + tok + "}]\npriority: {high_owners: []}", "", func(t *testing.T, c Config) {
			if s := c.Scheduling(); s.HighOwners == nil || len(s.HighOwners) != 0 {
				t.Errorf("high_owners: [] gave %#v, want an empty list (nobody)", s.HighOwners)
			}
		}},
		{"negative pending cap", "tokens: [{name: a, role: admin, token: " + tok + "}]\nmax_pending_per_owner: -1", "max_pending_per_owner -1 must not be negative", nil},
		{"negative running cap", "tokens: [{name: a, role: admin, token: " + tok + "}]\nmax_running_per_owner: -2", "max_running_per_owner -2 must not be negative", nil},
		{"empty high owner", "tokens: [{name: a, role: admin, token: " + tok + "}]\npriority: {high_owners: [\"\"]}", "priority.high_owners[0] is empty", nil},
		{"unknown priority key", "tokens: [{name: a, role: admin, token: " + tok + "}]\npriority: {high: [a]}", "high", nil},
		{"empty", "", "empty config", nil},
		{"bad starttls", "tokens: [{name: a, role: admin, token: " + tok + "}]\nsmtp: {addr: \"m:25\", starttls: sometimes}", "smtp.starttls", nil},
		{"retry_max below retry_min", "tokens: [{name: a, role: admin, token: " + tok + "}]\nsmtp: {retry_min: 1m, retry_max: 10s}", "retry_max", nil},
		{"no tokens", "listen: x:1", "no tokens", nil},
		{"unknown key", "tokens: [{name: a, role: admin, token: " + tok + "}]\npublic_read: true", "public_read", nil},
		{"bad role", "tokens: [{name: a, role: root, token: " + tok + "}]", `role "root"`, nil},
		{"short token", "tokens: [{name: a, role: admin, token: abc}]", "too short", nil},
		{"both", "tokens: [{name: a, role: admin, token: " + tok + ", sha256: " + hash + "}]", "not both", nil},
		{"neither", "tokens: [{name: a, role: admin}]", "missing token", nil},
		{"bad hash", "tokens: [{name: a, role: admin, sha256: xyz}]", "64 hex", nil},
		{"dup name", "tokens: [{name: a, role: admin, token: " + tok + "}, {name: a, role: work, token: " + tok + "b}]", "duplicate", nil},
		{"no name", "tokens: [{role: admin, token: " + tok + "}]", "missing name", nil},
		{"bad duration", "lease_duration: soon\ntokens: [{name: a, role: admin, token: " + tok + "}]", "not a duration", nil},
		{"not yaml", "{[", "cfg.yaml", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := ParseConfig("cfg.yaml", []byte(c.yaml))
			if c.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				c.check(t, cfg)
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("err = %v, want one containing %q", err, c.err)
			}
			if strings.Contains(err.Error(), tok) {
				t.Fatalf("error message echoes a token")
			}
		})
	}
}

func TestEnsureConfigCreatesOnceAndKeeps(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	cfg, path, created, err := EnsureConfig(dir)
	if err != nil || !created {
		t.Fatalf("first start: %v %v", created, err)
	}
	if path != filepath.Join(dir, ConfigFileName) {
		t.Fatalf("path %s", path)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v %v, want 0600", fi.Mode(), err)
	}
	roles := map[Role]string{}
	for _, tk := range cfg.Tokens {
		roles[tk.Role] = tk.Token
		if len(tk.Token) != 43 {
			t.Errorf("token of %s has %d characters, want 43 (32 bytes base64url)", tk.Role, len(tk.Token))
		}
	}
	if len(roles) != 3 || roles[RoleAdmin] == roles[RoleSubmit] || roles[RoleSubmit] == roles[RoleWork] {
		t.Fatalf("tokens %v", roles)
	}
	if cfg.S3.Bucket != DefaultArtifactBucket {
		t.Fatalf("bucket %q", cfg.S3.Bucket)
	}
	again, _, created, err := EnsureConfig(dir)
	if err != nil || created {
		t.Fatalf("second start: %v %v", created, err)
	}
	for i := range again.Tokens {
		if again.Tokens[i].Token != cfg.Tokens[i].Token {
			t.Fatal("second start changed the tokens")
		}
	}
	// A damaged config is reported, not replaced.
	if err := os.WriteFile(path, []byte("tokens: {["), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := EnsureConfig(dir); err == nil {
		t.Fatal("damaged config accepted")
	}
	if b, _ := os.ReadFile(path); string(b) != "tokens: {[" {
		t.Fatal("damaged config was overwritten")
	}
}

func TestParseWait(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"", maxClaimWait, false}, {"0", 0, false}, {"500ms", 500 * time.Millisecond, false},
		{"2.5", 2500 * time.Millisecond, false}, {"1h", maxClaimWait, false}, {"-3s", 0, false},
		{"soon", 0, true}, {"-1", 0, true},
	} {
		got, err := parseWait(c.in)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("parseWait(%q) = %v, %v", c.in, got, err)
		}
	}
}

func TestCheckArtifactName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"public/result.txt", "public/logs/live.log", "a", "x/y.z-1_2"} {
		if err := checkArtifactName(ok); err != nil {
			t.Errorf("%q refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "/abs", "trail/", "a//b", "../x", "a/../b", "./a", "a\\b", "a\x00b", "a\nb", strings.Repeat("n", 600), "\xff"} {
		if err := checkArtifactName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("tokens: [{name: a, role: admin, token: " + strings.Repeat("a", 43) + "}]"))
	f.Add([]byte("listen: x\ndata: y\npublic_reads: false\nlease_duration: 1m\ntokens: []"))
	f.Add([]byte("s3: {bucket: b}\ntokens: [{name: w, role: work, sha256: " + strings.Repeat("ab", 32) + "}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig("fuzz.yaml", data)
		if err != nil {
			return
		}
		// Whatever parses is usable: tokens valid, defaults filled.
		if len(c.Tokens) == 0 || c.Listen == "" || c.LeaseDuration <= 0 || c.MaxGraphBytes <= 0 {
			t.Fatalf("accepted an unusable config: %+v", c)
		}
		ts := newTokenSet(c.Tokens)
		for _, tk := range c.Tokens {
			if tk.Token != "" {
				if _, role, ok := ts.lookup(tk.Token); !ok || role == "" {
					t.Fatalf("token %s does not authenticate", tk.Name)
				}
			}
		}
	})
}

func FuzzCheckArtifactName(f *testing.F) {
	for _, s := range []string{"public/result.txt", "../x", "a//b", "a\\b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if checkArtifactName(name) != nil {
			return
		}
		key := "p/" + "task" + "/0/" + name
		if strings.Contains("/"+name+"/", "/../") || strings.Contains("/"+name+"/", "/./") || strings.Contains(key, "//") || strings.HasPrefix(name, "/") {
			t.Fatalf("accepted %q, key %q escapes or is ambiguous", name, key)
		}
	})
}
