package main

// sessions.go: the session routes (API.md §2.4–2.10, §7) and their JSON shapes.

import (
	"cmp"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// sessionJSON is the reference's full session.Session document: the answer to
// POST /api/sessions, and the sub_session of sub_session_completed.
type sessionJSON struct {
	ID              string             `json:"id"`
	Title           string             `json:"title"`
	Messages        []itemJSON         `json:"messages"`
	CreatedAt       string             `json:"created_at"`
	ToolsApproved   bool               `json:"tools_approved"`
	Thinking        bool               `json:"thinking"`
	HideToolResults bool               `json:"hide_tool_results"`
	WorkingDir      string             `json:"working_dir,omitempty"`
	SendUserMessage bool               `json:"SendUserMessage"`
	MaxIterations   int                `json:"max_iterations,omitempty"`
	Starred         bool               `json:"starred"`
	InputTokens     int64              `json:"input_tokens"`
	OutputTokens    int64              `json:"output_tokens"`
	Cost            float64            `json:"cost,omitempty"`
	Permissions     *permissionsConfig `json:"permissions,omitempty"`
}

// itemJSON is one session.Item: exactly one of message, sub_session or summary.
type itemJSON struct {
	Message    *flatMessage `json:"message,omitempty"`
	SubSession *sessionJSON `json:"sub_session,omitempty"`
	Summary    string       `json:"summary,omitempty"`
}

// flatMessage is a session.Message: the chat message with the agent that wrote it.
type flatMessage struct {
	AgentName string       `json:"agentName"`
	Message   *chatMessage `json:"message"`
	Implicit  bool         `json:"implicit,omitempty"`
}

// sessionResponse is GET /api/sessions/{id}. Beyond the reference it also reports
// cost and max_iterations when set (API.md §11.20).
type sessionResponse struct {
	ID            string             `json:"id"`
	Title         string             `json:"title"`
	Messages      []flatMessage      `json:"messages,omitempty"`
	CreatedAt     string             `json:"created_at"`
	ToolsApproved bool               `json:"tools_approved"`
	Thinking      bool               `json:"thinking"`
	InputTokens   int64              `json:"input_tokens"`
	OutputTokens  int64              `json:"output_tokens"`
	WorkingDir    string             `json:"working_dir,omitempty"`
	Permissions   *permissionsConfig `json:"permissions,omitempty"`
	Cost          float64            `json:"cost,omitempty"`
	MaxIterations int                `json:"max_iterations,omitempty"`
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
}

func toSessionJSON(r *sessionRecord, items []sessionItem) *sessionJSON {
	s := &sessionJSON{
		ID: r.ID, Title: r.Title, CreatedAt: r.CreatedAt.Format(time.RFC3339Nano),
		ToolsApproved: r.ToolsApproved, Thinking: r.Thinking, WorkingDir: r.WorkingDir,
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

func (s *server) serveSessions(w http.ResponseWriter, r *http.Request) {
	list, err := s.st.listSessions(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out := make([]sessionListItem, 0, len(list))
	for _, x := range list {
		out = append(out, sessionListItem{x.ID, x.Title, x.CreatedAt.Format(time.RFC3339), x.NumMessages, x.InputTokens, x.OutputTokens, x.WorkingDir})
	}
	writeJSON(w, http.StatusOK, out)
}

// createSessionRequest is the body of POST /api/sessions; every field is optional.
type createSessionRequest struct {
	Title         string             `json:"title"`
	ToolsApproved bool               `json:"tools_approved"`
	MaxIterations int                `json:"max_iterations"`
	WorkingDir    string             `json:"working_dir"`
	Permissions   *permissionsConfig `json:"permissions"`
	Thinking      bool               `json:"thinking"`
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
	if len(req.Title) > maxTitleLen {
		return nil, badRequest("title is longer than %d bytes", maxTitleLen)
	}
	if req.MaxIterations < 0 {
		return nil, badRequest("max_iterations must not be negative")
	}
	if err := validatePermissions(req.Permissions); err != nil {
		return nil, err
	}
	dir, err := s.sessionDir(req.WorkingDir)
	if err != nil {
		return nil, err
	}
	rec := &sessionRecord{
		ID: newUUID(), Title: req.Title, CreatedAt: time.Now(),
		ToolsApproved: req.ToolsApproved, Thinking: req.Thinking, SendUserMessage: true,
		MaxIterations: req.MaxIterations, WorkingDir: dir, Permissions: req.Permissions,
		AgentModelOverrides: "{}", CustomModelsUsed: "[]",
	}
	if err := s.st.createSession(ctx, rec); err != nil {
		return nil, err
	}
	return rec, nil
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
		return "", badRequest("working_dir %q does not exist", dir)
	}
	fi, err := os.Stat(real)
	if err != nil || !fi.IsDir() {
		return "", badRequest("working_dir %q is not a directory", dir)
	}
	if !within(s.rootReal, real) {
		return "", badRequest("working_dir %q is outside the server's working directory %s", dir, s.cfg.root)
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
// are 409s naming the problem.
func (s *server) openSessionDir(wd string) (*os.Root, error) {
	rel := "."
	if wd != "" {
		// Stored paths are resolved, but older rows may hold the root as given.
		r, err := filepath.Rel(s.rootReal, wd)
		if err != nil || !filepath.IsLocal(r) {
			r, err = filepath.Rel(s.cfg.root, wd)
		}
		if err != nil || !filepath.IsLocal(r) {
			return nil, conflict("session working_dir %q is outside the server's working directory %s", wd, s.cfg.root)
		}
		rel = r
	}
	d, err := s.rootDir.OpenRoot(rel)
	switch {
	case err == nil:
		return d, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, conflict("session working_dir %q no longer exists", wd)
	}
	return nil, conflict("session working_dir %q now leads outside the server's working directory %s (replaced by a symlink?): %v", wd, s.cfg.root, errors.Unwrap(err))
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
		ToolsApproved: rec.ToolsApproved, Thinking: rec.Thinking, InputTokens: rec.InputTokens, OutputTokens: rec.OutputTokens,
		WorkingDir: rec.WorkingDir, Permissions: rec.Permissions, Cost: rec.Cost, MaxIterations: rec.MaxIterations,
	})
}

// sessionErr gives store not-found errors the user-facing 404 text.
func sessionErr(id string, err error) error {
	if errors.Is(err, errNotFound) {
		return notFound("session not found: %s", id)
	}
	return err
}

func (s *server) serveDeleteSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	// Stop the current run first so its last writes cannot race the delete; the
	// store refuses updates to a missing row, so nothing resurrects the session.
	s.runs.cancel(id)
	if err := s.st.deleteSession(r.Context(), id); err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "session deleted"})
}

func (s *server) serveSetTitle(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req struct {
		Title *string `json:"title"`
	}
	if err := s.readJSON(w, r, maxMetadataBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Title == nil {
		s.writeError(w, r, badRequest("title is required"))
		return
	}
	if len(*req.Title) > maxTitleLen {
		s.writeError(w, r, badRequest("title is longer than %d bytes", maxTitleLen))
		return
	}
	if err := s.st.setTitle(r.Context(), id, *req.Title); err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	if rs := s.runs.get(id); rs != nil {
		rs.setTitle(*req.Title)
	}
	writeJSON(w, http.StatusOK, map[string]string{"id": id, "title": *req.Title})
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

func (s *server) serveToggleTools(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	v, err := s.st.toggleToolsApproved(r.Context(), id)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	if rs := s.runs.get(id); rs != nil {
		rs.setToolsApproved(v)
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
