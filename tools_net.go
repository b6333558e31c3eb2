package main

// tools_net.go: the fetch and api toolsets (CONFIG.md §6.3). Both go out through
// env.HTTP, accept only http and https, read at most toolsMaxHTTPBody bytes and time
// out.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// toolsUserAgent identifies our outbound requests (and is the name robots.txt rules
// can address).
const toolsUserAgent = "agentd"

// toolsHTTPClient is the client of a call: the session's, else a default one.
func toolsHTTPClient(env *toolEnv) *http.Client {
	if env != nil && env.HTTP != nil {
		return withRedirectPolicy(env.HTTP)
	}
	return withRedirectPolicy(http.DefaultClient)
}

// toolsCheckURL accepts only absolute http and https URLs.
func toolsCheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("unsupported URL scheme %q: only http and https are allowed", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("URL has no host")
	}
	return u, nil
}

// toolsReadBody reads at most toolsMaxHTTPBody bytes and reports whether the body
// was longer.
func toolsReadBody(r io.Reader) ([]byte, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, toolsMaxHTTPBody+1))
	if len(b) > toolsMaxHTTPBody {
		return b[:toolsMaxHTTPBody], true, err
	}
	return b, false, err
}

// --- fetch ---

// fetchToolset fetches web pages for the model.
type fetchToolset struct{ timeout time.Duration }

// newFetchToolset returns the fetch tool.
func newFetchToolset(ts *toolsetConfig) *builtinToolset {
	f := &fetchToolset{timeout: toolsHTTPTimeout * time.Second}
	if ts.Timeout > 0 {
		f.timeout = time.Duration(ts.Timeout) * time.Second
	}
	return &builtinToolset{
		list: []tool{{def: toolsDef("fetch", "fetch", "Fetch URLs",
			"Fetch one or more http(s) URLs and return their content as text, markdown or raw HTML. Sites' robots.txt rules are respected and bodies are cut at 1 MB.", false), run: toolsRun(f.run)}},
		instr: "Use the fetch tool to read web pages and HTTP APIs. Prefer format markdown for pages you need to read.",
	}
}

// fetchResult is one URL's outcome in the multi-URL JSON answer.
type fetchResult struct {
	URL           string `json:"url"`
	StatusCode    int    `json:"statusCode"`
	Status        string `json:"status"`
	ContentType   string `json:"contentType"`
	ContentLength int    `json:"contentLength"`
	Body          string `json:"body"`
	Error         string `json:"error,omitempty"`
}

func (f *fetchToolset) run(ctx context.Context, env *toolEnv, a struct {
	URLs    []string `json:"urls"`
	Format  string   `json:"format"`
	Timeout int      `json:"timeout"`
}) toolResult {
	if len(a.URLs) == 0 {
		return toolErrorf("at least one URL is required")
	}
	switch a.Format {
	case "":
		a.Format = "markdown"
	case "text", "markdown", "html":
	default:
		return toolErrorf("invalid format %q: use text, markdown or html", a.Format)
	}
	timeout := f.timeout
	if a.Timeout > 0 {
		timeout = time.Duration(min(a.Timeout, 300)) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := toolsHTTPClient(env)
	var results []fetchResult
	for _, u := range a.URLs {
		results = append(results, f.fetch(ctx, client, u, a.Format))
	}
	if len(results) == 1 {
		r := results[0]
		if r.Error != "" {
			return toolErrorf("Error fetching %s: %s", r.URL, r.Error)
		}
		return toolResult{Output: fmt.Sprintf("Successfully fetched %s (Status: %d, Length: %d bytes):\n\n%s", r.URL, r.StatusCode, r.ContentLength, r.Body)}
	}
	return toolsJSON(results)
}

// fetch gets one URL after checking its scheme and the site's robots.txt.
func (f *fetchToolset) fetch(ctx context.Context, client *http.Client, raw, format string) fetchResult {
	res := fetchResult{URL: raw}
	u, err := toolsCheckURL(raw)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	if ok, err := fetchRobotsAllow(ctx, client, u); err != nil {
		res.Error = "checking robots.txt: " + err.Error()
		return res
	} else if !ok {
		res.Error = "URL is disallowed by the site's robots.txt"
		return res
	}
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	req.Header.Set("User-Agent", toolsUserAgent)
	resp, err := client.Do(req)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	body, cut, err := toolsReadBody(resp.Body)
	if err != nil {
		res.Error = "reading body: " + err.Error()
		return res
	}
	res.StatusCode, res.Status = resp.StatusCode, resp.Status
	res.ContentType = resp.Header.Get("Content-Type")
	text := string(body)
	if format != "html" && strings.Contains(strings.ToLower(res.ContentType), "html") {
		text = fetchHTMLConvert(text, format == "markdown")
	}
	if cut {
		text += "\n\n[Content truncated: exceeded 1 MB limit]"
	}
	res.Body, res.ContentLength = text, len(text)
	return res
}

// fetchRobotsAllow reads the site's robots.txt and applies the rules of the group for
// our user agent, else the `*` group. A missing or unreadable robots.txt (any status
// but 200) allows everything, as the reference does; a transport error is an error.
func fetchRobotsAllow(ctx context.Context, client *http.Client, u *url.URL) (bool, error) {
	robots := &url.URL{Scheme: u.Scheme, Host: u.Host, Path: "/robots.txt"}
	req, err := http.NewRequestWithContext(ctx, "GET", robots.String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("User-Agent", toolsUserAgent)
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return true, nil
	}
	body, _, err := toolsReadBody(resp.Body)
	if err != nil {
		return false, err
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if u.RawQuery != "" {
		p += "?" + u.RawQuery
	}
	return robotsAllowed(string(body), toolsUserAgent, p), nil
}

// robotsAllowed evaluates robots.txt text for agent and path: the longest matching
// Allow/Disallow prefix wins, Allow on a tie (RFC 9309 §2.2.2). Wildcards `*` and
// the `$` anchor are supported.
func robotsAllowed(text, agent, path string) bool {
	type rule struct {
		allow bool
		pat   string
	}
	groups := map[string][]rule{}
	var current []string
	inRules := false
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key, val = strings.ToLower(strings.TrimSpace(key)), strings.TrimSpace(val)
		switch key {
		case "user-agent":
			if inRules {
				current, inRules = nil, false
			}
			current = append(current, strings.ToLower(val))
		case "allow", "disallow":
			inRules = true
			if val == "" {
				continue // "Disallow:" with no path allows everything
			}
			for _, ua := range current {
				groups[ua] = append(groups[ua], rule{key == "allow", val})
			}
		}
	}
	rules, ok := groups[strings.ToLower(agent)]
	if !ok {
		rules = groups["*"]
	}
	best, allowed := -1, true
	for _, r := range rules {
		if robotsMatch(r.pat, path) && (len(r.pat) > best || len(r.pat) == best && r.allow) {
			best, allowed = len(r.pat), r.allow
		}
	}
	return allowed
}

// robotsMatch matches a robots.txt path pattern (prefix, `*`, trailing `$`).
func robotsMatch(pat, path string) bool {
	var re strings.Builder
	re.WriteString("^")
	anchored := strings.HasSuffix(pat, "$")
	pat = strings.TrimSuffix(pat, "$")
	for i, part := range strings.Split(pat, "*") {
		if i > 0 {
			re.WriteString(".*")
		}
		re.WriteString(regexp.QuoteMeta(part))
	}
	if anchored {
		re.WriteString("$")
	}
	m, err := regexp.MatchString(re.String(), path)
	return err == nil && m
}

// Regular expressions and tables of the HTML converter.
var (
	// fetchSkipped are elements dropped with their content.
	fetchSkipped = []string{"script", "style", "noscript", "template", "svg", "head"}
	fetchHrefRE  = regexp.MustCompile(`(?is)\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))`)
)

// fetchHTMLConvert turns HTML into readable text, with basic markdown (headings,
// links, lists, emphasis, code) when markdown is set. It is deliberately simple: a
// tag scanner, not a full HTML parser.
func fetchHTMLConvert(src string, markdown bool) string {
	h := &htmlText{markdown: markdown}
	// A hand-written scanner: regular expressions with submatches were ~100× slower.
	lower := fetchASCIILower(src)
	last, i := 0, 0
	for {
		j := strings.IndexByte(src[i:], '<')
		if j < 0 {
			break
		}
		i += j
		if strings.HasPrefix(src[i:], "<!--") {
			h.text(src[last:i])
			end := strings.Index(src[i+4:], "-->")
			if end < 0 {
				last = len(src)
				break
			}
			i += 4 + end + 3
			last = i
			continue
		}
		k := i + 1
		closing := k < len(src) && src[k] == '/'
		if closing {
			k++
		}
		n := k
		for n < len(src) && (fetchIsAlpha(src[n]) || n > k && '0' <= src[n] && src[n] <= '9') {
			n++
		}
		gt := strings.IndexByte(src[n:], '>')
		if n == k || gt < 0 || strings.IndexByte(src[n:n+gt], '<') >= 0 {
			i++ // not a tag (or a broken one): the '<' stays text
			continue
		}
		h.text(src[last:i])
		name := lower[k:n]
		i = n + gt + 1
		last = i
		if !closing && slices.Contains(fetchSkipped, name) {
			i = fetchSkipElement(lower, i, name)
			last = i
			continue
		}
		h.tag(name, src[n:n+gt], closing)
	}
	h.text(src[last:])
	return h.result()
}

// htmlText is the output of fetchHTMLConvert as it grows.
type htmlText struct {
	b        strings.Builder
	markdown bool
	pre      int      // how many <pre> elements are open: whitespace is kept inside
	hrefs    []string // the href of each open <a> ("" when it has none)
}

// text adds the text between tags, unescaped, its whitespace collapsed outside <pre>.
func (h *htmlText) text(s string) {
	s = html.UnescapeString(s)
	if h.pre == 0 {
		s = fetchCollapse(s)
	}
	h.b.WriteString(s)
}

// md adds markdown syntax, when markdown is wanted.
func (h *htmlText) md(s string) {
	if h.markdown {
		h.b.WriteString(s)
	}
}

// tag adds what the start or end tag of element name (with attributes attrs) shows.
func (h *htmlText) tag(name, attrs string, closing bool) {
	switch name {
	case "h1", "h2", "h3", "h4", "h5", "h6":
		h.b.WriteString("\n\n")
		if !closing {
			h.md(strings.Repeat("#", int(name[1]-'0')) + " ")
		}
	case "p", "div", "section", "article", "header", "footer", "main", "nav", "table", "ul", "ol", "blockquote", "form":
		h.b.WriteString("\n\n")
	case "br", "tr", "hr":
		h.b.WriteString("\n")
	case "li":
		if !closing {
			h.b.WriteString("\n")
			h.md("- ")
		}
	case "td", "th":
		if closing {
			h.b.WriteString(" ")
		}
	case "strong", "b":
		h.md("**")
	case "em", "i":
		h.md("_")
	case "code":
		if h.pre == 0 {
			h.md("`")
		}
	case "pre":
		if closing {
			h.pre = max(h.pre-1, 0)
			h.md("\n```")
			h.b.WriteString("\n\n")
		} else {
			h.pre++
			h.b.WriteString("\n\n")
			h.md("```\n")
		}
	case "a":
		if h.markdown {
			h.link(attrs, closing)
		}
	}
}

// link opens or closes a markdown link; an <a> without href shows as plain text.
func (h *htmlText) link(attrs string, closing bool) {
	if closing {
		if n := len(h.hrefs); n > 0 {
			if href := h.hrefs[n-1]; href != "" {
				h.b.WriteString("](" + href + ")")
			}
			h.hrefs = h.hrefs[:n-1]
		}
		return
	}
	href := ""
	if hm := fetchHrefRE.FindStringSubmatch(attrs); hm != nil {
		href = html.UnescapeString(hm[1] + hm[2] + hm[3])
	}
	h.hrefs = append(h.hrefs, href)
	if href != "" {
		h.b.WriteString("[")
	}
}

// result is the text with trailing spaces trimmed from its lines, leading ones too
// unless a <pre> was left open, and at most one blank line in a row.
func (h *htmlText) result() string {
	lines := strings.Split(h.b.String(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
		if h.pre == 0 {
			lines[i] = strings.TrimLeft(lines[i], " ")
		}
	}
	out := lines[:0]
	for _, l := range lines {
		if l == "" && len(out) > 0 && out[len(out)-1] == "" {
			continue
		}
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}

// fetchSkipElement returns the offset just past the end tag of the element name
// whose content starts at i, or len(lower) when it has none. As in HTML, "</name"
// only ends the element when followed by whitespace, '/' or '>'.
func fetchSkipElement(lower string, i int, name string) int {
	for {
		end := strings.Index(lower[i:], "</"+name)
		if end < 0 {
			return len(lower)
		}
		i += end + 2 + len(name)
		if i < len(lower) && strings.IndexByte(" \t\r\n\f/>", lower[i]) < 0 {
			continue
		}
		gt := strings.IndexByte(lower[i:], '>')
		if gt < 0 {
			return len(lower)
		}
		return i + gt + 1
	}
}

// fetchCollapse replaces every run of HTML whitespace with one space.
func fetchCollapse(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case ' ', '\t', '\r', '\n', '\f':
			if !space {
				b.WriteByte(' ')
			}
			space = true
		default:
			b.WriteByte(c)
			space = false
		}
	}
	return b.String()
}

// fetchIsAlpha reports whether c is an ASCII letter.
func fetchIsAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// fetchASCIILower lower-cases ASCII letters only, so byte offsets stay valid.
func fetchASCIILower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// --- api ---

// apiTool is the single tool of an `api` toolset.
type apiTool struct {
	method   string
	endpoint string // ${env.X} already expanded; ${arg} substituted per call
	headers  [][2]string
}

// newAPIToolset validates api_config and returns its tool. The endpoint must be an
// http(s) URL; its `${env.X}` references and the headers' are expanded now.
func newAPIToolset(ts *toolsetConfig, opts toolsetOptions) (*builtinToolset, error) {
	c := ts.APIConfig
	if c.Endpoint == "" {
		return nil, errors.New("api tool requires an endpoint in api_config")
	}
	if c.Name == "" {
		return nil, errors.New("api tool requires a name in api_config")
	}
	a := &apiTool{method: strings.ToUpper(c.Method), endpoint: apiExpandEnv(c.Endpoint, opts.Getenv)}
	switch a.method {
	case "":
		a.method = "GET"
	case "GET", "POST":
	default:
		return nil, fmt.Errorf("api tool %s: unsupported method %q (use GET or POST)", c.Name, c.Method)
	}
	if _, err := toolsCheckURL(a.endpoint); err != nil {
		return nil, fmt.Errorf("api tool %s: endpoint: %v", c.Name, err)
	}
	if c.Headers != nil {
		for _, k := range c.Headers.Keys {
			a.headers = append(a.headers, [2]string{k, apiExpandEnv(c.Headers.Values[k], opts.Getenv)})
		}
	}
	props := map[string]any{}
	if c.Args != nil {
		for _, k := range c.Args.Keys {
			desc := fmt.Sprintf("Field %s of the JSON request body.", k)
			if a.method == "GET" {
				desc = fmt.Sprintf("Value put in place of ${%s} in the request URL.", k)
			}
			schema, ok := argSchema(c.Args.Values[k], desc)
			if !ok {
				return nil, fmt.Errorf("api tool %s: arg '%s' must be a JSON schema object", c.Name, k)
			}
			props[k] = schema
		}
	}
	schema := map[string]any{"type": "object", "properties": props}
	if len(c.Required) > 0 {
		schema["required"] = c.Required
	}
	params, _ := json.Marshal(schema)
	out := json.RawMessage(`{"type":"string"}`)
	if len(c.OutputSchema) > 0 && string(c.OutputSchema) != "null" {
		out = c.OutputSchema
	}
	return &builtinToolset{
		list: []tool{{
			def: toolDef{Name: c.Name, Category: "api", Description: c.Instruction, Parameters: params,
				Annotations: toolAnnotations{ReadOnlyHint: a.method == "GET"}, OutputSchema: out}, // POST changes things: ask
			run: a.run,
		}},
		instr: c.Instruction,
	}, nil
}

// apiArgRE finds ${name} placeholders in an endpoint.
var apiArgRE = regexp.MustCompile(`\$\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}`)

// apiEscape percent-encodes everything but RFC 3986 unreserved characters, so an
// argument can neither add path segments nor query parameters.
func apiEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// apiString renders an argument for the URL: strings as-is, the rest as JSON.
func apiString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func (a *apiTool) run(ctx context.Context, env *toolEnv, raw json.RawMessage) toolResult {
	var args map[string]any
	if err := toolsArgs(raw, &args); err != nil {
		return toolErrorf("%v", err)
	}
	if args == nil { // no arguments, or a JSON null: POST an empty object
		args = map[string]any{}
	}
	endpoint := a.endpoint
	var body io.Reader
	if a.method == "GET" {
		endpoint = apiArgRE.ReplaceAllStringFunc(endpoint, func(m string) string {
			v, ok := args[apiArgRE.FindStringSubmatch(m)[1]]
			if !ok || v == nil {
				return ""
			}
			return apiEscape(apiString(v))
		})
	} else {
		b, err := json.Marshal(args)
		if err != nil {
			return toolErrorf("encoding request body: %v", err)
		}
		body = bytes.NewReader(b)
	}
	if _, err := toolsCheckURL(endpoint); err != nil {
		return toolErrorf("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, toolsHTTPTimeout*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, a.method, endpoint, body)
	if err != nil {
		return toolErrorf("building request: %v", err)
	}
	req.Header.Set("User-Agent", toolsUserAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range a.headers {
		req.Header.Set(h[0], h[1])
	}
	resp, err := toolsHTTPClient(env).Do(req)
	if err != nil {
		return toolErrorf("request failed: %v", err)
	}
	defer resp.Body.Close()
	data, cut, err := toolsReadBody(resp.Body)
	if err != nil {
		return toolErrorf("reading response: %v", err)
	}
	out := toolsTruncate(string(data))
	if cut && !strings.HasSuffix(out, toolsTruncNote) {
		out += "\n\n[Response truncated: exceeded 1 MB limit]"
	}
	if resp.StatusCode >= 400 {
		return toolErrorf("API request failed with status %s: %s", resp.Status, out)
	}
	return toolResult{Output: out}
}

// apiEnvRE matches a template placeholder `${…}`.
var apiEnvRE = regexp.MustCompile(`\$\{([^}]*)\}`)

// apiEnvExprRE is the subset of JavaScript we evaluate: env.NAME, optionally
// followed by || 'default' (or "default").
var apiEnvExprRE = regexp.MustCompile(`^\s*env\.([A-Za-z_][A-Za-z0-9_]*)\s*(?:\|\|\s*(?:'([^']*)'|"([^"]*)")\s*)?$`)

// apiExpandEnv expands `${env.NAME}` and `${env.NAME || 'default'}` (CONFIG.md §8.1).
// Other `${…}` expressions (tool arguments such as `${id}`) are left for the call.
func apiExpandEnv(s string, getenv func(string) string) string {
	return apiEnvRE.ReplaceAllStringFunc(s, func(m string) string {
		sub := apiEnvExprRE.FindStringSubmatch(apiEnvRE.FindStringSubmatch(m)[1])
		if sub == nil {
			return m
		}
		if v := getenv(sub[1]); v != "" {
			return v
		}
		return sub[2] + sub[3]
	})
}
