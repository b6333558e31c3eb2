package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeA2A is a remote A2A agent: an agent card and a JSON-RPC endpoint answering
// message/send with a task (artifacts + status message), a plain message, or an error,
// depending on the text it receives.
type fakeA2A struct {
	*httptest.Server
	skills string // JSON array of the card's skills
	mu     sync.Mutex
	keys   []string // X-Key of every request
}

func newFakeA2A(t *testing.T, skills string) *fakeA2A {
	f := &fakeA2A{skills: skills}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeA2A) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.keys = append(f.keys, r.Header.Get("X-Key"))
	f.mu.Unlock()
	if r.Method == "GET" && r.URL.Path == "/agent/.well-known/agent-card.json" {
		fmt.Fprintf(w, `{"name":"Helper","description":"Helps.","url":"%s/agent/rpc","version":"1","protocolVersion":"0.3.0","skills":%s}`, f.URL, f.skills)
		return
	}
	if r.Method != "POST" || r.URL.Path != "/agent/rpc" {
		http.NotFound(w, r)
		return
	}
	var req struct {
		JSONRPC string `json:"jsonrpc"`
		ID      any    `json:"id"`
		Method  string `json:"method"`
		Params  struct {
			Message struct {
				Kind, Role, MessageID string
				Parts                 []a2aPart
			} `json:"message"`
		} `json:"params"`
	}
	json.NewDecoder(r.Body).Decode(&req)
	m := req.Params.Message
	if req.JSONRPC != "2.0" || req.Method != "message/send" || m.Role != "user" || m.MessageID == "" || len(m.Parts) != 1 || m.Parts[0].Kind != "text" {
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%q,"error":{"code":-32600,"message":"bad request %+v"}}`, fmt.Sprint(req.ID), req)
		return
	}
	id, _ := json.Marshal(req.ID)
	text := m.Parts[0].Text
	var result string
	switch {
	case strings.Contains(text, "boom"):
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"error":{"code":-32603,"message":"internal failure"}}`, id)
		return
	case strings.Contains(text, "hi"):
		result = `{"kind":"message","messageId":"m2","role":"agent","parts":[{"kind":"text","text":"hello "},{"kind":"data","data":{}},{"kind":"text","text":"there"}]}`
	default:
		result = fmt.Sprintf(`{"kind":"task","id":"t1","contextId":"c1","status":{"state":"completed","message":{"role":"agent","parts":[{"kind":"text","text":" (done)"}]}},"artifacts":[{"artifactId":"a1","parts":[{"kind":"text","text":"summary of %s"}]}]}`, text)
	}
	fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":%s}`, id, result)
}

func (f *fakeA2A) keysSeen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.keys)
}

func TestA2AToolsetThroughRun(t *testing.T) {
	agent := newFakeA2A(t, `[{"id":"sum-up","name":"Summarize","description":"Summarizes text.","tags":[]},{"id":"chat","name":"Chat","description":"Chats.","tags":[]}]`)
	yaml := fmt.Sprintf("    toolsets:\n      - type: a2a\n        url: %s/agent\n        name: Remote\n        headers:\n          X-Key: ${env.A2A_KEY}\n", agent.URL)
	e, f := newRunEnv(t, yaml,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "remote_sum_up", Args: `{"message":"the news"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c2", Name: "remote_chat", Args: `{"message":"hi"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c3", Name: "remote_chat", Args: `{"message":"boom"}`}}},
		fakeTurn{Text: []string{"done"}})
	e.setenv("A2A_KEY", "k1")
	code, b := e.do("GET", "/api/agents/a/root/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":2}` {
		t.Fatalf("tools/count = %d %s; want one tool per skill", code, b)
	}
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	want := []string{"summary of the news (done)", "hello there", "A2A call failed: internal failure (code -32603)"}
	if got := toolResponses(evs); !slices.Equal(got, want) {
		t.Fatalf("tool responses = %q; want %q", got, want)
	}
	for _, k := range agent.keysSeen() {
		if k != "k1" {
			t.Fatalf("configured header missing on a request: %q", agent.keysSeen())
		}
	}
	req := f.requests()[0]
	tl := modelTool(t, req, "remote_sum_up")
	if !strings.Contains(tl["description"].(string), "Summarizes text.") {
		t.Fatalf("description = %v", tl["description"])
	}
	// The card's description reaches the system prompt.
	var sys string
	for _, m := range req["messages"].([]any) {
		if m := m.(map[string]any); m["role"] == "system" {
			sys += m["content"].(string) + "\n"
		}
	}
	if !strings.Contains(sys, "- **Summarize**: Summarizes text.") {
		t.Fatalf("system prompt lacks the agent's skills:\n%s", sys)
	}
}

func TestA2AAgentWithoutSkillsAndDeadAgent(t *testing.T) {
	agent := newFakeA2A(t, `[]`)
	yaml := fmt.Sprintf("    toolsets:\n      - type: a2a\n        url: %s/agent/\n      - type: a2a\n        url: %s/gone\n", agent.URL, agent.URL)
	e, _ := newRunEnv(t, yaml,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "helper", Args: `{"message":"hi"}`}}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	w := s.until("warning")
	if !strings.Contains(w["message"].(string), "failed to fetch A2A agent card from "+agent.URL+"/gone: unexpected status code 404") {
		t.Fatalf("warning = %v", w["message"])
	}
	// A2A tools are not read-only: the call waits for approval.
	s.until("tool_call_confirmation")
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"})
	if r := s.until("tool_call_response"); r["response"] != "hello there" {
		t.Fatalf("response = %v", r["response"])
	}
	s.all()
}
