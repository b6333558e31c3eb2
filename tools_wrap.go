package main

// tools_wrap.go: what the keys common to every toolset do to its tools (CONFIG.md §6.1)
// and the agent's add_description_parameter (§4). `toon` re-encodes the JSON-object
// outputs of the tools it names as TOON (toon.go); `model` marks the tools so that the
// turn after a call to one of them uses that model (tools_models.go); `defer` is in
// tools_defer.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// wrappedToolset applies a toolset config's toon and model keys to the tools of the
// toolset it wraps; instruction and close are the inner toolset's.
type wrappedToolset struct {
	toolset
	toon    []*regexp.Regexp
	model   string
	exclude []string // tools listed by a partial `defer`, offered through add_tool only
}

// wrapToolset returns ts with cfg's toon and model applied (ts itself when neither is
// set). A toon pattern that is not a regexp is an error, which skips the toolset with a
// warning (the reference panics on it).
func wrapToolset(ts toolset, cfg *toolsetConfig) (toolset, error) {
	w := &wrappedToolset{toolset: ts, model: cfg.Model}
	if cfg.Toon != "" {
		for p := range strings.SplitSeq(cfg.Toon, ",") {
			re, err := regexp.Compile(strings.TrimSpace(p))
			if err != nil {
				return nil, fmt.Errorf("toon: %v", err)
			}
			w.toon = append(w.toon, re)
		}
	}
	if w.toon == nil && w.model == "" {
		return ts, nil
	}
	return w, nil
}

func (w *wrappedToolset) tools(ctx context.Context) ([]tool, error) {
	list, err := w.toolset.tools(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]tool, 0, len(list))
	for _, t := range list {
		if slices.Contains(w.exclude, t.def.Name) {
			continue
		}
		if w.model != "" {
			t.model = w.model
		}
		if t.run != nil && slices.ContainsFunc(w.toon, func(re *regexp.Regexp) bool { return re.MatchString(t.def.Name) }) {
			t.run = toonRun(t.run)
		}
		out = append(out, t)
	}
	return out, nil
}

// toonRun re-encodes run's output as TOON when it is a JSON object; anything else
// (text, arrays, errors that are not JSON) passes unchanged, as in the reference.
func toonRun(run func(context.Context, *toolEnv, json.RawMessage) toolResult) func(context.Context, *toolEnv, json.RawMessage) toolResult {
	return func(ctx context.Context, env *toolEnv, args json.RawMessage) toolResult {
		res := run(ctx, env, args)
		var obj map[string]any
		if json.Unmarshal([]byte(res.Output), &obj) != nil || obj == nil {
			return res
		}
		res.Output = toonEncode(obj)
		return res
	}
}

// describedTools are the built-in tools that take the optional `description`
// parameter under add_description_parameter, by category (the reference's opt-in list).
var describedTools = map[string][]string{
	"filesystem": {"edit_file", "list_directory", "search_files_content", "write_file"},
	"shell":      {"shell", "run_background_job", "list_background_jobs", "view_background_job", "stop_background_job"},
}

// descriptionParam is the property the model fills in to say what a call is for.
var descriptionParam = map[string]any{"type": "string", "description": "A brief, human-readable description of what this tool call is doing"}

// addDescriptionParam gives the opted-in tools of list an optional `description`
// string parameter. The tools ignore it; it is for the people watching the calls.
// Definitions are copied, never changed in place: toolsets are shared.
func addDescriptionParam(list []tool) []tool {
	out := slices.Clone(list)
	for i, t := range out {
		if !slices.Contains(describedTools[t.def.Category], t.def.Name) {
			continue
		}
		var schema map[string]any
		if json.Unmarshal(t.def.Parameters, &schema) != nil || schema == nil {
			continue
		}
		props, _ := schema["properties"].(map[string]any)
		if props == nil {
			props = map[string]any{}
			schema["properties"] = props
		}
		props["description"] = descriptionParam
		b, err := json.Marshal(schema)
		if err != nil {
			continue
		}
		out[i].def.Parameters = b
	}
	return out
}
