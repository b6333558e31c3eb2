package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAgentYAML is a one-agent config talking to the fake model at url.
func fakeAgentYAML(url, extra string) string {
	return fmt.Sprintf(`models:
  fake:
    provider: openai
    model: gpt-4o
    base_url: %s/v1
agents:
  root:
    model: fake
    description: Test agent
    instruction: Be brief.
%s`, url, extra)
}

// newRunEnv starts a fake model with turns and a server with one agent "a".
func newRunEnv(t *testing.T, extra string, turns ...fakeTurn) (*apiTest, *fakeOpenAI) {
	t.Helper()
	f := newFakeOpenAI(t, turns...)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, extra)})
	e.setenv("OPENAI_API_KEY", "test-key")
	return e, f
}

func withoutTitle(types []string) []string {
	return slices.DeleteFunc(slices.Clone(types), func(s string) bool { return s == "session_title" })
}

func TestRunPlainAnswer(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"Ahoy", " there"}})
	id := e.newSession(nil)
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "Hello!"}})
	if s.resp.StatusCode != 200 || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, content type %q", s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	evs := s.all()
	want := []string{"agent_info", "team_info", "toolset_info", "user_message", "stream_started", "toolset_info",
		"agent_choice", "agent_choice", "message_added", "token_usage", "stream_stopped"}
	if got := withoutTitle(s.types()); !slices.Equal(got, want) {
		t.Fatalf("events = %v\nwant %v", got, want)
	}
	// Key order as the reference emits it.
	rawOf := func(typ string) string {
		for i, ev := range evs {
			if ev["type"] == typ {
				return s.raw[i]
			}
		}
		return ""
	}
	for typ, prefix := range map[string]string{
		"agent_choice": `{"type":"agent_choice","content":"Ahoy","session_id":"` + id + `","agent_name":"root","timestamp":"`,
		"team_info":    `{"type":"team_info","available_agents":[{"name":"root","description":"Test agent","provider":"openai","model":"gpt-4o"}],"current_agent":"root","agent_name":"root","timestamp":"`,
		"user_message": `{"type":"user_message","message":"Hello!","session_id":"` + id + `","session_position":0,"timestamp":"`,
		"token_usage":  `{"type":"token_usage","session_id":"` + id + `","usage":{"input_tokens":12,"output_tokens":5,"context_length":17,"context_limit":128000,"cost":`,
	} {
		if got := rawOf(typ); !strings.HasPrefix(got, prefix) {
			t.Errorf("%s =\n%s\nwant prefix\n%s", typ, got, prefix)
		}
	}
	byType := map[string]map[string]any{}
	for _, ev := range evs {
		byType[ev["type"].(string)] = ev
		if _, ok := ev["timestamp"]; !ok {
			t.Errorf("%s has no timestamp", ev["type"])
		}
	}
	if ev := byType["agent_info"]; ev["agent_name"] != "root" || ev["model"] != "openai/gpt-4o" || ev["description"] != "Test agent" {
		t.Errorf("agent_info = %v", ev)
	}
	if ev := byType["user_message"]; ev["message"] != "Hello!" || ev["session_id"] != id || ev["session_position"].(float64) != 0 {
		t.Errorf("user_message = %v", ev)
	}
	if _, ok := byType["user_message"]["agent_name"]; ok {
		t.Errorf("user_message must not carry agent_name")
	}
	if ev := byType["stream_started"]; ev["session_id"] != id || ev["agent_name"] != "root" {
		t.Errorf("stream_started = %v", ev)
	}
	u := byType["token_usage"]["usage"].(map[string]any)
	last := u["last_message"].(map[string]any)
	if u["input_tokens"].(float64) != 12 || u["output_tokens"].(float64) != 5 || last["Model"] != "fake-model" || last["cached_input_tokens"].(float64) != 2 {
		t.Errorf("usage = %v", u)
	}
	if u["cost"].(float64) <= 0 || last["Cost"].(float64) <= 0 {
		t.Errorf("gpt-4o has a known price; cost = %v", u["cost"])
	}
	if ev := byType["session_title"]; ev == nil || ev["title"] != "Test title" || ev["timestamp"] != "0001-01-01T00:00:00Z" {
		t.Errorf("session_title = %v", ev)
	}
	// What the model was sent: the instruction as a system message, then the user's.
	req := f.requests()[0]
	msgs := req["messages"].([]any)
	if len(msgs) != 2 || msgs[0].(map[string]any)["content"] != "Be brief." || msgs[1].(map[string]any)["content"] != "Hello!" {
		t.Errorf("model request messages = %v", msgs)
	}
	// The stored session.
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	got := decode[sessionResponse](t, b)
	if got.Title != "Test title" || len(got.Messages) != 2 || got.InputTokens != 12 || got.OutputTokens != 5 {
		t.Fatalf("stored session = %s", b)
	}
	a := got.Messages[1]
	if a.AgentName != "root" || a.Message.Content != "Ahoy there" || a.Message.Usage == nil || a.Message.Model != "fake-model" || a.Message.Cost <= 0 {
		t.Errorf("stored answer = %+v", a.Message)
	}
	if got.Messages[0].AgentName != "" || got.Messages[0].Message.Role != "user" {
		t.Errorf("stored user message = %+v", got.Messages[0])
	}
	_, b = e.do("GET", "/api/sessions", nil)
	if l := decode[[]sessionListItem](t, b); l[0].NumMessages != 2 {
		t.Errorf("num_messages = %d; want 2", l[0].NumMessages)
	}
}

// TestRunArrayBodyKeepsLastMessage plays docker-agent's remote client, which re-sends
// every earlier user message with the new one as a bare array on each turn: only the
// last element is announced and stored, and the model never sees the repeats.
func TestRunArrayBodyKeepsLastMessage(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"a1"}}, fakeTurn{Text: []string{"a2"}}, fakeTurn{Text: []string{"a3"}})
	id := e.newSession(map[string]any{"title": "given"})
	var sent []map[string]any
	for turn, q := range []string{"q1", "q2", "q3"} {
		sent = append(sent, map[string]any{"role": "user", "content": q})
		s := e.run("/api/sessions/"+id+"/agent/a", sent)
		var users []string
		for _, ev := range s.all() {
			if ev["type"] == "user_message" {
				users = append(users, ev["message"].(string))
				if pos := ev["session_position"].(float64); pos != float64(2*turn) {
					t.Errorf("turn %d: session_position = %v; want %d", turn+1, pos, 2*turn)
				}
			}
			if ev["type"] == "session_title" && ev["title"] != "given" {
				t.Errorf("a titled session must not get a generated title; got %v", ev)
			}
		}
		if !slices.Equal(users, []string{q}) {
			t.Fatalf("turn %d: user_message events = %v; want [%s]", turn+1, users, q)
		}
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	var stored []string
	for _, m := range decode[sessionResponse](t, b).Messages {
		stored = append(stored, m.Message.Role+":"+m.Message.Content)
	}
	want := []string{"user:q1", "assistant:a1", "user:q2", "assistant:a2", "user:q3", "assistant:a3"}
	if !slices.Equal(stored, want) {
		t.Fatalf("stored = %v\nwant %v", stored, want)
	}
	var prompt []string
	for _, m := range f.requests()[2]["messages"].([]any) {
		prompt = append(prompt, m.(map[string]any)["content"].(string))
	}
	if !slices.Equal(prompt, []string{"Be brief.", "q1", "a1", "q2", "a2", "q3"}) {
		t.Errorf("third model request = %q; want the history plus q3, no repeats", prompt)
	}
	// [] adds nothing: the model sees the same conversation plus the answer.
	e.run("/api/sessions/"+id+"/agent/a", []any{}).all()
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	if got := decode[sessionResponse](t, b); len(got.Messages) != 7 {
		t.Fatalf("after [] run: %d messages; want 7", len(got.Messages))
	}
}

func TestRunErrorsBeforeStream(t *testing.T) {
	e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"ok"}})
	id := e.newSession(nil)
	cases := []struct {
		path, body string
		want       int
	}{
		{"/api/sessions/" + id + "/agent/nope", `[{"content":"x"}]`, 404},
		{"/api/sessions/" + id + "/agent/a/ghost", `[{"content":"x"}]`, 404},
		{"/api/sessions/" + id + "/agent/a", `{"content":"x"}`, 400},
		{"/api/sessions/" + id + "/agent/a", `[{"content":`, 400},
	}
	for _, tc := range cases {
		code, b := e.do("POST", tc.path, tc.body)
		if code != tc.want || !strings.Contains(string(b), `"error"`) {
			t.Errorf("POST %s %s = %d %s; want %d", tc.path, tc.body, code, b, tc.want)
		}
	}
}

func TestRunConflictWhileRunning(t *testing.T) {
	e, _ := newRunEnv(t, "    toolsets:\n      - type: shell\n",
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "shell", Args: `{"cmd":"echo hi"}`}}})
	id := e.newSession(nil)
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "run it"}})
	s.until("tool_call_confirmation")
	code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", `[{"content":"again"}]`)
	if code != 409 {
		t.Fatalf("second run = %d %s; want 409", code, b)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
}

func TestRunMissingKey(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"never"}})
	e.setenv("OPENAI_API_KEY", "")
	id := e.newSession(nil)
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
	evs := s.all()
	var errs []string
	for _, ev := range evs {
		if ev["type"] == "error" {
			errs = append(errs, ev["error"].(string))
		}
	}
	if len(errs) != 1 || !strings.Contains(errs[0], "OPENAI_API_KEY") {
		t.Fatalf("errors = %v; want one naming OPENAI_API_KEY", errs)
	}
	if evs[len(evs)-1]["type"] != "stream_stopped" {
		t.Errorf("last event = %v", evs[len(evs)-1]["type"])
	}
	if len(f.requests()) != 0 {
		t.Errorf("no request may reach the model without a key")
	}
}

func TestRunProviderErrors(t *testing.T) {
	t.Run("401", func(t *testing.T) {
		e, f := newRunEnv(t, "", fakeTurn{Status: 401, Body: `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error"}}`})
		id := e.newSession(map[string]any{"title": "t"})
		ev := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).until("error")
		if !strings.Contains(ev["error"].(string), "Incorrect API key") || ev["timestamp"] != "0001-01-01T00:00:00Z" {
			t.Fatalf("error = %v", ev)
		}
		if n := len(f.requests()); n != 1 {
			t.Errorf("401 was tried %d times; want 1", n)
		}
	})
	t.Run("429 then success", func(t *testing.T) {
		e, f := newRunEnv(t, "", fakeTurn{Status: 429, Body: `{"error":{"message":"slow down"}}`}, fakeTurn{Text: []string{"fine"}})
		id := e.newSession(map[string]any{"title": "t"})
		s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
		if ev := s.until("agent_choice"); ev["content"] != "fine" {
			t.Fatalf("after retry: %v", ev)
		}
		s.all()
		if n := len(f.requests()); n != 2 {
			t.Errorf("requests = %d; want 2", n)
		}
	})
	t.Run("cut mid-answer", func(t *testing.T) {
		e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"partial", " never"}, CutAfter: 1})
		id := e.newSession(map[string]any{"title": "t"})
		s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
		s.until("error")
		if last := s.all(); last[len(last)-1]["type"] != "stream_stopped" {
			t.Fatalf("stream did not end with stream_stopped: %v", s.types())
		}
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		got := decode[sessionResponse](t, b)
		if len(got.Messages) != 2 || got.Messages[1].Message.Content != "partial"+answerCutMarker {
			t.Fatalf("what was said before the cut must be kept, marked: %s", b)
		}
	})
}

// A provider stream that ends cleanly but without finish_reason and without [DONE] was
// cut: retried when nothing was streamed, otherwise an error with the partial text kept
// and marked, on the wire and in the session.
func TestRunStreamEndsWithoutFinish(t *testing.T) {
	t.Run("nothing streamed yet", func(t *testing.T) {
		e, f := newRunEnv(t, "", fakeTurn{EndEarly: true}, fakeTurn{Text: []string{"fine"}})
		id := e.newSession(map[string]any{"title": "t"})
		s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
		if ev := s.until("agent_choice"); ev["content"] != "fine" {
			t.Fatalf("after retry: %v", ev)
		}
		if types := s.all(); slices.ContainsFunc(types, func(ev map[string]any) bool { return ev["type"] == "error" }) {
			t.Fatalf("retried stream reported an error: %v", s.types())
		}
		if n := len(f.requests()); n != 2 {
			t.Errorf("requests = %d; want 2 (the cut stream retried)", n)
		}
	})
	t.Run("after text", func(t *testing.T) {
		e, f := newRunEnv(t, "", fakeTurn{Text: []string{"partial"}, EndEarly: true}, fakeTurn{Text: []string{"never"}})
		id := e.newSession(map[string]any{"title": "t"})
		s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
		text := ""
		for {
			ev := s.next()
			if ev == nil {
				t.Fatalf("stream ended without error: %v", s.types())
			}
			if ev["type"] == "agent_choice" {
				text += ev["content"].(string)
			}
			if ev["type"] == "error" {
				if msg, _ := ev["error"].(string); !strings.Contains(msg, "connection cut") {
					t.Errorf("error = %q; want it to say the stream was cut", msg)
				}
				break
			}
		}
		if text != "partial"+answerCutMarker {
			t.Errorf("client saw %q; want the partial text and the marker", text)
		}
		if last := s.all(); last[len(last)-1]["type"] != "stream_stopped" {
			t.Fatalf("stream did not end with stream_stopped: %v", s.types())
		}
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		got := decode[sessionResponse](t, b)
		if len(got.Messages) != 2 || got.Messages[1].Message.Content != text {
			t.Fatalf("stored answer differs from what the client saw: %s", b)
		}
		if n := len(f.requests()); n != 1 {
			t.Errorf("requests = %d; want 1 (a half-shown answer is not re-asked)", n)
		}
	})
}

func TestRunClientDisconnectKeepsText(t *testing.T) {
	e, _ := newRunEnv(t, "    toolsets:\n      - type: shell\n",
		fakeTurn{Text: []string{"Let me check."}, ToolCalls: []fakeToolCall{{ID: "call_1", Name: "shell", Args: `{"cmd":"ls"}`}}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
	s.until("tool_call_confirmation")
	s.cancel()
	waitFor(t, "run to end", func() bool { return e.s.runs.get(id) == nil })
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	got := decode[sessionResponse](t, b)
	if len(got.Messages) < 2 || got.Messages[1].Message.Content != "Let me check." {
		t.Fatalf("after disconnect: %s", b)
	}
	// The question outlives the client: one answer continues the run, a second finds
	// nothing waiting.
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"}); code != 200 {
		t.Errorf("resume after the client went away = %d %s; want 200", code, b)
	}
	if code, _ := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 409 {
		t.Errorf("second resume = %d; want 409", code)
	}
}

func TestRunMaxIterations(t *testing.T) {
	call := fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "think", Args: `{"thought":"hmm"}`}}}
	e, _ := newRunEnv(t, "    max_iterations: 1\n    toolsets:\n      - type: think\n", call, call)
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "think"}})
	ev := s.until("max_iterations_reached")
	if ev["max_iterations"].(float64) != 1 {
		t.Fatalf("max_iterations_reached = %v", ev)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	s.all()
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	got := decode[sessionResponse](t, b)
	lastMsg := got.Messages[len(got.Messages)-1].Message
	if lastMsg.Content != "Execution stopped after reaching the configured max_iterations limit (1)." {
		t.Fatalf("last message = %+v", lastMsg)
	}
}

func TestRunTitleSuppressedByPatch(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"ok"}})
	id := e.newSession(nil)
	e.do("PATCH", "/api/sessions/"+id+"/title", map[string]string{"title": "Mine"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	if got := decode[sessionResponse](t, b); got.Title != "Mine" {
		t.Fatalf("title = %q", got.Title)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.titles != 0 {
		t.Errorf("a title was generated for a titled session")
	}
}

func TestRunNamedAgentAndDefault(t *testing.T) {
	f := newFakeOpenAI(t)
	yaml := strings.Replace(fakeAgentYAML(f.URL, ""), "  root:\n", "  first:\n", 1) + `  second:
    model: fake
    description: Second
`
	e := newTestEnv(t, map[string]string{"t.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	// Without a name the team's default (no root → the first agent) answers.
	ev := e.run("/api/sessions/"+id+"/agent/t", []map[string]any{{"content": "hi"}}).until("stream_started")
	if ev["agent_name"] != "first" {
		t.Fatalf("default agent = %v", ev["agent_name"])
	}
	id2 := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id2+"/agent/t/second", []map[string]any{{"content": "hi"}})
	if ev := s.until("team_info"); ev["current_agent"] != "second" || len(ev["available_agents"].([]any)) != 2 {
		t.Fatalf("team_info = %v", ev)
	}
	s.all()
}

func TestRunFilePartsConfined(t *testing.T) {
	e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"ok"}})
	os.WriteFile(filepath.Join(e.root, "in.txt"), []byte("x"), 0o644)
	id := e.newSession(map[string]any{"title": "t"})
	bad := []map[string]any{{"content": "see", "multi_content": []map[string]any{{"type": "file", "file": map[string]string{"path": "/etc/passwd"}}}}}
	body, _ := json.Marshal(bad)
	if code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", string(body)); code != 400 {
		t.Fatalf("file outside working dir = %d %s; want 400", code, b)
	}
	good := []map[string]any{{"content": "see", "multi_content": []map[string]any{{"type": "file", "file": map[string]string{"path": "in.txt"}}}}}
	s := e.run("/api/sessions/"+id+"/agent/a", good)
	if s.resp.StatusCode != 200 {
		t.Fatalf("file inside working dir = %d", s.resp.StatusCode)
	}
	s.all()
}

func TestIdleStreamHeartbeat(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo x")}})
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, shellThinkYAML)}, func(c *serverConfig) { c.heartbeat = 30 * time.Millisecond })
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	// While the run waits for the user, the stream carries only comment lines.
	for s.sc.Scan() {
		if line := s.sc.Text(); line != "" {
			if line != ": ping" {
				t.Fatalf("idle stream line = %q; want the heartbeat comment", line)
			}
			break
		}
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
}

// BenchmarkRun measures one whole run as a client sees it: create a session, run the
// agent on one message, read the stream to its end (100 text deltas, plus the title,
// which the fake model also answers with 100 deltas).
func BenchmarkRun(b *testing.B) {
	toks := make([]string, 100)
	for i := range toks {
		toks[i] = fmt.Sprintf("tok%d ", i)
	}
	f := newFakeOpenAI(b)
	f.Default = &fakeTurn{Text: toks}
	f.TitleTurn = &fakeTurn{Text: toks} // as ../shared/tools/fakellm: max_tokens ignored
	e := newTestEnv(b, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")})
	e.setenv("OPENAI_API_KEY", "k")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	post := func(path, body string) (int, string) {
		resp, err := client.Post(e.srv.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU() // wall time says little on a shared machine; CPU time less so
	defer func() { b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			code, body := post("/api/sessions", `{}`)
			var s struct{ ID string }
			json.Unmarshal([]byte(body), &s)
			if code != 200 || s.ID == "" {
				b.Errorf("create: %d %s", code, body)
				return
			}
			code, body = post("/api/sessions/"+s.ID+"/agent/a", `[{"role":"user","content":"Hello there"}]`)
			if code != 200 || !strings.Contains(body, `"type":"stream_stopped"`) {
				b.Errorf("run: %d %s", code, body)
				return
			}
		}
	})
}

func TestRunWarnsOnceForBrokenToolset(t *testing.T) {
	e, _ := newRunEnv(t, "    toolsets:\n      - type: nope\n      - type: think\n",
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "think", Args: `{"thought":"x"}`}}}, fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	var warnings []string
	for _, ev := range evs {
		if ev["type"] == "warning" {
			warnings = append(warnings, ev["message"].(string))
		}
	}
	if len(warnings) != 1 || warnings[0] != "toolset nope failed: unknown toolset type: nope" {
		t.Fatalf("warnings = %q; want one for the unknown toolset", warnings)
	}
	if got := toolResponses(evs); len(got) != 1 || got[0] != "Thoughts:\nx" {
		t.Fatalf("the other toolsets still work: %v", got)
	}
}

func TestFirstLine(t *testing.T) {
	cases := []struct {
		in   string
		max  int
		want string
	}{
		{"\n  Pirate greeting \nmore", 50, "Pirate greeting"},
		{"\r\n\r\nTitle\r\n", 50, "Title"},
		{"   ", 50, ""},
		{"tok0 tok1 tok2 tok3 tok4 tok5", 15, "tok0 tok1 tok2"},
		{"ééééé", 5, "éé"}, // never cuts inside a rune
	}
	for _, tc := range cases {
		if got := firstLine(tc.in, tc.max); got != tc.want {
			t.Errorf("firstLine(%q, %d) = %q; want %q", tc.in, tc.max, got, tc.want)
		}
		// Once titleKnown says so, the rest of the text cannot change the title.
		for i := range len(tc.in) {
			if titleKnown(tc.in[:i], tc.max) && firstLine(tc.in[:i], tc.max) != tc.want {
				t.Errorf("titleKnown(%q, %d) but the whole text gives %q", tc.in[:i], tc.max, tc.want)
			}
		}
	}
	if titleKnown("  \r\n  Pirate", 50) || !titleKnown("  \r\n  Pirate\r\n", 50) {
		t.Error("titleKnown: a first line is known once it ends")
	}
}

// A title model that ignores max_tokens and keeps talking is cut off: the run still
// gets a short title.
func TestRunTitleFromChattyModel(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"ok"}})
	f.Title = strings.Repeat("word ", 400)
	id := e.newSession(nil)
	ev := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).until("session_title")
	if title := ev["title"].(string); len(title) > 100 || !strings.HasPrefix(title, "word word") {
		t.Fatalf("title = %q", title)
	}
}

// The title call asks for a few tokens and stops reading once the title is known (its
// first line ended, or is longer than a title can be): a model that ignores max_tokens
// and then stalls still titles the run at once.
func TestRunTitleStopsReadingOnceKnown(t *testing.T) {
	cases := []struct{ name, first, want string }{
		{"line ended", "\n Pirate greeting\nand then", "Pirate greeting"},
		{"long line", strings.Repeat("word ", 30), strings.TrimSpace(strings.Repeat("word ", 20))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, f := newRunEnv(t, "", fakeTurn{Text: []string{"ok"}})
			hold := make(chan struct{})
			defer close(hold)
			f.TitleTurn = &fakeTurn{Text: []string{tc.first, " more"}, Hold: hold}
			id := e.newSession(nil)
			ev := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).until("session_title")
			if ev["title"] != tc.want {
				t.Fatalf("title = %q; want %q", ev["title"], tc.want)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if mt := f.TitleRequest["max_tokens"]; mt != float64(20) {
				t.Fatalf("title request max_tokens = %v; want 20", mt)
			}
		})
	}
}

// A title model that ignores max_tokens keeps talking after the title is known: the
// rest of its stream is drained, not cut, so its connection serves the next model
// call instead of a new one being dialled per run.
func TestRunTitleReusesConnection(t *testing.T) {
	f := &fakeOpenAI{Default: &fakeTurn{Text: []string{"ok"}}}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	var dials atomic.Int32
	f.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dials.Add(1)
		}
	}
	f.Start()
	t.Cleanup(f.Close)
	f.TitleTurn = &fakeTurn{Text: slices.Repeat([]string{"word "}, 200)}
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")})
	e.setenv("OPENAI_API_KEY", "k")
	for range 4 {
		id := e.newSession(nil)
		evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
		title := ""
		for _, ev := range evs {
			if ev["type"] == "session_title" {
				title = ev["title"].(string)
			}
		}
		if !strings.HasPrefix(title, "word word") || len(title) > 100 {
			t.Fatalf("title = %q", title)
		}
	}
	// The answer and the title are asked at once: two connections, then reused.
	if n := dials.Load(); n > 2 {
		t.Fatalf("%d connections to the model for 4 runs; want at most 2", n)
	}
}

func TestRunReasoningAndThinkingToggle(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Reasoning: []string{"let me ", "think"}, Text: []string{"42"}}, fakeTurn{Text: []string{"43"}})
	yaml := fmt.Sprintf(`providers:
  local:
    api_type: openai_chatcompletions
    base_url: %s/v1
agents:
  root:
    model: local/o3-mini
`, f.URL)
	e := newTestEnv(t, map[string]string{"r.yaml": yaml})
	id := e.newSession(map[string]any{"title": "t", "thinking": true})
	evs := e.run("/api/sessions/"+id+"/agent/r", []map[string]any{{"content": "q"}}).all()
	var reasoning string
	for _, ev := range evs {
		if ev["type"] == "agent_choice_reasoning" {
			reasoning += ev["content"].(string)
		}
	}
	if reasoning != "let me think" {
		t.Fatalf("reasoning events = %q (events %v)", reasoning, evs)
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	if got := decode[sessionResponse](t, b); got.Messages[1].Message.ReasoningContent != "let me think" {
		t.Fatalf("stored reasoning = %q", got.Messages[1].Message.ReasoningContent)
	}
	if r := f.requests()[0]; r["reasoning_effort"] == nil {
		t.Fatalf("thinking on: request has no reasoning_effort: %v", r)
	}
	e.do("POST", "/api/sessions/"+id+"/thinking/toggle", nil)
	e.run("/api/sessions/"+id+"/agent/r", []map[string]any{{"content": "again"}}).all()
	if r := f.requests()[1]; r["reasoning_effort"] != nil {
		t.Fatalf("thinking toggled off: request still has reasoning_effort %v", r["reasoning_effort"])
	}
}

// TestConcurrentRunsAndEdits runs many sessions at once while their metadata is
// edited; under -race this checks the run state and the store are shared safely.
func TestConcurrentRunsAndEdits(t *testing.T) {
	f := newFakeOpenAI(t)
	f.Default = &fakeTurn{Text: []string{"a", "b", "c"}}
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")})
	e.setenv("OPENAI_API_KEY", "k")
	const n = 20
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.newSession(nil)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 4*n)
	for _, id := range ids {
		wg.Add(2)
		go func() {
			defer wg.Done()
			resp, err := http.Post(e.srv.URL+"/api/sessions/"+id+"/agent/a", "application/json", strings.NewReader(`[{"content":"hi"}]`))
			if err != nil {
				errs <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), `"type":"stream_stopped"`) {
				errs <- "stream without stream_stopped: " + string(b)
			}
		}()
		go func() {
			defer wg.Done()
			for _, r := range [][3]string{{"POST", "/tools/toggle", ""}, {"PATCH", "/title", `{"title":"edited"}`},
				{"PATCH", "/permissions", `{"permissions":{"allow":["think"]}}`}, {"POST", "/thinking/toggle", ""}} {
				req, _ := http.NewRequest(r[0], e.srv.URL+"/api/sessions/"+id+r[1], strings.NewReader(r[2]))
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err.Error()
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Sprintf("%s %s = %d", r[0], r[1], resp.StatusCode)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, id := range ids {
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		got := decode[sessionResponse](t, b)
		if got.Title != "edited" || !got.ToolsApproved || got.Permissions == nil || len(got.Messages) != 2 {
			t.Fatalf("session %s after concurrent edits: %s", id, b)
		}
	}
}

func TestPromptFilesAndHistoryCap(t *testing.T) {
	e, f := newRunEnv(t, "    add_prompt_files: [AGENTS.md, NOTES.md]\n    num_history_items: 2\n",
		fakeTurn{Text: []string{"one"}}, fakeTurn{Text: []string{"two"}})
	os.MkdirAll(filepath.Join(e.root, "proj", "sub"), 0o755)
	os.WriteFile(filepath.Join(e.root, "proj", "AGENTS.md"), []byte("Be nice to the project."), 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(e.root), "NOTES.md"), []byte("outside the root"), 0o644)
	id := e.newSession(map[string]any{"title": "t", "working_dir": "proj/sub"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "first"}}).all()
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "second"}}).all()
	var contents []string
	for _, m := range f.requests()[1]["messages"].([]any) {
		mm := m.(map[string]any)
		contents = append(contents, mm["role"].(string)+":"+mm["content"].(string))
	}
	want := []string{"system:Be brief.", "system:Be nice to the project.", "user:first", "assistant:one", "user:second"}
	if !slices.Equal(contents, want) {
		t.Fatalf("second request = %q\nwant %q", contents, want)
	}
	h := []chatMessage{{Role: "user", Content: "u1"}, {Role: "assistant", ToolCalls: []toolCall{{ID: "c1"}}}, {Role: "tool", ToolCallID: "c1"},
		{Role: "assistant", Content: "a1"}, {Role: "user", Content: "u2"}, {Role: "assistant", Content: "a2"}}
	var got []string
	for _, m := range trimHistory(h, 3) {
		got = append(got, m.Role+":"+m.Content)
	}
	if !slices.Equal(got, []string{"user:u1", "assistant:a1", "user:u2", "assistant:a2"}) {
		t.Fatalf("trimHistory = %q", got)
	}
}

func TestThinkingOnFirstRunWhenBudgetConfigured(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"a"}}, fakeTurn{Text: []string{"b"}})
	yaml := fmt.Sprintf(`models:
  m:
    provider: openai
    model: gpt-4o
    base_url: %s/v1
    thinking_budget: high
agents:
  root:
    model: m
`, f.URL)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "q"}}).all()
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	if !decode[sessionResponse](t, b).Thinking {
		t.Fatalf("thinking_budget configured: the first run should turn thinking on: %s", b)
	}
	// A toggle after that sticks.
	e.do("POST", "/api/sessions/"+id+"/thinking/toggle", nil)
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "again"}}).all()
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	if decode[sessionResponse](t, b).Thinking {
		t.Fatalf("the user's toggle was overridden: %s", b)
	}
}

// A provider that never answers is reported after one first_byte_timeout, not after one
// per retry, for the chat client and the other clients alike; idle_timeout bounds the
// silence inside a stream.
func TestRunStalledProviderTimeouts(t *testing.T) {
	for _, provider := range []string{"openai", "anthropic"} {
		t.Run(provider, func(t *testing.T) {
			var requests atomic.Int32
			stalled := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests.Add(1)
				io.Copy(io.Discard, r.Body) // lets the server notice the client going away
				<-r.Context().Done()
			}))
			t.Cleanup(stalled.Close)
			yaml := fmt.Sprintf(`models:
  slow:
    provider: %s
    model: m
    base_url: %s/v1
    first_byte_timeout: 300ms
    idle_timeout: 5s
agents:
  root:
    model: slow
    instruction: Be brief.
`, provider, stalled.URL)
			e := newTestEnv(t, map[string]string{"a.yaml": yaml})
			e.setenv("OPENAI_API_KEY", "k")
			e.setenv("ANTHROPIC_API_KEY", "k")
			id := e.newSession(map[string]any{"title": "t"})
			s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
			ev := s.until("error")
			if msg, _ := ev["error"].(string); !strings.Contains(msg, "300ms") {
				t.Errorf("error = %q; want it to name the 300ms first-byte timeout", msg)
			}
			s.all()
			if n := requests.Load(); n != 1 {
				t.Errorf("stalled provider got %d requests; want 1 (no retry after a first-byte timeout)", n)
			}
		})
	}
}

func TestRunIdleTimeoutSetting(t *testing.T) {
	silent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}`+"\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	t.Cleanup(silent.Close)
	yaml := fmt.Sprintf("models:\n  m:\n    provider: openai\n    model: gpt-4o\n    base_url: %s/v1\n    idle_timeout: 250ms\nagents:\n  root:\n    model: m\n", silent.URL)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
	ev := s.until("error")
	if msg, _ := ev["error"].(string); !strings.Contains(msg, "stalled: no data for 250ms") {
		t.Errorf("error = %q; want the 250ms idle timeout", msg)
	}
	s.all()
}

// TestRunLargeImagesByteIdentical: large images, which are spliced into the JSON by
// reference rather than copied through encoding/json, come out byte for byte as
// encoding/json writes them in the user_message event, the stored row and the
// provider request; one that needs escaping (an inline SVG) takes the ordinary path.
func TestRunLargeImagesByteIdentical(t *testing.T) {
	var mu sync.Mutex
	var sent [][]byte
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		sent = append(sent, b)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	t.Cleanup(provider.Close)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(provider.URL, "")})
	e.setenv("OPENAI_API_KEY", "k")
	png := "data:image/png;base64," + strings.Repeat("QUJD+/==", 100<<10)
	jpeg := "data:image/jpeg;base64," + strings.Repeat("/9j/", 30<<10)
	svg := "data:image/svg+xml,<svg>" + strings.Repeat("<g/>&", 20<<10) + "</svg>"
	parts := []messagePart{
		{Type: "text", Text: "what <are> these & those?"},
		{Type: "image_url", ImageURL: &imageURL{URL: png, Detail: "high"}},
		{Type: "image_url", ImageURL: &imageURL{URL: svg}},
		{Type: "image_url", ImageURL: &imageURL{URL: jpeg, Detail: "low"}},
		{Type: "image_url", ImageURL: &imageURL{URL: "data:image/gif;base64,R0lG"}},
	}
	wantParts, _ := json.Marshal(parts)
	id := e.newSession(map[string]any{"title": "t"})
	body, _ := json.Marshal([]runMessage{{Content: "what are these?", MultiContent: parts}})
	resp, err := http.Post(e.srv.URL+"/api/sessions/"+id+"/agent/a", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	stream, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `"multi_content":` + string(wantParts) + `,"session_id":`; !strings.Contains(string(stream), want) {
		t.Errorf("user_message does not carry the parts as encoding/json writes them")
	}

	var stored, typ string
	if err := e.s.st.r.QueryRow(`SELECT message_json, typeof(message_json) FROM session_items WHERE session_id = ? AND item_type = 'message' ORDER BY position LIMIT 1`, id).Scan(&stored, &typ); err != nil {
		t.Fatal(err)
	}
	var m chatMessage
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		t.Fatal(err)
	}
	if want, _ := json.Marshal(&m); typ != "text" || stored != string(want) || !reflect.DeepEqual(m.MultiContent, parts) {
		t.Errorf("stored row (%s) is not the message as encoding/json writes it", typ)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(sent) == 0 {
		t.Fatal("no provider request")
	}
	var chatParts []openAIChatPart
	for _, p := range parts {
		chatParts = append(chatParts, openAIChatPart{Type: p.Type, Text: p.Text, ImageURL: p.ImageURL})
	}
	wantReq, _ := json.Marshal(chatParts)
	if req := sent[0]; !json.Valid(req) || !bytes.Contains(req, []byte(`"content":`+string(wantReq)+`,"role":"user"}`)) {
		t.Errorf("provider request does not carry the parts as encoding/json writes them")
	}
}

// TestRunBodyLargeURLsDecoded: large image URLs in a run body, which are decoded
// without a copy when they hold no escapes, are stored exactly as encoding/json decodes
// them, escapes and invalid UTF-8 included, in both body forms.
func TestRunBodyLargeURLsDecoded(t *testing.T) {
	e, _ := newRunEnv(t, "")
	big := strings.Repeat("QUJD", 20<<10)
	var parts []string
	for _, u := range []string{big, big + `\/\u0041`, big + "\xff", "AAAA"} {
		parts = append(parts, `{"type":"image_url","image_url":{"url":"data:image/png;base64,`+u+`","detail":"high"}}`)
	}
	msgs := `[{"content":"q","multi_content":[` + strings.Join(parts, ",") + `]}]`
	var want []struct {
		MultiContent []messagePart `json:"multi_content"`
	}
	if err := json.Unmarshal([]byte(msgs), &want); err != nil || len(want[0].MultiContent) != 4 {
		t.Fatal(err)
	}
	for _, body := range []string{msgs, `{"messages":` + msgs + `}`} {
		id := e.newSession(map[string]any{"title": "t"})
		if code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", body); code != 200 || !strings.Contains(string(b), "stream_stopped") {
			t.Fatalf("run = %d %.300s", code, b)
		}
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		var sess struct {
			Messages []struct{ Message chatMessage }
		}
		if err := json.Unmarshal(b, &sess); err != nil || len(sess.Messages) == 0 {
			t.Fatalf("session: %v", err)
		}
		if got := sess.Messages[0].Message.MultiContent; !reflect.DeepEqual(got, want[0].MultiContent) {
			t.Errorf("%.20s…: stored parts differ from encoding/json's decoding", body)
		}
	}
}

// BenchmarkRunLargeBody posts a 15 MiB run body (one image as a data URL) through the
// real server and reads the stream to its end; -benchmem gives the bytes allocated per
// body, provider request and storage included. The provider discards what it gets, so
// its own decoding is not counted. On Linux it also reports peak-RSS-B: the most the
// process's resident memory rose above where the run started (freed memory returned
// to the OS first), the highest over the runs; SQLite's own copies and the heap the
// garbage collector has yet to reclaim count there, as they do for the server. It runs
// with the event log on (the default) and off. The first body in a process rises the
// most (66 MB against 47 MB later, which reuse memory freed before): for comparable
// figures run each sub-benchmark alone, e.g. -bench 'RunLargeBody/noeventlog'.
func BenchmarkRunLargeBody(b *testing.B) {
	b.Run("eventlog", func(b *testing.B) { benchRunLargeBody(b) })
	b.Run("noeventlog", func(b *testing.B) { benchRunLargeBody(b, func(c *serverConfig) { c.eventRetention = -1 }) })
}

func benchRunLargeBody(b *testing.B, opts ...testOption) {
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ok\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n")
	}))
	b.Cleanup(provider.Close)
	e := newTestEnv(b, map[string]string{"a.yaml": fakeAgentYAML(provider.URL, "")}, opts...)
	e.setenv("OPENAI_API_KEY", "k")
	img := "data:image/png;base64," + strings.Repeat("QUJD", (15<<20)/4)
	body, _ := json.Marshal([]map[string]any{{"content": "what is this?", "multi_content": []map[string]any{
		{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": map[string]string{"url": img}}}}})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var peak int64
	for b.Loop() {
		b.StopTimer()
		id := e.newSession(map[string]any{"title": "t"})
		start, rss := resetPeakRSS()
		b.StartTimer()
		resp, err := http.Post(e.srv.URL+"/api/sessions/"+id+"/agent/a", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		// The stream echoes the image in user_message; keep only its end.
		var tail tailWriter
		io.Copy(&tail, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(tail), "stream_stopped") {
			b.Fatalf("run = %d …%.300s", resp.StatusCode, tail)
		}
		if rss {
			peak = max(peak, procStatusBytes("VmHWM")-start)
		}
	}
	if peak > 0 {
		b.ReportMetric(float64(peak), "peak-RSS-B")
	}
}

// resetPeakRSS returns freed memory to the OS, resets the process's peak resident size
// (Linux) and returns the resident size it starts from; false where that cannot be done.
func resetPeakRSS() (int64, bool) {
	debug.FreeOSMemory()
	if os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) != nil {
		return 0, false
	}
	rss := procStatusBytes("VmRSS")
	return rss, rss > 0
}

// procStatusBytes reads a "<key>: <n> kB" line of /proc/self/status; 0 if absent.
func procStatusBytes(key string) int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// tailWriter keeps the last 4 KiB written to it.
type tailWriter []byte

func (t *tailWriter) Write(p []byte) (int, error) {
	*t = append(*t, p...)
	if len(*t) > 4096 {
		*t = append((*t)[:0], (*t)[len(*t)-4096:]...)
	}
	return len(p), nil
}

// TestThinkingBudgetMapping: the long form {effort: …} loads and reaches the model
// like the short one (the reference's basic_with_thinking config uses it).
func TestThinkingBudgetMapping(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"a"}})
	yaml := fmt.Sprintf(`providers:
  local:
    api_type: openai_chatcompletions
    base_url: %s/v1
models:
  m:
    provider: local
    model: o3-mini
    thinking_budget:
      effort: low
agents:
  root:
    model: m
`, f.URL)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "k")
	if _, b := e.do("GET", "/api/agents", nil); strings.Contains(string(b), `"error"`) {
		t.Fatalf("agents = %s", b)
	}
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "q"}})
	s.all()
	if r := f.requests(); len(r) != 1 || r[0]["reasoning_effort"] != "low" {
		t.Fatalf("requests = %v; want one with reasoning_effort low (events %s)", r, s.raw)
	}
}
