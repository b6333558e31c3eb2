package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func newTestResponses(t *testing.T, s *provServer, spec modelSpec) *responsesClient {
	t.Helper()
	if spec.Provider == "" {
		spec.Provider = "openai"
	}
	spec.BaseURL = s.URL + "/v1"
	if spec.Model == "" {
		spec.Model = "gpt-5-mini"
	}
	c, err := newResponsesClient(spec, provEnv(map[string]string{"OPENAI_API_KEY": "sk-test"}))
	if err != nil {
		t.Fatal(err)
	}
	return c.(*responsesClient)
}

func TestResponsesTextWithReasoning(t *testing.T) {
	s := newProvServer(t, provReply{File: "responses_text.sse"})
	c := newTestResponses(t, s, modelSpec{MaxTokens: 20})
	evs, err := provCollect(t, c, &modelRequest{Thinking: true, Messages: []chatMessage{
		{Role: "system", Content: "You are helpful.\n"},
		{Role: "system", Content: "Today is Monday."},
		{Role: "user", Content: "What's 2+2?"},
		{Role: "assistant", Content: ""}, // empty assistant messages are dropped
		{Role: "user", MultiContent: []messagePart{{Type: "text", Text: "And this?"}, {Type: "image_url", ImageURL: &imageURL{URL: "data:image/png;base64,iVBO"}}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tu := provAssemble(t, evs)
	// The message's text is not repeated from output_item.done, since deltas carried it.
	if tu.Text != "2 + 2 = 4" || tu.Reasoning != "**Adding** numbers" || tu.Stop != "stop" || tu.Model != "gpt-5-mini-2025-08-07" {
		t.Errorf("turn = %+v", tu)
	}
	provCheckJSON(t, "usage", tu.Usage, messageUsage{InputTokens: 100, CachedInputTokens: 20, OutputTokens: 30, ReasoningTokens: 18})

	r := s.requests()[0]
	if r.Path != "/v1/responses" || r.Header.Get("Authorization") != "Bearer sk-test" {
		t.Errorf("request to %s with Authorization %q", r.Path, r.Header.Get("Authorization"))
	}
	provCheckJSON(t, "body", r.Body, map[string]any{
		"model":        "gpt-5-mini",
		"instructions": "You are helpful.\n\nToday is Monday.",
		"input": []any{
			map[string]any{"role": "user", "content": "What's 2+2?"},
			map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "input_text", "text": "And this?"},
				map[string]any{"type": "input_image", "image_url": "data:image/png;base64,iVBO", "detail": "auto"},
			}},
		},
		"stream":            true,
		"max_output_tokens": 200, // raised: reasoning would use up 20 tokens
		"reasoning":         map[string]any{"effort": "medium", "summary": "detailed"},
	})
}

func TestResponsesToolRoundTrip(t *testing.T) {
	s := newProvServer(t, provReply{File: "responses_tool.sse"}, provReply{File: "responses_text.sse"})
	parallel := true
	c := newTestResponses(t, s, modelSpec{ParallelToolCalls: &parallel, ThinkingBudget: "high"})
	tools := []toolDef{{Name: "write_file", Description: "Write a file", Parameters: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path"]}`)}}
	msgs := []chatMessage{{Role: "user", Content: "Create hello.txt"}}
	evs, err := provCollect(t, c, &modelRequest{Messages: msgs, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == evToolCallArgs && e.ToolID != "call_5W18x" {
			t.Errorf("argument delta for %q; want the call_id, not the item id", e.ToolID)
		}
	}
	tu := provAssemble(t, evs)
	want := []toolCall{{ID: "call_5W18x", Type: "function", Function: functionCall{Name: "write_file", Arguments: `{"path":"hello.txt","content":"Hello, World!"}`}}}
	if !reflect.DeepEqual(tu.Calls, want) || tu.Stop != "tool_calls" {
		t.Errorf("turn = %+v", tu)
	}
	r := s.requests()[0]
	provCheckJSON(t, "tools", r.Body["tools"], []any{map[string]any{"type": "function", "name": "write_file", "description": "Write a file", "strict": false,
		"parameters": map[string]any{"type": "object", "properties": map[string]any{"path": map[string]any{"type": "string"}, "content": map[string]any{"type": "string"}}, "required": []any{"path"}}}})
	if r.Body["parallel_tool_calls"] != true {
		t.Errorf("parallel_tool_calls = %v", r.Body["parallel_tool_calls"])
	}
	if _, ok := r.Body["reasoning"]; ok {
		t.Error("reasoning sent with the session's thinking off")
	}

	msgs = append(msgs,
		chatMessage{Role: "assistant", Content: "Writing it.", ToolCalls: tu.Calls},
		chatMessage{Role: "tool", ToolCallID: "call_5W18x", Content: "The user rejected the tool call."},
	)
	if _, err := provCollect(t, c, &modelRequest{Messages: msgs, Tools: tools, Thinking: true}); err != nil {
		t.Fatal(err)
	}
	r = s.requests()[1]
	provCheckJSON(t, "second request input", r.Body["input"], []any{
		map[string]any{"role": "user", "content": "Create hello.txt"},
		map[string]any{"role": "assistant", "content": "Writing it."},
		map[string]any{"type": "function_call", "call_id": "call_5W18x", "name": "write_file", "arguments": `{"path":"hello.txt","content":"Hello, World!"}`},
		map[string]any{"type": "function_call_output", "call_id": "call_5W18x", "output": "The user rejected the tool call."},
	})
	provCheckJSON(t, "reasoning", r.Body["reasoning"], map[string]any{"effort": "high", "summary": "detailed"})
}

func TestResponsesErrors(t *testing.T) {
	tests := []struct {
		name          string
		reply         provReply
		wantStatus    int
		wantRetry     time.Duration
		wantMidStream bool
		wantMsg       []string
	}{
		{"401", provReply{Status: 401, Body: `{"error":{"message":"Incorrect API key provided: sk-test.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`},
			401, 0, false, []string{"401 Unauthorized", "Incorrect API key provided"}},
		{"429", provReply{Status: 429, Header: map[string]string{"Retry-After": "2", "Retry-After-Ms": "1750"},
			Body: `{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}`},
			429, 1750 * time.Millisecond, false, []string{"429", "Rate limit reached"}},
		// The reference logs and drops both of these, ending the turn silently.
		{"response.failed", provReply{File: "responses_failed.sse"}, 500, 0, true, []string{"server_error", "error while processing"}},
		{"error event", provReply{File: "responses_error.sse"}, 429, 0, false, []string{"rate_limit_exceeded", "Rate limit reached for gpt-5-mini"}},
		{"cut connection", provReply{File: "responses_text.sse", CutAt: "event: response.output_text.done"}, 0, 0, true, []string{"responses: reading stream"}},
		{"ends before completed", provReply{Status: 200, Body: "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{}}\n\n"},
			0, 0, false, []string{"no response.completed", "connection cut"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newProvServer(t, tt.reply)
			c := newTestResponses(t, s, modelSpec{})
			_, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}})
			me := provModelError(t, err)
			if me.Status != tt.wantStatus || me.RetryAfter != tt.wantRetry || me.MidStream != tt.wantMidStream {
				t.Errorf("error = %+v; want status %d, retry %v, mid-stream %v", me, tt.wantStatus, tt.wantRetry, tt.wantMidStream)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(me.Msg, w) {
					t.Errorf("message %q does not contain %q", me.Msg, w)
				}
			}
		})
	}
}

func TestResponsesGateway(t *testing.T) {
	s := newProvServer(t, provReply{File: "responses_text.sse"})
	env := provEnv(map[string]string{"DOCKER_TOKEN": "dt-9", "OPENAI_API_KEY": "sk-real"})
	env.Gateway = s.URL
	c, err := newResponsesClient(modelSpec{Provider: "openai", Model: "gpt-5"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}}); err != nil {
		t.Fatal(err)
	}
	r := s.requests()[0]
	if r.Path != "/v1/responses" || r.Header.Get("X-Cagent-Forward") != "https://api.openai.com/v1" || r.Header.Get("Authorization") != "Bearer dt-9" {
		t.Errorf("gateway request to %s, forward %q, auth %q", r.Path, r.Header.Get("X-Cagent-Forward"), r.Header.Get("Authorization"))
	}
}

func TestResponsesAuth(t *testing.T) {
	if got := provKeyErr(t, newResponsesClient, modelSpec{Provider: "openai", Model: "gpt-5"}, provEnv(nil)); got != "model openai/gpt-5: OPENAI_API_KEY environment variable is required" {
		t.Errorf("no key: err = %v", got)
	}
	// A custom provider without token_key sends no Authorization header at all.
	s := newProvServer(t, provReply{File: "responses_text.sse"}, provReply{File: "responses_text.sse"})
	c, err := newResponsesClient(modelSpec{Provider: "mine", Model: "gpt-x", BaseURL: s.URL}, provEnv(map[string]string{"OPENAI_API_KEY": "leak"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provCollect(t, c, &modelRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := s.requests()[0].Header.Get("Authorization"); got != "" {
		t.Errorf("custom provider sent Authorization %q", got)
	}
	c, err = newResponsesClient(modelSpec{Provider: "mine", Model: "gpt-x", BaseURL: s.URL, TokenKey: "MINE_KEY"}, provEnv(map[string]string{"MINE_KEY": "k"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provCollect(t, c, &modelRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := s.requests()[1].Header.Get("Authorization"); got != "Bearer k" {
		t.Errorf("token_key provider sent Authorization %q", got)
	}
}
