package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// provReply is one scripted answer of provServer.
type provReply struct {
	File   string            // testdata/providers/<File>, replayed byte for byte
	CutAt  string            // drop the connection just before this text of File
	Status int               // non-zero: answer with Status, Header and Body instead
	Header map[string]string // response headers
	Body   string
	Func   http.HandlerFunc // non-nil: serve the request with it instead
}

// provRequest is what provServer received.
type provRequest struct {
	Path, RawQuery string
	Header         http.Header
	Body           map[string]any
	Raw            []byte // the body as received
	Length         int64  // its Content-Length (-1: none, sent chunked)
}

// provServer is an in-process provider endpoint: it answers requests with the scripted
// replies in order and records each request.
type provServer struct {
	*httptest.Server
	t       testing.TB
	mu      sync.Mutex
	replies []provReply
	reqs    []provRequest
}

func newProvServer(t testing.TB, replies ...provReply) *provServer {
	t.Helper()
	s := &provServer{t: t, replies: replies}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *provServer) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		s.t.Errorf("request body is not JSON: %v: %s", err, raw)
	}
	s.mu.Lock()
	s.reqs = append(s.reqs, provRequest{Path: r.URL.Path, RawQuery: r.URL.RawQuery, Header: r.Header.Clone(), Body: body, Raw: raw, Length: r.ContentLength})
	if len(s.replies) == 0 {
		s.mu.Unlock()
		s.t.Errorf("unexpected request %s %s", r.Method, r.URL)
		http.Error(w, "no reply scripted", 500)
		return
	}
	rep := s.replies[0]
	s.replies = s.replies[1:]
	s.mu.Unlock()
	if rep.Func != nil {
		rep.Func(w, r)
		return
	}
	for k, v := range rep.Header {
		w.Header().Set(k, v)
	}
	if rep.Status != 0 {
		w.WriteHeader(rep.Status)
		io.WriteString(w, rep.Body)
		return
	}
	data, err := os.ReadFile(filepath.Join("testdata", "providers", rep.File))
	if err != nil {
		s.t.Error(err)
		return
	}
	if rep.CutAt != "" {
		i := strings.Index(string(data), rep.CutAt)
		if i < 0 {
			s.t.Errorf("%s has no %q", rep.File, rep.CutAt)
		}
		w.Write(data[:i])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection mid-body
	}
	// No Content-Type, like the reference's replay proxy: clients must not require one.
	w.Write(data)
}

// requests returns the recorded requests.
func (s *provServer) requests() []provRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]provRequest(nil), s.reqs...)
}

// provEnv returns a clientEnv whose environment is vars.
func provEnv(vars map[string]string) clientEnv {
	return clientEnv{Getenv: func(k string) string { return vars[k] }}
}

// provKeyErr builds a client and streams once: like every client's, a missing key is
// reported then, not when the client is built, so agents whose keys are absent still
// load. It returns the stream's error text.
func provKeyErr(t *testing.T, newClient func(modelSpec, clientEnv) (modelClient, error), spec modelSpec, env clientEnv) string {
	t.Helper()
	c, err := newClient(spec, env)
	if err != nil {
		t.Fatalf("building the client: %v", err)
	}
	if _, err = provCollect(t, c, &modelRequest{}); err == nil {
		return ""
	}
	return err.Error()
}

// provCollect runs one stream and returns its events and error.
func provCollect(t *testing.T, c modelClient, req *modelRequest) ([]modelEvent, error) {
	t.Helper()
	var evs []modelEvent
	err := c.stream(context.Background(), req, func(e modelEvent) { evs = append(evs, e) })
	return evs, err
}

// provTurn is what a consumer of a stream assembles from its events, as the runtime does:
// text and reasoning concatenated, tool calls merged by id, the last signatures and usage.
type provTurn struct {
	Text, Reasoning, Signature string
	ThoughtSignature           []byte
	Calls                      []toolCall
	Usage                      *messageUsage
	Stop, Model                string
}

func provAssemble(t *testing.T, evs []modelEvent) provTurn {
	t.Helper()
	var tu provTurn
	idx := map[string]int{}
	for _, e := range evs {
		if e.ThoughtSignature != nil {
			tu.ThoughtSignature = e.ThoughtSignature
		}
		switch e.Kind {
		case evText:
			tu.Text += e.Text
		case evReasoning:
			tu.Reasoning += e.Text
			if e.Signature != "" {
				tu.Signature = e.Signature
			}
		case evToolCallStart:
			idx[e.ToolID] = len(tu.Calls)
			tu.Calls = append(tu.Calls, toolCall{ID: e.ToolID, Type: "function", Function: functionCall{Name: e.ToolName}})
		case evToolCallArgs:
			i, ok := idx[e.ToolID]
			if !ok {
				t.Fatalf("argument delta for unknown tool call %q", e.ToolID)
			}
			tu.Calls[i].Function.Arguments += e.Text
		case evUsage:
			tu.Usage = e.Usage
		case evStop:
			if tu.Stop != "" {
				t.Errorf("second stop event %q after %q", e.StopReason, tu.Stop)
			}
			tu.Stop, tu.Model = e.StopReason, e.Model
		}
	}
	return tu
}

// provJSON re-decodes v through JSON so it compares with a recorded body.
func provJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func provCheckJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	if g, w := provJSON(t, got), provJSON(t, want); !reflect.DeepEqual(g, w) {
		gb, _ := json.Marshal(g)
		wb, _ := json.Marshal(w)
		t.Errorf("%s =\n%s\nwant\n%s", what, gb, wb)
	}
}

// provModelError asserts err is a *modelError and returns it.
func provModelError(t *testing.T, err error) *modelError {
	t.Helper()
	var me *modelError
	if !errors.As(err, &me) {
		t.Fatalf("error %v (%T) is not a *modelError", err, err)
	}
	return me
}

func newTestAnthropic(t *testing.T, s *provServer, spec modelSpec) *anthropicClient {
	t.Helper()
	spec.Provider, spec.BaseURL = "anthropic", s.URL
	if spec.Model == "" {
		spec.Model = "claude-sonnet-4-0"
	}
	c, err := newAnthropicClient(spec, provEnv(map[string]string{"ANTHROPIC_API_KEY": "sk-ant-test"}))
	if err != nil {
		t.Fatal(err)
	}
	return c.(*anthropicClient)
}

func TestAnthropicText(t *testing.T) {
	s := newProvServer(t, provReply{File: "anthropic_text.sse"})
	temp := 0.5
	c := newTestAnthropic(t, s, modelSpec{Temperature: &temp})
	evs, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{
		{Role: "system", Content: "You are helpful.\n"},
		{Role: "system", Content: "Use tools.", CacheControl: true},
		{Role: "system", Content: "Today is Monday.", CacheControl: true},
		{Role: "user", Content: "  What's 2+2?\n"},
		{Role: "user", Content: "   "}, // empty after trimming: dropped
	}})
	if err != nil {
		t.Fatal(err)
	}
	tu := provAssemble(t, evs)
	if tu.Text != "2 + 2 = 4" || tu.Stop != "stop" || tu.Model != "claude-sonnet-4-20250514" {
		t.Errorf("turn = %+v", tu)
	}
	// Usage merges message_start with message_delta; input excludes cache reads already.
	provCheckJSON(t, "usage", tu.Usage, messageUsage{InputTokens: 25, OutputTokens: 12, CachedInputTokens: 300, CacheWriteTokens: 1276})

	r := s.requests()[0]
	if r.Path != "/v1/messages" || r.RawQuery != "" {
		t.Errorf("request to %s?%s", r.Path, r.RawQuery)
	}
	for k, want := range map[string]string{
		"X-Api-Key": "sk-ant-test", "Anthropic-Version": "2023-06-01",
		"Anthropic-Beta": "fine-grained-tool-streaming-2025-05-14", "Content-Type": "application/json",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("header %s = %q; want %q", k, got, want)
		}
	}
	provCheckJSON(t, "body", r.Body, map[string]any{
		"max_tokens": 32000,
		"model":      "claude-sonnet-4-0",
		"system": []any{
			map[string]any{"type": "text", "text": "You are helpful."},
			map[string]any{"type": "text", "text": "Use tools.", "cache_control": map[string]any{"type": "ephemeral"}},
			map[string]any{"type": "text", "text": "Today is Monday.", "cache_control": map[string]any{"type": "ephemeral"}},
		},
		"messages": []any{map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "text", "text": "What's 2+2?", "cache_control": map[string]any{"type": "ephemeral"}}}}},
		"tools":       []any{},
		"temperature": 0.5,
		"stream":      true,
	})
}

func TestAnthropicThinkingToolRoundTrip(t *testing.T) {
	s := newProvServer(t, provReply{File: "anthropic_thinking_tools.sse"}, provReply{File: "anthropic_text.sse"})
	temp := 0.5
	c := newTestAnthropic(t, s, modelSpec{Temperature: &temp})
	tools := []toolDef{
		{Name: "list_directory", Description: "List a directory", Parameters: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"}},"required":["path"]}`)},
		{Name: "read_file"},
	}
	msgs := []chatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "How many files?"}}
	evs, err := provCollect(t, c, &modelRequest{Messages: msgs, Tools: tools, Thinking: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Kind == evToolCallArgs && e.ToolID == "" {
			t.Errorf("argument delta without a tool id: %+v", e)
		}
	}
	tu := provAssemble(t, evs)
	wantCalls := []toolCall{
		{ID: "toolu_012gA", Type: "function", Function: functionCall{Name: "list_directory", Arguments: `{"path": "testdata/working_dir"}`}},
		{ID: "toolu_013hB", Type: "function", Function: functionCall{Name: "read_file", Arguments: `{"path":"README.me"}`}},
	}
	if !reflect.DeepEqual(tu.Calls, wantCalls) {
		t.Errorf("calls = %+v; want %+v", tu.Calls, wantCalls)
	}
	if tu.Reasoning != "I should list the directory." || tu.Signature != "EqQBCkYIBRgCKkBsig==" || tu.Stop != "tool_calls" {
		t.Errorf("turn = %+v", tu)
	}
	// message_delta reported only output_tokens; the rest comes from message_start.
	provCheckJSON(t, "usage", tu.Usage, messageUsage{InputTokens: 25, OutputTokens: 58, CacheWriteTokens: 1276})

	r := s.requests()[0]
	if r.RawQuery != "beta=true" || r.Header.Get("Anthropic-Beta") != "interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14" {
		t.Errorf("thinking request to ?%s with beta %q", r.RawQuery, r.Header.Get("Anthropic-Beta"))
	}
	provCheckJSON(t, "thinking", r.Body["thinking"], map[string]any{"type": "enabled", "budget_tokens": 8192})
	if _, ok := r.Body["temperature"]; ok {
		t.Error("temperature sent with thinking on")
	}
	provCheckJSON(t, "tools", r.Body["tools"], []any{
		map[string]any{"name": "list_directory", "description": "List a directory", "input_schema": map[string]any{"type": "object", "properties": map[string]any{"path": map[string]any{"type": "string"}}, "required": []any{"path"}}},
		map[string]any{"name": "read_file", "input_schema": map[string]any{"type": "object", "properties": map[string]any{}}},
	})

	// Second turn: the assistant message as the runtime stores it, then the results.
	msgs = append(msgs,
		chatMessage{Role: "assistant", ReasoningContent: tu.Reasoning, ThinkingSignature: tu.Signature, ToolCalls: tu.Calls},
		chatMessage{Role: "tool", ToolCallID: "toolu_012gA", Content: "FILE README.me\n"},
		chatMessage{Role: "tool", ToolCallID: "toolu_stale", Content: "answers no call here"},
		chatMessage{Role: "tool", ToolCallID: "toolu_013hB", Content: "no such file", IsError: true},
	)
	if _, err := provCollect(t, c, &modelRequest{Messages: msgs, Tools: tools, Thinking: true}); err != nil {
		t.Fatal(err)
	}
	eph := map[string]any{"type": "ephemeral"}
	provCheckJSON(t, "second request messages", s.requests()[1].Body["messages"], []any{
		map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "How many files?"}}},
		map[string]any{"role": "assistant", "content": []any{
			map[string]any{"type": "thinking", "thinking": "I should list the directory.", "signature": "EqQBCkYIBRgCKkBsig=="},
			map[string]any{"type": "tool_use", "id": "toolu_012gA", "name": "list_directory", "input": map[string]any{"path": "testdata/working_dir"}},
			map[string]any{"type": "tool_use", "id": "toolu_013hB", "name": "read_file", "input": map[string]any{"path": "README.me"}, "cache_control": eph},
		}},
		map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "tool_result", "tool_use_id": "toolu_012gA", "is_error": false, "content": []any{map[string]any{"type": "text", "text": "FILE README.me"}}},
			map[string]any{"type": "tool_result", "tool_use_id": "toolu_013hB", "is_error": true, "content": []any{map[string]any{"type": "text", "text": "no such file"}}, "cache_control": eph},
		}},
	})
}

// A tool call left unanswered (the run was interrupted) must still get a result, or the
// API rejects the whole conversation.
func TestAnthropicMissingToolResult(t *testing.T) {
	got := anthropicMessages([]chatMessage{
		{Role: "user", Content: "go"},
		{Role: "assistant", Content: "Working on it. ", ToolCalls: []toolCall{{ID: "t1", Function: functionCall{Name: "shell", Arguments: "not json"}}}},
		{Role: "user", Content: "stop"},
	})
	provCheckJSON(t, "messages", got, []any{
		map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "go"}}},
		map[string]any{"role": "assistant", "content": []any{
			map[string]any{"type": "text", "text": "Working on it."},
			map[string]any{"type": "tool_use", "id": "t1", "name": "shell", "input": map[string]any{}},
		}},
		map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": "t1", "is_error": true,
			"content": []any{map[string]any{"type": "text", "text": "(tool execution failed)"}}}}},
		map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": "stop"}}},
	})
}

// The reference drops redacted thinking; the API needs it back, so it is kept as a
// signature without text and resent as a redacted_thinking block.
func TestAnthropicRedactedThinking(t *testing.T) {
	s := newProvServer(t, provReply{File: "anthropic_redacted.sse"}, provReply{File: "anthropic_text.sse"})
	c := newTestAnthropic(t, s, modelSpec{MaxTokens: 4000, ThinkingBudget: int64(2048)})
	msgs := []chatMessage{{Role: "user", Content: "hi"}}
	evs, err := provCollect(t, c, &modelRequest{Messages: msgs, Thinking: true})
	if err != nil {
		t.Fatal(err)
	}
	tu := provAssemble(t, evs)
	// stop_reason max_tokens is "length" (the reference reports "stop").
	if tu.Signature != "EmwKAhgBEgy3va3pzix/LafPsn4a" || tu.Reasoning != "" || tu.Text != "Done." || tu.Stop != "length" {
		t.Errorf("turn = %+v", tu)
	}
	r := s.requests()[0]
	// An explicit budget without interleaved_thinking uses the standard endpoint.
	if r.RawQuery != "" || r.Body["max_tokens"] != 4000.0 {
		t.Errorf("request ?%s max_tokens %v", r.RawQuery, r.Body["max_tokens"])
	}
	provCheckJSON(t, "thinking", r.Body["thinking"], map[string]any{"type": "enabled", "budget_tokens": 2048})

	msgs = append(msgs, chatMessage{Role: "assistant", Content: tu.Text, ThinkingSignature: tu.Signature}, chatMessage{Role: "user", Content: "again"})
	if _, err := provCollect(t, c, &modelRequest{Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	r = s.requests()[1]
	provCheckJSON(t, "assistant content", r.Body["messages"].([]any)[1], map[string]any{"role": "assistant", "content": []any{
		map[string]any{"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"},
		map[string]any{"type": "text", "text": "Done.", "cache_control": map[string]any{"type": "ephemeral"}},
	}})
	if _, ok := r.Body["thinking"]; ok {
		t.Error("thinking sent with the session's thinking off")
	}
}

func TestAnthropicThinkingBudget(t *testing.T) {
	tests := []struct {
		name      string
		spec      modelSpec
		req       modelRequest
		wantMax   int64
		wantThink int64 // 0 = no thinking field
	}{
		{"default", modelSpec{}, modelRequest{Thinking: true}, 32000, 8192},
		{"off", modelSpec{}, modelRequest{}, 32000, 0},
		{"none", modelSpec{ThinkingBudget: "none"}, modelRequest{Thinking: true}, 32000, 0},
		{"quoted number", modelSpec{ThinkingBudget: "4096"}, modelRequest{Thinking: true}, 32000, 4096},
		{"effort", modelSpec{ThinkingBudget: "high"}, modelRequest{Thinking: true}, 32000, 16384},
		{"budget above default max is fitted", modelSpec{ThinkingBudget: int64(40000)}, modelRequest{Thinking: true}, 48192, 40000},
		{"explicit max too small: no thinking", modelSpec{MaxTokens: 2000, ThinkingBudget: int64(4096)}, modelRequest{Thinking: true}, 2000, 0},
		{"below API minimum", modelSpec{ThinkingBudget: int64(500)}, modelRequest{Thinking: true}, 32000, 0},
		{"title request", modelSpec{}, modelRequest{MaxTokens: 20}, 20, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &anthropicClient{ms: tt.spec}
			ar, _ := c.request(&tt.req)
			var think int64
			if ar.Thinking != nil {
				think = ar.Thinking.BudgetTokens
			}
			if ar.MaxTokens != tt.wantMax || think != tt.wantThink {
				t.Errorf("max_tokens %d, budget %d; want %d, %d", ar.MaxTokens, think, tt.wantMax, tt.wantThink)
			}
		})
	}
}

func TestAnthropicErrors(t *testing.T) {
	tests := []struct {
		name          string
		reply         provReply
		wantStatus    int
		wantRetry     time.Duration
		wantMidStream bool
		wantMsg       []string
	}{
		{"401", provReply{Status: 401, Header: map[string]string{"Request-Id": "req_1"},
			Body: `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`},
			401, 0, false, []string{"401 Unauthorized", "invalid x-api-key"}},
		{"429", provReply{Status: 429, Header: map[string]string{"Retry-After": "7"},
			Body: `{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}`},
			429, 7 * time.Second, false, []string{"429", "rate_limit_error", "per-minute rate limit"}},
		{"529 with Retry-After-Ms", provReply{Status: 529, Header: map[string]string{"Retry-After-Ms": "1500", "Retry-After": "9"},
			Body: `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`},
			529, 1500 * time.Millisecond, false, []string{"529", "Overloaded"}},
		{"html body", provReply{Status: 502, Body: "<html>Bad Gateway</html>"}, 502, 0, false, []string{"502", "<html>Bad Gateway</html>"}},
		{"error event mid-stream", provReply{File: "anthropic_error.sse"}, 529, 0, true, []string{"overloaded_error", "Overloaded"}},
		{"cut connection", provReply{File: "anthropic_text.sse", CutAt: "event: content_block_stop"}, 0, 0, true, []string{"anthropic: reading stream"}},
		{"cut before any event", provReply{File: "anthropic_text.sse", CutAt: `"cache_read_input_tokens":0`}, 0, 0, false, []string{"anthropic: reading stream"}},
		{"ends without message_stop", provReply{Status: 200, Body: anthropicTruncated(t)}, 0, 0, true, []string{"no message_stop", "connection cut"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newProvServer(t, tt.reply)
			c := newTestAnthropic(t, s, modelSpec{})
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

// anthropicTruncated is a stream that ends cleanly before message_stop.
func anthropicTruncated(t *testing.T) string {
	data, err := os.ReadFile("testdata/providers/anthropic_error.sse")
	if err != nil {
		t.Fatal(err)
	}
	return string(data[:strings.Index(string(data), "event: error")])
}

// A provider that stops sending must end the stream with an error, never hang it.
func TestAnthropicTimeouts(t *testing.T) {
	data, _ := os.ReadFile("testdata/providers/anthropic_text.sse")
	stalled := string(data[:strings.Index(string(data), "event: content_block_stop")])
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	s := newProvServer(t,
		// Idle: some events, then silence.
		provReply{Func: func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, stalled)
			w.(http.Flusher).Flush()
			hang(w, r)
		}},
		// First byte: not even the headers come.
		provReply{Func: hang})
	c := newTestAnthropic(t, s, modelSpec{})
	c.conn.idleWait = 100 * time.Millisecond
	_, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}})
	me := provModelError(t, err)
	if !me.MidStream || me.Stalled || !strings.Contains(me.Msg, "stalled: no data for 100ms") {
		t.Errorf("idle error = %+v", me)
	}
	c.conn.firstByteWait = 50 * time.Millisecond
	_, err = provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}})
	me = provModelError(t, err)
	if me.MidStream || !me.Stalled || !strings.Contains(me.Msg, "provider sent no response within 50ms") {
		t.Errorf("first-byte error = %+v", me)
	}
}

// Cancelling the caller's context is not a provider failure.
func TestAnthropicCancel(t *testing.T) {
	s := newProvServer(t)
	c := newTestAnthropic(t, s, modelSpec{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := c.stream(ctx, &modelRequest{}, func(modelEvent) {})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("stream with cancelled context = %v; want context.Canceled", err)
	}
}

func TestAnthropicGateway(t *testing.T) {
	s := newProvServer(t, provReply{File: "anthropic_text.sse"})
	env := provEnv(map[string]string{"DOCKER_TOKEN": "dt-123"})
	env.Gateway = s.URL + "/"
	c, err := newAnthropicClient(modelSpec{Ref: "anthropic/claude-sonnet-4-0", Provider: "anthropic", Model: "claude-sonnet-4-0"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}}); err != nil {
		t.Fatal(err)
	}
	r := s.requests()[0]
	if r.Path != "/v1/messages" {
		t.Errorf("gateway path = %s", r.Path)
	}
	for k, want := range map[string]string{
		"X-Cagent-Forward": "https://api.anthropic.com", "X-Api-Key": "dt-123", "Authorization": "Bearer dt-123",
		"X-Cagent-Provider": "anthropic", "X-Cagent-Model": "claude-sonnet-4-0",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("header %s = %q; want %q", k, got, want)
		}
	}
}

func TestAnthropicConfig(t *testing.T) {
	s := newProvServer(t, provReply{File: "anthropic_text.sse"})
	if got := provKeyErr(t, newAnthropicClient, modelSpec{Model: "m"}, provEnv(nil)); got != "model m: ANTHROPIC_API_KEY environment variable is required" {
		t.Errorf("no key: err = %v", got)
	}
	if got := provKeyErr(t, newAnthropicClient, modelSpec{Model: "m", TokenKey: "MY_KEY"}, provEnv(map[string]string{"ANTHROPIC_API_KEY": "x"})); got != "model m: MY_KEY environment variable is required" {
		t.Errorf("missing token_key: err = %v", got)
	}
	// token_key wins over ANTHROPIC_API_KEY (the reference always reads the latter), and
	// ANTHROPIC_BASE_URL moves the endpoint.
	c, err := newAnthropicClient(modelSpec{Model: "m", TokenKey: "MY_KEY"}, provEnv(map[string]string{
		"ANTHROPIC_API_KEY": "wrong", "MY_KEY": "right", "ANTHROPIC_BASE_URL": s.URL + "/"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}}); err != nil {
		t.Fatal(err)
	}
	if r := s.requests()[0]; r.Header.Get("X-Api-Key") != "right" || r.Path != "/v1/messages" {
		t.Errorf("request %s with key %q", r.Path, r.Header.Get("X-Api-Key"))
	}
}

func TestAnthropicCacheMarks(t *testing.T) {
	c := &anthropicClient{ms: modelSpec{Model: "m"}}
	var msgs []chatMessage
	for _, s := range []string{"a", "b", "c", "d"} {
		msgs = append(msgs, chatMessage{Role: "system", Content: s, CacheControl: true})
	}
	msgs = append(msgs, chatMessage{Role: "user", Content: "q"},
		chatMessage{Role: "assistant", ReasoningContent: "hmm", ThinkingSignature: "sig"}, // a thinking block cannot be marked
		chatMessage{Role: "user", Content: "again"})
	ar, _ := c.request(&modelRequest{Messages: msgs})
	var marked []string
	for _, b := range ar.System {
		if b.CacheControl != nil {
			marked = append(marked, b.Text)
		}
	}
	for _, m := range ar.Messages {
		for _, b := range m.Content {
			if b.CacheControl != nil {
				marked = append(marked, m.Role+":"+b.Type)
			}
		}
	}
	// Four at most: the latest system marks and the last message.
	if want := []string{"b", "c", "d", "user:text"}; !reflect.DeepEqual(marked, want) {
		t.Errorf("cache_control on %q; want %q", marked, want)
	}
}

// BenchmarkAnthropicStream measures decoding a long answer over loopback: 2000 text
// deltas per turn.
func BenchmarkAnthropicStream(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"m\",\"usage\":{\"input_tokens\":1}}}\n\n")
	for range 2000 {
		sb.WriteString("event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hello world \"}}\n\n")
	}
	sb.WriteString("event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":4000}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")
	body := sb.String()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, body)
	}))
	defer srv.Close()
	c, err := newAnthropicClient(modelSpec{Model: "m", BaseURL: srv.URL}, provEnv(map[string]string{"ANTHROPIC_API_KEY": "k"}))
	if err != nil {
		b.Fatal(err)
	}
	req := &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := c.stream(context.Background(), req, func(e modelEvent) { n++ }); err != nil || n != 2002 {
			b.Fatalf("stream: %v, %d events", err, n)
		}
	}
}
