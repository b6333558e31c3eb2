package main

// providers.go is what agentd knows about model providers, in one table (PROVIDERS.md
// §2, CONFIG.md §5.3): base URLs, key variables, auth headers, gateway prefixes, the
// `auto` choice, prices and context windows. The config's key preflight and `auto`
// model, the cassette gateway's key injection and the cost reports read it from here.
//
// It also holds the one HTTP path every provider request takes (chat completions,
// Responses, Anthropic Messages, Gemini, embeddings), so gateway mode, keys, timeouts
// and error texts behave alike across API families:
//
//	conn, err := newProvConn(api, spec, env, path, query) // base URL checked here
//	err = conn.run(ctx, body, emit, handle, end)         // streams; or conn.post for JSON

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
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The API families (wire protocols) a provider speaks.
const (
	apiOpenAIChat      = "openai_chatcompletions"
	apiOpenAIResponses = "openai_responses"
	apiAnthropic       = "anthropic"
	apiGoogle          = "google"
	apiBedrock         = "amazon-bedrock"
	apiEmbeddings      = "embeddings" // OpenAI-compatible POST /embeddings (RAG)
)

// modelGatewayOpenAIPrefix is what OpenAI-type clients put before their path in gateway
// mode; the cassette gateway strips it again.
const modelGatewayOpenAIPrefix = "/v1"

// providerAPI is one API family: how it sends keys and reaches a gateway, and the
// stream timeouts by default. The timeouts differ on purpose: OpenAI-compatible chat
// servers answer at once, while Gemini sends nothing before its first text and reasoning
// models on the other APIs can think silently for minutes.
type providerAPI struct {
	name          string // prefixes every error: "chat", "responses", "anthropic", …
	authHeader    string // "Authorization" carries "Bearer <key>", the others the bare key
	gatewayPrefix string // PROVIDERS.md §2: OpenAI-type "/v1", Anthropic and Gemini ""
	// home is the provider whose base URL and key apply when spec's provider has no
	// row (an unnamed or custom provider speaking this API).
	home            string
	firstByte, idle time.Duration
	lines           bool // Gemini: lines that are not "data:" are error objects
}

var providerAPIs = map[string]providerAPI{
	apiOpenAIChat:      {name: "chat", authHeader: "Authorization", gatewayPrefix: modelGatewayOpenAIPrefix, firstByte: chatFirstByteTimeout, idle: chatIdleTimeout},
	apiOpenAIResponses: {name: "responses", authHeader: "Authorization", gatewayPrefix: modelGatewayOpenAIPrefix, firstByte: provFirstByteTimeout, idle: provIdleTimeout},
	apiAnthropic:       {name: "anthropic", authHeader: "X-Api-Key", home: "anthropic", firstByte: provFirstByteTimeout, idle: provIdleTimeout},
	apiGoogle:          {name: "gemini", authHeader: "X-Goog-Api-Key", home: "google", firstByte: provFirstByteTimeout, idle: provIdleTimeout, lines: true},
	apiBedrock:         {name: "bedrock", authHeader: "Authorization", home: "amazon-bedrock", firstByte: provFirstByteTimeout, idle: provIdleTimeout},
	apiEmbeddings:      {name: "embeddings", authHeader: "Authorization", gatewayPrefix: modelGatewayOpenAIPrefix, firstByte: provFirstByteTimeout, idle: provIdleTimeout},
}

// modelProvider is one row of the provider table.
type modelProvider struct {
	Name    string
	API     string // the API family; openai switches to Responses by model name
	BaseURL string // "" = base_url is required (azure)
	// BaseEnv, when set and non-empty in the environment, replaces BaseURL (the SDKs
	// honour OPENAI_BASE_URL, ANTHROPIC_BASE_URL and GOOGLE_GEMINI_BASE_URL).
	BaseEnv string
	KeyEnvs []string // the first one set holds the key; none = no auth at all
	// KeyOptional: other credentials may do (Bedrock's SigV4), so the config preflight
	// does not demand KeyEnvs.
	KeyOptional bool
	// AutoModel is what `auto` picks when one of KeyEnvs or AutoEnvs is set (with no
	// variables at all: always); rows are tried in table order.
	AutoModel     string
	AutoMaxTokens int64
	AutoEnvs      []string
	Prices        map[string]modelPrice // offline; the reference fetches models.dev
}

// modelProviders is PROVIDERS.md §2 / CONFIG.md §5.3, in the order `auto` tries them.
var modelProviders = []modelProvider{
	{Name: "anthropic", API: apiAnthropic, BaseURL: "https://api.anthropic.com", BaseEnv: "ANTHROPIC_BASE_URL",
		KeyEnvs: []string{"ANTHROPIC_API_KEY"}, AutoModel: "claude-sonnet-4-5", AutoMaxTokens: 32000,
		Prices: map[string]modelPrice{
			"claude-sonnet-4-0": {3, 15, 0.3, 3.75, 200000},
			"claude-sonnet-4-5": {3, 15, 0.3, 3.75, 200000},
			"claude-opus-4-1":   {15, 75, 1.5, 18.75, 200000},
			"claude-haiku-4-5":  {1, 5, 0.1, 1.25, 200000},
		}},
	{Name: "openai", API: apiOpenAIChat, BaseURL: "https://api.openai.com/v1", BaseEnv: "OPENAI_BASE_URL",
		KeyEnvs: []string{"OPENAI_API_KEY"}, AutoModel: "gpt-5-mini", AutoMaxTokens: 32000,
		Prices: map[string]modelPrice{
			"gpt-4o":       {2.5, 10, 1.25, 0, 128000},
			"gpt-4o-mini":  {0.15, 0.6, 0.075, 0, 128000},
			"gpt-4.1":      {2, 8, 0.5, 0, 1047576},
			"gpt-4.1-mini": {0.4, 1.6, 0.1, 0, 1047576},
			"gpt-5":        {1.25, 10, 0.125, 0, 400000},
			"gpt-5-mini":   {0.25, 2, 0.025, 0, 400000},
		}},
	{Name: "google", API: apiGoogle, BaseURL: "https://generativelanguage.googleapis.com", BaseEnv: "GOOGLE_GEMINI_BASE_URL",
		KeyEnvs: []string{"GOOGLE_API_KEY", "GEMINI_API_KEY"}, AutoModel: "gemini-2.5-flash", AutoMaxTokens: 32000,
		AutoEnvs: []string{"GOOGLE_GENAI_USE_VERTEXAI"},
		Prices: map[string]modelPrice{
			"gemini-2.5-flash": {0.3, 2.5, 0.075, 0, 1048576},
			"gemini-2.5-pro":   {1.25, 10, 0.31, 0, 1048576},
		}},
	{Name: "mistral", API: apiOpenAIChat, BaseURL: "https://api.mistral.ai/v1", KeyEnvs: []string{"MISTRAL_API_KEY"},
		AutoModel: "mistral-small-latest", AutoMaxTokens: 32000},
	{Name: "amazon-bedrock", API: apiBedrock, KeyEnvs: []string{"AWS_BEARER_TOKEN_BEDROCK"}, KeyOptional: true,
		AutoModel: "global.anthropic.claude-sonnet-4-5-20250929-v1:0", AutoMaxTokens: 32000,
		AutoEnvs: []string{"AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ROLE_ARN"}},
	// The local model runner: `auto` with no key at all. MODEL_RUNNER_HOST moves it.
	{Name: "dmr", API: apiOpenAIChat, BaseURL: "http://127.0.0.1:12434/engines/v1", AutoModel: "ai/qwen3:latest", AutoMaxTokens: 16000},
	{Name: "xai", API: apiOpenAIChat, BaseURL: "https://api.x.ai/v1", KeyEnvs: []string{"XAI_API_KEY"}},
	{Name: "nebius", API: apiOpenAIChat, BaseURL: "https://api.studio.nebius.com/v1", KeyEnvs: []string{"NEBIUS_API_KEY"}},
	{Name: "minimax", API: apiOpenAIChat, BaseURL: "https://api.minimax.io/v1", KeyEnvs: []string{"MINIMAX_API_KEY"}},
	{Name: "requesty", API: apiOpenAIChat, BaseURL: "https://router.requesty.ai/v1", KeyEnvs: []string{"REQUESTY_API_KEY"}},
	{Name: "azure", API: apiOpenAIChat, KeyEnvs: []string{"AZURE_API_KEY"}},
	{Name: "ollama", API: apiOpenAIChat, BaseURL: "http://localhost:11434/v1"},
}

// providerByName returns the table row of a built-in provider.
func providerByName(name string) (modelProvider, bool) {
	for _, p := range modelProviders {
		if p.Name == name {
			return p, true
		}
	}
	return modelProvider{}, false
}

// providerAuto is the `auto` model: the first provider whose key (or other credential
// variable) is set, else the local model runner.
func providerAuto(getenv func(string) string) (provider, model string, maxTokens int64) {
	for _, p := range modelProviders {
		if p.AutoModel == "" {
			continue
		}
		envs := slices.Concat(p.KeyEnvs, p.AutoEnvs)
		for _, e := range envs {
			if getenv(e) != "" {
				return p.Name, p.AutoModel, p.AutoMaxTokens
			}
		}
		if len(envs) == 0 {
			return p.Name, p.AutoModel, p.AutoMaxTokens
		}
	}
	return "", "", 0
}

// providerKeyEnv is the variable the config preflight demands for a built-in provider
// (CONFIG.md §8.3); false when the provider needs none or has other ways to sign in.
func providerKeyEnv(name string) (string, bool) {
	p, ok := providerByName(name)
	if !ok || len(p.KeyEnvs) == 0 || p.KeyOptional {
		return "", false
	}
	return p.KeyEnvs[0], true
}

// providerAuth is how the upstream at host takes its key, for a gateway that injects
// the real keys (cassette recording): the header, its value prefix and the variables
// holding the key, first set wins. false for hosts of no built-in provider.
func providerAuth(host string) (header, prefix string, envs []string, ok bool) {
	for _, p := range modelProviders {
		if p.BaseURL == "" || len(p.KeyEnvs) == 0 {
			continue
		}
		if u, err := url.Parse(p.BaseURL); err == nil && u.Host == host {
			header = providerAPIs[p.API].authHeader
			if header == "Authorization" {
				prefix = "Bearer "
			}
			return header, prefix, p.KeyEnvs, true
		}
	}
	return "", "", nil, false
}

// providerKnownBase reports whether base is a built-in provider's base URL or its
// environment override.
func providerKnownBase(base string, getenv func(string) string) bool {
	base = strings.TrimRight(base, "/")
	for _, p := range modelProviders {
		if p.BaseURL != "" && strings.TrimRight(p.BaseURL, "/") == base {
			return true
		}
		if p.BaseEnv != "" {
			if v := getenv(p.BaseEnv); v != "" && strings.TrimRight(v, "/") == base {
				return true
			}
		}
	}
	return false
}

// modelPrice is USD per million tokens, and the context window, for cost reporting.
type modelPrice struct {
	in, out, cacheRead, cacheWrite float64
	context                        int64
}

// cost of one call; zero for unknown models.
func (p modelPrice) cost(u *messageUsage) float64 {
	return (float64(u.InputTokens)*p.in + float64(u.OutputTokens)*p.out +
		float64(u.CachedInputTokens)*p.cacheRead + float64(u.CacheWriteTokens)*p.cacheWrite) / 1e6
}

// priceOf finds a model's price, also for dated ids such as gpt-4o-2024-08-06 and
// Bedrock ids such as global.anthropic.claude-sonnet-4-5-20250929-v1:0.
func priceOf(model string) modelPrice {
	model = bedrockBaseModel(model)
	best, price := "", modelPrice{}
	for _, p := range modelProviders {
		for name, pr := range p.Prices {
			if (model == name || strings.HasPrefix(model, name+"-")) && len(name) > len(best) {
				best, price = name, pr
			}
		}
	}
	return price
}

// modelGetenv returns env.Getenv, or a function that finds nothing.
func modelGetenv(env clientEnv) func(string) string {
	if env.Getenv != nil {
		return env.Getenv
	}
	return func(string) string { return "" }
}

// providerFor is the table row that holds spec's defaults for api: its provider's, else
// the API family's home provider's.
func providerFor(spec modelSpec, api providerAPI) modelProvider {
	if p, ok := providerByName(spec.Provider); ok {
		return p
	}
	p, _ := providerByName(api.home)
	return p
}

// modelBaseURL is where spec's API lives, without a trailing slash: the configured
// base_url, else the provider's environment override (MODEL_RUNNER_HOST for dmr), else
// the provider's default. It must be an http(s) URL.
func modelBaseURL(spec modelSpec, env clientEnv, api providerAPI) (string, error) {
	getenv := modelGetenv(env)
	p := providerFor(spec, api)
	base := spec.BaseURL
	if base == "" && p.BaseEnv != "" {
		base = getenv(p.BaseEnv)
	}
	if base == "" && p.Name == "dmr" {
		if h := getenv("MODEL_RUNNER_HOST"); h != "" {
			base = strings.TrimRight(h, "/") + "/engines/v1"
		}
	}
	base = cmp.Or(base, p.BaseURL)
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
func modelAPIKey(spec modelSpec, env clientEnv, api providerAPI) (string, error) {
	getenv := modelGetenv(env)
	if env.Gateway != "" {
		return getenv("DOCKER_TOKEN"), nil
	}
	names := providerFor(spec, api).KeyEnvs
	if spec.TokenKey != "" {
		names = []string{spec.TokenKey}
	}
	if len(names) == 0 {
		// dmr, ollama and custom providers without token_key: no auth at all. The
		// reference sends an empty Bearer (custom) or leaks OPENAI_API_KEY (ollama).
		return "", nil
	}
	for _, name := range names {
		if k := getenv(name); k != "" {
			return k, nil
		}
	}
	return "", fmt.Errorf("%s environment variable is required", names[0])
}

// errProvDone is returned by an event handler when the provider's final event arrived.
var errProvDone = errors.New("stream done")

// errEnough ends the reading of a stream whose reader had enough (withEnough).
var errEnough = errors.New("stream reader had enough")

// withEnough returns a context for a model stream and the function by which its
// reader says it has all it needs (a title reader, once the first line is known):
// events after that are not parsed, and the rest of the stream is drained rather
// than cut, so the connection is reused instead of redialled. A model that ignores
// max_tokens otherwise costs a new connection per title.
func withEnough(ctx context.Context) (context.Context, func()) {
	b := new(atomic.Bool)
	return context.WithValue(ctx, enoughKey{}, b), func() { b.Store(true) }
}

type enoughKey struct{}

// enoughFlag is the flag of withEnough, or nil.
func enoughFlag(ctx context.Context) *atomic.Bool {
	b, _ := ctx.Value(enoughKey{}).(*atomic.Bool)
	return b
}

// errStreamCut says a provider stream ended without its final event: the connection
// was cut and the answer is incomplete.
var errStreamCut = errors.New("stream ended before the answer was complete (connection cut)")

// provConn is the HTTP side of one provider client: endpoint, fixed headers, timeouts,
// and a missing key to report when the client is used (so agents whose keys are absent
// still load). It is copied per request, so per-request changes never leak into it.
type provConn struct {
	name   string
	http   *http.Client
	url    string
	header http.Header
	keyErr error
	// firstByteWait bounds the wait for the response's first body byte, idleWait the gap
	// between later reads. Either expiring ends the stream with an error instead of a hang.
	firstByteWait time.Duration
	idleWait      time.Duration
	lines         bool
}

// provDefaultHTTP never decompresses transparently: that breaks SSE flushing (PROVIDERS §2).
var provDefaultHTTP = &http.Client{Transport: func() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	return t
}()}

// newProvConn prepares requests of API family api for spec: base+path (in gateway mode
// Gateway+prefix+path with the X-Cagent-* routing headers), query appended, the key in
// the family's auth header, spec's timeouts else the family's. Only a missing or
// malformed base URL fails here.
func newProvConn(api string, spec modelSpec, env clientEnv, path string, query url.Values) (provConn, error) {
	fam := providerAPIs[api]
	base, err := modelBaseURL(spec, env, fam)
	if err != nil {
		return provConn{}, err
	}
	c := provConn{name: fam.name, http: withRedirectPolicy(cmp.Or(env.HTTP, provDefaultHTTP)), header: http.Header{},
		url:           base + path,
		firstByteWait: cmp.Or(spec.FirstByteTimeout, fam.firstByte),
		idleWait:      cmp.Or(spec.IdleTimeout, fam.idle),
		lines:         fam.lines}
	h := c.header
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json, text/event-stream")
	// Asking for identity also stops a caller-supplied client's transparent gzip, which
	// would buffer the stream (the reference turns compression off for the same reason).
	h.Set("Accept-Encoding", "identity")
	if env.Gateway != "" {
		c.url = strings.TrimRight(env.Gateway, "/") + fam.gatewayPrefix + path
		if env.GatewayToken != "" {
			h.Set(gatewayTokenHeader, env.GatewayToken)
		}
		h.Set("X-Cagent-Forward", base)
		h.Set("X-Cagent-Provider", spec.Provider)
		h.Set("X-Cagent-Model", spec.Model)
		h.Set("X-Cagent-Model-Name", spec.Ref)
	}
	if len(query) > 0 {
		c.url += "?" + query.Encode()
	}
	key, err := modelAPIKey(spec, env, fam)
	switch {
	case err != nil:
		// Not a *modelError: a missing key is a configuration problem, never retried.
		c.keyErr = fmt.Errorf("model %s: %w", modelName(spec), err)
	case key == "":
	case fam.authHeader == "Authorization":
		h.Set("Authorization", "Bearer "+key)
	default:
		h.Set(fam.authHeader, key)
		if env.Gateway != "" { // the gateway authenticates the bearer token
			h.Set("Authorization", "Bearer "+key)
		}
	}
	return c, nil
}

// provTimeout is the cause of a request cancelled by the watchdog; firstByte says no
// body byte had arrived.
type provTimeout struct {
	msg       string
	firstByte bool
}

func (e *provTimeout) Error() string { return e.msg }

// run posts body and feeds every SSE event to handle until it returns errProvDone, then
// calls end (done says the final event came; false is a clean EOF). Events go through a
// wrapper that remembers whether any was emitted: failures after that are marked
// MidStream, and never retried. A 200 answer that is no event stream at all is an
// error. HTTP and stream failures are *modelError; a cancelled ctx returns ctx's error.
func (c provConn) run(ctx context.Context, body splicedJSON, emit func(modelEvent),
	handle func(sseEvent, func(modelEvent)) error, end func(done bool) error) error {
	rc, err := c.post(ctx, body)
	if err != nil {
		return err
	}
	defer rc.Close()
	emitted, events := false, 0
	em := func(e modelEvent) { emitted = true; emit(e) }
	enough := enoughFlag(ctx)
	fn := func(ev sseEvent) error {
		// Stop as soon as the caller gives up, even with more of the stream buffered.
		if err := ctx.Err(); err != nil {
			return err
		}
		events++
		if err := handle(ev, em); err != nil || enough == nil || !enough.Load() {
			return err
		}
		return errEnough
	}
	// The start of the body explains a 200 answer that is not a stream (some gateways
	// answer errors that way).
	head := &modelPrefixBuffer{max: 2048}
	if c.lines {
		err = provReadLines(io.TeeReader(rc, head), fn)
	} else {
		err = readSSE(io.TeeReader(rc, head), fn)
	}
	if errors.Is(err, errEnough) {
		rc.drain()
		return nil
	}
	done := errors.Is(err, errProvDone)
	if done {
		// Servers flush the final event before ending the body: read on to its end, or
		// closing it early drops the connection instead of reusing it.
		rc.drain()
	}
	if err == nil && events == 0 && len(bytes.TrimSpace(head.b)) > 0 {
		err = &modelError{Msg: "not an event stream: " + cmp.Or(modelErrorMessage(head.b), "empty response")}
	}
	if err == nil || done {
		err = end(done)
	}
	return c.streamError(ctx, err, emitted)
}

// streamError names the client in err and marks it MidStream when events were emitted;
// a watchdog expiry before the first byte is Stalled (not retried on the same model:
// the wait already was the timeout).
func (c provConn) streamError(ctx context.Context, err error, emitted bool) error {
	if err == nil {
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

// post sends the request body and returns the response body, guarded by the timeouts. A non-2xx
// answer is a *modelError: `<name>: POST "<url>": 401 Unauthorized: <provider message>`,
// with Retry-After-Ms or Retry-After parsed.
func (c provConn) post(ctx context.Context, body splicedJSON) (*provBody, error) {
	if c.keyErr != nil {
		return nil, c.keyErr
	}
	ctx, cancel := context.WithCancelCause(ctx)
	started := new(atomic.Bool) // set by provBody at the first byte
	timer := time.AfterFunc(c.firstByteWait, func() {
		if started.Load() {
			cancel(&provTimeout{msg: fmt.Sprintf("provider stream stalled: no data for %v", c.idleWait)})
		} else {
			cancel(&provTimeout{msg: fmt.Sprintf("provider sent no response within %v", c.firstByteWait), firstByte: true})
		}
	})
	fail := func() { timer.Stop(); cancel(nil) }
	req, err := http.NewRequestWithContext(ctx, "POST", c.url, body.reader())
	if err != nil {
		fail()
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	// Sent from its pieces, large images from where they are held; sized, so the wire
	// has the Content-Length a byte slice would give, and re-readable for redirects.
	req.ContentLength = int64(body.size())
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(body.reader()), nil }
	req.Header = c.header.Clone()
	resp, err := c.http.Do(req)
	if err != nil {
		cause := context.Cause(ctx)
		fail()
		var to *provTimeout
		switch {
		case errors.As(cause, &to):
			return nil, &modelError{Msg: c.what() + ": " + to.msg, Stalled: true}
		case cause != nil:
			return nil, fmt.Errorf("%s: %w", c.name, cause)
		}
		return nil, &modelError{Msg: c.what() + ": " + err.Error()}
	}
	if resp.StatusCode/100 != 2 {
		defer fail()
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxModelErrorBody))
		msg := c.what() + ": " + resp.Status
		if m := modelErrorMessage(b); m != "" {
			msg += ": " + m
		}
		return nil, &modelError{Status: resp.StatusCode, RetryAfter: modelRetryAfter(resp.Header, time.Now()), Msg: msg}
	}
	return &provBody{rc: resp.Body, ctx: ctx, timer: timer, idle: c.idleWait, cancel: cancel, started: started}, nil
}

// what names the request in errors: `<name>: POST "<url>"`, any password masked.
func (c provConn) what() string {
	return fmt.Sprintf("%s: POST %q", c.name, redactURL(c.url))
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

// drain reads what is left of a stream, unparsed, so the connection goes back to the
// pool: at most maxStreamDrain bytes within streamDrainWait; a longer or slower
// stream is cut, as Close alone would.
func (b *provBody) drain() {
	t := time.AfterFunc(streamDrainWait, func() { b.cancel(nil) })
	defer t.Stop()
	io.Copy(io.Discard, io.LimitReader(b.rc, maxStreamDrain))
}

func (b *provBody) Close() error {
	b.timer.Stop()
	b.cancel(nil)
	return b.rc.Close()
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

// provReadLines reads Gemini's stream: "data:" lines are events, blank and ":" lines are
// skipped, and any other text is an error object (possibly spread over several lines)
// that is handed to fn as an event named "error" once the stream ends.
func provReadLines(r io.Reader, fn func(sseEvent) error) error {
	var other []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxSSELine)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		switch {
		case line == "" || strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "data:") && other == nil:
			if err := fn(sseEvent{Data: strings.TrimPrefix(line[len("data:"):], " ")}); err != nil {
				return err
			}
		default:
			other = append(other, line)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if other != nil {
		return fn(sseEvent{Event: "error", Data: strings.Join(other, "\n")})
	}
	return nil
}

// provErrorBody is the error object of every provider: OpenAI {message,type,code},
// Anthropic {type,message}, Gemini {code,message,status}.
type provErrorBody struct {
	Type    string          `json:"type"`
	Message string          `json:"message"`
	Status  string          `json:"status"`
	Code    json.RawMessage `json:"code"`
}

// modelErrorMessage extracts the human message, "message (type)", from the error body
// shapes of OpenAI, Anthropic, Gemini (also wrapped in an array, as its streaming
// endpoint sends it) and most gateways; otherwise it returns the trimmed body.
func modelErrorMessage(b []byte) string {
	var list []json.RawMessage
	if json.Unmarshal(b, &list) == nil && len(list) > 0 {
		b = list[0]
	}
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(b, &v) == nil {
		var e provErrorBody
		var s string
		switch {
		case json.Unmarshal(v.Error, &e) == nil && e.Message != "":
			if kind := cmp.Or(e.Type, e.Status); kind != "" {
				return e.Message + " (" + kind + ")"
			}
			return e.Message
		case json.Unmarshal(v.Error, &s) == nil && s != "":
			return s
		case v.Message != "":
			return v.Message
		}
	}
	s := strings.TrimSpace(string(b))
	if len(s) > maxModelErrorMsg {
		s = strings.ToValidUTF8(s[:maxModelErrorMsg], "") + "…"
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

// ---- request-body helpers shared by the Anthropic, Gemini and Responses clients ----

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
