package main

// config.go is the agent configuration model (CONFIG.md): the typed form of an agent
// YAML file after version migration, and its JSON shape for GET /api/agents/{id}.

import "encoding/json"

// agentFile is one loaded, migrated and validated agent configuration (version "7").
type agentFile struct {
	Version     string                       `json:"version"` // the file's own version string, "7" when absent
	Agents      []*agentConfig               `json:"agents"`  // document order
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
}

type commandConfig struct {
	Description string `json:"description,omitempty"`
	Instruction string `json:"instruction,omitempty"`
}

type fallbackConfig struct {
	Models   []string `json:"models,omitempty"`
	Retries  int      `json:"retries,omitempty"`  // 0 = default 2, -1 = none
	Cooldown string   `json:"cooldown,omitempty"` // Go duration, default 1m
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
