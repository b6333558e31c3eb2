package main

// config.go is the agent configuration model (CONFIG.md): the typed form of an agent
// YAML file after version migration, its JSON shape for GET /api/agents/{id}, the
// version-gate tables, and loading. Decoding is in config_decode.go, load-time checks
// in config_validate.go, model resolution in config_models.go and redaction in
// config_redact.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
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
	StructuredOutput        *structuredOutputConfig    `json:"structured_output,omitempty"`
	SkillSources            skillSources               `json:"skills,omitempty"` // nil = disabled, ["local"] for `skills: true`
	HookSet                 *hooksConfig               `json:"hooks,omitempty"`  // nil when the agent has none
	Fallback                *fallbackConfig            `json:"fallback,omitempty"`
}

// skillSources are the places an agent reads skills from: "local" or http(s) URLs.
type skillSources []string

// MarshalJSON writes `skills: true` back as true, as the reference keeps the bool.
func (s skillSources) MarshalJSON() ([]byte, error) {
	if len(s) == 1 && s[0] == "local" {
		return []byte("true"), nil
	}
	return json.Marshal([]string(s))
}

// structuredOutputConfig is the response format an agent asks its model for.
type structuredOutputConfig struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema"` // a JSON schema object, or null
	Strict      bool            `json:"strict,omitempty"`
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
	// CooldownDur is how long to stay on a fallback after the primary failed; 0 = the
	// default 1m. Serialised as "cooldown" by MarshalJSON.
	CooldownDur time.Duration `json:"-"`
}

// MarshalJSON writes the cooldown as the reference does: always present, as
// time.Duration.String() ("30s", "1m0s"), or "" for the default.
func (fb fallbackConfig) MarshalJSON() ([]byte, error) {
	type plain fallbackConfig // without this method
	return json.Marshal(struct {
		plain
		Cooldown string `json:"cooldown"`
	}{plain(fb), cfgDurationString(fb.CooldownDur)})
}

// modelConfig is an entry of `models:` (or one synthesised for an inline provider/model).
type modelConfig struct {
	Provider          string         `json:"provider,omitempty"`
	Model             string         `json:"model,omitempty"`
	Temperature       *float64       `json:"temperature,omitempty"`
	MaxTokens         *int64         `json:"max_tokens,omitempty"`
	TopP              *float64       `json:"top_p,omitempty"`
	FrequencyPenalty  *float64       `json:"frequency_penalty,omitempty"`
	PresencePenalty   *float64       `json:"presence_penalty,omitempty"`
	BaseURL           string         `json:"base_url,omitempty"`
	ParallelToolCalls *bool          `json:"parallel_tool_calls,omitempty"`
	TokenKey          string         `json:"token_key,omitempty"`
	ProviderOpts      map[string]any `json:"provider_opts,omitempty"`
	TrackUsage        *bool          `json:"track_usage,omitempty"`
	ThinkingBudget    any            `json:"thinking_budget,omitempty"` // int64 or string
	RoutingRules      []routingRule  `json:"routing,omitempty"`
	// FirstByteDur and IdleDur bound a stalled provider (our extension; 0 = the API
	// family's default). Serialised as first_byte_timeout and idle_timeout by MarshalJSON.
	FirstByteDur, IdleDur time.Duration `json:"-"`
}

// MarshalJSON adds the timeouts as time.Duration.String() of the configured values,
// omitted when unset.
func (mc modelConfig) MarshalJSON() ([]byte, error) {
	type plain modelConfig // without this method
	return json.Marshal(struct {
		plain
		FirstByteTimeout string `json:"first_byte_timeout,omitempty"`
		IdleTimeout      string `json:"idle_timeout,omitempty"`
	}{plain(mc), cfgDurationString(mc.FirstByteDur), cfgDurationString(mc.IdleDur)})
}

// cfgDurationString is d as configuration JSON shows it: "" for 0 (the default).
func cfgDurationString(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
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
	OAuth         *remoteOAuthConfig  `json:"oauth,omitempty"`
}

// remoteOAuthConfig tunes MCP OAuth for one server (mcp_oauth.go): a client
// registered beforehand, for authorization servers without dynamic registration;
// the scopes to ask for; the redirect URI. callbackPort is accepted for the newer
// reference's configs and unused: agentd runs no local callback server.
type remoteOAuthConfig struct {
	ClientID            string   `json:"clientId"`
	ClientSecret        string   `json:"clientSecret,omitempty"` // ${env.X} expanded
	CallbackPort        int      `json:"callbackPort,omitempty"`
	Scopes              []string `json:"scopes,omitempty"`
	CallbackRedirectURL string   `json:"callbackRedirectURL,omitempty"`
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

// keys is the key list of a possibly nil map.
func (m *orderedMap[V]) keys() []string {
	if m == nil {
		return nil
	}
	return m.Keys
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

// cfgField is a key of one config section and the file versions that know it, from
// since to until inclusive. The reference decodes each version with its own Go
// types, so a key outside its range is an unknown field there, and here.
type cfgField struct {
	key          string
	since, until int
}

// cfgNow as until: the key is still part of the latest version.
const cfgNow = cfgLatestVersion

// One table per section that changed between versions; a key missing from its
// section's table is unknown in every version.
var (
	cfgDocumentFields = []cfgField{
		{"version", 0, cfgNow}, {"agents", 0, cfgNow}, {"models", 0, cfgNow},
		{"env", 0, 1},      // top-level env: the v1→v2 upgrade rejects it when set
		{"workflow", 0, 2}, // dropped by the upgrade
		{"metadata", 1, cfgNow},
		{"rag", 2, cfgNow},
		{"providers", 3, cfgNow}, {"permissions", 3, cfgNow},
		{"mcps", 6, cfgNow},
	}
	cfgMetadataFields = []cfgField{
		{"author", 0, cfgNow}, {"license", 0, cfgNow}, {"readme", 0, cfgNow}, {"description", 0, cfgNow},
		{"version", 3, cfgNow},
	}
	cfgModelFields = []cfgField{
		{"model", 0, cfgNow}, {"temperature", 0, cfgNow}, {"top_p", 0, cfgNow},
		{"frequency_penalty", 0, cfgNow}, {"presence_penalty", 0, cfgNow}, {"max_tokens", 0, cfgNow},
		{"base_url", 0, cfgNow}, {"parallel_tool_calls", 0, cfgNow},
		{"type", 0, 0}, // renamed provider in v1
		{"env", 0, 1},  // the v1→v2 upgrade rejects it when set
		{"provider", 1, cfgNow}, {"token_key", 1, cfgNow}, {"provider_opts", 1, cfgNow},
		{"track_usage", 2, cfgNow}, {"thinking_budget", 2, cfgNow},
		{"routing", 3, cfgNow},
		{"first_byte_timeout", 0, cfgNow}, {"idle_timeout", 0, cfgNow}, // our extension
	}
	cfgAgentFields = []cfgField{
		{"name", 0, cfgNow}, {"model", 0, cfgNow}, {"description", 0, cfgNow}, {"instruction", 0, cfgNow},
		{"toolsets", 0, cfgNow}, {"sub_agents", 0, cfgNow}, {"add_date", 0, cfgNow},
		{"num_history_items", 0, cfgNow}, {"commands", 0, cfgNow},
		{"think", 0, 0}, {"todo", 0, 0}, {"memory", 0, 0}, // become toolsets in v1
		{"add_environment_info", 1, cfgNow},
		{"welcome_message", 2, cfgNow}, {"handoffs", 2, cfgNow}, {"rag", 2, cfgNow},
		{"code_mode_tools", 2, cfgNow}, {"max_iterations", 2, cfgNow},
		{"add_prompt_files", 2, cfgNow}, {"structured_output", 2, cfgNow},
		{"skills", 3, cfgNow}, {"hooks", 3, cfgNow},
		{"fallback", 4, cfgNow}, {"add_description_parameter", 4, cfgNow},
	}
	cfgHooksFields = []cfgField{
		{"pre_tool_use", 0, cfgNow}, {"post_tool_use", 0, cfgNow},
		{"session_start", 0, cfgNow}, {"session_end", 0, cfgNow},
		{"on_user_input", 6, cfgNow},
	}
	cfgToolsetFields = []cfgField{
		{"type", 0, cfgNow}, {"command", 0, cfgNow}, {"remote", 0, cfgNow},
		{"args", 0, cfgNow}, {"env", 0, cfgNow}, {"tools", 0, cfgNow},
		{"env_file", 0, 1}, // the v1→v2 upgrade rejects it when set
		{"ref", 1, cfgNow}, {"config", 1, cfgNow}, {"shared", 1, cfgNow},
		{"path", 1, cfgNow}, {"shell", 1, cfgNow}, {"post_edit", 1, cfgNow},
		{"instruction", 2, cfgNow}, {"toon", 2, cfgNow}, {"api_config", 2, cfgNow},
		{"ignore_vcs", 2, cfgNow}, {"timeout", 2, cfgNow},
		{"defer", 3, cfgNow}, {"name", 3, cfgNow}, {"url", 3, cfgNow},
		{"sandbox", 3, 5}, // checked, then dropped by the v5→v6 upgrade
		{"headers", 5, cfgNow},
		{"model", 6, cfgNow}, {"version", 6, cfgNow}, {"file_types", 6, cfgNow}, {"models", 6, cfgNow},
	}
	cfgAPIConfigFields = []cfgField{
		{"name", 0, cfgNow}, {"method", 0, cfgNow}, {"endpoint", 0, cfgNow}, {"instruction", 0, cfgNow},
		{"args", 0, cfgNow}, {"required", 0, cfgNow}, {"headers", 0, cfgNow},
		{"output_schema", 3, cfgNow},
	}
)

// Version rules that are not a key coming or going.
const (
	cfgSkillListSince  = 5 // skills: a list of sources as well as a boolean
	cfgMemoryPathUntil = 5 // memory toolsets need a path
	cfgDockerRefUntil  = 5 // an MCP ref must be a docker: ref (later it may name an mcps entry)
)

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
