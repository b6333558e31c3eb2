package main

// sessions_manage.go: the session routes newer docker-agent clients use beside the
// old ones (API-UPSTREAM.md §3.3–3.5, §3.7, §3.12, §3.14): safety mode, star, token
// counters, the list of running sessions, delete-and-wait, recovery and batch
// export/delete, health and readiness.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/url"
	"time"
)

// Limits of the newer routes.
const (
	maxBatchSessions    = 1000             // session_ids per batch request
	deleteWaitDefault   = 10 * time.Second // DELETE …?wait=true without timeout
	readyWaitDefault    = 30 * time.Second // GET /api/ready without timeout
	maxWaitTimeout      = 5 * time.Minute  // cap of both timeouts
	readyStoreCheckTime = 100 * time.Millisecond
)

// serveSetSafetyPolicy is PATCH …/safety-policy (API-UPSTREAM.md §3.7). Unlike the
// reference, an unknown session is 404, not 400.
func (s *server) serveSetSafetyPolicy(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var value string
	if !s.readField(w, r, "safety_policy", ` (strict, balanced, restricted, autonomous, or "" for the default)`, &value) {
		return
	}
	policy, ok := parseSafetyPolicy(value)
	if !ok {
		s.writeError(w, r, badRequest("invalid safety_policy: %q (want strict, balanced, restricted or autonomous)", value))
		return
	}
	// A live run's state is authoritative (a confirmation may have changed it since
	// the row was read); without one the row is, changed in one transaction.
	var err error
	if rs := s.runs.get(id); rs != nil {
		err = s.st.setSafety(r.Context(), id, rs.switchSafety(policy))
	} else {
		_, err = s.st.changeSafety(r.Context(), id, func(sp safetyState) safetyState { return sp.set(policy) })
	}
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "session safety policy updated"})
}

// serveSetStarred is PATCH …/starred {"starred": bool}.
func (s *server) serveSetStarred(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var starred bool
	if !s.readField(w, r, "starred", " (true or false)", &starred) {
		return
	}
	if err := s.st.setStarred(r.Context(), id, starred); err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "updated"})
}

// serveSetTokens is PATCH …/tokens {"input_tokens","output_tokens","cost"?}: an
// embedder's own accounting. While the session runs it is a 409, since the run's next
// usage report would silently replace it.
func (s *server) serveSetTokens(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req struct {
		InputTokens  *int64   `json:"input_tokens"`
		OutputTokens *int64   `json:"output_tokens"`
		Cost         *float64 `json:"cost"`
	}
	if err := s.readJSON(w, r, maxMetadataBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	switch {
	case req.InputTokens == nil || req.OutputTokens == nil:
		s.writeError(w, r, badRequest("input_tokens and output_tokens are required"))
		return
	case *req.InputTokens < 0 || *req.OutputTokens < 0:
		s.writeError(w, r, badRequest("token counts must not be negative"))
		return
	case req.Cost != nil && (*req.Cost < 0 || math.IsInf(*req.Cost, 0)):
		s.writeError(w, r, badRequest("cost must be a non-negative number"))
		return
	}
	if s.runs.get(id) != nil {
		s.writeError(w, r, conflict("session %s is running; set its token counters when it is idle", id))
		return
	}
	if err := s.st.setTokens(r.Context(), id, *req.InputTokens, *req.OutputTokens, req.Cost); err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "updated"})
}

// activeSessionItem is an element of GET /api/sessions?active=true: a session with a
// run in this process. num_messages is not counted (always 0), as in the reference.
type activeSessionItem struct {
	sessionListItem
	Streaming bool `json:"streaming"`
}

// serveActiveSessions lists the sessions running now, oldest id first; [] when none.
func (s *server) serveActiveSessions(w http.ResponseWriter, r *http.Request) {
	out := []activeSessionItem{}
	for _, id := range s.runs.ids() {
		rec, err := s.st.session(r.Context(), id)
		if errors.Is(err, errNotFound) {
			continue // deleted while its run stops
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		item := sessionListItem{ID: rec.ID, Title: rec.Title, CreatedAt: rec.CreatedAt.Format(time.RFC3339),
			InputTokens: rec.InputTokens, OutputTokens: rec.OutputTokens, WorkingDir: rec.WorkingDir, Starred: rec.Starred}
		out = append(out, activeSessionItem{item, true})
	}
	writeJSON(w, http.StatusOK, out)
}

// waitParam reads a Go duration query parameter: def when absent, capped at
// maxWaitTimeout; a bad or negative value is a 400 naming the parameter.
func waitParam(q url.Values, name string, def time.Duration) (time.Duration, error) {
	if !q.Has(name) {
		return def, nil
	}
	d, err := time.ParseDuration(q.Get(name))
	if err != nil {
		return 0, badRequest("invalid %s: %v", name, err)
	}
	if d < 0 {
		return 0, badRequest("invalid %s: %s is negative", name, q.Get(name))
	}
	return min(d, maxWaitTimeout), nil
}

// serveDeleteSession deletes a session. Without ?wait=true (old clients) it stops the
// run, waits for it to end, then deletes, as always. With ?wait=true it waits at most
// ?timeout (default 10s) for the run to stop, deletes either way, and answers 202 when
// the run is still stopping (its late writes are dropped: the row is gone). timeout is
// checked first in both forms, so a bad one deletes nothing.
func (s *server) serveDeleteSession(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	timeout, err := waitParam(q, "timeout", deleteWaitDefault)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	stopped := true
	if q.Get("wait") == "true" {
		stopped = s.runs.stop(r.Context(), id, timeout)
	} else {
		// The store refuses updates to a missing row, so nothing resurrects the session.
		s.runs.cancel(id)
	}
	if err := s.deleteSession(context.WithoutCancel(r.Context()), id); err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	if !stopped {
		writeJSON(w, http.StatusAccepted, map[string]string{"message": "session deleted, stop still in progress"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "session deleted"})
}

// deleteSession deletes session id once its run has been told to stop: its background
// agents stop, and viewers of its event log get session_exited.
func (s *server) deleteSession(ctx context.Context, id string) error {
	s.bg.stopSession(id)
	s.queues.drop(id)
	elog, err := s.events.acquire(ctx, id, false)
	if err != nil {
		return err
	}
	defer s.events.release(elog)
	if err := s.st.deleteSession(ctx, id); err != nil {
		return err
	}
	s.events.exit(elog)
	return nil
}

// batchRequest is the body of POST /api/sessions/batch/{delete,export}; format is
// ignored (the export is always JSON), as in the reference.
type batchRequest struct {
	SessionIDs []string `json:"session_ids"`
	Format     string   `json:"format,omitempty"`
}

func (s *server) readBatch(w http.ResponseWriter, r *http.Request) ([]string, error) {
	var req batchRequest
	if err := s.readJSON(w, r, maxMetadataBody, &req); err != nil {
		return nil, err
	}
	if len(req.SessionIDs) == 0 {
		return nil, badRequest("session_ids cannot be empty")
	}
	if len(req.SessionIDs) > maxBatchSessions {
		return nil, badRequest("session_ids holds %d ids; at most %d per request", len(req.SessionIDs), maxBatchSessions)
	}
	return req.SessionIDs, nil
}

// serveBatchDelete deletes each session as DELETE does, without waiting for runs to
// stop; the answer is 200 with what failed.
func (s *server) serveBatchDelete(w http.ResponseWriter, r *http.Request) {
	ids, err := s.readBatch(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var res struct {
		Deleted   int      `json:"deleted_count"`
		Failed    int      `json:"failed_count"`
		FailedIDs []string `json:"failed_ids,omitempty"`
	}
	ctx := context.WithoutCancel(r.Context())
	for _, id := range ids {
		s.runs.stop(ctx, id, 0)
		if err := s.deleteSession(ctx, id); err != nil {
			if !errors.Is(err, errNotFound) {
				s.log.Warn("batch delete: deleting a session failed", "session", id, "err", err)
			}
			res.Failed++
			res.FailedIDs = append(res.FailedIDs, id)
			continue
		}
		res.Deleted++
	}
	writeJSON(w, http.StatusOK, res)
}

// exportedSession is a session in a batch export; keys in the reference's (sorted) order.
type exportedSession struct {
	CreatedAt     string        `json:"created_at"`
	ID            string        `json:"id"`
	InputTokens   int64         `json:"input_tokens"`
	Messages      []flatMessage `json:"messages"`
	OutputTokens  int64         `json:"output_tokens"`
	Title         string        `json:"title"`
	ToolsApproved bool          `json:"tools_approved"`
	WorkingDir    string        `json:"working_dir"`
}

// recoveryJSON is GET …/recovery: the export of one session, with its permissions.
type recoveryJSON struct {
	CreatedAt     string             `json:"created_at"`
	ID            string             `json:"id"`
	InputTokens   int64              `json:"input_tokens"`
	Messages      []flatMessage      `json:"messages"`
	OutputTokens  int64              `json:"output_tokens"`
	Permissions   *permissionsConfig `json:"permissions"`
	Title         string             `json:"title"`
	ToolsApproved bool               `json:"tools_approved"`
	WorkingDir    string             `json:"working_dir"`
}

// exportSession loads session id for an export.
func (s *server) exportSession(ctx context.Context, rec *sessionRecord) (exportedSession, error) {
	items, err := s.st.items(ctx, rec.ID)
	if err != nil {
		return exportedSession{}, err
	}
	msgs := flatten(items)
	if msgs == nil {
		msgs = []flatMessage{}
	}
	return exportedSession{CreatedAt: rec.CreatedAt.Format(time.RFC3339Nano), ID: rec.ID, InputTokens: rec.InputTokens,
		Messages: msgs, OutputTokens: rec.OutputTokens, Title: rec.Title, ToolsApproved: rec.ToolsApproved, WorkingDir: rec.WorkingDir}, nil
}

// serveRecovery is GET …/recovery. An unknown session is 404 (the reference: 500).
func (s *server) serveRecovery(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, err := s.st.session(r.Context(), id)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	x, err := s.exportSession(r.Context(), rec)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	writeJSON(w, http.StatusOK, recoveryJSON{x.CreatedAt, x.ID, x.InputTokens, x.Messages, x.OutputTokens, rec.Permissions, x.Title, x.ToolsApproved, x.WorkingDir})
}

// serveBatchExport is POST /api/sessions/batch/export: the sessions that exist, in
// the order asked, unknown ones skipped. Sessions are written one at a time, so the
// memory used is that of the largest, not of all of them.
func (s *server) serveBatchExport(w http.ResponseWriter, r *http.Request) {
	ids, err := s.readBatch(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var recs []*sessionRecord
	for _, id := range ids {
		rec, err := s.st.session(r.Context(), id)
		if errors.Is(err, errNotFound) {
			continue
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		recs = append(recs, rec)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	bw.WriteString(`{"export_format":"json","session_count":`)
	count, _ := json.Marshal(len(recs))
	bw.Write(count)
	bw.WriteString(`,"sessions":[`)
	for i, rec := range recs {
		x, err := s.exportSession(r.Context(), rec)
		var b []byte
		if err == nil {
			b, err = json.Marshal(x)
		}
		if err != nil {
			// The count is already sent: a cut response cannot be taken for a whole export.
			s.log.Error("batch export failed midway", "session", rec.ID, "err", err)
			panic(http.ErrAbortHandler)
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(b)
	}
	ts, _ := json.Marshal(time.Now().UTC().Format(time.RFC3339))
	bw.WriteString(`],"timestamp":`)
	bw.Write(ts)
	bw.WriteString("}\n")
	bw.Flush()
}

// serveHealth is GET /health: the process answers. Public, like /ready.
func (s *server) serveHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": ""})
}

// readyJSON is the answer of GET /ready.
type readyJSON struct {
	Ready          bool   `json:"ready"`
	ActiveSessions int    `json:"active_sessions"`
	StoreConnected bool   `json:"store_connected"`
	ToolsetHealth  string `json:"toolset_health"`
	LatestError    string `json:"latest_error,omitempty"`
}

// serveReadyProbe is GET /ready: 200 while the session database answers (a query
// still running after 100 ms counts as connected, as in the reference), else 503.
// active_sessions is the number of running sessions (the reference counts stored
// ones, which says nothing about load).
func (s *server) serveReadyProbe(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyStoreCheckTime)
	defer cancel()
	if err := s.st.ping(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("readiness: session database unavailable", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, readyJSON{ToolsetHealth: "unavailable", LatestError: "store disconnected"})
		return
	}
	writeJSON(w, http.StatusOK, readyJSON{Ready: true, ActiveSessions: len(s.runs.ids()), StoreConnected: true, ToolsetHealth: "ok"})
}

// serveAPIReady is GET /api/ready?timeout=: it answers once a run has started in this
// process (creating a session is not enough), waiting at most timeout (default 30s).
func (s *server) serveAPIReady(w http.ResponseWriter, r *http.Request) {
	timeout, err := waitParam(r.URL.Query(), "timeout", readyWaitDefault)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.runs.started:
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	case <-t.C:
		writeJSON(w, http.StatusServiceUnavailable, errorBody("no sessions registered within timeout"))
	case <-r.Context().Done():
	}
}
