package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestElicitationThroughUserPrompt(t *testing.T) {
	ask := fakeToolCall{ID: "call_1", Name: "user_prompt", Args: `{"message":"Your name?","title":"Who","schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name"]}}`}
	for _, tc := range []struct {
		action  string
		content map[string]any
		want    string
		isError bool
	}{
		{"accept", map[string]any{"name": "Ada", "age": 36}, `"name":"Ada"`, false},
		{"decline", nil, `"action":"decline"`, true},
		{"cancel", nil, `"action":"cancel"`, true},
	} {
		t.Run(tc.action, func(t *testing.T) {
			e, _ := newRunEnv(t, "    toolsets:\n      - type: user_prompt\n", fakeTurn{ToolCalls: []fakeToolCall{ask}}, fakeTurn{Text: []string{"thanks"}})
			id := e.newSession(map[string]any{"title": "t"})
			if code, _ := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept"}); code != 409 {
				t.Fatalf("elicitation with nothing pending = %d; want 409", code)
			}
			s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
			ev := s.until("elicitation_request")
			if ev["message"] != "Your name?" || ev["schema"] == nil || ev["meta"].(map[string]any)["cagent/title"] != "Who" {
				t.Fatalf("elicitation_request = %v", ev)
			}
			// Bad answers are refused and the question stays pending.
			if code, _ := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "maybe"}); code != 400 {
				t.Fatalf("bad action = %d; want 400", code)
			}
			if code, _ := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"age": 3}}); code != 400 {
				t.Fatalf("content missing a required field = %d; want 400", code)
			}
			if code, _ := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"name": 7}}); code != 400 {
				t.Fatalf("content of the wrong type = %d; want 400", code)
			}
			if code, b := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": tc.action, "content": tc.content}); code != 200 || string(b) != "null\n" {
				t.Fatalf("answer = %d %q", code, b)
			}
			resp := s.until("tool_call_response")
			if !strings.Contains(resp["response"].(string), tc.want) {
				t.Fatalf("tool response = %v; want %s", resp["response"], tc.want)
			}
			if isErr, _ := resp["result"].(map[string]any)["isError"].(bool); isErr != tc.isError {
				t.Fatalf("isError = %v; want %v", isErr, tc.isError)
			}
			s.all()
		})
	}
}

// TestMCPThroughRun drives an MCP server (the test binary re-executed as the fake
// server) through the HTTP API: its tools are counted and offered, a read-only tool
// runs without confirmation, a server elicitation reaches the client as an
// elicitation_request and the answer goes back; the server process is started once
// per agent config, not once per session.
func TestMCPThroughRun(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	starts := filepath.Join(t.TempDir(), "starts")
	mcpYAML := fmt.Sprintf(`    toolsets:
      - type: mcp
        command: %q
        args: ["-test.run=^$"]
        env:
          MCP_TEST_SERVER: "1"
          MCP_TEST_STARTS: %q
          GORACE: atexit_sleep_ms=0
`, exe, starts)
	e, f := newRunEnv(t, mcpYAML,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "echo", Args: `{"text":"hello mcp"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_2", Name: "ask", Args: `{}`}}},
		fakeTurn{Text: []string{"done"}},
		fakeTurn{Text: []string{"second session"}})
	code, b := e.do("GET", "/api/agents/a/root/tools/count", nil)
	if code != 200 || !strings.Contains(string(b), `"available_tools":11`) {
		t.Fatalf("tools/count = %d %s; want the 11 MCP tools", code, b)
	}
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	if ev := s.until("toolset_info"); ev["available_tools"].(float64) != 11 {
		t.Fatalf("toolset_info = %v", ev)
	}
	if resp := s.until("tool_call_response"); resp["response"] != "hello mcp" {
		t.Fatalf("echo response = %v", resp)
	}
	// "ask" has no read-only hint: it needs a confirmation first.
	if ev := s.until("tool_call_confirmation"); ev["tool_call"].(map[string]any)["function"].(map[string]any)["name"] != "ask" {
		t.Fatalf("confirmation = %v", ev)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"})
	ev := s.until("elicitation_request")
	if ev["message"] != "Your name?" {
		t.Fatalf("elicitation_request = %v", ev)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}); code != 200 {
		t.Fatalf("elicitation answer = %d %s", code, b)
	}
	if resp := s.until("tool_call_response"); !strings.Contains(resp["response"].(string), "Ada") {
		t.Fatalf("ask response = %v", resp)
	}
	s.all()
	// The tools were offered to the model.
	if tools := f.requests()[0]["tools"].([]any); len(tools) != 11 {
		t.Fatalf("model saw %d tools; want 11", len(tools))
	}
	id2 := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	e.run("/api/sessions/"+id2+"/agent/a", []map[string]any{{"content": "again"}}).all()
	b, _ = os.ReadFile(starts)
	if n := len(strings.Fields(string(b))); n != 1 {
		t.Fatalf("MCP server started %d times for two sessions; want once", n)
	}
}

// TestElicitationIDsWithSeveralPending: an MCP server asks two questions at once.
// Each elicitation_request carries its own elicitation_id; a newer client answers
// them by id in any order; an answer without an id (the old clients' form) is a 409
// while it would be ambiguous, as is an unknown id; neither consumes a question.
func TestElicitationIDsWithSeveralPending(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newRunEnv(t, fmt.Sprintf("    toolsets:\n      - type: mcp\n        command: %q\n        args: [\"-test.run=^$\"]\n        env:\n          MCP_TEST_SERVER: \"1\"\n          GORACE: atexit_sleep_ms=0\n", exe),
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "ask", Args: `{"text":"twice"}`}}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t", "safety_policy": "autonomous"})
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "go"}}})
	ids := map[string]string{} // message → elicitation_id
	for range 2 {
		ev := s.until("elicitation_request")
		eid, _ := ev["elicitation_id"].(string)
		ids[ev["message"].(string)] = eid
	}
	if ids["First?"] == "" || ids["Second?"] == "" || ids["First?"] == ids["Second?"] {
		t.Fatalf("elicitation ids = %v; want two distinct ids", ids)
	}
	answer := func(body map[string]any) (int, string) {
		code, b := e.do("POST", "/api/sessions/"+id+"/elicitation", body)
		return code, string(b)
	}
	if code, b := answer(map[string]any{"action": "accept", "content": map[string]any{"name": "X"}}); code != 409 || !strings.Contains(b, "elicitation_id") {
		t.Fatalf("answer without id while two are pending = %d %s; want 409 naming elicitation_id", code, b)
	}
	if code, b := answer(map[string]any{"action": "accept", "elicitation_id": "el-nope", "content": map[string]any{"name": "X"}}); code != 409 || !strings.Contains(b, "el-nope") {
		t.Fatalf("unknown elicitation_id = %d %s; want 409", code, b)
	}
	if code, b := answer(map[string]any{"action": "accept", "elicitation_id": ids["Second?"], "content": map[string]any{"name": "Bea"}}); code != 200 {
		t.Fatalf("answer to the second = %d %s", code, b)
	}
	// One question left: the old clients' answer without an id now reaches it.
	if code, b := answer(map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}); code != 200 {
		t.Fatalf("answer without id to the single pending question = %d %s", code, b)
	}
	resp := s.until("tool_call_response")["response"].(string)
	if first, second, _ := strings.Cut(resp, "\n"); !strings.Contains(first, "Ada") || !strings.Contains(second, "Bea") {
		t.Fatalf("tool response = %q; want First answered Ada and Second Bea", resp)
	}
	s.all()
}
