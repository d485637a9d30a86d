package creds

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// classified reports whether err is one of the sentinels Open promises:
// every failure must be reportable as one of them.
func classified(err error) bool {
	return errors.Is(err, ErrMalformed) || errors.Is(err, ErrWrongKey) ||
		errors.Is(err, ErrUnknownVersion) || errors.Is(err, ErrExpired)
}

// FuzzOpen feeds Open arbitrary text under a fixed key pair. It must never
// panic, every failure must be one of the documented errors, and the only
// way to succeed is to hold an authentic seal of testCreds (a mutation
// that survives is one that does not change the decoded bytes).
func FuzzOpen(f *testing.F) {
	pub, priv := testKeys()
	valid := mustSeal(f, testCreds(), pub)
	raw, _ := base64.StdEncoding.DecodeString(valid)
	f.Add(valid)
	f.Add(valid + "\n")
	f.Add(valid[:len(valid)-4])
	f.Add(base64.StdEncoding.EncodeToString(raw[:minSealed]))
	f.Add(base64.StdEncoding.EncodeToString(raw[keyIDLen:]))
	f.Add(sealRaw(f, []byte(`{"v":2}`), pub))
	f.Add(sealRaw(f, []byte(`{"v":1,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z"}`), pub))
	f.Add("")
	f.Add("====")
	f.Add("afpub1:AAAA")
	want := testCreds()
	f.Fuzz(func(t *testing.T, blob string) {
		c, err := Open(blob, priv, testNow)
		if err != nil {
			if !classified(err) {
				t.Fatalf("unclassified error: %v", err)
			}
			if c != (Credentials{}) {
				t.Fatalf("credentials returned with error %v", err)
			}
			return
		}
		if c.AccessKeyID == "a" {
			return // the hand-made seed above: authentic, made with the key.
		}
		if c.AccessKeyID != want.AccessKeyID || c.SecretAccessKey != want.SecretAccessKey ||
			c.SessionToken != want.SessionToken || !c.Expiration.Equal(want.Expiration) {
			t.Fatalf("forged blob opened: %v", c)
		}
	})
}

// FuzzDecodeEnvelope feeds the plaintext decoder arbitrary bytes, as a
// compromised or buggy submitter holding the public key could seal. It
// must never panic, errors must be classified, and whatever it accepts
// must be usable and survive a re-encode unchanged.
func FuzzDecodeEnvelope(f *testing.F) {
	good, _ := encodeEnvelope(testCreds())
	f.Add(good)
	f.Add([]byte(`{"v":1,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z"}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`{"v":"1"}`))
	f.Add([]byte(`{"v":1e400}`))
	f.Add([]byte(`{"v":1,"expiration":"x"}`))
	f.Add([]byte(`{"v":1,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","endpoint":"http://[::1"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte{0xff, 0xfe})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := decodeEnvelope(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrUnknownVersion) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if c.AccessKeyID == "" || c.SecretAccessKey == "" || c.Expiration.IsZero() {
			t.Fatalf("accepted unusable credentials: %#v", c)
		}
		again, err := encodeEnvelope(c)
		if err != nil {
			t.Fatalf("accepted credentials Seal refuses: %v", err)
		}
		c2, err := decodeEnvelope(again)
		if err != nil {
			t.Fatalf("re-encoded envelope does not decode: %v", err)
		}
		if !c2.Expiration.Equal(c.Expiration) {
			t.Fatalf("expiration changed: %v -> %v", c.Expiration, c2.Expiration)
		}
		c.Expiration, c2.Expiration = time.Time{}, time.Time{}
		if c != c2 {
			t.Fatalf("round trip changed %#v into %#v", c, c2)
		}
		var probe map[string]json.RawMessage
		if json.Unmarshal(data, &probe) != nil {
			t.Fatalf("accepted non-object input %q", data)
		}
	})
}
