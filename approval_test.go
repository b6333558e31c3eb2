package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const shellThinkYAML = "    toolsets:\n      - type: shell\n      - type: think\n"

func shellCall(id, cmd string) fakeToolCall {
	return fakeToolCall{ID: id, Name: "shell", Args: `{"cmd":"` + cmd + `"}`}
}

// toolResponses returns the response text of each tool_call_response.
func toolResponses(evs []map[string]any) []string {
	var out []string
	for _, ev := range evs {
		if ev["type"] == "tool_call_response" {
			out = append(out, ev["response"].(string))
		}
	}
	return out
}

func TestConfirmationApproveAndReject(t *testing.T) {
	e, f := newRunEnv(t, shellThinkYAML,
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo approved")}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_2", "echo never")}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	ev := s.until("tool_call_confirmation")
	if ev["tool_call"].(map[string]any)["function"].(map[string]any)["name"] != "shell" || ev["tool_definition"].(map[string]any)["name"] != "shell" {
		t.Fatalf("confirmation = %v", ev)
	}
	// Invalid values and unknown sessions are refused without touching the run.
	if code, _ := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "yes please"}); code != 400 {
		t.Fatalf("bad confirmation = %d; want 400", code)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 || !strings.Contains(string(b), "session resumed") {
		t.Fatalf("approve = %d %s", code, b)
	}
	if code, _ := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 409 {
		t.Fatalf("second resume with nothing pending = %d; want 409", code)
	}
	s.until("tool_call")
	if resp := s.until("tool_call_response"); resp["response"] != "approved" {
		t.Fatalf("tool output = %v", resp["response"])
	}
	s.until("tool_call_confirmation")
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject", "reason": "  not now "})
	resp := s.until("tool_call_response")
	if resp["response"] != "The user rejected the tool call. Reason: not now" || resp["result"].(map[string]any)["isError"] != true {
		t.Fatalf("reject response = %v", resp)
	}
	s.all()
	// The model got the rejection as the tool result.
	reqs := f.requests()
	msgs := reqs[2]["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)
	if last["role"] != "tool" || !strings.Contains(last["content"].(string), "rejected") {
		t.Fatalf("third request's last message = %v", last)
	}
}

func TestConfirmationApproveSessionAndTool(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML,
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo one")}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_2", "echo two")}},
		fakeTurn{Text: []string{"done"}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_3", "echo three")}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_4", "echo four")}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve-session"})
	evs := s.all()
	if n := strings.Count(strings.Join(s.types(), ","), "tool_call_confirmation"); n != 1 {
		t.Fatalf("approve-session should stop further confirmations; got %d", n)
	}
	if got := toolResponses(evs); len(got) != 2 || got[1] != "two" {
		t.Fatalf("responses = %v", got)
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	if !decode[sessionResponse](t, b).ToolsApproved {
		t.Fatalf("approve-session not persisted: %s", b)
	}
	// approve-tool adds the tool to the session's allow list.
	e.do("POST", "/api/sessions/"+id+"/tools/toggle", nil) // YOLO off again
	s = e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "again"}})
	s.until("tool_call_confirmation")
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve-tool"})
	s.all()
	if n := strings.Count(strings.Join(s.types(), ","), "tool_call_confirmation"); n != 1 {
		t.Fatalf("approve-tool should allow the next shell call; confirmations = %d", n)
	}
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	if p := decode[sessionResponse](t, b).Permissions; p == nil || len(p.Allow) != 1 || p.Allow[0] != "shell" {
		t.Fatalf("permissions after approve-tool = %+v", p)
	}
}

var (
	thinkCall      = fakeToolCall{ID: "c", Name: "think", Args: `{"thought":"x"}`}
	strictMode     = map[string]any{"safety_policy": "strict"}
	balancedMode   = map[string]any{"safety_policy": "balanced"}
	restrictedMode = map[string]any{"safety_policy": "restricted"}
	autonomousMode = map[string]any{"safety_policy": "autonomous"}
)

const restrictedDenial = "Tool 'shell' is denied by the session's restricted safety mode: only read-only tools and safe-listed shell commands run."

func TestApprovalPolicy(t *testing.T) {
	cases := []struct {
		name     string
		extra    string // appended to the YAML (top-level permissions)
		session  map[string]any
		call     fakeToolCall
		confirm  bool   // a confirmation is expected
		response string // expected tool response (when no confirmation)
	}{
		{name: "read-only runs", call: fakeToolCall{ID: "c", Name: "think", Args: `{"thought":"x"}`}, response: "Thoughts:\nx"},
		{name: "shell asks", call: shellCall("c", "echo a"), confirm: true},
		{name: "yolo runs", session: map[string]any{"tools_approved": true}, call: shellCall("c", "echo y"), response: "y"},
		{name: "session allow with args", session: map[string]any{"permissions": map[string]any{"allow": []string{"shell:cmd=echo*"}}}, call: shellCall("c", "echo ok"), response: "ok"},
		{name: "session allow not matching", session: map[string]any{"permissions": map[string]any{"allow": []string{"shell:cmd=ls*"}}}, call: shellCall("c", "echo no"), confirm: true},
		{name: "session deny", session: map[string]any{"tools_approved": false, "permissions": map[string]any{"deny": []string{"SHELL"}}}, call: shellCall("c", "echo x"), response: "Tool 'shell' is denied by session permissions."},
		{name: "session ask beats read-only", session: map[string]any{"permissions": map[string]any{"ask": []string{"think"}}}, call: fakeToolCall{ID: "c", Name: "think", Args: `{"thought":"x"}`}, confirm: true},
		{name: "team allow", extra: "permissions:\n  allow: [\"shell:cmd=echo *\"]\n", call: shellCall("c", "echo team"), response: "team"},
		{name: "team deny beats yolo", extra: "permissions:\n  deny: [shell]\n", session: map[string]any{"tools_approved": true}, call: shellCall("c", "echo x"), response: "Tool 'shell' is denied by permissions configuration."},
		{name: "team deny beats session allow", extra: "permissions:\n  deny: [\"shell:cmd=rm*\"]\n", session: map[string]any{"permissions": map[string]any{"allow": []string{"shell"}}}, call: shellCall("c", "rm -rf x"), response: "Tool 'shell' is denied by permissions configuration."},
		{name: "unknown tool", call: fakeToolCall{ID: "c", Name: "nope", Args: `{}`}, response: "Tool 'nope' is not available. You can only use the tools provided to you."},
		// Safety modes (API-UPSTREAM.md §3.7): rules first, then the mode.
		{name: "strict asks even for read-only", session: strictMode, call: thinkCall, confirm: true},
		{name: "balanced runs read-only", session: balancedMode, call: thinkCall, response: "Thoughts:\nx"},
		{name: "balanced runs a safe-listed command", session: balancedMode, call: shellCall("c", "echo safe"), response: "safe"},
		{name: "balanced asks for an unsafe command", session: balancedMode, call: shellCall("c", "touch made"), confirm: true},
		{name: "balanced asks for shell syntax", session: balancedMode, call: shellCall("c", "echo a > made"), confirm: true},
		{name: "balanced asks for a path outside", session: balancedMode, call: shellCall("c", "cat /etc/hostname"), confirm: true},
		{name: "restricted runs a safe-listed command", session: restrictedMode, call: shellCall("c", "echo safe"), response: "safe"},
		{name: "restricted denies an unsafe command without asking", session: restrictedMode, call: shellCall("c", "touch made"), response: restrictedDenial},
		{name: "restricted: a session allow rule wins", session: map[string]any{"safety_policy": "restricted", "permissions": map[string]any{"allow": []string{"shell:cmd=touch*"}}}, call: shellCall("c", "touch made"), response: "<no output>"},
		{name: "autonomous runs anything", session: autonomousMode, call: shellCall("c", "echo y"), response: "y"},
		{name: "autonomous: a session deny wins", session: map[string]any{"safety_policy": "autonomous", "permissions": map[string]any{"deny": []string{"shell"}}}, call: shellCall("c", "echo x"), response: "Tool 'shell' is denied by session permissions."},
		{name: "autonomous: a session ask rule asks", session: map[string]any{"safety_policy": "autonomous", "permissions": map[string]any{"ask": []string{"shell"}}}, call: shellCall("c", "echo x"), confirm: true},
		{name: "autonomous: team deny wins", extra: "permissions:\n  deny: [shell]\n", session: autonomousMode, call: shellCall("c", "echo x"), response: "Tool 'shell' is denied by permissions configuration."},
		{name: "legacy unsafe is autonomous", session: map[string]any{"safety_policy": "unsafe"}, call: shellCall("c", "echo u"), response: "u"},
		{name: "legacy safe-auto is balanced", session: map[string]any{"safety_policy": "safe-auto"}, call: shellCall("c", "touch made"), confirm: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := newRunEnv(t, shellThinkYAML+tc.extra, fakeTurn{ToolCalls: []fakeToolCall{tc.call}}, fakeTurn{Text: []string{"end"}})
			body := map[string]any{"title": "t"}
			for k, v := range tc.session {
				body[k] = v
			}
			id := e.newSession(body)
			s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
			if tc.confirm {
				s.until("tool_call_confirmation")
				e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
				s.all()
				return
			}
			evs := s.all()
			if strings.Contains(strings.Join(s.types(), ","), "tool_call_confirmation") {
				t.Fatalf("unexpected confirmation: %v", s.types())
			}
			if got := toolResponses(evs); len(got) != 1 || got[0] != tc.response {
				t.Fatalf("responses = %q; want %q", got, tc.response)
			}
			if _, err := os.Stat(filepath.Join(e.root, "made")); (err == nil) != (tc.response == "<no output>") {
				t.Fatalf("the file the command makes exists: %v; want it only when the command was allowed", err == nil)
			}
		})
	}
}

func TestParallelToolCallsInOrder(t *testing.T) {
	e, f := newRunEnv(t, shellThinkYAML,
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_a", "echo first"), shellCall("call_b", "echo second")}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	if got := toolResponses(evs); len(got) != 2 || got[0] != "first" || got[1] != "second" {
		t.Fatalf("responses = %v", got)
	}
	msgs := f.requests()[1]["messages"].([]any)
	n := len(msgs)
	a, b := msgs[n-2].(map[string]any), msgs[n-1].(map[string]any)
	if a["tool_call_id"] != "call_a" || b["tool_call_id"] != "call_b" {
		t.Fatalf("tool results sent back out of order: %v %v", a, b)
	}
}

func TestPermissionPatterns(t *testing.T) {
	cases := []struct {
		pattern, name, args string
		want                bool
	}{
		{"shell", "shell", `{}`, true},
		{"SHELL", "shell", `{}`, true},
		{"read_*", "read_file", `{}`, true},
		{"shell:cmd=sudo*", "shell", `{"cmd":"sudo rm -rf /"}`, true},
		{"shell:cmd=sudo*", "shell", `{"cmd":"ls"}`, false},
		{"shell:cmd=ls *", "shell", `{"cmd":"ls -la"}`, true},
		{"mcp:github:create_issue", "mcp:github:create_issue", `{}`, true},
		{"fetch:timeout=30", "fetch", `{"timeout":30}`, true},
		{"fetch:timeout=30", "fetch", `{"timeout":30.5}`, false},
		{"write_file:path=/etc/*", "write_file", `{"path":"/etc/a/b"}`, true},
		{"shell:cmd=ls*", "shell", `not json`, false},
		{"shell:missing=x", "shell", `{"cmd":"x"}`, false},
	}
	for _, tc := range cases {
		p, err := parsePattern(tc.pattern)
		if err != nil {
			t.Fatalf("parsePattern(%q): %v", tc.pattern, err)
		}
		if got := p.matches(tc.name, newCallArgs(toolDef{Name: tc.name}, tc.args, ""), false); got != tc.want {
			t.Errorf("%q matches %s(%s) = %v; want %v", tc.pattern, tc.name, tc.args, got, tc.want)
		}
	}
	for _, bad := range []string{"", "shell:cmd=[x", "[", "shell:cmd=x:junk", ":cmd=x"} {
		if _, err := parsePattern(bad); err == nil {
			t.Errorf("parsePattern(%q) accepted a malformed pattern", bad)
		}
	}
}

// TestMalformedYAMLDenyFailsClosed: a deny glob that can never match must not let the
// command through: the file fails to load at the pattern's position and cannot run,
// even with YOLO on.
func TestMalformedYAMLDenyFailsClosed(t *testing.T) {
	e, f := newRunEnv(t, "    toolsets:\n      - type: shell\npermissions:\n  deny:\n    - \"shell:cmd=[\"\n",
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "touch pwned")}},
		fakeTurn{Text: []string{"done"}})
	_, b := e.do("GET", "/api/agents", nil)
	list := decode[[]agentSummary](t, b)
	if len(list) != 1 || !strings.Contains(list[0].Error, "a.yaml:15:7") || !strings.Contains(list[0].Error, "malformed glob") {
		t.Fatalf("agents = %s; want a.yaml listed with a file:line:col error for the bad glob", b)
	}
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	if s.resp.StatusCode != 404 {
		s.all()
		t.Errorf("run of a file that failed to load = %d (%v); want 404", s.resp.StatusCode, s.types())
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("the agent ran: %d model requests", n)
	}
	if _, err := os.Stat(filepath.Join(e.root, "pwned")); err == nil {
		t.Fatalf("the shell command ran despite the deny pattern")
	}
}
