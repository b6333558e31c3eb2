package main

// session_models.go: a session's model choice as the newer docker-agent clients make
// it (API-UPSTREAM.md §3.1, §3.9): the run body's "model", a persistent per-agent
// override kept in the session's agent_model_overrides (the column the model_picker
// tools use, tools_models.go), and GET /api/sessions/{id}/models, which lists what the
// current agent can be switched to.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// applyModelOverride makes ref the model of agent ag in session rec from now on: a
// config model name or an inline provider/model. Choosing the agent's own model
// clears the override. An inline ref is also recorded in custom_models_used, so the
// models listing keeps offering it. A ref that does not resolve to a usable model is
// a 422 and changes nothing.
func (s *server) applyModelOverride(ctx context.Context, t *team, rec *sessionRecord, ag *agentConfig, ref string) error {
	spec, err := t.file.modelSpec(ref, s.cfg.getenv)
	if err == nil {
		_, err = modelAPIType(spec)
	}
	if err != nil {
		return &httpError{http.StatusUnprocessableEntity, fmt.Sprintf("cannot switch agent %s to model %q: %v", ag.Name, ref, err)}
	}
	overrides := decodeOverrides(rec.AgentModelOverrides)
	if ref == ag.Model {
		delete(overrides, ag.Name)
	} else {
		overrides[ag.Name] = ref
	}
	custom := decodeCustomModels(rec.CustomModelsUsed)
	if _, named := t.file.Models.get(ref); !named && !slices.Contains(custom, ref) {
		custom = append(custom, ref)
	}
	ob, _ := json.Marshal(overrides)
	cb, _ := json.Marshal(custom)
	if err := s.st.setModelChoice(ctx, rec.ID, string(ob), string(cb)); err != nil {
		return err
	}
	rec.AgentModelOverrides, rec.CustomModelsUsed = string(ob), string(cb)
	return nil
}

// decodeOverrides reads agent_model_overrides (agent → model ref); bad text is empty.
func decodeOverrides(text string) map[string]string {
	m := map[string]string{}
	json.Unmarshal([]byte(text), &m)
	return m
}

// decodeCustomModels reads custom_models_used; bad text is empty.
func decodeCustomModels(text string) []string {
	var l []string
	json.Unmarshal([]byte(text), &l)
	return l
}

// sessionTeams remembers, per session, the agent source and agent segment of its last
// run in this process: what upstream calls the session's attached runtime, which
// GET …/models needs. The zero value is ready; it holds at most maxSessionTeams.
type sessionTeams struct {
	mu sync.Mutex
	m  map[string]sessionTeam
}

type sessionTeam struct{ source, agent string }

const maxSessionTeams = 10000

func (st *sessionTeams) remember(id, source, agent string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.m == nil {
		st.m = map[string]sessionTeam{}
	}
	if _, ok := st.m[id]; !ok && len(st.m) >= maxSessionTeams {
		for k := range st.m { // any one: the oldest sessions are as likely as others
			delete(st.m, k)
			break
		}
	}
	st.m[id] = sessionTeam{source, agent}
}

func (st *sessionTeams) get(id string) (sessionTeam, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	v, ok := st.m[id]
	return v, ok
}

// modelChoiceJSON is one model of GET …/models.
type modelChoiceJSON struct {
	Name         string  `json:"name"`
	Ref          string  `json:"ref"`
	Provider     string  `json:"provider,omitempty"`
	Model        string  `json:"model,omitempty"`
	IsDefault    bool    `json:"is_default,omitempty"`
	IsCurrent    bool    `json:"is_current,omitempty"`
	IsCustom     bool    `json:"is_custom,omitempty"`
	InputCost    float64 `json:"input_cost,omitempty"`  // USD per million tokens
	OutputCost   float64 `json:"output_cost,omitempty"` // USD per million tokens
	ContextLimit int64   `json:"context_limit,omitempty"`
}

type sessionModelsJSON struct {
	Agent           string            `json:"agent"`
	CurrentModelRef string            `json:"current_model_ref,omitempty"`
	Models          []modelChoiceJSON `json:"models"`
}

// serveSessionModels lists the models the session's current agent can be switched to
// with the run body's "model". Like upstream it needs the session to have run in this
// process (404 otherwise); agentd always supports switching, so upstream's 422
// "model switching not supported" never applies here.
func (s *server) serveSessionModels(w http.ResponseWriter, r *http.Request) {
	sid := r.PathValue("id")
	rec, err := s.st.session(r.Context(), sid)
	if err != nil {
		s.writeError(w, r, sessionErr(sid, err))
		return
	}
	last, ok := s.teams.get(sid)
	if !ok {
		s.writeError(w, r, notFound("session not found or not running"))
		return
	}
	t, name, err := s.agents.runTeam(last.source, last.agent)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer t.release()
	items, err := s.st.items(r.Context(), sid)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	at, ag, err := startAgent(t, items, name)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, s.modelChoices(at, rec, ag))
}

// modelChoices lists the config's models, the agent's own inline model, the session's
// custom models and its current override, each once, in that order.
func (s *server) modelChoices(t *team, rec *sessionRecord, ag *agentConfig) sessionModelsJSON {
	current := decodeOverrides(rec.AgentModelOverrides)[ag.Name]
	out := sessionModelsJSON{Agent: ag.Name, CurrentModelRef: current}
	add := func(ref string, custom bool) {
		if slices.ContainsFunc(out.Models, func(m modelChoiceJSON) bool { return m.Ref == ref }) {
			return
		}
		m := modelChoiceJSON{Name: ref, Ref: ref, IsCustom: custom, IsDefault: ref == ag.Model}
		if mc, ok := t.file.Models.get(ref); ok {
			m.Provider, m.Model = mc.Provider, mc.Model
		} else if p, name, ok := cfgSplitInline(ref); ok {
			m.Provider, m.Model = p, name
		}
		price := priceOf(m.Model)
		m.InputCost, m.OutputCost, m.ContextLimit = price.in, price.out, price.context
		m.IsCurrent = ref == current || current == "" && m.IsDefault
		out.Models = append(out.Models, m)
	}
	if t.file.Models != nil {
		for _, k := range t.file.Models.Keys {
			add(k, false)
		}
	}
	add(ag.Model, false)
	for _, ref := range decodeCustomModels(rec.CustomModelsUsed) {
		add(ref, true)
	}
	if current != "" {
		add(current, true)
	}
	return out
}
