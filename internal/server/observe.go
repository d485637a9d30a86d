package server

import (
	"log/slog"
	"net/http"
	"time"
)

// setTokenName and setErrorNote tell the request's log line which token
// (by name, never its value) was used and why the request failed. They
// reach the recorder observe wrapped the writer in, which avoids a context
// (and a request copy) per request.
func setTokenName(w http.ResponseWriter, name string) {
	if rec, ok := w.(*recorder); ok {
		rec.token = name
	}
}

// setQuiet logs a successful request at debug level: the periodic worker
// calls (an idle worker's empty long-poll every 20 s, lease renewals) would
// otherwise drown the log lines that say something.
func setQuiet(w http.ResponseWriter) {
	if rec, ok := w.(*recorder); ok {
		rec.quiet = true
	}
}

func setErrorNote(w http.ResponseWriter, note string) {
	if rec, ok := w.(*recorder); ok {
		rec.note = note
	}
}

// recorder remembers the status and size of an answer.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	token  string
	note   string
	quiet  bool
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
		case rec.quiet && rec.status < 400:
			level = slog.LevelDebug
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
		if rec.token != "" {
			attrs = append(attrs, slog.String("token", rec.token))
		}
		if rec.note != "" && rec.status >= 400 {
			attrs = append(attrs, slog.String("err", rec.note))
		}
		s.log.LogAttrs(r.Context(), level, "request", attrs...)
	})
}
