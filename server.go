package main

// server.go: the HTTP server: the route table, the request guards (auth, Host,
// Origin, CORS, content type, panics) and the two JSON helpers.

import (
	"bytes"
	"cmp"
	"context"
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
	"unicode/utf8"
	"unsafe"
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
	bodyGrace    time.Duration   // request body read deadline before size is counted; 0 = bodyReadGrace
	bodyBudget   int64           // bytes for request bodies in flight; 0 = maxBodyMemory
	runBudget    int64           // estimated bytes of runs in flight; 0 = defaultRunMemory
	protected    *protectedFiles // the server's secret files, refused to file tools
	saveRetryFor time.Duration   // how long a run retries writes that failed; 0 = saveRetryFor
	mcpOAuth     *mcpOAuth       // MCP OAuth flows and tokens (mcp_oauth.go); nil = none
	// eventRetention is the events kept per session (eventlog.go); 0 =
	// defaultEventRetention, negative = no event log.
	eventRetention int
	maxRunBody     int64 // bytes of one run request body; 0 or less = maxRunBody
}

// server owns the dependencies of every handler. It is safe for concurrent use.
type server struct {
	st     *store
	agents *agentSources
	log    *slog.Logger
	cfg    serverConfig
	mux    *http.ServeMux
	runs   *runRegistry
	bg     *backgroundAgents // tools_background.go
	queues *sessionQueues    // queue.go
	bodies *memBudget        // request bodies being read and decoded
	runMem *memBudget        // runs in flight, at runMemoryCost each
	forks  sync.Mutex        // forks take turns: a fork's title number depends on the titles stored
	events *eventLogs        // eventlog.go; nil when disabled

	// life ends at shutdown: it cancels detached runs and ends event streams, which
	// no request context ends (runctl.go), and the runs continued from a stored
	// question (resume.go), which unwatched counts.
	life      context.Context
	stopLife  context.CancelFunc
	unwatched sync.WaitGroup
	teams     sessionTeams // each session's last run here (session_models.go)

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
	s := &server{st: st, agents: agents, log: log, cfg: cfg, mux: http.NewServeMux(), runs: newRunRegistry(cfg.maxRuns), bg: newBackgroundAgents(), queues: newSessionQueues(),
		bodies: &memBudget{limit: cmp.Or(cfg.bodyBudget, maxBodyMemory), busy: "too many large request bodies in flight"},
		runMem: &memBudget{limit: cmp.Or(cfg.runBudget, defaultRunMemory), busy: "too many runs in flight for the memory available"}}
	s.life, s.stopLife = context.WithCancel(context.Background())
	if cfg.eventRetention >= 0 {
		s.events = newEventLogs(st, log, cmp.Or(cfg.eventRetention, defaultEventRetention))
	}
	var err error
	if s.rootReal, err = filepath.EvalSymlinks(cfg.root); err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	if s.rootDir, err = os.OpenRoot(s.rootReal); err != nil {
		return nil, fmt.Errorf("working directory: %w", err)
	}
	s.routes()
	s.settleInterrupted(context.Background())
	return s, nil
}

// route is one entry of the route table.
type route struct {
	pattern string
	handler http.HandlerFunc
}

// routeTable is every route the server answers, in one place so that the OpenAPI
// test can check each is documented.
func (s *server) routeTable() []route {
	return []route{
		{"GET /{$}", s.servePage},
		{"GET /ui/{file}", s.serveAsset},
		{"GET /api/openapi.json", s.serveOpenAPI},
		{"GET /api/ping", s.servePing},
		{"GET /api/agents", s.serveAgents},
		{"GET /api/agents/{id}", s.serveAgent},
		{"GET /api/agents/{id}/{name}/tools/count", s.serveToolCount},
		{"GET /health", s.serveHealth},
		{"GET /ready", s.serveReadyProbe},
		{"GET /api/ready", s.serveAPIReady},
		{"GET /api/sessions", s.serveSessions},
		{"POST /api/sessions", s.serveCreateSession},
		{"GET /api/sessions/{id}", s.serveSession},
		{"DELETE /api/sessions/{id}", s.serveDeleteSession},
		{"PATCH /api/sessions/{id}/title", s.serveSetTitle},
		{"PATCH /api/sessions/{id}/permissions", s.serveSetPermissions},
		{"POST /api/sessions/{id}/resume", s.serveResume},
		{"PATCH /api/sessions/{id}/safety-policy", s.serveSetSafetyPolicy},
		{"PATCH /api/sessions/{id}/starred", s.serveSetStarred},
		{"PATCH /api/sessions/{id}/tokens", s.serveSetTokens},
		{"GET /api/sessions/{id}/recovery", s.serveRecovery},
		{"POST /api/sessions/batch/delete", s.serveBatchDelete},
		{"POST /api/sessions/batch/export", s.serveBatchExport},
		{"POST /api/sessions/{id}/tools/toggle", s.serveToggleTools},
		{"POST /api/sessions/{id}/thinking/toggle", s.serveToggleThinking},
		{"POST /api/sessions/{id}/elicitation", s.serveElicitation},
		{"POST /api/sessions/{id}/fork", s.serveFork},
		{"POST /api/sessions/{id}/messages", s.serveAddMessage},
		{"PATCH /api/sessions/{id}/messages/{msg_id}", s.serveUpdateMessage},
		{"POST /api/sessions/{id}/summaries", s.serveAddSummary},
		{"POST /api/mcp-oauth/callback", s.serveMCPOAuthCallback},
		{"POST /api/sessions/{id}/steer", s.serveSteer},
		{"POST /api/sessions/{id}/followup", s.serveFollowup},
		{"GET /api/sessions/{id}/queue", s.serveQueue},
		{"GET /api/sessions/{id}/events", s.serveEvents},
		{"GET /api/sessions/{id}/status", s.serveStatus},
		{"GET /api/sessions/{id}/snapshot", s.serveSnapshot},
		{"POST /api/sessions/{id}/cancel", s.serveCancel},
		{"POST /api/sessions/{id}/agent/{agent}", s.withRunMemory(s.serveRun)},
		{"POST /api/sessions/{id}/agent/{agent}/{name}", s.withRunMemory(s.serveRun)},
		{"GET /api/sessions/{id}/models", s.serveSessionModels},
	}
}

func (s *server) routes() {
	for _, rt := range s.routeTable() {
		s.mux.HandleFunc(rt.pattern, rt.handler)
	}
}

// close stops the background agents, waits for the runs continued from stored
// questions, stores the rest of the event log and releases what the server holds
// (running agents are cancelled by their requests, detached ones by shutdown).
func (s *server) close() {
	s.shutdown()
	s.unwatched.Wait()
	s.bg.close()
	s.events.close()
	s.rootDir.Close()
}

// shutdown cancels detached runs and ends event streams; http.Server.Shutdown calls it
// (RegisterOnShutdown), as open requests would otherwise hold it to its timeout.
func (s *server) shutdown() { s.stopLife() }

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
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key")
			h.Set("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE")
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
	}
	if s.cfg.token != "" && !publicPath(r.URL.Path) && !s.authorized(r) {
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

// WriteString passes strings through unconverted: a stream's large image is written
// from the message's own string, not a copy.
func (sw *statusWriter) WriteString(s string) (int, error) {
	sw.WriteHeader(http.StatusOK)
	if sw.swallow {
		return len(s), nil
	}
	return io.WriteString(sw.ResponseWriter, s)
}

func (sw *statusWriter) Unwrap() http.ResponseWriter { return sw.ResponseWriter }

// publicPath: ping, the /health and /ready probes (orchestrators call them without
// credentials, as the reference allows), and the chat page and its assets, which hold
// no data (the page asks for the token and sends it with every API call).
func publicPath(p string) bool {
	return p == "/api/ping" || p == "/health" || p == "/ready" || p == "/" || strings.HasPrefix(p, "/ui/")
}

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
	if status == http.StatusTooManyRequests && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
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
// errInvalid; an oversized body is a *http.MaxBytesError. The body must arrive before a
// deadline of a grace period plus its size at bodyMinRate (408 otherwise), so a peer
// trickling bytes cannot hold a connection; and it must fit the server's budget for
// bodies being read (429 otherwise).
func (s *server) readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	size := limit
	if r.ContentLength >= 0 && r.ContentLength < limit {
		size = r.ContentLength
	}
	rc := http.NewResponseController(w)
	wait := cmp.Or(s.cfg.bodyGrace, bodyReadGrace) + time.Duration(size/bodyMinRate)*time.Second
	if rc.SetReadDeadline(time.Now().Add(wait)) == nil {
		// Cleared once read: a run's stream lives on, and the server's watch for a
		// client going away reads the same connection.
		defer rc.SetReadDeadline(time.Time{})
	}
	release, err := s.bodies.reserve(2 * size) // the bytes and the decoded values
	if err != nil {
		return err
	}
	defer release()
	body, err := readBody(http.MaxBytesReader(w, r.Body, limit), r.ContentLength, limit)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// Close after the answer: net/http would otherwise wait for the rest of the
		// body before writing it.
		w.Header().Set("Connection", "close")
		return &httpError{http.StatusRequestTimeout, fmt.Sprintf("request body not received within %v", wait)}
	}
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return badRequest("invalid request body: %v", err)
	}
	return nil
}

// readField reads a small JSON object body whose field name is required and decodes
// that field into v: 400 "<name> is required<hint>" when it is missing or null.
func (s *server) readField(w http.ResponseWriter, r *http.Request, name, hint string, v any) bool {
	var body map[string]json.RawMessage
	err := s.readJSON(w, r, maxMetadataBody, &body)
	if raw, ok := body[name]; err == nil && (!ok || string(raw) == "null") {
		err = badRequest("%s is required%s", name, hint)
	} else if err == nil {
		if uerr := json.Unmarshal(raw, v); uerr != nil {
			err = badRequest("invalid request body: %s: %v", name, uerr)
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	return true
}

// readBody reads r whole; with a Content-Length within limit, into one buffer of that
// size, so a large body is held once, not in a doubling buffer plus copies.
func readBody(r io.Reader, contentLength, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if contentLength >= 0 && contentLength <= limit {
		buf.Grow(int(contentLength) + 1) // +1: EOF is seen without growing
	}
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

// bodyString is a JSON string of a request body. A long one without escapes (a data
// URL) is decoded without a copy: its value aliases the body's bytes, so a 15 MiB
// image is held once, in the buffer readJSON read it into. That is safe because the
// buffer is never written after it is read (readJSON hands it only to json.Unmarshal,
// which passes Unmarshalers sub-slices of it); never decode a bodyString from a buffer
// that is reused, such as a json.Decoder's.
type bodyString string

func (s *bodyString) UnmarshalJSON(b []byte) error {
	if n := len(b); n >= sharedImageMin && b[0] == '"' && bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b) {
		*s = bodyString(unsafe.String(&b[1], n-2))
		return nil
	}
	var v string
	err := json.Unmarshal(b, &v)
	*s = bodyString(v)
	return err
}

// memBudget bounds the estimated memory of work in flight (request bodies, runs), so
// a burst is answered 429 with Retry-After before the process is at risk.
type memBudget struct {
	mu    sync.Mutex
	used  int64
	limit int64
	busy  string // what the 429 says is in flight
}

// reserve takes cost bytes; the returned func gives them back. Beyond the budget it is
// a 429, unless nothing else is in flight (one always fits).
func (b *memBudget) reserve(cost int64) (func(), error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used > 0 && b.used+cost > b.limit {
		return nil, &httpError{http.StatusTooManyRequests, "server busy: " + b.busy + "; retry shortly"}
	}
	b.used += cost
	return func() {
		b.mu.Lock()
		b.used -= cost
		b.mu.Unlock()
	}, nil
}

// withRunMemory admits a run only while the runs in flight fit the run budget.
func (s *server) withRunMemory(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		release, err := s.runMem.reserve(runMemoryCost)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer release()
		h(w, r)
	}
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
