package main

// config_models.go resolves model references (CONFIG.md §5) and lists the
// environment variables the chosen models need (§8.3).

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
)

// cfgSplitInline splits an inline `provider/model` reference at the first '/'.
func cfgSplitInline(ref string) (provider, model string, ok bool) {
	provider, model, found := strings.Cut(ref, "/")
	return provider, model, found && provider != "" && model != ""
}

// cfgAlloyParts lists the entries of a comma-separated model list, trimmed,
// skipping empty ones.
func cfgAlloyParts(ref string) []string {
	var out []string
	for p := range strings.SplitSeq(ref, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// modelSpec resolves a model reference as an agent uses it: a `models` key, `auto`,
// a comma list (one entry picked at random per call) or an inline provider/model.
func (f *agentFile) modelSpec(ref string, getenv func(string) string) (modelSpec, error) {
	return f.modelSpecDepth(ref, getenv, 0)
}

func (f *agentFile) modelSpecDepth(ref string, getenv func(string) string, depth int) (modelSpec, error) {
	if depth > 8 {
		return modelSpec{}, fmt.Errorf("model '%s': alloy references nest too deeply", ref)
	}
	if mc, ok := f.Models.get(ref); ok {
		if mc.Provider == "" && strings.Contains(mc.Model, ",") {
			return f.pickAlloy(ref, mc.Model, getenv, depth)
		}
		return f.specFromConfig(ref, mc), nil
	}
	if ref == "auto" { // the first provider whose key is set (providers.go)
		p, m, n := providerAuto(getenv)
		return modelSpec{Ref: ref, Provider: p, Model: m, MaxTokens: n}, nil
	}
	if strings.Contains(ref, ",") {
		return f.pickAlloy(ref, ref, getenv, depth)
	}
	if p, m, ok := cfgSplitInline(ref); ok {
		return f.specFromConfig(ref, &modelConfig{Provider: p, Model: m}), nil
	}
	return modelSpec{}, fmt.Errorf("model '%s' not found in configuration", ref)
}

func (f *agentFile) pickAlloy(ref, list string, getenv func(string) string, depth int) (modelSpec, error) {
	parts := cfgAlloyParts(list)
	if len(parts) == 0 {
		return modelSpec{}, fmt.Errorf("model '%s' not found in configuration", ref)
	}
	return f.modelSpecDepth(parts[rand.IntN(len(parts))], getenv, depth+1)
}

func (f *agentFile) specFromConfig(ref string, mc *modelConfig) modelSpec {
	s := modelSpec{
		Ref:               ref,
		Provider:          mc.Provider,
		Model:             mc.Model,
		BaseURL:           mc.BaseURL,
		TokenKey:          mc.TokenKey,
		Temperature:       mc.Temperature,
		TopP:              mc.TopP,
		FrequencyPenalty:  mc.FrequencyPenalty,
		PresencePenalty:   mc.PresencePenalty,
		ParallelToolCalls: mc.ParallelToolCalls,
		TrackUsage:        mc.TrackUsage,
		ThinkingBudget:    mc.ThinkingBudget,
		FirstByteTimeout:  mc.FirstByteDur,
		IdleTimeout:       mc.IdleDur,
	}
	if mc.MaxTokens != nil {
		s.MaxTokens = *mc.MaxTokens
	}
	if len(mc.ProviderOpts) > 0 {
		s.ProviderOpts = make(map[string]any, len(mc.ProviderOpts))
		for k, v := range mc.ProviderOpts {
			s.ProviderOpts[k] = v
		}
	}
	if p, ok := f.Providers.get(mc.Provider); ok {
		// A custom provider is OpenAI-compatible; the model's own fields win.
		if s.BaseURL == "" {
			s.BaseURL = p.BaseURL
		}
		if s.TokenKey == "" {
			s.TokenKey = p.TokenKey
		}
		s.APIType = p.APIType
		if s.APIType == "" {
			s.APIType = "openai_chatcompletions"
		}
	}
	if t, ok := s.ProviderOpts["api_type"].(string); ok && t != "" {
		s.APIType = t
	}
	return s
}

// requiredEnv is the preflight of CONFIG.md §8.3 for the given agents' models
// (and their routing targets and alloy members; fallbacks are not checked). Unlike
// the reference, a `providers:` section does not switch off the checks for models
// that use built-in providers.
func requiredEnv(f *agentFile, agents []*agentConfig, getenv func(string) string) error {
	need := map[string]bool{}
	seen := map[string]bool{}
	var visit func(ref string)
	visit = func(ref string) {
		if ref == "" || ref == "auto" || seen[ref] {
			return
		}
		seen[ref] = true
		mc, ok := f.Models.get(ref)
		if !ok {
			if strings.Contains(ref, ",") {
				for _, p := range cfgAlloyParts(ref) {
					visit(p)
				}
				return
			}
			p, m, ok := cfgSplitInline(ref)
			if !ok {
				return // an unknown model fails when the team is built
			}
			mc = &modelConfig{Provider: p, Model: m}
		}
		if mc.Provider == "" && strings.Contains(mc.Model, ",") {
			for _, p := range cfgAlloyParts(mc.Model) {
				visit(p)
			}
		}
		for _, r := range mc.RoutingRules {
			visit(r.Model)
		}
		for _, k := range cfgModelKeys(f, mc, getenv) {
			need[k] = true
		}
	}
	for _, a := range agents {
		if a != nil {
			visit(a.Model)
		}
	}
	var missing []string
	for k := range need {
		if getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	var b strings.Builder
	b.WriteString("The following environment variables must be set:\n")
	for _, k := range missing {
		b.WriteString(" - " + k + "\n")
	}
	b.WriteString("\nEither:\n" +
		" - Set those environment variables before running docker agent\n" +
		" - Run docker agent with --env-from-file\n" +
		" - Store those secrets using one of the built-in environment variable providers.")
	return errors.New(b.String())
}

// cfgModelKeys lists the variables one model needs (§8.3 order of precedence).
func cfgModelKeys(f *agentFile, mc *modelConfig, getenv func(string) string) []string {
	if mc.TokenKey != "" {
		return []string{mc.TokenKey}
	}
	if p, ok := f.Providers.get(mc.Provider); ok {
		if p.TokenKey != "" {
			return []string{p.TokenKey}
		}
		return nil // custom providers without token_key send no auth
	}
	if mc.Provider == "google" {
		if getenv("GOOGLE_GENAI_USE_VERTEXAI") != "" {
			var out []string
			if s, _ := mc.ProviderOpts["project"].(string); s == "" {
				out = append(out, "GOOGLE_CLOUD_PROJECT")
			}
			if s, _ := mc.ProviderOpts["location"].(string); s == "" {
				out = append(out, "GOOGLE_CLOUD_LOCATION")
			}
			return out
		}
		if getenv("GEMINI_API_KEY") != "" {
			return nil
		}
		return []string{"GOOGLE_API_KEY"}
	}
	if k, ok := providerKeyEnv(mc.Provider); ok {
		return []string{k}
	}
	return nil
}
