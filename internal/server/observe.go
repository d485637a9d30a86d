package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"
)

// reqInfo collects what handlers learn about a request for its log line:
// the token's name (never its value) and why it failed.
type reqInfo struct {
	token string
	note  string
}

type reqInfoKey struct{}

func setTokenName(r *http.Request, name string) {
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		ri.token = name
	}
}

func setErrorNote(r *http.Request, note string) {
	if ri, ok := r.Context().Value(reqInfoKey{}).(*reqInfo); ok {
		ri.note = note
	}
}

// recorder remembers the status and size of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush on the real writer.
func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush passes streaming answers through.
func (w *recorder) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		if w.status == 0 {
			w.status = http.StatusOK
		}
		f.Flush()
	}
}

// wroteHeader reports whether the answer's status already went out.
func wroteHeader(w http.ResponseWriter) bool {
	if rec, ok := w.(*recorder); ok {
		return rec.status != 0
	}
	return false
}

// observe logs every request (method, path, route, status, duration, size,
// the token's name) and feeds the latency histogram. It never logs headers
// or query strings other than the path, so no token reaches the log.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ri := &reqInfo{}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		rec := &recorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		d := time.Since(start)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "unmatched"
		}
		s.metrics.observe(route, rec.status, d)
		level := slog.LevelInfo
		switch {
		case rec.status >= 500:
			level = slog.LevelError
		case rec.status >= 400:
			level = slog.LevelWarn
		}
		if !s.log.Enabled(r.Context(), level) {
			return
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.String("route", route),
			slog.Int("status", rec.status),
			slog.Duration("dur", d),
			slog.Int64("bytes", rec.bytes),
		}
		if ri.token != "" {
			attrs = append(attrs, slog.String("token", ri.token))
		}
		if ri.note != "" && rec.status >= 400 {
			attrs = append(attrs, slog.String("err", ri.note))
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}
