package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func startCassetteForTest(t *testing.T, opts cassetteOptions) *cassetteServer {
	t.Helper()
	cs, err := startCassetteWith(opts)
	if err != nil {
		t.Fatalf("startCassette: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// cassetteGatewayClient is a chat client that reaches providers through the cassette gateway,
// with no API keys in its environment.
func cassetteGatewayClient(t *testing.T, cs *cassetteServer, spec modelSpec) *openAIChatClient {
	env := modelTestEnv()
	env.Gateway, env.GatewayToken = cs.URL(), cs.Token()
	return newModelTestChatClient(t, spec, env)
}

func TestCassetteReplay(t *testing.T) {
	cs := startCassetteForTest(t, cassetteOptions{Path: "testdata/cassettes/replay.yaml", Mode: "replay"})
	c := cassetteGatewayClient(t, cs, modelSpec{Provider: "openai", Model: "gpt-4o", MaxTokens: 1234})

	// Identical requests consume successive interactions in file order; max_tokens is
	// ignored by the matcher.
	for _, want := range []string{"first", "second"} {
		var got modelTurn
		if err := c.stream(context.Background(), modelUserReq("What's 2+2?"), got.emit); err != nil {
			t.Fatalf("stream: %v", err)
		}
		if got.Text != want || got.Stop != "stop" {
			t.Errorf("replayed text %q stop %q; want %q stop", got.Text, got.Stop, want)
		}
	}
	// Used up: the last matching interaction answers again (the reference fails here).
	var again modelTurn
	if err := c.stream(context.Background(), modelUserReq("What's 2+2?"), again.emit); err != nil || again.Text != "second" {
		t.Errorf("replay after use: %q, %v; want the last match again", again.Text, err)
	}
	// A request nothing matches is a 500 naming the request.
	err := c.stream(context.Background(), modelUserReq("What's 3+3?"), func(modelEvent) {})
	var me *modelError
	if !errors.As(err, &me) || me.Status != 500 || !strings.Contains(me.Msg, "requested interaction not found") || !strings.Contains(me.Msg, "https://api.openai.com/v1/chat/completions") {
		t.Errorf("miss: err = %v; want a 500 naming the interaction", err)
	}

	// Generated call ids are normalised; the Mistral URL is rebuilt from X-Cagent-Forward.
	mc := cassetteGatewayClient(t, cs, modelSpec{Provider: "mistral", Model: "mistral-small"})
	req := &modelRequest{Messages: []chatMessage{
		{Role: "user", Content: "List it."},
		{Role: "assistant", ToolCalls: []toolCall{{ID: "call_9b1c-00", Type: "function", Function: functionCall{Name: "ls", Arguments: "{}"}}}},
		{Role: "tool", ToolCallID: "call_9b1c-00", Content: "a.txt\n"},
	}}
	var got modelTurn
	if err := mc.stream(context.Background(), req, got.emit); err != nil || got.Text != "One file." || got.Usage == nil || got.Usage.InputTokens != 30 {
		t.Errorf("mistral replay: err %v text %q usage %+v", err, got.Text, got.Usage)
	}

	// A recorded error answer replays as that error.
	err = c.stream(context.Background(), modelUserReq("fail please"), func(modelEvent) {})
	if !errors.As(err, &me) || me.Status != 401 || !strings.Contains(me.Msg, "Incorrect API key provided: sk-xxxx.") {
		t.Errorf("recorded 401: err = %v", err)
	}
}

// Replay writes streams without Content-Type, in small flushed pieces, so clients
// must parse SSE whatever the type says.
func TestCassetteReplayRawResponse(t *testing.T) {
	cs := startCassetteForTest(t, cassetteOptions{Path: "testdata/cassettes/replay.yaml", Mode: "replay"})
	body := `{"messages":[{"content":"Be brief.\n","role":"system"},{"content":"What's 2+2?","role":"user"}],"model":"gpt-4o","stream_options":{"include_usage":true},"stream":true}`
	req, _ := http.NewRequest("POST", cs.URL()+"/v1/chat/completions", strings.NewReader(body))
	req.Header.Set("X-Cagent-Forward", "https://api.openai.com/v1")
	req.Header.Set(gatewayTokenHeader, cs.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "" || !strings.HasPrefix(string(b), "data: {") || !strings.HasSuffix(string(b), "data: [DONE]\n\n") {
		t.Errorf("status %d content-type %q body %q", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	// Without X-Cagent-Forward the gateway cannot know the upstream.
	req2, _ := http.NewRequest("POST", cs.URL()+"/v1/chat/completions", strings.NewReader("{}"))
	req2.Header.Set(gatewayTokenHeader, cs.Token())
	resp2, err := http.DefaultClient.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != 400 {
		t.Errorf("no forward header: status %d; want 400", resp2.StatusCode)
	}
}

func TestCassetteEmptyAndInvalid(t *testing.T) {
	cs := startCassetteForTest(t, cassetteOptions{Path: "testdata/cassettes/empty.yaml", Mode: "replay"})
	c := cassetteGatewayClient(t, cs, modelTestSpec(""))
	var me *modelError
	if err := c.stream(context.Background(), modelUserReq("x"), func(modelEvent) {}); !errors.As(err, &me) || me.Status != 500 {
		t.Errorf("empty cassette: err = %v; want a 500 miss", err)
	}
	dir := t.TempDir()
	for name, src := range map[string]string{
		"v1.yaml":    "version: 1\ninteractions: []\n",
		"list.yaml":  "version: 2\ninteractions: {}\n",
		"noreq.yaml": "version: 2\ninteractions:\n  - id: 0\n    response:\n      code: 200\n",
		"code.yaml":  "version: 2\ninteractions:\n  - request:\n      method: POST\n      url: http://x/\n    response:\n      code: two\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(src), 0o644)
		if _, err := startCassetteWith(cassetteOptions{Path: p, Mode: "replay"}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("startCassette(%s) err = %v; want an error naming the file", name, err)
		}
	}
	if _, err := startCassetteWith(cassetteOptions{Path: filepath.Join(dir, "missing.yaml"), Mode: "replay"}); err == nil {
		t.Errorf("missing cassette: no error")
	}
	if _, err := startCassetteWith(cassetteOptions{Path: filepath.Join(dir, "x.yaml"), Mode: "rewind"}); err == nil || !strings.Contains(err.Error(), "unknown mode") {
		t.Errorf("bad mode: err = %v", err)
	}
}

func TestCassetteRecordThenReplay(t *testing.T) {
	up := newModelScriptServer(t,
		modelSSEStep(modelSSEData(
			`{"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"It's \"4\" — ünïcode\ttab"},"finish_reason":null}]}`,
			`{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4}}`)),
		modelErrorStep(400, nil, `{"error":{"message":"bad request","type":"invalid_request_error"}}`))
	path := filepath.Join(t.TempDir(), "rec.yaml")
	getenv := modelTestEnv("OPENAI_API_KEY", "sk-secret-123").Getenv
	rec := startCassetteForTest(t, cassetteOptions{Path: path, Mode: "record", Getenv: getenv,
		Upstream: map[string]string{"https://api.openai.com": up.URL}})
	env := modelTestEnv("DOCKER_TOKEN", "client-token")
	env.Gateway, env.GatewayToken = rec.URL(), rec.Token()
	c := newModelTestChatClient(t, modelTestSpec(""), env)

	var first modelTurn
	if err := c.stream(context.Background(), modelUserReq("What's 2+2?"), first.emit); err != nil {
		t.Fatalf("recording: %v", err)
	}
	err1 := c.stream(context.Background(), modelUserReq("bad one"), func(modelEvent) {})
	if err1 == nil || !strings.Contains(err1.Error(), "400 Bad Request: bad request") {
		t.Fatalf("recording error answer: %v", err1)
	}
	r := up.requests()[0]
	if r.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer sk-secret-123" || r.Header.Get("X-Cagent-Forward") != "" {
		t.Errorf("upstream saw path %q auth %q forward %q; want the real path and injected key only", r.Path, r.Header.Get("Authorization"), r.Header.Get("X-Cagent-Forward"))
	}
	if err := rec.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"sk-secret-123", "client-token"} {
		if strings.Contains(string(data), secret) {
			t.Errorf("cassette contains the key %q:\n%s", secret, data)
		}
	}
	if !strings.Contains(string(data), "url: https://api.openai.com/v1/chat/completions\n") {
		t.Errorf("cassette does not record the real URL:\n%s", data)
	}

	// Replay gives the same events and the same error, with no upstream at all.
	rp := startCassetteForTest(t, cassetteOptions{Path: path, Mode: "replay"})
	c2 := cassetteGatewayClient(t, rp, modelTestSpec(""))
	var again modelTurn
	if err := c2.stream(context.Background(), modelUserReq("What's 2+2?"), again.emit); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if !reflect.DeepEqual(first.Events, again.Events) {
		t.Errorf("replayed events differ:\n got %+v\nwant %+v", again.Events, first.Events)
	}
	err2 := c2.stream(context.Background(), modelUserReq("bad one"), func(modelEvent) {})
	if err2 == nil || !strings.Contains(err2.Error(), "400 Bad Request: bad request") {
		t.Errorf("replayed error: %v", err2)
	}
	if len(up.requests()) != 2 {
		t.Errorf("upstream saw %d requests; want only the 2 recorded", len(up.requests()))
	}
}

// Every body survives encodeCassette → parseCassette exactly, whichever scalar style
// the emitter picks.
func TestCassetteEncodeRoundTrip(t *testing.T) {
	bodies := []string{
		"",
		`{"a":"it's"}`,
		"data: x\n\ndata: [DONE]\n\n",
		"data: x\n\ndata: [DONE]\n",
		"no newline at end\nsecond",
		"  leading blanks\nx\n",
		"\nleading newline\n",
		"crlf\r\nbody\r\n",
		"tab\tinside\n\tindented line\n",
		"ctrl \x01 char\n",
		"ünïcode — “quotes” 🚀\n",
		"whitespace-only line\n   \nend\n",
		"# not a comment\n- not a list\nkey: not a map\n",
		"trailing space \nx\n",
		"'quoted'",
		"true",
		"123",
		"0x1F",
		"1e5",
		"-3",
		"200 OK",
		"null",
		"~",
		`"double"`,
		"a: b",
		" lead",
	}
	var list []*cassetteInteraction
	for i, b := range bodies {
		list = append(list, &cassetteInteraction{
			Method: "POST", URL: "https://api.openai.com/v1/chat/completions?x=" + string(rune('a'+i)), Host: "api.openai.com",
			Form: url.Values{"x": {string(rune('a' + i))}}, ReqBody: b, RespBody: b,
			Proto: "HTTP/2.0", Status: "200 OK", Code: 200, ContentLength: -1, Duration: 1500 * time.Millisecond,
		})
	}
	enc := encodeCassette(list)
	if want := "proto: HTTP/2.0\n        proto_major: 2\n        proto_minor: 0\n"; !strings.Contains(string(enc), want) {
		t.Errorf("encoded cassette lacks %q:\n%s", want, enc)
	}
	got, err := parseCassette("enc.yaml", enc)
	if err != nil {
		t.Fatalf("parseCassette(encodeCassette(...)): %v\n%s", err, enc)
	}
	if len(got) != len(bodies) {
		t.Fatalf("%d interactions back; want %d", len(got), len(bodies))
	}
	for i, in := range got {
		if in.ReqBody != bodies[i] || in.RespBody != bodies[i] || in.URL != list[i].URL || in.Code != 200 || in.Status != "200 OK" || in.Method != "POST" {
			t.Errorf("interaction %d: req %q resp %q url %q code %d status %q; want body %q", i, in.ReqBody, in.RespBody, in.URL, in.Code, in.Status, bodies[i])
		}
	}
	if got, err := parseCassette("e.yaml", encodeCassette(nil)); err != nil || len(got) != 0 {
		t.Errorf("empty cassette round trip: %v, %v", got, err)
	}
}

func TestCassetteUpstream(t *testing.T) {
	for _, tt := range []struct{ forward, path, want string }{
		{"https://api.openai.com/v1", "/v1/chat/completions", "https://api.openai.com/v1/chat/completions"},
		{"https://api.mistral.ai/v1", "/v1/chat/completions", "https://api.mistral.ai/v1/chat/completions"},
		{"https://api.anthropic.com", "/v1/messages", "https://api.anthropic.com/v1/messages"},
		{"https://generativelanguage.googleapis.com", "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"},
		{"http://127.0.0.1:12434/engines/v1", "/v1/chat/completions", "http://127.0.0.1:12434/engines/v1/chat/completions"},
		{"https://x.openai.azure.com/openai/deployments/d", "/v1/chat/completions?api-version=1", "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=1"},
	} {
		r := httptest.NewRequest("POST", tt.path, nil)
		got, err := cassetteUpstream(tt.forward, r)
		if err != nil || got != tt.want {
			t.Errorf("cassetteUpstream(%s, %s) = %q, %v; want %q", tt.forward, tt.path, got, err, tt.want)
		}
	}
	if _, err := cassetteUpstream("", httptest.NewRequest("POST", "/v1/x", nil)); err == nil {
		t.Errorf("empty forward accepted")
	}
}

func TestCassetteNormalize(t *testing.T) {
	a := `{"messages":[{"tool_call_id":"call_abc-123"}],"max_tokens":32000,"generationConfig":{"thinkingConfig":{"thinkingBudget":0},"maxOutputTokens":20,"x":1}}`
	b := `{"messages":[{"tool_call_id":"call_zz9"}],"generationConfig":{"maxOutputTokens":64,"x":1}}`
	if cassetteNormalize(a) != cassetteNormalize(b) {
		t.Errorf("normalised bodies differ:\n%s\n%s", cassetteNormalize(a), cassetteNormalize(b))
	}
	if cassetteNormalize(`{"id":"call_ABC"}`) == cassetteNormalize(`{"id":"call_XYZ"}`) {
		t.Errorf("upper-case ids were normalised; the reference only rewrites lower-case ones")
	}
}

// Gemini cassettes hold the request as a literal block (with the SDK's trailing
// newline), a form, and a double-quoted CRLF stream; the gateway path is the full path.
func TestCassetteReplayGeminiShape(t *testing.T) {
	cs := startCassetteForTest(t, cassetteOptions{Path: "testdata/cassettes/gemini.yaml", Mode: "replay"})
	body := `{"contents":[{"parts":[{"text":"Hi"}],"role":"user"},{"parts":[{"functionResponse":{"name":"call_99aa-bb","response":{"result":"ok\n"}}}],"role":"user"}],"generationConfig":{"maxOutputTokens":20,"thinkingConfig":{"thinkingLevel":"LOW"}}}`
	req, _ := http.NewRequest("POST", cs.URL()+"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", strings.NewReader(body))
	req.Header.Set("X-Cagent-Forward", "https://generativelanguage.googleapis.com")
	req.Header.Set(gatewayTokenHeader, cs.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	want := "data: {\"candidates\": [{\"content\": {\"parts\": [{\"text\": \"Hello\"}],\"role\": \"model\"},\"finishReason\": \"STOP\",\"index\": 0}]}\r\n\r\n"
	if resp.StatusCode != 200 || string(b) != want {
		t.Errorf("status %d body %q; want 200 %q", resp.StatusCode, b, want)
	}
}

func TestCassetteNormalizeFieldPositions(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{`{"a":1,"max_tokens":5,"b":2}`, `{"a":1,"b":2}`},
		{`{"a":1,"max_tokens":5}`, `{"a":1}`},
		{`{"max_tokens":5}`, `{}`},
		{`{"g":{"maxOutputTokens":20,"thinkingConfig":{"thinkingBudget":0}},"x":1}`, `{"g":{},"x":1}`},
		{`{"g":{"thinkingConfig":{"thinkingLevel":"LOW"},"maxOutputTokens":200}}` + "\n", `{"g":{}}`},
		{`{"max_completion_tokens":5}`, `{"max_completion_tokens":5}`},
	} {
		if got := cassetteNormalize(tt.in); got != tt.want {
			t.Errorf("cassetteNormalize(%s) = %s; want %s", tt.in, got, tt.want)
		}
	}
}

// Any body survives the emitter and the parser; normalising never panics.
func FuzzCassetteBody(f *testing.F) {
	for _, s := range []string{"", "data: x\n\n", " a\n", "\r\n", "a\x00b", "'\"", "x\n \n", "\xff", "1e5", "a: b # c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		cassetteNormalize(body)
		if !utf8.ValidString(body) {
			return // YAML is text: invalid UTF-8 cannot round-trip exactly
		}
		enc := encodeCassette([]*cassetteInteraction{{Method: "POST", URL: "https://h/x", ReqBody: body, RespBody: body, Status: "200 OK", Code: 200}})
		got, err := parseCassette("f.yaml", enc)
		if err != nil {
			t.Fatalf("parse: %v\n%s", err, enc)
		}
		if len(got) != 1 || got[0].ReqBody != body || got[0].RespBody != body {
			t.Fatalf("body %q came back as %q / %q\n%s", body, got[0].ReqBody, got[0].RespBody, enc)
		}
	})
}

// TestCassetteEveryProvider records one answer of each wire format through the
// gateway (against in-process upstreams speaking that format) and replays it offline:
// --fake works for every provider, not only OpenAI chat.
func TestCassetteEveryProvider(t *testing.T) {
	cases := []struct {
		name, upstream, stream string
		spec                   modelSpec
	}{
		{"openai chat", "https://api.openai.com", "", modelSpec{Provider: "openai", Model: "gpt-4o"}},
		{"responses", "https://api.openai.com", "responses_text.sse", modelSpec{Provider: "openai", Model: "gpt-5-mini"}},
		{"anthropic", "https://api.anthropic.com", "anthropic_text.sse", modelSpec{Provider: "anthropic", Model: "claude-sonnet-4-0"}},
		{"gemini", "https://generativelanguage.googleapis.com", "gemini_text.sse", modelSpec{Provider: "google", Model: "gemini-2.5-flash"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"4\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n")
			if tc.stream != "" {
				var err error
				if body, err = os.ReadFile(filepath.Join("testdata", "providers", tc.stream)); err != nil {
					t.Fatal(err)
				}
			}
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				w.Write(body)
			}))
			defer up.Close()
			path := filepath.Join(t.TempDir(), "c.yaml")
			keys := modelTestEnv("OPENAI_API_KEY", "k", "ANTHROPIC_API_KEY", "k", "GOOGLE_API_KEY", "k").Getenv
			rec := startCassetteForTest(t, cassetteOptions{Path: path, Mode: "record", Getenv: keys, Upstream: map[string]string{tc.upstream: up.URL}})
			turn := func(cs *cassetteServer) modelTurn {
				env := modelTestEnv()
				env.Gateway, env.GatewayToken = cs.URL(), cs.Token()
				c, err := newModelClient(tc.spec, env)
				if err != nil {
					t.Fatal(err)
				}
				var got modelTurn
				if err := c.stream(context.Background(), modelUserReq("What's 2+2?"), got.emit); err != nil {
					t.Fatalf("stream via %s: %v", cs.URL(), err)
				}
				return got
			}
			first := turn(rec)
			if first.Text == "" {
				t.Fatalf("recorded turn has no text: %+v", first)
			}
			if err := rec.Close(); err != nil {
				t.Fatal(err)
			}
			up.Close() // replay must not need the upstream
			rp := startCassetteForTest(t, cassetteOptions{Path: path, Mode: "replay"})
			if again := turn(rp); again.Text != first.Text || !reflect.DeepEqual(again.Usage, first.Usage) {
				t.Fatalf("replay = %q %+v; recorded %q %+v", again.Text, again.Usage, first.Text, first.Usage)
			}
		})
	}
}

// TestModelChain429EveryProvider: a 429 with Retry-After from any wire format is
// waited out and retried through the chain, then the answer streams.
func TestModelChain429EveryProvider(t *testing.T) {
	for _, tc := range []struct {
		name, stream string
		spec         modelSpec
	}{
		{"responses", "responses_text.sse", modelSpec{Provider: "openai", Model: "gpt-5-mini", TokenKey: "K"}},
		{"anthropic", "anthropic_text.sse", modelSpec{Provider: "anthropic", Model: "claude-sonnet-4-0", TokenKey: "K"}},
		{"gemini", "gemini_text.sse", modelSpec{Provider: "google", Model: "gemini-2.5-flash", TokenKey: "K"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", "providers", tc.stream))
			if err != nil {
				t.Fatal(err)
			}
			var calls int
			var mu sync.Mutex
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				mu.Lock()
				calls++
				n := calls
				mu.Unlock()
				if n == 1 {
					w.Header().Set("Retry-After", "2")
					w.WriteHeader(429)
					io.WriteString(w, `{"error":{"message":"slow down","type":"rate_limit_error"}}`)
					return
				}
				w.Write(body)
			}))
			defer up.Close()
			spec := tc.spec
			spec.BaseURL = up.URL
			if tc.name == "responses" {
				spec.BaseURL = up.URL + "/v1"
			}
			ch, waits := newModelTestChain(t, spec, nil, nil, modelTestEnv("K", "key"))
			var got modelTurn
			if _, err := ch.stream(context.Background(), modelUserReq("What's 2+2?"), got.emit, nil); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if got.Text == "" || calls != 2 || !reflect.DeepEqual(*waits, []time.Duration{2 * time.Second}) {
				t.Fatalf("text %q, %d calls, waits %v; want an answer after one 2s wait", got.Text, calls, *waits)
			}
		})
	}
}
