package main

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// post sends a JSON body with extra headers and returns the response (body read).
func (e *apiTest) post(path, body string, header map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// lastMessage is the last message of the nth recorded model request.
func lastMessage(t *testing.T, f *fakeOpenAI, n int) map[string]any {
	t.Helper()
	reqs := f.requests()
	if len(reqs) <= n {
		t.Fatalf("%d model requests; want more than %d", len(reqs), n)
	}
	msgs := reqs[n]["messages"].([]any)
	return msgs[len(msgs)-1].(map[string]any)
}

func TestSteerAndFollowupNeedASessionThatRanSinceStart(t *testing.T) {
	e, _ := newRunEnv(t, "")
	id := e.newSession(nil)
	msg := `{"messages":[{"role":"user","content":"hi"}]}`
	for path, want := range map[string]string{"steer": "failed to steer session: session not found or not running",
		"followup": "failed to enqueue follow-up: session not found or not running"} {
		resp, b := e.post("/api/sessions/"+id+"/"+path, msg, nil)
		if resp.StatusCode != 409 || decode[map[string]string](t, b)["message"] != want {
			t.Errorf("%s before any run = %d %s; want 409 %q", path, resp.StatusCode, b, want)
		}
		if resp, b := e.post("/api/sessions/"+id+"/"+path, `{"messages":[]}`, nil); resp.StatusCode != 400 || !strings.Contains(string(b), "at least one message is required") {
			t.Errorf("%s without messages = %d %s", path, resp.StatusCode, b)
		}
		if resp, _ := e.post("/api/sessions/nope/"+path, msg, nil); resp.StatusCode != 404 {
			t.Errorf("%s of an unknown session = %d; want 404", path, resp.StatusCode)
		}
	}
	if code, b := e.do("GET", "/api/sessions/"+id+"/queue", nil); code != 404 || !strings.Contains(string(b), "session not found or not running") {
		t.Errorf("queue before any run = %d %s", code, b)
	}
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	if resp, b := e.post("/api/sessions/"+id+"/steer", msg, nil); resp.StatusCode != 202 || string(b) != `{"status":"queued"}`+"\n" {
		t.Errorf("steer after a run = %d %s; want 202 queued", resp.StatusCode, b)
	}
	code, b := e.do("GET", "/api/sessions/"+id+"/queue", nil)
	if code != 200 || string(b) != `{"followup":{"depth":0,"capacity":20},"steer":{"depth":1,"capacity":5}}`+"\n" {
		t.Errorf("queue = %d %s", code, b)
	}
	// A restart empties the queues: the session has not run in the new process.
	e.restart()
	if resp, _ := e.post("/api/sessions/"+id+"/steer", msg, nil); resp.StatusCode != 409 {
		t.Errorf("steer after a restart = %d; want 409", resp.StatusCode)
	}
}

// The steer messages arrive while the model answers; the loop drains them at the next
// iteration boundary (after the tool call), stores them as one user message and
// announces it as user_message — the reference's announcement is unconfirmed.
func TestSteerDrainedAtIterationBoundaryStoredAndAnnouncedAsUserMessageUnconfirmedUpstream(t *testing.T) {
	hold := make(chan struct{})
	e, f := newRunEnv(t, shellThinkYAML,
		fakeTurn{Text: []string{"working"}, Hold: hold, ToolCalls: []fakeToolCall{{ID: "c1", Name: "think", Args: `{"thought":"x"}`}}},
		fakeTurn{Text: []string{"steered"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("agent_choice")
	for _, m := range []string{"focus on tests", "and be short"} {
		if resp, b := e.post("/api/sessions/"+id+"/steer", `{"messages":[{"content":"`+m+`"}]}`, nil); resp.StatusCode != 202 {
			t.Fatalf("steer = %d %s", resp.StatusCode, b)
		}
	}
	_, b := e.do("GET", "/api/sessions/"+id+"/queue", nil)
	if q := decode[map[string]queueDepth](t, b); q["steer"].Depth != 2 {
		t.Fatalf("queue while running = %s", b)
	}
	close(hold)
	s.until("tool_call_response")
	um := s.until("user_message")
	if um["message"] != "focus on tests\nand be short" || um["session_id"] != id || um["session_position"] != float64(3) {
		t.Fatalf("user_message = %v", um)
	}
	s.all()
	if last := lastMessage(t, f, 1); last["role"] != "user" || last["content"] != "focus on tests\nand be short" {
		t.Fatalf("second model request ends with %v; want the steer message", last)
	}
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	msgs := decode[sessionResponse](t, b).Messages
	if len(msgs) != 5 || msgs[3].Message.Role != "user" || msgs[3].Message.Content != "focus on tests\nand be short" {
		t.Fatalf("stored messages = %s", b)
	}
}

// A steer sent during the final answer (no tool calls) still reaches the model: the
// loop takes another iteration instead of ending the turn.
func TestSteerDuringFinalAnswerGetsAnotherIteration(t *testing.T) {
	hold := make(chan struct{})
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"almost", " done"}, Hold: hold}, fakeTurn{Text: []string{"redone"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("agent_choice")
	e.post("/api/sessions/"+id+"/steer", `{"messages":[{"content":"in French"}]}`, nil)
	close(hold)
	s.all()
	if n := len(f.requests()); n != 2 {
		t.Fatalf("model requests = %d; want 2", n)
	}
	if last := lastMessage(t, f, 1); last["content"] != "in French" {
		t.Fatalf("second request ends with %v", last)
	}
	if n := strings.Count(strings.Join(s.types(), ","), "stream_stopped"); n != 1 {
		t.Fatalf("events = %v; want one turn", s.types())
	}
}

func TestSteerQueueFull429KeepsTheEarlierMessages(t *testing.T) {
	e, f := newRunEnv(t, "")
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	six := `{"messages":[{"content":"1"},{"content":"2"},{"content":"3"},{"content":"4"},{"content":"5"},{"content":"6"}]}`
	resp, b := e.post("/api/sessions/"+id+"/steer", six, nil)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || decode[map[string]string](t, b)["message"] != "steer queue full" {
		t.Fatalf("overfull steer = %d %v %s", resp.StatusCode, resp.Header, b)
	}
	// The five that fitted are picked up by the next run, at its top.
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "again"}}).all()
	if last := lastMessage(t, f, 1); last["content"] != "1\n2\n3\n4\n5" {
		t.Fatalf("next run's request ends with %v", last)
	}
}

func TestFollowupsEachGetAFullTurnWithIdempotencyKey(t *testing.T) {
	hold := make(chan struct{})
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"first", " answer"}, Hold: hold}, fakeTurn{Text: []string{"a1"}}, fakeTurn{Text: []string{"a2"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("agent_choice")
	two := `{"messages":[{"content":"f1"},{"content":"f2"}]}`
	key := map[string]string{"Idempotency-Key": "k-1"}
	if resp, b := e.post("/api/sessions/"+id+"/followup", two, key); resp.StatusCode != 202 || string(b) != `{"duplicate":false,"status":"queued_streaming"}`+"\n" {
		t.Fatalf("followup = %d %s", resp.StatusCode, b)
	}
	if resp, b := e.post("/api/sessions/"+id+"/followup", two, key); resp.StatusCode != 202 || string(b) != `{"duplicate":true,"status":"duplicate"}`+"\n" {
		t.Fatalf("repeated followup = %d %s", resp.StatusCode, b)
	}
	close(hold)
	s.all()
	var turns [][]string
	for _, typ := range withoutTitle(s.types()) {
		if typ == "user_message" {
			turns = append(turns, nil)
		}
		if len(turns) > 0 {
			turns[len(turns)-1] = append(turns[len(turns)-1], typ)
		}
	}
	if len(turns) != 3 || !slices.Equal(turns[1], turns[2]) || turns[1][1] != "stream_started" || turns[1][len(turns[1])-1] != "stream_stopped" {
		t.Fatalf("events = %v; want the run's turn and one full turn per follow-up", s.types())
	}
	for i, want := range []string{"go", "f1", "f2"} {
		if last := lastMessage(t, f, i); last["content"] != want {
			t.Fatalf("request %d ends with %v; want %q", i, last, want)
		}
	}
	if n := len(f.requests()); n != 3 {
		t.Fatalf("model requests = %d; the duplicate was delivered again", n)
	}
}

func TestFollowupIdleWaitsForTheNextRunAndFullQueueReleasesTheKey(t *testing.T) {
	e, f := newRunEnv(t, "")
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	var many []runMessage
	for range followupQueueCap + 1 {
		many = append(many, runMessage{Content: "x"})
	}
	body, _ := json.Marshal(queueRequest{Messages: many})
	key := map[string]string{"Idempotency-Key": "k"}
	resp, b := e.post("/api/sessions/"+id+"/followup", string(body), key)
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "1" || decode[map[string]string](t, b)["message"] != "follow-up queue full" {
		t.Fatalf("overfull followup = %d %s", resp.StatusCode, b)
	}
	if resp, b := e.post("/api/sessions/"+id+"/followup", `{"messages":[{"content":"later"}]}`, key); string(b) != `{"duplicate":false,"status":"queued_idle"}`+"\n" {
		t.Fatalf("retry with the released key = %d %s", resp.StatusCode, b)
	}
	if n := len(f.requests()); n != 1 {
		t.Fatalf("an idle follow-up started a turn on its own: %d requests", n)
	}
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "now"}})
	s.all()
	if last := lastMessage(t, f, 2); last["content"] != "later" {
		t.Fatalf("the follow-up's turn ends with %v", last)
	}
}
