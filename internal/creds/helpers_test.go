package creds

import (
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
	}
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
