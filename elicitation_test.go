package main

import (
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
