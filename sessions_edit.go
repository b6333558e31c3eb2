package main

// sessions_edit.go: the routes that change a session's history directly
// (API-UPSTREAM.md §3.10, §3.11): fork, add or replace a message, add a summary.
// Message edits and summaries are refused (409) while a run holds the session: the
// run's in-memory conversation would not see them and its next write could
// interleave with them.

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// maxSummaryModel is the longest model name a summary may be attributed to.
const maxSummaryModel = 256

// serveFork copies a session up to (not including) one of its user messages into a
// new root session, and answers with the new session as GET /api/sessions/{id} does.
func (s *server) serveFork(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var index int
	if !s.readField(w, r, "user_message_index", "", &index) {
		return
	}
	fork, err := s.fork(r.Context(), id, index)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	r = r.Clone(r.Context())
	r.SetPathValue("id", fork.ID)
	s.serveSession(w, r)
}

// fork stores the copy of session id before its n-th user message.
func (s *server) fork(ctx context.Context, id string, n int) (*sessionRecord, error) {
	rec, err := s.st.session(ctx, id)
	if err != nil {
		return nil, sessionErr(id, err)
	}
	items, err := s.st.items(ctx, id)
	if err != nil {
		return nil, sessionErr(id, err)
	}
	cut, err := forkCut(items, n)
	if err != nil {
		return nil, err
	}
	kept := items[:cut]
	fork := *rec
	fork.ID, fork.ParentID, fork.CreatedAt, fork.Starred = s.st.newID(), "", time.Now(), false
	fork.InputTokens, fork.OutputTokens, fork.Cost = forkUsage(kept)
	// The title's number depends on the titles stored, so forks take turns.
	s.forks.Lock()
	defer s.forks.Unlock()
	if fork.Title, err = s.forkTitle(ctx, rec.Title); err != nil {
		return nil, err
	}
	if err := s.st.forkSession(ctx, &fork, kept); err != nil {
		return nil, sessionErr(id, err)
	}
	return &fork, nil
}

// forkCut is the index in items of the n-th (0-based) user message of the session's
// flattened list, which counts sub-sessions' user messages too; a fork cannot start
// inside a sub-session.
func forkCut(items []sessionItem, n int) (int, error) {
	seen := 0
	for i, it := range items {
		switch {
		case n < 0:
		case isUserItem(it):
			if seen == n {
				return i, nil
			}
			seen++
		case it.Type == "subsession":
			k := countUserItems(it.SubItems)
			if n < seen+k {
				return 0, badRequest("fork user-message index falls inside a sub-session at ordinal %d", n)
			}
			seen += k
		}
	}
	return 0, badRequest("fork user-message index out of range: %d", n)
}

func isUserItem(it sessionItem) bool {
	return it.Type == "message" && it.Message != nil && it.Message.Role == "user"
}

func countUserItems(items []sessionItem) int {
	n := 0
	for _, it := range items {
		if isUserItem(it) {
			n++
		}
		n += countUserItems(it.SubItems)
	}
	return n
}

// forkUsage is what a fork of items has spent: the token counters of its last answer
// (the session's counters are the last call's) and the cost of its own answers.
func forkUsage(items []sessionItem) (in, out int64, cost float64) {
	for _, it := range items {
		m := it.Message
		if it.Type != "message" || m == nil || m.Role != "assistant" {
			continue
		}
		cost += m.Cost
		if u := m.Usage; u != nil {
			in, out = u.InputTokens+u.CachedInputTokens+u.CacheWriteTokens, u.OutputTokens
		}
	}
	return in, out, cost
}

// forkTitle is "<title> (fork N)" with N one more than the highest N stored for the
// same title; a fork of a fork is numbered in its original's family.
func (s *server) forkTitle(ctx context.Context, title string) (string, error) {
	base := title
	if i := strings.LastIndex(base, " (fork "); i >= 0 && strings.HasSuffix(base, ")") {
		if _, err := strconv.Atoi(base[i+len(" (fork ") : len(base)-1]); err == nil {
			base = base[:i]
		}
	}
	n := 1
	err := s.st.eachSession(ctx, storeFirstPage, -1, func(x sessionSummary, _ sessionCursor) error {
		rest, ok := strings.CutPrefix(x.Title, base+" (fork ")
		if k, err := strconv.Atoi(strings.TrimSuffix(rest, ")")); ok && err == nil && strings.HasSuffix(rest, ")") && k >= n {
			n = k + 1
		}
		return nil
	})
	return strings.TrimSpace(base + " (fork " + strconv.Itoa(n) + ")"), err
}

// holdSession claims session id as a run does, so no run starts while history is
// edited; 404 for an unknown session, 409 while a run holds it. release ends the claim.
func (s *server) holdSession(ctx context.Context, id string) (rec *sessionRecord, release func(), err error) {
	if rec, err = s.st.session(ctx, id); err != nil {
		return nil, nil, sessionErr(id, err)
	}
	rs, err := s.runs.start(rec, func() {})
	var he *httpError
	if errors.As(err, &he) && he.status == http.StatusConflict {
		return nil, nil, conflict("session is already processing a request")
	} else if err != nil {
		return nil, nil, err
	}
	return rec, func() { s.runs.finish(rs) }, nil
}

// messageEdit is the body of POST …/messages and PATCH …/messages/{msg_id}: a
// session.Message, whose agent key is agent_name (newer clients) or agentName.
type messageEdit struct {
	Message *struct {
		AgentName    string       `json:"agent_name"`
		AgentNameOld string       `json:"agentName"`
		Message      *chatMessage `json:"message"`
	} `json:"message"`
}

// read decodes and checks the body; it returns the agent name and the message.
func (e *messageEdit) read(s *server, w http.ResponseWriter, r *http.Request) (string, *chatMessage, error) {
	if err := s.readJSON(w, r, s.runBodyLimit(), e); err != nil {
		return "", nil, err
	}
	if e.Message == nil {
		return "", nil, badRequest("message is required")
	}
	m := e.Message.Message
	if m == nil {
		return "", nil, badRequest("message.message is required")
	}
	switch m.Role {
	case "user", "assistant", "tool", "system":
	default:
		return "", nil, badRequest("message.message.role must be user, assistant, tool or system, not %q", m.Role)
	}
	if m.CreatedAt == "" {
		m.CreatedAt = nowRFC3339()
	}
	return cmp.Or(e.Message.AgentName, e.Message.AgentNameOld), m, nil
}

// serveAddMessage appends a message to a session's history.
func (s *server) serveAddMessage(w http.ResponseWriter, r *http.Request) {
	s.editMessage(w, r, func(ctx context.Context, id, agent string, m *chatMessage) (int, error) {
		_, _, err := s.st.appendMessage(ctx, id, agent, m, false)
		return http.StatusCreated, err
	})
}

// serveUpdateMessage replaces the message at position msg_id: its index in the
// session's items, as in the full session document and user_message's
// session_position (API-UPSTREAM.md leaves the meaning of msg_id open).
func (s *server) serveUpdateMessage(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("msg_id")
	pos, err := strconv.Atoi(raw)
	if err != nil || pos < 0 {
		s.writeError(w, r, badRequest("invalid message ID %q: want the message's position in the session (0, 1, …)", raw))
		return
	}
	s.editMessage(w, r, func(ctx context.Context, id, agent string, m *chatMessage) (int, error) {
		return http.StatusOK, s.st.replaceMessage(ctx, id, pos, agent, m)
	})
}

// editMessage reads a message edit, holds the session and applies write.
func (s *server) editMessage(w http.ResponseWriter, r *http.Request, write func(ctx context.Context, id, agent string, m *chatMessage) (int, error)) {
	id := r.PathValue("id")
	var e messageEdit
	agent, m, err := e.read(s, w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rec, release, err := s.holdSession(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	// A file part is read from disk when the history is next sent to a model.
	if err := checkFileParts(s.workDir(rec), []runMessage{{MultiContent: m.MultiContent}}); err != nil {
		s.writeError(w, r, err)
		return
	}
	status, err := write(r.Context(), id, agent, m)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, map[string]string{"status": map[int]string{http.StatusCreated: "added", http.StatusOK: "updated"}[status]})
}

// summaryRequest is the body of POST …/summaries.
type summaryRequest struct {
	Summary        string  `json:"summary"`
	FirstKeptEntry int     `json:"first_kept_entry"`
	Tokens         int     `json:"tokens"` // legacy alias of first_kept_entry
	Cost           float64 `json:"cost"`
	Model          string  `json:"model"`
	Usage          *struct {
		InputTokens       int64 `json:"input_tokens"`
		OutputTokens      int64 `json:"output_tokens"`
		CachedInputTokens int64 `json:"cached_input_tokens"`
		CachedWriteTokens int64 `json:"cached_write_tokens"`
		ReasoningTokens   int64 `json:"reasoning_tokens"`
	} `json:"usage"`
}

func (req *summaryRequest) check() error {
	switch {
	case strings.TrimSpace(req.Summary) == "":
		return badRequest("summary is required")
	case req.FirstKeptEntry < 0 || req.Tokens < 0:
		return badRequest("first_kept_entry must not be negative")
	case req.Cost < 0:
		return badRequest("cost must not be negative")
	case len(req.Model) > maxSummaryModel:
		return badRequest("model is longer than %d bytes", maxSummaryModel)
	case strings.ContainsFunc(req.Model, unicode.IsControl):
		return badRequest("model must not contain control characters")
	}
	if u := req.Usage; u != nil && (u.InputTokens < 0 || u.OutputTokens < 0 || u.CachedInputTokens < 0 || u.CachedWriteTokens < 0 || u.ReasoningTokens < 0) {
		return badRequest("usage token counts must not be negative")
	}
	return nil
}

// serveAddSummary adds a compaction summary: later runs send the model the summary
// instead of what came before it, except the items from first_kept_entry on, which
// are kept after the summary as compaction keeps them (implicit copies).
func (s *server) serveAddSummary(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req summaryRequest
	if err := s.readJSON(w, r, s.runBodyLimit(), &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := req.check(); err != nil {
		s.writeError(w, r, err)
		return
	}
	_, release, err := s.holdSession(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer release()
	items, err := s.st.items(r.Context(), id)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	first := cmp.Or(req.FirstKeptEntry, req.Tokens)
	if first > len(items) {
		s.writeError(w, r, badRequest("first_kept_entry %d is beyond the session's %d items", first, len(items)))
		return
	}
	var kept []sessionItem
	if first > 0 {
		for _, it := range items[first:] {
			if it.Type == "message" && it.Message != nil && it.Message.Role != "system" {
				kept = append(kept, it)
			}
		}
	}
	if err := s.st.addSummary(r.Context(), id, req.Summary, kept, req.Cost); err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"status": "added"})
}
