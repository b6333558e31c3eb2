package main

// external.go: sub_agents and handoffs that name an agent outside the config —
// an OCI reference or an http(s) URL. Each is loaded as a team of its own
// (spec/CONFIG.md §7: "loaded as separate teams, and their default agent is
// used"), recursively up to maxExternalDepth, and its default agent takes the
// reference as its name so the `agent` argument of transfer_task and handoff
// matches the entry.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
)

// maxExternalDepth bounds how deep external configs may pull further external
// configs (the reference's limit).
const maxExternalDepth = 10

// externalLoader fetches and builds the external teams of one load.
type externalLoader struct {
	oci  *ociPuller
	http *http.Client
	opts toolsetOptions
}

// loadExternal builds the external team of every sub_agents and handoffs entry
// of f that is not a local agent. chain holds the refs being loaded above f, for
// the cycle guard. A ref that fails is logged with its error and left out:
// delegating or handing off to it then fails with a tool error naming it.
func (l *externalLoader) loadExternal(ctx context.Context, f *agentFile, chain []string) map[string]*team {
	out := map[string]*team{}
	for _, ag := range f.Agents {
		for _, ref := range slices.Concat(ag.SubAgents, ag.Handoffs) {
			if out[ref] != nil || f.agent(ref) != nil || !cfgIsExternalRef(ref) {
				continue
			}
			t, err := l.load(ctx, ref, chain)
			if err != nil {
				l.opts.Logger.Warn("external agent not loaded", "ref", ref, "err", err)
				continue
			}
			out[ref] = t
		}
	}
	return out
}

// load fetches one external ref, parses it with the config loader and builds
// its team, whose default agent is renamed to ref.
func (l *externalLoader) load(ctx context.Context, ref string, chain []string) (*team, error) {
	if slices.Contains(chain, ref) {
		return nil, fmt.Errorf("external agent cycle: %s", strings.Join(append(chain, ref), " → "))
	}
	if len(chain) >= maxExternalDepth {
		return nil, fmt.Errorf("external agents nested deeper than %d", maxExternalDepth)
	}
	data, err := l.fetch(ctx, ref)
	if err != nil {
		return nil, err
	}
	f, err := loadAgentFile(ref, data)
	if err != nil {
		return nil, err
	}
	root := f.defaultAgent()
	if root == nil {
		return nil, fmt.Errorf("%s defines no agents", ref)
	}
	renameAgent(f, root.Name, ref)
	opts := l.opts
	opts.ConfigPath = "" // relative paths in a remote config have no local meaning
	t := newTeam(ociRefID(ref), f, opts)
	t.external = l.loadExternal(ctx, f, append(slices.Clone(chain), ref))
	return t, nil
}

// renameAgent renames agent from to to, and every sub_agents/handoffs entry
// naming it, so the config stays consistent.
func renameAgent(f *agentFile, from, to string) {
	for _, ag := range f.Agents {
		if ag.Name == from {
			ag.Name = to
		}
		for _, list := range [][]string{ag.SubAgents, ag.Handoffs} {
			for i, s := range list {
				if s == from {
					list[i] = to
				}
			}
		}
	}
}

// fetch returns the YAML ref names: an http(s) URL through the outbound client
// (size-capped), anything else through the OCI puller (cached, with the
// offline fallback of `serve api <oci-ref>`).
func (l *externalLoader) fetch(ctx context.Context, ref string) ([]byte, error) {
	lower := strings.ToLower(ref)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		data, _, err := l.oci.pull(ctx, ref)
		return data, err
	}
	// Loading waits for this, so a silent server must not hang it.
	ctx, cancel := context.WithTimeout(ctx, ociRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ref, nil)
	if err != nil {
		return nil, err
	}
	resp, err := withRedirectPolicy(l.http).Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", redactURL(ref), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", redactURL(ref), resp.Status)
	}
	return ociReadAll(resp.Body, maxAgentFile, redactURL(ref))
}

// member returns the team and agent that name stands for: a local agent, or the
// default agent of an external team.
func (t *team) member(name string) (*team, *agentConfig) {
	if ag := t.file.agent(name); ag != nil {
		return t, ag
	}
	if ext := t.external[name]; ext != nil {
		return ext, ext.file.agent(name)
	}
	return nil, nil
}

// locate finds the agent a session last answered with, which handoffs may have
// taken into an external team, or on to an agent of that team: t's own agents and
// external refs first, then, depth first in ref order, those of its external
// teams. A name defined in several of them resolves to the first found.
func (t *team) locate(name string) (*team, *agentConfig) {
	if mt, ag := t.member(name); ag != nil {
		return mt, ag
	}
	for _, ref := range slices.Sorted(maps.Keys(t.external)) {
		if mt, ag := t.external[ref].locate(name); ag != nil {
			return mt, ag
		}
	}
	return nil, nil
}
