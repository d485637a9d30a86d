package users

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func open(t *testing.T) (*Store, *clock, *bolt.DB) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "queue.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s, err := New(db, c.now)
	if err != nil {
		t.Fatal(err)
	}
	return s, c, db
}

// TestLookupRotateRevokeExpire: a token finds its identity; a rotated
// one stops at once; a revoked or expired one says so; none is stored.
func TestLookupRotateRevokeExpire(t *testing.T) {
	t.Parallel()
	s, c, db := open(t)
	exp := c.now().Add(time.Hour)
	_, alice, err := s.Add(User{Name: "alice@example.com", Role: RoleSubmit})
	if err != nil {
		t.Fatal(err)
	}
	_, bob, err := s.Add(User{Name: "bob@example.com", Role: RoleRead, Expires: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Add(User{Name: "alice@example.com", Role: RoleSubmit}); !errors.Is(err, ErrExists) {
		t.Errorf("adding alice twice: %v", err)
	}
	for _, bad := range []User{{Name: "has space", Role: RoleSubmit}, {Name: "", Role: RoleSubmit}, {Name: "x", Role: "root"}} {
		if _, _, err := s.Add(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Add(%+v): %v, want ErrInvalid", bad, err)
		}
	}
	newAlice := ""
	tests := []struct {
		name  string
		step  func()
		tok   func() string
		want  error
		found string
	}{
		{"alice", nil, func() string { return alice }, nil, "alice@example.com"},
		{"bob", nil, func() string { return bob }, nil, "bob@example.com"},
		{"unknown", nil, func() string { return "x" + alice }, ErrUnknown, ""},
		{"empty", nil, func() string { return "" }, ErrUnknown, ""},
		{"rotated away", func() {
			var err error
			if _, newAlice, err = s.Rotate("alice@example.com"); err != nil {
				t.Fatal(err)
			}
		}, func() string { return alice }, ErrUnknown, ""},
		{"rotated in", nil, func() string { return newAlice }, nil, "alice@example.com"},
		{"expired", func() { c.add(time.Hour) }, func() string { return bob }, ErrExpired, "bob@example.com"},
		{"revoked", func() {
			if _, err := s.Revoke("alice@example.com"); err != nil {
				t.Fatal(err)
			}
		}, func() string { return newAlice }, ErrRevoked, "alice@example.com"},
	}
	for _, tc := range tests {
		if tc.step != nil {
			tc.step()
		}
		u, err := s.Lookup(tc.tok())
		if !errors.Is(err, tc.want) || u.Name != tc.found {
			t.Errorf("%s: %q %v, want %q %v", tc.name, u.Name, err, tc.found, tc.want)
		}
	}
	if _, _, err := s.Rotate("alice@example.com"); !errors.Is(err, ErrRevoked) {
		t.Errorf("rotating a revoked identity: %v", err)
	}
	if _, _, err := s.Rotate("nobody"); !errors.Is(err, ErrUnknown) {
		t.Errorf("rotating nobody: %v", err)
	}
	// Neither token is in the file; List shows no hash.
	_ = db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return b.ForEach(func(k, v []byte) error {
				for _, tok := range []string{alice, newAlice, bob} {
					if strings.Contains(string(k)+string(v), tok) {
						t.Errorf("bucket %s holds a token", name)
					}
				}
				return nil
			})
		})
	})
	for _, u := range s.List() {
		if u.Hash != nil {
			t.Errorf("List shows %s's hash", u.Name)
		}
	}
	// A second store on the same file sees the same identities and secret.
	s2, err := New(db, c.now)
	if err != nil {
		t.Fatal(err)
	}
	if string(s2.Secret()) != string(s.Secret()) || len(s.Secret()) != 32 || len(s2.List()) != 2 {
		t.Errorf("reopened: secret kept %v, %d identities", string(s2.Secret()) == string(s.Secret()), len(s2.List()))
	}
}

// TestSessions: a session names its identity until it expires or is
// ended, and a revoked identity's sessions end with it.
func TestSessions(t *testing.T) {
	t.Parallel()
	s, c, _ := open(t)
	if _, _, err := s.Add(User{Name: "alice@example.com", Role: RoleSubmit}); err != nil {
		t.Fatal(err)
	}
	a, _, err := s.NewSession("alice@example.com", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := s.NewSession("alice@example.com", 3*time.Hour)
	d, _, _ := s.NewSession("admin", 3*time.Hour)
	if n, err := s.Session(a); err != nil || n != "alice@example.com" {
		t.Errorf("session: %q %v", n, err)
	}
	if _, err := s.Session("x" + a); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown session: %v", err)
	}
	c.add(time.Hour)
	if _, err := s.Session(a); !errors.Is(err, ErrExpired) {
		t.Errorf("expired session: %v", err)
	}
	if err := s.EndSession(d); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(d); !errors.Is(err, ErrUnknown) {
		t.Errorf("ended session: %v", err)
	}
	if _, err := s.Revoke("alice@example.com"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(b); !errors.Is(err, ErrUnknown) {
		t.Errorf("session of a revoked identity: %v", err)
	}
}
