package main

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// openAPIDoc fetches the served document.
func openAPIDoc(t *testing.T, e *apiTest) map[string]any {
	t.Helper()
	code, b := e.do("GET", "/api/openapi.json", nil)
	if code != 200 {
		t.Fatalf("GET /api/openapi.json = %d %s", code, b)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi = %v", doc["openapi"])
	}
	return doc
}

// TestOpenAPICoversRoutes walks the route table the mux is built from: every route
// is documented, and nothing documented is missing from the server.
func TestOpenAPICoversRoutes(t *testing.T) {
	e := newTestEnv(t, nil)
	paths := openAPIDoc(t, e)["paths"].(map[string]any)
	served := map[string]bool{}
	for _, rt := range e.s.routeTable() {
		method, path, _ := strings.Cut(rt.pattern, " ")
		path = strings.TrimSuffix(path, "{$}")
		if path == "" {
			path = "/"
		}
		key := strings.ToLower(method) + " " + path
		served[key] = true
		ops, _ := paths[path].(map[string]any)
		if _, ok := ops[strings.ToLower(method)]; !ok {
			t.Errorf("route %q is not in the OpenAPI document", rt.pattern)
		}
	}
	for path, ops := range paths {
		for method := range ops.(map[string]any) {
			if !served[method+" "+path] {
				t.Errorf("the OpenAPI document has %s %s, which the server does not serve", method, path)
			}
		}
	}
	// Both run-body forms.
	body := paths["/api/sessions/{id}/agent/{agent}"].(map[string]any)["post"].(map[string]any)["requestBody"]
	ref := body.(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)["$ref"]
	doc := openAPIDoc(t, e)
	forms := resolve(doc, map[string]any{"$ref": ref})["oneOf"].([]any)
	var kinds []string
	for _, f := range forms {
		f := f.(map[string]any)
		kinds = append(kinds, fmt.Sprint(f["type"]))
		if f["type"] == "object" && f["properties"].(map[string]any)["messages"] == nil {
			t.Errorf("object run body without messages: %v", f)
		}
	}
	if !slices.Equal(kinds, []string{"array", "object"}) {
		t.Errorf("run body forms = %v; want array and object", kinds)
	}
}

// emittedEventTypes reads the package's source for every event type it can emit:
// the literal first argument of each startEvent call (the event constructors in
// stream.go), and of each call to a wrapper that passes its own first parameter on
// as the type.
func emittedEventTypes(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	var decls []*ast.FuncDecl
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
				decls = append(decls, fd)
			}
		}
	}
	// Constructors: startEvent, then every function forwarding its first parameter to one.
	ctors := map[string]bool{"startEvent": true}
	for grown := true; grown; {
		grown = false
		for _, fd := range decls {
			if first := firstParam(fd); first != "" && !ctors[fd.Name.Name] && forwardsType(fd, first, ctors) {
				ctors[fd.Name.Name], grown = true, true
			}
		}
	}
	var types []string
	for _, fd := range decls {
		first := ""
		if ctors[fd.Name.Name] {
			first = firstParam(fd)
		}
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || !ctors[callName(call)] || len(call.Args) == 0 {
				return true
			}
			switch arg := call.Args[0].(type) {
			case *ast.BasicLit:
				typ, _ := strconv.Unquote(arg.Value)
				if !slices.Contains(types, typ) {
					types = append(types, typ)
				}
			case *ast.Ident:
				if arg.Name != first {
					t.Errorf("%s: event type %s is not a literal: this test cannot see which event it is", fset.Position(call.Pos()), arg.Name)
				}
			default:
				t.Errorf("%s: event type is not a literal: this test cannot see which event it is", fset.Position(call.Pos()))
			}
			return true
		})
	}
	if len(types) < 20 {
		t.Fatalf("found only %d event types: %v", len(types), types)
	}
	return types
}

func firstParam(fd *ast.FuncDecl) string {
	if ps := fd.Type.Params.List; len(ps) > 0 && len(ps[0].Names) > 0 {
		return ps[0].Names[0].Name
	}
	return ""
}

// forwardsType reports whether fd calls a constructor with its parameter first.
func forwardsType(fd *ast.FuncDecl, first string, ctors map[string]bool) bool {
	found := false
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && ctors[callName(call)] && len(call.Args) > 0 {
			if id, ok := call.Args[0].(*ast.Ident); ok && id.Name == first {
				found = true
			}
		}
		return !found
	})
	return found
}

func callName(call *ast.CallExpr) string {
	if id, ok := call.Fun.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// TestOpenAPICoversEvents: every event type the code can emit has a schema in the
// document's Event union, and the union lists nothing the code never emits.
func TestOpenAPICoversEvents(t *testing.T) {
	e := newTestEnv(t, nil)
	doc := openAPIDoc(t, e)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	union := schemas["Event"].(map[string]any)
	mapping := union["discriminator"].(map[string]any)["mapping"].(map[string]any)
	emitted := emittedEventTypes(t)
	for _, typ := range emitted {
		ref, ok := mapping[typ].(string)
		if !ok {
			t.Errorf("event %q is not in the OpenAPI Event union", typ)
			continue
		}
		s := resolve(doc, map[string]any{"$ref": ref})
		if c := s["properties"].(map[string]any)["type"].(map[string]any)["const"]; c != typ {
			t.Errorf("schema %s has type const %v; want %q", ref, c, typ)
		}
		if !slices.ContainsFunc(union["oneOf"].([]any), func(o any) bool { return o.(map[string]any)["$ref"] == ref }) {
			t.Errorf("%s is in the discriminator mapping but not in oneOf", ref)
		}
	}
	for typ := range mapping {
		if !slices.Contains(emitted, typ) {
			t.Errorf("the OpenAPI document describes event %q, which the code never emits", typ)
		}
	}
}

// TestOpenAPIEventsMatchStream checks real events against their schemas: a run with
// text, a tool call and an elicitation, sent in the object body form.
func TestOpenAPIEventsMatchStream(t *testing.T) {
	ask := fakeToolCall{ID: "call_1", Name: "user_prompt", Args: `{"message":"Your name?","schema":{"type":"object","properties":{"name":{"type":"string"}}}}`}
	e, _ := newRunEnv(t, "    toolsets:\n      - type: user_prompt\n", fakeTurn{Reasoning: []string{"hmm"}, ToolCalls: []fakeToolCall{ask}}, fakeTurn{Text: []string{"thanks"}})
	doc := openAPIDoc(t, e)
	id := e.newSession(nil)
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "hi"}}})
	s.until("elicitation_request")
	if code, b := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"name": "Ada"}}); code != 200 {
		t.Fatalf("elicitation answer = %d %s", code, b)
	}
	events := s.all()
	seen := map[string]bool{}
	union := map[string]any{"$ref": "#/components/schemas/Event"}
	for i, ev := range events {
		seen[ev["type"].(string)] = true
		if err := validate(doc, union, ev, "event"); err != nil {
			t.Errorf("%s\n%s", err, s.raw[i])
		}
	}
	// The JSON answers of the routes match their documented schemas too.
	for _, c := range [][3]string{
		{"GET", "/api/sessions/{id}", "/api/sessions/" + id},
		{"GET", "/api/sessions", "/api/sessions"},
		{"POST", "/api/sessions", "/api/sessions"},
		{"GET", "/api/agents", "/api/agents"},
		{"GET", "/api/agents/{id}", "/api/agents/a"},
		{"PATCH", "/api/sessions/{id}/title", "/api/sessions/" + id + "/title"},
		{"POST", "/api/sessions/{id}/tools/toggle", "/api/sessions/" + id + "/tools/toggle"},
		{"GET", "/api/ping", "/api/ping"},
	} {
		var body any
		if c[0] != "GET" {
			body = map[string]any{"title": "x"}
		}
		code, b := e.do(c[0], c[2], body)
		var got any
		if err := json.Unmarshal(b, &got); code != 200 || err != nil {
			t.Fatalf("%s %s = %d %s", c[0], c[2], code, b)
		}
		op := doc["paths"].(map[string]any)[c[1]].(map[string]any)[strings.ToLower(c[0])].(map[string]any)
		schema := op["responses"].(map[string]any)["200"].(map[string]any)["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any)
		if err := validate(doc, schema, got, c[0]+" "+c[1]); err != nil {
			t.Errorf("%v\n%s", err, b)
		}
	}
	for _, typ := range []string{"user_message", "agent_choice_reasoning", "partial_tool_call", "elicitation_request", "tool_call_response", "agent_choice", "token_usage", "stream_stopped"} {
		if !seen[typ] {
			t.Errorf("the run emitted no %s; got %v", typ, s.types())
		}
	}
}

// TestRunBodyForms: the run endpoint takes the reference's bare array (its last
// element is new) and the newer {"messages":[…]} object (all new); anything else is a 400.
func TestRunBodyForms(t *testing.T) {
	e, f := newRunEnv(t, "")
	id := e.newSession(map[string]any{"title": "t"})
	// An array's earlier elements were sent before (the reference's client re-sends
	// them); an object's messages are all new.
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "old"}, {"content": "from an array"}}).all()
	e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"content": "from an object"}, {"content": "and another"}}}).all()
	var got []string
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	for _, m := range decode[map[string]any](t, b)["messages"].([]any) {
		if msg := m.(map[string]any)["message"].(map[string]any); msg["role"] == "user" {
			got = append(got, msg["content"].(string))
		}
	}
	if !slices.Equal(got, []string{"from an array", "from an object", "and another"}) {
		t.Fatalf("stored user messages = %v", got)
	}
	if n := len(f.requests()); n != 2 {
		t.Fatalf("model called %d times; want 2", n)
	}
	for _, bad := range []string{`{"messages":"hi"}`, `{"messages":[1]}`, `"hi"`, `{"content":"hi"}`} {
		if code, b := e.do("POST", "/api/sessions/"+id+"/agent/a", bad); code != 400 {
			t.Errorf("body %s = %d %s; want 400", bad, code, b)
		}
	}
}

// TestChatPageServed: the page and its assets load without the token and carry a
// strict Content-Security-Policy; the API and this document still need the token.
func TestChatPageServed(t *testing.T) {
	e := newTestEnv(t, nil, func(c *serverConfig) { c.token = "page-token" })
	for path, ctype := range map[string]string{"/": "text/html", "/ui/app.js": "text/javascript", "/ui/app.css": "text/css"} {
		resp, err := http.Get(e.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) ||
			!strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self';") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s = %d %q, CSP %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), csp)
		}
	}
	for _, path := range []string{"/ui/openapi.json", "/ui/missing.js"} {
		if code, _ := e.do("GET", path, nil); code != 404 {
			t.Errorf("GET %s = %d; want 404", path, code)
		}
	}
	for _, path := range []string{"/api/openapi.json", "/api/sessions", "/ui/../api/sessions", "/index.html"} {
		if code, b := e.do("GET", path, nil); code == 200 {
			t.Errorf("GET %s without the token = %d %s", path, code, b)
		}
	}
	// Nothing in the page may need the CSP relaxed, and model text is never HTML.
	page, _ := os.ReadFile("web/index.html")
	script, _ := os.ReadFile("web/app.js")
	for _, bad := range []string{"<script>", " onclick=", " style=", "http://", "https://"} {
		if strings.Contains(string(page), bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(string(script), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
}

// resolve follows a local $ref.
func resolve(doc map[string]any, s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		var cur any = doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		s = cur.(map[string]any)
	}
}

// validate checks v against the subset of JSON Schema the document uses: $ref, type,
// const, enum, properties (no undocumented keys unless additionalProperties is true),
// required, items, oneOf, allOf.
func validate(doc, schema map[string]any, v any, at string) error {
	s := resolve(doc, schema)
	if one, ok := s["oneOf"].([]any); ok {
		if m, isObj := v.(map[string]any); isObj && s["discriminator"] != nil {
			ref, known := s["discriminator"].(map[string]any)["mapping"].(map[string]any)[fmt.Sprint(m["type"])]
			if !known {
				return fmt.Errorf("%s: undocumented type %v", at, m["type"])
			}
			return validate(doc, map[string]any{"$ref": ref}, v, at+"("+fmt.Sprint(m["type"])+")")
		}
		for _, o := range one {
			if validate(doc, o.(map[string]any), v, at) == nil {
				return nil
			}
		}
		return fmt.Errorf("%s: %v matches none of oneOf", at, v)
	}
	if c, ok := s["const"]; ok && v != c {
		return fmt.Errorf("%s = %v; want %v", at, v, c)
	}
	if enum, ok := s["enum"].([]any); ok && !slices.Contains(enum, v) {
		return fmt.Errorf("%s = %v; want one of %v", at, v, enum)
	}
	if err := checkType(s["type"], v, at); err != nil {
		return err
	}
	switch v := v.(type) {
	case map[string]any:
		return validateObject(doc, s, v, at)
	case []any:
		if items, ok := s["items"].(map[string]any); ok {
			for i, x := range v {
				if err := validate(doc, items, x, fmt.Sprintf("%s[%d]", at, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func validateObject(doc, s map[string]any, v map[string]any, at string) error {
	props := map[string]any{}
	for _, part := range append([]any{s}, anySlice(s["allOf"])...) {
		ps, _ := resolve(doc, part.(map[string]any))["properties"].(map[string]any)
		for k, p := range ps {
			props[k] = p
		}
	}
	if _, has := s["properties"]; !has && s["allOf"] == nil {
		return nil // a free-form object
	}
	for _, k := range anySlice(s["required"]) {
		if _, ok := v[k.(string)]; !ok {
			return fmt.Errorf("%s: required key %q missing", at, k)
		}
	}
	for k, x := range v {
		p, ok := props[k]
		if !ok && s["additionalProperties"] == true {
			continue
		}
		if !ok {
			return fmt.Errorf("%s: key %q is not documented", at, k)
		}
		if err := validate(doc, p.(map[string]any), x, at+"."+k); err != nil {
			return err
		}
	}
	return nil
}

func anySlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func checkType(t, v any, at string) error {
	var want []any
	switch t := t.(type) {
	case nil:
		return nil
	case string:
		want = []any{t}
	case []any:
		want = t
	}
	got := "object"
	switch x := v.(type) {
	case nil:
		got = "null"
	case string:
		got = "string"
	case bool:
		got = "boolean"
	case float64:
		got = "number"
		if x == float64(int64(x)) && slices.Contains(want, any("integer")) {
			got = "integer"
		}
	case []any:
		got = "array"
	}
	if !slices.Contains(want, any(got)) {
		return fmt.Errorf("%s is %s; want %v", at, got, want)
	}
	return nil
}
