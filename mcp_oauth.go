package main

// mcp_oauth.go: OAuth for remote MCP servers, as the MCP authorization spec
// (2025-06-18) asks of a client: a 401 with a WWW-Authenticate challenge leads to
// the server's protected resource metadata (RFC 9728), its authorization server's
// metadata (RFC 8414, or OpenID discovery), dynamic client registration when offered
// (RFC 7591), and the authorization code grant with PKCE S256 and the resource
// indicator (RFC 8707).
//
// agentd has no browser: like the reference's serve api ("unmanaged" OAuth), the run
// asks its client with an elicitation_request whose meta says "oauth_flow" (under
// both the cagent/ and the docker-agent/ prefixes, for old and new clients). With
// --mcp-oauth-redirect-uri set, agentd drives the flow: the meta carries the
// authorization URL and state, and the code comes back either as the elicitation's
// answer {code, state} or through POST /api/mcp-oauth/callback; agentd exchanges it.
// Without it the client runs the whole flow and answers {access_token, …}.
//
// Tokens are stored per MCP server URL in the session database and refreshed with
// their refresh token when they expire. They are never logged: the token type
// redacts itself, and errors quote only the OAuth error fields of a response.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	mcpOAuthMaxBody  = 256 << 10        // bytes of a metadata, registration or token response
	mcpOAuthTimeout  = 30 * time.Second // one request to an OAuth endpoint
	mcpOAuthEarly    = 30 * time.Second // a token this close to expiry is refreshed first
	mcpOAuthClientID = "agentd"
)

// mcpOAuth is the server-wide side of MCP OAuth: the token store, the HTTP client for
// OAuth endpoints, the redirect URI, and the flows waiting for a callback by state.
type mcpOAuth struct {
	st          *store
	http        *http.Client
	redirectURI string // --mcp-oauth-redirect-uri; "" = the client runs the flow
	log         *slog.Logger

	mu      sync.Mutex
	pending map[string]chan mcpOAuthCallback
}

// mcpOAuthCallback is what POST /api/mcp-oauth/callback delivers to a waiting flow.
type mcpOAuthCallback struct{ code, err, desc string }

func newMCPOAuth(st *store, client *http.Client, redirectURI string, log *slog.Logger) *mcpOAuth {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &mcpOAuth{st: st, http: client, redirectURI: redirectURI, log: log, pending: map[string]chan mcpOAuthCallback{}}
}

// checkRedirectURI accepts an absolute https URL, or http on a loopback host
// (RFC 8252 §7.3): the code travels in it.
func checkRedirectURI(raw string) error {
	if raw == "" {
		return nil
	}
	if !secureOAuthURL(raw) {
		return fmt.Errorf("--mcp-oauth-redirect-uri %q: want an absolute https URL (http only on a loopback host)", raw)
	}
	return nil
}

// secureOAuthURL reports whether codes and tokens may travel to raw: https, or http
// to a loopback host.
func secureOAuthURL(raw string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return u.Scheme == "http" && (host == "localhost" || ip != nil && ip.IsLoopback())
}

// deliver hands a callback to the flow waiting on state.
func (m *mcpOAuth) deliver(state string, cb mcpOAuthCallback) error {
	m.mu.Lock()
	ch := m.pending[state]
	m.mu.Unlock()
	if ch == nil {
		return notFound("no pending OAuth flow for the given state")
	}
	select {
	case ch <- cb:
		return nil
	default:
		return conflict("the OAuth flow for the given state already has its callback")
	}
}

func (m *mcpOAuth) wait(state string) chan mcpOAuthCallback {
	ch := make(chan mcpOAuthCallback, 1)
	m.mu.Lock()
	m.pending[state] = ch
	m.mu.Unlock()
	return ch
}

func (m *mcpOAuth) forget(state string) {
	m.mu.Lock()
	delete(m.pending, state)
	m.mu.Unlock()
}

// serveMCPOAuthCallback is POST /api/mcp-oauth/callback?state=…&code=… (or
// &error=…&error_description=…): the out-of-band end of a flow agentd drives. The
// unguessable state is its authorisation (plus the bearer token when one is set).
func (s *server) serveMCPOAuthCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	state := q.Get("state")
	cb := mcpOAuthCallback{code: q.Get("code"), err: q.Get("error"), desc: q.Get("error_description")}
	switch {
	case state == "":
		s.writeError(w, r, badRequest("missing state query parameter"))
	case cb.code == "" && cb.err == "":
		s.writeError(w, r, badRequest("missing both code and error query parameters"))
	case s.cfg.mcpOAuth == nil:
		s.writeError(w, r, notFound("no pending OAuth flow for the given state"))
	default:
		if err := s.cfg.mcpOAuth.deliver(state, cb); err != nil {
			s.writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, nil)
	}
}

// mcpOAuthToken is what is stored for one MCP server.
type mcpOAuthToken struct {
	AccessToken   string    `json:"access_token"`
	TokenType     string    `json:"token_type,omitempty"`
	RefreshToken  string    `json:"refresh_token,omitempty"`
	ExpiresAt     time.Time `json:"expires_at,omitzero"`
	ClientID      string    `json:"client_id,omitempty"`
	ClientSecret  string    `json:"client_secret,omitempty"`
	TokenEndpoint string    `json:"token_endpoint,omitempty"`
	Resource      string    `json:"resource,omitempty"`
}

// LogValue, String and GoString keep a token out of logs and error texts, whatever
// prints it.
func (t *mcpOAuthToken) LogValue() slog.Value { return slog.StringValue("[REDACTED]") }
func (t *mcpOAuthToken) String() string       { return "[REDACTED]" }
func (t *mcpOAuthToken) GoString() string     { return "[REDACTED]" }

func (t *mcpOAuthToken) expired() bool {
	return !t.ExpiresAt.IsZero() && time.Now().Add(mcpOAuthEarly).After(t.ExpiresAt)
}

// mcpToken is the stored token of server, or nil.
func (st *store) mcpToken(ctx context.Context, server string) (*mcpOAuthToken, error) {
	var text string
	err := st.r.QueryRowContext(ctx, "SELECT token_json FROM agentd_mcp_oauth_tokens WHERE server_url = ?", server).Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	tok := new(mcpOAuthToken)
	if err := json.Unmarshal([]byte(text), tok); err != nil {
		return nil, errors.New("stored MCP OAuth token is unreadable")
	}
	return tok, nil
}

// setMCPToken stores (or replaces) server's token.
func (st *store) setMCPToken(ctx context.Context, server string, tok *mcpOAuthToken) error {
	b, err := json.Marshal(tok)
	if err != nil {
		return err
	}
	_, err = st.exec(ctx, `INSERT INTO agentd_mcp_oauth_tokens (server_url, token_json, updated_at) VALUES (?, ?, ?)
		ON CONFLICT(server_url) DO UPDATE SET token_json = excluded.token_json, updated_at = excluded.updated_at`,
		server, string(b), storeTimeText(time.Now()))
	return err
}

// mcpAuthError is a 401 from an MCP server: its challenge, and the Authorization
// header the refused request carried.
type mcpAuthError struct {
	challenge string
	sent      string
}

func (e *mcpAuthError) Error() string {
	return "HTTP 401 Unauthorized: the server requires OAuth authorization"
}

func mcpAuthErrorOf(req *http.Request, resp *http.Response) error {
	io.Copy(io.Discard, io.LimitReader(resp.Body, mcpMaxErrorBody))
	return &mcpAuthError{challenge: resp.Header.Get("WWW-Authenticate"), sent: req.Header.Get("Authorization")}
}

// mcpOAuthPrompt is how a run lets MCP OAuth ask its client: the run's elicitation,
// and the authorization_event once a token is stored. Servers whose authorization
// failed in the run are not asked about again in it (tools are listed every turn).
type mcpOAuthPrompt struct {
	elicit     func(context.Context, elicitationRequest) (elicitationResponse, error)
	authorized func()

	mu      sync.Mutex
	refused map[string]error
}

type mcpOAuthPromptKey struct{}

// elicitOAuth asks the run's client an MCP server's OAuth question. Unlike a tool's
// question it is never stored for a restart (a flow lives in this process) and its
// answer, which may hold a token, is not recorded anywhere.
func (rn *runner) elicitOAuth(ctx context.Context, req elicitationRequest) (elicitationResponse, error) {
	if rn.unattended {
		return elicitationResponse{Action: "decline"}, errors.New("a background agent cannot ask the user")
	}
	req.ElicitationID = rn.rs.elicitationID(req.ElicitationID)
	ev := elicitationRequestEvent(req)
	p := rn.rs.ask("elicitation", toolCall{}, req.Schema, req.ElicitationID, ev)
	rn.sink.send(ev)
	a, err := rn.rs.wait(ctx, p)
	if err != nil {
		return elicitationResponse{Action: "cancel"}, err
	}
	return a.(elicitationResponse), nil
}

func withMCPOAuthPrompt(ctx context.Context, p *mcpOAuthPrompt) context.Context {
	return context.WithValue(ctx, mcpOAuthPromptKey{}, p)
}

// mcpOAuthClient is one MCP server's OAuth state, shared by its connections.
type mcpOAuthClient struct {
	m      *mcpOAuth
	server string // the server URL without query or fragment: what tokens are stored under
	log    *slog.Logger
	cfg    remoteOAuthConfig // the toolset's remote.oauth, secret expanded
	flow   chan struct{}     // one refresh or authorization at a time

	mu     sync.Mutex
	tok    *mcpOAuthToken
	loaded bool
}

func (m *mcpOAuth) client(u *url.URL, log *slog.Logger, cfg *remoteOAuthConfig, getenv func(string) string) *mcpOAuthClient {
	key := *u
	key.RawQuery, key.Fragment, key.User = "", "", nil
	c := &mcpOAuthClient{m: m, server: key.String(), log: log, flow: make(chan struct{}, 1)}
	if cfg != nil {
		c.cfg = *cfg
		c.cfg.ClientSecret = expandEnvTemplate(cfg.ClientSecret, getenv)
	}
	return c
}

// redirectURI is the toolset's own redirect URI, else the server's.
func (c *mcpOAuthClient) redirectURI() string {
	if c.cfg.CallbackRedirectURL != "" {
		return c.cfg.CallbackRedirectURL
	}
	return c.m.redirectURI
}

// token is the current token (loaded from the store on first use), or nil.
func (c *mcpOAuthClient) token(ctx context.Context) *mcpOAuthToken {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		tok, err := c.m.st.mcpToken(ctx, c.server)
		if err != nil {
			c.log.Warn("mcp oauth: reading the stored token failed", "err", err)
			return nil
		}
		c.tok, c.loaded = tok, true
	}
	return c.tok
}

// header sets the bearer token on req, refreshing an expired one first when no
// other refresh or authorization is under way (one that is answers with a 401 and
// waits its turn in authorize).
func (c *mcpOAuthClient) header(req *http.Request) {
	tok := c.token(req.Context())
	if tok == nil {
		return
	}
	if tok.expired() && tok.RefreshToken != "" {
		select {
		case c.flow <- struct{}{}:
			if fresh, err := c.refresh(req.Context(), tok); err == nil {
				tok = fresh
			}
			<-c.flow
		default:
		}
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
}

// authorize gets a token the server should accept after it refused ae.sent: one
// stored meanwhile, a refreshed one, or a new one from the run's client.
func (c *mcpOAuthClient) authorize(ctx context.Context, ae *mcpAuthError) error {
	select {
	case c.flow <- struct{}{}:
		defer func() { <-c.flow }()
	case <-ctx.Done():
		return ctx.Err()
	}
	tok := c.token(ctx)
	if tok != nil && "Bearer "+tok.AccessToken != ae.sent {
		return nil // another run authorized while this one waited
	}
	if tok != nil && tok.RefreshToken != "" {
		if _, err := c.refresh(ctx, tok); err == nil {
			return nil
		} else {
			c.log.Info("mcp oauth: refreshing the token failed; asking for a new authorization", "err", err)
		}
	}
	p, _ := ctx.Value(mcpOAuthPromptKey{}).(*mcpOAuthPrompt)
	if p == nil {
		return errors.New("the server requires OAuth authorization, which a run's client gives")
	}
	p.mu.Lock()
	err := p.refused[c.server]
	p.mu.Unlock()
	if err != nil {
		return err
	}
	if tok, err = c.interactive(ctx, p, ae.challenge); err == nil {
		err = c.save(ctx, tok)
	}
	if err != nil {
		if ctx.Err() == nil {
			p.mu.Lock()
			if p.refused == nil {
				p.refused = map[string]error{}
			}
			p.refused[c.server] = fmt.Errorf("OAuth authorization failed: %w", err)
			err = p.refused[c.server]
			p.mu.Unlock()
		}
		return err
	}
	p.authorized()
	return nil
}

// save stores tok and makes it current.
func (c *mcpOAuthClient) save(ctx context.Context, tok *mcpOAuthToken) error {
	if err := c.m.st.setMCPToken(context.WithoutCancel(ctx), c.server, tok); err != nil {
		return fmt.Errorf("storing the token: %w", err)
	}
	c.mu.Lock()
	c.tok, c.loaded = tok, true
	c.mu.Unlock()
	return nil
}

// refresh trades tok's refresh token for a new token and stores it. The caller holds
// the flow.
func (c *mcpOAuthClient) refresh(ctx context.Context, tok *mcpOAuthToken) (*mcpOAuthToken, error) {
	if tok.TokenEndpoint == "" {
		return nil, errors.New("no token endpoint recorded")
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}
	fresh, err := c.tokenRequest(ctx, tok.TokenEndpoint, form, tok.ClientID, tok.ClientSecret, tok.Resource)
	if err != nil {
		return nil, err
	}
	if fresh.RefreshToken == "" {
		fresh.RefreshToken = tok.RefreshToken // RFC 6749 §6: the old one stays valid
	}
	return fresh, c.save(ctx, fresh)
}

// mcpResourceMetadata is the part of RFC 9728 metadata agentd uses.
type mcpResourceMetadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported"`
}

// mcpASMetadata is the part of RFC 8414 metadata agentd uses.
type mcpASMetadata struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	RegistrationEndpoint          string   `json:"registration_endpoint"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
}

// mcpOAuthServer is what discovery found: the documents as served (for the
// elicitation's meta) and the fields used.
type mcpOAuthServer struct {
	resource, as       mcpOAuthDoc
	prm                mcpResourceMetadata
	meta               mcpASMetadata
	issuer, scope, res string // res: the resource indicator
}

type mcpOAuthDoc = json.RawMessage

// discover follows the challenge to the authorization server's metadata.
func (c *mcpOAuthClient) discover(ctx context.Context, challenge string) (*mcpOAuthServer, error) {
	d := &mcpOAuthServer{}
	server, _ := url.Parse(c.server)
	origin := server.Scheme + "://" + server.Host
	candidates := []string{origin + "/.well-known/oauth-protected-resource" + strings.TrimSuffix(server.Path, "/"), origin + "/.well-known/oauth-protected-resource"}
	if u := challengeParam(challenge, "resource_metadata"); u != "" {
		candidates = []string{u}
	}
	if err := c.getFirst(ctx, candidates, &d.resource, &d.prm); err != nil {
		return nil, fmt.Errorf("protected resource metadata: %w", err)
	}
	if d.prm.Resource != "" {
		if r, err := url.Parse(d.prm.Resource); err != nil || r.Scheme+"://"+r.Host != origin {
			return nil, fmt.Errorf("protected resource metadata names resource %q, not this server", d.prm.Resource)
		}
	}
	if len(d.prm.AuthorizationServers) == 0 {
		return nil, errors.New("protected resource metadata names no authorization server")
	}
	d.issuer = d.prm.AuthorizationServers[0]
	if err := c.getFirst(ctx, asMetadataURLs(d.issuer), &d.as, &d.meta); err != nil {
		return nil, fmt.Errorf("authorization server metadata of %s: %w", d.issuer, err)
	}
	m := d.meta
	for _, e := range []string{m.AuthorizationEndpoint, m.TokenEndpoint} {
		if !secureOAuthURL(e) {
			return nil, fmt.Errorf("authorization server endpoint %q is neither https nor loopback", e)
		}
	}
	if m.RegistrationEndpoint != "" && !secureOAuthURL(m.RegistrationEndpoint) {
		return nil, fmt.Errorf("registration endpoint %q is neither https nor loopback", m.RegistrationEndpoint)
	}
	if len(m.CodeChallengeMethodsSupported) > 0 && !slices.Contains(m.CodeChallengeMethodsSupported, "S256") {
		return nil, errors.New("the authorization server does not support PKCE S256")
	}
	d.scope = strings.Join(c.cfg.Scopes, " ")
	if d.scope == "" {
		d.scope = challengeParam(challenge, "scope")
	}
	if d.scope == "" {
		d.scope = strings.Join(d.prm.ScopesSupported, " ")
	}
	d.res = d.prm.Resource
	if d.res == "" {
		d.res = c.server
	}
	return d, nil
}

// asMetadataURLs are where an issuer's metadata may be: RFC 8414 §3.1 (the
// well-known suffix inserted before the path), then OpenID Connect discovery both ways.
func asMetadataURLs(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return []string{issuer}
	}
	origin, path := u.Scheme+"://"+u.Host, strings.TrimSuffix(u.Path, "/")
	if path == "" {
		return []string{origin + "/.well-known/oauth-authorization-server", origin + "/.well-known/openid-configuration"}
	}
	return []string{origin + "/.well-known/oauth-authorization-server" + path, origin + "/.well-known/openid-configuration" + path,
		origin + path + "/.well-known/openid-configuration"}
}

// getFirst GETs the first candidate that answers 200 with a JSON object, keeping the
// document as served in raw and decoded in v.
func (c *mcpOAuthClient) getFirst(ctx context.Context, candidates []string, raw *mcpOAuthDoc, v any) error {
	var last error
	for _, u := range candidates {
		if !secureOAuthURL(u) {
			last = fmt.Errorf("%s is neither https nor loopback", u)
			continue
		}
		body, status, err := c.do(ctx, http.MethodGet, u, nil, "")
		switch {
		case err != nil:
			last = err
		case status != http.StatusOK:
			last = fmt.Errorf("GET %s: HTTP %d", u, status)
		case json.Unmarshal(body, v) != nil || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")):
			last = fmt.Errorf("GET %s: not a JSON object", u)
		default:
			*raw = body
			return nil
		}
	}
	return last
}

// do sends one request to an OAuth endpoint and reads a bounded answer.
func (c *mcpOAuthClient) do(ctx context.Context, method, u string, body []byte, contentType string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, mcpOAuthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.m.http.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, mcpOAuthMaxBody+1))
	if err == nil && len(b) > mcpOAuthMaxBody {
		err = fmt.Errorf("%s %s: answer larger than %d bytes", method, u, mcpOAuthMaxBody)
	}
	return b, resp.StatusCode, err
}

// mcpOAuthFlow is what one authorization agentd drives needs after the elicitation.
type mcpOAuthFlow struct {
	state, verifier, clientID, secret, redirect string
	answer                                      chan mcpOAuthCallback
}

// interactive asks the run's client to authorize, and returns the new token.
func (c *mcpOAuthClient) interactive(ctx context.Context, p *mcpOAuthPrompt, challenge string) (*mcpOAuthToken, error) {
	d, err := c.discover(ctx, challenge)
	if err != nil {
		return nil, err
	}
	meta := map[string]any{"auth_server": d.issuer, "auth_server_metadata": d.as, "resource_metadata": d.resource}
	setBoth := func(k string, v any) { meta["cagent/"+k], meta["docker-agent/"+k] = v, v }
	setBoth("type", "oauth_flow")
	setBoth("server_url", c.server)
	var f *mcpOAuthFlow
	// Without a configured client or dynamic registration agentd has no client id to
	// drive the flow with; the client may still run it itself and answer with a token.
	if c.redirectURI() != "" && (c.cfg.ClientID != "" || d.meta.RegistrationEndpoint != "") {
		var authURL string
		if f, authURL, err = c.start(ctx, d); err != nil {
			return nil, err
		}
		defer c.m.forget(f.state)
		setBoth("authorize_url", authURL)
		setBoth("state", f.state)
	}
	ectx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		resp elicitationResponse
		err  error
	}
	answered := make(chan result, 1)
	go func() {
		resp, err := p.elicit(ectx, elicitationRequest{Message: "OAuth authorization required for " + c.server, Meta: meta})
		answered <- result{resp, err}
	}()
	var callback chan mcpOAuthCallback // nil, never ready, unless agentd drives the flow
	if f != nil {
		callback = f.answer
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case cb := <-callback:
		cancel() // answered out of band; the elicitation is moot
		if cb.err != "" {
			return nil, fmt.Errorf("the authorization server answered %s: %s", cb.err, cb.desc)
		}
		return c.exchange(ctx, d, f, cb.code)
	case a := <-answered:
		if a.err != nil {
			return nil, a.err
		}
		if a.resp.Action != "accept" {
			return nil, fmt.Errorf("the client answered %q", a.resp.Action)
		}
		return c.fromAnswer(ctx, d, f, a.resp.Content)
	}
}

// start builds the authorization URL with a fresh state and PKCE verifier, for the
// configured client or one registered now (RFC 7591).
func (c *mcpOAuthClient) start(ctx context.Context, d *mcpOAuthServer) (*mcpOAuthFlow, string, error) {
	f := &mcpOAuthFlow{state: rand.Text(), verifier: rand.Text() + rand.Text(), redirect: c.redirectURI(),
		clientID: c.cfg.ClientID, secret: c.cfg.ClientSecret}
	if f.clientID == "" {
		if err := c.register(ctx, d, f); err != nil {
			return nil, "", err
		}
	}
	sum := sha256.Sum256([]byte(f.verifier))
	q := url.Values{"response_type": {"code"}, "client_id": {f.clientID}, "redirect_uri": {f.redirect},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
		"state": {f.state}, "resource": {d.res}}
	if d.scope != "" {
		q.Set("scope", d.scope)
	}
	authURL, err := url.Parse(d.meta.AuthorizationEndpoint)
	if err != nil {
		return nil, "", err
	}
	for k, v := range authURL.Query() { // the endpoint's own parameters stay
		if !q.Has(k) {
			q[k] = v
		}
	}
	authURL.RawQuery = q.Encode()
	f.answer = c.m.wait(f.state)
	return f, authURL.String(), nil
}

// register registers agentd as a public client for f's redirect URI.
func (c *mcpOAuthClient) register(ctx context.Context, d *mcpOAuthServer, f *mcpOAuthFlow) error {
	reg, _ := json.Marshal(map[string]any{
		"client_name": mcpOAuthClientID, "redirect_uris": []string{f.redirect},
		"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"},
		"token_endpoint_auth_method": "none",
	})
	body, status, err := c.do(ctx, http.MethodPost, d.meta.RegistrationEndpoint, reg, "application/json")
	if err != nil {
		return fmt.Errorf("client registration: %w", err)
	}
	var client struct {
		ClientID     string `json:"client_id"`
		ClientSecret string `json:"client_secret"`
	}
	if status/100 != 2 || json.Unmarshal(body, &client) != nil || client.ClientID == "" {
		return fmt.Errorf("client registration: HTTP %d%s", status, oauthErrorText(body))
	}
	f.clientID, f.secret = client.ClientID, client.ClientSecret
	return nil
}

// fromAnswer reads the elicitation's answer: a token the client obtained itself, or
// the code and state of a flow agentd drives.
func (c *mcpOAuthClient) fromAnswer(ctx context.Context, d *mcpOAuthServer, f *mcpOAuthFlow, content map[string]any) (*mcpOAuthToken, error) {
	str := func(k string) string { s, _ := content[k].(string); return s }
	if at := str("access_token"); at != "" {
		tok := &mcpOAuthToken{AccessToken: at, TokenType: str("token_type"), RefreshToken: str("refresh_token"),
			TokenEndpoint: d.meta.TokenEndpoint, Resource: d.res, ClientID: str("client_id")}
		if n, ok := content["expires_in"].(float64); ok && n > 0 {
			tok.ExpiresAt = time.Now().Add(time.Duration(n) * time.Second)
		}
		return tok, nil
	}
	code, state := str("code"), str("state")
	switch {
	case f == nil:
		return nil, errors.New("the answer holds no access_token (agentd drives no flow without a redirect URI and a client id or dynamic registration)")
	case code == "" || state == "":
		return nil, errors.New("the answer holds neither an access_token nor a code and state")
	case subtle.ConstantTimeCompare([]byte(state), []byte(f.state)) != 1:
		return nil, errors.New("the answer's state is not this flow's")
	}
	return c.exchange(ctx, d, f, code)
}

// exchange trades an authorization code for a token (RFC 6749 §4.1.3 with the PKCE
// verifier).
func (c *mcpOAuthClient) exchange(ctx context.Context, d *mcpOAuthServer, f *mcpOAuthFlow, code string) (*mcpOAuthToken, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {f.redirect}, "code_verifier": {f.verifier}}
	return c.tokenRequest(ctx, d.meta.TokenEndpoint, form, f.clientID, f.secret, d.res)
}

// tokenRequest posts a token request and reads the token, remembering what a later
// refresh needs.
func (c *mcpOAuthClient) tokenRequest(ctx context.Context, endpoint string, form url.Values, clientID, secret, resource string) (*mcpOAuthToken, error) {
	form.Set("client_id", clientID)
	form.Set("resource", resource)
	if secret != "" {
		form.Set("client_secret", secret)
	}
	body, status, err := c.do(ctx, http.MethodPost, endpoint, []byte(form.Encode()), "application/x-www-form-urlencoded")
	if err != nil {
		return nil, fmt.Errorf("token request: %w", err)
	}
	var t struct {
		AccessToken  string  `json:"access_token"`
		TokenType    string  `json:"token_type"`
		RefreshToken string  `json:"refresh_token"`
		ExpiresIn    float64 `json:"expires_in"`
	}
	if status != http.StatusOK || json.Unmarshal(body, &t) != nil || t.AccessToken == "" {
		return nil, fmt.Errorf("token request: HTTP %d%s", status, oauthErrorText(body))
	}
	tok := &mcpOAuthToken{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken,
		ClientID: clientID, ClientSecret: secret, TokenEndpoint: endpoint, Resource: resource}
	if t.ExpiresIn > 0 {
		tok.ExpiresAt = time.Now().Add(time.Duration(t.ExpiresIn) * time.Second)
	}
	return tok, nil
}

// oauthErrorText quotes only the OAuth error fields of an error answer (RFC 6749
// §5.2): the rest of a body could echo a code or a token.
func oauthErrorText(body []byte) string {
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return ""
	}
	s := ": " + mcpTrim(e.Error, 100)
	if e.Description != "" {
		s += ": " + mcpTrim(e.Description, 300)
	}
	return s
}

// challengeParam is the value of a parameter of a WWW-Authenticate Bearer challenge
// (quoted or a token), or "".
func challengeParam(challenge, name string) string {
	s := challenge
	for {
		i := strings.Index(strings.ToLower(s), name+"=")
		if i < 0 {
			return ""
		}
		if i > 0 && !strings.ContainsRune(" ,\t", rune(s[i-1])) {
			s = s[i+len(name)+1:]
			continue
		}
		v := s[i+len(name)+1:]
		if strings.HasPrefix(v, `"`) {
			v = v[1:]
			var b strings.Builder
			for j := 0; j < len(v); j++ {
				switch v[j] {
				case '\\':
					if j+1 < len(v) {
						j++
						b.WriteByte(v[j])
					}
				case '"':
					return b.String()
				default:
					b.WriteByte(v[j])
				}
			}
			return b.String()
		}
		if end := strings.IndexAny(v, " ,\t"); end >= 0 {
			v = v[:end]
		}
		return v
	}
}
