package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// headerRecorder is an HTTP server that records the headers of every request and
// answers 400; redirector 307-redirects every request to it, keeping path and query.
type headerRecorder struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func newHeaderRecorder(t *testing.T) (rec *headerRecorder, redirector *httptest.Server) {
	rec = &headerRecorder{}
	rec.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.headers = append(rec.headers, r.Header.Clone())
		rec.mu.Unlock()
		http.Error(w, `{"error":{"message":"recorded"}}`, http.StatusBadRequest)
	}))
	t.Cleanup(rec.Close)
	redirector = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, rec.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirector.Close)
	return rec, redirector
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
			rec, redirector := newHeaderRecorder(t)
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
