package main

// hooks.go: an agent's lifecycle hooks (CONFIG.md §4, API.md §6.4). A hook is a shell
// command that gets the event as JSON on stdin, in the reference's field names, and
// answers with its exit code (2 blocks) or a JSON object on stdout (`decision: block`,
// `continue: false`, a `permission_decision: deny`, an `updated_input` that replaces
// the tool's arguments, a `system_message` shown as a warning, `additional_context`).
// Hooks of one event run in parallel, each in the session's working directory, in its
// own process group (a timeout kills its children too), with the allow-listed child
// environment of the shell tool: never the server's keys or auth token.
//
// Deliberate changes from the reference, all toward safety: a pre_tool_use hook that
// times out or cannot start blocks the call (the reference runs the tool: a guard
// that never answered is no approval); a rewritten call is checked against the
// permissions again, so a hook cannot turn a denied call into an allowed one or slip
// past a confirmation; an invalid matcher regexp is a load error, not a hook that
// silently never runs.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	hookDefaultTimeout = 60 * time.Second
	hookOutputLimit    = 64 << 10 // bytes kept of a hook's stdout and of its stderr
	hookMessageLimit   = 4 << 10  // bytes of a hook's reason passed on to the model
)

// hookInput is what a hook reads on stdin (the reference's hooks.Input).
type hookInput struct {
	SessionID     string          `json:"session_id"`
	Cwd           string          `json:"cwd"`
	HookEventName string          `json:"hook_event_name"`
	ToolName      string          `json:"tool_name,omitempty"`
	ToolUseID     string          `json:"tool_use_id,omitempty"`
	ToolInput     json.RawMessage `json:"tool_input,omitempty"`
	ToolResponse  *toolResult     `json:"tool_response,omitempty"`
	Source        string          `json:"source,omitempty"` // session_start: "startup"
	Reason        string          `json:"reason,omitempty"` // session_end: "stream_ended"
}

// hookOutput is the JSON a hook may print on stdout when it exits 0.
type hookOutput struct {
	Continue      *bool  `json:"continue"`
	StopReason    string `json:"stop_reason"`
	SystemMessage string `json:"system_message"`
	Decision      string `json:"decision"`
	Reason        string `json:"reason"`
	Specific      *struct {
		PermissionDecision       string          `json:"permission_decision"`
		PermissionDecisionReason string          `json:"permission_decision_reason"`
		UpdatedInput             json.RawMessage `json:"updated_input"`
		AdditionalContext        string          `json:"additional_context"`
	} `json:"hook_specific_output"`
}

// hookOutcome is the combined answer of the hooks of one event.
type hookOutcome struct {
	blocked  bool
	reasons  []string       // why it was blocked
	input    map[string]any // merged updated_input (pre_tool_use), nil if none
	warnings []string       // system messages and hooks that failed, for warning events
	context  []string       // additional context for the model (session_start)
}

// hookRun is what one hook command did.
type hookRun struct {
	stdout, stderr string
	code           int
	failure        string // it timed out or could not run; "" otherwise
}

// hookTools returns the hooks whose matcher accepts the tool name.
func hookTools(ms []hookMatcher, name string) []hookDef {
	var out []hookDef
	for _, m := range ms {
		if m.matches(name) {
			out = append(out, m.Hooks...)
		}
	}
	return out
}

// runHooks runs hooks (each command once) in parallel on in and combines their answers.
func runHooks(ctx context.Context, hooks []hookDef, in hookInput, sh string, procs *procGroups) hookOutcome {
	var unique []hookDef
	for _, h := range hooks {
		if !slices.ContainsFunc(unique, func(u hookDef) bool { return u.Command == h.Command }) {
			unique = append(unique, h)
		}
	}
	stdin, _ := json.Marshal(in)
	runs := make([]hookRun, len(unique))
	var wg sync.WaitGroup
	for i, h := range unique {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = runHook(ctx, h, stdin, in.Cwd, sh, procs)
		}()
	}
	wg.Wait()
	var out hookOutcome
	for _, r := range runs {
		out.add(in.HookEventName, r)
	}
	return out
}

// runHook runs one hook command with `sh -c` in its own process group (recorded in
// procs while it lives), killed with its children when the timeout passes or ctx ends.
func runHook(ctx context.Context, h hookDef, stdin []byte, dir, sh string, procs *procGroups) hookRun {
	timeout := hookDefaultTimeout
	if h.Timeout > 0 {
		timeout = time.Duration(h.Timeout) * time.Second
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stdout, stderr := &shellBuf{limit: hookOutputLimit}, &shellBuf{limit: hookOutputLimit}
	cmd := shellCommand(tctx, sh, h.Command, dir, childEnv(), stdout)
	cmd.Stderr = stderr
	cmd.Stdin = strings.NewReader(string(stdin))
	err := runRecorded(cmd, procs, "hook: "+h.Command)
	r := hookRun{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		r.failure = "was cancelled"
	case tctx.Err() != nil:
		r.failure = fmt.Sprintf("timed out after %v and was killed", timeout)
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		r.failure = "could not run: " + err.Error()
	}
	return r
}

// add folds one hook's answer into o, as the reference's aggregateResults does.
func (o *hookOutcome) add(event string, r hookRun) {
	if r.failure != "" {
		msg := fmt.Sprintf("%s hook %s", event, r.failure)
		o.warnings = append(o.warnings, msg)
		if event == "pre_tool_use" {
			o.block(msg)
		}
		return
	}
	var out hookOutput
	parsed := strings.HasPrefix(strings.TrimSpace(r.stdout), "{") && json.Unmarshal([]byte(r.stdout), &out) == nil
	switch {
	case r.code == 2: // the blocking exit code; the reason is on stderr
		reason := strings.TrimSpace(r.stderr)
		if reason == "" && parsed {
			reason = out.Reason
		}
		o.block(reason)
		return
	case r.code != 0: // any other failure is not a decision
		o.warnings = append(o.warnings, fmt.Sprintf("%s hook failed with exit status %d", event, r.code))
		return
	case !parsed:
		if s := strings.TrimSpace(r.stdout); s != "" && event == "session_start" {
			o.context = append(o.context, s)
		}
		return
	}
	if out.Continue != nil && !*out.Continue {
		o.block(out.StopReason)
	}
	if out.Decision == "block" {
		o.block(out.Reason)
	}
	if out.SystemMessage != "" {
		o.warnings = append(o.warnings, out.SystemMessage)
	}
	if sp := out.Specific; sp != nil {
		if event == "pre_tool_use" && sp.PermissionDecision == "deny" {
			o.block(sp.PermissionDecisionReason)
		}
		var in map[string]any
		if event == "pre_tool_use" && json.Unmarshal(sp.UpdatedInput, &in) == nil && in != nil {
			if o.input == nil {
				o.input = map[string]any{}
			}
			for k, v := range in {
				o.input[k] = v
			}
		}
		if sp.AdditionalContext != "" {
			o.context = append(o.context, sp.AdditionalContext)
		}
	}
}

func (o *hookOutcome) block(reason string) {
	o.blocked = true
	if reason = strings.TrimSpace(reason); reason != "" {
		o.reasons = append(o.reasons, reason)
	}
}

// message is why the hooks blocked, capped: it goes to the model and the client.
func (o *hookOutcome) message() string {
	m := strings.Join(o.reasons, "\n")
	if m == "" {
		return "no reason given"
	}
	if len(m) > hookMessageLimit {
		m = strings.ToValidUTF8(m[:hookMessageLimit], "") + "…"
	}
	return m
}

// hookInputFor is the common part of a hook's stdin for session c.
func (rn *runner) hookInputFor(c *convo, event string) hookInput {
	return hookInput{SessionID: c.rec.ID, Cwd: rn.s.workDir(c.rec), HookEventName: event}
}

// runAgentHooks runs hooks for c and reports what went wrong in the log (never the
// hooks' output, which may hold anything) and, when warn, as warning events.
func (rn *runner) runAgentHooks(ctx context.Context, c *convo, ag *agentConfig, hooks []hookDef, in hookInput, warn bool) hookOutcome {
	sh := cmp.Or(rn.s.cfg.getenv("SHELL"), "/bin/sh")
	// The same check the shell tool makes: the session's directory is still the one
	// this run opened.
	dir, err := shellDir(rn.toolEnv(c), "")
	start := time.Now()
	rn.sink.send(hookStartedEvent(c.rec.ID, in.HookEventName, ag.Name))
	var out hookOutcome
	if err != nil {
		out.add(in.HookEventName, hookRun{failure: "could not run: " + err.Error()})
	} else {
		in.Cwd = dir
		out = runHooks(ctx, hooks, in, sh, rn.team.opts.Procs)
	}
	msg := ""
	if out.blocked {
		msg = out.message()
	}
	rn.sink.send(hookFinishedEvent(c.rec.ID, in.HookEventName, time.Since(start), !out.blocked, msg, ag.Name))
	for _, w := range out.warnings {
		if warn {
			rn.sink.send(warningEvent(w, ag.Name))
		}
	}
	if len(out.warnings) > 0 || out.blocked {
		rn.s.log.Info("hooks", "event", in.HookEventName, "agent", ag.Name, "tool", in.ToolName, "session", c.rec.ID, "blocked", out.blocked, "problems", len(out.warnings))
	}
	return out
}

// preToolUse runs the agent's pre_tool_use hooks for call. It returns the call to
// run (its arguments possibly rewritten by a hook) or, when a hook blocked it, false
// with the error result the model gets, after the hook_blocked event. Like the
// reference, a call the YAML denies never reaches the hooks.
func (rn *runner) preToolUse(ctx context.Context, c *convo, ag *agentConfig, call toolCall, def toolDef) (toolCall, toolResult, bool) {
	if ag.HookSet == nil {
		return call, toolResult{}, true
	}
	hooks := hookTools(ag.HookSet.PreToolUse, call.Function.Name)
	if len(hooks) == 0 {
		return call, toolResult{}, true
	}
	if res, denied := rn.yamlDenied(c, call, def); denied {
		return call, res, false
	}
	in := rn.hookInputFor(c, "pre_tool_use")
	in.ToolName, in.ToolUseID, in.ToolInput = call.Function.Name, call.ID, argsJSON(call.Function.Arguments)
	out := rn.runAgentHooks(ctx, c, ag, hooks, in, true)
	if out.blocked {
		msg := out.message()
		rn.sink.send(hookBlockedEvent(call, def, msg, ag.Name))
		return call, toolErrorf("Tool call blocked by hook: %s", msg), false
	}
	if out.input != nil {
		args, _ := json.Marshal(out.input)
		call.Function.Arguments = string(args)
		if err := checkArgs(def, call.Function.Arguments); err != nil {
			return call, toolErrorf("Invalid arguments for tool '%s' (rewritten by a hook): %v", call.Function.Name, err), false
		}
	}
	return call, toolResult{}, true
}

// postToolUse runs the agent's post_tool_use hooks with the call and its result.
func (rn *runner) postToolUse(ctx context.Context, c *convo, ag *agentConfig, call toolCall, res toolResult) {
	if ag.HookSet == nil {
		return
	}
	hooks := hookTools(ag.HookSet.PostToolUse, call.Function.Name)
	if len(hooks) == 0 {
		return
	}
	in := rn.hookInputFor(c, "post_tool_use")
	res.Images, res.Audios = nil, nil // base64 media would only bloat the hook's stdin
	in.ToolName, in.ToolUseID, in.ToolInput, in.ToolResponse = call.Function.Name, call.ID, argsJSON(call.Function.Arguments), &res
	rn.runAgentHooks(ctx, c, ag, hooks, in, true)
}

// sessionStart runs the session_start hooks when a run begins; what they add as
// context goes to the model with the system prompt of this run.
func (rn *runner) sessionStart(ctx context.Context, c *convo, ag *agentConfig) {
	if ag.HookSet == nil || len(ag.HookSet.SessionStart) == 0 {
		return
	}
	in := rn.hookInputFor(c, "session_start")
	in.Source = "startup"
	out := rn.runAgentHooks(ctx, c, ag, ag.HookSet.SessionStart, in, true)
	c.hookContext = append(c.hookContext, out.context...)
}

// sessionEnd runs the session_end hooks when a run ends, even a cancelled one.
func (rn *runner) sessionEnd(ctx context.Context, c *convo, ag *agentConfig) {
	if ag.HookSet == nil || len(ag.HookSet.SessionEnd) == 0 {
		return
	}
	in := rn.hookInputFor(c, "session_end")
	in.Reason = "stream_ended"
	rn.runAgentHooks(context.WithoutCancel(ctx), c, ag, ag.HookSet.SessionEnd, in, ctx.Err() == nil)
}

// onUserInput runs the on_user_input hooks when the agent starts waiting for the
// user (a confirmation, an elicitation, the iteration cap, the end of the run). They
// notify; their answer changes nothing, as in the reference.
func (rn *runner) onUserInput(ctx context.Context, c *convo, ag *agentConfig) {
	if ag.HookSet == nil || len(ag.HookSet.OnUserInput) == 0 {
		return
	}
	rn.runAgentHooks(ctx, c, ag, ag.HookSet.OnUserInput, rn.hookInputFor(c, "on_user_input"), false)
}

// argsJSON is a call's arguments for a hook's stdin; nil (left out) if not JSON.
func argsJSON(args string) json.RawMessage {
	if !json.Valid([]byte(args)) {
		return nil
	}
	return json.RawMessage(args)
}
