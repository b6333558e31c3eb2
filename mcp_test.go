package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---- a fake MCP server, spoken to over stdio (this test binary re-executed), streamable
// HTTP and legacy HTTP+SSE. It implements just enough of the 2025-06-18 protocol.

// fakeMCPMsg is an incoming JSON-RPC message on the fake server.
type fakeMCPMsg struct {
	ID     json.RawMessage `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// fakeMCP is the protocol core; out functions passed to handle carry messages to the client.
type fakeMCP struct {
	mu        sync.Mutex
	nextID    int
	waits     map[string]chan json.RawMessage // our elicitation request id → client result
	inflight  map[string]context.CancelFunc
	cancelled []string
	added     bool
	calls     []string // tool names called
	extra     []string // more tool names to list (no tools/call behaviour)
}

func newFakeMCP() *fakeMCP {
	return &fakeMCP{waits: map[string]chan json.RawMessage{}, inflight: map[string]context.CancelFunc{}}
}

var fakeMCPToolNames = []string{"echo", "image", "fail", "ask", "slow", "cancelled", "add", "crash", "pid", "env", "cwd"}

func (f *fakeMCP) toolList() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []map[string]any
	for _, n := range fakeMCPToolNames {
		t := map[string]any{"name": n, "description": "fake " + n,
			"inputSchema": map[string]any{"type": "object", "properties": map[string]any{"text": map[string]any{"type": "string"}}}}
		if n == "echo" {
			t["annotations"] = map[string]any{"readOnlyHint": true, "title": "Echo"}
		}
		if n == "fail" {
			t["annotations"] = map[string]any{"destructiveHint": false}
		}
		out = append(out, t)
	}
	if f.added {
		out = append(out, map[string]any{"name": "added", "inputSchema": map[string]any{"type": "object"}})
	}
	for _, n := range f.extra {
		out = append(out, map[string]any{"name": n, "inputSchema": map[string]any{"type": "object"}})
	}
	return out
}

// handleInline processes client responses and notifications; it reports whether m was one.
func (f *fakeMCP) handleInline(m fakeMCPMsg) bool {
	if m.Method == "" {
		f.mu.Lock()
		ch := f.waits[string(m.ID)]
		f.mu.Unlock()
		if ch != nil {
			ch <- m.Result
		}
		return true
	}
	if len(m.ID) > 0 {
		return false
	}
	if m.Method == "notifications/cancelled" {
		var p struct {
			RequestID json.RawMessage `json:"requestId"`
		}
		json.Unmarshal(m.Params, &p)
		f.mu.Lock()
		f.cancelled = append(f.cancelled, string(p.RequestID))
		if c := f.inflight[string(p.RequestID)]; c != nil {
			c()
		}
		f.mu.Unlock()
	}
	return true
}

// handle answers a client request; out sends to the client (responses, requests, notifications).
func (f *fakeMCP) handle(m fakeMCPMsg, out func(any)) {
	reply := func(result any) { out(map[string]any{"jsonrpc": "2.0", "id": m.ID, "result": result}) }
	text := func(s string) map[string]any {
		return map[string]any{"content": []any{map[string]any{"type": "text", "text": s}}}
	}
	switch m.Method {
	case "initialize":
		var p struct {
			ProtocolVersion string `json:"protocolVersion"`
			Capabilities    map[string]any
		}
		json.Unmarshal(m.Params, &p)
		if _, ok := p.Capabilities["elicitation"]; !ok {
			out(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32602, "message": "no elicitation capability"}})
			return
		}
		reply(map[string]any{"protocolVersion": p.ProtocolVersion, "capabilities": map[string]any{"tools": map[string]any{"listChanged": true}},
			"serverInfo": map[string]any{"name": "fake", "version": "1"}, "instructions": "Fake server instructions."})
	case "ping":
		reply(map[string]any{})
	case "tools/list":
		var p struct{ Cursor string }
		json.Unmarshal(m.Params, &p)
		all := f.toolList()
		start, _ := strconv.Atoi(p.Cursor)
		end := min(start+3, len(all)) // small pages so pagination is exercised
		res := map[string]any{"tools": all[start:end]}
		if end < len(all) {
			res["nextCursor"] = strconv.Itoa(end)
		}
		reply(res)
	case "tools/call":
		var p struct {
			Name      string
			Arguments map[string]any
		}
		json.Unmarshal(m.Params, &p)
		f.mu.Lock()
		f.calls = append(f.calls, p.Name)
		f.mu.Unlock()
		arg, _ := p.Arguments["text"].(string)
		switch p.Name {
		case "echo":
			reply(text(arg))
		case "image":
			reply(map[string]any{"content": []any{
				map[string]any{"type": "text", "text": "a picture"},
				map[string]any{"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
				map[string]any{"type": "text", "text": "of nothing"},
			}, "structuredContent": map[string]any{"w": 1}})
		case "fail":
			r := text("boom")
			r["isError"] = true
			reply(r)
		case "ask":
			f.mu.Lock()
			f.nextID++
			id := fmt.Sprintf(`"srv-%d"`, f.nextID)
			ch := make(chan json.RawMessage, 1)
			f.waits[id] = ch
			f.mu.Unlock()
			out(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": "elicitation/create", "params": map[string]any{
				"message":         "Your name?",
				"requestedSchema": map[string]any{"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}},
			}})
			reply(text(string(<-ch)))
		case "slow":
			ctx, cancel := context.WithCancel(context.Background())
			f.mu.Lock()
			f.inflight[string(m.ID)] = cancel
			f.mu.Unlock()
			out(map[string]any{"jsonrpc": "2.0", "method": "notifications/message", "params": map[string]any{"level": "info", "data": "slow started"}})
			select {
			case <-ctx.Done():
				return // cancelled requests get no response
			case <-time.After(time.Minute):
				reply(text("done"))
			}
		case "cancelled":
			f.mu.Lock()
			s := strings.Join(f.cancelled, ",")
			f.mu.Unlock()
			reply(text(s))
		case "add":
			f.mu.Lock()
			f.added = true
			f.mu.Unlock()
			out(map[string]any{"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
			reply(text("ok"))
		case "crash":
			os.Exit(3)
		case "pid":
			reply(text(strconv.Itoa(os.Getpid())))
		case "env":
			reply(text(os.Getenv(arg)))
		case "cwd":
			wd, _ := os.Getwd()
			reply(text(wd))
		default:
			out(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32602, "message": "unknown tool " + p.Name}})
		}
	default:
		out(map[string]any{"jsonrpc": "2.0", "id": m.ID, "error": map[string]any{"code": -32601, "message": "no " + m.Method}})
	}
}

// TestMain lets the test binary double as the fake MCP server: re-executed with
// MCP_TEST_SERVER=1 it serves stdio instead of running tests.
func TestMain(m *testing.M) {
	if os.Getenv("MCP_TEST_SERVER") == "1" {
		runFakeMCPServer()
		os.Exit(0)
	}
	if os.Getenv("LSP_TEST_SERVER") == "1" {
		runFakeLSPServer()
		os.Exit(0)
	}
	if p := os.Getenv("AGENTD_TEST_OPEN_STORE"); p != "" {
		os.Exit(testOpenStoreMain(p))
	}
	if args := os.Getenv("AGENTD_TEST_SERVE"); args != "" {
		// main's serve path: SIGTERM and SIGINT shut down gracefully, as in main.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, strings.Split(args, "\n"), os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// runFakeMCPServer is the fake server's stdio process.
func runFakeMCPServer() {
	if p := os.Getenv("MCP_TEST_STARTS"); p != "" {
		fh, _ := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		fmt.Fprintln(fh, os.Getpid())
		fh.Close()
	}
	fmt.Fprintln(os.Stderr, "fake server starting")
	if os.Getenv("MCP_TEST_MODE") == "exit" {
		fmt.Fprintln(os.Stderr, "fatal: bad config")
		os.Exit(2)
	}
	f := newFakeMCP()
	var wmu sync.Mutex
	out := func(v any) {
		b, _ := json.Marshal(v)
		wmu.Lock()
		os.Stdout.Write(append(b, '\n'))
		wmu.Unlock()
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m fakeMCPMsg
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if !f.handleInline(m) {
			go f.handle(m, out)
		}
		if m.Method == "tools/call" && os.Getenv("MCP_TEST_MODE") == "deaf" {
			select {} // stop reading stdin: the client's writes will fill the pipe
		}
	}
	os.Exit(0) // stdin closed: the client is done with us
}

// mcpTestLog is a slog handler that forwards to t.Logf and lets a test wait for a message.
type mcpTestLog struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
	watch map[string]chan struct{}
}

func (h *mcpTestLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *mcpTestLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *mcpTestLog) WithGroup(string) slog.Handler            { return h }
func (h *mcpTestLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
	line := b.String()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, line)
	for k, ch := range h.watch {
		if strings.Contains(line, k) {
			close(ch)
			delete(h.watch, k)
		}
	}
	return nil
}

// waitFor returns a channel closed when a log line containing s appears.
func (h *mcpTestLog) waitFor(s string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan struct{})
	if h.watch == nil {
		h.watch = map[string]chan struct{}{}
	}
	h.watch[s] = ch
	return ch
}

func (h *mcpTestLog) contains(s string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.ContainsFunc(h.lines, func(l string) bool { return strings.Contains(l, s) })
}

func mcpOrdered(kv ...string) *orderedMap[string] {
	m := &orderedMap[string]{Values: map[string]string{}}
	for i := 0; i < len(kv); i += 2 {
		m.Keys = append(m.Keys, kv[i])
		m.Values[kv[i]] = kv[i+1]
	}
	return m
}

// newStdioMCP builds a toolset running the fake server; extraEnv are more env entries.
func newStdioMCP(t *testing.T, ts *toolsetConfig, getenv func(string) string, extraEnv ...string) (*mcpToolset, *mcpTestLog, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ts.Type = "mcp"
	ts.Command = exe
	ts.Args = []string{"-test.run=^$"}
	// Under -race the helper would sleep 1s at exit to flush reports; nothing to wait for here.
	ts.Env = mcpOrdered(append([]string{"MCP_TEST_SERVER", "1", "GORACE", "atexit_sleep_ms=0"}, extraEnv...)...)
	lg := &mcpTestLog{t: t}
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	dir := t.TempDir()
	got, err := newMCPToolset(ts, toolsetOptions{WorkingDir: dir, Getenv: getenv, Logger: slog.New(lg)})
	if err != nil {
		t.Fatalf("newMCPToolset: %v", err)
	}
	m := got.(*mcpToolset)
	m.backoffBase = time.Millisecond
	m.backoffMax = 5 * time.Millisecond
	t.Cleanup(func() { m.close() })
	return m, lg, dir
}

func mcpToolNames(tools []tool) []string {
	var names []string
	for _, t := range tools {
		names = append(names, t.def.Name)
	}
	return names
}

// mcpRun calls the named tool.
func mcpRun(t *testing.T, ts toolset, env *toolEnv, name, args string) toolResult {
	t.Helper()
	tools, err := ts.tools(context.Background())
	if err != nil {
		t.Fatalf("tools: %v", err)
	}
	for _, tl := range tools {
		if tl.def.Name == name {
			return tl.run(context.Background(), env, json.RawMessage(args))
		}
	}
	t.Fatalf("no tool %q in %v", name, mcpToolNames(tools))
	return toolResult{}
}

func TestMCPStdioListAndCall(t *testing.T) {
	t.Parallel()
	m, lg, dir := newStdioMCP(t, &toolsetConfig{Instruction: "Use it.\n{ORIGINAL_INSTRUCTIONS}"},
		func(k string) string { return map[string]string{"GREETING": "hi there"}[k] },
		"FAKE_GREETING", "${GREETING}!", "HOME", "/overridden")
	ctx := context.Background()
	tools, err := m.tools(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := mcpToolNames(tools); !slices.Equal(got, fakeMCPToolNames) { // 11 tools over 4 pages
		t.Errorf("tools() = %v; want %v", got, fakeMCPToolNames)
	}
	echo := tools[0].def
	if echo.Category != "mcp" || !echo.Annotations.ReadOnlyHint || echo.Annotations.Title != "Echo" || !strings.Contains(string(echo.Parameters), `"text"`) {
		t.Errorf("echo def = %+v", echo)
	}
	if d := tools[2].def.Annotations.DestructiveHint; d == nil || *d {
		t.Errorf("fail destructiveHint = %v; want false", d)
	}
	if got, want := m.instruction(), "Use it.\nFake server instructions."; got != want {
		t.Errorf("instruction() = %q; want %q", got, want)
	}

	tests := []struct {
		name, tool, args string
		want             toolResult
	}{
		{"text", "echo", `{"text":"hello"}`, toolResult{Output: "hello"}},
		{"image", "image", `{}`, toolResult{Output: "a picture\nof nothing", Images: []mediaContent{{Data: "aGVsbG8=", MimeType: "image/png"}},
			StructuredContent: map[string]any{"w": float64(1)}}},
		{"error result", "fail", ``, toolResult{Output: "boom", IsError: true}},
		{"expanded env", "env", `{"text":"FAKE_GREETING"}`, toolResult{Output: "hi there!"}},
		// The reference appends the process env after the toolset's, so the process wins; ours wins.
		{"config env beats process env", "env", `{"text":"HOME"}`, toolResult{Output: "/overridden"}},
		{"working dir", "cwd", `{}`, toolResult{Output: dir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mcpRun(t, m, &toolEnv{}, tt.tool, tt.args)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s(%s) = %+v; want %+v", tt.tool, tt.args, got, tt.want)
			}
		})
	}
	if !lg.contains("fake server starting") {
		t.Errorf("server stderr not logged; log: %v", lg.lines)
	}
}

func TestMCPNamePrefixAndAllowList(t *testing.T) {
	t.Parallel()
	m, _, _ := newStdioMCP(t, &toolsetConfig{Name: "fk", Tools: []string{"echo", "fk_fail"}}, nil)
	tools, err := m.tools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mcpToolNames(tools), []string{"fk_echo", "fk_fail"}; !slices.Equal(got, want) {
		t.Fatalf("tools() = %v; want %v", got, want)
	}
	if got := mcpRun(t, m, nil, "fk_echo", `{"text":"x"}`); got.Output != "x" {
		t.Errorf("fk_echo = %+v; want x", got)
	}
}

func TestMCPListChanged(t *testing.T) {
	t.Parallel()
	m, _, _ := newStdioMCP(t, &toolsetConfig{}, nil)
	if got := mcpRun(t, m, nil, "add", `{}`); got.Output != "ok" {
		t.Fatalf("add = %+v", got)
	}
	// The notification precedes the response on the wire, so it has been handled.
	tools, err := m.tools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if names := mcpToolNames(tools); !slices.Contains(names, "added") {
		t.Errorf("after list_changed tools() = %v; want it to include added", names)
	}
}

// mcpElicitCases are the client answers every transport is checked with.
var mcpElicitCases = []struct {
	name   string
	answer *elicitationResponse // nil: no Elicit func (no client can answer)
	want   string
}{
	{"accept", &elicitationResponse{Action: "accept", Content: map[string]any{"name": "Ann"}}, `{"action":"accept","content":{"name":"Ann"}}`},
	{"decline", &elicitationResponse{Action: "decline", Content: map[string]any{"ignored": true}}, `{"action":"decline"}`},
	{"cancel", &elicitationResponse{Action: "cancel"}, `{"action":"cancel"}`},
	{"no client", nil, `{"action":"cancel"}`},
}

func checkMCPElicitation(t *testing.T, ts toolset) {
	for _, tt := range mcpElicitCases {
		t.Run(tt.name, func(t *testing.T) {
			env := &toolEnv{SessionID: "s1"}
			var asked elicitationRequest
			if tt.answer != nil {
				env.Elicit = func(ctx context.Context, req elicitationRequest) (elicitationResponse, error) {
					asked = req
					return *tt.answer, nil
				}
			}
			got := mcpRun(t, ts, env, "ask", `{}`)
			if got.Output != tt.want || got.IsError {
				t.Errorf("ask = %+v; want output %s", got, tt.want)
			}
			if tt.answer != nil && (asked.Message != "Your name?" || !strings.Contains(string(asked.Schema), `"name"`)) {
				t.Errorf("Elicit got %+v; want the server's message and schema", asked)
			}
		})
	}
}

func TestMCPStdioElicitation(t *testing.T) {
	t.Parallel()
	m, _, _ := newStdioMCP(t, &toolsetConfig{}, nil)
	checkMCPElicitation(t, m)
}

func TestMCPCrashRestart(t *testing.T) {
	t.Parallel()
	starts := filepath.Join(t.TempDir(), "starts")
	m, _, _ := newStdioMCP(t, &toolsetConfig{}, nil, "MCP_TEST_STARTS", starts)
	pid1 := mcpRun(t, m, nil, "pid", `{}`).Output
	got := mcpRun(t, m, nil, "crash", `{}`)
	if !got.IsError || !strings.Contains(got.Output, "exit status 3") {
		t.Errorf("crash = %+v; want an error naming the exit status", got)
	}
	pid2 := mcpRun(t, m, nil, "pid", `{}`).Output
	if pid2 == "" || pid2 == pid1 {
		t.Errorf("pid after crash = %q, before %q; want a new process", pid2, pid1)
	}
	b, _ := os.ReadFile(starts)
	if n := strings.Count(string(b), "\n"); n != 2 {
		t.Errorf("server started %d times; want 2", n)
	}
}

func TestMCPStartsOnceAndCloses(t *testing.T) {
	t.Parallel()
	starts := filepath.Join(t.TempDir(), "starts")
	m, _, _ := newStdioMCP(t, &toolsetConfig{}, nil, "MCP_TEST_STARTS", starts)
	var wg sync.WaitGroup
	for range 8 { // sessions sharing the toolset
		wg.Go(func() {
			if _, err := m.tools(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b, _ := os.ReadFile(starts)
	if n := strings.Count(string(b), "\n"); n != 1 {
		t.Fatalf("server started %d times for 8 concurrent tools(); want 1", n)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := m.close(); err != nil {
		t.Fatal(err)
	}
	if err := m.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("server process %d still exists after close (kill: %v)", pid, err)
	}
	if _, err := m.tools(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("tools() after close = %v; want a closed error", err)
	}
}

func TestMCPGivesUpOnDyingServer(t *testing.T) {
	t.Parallel()
	m, _, _ := newStdioMCP(t, &toolsetConfig{}, nil, "MCP_TEST_MODE", "exit")
	var err error
	for i := 0; i <= m.maxRestarts; i++ {
		_, err = m.tools(context.Background())
		if err == nil || !strings.Contains(err.Error(), "fatal: bad config") {
			t.Fatalf("tools() attempt %d = %v; want the server's stderr in the error", i, err)
		}
	}
	_, err = m.tools(context.Background())
	if err == nil || !strings.Contains(err.Error(), "giving up") {
		t.Errorf("tools() after %d failures = %v; want giving up", m.maxRestarts+1, err)
	}
}

func TestMCPCancellation(t *testing.T) {
	t.Parallel()
	m, lg, _ := newStdioMCP(t, &toolsetConfig{}, nil)
	tools, err := m.tools(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slow := tools[slices.Index(fakeMCPToolNames, "slow")]
	ctx, cancel := context.WithCancel(context.Background())
	started := lg.waitFor("slow started")
	go func() { <-started; cancel() }()
	got := slow.run(ctx, &toolEnv{}, json.RawMessage(`{}`))
	if !got.IsError || !strings.Contains(got.Output, "canceled") {
		t.Errorf("cancelled slow = %+v; want a cancellation error", got)
	}
	if c := mcpRun(t, m, nil, "cancelled", `{}`).Output; c == "" {
		t.Errorf("server saw no notifications/cancelled")
	}
}

func TestMCPTimeout(t *testing.T) {
	t.Parallel()
	m, _, _ := newStdioMCP(t, &toolsetConfig{}, nil)
	m.callTimeout = 200 * time.Millisecond
	got := mcpRun(t, m, nil, "slow", `{}`)
	if !got.IsError || !strings.Contains(got.Output, "timed out after 200ms") {
		t.Errorf("slow = %+v; want a timeout error", got)
	}
	m.callTimeout = time.Minute
	if c := mcpRun(t, m, nil, "cancelled", `{}`).Output; c == "" {
		t.Errorf("server saw no notifications/cancelled after the timeout")
	}
}

func TestMCPConfigErrors(t *testing.T) {
	t.Parallel()
	opts := toolsetOptions{Getenv: func(string) string { return "" }}
	tests := []struct {
		name string
		ts   toolsetConfig
		want string
	}{
		{"unset env", toolsetConfig{Command: "sh", Env: mcpOrdered("A", "x", "B", "pre-${NOPE}")}, `environment variable "NOPE" not set`},
		{"missing binary", toolsetConfig{Command: "agentd-no-such-mcp-server"}, `not found`},
		{"no transport", toolsetConfig{Remote: remoteConfig{URL: "http://localhost/"}}, "unsupported transport type: "},
		{"bad transport", toolsetConfig{Remote: remoteConfig{URL: "http://localhost/", TransportType: "ws"}}, "unsupported transport type: ws"},
		{"nothing", toolsetConfig{}, "either command, remote or ref must be set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newMCPToolset(&tt.ts, opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("newMCPToolset(%+v) = %v; want error containing %q", tt.ts, err, tt.want)
			}
		})
	}
}

func TestMCPExpandTemplate(t *testing.T) {
	t.Parallel()
	env := map[string]string{"TOKEN": "s3cr3t", "HOST": "example.com"}
	getenv := func(k string) string { return env[k] }
	tests := []struct{ in, want string }{
		{"Bearer ${env.TOKEN}", "Bearer s3cr3t"},
		{"https://${env.HOST}/mcp?k=${env.TOKEN}", "https://example.com/mcp?k=s3cr3t"},
		{"${env.MISSING}", ""},
		{"${env.MISSING || 'dflt'}", "dflt"},
		{`${env.MISSING || env.HOST || "x"}`, "example.com"},
		{"${TOKEN} and ${env.TOKEN}", "${TOKEN} and ${env.TOKEN}"}, // a JS error leaves the string alone
		{"no template $TOKEN", "no template $TOKEN"},
		{"${env.TOKEN", "${env.TOKEN"},
	}
	for _, tt := range tests {
		if got := expandEnvTemplate(tt.in, getenv); got != tt.want {
			t.Errorf("expandEnvTemplate(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestMCPToolResult(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, raw string
		want      toolResult
	}{
		{"audio and text resource", `{"content":[{"type":"audio","data":"QQ==","mimeType":"audio/wav"},{"type":"resource","resource":{"uri":"file:///a","text":"body"}}]}`,
			toolResult{Output: "body", Audios: []mediaContent{{Data: "QQ==", MimeType: "audio/wav"}}}},
		{"blob resources", `{"content":[{"type":"resource","resource":{"uri":"u","mimeType":"image/gif","blob":"R0"}},{"type":"resource","resource":{"uri":"file:///b","mimeType":"application/zip","blob":"UEs="}}]}`,
			toolResult{Output: "[binary resource file:///b (application/zip)]", Images: []mediaContent{{Data: "R0", MimeType: "image/gif"}}}},
		{"resource link", `{"content":[{"type":"resource_link","uri":"file:///x","name":"x"}]}`, toolResult{Output: "Resource link: x (file:///x)"}},
		{"structured only", `{"content":[],"structuredContent":{"a":[1]}}`, toolResult{Output: `{"a":[1]}`, StructuredContent: map[string]any{"a": []any{float64(1)}}}},
	}
	for _, tt := range tests {
		if got := mcpToolResult(json.RawMessage(tt.raw)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: mcpToolResult(%s) = %+v; want %+v", tt.name, tt.raw, got, tt.want)
		}
	}
}

// ---- Streamable HTTP

// fakeStreamable serves the fake over Streamable HTTP, answering requests with JSON or SSE.
type fakeStreamable struct {
	t   testing.TB
	f   *fakeMCP
	sse bool

	mu       sync.Mutex
	sessions map[string]bool
	inits    int
	deleted  []string
	expire   bool // forget every session (as after a server restart)

	// JSON mode serves a GET stream; notifications go there.
	getOnce  sync.Once
	getReady chan struct{} // closed when the GET stream is open
	getOut   func(any)
}

func (s *fakeStreamable) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Authorization"); got != "Bearer s3cr3t" {
		s.t.Errorf("%s Authorization = %q; want the expanded header", r.Method, got)
	}
	sid := r.Header.Get("Mcp-Session-Id")
	s.mu.Lock()
	if s.expire {
		s.sessions, s.expire = map[string]bool{}, false
	}
	known := s.sessions[sid]
	s.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
		if s.sse || !known {
			http.Error(w, "no server stream", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		http.NewResponseController(w).Flush()
		var wmu sync.Mutex
		done := false
		s.mu.Lock()
		s.getOut = func(v any) {
			b, _ := json.Marshal(v)
			wmu.Lock()
			defer wmu.Unlock()
			if !done {
				fmt.Fprintf(w, "data: %s\n\n", b)
				http.NewResponseController(w).Flush()
			}
		}
		s.mu.Unlock()
		s.getOnce.Do(func() { close(s.getReady) })
		<-r.Context().Done()
		wmu.Lock()
		done = true
		wmu.Unlock()
		return
	case http.MethodDelete:
		s.mu.Lock()
		s.deleted = append(s.deleted, sid)
		s.mu.Unlock()
		return
	}
	if a := r.Header.Get("Accept"); !strings.Contains(a, "application/json") || !strings.Contains(a, "text/event-stream") {
		s.t.Errorf("POST Accept = %q", a)
	}
	var m fakeMCPMsg
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if m.Method == "initialize" {
		s.mu.Lock()
		s.inits++
		sid = fmt.Sprintf("sess-%d", s.inits)
		s.sessions[sid] = true
		s.mu.Unlock()
		w.Header().Set("Mcp-Session-Id", sid)
	} else {
		if !known {
			http.Error(w, "unknown session", http.StatusNotFound)
			return
		}
		if v := r.Header.Get("MCP-Protocol-Version"); v != mcpProtocolVersion {
			s.t.Errorf("%s MCP-Protocol-Version = %q", m.Method, v)
		}
	}
	if s.f.handleInline(m) {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if !s.sse {
		var resp any
		s.f.handle(m, func(v any) {
			if mm, ok := v.(map[string]any); ok && mm["id"] != nil && mm["method"] == nil {
				resp = v
			} else if ok && mm["id"] == nil { // a notification: only the GET stream can carry it
				s.mu.Lock()
				out := s.getOut
				s.mu.Unlock()
				if out != nil {
					out(v)
				}
			}
		})
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	var wmu sync.Mutex
	s.f.handle(m, func(v any) {
		b, _ := json.Marshal(v)
		wmu.Lock()
		defer wmu.Unlock()
		fmt.Fprintf(w, "event: message\ndata: %s\n\n", b)
		http.NewResponseController(w).Flush()
	})
}

func newHTTPMCP(t testing.TB, url, transport string) *mcpToolset {
	t.Helper()
	ts := &toolsetConfig{Type: "mcp", Remote: remoteConfig{URL: url, TransportType: transport,
		Headers: mcpOrdered("Authorization", "Bearer ${env.TOKEN}")}}
	got, err := newMCPToolset(ts, toolsetOptions{Getenv: func(k string) string { return map[string]string{"TOKEN": "s3cr3t"}[k] },
		Logger: slog.New(&mcpTestLog{t: t})})
	if err != nil {
		t.Fatal(err)
	}
	m := got.(*mcpToolset)
	m.backoffBase = time.Millisecond
	t.Cleanup(func() { m.close() })
	return m
}

func TestMCPStreamable(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"json", "sse"} {
		t.Run(mode, func(t *testing.T) {
			fs := &fakeStreamable{t: t, f: newFakeMCP(), sse: mode == "sse", sessions: map[string]bool{}, getReady: make(chan struct{})}
			srv := httptest.NewServer(fs)
			t.Cleanup(srv.Close) // registered first so the toolset closes its GET stream before
			m := newHTTPMCP(t, srv.URL+"/mcp", "streamable")
			tools, err := m.tools(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := mcpToolNames(tools); !slices.Equal(got, fakeMCPToolNames) {
				t.Errorf("tools() = %v", got)
			}
			if got := mcpRun(t, m, nil, "echo", `{"text":"hi"}`); got.Output != "hi" {
				t.Errorf("echo = %+v", got)
			}
			if got := mcpRun(t, m, nil, "image", `{}`); len(got.Images) != 1 {
				t.Errorf("image = %+v", got)
			}
			if got := mcpRun(t, m, nil, "fail", `{}`); !got.IsError {
				t.Errorf("fail = %+v", got)
			}
			if mode == "sse" {
				checkMCPElicitation(t, m)
				mcpRun(t, m, nil, "add", `{}`)
				tools, _ := m.tools(context.Background())
				if !slices.Contains(mcpToolNames(tools), "added") {
					t.Errorf("list_changed on the response stream did not refresh tools")
				}
			} else {
				<-fs.getReady
				mcpRun(t, m, nil, "add", `{}`)
				// The notification travels on the GET stream, unordered with the POST
				// response: wait for the refresh rather than assume it happened.
				for i := 0; ; i++ {
					tools, _ := m.tools(context.Background())
					if slices.Contains(mcpToolNames(tools), "added") {
						break
					}
					if i == 500 {
						t.Fatal("list_changed on the GET stream never refreshed tools")
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			// The server forgets the session: the call is resent on a new one.
			fs.mu.Lock()
			fs.expire = true
			fs.mu.Unlock()
			if got := mcpRun(t, m, nil, "echo", `{"text":"again"}`); got.Output != "again" {
				t.Errorf("echo after session loss = %+v", got)
			}
			m.close()
			fs.mu.Lock()
			defer fs.mu.Unlock()
			if fs.inits != 2 || !slices.Equal(fs.deleted, []string{"sess-2"}) {
				t.Errorf("inits = %d, deleted = %v; want 2 and [sess-2]", fs.inits, fs.deleted)
			}
		})
	}
}

// ---- legacy HTTP+SSE (2024-11-05)

type fakeLegacySSE struct {
	t        *testing.T
	f        *fakeMCP
	endpoint string

	mu  sync.Mutex
	out func(any)
}

func (s *fakeLegacySSE) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Authorization"); got != "Bearer s3cr3t" {
		s.t.Errorf("%s Authorization = %q", r.Method, got)
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/sse":
		w.Header().Set("Content-Type", "text/event-stream")
		var wmu sync.Mutex
		done := false // the handler returned; w must not be touched any more
		send := func(event, data string) {
			wmu.Lock()
			defer wmu.Unlock()
			if done {
				return
			}
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
			http.NewResponseController(w).Flush()
		}
		s.mu.Lock()
		s.out = func(v any) { b, _ := json.Marshal(v); send("message", string(b)) }
		s.mu.Unlock()
		send("endpoint", s.endpoint)
		<-r.Context().Done()
		wmu.Lock()
		done = true
		wmu.Unlock()
	case r.Method == http.MethodPost && r.URL.Path == "/messages":
		var m fakeMCPMsg
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || r.URL.Query().Get("sessionId") != "1" {
			http.Error(w, "bad message", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		s.mu.Lock()
		out := s.out
		s.mu.Unlock()
		if !s.f.handleInline(m) {
			go s.f.handle(m, out)
		}
	default:
		s.t.Errorf("unexpected %s %s", r.Method, r.URL)
		http.NotFound(w, r)
	}
}

func TestMCPLegacySSE(t *testing.T) {
	t.Parallel()
	fs := &fakeLegacySSE{t: t, f: newFakeMCP(), endpoint: "/messages?sessionId=1"}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close) // registered first so the toolset closes its stream before
	m := newHTTPMCP(t, srv.URL+"/sse", "sse")
	if got := mcpRun(t, m, nil, "echo", `{"text":"old"}`); got.Output != "old" {
		t.Errorf("echo = %+v", got)
	}
	checkMCPElicitation(t, m)
}

func TestMCPLegacySSERejectsForeignEndpoint(t *testing.T) {
	t.Parallel()
	// A server must not be able to redirect our POSTs (and the token header) elsewhere.
	fs := &fakeLegacySSE{t: t, f: newFakeMCP(), endpoint: "http://evil.example/messages?sessionId=1"}
	srv := httptest.NewServer(fs)
	t.Cleanup(srv.Close) // registered first so the toolset closes its stream before
	m := newHTTPMCP(t, srv.URL+"/sse", "sse")
	if _, err := m.tools(context.Background()); err == nil || !strings.Contains(err.Error(), "is not on") {
		t.Errorf("tools() = %v; want the foreign endpoint rejected", err)
	}
}

// BenchmarkMCPStdioCall measures one tools/call round trip to a stdio server.
func BenchmarkMCPStdioCall(b *testing.B) {
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	ts := &toolsetConfig{Type: "mcp", Command: exe, Args: []string{"-test.run=^$"},
		Env: mcpOrdered("MCP_TEST_SERVER", "1", "GORACE", "atexit_sleep_ms=0")}
	got, err := newMCPToolset(ts, toolsetOptions{WorkingDir: b.TempDir(), Getenv: os.Getenv})
	if err != nil {
		b.Fatal(err)
	}
	defer got.close()
	tools, err := got.tools(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	echo := tools[0]
	args := json.RawMessage(`{"text":"hello"}`)
	b.ResetTimer()
	for b.Loop() {
		if r := echo.run(context.Background(), nil, args); r.Output != "hello" {
			b.Fatalf("echo = %+v", r)
		}
	}
}

func TestMCPServerStopsReading(t *testing.T) {
	t.Parallel()
	m, _, _ := newStdioMCP(t, &toolsetConfig{}, nil, "MCP_TEST_MODE", "deaf")
	m.callTimeout = 100 * time.Millisecond
	pid1 := mcpRun(t, m, nil, "pid", `{}`)                 // answered; then the server stops reading
	big := `{"text":"` + strings.Repeat("x", 1<<20) + `"}` // far more than a pipe buffer
	got := mcpRun(t, m, nil, "echo", big)
	if !got.IsError || !strings.Contains(got.Output, "timed out") && !strings.Contains(got.Output, "stopped reading") {
		t.Errorf("echo to a deaf server = %.200v; want a timeout", got)
	}
	// The blocked write was abandoned by killing the server, so the next use restarts it.
	if pid2 := mcpRun(t, m, nil, "pid", `{}`); pid2.IsError || pid2.Output == pid1.Output {
		t.Errorf("pid after the stuck write = %+v, before %+v; want a new server", pid2, pid1)
	}
}

// BenchmarkMCPStreamableCall measures one tools/call round trip over Streamable HTTP
// (JSON and SSE responses) on loopback.
func BenchmarkMCPStreamableCall(b *testing.B) {
	for _, mode := range []string{"json", "sse"} {
		b.Run(mode, func(b *testing.B) {
			fs := &fakeStreamable{t: b, f: newFakeMCP(), sse: mode == "sse", sessions: map[string]bool{}, getReady: make(chan struct{})}
			srv := httptest.NewServer(fs)
			b.Cleanup(srv.Close)
			m := newHTTPMCP(b, srv.URL+"/mcp", "streamable")
			tools, err := m.tools(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			args := json.RawMessage(`{"text":"hello"}`)
			for b.Loop() {
				if r := tools[0].run(context.Background(), nil, args); r.Output != "hello" {
					b.Fatalf("echo = %+v", r)
				}
			}
		})
	}
}
