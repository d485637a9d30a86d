package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/taskdef"
)

// putProvenance records what a graph was made from (PUT
// /api/v1/graphs/{id}/provenance): by whoever may change the graph, once,
// after the graph. The graph's own create is left as lean as it was; the
// record is a few kilobytes, bounded at maxProvenanceBody.
func (s *Server) putProvenance(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var p taskdef.Provenance
	if err := decode(w, r, maxProvenanceBody, &p); err != nil {
		return err
	}
	switch {
	case p.GraphID != id:
		return badRequest("graphId %q is not the graph of the path (%s): send the record of graph %s", p.GraphID, id, id)
	case len(p.Inputs) != 0 || len(p.ETags) != 0 || len(p.Loads) != 0:
		return badRequest("inputs, etags and loads: the record's input list is the graph's own (read from its mapper tasks on GET); send the record without them")
	}
	// The ownership rule is asked in the write's transaction.
	if err := s.q.PutProvenance(s.actor(r), p); err != nil {
		return s.q.ExpiredOr(r.Context(), err, "graph", id)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// getProvenance answers a graph's provenance record to whoever may read
// the graph.
func (s *Server) getProvenance(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := s.canReadGraph(r, id); err != nil {
		return s.q.ExpiredOr(r.Context(), err, "graph", id)
	}
	raw, err := s.q.Provenance(r.Context(), id)
	if errors.Is(err, queue.ErrNoProvenance) {
		return &httpError{status: http.StatusNotFound, code: "NoProvenance", msg: err.Error()}
	}
	if err != nil {
		return err
	}
	var p taskdef.Provenance
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("graph %s's provenance record: %w", id, err)
	}
	if p.Inputs, p.ETags, p.Loads, err = s.q.GraphInputs(r.Context(), id); err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, p)
}
