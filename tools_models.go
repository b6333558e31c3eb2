package main

// tools_models.go: which model answers a turn (CONFIG.md §5.2, §6.1, §6.3). In order:
// the toolset `model` of a tool called in the previous turn (that one turn only), else
// the model the model_picker tools chose for the agent in this session, else the
// agent's own; a model with `routing` rules then hands the turn to the rule whose
// examples best match the last user message (routing.go).
//
// change_model / revert_model are handled here, not by their toolset: they change the
// runner's state. The choice is kept in the session's agent_model_overrides (agent name
// → model ref), the column the reference keeps its model switches in, so it lasts for
// the session — across runs and restarts — and the reference reads it too.

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// newModelPickerToolset offers change_model and revert_model; the runtime runs them.
func newModelPickerToolset(models []string) *builtinToolset {
	list := strings.Join(models, ", ")
	return &builtinToolset{
		list: []tool{
			{def: toolsDef("change_model", "model", "Change Model",
				fmt.Sprintf("Change the current model to one of the available models: %s. Use this when you need a different model for the current task.", list), true)},
			{def: toolsDef("revert_model", "model", "Revert Model",
				"Revert to the agent's original/default model. Use this after completing a task that required a different model.", true)},
		},
		instr: "## Model Switching\n\nAvailable models: " + list + ".\n\n" +
			"Use `change_model` to switch to a model better suited for the current task (e.g., faster model for simple tasks, more capable model for complex reasoning).\n" +
			"Use `revert_model` to return to the original model when done.",
	}
}

// isModelPickerCall reports whether call is one of the model_picker tools (and not an
// MCP tool that happens to share the name).
func isModelPickerCall(def toolDef) bool {
	return def.Category == "model" && (def.Name == "change_model" || def.Name == "revert_model")
}

// pickModel runs change_model or revert_model for the current agent and announces the
// agent's model with agent_info, as the reference does.
func (rn *runner) pickModel(ctx context.Context, ag *agentConfig, call toolCall) toolResult {
	ref := ""
	if call.Function.Name == "change_model" {
		var a struct {
			Model string `json:"model"`
		}
		if err := json.Unmarshal([]byte(call.Function.Arguments), &a); err != nil {
			return toolErrorf("invalid arguments: %v", err)
		}
		if a.Model == "" {
			return toolErrorf("model parameter is required")
		}
		allowed := pickerModels(ag)
		if !slices.Contains(allowed, a.Model) {
			return toolErrorf("model %q is not in the allowed list. Available models: %s", a.Model, strings.Join(allowed, ", "))
		}
		if _, err := rn.team.file.modelSpec(a.Model, rn.s.cfg.getenv); err != nil {
			return toolErrorf("failed to set model: %v", err)
		}
		ref = a.Model
	}
	rn.setModelOverride(ctx, ag.Name, ref)
	rn.sink.send(rn.agentInfo(ag))
	rn.s.log.Info("model switched by model_picker", "agent", ag.Name, "model", cmp.Or(ref, ag.Model), "session", rn.root.ID)
	if ref == "" {
		return toolResult{Output: "Model reverted to the agent's default model"}
	}
	return toolResult{Output: "Model changed to " + ref}
}

// pickerModels are the models the agent's model_picker toolsets allow.
func pickerModels(ag *agentConfig) []string {
	var out []string
	for _, ts := range ag.Toolsets {
		if ts.Type == "model_picker" {
			out = append(out, ts.Models...)
		}
	}
	return out
}

// modelOverrides decodes the root session's agent_model_overrides. Only the run's
// goroutine reads and writes it.
func (rn *runner) modelOverrides() map[string]string {
	return decodeOverrides(rn.root.AgentModelOverrides)
}

// setModelOverride records ref as agent's model for the session ("" = back to its own).
func (rn *runner) setModelOverride(ctx context.Context, agent, ref string) {
	m := rn.modelOverrides()
	if ref == "" {
		delete(m, agent)
	} else {
		m[agent] = ref
	}
	b, _ := json.Marshal(m)
	rn.root.AgentModelOverrides = string(b)
	id, text := rn.root.ID, string(b)
	rn.save.save(context.WithoutCancel(ctx), "model overrides "+id, "the model choice of session "+id, func(ctx context.Context) error {
		return rn.s.st.setModelOverrides(ctx, id, text)
	})
}

// agentModelRef is the model the agent answers with in this session: its
// model_picker choice, else its own.
// A stored choice the config no longer knows (it changed, or the session came from
// another config) is passed over rather than failing every run.
func (rn *runner) agentModelRef(ag *agentConfig) string {
	if ref := rn.modelOverrides()[ag.Name]; ref != "" {
		if _, err := rn.team.file.modelSpec(ref, rn.s.cfg.getenv); err == nil {
			return ref
		}
		rn.s.log.Warn("stored model choice unknown to the config; using the agent's model", "agent", ag.Name, "model", ref, "session", rn.root.ID)
	}
	return ag.Model
}

// turnModels builds and keeps the model chain of a loop, rebuilding it only when the
// agent or the model to use changes (so a pinned fallback stays pinned).
type turnModels struct {
	ag      *agentConfig
	ref     string
	chain   *modelChain
	err     error
	oneTurn string // a toolset `model` for the next turn only
}

// pick returns the chain for the next turn of ag in c.
func (tm *turnModels) pick(rn *runner, c *convo, ag *agentConfig) (*modelChain, error) {
	if ag != tm.ag {
		tm.oneTurn = "" // a toolset's model does not carry over to another agent
	}
	ref := rn.agentModelRef(ag)
	if tm.oneTurn != "" {
		ref = tm.oneTurn
		spec, err := rn.team.file.modelSpec(ref, rn.s.cfg.getenv)
		if err != nil {
			rn.s.log.Warn("toolset model unusable; using the agent's", "model", ref, "err", err)
			ref = rn.agentModelRef(ag)
		} else {
			rn.sink.send(rn.agentInfoModel(ag, spec.Provider+"/"+spec.Model))
		}
	}
	ref = rn.team.file.route(ref, c.history)
	if tm.chain == nil && tm.err == nil || ag != tm.ag || ref != tm.ref {
		tm.chain, tm.err = rn.chainFor(ag, ref)
		tm.ag, tm.ref = ag, ref
	}
	return tm.chain, tm.err
}

// turnDone ends a turn: after a one-turn toolset model, agent_info announces the
// agent's own model again.
func (tm *turnModels) turnDone(rn *runner, ag *agentConfig) {
	if tm.oneTurn != "" {
		tm.oneTurn = ""
		rn.sink.send(rn.agentInfo(ag))
	}
}

// afterTools remembers the toolset model of the first called tool that has one.
func (tm *turnModels) afterTools(calls []toolCall, tools []tool) {
	for _, call := range calls {
		for _, t := range tools {
			if t.def.Name == call.Function.Name && t.model != "" {
				tm.oneTurn = t.model
				return
			}
		}
	}
}

// agentInfoModel is agent_info naming model ("provider/model") as the agent's.
func (rn *runner) agentInfoModel(ag *agentConfig, model string) *event {
	welcome := ""
	if ag.WelcomeMessage != "" {
		welcome = rn.team.describe(ag.WelcomeMessage)
	}
	_, name, _ := strings.Cut(model, "/")
	return agentInfoEvent(ag.Name, model, rn.team.describe(ag.Description), welcome, priceOf(name).context)
}
