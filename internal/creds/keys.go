package creds

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// Text prefixes of the two key files. The version digit lets a later
// format coexist; the different words make a swapped file easy to spot.
const (
	publicKeyPrefix  = "afpub1:"
	privateKeyPrefix = "afkey1:"
)

// File names `af keygen` writes.
const (
	PublicKeyFile  = "af.pub"
	PrivateKeyFile = "af.key"
)

// maxKeyFile bounds what LoadPublicKey/LoadPrivateKey read: a key file is
// one short line, so anything bigger is the wrong file.
const maxKeyFile = 4096

// PublicKey is the worker pool's X25519 public key. Submitters seal
// credentials to it; af serve publishes its String form.
type PublicKey [32]byte

// String is the key's text form, "afpub1:<base64>", as stored in af.pub
// and served at GET /api/v1/pool-key.
func (k *PublicKey) String() string {
	return publicKeyPrefix + base64.StdEncoding.EncodeToString(k[:])
}

// Fingerprint is a short, stable id for the key (hex of the first 8 bytes
// of its SHA-256). Sealed blobs carry it so a worker holding another key
// can say so instead of reporting corruption.
func (k *PublicKey) Fingerprint() string {
	id := k.keyID()
	return hex.EncodeToString(id[:])
}

func (k *PublicKey) keyID() [keyIDLen]byte {
	sum := sha256.Sum256(k[:])
	var id [keyIDLen]byte
	copy(id[:], sum[:keyIDLen])
	return id
}

// PrivateKey is the worker pool's X25519 private key with its public half.
// Its fields are unexported and every printing path redacts the secret
// half, so a key logged by mistake does not leak.
type PrivateKey struct {
	priv [32]byte
	pub  PublicKey
}

// Public returns the public half of k.
func (k *PrivateKey) Public() *PublicKey {
	p := k.pub
	return &p
}

// String names the key by its public half only.
func (k PrivateKey) String() string {
	return "af private key (public " + k.pub.String() + ")"
}

// GoString keeps %#v from dumping the secret half.
func (k PrivateKey) GoString() string { return "creds.PrivateKey{" + k.pub.String() + "}" }

// Format makes every fmt verb (including %x and %d, which would otherwise
// print the struct's fields) show only the redacted form.
func (k PrivateKey) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, k.GoString())
		return
	}
	io.WriteString(f, k.String())
}

// LogValue keeps slog from reflecting over the secret half.
func (k PrivateKey) LogValue() slog.Value {
	return slog.StringValue(k.String())
}

// text is the af.key file content.
func (k *PrivateKey) text() string {
	return privateKeyPrefix + base64.StdEncoding.EncodeToString(k.priv[:])
}

// privateKeyFromBytes derives the public half with curve25519, so af.key
// alone is enough for a worker.
func privateKeyFromBytes(b []byte) (*PrivateKey, error) {
	if len(b) != 32 {
		return nil, fmt.Errorf("key is %d bytes, want 32", len(b))
	}
	k := &PrivateKey{}
	copy(k.priv[:], b)
	pub, err := curve25519.X25519(k.priv[:], curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("derive public key: %w", err)
	}
	copy(k.pub[:], pub)
	return k, nil
}

// NewKeyPair makes a key pair in memory from rnd (crypto/rand when nil).
// GenerateKeyPair writes one to disk; tests use this directly.
func NewKeyPair(rnd io.Reader) (*PublicKey, *PrivateKey, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var b [32]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return nil, nil, fmt.Errorf("read random key: %w", err)
	}
	k, err := privateKeyFromBytes(b[:])
	if err != nil {
		return nil, nil, err
	}
	return k.Public(), k, nil
}

// GenerateKeyPair writes a new pool key pair into dir (created if missing):
// af.key with mode 0600 and af.pub with mode 0644. It refuses to replace
// either file unless force is set, and checks both before writing either so
// a refusal leaves no half-made pair.
func GenerateKeyPair(dir string, force bool) (pubPath, keyPath string, err error) {
	if dir == "" {
		dir = "."
	}
	pubPath = filepath.Join(dir, PublicKeyFile)
	keyPath = filepath.Join(dir, PrivateKeyFile)
	if !force {
		for _, p := range []string{keyPath, pubPath} {
			if _, err := os.Lstat(p); err == nil {
				return "", "", fmt.Errorf("%s already exists: pass --force to replace it (workers holding the old af.key can no longer open credentials sealed to the new af.pub)", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return "", "", fmt.Errorf("check %s: %w", p, err)
			}
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create key directory: %w", err)
	}
	pub, priv, err := NewKeyPair(nil)
	if err != nil {
		return "", "", err
	}
	// The private key goes first: a pub without its key is useless, while
	// a key without its pub can be re-derived.
	if err := writeFileAtomic(keyPath, []byte(priv.text()+"\n"), 0o600); err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(pubPath, []byte(pub.String()+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return pubPath, keyPath, nil
}

// writeFileAtomic writes through a temporary file created with mode, so
// the final file never exists with a looser mode than asked (which a
// rewrite of an existing 0644 file with os.WriteFile would keep).
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readKeyFile reads a small key file; anything large is not one of ours.
func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return "", fmt.Errorf("read key %s: %w", path, err)
	}
	if len(b) > maxKeyFile {
		return "", fmt.Errorf("%s is not an af key file: it is larger than %d bytes (af keygen writes one short line)", path, maxKeyFile)
	}
	return string(bytes.TrimSpace(b)), nil
}

// LoadPublicKey reads af.pub (or any file holding the text form).
func LoadPublicKey(path string) (*PublicKey, error) {
	text, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(text, privateKeyPrefix) {
		return nil, fmt.Errorf("%s holds the pool's private key; submitters and af serve need the public key %s made by `af keygen` (never hand out %s)", path, PublicKeyFile, PrivateKeyFile)
	}
	k, err := ParsePublicKey(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ParsePublicKey parses the text form "afpub1:<base64 of 32 bytes>", as
// served at GET /api/v1/pool-key. Surrounding whitespace is ignored.
func ParsePublicKey(text string) (*PublicKey, error) {
	text = strings.TrimSpace(text)
	if strings.HasPrefix(text, privateKeyPrefix) {
		return nil, errors.New("this is the pool's private key, not its public key: use af.pub (and keep af.key on the workers only)")
	}
	rest, ok := strings.CutPrefix(text, publicKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("not an af public key: want a line starting %q as written by `af keygen` to %s", publicKeyPrefix, PublicKeyFile)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("public key is not valid base64 after %q: %w", publicKeyPrefix, err)
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("public key is %d bytes, want 32: the key text is truncated or damaged", len(b))
	}
	var k PublicKey
	copy(k[:], b)
	return &k, nil
}

// LoadPrivateKey reads af.key. It refuses a file that group or others can
// read, because whoever reads it can open every job's credentials.
func LoadPrivateKey(path string) (*PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read private key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: want the private key %s made by `af keygen`", path, PrivateKeyFile)
	}
	text, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(text, publicKeyPrefix) {
		return nil, fmt.Errorf("%s holds a public key; the worker needs the private key %s made by `af keygen`", path, PrivateKeyFile)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by group or others (mode %04o), and whoever reads it can open every job's credentials: run `chmod 600 %s`", path, perm, path)
	}
	rest, ok := strings.CutPrefix(text, privateKeyPrefix)
	if !ok {
		return nil, fmt.Errorf("%s is not an af private key: want a line starting %q as written by `af keygen`", path, privateKeyPrefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("%s: private key is not valid base64 after %q: %w", path, privateKeyPrefix, err)
	}
	k, err := privateKeyFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: the key file is truncated or damaged; restore it or run `af keygen --force`", path, err)
	}
	return k, nil
}
