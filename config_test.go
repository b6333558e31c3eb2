package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var cfgUpdate = flag.Bool("update-config", false, "rewrite testdata/config golden files")

// cfgLoad loads src as agent.yaml and fails the test on error.
func cfgLoad(t *testing.T, src string) *agentFile {
	t.Helper()
	f, err := loadAgentFile("agent.yaml", []byte(src))
	if err != nil {
		t.Fatalf("loadAgentFile: %v\n%s", err, src)
	}
	return f
}

func cfgEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestConfigFullFileJSONShape(t *testing.T) {
	src, err := os.ReadFile("testdata/config/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := loadAgentFile("full.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cfgGolden(t, "testdata/config/full.json", got)

	red, err := f.redactedJSON()
	if err != nil {
		t.Fatal(err)
	}
	var ind bytes.Buffer
	if err := json.Indent(&ind, red, "", "  "); err != nil {
		t.Fatal(err)
	}
	cfgGolden(t, "testdata/config/full.redacted.json", ind.Bytes())
}

func cfgGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	got = append(bytes.TrimSpace(got), '\n')
	if *cfgUpdate {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run with -update-config to inspect):\n%s", path, got)
	}
}

func TestConfigFullFileDecoded(t *testing.T) {
	src, _ := os.ReadFile("testdata/config/full.yaml")
	f, err := loadAgentFile("full.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	if f.path != "full.yaml" || f.Version != "7" {
		t.Errorf("path %q version %q", f.path, f.Version)
	}
	root := f.agent("root")
	if root == nil || f.defaultAgent() != root {
		t.Fatal("root agent missing or not default")
	}
	if root.MaxIterations != 5 || root.NumHistoryItems != 1 {
		t.Errorf("int coercion: max_iterations %d num_history_items %d", root.MaxIterations, root.NumHistoryItems)
	}
	if root.Description != "Lead ${env.TEAM || 'team'}" {
		t.Errorf("description is expanded at use, not load: %q", root.Description)
	}
	if !slices.Equal(root.SkillSources, []string{"local"}) {
		t.Errorf("skills: %v", root.SkillSources)
	}
	if c, _ := root.Commands.get("review"); c.Instruction != "Review the diff" {
		t.Errorf("description-only command gets it as instruction: %+v", c)
	}
	if fb := root.Fallback; fb.Retries != -1 || fb.CooldownDur.Seconds() != 60 {
		t.Errorf("fallback %+v", fb)
	}
	if h := root.HookSet; h == nil || h.PreToolUse[0].Hooks[0].Timeout != 5 {
		t.Errorf("hooks %+v", h)
	}
	gh := root.Toolsets[0]
	if gh.Command != "github-mcp" || gh.Ref != "" || !reflect.DeepEqual(gh.Tools, []string{"search_code"}) {
		t.Errorf("mcps ref not merged: %+v", gh)
	}
	if v, _ := gh.Env.get("EXTRA"); v != "1" || !reflect.DeepEqual(gh.Env.Keys, []string{"GITHUB_TOKEN", "EXTRA"}) {
		t.Errorf("env merge (agent wins, definition order first): %+v", gh.Env)
	}
	if fs := root.Toolsets[1]; !fs.Defer.All || fs.IgnoreVCS == nil || *fs.IgnoreVCS {
		t.Errorf("filesystem toolset %+v", fs)
	}
	if h := f.agent("helper"); h.Description != "5" {
		t.Errorf("scalar to string: %q", h.Description)
	}
	// Inline and alloy members are added to models, after the named ones.
	wantModels := []string{"fast", "anthropic/claude-sonnet-4-5", "openai/gpt-4o"}
	if !reflect.DeepEqual(f.Models.Keys, wantModels) {
		t.Errorf("models %v, want %v", f.Models.Keys, wantModels)
	}
	fast, _ := f.Models.get("fast")
	if fast.ParallelToolCalls == nil || !*fast.ParallelToolCalls || *fast.Temperature != 0.2 || *fast.MaxTokens != 1000 {
		t.Errorf("fast %+v", fast)
	}
	if fast.ThinkingBudget != int64(1024) {
		t.Errorf("quoted thinking_budget is an int: %#v", fast.ThinkingBudget)
	}
	if inl, _ := f.Models.get("openai/gpt-4o"); inl.ParallelToolCalls != nil {
		t.Errorf("inline models get no parallel_tool_calls: %+v", inl)
	}
}

func TestConfigEmpty(t *testing.T) {
	for _, src := range []string{"", "# nothing\n", "agents: {}\n", "agents:\n"} {
		f := cfgLoad(t, src)
		if len(f.Agents) != 0 || f.defaultAgent() != nil || f.Version != "7" {
			t.Errorf("%q: %+v", src, f)
		}
		b, _ := json.Marshal(f)
		if string(b) != `{"version":"7","metadata":{}}` {
			t.Errorf("%q: JSON %s", src, b)
		}
	}
}

func TestConfigDefaultAgentIsFirstWithoutRoot(t *testing.T) {
	f := cfgLoad(t, "agents:\n  b:\n    model: openai/x\n  a:\n    model: openai/x\n")
	if f.defaultAgent().Name != "b" || f.agent("a") == nil || f.agent("root") != nil {
		t.Errorf("default %q", f.defaultAgent().Name)
	}
}

func TestConfigCoercions(t *testing.T) {
	f := cfgLoad(t, `agents:
  root:
    model: openai/gpt-4o
    description: 1.50
    welcome_message: true
    instruction: ~
    max_iterations: "7"
    num_history_items: "010"
    add_date: null
models:
  m:
    provider: openai
    model: 4
    max_tokens: 1.5
    temperature: 1
    thinking_budget: high
    parallel_tool_calls: false
`)
	a := f.agent("root")
	if a.Description != "1.50" || a.WelcomeMessage != "true" || a.Instruction != "" || a.MaxIterations != 7 || a.NumHistoryItems != 10 || a.AddDate {
		t.Errorf("agent %+v", a)
	}
	m, _ := f.Models.get("m")
	if m.Model != "4" || *m.MaxTokens != 1 || *m.Temperature != 1 || m.ThinkingBudget != "high" || *m.ParallelToolCalls {
		t.Errorf("model %+v", m)
	}
}

func TestConfigThinkingBudgetMapping(t *testing.T) {
	f, err := loadAgentFile("agent.yaml", []byte("models:\n  e:\n    model: x\n    thinking_budget:\n      effort: minimal\n  t:\n    model: x\n    thinking_budget: {tokens: 2048}\nagents: {root: {model: e}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := f.Models.get("e")
	tk, _ := f.Models.get("t")
	if e.ThinkingBudget != "minimal" || tk.ThinkingBudget != int64(2048) {
		t.Errorf("budgets = %#v, %#v; want \"minimal\", 2048", e.ThinkingBudget, tk.ThinkingBudget)
	}
}

// TestConfigDecodeErrors checks positions and messages of strict decoding.
func TestConfigDecodeErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"unknown agent field", "agents:\n  root:\n    model: openai/x\n\n\n    bogus: 1\n",
			`agent.yaml:6:5: unknown field "bogus" in agent "root"`},
		{"keys are case-sensitive", "agents:\n  root:\n    Model: openai/x\n",
			`agent.yaml:3:5: unknown field "Model" in agent "root"`},
		{"unknown top-level", "agentz: {}\n", `agent.yaml:1:1: unknown field "agentz"`},
		{"unknown toolset field", "agents:\n  root:\n    toolsets:\n      - type: shell\n        colour: red\n",
			`agent.yaml:5:9: unknown field "colour" in toolset 0 of agent "root"`},
		{"unknown model field", "models:\n  m:\n    provider: openai\n    temprature: 1\n",
			`agent.yaml:4:5: unknown field "temprature" in model "m"`},
		{"string for list", "agents:\n  root:\n    sub_agents: helper\n",
			`agent.yaml:3:17: string was used where sequence is expected`},
		{"list for string", "agents:\n  root:\n    model: [a, b]\n",
			`agent.yaml:3:12: sequence was used where string is expected`},
		{"agents as list", "agents:\n  - root\n", `agent.yaml:2:3: sequence was used where mapping is expected`},
		{"bool yes", "agents:\n  root:\n    add_date: yes\n", `agent.yaml:3:15: string was used where boolean is expected`},
		{"bool quoted", "agents:\n  root:\n    add_date: \"true\"\n", `agent.yaml:3:15: string was used where boolean is expected`},
		{"bool one", "agents:\n  root:\n    add_date: 1\n", `agent.yaml:3:15: integer was used where boolean is expected`},
		{"int word", "agents:\n  root:\n    max_iterations: many\n", `agent.yaml:3:21: cannot use "many" as an integer`},
		{"int bool", "agents:\n  root:\n    max_iterations: true\n", `agent.yaml:3:21: boolean was used where integer is expected`},
		{"toolset matrix", "agents:\n  root:\n    toolsets:\n      - type: shell\n        path: x\n",
			`agent.yaml:4:9: path can only be used with type 'memory' or 'tasks'`},
		{"mcp needs a source", "agents:\n  root:\n    toolsets:\n      - type: mcp\n",
			`agent.yaml:4:9: either command, remote or ref must be set`},
		{"mcp one source", "agents:\n  root:\n    toolsets:\n      - type: mcp\n        command: x\n        ref: docker:y\n",
			`agent.yaml:4:9: either command, remote or ref must be set, but only one of those`},
		{"a2a url", "agents:\n  root:\n    toolsets:\n      - type: a2a\n", `agent.yaml:4:9: a2a toolset requires a url to be set`},
		{"model_picker models", "agents:\n  root:\n    toolsets:\n      - type: model_picker\n",
			`agent.yaml:4:9: model_picker toolset requires at least one model in the 'models' list`},
		{"cooldown int", "agents:\n  root:\n    fallback:\n      cooldown: 30\n",
			`agent.yaml:4:17: invalid duration format "30": time: missing unit in duration "30"`},
		{"retries", "agents:\n  root:\n    fallback:\n      retries: -2\n",
			`agent.yaml:4:16: fallback.retries must be >= -1 (use -1 for no retries, 0 for default)`},
		{"cooldown negative", "agents:\n  root:\n    fallback:\n      cooldown: -1s\n",
			`agent.yaml:4:17: fallback.cooldown must be non-negative`},
		{"first_byte_timeout unit", "models:\n  m:\n    provider: openai\n    first_byte_timeout: 60\n",
			`agent.yaml:4:25: invalid duration format "60": time: missing unit in duration "60"`},
		{"idle_timeout negative", "models:\n  m:\n    provider: openai\n    idle_timeout: -2m\n",
			`agent.yaml:4:19: idle_timeout must be non-negative`},
		{"hook without hooks", "agents:\n  root:\n    hooks:\n      pre_tool_use:\n        - matcher: x\n",
			`agent.yaml:5:11: hooks.pre_tool_use[0]: at least one hook is required`},
		{"hook type", "agents:\n  root:\n    hooks:\n      session_start:\n        - command: x\n",
			`agent.yaml:5:11: hooks.session_start[0]: type is required`},
		{"hook type unsupported", "agents:\n  root:\n    hooks:\n      session_end:\n        - type: prompt\n",
			`agent.yaml:5:11: hooks.session_end[0]: unsupported hook type 'prompt' (only 'command' is supported)`},
		{"hook command", "agents:\n  root:\n    hooks:\n      session_end:\n        - type: command\n",
			`agent.yaml:5:11: hooks.session_end[0]: command is required for command hooks`},
		{"hook matcher", "agents:\n  root:\n    hooks:\n      pre_tool_use:\n        - matcher: \"shell(\"\n          hooks: [{type: command, command: x}]\n",
			"agent.yaml:5:11: hooks.pre_tool_use[0]: invalid matcher \"shell(\": error parsing regexp: missing closing ): `shell(`"},
		{"command empty", "agents:\n  root:\n    commands:\n      x: {}\n",
			`agent.yaml:4:10: command "x": command must have at least 'instruction' or 'description'`},
		{"skills shape", "agents:\n  root:\n    skills: {a: 1}\n", `agent.yaml:3:13: skills must be a boolean or a list of sources`},
		{"mcps non-docker ref", "mcps:\n  gh:\n    ref: other\n",
			`agent.yaml:3:5: MCP definition 'gh': only docker refs are supported (e.g., 'docker:context7')`},
		{"toolset headers", "agents:\n  root:\n    toolsets:\n      - type: mcp\n        command: x\n        headers: {A: b}\n",
			`agent.yaml:4:9: headers can only be used with type 'openapi' or 'a2a'`},
		{"remote headers", "agents:\n  root:\n    toolsets:\n      - type: openapi\n        url: https://x\n        remote: {headers: {A: b}}\n",
			`agent.yaml:4:9: remote headers can only be used with type 'mcp' or 'a2a'`},
		{"env on fetch", "agents:\n  root:\n    toolsets:\n      - type: fetch\n        env: {A: b}\n",
			`agent.yaml:4:9: env can only be used with type 'shell', 'script', 'mcp' or 'lsp'`},
		{"deny glob", "agents: {}\npermissions:\n  deny: [\"shell:cmd=[\"]\n",
			`agent.yaml:3:10: pattern "shell:cmd=[": malformed glob "["`},
		{"allow condition", "agents: {}\npermissions:\n  allow:\n    - ok\n    - \"shell:cmd=x:oops\"\n",
			`agent.yaml:5:7: pattern "shell:cmd=x:oops": "oops" is not a key=value condition`},
		{"ask empty", "agents: {}\npermissions:\n  ask: [\"\"]\n", `agent.yaml:3:9: empty pattern`},
		{"thinking_budget both", "models:\n  m:\n    model: x\n    thinking_budget: {effort: low, tokens: 5}\n",
			`agent.yaml:4:44: thinking_budget takes effort or tokens, not both`},
		{"thinking_budget empty", "models:\n  m:\n    model: x\n    thinking_budget: {}\n", `agent.yaml:4:22: thinking_budget needs effort or tokens`},
		{"thinking_budget key", "models:\n  m:\n    model: x\n    thinking_budget: {level: 1}\n", `agent.yaml:4:23: unknown field "level" in thinking_budget`},
		{"thinking_budget tokens", "models:\n  m:\n    model: x\n    thinking_budget: {tokens: lots}\n", `agent.yaml:4:31: cannot use "lots" as an integer`},
		{"thinking_budget list", "models:\n  m:\n    model: x\n    thinking_budget: [1]\n", `agent.yaml:4:22: sequence was used where integer, string or mapping is expected`},
		{"unsupported version", "version: 9\nagents: {}\n", `unsupported config version: 9 (valid versions: 0, 1, 2, 3, 4, 5, 6, 7)`},
		{"version as float", "version: 2.0\n", `unsupported config version: 2.0 (valid versions: 0, 1, 2, 3, 4, 5, 6, 7)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadAgentFile("agent.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("loaded, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %q\nwant %q", err, tt.want)
			}
		})
	}
}

func TestConfigDuplicateKey(t *testing.T) {
	_, err := loadAgentFile("agent.yaml", []byte("agents:\n  root:\n    model: a/b\n    model: c/d\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "agent.yaml:4:5: ") || !strings.Contains(err.Error(), `"model"`) {
		t.Errorf("got %v", err)
	}
}

// TestConfigValidationMessages checks the §11 texts; several problems are joined.
func TestConfigValidationMessages(t *testing.T) {
	_, err := loadAgentFile("agent.yaml", []byte(`agents:
  root:
    model: nope
    sub_agents: [ghost, docker.io/org/agent]
    handoffs: [phantom]
    skills: [local, ftp://x]
    toolsets:
      - type: mcp
        ref: missing
models:
  router:
    provider: openai
    model: gpt-4o
    routing:
      - model: absent
        examples: [hi]
providers:
  bad/name:
    base_url: https://x
  nourl:
    api_type: openai_chatcompletions
  badtype:
    api_type: soap
    base_url: https://x
`))
	if err == nil {
		t.Fatal("loaded")
	}
	want := []string{
		"provider 'bad/name': name cannot contain '/'",
		"provider 'nourl': base_url is required",
		"provider 'badtype': invalid api_type 'soap' (must be one of: openai_chatcompletions, openai_responses)",
		"agent 'root' references non-existent model 'nope'",
		"routing rule 0 in model 'router' references non-existent model 'absent'",
		"agent 'root' references non-existent MCP definition 'missing'",
		"agent 'root' references non-existent sub-agent 'ghost'",
		"agent 'root' references non-existent handoff agent 'phantom'",
		"agent 'root' has unknown skills source 'ftp://x' (must be 'local' or an HTTP/HTTPS URL)",
	}
	if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, want) {
		t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

func TestConfigAlloyAndRAGModels(t *testing.T) {
	f := cfgLoad(t, `agents:
  root:
    model: " a , openai/gpt-4o ,, "
    rag: [docs]
models:
  a:
    model: anthropic/claude-sonnet-4-5,google/gemini-2.5-flash
rag:
  docs:
    docs: [./docs]
    strategies:
      - type: chunked-embeddings
        embedding_model: openai/text-embedding-3-small
        model: openai/small
        database: ./x.db
        vector_dimensions: 1536
`)
	// The agent's model is rewritten with the alloy expanded, like the reference.
	if m := f.agent("root").Model; m != "anthropic/claude-sonnet-4-5,google/gemini-2.5-flash,openai/gpt-4o" {
		t.Errorf("agent model %q", m)
	}
	// Only strategies' `model` is a model reference (embedding_model is the RAG
	// builder's business).
	want := []string{"a", "anthropic/claude-sonnet-4-5", "google/gemini-2.5-flash", "openai/gpt-4o", "openai/small"}
	if !reflect.DeepEqual(f.Models.Keys, want) {
		t.Errorf("models %v", f.Models.Keys)
	}
	raw, _ := f.RAG.get("docs")
	if !strings.Contains(string(raw), `"vector_dimensions":1536`) || !strings.HasPrefix(string(raw), `{"docs":["./docs"],"strategies"`) {
		t.Errorf("rag JSON %s", raw)
	}
	_, err := loadAgentFile("agent.yaml", []byte("agents:\n  root:\n    model: x\nrag:\n  r:\n    strategies:\n      - type: bm25\n        model: ghost\n      - type: x\n        model: [1]\n"))
	wantErr := "agent 'root' references non-existent model 'x'\n" +
		"RAG strategy 'bm25' in RAG 'r' references non-existent model 'ghost'\n" +
		"RAG strategy 'x' in RAG 'r' has non-string model value"
	if err == nil || err.Error() != wantErr {
		t.Errorf("got %v", err)
	}
}

// TestConfigVersionMigration covers each version's own rules and the upgrade to v7.
func TestConfigVersionMigration(t *testing.T) {
	t.Run("v0", func(t *testing.T) {
		f := cfgLoad(t, `version: "0"
agents:
  root:
    model: m
    think: true
    todo:
      shared: true
    memory:
      path: ./mem.db
    toolsets:
      - type: mcp
        command: srv
models:
  m:
    type: openai
    model: gpt-4o
`)
		if f.Version != "0" {
			t.Errorf("version %q", f.Version)
		}
		var types []string
		for _, ts := range f.Agents[0].Toolsets {
			types = append(types, ts.Type)
		}
		if !reflect.DeepEqual(types, []string{"todo", "think", "memory", "mcp"}) {
			t.Errorf("toolsets %v", types)
		}
		if ts := f.Agents[0].Toolsets; !ts[0].Shared || ts[2].Path != "./mem.db" {
			t.Errorf("todo/memory %+v %+v", ts[0], ts[2])
		}
		if m, _ := f.Models.get("m"); m.Provider != "openai" {
			t.Errorf("type→provider: %+v", m)
		}
	})
	t.Run("v0 todo bool, memory without path", func(t *testing.T) {
		f := cfgLoad(t, "version: 0\nagents:\n  root:\n    todo: true\n    memory: {}\n")
		if ts := f.Agents[0].Toolsets; len(ts) != 1 || ts[0].Type != "todo" || ts[0].Shared {
			t.Errorf("%+v", ts)
		}
	})
	t.Run("v1 workflow dropped", func(t *testing.T) {
		f := cfgLoad(t, "version: \"1\"\nworkflow:\n  - type: agent\n    name: root\nagents:\n  root:\n    toolsets:\n      - type: shell\n        env_file: \"\"\n")
		if b, _ := json.Marshal(f); strings.Contains(string(b), "workflow") {
			t.Errorf("%s", b)
		}
	})
	errs := []struct{ name, src, want string }{
		{"v0 provider unknown", "version: \"0\"\nmodels:\n  m:\n    provider: openai\n", `agent.yaml:4:5: unknown field "provider" in model "m"`},
		{"v1 type unknown", "version: \"1\"\nmodels:\n  m:\n    type: openai\n", `agent.yaml:4:5: unknown field "type" in model "m"`},
		{"v1 think unknown", "version: \"1\"\nagents:\n  root:\n    think: true\n", `agent.yaml:4:5: unknown field "think" in agent "root"`},
		{"v0 top-level env", "version: \"0\"\nenv:\n  A: b\n", `agent.yaml:3:3: top-level Env is not supported anymore`},
		{"v1 model env", "version: \"1\"\nmodels:\n  m:\n    env:\n      A: b\n", `agent.yaml:5:7: model Env is not supported anymore`},
		{"v1 env_file", "version: \"1\"\nagents:\n  root:\n    toolsets:\n      - type: shell\n        env_file: [.env]\n",
			`agent.yaml:6:19: toolset Envfiles is not supported anymore`},
		{"v2 env unknown", "version: \"2\"\nenv:\n  A: b\n", `agent.yaml:2:1: unknown field "env"`},
		{"v0 mcp source", "version: \"0\"\nagents:\n  root:\n    toolsets:\n      - type: mcp\n", `agent.yaml:5:9: either command or remote must be set`},
		{"v1 ref must be docker", "version: \"1\"\nagents:\n  root:\n    toolsets:\n      - type: mcp\n        ref: ctx\n",
			`agent.yaml:5:9: only docker refs are supported for MCP tools, e.g., 'docker:context7'`},
		{"v5 memory path", "version: \"5\"\nagents:\n  root:\n    toolsets:\n      - type: memory\n",
			`agent.yaml:5:9: memory toolset requires a path to be set`},
		{"v4 skills list", "version: \"4\"\nagents:\n  root:\n    skills: [local]\n", `agent.yaml:4:13: sequence was used where boolean is expected`},
		{"v3 fallback unknown", "version: \"3\"\nagents:\n  root:\n    fallback: {}\n", `agent.yaml:4:5: unknown field "fallback" in agent "root"`},
		{"v5 sandbox paths", "version: \"5\"\nagents:\n  root:\n    toolsets:\n      - type: shell\n        sandbox:\n          image: x\n",
			`agent.yaml:7:11: sandbox requires at least one path to be set`},
		{"v6 sandbox unknown", "version: \"6\"\nagents:\n  root:\n    toolsets:\n      - type: shell\n        sandbox: {}\n",
			`agent.yaml:6:9: unknown field "sandbox" in toolset 0 of agent "root"`},
		{"v5 mcps unknown", "version: \"5\"\nmcps: {}\n", `agent.yaml:2:1: unknown field "mcps"`},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadAgentFile("agent.yaml", []byte(tt.src))
			if err == nil || err.Error() != tt.want {
				t.Errorf("got  %v\nwant %s", err, tt.want)
			}
		})
	}
	t.Run("v5 sandbox dropped", func(t *testing.T) {
		f := cfgLoad(t, "version: \"5\"\nagents:\n  root:\n    skills: [local, https://s.example]\n    toolsets:\n      - type: shell\n        sandbox:\n          paths: [.]\n")
		b, _ := json.Marshal(f.Agents[0])
		if strings.Contains(string(b), "sandbox") || !strings.Contains(string(b), `"skills":["local","https://s.example"]`) {
			t.Errorf("%s", b)
		}
	})
	t.Run("v6 memory path optional", func(t *testing.T) {
		cfgLoad(t, "version: \"6\"\nagents:\n  root:\n    toolsets:\n      - type: memory\n")
	})
	t.Run("int version", func(t *testing.T) {
		if f := cfgLoad(t, "version: 2\nagents:\n  root:\n    model: openai/gpt-4o\n"); f.Version != "2" {
			t.Errorf("version %q", f.Version)
		}
	})
}

func TestExpandEnvTemplate(t *testing.T) {
	env := cfgEnv(map[string]string{"HOST": "h.example", "EMPTY": "", "TOKEN": "t0k"})
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"https://${env.HOST}/api", "https://h.example/api"},
		{"${env.MISSING}", ""},
		{"${env.MISSING || 'fallback'}", "fallback"},
		{`${ env.EMPTY || "dq" }`, "dq"},
		{"${env.MISSING || env.HOST || 'x'}", "h.example"},
		{"Bearer ${env.TOKEN} and ${env.HOST}", "Bearer t0k and h.example"},
		{"${'lit}eral'}", "lit}eral"},
		// Anything beyond the subset is a JS error in the reference: nothing expands.
		{"${HOST} and ${env.HOST}", "${HOST} and ${env.HOST}"},
		{"${env.HOST.toUpperCase()}", "${env.HOST.toUpperCase()}"},
		{"${env.HOST", "${env.HOST"},
		{"$HOST `tick` \\n", "$HOST `tick` \\n"},
	}
	for _, tt := range tests {
		if got := expandEnvTemplate(tt.in, env); got != tt.want {
			t.Errorf("expandEnvTemplate(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConfigJSONOrderedMaps(t *testing.T) {
	f := cfgLoad(t, "agents:\n  z:\n    model: openai/b\n  a:\n    model: openai/a\nmodels:\n  zz:\n    provider: openai\n    model: x\n  aa:\n    provider: openai\n    model: y\n")
	b, _ := json.Marshal(f)
	want := `{"version":"7","agents":[{"Name":"z","model":"openai/b"},{"Name":"a","model":"openai/a"}],` +
		`"models":{"zz":{"provider":"openai","model":"x","parallel_tool_calls":true},"aa":{"provider":"openai","model":"y","parallel_tool_calls":true},` +
		`"openai/b":{"provider":"openai","model":"b"},"openai/a":{"provider":"openai","model":"a"}},"metadata":{}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}

// TestConfigTypedFieldsJSON pins the JSON of the fields kept only in typed form
// (skills, hooks, routing, fallback cooldown, structured_output): GET /api/agents/{id}
// shows them as the reference does.
func TestConfigTypedFieldsJSON(t *testing.T) {
	f := cfgLoad(t, "models:\n  r:\n    provider: openai\n    model: x\n    routing:\n      - model: openai/y\n        examples: [hi]\n"+
		"agents:\n  root:\n    model: r\n    skills: [local, https://s.example]\n    fallback:\n      cooldown: 90s\n"+
		"    hooks:\n      session_start:\n        - type: command\n          command: echo\n"+
		"    structured_output:\n      name: out\n  b:\n    model: r\n    skills: true\n    fallback:\n      retries: 1\n")
	b, _ := json.Marshal(f.Agents)
	want := `[{"Name":"root","model":"r","structured_output":{"name":"out","schema":null},"skills":["local","https://s.example"],` +
		`"hooks":{"session_start":[{"type":"command","command":"echo"}]},"fallback":{"cooldown":"1m30s"}},` +
		`{"Name":"b","model":"r","skills":true,"fallback":{"retries":1,"cooldown":""}}]`
	if string(b) != want {
		t.Errorf("agents:\ngot  %s\nwant %s", b, want)
	}
	mb, _ := json.Marshal(f.Models.Values["r"])
	if want := `{"provider":"openai","model":"x","parallel_tool_calls":true,"routing":[{"model":"openai/y","examples":["hi"]}]}`; string(mb) != want {
		t.Errorf("model:\ngot  %s\nwant %s", mb, want)
	}
}

// TestConfigCommandsListForm covers the list-of-one-key-maps form of commands.
func TestConfigCommandsListForm(t *testing.T) {
	f := cfgLoad(t, "agents:\n  root:\n    commands:\n      - df: check disk\n      - ls:\n          instruction: list\n")
	c := f.agent("root").Commands
	if !reflect.DeepEqual(c.Keys, []string{"df", "ls"}) || c.Values["df"].Instruction != "check disk" {
		t.Errorf("%+v", c)
	}
}

func TestConfigDecodeErrorIsPositioned(t *testing.T) {
	_, err := loadAgentFile("agent.yaml", []byte("agents:\n  root:\n    bogus: 1\n"))
	var ye *yamlError
	if !errors.As(err, &ye) || ye.Line != 3 || ye.Col != 5 || filepath.Base(ye.File) != "agent.yaml" {
		t.Errorf("want a positioned *yamlError, got %#v", err)
	}
}

func BenchmarkLoadAgentFile(b *testing.B) {
	src, err := os.ReadFile("testdata/config/full.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := loadAgentFile("full.yaml", src); err != nil {
			b.Fatal(err)
		}
	}
}

func TestConfigToolsetFreeFormValues(t *testing.T) {
	f := cfgLoad(t, `agents:
  root:
    toolsets:
      - type: mcp
        ref: docker:brave
        defer: [search, fetch]
        toon: "list_.*"
        config:
          limit: 10
          ratio: 1.0
          on: true
          none: null
          nested: {b: [1, "2"], a: x}
      - type: a2a
        url: https://a2a.example
        remote:
          headers: {X: y}
`)
	ts := f.agent("root").Toolsets[0]
	if ts.Defer.All || !reflect.DeepEqual(ts.Defer.Tools, []string{"search", "fetch"}) || ts.Toon != "list_.*" {
		t.Errorf("%+v", ts)
	}
	want := `{"limit":10,"ratio":1,"on":true,"none":null,"nested":{"b":[1,"2"],"a":"x"}}`
	if string(ts.Config) != want {
		t.Errorf("config %s, want %s", ts.Config, want)
	}
}

// first_byte_timeout and idle_timeout reach the model spec (0 when unset, so the API
// family's default applies) and show in the config JSON as normalised durations.
func TestConfigModelTimeouts(t *testing.T) {
	f := cfgLoad(t, `agents:
  root:
    model: slow
models:
  slow:
    provider: openai
    model: gpt-4o
    first_byte_timeout: 90s
    idle_timeout: 5m
  plain:
    provider: openai
    model: gpt-4o
`)
	s, err := f.modelSpec("slow", cfgEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	if s.FirstByteTimeout != 90*time.Second || s.IdleTimeout != 5*time.Minute {
		t.Errorf("spec timeouts = %v, %v; want 1m30s, 5m0s", s.FirstByteTimeout, s.IdleTimeout)
	}
	if s, _ := f.modelSpec("plain", cfgEnv(nil)); s.FirstByteTimeout != 0 || s.IdleTimeout != 0 {
		t.Errorf("unset timeouts = %v, %v; want 0 (default)", s.FirstByteTimeout, s.IdleTimeout)
	}
	b, _ := json.Marshal(f.Models)
	if !strings.Contains(string(b), `"first_byte_timeout":"1m30s","idle_timeout":"5m0s"`) {
		t.Errorf("config JSON = %s", b)
	}
}
