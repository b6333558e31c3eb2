package main

// delegation.go: the tools through which agents hand work to each other —
// transfer_task (a sub-agent answers in a sub-session, reporting to the same
// stream) and handoff (another agent takes over the conversation).

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

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

// handoff switches the conversation to another agent of the current agent's
// handoffs: one of the team, or the default agent of an external team, which
// then answers with its own team's models and toolsets.
func (rn *runner) handoff(ag *agentConfig, call toolCall) (toolResult, *team, *agentConfig) {
	var args struct {
		Agent string `json:"agent"`
	}
	json.Unmarshal([]byte(call.Function.Arguments), &args)
	if !slices.Contains(ag.Handoffs, args.Agent) {
		return toolErrorf("Agent %s cannot hand off to %s: target agent not in handoffs list. Available agent IDs are: %s", ag.Name, args.Agent, strings.Join(ag.Handoffs, ", ")), nil, nil
	}
	t, to := rn.team.member(args.Agent)
	if to == nil {
		return toolErrorf("agent %s is not part of this team (an external agent that failed to load is logged)", args.Agent), nil, nil
	}
	return toolResult{Output: fmt.Sprintf("The agent %s handed off the conversation to you. Continue the conversation with the user; the full history is above.", ag.Name)}, t, to
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
	subTeam, sub := rn.team.member(args.Agent)
	if sub == nil {
		return toolErrorf("agent %s is not part of this team (an external agent that failed to load is logged)", args.Agent)
	}
	chain := append(slices.Clone(parent.agents), ag.Name)
	if slices.Contains(chain, sub.Name) || len(chain) >= maxTransferDepth {
		return toolErrorf("cannot transfer task to %s: delegation cycle or depth limit (%s)", sub.Name, strings.Join(append(chain, sub.Name), " → "))
	}
	wctx := context.WithoutCancel(ctx)
	child, err := rn.newSubSession(wctx, parent, sub, chain, args.Task, args.ExpectedOutput, rn.rs.settings().toolsApproved)
	if err != nil {
		return toolErrorf("creating the sub-session: %v", err)
	}
	rec := child.rec

	// The sub-agent runs on a copy of the runner: an external one with its own
	// team's models and toolsets, and an external handoff in the sub-session
	// (which switches the runner's team) must not move the parent's.
	cp := *rn
	cp.team = subTeam
	srn := &cp
	rn.sink.send(agentSwitchingEvent(true, ag.Name, sub.Name))
	rn.sink.send(srn.agentInfo(sub))
	srn.prefix(ctx, child, sub)
	rn.sink.send(streamStartedEvent(rec.ID, sub.Name))
	last := srn.loop(ctx, child, sub)
	srn.sessionEnd(ctx, child, last)
	rn.sink.send(streamStoppedEvent(rec.ID, last.Name, stopReason(ctx, child)))

	rn.save.save(wctx, nil, "the sub-session link of session "+parent.rec.ID, func(ctx context.Context) error {
		return rn.s.st.appendSubSession(ctx, parent.rec.ID, rec.ID)
	})
	if full, err := rn.s.st.session(wctx, rec.ID); err != nil {
		rn.s.log.Warn("reading the finished sub-session failed; sub_session_completed not sent", "session", rec.ID, "err", err)
	} else {
		items, err := rn.s.st.items(wctx, rec.ID)
		if err != nil {
			rn.s.log.Warn("reading the sub-session's messages failed; sub_session_completed carries none", "session", rec.ID, "err", err)
		}
		rn.sink.send(subSessionCompletedEvent(parent.rec.ID, toSessionJSON(full, items), last.Name))
	}
	rn.sink.send(agentSwitchingEvent(false, sub.Name, ag.Name))
	rn.sink.send(rn.agentInfo(ag))
	if ctx.Err() != nil {
		return toolErrorf("The tool call was canceled by the user.")
	}
	if out, ok := lastAnswer(child.history); ok {
		return toolResult{Output: out}
	}
	return toolErrorf("Error calling tool: the agent %s gave no answer", sub.Name)
}

// newSubSession stores a child session of parent in which sub works on task: its
// system prompt and the implicit "Please proceed." that starts it.
func (rn *runner) newSubSession(ctx context.Context, parent *convo, sub *agentConfig, chain []string, task, expected string, approved bool) (*convo, error) {
	rec := &sessionRecord{ID: newUUID(), CreatedAt: time.Now(), ToolsApproved: approved, Thinking: rn.rs.settings().thinking,
		MaxIterations: sub.MaxIterations, WorkingDir: parent.rec.WorkingDir, ParentID: parent.rec.ID,
		AgentModelOverrides: "{}", CustomModelsUsed: "[]"}
	if err := rn.s.st.createSession(ctx, rec); err != nil {
		return nil, err
	}
	prompt := "You are a member of a team of agents. Your goal is to complete the following task:\n\n<task>\n" + task + "\n</task>"
	if expected != "" {
		prompt += "\n\n<expected_output>\n" + expected + "\n</expected_output>"
	}
	sys := chatMessage{Role: "system", Content: prompt, CreatedAt: nowRFC3339()}
	proceed := chatMessage{Role: "user", Content: "Please proceed.", CreatedAt: nowRFC3339()}
	rn.appendMessage(ctx, rec.ID, sub.Name, &sys, false)
	rn.appendMessage(ctx, rec.ID, "", &proceed, true)
	return &convo{rec: rec, agents: chain, history: []chatMessage{sys, proceed}}, nil
}

// lastAnswer is the content of the history's last non-empty assistant message.
func lastAnswer(history []chatMessage) (string, bool) {
	for i := len(history) - 1; i >= 0; i-- {
		if m := history[i]; m.Role == "assistant" && m.Content != "" {
			return m.Content, true
		}
	}
	return "", false
}
