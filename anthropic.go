package main

// anthropic.go is the Anthropic Messages streaming client (PROVIDERS.md §3.3, §4).

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

const (
	anthropicVersion          = "2023-06-01"
	anthropicBetaToolStream   = "fine-grained-tool-streaming-2025-05-14"
	anthropicBetaInterleaved  = "interleaved-thinking-2025-05-14"
	anthropicBetaStructured   = "structured-outputs-2025-11-13"
	anthropicDefaultMaxTokens = 32000
	anthropicDefaultBudget    = 8192
	anthropicMinBudget        = 1024 // the API rejects smaller thinking budgets
	anthropicMaxCacheMarks    = 4    // the API rejects more cache_control blocks
)

// anthropicClient streams from POST {base}/v1/messages. It is safe for concurrent use.
type anthropicClient struct {
	ms   modelSpec
	conn provConn
}

// newAnthropicClient returns a streaming client for the Anthropic Messages API. The key is
// read from spec.TokenKey's variable, else ANTHROPIC_API_KEY (unlike the reference, which
// always reads ANTHROPIC_API_KEY); in gateway mode DOCKER_TOKEN is used instead.
func newAnthropicClient(spec modelSpec, env clientEnv) (modelClient, error) {
	conn, err := newProvConn(apiAnthropic, spec, env, "/v1/messages", nil)
	if err != nil {
		return nil, err
	}
	conn.header.Set("Anthropic-Version", anthropicVersion)
	return &anthropicClient{ms: spec, conn: conn}, nil
}

func (c *anthropicClient) spec() modelSpec { return c.ms }

// anthropicBlock is one content block of a request message or the system field.
type anthropicBlock struct {
	Type         string           `json:"type"`
	Text         string           `json:"text,omitempty"`
	Thinking     string           `json:"thinking,omitempty"`
	Signature    string           `json:"signature,omitempty"`
	Data         string           `json:"data,omitempty"` // redacted_thinking
	ID           string           `json:"id,omitempty"`
	Name         string           `json:"name,omitempty"`
	Input        json.RawMessage  `json:"input,omitempty"`
	ToolUseID    string           `json:"tool_use_id,omitempty"`
	IsError      *bool            `json:"is_error,omitempty"`
	Content      []anthropicBlock `json:"content,omitempty"`
	Source       *anthropicSource `json:"source,omitempty"`
	CacheControl *anthropicCache  `json:"cache_control,omitempty"`
}

// anthropicSource is an image: inline base64 data or a URL.
type anthropicSource struct {
	Type      string `json:"type"` // base64 or url
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

// anthropicCache marks a block as the end of a cacheable prefix.
type anthropicCache struct {
	Type string `json:"type"`
}

// anthropicMessage is one request message; content is always a block list.
type anthropicMessage struct {
	Role    string           `json:"role"`
	Content []anthropicBlock `json:"content"`
}

// anthropicTool is a tool definition; the schema is passed through unchanged.
type anthropicTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

// anthropicThinking turns extended thinking on with a token budget.
type anthropicThinking struct {
	Type         string `json:"type"`
	BudgetTokens int64  `json:"budget_tokens"`
}

// anthropicOutputFormat holds the agent's structured_output schema (Beta API only).
type anthropicOutputFormat struct {
	Type   string          `json:"type"` // json_schema
	Schema json.RawMessage `json:"schema"`
}

// anthropicRequest keeps the field order the reference sends (PROVIDERS.md §3.3).
type anthropicRequest struct {
	MaxTokens    int64                  `json:"max_tokens"`
	Messages     []anthropicMessage     `json:"messages"`
	Model        string                 `json:"model"`
	System       []anthropicBlock       `json:"system,omitempty"`
	Tools        []anthropicTool        `json:"tools"` // [] rather than absent, as the reference sends
	Thinking     *anthropicThinking     `json:"thinking,omitempty"`
	OutputFormat *anthropicOutputFormat `json:"output_format,omitempty"`
	Temperature  *float64               `json:"temperature,omitempty"`
	TopP         *float64               `json:"top_p,omitempty"`
	Stream       bool                   `json:"stream"`
}

// request builds the wire body and lists its anthropic-beta values; any beyond tool
// streaming need the Beta endpoint (PROVIDERS.md §3.3).
func (c *anthropicClient) request(req *modelRequest) (*anthropicRequest, []string) {
	ar := &anthropicRequest{
		MaxTokens: provMaxTokens(req, c.ms, anthropicDefaultMaxTokens),
		Model:     c.ms.Model,
		Tools:     []anthropicTool{},
		Stream:    true,
	}
	explicitMax := req.MaxTokens > 0 || c.ms.MaxTokens > 0
	var msgs []chatMessage
	for _, m := range req.Messages {
		if m.Role != "system" {
			msgs = append(msgs, m)
			continue
		}
		text := strings.TrimSpace(m.Content)
		if text == "" {
			continue
		}
		b := anthropicBlock{Type: "text", Text: text}
		if m.CacheControl {
			b.CacheControl = &anthropicCache{"ephemeral"}
		}
		ar.System = append(ar.System, b)
	}
	ar.Messages = anthropicMessages(msgs)
	// Caching the last two messages lets the next turn reuse this one's prefix. Thinking
	// blocks cannot carry cache_control.
	marks := 0
	for i := max(0, len(ar.Messages)-2); i < len(ar.Messages); i++ {
		last := &ar.Messages[i].Content[len(ar.Messages[i].Content)-1]
		if last.Type != "thinking" && last.Type != "redacted_thinking" {
			last.CacheControl = &anthropicCache{"ephemeral"}
			marks++
		}
	}
	// The API takes at most anthropicMaxCacheMarks; the earliest system marks give way.
	excess := anthropicSystemMarks(ar.System) + marks - anthropicMaxCacheMarks
	for i := 0; i < len(ar.System) && excess > 0; i++ {
		if ar.System[i].CacheControl != nil {
			ar.System[i].CacheControl = nil
			excess--
		}
	}
	if !req.NoTools {
		for _, t := range req.Tools {
			ar.Tools = append(ar.Tools, anthropicTool{Name: t.Name, Description: t.Description, InputSchema: provSchema(t.Parameters)})
		}
	}
	betas := []string{anthropicBetaToolStream}
	if budget, set, on := anthropicBudget(c.ms.ThinkingBudget); req.Thinking && on {
		if budget >= ar.MaxTokens && !explicitMax {
			ar.MaxTokens = budget + anthropicDefaultBudget
		}
		// The API requires 1024 <= budget < max_tokens; outside that we send no thinking
		// rather than a request that is bound to fail.
		if budget >= anthropicMinBudget && budget < ar.MaxTokens {
			ar.Thinking = &anthropicThinking{Type: "enabled", BudgetTokens: budget}
			if !set || provBool(c.ms.ProviderOpts["interleaved_thinking"]) {
				betas = append([]string{anthropicBetaInterleaved}, betas...)
			}
		}
	}
	if ar.Thinking == nil {
		// Thinking forbids sampling parameters, so they only go out without it.
		ar.Temperature, ar.TopP = c.ms.Temperature, c.ms.TopP
	}
	if req.Output != nil {
		ar.OutputFormat = &anthropicOutputFormat{Type: "json_schema", Schema: provSchema(req.Output.Schema)}
		betas = append(betas, anthropicBetaStructured)
	}
	return ar, betas
}

// anthropicSystemMarks counts the system blocks marked for caching.
func anthropicSystemMarks(blocks []anthropicBlock) int {
	n := 0
	for _, b := range blocks {
		if b.CacheControl != nil {
			n++
		}
	}
	return n
}

// anthropicBudget reads thinking_budget: the token budget, whether it was configured, and
// whether thinking is on at all (0 and "none" turn it off). Effort words map to budgets.
func anthropicBudget(v any) (budget int64, set, on bool) {
	switch b := provBudget(v).(type) {
	case nil:
		return anthropicDefaultBudget, false, true
	case int64:
		return b, true, b > 0
	case string:
		switch b {
		case "minimal":
			return 1024, true, true
		case "low":
			return 4096, true, true
		case "medium":
			return 8192, true, true
		case "high":
			return 16384, true, true
		}
	}
	return 0, true, false
}

// anthropicMessages converts the conversation: tool calls become tool_use blocks, and each
// run of tool results becomes one user message answering the tool_use blocks just before
// it. The API rejects a tool_use without its result, so missing results are filled in and
// results with no matching call are dropped (PROVIDERS.md §3.3, §4).
func anthropicMessages(msgs []chatMessage) []anthropicMessage {
	var out []anthropicMessage
	for i := 0; i < len(msgs); i++ {
		m := msgs[i]
		switch m.Role {
		case "assistant":
			blocks := anthropicAssistant(m)
			if len(blocks) == 0 {
				continue
			}
			out = append(out, anthropicMessage{Role: "assistant", Content: blocks})
			if len(m.ToolCalls) == 0 {
				continue
			}
			answered := map[string]bool{}
			var results []anthropicBlock
			for ; i+1 < len(msgs) && msgs[i+1].Role == "tool"; i++ {
				r := msgs[i+1]
				if answered[r.ToolCallID] || !anthropicHasCall(m.ToolCalls, r.ToolCallID) {
					continue
				}
				answered[r.ToolCallID] = true
				results = append(results, anthropicResult(r.ToolCallID, r.Content, r.IsError))
			}
			for _, tc := range m.ToolCalls {
				if !answered[tc.ID] {
					results = append(results, anthropicResult(tc.ID, "(tool execution failed)", true))
				}
			}
			out = append(out, anthropicMessage{Role: "user", Content: results})
		case "tool":
			// A result whose call is not in the message just before it cannot be sent.
		default:
			if blocks := anthropicUser(m); len(blocks) > 0 {
				out = append(out, anthropicMessage{Role: "user", Content: blocks})
			}
		}
	}
	return out
}

// anthropicHasCall reports whether calls contains the call id.
func anthropicHasCall(calls []toolCall, id string) bool {
	for _, c := range calls {
		if c.ID == id {
			return true
		}
	}
	return false
}

// anthropicAssistant renders an assistant message. Thinking must come first and be sent
// back unchanged with its signature; a message with a signature but no thinking text holds
// redacted thinking, whose opaque data travels in ThinkingSignature.
func anthropicAssistant(m chatMessage) []anthropicBlock {
	var blocks []anthropicBlock
	switch {
	case m.ThinkingSignature != "" && m.ReasoningContent != "":
		blocks = append(blocks, anthropicBlock{Type: "thinking", Thinking: m.ReasoningContent, Signature: m.ThinkingSignature})
	case m.ThinkingSignature != "":
		blocks = append(blocks, anthropicBlock{Type: "redacted_thinking", Data: m.ThinkingSignature})
	}
	if text := strings.TrimSpace(m.Content); text != "" {
		blocks = append(blocks, anthropicBlock{Type: "text", Text: text})
	}
	for _, tc := range m.ToolCalls {
		input := json.RawMessage(tc.Function.Arguments)
		var obj map[string]any
		if json.Unmarshal(input, &obj) != nil || obj == nil {
			input = json.RawMessage(`{}`)
		}
		blocks = append(blocks, anthropicBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
	}
	return blocks
}

// anthropicUser renders a user message as trimmed text and image blocks.
func anthropicUser(m chatMessage) []anthropicBlock {
	var blocks []anthropicBlock
	if text := strings.TrimSpace(m.Content); text != "" {
		blocks = append(blocks, anthropicBlock{Type: "text", Text: text})
	}
	for _, p := range m.MultiContent {
		switch {
		case p.Type == "text" && strings.TrimSpace(p.Text) != "":
			blocks = append(blocks, anthropicBlock{Type: "text", Text: strings.TrimSpace(p.Text)})
		case p.Type == "image_url" && p.ImageURL != nil:
			blocks = append(blocks, anthropicBlock{Type: "image", Source: anthropicImage(p.ImageURL.URL)})
		}
	}
	return blocks
}

// anthropicImage sends data: URLs inline and anything else by reference.
func anthropicImage(u string) *anthropicSource {
	if mt, data, ok := provDataURL(u); ok {
		return &anthropicSource{Type: "base64", MediaType: mt, Data: data}
	}
	return &anthropicSource{Type: "url", URL: u}
}

// anthropicResult is one tool_result block, its text trimmed as the reference sends it.
func anthropicResult(id, content string, isError bool) anthropicBlock {
	b := anthropicBlock{Type: "tool_result", ToolUseID: id, IsError: &isError}
	// Empty text blocks are rejected by the API, so an empty result has no content.
	if text := strings.TrimSpace(content); text != "" {
		b.Content = []anthropicBlock{{Type: "text", Text: text}}
	}
	return b
}

// anthropicUsage is the usage object of message_start and message_delta.
type anthropicUsage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
}

// merge overlays the counts u reports; message_delta may repeat only some of them.
func (u anthropicUsage) merge(into *messageUsage) {
	set := func(dst *int64, src *int64) {
		if src != nil {
			*dst = *src
		}
	}
	set(&into.InputTokens, u.InputTokens)
	set(&into.OutputTokens, u.OutputTokens)
	set(&into.CacheWriteTokens, u.CacheCreationInputTokens)
	set(&into.CachedInputTokens, u.CacheReadInputTokens)
}

// anthropicEvent is the union of the stream's event payloads.
type anthropicEvent struct {
	Type    string `json:"type"`
	Message struct {
		Model string         `json:"model"`
		Usage anthropicUsage `json:"usage"`
	} `json:"message"`
	ContentBlock struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Name string `json:"name"`
		Text string `json:"text"`
		Data string `json:"data"` // redacted_thinking
	} `json:"content_block"`
	Delta struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		Thinking    string `json:"thinking"`
		Signature   string `json:"signature"`
		PartialJSON string `json:"partial_json"`
		StopReason  string `json:"stop_reason"`
	} `json:"delta"`
	Usage *anthropicUsage `json:"usage"`
	Error *provErrorBody  `json:"error"`
}

// stream implements modelClient.
func (c *anthropicClient) stream(ctx context.Context, req *modelRequest, emit func(modelEvent)) error {
	var betas []string
	body, err := marshalRequest(req, func(req *modelRequest) *anthropicRequest {
		ar, b := c.request(req)
		betas = b
		return ar
	})
	if err != nil {
		return fmt.Errorf("anthropic: encoding request: %w", err)
	}
	conn := c.conn
	conn.header = c.conn.header.Clone()
	conn.header.Set("Anthropic-Beta", strings.Join(betas, ","))
	if len(betas) > 1 {
		conn.url += "?beta=true"
	}
	st := &anthropicStream{stop: "stop"}
	return conn.run(ctx, body, emit, st.event, func(bool) error {
		if !st.finished {
			return fmt.Errorf("no message_stop: %w", errStreamCut)
		}
		return nil
	})
}

// anthropicStream is the state of one Messages stream.
type anthropicStream struct {
	model    string
	usage    messageUsage
	toolID   string // tool_use block being streamed; argument deltas carry its id
	sawTool  bool
	stop     string
	sig      string // signature of the thinking block being streamed
	finished bool
}

// event handles one SSE event; message_stop ends the stream.
func (st *anthropicStream) event(ev sseEvent, emit func(modelEvent)) error {
	var e anthropicEvent
	if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
		return fmt.Errorf("decoding %s event: %w", cmp.Or(ev.Event, "stream"), err)
	}
	switch cmp.Or(e.Type, ev.Event) {
	case "message_start":
		st.model = e.Message.Model
		e.Message.Usage.merge(&st.usage)
	case "content_block_start":
		st.blockStart(&e, emit)
	case "content_block_delta":
		st.delta(&e, emit)
	case "content_block_stop":
		if st.sig != "" {
			// One event with the whole signature, so consumers may append or replace.
			emit(modelEvent{Kind: evReasoning, Signature: st.sig})
			st.sig = ""
		}
		st.toolID = ""
	case "message_delta":
		if e.Usage != nil {
			e.Usage.merge(&st.usage)
		}
		switch e.Delta.StopReason {
		case "max_tokens", "model_context_window_exceeded":
			st.stop = "length"
		case "refusal":
			st.stop = "content_filter"
		}
	case "message_stop":
		st.finished = true
		u := st.usage
		emit(modelEvent{Kind: evUsage, Usage: &u, Model: st.model})
		if st.sawTool {
			st.stop = "tool_calls"
		}
		emit(modelEvent{Kind: evStop, StopReason: st.stop, Model: st.model})
		return errProvDone
	case "error":
		return anthropicStreamError(e.Error)
	}
	return nil
}

// blockStart handles content_block_start.
func (st *anthropicStream) blockStart(e *anthropicEvent, emit func(modelEvent)) {
	switch e.ContentBlock.Type {
	case "tool_use":
		st.toolID, st.sawTool = e.ContentBlock.ID, true
		emit(modelEvent{Kind: evToolCallStart, ToolID: st.toolID, ToolName: e.ContentBlock.Name})
	case "redacted_thinking":
		// The reference drops these; the API needs them back, so keep the data as
		// a signature without text (see anthropicAssistant).
		emit(modelEvent{Kind: evReasoning, Signature: e.ContentBlock.Data})
	case "thinking":
		st.sig = ""
	case "text":
		if e.ContentBlock.Text != "" {
			emit(modelEvent{Kind: evText, Text: e.ContentBlock.Text})
		}
	}
}

// delta handles content_block_delta. Other delta types (citations_delta, …) carry
// nothing we keep; the reference fails the turn on them, which is worse than ignoring.
func (st *anthropicStream) delta(e *anthropicEvent, emit func(modelEvent)) {
	switch e.Delta.Type {
	case "text_delta":
		emit(modelEvent{Kind: evText, Text: e.Delta.Text})
	case "input_json_delta":
		if e.Delta.PartialJSON != "" {
			emit(modelEvent{Kind: evToolCallArgs, ToolID: st.toolID, Text: e.Delta.PartialJSON})
		}
	case "thinking_delta":
		emit(modelEvent{Kind: evReasoning, Text: e.Delta.Thinking})
	case "signature_delta":
		st.sig += e.Delta.Signature
	}
}

// anthropicStreamError turns an `event: error` payload into a modelError whose Status says
// how a retry layer should treat it, as the HTTP status of the same error would.
func anthropicStreamError(e *provErrorBody) error {
	if e == nil {
		return &modelError{Msg: "stream error event without details"}
	}
	status := map[string]int{
		"invalid_request_error": 400, "authentication_error": 401, "permission_error": 403,
		"not_found_error": 404, "request_too_large": 413, "rate_limit_error": 429,
		"api_error": 500, "overloaded_error": 529,
	}[e.Type]
	return &modelError{Status: status, Msg: "stream error: " + e.Type + ": " + e.Message}
}
