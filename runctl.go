package main

// runctl.go: watching and steering a session's run from outside its stream
// (API-UPSTREAM.md §3.6): GET …/status and …/snapshot, POST …/cancel, and detached
// runs (?detach=true or Prefer: detach), which outlive their client's connection.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

const maxStatusWait = 5 * time.Minute // ?wait= is capped here, as upstream

// runContext is a run's context: the request's, so a client that goes away cancels
// the run; or, when the client asked to detach, one that outlives the connection and
// ends only through POST …/cancel, DELETE or shutdown. detached says which.
func (s *server) runContext(w http.ResponseWriter, r *http.Request) (ctx context.Context, cancel context.CancelFunc, detached bool) {
	if !wantsDetach(r) {
		ctx, cancel = context.WithCancel(r.Context())
		return ctx, cancel, false
	}
	w.Header().Set("Preference-Applied", "detach")
	ctx, cancelRun := context.WithCancel(context.WithoutCancel(r.Context()))
	stop := context.AfterFunc(s.life, cancelRun)
	return ctx, func() { stop(); cancelRun() }, true
}

// wantsDetach: ?detach=true, or a Prefer header (RFC 7240) holding the detach token.
func wantsDetach(r *http.Request) bool {
	if r.URL.Query().Get("detach") == "true" {
		return true
	}
	for _, h := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(h, ",") {
			tok, _, _ := strings.Cut(p, ";")
			if strings.EqualFold(strings.TrimSpace(tok), "detach") {
				return true
			}
		}
	}
	return false
}

// runStatus is what GET …/status reports, and the live part of …/snapshot. State is
// beyond upstream: idle, running, waiting_for_confirmation (a tool call or the
// max-iterations prompt; POST …/resume answers) or waiting_for_elicitation (POST
// …/elicitation answers), with the pending request as it was streamed.
type runStatus struct {
	Streaming bool            `json:"streaming"`
	Agent     string          `json:"agent,omitempty"`
	State     string          `json:"state"`
	Pending   json.RawMessage `json:"pending,omitempty"`
}

// status is the run state of session id as of now. Without a run, a question stored
// by a run that ended without its answer (resume.go) still waits.
func (s *server) status(ctx context.Context, id string) runStatus {
	rs := s.runs.get(id)
	if rs == nil {
		return s.storedStatus(ctx, id)
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	st := runStatus{Streaming: true, Agent: rs.agent, State: "running"}
	if p := rs.pending; p != nil {
		st.State = "waiting_for_confirmation"
		if p.kind == "elicitation" {
			st.State = "waiting_for_elicitation"
		}
		if p.event != nil {
			st.Pending = (&loggedEvent{ev: *p.event}).appendJSON(nil)
		}
	}
	return st
}

// serveStatus is GET /api/sessions/{id}/status. Upstream answers only for sessions
// with a runtime in the process; here every stored session has one, idle or running.
// ?wait=<duration> (at most 5 min) waits for a session that does not exist yet, as
// upstream waits for its runtime: 503 if it does not appear in time.
func (s *server) serveStatus(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			s.writeError(w, r, badRequest("invalid wait: %q", v))
			return
		}
		wait = min(d, maxStatusWait)
	}
	deadline := time.Now().Add(wait)
	for {
		rec, err := s.st.session(r.Context(), id)
		if err == nil {
			s.writeStatus(w, r, rec)
			return
		}
		if !errors.Is(err, errNotFound) || time.Now().After(deadline) || wait == 0 {
			if wait > 0 && errors.Is(err, errNotFound) {
				err = &httpError{http.StatusServiceUnavailable, "session not ready within timeout"}
			}
			s.writeError(w, r, sessionErr(id, err))
			return
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
	}
}

func (s *server) writeStatus(w http.ResponseWriter, r *http.Request, rec *sessionRecord) {
	items, err := s.st.items(r.Context(), rec.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID           string `json:"id"`
		Title        string `json:"title"`
		InputTokens  int64  `json:"input_tokens"`
		OutputTokens int64  `json:"output_tokens"`
		NumMessages  int    `json:"num_messages"`
		runStatus
	}{rec.ID, rec.Title, rec.InputTokens, rec.OutputTokens, len(flatten(items)), s.status(r.Context(), rec.ID)})
}

// serveSnapshot is GET /api/sessions/{id}/snapshot: the session, its run state and
// the sequence number of its newest logged event. That number is read before the
// messages, so no message is older than it; but a streaming answer is stored at most
// once per flushEvery, so the last message may lack text of events up to it.
func (s *server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, err := s.st.session(r.Context(), id)
	if errors.Is(err, errNotFound) {
		msg := "session not found: " + id
		writeJSON(w, http.StatusNotFound, map[string]string{"code": "unknown_session", "error": msg, "message": msg})
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	seq, err := s.events.lastSeq(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	run := s.status(r.Context(), id)
	items, err := s.st.items(r.Context(), id)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return
	}
	writeJSON(w, http.StatusOK, snapshotJSON{toSessionJSON(rec, items), run, seq})
}

// snapshotJSON is the session document with the run state and the log position.
type snapshotJSON struct {
	*sessionJSON
	runStatus
	LastEventSeq int64 `json:"last_event_seq"`
}

// serveCancel is POST /api/sessions/{id}/cancel: it stops the session's run and waits
// for it to end. What the run had streamed is kept (a partial answer included) and
// tool calls it had not answered get a "canceled" result, so the next run starts
// from a valid conversation. 409 when nothing runs.
func (s *server) serveCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rs := s.runs.get(id)
	if rs == nil {
		if _, err := s.st.session(r.Context(), id); err != nil {
			s.writeError(w, r, sessionErr(id, err))
			return
		}
		// A question a run left waiting is that run's remains: cancelling drops it.
		if st := s.storedStatus(r.Context(), id); st.Pending != nil {
			if err := s.st.dropQuestion(r.Context(), id, anyCall); err != nil {
				s.writeError(w, r, err)
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"message": "run cancelled"})
			return
		}
		s.writeError(w, r, conflict("nothing is running in session %s", id))
		return
	}
	rs.abort() // on purpose: a question it waits on is dropped, not kept
	select {
	case <-rs.done:
	case <-r.Context().Done():
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"message": "run cancelled"})
}
