package main

// config_decode.go turns the YAML node tree into the typed configuration of
// config.go, applying the rules of the file's version (CONFIG.md §1, §3).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// cfgDecoder turns the YAML node tree into the v7 types, applying the rules of the
// file's version ver: keys that version does not know are unknown fields, and the
// upgrade steps of CONFIG.md §3 happen while decoding.
type cfgDecoder struct {
	file string
	ver  int
}

func (d *cfgDecoder) errf(n *yamlNode, format string, args ...any) error {
	return &yamlError{File: d.file, Line: n.Line, Col: n.Col, Msg: fmt.Sprintf(format, args...)}
}

// kind names a node the way the messages of CONFIG.md §1 do.
func cfgKind(n *yamlNode) string {
	switch n.Kind {
	case yamlMap:
		return "mapping"
	case yamlSeq:
		return "sequence"
	}
	switch n.Tag {
	case "int":
		return "integer"
	case "float":
		return "float"
	case "bool":
		return "boolean"
	case "null":
		return "null"
	}
	return "string"
}

func (d *cfgDecoder) typeErr(n *yamlNode, want string) error {
	return d.errf(n, "%s was used where %s is expected", cfgKind(n), want)
}

func cfgIsNull(n *yamlNode) bool {
	return n == nil || n.Kind == yamlScalar && n.Tag == "null"
}

// str accepts any scalar, using its source text (so `1.50` stays "1.50"); null is "".
func (d *cfgDecoder) str(n *yamlNode, dst *string) error {
	if cfgIsNull(n) {
		*dst = ""
		return nil
	}
	if n.Kind != yamlScalar {
		return d.typeErr(n, "string")
	}
	*dst = n.Text
	return nil
}

// duration is a Go duration string ("30s", "1m"); empty or null is 0, negative is an
// error naming the field.
func (d *cfgDecoder) duration(n *yamlNode, name string) (time.Duration, error) {
	var s string
	if err := d.str(n, &s); err != nil || s == "" {
		return 0, err
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		return 0, d.errf(n, "invalid duration format %q: %v", s, err)
	}
	if dur < 0 {
		return 0, d.errf(n, "%s must be non-negative", name)
	}
	return dur, nil
}

// integer accepts ints, quoted digits and floats (truncated), like the reference.
func (d *cfgDecoder) integer(n *yamlNode) (int64, error) {
	if cfgIsNull(n) {
		return 0, nil
	}
	if n.Kind != yamlScalar || n.Tag == "bool" {
		return 0, d.typeErr(n, "integer")
	}
	t := strings.TrimSpace(n.Text)
	if v, ok := cfgParseInt(t); ok {
		return v, nil
	}
	if f, err := cfgParseFloat(t); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1<<63 {
		return int64(f), nil
	}
	return 0, d.errf(n, "cannot use %q as an integer", n.Text)
}

func (d *cfgDecoder) intField(n *yamlNode, dst *int) error {
	v, err := d.integer(n)
	if err != nil {
		return err
	}
	if v > math.MaxInt32 || v < math.MinInt32 {
		return d.errf(n, "integer %d is out of range", v)
	}
	*dst = int(v)
	return nil
}

// cfgParseInt reads YAML 1.2 core-schema ints: decimal (a leading 0 is not octal),
// 0o octal and 0x hex.
func cfgParseInt(t string) (int64, bool) {
	if v, err := strconv.ParseInt(t, 10, 64); err == nil {
		return v, true
	}
	if strings.HasPrefix(t, "0o") || strings.HasPrefix(t, "0x") {
		if v, err := strconv.ParseInt(t, 0, 64); err == nil {
			return v, true
		}
	}
	return 0, false
}

// cfgParseFloat reads YAML 1.2 core-schema floats, including .inf and .nan.
func cfgParseFloat(t string) (float64, error) {
	switch strings.ToLower(strings.TrimPrefix(strings.TrimPrefix(t, "+"), "-")) {
	case ".inf":
		if strings.HasPrefix(t, "-") {
			return math.Inf(-1), nil
		}
		return math.Inf(1), nil
	case ".nan":
		return math.NaN(), nil
	}
	return strconv.ParseFloat(t, 64)
}

func (d *cfgDecoder) float(n *yamlNode, dst **float64) error {
	if cfgIsNull(n) {
		*dst = nil
		return nil
	}
	if n.Kind != yamlScalar || n.Tag == "bool" {
		return d.typeErr(n, "number")
	}
	f, err := cfgParseFloat(strings.TrimSpace(n.Text))
	if err != nil {
		if v, ierr := strconv.ParseInt(strings.TrimSpace(n.Text), 0, 64); ierr == nil {
			f, err = float64(v), nil
		}
	}
	if err != nil {
		return d.errf(n, "cannot use %q as a number", n.Text)
	}
	*dst = &f
	return nil
}

// boolean accepts only real YAML booleans: `yes`, "true" and 1 are errors (§1).
func (d *cfgDecoder) boolean(n *yamlNode, dst *bool) error {
	if cfgIsNull(n) {
		*dst = false
		return nil
	}
	if n.Kind != yamlScalar || n.Tag != "bool" {
		return d.typeErr(n, "boolean")
	}
	*dst = strings.EqualFold(n.Text, "true")
	return nil
}

func (d *cfgDecoder) boolPtr(n *yamlNode, dst **bool) error {
	if cfgIsNull(n) {
		*dst = nil
		return nil
	}
	var b bool
	if err := d.boolean(n, &b); err != nil {
		return err
	}
	*dst = &b
	return nil
}

// strs decodes a sequence of scalars; a lone scalar is an error, as in the reference.
func (d *cfgDecoder) strs(n *yamlNode, dst *[]string) error {
	if cfgIsNull(n) {
		*dst = nil
		return nil
	}
	if n.Kind != yamlSeq {
		return d.typeErr(n, "sequence")
	}
	out := make([]string, len(n.Values))
	for i, v := range n.Values {
		if err := d.str(v, &out[i]); err != nil {
			return err
		}
	}
	*dst = out
	return nil
}

// strMap decodes a mapping of scalars, in document order; an empty one is nil.
func (d *cfgDecoder) strMap(n *yamlNode, what string, dst **orderedMap[string]) error {
	m := &orderedMap[string]{}
	err := d.mapping(n, what, func(k string, v *yamlNode) (bool, error) {
		var s string
		if err := d.str(v, &s); err != nil {
			return true, err
		}
		m.set(k, s)
		return true, nil
	})
	if err != nil {
		return err
	}
	if m.len() == 0 {
		m = nil
	}
	*dst = m
	return nil
}

// mapping calls fn for every key of a mapping node in document order. fn reports
// whether it knows the key; unknown and duplicate keys are errors. null is empty.
func (d *cfgDecoder) mapping(n *yamlNode, what string, fn func(key string, v *yamlNode) (bool, error)) error {
	if cfgIsNull(n) {
		return nil
	}
	if n.Kind != yamlMap {
		return d.typeErr(n, "mapping")
	}
	seen := make(map[string]*yamlNode, len(n.Keys))
	for i, k := range n.Keys {
		if k.Kind != yamlScalar {
			return d.errf(k, "%s was used where a key is expected", cfgKind(k))
		}
		if prev, dup := seen[k.Text]; dup {
			return d.errf(k, "mapping key %q already defined at line %d, column %d", k.Text, prev.Line, prev.Col)
		}
		seen[k.Text] = k
		known, err := fn(k.Text, n.Values[i])
		if err != nil {
			return err
		}
		if !known {
			if what == "" {
				return d.errf(k, "unknown field %q", k.Text)
			}
			return d.errf(k, "unknown field %q in %s", k.Text, what)
		}
	}
	return nil
}

// nodeJSON renders a node as JSON in document order (for free-form values such as
// an MCP server's config or a JSON schema). Plain ints and floats stay numbers.
func (d *cfgDecoder) nodeJSON(n *yamlNode) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := d.writeNodeJSON(&b, n); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func (d *cfgDecoder) writeNodeJSON(b *bytes.Buffer, n *yamlNode) error {
	if cfgIsNull(n) {
		b.WriteString("null")
		return nil
	}
	switch n.Kind {
	case yamlMap:
		b.WriteByte('{')
		seen := map[string]bool{}
		for i, k := range n.Keys {
			if seen[k.Text] {
				return d.errf(k, "mapping key %q already defined", k.Text)
			}
			seen[k.Text] = true
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k.Text)
			b.Write(kb)
			b.WriteByte(':')
			if err := d.writeNodeJSON(b, n.Values[i]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case yamlSeq:
		b.WriteByte('[')
		for i, v := range n.Values {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := d.writeNodeJSON(b, v); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		v := cfgScalarValue(n)
		vb, err := json.Marshal(v)
		if err != nil {
			// NaN and infinities have no JSON form; keep the text.
			vb, _ = json.Marshal(n.Text)
		}
		b.Write(vb)
	}
	return nil
}

// cfgScalarValue is a scalar as a Go value by its core-schema tag.
func cfgScalarValue(n *yamlNode) any {
	t := strings.TrimSpace(n.Text)
	switch n.Tag {
	case "null":
		return nil
	case "bool":
		return strings.EqualFold(t, "true")
	case "int":
		if v, ok := cfgParseInt(t); ok {
			return v
		}
		if v, err := strconv.ParseFloat(t, 64); err == nil {
			return v
		}
	case "float":
		if v, err := cfgParseFloat(t); err == nil {
			return v
		}
	}
	return n.Text
}

// nodeValue converts a node to map[string]any / []any / scalars (provider_opts).
func (d *cfgDecoder) nodeValue(n *yamlNode) (any, error) {
	if cfgIsNull(n) {
		return nil, nil
	}
	switch n.Kind {
	case yamlMap:
		m := map[string]any{}
		err := d.mapping(n, "", func(k string, v *yamlNode) (bool, error) {
			x, err := d.nodeValue(v)
			m[k] = x
			return true, err
		})
		return m, err
	case yamlSeq:
		s := make([]any, len(n.Values))
		for i, v := range n.Values {
			x, err := d.nodeValue(v)
			if err != nil {
				return nil, err
			}
			s[i] = x
		}
		return s, nil
	}
	return cfgScalarValue(n), nil
}

// knows reports whether the file's version has key in a section with this table.
func (d *cfgDecoder) knows(table []cfgField, key string) bool {
	for _, f := range table {
		if f.key == key {
			return f.since <= d.ver && d.ver <= f.until
		}
	}
	return false
}

// fields is mapping for a section with a version table: fn sees only the keys the
// file's version knows; any other key is an unknown field.
func (d *cfgDecoder) fields(n *yamlNode, what string, table []cfgField, fn func(key string, v *yamlNode) (bool, error)) error {
	return d.mapping(n, what, func(k string, v *yamlNode) (bool, error) {
		if !d.knows(table, k) {
			return false, nil
		}
		return fn(k, v)
	})
}

// ---- Decoding, one function per section ----

func (d *cfgDecoder) document(root *yamlNode, f *agentFile) error {
	return d.fields(root, "", cfgDocumentFields, func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "version":
			return true, nil // already read
		case "agents":
			return true, d.agents(v, f)
		case "models":
			return true, d.models(v, f)
		case "env":
			// v0/v1 top-level env; the v1→v2 upgrade rejects it when set.
			var env *orderedMap[string]
			if err := d.strMap(v, "env", &env); err != nil {
				return true, err
			}
			if env.len() > 0 {
				return true, d.errf(v, "top-level Env is not supported anymore")
			}
			return true, nil
		case "metadata":
			return true, d.metadata(v, &f.Metadata)
		case "rag":
			return true, d.rag(v, f)
		case "providers":
			return true, d.providers(v, f)
		case "permissions":
			if cfgIsNull(v) {
				return true, nil
			}
			f.Permissions = &permissionsConfig{}
			return true, d.permissions(v, f.Permissions)
		case "workflow":
			// Early versions had a workflow list the upgrade drops; check its shape only.
			if !cfgIsNull(v) && v.Kind != yamlSeq {
				return true, d.typeErr(v, "sequence")
			}
			return true, nil
		case "mcps":
			return true, d.mcps(v, f)
		}
		return false, nil
	})
}

func (d *cfgDecoder) metadata(n *yamlNode, m *metadataConfig) error {
	return d.fields(n, "metadata", cfgMetadataFields, func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "author":
			return true, d.str(v, &m.Author)
		case "license":
			return true, d.str(v, &m.License)
		case "readme":
			return true, d.str(v, &m.Readme)
		case "description":
			return true, d.str(v, &m.Description)
		case "version":
			return true, d.str(v, &m.Version)
		}
		return false, nil
	})
}

func (d *cfgDecoder) permissions(n *yamlNode, p *permissionsConfig) error {
	return d.mapping(n, "permissions", func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "allow":
			return true, d.patterns(v, &p.Allow)
		case "ask":
			return true, d.patterns(v, &p.Ask)
		case "deny":
			return true, d.patterns(v, &p.Deny)
		}
		return false, nil
	})
}

func (d *cfgDecoder) providers(n *yamlNode, f *agentFile) error {
	m := &orderedMap[*providerConfig]{}
	err := d.mapping(n, "providers", func(name string, v *yamlNode) (bool, error) {
		p := &providerConfig{}
		m.set(name, p)
		return true, d.mapping(v, fmt.Sprintf("provider %q", name), func(k string, v *yamlNode) (bool, error) {
			switch k {
			case "api_type":
				return true, d.str(v, &p.APIType)
			case "base_url":
				return true, d.str(v, &p.BaseURL)
			case "token_key":
				return true, d.str(v, &p.TokenKey)
			}
			return false, nil
		})
	})
	if m.len() > 0 {
		f.Providers = m
	}
	return err
}

// rag keeps each source as JSON in document order: its many strategy parameters are
// free-form in the reference too. Only the shape (a mapping per source) is checked.
func (d *cfgDecoder) rag(n *yamlNode, f *agentFile) error {
	m := &orderedMap[json.RawMessage]{}
	err := d.mapping(n, "rag", func(name string, v *yamlNode) (bool, error) {
		if !cfgIsNull(v) && v.Kind != yamlMap {
			return true, d.typeErr(v, "mapping")
		}
		raw, err := d.nodeJSON(v)
		if err != nil {
			return true, err
		}
		m.set(name, raw)
		return true, nil
	})
	if m.len() > 0 {
		f.RAG = m
	}
	return err
}

func (d *cfgDecoder) models(n *yamlNode, f *agentFile) error {
	m := &orderedMap[*modelConfig]{}
	err := d.mapping(n, "models", func(name string, v *yamlNode) (bool, error) {
		mc, err := d.model(v, name)
		m.set(name, mc)
		return true, err
	})
	if m.len() > 0 {
		f.Models = m
	}
	return err
}

func (d *cfgDecoder) model(n *yamlNode, name string) (*modelConfig, error) {
	mc := &modelConfig{}
	what := fmt.Sprintf("model %q", name)
	err := d.fields(n, what, cfgModelFields, func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "type", "provider": // v0's type was renamed provider in v1
			return true, d.str(v, &mc.Provider)
		case "model":
			return true, d.str(v, &mc.Model)
		case "temperature":
			return true, d.float(v, &mc.Temperature)
		case "top_p":
			return true, d.float(v, &mc.TopP)
		case "frequency_penalty":
			return true, d.float(v, &mc.FrequencyPenalty)
		case "presence_penalty":
			return true, d.float(v, &mc.PresencePenalty)
		case "max_tokens":
			if cfgIsNull(v) {
				return true, nil
			}
			t, err := d.integer(v)
			mc.MaxTokens = &t
			return true, err
		case "base_url":
			return true, d.str(v, &mc.BaseURL)
		case "parallel_tool_calls":
			return true, d.boolPtr(v, &mc.ParallelToolCalls)
		case "env":
			var env *orderedMap[string]
			if err := d.strMap(v, "env", &env); err != nil {
				return true, err
			}
			if env.len() > 0 {
				return true, d.errf(v, "model Env is not supported anymore")
			}
			return true, nil
		case "token_key":
			return true, d.str(v, &mc.TokenKey)
		case "provider_opts":
			if cfgIsNull(v) {
				return true, nil
			}
			if v.Kind != yamlMap {
				return true, d.typeErr(v, "mapping")
			}
			x, err := d.nodeValue(v)
			if err == nil && len(x.(map[string]any)) > 0 {
				mc.ProviderOpts = x.(map[string]any)
			}
			return true, err
		case "track_usage":
			return true, d.boolPtr(v, &mc.TrackUsage)
		case "thinking_budget":
			return true, d.thinkingBudget(v, mc)
		case "routing":
			return true, d.routing(v, mc, name)
		case "first_byte_timeout":
			var err error
			mc.FirstByteDur, err = d.duration(v, k)
			return true, err
		case "idle_timeout":
			var err error
			mc.IdleDur, err = d.duration(v, k)
			return true, err
		}
		return false, nil
	})
	return mc, err
}

// thinkingBudget is an int token budget (quoted digits and floats count as ints,
// as the reference tries int first), an effort string, or the long form
// {effort: low} / {tokens: 2048}, which becomes the same string or int.
func (d *cfgDecoder) thinkingBudget(n *yamlNode, mc *modelConfig) error {
	if cfgIsNull(n) {
		mc.ThinkingBudget = nil
		return nil
	}
	if n.Kind == yamlMap {
		return d.thinkingBudgetMap(n, mc)
	}
	if n.Kind != yamlScalar {
		return d.typeErr(n, "integer, string or mapping")
	}
	if n.Tag != "bool" {
		if v, err := d.integer(n); err == nil {
			mc.ThinkingBudget = v
			return nil
		}
	}
	mc.ThinkingBudget = n.Text
	return nil
}

func (d *cfgDecoder) thinkingBudgetMap(n *yamlNode, mc *modelConfig) error {
	mc.ThinkingBudget = nil
	err := d.mapping(n, "thinking_budget", func(k string, v *yamlNode) (bool, error) {
		if mc.ThinkingBudget != nil {
			return true, d.errf(v, "thinking_budget takes effort or tokens, not both")
		}
		switch k {
		case "effort":
			if v.Kind != yamlScalar || cfgIsNull(v) {
				return true, d.typeErr(v, "string")
			}
			mc.ThinkingBudget = v.Text
			return true, nil
		case "tokens":
			t, err := d.integer(v)
			mc.ThinkingBudget = t
			return true, err
		}
		return false, nil
	})
	if err == nil && mc.ThinkingBudget == nil {
		return d.errf(n, "thinking_budget needs effort or tokens")
	}
	return err
}

func (d *cfgDecoder) routing(n *yamlNode, mc *modelConfig, name string) error {
	if cfgIsNull(n) {
		return nil
	}
	if n.Kind != yamlSeq {
		return d.typeErr(n, "sequence")
	}
	for i, rn := range n.Values {
		var r routingRule
		err := d.mapping(rn, fmt.Sprintf("routing rule %d of model %q", i, name), func(k string, v *yamlNode) (bool, error) {
			switch k {
			case "model":
				return true, d.str(v, &r.Model)
			case "examples":
				return true, d.strs(v, &r.Examples)
			}
			return false, nil
		})
		if err != nil {
			return err
		}
		mc.RoutingRules = append(mc.RoutingRules, r)
	}
	return nil
}

func (d *cfgDecoder) agents(n *yamlNode, f *agentFile) error {
	return d.mapping(n, "agents", func(name string, v *yamlNode) (bool, error) {
		a, err := d.agent(v, name)
		if err != nil {
			return true, err
		}
		f.Agents = append(f.Agents, a)
		return true, nil
	})
}

func (d *cfgDecoder) agent(n *yamlNode, name string) (*agentConfig, error) {
	a := &agentConfig{Name: name}
	what := fmt.Sprintf("agent %q", name)
	var v0 cfgV0Tools
	var toolsets []*toolsetConfig
	err := d.fields(n, what, cfgAgentFields, func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "name":
			// Overwritten by the map key in the reference; accepted and ignored.
			var s string
			return true, d.str(v, &s)
		case "model":
			return true, d.str(v, &a.Model)
		case "description":
			return true, d.str(v, &a.Description)
		case "instruction":
			return true, d.str(v, &a.Instruction)
		case "toolsets":
			var err error
			toolsets, err = d.toolsets(v, name)
			return true, err
		case "sub_agents":
			return true, d.strs(v, &a.SubAgents)
		case "add_date":
			return true, d.boolean(v, &a.AddDate)
		case "num_history_items":
			return true, d.intField(v, &a.NumHistoryItems)
		case "commands":
			return true, d.commands(v, a)
		case "think", "todo", "memory":
			return true, d.v0Tool(k, v, &v0)
		case "add_environment_info":
			return true, d.boolean(v, &a.AddEnvironmentInfo)
		case "welcome_message":
			return true, d.str(v, &a.WelcomeMessage)
		case "handoffs":
			return true, d.strs(v, &a.Handoffs)
		case "rag":
			return true, d.strs(v, &a.RAG)
		case "code_mode_tools":
			return true, d.boolean(v, &a.CodeModeTools)
		case "max_iterations":
			return true, d.intField(v, &a.MaxIterations)
		case "add_prompt_files":
			return true, d.strs(v, &a.AddPromptFiles)
		case "structured_output":
			return true, d.structuredOutput(v, a)
		case "skills":
			return true, d.skills(v, a)
		case "hooks":
			return true, d.hooks(v, a)
		case "fallback":
			return true, d.fallback(v, a)
		case "add_description_parameter":
			return true, d.boolean(v, &a.AddDescriptionParameter)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	a.Toolsets = append(v0.toolsets(), toolsets...)
	return a, nil
}

// cfgV0Tools holds a v0 agent's think, todo and memory keys, which the v0→v1
// upgrade turns into toolsets prepended to the agent's own.
type cfgV0Tools struct {
	think, todo, todoShared bool
	memory                  *toolsetConfig
}

func (d *cfgDecoder) v0Tool(k string, v *yamlNode, t *cfgV0Tools) error {
	switch {
	case k == "think":
		return d.boolean(v, &t.think)
	case cfgIsNull(v):
		return nil
	case k == "todo" && v.Kind == yamlMap:
		t.todo = true
		return d.mapping(v, "todo", func(k string, v *yamlNode) (bool, error) {
			if k == "shared" {
				return true, d.boolean(v, &t.todoShared)
			}
			return false, nil
		})
	case k == "todo":
		return d.boolean(v, &t.todo)
	}
	t.memory = &toolsetConfig{Type: "memory"}
	return d.mapping(v, "memory", func(k string, v *yamlNode) (bool, error) {
		if k == "path" {
			return true, d.str(v, &t.memory.Path)
		}
		return false, nil
	})
}

// toolsets are the v0 keys as toolsets, in the upgrade's order: todo, think, then
// memory (only with a path).
func (t *cfgV0Tools) toolsets() []*toolsetConfig {
	var out []*toolsetConfig
	if t.todo {
		out = append(out, &toolsetConfig{Type: "todo", Shared: t.todoShared})
	}
	if t.think {
		out = append(out, &toolsetConfig{Type: "think"})
	}
	if t.memory != nil && t.memory.Path != "" {
		out = append(out, t.memory)
	}
	return out
}

func (d *cfgDecoder) commands(n *yamlNode, a *agentConfig) error {
	if cfgIsNull(n) {
		return nil
	}
	m := &orderedMap[commandConfig]{}
	one := func(name string, v *yamlNode) error {
		var c commandConfig
		if v.Kind == yamlMap {
			err := d.mapping(v, fmt.Sprintf("command %q", name), func(k string, v *yamlNode) (bool, error) {
				switch k {
				case "description":
					return true, d.str(v, &c.Description)
				case "instruction":
					return true, d.str(v, &c.Instruction)
				}
				return false, nil
			})
			if err != nil {
				return err
			}
		} else if err := d.str(v, &c.Instruction); err != nil {
			return err
		}
		if c.Instruction == "" && c.Description == "" {
			return d.errf(v, "command %q: command must have at least 'instruction' or 'description'", name)
		}
		if c.Instruction == "" {
			c.Instruction = c.Description
		}
		if _, dup := m.get(name); dup {
			return d.errf(v, "command %q is defined twice", name)
		}
		m.set(name, c)
		return nil
	}
	switch n.Kind {
	case yamlMap:
		if err := d.mapping(n, "commands", func(k string, v *yamlNode) (bool, error) { return true, one(k, v) }); err != nil {
			return err
		}
	case yamlSeq:
		// The list form: each item is a one-key mapping.
		for _, item := range n.Values {
			if item.Kind != yamlMap {
				return d.typeErr(item, "mapping")
			}
			if err := d.mapping(item, "commands", func(k string, v *yamlNode) (bool, error) { return true, one(k, v) }); err != nil {
				return err
			}
		}
	default:
		return d.typeErr(n, "mapping")
	}
	if m.len() > 0 {
		a.Commands = m
	}
	return nil
}

func (d *cfgDecoder) structuredOutput(n *yamlNode, a *agentConfig) error {
	if cfgIsNull(n) {
		return nil
	}
	so := &structuredOutputConfig{Schema: json.RawMessage("null")}
	err := d.mapping(n, "structured_output", func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "name":
			return true, d.str(v, &so.Name)
		case "description":
			return true, d.str(v, &so.Description)
		case "schema":
			if !cfgIsNull(v) && v.Kind != yamlMap {
				return true, d.typeErr(v, "mapping")
			}
			raw, err := d.nodeJSON(v)
			so.Schema = raw
			return true, err
		case "strict":
			return true, d.boolean(v, &so.Strict)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	a.StructuredOutput = so
	return nil
}

// skills is a bool (true = ["local"]) or, from v5, a list of sources.
func (d *cfgDecoder) skills(n *yamlNode, a *agentConfig) error {
	a.SkillSources = nil
	if cfgIsNull(n) {
		return nil
	}
	if n.Kind == yamlScalar && n.Tag == "bool" {
		if strings.EqualFold(n.Text, "true") {
			a.SkillSources = []string{"local"}
		}
	} else if n.Kind == yamlSeq && d.ver >= cfgSkillListSince {
		if err := d.strs(n, (*[]string)(&a.SkillSources)); err != nil {
			return d.errf(n, "skills must be a boolean or a list of sources")
		}
	} else if d.ver >= cfgSkillListSince {
		return d.errf(n, "skills must be a boolean or a list of sources")
	} else {
		return d.typeErr(n, "boolean")
	}
	if len(a.SkillSources) == 0 {
		a.SkillSources = nil // omitted from JSON, like the reference's omitzero
	}
	return nil
}

func (d *cfgDecoder) fallback(n *yamlNode, a *agentConfig) error {
	if cfgIsNull(n) {
		return nil
	}
	fb := &fallbackConfig{}
	err := d.mapping(n, "fallback", func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "models":
			return true, d.strs(v, &fb.Models)
		case "retries":
			if err := d.intField(v, &fb.Retries); err != nil {
				return true, err
			}
			if fb.Retries < -1 {
				return true, d.errf(v, "fallback.retries must be >= -1 (use -1 for no retries, 0 for default)")
			}
			return true, nil
		case "cooldown":
			var err error
			fb.CooldownDur, err = d.duration(v, "fallback.cooldown")
			return true, err
		}
		return false, nil
	})
	a.Fallback = fb
	return err
}

func (d *cfgDecoder) hooks(n *yamlNode, a *agentConfig) error {
	if cfgIsNull(n) {
		return nil
	}
	h := &hooksConfig{}
	err := d.fields(n, "hooks", cfgHooksFields, func(k string, v *yamlNode) (bool, error) {
		var err error
		switch k {
		case "pre_tool_use":
			h.PreToolUse, err = d.hookMatchers(v, k)
		case "post_tool_use":
			h.PostToolUse, err = d.hookMatchers(v, k)
		case "session_start":
			h.SessionStart, err = d.hookList(v, "hooks."+k)
		case "session_end":
			h.SessionEnd, err = d.hookList(v, "hooks."+k)
		case "on_user_input":
			h.OnUserInput, err = d.hookList(v, "hooks."+k)
		default:
			return false, nil
		}
		return true, err
	})
	if err != nil {
		return err
	}
	a.HookSet = h
	return nil
}

// hookMatchers decodes the matcher list of a tool event (pre_tool_use, post_tool_use).
func (d *cfgDecoder) hookMatchers(v *yamlNode, event string) ([]hookMatcher, error) {
	if cfgIsNull(v) {
		return nil, nil
	}
	if v.Kind != yamlSeq {
		return nil, d.typeErr(v, "sequence")
	}
	var out []hookMatcher
	for i, mn := range v.Values {
		var m hookMatcher
		p := fmt.Sprintf("hooks.%s[%d]", event, i)
		err := d.mapping(mn, p, func(k string, v *yamlNode) (bool, error) {
			switch k {
			case "matcher":
				return true, d.str(v, &m.Matcher)
			case "hooks":
				var err error
				m.Hooks, err = d.hookList(v, p+".hooks")
				return true, err
			}
			return false, nil
		})
		if err != nil {
			return nil, err
		}
		if len(m.Hooks) == 0 {
			return nil, d.errf(mn, "%s: at least one hook is required", p)
		}
		if m.Matcher != "" && m.Matcher != "*" {
			// The reference skips a bad matcher with a log line, so its hooks never
			// run; a guard that silently does nothing is worse than a load error.
			if _, err := regexp.Compile(m.Matcher); err != nil { // the anchors stay out of the message
				return nil, d.errf(mn, "%s: invalid matcher %q: %v", p, m.Matcher, err)
			}
			if m.re, err = regexp.Compile("^(?:" + m.Matcher + ")$"); err != nil {
				return nil, d.errf(mn, "%s: invalid matcher %q: %v", p, m.Matcher, err)
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// hookList decodes a list of hooks; path names it in messages.
func (d *cfgDecoder) hookList(v *yamlNode, path string) ([]hookDef, error) {
	if cfgIsNull(v) {
		return nil, nil
	}
	if v.Kind != yamlSeq {
		return nil, d.typeErr(v, "sequence")
	}
	var out []hookDef
	for i, hn := range v.Values {
		hd, err := d.hook(hn, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, hd)
	}
	return out, nil
}

func (d *cfgDecoder) hook(n *yamlNode, path string) (hookDef, error) {
	var hd hookDef
	err := d.mapping(n, path, func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "type":
			return true, d.str(v, &hd.Type)
		case "command":
			return true, d.str(v, &hd.Command)
		case "timeout":
			return true, d.intField(v, &hd.Timeout)
		}
		return false, nil
	})
	switch {
	case err != nil:
	case hd.Type == "":
		err = d.errf(n, "%s: type is required", path)
	case hd.Type != "command":
		err = d.errf(n, "%s: unsupported hook type '%s' (only 'command' is supported)", path, hd.Type)
	case hd.Command == "":
		err = d.errf(n, "%s: command is required for command hooks", path)
	}
	return hd, err
}

func (d *cfgDecoder) toolsets(n *yamlNode, agent string) ([]*toolsetConfig, error) {
	if cfgIsNull(n) {
		return nil, nil
	}
	if n.Kind != yamlSeq {
		return nil, d.typeErr(n, "sequence")
	}
	out := make([]*toolsetConfig, 0, len(n.Values))
	for i, tn := range n.Values {
		ts, err := d.toolset(tn, fmt.Sprintf("toolset %d of agent %q", i, agent), "")
		if err != nil {
			return nil, err
		}
		out = append(out, ts)
	}
	return out, nil
}

// toolset decodes one toolset; implicitType is "mcp" for top-level `mcps` entries.
// The validation matrix of CONFIG.md §6.1 runs here, as in the reference's decoder.
func (d *cfgDecoder) toolset(n *yamlNode, what, implicitType string) (*toolsetConfig, error) {
	ts := &toolsetConfig{Type: implicitType}
	var sandbox *yamlNode
	err := d.fields(n, what, cfgToolsetFields, func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "type":
			if err := d.str(v, &ts.Type); err != nil {
				return true, err
			}
			if implicitType != "" {
				ts.Type = implicitType // an mcps entry is always an MCP server
			}
			return true, nil
		case "command":
			return true, d.str(v, &ts.Command)
		case "remote":
			return true, d.remote(v, &ts.Remote)
		case "args":
			return true, d.strs(v, &ts.Args)
		case "env":
			return true, d.strMap(v, "env", &ts.Env)
		case "tools":
			return true, d.strs(v, &ts.Tools)
		case "env_file":
			return true, d.envFile(v)
		case "ref":
			return true, d.str(v, &ts.Ref)
		case "config":
			if cfgIsNull(v) {
				return true, nil
			}
			raw, err := d.nodeJSON(v)
			ts.Config = raw
			return true, err
		case "shared":
			return true, d.boolean(v, &ts.Shared)
		case "path":
			return true, d.str(v, &ts.Path)
		case "shell":
			return true, d.scriptShell(v, ts)
		case "post_edit":
			return true, d.postEdit(v, ts)
		case "instruction":
			return true, d.str(v, &ts.Instruction)
		case "toon":
			return true, d.str(v, &ts.Toon)
		case "api_config":
			return true, d.apiConfig(v, &ts.APIConfig)
		case "ignore_vcs":
			return true, d.boolPtr(v, &ts.IgnoreVCS)
		case "timeout":
			return true, d.intField(v, &ts.Timeout)
		case "defer":
			return true, d.deferField(v, &ts.Defer)
		case "name":
			return true, d.str(v, &ts.Name)
		case "url":
			return true, d.str(v, &ts.URL)
		case "sandbox":
			sandbox = v // checked below, then dropped by the v5→v6 upgrade
			return true, nil
		case "headers":
			return true, d.strMap(v, "headers", &ts.Headers)
		case "model":
			return true, d.str(v, &ts.Model)
		case "version":
			return true, d.str(v, &ts.Version)
		case "file_types":
			return true, d.strs(v, &ts.FileTypes)
		case "models":
			return true, d.strs(v, &ts.Models)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if err := d.sandbox(sandbox); err != nil {
		return nil, err
	}
	if msg := d.toolsetProblem(ts); msg != "" {
		return nil, d.errf(n, "%s", msg)
	}
	return ts, nil
}

// envFile is v0/v1's env_file, a string or a list of strings, which the v1→v2
// upgrade rejects when set.
func (d *cfgDecoder) envFile(v *yamlNode) error {
	var files []string
	if v.Kind == yamlScalar && !cfgIsNull(v) {
		if v.Text != "" {
			files = []string{v.Text}
		}
	} else if err := d.strs(v, &files); err != nil {
		return err
	}
	if len(files) > 0 {
		return d.errf(v, "toolset Envfiles is not supported anymore")
	}
	return nil
}

// sandbox checks a v3-v5 shell sandbox (nil when absent) that the v5→v6 upgrade
// then drops. It runs after the other keys, as the reference validates it.
func (d *cfgDecoder) sandbox(n *yamlNode) error {
	if cfgIsNull(n) {
		return nil
	}
	var paths []string
	err := d.mapping(n, "sandbox", func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "image":
			var s string
			return true, d.str(v, &s)
		case "paths":
			return true, d.strs(v, &paths)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return d.errf(n, "sandbox requires at least one path to be set")
	}
	return nil
}

func (d *cfgDecoder) remote(n *yamlNode, r *remoteConfig) error {
	return d.mapping(n, "remote", func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "url":
			return true, d.str(v, &r.URL)
		case "transport_type":
			return true, d.str(v, &r.TransportType)
		case "headers":
			return true, d.strMap(v, "headers", &r.Headers)
		case "oauth":
			r.OAuth = &remoteOAuthConfig{}
			return true, d.remoteOAuth(v, r.OAuth)
		}
		return false, nil
	})
}

func (d *cfgDecoder) remoteOAuth(n *yamlNode, o *remoteOAuthConfig) error {
	return d.mapping(n, "oauth", func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "clientId":
			return true, d.str(v, &o.ClientID)
		case "clientSecret":
			return true, d.str(v, &o.ClientSecret)
		case "callbackPort":
			return true, d.intField(v, &o.CallbackPort)
		case "scopes":
			return true, d.strs(v, &o.Scopes)
		case "callbackRedirectURL":
			if err := d.str(v, &o.CallbackRedirectURL); err != nil {
				return true, err
			}
			if err := checkRedirectURI(o.CallbackRedirectURL); err != nil {
				return true, d.errf(v, "callbackRedirectURL %q: want an absolute https URL (http only on a loopback host)", o.CallbackRedirectURL)
			}
			return true, nil
		}
		return false, nil
	})
}

// deferField is `true` (all tools) or a list of tool names.
func (d *cfgDecoder) deferField(n *yamlNode, dst *deferConfig) error {
	*dst = deferConfig{}
	switch {
	case cfgIsNull(n):
		return nil
	case n.Kind == yamlSeq:
		return d.strs(n, &dst.Tools)
	default:
		if err := d.boolean(n, &dst.All); err != nil {
			return d.errf(n, "defer must be a boolean or a list of tool names")
		}
		return nil
	}
}

func (d *cfgDecoder) postEdit(n *yamlNode, ts *toolsetConfig) error {
	if cfgIsNull(n) {
		return nil
	}
	if n.Kind != yamlSeq {
		return d.typeErr(n, "sequence")
	}
	for _, pn := range n.Values {
		var pe postEditConfig
		err := d.mapping(pn, "post_edit", func(k string, v *yamlNode) (bool, error) {
			switch k {
			case "path":
				return true, d.str(v, &pe.Path)
			case "cmd":
				return true, d.str(v, &pe.Cmd)
			}
			return false, nil
		})
		if err != nil {
			return err
		}
		ts.PostEdit = append(ts.PostEdit, pe)
	}
	return nil
}

// schemaMap decodes `args:` (name → JSON schema) in document order.
func (d *cfgDecoder) schemaMap(n *yamlNode, dst **orderedMap[json.RawMessage]) error {
	m := &orderedMap[json.RawMessage]{}
	err := d.mapping(n, "args", func(k string, v *yamlNode) (bool, error) {
		raw, err := d.nodeJSON(v)
		m.set(k, raw)
		return true, err
	})
	if m.len() > 0 {
		*dst = m
	}
	return err
}

func (d *cfgDecoder) scriptShell(n *yamlNode, ts *toolsetConfig) error {
	m := &orderedMap[*scriptToolConfig]{}
	err := d.mapping(n, "shell", func(name string, v *yamlNode) (bool, error) {
		sc := &scriptToolConfig{}
		m.set(name, sc)
		return true, d.mapping(v, fmt.Sprintf("script tool %q", name), func(k string, v *yamlNode) (bool, error) {
			switch k {
			case "cmd":
				return true, d.str(v, &sc.Cmd)
			case "description":
				return true, d.str(v, &sc.Description)
			case "args":
				return true, d.schemaMap(v, &sc.Args)
			case "required":
				return true, d.strs(v, &sc.Required)
			case "env":
				return true, d.strMap(v, "env", &sc.Env)
			case "working_dir":
				return true, d.str(v, &sc.WorkingDir)
			}
			return false, nil
		})
	})
	if m.len() > 0 {
		ts.Shell = m
	}
	return err
}

func (d *cfgDecoder) apiConfig(n *yamlNode, ac *apiToolConfig) error {
	return d.fields(n, "api_config", cfgAPIConfigFields, func(k string, v *yamlNode) (bool, error) {
		switch k {
		case "name":
			return true, d.str(v, &ac.Name)
		case "method":
			return true, d.str(v, &ac.Method)
		case "endpoint":
			return true, d.str(v, &ac.Endpoint)
		case "instruction":
			return true, d.str(v, &ac.Instruction)
		case "args":
			return true, d.schemaMap(v, &ac.Args)
		case "required":
			return true, d.strs(v, &ac.Required)
		case "headers":
			return true, d.strMap(v, "headers", &ac.Headers)
		case "output_schema":
			if cfgIsNull(v) {
				return true, nil
			}
			raw, err := d.nodeJSON(v)
			ac.OutputSchema = raw
			return true, err
		}
		return false, nil
	})
}

func (d *cfgDecoder) mcps(n *yamlNode, f *agentFile) error {
	m := &orderedMap[*toolsetConfig]{}
	err := d.mapping(n, "mcps", func(name string, v *yamlNode) (bool, error) {
		ts, err := d.toolset(v, fmt.Sprintf("MCP definition %q", name), "mcp")
		if err != nil {
			return true, err
		}
		if ts.Ref != "" && !strings.HasPrefix(ts.Ref, "docker:") {
			return true, d.errf(v, "MCP definition '%s': only docker refs are supported (e.g., 'docker:context7')", name)
		}
		m.set(name, ts)
		return true, nil
	})
	if m.len() > 0 {
		f.MCPs = m
	}
	return err
}
