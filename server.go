package main

// server.go: the HTTP server: the route table, the request guards (auth, Host,
// Origin, CORS, content type, panics) and the two JSON helpers.

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// serverConfig is what newServer needs besides its collaborators.
type serverConfig struct {
	root         string // --working-dir, absolute
	getenv       func(string) string
	clientEnv    clientEnv
	token        string   // bearer token; "" = no authentication
	allowedHosts []string // extra Host values beyond the loopback names
	corsOrigins  []string
	maxRuns      int
	heartbeat    time.Duration   // idle-stream comment interval; 0 = heartbeatEvery
	protected    *protectedFiles // the server's secret files, refused to file tools
	saveRetryFor time.Duration   // how long a run retries writes that failed; 0 = saveRetryFor
}

// server owns the dependencies of every handler. It is safe for concurrent use.
type server struct {
	st     *store
	agents *agentSources
	log    *slog.Logger
	cfg    serverConfig
	mux    *http.ServeMux
	runs   *runRegistry

	// rootDir is cfg.root opened once at start; every run opens its session's
	// directory from it, so swapping a directory for a symlink cannot lead outside.
	rootDir  *os.Root
	rootReal string // cfg.root with symlinks resolved, as session dirs are stored
}

// newServer opens the root directory and builds the routes; close releases the root.
func newServer(st *store, agents *agentSources, log *slog.Logger, cfg serverConfig) (*server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.maxRuns == 0 {
		cfg.maxRuns = defaultMaxRuns
	}
	if cfg.getenv == nil {
		cfg.getenv = func(string) string { return "" }
	}
	if cfg.clientEnv.HTTP == nil {
		cfg.clientEnv.HTTP = &http.Client{}
	}
	if cfg.clientEnv.Getenv == nil {
		cfg.clientEnv.Getenv = cfg.getenv
	}
	s := &server{st: st, agents: agents, log: log, cfg: cfg, mux: http.NewServeMux(), runs: newRunRegistry(cfg.maxRuns)}
	var err error
	if s.rootReal, err = filepath.EvalSymlinks(cfg.root); err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	if s.rootDir, err = os.OpenRoot(s.rootReal); err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	s.routes()
	return s, nil
}

// routes is the whole API.
func (s *server) routes() {
	m := s.mux
	m.HandleFunc("GET /api/ping", s.servePing)
	m.HandleFunc("GET /api/agents", s.serveAgents)
	m.HandleFunc("GET /api/agents/{id}", s.serveAgent)
	m.HandleFunc("GET /api/agents/{id}/{name}/tools/count", s.serveToolCount)
	m.HandleFunc("GET /api/sessions", s.serveSessions)
	m.HandleFunc("POST /api/sessions", s.serveCreateSession)
	m.HandleFunc("GET /api/sessions/{id}", s.serveSession)
	m.HandleFunc("DELETE /api/sessions/{id}", s.serveDeleteSession)
	m.HandleFunc("PATCH /api/sessions/{id}/title", s.serveSetTitle)
	m.HandleFunc("PATCH /api/sessions/{id}/permissions", s.serveSetPermissions)
	m.HandleFunc("POST /api/sessions/{id}/resume", s.serveResume)
	m.HandleFunc("POST /api/sessions/{id}/tools/toggle", s.serveToggleTools)
	m.HandleFunc("POST /api/sessions/{id}/thinking/toggle", s.serveToggleThinking)
	m.HandleFunc("POST /api/sessions/{id}/elicitation", s.serveElicitation)
	m.HandleFunc("POST /api/sessions/{id}/agent/{agent}", s.serveRun)
	m.HandleFunc("POST /api/sessions/{id}/agent/{agent}/{name}", s.serveRun)
}

// close releases what the server holds (running agents are cancelled by their requests).
func (s *server) close() { s.rootDir.Close() }

func (s *server) servePing(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ServeHTTP applies the guards every request passes, then routes it.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := rand.Text()[:12]
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic in handler", "request_id", reqID, "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			writeJSON(w, http.StatusInternalServerError, errorBody("internal error (request "+reqID+")"))
		}
	}()
	if !s.hostAllowed(r.Host) {
		writeJSON(w, http.StatusForbidden, errorBody("host "+r.Host+" is not allowed"))
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		if !s.originAllowed(origin, r.Host) {
			writeJSON(w, http.StatusForbidden, errorBody("origin "+origin+" is not allowed"))
			return
		}
		if slices.Contains(s.cfg.corsOrigins, origin) {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
			h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
	}
	if s.cfg.token != "" && r.URL.Path != "/api/ping" && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentd"`)
		writeJSON(w, http.StatusUnauthorized, errorBody("missing or invalid bearer token"))
		return
	}
	if (r.Method == http.MethodPost || r.Method == http.MethodPatch) && r.ContentLength != 0 && !isJSONContentType(r.Header.Get("Content-Type")) {
		// Browsers send text/plain and form bodies cross-site without a preflight.
		writeJSON(w, http.StatusUnsupportedMediaType, errorBody("Content-Type must be application/json"))
		return
	}
	s.mux.ServeHTTP(&statusWriter{ResponseWriter: w}, r)
}

// statusWriter turns the mux's plain-text 404/405 answers into JSON errors.
type statusWriter struct {
	http.ResponseWriter
	once    sync.Once
	swallow bool
}

func (sw *statusWriter) WriteHeader(code int) {
	sw.once.Do(func() {
		h := sw.Header()
		if (code == http.StatusMethodNotAllowed || code == http.StatusNotFound) && strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
			h.Set("Content-Type", "application/json")
			h.Del("X-Content-Type-Options")
			sw.ResponseWriter.WriteHeader(code)
			json.NewEncoder(sw.ResponseWriter).Encode(errorBody(http.StatusText(code)))
			sw.swallow = true
			return
		}
		sw.ResponseWriter.WriteHeader(code)
	})
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	sw.WriteHeader(http.StatusOK)
	if sw.swallow {
		return len(b), nil
	}
	return sw.ResponseWriter.Write(b)
}

func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

func (s *server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.cfg.token)) == 1
}

// hostAllowed defends against DNS rebinding: a page on evil.example resolving to
// 127.0.0.1 reaches us with Host: evil.example.
func (s *server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "" || host == "localhost" || slices.Contains(s.cfg.allowedHosts, host) || slices.Contains(s.cfg.allowedHosts, hostport) {
		return true
	}
	if ip := net.ParseIP(host); ip != nil {
		// A literal IP cannot be a rebinding name; non-loopback ones only reach us
		// when the operator chose to listen there.
		return true
	}
	return false
}

// originAllowed accepts same-origin requests and configured CORS origins.
func (s *server) originAllowed(origin, host string) bool {
	if slices.Contains(s.cfg.corsOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == host
}

func isJSONContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// errorBody is the error JSON: "error" for our house rule and the reference client,
// "message" for clients written against the reference server.
func errorBody(msg string) map[string]string {
	return map[string]string{"error": msg, "message": msg}
}

// writeJSON writes v with status; an encode failure can only be logged by the caller's
// connection, so it is ignored here.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError maps err to a status: errNotFound 404, errInvalid 400, errConflict 409,
// too large 413, a database condition its storeFault (503 busy with Retry-After, 507
// disk full, ...), anything else 500 with the detail only in the log.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	var he *httpError
	status := http.StatusInternalServerError
	fault := storeFaultOf(err)
	switch {
	case fault != nil:
		s.log.Warn("request failed: session database", "method", r.Method, "path", r.URL.Path, "err", err)
		if fault.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(fault.retryAfter))
		}
		writeJSON(w, fault.status, errorBody(fault.msg))
		return
	case errors.As(err, &he):
		status = he.status
	case errors.As(err, &tooBig):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, errNotFound):
		status = http.StatusNotFound
	case errors.Is(err, errConflict):
		status = http.StatusConflict
	case errors.Is(err, errInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, errTooManyRuns):
		status = http.StatusTooManyRequests
	}
	msg := err.Error()
	if status == http.StatusInternalServerError {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error"
	}
	writeJSON(w, status, errorBody(msg))
}

// readJSON decodes a size-limited JSON body into v. An empty body leaves v untouched
// (the reference accepts it); malformed JSON, wrong types and trailing data are
// errInvalid; an oversized body is a *http.MaxBytesError.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return err
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid request body: %v", err)
	}
	if err := dec.Decode(&json.RawMessage{}); err != io.EOF {
		return badRequest("invalid request body: trailing data after the JSON value")
	}
	return nil
}

// httpError is an error with the status and the user-facing message to answer with.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) error {
	return &httpError{http.StatusConflict, fmt.Sprintf(format, args...)}
}
