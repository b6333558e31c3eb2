package main

// ignored.go: configuration agentd reads but cannot act on. No key is ignored
// silently: each is named in a `warning` event at the start of every run of the agent
// (with the toolsets that failed) and in the log when the config loads.

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// codeModeWarning explains why code mode (the agent's code_mode_tools or
// --code-mode-tools) changes nothing.
const codeModeWarning = "code_mode_tools is not supported (agentd has no JavaScript engine): the tools are offered to the model one by one"

// ignoredProviderOpts are provider_opts keys of Docker Model Runner and reranking that
// only the reference's model runner integration understands.
var ignoredProviderOpts = []string{"runtime_flags", "context_size", "rerank_prompt"}

// ignoredKeyWarnings lists what ag configures that agentd does not act on.
func ignoredKeyWarnings(f *agentFile, ag *agentConfig, codeMode bool) []string {
	var out []string
	if ag.CodeModeTools || codeMode {
		out = append(out, codeModeWarning)
	}
	for _, ts := range ag.Toolsets {
		if ts.Version != "" && ts.Type == "mcp" {
			out = append(out, fmt.Sprintf("toolset %s: version %q (auto-install) is not supported; the command must already be installed", ts.Type, ts.Version))
		}
		if ts.Type == "lsp" && (ts.Toon != "" || ts.Model != "" || ts.Defer.All || len(ts.Defer.Tools) > 0) {
			out = append(out, "toolset lsp: toon, model and defer are not applied to lsp toolsets")
		}
	}
	for _, ref := range agentModelRefs(f, ag) {
		if ag.StructuredOutput != nil && modelRefProvider(f, ref) == "amazon-bedrock" {
			out = append(out, fmt.Sprintf("model %s: structured_output is not supported on Amazon Bedrock (Converse has no response schema) and is not sent", ref))
		}
		mc, ok := f.Models.get(ref)
		if !ok {
			continue
		}
		var keys []string
		for k := range mc.ProviderOpts {
			if slices.Contains(ignoredProviderOpts, k) || strings.HasPrefix(k, "speculative_") {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			out = append(out, fmt.Sprintf("model %s: provider_opts.%s is not supported and is ignored", ref, k))
		}
	}
	return out
}

// agentModelRefs are the models an agent may use: its own, its model_picker and
// toolset models, and the targets of their routing rules.
func agentModelRefs(f *agentFile, ag *agentConfig) []string {
	refs := []string{ag.Model}
	for _, ts := range ag.Toolsets {
		refs = append(refs, ts.Models...)
		if ts.Model != "" {
			refs = append(refs, ts.Model)
		}
	}
	for i := 0; i < len(refs); i++ {
		if mc, ok := f.Models.get(refs[i]); ok {
			for _, r := range mc.RoutingRules {
				if !slices.Contains(refs, r.Model) {
					refs = append(refs, r.Model)
				}
			}
		}
	}
	return refs
}

// logIgnoredKeys logs, at load, what each agent of f configures that is not acted on.
func logIgnoredKeys(log *slog.Logger, id string, f *agentFile, codeMode bool) {
	if log == nil {
		return
	}
	for _, ag := range f.Agents {
		for _, w := range ignoredKeyWarnings(f, ag, codeMode) {
			log.Warn("configuration not acted on", "agent_file", id, "agent", ag.Name, "warning", w)
		}
	}
}

// modelRefProvider is the provider a model reference names: a config model's
// provider, or the part before the slash of an inline provider/model.
func modelRefProvider(f *agentFile, ref string) string {
	if mc, ok := f.Models.get(ref); ok {
		return mc.Provider
	}
	provider, _, _ := strings.Cut(ref, "/")
	return provider
}
