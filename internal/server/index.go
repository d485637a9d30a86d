package server

import (
	"net/http"
)

// indexDB is the opened file index. Until internal/index is wired in the
// index routes answer 503.
type indexDB interface{ Close() error }

func (s *Server) closeIndex() {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	if s.index != nil {
		_ = s.index.Close()
		s.index = nil
	}
}

func indexUnavailable() error {
	return &httpError{status: http.StatusServiceUnavailable, code: "IndexUnavailable", msg: "this server has no file index yet"}
}

func (s *Server) indexQuery(w http.ResponseWriter, r *http.Request) error { return indexUnavailable() }
func (s *Server) indexBuild(w http.ResponseWriter, r *http.Request) error { return indexUnavailable() }
func (s *Server) indexStats(w http.ResponseWriter, r *http.Request) error { return indexUnavailable() }
