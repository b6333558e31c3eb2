package main

// models.go: provider selection, the OpenAI-compatible chat client, and the model chain
// with retries and fallbacks (PROVIDERS.md §2, §3.1, §3.5, §5). The provider table and
// the HTTP path every client shares are in providers.go.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// modelAPIType says which wire protocol spec speaks: spec.APIType, then
// provider_opts.api_type, then the provider table (openai switches to Responses by model
// name). A provider that is neither known nor given a base URL is an error.
func modelAPIType(spec modelSpec) (string, error) {
	api := spec.APIType
	if api == "" {
		if s, ok := spec.ProviderOpts["api_type"].(string); ok {
			api = s
		}
	}
	switch api {
	case "":
	case apiOpenAIChat, apiOpenAIResponses, apiAnthropic:
		return api, nil
	case apiGoogle, "gemini":
		return apiGoogle, nil
	default:
		return "", fmt.Errorf("model %s: unknown api_type %q (want %s or %s)", modelName(spec), api, apiOpenAIChat, apiOpenAIResponses)
	}
	p, ok := providerByName(spec.Provider)
	if !ok {
		if spec.BaseURL != "" { // a custom OpenAI-compatible provider
			return apiOpenAIChat, nil
		}
		return "", fmt.Errorf("unknown provider type: %s", spec.Provider)
	}
	if spec.Provider == "openai" && modelUsesResponses(spec.Model) {
		return apiOpenAIResponses, nil
	}
	return p.API, nil
}

// modelUsesResponses is the reference's rule for models OpenAI serves through the
// Responses API (PROVIDERS.md §2); it also decides max_completion_tokens on chat.
func modelUsesResponses(model string) bool {
	m := strings.ToLower(model)
	for _, p := range []string{"gpt-4.1", "o1", "o3", "o4", "gpt-5", "codex"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return strings.Contains(m, "-codex")
}

// modelName is "provider/model", the name used in errors and fallback notices.
func modelName(spec modelSpec) string {
	if spec.Provider == "" {
		return spec.Model
	}
	return spec.Provider + "/" + spec.Model
}

// newModelClient returns the client for spec's API family. Missing API keys are
// reported when the client streams, so agents whose keys are absent still load.
func newModelClient(spec modelSpec, env clientEnv) (modelClient, error) {
	api, err := modelAPIType(spec)
	if err != nil {
		return nil, err
	}
	switch api {
	case apiOpenAIChat:
		return newOpenAIChatClient(spec, env)
	case apiOpenAIResponses:
		return newResponsesClient(spec, env)
	case apiAnthropic:
		return newAnthropicClient(spec, env)
	case apiGoogle:
		return newGeminiClient(spec, env)
	case apiBedrock:
		return newBedrockClient(spec, env)
	}
	return nil, fmt.Errorf("model %s: unsupported api type %s", modelName(spec), api)
}

// (openai, mistral, xai, nebius, minimax, requesty, azure, ollama, dmr, custom).
type openAIChatClient struct {
	s    modelSpec
	conn provConn
	dmr  bool
}

func newOpenAIChatClient(spec modelSpec, env clientEnv) (*openAIChatClient, error) {
	var query url.Values
	if spec.Provider == "azure" {
		if v, ok := spec.ProviderOpts["api_version"].(string); ok && v != "" {
			query = url.Values{"api-version": {v}}
		}
	}
	conn, err := newProvConn(apiOpenAIChat, spec, env, "/chat/completions", query)
	if err != nil {
		return nil, err
	}
	return &openAIChatClient{s: spec, conn: conn, dmr: spec.Provider == "dmr"}, nil
}

func (c *openAIChatClient) spec() modelSpec { return c.s }

// Wire types for chat completions. Field order follows the reference's SDK so that
// request bodies match recorded cassettes byte for byte (PROVIDERS.md §6.2).
type openAIChatRequest struct {
	Messages            []openAIChatMessage      `json:"messages"`
	Model               string                   `json:"model"`
	FrequencyPenalty    *float64                 `json:"frequency_penalty,omitempty"`
	MaxCompletionTokens int64                    `json:"max_completion_tokens,omitempty"`
	MaxTokens           int64                    `json:"max_tokens,omitempty"`
	PresencePenalty     *float64                 `json:"presence_penalty,omitempty"`
	Temperature         *float64                 `json:"temperature,omitempty"`
	TopP                *float64                 `json:"top_p,omitempty"`
	ParallelToolCalls   *bool                    `json:"parallel_tool_calls,omitempty"`
	ReasoningEffort     string                   `json:"reasoning_effort,omitempty"`
	ResponseFormat      *openAIResponseFormat    `json:"response_format,omitempty"`
	StreamOptions       *openAIChatStreamOptions `json:"stream_options,omitempty"`
	Tools               []openAIChatTool         `json:"tools,omitempty"`
	Stream              bool                     `json:"stream"`
}

// openAIResponseFormat holds the agent's structured_output schema (PROVIDERS.md §3.1).
type openAIResponseFormat struct {
	Type       string           `json:"type"` // json_schema
	JSONSchema openAIJSONSchema `json:"json_schema"`
}

// openAIJSONSchema is a named response schema; the Responses API takes the same fields
// flat in text.format.
type openAIJSONSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema"`
	Strict      bool            `json:"strict"`
}

// newOpenAIJSONSchema converts structured_output. OpenAI rejects an empty name, so a
// config without one gets "response"; a missing schema becomes an empty object schema.
func newOpenAIJSONSchema(so *structuredOutputConfig) openAIJSONSchema {
	return openAIJSONSchema{Name: cmp.Or(so.Name, "response"), Description: so.Description,
		Schema: provSchema(so.Schema), Strict: so.Strict}
}

type openAIChatStreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// openAIChatMessage: Content is a string, a []openAIChatPart, or nil (omitted: an assistant message
// that only calls tools).
type openAIChatMessage struct {
	Content    any                  `json:"content,omitempty"`
	ToolCalls  []openAIChatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string               `json:"tool_call_id,omitempty"`
	Role       string               `json:"role"`
}

type openAIChatPart struct {
	Text     string    `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
	Type     string    `json:"type"`
}

type openAIChatToolCall struct {
	ID       string                 `json:"id"`
	Function openAIChatFunctionCall `json:"function"`
	Type     string                 `json:"type"`
}

type openAIChatFunctionCall struct {
	Arguments string `json:"arguments"`
	Name      string `json:"name"`
}

type openAIChatTool struct {
	Function openAIChatFunction `json:"function"`
	Type     string             `json:"type"`
}

type openAIChatFunction struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	Parameters  map[string]any `json:"parameters"`
}

// openAIChatChunk is one streamed chunk. Unknown fields (obfuscation, service_tier, Mistral's
// padding "p") are ignored by encoding/json.
type openAIChatChunk struct {
	Model   string             `json:"model"`
	Choices []openAIChatChoice `json:"choices"`
	Usage   *struct {
		PromptTokens        int64 `json:"prompt_tokens"`
		CompletionTokens    int64 `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int64 `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
		CompletionTokensDetails *struct {
			ReasoningTokens int64 `json:"reasoning_tokens"`
		} `json:"completion_tokens_details"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

type openAIChatChoice struct {
	Delta        openAIChatDelta `json:"delta"`
	FinishReason string          `json:"finish_reason"`
}

type openAIChatDelta struct {
	Content          string `json:"content"`
	ReasoningContent string `json:"reasoning_content"`
	Reasoning        string `json:"reasoning"` // vLLM ≥ 0.9 and OpenRouter spell it so
	ToolCalls        []struct {
		Index    int    `json:"index"`
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// requestBody builds the chat completions request (PROVIDERS.md §3.1, §3.5, §4).
func (c *openAIChatClient) requestBody(req *modelRequest) (splicedJSON, error) {
	s := c.s
	refs := newImageRefs() // large images are spliced in, not copied
	r := openAIChatRequest{
		Messages:         openAIChatMessages(refs.messages(req.Messages), c.dmr),
		Model:            s.Model,
		FrequencyPenalty: s.FrequencyPenalty,
		PresencePenalty:  s.PresencePenalty,
		Temperature:      s.Temperature,
		TopP:             s.TopP,
		Stream:           true,
	}
	maxTokens := s.MaxTokens
	if req.MaxTokens > 0 {
		maxTokens = req.MaxTokens
	}
	if modelUsesResponses(s.Model) {
		r.MaxCompletionTokens = maxTokens
	} else {
		r.MaxTokens = maxTokens
	}
	if s.TrackUsage == nil || *s.TrackUsage {
		r.StreamOptions = &openAIChatStreamOptions{IncludeUsage: true}
	}
	if !req.NoTools && len(req.Tools) > 0 {
		for _, t := range req.Tools {
			params, err := openAIChatSchema(t.Parameters)
			if err != nil {
				return splicedJSON{}, fmt.Errorf("tool %s: %w", t.Name, err)
			}
			desc := t.Description
			if desc == "" && c.dmr {
				desc = "Function " + t.Name // llama.cpp rejects tools without a description
			}
			r.Tools = append(r.Tools, openAIChatTool{Type: "function", Function: openAIChatFunction{Name: t.Name, Description: desc, Parameters: params}})
		}
		r.ParallelToolCalls = s.ParallelToolCalls
	}
	if req.Thinking && !c.dmr {
		r.ReasoningEffort = openAIChatReasoningEffort(s)
	}
	if req.Output != nil {
		r.ResponseFormat = &openAIResponseFormat{Type: "json_schema", JSONSchema: newOpenAIJSONSchema(req.Output)}
	}
	j, err := json.Marshal(r)
	if err != nil {
		return splicedJSON{}, err
	}
	return refs.splice(j), nil
}

// openAIChatReasoningEffort is the reasoning_effort for spec when thinking is on: only the
// o1/o3/o4/gpt-5 families accept it (PROVIDERS.md §3.1); the default is medium.
func openAIChatReasoningEffort(spec modelSpec) string {
	m := strings.ToLower(spec.Model)
	if !(strings.HasPrefix(m, "o1") || strings.HasPrefix(m, "o3") || strings.HasPrefix(m, "o4") || strings.HasPrefix(m, "gpt-5")) {
		return ""
	}
	switch b := spec.ThinkingBudget.(type) {
	case string:
		switch b {
		case "minimal", "low", "medium", "high":
			return b
		case "none", "0":
			return ""
		}
	case int64:
		if b == 0 {
			return ""
		}
	case int:
		if b == 0 {
			return ""
		}
	}
	return "medium"
}

// openAIChatMessages converts the conversation. Empty assistant messages are dropped (a
// turn cut by max_tokens leaves one, and providers reject it). Tool-result images
// follow as a user message, since the tool role takes text only. For DMR, consecutive
// system and consecutive user messages are merged: llama.cpp chat templates reject
// them otherwise.
func openAIChatMessages(msgs []chatMessage, merge bool) []openAIChatMessage {
	out := make([]openAIChatMessage, 0, len(msgs))
	for _, m := range msgs {
		switch m.Role {
		case "assistant":
			if len(m.ToolCalls) == 0 && strings.TrimSpace(m.Content) == "" {
				continue
			}
			om := openAIChatMessage{Role: "assistant"}
			if m.Content != "" {
				om.Content = m.Content
			}
			for _, tc := range m.ToolCalls {
				typ := tc.Type
				if typ == "" {
					typ = "function"
				}
				om.ToolCalls = append(om.ToolCalls, openAIChatToolCall{ID: tc.ID, Type: typ, Function: openAIChatFunctionCall{Name: tc.Function.Name, Arguments: tc.Function.Arguments}})
			}
			if len(om.ToolCalls) == 0 && om.Content == nil {
				om.Content = ""
			}
			out = append(out, om)
		case "tool":
			out = append(out, openAIChatMessage{Role: "tool", Content: m.Content, ToolCallID: m.ToolCallID})
			var imgs []openAIChatPart
			for _, p := range m.MultiContent {
				if p.Type == "image_url" && p.ImageURL != nil {
					imgs = append(imgs, openAIChatPart{Type: "image_url", ImageURL: p.ImageURL})
				}
			}
			if len(imgs) > 0 {
				parts := append([]openAIChatPart{{Type: "text", Text: "Attached image(s) from tool result:"}}, imgs...)
				out = append(out, openAIChatMessage{Role: "user", Content: parts})
			}
		default:
			om := openAIChatMessage{Role: m.Role, Content: m.Content}
			if len(m.MultiContent) > 0 {
				var parts []openAIChatPart
				for _, p := range m.MultiContent {
					switch {
					case p.Type == "text":
						parts = append(parts, openAIChatPart{Type: "text", Text: p.Text})
					case p.Type == "image_url" && p.ImageURL != nil:
						parts = append(parts, openAIChatPart{Type: "image_url", ImageURL: p.ImageURL})
					}
				}
				if len(parts) > 0 { // only file parts: keep the text content
					om.Content = parts
				}
			}
			if merge && len(out) > 0 {
				last := &out[len(out)-1]
				ls, lok := last.Content.(string)
				cs, cok := om.Content.(string)
				if last.Role == om.Role && (om.Role == "system" || om.Role == "user") && lok && cok {
					last.Content = ls + "\n" + cs
					continue
				}
			}
			out = append(out, om)
		}
	}
	return out
}

// openAIChatSchema rewrites a tool's JSON schema the way OpenAI's strict function calling
// wants it (PROVIDERS.md §3.1): every property required, optional ones nullable,
// additionalProperties false on objects, no "format", arrays always with items. No
// parameters at all is an empty object schema. Keys come out sorted (encoding/json
// sorts map keys), as the reference's bodies are.
func openAIChatSchema(raw json.RawMessage) (map[string]any, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return map[string]any{"type": "object", "properties": map[string]any{}}, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber() // keep numbers (minimum, maximum…) exactly as written
	var v map[string]any
	if err := d.Decode(&v); err != nil {
		return nil, fmt.Errorf("parameters are not a JSON object: %w", err)
	}
	openAIChatRewriteSchema(v)
	if _, ok := v["properties"]; !ok && v["type"] == "object" {
		v["properties"] = map[string]any{}
	}
	return v, nil
}

func openAIChatRewriteSchema(s map[string]any) {
	delete(s, "format")
	if props, ok := s["properties"].(map[string]any); ok {
		var req []string
		if rs, ok := s["required"].([]any); ok {
			for _, r := range rs {
				if name, ok := r.(string); ok {
					req = append(req, name)
				}
			}
		}
		names := make([]string, 0, len(props))
		for name := range props {
			names = append(names, name)
		}
		sort.Strings(names)
		all := slices.Clone(req)
		for _, name := range names {
			p, _ := props[name].(map[string]any)
			if p != nil {
				openAIChatRewriteSchema(p)
			}
			if slices.Contains(req, name) {
				continue
			}
			all = append(all, name)
			if p != nil {
				openAIChatNullable(p)
			}
		}
		reqAny := make([]any, len(all))
		for i, n := range all {
			reqAny[i] = n
		}
		s["required"] = reqAny
		s["additionalProperties"] = false
	} else if s["type"] == "object" {
		s["additionalProperties"] = false
	}
	if s["type"] == "array" || slices.Contains(openAIChatSchemaTypes(s["type"]), "array") {
		if items, ok := s["items"].(map[string]any); ok {
			openAIChatRewriteSchema(items)
		} else if _, ok := s["items"]; !ok {
			s["items"] = map[string]any{"type": "object"}
		}
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		if list, ok := s[k].([]any); ok {
			for _, e := range list {
				if m, ok := e.(map[string]any); ok {
					openAIChatRewriteSchema(m)
				}
			}
		}
	}
}

// openAIChatNullable widens a property's type to also accept null.
func openAIChatNullable(p map[string]any) {
	switch t := p["type"].(type) {
	case string:
		if t != "null" {
			p["type"] = []any{t, "null"}
		}
	case []any:
		if !slices.Contains(t, any("null")) {
			p["type"] = append(t, "null")
		}
	}
}

func openAIChatSchemaTypes(v any) []string {
	var out []string
	if l, ok := v.([]any); ok {
		for _, e := range l {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// stream implements modelClient.
func (c *openAIChatClient) stream(ctx context.Context, req *modelRequest, emit func(modelEvent)) error {
	body, err := c.requestBody(req)
	if err != nil {
		return err
	}
	st := newOpenAIChatStream(emit)
	return c.conn.run(ctx, body, emit, st.event, st.end)
}

// openAIChatStream parses a chat completions SSE stream into events. Deltas, usage and
// finish reasons may come in any combination in one chunk (Mistral sends the whole
// tool call, the finish reason and the usage together). Tool-call fragments carry only
// an index after the first, so the id is remembered per index. Stop is emitted last,
// after the usage chunk that follows the finish reason.
type openAIChatStream struct {
	emit   func(modelEvent) // for the events of end
	ids    map[int]string
	names  map[int]string
	finish string
	usage  *messageUsage
	model  string
}

func newOpenAIChatStream(emit func(modelEvent)) *openAIChatStream {
	return &openAIChatStream{emit: emit, ids: map[int]string{}, names: map[int]string{}}
}

// event handles one SSE event; [DONE] ends the stream.
func (st *openAIChatStream) event(ev sseEvent, emit func(modelEvent)) error {
	data := strings.TrimSpace(ev.Data)
	if data == "[DONE]" {
		return errProvDone
	}
	if data == "" {
		return nil
	}
	var ch openAIChatChunk
	if openAIFastChunk(data, &ch) {
		// the common text delta, decoded without reflection
	} else if err := json.Unmarshal([]byte(data), &ch); err != nil {
		return fmt.Errorf("invalid chunk %.200q: %v", data, err)
	}
	if len(ch.Error) > 0 && string(ch.Error) != "null" {
		return &modelError{Msg: "stream error: " + modelErrorMessage([]byte(`{"error":`+string(ch.Error)+`}`))}
	}
	st.model = cmp.Or(ch.Model, st.model)
	// Events of a chunk that arrived with more behind it can be flushed together.
	more := func(me modelEvent) {
		me.More, me.Model = ev.More, st.model
		emit(me)
	}
	for _, choice := range ch.Choices {
		d := choice.Delta
		if reasoning := cmp.Or(d.ReasoningContent, d.Reasoning); reasoning != "" {
			more(modelEvent{Kind: evReasoning, Text: reasoning})
		}
		if d.Content != "" {
			more(modelEvent{Kind: evText, Text: d.Content})
		}
		for _, tc := range d.ToolCalls {
			st.toolCall(tc.Index, tc.ID, tc.Function.Name, tc.Function.Arguments, more)
		}
		st.finish = cmp.Or(choice.FinishReason, st.finish)
	}
	if u := ch.Usage; u != nil {
		mu := &messageUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens}
		if u.PromptTokensDetails != nil {
			mu.CachedInputTokens = u.PromptTokensDetails.CachedTokens
			mu.InputTokens -= mu.CachedInputTokens
		}
		if u.CompletionTokensDetails != nil {
			mu.ReasoningTokens = u.CompletionTokensDetails.ReasoningTokens
		}
		st.usage = mu
	}
	return nil
}

// toolCall emits the start of the call at index (once its id, or later its name, is
// known) and its argument fragment.
func (st *openAIChatStream) toolCall(index int, id, name, args string, emit func(modelEvent)) {
	known, seen := st.ids[index]
	if id != "" && id != known {
		known, seen = id, false
		st.ids[index] = id
		st.names[index] = ""
	}
	if known == "" { // a server that never sends ids: make a stable one
		known = fmt.Sprintf("call_%d", index)
		st.ids[index] = known
	}
	if !seen || (name != "" && st.names[index] == "") {
		if name != "" {
			st.names[index] = name
		}
		emit(modelEvent{Kind: evToolCallStart, ToolID: known, ToolName: st.names[index]})
	}
	if args != "" {
		emit(modelEvent{Kind: evToolCallArgs, ToolID: known, Text: args})
	}
}

// end emits the usage and the stop. A clean EOF without [DONE] is accepted after a
// finish_reason (some local servers omit [DONE]); without either the connection was cut.
func (st *openAIChatStream) end(done bool) error {
	if !done && st.finish == "" {
		return fmt.Errorf("no finish_reason: %w", errStreamCut)
	}
	if st.usage != nil {
		st.emit(modelEvent{Kind: evUsage, Usage: st.usage, Model: st.model})
	}
	finish := st.finish
	if finish == "" {
		finish = "stop"
		if len(st.ids) > 0 {
			finish = "tool_calls"
		}
	}
	st.emit(modelEvent{Kind: evStop, StopReason: finish, Model: st.model})
	return nil
}

// modelChain is an agent's model with its fallbacks: retries, backoff and fallback
// order as PROVIDERS.md §5 describes. It is safe for concurrent use by many sessions.
type modelChain struct {
	models   []modelClient
	retries  int           // extra attempts per model on retryable errors
	cooldown time.Duration // how long a fallback stays pinned after the primary failed

	// Seams for tests: the backoff schedule and how to wait.
	backoffBase, backoffCap, maxRetryAfter time.Duration
	sleep                                  func(ctx context.Context, d time.Duration) error
	now                                    func() time.Time

	mu          sync.Mutex
	pinned      int // index of the pinned fallback, 0 = none
	pinnedUntil time.Time
}

// fallbackNotice describes a switch to the next model (the model_fallback event).
// Attempt is how many attempts the failed model got, MaxAttempts how many it could.
type fallbackNotice struct {
	FailedModel, FallbackModel, Reason string
	Attempt, MaxAttempts               int
}

// newModelChain builds the chain: primary first, then fallbacks in order. fb may be nil.
func newModelChain(primary modelSpec, fallbacks []modelSpec, fb *fallbackConfig, env clientEnv) (*modelChain, error) {
	c := &modelChain{
		retries:       modelDefaultRetries,
		cooldown:      modelDefaultCooldown,
		backoffBase:   modelBackoffBase,
		backoffCap:    modelBackoffCap,
		maxRetryAfter: modelMaxRetryAfter,
		sleep:         modelSleep,
		now:           time.Now,
	}
	if fb != nil {
		switch {
		case fb.Retries < 0:
			c.retries = 0
		case fb.Retries > 0:
			c.retries = fb.Retries
		}
		if fb.CooldownDur > 0 { // validated when the config loaded
			c.cooldown = fb.CooldownDur
		}
	}
	for _, s := range append([]modelSpec{primary}, fallbacks...) {
		m, err := newModelClient(s, env)
		if err != nil {
			return nil, err
		}
		c.models = append(c.models, m)
	}
	return c, nil
}

func modelSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// modelRetryable says whether err may be retried on the same model: transport errors
// before the stream started, 408, 5xx (529 included). A provider that stalled past its
// first-byte timeout is not retried: the wait already was the timeout, three would
// triple it. 429 is decided by the caller; everything else (other 4xx, bad config,
// context overflow) is final.
func modelRetryable(err error) bool {
	var me *modelError
	if !errors.As(err, &me) || me.MidStream || me.Stalled || modelContextOverflow(err) {
		return false
	}
	return me.Status == 0 || me.Status == 408 || me.Status >= 500
}

// modelContextOverflow reports whether err says the prompt no longer fits the model's
// context window; the runtime may compact and retry instead of failing.
func modelContextOverflow(err error) bool {
	if err == nil {
		return false
	}
	s := strings.ToLower(err.Error())
	for _, p := range []string{
		"prompt is too long",      // Anthropic
		"maximum context length",  // OpenAI chat, Mistral, vLLM
		"context_length_exceeded", // OpenAI's error code
		"context length exceeded",
		"exceeds the context window",       // OpenAI Responses
		"maximum number of tokens allowed", // Gemini: "The input token count (N) exceeds the maximum number of tokens allowed (M)."
		"input is too long",                // Bedrock
		"max_tokens must be greater than",  // Anthropic, when the prompt leaves no room for thinking
		"too many tokens",
		"exceeds the available context size", // llama.cpp
	} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// backoff is base × 2^attempt, capped, with ±10 % jitter.
func (c *modelChain) backoff(attempt int) time.Duration {
	d := c.backoffBase << attempt
	if d > c.backoffCap || d <= 0 {
		d = c.backoffCap
	}
	j := time.Duration(float64(d) * 0.1 * (2*rand.Float64() - 1))
	return d + j
}

// order is the sequence of model indexes to try: a pinned fallback first while its
// cooldown lasts, then the others in configured order.
func (c *modelChain) order() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	idx := make([]int, 0, len(c.models))
	if c.pinned > 0 && c.now().Before(c.pinnedUntil) {
		idx = append(idx, c.pinned)
	} else {
		c.pinned = 0
	}
	for i := range c.models {
		if i != c.pinned || c.pinned == 0 {
			idx = append(idx, i)
		}
	}
	return idx
}

// stream runs req on the first model that works, retrying and falling back; it
// returns the spec that answered. onFallback may be nil. Once any event has been
// emitted nothing is retried or re-asked of another model: the client has already
// shown part of an answer. Errors read "all models failed: <cause>".
func (c *modelChain) stream(ctx context.Context, req *modelRequest, emit func(modelEvent), onFallback func(fallbackNotice)) (modelSpec, error) {
	order := c.order()
	emitted := false
	wrapped := func(ev modelEvent) {
		emitted = true
		emit(ev)
	}
	var lastErr error
	primaryFailedHard := false
	for pos, i := range order {
		m := c.models[i]
		attempts := 0
		for {
			attempts++
			err := m.stream(ctx, req, wrapped)
			if err == nil {
				if pos > 0 && primaryFailedHard && i != 0 {
					c.mu.Lock()
					c.pinned, c.pinnedUntil = i, c.now().Add(c.cooldown)
					c.mu.Unlock()
				}
				return m.spec(), nil
			}
			if ctx.Err() != nil {
				return m.spec(), ctx.Err()
			}
			lastErr = err
			if emitted {
				return m.spec(), fmt.Errorf("all models failed: %w", err)
			}
			var me *modelError
			isME := errors.As(err, &me)
			var wait time.Duration
			switch {
			case attempts > c.retries:
			case isME && me.Status == 429 && len(order) == 1:
				// Rate limited with nowhere else to go: wait as told, then retry.
				wait = me.RetryAfter
				if wait <= 0 {
					wait = c.backoff(attempts - 1)
				}
			case isME && me.Status == 429:
			case modelRetryable(err):
				wait = c.backoff(attempts - 1)
				if me.RetryAfter > wait {
					wait = me.RetryAfter
				}
			}
			if wait == 0 {
				if i == 0 && !modelRetryable(err) {
					primaryFailedHard = true
				}
				break
			}
			if wait > c.maxRetryAfter {
				wait = c.maxRetryAfter
			}
			if err := c.sleep(ctx, wait); err != nil {
				return m.spec(), err
			}
		}
		if pos+1 < len(order) && onFallback != nil {
			onFallback(fallbackNotice{
				FailedModel:   modelName(m.spec()),
				FallbackModel: modelName(c.models[order[pos+1]].spec()),
				Reason:        lastErr.Error(),
				Attempt:       attempts,
				MaxAttempts:   c.retries + 1,
			})
		}
	}
	return c.models[order[len(order)-1]].spec(), fmt.Errorf("all models failed: %w", lastErr)
}
