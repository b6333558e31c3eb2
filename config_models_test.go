package main

import (
	"strings"
	"testing"
)

func TestConfigModelSpec(t *testing.T) {
	f := cfgLoad(t, `agents:
  root:
    model: fast
models:
  fast:
    provider: corp
    model: llama
    max_tokens: 500
    temperature: 0.5
  own:
    provider: corp
    model: llama
    base_url: https://own.example/v1
    token_key: OWN_KEY
  resp:
    provider: openai
    model: gpt-5
    thinking_budget: 2048
    provider_opts:
      api_type: openai_responses
  pair:
    model: openai/a,openai/b
providers:
  corp:
    base_url: https://corp.example/v1
    token_key: CORP_KEY
  plain:
    base_url: https://plain.example/v1
    api_type: openai_responses
`)
	env := cfgEnv(nil)
	s, err := f.modelSpec("fast", env)
	if err != nil {
		t.Fatal(err)
	}
	if s.Ref != "fast" || s.Provider != "corp" || s.BaseURL != "https://corp.example/v1" || s.TokenKey != "CORP_KEY" ||
		s.APIType != "openai_chatcompletions" || s.MaxTokens != 500 || *s.Temperature != 0.5 || !*s.ParallelToolCalls {
		t.Errorf("fast: %+v", s)
	}
	if s, _ := f.modelSpec("own", env); s.BaseURL != "https://own.example/v1" || s.TokenKey != "OWN_KEY" {
		t.Errorf("model fields win over the provider's: %+v", s)
	}
	if s, _ := f.modelSpec("resp", env); s.APIType != "openai_responses" || s.ThinkingBudget != int64(2048) {
		t.Errorf("resp: %+v", s)
	}
	if s, _ := f.modelSpec("plain/some-model", env); s.Provider != "plain" || s.Model != "some-model" || s.APIType != "openai_responses" || s.BaseURL == "" {
		t.Errorf("inline custom provider: %+v", s)
	}
	if s, _ := f.modelSpec("dmr/ai/qwen3", env); s.Provider != "dmr" || s.Model != "ai/qwen3" || s.ParallelToolCalls != nil {
		t.Errorf("split at first slash: %+v", s)
	}
	seen := map[string]bool{}
	for range 200 {
		s, err := f.modelSpec("pair", env)
		if err != nil {
			t.Fatal(err)
		}
		seen[s.Ref] = true
	}
	if !seen["openai/a"] || !seen["openai/b"] || len(seen) != 2 {
		t.Errorf("alloy picks: %v", seen)
	}
	for _, bad := range []string{"", "nope", "openai/", "/x", " , "} {
		if _, err := f.modelSpec(bad, env); err == nil || !strings.Contains(err.Error(), "not found in configuration") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	autos := []struct {
		env             map[string]string
		provider, model string
		maxTokens       int64
	}{
		{map[string]string{"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"}, "anthropic", "claude-sonnet-4-5", 32000},
		{map[string]string{"OPENAI_API_KEY": "k", "GEMINI_API_KEY": "k"}, "openai", "gpt-5-mini", 32000},
		{map[string]string{"GEMINI_API_KEY": "k"}, "google", "gemini-2.5-flash", 32000},
		{map[string]string{"MISTRAL_API_KEY": "k"}, "mistral", "mistral-small-latest", 32000},
		{map[string]string{"AWS_PROFILE": "p"}, "amazon-bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0", 32000},
		{nil, "dmr", "ai/qwen3:latest", 16000},
	}
	for _, a := range autos {
		s, err := f.modelSpec("auto", cfgEnv(a.env))
		if err != nil || s.Provider != a.provider || s.Model != a.model || s.MaxTokens != a.maxTokens {
			t.Errorf("auto with %v: %+v %v", a.env, s, err)
		}
	}
}

func TestRequiredEnv(t *testing.T) {
	f := cfgLoad(t, `agents:
  root:
    model: router
    sub_agents: [helper, g, c]
    fallback:
      models: [mistral/mistral-large]
  helper:
    model: anthropic/claude-sonnet-4-5,xai/grok-4
  g:
    model: google/gemini-2.5-flash
  c:
    model: custom
  local:
    model: dmr/ai/qwen3
models:
  router:
    provider: openai
    model: gpt-4o
    routing:
      - model: keyed
        examples: [x]
  keyed:
    provider: anthropic
    model: claude
    token_key: MY_CLAUDE_KEY
  custom:
    provider: corp
    model: m
providers:
  corp:
    base_url: https://corp.example/v1
`)
	err := requiredEnv(f, f.Agents, cfgEnv(map[string]string{"OPENAI_API_KEY": "x"}))
	want := `The following environment variables must be set:
 - ANTHROPIC_API_KEY
 - GOOGLE_API_KEY
 - MY_CLAUDE_KEY
 - XAI_API_KEY

Either:
 - Set those environment variables before running docker agent
 - Run docker agent with --env-from-file
 - Store those secrets using one of the built-in environment variable providers.`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	// The reference skips built-in provider checks when a providers: section exists;
	// we still report OPENAI_API_KEY here.
	err = requiredEnv(f, []*agentConfig{f.agent("root")}, cfgEnv(nil))
	if err == nil || !strings.Contains(err.Error(), " - OPENAI_API_KEY\n") {
		t.Errorf("got %v", err)
	}
	all := cfgEnv(map[string]string{"OPENAI_API_KEY": "x", "ANTHROPIC_API_KEY": "x", "GEMINI_API_KEY": "x", "MY_CLAUDE_KEY": "x", "XAI_API_KEY": "x"})
	if err := requiredEnv(f, f.Agents, all); err != nil {
		t.Errorf("GEMINI_API_KEY replaces GOOGLE_API_KEY: %v", err)
	}
	vertex := cfgEnv(map[string]string{"GOOGLE_GENAI_USE_VERTEXAI": "1"})
	err = requiredEnv(f, []*agentConfig{f.agent("g")}, vertex)
	if err == nil || !strings.Contains(err.Error(), " - GOOGLE_CLOUD_LOCATION\n - GOOGLE_CLOUD_PROJECT\n") {
		t.Errorf("vertex: %v", err)
	}
	if err := requiredEnv(f, []*agentConfig{f.agent("c"), f.agent("local")}, cfgEnv(nil)); err != nil {
		t.Errorf("custom provider without token_key and dmr need nothing: %v", err)
	}
}
