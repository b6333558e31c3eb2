package main

// oci_auth.go: how the OCI puller authenticates to a registry (spec/OCI.md
// §3.1): parsing the WWW-Authenticate challenge, finding credentials in
// docker config.json (auths, credsStore, credHelpers) or a
// docker-credential-* helper, and trading them for a cached Bearer token.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ---------------------------------------------------------------------------
// WWW-Authenticate

// ociChallenge is one challenge from a WWW-Authenticate header. Scheme and
// parameter names are lowercased (RFC 9110 §11: both are case-insensitive).
type ociChallenge struct {
	Scheme string
	Params map[string]string
}

// parseAuthChallenge parses a WWW-Authenticate value holding one or more
// challenges (RFC 9110 §11.6.1), e.g. `Bearer realm="https://auth",service="x"`.
// token68 credentials are skipped. It returns an error for malformed input
// (unterminated quotes, a parameter without a scheme) rather than guessing.
func parseAuthChallenge(h string) ([]ociChallenge, error) {
	var out []ociChallenge
	sc := ociChallengeScanner{h: h}
	for {
		sc.skip(" \t,")
		if sc.i >= len(h) {
			break
		}
		scheme := sc.token()
		if scheme == "" {
			return nil, fmt.Errorf("malformed WWW-Authenticate %q: expected an auth scheme at offset %d", h, sc.i)
		}
		if sc.at('=') {
			return nil, fmt.Errorf("malformed WWW-Authenticate %q: parameter %q before any auth scheme", h, scheme)
		}
		c := ociChallenge{Scheme: strings.ToLower(scheme), Params: map[string]string{}}
		if err := sc.params(c.Params); err != nil {
			return nil, err
		}
		out = append(out, c)
		if sc.i < len(h) && !ociTokenChar(h[sc.i]) && h[sc.i] != ',' && h[sc.i] != ' ' && h[sc.i] != '\t' {
			return nil, sc.unexpected()
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty WWW-Authenticate header")
	}
	return out, nil
}

// ociChallengeScanner reads a WWW-Authenticate value h from offset i.
type ociChallengeScanner struct {
	h string
	i int
}

// at reports whether the next byte is c.
func (sc *ociChallengeScanner) at(c byte) bool { return sc.i < len(sc.h) && sc.h[sc.i] == c }

// skip advances over any bytes in set.
func (sc *ociChallengeScanner) skip(set string) {
	for sc.i < len(sc.h) && strings.IndexByte(set, sc.h[sc.i]) >= 0 {
		sc.i++
	}
}

// token reads a (possibly empty) run of tchars.
func (sc *ociChallengeScanner) token() string {
	start := sc.i
	for sc.i < len(sc.h) && ociTokenChar(sc.h[sc.i]) {
		sc.i++
	}
	return sc.h[start:sc.i]
}

// unexpected is the error for the byte at the current offset.
func (sc *ociChallengeScanner) unexpected() error {
	return fmt.Errorf("malformed WWW-Authenticate %q: unexpected %q at offset %d", sc.h, sc.h[sc.i], sc.i)
}

// params reads one challenge's parameters into params: name = (token |
// quoted-string), comma separated, names lowercased. It stops at the end or
// before a token not followed by '=', which starts the next challenge.
func (sc *ociChallengeScanner) params(params map[string]string) error {
	for {
		sc.skip(" \t")
		save := sc.i
		name := sc.token()
		if name == "" {
			if sc.at(',') {
				sc.i++
				continue
			}
			return nil
		}
		sc.skip(" \t")
		if !sc.at('=') {
			sc.i = save // next challenge's scheme
			return nil
		}
		sc.i++
		if sc.i >= len(sc.h) || sc.at('=') || sc.at(',') {
			// token68 such as "abc==": skip to the next comma.
			for sc.i < len(sc.h) && !sc.at(',') {
				sc.i++
			}
			continue
		}
		sc.skip(" \t")
		val, err := sc.value()
		if err != nil {
			return err
		}
		params[strings.ToLower(name)] = val
		sc.skip(" \t")
		if sc.at(',') {
			sc.i++
			continue
		}
		if sc.i < len(sc.h) && !ociTokenChar(sc.h[sc.i]) {
			return sc.unexpected()
		}
	}
}

// value reads a parameter value: a token, or a quoted-string with its
// backslash escapes undone.
func (sc *ociChallengeScanner) value() (string, error) {
	if !sc.at('"') {
		return sc.token(), nil
	}
	sc.i++
	var b strings.Builder
	for sc.i < len(sc.h) {
		ch := sc.h[sc.i]
		sc.i++
		if ch == '\\' && sc.i < len(sc.h) {
			b.WriteByte(sc.h[sc.i])
			sc.i++
			continue
		}
		if ch == '"' {
			return b.String(), nil
		}
		b.WriteByte(ch)
	}
	return "", fmt.Errorf("malformed WWW-Authenticate %q: unterminated quoted string", sc.h)
}

// ociTokenChar reports whether c is an RFC 9110 tchar.
func ociTokenChar(c byte) bool {
	return c > ' ' && c < 0x7f && !strings.ContainsRune(`"(),/:;<=>?@[\]{}`, rune(c))
}

// ---------------------------------------------------------------------------
// Credentials

// ociCreds are the credentials found for a registry; the zero value is anonymous.
type ociCreds struct {
	Username, Password string
	IdentityToken      string // exchanged for a token with the refresh_token grant
	RegistryToken      string // sent as Bearer as is
}

// ociAuthEntry is one config.json "auths" entry.
type ociAuthEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// ociDockerConfig is the part of ~/.docker/config.json the puller reads.
type ociDockerConfig struct {
	Auths       map[string]ociAuthEntry `json:"auths"`
	CredsStore  string                  `json:"credsStore"`
	CredHelpers map[string]string       `json:"credHelpers"`
}

// credentials finds credentials for ref the way the reference does
// (spec/OCI.md §3.2): the Docker config file (or podman's auth.json when there
// is none), keys "<registry>/<repository>" then "<registry>" (Docker Hub's bare
// key is https://index.docker.io/v1/), each tried in credHelpers, credsStore,
// then auths. No config at all means anonymous. Helper failures other than
// "credentials not found" are errors.
func (p *ociPuller) credentials(ctx context.Context, ref ociRef) (ociCreds, error) {
	cfg, envAuths, err := p.dockerConfig()
	if err != nil || cfg == nil {
		return ociCreds{}, err
	}
	for _, key := range []string{ref.Registry + "/" + ref.Repository, ref.Registry} {
		if key == ociDockerHub {
			key = ociDockerHubAuthKey
		}
		// DOCKER_AUTH_CONFIG (docker/cli v29) is consulted before the file's stores.
		if e, ok := ociFindAuth(envAuths, key); ok && e.Auth != "" {
			c, err := ociDecodeAuth(e)
			if err != nil {
				return ociCreds{}, fmt.Errorf("DOCKER_AUTH_CONFIG: %w", err)
			}
			if c != (ociCreds{}) {
				return c, nil
			}
		}
		helper := cfg.CredsStore
		if h, ok := cfg.CredHelpers[key]; ok {
			helper = h
		}
		var c ociCreds
		if helper != "" {
			c, err = p.runCredHelper(ctx, helper, key)
			if err != nil {
				return ociCreds{}, err
			}
		} else if e, ok := ociFindHubAuth(cfg.Auths, key); ok {
			c, err = ociDecodeAuth(e)
			if err != nil {
				return ociCreds{}, fmt.Errorf("docker config auths[%q]: %w", key, err)
			}
		}
		if c != (ociCreds{}) {
			return c, nil
		}
	}
	return ociCreds{}, nil
}

// dockerConfig loads the credential configuration: $DOCKER_CONFIG/config.json
// or ~/.docker/config.json if either exists, else $REGISTRY_AUTH_FILE, else
// $XDG_RUNTIME_DIR/containers/auth.json. It returns nil when there is none.
// envAuths holds DOCKER_AUTH_CONFIG's auths, honoured only with a config file.
func (p *ociPuller) dockerConfig() (cfg *ociDockerConfig, envAuths map[string]ociAuthEntry, err error) {
	home := p.getenv("HOME")
	dir := p.getenv("DOCKER_CONFIG")
	found := home != "" && ociFileExists(filepath.Join(home, ".docker", "config.json")) ||
		dir != "" && ociFileExists(filepath.Join(dir, "config.json"))
	var path string
	switch {
	case found:
		if dir == "" {
			dir = filepath.Join(home, ".docker")
		}
		path = filepath.Join(dir, "config.json")
	case p.getenv("REGISTRY_AUTH_FILE") != "" && ociFileExists(p.getenv("REGISTRY_AUTH_FILE")):
		path = p.getenv("REGISTRY_AUTH_FILE")
	case p.getenv("XDG_RUNTIME_DIR") != "" && ociFileExists(filepath.Join(p.getenv("XDG_RUNTIME_DIR"), "containers", "auth.json")):
		path = filepath.Join(p.getenv("XDG_RUNTIME_DIR"), "containers", "auth.json")
	default:
		return nil, nil, nil
	}
	cfg = &ociDockerConfig{}
	data, err := ociReadFileLimit(path, maxOCIConfigFile)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil, nil // DOCKER_CONFIG set but only ~/.docker has a file: docker/cli loads an empty config
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading registry credentials: %w", err)
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, cfg); err != nil {
			return nil, nil, fmt.Errorf("parsing %s: %w", path, err)
		}
	}
	if found {
		if env := p.getenv("DOCKER_AUTH_CONFIG"); env != "" {
			var ec struct {
				Auths map[string]ociAuthEntry `json:"auths"`
			}
			if err := json.Unmarshal([]byte(env), &ec); err != nil {
				return nil, nil, fmt.Errorf("parsing DOCKER_AUTH_CONFIG: %w", err)
			}
			envAuths = ec.Auths
		}
	}
	return cfg, envAuths, nil
}

// ociFindAuth looks key up in auths: exactly, else any entry whose key reduced
// to host[:port] equals key (docker/cli's ConvertToHostname; keys are tried in
// sorted order so the answer is deterministic).
func ociFindAuth(auths map[string]ociAuthEntry, key string) (ociAuthEntry, bool) {
	if e, ok := auths[key]; ok {
		return e, true
	}
	for _, k := range slices.Sorted(maps.Keys(auths)) {
		if ociConvertToHostname(k) == key {
			return auths[k], true
		}
	}
	return ociAuthEntry{}, false
}

// ociFindHubAuth is ociFindAuth plus, for Docker Hub's bare key, the other
// names Docker Hub goes by. The reference only knows https://index.docker.io/v1/,
// so a podman auth.json (which writes "docker.io") gives it no credentials.
func ociFindHubAuth(auths map[string]ociAuthEntry, key string) (ociAuthEntry, bool) {
	if e, ok := ociFindAuth(auths, key); ok || key != ociDockerHubAuthKey {
		return e, ok
	}
	for _, alias := range []string{ociDockerHub, "docker.io", "registry-1.docker.io"} {
		if e, ok := ociFindAuth(auths, alias); ok {
			return e, true
		}
	}
	return ociAuthEntry{}, false
}

// ociConvertToHostname strips a scheme and path from a config key.
func ociConvertToHostname(k string) string {
	if strings.Contains(k, "://") {
		if u, err := url.Parse(k); err == nil && u.Hostname() != "" {
			if u.Port() == "" {
				return u.Hostname()
			}
			return u.Hostname() + ":" + u.Port()
		}
	}
	host, _, _ := strings.Cut(k, "/")
	return host
}

// ociDecodeAuth turns an auths entry into credentials; "auth" is base64 of
// "user:password" and wins over username/password, as in docker/cli.
func ociDecodeAuth(e ociAuthEntry) (ociCreds, error) {
	c := ociCreds{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken}
	if e.Auth != "" {
		dec, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return ociCreds{}, fmt.Errorf("auth is not base64: %w", err)
		}
		user, pass, ok := strings.Cut(string(dec), ":")
		if !ok || user == "" {
			return ociCreds{}, errors.New("auth must be base64 of user:password")
		}
		c.Username, c.Password = user, strings.Trim(pass, "\x00")
	}
	return c, nil
}

// runCredHelper runs `docker-credential-<name> get` with serverURL on stdin
// (docker-credential-helpers protocol). "credentials not found" means
// anonymous; a Username of "<token>" means Secret is an identity token.
func (p *ociPuller) runCredHelper(ctx context.Context, name, serverURL string) (ociCreds, error) {
	prog := "docker-credential-" + name
	path, err := p.lookPath(prog)
	if err != nil {
		return ociCreds{}, fmt.Errorf("credential helper %s: %w", prog, err)
	}
	cmd := exec.CommandContext(ctx, path, "get")
	// Helpers need what docker gives them (keychains, cloud SDK settings), so they get
	// the environment but for the API's token; the user chose them, not a model.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, authTokenEnv+"=") })
	cmd.Stdin = strings.NewReader(serverURL)
	var stdout, stderr ociLimitedBuffer
	stdout.max, stderr.max = maxOCIHelperOutput, maxOCIErrorBody
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if runErr != nil {
		if strings.Contains(out, "credentials not found") {
			return ociCreds{}, nil
		}
		msg := out
		if msg == "" {
			msg = strings.TrimSpace(stderr.String())
		}
		return ociCreds{}, fmt.Errorf("credential helper %s get %s: %v: %s", prog, serverURL, runErr, msg)
	}
	if stdout.over {
		return ociCreds{}, fmt.Errorf("credential helper %s: output over %d bytes", prog, maxOCIHelperOutput)
	}
	var resp struct {
		ServerURL, Username, Secret string
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		return ociCreds{}, fmt.Errorf("credential helper %s: bad output: %w", prog, err)
	}
	if resp.Username == "<token>" {
		return ociCreds{IdentityToken: resp.Secret}, nil
	}
	return ociCreds{Username: resp.Username, Password: resp.Secret}, nil
}

// lookPath finds prog on the PATH returned by p.Getenv, so tests can point a
// puller at a fake helper without touching the process environment.
func (p *ociPuller) lookPath(prog string) (string, error) {
	for _, dir := range filepath.SplitList(p.getenv("PATH")) {
		if dir == "" {
			continue
		}
		path := filepath.Join(dir, prog)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found on PATH", prog)
}

// ociLimitedBuffer keeps the first max bytes written and notes overflow
// without failing the writer (a failing writer would kill the subprocess).
type ociLimitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

// Write implements io.Writer.
func (b *ociLimitedBuffer) Write(p []byte) (int, error) {
	if room := b.max - b.Len(); len(p) > room {
		b.over = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

// ---------------------------------------------------------------------------
// Bearer tokens

// ociToken is a cached Bearer token.
type ociToken struct {
	value   string
	expires time.Time
}

// authenticate answers the ping's 401 challenge header: Basic sends the
// credentials as they are, Bearer trades them for a token from the realm.
func (s *ociSession) authenticate(ctx context.Context, header string) error {
	chs, err := parseAuthChallenge(header)
	if err != nil {
		return fmt.Errorf("registry %s: %w", s.ref.Registry, err)
	}
	var ch *ociChallenge
	for i := range chs { // the first Basic or Bearer challenge wins
		if chs[i].Scheme == "basic" || chs[i].Scheme == "bearer" {
			ch = &chs[i]
			break
		}
	}
	if ch == nil {
		return fmt.Errorf("registry %s: unsupported auth scheme %q", s.ref.Registry, chs[0].Scheme)
	}
	if s.creds, err = s.p.credentials(ctx, s.ref); err != nil {
		return err
	}
	if ch.Scheme == "basic" {
		if s.creds.Username != "" || s.creds.Password != "" {
			s.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(s.creds.Username+":"+s.creds.Password))
		}
		return nil
	}
	s.bearer = ch
	return s.refreshToken(ctx, false)
}

// refreshToken obtains a Bearer token for s.scopes from the challenge's realm
// (token spec), from the puller's cache unless force is set.
func (s *ociSession) refreshToken(ctx context.Context, force bool) error {
	p := s.p
	if s.creds.RegistryToken != "" {
		s.auth = "Bearer " + s.creds.RegistryToken
		return nil
	}
	realm, service := s.bearer.Params["realm"], s.bearer.Params["service"]
	ru, err := url.Parse(realm)
	if err != nil || ru.Host == "" || !(ru.Scheme == "https" || ru.Scheme == "http" && ociAllowHTTP(ru.Host)) {
		// An http realm on a public host would carry the Basic credentials in clear.
		return fmt.Errorf("registry %s: refusing token realm %q (need an https URL, or http on a local host)", s.ref.Registry, realm)
	}
	slices.Sort(s.scopes)
	s.scopes = slices.Compact(s.scopes)
	key := strings.Join([]string{s.ref.Registry, realm, service, strings.Join(s.scopes, " "), s.creds.Username, ociHash([]byte(s.creds.Password + "\x00" + s.creds.IdentityToken))}, "\x00")
	now := p.clock()
	if !force {
		p.mu.Lock()
		t, ok := p.tokens[key]
		p.mu.Unlock()
		if ok && now.Before(t.expires) {
			s.auth = "Bearer " + t.value
			return nil
		}
	}
	var body []byte
	if s.creds.IdentityToken != "" {
		body, err = s.tokenRequest(ctx, ru, service, true)
		var re *ociRegistryError
		if errors.As(err, &re) && re.Status == http.StatusNotFound {
			body, err = s.tokenRequest(ctx, ru, service, false) // not every token server speaks OAuth2
		}
	} else {
		body, err = s.tokenRequest(ctx, ru, service, false)
	}
	if err != nil {
		return fmt.Errorf("fetching registry token: %w", err)
	}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &tr); err != nil {
		return fmt.Errorf("fetching registry token from %s: bad JSON: %w", ociRedactURL(ru), err)
	}
	tok := tr.AccessToken
	if tok == "" {
		tok = tr.Token
	}
	if tok == "" {
		return fmt.Errorf("fetching registry token from %s: answer has neither token nor access_token", ociRedactURL(ru))
	}
	ttl := ociTokenDefaultTTL
	if tr.ExpiresIn > 0 && tr.ExpiresIn < 1<<31 {
		ttl = time.Duration(tr.ExpiresIn) * time.Second
	}
	// Renew a little early so a token does not expire between check and use.
	ttl -= min(ttl/10, 30*time.Second)
	p.mu.Lock()
	if p.tokens == nil {
		p.tokens = map[string]ociToken{}
	}
	p.tokens[key] = ociToken{value: tok, expires: now.Add(ttl)}
	p.mu.Unlock()
	s.auth = "Bearer " + tok
	return nil
}

// tokenRequest asks the realm for a token: the OAuth2 refresh_token POST
// when oauth is set (identity tokens), else GET with Basic credentials if
// there are any. Authorization is set on the request, so a realm redirect to
// another host does not carry it.
func (s *ociSession) tokenRequest(ctx context.Context, realm *url.URL, service string, oauth bool) ([]byte, error) {
	var req *http.Request
	var err error
	if oauth {
		form := url.Values{
			"grant_type":    {"refresh_token"},
			"refresh_token": {s.creds.IdentityToken},
			"service":       {service},
			"scope":         {strings.Join(s.scopes, " ")},
			"client_id":     {ociUserAgent},
		}
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, realm.String(), strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		u := *realm
		q := u.Query()
		for _, sc := range s.scopes {
			q.Add("scope", sc)
		}
		if service != "" {
			q.Set("service", service)
		}
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, err
		}
		if s.creds.Username != "" || s.creds.Password != "" {
			req.SetBasicAuth(s.creds.Username, s.creds.Password)
		}
	}
	req.Header.Set("User-Agent", ociUserAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	if err := ociCheckResponse(resp); err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return ociReadAll(resp.Body, maxOCITokenBody, "token response")
}

// ociFileExists reports whether path exists.
func ociFileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
