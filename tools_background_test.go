package main

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// bgTeamYAML: root (on lead) may start helper (on worker) in the background; the two
// models are separate fakes, so the root's and the background agent's turns cannot
// interleave in one script.
func bgTeamYAML(lead, worker string) string {
	return fmt.Sprintf(`models:
  lead:
    provider: openai
    model: gpt-4o
    base_url: %s/v1
  worker:
    provider: openai
    model: gpt-4o
    base_url: %s/v1
agents:
  root:
    model: lead
    instruction: You lead.
    sub_agents: [helper]
    toolsets:
      - type: background_agents
  helper:
    model: worker
    instruction: You help.
    toolsets:
      - type: shell
  solo:
    model: lead
    instruction: Alone.
    toolsets:
      - type: background_agents
`, lead, worker)
}

func bgCall(id, name, args string) fakeToolCall {
	return fakeToolCall{ID: id, Name: name, Args: args}
}

var bgTaskID = regexp.MustCompile(`started with ID: (\S+)`)

// bgResponses maps tool name → response text of a finished stream.
func bgResponses(evs []map[string]any) map[string]string {
	out := map[string]string{}
	for _, ev := range evs {
		if ev["type"] == "tool_call_response" {
			tc := ev["tool_call"].(map[string]any)["function"].(map[string]any)
			out[tc["name"].(string)] += ev["response"].(string)
		}
	}
	return out
}

// bgStart runs the root once: it starts helper in the background (approving the
// confirmation run_background_agent needs) and returns the task ID.
// bgHeldWorker starts a background agent whose model holds its answer until the test
// ends: the session, the lead and worker models, the hold channel and the task id.
func bgHeldWorker(t *testing.T) (e *apiTest, lead, worker *fakeOpenAI, hold chan struct{}, id, task string) {
	t.Helper()
	hold = make(chan struct{})
	worker = newFakeOpenAI(t, fakeTurn{Text: []string{"thinking", " more"}, Hold: hold})
	lead = newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{bgCall("c1", "run_background_agent", `{"agent":"helper","task":"dig"}`)}},
		fakeTurn{Text: []string{"started"}})
	e = newTestEnv(t, map[string]string{"team.yaml": bgTeamYAML(lead.URL, worker.URL)})
	t.Cleanup(func() { close(hold) }) // registered after the server's, so it runs first
	e.setenv("OPENAI_API_KEY", "k")
	id = e.newSession(map[string]any{"title": "t"})
	task = bgStart(t, e, id)
	waitFor(t, "the worker's request", func() bool { return len(worker.requests()) == 1 })
	return e, lead, worker, hold, id, task
}

func bgStart(t *testing.T, e *apiTest, id string) string {
	t.Helper()
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}})
	s.until("tool_call_confirmation")
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	resp := bgResponses(s.all())["run_background_agent"]
	m := bgTaskID.FindStringSubmatch(resp)
	if m == nil || !strings.Contains(resp, "Agent: helper") {
		t.Fatalf("run_background_agent = %q", resp)
	}
	return m[1]
}

// TestBackgroundAgentCompletes: the background agent outlives the run that started
// it, runs its shell call without asking (tools are pre-approved), and a later turn
// lists it and reads its answer.
func TestBackgroundAgentCompletes(t *testing.T) {
	worker := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_w1", "echo bg-shell")}},
		fakeTurn{Text: []string{"bg ", "done"}})
	lead := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{bgCall("c1", "run_background_agent", `{"agent":"helper","task":"dig"}`)}},
		fakeTurn{Text: []string{"started"}})
	e := newTestEnv(t, map[string]string{"team.yaml": bgTeamYAML(lead.URL, worker.URL)})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	task := bgStart(t, e, id)

	// The parent shows the sub-session once the agent has finished.
	waitFor(t, "background agent end", func() bool {
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		return strings.Contains(string(b), "bg done")
	})
	if reqs := worker.requests(); len(reqs) != 2 || !strings.Contains(fmt.Sprint(reqs[1]["messages"]), "bg-shell") {
		t.Fatalf("worker requests = %v", reqs)
	}

	lead.mu.Lock()
	lead.turns = []fakeTurn{
		{ToolCalls: []fakeToolCall{bgCall("c2", "list_background_agents", `{}`)}},
		{ToolCalls: []fakeToolCall{bgCall("c3", "view_background_agent", fmt.Sprintf(`{"task_id":%q}`, task))}},
		{ToolCalls: []fakeToolCall{bgCall("c4", "run_background_agent", `{"agent":"solo","task":"x"}`)}},
		{Text: []string{"final"}},
	}
	lead.mu.Unlock()
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "how is it going?"}})
	s.until("tool_call_confirmation") // run_background_agent is not read-only
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	resp := bgResponses(s.all())
	if l := resp["list_background_agents"]; !strings.Contains(l, task) || !strings.Contains(l, "Agent: helper | Status: completed") {
		t.Fatalf("list = %q", l)
	}
	if v := resp["view_background_agent"]; !strings.Contains(v, "Status: completed") || !strings.Contains(v, "bg done") {
		t.Fatalf("view = %q", v)
	}
	if r := resp["run_background_agent"]; !strings.Contains(r, "not in sub-agents list") {
		t.Fatalf("starting a non-sub-agent = %q", r)
	}
}

// TestBackgroundAgentStop: a running background agent shows as running, and
// stop_background_agent cancels it.
func TestBackgroundAgentStop(t *testing.T) {
	e, lead, _, _, id, task := bgHeldWorker(t)

	arg := fmt.Sprintf(`{"task_id":%q}`, task)
	lead.mu.Lock()
	lead.turns = []fakeTurn{
		{ToolCalls: []fakeToolCall{bgCall("c2", "view_background_agent", arg)}},
		{ToolCalls: []fakeToolCall{bgCall("c3", "stop_background_agent", arg)}},
		{ToolCalls: []fakeToolCall{bgCall("c4", "list_background_agents", `{}`)}},
		{Text: []string{"final"}},
	}
	lead.mu.Unlock()
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "stop it"}})
	s.until("tool_call_confirmation") // stop_background_agent is not read-only
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	resp := bgResponses(s.all())
	if v := resp["view_background_agent"]; !strings.Contains(v, "Status: running") {
		t.Fatalf("view = %q", v)
	}
	if v := resp["stop_background_agent"]; !strings.Contains(v, "stopped") {
		t.Fatalf("stop = %q", v)
	}
	if l := resp["list_background_agents"]; !strings.Contains(l, "Status: stopped") {
		t.Fatalf("list = %q", l)
	}
}

// TestBackgroundAgentStopsWithSession: deleting the parent session stops its running
// background agent (the DELETE waits for it, so it would hang if it did not), and so
// does a server shutdown.
func TestBackgroundAgentStopsWithSession(t *testing.T) {
	e, lead, worker, hold, id, _ := bgHeldWorker(t)
	if code, b := e.do("DELETE", "/api/sessions/"+id, nil); code != 200 {
		t.Fatalf("delete = %d %s", code, b)
	}
	if n := len(e.s.bg.list(id)); n != 0 {
		t.Fatalf("%d background agents left after delete", n)
	}

	// Shutdown: close waits for the agent, which must see its context end.
	lead.mu.Lock()
	lead.turns = []fakeTurn{
		{ToolCalls: []fakeToolCall{bgCall("c1", "run_background_agent", `{"agent":"helper","task":"dig"}`)}},
		{Text: []string{"started"}},
	}
	lead.mu.Unlock()
	worker.mu.Lock()
	worker.turns = []fakeTurn{{Text: []string{"thinking", " more"}, Hold: hold}}
	worker.mu.Unlock()
	id = e.newSession(map[string]any{"title": "t"})
	bgStart(t, e, id)
	waitFor(t, "the worker's second request", func() bool { return len(worker.requests()) == 2 })
	bg := e.s.bg
	e.restart()
	if n := len(bg.list(id)); n != 1 {
		t.Fatalf("background agents = %d", n)
	}
	if st, _ := bg.list(id)[0].state(); st != "stopped" {
		t.Fatalf("status after shutdown = %q", st)
	}
}

// TestBackgroundAgentsToolCount: the toolset has the reference's four tools.
func TestBackgroundAgentsToolCount(t *testing.T) {
	e := newTestEnv(t, map[string]string{"team.yaml": bgTeamYAML("http://127.0.0.1:1", "http://127.0.0.1:1")})
	code, b := e.do("GET", "/api/agents/team/solo/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":4}` {
		t.Fatalf("solo tools = %d %s", code, b)
	}
	code, b = e.do("GET", "/api/agents/team/root/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":5}` {
		t.Fatalf("root tools (4 + transfer_task) = %d %s", code, b)
	}
}

// TestBackgroundAgentAskRuleFailsClosed: background agents run autonomous, but an
// ask rule wins over every mode; with nobody to answer, the call is refused with a
// reason and the agent carries on instead of waiting forever.
func TestBackgroundAgentAskRuleFailsClosed(t *testing.T) {
	worker := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_w1", "echo asked")}},
		fakeTurn{Text: []string{"bg ", "done"}})
	lead := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{bgCall("c1", "run_background_agent", `{"agent":"helper","task":"dig"}`)}},
		fakeTurn{Text: []string{"started"}})
	e := newTestEnv(t, map[string]string{"team.yaml": bgTeamYAML(lead.URL, worker.URL) + "permissions:\n  ask: [shell]\n"})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	bgStart(t, e, id)
	waitFor(t, "background agent end", func() bool {
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		return strings.Contains(string(b), "bg done")
	})
	if reqs := worker.requests(); len(reqs) != 2 || !strings.Contains(fmt.Sprint(reqs[1]["messages"]), "cannot ask for") {
		t.Fatalf("worker requests = %v; want the refusal as the shell result", reqs)
	}
}
