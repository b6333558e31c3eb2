package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAuthToken(t *testing.T) {
	e := newTestEnv(t, map[string]string{"pirate.yaml": pirateYAML}, func(c *serverConfig) { c.token = "s3cret-token" })
	id := "00000000-0000-4000-8000-000000000000"
	routes := [][2]string{
		{"GET", "/api/agents"}, {"GET", "/api/agents/pirate"}, {"GET", "/api/agents/pirate/root/tools/count"},
		{"GET", "/api/sessions"}, {"POST", "/api/sessions"}, {"GET", "/api/sessions/" + id},
		{"DELETE", "/api/sessions/" + id}, {"PATCH", "/api/sessions/" + id + "/title"},
		{"PATCH", "/api/sessions/" + id + "/permissions"}, {"POST", "/api/sessions/" + id + "/resume"},
		{"POST", "/api/sessions/" + id + "/tools/toggle"}, {"POST", "/api/sessions/" + id + "/thinking/toggle"},
		{"POST", "/api/sessions/" + id + "/elicitation"}, {"POST", "/api/sessions/" + id + "/agent/pirate"},
		{"POST", "/api/sessions/" + id + "/agent/pirate/root"},
	}
	for _, auth := range []string{"", "Bearer wrong", "s3cret-token", "Basic s3cret-token"} {
		for _, r := range routes {
			req, _ := http.NewRequest(r[0], e.srv.URL+r[1], nil)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Errorf("%s %s with %q = %d; want 401", r[0], r[1], auth, resp.StatusCode)
			}
		}
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/agents", nil)
	req.Header.Set("Authorization", "Bearer s3cret-token")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("right token: %v %v", resp, err)
	}
	if code, _ := e.do("GET", "/api/ping", nil); code != 200 {
		t.Fatalf("ping must stay open, got %d", code)
	}
}

func TestBrowserAttacksRefused(t *testing.T) {
	e := newTestEnv(t, nil, func(c *serverConfig) { c.corsOrigins = []string{"https://app.example"} })
	send := func(method, path, host, origin, ctype, body string) *http.Response {
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := send("GET", "/api/sessions", "evil.example:8080", "", "", ""); r.StatusCode != 403 {
		t.Errorf("rebinding Host = %d; want 403", r.StatusCode)
	}
	if r := send("GET", "/api/sessions", "localhost:8080", "", "", ""); r.StatusCode != 200 {
		t.Errorf("localhost Host = %d; want 200", r.StatusCode)
	}
	if r := send("POST", "/api/sessions", "", "https://evil.example", "application/json", "{}"); r.StatusCode != 403 {
		t.Errorf("cross-origin POST = %d; want 403", r.StatusCode)
	}
	if r := send("POST", "/api/sessions", "", "", "text/plain", "{}"); r.StatusCode != 415 {
		t.Errorf("text/plain POST = %d; want 415", r.StatusCode)
	}
	if r := send("POST", "/api/sessions", "", "", "application/x-www-form-urlencoded", "a=b"); r.StatusCode != 415 {
		t.Errorf("form POST = %d; want 415", r.StatusCode)
	}
	r := send("POST", "/api/sessions", "", "https://app.example", "application/json", "{}")
	if r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("allowed origin = %d, ACAO %q", r.StatusCode, r.Header.Get("Access-Control-Allow-Origin"))
	}
	if r := send("GET", "/api/sessions", "", "", "", ""); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS headers sent without an allowed origin")
	}
}

func TestPanicBecomes500(t *testing.T) {
	e := newTestEnv(t, nil)
	e.s.mux.HandleFunc("GET /api/test-panic", func(http.ResponseWriter, *http.Request) { panic("boom") })
	code, b := e.do("GET", "/api/test-panic", nil)
	if code != 500 || !strings.Contains(string(b), "internal error") || strings.Contains(string(b), "boom") {
		t.Fatalf("panic = %d %s", code, b)
	}
	if code, _ := e.do("GET", "/api/ping", nil); code != 200 {
		t.Fatalf("server stopped serving after a panic")
	}
}

func TestSlowHeaderClientCutOff(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(pirateYAML), 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	o, err := parseServeFlags([]string{"a.yaml", "-l", "127.0.0.1:0", "--working-dir", dir, "-s", filepath.Join(t.TempDir(), "s.db")}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.readHeaderTimeout = 200 * time.Millisecond
	go serve(ctx, o, pw, io.Discard)
	buf := make([]byte, 256)
	n, _ := pr.Read(buf)
	go io.Copy(io.Discard, pr)
	addr := strings.TrimSpace(strings.TrimPrefix(string(buf[:n]), "Listening on "))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("GET /api/ping HTTP/1.1\r\nHost: localhost\r\n")) // never finishes the headers
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got bytes.Buffer
	_, err = io.Copy(&got, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("slow client was not cut off")
	}
}

// FuzzRequestDecoders feeds arbitrary bodies to every JSON-decoding route: the server
// must answer with a 4xx/2xx JSON status and never panic or 500.
func FuzzRequestDecoders(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `[{"content":"x","multi_content":[{"type":"file","file":{"path":"../../etc/passwd"}}]}]`,
		`{"permissions":{"deny":["[x"]}}`, `{"confirmation":"approve"}`, `{"action":"accept","content":{"a":1}}`, `{"title":null}`, "\x00", `{"working_dir":"/"}`} {
		f.Add(s)
	}
	dir := f.TempDir()
	st, err := openStore(context.Background(), filepath.Join(dir, "s.db"))
	if err != nil {
		f.Fatal(err)
	}
	defer st.Close()
	srcs, _ := newAgentSources(context.Background(), dir, sourceOptions{root: dir})
	defer srcs.close()
	s, err := newServer(st, srcs, nil, serverConfig{root: dir})
	if err != nil {
		f.Fatal(err)
	}
	defer s.close()
	rec, _ := s.createSession(context.Background(), createSessionRequest{Title: "t"})
	paths := []string{"POST /api/sessions", "PATCH /api/sessions/ID/title", "PATCH /api/sessions/ID/permissions",
		"POST /api/sessions/ID/resume", "POST /api/sessions/ID/elicitation", "POST /api/sessions/ID/agent/none"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, p := range paths {
			method, path, _ := strings.Cut(strings.ReplaceAll(p, "ID", rec.ID), " ")
			req := httptest.NewRequest(method, path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			s.ServeHTTP(w, req)
			if w.Code >= 500 {
				t.Fatalf("%s with %q = %d %s", p, body, w.Code, w.Body.String())
			}
		}
	})
}

func TestMaxRuns(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo x")}})
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, shellThinkYAML)}, func(c *serverConfig) { c.maxRuns = 1 })
	e.setenv("OPENAI_API_KEY", "k")
	first := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+first+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	second := e.newSession(map[string]any{"title": "t"})
	if code, b := e.do("POST", "/api/sessions/"+second+"/agent/a", `[{"content":"x"}]`); code != 429 {
		t.Fatalf("run beyond --max-runs = %d %s; want 429", code, b)
	}
	e.do("POST", "/api/sessions/"+first+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
	waitFor(t, "slot freed", func() bool { return e.s.runs.get(first) == nil })
	if code, _ := e.do("POST", "/api/sessions/"+second+"/agent/a", `[{"content":"x"}]`); code != 200 {
		t.Fatalf("run after the slot was freed = %d", code)
	}
}

// trickle opens a raw connection to e's server and sends a request declaring a body of
// size bytes, then one byte every gap until the server answers or the connection
// fails. It returns the response read from the connection.
func trickle(t *testing.T, e *apiTest, path string, size int, gap time.Duration) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, e.srv.Listener.Addr(), size)
	done := make(chan struct{})
	go func() {
		for i := 0; i < size; i++ {
			select {
			case <-done:
				return
			case <-time.After(gap):
			}
			if _, err := conn.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // the test's own bound, far above the server's
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	close(done)
	if err != nil {
		t.Fatalf("no answer to a trickled body: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// A body sent a byte at a time cannot hold a connection: past the read deadline the
// client gets 408 with a JSON error.
func TestSlowBodyDeadline(t *testing.T) {
	e := newTestEnv(t, nil, func(c *serverConfig) { c.bodyGrace = 300 * time.Millisecond })
	resp, b := trickle(t, e, "/api/sessions", 1000, 50*time.Millisecond)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), `"error":"request body not received within`) {
		t.Fatalf("trickled body = %d %s; want 408 with a JSON error", resp.StatusCode, b)
	}
	// A body that arrives in time is unaffected, and so is the connection's next request.
	if code, b := e.do("POST", "/api/sessions", map[string]any{"title": "t"}); code != 200 {
		t.Fatalf("create session = %d %s", code, b)
	}
}

// A run's stream outlives its body's read deadline: the deadline covers reading the
// body only, never the SSE answer.
func TestRunStreamOutlivesBodyDeadline(t *testing.T) {
	f := newFakeOpenAI(t)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "    toolsets:\n      - type: shell\n")},
		func(c *serverConfig) { c.bodyGrace = 200 * time.Millisecond })
	e.setenv("OPENAI_API_KEY", "k")
	f.turns = []fakeTurn{{ToolCalls: []fakeToolCall{{ID: "c1", Name: "shell", Args: `{"cmd":"echo hi"}`}}}, {Text: []string{"done"}}}
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
	s.until("tool_call_confirmation")
	time.Sleep(500 * time.Millisecond) // past the body deadline while the stream waits
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"}); code != 200 {
		t.Fatalf("resume = %d %s", code, b)
	}
	if ev := s.until("agent_choice"); ev["content"] != "done" {
		t.Fatalf("after resume: %v", ev)
	}
}

// Bodies being read count against a server-wide budget: beyond it a request gets 429
// with Retry-After instead of more memory.
func TestBodyBudget(t *testing.T) {
	e := newTestEnv(t, nil, func(c *serverConfig) { c.bodyBudget = 1000 })
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Declares 600 bytes and sends none: reserves 1200, and being first it is admitted.
	fmt.Fprintf(conn, "POST /api/sessions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 600\r\n\r\n", e.srv.Listener.Addr())
	var code int
	var hdr http.Header
	var b []byte
	waitFor(t, "a second body to be refused", func() bool {
		req, _ := http.NewRequest("POST", e.srv.URL+"/api/sessions", strings.NewReader(`{"title":"t"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ = io.ReadAll(resp.Body)
		code, hdr = resp.StatusCode, resp.Header
		return code == http.StatusTooManyRequests
	})
	if hdr.Get("Retry-After") == "" || !strings.Contains(string(b), `"error":"server busy`) {
		t.Errorf("429 = %v %s; want Retry-After and a JSON error", hdr, b)
	}
}

// Runs in flight count against a memory budget: beyond it a run gets 429 with
// Retry-After before it costs anything, well under --max-runs; the slot comes back
// when the run ends.
func TestRunMemoryBudget(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo x")}})
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, shellThinkYAML)}, func(c *serverConfig) { c.runBudget = runMemoryCost })
	e.setenv("OPENAI_API_KEY", "k")
	first := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+first+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	second := e.newSession(map[string]any{"title": "t"})
	req, _ := http.NewRequest("POST", e.srv.URL+"/api/sessions/"+second+"/agent/a", strings.NewReader(`[{"content":"x"}]`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), `"error":"server busy: too many runs`) {
		t.Fatalf("run beyond the memory budget = %d Retry-After=%q %s; want 429 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), b)
	}
	e.do("POST", "/api/sessions/"+first+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
	waitFor(t, "budget freed", func() bool {
		code, _ := e.do("POST", "/api/sessions/"+second+"/agent/a", `[{"content":"x"}]`)
		return code == 200
	})
}

// The defaults admit at least 4,096 concurrent runs, and the memory budget is sized
// from the memory there is.
func TestRunLimitDefaults(t *testing.T) {
	if defaultMaxRuns < 4096 {
		t.Errorf("defaultMaxRuns = %d; want at least 4096", defaultMaxRuns)
	}
	if mem := systemMemory(); defaultRunMemory != mem/2 || mem < 64<<20 {
		t.Errorf("defaultRunMemory = %d of %d bytes", defaultRunMemory, mem)
	}
}
