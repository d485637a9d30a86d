package creds

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/af-project/af/internal/layout"
)

// MaxSessionPolicy is the largest plaintext session policy STS accepts:
// AWS documents 2,048 characters for AssumeRole and GetFederationToken
// session policies, and MinIO refuses longer ones with "Session policy
// shouldn't exceed 2048 characters".
const MaxSessionPolicy = 2048

// Scope is what a job's credentials may read: the keys of Bucket starting
// with one of Prefixes. ScopeFor computes it from the selected files, and
// both the session policy (SessionPolicyFor) and the sealed envelope
// (Credentials.Prefixes, checked by Permits) take Prefixes from it, so
// what S3 enforces and what the worker checks are the same list.
type Scope struct {
	// Bucket and Prefix are the index's: every task's payload names them.
	Bucket, Prefix string
	// Prefixes are the key prefixes the policy grants, sorted, none a
	// prefix of another. Each starts with Prefix (normalised to end in /).
	Prefixes []string
	// Level is how many dimensions each prefix names; Dimension is the
	// last of them ("" at level 0, the index's whole prefix).
	Level     int
	Dimension string
	// Narrowest is how many prefixes the tightest level (every dimension
	// named) would have needed; it differs from len(Prefixes) when the
	// scope was widened to fit MaxSessionPolicy.
	Narrowest int
	// Widened says the tightest level did not fit and a coarser one was
	// used.
	Widened bool
}

// Describe is the line af submit prints about what the credentials read.
func (s Scope) Describe() string {
	where := fmt.Sprintf("s3://%s/%s", s.Bucket, s.Prefix)
	var what string
	if s.Level == 0 {
		what = fmt.Sprintf("credentials can read every key under %s", where)
	} else {
		what = fmt.Sprintf("credentials can read %d prefix(es) at the %s level under %s", len(s.Prefixes), s.Dimension, where)
	}
	if s.Widened {
		what += fmt.Sprintf("; widened from %d to fit STS's %d-character session policy limit", s.Narrowest, MaxSessionPolicy)
	}
	return what
}

// ScopeFor computes the smallest set of key prefixes that covers keys (the
// files the filter selected) and whose session policy fits
// MaxSessionPolicy. The tightest prefixes name every dimension of a key
// ("<prefix>/<d1>/…/<dn-2>/<dn-1>.<dn>." in the .vN layout,
// "<prefix>/dt=<d1>/hour=<d2>/" in a key=value one: the dimension subtree
// the filter kept); when they do not fit, dimensions are dropped from the end one
// level at a time (the file-name dimensions, then directory levels) down to
// the index's prefix itself, which always fits. A key that does not fit
// the layout is granted exactly (its whole key) at every level but 0.
func ScopeFor(bucket, prefix string, schema layout.Schema, keys []string) (Scope, error) {
	if err := validateBucket(bucket); err != nil {
		return Scope{}, err
	}
	if err := validatePrefix(prefix); err != nil {
		return Scope{}, err
	}
	if len(keys) == 0 {
		return Scope{}, errors.New("no input keys to scope the credentials to")
	}
	if len(schema.Fields) == 0 || len(schema.Fields) < 2 && schema.Places == nil {
		schema = layout.Telemetry()
	}
	base := layout.NormalizePrefix(prefix)
	n := len(schema.Fields)
	// A key's prefix at level L is the key itself up to the separator
	// after its L-th dimension value ('/' for directory levels, plain or
	// key=value, '.' in the file name), so ends[L-1] is all a level needs:
	// no string is built.
	type parsed struct {
		key  string
		ends []int // nil: the key does not fit the layout
	}
	ps := make([]parsed, len(keys))
	backing := make([]int, len(keys)*n)
	var (
		dims []string
		off  []int
	)
	for i, k := range keys {
		if !strings.HasPrefix(k, base) {
			return Scope{}, fmt.Errorf("input %q is not under the index's prefix %q", k, base)
		}
		if err := validatePrefix(k); err != nil {
			return Scope{}, fmt.Errorf("input key: %w", err)
		}
		ps[i].key = k
		var err error
		if dims, off, err = schema.Ends(k[len(base):], dims[:0], off[:0]); err != nil {
			continue
		}
		ends := backing[i*n : (i+1)*n : (i+1)*n]
		for j, e := range off {
			ends[j] = len(base) + e // past the value and its separator
		}
		ps[i].ends = ends
	}
	// Each granted prefix costs at least its resource's ARN in the policy,
	// so a level with more distinct prefixes than maxFit cannot fit and is
	// abandoned as soon as it has them (a submit selects up to hundreds of
	// thousands of files).
	entry := len(`"arn:aws:s3:::`) + len(bucket) + len(`/`) + len(base) + len(`*",`)
	maxFit := MaxSessionPolicy / entry
	narrowest := -1
	for level := n; level >= 0; level-- {
		seen := make(map[string]struct{}, 16)
		for _, p := range ps {
			var pre string
			switch {
			case level == 0:
				pre = base
			case p.ends == nil:
				pre = p.key
			default:
				pre = p.key[:p.ends[level-1]]
			}
			seen[pre] = struct{}{}
			if len(seen) > maxFit && level != n {
				break
			}
		}
		if len(seen) > maxFit && level != n {
			continue
		}
		set := make([]string, 0, len(seen))
		for p := range seen {
			set = append(set, p)
		}
		set = minimalPrefixes(set)
		if level == n {
			// The tightest level is counted in full, for the "widened
			// from" message.
			narrowest = len(set)
			if len(seen) > maxFit {
				continue
			}
		}
		policy, err := SessionPolicyFor(bucket, set)
		if err != nil {
			return Scope{}, err
		}
		if len(policy) <= MaxSessionPolicy {
			s := Scope{Bucket: bucket, Prefix: prefix, Prefixes: set, Level: level, Narrowest: narrowest, Widened: level < n}
			if level > 0 {
				s.Dimension = schema.Fields[level-1]
			}
			return s, nil
		}
	}
	return Scope{}, fmt.Errorf("the session policy for s3://%s/%s does not fit STS's %d-character limit even for the whole prefix", bucket, prefix, MaxSessionPolicy)
}

// minimalPrefixes sorts and deduplicates set and drops every prefix that
// another one in it already covers.
func minimalPrefixes(set []string) []string {
	slices.Sort(set)
	set = slices.Compact(set)
	out := set[:0]
	for _, p := range set {
		// Sorted order puts a covering prefix right before what it covers
		// (or before a run of them), so comparing with the last kept one
		// suffices.
		if len(out) > 0 && strings.HasPrefix(p, out[len(out)-1]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// SessionPolicyFor is the inline policy Mint attaches: s3:GetObject on
// keys of bucket starting with one of prefixes, and nothing else (the
// worker never lists, so no s3:ListBucket). An empty prefix grants the
// whole bucket. STS intersects it with the caller's (or role's) own
// permissions, so the credentials can never do more than this.
func SessionPolicyFor(bucket string, prefixes []string) (string, error) {
	if err := validateBucket(bucket); err != nil {
		return "", err
	}
	if len(prefixes) == 0 {
		return "", errors.New("no key prefixes to grant")
	}
	res := make([]string, len(prefixes))
	for i, p := range prefixes {
		if err := validatePrefix(p); err != nil {
			return "", err
		}
		res[i] = "arn:aws:s3:::" + bucket + "/" + p + "*"
	}
	type statement struct {
		Sid      string   `json:"Sid"`
		Effect   string   `json:"Effect"`
		Action   []string `json:"Action"`
		Resource []string `json:"Resource"`
	}
	doc := struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}{
		Version:   "2012-10-17",
		Statement: []statement{{Sid: "ReadInputs", Effect: "Allow", Action: []string{"s3:GetObject"}, Resource: res}},
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	// No HTML escaping: "<" would cost 6 characters of the 2,048.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return "", fmt.Errorf("encode session policy: %w", err)
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// SessionPolicy is SessionPolicyFor with the one prefix.
func SessionPolicy(bucket, prefix string) (string, error) {
	return SessionPolicyFor(bucket, []string{prefix})
}

// ErrOutOfScope: a task asks the worker to use credentials for another
// graph, another job image, or inputs outside what they were minted for.
var ErrOutOfScope = errors.New("the task is outside what its credentials were minted for")

// Use is what a task would do with its credentials: the graph it belongs
// to, the image it runs, and the inputs it reads (its payload's bucket,
// prefix and keys). The worker fills it from the claimed task, never from
// the envelope.
type Use struct {
	GraphID string
	Image   string
	Bucket  string
	Prefix  string
	Keys    []string
}

// Permits checks that a task may use these credentials: it belongs to the
// graph they were minted for, runs the image that graph was submitted
// with, names their bucket and prefix, and reads only keys under their
// prefixes. A CREDENTIALS value copied out of one graph's (public) task
// definition into another graph, or into a task added to the same graph
// with another image (whose code would then read the graph's inputs), is
// refused here, before any S3 request. Messages name the graph, image and
// key at fault (none is secret), never the secret.
func (c Credentials) Permits(u Use) error {
	if c.GraphID == "" {
		return fmt.Errorf("%w: they name no graph; resubmit the job with a current af", ErrOutOfScope)
	}
	if u.GraphID != c.GraphID {
		return fmt.Errorf("%w: they were minted for graph %s, and this task belongs to graph %s; a CREDENTIALS value works only in the graph af submit sealed it for, so resubmit the job with af submit", ErrOutOfScope, c.GraphID, u.GraphID)
	}
	if c.Image == "" {
		return fmt.Errorf("%w: they name no job image; resubmit the job with a current af", ErrOutOfScope)
	}
	if u.Image != c.Image {
		return fmt.Errorf("%w: they were minted for image %s, and this task runs image %s; a CREDENTIALS value works only with the image its graph was submitted with, so to run %s over these inputs, submit it with af submit", ErrOutOfScope, c.Image, u.Image, u.Image)
	}
	if u.Bucket != c.Bucket || u.Prefix != c.Prefix {
		return fmt.Errorf("%w: they were minted for s3://%s/%s, and the task reads s3://%s/%s; resubmit the job with af submit", ErrOutOfScope, c.Bucket, c.Prefix, u.Bucket, u.Prefix)
	}
	if len(c.Prefixes) == 0 {
		return fmt.Errorf("%w: they grant no key prefixes; resubmit the job with a current af", ErrOutOfScope)
	}
	for _, k := range u.Keys {
		if hasDotSegment(k) {
			// S3 keys are literal, but a server or proxy that cleans
			// paths would read another key than the one checked here.
			return fmt.Errorf("%w: input %q of graph %s has a \".\" or \"..\" segment; af submit never selects such keys", ErrOutOfScope, k, u.GraphID)
		}
		if !c.covers(k) {
			return fmt.Errorf("%w: input %q of graph %s is under none of the %d key prefixes they were minted for (the files the filter selected); resubmit the job with af submit", ErrOutOfScope, k, u.GraphID, len(c.Prefixes))
		}
	}
	return nil
}

// hasDotSegment reports whether key has a "." or ".." path segment.
func hasDotSegment(key string) bool {
	for _, seg := range strings.Split(key, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// covers reports whether key starts with one of c's prefixes. A policy
// holds at most a few dozen (MaxSessionPolicy), so a scan is cheap.
func (c Credentials) covers(key string) bool {
	for _, p := range c.Prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}
