package creds

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateKeyPairWritesUsablePair(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "keys")
	pubPath, keyPath, err := GenerateKeyPair(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if pubPath != filepath.Join(dir, "af.pub") || keyPath != filepath.Join(dir, "af.key") {
		t.Fatalf("paths = %s, %s", pubPath, keyPath)
	}
	for path, want := range map[string]os.FileMode{keyPath: 0o600, pubPath: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %04o, want %04o", path, got, want)
		}
	}
	pubText, _ := os.ReadFile(pubPath)
	keyText, _ := os.ReadFile(keyPath)
	if !strings.HasPrefix(string(pubText), "afpub1:") || !strings.HasPrefix(string(keyText), "afkey1:") {
		t.Fatalf("file contents: pub %q, key starts %q", pubText, keyText[:7])
	}
	pub, err := LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if *priv.Public() != *pub {
		t.Fatalf("public key derived from af.key %s differs from af.pub %s", priv.Public(), pub)
	}
	if strings.TrimSpace(string(pubText)) != pub.String() {
		t.Fatalf("af.pub %q != String() %q", pubText, pub.String())
	}
	// The pair works together.
	blob, err := Seal(testCreds(), pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(blob, priv, testNow); err != nil {
		t.Fatalf("open with the generated key: %v", err)
	}
	// Two runs make different keys.
	pub2, _, err := GenerateKeyPair(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := LoadPublicKey(pub2)
	if *p2 == *pub {
		t.Fatal("two key pairs are equal")
	}
}

func TestGenerateKeyPairRefusesOverwrite(t *testing.T) {
	t.Parallel()
	for _, existing := range []string{"af.key", "af.pub"} {
		t.Run(existing, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, existing)
			if err := os.WriteFile(path, []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := GenerateKeyPair(dir, false)
			if err == nil {
				t.Fatal("overwrote without force")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "--force") {
				t.Fatalf("error %q does not name %s and --force", err, path)
			}
			if b, _ := os.ReadFile(path); string(b) != "keep me" {
				t.Fatalf("%s changed to %q", existing, b)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("refusal left files behind: %v", entries)
			}
		})
	}
}

func TestGenerateKeyPairForceReplacesAndTightensMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pubPath, keyPath, err := GenerateKeyPair(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := LoadPublicKey(pubPath)
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := GenerateKeyPair(dir, true); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(keyPath)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("forced af.key mode = %04o, want 0600", fi.Mode().Perm())
	}
	nu, _ := LoadPublicKey(pubPath)
	if *nu == *old {
		t.Fatal("--force kept the old key")
	}
	if _, err := LoadPrivateKey(keyPath); err != nil {
		t.Fatal(err)
	}
}

func writeKeyFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadKeyErrors(t *testing.T) {
	t.Parallel()
	pub, priv := testKeys()
	keyText := priv.text()
	short := "afkey1:" + base64.StdEncoding.EncodeToString(make([]byte, 31))
	shortPub := "afpub1:" + base64.StdEncoding.EncodeToString(make([]byte, 16))
	tests := []struct {
		name    string
		private bool
		content string
		mode    os.FileMode
		want    []string
	}{
		{"public key given to worker", true, pub.String() + "\n", 0o600, []string{"holds a public key", "af.key", "af keygen"}},
		{"private key given to submitter", false, keyText + "\n", 0o600, []string{"holds the pool's private key", "af.pub"}},
		{"group readable", true, keyText, 0o640, []string{"chmod 600", "0640"}},
		{"world readable", true, keyText, 0o604, []string{"chmod 600", "0604"}},
		{"garbage private", true, "hello world", 0o600, []string{"not an af private key", "afkey1:"}},
		{"garbage public", false, "ssh-ed25519 AAAA", 0o644, []string{"not an af public key", "afpub1:"}},
		{"bad base64 private", true, "afkey1:%%%%", 0o600, []string{"not valid base64"}},
		{"bad base64 public", false, "afpub1:%%%%", 0o644, []string{"not valid base64"}},
		{"short private", true, short, 0o600, []string{"31 bytes", "truncated"}},
		{"short public", false, shortPub, 0o644, []string{"16 bytes", "truncated"}},
		{"huge file", false, strings.Repeat("a", maxKeyFile+1), 0o644, []string{"larger than"}},
		{"empty", false, "", 0o644, []string{"not an af public key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := writeKeyFile(t, "k", tc.content, tc.mode)
			var err error
			if tc.private {
				_, err = LoadPrivateKey(path)
			} else {
				_, err = LoadPublicKey(path)
			}
			if err == nil {
				t.Fatal("loaded a bad key file")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), keyText[7:]) {
				t.Errorf("error quotes the private key: %q", err)
			}
		})
	}
	if _, err := LoadPrivateKey(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := LoadPrivateKey(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}

func TestParsePublicKey(t *testing.T) {
	t.Parallel()
	pub, priv := testKeys()
	got, err := ParsePublicKey("  " + pub.String() + "\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if *got != *pub {
		t.Fatal("round trip changed the key")
	}
	if _, err := ParsePublicKey(priv.text()); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Fatalf("private key text accepted as public: %v", err)
	}
	if len(pub.Fingerprint()) != 16 {
		t.Fatalf("fingerprint %q", pub.Fingerprint())
	}
}

func TestPrivateKeyNeverPrints(t *testing.T) {
	t.Parallel()
	_, priv := testKeys()
	secret := priv.text()[len(privateKeyPrefix):]
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("k", "key", priv, "value", *priv)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("k", "key", priv, "value", *priv)
	outs := []string{buf.String()}
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		outs = append(outs, fmt.Sprintf(f, *priv), fmt.Sprintf(f, priv))
	}
	hexed := fmt.Sprintf("%x", priv.priv[:])
	decimal := strings.Trim(fmt.Sprint(priv.priv[:]), "[]")
	for _, o := range outs {
		if strings.Contains(o, secret) || strings.Contains(o, hexed) || strings.Contains(o, decimal) {
			t.Errorf("printed private key: %q", o)
		}
	}
}
