package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/users"
)

// tokenSet checks the config file's bearer tokens. It keeps only SHA-256
// hashes so a heap dump or a log of the struct cannot leak a token, and
// compares hashes in constant time against every entry so the time taken
// says nothing about which token (if any) was close.
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

// byName returns the config entry called name.
func (s tokenSet) byName(name string) (tokenEntry, bool) {
	for _, e := range s.entries {
		if e.name == name {
			return e, true
		}
	}
	return tokenEntry{}, false
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

// allows reports whether an identity of role have may call a route
// needing role need. Admin may call every route.
func allows(have, need Role) bool {
	return have == RoleAdmin || have == need
}

// Access kinds of a route besides a role.
const (
	// accessRead is a read of one graph's data (a graph, a task, an
	// artifact): the handler checks the caller against the graph's owner
	// (canRead), or the read capability of an emailed link.
	accessRead Role = ""
	// accessAuth is any identity (the index, the pool key).
	accessAuth Role = "@auth"
	// accessMetrics is /metrics: admin and read, or metrics_public.
	accessMetrics Role = "@metrics"
)

// identity is who made a request.
type identity struct {
	Name  string
	Role  Role
	Email string
	// Legacy marks a token of the config file: a shared role token
	// (admin, submit, work) kept working after identities came.
	Legacy bool
	// Anon is a request that presented no identity (a read capability
	// may still grant it one graph).
	Anon bool
}

type identityKey struct{}

func withIdentity(r *http.Request, id identity) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
}

// who is the request's identity (anonymous when authorize set none).
func who(r *http.Request) identity {
	id, ok := r.Context().Value(identityKey{}).(identity)
	if !ok {
		return identity{Anon: true}
	}
	return id
}

// errAuth is a 401 saying what to fix.
func errAuth(msg string) error {
	return &httpError{status: http.StatusUnauthorized, code: "Unauthorized", msg: msg}
}

func forbidden(format string, args ...any) error {
	return &httpError{status: http.StatusForbidden, code: "Forbidden", msg: fmt.Sprintf(format, args...)}
}

// authenticate finds the request's identity: a bearer token (the config
// file's or a user's), else, for GET and HEAD only, the monitor's session
// cookie, else anonymous. A token that no longer works is an error saying
// why (expired, revoked).
func (s *Server) authenticate(r *http.Request) (identity, error) {
	if tok := bearer(r); tok != "" {
		if name, role, ok := s.tokens.lookup(tok); ok {
			return identity{Name: name, Role: role, Legacy: true}, nil
		}
		u, err := s.users.Lookup(tok)
		switch {
		case errors.Is(err, users.ErrUnknown):
			return identity{}, errAuth("the bearer token is not one of the server's tokens: check --token or AF_TOKEN (an admin makes one with `af users add`)")
		case err != nil:
			return identity{}, errAuth("the bearer token no longer works: " + err.Error())
		}
		return userIdentity(u), nil
	}
	// The cookie authenticates reads only: every change needs a bearer
	// token, so a page another site makes the browser load can change
	// nothing (SameSite=Strict keeps the cookie off it besides).
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
			name, err := s.users.Session(c.Value)
			if err != nil {
				return identity{Anon: true}, nil // signed out or expired: sign in again
			}
			return s.identityByName(name)
		}
	}
	return identity{Anon: true}, nil
}

// identityByName resolves a session's identity, checking it still works.
func (s *Server) identityByName(name string) (identity, error) {
	if e, ok := s.tokens.byName(name); ok {
		return identity{Name: e.name, Role: e.role, Legacy: true}, nil
	}
	u, ok := s.users.Get(name)
	if !ok {
		return identity{Anon: true}, nil
	}
	if u.Revoked != nil {
		return identity{Anon: true}, nil
	}
	if u.Expires != nil && !s.clock.Now().Before(*u.Expires) {
		return identity{Anon: true}, nil
	}
	return userIdentity(u), nil
}

func userIdentity(u users.User) identity {
	return identity{Name: u.Name, Role: Role(u.Role), Email: u.Email}
}

// authorize finds the caller and checks the route's need; it writes the
// 401 or 403 and returns false when the caller may not go on.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, need Role) (*http.Request, bool) {
	id, err := s.authenticate(r)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="af"`)
		s.writeError(w, r, err)
		return r, false
	}
	r = withIdentity(r, id)
	if !id.Anon {
		setTokenName(w, id.Name)
	}
	switch need {
	case accessRead:
		// The handler checks the graph (canRead); an anonymous caller
		// gets there only with public_reads or a read capability.
		if id.Anon && !s.cfg.Reads() && r.URL.Query().Get(capParam) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="af"`)
			s.writeError(w, r, errAuth("reads need an identity: set --token or AF_TOKEN, or sign in to the monitor at /signin (the server's public_reads: true opens reads to all)"))
			return r, false
		}
		return r, true
	case accessAuth:
		if id.Anon && !s.cfg.Reads() {
			w.Header().Set("WWW-Authenticate", `Bearer realm="af"`)
			s.writeError(w, r, errAuth("this route needs an identity: set --token or AF_TOKEN"))
			return r, false
		}
		return r, true
	case accessMetrics:
		if s.cfg.Reads() || s.cfg.MetricsOpen() {
			return r, true
		}
		if id.Anon {
			w.Header().Set("WWW-Authenticate", `Bearer realm="af"`)
			s.writeError(w, r, errAuth("/metrics needs an admin or read identity: give the scraper a read identity's bearer token (AF_TOKEN), or set metrics_public: true in the server's config"))
			return r, false
		}
		if id.Role != RoleAdmin && id.Role != RoleRead {
			s.writeError(w, r, forbidden("%s has role %s; /metrics needs role read or admin (or metrics_public: true in the server's config)", id.Name, id.Role))
			return r, false
		}
		return r, true
	}
	if id.Anon {
		w.Header().Set("WWW-Authenticate", `Bearer realm="af"`)
		s.writeError(w, r, errAuth("this route needs a bearer token: set --token or AF_TOKEN"))
		return r, false
	}
	if !allows(id.Role, need) {
		s.writeError(w, r, forbidden("%q has role %s; this route needs role %s (or admin)", id.Name, id.Role, need))
		return r, false
	}
	return r, true
}

// registered reports whether name is an identity of the users store (not
// a config token): a graph such an identity owns is out of the shared
// config tokens' reach.
func (s *Server) registered(name string) bool {
	_, ok := s.users.Get(name)
	return ok
}

// sharedSubmit is a config file's submit token: the shared token of
// before identities. It keeps what it could do to the graphs of owners
// that are not registered identities (old scripts pass --owner as free
// text), and nothing over a registered identity's graphs.
func (id identity) sharedSubmit() bool { return id.Legacy && id.Role == RoleSubmit }

// mayChange is the ownership rule of every change to an existing graph
// (cancel, rerun, adding a task): its owner, an admin, or the shared
// submit token for a graph no registered identity owns.
func (s *Server) mayChange(id identity, graphID, owner string) error {
	if s.owns(id, owner) {
		return nil
	}
	return queue.Forbidden("graph %s is owned by %s; only its owner or an admin may change it (you are %s)", graphID, owner, id.Name)
}

// owns is the ownership rule of graphs and schedules alike: the owner, an
// admin, or the shared submit token for an owner that is no registered
// identity.
func (s *Server) owns(id identity, owner string) bool {
	return id.Role == RoleAdmin || owner == id.Name || (id.sharedSubmit() && !s.registered(owner))
}

// actor is the queue's view of the caller: its name for the audit trail
// and the ownership rule, asked in the change's transaction.
func (s *Server) actor(r *http.Request) context.Context {
	id := who(r)
	return queue.WithActor(r.Context(), queue.Actor{
		Name:      id.Name,
		MayChange: func(graphID, owner string) error { return s.mayChange(id, graphID, owner) },
	})
}

// ownerFor decides the owner of a graph the caller creates: given when
// set (only an admin may name another identity, or the shared submit
// token an owner that is no registered identity), else the caller.
func (s *Server) ownerFor(id identity, given string) (string, error) {
	switch {
	case given == "", given == id.Name:
		return id.Name, nil
	case id.Role == RoleAdmin:
		return given, nil
	case id.sharedSubmit() && !s.registered(given):
		return given, nil
	}
	return "", forbidden("owner %q is not you (%s): only an admin creates a graph on behalf of another identity; drop --owner (the owner defaults to the identity of your token)", given, id.Name)
}

// canRead checks a read of graph graphID (owned by owner): public reads,
// the graph's read capability, an admin or read identity, its owner, or
// the shared submit token for a graph no registered identity owns.
func (s *Server) canRead(r *http.Request, graphID, owner string) error {
	if s.cfg.Reads() {
		return nil
	}
	id := who(r)
	if c := r.URL.Query().Get(capParam); c != "" {
		err := s.checkCap(c, graphID)
		if err == nil {
			return nil
		}
		if id.Anon {
			return err
		}
		// A signed-in reader with a stale link reads as who they are.
	}
	switch {
	case id.Anon:
		return errAuth("reads need an identity: set --token or AF_TOKEN, or sign in to the monitor at /signin")
	case id.Role == RoleRead, s.owns(id, owner):
		return nil
	case id.Role == RoleWork:
		return forbidden("a worker identity (%s) reads only the inputs of a run it holds (the %s and %s headers)", id.Name, taskdef.ReaderRunHeader, taskdef.RunTokenHeader)
	}
	return forbidden("graph %s is owned by %s; %s reads only its own graphs (a read or admin identity reads every graph)", graphID, owner, id.Name)
}

// canReadGraph is canRead for a graph route.
func (s *Server) canReadGraph(r *http.Request, graphID string) error {
	if s.cfg.Reads() {
		return nil
	}
	owner, err := s.q.GraphOwner(r.Context(), graphID)
	if err != nil {
		return err
	}
	return s.canRead(r, graphID, owner)
}

// canReadTask is canRead for a task route (status, definition,
// artifacts). A worker identity reads for a run it holds: the reading run
// in the ReaderRunHeader header with its token, and the task read that
// run's own task or one of its dependencies.
func (s *Server) canReadTask(r *http.Request, taskID string) error {
	if s.cfg.Reads() {
		return nil
	}
	id := who(r)
	if id.Role == RoleWork && r.URL.Query().Get(capParam) == "" {
		rr := r.Header.Get(taskdef.ReaderRunHeader)
		if rr == "" {
			return forbidden("a worker identity (%s) reads only for a run it holds: send the %s header (TASKID/RUNID) with that run's token in %s", id.Name, taskdef.ReaderRunHeader, taskdef.RunTokenHeader)
		}
		reader, runS, _ := strings.Cut(rr, "/")
		run, err := strconv.Atoi(runS)
		if err != nil || run < 0 {
			return badRequest("%s %q must be TASKID/RUNID", taskdef.ReaderRunHeader, rr)
		}
		return s.q.AuthorizeInputRead(r.Context(), reader, run, runToken(r), taskID)
	}
	graphID, owner, err := s.q.TaskOwner(r.Context(), taskID)
	if err != nil {
		return err
	}
	return s.canRead(r, graphID, owner)
}

// listKeep is which graphs the caller's list shows (nil: all).
func (s *Server) listKeep(r *http.Request) (func(owner string) bool, error) {
	if s.cfg.Reads() {
		return nil, nil
	}
	id := who(r)
	switch {
	case id.Anon:
		return nil, errAuth("listing graphs needs an identity: set --token or AF_TOKEN, or sign in at /signin")
	case id.Role == RoleAdmin, id.Role == RoleRead:
		return nil, nil
	case id.Role == RoleWork:
		return nil, forbidden("a worker identity (%s) lists no graphs", id.Name)
	case id.sharedSubmit():
		return func(owner string) bool { return !s.registered(owner) }, nil
	}
	return func(owner string) bool { return owner == id.Name }, nil
}
