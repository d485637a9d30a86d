package server

import (
	"errors"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/af-project/af/internal/monitor"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/users"
)

// sessionCookie names the monitor's session cookie.
const sessionCookie = "af_session"

func wireUser(u users.User) taskdef.User {
	c := u.Created
	return taskdef.User{Name: u.Name, Role: u.Role, Email: u.Email, Source: "users",
		Created: &c, Expires: u.Expires, Rotated: u.Rotated, Revoked: u.Revoked}
}

// usersErr maps the store's errors to answers.
func usersErr(err error) error {
	switch {
	case errors.Is(err, users.ErrInvalid):
		return &httpError{status: http.StatusBadRequest, code: "InvalidRequest", msg: err.Error()}
	case errors.Is(err, users.ErrExists), errors.Is(err, users.ErrRevoked):
		return &httpError{status: http.StatusConflict, code: "Conflict", msg: err.Error()}
	case errors.Is(err, users.ErrUnknown):
		return &httpError{status: http.StatusNotFound, code: "NotFound", msg: err.Error()}
	}
	return err
}

// configNamed refuses a change to a config file identity by name.
func (s *Server) configNamed(name, what string) error {
	if _, ok := s.tokens.byName(name); ok {
		return &httpError{status: http.StatusConflict, code: "Conflict",
			msg: "identity " + name + " is a token of af serve's config file: " + what + " it by editing the file's tokens: section and restarting af serve"}
	}
	return nil
}

// addUser is POST /api/v1/users (admin): a new identity and its token.
func (s *Server) addUser(w http.ResponseWriter, r *http.Request) error {
	var req taskdef.UserRequest
	if err := decode(w, r, maxSmallBody, &req); err != nil {
		return err
	}
	if err := s.configNamed(req.Name, "change"); err != nil {
		return err
	}
	if req.Email != "" {
		if _, err := mail.ParseAddress(req.Email); err != nil {
			return badRequest("email %q is not an address: %v (--email)", req.Email, err)
		}
	}
	if req.Expires != nil && !req.Expires.After(s.clock.Now()) {
		return badRequest("expires %s is not in the future (--expires)", req.Expires.Format(time.RFC3339))
	}
	u, tok, err := s.users.Add(users.User{Name: req.Name, Role: req.Role, Email: req.Email, Expires: req.Expires})
	if err != nil {
		return usersErr(err)
	}
	s.log.Info("identity added", "name", u.Name, "role", u.Role, "by", who(r).Name)
	return writeJSON(w, http.StatusOK, taskdef.UserToken{User: wireUser(u), Token: tok})
}

// listUsers is GET /api/v1/users (admin): the config file's identities
// and the stored ones, never a token.
func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) error {
	out := taskdef.UserList{Users: []taskdef.User{}}
	for _, e := range s.tokens.entries {
		out.Users = append(out.Users, taskdef.User{Name: e.name, Role: string(e.role), Source: "config"})
	}
	for _, u := range s.users.List() {
		out.Users = append(out.Users, wireUser(u))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) rotateUser(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.configNamed(name, "rotate"); err != nil {
		return err
	}
	u, tok, err := s.users.Rotate(name)
	if err != nil {
		return usersErr(err)
	}
	s.log.Info("identity's token rotated", "name", u.Name, "by", who(r).Name)
	return writeJSON(w, http.StatusOK, taskdef.UserToken{User: wireUser(u), Token: tok})
}

func (s *Server) revokeUser(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := s.configNamed(name, "revoke"); err != nil {
		return err
	}
	u, err := s.users.Revoke(name)
	if err != nil {
		return usersErr(err)
	}
	s.log.Info("identity revoked", "name", u.Name, "by", who(r).Name)
	return writeJSON(w, http.StatusOK, wireUser(u))
}

// ownerAddress is where a graph owner's email goes: the identity's email,
// else its name (a person's name is their address), else the owner string
// as given (graphs of the shared config tokens).
func (s *Server) ownerAddress(owner string) string {
	if u, ok := s.users.Get(owner); ok && u.Email != "" {
		return u.Email
	}
	return owner
}

// pageGuard serves the monitor pages to a caller who may read: signed in
// (a session or a token), holding a valid read capability for the graph
// page, or anyone with public_reads. Others are sent to sign in.
func (s *Server) pageGuard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := s.authenticate(r)
		if err != nil {
			monitor.SignIn(w, http.StatusUnauthorized, localNext(r.URL.RequestURI()), err.Error())
			return
		}
		if s.cfg.Reads() {
			h.ServeHTTP(w, r)
			return
		}
		if c := r.URL.Query().Get(capParam); c != "" && r.PathValue("id") != "" && id.Anon {
			if err := s.checkCap(c, r.PathValue("id")); err != nil {
				monitor.SignIn(w, http.StatusForbidden, localNext(r.URL.Path), err.Error())
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		if id.Anon {
			http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if _, err := r.Cookie(sessionCookie); err == nil && bearer(r) == "" {
			r.Header.Set(monitor.SessionHeader, "1")
		}
		h.ServeHTTP(w, r)
	})
}

// localNext keeps a sign-in's return address on this server: a path, not
// a URL another site could send a signed-in browser to.
func localNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/graphs"
	}
	return next
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	monitor.SignIn(w, http.StatusOK, localNext(r.URL.Query().Get("next")), "")
}

// secure says whether the session cookie is Secure: the request came over
// TLS, or people reach the server at an https monitor_url (TLS ended by a
// proxy in front).
func (s *Server) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(s.cfg.MonitorURL, "https://")
}

// signIn is POST /signin: a pasted token becomes a session (a random id
// in an HttpOnly, SameSite=Strict cookie, stored hashed with its expiry).
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			monitor.SignIn(w, http.StatusForbidden, "/graphs", "sign in from this server's own page")
			return
		}
	}
	if err := r.ParseForm(); err != nil {
		monitor.SignIn(w, http.StatusBadRequest, "/graphs", "the sign-in form could not be read: "+err.Error())
		return
	}
	next := localNext(r.PostForm.Get("next"))
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	var name string
	if n, _, ok := s.tokens.lookup(tok); ok {
		name = n
	} else {
		u, err := s.users.Lookup(tok)
		if err != nil {
			msg := "that token is not one of the server's tokens: paste the token `af users add` printed"
			if !errors.Is(err, users.ErrUnknown) {
				msg = err.Error()
			}
			monitor.SignIn(w, http.StatusUnauthorized, next, msg)
			return
		}
		name = u.Name
	}
	ttl := time.Duration(s.cfg.SessionTTL)
	sid, exp, err := s.users.NewSession(name, ttl)
	if err != nil {
		s.log.Error("sign-in", "err", err)
		monitor.SignIn(w, http.StatusInternalServerError, next, "the server could not start a session; try again")
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: sid, Path: "/", Expires: exp, MaxAge: int(ttl.Seconds()),
		HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteStrictMode,
	})
	s.log.Info("signed in", "name", name)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut is POST /signout: the session ends on the server and the
// cookie is cleared.
func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && c.Value != "" {
		if err := s.users.EndSession(c.Value); err != nil {
			s.log.Warn("sign-out", "err", err)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: s.secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}
