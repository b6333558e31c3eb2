package main

// compaction.go: context compaction (API.md §8.7). When a conversation nears or
// passes its model's context window, the model is asked for a summary of it; the
// summary is stored as a `summary` item (the reference's row shape, so either server
// reads the other's sessions) and later prompts send "Session Summary: …" followed
// only by what came after it. Unlike the reference, a model turn is compacted at
// most once: a model that still overflows ends the run with an error instead of
// compacting again and again.

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// compactionThreshold is the share of the context window past which a conversation
// is compacted before the next model turn, as in the reference.
const compactionThreshold = 0.9

const (
	compactionSystemPrompt = "You summarize conversations between a user and an AI assistant so that the assistant can continue them later without the original messages."
	compactionUserPrompt   = "Summarize the conversation above so that it can be continued without it. Keep what the user asked for, what has been done so far and with what results, the decisions made, the files and names involved, and what remains to be done next. Answer with the summary only."
	compactionEmpty        = "Session is empty. Start a conversation before compacting."
	compactionOverflow     = "The conversation has exceeded the model's context window. Automatically compacting the conversation history..."
)

// compactState is a conversation's compaction bookkeeping.
type compactState struct {
	summary string // the last summary; the history holds only what came after it
	counted int    // messages of the history that the stored token counters cover
	done    bool   // compacted since the last model answer: no second time
}

// summaryPrompt is the history as the model sees it: the summary first, if any.
func (c *convo) summaryPrompt() []chatMessage {
	if c.compact.summary == "" {
		return c.history
	}
	s := chatMessage{Role: "user", Content: "Session Summary: " + c.compact.summary, CreatedAt: nowRFC3339()}
	return append([]chatMessage{s}, c.history...)
}

// noteUsage records the token counters of the model answer just added to the history.
func (c *convo) noteUsage(in, out int64) {
	c.rec.InputTokens, c.rec.OutputTokens = in, out
	c.compact.counted = len(c.history)
	c.compact.done = false
}

// estimateTokens is a rough count for messages no model has reported on yet:
// four characters a token plus a little for the role and framing.
func estimateTokens(msgs []chatMessage) int64 {
	var n int64
	for _, m := range msgs {
		chars := len(m.Content) + len(m.ReasoningContent)
		for _, p := range m.MultiContent {
			chars += len(p.Text)
		}
		for _, tc := range m.ToolCalls {
			chars += len(tc.Function.Name) + len(tc.Function.Arguments)
		}
		n += int64(chars/4) + 5
	}
	return n
}

// contextLimit is the context window of the agent's model, 0 when unknown.
func (rn *runner) contextLimit(ag *agentConfig) int64 {
	// The model the agent answers with in this session: a run body's model or a
	// model_picker choice changes the window.
	spec, err := rn.team.file.modelSpec(rn.agentModelRef(ag), rn.s.cfg.getenv)
	if err != nil {
		return 0
	}
	return priceOf(spec.Model).context
}

// compactIfFull compacts, before a model turn and after tool results (where the
// reference checks), when the last reported usage plus an estimate of what was added
// since passes 90 % of the model's context window. A failure is only a warning: the
// turn is still tried with the full history.
func (rn *runner) compactIfFull(ctx context.Context, c *convo, ag *agentConfig, chain *modelChain) {
	limit := rn.contextLimit(ag)
	if c.compact.done || limit <= 0 || chain == nil || ctx.Err() != nil {
		return
	}
	used := c.rec.InputTokens + c.rec.OutputTokens + estimateTokens(c.history[min(c.compact.counted, len(c.history)):])
	if float64(used) <= float64(limit)*compactionThreshold {
		return
	}
	if err := rn.compactConvo(ctx, c, ag, chain, limit); err != nil && ctx.Err() == nil {
		rn.sink.send(warningEvent("Compacting the conversation failed, continuing without: "+err.Error(), ag.Name))
	}
}

// compactAfterOverflow handles a turn that failed because the prompt no longer fits:
// it compacts and reports whether to retry the turn. Otherwise the run ends with an
// error event, also when the turn had been compacted already.
func (rn *runner) compactAfterOverflow(ctx context.Context, c *convo, ag *agentConfig, chain *modelChain, cause error) bool {
	if c.compact.done {
		rn.fail(c, "The conversation still exceeds the model's context window after compaction; start a new session or use a model with a larger context window: "+cause.Error(), errCodeContextExceeded)
		return false
	}
	rn.s.log.Warn("context window overflow, compacting", "session", c.rec.ID, "agent", ag.Name, "input_tokens", c.rec.InputTokens, "output_tokens", c.rec.OutputTokens)
	rn.sink.send(warningEvent(compactionOverflow, ag.Name))
	err := rn.compactConvo(ctx, c, ag, chain, rn.contextLimit(ag))
	if err != nil && ctx.Err() == nil {
		rn.fail(c, "The conversation exceeds the model's context window and compacting it failed: "+err.Error(), errCodeContextExceeded)
	}
	return err == nil
}

// compactConvo asks the model (thinking off, no tools) for a summary of the
// conversation, stores it and what the turn still needs (the system messages and
// the user's current question, as implicit messages after the summary), and
// emits session_compaction, session_summary and token_usage as the reference does.
func (rn *runner) compactConvo(ctx context.Context, c *convo, ag *agentConfig, chain *modelChain, limit int64) error {
	c.compact.done = true
	id := c.rec.ID
	status := func(s, outcome string) {
		rn.sink.send(sessionCompactionEvent(id, s, outcome, ag.Name))
	}
	status("started", "")
	if len(c.history) == 0 && c.compact.summary == "" {
		rn.sink.send(warningEvent(compactionEmpty, ag.Name))
		status("completed", "skipped")
		return errors.New("nothing to summarize")
	}
	summary, usage, spec, err := rn.summarize(ctx, c, chain)
	if err != nil {
		status("completed", "failed")
		return err
	}
	keep := carriedMessages(c.history)
	wctx := context.WithoutCancel(ctx)
	rn.save.save(wctx, nil, "the summary of session "+id, func(ctx context.Context) error {
		_, _, err := rn.s.st.appendItem(ctx, id, "summary", nil, nil, 0, nil, summary)
		return err
	})
	for i := range keep {
		rn.appendMessage(ctx, id, ag.Name, &keep[i], true)
	}
	c.history, c.compact.summary, c.compact.counted = keep, summary, 0
	// As in the reference, the new context size is the summary's length.
	in := usage.OutputTokens
	c.rec.InputTokens, c.rec.OutputTokens = in, 0
	c.cost += priceOf(spec.Model).cost(&usage)
	rn.sink.send(sessionSummaryEvent(id, summary, ag.Name))
	status("completed", "applied")
	cost := c.cost
	rn.sink.send(tokenUsageEvent(id, usageJSON{InputTokens: in, ContextLength: in, ContextLimit: limit, Cost: cost}, ag.Name))
	rn.save.save(wctx, "usage "+id, "the token usage of session "+id, func(ctx context.Context) error {
		return rn.s.st.setUsage(ctx, id, in, 0, cost)
	})
	return nil
}

// summarize streams the model's summary of c's conversation.
func (rn *runner) summarize(ctx context.Context, c *convo, chain *modelChain) (string, messageUsage, modelSpec, error) {
	msgs := []chatMessage{{Role: "system", Content: compactionSystemPrompt}}
	msgs = append(msgs, repairToolCalls(c.summaryPrompt())...)
	msgs = append(msgs, chatMessage{Role: "user", Content: compactionUserPrompt, CreatedAt: nowRFC3339()})
	var out strings.Builder
	var usage messageUsage
	spec, err := chain.stream(ctx, &modelRequest{Messages: msgs, NoTools: true}, func(ev modelEvent) {
		switch ev.Kind {
		case evText:
			out.WriteString(ev.Text)
		case evUsage:
			if ev.Usage != nil {
				usage = *ev.Usage
			}
		}
	}, nil)
	if err != nil {
		return "", usage, spec, fmt.Errorf("generating the summary: %w", err)
	}
	s := strings.TrimSpace(out.String())
	if s == "" {
		return "", usage, spec, errors.New("the model returned an empty summary")
	}
	return s, usage, spec, nil
}

// carriedMessages is what a compacted turn still needs besides the summary: the
// history's system messages (a sub-session's task) and the last user messages (the
// question being answered).
func carriedMessages(history []chatMessage) []chatMessage {
	var keep []chatMessage
	last := len(history) - 1
	for last >= 0 && history[last].Role != "user" {
		last--
	}
	first := last
	for first > 0 && history[first-1].Role == "user" {
		first--
	}
	for i, m := range history {
		if m.Role == "system" || (last >= 0 && i >= first && i <= last) {
			m.CreatedAt = nowRFC3339()
			keep = append(keep, m)
		}
	}
	return keep
}
