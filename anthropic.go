package main

// anthropic.go is the Anthropic Messages streaming client (PROVIDERS.md §3.3, §4), plus
// the small HTTP plumbing shared by the three hand-written provider clients of this file,
// gemini.go and responses.go (helpers prefixed prov).

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	anthropicDefaultBase      = "https://api.anthropic.com"
	anthropicVersion          = "2023-06-01"
	anthropicBetaToolStream   = "fine-grained-tool-streaming-2025-05-14"
	anthropicBetaInterleaved  = "interleaved-thinking-2025-05-14"
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
	getenv := modelGetenv(env)
	base := cmp.Or(spec.BaseURL, getenv("ANTHROPIC_BASE_URL"), anthropicDefaultBase)
	c := &anthropicClient{ms: spec, conn: newProvConn("anthropic", spec, env)}
	h := c.conn.header
	h.Set("Anthropic-Version", anthropicVersion)
	if env.Gateway != "" {
		c.conn.url = strings.TrimRight(env.Gateway, "/") + "/v1/messages"
		provGatewayHeaders(h, env, base, spec)
		h.Set("X-Api-Key", getenv("DOCKER_TOKEN"))
		return c, nil
	}
	key, err := provKey(getenv, spec.TokenKey, "ANTHROPIC_API_KEY")
	if err != nil {
		return nil, err
	}
	h.Set("X-Api-Key", key)
	c.conn.url = strings.TrimRight(base, "/") + "/v1/messages"
	return c, nil
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

// anthropicRequest keeps the field order the reference sends (PROVIDERS.md §3.3).
type anthropicRequest struct {
	MaxTokens   int64              `json:"max_tokens"`
	Messages    []anthropicMessage `json:"messages"`
	Model       string             `json:"model"`
	System      []anthropicBlock   `json:"system,omitempty"`
	Tools       []anthropicTool    `json:"tools"` // [] rather than absent, as the reference sends
	Thinking    *anthropicThinking `json:"thinking,omitempty"`
	Temperature *float64           `json:"temperature,omitempty"`
	TopP        *float64           `json:"top_p,omitempty"`
	Stream      bool               `json:"stream"`
}

// request builds the wire body and reports whether the interleaved-thinking beta is on.
func (c *anthropicClient) request(req *modelRequest) (*anthropicRequest, bool) {
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
	interleaved := false
	if budget, set, on := anthropicBudget(c.ms.ThinkingBudget); req.Thinking && on {
		if budget >= ar.MaxTokens && !explicitMax {
			ar.MaxTokens = budget + anthropicDefaultBudget
		}
		// The API requires 1024 <= budget < max_tokens; outside that we send no thinking
		// rather than a request that is bound to fail.
		if budget >= anthropicMinBudget && budget < ar.MaxTokens {
			ar.Thinking = &anthropicThinking{Type: "enabled", BudgetTokens: budget}
			interleaved = !set || provBool(c.ms.ProviderOpts["interleaved_thinking"])
		}
	}
	if ar.Thinking == nil {
		// Thinking forbids sampling parameters, so they only go out without it.
		ar.Temperature, ar.TopP = c.ms.Temperature, c.ms.TopP
	}
	return ar, interleaved
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
	ar, interleaved := c.request(req)
	body, err := json.Marshal(ar)
	if err != nil {
		return fmt.Errorf("anthropic: encoding request: %w", err)
	}
	conn := c.conn
	conn.header = c.conn.header.Clone()
	conn.header.Set("Anthropic-Beta", anthropicBetaToolStream)
	if interleaved {
		conn.url += "?beta=true"
		conn.header.Set("Anthropic-Beta", anthropicBetaInterleaved+","+anthropicBetaToolStream)
	}
	var (
		model    string
		usage    messageUsage
		toolID   string // tool_use block being streamed; argument deltas carry its id
		sawTool  bool
		stop     = "stop"
		sig      string // signature of the thinking block being streamed
		finished bool
	)
	return conn.run(ctx, body, emit, func(ev sseEvent, emit func(modelEvent)) error {
		var e anthropicEvent
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			return fmt.Errorf("decoding %s event: %w", cmp.Or(ev.Event, "stream"), err)
		}
		if e.Type == "" {
			e.Type = ev.Event
		}
		switch e.Type {
		case "message_start":
			model = e.Message.Model
			e.Message.Usage.merge(&usage)
		case "content_block_start":
			switch e.ContentBlock.Type {
			case "tool_use":
				toolID, sawTool = e.ContentBlock.ID, true
				emit(modelEvent{Kind: evToolCallStart, ToolID: toolID, ToolName: e.ContentBlock.Name})
			case "redacted_thinking":
				// The reference drops these; the API needs them back, so keep the data as
				// a signature without text (see anthropicAssistant).
				emit(modelEvent{Kind: evReasoning, Signature: e.ContentBlock.Data})
			case "thinking":
				sig = ""
			case "text":
				if e.ContentBlock.Text != "" {
					emit(modelEvent{Kind: evText, Text: e.ContentBlock.Text})
				}
			}
		case "content_block_delta":
			switch e.Delta.Type {
			case "text_delta":
				emit(modelEvent{Kind: evText, Text: e.Delta.Text})
			case "input_json_delta":
				if e.Delta.PartialJSON != "" {
					emit(modelEvent{Kind: evToolCallArgs, ToolID: toolID, Text: e.Delta.PartialJSON})
				}
			case "thinking_delta":
				emit(modelEvent{Kind: evReasoning, Text: e.Delta.Thinking})
			case "signature_delta":
				sig += e.Delta.Signature
			}
			// Other delta types (citations_delta, …) carry nothing we keep; the reference
			// fails the turn on them, which is worse than ignoring them.
		case "content_block_stop":
			if sig != "" {
				// One event with the whole signature, so consumers may append or replace.
				emit(modelEvent{Kind: evReasoning, Signature: sig})
				sig = ""
			}
			toolID = ""
		case "message_delta":
			if e.Usage != nil {
				e.Usage.merge(&usage)
			}
			switch e.Delta.StopReason {
			case "max_tokens", "model_context_window_exceeded":
				stop = "length"
			case "refusal":
				stop = "content_filter"
			}
		case "message_stop":
			finished = true
			u := usage
			emit(modelEvent{Kind: evUsage, Usage: &u, Model: model})
			if sawTool {
				stop = "tool_calls"
			}
			emit(modelEvent{Kind: evStop, StopReason: stop, Model: model})
			return errProvDone
		case "error":
			return anthropicStreamError(e.Error)
		}
		return nil
	}, func() error {
		if !finished {
			return fmt.Errorf("no message_stop: %w", errStreamCut)
		}
		return nil
	})
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

// ---- shared HTTP plumbing for the provider clients ----

// errProvDone is returned by an event handler when the provider's final event arrived.
var errProvDone = errors.New("stream done")

// provConn is the HTTP side of one provider client: endpoint, fixed headers and timeouts.
// It is copied per request, so per-request changes never leak into the client.
type provConn struct {
	name   string // prefixes every error: "anthropic", "gemini", "responses"
	http   *http.Client
	url    string
	header http.Header
	// firstByteWait bounds the wait for the response's first body byte, idleWait the gap
	// between later reads. Either expiring ends the stream with an error instead of a hang.
	firstByteWait time.Duration
	idleWait      time.Duration
	// lines switches from SSE to raw lines (Gemini sends error objects without data:).
	lines bool
}

// provDefaultHTTP never decompresses transparently: that breaks SSE flushing (PROVIDERS §2).
var provDefaultHTTP = &http.Client{Transport: func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	return t
}()}

// newProvConn returns a provConn with spec's timeouts (else the defaults) and JSON/SSE
// headers; the caller sets url and authentication.
func newProvConn(name string, spec modelSpec, env clientEnv) provConn {
	c := provConn{name: name, http: env.HTTP, header: http.Header{},
		firstByteWait: cmp.Or(spec.FirstByteTimeout, provDefaultFirstByteWait),
		idleWait:      cmp.Or(spec.IdleTimeout, provDefaultIdleWait)}
	if c.http == nil {
		c.http = provDefaultHTTP
	}
	c.http = withRedirectPolicy(c.http)
	c.header.Set("Content-Type", "application/json")
	c.header.Set("Accept", "text/event-stream")
	// Asking for identity ourselves also stops a caller-supplied client from gzipping.
	c.header.Set("Accept-Encoding", "identity")
	return c
}

// provTimeout is the cause of a request cancelled by a provConn watchdog; firstByte
// says no body byte had arrived.
type provTimeout struct {
	msg       string
	firstByte bool
}

func (e *provTimeout) Error() string { return e.msg }

// run posts body and feeds every SSE event to handle until it returns errProvDone, then
// calls atEOF if the stream simply ended. Events go through a wrapper that remembers
// whether any was emitted, so failures after that are marked MidStream. HTTP and
// stream failures are *modelError; a cancelled ctx returns ctx's error.
func (c provConn) run(ctx context.Context, body []byte, emit func(modelEvent),
	handle func(sseEvent, func(modelEvent)) error, atEOF func() error) error {
	rc, err := c.post(ctx, body)
	if err != nil {
		return err
	}
	defer rc.Close()
	emitted := false
	em := func(e modelEvent) { emitted = true; emit(e) }
	fn := func(ev sseEvent) error { return handle(ev, em) }
	if c.lines {
		err = provReadLines(rc, fn)
	} else {
		err = readSSE(rc, fn)
	}
	if err == nil {
		err = atEOF()
	}
	if err == nil || errors.Is(err, errProvDone) {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", c.name, ctx.Err())
	}
	var me *modelError
	if errors.As(err, &me) {
		e := *me
		e.Msg = c.name + ": " + e.Msg
		e.MidStream = emitted
		return &e
	}
	var to *provTimeout
	stalled := errors.As(err, &to) && to.firstByte
	return &modelError{Msg: c.name + ": reading stream: " + err.Error(), MidStream: emitted, Stalled: stalled}
}

// post sends the request and returns the streaming body, guarded by the timeouts.
func (c provConn) post(ctx context.Context, body []byte) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	started := new(atomic.Bool) // set by provBody at the first byte
	timer := time.AfterFunc(c.firstByteWait, func() {
		if started.Load() {
			cancel(&provTimeout{msg: fmt.Sprintf("provider stream stalled: no data for %v", c.idleWait)})
		} else {
			cancel(&provTimeout{msg: fmt.Sprintf("no data from the provider within %v", c.firstByteWait), firstByte: true})
		}
	})
	fail := func() { timer.Stop(); cancel(nil) }
	req, err := http.NewRequestWithContext(ctx, "POST", c.url, bytes.NewReader(body))
	if err != nil {
		fail()
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	req.Header = c.header.Clone()
	resp, err := c.http.Do(req)
	if err != nil {
		cause := context.Cause(ctx)
		fail()
		var to *provTimeout
		switch {
		case errors.As(cause, &to):
			return nil, &modelError{Msg: fmt.Sprintf("%s: POST %s: %v", c.name, redactURL(c.url), to), Stalled: true}
		case cause != nil:
			return nil, fmt.Errorf("%s: %w", c.name, cause)
		}
		return nil, &modelError{Msg: fmt.Sprintf("%s: POST %s: %v", c.name, redactURL(c.url), err)}
	}
	if resp.StatusCode/100 != 2 {
		defer fail()
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, provMaxErrorBody))
		return nil, &modelError{
			Status:     resp.StatusCode,
			RetryAfter: modelRetryAfter(resp.Header, time.Now()),
			Msg:        fmt.Sprintf("%s: POST %s: %s: %s", c.name, redactURL(c.url), resp.Status, provErrorText(b)),
		}
	}
	return &provBody{rc: resp.Body, ctx: ctx, timer: timer, idle: c.idleWait, cancel: cancel, started: started}, nil
}

// provBody re-arms the idle timer on every read that returns data, and reports a watchdog
// expiry as itself rather than as a bare "context canceled".
type provBody struct {
	rc      io.ReadCloser
	ctx     context.Context
	timer   *time.Timer
	idle    time.Duration
	cancel  context.CancelCauseFunc
	started *atomic.Bool
}

func (b *provBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.started.Store(true)
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF {
		var to *provTimeout
		if errors.As(context.Cause(b.ctx), &to) {
			return n, to
		}
	}
	return n, err
}

func (b *provBody) Close() error {
	b.timer.Stop()
	b.cancel(nil)
	return b.rc.Close()
}

// provReadLines reads Gemini's stream: "data:" lines are events, blank and ":" lines are
// skipped, and any other text is an error object (possibly spread over several lines)
// that is handed to fn as an event named "error" once the stream ends.
func provReadLines(r io.Reader, fn func(sseEvent) error) error {
	var other []string
	err := provScanLines(r, func(line string) error {
		switch {
		case line == "" || strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "data:") && other == nil:
			return fn(sseEvent{Data: strings.TrimPrefix(line[len("data:"):], " ")})
		default:
			other = append(other, line)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if other != nil {
		return fn(sseEvent{Event: "error", Data: strings.Join(other, "\n")})
	}
	return nil
}

// provScanLines calls fn for each line of r without its line ending.
func provScanLines(r io.Reader, fn func(string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxSSELine)
	for sc.Scan() {
		if err := fn(strings.TrimSuffix(sc.Text(), "\r")); err != nil {
			return err
		}
	}
	return sc.Err()
}

// provErrorBody is the error object of every provider: OpenAI {message,type,code},
// Anthropic {type,message}, Gemini {code,message,status}.
type provErrorBody struct {
	Type    string          `json:"type"`
	Message string          `json:"message"`
	Status  string          `json:"status"`
	Code    json.RawMessage `json:"code"`
}

// provErrorText extracts the provider's message from an error body, falling back to the
// (trimmed, truncated) body itself.
func provErrorText(b []byte) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	// Gemini's streaming endpoint wraps its error object in an array.
	var list []json.RawMessage
	if json.Unmarshal(b, &list) == nil && len(list) > 0 {
		b = list[0]
	}
	if json.Unmarshal(b, &v) == nil {
		var e provErrorBody
		if json.Unmarshal(v.Error, &e) == nil && e.Message != "" {
			return strings.TrimSpace(cmp.Or(e.Type, e.Status) + " " + e.Message)
		}
		var s string
		if json.Unmarshal(v.Error, &s) == nil && s != "" {
			return s
		}
		if v.Message != "" {
			return v.Message
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > 1000 {
		s = strings.ToValidUTF8(s[:1000], "") + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// provGatewayHeaders adds what a models gateway needs to route and authenticate a request
// (PROVIDERS.md §2): the real base URL, the model, and DOCKER_TOKEN as a bearer token;
// for our cassette gateway also its secret.
func provGatewayHeaders(h http.Header, env clientEnv, base string, spec modelSpec) {
	getenv := modelGetenv(env)
	if env.GatewayToken != "" {
		h.Set(gatewayTokenHeader, env.GatewayToken)
	}
	h.Set("X-Cagent-Forward", strings.TrimRight(base, "/"))
	h.Set("X-Cagent-Provider", spec.Provider)
	h.Set("X-Cagent-Model", spec.Model)
	h.Set("X-Cagent-Model-Name", spec.Ref)
	h.Set("Authorization", "Bearer "+getenv("DOCKER_TOKEN"))
}

// provKey reads the API key from tokenKey's variable, else from the first non-empty of
// defaults, and fails with the reference's message when there is none.
func provKey(getenv func(string) string, tokenKey string, defaults ...string) (string, error) {
	if tokenKey != "" {
		defaults = []string{tokenKey}
	}
	for _, name := range defaults {
		if v := getenv(name); v != "" {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s environment variable is required", defaults[0])
}

// provMaxTokens is the request's limit, else the model's, else def.
func provMaxTokens(req *modelRequest, spec modelSpec, def int64) int64 {
	switch {
	case req.MaxTokens > 0:
		return req.MaxTokens
	case spec.MaxTokens > 0:
		return spec.MaxTokens
	}
	return def
}

// provBudget normalises thinking_budget to nil, int64 or a lower-case effort string;
// quoted numbers are numbers, as in the reference.
func provBudget(v any) any {
	switch b := v.(type) {
	case int:
		return int64(b)
	case int64:
		return b
	case float64:
		return int64(b)
	case string:
		b = strings.ToLower(strings.TrimSpace(b))
		if n, err := strconv.ParseInt(b, 10, 64); err == nil {
			return n
		}
		return b
	}
	return nil
}

// provBool reads a provider_opts flag; anything but true is false.
func provBool(v any) bool {
	b, _ := v.(bool)
	return b
}

// provSchema returns a tool's parameter schema, or an empty object schema when it has none.
func provSchema(p json.RawMessage) json.RawMessage {
	if len(bytes.TrimSpace(p)) == 0 || string(bytes.TrimSpace(p)) == "null" {
		return json.RawMessage(`{"type":"object","properties":{}}`)
	}
	return p
}

// provDataURL splits a data:<type>;base64,<data> URL.
func provDataURL(u string) (mediaType, data string, ok bool) {
	rest, found := strings.CutPrefix(u, "data:")
	if !found {
		return "", "", false
	}
	meta, data, found := strings.Cut(rest, ",")
	mediaType, isB64 := strings.CutSuffix(meta, ";base64")
	return mediaType, data, found && isB64
}
