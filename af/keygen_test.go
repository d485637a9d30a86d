package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/af-project/af/internal/creds"
)

func TestKeygen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "pool")
	var out, errOut bytes.Buffer
	if code := run([]string{"keygen", "--dir", dir}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	keyPath, pubPath := filepath.Join(dir, "af.key"), filepath.Join(dir, "af.pub")
	pub, err := creds.LoadPublicKey(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := creds.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if *priv.Public() != *pub {
		t.Fatal("af.key and af.pub do not match")
	}
	keyText, _ := os.ReadFile(keyPath)
	for _, want := range []string{keyPath, pubPath, pub.String(), "workers only", "pool_key"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if secret := strings.TrimSpace(string(keyText)); strings.Contains(out.String()+errOut.String(), secret[len("afkey1:"):]) {
		t.Error("keygen printed the private key")
	}

	// A second run refuses and names the file; the key is unchanged.
	out.Reset()
	errOut.Reset()
	if code := run([]string{"keygen", "--dir", dir}, &out, &errOut); code != 1 {
		t.Fatalf("second run exit %d", code)
	}
	if !strings.Contains(errOut.String(), keyPath) || !strings.Contains(errOut.String(), "--force") {
		t.Errorf("refusal %q does not name %s and --force", errOut.String(), keyPath)
	}
	if again, _ := os.ReadFile(keyPath); !bytes.Equal(again, keyText) {
		t.Fatal("refused run changed af.key")
	}

	// --force replaces the pair.
	if code := run([]string{"keygen", "--dir", dir, "--force"}, &out, &errOut); code != 0 {
		t.Fatalf("--force exit %d: %s", code, errOut.String())
	}
	if again, _ := os.ReadFile(keyPath); bytes.Equal(again, keyText) {
		t.Fatal("--force kept the old af.key")
	}

	// Stray arguments are a usage error.
	errOut.Reset()
	if code := run([]string{"keygen", "extra"}, &out, &errOut); code != 2 {
		t.Fatalf("extra argument exit %d: %s", code, errOut.String())
	}
}
