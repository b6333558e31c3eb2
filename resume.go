package main

// resume.go: questions that survive their run. A tool confirmation, an elicitation or
// the iteration-cap question of a root session is stored (agentd_pending_questions)
// before the client sees it. If the run ends without the answer — its client went
// away, or the server stopped or was killed — the question stays; POST …/resume or
// …/elicitation then continues the run from the stored state, in the background (its
// events go to the session's event log), and the model gets its next turn.
//
// A tool runs at most once per approval. Answering marks the question 'running' in
// the same statement that checks it is still 'waiting', so two answers (or two
// processes) cannot both start the call; once the call's result is stored the
// question is deleted. A question still 'running' when a server starts belongs to a
// call a crash interrupted: it may have done part or all of its work, so it is not
// run again — its result says so, and the session is left for the user's next run.
//
// An elicitation is asked by a tool while it runs; a run that ends cut the tool off,
// so an answer given afterwards is passed to the model with the note that the call
// was interrupted, instead of running the tool a second time. Questions asked inside
// a transfer_task sub-session are not stored: continuing them would mean rebuilding
// the delegation, so after a restart the transfer_task call reads as interrupted.
// A new run of the session drops a stored question (the model sees the call as
// canceled); DELETE drops it with the session.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
)

// askStored registers a question of c's run and, for the root conversation of a run
// that can be continued, stores it before it is shown.
//
// Only one question per session is stored: a second one asked while the first waits
// (several elicitations at once) is answerable while the run lives, not after it.
func (rn *runner) askStored(ctx context.Context, c *convo, ag *agentConfig, kind string, call toolCall, schema json.RawMessage, id string, ev *event) *pendingRequest {
	p := rn.rs.ask(kind, call, schema, id, ev)
	if rn.source != "" && !rn.unattended && c.rec.ID == rn.root.ID && rn.question != nil {
		rq := rn.question
		rq.mu.Lock()
		if rq.q == nil {
			q := &storedQuestion{SessionID: c.rec.ID, Kind: kind, Source: rn.source, Agent: ag.Name, Call: call,
				Event: (&loggedEvent{ev: *ev}).appendJSON(nil), State: "waiting", CreatedAt: nowRFC3339()}
			if err := rn.s.st.saveQuestion(context.WithoutCancel(ctx), q); err != nil {
				rn.s.log.Warn("storing a question failed; it can only be answered while this run lives", "session", c.rec.ID, "kind", kind, "err", err)
			} else {
				rq.q, p.stored = q, true
			}
		}
		rq.mu.Unlock()
	}
	rn.sink.send(ev)
	return p
}

// runQuestion is the question of a run's root session stored in the database, if
// any. Elicitations are asked from other goroutines (an MCP server's requests), hence
// the lock.
type runQuestion struct {
	mu sync.Mutex
	q  *storedQuestion
	// kept is set when the run ends while the stored question waits (the client went
	// away, or the server is stopping): the question stays answerable.
	kept bool
}

// current is the stored question, nil when there is none.
func (rq *runQuestion) current() *storedQuestion {
	if rq == nil {
		return nil
	}
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return rq.q
}

// isKept reports whether the run ends to leave its stored question answerable.
func (rq *runQuestion) isKept() bool {
	if rq == nil {
		return false
	}
	rq.mu.Lock()
	defer rq.mu.Unlock()
	return rq.kept
}

// answered records answer a to p's stored question: from now on its call counts as
// started.
func (rn *runner) answered(ctx context.Context, p *pendingRequest, a any) {
	if !p.stored {
		return
	}
	q := rn.question.current()
	if q == nil {
		return
	}
	b, _ := json.Marshal(a)
	if ok, err := rn.s.st.claimQuestion(context.WithoutCancel(ctx), q.SessionID, q.Call.ID, b); err != nil || !ok {
		rn.s.log.Warn("recording the answer to a stored question failed", "session", q.SessionID, "claimed", ok, "err", err)
	}
}

// unanswered handles a wait for p that ended without an answer: its stored question
// stays answerable (and the run stops) unless the run was cancelled on purpose.
func (rn *runner) unanswered(ctx context.Context, p *pendingRequest) {
	q := rn.question.current()
	if !p.stored || q == nil {
		return
	}
	if rn.rs.wasAborted() {
		rn.questionDone(ctx, q.Call.ID)
		return
	}
	rn.question.mu.Lock()
	rn.question.kept = true
	rn.question.mu.Unlock()
}

// questionDone deletes the stored question about callID once the call's result is
// stored: pending writes go first, so the result is in the database when the marker
// goes (if the database lets it; a lost result reads as canceled, never as a re-run).
func (rn *runner) questionDone(ctx context.Context, callID string) {
	q := rn.question.current()
	if q == nil || q.Call.ID != callID {
		return
	}
	wctx := context.WithoutCancel(ctx)
	rn.save.drain(wctx)
	if err := rn.s.st.dropQuestion(wctx, q.SessionID, callID); err != nil {
		rn.s.log.Warn("deleting an answered question failed; a restart will report its call as interrupted", "session", q.SessionID, "err", err)
	}
	rn.question.mu.Lock()
	if rn.question.q == q {
		rn.question.q = nil
	}
	rn.question.mu.Unlock()
}

// asking reports whether the run waits for any answer.
func (rs *runState) asking() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return len(rs.pending) > 0
}

// storedQuestion returns session id's stored question, nil when there is none.
func (s *server) storedQuestion(ctx context.Context, id string) (*storedQuestion, error) {
	qs, err := s.st.questions(ctx, id, "")
	if err != nil || len(qs) == 0 {
		return nil, err
	}
	return qs[0], nil
}

// pending is q as the answer checks see a live question.
func (q *storedQuestion) pending() *pendingRequest {
	var ev struct {
		Schema json.RawMessage `json:"schema"`
		ID     string          `json:"elicitation_id"`
	}
	json.Unmarshal(q.Event, &ev)
	return &pendingRequest{kind: q.Kind, id: ev.ID, call: q.Call, schema: ev.Schema}
}

// answerStored continues session id's run from its stored question with answer v,
// checked like a live answer. It returns once the run has started in the background.
func (s *server) answerStored(ctx context.Context, id, requestID string, q *storedQuestion, v any, check func(*pendingRequest) error, kinds ...string) error {
	if q == nil || q.State != "waiting" || !slices.Contains(kinds, q.Kind) {
		return conflict("nothing is waiting for this answer in session %s", id)
	}
	if p := q.pending(); requestID != "" && p.id != requestID {
		return conflict("no %s %q is pending in session %s", q.Kind, requestID, id)
	}
	if check != nil {
		if err := check(q.pending()); err != nil {
			return err
		}
	}
	answer, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return s.continueRun(ctx, q, v, answer)
}

// continueRun starts the run that answers q: the session's agent team as stored, a
// context that ends with the server, no client (an unwatched sink).
func (s *server) continueRun(ctx context.Context, q *storedQuestion, v any, answer []byte) error {
	id := q.SessionID
	rec, err := s.st.session(ctx, id)
	if err != nil {
		return sessionErr(id, err)
	}
	dir, closeDir, err := s.openSessionDir(rec.WorkingDir)
	if err != nil {
		return err
	}
	t, _, err := s.agents.runTeam(q.Source, "")
	if err != nil {
		closeDir()
		return conflict("the agents of session %s's question (%s) cannot be loaded: %v", id, q.Source, err)
	}
	at, ag := t.locate(q.Agent) // after an external handoff, an agent of another team
	items, err := s.st.items(ctx, id)
	if ag == nil || err != nil {
		t.release()
		closeDir()
		return cmpErr(err, conflict("agent %s, which asked session %s's question, is no longer in %s", q.Agent, id, q.Source))
	}
	rctx, cancel := context.WithCancel(s.life)
	rs, err := s.runs.start(rec, cancel)
	if err == nil {
		var claimed bool
		if claimed, err = s.st.claimQuestion(ctx, id, q.Call.ID, answer); err == nil && !claimed {
			err = conflict("the question of session %s was answered meanwhile", id)
		}
		if err != nil {
			s.runs.finish(rs)
		}
	}
	if err != nil {
		cancel()
		t.release()
		closeDir()
		return err
	}
	q.State, q.Answer = "running", answer
	// Nobody watches this run: its events reach clients through the event log only.
	elog, err := s.events.acquire(ctx, id, true)
	if err != nil {
		s.log.Warn("the event log is unavailable; the continued run is not logged", "session", id, "err", err)
	}
	rn := &runner{s: s, team: at, perms: t.file.Permissions, rs: rs, sink: discardSink(elog), root: rec, dir: dir, save: &runSaver{st: s.st, log: s.log},
		queue: s.queues.open(id), source: q.Source, question: &runQuestion{q: q}}
	s.unwatched.Add(1)
	go func() {
		defer s.unwatched.Done()
		defer s.events.release(elog)
		defer s.runs.finish(rs)
		defer cancel()
		defer t.release()
		defer closeDir()
		defer rn.sink.close()
		rn.continueAnswered(rctx, ag, q, v, items)
	}()
	return nil
}

// cmpErr is err, or other when err is nil.
func cmpErr(err, other error) error {
	if err != nil {
		return err
	}
	return other
}

// continueAnswered is the run continued from an answered stored question: the answer
// applied (the approved call run), the rest of the call batch, then the loop and the
// queued follow-ups, as in the run the question came from.
func (rn *runner) continueAnswered(ctx context.Context, ag *agentConfig, q *storedQuestion, answer any, items []sessionItem) {
	c := newConvo(rn.root, items)
	ctx = withToolSession(ctx, c.rec.ID)
	rn.sink.send(streamStartedEvent(c.rec.ID, ag.Name))
	next, goOn := rn.applyStored(ctx, c, ag, q, answer)
	if !goOn {
		rn.endTurn(ctx, c, next)
		rn.followups(ctx, c, next)
		return
	}
	rn.turns(ctx, c, next)
}

// applyStored applies the answer to q and runs the rest of q's call batch; goOn is
// false when the answer ends the turn (the iteration cap not raised).
func (rn *runner) applyStored(ctx context.Context, c *convo, ag *agentConfig, q *storedQuestion, answer any) (next *agentConfig, goOn bool) {
	if q.Kind == "max_iterations" {
		rn.questionDone(ctx, "")
		if answer.(resumeRequest).Confirmation == "approve" {
			return ag, true
		}
		var ev struct {
			Max int `json:"max_iterations"`
		}
		json.Unmarshal(q.Event, &ev)
		rn.addMessage(ctx, c, ag, maxIterationsStop(ev.Max))
		return ag, false
	}
	tools := rn.listTools(ctx, ag, false)
	calls := unansweredCalls(c.history, q.Call.ID)
	if len(calls) == 0 { // its result was stored before the process ended
		rn.questionDone(ctx, q.Call.ID)
		return ag, true
	}
	call, next, nextTeam := calls[0], ag, rn.team
	var res toolResult
	ran := false
	switch tl := findTool(tools, call.Function.Name); {
	case q.Kind == "elicitation":
		res = toolErrorf("The tool call was interrupted while it waited for the user's answer (the server restarted or the client went away) and was not run again. The user answered: %s", q.Answer)
	case tl == nil:
		res = toolErrorf("Tool '%s' is not available. You can only use the tools provided to you.", call.Function.Name)
	default:
		if res, ran = rn.applyConfirmation(ctx, call, answer.(resumeRequest)); ran {
			var to *agentConfig
			var toTeam *team
			if res, to, toTeam = rn.execute(ctx, c, ag, call, tl); to != nil {
				next, nextTeam = to, toTeam
			}
		}
	}
	rn.toolResponse(ctx, c, ag, call, toolDefByName(tools, call.Function.Name), res)
	rn.questionDone(ctx, call.ID)
	if ran {
		rn.postToolUse(ctx, c, ag, call, res)
	}
	rn.switchTeam(next, nextTeam)
	next, nextTeam = rn.runToolCalls(ctx, c, next, calls[1:], tools)
	rn.switchTeam(next, nextTeam)
	return next, true
}

// unansweredCalls lists the calls of the assistant message that made call id which
// have no result yet, from id on; nil unless id is the first of them.
func unansweredCalls(history []chatMessage, id string) []toolCall {
	for i := len(history) - 1; i >= 0; i-- {
		m := history[i]
		if m.Role != "assistant" {
			continue
		}
		at := slices.IndexFunc(m.ToolCalls, func(tc toolCall) bool { return tc.ID == id })
		if at < 0 {
			return nil
		}
		answered := map[string]bool{}
		for _, r := range history[i+1:] {
			if r.Role == "tool" {
				answered[r.ToolCallID] = true
			}
		}
		var out []toolCall
		for _, tc := range m.ToolCalls[at:] {
			if !answered[tc.ID] {
				out = append(out, tc)
			}
		}
		if len(out) == 0 || out[0].ID != id {
			return nil
		}
		return out
	}
	return nil
}

// settleInterrupted finishes the questions a crash left 'running': their call was
// answered and started, and may have done part or all of its work. It is not run
// again; its result says so, unless the result was stored before the crash. It runs
// at start and assumes no other agentd serves the same file at that moment.
func (s *server) settleInterrupted(ctx context.Context) {
	qs, err := s.st.questions(ctx, "", "running")
	if err != nil {
		s.log.Warn("reading the questions left by a crash failed", "err", err)
		return
	}
	for _, q := range qs {
		if q.Call.ID != "" && !s.hasResult(ctx, q.SessionID, q.Call.ID) {
			m := chatMessage{Role: "tool", ToolCallID: q.Call.ID, IsError: true, CreatedAt: nowRFC3339(),
				Content: fmt.Sprintf("The tool call was interrupted: the server stopped while %s ran (answer: %s). It may have done part or all of its work, and it was not run again.", q.Call.Function.Name, q.Answer)}
			if _, _, err := s.st.appendMessage(ctx, q.SessionID, q.Agent, &m, false); err != nil {
				s.log.Warn("recording an interrupted tool call failed", "session", q.SessionID, "err", err)
				continue
			}
		}
		if err := s.st.dropQuestion(ctx, q.SessionID, q.Call.ID); err != nil {
			s.log.Warn("deleting an interrupted question failed", "session", q.SessionID, "err", err)
		}
		s.log.Info("a tool call was interrupted by the last stop; it was not run again", "session", q.SessionID, "tool", q.Call.Function.Name)
	}
}

// hasResult reports whether session id holds a result of call callID.
func (s *server) hasResult(ctx context.Context, id, callID string) bool {
	items, err := s.st.items(ctx, id)
	if err != nil {
		return false
	}
	return slices.ContainsFunc(items, func(it sessionItem) bool {
		return it.Type == "message" && it.Message != nil && it.Message.Role == "tool" && it.Message.ToolCallID == callID
	})
}

// findTool is the tool named name, nil when the agent has none.
func findTool(tools []tool, name string) *tool {
	for i := range tools {
		if tools[i].def.Name == name {
			return &tools[i]
		}
	}
	return nil
}

// storedStatus is the status of a session no run holds: waiting when a run ended
// without the answer to its stored question, else idle.
func (s *server) storedStatus(ctx context.Context, id string) runStatus {
	q, err := s.storedQuestion(ctx, id)
	if err != nil || q == nil || q.State != "waiting" {
		return runStatus{State: "idle"}
	}
	st := runStatus{State: "waiting_for_confirmation", Agent: q.Agent, Pending: q.Event}
	if q.Kind == "elicitation" {
		st.State = "waiting_for_elicitation"
	}
	return st
}
