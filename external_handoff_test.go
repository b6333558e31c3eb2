package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// externalTeamYAML is a pushed team: its default agent (root, renamed to the
// reference when loaded) thinks, has a toolset that cannot be created, and can
// hand off on to the team's own expert.
func externalTeamYAML(url string) string {
	return externalHelperYAML(url, "remote-model") + `      - type: nope
    handoffs: [expert]
  expert:
    model: own
    description: Remote expert
    instruction: You know from afar.
`
}

func handoffCall(id, agent string) fakeToolCall {
	return fakeToolCall{ID: id, Name: "handoff", Args: fmt.Sprintf(`{"agent":%q}`, agent)}
}

// externalHandoffEnv serves team.yaml, whose root hands off to an external team
// in an in-process registry (and to a reference that does not load); the fake
// model answers every agent of both teams with the turns script gives for them.
func externalHandoffEnv(t *testing.T, script func(ref, missing string) []fakeTurn) (e *apiTest, f *fakeOpenAI, ref, missing string) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the OCI cache of the test server
	reg := newOCITestRegistry(t, "")
	ref, missing = reg.host+"/team/helper:latest", reg.host+"/team/missing:latest"
	f = newFakeOpenAI(t, script(ref, missing)...)
	reg.push("team/helper", "latest", []byte(externalTeamYAML(f.URL)), "2026-01-01T00:00:00Z")
	e = newTestEnv(t, map[string]string{"team.yaml": externalListYAML(f.URL, "handoffs", ref, missing)})
	e.setenv("OPENAI_API_KEY", "k")
	return e, f, ref, missing
}

// lastOf is the last event of type typ.
func lastOf(evs []map[string]any, typ string) map[string]any {
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i]["type"] == typ {
			return evs[i]
		}
	}
	return nil
}

// TestExternalHandoff: root hands off to an external team's agent mid-run; it
// answers with its own model, instruction and tools, the client hears its
// agent_info and team_info, and the session's next run starts with it. The
// session is untitled, so the title is generated while the team switches.
func TestExternalHandoff(t *testing.T) {
	e, f, ref, missing := externalHandoffEnv(t, func(ref, missing string) []fakeTurn {
		return []fakeTurn{
			{ToolCalls: []fakeToolCall{handoffCall("c1", missing)}}, // root
			{ToolCalls: []fakeToolCall{handoffCall("c2", ref)}},     // root
			{Text: []string{"remote answer"}},                       // ref
			{Text: []string{"still remote"}},                        // ref, next run
		}
	})
	id := e.newSession(map[string]any{})
	evs := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}}).all()

	got := toolResponses(evs)
	if len(got) != 2 || !strings.Contains(got[0], "agent "+missing+" is not part of this team") ||
		!strings.Contains(got[1], "The agent root handed off the conversation to you") {
		t.Fatalf("tool responses = %q", got)
	}
	if info := lastOf(evs, "agent_info"); info["agent_name"] != ref || info["model"] != "openai/remote-model" || info["description"] != "Remote helper" {
		t.Fatalf("agent_info after the handoff = %v", info)
	}
	team := lastOf(evs, "team_info")
	var names []string
	for _, a := range team["available_agents"].([]any) {
		names = append(names, a.(map[string]any)["name"].(string))
	}
	if team["current_agent"] != ref || !slices.Equal(names, []string{ref, "expert"}) {
		t.Fatalf("team_info after the handoff = %v", team)
	}
	if ch := lastOf(evs, "agent_choice"); ch["agent_name"] != ref || ch["content"] != "remote answer" {
		t.Fatalf("answer after the handoff = %v", ch)
	}
	if w := lastOf(evs, "warning"); w["agent_name"] != ref || !strings.Contains(fmt.Sprint(w["message"]), "unknown toolset type: nope") {
		t.Fatalf("warning of the external agent's toolsets = %v", w)
	}
	if ev := lastOf(evs, "stream_stopped"); ev["agent_name"] != ref {
		t.Fatalf("stream_stopped = %v", ev)
	}
	if lastOf(evs, "agent_switching") != nil {
		t.Fatalf("a handoff emits no agent_switching, as an internal one")
	}
	// The external agent answered with its own config, on the shared history.
	req := f.requests()[2]
	msgs, tools := fmt.Sprint(req["messages"]), fmt.Sprint(req["tools"])
	if req["model"] != "remote-model" || !strings.Contains(msgs, "You help from afar.") || !strings.Contains(msgs, "start") ||
		!strings.Contains(tools, "think") {
		t.Fatalf("external agent's request = %v %s %s", req["model"], msgs, tools)
	}

	// The next run of the session starts with the external agent.
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "more"}})
	if info := s.until("agent_info"); info["agent_name"] != ref || info["model"] != "openai/remote-model" {
		t.Fatalf("second run starts with %v; want %s", info, ref)
	}
	if ch := s.until("agent_choice"); ch["agent_name"] != ref || ch["content"] != "still remote" {
		t.Fatalf("second run answered by %v", ch)
	}
	s.all()
	if req := f.requests()[3]; req["model"] != "remote-model" {
		t.Fatalf("second run's model = %v", req["model"])
	}
	waitFor(t, "the generated title", func() bool {
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		return strings.Contains(string(b), `"title":"Test title"`)
	})
}

// TestExternalHandoffOnward: an external agent hands off on to an agent of its
// own team, and the next run finds it there.
func TestExternalHandoffOnward(t *testing.T) {
	e, f, _, _ := externalHandoffEnv(t, func(ref, _ string) []fakeTurn {
		return []fakeTurn{
			{ToolCalls: []fakeToolCall{handoffCall("c1", ref)}},      // root
			{ToolCalls: []fakeToolCall{handoffCall("c2", "expert")}}, // ref
			{Text: []string{"expert answer"}},                        // expert
			{Text: []string{"expert again"}},                         // expert, next run
		}
	})
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}}).all()
	if ch := lastOf(evs, "agent_choice"); ch["agent_name"] != "expert" || ch["content"] != "expert answer" {
		t.Fatalf("answer = %v", ch)
	}
	ev := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "more"}}).until("agent_choice")
	if ev["agent_name"] != "expert" || ev["content"] != "expert again" {
		t.Fatalf("second run answered by %v; want the external team's expert", ev)
	}
	sys := f.requests()[3]["messages"].([]any)[0].(map[string]any)["content"]
	if sys != "You know from afar." {
		t.Fatalf("expert's system prompt = %v", sys)
	}
}

// The routes describing agents count the handoff tool, and the external agent's
// own tools under its (escaped) reference; the file is still one agent.
func TestExternalHandoffRoutes(t *testing.T) {
	e, _, ref, _ := externalHandoffEnv(t, func(string, string) []fakeTurn { return nil })
	for path, want := range map[string]string{
		"/api/agents/team/root/tools/count":                        `{"available_tools":1}`, // handoff
		"/api/agents/team/" + url.PathEscape(ref) + "/tools/count": `{"available_tools":2}`, // think, handoff
		"/api/agents": `[{"name":"team","description":"","multi":false}]`,
	} {
		if code, b := e.do("GET", path, nil); code != 200 || strings.TrimSpace(string(b)) != want {
			t.Errorf("GET %s = %d %s; want %s", path, code, b, want)
		}
	}
}

// TestExternalHandoffPermissions: after a handoff the caller's YAML permissions
// still rule. The pulled config's own deny rules hold too, but its allow rules do
// not approve anything in the caller's working dir.
func TestExternalHandoffPermissions(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the OCI cache of the test server
	reg := newOCITestRegistry(t, "")
	ref := reg.host + "/team/helper:latest"
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{handoffCall("c1", ref)}},                             // root
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c2", Name: "think", Args: `{"thought":"x"}`}}}, // ref: its own deny
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("c3", "rm -f none.txt")}},                  // ref: the caller's deny
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("c4", "echo hi")}},                         // ref: its own allow is not followed
		fakeTurn{Text: []string{"done"}})
	reg.push("team/helper", "latest", []byte(fmt.Sprintf(`models:
  own:
    provider: openai
    model: remote-model
    base_url: %s/v1
agents:
  root:
    model: own
    toolsets:
      - type: shell
      - type: think
permissions:
  allow: ["*"]
  deny: ["think"]
`, f.URL)), "2026-01-01T00:00:00Z")
	e := newTestEnv(t, map[string]string{"team.yaml": externalListYAML(f.URL, "handoffs", ref) +
		"permissions:\n  deny: [\"shell:cmd=rm*\"]\n"})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}})
	if ev := s.until("tool_call_confirmation"); ev["agent_name"] != ref || !strings.Contains(fmt.Sprint(ev["tool_call"]), "echo hi") {
		t.Fatalf("confirmation = %v", ev)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
	got := toolResponses(s.all())
	denied := "denied by permissions configuration"
	if len(got) != 4 || !strings.Contains(got[1], "'think' is "+denied) || !strings.Contains(got[2], "'shell' is "+denied) ||
		!strings.Contains(got[3], "The user rejected the tool call.") {
		t.Fatalf("tool responses = %q", got)
	}
}

// TestExternalHandoffInSubSession: a sub-agent handing off to an external agent
// moves only its sub-session; the parent goes on with its own team.
func TestExternalHandoffInSubSession(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the OCI cache of the test server
	reg := newOCITestRegistry(t, "")
	ref := reg.host + "/team/helper:latest"
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{transferCall("c1", "helper", "ask afar")}}, // root
		fakeTurn{ToolCalls: []fakeToolCall{handoffCall("c2", ref)}},                   // helper
		fakeTurn{Text: []string{"remote answer"}},                                     // ref, in the sub-session
		fakeTurn{Text: []string{"root final"}})                                        // root
	reg.push("team/helper", "latest", []byte(externalHelperYAML(f.URL, "remote-model")), "2026-01-01T00:00:00Z")
	e := newTestEnv(t, map[string]string{"team.yaml": externalRootYAML(f.URL, "helper") + `  helper:
    model: fake
    description: Passes it on
    instruction: You pass it on.
    handoffs: [` + ref + `]
`})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}}).all()
	if got := toolResponses(evs); len(got) != 2 || got[1] != "remote answer" {
		t.Fatalf("tool responses = %q", got)
	}
	if ch := lastOf(evs, "agent_choice"); ch["agent_name"] != "root" || ch["content"] != "root final" {
		t.Fatalf("parent's answer = %v", ch)
	}
	for _, ev := range evs {
		if ev["type"] == "agent_info" && ev["agent_name"] == "root" && ev["model"] != "openai/gpt-4o" {
			t.Fatalf("agent_info of the parent = %v", ev)
		}
	}
	if sys := fmt.Sprint(f.requests()[3]["messages"]); !strings.Contains(sys, "Name: helper | Description: Passes it on") {
		t.Fatalf("parent's last prompt lacks its own team: %s", sys)
	}
	var models []any
	for _, r := range f.requests() {
		models = append(models, r["model"])
	}
	if want := []any{"gpt-4o", "gpt-4o", "remote-model", "gpt-4o"}; !slices.Equal(models, want) {
		t.Fatalf("models = %v; want %v", models, want)
	}
}
