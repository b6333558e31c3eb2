package main

import (
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func newTestGemini(t *testing.T, s *provServer, spec modelSpec) *geminiClient {
	t.Helper()
	spec.Provider, spec.BaseURL = "google", s.URL
	if spec.Model == "" {
		spec.Model = "gemini-2.5-flash"
	}
	c, err := newGeminiClient(spec, provEnv(map[string]string{"GOOGLE_API_KEY": "g-key", "GEMINI_API_KEY": "other"}))
	if err != nil {
		t.Fatal(err)
	}
	gc := c.(*geminiClient)
	n := 0
	gc.newID = func() string { n++; return "call_" + string(rune('a'+n-1)) }
	return gc
}

func TestGeminiText(t *testing.T) {
	s := newProvServer(t, provReply{File: "gemini_text.sse"})
	temp := 0.2
	c := newTestGemini(t, s, modelSpec{Temperature: &temp, MaxTokens: 1000})
	evs, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{
		{Role: "system", Content: "You are helpful.\n"},
		{Role: "system", Content: "Today is Monday."},
		{Role: "user", Content: "What's 2+2?"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tu := provAssemble(t, evs)
	if tu.Text != "2 + 2 = 4" || tu.Stop != "stop" || tu.Model != "gemini-2.5-flash" {
		t.Errorf("turn = %+v", tu)
	}
	// usageMetadata is cumulative: only the last one counts.
	provCheckJSON(t, "usage", tu.Usage, messageUsage{InputTokens: 12, OutputTokens: 7})
	n := 0
	for _, e := range evs {
		if e.Kind == evUsage {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d usage events; want 1", n)
	}

	r := s.requests()[0]
	if r.Path != "/v1beta/models/gemini-2.5-flash:streamGenerateContent" || r.RawQuery != "alt=sse" {
		t.Errorf("request to %s?%s", r.Path, r.RawQuery)
	}
	if got := r.Header.Get("X-Goog-Api-Key"); got != "g-key" {
		t.Errorf("x-goog-api-key = %q; want GOOGLE_API_KEY's value", got)
	}
	// The system prompt goes in systemInstruction (the reference sends it as user text),
	// and thinking is turned off explicitly for 2.5 Flash when the session has it off.
	provCheckJSON(t, "body", r.Body, map[string]any{
		"contents":          []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": "What's 2+2?"}}}},
		"systemInstruction": map[string]any{"parts": []any{map[string]any{"text": "You are helpful.\n"}, map[string]any{"text": "Today is Monday."}}},
		"generationConfig":  map[string]any{"maxOutputTokens": 1000, "temperature": 0.2, "thinkingConfig": map[string]any{"thinkingBudget": 0}},
	})
}

func TestGeminiThinkingToolRoundTrip(t *testing.T) {
	s := newProvServer(t, provReply{File: "gemini_thinking_tools.sse"}, provReply{File: "gemini_text.sse"})
	c := newTestGemini(t, s, modelSpec{})
	tools := []toolDef{{Name: "list_directory", Description: "List a directory", Parameters: json.RawMessage(
		`{"type":"object","additionalProperties":false,"$schema":"x","properties":{"path":{"type":["null","string"],"format":"uri"},"depth":{"type":"integer"}},"required":["path"]}`)},
		{Name: "read_file"}}
	msgs := []chatMessage{{Role: "user", Content: "How many files?"}}
	evs, err := provCollect(t, c, &modelRequest{Messages: msgs, Tools: tools, Thinking: true})
	if err != nil {
		t.Fatal(err)
	}
	tu := provAssemble(t, evs)
	wantCalls := []toolCall{
		{ID: "call_a", Type: "function", Function: functionCall{Name: "list_directory", Arguments: `{"path":"testdata/working_dir"}`}},
		{ID: "call_b", Type: "function", Function: functionCall{Name: "read_file", Arguments: `{"path":"README.me"}`}},
	}
	if !reflect.DeepEqual(tu.Calls, wantCalls) {
		t.Errorf("calls = %+v; want %+v", tu.Calls, wantCalls)
	}
	if tu.Reasoning != "Listing the directory first." || string(tu.ThoughtSignature) != "\x0a\x24\x01\x54\xa8\x5c\xee" || tu.Stop != "tool_calls" {
		t.Errorf("turn = %+v (signature %x)", tu, tu.ThoughtSignature)
	}
	// Thoughts are output tokens too.
	provCheckJSON(t, "usage", tu.Usage, messageUsage{InputTokens: 868, OutputTokens: 60, ReasoningTokens: 40})

	r := s.requests()[0]
	provCheckJSON(t, "tools", r.Body["tools"], []any{map[string]any{"functionDeclarations": []any{
		map[string]any{"name": "list_directory", "description": "List a directory", "parameters": map[string]any{
			"type": "object", "required": []any{"path"}, "properties": map[string]any{
				"path": map[string]any{"type": "string", "format": "uri"}, "depth": map[string]any{"type": "integer"}}}},
		map[string]any{"name": "read_file", "parameters": map[string]any{"type": "object", "properties": map[string]any{}}},
	}}})
	provCheckJSON(t, "toolConfig", r.Body["toolConfig"], map[string]any{"functionCallingConfig": map[string]any{"mode": "AUTO"}})
	provCheckJSON(t, "generationConfig", r.Body["generationConfig"], map[string]any{"thinkingConfig": map[string]any{"includeThoughts": true, "thinkingBudget": -1}})

	msgs = append(msgs,
		chatMessage{Role: "assistant", ReasoningContent: tu.Reasoning, ThoughtSignature: tu.ThoughtSignature, ToolCalls: tu.Calls},
		chatMessage{Role: "tool", ToolCallID: "call_a", Content: "FILE README.me\n"},
		chatMessage{Role: "tool", ToolCallID: "call_b", Content: "no such file", IsError: true},
	)
	if _, err := provCollect(t, c, &modelRequest{Messages: msgs, Tools: tools, Thinking: true}); err != nil {
		t.Fatal(err)
	}
	// functionResponse.name is the function's name (the reference sends the call id).
	provCheckJSON(t, "second request contents", s.requests()[1].Body["contents"], []any{
		map[string]any{"role": "user", "parts": []any{map[string]any{"text": "How many files?"}}},
		map[string]any{"role": "model", "parts": []any{
			map[string]any{"functionCall": map[string]any{"name": "list_directory", "args": map[string]any{"path": "testdata/working_dir"}}, "thoughtSignature": "CiQBVKhc7g=="},
			map[string]any{"functionCall": map[string]any{"name": "read_file", "args": map[string]any{"path": "README.me"}}},
		}},
		map[string]any{"role": "user", "parts": []any{
			map[string]any{"functionResponse": map[string]any{"name": "list_directory", "response": map[string]any{"result": "FILE README.me\n"}}},
			map[string]any{"functionResponse": map[string]any{"name": "read_file", "response": map[string]any{"error": "no such file"}}},
		}},
	})
}

func TestGeminiCallIDs(t *testing.T) {
	a, b := geminiCallID(), geminiCallID()
	// Lower case so the reference's replay matcher (call_[a-z0-9-]+) recognises them.
	if !regexp.MustCompile(`^call_[a-z0-9]{20,}$`).MatchString(a) || a == b {
		t.Errorf("geminiCallID() = %q, %q", a, b)
	}
}

func TestGeminiThinkingConfig(t *testing.T) {
	tests := []struct {
		model  string
		budget any
		on     bool
		want   string // JSON, "null" for none
	}{
		{"gemini-2.5-flash", nil, false, `{"thinkingBudget":0}`},
		{"gemini-2.5-pro", nil, false, `null`},
		{"gemini-2.5-flash", nil, true, `{"includeThoughts":true,"thinkingBudget":-1}`},
		{"gemini-2.5-flash", int64(2048), true, `{"includeThoughts":true,"thinkingBudget":2048}`},
		{"gemini-2.5-flash", "none", true, `{"thinkingBudget":0}`},
		{"gemini-3-pro-preview", nil, false, `{"thinkingLevel":"LOW"}`},
		{"gemini-3-pro-preview", nil, true, `{"includeThoughts":true,"thinkingLevel":"HIGH"}`},
		{"gemini-3-flash-preview", nil, true, `{"includeThoughts":true,"thinkingLevel":"MEDIUM"}`},
		{"gemini-3-pro-preview", "low", true, `{"includeThoughts":true,"thinkingLevel":"LOW"}`},
		{"gemini-2.0-flash", nil, true, `null`},
	}
	for _, tt := range tests {
		b, _ := json.Marshal(geminiThinking(tt.model, tt.budget, tt.on))
		if string(b) != tt.want {
			t.Errorf("geminiThinking(%q, %v, %v) = %s; want %s", tt.model, tt.budget, tt.on, b, tt.want)
		}
	}
}

func TestGeminiErrors(t *testing.T) {
	tests := []struct {
		name          string
		reply         provReply
		wantStatus    int
		wantMidStream bool
		wantMsg       []string
		wantStop      string
	}{
		// An invalid key is a 400 INVALID_ARGUMENT on Gemini, not a 401.
		{"bad key", provReply{Status: 400, Body: `{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT"}}`},
			400, false, []string{"400 Bad Request", "API key not valid. Please pass a valid API key. (INVALID_ARGUMENT)"}, ""},
		{"401", provReply{Status: 401, Body: `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`},
			401, false, []string{"401", "invalid authentication credentials"}, ""},
		{"error object mid-stream", provReply{File: "gemini_error.sse"}, 503, true, []string{"gemini: stream error 503 UNAVAILABLE", "overloaded"}, ""},
		{"cut connection", provReply{File: "gemini_text.sse", CutAt: `" = 4"`}, 0, true, []string{"gemini: reading stream"}, ""},
		{"ends without finishReason", provReply{Status: 200, Body: "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}\r\n\r\n"},
			0, true, []string{"no finishReason", "connection cut"}, ""},
		{"prompt blocked", provReply{Status: 200, Body: "data: {\"promptFeedback\":{\"blockReason\":\"SAFETY\"},\"usageMetadata\":{\"promptTokenCount\":5}}\r\n\r\n"},
			400, false, []string{"prompt blocked: SAFETY"}, ""},
		// The reference ignores SAFETY and reports a normal stop.
		{"safety finish", provReply{File: "gemini_safety.sse"}, 0, false, nil, "content_filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newProvServer(t, tt.reply)
			c := newTestGemini(t, s, modelSpec{})
			evs, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}})
			if tt.wantStop != "" {
				if err != nil {
					t.Fatal(err)
				}
				if tu := provAssemble(t, evs); tu.Stop != tt.wantStop {
					t.Errorf("stop = %q; want %q", tu.Stop, tt.wantStop)
				}
				return
			}
			me := provModelError(t, err)
			if me.Status != tt.wantStatus || me.MidStream != tt.wantMidStream {
				t.Errorf("error = %+v; want status %d, mid-stream %v", me, tt.wantStatus, tt.wantMidStream)
			}
			for _, w := range tt.wantMsg {
				if !strings.Contains(me.Msg, w) {
					t.Errorf("message %q does not contain %q", me.Msg, w)
				}
			}
		})
	}
}

func TestGemini429(t *testing.T) {
	s := newProvServer(t, provReply{Status: 429, Header: map[string]string{"Retry-After": "12"},
		Body: `{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}`})
	c := newTestGemini(t, s, modelSpec{})
	_, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}})
	me := provModelError(t, err)
	if me.Status != 429 || me.RetryAfter.Seconds() != 12 || !strings.Contains(me.Msg, "RESOURCE_EXHAUSTED") {
		t.Errorf("error = %+v", me)
	}
}

func TestGeminiGateway(t *testing.T) {
	s := newProvServer(t, provReply{File: "gemini_text.sse"})
	env := provEnv(map[string]string{"DOCKER_TOKEN": "dt-1"})
	env.Gateway = s.URL
	c, err := newGeminiClient(modelSpec{Provider: "google", Model: "gemini-2.5-flash"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}}); err != nil {
		t.Fatal(err)
	}
	r := s.requests()[0]
	if r.Path != "/v1beta/models/gemini-2.5-flash:streamGenerateContent" || r.RawQuery != "alt=sse" {
		t.Errorf("gateway request to %s?%s", r.Path, r.RawQuery)
	}
	for k, want := range map[string]string{
		"X-Cagent-Forward": "https://generativelanguage.googleapis.com", "X-Goog-Api-Key": "dt-1", "Authorization": "Bearer dt-1",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("header %s = %q; want %q", k, got, want)
		}
	}
}

func TestGeminiKeys(t *testing.T) {
	if got := provKeyErr(t, newGeminiClient, modelSpec{Model: "m"}, provEnv(nil)); got != "model m: GOOGLE_API_KEY environment variable is required" {
		t.Errorf("no key: err = %v", got)
	}
	s := newProvServer(t, provReply{File: "gemini_text.sse"})
	c, err := newGeminiClient(modelSpec{Model: "gemini-2.5-flash", BaseURL: s.URL}, provEnv(map[string]string{"GEMINI_API_KEY": "gem"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provCollect(t, c, &modelRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := s.requests()[0].Header; got.Get("X-Goog-Api-Key") != "gem" || got.Get("Authorization") != "" {
		t.Errorf("headers = %v", got)
	}
}
