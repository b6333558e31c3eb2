package main

// clients_test.go: one server serving both docker-agent client generations
// (API-UPSTREAM.md §5): the reference's client (bare-array run bodies, accumulated
// partial_tool_call arguments, tool_call in tool_call_response, agentName) and the
// newer one (object run bodies with a model override, argument deltas, tool_call_id,
// agent_name, session_title first, tool_call_output, 409 while busy).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// generationsYAML has two config models and the shell tool.
func generationsYAML(url string) string {
	return fmt.Sprintf(`models:
  fake:
    provider: openai
    model: gpt-4o
    base_url: %[1]s/v1
  small:
    provider: openai
    model: gpt-4o-mini
    base_url: %[1]s/v1
agents:
  root:
    model: fake
    description: Test agent
    instruction: Be brief.
    toolsets:
      - type: shell
`, url)
}

// generations is one server and one fake model that both clients talk to.
type generations struct {
	t       *testing.T
	e       *apiTest
	f       *fakeOpenAI
	streams []*sseStream // every stream opened through run, to check against the OpenAPI document
}

func newGenerations(t *testing.T, turns ...fakeTurn) *generations {
	return newGenerationsWith(t, "", turns...)
}

// newGenerationsWith adds toolsets (YAML list items) after the shell tool.
func newGenerationsWith(t *testing.T, toolsets string, turns ...fakeTurn) *generations {
	f := newFakeOpenAI(t, turns...)
	e := newTestEnv(t, map[string]string{"a.yaml": generationsYAML(f.URL) + toolsets})
	e.setenv("OPENAI_API_KEY", "test-key")
	e.setenv("OPENAI_BASE_URL", f.URL+"/v1") // inline openai/… overrides reach the fake too
	return &generations{t: t, e: e, f: f}
}

// run starts a run as e.run does and keeps its stream for checkEventSchemas.
func (g *generations) run(id string, body any) *sseStream {
	s := g.e.run("/api/sessions/"+id+"/agent/a", body)
	g.streams = append(g.streams, s)
	return s
}

// checkEventSchemas checks every event either client read against the OpenAPI
// document's Event union, so both generations' shapes are the documented ones.
func (g *generations) checkEventSchemas() {
	doc := openAPIDoc(g.t, g.e)
	union := map[string]any{"$ref": "#/components/schemas/Event"}
	n := 0
	for _, s := range g.streams {
		for i, ev := range s.events {
			n++
			if err := validate(doc, union, ev, "event"); err != nil {
				g.t.Errorf("%s\n%s", err, s.raw[i])
			}
		}
	}
	if n == 0 {
		g.t.Error("no events were checked")
	}
}

// lastModel is the model the last chat request asked for.
func (g *generations) lastModel() string {
	reqs := g.f.requests()
	return reqs[len(reqs)-1]["model"].(string)
}

// gatedShellCall is a shell tool call of cmd with a timeout, so a test whose gate
// never opens fails instead of hanging.
func gatedShellCall(id, cmd string) fakeToolCall {
	args, _ := json.Marshal(map[string]any{"cmd": cmd, "timeout": 20})
	return fakeToolCall{id, "shell", string(args)}
}

func argumentsOf(ev map[string]any) string {
	fn := ev["tool_call"].(map[string]any)["function"].(map[string]any)
	s, _ := fn["arguments"].(string)
	return s
}

// TestTwoClientGenerationsOneServer runs a reference-client conversation and a
// newer-client conversation against one server, interleaved: runs and tool output,
// then safety modes, a paused run answered by elicitation_id while the old client
// runs, steer and follow-up, snapshot + events reattach, fork, starred and batch
// delete, after which the old client's session is intact and still runs.
func TestTwoClientGenerationsOneServer(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	askMCP := fmt.Sprintf("      - type: mcp\n        command: %q\n        args: [\"-test.run=^$\"]\n        env:\n          MCP_TEST_SERVER: \"1\"\n          GORACE: atexit_sleep_ms=0\n", exe)
	oldCall := gatedShellCall("call_old", "echo old")
	newCall := gatedShellCall("call_new", "printf 'one\\n'; while [ ! -f gate ]; do sleep 0.05; done; printf 'two\\n'")
	strictCall := gatedShellCall("call_strict", "echo strict")
	sessionCall := gatedShellCall("call_session", "echo approved")
	text := func(s string) fakeTurn { return fakeTurn{Text: []string{s}} }
	g := newGenerationsWith(t, askMCP,
		fakeTurn{ToolCalls: []fakeToolCall{oldCall}, ArgChunks: 3}, text("done-old"), text("old-2"), // oldClientConversation
		fakeTurn{ToolCalls: []fakeToolCall{newCall}, ArgChunks: 3}, text("done-new"), text("n2-ok"), text("n3-ok"), // newClientConversation
		fakeTurn{ToolCalls: []fakeToolCall{strictCall}}, text("balanced-ok"), // new client, strict → approve-balanced
		fakeTurn{ToolCalls: []fakeToolCall{sessionCall}, ArgChunks: 3}, text("session-ok"), // old client, approve-session
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_ask", Name: "ask", Args: `{}`}}}, // new client's run pauses on a question
		text("old-during"),                      // the old client runs meanwhile
		text("steered-ok"), text("followed-ok"), // the new run goes on: steer, then the follow-up's turn
		text("fork-ok"), text("old-after-delete"), // the run on the fork; the old client after batch delete
	)
	oldID := g.oldClientConversation(oldCall)
	newID := g.newClientConversation(newCall)
	g.safetyModesBothClients(newID, oldID, sessionCall)
	g.pausedRunWhileOldClientRuns(newID, oldID)
	g.forkStarAndBatchDelete(newID, oldID)
	g.checkEventSchemas()
	if oldID == newID {
		t.Fatal("one session for both clients")
	}
}

// checkOldPartials: for an array-form run every partial_tool_call carries the
// arguments accumulated so far and the tool definition, ending with the whole call.
func checkOldPartials(t *testing.T, evs []map[string]any, call fakeToolCall) {
	t.Helper()
	partials := eventsOf(evs, "partial_tool_call")
	if len(partials) != 4 { // the name, then three argument chunks
		t.Fatalf("old client: %d partial_tool_call events; want 4: %v", len(partials), evs)
	}
	prev := ""
	for _, p := range partials {
		args := argumentsOf(p)
		if !strings.HasPrefix(args, prev) || p["tool_definition"] == nil {
			t.Errorf("old client: partial %q after %q, definition %v; want accumulated arguments and the definition each time", args, prev, p["tool_definition"])
		}
		prev = args
	}
	if prev != call.Args {
		t.Errorf("old client: last partial arguments %q; want %q", prev, call.Args)
	}
	resp := eventOf(evs, "tool_call_response")
	if tc, _ := resp["tool_call"].(map[string]any); tc == nil || tc["id"] != call.ID {
		t.Errorf("old client: tool_call_response = %v; want tool_call with the call's id %s", resp, call.ID)
	}
}

// oldClientConversation plays the reference's client: bare arrays re-sending every
// earlier user message, accumulated partial arguments, tool_call in the response.
func (g *generations) oldClientConversation(call fakeToolCall) string {
	t, e := g.t, g.e
	id := e.newSession(map[string]any{"tools_approved": true})
	evs := g.run(id, []map[string]any{{"role": "user", "content": "q1"}}).all()
	checkOldPartials(t, evs, call)
	if resp := eventOf(evs, "tool_call_response"); !strings.Contains(resp["response"].(string), "old") {
		t.Errorf("old client: tool_call_response = %v; want the command's output", resp)
	}
	if eventOf(evs, "session_title") == nil {
		t.Errorf("old client: an untitled session got no generated title: %v", evs)
	}
	g.run(id, []map[string]any{{"content": "q1"}, {"content": "q2"}}).all()
	if m := g.lastModel(); m != "gpt-4o" {
		t.Errorf("old client: answered by %s; want gpt-4o", m)
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	var raw struct {
		Messages []map[string]any `json:"messages"`
	}
	json.Unmarshal(b, &raw)
	var users []string
	for _, m := range raw.Messages {
		if m["agentName"] != m["agent_name"] || m["agentName"] == nil {
			t.Errorf("old client: message keys agentName %v, agent_name %v; want both, equal", m["agentName"], m["agent_name"])
		}
		if msg := m["message"].(map[string]any); msg["role"] == "user" {
			users = append(users, msg["content"].(string))
		}
	}
	if !slices.Equal(users, []string{"q1", "q2"}) {
		t.Errorf("old client: stored user messages %v; want [q1 q2] (re-sent ones are not new)", users)
	}
	return id
}

// newClientConversation plays a newer client: object bodies with a model override
// that persists, argument deltas, tool_call_id, session_title first, shell output
// streamed while the command runs.
func (g *generations) newClientConversation(call fakeToolCall) string {
	t, e := g.t, g.e
	id := e.newSession(map[string]any{"tools_approved": true, "title": "new client"})
	s := g.run(id, map[string]any{
		"messages": []map[string]any{{"role": "user", "content": "n1"}}, "model": "openai/gpt-4o-mini"})
	if first := s.next(); first["type"] != "session_title" || first["title"] != "new client" {
		t.Fatalf("new client: first event %v; want session_title", first)
	}
	// The command prints "one" and waits for the gate: its output must arrive while
	// it still runs.
	out := s.until("tool_call_output")
	if out["output"] != "one\n" || out["tool_call_id"] != "call_new" || out["tool_definition"].(map[string]any)["name"] != "shell" {
		t.Fatalf("new client: tool_call_output = %v", out)
	}
	if err := os.WriteFile(filepath.Join(e.root, "gate"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	evs := s.all()
	partials := eventsOf(evs, "partial_tool_call")
	var joined string
	for i, p := range partials {
		if (p["tool_definition"] != nil) != (i == 0) {
			t.Errorf("new client: partial %d has definition %v; want it on the first only", i, p["tool_definition"] != nil)
		}
		joined += argumentsOf(p)
	}
	if len(partials) != 4 || joined != call.Args || argumentsOf(partials[0]) != "" {
		t.Errorf("new client: %d partials joining to %q; want 4 deltas joining to %q", len(partials), joined, call.Args)
	}
	var streamed string
	for _, o := range eventsOf(evs, "tool_call_output") {
		streamed += o["output"].(string)
	}
	if streamed != "one\ntwo\n" {
		t.Errorf("new client: streamed output %q; want one, then two", streamed)
	}
	resp := eventOf(evs, "tool_call_response")
	if resp["tool_call_id"] != "call_new" || resp["response"] != "one\ntwo" {
		t.Errorf("new client: tool_call_response = %v", resp)
	}
	if stop := evs[len(evs)-1]; stop["type"] != "stream_stopped" || stop["reason"] != "normal" {
		t.Errorf("new client: last event %v; want stream_stopped reason normal", stop)
	}
	if m := g.lastModel(); m != "gpt-4o-mini" {
		t.Errorf("new client: answered by %s; want the override gpt-4o-mini", m)
	}
	// The override lasts: a later object body without model, and an array body.
	g.run(id, map[string]any{"messages": []map[string]any{{"content": "n2"}}}).all()
	g.run(id, []map[string]any{{"content": "n3"}}).all()
	for _, req := range g.f.requests()[len(g.f.requests())-2:] {
		if req["model"] != "gpt-4o-mini" {
			t.Errorf("new client: a later run used %v; want the stored override", req["model"])
		}
	}
	code, b := e.do("GET", "/api/sessions/"+id+"/models", nil)
	models := decode[sessionModelsJSON](t, b)
	if code != 200 || models.Agent != "root" || models.CurrentModelRef != "openai/gpt-4o-mini" {
		t.Fatalf("new client: models = %d %s", code, b)
	}
	i := slices.IndexFunc(models.Models, func(m modelChoiceJSON) bool { return m.Ref == "openai/gpt-4o-mini" })
	if i < 0 || !models.Models[i].IsCurrent || !models.Models[i].IsCustom || models.Models[0].Ref != "fake" || !models.Models[0].IsDefault || models.Models[0].IsCurrent {
		t.Errorf("new client: models = %s", b)
	}
	return id
}

// safetyModesBothClients: the new client picks a safety mode and answers a
// confirmation with approve-balanced; the old client turns tools_approved off with
// its toggle and answers approve-session. Each sees its own choice in
// safety_policy and tools_approved; neither changes the other's session.
func (g *generations) safetyModesBothClients(newID, oldID string, sessionCall fakeToolCall) {
	t, e := g.t, g.e
	if code, b := e.do("PATCH", "/api/sessions/"+newID+"/safety-policy", map[string]any{"safety_policy": "strict"}); code != 200 {
		t.Fatalf("new client: safety-policy = %d %s", code, b)
	}
	s := g.run(newID, map[string]any{"messages": []map[string]any{{"content": "s1"}}})
	if c := s.until("tool_call_confirmation"); c["tool_call"].(map[string]any)["id"] != "call_strict" {
		t.Fatalf("new client: confirmation = %v", c)
	}
	if code, b := e.do("POST", "/api/sessions/"+newID+"/resume", map[string]string{"confirmation": "approve-balanced"}); code != 200 {
		t.Fatalf("new client: approve-balanced = %d %s", code, b)
	}
	if resp := s.until("tool_call_response"); resp["tool_call_id"] != "call_strict" || resp["response"] != "strict" {
		t.Errorf("new client: tool_call_response = %v", resp)
	}
	s.all()
	g.checkSafety(newID, "balanced", false)

	if code, b := e.do("POST", "/api/sessions/"+oldID+"/tools/toggle", nil); code != 200 {
		t.Fatalf("old client: tools/toggle = %d %s", code, b)
	}
	s = g.run(oldID, []map[string]any{{"content": "q1"}, {"content": "q2"}, {"content": "q3"}})
	if c := s.until("tool_call_confirmation"); c["tool_call"].(map[string]any)["id"] != "call_session" {
		t.Fatalf("old client: confirmation = %v", c)
	}
	if code, b := e.do("POST", "/api/sessions/"+oldID+"/resume", map[string]string{"confirmation": "approve-session"}); code != 200 {
		t.Fatalf("old client: approve-session = %d %s", code, b)
	}
	checkOldPartials(t, s.all(), sessionCall)
	g.checkSafety(oldID, "autonomous", true)
	g.checkSafety(newID, "balanced", false)
}

// checkSafety fails unless session id shows safety_policy and tools_approved.
func (g *generations) checkSafety(id, policy string, approved bool) {
	g.t.Helper()
	_, b := g.e.do("GET", "/api/sessions/"+id, nil)
	if got := decode[map[string]any](g.t, b); got["safety_policy"] != policy || got["tools_approved"] != approved {
		g.t.Errorf("session %s: safety_policy %v, tools_approved %v; want %s, %v", id, got["safety_policy"], got["tools_approved"], policy, approved)
	}
}

// pausedRunWhileOldClientRuns: the new client's run waits on an MCP server's
// question; the new client reattaches from a snapshot through /events?since=, steers
// and queues a follow-up, and answers by elicitation_id, while the old client runs
// its own session to the end in between.
func (g *generations) pausedRunWhileOldClientRuns(newID, oldID string) {
	t, e := g.t, g.e
	s := g.run(newID, map[string]any{"messages": []map[string]any{{"content": "e1"}}})
	s.until("tool_call_confirmation") // balanced: the MCP tool has no read-only hint
	e.do("POST", "/api/sessions/"+newID+"/resume", map[string]string{"confirmation": "approve"})
	eid, _ := s.until("elicitation_request")["elicitation_id"].(string)
	code, b := e.do("GET", "/api/sessions/"+newID+"/snapshot", nil)
	snap := decode[map[string]any](t, b)
	seq, _ := snap["last_event_seq"].(float64)
	if code != 200 || snap["state"] != "waiting_for_elicitation" || seq == 0 || eid == "" {
		t.Fatalf("new client: snapshot while asking = %d %s (elicitation_id %q)", code, b, eid)
	}
	v := e.follow(newID, "?since="+strconv.Itoa(int(seq)))
	defer v.close()
	g.streams = append(g.streams, v)
	if resp, b := e.post("/api/sessions/"+newID+"/steer", `{"messages":[{"content":"steer-msg"}]}`, nil); resp.StatusCode != 202 || !strings.Contains(string(b), `"queued"`) {
		t.Fatalf("new client: steer = %d %s", resp.StatusCode, b)
	}
	if resp, b := e.post("/api/sessions/"+newID+"/followup", `{"messages":[{"content":"follow-msg"}]}`, nil); resp.StatusCode != 202 || !strings.Contains(string(b), "queued_streaming") {
		t.Fatalf("new client: followup = %d %s", resp.StatusCode, b)
	}
	oevs := g.run(oldID, []map[string]any{{"content": "q1"}, {"content": "q2"}, {"content": "q3"}, {"content": "q4"}}).all()
	if c := eventOf(oevs, "agent_choice"); c == nil || c["content"] != "old-during" {
		t.Fatalf("old client: run while the new one waits = %v", oevs)
	}
	answer := map[string]any{"action": "accept", "elicitation_id": eid, "content": map[string]any{"name": "Ada"}}
	if code, b := e.do("POST", "/api/sessions/"+newID+"/elicitation", answer); code != 200 {
		t.Fatalf("new client: elicitation answer = %d %s", code, b)
	}
	if resp := s.until("tool_call_response"); resp["tool_call_id"] != "call_ask" || !strings.Contains(resp["response"].(string), "Ada") {
		t.Errorf("new client: ask response = %v", resp)
	}
	var users []string
	for _, ev := range eventsOf(s.all(), "user_message") {
		users = append(users, ev["message"].(string))
	}
	if !slices.Contains(users, "steer-msg") || !slices.Contains(users, "follow-msg") {
		t.Errorf("new client: user_message events %v; want the steer and the follow-up", users)
	}
	reqs := g.f.requests()
	if steer, follow := lastMessage(t, g.f, len(reqs)-2), lastMessage(t, g.f, len(reqs)-1); steer["content"] != "steer-msg" || follow["content"] != "follow-msg" {
		t.Errorf("new client: model requests end with %v, then %v; want the steer, then the follow-up", steer, follow)
	}
	if ev := v.until("tool_call_response"); ev["tool_call_id"] != "call_ask" || v.ids[0] != int64(seq)+1 {
		t.Errorf("new client: reattached viewer starts at id %d (snapshot seq %v), answer %v", v.ids[0], seq, ev)
	}
}

// userContents lists the user messages' text of a model request.
func userContents(req map[string]any) []string {
	var out []string
	for _, m := range req["messages"].([]any) {
		if msg := m.(map[string]any); msg["role"] == "user" {
			s, _ := msg["content"].(string)
			out = append(out, s)
		}
	}
	return out
}

// forkStarAndBatchDelete: the new client forks its session before its second user
// message and runs on the fork, stars the session, then deletes both in one batch;
// the old client's session is untouched and still runs.
func (g *generations) forkStarAndBatchDelete(newID, oldID string) {
	t, e := g.t, g.e
	code, b := e.do("POST", "/api/sessions/"+newID+"/fork", map[string]any{"user_message_index": 1})
	fork := decode[map[string]any](t, b)
	forkID, _ := fork["id"].(string)
	if code != 200 || forkID == "" || forkID == newID || fork["title"] != "new client (fork 1)" {
		t.Fatalf("new client: fork = %d %s", code, b)
	}
	s := g.run(forkID, map[string]any{"messages": []map[string]any{{"content": "n2-forked"}}})
	if first := s.next(); first["type"] != "session_title" || first["title"] != "new client (fork 1)" {
		t.Errorf("fork: first event %v; want its title", first)
	}
	s.all()
	if got := userContents(g.f.requests()[len(g.f.requests())-1]); !slices.Equal(got, []string{"n1", "n2-forked"}) {
		t.Errorf("fork: model saw user messages %v; want [n1 n2-forked]", got)
	}
	if code, b := e.do("PATCH", "/api/sessions/"+newID+"/starred", map[string]any{"starred": true}); code != 200 || strings.TrimSpace(string(b)) != `{"status":"updated"}` {
		t.Fatalf("new client: starred = %d %s", code, b)
	}
	_, b = e.do("GET", "/api/sessions", nil)
	starred := map[string]any{}
	for _, s := range decode[[]map[string]any](t, b) {
		starred[s["id"].(string)] = s["starred"]
	}
	if len(starred) != 3 || starred[newID] != true || starred[oldID] != nil || starred[forkID] != nil {
		t.Errorf("sessions list starred = %v; want only the new client's session", starred)
	}
	code, b = e.do("POST", "/api/sessions/batch/delete", map[string]any{"session_ids": []string{newID, forkID}})
	if got := decode[map[string]any](t, b); code != 200 || got["deleted_count"] != float64(2) || got["failed_count"] != float64(0) {
		t.Fatalf("new client: batch delete = %d %s", code, b)
	}
	for _, id := range []string{newID, forkID} {
		if code, _ := e.do("GET", "/api/sessions/"+id, nil); code != 404 {
			t.Errorf("deleted session %s: GET = %d; want 404", id, code)
		}
	}
	g.oldClientAfterDelete(oldID)
}

// oldClientAfterDelete: the old client's listing is the bare array with only its
// session, its history is whole (each user message once, agentName on every item)
// and it still runs.
func (g *generations) oldClientAfterDelete(oldID string) {
	t, e := g.t, g.e
	_, b := e.do("GET", "/api/sessions", nil)
	if list := decode[[]map[string]any](t, b); len(list) != 1 || list[0]["id"] != oldID {
		t.Fatalf("old client: sessions after batch delete = %s", b)
	}
	evs := g.run(oldID, []map[string]any{{"content": "q1"}, {"content": "q2"}, {"content": "q3"}, {"content": "q4"}, {"content": "q5"}}).all()
	if c := eventOf(evs, "agent_choice"); c == nil || c["content"] != "old-after-delete" || g.lastModel() != "gpt-4o" {
		t.Fatalf("old client: run after batch delete = %v (model %s)", evs, g.lastModel())
	}
	_, b = e.do("GET", "/api/sessions/"+oldID, nil)
	var users []string
	for _, m := range decode[sessionResponse](t, b).Messages {
		if m.Message.Role == "user" {
			users = append(users, m.Message.Content)
		}
	}
	if !slices.Equal(users, []string{"q1", "q2", "q3", "q4", "q5"}) || !strings.Contains(string(b), `"agentName":"root"`) {
		t.Errorf("old client: stored user messages %v; want q1…q5 once each, with agentName: %s", users, b)
	}
}

// TestRunBodyModelOverride: a config model name works as well as an inline one;
// choosing the agent's own model clears the override; a model that cannot be used is
// a 422 with a JSON error, and nothing of that request is stored.
func TestRunBodyModelOverride(t *testing.T) {
	g := newGenerations(t)
	e := g.e
	id := e.newSession(nil)
	run := func(body any) { e.run("/api/sessions/"+id+"/agent/a", body).all() }
	models := func() sessionModelsJSON {
		code, b := e.do("GET", "/api/sessions/"+id+"/models", nil)
		if code != 200 {
			t.Fatalf("models = %d %s", code, b)
		}
		return decode[sessionModelsJSON](t, b)
	}
	run(map[string]any{"messages": []map[string]any{{"content": "a"}}, "model": "small"})
	if m, got := g.lastModel(), models(); m != "gpt-4o-mini" || got.CurrentModelRef != "small" || got.Models[1].Ref != "small" || !got.Models[1].IsCurrent || got.Models[1].IsCustom {
		t.Errorf("after model small: request model %s, models %+v", m, got)
	}
	run(map[string]any{"messages": []map[string]any{{"content": "b"}}, "model": "fake"})
	if m, got := g.lastModel(), models(); m != "gpt-4o" || got.CurrentModelRef != "" || !got.Models[0].IsCurrent || got.Models[1].IsCurrent {
		t.Errorf("after the agent's own model: request model %s, models %+v", m, got)
	}
	for _, bad := range []string{"nope", "zzz/some-model"} {
		code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", fmt.Sprintf(`{"messages":[{"content":"c"}],"model":%q}`, bad))
		if msg := decode[map[string]string](t, b)["error"]; code != 422 || !strings.Contains(msg, bad) {
			t.Errorf("model %s = %d %s; want 422 naming it", bad, code, b)
		}
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	if got := decode[sessionResponse](t, b); len(got.Messages) != 4 {
		t.Errorf("refused runs stored messages: %d; want 4", len(got.Messages))
	}
	if got := models(); got.CurrentModelRef != "" {
		t.Errorf("a refused model was kept: %+v", got)
	}
}

// TestSessionModelsNotFound: an unknown session, and one that never ran in this
// process (upstream: no attached runtime), are 404s.
func TestSessionModelsNotFound(t *testing.T) {
	g := newGenerations(t)
	id := g.e.newSession(nil)
	for _, path := range []string{"/api/sessions/nope/models", "/api/sessions/" + id + "/models"} {
		if code, b := g.e.do("GET", path, nil); code != 404 || !strings.Contains(string(b), `"error"`) {
			t.Errorf("GET %s = %d %s; want 404", path, code, b)
		}
	}
}

// TestRunBusy409BothBodyForms: while a run holds the session, another run in either
// form is a 409 with upstream's message, its model is not applied, and the session
// JSON says streaming.
func TestRunBusy409BothBodyForms(t *testing.T) {
	hold := make(chan struct{})
	g := newGenerations(t, fakeTurn{Text: []string{"a", "b"}, Hold: hold})
	e := g.e
	id := e.newSession(nil)
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"content": "x"}}})
	s.until("agent_choice")
	streaming := func() bool {
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		return decode[map[string]any](t, b)["streaming"] == true
	}
	if !streaming() {
		t.Error("streaming = false while a run holds the session")
	}
	for _, body := range []string{`[{"content":"y"}]`, `{"messages":[{"content":"y"}],"model":"small"}`} {
		code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", body)
		if code != 409 || decode[map[string]string](t, b)["error"] != "session is already processing a request" {
			t.Errorf("%s while busy = %d %s; want 409", body, code, b)
		}
	}
	close(hold)
	s.all()
	waitFor(t, "the run to let go", func() bool { return !streaming() })
	code, b := e.do("GET", "/api/sessions/"+id+"/models", nil)
	if got := decode[sessionModelsJSON](t, b); code != 200 || got.CurrentModelRef != "" {
		t.Errorf("the refused run's model was applied: %d %s", code, b)
	}
}

// TestRunBodyEdges: an empty body is upstream's 400 `invalid request body: EOF`; a
// body that is neither array nor object is a 400; an object without messages runs
// with no new message (upstream's behaviour here is UNCONFIRMED: we run the turn).
func TestRunBodyEdges_ObjectWithoutMessagesRunsUnconfirmed(t *testing.T) {
	g := newGenerations(t)
	e := g.e
	id := e.newSession(nil)
	for _, body := range []string{"", "  \n"} {
		code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", body)
		if code != 400 || decode[map[string]string](t, b)["error"] != "invalid request body: EOF" {
			t.Errorf("body %q = %d %s; want 400 invalid request body: EOF", body, code, b)
		}
	}
	for _, body := range []string{`"hi"`, `7`, `null`, `true`} {
		code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", body)
		if code != 400 || !strings.HasPrefix(decode[map[string]string](t, b)["error"], "invalid request body") {
			t.Errorf("body %s = %d %s; want 400", body, code, b)
		}
	}
	for _, body := range []any{map[string]any{}, map[string]any{"messages": nil}} {
		evs := e.run("/api/sessions/"+id+"/agent/a", body).all()
		if eventOf(evs, "user_message") != nil || eventOf(evs, "agent_choice") == nil {
			t.Errorf("body %v: events %v; want a turn without a new user message", body, evs)
		}
	}
}

// TestRunBodyLimit: the run body limit is configurable (--max-request-size); over it
// is a 413, also for a chunked body without Content-Length (upstream may answer that
// one 400, UNCONFIRMED: a client expects the size to be named).
func TestRunBodyLimit_ChunkedOverLimitIs413Unconfirmed(t *testing.T) {
	f := newFakeOpenAI(t)
	e := newTestEnv(t, map[string]string{"a.yaml": generationsYAML(f.URL)}, func(c *serverConfig) { c.maxRunBody = 4096 })
	e.setenv("OPENAI_API_KEY", "test-key")
	id := e.newSession(nil)
	big := fmt.Sprintf(`{"messages":[{"content":%q}]}`, strings.Repeat("x", 5000))
	if code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", big); code != 413 || !strings.Contains(string(b), `"error"`) {
		t.Errorf("over the limit = %d %s; want 413", code, b)
	}
	resp, err := http.Post(e.srv.URL+"/api/sessions/"+id+"/agent/a", "application/json", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("chunked over the limit = %d; want 413", resp.StatusCode)
	}
	if evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": strings.Repeat("y", 3000)}}).all(); eventOf(evs, "stream_stopped") == nil {
		t.Errorf("under the limit: %v", evs)
	}
	if (&server{}).runBodyLimit() != maxRunBody {
		t.Errorf("default run body limit = %d; want %d", (&server{}).runBodyLimit(), maxRunBody)
	}
}

// TestRunDefaultAgentWithoutRoot: on the two-segment route a team without a root
// agent starts with its first agent (upstream's newer rule; the reference failed).
func TestRunDefaultAgentWithoutRoot(t *testing.T) {
	f := newFakeOpenAI(t)
	yaml := strings.Replace(generationsYAML(f.URL), "  root:\n", "  first:\n", 1) + "  second:\n    model: fake\n    instruction: x\n"
	e := newTestEnv(t, map[string]string{"team.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "test-key")
	id := e.newSession(nil)
	evs := e.run("/api/sessions/"+id+"/agent/team", map[string]any{"messages": []map[string]any{{"content": "hi"}}}).all()
	if info := eventOf(evs, "agent_info"); info == nil || info["agent_name"] != "first" {
		t.Errorf("agent_info = %v; want the first agent", info)
	}
	// Upstream's newer status and message prefix (the reference answered 500).
	if code, b := e.do("POST", "/api/sessions", map[string]any{"working_dir": "no/such/dir"}); code != 400 ||
		!strings.HasPrefix(decode[map[string]string](t, b)["error"], "invalid working directory: ") {
		t.Errorf("bad working_dir = %d %s; want 400 invalid working directory: …", code, b)
	}
}

// TestErrorEventCodes: error events name the failed session and classify the
// failure; stream_stopped then says error.
func TestErrorEventCodes(t *testing.T) {
	cases := []struct {
		name, code string
		turn       fakeTurn
	}{
		{"rate limited", "rate_limited", fakeTurn{Status: 429, Body: `{"error":{"message":"slow down","type":"rate_limit_exceeded"}}`}},
		{"context exceeded", "context_exceeded", openAIOverflow},
		{"other model error", "model_error", fakeTurn{Status: 400, Body: `{"error":{"message":"bad request","type":"invalid_request_error"}}`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, f := newRunEnv(t, "    fallback:\n      retries: -1\n")
			f.Default = &tc.turn
			id := e.newSession(map[string]any{"title": "t"}) // no generated title after stream_stopped
			evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
			errEv, stop := eventOf(evs, "error"), evs[len(evs)-1]
			if errEv == nil || errEv["code"] != tc.code || errEv["session_id"] != id {
				t.Errorf("error event = %v; want code %s and the session id", errEv, tc.code)
			}
			if stop["type"] != "stream_stopped" || stop["reason"] != "error" {
				t.Errorf("last event = %v; want stream_stopped reason error", stop)
			}
		})
	}
}

// TestFlatMessageReadsBothKeys: on input a non-empty agent_name wins over agentName,
// and either alone is enough.
func TestFlatMessageReadsBothKeys(t *testing.T) {
	for in, want := range map[string]string{
		`{"agentName":"old","message":null}`:                    "old",
		`{"agent_name":"new","message":null}`:                   "new",
		`{"agentName":"old","agent_name":"new","message":null}`: "new",
		`{"agentName":"old","agent_name":"","message":null}`:    "old",
	} {
		if got := decode[flatMessage](t, []byte(in)); got.AgentName != want {
			t.Errorf("%s: agent %q; want %q", in, got.AgentName, want)
		}
	}
}

// TestHookEvents: each dispatch of a hook event is bracketed by hook_started and
// hook_finished, whose allowed is false when a hook blocked.
func TestHookEvents(t *testing.T) {
	e, _ := newRunEnv(t, withHooks(toolHooks("pre_tool_use", "shell", "echo no >&2; exit 2", 0)),
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo hi")}}, fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
	types := withoutTitle(typesOf(evs))
	i, j := slices.Index(types, "hook_started"), slices.Index(types, "hook_finished")
	if i < 0 || j != i+1 || types[j+1] != "hook_blocked" {
		t.Fatalf("events = %v; want hook_started, hook_finished, hook_blocked", types)
	}
	start, done := eventOf(evs, "hook_started"), eventOf(evs, "hook_finished")
	if start["hook_event"] != "pre_tool_use" || start["session_id"] != id || done["allowed"] != false ||
		done["hook_event"] != "pre_tool_use" || done["duration_ms"] == nil || !strings.Contains(fmt.Sprint(done["message"]), "no") {
		t.Errorf("hook_started = %v, hook_finished = %v", start, done)
	}
}

// TestScriptToolStreamsOutput: a script tool's output streams as tool_call_output
// like the shell tool's, in whole characters, and the response still has all of it.
func TestScriptToolStreamsOutput(t *testing.T) {
	e, _ := newRunEnv(t, "    toolsets:\n      - type: script\n        shell:\n          greet:\n            cmd: printf 'h\\303'; sleep 0.1; printf '\\251llo %s\\n' \"$name\"\n            args:\n              name: {type: string}\n",
		fakeTurn{ToolCalls: []fakeToolCall{{"call_1", "greet", `{"name":"x"}`}}}, fakeTurn{Text: []string{"ok"}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
	var streamed string
	for _, o := range eventsOf(evs, "tool_call_output") {
		if o["tool_call_id"] != "call_1" || strings.ContainsRune(o["output"].(string), '\uFFFD') {
			t.Errorf("tool_call_output = %v", o)
		}
		streamed += o["output"].(string)
	}
	if resp := eventOf(evs, "tool_call_response"); streamed != "héllo x\n" || resp["response"] != "héllo x\n" {
		t.Errorf("streamed %q, response %v; want héllo x", streamed, resp["response"])
	}
}

// TestCompactionOutcome: a completed session_compaction says whether the summary was
// applied or the compaction failed (newer clients read an absent outcome as applied).
func TestCompactionOutcome(t *testing.T) {
	outcome := func(evs []map[string]any) any {
		var last any
		for _, ev := range eventsOf(evs, "session_compaction") {
			if ev["status"] == "completed" {
				last = ev["outcome"]
			} else if ev["outcome"] != nil {
				t.Errorf("started with an outcome: %v", ev)
			}
		}
		return last
	}
	e, _ := newRunEnv(t, "", openAIOverflow, fakeTurn{Text: []string{"SUMMARY"}}, fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	if got := outcome(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()); got != "applied" {
		t.Errorf("compaction that worked: outcome %v; want applied", got)
	}
	e, f := newRunEnv(t, "")
	f.Default = &openAIOverflow
	id = e.newSession(map[string]any{"title": "t"})
	if got := outcome(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()); got != "failed" {
		t.Errorf("compaction whose summary overflowed: outcome %v; want failed", got)
	}
}

// TestModelOverrideSetsCompactionWindow: after a run body switched the agent to a
// model with a larger context window, compaction (and agent_info's context_limit)
// follow that model, not the agent's own (gpt-4o, 128k: 120k tokens would compact).
func TestModelOverrideSetsCompactionWindow(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"a"}, PromptTokens: 120000}, fakeTurn{Text: []string{"b"}})
	yaml := "providers:\n  wide:\n    base_url: " + f.URL + "/v1\n" +
		strings.Replace(generationsYAML(f.URL), "models:\n", "models:\n  big:\n    provider: wide\n    model: gpt-4.1-mini\n", 1)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "test-key")
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"content": "one"}}, "model": "big"}).all()
	evs := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"content": "two"}}}).all()
	if eventOf(evs, "session_compaction") != nil || len(f.requests()) != 2 {
		t.Errorf("compacted at 120k tokens on a 1M-token model: %v", typesOf(evs))
	}
	if info := eventOf(evs, "agent_info"); info["model"] != "wide/gpt-4.1-mini" || info["context_limit"] != float64(1047576) {
		t.Errorf("agent_info = %v; want the override's model and context window", info)
	}
}
