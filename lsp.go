package main

// lsp.go: a Language Server Protocol client over stdio (JSON-RPC 2.0 with
// Content-Length framing, https://microsoft.github.io/language-server-protocol/
// specifications/lsp/3.17/specification/). One lspServer is one language server
// process rooted at one working directory; tools_lsp.go turns it into the lsp_* tools.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	lspInitTimeout    = time.Minute      // initialize: servers index the workspace first
	lspRequestTimeout = 30 * time.Second // any other request
	lspDiagWait       = 2 * time.Second  // how long diagnostics of a changed file are awaited
	lspIdleTimeout    = 10 * time.Minute // an unused server is stopped
	lspStderrKeep     = 4 << 10          // bytes of stderr kept for error messages
)

// lspServer is one running language server. Requests may be made concurrently.
type lspServer struct {
	root    string // absolute working directory, the workspace root
	cmd     *exec.Cmd
	timeout time.Duration // of a request without a deadline of its own

	wmu   sync.Mutex // one framed message at a time on stdin
	stdin io.WriteCloser

	mu       sync.Mutex
	nextID   int64
	pending  map[int64]chan lspReply
	docs     map[string]*lspDoc // by URI
	diags    map[string][]lspDiagnostic
	diagSeq  map[string]int // publications per URI
	diagGen  chan struct{}  // closed and replaced on every publishDiagnostics
	exitErr  error          // set once the process is gone
	caps     map[string]any
	info     struct{ Name, Version string }
	idle     *time.Timer
	stderr   lspStderr
	exited   chan struct{}
	shutdown bool
}

// lspDoc is an open document: the text the server was last given and its version.
type lspDoc struct {
	text    string
	version int
}

type lspReply struct {
	result json.RawMessage
	err    error
}

type lspDiagnostic struct {
	Range    lspRange `json:"range"`
	Severity int      `json:"severity"`
	Source   string   `json:"source"`
	Message  string   `json:"message"`
}

type lspRange struct {
	Start lspPos `json:"start"`
	End   lspPos `json:"end"`
}

type lspPos struct {
	Line      int `json:"line"`
	Character int `json:"character"`
}

// lspStderr keeps the tail of the server's stderr for error messages.
type lspStderr struct {
	mu  sync.Mutex
	buf []byte
}

func (e *lspStderr) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.buf = append(e.buf, p...)
	if len(e.buf) > lspStderrKeep {
		e.buf = e.buf[len(e.buf)-lspStderrKeep:]
	}
	return len(p), nil
}

func (e *lspStderr) tail() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return strings.TrimSpace(string(e.buf))
}

// lspStart starts the server in its own process group (so stopping it also stops
// what it spawned), with the child environment allow-list plus env, and initializes it.
func lspStart(ctx context.Context, command string, args, env []string, root string, timeout time.Duration) (*lspServer, error) {
	cmd := exec.Command(command, args...)
	cmd.Env = childEnv(env...)
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &lspServer{root: root, cmd: cmd, timeout: timeout, pending: map[int64]chan lspReply{}, docs: map[string]*lspDoc{},
		diags: map[string][]lspDiagnostic{}, diagSeq: map[string]int{}, diagGen: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = &s.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", command, err)
	}
	s.stdin = stdin
	go s.readLoop(bufio.NewReader(stdout))
	if err := s.initialize(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

func (s *lspServer) initialize(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, lspInitTimeout)
	defer cancel()
	rootURI := lspURI(s.root)
	res, err := s.call(ctx, "initialize", map[string]any{
		"processId": os.Getpid(), "rootUri": rootURI, "rootPath": s.root,
		"workspaceFolders": []map[string]any{{"uri": rootURI, "name": filepath.Base(s.root)}},
		"capabilities":     lspClientCapabilities,
	})
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	var init struct {
		Capabilities map[string]any `json:"capabilities"`
		ServerInfo   struct{ Name, Version string }
	}
	json.Unmarshal(res, &init)
	s.mu.Lock()
	s.caps, s.info = init.Capabilities, init.ServerInfo
	s.mu.Unlock()
	return s.notify("initialized", map[string]any{})
}

// lspClientCapabilities tells the server what answers we can read.
var lspClientCapabilities = map[string]any{
	"textDocument": map[string]any{
		"synchronization":    map[string]any{"didSave": false},
		"hover":              map[string]any{"contentFormat": []string{"markdown", "plaintext"}},
		"definition":         map[string]any{},
		"references":         map[string]any{},
		"implementation":     map[string]any{},
		"documentSymbol":     map[string]any{"hierarchicalDocumentSymbolSupport": true},
		"publishDiagnostics": map[string]any{},
		"rename":             map[string]any{},
		"codeAction": map[string]any{"codeActionLiteralSupport": map[string]any{"codeActionKind": map[string]any{
			"valueSet": []string{"quickfix", "refactor", "refactor.extract", "refactor.inline", "refactor.rewrite", "source", "source.organizeImports"}}}},
		"formatting":    map[string]any{},
		"callHierarchy": map[string]any{},
		"typeHierarchy": map[string]any{},
		"signatureHelp": map[string]any{"signatureInformation": map[string]any{"documentationFormat": []string{"markdown", "plaintext"}}},
		"inlayHint":     map[string]any{},
	},
	"workspace": map[string]any{"symbol": map[string]any{}, "workspaceEdit": map[string]any{"documentChanges": true}, "configuration": true},
}

// lspMessage is any JSON-RPC message; which fields are set tells its kind.
type lspMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// readLoop reads framed messages until the server's stdout closes, then fails every
// pending request.
func (s *lspServer) readLoop(r *bufio.Reader) {
	var err error
	for {
		var body []byte
		if body, err = lspReadFrame(r); err != nil {
			break
		}
		var m lspMessage
		if json.Unmarshal(body, &m) != nil {
			continue
		}
		s.dispatch(&m)
	}
	werr := s.cmd.Wait()
	msg := "language server exited"
	if werr != nil {
		msg += ": " + werr.Error()
	}
	if tail := s.stderr.tail(); tail != "" {
		msg += " (stderr: " + mcpTrim(tail, 500) + ")"
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // helpers it left behind
	s.mu.Lock()
	s.exitErr = errors.New(msg)
	// Mark the server dead before failing its callers: one that retries at once must
	// find it gone and start a replacement, not reuse this one.
	close(s.exited)
	for id, ch := range s.pending {
		ch <- lspReply{err: s.exitErr}
		delete(s.pending, id)
	}
	s.mu.Unlock()
}

// lspReadFrame reads one `Content-Length: n\r\n\r\n<n bytes>` message.
func lspReadFrame(r *bufio.Reader) ([]byte, error) {
	n := -1
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if v, ok := strings.CutPrefix(strings.ToLower(line), "content-length:"); ok {
			if n, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return nil, fmt.Errorf("bad Content-Length %q", line)
			}
		}
	}
	if n < 0 || n > mcpMaxMessage {
		return nil, fmt.Errorf("bad or missing Content-Length (%d)", n)
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return body, err
}

// dispatch routes a response to its caller, stores diagnostics and answers the
// server's own requests (configuration, progress, registrations) so it never waits.
func (s *lspServer) dispatch(m *lspMessage) {
	switch {
	case m.Method == "" && len(m.ID) > 0:
		id, _ := strconv.ParseInt(string(m.ID), 10, 64)
		s.mu.Lock()
		ch := s.pending[id]
		delete(s.pending, id)
		s.mu.Unlock()
		if ch == nil {
			return
		}
		if m.Error != nil {
			ch <- lspReply{err: fmt.Errorf("LSP error %d: %s", m.Error.Code, m.Error.Message)}
		} else {
			ch <- lspReply{result: m.Result}
		}
	case m.Method == "textDocument/publishDiagnostics":
		var p struct {
			URI         string          `json:"uri"`
			Diagnostics []lspDiagnostic `json:"diagnostics"`
		}
		if json.Unmarshal(m.Params, &p) == nil {
			s.mu.Lock()
			s.diags[p.URI] = p.Diagnostics
			s.diagSeq[p.URI]++
			close(s.diagGen)
			s.diagGen = make(chan struct{})
			s.mu.Unlock()
		}
	case len(m.ID) > 0:
		var result any // null: accepted, nothing to say
		if m.Method == "workspace/configuration" {
			var p struct{ Items []any }
			json.Unmarshal(m.Params, &p)
			result = make([]any, len(p.Items))
		} else if m.Method == "workspace/applyEdit" {
			result = map[string]any{"applied": false, "failureReason": "edits are applied by the lsp_rename and lsp_format tools only"}
		}
		s.write(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result})
	}
}

func (s *lspServer) write(v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, err = fmt.Fprintf(s.stdin, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return err
}

func (s *lspServer) notify(method string, params any) error {
	return s.write(map[string]any{"jsonrpc": "2.0", "method": method, "params": params})
}

// call sends a request and waits for its answer, ctx's end (by default after
// s.timeout) or the server's exit.
func (s *lspServer) call(ctx context.Context, method string, params any) (json.RawMessage, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.timeout)
		defer cancel()
	}
	ch := make(chan lspReply, 1)
	s.mu.Lock()
	if s.exitErr != nil {
		s.mu.Unlock()
		return nil, s.exitErr
	}
	s.nextID++
	id := s.nextID
	s.pending[id] = ch
	s.mu.Unlock()
	if err := s.write(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params}); err != nil {
		s.forget(id)
		return nil, fmt.Errorf("writing to language server: %v", err)
	}
	select {
	case r := <-ch:
		return r.result, r.err
	case <-ctx.Done():
		s.forget(id)
		s.notify("$/cancelRequest", map[string]any{"id": id})
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("%s: the language server did not answer in time", method)
		}
		return nil, ctx.Err()
	}
}

func (s *lspServer) forget(id int64) {
	s.mu.Lock()
	delete(s.pending, id)
	s.mu.Unlock()
}

// alive reports whether the process is still running.
func (s *lspServer) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// stop asks the server to shut down, then kills its process group.
func (s *lspServer) stop() {
	s.mu.Lock()
	done := s.shutdown
	s.shutdown = true
	s.mu.Unlock()
	if done {
		return
	}
	if s.alive() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.call(ctx, "shutdown", nil)
		cancel()
		s.notify("exit", nil)
	}
	s.stdin.Close()
	select {
	case <-s.exited:
	case <-time.After(time.Second):
	}
	syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second): // a grandchild outside the group holds stdout
	}
}

// sync makes the server see text as the content of uri: didOpen the first time,
// didChange (full text) when the file changed since. sent tells whether anything was
// sent; seq is the count of uri's diagnostics publications before it.
func (s *lspServer) sync(uri, text string) (seq int, sent bool, err error) {
	s.mu.Lock()
	d := s.docs[uri]
	seq = s.diagSeq[uri]
	if d != nil && d.text == text {
		s.mu.Unlock()
		return seq, false, nil
	}
	if d == nil {
		s.docs[uri] = &lspDoc{text: text, version: 1}
		s.mu.Unlock()
		err = s.notify("textDocument/didOpen", map[string]any{"textDocument": map[string]any{
			"uri": uri, "languageId": lspLanguageID(uri), "version": 1, "text": text}})
		return seq, true, err
	}
	d.text = text
	d.version++
	v := d.version
	s.mu.Unlock()
	err = s.notify("textDocument/didChange", map[string]any{"textDocument": map[string]any{"uri": uri, "version": v},
		"contentChanges": []map[string]any{{"text": text}}})
	return seq, true, err
}

// diagnostics returns uri's diagnostics; when wait is set it first waits (up to
// lspDiagWait) for a publication for uri after the seq-th.
func (s *lspServer) diagnostics(ctx context.Context, uri string, seq int, wait bool) []lspDiagnostic {
	timer := time.NewTimer(lspDiagWait)
	defer timer.Stop()
	for wait {
		s.mu.Lock()
		gen := s.diagGen
		wait = s.diagSeq[uri] == seq
		s.mu.Unlock()
		if !wait {
			break
		}
		select {
		case <-gen:
		case <-timer.C:
			wait = false
		case <-ctx.Done():
			wait = false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.diags[uri]
}

// lspURI is the file:// URI of an absolute path.
func lspURI(p string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(p)}).String()
}

// lspPath is the absolute path of a file:// URI ("" for other URIs).
func lspPath(uri string) string {
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "file" {
		return ""
	}
	return filepath.FromSlash(u.Path)
}

// lspLanguageIDs maps extensions to LSP language identifiers (the common ones).
var lspLanguageIDs = map[string]string{
	".go": "go", ".py": "python", ".js": "javascript", ".jsx": "javascriptreact", ".ts": "typescript",
	".tsx": "typescriptreact", ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp",
	".java": "java", ".rb": "ruby", ".php": "php", ".cs": "csharp", ".swift": "swift", ".kt": "kotlin",
	".scala": "scala", ".lua": "lua", ".sh": "shellscript", ".sql": "sql", ".html": "html", ".css": "css",
	".json": "json", ".yaml": "yaml", ".yml": "yaml", ".md": "markdown", ".zig": "zig", ".ex": "elixir",
	".hs": "haskell", ".ml": "ocaml", ".dart": "dart", ".tf": "terraform", ".vue": "vue", ".svelte": "svelte",
}

func lspLanguageID(uri string) string {
	if id, ok := lspLanguageIDs[strings.ToLower(filepath.Ext(uri))]; ok {
		return id
	}
	return "plaintext"
}
