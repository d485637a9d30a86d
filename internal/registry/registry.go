// Package registry resolves job image references against a container
// registry's HTTP API v2 and reads the credentials for it from Docker's
// usual configuration. af submit uses it to turn a tag into the digest the
// tasks pin; the worker uses Config to give the Docker engine the same
// credentials when it pulls (the pull itself is internal/runner's).
//
// Credentials come from the `auths` of $DOCKER_CONFIG/config.json, or
// ~/.docker/config.json when DOCKER_CONFIG is unset: what `docker login`
// writes when no credential helper is configured. Credential helpers
// (credsStore, credHelpers) are not run; a registry whose credentials live
// only in one is met as one that asks for credentials, and the message says
// so. A registry on a loopback address (127.0.0.0/8, ::1, localhost) is
// asked over https first and then plain http, as the Docker engine treats
// such registries as insecure-allowed; any other only over https.
package registry

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/reference"
)

// Ref is a parsed image reference.
type Ref struct {
	// Domain is the registry host (docker.io for Docker Hub).
	Domain string
	// Path is the repository path in the registry (library/x for Hub's
	// official images).
	Path string
	// Name is the familiar repository name, as Docker shows it
	// (127.0.0.1:5000/af/os-count, af/os-count).
	Name string
	// Tag and Digest are as given; Tag is "latest" when neither is.
	Tag, Digest string
	// ExplicitDomain reports whether the reference names its registry
	// (a first component with a dot, a colon or localhost), as opposed to
	// Docker Hub by default, which is how af tells an image from a
	// registry from one loaded by hand.
	ExplicitDomain bool
}

// Parse parses an image reference as Docker does.
func Parse(s string) (Ref, error) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Ref{}, fmt.Errorf("image %q is not an image reference (want NAME[:TAG] or NAME@sha256:DIGEST): %w", s, err)
	}
	r := Ref{Domain: reference.Domain(n), Path: reference.Path(n), Name: reference.FamiliarName(n)}
	if t, ok := n.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := n.(reference.Digested); ok {
		r.Digest = d.Digest().String()
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = "latest"
	}
	first, _, found := strings.Cut(s, "/")
	r.ExplicitDomain = found && (strings.ContainsAny(first, ".:") || first == "localhost")
	return r, nil
}

// Pinned is the reference by digest: NAME@sha256:….
func (r Ref) Pinned(digest string) string { return r.Name + "@" + digest }

// Auth is one registry's credentials.
type Auth struct {
	Username, Password string
	// IdentityToken is an OAuth refresh token some registries hand out
	// at `docker login` instead of keeping the password.
	IdentityToken string
	// ServerAddress is the config's key they were found under.
	ServerAddress string
}

// Empty reports whether there are no credentials.
func (a Auth) Empty() bool { return a.Username == "" && a.Password == "" && a.IdentityToken == "" }

// EngineHeader is the credentials in the Docker engine's X-Registry-Auth
// form (base64url of its AuthConfig JSON), for an image pull; "" when
// there are none.
func (a Auth) EngineHeader() string {
	if a.Empty() {
		return ""
	}
	b, _ := json.Marshal(struct {
		Username      string `json:"username,omitempty"`
		Password      string `json:"password,omitempty"`
		ServerAddress string `json:"serveraddress,omitempty"`
		IdentityToken string `json:"identitytoken,omitempty"`
	}{a.Username, a.Password, a.ServerAddress, a.IdentityToken})
	return base64.URLEncoding.EncodeToString(b)
}

// Config is the registry credentials of Docker's config file.
type Config struct {
	// Path is the file read ("" when none exists).
	Path  string
	auths map[string]Auth
	// helpers names the credential helpers the file configures, for
	// messages.
	helpers bool
}

// DefaultConfigDir is $DOCKER_CONFIG, or ~/.docker.
func DefaultConfigDir() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker")
}

// maxConfigBytes bounds the config file read.
const maxConfigBytes = 4 << 20

// LoadConfig reads dir/config.json (dir "" is DefaultConfigDir). A missing
// file is an empty configuration, not an error: anonymous access.
func LoadConfig(dir string) (*Config, error) {
	if dir == "" {
		dir = DefaultConfigDir()
	}
	c := &Config{auths: map[string]Auth{}}
	if dir == "" {
		return c, nil
	}
	path := filepath.Join(dir, "config.json")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the Docker config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the Docker config %s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("the Docker config %s is over %d bytes", path, maxConfigBytes)
	}
	var file struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
		CredsStore  string            `json:"credsStore"`
		CredHelpers map[string]string `json:"credHelpers"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("the Docker config %s is not valid JSON: %w (fix or remove it, then `docker login` again)", path, err)
	}
	c.Path = path
	c.helpers = file.CredsStore != "" || len(file.CredHelpers) > 0
	for key, e := range file.Auths {
		a := Auth{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken, ServerAddress: key}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				return nil, fmt.Errorf("the Docker config %s: the auth of %s is not base64: %w (run `docker login %s` again)", path, key, err, key)
			}
			u, p, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("the Docker config %s: the auth of %s is not user:password (run `docker login %s` again)", path, key, key)
			}
			a.Username, a.Password = u, p
		}
		c.auths[hostOf(key)] = a
	}
	return c, nil
}

// hostOf turns a config key (host, https://host/v1/, …) into a host.
func hostOf(key string) string {
	k := key
	if i := strings.Index(k, "://"); i >= 0 {
		k = k[i+3:]
	}
	k, _, _ = strings.Cut(k, "/")
	switch k {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io"
	}
	return k
}

// For returns the credentials for a registry host (Ref.Domain).
func (c *Config) For(domain string) Auth {
	if c == nil {
		return Auth{}
	}
	return c.auths[hostOf(domain)]
}

// Client asks registries for manifests' digests.
type Client struct {
	// HTTP is the client for every request (default: one with a 30 s
	// timeout that follows no redirect to another scheme's host).
	HTTP   *http.Client
	Config *Config
}

// ErrNotFound is a repository or tag the registry does not have.
var ErrNotFound = errors.New("not in the registry")

// ErrUnauthorized is a registry that refused the credentials (or asked for
// some and had none).
var ErrUnauthorized = errors.New("the registry refused access")

// manifestTypes are the manifests af accepts, an index first: the digest
// Docker pins is the one the registry serves for these.
var manifestTypes = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
}, ", ")

// maxManifestBytes bounds a manifest read when the registry sends no
// Docker-Content-Digest header.
const maxManifestBytes = 4 << 20

// Digest returns the digest (sha256:…) of the manifest the registry serves
// for the reference's tag. A reference with a digest is answered as is.
func (c *Client) Digest(ctx context.Context, r Ref) (string, error) {
	if r.Digest != "" {
		return r.Digest, nil
	}
	var lastErr error
	for _, scheme := range schemes(r.Domain) {
		d, err := c.digest(ctx, scheme, r)
		if err == nil {
			return d, nil
		}
		var te *transportError
		if !errors.As(err, &te) {
			return "", err
		}
		lastErr = err
	}
	return "", lastErr
}

// transportError is a request that got no HTTP answer.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// schemes are the schemes a registry is asked over: https, and for a
// loopback one then http (Docker's insecure-allowed 127.0.0.0/8).
func schemes(domain string) []string {
	if IsLoopback(domain) {
		return []string{"https", "http"}
	}
	return []string{"https"}
}

// IsLoopback reports whether a registry host (with an optional port) is
// on this machine.
func IsLoopback(domain string) bool {
	h := domain
	if host, _, err := net.SplitHostPort(domain); err == nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return &http.Client{Timeout: 30 * time.Second}
}

func apiHost(domain string) string {
	if domain == "docker.io" {
		return "registry-1.docker.io"
	}
	return domain
}

func (c *Client) digest(ctx context.Context, scheme string, r Ref) (string, error) {
	u := scheme + "://" + apiHost(r.Domain) + "/v2/" + r.Path + "/manifests/" + url.PathEscape(r.Tag)
	auth := c.Config.For(r.Domain)
	resp, err := c.get(ctx, u, "")
	if err != nil {
		return "", err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		challenge := resp.Header.Get("WWW-Authenticate")
		resp.Body.Close()
		authz, err := c.authorize(ctx, challenge, auth, r)
		if err != nil {
			return "", err
		}
		if resp, err = c.get(ctx, u, authz); err != nil {
			return "", err
		}
	}
	defer resp.Body.Close()
	where := fmt.Sprintf("%s:%s at %s", r.Name, r.Tag, r.Domain)
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", fmt.Errorf("%s: %w: push it there (docker push %s:%s) or check the name and tag", where, ErrNotFound, r.Name, r.Tag)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", c.unauthorized(where, r.Domain, auth, resp.Status)
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%s: the registry answered %s", where, resp.Status)
	}
	if d := resp.Header.Get("Docker-Content-Digest"); validDigest(d) {
		return d, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	if err != nil {
		return "", fmt.Errorf("%s: read the manifest: %w", where, err)
	}
	if len(body) > maxManifestBytes {
		return "", fmt.Errorf("%s: the manifest is over %d bytes", where, maxManifestBytes)
	}
	sum := sha256.Sum256(body)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

func validDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

func (c *Client) unauthorized(where, domain string, auth Auth, status string) error {
	how := fmt.Sprintf("run `docker login %s` (credentials are read from the auths of %s)", domain, c.configName())
	if auth.Empty() && c.Config != nil && c.Config.helpers {
		how = fmt.Sprintf("%s configures a credential helper, which af does not run: put the registry's credentials in its auths (e.g. `docker login` with DOCKER_CONFIG pointing at a directory without the helper)", c.configName())
	}
	if auth.Empty() {
		return fmt.Errorf("%s: %w (%s) and there are no credentials for %s: %s", where, ErrUnauthorized, status, domain, how)
	}
	return fmt.Errorf("%s: %w (%s) with the credentials of %s for %s: %s", where, ErrUnauthorized, status, c.configName(), domain, how)
}

func (c *Client) configName() string {
	if c.Config != nil && c.Config.Path != "" {
		return c.Config.Path
	}
	return filepath.Join(DefaultConfigDir(), "config.json")
}

func (c *Client) get(ctx context.Context, u, authz string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("registry request: %w", err)
	}
	req.Header.Set("Accept", manifestTypes)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, &transportError{fmt.Errorf("ask the registry: %w", err)}
	}
	return resp, nil
}

// authorize answers a 401's challenge: Basic with the credentials, or
// Bearer with a token from the realm it names (fetched with them).
func (c *Client) authorize(ctx context.Context, challenge string, auth Auth, r Ref) (string, error) {
	where := fmt.Sprintf("%s:%s at %s", r.Name, r.Tag, r.Domain)
	scheme, params := parseChallenge(challenge)
	switch strings.ToLower(scheme) {
	case "basic":
		if auth.Username == "" && auth.Password == "" {
			return "", c.unauthorized(where, r.Domain, auth, "401 Unauthorized")
		}
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(auth.Username+":"+auth.Password)), nil
	case "bearer":
		realm := params["realm"]
		ru, err := url.Parse(realm)
		if err != nil || (ru.Scheme != "https" && !(ru.Scheme == "http" && IsLoopback(ru.Host))) {
			return "", fmt.Errorf("%s: the registry's token realm %q is not an https URL", where, realm)
		}
		q := ru.Query()
		if s := params["service"]; s != "" {
			q.Set("service", s)
		}
		scope := params["scope"]
		if scope == "" {
			scope = "repository:" + r.Path + ":pull"
		}
		q.Set("scope", scope)
		ru.RawQuery = q.Encode()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ru.String(), nil)
		if err != nil {
			return "", fmt.Errorf("registry token request: %w", err)
		}
		if auth.Username != "" || auth.Password != "" {
			req.SetBasicAuth(auth.Username, auth.Password)
		}
		resp, err := c.httpClient().Do(req)
		if err != nil {
			return "", fmt.Errorf("%s: get a token from %s: %w", where, ru.Host, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", c.unauthorized(where, r.Domain, auth, "token "+resp.Status)
		}
		var tok struct {
			Token       string `json:"token"`
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil {
			return "", fmt.Errorf("%s: the token answer is not JSON: %w", where, err)
		}
		t := tok.Token
		if t == "" {
			t = tok.AccessToken
		}
		if t == "" {
			return "", fmt.Errorf("%s: the registry's token answer holds no token", where)
		}
		return "Bearer " + t, nil
	}
	return "", fmt.Errorf("%s: the registry asks for %q authentication, which af does not speak (Basic or Bearer)", where, scheme)
}

// parseChallenge splits `Bearer realm="…",service="…"`.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				params[k] = v[1:]
				break
			}
			params[k] = v[1 : end+1]
			rest = v[end+2:]
		} else {
			val, r, _ := strings.Cut(v, ",")
			params[k] = strings.TrimSpace(val)
			rest = r
		}
	}
	return scheme, params
}
