package main

// models.go: provider selection, the shared provider helpers (base URL, key, gateway,
// HTTP errors, stream timeouts), the OpenAI-compatible chat client, and the model chain
// with retries and fallbacks (PROVIDERS.md §2, §3.1, §3.5, §5).
//
// Every provider client follows the same steps with the shared helpers, so that
// gateway mode, errors and timeouts behave alike across API families:
//
//	base, err := modelBaseURL(spec, env)     // configured, env override, or default
//	key, keyErr := modelAPIKey(spec, env)    // report keyErr from stream, not a *modelError
//	wctx, wd := newModelWatchdog(ctx, firstByte, idle)     // spec's timeouts or the defaults
//	defer wd.stop()
//	req, err := modelNewRequest(wctx, env, base, gatewayPrefix, path, query, body) // then set auth
//	resp, err := modelDo(wctx, env, req)     // non-2xx → *modelError via modelHTTPError
//	if err != nil { return wd.err(err, false) }
//	err = readSSE(wd.reader(resp.Body), …)   // read failures: modelStreamError(err)
//	return wd.err(err, emitted)

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// API families of the model layer, and the path prefix of an OpenAI-compatible gateway.
const (
	apiOpenAIChat            = "openai_chatcompletions"
	apiOpenAIResponses       = "openai_responses"
	apiAnthropic             = "anthropic"
	apiGoogle                = "google"
	apiBedrock               = "amazon-bedrock"
	modelGatewayOpenAIPrefix = "/v1"
)

// modelProvider is one row of the provider table: which API family a provider speaks,
// its default endpoint and the environment variable holding its key ("" = no auth).
type modelProvider struct {
	API     string
	BaseURL string
	KeyEnv  string
	// BaseEnv, when set and non-empty in the environment, replaces BaseURL (the SDKs
	// honour OPENAI_BASE_URL and ANTHROPIC_BASE_URL).
	BaseEnv string
}

// modelProviders is PROVIDERS.md §2 / CONFIG.md §5.3. azure has no default base URL.
var modelProviders = map[string]modelProvider{
	"openai":         {API: apiOpenAIChat, BaseURL: "https://api.openai.com/v1", KeyEnv: "OPENAI_API_KEY", BaseEnv: "OPENAI_BASE_URL"},
	"anthropic":      {API: apiAnthropic, BaseURL: "https://api.anthropic.com", KeyEnv: "ANTHROPIC_API_KEY", BaseEnv: "ANTHROPIC_BASE_URL"},
	"google":         {API: apiGoogle, BaseURL: "https://generativelanguage.googleapis.com", KeyEnv: "GOOGLE_API_KEY"},
	"amazon-bedrock": {API: apiBedrock, KeyEnv: "AWS_BEARER_TOKEN_BEDROCK"},
	"dmr":            {API: apiOpenAIChat, BaseURL: "http://127.0.0.1:12434/engines/v1"},
	"mistral":        {API: apiOpenAIChat, BaseURL: "https://api.mistral.ai/v1", KeyEnv: "MISTRAL_API_KEY"},
	"xai":            {API: apiOpenAIChat, BaseURL: "https://api.x.ai/v1", KeyEnv: "XAI_API_KEY"},
	"nebius":         {API: apiOpenAIChat, BaseURL: "https://api.studio.nebius.com/v1", KeyEnv: "NEBIUS_API_KEY"},
	"minimax":        {API: apiOpenAIChat, BaseURL: "https://api.minimax.io/v1", KeyEnv: "MINIMAX_API_KEY"},
	"requesty":       {API: apiOpenAIChat, BaseURL: "https://router.requesty.ai/v1", KeyEnv: "REQUESTY_API_KEY"},
	"azure":          {API: apiOpenAIChat, KeyEnv: "AZURE_API_KEY"},
	"ollama":         {API: apiOpenAIChat, BaseURL: "http://localhost:11434/v1"},
}

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
	p, ok := modelProviders[spec.Provider]
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

// modelGetenv returns env.Getenv, or a function that finds nothing.
func modelGetenv(env clientEnv) func(string) string {
	if env.Getenv != nil {
		return env.Getenv
	}
	return func(string) string { return "" }
}

// modelBaseURL is where spec's API lives, without a trailing slash: the configured
// base_url, else the provider's environment override (OPENAI_BASE_URL,
// ANTHROPIC_BASE_URL, MODEL_RUNNER_HOST for dmr), else the provider's default.
func modelBaseURL(spec modelSpec, env clientEnv) (string, error) {
	getenv := modelGetenv(env)
	base := spec.BaseURL
	p := modelProviders[spec.Provider]
	if base == "" && p.BaseEnv != "" {
		base = getenv(p.BaseEnv)
	}
	if base == "" && spec.Provider == "dmr" {
		if h := getenv("MODEL_RUNNER_HOST"); h != "" {
			base = strings.TrimRight(h, "/") + "/engines/v1"
		}
	}
	if base == "" {
		base = p.BaseURL
	}
	if base == "" {
		return "", fmt.Errorf("model %s: base_url is required", modelName(spec))
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("model %s: base_url %q is not an http(s) URL", modelName(spec), redactURL(base))
	}
	return strings.TrimRight(base, "/"), nil
}

// modelAPIKey returns the key to send for spec, "" when the provider needs none. A
// token_key, or the provider's key variable, that is unset is an error naming the
// variable. In gateway mode the gateway holds the real keys, so none is needed here and
// DOCKER_TOKEN (if set) is sent instead, as the reference does.
func modelAPIKey(spec modelSpec, env clientEnv) (string, error) {
	getenv := modelGetenv(env)
	if env.Gateway != "" {
		return getenv("DOCKER_TOKEN"), nil
	}
	name := spec.TokenKey
	if name == "" {
		name = modelProviders[spec.Provider].KeyEnv
		if spec.Provider == "google" && getenv(name) == "" {
			name = "GEMINI_API_KEY"
		}
	}
	if name == "" {
		// dmr, ollama and custom providers without token_key: no auth at all. The
		// reference sends an empty Bearer (custom) or leaks OPENAI_API_KEY (ollama).
		return "", nil
	}
	if k := getenv(name); k != "" {
		return k, nil
	}
	return "", fmt.Errorf("%s environment variable is required", name)
}

// modelNewRequest builds a JSON POST to base+path, or, in gateway mode, to
// Gateway+gatewayPrefix+path with X-Cagent-Forward naming the real base URL
// (PROVIDERS.md §2: OpenAI-type clients use prefix "/v1", Anthropic and Gemini "").
// query is appended as is. Auth headers are the caller's.
func modelNewRequest(ctx context.Context, env clientEnv, base, gatewayPrefix, path string, query url.Values, body []byte) (*http.Request, error) {
	target := base + path
	if env.Gateway != "" {
		target = strings.TrimRight(env.Gateway, "/") + gatewayPrefix + path
	}
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, "POST", target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	// Asking for identity also stops net/http's transparent gzip, which would buffer
	// the stream (the reference turns compression off for the same reason).
	req.Header.Set("Accept-Encoding", "identity")
	if env.Gateway != "" {
		req.Header.Set("X-Cagent-Forward", base)
		if env.GatewayToken != "" {
			req.Header.Set(gatewayTokenHeader, env.GatewayToken)
		}
	}
	return req, nil
}

// modelHTTPClient is env.HTTP or a default client. Streams have no client timeout; the
// watchdog and the context bound them.
func modelHTTPClient(env clientEnv) *http.Client {
	return withRedirectPolicy(env.HTTP)
}

// modelDo sends req. A transport failure becomes a *modelError with Status 0, a non-2xx
// answer a *modelError from modelHTTPError; a cancelled ctx is returned as ctx's error.
func modelDo(ctx context.Context, env clientEnv, req *http.Request) (*http.Response, error) {
	resp, err := modelHTTPClient(env).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &modelError{Msg: err.Error()}
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, modelHTTPError(resp)
	}
	return resp, nil
}

// modelHTTPError turns a failed provider response into a *modelError:
// `POST "<url>": 401 Unauthorized: <provider message>`, with Retry-After-Ms or
// Retry-After (seconds or HTTP date) parsed. It reads at most maxModelErrorBody bytes.
func modelHTTPError(resp *http.Response) *modelError {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxModelErrorBody))
	msg := modelErrorMessage(b)
	method, u := "POST", ""
	if resp.Request != nil {
		method, u = resp.Request.Method, resp.Request.URL.Redacted()
	}
	text := fmt.Sprintf("%s %q: %s", method, u, resp.Status)
	if msg != "" {
		text += ": " + msg
	}
	return &modelError{Status: resp.StatusCode, RetryAfter: modelRetryAfter(resp.Header, time.Now()), Msg: text}
}

// modelErrorMessage extracts the human message from the error body shapes of OpenAI,
// Anthropic, Gemini and most gateways; otherwise it returns the trimmed body.
func modelErrorMessage(b []byte) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(b, &v) == nil {
		var inner struct {
			Message string `json:"message"`
			Type    string `json:"type"`
			Code    any    `json:"code"`
			Status  string `json:"status"`
		}
		var s string
		switch {
		case json.Unmarshal(v.Error, &inner) == nil && inner.Message != "":
			kind := inner.Type
			if kind == "" {
				kind = inner.Status
			}
			if kind != "" {
				return inner.Message + " (" + kind + ")"
			}
			return inner.Message
		case json.Unmarshal(v.Error, &s) == nil && s != "":
			return s
		case v.Message != "":
			return v.Message
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > maxModelErrorMsg {
		s = s[:maxModelErrorMsg] + "…"
	}
	return s
}

// modelRetryAfter reads Retry-After-Ms, then Retry-After (delta seconds or HTTP date);
// 0 when absent or unparsable.
func modelRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := h.Get("Retry-After-Ms"); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s > 0 {
			return time.Duration(s * float64(time.Second))
		}
		return 0
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// modelWatchdog cancels a streaming request that sends nothing for too long: first
// before the first body byte, then between reads. Providers hold connections open
// for minutes when overloaded; without it a turn would hang until the user gives up.
type modelWatchdog struct {
	timer      *time.Timer
	cancel     context.CancelCauseFunc
	idle       time.Duration
	started    atomic.Bool
	fired      atomic.Pointer[error]
	firstByte  time.Duration
	parentDone func() error
}

// newModelWatchdog returns a context for the request that the watchdog cancels, and
// the watchdog. Call stop when the stream ends; wrap the body with reader.
func newModelWatchdog(ctx context.Context, firstByte, idle time.Duration) (context.Context, *modelWatchdog) {
	wctx, cancel := context.WithCancelCause(ctx)
	w := &modelWatchdog{cancel: cancel, idle: idle, firstByte: firstByte, parentDone: ctx.Err}
	w.timer = time.AfterFunc(firstByte, w.fire)
	return wctx, w
}

func (w *modelWatchdog) fire() {
	var err error
	if w.started.Load() {
		err = fmt.Errorf("provider stream stalled: no data for %v", w.idle)
	} else {
		err = fmt.Errorf("provider sent no response within %v", w.firstByte)
	}
	w.fired.Store(&err)
	w.cancel(err)
}

// reader resets the idle timer on every read that returns data.
func (w *modelWatchdog) reader(r io.Reader) io.Reader { return modelWatchdogReader{r, w} }

type modelWatchdogReader struct {
	r io.Reader
	w *modelWatchdog
}

func (wr modelWatchdogReader) Read(p []byte) (int, error) {
	n, err := wr.r.Read(p)
	if n > 0 {
		wr.w.started.Store(true)
		wr.w.timer.Reset(wr.w.idle)
	}
	return n, err
}

// stop releases the timer and the derived context.
func (w *modelWatchdog) stop() {
	w.timer.Stop()
	w.cancel(context.Canceled)
}

// err rewrites err for the caller: the parent context's error when the caller gave up,
// a *modelError when the watchdog fired (MidStream when events were emitted), else err.
func (w *modelWatchdog) err(err error, emitted bool) error {
	if err == nil {
		return nil
	}
	if perr := w.parentDone(); perr != nil {
		return perr
	}
	if p := w.fired.Load(); p != nil {
		return &modelError{Msg: (*p).Error(), MidStream: emitted, Stalled: !w.started.Load()}
	}
	return err
}

// errStreamCut says a provider stream ended without its final event: the connection
// was cut and the answer is incomplete.
var errStreamCut = errors.New("stream ended before the answer was complete (connection cut)")

// modelStreamError wraps a failure while reading a stream that had started: never
// retried on the same model because the provider already answered.
func modelStreamError(err error) *modelError {
	var me *modelError
	if errors.As(err, &me) {
		me.MidStream = true
		return me
	}
	return &modelError{Msg: "error receiving from stream: " + err.Error(), MidStream: true}
}

// openAIChatClient streams from an OpenAI-compatible /chat/completions endpoint
// (openai, mistral, xai, nebius, minimax, requesty, azure, ollama, dmr, custom).
type openAIChatClient struct {
	s       modelSpec
	env     clientEnv
	base    string
	query   url.Values // azure api-version
	keyErr  error      // reported at stream time so configs load without keys
	key     string
	dmr     bool
	timeout struct{ firstByte, idle time.Duration }
}

func newOpenAIChatClient(spec modelSpec, env clientEnv) (*openAIChatClient, error) {
	base, err := modelBaseURL(spec, env)
	if err != nil {
		return nil, err
	}
	c := &openAIChatClient{s: spec, env: env, base: base, dmr: spec.Provider == "dmr"}
	c.timeout.firstByte = cmp.Or(spec.FirstByteTimeout, modelFirstByteTimeout)
	c.timeout.idle = cmp.Or(spec.IdleTimeout, modelIdleTimeout)
	c.key, c.keyErr = modelAPIKey(spec, env)
	if spec.Provider == "azure" {
		if v, ok := spec.ProviderOpts["api_version"].(string); ok && v != "" {
			c.query = url.Values{"api-version": {v}}
		}
	}
	return c, nil
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
	StreamOptions       *openAIChatStreamOptions `json:"stream_options,omitempty"`
	Tools               []openAIChatTool         `json:"tools,omitempty"`
	Stream              bool                     `json:"stream"`
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
func (c *openAIChatClient) requestBody(req *modelRequest) ([]byte, error) {
	s := c.s
	r := openAIChatRequest{
		Messages:         openAIChatMessages(req.Messages, c.dmr),
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
				return nil, fmt.Errorf("tool %s: %w", t.Name, err)
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
	return json.Marshal(r)
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
	if c.keyErr != nil {
		// Not a *modelError: a missing key is a configuration problem, never retried.
		return fmt.Errorf("model %s: %w", modelName(c.s), c.keyErr)
	}
	body, err := c.requestBody(req)
	if err != nil {
		return err
	}
	wctx, wd := newModelWatchdog(ctx, c.timeout.firstByte, c.timeout.idle)
	defer wd.stop()
	hreq, err := modelNewRequest(wctx, c.env, c.base, modelGatewayOpenAIPrefix, "/chat/completions", c.query, body)
	if err != nil {
		return err
	}
	if c.key != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.key)
	}
	resp, err := modelDo(wctx, c.env, hreq)
	if err != nil {
		return wd.err(err, false)
	}
	defer resp.Body.Close()
	emitted := false
	err = openAIChatReadStream(wctx, wd.reader(resp.Body), func(ev modelEvent) {
		emitted = true
		emit(ev)
	})
	return wd.err(err, emitted)
}

// openAIChatReadStream parses a chat completions SSE stream into events. Deltas, usage and
// finish reasons may come in any combination in one chunk (Mistral sends the whole
// tool call, the finish reason and the usage together). Tool-call fragments carry only
// an index after the first, so the id is remembered per index. Stop is emitted last,
// after the usage chunk that follows the finish reason. Parsing stops as soon as ctx is
// done, even with more of the stream already buffered (a title reader cancels after
// its first line).
func openAIChatReadStream(ctx context.Context, r io.Reader, emit func(modelEvent)) error {
	ids := map[int]string{}
	names := map[int]string{}
	finish := ""
	var usage *messageUsage
	model := ""
	chunks := 0
	// The start of the body is kept to explain a 200 answer that is not a stream
	// (some gateways answer errors that way).
	head := &modelPrefixBuffer{max: 2048}
	errDone := errors.New("done")
	emitted := false
	outer := emit
	emit = func(me modelEvent) { emitted = true; outer(me) }
	err := readSSE(io.TeeReader(r, head), func(ev sseEvent) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Events of a chunk that arrived with more behind it can be flushed together.
		emit := func(me modelEvent) {
			me.More = ev.More
			emit(me)
		}
		data := strings.TrimSpace(ev.Data)
		if data == "[DONE]" {
			return errDone
		}
		if data == "" {
			return nil
		}
		chunks++
		var ch openAIChatChunk
		if openAIFastChunk(data, &ch) {
			// the common text delta, decoded without reflection
		} else if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return &modelError{Msg: fmt.Sprintf("error receiving from stream: invalid chunk %.200q: %v", data, err), MidStream: true}
		}
		if len(ch.Error) > 0 && string(ch.Error) != "null" {
			return &modelError{Msg: "received error while streaming: " + modelErrorMessage([]byte(`{"error":`+string(ch.Error)+`}`)), MidStream: true}
		}
		if ch.Model != "" {
			model = ch.Model
		}
		for _, choice := range ch.Choices {
			d := choice.Delta
			reasoning := d.ReasoningContent
			if reasoning == "" {
				reasoning = d.Reasoning
			}
			if reasoning != "" {
				emit(modelEvent{Kind: evReasoning, Text: reasoning, Model: model})
			}
			if d.Content != "" {
				emit(modelEvent{Kind: evText, Text: d.Content, Model: model})
			}
			for _, tc := range d.ToolCalls {
				id, known := ids[tc.Index]
				if tc.ID != "" && tc.ID != id {
					id, known = tc.ID, false
					ids[tc.Index] = id
					names[tc.Index] = ""
				}
				if id == "" { // a server that never sends ids: make a stable one
					id = fmt.Sprintf("call_%d", tc.Index)
					ids[tc.Index] = id
				}
				if !known || (tc.Function.Name != "" && names[tc.Index] == "") {
					if tc.Function.Name != "" {
						names[tc.Index] = tc.Function.Name
					}
					emit(modelEvent{Kind: evToolCallStart, ToolID: id, ToolName: names[tc.Index], Model: model})
				}
				if tc.Function.Arguments != "" {
					emit(modelEvent{Kind: evToolCallArgs, ToolID: id, Text: tc.Function.Arguments, Model: model})
				}
			}
			if choice.FinishReason != "" {
				finish = choice.FinishReason
			}
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
			usage = mu
		}
		return nil
	})
	if err != nil && err != errDone {
		return modelStreamError(err)
	}
	if err == nil && chunks == 0 && len(bytes.TrimSpace(head.b)) > 0 {
		// EOF without a single chunk: not an SSE stream at all.
		msg := modelErrorMessage(head.b)
		if msg == "" {
			msg = "empty response"
		}
		return &modelError{Msg: "error receiving from stream: not an event stream: " + msg, MidStream: true}
	}
	// A clean EOF without [DONE] is accepted after a finish_reason (some local servers
	// omit [DONE]); without either (an empty body included) the connection was cut.
	// Nothing emitted yet means nothing was shown, so the chain may retry.
	if err == nil && finish == "" {
		return &modelError{Msg: "error receiving from stream: " + errStreamCut.Error(), MidStream: emitted}
	}
	if usage != nil {
		emit(modelEvent{Kind: evUsage, Usage: usage, Model: model})
	}
	if finish == "" {
		finish = "stop"
		if len(ids) > 0 {
			finish = "tool_calls"
		}
	}
	emit(modelEvent{Kind: evStop, StopReason: finish, Model: model})
	return nil
}

// modelPrefixBuffer keeps the first max bytes written to it and drops the rest.
type modelPrefixBuffer struct {
	b   []byte
	max int
}

func (p *modelPrefixBuffer) Write(b []byte) (int, error) {
	if room := p.max - len(p.b); room > 0 {
		p.b = append(p.b, b[:min(room, len(b))]...)
	}
	return len(b), nil
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
	for _, p := range []string{"prompt is too long", "maximum context length", "context_length_exceeded", "context length exceeded", "max_tokens must be greater than", "too many tokens"} {
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
