package main

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// hookBlock renders one hook of type command for the YAML, at the given indent.
func hookBlock(indent, cmd string, timeout int) string {
	var b strings.Builder
	b.WriteString(indent + "- type: command\n")
	if timeout > 0 {
		b.WriteString(indent + "  timeout: " + strconv.Itoa(timeout) + "\n")
	}
	b.WriteString(indent + "  command: |\n")
	for _, line := range strings.Split(strings.TrimSpace(cmd), "\n") {
		b.WriteString(indent + "    " + strings.TrimSpace(line) + "\n")
	}
	return b.String()
}

// toolHooks is an agent's tool-call hooks for the event, one matcher with one hook.
func toolHooks(event, matcher, cmd string, timeout int) string {
	return "      " + event + ":\n        - matcher: \"" + matcher + "\"\n          hooks:\n" + hookBlock("            ", cmd, timeout)
}

// withHooks is an agent with the shell toolset and the given hooks (YAML lines).
func withHooks(hooks ...string) string {
	return "    toolsets:\n      - type: shell\n    hooks:\n" + strings.Join(hooks, "")
}

// hookStdin reads the JSON a hook saved from its stdin into the working dir.
func hookStdin(t *testing.T, e *apiTest, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.root, name))
	if err != nil {
		t.Fatalf("the hook did not run: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("hook stdin %q: %v", b, err)
	}
	return m
}

func eventOf(evs []map[string]any, typ string) map[string]any {
	for _, ev := range evs {
		if ev["type"] == typ {
			return ev
		}
	}
	return nil
}

func eventArgs(ev map[string]any) string {
	return ev["tool_call"].(map[string]any)["function"].(map[string]any)["arguments"].(string)
}

// A blocking pre_tool_use hook stops the call in YOLO mode: hook_blocked, an error
// result the model sees, no tool_call, and the command's file never appears.
func TestHookBlocksToolCallInYOLO(t *testing.T) {
	cases := []struct{ name, hook, reason string }{
		{"exit 2", "cat > pre.json\necho 'no touching' >&2\nexit 2", "no touching"},
		{"decision block", `cat > pre.json
			echo '{"decision":"block","reason":"policy says no"}'`, "policy says no"},
		{"permission deny", `cat > pre.json
			echo '{"hook_specific_output":{"permission_decision":"deny","permission_decision_reason":"denied by hook"}}'`, "denied by hook"},
		{"continue false", `cat > pre.json
			echo '{"continue":false,"stop_reason":"stop here"}'`, "stop here"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, f := newRunEnv(t, withHooks(toolHooks("pre_tool_use", "shell|think", tc.hook, 0)),
				fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "touch made")}},
				fakeTurn{Text: []string{"ok"}})
			id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
			s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
			evs := s.all()
			if _, err := os.Stat(filepath.Join(e.root, "made")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the blocked command ran: %v", err)
			}
			if slices.Contains(s.types(), "tool_call") {
				t.Fatalf("tool_call sent for a blocked call: %v", s.types())
			}
			hb := eventOf(evs, "hook_blocked")
			if hb == nil || hb["message"] != tc.reason || hb["tool_definition"].(map[string]any)["name"] != "shell" || hb["agent_name"] != "root" || eventArgs(hb) != `{"cmd":"touch made"}` {
				t.Fatalf("hook_blocked = %v (events %v)", hb, s.types())
			}
			want := "Tool call blocked by hook: " + tc.reason
			resp := eventOf(evs, "tool_call_response")
			if resp["response"] != want || resp["result"].(map[string]any)["isError"] != true {
				t.Fatalf("tool_call_response = %v", resp)
			}
			msgs := f.requests()[1]["messages"].([]any)
			if last := msgs[len(msgs)-1].(map[string]any); last["role"] != "tool" || last["content"] != want {
				t.Fatalf("the model got %v", last)
			}
			in := hookStdin(t, e, "pre.json")
			wd, _ := filepath.EvalSymlinks(e.root)
			if in["hook_event_name"] != "pre_tool_use" || in["tool_name"] != "shell" || in["tool_use_id"] != "call_1" ||
				in["session_id"] != id || in["cwd"] != wd || in["tool_input"].(map[string]any)["cmd"] != "touch made" {
				t.Fatalf("hook stdin = %v", in)
			}
		})
	}
}

// A hook whose matcher does not match the tool name (anchored regexp) does not run.
func TestHookMatcherIsAnchored(t *testing.T) {
	e, _ := newRunEnv(t, withHooks(toolHooks("pre_tool_use", "shel", "exit 2", 0)),
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo ran")}},
		fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	if got := toolResponses(evs); len(got) != 1 || got[0] != "ran" {
		t.Fatalf("responses = %q", got)
	}
}

// A hook's updated_input replaces the call's arguments: that is what runs.
func TestHookRewritesToolInput(t *testing.T) {
	hook := `echo '{"hook_specific_output":{"updated_input":{"cmd":"echo rewritten"}},"system_message":"command rewritten"}'`
	e, _ := newRunEnv(t, withHooks(toolHooks("pre_tool_use", "*", hook, 0)),
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo original")}},
		fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	evs := s.all()
	if got := toolResponses(evs); len(got) != 1 || got[0] != "rewritten" {
		t.Fatalf("responses = %q", got)
	}
	if tc := eventOf(evs, "tool_call"); tc == nil || eventArgs(tc) != `{"cmd":"echo rewritten"}` {
		t.Fatalf("tool_call = %v", tc)
	}
	if w := eventOf(evs, "warning"); w == nil || w["message"] != "command rewritten" {
		t.Fatalf("warning = %v (events %v)", w, s.types())
	}
}

// A rewritten call is checked against the permissions again: a hook cannot turn a
// call into one the YAML denies, nor skip the confirmation the new call needs. A
// call the YAML denies never reaches the hooks.
func TestHookRewriteStillChecksPermissions(t *testing.T) {
	hook := `cat > pre.json
		echo '{"hook_specific_output":{"updated_input":{"cmd":"rm -f keep"}}}'`
	deny := "permissions:\n  deny: [\"shell:cmd=rm*\"]\n  allow: [\"shell:cmd=echo*\"]\n"
	e, _ := newRunEnv(t, withHooks(toolHooks("pre_tool_use", "shell", hook, 0))+deny,
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo safe")}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_2", "rm -f keep")}},
		fakeTurn{Text: []string{"ok"}})
	os.WriteFile(filepath.Join(e.root, "keep"), []byte("x"), 0o644)
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	want := "Tool 'shell' is denied by permissions configuration."
	if got := toolResponses(evs); len(got) != 2 || got[0] != want || got[1] != want {
		t.Fatalf("responses = %q", got)
	}
	if _, err := os.Stat(filepath.Join(e.root, "keep")); err != nil {
		t.Fatalf("the denied command ran: %v", err)
	}
	if in := hookStdin(t, e, "pre.json"); in["tool_use_id"] != "call_1" {
		t.Fatalf("the hook saw the denied call_2: %v", in)
	}

	// Not YOLO: the original is allowed by a pattern, the rewrite is not, so it is
	// confirmed, and the confirmation shows the rewritten call.
	hook = `echo '{"hook_specific_output":{"updated_input":{"cmd":"touch sneaky"}}}'`
	e, _ = newRunEnv(t, withHooks(toolHooks("pre_tool_use", "shell", hook, 0))+"permissions:\n  allow: [\"shell:cmd=echo*\"]\n",
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo safe")}},
		fakeTurn{Text: []string{"ok"}})
	id = e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	if ev := s.until("tool_call_confirmation"); eventArgs(ev) != `{"cmd":"touch sneaky"}` {
		t.Fatalf("confirmation = %v", ev)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
	if _, err := os.Stat(filepath.Join(e.root, "sneaky")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the rejected rewrite ran: %v", err)
	}
}

// A hook that outlives its timeout is killed with its children, and the call it
// guards is blocked saying so.
func TestHookTimeoutKillsProcessGroup(t *testing.T) {
	hook := "sleep 30 &\necho $! > child.pid\nwait"
	e, _ := newRunEnv(t, withHooks(toolHooks("pre_tool_use", "shell", hook, 1)),
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "touch made")}},
		fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	evs := s.all()
	msg := "pre_tool_use hook timed out after 1s and was killed"
	if got := toolResponses(evs); len(got) != 1 || got[0] != "Tool call blocked by hook: "+msg {
		t.Fatalf("responses = %q", got)
	}
	if w := eventOf(evs, "warning"); w == nil || w["message"] != msg {
		t.Fatalf("warning = %v", w)
	}
	if _, err := os.Stat(filepath.Join(e.root, "made")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the guarded command ran: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(e.root, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitFor(t, "the hook's child to die", func() bool { return processGone(pid) })
}

// processGone reports whether pid no longer runs (gone, or a zombie awaiting reaping).
func processGone(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return strings.HasPrefix(rest, "Z")
}

// post_tool_use gets the call and its result; its system_message becomes a warning.
func TestHookPostToolUseSeesResult(t *testing.T) {
	hook := `cat > post.json
		echo '{"system_message":"audited"}'`
	e, _ := newRunEnv(t, withHooks(toolHooks("post_tool_use", "*", hook, 0)),
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo hello")}},
		fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.all()
	in := hookStdin(t, e, "post.json")
	resp, _ := in["tool_response"].(map[string]any)
	if in["hook_event_name"] != "post_tool_use" || in["tool_name"] != "shell" || in["tool_use_id"] != "call_1" ||
		in["tool_input"].(map[string]any)["cmd"] != "echo hello" || resp["output"] != "hello" {
		t.Fatalf("post hook stdin = %v", in)
	}
	types := s.types()
	if i, j := slices.Index(types, "tool_call_response"), slices.Index(types, "warning"); i < 0 || j < i {
		t.Fatalf("the warning should follow the tool result: %v", types)
	}
}

// session_start, session_end and on_user_input run with their JSON on stdin, in the
// session's working dir, without the server's secrets in their environment.
func TestHookSessionLifecycle(t *testing.T) {
	t.Setenv(authTokenEnv, "server-secret")
	t.Setenv("OPENAI_API_KEY", "sk-secret")
	hooks := "      session_start:\n" + hookBlock("        ", "cat > start.json\nenv > env.txt\necho 'Remember the magic word.'", 0) +
		"      session_end:\n" + hookBlock("        ", "cat > end.json", 0) +
		"      on_user_input:\n" + hookBlock("        ", "cat >> input.jsonl\necho >> input.jsonl", 0)
	e, f := newRunEnv(t, withHooks(hooks),
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo hi")}},
		fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	// The hook runs once the confirmation is out; the run then waits for the answer.
	waitFor(t, "on_user_input at the confirmation", func() bool {
		b, _ := os.ReadFile(filepath.Join(e.root, "input.jsonl"))
		return strings.Count(string(b), "\n") == 1
	})
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"})
	s.all()

	wd, _ := filepath.EvalSymlinks(e.root)
	start := hookStdin(t, e, "start.json")
	if start["hook_event_name"] != "session_start" || start["source"] != "startup" || start["session_id"] != id || start["cwd"] != wd {
		t.Fatalf("session_start stdin = %v", start)
	}
	end := hookStdin(t, e, "end.json")
	if end["hook_event_name"] != "session_end" || end["reason"] != "stream_ended" || end["session_id"] != id || end["cwd"] != wd {
		t.Fatalf("session_end stdin = %v", end)
	}
	b, _ := os.ReadFile(filepath.Join(e.root, "input.jsonl"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 2 { // the confirmation and the end of the run
		t.Fatalf("on_user_input ran %d times: %q", len(lines), b)
	}
	for _, l := range lines {
		var in map[string]any
		if json.Unmarshal([]byte(l), &in) != nil || in["hook_event_name"] != "on_user_input" || in["session_id"] != id || in["cwd"] != wd {
			t.Fatalf("on_user_input stdin = %q", l)
		}
	}
	env, _ := os.ReadFile(filepath.Join(e.root, "env.txt"))
	if strings.Contains(string(env), "secret") || !strings.Contains(string(env), "PATH=") {
		t.Fatalf("hook environment:\n%s", env)
	}
	// session_start's plain output is context for the model.
	sys := f.requests()[0]["messages"].([]any)
	found := false
	for _, m := range sys {
		if m := m.(map[string]any); m["role"] == "system" && m["content"] == "Remember the magic word." {
			found = true
		}
	}
	if !found {
		t.Fatalf("session_start context missing from %v", sys)
	}
}

// A hook's output is capped and a long reason is cut before it reaches the model.
func TestHookOutputCapped(t *testing.T) {
	out := runHook(t.Context(), hookDef{Command: "head -c 1000000 /dev/zero | tr '\\0' x; head -c 1000000 /dev/zero | tr '\\0' y >&2; exit 2"}, nil, t.TempDir(), "/bin/sh", nil)
	if len(out.stdout) > hookOutputLimit+100 || len(out.stderr) > hookOutputLimit+100 || out.code != 2 {
		t.Fatalf("stdout %d bytes, stderr %d bytes, code %d", len(out.stdout), len(out.stderr), out.code)
	}
	var o hookOutcome
	o.add("pre_tool_use", out)
	if m := o.message(); !o.blocked || len(m) > hookMessageLimit+len("…") || !strings.HasPrefix(m, "yyy") {
		t.Fatalf("blocked %v, message of %d bytes", o.blocked, len(m))
	}
}
