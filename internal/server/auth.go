package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// tokenSet checks bearer tokens. It keeps only SHA-256 hashes so a heap
// dump or a log of the struct cannot leak a token, and compares hashes in
// constant time against every entry so the time taken says nothing about
// which token (if any) was close.
type tokenSet struct {
	entries []tokenEntry
}

type tokenEntry struct {
	name string
	role Role
	hash [sha256.Size]byte
}

func newTokenSet(tokens []Token) tokenSet {
	var s tokenSet
	for _, t := range tokens {
		e := tokenEntry{name: t.Name, role: t.Role}
		if t.Token != "" {
			e.hash = sha256.Sum256([]byte(t.Token))
		} else {
			b, _ := hex.DecodeString(t.SHA256) // validated by Normalize
			copy(e.hash[:], b)
		}
		s.entries = append(s.entries, e)
	}
	return s
}

// lookup returns the entry of a presented token, or ok=false.
func (s tokenSet) lookup(token string) (name string, role Role, ok bool) {
	if token == "" {
		return "", "", false
	}
	h := sha256.Sum256([]byte(token))
	found := -1
	for i := range s.entries {
		// No early exit: every entry is compared.
		if subtle.ConstantTimeCompare(h[:], s.entries[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", "", false
	}
	return s.entries[found].name, s.entries[found].role, true
}

// bearer extracts the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const p = "bearer "
	if len(h) > len(p) && strings.EqualFold(h[:len(p)], p) {
		return strings.TrimSpace(h[len(p):])
	}
	return ""
}

// allows reports whether a token of role have may call a route needing
// role need. An empty need is a read.
func allows(have, need Role) bool {
	return need == "" || have == RoleAdmin || have == need
}
