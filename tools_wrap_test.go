package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// requestTool returns the function definition named name in a chat request, nil if
// the request does not offer it.
func requestTool(req map[string]any, name string) map[string]any {
	tools, _ := req["tools"].([]any)
	for _, t := range tools {
		fn := t.(map[string]any)["function"].(map[string]any)
		if fn["name"] == name {
			return fn
		}
	}
	return nil
}

// requestToolNames lists the tools a chat request offers, in order.
func requestToolNames(req map[string]any) []string {
	var out []string
	tools, _ := req["tools"].([]any)
	for _, t := range tools {
		out = append(out, t.(map[string]any)["function"].(map[string]any)["name"].(string))
	}
	return out
}

// hasDescriptionParam reports whether a request's tool takes `description`.
func hasDescriptionParam(req map[string]any, name string) bool {
	fn := requestTool(req, name)
	if fn == nil {
		return false
	}
	props, _ := fn["parameters"].(map[string]any)["properties"].(map[string]any)
	_, ok := props["description"]
	return ok
}

// TestAddDescriptionParameter: with add_description_parameter the opted-in tools
// (shell, background jobs, edit/write_file, list_directory, search_files_content) offer
// the model a `description` parameter, others do not, and a call that fills it in runs.
func TestAddDescriptionParameter(t *testing.T) {
	yaml := "    add_description_parameter: true\n    toolsets:\n      - type: filesystem\n      - type: shell\n      - type: think\n"
	e, f := newRunEnv(t, yaml,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "list_directory", Args: `{"path":".","description":"look at the project"}`}}},
		fakeTurn{Text: []string{"done"}})
	os.WriteFile(filepath.Join(e.root, "hello.txt"), []byte("hi"), 0o644)
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	if got := toolResponses(evs); len(got) != 1 || !strings.Contains(got[0], "hello.txt") {
		t.Fatalf("list_directory with a description = %q; want the listing", got)
	}
	req := f.requests()[0]
	for _, name := range []string{"shell", "run_background_job", "list_background_jobs", "view_background_job", "stop_background_job", "edit_file", "write_file", "list_directory", "search_files_content"} {
		if !hasDescriptionParam(req, name) {
			t.Errorf("%s has no description parameter", name)
		}
	}
	for _, name := range []string{"read_file", "directory_tree", "think", "create_directory"} {
		if hasDescriptionParam(req, name) {
			t.Errorf("%s must not get a description parameter", name)
		}
	}
	// The parameter is optional (the definition the client sees; the OpenAI client
	// itself marks every property required) and the tool keeps its own parameters.
	for _, ev := range evs {
		if ev["type"] != "tool_call" {
			continue
		}
		params := ev["tool_definition"].(map[string]any)["parameters"].(map[string]any)
		if req, _ := params["required"].([]any); slices.Contains(req, any("description")) {
			t.Errorf("description must not be required: %v", req)
		}
		if _, ok := params["properties"].(map[string]any)["path"]; !ok {
			t.Errorf("list_directory lost its path parameter: %v", params)
		}
	}
}

// TestNoDescriptionParameterByDefault: without the key nothing changes.
func TestNoDescriptionParameterByDefault(t *testing.T) {
	e, f := newRunEnv(t, "    toolsets:\n      - type: shell\n", fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	if hasDescriptionParam(f.requests()[0], "shell") {
		t.Fatal("shell has a description parameter without add_description_parameter")
	}
}

// TestToonOutput: a toolset's `toon` re-encodes the JSON-object results of the tools
// it names as TOON; its other tools keep their JSON.
func TestToonOutput(t *testing.T) {
	yaml := "    toolsets:\n      - type: todo\n        toon: \"create_todo$, update\"\n"
	e, _ := newRunEnv(t, yaml,
		fakeTurn{ToolCalls: []fakeToolCall{
			{ID: "c1", Name: "create_todo", Args: `{"description":"buy milk"}`},
			{ID: "c2", Name: "create_todos", Args: `{"descriptions":["a, b"]}`},
		}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	got := toolResponses(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all())
	if len(got) != 2 {
		t.Fatalf("responses = %q", got)
	}
	want := "all_todos[1]{description,id,status}:\n  buy milk,todo_1,pending\ncreated:\n  description: buy milk\n  id: todo_1\n  status: pending\n" +
		`reminder: "The following todos are still incomplete and MUST be completed: (pending) [todo_1] buy milk"`
	if got[0] != want {
		t.Errorf("create_todo as TOON =\n%s\nwant\n%s", got[0], want)
	}
	if !json.Valid([]byte(got[1])) {
		t.Errorf("create_todos is not named by toon and must stay JSON: %s", got[1])
	}
}

// TestToonEncode pins the encoding of the shapes tool results take, as the
// reference's encoder writes them.
func TestToonEncode(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`{"b":1,"a":"x"}`, "a: x\nb: 1"},
		{`{"n":1.5,"i":-3,"big":1e3,"t":true,"z":null}`, "big: 1000\ni: -3\nn: 1.5\nt: true\nz: null"},
		{`{"s":"","q":"say \"hi\"","num":"42","lit":"true","dash":"- x","sp":" x","nl":"a\nb","colon":"a:b"}`,
			`colon: "a:b"` + "\n" + `dash: "- x"` + "\n" + `lit: "true"` + "\n" + `nl: "a\nb"` + "\n" + `num: "42"` + "\n" + `q: "say \"hi\""` + "\n" + `s: ""` + "\n" + `sp: " x"`},
		{`{"tags":["a","b c",3],"none":[]}`, "none[0]:\ntags[3]: a,b c,3"},
		{`{"users":[{"id":1,"name":"Ada"},{"id":2,"name":"Bob"}]}`, "users[2]{id,name}:\n  1,Ada\n  2,Bob"},
		{`{"m":[[1,2],[3]]}`, "m[2]:\n  - [2]: 1,2\n  - [1]: 3"},
		{`{"mixed":[1,{"a":1,"b":[1]},[{"x":1}],{"k":{"y":2},"z":0}]}`, "mixed[4]:\n  - 1\n  - a: 1\n    b[1]: 1\n  - k:\n      y: 2\n    z: 0"},
		{`{"rows":[{"a":1},{"a":1,"b":2}]}`, "rows[2]:\n  - a: 1\n  - a: 1\n    b: 2"},
		{`{"o":{"in":{"deep":"v"}},"e":{}}`, "e:\no:\n  in:\n    deep: v"},
		{`{"odd key":1,"list":[{"xs":[{"p":1},{"p":2}],"n":"v"}]}`, "list[1]:\n  - n: v\n    xs[2]{p}:\n      1\n      2\n\"odd key\": 1"},
	} {
		var obj map[string]any
		if err := json.Unmarshal([]byte(c.in), &obj); err != nil {
			t.Fatal(err)
		}
		if got := toonEncode(obj); got != c.want {
			t.Errorf("toon(%s) =\n%s\nwant\n%s", c.in, got, c.want)
		}
	}
}
