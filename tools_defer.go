package main

// tools_defer.go: deferred tools (CONFIG.md §6.1 `defer`, §6.3). A toolset's deferred
// tools are not offered to the model; one automatic toolset, after the agent's others,
// offers search_tool (find them by name or description) and add_tool (activate one for
// the rest of the session). Activations are per session: toolsets are shared by every
// session of an agent config, the reference builds them per session.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
)

const deferredInstruction = "## Deferred Tools\n\nUse search_tool to discover additional tools by keyword (e.g., \"remote\", \"read\", \"write\"). Use add_tool to activate a discovered tool."

// deferredToolset is the automatic search_tool/add_tool toolset of one agent.
type deferredToolset struct {
	sources []deferredSource
	owned   []toolset // sources deferred whole: not in the agent's list, closed here

	mu     sync.Mutex
	active map[string][]tool // session ID → activated tools, in activation order
}

// deferredSource is a toolset some or all of whose tools are deferred.
type deferredSource struct {
	ts    toolset
	all   bool
	names []string
}

func (s deferredSource) defers(name string) bool { return s.all || slices.Contains(s.names, name) }

// addSource registers ts's deferred tools; whole reports that the toolset is deferred
// entirely, so it is owned (closed) here.
func (d *deferredToolset) addSource(ts toolset, cfg deferConfig) {
	d.sources = append(d.sources, deferredSource{ts: ts, all: cfg.All, names: cfg.Tools})
	if cfg.All {
		d.owned = append(d.owned, ts)
	}
}

func (d *deferredToolset) instruction() string { return deferredInstruction }

func (d *deferredToolset) close() error {
	for _, ts := range d.owned {
		ts.close()
	}
	return nil
}

// toolSessionKey carries the session whose deferred-tool activations a tool listing
// shows (withToolSession).
type toolSessionKey struct{}

// withToolSession makes tool listings under ctx include session id's activated tools.
func withToolSession(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, toolSessionKey{}, id)
}

// tools lists search_tool, add_tool and the tools the listing's session activated.
func (d *deferredToolset) tools(ctx context.Context) ([]tool, error) {
	id, _ := ctx.Value(toolSessionKey{}).(string)
	list := []tool{
		{def: toolsDef("search_tool", "deferred", "Search Tool", "Search for available deferred tools by name or description. Use this to discover tools that can be activated.", true), run: toolsRun(d.search)},
		{def: toolsDef("add_tool", "deferred", "Add Tool", "Activate a deferred tool by name, making it available for use. Use search_tool first to find available tools.", true), run: toolsRun(d.add)},
	}
	if id == "" {
		return list, nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return append(list, d.active[id]...), nil
}

// deferred returns the deferred tools of every source that lists, first name winning.
func (d *deferredToolset) deferred(ctx context.Context) []tool {
	var out []tool
	for _, s := range d.sources {
		list, err := s.ts.tools(ctx)
		if err != nil {
			continue // a source that cannot list now is retried on the next call
		}
		for _, t := range list {
			if s.defers(t.def.Name) && !slices.ContainsFunc(out, func(o tool) bool { return o.def.Name == t.def.Name }) {
				out = append(out, t)
			}
		}
	}
	return out
}

func (d *deferredToolset) isActive(session, name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.ContainsFunc(d.active[session], func(t tool) bool { return t.def.Name == name })
}

// search finds the deferred tools not yet active whose name or description matches
// query, case-insensitively: a substring of the name ranks first, then of the
// description, then the query's letters in order (the reference matches fuzzily).
func (d *deferredToolset) search(ctx context.Context, env *toolEnv, a struct {
	Query string `json:"query"`
}) toolResult {
	q := strings.ToLower(strings.TrimSpace(a.Query))
	type hit struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		score       int
	}
	var hits []hit
	for _, t := range d.deferred(ctx) {
		if d.isActive(toolsSessionID(env), t.def.Name) {
			continue
		}
		if s := deferScore(q, strings.ToLower(t.def.Name), strings.ToLower(t.def.Description)); s > 0 {
			hits = append(hits, hit{t.def.Name, t.def.Description, s})
		}
	}
	if len(hits) == 0 {
		return toolErrorf("No deferred tools found matching '%s'", a.Query)
	}
	slices.SortStableFunc(hits, func(x, y hit) int { return y.score - x.score })
	b, _ := json.Marshal(hits)
	return toolResult{Output: fmt.Sprintf("Found %d deferred tool(s):\n%s", len(hits), b)}
}

// deferScore ranks a tool for query q (lower case); 0 means no match.
func deferScore(q, name, desc string) int {
	switch {
	case q == "":
		return 1
	case strings.Contains(name, q):
		return 4
	case strings.Contains(desc, q):
		return 3
	case deferSubsequence(q, name+" "+desc):
		return 2
	}
	return 0
}

// deferSubsequence reports whether q's characters appear in s in order.
func deferSubsequence(q, s string) bool {
	for _, r := range q {
		i := strings.IndexRune(s, r)
		if i < 0 {
			return false
		}
		s = s[i+len(string(r)):]
	}
	return true
}

// add activates a deferred tool for the calling session.
func (d *deferredToolset) add(ctx context.Context, env *toolEnv, a struct {
	Name string `json:"name"`
}) toolResult {
	id := toolsSessionID(env)
	if d.isActive(id, a.Name) {
		return toolResult{Output: fmt.Sprintf("Tool '%s' is already active", a.Name)}
	}
	list := d.deferred(ctx)
	i := slices.IndexFunc(list, func(t tool) bool { return t.def.Name == a.Name })
	if i < 0 {
		return toolErrorf("Tool '%s' not found.", a.Name)
	}
	t := list[i]
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active == nil {
		d.active = map[string][]tool{}
	}
	if !slices.ContainsFunc(d.active[id], func(o tool) bool { return o.def.Name == a.Name }) {
		d.active[id] = append(d.active[id], t)
	}
	return toolResult{Output: fmt.Sprintf("Tool '%s' has been activated and is now available for use.\n\nDescription: %s", a.Name, t.def.Description)}
}
