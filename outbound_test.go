package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// headerRecorder is an HTTP server that records the headers of every request and
// answers 400.
type headerRecorder struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func newHeaderRecorder(t *testing.T) *headerRecorder {
	rec := &headerRecorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.headers = append(rec.headers, r.Header.Clone())
		rec.mu.Unlock()
		http.Error(w, `{"error":{"message":"recorded"}}`, http.StatusBadRequest)
	}))
	t.Cleanup(rec.Close)
	return rec
}

// newRedirector 307-redirects every request to target, keeping path and query.
func newRedirector(t *testing.T, target string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(s.Close)
	return s
}

// leaked reports the recorded headers that carry secret, and how many requests arrived.
func (rec *headerRecorder) leaked(secret string) (leaks []string, n int) {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, h := range rec.headers {
		for k, vs := range h {
			for _, v := range vs {
				if strings.Contains(v, secret) {
					leaks = append(leaks, k+": "+v)
				}
			}
		}
	}
	return leaks, len(rec.headers)
}

// A redirect to another host must not carry the credentials configured for the first:
// provider keys, api tool headers, MCP remote headers (issue 22, finding 4).
func TestRedirectDropsConfiguredHeaders(t *testing.T) {
	const secret = "SECRET-d41d8cd9"
	model := func(provider, opts string) func(string) string {
		return func(base string) string {
			return fmt.Sprintf("models:\n  m:\n    provider: %s\n    model: x\n    base_url: %s\n%sagents:\n  root:\n    model: m\n", provider, base, opts)
		}
	}
	cases := []struct {
		name string
		yaml func(base string) string // the agent file, given the redirecting URL
		fake bool                     // the model is a fake OpenAI that calls tool "probe"
	}{
		{"openai", model("openai", ""), false},
		{"responses", model("openai", "    provider_opts:\n      api_type: openai_responses\n"), false},
		{"anthropic", model("anthropic", ""), false},
		{"gemini", model("google", ""), false},
		{"api tool", func(base string) string {
			return "    toolsets:\n      - type: api\n        api_config:\n          name: probe\n          method: GET\n          endpoint: " + base +
				"/probe\n          headers:\n            X-Access: " + secret + "\n"
		}, true},
		{"mcp streamable", func(base string) string {
			return "    toolsets:\n      - type: mcp\n        remote:\n          url: " + base +
				"/mcp\n          transport_type: streamable\n          headers:\n            X-Access: " + secret + "\n"
		}, true},
		{"mcp sse", func(base string) string {
			return "    toolsets:\n      - type: mcp\n        remote:\n          url: " + base +
				"/sse\n          transport_type: sse\n          headers:\n            X-Access: " + secret + "\n"
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := newHeaderRecorder(t)
			redirector := newRedirector(t, rec.URL)
			yaml := c.yaml(redirector.URL)
			if c.fake {
				f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "probe", Args: "{}"}}}, fakeTurn{Text: []string{"done"}})
				yaml = fakeAgentYAML(f.URL, yaml)
			}
			e := newTestEnv(t, map[string]string{"a.yaml": yaml})
			for _, k := range []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY"} {
				e.setenv(k, secret)
			}
			id := e.newSession(map[string]any{"tools_approved": true})
			e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "hi"}}).all()
			leaks, n := rec.leaked(secret)
			if n == 0 {
				t.Fatal("the redirect target saw no request")
			}
			if len(leaks) > 0 {
				t.Errorf("credentials followed the redirect: %v", leaks)
			}
		})
	}
}

// A base_url with a password must not show it in the error event of a failed request
// (issue 22, finding 9).
func TestProviderErrorRedactsBaseURLPassword(t *testing.T) {
	const password = "PASSWORD-9f2c"
	for _, c := range []struct{ name, provider, opts string }{
		{"openai", "openai", ""},
		{"responses", "openai", "    provider_opts:\n      api_type: openai_responses\n"},
		{"anthropic", "anthropic", ""},
		{"gemini", "google", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, `{"error":{"message":"bad key"}}`, http.StatusUnauthorized)
			}))
			t.Cleanup(p.Close)
			base := strings.Replace(p.URL, "://", "://user:"+password+"@", 1)
			yaml := fmt.Sprintf("models:\n  m:\n    provider: %s\n    model: x\n    base_url: %s\n%sagents:\n  root:\n    model: m\n", c.provider, base, c.opts)
			e := newTestEnv(t, map[string]string{"a.yaml": yaml})
			for _, k := range []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY"} {
				e.setenv(k, "k")
			}
			s := e.run("/api/sessions/"+e.newSession(nil)+"/agent/a", []map[string]any{{"role": "user", "content": "hi"}})
			ev := s.until("error")
			s.all()
			if !strings.Contains(fmt.Sprint(ev), "401") {
				t.Errorf("error event does not report the failure: %v", ev)
			}
			for _, raw := range s.raw {
				if strings.Contains(raw, password) {
					t.Errorf("event shows the base_url password: %s", raw)
				}
			}
		})
	}
}

// GET /api/agents/{id} shows no literal credential wherever the config holds one;
// only values that are exactly one environment reference stay (issue 22, finding 6).
func TestAgentConfigRedactsEverySecret(t *testing.T) {
	secrets := []string{"xaccess-literal", "s3cr3t$tail", "dbpass-literal", "pat-literal", "ghp_abcdefghijklmnop1234",
		"Xy7Zk2Lm9Qp4Rs8Tv1Wn3Bc5", "pw-in-userinfo", "tok-as-user", "sk-abcdefghijklmnop5678", "AIzaSyA1b2C3d4E5f6G7h8"}
	yaml := `models:
  m:
    provider: openai
    model: gpt-4o
    base_url: https://user:pw-in-userinfo@proxy.example/v1
    token_key: MY_KEY
    provider_opts:
      api_key: sk-abcdefghijklmnop5678
agents:
  root:
    model: m
    instruction: Call the API with AIzaSyA1b2C3d4E5f6G7h8 when asked.
    toolsets:
      - type: mcp
        remote:
          url: https://hooks.example.com/services/T0001/Xy7Zk2Lm9Qp4Rs8Tv1Wn3Bc5/mcp
          transport_type: streamable
          headers:
            X-Access: xaccess-literal
            Authorization: Bearer s3cr3t$tail
            X-Ref: ${env.REF_TOKEN}
      - type: mcp
        command: server
        args: ["--token", "ghp_abcdefghijklmnop1234", "${env.ARG_TOKEN}"]
        env:
          DB_PASS: dbpass-literal
          GITHUB_PAT: pat-literal
          FROM_ENV: $HOST_PAT
      - type: api
        api_config:
          name: probe
          endpoint: https://tok-as-user@api.example.com/v2/items
`
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	code, b := e.do("GET", "/api/agents/a", nil)
	if code != 200 {
		t.Fatalf("GET /api/agents/a = %d %s", code, b)
	}
	body := string(b)
	for _, s := range secrets {
		if strings.Contains(body, s) {
			t.Errorf("%q shown: %s", s, body)
		}
	}
	for _, kept := range []string{`"X-Ref":"${env.REF_TOKEN}"`, `"${env.ARG_TOKEN}"`, `"FROM_ENV":"$HOST_PAT"`, `"token_key":"MY_KEY"`,
		"https://user:REDACTED@proxy.example/v1", "https://hooks.example.com/services/T0001/REDACTED/mcp", "api.example.com/v2/items"} {
		if !strings.Contains(body, kept) {
			t.Errorf("%s missing: %s", kept, body)
		}
	}
}

// The --record gateway adds real provider keys, so it must not be an open relay on
// loopback: it needs its per-process secret, its own Host, and a provider base URL as
// the forward target (issue 22, finding 10).
func TestRecordGatewayIsNoOpenRelay(t *testing.T) {
	const key = "sk-real-provider-key"
	up := newHeaderRecorder(t)     // stands for api.openai.com
	evil := newHeaderRecorder(t)   // a host no config names
	custom := newHeaderRecorder(t) // a configured custom base_url
	rec := startCassetteForTest(t, cassetteOptions{Path: filepath.Join(t.TempDir(), "rec.yaml"), Mode: "record",
		Getenv:   func(k string) string { return map[string]string{"OPENAI_API_KEY": key}[k] },
		Upstream: map[string]string{"https://api.openai.com": up.URL},
		Allow:    func(base string) bool { return base == custom.URL+"/v1" }})
	send := func(forward, token, host string) int {
		req, _ := http.NewRequest("POST", rec.URL()+"/v1/chat/completions", strings.NewReader(`{}`))
		req.Header.Set("X-Cagent-Forward", forward)
		if token != "" {
			req.Header.Set(gatewayTokenHeader, token)
		}
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		name, forward, token, host string
		want                       int
	}{
		{"no secret", "https://api.openai.com/v1", "", "", http.StatusUnauthorized},
		{"wrong secret", "https://api.openai.com/v1", "guess", "", http.StatusUnauthorized},
		{"foreign Host", "https://api.openai.com/v1", rec.Token(), "rebound.example:80", http.StatusForbidden},
		{"unknown target", evil.URL, rec.Token(), "", http.StatusForbidden},
		{"unknown target with a provider path", evil.URL + "/v1", rec.Token(), "", http.StatusForbidden},
	} {
		if got := send(c.forward, c.token, c.host); got != c.want {
			t.Errorf("%s: status %d; want %d", c.name, got, c.want)
		}
	}
	if _, n := up.leaked(key); n != 0 {
		t.Errorf("refused requests reached the provider %d times", n)
	}
	if _, n := evil.leaked(key); n != 0 {
		t.Errorf("the gateway forwarded %d requests to an unconfigured host", n)
	}
	// Our own clients still get through, to built-in and configured base URLs.
	if got := send("https://api.openai.com/v1", rec.Token(), ""); got != http.StatusBadRequest { // the recorder's answer
		t.Errorf("provider request: status %d; want the provider's 400", got)
	}
	if leaks, n := up.leaked(key); n != 1 || len(leaks) != 1 {
		t.Errorf("provider saw %d requests, key injected %d times; want 1 and 1", n, len(leaks))
	}
	if got := send(custom.URL+"/v1", rec.Token(), ""); got != http.StatusBadRequest {
		t.Errorf("configured base URL: status %d; want the server's 400", got)
	}
	if leaks, n := custom.leaked(key); n != 1 || len(leaks) != 0 {
		t.Errorf("custom base URL saw %d requests, key %d times; want 1 and none", n, len(leaks))
	}
}

// serve --record passes the secret to its own model clients and allows the base_url
// the agent config names.
func TestRecordServesConfiguredBaseURL(t *testing.T) {
	t.Setenv("OPENAI_API_KEY", "k") // the config check wants it even when the gateway holds the keys
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"recorded answer"}})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(fakeAgentYAML(f.URL, "")), 0o644)
	cassette := filepath.Join(dir, "rec.yaml")
	addr, stop := startServe(t, filepath.Join(dir, "a.yaml"), "--record", cassette, "-l", "127.0.0.1:0",
		"--working-dir", dir, "-s", filepath.Join(dir, "s.db"))
	resp, err := http.Post("http://"+addr+"/api/sessions", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var sess struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	resp, err = http.Post("http://"+addr+"/api/sessions/"+sess.ID+"/agent/a", "application/json", strings.NewReader(`[{"role":"user","content":"hi"}]`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "recorded answer") {
		t.Fatalf("run through the record gateway: %s", b)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	data, err := os.ReadFile(cassette)
	if err != nil || !strings.Contains(string(data), "url: "+f.URL+"/v1/chat/completions") {
		t.Errorf("cassette does not hold the request: %v\n%s", err, data)
	}
}

// A base_url that does not parse is reported without its password.
func TestInvalidBaseURLErrorRedactsPassword(t *testing.T) {
	e := newTestEnv(t, map[string]string{"a.yaml": "providers:\n  p:\n    base_url: http://u:pw-in-bad-url@host/%zz\nagents:\n  root:\n    model: p/x\n"})
	code, b := e.do("GET", "/api/agents", nil)
	if code != 200 || !strings.Contains(string(b), "invalid base_url") || strings.Contains(string(b), "pw-in-bad-url") {
		t.Errorf("GET /api/agents = %d %s; want the load error without the password", code, b)
	}
}
