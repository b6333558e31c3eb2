package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// argsCall is a tool call with arguments given as a Go value.
func argsCall(id, name string, args any) fakeToolCall {
	b, _ := json.Marshal(args)
	return fakeToolCall{ID: id, Name: name, Args: string(b)}
}

// A YAML deny holds however the model spells the arguments: case variants and
// duplicate keys are refused before any rule is matched, paths are matched as the
// filesystem tools resolve them. YOLO is on, so the deny is all that stands between.
func TestDenyMatchesArgumentsAsToolsUseThem(t *testing.T) {
	yaml := shellThinkYAML + "      - type: filesystem\n" + `permissions:
  deny: ["shell:cmd=rm*", "read_file:path=secret.txt", "read_multiple_files:paths=secret.txt"]
`
	f := newFakeOpenAI(t)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, yaml)})
	e.setenv("OPENAI_API_KEY", "k")
	for name, body := range map[string]string{"victim.txt": "keep me", "secret.txt": "TOPSECRET", "notes.txt": "notes", "sub/x.txt": "x"} {
		os.MkdirAll(filepath.Dir(filepath.Join(e.root, name)), 0o755)
		os.WriteFile(filepath.Join(e.root, name), []byte(body), 0o644)
	}
	os.Symlink("secret.txt", filepath.Join(e.root, "alias.txt"))
	attacks := []fakeToolCall{
		{ID: "c1", Name: "shell", Args: `{"Cmd":"rm -f victim.txt"}`},
		{ID: "c2", Name: "shell", Args: `{"cmd":"echo hi","CMD":"rm -f victim.txt"}`},
		{ID: "c3", Name: "shell", Args: `{"cmd":"rm -f victim.txt"}`},
		argsCall("c4", "read_file", map[string]string{"path": "./secret.txt"}),
		argsCall("c5", "read_file", map[string]string{"path": "sub/../secret.txt"}),
		argsCall("c6", "read_file", map[string]string{"path": filepath.Join(e.root, "secret.txt")}),
		argsCall("c7", "read_file", map[string]string{"path": "alias.txt"}),
		argsCall("c8", "read_file", map[string]string{"Path": "secret.txt"}),
		argsCall("c9", "read_multiple_files", map[string]any{"paths": []string{"notes.txt", "./secret.txt"}}),
		argsCall("c10", "read_file", map[string]string{"path": "notes.txt", "extra": "x"}),
	}
	allowed := []fakeToolCall{
		{ID: "ok1", Name: "shell", Args: `{"cmd":"echo fine"}`},
		argsCall("ok2", "read_file", map[string]string{"path": "./notes.txt"}),
	}
	f.turns = []fakeTurn{{ToolCalls: append(slices.Clone(attacks), allowed...)}, {Text: []string{"end"}}}
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	var got []map[string]any
	for _, ev := range evs {
		if ev["type"] == "tool_call_response" {
			got = append(got, ev)
		}
	}
	if len(got) != len(attacks)+len(allowed) {
		t.Fatalf("got %d tool responses; want %d", len(got), len(attacks)+len(allowed))
	}
	for i, ev := range got[:len(attacks)] {
		resp, _ := ev["response"].(string)
		if ev["result"].(map[string]any)["isError"] != true || strings.Contains(resp, "TOPSECRET") {
			t.Errorf("%s %s ran: %q", attacks[i].Name, attacks[i].Args, resp)
		}
	}
	if b, err := os.ReadFile(filepath.Join(e.root, "victim.txt")); err != nil || string(b) != "keep me" {
		t.Errorf("victim.txt after the run: %q %v", b, err)
	}
	if got[len(attacks)]["response"] != "fine" || got[len(attacks)+1]["response"] != "notes" {
		t.Errorf("allowed calls: %v / %v", got[len(attacks)]["response"], got[len(attacks)+1]["response"])
	}
	// The model is told why, in words it can act on.
	if r := got[0]["response"].(string); !strings.Contains(r, `unknown argument "Cmd"`) || !strings.Contains(r, `"cmd"`) {
		t.Errorf("case-variant key response = %q", r)
	}
}

// MCP tools get undeclared keys passed on as given, so a deny on a key the call
// leaves out denies (fails closed); a case variant of a declared key is refused.
func TestDenyMCPArgumentsFailClosed(t *testing.T) {
	fm := newFakeMCP()
	srv := httptest.NewServer(&fakeStreamable{t: t, f: fm, sessions: map[string]bool{}, getReady: make(chan struct{})})
	t.Cleanup(srv.Close)
	yaml := `    toolsets:
      - type: mcp
        remote:
          url: ` + srv.URL + `/mcp
          transport_type: streamable
          headers:
            Authorization: Bearer ${env.TOKEN}
permissions:
  deny: ["echo:text=rm*"]
`
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{
			{ID: "c1", Name: "echo", Args: `{"Text":"rm -rf /"}`},
			{ID: "c2", Name: "echo", Args: `{"other":"rm -rf /"}`},
			{ID: "c3", Name: "echo", Args: `{"text":"rm -rf /"}`},
			{ID: "c4", Name: "echo", Args: `{"text":"hello","other":1}`},
		}},
		fakeTurn{Text: []string{"end"}})
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, yaml)})
	e.setenv("OPENAI_API_KEY", "k")
	e.setenv("TOKEN", "s3cr3t")
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	got := toolResponses(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all())
	if len(got) != 4 || got[3] != "hello" {
		t.Fatalf("responses = %q", got)
	}
	if !strings.Contains(got[0], "case-sensitive") || !strings.Contains(got[1], "denied") || !strings.Contains(got[2], "denied") {
		t.Errorf("denied calls answered %q", got[:3])
	}
	fm.mu.Lock()
	calls := slices.Clone(fm.calls)
	fm.mu.Unlock()
	if !slices.Equal(calls, []string{"echo"}) {
		t.Errorf("the MCP server ran %v; want only the allowed echo", calls)
	}
}

// approve-tool allows exactly the pending call's tool: a tool_name naming anything
// else (a pattern like `*` included) is refused, and tool_call_id ties an answer to
// its call so a late one cannot approve the next confirmation.
func TestApproveToolExactNameAndCallID(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML+"      - type: filesystem\n",
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("c1", "echo one")}},
		fakeTurn{ToolCalls: []fakeToolCall{argsCall("c2", "write_file", map[string]string{"path": "w.txt", "content": "x"})}},
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("c3", "echo three")}},
		fakeTurn{Text: []string{"end"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	resume := func(body map[string]string, want int) {
		t.Helper()
		if code, b := e.do("POST", "/api/sessions/"+id+"/resume", body); code != want || !json.Valid(b) {
			t.Fatalf("resume %v = %d %s; want %d", body, code, b, want)
		}
	}
	s.until("tool_call_confirmation")
	resume(map[string]string{"confirmation": "approve-tool", "tool_name": "*"}, 400)
	resume(map[string]string{"confirmation": "approve-tool", "tool_name": "write_file"}, 400)
	resume(map[string]string{"confirmation": "approve", "tool_call_id": "c9"}, 409)
	resume(map[string]string{"confirmation": "approve-tool", "tool_name": "shell", "tool_call_id": "c1"}, 200)
	ev := s.until("tool_call_confirmation")
	if got := ev["tool_call"].(map[string]any)["id"]; got != "c2" {
		t.Fatalf("second confirmation is for %v; want c2 (write_file must still ask)", got)
	}
	resume(map[string]string{"confirmation": "approve", "tool_call_id": "c1"}, 409) // late answer
	resume(map[string]string{"confirmation": "reject", "tool_call_id": "c2"}, 200)
	got := toolResponses(s.all())
	if len(got) != 3 || got[0] != "one" || !strings.Contains(got[1], "rejected") || got[2] != "three" {
		t.Fatalf("responses = %q", got)
	}
	if n := strings.Count(strings.Join(s.types(), ","), "tool_call_confirmation"); n != 2 {
		t.Fatalf("confirmations = %d; want 2", n)
	}
	if _, err := os.Stat(filepath.Join(e.root, "w.txt")); err == nil {
		t.Fatal("the rejected write_file ran")
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	if p := decode[sessionResponse](t, b).Permissions; p == nil || !slices.Equal(p.Allow, []string{"shell"}) {
		t.Fatalf("permissions after approve-tool = %+v", p)
	}
}

// An MCP server cannot smuggle a pattern in as a tool name: names outside
// [A-Za-z0-9_.-] are left out of the agent's tools.
func TestMCPToolNamesArePlain(t *testing.T) {
	fm := newFakeMCP()
	fm.extra = []string{"*", "shell*", "a:b=c", "ok.tool-1"}
	srv := httptest.NewServer(&fakeStreamable{t: t, f: fm, sessions: map[string]bool{}, getReady: make(chan struct{})})
	t.Cleanup(srv.Close)
	yaml := `    toolsets:
      - type: mcp
        remote:
          url: ` + srv.URL + `/mcp
          transport_type: streamable
          headers:
            Authorization: Bearer ${env.TOKEN}
`
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "*", Args: `{}`}}}, fakeTurn{Text: []string{"end"}})
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, yaml)})
	e.setenv("OPENAI_API_KEY", "k")
	e.setenv("TOKEN", "s3cr3t")
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	got := toolResponses(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all())
	if len(got) != 1 || !strings.Contains(got[0], "not available") {
		t.Fatalf("calling `*` answered %q", got)
	}
	var names []string
	for _, tl := range f.requests()[0]["tools"].([]any) {
		names = append(names, tl.(map[string]any)["function"].(map[string]any)["name"].(string))
	}
	if !slices.Contains(names, "echo") || !slices.Contains(names, "ok.tool-1") {
		t.Fatalf("tools sent to the model = %v", names)
	}
	for _, bad := range fm.extra[:3] {
		if slices.Contains(names, bad) {
			t.Errorf("tool %q reached the model", bad)
		}
	}
}

// Only a GET api tool is read-only: a POST one asks before it sends anything.
func TestAPIToolPostAsks(t *testing.T) {
	var mu sync.Mutex
	var hits []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits = append(hits, r.Method)
		mu.Unlock()
		io.WriteString(w, "done "+r.Method)
	}))
	t.Cleanup(api.Close)
	yaml := `    toolsets:
      - type: api
        api_config: {name: create_item, method: POST, endpoint: "` + api.URL + `/items"}
      - type: api
        api_config: {name: get_item, endpoint: "` + api.URL + `/items"}
`
	e, _ := newRunEnv(t, yaml,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "get_item", Args: `{}`}, {ID: "c2", Name: "create_item", Args: `{}`}}},
		fakeTurn{Text: []string{"end"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	ev := s.until("tool_call_confirmation")
	if name := ev["tool_call"].(map[string]any)["function"].(map[string]any)["name"]; name != "create_item" {
		t.Fatalf("confirmation for %v; want create_item", name)
	}
	if ev["tool_definition"].(map[string]any)["annotations"].(map[string]any)["readOnlyHint"] == true {
		t.Errorf("a POST tool is marked read-only: %v", ev["tool_definition"])
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
	got := toolResponses(s.all())
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != "done GET" || !strings.Contains(got[1], "rejected") || !slices.Equal(hits, []string{"GET"}) {
		t.Fatalf("responses %q, server saw %v", got, hits)
	}
}

// read_file and read_multiple_files cut a file's text like shell output, so a big
// file reaches neither the model nor the database whole.
func TestReadFileOutputCapped(t *testing.T) {
	e, f := newRunEnv(t, "    toolsets:\n      - type: filesystem\n",
		fakeTurn{ToolCalls: []fakeToolCall{
			argsCall("c1", "read_file", map[string]string{"path": "big.txt"}),
			argsCall("c2", "read_multiple_files", map[string]any{"paths": []string{"big.txt"}, "json": true}),
		}},
		fakeTurn{Text: []string{"end"}})
	big := strings.Repeat("x", toolsMaxOutput+5000) + "THE-END"
	os.WriteFile(filepath.Join(e.root, "big.txt"), []byte(big), 0o644)
	id := e.newSession(map[string]any{"title": "t"})
	got := toolResponses(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all())
	want := big[:toolsMaxOutput] + toolsTruncNote
	if len(got) != 2 || got[0] != want {
		t.Fatalf("read_file answered %d chars; want the first %d and the note", len(got[0]), toolsMaxOutput)
	}
	var many []struct{ Content string }
	if err := json.Unmarshal([]byte(got[1]), &many); err != nil || len(many) != 1 || many[0].Content != want {
		t.Fatalf("read_multiple_files answered %d chars (%v)", len(got[1]), err)
	}
	for _, m := range f.requests()[1]["messages"].([]any) {
		if c, _ := m.(map[string]any)["content"].(string); strings.Contains(c, "THE-END") {
			t.Fatal("the whole file reached the model")
		}
	}
	if _, b := e.do("GET", "/api/sessions/"+id, nil); strings.Contains(string(b), "THE-END") {
		t.Fatal("the whole file was stored")
	}
}

func TestExactPattern(t *testing.T) {
	for _, name := range []string{"shell", "a*b", "q?[x]", `back\slash`, "mcp:github:create"} {
		p, ok := exactPattern(name)
		if !ok || !matchAny([]string{p}, name, callArgs{}, false) {
			t.Errorf("exactPattern(%q) = %q, %v: does not match its name", name, p, ok)
		}
		if other := strings.NewReplacer("*", "Z", "?", "Z", "[", "Z", "\\", "Z").Replace(name); other != name && matchAny([]string{p}, other, callArgs{}, false) {
			t.Errorf("exactPattern(%q) = %q also matches %q", name, p, other)
		}
	}
	if p, ok := exactPattern("a=b"); ok {
		t.Errorf("exactPattern(a=b) = %q; a name with = cannot be a pattern", p)
	}
}
