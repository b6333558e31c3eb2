package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestCreateSessionShapes(t *testing.T) {
	e := newTestEnv(t, nil)
	for _, body := range []any{nil, "{}", map[string]any{}} {
		code, b := e.do("POST", "/api/sessions", body)
		if code != 200 {
			t.Fatalf("create with %v = %d %s", body, code, b)
		}
		s := string(b)
		for _, want := range []string{`"messages":null`, `"SendUserMessage":true`, `"hide_tool_results":false`, `"max_iterations":0`, `"cost":0`} {
			if !strings.Contains(s, want) {
				t.Errorf("create response %s lacks %s", s, want)
			}
		}
		m := decode[map[string]any](t, b)
		// Like the reference: an empty working_dir is left out (the session still runs in
		// --working-dir), while max_iterations and cost are always there.
		if _, ok := m["working_dir"]; ok {
			t.Errorf("create response %s has working_dir", s)
		}
		// GET answers the reference's SessionResponse, which has no cost or
		// max_iterations; agentd adds them only when set.
		code, b = e.do("GET", "/api/sessions/"+m["id"].(string), nil)
		for _, key := range []string{"working_dir", "cost", "max_iterations"} {
			if _, ok := decode[map[string]any](t, b)[key]; code != 200 || ok {
				t.Errorf("GET session = %d %s; want no %s", code, b, key)
			}
		}
		if id := m["id"].(string); len(id) != 36 || id[14] != '4' {
			t.Errorf("id %q is not a UUID v4", id)
		}
	}
	code, b := e.do("GET", "/api/sessions", nil)
	list := decode[[]map[string]any](t, b)
	if code != 200 || len(list) != 3 || list[0]["num_messages"].(float64) != 0 {
		t.Fatalf("list = %d %s", code, b)
	}
}

func TestCreateSessionFields(t *testing.T) {
	e := newTestEnv(t, nil)
	os.MkdirAll(filepath.Join(e.root, "proj"), 0o755)
	code, b := e.do("POST", "/api/sessions", map[string]any{
		"title": "hello", "tools_approved": true, "max_iterations": 3, "working_dir": "proj", "thinking": true,
		"permissions": map[string]any{"allow": []string{"shell:cmd=ls*"}, "deny": []string{"write_file"}},
	})
	if code != 200 {
		t.Fatalf("create = %d %s", code, b)
	}
	id := decode[map[string]any](t, b)["id"].(string)
	code, b = e.do("GET", "/api/sessions/"+id, nil)
	got := decode[map[string]any](t, b)
	real, _ := filepath.EvalSymlinks(filepath.Join(e.root, "proj"))
	if code != 200 || got["title"] != "hello" || got["tools_approved"] != true || got["thinking"] != true ||
		got["working_dir"] != real || got["max_iterations"].(float64) != 3 {
		t.Fatalf("get = %d %s", code, b)
	}
	if _, ok := got["messages"]; ok {
		t.Errorf("messages should be omitted when empty: %s", b)
	}
	perms := got["permissions"].(map[string]any)
	if perms["allow"].([]any)[0] != "shell:cmd=ls*" || perms["deny"].([]any)[0] != "write_file" {
		t.Errorf("permissions = %v", perms)
	}
}

func TestCreateSessionErrors(t *testing.T) {
	e := newTestEnv(t, nil)
	outside := t.TempDir()
	os.WriteFile(filepath.Join(e.root, "file"), []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(e.root, "escape"))
	cases := []struct {
		name string
		body any
		want int
	}{
		{"malformed json", `{"title":`, 400},
		{"wrong type", `{"tools_approved":"yes"}`, 400},
		{"trailing data", `{} {}`, 400},
		{"missing dir", map[string]any{"working_dir": "nope"}, 400},
		{"file not dir", map[string]any{"working_dir": "file"}, 400},
		{"outside root", map[string]any{"working_dir": outside}, 400},
		{"symlink escape", map[string]any{"working_dir": "escape"}, 400},
		{"dotdot escape", map[string]any{"working_dir": "../"}, 400},
		{"bad pattern", map[string]any{"permissions": map[string]any{"deny": []string{"shell:cmd=[x"}}}, 400},
		{"negative iterations", map[string]any{"max_iterations": -1}, 400},
		{"too large", `{"title":"` + strings.Repeat("x", 2<<20) + `"}`, 413},
		{"unknown safety_policy", map[string]any{"safety_policy": "reckless"}, 400},
		{"empty model override", map[string]any{"agent_model_overrides": map[string]any{"root": ""}}, 400},
		{"model override not a string", map[string]any{"agent_model_overrides": map[string]any{"root": 1}}, 400},
	}
	for _, tc := range cases {
		code, b := e.do("POST", "/api/sessions", tc.body)
		if code != tc.want {
			t.Errorf("%s: %d %s; want %d", tc.name, code, b, tc.want)
			continue
		}
		if m := decode[map[string]string](t, b); m["error"] == "" || m["message"] != m["error"] {
			t.Errorf("%s: error body %s", tc.name, b)
		}
		if strings.Contains(tc.name, "dir") || strings.Contains(tc.name, "escape") || strings.Contains(tc.name, "root") {
			if !strings.Contains(string(b), "invalid working directory: ") {
				t.Errorf("%s: %s; want the reference's invalid working directory: prefix", tc.name, b)
			}
		}
	}
	if code, b := e.do("GET", "/api/sessions", nil); string(b) != "[]\n" {
		t.Fatalf("failed creates must not store anything: %d %s", code, b)
	}
}

func TestSessionMutations(t *testing.T) {
	e := newTestEnv(t, nil)
	id := e.newSession(nil)
	code, b := e.do("PATCH", "/api/sessions/"+id+"/title", map[string]string{"title": "New title"})
	if code != 200 || strings.TrimSpace(string(b)) != `{"id":"`+id+`","title":"New title"}` {
		t.Fatalf("title = %d %s", code, b)
	}
	if code, b := e.do("POST", "/api/sessions/"+id+"/tools/toggle", nil); code != 200 || string(b) != "null\n" {
		t.Fatalf("tools toggle = %d %q", code, b)
	}
	if code, _ := e.do("POST", "/api/sessions/"+id+"/thinking/toggle", nil); code != 200 {
		t.Fatalf("thinking toggle = %d", code)
	}
	code, b = e.do("PATCH", "/api/sessions/"+id+"/permissions", map[string]any{"permissions": map[string]any{"ask": []string{"read_*"}}})
	if code != 200 || !strings.Contains(string(b), "session permissions updated") {
		t.Fatalf("permissions = %d %s", code, b)
	}
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	got := decode[map[string]any](t, b)
	if got["title"] != "New title" || got["tools_approved"] != true || got["thinking"] != true {
		t.Fatalf("after mutations: %s", b)
	}
	if got["permissions"].(map[string]any)["ask"].([]any)[0] != "read_*" {
		t.Fatalf("permissions not stored: %s", b)
	}
	// Toggling twice flips back; clearing permissions removes them.
	e.do("POST", "/api/sessions/"+id+"/tools/toggle", nil)
	e.do("PATCH", "/api/sessions/"+id+"/permissions", map[string]any{"permissions": nil})
	_, b = e.do("GET", "/api/sessions/"+id, nil)
	got = decode[map[string]any](t, b)
	if got["tools_approved"] != false || got["permissions"] != nil || got["title"] != "New title" {
		t.Fatalf("after second toggle: %s", b)
	}
	if code, _ := e.do("PATCH", "/api/sessions/"+id+"/permissions", map[string]any{"permissions": map[string]any{"deny": []string{""}}}); code != 400 {
		t.Fatalf("empty deny pattern = %d; want 400", code)
	}
	if code, _ := e.do("PATCH", "/api/sessions/"+id+"/title", map[string]any{"title": 5}); code != 400 {
		t.Fatalf("numeric title = %d; want 400", code)
	}
	code, b = e.do("DELETE", "/api/sessions/"+id, nil)
	if code != 200 || !strings.Contains(string(b), "session deleted") {
		t.Fatalf("delete = %d %s", code, b)
	}
	// Nothing resurrects a deleted session.
	e.do("POST", "/api/sessions/"+id+"/tools/toggle", nil)
	if code, b := e.do("GET", "/api/sessions", nil); string(b) != "[]\n" {
		t.Fatalf("deleted session came back: %d %s", code, b)
	}
}

func TestUnknownSessionIs404Everywhere(t *testing.T) {
	e := newTestEnv(t, map[string]string{"pirate.yaml": pirateYAML})
	id := "00000000-0000-4000-8000-000000000000"
	routes := []struct{ method, path, body string }{
		{"GET", "/api/sessions/" + id, ""},
		{"DELETE", "/api/sessions/" + id, ""},
		{"PATCH", "/api/sessions/" + id + "/title", `{"title":"x"}`},
		{"PATCH", "/api/sessions/" + id + "/permissions", `{"permissions":null}`},
		{"POST", "/api/sessions/" + id + "/resume", `{"confirmation":"approve"}`},
		{"POST", "/api/sessions/" + id + "/tools/toggle", ""},
		{"POST", "/api/sessions/" + id + "/thinking/toggle", ""},
		{"POST", "/api/sessions/" + id + "/elicitation", `{"action":"accept"}`},
		{"PATCH", "/api/sessions/" + id + "/safety-policy", `{"safety_policy":"strict"}`},
		{"PATCH", "/api/sessions/" + id + "/starred", `{"starred":true}`},
		{"PATCH", "/api/sessions/" + id + "/tokens", `{"input_tokens":1,"output_tokens":2}`},
		{"GET", "/api/sessions/" + id + "/recovery", ""},
		{"DELETE", "/api/sessions/" + id + "?wait=true", ""},
		{"POST", "/api/sessions/" + id + "/agent/pirate", `[{"content":"hi"}]`},
		{"POST", "/api/sessions/" + id + "/agent/pirate/root", `[{"content":"hi"}]`},
	}
	for _, r := range routes {
		var body any
		if r.body != "" {
			body = r.body
		}
		code, b := e.do(r.method, r.path, body)
		if code != 404 || !strings.Contains(string(b), "session not found") {
			t.Errorf("%s %s = %d %s; want 404 session not found", r.method, r.path, code, b)
		}
	}
}

func TestSessionsPersistAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "s.db")
	ctx := t.Context()
	st, err := openStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newServer(st, nil, nil, serverConfig{root: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	rec, err := s.createSession(ctx, createSessionRequest{Title: "kept"})
	if err != nil {
		t.Fatal(err)
	}
	st.appendMessage(ctx, rec.ID, "", &chatMessage{Role: "user", Content: "hi"}, false)
	st.Close()
	st2, err := openStore(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	got, err := st2.session(ctx, rec.ID)
	if err != nil || got.Title != "kept" {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	items, _ := st2.items(ctx, rec.ID)
	if len(items) != 1 || items[0].Message.Content != "hi" {
		t.Fatalf("items after reopen: %+v", items)
	}
}

// sessionListGet fetches a list URL and returns the status, body and response headers.
func sessionListGet(t *testing.T, e *apiTest, path string) (int, []byte, http.Header) {
	t.Helper()
	resp, err := http.Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// The paged list keeps the reference's array body (a client that knows no paging still
// reads a valid list) and says where the next page is in Link rel="next" and
// X-Next-Cursor. Pages are newest first and stable: a session created meanwhile does
// not shift the next page.
func TestSessionListPagedKeepsArrayBodyWithLinkNext(t *testing.T) {
	e := newTestEnv(t, nil)
	var ids []string
	for i := range 7 {
		ids = append(ids, e.newSession(map[string]any{"title": fmt.Sprint("s", i)}))
	}
	slices.Reverse(ids) // newest first
	child := &sessionRecord{ID: "child", ParentID: ids[0]}
	if err := e.s.st.createSession(context.Background(), child); err != nil {
		t.Fatal(err)
	}
	var got []string
	path := "/api/sessions?limit=3"
	for page := 0; path != ""; page++ {
		code, b, h := sessionListGet(t, e, path)
		if code != 200 || !strings.HasPrefix(string(b), "[") {
			t.Fatalf("GET %s = %d %s", path, code, b)
		}
		items := decode[[]sessionListItem](t, b)
		for _, it := range items {
			got = append(got, it.ID)
		}
		next := h.Get("X-Next-Cursor")
		link := h.Get("Link")
		if (page < 2) != (next != "") || (next != "" && link != `</api/sessions?limit=3&cursor=`+next+`>; rel="next"`) {
			t.Fatalf("page %d: %d items, X-Next-Cursor %q, Link %q", page, len(items), next, link)
		}
		path = ""
		if link != "" {
			path = strings.TrimSuffix(strings.TrimPrefix(link, "<"), `>; rel="next"`)
		}
		if page == 0 {
			e.newSession(map[string]any{"title": "created between pages"})
		}
	}
	if !slices.Equal(got, ids) {
		t.Fatalf("pages listed %q; want %q", got, ids)
	}
}

// The unpaged list, streamed row by row, is exactly what encoding the whole array
// gives (and [] when there are no sessions); a cursor alone lists the rest.
func TestSessionListStreamedMatchesArray(t *testing.T) {
	e := newTestEnv(t, nil)
	if code, b, h := sessionListGet(t, e, "/api/sessions"); code != 200 || string(b) != "[]\n" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("empty list = %d %q %q", code, b, h.Get("Content-Type"))
	}
	for _, title := range []string{"plain", `<b>&"quoted"</b>`, "ünïcødé\u2028"} {
		e.newSession(map[string]any{"title": title})
	}
	code, b, _ := sessionListGet(t, e, "/api/sessions")
	var want bytes.Buffer
	json.NewEncoder(&want).Encode(decode[[]sessionListItem](t, b))
	if code != 200 || string(b) != want.String() {
		t.Fatalf("streamed list:\n%s\nwant\n%s", b, want.String())
	}
	_, _, h := sessionListGet(t, e, "/api/sessions?limit=1")
	_, rest, _ := sessionListGet(t, e, "/api/sessions?cursor="+h.Get("X-Next-Cursor"))
	if all := decode[[]sessionListItem](t, b); !reflect.DeepEqual(decode[[]sessionListItem](t, rest), all[1:]) {
		t.Fatalf("after the first: %s", rest)
	}
}

func TestSessionListBadPagingIs400(t *testing.T) {
	e := newTestEnv(t, nil)
	e.newSession(nil)
	for _, q := range []string{"limit=0", "limit=-1", "limit=abc", "limit=", "limit=1001", "limit=1.5",
		"cursor=!!!", "cursor=" + base64.RawURLEncoding.EncodeToString([]byte("x/1")), "limit=2&cursor=" + base64.RawURLEncoding.EncodeToString([]byte("NaN/1"))} {
		code, b, _ := sessionListGet(t, e, "/api/sessions?"+q)
		if code != 400 || decode[map[string]string](t, b)["error"] == "" {
			t.Errorf("?%s = %d %s; want 400 with an error", q, code, b)
		}
	}
}
