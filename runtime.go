package main

// runtime.go: the agent loop behind POST /api/sessions/{id}/agent/{agent}[/{name}]:
// model turns, tool calls with approval, delegation (transfer_task, handoff),
// titles, and the per-session run state that resume and elicitation answer.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// runRegistry knows the active run of each session: one at a time per session, at
// most max in total.
type runRegistry struct {
	mu     sync.Mutex
	max    int
	active map[string]*runState
}

func newRunRegistry(max int) *runRegistry {
	return &runRegistry{max: max, active: map[string]*runState{}}
}

// start registers a run for sessionID; errConflict if one is active.
func (rr *runRegistry) start(rec *sessionRecord, cancel context.CancelFunc) (*runState, error) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.active[rec.ID] != nil {
		return nil, conflict("session %s is already running", rec.ID)
	}
	if len(rr.active) >= rr.max {
		return nil, fmt.Errorf("%w (%d)", errTooManyRuns, rr.max)
	}
	rs := &runState{sessionID: rec.ID, cancel: cancel, title: rec.Title, toolsApproved: rec.ToolsApproved,
		thinking: rec.Thinking, permissions: rec.Permissions, done: make(chan struct{})}
	rr.active[rec.ID] = rs
	return rs, nil
}

func (rr *runRegistry) finish(rs *runState) {
	rr.mu.Lock()
	if rr.active[rs.sessionID] == rs {
		delete(rr.active, rs.sessionID)
	}
	rr.mu.Unlock()
	close(rs.done)
}

func (rr *runRegistry) get(id string) *runState {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.active[id]
}

// cancel stops the session's current run and waits for it to end.
func (rr *runRegistry) cancel(id string) {
	if rs := rr.get(id); rs != nil {
		rs.cancel()
		<-rs.done
	}
}

// runState is the authoritative in-memory state of a running session: API edits
// (toggles, permissions, title) land here as well as in the store, so the run sees
// them at once and never writes back stale values.
type runState struct {
	sessionID string
	cancel    context.CancelFunc
	done      chan struct{}

	mu            sync.Mutex
	title         string
	toolsApproved bool
	thinking      bool
	permissions   *permissionsConfig
	pending       *pendingRequest
}

// pendingRequest is a question the run waits on: a tool confirmation, the
// max-iterations prompt, or an elicitation. answer has room for one reply, so a
// reply that arrives before the run starts waiting is kept, not dropped.
type pendingRequest struct {
	kind   string   // "confirmation", "max_iterations" or "elicitation"
	call   toolCall // the call a confirmation is about
	schema json.RawMessage
	answer chan any
}

func (rs *runState) setTitle(t string) {
	rs.mu.Lock()
	rs.title = t
	rs.mu.Unlock()
}

func (rs *runState) setToolsApproved(v bool) {
	rs.mu.Lock()
	rs.toolsApproved = v
	rs.mu.Unlock()
}

func (rs *runState) setThinking(v bool) {
	rs.mu.Lock()
	rs.thinking = v
	rs.mu.Unlock()
}

func (rs *runState) setPermissions(p *permissionsConfig) {
	rs.mu.Lock()
	rs.permissions = p
	rs.mu.Unlock()
}

// ask registers a pending request; the caller then emits its event and waits.
func (rs *runState) ask(kind string, call toolCall, schema json.RawMessage) *pendingRequest {
	p := &pendingRequest{kind: kind, call: call, schema: schema, answer: make(chan any, 1)}
	rs.mu.Lock()
	rs.pending = p
	rs.mu.Unlock()
	return p
}

// wait returns the answer to p, or ctx's error.
func (rs *runState) wait(ctx context.Context, p *pendingRequest) (any, error) {
	defer func() {
		rs.mu.Lock()
		if rs.pending == p {
			rs.pending = nil
		}
		rs.mu.Unlock()
	}()
	select {
	case a := <-p.answer:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answer delivers v to the pending request of one of kinds; errConflict when
// nothing of that kind is pending.
func (rs *runState) answer(v any, check func(*pendingRequest) error, kinds ...string) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	p := rs.pending
	if p == nil || !slices.Contains(kinds, p.kind) {
		return conflict("nothing is waiting for this answer in session %s", rs.sessionID)
	}
	if check != nil {
		if err := check(p); err != nil {
			return err
		}
	}
	rs.pending = nil
	p.answer <- v
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
	case "approve", "approve-session", "approve-tool", "reject":
	default:
		s.writeError(w, r, badRequest("confirmation must be approve, approve-session, approve-tool or reject, not %q", req.Confirmation))
		return
	}
	if err := s.answerRun(r.Context(), id, req, req.matches, "confirmation", "max_iterations"); err != nil {
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

// answerRun delivers an answer to what session id's run is waiting for: 404 for an
// unknown session, 409 when no run is waiting for an answer of one of kinds.
func (s *server) answerRun(ctx context.Context, id string, v any, check func(*pendingRequest) error, kinds ...string) error {
	if _, err := s.st.session(ctx, id); err != nil {
		return sessionErr(id, err)
	}
	rs := s.runs.get(id)
	if rs == nil {
		return conflict("session %s has no run waiting for an answer", id)
	}
	return rs.answer(v, check, kinds...)
}

func (s *server) serveElicitation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req elicitationResponse
	if err := s.readJSON(w, r, maxMetadataBody, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
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
	if err := s.answerRun(r.Context(), id, req, check, "elicitation"); err != nil {
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
// object form {"messages":[…]} (API-UPSTREAM.md §3.1), whose messages are all new.
// An object without "messages" is refused: it is most likely one message sent unwrapped.
type runBody struct {
	messages []runMessage
	object   bool
}

func (b *runBody) UnmarshalJSON(data []byte) error {
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
		return json.Unmarshal(data, &b.messages)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return err
	}
	msgs, ok := obj["messages"]
	if !ok {
		return errors.New(`want an array of messages or {"messages": [...]}`)
	}
	b.object = true
	return json.Unmarshal(msgs, &b.messages)
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
	if err := s.readJSON(w, r, maxRunBody, &body); err != nil {
		s.writeError(w, r, err)
		return
	}
	msgs := body.newMessages()
	rec, err := s.st.session(r.Context(), sid)
	if err != nil {
		s.writeError(w, r, sessionErr(sid, err))
		return
	}
	if err := checkFileParts(s.workDir(rec), msgs); err != nil {
		s.writeError(w, r, err)
		return
	}
	dir, err := s.openSessionDir(rec.WorkingDir)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer dir.Close()
	t, name, err := s.agents.runTeam(agentID, name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer t.release()
	items, err := s.st.items(r.Context(), rec.ID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ag, err := startAgent(t, items, name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rs, err := s.runs.start(rec, cancel)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer s.runs.finish(rs)
	// Edits from now on reach rs directly; re-read the row so ones that landed while
	// the request was being set up are not lost.
	if rec, err = s.st.session(r.Context(), sid); err != nil {
		s.writeError(w, r, sessionErr(sid, err))
		return
	}
	// A session's first run turns thinking on when the agent's model configures a
	// thinking budget, as the reference does; later toggles are never overridden.
	if len(items) == 0 && !rec.Thinking && thinkingConfigured(t.file, ag, s.cfg.getenv) {
		if err := s.st.setThinking(r.Context(), sid, true); err == nil {
			rec.Thinking = true
		}
	}
	rs.mu.Lock()
	rs.title, rs.toolsApproved, rs.thinking, rs.permissions = rec.Title, rec.ToolsApproved, rec.Thinking, rec.Permissions
	rs.mu.Unlock()
	// The user's messages are stored before the stream opens, all or none, so a
	// database that cannot take them is an HTTP error the client can retry (503 with
	// Retry-After when busy), never a stream that started and then failed.
	user := make([]chatMessage, len(msgs))
	for i, m := range msgs {
		user[i] = chatMessage{Role: "user", Content: m.Content, MultiContent: m.MultiContent, CreatedAt: nowRFC3339()}
	}
	positions, err := s.st.appendUserMessages(r.Context(), sid, user)
	if err != nil {
		s.writeError(w, r, sessionErr(sid, err))
		return
	}

	sink := newSSESink(w, cmp.Or(s.cfg.heartbeat, heartbeatEvery))
	defer sink.close()
	rn := &runner{s: s, team: t, rs: rs, sink: sink, root: rec, dir: dir, save: &runSaver{st: s.st, log: s.log}}
	rn.run(ctx, ag, user, positions, items)
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

// startAgent picks the agent a run starts with: the named one; else the agent that
// last answered in this session (so a handoff sticks across runs); else the team's
// default (root, else the first — the reference hard-codes root).
func startAgent(t *team, items []sessionItem, name string) (*agentConfig, error) {
	if name != "" {
		if ag := t.file.agent(name); ag != nil {
			return ag, nil
		}
		return nil, notFound("agent not found: %s (available agents: %s)", name, t.agentNames())
	}
	for i := len(items) - 1; i >= 0; i-- {
		it := items[i]
		if it.Type == "message" && it.Message != nil && it.Message.Role == "assistant" {
			if ag := t.file.agent(it.AgentName); ag != nil {
				return ag, nil
			}
			break
		}
	}
	return t.file.defaultAgent(), nil
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

// runner executes one run request: the root conversation and any sub-sessions
// started by transfer_task, all reporting to one SSE stream.
type runner struct {
	s    *server
	team *team
	rs   *runState
	sink *sseSink
	root *sessionRecord
	save *runSaver // writes that failed, retried until the run ends
	dir  *os.Root  // the root session's working dir, which sub-sessions share

	titleDone chan struct{}
}

// convo is one session taking part in a run (the root, or a transfer_task child).
type convo struct {
	rec     *sessionRecord
	history []chatMessage // the conversation sent to models, system prompts excluded
	agents  []string      // the transfer chain, for cycle detection
	cost    float64

	hookContext []string // session_start hooks' additional context, sent as system messages
}

// run is the whole run of the root session: prefix events, the user's messages
// (already stored at positions), the loop, the final stream_stopped; then it waits
// briefly for the title.
func (rn *runner) run(ctx context.Context, ag *agentConfig, msgs []chatMessage, positions []int, items []sessionItem) {
	c := newConvo(rn.root, items)
	rn.prefix(ctx, c, ag)
	var contents []string
	for i, m := range msgs {
		c.history = append(c.history, m)
		ev := newEvent("user_message", "message", m.Content)
		if len(m.MultiContent) > 0 {
			ev = newEvent("user_message", "message", m.Content, "multi_content", m.MultiContent)
		}
		rn.sink.send(ev.ctxKV("session_id", c.rec.ID, "session_position", positions[i]).ctx("", time.Now()))
		if strings.TrimSpace(m.Content) != "" {
			contents = append(contents, m.Content)
		}
	}
	rn.sink.send(newEvent("stream_started", "session_id", c.rec.ID).ctx(ag.Name, time.Now()))
	rn.rs.mu.Lock()
	untitled := rn.rs.title == ""
	rn.rs.mu.Unlock()
	if untitled && len(contents) > 0 {
		rn.titleDone = make(chan struct{})
		go rn.generateTitle(ctx, ag, contents)
	}
	last := rn.loop(ctx, c, ag)
	rn.sessionEnd(ctx, c, last)
	// Writes that failed are retried for a while, also when the client has gone; if
	// they still fail, the client hears it before stream_stopped.
	if err := rn.save.finish(context.WithoutCancel(ctx), cmp.Or(rn.s.cfg.saveRetryFor, saveRetryFor)); err != nil {
		rn.sink.send(newEvent("error", "error", notSavedMessage(err)).ctx("", zeroTime))
	}
	rn.sink.send(newEvent("stream_stopped", "session_id", c.rec.ID).ctx(last.Name, time.Now()))
	rn.onUserInput(ctx, c, last)
	if rn.titleDone != nil {
		select {
		case <-rn.titleDone:
		case <-time.After(titleWaitAtEnd):
		case <-ctx.Done():
		}
	}
}

// newConvo is a session's conversation for the model: its own messages in order
// (sub-sessions are not part of the parent's prompt).
func newConvo(rec *sessionRecord, items []sessionItem) *convo {
	c := &convo{rec: rec, cost: rec.Cost}
	for _, it := range items {
		if it.Type == "message" && it.Message != nil && it.Message.Role != "system" {
			c.history = append(c.history, *it.Message)
		}
	}
	return c
}

// prefix emits agent_info, team_info, warnings, the MCP markers and toolset_info,
// and runs the session_start hooks where the reference does, before team_info.
func (rn *runner) prefix(ctx context.Context, c *convo, ag *agentConfig) {
	rn.sink.send(rn.agentInfo(ag))
	rn.sessionStart(ctx, c, ag)
	type agentDetails struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Provider    string `json:"provider"`
		Model       string `json:"model"`
	}
	var details []agentDetails
	for _, a := range rn.team.file.Agents {
		spec, _ := rn.team.file.modelSpec(a.Model, rn.s.cfg.getenv)
		details = append(details, agentDetails{a.Name, rn.team.describe(a.Description), spec.Provider, spec.Model})
	}
	rn.sink.send(newEvent("team_info", "available_agents", details, "current_agent", ag.Name).ctx(ag.Name, time.Now()))
	ragStart(rn.team.toolsets(ag).rag, rn.s.cfg.clientEnv, ag.Name, rn.sink.send)
	rn.listTools(ctx, ag, true)
}

func (rn *runner) agentInfo(ag *agentConfig) *event {
	spec, _ := rn.team.file.modelSpec(ag.Model, rn.s.cfg.getenv)
	ev := newEvent("agent_info", "agent_name", ag.Name, "model", spec.Provider+"/"+spec.Model, "description", rn.team.describe(ag.Description))
	if ag.WelcomeMessage != "" {
		ev.ctxKV("welcome_message", rn.team.describe(ag.WelcomeMessage))
	}
	return ev.ctxKV("timestamp", time.Now().Format(time.RFC3339Nano))
}

// listTools lists the agent's tools with the events the reference emits around it:
// [warning] (toolsets that failed; only when warn, once per run), MCP markers when the
// agent has toolsets, toolset_info.
func (rn *runner) listTools(ctx context.Context, ag *agentConfig, warn bool) []tool {
	tools, warnings := rn.team.agentTools(ctx, ag, rn.root.WorkingDir)
	for _, w := range warnings {
		if warn {
			rn.sink.send(newEvent("warning", "message", w).ctx(ag.Name, time.Now()))
		}
	}
	hasSets := len(ag.Toolsets) > 0 || len(ag.SubAgents) > 0 || len(ag.Handoffs) > 0 || len(rn.team.toolsets(ag).rag) > 0 ||
		rn.team.skillsFor(ctx, ag, rn.root.WorkingDir) != nil // found skills are a toolset in the reference
	if hasSets {
		rn.sink.send(newEvent("mcp_init_started").ctx(ag.Name, time.Now()))
		rn.sink.send(newEvent("mcp_init_finished").ctx(ag.Name, time.Now()))
	}
	rn.sink.send(newEvent("toolset_info", "available_tools", len(tools), "loading", false).ctx(ag.Name, time.Now()))
	return tools
}

// loop runs model turns and their tool calls until a plain answer, an error, a
// cancellation or the iteration cap. It returns the agent active at the end.
func (rn *runner) loop(ctx context.Context, c *convo, ag *agentConfig) *agentConfig {
	// The session's own limit wins over the agent's, also after a handoff.
	maxIter := cmp.Or(c.rec.MaxIterations, ag.MaxIterations)
	chain, chainErr := rn.chainFor(ag)
	for iter := 0; ; iter++ {
		if ctx.Err() != nil {
			return ag
		}
		tools := rn.listTools(ctx, ag, false)
		if maxIter > 0 && iter >= maxIter {
			more, stop := rn.maxIterations(ctx, c, ag, maxIter)
			if stop {
				return ag
			}
			maxIter += more
		}
		if chainErr != nil {
			rn.sink.send(newEvent("error", "error", chainErr.Error()).ctx("", zeroTime))
			return ag
		}
		msg, err := rn.turn(ctx, c, ag, chain, tools)
		if err != nil {
			if ctx.Err() == nil {
				rn.sink.send(newEvent("error", "error", err.Error()).ctx("", zeroTime))
			}
			return ag
		}
		if len(msg.ToolCalls) == 0 {
			return ag
		}
		next := rn.runToolCalls(ctx, c, ag, msg.ToolCalls, tools)
		if next != ag {
			ag = next
			chain, chainErr = rn.chainFor(ag)
			maxIter = cmp.Or(c.rec.MaxIterations, ag.MaxIterations)
			iter = -1
		}
	}
}

// chainFor builds the agent's model chain (primary plus fallbacks).
func (rn *runner) chainFor(ag *agentConfig) (*modelChain, error) {
	f := rn.team.file
	primary, err := f.modelSpec(ag.Model, rn.s.cfg.getenv)
	if err != nil {
		return nil, err
	}
	if err := requiredEnv(f, []*agentConfig{ag}, rn.s.cfg.getenv); err != nil {
		return nil, err
	}
	var fallbacks []modelSpec
	if ag.Fallback != nil {
		for _, ref := range ag.Fallback.Models {
			spec, err := f.modelSpec(ref, rn.s.cfg.getenv)
			if err != nil {
				return nil, err
			}
			fallbacks = append(fallbacks, spec)
		}
	}
	return newModelChain(primary, fallbacks, ag.Fallback, rn.s.cfg.clientEnv)
}

// maxIterations asks the client whether to go on past the cap: approve gives ten
// more turns, anything else ends the run with a note in the conversation.
func (rn *runner) maxIterations(ctx context.Context, c *convo, ag *agentConfig, max int) (more int, stop bool) {
	p := rn.rs.ask("max_iterations", toolCall{}, nil)
	rn.sink.send(newEvent("max_iterations_reached", "max_iterations", max).ctx("", zeroTime))
	rn.onUserInput(ctx, c, ag)
	a, err := rn.rs.wait(ctx, p)
	if err != nil {
		return 0, true
	}
	if a.(resumeRequest).Confirmation == "approve" {
		return 10, false
	}
	msg := chatMessage{Role: "assistant", Content: fmt.Sprintf("Execution stopped after reaching the configured max_iterations limit (%d).", max), CreatedAt: nowRFC3339()}
	rn.addMessage(ctx, c, ag, &msg)
	return 0, true
}

// addMessage stores m in c's session, appends it to the history and announces it.
func (rn *runner) addMessage(ctx context.Context, c *convo, ag *agentConfig, m *chatMessage) {
	rn.appendMessage(ctx, c.rec.ID, ag.Name, m, false)
	c.history = append(c.history, *m)
	rn.sink.send(newEvent("message_added", "session_id", c.rec.ID).ctx(ag.Name, time.Now()))
}

// appendMessage stores a copy of m in session id through the run's saver.
func (rn *runner) appendMessage(ctx context.Context, id, agent string, m *chatMessage, implicit bool) {
	snap := *m
	rn.save.save(context.WithoutCancel(ctx), nil, "a message of session "+id, func(ctx context.Context) error {
		_, _, err := rn.s.st.appendMessage(ctx, id, agent, &snap, implicit)
		return err
	})
}

// turn streams one model answer, forwarding deltas as events and persisting the
// answer as it grows (at most once per flushEvery, and at the end).
func (rn *runner) turn(ctx context.Context, c *convo, ag *agentConfig, chain *modelChain, tools []tool) (*chatMessage, error) {
	rn.rs.mu.Lock()
	thinking := rn.rs.thinking
	rn.rs.mu.Unlock()
	defs := make([]toolDef, len(tools))
	for i, t := range tools {
		defs[i] = t.def
	}
	history := repairToolCalls(trimHistory(c.history, ag.NumHistoryItems))
	req := &modelRequest{Messages: append(rn.systemMessages(ctx, c, ag, tools), history...), Tools: defs, Thinking: thinking}

	msg := &chatMessage{Role: "assistant", CreatedAt: nowRFC3339()}
	var (
		content, reasoning strings.Builder
		usage              *messageUsage
		reported           string
		itemID             int64
		lastFlush          = time.Now()
		calls              []*toolCall
		byID               = map[string]*toolCall{}
	)
	wctx := context.WithoutCancel(ctx)
	flush := func(final bool) {
		msg.Content, msg.ReasoningContent = content.String(), reasoning.String()
		msg.ToolCalls = nil
		for _, tc := range calls {
			msg.ToolCalls = append(msg.ToolCalls, *tc)
		}
		if !final && msg.Content == "" && msg.ReasoningContent == "" {
			return
		}
		// A snapshot: a write that fails is retried later with what it held, unless a
		// newer snapshot of the same message replaces it first (same key).
		snap := *msg
		rn.save.save(wctx, &itemID, "the answer in session "+c.rec.ID, func(ctx context.Context) error {
			if itemID != 0 {
				return rn.s.st.updateMessage(ctx, itemID, &snap)
			}
			id, _, err := rn.s.st.appendMessage(ctx, c.rec.ID, ag.Name, &snap, false)
			if err == nil {
				itemID = id
			}
			return err
		})
		lastFlush = time.Now()
	}
	defByName := func(name string) toolDef {
		for _, t := range tools {
			if t.def.Name == name {
				return t.def
			}
		}
		return toolDef{Name: name}
	}
	send := func(ev modelEvent, e *event) {
		if ev.More {
			rn.sink.sendBuffered(e)
		} else {
			rn.sink.send(e)
		}
	}
	emit := func(ev modelEvent) {
		if ev.Model != "" {
			reported = ev.Model
		}
		switch ev.Kind {
		case evText:
			content.WriteString(ev.Text)
			send(ev, newEvent("agent_choice", "content", ev.Text, "session_id", c.rec.ID).ctx(ag.Name, time.Now()))
		case evReasoning:
			reasoning.WriteString(ev.Text)
			if ev.Signature != "" {
				msg.ThinkingSignature = ev.Signature
			}
			if ev.Text != "" {
				send(ev, newEvent("agent_choice_reasoning", "content", ev.Text, "session_id", c.rec.ID).ctx(ag.Name, time.Now()))
			}
		case evToolCallStart:
			tc := &toolCall{ID: ev.ToolID, Type: "function", Function: functionCall{Name: ev.ToolName}}
			calls = append(calls, tc)
			byID[ev.ToolID] = tc
			rn.sink.send(newEvent("partial_tool_call", "tool_call", tc, "tool_definition", defByName(tc.Function.Name)).ctx(ag.Name, time.Now()))
		case evToolCallArgs:
			if tc := byID[ev.ToolID]; tc != nil {
				tc.Function.Arguments += ev.Text
				rn.sink.send(newEvent("partial_tool_call", "tool_call", tc, "tool_definition", defByName(tc.Function.Name)).ctx(ag.Name, time.Now()))
			}
		case evUsage:
			usage = ev.Usage
		}
		if ev.ThoughtSignature != nil {
			msg.ThoughtSignature = ev.ThoughtSignature
		}
		if time.Since(lastFlush) >= flushEvery {
			flush(false)
		}
	}
	spec, err := chain.stream(ctx, req, emit, func(n fallbackNotice) {
		rn.sink.send(newEvent("model_fallback", "failed_model", n.FailedModel, "fallback_model", n.FallbackModel,
			"reason", n.Reason, "attempt", n.Attempt, "max_attempts", n.MaxAttempts).ctx(ag.Name, zeroTime))
	})
	if err != nil {
		if content.Len() > 0 || reasoning.Len() > 0 {
			calls = nil // half-streamed tool calls cannot be answered
			if ctx.Err() == nil {
				// The provider failed mid-answer: mark the kept text as incomplete, on
				// the wire and on disk alike, so neither reader takes it as whole.
				content.WriteString(answerCutMarker)
				rn.sink.send(newEvent("agent_choice", "content", answerCutMarker, "session_id", c.rec.ID).ctx(ag.Name, time.Now()))
			}
			flush(true)
			c.history = append(c.history, *msg)
		}
		return nil, err
	}
	for _, tc := range calls {
		msg.ToolDefinitions = append(msg.ToolDefinitions, defByName(tc.Function.Name))
	}
	msg.Model = reported
	if msg.Model == "" {
		msg.Model = spec.Provider + "/" + spec.Model
	}
	price := priceOf(spec.Model)
	if usage != nil {
		msg.Usage = usage
		msg.Cost = price.cost(usage)
	}
	flush(true)
	c.history = append(c.history, *msg)
	c.cost += msg.Cost
	rn.sink.send(newEvent("message_added", "session_id", c.rec.ID).ctx(ag.Name, time.Now()))
	rn.tokenUsage(ctx, c, ag, msg, price)
	return msg, nil
}

// answerCutMarker ends an answer that the provider stopped sending part-way.
const answerCutMarker = "\n\n[answer incomplete: the model provider stopped mid-answer]"

// tokenUsage emits token_usage for the last call and stores the counters.
func (rn *runner) tokenUsage(ctx context.Context, c *convo, ag *agentConfig, msg *chatMessage, price modelPrice) {
	u := msg.Usage
	if u == nil {
		u = &messageUsage{}
	}
	in := u.InputTokens + u.CachedInputTokens + u.CacheWriteTokens
	usage := usageJSON{
		InputTokens: in, OutputTokens: u.OutputTokens, ContextLength: in + u.OutputTokens,
		ContextLimit: price.context, Cost: c.cost,
		LastMessage: &lastMessageJSON{*u, msg.Cost, msg.Model},
	}
	rn.sink.send(newEvent("token_usage", "session_id", c.rec.ID, "usage", usage).ctx(ag.Name, time.Now()))
	id, cost := c.rec.ID, c.cost
	rn.save.save(context.WithoutCancel(ctx), "usage "+id, "the token usage of session "+id, func(ctx context.Context) error {
		return rn.s.st.setUsage(ctx, id, in, u.OutputTokens, cost)
	})
}

// usageJSON is the usage of token_usage events (API.md §5).
type usageJSON struct {
	InputTokens   int64            `json:"input_tokens"`
	OutputTokens  int64            `json:"output_tokens"`
	ContextLength int64            `json:"context_length"`
	ContextLimit  int64            `json:"context_limit"`
	Cost          float64          `json:"cost"`
	LastMessage   *lastMessageJSON `json:"last_message,omitempty"`
}

// lastMessageJSON is the last call's usage; Cost and Model are capitalised because the
// reference leaves those fields untagged.
type lastMessageJSON struct {
	messageUsage
	Cost  float64 `json:"Cost"`
	Model string  `json:"Model"`
}

// nowRFC3339 is the created_at of stored messages: seconds, local offset.
func nowRFC3339() string { return time.Now().Format(time.RFC3339) }

// repairToolCalls returns history where every assistant tool call has a result, so a
// run cancelled mid-batch does not make the next model call fail (API.md §11.14).
func repairToolCalls(history []chatMessage) []chatMessage {
	out := make([]chatMessage, 0, len(history))
	for i := 0; i < len(history); i++ {
		m := history[i]
		out = append(out, m)
		if m.Role != "assistant" || len(m.ToolCalls) == 0 {
			continue
		}
		answered := map[string]bool{}
		j := i + 1
		for ; j < len(history) && history[j].Role == "tool"; j++ {
			answered[history[j].ToolCallID] = true
			out = append(out, history[j])
		}
		for _, tc := range m.ToolCalls {
			if !answered[tc.ID] {
				out = append(out, chatMessage{Role: "tool", ToolCallID: tc.ID, Content: "The tool call was canceled.", IsError: true})
			}
		}
		i = j - 1
	}
	return out
}

// systemMessages assembles the system prompt in the reference's order (CONFIG.md §4).
func (rn *runner) systemMessages(ctx context.Context, c *convo, ag *agentConfig, tools []tool) []chatMessage {
	var out []chatMessage
	add := func(s string) {
		if s != "" {
			out = append(out, chatMessage{Role: "system", Content: s})
		}
	}
	f := rn.team.file
	if len(ag.SubAgents) > 0 {
		var b strings.Builder
		b.WriteString("You are a multi-agent system, make sure to answer the user query in the most helpful way possible. You have access to these sub-agents:\n")
		for _, name := range ag.SubAgents {
			desc := ""
			if sub := f.agent(name); sub != nil {
				desc = rn.team.describe(sub.Description)
			}
			fmt.Fprintf(&b, "Name: %s | Description: %s\n", name, desc)
		}
		fmt.Fprintf(&b, "\nIMPORTANT: You can ONLY transfer tasks to the agents listed above using their ID. The valid agent names are: %s. You MUST NOT attempt to transfer to any other agent IDs.", strings.Join(ag.SubAgents, ", "))
		add(b.String())
	}
	if len(ag.Handoffs) > 0 {
		add(fmt.Sprintf("You are part of a multi-agent team. When another agent is better suited to continue the conversation, hand it off with the handoff tool. Agents you can hand off to: %s.", strings.Join(ag.Handoffs, ", ")))
	}
	add(ag.Instruction)
	for _, ts := range rn.team.toolsets(ag).sets {
		add(ts.instruction())
	}
	for _, src := range rn.team.toolsets(ag).rag {
		add(src.instruction())
	}
	add(rn.team.skillsFor(ctx, ag, rn.root.WorkingDir).instruction())
	if ag.AddDate {
		add("Today's date: " + time.Now().Format("2006-01-02"))
	}
	if ag.AddEnvironmentInfo {
		add(fmt.Sprintf("Here is useful information about the environment you are running in:\n<env>\nWorking directory: %s\nPlatform: %s\nArchitecture: %s\n</env>", rn.s.workDir(c.rec), runtime.GOOS, runtime.GOARCH))
	}
	for _, name := range ag.AddPromptFiles {
		add(promptFile(rn.s.workDir(c.rec), rn.s.cfg.root, name))
	}
	for _, s := range c.hookContext {
		add(s)
	}
	return out
}

// promptFile finds name in dir or a parent of it, up to root, and returns the
// contents of the nearest copy ("" when there is none). Unlike the reference, which
// climbs to / and also reads $HOME, the search stays inside the server's root.
func promptFile(dir, root, name string) string {
	if name == "" || filepath.IsAbs(name) || strings.Contains(filepath.ToSlash(name), "..") {
		return ""
	}
	for d := dir; within(root, d); d = filepath.Dir(d) {
		p := filepath.Join(d, name)
		if real, err := filepath.EvalSymlinks(p); err == nil && within(root, real) {
			if fi, err := os.Stat(real); err == nil && fi.Mode().IsRegular() && fi.Size() <= maxPromptFile {
				if b, err := os.ReadFile(real); err == nil {
					return string(b)
				}
			}
		}
		if d == root || d == filepath.Dir(d) {
			break
		}
	}
	return ""
}

// trimHistory keeps the last n messages of the conversation (num_history_items), and
// every user message; tool results whose call was dropped go too, so the provider
// never sees an answer to nothing.
func trimHistory(h []chatMessage, n int) []chatMessage {
	if n <= 0 || len(h) <= n {
		return h
	}
	from := len(h) - n
	var out []chatMessage
	calls := map[string]bool{}
	for i, m := range h {
		if i < from && m.Role != "user" {
			continue
		}
		if m.Role == "tool" && !calls[m.ToolCallID] {
			continue
		}
		for _, tc := range m.ToolCalls {
			calls[tc.ID] = true
		}
		out = append(out, m)
	}
	return out
}

// Tool definitions of the delegation tools the runtime itself implements.
var (
	transferTaskDef = toolDef{
		Name: "transfer_task", Category: "transfer",
		Description: "Delegate a task to one of your sub-agents and get its answer back. Give the agent the full context it needs.",
		Parameters:  json.RawMessage(`{"additionalProperties":false,"properties":{"agent":{"type":"string","description":"The name of the agent to transfer the task to."},"expected_output":{"type":"string","description":"What the agent should return."},"task":{"type":"string","description":"A clear description of the task to do."}},"required":["agent","task","expected_output"],"type":"object"}`),
		Annotations: toolAnnotations{ReadOnlyHint: true, Title: "Transfer Task"},
	}
	handoffDef = toolDef{
		Name: "handoff", Category: "handoff",
		Description: "Hand the conversation over to another agent, which answers from now on.",
		Parameters:  json.RawMessage(`{"additionalProperties":false,"properties":{"agent":{"type":"string","description":"The name of the agent to hand off to."}},"required":["agent"],"type":"object"}`),
		Annotations: toolAnnotations{ReadOnlyHint: true, Title: "Handoff"},
	}
)

// runToolCalls handles the tool calls of one assistant message in order, each with
// its own approval. It returns the agent that answers next (changed by handoff).
func (rn *runner) runToolCalls(ctx context.Context, c *convo, ag *agentConfig, calls []toolCall, tools []tool) *agentConfig {
	next := ag
	for _, call := range calls {
		if ctx.Err() != nil {
			return next
		}
		var tl *tool
		for i := range tools {
			if tools[i].def.Name == call.Function.Name {
				tl = &tools[i]
				break
			}
		}
		if tl == nil {
			def := toolDef{Name: call.Function.Name}
			rn.toolResponse(ctx, c, ag, call, def, toolErrorf("Tool '%s' is not available. You can only use the tools provided to you.", call.Function.Name))
			continue
		}
		if err := checkArgs(tl.def, call.Function.Arguments); err != nil {
			rn.toolResponse(ctx, c, ag, call, tl.def, toolErrorf("Invalid arguments for tool '%s': %v", call.Function.Name, err))
			continue
		}
		call, res, ok := rn.preToolUse(ctx, c, ag, call, tl.def)
		if ok {
			res, ok = rn.approve(ctx, c, ag, call, tl.def)
		}
		if !ok {
			rn.toolResponse(ctx, c, ag, call, tl.def, res)
			continue
		}
		rn.sink.send(newEvent("tool_call", "tool_call", call, "tool_definition", tl.def).ctx(ag.Name, time.Now()))
		switch call.Function.Name {
		case "transfer_task":
			res = rn.transferTask(ctx, c, ag, call)
		case "handoff":
			var to *agentConfig
			res, to = rn.handoff(ag, call)
			if to != nil {
				next = to
			}
		default:
			res = tl.run(ctx, rn.toolEnvFor(c, ag), json.RawMessage(call.Function.Arguments))
		}
		if ctx.Err() != nil && !res.IsError {
			res = toolErrorf("The tool call was canceled by the user.")
		}
		rn.toolResponse(ctx, c, ag, call, tl.def, res)
		rn.postToolUse(ctx, c, ag, call, res)
	}
	return next
}

// toolEnv is what tools of this run may use.
func (rn *runner) toolEnv(c *convo) *toolEnv {
	return &toolEnv{
		SessionID: c.rec.ID, WorkingDir: rn.s.workDir(c.rec), Dir: rn.dir, Protected: rn.s.cfg.protected,
		Getenv: rn.s.cfg.getenv, HTTP: rn.s.cfg.clientEnv.HTTP,
		Elicit: func(ctx context.Context, req elicitationRequest) (elicitationResponse, error) {
			return rn.elicit(ctx, req)
		},
	}
}

// elicit asks the client a question on the run's stream and waits for the answer
// posted to /api/sessions/{root}/elicitation.
func (rn *runner) elicit(ctx context.Context, req elicitationRequest) (elicitationResponse, error) {
	p := rn.rs.ask("elicitation", toolCall{}, req.Schema)
	ev := newEvent("elicitation_request", "message", req.Message)
	if req.Mode != "" {
		ev.ctxKV("mode", req.Mode)
	}
	schema := req.Schema
	if len(schema) == 0 {
		schema = json.RawMessage("null")
	}
	ev.ctxKV("schema", schema)
	if req.URL != "" {
		ev.ctxKV("url", req.URL)
	}
	if req.ElicitationID != "" {
		ev.ctxKV("elicitation_id", req.ElicitationID)
	}
	if len(req.Meta) > 0 {
		ev.ctxKV("meta", req.Meta)
	}
	rn.sink.send(ev.ctx("", time.Now()))
	a, err := rn.rs.wait(ctx, p)
	if err != nil {
		return elicitationResponse{Action: "cancel"}, err
	}
	return a.(elicitationResponse), nil
}

// toolResponse records a tool result: tool_call_response, the stored tool message,
// message_added.
func (rn *runner) toolResponse(ctx context.Context, c *convo, ag *agentConfig, call toolCall, def toolDef, res toolResult) {
	rn.sink.send(newEvent("tool_call_response", "tool_call", call, "tool_definition", def, "response", res.Output, "result", res).ctx(ag.Name, time.Now()))
	content := res.Output
	if content == "" {
		content = "(no output)"
	}
	m := chatMessage{Role: "tool", Content: content, ToolCallID: call.ID, IsError: res.IsError, CreatedAt: nowRFC3339()}
	for _, img := range res.Images {
		m.MultiContent = append(m.MultiContent, messagePart{Type: "image_url", ImageURL: &imageURL{URL: "data:" + img.MimeType + ";base64," + img.Data, Detail: "auto"}})
	}
	if len(m.MultiContent) > 0 {
		m.MultiContent = append([]messagePart{{Type: "text", Text: content}}, m.MultiContent...)
	}
	rn.addMessage(ctx, c, ag, &m)
}

// approve decides whether call may run (API.md §7.2, with one deliberate change: a
// deny in the agent's YAML is absolute, whatever YOLO or session patterns say). When
// it may not, the returned result explains why.
func (rn *runner) approve(ctx context.Context, c *convo, ag *agentConfig, call toolCall, def toolDef) (toolResult, bool) {
	if res, denied := rn.yamlDenied(c, call, def); denied {
		return res, false
	}
	name, args := call.Function.Name, newCallArgs(def, call.Function.Arguments, rn.s.workDir(c.rec))
	team := rn.team.file.Permissions
	rn.rs.mu.Lock()
	yolo, session := rn.rs.toolsApproved, rn.rs.permissions
	rn.rs.mu.Unlock()
	if yolo {
		return toolResult{}, true
	}
	decision := ""
	if session != nil {
		switch {
		case matchAny(session.Deny, name, args, true):
			return toolErrorf("Tool '%s' is denied by session permissions.", name), false
		case matchAny(session.Allow, name, args, false):
			return toolResult{}, true
		case matchAny(session.Ask, name, args, true):
			decision = "ask"
		}
	}
	if decision == "" && team != nil {
		switch {
		case matchAny(team.Allow, name, args, false):
			return toolResult{}, true
		case matchAny(team.Ask, name, args, true):
			decision = "ask"
		}
	}
	if decision == "" && def.Annotations.ReadOnlyHint {
		return toolResult{}, true
	}
	return rn.confirm(ctx, c, call, def, ag)
}

// yamlDenied reports whether the agent's YAML denies call: absolute, whatever YOLO,
// session patterns or hooks say.
func (rn *runner) yamlDenied(c *convo, call toolCall, def toolDef) (toolResult, bool) {
	team := rn.team.file.Permissions
	if team != nil && matchAny(team.Deny, call.Function.Name, newCallArgs(def, call.Function.Arguments, rn.s.workDir(c.rec)), true) {
		return toolErrorf("Tool '%s' is denied by permissions configuration.", call.Function.Name), true
	}
	return toolResult{}, false
}

// confirm asks the client through tool_call_confirmation and applies the answer.
func (rn *runner) confirm(ctx context.Context, c *convo, call toolCall, def toolDef, ag *agentConfig) (toolResult, bool) {
	p := rn.rs.ask("confirmation", call, nil)
	rn.sink.send(newEvent("tool_call_confirmation", "tool_call", call, "tool_definition", def).ctx(ag.Name, time.Now()))
	rn.onUserInput(ctx, c, ag)
	a, err := rn.rs.wait(ctx, p)
	if err != nil {
		return toolErrorf("The tool call was canceled by the user."), false
	}
	req := a.(resumeRequest)
	wctx := context.WithoutCancel(ctx)
	switch req.Confirmation {
	case "approve-session":
		rn.rs.setToolsApproved(true)
		rn.s.st.setToolsApproved(wctx, rn.rs.sessionID, true)
	case "approve-tool":
		name, ok := exactPattern(call.Function.Name)
		if !ok {
			rn.s.log.Warn("approve-tool: tool name cannot be a pattern; approving this call only", "tool", call.Function.Name)
			break
		}
		rn.rs.mu.Lock()
		perms := permissionsConfig{}
		if rn.rs.permissions != nil {
			perms = *rn.rs.permissions
		}
		if !slices.Contains(perms.Allow, name) {
			perms.Allow = append(slices.Clone(perms.Allow), name)
		}
		rn.rs.permissions = &perms
		rn.rs.mu.Unlock()
		rn.s.st.setPermissions(wctx, rn.rs.sessionID, &perms)
	case "reject":
		msg := "The user rejected the tool call."
		if r := strings.TrimSpace(req.Reason); r != "" {
			msg += " Reason: " + r
		}
		return toolErrorf("%s", msg), false
	}
	return toolResult{}, true
}

// handoff switches the conversation to another agent of the current agent's handoffs.
func (rn *runner) handoff(ag *agentConfig, call toolCall) (toolResult, *agentConfig) {
	var args struct {
		Agent string `json:"agent"`
	}
	json.Unmarshal([]byte(call.Function.Arguments), &args)
	if !slices.Contains(ag.Handoffs, args.Agent) {
		return toolErrorf("Agent %s cannot hand off to %s: target agent not in handoffs list. Available agent IDs are: %s", ag.Name, args.Agent, strings.Join(ag.Handoffs, ", ")), nil
	}
	to := rn.team.file.agent(args.Agent)
	if to == nil {
		return toolErrorf("agent %s is not part of this team", args.Agent), nil
	}
	return toolResult{Output: fmt.Sprintf("The agent %s handed off the conversation to you. Continue the conversation with the user; the full history is above.", ag.Name)}, to
}

// transferTask runs a sub-agent in a child session and returns its last answer.
func (rn *runner) transferTask(ctx context.Context, parent *convo, ag *agentConfig, call toolCall) toolResult {
	var args struct {
		Agent          string `json:"agent"`
		Task           string `json:"task"`
		ExpectedOutput string `json:"expected_output"`
	}
	if err := json.Unmarshal([]byte(call.Function.Arguments), &args); err != nil {
		return toolErrorf("invalid arguments: %v", err)
	}
	if !slices.Contains(ag.SubAgents, args.Agent) {
		return toolErrorf("Agent %s cannot transfer task to %s: target agent not in sub-agents list. Available agent IDs are: %s", ag.Name, args.Agent, strings.Join(ag.SubAgents, ", "))
	}
	sub := rn.team.file.agent(args.Agent)
	if sub == nil {
		return toolErrorf("agent %s is not part of this team (external sub-agents are not supported)", args.Agent)
	}
	chain := append(slices.Clone(parent.agents), ag.Name)
	if slices.Contains(chain, sub.Name) || len(chain) >= maxTransferDepth {
		return toolErrorf("cannot transfer task to %s: delegation cycle or depth limit (%s)", sub.Name, strings.Join(append(chain, sub.Name), " → "))
	}
	wctx := context.WithoutCancel(ctx)
	rn.rs.mu.Lock()
	yolo, thinking := rn.rs.toolsApproved, rn.rs.thinking
	rn.rs.mu.Unlock()
	rec := &sessionRecord{ID: newUUID(), CreatedAt: time.Now(), ToolsApproved: yolo, Thinking: thinking,
		MaxIterations: sub.MaxIterations, WorkingDir: parent.rec.WorkingDir, ParentID: parent.rec.ID,
		AgentModelOverrides: "{}", CustomModelsUsed: "[]"}
	if err := rn.s.st.createSession(wctx, rec); err != nil {
		return toolErrorf("creating the sub-session: %v", err)
	}
	child := &convo{rec: rec, agents: chain}
	task := "You are a member of a team of agents. Your goal is to complete the following task:\n\n<task>\n" + args.Task + "\n</task>"
	if args.ExpectedOutput != "" {
		task += "\n\n<expected_output>\n" + args.ExpectedOutput + "\n</expected_output>"
	}
	sys := chatMessage{Role: "system", Content: task, CreatedAt: nowRFC3339()}
	proceed := chatMessage{Role: "user", Content: "Please proceed.", CreatedAt: nowRFC3339()}
	rn.appendMessage(wctx, rec.ID, sub.Name, &sys, false)
	rn.appendMessage(wctx, rec.ID, "", &proceed, true)
	child.history = []chatMessage{sys, proceed}

	rn.sink.send(newEvent("agent_switching", "switching", true, "from_agent", ag.Name, "to_agent", sub.Name).ctx(sub.Name, time.Now()))
	rn.sink.send(rn.agentInfo(sub))
	rn.prefix(ctx, child, sub)
	rn.sink.send(newEvent("stream_started", "session_id", rec.ID).ctx(sub.Name, time.Now()))
	last := rn.loop(ctx, child, sub)
	rn.sessionEnd(ctx, child, last)
	rn.sink.send(newEvent("stream_stopped", "session_id", rec.ID).ctx(last.Name, time.Now()))

	rn.save.save(wctx, nil, "the sub-session link of session "+parent.rec.ID, func(ctx context.Context) error {
		return rn.s.st.appendSubSession(ctx, parent.rec.ID, rec.ID)
	})
	if full, err := rn.s.st.session(wctx, rec.ID); err == nil {
		items, _ := rn.s.st.items(wctx, rec.ID)
		rn.sink.send(newEvent("sub_session_completed", "parent_session_id", parent.rec.ID, "sub_session", toSessionJSON(full, items)).ctx(last.Name, time.Now()))
	}
	rn.sink.send(newEvent("agent_switching", "switching", false, "from_agent", sub.Name, "to_agent", ag.Name).ctx(ag.Name, time.Now()))
	rn.sink.send(rn.agentInfo(ag))
	if ctx.Err() != nil {
		return toolErrorf("The tool call was canceled by the user.")
	}
	for i := len(child.history) - 1; i >= 0; i-- {
		if m := child.history[i]; m.Role == "assistant" && m.Content != "" {
			return toolResult{Output: m.Content}
		}
	}
	return toolErrorf("Error calling tool: the agent %s gave no answer", sub.Name)
}

// generateTitle asks the agent's model for a short title, once, with a timeout and
// no effect on the run: failures are only logged. PATCH …/title wins.
func (rn *runner) generateTitle(ctx context.Context, ag *agentConfig, contents []string) {
	defer close(rn.titleDone)
	defer func() {
		if v := recover(); v != nil {
			rn.s.log.Error("title generation panicked", "panic", fmt.Sprint(v))
		}
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), titleTimeout)
	defer cancel()
	chain, err := rn.chainFor(ag)
	if err != nil {
		return
	}
	var prompt strings.Builder
	prompt.WriteString("Based on the following message(s) a user sent to an AI assistant, generate a concise, descriptive title for the conversation (at most 50 characters):\n\n")
	for i, c := range contents {
		fmt.Fprintf(&prompt, "%d. %s\n", i+1, c)
	}
	req := &modelRequest{MaxTokens: 20, NoTools: true, Messages: []chatMessage{
		{Role: "system", Content: "You are a helpful AI assistant that generates concise, descriptive titles for conversations. Answer with the title only, on a single line."},
		{Role: "user", Content: prompt.String()},
	}}
	// Only the first line is used. A server that ignores max_tokens is read on to the
	// end (cheap, and the connection stays reusable) unless it goes on for longer than
	// any title could need.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	var out strings.Builder
	read := 0
	_, err = chain.stream(sctx, req, func(ev modelEvent) {
		if ev.Kind != evText {
			return
		}
		if read += len(ev.Text); read > maxTitleRead {
			stop()
		}
		if out.Len() < maxGeneratedTitle*2 {
			out.WriteString(ev.Text)
		}
	}, nil)
	if err != nil && sctx.Err() == nil {
		rn.s.log.Debug("title generation failed", "session", rn.root.ID, "err", err)
		return
	}
	title := firstLine(out.String(), maxGeneratedTitle)
	if title == "" {
		return
	}
	// A title set meanwhile by PATCH …/title wins, whether it reached the run state
	// or only the store.
	rn.rs.mu.Lock()
	set := false
	if rn.rs.title == "" {
		if set, err = rn.s.st.setTitleIfEmpty(ctx, rn.root.ID, title); set {
			rn.rs.title = title
		}
	}
	rn.rs.mu.Unlock()
	if !set || err != nil {
		return
	}
	rn.sink.send(newEvent("session_title", "session_id", rn.root.ID, "title", title).ctx("", zeroTime))
}

// firstLine is the first non-blank line of s, trimmed, cut to at most max bytes at a
// word (or rune) boundary.
func firstLine(s string, max int) string {
	for _, line := range strings.Split(strings.ReplaceAll(s, "\r", ""), "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		if len(t) <= max {
			return t
		}
		cut := max
		for cut > 0 && !utf8.RuneStart(t[cut]) {
			cut--
		}
		if sp := strings.LastIndexByte(t[:cut], ' '); sp > max/2 {
			cut = sp
		}
		return strings.TrimSpace(t[:cut])
	}
	return ""
}

// modelPrice is USD per million tokens, and the context window, for cost reporting.
type modelPrice struct {
	in, out, cacheRead, cacheWrite float64
	context                        int64
}

// cost of one call; zero for unknown models.
func (p modelPrice) cost(u *messageUsage) float64 {
	return (float64(u.InputTokens)*p.in + float64(u.OutputTokens)*p.out +
		float64(u.CachedInputTokens)*p.cacheRead + float64(u.CacheWriteTokens)*p.cacheWrite) / 1e6
}

// modelPrices covers common models offline (the reference fetches models.dev).
var modelPrices = map[string]modelPrice{
	"gpt-4o":            {2.5, 10, 1.25, 0, 128000},
	"gpt-4o-mini":       {0.15, 0.6, 0.075, 0, 128000},
	"gpt-4.1":           {2, 8, 0.5, 0, 1047576},
	"gpt-4.1-mini":      {0.4, 1.6, 0.1, 0, 1047576},
	"gpt-5":             {1.25, 10, 0.125, 0, 400000},
	"gpt-5-mini":        {0.25, 2, 0.025, 0, 400000},
	"claude-sonnet-4-0": {3, 15, 0.3, 3.75, 200000},
	"claude-sonnet-4-5": {3, 15, 0.3, 3.75, 200000},
	"claude-opus-4-1":   {15, 75, 1.5, 18.75, 200000},
	"claude-haiku-4-5":  {1, 5, 0.1, 1.25, 200000},
	"gemini-2.5-flash":  {0.3, 2.5, 0.075, 0, 1048576},
	"gemini-2.5-pro":    {1.25, 10, 0.31, 0, 1048576},
}

// priceOf finds a model's price, also for dated ids such as gpt-4o-2024-08-06 and
// Bedrock ids such as global.anthropic.claude-sonnet-4-5-20250929-v1:0.
func priceOf(model string) modelPrice {
	model = bedrockBaseModel(model)
	best := ""
	for name := range modelPrices {
		if (model == name || strings.HasPrefix(model, name+"-")) && len(name) > len(best) {
			best = name
		}
	}
	return modelPrices[best]
}
