package main

// web.go: the chat page at / and its assets, embedded so that the binary is the
// whole product (no build step, nothing fetched from elsewhere).

import (
	"embed"
	"net/http"
	"path"
)

//go:embed web
var webFS embed.FS

// pageCSP allows only the page's own script, style and API: no inline script, no
// eval, no other origin, no framing. Model text is rendered as DOM text nodes, so
// even a bug there cannot run script.
const pageCSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var assetTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".svg": "image/svg+xml",
}

func (s *server) servePage(w http.ResponseWriter, r *http.Request) {
	s.serveWebFile(w, "index.html", "text/html; charset=utf-8")
}

func (s *server) serveAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	ct, ok := assetTypes[path.Ext(name)]
	if !ok {
		writeJSON(w, http.StatusNotFound, errorBody("Not Found"))
		return
	}
	s.serveWebFile(w, name, ct)
}

func (s *server) serveWebFile(w http.ResponseWriter, name, contentType string) {
	b, err := webFS.ReadFile("web/" + name)
	if err != nil {
		writeJSON(w, http.StatusNotFound, errorBody("Not Found"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-cache")
	w.Write(b)
}
