package main

// responses.go is the OpenAI Responses API streaming client (PROVIDERS.md §3.2, §4).

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
)

// responsesClient streams from POST {base}/responses. It is safe for concurrent use.
type responsesClient struct {
	ms   modelSpec
	conn provConn
}

// newResponsesClient returns a streaming client for the Responses API. The key comes from
// spec.TokenKey's variable; provider openai falls back to OPENAI_API_KEY, and a custom
// provider without token_key sends no Authorization header at all (the reference sends an
// empty bearer token). In gateway mode DOCKER_TOKEN is used instead.
func newResponsesClient(spec modelSpec, env clientEnv) (modelClient, error) {
	conn, err := newProvConn(apiOpenAIResponses, spec, env, "/responses", nil)
	if err != nil {
		return nil, err
	}
	return &responsesClient{ms: spec, conn: conn}, nil
}

func (c *responsesClient) spec() modelSpec { return c.ms }

// responsesItem is one input item: a message (Role set) or a function call or its output.
type responsesItem struct {
	Type      string  `json:"type,omitempty"`
	Role      string  `json:"role,omitempty"`
	Content   any     `json:"content,omitempty"` // string or a list of input parts
	CallID    string  `json:"call_id,omitempty"`
	Name      string  `json:"name,omitempty"`
	Arguments string  `json:"arguments,omitempty"`
	Output    *string `json:"output,omitempty"` // present, even when empty, on outputs
}

// responsesPart is one input_text or input_image part of a user message.
type responsesPart struct {
	Type     string `json:"type"`
	Text     string `json:"text,omitempty"`
	ImageURL string `json:"image_url,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// responsesTool is a function tool in the Responses API's flat format.
type responsesTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      bool            `json:"strict"`
}

// responsesReasoning asks reasoning models for an effort and a summary.
type responsesReasoning struct {
	Effort  string `json:"effort,omitempty"`
	Summary string `json:"summary,omitempty"`
}

// responsesRequest is the body of POST /responses.
type responsesRequest struct {
	Model             string              `json:"model"`
	Instructions      string              `json:"instructions,omitempty"`
	Input             []responsesItem     `json:"input"`
	Stream            bool                `json:"stream"`
	MaxOutputTokens   int64               `json:"max_output_tokens,omitempty"`
	Temperature       *float64            `json:"temperature,omitempty"`
	TopP              *float64            `json:"top_p,omitempty"`
	Tools             []responsesTool     `json:"tools,omitempty"`
	ParallelToolCalls *bool               `json:"parallel_tool_calls,omitempty"`
	Reasoning         *responsesReasoning `json:"reasoning,omitempty"`
	Text              *responsesText      `json:"text,omitempty"`
}

// responsesText holds the agent's structured_output as text.format.
type responsesText struct {
	Format responsesFormat `json:"format"`
}

// responsesFormat is the chat API's json_schema flattened beside its type.
type responsesFormat struct {
	Type string `json:"type"` // json_schema
	openAIJSONSchema
}

// responsesReasoningModel reports whether model belongs to the families that take
// reasoning parameters (o1, o3, o4, gpt-5, codex).
func responsesReasoningModel(model string) bool {
	for _, p := range []string{"o1", "o3", "o4", "gpt-5", "codex"} {
		if strings.HasPrefix(model, p) {
			return true
		}
	}
	return strings.Contains(model, "-codex")
}

// request builds the wire body. System messages become instructions.
func (c *responsesClient) request(req *modelRequest) *responsesRequest {
	rr := &responsesRequest{Model: c.ms.Model, Stream: true, Temperature: c.ms.Temperature, TopP: c.ms.TopP}
	var system []string
	for _, m := range req.Messages {
		if m.Role == "system" {
			if s := strings.TrimSpace(m.Content); s != "" {
				system = append(system, s)
			}
			continue
		}
		rr.Input = append(rr.Input, responsesInput(m)...)
	}
	rr.Instructions = strings.Join(system, "\n\n")
	reasoning := responsesReasoningModel(c.ms.Model)
	rr.MaxOutputTokens = provMaxTokens(req, c.ms, 0)
	if reasoning && rr.MaxOutputTokens > 0 && rr.MaxOutputTokens < 200 {
		// Reasoning spends output tokens before the answer; a 20-token title budget
		// would end in an empty, incomplete response.
		rr.MaxOutputTokens = 200
	}
	if !req.NoTools {
		for _, t := range req.Tools {
			// strict is off: strict mode needs every property required, which changes
			// what optional parameters mean, and the API turns it on when it is absent.
			rr.Tools = append(rr.Tools, responsesTool{Type: "function", Name: t.Name,
				Description: t.Description, Parameters: provSchema(t.Parameters)})
		}
		if len(rr.Tools) > 0 {
			rr.ParallelToolCalls = c.ms.ParallelToolCalls
		}
	}
	if req.Thinking && (reasoning || c.ms.ThinkingBudget != nil) {
		effort := "medium"
		switch b := provBudget(c.ms.ThinkingBudget).(type) {
		case string:
			effort = b
		case int64:
			switch {
			case b <= 0:
				effort = "none"
			case b <= 2048:
				effort = "low"
			case b > 16384:
				effort = "high"
			}
		}
		if effort != "none" {
			rr.Reasoning = &responsesReasoning{Effort: effort, Summary: "detailed"}
		}
	}
	if req.Output != nil {
		rr.Text = &responsesText{Format: responsesFormat{Type: "json_schema", openAIJSONSchema: newOpenAIJSONSchema(req.Output)}}
	}
	return rr
}

// responsesInput converts one message into input items (PROVIDERS.md §3.2, §4). Unlike
// the reference, assistant text next to tool calls is kept as its own message.
func responsesInput(m chatMessage) []responsesItem {
	switch m.Role {
	case "tool":
		out := m.Content
		return []responsesItem{{Type: "function_call_output", CallID: m.ToolCallID, Output: &out}}
	case "assistant":
		var items []responsesItem
		if m.Content != "" {
			items = append(items, responsesItem{Role: "assistant", Content: m.Content})
		}
		for _, tc := range m.ToolCalls {
			items = append(items, responsesItem{Type: "function_call", CallID: tc.ID, Name: tc.Function.Name,
				Arguments: cmp.Or(tc.Function.Arguments, "{}")})
		}
		return items
	}
	if len(m.MultiContent) == 0 {
		if m.Content == "" {
			return nil
		}
		return []responsesItem{{Role: "user", Content: m.Content}}
	}
	var parts []responsesPart
	if m.Content != "" {
		parts = append(parts, responsesPart{Type: "input_text", Text: m.Content})
	}
	for _, p := range m.MultiContent {
		switch {
		case p.Type == "text" && p.Text != "":
			parts = append(parts, responsesPart{Type: "input_text", Text: p.Text})
		case p.Type == "image_url" && p.ImageURL != nil:
			parts = append(parts, responsesPart{Type: "input_image", ImageURL: p.ImageURL.URL, Detail: cmp.Or(p.ImageURL.Detail, "auto")})
		}
	}
	if parts == nil {
		return nil
	}
	return []responsesItem{{Role: "user", Content: parts}}
}

// responsesEvent is the union of the stream's event payloads that matter here.
type responsesEvent struct {
	Type   string `json:"type"`
	ItemID string `json:"item_id"`
	Delta  string `json:"delta"`
	Item   struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		Content   []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"content"`
	} `json:"item"`
	Response struct {
		Model  string `json:"model"`
		Status string `json:"status"`
		Output []struct {
			Type string `json:"type"`
		} `json:"output"`
		Usage *struct {
			InputTokens        int64 `json:"input_tokens"`
			InputTokensDetails struct {
				CachedTokens int64 `json:"cached_tokens"`
			} `json:"input_tokens_details"`
			OutputTokens        int64 `json:"output_tokens"`
			OutputTokensDetails struct {
				ReasoningTokens int64 `json:"reasoning_tokens"`
			} `json:"output_tokens_details"`
			TotalTokens int64 `json:"total_tokens"`
		} `json:"usage"`
		Error             *provErrorBody `json:"error"`
		IncompleteDetails *struct {
			Reason string `json:"reason"`
		} `json:"incomplete_details"`
	} `json:"response"`
	// The top-level `error` event carries these directly.
	Code    json.RawMessage `json:"code"`
	Message string          `json:"message"`
}

// stream implements modelClient. Unlike the reference, response.failed, a mid-stream
// `error` event and a stream that ends before response.completed are errors.
func (c *responsesClient) stream(ctx context.Context, req *modelRequest, emit func(modelEvent)) error {
	body, err := marshalRequest(req, c.request)
	if err != nil {
		return fmt.Errorf("responses: encoding request: %w", err)
	}
	var (
		model    string
		calls    = map[string]string{} // function_call item id → call_id
		textSeen = map[string]bool{}   // message items that streamed text deltas
	)
	return c.conn.run(ctx, body, emit, func(ev sseEvent, emit func(modelEvent)) error {
		var e responsesEvent
		if err := json.Unmarshal([]byte(ev.Data), &e); err != nil {
			return fmt.Errorf("decoding %s event: %w", cmp.Or(ev.Event, "stream"), err)
		}
		if e.Type == "" {
			e.Type = ev.Event
		}
		model = cmp.Or(e.Response.Model, model)
		switch e.Type {
		case "response.output_text.delta", "response.refusal.delta":
			textSeen[e.ItemID] = true
			emit(modelEvent{Kind: evText, Text: e.Delta})
		case "response.reasoning_summary_text.delta", "response.reasoning_text.delta":
			emit(modelEvent{Kind: evReasoning, Text: e.Delta})
		case "response.output_item.added":
			if e.Item.Type == "function_call" {
				id := cmp.Or(e.Item.CallID, e.Item.ID)
				calls[e.Item.ID] = id
				emit(modelEvent{Kind: evToolCallStart, ToolID: id, ToolName: e.Item.Name})
				if e.Item.Arguments != "" {
					emit(modelEvent{Kind: evToolCallArgs, ToolID: id, Text: e.Item.Arguments})
				}
			}
		case "response.function_call_arguments.delta":
			id, ok := calls[e.ItemID]
			if !ok {
				return fmt.Errorf("arguments for unknown function call item %q", e.ItemID)
			}
			if e.Delta != "" {
				emit(modelEvent{Kind: evToolCallArgs, ToolID: id, Text: e.Delta})
			}
		case "response.output_item.done":
			// Some servers send a message's text only in its final item.
			if e.Item.Type == "message" && !textSeen[e.Item.ID] {
				for _, p := range e.Item.Content {
					if p.Type == "output_text" && p.Text != "" {
						emit(modelEvent{Kind: evText, Text: p.Text})
					}
				}
			}
		case "response.completed", "response.done", "response.incomplete":
			r := e.Response
			if u := r.Usage; u != nil && u.TotalTokens > 0 {
				emit(modelEvent{Kind: evUsage, Model: model, Usage: &messageUsage{
					InputTokens:       u.InputTokens - u.InputTokensDetails.CachedTokens,
					CachedInputTokens: u.InputTokensDetails.CachedTokens,
					OutputTokens:      u.OutputTokens,
					ReasoningTokens:   u.OutputTokensDetails.ReasoningTokens,
				}})
			}
			stop := "stop"
			for _, o := range r.Output {
				if o.Type == "function_call" {
					stop = "tool_calls"
				}
			}
			if d := r.IncompleteDetails; d != nil && (e.Type == "response.incomplete" || r.Status == "incomplete") {
				stop = "length"
				if d.Reason == "content_filter" {
					stop = "content_filter"
				}
			}
			emit(modelEvent{Kind: evStop, StopReason: stop, Model: model})
			return errProvDone
		case "response.failed":
			if e.Response.Error != nil {
				return responsesError(e.Response.Error.Code, e.Response.Error.Message)
			}
			return &modelError{Msg: "response failed"}
		case "error":
			return responsesError(e.Code, e.Message)
		}
		return nil
	}, func(done bool) error {
		if !done {
			return fmt.Errorf("no response.completed: %w", errStreamCut)
		}
		return nil
	})
}

// responsesError builds a modelError from an error event's code and message, with an HTTP
// status for the codes a retry layer must tell apart.
func responsesError(code json.RawMessage, msg string) error {
	var s string
	if json.Unmarshal(code, &s) != nil {
		s = strings.Trim(string(code), `"`)
	}
	status := map[string]int{
		"rate_limit_exceeded": 429, "insufficient_quota": 429, "server_error": 500,
		"server_is_overloaded": 503, "invalid_prompt": 400, "context_length_exceeded": 400,
	}[s]
	return &modelError{Status: status, Msg: "stream error: " + cmp.Or(s, "error") + ": " + msg}
}
