package main

// tools_background.go: the background_agents toolset (CONFIG.md §6.3). A background
// agent is a sub-agent working in a sub-session like transfer_task's, but in its own
// goroutine: run_background_agent returns an ID at once and the agent goes on after
// the parent's run ends. It lives as long as its parent session — deleting the
// session or shutting the server down stops it — and, as in the reference, runs with
// every tool pre-approved (a deny in the YAML still holds). Nobody watches its
// stream, so its events are dropped, and questions it cannot ask (max_iterations,
// elicitations) end it instead of waiting forever.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxBackgroundAgents is how many background agents one session may run at once.
const maxBackgroundAgents = 20

// The tools the runtime implements itself (they need the run); their run functions
// are never called.
var backgroundAgentDefs = []toolDef{
	{Name: "run_background_agent", Category: "transfer",
		Description: "Start one of your sub-agents on a task in the background. It returns a task ID at once; check on it with view_background_agent.",
		Parameters:  json.RawMessage(`{"additionalProperties":false,"properties":{"agent":{"type":"string","description":"The name of the sub-agent to start."},"expected_output":{"type":"string","description":"What the agent should return."},"task":{"type":"string","description":"A clear description of the task to do."}},"required":["agent","task"],"type":"object"}`),
		Annotations: toolAnnotations{Title: "Run Background Agent"}},
	{Name: "list_background_agents", Category: "transfer",
		Description: "List the background agents of this session with their status.",
		Parameters:  json.RawMessage(`{"properties":{},"type":"object"}`),
		Annotations: toolAnnotations{Title: "List Background Agents", ReadOnlyHint: true}},
	{Name: "view_background_agent", Category: "transfer",
		Description: "Show the status of a background agent and its answer (or its latest output while it runs).",
		Parameters:  json.RawMessage(`{"additionalProperties":false,"properties":{"task_id":{"type":"string","description":"The ID returned by run_background_agent."}},"required":["task_id"],"type":"object"}`),
		Annotations: toolAnnotations{Title: "View Background Agent", ReadOnlyHint: true}},
	{Name: "stop_background_agent", Category: "transfer",
		Description: "Stop a running background agent.",
		Parameters:  json.RawMessage(`{"additionalProperties":false,"properties":{"task_id":{"type":"string","description":"The ID returned by run_background_agent."}},"required":["task_id"],"type":"object"}`),
		Annotations: toolAnnotations{Title: "Stop Background Agent"}},
}

func newBackgroundAgentsToolset() *builtinToolset {
	b := &builtinToolset{}
	for _, d := range backgroundAgentDefs {
		b.list = append(b.list, tool{def: d, run: func(context.Context, *toolEnv, json.RawMessage) toolResult {
			return toolErrorf("%s can only be called by an agent during a run", d.Name)
		}})
	}
	return b
}

// isBackgroundAgentCall tells the built-in tools from an MCP tool of the same name.
func isBackgroundAgentCall(def toolDef) bool {
	return def.Category == "transfer" && slices.ContainsFunc(backgroundAgentDefs, func(d toolDef) bool { return d.Name == def.Name })
}

// bgTask is one background agent.
type bgTask struct {
	id, agent, task, sessionID string
	cancel                     context.CancelFunc
	done                       chan struct{}

	mu     sync.Mutex
	status string // running, completed, failed or stopped
	result string
}

func (b *bgTask) state() (string, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.status, b.result
}

func (b *bgTask) end(status, result string) {
	b.mu.Lock()
	if b.status == "running" {
		b.status, b.result = status, result
	}
	b.mu.Unlock()
}

// backgroundAgents holds the background agents of every session; ctx ends with the
// server.
type backgroundAgents struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	bySes map[string][]*bgTask // parent session ID → its agents, oldest first
}

func newBackgroundAgents() *backgroundAgents {
	ctx, cancel := context.WithCancel(context.Background())
	return &backgroundAgents{ctx: ctx, cancel: cancel, bySes: map[string][]*bgTask{}}
}

func (ba *backgroundAgents) list(session string) []*bgTask {
	ba.mu.Lock()
	defer ba.mu.Unlock()
	return slices.Clone(ba.bySes[session])
}

func (ba *backgroundAgents) find(session, id string) *bgTask {
	for _, b := range ba.list(session) {
		if b.id == id {
			return b
		}
	}
	return nil
}

// add registers b unless the session already runs maxBackgroundAgents.
func (ba *backgroundAgents) add(session string, b *bgTask) bool {
	ba.mu.Lock()
	defer ba.mu.Unlock()
	running := 0
	for _, o := range ba.bySes[session] {
		if st, _ := o.state(); st == "running" {
			running++
		}
	}
	if running >= maxBackgroundAgents || ba.ctx.Err() != nil {
		return false
	}
	ba.bySes[session] = append(ba.bySes[session], b)
	ba.wg.Add(1)
	return true
}

// stopSession stops the session's background agents, waits for them and forgets them.
func (ba *backgroundAgents) stopSession(session string) {
	ba.mu.Lock()
	tasks := ba.bySes[session]
	delete(ba.bySes, session)
	ba.mu.Unlock()
	for _, b := range tasks {
		b.end("stopped", "")
		b.cancel()
		<-b.done
	}
}

// close stops every background agent and waits for them (server shutdown).
func (ba *backgroundAgents) close() {
	ba.cancel()
	ba.wg.Wait()
}

// backgroundAgentTool runs one of the four tools for the session of c.
func (rn *runner) backgroundAgentTool(ctx context.Context, c *convo, ag *agentConfig, call toolCall) toolResult {
	var args struct {
		Agent          string `json:"agent"`
		Task           string `json:"task"`
		ExpectedOutput string `json:"expected_output"`
		TaskID         string `json:"task_id"`
	}
	if err := toolsArgs(json.RawMessage(call.Function.Arguments), &args); err != nil {
		return toolErrorf("%v", err)
	}
	ba := rn.s.bg
	if call.Function.Name == "run_background_agent" {
		return rn.startBackgroundAgent(ctx, c, ag, args.Agent, args.Task, args.ExpectedOutput)
	}
	if call.Function.Name == "list_background_agents" {
		tasks := ba.list(c.rec.ID)
		if len(tasks) == 0 {
			return toolResult{Output: "No background agent tasks."}
		}
		var sb strings.Builder
		sb.WriteString("Background agent tasks:\n")
		for _, b := range tasks {
			st, _ := b.state()
			fmt.Fprintf(&sb, "- ID: %s | Agent: %s | Status: %s | Task: %s\n", b.id, b.agent, st, b.task)
		}
		return toolResult{Output: strings.TrimSuffix(sb.String(), "\n")}
	}
	b := ba.find(c.rec.ID, args.TaskID)
	if b == nil {
		return toolErrorf("background agent task not found: %s", args.TaskID)
	}
	if call.Function.Name == "stop_background_agent" {
		if st, _ := b.state(); st != "running" {
			return toolErrorf("background agent task %s is not running (status: %s)", b.id, st)
		}
		b.end("stopped", "")
		b.cancel()
		<-b.done
		return toolResult{Output: fmt.Sprintf("Background agent task %s stopped.", b.id)}
	}
	return rn.viewBackgroundAgent(ctx, b)
}

// viewBackgroundAgent shows b's status and its answer; while it runs, its latest
// assistant output as stored so far.
func (rn *runner) viewBackgroundAgent(ctx context.Context, b *bgTask) toolResult {
	st, result := b.state()
	head := fmt.Sprintf("ID: %s\nAgent: %s\nTask: %s\nStatus: %s", b.id, b.agent, b.task, st)
	if st != "running" {
		if result == "" {
			return toolResult{Output: head}
		}
		return toolResult{Output: head + "\n\nResult:\n" + result}
	}
	items, err := rn.s.st.items(ctx, b.sessionID)
	if err != nil {
		return toolErrorf("reading the output of background agent task %s: %v", b.id, err)
	}
	var msgs []chatMessage
	for _, it := range items {
		if it.Message != nil {
			msgs = append(msgs, *it.Message)
		}
	}
	if out, ok := lastAnswer(msgs); ok {
		return toolResult{Output: head + "\n\nOutput so far:\n" + out}
	}
	return toolResult{Output: head + "\n\n(no output yet)"}
}

// startBackgroundAgent creates the sub-session and starts the agent in a goroutine
// of its own, tied to the server's lifetime, not to this request.
func (rn *runner) startBackgroundAgent(ctx context.Context, c *convo, ag *agentConfig, name, task, expected string) toolResult {
	if !slices.Contains(ag.SubAgents, name) {
		return toolErrorf("Agent %s cannot start %s in the background: target agent not in sub-agents list. Available agent IDs are: %s", ag.Name, name, strings.Join(ag.SubAgents, ", "))
	}
	subTeam, sub := rn.team.member(name)
	if sub == nil {
		return toolErrorf("agent %s is not part of this team (an external agent that failed to load is logged)", name)
	}
	chain := append(slices.Clone(c.agents), ag.Name)
	if slices.Contains(chain, sub.Name) || len(chain) >= maxTransferDepth {
		return toolErrorf("cannot start %s: delegation cycle or depth limit (%s)", sub.Name, strings.Join(append(chain, sub.Name), " → "))
	}
	dir, closeDir, err := rn.s.openSessionDir(rn.root.WorkingDir)
	if err != nil {
		return toolErrorf("opening the working directory: %v", err)
	}
	bctx, cancel := context.WithCancel(rn.s.bg.ctx)
	b := &bgTask{id: newUUID(), agent: sub.Name, task: task, cancel: cancel, done: make(chan struct{}), status: "running"}
	if !rn.s.bg.add(c.rec.ID, b) {
		cancel()
		closeDir()
		return toolErrorf("cannot start %s: %d background agents are already running in this session", sub.Name, maxBackgroundAgents)
	}
	child, err := rn.newSubSession(context.WithoutCancel(ctx), c, sub, chain, task, expected, true)
	if err != nil {
		b.end("failed", err.Error())
		cancel()
		close(b.done)
		rn.s.bg.wg.Done()
		closeDir()
		return toolErrorf("creating the sub-session: %v", err)
	}
	b.sessionID = child.rec.ID
	subTeam.acquire()
	// Nobody watches the run, but its events are logged in the child's log.
	clog, err := rn.s.events.acquire(context.WithoutCancel(ctx), child.rec.ID, true)
	if err != nil {
		rn.s.log.Warn("background agent: no event log", "session", child.rec.ID, "err", err)
	}
	brn := &runner{s: rn.s, team: subTeam, perms: rn.perms, root: child.rec, dir: dir, sink: discardSink(clog), unattended: true,
		save: &runSaver{st: rn.s.st, log: rn.s.log},
		rs:   &runState{sessionID: child.rec.ID, cancel: cancel, safety: safetyState{Policy: safetyAutonomous}, thinking: child.rec.Thinking, done: make(chan struct{})}}
	go brn.runBackground(bctx, b, c.rec.ID, child, sub, closeDir)
	return toolResult{Output: fmt.Sprintf("Background agent task started with ID: %s\nAgent: %s\nTask: %s", b.id, sub.Name, task)}
}

// runBackground is the background agent's goroutine: the loop, then the sub-session
// link and the final status.
func (rn *runner) runBackground(ctx context.Context, b *bgTask, parentID string, child *convo, sub *agentConfig, closeDir func()) {
	held := rn.team // the one acquired for this goroutine; a handoff changes rn.team
	defer func() {
		rn.s.events.release(rn.sink.log)
		held.release()
		closeDir()
		b.cancel()
		close(b.done)
		rn.s.bg.wg.Done()
	}()
	last := rn.loop(ctx, child, sub)
	rn.sessionEnd(ctx, child, last)
	out, ok := lastAnswer(child.history)
	switch {
	case ctx.Err() != nil:
		b.end("stopped", out)
	case !ok:
		b.end("failed", fmt.Sprintf("the agent %s gave no answer", sub.Name))
	default:
		b.end("completed", out)
	}
	// The link comes last: once the parent shows the sub-session, the status is final.
	wctx := context.WithoutCancel(ctx)
	rn.save.save(wctx, nil, "the sub-session link of session "+parentID, func(ctx context.Context) error {
		return rn.s.st.appendSubSession(ctx, parentID, child.rec.ID)
	})
	if err := rn.save.finish(wctx, time.Second); err != nil {
		rn.s.log.Warn("background agent: saving failed", "session", child.rec.ID, "err", err)
	}
}
