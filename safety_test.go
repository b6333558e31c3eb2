package main

import (
	"strings"
	"testing"
)

// sessionSafety reads the session as both client generations see it: tools_approved
// (old) and safety_policy (new), from GET /api/sessions/{id}.
func sessionSafety(t *testing.T, e *apiTest, id string) (bool, string) {
	t.Helper()
	code, b := e.do("GET", "/api/sessions/"+id, nil)
	if code != 200 {
		t.Fatalf("GET session = %d %s", code, b)
	}
	s := decode[map[string]any](t, b)
	policy, _ := s["safety_policy"].(string)
	return s["tools_approved"].(bool), policy
}

// TestSafetyPolicyRouteAndToggle: PATCH …/safety-policy (new clients) and tools/toggle
// (old clients) move the same state: YOLO on is autonomous, off restores the mode
// that was set before; bad input is a 400 JSON error; the mode survives a restart.
func TestSafetyPolicyRouteAndToggle(t *testing.T) {
	e := newTestEnv(t, nil)
	code, b := e.do("POST", "/api/sessions", map[string]any{"safety_policy": "balanced"})
	created := decode[map[string]any](t, b)
	if code != 200 || created["safety_policy"] != "balanced" || created["tools_approved"] != false {
		t.Fatalf("create with safety_policy = %d %s", code, b)
	}
	id := created["id"].(string)
	patch := func(body any) (int, string) {
		code, b := e.do("PATCH", "/api/sessions/"+id+"/safety-policy", body)
		return code, string(b)
	}
	for _, bad := range []struct {
		body any
		want string
	}{
		{map[string]any{"safety_policy": "yolo"}, `invalid safety_policy: \"yolo\"`},
		{map[string]any{}, "safety_policy is required"},
		{map[string]any{"safety_policy": 3}, "invalid request body"},
		{"{", "invalid request body"},
	} {
		if code, b := patch(bad.body); code != 400 || !strings.Contains(b, bad.want) || !strings.Contains(b, `"error"`) {
			t.Errorf("PATCH %v = %d %s; want 400 with %s", bad.body, code, b, bad.want)
		}
	}
	if code, b := e.do("PATCH", "/api/sessions/nope/safety-policy", map[string]any{"safety_policy": "strict"}); code != 404 {
		t.Errorf("unknown session = %d %s; want 404", code, b)
	}
	if yolo, p := sessionSafety(t, e, id); yolo || p != "balanced" {
		t.Fatalf("after bad PATCHes: tools_approved %v, safety_policy %q; want unchanged balanced", yolo, p)
	}

	// The old client's YOLO switch goes through the mode and back.
	e.do("POST", "/api/sessions/"+id+"/tools/toggle", nil)
	if yolo, p := sessionSafety(t, e, id); !yolo || p != "autonomous" {
		t.Fatalf("toggle on: tools_approved %v, safety_policy %q; want true, autonomous", yolo, p)
	}
	e.do("POST", "/api/sessions/"+id+"/tools/toggle", nil)
	if yolo, p := sessionSafety(t, e, id); yolo || p != "balanced" {
		t.Fatalf("toggle off: tools_approved %v, safety_policy %q; want false, balanced restored", yolo, p)
	}

	// Legacy names normalise; autonomous is YOLO for old clients.
	for _, tc := range []struct {
		in, want string
		yolo     bool
	}{
		{"unsafe", "autonomous", true}, {"safer", "balanced", false}, {"Safe-Auto", "balanced", false},
		{"restricted", "restricted", false}, {"autonomous", "autonomous", true}, {"strict", "strict", false},
	} {
		if code, b := patch(map[string]any{"safety_policy": tc.in}); code != 200 || !strings.Contains(b, "session safety policy updated") {
			t.Fatalf("PATCH %s = %d %s", tc.in, code, b)
		}
		if yolo, p := sessionSafety(t, e, id); yolo != tc.yolo || p != tc.want {
			t.Errorf("after %s: tools_approved %v, safety_policy %q; want %v, %q", tc.in, yolo, p, tc.yolo, tc.want)
		}
	}
	// "" is the default again: neither YOLO nor a mode.
	if code, b := patch(map[string]any{"safety_policy": ""}); code != 200 {
		t.Fatalf("PATCH \"\" = %d %s", code, b)
	}
	if yolo, p := sessionSafety(t, e, id); yolo || p != "" {
		t.Fatalf("after \"\": %v %q; want the default", yolo, p)
	}

	// Old clients create with tools_approved, which is the autonomous mode; both given
	// and disagreeing is refused.
	code, b = e.do("POST", "/api/sessions", map[string]any{"tools_approved": true})
	if s := decode[map[string]any](t, b); code != 200 || s["safety_policy"] != "autonomous" || s["tools_approved"] != true {
		t.Fatalf("old-client create = %d %s", code, b)
	}
	if code, b := e.do("POST", "/api/sessions", map[string]any{"tools_approved": true, "safety_policy": "strict"}); code != 400 || !strings.Contains(string(b), "autonomous") {
		t.Fatalf("conflicting create = %d %s; want 400", code, b)
	}
	if code, b := e.do("POST", "/api/sessions", map[string]any{"safety_policy": "sometimes"}); code != 400 || !strings.Contains(string(b), "invalid safety_policy") {
		t.Fatalf("bad create = %d %s; want 400", code, b)
	}

	patch(map[string]any{"safety_policy": "restricted"})
	e.restart()
	if yolo, p := sessionSafety(t, e, id); yolo || p != "restricted" {
		t.Fatalf("after restart: %v %q; want restricted", yolo, p)
	}
}

// TestConfirmationSafetyValues: approve-balanced and approve-autonomous run the call
// and switch the live run's mode at once (the next calls follow it) and the stored
// session's. The legacy values map as the spec guesses (UNCONFIRMED upstream):
// approve-session → autonomous, approve-safe/approve-safer → balanced.
func TestConfirmationSafetyValues_LegacyMappingUNCONFIRMED(t *testing.T) {
	for _, tc := range []struct {
		answer, mode string
		yolo         bool
	}{
		{"approve-balanced", "balanced", false},
		{"approve-autonomous", "autonomous", true},
		{"approve-session", "autonomous", true},
		{"approve-safe", "balanced", false},
		{"approve-safer", "balanced", false},
	} {
		t.Run(tc.answer, func(t *testing.T) {
			e, _ := newRunEnv(t, shellThinkYAML,
				fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "touch one")}},
				fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_2", "echo safe")}},
				fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_3", "touch two")}},
				fakeTurn{Text: []string{"done"}})
			id := e.newSession(map[string]any{"title": "t", "safety_policy": "strict"})
			s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
			s.until("tool_call_confirmation")
			if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": tc.answer}); code != 200 {
				t.Fatalf("resume %s = %d %s", tc.answer, code, b)
			}
			s.until("tool_call_response") // the answer has been applied
			if yolo, p := sessionSafety(t, e, id); yolo != tc.yolo || p != tc.mode {
				t.Fatalf("while running: tools_approved %v, safety_policy %q; want %v, %q", yolo, p, tc.yolo, tc.mode)
			}
			if tc.mode == "balanced" {
				// echo runs unasked; touch asks again.
				s.until("tool_call_confirmation")
				e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
			}
			evs := s.all()
			want := map[bool]int{true: 1, false: 2}[tc.yolo]
			if n := strings.Count(strings.Join(s.types(), ","), "tool_call_confirmation"); n != want {
				t.Fatalf("confirmations = %d; want %d (%v)", n, want, s.types())
			}
			if got := toolResponses(evs); len(got) != 3 || got[1] != "safe" {
				t.Fatalf("responses = %q", got)
			}
		})
	}
}

// TestSafetyPolicyReachesLiveRun: a PATCH while a run waits for a confirmation
// governs that run's next calls (strict → autonomous: no more questions).
func TestSafetyPolicyReachesLiveRun(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML,
		fakeTurn{ToolCalls: []fakeToolCall{thinkCall}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_2", "echo ran")}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t", "safety_policy": "strict"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation") // strict asks even for think
	if code, b := e.do("PATCH", "/api/sessions/"+id+"/safety-policy", map[string]string{"safety_policy": "autonomous"}); code != 200 {
		t.Fatalf("PATCH = %d %s", code, b)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"})
	evs := s.all()
	if n := strings.Count(strings.Join(s.types(), ","), "tool_call_confirmation"); n != 1 {
		t.Fatalf("confirmations = %d; want 1 (%v)", n, s.types())
	}
	if got := toolResponses(evs); len(got) != 2 || got[1] != "ran" {
		t.Fatalf("responses = %q", got)
	}
	if yolo, p := sessionSafety(t, e, id); !yolo || p != "autonomous" {
		t.Fatalf("after the run: %v %q; the run must not write back its old mode", yolo, p)
	}
}

func TestSafeShellCommand(t *testing.T) {
	for cmd, want := range map[string]bool{
		"ls": true, "ls -la sub": true, "git status": true, "grep -rn foo .": true, "echo hello": true,
		"": false, "rm x": false, "ls; rm x": false, "ls && rm x": false, "cat x | sh": false, "echo a > f": false,
		"cat $(whoami)": false, "cat `id`": false, "cat /etc/passwd": false, "cat ../x": false, "ls *": false,
		"git push": false, "git status --porcelain": false, "cat ~/.ssh/id_rsa": false, "echo 'a'": false,
		"ls\nrm x": false, "FOO=1 ls": false,
	} {
		if got := safeShellCommand(cmd); got != want {
			t.Errorf("safeShellCommand(%q) = %v; want %v", cmd, got, want)
		}
	}
}

// TestOldAndNewClientShareSafetyState: an old client (bare-array runs, YOLO toggle,
// approve-session) and a new one (object runs, safety_policy, approve-balanced) work
// on the same session of one server, each seeing the other's change in its own terms.
func TestOldAndNewClientShareSafetyState(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML,
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("c1", "touch one")}}, fakeTurn{Text: []string{"old done"}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("c2", "echo safe"), shellCall("c3", "touch two")}}, fakeTurn{Text: []string{"new done"}})
	// New client creates a strict session; the old client sees no YOLO.
	id := e.newSession(map[string]any{"title": "shared", "safety_policy": "strict"})
	if yolo, p := sessionSafety(t, e, id); yolo || p != "strict" {
		t.Fatalf("created: %v %q", yolo, p)
	}
	// Old client: array body; answers the confirmation with approve-session (YOLO on).
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "old"}})
	s.until("tool_call_confirmation")
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve-session"})
	s.all()
	if yolo, p := sessionSafety(t, e, id); !yolo || p != "autonomous" {
		t.Fatalf("after approve-session: %v %q; want YOLO = autonomous", yolo, p)
	}
	// Old client turns YOLO off: the new client sees strict again.
	e.do("POST", "/api/sessions/"+id+"/tools/toggle", nil)
	if yolo, p := sessionSafety(t, e, id); yolo || p != "strict" {
		t.Fatalf("after toggle off: %v %q; want strict restored", yolo, p)
	}
	// New client: balanced; object body; the safe call runs, the other asks and is
	// approved with approve-balanced (no change), the session stays balanced.
	e.do("PATCH", "/api/sessions/"+id+"/safety-policy", map[string]string{"safety_policy": "balanced"})
	s = e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "new"}}})
	ev := s.until("tool_call_confirmation")
	if name := ev["tool_call"].(map[string]any)["id"]; name != "c3" {
		t.Fatalf("confirmation for %v; want only c3 (c2 is safe-listed)", name)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve-balanced"})
	if got := toolResponses(s.all()); len(got) != 2 || got[0] != "safe" {
		t.Fatalf("responses = %q", got)
	}
	if yolo, p := sessionSafety(t, e, id); yolo || p != "balanced" {
		t.Fatalf("at the end: %v %q; want balanced", yolo, p)
	}
}
