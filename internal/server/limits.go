package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/af-project/af/internal/queue"
	"github.com/af-project/af/internal/taskdef"
	"github.com/af-project/af/internal/units"
)

// Request body caps per route. Graphs may be large (MaxGraphBytes, from
// the config); one task holds at most queue.MaxInputs inputs; a filter is
// a small document; every other body is a small JSON object (the longest,
// a report, carries a message the queue keeps 4 KiB of).
const (
	maxSmallBody  = 64 << 10
	maxFilterBody = 1 << 20
	maxTaskBody   = 16 << 20
	// maxProvenanceBody bounds a graph's provenance record: a filter
	// (maxFilterBody), the image's analysis-tools.yml (read up to 1 MiB)
	// and env; the input list is the graph's own and not sent.
	maxProvenanceBody = 4 << 20
)

// bodyLimit is the body cap of a route pattern.
func (s *Server) bodyLimit(pattern string) int64 {
	switch pattern {
	case "POST /api/v1/graphs":
		return s.cfg.MaxGraphBytes
	case "PUT /api/v1/graphs/{id}/provenance":
		return maxProvenanceBody
	case "PUT /api/v1/tasks/{id}":
		return min(maxTaskBody, s.cfg.MaxGraphBytes)
	case "POST /api/v1/index/query":
		return maxFilterBody
	}
	return maxSmallBody
}

// limitBody caps the request body at limit, refusing at once (413, nothing
// read) a body whose Content-Length is over it. A body without a length
// (chunked) fails with the same 413 when reading passes the cap (see
// tooLarge); either way the server reads at most limit bytes of it.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request, pattern string, limit int64) bool {
	if r.ContentLength > limit {
		s.writeError(w, r, tooLarge(pattern, limit))
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	return true
}

// tooLarge is the 413 of a body over a route's cap, saying how to fix it.
func tooLarge(pattern string, limit int64) error {
	var msg string
	switch pattern {
	case "POST /api/v1/graphs":
		msg = fmt.Sprintf("the graph is larger than %d bytes (%s), af serve's max_graph_bytes: submit fewer files per graph (a narrower filter, or the job split over several graphs), or raise max_graph_bytes in af serve's config (default %s)",
			limit, units.Bytes(limit), units.Bytes(DefaultMaxGraphBytes))
	case "PUT /api/v1/tasks/{id}":
		msg = fmt.Sprintf("the task is larger than %d bytes (%s): give it fewer input files (split them over more tasks)", limit, units.Bytes(limit))
	case "PUT /api/v1/graphs/{id}/provenance":
		msg = fmt.Sprintf("the provenance record is larger than %d bytes (%s): its filter, job spec and env are too large to record", limit, units.Bytes(limit))
	case "POST /api/v1/index/query":
		msg = fmt.Sprintf("the filter is larger than %d bytes (%s): list fewer values, or use ranges or wildcards", limit, units.Bytes(limit))
	default:
		msg = fmt.Sprintf("request body is larger than %d bytes (%s), the limit of %s", limit, units.Bytes(limit), pattern)
	}
	return &httpError{status: http.StatusRequestEntityTooLarge, code: "TooLarge", msg: msg}
}

// maxGraphValue bounds one value of a graph body (a task, the graph's
// name): json.Decoder buffers a value whole before decoding it, so without
// it one huge string would be buffered up to the graph's cap (and the
// buffer doubles as it grows). A task this large is refused by PUT as well.
const maxGraphValue = maxTaskBody

// valueCap fails the read of a graph body once the decoder holds more than
// maxGraphValue bytes it has not consumed.
type valueCap struct {
	r    io.Reader
	dec  *json.Decoder
	read int64
}

var errValueTooLarge = &httpError{status: http.StatusRequestEntityTooLarge, code: "TooLarge",
	msg: fmt.Sprintf("a task (or another value) of the graph is larger than %d bytes (%s): give each task fewer input files (split them over more tasks)",
		maxGraphValue, units.Bytes(maxGraphValue))}

func (v *valueCap) Read(p []byte) (int, error) {
	// Bytes read but not yet consumed are the value being decoded (and
	// the start of the next): never let them pass the cap by more than
	// one byte, so a value over it always needs another read.
	room := maxGraphValue - (v.read - v.dec.InputOffset())
	if room < 0 {
		return 0, errValueTooLarge
	}
	if int64(len(p)) > room+1 {
		p = p[:room+1]
	}
	n, err := v.r.Read(p)
	v.read += int64(n)
	return n, err
}

// bodyErr turns a read error of a capped body into its 413, or a 400.
func bodyErr(r *http.Request, err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(r.Pattern, mbe.Limit)
	}
	if errors.Is(err, errValueTooLarge) {
		return errValueTooLarge
	}
	return &httpError{status: http.StatusBadRequest, code: "InvalidRequest", msg: "request body: " + fieldError("", err).Error()}
}

// decodeGraph streams a graph body into b: the object's fields one by one
// and each element of "tasks" on its own, so the decoder never buffers the
// whole body (json.Decoder.Decode of the graph would, and the decoded
// graph would be held next to its encoding). Unknown fields are refused
// like decode does. "graphId" must come before "tasks" (queueclient and
// af submit send it first) so every task is checked against it as it
// arrives.
//
// ownerFor decides the graph's owner from the "owner" field (empty when
// absent): the caller by default (see Server.ownerFor); each task's
// metadata.owner, when empty, is the graph's owner too.
func decodeGraph(r *http.Request, b *queue.GraphBuilder, ownerFor func(given string) (string, error)) error {
	vc := &valueCap{r: r.Body}
	dec := json.NewDecoder(vc)
	vc.dec = dec
	dec.DisallowUnknownFields()
	bad := func(format string, args ...any) error { return badRequest("request body: "+format, args...) }
	if err := expectDelim(dec, '{'); err != nil {
		return bodyOrSyntax(r, err, "a graph body must be a JSON object")
	}
	var graphID, name, owner, priority string
	var haveID, haveTasks bool
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return bodyErr(r, err)
		}
		key, _ := tok.(string)
		var dst *string
		switch {
		case strings.EqualFold(key, "graphId"):
			dst, haveID = &graphID, true
		case strings.EqualFold(key, "name"):
			dst = &name
		case strings.EqualFold(key, "owner"):
			dst = &owner
		case strings.EqualFold(key, "priority"):
			dst = &priority
		case strings.EqualFold(key, "tasks"):
			if haveTasks {
				return bad(`"tasks" appears twice`)
			}
			if !haveID {
				return bad(`"graphId" must come before "tasks"`)
			}
			haveTasks = true
			o, err := ownerFor(owner)
			if err != nil {
				return err
			}
			b.SetGraph(graphID, name, o)
			b.SetPriority(taskdef.Priority(priority))
			if err := decodeTasks(r, dec, b, o, ownerFor); err != nil {
				return err
			}
			continue
		default:
			return bad("json: unknown field %q", key)
		}
		if err := dec.Decode(dst); err != nil {
			return bodyErr(r, fieldError(key, err))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return bodyErr(r, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return bodyErr(r, err)
		}
		return bad("trailing data after the JSON value")
	}
	o, err := ownerFor(owner)
	if err != nil {
		return err
	}
	b.SetGraph(graphID, name, o)
	b.SetPriority(taskdef.Priority(priority))
	return nil
}

// decodeTasks decodes the "tasks" array element by element into b.
// A task's metadata.owner defaults to the graph's (owner, as decided when
// "tasks" began) and is held to the same rule when set.
func decodeTasks(r *http.Request, dec *json.Decoder, b *queue.GraphBuilder, owner string, ownerFor func(string) (string, error)) error {
	tok, err := dec.Token()
	if err != nil {
		return bodyErr(r, err)
	}
	if tok == nil {
		return nil // "tasks": null
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return badRequest(`request body: "tasks" must be an array`)
	}
	for i := 0; dec.More(); i++ {
		var gt struct {
			TaskID string `json:"taskId"`
			Task   taskIn `json:"task"`
		}
		if err := dec.Decode(&gt); err != nil {
			var mbe *http.MaxBytesError
			switch {
			case errors.As(err, &mbe):
				return tooLarge(r.Pattern, mbe.Limit)
			case errors.Is(err, errValueTooLarge):
				return fmt.Errorf("tasks[%d]: %w", i, errValueTooLarge)
			}
			where := fmt.Sprintf("tasks[%d]", i)
			if fe := fieldError(where, err); fe != err {
				return badRequest("request body: %v", fe)
			}
			return badRequest("request body: %s: %v", where, err)
		}
		def := gt.Task.definition()
		if def.Metadata.Owner == "" {
			def.Metadata.Owner = owner
		} else if def.Metadata.Owner != owner {
			o, err := ownerFor(def.Metadata.Owner)
			if err != nil {
				return fmt.Errorf("tasks[%d].metadata.owner: %w", i, err)
			}
			def.Metadata.Owner = o
		}
		if err := b.Add(gt.TaskID, def); err != nil {
			return err
		}
	}
	_, err = dec.Token() // the closing ']'
	if err != nil {
		return bodyErr(r, err)
	}
	return nil
}

// expectDelim reads the next token and checks it is d.
func expectDelim(dec *json.Decoder, d json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if got, ok := tok.(json.Delim); !ok || got != d {
		return errNotDelim
	}
	return nil
}

var errNotDelim = errors.New("unexpected JSON value")

// bodyOrSyntax is bodyErr, with msg for a value of the wrong shape.
func bodyOrSyntax(r *http.Request, err error, msg string) error {
	if errors.Is(err, errNotDelim) {
		return badRequest("request body: %s", msg)
	}
	if err == io.EOF {
		return badRequest("request body: empty; %s", msg)
	}
	return bodyErr(r, err)
}
