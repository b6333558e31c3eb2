package main

// tools.go: the built-in toolsets (CONFIG.md §6.3, spec/builtin-tools.json). Each family
// lives in its own file (tools_fs.go, tools_shell.go, …); this file holds the factory,
// the shared toolset type and the small families (think, todo, user_prompt).

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// toolsTruncNote is appended to outputs cut at toolsMaxOutput (reference wording).
const toolsTruncNote = "\n\n[Output truncated: exceeded 30,000 character limit]"

// builtinToolset is a fixed list of tools with a system-prompt text. closeFn, when
// set, releases what the family holds (a database, background processes).
type builtinToolset struct {
	list    []tool
	instr   string
	closeFn func() error
}

func (b *builtinToolset) tools(ctx context.Context) ([]tool, error) { return b.list, nil }
func (b *builtinToolset) instruction() string                       { return b.instr }

func (b *builtinToolset) close() error {
	if b.closeFn == nil {
		return nil
	}
	return b.closeFn()
}

// newBuiltinToolset returns the built-in toolset for ts.Type. An unknown type is an
// error ("unknown toolset type: X"), which the caller turns into a skipped toolset.
// The `tools:` allow-list and the `instruction:` override are applied here.
func newBuiltinToolset(ts *toolsetConfig, opts toolsetOptions) (toolset, error) {
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	var (
		b   *builtinToolset
		err error
	)
	switch ts.Type {
	case "think":
		b = newThinkToolset()
	case "todo":
		b = newTodoToolset(ts.Shared)
	case "memory":
		b, err = newMemoryToolset(ts, opts)
	case "filesystem":
		b, err = newFSToolset(ts)
	case "shell":
		b, err = newShellToolset(ts, opts)
	case "script":
		b, err = newScriptToolset(ts, opts)
	case "fetch":
		b = newFetchToolset(ts)
	case "api":
		b, err = newAPIToolset(ts, opts)
	case "user_prompt":
		b = newUserPromptToolset()
	case "tasks":
		b, err = newTasksToolset(ts, opts)
	case "model_picker":
		b = newModelPickerToolset(ts.Models)
	case "background_agents":
		b = newBackgroundAgentsToolset()
	default:
		return nil, fmt.Errorf("unknown toolset type: %s", ts.Type)
	}
	if err != nil {
		return nil, err
	}
	if ts.Tools != nil {
		b.list = slices.DeleteFunc(b.list, func(t tool) bool { return !slices.Contains(ts.Tools, t.def.Name) })
	}
	if ts.Instruction != "" {
		b.instr = strings.Replace(ts.Instruction, "{ORIGINAL_INSTRUCTIONS}", b.instr, 1)
	}
	return b, nil
}

// argSchema decodes the JSON schema of an argument declared in the YAML (script and
// api tools). The type defaults to string and, since models choose arguments by their
// descriptions, a missing description to desc.
func argSchema(raw json.RawMessage, desc string) (map[string]any, bool) {
	var schema map[string]any
	if json.Unmarshal(raw, &schema) != nil || schema == nil {
		return nil, false
	}
	if _, ok := schema["type"]; !ok {
		schema["type"] = "string"
	}
	if d, _ := schema["description"].(string); strings.TrimSpace(d) == "" {
		schema["description"] = desc
	}
	return schema, true
}

// toolsDef builds the definition of a built-in tool from the reference schemas in
// tools_schema.go; it panics on an unknown name because that is a programming error.
func toolsDef(name, category, title, desc string, readOnly bool) toolDef {
	s, ok := toolsSchemas[name]
	if !ok {
		panic("tools: no schema for " + name)
	}
	d := toolDef{
		Name:        name,
		Category:    category,
		Description: desc,
		Parameters:  json.RawMessage(s.params),
		Annotations: toolAnnotations{Title: title, ReadOnlyHint: readOnly},
	}
	if s.output != "" {
		d.OutputSchema = json.RawMessage(s.output)
	}
	return d
}

// toolsArgs decodes a tool's JSON arguments; empty arguments mean "{}".
func toolsArgs(raw json.RawMessage, v any) error {
	if len(strings.TrimSpace(string(raw))) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("invalid arguments: %v", err)
	}
	return nil
}

// toolsRun wraps a typed tool body: it decodes the arguments into a fresh A and
// reports a decoding failure as a tool error.
func toolsRun[A any](fn func(ctx context.Context, env *toolEnv, a A) toolResult) func(context.Context, *toolEnv, json.RawMessage) toolResult {
	return func(ctx context.Context, env *toolEnv, raw json.RawMessage) toolResult {
		var a A
		if err := toolsArgs(raw, &a); err != nil {
			return toolErrorf("%v", err)
		}
		return fn(ctx, env, a)
	}
}

// toolsJSON returns v as a successful JSON result.
func toolsJSON(v any) toolResult {
	b, err := json.Marshal(v)
	if err != nil {
		return toolErrorf("encoding result: %v", err)
	}
	return toolResult{Output: string(b)}
}

// toolsTruncate cuts s at toolsMaxOutput characters and appends the reference's note.
func toolsTruncate(s string) string {
	if len(s) <= toolsMaxOutput || utf8.RuneCountInString(s) <= toolsMaxOutput {
		return s
	}
	n := 0
	for i := range s {
		if n == toolsMaxOutput {
			return s[:i] + toolsTruncNote
		}
		n++
	}
	return s
}

// --- think ---

// toolsPerSession holds one T per session ID. The reference builds a team (and so its
// toolsets) per session; ours are shared, so per-session state is keyed here. Entries
// are small and live as long as the toolset.
type toolsPerSession[T any] struct {
	mu sync.Mutex
	m  map[string]*T
}

// get returns the session's T, creating it on first use.
func (p *toolsPerSession[T]) get(env *toolEnv) *T {
	id := toolsSessionID(env)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]*T{}
	}
	v, ok := p.m[id]
	if !ok {
		v = new(T)
		p.m[id] = v
	}
	return v
}

// toolsSessionID is the calling session's ID, "" when there is no session.
func toolsSessionID(env *toolEnv) string {
	if env == nil {
		return ""
	}
	return env.SessionID
}

// thinkLog is one session's thoughts.
type thinkLog struct {
	mu       sync.Mutex
	thoughts []string
}

// newThinkToolset returns the think tool: a scratchpad whose log is per session.
func newThinkToolset() *builtinToolset {
	logs := &toolsPerSession[thinkLog]{}
	run := toolsRun(func(ctx context.Context, env *toolEnv, a struct {
		Thought string `json:"thought"`
	}) toolResult {
		l := logs.get(env)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.thoughts = append(l.thoughts, a.Thought)
		return toolResult{Output: "Thoughts:\n" + strings.Join(l.thoughts, "\n")}
	})
	return &builtinToolset{
		list: []tool{{def: toolsDef("think", "think", "Think",
			"Think about something step by step. The thought is recorded and nothing else happens: use it to plan, reason about tool results or check a rule before acting.", true), run: run}},
		instr: "Use the think tool as a scratchpad before acting on complex tasks: list the rules that apply, check the information you have, and plan your next steps.",
	}
}

// --- todo ---

// todoItem is one entry of a todo list (JSON as the reference).
type todoItem struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	Status      string `json:"status"`
}

// todoList is a concurrency-safe todo list. IDs are todo_1, todo_2, … per list.
type todoList struct {
	mu    sync.Mutex
	items []todoItem
	next  int
}

// todoShared is the process-wide list used by every `shared: true` todo toolset.
var todoShared = &todoList{}

// add appends a pending item; the caller holds l.mu.
func (l *todoList) add(desc string) todoItem {
	l.next++
	it := todoItem{ID: fmt.Sprintf("todo_%d", l.next), Description: desc, Status: "pending"}
	l.items = append(l.items, it)
	return it
}

// snapshot copies the items and builds the reminder; the caller holds l.mu.
func (l *todoList) snapshot() ([]todoItem, string) {
	all := slices.Clone(l.items)
	var pend []string
	for _, it := range all {
		if it.Status != "completed" {
			pend = append(pend, fmt.Sprintf("(%s) [%s] %s", it.Status, it.ID, it.Description))
		}
	}
	if len(pend) == 0 {
		return all, ""
	}
	return all, "The following todos are still incomplete and MUST be completed: " + strings.Join(pend, " ")
}

// newTodoToolset returns the todo tools over one list per session, or over todoShared.
func newTodoToolset(shared bool) *builtinToolset {
	lists := &toolsPerSession[todoList]{}
	listOf := func(env *toolEnv) *todoList {
		if shared {
			return todoShared
		}
		return lists.get(env)
	}
	createOne := toolsRun(func(ctx context.Context, env *toolEnv, a struct {
		Description string `json:"description"`
	}) toolResult {
		l := listOf(env)
		l.mu.Lock()
		defer l.mu.Unlock()
		it := l.add(a.Description)
		all, rem := l.snapshot()
		return toolsJSON(struct {
			Created  todoItem   `json:"created"`
			AllTodos []todoItem `json:"all_todos"`
			Reminder string     `json:"reminder,omitempty"`
		}{it, all, rem})
	})
	createMany := toolsRun(func(ctx context.Context, env *toolEnv, a struct {
		Descriptions []string `json:"descriptions"`
	}) toolResult {
		l := listOf(env)
		l.mu.Lock()
		defer l.mu.Unlock()
		var created []todoItem
		for _, d := range a.Descriptions {
			created = append(created, l.add(d))
		}
		all, rem := l.snapshot()
		return toolsJSON(struct {
			Created  []todoItem `json:"created"`
			AllTodos []todoItem `json:"all_todos"`
			Reminder string     `json:"reminder,omitempty"`
		}{created, all, rem})
	})
	type update struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	updateMany := toolsRun(func(ctx context.Context, env *toolEnv, a struct {
		Updates []update `json:"updates"`
	}) toolResult {
		for _, u := range a.Updates {
			switch u.Status {
			case "pending", "in-progress", "completed":
			default:
				return toolErrorf("invalid status %q for %s: use pending, in-progress or completed", u.Status, u.ID)
			}
		}
		l := listOf(env)
		l.mu.Lock()
		defer l.mu.Unlock()
		var updated []update
		var notFound []string
		for _, u := range a.Updates {
			i := slices.IndexFunc(l.items, func(it todoItem) bool { return it.ID == u.ID })
			if i < 0 {
				notFound = append(notFound, u.ID)
				continue
			}
			l.items[i].Status = u.Status
			updated = append(updated, u)
		}
		all, rem := l.snapshot()
		r := toolsJSON(struct {
			Updated  []update   `json:"updated,omitempty"`
			NotFound []string   `json:"not_found,omitempty"`
			AllTodos []todoItem `json:"all_todos"`
			Reminder string     `json:"reminder,omitempty"`
		}{updated, notFound, all, rem})
		r.IsError = len(updated) == 0
		return r
	})
	list := toolsRun(func(ctx context.Context, env *toolEnv, a struct{}) toolResult {
		l := listOf(env)
		l.mu.Lock()
		defer l.mu.Unlock()
		all, rem := l.snapshot()
		return toolsJSON(struct {
			Todos    []todoItem `json:"todos"`
			Reminder string     `json:"reminder,omitempty"`
		}{all, rem})
	})
	return &builtinToolset{
		list: []tool{
			{def: toolsDef("create_todo", "todo", "Create TODO", "Add one item to the todo list. It starts as pending.", true), run: createOne},
			{def: toolsDef("create_todos", "todo", "Create TODOs", "Add several items to the todo list at once, in order. They start as pending.", true), run: createMany},
			{def: toolsDef("update_todos", "todo", "Update TODOs", "Change the status of todo items by ID. Status is pending, in-progress or completed.", true), run: updateMany},
			{def: toolsDef("list_todos", "todo", "List TODOs", "Show every todo item with its ID and status.", true), run: list},
		},
		instr: `Use the todo tools to plan and track multi-step work:
- Before starting, break the work into todos with create_todos.
- Mark a todo in-progress when you start it and completed as soon as it is done, with update_todos.
- Do not finish your answer while todos are still pending or in-progress.`,
	}
}

// --- user_prompt ---

// newUserPromptToolset returns user_prompt, which asks the client a question through
// an elicitation and returns its answer.
func newUserPromptToolset() *builtinToolset {
	run := toolsRun(func(ctx context.Context, env *toolEnv, a struct {
		Message string          `json:"message"`
		Title   string          `json:"title"`
		Schema  json.RawMessage `json:"schema"`
	}) toolResult {
		if env == nil || env.Elicit == nil {
			return toolErrorf("user_prompt tool is not available in this context (no elicitation handler configured)")
		}
		if strings.TrimSpace(a.Message) == "" {
			return toolErrorf("message is required")
		}
		req := elicitationRequest{Message: a.Message}
		if len(a.Schema) > 0 && string(a.Schema) != "null" {
			req.Schema = a.Schema
		}
		if a.Title != "" {
			req.Meta = map[string]any{"cagent/title": a.Title}
		}
		resp, err := env.Elicit(ctx, req)
		if err != nil {
			return toolErrorf("user_prompt failed: %v", err)
		}
		r := toolsJSON(struct {
			Action  string         `json:"action"`
			Content map[string]any `json:"content,omitempty"`
		}{resp.Action, resp.Content})
		r.IsError = resp.Action != "accept"
		return r
	})
	return &builtinToolset{
		list: []tool{{def: toolsDef("user_prompt", "user_prompt", "User Prompt",
			"Ask the user a question and wait for the answer. Give a JSON schema to request structured fields; the result has the user's action (accept, decline or cancel) and content.", true), run: run}},
		instr: "Use the user_prompt tool when you need information or a decision only the user can give. Ask one clear question; use a schema when you need specific fields.",
	}
}
