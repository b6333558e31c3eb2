package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// jsonKeys lists the top-level keys of a JSON object in the order they were sent.
func jsonKeys(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var keys []string
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		dec.Decode(&skip)
	}
	return keys
}

// TestStarredAndTokens: PATCH …/starred and …/tokens (newer clients) land in the
// session as GET and the list show it; bad bodies are 400 JSON errors; tokens are a
// 409 while the session runs (the run's next usage report would replace them).
func TestStarredAndTokens(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML, fakeTurn{ToolCalls: []fakeToolCall{shellCall("c", "echo x")}}, fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t"})
	if code, b := e.do("PATCH", "/api/sessions/"+id+"/starred", map[string]any{"starred": true}); code != 200 || strings.TrimSpace(string(b)) != `{"status":"updated"}` {
		t.Fatalf("star = %d %s", code, b)
	}
	_, b := e.do("GET", "/api/sessions", nil)
	if list := decode[[]map[string]any](t, b); len(list) != 1 || list[0]["starred"] != true {
		t.Fatalf("list after star = %s", b)
	}
	for _, bad := range []any{map[string]any{}, map[string]any{"starred": "yes"}, "[1"} {
		if code, b := e.do("PATCH", "/api/sessions/"+id+"/starred", bad); code != 400 || !strings.Contains(string(b), `"error"`) {
			t.Errorf("star %v = %d %s; want 400", bad, code, b)
		}
	}
	e.do("PATCH", "/api/sessions/"+id+"/starred", map[string]any{"starred": false})
	if _, b := e.do("GET", "/api/sessions", nil); strings.Contains(string(b), "starred") {
		t.Fatalf("unstarred session still starred: %s", b)
	}

	if code, b := e.do("PATCH", "/api/sessions/"+id+"/tokens", map[string]any{"input_tokens": 120, "output_tokens": 30, "cost": 0.25}); code != 200 || !strings.Contains(string(b), "updated") {
		t.Fatalf("tokens = %d %s", code, b)
	}
	e.do("PATCH", "/api/sessions/"+id+"/tokens", map[string]any{"input_tokens": 121, "output_tokens": 31}) // cost kept
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	if s := decode[map[string]any](t, b); s["input_tokens"] != 121.0 || s["output_tokens"] != 31.0 || s["cost"] != 0.25 {
		t.Fatalf("session after tokens = %s", b)
	}
	for _, bad := range []any{map[string]any{"input_tokens": 1}, map[string]any{"input_tokens": -1, "output_tokens": 1},
		map[string]any{"input_tokens": 1, "output_tokens": 1, "cost": -2}, map[string]any{"input_tokens": 1.5, "output_tokens": 1}} {
		if code, b := e.do("PATCH", "/api/sessions/"+id+"/tokens", bad); code != 400 {
			t.Errorf("tokens %v = %d %s; want 400", bad, code, b)
		}
	}
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	if code, b := e.do("PATCH", "/api/sessions/"+id+"/tokens", map[string]any{"input_tokens": 1, "output_tokens": 1}); code != 409 {
		t.Fatalf("tokens while running = %d %s; want 409", code, b)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
}

// TestActiveSessionsList: ?active=true lists the sessions running now, with
// streaming set and no message count; [] when none run. The plain list is unchanged.
func TestActiveSessionsList(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML, fakeTurn{ToolCalls: []fakeToolCall{shellCall("c", "echo x")}}, fakeTurn{Text: []string{"done"}})
	idle := e.newSession(map[string]any{"title": "idle"})
	busy := e.newSession(map[string]any{"title": "busy"})
	if code, b := e.do("GET", "/api/sessions?active=true", nil); code != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("active with nothing running = %d %s", code, b)
	}
	s := e.run("/api/sessions/"+busy+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	code, b := e.do("GET", "/api/sessions?active=true", nil)
	list := decode[[]map[string]any](t, b)
	if code != 200 || len(list) != 1 || list[0]["id"] != busy || list[0]["streaming"] != true || list[0]["num_messages"] != 0.0 || list[0]["title"] != "busy" {
		t.Fatalf("active while running = %d %s", code, b)
	}
	if _, b := e.do("GET", "/api/sessions?active=false", nil); len(decode[[]map[string]any](t, b)) != 2 || strings.Contains(string(b), "streaming") {
		t.Fatalf("active=false must be the plain list: %s (idle %s)", b, idle)
	}
	e.do("POST", "/api/sessions/"+busy+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
	waitFor(t, "the run to unregister", func() bool {
		_, b := e.do("GET", "/api/sessions?active=true", nil)
		return strings.TrimSpace(string(b)) == "[]"
	})
}

// TestDeleteWaitAndTimeout: DELETE without a query stops the run and deletes (old
// clients); ?wait=true answers 200 once the run stopped, 202 when it is still
// stopping at the timeout; a bad timeout is a 400 that deletes nothing.
func TestDeleteWaitAndTimeout(t *testing.T) {
	// The shell command leaves a grandchild in its own session holding the output
	// pipe, so after the kill the tool waits out its 2 s WaitDelay: the run cannot
	// stop within 100 ms.
	slow := shellCall("c", "setsid sh -c 'touch started; sleep 3' & sleep 30")
	e, _ := newRunEnv(t, shellThinkYAML,
		fakeTurn{ToolCalls: []fakeToolCall{slow}}, // cancelled: no second turn
		fakeTurn{ToolCalls: []fakeToolCall{shellCall("c2", "echo x")}}, fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t", "safety_policy": "autonomous"})
	for _, q := range []string{"?timeout=soon", "?wait=true&timeout=-1s", "?timeout=1"} {
		if code, b := e.do("DELETE", "/api/sessions/"+id+q, nil); code != 400 || !strings.Contains(string(b), "invalid timeout") {
			t.Fatalf("DELETE %s = %d %s; want 400 invalid timeout", q, code, b)
		}
	}
	if code, _ := e.do("GET", "/api/sessions/"+id, nil); code != 200 {
		t.Fatalf("a refused DELETE deleted the session")
	}
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call")
	waitFor(t, "the grandchild to start", func() bool {
		_, err := os.Stat(filepath.Join(e.root, "started"))
		return err == nil
	})
	code, b := e.do("DELETE", "/api/sessions/"+id+"?wait=true&timeout=100ms", nil)
	if code != 202 || !strings.Contains(string(b), "session deleted, stop still in progress") {
		t.Fatalf("DELETE while stopping = %d %s; want 202", code, b)
	}
	if code, _ := e.do("GET", "/api/sessions/"+id, nil); code != 404 {
		t.Fatalf("session after 202 = %d; want deleted", code)
	}
	s.all()

	id2 := e.newSession(map[string]any{"title": "t2"})
	s = e.run("/api/sessions/"+id2+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	if code, b := e.do("DELETE", "/api/sessions/"+id2+"?wait=true&timeout=30s", nil); code != 200 || !strings.Contains(string(b), `"session deleted"`) {
		t.Fatalf("DELETE ?wait=true = %d %s; want 200", code, b)
	}
	if ev := s.all(); slices.ContainsFunc(ev, func(e map[string]any) bool { return e["type"] == "tool_call_response" && e["response"] == "x" }) {
		t.Fatalf("the tool ran after the delete")
	}
	if _, b := e.do("GET", "/api/sessions", nil); strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("sessions after deletes = %s", b)
	}
}

// TestRecoveryAndBatch: recovery exports one session (keys sorted as the reference
// sends them); batch export skips unknown ids; batch delete reports what failed;
// empty, malformed and oversized bodies are 400/413 JSON errors.
func TestRecoveryAndBatch(t *testing.T) {
	e, _ := newRunEnv(t, "", fakeTurn{Text: []string{"hello"}})
	a := e.newSession(map[string]any{"title": "a", "permissions": map[string]any{"deny": []string{"shell"}}})
	b := e.newSession(map[string]any{"title": "b"})
	e.run("/api/sessions/"+a+"/agent/a", []map[string]any{{"content": "hi"}}).all()

	code, body := e.do("GET", "/api/sessions/"+a+"/recovery", nil)
	wantKeys := []string{"created_at", "id", "input_tokens", "messages", "output_tokens", "permissions", "title", "tools_approved", "working_dir"}
	if code != 200 || !slices.Equal(jsonKeys(t, body), wantKeys) {
		t.Fatalf("recovery = %d %s; want keys %v", code, body, wantKeys)
	}
	rec := decode[map[string]any](t, body)
	msgs := rec["messages"].([]any)
	if len(msgs) != 2 || rec["permissions"].(map[string]any)["deny"].([]any)[0] != "shell" {
		t.Fatalf("recovery = %s", body)
	}
	if _, body := e.do("GET", "/api/sessions/"+b+"/recovery", nil); !strings.Contains(string(body), `"messages":[]`) || !strings.Contains(string(body), `"permissions":null`) {
		t.Fatalf("recovery of an empty session = %s", body)
	}

	code, body = e.do("POST", "/api/sessions/batch/export", map[string]any{"session_ids": []string{b, "nope", a}, "format": "zip"})
	if code != 200 || !slices.Equal(jsonKeys(t, body), []string{"export_format", "session_count", "sessions", "timestamp"}) {
		t.Fatalf("export = %d %s", code, body)
	}
	exp := decode[map[string]any](t, body)
	sessions := exp["sessions"].([]any)
	if exp["export_format"] != "json" || exp["session_count"] != 2.0 || len(sessions) != 2 ||
		sessions[0].(map[string]any)["id"] != b || len(sessions[1].(map[string]any)["messages"].([]any)) != 2 {
		t.Fatalf("export = %s", body)
	}
	if _, err := time.Parse(time.RFC3339, exp["timestamp"].(string)); err != nil {
		t.Fatalf("timestamp: %v", err)
	}

	for _, path := range []string{"/api/sessions/batch/delete", "/api/sessions/batch/export"} {
		for _, bad := range []struct {
			body any
			code int
			want string
		}{
			{map[string]any{"session_ids": []string{}}, 400, "session_ids cannot be empty"},
			{map[string]any{}, 400, "session_ids cannot be empty"},
			{map[string]any{"session_ids": "a"}, 400, "invalid request body"},
			{`{"session_ids":["` + strings.Repeat("x", 2<<20) + `"]}`, 413, ""},
		} {
			if code, body := e.do("POST", path, bad.body); code != bad.code || !strings.Contains(string(body), bad.want) || !strings.Contains(string(body), `"error"`) {
				t.Errorf("POST %s = %d %.200s; want %d %s", path, code, body, bad.code, bad.want)
			}
		}
	}

	code, body = e.do("POST", "/api/sessions/batch/delete", map[string]any{"session_ids": []string{a, "nope"}})
	if code != 200 || strings.TrimSpace(string(body)) != `{"deleted_count":1,"failed_count":1,"failed_ids":["nope"]}` {
		t.Fatalf("batch delete = %d %s", code, body)
	}
	if code, body := e.do("POST", "/api/sessions/batch/delete", map[string]any{"session_ids": []string{b}}); strings.TrimSpace(string(body)) != `{"deleted_count":1,"failed_count":0}` {
		t.Fatalf("batch delete = %d %s", code, body)
	}
	if _, body := e.do("GET", "/api/sessions", nil); strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("sessions after batch delete = %s", body)
	}
	// GET /api/sessions/batch is a session id, as upstream routes it.
	if code, _ := e.do("GET", "/api/sessions/batch", nil); code != 404 {
		t.Fatalf("GET /api/sessions/batch = %d; want 404 (no such session)", code)
	}
}

// TestHealthAndReadiness: /health and /ready answer without the bearer token;
// /api/ready needs it, waits for the first run, and takes a bounded Go duration.
// /ready is 503 when the session database does not answer.
func TestHealthAndReadiness(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"hi"}})
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")}, func(c *serverConfig) { c.token = "sesame" })
	e.setenv("OPENAI_API_KEY", "test-key")
	if code, b := e.do("GET", "/health", nil); code != 200 || strings.TrimSpace(string(b)) != `{"status":"ok","version":""}` {
		t.Fatalf("/health = %d %s", code, b)
	}
	code, b := e.do("GET", "/ready", nil)
	if r := decode[readyJSON](t, b); code != 200 || !r.Ready || !r.StoreConnected || r.ToolsetHealth != "ok" || r.ActiveSessions != 0 {
		t.Fatalf("/ready = %d %s", code, b)
	}
	if code, _ := e.do("GET", "/api/ready?timeout=10ms", nil); code != 401 {
		t.Fatalf("/api/ready without the token = %d; want 401", code)
	}
	e.token = "sesame"
	for _, q := range []string{"?timeout=soon", "?timeout=-5s"} {
		if code, b := e.do("GET", "/api/ready"+q, nil); code != 400 || !strings.Contains(string(b), "invalid timeout") {
			t.Fatalf("/api/ready%s = %d %s; want 400", q, code, b)
		}
	}
	// A session alone is not ready; a run is.
	id := e.newSession(nil)
	if code, b := e.do("GET", "/api/ready?timeout=20ms", nil); code != 503 || !strings.Contains(string(b), "no sessions registered within timeout") {
		t.Fatalf("/api/ready before any run = %d %s; want 503", code, b)
	}
	waiting := make(chan int)
	go func() {
		req, _ := http.NewRequest("GET", e.srv.URL+"/api/ready?timeout=1m", nil)
		req.Header.Set("Authorization", "Bearer sesame")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			waiting <- 0
			return
		}
		resp.Body.Close()
		waiting <- resp.StatusCode
	}()
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
	if code := <-waiting; code != 200 {
		t.Fatalf("/api/ready waiting across the first run = %d; want 200", code)
	}
	e.token = ""
	e.s.st.Close()
	code, b = e.do("GET", "/ready", nil)
	if r := decode[readyJSON](t, b); code != 503 || r.Ready || r.StoreConnected || r.ToolsetHealth != "unavailable" || r.LatestError != "store disconnected" {
		t.Fatalf("/ready with the database closed = %d %s; want 503", code, b)
	}
}

// TestCreateSessionNewFields: a newer client's create body: the title is trimmed,
// agent_model_overrides pins the agent's model from the first run, and the stored
// choices are echoed in the session document.
func TestCreateSessionNewFields(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"hi"}})
	yaml := fmt.Sprintf("models:\n  fake:\n    provider: openai\n    model: gpt-4o\n    base_url: %s/v1\n  other:\n    provider: openai\n    model: gpt-other\n    base_url: %s/v1\nagents:\n  root:\n    model: fake\n    instruction: Be brief.\n", f.URL, f.URL)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "test-key")
	code, b := e.do("POST", "/api/sessions", map[string]any{"title": "  pinned  ", "safety_policy": "restricted",
		"agent_model_overrides": map[string]string{"root": "other"}, "custom_models_used": []string{"other"},
		"attributes": map[string]string{"origin": "ci", "ticket": "42"}})
	s := decode[map[string]any](t, b)
	if code != 200 || s["title"] != "pinned" || s["safety_policy"] != "restricted" || s["attributes"].(map[string]any)["ticket"] != "42" {
		t.Fatalf("create = %d %s", code, b)
	}
	if code, b := e.do("POST", "/api/sessions", map[string]any{"attributes": map[string]any{"n": 1}}); code != 400 {
		t.Fatalf("non-string attribute = %d %s; want 400", code, b)
	}
	e.restart()
	if _, b := e.do("GET", "/api/sessions/"+s["id"].(string), nil); !strings.Contains(string(b), `"attributes":{"origin":"ci","ticket":"42"}`) {
		t.Fatalf("attributes after restart: %s", b)
	}
	e.run("/api/sessions/"+s["id"].(string)+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "hi"}}}).all()
	reqs := f.requests()
	if len(reqs) != 1 || reqs[0]["model"] != "gpt-other" {
		t.Fatalf("model requests = %v; want one to gpt-other", reqs)
	}
}

// TestOpenAPIDescribesNewerRoutes: the answers of the newer clients' routes (and the
// new keys of the old routes' answers) match web/openapi.json, for every status the
// test can provoke.
func TestOpenAPIDescribesNewerRoutes(t *testing.T) {
	e, _ := newRunEnv(t, shellThinkYAML, fakeTurn{ToolCalls: []fakeToolCall{shellCall("c", "touch x")}}, fakeTurn{Text: []string{"done"}})
	doc := openAPIDoc(t, e)
	id := e.newSession(map[string]any{"title": "t", "safety_policy": "strict", "agent_model_overrides": map[string]string{"root": "fake"}})
	check := func(method, pattern, path string, body any, status int) {
		t.Helper()
		code, b := e.do(method, path, body)
		if code != status {
			t.Fatalf("%s %s = %d %s; want %d", method, path, code, b, status)
		}
		var got any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
		resp := doc["paths"].(map[string]any)[pattern].(map[string]any)[strings.ToLower(method)].(map[string]any)["responses"].(map[string]any)[fmt.Sprint(status)]
		if resp == nil {
			t.Fatalf("%s %s: status %d is not documented", method, pattern, status)
		}
		schema := resolve(doc, resp.(map[string]any))["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
		if err := validate(doc, schema, got, method+" "+pattern); err != nil {
			t.Errorf("%v\n%s", err, b)
		}
	}
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	check("GET", "/api/sessions", "/api/sessions?active=true", nil, 200)
	check("PATCH", "/api/sessions/{id}/tokens", "/api/sessions/"+id+"/tokens", map[string]any{"input_tokens": 1, "output_tokens": 1}, 409)
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "reject"})
	s.all()
	check("GET", "/health", "/health", nil, 200)
	check("GET", "/ready", "/ready", nil, 200)
	check("GET", "/api/ready", "/api/ready?timeout=1s", nil, 200)
	check("GET", "/api/ready", "/api/ready?timeout=x", nil, 400)
	check("POST", "/api/sessions", "/api/sessions", map[string]any{"safety_policy": "balanced", "custom_models_used": []string{"fake"}, "attributes": map[string]string{"k": "v"}}, 200)
	check("PATCH", "/api/sessions/{id}/safety-policy", "/api/sessions/"+id+"/safety-policy", map[string]any{"safety_policy": "autonomous"}, 200)
	check("PATCH", "/api/sessions/{id}/safety-policy", "/api/sessions/"+id+"/safety-policy", map[string]any{"safety_policy": "x"}, 400)
	check("PATCH", "/api/sessions/{id}/starred", "/api/sessions/"+id+"/starred", map[string]any{"starred": true}, 200)
	check("PATCH", "/api/sessions/{id}/tokens", "/api/sessions/"+id+"/tokens", map[string]any{"input_tokens": 3, "output_tokens": 4, "cost": 0.1}, 200)
	check("GET", "/api/sessions", "/api/sessions", nil, 200)
	check("GET", "/api/sessions/{id}", "/api/sessions/"+id, nil, 200)
	check("GET", "/api/sessions/{id}/recovery", "/api/sessions/"+id+"/recovery", nil, 200)
	check("POST", "/api/sessions/batch/export", "/api/sessions/batch/export", map[string]any{"session_ids": []string{id}}, 200)
	check("POST", "/api/sessions/batch/delete", "/api/sessions/batch/delete", map[string]any{"session_ids": []string{}}, 400)
	check("DELETE", "/api/sessions/{id}", "/api/sessions/"+id+"?timeout=x", nil, 400)
	check("POST", "/api/sessions/batch/delete", "/api/sessions/batch/delete", map[string]any{"session_ids": []string{id, "gone"}}, 200)
}
