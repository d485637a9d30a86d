package creds

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"golang.org/x/crypto/nacl/box"
)

// Errors Open (and the worker) report. Each is wrapped with the detail of
// the case; test with errors.Is.
var (
	// ErrWrongKey: the blob was sealed to another pool key than the one
	// this worker holds.
	ErrWrongKey = errors.New("credentials were sealed to a different worker pool key")
	// ErrMalformed: the blob is not something Seal produced, or was
	// damaged (tampered, truncated, re-encoded) on the way.
	ErrMalformed = errors.New("sealed credentials are malformed")
	// ErrUnknownVersion: the envelope inside uses a format this build does
	// not understand.
	ErrUnknownVersion = errors.New("sealed credentials use an unknown format version")
	// ErrExpired: the credentials' expiry has passed (from the sealed
	// expiry, or S3/STS said ExpiredToken).
	ErrExpired = errors.New("job credentials have expired")
)

// envelopeVersion is the only envelope format this build writes and reads.
// Version 2 binds the credentials to their graph, the job image it was
// submitted with, and its input scope; version 1 envelopes carried none of
// them and are refused.
const envelopeVersion = 2

// maxGraphID bounds the graph id an envelope may name (taskdef ids are 22
// characters); maxImage bounds its image reference (Docker's name, tag and
// digest limits add up to 455); maxScopePrefixes bounds its prefix list (a
// policy within MaxSessionPolicy holds far fewer).
const (
	maxGraphID       = 128
	maxImage         = 512
	maxScopePrefixes = 256
)

// regionRE is the shape of an AWS region ("eu-west-1"): the SDK puts it in
// the S3 host name when the worker has no endpoint, so nothing else may
// pass.
var regionRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// keyIDLen is how many bytes of the recipient key's SHA-256 precede the
// sealed box. The public key is public, so naming it leaks nothing, and it
// lets Open tell "wrong key" apart from "damaged".
const keyIDLen = 8

// maxBlob bounds the base64 text Open accepts: an envelope with an AWS
// session token is a few KiB, so anything far bigger is not ours and is
// refused before decoding.
const maxBlob = 64 << 10

// minSealed is the smallest raw blob that could hold an envelope: key id,
// box overhead and "{}".
const minSealed = keyIDLen + box.AnonymousOverhead + 2

// envelope is the sealed JSON document. Field names are short and stable;
// new optional fields may be added within version 2, anything else bumps
// the version.
type envelope struct {
	V               int       `json:"v"`
	AccessKeyID     string    `json:"access_key_id"`
	SecretAccessKey string    `json:"secret_access_key"`
	SessionToken    string    `json:"session_token,omitempty"`
	Region          string    `json:"region,omitempty"`
	Endpoint        string    `json:"endpoint,omitempty"`
	Expiration      time.Time `json:"expiration"`
	Bucket          string    `json:"bucket"`
	Prefix          string    `json:"prefix"`
	Prefixes        []string  `json:"prefixes"`
	GraphID         string    `json:"graph_id"`
	Image           string    `json:"image"`
}

// validate checks what both Seal and Open need: a usable key pair, an
// expiry, an endpoint and region of the right shape, and the binding to a
// graph, its job image and its input scope.
func (e *envelope) validate() error {
	if e.AccessKeyID == "" {
		return errors.New("no access key id")
	}
	if e.SecretAccessKey == "" {
		return errors.New("no secret access key")
	}
	for _, f := range []struct{ name, v string }{
		{"access key id", e.AccessKeyID}, {"secret access key", e.SecretAccessKey},
		{"session token", e.SessionToken}, {"region", e.Region}, {"endpoint", e.Endpoint},
	} {
		if strings.IndexFunc(f.v, func(r rune) bool { return unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0 {
			return fmt.Errorf("%s contains control or invalid characters", f.name)
		}
	}
	if e.Expiration.IsZero() {
		return errors.New("no expiration time")
	}
	if e.Endpoint != "" {
		u, err := url.Parse(e.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("endpoint %q is not an http(s) URL", e.Endpoint)
		}
	}
	if e.Region != "" && (len(e.Region) > 32 || !regionRE.MatchString(e.Region)) {
		return fmt.Errorf("region %q is not an AWS region name (lowercase letters, digits and hyphens)", e.Region)
	}
	if e.GraphID == "" {
		return errors.New("no graph id: the credentials are bound to no graph")
	}
	if len(e.GraphID) > maxGraphID || strings.IndexFunc(e.GraphID, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return errors.New("the graph id is not printable ASCII of at most 128 characters")
	}
	if e.Image == "" {
		return errors.New("no image: the credentials are bound to no job image")
	}
	if len(e.Image) > maxImage || strings.IndexFunc(e.Image, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
		return fmt.Errorf("the image is not printable ASCII of at most %d characters", maxImage)
	}
	if err := validateBucket(e.Bucket); err != nil {
		return err
	}
	if err := validatePrefix(e.Prefix); err != nil {
		return err
	}
	if len(e.Prefixes) == 0 {
		return errors.New("no key prefixes: the credentials are bound to no inputs")
	}
	if len(e.Prefixes) > maxScopePrefixes {
		return fmt.Errorf("%d key prefixes, more than the %d a session policy can hold", len(e.Prefixes), maxScopePrefixes)
	}
	for _, p := range e.Prefixes {
		if err := validatePrefix(p); err != nil {
			return fmt.Errorf("key prefix: %w", err)
		}
		if !strings.HasPrefix(p, e.Prefix) {
			return fmt.Errorf("key prefix %q is not under the input prefix %q", p, e.Prefix)
		}
	}
	return nil
}

func (e *envelope) credentials() Credentials {
	return Credentials{
		AccessKeyID: e.AccessKeyID, SecretAccessKey: e.SecretAccessKey, SessionToken: e.SessionToken,
		Region: e.Region, Endpoint: e.Endpoint, Expiration: e.Expiration,
		Bucket: e.Bucket, Prefix: e.Prefix, Prefixes: slices.Clone(e.Prefixes), GraphID: e.GraphID, Image: e.Image,
	}
}

func envelopeOf(c Credentials) envelope {
	return envelope{
		V: envelopeVersion, AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey,
		SessionToken: c.SessionToken, Region: c.Region, Endpoint: c.Endpoint,
		Expiration: c.Expiration.UTC(), Bucket: c.Bucket, Prefix: c.Prefix,
		Prefixes: slices.Clone(c.Prefixes), GraphID: c.GraphID, Image: c.Image,
	}
}

// encodeEnvelope is the plaintext Seal boxes.
func encodeEnvelope(c Credentials) ([]byte, error) {
	e := envelopeOf(c)
	if err := e.validate(); err != nil {
		return nil, fmt.Errorf("seal credentials: %w", err)
	}
	return json.Marshal(e)
}

// decodeEnvelope parses the plaintext inside the box. It reads the version
// first so a newer format is reported as such rather than as a field
// error. Error messages never quote the input: it holds the secret.
func decodeEnvelope(b []byte) (Credentials, error) {
	var head struct {
		V *json.RawMessage `json:"v"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return Credentials{}, fmt.Errorf("%w: the envelope is not a JSON object (%s); reseal with a current af", ErrMalformed, jsonErrKind(err))
	}
	if head.V == nil {
		return Credentials{}, fmt.Errorf("%w: the envelope has no version field; reseal with a current af", ErrMalformed)
	}
	var v int
	if err := json.Unmarshal(*head.V, &v); err != nil {
		return Credentials{}, fmt.Errorf("%w: the envelope version is not an integer; reseal with a current af", ErrMalformed)
	}
	if v == 1 {
		return Credentials{}, fmt.Errorf("%w: version 1 envelopes name neither the graph, the job image nor the inputs they were minted for, so workers refuse them; resubmit the job with a current af", ErrUnknownVersion)
	}
	if v != envelopeVersion {
		return Credentials{}, fmt.Errorf("%w: version %d, this worker reads version %d; upgrade the worker or submit with the matching af", ErrUnknownVersion, v, envelopeVersion)
	}
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return Credentials{}, fmt.Errorf("%w: version %d envelope does not decode (%s); reseal with a current af", ErrMalformed, envelopeVersion, jsonErrKind(err))
	}
	if err := e.validate(); err != nil {
		return Credentials{}, fmt.Errorf("%w: %w; resubmit the job so af mints new credentials", ErrMalformed, err)
	}
	return e.credentials(), nil
}

// jsonErrKind describes a JSON error without echoing input values, which
// *json.UnmarshalTypeError and *json.SyntaxError messages avoid but
// wrapped errors from custom unmarshalers (time.Time) may not.
func jsonErrKind(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	default:
		return "a field has an invalid value"
	}
}

// Seal encrypts c to the pool's public key: an anonymous NaCl sealed box
// (ephemeral X25519 + XSalsa20-Poly1305) over a versioned JSON envelope,
// prefixed by the key's id, base64-encoded for the CREDENTIALS variable.
func Seal(c Credentials, pub *PublicKey) (string, error) {
	if pub == nil {
		return "", errors.New("seal credentials: no pool public key (load af.pub or fetch GET /api/v1/pool-key)")
	}
	plain, err := encodeEnvelope(c)
	if err != nil {
		return "", err
	}
	id := pub.keyID()
	out := make([]byte, keyIDLen, minSealed+len(plain))
	copy(out, id[:])
	out, err = box.SealAnonymous(out, plain, (*[32]byte)(pub), rand.Reader)
	clear(plain)
	if err != nil {
		return "", fmt.Errorf("seal credentials: %w", err)
	}
	return base64.StdEncoding.EncodeToString(out), nil
}

// Open decrypts a blob made by Seal with the pool's private key and checks
// the sealed expiry against now, before any S3 call can fail on it.
func Open(blob string, key *PrivateKey, now time.Time) (Credentials, error) {
	if key == nil {
		return Credentials{}, errors.New("open credentials: no pool private key (load af.key)")
	}
	blob = strings.TrimSpace(blob)
	if blob == "" {
		return Credentials{}, fmt.Errorf("%w: the CREDENTIALS value is empty; the task was submitted without credentials", ErrMalformed)
	}
	if len(blob) > maxBlob {
		return Credentials{}, fmt.Errorf("%w: %d bytes, more than the %d a sealed blob can be; CREDENTIALS holds something else", ErrMalformed, len(blob), maxBlob)
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(blob)
	if err != nil {
		return Credentials{}, fmt.Errorf("%w: not standard base64 (%v); the value was truncated or altered in transit", ErrMalformed, err)
	}
	if len(raw) < minSealed {
		return Credentials{}, fmt.Errorf("%w: %d bytes, shorter than the %d of the smallest sealed blob; the value was truncated", ErrMalformed, len(raw), minSealed)
	}
	want := key.pub.keyID()
	if subtle.ConstantTimeCompare(raw[:keyIDLen], want[:]) != 1 {
		return Credentials{}, fmt.Errorf("%w: sealed to key %x, this worker holds key %s; submit with this pool's af.pub (served at GET /api/v1/pool-key) or give this worker the matching af.key",
			ErrWrongKey, raw[:keyIDLen], key.pub.Fingerprint())
	}
	plain, ok := box.OpenAnonymous(nil, raw[keyIDLen:], (*[32]byte)(&key.pub), &key.priv)
	if !ok {
		return Credentials{}, fmt.Errorf("%w: the box does not authenticate under this worker's key %s, so it was tampered with or truncated; resubmit the job", ErrMalformed, key.pub.Fingerprint())
	}
	c, err := decodeEnvelope(plain)
	clear(plain)
	if err != nil {
		return Credentials{}, err
	}
	if !now.Before(c.Expiration) {
		return Credentials{}, fmt.Errorf("%w: they expired at %s (now %s); resubmit the job, with a longer --credentials-ttl if it runs longer than that",
			ErrExpired, c.Expiration.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return c, nil
}
