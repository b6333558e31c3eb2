package main

// tools_openapi.go: the openapi toolset (CONFIG.md §6.3): one tool per operation of an
// OpenAPI 3 document fetched from `url`. Parameters (path, query, header) and the
// properties of a JSON request body (as body_<name>, the reference's convention) make
// up each tool's input schema; local `$ref`s are resolved. GET, HEAD and OPTIONS
// operations are read-only; the others ask for confirmation.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Limits of the openapi toolset (they live here so main.go stays with its owner).
const (
	openapiMaxSpec    = 10 << 20         // the reference's limit on a spec document
	openapiRetryAfter = time.Minute      // a failed spec fetch is not retried sooner
	openapiMaxNodes   = 20000            // schema nodes expanded per document ($ref fan-out guard)
	openapiMaxDepth   = 32               // nesting of one expanded schema
	openapiTimeout    = 30 * time.Second // spec fetch and operation call
	openapiDescMax    = 200              // operation descriptions are cut here, as the reference does
)

// openapiMethods are the operations of a path item, in the order tools are listed.
// TRACE is left out, as the reference does.
var openapiMethods = []string{"get", "put", "post", "delete", "options", "head", "patch"}

// openapiToolset lists the operations of one spec, fetched on first use.
type openapiToolset struct {
	specURL string
	headers [][2]string
	client  *http.Client
	cache   remoteTools
}

// newOpenAPIToolset expands `url` and `headers` (${env.X}, CONFIG.md §8.1); nothing is
// fetched yet.
func newOpenAPIToolset(ts *toolsetConfig, opts toolsetOptions) (*openapiToolset, error) {
	raw := expandEnvTemplate(ts.URL, opts.Getenv)
	if _, err := toolsCheckURL(raw); err != nil {
		return nil, fmt.Errorf("openapi url %q: %v", redactURL(raw), err)
	}
	return &openapiToolset{
		specURL: raw,
		headers: expandHeaders(ts.Headers, opts.Getenv),
		client:  withRedirectPolicy(&http.Client{Timeout: openapiTimeout}),
	}, nil
}

// expandHeaders expands the ${env.X} templates of configured headers, in config order.
func expandHeaders(h *orderedMap[string], getenv func(string) string) [][2]string {
	if h == nil {
		return nil
	}
	out := make([][2]string, 0, len(h.Keys))
	for _, k := range h.Keys {
		out = append(out, [2]string{k, expandEnvTemplate(h.Values[k], getenv)})
	}
	return out
}

func (o *openapiToolset) instruction() string {
	return "## OpenAPI tools\n\nEach of these tools calls one operation of the HTTP API described at " +
		redactURL(o.specURL) + ". Path, query and header parameters are named as in the API; " +
		"fields of a JSON request body are prefixed with body_."
}

func (o *openapiToolset) close() error { return nil }

func (o *openapiToolset) tools(ctx context.Context) ([]tool, error) {
	return o.cache.get(func() ([]tool, error) {
		list, err := o.load(ctx)
		if err != nil {
			return nil, fmt.Errorf("failed to fetch OpenAPI spec from %s: %w", redactURL(o.specURL), err)
		}
		return list, nil
	})
}

// remoteTools keeps the tools a toolset built from a remote document: a success for
// the toolset's life, a failure for openapiRetryAfter, so a dead server does not slow
// every model turn.
type remoteTools struct {
	mu    sync.Mutex
	list  []tool
	ok    bool
	err   error
	errAt time.Time
}

func (r *remoteTools) get(load func() ([]tool, error)) ([]tool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ok {
		return r.list, nil
	}
	if r.err != nil && time.Since(r.errAt) < openapiRetryAfter {
		return nil, r.err
	}
	list, err := load()
	if err != nil {
		r.err, r.errAt = err, time.Now()
		return nil, err
	}
	r.list, r.ok, r.err = list, true, nil
	return list, nil
}

// load fetches, parses and converts the spec.
func (o *openapiToolset) load(ctx context.Context) ([]tool, error) {
	body, err := remoteFetch(ctx, o.client, o.specURL, o.headers, openapiMaxSpec)
	if err != nil {
		return nil, err
	}
	doc, err := openapiParse(o.specURL, body)
	if err != nil {
		return nil, err
	}
	base, err := openapiBaseURL(o.specURL, doc)
	if err != nil {
		return nil, err
	}
	return o.build(doc, base), nil
}

// remoteFetch GETs a JSON document of at most max bytes with the configured headers.
func remoteFetch(ctx context.Context, client *http.Client, u string, headers [][2]string, max int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", toolsUserAgent)
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("unexpected status code %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("document exceeds the %d MB size limit", max>>20)
	}
	return body, nil
}

// openapiParse decodes a JSON document, or a YAML one that our YAML subset accepts,
// and checks it is OpenAPI 3.
func openapiParse(name string, body []byte) (map[string]any, error) {
	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		n, yerr := parseYAML(name, body)
		if yerr != nil {
			return nil, fmt.Errorf("the spec is neither JSON (%v) nor YAML this server reads (%v)", err, yerr)
		}
		if n == nil {
			return nil, errors.New("the spec is empty")
		}
		j, yerr := (&cfgDecoder{file: name}).nodeJSON(n)
		if yerr != nil {
			return nil, yerr
		}
		if err := json.Unmarshal(j, &doc); err != nil {
			return nil, fmt.Errorf("the spec is not a mapping: %v", err)
		}
	}
	v, _ := doc["openapi"].(string)
	if !strings.HasPrefix(v, "3.") {
		return nil, fmt.Errorf("not an OpenAPI 3 document (openapi: %q)", v)
	}
	return doc, nil
}

// openapiBaseURL is the first server's URL (its {variables} set to their defaults,
// a relative one resolved against the spec URL), else the spec URL's origin.
func openapiBaseURL(specURL string, doc map[string]any) (string, error) {
	spec, err := url.Parse(specURL)
	if err != nil {
		return "", err
	}
	servers, _ := doc["servers"].([]any)
	if len(servers) == 0 {
		return spec.Scheme + "://" + spec.Host, nil
	}
	srv, _ := servers[0].(map[string]any)
	s, _ := srv["url"].(string)
	if s == "" {
		return spec.Scheme + "://" + spec.Host, nil
	}
	vars, _ := srv["variables"].(map[string]any)
	for name, v := range vars {
		def, _ := v.(map[string]any)["default"].(string)
		s = strings.ReplaceAll(s, "{"+name+"}", def)
	}
	u, err := spec.Parse(s)
	if err != nil {
		return "", fmt.Errorf("invalid server url %q: %v", s, err)
	}
	if _, err := toolsCheckURL(u.String()); err != nil {
		return "", fmt.Errorf("server url %q: %v", s, err)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// openapiParam is one parameter of an operation.
type openapiParam struct {
	name, in string
}

// openapiOp is what a tool call needs of its operation.
type openapiOp struct {
	method, path, base string
	params             []openapiParam
	headers            [][2]string
	wholeBody          bool // the body schema has no properties: the "body" argument is sent as is
}

// build makes one tool per operation, paths in sorted order (JSON objects have none).
func (o *openapiToolset) build(doc map[string]any, base string) []tool {
	r := &openapiResolver{doc: doc}
	paths, _ := doc["paths"].(map[string]any)
	keys := make([]string, 0, len(paths))
	for k := range paths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var list []tool
	for _, p := range keys {
		item, _ := r.deref(paths[p]).(map[string]any)
		for _, m := range openapiMethods {
			op, ok := item[m].(map[string]any)
			if !ok {
				continue
			}
			list = append(list, o.operation(r, base, p, m, item, op))
		}
	}
	return list
}

// operation converts one operation to a tool.
func (o *openapiToolset) operation(r *openapiResolver, base, p, method string, item, op map[string]any) tool {
	x := &openapiOp{method: strings.ToUpper(method), path: p, base: base, headers: o.headers}
	props := map[string]any{}
	var required []string
	for _, prm := range r.params(item, op) {
		name, _ := prm["name"].(string)
		in, _ := prm["in"].(string)
		if name == "" || (in != "path" && in != "query" && in != "header") {
			continue // cookie parameters are not supported
		}
		x.params = append(x.params, openapiParam{name, in})
		prop := r.paramSchema(prm)
		if d, ok := prm["description"].(string); ok && d != "" {
			prop["description"] = d
		}
		props[name] = prop
		if req, _ := prm["required"].(bool); req || in == "path" {
			required = append(required, name)
		}
	}
	if body := r.bodySchema(op); body != nil {
		if bp, ok := body["properties"].(map[string]any); ok {
			for k, v := range bp {
				props["body_"+k] = v
			}
			if req, ok := body["required"].([]any); ok {
				for _, k := range req {
					if s, ok := k.(string); ok {
						required = append(required, "body_"+s)
					}
				}
			}
		} else {
			x.wholeBody = true
			props["body"] = body
			required = append(required, "body")
		}
	}
	schema := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		slices.Sort(required)
		schema["required"] = slices.Compact(required)
	}
	params, _ := json.Marshal(schema)
	desc := openapiDescription(x.method, p, op)
	readOnly := x.method == "GET" || x.method == "HEAD" || x.method == "OPTIONS"
	return tool{
		def: toolDef{Name: openapiToolName(x.method, p, op), Category: "openapi", Description: desc,
			Parameters: params, Annotations: toolAnnotations{Title: desc, ReadOnlyHint: readOnly}},
		run: x.run,
	}
}

// openapiToolName is the sanitized operationId, else method_path (the reference's rule).
func openapiToolName(method, p string, op map[string]any) string {
	name, _ := op["operationId"].(string)
	if name == "" {
		name = strings.ToLower(method) + "_" + p
	}
	return toolNameSanitize(strings.NewReplacer("{", "", "}", "").Replace(name))
}

// toolNameSanitize turns every character a model API refuses in a tool name into "_",
// collapses runs of "_" and trims them from the ends.
func toolNameSanitize(name string) string {
	name = strings.Map(func(r rune) rune {
		if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, name)
	for strings.Contains(name, "__") {
		name = strings.ReplaceAll(name, "__", "_")
	}
	return strings.Trim(name, "_")
}

// openapiDescription is the summary, else the description cut at 200 bytes, else
// "METHOD path", as the reference does.
func openapiDescription(method, p string, op map[string]any) string {
	if s, _ := op["summary"].(string); s != "" {
		return s
	}
	if d, _ := op["description"].(string); d != "" {
		if len(d) > openapiDescMax {
			return toolsCutRunes(d, openapiDescMax) + "..."
		}
		return d
	}
	return method + " " + p
}

// toolsCutRunes cuts s to at most n bytes without splitting a UTF-8 sequence.
func toolsCutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// run calls the operation: path parameters are escaped into the path, query and header
// parameters go where the spec says, body_ arguments make the JSON body; arguments the
// spec does not name are sent as query parameters, as the reference does.
func (x *openapiOp) run(ctx context.Context, env *toolEnv, raw json.RawMessage) toolResult {
	var args map[string]any
	if err := toolsArgs(raw, &args); err != nil {
		return toolErrorf("%v", err)
	}
	req, err := x.request(ctx, args)
	if err != nil {
		return toolErrorf("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, openapiTimeout)
	defer cancel()
	resp, err := toolsHTTPClient(env).Do(req.WithContext(ctx))
	if err != nil {
		return toolErrorf("request failed: %v", err)
	}
	defer resp.Body.Close()
	data, cut, err := toolsReadBody(resp.Body)
	if err != nil {
		return toolErrorf("failed to read response: %v", err)
	}
	out := toolsTruncate(string(data))
	if cut && !strings.HasSuffix(out, toolsTruncNote) {
		out = "[WARNING: Response truncated at 1MB limit]\n" + out
	}
	if resp.StatusCode >= 400 {
		return toolErrorf("HTTP %d: %s", resp.StatusCode, out)
	}
	if out == "" {
		out = fmt.Sprintf("HTTP %d (empty body)", resp.StatusCode)
	}
	return toolResult{Output: out}
}

// request builds the HTTP request of a call.
func (x *openapiOp) request(ctx context.Context, args map[string]any) (*http.Request, error) {
	p := x.path
	query := url.Values{}
	header := http.Header{}
	body := map[string]any{}
	known := map[string]string{}
	for _, prm := range x.params {
		known[prm.name] = prm.in
	}
	var whole any
	for k, v := range args {
		switch in := known[k]; {
		case in == "path" || (in == "" && strings.Contains(x.path, "{"+k+"}")):
			p = strings.ReplaceAll(p, "{"+k+"}", openapiPathEscape(apiString(v)))
		case in == "header":
			header.Set(k, apiString(v))
		case in == "query" || (in == "" && !strings.HasPrefix(k, "body_") && !(k == "body" && x.wholeBody)):
			openapiAddQuery(query, k, v)
		case k == "body" && x.wholeBody:
			whole = v
		default:
			body[strings.TrimPrefix(k, "body_")] = v
		}
	}
	if i := strings.IndexByte(p, '{'); i >= 0 {
		return nil, fmt.Errorf("missing path parameter %s", p[i:strings.IndexByte(p[i:], '}')+i+1])
	}
	u := x.base + p
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if whole != nil || len(body) > 0 {
		var v any = body
		if whole != nil {
			v = whole
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("failed to marshal request body: %v", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, x.method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("failed to create request: %v", err)
	}
	req.Header = header
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", toolsUserAgent)
	for _, h := range x.headers {
		req.Header.Set(h[0], h[1])
	}
	return req, nil
}

// openapiPathEscape escapes a path parameter so it stays one segment: "/" and, for
// the dot segments, "." are encoded too.
func openapiPathEscape(s string) string {
	if s == "." || s == ".." {
		return strings.Repeat("%2E", len(s))
	}
	return apiEscape(s)
}

// openapiAddQuery adds a query argument; an array becomes repeated parameters (the
// OpenAPI default, form style exploded).
func openapiAddQuery(q url.Values, k string, v any) {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			q.Add(k, apiString(e))
		}
		return
	}
	q.Add(k, apiString(v))
}

// openapiResolver resolves local `$ref`s of one document. Expanded schemas keep only
// the JSON Schema keywords model APIs accept; a reference cycle, too deep a schema or
// too many nodes in all end in an empty schema (any value), never in a loop.
type openapiResolver struct {
	doc   map[string]any
	nodes int
}

// deref follows a chain of `$ref`s to the value they name (nil if it does not exist or
// the chain loops).
func (r *openapiResolver) deref(v any) any {
	for range openapiMaxDepth {
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return v
		}
		v = r.lookup(ref)
	}
	return nil
}

// lookup resolves a local JSON pointer ("#/components/schemas/Pet").
func (r *openapiResolver) lookup(ref string) any {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil // external documents are not fetched
	}
	if f, err := url.PathUnescape(frag); err == nil {
		frag = f
	}
	var cur any = r.doc
	for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
		if tok == "" {
			continue
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		switch c := cur.(type) {
		case map[string]any:
			cur = c[tok]
		case []any:
			i := -1
			fmt.Sscan(tok, &i)
			if i < 0 || i >= len(c) {
				return nil
			}
			cur = c[i]
		default:
			return nil
		}
	}
	return cur
}

// params merges path-item and operation parameters; the operation's win (same name
// and location), as OpenAPI says.
func (r *openapiResolver) params(item, op map[string]any) []map[string]any {
	var out []map[string]any
	idx := map[string]int{}
	for _, src := range []any{item["parameters"], op["parameters"]} {
		list, _ := src.([]any)
		for _, v := range list {
			p, ok := r.deref(v).(map[string]any)
			if !ok {
				continue
			}
			key := fmt.Sprint(p["in"], "/", p["name"])
			if i, dup := idx[key]; dup {
				out[i] = p
				continue
			}
			idx[key] = len(out)
			out = append(out, p)
		}
	}
	return out
}

// paramSchema is a parameter's schema (from `schema`, else its first `content` type),
// a string when it has none.
func (r *openapiResolver) paramSchema(p map[string]any) map[string]any {
	s := p["schema"]
	if s == nil {
		if content, ok := p["content"].(map[string]any); ok {
			for _, c := range content {
				if cm, ok := c.(map[string]any); ok {
					s = cm["schema"]
				}
				break
			}
		}
	}
	out := r.schema(s, nil, 0)
	if len(out) == 0 {
		out["type"] = "string"
	}
	return out
}

// bodySchema is the expanded schema of the operation's application/json request body.
func (r *openapiResolver) bodySchema(op map[string]any) map[string]any {
	rb, ok := r.deref(op["requestBody"]).(map[string]any)
	if !ok {
		return nil
	}
	content, _ := rb["content"].(map[string]any)
	media, ok := content["application/json"].(map[string]any)
	if !ok || media["schema"] == nil {
		return nil
	}
	return r.schema(media["schema"], nil, 0)
}

// openapiSchemaKeys are the keywords kept in tool schemas; OpenAPI-only ones (nullable,
// example, xml, discriminator…) are dropped. Values of the first set are schemas or
// maps/lists of schemas and are expanded; the others are copied.
var (
	openapiSubSchemas = []string{"items", "properties", "additionalProperties", "anyOf", "oneOf", "allOf", "not"}
	openapiPlainKeys  = []string{"type", "description", "enum", "default", "format", "required", "minimum", "maximum",
		"exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "const", "title"}
)

// schema expands v into a self-contained schema; seen holds the refs being expanded
// on the current branch.
func (r *openapiResolver) schema(v any, seen []string, depth int) map[string]any {
	out := map[string]any{}
	r.nodes++
	if depth > openapiMaxDepth || r.nodes > openapiMaxNodes {
		return out
	}
	m, ok := v.(map[string]any)
	if !ok {
		return out
	}
	if ref, ok := m["$ref"].(string); ok {
		if slices.Contains(seen, ref) {
			return out // a cycle: leave this branch open rather than recurse forever
		}
		return r.schema(r.lookup(ref), append(slices.Clip(seen), ref), depth+1)
	}
	for _, k := range openapiPlainKeys {
		if val, ok := m[k]; ok {
			out[k] = val
		}
	}
	for _, k := range openapiSubSchemas {
		switch val := m[k].(type) {
		case map[string]any:
			if k == "properties" {
				props := map[string]any{}
				for name, ps := range val {
					props[name] = r.schema(ps, seen, depth+1)
				}
				out[k] = props
			} else {
				out[k] = r.schema(val, seen, depth+1)
			}
		case []any:
			list := make([]any, 0, len(val))
			for _, e := range val {
				list = append(list, r.schema(e, seen, depth+1))
			}
			out[k] = list
		case bool:
			out[k] = val
		}
	}
	if out["type"] == "array" && out["items"] == nil {
		out["items"] = map[string]any{} // OpenAI refuses an array schema without items
	}
	return out
}

// filteredToolset applies a toolset's `tools:` allow-list and `instruction:` override
// to a toolset that lists its tools only once it has reached a remote (openapi, a2a).
type filteredToolset struct {
	toolset
	cfg *toolsetConfig
}

func (f *filteredToolset) tools(ctx context.Context) ([]tool, error) {
	list, err := f.toolset.tools(ctx)
	if err != nil || f.cfg.Tools == nil {
		return list, err
	}
	return slices.DeleteFunc(slices.Clone(list), func(t tool) bool { return !slices.Contains(f.cfg.Tools, t.def.Name) }), nil
}

func (f *filteredToolset) instruction() string {
	if f.cfg.Instruction != "" {
		return strings.Replace(f.cfg.Instruction, "{ORIGINAL_INSTRUCTIONS}", f.toolset.instruction(), 1)
	}
	return f.toolset.instruction()
}

// newRemoteToolset builds an openapi or a2a toolset (nothing is fetched yet).
func newRemoteToolset(ts *toolsetConfig, opts toolsetOptions) (toolset, error) {
	if opts.Getenv == nil {
		opts.Getenv = func(string) string { return "" }
	}
	var (
		inner toolset
		err   error
	)
	if ts.Type == "openapi" {
		inner, err = newOpenAPIToolset(ts, opts)
	} else {
		inner, err = newA2AToolset(ts, opts)
	}
	if err != nil {
		return nil, err
	}
	return &filteredToolset{toolset: inner, cfg: ts}, nil
}
