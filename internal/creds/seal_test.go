package creds

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"
)

// sealRaw boxes arbitrary plaintext the way Seal does, to test what Open
// makes of envelopes Seal itself would never write.
func sealRaw(t testing.TB, plain []byte, pub *PublicKey) string {
	t.Helper()
	id := pub.keyID()
	out, err := box.SealAnonymous(append([]byte{}, id[:]...), plain, (*[32]byte)(pub), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(out)
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	pub, priv := testKeys()
	tests := []struct {
		name string
		c    Credentials
	}{
		{"full", testCreds()},
		{"aws: no endpoint", func() Credentials { c := testCreds(); c.Endpoint = ""; return c }()},
		{"whole bucket", func() Credentials { c := testCreds(); c.Prefix = ""; return c }()},
		{"no session token", func() Credentials { c := testCreds(); c.SessionToken = ""; return c }()},
		{"non-UTC expiry", func() Credentials {
			c := testCreds()
			c.Expiration = c.Expiration.In(time.FixedZone("x", 3600))
			return c
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			blob := mustSeal(t, tc.c, pub)
			got, err := Open(blob, priv, testNow)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Expiration.Equal(tc.c.Expiration) {
				t.Errorf("expiration %v, want %v", got.Expiration, tc.c.Expiration)
			}
			if !sameCreds(got, tc.c) {
				t.Errorf("opened %#v\nwant %#v", got, tc.c)
			}
			// Transport may add a trailing newline (env files, YAML).
			if _, err := Open(blob+"\n", priv, testNow); err != nil {
				t.Errorf("trailing newline: %v", err)
			}
		})
	}
}

func TestSealedBlobHidesPlaintext(t *testing.T) {
	t.Parallel()
	pub, _ := testKeys()
	c := testCreds()
	blob := mustSeal(t, c, pub)
	raw, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Bucket} {
		// Also search for the base64 of the secret, in case a field was
		// merely encoded.
		for _, needle := range []string{secret, base64.StdEncoding.EncodeToString([]byte(secret)), secret[:12]} {
			if strings.Contains(blob, needle) || bytes.Contains(raw, []byte(needle)) {
				t.Errorf("sealed blob contains %q", needle)
			}
		}
	}
	if bytes.Contains(raw, []byte(`"v"`)) || bytes.Contains(raw, []byte("expiration")) {
		t.Error("sealed blob shows the envelope's JSON")
	}
	// Each seal uses a fresh ephemeral key, so equal credentials do not
	// produce equal (linkable) blobs.
	if blob == mustSeal(t, c, pub) {
		t.Error("two seals of the same credentials are identical")
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	pub, priv := testKeys()
	otherPub, otherPriv, err := NewKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	good := mustSeal(t, testCreds(), pub)
	raw, _ := base64.StdEncoding.DecodeString(good)
	enc := base64.StdEncoding.EncodeToString
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 0x01
		return enc(b)
	}
	envelopeWith := func(json string) string { return sealRaw(t, []byte(json), pub) }
	const exp = `"expiration":"2026-03-01T13:00:00Z"`
	// bind is the graph, image and scope every version-2 envelope must
	// carry.
	const bind = `"graph_id":"g1","image":"af/os-count","bucket":"bkt","prefix":"p/","prefixes":["p/x/"]`

	tests := []struct {
		name string
		blob string
		key  *PrivateKey
		now  time.Time
		want error
		msg  []string
	}{
		{"wrong key", good, otherPriv, testNow, ErrWrongKey, []string{"different worker pool key", otherPub.Fingerprint(), pub.Fingerprint(), "af.pub"}},
		{"sealed to other pool", mustSeal(t, testCreds(), otherPub), priv, testNow, ErrWrongKey, []string{otherPub.Fingerprint()}},
		{"tampered key id", flip(0), priv, testNow, ErrWrongKey, nil},
		{"tampered ephemeral key", flip(keyIDLen + 3), priv, testNow, ErrMalformed, []string{"tampered", "resubmit"}},
		{"tampered ciphertext", flip(len(raw) - 5), priv, testNow, ErrMalformed, []string{"tampered"}},
		{"tampered tag", flip(keyIDLen + 32 + 2), priv, testNow, ErrMalformed, []string{"tampered"}},
		{"truncated box", enc(raw[:len(raw)-1]), priv, testNow, ErrMalformed, []string{"truncated"}},
		{"truncated to overhead", enc(raw[:minSealed-1]), priv, testNow, ErrMalformed, []string{"truncated"}},
		{"truncated text", good[:len(good)/2], priv, testNow, ErrMalformed, []string{"truncated"}},
		{"truncated text by one char", good[:len(good)-1], priv, testNow, ErrMalformed, nil},
		{"extended", enc(append(bytes.Clone(raw), 0)), priv, testNow, ErrMalformed, []string{"tampered"}},
		{"not base64", "not base64!", priv, testNow, ErrMalformed, []string{"base64"}},
		{"url base64", strings.NewReplacer("+", "-", "/", "_").Replace(good), priv, testNow, ErrMalformed, nil},
		{"empty", "  ", priv, testNow, ErrMalformed, []string{"empty"}},
		{"huge", strings.Repeat("A", maxBlob+4), priv, testNow, ErrMalformed, []string{"CREDENTIALS holds something else"}},
		{"unknown version", envelopeWith(`{"v":3,"access_key_id":"a","secret_access_key":"b",` + exp + `}`), priv, testNow, ErrUnknownVersion, []string{"version 3", "upgrade the worker"}},
		{"version 1 (unbound)", envelopeWith(`{"v":1,"access_key_id":"a","secret_access_key":"b",` + exp + `,"bucket":"bkt","prefix":"p/"}`), priv, testNow, ErrUnknownVersion, []string{"version 1", "neither the graph, the job image nor the inputs", "resubmit the job with a current af"}},
		{"no graph", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,"bucket":"bkt","prefix":"p/","prefixes":["p/x/"]}`), priv, testNow, ErrMalformed, []string{"no graph id"}},
		{"no image", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,"graph_id":"g1","bucket":"bkt","prefix":"p/","prefixes":["p/x/"]}`), priv, testNow, ErrMalformed, []string{"no image", "resubmit"}},
		{"empty image", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,` + bind + `,"image":""}`), priv, testNow, ErrMalformed, []string{"no image"}},
		{"image not a string", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,` + bind + `,"image":7}`), priv, testNow, ErrMalformed, []string{`field "image" has the wrong type`}},
		{"image with a newline", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,` + bind + `,"image":"af/os-count\n"}`), priv, testNow, ErrMalformed, []string{"image is not printable ASCII"}},
		{"image not ASCII", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,` + bind + `,"image":"af/os-c\u00f6unt"}`), priv, testNow, ErrMalformed, []string{"image is not printable ASCII"}},
		{"image too long", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,` + bind + `,"image":"` + strings.Repeat("x", maxImage+1) + `"}`), priv, testNow, ErrMalformed, []string{"at most 512 characters"}},
		{"no prefixes", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,"graph_id":"g1","image":"i","bucket":"bkt","prefix":"p/"}`), priv, testNow, ErrMalformed, []string{"no key prefixes"}},
		{"prefix outside", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,"graph_id":"g1","image":"i","bucket":"bkt","prefix":"p/","prefixes":["q/"]}`), priv, testNow, ErrMalformed, []string{`"q/" is not under the input prefix "p/"`}},
		{"wildcard prefix", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,"graph_id":"g1","image":"i","bucket":"bkt","prefix":"p/","prefixes":["p/*"]}`), priv, testNow, ErrMalformed, []string{"wildcard"}},
		{"no bucket", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,"graph_id":"g1","image":"i","prefix":"p/","prefixes":["p/"]}`), priv, testNow, ErrMalformed, []string{"no input bucket"}},
		{"region steering the host", envelopeWith(`{"v":2,"access_key_id":"a","secret_access_key":"b",` + exp + `,` + bind + `,"region":"x.evil.example/"}`), priv, testNow, ErrMalformed, []string{"not an AWS region name"}},
		{"version zero", envelopeWith(`{"v":0}`), priv, testNow, ErrUnknownVersion, []string{"version 0"}},
		{"no version", envelopeWith(`{"access_key_id":"a","secret_access_key":"b",` + exp + `}`), priv, testNow, ErrMalformed, []string{"no version"}},
		{"string version", envelopeWith(`{"v":"1"}`), priv, testNow, ErrMalformed, []string{"not an integer"}},
		{"not json", envelopeWith(`hello`), priv, testNow, ErrMalformed, []string{"not a JSON object"}},
		{"json array", envelopeWith(`[1]`), priv, testNow, ErrMalformed, []string{"not a JSON object"}},
		{"no secret", envelopeWith(`{"v":2,` + bind + `,"access_key_id":"a",` + exp + `}`), priv, testNow, ErrMalformed, []string{"no secret access key"}},
		{"no key id", envelopeWith(`{"v":2,` + bind + `,"secret_access_key":"b",` + exp + `}`), priv, testNow, ErrMalformed, []string{"no access key id"}},
		{"no expiry", envelopeWith(`{"v":2,` + bind + `,"access_key_id":"a","secret_access_key":"b"}`), priv, testNow, ErrMalformed, []string{"no expiration"}},
		{"bad expiry", envelopeWith(`{"v":2,` + bind + `,"access_key_id":"a","secret_access_key":"b","expiration":"soon"}`), priv, testNow, ErrMalformed, []string{"invalid value"}},
		{"bad endpoint", envelopeWith(`{"v":2,` + bind + `,"access_key_id":"a","secret_access_key":"b",` + exp + `,"endpoint":"file:///etc"}`), priv, testNow, ErrMalformed, []string{"not an http(s) URL"}},
		{"control char in token", envelopeWith(`{"v":2,` + bind + `,"access_key_id":"a","secret_access_key":"b",` + exp + `,"session_token":"x\u0000"}`), priv, testNow, ErrMalformed, []string{"session token contains control"}},
		{"trailing data", envelopeWith(`{"v":2,` + bind + `,"access_key_id":"a","secret_access_key":"b",` + exp + `} {}`), priv, testNow, ErrMalformed, nil},
		{"expired", good, priv, testNow.Add(2 * time.Hour), ErrExpired, []string{"expired at 2026-03-01T13:00:00Z", "--credentials-ttl"}},
		{"expired exactly now", good, priv, testNow.Add(time.Hour), ErrExpired, []string{"2026-03-01T13:00:00Z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Open(tc.blob, tc.key, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open error = %v, want %v", err, tc.want)
			}
			if !sameCreds(c, Credentials{}) || c.Prefixes != nil {
				t.Errorf("returned credentials along with the error: %v", c)
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q lacks %q", err, m)
				}
			}
			for _, s := range []string{testSecret, testToken} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error quotes a secret: %q", err)
				}
			}
			if IsExpiredToken(err) != (tc.want == ErrExpired) {
				t.Errorf("IsExpiredToken(%v) = %v", err, !(tc.want == ErrExpired))
			}
		})
	}
	// A second before expiry still opens.
	if _, err := Open(good, priv, testNow.Add(time.Hour-time.Second)); err != nil {
		t.Fatalf("open before expiry: %v", err)
	}
	if _, err := Open(good, nil, testNow); err == nil || !strings.Contains(err.Error(), "af.key") {
		t.Fatalf("nil key: %v", err)
	}
}

func TestSealRefusesUnusableCredentials(t *testing.T) {
	t.Parallel()
	pub, _ := testKeys()
	tests := []struct {
		name   string
		mutate func(*Credentials)
		want   string
	}{
		{"no secret", func(c *Credentials) { c.SecretAccessKey = "" }, "no secret"},
		{"no key id", func(c *Credentials) { c.AccessKeyID = "" }, "no access key id"},
		{"no expiry", func(c *Credentials) { c.Expiration = time.Time{} }, "no expiration"},
		{"bad endpoint", func(c *Credentials) { c.Endpoint = "127.0.0.1:9000" }, "not an http(s) URL"},
		{"no graph", func(c *Credentials) { c.GraphID = "" }, "no graph id"},
		{"no image", func(c *Credentials) { c.Image = "" }, "no image"},
		{"image with a space", func(c *Credentials) { c.Image = "af/os-count evil" }, "image is not printable ASCII"},
		{"image with a newline", func(c *Credentials) { c.Image = "af/os-count\n" }, "image is not printable ASCII"},
		{"image too long", func(c *Credentials) { c.Image = "af/" + strings.Repeat("x", 600) }, "at most 512 characters"},
		{"no prefixes", func(c *Credentials) { c.Prefixes = nil }, "no key prefixes"},
		{"prefix outside the input prefix", func(c *Credentials) { c.Prefixes = []string{"saved_session/Fennec/"} }, "not under the input prefix"},
		{"bad region", func(c *Credentials) { c.Region = "us-east-1.evil.example" }, "not an AWS region name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := testCreds()
			tc.mutate(&c)
			blob, err := Seal(c, pub)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Seal = %q, %v; want error with %q", blob, err, tc.want)
			}
		})
	}
	if _, err := Seal(testCreds(), nil); err == nil || !strings.Contains(err.Error(), "pool-key") {
		t.Fatalf("nil public key: %v", err)
	}
}

func BenchmarkSeal(b *testing.B) {
	pub, _ := testKeys()
	c := testCreds()
	for b.Loop() {
		if _, err := Seal(c, pub); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	pub, priv := testKeys()
	blob := mustSeal(b, testCreds(), pub)
	for b.Loop() {
		if _, err := Open(blob, priv, testNow); err != nil {
			b.Fatal(err)
		}
	}
}
