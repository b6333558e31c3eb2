package main

// tools_lsp.go: the lsp toolset (CONFIG.md §6.3): the reference's 15 lsp_* tools on
// top of lsp.go. Every lsp toolset of an agent is one backend of a single toolset
// listed after the others (CONFIG.md §6.1): file tools go to the first backend whose
// file_types match, lsp_workspace and lsp_workspace_symbols ask every backend. A
// backend runs one server per session working directory, started on first use and
// stopped when idle or when the config goes away. Files are resolved like the
// filesystem tools': inside the working dir, never the server's protected files.
// Lines and characters are 1-based for the model, 0-based on the wire.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// lspBackend is one configured language server.
type lspBackend struct {
	command   string
	args, env []string
	fileTypes []string
	allow     []string // the toolset's `tools:` (nil: all)
	instr     string   // the toolset's `instruction:` ("" : ours)
	timeout   time.Duration
	idle      time.Duration

	mu      sync.Mutex
	servers map[string]*lspServer // by working dir
	closed  bool
}

// lspToolset multiplexes the backends behind one set of lsp_* tools.
type lspToolset struct {
	backends []*lspBackend
	list     []tool
}

// newLSPToolset builds the merged toolset; a config that cannot be used (env that does
// not expand, a command not on PATH) is reported and left out, as the reference does.
func newLSPToolset(cfgs []*toolsetConfig, opts toolsetOptions) (toolset, []error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	t := &lspToolset{}
	var errs []error
	for _, c := range cfgs {
		env, err := shellEnv(c.Env, getenv)
		if err == nil && !strings.ContainsRune(c.Command, os.PathSeparator) {
			if _, lerr := exec.LookPath(c.Command); lerr != nil {
				err = fmt.Errorf("lsp: command %q not found in PATH", c.Command)
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		t.backends = append(t.backends, &lspBackend{command: c.Command, args: c.Args, env: env, fileTypes: c.FileTypes,
			allow: c.Tools, instr: c.Instruction, servers: map[string]*lspServer{},
			timeout: lspRequestTimeout, idle: lspIdleTimeout})
	}
	if len(t.backends) == 0 {
		return nil, errs
	}
	for _, d := range lspToolDefs {
		if slices.ContainsFunc(t.backends, func(b *lspBackend) bool { return b.allows(d.name) }) {
			t.list = append(t.list, t.tool(d))
		}
	}
	return t, errs
}

func (t *lspToolset) tools(ctx context.Context) ([]tool, error) { return t.list, nil }

// instruction is ours, or each backend's override, without repeats.
func (t *lspToolset) instruction() string {
	var parts []string
	for _, b := range t.backends {
		s := lspInstruction
		if b.instr != "" {
			s = strings.Replace(b.instr, "{ORIGINAL_INSTRUCTIONS}", lspInstruction, 1)
		}
		if !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "\n\n")
}

func (t *lspToolset) close() error {
	for _, b := range t.backends {
		b.close()
	}
	return nil
}

const lspInstruction = `## Code intelligence (LSP)

The lsp_* tools ask a language server about the code in the working directory. Give
files as paths relative to it; lines and characters count from 1.
- Start with lsp_workspace to see what the server supports.
- Find code with lsp_workspace_symbols and lsp_document_symbols; read types and docs
  with lsp_hover; follow lsp_definition, lsp_references and lsp_implementations.
- Before changing a symbol, list its references (and implementations of interfaces).
- After editing a file, call lsp_diagnostics on it; lsp_code_actions offers fixes.
- lsp_rename and lsp_format change files on disk.`

// lspArgs holds the arguments of every lsp tool.
type lspArgs struct {
	File               string `json:"file"`
	Line               int    `json:"line"`
	Character          int    `json:"character"`
	IncludeDeclaration *bool  `json:"include_declaration"`
	Query              string `json:"query"`
	NewName            string `json:"new_name"`
	StartLine          int    `json:"start_line"`
	EndLine            int    `json:"end_line"`
	Direction          string `json:"direction"`
}

// lspDocCall is a file tool's view of its document.
type lspDocCall struct {
	s    *lspServer
	env  *toolEnv
	root *os.Root
	m    *protectMatcher
	rel  string // as the model should see it
	uri  string
	seq  int  // diagnostics publications before this call
	sent bool // the file was (re)sent to the server
}

// lspToolDef is one tool: its name, what it does, whether it only reads, and its body
// (file tools get a synced document; workspace tools get nil).
type lspToolDef struct {
	name, title, desc, params string
	readOnly                  bool
	file                      func(ctx context.Context, d *lspDocCall, a lspArgs) toolResult
	workspace                 func(ctx context.Context, b *lspBackend, s *lspServer, a lspArgs) string
}

// lspProps are the parameter schemas; lspParams assembles a tool's (encoding/json
// sorts the keys, as the reference's schemas are).
var lspProps = map[string]string{
	"file":                `{"type":"string","description":"Path of the source file, relative to the working directory"}`,
	"line":                `{"type":"integer","description":"Line (1-based)"}`,
	"character":           `{"type":"integer","description":"Column (1-based)"}`,
	"include_declaration": `{"type":["null","boolean"],"description":"Also list the declaration itself (default true)"}`,
	"query":               `{"type":"string","description":"Name or part of a name (fuzzy)"}`,
	"new_name":            `{"type":"string","description":"The new name"}`,
	"start_line":          `{"type":"integer","description":"First line of the range (1-based)"}`,
	"end_line":            `{"type":"integer","description":"Last line of the range (1-based)"}`,
	"calls":               `{"type":"string","description":"incoming (callers) or outgoing (callees)"}`,
	"types":               `{"type":"string","description":"supertypes (parents) or subtypes (children)"}`,
}

// lspParams is the schema of the given properties; a leading "*" marks a required one
// and "direction=calls" names the direction variant.
func lspParams(names ...string) string {
	props := map[string]json.RawMessage{}
	required := []string{}
	for _, n := range names {
		n, req := strings.CutPrefix(n, "*")
		name, variant, ok := strings.Cut(n, "=")
		if !ok {
			variant = name
		}
		props[name] = json.RawMessage(lspProps[variant])
		if req {
			required = append(required, name)
		}
	}
	b, _ := json.Marshal(map[string]any{"type": "object", "additionalProperties": false, "properties": props, "required": required})
	return strings.Replace(string(b), `,"required":[]`, "", 1)
}

var lspPosition = []string{"*file", "*line", "*character"}

// lspToolDefs are the reference's 15 tools in its order; names, parameters and
// read-only flags follow spec/builtin-tools.json, the descriptions are ours.
var lspToolDefs = []lspToolDef{
	{name: "lsp_workspace", title: "Workspace Info", readOnly: true, params: lspParams(), workspace: lspWorkspaceInfo,
		desc: "Describe the workspace and what the language server supports. Call it first; it takes no arguments."},
	{name: "lsp_hover", title: "Hover", readOnly: true, params: lspParams(lspPosition...), file: lspHover,
		desc: "Show the type, signature and documentation of the symbol at a position."},
	{name: "lsp_definition", title: "Go to Definition", readOnly: true, params: lspParams(lspPosition...), file: lspLocations("textDocument/definition", "No definition found"),
		desc: "Find where the symbol at a position is defined (file:line:column)."},
	{name: "lsp_references", title: "Find References", readOnly: true, file: lspReferences,
		params: lspParams(append(lspPosition, "include_declaration")...),
		desc:   "List every use of the symbol at a position across the workspace. Check them before changing a definition."},
	{name: "lsp_document_symbols", title: "File Symbols", readOnly: true, params: lspParams("*file"), file: lspDocumentSymbols,
		desc: "List the symbols (types, functions, methods, variables…) a file defines, nested as in the code."},
	{name: "lsp_workspace_symbols", title: "Search Symbols", readOnly: true, workspace: lspWorkspaceSymbols,
		params: lspParams("*query"),
		desc:   "Search the whole workspace for symbols by name."},
	{name: "lsp_diagnostics", title: "Diagnostics", readOnly: true, params: lspParams("*file"), file: lspDiagnostics,
		desc: "List the errors, warnings and hints the language server reports for a file. Call it after every edit."},
	{name: "lsp_rename", title: "Rename Symbol", params: lspParams(append(lspPosition, "*new_name")...), file: lspRename,
		desc: "Rename the symbol at a position everywhere in the workspace. This changes files on disk."},
	{name: "lsp_code_actions", title: "Code Actions", readOnly: true, params: lspParams("*file", "*start_line", "end_line"), file: lspCodeActions,
		desc: "List the quick fixes and refactorings the server offers for a line or range of lines."},
	{name: "lsp_format", title: "Format File", params: lspParams("*file"), file: lspFormat,
		desc: "Format a file the way the language server formats it. This changes the file on disk."},
	{name: "lsp_call_hierarchy", title: "Call Hierarchy", readOnly: true, file: lspCallHierarchy,
		params: lspParams(append(lspPosition, "*direction=calls")...),
		desc:   "Show who calls the function at a position (incoming) or what it calls (outgoing)."},
	{name: "lsp_type_hierarchy", title: "Type Hierarchy", readOnly: true, file: lspTypeHierarchy,
		params: lspParams(append(lspPosition, "*direction=types")...),
		desc:   "Show the parent types (supertypes) or child types (subtypes) of the type at a position."},
	{name: "lsp_implementations", title: "Find Implementations", readOnly: true, params: lspParams(lspPosition...), file: lspLocations("textDocument/implementation", "No implementations found"),
		desc: "List the concrete implementations of the interface or abstract method at a position."},
	{name: "lsp_signature_help", title: "Signature Help", readOnly: true, params: lspParams(lspPosition...), file: lspSignatureHelp,
		desc: "Show the signature and parameters of the call around a position (inside its parentheses)."},
	{name: "lsp_inlay_hints", title: "Inlay Hints", readOnly: true, params: lspParams("*file", "start_line", "end_line"), file: lspInlayHints,
		desc: "Show inferred types and parameter names for a file, or for a range of its lines."},
}

// tool wraps a definition with the routing.
func (t *lspToolset) tool(d lspToolDef) tool {
	def := toolDef{Name: d.name, Category: "lsp", Description: d.desc, Parameters: json.RawMessage(d.params),
		Annotations: toolAnnotations{Title: d.title, ReadOnlyHint: d.readOnly}}
	return tool{def: def, run: toolsRun(func(ctx context.Context, env *toolEnv, a lspArgs) toolResult {
		if env == nil || env.WorkingDir == "" {
			return toolErrorf("no working directory for this session")
		}
		if d.workspace != nil {
			return t.broadcast(ctx, env, d, a)
		}
		return t.route(ctx, env, d, a)
	})}
}

// route sends a file tool to the first backend that handles the file.
func (t *lspToolset) route(ctx context.Context, env *toolEnv, d lspToolDef, a lspArgs) toolResult {
	if a.File == "" {
		return toolErrorf("file argument is required")
	}
	for _, b := range t.backends {
		if b.allows(d.name) && b.handles(a.File) {
			return fsWith(env, a.File, func(root *os.Root, rel string, m *protectMatcher) toolResult {
				data, err := fsReadFile(root, rel)
				if err != nil {
					return fsErr(a.File, err)
				}
				s, err := b.server(ctx, env.WorkingDir)
				if err != nil {
					return toolErrorf("%v", err)
				}
				uri := lspURI(filepath.Join(env.WorkingDir, filepath.FromSlash(rel)))
				seq, sent, err := s.sync(uri, string(data))
				if err != nil {
					return toolErrorf("sending %s to the language server: %v", rel, err)
				}
				return d.file(ctx, &lspDocCall{s: s, env: env, root: root, m: m, rel: rel, uri: uri, seq: seq, sent: sent}, a)
			})
		}
	}
	return toolErrorf("no LSP server configured for file: %s", a.File)
}

// broadcast asks every backend and joins the answers.
func (t *lspToolset) broadcast(ctx context.Context, env *toolEnv, d lspToolDef, a lspArgs) toolResult {
	var parts []string
	for _, b := range t.backends {
		if !b.allows(d.name) {
			continue
		}
		s, err := b.server(ctx, env.WorkingDir)
		if err != nil {
			parts = append(parts, fmt.Sprintf("[LSP %s] Error: %v", b.command, err))
			continue
		}
		if out := d.workspace(ctx, b, s, a); out != "" {
			parts = append(parts, out)
		}
	}
	if len(parts) == 0 {
		return toolResult{Output: "No results"}
	}
	return toolResult{Output: toolsTruncate(strings.Join(parts, "\n---\n"))}
}

func (b *lspBackend) allows(name string) bool {
	return b.allow == nil || slices.Contains(b.allow, name)
}

// handles reports whether file's extension is one of file_types (all files when unset).
func (b *lspBackend) handles(file string) bool {
	if len(b.fileTypes) == 0 {
		return true
	}
	ext := strings.ToLower(filepath.Ext(file))
	return slices.ContainsFunc(b.fileTypes, func(ft string) bool {
		return ext == "."+strings.TrimPrefix(strings.ToLower(ft), ".")
	})
}

// server returns the running server for a working dir, starting one if needed, and
// pushes back its idle stop.
func (b *lspBackend) server(ctx context.Context, wd string) (*lspServer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, errors.New("lsp toolset is closed")
	}
	s := b.servers[wd]
	if s == nil || !s.alive() {
		if s != nil {
			s.idle.Stop()
			go s.stop()
		}
		var err error
		if s, err = lspStart(ctx, b.command, b.args, b.env, wd, b.timeout); err != nil {
			return nil, fmt.Errorf("LSP initialization failed: %v", err)
		}
		b.servers[wd] = s
		s.idle = time.AfterFunc(b.idle, func() { b.retire(wd, s) })
	}
	s.idle.Reset(b.idle)
	return s, nil
}

// retire stops an idle server.
func (b *lspBackend) retire(wd string, s *lspServer) {
	b.mu.Lock()
	if b.servers[wd] == s {
		delete(b.servers, wd)
	}
	b.mu.Unlock()
	s.stop()
}

func (b *lspBackend) close() {
	b.mu.Lock()
	servers := b.servers
	b.servers, b.closed = nil, true
	b.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range servers {
		s.idle.Stop()
		wg.Go(s.stop)
	}
	wg.Wait()
}

// --- tool bodies ---

// lspPosArg is the wire position of 1-based line and character arguments.
func lspPosArg(a lspArgs) (map[string]any, error) {
	if a.Line < 1 || a.Character < 1 {
		return nil, errors.New("line and character are 1-based and must be at least 1")
	}
	return map[string]any{"line": a.Line - 1, "character": a.Character - 1}, nil
}

// at sends a request about a position of the document.
func (d *lspDocCall) at(ctx context.Context, method string, a lspArgs, extra map[string]any) (json.RawMessage, error) {
	pos, err := lspPosArg(a)
	if err != nil {
		return nil, err
	}
	params := map[string]any{"textDocument": map[string]any{"uri": d.uri}, "position": pos}
	for k, v := range extra {
		params[k] = v
	}
	return d.s.call(ctx, method, params)
}

// lspEmpty reports a null or empty answer.
func lspEmpty(r json.RawMessage) bool {
	s := strings.TrimSpace(string(r))
	return s == "" || s == "null" || s == "[]"
}

func lspHover(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	res, err := d.at(ctx, "textDocument/hover", a, nil)
	if err != nil {
		return toolErrorf("Hover request failed: %v", err)
	}
	var h struct{ Contents any }
	if lspEmpty(res) || json.Unmarshal(res, &h) != nil || h.Contents == nil {
		return toolResult{Output: "No information available at this position"}
	}
	return toolResult{Output: toolsTruncate(lspMarkup(h.Contents))}
}

// lspMarkup renders MarkupContent, MarkedString or a list of them as text.
func lspMarkup(v any) string {
	switch c := v.(type) {
	case string:
		return c
	case map[string]any:
		if s, ok := c["value"].(string); ok {
			return s
		}
	case []any:
		var parts []string
		for _, e := range c {
			parts = append(parts, lspMarkup(e))
		}
		return strings.Join(parts, "\n\n")
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// lspLocations returns a tool body listing the Location(s) or LocationLink(s) method answers.
func lspLocations(method, none string) func(context.Context, *lspDocCall, lspArgs) toolResult {
	return func(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
		res, err := d.at(ctx, method, a, nil)
		if err != nil {
			return toolErrorf("%s request failed: %v", method, err)
		}
		return d.locations(res, none)
	}
}

func lspReferences(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	incl := a.IncludeDeclaration == nil || *a.IncludeDeclaration
	res, err := d.at(ctx, "textDocument/references", a, map[string]any{"context": map[string]any{"includeDeclaration": incl}})
	if err != nil {
		return toolErrorf("References request failed: %v", err)
	}
	return d.locations(res, "No references found")
}

// lspLoc is a Location or a LocationLink.
type lspLoc struct {
	URI                  string   `json:"uri"`
	Range                lspRange `json:"range"`
	TargetURI            string   `json:"targetUri"`
	TargetSelectionRange lspRange `json:"targetSelectionRange"`
}

func (d *lspDocCall) locations(res json.RawMessage, none string) toolResult {
	if lspEmpty(res) {
		return toolResult{Output: none}
	}
	var locs []lspLoc
	if strings.HasPrefix(strings.TrimSpace(string(res)), "{") {
		var one lspLoc
		json.Unmarshal(res, &one)
		locs = []lspLoc{one}
	} else if err := json.Unmarshal(res, &locs); err != nil {
		return toolErrorf("unexpected answer: %s", mcpTrim(string(res), 500))
	}
	lines := []string{fmt.Sprintf("Found %d location(s):", len(locs))}
	for _, l := range locs {
		if l.TargetURI != "" {
			l.URI, l.Range = l.TargetURI, l.TargetSelectionRange
		}
		lines = append(lines, "- "+d.where(l.URI, l.Range.Start))
	}
	return toolResult{Output: toolsTruncate(strings.Join(lines, "\n"))}
}

// show is how the model sees a file URI: relative to the working dir when inside it.
func (d *lspDocCall) show(uri string) string { return lspShow(d.env.WorkingDir, uri) }

func lspShow(wd, uri string) string {
	p := lspPath(uri)
	if p == "" {
		return uri
	}
	if rel, err := filepath.Rel(wd, p); err == nil && filepath.IsLocal(rel) {
		return filepath.ToSlash(rel)
	}
	return p
}

// where is file:line:column, 1-based.
func (d *lspDocCall) where(uri string, p lspPos) string {
	return fmt.Sprintf("%s:%d:%d", d.show(uri), p.Line+1, p.Character+1)
}

func lspDocumentSymbols(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	res, err := d.s.call(ctx, "textDocument/documentSymbol", map[string]any{"textDocument": map[string]any{"uri": d.uri}})
	if err != nil {
		return toolErrorf("Document symbols request failed: %v", err)
	}
	if lspEmpty(res) {
		return toolResult{Output: "No symbols found in file"}
	}
	return toolResult{Output: toolsTruncate(lspSymbols(d.env.WorkingDir, res))}
}

// lspSymbol is a DocumentSymbol (range, children) or a SymbolInformation (location).
type lspSymbol struct {
	Name          string      `json:"name"`
	Kind          int         `json:"kind"`
	Range         *lspRange   `json:"range"`
	Children      []lspSymbol `json:"children"`
	ContainerName string      `json:"containerName"`
	Location      *lspLoc     `json:"location"`
}

func lspSymbols(wd string, res json.RawMessage) string {
	var syms []lspSymbol
	if err := json.Unmarshal(res, &syms); err != nil {
		return string(res)
	}
	var lines []string
	var walk func([]lspSymbol, string)
	walk = func(list []lspSymbol, indent string) {
		for _, s := range list {
			line := fmt.Sprintf("%s- %s %s", indent, lspSymbolKind(s.Kind), s.Name)
			switch {
			case s.Location != nil:
				line += fmt.Sprintf(" (%s:%d)", lspShow(wd, s.Location.URI), s.Location.Range.Start.Line+1)
			case s.Range != nil:
				line += fmt.Sprintf(" (line %d)", s.Range.Start.Line+1)
			}
			if s.ContainerName != "" {
				line += " [in " + s.ContainerName + "]"
			}
			lines = append(lines, line)
			walk(s.Children, indent+"  ")
		}
	}
	walk(syms, "")
	return strings.Join(lines, "\n")
}

var lspSymbolKinds = []string{"File", "Module", "Namespace", "Package", "Class", "Method", "Property", "Field",
	"Constructor", "Enum", "Interface", "Function", "Variable", "Constant", "String", "Number", "Boolean",
	"Array", "Object", "Key", "Null", "EnumMember", "Struct", "Event", "Operator", "TypeParameter"}

func lspSymbolKind(k int) string {
	if k >= 1 && k <= len(lspSymbolKinds) {
		return lspSymbolKinds[k-1]
	}
	return fmt.Sprintf("Kind%d", k)
}

func lspWorkspaceSymbols(ctx context.Context, b *lspBackend, s *lspServer, a lspArgs) string {
	res, err := s.call(ctx, "workspace/symbol", map[string]any{"query": a.Query})
	switch {
	case err != nil:
		return fmt.Sprintf("[LSP %s] Error: Workspace symbols request failed: %v", b.command, err)
	case lspEmpty(res):
		return fmt.Sprintf("No symbols found matching '%s'", a.Query)
	}
	return lspSymbols(s.root, res)
}

func lspWorkspaceInfo(ctx context.Context, b *lspBackend, s *lspServer, a lspArgs) string {
	var out strings.Builder
	fmt.Fprintf(&out, "Workspace Information:\n- Root: %s\n- LSP Command: %s\n", s.root, b.command)
	s.mu.Lock()
	info, caps := s.info, s.caps
	s.mu.Unlock()
	if info.Name != "" {
		fmt.Fprintf(&out, "- Server: %s\n", strings.TrimSpace(info.Name+" "+info.Version))
	}
	types := "all"
	if len(b.fileTypes) > 0 {
		types = strings.Join(b.fileTypes, ", ")
	}
	fmt.Fprintf(&out, "- File types: %s\n\nAvailable Capabilities:\n", types)
	for _, c := range [][2]string{{"Hover", "hoverProvider"}, {"Go to Definition", "definitionProvider"},
		{"Find References", "referencesProvider"}, {"Find Implementations", "implementationProvider"},
		{"Document Symbols", "documentSymbolProvider"}, {"Workspace Symbols", "workspaceSymbolProvider"},
		{"Code Actions", "codeActionProvider"}, {"Formatting", "documentFormattingProvider"}, {"Rename", "renameProvider"},
		{"Call Hierarchy", "callHierarchyProvider"}, {"Type Hierarchy", "typeHierarchyProvider"},
		{"Signature Help", "signatureHelpProvider"}, {"Inlay Hints", "inlayHintProvider"}} {
		v, ok := caps[c[1]]
		yes := "Yes"
		if !ok || v == nil || v == false {
			yes = "No"
		}
		fmt.Fprintf(&out, "- %s: %s\n", c[0], yes)
	}
	return out.String()
}

var lspSeverities = []string{"Unknown", "Error", "Warning", "Info", "Hint"}

func lspDiagnostics(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	diags := d.s.diagnostics(ctx, d.uri, d.seq, d.sent)
	if len(diags) == 0 {
		return toolResult{Output: "No diagnostics for " + d.rel}
	}
	lines := []string{"Diagnostics for " + d.rel + ":"}
	for _, g := range diags {
		sev := lspSeverities[0]
		if g.Severity >= 1 && g.Severity < len(lspSeverities) {
			sev = lspSeverities[g.Severity]
		}
		lines = append(lines, fmt.Sprintf("- [%s] Line %d: %s", sev, g.Range.Start.Line+1, g.Message))
	}
	return toolResult{Output: toolsTruncate(strings.Join(lines, "\n"))}
}

func lspCodeActions(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	if a.StartLine < 1 {
		return toolErrorf("start_line is 1-based and must be at least 1")
	}
	end := max(a.EndLine, a.StartLine)
	var inRange []lspDiagnostic
	for _, g := range d.s.diagnostics(ctx, d.uri, d.seq, false) {
		if l := g.Range.Start.Line + 1; l >= a.StartLine && l <= end {
			inRange = append(inRange, g)
		}
	}
	res, err := d.s.call(ctx, "textDocument/codeAction", map[string]any{"textDocument": map[string]any{"uri": d.uri},
		"range":   lspRange{Start: lspPos{Line: a.StartLine - 1}, End: lspPos{Line: end - 1, Character: 1 << 20}},
		"context": map[string]any{"diagnostics": append([]lspDiagnostic{}, inRange...)}})
	if err != nil {
		return toolErrorf("Code actions request failed: %v", err)
	}
	var actions []struct {
		Title       string `json:"title"`
		Kind        string `json:"kind"`
		IsPreferred bool   `json:"isPreferred"`
	}
	if lspEmpty(res) || json.Unmarshal(res, &actions) != nil || len(actions) == 0 {
		return toolResult{Output: fmt.Sprintf("No code actions available for %s:%d", d.rel, a.StartLine)}
	}
	lines := []string{fmt.Sprintf("Available code actions for %s:%d:", d.rel, a.StartLine)}
	for i, act := range actions {
		kind, pref := act.Kind, ""
		if kind == "" {
			kind = "action"
		}
		if act.IsPreferred {
			pref = " (preferred)"
		}
		lines = append(lines, fmt.Sprintf("%d. [%s] %s%s", i+1, kind, act.Title, pref))
	}
	return toolResult{Output: toolsTruncate(strings.Join(lines, "\n"))}
}

// lspHierarchyItem is a CallHierarchyItem or TypeHierarchyItem.
type lspHierarchyItem struct {
	Name   string   `json:"name"`
	Kind   int      `json:"kind"`
	Detail string   `json:"detail"`
	URI    string   `json:"uri"`
	Range  lspRange `json:"range"`
}

func (d *lspDocCall) item(it lspHierarchyItem) string {
	s := fmt.Sprintf("- %s %s (%s:%d)", lspSymbolKind(it.Kind), it.Name, d.show(it.URI), it.Range.Start.Line+1)
	if it.Detail != "" {
		s += " [" + it.Detail + "]"
	}
	return s
}

// hierarchy prepares items at the position and asks method about each; pick extracts
// the related item of one answer entry.
func (d *lspDocCall) hierarchy(ctx context.Context, a lspArgs, prepare, method, heading string, pick func(json.RawMessage) lspHierarchyItem) toolResult {
	res, err := d.at(ctx, prepare, a, nil)
	if err != nil {
		return toolErrorf("%s failed: %v", prepare, err)
	}
	var items []json.RawMessage
	if lspEmpty(res) || json.Unmarshal(res, &items) != nil || len(items) == 0 {
		return toolResult{Output: "No hierarchy information available at this position"}
	}
	var lines []string
	for _, raw := range items {
		var it lspHierarchyItem
		json.Unmarshal(raw, &it)
		out, err := d.s.call(ctx, method, map[string]any{"item": raw})
		if err != nil {
			return toolErrorf("%s failed: %v", method, err)
		}
		var related []json.RawMessage
		json.Unmarshal(out, &related)
		if len(related) == 0 {
			lines = append(lines, fmt.Sprintf("No %s '%s'", strings.ToLower(heading), it.Name))
			continue
		}
		lines = append(lines, fmt.Sprintf("%s '%s':", heading, it.Name))
		for _, r := range related {
			lines = append(lines, d.item(pick(r)))
		}
	}
	return toolResult{Output: toolsTruncate(strings.Join(lines, "\n"))}
}

func lspCallHierarchy(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	field, heading := "from", "Incoming calls to"
	switch a.Direction {
	case "incoming":
	case "outgoing":
		field, heading = "to", "Outgoing calls from"
	default:
		return toolErrorf("direction must be 'incoming' or 'outgoing'")
	}
	return d.hierarchy(ctx, a, "textDocument/prepareCallHierarchy", "callHierarchy/"+a.Direction+"Calls", heading,
		func(r json.RawMessage) lspHierarchyItem {
			var call map[string]json.RawMessage
			var it lspHierarchyItem
			json.Unmarshal(r, &call)
			json.Unmarshal(call[field], &it)
			return it
		})
}

func lspTypeHierarchy(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	if a.Direction != "supertypes" && a.Direction != "subtypes" {
		return toolErrorf("direction must be 'supertypes' or 'subtypes'")
	}
	heading := strings.ToUpper(a.Direction[:1]) + a.Direction[1:] + " of"
	return d.hierarchy(ctx, a, "textDocument/prepareTypeHierarchy", "typeHierarchy/"+a.Direction, heading,
		func(r json.RawMessage) lspHierarchyItem {
			var it lspHierarchyItem
			json.Unmarshal(r, &it)
			return it
		})
}

func lspSignatureHelp(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	res, err := d.at(ctx, "textDocument/signatureHelp", a, nil)
	if err != nil {
		return toolErrorf("Signature help request failed: %v", err)
	}
	var h struct {
		Signatures []struct {
			Label         string `json:"label"`
			Documentation any    `json:"documentation"`
			Parameters    []struct {
				Label         any `json:"label"`
				Documentation any `json:"documentation"`
			} `json:"parameters"`
		} `json:"signatures"`
		ActiveSignature int `json:"activeSignature"`
		ActiveParameter int `json:"activeParameter"`
	}
	if lspEmpty(res) || json.Unmarshal(res, &h) != nil || len(h.Signatures) == 0 {
		return toolResult{Output: "No signature help available at this position"}
	}
	var lines []string
	for i, sig := range h.Signatures {
		active := ""
		if i == h.ActiveSignature {
			active = " [ACTIVE]"
		}
		lines = append(lines, fmt.Sprintf("Function: %s%s", sig.Label, active))
		if sig.Documentation != nil {
			lines = append(lines, lspMarkup(sig.Documentation))
		}
		for j, p := range sig.Parameters {
			mark := ""
			if j == h.ActiveParameter {
				mark = " [ACTIVE]"
			}
			label, ok := p.Label.(string)
			if !ok { // [start, end] offsets into the signature label
				label = fmt.Sprint(p.Label)
			}
			lines = append(lines, fmt.Sprintf("%d. %s%s", j+1, label, mark))
		}
	}
	return toolResult{Output: toolsTruncate(strings.Join(lines, "\n"))}
}

func lspInlayHints(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	start, end := max(a.StartLine, 1), a.EndLine
	if end < start {
		end = 1 << 20
	}
	res, err := d.s.call(ctx, "textDocument/inlayHint", map[string]any{"textDocument": map[string]any{"uri": d.uri},
		"range": lspRange{Start: lspPos{Line: start - 1}, End: lspPos{Line: end - 1}}})
	if err != nil {
		return toolErrorf("Inlay hints request failed: %v", err)
	}
	var hints []struct {
		Position lspPos `json:"position"`
		Label    any    `json:"label"`
		Kind     int    `json:"kind"`
	}
	if lspEmpty(res) || json.Unmarshal(res, &hints) != nil || len(hints) == 0 {
		return toolResult{Output: "No inlay hints for " + d.rel}
	}
	lines := []string{"Inlay hints for " + d.rel + ":"}
	for _, h := range hints {
		label, ok := h.Label.(string)
		if parts, isList := h.Label.([]any); !ok && isList {
			for _, p := range parts {
				if m, ok := p.(map[string]any); ok {
					v, _ := m["value"].(string)
					label += v
				}
			}
		}
		kind := map[int]string{1: "type", 2: "parameter"}[h.Kind]
		if kind == "" {
			kind = "hint"
		}
		lines = append(lines, fmt.Sprintf("- Line %d, Col %d: '%s' (%s)", h.Position.Line+1, h.Position.Character+1, label, kind))
	}
	return toolResult{Output: toolsTruncate(strings.Join(lines, "\n"))}
}

// --- edits (lsp_rename, lsp_format) ---

type lspTextEdit struct {
	Range   lspRange `json:"range"`
	NewText string   `json:"newText"`
}

func lspRename(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	if a.NewName == "" {
		return toolErrorf("new_name is required")
	}
	res, err := d.at(ctx, "textDocument/rename", a, map[string]any{"newName": a.NewName})
	if err != nil {
		return toolErrorf("Rename failed: %v", err)
	}
	var we struct {
		Changes         map[string][]lspTextEdit `json:"changes"`
		DocumentChanges []struct {
			Kind         string `json:"kind"`
			TextDocument struct {
				URI string `json:"uri"`
			} `json:"textDocument"`
			Edits []lspTextEdit `json:"edits"`
		} `json:"documentChanges"`
	}
	if lspEmpty(res) || json.Unmarshal(res, &we) != nil {
		return toolErrorf("Cannot rename symbol at this position")
	}
	edits := we.Changes
	if len(we.DocumentChanges) > 0 {
		edits = map[string][]lspTextEdit{}
		for _, dc := range we.DocumentChanges {
			if dc.Kind != "" {
				return toolErrorf("Rename needs a file %s operation, which is not supported", dc.Kind)
			}
			edits[dc.TextDocument.URI] = append(edits[dc.TextDocument.URI], dc.Edits...)
		}
	}
	counts, err := d.apply(edits)
	if err != nil {
		return toolErrorf("Rename not applied: %v", err)
	}
	if len(counts) == 0 {
		return toolResult{Output: "No changes were needed"}
	}
	lines := []string{fmt.Sprintf("Renamed to '%s'", a.NewName), fmt.Sprintf("Modified %d file(s):", len(counts))}
	for _, f := range slices.Sorted(maps.Keys(counts)) {
		lines = append(lines, fmt.Sprintf("- %s (%d change(s))", f, counts[f]))
	}
	return toolResult{Output: strings.Join(lines, "\n")}
}

func lspFormat(ctx context.Context, d *lspDocCall, a lspArgs) toolResult {
	res, err := d.s.call(ctx, "textDocument/formatting", map[string]any{"textDocument": map[string]any{"uri": d.uri},
		"options": map[string]any{"tabSize": 4, "insertSpaces": false}})
	if err != nil {
		return toolErrorf("Format request failed: %v", err)
	}
	var edits []lspTextEdit
	if lspEmpty(res) || json.Unmarshal(res, &edits) != nil || len(edits) == 0 {
		return toolResult{Output: "No formatting changes needed for " + d.rel}
	}
	if _, err := d.apply(map[string][]lspTextEdit{d.uri: edits}); err != nil {
		return toolErrorf("Failed to apply formatting: %v", err)
	}
	return toolResult{Output: fmt.Sprintf("Formatted %s\nApplied %d formatting change(s)", d.rel, len(edits))}
}

// apply writes edits to their files. Every file must be inside the working dir and not
// protected, and every edit must apply, before anything is written. The server is
// then told the new contents.
func (d *lspDocCall) apply(edits map[string][]lspTextEdit) (map[string]int, error) {
	type change struct {
		rel, uri, text string
		mode           os.FileMode
	}
	var changes []change
	counts := map[string]int{}
	for uri, list := range edits {
		if len(list) == 0 {
			continue
		}
		rel, err := fsLocal(d.env.WorkingDir, lspPath(uri))
		if err != nil {
			return nil, err
		}
		if d.m.blocks(d.root, rel) {
			return nil, fmt.Errorf(errProtected, rel)
		}
		info, err := d.root.Stat(rel)
		if err != nil {
			return nil, err
		}
		data, err := fsReadFile(d.root, rel)
		if err != nil {
			return nil, err
		}
		changes = append(changes, change{rel, uri, lspApplyEdits(string(data), list), info.Mode().Perm()})
		counts[rel] = len(list)
	}
	for _, c := range changes {
		if err := d.root.WriteFile(c.rel, []byte(c.text), c.mode); err != nil {
			return nil, err
		}
		d.s.sync(c.uri, c.text)
	}
	return counts, nil
}

// lspApplyEdits applies non-overlapping edits whose ranges refer to text as given.
func lspApplyEdits(text string, edits []lspTextEdit) string {
	type span struct {
		start, end int
		repl       string
	}
	spans := make([]span, 0, len(edits))
	for _, e := range edits {
		s, end := lspOffset(text, e.Range.Start), lspOffset(text, e.Range.End)
		spans = append(spans, span{s, max(s, end), e.NewText})
	}
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].start > spans[j].start })
	for _, s := range spans {
		text = text[:s.start] + s.repl + text[s.end:]
	}
	return text
}

// lspOffset is the byte offset of a position whose character counts UTF-16 code units
// (the protocol's default), clamped to the line and the text.
func lspOffset(text string, p lspPos) int {
	off := 0
	for range p.Line {
		i := strings.IndexByte(text[off:], '\n')
		if i < 0 {
			return len(text)
		}
		off += i + 1
	}
	units := 0
	for units < p.Character && off < len(text) && text[off] != '\n' {
		r, size := utf8.DecodeRuneInString(text[off:])
		units += len(utf16.Encode([]rune{r}))
		off += size
	}
	return off
}
