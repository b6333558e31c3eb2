package main

// chat.go holds the conversation model shared by the model providers, the tools, the
// store and the runtime. JSON keys match the reference's chat.Message and tool types
// (API.md §5, §8.2) so sessions stored by either program read the same.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// chatMessage is one message of a conversation (the reference's chat.Message).
// Role and content are always serialised; everything else is omitted when empty.
type chatMessage struct {
	Role              string        `json:"role"`
	Content           string        `json:"content"`
	MultiContent      []messagePart `json:"multi_content,omitempty"`
	ReasoningContent  string        `json:"reasoning_content,omitempty"`
	ThinkingSignature string        `json:"thinking_signature,omitempty"`
	ThoughtSignature  []byte        `json:"thought_signature,omitempty"`
	FunctionCall      *functionCall `json:"function_call,omitempty"`
	ToolCalls         []toolCall    `json:"tool_calls,omitempty"`
	ToolDefinitions   []toolDef     `json:"tool_definitions,omitempty"`
	ToolCallID        string        `json:"tool_call_id,omitempty"`
	IsError           bool          `json:"is_error,omitempty"`
	CreatedAt         string        `json:"created_at,omitempty"`
	Usage             *messageUsage `json:"usage,omitempty"`
	Model             string        `json:"model,omitempty"`
	Cost              float64       `json:"cost,omitempty"`
	CacheControl      bool          `json:"cache_control,omitempty"`
}

// messagePart is one element of multi_content: text, an image URL or a file.
type messagePart struct {
	Type     string    `json:"type"`
	Text     string    `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
	File     *filePart `json:"file,omitempty"`
}

type imageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

type filePart struct {
	Path     string `json:"path,omitempty"`
	FileID   string `json:"file_id,omitempty"`
	MimeType string `json:"mime_type,omitempty"`
}

// toolCall is a call requested by the model. Arguments is the raw JSON text the model
// streamed, resent verbatim to providers.
type toolCall struct {
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

// messageUsage is the token usage of one model call, as stored on assistant messages.
type messageUsage struct {
	InputTokens       int64 `json:"input_tokens"`
	OutputTokens      int64 `json:"output_tokens"`
	CachedInputTokens int64 `json:"cached_input_tokens"`
	CacheWriteTokens  int64 `json:"cached_write_tokens"`
	ReasoningTokens   int64 `json:"reasoning_tokens,omitempty"`
}

// toolDef describes a tool to the model and to clients (the reference's tools.Tool JSON).
type toolDef struct {
	Name         string          `json:"name"`
	Category     string          `json:"category"`
	Description  string          `json:"description,omitempty"`
	Parameters   json.RawMessage `json:"parameters"`
	Annotations  toolAnnotations `json:"annotations"`
	OutputSchema json.RawMessage `json:"outputSchema"`
}

type toolAnnotations struct {
	DestructiveHint *bool  `json:"destructiveHint,omitempty"`
	IdempotentHint  *bool  `json:"idempotentHint,omitempty"`
	OpenWorldHint   *bool  `json:"openWorldHint,omitempty"`
	ReadOnlyHint    bool   `json:"readOnlyHint,omitempty"`
	Title           string `json:"title,omitempty"`
}

// toolResult is what a tool returns (camelCase keys, as the reference's ToolCallResult).
type toolResult struct {
	Output            string         `json:"output"`
	IsError           bool           `json:"isError,omitempty"`
	Meta              any            `json:"meta,omitempty"`
	Images            []mediaContent `json:"images,omitempty"`
	Audios            []mediaContent `json:"audios,omitempty"`
	StructuredContent any            `json:"structuredContent,omitempty"`
}

type mediaContent struct {
	Data     string `json:"data"` // base64
	MimeType string `json:"mimeType"`
}

// toolErrorf returns an error result; errors are data for the model, never Go errors.
func toolErrorf(format string, args ...any) toolResult {
	return toolResult{Output: fmt.Sprintf(format, args...), IsError: true}
}

// tool is one callable tool. run must honour ctx (cancelled when the run ends) and
// report failures as an error toolResult.
type tool struct {
	def toolDef
	run func(ctx context.Context, env *toolEnv, args json.RawMessage) toolResult
	// model is the toolset's `model:`: the model that answers the turn after a call
	// to this tool (tools_wrap.go). "" for the agent's own.
	model string
}

// toolEnv is what a running tool may use of the session that called it. Toolsets are
// shared by every session of an agent config, so per-session facts travel here.
type toolEnv struct {
	SessionID  string
	WorkingDir string              // absolute; file and shell tools are confined to it
	Getenv     func(string) string // the server's environment (with --env-from-file)
	HTTP       *http.Client
	// Dir is WorkingDir as opened from the server's root when the run started; file
	// tools go through it, so a directory later swapped for a symlink leads nowhere.
	Dir *os.Root
	// Protected are the server's secret files, which file tools refuse (protected.go).
	Protected *protectedFiles
	// Elicit asks the client a question through an elicitation_request event and waits
	// for POST /api/sessions/{id}/elicitation. Nil when no client can answer.
	Elicit func(ctx context.Context, req elicitationRequest) (elicitationResponse, error)
	// Output, when set, receives a running tool's output as it is produced (the shell
	// tool's process output), for tool_call_output events.
	Output func(chunk string)
}

// elicitationRequest is a question for the user (MCP elicitation/create, user_prompt).
type elicitationRequest struct {
	Message       string          `json:"message"`
	Mode          string          `json:"mode,omitempty"`
	Schema        json.RawMessage `json:"schema,omitempty"`
	URL           string          `json:"url,omitempty"`
	ElicitationID string          `json:"elicitation_id,omitempty"`
	Meta          map[string]any  `json:"meta,omitempty"`
}

// elicitationResponse is the client's answer: action accept, decline or cancel.
type elicitationResponse struct {
	Action  string         `json:"action"`
	Content map[string]any `json:"content,omitempty"`
}

// toolset is a source of tools for an agent: a built-in family, an MCP server...
// One instance serves every session of the agent config that declared it.
type toolset interface {
	// tools lists the tools currently offered (starting the toolset if needed).
	tools(ctx context.Context) ([]tool, error)
	// instruction is the toolset's system-prompt text, "" for none.
	instruction() string
	// close stops processes and connections; the toolset is not used afterwards.
	close() error
}

// modelSpec is one resolved model: which API to speak, where, and with what options.
// The config layer builds it from `models:` entries and inline provider/model refs.
type modelSpec struct {
	Ref               string // the name the agent used: "openai/gpt-4o" or a models key
	Provider          string // openai, anthropic, google, dmr, mistral, … or a custom provider name
	Model             string
	APIType           string // openai_chatcompletions, openai_responses, anthropic, google; "" = by provider
	BaseURL           string // "" = the provider's default
	TokenKey          string // name of the env var holding the key; "" = the provider's default
	MaxTokens         int64  // 0 = default
	Temperature       *float64
	TopP              *float64
	FrequencyPenalty  *float64
	PresencePenalty   *float64
	ParallelToolCalls *bool
	TrackUsage        *bool
	ThinkingBudget    any // nil, int64 token budget, or effort string ("low", "none", …)
	ProviderOpts      map[string]any
	FirstByteTimeout  time.Duration // request sent → first body byte; 0 = the API family's default
	IdleTimeout       time.Duration // longest silence inside a stream; 0 = the API family's default
}

// modelRequest is one streaming completion, provider-neutral. Messages holds the
// system messages first, then the conversation.
type modelRequest struct {
	Messages  []chatMessage
	Tools     []toolDef
	MaxTokens int64 // overrides the spec's when > 0 (title generation uses 20)
	Thinking  bool  // the session's thinking toggle
	NoTools   bool
	// Output is the agent's structured_output, sent as the provider's native response
	// format; nil on title and summary requests.
	Output *structuredOutputConfig
}

// modelEventKind says which field of a modelEvent is set.
type modelEventKind int

const (
	evText          modelEventKind = iota // Text
	evReasoning                           // Text (and Signature when the provider signs thinking)
	evToolCallStart                       // ToolID, ToolName
	evToolCallArgs                        // ToolID, Text = argument fragment
	evUsage                               // Usage (the last one seen wins)
	evStop                                // StopReason: stop, length, tool_calls, …
)

// modelEvent is one item of a provider stream (PROVIDERS.md §1).
type modelEvent struct {
	Kind             modelEventKind
	Text             string
	Signature        string // Anthropic thinking signature
	ThoughtSignature []byte // Gemini thoughtSignature
	ToolID           string
	ToolName         string
	Usage            *messageUsage
	StopReason       string
	Model            string // model name reported by the provider, when known
	More             bool   // more events are already buffered: a consumer may flush later
}

// modelClient streams completions from one model.
type modelClient interface {
	// stream sends req and calls emit for every event until the stream ends. An HTTP
	// failure before the first event is a *modelError so callers can retry or fall back.
	stream(ctx context.Context, req *modelRequest, emit func(modelEvent)) error
	// spec is the model this client talks to.
	spec() modelSpec
}

// modelError is a provider failure with what retry logic needs to know.
type modelError struct {
	Status     int           // HTTP status, 0 for transport errors
	RetryAfter time.Duration // from Retry-After / Retry-After-Ms, 0 if absent
	Msg        string        // human readable, with the provider's own message
	MidStream  bool          // the stream had started when it failed
	// Stalled: the provider sent nothing within the first-byte timeout. Not retried on
	// the same model, so a hung provider is reported after one timeout, not three.
	Stalled bool
}

func (e *modelError) Error() string { return e.Msg }

// clientEnv is what a model client needs from the server.
type clientEnv struct {
	HTTP    *http.Client
	Gateway string // when set (--fake, --record), every request goes there with X-Cagent-Forward: <real base URL>
	// GatewayToken is the cassette gateway's per-process secret, sent as
	// gatewayTokenHeader so that no other local process can use the gateway.
	GatewayToken string
	Getenv       func(string) string
}

// sseEvent is one Server-Sent Event read from a provider stream.
type sseEvent struct {
	Event string // "" when the stream sends no event: lines
	Data  string
	More  bool // more of the stream had already arrived when this event was read
}

// readSSE calls fn for every event in r until EOF, fn's error, or a line longer than
// maxSSELine. Comment lines are skipped; multi-line data is joined with "\n".
func readSSE(r io.Reader, fn func(sseEvent) error) error {
	// Counting what was read against what was consumed tells whether the next event
	// is already buffered, so consumers can batch their own flushes (sseEvent.More).
	cr := &countingReader{r: r}
	var consumed int64
	sc := bufio.NewScanner(cr)
	sc.Buffer(make([]byte, 4096), maxSSELine) // grows for long lines
	sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		adv, tok, err := bufio.ScanLines(data, atEOF)
		consumed += int64(adv)
		return adv, tok, err
	})
	var ev sseEvent
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != nil {
				ev.Data = strings.Join(data, "\n")
				ev.More = cr.n > consumed
				if err := fn(ev); err != nil {
					return err
				}
			}
			ev, data = sseEvent{}, nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			ev.Event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(line[len("data:"):], " "))
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if data != nil {
		ev.Data = strings.Join(data, "\n")
		return fn(ev)
	}
	return nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// toolsetOptions is what building a toolset needs from the agent file and the server.
type toolsetOptions struct {
	ConfigPath string              // the agent file ("" for embedded sources)
	WorkingDir string              // the server's --working-dir root (absolute)
	DataDir    string              // per-user data dir for default memory databases
	Getenv     func(string) string // environment, with --env-from-file applied
	Logger     *slog.Logger
	Procs      *procGroups  // where children's process groups are recorded; nil = nowhere
	HTTP       *http.Client // outbound client (remote skills sources)
	CacheDir   string       // --cache-dir ("" = the user cache dir)
	CodeMode   bool         // --code-mode-tools: warned about, not acted on (ignored.go)
}

// sharedImageMin is the length from which an image URL is spliced into encoded JSON by
// reference instead of going through encoding/json: a 15 MiB data URL would otherwise
// be copied two or three times (growing buffer, result, caller's copy) per encoding,
// for the stored row, the user_message event and the provider request each.
const sharedImageMin = 64 << 10

// imageRefs swaps large image URLs for placeholders before encoding and splices the
// URLs back after, so the encoded text refers to the decoded string rather than
// holding copies. Only URLs that encoding/json writes verbatim are swapped (data URLs
// always are), so the result is byte-identical to json.Marshal.
type imageRefs struct {
	prefix string // `"agentd-image-<random>-`, made at the first swap: no user text can predict it
	urls   []string
}

func newImageRefs() *imageRefs { return &imageRefs{} }

// messages returns msgs with large image URLs swapped; msgs are not changed (other
// goroutines may be reading them), copies are made only where a URL is swapped.
func (r *imageRefs) messages(msgs []chatMessage) []chatMessage {
	out := msgs
	for i := range msgs {
		if parts, swapped := r.swap(msgs[i].MultiContent); swapped {
			if len(out) > 0 && &out[0] == &msgs[0] {
				out = slices.Clone(msgs)
			}
			out[i].MultiContent = parts
		}
	}
	return out
}

// parts returns parts with large image URLs swapped, copied only if one is.
func (r *imageRefs) parts(parts []messagePart) []messagePart {
	out, _ := r.swap(parts)
	return out
}

func (r *imageRefs) swap(parts []messagePart) ([]messagePart, bool) {
	out, swapped := parts, false
	for i, p := range parts {
		if p.ImageURL == nil || len(p.ImageURL.URL) < sharedImageMin || !jsonVerbatim(p.ImageURL.URL) {
			continue
		}
		if !swapped {
			out, swapped = slices.Clone(parts), true
		}
		if r.prefix == "" {
			r.prefix = `"agentd-image-` + rand.Text() + "-"
		}
		r.urls = append(r.urls, p.ImageURL.URL)
		token := r.prefix[1:] + strconv.Itoa(len(r.urls)-1)
		out[i].ImageURL = &imageURL{URL: token, Detail: p.ImageURL.Detail}
	}
	return out, swapped
}

// splice returns the pieces of j with the placeholders replaced by their URLs, which
// are referenced, not copied: text and URLs alternate, text first and last.
func (r *imageRefs) splice(j []byte) sharedJSON {
	var out sharedJSON
	for n := range r.urls {
		// Placeholders appear in the order they were made: encoding/json follows
		// field and slice order, as the swap did.
		token := r.prefix + strconv.Itoa(n) + `"`
		at := bytes.Index(j, []byte(token))
		out = append(out, string(j[:at+1]), r.urls[n])
		j = j[at+len(token)-1:] // from the closing quote
	}
	return append(out, string(j))
}

// appendJSON appends j, encoded after r swapped URLs, with the URLs spliced back in.
func (r *imageRefs) appendJSON(b, j []byte) []byte {
	if len(r.urls) == 0 {
		return append(b, j...)
	}
	return r.splice(j).appendTo(b)
}

// jsonString is j, encoded after r swapped URLs, with the URLs spliced back in.
func (r *imageRefs) jsonString(j []byte) string {
	if len(r.urls) == 0 {
		return string(j)
	}
	return r.splice(j).String()
}

// jsonVerbatim says encoding/json writes s between quotes unchanged.
func jsonVerbatim(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// sharedJSON is JSON text in pieces, large image URLs among them by reference.
type sharedJSON []string

func (j sharedJSON) size() int {
	n := 0
	for _, p := range j {
		n += len(p)
	}
	return n
}

// appendTo appends the text to b, growing it once.
func (j sharedJSON) appendTo(b []byte) []byte {
	b = slices.Grow(b, j.size())
	for _, p := range j {
		b = append(b, p...)
	}
	return b
}

// String is the text in one string of exactly its size.
func (j sharedJSON) String() string {
	var sb strings.Builder
	sb.Grow(j.size())
	for _, p := range j {
		sb.WriteString(p)
	}
	return sb.String()
}

// marshalMessage is m as stored: its JSON, large images encoded by reference and the
// result in one string, the form the database driver takes.
func marshalMessage(m *chatMessage) (string, error) {
	refs := newImageRefs()
	mm := *m
	mm.MultiContent = refs.parts(m.MultiContent)
	b, err := json.Marshal(&mm)
	if err != nil {
		return "", err
	}
	return refs.jsonString(b), nil
}
