package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// externalHelperYAML is a one-agent config as pushed to a registry; its
// default agent (root) answers transfer_task calls, using its own model.
func externalHelperYAML(url, model string) string {
	return fmt.Sprintf(`models:
  own:
    provider: openai
    model: %s
    base_url: %s/v1
agents:
  root:
    model: own
    description: Remote helper
    instruction: You help from afar.
    toolsets:
      - type: think
`, model, url)
}

// externalRootYAML is a local root agent delegating to ref.
func externalRootYAML(url, ref string) string {
	return externalListYAML(url, "sub_agents", ref)
}

// externalListYAML is a local root agent whose list (sub_agents or handoffs)
// holds refs.
func externalListYAML(url, list string, refs ...string) string {
	return fmt.Sprintf(`models:
  fake:
    provider: openai
    model: gpt-4o
    base_url: %s/v1
agents:
  root:
    model: fake
    instruction: You lead.
    %s: [%s]
`, url, list, strings.Join(refs, ", "))
}

// transferResponses runs one transfer_task to ref and returns the tool
// responses and agent switches the client saw.
func transferResponses(t *testing.T, e *apiTest, ref string) (responses, switching []string) {
	t.Helper()
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}})
	for _, ev := range s.all() {
		switch ev["type"] {
		case "tool_call_response":
			responses = append(responses, fmt.Sprint(ev["response"]))
		case "agent_switching":
			switching = append(switching, fmt.Sprintf("%v:%v>%v", ev["switching"], ev["from_agent"], ev["to_agent"]))
		}
	}
	return responses, switching
}

func transferTo(ref string) fakeTurn {
	return fakeTurn{ToolCalls: []fakeToolCall{transferCall("c1", ref, "help")}}
}

func TestExternalSubAgentOCI(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the OCI cache of the test server
	reg := newOCITestRegistry(t, "")
	ref := reg.host + "/team/helper:latest"
	f := newFakeOpenAI(t, transferTo(ref), fakeTurn{Text: []string{"remote answer"}}, fakeTurn{Text: []string{"root final"}})
	reg.push("team/helper", "latest", []byte(externalHelperYAML(f.URL, "remote-model")), "2026-01-01T00:00:00Z")
	e := newTestEnv(t, map[string]string{"team.yaml": externalRootYAML(f.URL, ref)})

	code, b := e.do("GET", "/api/agents/team/root/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":1}` {
		t.Fatalf("root tools (transfer_task) = %d %s", code, b)
	}
	responses, switching := transferResponses(t, e, ref)
	if !slices.Equal(responses, []string{"remote answer"}) {
		t.Fatalf("tool responses = %v", responses)
	}
	if want := []string{"true:root>" + ref, "false:" + ref + ">root"}; !slices.Equal(switching, want) {
		t.Fatalf("agent_switching = %v; want %v", switching, want)
	}
	// The external agent ran with its own config: its model, instruction and tools.
	req := f.requests()[1]
	if req["model"] != "remote-model" {
		t.Fatalf("sub-agent model = %v; want the external config's", req["model"])
	}
	body := fmt.Sprint(req["messages"], req["tools"])
	if !strings.Contains(body, "You help from afar.") || !strings.Contains(body, "think") {
		t.Fatalf("sub-agent request lacks its own instruction or toolset: %s", body)
	}
}

func TestExternalSubAgentURL(t *testing.T) {
	var yaml string
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, yaml) }))
	t.Cleanup(web.Close)
	ref := web.URL + "/helper.yaml"
	f := newFakeOpenAI(t, transferTo(ref), fakeTurn{Text: []string{"url answer"}}, fakeTurn{Text: []string{"root final"}})
	yaml = externalHelperYAML(f.URL, "url-model")
	e := newTestEnv(t, map[string]string{"team.yaml": externalRootYAML(f.URL, ref)})
	if responses, _ := transferResponses(t, e, ref); !slices.Equal(responses, []string{"url answer"}) {
		t.Fatalf("tool responses = %v", responses)
	}
}

// A → B → A: the cycle guard stops the recursion at load (B then lacks A and
// says so when asked), and the team still serves.
func TestExternalSubAgentCycle(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the OCI cache of the test server
	reg := newOCITestRegistry(t, "")
	a, b := reg.host+"/team/a:latest", reg.host+"/team/b:latest"
	f := newFakeOpenAI(t, transferTo(a), transferTo(b), transferTo(a), fakeTurn{Text: []string{"b done"}},
		fakeTurn{Text: []string{"a done"}}, fakeTurn{Text: []string{"root final"}})
	reg.push("team/a", "latest", []byte(externalRootYAML(f.URL, b)), "2026-01-01T00:00:00Z")
	reg.push("team/b", "latest", []byte(externalRootYAML(f.URL, a)), "2026-01-01T00:00:00Z")
	e := newTestEnv(t, map[string]string{"team.yaml": externalRootYAML(f.URL, a)})
	responses, _ := transferResponses(t, e, a)
	if len(responses) != 3 || !strings.Contains(responses[0], "agent "+a+" is not part of this team") ||
		responses[1] != "b done" || responses[2] != "a done" {
		t.Fatalf("tool responses = %q", responses)
	}
}

// A background agent may be external too: it runs on its own team's model.
func TestExternalSubAgentBackground(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // the OCI cache of the test server
	reg := newOCITestRegistry(t, "")
	ref := reg.host + "/team/helper:latest"
	worker := newFakeOpenAI(t, fakeTurn{Text: []string{"bg remote done"}})
	lead := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{bgCall("c1", "run_background_agent", fmt.Sprintf(`{"agent":%q,"task":"dig"}`, ref))}},
		fakeTurn{Text: []string{"started"}})
	reg.push("team/helper", "latest", []byte(externalHelperYAML(worker.URL, "remote-model")), "2026-01-01T00:00:00Z")
	e := newTestEnv(t, map[string]string{"team.yaml": externalRootYAML(lead.URL, ref) +
		"    toolsets:\n      - type: background_agents\n"})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/team", []map[string]any{{"content": "start"}})
	s.until("tool_call_confirmation")
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	if r := bgResponses(s.all())["run_background_agent"]; !strings.Contains(r, "Agent: "+ref) {
		t.Fatalf("run_background_agent = %q", r)
	}
	waitFor(t, "background agent end", func() bool {
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		return strings.Contains(string(b), "bg remote done")
	})
	if reqs := worker.requests(); len(reqs) != 1 || reqs[0]["model"] != "remote-model" {
		t.Fatalf("worker requests = %v", reqs)
	}
}
