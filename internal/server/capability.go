package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/af-project/af/internal/taskdef"
)

// capParam is the query parameter of a per-graph read capability: the
// emailed links carry it so they open without signing in.
const capParam = "cap"

// A read capability is "<expiry unix seconds>.<HMAC-SHA256>" over the
// graph id and the expiry, keyed by the server's secret (kept in
// queue.db's usermeta bucket, drawn on first start). It grants reading
// that one graph (its page, status, tasks, logs and results) until the
// expiry, which is the graph's own (its last task's expires): nothing
// else, and nothing after. It cannot be revoked short of the secret; it
// is what an emailed link is, so whoever the owner forwards the email to
// reads the graph too.
func (s *Server) capability(graphID string, expires time.Time) string {
	exp := strconv.FormatInt(expires.Unix(), 10)
	return exp + "." + s.capMAC(graphID, exp)
}

func (s *Server) capMAC(graphID, exp string) string {
	m := hmac.New(sha256.New, s.users.Secret())
	m.Write([]byte("af read graph\x00"))
	m.Write([]byte(graphID))
	m.Write([]byte{0})
	m.Write([]byte(exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkCap verifies a capability for graphID.
func (s *Server) checkCap(c, graphID string) error {
	exp, mac, ok := strings.Cut(c, ".")
	n, err := strconv.ParseInt(exp, 10, 64)
	if !ok || err != nil || !hmac.Equal([]byte(mac), []byte(s.capMAC(graphID, exp))) {
		return forbidden("the link's read capability (?%s=) is not valid for graph %s: open the link from the email as it came, or sign in at /signin", capParam, graphID)
	}
	if !s.clock.Now().Before(time.Unix(n, 0)) {
		return forbidden("the link's read capability expired at %s, with graph %s: sign in at /signin to read it", time.Unix(n, 0).UTC().Format(time.RFC3339), graphID)
	}
	return nil
}

// graphExpires is when a graph expires: its last task's expiry.
func graphExpires(gs taskdef.GraphStatus) time.Time {
	var t time.Time
	for _, ts := range gs.Tasks {
		if ts.Expires.After(t) {
			t = ts.Expires
		}
	}
	return t
}

// capQuery is the query an emailed link of the graph carries.
func (s *Server) capQuery(gs taskdef.GraphStatus) string {
	exp := graphExpires(gs)
	if exp.IsZero() {
		return ""
	}
	return capParam + "=" + url.QueryEscape(s.capability(gs.GraphID, exp))
}
