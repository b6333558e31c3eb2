package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// teamYAMLFor is root → helper → sub (transfer_task) plus root → expert (handoff).
func teamYAMLFor(url string) string {
	return fmt.Sprintf(`models:
  fake:
    provider: openai
    model: gpt-4o
    base_url: %s/v1
agents:
  root:
    model: fake
    description: Root
    instruction: You lead.
    sub_agents: [helper]
    handoffs: [expert]
  helper:
    model: fake
    description: Helper
    instruction: You help.
    sub_agents: [sub]
    toolsets:
      - type: shell
  sub:
    model: fake
    description: Sub helper
    instruction: You dig.
  expert:
    model: fake
    description: Expert
    instruction: You know.
`, url)
}

func transferCall(id, agent, task string) fakeToolCall {
	return fakeToolCall{ID: id, Name: "transfer_task", Args: fmt.Sprintf(`{"agent":%q,"task":%q,"expected_output":"text"}`, agent, task)}
}

func TestTransferTaskNested(t *testing.T) {
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{transferCall("call_1", "helper", "help me")}}, // root
		fakeTurn{ToolCalls: []fakeToolCall{transferCall("call_2", "sub", "dig")}},        // helper
		fakeTurn{Text: []string{"dug deep"}},                                             // sub
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_3", "echo from helper")}},     // helper: needs confirmation
		fakeTurn{Text: []string{"helper says hi"}},                                       // helper
		fakeTurn{Text: []string{"root final"}},                                           // root
	)
	e := newTestEnv(t, map[string]string{"team.yaml": teamYAMLFor(f.URL)})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}})
	// The confirmation inside the grandchild's parent surfaces on the root stream and is
	// answered through the root session.
	s.until("tool_call_confirmation")
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	evs := s.all()
	var sessions []string
	var switching []string
	var responses []string
	for _, ev := range evs {
		switch ev["type"] {
		case "stream_started":
			sessions = append(sessions, ev["session_id"].(string))
		case "agent_switching":
			switching = append(switching, fmt.Sprintf("%v:%v>%v", ev["switching"], ev["from_agent"], ev["to_agent"]))
		case "tool_call_response":
			responses = append(responses, ev["response"].(string))
		}
	}
	if len(sessions) != 3 || sessions[0] != id || sessions[1] == id || sessions[2] == sessions[1] {
		t.Fatalf("stream_started sessions = %v", sessions)
	}
	wantSwitch := []string{"true:root>helper", "true:helper>sub", "false:sub>helper", "false:helper>root"}
	if !slices.Equal(switching, wantSwitch) {
		t.Fatalf("agent_switching = %v", switching)
	}
	if !slices.Equal(responses, []string{"dug deep", "from helper", "helper says hi"}) {
		t.Fatalf("tool responses = %v", responses)
	}
	if last := evs[len(evs)-1]; last["type"] != "stream_stopped" || last["session_id"] != id {
		if last["type"] != "session_title" {
			t.Fatalf("last event = %v", last)
		}
	}
	// The child's first request carries the task system message and "Please proceed.".
	helperReq := f.requests()[1]["messages"].([]any)
	var texts []string
	for _, m := range helperReq {
		texts = append(texts, m.(map[string]any)["content"].(string))
	}
	joined := strings.Join(texts, "|")
	if !strings.Contains(joined, "<task>\nhelp me\n</task>") || !strings.Contains(joined, "Please proceed.") {
		t.Fatalf("helper prompt = %q", joined)
	}
	// Stored: only the root is listed; GET shows child messages in place.
	_, b := e.do("GET", "/api/sessions", nil)
	if l := decode[[]sessionListItem](t, b); len(l) != 1 {
		t.Fatalf("sessions listed = %s", b)
	}
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	got := decode[sessionResponse](t, b)
	var contents []string
	for _, m := range got.Messages {
		contents = append(contents, m.AgentName+":"+m.Message.Role+":"+m.Message.Content)
	}
	all := strings.Join(contents, "\n")
	for _, want := range []string{"sub:assistant:dug deep", "helper:assistant:helper says hi", "root:assistant:root final", ":user:Please proceed."} {
		if !strings.Contains(all, want) {
			t.Errorf("stored conversation lacks %q:\n%s", want, all)
		}
	}
	if strings.Index(all, "helper says hi") > strings.Index(all, "root final") {
		t.Errorf("child messages must come before the parent's final answer:\n%s", all)
	}
	// After a restart the stored conversation reads back the same.
	e.restart()
	_, b2 := e.do("GET", "/api/sessions/"+id, nil)
	if string(b2) != string(b) {
		t.Fatalf("after restart:\n%s\nbefore:\n%s", b2, b)
	}
}

func TestTransferTaskErrors(t *testing.T) {
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{transferCall("call_1", "expert", "x")}},
		fakeTurn{Text: []string{"ok"}})
	e := newTestEnv(t, map[string]string{"team.yaml": teamYAMLFor(f.URL)})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}}).all()
	got := toolResponses(evs)
	if len(got) != 1 || !strings.Contains(got[0], "cannot transfer task to expert") {
		t.Fatalf("responses = %v", got)
	}
}

func TestHandoffPersists(t *testing.T) {
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "handoff", Args: `{"agent":"expert"}`}}},
		fakeTurn{Text: []string{"expert here"}},
		fakeTurn{Text: []string{"still expert"}})
	e := newTestEnv(t, map[string]string{"team.yaml": teamYAMLFor(f.URL)})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}})
	evs := s.all()
	for _, ev := range evs {
		if ev["type"] == "agent_switching" {
			t.Fatalf("handoff emits no agent_switching")
		}
	}
	var lastChoice map[string]any
	for _, ev := range evs {
		if ev["type"] == "agent_choice" {
			lastChoice = ev
		}
	}
	if lastChoice["agent_name"] != "expert" || lastChoice["content"] != "expert here" {
		t.Fatalf("after handoff: %v", lastChoice)
	}
	// The next run continues with the expert.
	ev := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "more"}}).until("agent_choice")
	if ev["agent_name"] != "expert" {
		t.Fatalf("second run answered by %v; want expert", ev["agent_name"])
	}
	reqs := f.requests()
	sys := reqs[2]["messages"].([]any)[0].(map[string]any)["content"]
	if sys != "You know." {
		t.Fatalf("expert's system prompt = %v", sys)
	}
}

func TestTransferTaskCancelledChild(t *testing.T) {
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{transferCall("call_1", "helper", "x")}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_2", "echo x")}})
	e := newTestEnv(t, map[string]string{"team.yaml": teamYAMLFor(f.URL)})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}})
	s.until("tool_call_confirmation")
	s.cancel()
	waitFor(t, "run end", func() bool { return e.s.runs.get(id) == nil })
	// The partial work is stored and the session reloads.
	code, b := e.do("GET", "/api/sessions/"+id, nil)
	if code != 200 || !strings.Contains(string(b), "transfer_task") {
		t.Fatalf("after cancel: %d %s", code, b)
	}
}

// TestSubSessionJSONOmitsEmpty: a session created without working_dir or
// max_iterations leaves them out of sub_session_completed's sub_session, as the
// reference does, and its tools still work in --working-dir.
func TestSubSessionJSONShape(t *testing.T) {
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{transferCall("call_1", "helper", "where")}}, // root
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_2", "pwd")}},                // helper
		fakeTurn{Text: []string{"here"}},                                               // helper
		fakeTurn{Text: []string{"done"}})                                               // root
	e := newTestEnv(t, map[string]string{"team.yaml": teamYAMLFor(f.URL)})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}})
	ev := s.until("sub_session_completed")
	sub := ev["sub_session"].(map[string]any)
	// As in the reference: no empty working_dir, but max_iterations and cost always.
	if _, ok := sub["working_dir"]; ok {
		t.Errorf("sub_session has working_dir: %v", sub)
	}
	for _, key := range []string{"max_iterations", "cost"} {
		if _, ok := sub[key]; !ok {
			t.Errorf("sub_session lacks %s: %v", key, sub)
		}
	}
	if len(sub["messages"].([]any)) == 0 {
		t.Errorf("sub_session has no messages: %v", sub)
	}
	s.all()
	root, _ := filepath.EvalSymlinks(e.root)
	if got := toolResponses(s.events); len(got) < 1 || strings.TrimSpace(got[0]) != root {
		t.Errorf("pwd in the sub-session = %q; want --working-dir %s", got, root)
	}
}

// TestHandoffKeepsSessionMaxIterations: a session's own max_iterations still caps the
// agent a handoff switches to (the new agent sets no limit of its own).
func TestHandoffKeepsSessionMaxIterations(t *testing.T) {
	think := fakeToolCall{ID: "call_t", Name: "think", Args: `{"thought":"hmm"}`}
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "handoff", Args: `{"agent":"expert"}`}}}, // root
		fakeTurn{ToolCalls: []fakeToolCall{think}},                                                       // expert, iteration 1
		fakeTurn{ToolCalls: []fakeToolCall{think}},                                                       // expert, iteration 2
		fakeTurn{ToolCalls: []fakeToolCall{think}},                                                       // beyond the cap
		fakeTurn{Text: []string{"done"}})
	yaml := fmt.Sprintf(`models:
  fake:
    provider: openai
    model: gpt-4o
    base_url: %s/v1
agents:
  root:
    model: fake
    handoffs: [expert]
    max_iterations: 5
  expert:
    model: fake
    toolsets:
      - type: think
`, f.URL)
	e := newTestEnv(t, map[string]string{"h.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t", "max_iterations": 2})
	s := e.run("/api/sessions/"+id+"/agent/h", []map[string]any{{"content": "go"}})
	ev := s.until("max_iterations_reached")
	if ev["max_iterations"].(float64) != 2 {
		t.Fatalf("max_iterations_reached = %v; want the session's 2", ev)
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("model turns before the cap = %d; want 3 (root + 2 expert)", n)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
}
