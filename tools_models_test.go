package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// twoModelsYAML is a config with models main (gpt-4o) and fast (gpt-4o-mini) and one
// more, big (gpt-4-turbo), all served by the fake at url; agent root uses main.
func twoModelsYAML(url, agent string) string {
	return fmt.Sprintf(`models:
  main:
    provider: openai
    model: gpt-4o
    base_url: %[1]s/v1
  fast:
    provider: openai
    model: gpt-4o-mini
    base_url: %[1]s/v1
  big:
    provider: openai
    model: gpt-4-turbo
    base_url: %[1]s/v1
agents:
  root:
    model: main
    instruction: Be brief.
%[2]s`, url, agent)
}

// newModelsEnv serves twoModelsYAML with agent's extra lines.
func newModelsEnv(t *testing.T, agent string, turns ...fakeTurn) (*apiTest, *fakeOpenAI) {
	t.Helper()
	f := newFakeOpenAI(t, turns...)
	e := newTestEnv(t, map[string]string{"a.yaml": twoModelsYAML(f.URL, agent)})
	e.setenv("OPENAI_API_KEY", "test-key")
	return e, f
}

// requestModels lists the "model" of each recorded chat request.
func requestModels(f *fakeOpenAI) []string {
	var out []string
	for _, r := range f.requests() {
		out = append(out, r["model"].(string))
	}
	return out
}

// agentInfoModels lists the model of each agent_info event.
func agentInfoModels(evs []map[string]any) []string {
	var out []string
	for _, ev := range evs {
		if ev["type"] == "agent_info" {
			out = append(out, ev["model"].(string))
		}
	}
	return out
}

// toolsCount is GET /api/agents/a/root/tools/count.
func toolsCount(t *testing.T, e *apiTest) string {
	t.Helper()
	code, b := e.do("GET", "/api/agents/a/root/tools/count", nil)
	if code != 200 {
		t.Fatalf("tools count = %d %s", code, b)
	}
	return strings.TrimSpace(string(b))
}

// TestModelPicker: change_model switches the agent's model for the next request and
// for later runs of the session (agent_info says so), a model outside `models` is
// refused, revert_model goes back; the toolset counts 2 tools, as the reference's.
func TestModelPicker(t *testing.T) {
	picker := "    toolsets:\n      - type: model_picker\n        models: [fast, big]\n"
	e, f := newModelsEnv(t, picker,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "change_model", Args: `{"model":"main2"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c2", Name: "change_model", Args: `{"model":"fast"}`}}},
		fakeTurn{Text: []string{"switched"}},
		fakeTurn{Text: []string{"still fast"}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c3", Name: "revert_model", Args: `{}`}}},
		fakeTurn{Text: []string{"back"}})
	if got := toolsCount(t, e); got != `{"available_tools":2}` {
		t.Errorf("tools count = %s; want 2 (change_model, revert_model)", got)
	}
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go fast"}}).all()
	got := toolResponses(evs)
	if len(got) != 2 || got[0] != `model "main2" is not in the allowed list. Available models: fast, big` || got[1] != "Model changed to fast" {
		t.Fatalf("tool responses = %q", got)
	}
	if m := requestModels(f); !slices.Equal(m, []string{"gpt-4o", "gpt-4o", "gpt-4o-mini"}) {
		t.Errorf("request models = %v; want the switch to apply from the next request", m)
	}
	if m := agentInfoModels(evs); !slices.Equal(m, []string{"openai/gpt-4o", "openai/gpt-4o-mini"}) {
		t.Errorf("agent_info models = %v", m)
	}
	instr := f.requests()[0]["messages"].([]any)[1].(map[string]any)["content"].(string)
	if !strings.Contains(instr, "Available models: fast, big.") {
		t.Errorf("model_picker instruction = %q", instr)
	}

	// The next run of the session keeps the choice.
	evs = e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "again"}}).all()
	if m := requestModels(f); m[len(m)-1] != "gpt-4o-mini" {
		t.Errorf("second run used %s; want the chosen gpt-4o-mini", m[len(m)-1])
	}
	if m := agentInfoModels(evs); len(m) != 1 || m[0] != "openai/gpt-4o-mini" {
		t.Errorf("second run agent_info = %v", m)
	}
	if rec, err := e.s.st.session(context.Background(), id); err != nil || rec.AgentModelOverrides != `{"root":"fast"}` {
		t.Errorf("agent_model_overrides stored = %q (%v); want the choice", rec.AgentModelOverrides, err)
	}

	evs = e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "revert"}}).all()
	if got := toolResponses(evs); len(got) != 1 || got[0] != "Model reverted to the agent's default model" {
		t.Fatalf("revert = %q", got)
	}
	if m := requestModels(f); !slices.Equal(m[len(m)-2:], []string{"gpt-4o-mini", "gpt-4o"}) {
		t.Errorf("request models = %v; want back to gpt-4o after revert_model", m)
	}
	if m := agentInfoModels(evs); !slices.Equal(m, []string{"openai/gpt-4o-mini", "openai/gpt-4o"}) {
		t.Errorf("agent_info after revert = %v", m)
	}
	// A new session starts with the agent's own model.
	id2 := e.newSession(map[string]any{"title": "t"})
	if m := agentInfoModels(e.run("/api/sessions/"+id2+"/agent/a", []map[string]any{{"content": "hi"}}).all()); m[0] != "openai/gpt-4o" {
		t.Errorf("new session agent_info = %v", m)
	}
}

// TestToolsetModel: the turn right after a call to a tool of a toolset with `model`
// runs on that model (announced by agent_info, then agent_info back), and the turn
// after that on the agent's own again.
func TestToolsetModel(t *testing.T) {
	yaml := "    toolsets:\n      - type: think\n        model: fast\n      - type: todo\n"
	e, f := newModelsEnv(t, yaml,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "think", Args: `{"thought":"x"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c2", Name: "list_todos", Args: `{}`}}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	if m := requestModels(f); !slices.Equal(m, []string{"gpt-4o", "gpt-4o-mini", "gpt-4o"}) {
		t.Errorf("request models = %v; want the toolset's model for the one turn after its tool", m)
	}
	if m := agentInfoModels(evs); !slices.Equal(m, []string{"openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4o"}) {
		t.Errorf("agent_info models = %v", m)
	}
}

// TestModelRouting: a model with routing rules sends each request to the rule whose
// examples resemble the last user message, and to its own model when none does.
func TestModelRouting(t *testing.T) {
	f := newFakeOpenAI(t)
	yaml := strings.Replace(twoModelsYAML(f.URL, ""), "    base_url: "+f.URL+"/v1\n  fast:", `    base_url: `+f.URL+`/v1
    routing:
      - model: fast
        examples:
          - "What is the capital of France?"
          - "Say hello"
      - model: big
        examples:
          - "Debug this failing Go function"
          - "Refactor the code to remove duplication"
  fast:`, 1)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "test-key")
	id := e.newSession(map[string]any{"title": "t"})
	for _, q := range []string{"Please debug my functions", "what's the capital of Spain", "Tell me a story about whales"} {
		e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": q}}).all()
	}
	if m := requestModels(f); !slices.Equal(m, []string{"gpt-4-turbo", "gpt-4o-mini", "gpt-4o"}) {
		t.Errorf("routed models = %v; want big, fast, then the router's own gpt-4o", m)
	}
}

func TestRouteTerms(t *testing.T) {
	if got := routeTerms("The bugs, debugging and Debugged it's John's"); !slices.Equal(got, []string{"bug", "debug", "debug", "john"}) {
		t.Errorf("terms = %q", got)
	}
}
