package main

import (
	"slices"
	"strings"
	"testing"
)

// TestDeferredTools: deferred tools are not offered; search_tool and add_tool come
// after the agent's other toolsets (the count says so, as the reference's); search_tool
// finds a deferred tool, add_tool activates it for the session, and the model can then
// call it — in this run and the next, but not in another session.
func TestDeferredTools(t *testing.T) {
	yaml := "    toolsets:\n      - type: think\n        defer: true\n      - type: todo\n        defer: [create_todos, update_todos]\n      - type: memory\n        path: mem.db\n"
	e, f := newRunEnv(t, yaml,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "think", Args: `{"thought":"x"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c2", Name: "search_tool", Args: `{"query":"THOUGHT"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c3", Name: "search_tool", Args: `{"query":"nothing like it"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c4", Name: "add_tool", Args: `{"name":"think"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c5", Name: "think", Args: `{"thought":"now"}`}}},
		fakeTurn{Text: []string{"done"}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c6", Name: "add_tool", Args: `{"name":"think"}`}}},
		fakeTurn{Text: []string{"done again"}})
	// todo 4 - 2 deferred + memory 5 + search_tool + add_tool; think is hidden.
	if got := toolsCount(t, e); got != `{"available_tools":9}` {
		t.Errorf("tools count = %s; want 9", got)
	}
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	got := toolResponses(evs)
	if len(got) != 5 {
		t.Fatalf("responses = %q", got)
	}
	if got[0] != "Tool 'think' is not available. You can only use the tools provided to you." {
		t.Errorf("a deferred tool before add_tool = %q", got[0])
	}
	if !strings.HasPrefix(got[1], "Found 1 deferred tool(s):\n[{\"name\":\"think\",") {
		t.Errorf("search_tool = %q", got[1])
	}
	if got[2] != "No deferred tools found matching 'nothing like it'" {
		t.Errorf("search_tool without a match = %q", got[2])
	}
	if !strings.HasPrefix(got[3], "Tool 'think' has been activated and is now available for use.\n\nDescription: ") {
		t.Errorf("add_tool = %q", got[3])
	}
	if got[4] != "Thoughts:\nnow" {
		t.Errorf("the activated tool = %q", got[4])
	}
	reqs := f.requests()
	first := requestToolNames(reqs[0])
	want := []string{"create_todo", "list_todos", "add_memory", "get_memories", "delete_memory", "search_memories", "update_memory", "search_tool", "add_tool"}
	if !slices.Equal(first, want) {
		t.Errorf("first request tools = %v\nwant %v", first, want)
	}
	if names := requestToolNames(reqs[4]); names[len(names)-1] != "think" {
		t.Errorf("after add_tool the request offers %v; want think last", names)
	}
	if !strings.Contains(allSystem(reqs[0]), "Use search_tool to discover additional tools") {
		t.Error("the deferred tools instruction is missing")
	}

	// The next run of the same session still has it; another session does not.
	got = toolResponses(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "again"}}).all())
	if len(got) != 1 || got[0] != "Tool 'think' is already active" {
		t.Errorf("add_tool again = %q", got)
	}
	id2 := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id2+"/agent/a", []map[string]any{{"content": "other"}}).all()
	reqs = f.requests()
	if slices.Contains(requestToolNames(reqs[len(reqs)-1]), "think") {
		t.Error("another session sees the activated tool")
	}
}

// allSystem joins the system messages of a chat request.
func allSystem(req map[string]any) string {
	var b strings.Builder
	for _, m := range req["messages"].([]any) {
		if m := m.(map[string]any); m["role"] == "system" {
			b.WriteString(m["content"].(string) + "\n")
		}
	}
	return b.String()
}
