package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fsShellYAML gives the agent the filesystem and shell tools.
const fsShellYAML = "    toolsets:\n      - type: filesystem\n      - type: shell\n"

// serveCLI starts `agentd serve api` with args (startServe) and returns a client for
// it that sends token, if any, as the bearer token.
func serveCLI(t *testing.T, token string, args ...string) *apiTest {
	t.Helper()
	addr, stop := startServe(t, args...)
	t.Cleanup(func() { stop() })
	return &apiTest{t: t, srv: &httptest.Server{URL: "http://" + addr}, token: token}
}

// jsonArgs marshals tool-call arguments.
func jsonArgs(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSecretFilesRefusedToTools: the session database (here the reference's default
// ./session.db, still used when it exists), its WAL, the --env-from-file file, the
// --auth-token-file and the served agent configs lie inside the working dir, and a
// YOLO session's file tools neither read, list, search, write nor create them, and its
// shell refuses commands naming them. Before, read_file returned them as they were.
func TestSecretFilesRefusedToTools(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"noted"}})
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token.txt")
	fsTestTree(t, dir, map[string]string{
		"agents/a.yaml": fakeAgentYAML(f.URL, fsShellYAML),
		"app.env":       "OPENAI_API_KEY=k\nDB_PASSWORD=hunter2\n",
		"token.txt":     "tok-123\n",
		"notes.txt":     "hunter2 is also a word in the notes\n",
	})
	// Other spellings of the same file: a hard link and a symlink.
	if err := os.Link(filepath.Join(dir, "app.env"), filepath.Join(dir, "copy.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app.env", filepath.Join(dir, "innocent.txt")); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(t.Context(), filepath.Join(dir, "session.db"))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	e := serveCLI(t, "tok-123", "agents", "--working-dir", dir, "--env-from-file", "app.env",
		"--auth-token-file", tokenFile, "-l", "127.0.0.1:0")

	// Another session's conversation goes into the database.
	first := e.newSession(map[string]any{"title": "first"})
	e.run("/api/sessions/"+first+"/agent/a", []map[string]any{{"content": "the launch code is LAUNCH-4711"}}).all()
	if _, err := os.Stat(filepath.Join(dir, "session.db-wal")); err != nil {
		t.Fatalf("the existing ./session.db was not used: %v", err)
	}

	calls := []struct {
		name   string
		args   any
		refuse bool
	}{
		{"read_file", map[string]any{"path": "session.db-wal"}, true},
		{"read_file", map[string]any{"path": "./session.db"}, true},
		{"read_file", map[string]any{"path": "app.env"}, true},
		{"read_file", map[string]any{"path": "agents/a.yaml"}, true},
		{"read_file", map[string]any{"path": tokenFile}, true},
		{"read_multiple_files", map[string]any{"paths": []string{"notes.txt", "session.db-wal", "app.env"}}, false},
		{"search_files_content", map[string]any{"path": ".", "query": "hunter2"}, false},
		{"search_files_content", map[string]any{"path": ".", "query": "tok-123"}, false},
		{"list_directory", map[string]any{"path": "."}, false},
		{"directory_tree", map[string]any{"path": "."}, false},
		{"write_file", map[string]any{"path": "agents/evil.yaml", "content": "agents: {}\n"}, true},
		{"edit_file", map[string]any{"path": "app.env", "edits": []map[string]string{{"oldText": "hunter2", "newText": "x"}}}, true},
		{"create_directory", map[string]any{"paths": []string{"session.db-journal"}}, true},
		{"shell", map[string]any{"cmd": "cat ./app.env"}, true},
		{"shell", map[string]any{"cmd": "echo shell-runs"}, false},
		{"read_file", map[string]any{"path": "copy.txt"}, true},
		{"read_file", map[string]any{"path": "innocent.txt"}, true},
		{"read_file", map[string]any{"path": "agents/../app.env"}, true},
	}
	var tcs []fakeToolCall
	for i, c := range calls {
		tcs = append(tcs, fakeToolCall{ID: fmt.Sprintf("call_%d", i), Name: c.name, Args: jsonArgs(c.args)})
	}
	f.mu.Lock()
	f.turns = append(f.turns, fakeTurn{ToolCalls: tcs}, fakeTurn{Text: []string{"done"}})
	f.mu.Unlock()

	id := e.newSession(map[string]any{"title": "yolo", "tools_approved": true})
	got := toolResponses(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "look around"}}).all())
	if len(got) != len(calls) {
		t.Fatalf("got %d tool responses; want %d: %q", len(got), len(calls), got)
	}
	short := func(s string) string { return s[:min(len(s), 200)] }
	for i, c := range calls {
		r := got[i]
		for _, secret := range []string{"DB_PASSWORD", "tok-123", "LAUNCH-4711", "SQLite format", "base_url", "session.db", "app.env", "token.txt"} {
			if strings.Contains(r, secret) && !strings.Contains(r, "protected") {
				t.Errorf("%s(%s) leaked %q: %q", c.name, jsonArgs(c.args), secret, short(r))
			}
		}
		if c.refuse && !strings.Contains(r, "protected") {
			t.Errorf("%s(%s) = %q; want it refused as protected", c.name, jsonArgs(c.args), short(r))
		}
	}
	if r := got[5]; !strings.Contains(r, "=== notes.txt ===\nhunter2") || strings.Count(r, "is protected") != 2 {
		t.Errorf("read_multiple_files = %q; want notes.txt read and the two secrets refused", short(r))
	}
	if r := got[6]; r != "notes.txt:1:1: hunter2 is also a word in the notes" {
		t.Errorf("search_files_content(hunter2) = %q; want only notes.txt", r)
	}
	if r := got[8]; r != "DIR  agents\nFILE innocent.txt\nFILE notes.txt" {
		t.Errorf("list_directory = %q; want the secret files left out", r)
	}
	if r := got[14]; r != "shell-runs" {
		t.Errorf("shell(echo) = %q; the session is YOLO", r)
	}
	if _, err := os.Stat(filepath.Join(dir, "agents", "evil.yaml")); err == nil {
		t.Errorf("a new agent config was written into the served directory")
	}
	if fi, err := os.Stat(filepath.Join(dir, "session.db-journal")); err == nil && fi.IsDir() {
		t.Errorf("a directory was created in the journal's place")
	}
	fsCheckTree(t, filepath.Join(dir, "agents"), map[string]string{"a.yaml": fakeAgentYAML(f.URL, fsShellYAML)})
}

// TestDefaultSessionDBOutsideWorkingDir: without --session-db, and with no
// ./session.db to keep using, the database goes to the user's config dir, so a
// session's tools cannot reach it at all.
func TestDefaultSessionDBOutsideWorkingDir(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"ok"}})
	dir := t.TempDir()
	fsTestTree(t, dir, map[string]string{"a.yaml": fakeAgentYAML(f.URL, ""), "keys.env": "OPENAI_API_KEY=k\n"})
	e := serveCLI(t, "", "a.yaml", "--working-dir", dir, "--env-from-file", "keys.env", "-l", "127.0.0.1:0")
	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
	if _, err := os.Stat(filepath.Join(dir, "session.db")); err == nil {
		t.Fatalf("a new session database was created inside --working-dir")
	}
	cfg, err := os.UserConfigDir() // startServe pointed it at a temporary directory
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(cfg, "agentd", "session.db")); err != nil {
		t.Fatalf("session database not in the user config dir: %v", err)
	}
	if code, b := e.do("GET", "/api/sessions", nil); code != 200 || !strings.Contains(string(b), id) {
		t.Fatalf("sessions = %d %s", code, b)
	}
}

// TestSessionDBFilesPrivate: the database, its WAL and its shared-memory file are
// 0600, for a new database and for an existing world-readable one (SQLite's own
// default is 0644, and it gives -wal and -shm the database's mode).
func TestSessionDBFilesPrivate(t *testing.T) {
	f := newFakeOpenAI(t)
	dir := t.TempDir()
	fsTestTree(t, dir, map[string]string{"a.yaml": fakeAgentYAML(f.URL, ""), "keys.env": "OPENAI_API_KEY=k\n"})
	old := filepath.Join(dir, "old", "s.db")
	st, err := openStore(t.Context(), old)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	os.Chmod(old, 0o644)
	for _, db := range []string{filepath.Join(dir, "new", "s.db"), old} {
		e := serveCLI(t, "", "a.yaml", "--working-dir", dir, "--env-from-file", "keys.env", "-l", "127.0.0.1:0", "-s", db)
		id := e.newSession(map[string]any{"title": "t"})
		e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "a private conversation"}}).all()
		for _, suffix := range []string{"", "-wal", "-shm"} {
			fi, err := os.Stat(db + suffix)
			if err != nil {
				t.Fatalf("%s%s: %v", db, suffix, err)
			}
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("%s%s mode = %v; want 0600", db, suffix, fi.Mode().Perm())
			}
		}
	}
}

// TestSessionDirSwappedForSymlink: a session's directory replaced by a symlink to
// somewhere else while a run waits for a confirmation does not redirect the run's
// file tools or shell, and the next run is refused with a clear error. Before, the
// working dir was checked only when the session was created.
func TestSessionDirSwappedForSymlink(t *testing.T) {
	outside := t.TempDir()
	fsTestTree(t, outside, map[string]string{"passwd": "root:x:0:0"})
	e, _ := newRunEnv(t, fsShellYAML,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "w", Name: "write_file", Args: `{"path":"x.txt","content":"hello"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "r", Name: "read_file", Args: `{"path":"passwd"}`}, shellCall("s", "cat passwd")}},
		fakeTurn{Text: []string{"done"}})
	proj := filepath.Join(e.root, "proj")
	fsTestTree(t, proj, map[string]string{"keep.txt": "mine"})
	id := e.newSession(map[string]any{"title": "t", "working_dir": "proj", "permissions": map[string]any{"allow": []string{"shell"}}})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	s.until("tool_call_confirmation")
	if err := os.Rename(proj, proj+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, proj); err != nil {
		t.Fatal(err)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"})
	got := toolResponses(s.all())
	if len(got) != 3 {
		t.Fatalf("responses = %q", got)
	}
	for _, r := range got[1:] {
		if strings.Contains(r, "root:x") {
			t.Errorf("a tool read through the swapped directory: %q", r)
		}
	}
	if !strings.Contains(got[2], "moved or replaced") {
		t.Errorf("shell after the swap = %q; want it refused", got[2])
	}
	fsCheckTree(t, outside, map[string]string{"passwd": "root:x:0:0"})
	fsCheckTree(t, proj+".old", map[string]string{"keep.txt": "mine", "x.txt": "hello"})

	code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", `[{"content":"again"}]`)
	if code != 409 || !strings.Contains(string(b), "leads outside the server's working directory") {
		t.Fatalf("run in a swapped directory = %d %s; want 409 naming the problem", code, b)
	}
}

// TestChildProcessEnvironment: shell, script, post_edit and MCP stdio processes get
// the allow-listed variables and what the config names, never the server's auth
// token or other keys of its environment. Before, they inherited everything.
func TestChildProcessEnvironment(t *testing.T) {
	t.Setenv("AGENTD_AUTH_TOKEN", "tok-from-env")
	t.Setenv("PROVIDER_SECRET_KEY", "sk-leaked")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	yaml := fmt.Sprintf(`    toolsets:
      - type: shell
        env:
          GREETING: hello-from-config
      - type: script
        shell:
          showenv:
            cmd: env
      - type: filesystem
        post_edit:
          - path: "*.go"
            cmd: env > post.env
      - type: mcp
        command: %q
        args: ["-test.run=^$"]
        env:
          MCP_TEST_SERVER: "1"
          GORACE: atexit_sleep_ms=0
`, exe)
	e, _ := newRunEnv(t, yaml,
		fakeTurn{ToolCalls: []fakeToolCall{
			shellCall("c1", "env"),
			{ID: "c2", Name: "showenv", Args: `{}`},
			{ID: "c3", Name: "write_file", Args: `{"path":"m.go","content":"package m\n"}`},
			{ID: "c4", Name: "env", Args: `{"text":"AGENTD_AUTH_TOKEN"}`},
			{ID: "c5", Name: "env", Args: `{"text":"PROVIDER_SECRET_KEY"}`},
			{ID: "c6", Name: "env", Args: `{"text":"PATH"}`},
		}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	got := toolResponses(e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all())
	if len(got) != 6 {
		t.Fatalf("responses = %q", got)
	}
	post, err := os.ReadFile(filepath.Join(e.root, "post.env"))
	if err != nil {
		t.Fatalf("post_edit did not run: %v", err)
	}
	envs := map[string]string{"shell": got[0], "script": got[1], "post_edit": string(post)}
	for name, out := range envs {
		// Outputs are not printed: they hold the test machine's environment.
		if strings.Contains(out, "tok-from-env") || strings.Contains(out, "sk-leaked") {
			t.Errorf("%s saw the server's AGENTD_AUTH_TOKEN or PROVIDER_SECRET_KEY", name)
		}
		if !strings.Contains(out, "PATH=") {
			t.Errorf("%s has no PATH", name)
		}
	}
	if !strings.Contains(got[0], "GREETING=hello-from-config") {
		t.Errorf("shell lacks the toolset's env")
	}
	if got[3] != "" || got[4] != "" || got[5] == "" {
		t.Errorf("MCP server env: AGENTD_AUTH_TOKEN=%q PROVIDER_SECRET_KEY=%q, PATH set %v; want only PATH", got[3], got[4], got[5] != "")
	}
}

// TestToolsetEnvCannotNameAuthToken: a toolset cannot hand the API's token to its
// processes by naming it in `env`, as a value or as a key.
func TestToolsetEnvCannotNameAuthToken(t *testing.T) {
	opts := toolsTestOpts(t, map[string]string{"AGENTD_AUTH_TOKEN": "tok", "OTHER": "x"})
	for _, env := range []*orderedMap[string]{
		{Keys: []string{"T"}, Values: map[string]string{"T": "Bearer $AGENTD_AUTH_TOKEN"}},
		{Keys: []string{"AGENTD_AUTH_TOKEN"}, Values: map[string]string{"AGENTD_AUTH_TOKEN": "$OTHER"}},
	} {
		if _, err := newBuiltinToolset(&toolsetConfig{Type: "shell", Env: env}, opts); err == nil || !strings.Contains(err.Error(), "never passed to tools") {
			t.Errorf("shell toolset with env %v: err = %v; want it refused", env.Values, err)
		}
	}
}
