package main

// openapi.go: GET /api/openapi.json, the OpenAPI 3.1 description of every route and
// every SSE event. The document is a plain embedded file (web/openapi.json) so it can
// be read and diffed as is; openapi_test.go fails when a route of routeTable or an
// event type the code emits is missing from it, or an emitted event does not match it.

import "net/http"

func (s *server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	b, err := webFS.ReadFile("web/openapi.json")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}
