package server

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/af-project/af/internal/filter"
	"github.com/af-project/af/internal/index"
	"github.com/af-project/af/internal/layout"
	"github.com/af-project/af/internal/taskdef"
)

// indexDB is the opened file index.
type indexDB = *index.DB

// openIndex opens <data>/index.db on first use and keeps it open: bbolt
// locks the file, so the server is its one user while it runs.
func (s *Server) openIndex() (*index.DB, error) {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	if s.index != nil {
		return s.index, nil
	}
	db, err := index.Open(s.indexPath, index.Options{Logger: s.log.With("component", "index")})
	if err != nil {
		return nil, err
	}
	s.index = db
	return db, nil
}

func (s *Server) closeIndex() {
	s.indexMu.Lock()
	defer s.indexMu.Unlock()
	if s.index != nil {
		if err := s.index.Close(); err != nil {
			s.log.Warn("close index", "err", err)
		}
		s.index = nil
	}
}

// indexErr turns "not built yet" into a 404 that says what to run.
func indexErr(err error) error {
	if errors.Is(err, index.ErrNotBuilt) {
		return &httpError{status: http.StatusNotFound, code: "IndexNotBuilt",
			msg: err.Error() + " (against this server: `af index build --bucket BUCKET`)"}
	}
	return err
}

// indexQuery answers the objects a filter selects. The answer is streamed
// (an index may select millions of files): the object list is written as
// the index yields it, and a failure after the first byte ends the document
// with an "error" field the client checks.
func (s *Server) indexQuery(w http.ResponseWriter, r *http.Request) error {
	db, err := s.openIndex()
	if err != nil {
		return err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFilterBody))
	if err != nil {
		return bodyErr(r, err)
	}
	bucket, prefix, schema, err := db.Source()
	if err != nil {
		return indexErr(err)
	}
	f, err := filter.Parse("filter", data, schema)
	if err != nil {
		return &httpError{status: http.StatusBadRequest, code: "InvalidFilter", msg: err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	bw := bufio.NewWriterSize(w, 64<<10)
	head, _ := json.Marshal(map[string]any{"bucket": bucket, "prefix": prefix, "schema": schema.Fields, "layout": schema.Layout()})
	bw.Write(head[:len(head)-1])
	bw.WriteString(`,"objects":[`)
	first := true
	var buf []byte
	// ?etags=1 (af submit's, to pin each file's version) adds the ETags
	// as a list after the objects; others pay nothing for them.
	var etags []string
	withETags := r.URL.Query().Get("etags") == "1"
	st, qerr := db.Query(r.Context(), f, func(o index.Object) error {
		if withETags {
			etags = append(etags, o.ETag)
		}
		buf = buf[:0]
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, `{"key":`...)
		kb, err := json.Marshal(o.Key)
		if err != nil {
			return err
		}
		buf = append(buf, kb...)
		buf = append(buf, `,"size":`...)
		buf = strconv.AppendInt(buf, o.Size, 10)
		buf = append(buf, '}')
		_, err = bw.Write(buf)
		return err
	})
	if qerr != nil && first {
		// Nothing selected yet: the header is still in the buffer, so a
		// proper error answer can replace it.
		bw.Reset(io.Discard)
		return indexErr(qerr)
	}
	fmt.Fprintf(bw, `],"files":%d,"bytes":%d`, st.Files, st.Bytes)
	if withETags && qerr == nil {
		list, err := json.Marshal(etags)
		if err != nil {
			return err
		}
		bw.WriteString(`,"etags":`)
		bw.Write(list)
	}
	if qerr != nil {
		msg, _ := json.Marshal(qerr.Error())
		fmt.Fprintf(bw, `,"error":%s`, msg)
		s.log.Error("index query failed mid-answer", "err", qerr)
	}
	bw.WriteString("}\n")
	return bw.Flush()
}

// maxReportKeys bounds the skipped keys a build answer lists.
const maxReportKeys = 1000

// indexBuild refreshes the index by the rule a local build follows
// (index.Refresh): another source than the index holds is a 409 naming
// what it holds, a bucket S3 will not list a 400; neither is a 5xx, which
// clients would retry.
func (s *Server) indexBuild(w http.ResponseWriter, r *http.Request) error {
	if s.lister == nil {
		return &httpError{status: http.StatusServiceUnavailable, code: "NoS3", msg: "this server has no S3 client to list inputs with"}
	}
	var in taskdef.IndexBuildRequest
	if err := decode(w, r, maxSmallBody, &in); err != nil {
		return err
	}
	req := index.Request{Bucket: in.Bucket, Prefix: in.Prefix, FirstSchema: layout.Telemetry()}
	if len(in.Schema) > 0 {
		schema, err := layout.ParseSchema("schema", in.Schema)
		if err != nil {
			return &httpError{status: http.StatusBadRequest, code: "InvalidSchema", msg: err.Error()}
		}
		req.Schema = &schema
	}
	db, err := s.openIndex()
	if err != nil {
		return err
	}
	if !s.buildMu.TryLock() {
		return &httpError{status: http.StatusConflict, code: "BuildRunning", msg: "an index build is already running on this server; wait for it"}
	}
	defer s.buildMu.Unlock()
	rep, err := db.Refresh(r.Context(), s.lister, req, nil)
	if err != nil {
		return indexBuildErr(err)
	}
	if len(rep.SkippedKeys) > maxReportKeys {
		rep.SkippedKeys = rep.SkippedKeys[:maxReportKeys]
	}
	return writeJSON(w, http.StatusOK, rep.Wire())
}

// indexBuildErr gives the refresh rule's refusals their 4xx; the message
// is the index's own, word for word what a local build prints.
func indexBuildErr(err error) error {
	switch {
	case errors.Is(err, index.ErrInvalidRequest):
		return &httpError{status: http.StatusBadRequest, code: "InvalidRequest", msg: err.Error()}
	case errors.Is(err, index.ErrOtherSource):
		return &httpError{status: http.StatusConflict, code: "IndexSource", msg: err.Error()}
	case errors.Is(err, index.ErrBucket):
		return &httpError{status: http.StatusBadRequest, code: "BucketNotListable", msg: err.Error()}
	}
	return fmt.Errorf("index build: %w", err)
}

func (s *Server) indexStats(w http.ResponseWriter, r *http.Request) error {
	db, err := s.openIndex()
	if err != nil {
		return err
	}
	st, err := db.Stats(r.Context())
	if err != nil {
		return indexErr(err)
	}
	return writeJSON(w, http.StatusOK, st.Wire())
}
