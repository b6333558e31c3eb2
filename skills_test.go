package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// skillsHome points HOME and the user cache dir at a temp dir, so a test never reads
// the real home or writes the real cache. It returns that home.
func skillsHome(t *testing.T) string {
	t.Helper()
	home := filepath.Join(t.TempDir(), "home")
	os.MkdirAll(home, 0o755)
	t.Setenv("HOME", home)
	t.Setenv("XDG_CACHE_HOME", filepath.Join(home, ".cache"))
	return home
}

// writeSkill writes dir/SKILL.md with the given front matter values and body.
func writeSkill(t *testing.T, dir, name, desc, body string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := "---\nname: " + name + "\ndescription: " + desc + "\nmetadata:\n  author: test\n---\n" + body
	if err := os.WriteFile(filepath.Join(dir, skillFileName), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// toolCount asks the server how many tools agent root of config a has.
func toolCount(e *apiTest) float64 {
	e.t.Helper()
	code, b := e.do("GET", "/api/agents/a/root/tools/count", nil)
	if code != 200 {
		e.t.Fatalf("tools/count = %d %s", code, b)
	}
	return decode[map[string]float64](e.t, b)["available_tools"]
}

// requestParts splits a recorded chat request into its system text, its tool names
// and its tool results (by call id).
func requestParts(req map[string]any) (system string, tools []string, results map[string]string) {
	results = map[string]string{}
	for _, m := range req["messages"].([]any) {
		mm := m.(map[string]any)
		c, _ := mm["content"].(string)
		switch mm["role"] {
		case "system":
			system += c + "\n"
		case "tool":
			results[mm["tool_call_id"].(string)] = c
		}
	}
	tl, _ := req["tools"].([]any)
	for _, x := range tl {
		tools = append(tools, x.(map[string]any)["function"].(map[string]any)["name"].(string))
	}
	return system, tools, results
}

func TestSkillsLocal(t *testing.T) {
	home := skillsHome(t)
	e, f := newRunEnv(t, "    skills: true\n",
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "read_skill", Args: `{"name":"deep"}`}, {ID: "c2", Name: "read_skill", Args: `{"name":"nope"}`}}},
		fakeTurn{Text: []string{"done"}})
	base := filepath.Dir(e.root)
	writeSkill(t, filepath.Join(home, ".agents", "skills", "group", "greet"), "greet", "Greets <people> & things", "Say hi.")
	writeSkill(t, filepath.Join(home, ".claude", "skills", "s"), "shared", "from home", "home body")
	writeSkill(t, filepath.Join(home, ".claude", "skills", "nested", "too-deep"), "too-deep", "flat layout: not found", "x")
	os.MkdirAll(filepath.Join(e.root, "proj", ".git"), 0o755)
	writeSkill(t, filepath.Join(e.root, "proj", ".agents", "skills", "s"), "shared", "from project", "project body")
	writeSkill(t, filepath.Join(e.root, "proj", "sub", ".agents", "skills", "d"), "deep", "Deep skill", "Follow the deep steps.")
	writeSkill(t, filepath.Join(e.root, "proj", "sub", ".agents", "skills", "nodesc"), "nodesc", "", "no description: skipped")
	// Outside --working-dir: a parent's skills, a symlinked skills dir, a symlinked SKILL.md.
	os.MkdirAll(filepath.Join(base, ".git"), 0o755)
	writeSkill(t, filepath.Join(base, ".agents", "skills", "o"), "outside", "above the root", "x")
	writeSkill(t, filepath.Join(base, "elsewhere", "leak"), "leak", "symlinked in", "secret")
	os.MkdirAll(filepath.Join(e.root, "proj", "sub", ".claude"), 0o755)
	if err := os.Symlink(filepath.Join(base, "elsewhere"), filepath.Join(e.root, "proj", "sub", ".claude", "skills")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(e.root, "proj", ".agents", "skills", "link"), 0o755)
	if err := os.Symlink(filepath.Join(base, "elsewhere", "leak", skillFileName), filepath.Join(e.root, "proj", ".agents", "skills", "link", skillFileName)); err != nil {
		t.Fatal(err)
	}

	// Without a session: home skills and the root's own; only read_skill (no local
	// skill lists supporting files), as in the reference.
	if n := toolCount(e); n != 1 {
		t.Fatalf("tools/count = %v, want 1 (read_skill)", n)
	}

	id := e.newSession(map[string]any{"title": "t", "working_dir": "proj/sub"})
	st := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go deep"}})
	st.all()
	// Found skills make a toolset, so the MCP markers come even with no toolsets configured.
	if !slices.Contains(st.types(), "mcp_init_started") {
		t.Fatalf("events = %v, want the mcp_init markers", st.types())
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("model requests = %d, want 2", len(reqs))
	}
	system, tools, _ := requestParts(reqs[0])
	if !slices.Equal(tools, []string{"read_skill"}) {
		t.Fatalf("tools = %q", tools)
	}
	want := "<available_skills>\n" +
		"  <skill>\n    <name>deep</name>\n    <description>Deep skill</description>\n  </skill>\n" +
		"  <skill>\n    <name>greet</name>\n    <description>Greets &lt;people&gt; &amp; things</description>\n  </skill>\n" +
		"  <skill>\n    <name>shared</name>\n    <description>from project</description>\n  </skill>\n" +
		"</available_skills>"
	if !strings.Contains(system, "use read_skill to load its instructions") || !strings.Contains(system, want) {
		t.Fatalf("system prompt does not list the skills:\n%s\nwant:\n%s", system, want)
	}
	if strings.Contains(system, "read_skill_file") {
		t.Fatalf("read_skill_file mentioned without supporting files:\n%s", system)
	}
	_, _, results := requestParts(reqs[1])
	if got := results["c1"]; !strings.HasPrefix(got, "---\nname: deep\n") || !strings.HasSuffix(got, "Follow the deep steps.") {
		t.Fatalf("read_skill deep = %q", got)
	}
	if got := results["c2"]; got != `skill "nope" not found` {
		t.Fatalf("read_skill nope = %q", got)
	}

	// A session at the root: its git root is above --working-dir, which bounds the climb.
	id = e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
	system, _, _ = requestParts(f.requests()[2])
	if !strings.Contains(system, "<name>greet</name>") || !strings.Contains(system, "<description>from home</description>") || strings.Contains(system, "outside") {
		t.Fatalf("root session's skills:\n%s", system)
	}
}

// skillsServer is a remote skills source speaking the well-known layout.
type skillsServer struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

func newSkillsServer(t *testing.T) *skillsServer {
	s := &skillsServer{hits: map[string]int{}}
	files := map[string]string{
		"/.well-known/skills/index.json": `{"skills":[` +
			`{"name":"pdf","description":"Fill PDF forms","files":["SKILL.md","references/FORMS.md","../evil","big.md"]},` +
			`{"name":"../up","description":"bad name","files":["SKILL.md"]},` +
			`{"name":"gone","description":"its SKILL.md is missing","files":["SKILL.md"]}]}`,
		"/.well-known/skills/pdf/SKILL.md":             "---\nname: pdf\ndescription: Fill PDF forms\n---\nRead references/FORMS.md first.",
		"/.well-known/skills/pdf/references/FORMS.md":  "How to fill forms.",
		"/.well-known/skills/pdf/big.md":               strings.Repeat("x", maxSkillFile+1),
		"/.well-known/skills/evil":                     "must never be fetched",
		"/.well-known/skills/up/SKILL.md":              "must never be fetched",
		"/.well-known/skills/pdf/references/ESCAPE.md": "not listed",
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		body, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		w.Write([]byte(body))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *skillsServer) hit(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func TestSkillsRemoteCachedAndOffline(t *testing.T) {
	home := skillsHome(t)
	src := newSkillsServer(t)
	e, f := newRunEnv(t, "    skills: [local, "+src.URL+"/]\n",
		fakeTurn{ToolCalls: []fakeToolCall{
			{ID: "c1", Name: "read_skill_file", Args: `{"skill_name":"pdf","path":"references/FORMS.md"}`},
			{ID: "c2", Name: "read_skill_file", Args: `{"skill_name":"pdf","path":"../../index.json"}`},
			{ID: "c3", Name: "read_skill_file", Args: `{"skill_name":"pdf","path":"/etc/passwd"}`},
		}},
		fakeTurn{Text: []string{"done"}},
		fakeTurn{ToolCalls: []fakeToolCall{
			{ID: "c4", Name: "read_skill", Args: `{"name":"pdf"}`},
			{ID: "c5", Name: "read_skill_file", Args: `{"skill_name":"pdf","path":"references/escape.md"}`},
		}},
		fakeTurn{Text: []string{"done again"}})

	if n := toolCount(e); n != 2 {
		t.Fatalf("tools/count = %v, want 2 (read_skill, read_skill_file)", n)
	}
	for _, p := range []string{"/.well-known/skills/evil", "/.well-known/skills/up/SKILL.md", "/.well-known/skills/pdf/references/ESCAPE.md"} {
		if src.hit(p) != 0 {
			t.Errorf("%s was fetched", p)
		}
	}
	if src.hit("/.well-known/skills/pdf/references/FORMS.md") != 1 {
		t.Fatalf("supporting file not prefetched once: %v", src.hits)
	}

	id := e.newSession(map[string]any{"title": "t"})
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "fill it"}}).all()
	if src.hit("/.well-known/skills/index.json") != 1 {
		t.Fatalf("index fetched %d times; the team should reuse it while fresh", src.hit("/.well-known/skills/index.json"))
	}
	reqs := f.requests()
	system, tools, _ := requestParts(reqs[0])
	if !slices.Equal(tools, []string{"read_skill", "read_skill_file"}) {
		t.Fatalf("tools = %q", tools)
	}
	want := "  <skill>\n    <name>pdf</name>\n    <description>Fill PDF forms</description>\n    <files>references/FORMS.md, big.md</files>\n  </skill>\n</available_skills>"
	if !strings.Contains(system, "Use read_skill_file to load referenced files") || !strings.Contains(system, want) || strings.Contains(system, "gone") || strings.Contains(system, "up<") {
		t.Fatalf("system prompt:\n%s", system)
	}
	_, _, results := requestParts(reqs[1])
	if results["c1"] != "How to fill forms." {
		t.Fatalf("read_skill_file FORMS.md = %q", results["c1"])
	}
	for _, c := range []string{"c2", "c3"} {
		if !strings.HasPrefix(results[c], "invalid file path") {
			t.Fatalf("%s: escaping path not refused: %q", c, results[c])
		}
	}

	// The copy is on disk under the user cache dir.
	cached, _ := filepath.Glob(filepath.Join(home, ".cache", "agentd", "skills", "*", "skills", "pdf", "references", "FORMS.md"))
	if len(cached) != 1 {
		t.Fatalf("no cached FORMS.md under %s", filepath.Join(home, ".cache"))
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(filepath.Dir(cached[0])), "big.md")); err == nil {
		t.Fatalf("a file over %d bytes was cached", maxSkillFile)
	}
	// A symlink planted in the cache does not lead out of the skill's directory.
	secret := filepath.Join(t.TempDir(), "secret.md")
	os.WriteFile(secret, []byte("top secret"), 0o644)
	os.Symlink(secret, filepath.Join(filepath.Dir(cached[0]), "escape.md"))

	// The source goes down; a new server process (fresh team) works from the cache.
	src.Close()
	e.restart()
	if n := toolCount(e); n != 2 {
		t.Fatalf("offline tools/count = %v, want 2", n)
	}
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "again"}}).all()
	reqs = f.requests()
	_, _, results = requestParts(reqs[3])
	if !strings.HasSuffix(results["c4"], "Read references/FORMS.md first.") {
		t.Fatalf("offline read_skill = %q", results["c4"])
	}
	if strings.Contains(results["c5"], "top secret") || !strings.HasPrefix(results["c5"], "reading file:") {
		t.Fatalf("symlink escape not refused: %q", results["c5"])
	}
}

func TestParseSkillMD(t *testing.T) {
	for _, c := range []struct {
		src, name, desc string
		ok              bool
	}{
		{"---\nname: a\ndescription: does a\n---\nbody", "a", "does a", true},
		{"---\r\nname: a\r\ndescription: >\r\n  folded\r\n  text\r\n---\r\n", "a", "folded text", true},
		{"---\nname: a\ndescription: \"quoted: yes\"\nallowed-tools: Read, Grep\n---", "a", "quoted: yes", true},
		{"---\nname: a\n---\nno description", "", "", false},
		{"---\ndescription: no name\n---\n", "", "", false},
		{"name: a\ndescription: no front matter\n", "", "", false},
		{"---\nname: a\ndescription: never closed\n", "", "", false},
		{"---\n---\nempty", "", "", false},
		{"---\nname: [a\n---\n", "", "", false},
	} {
		name, desc, ok := parseSkillMD([]byte(c.src))
		if ok != c.ok || ok && (name != c.name || desc != c.desc) {
			t.Errorf("parseSkillMD(%q) = %q, %q, %v; want %q, %q, %v", c.src, name, desc, ok, c.name, c.desc, c.ok)
		}
	}
}
