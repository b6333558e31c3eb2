package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// shellTestAlive reports whether pid is a live (not zombie) process.
func shellTestAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

// shellTestPID waits for a command to write its child's pid into file and returns it.
func shellTestPID(t *testing.T, file string) int {
	t.Helper()
	for range 1000 {
		b, err := os.ReadFile(file)
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil {
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no pid in %s", file)
	return 0
}

// shellTestDead fails unless pid goes away. Killing is asynchronous, so this polls;
// it asserts an outcome, not a duration.
func shellTestDead(t *testing.T, pid int) {
	t.Helper()
	for range 1000 {
		if !shellTestAlive(pid) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Errorf("process %d is still running", pid)
}

func TestShellTool(t *testing.T) {
	t.Parallel() // the timeout cases each wait a full second
	opts := toolsTestOpts(t, map[string]string{"NAME": "bob"})
	s := toolsBuild(t, &toolsetConfig{Type: "shell", Env: &orderedMap[string]{Keys: []string{"GREETING"}, Values: map[string]string{"GREETING": "hi ${NAME}"}}}, opts)
	env := toolsTestEnv(t)
	fsTestTree(t, env.WorkingDir, map[string]string{"sub/f": ""})
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(env.WorkingDir, "out")); err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(env.WorkingDir)
	tests := []struct {
		name    string
		args    map[string]any
		want    string
		wantErr bool
	}{
		{"echo", map[string]any{"cmd": "echo hello; echo oops >&2"}, "hello\noops", false},
		{"env", map[string]any{"cmd": "echo $GREETING"}, "hi bob", false},
		{"no output", map[string]any{"cmd": "true"}, "<no output>", false},
		{"failure", map[string]any{"cmd": "echo bad; exit 3"}, "Error executing command: exit status 3\nOutput: bad", false},
		{"empty", map[string]any{"cmd": "  "}, "Error: empty command", true},
		{"pwd", map[string]any{"cmd": "pwd -P"}, real, false},
		{"cwd", map[string]any{"cmd": "pwd -P", "cwd": "sub"}, filepath.Join(real, "sub"), false},
		{"cwd abs inside", map[string]any{"cmd": "pwd -P", "cwd": filepath.Join(env.WorkingDir, "sub")}, filepath.Join(real, "sub"), false},
		{"cwd ..", map[string]any{"cmd": "pwd", "cwd": ".."}, `path ".." is outside the working directory`, true},
		{"cwd /", map[string]any{"cmd": "pwd", "cwd": "/"}, `path "/" is outside the working directory`, true},
		{"cwd symlink out", map[string]any{"cmd": "pwd", "cwd": "out"}, `cwd "out" is outside the working directory`, true},
		{"cwd missing", map[string]any{"cmd": "pwd", "cwd": "nope"}, `cwd "nope": no such file or directory`, true},
		{"cwd file", map[string]any{"cmd": "pwd", "cwd": "sub/f"}, `cwd "sub/f" is not a directory`, true},
		{"timeout", map[string]any{"cmd": "echo before; sleep 30", "timeout": 1}, "Command timed out after 1s\nOutput: before", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toolsWant(t, "shell("+tt.name+")", toolsCall(t, s, env, "shell", tt.args), tt.want, tt.wantErr)
		})
	}
	if _, err := newBuiltinToolset(&toolsetConfig{Type: "shell", Env: &orderedMap[string]{Keys: []string{"X"}, Values: map[string]string{"X": "$MISSING"}}}, opts); err == nil || err.Error() != `environment variable "MISSING" not set` {
		t.Errorf("shell env with unset variable: err = %v", err)
	}
}

// TestShellKillsProcessGroup checks that a timeout and a cancelled context kill the
// shell's children too, not just the shell.
func TestShellKillsProcessGroup(t *testing.T) {
	t.Parallel() // the timeout cases each wait a full second
	s := toolsBuild(t, &toolsetConfig{Type: "shell"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)

	r := toolsCall(t, s, env, "shell", map[string]any{"cmd": "sleep 60 & echo $! > timeout.pid; wait", "timeout": 1})
	toolsWantContains(t, "shell(timeout)", r, "Command timed out after 1s", false)
	shellTestDead(t, shellTestPID(t, filepath.Join(env.WorkingDir, "timeout.pid")))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan toolResult)
	go func() {
		done <- toolsCallCtx(t, ctx, s, env, "shell", map[string]any{"cmd": "sleep 60 & echo $! > cancel.pid; wait"})
	}()
	pid := shellTestPID(t, filepath.Join(env.WorkingDir, "cancel.pid"))
	cancel()
	toolsWantContains(t, "shell(cancelled)", <-done, "command cancelled", true)
	shellTestDead(t, pid)
}

func TestShellOutputCap(t *testing.T) {
	t.Parallel() // the timeout cases each wait a full second
	s := toolsBuild(t, &toolsetConfig{Type: "shell"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	r := toolsCall(t, s, env, "shell", map[string]any{"cmd": "head -c 500000 /dev/zero | tr '\\0' a"})
	if want := strings.Repeat("a", toolsMaxOutput) + toolsTruncNote; r.Output != strings.TrimSpace(want) {
		t.Errorf("shell(500000 chars) = %d chars ending %q; want %d", len(r.Output), r.Output[max(0, len(r.Output)-60):], len(want))
	}
}

func TestShellBackgroundJobs(t *testing.T) {
	t.Parallel() // the timeout cases each wait a full second
	opts := toolsTestOpts(t, nil)
	s, err := newBuiltinToolset(&toolsetConfig{Type: "shell"}, opts)
	if err != nil {
		t.Fatal(err)
	}
	env := toolsTestEnv(t)
	toolsWant(t, "list_background_jobs(none)", toolsCall(t, s, env, "list_background_jobs", "{}"), "No background jobs", false)

	start := func(cmd string) string {
		t.Helper()
		r := toolsCall(t, s, env, "run_background_job", map[string]any{"cmd": cmd})
		id, rest, _ := strings.Cut(strings.TrimPrefix(r.Output, "Background job started with ID: "), "\n")
		if r.IsError || !strings.HasPrefix(id, "job_") || rest != "Command: "+cmd+"\nWorking directory: "+env.WorkingDir {
			t.Fatalf("run_background_job = %+v", r)
		}
		return id
	}
	id1 := start("sleep 60 & echo $! > job1.pid; echo started; wait")
	id2 := start("sleep 60 & echo $! > job2.pid; wait")
	id3 := start("echo quick")
	pid1 := shellTestPID(t, filepath.Join(env.WorkingDir, "job1.pid"))
	pid2 := shellTestPID(t, filepath.Join(env.WorkingDir, "job2.pid"))

	var view toolResult
	for range 1000 {
		if view = toolsCall(t, s, env, "view_background_job", map[string]string{"job_id": id3}); strings.Contains(view.Output, "Status: completed") {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	toolsWantContains(t, "view_background_job(quick)", view, "Status: completed\nOutput:\nquick", false)
	toolsWantContains(t, "list_background_jobs", toolsCall(t, s, env, "list_background_jobs", "{}"), "ID: "+id1+"\nCommand: sleep 60", false)
	other := &toolEnv{SessionID: "s2", WorkingDir: env.WorkingDir}
	toolsWant(t, "list_background_jobs(other session)", toolsCall(t, s, other, "list_background_jobs", "{}"), "No background jobs", false)
	toolsWantContains(t, "stop_background_job(other session)", toolsCall(t, s, other, "stop_background_job", map[string]string{"job_id": id1}), "not found", true)
	toolsWantContains(t, "view_background_job(unknown)", toolsCall(t, s, env, "view_background_job", map[string]string{"job_id": "job_x"}), "job job_x not found", true)

	toolsWant(t, "stop_background_job", toolsCall(t, s, env, "stop_background_job", map[string]string{"job_id": id1}), "Background job "+id1+" stopped", false)
	shellTestDead(t, pid1)
	toolsWantContains(t, "view_background_job(stopped)", toolsCall(t, s, env, "view_background_job", map[string]string{"job_id": id1}), "Status: stopped\nOutput:\nstarted", false)
	toolsWantContains(t, "stop_background_job(again)", toolsCall(t, s, env, "stop_background_job", map[string]string{"job_id": id1}), "is not running", true)
	toolsWantContains(t, "run_background_job(cwd ..)", toolsCall(t, s, env, "run_background_job", map[string]any{"cmd": "true", "cwd": ".."}), "outside the working directory", true)

	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	shellTestDead(t, pid2)
	toolsWantContains(t, "view_background_job(closed)", toolsCall(t, s, env, "view_background_job", map[string]string{"job_id": id2}), "Status: stopped", false)
}

func TestScriptTools(t *testing.T) {
	t.Parallel() // the timeout cases each wait a full second
	opts := toolsTestOpts(t, map[string]string{"TOWN": "Paris"})
	cfg := func(entries ...any) *toolsetConfig {
		m := &orderedMap[*scriptToolConfig]{Values: map[string]*scriptToolConfig{}}
		for i := 0; i < len(entries); i += 2 {
			m.Keys = append(m.Keys, entries[i].(string))
			m.Values[entries[i].(string)] = entries[i+1].(*scriptToolConfig)
		}
		return &toolsetConfig{Type: "script", Shell: m}
	}
	args := func(kv ...string) *orderedMap[json.RawMessage] {
		m := &orderedMap[json.RawMessage]{Values: map[string]json.RawMessage{}}
		for i := 0; i < len(kv); i += 2 {
			m.Keys = append(m.Keys, kv[i])
			m.Values[kv[i]] = json.RawMessage(kv[i+1])
		}
		return m
	}
	ts := cfg(
		"greet", &scriptToolConfig{
			Cmd: `echo "hello $username from $CITY, count=${count}"`, Description: "Greet someone",
			Args:     args("username", `{"type":"string","description":"who"}`, "count", `{"description":"how many"}`),
			Required: []string{"username"},
			Env:      &orderedMap[string]{Keys: []string{"CITY"}, Values: map[string]string{"CITY": "$TOWN"}},
		},
		"fail", &scriptToolConfig{Cmd: "echo bad; exit 2"},
		"where", &scriptToolConfig{Cmd: "pwd -P", WorkingDir: "sub"},
	)
	s := toolsBuild(t, ts, opts)
	env := toolsTestEnv(t)
	fsTestTree(t, env.WorkingDir, map[string]string{"sub/": ""})

	list, _ := s.tools(context.Background())
	if len(list) != 3 || list[0].def.Name != "greet" || list[1].def.Name != "fail" {
		t.Fatalf("script tools = %v", list)
	}
	if got, want := string(list[0].def.Parameters), `{"properties":{"count":{"description":"how many","type":"string"},"username":{"description":"who","type":"string"}},"required":["username"],"type":"object"}`; got != want {
		t.Errorf("greet parameters = %s; want %s", got, want)
	}
	if got, want := string(list[1].def.Parameters), `{"properties":{},"type":"object"}`; got != want {
		t.Errorf("fail parameters = %s; want %s", got, want)
	}
	if list[0].def.Description != "Greet someone" || list[1].def.Description != "Execute shell command: echo bad; exit 2" || list[0].def.Annotations.ReadOnlyHint {
		t.Errorf("script definitions = %+v, %+v", list[0].def, list[1].def)
	}

	toolsWant(t, "greet", toolsCall(t, s, env, "greet", map[string]any{"username": "ada", "count": 3}), "hello ada from Paris, count=3\n", false)
	toolsWant(t, "greet(injection)", toolsCall(t, s, env, "greet", map[string]any{"username": `"; echo pwned; "$(id)`}), "hello \"; echo pwned; \"$(id) from Paris, count=\n", false)
	toolsWant(t, "greet(missing)", toolsCall(t, s, env, "greet", map[string]any{}), "missing required argument: username", true)
	toolsWant(t, "fail", toolsCall(t, s, env, "fail", "{}"), "Error executing command 'echo bad; exit 2': exit status 2\nOutput: bad\n", true)
	real, _ := filepath.EvalSymlinks(filepath.Join(env.WorkingDir, "sub"))
	toolsWant(t, "where", toolsCall(t, s, env, "where", "{}"), real+"\n", false)

	loadErrs := []struct {
		name string
		ts   *toolsetConfig
		want string
	}{
		{"undefined", cfg("x", &scriptToolConfig{Cmd: "echo $a ${b} $CITY", Args: args("a", `{}`)}), "tool 'x' uses undefined args: [b CITY]"},
		{"required", cfg("x", &scriptToolConfig{Cmd: "echo", Required: []string{"q"}}), "tool 'x' has required args that are not declared: [q]"},
		{"no cmd", cfg("x", &scriptToolConfig{}), "tool 'x' has no cmd"},
		{"empty", &toolsetConfig{Type: "script"}, "script toolset has no shell commands"},
		{"env", cfg("x", &scriptToolConfig{Cmd: "echo", Env: &orderedMap[string]{Keys: []string{"A"}, Values: map[string]string{"A": "$NOPE"}}}), `environment variable "NOPE" not set`},
	}
	for _, tt := range loadErrs {
		if _, err := newBuiltinToolset(tt.ts, opts); err == nil || err.Error() != tt.want {
			t.Errorf("script %s: err = %v; want %q", tt.name, err, tt.want)
		}
	}
}
