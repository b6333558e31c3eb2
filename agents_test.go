package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

const pirateYAML = `agents:
  root:
    model: openai/gpt-4o
    description: Talk like a pirate
    instruction: Talk like a pirate.
`

const teamYAML = `agents:
  root:
    model: openai/gpt-4o
    description: Multi Agent
    instruction: Delegate.
    sub_agents: [helper]
  helper:
    model: openai/gpt-4o
    description: Helps
    instruction: Help.
`

func TestPingAndUnknownRoutes(t *testing.T) {
	e := newTestEnv(t, nil)
	code, b := e.do("GET", "/api/ping", nil)
	if code != 200 || string(b) != "{\"status\":\"ok\"}\n" {
		t.Fatalf("ping = %d %q", code, b)
	}
	code, b = e.do("GET", "/api/nope", nil)
	if m := decode[map[string]string](t, b); code != 404 || m["error"] == "" || m["message"] == "" {
		t.Fatalf("unknown route = %d %s; want 404 with error and message", code, b)
	}
	code, b = e.do("DELETE", "/api/agents", nil)
	if code != 405 {
		t.Fatalf("wrong method = %d %s; want 405", code, b)
	}
	if m := decode[map[string]string](t, b); m["error"] != "Method Not Allowed" {
		t.Fatalf("405 body = %s", b)
	}
}

func TestAgentsList(t *testing.T) {
	e := newTestEnv(t, map[string]string{
		"pirate.yaml":      pirateYAML,
		"multi_agents.yml": teamYAML,
		"broken.yaml":      "agents:\n  root:\n    bogus: 1\n",
		"notes.txt":        "not an agent",
		"zempty.yaml":      "",
	})
	code, b := e.do("GET", "/api/agents", nil)
	if code != 200 {
		t.Fatalf("GET /api/agents = %d %s", code, b)
	}
	list := decode[[]agentSummary](t, b)
	var names []string
	for _, a := range list {
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "broken,multi_agents,pirate,zempty" {
		t.Fatalf("ids = %v", names)
	}
	if list[2].Description != "Talk like a pirate" || list[2].Multi || list[2].Error != "" {
		t.Errorf("pirate = %+v", list[2])
	}
	if list[1].Description != "Multi Agent" || !list[1].Multi {
		t.Errorf("multi_agents = %+v", list[1])
	}
	if !strings.Contains(list[0].Error, "broken.yaml:3:5") {
		t.Errorf("broken entry error = %q; want a file:line:col position", list[0].Error)
	}
	if list[3].Error == "" {
		t.Errorf("empty file should be reported as an error entry: %+v", list[3])
	}
}

func TestAgentsEmptyDir(t *testing.T) {
	e := newTestEnv(t, nil)
	code, b := e.do("GET", "/api/agents", nil)
	if code != 200 || string(b) != "[]\n" {
		t.Fatalf("empty dir = %d %q; want []", code, b)
	}
}

func TestAgentConfigRoute(t *testing.T) {
	e := newTestEnv(t, map[string]string{
		"pirate.yaml": pirateYAML,
		"secret.yaml": `agents:
  root:
    model: openai/gpt-4o
    toolsets:
      - type: mcp
        remote:
          url: https://mcp.example.com/
          transport_type: streamable
          headers:
            Authorization: Bearer sk-live-123456
`,
	})
	code, b := e.do("GET", "/api/agents/pirate", nil)
	if code != 200 {
		t.Fatalf("GET pirate = %d %s", code, b)
	}
	cfg := decode[map[string]any](t, b)
	agents := cfg["agents"].([]any)
	if agents[0].(map[string]any)["Name"] != "root" {
		t.Errorf("agents[0] = %v; want Name root", agents[0])
	}
	if _, ok := cfg["metadata"]; !ok {
		t.Errorf("metadata missing: %s", b)
	}
	code, b = e.do("GET", "/api/agents/secret", nil)
	if code != 200 || strings.Contains(string(b), "sk-live-123456") || !strings.Contains(string(b), "REDACTED") {
		t.Fatalf("secret config not redacted: %d %s", code, b)
	}
	code, b = e.do("GET", "/api/agents/nope", nil)
	if code != 404 || !strings.Contains(string(b), `"error"`) {
		t.Fatalf("unknown agent = %d %s", code, b)
	}
}

func TestToolCount(t *testing.T) {
	e := newTestEnv(t, map[string]string{"team.yaml": teamYAML + `    toolsets:
      - type: think
`})
	code, b := e.do("GET", "/api/agents/team/helper/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":1}` {
		t.Fatalf("helper tools = %d %s", code, b)
	}
	code, b = e.do("GET", "/api/agents/team/root/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":1}` {
		t.Fatalf("root tools (transfer_task) = %d %s", code, b)
	}
	if code, _ := e.do("GET", "/api/agents/team/ghost/tools/count", nil); code != 404 {
		t.Fatalf("unknown agent name = %d; want 404", code)
	}
}

func TestHotReload(t *testing.T) {
	e := newTestEnv(t, map[string]string{"pirate.yaml": pirateYAML})
	desc := func(id string) (string, string) {
		_, b := e.do("GET", "/api/agents", nil)
		for _, a := range decode[[]agentSummary](t, b) {
			if a.Name == id {
				return a.Description, a.Error
			}
		}
		return "<absent>", ""
	}
	// A valid edit is picked up.
	e.write("pirate.yaml", strings.Replace(pirateYAML, "Talk like a pirate\n", "Arr v2\n", 1))
	waitFor(t, "edited description", func() bool { d, _ := desc("pirate"); return d == "Arr v2" })
	// An invalid edit keeps the last good version serving and reports the error.
	e.write("pirate.yaml", "agents:\n  root:\n    model: [\n")
	waitFor(t, "reload error", func() bool { _, err := desc("pirate"); return err != "" })
	if d, _ := desc("pirate"); d != "Arr v2" {
		t.Fatalf("after invalid edit description = %q; want the last good one", d)
	}
	if code, _ := e.do("GET", "/api/agents/pirate", nil); code != 200 {
		t.Fatalf("last good config no longer served: %d", code)
	}
	// Added and removed files.
	e.write("second.yaml", pirateYAML)
	waitFor(t, "new file", func() bool { d, _ := desc("second"); return d == "Talk like a pirate" })
	os.Remove(filepath.Join(e.dir, "second.yaml"))
	waitFor(t, "removed file", func() bool { d, _ := desc("second"); return d == "<absent>" })
}

func TestSingleFileSourceAndErrors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.01.expert.yaml")
	os.WriteFile(p, []byte(pirateYAML), 0o644)
	a, err := newAgentSources(context.Background(), p, sourceOptions{root: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if l := a.list(); len(l) != 1 || l[0].Name != "config.01.expert" {
		t.Fatalf("list = %+v", l)
	}
	if _, err := newAgentSources(context.Background(), p, sourceOptions{root: dir, pullInterval: 60e9}); err == nil ||
		!strings.Contains(err.Error(), "only be used with OCI references") {
		t.Fatalf("--pull-interval on a file: err = %v", err)
	}
	// A missing .yaml path is accepted and reported, as the reference does.
	m, err := newAgentSources(context.Background(), filepath.Join(dir, "missing.yaml"), sourceOptions{root: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	if l := m.list(); len(l) != 1 || l[0].Error == "" {
		t.Fatalf("missing file list = %+v", l)
	}
}

// TestOCISourceRefresh serves an agent from an in-process registry and picks up a
// re-push within the pull interval; an invalid push keeps the last good version.
func TestOCISourceRefresh(t *testing.T) {
	reg := newOCITestRegistry(t, "")
	v1 := strings.Replace(pirateYAML, "Talk like a pirate", "Version one", 1)
	reg.push("test/agent", "latest", []byte(v1), "2026-01-01T00:00:00Z")
	ref := reg.host + "/test/agent:latest"
	dir := t.TempDir()
	a, err := newAgentSources(context.Background(), ref, sourceOptions{root: dir, cacheDir: filepath.Join(dir, "cache"), pullInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	id := ociRefID(ref)
	desc := func() (string, string) {
		for _, s := range a.list() {
			if s.Name == id {
				return s.Description, s.Error
			}
		}
		return "<absent>", ""
	}
	if d, err := desc(); d != "Version one" || err != "" {
		t.Fatalf("first pull: %q %q (id %s, list %+v)", d, err, id, a.list())
	}
	if !strings.HasSuffix(id, ".yaml") || strings.ContainsAny(id, "/:") {
		t.Fatalf("OCI id %q; want the reference's file-like id", id)
	}
	// A run holding the old team keeps it until it releases it.
	old, err := a.team(id)
	if err != nil {
		t.Fatal(err)
	}
	reg.push("test/agent", "latest", []byte(strings.Replace(v1, "Version one", "Version two", 1)), "2026-01-02T00:00:00Z")
	waitFor(t, "re-pushed version", func() bool { d, _ := desc(); return d == "Version two" })
	if old.file.Agents[0].Description != "Version one" {
		t.Fatalf("running team changed under a run")
	}
	old.release()
	reg.push("test/agent", "latest", []byte("agents:\n  root:\n    bogus: 1\n"), "2026-01-03T00:00:00Z")
	waitFor(t, "invalid push reported", func() bool { _, err := desc(); return err != "" })
	if d, _ := desc(); d != "Version two" {
		t.Fatalf("after an invalid push description = %q; want the last good one", d)
	}
}

// TestRunDocumentedExample follows the documentation verbatim while serving agent.yaml
// (file id `agent`): create with {"agent":"root"}, then run /agent/root. A path segment
// that names no file but an agent of exactly one file runs that agent; file ids keep
// priority, and a name several files define stays unknown.
func TestRunDocumentedExample(t *testing.T) {
	f := newFakeOpenAI(t)
	e := newTestEnv(t, map[string]string{
		"agent.yaml":  teamYAMLFor(f.URL),
		"expert.yaml": fakeAgentYAML(f.URL, ""),
		"other.yaml":  fakeAgentYAML(f.URL, ""),
	})
	e.setenv("OPENAI_API_KEY", "k")
	sid := e.newSession(map[string]any{"agent": "root"})
	started := func(path string) string {
		t.Helper()
		s := e.run(path, []map[string]any{{"content": "hi"}})
		if s.resp.StatusCode != 200 {
			b, _ := io.ReadAll(s.resp.Body)
			t.Fatalf("POST %s = %d %s", path, s.resp.StatusCode, b)
		}
		ev := s.until("stream_started")
		s.all()
		return ev["agent_name"].(string)
	}
	if got := started("/api/sessions/" + sid + "/agent/helper"); got != "helper" {
		t.Errorf("/agent/helper started %q; want agent.yaml's helper", got)
	}
	// expert.yaml is a file id: its root runs, not agent.yaml's expert.
	sid2 := e.newSession(nil)
	if got := started("/api/sessions/" + sid2 + "/agent/expert"); got != "root" {
		t.Errorf("/agent/expert started %q; want the root of expert.yaml", got)
	}
	// root is defined by all three files.
	code, b := e.do("POST", "/api/sessions/"+e.newSession(nil)+"/agent/root", []map[string]any{{"content": "hi"}})
	if code != 404 || !strings.Contains(string(b), "several files") {
		t.Errorf("/agent/root with three roots = %d %s; want 404", code, b)
	}
}

// TestRunDocumentedExampleSingleFile is the documentation's example exactly: one file
// agent.yaml, POST /api/sessions {"agent":"root"}, POST …/agent/root.
func TestRunDocumentedExampleSingleFile(t *testing.T) {
	f := newFakeOpenAI(t, fakeTurn{Text: []string{"hello"}})
	e := newTestEnv(t, map[string]string{"agent.yaml": fakeAgentYAML(f.URL, "")})
	e.setenv("OPENAI_API_KEY", "k")
	sid := e.newSession(map[string]any{"agent": "root"})
	s := e.run("/api/sessions/"+sid+"/agent/root", []map[string]any{{"role": "user", "content": "hi"}})
	if s.resp.StatusCode != 200 {
		b, _ := io.ReadAll(s.resp.Body)
		t.Fatalf("documented example = %d %s", s.resp.StatusCode, b)
	}
	if ev := s.until("agent_choice"); ev["content"] != "hello" || ev["agent_name"] != "root" {
		t.Errorf("answer = %v", ev)
	}
	s.all()
}

// syncBuffer is a log destination safe for the refresher goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOCIPullLogsReloadOnlyOnChange: with --pull-interval, ticks that pull the same
// artifact reload nothing and log nothing, even from a registry whose HEAD digest is
// not the manifest's hash (so every tick looks like a change); a re-push logs one
// "agent reloaded".
func TestOCIPullLogsReloadOnlyOnChange(t *testing.T) {
	reg := newOCITestRegistry(t, "")
	reg.headDigest = "sha256:" + strings.Repeat("0", 64)
	reg.push("test/agent", "latest", []byte(pirateYAML), "2026-01-01T00:00:00Z")
	ref := reg.host + "/test/agent:latest"
	dir := t.TempDir()
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	a, err := newAgentSources(context.Background(), ref, sourceOptions{root: dir, cacheDir: filepath.Join(dir, "cache"), pullInterval: 10 * time.Millisecond, log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	manifestChecks := func() int {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		n := 0
		for _, l := range reg.log {
			if strings.Contains(l, "/manifests/") {
				n++
			}
		}
		return n
	}
	start := manifestChecks()
	waitFor(t, "several unchanged pulls", func() bool { return manifestChecks() >= start+5 })
	if n := strings.Count(logs.String(), "agent reloaded"); n != 0 {
		t.Fatalf("%d \"agent reloaded\" lines with nothing changed:\n%s", n, logs.String())
	}
	reg.push("test/agent", "latest", []byte(strings.Replace(pirateYAML, "Talk like a pirate", "Changed", 1)), "2026-01-02T00:00:00Z")
	waitFor(t, "the re-push", func() bool { return strings.Contains(logs.String(), "agent reloaded") })
	start = manifestChecks()
	waitFor(t, "more unchanged pulls", func() bool { return manifestChecks() >= start+5 })
	if n := strings.Count(logs.String(), "agent reloaded"); n != 1 {
		t.Fatalf("%d \"agent reloaded\" lines for one change:\n%s", n, logs.String())
	}
}
