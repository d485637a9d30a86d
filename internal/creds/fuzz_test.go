package creds

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// handMadeV2 is a minimal authentic version-2 envelope (access key "a").
const handMadeV2 = `{"v":2,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","graph_id":"g1","image":"af/os-count","bucket":"bkt","prefix":"p/","prefixes":["p/x/"]}`

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
	f.Add(sealRaw(f, []byte(handMadeV2), pub))
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
			if !sameCreds(c, Credentials{}) || c.Prefixes != nil {
				t.Fatalf("credentials returned with error %v", err)
			}
			return
		}
		if c.AccessKeyID == "a" {
			return // the hand-made seed above: authentic, made with the key.
		}
		if !sameCreds(c, want) {
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
	f.Add([]byte(handMadeV2))
	f.Add([]byte(`{"v":2,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","graph_id":"g","image":"i","bucket":"bkt","prefix":"p/","prefixes":["q/"]}`))
	f.Add([]byte(`{"v":2,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","graph_id":"g","image":"i","bucket":"bkt","prefix":"p/","prefixes":["p/*"]}`))
	f.Add([]byte(`{"v":2,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","graph_id":"g","image":"i","bucket":"bkt","prefix":"","prefixes":[""],"region":"evil.com/"}`))
	f.Add([]byte(`{"v":2,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","graph_id":"g","image":"i","bucket":"bkt","prefixes":null}`))
	f.Add([]byte(`{"v":2,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","graph_id":"g","bucket":"bkt","prefix":"p/","prefixes":["p/x/"]}`))
	f.Add([]byte(`{"v":2,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","graph_id":"g","image":"af/os count\t","bucket":"bkt","prefix":"p/","prefixes":["p/x/"]}`))
	f.Add([]byte(`{"v":2,"access_key_id":"a","secret_access_key":"b","expiration":"2026-03-01T13:00:00Z","graph_id":"g","image":["i"],"bucket":"bkt","prefix":"p/","prefixes":["p/x/"]}`))
	f.Add([]byte(`{"v":3}`))
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
		// Whatever decodes satisfies validate: bound to a graph, to a
		// printable image and to prefixes under its prefix, with a region
		// that cannot steer a host name.
		e := envelopeOf(c)
		if err := e.validate(); err != nil {
			t.Fatalf("accepted an envelope validate refuses: %v", err)
		}
		if c.GraphID == "" || c.Image == "" || len(c.Prefixes) == 0 || c.Bucket == "" {
			t.Fatalf("accepted unbound credentials: %#v", c)
		}
		if len(c.Image) > maxImage || strings.IndexFunc(c.Image, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			t.Fatalf("accepted image %q", c.Image)
		}
		for _, p := range c.Prefixes {
			if !strings.HasPrefix(p, c.Prefix) || strings.ContainsAny(p, "*?") {
				t.Fatalf("accepted prefix %q outside %q or with a wildcard", p, c.Prefix)
			}
		}
		if c.Region != "" && !regionRE.MatchString(c.Region) {
			t.Fatalf("accepted region %q", c.Region)
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
		if !sameCreds(c, c2) {
			t.Fatalf("round trip changed %#v into %#v", c, c2)
		}
		var probe map[string]json.RawMessage
		if json.Unmarshal(data, &probe) != nil {
			t.Fatalf("accepted non-object input %q", data)
		}
	})
}

// FuzzSealRoundTrip seals credentials built from arbitrary field values:
// whatever Seal accepts must open to the same credentials, bound to the
// same graph, image and prefixes, usable only there; whatever it refuses
// must not be sealable.
func FuzzSealRoundTrip(f *testing.F) {
	pub, priv := testKeys()
	tc := testCreds()
	f.Add(tc.GraphID, tc.Image, tc.Bucket, tc.Prefix, tc.Prefixes[0], tc.Prefixes[1], tc.Region, tc.Endpoint)
	f.Add("g", "i", "bkt", "", "", "", "", "")
	f.Add("g", "af/os-count@sha256:0123", "bkt", "p/", "q/", "p/x", "eu-west-1", "https://s3.example.com")
	f.Add("", "af/os-count", "bkt", "p/", "p/", "p/", "us-east-1", "")
	f.Add("g", "", "bkt", "p/", "p/", "p/", "", "")
	f.Add("g", "af/os-count go", "bkt", "p/", "p/", "p/", "", "")
	f.Add("g\n", "af/\u00e9", "Bad_Bucket", "p/*", "p/${x}", "p/", "x.evil.com#", "ftp://x")
	f.Fuzz(func(t *testing.T, graph, image, bucket, prefix, p1, p2, region, endpoint string) {
		c := testCreds()
		c.GraphID, c.Image, c.Bucket, c.Prefix, c.Prefixes, c.Region, c.Endpoint = graph, image, bucket, prefix, []string{p1, p2}, region, endpoint
		blob, err := Seal(c, pub)
		if err != nil {
			return
		}
		got, err := Open(blob, priv, testNow)
		if err != nil {
			t.Fatalf("sealed credentials do not open: %v", err)
		}
		if !sameCreds(got, c) {
			t.Fatalf("round trip changed %#v into %#v", c, got)
		}
		own := Use{GraphID: graph, Image: image, Bucket: bucket, Prefix: prefix, Keys: []string{p1 + "k", p2}}
		if err := got.Permits(own); err != nil {
			t.Fatalf("opened credentials refuse their own scope: %v", err)
		}
		other := own
		other.GraphID += "x"
		if err := got.Permits(other); err == nil {
			t.Fatal("opened credentials accept another graph")
		}
		other = own
		other.Image += "-go"
		if err := got.Permits(other); err == nil || !strings.Contains(err.Error(), "image "+other.Image) {
			t.Fatalf("opened credentials accept another image: %v", err)
		}
	})
}
