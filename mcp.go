package main

// mcp.go: Model Context Protocol client toolsets (stdio, streamable HTTP, HTTP+SSE).
//
// One mcpToolset serves every session of the agent config that declared it: the server
// process (or HTTP session) is started lazily on the first tools() call and shared, unlike
// the reference, which starts one per session and never stops them (API.md §11 item 8).
// Protocol: https://modelcontextprotocol.io/specification/2025-06-18 (JSON-RPC 2.0).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Limits and defaults of the MCP client. Timeouts are per JSON-RPC request.
const (
	mcpProtocolVersion = "2025-06-18" // the revision we speak and offer first
)

// mcpSupportedVersions are the protocol revisions whose wire format this client handles.
var mcpSupportedVersions = []string{"2025-06-18", "2025-03-26", "2024-11-05"}

// errMCPSessionExpired is a 404 on a streamable HTTP session: the server forgot us and
// the spec requires a new initialize. The request was not processed, so it may be resent.
var errMCPSessionExpired = errors.New("mcp: HTTP session expired")

// newMCPToolset returns a toolset backed by the MCP server ts describes. Nothing is
// started here; errors are configuration problems (bad env expansion, unknown transport,
// missing binary) and mean the toolset is skipped with a warning (CONFIG.md §6.1).
// `version` (aqua auto-install) is not supported (warned about, ignored.go); the
// command must already be on PATH.
func newMCPToolset(ts *toolsetConfig, opts toolsetOptions) (toolset, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &mcpToolset{
		cfg:            ts,
		requestTimeout: mcpRequestTimeout,
		initTimeout:    mcpInitTimeout,
		callTimeout:    mcpCallTimeout,
		backoffBase:    mcpBackoffBase,
		backoffMax:     mcpBackoffMax,
		maxRestarts:    mcpMaxRestarts,
		httpClient:     &http.Client{CheckRedirect: checkRedirect}, // no Timeout: SSE streams are long-lived; requests carry deadlines
	}
	command, args := ts.Command, ts.Args
	if command == "" && strings.HasPrefix(ts.Ref, "docker:") {
		// Catalog servers run through the Docker MCP gateway, as the reference does.
		command, args = "docker", []string{"mcp", "gateway", "run", "--servers=" + strings.TrimPrefix(ts.Ref, "docker:")}
	}
	switch {
	case command != "":
		env, err := shellEnv(ts.Env, getenv)
		if err != nil {
			return nil, err
		}
		if !strings.ContainsRune(command, os.PathSeparator) {
			if _, err := exec.LookPath(command); err != nil {
				return nil, fmt.Errorf("mcp: command %q not found in PATH", command)
			}
		}
		t.label = command
		t.log = log.With("toolset", "mcp", "command", command)
		t.dial = func(ctx context.Context, c *mcpConn) (mcpTransport, error) {
			return mcpStartStdio(c, command, args, env, opts.WorkingDir, t.log, opts.Procs)
		}
	case ts.Remote.URL != "":
		rawURL := expandEnvTemplate(ts.Remote.URL, getenv)
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("mcp: invalid remote url %q", redactURL(rawURL))
		}
		headers := http.Header{}
		if h := ts.Remote.Headers; h != nil {
			for _, k := range h.Keys {
				headers.Set(k, expandEnvTemplate(h.Values[k], getenv))
			}
		}
		t.label = u.Redacted()
		t.log = log.With("toolset", "mcp", "url", t.label)
		if opts.MCPOAuth != nil {
			t.oauth = opts.MCPOAuth.client(u, t.log, ts.Remote.OAuth, getenv)
		}
		switch ts.Remote.TransportType {
		case "streamable", "streamable-http":
			t.dial = func(ctx context.Context, c *mcpConn) (mcpTransport, error) {
				return &mcpStreamable{c: c, url: u.String(), headers: headers, client: t.httpClient, log: t.log, oauth: t.oauth}, nil
			}
		case "sse":
			t.dial = func(ctx context.Context, c *mcpConn) (mcpTransport, error) {
				return mcpDialSSE(ctx, c, u, headers, t.httpClient, t.oauth)
			}
		default:
			return nil, fmt.Errorf("unsupported transport type: %s", ts.Remote.TransportType)
		}
	case ts.Ref != "":
		return nil, fmt.Errorf("mcp: unresolved ref %q", ts.Ref)
	default:
		return nil, errors.New("either command, remote or ref must be set")
	}
	return t, nil
}

// mcpToolset is a toolset backed by one MCP server connection, started lazily and shared
// by all sessions. Methods are safe for concurrent use.
type mcpToolset struct {
	cfg   *toolsetConfig
	label string // command or redacted URL, for messages
	log   *slog.Logger
	dial  func(ctx context.Context, c *mcpConn) (mcpTransport, error)
	oauth *mcpOAuthClient // remote servers when the server does MCP OAuth; nil otherwise

	// Seams for tests; set before first use.
	requestTimeout, initTimeout, callTimeout time.Duration
	backoffBase, backoffMax                  time.Duration
	maxRestarts                              int
	httpClient                               *http.Client

	startMu sync.Mutex // serialises (re)starts so one server runs per toolset

	mu          sync.Mutex
	conn        *mcpConn
	started     time.Time // when conn was started
	restarts    int       // consecutive deaths and failed starts
	lastErr     error     // why the last one failed
	closed      bool
	serverInstr string
	listGen     int // bumped by notifications/tools/list_changed
	cached      []tool
	cachedGen   int
	cachedConn  *mcpConn
}

// tools starts the server if needed and returns its tools, re-listing after a
// notifications/tools/list_changed or a restart.
func (t *mcpToolset) tools(ctx context.Context) ([]tool, error) {
	c, err := t.connect(ctx)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	gen := t.listGen
	if t.cachedConn == c && t.cachedGen == gen {
		tools := t.cached
		t.mu.Unlock()
		return tools, nil
	}
	t.mu.Unlock()

	defs, err := t.list(ctx, c)
	if retry, aerr := t.reauthorize(ctx, err); retry {
		defs, err = t.list(ctx, c)
	} else if aerr != nil {
		err = aerr
	}
	if err != nil {
		if errors.Is(err, errMCPSessionExpired) {
			return t.tools(ctx) // the next connection() re-initializes
		}
		return nil, err
	}
	tools := t.wrap(defs)
	t.mu.Lock()
	t.cached, t.cachedGen, t.cachedConn = tools, gen, c
	t.mu.Unlock()
	return tools, nil
}

// instruction is the configured instruction, with {ORIGINAL_INSTRUCTIONS} replaced by the
// server's own instructions, or the server's instructions when none is configured. The
// server's part is known only once it has started.
func (t *mcpToolset) instruction() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cfg.Instruction != "" {
		return strings.ReplaceAll(t.cfg.Instruction, "{ORIGINAL_INSTRUCTIONS}", t.serverInstr)
	}
	return t.serverInstr
}

// close stops the server (killing its process group) or ends the HTTP session. It is
// safe to call more than once; later tools() calls fail.
func (t *mcpToolset) close() error {
	t.mu.Lock()
	c := t.conn
	t.conn, t.closed = nil, true
	t.mu.Unlock()
	if c != nil {
		return c.close()
	}
	return nil
}

// connect is connection, authorizing first when the server asks for OAuth. The
// authorization (which may wait for the user) happens outside startMu, so other
// sessions are not held up behind it.
func (t *mcpToolset) connect(ctx context.Context) (*mcpConn, error) {
	c, err := t.connection(ctx)
	if retry, aerr := t.reauthorize(ctx, err); retry {
		return t.connection(ctx)
	} else if aerr != nil {
		return nil, aerr
	}
	return c, err
}

// reauthorize handles err when it is an MCP server's 401: retry reports a token to
// retry with; otherwise err says why there is none.
func (t *mcpToolset) reauthorize(ctx context.Context, err error) (retry bool, _ error) {
	var ae *mcpAuthError
	if t.oauth == nil || !errors.As(err, &ae) {
		return false, nil
	}
	if err := t.oauth.authorize(ctx, ae); err != nil {
		return false, fmt.Errorf("mcp %s: %w", t.label, err)
	}
	return true, nil
}

// connection returns a live, initialized connection, starting or restarting the server.
// A server that keeps dying (or failing to start) is retried with jittered exponential
// backoff, at most maxRestarts times in a row; one that stayed up mcpHealthyUptime
// resets the count.
func (t *mcpToolset) connection(ctx context.Context) (*mcpConn, error) {
	t.startMu.Lock()
	defer t.startMu.Unlock()
	t.mu.Lock()
	c, closed := t.conn, t.closed
	if c != nil && !c.alive() {
		if time.Since(t.started) > mcpHealthyUptime {
			t.restarts = 0
		}
		t.restarts++
		t.lastErr = c.err()
		t.conn = nil
	}
	n, lastErr := t.restarts, t.lastErr
	t.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("mcp %s: toolset closed", t.label)
	}
	if c != nil {
		if c.alive() {
			return c, nil
		}
		c.close() // reap what is left of the dead process group
	}
	if n > t.maxRestarts {
		return nil, fmt.Errorf("mcp %s: giving up after %d failed starts: %v", t.label, n, lastErr)
	}
	if n > 0 {
		d := min(t.backoffBase<<(n-1), t.backoffMax)
		d = d/2 + rand.N(d/2+1) // jitter so toolsets sharing a broken server don't retry in lockstep
		t.log.Warn("mcp server down, restarting", "err", lastErr, "attempt", n, "backoff", d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c, err := t.start(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		// The caller giving up says nothing about the server, nor does a 401.
		if ctx.Err() == nil && !errors.As(err, new(*mcpAuthError)) {
			t.restarts++
			t.lastErr = err
		}
		return nil, err
	}
	if t.closed {
		c.close()
		return nil, fmt.Errorf("mcp %s: toolset closed", t.label)
	}
	t.conn, t.started = c, time.Now()
	return c, nil
}

// start dials the transport and runs the initialize handshake.
func (t *mcpToolset) start(ctx context.Context) (*mcpConn, error) {
	c := newMCPConn(t.log)
	c.onListChanged = func() {
		t.mu.Lock()
		t.listGen++
		t.mu.Unlock()
	}
	ictx, cancel := context.WithTimeout(ctx, t.initTimeout)
	defer cancel()
	tr, err := t.dial(ictx, c)
	if err != nil {
		return nil, fmt.Errorf("mcp %s: %w", t.label, err)
	}
	c.t = tr
	close(c.ready)
	instr, err := c.initialize(ictx, t.initTimeout)
	if err != nil {
		c.close()
		return nil, fmt.Errorf("mcp %s: initialize: %w", t.label, err)
	}
	t.mu.Lock()
	t.serverInstr = instr
	t.mu.Unlock()
	return c, nil
}

// mcpToolDef is one entry of a tools/list result.
type mcpToolDef struct {
	Name         string          `json:"name"`
	Title        string          `json:"title"`
	Description  string          `json:"description"`
	InputSchema  json.RawMessage `json:"inputSchema"`
	OutputSchema json.RawMessage `json:"outputSchema"`
	Annotations  struct {
		Title           string `json:"title"`
		ReadOnlyHint    bool   `json:"readOnlyHint"`
		DestructiveHint *bool  `json:"destructiveHint"`
		IdempotentHint  *bool  `json:"idempotentHint"`
		OpenWorldHint   *bool  `json:"openWorldHint"`
	} `json:"annotations"`
}

// list fetches every page of tools/list.
func (t *mcpToolset) list(ctx context.Context, c *mcpConn) ([]mcpToolDef, error) {
	var all []mcpToolDef
	cursor := ""
	for range mcpMaxPages {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		raw, err := c.request(ctx, "tools/list", params, nil, t.requestTimeout)
		if err != nil {
			return nil, fmt.Errorf("mcp %s: tools/list: %w", t.label, err)
		}
		var page struct {
			Tools      []mcpToolDef `json:"tools"`
			NextCursor string       `json:"nextCursor"`
		}
		if err := json.Unmarshal(raw, &page); err != nil {
			return nil, fmt.Errorf("mcp %s: tools/list: bad result: %w", t.label, err)
		}
		all = append(all, page.Tools...)
		if page.NextCursor == "" {
			return all, nil
		}
		cursor = page.NextCursor
	}
	return nil, fmt.Errorf("mcp %s: tools/list: more than %d pages", t.label, mcpMaxPages)
}

// wrap turns server tool definitions into tools, applying the allow-list (which may name
// either the server's or the prefixed name) and the `name` prefix.
func (t *mcpToolset) wrap(defs []mcpToolDef) []tool {
	var out []tool
	for _, d := range defs {
		if !mcpToolNameOK(d.Name) {
			// A name such as `*` would be a pattern in permissions and approve-tool.
			t.log.Warn("mcp: skipping tool with a name outside [A-Za-z0-9_.-]", "tool", d.Name)
			continue
		}
		name := d.Name
		if t.cfg.Name != "" {
			name = t.cfg.Name + "_" + d.Name
		}
		if len(t.cfg.Tools) > 0 && !slices.Contains(t.cfg.Tools, d.Name) && !slices.Contains(t.cfg.Tools, name) {
			continue
		}
		params := d.InputSchema
		if len(params) == 0 || string(params) == "null" {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		title := d.Annotations.Title
		if title == "" {
			title = d.Title
		}
		def := toolDef{
			Name:         name,
			Category:     "mcp",
			Description:  d.Description,
			Parameters:   params,
			OutputSchema: d.OutputSchema,
			Annotations: toolAnnotations{
				ReadOnlyHint:    d.Annotations.ReadOnlyHint,
				DestructiveHint: d.Annotations.DestructiveHint,
				IdempotentHint:  d.Annotations.IdempotentHint,
				OpenWorldHint:   d.Annotations.OpenWorldHint,
				Title:           title,
			},
		}
		serverName := d.Name
		out = append(out, tool{def: def, run: func(ctx context.Context, env *toolEnv, args json.RawMessage) toolResult {
			return t.call(ctx, env, serverName, args)
		}})
	}
	return out
}

// mcpToolNameOK reports whether a server's tool name is non-empty and only
// [A-Za-z0-9_.-], so it can never act as a permission pattern.
func mcpToolNameOK(name string) bool {
	return name != "" && strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == ""
}

// call runs tools/call on the shared connection (restarting a dead server first).
func (t *mcpToolset) call(ctx context.Context, env *toolEnv, name string, args json.RawMessage) toolResult {
	if len(bytes.TrimSpace(args)) == 0 || string(bytes.TrimSpace(args)) == "null" {
		args = json.RawMessage("{}")
	}
	if !json.Valid(args) {
		return toolErrorf("invalid JSON arguments for tool %s", name)
	}
	params := map[string]any{"name": name, "arguments": args}
	var raw json.RawMessage
	for attempt := 0; ; attempt++ {
		c, err := t.connect(ctx)
		if err != nil {
			return toolErrorf("%v", err)
		}
		raw, err = c.request(ctx, "tools/call", params, env, t.callTimeout)
		if errors.Is(err, errMCPSessionExpired) && attempt == 0 {
			continue // the server never saw the call; resend on a fresh session
		}
		if attempt == 0 {
			if retry, aerr := t.reauthorize(ctx, err); retry {
				continue // refused before it ran; resend with the new token
			} else if aerr != nil {
				return toolErrorf("calling tool %s: %v", name, aerr)
			}
		}
		if err != nil {
			return toolErrorf("calling tool %s: %v", name, err)
		}
		break
	}
	return mcpToolResult(raw)
}

// mcpContent is one content block of a tools/call result.
type mcpContent struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	Data     string `json:"data"`
	MimeType string `json:"mimeType"`
	URI      string `json:"uri"`
	Name     string `json:"name"`
	Resource *struct {
		URI      string `json:"uri"`
		MimeType string `json:"mimeType"`
		Text     string `json:"text"`
		Blob     string `json:"blob"`
	} `json:"resource"`
}

// mcpToolResult maps a CallToolResult to a toolResult: text (and textual resources)
// joined by newlines, images and audio carried as media, structured content kept and
// used as the output when there is no text.
func mcpToolResult(raw json.RawMessage) toolResult {
	var r struct {
		Content           []mcpContent `json:"content"`
		IsError           bool         `json:"isError"`
		StructuredContent any          `json:"structuredContent"`
		Meta              any          `json:"_meta"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return toolErrorf("bad tools/call result: %v", err)
	}
	res := toolResult{IsError: r.IsError, StructuredContent: r.StructuredContent, Meta: r.Meta}
	var texts []string
	for _, c := range r.Content {
		switch c.Type {
		case "text":
			texts = append(texts, c.Text)
		case "image":
			res.Images = append(res.Images, mediaContent{Data: c.Data, MimeType: c.MimeType})
		case "audio":
			res.Audios = append(res.Audios, mediaContent{Data: c.Data, MimeType: c.MimeType})
		case "resource_link":
			texts = append(texts, fmt.Sprintf("Resource link: %s (%s)", c.Name, c.URI))
		case "resource":
			if c.Resource == nil {
				continue
			}
			switch rs := c.Resource; {
			case rs.Text != "":
				texts = append(texts, rs.Text)
			case strings.HasPrefix(rs.MimeType, "image/"):
				res.Images = append(res.Images, mediaContent{Data: rs.Blob, MimeType: rs.MimeType})
			case strings.HasPrefix(rs.MimeType, "audio/"):
				res.Audios = append(res.Audios, mediaContent{Data: rs.Blob, MimeType: rs.MimeType})
			default:
				texts = append(texts, fmt.Sprintf("[binary resource %s (%s)]", rs.URI, rs.MimeType))
			}
		}
	}
	res.Output = strings.Join(texts, "\n")
	if res.Output == "" && r.StructuredContent != nil {
		if b, err := json.Marshal(r.StructuredContent); err == nil {
			res.Output = string(b)
		}
	}
	return res
}

// mcpMessage is any JSON-RPC 2.0 message; which fields are set says which kind.
type mcpMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *mcpRPCError    `json:"error,omitempty"`
}

// mcpRPCError is a JSON-RPC error object.
type mcpRPCError struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *mcpRPCError) Error() string { return fmt.Sprintf("%s (code %d)", e.Message, e.Code) }

// mcpTransport moves JSON-RPC messages. Incoming messages go to the conn's deliver.
type mcpTransport interface {
	// send writes one message. For streamable HTTP it also reads the reply stream of a
	// request, so it may block until the response has been delivered.
	send(ctx context.Context, m *mcpMessage) error
	// close stops the process or ends the HTTP session.
	close() error
}

// mcpPending is a request waiting for its response.
type mcpPending struct {
	ch     chan *mcpMessage
	method string
	env    *toolEnv        // the session that made a tools/call, for elicitation
	ctx    context.Context // that call's context
}

// mcpConn is one JSON-RPC session over a transport: it matches responses to requests,
// answers server requests (ping, elicitation/create) and dispatches notifications.
type mcpConn struct {
	t             mcpTransport
	log           *slog.Logger
	onListChanged func()

	mu      sync.Mutex
	nextID  int64
	pending map[int64]*mcpPending
	failErr error
	done    chan struct{} // closed when the connection is dead
	ready   chan struct{} // closed once t is set; server requests wait for it
	version string        // negotiated protocol version
}

func newMCPConn(log *slog.Logger) *mcpConn {
	return &mcpConn{log: log, pending: map[int64]*mcpPending{}, done: make(chan struct{}), ready: make(chan struct{})}
}

// fail marks the connection dead with err; the first error wins.
func (c *mcpConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failErr == nil {
		c.failErr = err
		close(c.done)
	}
}

func (c *mcpConn) alive() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

func (c *mcpConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failErr
}

func (c *mcpConn) close() error {
	c.fail(errors.New("connection closed"))
	if c.t != nil {
		return c.t.close()
	}
	return nil
}

// initialize runs the handshake and returns the server's instructions.
func (c *mcpConn) initialize(ctx context.Context, timeout time.Duration) (string, error) {
	raw, err := c.request(ctx, "initialize", map[string]any{
		"protocolVersion": mcpProtocolVersion,
		"capabilities":    map[string]any{"elicitation": map[string]any{}},
		"clientInfo":      map[string]any{"name": "agentd", "version": "1.0.0"},
	}, nil, timeout)
	if err != nil {
		return "", err
	}
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
		Instructions    string `json:"instructions"`
		ServerInfo      struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"serverInfo"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return "", fmt.Errorf("bad initialize result: %w", err)
	}
	if !slices.Contains(mcpSupportedVersions, res.ProtocolVersion) {
		return "", fmt.Errorf("server wants protocol version %q; we support %s", res.ProtocolVersion, strings.Join(mcpSupportedVersions, ", "))
	}
	c.mu.Lock()
	c.version = res.ProtocolVersion
	c.mu.Unlock()
	if a, ok := c.t.(interface{ initialized(version string) }); ok {
		a.initialized(res.ProtocolVersion)
	}
	if err := c.notify(ctx, "notifications/initialized", nil); err != nil {
		return "", err
	}
	if l, ok := c.t.(interface{ listen() }); ok {
		l.listen()
	}
	c.log.Info("mcp server ready", "server", res.ServerInfo.Name, "version", res.ServerInfo.Version, "protocol", res.ProtocolVersion)
	return res.Instructions, nil
}

// request sends method and waits for its result, at most timeout. When ctx ends or the
// timeout passes first, the server is told with notifications/cancelled.
func (c *mcpConn) request(ctx context.Context, method string, params any, env *toolEnv, timeout time.Duration) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !c.alive() {
		return nil, c.err()
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	p, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	pend := &mcpPending{ch: make(chan *mcpMessage, 1), method: method, env: env, ctx: rctx}
	c.pending[id] = pend
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()

	sendErr := c.t.send(rctx, &mcpMessage{JSONRPC: "2.0", ID: json.RawMessage(strconv.FormatInt(id, 10)), Method: method, Params: p})
	if sendErr != nil && rctx.Err() == nil {
		if errors.Is(sendErr, errMCPSessionExpired) {
			c.fail(sendErr)
		}
		return nil, sendErr
	}
	select {
	case m := <-pend.ch:
		if m.Error != nil {
			return nil, m.Error
		}
		return m.Result, nil
	case <-c.done:
		return nil, c.err()
	case <-rctx.Done():
		reason := "cancelled by the client"
		err := ctx.Err()
		if err == nil {
			reason = fmt.Sprintf("timed out after %v", timeout)
			err = fmt.Errorf("%s %s", method, reason)
		}
		if method != "initialize" { // the spec forbids cancelling initialize
			nctx, ncancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer ncancel()
			if nerr := c.notify(nctx, "notifications/cancelled", map[string]any{"requestId": id, "reason": reason}); nerr != nil {
				c.log.Debug("mcp: sending notifications/cancelled failed", "err", nerr)
			}
		}
		return nil, err
	}
}

// notify sends a notification.
func (c *mcpConn) notify(ctx context.Context, method string, params any) error {
	m := &mcpMessage{JSONRPC: "2.0", Method: method}
	if params != nil {
		p, err := json.Marshal(params)
		if err != nil {
			return err
		}
		m.Params = p
	}
	return c.t.send(ctx, m)
}

// deliver handles one incoming message. related is the ID of the client request whose
// HTTP response stream carried it (0 when unknown, as on stdio).
func (c *mcpConn) deliver(m *mcpMessage, related int64) {
	switch {
	case m.Method == "" && len(m.ID) > 0: // a response
		id, ok := mcpParseID(m.ID)
		c.mu.Lock()
		p := c.pending[id]
		c.mu.Unlock()
		if !ok || p == nil {
			c.log.Debug("mcp: response to unknown request", "id", string(m.ID))
			return
		}
		select {
		case p.ch <- m:
		default:
		}
	case m.Method != "" && len(m.ID) > 0: // a server request; may block (elicitation)
		go c.serve(m, related)
	case m.Method == "notifications/tools/list_changed":
		if c.onListChanged != nil {
			c.onListChanged()
		}
	case m.Method == "notifications/message":
		c.log.Debug("mcp server log", "params", string(m.Params))
	}
}

// mcpParseID reads a JSON-RPC id we issued (a number; some servers echo it as a string).
func mcpParseID(raw json.RawMessage) (int64, bool) {
	var n int64
	if json.Unmarshal(raw, &n) == nil {
		return n, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		n, err := strconv.ParseInt(s, 10, 64)
		return n, err == nil
	}
	return 0, false
}

// mcpIsID reports whether raw is the JSON-RPC id want.
func mcpIsID(raw json.RawMessage, want int64) bool {
	n, ok := mcpParseID(raw)
	return ok && n == want
}

// serve answers one server-initiated request.
func (c *mcpConn) serve(m *mcpMessage, related int64) {
	select { // the reader may see a request before dial has returned the transport
	case <-c.ready:
	case <-c.done:
		return
	}
	reply := &mcpMessage{JSONRPC: "2.0", ID: m.ID}
	ctx := context.Background()
	switch m.Method {
	case "ping":
		reply.Result = json.RawMessage("{}")
	case "elicitation/create":
		env, callCtx := c.elicitationTarget(related)
		if callCtx != nil {
			ctx = callCtx
		}
		reply.Result = c.elicit(ctx, env, m.Params)
	default:
		reply.Error = &mcpRPCError{Code: -32601, Message: "method not found: " + m.Method}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), mcpRequestTimeout)
	defer cancel()
	if err := c.t.send(sctx, reply); err != nil {
		c.log.Warn("mcp: replying to server request failed", "method", m.Method, "err", err)
	}
}

// elicitationTarget finds the session a server question belongs to: the tools/call whose
// response stream carried it, else (stdio, legacy SSE: the protocol does not say) the most
// recent tools/call in flight.
func (c *mcpConn) elicitationTarget(related int64) (*toolEnv, context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.pending[related]; p != nil && p.method == "tools/call" {
		return p.env, p.ctx
	}
	var best int64
	for id, p := range c.pending {
		if p.method == "tools/call" && id > best {
			best = id
		}
	}
	if p := c.pending[best]; p != nil {
		return p.env, p.ctx
	}
	return nil, nil
}

// elicit asks the session's user and returns the ElicitResult. Without anyone to ask, or
// when asking fails, the answer is "cancel" so the server can carry on.
func (c *mcpConn) elicit(ctx context.Context, env *toolEnv, params json.RawMessage) json.RawMessage {
	cancelled := json.RawMessage(`{"action":"cancel"}`)
	if env == nil || env.Elicit == nil {
		return cancelled
	}
	var p struct {
		Message         string          `json:"message"`
		RequestedSchema json.RawMessage `json:"requestedSchema"`
		Mode            string          `json:"mode"`
		URL             string          `json:"url"`
		ElicitationID   string          `json:"elicitationId"`
		Meta            map[string]any  `json:"_meta"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return cancelled
	}
	resp, err := env.Elicit(ctx, elicitationRequest{
		Message: p.Message, Mode: p.Mode, Schema: p.RequestedSchema,
		URL: p.URL, ElicitationID: p.ElicitationID, Meta: p.Meta,
	})
	if err != nil {
		c.log.Info("mcp: elicitation not answered", "err", err)
		return cancelled
	}
	out := map[string]any{"action": resp.Action}
	if resp.Action == "accept" && resp.Content != nil {
		out["content"] = resp.Content
	}
	b, err := json.Marshal(out)
	if err != nil {
		return cancelled
	}
	return b
}

// ---- stdio ----

// mcpStdio runs the server as a child process in its own process group, exchanging
// newline-delimited JSON-RPC on stdin/stdout. stderr lines go to the logger.
type mcpStdio struct {
	c      *mcpConn
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	wmu    sync.Mutex
	exited chan struct{} // closed after Wait returns
	exit   error         // why the process ended (status, stderr tail); set before exited closes
	once   sync.Once
	stderr *mcpStderr
}

// mcpStartStdio starts the process. It inherits only childEnv's allow-list; env entries
// override it (the reference passes the whole process environment after them, so its
// own values win: a bug, and a leak of every key the server holds).
func mcpStartStdio(c *mcpConn, command string, args, env []string, dir string, log *slog.Logger, procs *procGroups) (*mcpStdio, error) {
	cmd := exec.Command(command, args...)
	cmd.Env = childEnv(env...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so close() can kill helpers it spawns (npx → node)
	cmd.WaitDelay = mcpStopGrace
	s := &mcpStdio{c: c, cmd: cmd, exited: make(chan struct{}), stderr: &mcpStderr{log: log}}
	cmd.Stderr = s.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = pw
	forget, err := procs.start(cmd, strings.Join(append([]string{command}, args...), " "))
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	pw.Close() // the child holds its copy; EOF on pr means every writer is gone
	s.stdin = stdin
	go func() {
		err := cmd.Wait()
		msg := "server exited"
		if err != nil {
			msg += ": " + err.Error()
		}
		if tail := s.stderr.tail(); tail != "" {
			msg += " (stderr: " + tail + ")"
		}
		s.exit = errors.New(msg)
		close(s.exited)
		// The leader is gone; stop anything it left in its group holding stdout.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		forget()
	}()
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), mcpMaxMessage)
		for sc.Scan() {
			var m mcpMessage
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				log.Warn("mcp: ignoring non-JSON-RPC line on stdout", "line", mcpTrim(sc.Text(), 200))
				continue
			}
			c.deliver(&m, 0)
		}
		if err := sc.Err(); err != nil {
			c.fail(fmt.Errorf("reading server output: %w", err))
			s.kill()
			return
		}
		c.fail(s.exitError(errors.New("server closed its stdout")))
	}()
	return s, nil
}

func (s *mcpStdio) send(ctx context.Context, m *mcpMessage) error {
	b, err := json.Marshal(m) // compact: never contains a raw newline
	if err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// A server that stopped reading fills the pipe and the write blocks; honour ctx so
	// one stuck server cannot hang every session. A half-written line leaves the stream
	// unusable, so the server is killed (and restarted on next use).
	errc := make(chan error, 1)
	go func() {
		_, err := s.stdin.Write(append(b, '\n'))
		errc <- err
	}()
	select {
	case err := <-errc:
		if err != nil { // the pipe is broken: the server is gone or going
			s.c.fail(s.exitError(fmt.Errorf("writing to server: %w", err)))
			return s.c.err()
		}
		return nil
	case <-ctx.Done():
		select {
		case err := <-errc: // the write was done or nearly so; the caller sees ctx itself
			return err
		case <-time.After(mcpStopGrace):
		}
		err := fmt.Errorf("server stopped reading its input: %w", ctx.Err())
		s.c.fail(err)
		s.kill()
		<-errc // the pipe breaks once the group is dead
		return err
	}
}

// close follows the spec's shutdown: close stdin, then SIGTERM, then SIGKILL, each
// after a grace period; signals go to the whole process group.
func (s *mcpStdio) close() error {
	s.once.Do(func() {
		s.wmu.Lock()
		s.stdin.Close()
		s.wmu.Unlock()
		for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
			select {
			case <-s.exited:
				return
			case <-time.After(mcpStopGrace):
			}
			syscall.Kill(-s.cmd.Process.Pid, sig)
		}
		<-s.exited
	})
	return nil
}

// exitError waits briefly for the process to end and returns why it did, which says more
// than the pipe error that noticed it; fallback if it does not end.
func (s *mcpStdio) exitError(fallback error) error {
	select {
	case <-s.exited:
		return s.exit
	case <-time.After(2 * mcpStopGrace):
		return fallback
	}
}

func (s *mcpStdio) kill() { syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) }

// mcpStderr logs a server's stderr line by line and keeps the last few for errors.
type mcpStderr struct {
	log     *slog.Logger
	mu      sync.Mutex
	partial []byte
	last    []string
}

func (e *mcpStderr) Write(p []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.partial = append(e.partial, p...)
	for {
		i := bytes.IndexByte(e.partial, '\n')
		if i < 0 {
			if len(e.partial) > 64<<10 { // a runaway line: log what we have
				i = len(e.partial)
			} else {
				break
			}
		}
		line := strings.TrimRight(string(e.partial[:i]), "\r")
		e.partial = e.partial[min(i+1, len(e.partial)):]
		if line == "" {
			continue
		}
		e.log.Info("mcp server stderr", "line", line)
		e.last = append(e.last, line)
		if len(e.last) > mcpStderrKeep {
			e.last = e.last[1:]
		}
	}
	return len(p), nil
}

func (e *mcpStderr) tail() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return mcpTrim(strings.Join(e.last, " | "), 500)
}

func mcpTrim(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ---- Streamable HTTP ----

// mcpStreamable is the Streamable HTTP transport: every message is a POST to one
// endpoint; a request's answer is a JSON body or an SSE stream that may interleave
// server requests (elicitation) before the response. An optional GET stream carries
// unsolicited server messages such as tools/list_changed.
type mcpStreamable struct {
	c       *mcpConn
	url     string
	headers http.Header
	client  *http.Client
	log     *slog.Logger
	oauth   *mcpOAuthClient // nil = no OAuth

	mu        sync.Mutex
	sessionID string
	version   string
	getCancel context.CancelFunc
	closed    bool
}

func (s *mcpStreamable) header(req *http.Request) {
	for k, v := range s.headers {
		req.Header[k] = v
	}
	if s.oauth != nil {
		s.oauth.header(req)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sessionID != "" {
		req.Header.Set("Mcp-Session-Id", s.sessionID)
	}
	if s.version != "" {
		req.Header.Set("MCP-Protocol-Version", s.version)
	}
}

func (s *mcpStreamable) send(ctx context.Context, m *mcpMessage) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	s.header(req)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return mcpAuthErrorOf(req, resp)
	}
	if m.Method == "initialize" {
		if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
			s.mu.Lock()
			s.sessionID = sid
			s.mu.Unlock()
		}
	}
	if resp.StatusCode == http.StatusNotFound && m.Method != "initialize" {
		s.mu.Lock()
		had := s.sessionID != ""
		s.sessionID = "" // gone: nothing to DELETE on close
		s.mu.Unlock()
		if had {
			return errMCPSessionExpired
		}
	}
	if resp.StatusCode/100 != 2 {
		return mcpHTTPError(resp)
	}
	if m.Method == "" || len(m.ID) == 0 || resp.StatusCode == http.StatusAccepted {
		return nil // notification or response: 202 and no body
	}
	id, _ := mcpParseID(m.ID)
	ct := resp.Header.Get("Content-Type")
	switch {
	case strings.HasPrefix(ct, "text/event-stream"):
		found := false
		err := mcpReadEvents(resp.Body, func(m *mcpMessage) bool {
			s.c.deliver(m, id)
			found = m.Method == "" && mcpIsID(m.ID, id)
			return found
		})
		if err == nil && !found {
			err = errors.New("response stream ended without a response")
		}
		return err
	case strings.HasPrefix(ct, "application/json"):
		b, err := io.ReadAll(io.LimitReader(resp.Body, mcpMaxMessage+1))
		if err != nil {
			return err
		}
		if len(b) > mcpMaxMessage {
			return fmt.Errorf("response larger than %d bytes", mcpMaxMessage)
		}
		b = bytes.TrimSpace(b)
		if len(b) > 0 && b[0] == '[' { // a batch, allowed before 2025-06-18
			var ms []*mcpMessage
			if err := json.Unmarshal(b, &ms); err != nil {
				return fmt.Errorf("bad JSON response: %w", err)
			}
			found := false
			for _, m := range ms {
				s.c.deliver(m, id)
				found = found || m.Method == "" && mcpIsID(m.ID, id)
			}
			if !found {
				return errors.New("JSON response without a response to the request")
			}
			return nil
		}
		var rm mcpMessage
		if err := json.Unmarshal(b, &rm); err != nil {
			return fmt.Errorf("bad JSON response: %w", err)
		}
		s.c.deliver(&rm, id)
		if rm.Method != "" || !mcpIsID(rm.ID, id) {
			return errors.New("JSON response without a response to the request")
		}
		return nil
	default:
		return fmt.Errorf("unexpected response content type %q", ct)
	}
}

// mcpReadEvents decodes each SSE event's data as a JSON-RPC message until fn returns true.
func mcpReadEvents(r io.Reader, fn func(*mcpMessage) bool) error {
	errStop := errors.New("stop")
	err := readSSE(r, func(ev sseEvent) error {
		if ev.Event != "" && ev.Event != "message" || strings.TrimSpace(ev.Data) == "" {
			return nil
		}
		var m mcpMessage
		if json.Unmarshal([]byte(ev.Data), &m) != nil {
			return nil
		}
		if fn(&m) {
			return errStop
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// initialized records the negotiated version, sent on every later request.
func (s *mcpStreamable) initialized(version string) {
	s.mu.Lock()
	s.version = version
	s.mu.Unlock()
}

// listen opens the optional GET stream for messages the server sends unprompted. It is
// not reopened if it ends; tools/list_changed then still arrives on response streams.
func (s *mcpStreamable) listen() {
	ctx, cancel := context.WithCancel(context.Background())
	s.mu.Lock()
	s.getCancel = cancel
	s.mu.Unlock()
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
		if err != nil {
			return
		}
		s.header(req)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := s.client.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK { // 405: the server offers no such stream
			return
		}
		err = mcpReadEvents(resp.Body, func(m *mcpMessage) bool { s.c.deliver(m, 0); return false })
		if err != nil && ctx.Err() == nil {
			s.log.Debug("mcp: server stream ended", "err", err)
		}
	}()
}

// close ends the GET stream and deletes the session (best effort).
func (s *mcpStreamable) close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	cancel, sid := s.getCancel, s.sessionID
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if sid == "" {
		return nil
	}
	ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.url, nil)
	if err != nil {
		return nil
	}
	s.header(req)
	if resp, err := s.client.Do(req); err == nil {
		resp.Body.Close()
	}
	return nil
}

// mcpHTTPError describes a failed HTTP exchange with a bounded quote of the body.
func mcpHTTPError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, mcpMaxErrorBody))
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return fmt.Errorf("HTTP %s: %s", resp.Status, msg)
}

// ---- HTTP+SSE (protocol 2024-11-05) ----

// mcpSSE is the legacy transport: a GET SSE stream whose first `endpoint` event names the
// URL to POST messages to; every server message arrives on the stream.
type mcpSSE struct {
	endpoint string
	headers  http.Header
	client   *http.Client
	cancel   context.CancelFunc
	oauth    *mcpOAuthClient // nil = no OAuth
}

// mcpDialSSE opens the stream and waits for the endpoint event. The endpoint must have
// the stream's origin so configured headers (tokens) never go to another host.
func mcpDialSSE(ctx context.Context, c *mcpConn, u *url.URL, headers http.Header, client *http.Client, oauth *mcpOAuthClient) (*mcpSSE, error) {
	sctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for k, v := range headers {
		req.Header[k] = v
	}
	if oauth != nil {
		oauth.header(req)
	}
	req.Header.Set("Accept", "text/event-stream")
	type result struct {
		endpoint string
		err      error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			got <- result{err: err}
			c.fail(err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err := mcpHTTPError(resp)
			if resp.StatusCode == http.StatusUnauthorized {
				err = mcpAuthErrorOf(req, resp)
			}
			got <- result{err: err}
			c.fail(err)
			return
		}
		sent := false
		err = readSSE(resp.Body, func(ev sseEvent) error {
			switch ev.Event {
			case "endpoint":
				if sent {
					return nil
				}
				sent = true
				ep, err := u.Parse(strings.TrimSpace(ev.Data))
				if err == nil && (ep.Scheme != u.Scheme || ep.Host != u.Host) {
					err = fmt.Errorf("endpoint %q is not on %s://%s", ev.Data, u.Scheme, u.Host)
				}
				if err != nil {
					got <- result{err: err}
					return err
				}
				got <- result{endpoint: ep.String()}
			case "", "message":
				var m mcpMessage
				if json.Unmarshal([]byte(ev.Data), &m) == nil {
					c.deliver(&m, 0)
				}
			}
			return nil
		})
		if !sent {
			if err == nil {
				err = errors.New("stream ended before the endpoint event")
			}
			got <- result{err: err}
		}
		if err == nil {
			err = errors.New("server closed the event stream")
		}
		c.fail(err)
	}()
	select {
	case r := <-got:
		if r.err != nil {
			cancel()
			return nil, r.err
		}
		return &mcpSSE{endpoint: r.endpoint, headers: headers, client: client, cancel: cancel, oauth: oauth}, nil
	case <-ctx.Done():
		cancel()
		return nil, ctx.Err()
	}
}

func (s *mcpSSE) send(ctx context.Context, m *mcpMessage) error {
	body, err := json.Marshal(m)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, bytes.NewReader(body))
	if err != nil {
		return err
	}
	for k, v := range s.headers {
		req.Header[k] = v
	}
	if s.oauth != nil {
		s.oauth.header(req)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		return mcpAuthErrorOf(req, resp)
	}
	if resp.StatusCode/100 != 2 {
		return mcpHTTPError(resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, mcpMaxErrorBody))
	return nil
}

func (s *mcpSSE) close() error {
	s.cancel()
	return nil
}
