package main

// gemini.go is the Gemini API streaming client (PROVIDERS.md §3.4, §4).

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
)

// geminiClient streams from POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse.
// It is safe for concurrent use.
type geminiClient struct {
	ms   modelSpec
	conn provConn
	// newID names tool calls, which Gemini leaves unnamed; a field so tests can fix it.
	newID func() string
}

// newGeminiClient returns a streaming client for the Gemini API. The key comes from
// spec.TokenKey's variable, else GOOGLE_API_KEY, else GEMINI_API_KEY; in gateway mode
// DOCKER_TOKEN is used instead. GOOGLE_GEMINI_BASE_URL overrides the default base URL,
// as it does for Google's SDK.
func newGeminiClient(spec modelSpec, env clientEnv) (modelClient, error) {
	model := strings.TrimPrefix(spec.Model, "models/")
	path := "/v1beta/models/" + url.PathEscape(model) + ":streamGenerateContent"
	conn, err := newProvConn(apiGoogle, spec, env, path, url.Values{"alt": {"sse"}})
	if err != nil {
		return nil, err
	}
	return &geminiClient{ms: spec, conn: conn, newID: geminiCallID}, nil
}

func (c *geminiClient) spec() modelSpec { return c.ms }

// geminiCallID returns "call_" and 26 random lower-case letters and digits.
func geminiCallID() string { return "call_" + strings.ToLower(rand.Text()) }

// geminiPart is one part of a content: text, a thought, data, a call or a response.
type geminiPart struct {
	Text             string                  `json:"text,omitempty"`
	Thought          bool                    `json:"thought,omitempty"`
	ThoughtSignature []byte                  `json:"thoughtSignature,omitempty"` // base64 on the wire
	InlineData       *geminiBlob             `json:"inlineData,omitempty"`
	FileData         *geminiFile             `json:"fileData,omitempty"`
	FunctionCall     *geminiFunctionCall     `json:"functionCall,omitempty"`
	FunctionResponse *geminiFunctionResponse `json:"functionResponse,omitempty"`
}

// geminiBlob is inline base64 data.
type geminiBlob struct {
	MimeType string `json:"mimeType"`
	Data     string `json:"data"`
}

// geminiFile is data referenced by URI.
type geminiFile struct {
	MimeType string `json:"mimeType,omitempty"`
	FileURI  string `json:"fileUri"`
}

// geminiFunctionCall is a call the model made; Gemini gives it no id.
type geminiFunctionCall struct {
	Name string          `json:"name"`
	Args json.RawMessage `json:"args,omitempty"`
}

// geminiFunctionResponse answers a call, matched by function name.
type geminiFunctionResponse struct {
	Name     string         `json:"name"`
	Response map[string]any `json:"response"`
}

// geminiContent is one turn: role user or model, and its parts.
type geminiContent struct {
	Role  string       `json:"role,omitempty"`
	Parts []geminiPart `json:"parts"`
}

// geminiFunctionDecl declares one tool.
type geminiFunctionDecl struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Parameters  any    `json:"parameters,omitempty"`
}

// geminiTool groups the function declarations.
type geminiTool struct {
	FunctionDeclarations []geminiFunctionDecl `json:"functionDeclarations"`
}

// geminiThinkingConfig is generationConfig.thinkingConfig.
type geminiThinkingConfig struct {
	IncludeThoughts bool   `json:"includeThoughts,omitempty"`
	ThinkingBudget  *int64 `json:"thinkingBudget,omitempty"`
	ThinkingLevel   string `json:"thinkingLevel,omitempty"`
}

// geminiGenerationConfig holds the sampling and output options; unset ones are omitted.
type geminiGenerationConfig struct {
	MaxOutputTokens  int64                 `json:"maxOutputTokens,omitempty"`
	Temperature      *float64              `json:"temperature,omitempty"`
	TopP             *float64              `json:"topP,omitempty"`
	FrequencyPenalty *float64              `json:"frequencyPenalty,omitempty"`
	PresencePenalty  *float64              `json:"presencePenalty,omitempty"`
	ThinkingConfig   *geminiThinkingConfig `json:"thinkingConfig,omitempty"`
	ResponseMIMEType string                `json:"responseMimeType,omitempty"`
	// ResponseJSONSchema is the agent's structured_output schema; a pointer keeps the
	// struct comparable.
	ResponseJSONSchema *json.RawMessage `json:"responseJsonSchema,omitempty"`
}

// geminiRequest is a GenerateContentRequest.
type geminiRequest struct {
	Contents          []geminiContent         `json:"contents"`
	SystemInstruction *geminiContent          `json:"systemInstruction,omitempty"`
	Tools             []geminiTool            `json:"tools,omitempty"`
	ToolConfig        any                     `json:"toolConfig,omitempty"`
	GenerationConfig  *geminiGenerationConfig `json:"generationConfig,omitempty"`
}

// request builds the wire body. Unlike the reference, which sends the system prompt as
// user contents, system messages go in systemInstruction where the API expects them.
func (c *geminiClient) request(req *modelRequest) *geminiRequest {
	gr := &geminiRequest{Contents: []geminiContent{}}
	var system []geminiPart
	var msgs []chatMessage
	for _, m := range req.Messages {
		if m.Role == "system" {
			if m.Content != "" {
				system = append(system, geminiPart{Text: m.Content})
			}
			continue
		}
		msgs = append(msgs, m)
	}
	if system != nil {
		gr.SystemInstruction = &geminiContent{Parts: system}
	}
	gr.Contents = append(gr.Contents, geminiContents(msgs)...)
	if len(req.Tools) > 0 && !req.NoTools {
		var decls []geminiFunctionDecl
		for _, t := range req.Tools {
			var schema any
			if json.Unmarshal(provSchema(t.Parameters), &schema) != nil {
				schema = map[string]any{"type": "object"}
			}
			decls = append(decls, geminiFunctionDecl{Name: t.Name, Description: t.Description, Parameters: geminiSchema(schema)})
		}
		gr.Tools = []geminiTool{{FunctionDeclarations: decls}}
		gr.ToolConfig = map[string]any{"functionCallingConfig": map[string]string{"mode": "AUTO"}}
	}
	gc := &geminiGenerationConfig{
		Temperature: c.ms.Temperature, TopP: c.ms.TopP,
		FrequencyPenalty: c.ms.FrequencyPenalty, PresencePenalty: c.ms.PresencePenalty,
		ThinkingConfig: geminiThinking(c.ms.Model, c.ms.ThinkingBudget, req.Thinking),
	}
	gc.MaxOutputTokens = provMaxTokens(req, c.ms, 0)
	if req.Output != nil {
		schema := provSchema(req.Output.Schema)
		gc.ResponseMIMEType, gc.ResponseJSONSchema = "application/json", &schema
	}
	if *gc != (geminiGenerationConfig{}) {
		gr.GenerationConfig = gc
	}
	return gr
}

// geminiThinking picks thinkingConfig (PROVIDERS.md §3.4). Gemini 3 takes a level and can
// not turn thinking off; 2.5 takes a token budget (-1 = dynamic) and 0 turns it off, except
// on 2.5 Pro, which rejects 0. Older models get no thinkingConfig at all.
func geminiThinking(model string, budget any, on bool) *geminiThinkingConfig {
	v3 := strings.Contains(model, "gemini-3")
	v25 := strings.Contains(model, "gemini-2.5")
	b := provBudget(budget)
	if b == "none" || b == int64(0) {
		on = false
	}
	n := func(v int64) *int64 { return &v }
	switch {
	case !on && v3:
		return &geminiThinkingConfig{ThinkingLevel: "LOW"}
	case !on && v25 && !strings.Contains(model, "pro"):
		return &geminiThinkingConfig{ThinkingBudget: n(0)}
	case !on || !(v3 || v25):
		return nil
	}
	tc := &geminiThinkingConfig{IncludeThoughts: true}
	switch b := b.(type) {
	case int64:
		tc.ThinkingBudget = n(b)
	case string:
		if v3 {
			tc.ThinkingLevel = strings.ToUpper(b)
		} else {
			tc.ThinkingBudget = n(map[string]int64{"minimal": 512, "low": 1024, "medium": 8192, "high": 24576}[b])
		}
	default:
		switch {
		case v3 && strings.Contains(model, "flash"):
			tc.ThinkingLevel = "MEDIUM"
		case v3:
			tc.ThinkingLevel = "HIGH"
		default:
			tc.ThinkingBudget = n(-1)
		}
	}
	return tc
}

// geminiContents converts the conversation. Tool results are answered by function name
// (the reference sends the call id there, which only works because the API is lenient),
// and a run of results becomes one user content, as the API documents for parallel calls.
func geminiContents(msgs []chatMessage) []geminiContent {
	var out []geminiContent
	names := map[string]string{} // tool-call id → function name
	for i := 0; i < len(msgs); i++ {
		m := msgs[i]
		switch m.Role {
		case "assistant":
			var parts []geminiPart
			if m.Content != "" {
				parts = append(parts, geminiPart{Text: m.Content})
			}
			for _, tc := range m.ToolCalls {
				names[tc.ID] = tc.Function.Name
				args := json.RawMessage(tc.Function.Arguments)
				var obj map[string]any
				if json.Unmarshal(args, &obj) != nil || obj == nil {
					args = json.RawMessage(`{}`)
				}
				parts = append(parts, geminiPart{FunctionCall: &geminiFunctionCall{Name: tc.Function.Name, Args: args}})
			}
			if len(m.ThoughtSignature) > 0 {
				// The signature goes back on the first function call, or on the text when
				// there is none, which is where the API puts it.
				j := 0
				if len(m.ToolCalls) > 0 {
					j = len(parts) - len(m.ToolCalls)
				}
				if len(parts) == 0 {
					parts = append(parts, geminiPart{})
				}
				parts[j].ThoughtSignature = m.ThoughtSignature
			}
			if len(parts) > 0 {
				out = append(out, geminiContent{Role: "model", Parts: parts})
			}
		case "tool":
			var parts []geminiPart
			for ; i < len(msgs) && msgs[i].Role == "tool"; i++ {
				r := msgs[i]
				key := "result"
				if r.IsError {
					key = "error"
				}
				parts = append(parts, geminiPart{FunctionResponse: &geminiFunctionResponse{
					Name: cmp.Or(names[r.ToolCallID], r.ToolCallID), Response: map[string]any{key: r.Content}}})
			}
			i--
			out = append(out, geminiContent{Role: "user", Parts: parts})
		default:
			var parts []geminiPart
			if m.Content != "" {
				parts = append(parts, geminiPart{Text: m.Content})
			}
			for _, p := range m.MultiContent {
				switch {
				case p.Type == "text" && p.Text != "":
					parts = append(parts, geminiPart{Text: p.Text})
				case p.Type == "image_url" && p.ImageURL != nil:
					if mt, data, ok := provDataURL(p.ImageURL.URL); ok {
						parts = append(parts, geminiPart{InlineData: &geminiBlob{MimeType: mt, Data: data}})
					} else {
						parts = append(parts, geminiPart{FileData: &geminiFile{FileURI: p.ImageURL.URL}})
					}
				}
			}
			if len(parts) > 0 {
				out = append(out, geminiContent{Role: "user", Parts: parts})
			}
		}
	}
	return out
}

// geminiSchemaKeys are the JSON-schema keys Gemini's Schema object accepts; the API rejects
// others (additionalProperties, $schema, …), so they are dropped, as Google's SDK does.
var geminiSchemaKeys = map[string]bool{
	"type": true, "format": true, "title": true, "description": true, "nullable": true,
	"enum": true, "items": true, "properties": true, "required": true, "anyOf": true,
	"minItems": true, "maxItems": true, "minProperties": true, "maxProperties": true,
	"minLength": true, "maxLength": true, "pattern": true, "minimum": true, "maximum": true,
	"default": true, "example": true, "propertyOrdering": true,
}

// geminiSchema rewrites a JSON schema for Gemini: unknown keys dropped and type arrays
// such as ["null","array"] collapsed to the first non-null type.
func geminiSchema(v any) any {
	obj, ok := v.(map[string]any)
	if !ok {
		return v
	}
	out := map[string]any{}
	for k, val := range obj {
		if !geminiSchemaKeys[k] {
			continue
		}
		switch k {
		case "type":
			if types, ok := val.([]any); ok {
				val = "string"
				for _, t := range types {
					if t != "null" {
						val = t
						break
					}
				}
			}
		case "items":
			val = geminiSchema(val)
		case "properties":
			if props, ok := val.(map[string]any); ok {
				np := map[string]any{}
				for name, p := range props {
					np[name] = geminiSchema(p)
				}
				val = np
			}
		case "anyOf":
			if list, ok := val.([]any); ok {
				nl := make([]any, len(list))
				for i, s := range list {
					nl[i] = geminiSchema(s)
				}
				val = nl
			}
		}
		out[k] = val
	}
	return out
}

// geminiChunk is one GenerateContentResponse of the stream.
type geminiChunk struct {
	Candidates []struct {
		Content struct {
			Parts []struct {
				Text             string `json:"text"`
				Thought          bool   `json:"thought"`
				ThoughtSignature []byte `json:"thoughtSignature"`
				FunctionCall     *struct {
					Name string          `json:"name"`
					Args json.RawMessage `json:"args"`
				} `json:"functionCall"`
			} `json:"parts"`
		} `json:"content"`
		FinishReason  string `json:"finishReason"`
		FinishMessage string `json:"finishMessage"`
	} `json:"candidates"`
	PromptFeedback *struct {
		BlockReason string `json:"blockReason"`
	} `json:"promptFeedback"`
	UsageMetadata *struct {
		PromptTokenCount        int64 `json:"promptTokenCount"`
		CandidatesTokenCount    int64 `json:"candidatesTokenCount"`
		CachedContentTokenCount int64 `json:"cachedContentTokenCount"`
		ThoughtsTokenCount      int64 `json:"thoughtsTokenCount"`
	} `json:"usageMetadata"`
	ModelVersion string         `json:"modelVersion"`
	Error        *provErrorBody `json:"error"`
}

// stream implements modelClient. A thought signature rides on the event of the part that
// carried it (or on an empty evReasoning); consumers keep the last one seen.
func (c *geminiClient) stream(ctx context.Context, req *modelRequest, emit func(modelEvent)) error {
	body, err := marshalRequest(req, c.request)
	if err != nil {
		return fmt.Errorf("gemini: encoding request: %w", err)
	}
	var (
		model   string
		usage   *messageUsage // usageMetadata is cumulative: the last one wins
		sawCall bool
		finish  string
	)
	return c.conn.run(ctx, body, emit, func(ev sseEvent, emit func(modelEvent)) error {
		var ch geminiChunk
		if err := json.Unmarshal([]byte(ev.Data), &ch); err != nil {
			if ev.Event == "error" {
				return &modelError{Msg: "unexpected stream text: " + modelErrorMessage([]byte(ev.Data))}
			}
			return fmt.Errorf("decoding chunk: %w", err)
		}
		if ch.Error != nil {
			return geminiStreamError(ch.Error)
		}
		model = cmp.Or(ch.ModelVersion, model)
		if u := ch.UsageMetadata; u != nil {
			// Thoughts are billed as output, so output counts them, as OpenAI's does.
			usage = &messageUsage{
				InputTokens:       u.PromptTokenCount - u.CachedContentTokenCount,
				CachedInputTokens: u.CachedContentTokenCount,
				OutputTokens:      u.CandidatesTokenCount + u.ThoughtsTokenCount,
				ReasoningTokens:   u.ThoughtsTokenCount,
			}
		}
		if ch.PromptFeedback != nil && ch.PromptFeedback.BlockReason != "" && len(ch.Candidates) == 0 {
			return &modelError{Status: 400, Msg: "prompt blocked: " + ch.PromptFeedback.BlockReason}
		}
		if len(ch.Candidates) == 0 {
			return nil
		}
		cand := ch.Candidates[0]
		for _, p := range cand.Content.Parts {
			switch {
			case p.FunctionCall != nil:
				id := c.newID()
				sawCall = true
				args := string(p.FunctionCall.Args)
				if args == "" || args == "null" {
					args = "{}"
				}
				emit(modelEvent{Kind: evToolCallStart, ToolID: id, ToolName: p.FunctionCall.Name, ThoughtSignature: p.ThoughtSignature})
				emit(modelEvent{Kind: evToolCallArgs, ToolID: id, Text: args})
			case p.Thought || (p.Text == "" && len(p.ThoughtSignature) > 0):
				emit(modelEvent{Kind: evReasoning, Text: p.Text, ThoughtSignature: p.ThoughtSignature})
			case p.Text != "":
				emit(modelEvent{Kind: evText, Text: p.Text, ThoughtSignature: p.ThoughtSignature})
			}
		}
		if cand.FinishReason == "" {
			return nil
		}
		switch cand.FinishReason {
		case "STOP":
			finish = "stop"
		case "MAX_TOKENS":
			finish = "length"
		case "MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS":
			return &modelError{Msg: "finish reason " + cand.FinishReason + ": " + cand.FinishMessage}
		default:
			// SAFETY, RECITATION, BLOCKLIST, PROHIBITED_CONTENT, SPII, OTHER, …: the
			// reference ignores them; they mean the answer was cut off by a filter.
			finish = "content_filter"
		}
		return nil
	}, func(bool) error {
		if finish == "" {
			return fmt.Errorf("no finishReason: %w", errStreamCut)
		}
		if usage != nil {
			emit(modelEvent{Kind: evUsage, Usage: usage, Model: model})
		}
		if sawCall && finish == "stop" {
			finish = "tool_calls"
		}
		emit(modelEvent{Kind: evStop, StopReason: finish, Model: model})
		return nil
	})
}

// geminiStreamError turns an in-stream error object into a modelError with its HTTP code.
func geminiStreamError(e *provErrorBody) error {
	var code int
	json.Unmarshal(e.Code, &code)
	return &modelError{Status: code, Msg: fmt.Sprintf("stream error %d %s: %s", code, e.Status, e.Message)}
}
