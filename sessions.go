package main

// sessions.go: the session routes (API.md §2.4–2.10, §7) and their JSON shapes,
// including the run route and the answers (resume, elicitation) a run waits for.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// sessionJSON is the reference's full session.Session document: the answer to
// POST /api/sessions, and the sub_session of sub_session_completed. As in the
// reference (checked side by side), max_iterations and cost are always present and an
// empty working_dir is left out.
type sessionJSON struct {
	ID              string             `json:"id"`
	Title           string             `json:"title"`
	Messages        []itemJSON         `json:"messages"`
	CreatedAt       string             `json:"created_at"`
	ToolsApproved   bool               `json:"tools_approved"`
	SafetyPolicy    string             `json:"safety_policy,omitempty"`
	PriorSafety     string             `json:"prior_safety_policy,omitempty"`
	Attributes      map[string]string  `json:"attributes,omitempty"`
	Thinking        bool               `json:"thinking"`
	HideToolResults bool               `json:"hide_tool_results"`
	WorkingDir      string             `json:"working_dir,omitempty"`
	SendUserMessage bool               `json:"SendUserMessage"`
	MaxIterations   int                `json:"max_iterations"`
	Starred         bool               `json:"starred"`
	InputTokens     int64              `json:"input_tokens"`
	OutputTokens    int64              `json:"output_tokens"`
	Cost            float64            `json:"cost"`
	Permissions     *permissionsConfig `json:"permissions,omitempty"`
}

// itemJSON is one session.Item: exactly one of message, sub_session or summary.
type itemJSON struct {
	Message    *flatMessage `json:"message,omitempty"`
	SubSession *sessionJSON `json:"sub_session,omitempty"`
	Summary    string       `json:"summary,omitempty"`
}

// flatMessage is a session.Message: the chat message with the agent that wrote it.
// The agent is written under both the reference's agentName and the newer agent_name
// (API-UPSTREAM.md §3.4, §5.1) and read from either, a non-empty agent_name winning.
type flatMessage struct {
	AgentName string
	Message   *chatMessage
	Implicit  bool
}

// flatMessageWire is flatMessage as JSON.
type flatMessageWire struct {
	AgentName    string       `json:"agentName"`
	AgentNameNew string       `json:"agent_name"`
	Message      *chatMessage `json:"message"`
	Implicit     bool         `json:"implicit,omitempty"`
}

func (m flatMessage) MarshalJSON() ([]byte, error) {
	return json.Marshal(flatMessageWire{m.AgentName, m.AgentName, m.Message, m.Implicit})
}

func (m *flatMessage) UnmarshalJSON(b []byte) error {
	var w flatMessageWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*m = flatMessage{cmp.Or(w.AgentNameNew, w.AgentName), w.Message, w.Implicit}
	return nil
}

// sessionResponse is GET /api/sessions/{id}. Beyond the reference it also reports
// cost and max_iterations when set (API.md §11.20).
type sessionResponse struct {
	ID            string             `json:"id"`
	Title         string             `json:"title"`
	Messages      []flatMessage      `json:"messages,omitempty"`
	CreatedAt     string             `json:"created_at"`
	ToolsApproved bool               `json:"tools_approved"`
	SafetyPolicy  string             `json:"safety_policy,omitempty"`
	Thinking      bool               `json:"thinking"`
	InputTokens   int64              `json:"input_tokens"`
	OutputTokens  int64              `json:"output_tokens"`
	WorkingDir    string             `json:"working_dir,omitempty"`
	Permissions   *permissionsConfig `json:"permissions,omitempty"`
	Cost          float64            `json:"cost,omitempty"`
	MaxIterations int                `json:"max_iterations,omitempty"`
	Streaming     bool               `json:"streaming"` // a run holds the session now
	Starred       bool               `json:"starred,omitempty"`
	Attributes    map[string]string  `json:"attributes,omitempty"`
}

// sessionListItem is an element of GET /api/sessions.
type sessionListItem struct {
	ID           string `json:"id"`
	Title        string `json:"title"`
	CreatedAt    string `json:"created_at"`
	NumMessages  int    `json:"num_messages"`
	InputTokens  int64  `json:"input_tokens"`
	OutputTokens int64  `json:"output_tokens"`
	WorkingDir   string `json:"working_dir,omitempty"`
	Starred      bool   `json:"starred,omitempty"` // beyond the reference, for the chat page
}

func toSessionJSON(r *sessionRecord, items []sessionItem) *sessionJSON {
	s := &sessionJSON{
		ID: r.ID, Title: r.Title, CreatedAt: r.CreatedAt.Format(time.RFC3339Nano),
		ToolsApproved: r.ToolsApproved, SafetyPolicy: r.SafetyPolicy, PriorSafety: r.PriorSafetyPolicy, Attributes: r.Attributes, Thinking: r.Thinking, WorkingDir: r.WorkingDir,
		SendUserMessage: r.SendUserMessage, MaxIterations: r.MaxIterations, Starred: r.Starred,
		InputTokens: r.InputTokens, OutputTokens: r.OutputTokens, Cost: r.Cost, Permissions: r.Permissions,
	}
	for _, it := range items {
		switch it.Type {
		case "message":
			s.Messages = append(s.Messages, itemJSON{Message: &flatMessage{it.AgentName, it.Message, it.Implicit}})
		case "subsession":
			if it.SubSession != nil {
				s.Messages = append(s.Messages, itemJSON{SubSession: toSessionJSON(it.SubSession, it.SubItems)})
			}
		case "summary":
			s.Messages = append(s.Messages, itemJSON{Summary: it.Summary})
		}
	}
	return s
}

// flatten lists the messages a client shows: system messages and summaries dropped,
// sub-session messages inlined where the sub-session was recorded.
func flatten(items []sessionItem) []flatMessage {
	var out []flatMessage
	for _, it := range items {
		switch it.Type {
		case "message":
			if it.Message != nil && it.Message.Role != "system" {
				out = append(out, flatMessage{it.AgentName, it.Message, it.Implicit})
			}
		case "subsession":
			out = append(out, flatten(it.SubItems)...)
		}
	}
	return out
}

// serveSessions lists root sessions, newest first (?active=true: those running now,
// sessions_manage.go). Without limit the whole list is
// streamed row by row (the reference's array, byte for byte, in memory independent of
// the count). With ?limit=N (and the cursor of the previous page) the body is the same
// array holding one page; when more follow, the Link header (rel="next", RFC 8288)
// and X-Next-Cursor say where. The reference has no paging (API-UPSTREAM.md §3.3), so
// a client that ignores the headers still reads a valid list.
func (s *server) serveSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("active") == "true" {
		s.serveActiveSessions(w, r)
		return
	}
	after, err := parseSessionCursor(q.Get("cursor"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !q.Has("limit") {
		s.streamSessions(w, r, after)
		return
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit < 1 || limit > maxSessionPage {
		s.writeError(w, r, badRequest("limit must be an integer from 1 to %d", maxSessionPage))
		return
	}
	page := make([]sessionListItem, 0, limit)
	var next sessionCursor
	errFull := errors.New("page full")
	err = s.st.eachSession(r.Context(), after, limit+1, func(x sessionSummary, c sessionCursor) error {
		if len(page) == limit {
			return errFull
		}
		page, next = append(page, toSessionListItem(x)), c
		return nil
	})
	if err != nil && !errors.Is(err, errFull) {
		s.writeError(w, r, err)
		return
	}
	if errors.Is(err, errFull) {
		cursor := next.String()
		w.Header().Set("X-Next-Cursor", cursor)
		w.Header().Set("Link", fmt.Sprintf(`</api/sessions?limit=%d&cursor=%s>; rel="next"`, limit, cursor))
	}
	writeJSON(w, http.StatusOK, page)
}

// streamSessions writes the list after the cursor one element at a time, as
// writeJSON would write the whole array. A failure after the first byte can no longer
// be an error status, so it cuts the response, which a client cannot take for a list.
func (s *server) streamSessions(w http.ResponseWriter, r *http.Request, after sessionCursor) {
	bw := bufio.NewWriterSize(w, 32<<10)
	sep := byte('[')
	err := s.st.eachSession(r.Context(), after, -1, func(x sessionSummary, _ sessionCursor) error {
		b, err := json.Marshal(toSessionListItem(x))
		if err != nil {
			return err
		}
		if sep == '[' {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
		}
		bw.WriteByte(sep)
		sep = ','
		_, err = bw.Write(b)
		return err
	})
	switch {
	case err != nil && sep == '[':
		s.writeError(w, r, err)
		return
	case err != nil:
		s.log.Error("listing sessions failed midway", "err", err)
		panic(http.ErrAbortHandler)
	case sep == '[':
		writeJSON(w, http.StatusOK, []sessionListItem{})
		return
	}
	bw.WriteString("]\n")
	bw.Flush()
}

func toSessionListItem(x sessionSummary) sessionListItem {
	return sessionListItem{x.ID, x.Title, x.CreatedAt.Format(time.RFC3339), x.NumMessages, x.InputTokens, x.OutputTokens, x.WorkingDir, x.Starred}
}

// maxSessionPage is the largest ?limit of GET /api/sessions.
const maxSessionPage = 1000

// String is the cursor as clients see it: opaque, URL-safe.
func (c sessionCursor) String() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatFloat(c.day, 'g', -1, 64) + "/" + strconv.FormatInt(c.rowid, 10)))
}

// parseSessionCursor reads a cursor from String; "" is the first page.
func parseSessionCursor(text string) (sessionCursor, error) {
	if text == "" {
		return storeFirstPage, nil
	}
	bad := badRequest("invalid cursor %q: pass the X-Next-Cursor of the previous page", text)
	raw, err := base64.RawURLEncoding.DecodeString(text)
	if err != nil {
		return sessionCursor{}, bad
	}
	day, rowid, ok := strings.Cut(string(raw), "/")
	var c sessionCursor
	var err1, err2 error
	c.day, err1 = strconv.ParseFloat(day, 64)
	c.rowid, err2 = strconv.ParseInt(rowid, 10, 64)
	if !ok || err1 != nil || err2 != nil || math.IsNaN(c.day) || math.IsInf(c.day, 0) {
		return sessionCursor{}, bad
	}
	return c, nil
}

// createSessionRequest is the body of POST /api/sessions; every field is optional.
// safety_policy, agent_model_overrides and custom_models_used are the newer clients'
// (API-UPSTREAM.md §3.2).
type createSessionRequest struct {
	Title               string             `json:"title"`
	ToolsApproved       bool               `json:"tools_approved"`
	SafetyPolicy        string             `json:"safety_policy"`
	MaxIterations       int                `json:"max_iterations"`
	WorkingDir          string             `json:"working_dir"`
	Permissions         *permissionsConfig `json:"permissions"`
	Thinking            bool               `json:"thinking"`
	AgentModelOverrides map[string]string  `json:"agent_model_overrides"`
	CustomModelsUsed    []string           `json:"custom_models_used"`
	Attributes          map[string]string  `json:"attributes"`
}

func (s *server) serveCreateSession(w http.ResponseWriter, r *http.Request) {
	var req createSessionRequest
	if err := s.readJSON(w, r, maxMetadataBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	rec, err := s.createSession(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSessionJSON(rec, nil))
}

// createSession validates req and stores a new root session.
func (s *server) createSession(ctx context.Context, req createSessionRequest) (*sessionRecord, error) {
	req.Title = strings.TrimSpace(req.Title)
	if len(req.Title) > maxTitleLen {
		return nil, badRequest("title is longer than %d bytes", maxTitleLen)
	}
	if req.MaxIterations < 0 {
		return nil, badRequest("max_iterations must not be negative")
	}
	if err := validatePermissions(req.Permissions); err != nil {
		return nil, err
	}
	sp, err := createSafety(req)
	if err != nil {
		return nil, err
	}
	overrides, models, err := createModels(req)
	if err != nil {
		return nil, err
	}
	dir, err := s.sessionDir(req.WorkingDir)
	if err != nil {
		return nil, err
	}
	rec := &sessionRecord{
		ID: newUUID(), Title: req.Title, CreatedAt: time.Now(),
		ToolsApproved: sp.Policy == safetyAutonomous, SafetyPolicy: sp.Policy, Thinking: req.Thinking, SendUserMessage: true,
		MaxIterations: req.MaxIterations, WorkingDir: dir, Permissions: req.Permissions,
		AgentModelOverrides: overrides, CustomModelsUsed: models, Attributes: req.Attributes,
	}
	if err := s.st.createSession(ctx, rec); err != nil {
		return nil, err
	}
	s.events.created(rec.ID)
	return rec, nil
}

// createSafety is the new session's safety mode: safety_policy, with tools_approved
// (old clients) meaning autonomous. Both given and disagreeing is a 400.
func createSafety(req createSessionRequest) (safetyState, error) {
	policy, ok := parseSafetyPolicy(req.SafetyPolicy)
	if !ok {
		return safetyState{}, badRequest("invalid safety_policy: %q (want strict, balanced, restricted or autonomous)", req.SafetyPolicy)
	}
	if req.ToolsApproved {
		if policy != "" && policy != safetyAutonomous {
			return safetyState{}, badRequest("tools_approved true means the autonomous safety mode, not %q: send one of them", policy)
		}
		policy = safetyAutonomous
	}
	return safetyState{Policy: policy}, nil
}

// createModels checks and encodes the per-agent model pins of a new session (and
// bounds its attributes); the run
// applies them as it does a model_picker choice.
func createModels(req createSessionRequest) (overrides, models string, err error) {
	if len(req.AgentModelOverrides) > maxPatterns || len(req.CustomModelsUsed) > maxPatterns || len(req.Attributes) > maxPatterns {
		return "", "", badRequest("agent_model_overrides, custom_models_used and attributes take at most %d entries", maxPatterns)
	}
	if _, ok := req.Attributes[""]; ok {
		return "", "", badRequest("attributes: names must not be empty")
	}
	for agent, ref := range req.AgentModelOverrides {
		if agent == "" || strings.TrimSpace(ref) == "" {
			return "", "", badRequest("agent_model_overrides: agent names and models must not be empty")
		}
	}
	if req.AgentModelOverrides == nil {
		req.AgentModelOverrides = map[string]string{}
	}
	if req.CustomModelsUsed == nil {
		req.CustomModelsUsed = []string{}
	}
	o, _ := json.Marshal(req.AgentModelOverrides)
	m, _ := json.Marshal(req.CustomModelsUsed)
	return string(o), string(m), nil
}

// sessionDir resolves a requested working directory: it must exist and lie inside the
// server's root (the reference accepts any host directory, API.md §11.25). Empty stays
// empty, as in the reference's JSON; the session then works in the root (workDir).
func (s *server) sessionDir(dir string) (string, error) {
	dir = strings.TrimSpace(dir)
	if dir == "" {
		return "", nil
	}
	p := absPath(s.cfg.root, dir)
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", badRequest("invalid working directory: %q does not exist", dir)
	}
	fi, err := os.Stat(real)
	if err != nil || !fi.IsDir() {
		return "", badRequest("invalid working directory: %q is not a directory", dir)
	}
	if !within(s.rootReal, real) {
		return "", badRequest("invalid working directory: %q is outside the server's working directory %s", dir, s.cfg.root)
	}
	return real, nil
}

// workDir is the directory a session's tools and prompt files work in.
func (s *server) workDir(rec *sessionRecord) string {
	return cmp.Or(rec.WorkingDir, s.rootReal)
}

// openSessionDir opens a session's stored working directory from the server's root,
// as every run does: the check made when the session was created does not hold if
// the directory has since been replaced by a symlink to somewhere else. The errors
// are 409s naming the problem. A session working in the server's own directory uses
// the server's root as is (one open and close less per run); done releases the
// directory either way.
func (s *server) openSessionDir(wd string) (dir *os.Root, done func(), err error) {
	rel := "."
	if wd != "" {
		// Stored paths are resolved, but older rows may hold the root as given.
		r, err := filepath.Rel(s.rootReal, wd)
		if err != nil || !filepath.IsLocal(r) {
			r, err = filepath.Rel(s.cfg.root, wd)
		}
		if err != nil || !filepath.IsLocal(r) {
			return nil, nil, conflict("session working_dir %q is outside the server's working directory %s", wd, s.cfg.root)
		}
		rel = r
	}
	if rel == "." {
		return s.rootDir, func() {}, nil
	}
	d, err := s.rootDir.OpenRoot(rel)
	switch {
	case err == nil:
		return d, func() { d.Close() }, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, conflict("session working_dir %q no longer exists", wd)
	}
	return nil, nil, conflict("session working_dir %q now leads outside the server's working directory %s (replaced by a symlink?): %v", wd, s.cfg.root, errors.Unwrap(err))
}

// within reports whether path is root or below it (both cleaned, absolute).
func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

func (s *server) serveSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, err := s.st.session(r.Context(), id)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	items, err := s.st.items(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sessionResponse{
		ID: rec.ID, Title: rec.Title, Messages: flatten(items), CreatedAt: rec.CreatedAt.Format(time.RFC3339Nano),
		ToolsApproved: rec.ToolsApproved, SafetyPolicy: rec.SafetyPolicy, Thinking: rec.Thinking, InputTokens: rec.InputTokens, OutputTokens: rec.OutputTokens,
		WorkingDir: rec.WorkingDir, Permissions: rec.Permissions, Cost: rec.Cost, MaxIterations: rec.MaxIterations,
		Streaming: s.runs.get(id) != nil, Starred: rec.Starred, Attributes: rec.Attributes,
	})
}

// sessionErr gives store not-found errors the user-facing 404 text.
func sessionErr(id string, err error) error {
	if errors.Is(err, errNotFound) {
		return notFound("session not found: %s", id)
	}
	return err
}

func (s *server) serveSetTitle(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var title string
	if !s.readField(w, r, "title", "", &title) {
		return
	}
	if len(title) > maxTitleLen {
		s.writeError(w, r, badRequest("title is longer than %d bytes", maxTitleLen))
		return
	}
	if err := s.st.setTitle(r.Context(), id, title); err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	if rs := s.runs.get(id); rs != nil {
		rs.setTitle(title)
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "title": title})
}

func (s *server) serveSetPermissions(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req struct {
		Permissions *permissionsConfig `json:"permissions"`
	}
	if err := s.readJSON(w, r, maxMetadataBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := validatePermissions(req.Permissions); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.st.setPermissions(r.Context(), id, req.Permissions); err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	if rs := s.runs.get(id); rs != nil {
		rs.setPermissions(req.Permissions)
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "session permissions updated"})
}

// serveToggleTools is the old clients' YOLO switch, now a switch of the safety mode:
// on goes autonomous remembering the mode in prior_safety_policy, off restores it.
func (s *server) serveToggleTools(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	sp, err := s.st.toggleSafety(r.Context(), id)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	if rs := s.runs.get(id); rs != nil {
		rs.setSafety(sp)
	}
	writeJSON(w, http.StatusOK, nil)
}

func (s *server) serveToggleThinking(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := s.st.toggleThinking(r.Context(), id)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	if rs := s.runs.get(id); rs != nil {
		rs.setThinking(v)
	}
	writeJSON(w, http.StatusOK, nil)
}

// validatePermissions rejects malformed patterns so none can silently fail open.
func validatePermissions(p *permissionsConfig) error {
	if p == nil {
		return nil
	}
	n := len(p.Allow) + len(p.Ask) + len(p.Deny)
	if n > maxPatterns {
		return badRequest("too many permission patterns (%d, at most %d)", n, maxPatterns)
	}
	for kind, list := range map[string][]string{"allow": p.Allow, "ask": p.Ask, "deny": p.Deny} {
		for _, pat := range list {
			if len(pat) > maxPatternLen {
				return badRequest("permissions.%s: pattern longer than %d bytes", kind, maxPatternLen)
			}
			if _, err := parsePattern(pat); err != nil {
				return badRequest("permissions.%s: %v", kind, err)
			}
		}
	}
	return nil
}

// resumeRequest is the body of POST /api/sessions/{id}/resume.
type resumeRequest struct {
	Confirmation string `json:"confirmation"`
	Reason       string `json:"reason,omitempty"`
	ToolName     string `json:"tool_name,omitempty"`
	ToolCallID   string `json:"tool_call_id,omitempty"` // optional: the call this answer is about
}

func (s *server) serveResume(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req resumeRequest
	if err := s.readJSON(w, r, maxMetadataBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	switch req.Confirmation {
	case "approve", "approve-tool", "reject":
	default:
		if _, ok := confirmationPolicy(req.Confirmation); !ok {
			s.writeError(w, r, badRequest("confirmation must be approve, approve-balanced, approve-autonomous, approve-tool, reject (or the older approve-session, approve-safe, approve-safer), not %q", req.Confirmation))
			return
		}
	}
	if err := s.answerRun(r.Context(), id, "", req, req.matches, "confirmation", "max_iterations"); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "session resumed"})
}

// matches checks that the answer is about the pending request: a tool_call_id must be
// the pending call's (409 otherwise, so a late answer cannot land on the next
// confirmation), and a tool_name must be its tool's name (400).
func (req resumeRequest) matches(p *pendingRequest) error {
	if req.ToolCallID != "" && (p.kind != "confirmation" || req.ToolCallID != p.call.ID) {
		return conflict("tool call %s is not the one waiting for confirmation", req.ToolCallID)
	}
	if req.ToolName != "" && p.kind == "confirmation" && req.ToolName != p.call.Function.Name {
		return badRequest("tool_name %q is not the tool waiting for confirmation (%s)", req.ToolName, p.call.Function.Name)
	}
	return nil
}

// answerRun delivers an answer to what session id's run is waiting for (requestID: an
// elicitation's id, or "" for the only question), or continues the run from its
// stored question (resume.go): 404 for an unknown session, 409 when nothing waits for
// an answer of one of kinds.
func (s *server) answerRun(ctx context.Context, id, requestID string, v any, check func(*pendingRequest) error, kinds ...string) error {
	if _, err := s.st.session(ctx, id); err != nil {
		return sessionErr(id, err)
	}
	q, err := s.storedQuestion(ctx, id)
	if err != nil {
		return err
	}
	rs := s.runs.get(id)
	if rs != nil && (rs.asking() || q == nil || q.State != "waiting") {
		return rs.answer(requestID, v, check, kinds...)
	}
	if rs != nil { // ending without its answer (the client went away): then continue it
		select {
		case <-rs.done:
		case <-time.After(answerWaitForEnd):
			return conflict("session %s's run is still ending; answer again", id)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.answerStored(ctx, id, requestID, q, v, check, kinds...)
}

func (s *server) serveElicitation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var body struct {
		elicitationResponse
		ElicitationID string `json:"elicitation_id"` // newer clients: which pending request
	}
	if err := s.readJSON(w, r, maxMetadataBody, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	req := body.elicitationResponse
	switch req.Action {
	case "accept", "decline", "cancel":
	default:
		s.writeError(w, r, badRequest("action must be accept, decline or cancel, not %q", req.Action))
		return
	}
	check := func(p *pendingRequest) error {
		if req.Action != "accept" {
			return nil
		}
		if err := checkElicitationContent(p.schema, req.Content); err != nil {
			return badRequest("content does not match the requested schema: %v", err)
		}
		return nil
	}
	if err := s.answerRun(r.Context(), id, body.ElicitationID, req, check, "elicitation"); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, nil)
}

// checkElicitationContent checks content against the flat object schema MCP
// elicitation allows: required properties present, primitive types and enums right.
func checkElicitationContent(schema json.RawMessage, content map[string]any) error {
	if len(schema) == 0 || string(schema) == "null" {
		return nil
	}
	var sc struct {
		Properties map[string]struct {
			Type string `json:"type"`
			Enum []any  `json:"enum"`
		} `json:"properties"`
		Required []string `json:"required"`
	}
	if err := json.Unmarshal(schema, &sc); err != nil {
		return nil // not a schema we can check; the server will judge
	}
	for _, k := range sc.Required {
		if _, ok := content[k]; !ok {
			return fmt.Errorf("missing required field %q", k)
		}
	}
	for k, v := range content {
		p, ok := sc.Properties[k]
		if !ok {
			continue
		}
		okType := true
		switch p.Type {
		case "string":
			_, okType = v.(string)
		case "boolean":
			_, okType = v.(bool)
		case "number":
			_, okType = v.(float64)
		case "integer":
			f, isNum := v.(float64)
			okType = isNum && f == float64(int64(f))
		}
		if !okType {
			return fmt.Errorf("field %q must be of type %s", k, p.Type)
		}
		if len(p.Enum) > 0 && !slices.Contains(p.Enum, v) {
			return fmt.Errorf("field %q must be one of %v", k, p.Enum)
		}
	}
	return nil
}

// runMessage is one element of the run request body. role is ignored: every element
// is a user message, as in the reference.
type runMessage struct {
	Role         string        `json:"role"`
	Content      string        `json:"content"`
	MultiContent []messagePart `json:"multi_content,omitempty"`
}

// runBody is the run request: the reference's bare array of messages, or the newer
// object form {"messages":[…],"model":"…"} (API-UPSTREAM.md §3.1, §5.2), whose
// messages are all new. The first non-space byte decides the form. An object without
// "messages" that carries a message's own keys is refused: it is most likely one
// message sent unwrapped.
type runBody struct {
	messages []runMessage
	model    string // object form: the agent's model from now on ("" = keep)
	object   bool
	read     bool // a body was there at all
}

func (b *runBody) UnmarshalJSON(data []byte) error {
	b.read = true
	data = bytes.TrimSpace(data)
	switch {
	case bytes.HasPrefix(data, []byte("[")):
		var list runWireList
		err := json.Unmarshal(data, &list)
		b.messages = list.messages()
		return err
	case !bytes.HasPrefix(data, []byte("{")):
		return errors.New(`want an array of messages or {"messages": [...]}`)
	}
	var obj struct {
		Messages     runWireList     `json:"messages"`
		Model        string          `json:"model"`
		Role         json.RawMessage `json:"role"`
		Content      json.RawMessage `json:"content"`
		MultiContent json.RawMessage `json:"multi_content"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return err
	}
	if obj.Messages == nil && (obj.Role != nil || obj.Content != nil || obj.MultiContent != nil) {
		return errors.New(`want an array of messages or {"messages": [...]}, not a single message`)
	}
	b.object, b.messages, b.model = true, obj.Messages.messages(), strings.TrimSpace(obj.Model)
	return nil
}

// runWireList is the run body's messages as decoded: large image URLs alias the body
// (bodyString) rather than being copied out of it.
type runWireList []struct {
	runMessage
	MultiContent []struct {
		messagePart
		ImageURL *struct {
			URL    bodyString `json:"url"`
			Detail string     `json:"detail"`
		} `json:"image_url"`
	} `json:"multi_content"`
}

func (l runWireList) messages() []runMessage {
	var out []runMessage
	if l != nil {
		out = make([]runMessage, len(l))
	}
	for i, w := range l {
		out[i] = w.runMessage
		if w.MultiContent != nil {
			out[i].MultiContent = make([]messagePart, len(w.MultiContent))
		}
		for j, p := range w.MultiContent {
			out[i].MultiContent[j] = p.messagePart
			if u := p.ImageURL; u != nil {
				out[i].MultiContent[j].ImageURL = &imageURL{URL: string(u.URL), Detail: u.Detail}
			}
		}
	}
	return out
}

// newMessages is what the body adds to the session.
func (b *runBody) newMessages() []runMessage {
	if b.object {
		return b.messages
	}
	return arrayBodyMessages(b.messages)
}

func (s *server) serveRun(w http.ResponseWriter, r *http.Request) {
	sid, agentID, name := r.PathValue("id"), r.PathValue("agent"), r.PathValue("name")
	var body runBody
	if err := s.readJSON(w, r, s.runBodyLimit(), &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	if !body.read { // both upstream generations answer an empty body so
		s.writeError(w, r, badRequest("invalid request body: EOF"))
		return
	}
	msgs := body.newMessages()
	// The run's short reads are not cancelled with the request: a cancellable context
	// costs each statement goroutines (database/sql's and the driver's) watching it.
	rctx := context.WithoutCancel(r.Context())
	t, runName, err := s.agents.runTeam(agentID, name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer t.release()
	// An unknown agent is refused before the run starts (404, not 409 or 429); which
	// agent starts an unnamed run is known once the history is read.
	if _, _, err := startAgent(t, nil, runName); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel, detached := s.runContext(w, r)
	defer cancel()
	rs, err := s.runs.start(&sessionRecord{ID: sid}, cancel)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer s.runs.finish(rs)
	// The session is read once it is registered (one read, not one before and one
	// after): edits from now on reach rs directly, and history edits wait (409) until
	// the run ends, so ones that landed while the request was being set up are not lost.
	rec, items, err := s.st.sessionAndItems(rctx, sid)
	if err != nil {
		s.writeError(w, r, sessionErr(sid, err))
		return
	}
	if err := checkFileParts(s.workDir(rec), msgs); err != nil {
		s.writeError(w, r, err)
		return
	}
	dir, closeDir, err := s.openSessionDir(rec.WorkingDir)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer closeDir()
	s.teams.remember(sid, agentID, name)
	at, ag, err := startAgent(t, items, runName)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.firstRunThinking(r.Context(), rec, at, ag, items)
	rs.adopt(rec)
	// The object form's model applies before the messages are stored; when it
	// cannot, nothing is stored (API-UPSTREAM.md §3.1).
	if body.model != "" {
		if err := s.applyModelOverride(r.Context(), at, rec, ag, body.model); err != nil {
			s.writeError(w, r, sessionErr(sid, err))
			return
		}
	}
	// The user's messages are stored before the stream opens, all or none, so a
	// database that cannot take them is an HTTP error the client can retry (503 with
	// Retry-After when busy), never a stream that started and then failed. A question
	// a run before this one left unanswered goes with them: it is abandoned, and the
	// model sees its call as canceled.
	user := userMessages(msgs)
	positions, err := s.st.startRunMessages(r.Context(), sid, user)
	if err != nil {
		s.writeError(w, r, sessionErr(sid, err))
		return
	}

	// Every event is logged; a detached client also sees each one's log id, to resume
	// from after a cut (GET …/events with Last-Event-ID).
	elog, err := s.events.acquire(rctx, sid, true)
	if err != nil {
		s.log.Warn("the event log is unavailable; this run is not logged", "session", sid, "err", err)
	}
	defer s.events.release(elog)
	sink := openSSESink(w, cmp.Or(s.cfg.heartbeat, heartbeatEvery))
	sink.log, sink.ids = elog, detached && elog != nil
	defer sink.close()
	rn := &runner{s: s, team: at, perms: t.file.Permissions, rs: rs, sink: sink, root: rec, dir: dir, save: &runSaver{st: s.st, log: s.log},
		deltas: body.object, queue: s.queues.open(sid), source: agentID, question: &runQuestion{}}
	rn.run(ctx, ag, user, positions, items)
}

// firstRunThinking turns thinking on for a session's first run when the agent's model
// configures a thinking budget, as the reference does; later toggles are never
// overridden. A failed write leaves the run without it.
func (s *server) firstRunThinking(ctx context.Context, rec *sessionRecord, at *team, ag *agentConfig, items []sessionItem) {
	if len(items) > 0 || rec.Thinking || !thinkingConfigured(at.file, ag, s.cfg.getenv) {
		return
	}
	if err := s.st.setThinking(ctx, rec.ID, true); err != nil {
		s.log.Warn("turning thinking on for the first run failed; the run goes on without it", "session", rec.ID, "err", err)
		return
	}
	rec.Thinking = true
}

// userMessages are a run body's new messages as the user's chat messages.
func userMessages(msgs []runMessage) []chatMessage {
	user := make([]chatMessage, len(msgs))
	for i, m := range msgs {
		user[i] = chatMessage{Role: "user", Content: m.Content, MultiContent: m.MultiContent, CreatedAt: nowRFC3339()}
	}
	return user
}

// runBodyLimit is the size limit of a run request body: --max-request-size, else
// maxRunBody (generous: images travel inline).
func (s *server) runBodyLimit() int64 {
	if s.cfg.maxRunBody > 0 {
		return s.cfg.maxRunBody
	}
	return maxRunBody
}

// arrayBodyMessages is what a bare-array run body adds to the session: its last
// element only. docker-agent's remote client keeps just the user's messages and
// re-sends all of them every turn, so the earlier elements are already stored; the
// reference records only the last too (but still shows the model the repeats, which
// we do not). An object body {"messages":[…]} adds every message it holds.
func arrayBodyMessages(body []runMessage) []runMessage {
	if len(body) > 1 {
		return body[len(body)-1:]
	}
	return body
}

// startAgent picks the agent a run starts with, and its team: the named one; else
// the agent that last answered in this session (so a handoff sticks across runs,
// also one to an external team); else the team's default (root, else the first —
// the reference hard-codes root).
func startAgent(t *team, items []sessionItem, name string) (*team, *agentConfig, error) {
	if name != "" {
		if at, ag := t.locate(name); ag != nil {
			return at, ag, nil
		}
		return nil, nil, notFound("agent not found: %s (available agents: %s)", name, t.agentNames())
	}
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		if it.Type == "message" && it.Message != nil && it.Message.Role == "assistant" {
			if at, ag := t.locate(it.AgentName); ag != nil {
				return at, ag, nil
			}
			break
		}
	}
	return t, t.file.defaultAgent(), nil
}

// thinkingConfigured reports whether the agent's model sets a thinking budget that is
// not disabled (0 or "none").
func thinkingConfigured(f *agentFile, ag *agentConfig, getenv func(string) string) bool {
	spec, err := f.modelSpec(ag.Model, getenv)
	if err != nil {
		return false
	}
	switch b := spec.ThinkingBudget.(type) {
	case int64:
		return b != 0
	case string:
		return b != "" && !strings.EqualFold(b, "none")
	}
	return false
}

// checkFileParts refuses file attachments outside the session's working directory:
// the reference uploads any server file a caller names (API.md §11.24).
func checkFileParts(dir string, msgs []runMessage) error {
	for _, m := range msgs {
		for _, p := range m.MultiContent {
			if p.File == nil || p.File.Path == "" {
				continue
			}
			path := absPath(dir, p.File.Path)
			real, err := filepath.EvalSymlinks(path)
			if err != nil || !within(dir, real) {
				return badRequest("file %q is not inside the session's working directory", p.File.Path)
			}
		}
	}
	return nil
}
