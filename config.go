package main

// config.go is the agent configuration model (CONFIG.md): the typed form of an agent
// YAML file after version migration, and its JSON shape for GET /api/agents/{id}.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// agentFile is one loaded, migrated and validated agent configuration (version "7").
type agentFile struct {
	Version     string                       `json:"version"`          // the file's own version string, "7" when absent
	Agents      []*agentConfig               `json:"agents,omitempty"` // document order; omitted when empty, as the reference does
	Models      *orderedMap[*modelConfig]    `json:"models,omitempty"`
	Providers   *orderedMap[*providerConfig] `json:"providers,omitempty"`
	MCPs        *orderedMap[*toolsetConfig]  `json:"mcps,omitempty"`
	RAG         *orderedMap[json.RawMessage] `json:"rag,omitempty"`
	Metadata    metadataConfig               `json:"metadata"`
	Permissions *permissionsConfig           `json:"permissions,omitempty"`

	path string // file the config came from ("" for embedded sources)
}

// orderedMap keeps YAML document order for maps that are serialised as JSON objects.
type orderedMap[V any] struct {
	Keys   []string
	Values map[string]V
}

type metadataConfig struct {
	Author      string `json:"author,omitempty"`
	License     string `json:"license,omitempty"`
	Description string `json:"description,omitempty"`
	Readme      string `json:"readme,omitempty"`
	Version     string `json:"version,omitempty"`
}

// permissionsConfig is a set of tool-approval patterns (API.md §7.3).
type permissionsConfig struct {
	Allow []string `json:"allow,omitempty"`
	Ask   []string `json:"ask,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// agentConfig is one agent of a team. Name has no json tag on purpose: the reference
// emits it as "Name".
type agentConfig struct {
	Name                    string                     `json:"Name"`
	Model                   string                     `json:"model,omitempty"`
	Description             string                     `json:"description,omitempty"`
	WelcomeMessage          string                     `json:"welcome_message,omitempty"`
	Toolsets                []*toolsetConfig           `json:"toolsets,omitempty"`
	Instruction             string                     `json:"instruction,omitempty"`
	SubAgents               []string                   `json:"sub_agents,omitempty"`
	Handoffs                []string                   `json:"handoffs,omitempty"`
	RAG                     []string                   `json:"rag,omitempty"`
	AddDate                 bool                       `json:"add_date,omitempty"`
	AddEnvironmentInfo      bool                       `json:"add_environment_info,omitempty"`
	CodeModeTools           bool                       `json:"code_mode_tools,omitempty"`
	AddDescriptionParameter bool                       `json:"add_description_parameter,omitempty"`
	MaxIterations           int                        `json:"max_iterations,omitempty"`
	NumHistoryItems         int                        `json:"num_history_items,omitempty"`
	AddPromptFiles          []string                   `json:"add_prompt_files,omitempty"`
	Commands                *orderedMap[commandConfig] `json:"commands,omitempty"`
	StructuredOutput        json.RawMessage            `json:"structured_output,omitempty"`
	Skills                  json.RawMessage            `json:"skills,omitempty"` // true/false or a list of sources
	Hooks                   json.RawMessage            `json:"hooks,omitempty"`
	Fallback                *fallbackConfig            `json:"fallback,omitempty"`

	// SkillSources is Skills decoded: nil = disabled, ["local"] for `skills: true`.
	SkillSources []string `json:"-"`
	// HookSet is Hooks decoded; nil when the agent has none.
	HookSet *hooksConfig `json:"-"`
}

// hooksConfig is an agent's `hooks:` (CONFIG.md §4).
type hooksConfig struct {
	PreToolUse   []hookMatcher `json:"pre_tool_use,omitempty"`
	PostToolUse  []hookMatcher `json:"post_tool_use,omitempty"`
	SessionStart []hookDef     `json:"session_start,omitempty"`
	SessionEnd   []hookDef     `json:"session_end,omitempty"`
	OnUserInput  []hookDef     `json:"on_user_input,omitempty"`
}

// hookMatcher runs Hooks for tools whose name matches the Matcher regexp ("*" = all).
type hookMatcher struct {
	Matcher string    `json:"matcher,omitempty"`
	Hooks   []hookDef `json:"hooks"`

	re *regexp.Regexp // Matcher anchored and compiled at load; nil matches every tool
}

// matches reports whether the hooks apply to the tool name, as the reference's
// matcher: a case-sensitive regexp over the whole name; "" and "*" match all.
func (m hookMatcher) matches(tool string) bool { return m.re == nil || m.re.MatchString(tool) }

type hookDef struct {
	Type    string `json:"type"`
	Command string `json:"command,omitempty"`
	Timeout int    `json:"timeout,omitempty"` // seconds; 0 = default 60
}

// routingRule sends user messages that resemble Examples to Model.
type routingRule struct {
	Model    string   `json:"model"`
	Examples []string `json:"examples"`
}

type commandConfig struct {
	Description string `json:"description,omitempty"`
	Instruction string `json:"instruction,omitempty"`
}

type fallbackConfig struct {
	Models  []string `json:"models,omitempty"`
	Retries int      `json:"retries,omitempty"` // 0 = default 2, -1 = none
	// Cooldown is time.Duration.String() of the configured value ("30s", "1m0s"), or ""
	// for the default 1m. Always serialised, as the reference does.
	Cooldown string `json:"cooldown"`
	// CooldownDur is Cooldown parsed; 0 = default.
	CooldownDur time.Duration `json:"-"`
}

// modelConfig is an entry of `models:` (or one synthesised for an inline provider/model).
type modelConfig struct {
	Provider          string          `json:"provider,omitempty"`
	Model             string          `json:"model,omitempty"`
	Temperature       *float64        `json:"temperature,omitempty"`
	MaxTokens         *int64          `json:"max_tokens,omitempty"`
	TopP              *float64        `json:"top_p,omitempty"`
	FrequencyPenalty  *float64        `json:"frequency_penalty,omitempty"`
	PresencePenalty   *float64        `json:"presence_penalty,omitempty"`
	BaseURL           string          `json:"base_url,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	TokenKey          string          `json:"token_key,omitempty"`
	ProviderOpts      map[string]any  `json:"provider_opts,omitempty"`
	TrackUsage        *bool           `json:"track_usage,omitempty"`
	ThinkingBudget    any             `json:"thinking_budget,omitempty"` // int64 or string
	Routing           json.RawMessage `json:"routing,omitempty"`
	// FirstByteTimeout and IdleTimeout bound a stalled provider (our extension; "" =
	// the API family's default): time.Duration.String() of the configured value.
	FirstByteTimeout string `json:"first_byte_timeout,omitempty"`
	IdleTimeout      string `json:"idle_timeout,omitempty"`

	// FirstByteDur and IdleDur are the timeouts parsed; 0 = default.
	FirstByteDur, IdleDur time.Duration `json:"-"`
	// RoutingRules is Routing decoded.
	RoutingRules []routingRule `json:"-"`
}

// providerConfig is a custom OpenAI-compatible endpoint from `providers:`.
type providerConfig struct {
	APIType  string `json:"api_type,omitempty"`
	BaseURL  string `json:"base_url,omitempty"`
	TokenKey string `json:"token_key,omitempty"`
}

// toolsetConfig is one entry of an agent's `toolsets:` (and of top-level `mcps:`).
// Which fields are allowed depends on Type (CONFIG.md §6.1).
type toolsetConfig struct {
	Type        string      `json:"type,omitempty"`
	Tools       []string    `json:"tools,omitempty"`
	Instruction string      `json:"instruction,omitempty"`
	Toon        string      `json:"toon,omitempty"`
	Defer       deferConfig `json:"defer"`
	Model       string      `json:"model,omitempty"`
	Name        string      `json:"name,omitempty"`

	// mcp / lsp
	Command   string              `json:"command,omitempty"`
	Args      []string            `json:"args,omitempty"`
	Env       *orderedMap[string] `json:"env,omitempty"`
	Ref       string              `json:"ref,omitempty"`
	Remote    remoteConfig        `json:"remote"`
	Config    json.RawMessage     `json:"config,omitempty"`
	Version   string              `json:"version,omitempty"`
	FileTypes []string            `json:"file_types,omitempty"`

	// memory, tasks
	Path string `json:"path,omitempty"`
	// todo
	Shared bool `json:"shared,omitempty"`
	// filesystem
	IgnoreVCS *bool            `json:"ignore_vcs,omitempty"`
	PostEdit  []postEditConfig `json:"post_edit,omitempty"`
	// script
	Shell *orderedMap[*scriptToolConfig] `json:"shell,omitempty"`
	// api
	APIConfig apiToolConfig `json:"api_config"`
	// fetch, shell: seconds
	Timeout int `json:"timeout,omitempty"`
	// a2a, openapi
	URL     string              `json:"url,omitempty"`
	Headers *orderedMap[string] `json:"headers,omitempty"`
	// model_picker
	Models []string `json:"models,omitempty"`
}

// deferConfig is `defer: true` (All) or a list of tool names.
type deferConfig struct {
	All   bool
	Tools []string
}

type remoteConfig struct {
	URL           string              `json:"url"`
	TransportType string              `json:"transport_type,omitempty"` // sse | streamable | streamable-http
	Headers       *orderedMap[string] `json:"headers,omitempty"`
}

type postEditConfig struct {
	Path string `json:"path"`
	Cmd  string `json:"cmd"`
}

// scriptToolConfig is one command of a `script` toolset's `shell:` map.
type scriptToolConfig struct {
	Cmd         string                       `json:"cmd"`
	Description string                       `json:"description,omitempty"`
	Args        *orderedMap[json.RawMessage] `json:"args,omitempty"` // name → JSON schema
	Required    []string                     `json:"required,omitempty"`
	Env         *orderedMap[string]          `json:"env,omitempty"`
	WorkingDir  string                       `json:"working_dir,omitempty"`
}

// apiToolConfig is the `api_config:` of an `api` toolset.
type apiToolConfig struct {
	Name         string                       `json:"name,omitempty"`
	Method       string                       `json:"method,omitempty"`
	Endpoint     string                       `json:"endpoint,omitempty"`
	Instruction  string                       `json:"instruction,omitempty"`
	Args         *orderedMap[json.RawMessage] `json:"args,omitempty"`
	Required     []string                     `json:"required,omitempty"`
	Headers      *orderedMap[string]          `json:"headers,omitempty"`
	OutputSchema json.RawMessage              `json:"output_schema,omitempty"`
}

// deferConfig always serialises as {}: the reference's fields are json:"-", so GET
// /api/agents/{id} shows `"defer": {}` whatever was configured (CONFIG.md §9).
func (deferConfig) MarshalJSON() ([]byte, error) { return []byte("{}"), nil }

// MarshalJSON writes the map as a JSON object in document order.
func (m orderedMap[V]) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range m.Keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, err := json.Marshal(k)
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(m.Values[k])
		if err != nil {
			return nil, err
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// get returns the value for k; a nil map has no keys.
func (m *orderedMap[V]) get(k string) (V, bool) {
	if m == nil {
		var zero V
		return zero, false
	}
	v, ok := m.Values[k]
	return v, ok
}

// set adds or replaces k, keeping the position of an existing key.
func (m *orderedMap[V]) set(k string, v V) {
	if m.Values == nil {
		m.Values = map[string]V{}
	}
	if _, ok := m.Values[k]; !ok {
		m.Keys = append(m.Keys, k)
	}
	m.Values[k] = v
}

func (m *orderedMap[V]) len() int {
	if m == nil {
		return 0
	}
	return len(m.Keys)
}

// agent returns the agent called name, or nil.
func (f *agentFile) agent(name string) *agentConfig {
	for _, a := range f.Agents {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// defaultAgent is `root` when it exists, else the first agent (team.DefaultAgent).
func (f *agentFile) defaultAgent() *agentConfig {
	if a := f.agent("root"); a != nil {
		return a
	}
	if len(f.Agents) > 0 {
		return f.Agents[0]
	}
	return nil
}

// ---- Loading ----

// cfgLatestVersion is what a file without `version:` is read as.
const cfgLatestVersion = 7

// loadAgentFile parses, strictly decodes, migrates to v7 and validates one agent
// file (CONFIG.md §1). Decoding errors carry path:line:col; semantic errors found
// after decoding are joined with errors.Join and carry no position, as in §11.
func loadAgentFile(path string, data []byte) (*agentFile, error) {
	root, err := parseYAML(path, data)
	if err != nil {
		return nil, err
	}
	return cfgLoadNode(path, root)
}

// cfgLoadNode is loadAgentFile after YAML parsing; root is nil for an empty document.
func cfgLoadNode(path string, root *yamlNode) (*agentFile, error) {
	f := &agentFile{Version: strconv.Itoa(cfgLatestVersion), path: path}
	if root == nil {
		return f, nil // an empty file loads; building a team from it fails later
	}
	d := &cfgDecoder{file: path, ver: cfgLatestVersion}
	if root.Kind != yamlMap {
		if root.Kind == yamlScalar && root.Tag == "null" {
			return f, nil
		}
		return nil, d.typeErr(root, "mapping")
	}
	// Version sniff: only `version` is read here, any scalar is taken as text.
	for i, k := range root.Keys {
		if k.Text != "version" {
			continue
		}
		var v string
		if err := d.str(root.Values[i], &v); err != nil {
			return nil, err
		}
		if v == "" {
			break
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > cfgLatestVersion || strconv.Itoa(n) != v {
			return nil, fmt.Errorf("unsupported config version: %s (valid versions: 0, 1, 2, 3, 4, 5, 6, 7)", v)
		}
		f.Version, d.ver = v, n
	}
	if err := d.document(root, f); err != nil {
		return nil, err
	}
	if err := cfgValidate(f); err != nil {
		return nil, err
	}
	return f, nil
}

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

// ---- Decoding, one function per section; the version gates follow CONFIG.md §3 ----

func (d *cfgDecoder) document(root *yamlNode, f *agentFile) error {
	return d.mapping(root, "", func(k string, v *yamlNode) (bool, error) {
		switch {
		case k == "version":
			return true, nil // already read
		case k == "agents":
			return true, d.agents(v, f)
		case k == "models":
			return true, d.models(v, f)
		case k == "env" && d.ver <= 1:
			// v0/v1 top-level env; the v1→v2 upgrade rejects it when set.
			var env *orderedMap[string]
			if err := d.strMap(v, "env", &env); err != nil {
				return true, err
			}
			if env.len() > 0 {
				return true, d.errf(v, "top-level Env is not supported anymore")
			}
			return true, nil
		case k == "metadata" && d.ver >= 1:
			return true, d.metadata(v, &f.Metadata)
		case k == "rag" && d.ver >= 2:
			return true, d.rag(v, f)
		case k == "providers" && d.ver >= 3:
			return true, d.providers(v, f)
		case k == "permissions" && d.ver >= 3:
			if cfgIsNull(v) {
				return true, nil
			}
			f.Permissions = &permissionsConfig{}
			return true, d.permissions(v, f.Permissions)
		case k == "workflow" && d.ver <= 2:
			// Early versions had a workflow list the upgrade drops; check its shape only.
			if !cfgIsNull(v) && v.Kind != yamlSeq {
				return true, d.typeErr(v, "sequence")
			}
			return true, nil
		case k == "mcps" && d.ver >= 6:
			return true, d.mcps(v, f)
		}
		return false, nil
	})
}

func (d *cfgDecoder) metadata(n *yamlNode, m *metadataConfig) error {
	return d.mapping(n, "metadata", func(k string, v *yamlNode) (bool, error) {
		switch {
		case k == "author":
			return true, d.str(v, &m.Author)
		case k == "license":
			return true, d.str(v, &m.License)
		case k == "readme":
			return true, d.str(v, &m.Readme)
		case k == "description":
			return true, d.str(v, &m.Description)
		case k == "version" && d.ver >= 3:
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

// patterns decodes a list of permission patterns and rejects a malformed one at its
// position: it could never match, so a bad deny would silently fail open.
func (d *cfgDecoder) patterns(n *yamlNode, dst *[]string) error {
	if err := d.strs(n, dst); err != nil {
		return err
	}
	for i, p := range *dst {
		if _, err := parsePattern(p); err != nil {
			return d.errf(n.Values[i], "%v", err)
		}
	}
	return nil
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
	err := d.mapping(n, what, func(k string, v *yamlNode) (bool, error) {
		switch {
		case k == "type" && d.ver == 0: // renamed provider in v1
			return true, d.str(v, &mc.Provider)
		case k == "provider" && d.ver >= 1:
			return true, d.str(v, &mc.Provider)
		case k == "model":
			return true, d.str(v, &mc.Model)
		case k == "temperature":
			return true, d.float(v, &mc.Temperature)
		case k == "top_p":
			return true, d.float(v, &mc.TopP)
		case k == "frequency_penalty":
			return true, d.float(v, &mc.FrequencyPenalty)
		case k == "presence_penalty":
			return true, d.float(v, &mc.PresencePenalty)
		case k == "max_tokens":
			if cfgIsNull(v) {
				return true, nil
			}
			t, err := d.integer(v)
			mc.MaxTokens = &t
			return true, err
		case k == "base_url":
			return true, d.str(v, &mc.BaseURL)
		case k == "parallel_tool_calls":
			return true, d.boolPtr(v, &mc.ParallelToolCalls)
		case k == "env" && d.ver <= 1:
			var env *orderedMap[string]
			if err := d.strMap(v, "env", &env); err != nil {
				return true, err
			}
			if env.len() > 0 {
				return true, d.errf(v, "model Env is not supported anymore")
			}
			return true, nil
		case k == "token_key" && d.ver >= 1:
			return true, d.str(v, &mc.TokenKey)
		case k == "provider_opts" && d.ver >= 1:
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
		case k == "track_usage" && d.ver >= 2:
			return true, d.boolPtr(v, &mc.TrackUsage)
		case k == "thinking_budget" && d.ver >= 2:
			return true, d.thinkingBudget(v, mc)
		case k == "routing" && d.ver >= 3:
			return true, d.routing(v, mc, name)
		case k == "first_byte_timeout", k == "idle_timeout":
			dur, err := d.duration(v, k)
			if k == "first_byte_timeout" {
				mc.FirstByteDur, mc.FirstByteTimeout = dur, cfgDurationString(dur)
			} else {
				mc.IdleDur, mc.IdleTimeout = dur, cfgDurationString(dur)
			}
			return true, err
		}
		return false, nil
	})
	return mc, err
}

// cfgDurationString is d as configuration JSON shows it: "" for 0 (the default).
func cfgDurationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
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
	if len(mc.RoutingRules) > 0 {
		mc.Routing, _ = json.Marshal(mc.RoutingRules)
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
	// v0 agent-level think/todo/memory become toolsets prepended to the agent's own.
	var think, todo bool
	var todoShared bool
	var memory *toolsetConfig
	var toolsets []*toolsetConfig
	err := d.mapping(n, what, func(k string, v *yamlNode) (bool, error) {
		switch {
		case k == "name":
			// Overwritten by the map key in the reference; accepted and ignored.
			var s string
			return true, d.str(v, &s)
		case k == "model":
			return true, d.str(v, &a.Model)
		case k == "description":
			return true, d.str(v, &a.Description)
		case k == "instruction":
			return true, d.str(v, &a.Instruction)
		case k == "toolsets":
			var err error
			toolsets, err = d.toolsets(v, name)
			return true, err
		case k == "sub_agents":
			return true, d.strs(v, &a.SubAgents)
		case k == "add_date":
			return true, d.boolean(v, &a.AddDate)
		case k == "num_history_items":
			return true, d.intField(v, &a.NumHistoryItems)
		case k == "commands":
			return true, d.commands(v, a)
		case k == "think" && d.ver == 0:
			return true, d.boolean(v, &think)
		case k == "todo" && d.ver == 0:
			if cfgIsNull(v) {
				return true, nil
			}
			if v.Kind == yamlMap {
				todo = true
				return true, d.mapping(v, "todo", func(k string, v *yamlNode) (bool, error) {
					if k == "shared" {
						return true, d.boolean(v, &todoShared)
					}
					return false, nil
				})
			}
			return true, d.boolean(v, &todo)
		case k == "memory" && d.ver == 0:
			if cfgIsNull(v) {
				return true, nil
			}
			ts := &toolsetConfig{Type: "memory"}
			memory = ts
			return true, d.mapping(v, "memory", func(k string, v *yamlNode) (bool, error) {
				if k == "path" {
					return true, d.str(v, &ts.Path)
				}
				return false, nil
			})
		case k == "add_environment_info" && d.ver >= 1:
			return true, d.boolean(v, &a.AddEnvironmentInfo)
		case k == "welcome_message" && d.ver >= 2:
			return true, d.str(v, &a.WelcomeMessage)
		case k == "handoffs" && d.ver >= 2:
			return true, d.strs(v, &a.Handoffs)
		case k == "rag" && d.ver >= 2:
			return true, d.strs(v, &a.RAG)
		case k == "code_mode_tools" && d.ver >= 2:
			return true, d.boolean(v, &a.CodeModeTools)
		case k == "max_iterations" && d.ver >= 2:
			return true, d.intField(v, &a.MaxIterations)
		case k == "add_prompt_files" && d.ver >= 2:
			return true, d.strs(v, &a.AddPromptFiles)
		case k == "structured_output" && d.ver >= 2:
			return true, d.structuredOutput(v, a)
		case k == "skills" && d.ver >= 3:
			return true, d.skills(v, a)
		case k == "hooks" && d.ver >= 3:
			return true, d.hooks(v, a)
		case k == "fallback" && d.ver >= 4:
			return true, d.fallback(v, a)
		case k == "add_description_parameter" && d.ver >= 4:
			return true, d.boolean(v, &a.AddDescriptionParameter)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	// The v0→v1 upgrade's order: todo, think, then memory (only with a path).
	var pre []*toolsetConfig
	if todo {
		pre = append(pre, &toolsetConfig{Type: "todo", Shared: todoShared})
	}
	if think {
		pre = append(pre, &toolsetConfig{Type: "think"})
	}
	if memory != nil && memory.Path != "" {
		pre = append(pre, memory)
	}
	a.Toolsets = append(pre, toolsets...)
	return a, nil
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
	var so struct {
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Schema      json.RawMessage `json:"schema"`
		Strict      bool            `json:"strict,omitempty"`
	}
	so.Schema = json.RawMessage("null")
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
	a.StructuredOutput, err = json.Marshal(so)
	return err
}

// skills is a bool (true = ["local"]) or, from v5, a list of sources.
func (d *cfgDecoder) skills(n *yamlNode, a *agentConfig) error {
	a.Skills, a.SkillSources = nil, nil
	if cfgIsNull(n) {
		return nil
	}
	if n.Kind == yamlScalar && n.Tag == "bool" {
		if strings.EqualFold(n.Text, "true") {
			a.SkillSources = []string{"local"}
		}
	} else if n.Kind == yamlSeq && d.ver >= 5 {
		if err := d.strs(n, &a.SkillSources); err != nil {
			return d.errf(n, "skills must be a boolean or a list of sources")
		}
	} else if d.ver >= 5 {
		return d.errf(n, "skills must be a boolean or a list of sources")
	} else {
		return d.typeErr(n, "boolean")
	}
	switch {
	case len(a.SkillSources) == 0:
		a.SkillSources = nil // omitted from JSON, like the reference's omitzero
	case len(a.SkillSources) == 1 && a.SkillSources[0] == "local":
		a.Skills = json.RawMessage("true")
	default:
		a.Skills, _ = json.Marshal(a.SkillSources)
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
			dur, err := d.duration(v, "fallback.cooldown")
			fb.CooldownDur, fb.Cooldown = dur, cfgDurationString(dur)
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
	hookList := func(v *yamlNode, path string) ([]hookDef, error) {
		if cfgIsNull(v) {
			return nil, nil
		}
		if v.Kind != yamlSeq {
			return nil, d.typeErr(v, "sequence")
		}
		var out []hookDef
		for i, hn := range v.Values {
			var hd hookDef
			p := fmt.Sprintf("%s[%d]", path, i)
			err := d.mapping(hn, p, func(k string, v *yamlNode) (bool, error) {
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
			if err != nil {
				return nil, err
			}
			switch {
			case hd.Type == "":
				return nil, d.errf(hn, "%s: type is required", p)
			case hd.Type != "command":
				return nil, d.errf(hn, "%s: unsupported hook type '%s' (only 'command' is supported)", p, hd.Type)
			case hd.Command == "":
				return nil, d.errf(hn, "%s: command is required for command hooks", p)
			}
			out = append(out, hd)
		}
		return out, nil
	}
	matchers := func(v *yamlNode, event string) ([]hookMatcher, error) {
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
					m.Hooks, err = hookList(v, p+".hooks")
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
	err := d.mapping(n, "hooks", func(k string, v *yamlNode) (bool, error) {
		var err error
		switch {
		case k == "pre_tool_use":
			h.PreToolUse, err = matchers(v, k)
		case k == "post_tool_use":
			h.PostToolUse, err = matchers(v, k)
		case k == "session_start":
			h.SessionStart, err = hookList(v, "hooks."+k)
		case k == "session_end":
			h.SessionEnd, err = hookList(v, "hooks."+k)
		case k == "on_user_input" && d.ver >= 6:
			h.OnUserInput, err = hookList(v, "hooks."+k)
		default:
			return false, nil
		}
		return true, err
	})
	if err != nil {
		return err
	}
	a.HookSet = h
	a.Hooks, err = json.Marshal(h)
	return err
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
	err := d.mapping(n, what, func(k string, v *yamlNode) (bool, error) {
		switch {
		case k == "type":
			if err := d.str(v, &ts.Type); err != nil {
				return true, err
			}
			if implicitType != "" {
				ts.Type = implicitType // an mcps entry is always an MCP server
			}
			return true, nil
		case k == "command":
			return true, d.str(v, &ts.Command)
		case k == "remote":
			return true, d.remote(v, &ts.Remote)
		case k == "args":
			return true, d.strs(v, &ts.Args)
		case k == "env":
			return true, d.strMap(v, "env", &ts.Env)
		case k == "tools":
			return true, d.strs(v, &ts.Tools)
		case k == "env_file" && d.ver <= 1:
			// A string or a list of strings.
			var files []string
			if v.Kind == yamlScalar && !cfgIsNull(v) {
				if v.Text != "" {
					files = []string{v.Text}
				}
			} else if err := d.strs(v, &files); err != nil {
				return true, err
			}
			if len(files) > 0 {
				return true, d.errf(v, "toolset Envfiles is not supported anymore")
			}
			return true, nil
		case k == "ref" && d.ver >= 1:
			return true, d.str(v, &ts.Ref)
		case k == "config" && d.ver >= 1:
			if cfgIsNull(v) {
				return true, nil
			}
			raw, err := d.nodeJSON(v)
			ts.Config = raw
			return true, err
		case k == "shared" && d.ver >= 1:
			return true, d.boolean(v, &ts.Shared)
		case k == "path" && d.ver >= 1:
			return true, d.str(v, &ts.Path)
		case k == "shell" && d.ver >= 1:
			return true, d.scriptShell(v, ts)
		case k == "post_edit" && d.ver >= 1:
			return true, d.postEdit(v, ts)
		case k == "instruction" && d.ver >= 2:
			return true, d.str(v, &ts.Instruction)
		case k == "toon" && d.ver >= 2:
			return true, d.str(v, &ts.Toon)
		case k == "api_config" && d.ver >= 2:
			return true, d.apiConfig(v, &ts.APIConfig)
		case k == "ignore_vcs" && d.ver >= 2:
			return true, d.boolPtr(v, &ts.IgnoreVCS)
		case k == "timeout" && d.ver >= 2:
			return true, d.intField(v, &ts.Timeout)
		case k == "defer" && d.ver >= 3:
			return true, d.deferField(v, &ts.Defer)
		case k == "name" && d.ver >= 3:
			return true, d.str(v, &ts.Name)
		case k == "url" && d.ver >= 3:
			return true, d.str(v, &ts.URL)
		case k == "sandbox" && d.ver >= 3 && d.ver <= 5:
			sandbox = v // checked below, then dropped by the v5→v6 upgrade
			return true, nil
		case k == "headers" && d.ver >= 5:
			return true, d.strMap(v, "headers", &ts.Headers)
		case k == "model" && d.ver >= 6:
			return true, d.str(v, &ts.Model)
		case k == "version" && d.ver >= 6:
			return true, d.str(v, &ts.Version)
		case k == "file_types" && d.ver >= 6:
			return true, d.strs(v, &ts.FileTypes)
		case k == "models" && d.ver >= 6:
			return true, d.strs(v, &ts.Models)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if sandbox != nil && !cfgIsNull(sandbox) {
		var paths []string
		err := d.mapping(sandbox, "sandbox", func(k string, v *yamlNode) (bool, error) {
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
			return nil, err
		}
		if len(paths) == 0 {
			return nil, d.errf(sandbox, "sandbox requires at least one path to be set")
		}
	}
	if msg := d.toolsetProblem(ts); msg != "" {
		return nil, d.errf(n, "%s", msg)
	}
	return ts, nil
}

// toolsetProblem is the validation matrix of CONFIG.md §6.1 with the reference's
// messages; versions up to 5 keep their stricter memory and ref rules.
func (d *cfgDecoder) toolsetProblem(t *toolsetConfig) string {
	is := func(types ...string) bool { return slices.Contains(types, t.Type) }
	switch {
	case t.Shell.len() > 0 && !is("script"):
		return "shell can only be used with type 'script'"
	case t.Path != "" && !is("memory", "tasks"):
		return "path can only be used with type 'memory' or 'tasks'"
	case len(t.PostEdit) > 0 && !is("filesystem"):
		return "post_edit can only be used with type 'filesystem'"
	case t.IgnoreVCS != nil && !is("filesystem"):
		return "ignore_vcs can only be used with type 'filesystem'"
	case t.Env.len() > 0 && !is("shell", "script", "mcp", "lsp"):
		return "env can only be used with type 'shell', 'script', 'mcp' or 'lsp'"
	case len(t.FileTypes) > 0 && !is("lsp"):
		return "file_types can only be used with type 'lsp'"
	case len(t.Models) > 0 && !is("model_picker"):
		return "models can only be used with type 'model_picker'"
	case t.Shared && !is("todo"):
		return "shared can only be used with type 'todo'"
	case t.Version != "" && !is("mcp", "lsp"):
		return "version can only be used with type 'mcp' or 'lsp'"
	case t.Command != "" && !is("mcp", "lsp"):
		return "command can only be used with type 'mcp' or 'lsp'"
	case len(t.Args) > 0 && !is("mcp", "lsp"):
		return "args can only be used with type 'mcp' or 'lsp'"
	case t.Ref != "" && !is("mcp"):
		return "ref can only be used with type 'mcp'"
	case (t.Remote.URL != "" || t.Remote.TransportType != "") && !is("mcp"):
		return "remote can only be used with type 'mcp'"
	case t.Remote.Headers.len() > 0 && !is("mcp", "a2a"):
		return "remote headers can only be used with type 'mcp' or 'a2a'"
	case t.Headers.len() > 0 && !is("openapi", "a2a"):
		return "headers can only be used with type 'openapi' or 'a2a'"
	case t.Config != nil && !is("mcp"):
		return "config can only be used with type 'mcp'"
	case t.URL != "" && !is("a2a", "openapi"):
		return "url can only be used with type 'a2a' or 'openapi'"
	case t.Name != "" && !is("mcp", "a2a"):
		return "name can only be used with type 'mcp' or 'a2a'"
	}
	switch t.Type {
	case "memory":
		if t.Path == "" && d.ver <= 5 {
			return "memory toolset requires a path to be set"
		}
	case "mcp":
		n := 0
		for _, set := range []bool{t.Command != "", t.Remote.URL != "", t.Ref != ""} {
			if set {
				n++
			}
		}
		if d.ver == 0 {
			if n == 0 {
				return "either command or remote must be set"
			} else if n > 1 {
				return "either command or remote must be set, but only one of those"
			}
		}
		if n == 0 {
			return "either command, remote or ref must be set"
		} else if n > 1 {
			return "either command, remote or ref must be set, but only one of those"
		}
		if t.Ref != "" && d.ver <= 5 && !strings.Contains(t.Ref, "docker:") {
			return "only docker refs are supported for MCP tools, e.g., 'docker:context7'"
		}
	case "a2a":
		if t.URL == "" {
			return "a2a toolset requires a url to be set"
		}
	case "lsp":
		if t.Command == "" {
			return "lsp toolset requires a command to be set"
		}
	case "openapi":
		if t.URL == "" {
			return "openapi toolset requires a url to be set"
		}
	case "model_picker":
		if len(t.Models) == 0 {
			return "model_picker toolset requires at least one model in the 'models' list"
		}
	}
	return ""
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
	return d.mapping(n, "api_config", func(k string, v *yamlNode) (bool, error) {
		switch {
		case k == "name":
			return true, d.str(v, &ac.Name)
		case k == "method":
			return true, d.str(v, &ac.Method)
		case k == "endpoint":
			return true, d.str(v, &ac.Endpoint)
		case k == "instruction":
			return true, d.str(v, &ac.Instruction)
		case k == "args":
			return true, d.schemaMap(v, &ac.Args)
		case k == "required":
			return true, d.strs(v, &ac.Required)
		case k == "headers":
			return true, d.strMap(v, "headers", &ac.Headers)
		case k == "output_schema" && d.ver >= 3:
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

// ---- Post-processing and validation (CONFIG.md §1 step 5) ----

// cfgSplitInline splits an inline `provider/model` reference at the first '/'.
func cfgSplitInline(ref string) (provider, model string, ok bool) {
	provider, model, found := strings.Cut(ref, "/")
	return provider, model, found && provider != "" && model != ""
}

// cfgAlloyParts lists the entries of a comma-separated model list, trimmed,
// skipping empty ones.
func cfgAlloyParts(ref string) []string {
	var out []string
	for p := range strings.SplitSeq(ref, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// cfgExpandAlloy trims a model reference and replaces references to alloy models
// (no provider, comma-separated model) by their members, recursively; empty
// entries are dropped. depth stops alloys that name each other.
func cfgExpandAlloy(f *agentFile, ref string, depth int) string {
	ref = strings.TrimSpace(ref)
	if ref == "" || depth > 8 {
		return ref
	}
	if !strings.Contains(ref, ",") {
		mc, ok := f.Models.get(ref)
		if !ok || mc.Provider != "" || !strings.Contains(mc.Model, ",") {
			return ref
		}
		return cfgExpandAlloy(f, mc.Model, depth+1)
	}
	var out []string
	for _, p := range cfgAlloyParts(ref) {
		if e := cfgExpandAlloy(f, p, depth+1); e != "" {
			out = append(out, e)
		}
	}
	return strings.Join(out, ",")
}

// cfgIsExternalRef reports whether a sub_agents/handoffs entry names an agent
// outside this file (an OCI reference or a URL) rather than a local agent.
func cfgIsExternalRef(ref string) bool {
	return strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://") || strings.Contains(ref, "/")
}

// cfgValidate applies the reference's post-load rules and collects every problem.
func cfgValidate(f *agentFile) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	for _, name := range f.Providers.keys() {
		p := f.Providers.Values[name]
		switch {
		case strings.TrimSpace(name) == "":
			fail("provider '%s': name cannot be empty", name)
		case strings.TrimSpace(name) != name:
			fail("provider '%s': name cannot have leading or trailing whitespace", name)
		case strings.Contains(name, "/"):
			fail("provider '%s': name cannot contain '/'", name)
		case p.APIType != "" && p.APIType != "openai_chatcompletions" && p.APIType != "openai_responses":
			fail("provider '%s': invalid api_type '%s' (must be one of: openai_chatcompletions, openai_responses)", name, p.APIType)
		case p.BaseURL == "":
			fail("provider '%s': base_url is required", name)
		default:
			if _, err := url.Parse(p.BaseURL); err != nil {
				// err itself quotes the URL, password included; its cause does not.
				fail("provider '%s': invalid base_url '%s': %v", name, redactURL(p.BaseURL), errors.Unwrap(err))
			}
		}
	}

	if f.Models == nil {
		f.Models = &orderedMap[*modelConfig]{}
	}
	// Named models default to parallel tool calls; synthesised inline ones do not.
	named := slices.Clone(f.Models.Keys)
	for _, name := range named {
		if mc := f.Models.Values[name]; mc.ParallelToolCalls == nil {
			t := true
			mc.ParallelToolCalls = &t
		}
	}
	// ensure adds an inline provider/model reference to models, or reports it.
	ensure := func(ref, who string) {
		ref = strings.TrimSpace(ref)
		if ref == "" || ref == "auto" {
			return
		}
		if _, ok := f.Models.get(ref); ok {
			return
		}
		if p, m, ok := cfgSplitInline(ref); ok {
			f.Models.set(ref, &modelConfig{Provider: p, Model: m})
			return
		}
		fail("%s references non-existent model '%s'", who, ref)
	}
	// Agents first: their model is rewritten with alloys expanded to member lists,
	// as the reference does, then routing rules, then RAG strategies.
	for _, a := range f.Agents {
		a.Model = cfgExpandAlloy(f, a.Model, 0)
		for p := range strings.SplitSeq(a.Model, ",") {
			ensure(p, fmt.Sprintf("agent '%s'", a.Name))
		}
	}
	for _, name := range named {
		for i, r := range f.Models.Values[name].RoutingRules {
			ensure(r.Model, fmt.Sprintf("routing rule %d in model '%s'", i, name))
		}
	}
	for _, name := range f.RAG.keys() {
		var src struct {
			Strategies []map[string]any `json:"strategies"`
		}
		if json.Unmarshal(f.RAG.Values[name], &src) != nil {
			continue // an unusual shape is the RAG builder's business
		}
		for _, st := range src.Strategies {
			typ, _ := st["type"].(string)
			raw, ok := st["model"]
			if !ok {
				continue
			}
			if ref, ok := raw.(string); ok {
				ensure(ref, fmt.Sprintf("RAG strategy '%s' in RAG '%s'", typ, name))
			} else {
				fail("RAG strategy '%s' in RAG '%s' has non-string model value", typ, name)
			}
		}
	}
	if f.Models.len() == 0 {
		f.Models = nil
	}

	names := map[string]bool{}
	for _, a := range f.Agents {
		names[a.Name] = true
	}
	for _, a := range f.Agents {
		for _, ts := range a.Toolsets {
			if ts.Type != "mcp" || ts.Ref == "" || strings.HasPrefix(ts.Ref, "docker:") {
				continue
			}
			def, ok := f.MCPs.get(ts.Ref)
			if !ok {
				fail("agent '%s' references non-existent MCP definition '%s'", a.Name, ts.Ref)
				continue
			}
			cfgMergeMCP(ts, def)
		}
		for _, s := range a.SubAgents {
			if !names[s] && !cfgIsExternalRef(s) {
				fail("agent '%s' references non-existent sub-agent '%s'", a.Name, s)
			}
		}
		for _, h := range a.Handoffs {
			if !names[h] && !cfgIsExternalRef(h) {
				fail("agent '%s' references non-existent handoff agent '%s'", a.Name, h)
			}
		}
		for _, s := range a.SkillSources {
			if s != "local" && !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
				fail("agent '%s' has unknown skills source '%s' (must be 'local' or an HTTP/HTTPS URL)", a.Name, s)
			}
		}
	}
	return errors.Join(errs...)
}

// cfgMergeMCP fills a `ref: <mcps key>` toolset from its definition: the agent's own
// fields win, env is merged with the agent's values winning.
func cfgMergeMCP(ts, def *toolsetConfig) {
	ts.Ref = def.Ref // "" or a docker: ref the definition itself points at
	if ts.Command == "" {
		ts.Command = def.Command
	}
	if ts.Remote.URL == "" {
		ts.Remote = def.Remote
	}
	if len(ts.Args) == 0 {
		ts.Args = slices.Clone(def.Args)
	}
	if ts.Version == "" {
		ts.Version = def.Version
	}
	if ts.Config == nil {
		ts.Config = def.Config
	}
	if ts.Name == "" {
		ts.Name = def.Name
	}
	if ts.Instruction == "" {
		ts.Instruction = def.Instruction
	}
	if len(ts.Tools) == 0 {
		ts.Tools = slices.Clone(def.Tools)
	}
	if !ts.Defer.All && ts.Defer.Tools == nil {
		ts.Defer = deferConfig{All: def.Defer.All, Tools: slices.Clone(def.Defer.Tools)}
	}
	if def.Env.len() > 0 {
		env := &orderedMap[string]{}
		for _, k := range def.Env.Keys {
			env.set(k, def.Env.Values[k])
		}
		for _, k := range ts.Env.keys() {
			env.set(k, ts.Env.Values[k])
		}
		ts.Env = env
	}
}

// keys is the key list of a possibly nil map.
func (m *orderedMap[V]) keys() []string {
	if m == nil {
		return nil
	}
	return m.Keys
}

// ---- Model resolution (CONFIG.md §5) ----

// cfgAutoModels is the `auto` choice: the first provider whose key is set wins.
var cfgAutoModels = []struct {
	envs            []string
	provider, model string
}{
	{[]string{"ANTHROPIC_API_KEY"}, "anthropic", "claude-sonnet-4-5"},
	{[]string{"OPENAI_API_KEY"}, "openai", "gpt-5-mini"},
	{[]string{"GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI"}, "google", "gemini-2.5-flash"},
	{[]string{"MISTRAL_API_KEY"}, "mistral", "mistral-small-latest"},
	{[]string{"AWS_BEARER_TOKEN_BEDROCK", "AWS_ACCESS_KEY_ID", "AWS_PROFILE", "AWS_ROLE_ARN"}, "amazon-bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0"},
}

// modelSpec resolves a model reference as an agent uses it: a `models` key, `auto`,
// a comma list (one entry picked at random per call) or an inline provider/model.
func (f *agentFile) modelSpec(ref string, getenv func(string) string) (modelSpec, error) {
	return f.modelSpecDepth(ref, getenv, 0)
}

func (f *agentFile) modelSpecDepth(ref string, getenv func(string) string, depth int) (modelSpec, error) {
	if depth > 8 {
		return modelSpec{}, fmt.Errorf("model '%s': alloy references nest too deeply", ref)
	}
	if mc, ok := f.Models.get(ref); ok {
		if mc.Provider == "" && strings.Contains(mc.Model, ",") {
			return f.pickAlloy(ref, mc.Model, getenv, depth)
		}
		return f.specFromConfig(ref, mc), nil
	}
	if ref == "auto" {
		for _, a := range cfgAutoModels {
			for _, e := range a.envs {
				if getenv(e) != "" {
					return modelSpec{Ref: ref, Provider: a.provider, Model: a.model, MaxTokens: 32000}, nil
				}
			}
		}
		return modelSpec{Ref: ref, Provider: "dmr", Model: "ai/qwen3:latest", MaxTokens: 16000}, nil
	}
	if strings.Contains(ref, ",") {
		return f.pickAlloy(ref, ref, getenv, depth)
	}
	if p, m, ok := cfgSplitInline(ref); ok {
		return f.specFromConfig(ref, &modelConfig{Provider: p, Model: m}), nil
	}
	return modelSpec{}, fmt.Errorf("model '%s' not found in configuration", ref)
}

func (f *agentFile) pickAlloy(ref, list string, getenv func(string) string, depth int) (modelSpec, error) {
	parts := cfgAlloyParts(list)
	if len(parts) == 0 {
		return modelSpec{}, fmt.Errorf("model '%s' not found in configuration", ref)
	}
	return f.modelSpecDepth(parts[rand.IntN(len(parts))], getenv, depth+1)
}

func (f *agentFile) specFromConfig(ref string, mc *modelConfig) modelSpec {
	s := modelSpec{
		Ref:               ref,
		Provider:          mc.Provider,
		Model:             mc.Model,
		BaseURL:           mc.BaseURL,
		TokenKey:          mc.TokenKey,
		Temperature:       mc.Temperature,
		TopP:              mc.TopP,
		FrequencyPenalty:  mc.FrequencyPenalty,
		PresencePenalty:   mc.PresencePenalty,
		ParallelToolCalls: mc.ParallelToolCalls,
		TrackUsage:        mc.TrackUsage,
		ThinkingBudget:    mc.ThinkingBudget,
		FirstByteTimeout:  mc.FirstByteDur,
		IdleTimeout:       mc.IdleDur,
	}
	if mc.MaxTokens != nil {
		s.MaxTokens = *mc.MaxTokens
	}
	if len(mc.ProviderOpts) > 0 {
		s.ProviderOpts = make(map[string]any, len(mc.ProviderOpts))
		for k, v := range mc.ProviderOpts {
			s.ProviderOpts[k] = v
		}
	}
	if p, ok := f.Providers.get(mc.Provider); ok {
		// A custom provider is OpenAI-compatible; the model's own fields win.
		if s.BaseURL == "" {
			s.BaseURL = p.BaseURL
		}
		if s.TokenKey == "" {
			s.TokenKey = p.TokenKey
		}
		s.APIType = p.APIType
		if s.APIType == "" {
			s.APIType = "openai_chatcompletions"
		}
	}
	if t, ok := s.ProviderOpts["api_type"].(string); ok && t != "" {
		s.APIType = t
	}
	return s
}

// cfgAliasKeys are the API-key variables of the OpenAI-compatible built-in aliases.
var cfgAliasKeys = map[string]string{
	"mistral":   "MISTRAL_API_KEY",
	"xai":       "XAI_API_KEY",
	"nebius":    "NEBIUS_API_KEY",
	"minimax":   "MINIMAX_API_KEY",
	"requesty":  "REQUESTY_API_KEY",
	"azure":     "AZURE_API_KEY",
	"openai":    "OPENAI_API_KEY",
	"anthropic": "ANTHROPIC_API_KEY",
}

// requiredEnv is the preflight of CONFIG.md §8.3 for the given agents' models
// (and their routing targets and alloy members; fallbacks are not checked). Unlike
// the reference, a `providers:` section does not switch off the checks for models
// that use built-in providers.
func requiredEnv(f *agentFile, agents []*agentConfig, getenv func(string) string) error {
	need := map[string]bool{}
	seen := map[string]bool{}
	var visit func(ref string)
	visit = func(ref string) {
		if ref == "" || ref == "auto" || seen[ref] {
			return
		}
		seen[ref] = true
		mc, ok := f.Models.get(ref)
		if !ok {
			if strings.Contains(ref, ",") {
				for _, p := range cfgAlloyParts(ref) {
					visit(p)
				}
				return
			}
			p, m, ok := cfgSplitInline(ref)
			if !ok {
				return // an unknown model fails when the team is built
			}
			mc = &modelConfig{Provider: p, Model: m}
		}
		if mc.Provider == "" && strings.Contains(mc.Model, ",") {
			for _, p := range cfgAlloyParts(mc.Model) {
				visit(p)
			}
		}
		for _, r := range mc.RoutingRules {
			visit(r.Model)
		}
		for _, k := range cfgModelKeys(f, mc, getenv) {
			need[k] = true
		}
	}
	for _, a := range agents {
		if a != nil {
			visit(a.Model)
		}
	}
	var missing []string
	for k := range need {
		if getenv(k) == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	slices.Sort(missing)
	var b strings.Builder
	b.WriteString("The following environment variables must be set:\n")
	for _, k := range missing {
		b.WriteString(" - " + k + "\n")
	}
	b.WriteString("\nEither:\n" +
		" - Set those environment variables before running docker agent\n" +
		" - Run docker agent with --env-from-file\n" +
		" - Store those secrets using one of the built-in environment variable providers.")
	return errors.New(b.String())
}

// cfgModelKeys lists the variables one model needs (§8.3 order of precedence).
func cfgModelKeys(f *agentFile, mc *modelConfig, getenv func(string) string) []string {
	if mc.TokenKey != "" {
		return []string{mc.TokenKey}
	}
	if p, ok := f.Providers.get(mc.Provider); ok {
		if p.TokenKey != "" {
			return []string{p.TokenKey}
		}
		return nil // custom providers without token_key send no auth
	}
	if mc.Provider == "google" {
		if getenv("GOOGLE_GENAI_USE_VERTEXAI") != "" {
			var out []string
			if s, _ := mc.ProviderOpts["project"].(string); s == "" {
				out = append(out, "GOOGLE_CLOUD_PROJECT")
			}
			if s, _ := mc.ProviderOpts["location"].(string); s == "" {
				out = append(out, "GOOGLE_CLOUD_LOCATION")
			}
			return out
		}
		if getenv("GEMINI_API_KEY") != "" {
			return nil
		}
		return []string{"GOOGLE_API_KEY"}
	}
	if k, ok := cfgAliasKeys[mc.Provider]; ok {
		return []string{k}
	}
	return nil
}

// ---- Environment expansion (CONFIG.md §8.1) ----

// expandEnvTemplate expands the JavaScript-template subset the configs use:
// `${env.NAME}` (missing → ""), and `||` chains of env.NAME and quoted literals,
// e.g. `${env.HOST || 'localhost'}`. Like the reference's JS engine failing on any
// other expression, an unsupported `${…}` leaves the whole string unchanged.
func expandEnvTemplate(s string, getenv func(string) string) string {
	if !strings.Contains(s, "${") {
		return s
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			b.WriteString(rest)
			return b.String()
		}
		b.WriteString(rest[:i])
		expr, after, ok := cfgTemplateExpr(rest[i+2:])
		if !ok {
			return s
		}
		v, ok := cfgEvalEnvExpr(expr, getenv)
		if !ok {
			return s
		}
		b.WriteString(v)
		rest = after
	}
}

// cfgTemplateExpr returns the text up to the `}` closing a `${`, skipping quoted
// strings, and what follows it.
func cfgTemplateExpr(s string) (expr, rest string, ok bool) {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '}':
			return s[:i], s[i+1:], true
		case c == '{':
			return "", "", false
		}
	}
	return "", "", false
}

// cfgEvalEnvExpr evaluates `term || term …` where a term is env.NAME or a quoted
// string literal; JavaScript's || picks the first non-empty value.
func cfgEvalEnvExpr(expr string, getenv func(string) string) (string, bool) {
	var last string
	for term := range strings.SplitSeq(expr, "||") {
		term = strings.TrimSpace(term)
		var v string
		switch {
		case strings.HasPrefix(term, "env."):
			name := term[len("env."):]
			if !cfgIsIdent(name) {
				return "", false
			}
			v = getenv(name)
		case len(term) >= 2 && (term[0] == '\'' || term[0] == '"') && term[len(term)-1] == term[0]:
			v = term[1 : len(term)-1]
			if strings.ContainsRune(v, rune(term[0])) || strings.Contains(v, "\\") {
				return "", false // escapes or embedded quotes: beyond the supported subset
			}
		default:
			return "", false
		}
		if v != "" {
			return v, true
		}
		last = v
	}
	return last, true
}

func cfgIsIdent(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// ---- Redaction ----

// redactedJSON is the config's JSON with literal secrets replaced by "REDACTED": header
// values named like credentials, env values whose key looks secret, and passwords in
// URLs. `${env.X}` / `$X` references are kept: they are names, not secrets, as are
// token_key values. The reference returns everything verbatim; we do not.
func (f *agentFile) redactedJSON() ([]byte, error) {
	raw, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := cfgReadJSON(dec)
	if err != nil {
		return nil, err
	}
	v = cfgRedact(v, "")
	var b bytes.Buffer
	if err := cfgWriteJSON(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// cfgJSONObject is a JSON object that keeps its key order.
type cfgJSONObject struct {
	keys []string
	vals []any
}

func cfgReadJSON(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &cfgJSONObject{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := cfgReadJSON(dec)
				if err != nil {
					return nil, err
				}
				o.keys = append(o.keys, k.(string))
				o.vals = append(o.vals, v)
			}
			_, err := dec.Token()
			return o, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := cfgReadJSON(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token()
			return a, err
		}
	}
	return tok, nil
}

func cfgWriteJSON(b *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case *cfgJSONObject:
		b.WriteByte('{')
		for i, k := range t.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			if err := cfgWriteJSON(b, t.vals[i]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, x := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := cfgWriteJSON(b, x); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		vb, err := json.Marshal(t)
		if err != nil {
			return err
		}
		b.Write(vb)
	}
	return nil
}

// cfgRedact walks the JSON; parent is the key of the object holding v. Values of
// `headers` and `env` maps and `args` lists are shown only when they are exactly one
// environment reference: anything else may be, or contain, a credential, whatever its
// name. Elsewhere secret-named options, URL credentials and token-shaped text go.
func cfgRedact(v any, parent string) any {
	switch t := v.(type) {
	case *cfgJSONObject:
		for i, k := range t.keys {
			if s, ok := t.vals[i].(string); ok {
				switch {
				case k == "token_key":
					// the name of a variable, not its value
				case parent == "headers" || parent == "env":
					t.vals[i] = cfgRedactUnlessRef(s, parent)
				case (parent == "provider_opts" || parent == "config") && cfgSecretName(k) && !cfgWholeEnvRef(s, parent):
					t.vals[i] = "REDACTED"
				default:
					t.vals[i] = cfgRedactString(s)
				}
				continue
			}
			child := k
			if parent == "config" || parent == "provider_opts" {
				child = parent // free-form trees: every level is checked alike
			}
			t.vals[i] = cfgRedact(t.vals[i], child)
		}
		return t
	case []any:
		for i := range t {
			switch s, ok := t[i].(string); {
			case ok && parent == "args":
				t[i] = cfgRedactUnlessRef(s, parent)
			case ok:
				t[i] = cfgRedactString(s)
			default:
				t[i] = cfgRedact(t[i], parent)
			}
		}
		return t
	}
	return v
}

func cfgRedactUnlessRef(s, parent string) string {
	if s == "" || cfgWholeEnvRef(s, parent) {
		return s
	}
	return "REDACTED"
}

// cfgSecretName reports whether a header, env or option name looks like it holds a
// credential.
func cfgSecretName(name string) bool {
	n := strings.ToUpper(name)
	for _, w := range []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "AUTH", "COOKIE", "CREDENTIAL", "PRIVATE", "SESSION", "SIGNATURE"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// cfgWholeEnvRef reports whether s is exactly one environment reference, so that it
// names a secret instead of containing one: `${env.X}` (expanded in headers and URLs),
// and for `env` values, which are expanded shell-style, also `${X}` and `$X`.
func cfgWholeEnvRef(s, parent string) bool {
	if name, ok := strings.CutPrefix(s, "${env."); ok && strings.HasSuffix(name, "}") {
		return cfgEnvName(name[:len(name)-1])
	}
	if parent != "env" {
		return false
	}
	if name, ok := strings.CutPrefix(s, "${"); ok && strings.HasSuffix(name, "}") {
		return cfgEnvName(name[:len(name)-1])
	}
	name, ok := strings.CutPrefix(s, "$")
	return ok && cfgEnvName(name)
}

// cfgEnvName: a letter or underscore, then letters, digits and underscores.
func cfgEnvName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// cfgTokenText matches the shapes of well-known credentials (GitHub, GitLab, OpenAI
// and Anthropic, Slack, AWS, Google, Hugging Face) wherever they appear.
var cfgTokenText = regexp.MustCompile(`\b(?:gh[pousr]_|github_pat_|glpat-|sk-|xox[abposr]-|AKIA|AIza|hf_)[A-Za-z0-9_\-]{12,}`)

// cfgRedactString replaces token-shaped text, and redacts URL credentials.
func cfgRedactString(s string) string {
	return cfgRedactURL(cfgTokenText.ReplaceAllString(s, "REDACTED"))
}

// cfgSecretSegment reports whether a URL path segment looks like a credential (a
// webhook secret, a key in the path): long, with upper and lower case and digits.
// Model names, versions and UUIDs are lower case and stay readable.
func cfgSecretSegment(seg string) bool {
	var upper, lower, digit bool
	for _, c := range seg {
		switch {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		case c != '-' && c != '_' && c != '.' && c != '~':
			return false
		}
	}
	return len(seg) >= 20 && upper && lower && digit
}

// cfgRedactURL hides a URL's userinfo password (or a lone user name, often a token),
// secret-looking path segments and query values, and the values of secret-named
// query parameters; other strings are returned unchanged.
func cfgRedactURL(s string) string {
	if !strings.Contains(s, "://") || strings.ContainsAny(s, " \n\t") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		} else {
			u.User = url.User("REDACTED")
		}
		changed = true
	}
	if segs := strings.Split(u.Path, "/"); slices.ContainsFunc(segs, cfgSecretSegment) {
		for i, seg := range segs {
			if cfgSecretSegment(seg) {
				segs[i] = "REDACTED"
			}
		}
		u.Path, u.RawPath = strings.Join(segs, "/"), ""
		changed = true
	}
	if u.RawQuery != "" {
		q := u.Query()
		qChanged := false
		for k, vs := range q {
			for i, v := range vs {
				if v != "" && !cfgWholeEnvRef(v, "") && (cfgSecretName(k) || cfgSecretSegment(v) || cfgTokenText.MatchString(v)) {
					vs[i] = "REDACTED"
					qChanged = true
				}
			}
		}
		if qChanged {
			u.RawQuery = q.Encode()
			changed = true
		}
	}
	if !changed {
		return s
	}
	return u.String()
}
