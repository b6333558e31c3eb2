package main

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// provFamily is one API family as its client uses it: a spec, the variable holding its
// key, the request path, and one call through the real client.
type provFamily struct {
	name, keyEnv, path, gatewayPath string
	spec                            modelSpec
	call                            func(spec modelSpec, env clientEnv) error
}

// provFamilies are the five clients that share providers.go's HTTP path.
func provFamilies() []provFamily {
	stream := func(newClient func(modelSpec, clientEnv) (modelClient, error)) func(modelSpec, clientEnv) error {
		return func(spec modelSpec, env clientEnv) error {
			c, err := newClient(spec, env)
			if err != nil {
				return err
			}
			req := &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}}
			return c.stream(context.Background(), req, func(modelEvent) {})
		}
	}
	chat := func(s modelSpec, e clientEnv) (modelClient, error) { return newOpenAIChatClient(s, e) }
	embed := func(spec modelSpec, env clientEnv) error {
		_, _, err := (&ragEmbedder{spec: spec, batch: 1}).request(context.Background(), env, []string{"hi"})
		return err
	}
	gem := "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
	return []provFamily{
		{"chat", "OPENAI_API_KEY", "/chat/completions", "/v1/chat/completions", modelSpec{Provider: "openai", Model: "gpt-4o"}, stream(chat)},
		{"responses", "OPENAI_API_KEY", "/responses", "/v1/responses", modelSpec{Provider: "openai", Model: "gpt-5"}, stream(newResponsesClient)},
		{"anthropic", "ANTHROPIC_API_KEY", "/v1/messages", "/v1/messages", modelSpec{Provider: "anthropic", Model: "claude-sonnet-4-0"}, stream(newAnthropicClient)},
		{"gemini", "GOOGLE_API_KEY", gem, gem, modelSpec{Provider: "google", Model: "gemini-2.5-flash"}, stream(newGeminiClient)},
		{"embeddings", "OPENAI_API_KEY", "/embeddings", "/v1/embeddings", modelSpec{Provider: "openai", Model: "text-embedding-3-small"}, embed},
	}
}

// A failed request reads the same for every client: the family, the redacted URL, the
// status and the provider's message; the status is kept for the retry rules.
func TestProviderHTTPErrorsAlike(t *testing.T) {
	for _, f := range provFamilies() {
		s := newProvServer(t, provReply{Status: 401, Body: `{"error":{"message":"bad key","type":"authentication_error"}}`})
		spec := f.spec
		spec.BaseURL = strings.Replace(s.URL, "http://", "http://user:secret@", 1)
		err := f.call(spec, provEnv(map[string]string{f.keyEnv: "k"}))
		want := f.name + `: POST "` + strings.Replace(s.URL, "http://", "http://user:xxxxx@", 1) + f.path
		var me *modelError
		if err == nil || !strings.HasPrefix(err.Error(), want) || !strings.HasSuffix(err.Error(), `: 401 Unauthorized: bad key (authentication_error)`) ||
			strings.Contains(err.Error(), "secret") || !errors.As(err, &me) || me.Status != 401 {
			t.Errorf("%s: err = %v; want %s…: 401 Unauthorized: bad key (authentication_error)", f.name, err, want)
		}
	}
}

// A missing key is reported when the client is used, not when it is built (agents whose
// keys are absent still load), in one text, and nothing is sent.
func TestProviderMissingKeyAlike(t *testing.T) {
	for _, f := range provFamilies() {
		s := newProvServer(t)
		spec := f.spec
		spec.BaseURL = s.URL
		err := f.call(spec, provEnv(nil))
		want := "model " + modelName(spec) + ": " + f.keyEnv + " environment variable is required"
		if err == nil || err.Error() != want || len(s.requests()) != 0 {
			t.Errorf("%s: err = %v after %d requests; want %q and none", f.name, err, len(s.requests()), want)
		}
	}
}

// Every client checks its base URL the same way when it is built.
func TestProviderBaseURLCheckedAlike(t *testing.T) {
	for _, f := range provFamilies() {
		spec := f.spec
		spec.BaseURL = "ftp://user:secret@h/v1"
		err := f.call(spec, provEnv(map[string]string{f.keyEnv: "k"}))
		want := "model " + modelName(spec) + `: base_url "ftp://user:xxxxx@h/v1" is not an http(s) URL`
		if err == nil || err.Error() != want {
			t.Errorf("%s: err = %v; want %q", f.name, err, want)
		}
	}
}

// In gateway mode every client posts to the gateway with the same routing headers and
// DOCKER_TOKEN in its family's auth header.
func TestProviderGatewayAlike(t *testing.T) {
	for _, f := range provFamilies() {
		s := newProvServer(t, provReply{Status: 500, Body: `{}`})
		env := provEnv(map[string]string{"DOCKER_TOKEN": "dt"})
		env.Gateway, env.GatewayToken = s.URL+"/", "gw-secret"
		spec := f.spec
		spec.Ref = "ref-" + f.name
		if err := f.call(spec, env); err == nil {
			t.Errorf("%s: a 500 from the gateway succeeded", f.name)
			continue
		}
		r := s.requests()[0]
		fam := providerAPIs[map[string]string{"chat": apiOpenAIChat, "responses": apiOpenAIResponses,
			"anthropic": apiAnthropic, "gemini": apiGoogle, "embeddings": apiEmbeddings}[f.name]]
		row, _ := providerByName(spec.Provider)
		for k, want := range map[string]string{
			"X-Cagent-Forward": strings.TrimRight(row.BaseURL, "/"), "X-Cagent-Provider": spec.Provider,
			"X-Cagent-Model": spec.Model, "X-Cagent-Model-Name": spec.Ref, gatewayTokenHeader: "gw-secret",
			"Authorization": "Bearer dt", fam.authHeader: map[bool]string{true: "Bearer dt", false: "dt"}[fam.authHeader == "Authorization"],
		} {
			if got := r.Header.Get(k); got != want {
				t.Errorf("%s: header %s = %q; want %q", f.name, k, got, want)
			}
		}
		if r.Path != f.gatewayPath {
			t.Errorf("%s: gateway path %s; want %s", f.name, r.Path, f.gatewayPath)
		}
	}
}

// A 200 answer that is not an event stream at all is an error naming the body's
// message, for every streaming client (it used to read as a cut stream on some).
func TestProviderNotAStreamAlike(t *testing.T) {
	for _, f := range provFamilies() {
		if f.name == "embeddings" {
			continue // a JSON answer is what embeddings expect
		}
		s := newProvServer(t, provReply{Status: 200, Body: `{"error":{"message":"gateway says no"}}`})
		spec := f.spec
		spec.BaseURL = s.URL
		err := f.call(spec, provEnv(map[string]string{f.keyEnv: "k"}))
		if err == nil || !strings.HasPrefix(err.Error(), f.name+": ") || !strings.Contains(err.Error(), "gateway says no") {
			t.Errorf("%s: err = %v; want the body's message", f.name, err)
		}
	}
}

// The config's `auto` model and key preflight, the cassette gateway's key injection
// and the prices all come from the one provider table.
func TestProviderTableDerived(t *testing.T) {
	for _, tt := range []struct {
		env             map[string]string
		provider, model string
		maxTokens       int64
	}{
		{map[string]string{"MISTRAL_API_KEY": "m", "OPENAI_API_KEY": "o"}, "openai", "gpt-5-mini", 32000},
		{map[string]string{"GOOGLE_GENAI_USE_VERTEXAI": "1"}, "google", "gemini-2.5-flash", 32000},
		{map[string]string{"AWS_PROFILE": "p"}, "amazon-bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", 32000},
		{nil, "dmr", "ai/qwen3:latest", 16000},
	} {
		p, m, n := providerAuto(func(k string) string { return tt.env[k] })
		if p != tt.provider || m != tt.model || n != tt.maxTokens {
			t.Errorf("auto with %v = %s/%s %d; want %s/%s %d", tt.env, p, m, n, tt.provider, tt.model, tt.maxTokens)
		}
	}
	for name, want := range map[string]string{"mistral": "MISTRAL_API_KEY", "azure": "AZURE_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "amazon-bedrock": "", "dmr": "", "mine": ""} {
		if got, _ := providerKeyEnv(name); got != want {
			t.Errorf("providerKeyEnv(%s) = %q; want %q", name, got, want)
		}
	}
	for host, want := range map[string][]string{
		"api.anthropic.com":                 {"X-Api-Key", "", "ANTHROPIC_API_KEY"},
		"generativelanguage.googleapis.com": {"X-Goog-Api-Key", "", "GOOGLE_API_KEY", "GEMINI_API_KEY"},
		"api.mistral.ai":                    {"Authorization", "Bearer ", "MISTRAL_API_KEY"},
	} {
		h, p, envs, ok := providerAuth(host)
		if got := append([]string{h, p}, envs...); !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("providerAuth(%s) = %q; want %q", host, got, want)
		}
	}
	if _, _, _, ok := providerAuth("localhost:11434"); ok {
		t.Errorf("providerAuth(ollama) found a key to inject")
	}
	if p := priceOf("gpt-4o-2024-08-06"); p.context != 128000 || p.in != 2.5 {
		t.Errorf("priceOf(gpt-4o-2024-08-06) = %+v", p)
	}
}

// Large images reach every provider byte for byte as encoding/json writes the request,
// though they are spliced in from the messages' strings rather than encoded: the body
// equals the one sent for small stand-ins (which go through encoding/json in full)
// with the images put in their place, and has a Content-Length. Bedrock's fake checks
// the SigV4 signature, which hashes the pieces, against the bytes it received.
func TestProviderRequestsSpliceImages(t *testing.T) {
	png, jpeg := strings.Repeat("iVBO", 40<<10), strings.Repeat("/9j/", 30<<10)
	svg := "data:image/svg+xml,<svg>" + strings.Repeat("<g/>", 20<<10) + "</svg>" // escaped: never spliced
	req := func(png, jpeg string) *modelRequest {
		return &modelRequest{Messages: []chatMessage{
			{Role: "system", Content: "Be brief."},
			{Role: "user", Content: "what are these?", MultiContent: []messagePart{
				{Type: "text", Text: "these <two> & that"},
				{Type: "image_url", ImageURL: &imageURL{URL: "data:image/png;base64," + png, Detail: "high"}},
				{Type: "image_url", ImageURL: &imageURL{URL: svg}},
				{Type: "image_url", ImageURL: &imageURL{URL: "data:image/jpeg;base64," + jpeg}},
				{Type: "image_url", ImageURL: &imageURL{URL: "data:image/png;base64," + png}}}},
			{Role: "assistant", Content: "Pictures."},
			{Role: "user", MultiContent: []messagePart{{Type: "image_url", ImageURL: &imageURL{URL: "data:image/jpeg;base64," + jpeg, Detail: "low"}}}},
		}}
	}
	check := func(name string, small, large []byte) {
		t.Helper()
		if !bytes.Contains(small, []byte("SMALLPNG")) || !bytes.Contains(small, []byte("SMALLJPEG")) {
			t.Fatalf("%s: the images are not in the request: %.500s", name, small)
		}
		want := strings.NewReplacer("SMALLPNG", png, "SMALLJPEG", jpeg).Replace(string(small))
		if string(large) != want {
			t.Errorf("%s: request (%d bytes) differs from encoding/json's (%d bytes)", name, len(large), len(want))
		}
	}
	for _, f := range provFamilies() {
		if f.name == "embeddings" {
			continue
		}
		no := provReply{Status: 400, Body: `{"error":{"message":"no"}}`}
		s := newProvServer(t, no, no)
		spec := f.spec
		spec.BaseURL = s.URL
		c, err := newModelClient(spec, provEnv(map[string]string{f.keyEnv: "k"}))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []*modelRequest{req("SMALLPNG", "SMALLJPEG"), req(png, jpeg)} {
			c.stream(context.Background(), r, func(modelEvent) {})
		}
		got := s.requests()
		if len(got) != 2 {
			t.Fatalf("%s: %d requests", f.name, len(got))
		}
		check(f.name, got[0].Raw, got[1].Raw)
		if got[1].Length != int64(len(got[1].Raw)) {
			t.Errorf("%s: Content-Length %d for %d bytes", f.name, got[1].Length, len(got[1].Raw))
		}
	}

	fb := newFakeBedrock(t, bedrockTestKeys, "us-east-1", bedrockTextReply("ok"), bedrockTextReply("ok"))
	c := newTestBedrock(t, fb, modelSpec{ProviderOpts: map[string]any{"region": "us-east-1"}}, bedrockKeyEnv(bedrockTestKeys))
	for _, r := range []*modelRequest{req("SMALLPNG", "SMALLJPEG"), req(png, jpeg)} {
		if _, err := provCollect(t, c, r); err != nil {
			t.Fatalf("bedrock: %v", err)
		}
	}
	got := fb.requests()
	check("bedrock", got[0].Raw, got[1].Raw)
}
