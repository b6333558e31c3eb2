package main

// config_validate.go holds the checks a configuration must pass to load: the
// toolset matrix and permission patterns while decoding, then the post-load rules of
// CONFIG.md §1 step 5 (references, inline models, MCP definitions, skills sources).

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// patterns decodes a list of permission patterns and rejects a malformed one at its
// position: it could never match, so a bad deny would silently fail open.
func (d *cfgDecoder) patterns(n *yamlNode, dst *[]string) error {
	if err := d.strs(n, dst); err != nil {
		return err
	}
	for i, p := range *dst {
		if _, err := parsePattern(p); err != nil {
			return d.errf(n.Values[i], "%v", err)
		}
	}
	return nil
}

// toolsetProblem is the validation matrix of CONFIG.md §6.1 with the reference's
// messages: first the fields a type may not have, then what each type requires.
func (d *cfgDecoder) toolsetProblem(t *toolsetConfig) string {
	if msg := cfgToolsetFieldProblem(t); msg != "" {
		return msg
	}
	return d.toolsetTypeProblem(t)
}

// cfgToolsetFieldProblem reports a field set on a toolset whose type does not take it.
func cfgToolsetFieldProblem(t *toolsetConfig) string {
	is := func(types ...string) bool { return slices.Contains(types, t.Type) }
	switch {
	case t.Shell.len() > 0 && !is("script"):
		return "shell can only be used with type 'script'"
	case t.Path != "" && !is("memory", "tasks"):
		return "path can only be used with type 'memory' or 'tasks'"
	case len(t.PostEdit) > 0 && !is("filesystem"):
		return "post_edit can only be used with type 'filesystem'"
	case t.IgnoreVCS != nil && !is("filesystem"):
		return "ignore_vcs can only be used with type 'filesystem'"
	case t.Env.len() > 0 && !is("shell", "script", "mcp", "lsp"):
		return "env can only be used with type 'shell', 'script', 'mcp' or 'lsp'"
	case len(t.FileTypes) > 0 && !is("lsp"):
		return "file_types can only be used with type 'lsp'"
	case len(t.Models) > 0 && !is("model_picker"):
		return "models can only be used with type 'model_picker'"
	case t.Shared && !is("todo"):
		return "shared can only be used with type 'todo'"
	case t.Version != "" && !is("mcp", "lsp"):
		return "version can only be used with type 'mcp' or 'lsp'"
	case t.Command != "" && !is("mcp", "lsp"):
		return "command can only be used with type 'mcp' or 'lsp'"
	case len(t.Args) > 0 && !is("mcp", "lsp"):
		return "args can only be used with type 'mcp' or 'lsp'"
	case t.Ref != "" && !is("mcp"):
		return "ref can only be used with type 'mcp'"
	case (t.Remote.URL != "" || t.Remote.TransportType != "") && !is("mcp"):
		return "remote can only be used with type 'mcp'"
	case t.Remote.Headers.len() > 0 && !is("mcp", "a2a"):
		return "remote headers can only be used with type 'mcp' or 'a2a'"
	case t.Headers.len() > 0 && !is("openapi", "a2a"):
		return "headers can only be used with type 'openapi' or 'a2a'"
	case t.Config != nil && !is("mcp"):
		return "config can only be used with type 'mcp'"
	case t.URL != "" && !is("a2a", "openapi"):
		return "url can only be used with type 'a2a' or 'openapi'"
	case t.Name != "" && !is("mcp", "a2a"):
		return "name can only be used with type 'mcp' or 'a2a'"
	}
	return ""
}

// toolsetTypeProblem reports what a toolset's type requires and lacks; versions up to
// 5 keep their stricter memory and ref rules.
func (d *cfgDecoder) toolsetTypeProblem(t *toolsetConfig) string {
	switch t.Type {
	case "memory":
		if t.Path == "" && d.ver <= cfgMemoryPathUntil {
			return "memory toolset requires a path to be set"
		}
	case "mcp":
		return d.mcpProblem(t)
	case "a2a":
		if t.URL == "" {
			return "a2a toolset requires a url to be set"
		}
	case "lsp":
		if t.Command == "" {
			return "lsp toolset requires a command to be set"
		}
	case "openapi":
		if t.URL == "" {
			return "openapi toolset requires a url to be set"
		}
	case "model_picker":
		if len(t.Models) == 0 {
			return "model_picker toolset requires at least one model in the 'models' list"
		}
	}
	return ""
}

// mcpProblem: an MCP toolset names exactly one server, by command, remote or ref.
func (d *cfgDecoder) mcpProblem(t *toolsetConfig) string {
	n := 0
	for _, set := range []bool{t.Command != "", t.Remote.URL != "", t.Ref != ""} {
		if set {
			n++
		}
	}
	if !d.knows(cfgToolsetFields, "ref") { // v0: the messages do not name ref
		if n == 0 {
			return "either command or remote must be set"
		} else if n > 1 {
			return "either command or remote must be set, but only one of those"
		}
	}
	if n == 0 {
		return "either command, remote or ref must be set"
	} else if n > 1 {
		return "either command, remote or ref must be set, but only one of those"
	}
	if t.Ref != "" && d.ver <= cfgDockerRefUntil && !strings.Contains(t.Ref, "docker:") {
		return "only docker refs are supported for MCP tools, e.g., 'docker:context7'"
	}
	return ""
}

// cfgExpandAlloy trims a model reference and replaces references to alloy models
// (no provider, comma-separated model) by their members, recursively; empty
// entries are dropped. depth stops alloys that name each other.
func cfgExpandAlloy(f *agentFile, ref string, depth int) string {
	ref = strings.TrimSpace(ref)
	if ref == "" || depth > 8 {
		return ref
	}
	if !strings.Contains(ref, ",") {
		mc, ok := f.Models.get(ref)
		if !ok || mc.Provider != "" || !strings.Contains(mc.Model, ",") {
			return ref
		}
		return cfgExpandAlloy(f, mc.Model, depth+1)
	}
	var out []string
	for _, p := range cfgAlloyParts(ref) {
		if e := cfgExpandAlloy(f, p, depth+1); e != "" {
			out = append(out, e)
		}
	}
	return strings.Join(out, ",")
}

// cfgIsExternalRef reports whether a sub_agents/handoffs entry names an agent
// outside this file (an OCI reference or a URL) rather than a local agent.
func cfgIsExternalRef(ref string) bool {
	return strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") || strings.Contains(ref, "/")
}

// cfgValidate applies the reference's post-load rules and collects every problem.
func cfgValidate(f *agentFile) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cfgValidateProviders(f, fail)
	cfgResolveModels(f, fail)
	cfgValidateAgents(f, fail)
	return errors.Join(errs...)
}

// cfgFail collects one validation problem.
type cfgFail func(format string, args ...any)

func cfgValidateProviders(f *agentFile, fail cfgFail) {
	for _, name := range f.Providers.keys() {
		p := f.Providers.Values[name]
		switch {
		case strings.TrimSpace(name) == "":
			fail("provider '%s': name cannot be empty", name)
		case strings.TrimSpace(name) != name:
			fail("provider '%s': name cannot have leading or trailing whitespace", name)
		case strings.Contains(name, "/"):
			fail("provider '%s': name cannot contain '/'", name)
		case p.APIType != "" && p.APIType != "openai_chatcompletions" && p.APIType != "openai_responses":
			fail("provider '%s': invalid api_type '%s' (must be one of: openai_chatcompletions, openai_responses)", name, p.APIType)
		case p.BaseURL == "":
			fail("provider '%s': base_url is required", name)
		default:
			if _, err := url.Parse(p.BaseURL); err != nil {
				// err itself quotes the URL, password included; its cause does not.
				fail("provider '%s': invalid base_url '%s': %v", name, redactURL(p.BaseURL), errors.Unwrap(err))
			}
		}
	}
}

// cfgResolveModels defaults named models to parallel tool calls and adds the inline
// provider/model references of agents, routing rules and RAG strategies to models.
func cfgResolveModels(f *agentFile, fail cfgFail) {
	if f.Models == nil {
		f.Models = &orderedMap[*modelConfig]{}
	}
	// Named models default to parallel tool calls; synthesised inline ones do not.
	named := slices.Clone(f.Models.Keys)
	for _, name := range named {
		if mc := f.Models.Values[name]; mc.ParallelToolCalls == nil {
			t := true
			mc.ParallelToolCalls = &t
		}
	}
	// ensure adds an inline provider/model reference to models, or reports it.
	ensure := func(ref, who string) {
		ref = strings.TrimSpace(ref)
		if ref == "" || ref == "auto" {
			return
		}
		if _, ok := f.Models.get(ref); ok {
			return
		}
		if p, m, ok := cfgSplitInline(ref); ok {
			f.Models.set(ref, &modelConfig{Provider: p, Model: m})
			return
		}
		fail("%s references non-existent model '%s'", who, ref)
	}
	// Agents first: their model is rewritten with alloys expanded to member lists,
	// as the reference does, then routing rules, then RAG strategies.
	for _, a := range f.Agents {
		a.Model = cfgExpandAlloy(f, a.Model, 0)
		for p := range strings.SplitSeq(a.Model, ",") {
			ensure(p, fmt.Sprintf("agent '%s'", a.Name))
		}
	}
	for _, name := range named {
		for i, r := range f.Models.Values[name].RoutingRules {
			ensure(r.Model, fmt.Sprintf("routing rule %d in model '%s'", i, name))
		}
	}
	cfgResolveRAGModels(f, ensure, fail)
	if f.Models.len() == 0 {
		f.Models = nil
	}
}

// cfgResolveRAGModels ensures the model of every RAG strategy.
func cfgResolveRAGModels(f *agentFile, ensure func(ref, who string), fail cfgFail) {
	for _, name := range f.RAG.keys() {
		var src struct {
			Strategies []map[string]any `json:"strategies"`
		}
		if json.Unmarshal(f.RAG.Values[name], &src) != nil {
			continue // an unusual shape is the RAG builder's business
		}
		for _, st := range src.Strategies {
			typ, _ := st["type"].(string)
			raw, ok := st["model"]
			if !ok {
				continue
			}
			if ref, ok := raw.(string); ok {
				ensure(ref, fmt.Sprintf("RAG strategy '%s' in RAG '%s'", typ, name))
			} else {
				fail("RAG strategy '%s' in RAG '%s' has non-string model value", typ, name)
			}
		}
	}
}

// cfgValidateAgents resolves MCP definitions and checks the names agents refer to.
func cfgValidateAgents(f *agentFile, fail cfgFail) {
	names := map[string]bool{}
	for _, a := range f.Agents {
		names[a.Name] = true
	}
	for _, a := range f.Agents {
		for _, ts := range a.Toolsets {
			if ts.Type != "mcp" || ts.Ref == "" || strings.HasPrefix(ts.Ref, "docker:") {
				continue
			}
			def, ok := f.MCPs.get(ts.Ref)
			if !ok {
				fail("agent '%s' references non-existent MCP definition '%s'", a.Name, ts.Ref)
				continue
			}
			cfgMergeMCP(ts, def)
		}
		for _, s := range a.SubAgents {
			if !names[s] && !cfgIsExternalRef(s) {
				fail("agent '%s' references non-existent sub-agent '%s'", a.Name, s)
			}
		}
		for _, h := range a.Handoffs {
			if !names[h] && !cfgIsExternalRef(h) {
				fail("agent '%s' references non-existent handoff agent '%s'", a.Name, h)
			}
		}
		for _, s := range a.SkillSources {
			if s != "local" && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
				fail("agent '%s' has unknown skills source '%s' (must be 'local' or an HTTP/HTTPS URL)", a.Name, s)
			}
		}
	}
}

// cfgMergeMCP fills a `ref: <mcps key>` toolset from its definition: the agent's own
// fields win, env is merged with the agent's values winning.
func cfgMergeMCP(ts, def *toolsetConfig) {
	ts.Ref = def.Ref // "" or a docker: ref the definition itself points at
	if ts.Command == "" {
		ts.Command = def.Command
	}
	if ts.Remote.URL == "" {
		ts.Remote = def.Remote
	}
	if len(ts.Args) == 0 {
		ts.Args = slices.Clone(def.Args)
	}
	if ts.Version == "" {
		ts.Version = def.Version
	}
	if ts.Config == nil {
		ts.Config = def.Config
	}
	if ts.Name == "" {
		ts.Name = def.Name
	}
	if ts.Instruction == "" {
		ts.Instruction = def.Instruction
	}
	if len(ts.Tools) == 0 {
		ts.Tools = slices.Clone(def.Tools)
	}
	if !ts.Defer.All && ts.Defer.Tools == nil {
		ts.Defer = deferConfig{All: def.Defer.All, Tools: slices.Clone(def.Defer.Tools)}
	}
	if def.Env.len() > 0 {
		env := &orderedMap[string]{}
		for _, k := range def.Env.Keys {
			env.set(k, def.Env.Values[k])
		}
		for _, k := range ts.Env.keys() {
			env.set(k, ts.Env.Values[k])
		}
		ts.Env = env
	}
}
