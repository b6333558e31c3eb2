package main

// agents.go: agent sources (a file, a directory, an OCI reference or a built-in
// name), their hot reload, the loaded teams, and the /api/agents routes.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// builtinAgents are the sources selected by name instead of a path, as the reference's
// `default`. They need no file and, with --fake, no network.
var builtinAgents = map[string]string{
	"default": `agents:
  root:
    model: auto
    description: A helpful assistant
    instruction: You are a helpful assistant. Answer clearly and concisely.
`,
}

// sourceOptions configures how sources are read and refreshed.
type sourceOptions struct {
	root         string // server working dir; relative sources resolve against it
	pullInterval time.Duration
	cacheDir     string
	getenv       func(string) string
	log          *slog.Logger
	http         *http.Client
	procs        *procGroups
	codeMode     bool // --code-mode-tools
}

// agentSources is the set of agent configs the server serves, keyed by agent id. Local
// files are re-read when they change; OCI refs are re-pulled every pull interval.
// Safe for concurrent use.
type agentSources struct {
	opts sourceOptions
	kind string // "file", "dir", "oci" or "builtin"
	path string // the file or directory, absolute; the ref for "oci"
	oci  *ociPuller

	mu      sync.RWMutex
	entries map[string]*agentEntry

	stop chan struct{}
	done chan struct{}
}

// agentEntry is one agent id: its last good team and its last load error.
type agentEntry struct {
	id     string
	path   string // file path ("" for OCI and built-ins)
	team   *team  // last version that loaded; nil if none ever did
	err    error  // error of the latest load attempt, nil when team is current
	stamp  fileStamp
	digest string // OCI manifest digest of team
}

// fileStamp identifies a version of a file cheaply.
type fileStamp struct {
	mod  time.Time
	size int64
}

// newAgentSources resolves source the way the reference does (file, directory, built-in
// name, else OCI reference), loads everything once and starts the refresher.
func newAgentSources(ctx context.Context, source string, o sourceOptions) (*agentSources, error) {
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.getenv == nil {
		o.getenv = os.Getenv
	}
	if o.http == nil {
		o.http = &http.Client{}
	}
	a := &agentSources{opts: o, entries: map[string]*agentEntry{}, stop: make(chan struct{}), done: make(chan struct{})}
	p := absPath(o.root, expandHome(source))
	fi, statErr := os.Stat(p)
	ext := strings.ToLower(filepath.Ext(source))
	switch {
	case statErr == nil && fi.IsDir():
		a.kind, a.path = "dir", p
	case statErr == nil || ext == ".yaml" || ext == ".yml":
		a.kind, a.path = "file", p
	case builtinAgents[source] != "":
		a.kind, a.path = "builtin", source
	case isOCIRef(source):
		a.kind, a.path = "oci", source
		a.oci = &ociPuller{HTTP: o.http, CacheDir: o.cacheDir, Getenv: o.getenv, Logger: o.log}
	default:
		return nil, fmt.Errorf("source %q is not a file, a directory or an OCI reference", source)
	}
	if o.pullInterval > 0 && a.kind != "oci" {
		return nil, errors.New("--pull-interval flag can only be used with OCI references, not local files")
	}
	a.refresh(ctx)
	go a.watch()
	return a, nil
}

// close stops the refresher and every team's toolsets.
func (a *agentSources) close() {
	close(a.stop)
	<-a.done
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.entries {
		if e.team != nil {
			e.team.retire()
		}
	}
}

// watch re-reads local sources every reloadPollInterval and OCI sources every pull
// interval (the reference never reloads local files).
func (a *agentSources) watch() {
	defer close(a.done)
	every := reloadPollInterval
	switch {
	case a.kind == "builtin", a.kind == "oci" && a.opts.pullInterval == 0:
		return
	case a.kind == "oci":
		every = a.opts.pullInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			a.refresh(ctx)
			cancel()
		}
	}
}

// refresh brings every entry up to date with its source.
func (a *agentSources) refresh(ctx context.Context) {
	switch a.kind {
	case "builtin":
		a.load(a.path, "", []byte(builtinAgents[a.path]), fileStamp{}, "")
	case "file":
		a.refreshFiles(map[string]string{fileID(a.path): a.path})
	case "dir":
		files, err := agentFilesIn(a.path)
		if err != nil {
			a.opts.log.Warn("reading agent directory", "dir", a.path, "err", err)
			return
		}
		a.refreshFiles(files)
	case "oci":
		a.refreshOCI(ctx)
	}
}

// agentFilesIn maps id → path for every .yaml/.yml file directly in dir; on a duplicate
// id the later name in sorted order wins, as in the reference.
func agentFilesIn(dir string) (map[string]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := map[string]string{}
	for _, de := range des { // ReadDir returns names sorted
		ext := strings.ToLower(filepath.Ext(de.Name()))
		if (ext != ".yaml" && ext != ".yml") || !de.Type().IsRegular() {
			continue
		}
		files[fileID(de.Name())] = filepath.Join(dir, de.Name())
	}
	return files, nil
}

// fileID is the agent id of a file: its base name without the extension.
func fileID(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// refreshFiles reloads files whose stamp changed, adds new ones and drops removed ones.
func (a *agentSources) refreshFiles(files map[string]string) {
	a.mu.RLock()
	var gone []string
	for id := range a.entries {
		if _, ok := files[id]; !ok {
			gone = append(gone, id)
		}
	}
	a.mu.RUnlock()
	for _, id := range gone {
		a.mu.Lock()
		if e := a.entries[id]; e != nil && e.team != nil {
			e.team.retire()
		}
		delete(a.entries, id)
		a.mu.Unlock()
		a.opts.log.Info("agent removed", "id", id)
	}
	for id, path := range files {
		var stamp fileStamp
		if fi, err := os.Stat(path); err == nil {
			stamp = fileStamp{fi.ModTime(), fi.Size()}
		}
		a.mu.RLock()
		e := a.entries[id]
		same := e != nil && e.path == path && e.stamp == stamp && stamp != (fileStamp{})
		a.mu.RUnlock()
		if same {
			continue
		}
		data, err := readAgentFile(path)
		if err != nil {
			a.setError(id, path, stamp, err)
			continue
		}
		a.load(id, path, data, stamp, "")
	}
}

// readAgentFile reads a config file with the size cap the YAML parser enforces anyway.
func readAgentFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxAgentFile {
		return nil, fmt.Errorf("%s: file is larger than %d bytes", path, maxAgentFile)
	}
	return os.ReadFile(path)
}

// refreshOCI pulls the reference when its digest changed (or on first load) and swaps
// the team in only if the new config is valid.
func (a *agentSources) refreshOCI(ctx context.Context) {
	id := ociRefID(a.path)
	a.mu.RLock()
	e := a.entries[id]
	pulled := e != nil && e.digest != ""
	a.mu.RUnlock()
	if pulled {
		d, err := a.oci.remoteDigest(ctx, a.path)
		if err != nil {
			a.opts.log.Warn("checking for a new version", "ref", a.path, "err", err)
			return
		}
		if a.current(id, d) {
			return
		}
	}
	data, digest, err := a.oci.pull(ctx, a.path)
	if err != nil {
		a.setError(id, "", fileStamp{}, err)
		return
	}
	// A registry's HEAD digest need not be the manifest's hash, so a pull may bring
	// back the artifact already serving: that is no reload.
	if a.current(id, digest) {
		return
	}
	a.load(id, "", data, fileStamp{}, digest)
}

// puller is the source's OCI puller, or a new one with the same options for the
// external agents of local configs.
func (a *agentSources) puller() *ociPuller {
	if a.oci != nil {
		return a.oci
	}
	return &ociPuller{HTTP: a.opts.http, CacheDir: a.opts.cacheDir, Getenv: a.opts.getenv, Logger: a.opts.log}
}

// current reports whether id already serves the artifact with digest; if so, an error
// left by a bad version pulled since is cleared, as the registry serves this one again.
func (a *agentSources) current(id, digest string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.entries[id]
	if e == nil || e.team == nil || digest == "" || e.digest != digest {
		return false
	}
	e.err = nil
	return true
}

// load parses data and, if valid, makes it the entry's team; the previous team keeps
// serving the runs that hold it and is closed when they finish.
func (a *agentSources) load(id, path string, data []byte, stamp fileStamp, digest string) {
	name := path
	if name == "" {
		name = id
	}
	f, err := loadAgentFile(name, data)
	if err == nil && len(f.Agents) == 0 {
		err = errors.New("no agents loaded; ensure your agent configuration defines at least one agent")
	}
	if err != nil {
		a.setError(id, path, stamp, err)
		return
	}
	opts := toolsetOptions{ConfigPath: path, WorkingDir: a.opts.root, DataDir: dataDir(), Getenv: a.opts.getenv, Logger: a.opts.log, Procs: a.opts.procs,
		HTTP: a.opts.http, CacheDir: a.opts.cacheDir, CodeMode: a.opts.codeMode}
	t := newTeam(id, f, opts)
	ext := &externalLoader{oci: a.puller(), http: a.opts.http, opts: opts}
	t.external = ext.loadExternal(context.Background(), f, nil)
	a.mu.Lock()
	e := a.entries[id]
	if e == nil {
		e = &agentEntry{id: id}
		a.entries[id] = e
	}
	old := e.team
	e.path, e.team, e.err, e.stamp, e.digest = path, t, nil, stamp, digest
	a.mu.Unlock()
	if old != nil {
		old.retire()
		a.opts.log.Info("agent reloaded", "id", id)
	}
}

// setError records a failed load; the last good team, if any, keeps serving.
func (a *agentSources) setError(id, path string, stamp fileStamp, err error) {
	a.mu.Lock()
	e := a.entries[id]
	if e == nil {
		e = &agentEntry{id: id, path: path}
		a.entries[id] = e
	}
	e.err, e.stamp = err, stamp
	a.mu.Unlock()
	a.opts.log.Warn("agent failed to load", "id", id, "err", err)
}

// team returns the current team of id, acquired for the caller, who must release it.
func (a *agentSources) team(id string) (*team, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	e := a.entries[id]
	if e == nil {
		return nil, notFound("agent not found: %s", id)
	}
	if e.team == nil {
		return nil, notFound("agent %s failed to load: %v", id, e.err)
	}
	e.team.acquire()
	return e.team, nil
}

// runTeam is the team a run addresses, and the agent name to start with. id is a file
// id first; when it names no file (and no agent name follows), it may name an agent of
// exactly one file, which then starts: the documented `POST /api/sessions/$SID/agent/root`
// while serving agent.yaml, whose file id is `agent`.
func (a *agentSources) runTeam(id, name string) (*team, string, error) {
	t, err := a.team(id)
	if err == nil || name != "" {
		return t, name, err
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.entries[id] != nil {
		return nil, "", err // a file that failed to load keeps its id
	}
	var found *team
	for _, e := range a.entries {
		if e.team == nil || e.team.file.agent(id) == nil {
			continue
		}
		if found != nil {
			return nil, "", notFound("agent not found: %s (several files define an agent %s; use /agent/FILE/%s)", id, id, id)
		}
		found = e.team
	}
	if found == nil {
		return nil, "", err
	}
	found.acquire()
	return found, id, nil
}

// hasBaseURL reports whether a loaded config names base (trailing "/" ignored) as a
// model's or provider's base_url: the --record gateway forwards only to those and to
// the built-in providers.
func (a *agentSources) hasBaseURL(base string) bool {
	same := func(u string) bool { return u != "" && strings.TrimRight(u, "/") == base }
	a.mu.RLock()
	defer a.mu.RUnlock()
	for _, e := range a.entries {
		if e.team == nil {
			continue
		}
		if m := e.team.file.Models; m != nil {
			for _, mc := range m.Values {
				if same(mc.BaseURL) {
					return true
				}
			}
		}
		if p := e.team.file.Providers; p != nil {
			for _, pc := range p.Values {
				if same(pc.BaseURL) {
					return true
				}
			}
		}
	}
	return false
}

// agentSummary is an element of GET /api/agents.
type agentSummary struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Multi       bool   `json:"multi"`
	Error       string `json:"error,omitempty"`
}

// list returns every source sorted by id; failed ones carry an error.
func (a *agentSources) list() []agentSummary {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := []agentSummary{}
	for id, e := range a.entries {
		s := agentSummary{Name: id}
		if e.team != nil {
			f := e.team.file
			s.Description = e.team.describe(f.Agents[0].Description)
			s.Multi = len(f.Agents) > 1
		}
		if e.err != nil {
			s.Error = e.err.Error()
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(x, y agentSummary) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// dataDir is where agentd keeps per-user state such as default memory databases.
func dataDir() string {
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "agentd")
	}
	return filepath.Join(os.TempDir(), "agentd")
}

func (s *server) serveAgents(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.agents.list())
}

func (s *server) serveAgent(w http.ResponseWriter, r *http.Request) {
	t, err := s.agents.team(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer t.release()
	b, err := t.file.redactedJSON()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
}

func (s *server) serveToolCount(w http.ResponseWriter, r *http.Request) {
	t, err := s.agents.team(r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer t.release()
	// An external agent a handoff or transfer can reach counts too (its reference
	// path-escaped), with its own team's tools.
	at, ag := t.locate(r.PathValue("name"))
	if ag == nil {
		s.writeError(w, r, notFound("agent %q not found in %s (available agents: %s)", r.PathValue("name"), t.id, t.agentNames()))
		return
	}
	tools, _ := at.agentTools(r.Context(), ag, "")
	writeJSON(w, http.StatusOK, map[string]int{"available_tools": len(tools)})
}

// team is one loaded version of an agent config together with the toolsets started
// for it. Toolsets (MCP servers included) are started once per team, lazily, and shared
// by every session; a replaced team is closed when its last run releases it.
type team struct {
	id   string
	file *agentFile
	opts toolsetOptions

	mu      sync.Mutex
	refs    int
	retired bool
	sets    map[string]*agentToolsets // by agent name
	rag     *ragSet                   // the config's rag sources, shared by its agents
	skills  skillsCache               // skills.go

	external map[string]*team // external sub_agents/handoffs by ref (external.go); set before use
}

// agentToolsets are the started toolsets of one agent and the warnings of those that
// could not be created (the reference skips them with a warning too).
type agentToolsets struct {
	sets     []toolset
	rag      []*ragSource // one search tool each, after the delegation tools
	warnings []string
}

func newTeam(id string, f *agentFile, opts toolsetOptions) *team {
	logIgnoredKeys(opts.Logger, id, f, opts.CodeMode)
	return &team{id: id, file: f, opts: opts, sets: map[string]*agentToolsets{}, rag: newRAGSet(f, opts)}
}

func (t *team) acquire() {
	t.mu.Lock()
	t.refs++
	t.mu.Unlock()
}

// release gives back a reference from agentSources.team; the last one closes a
// retired team.
func (t *team) release() {
	t.mu.Lock()
	t.refs--
	done := t.retired && t.refs == 0
	t.mu.Unlock()
	if done {
		t.closeToolsets()
	}
}

// retire marks the team replaced; it closes now if no run holds it.
func (t *team) retire() {
	t.mu.Lock()
	t.retired = true
	done := t.refs == 0
	t.mu.Unlock()
	if done {
		t.closeToolsets()
	}
}

func (t *team) closeToolsets() {
	t.mu.Lock()
	sets := t.sets
	t.sets = map[string]*agentToolsets{}
	t.mu.Unlock()
	for _, a := range sets {
		for _, ts := range a.sets {
			ts.close()
		}
	}
	t.rag.close()
	// External teams live as long as the team that loaded them, plus any
	// background agent still holding one.
	for _, ext := range t.external {
		ext.retire()
	}
}

// describe expands ${env.NAME} placeholders in a description or welcome message, as
// the reference does when it loads a config.
func (t *team) describe(s string) string {
	if t.opts.Getenv == nil {
		return s
	}
	return expandEnvTemplate(s, t.opts.Getenv)
}

// agentNames lists the team's agents for error messages.
func (t *team) agentNames() string {
	var names []string
	for _, ag := range t.file.Agents {
		names = append(names, ag.Name)
	}
	return strings.Join(names, ", ")
}

// toolsets returns the agent's toolsets, creating them on first use.
func (t *team) toolsets(ag *agentConfig) *agentToolsets {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.sets[ag.Name]; s != nil {
		return s
	}
	s := &agentToolsets{warnings: ignoredKeyWarnings(t.file, ag, t.opts.CodeMode)}
	deferred := &deferredToolset{}
	var lsps []*toolsetConfig
	for _, cfg := range ag.Toolsets {
		if cfg.Type == "lsp" {
			lsps = append(lsps, cfg) // merged into one toolset after the others (CONFIG.md §6.1)
			continue
		}
		ts, err := newToolset(cfg, t.opts)
		if err != nil {
			s.warnings = append(s.warnings, fmt.Sprintf("toolset %s failed: %v", cfg.Type, err))
			continue
		}
		switch {
		case cfg.Defer.All:
			deferred.addSource(ts, cfg.Defer)
			continue
		case len(cfg.Defer.Tools) > 0:
			deferred.addSource(ts, cfg.Defer)
			ts = &wrappedToolset{toolset: ts, exclude: cfg.Defer.Tools}
		}
		s.sets = append(s.sets, ts)
	}
	if len(lsps) > 0 {
		ts, errs := newLSPToolset(lsps, t.opts)
		for _, err := range errs {
			s.warnings = append(s.warnings, fmt.Sprintf("toolset lsp failed: %v", err))
		}
		if ts != nil {
			s.sets = append(s.sets, ts)
		}
	}
	if len(deferred.sources) > 0 {
		s.sets = append(s.sets, deferred) // after the agent's toolsets and lsp, as the reference
	}
	var warnings []string
	s.rag, warnings = t.rag.forAgent(ag)
	s.warnings = append(s.warnings, warnings...)
	t.sets[ag.Name] = s
	return s
}

// agentTools lists every tool the agent offers in a session whose working dir is dir
// ("" for none), in the reference's order: its toolsets, then transfer_task and
// handoff, then rag tools, then the skills tools. The first tool of a name wins.
// Toolsets that fail to list are reported as warnings.
func (t *team) agentTools(ctx context.Context, ag *agentConfig, dir string) ([]tool, []string) {
	s := t.toolsets(ag)
	warnings := slices.Clone(s.warnings)
	var out []tool
	seen := map[string]bool{}
	add := func(tl tool) {
		if !seen[tl.def.Name] {
			seen[tl.def.Name] = true
			out = append(out, tl)
		}
	}
	for _, ts := range s.sets {
		tools, err := ts.tools(ctx)
		if err != nil {
			warnings = append(warnings, err.Error())
			continue
		}
		for _, tl := range tools {
			add(tl)
		}
	}
	if len(ag.SubAgents) > 0 {
		add(tool{def: transferTaskDef})
	}
	if len(ag.Handoffs) > 0 {
		add(tool{def: handoffDef})
	}
	for _, src := range s.rag {
		add(src.tool())
	}
	for _, tl := range t.skillsFor(ctx, ag, dir).tools() {
		add(tl)
	}
	if ag.AddDescriptionParameter {
		out = addDescriptionParam(out)
	}
	return out, warnings
}

// newToolset creates the toolset cfg describes, with its common keys applied.
func newToolset(cfg *toolsetConfig, opts toolsetOptions) (toolset, error) {
	var ts toolset
	var err error
	switch cfg.Type {
	case "mcp":
		ts, err = newMCPToolset(cfg, opts)
	case "openapi", "a2a":
		ts, err = newRemoteToolset(cfg, opts)
	default:
		ts, err = newBuiltinToolset(cfg, opts)
	}
	if err != nil {
		return nil, err
	}
	w, err := wrapToolset(ts, cfg)
	if err != nil {
		ts.close()
		return nil, err
	}
	return w, nil
}
