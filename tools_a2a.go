package main

// tools_a2a.go: the a2a toolset (CONFIG.md §6.3): a remote agent speaking the Agent2Agent
// protocol (https://a2a-protocol.org, v0.3). Its agent card, fetched from
// <url>/.well-known/agent-card.json, gives one tool per skill (one tool for the agent
// when it lists none), as the reference does. A call sends the model's message with
// JSON-RPC `message/send` and returns the text parts of the answer (a message, or a
// task's artifacts and status message).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	a2aCardPath    = "/.well-known/agent-card.json"
	a2aMaxCard     = 1 << 20
	a2aCallTimeout = 5 * time.Minute // a remote agent runs its own model turns
)

// a2aCard is the part of an agent card the toolset uses.
type a2aCard struct {
	Name        string     `json:"name"`
	Description string     `json:"description"`
	URL         string     `json:"url"`
	Skills      []a2aSkill `json:"skills"`
}

type a2aSkill struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

// a2aToolset is one remote agent; its card is fetched on first use.
type a2aToolset struct {
	base    *url.URL
	name    string
	headers [][2]string
	client  *http.Client
	cache   remoteTools

	mu   sync.Mutex
	card *a2aCard
}

func newA2AToolset(ts *toolsetConfig, opts toolsetOptions) (*a2aToolset, error) {
	u, err := toolsCheckURL(ts.URL)
	if err != nil {
		return nil, fmt.Errorf("a2a url %q: %v", redactURL(ts.URL), err)
	}
	headers := expandHeaders(ts.Headers, opts.Getenv)
	headers = append(headers, expandHeaders(ts.Remote.Headers, opts.Getenv)...)
	return &a2aToolset{base: u, name: ts.Name, headers: headers, client: withRedirectPolicy(&http.Client{})}, nil
}

func (a *a2aToolset) close() error { return nil }

// instruction describes the remote agent and its skills once the card is known.
func (a *a2aToolset) instruction() string {
	a.mu.Lock()
	card := a.card
	a.mu.Unlock()
	if card == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n%s\n", card.Name, card.Description)
	for _, s := range card.Skills {
		fmt.Fprintf(&b, "- **%s**: %s\n", s.Name, s.Description)
	}
	return b.String()
}

func (a *a2aToolset) tools(ctx context.Context) ([]tool, error) {
	return a.cache.get(func() ([]tool, error) {
		card, err := a.fetchCard(ctx)
		if err != nil {
			return nil, fmt.Errorf("failed to fetch A2A agent card from %s: %w", redactURL(a.base.String()), err)
		}
		a.mu.Lock()
		a.card = card
		a.mu.Unlock()
		return a.build(card), nil
	})
}

func (a *a2aToolset) fetchCard(ctx context.Context) (*a2aCard, error) {
	ctx, cancel := context.WithTimeout(ctx, openapiTimeout)
	defer cancel()
	body, err := remoteFetch(ctx, a.client, strings.TrimRight(a.base.String(), "/")+a2aCardPath, a.headers, a2aMaxCard)
	if err != nil {
		return nil, err
	}
	var card a2aCard
	if err := json.Unmarshal(body, &card); err != nil {
		return nil, fmt.Errorf("invalid agent card: %v", err)
	}
	if card.Name == "" {
		return nil, fmt.Errorf("invalid agent card: no name")
	}
	return &card, nil
}

// build makes one tool per skill, named <toolset name>_<skill id> when `name` is set.
func (a *a2aToolset) build(card *a2aCard) []tool {
	skills := card.Skills
	if len(skills) == 0 {
		skills = []a2aSkill{{ID: card.Name, Name: card.Name, Description: card.Description}}
	}
	endpoint, headers := a.endpoint(card)
	params := json.RawMessage(`{"type":"object","properties":{"message":{"type":"string","description":"The message or request to send to the agent"}},"required":["message"]}`)
	var list []tool
	for _, s := range skills {
		name := s.ID
		if name == "" {
			name = s.Name
		}
		if a.name != "" {
			name = a.name + "_" + name
		}
		name = strings.ToLower(toolNameSanitize(name))
		call := &a2aCall{client: a.client, endpoint: endpoint, headers: headers}
		list = append(list, tool{
			def: toolDef{Name: name, Category: "a2a", Parameters: params, Annotations: toolAnnotations{Title: name},
				Description: fmt.Sprintf("Sends a message to the %s agent for its '%s' skill. %s", card.Name, s.Name, s.Description)},
			run: call.run,
		})
	}
	return list
}

// endpoint is where JSON-RPC calls go: the card's url, resolved against the configured
// one. The configured headers go with them only when that is the configured origin.
func (a *a2aToolset) endpoint(card *a2aCard) (string, [][2]string) {
	if card.URL == "" {
		return a.base.String(), a.headers
	}
	u, err := a.base.Parse(card.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return a.base.String(), a.headers
	}
	if u.Scheme != a.base.Scheme || u.Host != a.base.Host {
		return u.String(), nil
	}
	return u.String(), a.headers
}

// a2aCall sends message/send requests to one endpoint.
type a2aCall struct {
	client   *http.Client
	endpoint string
	headers  [][2]string
}

// a2aPart is a message or artifact part; only text parts are read.
type a2aPart struct {
	Kind string `json:"kind"`
	Text string `json:"text"`
}

// a2aResult is a Message (kind "message") or a Task (kind "task").
type a2aResult struct {
	Kind   string    `json:"kind"`
	Parts  []a2aPart `json:"parts"`
	Status struct {
		State   string `json:"state"`
		Message *struct {
			Parts []a2aPart `json:"parts"`
		} `json:"message"`
	} `json:"status"`
	Artifacts []struct {
		Parts []a2aPart `json:"parts"`
	} `json:"artifacts"`
}

func (c *a2aCall) run(ctx context.Context, env *toolEnv, raw json.RawMessage) toolResult {
	var args struct {
		Message string `json:"message"`
	}
	if err := toolsArgs(raw, &args); err != nil {
		return toolErrorf("%v", err)
	}
	res, err := c.send(ctx, args.Message)
	if err != nil {
		return toolErrorf("A2A call failed: %v", err)
	}
	text := a2aText(res)
	switch res.Status.State {
	case "failed", "rejected", "canceled":
		return toolErrorf("A2A task %s: %s", res.Status.State, text)
	}
	if text == "" {
		text = "No response from agent"
	}
	return toolResult{Output: toolsTruncate(text)}
}

// send makes one JSON-RPC message/send call.
func (c *a2aCall) send(ctx context.Context, text string) (*a2aResult, error) {
	msg := map[string]any{
		"kind": "message", "role": "user", "messageId": newUUID(),
		"parts": []a2aPart{{Kind: "text", Text: text}},
	}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": newUUID(), "method": "message/send", "params": map[string]any{"message": msg}})
	ctx, cancel := context.WithTimeout(ctx, a2aCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", toolsUserAgent)
	for _, h := range c.headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, cut, err := toolsReadBody(resp.Body)
	switch {
	case err != nil:
		return nil, err
	case cut:
		return nil, fmt.Errorf("answer exceeds %d bytes", toolsMaxHTTPBody)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, mcpTrim(string(data), 500))
	}
	var rpc struct {
		Result *a2aResult `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &rpc); err != nil {
		return nil, fmt.Errorf("invalid JSON-RPC answer: %v", err)
	}
	if rpc.Error != nil {
		return nil, fmt.Errorf("%s (code %d)", rpc.Error.Message, rpc.Error.Code)
	}
	if rpc.Result == nil {
		return nil, fmt.Errorf("JSON-RPC answer has no result")
	}
	return rpc.Result, nil
}

// a2aText joins the text parts of a message, or of a task's artifacts and then its
// status message.
func a2aText(r *a2aResult) string {
	var b strings.Builder
	add := func(parts []a2aPart) {
		for _, p := range parts {
			if p.Kind == "text" || (p.Kind == "" && p.Text != "") {
				b.WriteString(p.Text)
			}
		}
	}
	add(r.Parts)
	for _, art := range r.Artifacts {
		add(art.Parts)
	}
	if r.Status.Message != nil {
		add(r.Status.Message.Parts)
	}
	return b.String()
}
