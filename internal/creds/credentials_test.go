package creds

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// TestCredentialsNeverPrintSecrets goes through every way a value might be
// printed or logged by mistake.
func TestCredentialsNeverPrintSecrets(t *testing.T) {
	t.Parallel()
	c := testCreds()
	type wrapper struct {
		Job   string
		Creds Credentials
		Ptr   *Credentials
	}
	w := wrapper{Job: "j", Creds: c, Ptr: &c}

	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3v", "%T %v"} {
		outs = append(outs, fmt.Sprintf(verb, c), fmt.Sprintf(verb, &c), fmt.Sprintf(verb, w), fmt.Sprintf(verb, []Credentials{c}))
	}
	outs = append(outs, fmt.Sprint(c), fmt.Sprintln(&c), c.String(), c.GoString())

	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("minted", "creds", c, "ptr", &c, "wrapped", w)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("minted", "creds", c, "ptr", &c)
	log.New(&logBuf, "", 0).Printf("creds %v", c)
	outs = append(outs, logBuf.String())

	for _, v := range []any{c, &c, w, map[string]Credentials{"k": c}} {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		y, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, string(j), string(y))
	}

	for _, o := range outs {
		for _, secret := range []string{testSecret, testToken, testSecret[:10], testToken[:10]} {
			if strings.Contains(o, secret) {
				t.Errorf("output shows a secret: %s", o)
			}
		}
	}
	// What is shown stays useful: the key id, scope and expiry.
	for _, o := range []string{c.String(), logBuf.String()} {
		for _, want := range []string{testAccessKeyID, "telemetry-published-v2", "2026-03-01T13:00:00Z"} {
			if !strings.Contains(o, want) {
				t.Errorf("%q lacks %q", o, want)
			}
		}
	}
	var view map[string]any
	j, _ := json.Marshal(c)
	if err := json.Unmarshal(j, &view); err != nil {
		t.Fatal(err)
	}
	if view["secret_access_key"] != "REDACTED" || view["session_token"] != "REDACTED" || view["access_key_id"] != testAccessKeyID {
		t.Errorf("JSON view = %s", j)
	}
}

func TestAWSConfigUsesExactlyTheseCredentials(t *testing.T) {
	t.Setenv("AWS_ENDPOINT_URL", "http://elsewhere.invalid:1")
	t.Setenv("AWS_ACCESS_KEY_ID", "WORKERHOSTKEY")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "workerhostsecret")
	t.Setenv("AWS_REGION", "eu-west-3")
	ctx := context.Background()
	tests := []struct {
		name     string
		c        Credentials
		endpoint string
		region   string
	}{
		{"minio", testCreds(), "http://127.0.0.1:9000", "us-east-1"},
		{"aws", func() Credentials { c := testCreds(); c.Endpoint = ""; c.Region = "us-west-2"; return c }(), "", "us-west-2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.c.AWSConfig(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.Credentials.Retrieve(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.AccessKeyID != tc.c.AccessKeyID || got.SecretAccessKey != tc.c.SecretAccessKey || got.SessionToken != tc.c.SessionToken {
				t.Errorf("config credentials are %s, not the job's", got.AccessKeyID)
			}
			ep := ""
			if cfg.BaseEndpoint != nil {
				ep = *cfg.BaseEndpoint
			}
			if ep != tc.endpoint || cfg.Region != tc.region {
				t.Errorf("endpoint %q region %q, want %q %q", ep, cfg.Region, tc.endpoint, tc.region)
			}
		})
	}
	if _, err := (Credentials{}).AWSConfig(ctx); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty credentials: %v", err)
	}
}
