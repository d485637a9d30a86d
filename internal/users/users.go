// Package users keeps af serve's identities: people (named by their email
// address), worker pools and services, each with a role and a bearer token
// kept only as its SHA-256 hash, an optional expiry, and a revocation
// mark. It also keeps the monitor's browser sessions (hashed ids with an
// expiry) and the server's secret that signs per-graph read capabilities.
//
// They live in buckets of their own ("users", "sessions", "usermeta")
// inside queue.db, written through bbolt directly rather than the queue's
// group-commit writer: one file to back up and one lock, the same life as
// the queue that af serve (and every test) already opens and closes, and
// an existing data dir upgrades by the buckets being created on first
// use, with the queue's own schema untouched. Users change a few times a
// day, so their rare write transactions cost the claim path nothing
// measurable. Nothing needs one transaction across users and graphs: a
// graph names its owner by the identity's name, which never changes.
package users

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Roles an identity may have. The server decides what each may do.
const (
	RoleSubmit = "submit"
	RoleWork   = "work"
	RoleRead   = "read"
	RoleAdmin  = "admin"
)

// ValidRole reports whether r is one of the roles.
func ValidRole(r string) bool {
	switch r {
	case RoleSubmit, RoleWork, RoleRead, RoleAdmin:
		return true
	}
	return false
}

// Errors of Lookup and the admin operations.
var (
	// ErrUnknown: no identity has this token (or name).
	ErrUnknown = errors.New("unknown identity")
	// ErrExpired: the identity's token is past its expiry.
	ErrExpired = errors.New("token expired")
	// ErrRevoked: the identity was revoked.
	ErrRevoked = errors.New("identity revoked")
	// ErrExists: an identity of that name exists already.
	ErrExists = errors.New("identity exists")
	// ErrInvalid: a name, role or email the store refuses.
	ErrInvalid = errors.New("invalid identity")
)

// User is one identity as stored (never its token).
type User struct {
	Name    string     `json:"name"`
	Role    string     `json:"role"`
	Email   string     `json:"email,omitempty"`
	Created time.Time  `json:"created"`
	Expires *time.Time `json:"expires,omitempty"`
	Revoked *time.Time `json:"revoked,omitempty"`
	// Rotated is when the token was last replaced.
	Rotated *time.Time `json:"rotated,omitempty"`
	Hash    []byte     `json:"hash"`
}

var (
	bUsers    = []byte("users")    // name -> User JSON
	bSessions = []byte("sessions") // sha256(session id) -> session JSON
	bMeta     = []byte("usermeta") // "secret" -> 32 random bytes
	keySecret = []byte("secret")
)

type session struct {
	Name    string    `json:"name"`
	Expires time.Time `json:"expires"`
}

// namePattern bounds identity names: an email address or a plain name,
// no spaces (audit records use names with a space for the server itself).
var namePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$`)

// ValidName checks an identity name.
func ValidName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: name %q must be 1 to 128 characters of letters, digits and . _ @ + - (a person's email address, or a pool's or service's name)", ErrInvalid, name)
	}
	return nil
}

// Store is the users file. Lookups read an in-memory copy of every
// identity's hash, refreshed after each change, so checking a token costs
// no database read.
type Store struct {
	db  *bolt.DB
	now func() time.Time

	mu     sync.RWMutex
	all    []User         // snapshot, for lookups
	byName map[string]int // index into all
	secret []byte
}

// New keeps the users in db (the queue's file: queue.Queue.Bolt), creating
// their buckets and the server secret on first use. now is the clock
// (nil: the system's).
func New(db *bolt.DB, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	s := &Store{db: db, now: now}
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bUsers, bSessions, bMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		m := tx.Bucket(bMeta)
		if v := m.Get(keySecret); len(v) == 32 {
			s.secret = append([]byte(nil), v...)
			return nil
		}
		s.secret = make([]byte, 32)
		if _, err := rand.Read(s.secret); err != nil {
			return err
		}
		return m.Put(keySecret, s.secret)
	})
	if err == nil {
		err = s.reload()
	}
	if err != nil {
		return nil, fmt.Errorf("open users: %w", err)
	}
	return s, nil
}

// Secret is the server's key for signing read capabilities: 32 random
// bytes drawn when the file was made, so capabilities survive restarts.
func (s *Store) Secret() []byte { return s.secret }

func (s *Store) reload() error {
	var all []User
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bUsers).ForEach(func(k, v []byte) error {
			var u User
			if err := json.Unmarshal(v, &u); err != nil {
				return fmt.Errorf("decode user %s: %w", k, err)
			}
			all = append(all, u)
			return nil
		})
	})
	if err != nil {
		return err
	}
	byName := make(map[string]int, len(all))
	for i, u := range all {
		byName[u.Name] = i
	}
	s.mu.Lock()
	s.all, s.byName = all, byName
	s.mu.Unlock()
	return nil
}

// NewToken returns a fresh bearer token: 32 random bytes, base64url.
func NewToken() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("users: crypto/rand failed: %v", err))
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func hash(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

// Add creates an identity and returns its token, which is not kept.
func (s *Store) Add(u User) (User, string, error) {
	if err := ValidName(u.Name); err != nil {
		return User{}, "", err
	}
	if !ValidRole(u.Role) {
		return User{}, "", fmt.Errorf("%w: role %q must be submit, work, read or admin", ErrInvalid, u.Role)
	}
	tok := NewToken()
	u.Hash = hash(tok)
	u.Created = s.now().UTC()
	u.Revoked, u.Rotated = nil, nil
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bUsers)
		if b.Get([]byte(u.Name)) != nil {
			return fmt.Errorf("%w: %s (rotate its token with `af users rotate %s`)", ErrExists, u.Name, u.Name)
		}
		raw, err := json.Marshal(u)
		if err != nil {
			return err
		}
		return b.Put([]byte(u.Name), raw)
	})
	if err != nil {
		return User{}, "", err
	}
	return u, tok, s.reload()
}

// update changes one stored identity.
func (s *Store) update(name string, fn func(*User) error) (User, error) {
	var u User
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bUsers)
		raw := b.Get([]byte(name))
		if raw == nil {
			return fmt.Errorf("%w: no identity %q (list them with `af users list`)", ErrUnknown, name)
		}
		if err := json.Unmarshal(raw, &u); err != nil {
			return err
		}
		if err := fn(&u); err != nil {
			return err
		}
		raw, err := json.Marshal(u)
		if err != nil {
			return err
		}
		return b.Put([]byte(name), raw)
	})
	if err != nil {
		return User{}, err
	}
	return u, s.reload()
}

// Rotate gives an identity a new token (the old one stops working at
// once) and returns it. A revoked identity stays revoked.
func (s *Store) Rotate(name string) (User, string, error) {
	tok := NewToken()
	u, err := s.update(name, func(u *User) error {
		if u.Revoked != nil {
			return fmt.Errorf("%w: %s was revoked; add a new identity instead", ErrRevoked, name)
		}
		u.Hash = hash(tok)
		now := s.now().UTC()
		u.Rotated = &now
		return nil
	})
	if err != nil {
		return User{}, "", err
	}
	return u, tok, nil
}

// Revoke ends an identity: its token stops working and its sessions with
// it. The record stays, so its name keeps meaning who made the changes it
// made, and the token is told "revoked" rather than "unknown".
func (s *Store) Revoke(name string) (User, error) {
	u, err := s.update(name, func(u *User) error {
		if u.Revoked == nil {
			now := s.now().UTC()
			u.Revoked = &now
		}
		return nil
	})
	if err != nil {
		return User{}, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSessions)
		var dead [][]byte
		_ = b.ForEach(func(k, v []byte) error {
			var ss session
			if json.Unmarshal(v, &ss) == nil && ss.Name == name {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return u, err
}

// List returns every identity, by name, without hashes.
func (s *Store) List() []User {
	s.mu.RLock()
	out := make([]User, len(s.all))
	copy(out, s.all)
	s.mu.RUnlock()
	for i := range out {
		out[i].Hash = nil
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Get returns the identity called name.
func (s *Store) Get(name string) (User, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.byName[name]
	if !ok {
		return User{}, false
	}
	u := s.all[i]
	u.Hash = nil
	return u, true
}

// Lookup returns the identity whose token is tok: ErrUnknown when none,
// ErrRevoked or ErrExpired (with the identity) when it no longer works.
// Every hash is compared in constant time, with no early exit, so the
// time taken says nothing about which token was close.
func (s *Store) Lookup(tok string) (User, error) {
	if tok == "" {
		return User{}, ErrUnknown
	}
	h := hash(tok)
	s.mu.RLock()
	found := -1
	for i := range s.all {
		if subtle.ConstantTimeCompare(h, s.all[i].Hash) == 1 {
			found = i
		}
	}
	var u User
	if found >= 0 {
		u = s.all[found]
	}
	s.mu.RUnlock()
	if found < 0 {
		return User{}, ErrUnknown
	}
	u.Hash = nil
	return u, s.usable(u)
}

// usable says whether u may act now.
func (s *Store) usable(u User) error {
	if u.Revoked != nil {
		return fmt.Errorf("%w: %s was revoked at %s; ask an admin for a new identity", ErrRevoked, u.Name, u.Revoked.Format(time.RFC3339))
	}
	if u.Expires != nil && !s.now().Before(*u.Expires) {
		return fmt.Errorf("%w: the token of %s expired at %s; ask an admin to rotate it (`af users rotate %s`)", ErrExpired, u.Name, u.Expires.Format(time.RFC3339), u.Name)
	}
	return nil
}

// NewSession starts a browser session for name, valid for ttl, and
// returns its id (32 random bytes, base64url). Only the id's SHA-256 is
// stored.
func (s *Store) NewSession(name string, ttl time.Duration) (string, time.Time, error) {
	id := NewToken()
	exp := s.now().Add(ttl).UTC()
	raw, err := json.Marshal(session{Name: name, Expires: exp})
	if err != nil {
		return "", time.Time{}, err
	}
	now := s.now()
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bSessions)
		// Drop expired sessions as new ones come: the bucket stays the
		// size of the live ones.
		var dead [][]byte
		_ = b.ForEach(func(k, v []byte) error {
			var ss session
			if json.Unmarshal(v, &ss) != nil || !now.Before(ss.Expires) {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return b.Put(hash(id), raw)
	})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("new session: %w", err)
	}
	return id, exp, nil
}

// Session returns the name of a live session's identity. A session past
// its expiry, or whose identity is gone or no longer usable, is
// ErrExpired or the identity's error.
func (s *Store) Session(id string) (string, error) {
	if id == "" {
		return "", ErrUnknown
	}
	var ss session
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bSessions).Get(hash(id))
		if v == nil {
			return ErrUnknown
		}
		return json.Unmarshal(v, &ss)
	})
	if err != nil {
		return "", err
	}
	if !s.now().Before(ss.Expires) {
		return "", fmt.Errorf("%w: the session ended at %s; sign in again", ErrExpired, ss.Expires.Format(time.RFC3339))
	}
	return ss.Name, nil
}

// EndSession deletes a session (sign-out).
func (s *Store) EndSession(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bSessions).Delete(hash(id)) })
}
