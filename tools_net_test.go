package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fetchTestServer serves a robots.txt that disallows /private (except /private/ok),
// an HTML page, a plain page and a body larger than the cap.
func fetchTestServer(t *testing.T, robots string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/robots.txt":
			if robots == "" {
				http.NotFound(w, r)
				return
			}
			io.WriteString(w, robots)
		case "/page":
			if r.Header.Get("User-Agent") != toolsUserAgent {
				t.Errorf("User-Agent = %q", r.Header.Get("User-Agent"))
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			io.WriteString(w, `<html><head><title>T</title><style>p{}</style></head><body><h1>Title</h1><p>Hello <b>bold</b> &amp; <a href="/x">link</a></p><script>alert(1)</script></body></html>`)
		case "/plain", "/private/ok/x":
			io.WriteString(w, "plain body")
		case "/big":
			io.WriteString(w, strings.Repeat("z", 2<<20))
		case "/missing":
			http.NotFound(w, r)
		default:
			t.Errorf("unexpected request %s", r.URL)
			http.Error(w, "unexpected", 500)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestFetchTool(t *testing.T) {
	srv := fetchTestServer(t, "User-agent: *\nDisallow: /private # comment\nAllow: /private/ok\n")
	s := toolsBuild(t, &toolsetConfig{Type: "fetch"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	env.HTTP = srv.Client()
	fetch := func(format string, urls ...string) toolResult {
		return toolsCall(t, s, env, "fetch", map[string]any{"urls": urls, "format": format})
	}
	md := "# Title\n\nHello **bold** & [link](/x)"
	tests := []struct {
		name, format, url string
		want              string
		wantErr           bool
	}{
		{"markdown", "markdown", srv.URL + "/page", fmt.Sprintf("Successfully fetched %s/page (Status: 200, Length: %d bytes):\n\n%s", srv.URL, len(md), md), false},
		{"text", "text", srv.URL + "/page", fmt.Sprintf("Successfully fetched %s/page (Status: 200, Length: 24 bytes):\n\nTitle\n\nHello bold & link", srv.URL), false},
		{"plain", "html", srv.URL + "/plain", fmt.Sprintf("Successfully fetched %s/plain (Status: 200, Length: 10 bytes):\n\nplain body", srv.URL), false},
		{"robots allow", "text", srv.URL + "/private/ok/x", fmt.Sprintf("Successfully fetched %s/private/ok/x (Status: 200, Length: 10 bytes):\n\nplain body", srv.URL), false},
		{"robots deny", "text", srv.URL + "/private/x", fmt.Sprintf("Error fetching %s/private/x: URL is disallowed by the site's robots.txt", srv.URL), true},
		{"file", "text", "file:///etc/passwd", `Error fetching file:///etc/passwd: unsupported URL scheme "file": only http and https are allowed`, true},
		{"ftp", "text", "ftp://example.com/x", `Error fetching ftp://example.com/x: unsupported URL scheme "ftp": only http and https are allowed`, true},
		{"bad format", "pdf", srv.URL + "/plain", `invalid format "pdf": use text, markdown or html`, true},
	}
	for _, tt := range tests {
		toolsWant(t, "fetch("+tt.name+")", fetch(tt.format, tt.url), tt.want, tt.wantErr)
	}

	big := fetch("text", srv.URL+"/big")
	body := strings.TrimPrefix(big.Output, fmt.Sprintf("Successfully fetched %s/big (Status: 200, Length: %d bytes):\n\n", srv.URL, toolsMaxHTTPBody+len("\n\n[Content truncated: exceeded 1 MB limit]")))
	if body != strings.Repeat("z", toolsMaxHTTPBody)+"\n\n[Content truncated: exceeded 1 MB limit]" {
		t.Errorf("fetch(big) output starts %q and has %d bytes", big.Output[:min(120, len(big.Output))], len(big.Output))
	}

	var many []fetchResult
	r := fetch("text", srv.URL+"/plain", "gopher://x", srv.URL+"/missing")
	if err := json.Unmarshal([]byte(r.Output), &many); err != nil || r.IsError || len(many) != 3 {
		t.Fatalf("fetch(3 urls) = %+v", r)
	}
	if many[0].Body != "plain body" || many[0].StatusCode != 200 || many[1].Error == "" || many[2].StatusCode != 404 || many[2].Error != "" {
		t.Errorf("fetch(3 urls) = %+v", many)
	}

	// No robots.txt at all allows everything; a group naming us wins over *.
	open := fetchTestServer(t, "")
	toolsWantContains(t, "fetch(no robots.txt)", toolsCall(t, s, &toolEnv{HTTP: open.Client()}, "fetch", map[string]any{"urls": []string{open.URL + "/plain"}, "format": "text"}), "plain body", false)
	closed := fetchTestServer(t, "User-agent: *\nAllow: /\n\nUser-agent: agentd\nDisallow: /\n")
	toolsWantContains(t, "fetch(agentd disallowed)", toolsCall(t, s, &toolEnv{HTTP: closed.Client()}, "fetch", map[string]any{"urls": []string{closed.URL + "/plain"}, "format": "text"}), "disallowed by the site's robots.txt", true)
}

func TestRobotsAllowed(t *testing.T) {
	const robots = `
User-agent: other
Disallow: /

User-agent: *
Disallow: /private
Allow: /private/public
Disallow: /*.pdf$
Disallow:
`
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/private", false},
		{"/private/x", false},
		{"/private/public/x", true},
		{"/doc.pdf", false},
		{"/doc.pdf?x", true},
		{"/public", true},
	}
	for _, tt := range tests {
		if got := robotsAllowed(robots, "agentd", tt.path); got != tt.want {
			t.Errorf("robotsAllowed(%q) = %v; want %v", tt.path, got, tt.want)
		}
	}
	if robotsAllowed(robots, "other", "/x") {
		t.Errorf("robotsAllowed(other, /x) = true; want false")
	}
}

func TestFetchHTMLConvert(t *testing.T) {
	src := `<!-- c --><h2>Sub</h2><ul><li>one</li><li><i>two</i></li></ul><pre><code>a  b
c</code></pre><p>x&lt;y&nbsp;z<br>next <code>inline</code></p><table><tr><td>1</td><td>2</td></tr></table>`
	if got, want := fetchHTMLConvert(src, true), "## Sub\n\n- one\n- _two_\n\n```\na  b\nc\n```\n\nx<y\u00a0z\nnext `inline`\n\n1 2"; got != want {
		t.Errorf("fetchHTMLConvert(markdown) = %q; want %q", got, want)
	}
	if got, want := fetchHTMLConvert(src, false), "Sub\n\none\ntwo\n\na  b\nc\n\nx<y\u00a0z\nnext inline\n\n1 2"; got != want {
		t.Errorf("fetchHTMLConvert(text) = %q; want %q", got, want)
	}
}

// apiTestServer echoes what it receives: method, escaped path, query, the
// Authorization and Content-Type headers and the body.
func apiTestServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/fail":
			http.Error(w, "no such thing", http.StatusNotFound)
		case r.URL.Path == "/big":
			io.WriteString(w, strings.Repeat("b", 2<<20))
		default:
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s ?%s auth=%s ct=%s body=%s", r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAPITool(t *testing.T) {
	srv := apiTestServer(t)
	opts := toolsTestOpts(t, map[string]string{"TOKEN": "sekret"})
	env := toolsTestEnv(t)
	env.HTTP = srv.Client()
	headers := &orderedMap[string]{Keys: []string{"Authorization"}, Values: map[string]string{"Authorization": "Bearer ${env.TOKEN}"}}
	args := &orderedMap[json.RawMessage]{Keys: []string{"id", "q"}, Values: map[string]json.RawMessage{"id": json.RawMessage(`{"type":"string"}`), "q": json.RawMessage(`{"description":"query"}`)}}

	get := toolsBuild(t, &toolsetConfig{Type: "api", APIConfig: apiToolConfig{
		Name: "get_item", Method: "GET", Endpoint: srv.URL + "/items/${id}?q=${q}&v=${env.VERSION || 'v1'}", Instruction: "Get an item",
		Args: args, Required: []string{"id"}, Headers: headers,
	}}, opts)
	list, _ := get.tools(t.Context())
	d := list[0].def
	if d.Name != "get_item" || d.Category != "api" || d.Description != "Get an item" || !d.Annotations.ReadOnlyHint || get.instruction() != "Get an item" ||
		string(d.Parameters) != `{"properties":{"id":{"description":"Value put in place of ${id} in the request URL.","type":"string"},"q":{"description":"query","type":"string"}},"required":["id"],"type":"object"}` ||
		string(d.OutputSchema) != `{"type":"string"}` {
		t.Errorf("api definition = %+v, params %s", d, d.Parameters)
	}
	toolsWant(t, "get_item", toolsCall(t, get, env, "get_item", map[string]any{"id": "42", "q": "a b"}), "GET /items/42 ?q=a%20b&v=v1 auth=Bearer sekret ct= body=", false)
	toolsWant(t, "get_item(escaping)", toolsCall(t, get, env, "get_item", map[string]any{"id": "../admin?x=1&y", "q": 7}), "GET /items/..%2Fadmin%3Fx%3D1%26y ?q=7&v=v1 auth=Bearer sekret ct= body=", false)

	post := toolsBuild(t, &toolsetConfig{Type: "api", APIConfig: apiToolConfig{
		Name: "create_item", Method: "post", Endpoint: srv.URL + "/items", Instruction: "Create", Args: args,
		OutputSchema: json.RawMessage(`{"type":"object"}`),
	}}, opts)
	toolsWant(t, "create_item", toolsCall(t, post, env, "create_item", map[string]any{"id": "1", "q": "x"}), `POST /items ? auth= ct=application/json body={"id":"1","q":"x"}`, false)
	toolsWant(t, "create_item(null)", toolsCall(t, post, env, "create_item", "null"), `POST /items ? auth= ct=application/json body={}`, false)
	if list, _ := post.tools(t.Context()); string(list[0].def.OutputSchema) != `{"type":"object"}` {
		t.Errorf("output_schema not used: %s", list[0].def.OutputSchema)
	}

	fail := toolsBuild(t, &toolsetConfig{Type: "api", APIConfig: apiToolConfig{Name: "f", Endpoint: srv.URL + "/fail"}}, opts)
	toolsWant(t, "f(404)", toolsCall(t, fail, env, "f", "{}"), "API request failed with status 404 Not Found: no such thing\n", true)
	big := toolsBuild(t, &toolsetConfig{Type: "api", APIConfig: apiToolConfig{Name: "b", Endpoint: srv.URL + "/big"}}, opts)
	if r := toolsCall(t, big, env, "b", "{}"); r.Output != strings.Repeat("b", toolsMaxOutput)+toolsTruncNote || r.IsError {
		t.Errorf("b(2 MB) = %d chars, isError=%v", len(r.Output), r.IsError)
	}

	loadErrs := []struct {
		name string
		c    apiToolConfig
		want string
	}{
		{"no endpoint", apiToolConfig{Name: "x"}, "api tool requires an endpoint in api_config"},
		{"no name", apiToolConfig{Endpoint: "https://x"}, "api tool requires a name in api_config"},
		{"file", apiToolConfig{Name: "x", Endpoint: "file:///etc/passwd"}, `api tool x: endpoint: unsupported URL scheme "file": only http and https are allowed`},
		{"method", apiToolConfig{Name: "x", Endpoint: "https://x", Method: "DELETE"}, `api tool x: unsupported method "DELETE" (use GET or POST)`},
	}
	for _, tt := range loadErrs {
		if _, err := newBuiltinToolset(&toolsetConfig{Type: "api", APIConfig: tt.c}, opts); err == nil || err.Error() != tt.want {
			t.Errorf("api %s: err = %v; want %q", tt.name, err, tt.want)
		}
	}
}

func TestAPIExpandEnv(t *testing.T) {
	getenv := func(k string) string { return map[string]string{"HOST": "h.example"}[k] }
	tests := []struct{ in, want string }{
		{"https://${env.HOST}/x", "https://h.example/x"},
		{"https://${env.NOPE}/x", "https:///x"},
		{`${env.NOPE || 'd'}-${env.HOST || "e"}`, "d-h.example"},
		{"https://x/${id}", "https://x/${id}"},
	}
	for _, tt := range tests {
		if got := apiExpandEnv(tt.in, getenv); got != tt.want {
			t.Errorf("apiExpandEnv(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func BenchmarkFetchHTMLConvert(b *testing.B) {
	page := strings.Repeat(`<div><h2>Section</h2><p>Some <b>bold</b> text with a <a href="/x?a=1&amp;b=2">link</a> and &lt;entities&gt;.</p><ul><li>one</li><li>two</li></ul><script>var x = 1;</script></div>`, 2000)
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		fetchHTMLConvert(page, true)
	}
}

// FuzzFetchHTMLConvert checks the hand-written tag scanner never panics and drops
// script content after any text without markup (after arbitrary markup, HTML's own
// rules can legitimately turn a script into text).
func FuzzFetchHTMLConvert(f *testing.F) {
	for _, s := range []string{"", "<", "a < b > c", "<p>x", "<script>alert(1)", "<SCRIPT>x</script >y", "<!-- x", "<a href='x'>y", "</a></a>", "<pre><pre></pre>", "<h7>x</h7>", "&amp;&#x41;&bogus;", "<li><b>é</b>",
		"<A", "<SCRIPT></sCript", "<SCRIPT></sCript "} { // the last three were found by fuzzing
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		for _, md := range []bool{true, false} {
			if out := fetchHTMLConvert(src+"<script>SECRET</script>", md); strings.Contains(out, "SECRET") && !strings.ContainsAny(src, "<S") {
				t.Errorf("fetchHTMLConvert(%q) kept script content: %q", src, out)
			}
		}
	})
}

// FuzzRobotsAllowed checks the robots.txt parser never panics and that an empty
// Disallow never forbids anything.
func FuzzRobotsAllowed(f *testing.F) {
	f.Add("User-agent: *\nDisallow: /a*b$\nAllow: /a\n", "/ab")
	f.Add("User-agent:\nDisallow: [\n", "/[")
	f.Add("Disallow: /\n", "/")
	f.Fuzz(func(t *testing.T, robots, path string) {
		robotsAllowed(robots, "agentd", path)
		if !robotsAllowed("User-agent: *\nDisallow:\n"+robots, "nobody", path) && !strings.Contains(robots, "isallow") {
			t.Errorf("empty Disallow forbade %q", path)
		}
	})
}
