package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// modelScriptServer is an httptest server that answers each request with the next step
// (the last step repeats) and records what it received, headers included.
type modelScriptServer struct {
	*httptest.Server
	mu    sync.Mutex
	steps []http.HandlerFunc
	reqs  []modelScriptRequest
}

type modelScriptRequest struct {
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   string
}

func newModelScriptServer(t testing.TB, steps ...http.HandlerFunc) *modelScriptServer {
	t.Helper()
	s := &modelScriptServer{steps: steps}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, modelScriptRequest{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b)})
		step := s.steps[0]
		if len(s.steps) > 1 {
			s.steps = s.steps[1:]
		}
		s.mu.Unlock()
		step(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *modelScriptServer) requests() []modelScriptRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]modelScriptRequest(nil), s.reqs...)
}

// modelSSEStep streams body as is, flushed in one write, with no Content-Type (as a
// replaying cassette does).
func modelSSEStep(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		io.WriteString(w, body)
	}
}

// modelSSEData frames JSON chunks as SSE data events and ends with [DONE].
func modelSSEData(chunks ...string) string {
	var b strings.Builder
	for _, c := range chunks {
		b.WriteString("data: " + c + "\n\n")
	}
	b.WriteString("data: [DONE]\n\n")
	return b.String()
}

func modelErrorStep(status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func modelTestEnv(vars ...string) clientEnv {
	m := map[string]string{}
	for i := 0; i+1 < len(vars); i += 2 {
		m[vars[i]] = vars[i+1]
	}
	return clientEnv{Getenv: func(k string) string { return m[k] }}
}

// modelTestSpec is openai/gpt-4o (a chat-completions model) at base.
func modelTestSpec(base string) modelSpec {
	return modelSpec{Provider: "openai", Model: "gpt-4o", BaseURL: base}
}

func newModelTestChatClient(t *testing.T, spec modelSpec, env clientEnv) *openAIChatClient {
	t.Helper()
	c, err := newOpenAIChatClient(spec, env)
	if err != nil {
		t.Fatalf("newOpenAIChatClient: %v", err)
	}
	return c
}

// modelTurn is the events of one stream folded into what a runtime would keep.
type modelTurn struct {
	Text, Reasoning string
	Calls           []toolCall
	Usage           *messageUsage
	Stop            string
	Model           string
	Events          []modelEvent
}

func (r *modelTurn) emit(ev modelEvent) {
	r.Events = append(r.Events, ev)
	if ev.Model != "" {
		r.Model = ev.Model
	}
	switch ev.Kind {
	case evText:
		r.Text += ev.Text
	case evReasoning:
		r.Reasoning += ev.Text
	case evToolCallStart:
		for i := range r.Calls {
			if r.Calls[i].ID == ev.ToolID {
				if r.Calls[i].Function.Name == "" {
					r.Calls[i].Function.Name = ev.ToolName
				}
				return
			}
		}
		r.Calls = append(r.Calls, toolCall{ID: ev.ToolID, Type: "function", Function: functionCall{Name: ev.ToolName}})
	case evToolCallArgs:
		for i := range r.Calls {
			if r.Calls[i].ID == ev.ToolID {
				r.Calls[i].Function.Arguments += ev.Text
				return
			}
		}
		panic("arguments for unknown call " + ev.ToolID)
	case evUsage:
		r.Usage = ev.Usage
	case evStop:
		r.Stop = ev.StopReason
	}
}

func modelUserReq(text string) *modelRequest {
	return &modelRequest{Messages: []chatMessage{{Role: "system", Content: "Be brief.\n"}, {Role: "user", Content: text}}}
}

func TestOpenAIChatPlainAnswer(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"2 + 2", " equals 4."}})
	c := newModelTestChatClient(t, modelTestSpec(f.URL+"/v1"), modelTestEnv("OPENAI_API_KEY", "sk-test"))
	var got modelTurn
	if err := c.stream(context.Background(), modelUserReq("What's 2+2?"), got.emit); err != nil {
		t.Fatalf("stream: %v", err)
	}
	want := &messageUsage{InputTokens: 10, OutputTokens: 5, CachedInputTokens: 2}
	if got.Text != "2 + 2 equals 4." || got.Stop != "stop" || !reflect.DeepEqual(got.Usage, want) || got.Model != "fake-model" {
		t.Errorf("got text %q stop %q usage %+v model %q; want %q stop %+v fake-model", got.Text, got.Stop, got.Usage, got.Model, "2 + 2 equals 4.", want)
	}
	if last := got.Events[len(got.Events)-1]; last.Kind != evStop {
		t.Errorf("last event kind %v, want evStop after usage", last.Kind)
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	if reqs[0]["stream"] != true || reqs[0]["model"] != "gpt-4o" || reqs[0]["tools"] != nil {
		t.Errorf("request %v: want stream true, model gpt-4o, no tools", reqs[0])
	}
	if so, _ := reqs[0]["stream_options"].(map[string]any); so["include_usage"] != true {
		t.Errorf("stream_options = %v, want include_usage true", reqs[0]["stream_options"])
	}
}

// TestOpenAIChatRequestBodyBytes pins the exact body of a cassette-style request:
// replay matches bodies byte for byte, so key order matters.
func TestOpenAIChatRequestBodyBytes(t *testing.T) {
	s := newModelScriptServer(t, modelSSEStep(modelSSEData(`{"choices":[{"index":0,"delta":{"content":"1"},"finish_reason":"stop"}]}`)))
	c := newModelTestChatClient(t, modelTestSpec(s.URL+"/v1"), modelTestEnv("OPENAI_API_KEY", "sk-test"))
	req := &modelRequest{
		Messages: []chatMessage{
			{Role: "system", Content: "You are helpful.\n"},
			{Role: "user", Content: "How many files?"},
			{Role: "assistant", ToolCalls: []toolCall{{ID: "call_1", Type: "function", Function: functionCall{Name: "list_directory", Arguments: `{"path": "."}`}}}},
			{Role: "tool", ToolCallID: "call_1", Content: "FILE README.me\n"},
		},
		Tools: []toolDef{{Name: "list_directory", Description: "List a directory.", Parameters: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string","description":"The directory"}},"required":["path"]}`)}},
	}
	var got modelTurn
	if err := c.stream(context.Background(), req, got.emit); err != nil {
		t.Fatal(err)
	}
	want := `{"messages":[{"content":"You are helpful.\n","role":"system"},{"content":"How many files?","role":"user"},` +
		`{"tool_calls":[{"id":"call_1","function":{"arguments":"{\"path\": \".\"}","name":"list_directory"},"type":"function"}],"role":"assistant"},` +
		`{"content":"FILE README.me\n","tool_call_id":"call_1","role":"tool"}],"model":"gpt-4o","stream_options":{"include_usage":true},` +
		`"tools":[{"function":{"name":"list_directory","description":"List a directory.","parameters":{"additionalProperties":false,"properties":{"path":{"description":"The directory","type":"string"}},"required":["path"],"type":"object"}},"type":"function"}],"stream":true}`
	r := s.requests()[0]
	if r.Body != want {
		t.Errorf("body:\n got %s\nwant %s", r.Body, want)
	}
	if r.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-test" {
		t.Errorf("path %q auth %q; want /v1/chat/completions, Bearer sk-test", r.Path, r.Header.Get("Authorization"))
	}
}

func TestOpenAIChatRequestOptions(t *testing.T) {
	s := newModelScriptServer(t, modelSSEStep(modelSSEData(`{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}`)))
	temp, yes, no := 0.2, true, false
	spec := modelSpec{Provider: "azure", Model: "gpt-5-mini", BaseURL: s.URL + "/openai/deployments/d", MaxTokens: 1000,
		Temperature: &temp, ParallelToolCalls: &yes, TrackUsage: &no, ThinkingBudget: "high",
		ProviderOpts: map[string]any{"api_version": "2024-10-21"}}
	c := newModelTestChatClient(t, spec, modelTestEnv("AZURE_API_KEY", "az"))
	req := &modelRequest{
		Thinking: true,
		Messages: []chatMessage{
			{Role: "user", Content: "look", MultiContent: []messagePart{{Type: "text", Text: "look"}, {Type: "image_url", ImageURL: &imageURL{URL: "data:image/png;base64,AA", Detail: "low"}}}},
			{Role: "assistant", Content: "  "}, // empty turn (max_tokens hit): dropped
			{Role: "assistant", Content: "Checking.", ToolCalls: []toolCall{{ID: "c1", Function: functionCall{Name: "shot", Arguments: "{}"}}}},
			{Role: "tool", ToolCallID: "c1", Content: "see image", MultiContent: []messagePart{{Type: "image_url", ImageURL: &imageURL{URL: "data:image/png;base64,BB"}}}},
		},
		Tools: []toolDef{{Name: "shot", Description: "Screenshot."}},
	}
	var got modelTurn
	if err := c.stream(context.Background(), req, got.emit); err != nil {
		t.Fatal(err)
	}
	r := s.requests()[0]
	if r.Path != "/openai/deployments/d/chat/completions" || r.RawQuery != "api-version=2024-10-21" || r.Header.Get("Authorization") != "Bearer az" {
		t.Errorf("path %q query %q auth %q", r.Path, r.RawQuery, r.Header.Get("Authorization"))
	}
	var body map[string]any
	json.Unmarshal([]byte(r.Body), &body)
	check := func(key string, want any) {
		t.Helper()
		g, _ := json.Marshal(body[key])
		w, _ := json.Marshal(want)
		if string(g) != string(w) {
			t.Errorf("%s = %s, want %s", key, g, w)
		}
	}
	check("max_completion_tokens", 1000) // gpt-5 family through chat completions
	check("max_tokens", nil)
	check("temperature", 0.2)
	check("parallel_tool_calls", true)
	check("reasoning_effort", "high")
	check("stream_options", nil) // track_usage: false
	check("tools", []any{map[string]any{"function": map[string]any{"name": "shot", "description": "Screenshot.", "parameters": map[string]any{"type": "object", "properties": map[string]any{}}}, "type": "function"}})
	check("messages", []any{
		map[string]any{"content": []any{map[string]any{"text": "look", "type": "text"}, map[string]any{"image_url": map[string]any{"url": "data:image/png;base64,AA", "detail": "low"}, "type": "image_url"}}, "role": "user"},
		map[string]any{"content": "Checking.", "tool_calls": []any{map[string]any{"id": "c1", "function": map[string]any{"arguments": "{}", "name": "shot"}, "type": "function"}}, "role": "assistant"},
		map[string]any{"content": "see image", "tool_call_id": "c1", "role": "tool"},
		map[string]any{"content": []any{map[string]any{"text": "Attached image(s) from tool result:", "type": "text"}, map[string]any{"image_url": map[string]any{"url": "data:image/png;base64,BB"}, "type": "image_url"}}, "role": "user"},
	})
}

func TestOpenAIChatReasoningEffortOnlyForReasoningModels(t *testing.T) {
	for _, tt := range []struct {
		model  string
		budget any
		want   string
	}{
		{"gpt-5", nil, "medium"},
		{"o3-mini", "low", "low"},
		{"o4-mini", "none", ""},
		{"gpt-5", int64(0), ""},
		{"grok-3", "high", ""}, // aliases never get it, as in the reference
		{"mistral-small", nil, ""},
	} {
		if got := openAIChatReasoningEffort(modelSpec{Model: tt.model, ThinkingBudget: tt.budget}); got != tt.want {
			t.Errorf("openAIChatReasoningEffort(%s, %v) = %q; want %q", tt.model, tt.budget, got, tt.want)
		}
	}
}

func TestOpenAIChatDMRMergesMessages(t *testing.T) {
	msgs := openAIChatMessages([]chatMessage{
		{Role: "system", Content: "a"}, {Role: "system", Content: "b"},
		{Role: "user", Content: "c"}, {Role: "user", Content: "d"},
	}, true)
	want := []openAIChatMessage{{Role: "system", Content: "a\nb"}, {Role: "user", Content: "c\nd"}}
	if !reflect.DeepEqual(msgs, want) {
		t.Errorf("openAIChatMessages(merge) = %+v; want %+v", msgs, want)
	}
}

func TestOpenAISchemaRewrite(t *testing.T) {
	in := `{"type":"object","properties":{"path":{"type":"string","format":"uri"},"depth":{"type":"integer","minimum":1},` +
		`"tags":{"type":"array"},"opts":{"type":"object","properties":{"x":{"type":["string","number"]}}}},"required":["path"]}`
	got, err := openAIChatSchema(json.RawMessage(in))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(got)
	want := `{"additionalProperties":false,"properties":{"depth":{"minimum":1,"type":["integer","null"]},` +
		`"opts":{"additionalProperties":false,"properties":{"x":{"type":["string","number","null"]}},"required":["x"],"type":["object","null"]},` +
		`"path":{"type":"string"},"tags":{"items":{"type":"object"},"type":["array","null"]}},"required":["path","depth","opts","tags"],"type":"object"}`
	if string(b) != want {
		t.Errorf("openAIChatSchema:\n got %s\nwant %s", b, want)
	}
	if _, err := openAIChatSchema(json.RawMessage(`[1]`)); err == nil {
		t.Errorf("openAIChatSchema([1]) succeeded; want an error")
	}
}

func TestOpenAIChatToolCallDeltas(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{
		{ID: "call_a", Name: "read_file", Args: `{"path":"a.txt"}`},
		{ID: "call_b", Name: "list_directory", Args: `{"path":"."}`},
	}})
	c := newModelTestChatClient(t, modelTestSpec(f.URL+"/v1"), modelTestEnv("OPENAI_API_KEY", "k"))
	var got modelTurn
	if err := c.stream(context.Background(), modelUserReq("go"), got.emit); err != nil {
		t.Fatal(err)
	}
	want := []toolCall{
		{ID: "call_a", Type: "function", Function: functionCall{Name: "read_file", Arguments: `{"path":"a.txt"}`}},
		{ID: "call_b", Type: "function", Function: functionCall{Name: "list_directory", Arguments: `{"path":"."}`}},
	}
	if !reflect.DeepEqual(got.Calls, want) || got.Stop != "tool_calls" {
		t.Errorf("calls %+v stop %q; want %+v tool_calls", got.Calls, got.Stop, want)
	}
	// Argument fragments must carry the id even though the wire only has the index.
	for _, ev := range got.Events {
		if ev.Kind == evToolCallArgs && ev.ToolID == "" {
			t.Errorf("argument event without id: %+v", ev)
		}
	}
}

func TestOpenAIChatSplitArgumentsByIndex(t *testing.T) {
	body := modelSSEData(
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_X","type":"function","function":{"name":"list_directory","arguments":""}}]},"finish_reason":null}],"usage":null,"obfuscation":"x"}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\""}}]},"finish_reason":null}],"usage":null}`,
		`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"path\":\"x\"}"}}]},"finish_reason":null}],"usage":null}`,
		`{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null}`,
		`{"choices":[],"usage":{"prompt_tokens":491,"completion_tokens":18,"total_tokens":509,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":3}}}`,
	)
	s := newModelScriptServer(t, modelSSEStep(body))
	c := newModelTestChatClient(t, modelTestSpec(s.URL+"/v1"), modelTestEnv("OPENAI_API_KEY", "k"))
	var got modelTurn
	if err := c.stream(context.Background(), modelUserReq("go"), got.emit); err != nil {
		t.Fatal(err)
	}
	want := []toolCall{{ID: "call_X", Type: "function", Function: functionCall{Name: "list_directory", Arguments: `{"path":"x"}`}}}
	wantUsage := &messageUsage{InputTokens: 491, OutputTokens: 18, ReasoningTokens: 3}
	if !reflect.DeepEqual(got.Calls, want) || got.Stop != "tool_calls" || !reflect.DeepEqual(got.Usage, wantUsage) {
		t.Errorf("calls %+v stop %q usage %+v; want %+v tool_calls %+v", got.Calls, got.Stop, got.Usage, want, wantUsage)
	}
}

// Mistral sends the whole call, the finish reason and the usage in one chunk, with
// no usage:null elsewhere and a padding field.
func TestOpenAIChatMistralOneChunk(t *testing.T) {
	body := modelSSEData(
		`{"id":"fb09","object":"chat.completion.chunk","model":"mistral-small","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
		`{"id":"fb09","object":"chat.completion.chunk","model":"mistral-small","choices":[{"index":0,"delta":{"tool_calls":[{"id":"Y7lnCq211","function":{"name":"list_directory","arguments":"{\"path\": \"testdata/working_dir\"}"},"index":0}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":987,"total_tokens":1002,"completion_tokens":15},"p":"abcdefghijklmnopqrstuvwxyz0"}`,
	)
	s := newModelScriptServer(t, modelSSEStep(body))
	spec := modelSpec{Provider: "mistral", Model: "mistral-small", BaseURL: s.URL + "/v1"}
	c := newModelTestChatClient(t, spec, modelTestEnv("MISTRAL_API_KEY", "m"))
	var got modelTurn
	if err := c.stream(context.Background(), modelUserReq("go"), got.emit); err != nil {
		t.Fatal(err)
	}
	want := []toolCall{{ID: "Y7lnCq211", Type: "function", Function: functionCall{Name: "list_directory", Arguments: `{"path": "testdata/working_dir"}`}}}
	if !reflect.DeepEqual(got.Calls, want) || got.Stop != "tool_calls" || got.Usage == nil || got.Usage.InputTokens != 987 || got.Usage.OutputTokens != 15 {
		t.Errorf("calls %+v stop %q usage %+v", got.Calls, got.Stop, got.Usage)
	}
	// Text and stop in one chunk, too.
	s2 := newModelScriptServer(t, modelSSEStep(modelSSEData(
		`{"model":"mistral-small","choices":[{"index":0,"delta":{"content":"The sum is 4."},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"total_tokens":12,"completion_tokens":2}}`)))
	c2 := newModelTestChatClient(t, modelSpec{Provider: "mistral", Model: "mistral-small", BaseURL: s2.URL + "/v1"}, modelTestEnv("MISTRAL_API_KEY", "m"))
	var got2 modelTurn
	if err := c2.stream(context.Background(), modelUserReq("go"), got2.emit); err != nil {
		t.Fatal(err)
	}
	if got2.Text != "The sum is 4." || got2.Stop != "stop" || got2.Usage == nil || got2.Usage.OutputTokens != 2 {
		t.Errorf("text %q stop %q usage %+v", got2.Text, got2.Stop, got2.Usage)
	}
}

// reasoning_content is what DeepSeek, vLLM and llama.cpp stream; the reference drops it.
func TestOpenAIChatReasoningContent(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Reasoning: []string{"Two plus ", "two."}, Text: []string{"4"}})
	c := newModelTestChatClient(t, modelTestSpec(f.URL+"/v1"), modelTestEnv("OPENAI_API_KEY", "k"))
	var got modelTurn
	if err := c.stream(context.Background(), modelUserReq("2+2?"), got.emit); err != nil {
		t.Fatal(err)
	}
	if got.Reasoning != "Two plus two." || got.Text != "4" {
		t.Errorf("reasoning %q text %q; want %q %q", got.Reasoning, got.Text, "Two plus two.", "4")
	}
}

func TestOpenAIChatMidStreamErrorEvent(t *testing.T) {
	s := newModelScriptServer(t, modelSSEStep(modelSSEData(
		`{"choices":[{"index":0,"delta":{"content":"2 +"},"finish_reason":null}]}`,
		`{"error":{"message":"The server had an error","type":"server_error"}}`)))
	ch, err := newModelChain(modelTestSpec(s.URL+"/v1"), nil, nil, modelTestEnv("OPENAI_API_KEY", "k"))
	if err != nil {
		t.Fatal(err)
	}
	ch.sleep = func(context.Context, time.Duration) error { return nil }
	var got modelTurn
	_, err = ch.stream(context.Background(), modelUserReq("x"), got.emit, nil)
	if err == nil || !strings.Contains(err.Error(), "all models failed: chat: stream error: The server had an error") {
		t.Errorf("err = %v; want the provider's streamed error", err)
	}
	if got.Text != "2 +" || len(s.requests()) != 1 {
		t.Errorf("text %q after %d requests; want partial text and no retry", got.Text, len(s.requests()))
	}
}

// newModelTestChain builds a chain whose waits are recorded instead of slept.
func newModelTestChain(t *testing.T, primary modelSpec, fallbacks []modelSpec, fb *fallbackConfig, env clientEnv) (*modelChain, *[]time.Duration) {
	t.Helper()
	ch, err := newModelChain(primary, fallbacks, fb, env)
	if err != nil {
		t.Fatalf("newModelChain: %v", err)
	}
	var waits []time.Duration
	ch.sleep = func(ctx context.Context, d time.Duration) error {
		waits = append(waits, d)
		return ctx.Err()
	}
	return ch, &waits
}

func TestModelChain401NotRetried(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Status: 401, Body: `{"error":{"message":"Incorrect API key provided: sk-bad.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`})
	ch, waits := newModelTestChain(t, modelTestSpec(f.URL+"/v1"), nil, nil, modelTestEnv("OPENAI_API_KEY", "sk-bad"))
	var got modelTurn
	_, err := ch.stream(context.Background(), modelUserReq("x"), got.emit, nil)
	want := fmt.Sprintf(`all models failed: chat: POST "%s/v1/chat/completions": 401 Unauthorized: Incorrect API key provided: sk-bad. (invalid_request_error)`, f.URL)
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	var me *modelError
	if !errors.As(err, &me) || me.Status != 401 {
		t.Errorf("err %T does not unwrap to a 401 *modelError", err)
	}
	if n := len(f.requests()); n != 1 || len(*waits) != 0 {
		t.Errorf("%d requests, %d waits; want 1 and 0", n, len(*waits))
	}
}

func TestModelChain429RetryAfter(t *testing.T) {
	s := newModelScriptServer(t,
		modelErrorStep(429, map[string]string{"Retry-After": "7"}, `{"error":{"message":"Rate limit reached","type":"requests"}}`),
		modelSSEStep(modelSSEData(`{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}`)))
	ch, waits := newModelTestChain(t, modelTestSpec(s.URL+"/v1"), nil, nil, modelTestEnv("OPENAI_API_KEY", "k"))
	var got modelTurn
	if _, err := ch.stream(context.Background(), modelUserReq("x"), got.emit, nil); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got.Text != "ok" || len(s.requests()) != 2 || !reflect.DeepEqual(*waits, []time.Duration{7 * time.Second}) {
		t.Errorf("text %q, %d requests, waits %v; want ok, 2, [7s]", got.Text, len(s.requests()), *waits)
	}
	// A huge Retry-After is capped.
	s2 := newModelScriptServer(t,
		modelErrorStep(429, map[string]string{"Retry-After": "3600"}, `{}`),
		modelSSEStep(modelSSEData(`{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}`)))
	ch2, waits2 := newModelTestChain(t, modelTestSpec(s2.URL+"/v1"), nil, nil, modelTestEnv("OPENAI_API_KEY", "k"))
	if _, err := ch2.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}, nil); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*waits2, []time.Duration{modelMaxRetryAfter}) {
		t.Errorf("waits %v; want [%v]", *waits2, modelMaxRetryAfter)
	}
}

func TestModelChain500TwiceThenOK(t *testing.T) {
	f := newFakeOpenAI(t,
		fakeTurn{Status: 500, Body: `{"error":{"message":"boom"}}`},
		fakeTurn{Status: 502, Body: `bad gateway`},
		fakeTurn{Text: []string{"fine"}})
	ch, waits := newModelTestChain(t, modelTestSpec(f.URL+"/v1"), nil, nil, modelTestEnv("OPENAI_API_KEY", "k"))
	var got modelTurn
	if _, err := ch.stream(context.Background(), modelUserReq("x"), got.emit, nil); err != nil {
		t.Fatalf("stream: %v", err)
	}
	if got.Text != "fine" || len(f.requests()) != 3 || len(*waits) != 2 {
		t.Fatalf("text %q, %d requests, waits %v; want fine, 3, two waits", got.Text, len(f.requests()), *waits)
	}
	// 200ms then 400ms, ±10 %.
	for i, base := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond} {
		if d := (*waits)[i]; d < base*9/10 || d > base*11/10 {
			t.Errorf("wait %d = %v; want %v ±10%%", i, d, base)
		}
	}
	// A persistent 500 gives up after 1 + retries attempts.
	f2 := newFakeOpenAI(t, fakeTurn{Status: 500}, fakeTurn{Status: 500}, fakeTurn{Status: 500}, fakeTurn{Status: 500})
	ch2, _ := newModelTestChain(t, modelTestSpec(f2.URL+"/v1"), nil, &fallbackConfig{Retries: 1}, modelTestEnv("OPENAI_API_KEY", "k"))
	_, err := ch2.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}, nil)
	if err == nil || !strings.Contains(err.Error(), "500 Internal Server Error") || len(f2.requests()) != 2 {
		t.Errorf("err %v after %d requests; want a 500 after 2", err, len(f2.requests()))
	}
}

func TestModelChainFallbackAndCooldown(t *testing.T) {
	primary := newModelScriptServer(t, modelErrorStep(429, nil, `{"error":{"message":"quota"}}`))
	second := newFakeOpenAI(t)
	env := modelTestEnv("OPENAI_API_KEY", "k", "MISTRAL_API_KEY", "m")
	fb := modelSpec{Provider: "mistral", Model: "mistral-small", BaseURL: second.URL + "/v1"}
	ch, waits := newModelTestChain(t, modelTestSpec(primary.URL+"/v1"), []modelSpec{fb}, &fallbackConfig{CooldownDur: time.Minute}, env)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ch.now = func() time.Time { return now }

	var notices []fallbackNotice
	var got modelTurn
	used, err := ch.stream(context.Background(), modelUserReq("x"), got.emit, func(n fallbackNotice) { notices = append(notices, n) })
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	if used.Model != "mistral-small" || got.Text != "ok" || len(*waits) != 0 {
		t.Errorf("used %s text %q waits %v; want mistral-small, ok, no wait (429 with a fallback is not retried)", used.Model, got.Text, *waits)
	}
	if len(notices) != 1 || notices[0].FailedModel != "openai/gpt-4o" || notices[0].FallbackModel != "mistral/mistral-small" || !strings.Contains(notices[0].Reason, "429") {
		t.Errorf("notices %+v; want one from openai/gpt-4o to mistral/mistral-small naming the 429", notices)
	}
	// Within the cooldown the fallback is used directly.
	now = now.Add(30 * time.Second)
	if used, err := ch.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}, nil); err != nil || used.Model != "mistral-small" || len(primary.requests()) != 1 {
		t.Errorf("during cooldown: used %s err %v, primary requests %d; want mistral-small and primary untouched", used.Model, err, len(primary.requests()))
	}
	// After it, the primary is tried again.
	now = now.Add(time.Minute)
	ch.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}, nil)
	if n := len(primary.requests()); n != 2 {
		t.Errorf("after cooldown primary saw %d requests; want 2", n)
	}
}

func TestModelChainAllFail(t *testing.T) {
	a := newModelScriptServer(t, modelErrorStep(400, nil, `{"error":{"message":"bad a"}}`))
	b := newModelScriptServer(t, modelErrorStep(403, nil, `{"error":{"message":"bad b"}}`))
	ch, _ := newModelTestChain(t, modelTestSpec(a.URL+"/v1"), []modelSpec{{Provider: "openai", Model: "gpt-4o-mini", BaseURL: b.URL + "/v1"}}, nil, modelTestEnv("OPENAI_API_KEY", "k"))
	_, err := ch.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "all models failed: ") || !strings.Contains(err.Error(), "bad b") {
		t.Errorf("err = %v; want all models failed with the last cause", err)
	}
}

func TestModelChainConnectionCutMidStream(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"2 ", "+ ", "2"}, CutAfter: 1}, fakeTurn{Text: []string{"never"}})
	ch, waits := newModelTestChain(t, modelTestSpec(f.URL+"/v1"), nil, nil, modelTestEnv("OPENAI_API_KEY", "k"))
	var got modelTurn
	_, err := ch.stream(context.Background(), modelUserReq("x"), got.emit, nil)
	var me *modelError
	if err == nil || !errors.As(err, &me) || !me.MidStream || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("err = %v; want a mid-stream unexpected EOF", err)
	}
	if got.Text != "2 " || len(f.requests()) != 1 || len(*waits) != 0 {
		t.Errorf("text %q, %d requests; want the partial text and no retry", got.Text, len(f.requests()))
	}
}

func TestOpenAIChatTimeouts(t *testing.T) {
	stall := make(chan struct{})
	defer close(stall)
	s := newModelScriptServer(t,
		// Idle: one chunk, then nothing.
		func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "data: "+`{"choices":[{"index":0,"delta":{"content":"a"}}]}`+"\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stall:
			}
		},
		// First byte: headers but no body.
		func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-stall:
			}
		})
	c := newModelTestChatClient(t, modelTestSpec(s.URL+"/v1"), modelTestEnv("OPENAI_API_KEY", "k"))
	c.conn.firstByteWait, c.conn.idleWait = 50*time.Millisecond, 50*time.Millisecond

	var got modelTurn
	err := c.stream(context.Background(), modelUserReq("x"), got.emit)
	var me *modelError
	if !errors.As(err, &me) || !me.MidStream || !strings.Contains(me.Msg, "stalled") || got.Text != "a" {
		t.Errorf("idle: err %v text %q; want a mid-stream stall after %q", err, got.Text, "a")
	}
	err = c.stream(context.Background(), modelUserReq("x"), func(modelEvent) {})
	if !errors.As(err, &me) || me.MidStream || !me.Stalled || !strings.Contains(me.Msg, "no response within") {
		t.Errorf("first byte: err %v; want a first-byte stall", err)
	}
	if modelRetryable(err) {
		t.Errorf("first-byte timeout is retried on the same model: a stall would take three timeouts to report")
	}
	// A caller's cancellation is reported as such, not as a provider failure.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.stream(ctx, modelUserReq("x"), func(modelEvent) {}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err %v; want context.Canceled", err)
	}
}

func TestOpenAIChatGateway(t *testing.T) {
	s := newModelScriptServer(t, modelSSEStep(modelSSEData(`{"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}`)))
	env := modelTestEnv("DOCKER_TOKEN", "dt") // no MISTRAL_API_KEY: the gateway holds keys
	env.Gateway = s.URL
	c := newModelTestChatClient(t, modelSpec{Provider: "mistral", Model: "mistral-small"}, env)
	if err := c.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}); err != nil {
		t.Fatal(err)
	}
	r := s.requests()[0]
	if r.Path != "/v1/chat/completions" || r.Header.Get("X-Cagent-Forward") != "https://api.mistral.ai/v1" || r.Header.Get("Authorization") != "Bearer dt" {
		t.Errorf("path %q forward %q auth %q", r.Path, r.Header.Get("X-Cagent-Forward"), r.Header.Get("Authorization"))
	}
}

func TestModelMissingKey(t *testing.T) {
	ch, waits := newModelTestChain(t, modelSpec{Provider: "openai", Model: "gpt-4o"}, nil, nil, modelTestEnv())
	_, err := ch.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}, nil)
	if err == nil || err.Error() != "all models failed: model openai/gpt-4o: OPENAI_API_KEY environment variable is required" || len(*waits) != 0 {
		t.Errorf("err = %v, waits %v; want one clear missing-key error", err, *waits)
	}
	c := newModelTestChatClient(t, modelSpec{Provider: "openai", Model: "gpt-4o", TokenKey: "MY_KEY"}, modelTestEnv("OPENAI_API_KEY", "k"))
	if err := c.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}); err == nil || !strings.Contains(err.Error(), "MY_KEY environment variable is required") {
		t.Errorf("token_key: err = %v", err)
	}
}

func TestModelAPIType(t *testing.T) {
	for _, tt := range []struct {
		spec    modelSpec
		want    string
		wantErr string
	}{
		{modelSpec{Provider: "openai", Model: "gpt-4o"}, apiOpenAIChat, ""},
		{modelSpec{Provider: "openai", Model: "gpt-3.5-turbo"}, apiOpenAIChat, ""},
		{modelSpec{Provider: "openai", Model: "gpt-5-mini"}, apiOpenAIResponses, ""},
		{modelSpec{Provider: "openai", Model: "gpt-4.1"}, apiOpenAIResponses, ""},
		{modelSpec{Provider: "openai", Model: "o3"}, apiOpenAIResponses, ""},
		{modelSpec{Provider: "openai", Model: "gpt-5.2-codex"}, apiOpenAIResponses, ""},
		{modelSpec{Provider: "openai", Model: "my-codex-x"}, apiOpenAIResponses, ""},
		{modelSpec{Provider: "azure", Model: "gpt-5"}, apiOpenAIChat, ""},
		{modelSpec{Provider: "anthropic", Model: "claude-sonnet-4-0"}, apiAnthropic, ""},
		{modelSpec{Provider: "google", Model: "gemini-2.5-flash"}, apiGoogle, ""},
		{modelSpec{Provider: "dmr", Model: "ai/qwen3"}, apiOpenAIChat, ""},
		{modelSpec{Provider: "ollama", Model: "llama3"}, apiOpenAIChat, ""},
		{modelSpec{Provider: "mine", Model: "m", BaseURL: "http://x/v1"}, apiOpenAIChat, ""},
		{modelSpec{Provider: "mine", Model: "m", BaseURL: "http://x/v1", APIType: apiOpenAIResponses}, apiOpenAIResponses, ""},
		{modelSpec{Provider: "openai", Model: "gpt-5", ProviderOpts: map[string]any{"api_type": apiOpenAIChat}}, apiOpenAIChat, ""},
		{modelSpec{Provider: "foo", Model: "m"}, "", "unknown provider type: foo"},
		{modelSpec{Provider: "x", Model: "m", APIType: "soap"}, "", `unknown api_type "soap"`},
	} {
		got, err := modelAPIType(tt.spec)
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("modelAPIType(%s/%s) = %q, %v; want %q, %q", tt.spec.Provider, tt.spec.Model, got, err, tt.want, tt.wantErr)
		}
	}
	if c, err := newModelClient(modelSpec{Provider: "amazon-bedrock", Model: "m"}, modelTestEnv()); err != nil {
		t.Errorf("bedrock: err = %v", err)
	} else if _, ok := c.(*bedrockClient); !ok {
		t.Errorf("bedrock: client is a %T", c)
	}
	if _, err := newModelClient(modelSpec{Provider: "azure", Model: "m"}, modelTestEnv()); err == nil || !strings.Contains(err.Error(), "base_url is required") {
		t.Errorf("azure without base_url: err = %v", err)
	}
}

func TestModelBaseURL(t *testing.T) {
	for _, tt := range []struct {
		spec modelSpec
		env  []string
		want string
	}{
		{modelSpec{Provider: "openai"}, nil, "https://api.openai.com/v1"},
		{modelSpec{Provider: "openai"}, []string{"OPENAI_BASE_URL", "http://proxy:1/v1/"}, "http://proxy:1/v1"},
		{modelSpec{Provider: "openai", BaseURL: "http://cfg/v1"}, []string{"OPENAI_BASE_URL", "http://proxy:1/v1"}, "http://cfg/v1"},
		{modelSpec{Provider: "dmr"}, nil, "http://127.0.0.1:12434/engines/v1"},
		{modelSpec{Provider: "dmr"}, []string{"MODEL_RUNNER_HOST", "http://host:9/"}, "http://host:9/engines/v1"},
		{modelSpec{Provider: "mistral"}, nil, "https://api.mistral.ai/v1"},
		{modelSpec{Provider: "nebius"}, nil, "https://api.studio.nebius.com/v1"},
		{modelSpec{Provider: "ollama"}, nil, "http://localhost:11434/v1"},
	} {
		got, err := modelBaseURL(tt.spec, modelTestEnv(tt.env...), providerAPIs[apiOpenAIChat])
		if err != nil || got != tt.want {
			t.Errorf("modelBaseURL(%s, %v) = %q, %v; want %q", tt.spec.Provider, tt.env, got, err, tt.want)
		}
	}
	// Every API family takes the same checks: a provider without a row of its own uses
	// its family's home provider (anthropic, google) or must have a base_url.
	for _, tt := range []struct {
		api, provider, base, want, wantErr string
		env                                []string
	}{
		{api: apiAnthropic, want: "https://api.anthropic.com"},
		{api: apiAnthropic, provider: "mine", env: []string{"ANTHROPIC_BASE_URL", "http://a:1/"}, want: "http://a:1"},
		{api: apiGoogle, provider: "google", env: []string{"GOOGLE_GEMINI_BASE_URL", "http://g:2"}, want: "http://g:2"},
		{api: apiOpenAIResponses, provider: "openai", env: []string{"OPENAI_BASE_URL", "http://o:3/v1"}, want: "http://o:3/v1"},
		{api: apiOpenAIResponses, provider: "mine", wantErr: "model mine/m: base_url is required"},
		{api: apiAnthropic, provider: "anthropic", base: "ftp://x", wantErr: `model anthropic/m: base_url "ftp://x" is not an http(s) URL`},
		{api: apiGoogle, provider: "google", base: "http://user:pw@h", want: "http://user:pw@h"},
		{api: apiGoogle, provider: "google", base: "//user:pw@h", wantErr: `model google/m: base_url "//user:xxxxx@h" is not an http(s) URL`},
	} {
		spec := modelSpec{Provider: tt.provider, Model: "m", BaseURL: tt.base}
		got, err := modelBaseURL(spec, modelTestEnv(tt.env...), providerAPIs[tt.api])
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("modelBaseURL(%s %q %q) = %q, %v; want %q, %q", tt.api, tt.provider, tt.base, got, err, tt.want, tt.wantErr)
		}
	}
	if _, err := modelBaseURL(modelSpec{Provider: "mine", BaseURL: "ftp://x"}, modelTestEnv(), providerAPIs[apiOpenAIChat]); err == nil {
		t.Errorf("modelBaseURL(ftp://x) succeeded; want an error")
	}
}

func TestModelAPIKey(t *testing.T) {
	for _, tt := range []struct {
		spec    modelSpec
		env     []string
		want    string
		wantErr string
	}{
		{modelSpec{Provider: "openai"}, []string{"OPENAI_API_KEY", "o"}, "o", ""},
		{modelSpec{Provider: "xai"}, nil, "", "XAI_API_KEY environment variable is required"},
		{modelSpec{Provider: "google"}, []string{"GEMINI_API_KEY", "g"}, "g", ""},
		{modelSpec{Provider: "google"}, []string{"GEMINI_API_KEY", "g", "GOOGLE_API_KEY", "G"}, "G", ""},
		{modelSpec{Provider: "ollama"}, []string{"OPENAI_API_KEY", "o"}, "", ""}, // the reference leaks this key to ollama
		{modelSpec{Provider: "mine", BaseURL: "http://x"}, nil, "", ""},
		{modelSpec{Provider: "mine", TokenKey: "MINE"}, []string{"MINE", "s"}, "s", ""},
	} {
		got, err := modelAPIKey(tt.spec, modelTestEnv(tt.env...), providerAPIs[apiOpenAIChat])
		if got != tt.want || (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("modelAPIKey(%+v, %v) = %q, %v; want %q, %q", tt.spec, tt.env, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestModelRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		h    map[string]string
		want time.Duration
	}{
		{nil, 0},
		{map[string]string{"Retry-After": "3"}, 3 * time.Second},
		{map[string]string{"Retry-After": "0.5"}, 500 * time.Millisecond},
		{map[string]string{"Retry-After-Ms": "250", "Retry-After": "9"}, 250 * time.Millisecond},
		{map[string]string{"Retry-After": now.Add(10 * time.Second).Format(http.TimeFormat)}, 10 * time.Second},
		{map[string]string{"Retry-After": "soon"}, 0},
		{map[string]string{"Retry-After": "-4"}, 0},
	} {
		h := http.Header{}
		for k, v := range tt.h {
			h.Set(k, v)
		}
		if got := modelRetryAfter(h, now); got != tt.want {
			t.Errorf("modelRetryAfter(%v) = %v; want %v", tt.h, got, tt.want)
		}
	}
}

func TestModelErrorMessage(t *testing.T) {
	for _, tt := range []struct{ body, want string }{
		{`{"error":{"message":"Incorrect API key","type":"invalid_request_error"}}`, "Incorrect API key (invalid_request_error)"},
		{`{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`, "Overloaded (overloaded_error)"},
		{`{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}`, "API key not valid. (INVALID_ARGUMENT)"},
		{`{"error":"model not found"}`, "model not found"},
		{`{"message":"Failed to run request"}`, "Failed to run request"},
		{"  <html>bad gateway</html>\n", "<html>bad gateway</html>"},
		// Gemini's streaming endpoint wraps its error object in an array.
		{`[{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}]`, "API key not valid. (INVALID_ARGUMENT)"},
		{"", ""},
	} {
		if got := modelErrorMessage([]byte(tt.body)); got != tt.want {
			t.Errorf("modelErrorMessage(%s) = %q; want %q", tt.body, got, tt.want)
		}
	}
}

// A 200 answer that is plain JSON, not a stream, is an error, not an empty turn.
func TestOpenAIChatNotAStream(t *testing.T) {
	s := newModelScriptServer(t, modelErrorStep(200, nil, `{"error":{"message":"gateway says no"}}`))
	c := newModelTestChatClient(t, modelTestSpec(s.URL+"/v1"), modelTestEnv("OPENAI_API_KEY", "k"))
	err := c.stream(context.Background(), modelUserReq("x"), func(modelEvent) {})
	if err == nil || !strings.Contains(err.Error(), "not an event stream: gateway says no") {
		t.Errorf("err = %v; want the body's message", err)
	}
}

func BenchmarkOpenAIReadStream(b *testing.B) {
	var chunks []string
	for range 200 {
		chunks = append(chunks, `{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}],"usage":null,"obfuscation":"abcd"}`)
	}
	chunks = append(chunks, `{"choices":[],"usage":{"prompt_tokens":10,"completion_tokens":200}}`)
	body := modelSSEData(chunks...)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		emit := func(modelEvent) {}
		st := newOpenAIChatStream(emit)
		err := readSSE(strings.NewReader(body), func(ev sseEvent) error { return st.event(ev, emit) })
		if !errors.Is(err, errProvDone) {
			b.Fatalf("stream: %v", err)
		}
		if err := st.end(true); err != nil {
			b.Fatal(err)
		}
	}
}

// One chain serves every session of an agent; concurrent turns must not race on the
// pinning state (run with -race).
func TestModelChainConcurrent(t *testing.T) {
	primary := newModelScriptServer(t, modelErrorStep(429, nil, `{}`))
	second := newFakeOpenAI(t)
	fb := modelTestSpec(second.URL + "/v1")
	fb.Model = "gpt-4o-mini"
	ch, _ := newModelTestChain(t, modelTestSpec(primary.URL+"/v1"), []modelSpec{fb}, nil, modelTestEnv("OPENAI_API_KEY", "k"))
	ch.sleep = func(context.Context, time.Duration) error { return nil }
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			var got modelTurn
			if _, err := ch.stream(context.Background(), modelUserReq("x"), got.emit, func(fallbackNotice) {}); err != nil || got.Text != "ok" {
				errs <- fmt.Errorf("err %v text %q", err, got.Text)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// FuzzOpenAIFastChunk: whenever the fast decoder accepts a chunk, encoding/json accepts
// it too and decodes the same value.
func FuzzOpenAIFastChunk(f *testing.F) {
	for _, s := range []string{
		`{"id":"c","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}`,
		`{"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"model":"m"}`,
		`{"choices":[{"delta":{"content":"a\"b\\n\u00e9"}}]}`,
		`{"choices":[{"delta":{"content":null}}],"p":"padding","created":-1.5e3}`,
		`{"choices":[{"delta":{"tool_calls":[]}}]}`, `{"choices":[{"delta":{},"finish_reason":"stop"}]}`,
		`{"choices":[],"usage":{"prompt_tokens":1}}`, `{"Model":"x","choices":[]}`, `{"choices":[{"Delta":{}}]}`,
		`{"choices":[{"delta":{"content":"x"}},{"delta":{"content":"y"}}]}`, `{"model":"a","model":"b"}`, "{\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		var fast openAIChatChunk
		if !openAIFastChunk(data, &fast) {
			return
		}
		var slow openAIChatChunk
		if err := json.Unmarshal([]byte(data), &slow); err != nil {
			t.Fatalf("fast path accepted %q; encoding/json: %v", data, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decoding %q:\nfast %+v\nslow %+v", data, fast, slow)
		}
	})
}

func TestOpenAIFastChunkTakesTextDeltas(t *testing.T) {
	var ch openAIChatChunk
	data := `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"fake","choices":[{"index":0,"delta":{"content":"tok1 "},"finish_reason":null}]}`
	if !openAIFastChunk(data, &ch) || ch.Model != "fake" || len(ch.Choices) != 1 || ch.Choices[0].Delta.Content != "tok1 " {
		t.Fatalf("fast path on a text delta: %+v", ch)
	}
	for _, other := range []string{
		`{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}`,
		`{"choices":[{"delta":{},"finish_reason":"stop"}]}`,
		`{"choices":[],"usage":{"prompt_tokens":1}}`,
		`{"error":{"message":"x"}}`,
	} {
		if openAIFastChunk(other, &ch) {
			t.Errorf("fast path took %s", other)
		}
	}
}
