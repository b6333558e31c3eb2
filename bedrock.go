package main

// bedrock.go is the Amazon Bedrock Converse stream client (PROVIDERS.md §3.6, §4): the
// request, the application/vnd.amazon.eventstream frames of the answer, AWS Signature
// Version 4 and the AWS credential sources we support (a bearer token, the environment,
// the shared credentials and config files). The HTTP side is provConn's.

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

const (
	bedrockDefaultRegion = "us-east-1"
	bedrockService       = "bedrock" // the SigV4 signing name of bedrock-runtime
	bedrockTokenEnv      = "AWS_BEARER_TOKEN_BEDROCK"
	// bedrockMaxFrame bounds one event-stream message; the service's own limit is 16 MiB.
	bedrockMaxFrame = 16 << 20
)

// bedrockClient streams from POST {endpoint}/model/{modelId}/converse-stream. Without a
// bearer token it signs every request, looking the AWS credentials up each time, so
// rotated keys and edited files take effect at once and a missing credential fails the
// run, not the loading of the agent.
type bedrockClient struct {
	ms     modelSpec
	env    clientEnv
	conn   provConn
	region string
	sign   bool             // SigV4 rather than a bearer token (or the gateway's)
	now    func() time.Time // the signing clock
}

// newBedrockClient resolves the region and endpoint of spec: base_url, else
// provider_opts.endpoint_url / endpoint, else the regional bedrock-runtime host.
func newBedrockClient(spec modelSpec, env clientEnv) (modelClient, error) {
	getenv := modelGetenv(env)
	region := cmp.Or(bedrockOpt(spec, "region"), getenv("AWS_REGION"), getenv("AWS_DEFAULT_REGION"),
		awsProfileRegion(getenv, bedrockOpt(spec, "profile")), bedrockDefaultRegion)
	at := spec // the endpoint depends on the region, so newProvConn gets it as base_url
	at.BaseURL = cmp.Or(spec.BaseURL, bedrockOpt(spec, "endpoint_url"), bedrockOpt(spec, "endpoint"),
		"https://bedrock-runtime."+region+".amazonaws.com")
	conn, err := newProvConn(apiBedrock, at, env, "/model/"+awsEscape(spec.Model, false)+"/converse-stream", nil)
	if err != nil {
		return nil, err
	}
	conn.header.Set("Accept", "application/vnd.amazon.eventstream")
	c := &bedrockClient{ms: spec, env: env, conn: conn, region: region, now: time.Now}
	if env.Gateway == "" && spec.TokenKey == "" && conn.header.Get("Authorization") == "" {
		// No AWS_BEARER_TOKEN_BEDROCK: not a missing key, the request is signed instead.
		c.conn.keyErr, c.sign = nil, true
	}
	return c, nil
}

func (c *bedrockClient) spec() modelSpec { return c.ms }

// bedrockOpt is a string provider_opts value, "" when absent.
func bedrockOpt(spec modelSpec, key string) string {
	s, _ := spec.ProviderOpts[key].(string)
	return strings.TrimSpace(s)
}

// ---- request ----

// bedrockBlock is one content block; exactly one field is set.
type bedrockBlock struct {
	Text             string            `json:"text,omitempty"`
	Image            *bedrockImage     `json:"image,omitempty"`
	ToolUse          *bedrockToolUse   `json:"toolUse,omitempty"`
	ToolResult       *bedrockResult    `json:"toolResult,omitempty"`
	ReasoningContent *bedrockReasoning `json:"reasoningContent,omitempty"`
	CachePoint       *anthropicCache   `json:"cachePoint,omitempty"`
}

type bedrockImage struct {
	Format string `json:"format"`
	Source struct {
		Bytes string `json:"bytes"` // base64, as JSON encodes blobs
	} `json:"source"`
}

type bedrockToolUse struct {
	ToolUseID string          `json:"toolUseId"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
}

type bedrockResult struct {
	ToolUseID string         `json:"toolUseId"`
	Content   []bedrockBlock `json:"content"`
	Status    string         `json:"status,omitempty"`
}

// bedrockReasoning is thinking sent back: its text and signature, or redacted data.
type bedrockReasoning struct {
	ReasoningText *struct {
		Text      string `json:"text"`
		Signature string `json:"signature,omitempty"`
	} `json:"reasoningText,omitempty"`
	RedactedContent string `json:"redactedContent,omitempty"`
}

type bedrockMessage struct {
	Role    string         `json:"role"`
	Content []bedrockBlock `json:"content"`
}

type bedrockToolSpec struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	InputSchema struct {
		JSON json.RawMessage `json:"json"`
	} `json:"inputSchema"`
}

type bedrockTool struct {
	ToolSpec   *bedrockToolSpec `json:"toolSpec,omitempty"`
	CachePoint *anthropicCache  `json:"cachePoint,omitempty"`
}

type bedrockRequest struct {
	Messages        []bedrockMessage `json:"messages"`
	System          []bedrockBlock   `json:"system,omitempty"`
	InferenceConfig struct {
		MaxTokens   int64    `json:"maxTokens,omitempty"`
		Temperature *float64 `json:"temperature,omitempty"`
		TopP        *float64 `json:"topP,omitempty"`
	} `json:"inferenceConfig"`
	ToolConfig *struct {
		Tools      []bedrockTool  `json:"tools"`
		ToolChoice map[string]any `json:"toolChoice"`
	} `json:"toolConfig,omitempty"`
	AdditionalModelRequestFields map[string]any `json:"additionalModelRequestFields,omitempty"`
}

// request builds the Converse body. Messages go through anthropicMessages, whose rules
// (tool results grouped into one user message, missing results filled in, orphans
// dropped) are Bedrock's too, and are then re-shaped block by block.
func (c *bedrockClient) request(req *modelRequest) *bedrockRequest {
	br := &bedrockRequest{}
	claude := strings.Contains(c.ms.Model, "anthropic.claude")
	var msgs []chatMessage
	for _, m := range req.Messages {
		if m.Role != "system" {
			msgs = append(msgs, m)
		} else if text := strings.TrimSpace(m.Content); text != "" {
			br.System = append(br.System, bedrockBlock{Text: text})
		}
	}
	for _, m := range anthropicMessages(msgs) {
		// Converse wants the roles to alternate, so a run of messages of one role (a new
		// question after a failed turn) becomes one message.
		if n := len(br.Messages); n == 0 || br.Messages[n-1].Role != m.Role {
			br.Messages = append(br.Messages, bedrockMessage{Role: m.Role})
		}
		last := &br.Messages[len(br.Messages)-1]
		for _, b := range m.Content {
			last.Content = append(last.Content, bedrockFromAnthropic(b))
		}
	}
	if !req.NoTools && len(req.Tools) > 0 {
		br.ToolConfig = &struct {
			Tools      []bedrockTool  `json:"tools"`
			ToolChoice map[string]any `json:"toolChoice"`
		}{ToolChoice: map[string]any{"auto": map[string]any{}}}
		for _, t := range req.Tools {
			ts := &bedrockToolSpec{Name: t.Name, Description: t.Description}
			ts.InputSchema.JSON = provSchema(t.Parameters)
			br.ToolConfig.Tools = append(br.ToolConfig.Tools, bedrockTool{ToolSpec: ts})
		}
	}
	if bedrockCaches(c.ms.Model) {
		bedrockCachePoints(br)
	}
	br.InferenceConfig.MaxTokens = provMaxTokens(req, c.ms, 0)
	if budget, set, on := anthropicBudget(c.ms.ThinkingBudget); claude && req.Thinking && on && budget >= anthropicMinBudget {
		if br.InferenceConfig.MaxTokens <= budget {
			br.InferenceConfig.MaxTokens = budget + anthropicDefaultBudget
		}
		br.AdditionalModelRequestFields = map[string]any{"thinking": map[string]any{"type": "enabled", "budget_tokens": budget}}
		if !set || provBool(c.ms.ProviderOpts["interleaved_thinking"]) {
			br.AdditionalModelRequestFields["anthropic_beta"] = []string{anthropicBetaInterleaved}
		}
	} else {
		// Thinking forbids sampling parameters, so they only go out without it.
		br.InferenceConfig.Temperature, br.InferenceConfig.TopP = c.ms.Temperature, c.ms.TopP
	}
	return br
}

// bedrockCaches reports whether the model has a known cache price, the reference's rule
// for sending cache points (it asks models.dev): models that do not cache reject them.
func bedrockCaches(model string) bool {
	p := priceOf(model)
	return p.cacheRead > 0 || p.cacheWrite > 0
}

// bedrockBaseModel drops the "<geo>.<vendor>." prefix of a Bedrock model id (the dots
// before the first dash): global.anthropic.claude-sonnet-4-5 → claude-sonnet-4-5.
// Other model names have no dot before their first dash and come back unchanged.
func bedrockBaseModel(model string) string {
	if i := strings.LastIndexByte(model[:strings.IndexByte(model+"-", '-')], '.'); i >= 0 {
		return model[i+1:]
	}
	return model
}

// bedrockCachePoints appends cache points after the system prompt, the tools and the
// last two messages (at most four, the API's limit).
func bedrockCachePoints(br *bedrockRequest) {
	point := bedrockBlock{CachePoint: &anthropicCache{"default"}}
	if len(br.System) > 0 {
		br.System = append(br.System, point)
	}
	if br.ToolConfig != nil {
		br.ToolConfig.Tools = append(br.ToolConfig.Tools, bedrockTool{CachePoint: point.CachePoint})
	}
	for i := max(0, len(br.Messages)-2); i < len(br.Messages); i++ {
		br.Messages[i].Content = append(br.Messages[i].Content, point)
	}
}

// bedrockFromAnthropic re-shapes one block built by anthropicMessages.
func bedrockFromAnthropic(b anthropicBlock) bedrockBlock {
	switch b.Type {
	case "thinking":
		r := &bedrockReasoning{ReasoningText: &struct {
			Text      string `json:"text"`
			Signature string `json:"signature,omitempty"`
		}{b.Thinking, b.Signature}}
		return bedrockBlock{ReasoningContent: r}
	case "redacted_thinking":
		return bedrockBlock{ReasoningContent: &bedrockReasoning{RedactedContent: b.Data}}
	case "tool_use":
		return bedrockBlock{ToolUse: &bedrockToolUse{ToolUseID: b.ID, Name: b.Name, Input: b.Input}}
	case "tool_result":
		r := &bedrockResult{ToolUseID: b.ToolUseID}
		for _, c := range b.Content {
			r.Content = append(r.Content, bedrockFromAnthropic(c))
		}
		if len(r.Content) == 0 { // blank text blocks are rejected
			r.Content = []bedrockBlock{{Text: "(no output)"}}
		}
		if b.IsError != nil && *b.IsError {
			r.Status = "error"
		}
		return bedrockBlock{ToolResult: r}
	case "image":
		if b.Source.Type == "base64" {
			img := &bedrockImage{Format: strings.TrimPrefix(b.Source.MediaType, "image/")}
			img.Source.Bytes = b.Source.Data
			return bedrockBlock{Image: img}
		}
		// Converse takes image bytes only; a URL is passed on as text.
		return bedrockBlock{Text: "[image: " + b.Source.URL + "]"}
	}
	return bedrockBlock{Text: b.Text}
}

// ---- stream ----

// stream implements modelClient.
func (c *bedrockClient) stream(ctx context.Context, req *modelRequest, emit func(modelEvent)) error {
	body, err := marshalRequest(req, c.request)
	if err != nil {
		return fmt.Errorf("bedrock: encoding request: %w", err)
	}
	conn := c.conn
	if c.sign {
		conn.header = c.conn.header.Clone()
		if err := c.signRequest(conn.header, body); err != nil {
			return fmt.Errorf("model %s: %w", modelName(c.ms), err)
		}
	}
	rc, err := conn.post(ctx, body)
	if err != nil {
		return err
	}
	defer rc.Close()
	d := &bedrockDecoder{model: c.ms.Model, emit: emit}
	err = readEventStream(rc, d.handle)
	if err == nil {
		err = d.finish()
	}
	if errors.Is(err, errProvDone) {
		return nil
	}
	return conn.streamError(ctx, err, d.emitted)
}

// bedrockDecoder turns Converse stream events into modelEvents.
type bedrockDecoder struct {
	model   string
	emit    func(modelEvent)
	emitted bool
	tools   map[int]string // contentBlockIndex → toolUseId
	sig     string         // signature of the reasoning block being streamed
	stop    string         // from messageStop, held until metadata brings the usage
}

// bedrockEvent is the union of the event payloads.
type bedrockEvent struct {
	ContentBlockIndex int `json:"contentBlockIndex"`
	Start             struct {
		ToolUse *struct {
			ToolUseID string `json:"toolUseId"`
			Name      string `json:"name"`
		} `json:"toolUse"`
	} `json:"start"`
	Delta struct {
		Text    *string `json:"text"`
		ToolUse *struct {
			Input string `json:"input"`
		} `json:"toolUse"`
		ReasoningContent *struct {
			Text            string `json:"text"`
			Signature       string `json:"signature"`
			RedactedContent string `json:"redactedContent"`
		} `json:"reasoningContent"`
	} `json:"delta"`
	StopReason string `json:"stopReason"`
	Usage      *struct {
		InputTokens           int64 `json:"inputTokens"`
		OutputTokens          int64 `json:"outputTokens"`
		CacheReadInputTokens  int64 `json:"cacheReadInputTokens"`
		CacheWriteInputTokens int64 `json:"cacheWriteInputTokens"`
	} `json:"usage"`
	Message string `json:"message"` // exceptions
}

func (d *bedrockDecoder) send(e modelEvent) {
	d.emitted = true
	e.Model = d.model
	d.emit(e)
}

// handle processes one event-stream message.
func (d *bedrockDecoder) handle(m esMessage) error {
	if m.Headers[":message-type"] == "error" { // headers only, no payload
		return &modelError{Msg: "stream error: " + m.Headers[":error-code"] + ": " + m.Headers[":error-message"]}
	}
	var e bedrockEvent
	if err := json.Unmarshal(m.Payload, &e); err != nil {
		return fmt.Errorf("decoding %s: %w", cmp.Or(m.Headers[":event-type"], m.Headers[":exception-type"], "event"), err)
	}
	if m.Headers[":message-type"] == "exception" {
		return bedrockException(m.Headers[":exception-type"], e.Message)
	}
	switch m.Headers[":event-type"] {
	case "contentBlockStart":
		if tu := e.Start.ToolUse; tu != nil {
			if d.tools == nil {
				d.tools = map[int]string{}
			}
			d.tools[e.ContentBlockIndex] = tu.ToolUseID
			d.send(modelEvent{Kind: evToolCallStart, ToolID: tu.ToolUseID, ToolName: tu.Name})
		}
	case "contentBlockDelta":
		d.delta(e)
	case "contentBlockStop":
		if d.sig != "" {
			// One event with the whole signature, as the Anthropic client sends it.
			d.send(modelEvent{Kind: evReasoning, Signature: d.sig})
			d.sig = ""
		}
	case "messageStop":
		d.stop = bedrockStopReason(e.StopReason)
	case "metadata":
		if e.Usage != nil {
			d.send(modelEvent{Kind: evUsage, Usage: &messageUsage{InputTokens: e.Usage.InputTokens,
				OutputTokens: e.Usage.OutputTokens, CachedInputTokens: e.Usage.CacheReadInputTokens,
				CacheWriteTokens: e.Usage.CacheWriteInputTokens}})
		}
		if d.stop != "" {
			return d.finish()
		}
	}
	return nil
}

// delta emits one contentBlockDelta.
func (d *bedrockDecoder) delta(e bedrockEvent) {
	switch dl := e.Delta; {
	case dl.Text != nil && *dl.Text != "":
		d.send(modelEvent{Kind: evText, Text: *dl.Text})
	case dl.ToolUse != nil && dl.ToolUse.Input != "":
		d.send(modelEvent{Kind: evToolCallArgs, ToolID: d.tools[e.ContentBlockIndex], Text: dl.ToolUse.Input})
	case dl.ReasoningContent != nil:
		r := dl.ReasoningContent
		d.sig += r.Signature
		if r.Text != "" {
			d.send(modelEvent{Kind: evReasoning, Text: r.Text})
		}
		if r.RedactedContent != "" {
			// Kept as a signature without text, which goes back as redactedContent.
			d.send(modelEvent{Kind: evReasoning, Signature: r.RedactedContent})
		}
	}
}

// finish emits the stop held since messageStop. metadata normally follows messageStop;
// a stream that ends between the two still ends well, one without messageStop does not.
func (d *bedrockDecoder) finish() error {
	if d.stop == "" {
		return fmt.Errorf("no messageStop: %w", errStreamCut)
	}
	d.send(modelEvent{Kind: evStop, StopReason: d.stop})
	return errProvDone
}

// bedrockStopReason maps Converse stop reasons to the runtime's.
func bedrockStopReason(s string) string {
	switch s {
	case "tool_use":
		return "tool_calls"
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "guardrail_intervened", "content_filtered":
		return "content_filter"
	}
	return "stop"
}

// bedrockException turns an exception message into a modelError whose Status is the
// one the same exception has as an HTTP answer, so retries treat both alike.
func bedrockException(typ, msg string) error {
	status := map[string]int{
		"validationException": 400, "accessDeniedException": 403, "resourceNotFoundException": 404,
		"throttlingException": 429, "modelStreamErrorException": 424, "internalServerException": 500,
		"serviceUnavailableException": 503, "modelTimeoutException": 408,
	}[typ]
	return &modelError{Status: status, Msg: "stream error: " + cmp.Or(typ, "exception") + ": " + msg}
}

// ---- event stream framing ----

// esMessage is one application/vnd.amazon.eventstream message. Header values of the
// string and bytes types are kept; the service sends nothing else we need.
type esMessage struct {
	Headers map[string]string
	Payload []byte
}

// readEventStream calls fn for every message of r until a clean EOF, fn's error, or a
// malformed message (bad length or CRC). Each message is: total length, headers length
// and a CRC32 of those 8 bytes; the headers; the payload; a CRC32 of all before it.
func readEventStream(r io.Reader, fn func(esMessage) error) error {
	br := bufio.NewReader(r)
	var prelude [12]byte
	for {
		if _, err := io.ReadFull(br, prelude[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		total := binary.BigEndian.Uint32(prelude[0:4])
		hlen := binary.BigEndian.Uint32(prelude[4:8])
		if crc32.ChecksumIEEE(prelude[:8]) != binary.BigEndian.Uint32(prelude[8:12]) {
			return errors.New("event stream: prelude CRC mismatch")
		}
		if total < 16 || total > bedrockMaxFrame || hlen > total-16 {
			return fmt.Errorf("event stream: bad message length %d (headers %d)", total, hlen)
		}
		msg := make([]byte, total)
		copy(msg, prelude[:])
		if _, err := io.ReadFull(br, msg[12:]); err != nil {
			return fmt.Errorf("event stream: %w", noEOF(err))
		}
		if crc32.ChecksumIEEE(msg[:total-4]) != binary.BigEndian.Uint32(msg[total-4:]) {
			return errors.New("event stream: message CRC mismatch")
		}
		headers, err := esHeaders(msg[12 : 12+hlen])
		if err != nil {
			return err
		}
		if err := fn(esMessage{Headers: headers, Payload: msg[12+hlen : total-4]}); err != nil {
			return err
		}
	}
}

// noEOF reports a stream that ends inside a message as unexpected.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// esHeaders decodes the header block: name length (1 byte), name, value type (1 byte),
// value. Fixed-size values are skipped; strings and byte arrays have a 2-byte length.
func esHeaders(b []byte) (map[string]string, error) {
	h := map[string]string{}
	fixed := map[byte]int{0: 0, 1: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16}
	for len(b) > 0 {
		n := int(b[0])
		if len(b) < 1+n+1 {
			return nil, errors.New("event stream: truncated header")
		}
		name, typ := string(b[1:1+n]), b[1+n]
		b = b[2+n:]
		if size, ok := fixed[typ]; ok {
			if len(b) < size {
				return nil, errors.New("event stream: truncated header value")
			}
			b = b[size:]
			continue
		}
		if typ != 6 && typ != 7 {
			return nil, fmt.Errorf("event stream: header %q has unknown type %d", name, typ)
		}
		if len(b) < 2 || len(b) < 2+int(binary.BigEndian.Uint16(b)) {
			return nil, errors.New("event stream: truncated header value")
		}
		size := int(binary.BigEndian.Uint16(b))
		h[name] = string(b[2 : 2+size])
		b = b[2+size:]
	}
	return h, nil
}

// ---- authentication ----

// signRequest signs with SigV4 (service bedrock) and the AWS credentials found now.
func (c *bedrockClient) signRequest(h http.Header, body splicedJSON) error {
	getenv := modelGetenv(c.env)
	if bedrockOpt(c.ms, "role_arn") != "" {
		return errors.New("provider_opts.role_arn (STS AssumeRole) is not supported; use access keys, a profile with keys, or " + bedrockTokenEnv)
	}
	cred, err := awsCredentials(getenv, bedrockOpt(c.ms, "profile"))
	if err != nil {
		return err
	}
	u, err := url.Parse(c.conn.url)
	if err != nil {
		return err
	}
	sigv4Sign("POST", u, h, body, cred, c.region, bedrockService, c.now())
	return nil
}

// awsCreds are static AWS credentials.
type awsCreds struct {
	AccessKey, SecretKey, SessionToken string
}

// awsCredentials follows the SDK's default chain as far as the standard library can:
// the environment, then the profile (profile, else AWS_PROFILE, else "default") in the
// shared credentials file, then in the shared config file. Profiles that need another
// program or service (SSO, credential_process, role_arn) are reported, not skipped.
func awsCredentials(getenv func(string) string, profile string) (awsCreds, error) {
	if id, secret := getenv("AWS_ACCESS_KEY_ID"), getenv("AWS_SECRET_ACCESS_KEY"); id != "" && secret != "" {
		return awsCreds{id, secret, getenv("AWS_SESSION_TOKEN")}, nil
	}
	profile = cmp.Or(profile, getenv("AWS_PROFILE"), "default")
	for _, sec := range []map[string]string{
		awsINISection(awsFile(getenv, "AWS_SHARED_CREDENTIALS_FILE", "credentials"), profile),
		awsConfigSection(getenv, profile),
	} {
		if sec["aws_access_key_id"] != "" && sec["aws_secret_access_key"] != "" {
			return awsCreds{sec["aws_access_key_id"], sec["aws_secret_access_key"], sec["aws_session_token"]}, nil
		}
		for _, k := range []string{"role_arn", "credential_process", "sso_session", "sso_start_url", "web_identity_token_file"} {
			if sec[k] != "" {
				return awsCreds{}, fmt.Errorf("AWS profile %q uses %s, which is not supported; give it access keys or set %s", profile, k, bedrockTokenEnv)
			}
		}
	}
	if getenv("AWS_ROLE_ARN") != "" {
		return awsCreds{}, fmt.Errorf("AWS_ROLE_ARN (web identity through STS) is not supported; set access keys or %s", bedrockTokenEnv)
	}
	return awsCreds{}, fmt.Errorf("no AWS credentials: set %s, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile with keys in ~/.aws/credentials (profile %q)", bedrockTokenEnv, profile)
}

// awsProfileRegion is the region of the profile in the shared config file, "" if none.
func awsProfileRegion(getenv func(string) string, profile string) string {
	return awsConfigSection(getenv, cmp.Or(profile, getenv("AWS_PROFILE"), "default"))["region"]
}

// awsConfigSection is the profile's section of the shared config file, where profiles
// other than default are named "profile NAME".
func awsConfigSection(getenv func(string) string, profile string) map[string]string {
	name := profile
	if profile != "default" {
		name = "profile " + profile
	}
	return awsINISection(awsFile(getenv, "AWS_CONFIG_FILE", "config"), name)
}

// awsFile is the path in envName, else ~/.aws/<name>; "" when HOME is unknown, so that a
// server with a scrubbed environment does not guess.
func awsFile(getenv func(string) string, envName, name string) string {
	if p := getenv(envName); p != "" {
		return p
	}
	if home := getenv("HOME"); home != "" {
		return filepath.Join(home, ".aws", name)
	}
	return ""
}

// awsINISection reads one [section] of an AWS INI file: key = value lines, # and ;
// comments, indented lines (sub-properties) skipped. A missing file is an empty section.
func awsINISection(path, section string) map[string]string {
	out := map[string]string{}
	if path == "" {
		return out
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' {
			continue
		}
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			name := strings.TrimSpace(strings.Trim(line, "[]"))
			in = strings.Join(strings.Fields(name), " ") == section
		case in:
			if k, v, ok := strings.Cut(line, "="); ok {
				out[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
			}
		}
	}
	return out
}

// sigv4Sign adds X-Amz-Date, X-Amz-Security-Token (with a session token) and the
// Authorization header of AWS Signature Version 4 to h, for a request with this method,
// URL and body. Signed are the host, Content-Type and every X-Amz-* header.
func sigv4Sign(method string, u *url.URL, h http.Header, body splicedJSON, cred awsCreds, region, service string, now time.Time) {
	amzDate := now.UTC().Format("20060102T150405Z")
	h.Set("X-Amz-Date", amzDate)
	if cred.SessionToken != "" {
		h.Set("X-Amz-Security-Token", cred.SessionToken)
	}
	signed := map[string]string{"host": u.Host}
	for k, v := range h {
		if lk := strings.ToLower(k); lk == "content-type" || strings.HasPrefix(lk, "x-amz-") {
			signed[lk] = strings.Join(strings.Fields(strings.Join(v, ",")), " ")
		}
	}
	names := make([]string, 0, len(signed))
	for k := range signed {
		names = append(names, k)
	}
	sort.Strings(names)
	var canon strings.Builder
	fmt.Fprintf(&canon, "%s\n%s\n%s\n", method, awsEscape(u.EscapedPath(), true), awsCanonicalQuery(u.Query()))
	for _, k := range names {
		fmt.Fprintf(&canon, "%s:%s\n", k, signed[k])
	}
	sum := sha256.New() // hashed as it is sent: large images are not copied for it
	body.WriteTo(sum)
	fmt.Fprintf(&canon, "\n%s\n%s", strings.Join(names, ";"), hex.EncodeToString(sum.Sum(nil)))

	scope := amzDate[:8] + "/" + region + "/" + service + "/aws4_request"
	creq := sha256.Sum256([]byte(canon.String()))
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(creq[:])
	key := []byte("AWS4" + cred.SecretKey)
	for _, part := range []string{amzDate[:8], region, service, "aws4_request"} {
		key = hmacSHA256(key, part)
	}
	h.Set("Authorization", fmt.Sprintf("AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		cred.AccessKey, scope, strings.Join(names, ";"), hex.EncodeToString(hmacSHA256(key, toSign))))
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// awsCanonicalQuery sorts the parameters by name, then value, each URI-encoded.
func awsCanonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, awsEscape(k, false)+"="+awsEscape(v, false))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

// awsEscape is SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ (and / when
// keepSlash) as %XX. Applied to an already escaped path it escapes it a second time,
// which is what every service but S3 expects.
func awsEscape(s string, keepSlash bool) string {
	var b bytes.Buffer
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9',
			c == '-', c == '_', c == '.', c == '~', c == '/' && keepSlash:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
