package server

import (
	"fmt"
	"html"
	"net/http"
)

// placeholderPages serves /graphs and /graphs/{id} until the monitor page
// (internal/monitor) replaces it through Deps.Pages: a plain list of
// graphs and, for one graph, a pointer to its JSON.
func placeholderPages(s *Server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if id := r.PathValue("id"); id != "" {
			st, err := s.q.Graph(r.Context(), id)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			fmt.Fprintf(w, "<!doctype html><title>%s</title><h1>%s</h1><p>%s: %d tasks. <a href=\"/api/v1/graphs/%s\">JSON</a></p>",
				html.EscapeString(st.Name), html.EscapeString(st.Name), st.State, len(st.Tasks), html.EscapeString(id))
			return
		}
		gs, err := s.q.Graphs(r.Context(), defaultGraphList)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		fmt.Fprint(w, "<!doctype html><title>af graphs</title><h1>Graphs</h1><ul>")
		for _, g := range gs {
			fmt.Fprintf(w, "<li><a href=\"/graphs/%s\">%s</a> %s</li>", html.EscapeString(g.GraphID), html.EscapeString(g.Name), g.State)
		}
		fmt.Fprint(w, "</ul>")
	})
}
