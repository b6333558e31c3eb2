package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// serveProcess runs `agentd serve api args...` in a child process (this test binary,
// see TestMain) so the test can kill it with SIGKILL. It returns the process, its
// address and its stderr.
func serveProcess(t *testing.T, env []string, args ...string) (*exec.Cmd, string, *shellBuf) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, "AGENTD_TEST_SERVE="+strings.Join(append([]string{"serve", "api"}, args...), "\n"))...)
	stderr := &shellBuf{limit: 1 << 20}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "Listening on ")
	if err != nil || !ok {
		t.Fatalf("server did not start: %q %v\n%s", line, err, stderr.String())
	}
	go io.Copy(io.Discard, out)
	return cmd, addr, stderr
}

// liveInGroup counts the processes of group pgid that are not zombies (an orphan that
// was killed stays a zombie until init reaps it).
func liveInGroup(pgid int) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	n := 0
	for _, d := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(d))
		if f, err := procStat(pid); err == nil && f[0] != "Z" && f[2] == strconv.Itoa(pgid) {
			n++
		}
	}
	return n
}

func TestStartEndsProcessGroupsLeftByACrash(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc") // recording is Linux-only by design
	}
	dir := t.TempDir()
	f := newFakeOpenAI(t,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "run_background_job", Args: `{"cmd":"echo $$ > pgid.txt; sleep 300"}`}}},
		fakeTurn{Text: []string{"started"}})
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(fakeAgentYAML(f.URL, "    toolsets:\n      - type: shell\n")), 0o644)
	args := []string{filepath.Join(dir, "a.yaml"), "--listen", "127.0.0.1:0", "--working-dir", dir, "-s", filepath.Join(dir, "s.db")}
	env := []string{"OPENAI_API_KEY=test-key"}

	t.Cleanup(func() { // whatever happened, the job does not outlive the test
		b, _ := os.ReadFile(filepath.Join(dir, "pgid.txt"))
		if g, _ := strconv.Atoi(strings.TrimSpace(string(b))); g > 1 {
			syscall.Kill(-g, syscall.SIGKILL)
		}
	})
	first, addr, _ := serveProcess(t, env, args...)
	resp, err := http.Post("http://"+addr+"/api/sessions", "application/json", strings.NewReader(`{"tools_approved":true}`))
	if err != nil {
		t.Fatal(err)
	}
	id := decode[map[string]any](t, mustRead(t, resp))["id"].(string)
	resp, err = http.Post("http://"+addr+"/api/sessions/"+id+"/agent/a", "application/json", strings.NewReader(`[{"role":"user","content":"start it"}]`))
	if err != nil {
		t.Fatal(err)
	}
	if body := string(mustRead(t, resp)); !strings.Contains(body, "Background job started") {
		t.Fatalf("run: %s", body)
	}
	var pgid int
	waitFor(t, "the job to write its group id", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "pgid.txt"))
		pgid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return pgid > 1
	})

	// An unrelated group recorded as if ours, with a tag it does not carry: it must
	// survive the reaping, as would a process that reused a recorded number.
	other := exec.Command("sleep", "300")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Process.Kill(); other.Wait() })

	first.Process.Kill() // kill -9: no shutdown path runs
	first.Wait()
	if liveInGroup(pgid) == 0 {
		t.Fatal("the job died with the server; nothing to test")
	}
	st, err := openStore(context.Background(), filepath.Join(dir, "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	started, _ := procStartTime(other.Process.Pid)
	if _, err := st.w.Exec(`INSERT INTO agentd_process_groups (pgid, started, tag, owner_pid, owner_started, command, recorded_at)
		VALUES (?, ?, 'not-its-tag', 0, 0, 'sleep 300', '')`, other.Process.Pid, started); err != nil {
		t.Fatal(err)
	}
	st.Close()

	_, _, log := serveProcess(t, env, args...)
	waitFor(t, "the crashed server's job group to end", func() bool { return liveInGroup(pgid) == 0 })
	if !strings.Contains(log.String(), "ended a process group") || !strings.Contains(log.String(), "pgid="+strconv.Itoa(pgid)) {
		t.Errorf("the reaping was not logged:\n%s", log.String())
	}
	if liveInGroup(other.Process.Pid) != 1 {
		t.Fatal("an unrelated process group was killed")
	}
}

// mustRead reads and closes a response body.
func mustRead(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestToolProcessGroupsAreForgottenWhenDone(t *testing.T) {
	e, _ := newRunEnv(t, "    toolsets:\n      - type: shell\n",
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "shell", Args: `{"cmd":"echo tag=$AGENTD_PROCESS_GROUP"}`}}},
		fakeTurn{Text: []string{"done"}})
	id := e.newSession(map[string]any{"tools_approved": true})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "go"}})
	resp := s.until("tool_call_response")
	if out, _ := resp["response"].(string); len(out) < len("tag=")+8 {
		t.Fatalf("the command did not carry the group tag: %q", out)
	}
	s.all()
	var n int
	if err := e.s.st.r.QueryRow("SELECT count(*) FROM agentd_process_groups").Scan(&n); err != nil || n != 0 {
		t.Fatalf("recorded groups after the command ended: %d %v", n, err)
	}
}
