package creds

import (
	"slices"
	"testing"
	"time"
)

// testNow is the fixed "now" tests open blobs at; testCreds expire an
// hour later.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// Plaintext values chosen to be distinctive, so a search of a blob for
// them cannot match by chance.
const (
	testAccessKeyID = "ASIATESTACCESSKEY123"
	testSecret      = "s3cr3t/Secret+AccessKey=Value0123456789ab"
	testToken       = "FwoGZXIvYXdzEXAMPLESESSIONTOKENvalue/with+base64chars=="
)

func testCreds() Credentials {
	return Credentials{
		AccessKeyID: testAccessKeyID, SecretAccessKey: testSecret, SessionToken: testToken,
		Region: "us-east-1", Endpoint: "http://127.0.0.1:9000",
		Expiration: testNow.Add(time.Hour), Bucket: "telemetry-published-v2", Prefix: "saved_session/Firefox/",
		Prefixes: []string{"saved_session/Firefox/nightly/30.0a1/20140301000000.20140308.", "saved_session/Firefox/release/"},
		GraphID:  "graphAAAAAAAAAAAAAAAAA", Image: "registry.example.com/af/os-count:v1",
	}
}

// sameCreds compares credentials field by field (Prefixes is a slice).
func sameCreds(a, b Credentials) bool {
	return a.AccessKeyID == b.AccessKeyID && a.SecretAccessKey == b.SecretAccessKey && a.SessionToken == b.SessionToken &&
		a.Region == b.Region && a.Endpoint == b.Endpoint && a.Expiration.Equal(b.Expiration) &&
		a.Bucket == b.Bucket && a.Prefix == b.Prefix && slices.Equal(a.Prefixes, b.Prefixes) && a.GraphID == b.GraphID && a.Image == b.Image
}

// testKeys is a fixed key pair, so fuzz corpora stay valid across runs.
func testKeys() (*PublicKey, *PrivateKey) {
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(i*7 + 3)
	}
	k, err := privateKeyFromBytes(seed[:])
	if err != nil {
		panic(err)
	}
	return k.Public(), k
}

func mustSeal(t testing.TB, c Credentials, pub *PublicKey) string {
	t.Helper()
	blob, err := Seal(c, pub)
	if err != nil {
		t.Fatal(err)
	}
	return blob
}
