package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// runOverHTTP creates a session on a server started by startServe, runs agent a with
// one message and returns the SSE events.
func runOverHTTP(t *testing.T, addr, msg string) []map[string]any {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/api/sessions", "application/json", strings.NewReader(`{"title":"t"}`))
	if err != nil {
		t.Fatal(err)
	}
	var sess struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	body, _ := json.Marshal([]map[string]string{{"content": msg}})
	resp, err = http.Post("http://"+addr+"/api/sessions/"+sess.ID+"/agent/a", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var evs []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev map[string]any
			json.Unmarshal([]byte(d), &ev)
			evs = append(evs, ev)
		}
	}
	return evs
}

// TestServeModelsGatewayAndCodeMode: `serve api --models-gateway URL --code-mode-tools`
// starts (it used to refuse both flags); every model request goes to the gateway with
// X-Cagent-Forward naming the real base URL and DOCKER_TOKEN as the key (no provider
// key needed), and code mode is reported as a warning event at run start.
func TestServeModelsGatewayAndCodeMode(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"via gateway"}})
	var mu sync.Mutex
	var seen []http.Header
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		if r.URL.Path != "/v1/chat/completions" {
			http.Error(w, "unexpected path "+r.URL.Path, 404)
			return
		}
		f.serve(w, r)
	}))
	defer gw.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("agents:\n  root:\n    model: openai/gpt-4o\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "keys.env"), []byte("DOCKER_TOKEN=dt-secret\n"), 0o600)
	t.Setenv("OPENAI_API_KEY", "")
	addr, stop := startServe(t, "a.yaml", "--working-dir", dir, "--env-from-file", "keys.env", "-l", "127.0.0.1:0",
		"--models-gateway", gw.URL+"/", "--code-mode-tools")
	defer stop()
	evs := runOverHTTP(t, addr, "hi")
	var text string
	for _, ev := range evs {
		if ev["type"] == "agent_choice" {
			text += ev["content"].(string)
		}
	}
	if text != "via gateway" {
		t.Fatalf("answer = %q; events %v", text, evs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no request reached the gateway")
	}
	for _, h := range seen {
		if h.Get("X-Cagent-Forward") != "https://api.openai.com/v1" || h.Get("Authorization") != "Bearer dt-secret" {
			t.Errorf("gateway request headers: forward %q, auth %q", h.Get("X-Cagent-Forward"), h.Get("Authorization"))
		}
	}
	if w := warningsOf(evs); !slices.Contains(w, codeModeWarning) {
		t.Errorf("warnings = %q; want the code mode one", w)
	}
}

// TestParseServeGatewayFlags: the two flags parse; the gateway cannot be combined with
// a cassette, which brings its own.
func TestParseServeGatewayFlags(t *testing.T) {
	o, err := parseServeFlags([]string{"a.yaml", "--code-mode-tools", "--models-gateway", "http://gw:1"}, io.Discard)
	if err != nil || !o.codeMode || o.modelsGateway != "http://gw:1" {
		t.Fatalf("parse = %+v, %v", o, err)
	}
	if _, err := parseServeFlags([]string{"a.yaml", "--fake", "c", "--models-gateway", "http://gw:1"}, io.Discard); err == nil {
		t.Error("--models-gateway with --fake accepted")
	}
	for _, tc := range []struct {
		flag, env, want, wantErr string
	}{
		{flag: " http://gw:1/ ", want: "http://gw:1"},
		{env: "https://env-gw", want: "https://env-gw"},
		{flag: "http://flag", env: "https://env-gw", want: "http://flag"},
		{flag: "ftp://gw", wantErr: "not an http(s) URL"},
	} {
		got, err := modelsGateway(&serveOptions{modelsGateway: tc.flag}, func(k string) string {
			if k == "CAGENT_MODELS_GATEWAY" {
				return tc.env
			}
			return ""
		})
		if got != tc.want || (tc.wantErr != "") != (err != nil) || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("gateway(%q, env %q) = %q, %v", tc.flag, tc.env, got, err)
		}
	}
}

// TestIgnoredKeysWarn: keys agentd cannot act on are named in warning events at run
// start — once per run, not at every turn.
func TestIgnoredKeysWarn(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "think", Args: `{"thought":"x"}`}}}, fakeTurn{Text: []string{"ok"}})
	yaml := strings.Replace(fakeAgentYAML(f.URL, "    code_mode_tools: true\n    structured_output:\n      name: answer\n      schema: {type: object}\n    toolsets:\n      - type: think\n"),
		"    base_url: "+f.URL+"/v1\n", "    base_url: "+f.URL+"/v1\n    provider_opts:\n      context_size: 8192\n      speculative_draft_model: x\n", 1)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	got := warningsOf(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all())
	want := []string{codeModeWarning,
		"model fake: provider_opts.context_size is not supported and is ignored",
		"model fake: provider_opts.speculative_draft_model is not supported and is ignored"}
	if !slices.Equal(got, want) {
		t.Fatalf("warnings = %q\nwant %q", got, want)
	}
}

// TestStructuredOutputWarnsOnBedrock: Bedrock's Converse API has no response schema,
// so an agent asking for one there is told, not silently given free text.
func TestStructuredOutputWarnsOnBedrock(t *testing.T) {
	f, err := loadAgentFile("b.yaml", []byte(`agents:
  root:
    model: amazon-bedrock/anthropic.claude-sonnet-4-v1:0
    structured_output:
      name: answer
      schema: {type: object}
  plain:
    model: amazon-bedrock/anthropic.claude-sonnet-4-v1:0
`))
	if err != nil {
		t.Fatal(err)
	}
	got := ignoredKeyWarnings(f, f.Agents[0], false)
	if len(got) != 1 || !strings.Contains(got[0], "structured_output is not supported on Amazon Bedrock") {
		t.Errorf("root warnings = %q", got)
	}
	if got := ignoredKeyWarnings(f, f.Agents[1], false); len(got) != 0 {
		t.Errorf("plain warnings = %q", got)
	}
}
