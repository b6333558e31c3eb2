package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAuthServer is an OAuth 2.1 authorization server speaking RFC 8414 metadata,
// RFC 7591 registration, the authorization endpoint (answering as a browser would
// see it: a redirect to redirect_uri with code and state) and the token endpoint
// (authorization_code with PKCE S256, refresh_token).
type fakeAuthServer struct {
	*httptest.Server
	t testing.TB

	mu        sync.Mutex
	clients   map[string]string // client_id → its registered redirect URI
	codes     map[string]url.Values
	refresh   map[string]bool
	valid     map[string]bool // access tokens the MCP server accepts
	issued    int
	grants    []string // grant_type of each token request
	expiresIn int      // of the next token issued; 0 = 3600
	noDCR     bool     // offer no registration endpoint
	secrets   []string // client_secret of each token request
}

func newFakeAuthServer(t testing.TB) *fakeAuthServer {
	a := &fakeAuthServer{t: t, clients: map[string]string{}, codes: map[string]url.Values{}, refresh: map[string]bool{}, valid: map[string]bool{}}
	a.Server = httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(a.Close)
	return a
}

func (a *fakeAuthServer) serve(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch r.URL.Path {
	case "/.well-known/oauth-authorization-server":
		meta := map[string]any{"issuer": a.URL, "authorization_endpoint": a.URL + "/authorize",
			"token_endpoint": a.URL + "/token", "registration_endpoint": a.URL + "/register",
			"response_types_supported": []string{"code"}, "code_challenge_methods_supported": []string{"S256"}}
		if a.noDCR {
			delete(meta, "registration_endpoint")
		}
		json.NewEncoder(w).Encode(meta)
	case "/register":
		var reg struct {
			RedirectURIs []string `json:"redirect_uris"`
			AuthMethod   string   `json:"token_endpoint_auth_method"`
		}
		if json.NewDecoder(r.Body).Decode(&reg) != nil || len(reg.RedirectURIs) != 1 || reg.AuthMethod != "none" {
			http.Error(w, `{"error":"invalid_client_metadata"}`, 400)
			return
		}
		id := fmt.Sprintf("client-%d", len(a.clients)+1)
		a.clients[id] = reg.RedirectURIs[0]
		w.WriteHeader(201)
		json.NewEncoder(w).Encode(map[string]any{"client_id": id, "redirect_uris": reg.RedirectURIs})
	case "/authorize":
		q := r.URL.Query()
		if q.Get("response_type") != "code" || a.clients[q.Get("client_id")] != q.Get("redirect_uri") || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
			http.Error(w, "bad authorization request", 400)
			return
		}
		code := fmt.Sprintf("code-%d", len(a.codes)+1)
		a.codes[code] = q
		http.Redirect(w, r, q.Get("redirect_uri")+"?code="+code+"&state="+url.QueryEscape(q.Get("state")), http.StatusFound)
	case "/token":
		a.token(w, r)
	default:
		http.NotFound(w, r)
	}
}

// token serves the token endpoint; a.mu is held.
func (a *fakeAuthServer) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	f := r.PostForm
	a.grants = append(a.grants, f.Get("grant_type"))
	a.secrets = append(a.secrets, f.Get("client_secret"))
	deny := func(code string) {
		w.WriteHeader(400)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": "refused by the fake"})
	}
	switch f.Get("grant_type") {
	case "authorization_code":
		q := a.codes[f.Get("code")]
		sum := sha256.Sum256([]byte(f.Get("code_verifier")))
		if q == nil || base64.RawURLEncoding.EncodeToString(sum[:]) != q.Get("code_challenge") ||
			f.Get("redirect_uri") != q.Get("redirect_uri") || f.Get("client_id") != q.Get("client_id") || f.Get("resource") != q.Get("resource") {
			deny("invalid_grant")
			return
		}
		delete(a.codes, f.Get("code")) // single use
	case "refresh_token":
		if !a.refresh[f.Get("refresh_token")] {
			deny("invalid_grant")
			return
		}
	default:
		deny("unsupported_grant_type")
		return
	}
	a.issued++
	at, rt := fmt.Sprintf("at-%d", a.issued), fmt.Sprintf("rt-%d", a.issued)
	a.valid[at], a.refresh[rt] = true, true
	exp := a.expiresIn
	if exp == 0 {
		exp = 3600
	}
	json.NewEncoder(w).Encode(map[string]any{"access_token": at, "token_type": "Bearer", "refresh_token": rt, "expires_in": exp})
}

// accepts reports whether the MCP server takes the Authorization header h.
func (a *fakeAuthServer) accepts(h string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	tok, ok := strings.CutPrefix(h, "Bearer ")
	return ok && a.valid[tok]
}

// fakeProtectedMCP is a Streamable HTTP MCP server behind OAuth: its protected
// resource metadata (RFC 9728), and a 401 with a challenge for requests without a
// valid token.
type fakeProtectedMCP struct {
	*httptest.Server
	as    *fakeAuthServer
	inner *fakeStreamable

	mu      sync.Mutex
	refused int      // 401 answers
	seen    []string // Authorization of the requests let through
}

func newFakeProtectedMCP(t *testing.T, as *fakeAuthServer) *fakeProtectedMCP {
	m := &fakeProtectedMCP{as: as, inner: &fakeStreamable{t: t, f: newFakeMCP(), oauth: true, sessions: map[string]bool{}, getReady: make(chan struct{})}}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.Close)
	return m
}

func (m *fakeProtectedMCP) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/.well-known/oauth-protected-resource/mcp" {
		json.NewEncoder(w).Encode(map[string]any{"resource": m.URL + "/mcp", "authorization_servers": []string{m.as.URL}, "scopes_supported": []string{"tools"}})
		return
	}
	auth := r.Header.Get("Authorization")
	m.mu.Lock()
	ok := m.as.accepts(auth)
	if ok {
		m.seen = append(m.seen, auth)
	} else {
		m.refused++
	}
	m.mu.Unlock()
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", resource_metadata="`+m.URL+`/.well-known/oauth-protected-resource/mcp", scope="tools"`)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	m.inner.ServeHTTP(w, r)
}

// oauthEnv is a server with one agent whose MCP toolset needs OAuth; the model calls
// the server's echo tool, then answers.
func oauthEnv(t *testing.T, redirect string, turns ...fakeTurn) (*apiTest, *fakeAuthServer, *fakeProtectedMCP) {
	t.Helper()
	return oauthEnvYAML(t, redirect, "", turns...)
}

// oauthEnvYAML is oauthEnv with extra YAML lines in the toolset's remote mapping.
func oauthEnvYAML(t *testing.T, redirect, remote string, turns ...fakeTurn) (*apiTest, *fakeAuthServer, *fakeProtectedMCP) {
	t.Helper()
	as := newFakeAuthServer(t)
	mcp := newFakeProtectedMCP(t, as)
	f := newFakeOpenAI(t, turns...)
	yaml := fakeAgentYAML(f.URL, "    toolsets:\n      - type: mcp\n        remote:\n          url: "+mcp.URL+"/mcp\n          transport_type: streamable\n"+remote)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml}, func(c *serverConfig) { c.mcpOAuth.redirectURI = redirect })
	e.setenv("OPENAI_API_KEY", "test-key")
	return e, as, mcp
}

func echoTurn(id string) fakeTurn {
	return fakeTurn{ToolCalls: []fakeToolCall{{ID: id, Name: "echo", Args: `{"text":"hi"}`}}}
}

// noRedirects is a browser that shows where the authorization server sends it.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func TestMCPOAuthCodeFlowThroughCallback(t *testing.T) {
	const redirect = "http://127.0.0.1:9/oauth/callback"
	e, as, mcp := oauthEnv(t, redirect, echoTurn("c1"), fakeTurn{Text: []string{"done"}}, echoTurn("c2"), fakeTurn{Text: []string{"again"}})
	id := e.newSession(nil)
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "use the tool"}}})
	el := s.until("elicitation_request")
	meta, _ := el["meta"].(map[string]any)
	for _, k := range []string{"type", "server_url", "authorize_url", "state"} {
		if meta["cagent/"+k] == nil || meta["cagent/"+k] != meta["docker-agent/"+k] {
			t.Errorf("meta %s: cagent/ %v, docker-agent/ %v; want both, equal", k, meta["cagent/"+k], meta["docker-agent/"+k])
		}
	}
	if meta["cagent/type"] != "oauth_flow" || meta["cagent/server_url"] != mcp.URL+"/mcp" || meta["auth_server"] != as.URL ||
		el["message"] != "OAuth authorization required for "+mcp.URL+"/mcp" || meta["resource_metadata"].(map[string]any)["resource"] != mcp.URL+"/mcp" ||
		meta["auth_server_metadata"].(map[string]any)["token_endpoint"] != as.URL+"/token" {
		t.Errorf("elicitation_request = %v", el)
	}
	authURL, _ := url.Parse(meta["cagent/authorize_url"].(string))
	q := authURL.Query()
	if q.Get("redirect_uri") != redirect || q.Get("resource") != mcp.URL+"/mcp" || q.Get("scope") != "tools" || q.Get("state") != meta["cagent/state"] {
		t.Errorf("authorization URL = %s", authURL)
	}
	// The user authorizes in a browser, which the server sends to the redirect URI.
	resp, err := noRedirects.Get(authURL.String())
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %v %v", resp, err)
	}
	back, _ := url.Parse(resp.Header.Get("Location"))

	// Bad callbacks are refused with clear errors; the flow keeps waiting.
	code, b := e.do("POST", "/api/mcp-oauth/callback", nil)
	wantError(t, "no state", code, b, 400, "missing state query parameter")
	code, b = e.do("POST", "/api/mcp-oauth/callback?state=x", nil)
	wantError(t, "no code", code, b, 400, "missing both code and error query parameters")
	code, b = e.do("POST", "/api/mcp-oauth/callback?state=forged&code=c", nil)
	wantError(t, "unknown state", code, b, 404, "no pending OAuth flow for the given state")

	code, b = e.do("POST", "/api/mcp-oauth/callback?"+back.RawQuery, nil)
	if code != 200 || strings.TrimSpace(string(b)) != "null" {
		t.Fatalf("callback: %d %s", code, b)
	}
	evs := s.all()
	if types := s.types(); !slices.Contains(types, "authorization_event") || slices.Contains(types, "warning") || slices.Contains(types, "error") {
		t.Fatalf("events = %v", types)
	}
	if got := toolResponses(evs); !slices.Equal(got, []string{"hi"}) {
		t.Errorf("tool responses = %q", got)
	}
	doc := openAPIDoc(t, e)
	for i, ev := range evs {
		if err := validate(doc, map[string]any{"$ref": "#/components/schemas/Event"}, ev, "event"); err != nil {
			t.Errorf("%s\n%s", err, s.raw[i])
		}
	}
	code, b = e.do("POST", "/api/mcp-oauth/callback?"+back.RawQuery, nil)
	wantError(t, "callback after the flow ended", code, b, 404, "no pending OAuth flow")

	// The token is stored for the server and never shown to a client.
	tok, err := e.s.st.mcpToken(context.Background(), mcp.URL+"/mcp")
	if err != nil || tok == nil || tok.AccessToken != "at-1" || tok.RefreshToken != "rt-1" {
		t.Fatalf("stored token = %#v, %v", tok, err)
	}
	_, session := e.do("GET", "/api/sessions/"+id, nil)
	if !strings.Contains(e.logged(), "mcp server ready") {
		t.Fatalf("the server's log was not captured")
	}
	for _, text := range append(s.raw, string(session), e.logged(), fmt.Sprint(tok), fmt.Sprintf("%v %+v", tok, tok)) {
		if strings.Contains(text, "at-1") || strings.Contains(text, "rt-1") || strings.Contains(text, back.Query().Get("code")) {
			t.Errorf("a token shows in %.300s", text)
		}
	}

	// Another session's run uses the stored token: no question asked.
	s2 := e.run("/api/sessions/"+e.newSession(nil)+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "again"}}})
	if s2.all(); slices.Contains(s2.types(), "elicitation_request") || !slices.Equal(toolResponses(s2.events), []string{"hi"}) {
		t.Errorf("second run: %v", s2.types())
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if !slices.Equal(as.grants, []string{"authorization_code"}) {
		t.Errorf("token requests = %v", as.grants)
	}
}

// TestMCPOAuthRefresh: a token the server stops accepting is refreshed on its 401; a
// token past its expiry is refreshed before it is sent. Neither asks the user.
func TestMCPOAuthRefresh(t *testing.T) {
	e, as, mcp := oauthEnv(t, "http://127.0.0.1:9/cb", echoTurn("c1"), fakeTurn{Text: []string{"one"}}, echoTurn("c2"), fakeTurn{Text: []string{"two"}},
		echoTurn("c3"), fakeTurn{Text: []string{"three"}})
	ctx := context.Background()
	server := mcp.URL + "/mcp"
	check := func(what string, refused int, grants []string, last string) {
		t.Helper()
		mcp.mu.Lock()
		defer mcp.mu.Unlock()
		as.mu.Lock()
		defer as.mu.Unlock()
		if mcp.refused != refused || !slices.Equal(as.grants, grants) || len(mcp.seen) == 0 || mcp.seen[len(mcp.seen)-1] != last {
			t.Fatalf("%s: refused %d, grants %v, seen %v; want %d, %v, last %q", what, mcp.refused, as.grants, mcp.seen, refused, grants, last)
		}
	}
	run := func() {
		t.Helper()
		s := e.run("/api/sessions/"+e.newSession(nil)+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "go"}}})
		if s.all(); slices.Contains(s.types(), "elicitation_request") || !slices.Equal(toolResponses(s.events), []string{"hi"}) {
			t.Fatalf("run: %v", s.types())
		}
	}
	// A token obtained earlier (by a previous process), since revoked by the server.
	as.mu.Lock()
	as.refresh["rt-0"] = true
	as.mu.Unlock()
	if err := e.s.st.setMCPToken(ctx, server, &mcpOAuthToken{AccessToken: "at-0", RefreshToken: "rt-0", TokenEndpoint: as.URL + "/token", ClientID: "client-0", Resource: server}); err != nil {
		t.Fatal(err)
	}
	run()
	check("revoked token", 1, []string{"refresh_token"}, "Bearer at-1")

	// Revoked while the connection is up: the tool call's 401 refreshes and resends.
	as.mu.Lock()
	delete(as.valid, "at-1")
	as.mu.Unlock()
	run()
	check("token revoked between calls", 2, []string{"refresh_token", "refresh_token"}, "Bearer at-2")

	// A stored token past its expiry is refreshed before it is sent: no 401.
	tok, _ := e.s.st.mcpToken(ctx, server)
	tok.ExpiresAt = time.Now().Add(-time.Minute)
	e.s.st.setMCPToken(ctx, server, tok)
	e.restart()
	run()
	check("expired token", 2, []string{"refresh_token", "refresh_token", "refresh_token"}, "Bearer at-3")
	if tok, _ := e.s.st.mcpToken(ctx, server); tok.AccessToken != "at-3" || tok.RefreshToken != "rt-3" || tok.ClientID != "client-0" {
		t.Errorf("stored token is not the refreshed one")
	}
}

// TestMCPOAuthClientDrivenAnswer: without --mcp-oauth-redirect-uri the client runs the
// flow itself and answers the elicitation with the token (the reference's unmanaged
// contract); declining leaves the toolset out of the run and is not asked again in it.
func TestMCPOAuthClientDrivenAnswer(t *testing.T) {
	e, as, mcp := oauthEnv(t, "", echoTurn("c1"), fakeTurn{Text: []string{"done"}}, fakeTurn{Text: []string{"no tools"}}, fakeTurn{Text: []string{"still none"}})
	as.mu.Lock()
	as.valid["client-token"] = true
	as.mu.Unlock()
	id := e.newSession(nil)
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "go"}}})
	el := s.until("elicitation_request")
	meta := el["meta"].(map[string]any)
	if meta["docker-agent/type"] != "oauth_flow" || meta["cagent/authorize_url"] != nil {
		t.Errorf("meta = %v; want an oauth_flow without an authorization URL", meta)
	}
	code, b := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept",
		"content": map[string]any{"access_token": "client-token", "token_type": "Bearer", "expires_in": 3600}})
	if code != 200 {
		t.Fatalf("answer: %d %s", code, b)
	}
	if s.all(); !slices.Contains(s.types(), "authorization_event") || !slices.Equal(toolResponses(s.events), []string{"hi"}) {
		t.Errorf("events = %v", s.types())
	}

	// Declined: the run goes on without the server's tools, asked once.
	e.s.st.setMCPToken(context.Background(), mcp.URL+"/mcp", &mcpOAuthToken{AccessToken: "revoked"})
	e.restart() // forget the token held in memory
	id = e.newSession(nil)
	s = e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "go"}}})
	s.until("elicitation_request")
	e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "decline"})
	evs := s.all()
	if n := len(eventsOf(evs, "elicitation_request")); n != 1 {
		t.Errorf("asked %d times; want once, not again after the decline", n)
	}
	if w := warningsOf(evs); len(w) != 1 || !strings.Contains(w[0], `OAuth authorization failed: the client answered "decline"`) {
		t.Errorf("warnings = %q", w)
	}
}

// TestMCPOAuthRedirectURIFlag: the code travels in the redirect, so it must be https,
// or http to this machine.
func TestMCPOAuthRedirectURIFlag(t *testing.T) {
	for uri, ok := range map[string]bool{
		"https://app.example/cb": true, "http://127.0.0.1:8765/cb": true, "http://localhost/cb": true, "http://[::1]:1/cb": true,
		"http://app.example/cb": false, "/relative": false, "ftp://127.0.0.1/cb": false,
	} {
		o, err := parseServeFlags([]string{"a.yaml", "--mcp-oauth-redirect-uri", uri}, io.Discard)
		if ok && (err != nil || o.mcpOAuthRedirect != uri) || !ok && (err == nil || !strings.Contains(err.Error(), "--mcp-oauth-redirect-uri")) {
			t.Errorf("--mcp-oauth-redirect-uri %s: %v", uri, err)
		}
	}
}

func TestChallengeParam(t *testing.T) {
	h := `Bearer realm="x", error="invalid_token", resource_metadata="https://m.example/.well-known/oauth-protected-resource/mcp", scope=files:read`
	for name, want := range map[string]string{"resource_metadata": "https://m.example/.well-known/oauth-protected-resource/mcp", "scope": "files:read", "error": "invalid_token", "metadata": ""} {
		if got := challengeParam(h, name); got != want {
			t.Errorf("challengeParam(%s) = %q; want %q", name, got, want)
		}
	}
	if got := challengeParam(`Bearer scope="a \"b\""`, "scope"); got != `a "b"` {
		t.Errorf("quoted-pair: %q", got)
	}
}

// TestMCPOAuthWithoutRegistration: an authorization server without dynamic client
// registration leaves agentd no client id to drive the flow with, even with a
// redirect URI: the client is asked to run it and answers with the token.
func TestMCPOAuthWithoutRegistration(t *testing.T) {
	e, as, _ := oauthEnv(t, "https://app.example/cb", fakeTurn{Text: []string{"no tools"}}, echoTurn("c1"), fakeTurn{Text: []string{"done"}})
	as.mu.Lock()
	as.noDCR, as.valid["client-token"] = true, true
	as.mu.Unlock()
	ask := func() (string, *sseStream) {
		id := e.newSession(nil)
		s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "go"}}})
		meta := s.until("elicitation_request")["meta"].(map[string]any)
		if meta["cagent/type"] != "oauth_flow" || meta["docker-agent/authorize_url"] != nil || meta["auth_server_metadata"].(map[string]any)["registration_endpoint"] != nil {
			t.Errorf("meta = %v; want a client-driven oauth_flow", meta)
		}
		return id, s
	}
	// A code is no use without a flow agentd drives: refused, and the run goes on.
	id, s := ask()
	e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"code": "c", "state": "s"}})
	if w := warningsOf(s.all()); len(w) != 1 || !strings.Contains(w[0], "holds no access_token") {
		t.Errorf("warnings = %q", w)
	}
	id, s = ask()
	e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"access_token": "client-token"}})
	if s.all(); !slices.Contains(s.types(), "authorization_event") || !slices.Equal(toolResponses(s.events), []string{"hi"}) {
		t.Errorf("events = %v", s.types())
	}
}

// TestMCPOAuthConfiguredClient: remote.oauth (the newer reference's keys) names a
// client registered beforehand, its scopes and redirect URL, for an authorization
// server without dynamic registration; the code comes back as the elicitation's
// answer. The secret is sent to the token endpoint and redacted from the config.
func TestMCPOAuthConfiguredClient(t *testing.T) {
	const redirect = "https://app.example/oauth"
	remote := "          oauth:\n            clientId: static-client\n            clientSecret: lit-secret\n            callbackPort: 8765\n" +
		"            scopes: [files, read]\n            callbackRedirectURL: " + redirect + "\n"
	e, as, _ := oauthEnvYAML(t, "", remote, echoTurn("c1"), fakeTurn{Text: []string{"done"}})
	as.mu.Lock()
	as.noDCR, as.clients["static-client"] = true, redirect
	as.mu.Unlock()
	code, b := e.do("GET", "/api/agents/a", nil)
	if code != 200 || !strings.Contains(string(b), `"clientId":"static-client","clientSecret":"REDACTED"`) || strings.Contains(string(b), "lit-secret") {
		t.Errorf("GET /api/agents/a: %d %s", code, b)
	}
	id := e.newSession(nil)
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "go"}}})
	meta := s.until("elicitation_request")["meta"].(map[string]any)
	authURL, err := url.Parse(fmt.Sprint(meta["docker-agent/authorize_url"]))
	if q := authURL.Query(); err != nil || q.Get("client_id") != "static-client" || q.Get("scope") != "files read" || q.Get("redirect_uri") != redirect {
		t.Fatalf("authorization URL = %v", meta["docker-agent/authorize_url"])
	}
	resp, err := noRedirects.Get(authURL.String())
	if err != nil || resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize: %v %v", resp, err)
	}
	back, _ := url.Parse(resp.Header.Get("Location"))
	// The client answers with the code and state the redirect brought.
	code, b = e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept",
		"content": map[string]any{"code": back.Query().Get("code"), "state": back.Query().Get("state")}})
	if code != 200 {
		t.Fatalf("answer: %d %s", code, b)
	}
	if s.all(); !slices.Contains(s.types(), "authorization_event") || !slices.Equal(toolResponses(s.events), []string{"hi"}) {
		t.Errorf("events = %v", s.types())
	}
	as.mu.Lock()
	defer as.mu.Unlock()
	if !slices.Equal(as.secrets, []string{"lit-secret"}) || len(as.clients) != 1 {
		t.Errorf("token requests sent secrets %q; clients %v (want no registration)", as.secrets, as.clients)
	}
}

func TestMCPOAuthConfigRejectsInsecureRedirect(t *testing.T) {
	e, _, _ := oauthEnvYAML(t, "", "          oauth:\n            callbackRedirectURL: http://app.example/cb\n")
	code, b := e.do("GET", "/api/agents", nil)
	if code != 200 || !strings.Contains(string(b), `a.yaml:17:34: callbackRedirectURL \"http://app.example/cb\": want an absolute https URL`) {
		t.Errorf("GET /api/agents: %d %s", code, b)
	}
}

// TestMCPOAuthDuringApprovedCall: a token revoked while a confirmation waits makes the
// approved call's 401 ask again; the answer (a token) goes to the flow, not to the
// stored confirmation, and is not logged.
func TestMCPOAuthDuringApprovedCall(t *testing.T) {
	e, as, _ := oauthEnv(t, "", fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: "pid", Args: `{}`}}}, fakeTurn{Text: []string{"done"}})
	as.mu.Lock()
	as.valid["tok-a"] = true
	as.mu.Unlock()
	id := e.newSession(nil)
	answer := func(tok string) {
		t.Helper()
		if code, b := e.do("POST", "/api/sessions/"+id+"/elicitation", map[string]any{"action": "accept", "content": map[string]any{"access_token": tok}}); code != 200 {
			t.Fatalf("answer: %d %s", code, b)
		}
	}
	s := e.run("/api/sessions/"+id+"/agent/a", map[string]any{"messages": []map[string]any{{"role": "user", "content": "go"}}})
	s.until("elicitation_request")
	answer("tok-a")
	s.until("tool_call_confirmation")
	as.mu.Lock()
	delete(as.valid, "tok-a")
	as.valid["tok-b"] = true
	as.mu.Unlock()
	if code, b := e.do("POST", "/api/sessions/"+id+"/resume", map[string]any{"confirmation": "approve"}); code != 200 {
		t.Fatalf("approve: %d %s", code, b)
	}
	s.until("elicitation_request")
	answer("tok-b")
	evs := s.all()
	if n := len(eventsOf(evs, "authorization_event")); n != 2 {
		t.Errorf("authorization_event × %d; want 2 (events %v)", n, s.types())
	}
	if r := eventOf(evs, "tool_call_response"); r == nil || r["result"].(map[string]any)["isError"] == true {
		t.Errorf("tool_call_response = %v", r)
	}
	if logs := e.logged(); strings.Contains(logs, "stored question") || strings.Contains(logs, "tok-a") || strings.Contains(logs, "tok-b") {
		t.Errorf("the log mentions the answer or a stored question:\n%s", logs)
	}
}
