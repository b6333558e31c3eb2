package main

// clients_test.go: one server serving both docker-agent client generations
// (API-UPSTREAM.md §5): the reference's client (bare-array run bodies, accumulated
// partial_tool_call arguments, tool_call in tool_call_response, agentName) and the
// newer one (object run bodies with a model override, argument deltas, tool_call_id,
// agent_name, session_title first, tool_call_output, 409 while busy).

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// generationsYAML has two config models and the shell tool.
func generationsYAML(url string) string {
	return fmt.Sprintf(`models:
  fake:
    provider: openai
    model: gpt-4o
    base_url: %[1]s/v1
  small:
    provider: openai
    model: gpt-4o-mini
    base_url: %[1]s/v1
agents:
  root:
    model: fake
    description: Test agent
    instruction: Be brief.
    toolsets:
      - type: shell
`, url)
}

// generations is one server and one fake model that both clients talk to.
type generations struct {
	t *testing.T
	e *apiTest
	f *fakeOpenAI
}

func newGenerations(t *testing.T, turns ...fakeTurn) *generations {
	f := newFakeOpenAI(t, turns...)
	e := newTestEnv(t, map[string]string{"a.yaml": generationsYAML(f.URL)})
	e.setenv("OPENAI_API_KEY", "test-key")
	e.setenv("OPENAI_BASE_URL", f.URL+"/v1") // inline openai/… overrides reach the fake too
	return &generations{t, e, f}
}

// lastModel is the model the last chat request asked for.
func (g *generations) lastModel() string {
	reqs := g.f.requests()
	return reqs[len(reqs)-1]["model"].(string)
}

// gatedShellCall is a shell tool call of cmd with a timeout, so a test whose gate
// never opens fails instead of hanging.
func gatedShellCall(id, cmd string) fakeToolCall {
	args, _ := json.Marshal(map[string]any{"cmd": cmd, "timeout": 20})
	return fakeToolCall{id, "shell", string(args)}
}

func argumentsOf(ev map[string]any) string {
	fn := ev["tool_call"].(map[string]any)["function"].(map[string]any)
	s, _ := fn["arguments"].(string)
	return s
}

// TestTwoClientGenerationsOneServer runs a reference-client conversation and a
// newer-client conversation against one server, interleaved. More steps (fork,
// starred, batch) go into oldClientConversation / newClientConversation or after them.
func TestTwoClientGenerationsOneServer(t *testing.T) {
	oldCall := gatedShellCall("call_old", "echo old")
	newCall := gatedShellCall("call_new", "printf 'one\\n'; while [ ! -f gate ]; do sleep 0.05; done; printf 'two\\n'")
	g := newGenerations(t,
		fakeTurn{ToolCalls: []fakeToolCall{oldCall}, ArgChunks: 3}, fakeTurn{Text: []string{"done-old"}}, fakeTurn{Text: []string{"old-2"}},
		fakeTurn{ToolCalls: []fakeToolCall{newCall}, ArgChunks: 3}, fakeTurn{Text: []string{"done-new"}},
	)
	oldID := g.oldClientConversation(oldCall)
	newID := g.newClientConversation(newCall)
	// The old client carries on unaffected by the new client's model choice.
	g.e.run("/api/sessions/"+oldID+"/agent/a", []map[string]any{{"content": "q1"}, {"content": "q2"}, {"content": "q3"}}).all()
	if m := g.lastModel(); m != "gpt-4o" {
		t.Errorf("old client's session answered by %s; want its agent's gpt-4o", m)
	}
	if oldID == newID {
		t.Fatal("one session for both clients")
	}
}

// oldClientConversation plays the reference's client: bare arrays re-sending every
// earlier user message, accumulated partial arguments, tool_call in the response.
func (g *generations) oldClientConversation(call fakeToolCall) string {
	t, e := g.t, g.e
	id := e.newSession(map[string]any{"tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "q1"}}).all()
	partials := eventsOf(evs, "partial_tool_call")
	if len(partials) != 4 { // the name, then three argument chunks
		t.Fatalf("old client: %d partial_tool_call events; want 4: %v", len(partials), evs)
	}
	prev := ""
	for _, p := range partials {
		args := argumentsOf(p)
		if !strings.HasPrefix(args, prev) || p["tool_definition"] == nil {
			t.Errorf("old client: partial %q after %q, definition %v; want accumulated arguments and the definition each time", args, prev, p["tool_definition"])
		}
		prev = args
	}
	if prev != call.Args {
		t.Errorf("old client: last partial arguments %q; want %q", prev, call.Args)
	}
	resp := eventOf(evs, "tool_call_response")
	if tc, _ := resp["tool_call"].(map[string]any); tc == nil || tc["id"] != "call_old" || !strings.Contains(resp["response"].(string), "old") {
		t.Errorf("old client: tool_call_response = %v; want tool_call with the call's id", resp)
	}
	if eventOf(evs, "session_title") == nil {
		t.Errorf("old client: an untitled session got no generated title: %v", evs)
	}
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "q1"}, {"content": "q2"}}).all()
	if m := g.lastModel(); m != "gpt-4o" {
		t.Errorf("old client: answered by %s; want gpt-4o", m)
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	var raw struct {
		Messages []map[string]any `json:"messages"`
	}
	json.Unmarshal(b, &raw)
	var users []string
	for _, m := range raw.Messages {
		if m["agentName"] != m["agent_name"] || m["agentName"] == nil {
			t.Errorf("old client: message keys agentName %v, agent_name %v; want both, equal", m["agentName"], m["agent_name"])
		}
		if msg := m["message"].(map[string]any); msg["role"] == "user" {
			users = append(users, msg["content"].(string))
		}
	}
	if !slices.Equal(users, []string{"q1", "q2"}) {
		t.Errorf("old client: stored user messages %v; want [q1 q2] (re-sent ones are not new)", users)
	}
	return id
}

// newClientConversation plays a newer client: object bodies with a model override
// that persists, argument deltas, tool_call_id, session_title first, shell output
// streamed while the command runs.
func (g *generations) newClientConversation(call fakeToolCall) string {
	t, e := g.t, g.e
	id := e.newSession(map[string]any{"tools_approved": true, "title": "new client"})
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{
		"messages": []map[string]any{{"role": "user", "content": "n1"}}, "model": "openai/gpt-4o-mini"})
	if first := s.next(); first["type"] != "session_title" || first["title"] != "new client" {
		t.Fatalf("new client: first event %v; want session_title", first)
	}
	// The command prints "one" and waits for the gate: its output must arrive while
	// it still runs.
	out := s.until("tool_call_output")
	if out["output"] != "one\n" || out["tool_call_id"] != "call_new" || out["tool_definition"].(map[string]any)["name"] != "shell" {
		t.Fatalf("new client: tool_call_output = %v", out)
	}
	if err := os.WriteFile(filepath.Join(e.root, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	evs := s.all()
	partials := eventsOf(evs, "partial_tool_call")
	var joined string
	for i, p := range partials {
		if (p["tool_definition"] != nil) != (i == 0) {
			t.Errorf("new client: partial %d has definition %v; want it on the first only", i, p["tool_definition"] != nil)
		}
		joined += argumentsOf(p)
	}
	if len(partials) != 4 || joined != call.Args || argumentsOf(partials[0]) != "" {
		t.Errorf("new client: %d partials joining to %q; want 4 deltas joining to %q", len(partials), joined, call.Args)
	}
	var streamed string
	for _, o := range eventsOf(evs, "tool_call_output") {
		streamed += o["output"].(string)
	}
	if streamed != "one\ntwo\n" {
		t.Errorf("new client: streamed output %q; want one, then two", streamed)
	}
	resp := eventOf(evs, "tool_call_response")
	if resp["tool_call_id"] != "call_new" || resp["response"] != "one\ntwo" {
		t.Errorf("new client: tool_call_response = %v", resp)
	}
	if stop := evs[len(evs)-1]; stop["type"] != "stream_stopped" || stop["reason"] != "normal" {
		t.Errorf("new client: last event %v; want stream_stopped reason normal", stop)
	}
	if m := g.lastModel(); m != "gpt-4o-mini" {
		t.Errorf("new client: answered by %s; want the override gpt-4o-mini", m)
	}
	// The override lasts: a later object body without model, and an array body.
	e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"content": "n2"}}}).all()
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "n3"}}).all()
	for _, req := range g.f.requests()[len(g.f.requests())-2:] {
		if req["model"] != "gpt-4o-mini" {
			t.Errorf("new client: a later run used %v; want the stored override", req["model"])
		}
	}
	code, b := e.do("GET", "/api/sessions/"+id+"/models", nil)
	models := decode[sessionModelsJSON](t, b)
	if code != 200 || models.Agent != "root" || models.CurrentModelRef != "openai/gpt-4o-mini" {
		t.Fatalf("new client: models = %d %s", code, b)
	}
	i := slices.IndexFunc(models.Models, func(m modelChoiceJSON) bool { return m.Ref == "openai/gpt-4o-mini" })
	if i < 0 || !models.Models[i].IsCurrent || !models.Models[i].IsCustom || models.Models[0].Ref != "fake" || !models.Models[0].IsDefault || models.Models[0].IsCurrent {
		t.Errorf("new client: models = %s", b)
	}
	return id
}
