package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// toolsTestEnv is a session environment rooted in a fresh temporary directory.
func toolsTestEnv(t *testing.T) *toolEnv {
	t.Helper()
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	return &toolEnv{SessionID: "s1", WorkingDir: dir, Dir: root, Getenv: func(string) string { return "" }}
}

// toolsTestOpts are build options with temporary working and data dirs and the given
// environment.
func toolsTestOpts(t *testing.T, env map[string]string) toolsetOptions {
	t.Helper()
	return toolsetOptions{
		ConfigPath: filepath.Join(t.TempDir(), "agent.yaml"),
		WorkingDir: t.TempDir(),
		DataDir:    t.TempDir(),
		Getenv:     func(k string) string { return env[k] },
	}
}

// toolsBuild builds a toolset and closes it at the end of the test.
func toolsBuild(t *testing.T, ts *toolsetConfig, opts toolsetOptions) toolset {
	t.Helper()
	s, err := newBuiltinToolset(ts, opts)
	if err != nil {
		t.Fatalf("newBuiltinToolset(%s) = %v", ts.Type, err)
	}
	t.Cleanup(func() {
		if err := s.close(); err != nil {
			t.Errorf("close(%s) = %v", ts.Type, err)
		}
	})
	return s
}

// toolsCall runs the named tool of s with args (marshalled to JSON unless already a
// string).
func toolsCall(t *testing.T, s toolset, env *toolEnv, name string, args any) toolResult {
	t.Helper()
	return toolsCallCtx(t, context.Background(), s, env, name, args)
}

func toolsCallCtx(t *testing.T, ctx context.Context, s toolset, env *toolEnv, name string, args any) toolResult {
	t.Helper()
	list, err := s.tools(ctx)
	if err != nil {
		t.Fatalf("tools() = %v", err)
	}
	raw, ok := args.(string)
	if !ok {
		b, err := json.Marshal(args)
		if err != nil {
			t.Fatal(err)
		}
		raw = string(b)
	}
	for _, tl := range list {
		if tl.def.Name == name {
			return tl.run(ctx, env, json.RawMessage(raw))
		}
	}
	t.Fatalf("no tool %q", name)
	return toolResult{}
}

// toolsWant checks a result's output and error flag.
func toolsWant(t *testing.T, call string, got toolResult, want string, wantErr bool) {
	t.Helper()
	if got.Output != want || got.IsError != wantErr {
		t.Errorf("%s = (%q, isError=%v); want (%q, isError=%v)", call, got.Output, got.IsError, want, wantErr)
	}
}

// toolsWantContains checks a result contains a substring and its error flag.
func toolsWantContains(t *testing.T, call string, got toolResult, want string, wantErr bool) {
	t.Helper()
	if !strings.Contains(got.Output, want) || got.IsError != wantErr {
		t.Errorf("%s = (%q, isError=%v); want containing %q, isError=%v", call, got.Output, got.IsError, want, wantErr)
	}
}

// toolsStrip removes every "description" and "title" key, recursively, as the
// reference dump the expected data comes from did.
func toolsStrip(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "description" || k == "title" {
				delete(x, k)
				continue
			}
			x[k] = toolsStrip(e)
		}
	case []any:
		for i := range x {
			x[i] = toolsStrip(x[i])
		}
	}
	return v
}

func toolsDecode(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// TestToolsSchemas compares names, order, categories, parameter schemas and
// annotations of every family with the reference's (testdata/tools/schemas.json,
// whose description and title keys were stripped at the source).
func TestToolsSchemas(t *testing.T) {
	data, err := os.ReadFile("testdata/tools/schemas.json")
	if err != nil {
		t.Fatal(err)
	}
	var want []struct {
		ConfigType  string          `json:"config_type"`
		Name        string          `json:"name"`
		Category    string          `json:"category"`
		Parameters  json.RawMessage `json:"parameters"`
		Annotations json.RawMessage `json:"annotations"`
	}
	if err := json.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	got := map[string][]toolDef{}
	var types []string
	for _, w := range want {
		if !slices.Contains(types, w.ConfigType) {
			types = append(types, w.ConfigType)
		}
	}
	for _, typ := range types {
		s := toolsBuild(t, &toolsetConfig{Type: typ}, toolsTestOpts(t, nil))
		list, _ := s.tools(context.Background())
		for _, tl := range list {
			got[typ] = append(got[typ], tl.def)
		}
	}
	idx := map[string]int{}
	for _, w := range want {
		i := idx[w.ConfigType]
		idx[w.ConfigType]++
		if i >= len(got[w.ConfigType]) {
			t.Errorf("%s: missing tool %s", w.ConfigType, w.Name)
			continue
		}
		d := got[w.ConfigType][i]
		if d.Name != w.Name || d.Category != w.Category {
			t.Errorf("%s tool %d = %s (%s); want %s (%s)", w.ConfigType, i, d.Name, d.Category, w.Name, w.Category)
			continue
		}
		if g, e := toolsStrip(toolsDecode(t, d.Parameters)), toolsDecode(t, w.Parameters); !reflect.DeepEqual(g, e) {
			gb, _ := json.Marshal(g)
			t.Errorf("%s parameters = %s; want %s", d.Name, gb, w.Parameters)
		}
		ab, _ := json.Marshal(d.Annotations)
		if g, e := toolsStrip(toolsDecode(t, ab)), toolsDecode(t, w.Annotations); !reflect.DeepEqual(g, e) {
			t.Errorf("%s annotations = %s; want %s", d.Name, ab, w.Annotations)
		}
		if d.OutputSchema != nil && !json.Valid(d.OutputSchema) || d.Description == "" {
			t.Errorf("%s: output schema %q, description %q", d.Name, d.OutputSchema, d.Description)
		}
	}
	for typ, defs := range got {
		if len(defs) != idx[typ] {
			t.Errorf("%s has %d tools; want %d", typ, len(defs), idx[typ])
		}
	}
}

func TestToolsUnknownType(t *testing.T) {
	_, err := newBuiltinToolset(&toolsetConfig{Type: "nope"}, toolsTestOpts(t, nil))
	if err == nil || err.Error() != "unknown toolset type: nope" {
		t.Errorf("newBuiltinToolset(nope) = %v; want unknown toolset type: nope", err)
	}
}

// TestToolsFilterAndInstruction checks the tools: allow-list (toolset order kept) and
// the instruction override with {ORIGINAL_INSTRUCTIONS} substituted once.
func TestToolsFilterAndInstruction(t *testing.T) {
	orig := toolsBuild(t, &toolsetConfig{Type: "todo"}, toolsTestOpts(t, nil)).instruction()
	if orig == "" {
		t.Fatal("todo has no instruction")
	}
	s := toolsBuild(t, &toolsetConfig{
		Type:        "todo",
		Tools:       []string{"list_todos", "create_todo", "missing"},
		Instruction: "Before. {ORIGINAL_INSTRUCTIONS} After {ORIGINAL_INSTRUCTIONS}",
	}, toolsTestOpts(t, nil))
	list, _ := s.tools(context.Background())
	var names []string
	for _, tl := range list {
		names = append(names, tl.def.Name)
	}
	if want := []string{"create_todo", "list_todos"}; !slices.Equal(names, want) {
		t.Errorf("filtered tools = %v; want %v", names, want)
	}
	if got, want := s.instruction(), "Before. "+orig+" After {ORIGINAL_INSTRUCTIONS}"; got != want {
		t.Errorf("instruction() = %q; want %q", got, want)
	}
	plain := toolsBuild(t, &toolsetConfig{Type: "think", Instruction: "Only this."}, toolsTestOpts(t, nil))
	if got := plain.instruction(); got != "Only this." {
		t.Errorf("instruction() = %q; want %q", got, "Only this.")
	}
}

func TestToolsThink(t *testing.T) {
	s := toolsBuild(t, &toolsetConfig{Type: "think"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	toolsWant(t, "think(a)", toolsCall(t, s, env, "think", map[string]string{"thought": "a"}), "Thoughts:\na", false)
	toolsWant(t, "think(b)", toolsCall(t, s, env, "think", map[string]string{"thought": "b"}), "Thoughts:\na\nb", false)
	toolsWantContains(t, "think(bad json)", toolsCall(t, s, env, "think", `{"thought":`), "invalid arguments", true)
	// The toolset is shared by sessions; thoughts are not.
	toolsWant(t, "think(other session)", toolsCall(t, s, &toolEnv{SessionID: "s2"}, "think", map[string]string{"thought": "c"}), "Thoughts:\nc", false)
}

func TestToolsTodo(t *testing.T) {
	s := toolsBuild(t, &toolsetConfig{Type: "todo"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	toolsWant(t, "create_todo", toolsCall(t, s, env, "create_todo", map[string]string{"description": "x"}),
		`{"created":{"id":"todo_1","description":"x","status":"pending"},"all_todos":[{"id":"todo_1","description":"x","status":"pending"}],"reminder":"The following todos are still incomplete and MUST be completed: (pending) [todo_1] x"}`, false)
	toolsWant(t, "create_todos", toolsCall(t, s, env, "create_todos", map[string][]string{"descriptions": {"y", "z"}}),
		`{"created":[{"id":"todo_2","description":"y","status":"pending"},{"id":"todo_3","description":"z","status":"pending"}],"all_todos":[{"id":"todo_1","description":"x","status":"pending"},{"id":"todo_2","description":"y","status":"pending"},{"id":"todo_3","description":"z","status":"pending"}],"reminder":"The following todos are still incomplete and MUST be completed: (pending) [todo_1] x (pending) [todo_2] y (pending) [todo_3] z"}`, false)
	upd := map[string]any{"updates": []map[string]string{{"id": "todo_1", "status": "in-progress"}, {"id": "todo_2", "status": "completed"}, {"id": "todo_3", "status": "completed"}, {"id": "todo_9", "status": "completed"}}}
	toolsWant(t, "update_todos", toolsCall(t, s, env, "update_todos", upd),
		`{"updated":[{"id":"todo_1","status":"in-progress"},{"id":"todo_2","status":"completed"},{"id":"todo_3","status":"completed"}],"not_found":["todo_9"],"all_todos":[{"id":"todo_1","description":"x","status":"in-progress"},{"id":"todo_2","description":"y","status":"completed"},{"id":"todo_3","description":"z","status":"completed"}],"reminder":"The following todos are still incomplete and MUST be completed: (in-progress) [todo_1] x"}`, false)
	toolsWantContains(t, "update_todos(unknown)", toolsCall(t, s, env, "update_todos", map[string]any{"updates": []map[string]string{{"id": "todo_9", "status": "completed"}}}), `"not_found":["todo_9"]`, true)
	toolsWantContains(t, "update_todos(bad status)", toolsCall(t, s, env, "update_todos", map[string]any{"updates": []map[string]string{{"id": "todo_1", "status": "done"}}}), "invalid status", true)
	toolsCall(t, s, env, "update_todos", map[string]any{"updates": []map[string]string{{"id": "todo_1", "status": "completed"}}})
	toolsWant(t, "list_todos", toolsCall(t, s, env, "list_todos", "{}"),
		`{"todos":[{"id":"todo_1","description":"x","status":"completed"},{"id":"todo_2","description":"y","status":"completed"},{"id":"todo_3","description":"z","status":"completed"}]}`, false)
}

// TestToolsTodoShared checks that shared todo toolsets see one process-wide list
// while unshared ones have one list per session.
func TestToolsTodoShared(t *testing.T) {
	env := toolsTestEnv(t)
	a := toolsBuild(t, &toolsetConfig{Type: "todo", Shared: true}, toolsTestOpts(t, nil))
	b := toolsBuild(t, &toolsetConfig{Type: "todo", Shared: true}, toolsTestOpts(t, nil))
	c := toolsBuild(t, &toolsetConfig{Type: "todo"}, toolsTestOpts(t, nil))
	desc := "shared item " + t.Name()
	toolsCall(t, a, env, "create_todo", map[string]string{"description": desc})
	toolsWantContains(t, "shared list_todos", toolsCall(t, b, env, "list_todos", "{}"), desc, false)
	toolsWant(t, "unshared list_todos", toolsCall(t, c, env, "list_todos", "{}"), `{"todos":null}`, false)
	toolsWantContains(t, "shared list_todos(other session)", toolsCall(t, a, &toolEnv{SessionID: "s2"}, "list_todos", "{}"), desc, false)

	toolsCall(t, c, env, "create_todo", map[string]string{"description": "mine"})
	toolsWantContains(t, "unshared list_todos(same session)", toolsCall(t, c, env, "list_todos", "{}"), `"mine"`, false)
	toolsWant(t, "unshared list_todos(other session)", toolsCall(t, c, &toolEnv{SessionID: "s2"}, "list_todos", "{}"), `{"todos":null}`, false)
}

func TestToolsUserPrompt(t *testing.T) {
	s := toolsBuild(t, &toolsetConfig{Type: "user_prompt"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	args := map[string]any{"message": "Your name?", "title": "Name", "schema": map[string]any{"type": "object", "properties": map[string]any{"name": map[string]string{"type": "string"}}}}
	toolsWant(t, "user_prompt(no handler)", toolsCall(t, s, env, "user_prompt", args),
		"user_prompt tool is not available in this context (no elicitation handler configured)", true)

	var got elicitationRequest
	answer := elicitationResponse{Action: "accept", Content: map[string]any{"name": "Ada"}}
	env.Elicit = func(ctx context.Context, req elicitationRequest) (elicitationResponse, error) {
		got = req
		return answer, nil
	}
	toolsWant(t, "user_prompt(accept)", toolsCall(t, s, env, "user_prompt", args), `{"action":"accept","content":{"name":"Ada"}}`, false)
	if got.Message != "Your name?" || got.Meta["cagent/title"] != "Name" || !strings.Contains(string(got.Schema), `"name"`) {
		t.Errorf("elicitation request = %+v", got)
	}
	answer = elicitationResponse{Action: "decline"}
	toolsWant(t, "user_prompt(decline)", toolsCall(t, s, env, "user_prompt", args), `{"action":"decline"}`, true)
	env.Elicit = func(ctx context.Context, req elicitationRequest) (elicitationResponse, error) {
		return elicitationResponse{}, errors.New("client went away")
	}
	toolsWantContains(t, "user_prompt(error)", toolsCall(t, s, env, "user_prompt", args), "client went away", true)
}

func TestToolsTruncate(t *testing.T) {
	if s := strings.Repeat("é", toolsMaxOutput); toolsTruncate(s) != s {
		t.Errorf("toolsTruncate cut a string of exactly the limit")
	}
	s := toolsTruncate(strings.Repeat("é", toolsMaxOutput+5))
	if want := strings.Repeat("é", toolsMaxOutput) + toolsTruncNote; s != want {
		t.Errorf("toolsTruncate(limit+5) has %d chars; want %d", len([]rune(s)), len([]rune(want)))
	}
}

// TestToolParametersDescribed: models choose arguments from their descriptions, so
// every parameter (nested ones included) of every built-in tool the model is offered
// has one, including script and api arguments declared without.
func TestToolParametersDescribed(t *testing.T) {
	f := newFakeOpenAI(t)
	yaml := fakeAgentYAML(f.URL, `    sub_agents: [helper]
    handoffs: [helper]
    toolsets:
      - type: think
      - type: todo
      - type: memory
      - type: filesystem
      - type: shell
      - type: fetch
      - type: user_prompt
      - type: tasks
      - type: script
        shell:
          greet:
            cmd: echo $name
            args:
              name: {type: string}
      - type: api
        api_config:
          name: get_item
          endpoint: http://127.0.0.1:1/items/${id}
          args:
            id: {type: string}
      - type: api
        api_config:
          name: post_item
          method: POST
          endpoint: http://127.0.0.1:1/items
          args:
            body: {}
  helper:
    model: fake
    description: Helper
`)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
	if len(f.requests()) != 1 {
		t.Fatalf("model requests = %d; want 1", len(f.requests()))
	}
	tools, _ := f.requests()[0]["tools"].([]any)
	var names, missing []string
	var walk func(tool, path string, schema map[string]any)
	walk = func(tool, path string, schema map[string]any) {
		props, _ := schema["properties"].(map[string]any)
		for k, v := range props {
			p := v.(map[string]any)
			if d, _ := p["description"].(string); strings.TrimSpace(d) == "" {
				missing = append(missing, tool+"."+path+k)
			}
			if items, ok := p["items"].(map[string]any); ok {
				walk(tool, path+k+"[].", items)
			}
		}
	}
	for _, tl := range tools {
		fn := tl.(map[string]any)["function"].(map[string]any)
		names = append(names, fn["name"].(string))
		walk(fn["name"].(string), "", fn["parameters"].(map[string]any))
	}
	for _, want := range []string{"think", "create_todo", "update_todos", "add_memory", "edit_file", "shell", "fetch", "user_prompt",
		"create_task", "greet", "get_item", "post_item", "transfer_task", "handoff"} {
		if !slices.Contains(names, want) {
			t.Errorf("tool %s not offered; tools = %v", want, names)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		t.Errorf("parameters without a description: %v", missing)
	}
}
