package main

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ask runs agent a on session id with one question and reads the stream to its end.
func ask(e *apiTest, id, question string) []map[string]any {
	e.t.Helper()
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": question}}})
	if s.resp.StatusCode != 200 {
		e.t.Fatalf("run: status %d", s.resp.StatusCode)
	}
	return s.all()
}

// contents lists the content of a session's flattened messages.
func contents(e *apiTest, id string) []string {
	e.t.Helper()
	code, b := e.do("GET", "/api/sessions/"+id, nil)
	if code != 200 {
		e.t.Fatalf("GET session %s: %d %s", id, code, b)
	}
	var out []string
	for _, m := range decode[sessionResponse](e.t, b).Messages {
		out = append(out, m.Message.Content)
	}
	return out
}

// wantError checks a JSON error answer: status, and a message containing want.
func wantError(t *testing.T, what string, code int, b []byte, status int, want string) {
	t.Helper()
	if code != status {
		t.Errorf("%s: status %d %s; want %d", what, code, b, status)
		return
	}
	if msg := decode[map[string]string](t, b)["error"]; !strings.Contains(msg, want) {
		t.Errorf("%s: error %q; want it to contain %q", what, msg, want)
	}
}

func TestForkCopiesUpToUserMessage(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"A1"}}, fakeTurn{Text: []string{"A2"}}, fakeTurn{Text: []string{"B"}})
	id := e.newSession(map[string]any{"title": "Trip", "tools_approved": true})
	ask(e, id, "Q1")
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	afterFirst := decode[sessionResponse](t, b)
	ask(e, id, "Q2")

	code, b := e.do("POST", "/api/sessions/"+id+"/fork", map[string]any{"user_message_index": 1})
	if code != 200 {
		t.Fatalf("fork: %d %s", code, b)
	}
	fork := decode[sessionResponse](t, b)
	if fork.ID == "" || fork.ID == id || fork.Title != "Trip (fork 1)" || !fork.ToolsApproved {
		t.Errorf("fork = %+v; want a new id, title %q, the parent's settings", fork, "Trip (fork 1)")
	}
	if got := contents(e, fork.ID); !slices.Equal(got, []string{"Q1", "A1"}) {
		t.Errorf("fork messages = %q; want everything before the second question", got)
	}
	// The fork has spent what its copied answer cost, not the parent's later turns.
	if fork.InputTokens != afterFirst.InputTokens || fork.OutputTokens != afterFirst.OutputTokens || fork.Cost != afterFirst.Cost || fork.Cost == 0 {
		t.Errorf("fork usage = %d/%d/%v; want the first answer's %d/%d/%v", fork.InputTokens, fork.OutputTokens, fork.Cost,
			afterFirst.InputTokens, afterFirst.OutputTokens, afterFirst.Cost)
	}
	if got := contents(e, id); !slices.Equal(got, []string{"Q1", "A1", "Q2", "A2"}) {
		t.Errorf("parent messages = %q; want them untouched", got)
	}

	// A run on the fork continues from the copy.
	ask(e, fork.ID, "Q2 again")
	reqs := f.requests()
	if got := promptOf(reqs[len(reqs)-1]); !slices.Equal(got, []string{"system: Be brief.", "user: Q1", "assistant: A1", "user: Q2 again"}) {
		t.Errorf("model saw %q", got)
	}

	// Forks of the same session, and forks of forks, count up; index 0 copies nothing.
	code, b = e.do("POST", "/api/sessions/"+fork.ID+"/fork", map[string]any{"user_message_index": 0})
	if second := decode[sessionResponse](t, b); code != 200 || second.Title != "Trip (fork 2)" || len(second.Messages) != 0 {
		t.Errorf("fork of the fork: %d %+v; want title %q and no messages", code, second, "Trip (fork 2)")
	}
	// Forks are root sessions of their own: listed, and they outlive their parent.
	e.do("DELETE", "/api/sessions/"+id, nil)
	if got := contents(e, fork.ID); len(got) != 4 {
		t.Errorf("fork after the parent's deletion = %q", got)
	}
}

func TestForkCopiesSubSessions(t *testing.T) {
	e, _ := newRunEnv(t, "")
	ctx := context.Background()
	st := e.s.st
	id := e.newSession(nil)
	st.appendUserMessages(ctx, id, []chatMessage{{Role: "user", Content: "Q1"}})
	child := &sessionRecord{ParentID: id, Title: "child"}
	if err := st.createSession(ctx, child); err != nil {
		t.Fatal(err)
	}
	st.appendUserMessages(ctx, child.ID, []chatMessage{{Role: "user", Content: "sub task"}})
	st.appendMessage(ctx, child.ID, "helper", &chatMessage{Role: "assistant", Content: "sub answer"}, false)
	if err := st.appendSubSession(ctx, id, child.ID); err != nil {
		t.Fatal(err)
	}
	st.appendUserMessages(ctx, id, []chatMessage{{Role: "user", Content: "Q2"}})

	// Index 1 is the sub-session's user message: a fork cannot start inside it.
	code, b := e.do("POST", "/api/sessions/"+id+"/fork", map[string]any{"user_message_index": 1})
	wantError(t, "index inside a sub-session", code, b, 400, "falls inside a sub-session at ordinal 1")

	code, b = e.do("POST", "/api/sessions/"+id+"/fork", map[string]any{"user_message_index": 2})
	if code != 200 {
		t.Fatalf("fork: %d %s", code, b)
	}
	fork := decode[sessionResponse](t, b)
	if got := contents(e, fork.ID); !slices.Equal(got, []string{"Q1", "sub task", "sub answer"}) {
		t.Errorf("fork = %q", got)
	}
	items, err := st.items(ctx, fork.ID)
	if err != nil || len(items) != 2 || items[1].SubSession == nil || items[1].SubSession.ID == child.ID || items[1].SubSession.ParentID != fork.ID {
		t.Fatalf("fork items = %+v, %v; want a copied sub-session of its own", items, err)
	}
	// Deleting the parent (and its sub-session) leaves the fork's copy whole.
	e.do("DELETE", "/api/sessions/"+id, nil)
	if got := contents(e, fork.ID); len(got) != 3 {
		t.Errorf("fork after the parent's deletion = %q", got)
	}
}

func TestForkBadInput(t *testing.T) {
	e, _ := newRunEnv(t, "")
	id := e.newSession(nil)
	ask(e, id, "Q1")
	for _, tt := range []struct {
		name   string
		path   string
		body   any
		status int
		want   string
	}{
		{"unknown session", "/api/sessions/nope/fork", map[string]any{"user_message_index": 0}, 404, "session not found: nope"},
		{"malformed JSON", "/api/sessions/" + id + "/fork", `{"user_message_index":`, 400, "invalid request body"},
		{"wrong type", "/api/sessions/" + id + "/fork", `{"user_message_index":"1"}`, 400, "invalid request body"},
		{"no index", "/api/sessions/" + id + "/fork", map[string]any{}, 400, "user_message_index is required"},
		{"negative", "/api/sessions/" + id + "/fork", map[string]any{"user_message_index": -1}, 400, "fork user-message index out of range: -1"},
		{"past the end", "/api/sessions/" + id + "/fork", map[string]any{"user_message_index": 1}, 400, "fork user-message index out of range: 1"},
	} {
		code, b := e.do("POST", tt.path, tt.body)
		wantError(t, tt.name, code, b, tt.status, tt.want)
	}
}

// TestForkWhileRunning: upstream serialises forks but does not refuse them while the
// parent runs; everything before a user message is complete by then, so neither do we.
func TestForkWhileRunning(t *testing.T) {
	hold := make(chan struct{})
	e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"A1"}}, fakeTurn{Text: []string{"partial", " rest"}, Hold: hold})
	id := e.newSession(nil)
	ask(e, id, "Q1")
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "Q2"}})
	s.until("agent_choice")
	code, b := e.do("POST", "/api/sessions/"+id+"/fork", map[string]any{"user_message_index": 1})
	close(hold)
	s.all()
	if got := contents(e, decode[sessionResponse](t, b).ID); code != 200 || !slices.Equal(got, []string{"Q1", "A1"}) {
		t.Errorf("fork while running: %d, messages %q", code, got)
	}
}

// TestMessageEditsReachNextRun: the history cache holds the session after the first
// run; the edits must reach the model on the next one.
func TestMessageEditsReachNextRun(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"A1"}}, fakeTurn{Text: []string{"A2"}})
	id := e.newSession(nil)
	ask(e, id, "Q1")
	if got := contents(e, id); !slices.Equal(got, []string{"Q1", "A1"}) { // now cached
		t.Fatalf("session = %q", got)
	}
	code, b := e.do("PATCH", "/api/sessions/"+id+"/messages/1",
		map[string]any{"message": map[string]any{"agent_name": "root", "message": map[string]any{"role": "assistant", "content": "edited A1"}}})
	if code != 200 || string(b) != `{"status":"updated"}`+"\n" {
		t.Fatalf("PATCH: %d %s", code, b)
	}
	// Old clients' key for the agent is accepted too.
	code, b = e.do("POST", "/api/sessions/"+id+"/messages",
		map[string]any{"message": map[string]any{"agentName": "root", "message": map[string]any{"role": "assistant", "content": "a note"}}})
	if code != 201 || string(b) != `{"status":"added"}`+"\n" {
		t.Fatalf("POST: %d %s", code, b)
	}
	if got := contents(e, id); !slices.Equal(got, []string{"Q1", "edited A1", "a note"}) {
		t.Errorf("session = %q", got)
	}
	ask(e, id, "Q2")
	reqs := f.requests()
	want := []string{"system: Be brief.", "user: Q1", "assistant: edited A1", "assistant: a note", "user: Q2"}
	if got := promptOf(reqs[len(reqs)-1]); !slices.Equal(got, want) {
		t.Errorf("model saw %q\nwant %q", got, want)
	}
	// The session document names the agent of the edited messages.
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	for _, m := range decode[sessionResponse](t, b).Messages[1:3] {
		if m.AgentName != "root" {
			t.Errorf("agent of %q = %q", m.Message.Content, m.AgentName)
		}
	}
}

// TestMessageEditIDIsPosition_UNCONFIRMED: upstream does not say whether msg_id is a
// row id or a position; a client knows positions (user_message's session_position,
// the index in the full session document), so it is the position.
func TestMessageEditIDIsPosition_UNCONFIRMED(t *testing.T) {
	e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"A1"}})
	id := e.newSession(nil)
	evs := ask(e, id, "Q1")
	pos := eventOf(evs, "user_message")["session_position"].(float64)
	code, _ := e.do("PATCH", "/api/sessions/"+id+"/messages/"+strconv.Itoa(int(pos)),
		map[string]any{"message": map[string]any{"message": map[string]any{"role": "user", "content": "Q1, rephrased"}}})
	if got := contents(e, id); code != 200 || !slices.Equal(got, []string{"Q1, rephrased", "A1"}) {
		t.Errorf("PATCH at session_position %v: %d, session %q", pos, code, got)
	}
}

func TestMessageEditBadInput(t *testing.T) {
	hold := make(chan struct{})
	e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"A1"}}, fakeTurn{Text: []string{"x", "y"}, Hold: hold})
	id := e.newSession(nil)
	ask(e, id, "Q1")
	msg := func(role string) map[string]any {
		return map[string]any{"message": map[string]any{"message": map[string]any{"role": role, "content": "c"}}}
	}
	base := "/api/sessions/" + id + "/messages"
	for _, tt := range []struct {
		name, method, path string
		body               any
		status             int
		want               string
	}{
		{"no message", "POST", base, map[string]any{}, 400, "message is required"},
		{"null message", "POST", base, map[string]any{"message": nil}, 400, "message is required"},
		{"no inner message", "POST", base, map[string]any{"message": map[string]any{"agent_name": "root"}}, 400, "message.message is required"},
		{"bad role", "POST", base, msg("wizard"), 400, `role must be user, assistant, tool or system, not "wizard"`},
		{"malformed", "POST", base, `{"message":`, 400, "invalid request body"},
		{"file outside the working dir", "POST", base, map[string]any{"message": map[string]any{"message": map[string]any{"role": "user",
			"multi_content": []map[string]any{{"type": "file", "file": map[string]any{"path": "/etc/passwd"}}}}}}, 400, "is not inside the session's working directory"},
		{"unknown session", "POST", "/api/sessions/nope/messages", msg("user"), 404, "session not found: nope"},
		{"msg_id not a number", "PATCH", base + "/abc", msg("user"), 400, `invalid message ID "abc"`},
		{"msg_id negative", "PATCH", base + "/-1", msg("user"), 400, `invalid message ID "-1"`},
		{"no message there", "PATCH", base + "/99", msg("user"), 404, "no message at position 99"},
		{"unknown session patch", "PATCH", "/api/sessions/nope/messages/0", msg("user"), 404, "session not found: nope"},
	} {
		code, b := e.do(tt.method, tt.path, tt.body)
		wantError(t, tt.name, code, b, tt.status, tt.want)
	}
	// While a run holds the session, every edit is refused and nothing changes.
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "Q2"}})
	s.until("agent_choice")
	for _, tt := range []struct{ method, path string }{{"POST", base}, {"PATCH", base + "/0"}, {"POST", "/api/sessions/" + id + "/summaries"}} {
		code, b := e.do(tt.method, tt.path, map[string]any{"summary": "s", "message": map[string]any{"message": map[string]any{"role": "user", "content": "sneaky"}}})
		wantError(t, tt.method+" "+tt.path+" while running", code, b, 409, "session is already processing a request")
	}
	close(hold)
	s.all()
	if got := contents(e, id); !slices.Equal(got, []string{"Q1", "A1", "Q2", "xy"}) {
		t.Errorf("session = %q", got)
	}
	// And once the run is over, the session can be edited again.
	if code, b := e.do("POST", base, msg("user")); code != 201 {
		t.Errorf("POST after the run: %d %s", code, b)
	}
}

func TestSummaryReachesNextRun(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"A1"}}, fakeTurn{Text: []string{"A2"}}, fakeTurn{Text: []string{"A3"}})
	id := e.newSession(nil)
	ask(e, id, "Q1")
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	cost := decode[sessionResponse](t, b).Cost
	code, b := e.do("POST", "/api/sessions/"+id+"/summaries", map[string]any{"summary": "We talked about Q1.", "cost": 0.5,
		"model": "openai/gpt-4o", "usage": map[string]any{"input_tokens": 10, "output_tokens": 3}})
	if code != 201 || string(b) != `{"status":"added"}`+"\n" {
		t.Fatalf("POST summaries: %d %s", code, b)
	}
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	if got := decode[sessionResponse](t, b).Cost; got != cost+0.5 {
		t.Errorf("cost = %v; want %v + the summary's 0.5", got, cost)
	}
	ask(e, id, "Q2")
	reqs := f.requests()
	want := []string{"system: Be brief.", "user: Session Summary: We talked about Q1.", "user: Q2"}
	if got := promptOf(reqs[len(reqs)-1]); !slices.Equal(got, want) {
		t.Errorf("model saw %q\nwant %q", got, want)
	}
	// first_kept_entry keeps the items from there on in context, after the summary.
	items, _ := e.s.st.items(context.Background(), id)
	n := len(items)
	code, b = e.do("POST", "/api/sessions/"+id+"/summaries", map[string]any{"summary": "Q1 and Q2.", "first_kept_entry": n - 1})
	if code != 201 {
		t.Fatalf("POST summaries: %d %s", code, b)
	}
	ask(e, id, "Q3")
	reqs = f.requests()
	want = []string{"system: Be brief.", "user: Session Summary: Q1 and Q2.", "assistant: A2", "user: Q3"}
	if got := promptOf(reqs[len(reqs)-1]); !slices.Equal(got, want) {
		t.Errorf("model saw %q\nwant %q", got, want)
	}
}

func TestSummaryBadInput(t *testing.T) {
	e, _ := newRunEnv(t, "")
	id := e.newSession(nil)
	path := "/api/sessions/" + id + "/summaries"
	for _, tt := range []struct {
		name string
		body any
		want string
	}{
		{"empty body", nil, "summary is required"},
		{"blank", map[string]any{"summary": "  "}, "summary is required"},
		{"negative usage", map[string]any{"summary": "s", "usage": map[string]any{"output_tokens": -1}}, "must not be negative"},
		{"long model", map[string]any{"summary": "s", "model": strings.Repeat("m", 257)}, "model is longer than 256 bytes"},
		{"control characters", map[string]any{"summary": "s", "model": "gpt\n4"}, "control characters"},
		{"negative first_kept_entry", map[string]any{"summary": "s", "first_kept_entry": -2}, "must not be negative"},
		{"first_kept_entry too far", map[string]any{"summary": "s", "first_kept_entry": 5}, "beyond the session's 0 items"},
		{"wrong type", `{"summary": 3}`, "invalid request body"},
	} {
		code, b := e.do("POST", path, tt.body)
		wantError(t, tt.name, code, b, 400, tt.want)
	}
	code, b := e.do("POST", "/api/sessions/nope/summaries", map[string]any{"summary": "s"})
	wantError(t, "unknown session", code, b, 404, "session not found: nope")
}

// TestHistoryEditBodyLimit: message and summary bodies may hold inline images, so they
// share the run body's limit (--max-request-size); beyond it, 413.
func TestHistoryEditBodyLimit(t *testing.T) {
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML("http://127.0.0.1:1", "")}, func(c *serverConfig) { c.maxRunBody = 4096 })
	id := e.newSession(nil)
	big := strings.Repeat("x", 5000)
	for _, tt := range []struct{ method, path string }{{"POST", "/messages"}, {"PATCH", "/messages/0"}, {"POST", "/summaries"}} {
		code, b := e.do(tt.method, "/api/sessions/"+id+tt.path,
			map[string]any{"summary": big, "message": map[string]any{"message": map[string]any{"role": "user", "content": big}}})
		if code != 413 || decode[map[string]string](t, b)["error"] == "" {
			t.Errorf("%s %s with %d bytes: %d %s; want 413", tt.method, tt.path, len(big), code, b)
		}
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/messages", map[string]any{"message": map[string]any{"message": map[string]any{"role": "user", "content": big[:3000]}}}); code != 201 {
		t.Errorf("under the limit: %d %s", code, b)
	}
}
