package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// follow opens GET …/events of session id with the query q and headers (name, value
// pairs), and checks it is a stream.
func (e *apiTest) follow(id, q string, header ...string) *sseStream {
	e.t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(header); i += 2 {
		h.Set(header[i], header[i+1])
	}
	s := e.openStream("GET", "/api/sessions/"+id+"/events"+q, "", h)
	if s.resp.StatusCode != 200 || s.resp.Header.Get("Content-Type") != "text/event-stream" {
		e.t.Fatalf("GET events%s = %d %s", q, s.resp.StatusCode, s.resp.Header.Get("Content-Type"))
	}
	return s
}

// close cuts the stream, as a client that goes away.
func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// checkSeqs fails unless ids are exactly from, from+1, … (each once, in order).
func checkSeqs(t *testing.T, ids []int64, from int64) {
	t.Helper()
	for i, id := range ids {
		if id != from+int64(i) {
			t.Fatalf("ids = %v; want consecutive from %d", ids, from)
		}
	}
}

// holdEnv is a server whose model answers "one", then waits for hold to be closed
// before " two", " three".
func holdEnv(t *testing.T, opts ...testOption) (e *apiTest, f *fakeOpenAI, hold chan struct{}) {
	hold = make(chan struct{})
	f = newFakeOpenAI(t, fakeTurn{Text: []string{"one", " two", " three"}, Hold: hold})
	e = newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")}, opts...)
	e.setenv("OPENAI_API_KEY", "test-key")
	var once bool
	t.Cleanup(func() {
		if !once {
			once = true
			select {
			case <-hold:
			default:
				close(hold)
			}
		}
	})
	return e, f, hold
}

// storedText is the text of the session's messages of role, in order.
func storedText(t *testing.T, e *apiTest, id, role string) []string {
	t.Helper()
	code, b := e.do("GET", "/api/sessions/"+id, nil)
	if code != 200 {
		t.Fatalf("GET session = %d %s", code, b)
	}
	var out []string
	for _, m := range decode[sessionResponse](t, b).Messages {
		if m.Message.Role == role {
			out = append(out, m.Message.Content)
		}
	}
	return out
}

// TestEventsReattachAfterCut: a detached run's client is cut mid-answer; the run
// goes on, and a client reattaching with Last-Event-ID gets every later event once,
// in order, up to the end.
func TestEventsReattachAfterCut(t *testing.T) {
	e, _, hold := holdEnv(t)
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a?detach=true", []map[string]any{{"role": "user", "content": "hi"}})
	if s.resp.Header.Get("Preference-Applied") != "detach" {
		t.Fatalf("Preference-Applied = %q", s.resp.Header.Get("Preference-Applied"))
	}
	s.until("agent_choice")
	checkSeqs(t, s.ids, 1)
	s.close()
	close(hold)

	r := e.follow(id, "", "Last-Event-ID", strconv.FormatInt(s.ids[len(s.ids)-1], 10))
	r.until("stream_stopped")
	ids := append(slices.Clone(s.ids), r.ids...)
	checkSeqs(t, ids, 1)
	// The same sequence as the whole log, replayed from the start.
	all := e.follow(id, "")
	all.until("stream_stopped")
	if got, want := append(slices.Clone(s.raw), r.raw...), all.raw; !slices.Equal(got, want) {
		t.Fatalf("cut + reattach =\n%v\nwhole log =\n%v", got, want)
	}
	if got := storedText(t, e, id, "assistant"); !slices.Equal(got, []string{"one two three"}) {
		t.Fatalf("stored answer = %q; the detached run should have finished", got)
	}
}

// TestEventsTwoViewers: two viewers of one run see the same events with the same ids.
func TestEventsTwoViewers(t *testing.T) {
	e, _, hold := holdEnv(t)
	id := e.newSession(map[string]any{"title": "t"})
	run := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "hi"}})
	run.until("agent_choice")
	a, b := e.follow(id, ""), e.follow(id, "?since=0")
	a.until("agent_choice")
	b.until("agent_choice")
	close(hold)
	a.until("stream_stopped")
	b.until("stream_stopped")
	run.all()
	if !slices.Equal(a.ids, b.ids) || !slices.Equal(a.raw, b.raw) {
		t.Fatalf("viewers differ:\n%v %v\n%v %v", a.ids, a.raw, b.ids, b.raw)
	}
	checkSeqs(t, a.ids, 1)
	// The run's own stream (no ids: it is the reference's) carried the same events.
	if !slices.Equal(run.raw, a.raw) {
		t.Fatalf("run stream =\n%v\nlog =\n%v", run.raw, a.raw)
	}
}

// TestDetachedRunCompletesWithoutClient: with Prefer: detach the run finishes after
// its client left; without it, leaving cancels the run as before (partial answer).
func TestDetachedRunCompletesWithoutClient(t *testing.T) {
	for _, detach := range []bool{true, false} {
		e, _, hold := holdEnv(t)
		id := e.newSession(map[string]any{"title": "t"})
		h := http.Header{}
		if detach {
			h.Set("Prefer", "respond-async, detach")
		}
		s := e.openStream("POST", "/api/sessions/"+id+"/agent/a", `[{"role":"user","content":"hi"}]`, h)
		s.until("agent_choice")
		s.close()
		if !detach {
			waitFor(t, "the run to stop", func() bool { return e.s.runs.get(id) == nil })
		}
		close(hold)
		waitFor(t, "the run to end", func() bool { return e.s.runs.get(id) == nil })
		want := "one"
		if detach {
			want = "one two three"
		}
		if got := storedText(t, e, id, "assistant"); !slices.Equal(got, []string{want}) {
			t.Fatalf("detach=%v: stored answer = %q; want %q", detach, got, want)
		}
	}
}

// TestCancelMidAnswer: POST …/cancel ends the run, keeps the partial answer, and the
// session runs again; with nothing running it is 409.
func TestCancelMidAnswer(t *testing.T) {
	e, f, _ := holdEnv(t)
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "hi"}})
	s.until("agent_choice")
	if code, b := e.do("POST", "/api/sessions/"+id+"/cancel", nil); code != 200 {
		t.Fatalf("cancel = %d %s", code, b)
	}
	s.until("stream_stopped")
	if got := storedText(t, e, id, "assistant"); !slices.Equal(got, []string{"one"}) {
		t.Fatalf("stored answer = %q; want the partial one", got)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/cancel", nil); code != 409 {
		t.Fatalf("cancel with nothing running = %d %s; want 409", code, b)
	}
	if code, _ := e.do("POST", "/api/sessions/nope/cancel", nil); code != 404 {
		t.Fatalf("cancel of an unknown session = %d; want 404", code)
	}
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "again"}}).until("stream_stopped")
	if n := len(f.requests()); n != 2 {
		t.Fatalf("model requests = %d; want 2", n)
	}
}

// TestCancelMidTool: cancelling while the first of two tool calls runs stops it and
// gives both calls a stored result, so the conversation stays valid.
func TestCancelMidTool(t *testing.T) {
	e, f := newRunEnv(t, shellThinkYAML, fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "sleep 30"), shellCall("call_2", "echo no")}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "go"}})
	s.until("tool_call")
	if code, b := e.do("POST", "/api/sessions/"+id+"/cancel", nil); code != 200 {
		t.Fatalf("cancel = %d %s", code, b)
	}
	s.until("stream_stopped")
	code, b := e.do("GET", "/api/sessions/"+id, nil)
	if code != 200 {
		t.Fatal(code)
	}
	answered := map[string]string{}
	for _, m := range decode[sessionResponse](t, b).Messages {
		if m.Message.Role == "tool" {
			answered[m.Message.ToolCallID] = m.Message.Content
		}
	}
	for _, call := range []string{"call_1", "call_2"} {
		if !strings.Contains(answered[call], "cancel") {
			t.Fatalf("stored results = %v; want %s answered as canceled", answered, call)
		}
	}
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "again"}}).until("stream_stopped")
	if n := len(f.requests()); n != 2 {
		t.Fatalf("model requests = %d; want 2", n)
	}
}

// TestEventsAfterRestart: a restarted server replays the log from the database, and
// new runs go on numbering after it.
func TestEventsAfterRestart(t *testing.T) {
	e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"a", "b"}})
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "hi"}}).all()
	before := e.follow(id, "")
	before.until("stream_stopped")
	before.close()
	n := before.ids[len(before.ids)-1]

	e.restart()
	after := e.follow(id, "?since=2")
	after.until("stream_stopped")
	checkSeqs(t, after.ids, 3)
	if !slices.Equal(after.raw, before.raw[2:]) {
		t.Fatalf("after restart =\n%v\nbefore =\n%v", after.raw, before.raw[2:])
	}
	code, b := e.do("GET", "/api/sessions/"+id+"/snapshot", nil)
	if seq := decode[map[string]any](t, b)["last_event_seq"]; code != 200 || seq != float64(n) {
		t.Fatalf("snapshot = %d %s; want last_event_seq %d", code, b, n)
	}
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "more"}}).all()
	after.until("stream_stopped")
	checkSeqs(t, after.ids, 3)
}

// TestEventsSessionExited: deleting the session ends its viewers with a sequenced
// session_exited; then the log is gone (404), as for a session that never ran.
func TestEventsSessionExited(t *testing.T) {
	e, _ := newRunEnv(t, "")
	id := e.newSession(map[string]any{"title": "t"})
	if code, _ := e.do("GET", "/api/sessions/"+id+"/events", nil); code != 404 {
		t.Fatalf("events of a session that never ran = %d; want 404", code)
	}
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "hi"}}).all()
	v := e.follow(id, "")
	v.until("stream_stopped")
	if code, b := e.do("DELETE", "/api/sessions/"+id, nil); code != 200 {
		t.Fatalf("delete = %d %s", code, b)
	}
	ev := v.next()
	if ev["type"] != "session_exited" || ev["reason"] != "session ended" {
		t.Fatalf("after delete: %v", ev)
	}
	checkSeqs(t, v.ids, 1)
	if ev := v.next(); ev != nil {
		t.Fatalf("stream goes on after session_exited: %v", ev)
	}
	if code, _ := e.do("GET", "/api/sessions/"+id+"/events", nil); code != 404 {
		t.Fatalf("events after delete = %d; want 404", code)
	}
}

// TestEventsGap: with a small retention, asking for evicted events gives a gap frame
// (no id) and then the oldest kept; asking for nothing in particular replays what is
// kept without one.
func TestEventsGap(t *testing.T) {
	f := newFakeOpenAI(t)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")}, func(c *serverConfig) { c.eventRetention = 5 })
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "hi"}}).all()
	code, b := e.do("GET", "/api/sessions/"+id+"/snapshot", nil)
	last := int64(decode[map[string]any](t, b)["last_event_seq"].(float64))
	if code != 200 || last <= 6 {
		t.Fatalf("snapshot = %d %s", code, b)
	}
	for _, c := range []struct{ q, header string }{{"?since=1", ""}, {"", "1"}} {
		var s *sseStream
		if c.header != "" {
			s = e.follow(id, c.q, "Last-Event-ID", c.header)
		} else {
			s = e.follow(id, c.q)
		}
		if ev := s.next(); ev["type"] != "gap" || s.ids[0] != 0 || len(ev) != 1 {
			t.Fatalf("%q %q: first frame %v (id %d); want a bare gap", c.q, c.header, ev, s.ids[0])
		}
		s.until("stream_stopped")
		checkSeqs(t, s.ids[1:], last-4)
		s.close()
	}
	s := e.follow(id, "")
	s.until("stream_stopped")
	checkSeqs(t, s.ids, last-4)
	if s.events[0]["type"] == "gap" {
		t.Fatal("gap without a resume point")
	}
}

// TestEventsPing: an idle viewer gets `: ping` comments (the interval is shortened).
func TestEventsPing(t *testing.T) {
	f := newFakeOpenAI(t)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")}, func(c *serverConfig) { c.heartbeat = 20 * time.Millisecond })
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "hi"}}).all()
	s := e.follow(id, "")
	s.until("stream_stopped")
	for s.sc.Scan() {
		if s.sc.Text() == ": ping" {
			return
		}
	}
	t.Fatal("stream ended without a ping")
}

// TestEventLogOff: with the log disabled there is no /events (404), snapshot says
// last_event_seq 0 and a detached run's stream has no ids.
func TestEventLogOff(t *testing.T) {
	f := newFakeOpenAI(t)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")}, func(c *serverConfig) { c.eventRetention = -1 })
	e.setenv("OPENAI_API_KEY", "k")
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a?detach=true", []map[string]any{{"role": "user", "content": "hi"}})
	s.until("stream_stopped")
	if slices.ContainsFunc(s.ids, func(id int64) bool { return id != 0 }) {
		t.Fatalf("ids without a log: %v", s.ids)
	}
	if code, _ := e.do("GET", "/api/sessions/"+id+"/events", nil); code != 404 {
		t.Fatalf("events = %d; want 404", code)
	}
	code, b := e.do("GET", "/api/sessions/"+id+"/snapshot", nil)
	if code != 200 || decode[map[string]any](t, b)["last_event_seq"] != float64(0) {
		t.Fatalf("snapshot = %d %s", code, b)
	}
}

// TestStatusAndSnapshot: the run state with the pending request (a confirmation, then
// an elicitation), and last_event_seq as in the log; unknown sessions are 404.
func TestStatusAndSnapshot(t *testing.T) {
	ask := fakeToolCall{ID: "call_2", Name: "user_prompt", Args: `{"message":"Your name?","schema":{"type":"object","properties":{"name":{"type":"string"}}}}`}
	e, _ := newRunEnv(t, "    toolsets:\n      - type: shell\n      - type: user_prompt\n",
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo hi")}}, fakeTurn{ToolCalls: []fakeToolCall{ask}}, fakeTurn{Text: []string{"bye"}})
	status := func(id, q string) (int, map[string]any) {
		t.Helper()
		code, b := e.do("GET", "/api/sessions/"+id+"/status"+q, nil)
		return code, decode[map[string]any](t, b)
	}
	if code, _ := status("nope", ""); code != 404 {
		t.Fatalf("status of an unknown session = %d", code)
	}
	if code, _ := status("nope", "?wait=30ms"); code != 503 {
		t.Fatalf("status ?wait of an unknown session = %d; want 503", code)
	}
	if code, _ := status("nope", "?wait=soon"); code != 400 {
		t.Fatalf("bad wait = %d; want 400", code)
	}
	code, b := e.do("GET", "/api/sessions/nope/snapshot", nil)
	if got := decode[map[string]any](t, b); code != 404 || got["code"] != "unknown_session" {
		t.Fatalf("snapshot of an unknown session = %d %s", code, b)
	}
	id := e.newSession(map[string]any{"title": "t"})
	if code, st := status(id, "?wait=1s"); code != 200 || st["state"] != "idle" || st["streaming"] != false || st["title"] != "t" {
		t.Fatalf("idle status = %d %v", code, st)
	}
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	code, st := status(id, "")
	pending, _ := st["pending"].(map[string]any)
	if code != 200 || st["state"] != "waiting_for_confirmation" || st["streaming"] != true || st["agent"] != "root" ||
		pending["type"] != "tool_call_confirmation" || pending["tool_call"].(map[string]any)["id"] != "call_1" {
		t.Fatalf("status while confirming = %d %v", code, st)
	}
	code, b = e.do("GET", "/api/sessions/"+id+"/snapshot", nil)
	snap := decode[map[string]any](t, b)
	if code != 200 || snap["state"] != "waiting_for_confirmation" || snap["pending"] == nil || snap["id"] != id || snap["messages"] == nil {
		t.Fatalf("snapshot while confirming = %d %s", code, b)
	}
	// last_event_seq is the log's newest event: a viewer from it sees only newer ones.
	v := e.follow(id, "?since="+strconv.Itoa(int(snap["last_event_seq"].(float64))))
	all := e.follow(id, "")
	all.until("tool_call_confirmation")
	if last := all.ids[len(all.ids)-1]; float64(last) != snap["last_event_seq"] {
		t.Fatalf("last_event_seq = %v; log ends at %d", snap["last_event_seq"], last)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	s.until("elicitation_request")
	if ev := v.next(); ev["type"] != "tool_call" || float64(v.ids[0]) != snap["last_event_seq"].(float64)+1 {
		t.Fatalf("first event after the snapshot = %v (id %v)", ev, v.ids)
	}
	code, st = status(id, "")
	if pending, _ = st["pending"].(map[string]any); code != 200 || st["state"] != "waiting_for_elicitation" || pending["message"] != "Your name?" {
		t.Fatalf("status while asking = %d %v", code, st)
	}
	e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}})
	s.all()
	waitFor(t, "the run to end", func() bool { return e.s.runs.get(id) == nil })
	if code, st = status(id, ""); code != 200 || st["state"] != "idle" || st["num_messages"] != float64(6) {
		t.Fatalf("status after the run = %d %v", code, st)
	}
}

// TestShutdownEndsDetachedRuns: shutdown cancels a detached run waiting for a
// confirmation (its stream ends with stream_stopped) and ends event viewers.
func TestShutdownEndsDetachedRuns(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo x")}})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(fakeAgentYAML(f.URL, shellThinkYAML)), 0o644)
	os.WriteFile(filepath.Join(dir, "keys.env"), []byte("OPENAI_API_KEY=k\n"), 0o600)
	addr, stop := startServe(t, "a.yaml", "--working-dir", dir, "--env-from-file", "keys.env", "-l", "127.0.0.1:0")
	e := &apiTest{t: t, srv: &httptest.Server{URL: "http://" + addr}}
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a?detach=true", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	v := e.follow(id, "")
	v.until("tool_call_confirmation")
	code := make(chan int, 1)
	go func() { code <- stop() }()
	s.until("stream_stopped")
	for v.next() != nil {
	}
	if c := <-code; c != 0 {
		t.Fatalf("exit code = %d", c)
	}
}

// BenchmarkEventLogAppend is what logging adds to each streamed event on the run's
// path (the writer stores the batches meanwhile, in the background, as in a run).
func BenchmarkEventLogAppend(b *testing.B) {
	e := newTestEnv(b, nil)
	id := e.newSession(nil)
	l, err := e.s.events.acquire(b.Context(), id, true)
	if err != nil {
		b.Fatal(err)
	}
	defer e.s.events.release(l)
	ev := agentChoiceEvent("a token of text", id, "root")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		l.append(ev)
	}
}

// TestEventsOfBackgroundAgent: a background agent's run, which no client watches,
// is logged in its own sub-session's log.
func TestEventsOfBackgroundAgent(t *testing.T) {
	e, _, _, _, id, _ := bgHeldWorker(t)
	e.s.bg.mu.Lock()
	child := e.s.bg.bySes[id][0].sessionID
	e.s.bg.mu.Unlock()
	v := e.follow(child, "")
	if ev := v.until("agent_choice"); ev["content"] != "thinking" || ev["session_id"] != child {
		t.Fatalf("first delta = %v", ev)
	}
	checkSeqs(t, v.ids, 1)
}

// TestEventsLargeImageByReference: the log stores a user_message's large image as a
// reference to the stored message, not a copy, and replays it after a restart byte
// for byte as streamed; once the message is edited, that event replays as a gap.
func TestEventsLargeImageByReference(t *testing.T) {
	e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"a"}})
	id := e.newSession(map[string]any{"title": "t"})
	img := "data:image/png;base64," + strings.Repeat("QUJD", sharedImageMin/2)
	live := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "see", "multi_content": []map[string]any{
		{"type": "text", "text": "see"}, {"type": "image_url", "image_url": map[string]string{"url": img}}}}})
	live.until("stream_stopped")
	at := slices.IndexFunc(live.raw, func(s string) bool { return strings.Contains(s, `"type":"user_message"`) })
	if at < 0 || !strings.Contains(live.raw[at], img) {
		t.Fatalf("no user_message with the image in %d events", len(live.raw))
	}

	e.restart()
	var stored int
	e.s.st.r.QueryRow("SELECT sum(length(data)) FROM agentd_event_log WHERE session_id = ?", id).Scan(&stored)
	if stored == 0 || stored > sharedImageMin {
		t.Fatalf("the log stores %d bytes for a %d-byte image; want a reference", stored, len(img))
	}
	replay := e.follow(id, "")
	replay.until("stream_stopped")
	replay.close()
	if !slices.Equal(replay.raw, live.raw) {
		t.Fatalf("replay differs from the live stream at user_message: %v", replay.raw[at] == live.raw[at])
	}

	code, b := e.do("PATCH", "/api/sessions/"+id+"/messages/0",
		map[string]any{"message": map[string]any{"message": map[string]any{"role": "user", "content": "edited"}}})
	if code != 200 {
		t.Fatalf("PATCH: %d %s", code, b)
	}
	replay = e.follow(id, "")
	replay.until("stream_stopped")
	replay.close()
	want := slices.Clone(live.raw)
	want[at] = `{"type":"gap"}`
	if !slices.Equal(replay.raw, want) {
		t.Fatalf("replay after the edit: user_message is %.80q; want a gap", replay.raw[at])
	}
}
