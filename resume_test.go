package main

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// markerCall is a shell call that appends a line to marker.txt in the working dir, so
// a test can count how often it ran.
func markerCall(id, line string) fakeToolCall {
	return shellCall(id, "echo "+line+" >> marker.txt")
}

// markerLines is the lines marker.txt in dir holds.
func markerLines(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "marker.txt"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// storedMessages is the session's flat message list as GET /api/sessions/{id} shows it.
func storedMessages(t *testing.T, get func(string) (int, []byte), id string) []flatMessage {
	t.Helper()
	code, b := get("/api/sessions/" + id)
	if code != 200 {
		t.Fatalf("GET session = %d %s", code, b)
	}
	return decode[sessionResponse](t, b).Messages
}

// finalAnswer reports whether the last stored message is the assistant's answer text.
func finalAnswer(msgs []flatMessage, text string) bool {
	if len(msgs) == 0 {
		return false
	}
	m := msgs[len(msgs)-1].Message
	return m.Role == "assistant" && m.Content == text
}

func TestConfirmationAnsweredAfterTheClientWentAwayContinuesTheRun(t *testing.T) {
	e, f := newRunEnv(t, shellThinkYAML,
		fakeTurn{ToolCalls: []fakeToolCall{markerCall("call_1", "one"), markerCall("call_2", "two")}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	s.cancel()
	waitFor(t, "the run to end", func() bool { return e.s.runs.get(id) == nil })
	if got := storedMessages(t, func(p string) (int, []byte) { return e.do("GET", p, nil) }, id); len(got) != 2 {
		t.Fatalf("the cut-off call got a result: %+v", got)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve", "tool_call_id": "call_2"}); code != 409 {
		t.Fatalf("answer about another call = %d %s; want 409", code, b)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve", "tool_call_id": "call_1"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	// The rest of the batch asks again, in the continued run, live.
	waitFor(t, "the second confirmation", func() bool {
		_, b := e.do("GET", "/api/sessions/"+id+"/status", nil)
		st := decode[map[string]any](t, b)
		return st["streaming"] == true && st["state"] == "waiting_for_confirmation"
	})
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("second resume = %d %s", code, b)
	}
	waitFor(t, "the continued run to end", func() bool { return e.s.runs.get(id) == nil })
	msgs := storedMessages(t, func(p string) (int, []byte) { return e.do("GET", p, nil) }, id)
	if !finalAnswer(msgs, "done") || len(msgs) != 5 || msgs[2].Message.ToolCallID != "call_1" || msgs[3].Message.ToolCallID != "call_2" {
		t.Fatalf("stored messages = %+v", msgs)
	}
	if got := markerLines(t, e.root); strings.Join(got, ",") != "one,two" {
		t.Fatalf("marker = %v; want each call once", got)
	}
	if last := lastMessage(t, f, 1); last["role"] != "tool" || last["tool_call_id"] != "call_2" {
		t.Fatalf("the model's next turn ends with %v", last)
	}
}

func TestConfirmationSurvivesAnInProcessRestart(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML, fakeTurn{ToolCalls: []fakeToolCall{markerCall("call_1", "ran")}}, fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	e.restart()
	// status and snapshot show the stored question; the continued run, which has no
	// client, reaches viewers through the event log.
	for _, route := range []string{"status", "snapshot"} {
		code, b := e.do("GET", "/api/sessions/"+id+"/"+route, nil)
		st := decode[map[string]any](t, b)
		pending, _ := st["pending"].(map[string]any)
		if code != 200 || st["state"] != "waiting_for_confirmation" || st["streaming"] != false || pending["type"] != "tool_call_confirmation" ||
			pending["tool_call"].(map[string]any)["id"] != "call_1" {
			t.Fatalf("%s after restart = %d %s", route, code, b)
		}
	}
	_, b := e.do("GET", "/api/sessions/"+id+"/snapshot", nil)
	since := int64(decode[map[string]any](t, b)["last_event_seq"].(float64))
	viewer := e.follow(id, "?since="+strconv.FormatInt(since, 10))
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve-session"}); code != 200 {
		t.Fatalf("resume after restart = %d %s", code, b)
	}
	viewer.until("tool_call")
	viewer.until("tool_call_response")
	viewer.until("stream_stopped")
	checkSeqs(t, viewer.ids, since+1)
	viewer.close()
	if code, _ := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 409 {
		t.Fatalf("a second answer = %d; want 409", code)
	}
	get := func(p string) (int, []byte) { return e.do("GET", p, nil) }
	waitFor(t, "the continued run to answer", func() bool { return finalAnswer(storedMessages(t, get, id), "done") })
	if got := markerLines(t, e.root); len(got) != 1 {
		t.Fatalf("marker = %v; want one line", got)
	}
	_, b = get("/api/sessions/" + id)
	if !decode[sessionResponse](t, b).ToolsApproved {
		t.Fatalf("approve-session was not applied by the continued run: %s", b)
	}
}

// An elicitation is asked by a running tool, which the end of the run cut off: the
// late answer reaches the model as the call's result, and the tool is not run again.
func TestElicitationAnsweredAfterTheClientWentAwayIsNotRunAgain(t *testing.T) {
	ask := fakeToolCall{ID: "call_1", Name: "user_prompt", Args: `{"message":"Your name?","schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}`}
	e, f := newRunEnv(t, "    toolsets:\n      - type: user_prompt\n", fakeTurn{ToolCalls: []fakeToolCall{ask}}, fakeTurn{Text: []string{"thanks"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
	s.until("elicitation_request")
	s.cancel()
	waitFor(t, "the run to end", func() bool { return e.s.runs.get(id) == nil })
	if code, _ := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"age": 3}}); code != 400 {
		t.Fatalf("content against the stored schema = %d; want 400", code)
	}
	if code, _ := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 409 {
		t.Fatalf("resume of an elicitation = %d; want 409", code)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}); code != 200 {
		t.Fatalf("answer = %d %s", code, b)
	}
	get := func(p string) (int, []byte) { return e.do("GET", p, nil) }
	waitFor(t, "the continued run to answer", func() bool { return finalAnswer(storedMessages(t, get, id), "thanks") })
	last := lastMessage(t, f, 1)
	if c, _ := last["content"].(string); last["role"] != "tool" || !strings.Contains(c, "interrupted") || !strings.Contains(c, `"name":"Ada"`) {
		t.Fatalf("the model got %v; want the interrupted call with the answer", last)
	}
}

func TestNewRunAbandonsAStoredQuestion(t *testing.T) {
	e, f := newRunEnv(t, shellThinkYAML, fakeTurn{ToolCalls: []fakeToolCall{markerCall("call_1", "ran")}}, fakeTurn{Text: []string{"fresh"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	s.cancel()
	waitFor(t, "the run to end", func() bool { return e.s.runs.get(id) == nil })
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "never mind"}}).all()
	if code, _ := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 409 {
		t.Fatalf("resume of an abandoned question = %d; want 409", code)
	}
	if markerLines(t, e.root) != nil {
		t.Fatal("the abandoned call ran")
	}
	msgs := f.requests()[1]["messages"].([]any)
	if m := msgs[len(msgs)-2].(map[string]any); m["role"] != "tool" || !strings.Contains(m["content"].(string), "canceled") {
		t.Fatalf("the model saw the abandoned call as %v", m)
	}
}

func TestMaxIterationsQuestionSurvivesARestart(t *testing.T) {
	think := fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "think", Args: `{"thought":"hmm"}`}}}
	e, f := newRunEnv(t, "    max_iterations: 1\n    toolsets:\n      - type: think\n", think, fakeTurn{Text: []string{"went on"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("max_iterations_reached")
	e.restart()
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	get := func(p string) (int, []byte) { return e.do("GET", p, nil) }
	waitFor(t, "the continued run to answer", func() bool { return finalAnswer(storedMessages(t, get, id), "went on") })
	if n := len(f.requests()); n != 2 {
		t.Fatalf("model requests = %d; want 2", n)
	}
}

// procServer is `agentd serve api` as a separate process (the test binary in serve
// mode) on a database and working dir that outlive it.
type procServer struct {
	t    *testing.T
	dir  string
	args []string
	cmd  *exec.Cmd
	addr string
}

func newProcServer(t *testing.T, f *fakeOpenAI) *procServer {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(fakeAgentYAML(f.URL, shellThinkYAML)), 0o644); err != nil {
		t.Fatal(err)
	}
	p := &procServer{t: t, dir: dir, args: []string{filepath.Join(dir, "a.yaml"), "--listen", "127.0.0.1:0", "--working-dir", dir, "-s", filepath.Join(dir, "s.db")}}
	p.start()
	return p
}

func (p *procServer) start() {
	p.cmd, p.addr, _ = serveProcess(p.t, []string{"OPENAI_API_KEY=test-key"}, p.args...)
}

func (p *procServer) do(method, path, body string) (int, []byte) {
	p.t.Helper()
	req, _ := http.NewRequest(method, "http://"+p.addr+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	return resp.StatusCode, mustRead(p.t, resp)
}

// run starts a run and returns its stream.
func (p *procServer) run(id, content string) *sseStream {
	resp, err := http.Post("http://"+p.addr+"/api/sessions/"+id+"/agent/a", "application/json", strings.NewReader(`[{"role":"user","content":"`+content+`"}]`))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { resp.Body.Close() })
	s := &sseStream{t: p.t, resp: resp, sc: bufio.NewScanner(resp.Body)}
	s.sc.Buffer(make([]byte, 1<<20), 16<<20)
	return s
}

// stopWith ends the server process with sig and returns its exit code (-1: killed).
func (p *procServer) stopWith(sig os.Signal) int {
	p.cmd.Process.Signal(sig)
	p.cmd.Wait()
	return p.cmd.ProcessState.ExitCode()
}

// testStopWhileConfirmationPending stops the server with sig while a confirmation
// waits, restarts it on the same database and approves: the run completes in the new
// process and the tool ran exactly once.
func testStopWhileConfirmationPending(t *testing.T, sig os.Signal, wantExit int) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{markerCall("call_1", "ran")}}, fakeTurn{Text: []string{"done"}})
	p := newProcServer(t, f)
	_, b := p.do("POST", "/api/sessions", `{"title":"t"}`)
	id := decode[map[string]any](t, b)["id"].(string)
	p.run(id, "go").until("tool_call_confirmation")
	if code := p.stopWith(sig); code != wantExit {
		t.Fatalf("exit code after %v = %d; want %d", sig, code, wantExit)
	}
	p.start()
	if markerLines(t, p.dir) != nil {
		t.Fatal("the tool ran before it was approved")
	}
	if _, b := p.do("GET", "/api/sessions/"+id+"/status", ""); decode[map[string]any](t, b)["state"] != "waiting_for_confirmation" {
		t.Fatalf("status after restart = %s", b)
	}
	if code, b := p.do("POST", "/api/sessions/"+id+"/resume", `{"confirmation":"approve"}`); code != 200 {
		t.Fatalf("resume after restart = %d %s", code, b)
	}
	get := func(path string) (int, []byte) { return p.do("GET", path, "") }
	waitFor(t, "the continued run to answer", func() bool { return finalAnswer(storedMessages(t, get, id), "done") })
	if code, _ := p.do("POST", "/api/sessions/"+id+"/resume", `{"confirmation":"approve"}`); code != 409 {
		t.Fatalf("a second approval = %d; want 409", code)
	}
	if got := markerLines(t, p.dir); len(got) != 1 {
		t.Fatalf("marker = %v; want the tool to have run exactly once", got)
	}
	if last := lastMessage(t, f, 1); last["role"] != "tool" || last["tool_call_id"] != "call_1" {
		t.Fatalf("the model's next turn ends with %v", last)
	}
}

func TestApprovalAfterSIGKILLRunsTheToolExactlyOnce(t *testing.T) {
	testStopWhileConfirmationPending(t, syscall.SIGKILL, -1)
}

func TestApprovalAfterSIGTERMGracefulShutdownRunsTheToolExactlyOnce(t *testing.T) {
	testStopWhileConfirmationPending(t, syscall.SIGTERM, 0)
}

// A crash between an approved call's start and its stored result: the restart does
// not run it again, and says so in its result.
func TestCrashWhileApprovedToolRunsIsNotRunAgain(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo started >> marker.txt; sleep 20; echo finished >> marker.txt")}},
		fakeTurn{Text: []string{"after"}})
	p := newProcServer(t, f)
	_, b := p.do("POST", "/api/sessions", `{"title":"t"}`)
	id := decode[map[string]any](t, b)["id"].(string)
	p.run(id, "go").until("tool_call_confirmation")
	if code, b := p.do("POST", "/api/sessions/"+id+"/resume", `{"confirmation":"approve"}`); code != 200 {
		t.Fatalf("approve = %d %s", code, b)
	}
	waitFor(t, "the tool to start", func() bool { return len(markerLines(t, p.dir)) == 1 })
	p.stopWith(syscall.SIGKILL)
	p.start()
	get := func(path string) (int, []byte) { return p.do("GET", path, "") }
	msgs := storedMessages(t, get, id)
	if len(msgs) != 3 || msgs[2].Message.ToolCallID != "call_1" || !strings.Contains(msgs[2].Message.Content, "not run again") {
		t.Fatalf("after the crash: %+v", msgs)
	}
	if code, _ := p.do("POST", "/api/sessions/"+id+"/resume", `{"confirmation":"approve"}`); code != 409 {
		t.Fatalf("approving the interrupted call again = %d; want 409", code)
	}
	p.run(id, "and now?").all()
	if got := markerLines(t, p.dir); strings.Join(got, ",") != "started" {
		t.Fatalf("marker = %v; the interrupted call ran again or finished", got)
	}
}

func TestCancelDropsAQuestionItsRunLeftWaiting(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML, fakeTurn{ToolCalls: []fakeToolCall{markerCall("call_1", "ran")}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	s.cancel()
	waitFor(t, "the run to end", func() bool { return e.s.runs.get(id) == nil })
	if code, b := e.do("POST", "/api/sessions/"+id+"/cancel", nil); code != 200 {
		t.Fatalf("cancel = %d %s", code, b)
	}
	if _, b := e.do("GET", "/api/sessions/"+id+"/status", nil); decode[map[string]any](t, b)["state"] != "idle" {
		t.Fatalf("status after cancel = %s", b)
	}
	if code, _ := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 409 {
		t.Fatalf("resume after cancel = %d; want 409", code)
	}
	if code, _ := e.do("POST", "/api/sessions/"+id+"/cancel", nil); code != 409 {
		t.Fatalf("second cancel = %d; want 409", code)
	}
}

// A detached run (no client needed) waiting for a confirmation when the server shuts
// down stays resumable after the restart.
func TestDetachedRunWaitingAtShutdownIsResumable(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML, fakeTurn{ToolCalls: []fakeToolCall{markerCall("call_1", "ran")}}, fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a?detach=true", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	s.cancel() // a detached run does not mind
	if _, b := e.do("GET", "/api/sessions/"+id+"/status", nil); decode[map[string]any](t, b)["streaming"] != true {
		t.Fatalf("detached run after its client left: %s", b)
	}
	e.restart()
	if _, b := e.do("GET", "/api/sessions/"+id+"/status", nil); decode[map[string]any](t, b)["state"] != "waiting_for_confirmation" {
		t.Fatalf("status after restart = %s", b)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	get := func(p string) (int, []byte) { return e.do("GET", p, nil) }
	waitFor(t, "the continued run to answer", func() bool { return finalAnswer(storedMessages(t, get, id), "done") })
	if got := markerLines(t, e.root); len(got) != 1 {
		t.Fatalf("marker = %v; want one line", got)
	}
}
