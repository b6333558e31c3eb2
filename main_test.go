package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseServeFlags(t *testing.T) {
	cases := []struct {
		args    []string
		wantErr string
		check   func(*serveOptions) bool
	}{
		{args: []string{"a.yaml"}, check: func(o *serveOptions) bool {
			return o.source == "a.yaml" && o.listen == "127.0.0.1:8080" && o.sessionDB == ""
		}},
		{args: []string{"--listen", ":9", "a.yaml", "-s", "x.db", "--debug"}, check: func(o *serveOptions) bool {
			return o.source == "a.yaml" && o.listen == ":9" && o.sessionDB == "x.db" && o.debug
		}},
		{args: []string{"a.yaml", "-l=[::1]:0", "--env-from-file", "e1", "--env-from-file=e2"}, check: func(o *serveOptions) bool {
			return o.listen == "[::1]:0" && len(o.envFiles) == 2
		}},
		{args: []string{"ref/x", "--pull-interval", "10"}, check: func(o *serveOptions) bool { return o.pullInterval == 10*time.Minute }},
		{args: []string{"ref/x", "--pull-interval", "30s"}, check: func(o *serveOptions) bool { return o.pullInterval == 30*time.Second }},
		{args: []string{}, wantErr: "missing SOURCE"},
		{args: []string{"a.yaml", "b.yaml"}, wantErr: "exactly one SOURCE"},
		{args: []string{"a.yaml", "--bogus"}, wantErr: "flag provided but not defined"},
		{args: []string{"a.yaml", "--listen"}, wantErr: "flag needs an argument"},
		{args: []string{"a.yaml", "--pull-interval", "soon"}, wantErr: "--pull-interval"},
		{args: []string{"a.yaml", "--pull-interval", "-3"}, wantErr: "must not be negative"},
		{args: []string{"a.yaml", "--pull-interval", "05"}, wantErr: "neither minutes nor a duration"},
		{args: []string{"a.yaml", "--fake", "c", "--record", "d"}, wantErr: "cannot be used together"},
		{args: []string{"a.yaml"}, check: func(o *serveOptions) bool { return o.maxRuns >= 4096 && o.historyCacheMB == 64 }},
		{args: []string{"a.yaml", "--history-cache-mb", "0"}, check: func(o *serveOptions) bool { return o.historyCacheMB == 0 }},
		{args: []string{"a.yaml"}, check: func(o *serveOptions) bool { return o.eventRetention == defaultEventRetention }},
		{args: []string{"a.yaml", "--event-log-retention", "0"}, check: func(o *serveOptions) bool { return o.eventRetention == 0 }},
		{args: []string{"a.yaml", "--history-cache-mb", "-1"}, wantErr: "--history-cache-mb"},
		{args: []string{"a.yaml", "--event-log-retention", "-1"}, wantErr: "--event-log-retention"},
		{args: []string{"a.yaml"}, check: func(o *serveOptions) bool { return o.maxRequestSize == maxRunBody }},
		{args: []string{"a.yaml", "--max-request-size", "1048576"}, check: func(o *serveOptions) bool { return o.maxRequestSize == 1<<20 }},
	}
	for _, tc := range cases {
		o, err := parseServeFlags(tc.args, io.Discard)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseServeFlags(%q) err = %v; want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !tc.check(o) {
			t.Errorf("parseServeFlags(%q) = %+v, %v", tc.args, o, err)
		}
	}
}

func TestRunUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"serve"}, {"serve", "api"}, {"serve", "api", "x.yaml", "--nope"}, {"frobnicate"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d; want 2 (stderr %q)", args, code, errb.String())
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, io.Discard); code != 0 || !strings.Contains(out.String(), version) {
		t.Errorf("version = %d %q", code, out.String())
	}
}

// startServe runs `agentd serve api` in-process and returns its address once it
// prints "Listening on". The user's config dir (the default session database's home)
// is a temporary one, so no test touches the real one.
func startServe(t *testing.T, args ...string) (addr string, cancel func() int) {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, "config"))
	ctx, stop := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "api"}, args...), pw, testWriter{t})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		stop()
		t.Fatalf("server did not start: %v (exit %d)", err, <-done)
	}
	go io.Copy(io.Discard, pr)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "Listening on ")
	if !ok {
		t.Fatalf("first line = %q", line)
	}
	return addr, func() int { stop(); return <-done }
}

func TestServeAndGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pirate.yaml"), []byte(pirateYAML), 0o644)
	addr, stop := startServe(t, filepath.Join(dir, "pirate.yaml"), "--listen", "127.0.0.1:0", "--working-dir", dir, "-s", "db/s.db")
	resp, err := http.Get("http://" + addr + "/api/agents")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"name":"pirate"`) {
		t.Fatalf("agents = %s", b)
	}
	if code := stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM-equivalent = %d; want 0", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "db", "s.db")); err != nil {
		t.Fatalf("session db not created relative to --working-dir: %v", err)
	}
}

func TestServeUnixSocket(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(pirateYAML), 0o644)
	sock := filepath.Join(dir, "agentd.sock")
	addr, stop := startServe(t, "--working-dir", dir, "-l", "unix://"+sock, "a.yaml")
	if addr != "unix://"+sock {
		t.Fatalf("addr = %q", addr)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode = %v, %v; want 0600", fi.Mode(), err)
	}
	c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return net.Dial("unix", sock)
	}}}
	resp, err := c.Get("http://localhost/api/ping")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ping over unix socket: %v", err)
	}
	resp.Body.Close()
	stop()
	// An existing regular file is never removed to make room for the socket.
	victim := filepath.Join(dir, "precious")
	os.WriteFile(victim, []byte("data"), 0o644)
	var errb bytes.Buffer
	code := run(context.Background(), []string{"serve", "api", "a.yaml", "--working-dir", dir, "-l", "unix://" + victim}, io.Discard, &errb)
	if b, _ := os.ReadFile(victim); code == 0 || string(b) != "data" {
		t.Fatalf("exit %d, file now %q; stderr %s", code, b, errb.String())
	}
}

func TestServeRefusesOpenListenWithoutAuth(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(pirateYAML), 0o644)
	var errb bytes.Buffer
	code := run(context.Background(), []string{"serve", "api", "a.yaml", "--working-dir", dir, "-l", "0.0.0.0:0"}, io.Discard, &errb)
	if code != 1 || !strings.Contains(errb.String(), "without authentication") {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
}

func TestEnvFromFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "one.env"), []byte("# comment\nA=1\nexport B=\"two\"\nC='x=y'\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "two.env"), []byte("A=override\n"), 0o644)
	get, err := loadEnv(dir, []string{"one.env", "two.env"})
	if err != nil {
		t.Fatal(err)
	}
	if get("A") != "override" || get("B") != "two" || get("C") != "x=y" {
		t.Fatalf("A=%q B=%q C=%q", get("A"), get("B"), get("C"))
	}
	os.WriteFile(filepath.Join(dir, "bad.env"), []byte("novalue\n"), 0o644)
	if _, err := loadEnv(dir, []string{"bad.env"}); err == nil || !strings.Contains(err.Error(), "bad.env:1") {
		t.Fatalf("bad env file err = %v", err)
	}
}

// TestShutdownEndsOpenStreams: a run waiting for a confirmation ends cleanly when the
// server is told to stop, and run returns 0.
func TestShutdownEndsOpenStreams(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{ToolCalls: []fakeToolCall{shellCall("call_1", "echo x")}})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(fakeAgentYAML(f.URL, shellThinkYAML)), 0o644)
	os.WriteFile(filepath.Join(dir, "keys.env"), []byte("OPENAI_API_KEY=k\n"), 0o600)
	addr, stop := startServe(t, "a.yaml", "--working-dir", dir, "--env-from-file", "keys.env", "-l", "127.0.0.1:0")
	resp, err := http.Post("http://"+addr+"/api/sessions", "application/json", strings.NewReader(`{"title":"t"}`))
	if err != nil {
		t.Fatal(err)
	}
	var sess struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&sess)
	resp.Body.Close()
	resp, err = http.Post("http://"+addr+"/api/sessions/"+sess.ID+"/agent/a", "application/json", strings.NewReader(`[{"content":"go"}]`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.Contains(sc.Text(), "tool_call_confirmation") {
	}
	code := make(chan int, 1)
	go func() { code <- stop() }()
	var last string
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "data: ") {
			last = l
		}
	}
	if !strings.Contains(last, `"type":"stream_stopped"`) {
		t.Fatalf("last event before shutdown = %q; want stream_stopped", last)
	}
	if c := <-code; c != 0 {
		t.Fatalf("exit code = %d", c)
	}
}

// TestDeps keeps the promise to auditors: the standard library plus modernc.org/sqlite.
func TestDeps(t *testing.T) {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var direct []string
	inBlock := false
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "require ("):
			inBlock = true
		case inBlock && line == ")":
			inBlock = false
		case strings.HasPrefix(line, "require "), inBlock && line != "":
			if !strings.Contains(line, "// indirect") {
				direct = append(direct, strings.Fields(strings.TrimPrefix(line, "require "))[0])
			}
		}
	}
	if len(direct) != 1 || direct[0] != "modernc.org/sqlite" {
		t.Fatalf("direct dependencies = %v; want only modernc.org/sqlite", direct)
	}
}

// TestDemo runs the README's demo command and asks the README's question twice (two
// sessions): the agent answers from the shipped cassette with no key and no network.
func TestDemo(t *testing.T) {
	wd, _ := os.Getwd()
	addr, stop := startServe(t, "testdata/demo.yaml", "--fake", "testdata/demo-cassette.yaml",
		"-l", "127.0.0.1:0", "--working-dir", wd, "-s", filepath.Join(t.TempDir(), "s.db"))
	defer stop()
	for range 2 {
		resp, err := http.Post("http://"+addr+"/api/sessions", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		var sess struct{ ID string }
		json.NewDecoder(resp.Body).Decode(&sess)
		resp.Body.Close()
		resp, err = http.Post("http://"+addr+"/api/sessions/"+sess.ID+"/agent/demo", "application/json",
			strings.NewReader(`[{"role":"user","content":"What can you do?"}]`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var answer strings.Builder
		for _, line := range strings.Split(string(b), "\n") {
			var ev struct{ Type, Content, Error string }
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				json.Unmarshal([]byte(data), &ev)
				if ev.Type == "agent_choice" {
					answer.WriteString(ev.Content)
				}
				if ev.Type == "error" {
					t.Fatalf("demo error: %s", ev.Error)
				}
			}
		}
		if !strings.Contains(answer.String(), "I am the agentd demo agent") {
			t.Fatalf("demo answer = %q", answer.String())
		}
	}
}
