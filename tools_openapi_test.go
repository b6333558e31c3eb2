package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// petSpec is an OpenAPI 3 document exercising local $refs (parameters, request bodies,
// schemas), a reference cycle (Pet.parent), path-level parameters, an operation without
// operationId and every parameter location we send.
const petSpec = `{
  "openapi": "3.0.3",
  "info": {"title": "Pets", "version": "1"},
  "servers": [{"url": "/{base}", "variables": {"base": {"default": "api"}}}],
  "paths": {
    "/pets": {
      "get": {"operationId": "list-pets", "summary": "List pets",
        "parameters": [
          {"name": "limit", "in": "query", "schema": {"type": "integer"}},
          {"name": "X-Trace", "in": "header", "schema": {"type": "string"}}]},
      "post": {"operationId": "createPet", "description": "Create a pet",
        "requestBody": {"$ref": "#/components/requestBodies/NewPet"}}
    },
    "/pets/{petId}": {
      "parameters": [{"$ref": "#/components/parameters/PetId"}],
      "get": {"responses": {}},
      "delete": {"operationId": "deletePet"}
    }
  },
  "components": {
    "parameters": {"PetId": {"name": "petId", "in": "path", "required": true, "description": "The pet", "schema": {"type": "string"}}},
    "requestBodies": {"NewPet": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Pet"}}}}},
    "schemas": {"Pet": {"type": "object", "required": ["name"], "properties": {
      "name": {"type": "string", "example": "Rex"},
      "tags": {"type": "array", "nullable": true},
      "owner": {"$ref": "#/components/schemas/Owner"},
      "parent": {"$ref": "#/components/schemas/Pet"}}},
      "Owner": {"type": "object", "properties": {"email": {"type": "string", "format": "email", "xml": {"name": "e"}}}}}
  }
}`

// fakePetAPI serves a spec at /openapi.json and echoes every operation call.
type fakePetAPI struct {
	*httptest.Server
	spec string
	mu   sync.Mutex
	auth []string // Authorization (and X-Api-Key) of every request
}

func newFakePetAPI(t *testing.T, spec string) *fakePetAPI {
	f := &fakePetAPI{spec: spec}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization")+r.Header.Get("X-Api-Key"))
		f.mu.Unlock()
		switch {
		case r.URL.Path == "/openapi.json" || r.URL.Path == "/openapi.yaml":
			io.WriteString(w, f.spec)
		case strings.HasPrefix(r.URL.Path, "/api/pets/missing"):
			http.Error(w, `{"error":"no such pet"}`, 404)
		case strings.HasPrefix(r.URL.Path, "/api/"):
			b, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s %s?%s trace=%s type=%s body=%s", r.Method, r.URL.EscapedPath(), r.URL.RawQuery,
				r.Header.Get("X-Trace"), r.Header.Get("Content-Type"), b)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakePetAPI) auths() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.auth)
}

const openapiYAML = `    toolsets:
      - type: openapi
        url: ${env.PET_API}/openapi.json
        headers:
          Authorization: Bearer ${env.PET_TOKEN}
`

// modelTool returns the tool definition the model was offered under name.
func modelTool(t *testing.T, req map[string]any, name string) map[string]any {
	t.Helper()
	tools, _ := req["tools"].([]any)
	for _, tl := range tools {
		fn := tl.(map[string]any)["function"].(map[string]any)
		if fn["name"] == name {
			return fn
		}
	}
	t.Fatalf("tool %s not offered; tools = %v", name, tools)
	return nil
}

func TestOpenAPIToolsetThroughRun(t *testing.T) {
	api := newFakePetAPI(t, petSpec)
	e, f := newRunEnv(t, openapiYAML,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "list_pets", Args: `{"limit":2,"X-Trace":"t1"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c2", Name: "createPet", Args: `{"body_name":"Rex"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c3", Name: "get_pets_petId", Args: `{"petId":"a/../b"}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c4", Name: "get_pets_petId", Args: `{"petId":"missing"}`}}},
		fakeTurn{Text: []string{"done"}})
	e.setenv("PET_API", api.URL)
	e.setenv("PET_TOKEN", "s3cret")

	// One tool per operation, as the reference counts them.
	code, b := e.do("GET", "/api/agents/a/root/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":4}` {
		t.Fatalf("tools/count = %d %s; want the 4 operations", code, b)
	}
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	got := toolResponses(evs)
	want := []string{
		"GET /api/pets?limit=2 trace=t1 type= body=",
		`POST /api/pets? trace= type=application/json body={"name":"Rex"}`,
		"GET /api/pets/a%2F..%2Fb? trace= type= body=",
		`HTTP 404: {"error":"no such pet"}` + "\n",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("tool responses = %q\nwant %q", got, want)
	}
	for _, a := range api.auths() {
		if a != "Bearer s3cret" {
			t.Fatalf("configured header not sent with every request: %q", api.auths())
		}
	}

	// The schema merges parameters and body fields; refs are resolved, the cycle is cut
	// and OpenAPI-only keywords are dropped.
	req := f.requests()[0]
	create := modelTool(t, req, "createPet")
	params, _ := json.Marshal(create["parameters"])
	// (As the OpenAI provider sends it: strict, optional fields nullable.)
	wantParams := `{"additionalProperties":false,"properties":{"body_name":{"type":"string"},"body_owner":{"additionalProperties":false,"properties":{"email":{"type":["string","null"]}},"required":["email"],"type":["object","null"]},"body_parent":{},"body_tags":{"items":{},"type":["array","null"]}},"required":["body_name","body_owner","body_parent","body_tags"],"type":"object"}`
	if string(params) != wantParams {
		t.Fatalf("createPet parameters = %s\nwant %s", params, wantParams)
	}
	get := modelTool(t, req, "get_pets_petId")
	params, _ = json.Marshal(get["parameters"])
	if string(params) != `{"additionalProperties":false,"properties":{"petId":{"description":"The pet","type":"string"}},"required":["petId"],"type":"object"}` {
		t.Fatalf("path-level parameter not merged: %s", params)
	}
	if get["description"] != "GET /pets/{petId}" {
		t.Fatalf("description = %v", get["description"])
	}
}

func TestOpenAPIWritesNeedConfirmation(t *testing.T) {
	api := newFakePetAPI(t, petSpec)
	e, _ := newRunEnv(t, openapiYAML,
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "list_pets", Args: `{}`}}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "c2", Name: "deletePet", Args: `{"petId":"7"}`}}},
		fakeTurn{Text: []string{"done"}})
	e.setenv("PET_API", api.URL)
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	if r := s.until("tool_call_response"); r["response"] != "GET /api/pets? trace= type= body=" {
		t.Fatalf("GET ran without asking: %v", r["response"])
	}
	ev := s.until("tool_call_confirmation")
	if ev["tool_call"].(map[string]any)["function"].(map[string]any)["name"] != "deletePet" {
		t.Fatalf("confirmation = %v", ev)
	}
	e.do("POST", "/api/sessions/"+id+"/resume", map[string]string{"confirmation": "approve"})
	if r := s.until("tool_call_response"); r["response"] != "DELETE /api/pets/7? trace= type= body=" {
		t.Fatalf("DELETE after approval = %v", r["response"])
	}
	s.all()
}

func TestOpenAPIYAMLSpecAndFailures(t *testing.T) {
	api := newFakePetAPI(t, "openapi: 3.1.0\npaths:\n  /pets:\n    get:\n      operationId: listPets\n")
	yaml := strings.Replace(openapiYAML, "openapi.json", "openapi.yaml", 1)
	e, _ := newRunEnv(t, yaml+"      - type: openapi\n        url: ${env.PET_API}/nothing.json\n")
	e.setenv("PET_API", api.URL)
	// The YAML document has one operation and no servers: calls go to its origin.
	code, b := e.do("GET", "/api/agents/a/root/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":1}` {
		t.Fatalf("tools/count = %d %s", code, b)
	}
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	var warnings []string
	for _, ev := range evs {
		if ev["type"] == "warning" {
			warnings = append(warnings, ev["message"].(string))
		}
	}
	if len(warnings) != 1 || !strings.Contains(warnings[0], "failed to fetch OpenAPI spec from "+api.URL+"/nothing.json: unexpected status code 404") {
		t.Fatalf("warnings = %q", warnings)
	}
}

func TestOpenAPIParseErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"swagger": "2.0"}`, "not an OpenAPI 3 document"},
		{"openapi: 3.0.0\npaths: {a: [\n", "nor YAML this server reads"},
	} {
		if _, err := openapiParse("spec", []byte(tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("openapiParse(%q) = %v; want %q", tc.doc, err, tc.want)
		}
	}
}

func TestOpenAPISpecRedirectDropsHeaders(t *testing.T) {
	other := newFakePetAPI(t, petSpec)
	moved := httptest.NewServer(http.RedirectHandler(other.URL+"/openapi.json", http.StatusFound))
	t.Cleanup(moved.Close)
	// Go drops Authorization on its own; X-Api-Key goes only by our redirect policy.
	e, _ := newRunEnv(t, strings.Replace(openapiYAML, "Authorization: Bearer", "X-Api-Key:", 1))
	e.setenv("PET_API", moved.URL)
	e.setenv("PET_TOKEN", "s3cret")
	code, b := e.do("GET", "/api/agents/a/root/tools/count", nil)
	if code != 200 || strings.TrimSpace(string(b)) != `{"available_tools":4}` {
		t.Fatalf("tools/count = %d %s", code, b)
	}
	if got := other.auths(); len(got) != 1 || got[0] != "" {
		t.Fatalf("X-Api-Key seen by the other host = %q; want it dropped", got)
	}
}
