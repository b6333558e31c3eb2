package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runFakeLSPServer is a small language server speaking LSP over stdio, run by the test
// binary itself (TestMain, LSP_TEST_SERVER=1). It knows one thing about code: words.
// hover names the word at a position; references and rename find its occurrences in
// the document; a line holding TODO gets a warning diagnostic; formatting trims
// trailing spaces; hovering "hang" is never answered and hovering "crash" exits. It
// appends its pid to $LSP_TEST_PIDS.
func runFakeLSPServer() {
	if p := os.Getenv("LSP_TEST_PIDS"); p != "" {
		fh, _ := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		fmt.Fprintln(fh, os.Getpid())
		fh.Close()
	}
	r := bufio.NewReader(os.Stdin)
	send := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Fprintf(os.Stdout, "Content-Length: %d\r\n\r\n%s", len(b), b)
	}
	docs := map[string]string{}
	configured := false
	for {
		body, err := lspReadFrame(r)
		if err != nil {
			return
		}
		var m lspMessage
		json.Unmarshal(body, &m)
		if m.Method == "" { // our answer to workspace/configuration
			configured = string(m.ID) == `"cfg"` && string(m.Result) == "[null]"
			continue
		}
		var p fakeLSPParams
		json.Unmarshal(m.Params, &p)
		if m.Method == "exit" {
			return
		}
		if m.Method == "textDocument/didOpen" || m.Method == "textDocument/didChange" {
			text := p.TextDocument.Text
			if len(p.ContentChanges) > 0 {
				text = p.ContentChanges[0].Text
			}
			docs[p.TextDocument.URI] = text
			send(map[string]any{"jsonrpc": "2.0", "method": "textDocument/publishDiagnostics",
				"params": map[string]any{"uri": p.TextDocument.URI, "diagnostics": fakeLSPDiagnostics(text)}})
		}
		if m.Method == "initialize" { // a request of the server's own, answered before initialize returns
			send(map[string]any{"jsonrpc": "2.0", "id": "cfg", "method": "workspace/configuration", "params": map[string]any{"items": []any{map[string]any{"section": "fake"}}}})
		}
		if len(m.ID) == 0 {
			continue
		}
		if w, _ := fakeLSPWord(docs[p.TextDocument.URI], p.Position); m.Method == "textDocument/hover" && w == "hang" {
			continue // never answered
		} else if m.Method == "textDocument/hover" && w == "crash" {
			os.Exit(3)
		}
		send(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": fakeLSPAnswer(m.Method, p, docs, configured)})
	}
}

type fakeLSPParams struct {
	TextDocument   struct{ URI, Text string } `json:"textDocument"`
	Position       lspPos                     `json:"position"`
	ContentChanges []struct{ Text string }    `json:"contentChanges"`
	NewName        string                     `json:"newName"`
	Query          string                     `json:"query"`
	RootURI        string                     `json:"rootUri"`
	Context        struct {
		Diagnostics []lspDiagnostic `json:"diagnostics"`
	} `json:"context"`
	Item struct{ URI string } `json:"item"`
}

var fakeWordRE = regexp.MustCompile(`\w+`)

// fakeLSPWord returns the word at a position and the ranges of all its occurrences.
func fakeLSPWord(text string, at lspPos) (string, []lspRange) {
	lines := strings.Split(text, "\n")
	if at.Line >= len(lines) {
		return "", nil
	}
	word := ""
	for _, loc := range fakeWordRE.FindAllStringIndex(lines[at.Line], -1) {
		if loc[0] <= at.Character && at.Character < loc[1] {
			word = lines[at.Line][loc[0]:loc[1]]
		}
	}
	var occ []lspRange
	for i, l := range lines {
		for _, loc := range fakeWordRE.FindAllStringIndex(l, -1) {
			if l[loc[0]:loc[1]] == word {
				occ = append(occ, lspRange{lspPos{i, loc[0]}, lspPos{i, loc[1]}})
			}
		}
	}
	return word, occ
}

func fakeLSPDiagnostics(text string) []lspDiagnostic {
	out := []lspDiagnostic{}
	for i, l := range strings.Split(text, "\n") {
		if j := strings.Index(l, "TODO"); j >= 0 {
			out = append(out, lspDiagnostic{Range: lspRange{lspPos{i, j}, lspPos{i, j + 4}}, Severity: 2, Message: "TODO left in code"})
		}
	}
	return out
}

func fakeLSPAnswer(method string, p fakeLSPParams, docs map[string]string, configured bool) any {
	uri := p.TextDocument.URI
	word, occ := fakeLSPWord(docs[uri], p.Position)
	switch method {
	case "initialize":
		return map[string]any{"capabilities": map[string]any{"hoverProvider": true, "referencesProvider": true, "renameProvider": map[string]any{},
			"documentFormattingProvider": true, "workspaceSymbolProvider": true, "textDocumentSync": 1},
			"serverInfo": map[string]any{"name": "fakels-" + os.Getenv("LSP_TEST_NAME"), "version": "0.1"}}
	case "textDocument/hover":
		return map[string]any{"contents": map[string]any{"kind": "markdown", "value": fmt.Sprintf("%s: `%s` greeting=%s key=%s configured=%v",
			os.Getenv("LSP_TEST_NAME"), word, os.Getenv("LSP_TEST_GREETING"), os.Getenv("OPENAI_API_KEY"), configured)}}
	case "textDocument/references":
		var locs []map[string]any
		for _, r := range occ {
			locs = append(locs, map[string]any{"uri": uri, "range": r})
		}
		return locs
	case "textDocument/rename":
		var edits []lspTextEdit
		for _, r := range occ {
			edits = append(edits, lspTextEdit{Range: r, NewText: p.NewName})
		}
		return map[string]any{"changes": map[string]any{uri: edits}}
	case "textDocument/formatting":
		var edits []lspTextEdit
		for i, l := range strings.Split(docs[uri], "\n") {
			if t := strings.TrimRight(l, " "); len(t) < len(l) {
				edits = append(edits, lspTextEdit{Range: lspRange{lspPos{i, len(t)}, lspPos{i, len(l)}}})
			}
		}
		return edits
	case "textDocument/definition":
		return []map[string]any{{"targetUri": uri, "targetRange": occ[0], "targetSelectionRange": occ[0]}}
	case "textDocument/documentSymbol":
		return []map[string]any{{"name": "Hello", "kind": 12, "range": lspRange{lspPos{1, 0}, lspPos{3, 1}}, "selectionRange": occ,
			"children": []map[string]any{{"name": "x", "kind": 13, "range": lspRange{lspPos{2, 1}, lspPos{2, 2}}}}}}
	case "textDocument/codeAction":
		var acts []map[string]any
		for _, d := range p.Context.Diagnostics {
			acts = append(acts, map[string]any{"title": "Fix: " + d.Message, "kind": "quickfix", "isPreferred": true})
		}
		return acts
	case "textDocument/prepareCallHierarchy":
		return []map[string]any{{"name": word, "kind": 12, "uri": uri, "range": occ[0], "selectionRange": occ[0]}}
	case "callHierarchy/incomingCalls":
		return []map[string]any{{"from": map[string]any{"name": "main", "kind": 12, "detail": "pkg", "uri": p.Item.URI, "range": lspRange{lspPos{5, 0}, lspPos{5, 4}}}, "fromRanges": []any{}}}
	case "textDocument/signatureHelp":
		return map[string]any{"signatures": []any{map[string]any{"label": word + "(a int)", "parameters": []any{map[string]any{"label": "a int"}}}}}
	case "textDocument/inlayHint":
		return []map[string]any{{"position": lspPos{1, 3}, "label": []any{map[string]any{"value": ": "}, map[string]any{"value": "int"}}, "kind": 1}}
	case "workspace/symbol":
		var syms []map[string]any
		for u, text := range docs {
			for i, l := range strings.Split(text, "\n") {
				if f, ok := strings.CutPrefix(l, "func "); ok && strings.Contains(f, p.Query) {
					syms = append(syms, map[string]any{"name": strings.TrimSuffix(f, "() {"), "kind": 12,
						"location": map[string]any{"uri": u, "range": lspRange{lspPos{i, 0}, lspPos{i, 4}}}})
				}
			}
		}
		return syms
	}
	return nil
}

// lspTestYAML configures two fake servers: one for .go files, one for .py files.
func lspTestYAML(pids string) string {
	server := func(name, types string) string {
		return fmt.Sprintf(`      - type: lsp
        command: %s
        args: ["-test.run=^$"]
        file_types: [%s]
        env:
          LSP_TEST_SERVER: "1"
          LSP_TEST_NAME: %s
          LSP_TEST_GREETING: hello
          LSP_TEST_PIDS: %s
`, os.Args[0], types, name, pids)
	}
	return "    toolsets:\n" + server("go", `".go"`) + "      - type: think\n" + server("py", "py")
}

func TestLSPToolsetThroughRun(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	call := func(id, name, args string) fakeTurn {
		return fakeTurn{ToolCalls: []fakeToolCall{{ID: id, Name: name, Args: args}}}
	}
	e, f := newRunEnv(t, lspTestYAML(pids),
		call("c1", "lsp_hover", `{"file":"main.go","line":2,"character":7}`),
		call("c2", "lsp_diagnostics", `{"file":"main.go"}`),
		call("c3", "lsp_references", `{"file":"main.go","line":2,"character":7}`),
		call("c4", "lsp_rename", `{"file":"main.go","line":2,"character":7,"new_name":"Greet"}`),
		call("c5", "lsp_format", `{"file":"main.go"}`),
		call("c6", "lsp_workspace_symbols", `{"query":"Gr"}`),
		call("c7", "lsp_hover", `{"file":"lib/util.py","line":1,"character":5}`),
		call("c8", "lsp_hover", `{"file":"notes.txt","line":1,"character":1}`),
		call("c9", "lsp_hover", `{"file":"../outside.go","line":1,"character":1}`),
		fakeTurn{Text: []string{"done"}})
	t.Setenv("OPENAI_API_KEY", "leaked") // the server's secrets stay out of the child
	os.MkdirAll(filepath.Join(e.root, "lib"), 0o755)
	os.WriteFile(filepath.Join(e.root, "main.go"), []byte("package main\nfunc Hello() {   \n\tHello() // TODO\n}\n"), 0o644)
	os.WriteFile(filepath.Join(e.root, "lib/util.py"), []byte("def util(): pass\n"), 0o644)
	os.WriteFile(filepath.Join(e.root, "notes.txt"), []byte("notes\n"), 0o644)

	// think + the 15 lsp tools of both servers, merged into one set.
	code, b := e.do("GET", "/api/agents/a/root/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":16}` {
		t.Fatalf("tools/count = %d %s", code, b)
	}
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	want := []string{
		"go: `Hello` greeting=hello key= configured=true",
		"Diagnostics for main.go:\n- [Warning] Line 3: TODO left in code",
		"Found 2 location(s):\n- main.go:2:6\n- main.go:3:2",
		"Renamed to 'Greet'\nModified 1 file(s):\n- main.go (2 change(s))",
		"Formatted main.go\nApplied 1 formatting change(s)",
		"- Function Greet (main.go:2)\n---\nNo symbols found matching 'Gr'",
		"py: `util` greeting=hello key= configured=true",
		"no LSP server configured for file: notes.txt",
		`path "../outside.go" is outside the working directory`,
	}
	if got := toolResponses(evs); !slices.Equal(got, want) {
		t.Fatalf("tool responses:\n%q\nwant\n%q", got, want)
	}
	if data, _ := os.ReadFile(filepath.Join(e.root, "main.go")); string(data) != "package main\nfunc Greet() {\n\tGreet() // TODO\n}\n" {
		t.Fatalf("main.go after rename and format = %q", data)
	}
	// The model saw the tools in the reference's order, after think, with lsp_rename
	// and lsp_format asking for confirmation.
	tools := f.requests()[0]["tools"].([]any)
	var names []string
	for _, tl := range tools {
		names = append(names, tl.(map[string]any)["function"].(map[string]any)["name"].(string))
	}
	if len(names) != 16 || names[0] != "think" || names[1] != "lsp_workspace" || names[15] != "lsp_inlay_hints" {
		t.Fatalf("tool order = %v", names)
	}

	// Both servers stop, process groups and all, when the config goes away.
	started := fakeLSPPids(t, pids)
	if len(started) != 2 {
		t.Fatalf("servers started = %v; want one per backend", started)
	}
	os.Remove(filepath.Join(e.dir, "a.yaml"))
	waitFor(t, "language servers to stop", func() bool {
		return !slices.ContainsFunc(started, func(pid int) bool { return syscall.Kill(pid, 0) == nil })
	})
}

func fakeLSPPids(t *testing.T, file string) []int {
	data, _ := os.ReadFile(file)
	var out []int
	for _, f := range strings.Fields(string(data)) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	return out
}

func TestLSPApplyEditsUTF16(t *testing.T) {
	// "é" is one UTF-16 unit, "𝄞" two: positions count units, edits land on the right bytes.
	text := "aé𝄞b\nxyz\n"
	got := lspApplyEdits(text, []lspTextEdit{
		{Range: lspRange{lspPos{0, 4}, lspPos{0, 5}}, NewText: "B"},
		{Range: lspRange{lspPos{1, 0}, lspPos{1, 1}}, NewText: "X"},
		{Range: lspRange{lspPos{0, 0}, lspPos{0, 1}}, NewText: ""},
	})
	if got != "é𝄞B\nXyz\n" {
		t.Fatalf("lspApplyEdits = %q", got)
	}
}

func TestLSPTimeoutCrashAndIdleStop(t *testing.T) {
	pids := filepath.Join(t.TempDir(), "pids")
	cfg := &toolsetConfig{Type: "lsp", Command: os.Args[0], Args: []string{"-test.run=^$"},
		Env: mcpOrdered("LSP_TEST_SERVER", "1", "LSP_TEST_PIDS", pids)}
	ts, errs := newLSPToolset([]*toolsetConfig{cfg}, toolsTestOpts(t, nil))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	t.Cleanup(func() { ts.close() })
	b := ts.(*lspToolset).backends[0]
	b.timeout = 300 * time.Millisecond
	env := toolsTestEnv(t)
	os.WriteFile(filepath.Join(env.WorkingDir, "a.go"), []byte("hang crash ok\n"), 0o644)
	hover := func(char int) toolResult {
		return mcpRun(t, ts, env, "lsp_hover", fmt.Sprintf(`{"file":"a.go","line":1,"character":%d}`, char))
	}
	if r := hover(1); !r.IsError || !strings.Contains(r.Output, "did not answer in time") {
		t.Fatalf("unanswered hover = %+v", r)
	}
	if r := hover(12); r.IsError || !strings.Contains(r.Output, "`ok`") {
		t.Fatalf("hover after a timeout = %+v", r)
	}
	if r := hover(6); !r.IsError || !strings.Contains(r.Output, "language server exited: exit status 3") {
		t.Fatalf("hover that kills the server = %+v", r)
	}
	if r := hover(12); r.IsError || !strings.Contains(r.Output, "`ok`") {
		t.Fatalf("hover after a crash = %+v", r)
	}
	started := fakeLSPPids(t, pids)
	if len(started) != 2 {
		t.Fatalf("servers started = %v; want the first and its replacement", started)
	}
	b.idle = 50 * time.Millisecond
	hover(12)
	waitFor(t, "the idle server to stop", func() bool { return syscall.Kill(started[1], 0) != nil })
}

func TestLSPReadTools(t *testing.T) {
	cfg := &toolsetConfig{Type: "lsp", Command: os.Args[0], Args: []string{"-test.run=^$"}, Env: mcpOrdered("LSP_TEST_SERVER", "1")}
	ts, errs := newLSPToolset([]*toolsetConfig{cfg}, toolsTestOpts(t, nil))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	t.Cleanup(func() { ts.close() })
	env := toolsTestEnv(t)
	os.WriteFile(filepath.Join(env.WorkingDir, "a.go"), []byte("package a\nfunc Hello() {\n\tx := 1 // TODO\n}\n"), 0o644)
	for _, tc := range []struct{ name, args, want string }{
		{"lsp_definition", `{"file":"a.go","line":2,"character":6}`, "Found 1 location(s):\n- a.go:2:6"},
		{"lsp_implementations", `{"file":"a.go","line":2,"character":6}`, "No implementations found"},
		{"lsp_document_symbols", `{"file":"a.go"}`, "- Function Hello (line 2)\n  - Variable x (line 3)"},
		{"lsp_code_actions", `{"file":"a.go","start_line":3}`, "Available code actions for a.go:3:\n1. [quickfix] Fix: TODO left in code (preferred)"},
		{"lsp_code_actions", `{"file":"a.go","start_line":1,"end_line":2}`, "No code actions available for a.go:1"},
		{"lsp_call_hierarchy", `{"file":"a.go","line":2,"character":6,"direction":"incoming"}`, "Incoming calls to 'Hello':\n- Function main (a.go:6) [pkg]"},
		{"lsp_call_hierarchy", `{"file":"a.go","line":2,"character":6,"direction":"sideways"}`, "direction must be 'incoming' or 'outgoing'"},
		{"lsp_type_hierarchy", `{"file":"a.go","line":2,"character":6,"direction":"subtypes"}`, "No hierarchy information available at this position"},
		{"lsp_signature_help", `{"file":"a.go","line":2,"character":6}`, "Function: Hello(a int) [ACTIVE]\n1. a int [ACTIVE]"},
		{"lsp_inlay_hints", `{"file":"a.go"}`, "Inlay hints for a.go:\n- Line 2, Col 4: ': int' (type)"},
		{"lsp_hover", `{"file":"a.go","line":0,"character":1}`, "Hover request failed: line and character are 1-based and must be at least 1"},
	} {
		if got := mcpRun(t, ts, env, tc.name, tc.args).Output; got != tc.want {
			t.Errorf("%s %s = %q; want %q", tc.name, tc.args, got, tc.want)
		}
	}
	ws := mcpRun(t, ts, env, "lsp_workspace", `{}`).Output
	for _, want := range []string{"- Root: " + env.WorkingDir, "- Server: fakels- 0.1", "- File types: all", "- Hover: Yes", "- Rename: Yes", "- Call Hierarchy: No"} {
		if !strings.Contains(ws, want) {
			t.Errorf("lsp_workspace lacks %q:\n%s", want, ws)
		}
	}
}
