package main

// runtime.go: the agent loop behind POST /api/sessions/{id}/agent/{agent}[/{name}]:
// model turns, tool calls with approval, titles, and the per-session run state that
// resume and elicitation answer. The routes are in sessions.go, delegation
// (transfer_task, handoff) in delegation.go.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
)

// runRegistry knows the active run of each session: one at a time per session, at
// most max in total.
type runRegistry struct {
	mu     sync.Mutex
	max    int
	active map[string]*runState
	// started is closed when the first run of this process registers: GET /api/ready.
	started     chan struct{}
	startedOnce sync.Once
	// boundGC, set by serve when it raised GOGC and GOMEMLIMIT is unset, keeps the
	// GC's headroom proportional to the runs in flight (see gcLimitFor).
	boundGC bool
}

// The heap headroom GOGC=400 buys CPU with grows with the garbage of every open
// stream: at 1,000 streams it was ~80 KB of a stream's ~320 KB. A soft memory limit of
// a base plus a share per run in flight leaves the headroom alone at ordinary loads
// (10 runs peak at ~47 MB) and makes the GC collect sooner only when many streams
// are open, where memory, not CPU, is what runs out.
const (
	gcLimitBase   = 64 << 20
	gcLimitPerRun = 176 << 10
)

// gcLimitFor is the soft memory limit for n runs in flight.
func gcLimitFor(n int) int64 { return gcLimitBase + int64(n)*gcLimitPerRun }

func newRunRegistry(max int) *runRegistry {
	return &runRegistry{max: max, active: map[string]*runState{}, started: make(chan struct{})}
}

// limitGC sets the soft memory limit for the runs in flight. The caller holds rr.mu.
func (rr *runRegistry) limitGC() {
	if rr.boundGC {
		debug.SetMemoryLimit(gcLimitFor(len(rr.active)))
	}
}

// start registers a run for sessionID; errConflict if one is active.
func (rr *runRegistry) start(rec *sessionRecord, cancel context.CancelFunc) (*runState, error) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rr.active[rec.ID] != nil {
		return nil, conflict("session is already processing a request") // upstream's ErrSessionBusy
	}
	if len(rr.active) >= rr.max {
		return nil, fmt.Errorf("%w (%d)", errTooManyRuns, rr.max)
	}
	rs := &runState{sessionID: rec.ID, cancel: cancel, title: rec.Title, safety: rec.safety(),
		thinking: rec.Thinking, permissions: rec.Permissions, done: make(chan struct{})}
	rr.active[rec.ID] = rs
	rr.limitGC()
	rr.startedOnce.Do(func() { close(rr.started) })
	return rs, nil
}

func (rr *runRegistry) finish(rs *runState) {
	rr.mu.Lock()
	if rr.active[rs.sessionID] == rs {
		delete(rr.active, rs.sessionID)
		rr.limitGC()
	}
	rr.mu.Unlock()
	close(rs.done)
}

func (rr *runRegistry) get(id string) *runState {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return rr.active[id]
}

// cancel stops the session's current run on purpose and waits for it to end.
func (rr *runRegistry) cancel(id string) {
	if rs := rr.get(id); rs != nil {
		rs.abort()
		<-rs.done
	}
}

// abort cancels the run on purpose: a question it waits on is dropped, not kept for
// an answer after the run (resume.go).
func (rs *runState) abort() {
	rs.mu.Lock()
	rs.aborted = true
	rs.mu.Unlock()
	rs.cancel()
}

func (rs *runState) wasAborted() bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.aborted
}

// stop cancels the session's current run and waits for it to end for at most
// timeout, or until ctx ends; it reports whether no run is left.
func (rr *runRegistry) stop(ctx context.Context, id string, timeout time.Duration) bool {
	rs := rr.get(id)
	if rs == nil {
		return true
	}
	rs.abort() // on purpose: its question is dropped
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-rs.done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// ids lists the sessions with an active run, sorted.
func (rr *runRegistry) ids() []string {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	return slices.Sorted(maps.Keys(rr.active))
}

// runState is the authoritative in-memory state of a running session: API edits
// (toggles, permissions, title) land here as well as in the store, so the run sees
// them at once and never writes back stale values.
type runState struct {
	sessionID string
	cancel    context.CancelFunc
	done      chan struct{}

	mu          sync.Mutex
	title       string
	safety      safetyState // tools_approved is safety.Policy == autonomous
	thinking    bool
	permissions *permissionsConfig
	pending     []*pendingRequest // oldest first; several elicitations can be pending at once
	aborted     bool              // cancelled on purpose (DELETE, cancel), not by a client going away
	agent       string            // the agent answering now, for GET …/status
}

// pendingRequest is a question the run waits on: a tool confirmation, the
// max-iterations prompt, or an elicitation. answer has room for one reply, so a
// reply that arrives before the run starts waiting is kept, not dropped.
type pendingRequest struct {
	kind   string   // "confirmation", "max_iterations" or "elicitation"
	id     string   // an elicitation's elicitation_id
	call   toolCall // the call a confirmation is about
	schema json.RawMessage
	event  *event // the question as streamed, for GET …/status and …/snapshot
	answer chan any
	stored bool // the run's stored question (resume.go): answerable after the run

}

func (rs *runState) setTitle(t string) {
	rs.mu.Lock()
	rs.title = t
	rs.mu.Unlock()
}

func (rs *runState) setSafety(sp safetyState) {
	rs.mu.Lock()
	rs.safety = sp
	rs.mu.Unlock()
}

// switchSafety moves the session to policy (safetyState.set) and returns the new
// state, for the store.
func (rs *runState) switchSafety(policy string) safetyState {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.safety = rs.safety.set(policy)
	return rs.safety
}

func (rs *runState) setAgent(name string) {
	rs.mu.Lock()
	rs.agent = name
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

// runSettings are the session settings a run reads, as of one moment.
type runSettings struct {
	toolsApproved bool   // safety == autonomous
	safety        string // the safety mode
	thinking      bool
	permissions   *permissionsConfig
}

func (rs *runState) settings() runSettings {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return runSettings{rs.safety.Policy == safetyAutonomous, rs.safety.Policy, rs.thinking, rs.permissions}
}

// adopt takes the settings stored in rec, re-read once the run is registered.
func (rs *runState) adopt(rec *sessionRecord) {
	rs.mu.Lock()
	rs.title, rs.safety, rs.thinking, rs.permissions = rec.Title, rec.safety(), rec.Thinking, rec.Permissions
	rs.mu.Unlock()
}

func (rs *runState) currentTitle() string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.title
}

func (rs *runState) untitled() bool { return rs.currentTitle() == "" }

// allowTool adds the exact pattern name to the session's allow list and returns the
// new permissions, for the store. The old value is never modified: it may be shared.
func (rs *runState) allowTool(name string) *permissionsConfig {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	perms := permissionsConfig{}
	if rs.permissions != nil {
		perms = *rs.permissions
	}
	if !slices.Contains(perms.Allow, name) {
		perms.Allow = append(slices.Clone(perms.Allow), name)
	}
	rs.permissions = &perms
	return &perms
}

// setTitleIfUntitled gives the session title t unless it has one: store sets it in
// the database if the row has none (a PATCH may have reached only the store). The
// lock is held across store, so a concurrent setTitle lands wholly before or after.
func (rs *runState) setTitleIfUntitled(t string, store func() (bool, error)) (bool, error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.title != "" {
		return false, nil
	}
	set, err := store()
	if set {
		rs.title = t
	}
	return set, err
}

// elicitationID is an id for a new elicitation, unique among the pending ones: the
// tool's own when it gave one that is free, else a fresh one. The client may quote it
// to answer.
func (rs *runState) elicitationID(id string) string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if id == "" || slices.ContainsFunc(rs.pending, func(q *pendingRequest) bool { return q.id == id }) {
		id = "el-" + rand.Text()[:10]
	}
	return id
}

// ask registers a pending request (id: an elicitation's, from elicitationID); the
// caller then emits its event ev and waits.
func (rs *runState) ask(kind string, call toolCall, schema json.RawMessage, id string, ev *event) *pendingRequest {
	p := &pendingRequest{kind: kind, id: id, call: call, schema: schema, event: ev, answer: make(chan any, 1)}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.pending = append(rs.pending, p)
	return p
}

// wait returns the answer to p, or ctx's error.
func (rs *runState) wait(ctx context.Context, p *pendingRequest) (any, error) {
	defer func() {
		rs.mu.Lock()
		rs.pending = slices.DeleteFunc(rs.pending, func(q *pendingRequest) bool { return q == p })
		rs.mu.Unlock()
	}()
	select {
	case a := <-p.answer:
		return a, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// answer delivers v to a pending request of one of kinds: the one with id, or without
// an id the only one pending (the old clients' answer). errConflict when there is no
// such request, or several and no id to choose.
func (rs *runState) answer(id string, v any, check func(*pendingRequest) error, kinds ...string) error {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	var found []*pendingRequest
	for _, p := range rs.pending {
		if slices.Contains(kinds, p.kind) && (id == "" || p.id == id) {
			found = append(found, p)
		}
	}
	switch {
	case len(found) == 0 && id != "":
		return conflict("no %s %q is pending in session %s", kinds[0], id, rs.sessionID)
	case len(found) == 0:
		return conflict("nothing is waiting for this answer in session %s", rs.sessionID)
	case len(found) > 1:
		return conflict("%d questions are pending in session %s: answer one by its elicitation_id", len(found), rs.sessionID)
	}
	p := found[0]
	if check != nil {
		if err := check(p); err != nil {
			return err
		}
	}
	rs.pending = slices.DeleteFunc(rs.pending, func(q *pendingRequest) bool { return q == p })
	p.answer <- v
	return nil
}

// runner executes one run request: the root conversation and any sub-sessions
// started by transfer_task, all reporting to one SSE stream.
type runner struct {
	s *server
	// team is the team of the agent answering: a handoff to an external agent
	// switches it. Only the loop's goroutine may read it; goroutines the run
	// starts get what they need from it up front.
	team *team
	// perms are the YAML permissions of the config the run was started for. An
	// external team's own may deny or ask more but never allow: a pulled config
	// must not approve its own tools in the caller's working dir.
	perms *permissionsConfig
	rs    *runState
	sink  *sseSink
	root  *sessionRecord
	save  *runSaver // writes that failed, retried until the run ends
	dir   *os.Root  // the root session's working dir, which sub-sessions share

	// unattended runs (background agents) have no client: questions end them.
	unattended bool
	// deltas: the client sent the object run body, so partial_tool_call carries
	// argument deltas and the tool definition once (API-UPSTREAM.md §4.4, §5.1).
	deltas bool

	queue *msgQueues // the root session's steer and follow-up queues; nil in background agents

	// source is the run route's {agent}, stored with a question so that an answer can
	// continue the run in a later process; "" stores no questions (resume.go).
	source   string
	question *runQuestion // nil stores no questions (background agents)

	titleDone chan struct{}
	titles    *titleSlot // while the title is generated (runsave.go)
}

// convo is one session taking part in a run (the root, or a transfer_task child).
type convo struct {
	rec     *sessionRecord
	history []chatMessage // the conversation sent to models (after the last summary), system prompts excluded
	agents  []string      // the transfer chain, for cycle detection
	cost    float64
	compact compactState

	hookContext []string // session_start hooks' additional context, sent as system messages
	failed      bool     // an error event ended its work (stream_stopped's reason)
}

// fail ends c's work with an error event naming c's session and code.
func (rn *runner) fail(c *convo, msg, code string) {
	c.failed = true
	rn.sink.send(errorEvent(msg, code, c.rec.ID))
}

// stopReason is stream_stopped's reason for c: canceled (the client went away or the
// session was deleted), error, or normal.
func stopReason(ctx context.Context, c *convo) string {
	switch {
	case ctx.Err() != nil:
		return "canceled"
	case c.failed:
		return "error"
	}
	return "normal"
}

// run is the whole run of the root session: prefix events, the user's messages
// (already stored at positions), the loop, the final stream_stopped; then it waits
// briefly for the title.
func (rn *runner) run(ctx context.Context, ag *agentConfig, msgs []chatMessage, positions []int, items []sessionItem) {
	c := newConvo(rn.root, items)
	ctx = withToolSession(ctx, c.rec.ID)
	ctx = withMCPOAuthPrompt(ctx, &mcpOAuthPrompt{elicit: rn.elicitOAuth, authorized: func() { rn.sink.send(authorizationEvent()) }})
	// A titled session says so first, so a client that joins late learns the title
	// (API-UPSTREAM.md §3.1); an untitled one gets it once generated.
	if title := rn.rs.currentTitle(); title != "" {
		rn.sink.send(sessionTitleEvent(c.rec.ID, title))
	}
	rn.prefix(ctx, c, ag)
	var contents []string
	for i, m := range msgs {
		c.history = append(c.history, m)
		rn.sink.sendBuffered(userMessageEvent(m, c.rec.ID, positions[i])) // stream_started follows at once
		if strings.TrimSpace(m.Content) != "" {
			contents = append(contents, m.Content)
		}
	}
	rn.sink.send(streamStartedEvent(c.rec.ID, ag.Name))
	if rn.rs.untitled() && len(contents) > 0 {
		// The goroutine gets its model chain from here: it must not read rn.team,
		// which a handoff may change meanwhile.
		if chain, err := rn.chainFor(ag, ag.Model); err == nil {
			rn.titleDone, rn.titles = make(chan struct{}), newTitleSlot()
			go rn.generateTitle(ctx, chain, contents)
		}
	}
	rn.turns(ctx, c, ag)
	if rn.titleDone != nil {
		select {
		case <-rn.titleDone:
		case <-time.After(titleWaitAtEnd):
		case <-ctx.Done():
		}
	}
}

// turns runs the loop to the end of the turn, then the queued follow-ups.
func (rn *runner) turns(ctx context.Context, c *convo, ag *agentConfig) {
	last := rn.loop(ctx, c, ag)
	rn.endTurn(ctx, c, last)
	rn.followups(ctx, c, last)
}

// followups runs one turn for each queued follow-up, in order, until none is left or
// the run ends.
func (rn *runner) followups(ctx context.Context, c *convo, last *agentConfig) {
	for rn.queue != nil && ctx.Err() == nil && !rn.question.isKept() {
		m, ok := rn.queue.nextFollowup()
		if !ok {
			return
		}
		rn.addUserMessage(ctx, c, chatMessage{Role: "user", Content: m.Content, MultiContent: m.MultiContent, CreatedAt: nowRFC3339()})
		rn.sink.send(streamStartedEvent(c.rec.ID, last.Name))
		last = rn.loop(ctx, c, last)
		rn.endTurn(ctx, c, last)
	}
}

// endTurn ends one turn: session_end hooks, the writes that failed, stream_stopped.
func (rn *runner) endTurn(ctx context.Context, c *convo, last *agentConfig) {
	rn.sessionEnd(ctx, c, last)
	// Writes that failed are retried for a while, also when the client has gone; if
	// they still fail, the client hears it before stream_stopped.
	if err := rn.save.finish(context.WithoutCancel(ctx), cmp.Or(rn.s.cfg.saveRetryFor, saveRetryFor)); err != nil {
		rn.fail(c, notSavedMessage(err), "")
	}
	rn.sink.send(streamStoppedEvent(c.rec.ID, last.Name, stopReason(ctx, c)))
	rn.onUserInput(ctx, c, last)
}

// drainSteer gives the model the steer messages queued since the last iteration
// boundary, as one user message; only the root conversation of a run takes them.
func (rn *runner) drainSteer(ctx context.Context, c *convo) {
	if rn.queue == nil || c.rec.ID != rn.root.ID {
		return
	}
	if msgs := rn.queue.drainSteer(); len(msgs) > 0 {
		rn.addUserMessage(ctx, c, steerMessage(msgs))
	}
}

// steerWaiting reports whether steer messages wait for c's model.
func (rn *runner) steerWaiting(c *convo) bool {
	return rn.queue != nil && c.rec.ID == rn.root.ID && rn.queue.depths()["steer"].Depth > 0
}

// newConvo is a session's conversation for the model: its own messages in order
// (sub-sessions are not part of the parent's prompt).
func newConvo(rec *sessionRecord, items []sessionItem) *convo {
	c := &convo{rec: rec, cost: rec.Cost}
	// What came before the last summary is compacted: start there, and size the
	// history once, with room for the run's own messages (a long session would
	// otherwise copy it again at the user's message and at each answer).
	start := 0
	for i, it := range items {
		if it.Type == "summary" && it.Summary != "" {
			start, c.compact.summary = i, it.Summary
		}
	}
	c.history = make([]chatMessage, 0, len(items)-start+16)
	for _, it := range items[start:] {
		if it.Type == "message" && it.Message != nil && it.Message.Role != "system" {
			c.history = append(c.history, *it.Message)
		}
	}
	c.compact.counted = len(c.history)
	return c
}

// prefix emits agent_info, team_info, warnings, the MCP markers and toolset_info,
// and runs the session_start hooks where the reference does, before team_info.
func (rn *runner) prefix(ctx context.Context, c *convo, ag *agentConfig) {
	rn.sink.send(rn.agentInfo(ag))
	rn.sessionStart(ctx, c, ag)
	rn.sink.send(rn.teamInfo(ag))
	ragStart(rn.team.toolsets(ag).rag, rn.s.cfg.clientEnv, ag.Name, rn.sink.send)
	rn.listTools(ctx, ag, true)
}

// teamInfo announces the agents of the runner's team, ag answering.
func (rn *runner) teamInfo(ag *agentConfig) *event {
	var details []teamAgentJSON
	for _, a := range rn.team.file.Agents {
		spec, _ := rn.team.file.modelSpec(a.Model, rn.s.cfg.getenv)
		details = append(details, teamAgentJSON{a.Name, rn.team.describe(a.Description), spec.Provider, spec.Model})
	}
	return teamInfoEvent(details, ag.Name)
}

// agentInfo announces ag with the model it answers with in this session.
func (rn *runner) agentInfo(ag *agentConfig) *event {
	spec, _ := rn.team.file.modelSpec(rn.agentModelRef(ag), rn.s.cfg.getenv)
	return rn.agentInfoModel(ag, spec.Provider+"/"+spec.Model)
}

// listTools lists the agent's tools with the events the reference emits around it:
// [warning] (toolsets that failed; only when warn, once per run), MCP markers when the
// agent has toolsets, toolset_info.
func (rn *runner) listTools(ctx context.Context, ag *agentConfig, warn bool) []tool {
	tools, warnings := rn.team.agentTools(ctx, ag, rn.root.WorkingDir)
	for _, w := range warnings {
		if warn {
			rn.sink.send(warningEvent(w, ag.Name))
		}
	}
	hasSets := len(ag.Toolsets) > 0 || len(ag.SubAgents) > 0 || len(ag.Handoffs) > 0 || len(rn.team.toolsets(ag).rag) > 0 ||
		rn.team.skillsFor(ctx, ag, rn.root.WorkingDir) != nil // found skills are a toolset in the reference
	if hasSets {
		rn.sink.send(mcpInitStartedEvent(ag.Name))
		rn.sink.send(mcpInitFinishedEvent(ag.Name))
	}
	rn.sink.send(toolsetInfoEvent(len(tools), ag.Name))
	return tools
}

// loop runs model turns and their tool calls until a plain answer, an error, a
// cancellation or the iteration cap. It returns the agent active at the end.
func (rn *runner) loop(ctx context.Context, c *convo, ag *agentConfig) *agentConfig {
	// The session's own limit wins over the agent's, also after a handoff.
	maxIter := cmp.Or(c.rec.MaxIterations, ag.MaxIterations)
	ctx = withToolSession(ctx, c.rec.ID)
	var models turnModels // tools_models.go
	warn := false         // set by a switch of team: its toolsets' warnings are news
	for iter := 0; ; iter++ {
		if ctx.Err() != nil {
			return ag
		}
		rn.rs.setAgent(ag.Name)
		rn.drainSteer(ctx, c)
		tools := rn.listTools(ctx, ag, warn)
		warn = false
		if maxIter > 0 && iter >= maxIter {
			more, stop := rn.maxIterations(ctx, c, ag, maxIter)
			if stop {
				return ag
			}
			maxIter += more
		}
		chain, chainErr := models.pick(rn, c, ag)
		if chainErr != nil {
			rn.fail(c, chainErr.Error(), errCodeModel)
			return ag
		}
		rn.compactIfFull(ctx, c, ag, chain)
		msg, err := rn.turn(ctx, c, ag, chain, tools)
		if err != nil && ctx.Err() == nil && modelContextOverflow(err) {
			if rn.compactAfterOverflow(ctx, c, ag, chain, err) {
				continue
			}
			return ag
		}
		models.turnDone(rn, ag)
		if err != nil {
			if ctx.Err() == nil {
				rn.fail(c, err.Error(), errorCode(err))
			}
			return ag
		}
		if len(msg.ToolCalls) == 0 {
			if rn.steerWaiting(c) {
				continue // steered during the answer: the model hears it now
			}
			return ag
		}
		next, nextTeam := rn.runToolCalls(ctx, c, ag, msg.ToolCalls, tools)
		models.afterTools(msg.ToolCalls, tools)
		rn.compactIfFull(ctx, c, ag, chain) // the results may have filled the window
		if rn.switchTeam(next, nextTeam) {
			warn = true // (next listing) its toolsets' warnings, as at the start of a run
		}
		if next != ag {
			ag = next
			maxIter = cmp.Or(c.rec.MaxIterations, ag.MaxIterations)
			iter = -1
		}
	}
}

// chainFor builds the agent's model chain: ref (its model, or the one chosen for the
// turn) plus the agent's fallbacks.
func (rn *runner) chainFor(ag *agentConfig, ref string) (*modelChain, error) {
	f := rn.team.file
	primary, err := f.modelSpec(ref, rn.s.cfg.getenv)
	if err != nil {
		return nil, err
	}
	// Through a models gateway the gateway holds the keys (the reference skips the
	// check then too).
	if rn.s.cfg.clientEnv.Gateway == "" {
		if err := requiredEnv(f, []*agentConfig{ag}, rn.s.cfg.getenv); err != nil {
			return nil, err
		}
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
	if rn.unattended {
		return 0, true
	}
	p := rn.askStored(ctx, c, ag, "max_iterations", toolCall{}, nil, "", maxIterationsReachedEvent(max))
	rn.onUserInput(ctx, c, ag)
	a, err := rn.rs.wait(ctx, p)
	if err != nil {
		rn.unanswered(ctx, p)
		return 0, true
	}
	rn.questionDone(ctx, "")
	if a.(resumeRequest).Confirmation == "approve" {
		return 10, false
	}
	rn.addMessage(ctx, c, ag, maxIterationsStop(max))
	return 0, true
}

// maxIterationsStop is the note that ends a run the user did not let past the cap.
func maxIterationsStop(max int) *chatMessage {
	return &chatMessage{Role: "assistant", Content: fmt.Sprintf("Execution stopped after reaching the configured max_iterations limit (%d).", max), CreatedAt: nowRFC3339()}
}

// addMessage stores m in c's session, appends it to the history and announces it.
func (rn *runner) addMessage(ctx context.Context, c *convo, ag *agentConfig, m *chatMessage) {
	rn.appendMessage(ctx, c.rec.ID, ag.Name, m, false)
	c.history = append(c.history, *m)
	rn.sink.send(messageAddedEvent(c.rec.ID, ag.Name))
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
	if c.rec.ID == rn.root.ID {
		// A title generated while this turn streams waits for its answer's write; one
		// not taken by it (a failed or empty turn) is stored on its own.
		rn.titles.open()
		defer func() {
			if t := rn.titles.take(); t != "" {
				rn.storeTitle(context.WithoutCancel(ctx), t)
			}
		}()
	}
	req := rn.modelRequest(ctx, c, ag, tools)
	a := newAnswer()
	spec, err := chain.stream(ctx, req, func(ev modelEvent) {
		rn.forward(c, ag, tools, ev, a.add(ev))
		if time.Since(a.savedAt) >= flushEvery && !a.empty() {
			rn.saveAnswer(ctx, c, ag, a)
		}
	}, func(n fallbackNotice) {
		rn.sink.send(modelFallbackEvent(n, ag.Name))
	})
	if err != nil {
		if !a.empty() {
			a.calls = nil // half-streamed tool calls cannot be answered
			if ctx.Err() == nil {
				// The provider failed mid-answer: mark the kept text as incomplete, on
				// the wire and on disk alike, so neither reader takes it as whole.
				a.content.WriteString(answerCutMarker)
				rn.sink.send(agentChoiceEvent(answerCutMarker, c.rec.ID, ag.Name))
			}
			rn.saveAnswer(ctx, c, ag, a)
			c.history = append(c.history, a.msg)
		}
		return nil, err
	}
	msg := &a.msg
	for _, tc := range a.calls {
		msg.ToolDefinitions = append(msg.ToolDefinitions, toolDefByName(tools, tc.Function.Name))
	}
	msg.Model = cmp.Or(a.model, spec.Provider+"/"+spec.Model)
	price := priceOf(spec.Model)
	if a.usage != nil {
		msg.Usage = a.usage
		msg.Cost = price.cost(a.usage)
	}
	c.cost += msg.Cost
	usage := tokenUsageOf(c, msg, price)
	// The final answer and the session's usage counters go in one transaction.
	c.rec.InputTokens, c.rec.OutputTokens = usage.InputTokens, usage.OutputTokens
	rn.saveAnswerWith(ctx, c, ag, a, true)
	c.history = append(c.history, *msg)
	rn.sink.sendBuffered(messageAddedEvent(c.rec.ID, ag.Name)) // flushed with token_usage
	rn.sink.send(tokenUsageEvent(c.rec.ID, usage, ag.Name))
	c.noteUsage(usage.InputTokens, usage.OutputTokens)
	return msg, nil
}

// modelRequest is the request of one turn: system prompt, history, tools.
func (rn *runner) modelRequest(ctx context.Context, c *convo, ag *agentConfig, tools []tool) *modelRequest {
	defs := make([]toolDef, len(tools))
	for i, t := range tools {
		defs[i] = t.def
	}
	history := repairToolCalls(trimHistory(c.summaryPrompt(), ag.NumHistoryItems))
	return &modelRequest{Messages: append(rn.systemMessages(ctx, c, ag, tools), history...), Tools: defs,
		Thinking: rn.rs.settings().thinking, Output: ag.StructuredOutput}
}

// forward sends the events a model event shows the client; tc is the tool call the
// event started or extended, if any.
func (rn *runner) forward(c *convo, ag *agentConfig, tools []tool, ev modelEvent, tc *toolCall) {
	switch ev.Kind {
	case evText:
		rn.sendDelta(ev, agentChoiceEvent(ev.Text, c.rec.ID, ag.Name))
	case evReasoning:
		if ev.Text != "" {
			rn.sendDelta(ev, agentChoiceReasoningEvent(ev.Text, c.rec.ID, ag.Name))
		}
	case evToolCallStart, evToolCallArgs:
		if tc != nil {
			rn.sink.send(rn.partialToolCall(ev, tc, tools, ag))
		}
	}
}

// partialToolCall is the partial_tool_call for a model event on tc. Array-body
// (older) clients get the arguments so far and the definition every time; object-body
// (newer) clients get only the new argument bytes, the definition on the first.
func (rn *runner) partialToolCall(ev modelEvent, tc *toolCall, tools []tool, ag *agentConfig) *event {
	def := toolDefByName(tools, tc.Function.Name)
	if !rn.deltas {
		return partialToolCallEvent(tc, &def, ag.Name)
	}
	delta := toolCall{ID: tc.ID, Type: tc.Type, Function: functionCall{Name: tc.Function.Name}}
	if ev.Kind == evToolCallArgs {
		delta.Function.Arguments = ev.Text
		return partialToolCallEvent(&delta, nil, ag.Name)
	}
	return partialToolCallEvent(&delta, &def, ag.Name)
}

// sendDelta sends a text delta, buffered when the provider had already delivered
// more (the next send flushes both in one write).
func (rn *runner) sendDelta(ev modelEvent, e *event) {
	if ev.More {
		rn.sink.sendBuffered(e)
	} else {
		rn.sink.send(e)
	}
}

// toolDefByName is the definition of the named tool, or a bare one naming it.
func toolDefByName(tools []tool, name string) toolDef {
	for _, t := range tools {
		if t.def.Name == name {
			return t.def
		}
	}
	return toolDef{Name: name}
}

// saveAnswer stores a snapshot of the answer so far through the run's saver: the
// first write appends the message, later ones update it. A write that fails is
// retried later with what it held, unless a newer snapshot of the same message
// replaces it first (same key).
func (rn *runner) saveAnswer(ctx context.Context, c *convo, ag *agentConfig, a *answer) {
	rn.saveAnswerWith(ctx, c, ag, a, false)
}

// saveAnswerWith is saveAnswer, storing with the answer, when usage is set, the
// session's token counters and cost as they are in c when the write runs (so a write
// retried late never puts back older counters) and the generated title if it is
// waiting for this turn (one transaction for all three).
func (rn *runner) saveAnswerWith(ctx context.Context, c *convo, ag *agentConfig, a *answer, usage bool) {
	title := ""
	if usage && c.rec.ID == rn.root.ID {
		if len(a.calls) == 0 {
			rn.awaitTitle(ctx)
		}
		title = rn.titles.take()
	}
	a.sync()
	snap := a.msg
	rn.save.save(context.WithoutCancel(ctx), &a.itemID, "the answer in session "+c.rec.ID, func(ctx context.Context) error {
		if usage {
			_, err := rn.withTitle(title, func(title string) (bool, error) {
				id, set, err := rn.s.st.saveAnswer(ctx, c.rec.ID, ag.Name, a.itemID, &snap, c.rec.InputTokens, c.rec.OutputTokens, c.cost, title)
				if err == nil {
					a.itemID = id
				}
				return set, err
			})
			return err
		}
		if a.itemID != 0 {
			return rn.s.st.updateMessage(ctx, a.itemID, &snap)
		}
		id, _, err := rn.s.st.appendMessage(ctx, c.rec.ID, ag.Name, &snap, false)
		if err == nil {
			a.itemID = id
		}
		return err
	})
	a.savedAt = time.Now()
}

// answer accumulates one streamed model answer: its text, reasoning, tool calls,
// signatures, usage and the model the provider reported. It belongs to the run's
// goroutine.
type answer struct {
	msg                chatMessage // the assistant message; sync brings it up to date
	content, reasoning strings.Builder
	calls              []*toolCall
	byID               map[string]*toolCall
	usage              *messageUsage
	model              string    // as the provider reported it ("" if it did not)
	itemID             int64     // the stored message, once saved
	savedAt            time.Time // when the last snapshot was saved (or the turn began)
}

func newAnswer() *answer {
	return &answer{msg: chatMessage{Role: "assistant", CreatedAt: nowRFC3339()}, byID: map[string]*toolCall{}, savedAt: time.Now()}
}

// add takes one model event; it returns the tool call the event started or
// extended, if any.
func (a *answer) add(ev modelEvent) *toolCall {
	if ev.Model != "" {
		a.model = ev.Model
	}
	var tc *toolCall
	switch ev.Kind {
	case evText:
		a.content.WriteString(ev.Text)
	case evReasoning:
		a.reasoning.WriteString(ev.Text)
		if ev.Signature != "" {
			a.msg.ThinkingSignature = ev.Signature
		}
	case evToolCallStart:
		tc = &toolCall{ID: ev.ToolID, Type: "function", Function: functionCall{Name: ev.ToolName}}
		a.calls = append(a.calls, tc)
		a.byID[ev.ToolID] = tc
	case evToolCallArgs:
		if tc = a.byID[ev.ToolID]; tc != nil {
			tc.Function.Arguments += ev.Text
		}
	case evUsage:
		a.usage = ev.Usage
	}
	if ev.ThoughtSignature != nil {
		a.msg.ThoughtSignature = ev.ThoughtSignature
	}
	return tc
}

// empty reports whether neither text nor reasoning has arrived.
func (a *answer) empty() bool { return a.content.Len() == 0 && a.reasoning.Len() == 0 }

// sync copies the text, reasoning and tool calls so far into msg.
func (a *answer) sync() {
	a.msg.Content, a.msg.ReasoningContent = a.content.String(), a.reasoning.String()
	a.msg.ToolCalls = nil
	for _, tc := range a.calls {
		a.msg.ToolCalls = append(a.msg.ToolCalls, *tc)
	}
}

// answerCutMarker ends an answer that the provider stopped sending part-way.
const answerCutMarker = "\n\n[answer incomplete: the model provider stopped mid-answer]"

// tokenUsageOf is the usage a token_usage event reports for the last call.
func tokenUsageOf(c *convo, msg *chatMessage, price modelPrice) usageJSON {
	u := msg.Usage
	if u == nil {
		u = &messageUsage{}
	}
	in := u.InputTokens + u.CachedInputTokens + u.CacheWriteTokens
	return usageJSON{
		InputTokens: in, OutputTokens: u.OutputTokens, ContextLength: in + u.OutputTokens,
		ContextLimit: price.context, Cost: c.cost,
		LastMessage: &lastMessageJSON{*u, msg.Cost, msg.Model},
	}
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
	if toolCallsAnswered(history) {
		return history // the usual case: no copy of a long history
	}
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

// toolCallsAnswered reports whether every assistant tool call in history is followed
// by its result among the tool messages right after it.
func toolCallsAnswered(history []chatMessage) bool {
	for i := range history {
		if history[i].Role != "assistant" {
			continue
		}
		for _, tc := range history[i].ToolCalls {
			j := i + 1
			for j < len(history) && history[j].Role == "tool" && history[j].ToolCallID != tc.ID {
				j++
			}
			if j == len(history) || history[j].Role != "tool" {
				return false
			}
		}
	}
	return true
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

// runToolCalls handles the tool calls of one assistant message in order, each with
// its own approval. It returns the agent that answers next and its team (changed
// by handoff).
func (rn *runner) runToolCalls(ctx context.Context, c *convo, ag *agentConfig, calls []toolCall, tools []tool) (*agentConfig, *team) {
	next, nextTeam := ag, rn.team
	for i, call := range calls {
		if ctx.Err() != nil {
			// Cancelled: the calls not run yet get a result too, so the stored
			// conversation stays valid for the next run.
			for _, call := range calls[i:] {
				rn.toolResponse(ctx, c, ag, call, toolDefByName(tools, call.Function.Name), toolErrorf("The tool call was canceled by the user."))
			}
			return next, nextTeam
		}
		tl := findTool(tools, call.Function.Name)
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
		if rn.question.isKept() {
			return next, nextTeam // the question stays answerable: its call and the rest wait for the answer
		}
		if !ok {
			rn.toolResponse(ctx, c, ag, call, tl.def, res)
			rn.questionDone(ctx, call.ID)
			continue
		}
		res, to, toTeam := rn.execute(ctx, c, ag, call, tl)
		if rn.question.isKept() {
			return next, nextTeam // an elicitation stays answerable; the cut-off tool has no result yet
		}
		if to != nil {
			next, nextTeam = to, toTeam
		}
		rn.toolResponse(ctx, c, ag, call, tl.def, res)
		rn.questionDone(ctx, call.ID)
		rn.postToolUse(ctx, c, ag, call, res)
	}
	return next, nextTeam
}

// switchTeam makes t the run's team after an external handoff to next: the client
// learns the new agent's model and team. It reports whether the team changed.
func (rn *runner) switchTeam(next *agentConfig, t *team) bool {
	if t == rn.team {
		return false
	}
	rn.team = t
	rn.sink.send(rn.agentInfo(next))
	rn.sink.send(rn.teamInfo(next))
	return true
}

// execute runs an approved call: tool_call, then the tool. It returns the result and,
// after a handoff, the agent that answers next and its team.
func (rn *runner) execute(ctx context.Context, c *convo, ag *agentConfig, call toolCall, tl *tool) (res toolResult, next *agentConfig, nextTeam *team) {
	rn.sink.send(toolCallEvent(call, tl.def, ag.Name))
	env := rn.callEnv(c, ag, call)
	switch call.Function.Name {
	case "transfer_task":
		res = rn.transferTask(ctx, c, ag, call)
	case "run_background_agent", "list_background_agents", "view_background_agent", "stop_background_agent":
		if !isBackgroundAgentCall(tl.def) {
			res = tl.run(ctx, env, json.RawMessage(call.Function.Arguments))
			break
		}
		res = rn.backgroundAgentTool(ctx, c, ag, call)
	case "change_model", "revert_model":
		if !isModelPickerCall(tl.def) {
			res = tl.run(ctx, env, json.RawMessage(call.Function.Arguments))
			break
		}
		res = rn.pickModel(ctx, ag, call)
	case "handoff":
		res, nextTeam, next = rn.handoff(ag, call)
	default:
		env.Output = func(chunk string) { rn.sink.send(toolCallOutputEvent(call.ID, tl.def, chunk, ag.Name)) }
		res = tl.run(ctx, env, json.RawMessage(call.Function.Arguments))
	}
	if ctx.Err() != nil && !res.IsError {
		res = toolErrorf("The tool call was canceled by the user.")
	}
	return res, next, nextTeam
}

// toolEnv is what tools of this run may use.
func (rn *runner) toolEnv(c *convo) *toolEnv {
	return &toolEnv{
		SessionID: c.rec.ID, WorkingDir: rn.s.workDir(c.rec), Dir: rn.dir, Protected: rn.s.cfg.protected,
		Getenv: rn.s.cfg.getenv, HTTP: rn.s.cfg.clientEnv.HTTP,
		Elicit: func(ctx context.Context, req elicitationRequest) (elicitationResponse, error) {
			return rn.elicit(ctx, c, nil, toolCall{}, req)
		},
	}
}

// callEnv is the tool environment of one call by ag: its elicitations are questions
// about call, stored as such (resume.go).
func (rn *runner) callEnv(c *convo, ag *agentConfig, call toolCall) *toolEnv {
	env := rn.toolEnv(c)
	env.Elicit = func(ctx context.Context, req elicitationRequest) (elicitationResponse, error) {
		rn.onUserInput(ctx, c, ag) // as the reference does
		return rn.elicit(ctx, c, ag, call, req)
	}
	return env
}

// elicit asks the client a question on the run's stream and waits for the answer
// posted to /api/sessions/{root}/elicitation. A question from ag's call is stored.
func (rn *runner) elicit(ctx context.Context, c *convo, ag *agentConfig, call toolCall, req elicitationRequest) (elicitationResponse, error) {
	if rn.unattended {
		return elicitationResponse{Action: "decline"}, fmt.Errorf("a background agent cannot ask the user")
	}
	req.ElicitationID = rn.rs.elicitationID(req.ElicitationID)
	ev := elicitationRequestEvent(req)
	var p *pendingRequest
	if ag != nil {
		p = rn.askStored(ctx, c, ag, "elicitation", call, req.Schema, req.ElicitationID, ev)
	} else {
		p = rn.rs.ask("elicitation", toolCall{}, req.Schema, req.ElicitationID, ev)
		rn.sink.send(ev)
	}
	a, err := rn.rs.wait(ctx, p)
	if err != nil {
		rn.unanswered(ctx, p)
		return elicitationResponse{Action: "cancel"}, err
	}
	rn.answered(ctx, p, a)
	return a.(elicitationResponse), nil
}

// toolResponse records a tool result: tool_call_response, the stored tool message,
// message_added.
func (rn *runner) toolResponse(ctx context.Context, c *convo, ag *agentConfig, call toolCall, def toolDef, res toolResult) {
	rn.sink.send(toolCallResponseEvent(call, def, res, ag.Name))
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

// approve decides whether call may run (API.md §7.2 with the safety modes of
// API-UPSTREAM.md §3.7): a deny in the agent's YAML is absolute; then the session's
// rules, then the team's allow and ask rules; then the session's safety mode. Unlike
// the reference's old YOLO, autonomous mode does not beat an explicit deny or ask rule.
// When the call may not run, the returned result explains why.
func (rn *runner) approve(ctx context.Context, c *convo, ag *agentConfig, call toolCall, def toolDef) (toolResult, bool) {
	if res, denied := rn.yamlDenied(c, call, def); denied {
		return res, false
	}
	name, args := call.Function.Name, newCallArgs(def, call.Function.Arguments, rn.s.workDir(c.rec))
	set := rn.rs.settings()
	decision, session := "", set.permissions
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
	if team := rn.perms; decision == "" && team != nil {
		switch {
		case matchAny(team.Allow, name, args, false):
			return toolResult{}, true
		case matchAny(team.Ask, name, args, true):
			decision = "ask"
		}
	}
	if own := rn.team.file.Permissions; decision == "" && own != nil && matchAny(own.Ask, name, args, true) {
		decision = "ask" // an external team's own ask rule (its allow rules are not followed)
	}
	if decision == "" {
		decision = modeDecision(set.safety, def, args)
	}
	switch decision {
	case "run":
		return toolResult{}, true
	case "deny":
		return toolErrorf("Tool '%s' is denied by the session's restricted safety mode: only read-only tools and safe-listed shell commands run.", name), false
	}
	return rn.confirm(ctx, c, call, def, ag)
}

// yamlDenied reports whether the YAML denies call — the run's config, or the
// external team's own: absolute, whatever YOLO, session patterns or hooks say.
func (rn *runner) yamlDenied(c *convo, call toolCall, def toolDef) (toolResult, bool) {
	args := newCallArgs(def, call.Function.Arguments, rn.s.workDir(c.rec))
	for _, p := range []*permissionsConfig{rn.perms, rn.team.file.Permissions} {
		if p != nil && matchAny(p.Deny, call.Function.Name, args, true) {
			return toolErrorf("Tool '%s' is denied by permissions configuration.", call.Function.Name), true
		}
	}
	return toolResult{}, false
}

// confirm asks the client through tool_call_confirmation and applies the answer.
func (rn *runner) confirm(ctx context.Context, c *convo, call toolCall, def toolDef, ag *agentConfig) (toolResult, bool) {
	if rn.unattended {
		// Nobody would answer: an ask rule fails closed instead of stalling the agent.
		return toolErrorf("Tool '%s' needs the user's confirmation, which a background agent cannot ask for.", call.Function.Name), false
	}
	p := rn.askStored(ctx, c, ag, "confirmation", call, nil, "", toolCallConfirmationEvent(call, def, ag.Name))
	rn.onUserInput(ctx, c, ag)
	a, err := rn.rs.wait(ctx, p)
	if err != nil {
		rn.unanswered(ctx, p)
		return toolErrorf("The tool call was canceled by the user."), false
	}
	rn.answered(ctx, p, a)
	return rn.applyConfirmation(ctx, call, a.(resumeRequest))
}

// applyConfirmation applies the answer to a confirmation of call: what approve-session
// and approve-tool change for later calls, and the result of a rejection.
func (rn *runner) applyConfirmation(ctx context.Context, call toolCall, req resumeRequest) (toolResult, bool) {
	wctx := context.WithoutCancel(ctx)
	switch req.Confirmation {
	case "approve-session", "approve-autonomous", "approve-balanced", "approve-safe", "approve-safer":
		// The run goes on approved either way; a failed write only means a later
		// run of the session asks again, so it is logged, not retried (a retry could
		// undo a toggle the user makes meanwhile).
		policy, _ := confirmationPolicy(req.Confirmation)
		if err := rn.s.st.setSafety(wctx, rn.rs.sessionID, rn.rs.switchSafety(policy)); err != nil {
			rn.s.log.Warn(req.Confirmation+": storing the safety mode failed; it holds for this run only", "session", rn.rs.sessionID, "err", err)
		}
	case "approve-tool":
		name, ok := exactPattern(call.Function.Name)
		if !ok {
			rn.s.log.Warn("approve-tool: tool name cannot be a pattern; approving this call only", "tool", call.Function.Name)
			break
		}
		perms := rn.rs.allowTool(name)
		if err := rn.s.st.setPermissions(wctx, rn.rs.sessionID, perms); err != nil {
			rn.s.log.Warn("approve-tool: storing the permissions failed; they hold for this run only", "session", rn.rs.sessionID, "tool", name, "err", err)
		}
	case "reject":
		msg := "The user rejected the tool call."
		if r := strings.TrimSpace(req.Reason); r != "" {
			msg += " Reason: " + r
		}
		return toolErrorf("%s", msg), false
	}
	return toolResult{}, true
}
