package main

// tools_shell.go: the shell toolset (shell + background jobs) and the script toolset
// (CONFIG.md §6.3). Every command runs in its own process group so that a timeout, a
// cancelled run or close() kills the whole tree, not just the shell.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// shellBuf is a concurrency-safe output buffer that keeps the first limit bytes and
// remembers whether more was written. With stream set, what it keeps is also passed
// on as it arrives (tool_call_output), in whole UTF-8 characters.
type shellBuf struct {
	mu      sync.Mutex
	b       []byte
	limit   int
	dropped bool
	stream  func(chunk string)
	sent    int // bytes of b passed to stream
}

func (w *shellBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(p) // report everything written so the command never sees a short write
	room := w.limit - len(w.b)
	if len(p) > room {
		w.dropped = true
		p = p[:max(room, 0)]
	}
	w.b = append(w.b, p...)
	w.flushStream(false)
	return n, nil
}

// flushStream passes the kept bytes not yet streamed to stream, holding back a
// character cut at the end of a write unless final.
func (w *shellBuf) flushStream(final bool) {
	if w.stream == nil {
		return
	}
	end := len(w.b)
	if !final {
		for i := end - 1; i >= max(w.sent, end-utf8.UTFMax+1); i-- {
			if utf8.RuneStart(w.b[i]) {
				if !utf8.FullRune(w.b[i:end]) {
					end = i
				}
				break
			}
		}
	}
	if end > w.sent {
		w.stream(string(w.b[w.sent:end]))
		w.sent = end
	}
}

// endStream passes on what the last write held back.
func (w *shellBuf) endStream() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushStream(true)
}

// String returns the output, cut at toolsMaxOutput characters with the note.
func (w *shellBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := toolsTruncate(string(w.b))
	if w.dropped && !strings.HasSuffix(s, toolsTruncNote) {
		s += toolsTruncNote
	}
	return s
}

// shellEnv expands a toolset's (or script tool's) env values with getenv; a variable
// that is not set is an error, which skips the toolset (CONFIG.md §8.1). The server's
// auth token is never handed to a child, even by name.
func shellEnv(m *orderedMap[string], getenv func(string) string) ([]string, error) {
	if m == nil {
		return nil, nil
	}
	var out []string
	for _, k := range m.Keys {
		var missing, refused string
		v := os.Expand(m.Values[k], func(name string) string {
			if name == authTokenEnv {
				refused = name
				return ""
			}
			val := getenv(name)
			if val == "" && missing == "" {
				missing = name
			}
			return val
		})
		switch {
		case refused != "" || k == authTokenEnv:
			return nil, fmt.Errorf("env %s: %s is never passed to tools", k, authTokenEnv)
		case missing != "":
			return nil, fmt.Errorf("environment variable %q not set", missing)
		}
		out = append(out, k+"="+v)
	}
	return out, nil
}

// childEnvNames are the variables of the server's environment every child process
// (shell, script, post_edit, MCP server) inherits; nothing else is passed, so model
// provider keys, $AGENTD_AUTH_TOKEN and whatever else the server was started with stay
// in the server. They are what programs need to run at all (PATH, HOME, USER, LOGNAME,
// SHELL, TMPDIR), to print and sort text correctly (LANG, LC_*, TERM, TZ), to find
// their per-user config and caches (XDG_*: npx, uvx), to go through the network's proxy
// and trust its CA (*_PROXY, SSL_CERT_*), and to reach Docker (DOCKER_HOST,
// DOCKER_CONFIG, DOCKER_CONTEXT: `docker mcp gateway`). A toolset's `env` adds more.
var childEnvNames = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "TMPDIR", "LANG", "TERM", "TZ",
	"XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "no_proxy", "all_proxy",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT",
}

// authTokenEnv holds the API's bearer token; no child process ever sees it.
const authTokenEnv = "AGENTD_AUTH_TOKEN"

// childEnv is the environment of a child process: the allow-listed part of the
// server's environment, then extra (which wins, being later).
func childEnv(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if slices.Contains(childEnvNames, k) || strings.HasPrefix(k, "LC_") {
			out = append(out, kv)
		}
	}
	for _, kv := range extra {
		if k, _, _ := strings.Cut(kv, "="); k != authTokenEnv {
			out = append(out, kv)
		}
	}
	return out
}

// shellCommand builds `sh -c script` in its own process group. Cancelling ctx kills
// the group; WaitDelay bounds the wait for pipes held open by stray grandchildren.
func shellCommand(ctx context.Context, sh, script, dir string, env []string, out *shellBuf) *exec.Cmd {
	cmd := exec.CommandContext(ctx, sh, "-c", script)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// runRecorded runs cmd with its process group recorded while it lives; once it is
// done, whatever it left running in its group goes with it.
func runRecorded(cmd *exec.Cmd, procs *procGroups, what string) error {
	forget, err := procs.start(cmd, what)
	if err != nil {
		return err
	}
	err = cmd.Wait()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	forget()
	return err
}

// shellDir resolves a model-given cwd inside the working dir, following symlinks, and
// fails if the result is not a directory inside it, or if the working dir's path no
// longer leads to the directory the run opened (env.Dir). A command runs at a path,
// not at an open directory, so this narrows the window without closing it.
func shellDir(env *toolEnv, cwd string) (string, error) {
	if env == nil || env.WorkingDir == "" {
		return "", errors.New("no working directory for this session")
	}
	root, err := filepath.EvalSymlinks(env.WorkingDir)
	if err != nil {
		return "", fmt.Errorf("working directory: %v", errors.Unwrap(err))
	}
	if env.Dir != nil {
		opened, err1 := env.Dir.Stat(".")
		now, err2 := os.Stat(root)
		if err1 != nil || err2 != nil || !os.SameFile(opened, now) {
			return "", errors.New("the working directory was moved or replaced during the run")
		}
	}
	if cwd == "" {
		return root, nil
	}
	rel, err := fsLocal(env.WorkingDir, cwd)
	if err != nil {
		return "", err
	}
	dir, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(rel)))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the absolute path would repeat the server's layout
		}
		return "", fmt.Errorf("cwd %q: %v", cwd, err)
	}
	if r, err := filepath.Rel(root, dir); err != nil || !filepath.IsLocal(r) {
		return "", fmt.Errorf("cwd %q is outside the working directory", cwd)
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return "", fmt.Errorf("cwd %q is not a directory", cwd)
	}
	return dir, nil
}

// shellRefuses is the built-in deny of the shell: a command that names one of the
// server's secret files is refused whatever the permissions. It is a tripwire against
// `cat app.env`, not a sandbox (protected.go).
func shellRefuses(env *toolEnv, cmd string) (toolResult, bool) {
	if env == nil {
		return toolResult{}, false
	}
	if name := env.Protected.namedIn(cmd); name != "" {
		return toolErrorf("command refused: %s is protected (agentd keeps its session database, env files, auth token and agent configs away from tools)", name), true
	}
	return toolResult{}, false
}

// shellToolset runs commands and background jobs. Jobs outlive the call that started
// them and are killed by close().
type shellToolset struct {
	sh      string
	env     []string // toolset env, appended after the inherited variables so it wins
	timeout time.Duration
	procs   *procGroups

	mu   sync.Mutex
	jobs []*shellJob
	seq  atomic.Int64
}

// shellJob is one background job; status and err are guarded by the toolset's mu.
// Only the session that started a job sees it.
type shellJob struct {
	id, cmd, dir string
	session      string
	start        time.Time
	out          *shellBuf
	cancel       context.CancelFunc
	done         chan struct{}
	status       string // running, completed, failed, stopped
	err          error
}

// newShellToolset returns the shell tools.
func newShellToolset(ts *toolsetConfig, opts toolsetOptions) (*builtinToolset, error) {
	env, err := shellEnv(ts.Env, opts.Getenv)
	if err != nil {
		return nil, err
	}
	s := &shellToolset{sh: opts.Getenv("SHELL"), env: env, timeout: toolsShellTimeout * time.Second, procs: opts.Procs}
	if s.sh == "" {
		s.sh = "/bin/sh"
	}
	if ts.Timeout > 0 {
		s.timeout = time.Duration(ts.Timeout) * time.Second
	}
	return &builtinToolset{
		list: []tool{
			{def: toolsDef("shell", "shell", "Shell", "Run a shell command in the working directory (or cwd inside it) and return its combined output. Each call starts a fresh shell; timeout is in seconds (default 30).", false), run: toolsRun(s.run)},
			{def: toolsDef("run_background_job", "shell", "Run Background Job", "Start a long-running command (a server, a watcher) in the background and return its job ID.", false), run: toolsRun(s.startJob)},
			{def: toolsDef("list_background_jobs", "shell", "List Background Jobs", "List background jobs with their status.", true), run: toolsRun(s.listJobs)},
			{def: toolsDef("view_background_job", "shell", "View Background Job", "Show the status and output of a background job.", true), run: toolsRun(s.viewJob)},
			{def: toolsDef("stop_background_job", "shell", "Stop Background Job", "Stop a running background job and its child processes.", false), run: toolsRun(s.stopJob)},
		},
		instr: `You can run shell commands with the shell tool. Each call runs in a fresh shell in the working directory, so pass cwd instead of relying on cd, and chain dependent commands with &&.
- Commands time out after 30 seconds by default; use run_background_job for servers and other long-running processes, and stop them when done.
- Avoid interactive commands; they cannot receive input.`,
		closeFn: s.close,
	}, nil
}

type shellArgs struct {
	Cmd     string `json:"cmd"`
	Cwd     string `json:"cwd"`
	Timeout int    `json:"timeout"`
	JobID   string `json:"job_id"`
}

func (s *shellToolset) run(ctx context.Context, env *toolEnv, a shellArgs) toolResult {
	if strings.TrimSpace(a.Cmd) == "" {
		return toolErrorf("Error: empty command")
	}
	if r, refused := shellRefuses(env, a.Cmd); refused {
		return r
	}
	dir, err := shellDir(env, a.Cwd)
	if err != nil {
		return toolErrorf("%v", err)
	}
	timeout := s.timeout
	if a.Timeout > 0 {
		timeout = time.Duration(a.Timeout) * time.Second
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := &shellBuf{limit: 4 * toolsMaxOutput, stream: env.Output}
	cmd := shellCommand(tctx, s.sh, a.Cmd, dir, childEnv(s.env...), out)
	err = runRecorded(cmd, s.procs, a.Cmd)
	out.endStream()
	text := strings.TrimSpace(out.String())
	switch {
	case ctx.Err() != nil:
		return toolErrorf("command cancelled\nOutput: %s", text)
	case tctx.Err() != nil:
		return toolResult{Output: fmt.Sprintf("Command timed out after %v\nOutput: %s", timeout, text)}
	case err != nil:
		return toolResult{Output: fmt.Sprintf("Error executing command: %v\nOutput: %s", err, text)}
	case text == "":
		return toolResult{Output: "<no output>"}
	}
	return toolResult{Output: text}
}

func (s *shellToolset) startJob(ctx context.Context, env *toolEnv, a shellArgs) toolResult {
	if strings.TrimSpace(a.Cmd) == "" {
		return toolErrorf("Error: empty command")
	}
	if r, refused := shellRefuses(env, a.Cmd); refused {
		return r
	}
	dir, err := shellDir(env, a.Cwd)
	if err != nil {
		return toolErrorf("%v", err)
	}
	// The job must outlive this call, so it does not inherit ctx; close() ends it.
	jctx, cancel := context.WithCancel(context.Background())
	j := &shellJob{
		id:      fmt.Sprintf("job_%d_%d", time.Now().Unix(), s.seq.Add(1)),
		cmd:     a.Cmd,
		dir:     dir,
		session: toolsSessionID(env),
		start:   time.Now(),
		out:     &shellBuf{limit: toolsMaxJobOutput},
		cancel:  cancel,
		done:    make(chan struct{}),
		status:  "running",
	}
	cmd := shellCommand(jctx, s.sh, a.Cmd, dir, childEnv(s.env...), j.out)
	forget, err := s.procs.start(cmd, a.Cmd)
	if err != nil {
		cancel()
		return toolErrorf("failed to start background job: %v", err)
	}
	s.mu.Lock()
	s.jobs = append(s.jobs, j)
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		forget()
		s.mu.Lock()
		switch {
		case j.status == "stopped":
		case err != nil:
			j.status, j.err = "failed", err
		default:
			j.status = "completed"
		}
		s.mu.Unlock()
		cancel()
		close(j.done)
	}()
	return toolResult{Output: fmt.Sprintf("Background job started with ID: %s\nCommand: %s\nWorking directory: %s", j.id, j.cmd, j.dir)}
}

// job returns the session's job with that ID, or nil.
func (s *shellToolset) job(env *toolEnv, id string) *shellJob {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.jobs, func(j *shellJob) bool { return j.id == id && j.session == toolsSessionID(env) })
	if i < 0 {
		return nil
	}
	return s.jobs[i]
}

func (s *shellToolset) listJobs(ctx context.Context, env *toolEnv, a shellArgs) toolResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, j := range s.jobs {
		if j.session != toolsSessionID(env) {
			continue
		}
		fmt.Fprintf(&b, "ID: %s\nCommand: %s\nStatus: %s\nStarted: %s\n\n", j.id, j.cmd, j.status, j.start.Format(time.RFC3339))
	}
	if b.Len() == 0 {
		return toolResult{Output: "No background jobs"}
	}
	return toolResult{Output: strings.TrimSuffix(b.String(), "\n\n")}
}

func (s *shellToolset) viewJob(ctx context.Context, env *toolEnv, a shellArgs) toolResult {
	j := s.job(env, a.JobID)
	if j == nil {
		return toolErrorf("job %s not found", a.JobID)
	}
	s.mu.Lock()
	status, jerr := j.status, j.err
	s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "Job ID: %s\nCommand: %s\nWorking directory: %s\nStatus: %s\n", j.id, j.cmd, j.dir, status)
	if jerr != nil {
		fmt.Fprintf(&b, "Error: %v\n", jerr)
	}
	out := j.out.String()
	if out == "" {
		out = "<no output>"
	}
	b.WriteString("Output:\n" + out)
	return toolResult{Output: b.String()}
}

func (s *shellToolset) stopJob(ctx context.Context, env *toolEnv, a shellArgs) toolResult {
	j := s.job(env, a.JobID)
	if j == nil {
		return toolErrorf("job %s not found", a.JobID)
	}
	s.mu.Lock()
	if j.status != "running" {
		st := j.status
		s.mu.Unlock()
		return toolErrorf("job %s is not running (status: %s)", j.id, st)
	}
	j.status = "stopped"
	s.mu.Unlock()
	j.cancel()
	<-j.done
	return toolResult{Output: fmt.Sprintf("Background job %s stopped", j.id)}
}

// close kills every running job's process group and waits for them to exit.
func (s *shellToolset) close() error {
	s.mu.Lock()
	jobs := slices.Clone(s.jobs)
	for _, j := range jobs {
		if j.status == "running" {
			j.status = "stopped"
		}
	}
	s.mu.Unlock()
	for _, j := range jobs {
		j.cancel()
		<-j.done
	}
	return nil
}

// --- script ---

// scriptVarRE finds $name and ${name} references in a script command.
var scriptVarRE = regexp.MustCompile(`\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))`)

// newScriptToolset returns one tool per `shell:` entry, in document order. The
// load-time checks reject commands using undeclared variables and required
// arguments that are not declared.
func newScriptToolset(ts *toolsetConfig, opts toolsetOptions) (*builtinToolset, error) {
	if ts.Shell == nil || len(ts.Shell.Keys) == 0 {
		return nil, errors.New("script toolset has no shell commands")
	}
	baseEnv, err := shellEnv(ts.Env, opts.Getenv)
	if err != nil {
		return nil, err
	}
	sh := opts.Getenv("SHELL")
	if sh == "" {
		sh = "/bin/sh"
	}
	timeout := time.Duration(toolsShellTimeout) * time.Second
	if ts.Timeout > 0 {
		timeout = time.Duration(ts.Timeout) * time.Second
	}
	b := &builtinToolset{}
	for _, name := range ts.Shell.Keys {
		c := ts.Shell.Values[name]
		if c == nil || strings.TrimSpace(c.Cmd) == "" {
			return nil, fmt.Errorf("tool '%s' has no cmd", name)
		}
		toolEnv, err := shellEnv(c.Env, opts.Getenv)
		if err != nil {
			return nil, err
		}
		props := map[string]any{}
		var argNames []string
		if c.Args != nil {
			for _, k := range c.Args.Keys {
				schema, ok := argSchema(c.Args.Values[k], fmt.Sprintf("Value of $%s in the command.", k))
				if !ok {
					return nil, fmt.Errorf("tool '%s': arg '%s' must be a JSON schema object", name, k)
				}
				props[k] = schema
				argNames = append(argNames, k)
			}
		}
		// Names set through env are legitimate $references too (the reference only
		// accepts args, which rejects e.g. a configured $TOKEN).
		known := slices.Clone(argNames)
		for _, kv := range append(slices.Clone(baseEnv), toolEnv...) {
			known = append(known, kv[:strings.IndexByte(kv, '=')])
		}
		var undefined []string
		for _, m := range scriptVarRE.FindAllStringSubmatch(c.Cmd, -1) {
			v := m[1] + m[2]
			if !slices.Contains(known, v) && !slices.Contains(undefined, v) {
				undefined = append(undefined, v)
			}
		}
		if len(undefined) > 0 {
			return nil, fmt.Errorf("tool '%s' uses undefined args: %v", name, undefined)
		}
		var badReq []string
		for _, r := range c.Required {
			if !slices.Contains(argNames, r) {
				badReq = append(badReq, r)
			}
		}
		if len(badReq) > 0 {
			return nil, fmt.Errorf("tool '%s' has required args that are not declared: %v", name, badReq)
		}
		schema := map[string]any{"type": "object", "properties": props}
		if len(c.Required) > 0 {
			schema["required"] = c.Required
		}
		params, _ := json.Marshal(schema)
		desc := c.Description
		if desc == "" {
			desc = "Execute shell command: " + c.Cmd
		}
		st := &scriptTool{sh: sh, c: c, env: append(baseEnv, toolEnv...), args: argNames, timeout: timeout, procs: opts.Procs}
		b.list = append(b.list, tool{
			def: toolDef{Name: name, Description: desc, Parameters: params, OutputSchema: json.RawMessage(`{"type":"string"}`)},
			run: st.run,
		})
	}
	return b, nil
}

// scriptTool is one configured command.
type scriptTool struct {
	sh      string
	c       *scriptToolConfig
	env     []string
	args    []string
	timeout time.Duration
	procs   *procGroups
}

// run exports each argument as an environment variable and runs the command; the
// command text itself is never rewritten, so arguments cannot inject shell syntax.
func (st *scriptTool) run(ctx context.Context, env *toolEnv, raw json.RawMessage) toolResult {
	var args map[string]any
	if err := toolsArgs(raw, &args); err != nil {
		return toolErrorf("%v", err)
	}
	for _, r := range st.c.Required {
		if _, ok := args[r]; !ok {
			return toolErrorf("missing required argument: %s", r)
		}
	}
	vars := slices.Clone(st.env)
	for _, k := range slices.Sorted(maps.Keys(args)) {
		if !slices.Contains(st.args, k) {
			continue // undeclared arguments are not exported
		}
		v, ok := args[k].(string)
		if !ok {
			b, _ := json.Marshal(args[k])
			v = string(b)
		}
		vars = append(vars, k+"="+v)
	}
	dir := st.c.WorkingDir
	if env != nil && env.WorkingDir != "" && !filepath.IsAbs(dir) {
		base, err := shellDir(env, "")
		if err != nil {
			return toolErrorf("%v", err)
		}
		dir = filepath.Join(base, dir)
	}
	tctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	out := &shellBuf{limit: 4 * toolsMaxOutput}
	if env != nil {
		out.stream = env.Output
	}
	cmd := shellCommand(tctx, st.sh, st.c.Cmd, dir, childEnv(vars...), out)
	err := runRecorded(cmd, st.procs, st.c.Cmd)
	out.endStream()
	if tctx.Err() != nil && ctx.Err() == nil {
		err = fmt.Errorf("timed out after %v", st.timeout)
	}
	if err != nil {
		return toolErrorf("Error executing command '%s': %v\nOutput: %s", st.c.Cmd, err, out.String())
	}
	return toolResult{Output: out.String()}
}
