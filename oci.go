package main

// oci.go: pulls agent definitions from OCI registries (spec/OCI.md).
//
// The sequence follows go-containerregistry (the reference's registry library),
// standard library only: parse the reference, ping GET /v2/, answer the
// WWW-Authenticate challenge (anonymous, Basic, or a Bearer token), HEAD the
// manifest for its digest, then GET manifest, config and the one layer, each
// verified by size and sha256. Everything verified lands in a content-addressed
// cache so a registry outage does not take agents offline.
//
// Distribution spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
// Token auth: https://distribution.github.io/distribution/spec/auth/token/

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits and fixed names for the OCI puller. They belong in main.go's const
// block; they live here until the integrator moves them.
const (
	ociDockerHub        = "index.docker.io"             // Docker Hub: the default registry and the API host the reference talks to
	ociDockerHubAuthKey = "https://index.docker.io/v1/" // config.json key for Docker Hub (docker/cli's legacy server address)
	ociUserAgent        = "agentd"
)

// Media types seen on the wire (spec/OCI.md §2).
const (
	ociMediaManifest       = "application/vnd.oci.image.manifest.v1+json"
	ociMediaIndex          = "application/vnd.oci.image.index.v1+json"
	ociMediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	ociMediaDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	ociMediaDockerV1       = "application/vnd.docker.distribution.manifest.v1+json"
	ociMediaDockerV1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws"
	ociArtifactType        = "application/vnd.docker.agent.config.v1+json"
	ociAnnotationVersion   = "io.docker.agent.version"
	ociAnnotationLegacy    = "io.docker.cagent.version"
)

// ociManifestAccept is the Accept list the reference sends on every manifest request.
var ociManifestAccept = strings.Join([]string{
	ociMediaDockerV1, ociMediaDockerV1Signed, ociMediaDockerManifest,
	ociMediaManifest, ociMediaDockerList, ociMediaIndex,
}, ",")

// ---------------------------------------------------------------------------
// References

// ociRef is a parsed, normalised image reference. Exactly one of Tag and
// Digest is set.
type ociRef struct {
	Registry   string // host[:port]; ociDockerHub for Docker Hub
	Repository string // e.g. "library/ubuntu"
	Tag        string // e.g. "latest"
	Digest     string // "sha256:<64 hex>"
}

// String returns the fully qualified reference, which is also the cache key
// (registry included, unlike the reference's store key: spec/OCI.md §3.5).
func (r ociRef) String() string {
	if r.Digest != "" {
		return r.Registry + "/" + r.Repository + "@" + r.Digest
	}
	return r.Registry + "/" + r.Repository + ":" + r.Tag
}

// identifier is the tag or digest used in /v2/<repo>/manifests/<identifier>.
func (r ociRef) identifier() string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Tag
}

// parseOCIRef parses s with go-containerregistry's default rules
// (spec/OCI.md §1.2): the first path component is a registry only if it
// contains '.' or ':'; no registry or "docker.io" means Docker Hub; a Hub repo
// without '/' gets "library/"; the default tag is "latest"; digests are
// sha256 only. It is stricter than the reference where the reference accepts
// names no registry would serve: repository path components must match the
// distribution spec grammar and the registry must be a real host[:port]
// (so "./agent" or "/x/agent" are not references).
func parseOCIRef(s string) (ociRef, error) {
	var ref ociRef
	name := s
	if base, dig, ok := strings.Cut(s, "@"); ok {
		if strings.Contains(dig, "@") {
			return ociRef{}, fmt.Errorf("invalid reference %q: more than one '@'", s)
		}
		if !ociValidDigest(dig) {
			return ociRef{}, fmt.Errorf("invalid reference %q: digest must be sha256: followed by 64 lowercase hex digits", s)
		}
		ref.Digest = dig
		name = base
	}
	// A trailing ":x" is a tag only if x has no '/', so a registry port is not
	// mistaken for one.
	if i := strings.LastIndexByte(name, ':'); i >= 0 && !strings.Contains(name[i+1:], "/") {
		tag := name[i+1:]
		if !ociValidTag(tag) {
			return ociRef{}, fmt.Errorf("invalid reference %q: tag %q must be 1-128 of [A-Za-z0-9_.-], not starting with '.' or '-'", s, tag)
		}
		name = name[:i]
		if ref.Digest == "" {
			ref.Tag = tag // with a digest the tag is parsed, then dropped (as ggcr does)
		}
	}
	if ref.Digest == "" && ref.Tag == "" {
		ref.Tag = "latest"
	}
	repo := name
	if first, rest, ok := strings.Cut(name, "/"); ok && strings.ContainsAny(first, ".:") {
		if !ociValidRegistry(first) {
			return ociRef{}, fmt.Errorf("invalid reference %q: registry %q is not a host[:port]", s, first)
		}
		ref.Registry, repo = first, rest
	}
	if ref.Registry == "" || ref.Registry == "docker.io" {
		ref.Registry = ociDockerHub
	}
	if len(repo) < 2 || len(repo) > 255 {
		return ociRef{}, fmt.Errorf("invalid reference %q: repository %q must be 2-255 characters", s, repo)
	}
	if !ociValidRepository(repo) {
		return ociRef{}, fmt.Errorf("invalid reference %q: repository %q must be lowercase path components of [a-z0-9] joined by '.', '_', '__' or '-'", s, repo)
	}
	if ref.Registry == ociDockerHub && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	ref.Repository = repo
	return ref, nil
}

// ociValidDigest reports whether d is "sha256:" plus 64 lowercase hex digits.
// Every digest that reaches a URL or a cache path passes through here.
func ociValidDigest(d string) bool {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	for _, c := range []byte(h) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// ociValidTag implements the distribution tag grammar [\w][\w.-]{0,127}.
func ociValidTag(t string) bool {
	if len(t) < 1 || len(t) > 128 || t[0] == '.' || t[0] == '-' {
		return false
	}
	for _, c := range []byte(t) {
		if !ociAlnum(c) && c != '_' && c != '.' && c != '-' && !('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// ociAlnum reports whether c is a lowercase letter or a digit.
func ociAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// ociValidRepository implements the distribution name grammar: components
// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* separated by '/'.
func ociValidRepository(repo string) bool {
	for comp := range strings.SplitSeq(repo, "/") {
		if comp == "" || !ociAlnum(comp[0]) || !ociAlnum(comp[len(comp)-1]) {
			return false
		}
		for i := 0; i < len(comp); i++ {
			c := comp[i]
			switch {
			case ociAlnum(c):
			case c == '-':
				if n := comp[i+1]; !ociAlnum(n) && n != '-' { // "-+" then alnum
					return false
				}
			case c == '.':
				if !ociAlnum(comp[i+1]) { // no "..", "._" (last byte is alnum, so i+1 exists)
					return false
				}
			case c == '_':
				if comp[i+1] == '_' {
					i++ // "__" is one separator
				}
				if !ociAlnum(comp[i+1]) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// ociValidRegistry reports whether reg is host[:port] with a DNS name, an
// IPv4 address or a bracketed IPv6 address.
func ociValidRegistry(reg string) bool {
	host := reg
	if rest, ok := strings.CutPrefix(reg, "["); ok {
		ip, rest, ok := strings.Cut(rest, "]")
		if addr, err := netip.ParseAddr(ip); !ok || err != nil || !addr.Is6() || addr.Zone() != "" {
			return false
		}
		if rest == "" {
			return true
		}
		port, ok := strings.CutPrefix(rest, ":")
		return ok && ociValidPort(port)
	}
	if i := strings.LastIndexByte(reg, ':'); i >= 0 {
		if !ociValidPort(reg[i+1:]) {
			return false
		}
		host = reg[:i]
	}
	if host == "" || len(host) > 253 {
		return false
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(strings.ToLower(label)) {
			if !ociAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// ociValidPort reports whether p is a decimal port 1-65535 without a leading zero.
func ociValidPort(p string) bool {
	if p == "" || len(p) > 5 || p[0] == '0' {
		return false
	}
	for _, c := range []byte(p) {
		if c < '0' || c > '9' {
			return false
		}
	}
	n, _ := strconv.Atoi(p)
	return n <= 65535
}

// isOCIRef reports whether an agent argument that is not an existing file or
// directory (the caller stats it first, spec/OCI.md §1.1 step 5) names an OCI
// artifact: not a URL, not a .yaml/.yml path, not /dev/fd/*, and a valid
// reference. Built-in names and aliases are the caller's business too.
func isOCIRef(s string) bool {
	lower := strings.ToLower(s)
	switch {
	case s == "",
		strings.HasPrefix(lower, "http://"), strings.HasPrefix(lower, "https://"),
		strings.HasSuffix(lower, ".yaml"), strings.HasSuffix(lower, ".yml"),
		strings.HasPrefix(s, "/dev/fd/"):
		return false
	}
	_, err := parseOCIRef(s)
	return err == nil
}

// ociRefID is the agent id the API uses for an OCI source (API.md §3): the
// reference as given with each of / : @ \ * ? " < > | replaced by '_', plus
// ".yaml" unless it already ends so.
func ociRefID(s string) string {
	id := strings.Map(func(r rune) rune {
		if strings.ContainsRune(`/:@\*?"<>|`, r) {
			return '_'
		}
		return r
	}, s)
	if !strings.HasSuffix(id, ".yaml") {
		id += ".yaml"
	}
	return id
}

// ociAllowHTTP reports whether plain http may be tried for a registry:
// localhost with a port, *.local / *.localhost, loopback addresses and
// RFC 1918 private addresses (go-containerregistry's Registry.Scheme). The
// reference matches "127.0.0.1" and "::1" as substrings, which also lets
// "127.0.0.1.example.com" downgrade; here the host must be the address.
func ociAllowHTTP(registry string) bool {
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
	} else {
		host = strings.Trim(host, "[]")
	}
	host = strings.ToLower(host)
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".local") {
		return true
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return addr.IsLoopback() || (addr.Is4() && addr.IsPrivate())
}

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
	i := 0
	skip := func(set string) {
		for i < len(h) && strings.IndexByte(set, h[i]) >= 0 {
			i++
		}
	}
	token := func() string {
		start := i
		for i < len(h) && ociTokenChar(h[i]) {
			i++
		}
		return h[start:i]
	}
	for {
		skip(" \t,")
		if i >= len(h) {
			break
		}
		scheme := token()
		if scheme == "" {
			return nil, fmt.Errorf("malformed WWW-Authenticate %q: expected an auth scheme at offset %d", h, i)
		}
		if i < len(h) && h[i] == '=' {
			return nil, fmt.Errorf("malformed WWW-Authenticate %q: parameter %q before any auth scheme", h, scheme)
		}
		c := ociChallenge{Scheme: strings.ToLower(scheme), Params: map[string]string{}}
		// Parameters: name = (token | quoted-string), comma separated. A token
		// not followed by '=' starts the next challenge.
		for {
			skip(" \t")
			save := i
			name := token()
			if name == "" {
				if i < len(h) && h[i] == ',' {
					i++
					continue
				}
				break
			}
			skip(" \t")
			if i >= len(h) || h[i] != '=' {
				i = save // next challenge's scheme
				break
			}
			i++
			if i < len(h) && h[i] == '=' || i >= len(h) || h[i] == ',' {
				// token68 such as "abc==": skip to the next comma.
				for i < len(h) && h[i] != ',' {
					i++
				}
				continue
			}
			skip(" \t")
			var val string
			if i < len(h) && h[i] == '"' {
				i++
				var b strings.Builder
				closed := false
				for i < len(h) {
					ch := h[i]
					i++
					if ch == '\\' && i < len(h) {
						b.WriteByte(h[i])
						i++
						continue
					}
					if ch == '"' {
						closed = true
						break
					}
					b.WriteByte(ch)
				}
				if !closed {
					return nil, fmt.Errorf("malformed WWW-Authenticate %q: unterminated quoted string", h)
				}
				val = b.String()
			} else {
				val = token()
			}
			c.Params[strings.ToLower(name)] = val
			skip(" \t")
			if i < len(h) && h[i] == ',' {
				i++
				continue
			}
			if i < len(h) && !ociTokenChar(h[i]) {
				return nil, fmt.Errorf("malformed WWW-Authenticate %q: unexpected %q at offset %d", h, h[i], i)
			}
		}
		out = append(out, c)
		if i < len(h) && !ociTokenChar(h[i]) && h[i] != ',' && h[i] != ' ' && h[i] != '\t' {
			return nil, fmt.Errorf("malformed WWW-Authenticate %q: unexpected %q at offset %d", h, h[i], i)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty WWW-Authenticate header")
	}
	return out, nil
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
	keys := make([]string, 0, len(auths))
	for k := range auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
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
// Registry client

// ociPuller downloads agent artifacts and keeps them in a content-addressed
// cache. Set the exported fields before first use; a puller is then safe for
// concurrent use (the token cache and scheme memory are mutex-guarded, cache
// files are written atomically).
type ociPuller struct {
	HTTP     *http.Client        // nil: a client with ociRequestTimeout
	CacheDir string              // "": os.UserCacheDir()/agentd/oci
	Getenv   func(string) string // nil: os.Getenv; used for HOME, DOCKER_CONFIG, PATH, ...
	Logger   *slog.Logger        // nil: discard
	now      func() time.Time    // nil: time.Now; tests move the clock for token expiry
	mu       sync.Mutex          // guards tokens and schemes
	tokens   map[string]ociToken // cached Bearer tokens by registry, realm, service, scopes and user
	schemes  map[string]string   // registry → scheme that answered the last ping
}

// ociToken is a cached Bearer token.
type ociToken struct {
	value   string
	expires time.Time
}

// getenv reads the environment through the Getenv seam.
func (p *ociPuller) getenv(k string) string {
	if p.Getenv != nil {
		return p.Getenv(k)
	}
	return os.Getenv(k)
}

// logger returns the configured logger or a discarding one.
func (p *ociPuller) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// clock returns the current time through the test seam.
func (p *ociPuller) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// client returns an http.Client whose redirect policy (checkRedirect) drops
// Authorization whenever the target is not exactly the original scheme and host.
// Go's own rule keeps it for subdomains; a blob CDN under the registry's domain
// must not receive the registry token either.
func (p *ociPuller) client() *http.Client {
	c := http.Client{Timeout: ociRequestTimeout}
	if p.HTTP != nil {
		c = *p.HTTP
	}
	c.CheckRedirect = checkRedirect
	return &c
}

// ociSession is one operation against one repository: the scheme and the
// Authorization value settled by the ping.
type ociSession struct {
	p      *ociPuller
	ref    ociRef
	client *http.Client
	base   string // scheme://registry
	auth   string // Authorization header value, "" for anonymous
	bearer *ociChallenge
	creds  ociCreds
	scopes []string
}

// ociRegistryError is a non-success registry answer with its decoded
// {"errors":[{code,message}]} body.
type ociRegistryError struct {
	Method, URL string
	Status      int
	Errors      []ociErrorEntry
	Body        string // start of a non-JSON body
}

// ociErrorEntry is one entry of a registry error body.
type ociErrorEntry struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// Error formats like "GET https://r/v2/x/manifests/1: 404 Not Found: MANIFEST_UNKNOWN: manifest unknown".
func (e *ociRegistryError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Method, e.URL, e.Status, http.StatusText(e.Status))
	for i, ee := range e.Errors {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		b.WriteString(sep + ee.Code)
		if ee.Message != "" {
			b.WriteString(": " + ee.Message)
		}
	}
	if len(e.Errors) == 0 && e.Body != "" {
		b.WriteString(": " + e.Body)
	}
	return b.String()
}

// Unwrap makes a 404 match errNotFound.
func (e *ociRegistryError) Unwrap() error {
	if e.Status == http.StatusNotFound {
		return errNotFound
	}
	return nil
}

// ociCheckResponse turns a non-2xx response into an *ociRegistryError,
// reading at most maxOCIErrorBody of its body. It closes the body on error.
func ociCheckResponse(resp *http.Response) error {
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	defer resp.Body.Close()
	e := &ociRegistryError{Method: resp.Request.Method, URL: ociRedactURL(resp.Request.URL), Status: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxOCIErrorBody))
	var parsed struct {
		Errors []ociErrorEntry `json:"errors"`
	}
	if json.Unmarshal(body, &parsed) == nil && len(parsed.Errors) > 0 {
		e.Errors = parsed.Errors
	} else if s := strings.TrimSpace(string(body)); s != "" && len(s) <= 200 && !strings.ContainsAny(s, "<\x00") {
		e.Body = s // short plain-text bodies only; HTML error pages say nothing useful
	}
	return e
}

// ociRedactURL drops the query, which may carry signed CDN credentials.
func ociRedactURL(u *url.URL) string {
	c := *u
	c.RawQuery, c.User = "", nil
	return c.String()
}

// connect pings the registry and prepares authorization for pulling ref
// (spec/OCI.md §3.1 step 1). For hosts where plain http is allowed, https is
// tried first and http after a transport failure; the scheme that answered is
// remembered for next time.
func (p *ociPuller) connect(ctx context.Context, ref ociRef) (*ociSession, error) {
	s := &ociSession{p: p, ref: ref, client: p.client(), scopes: []string{"repository:" + ref.Repository + ":pull"}}
	schemes := []string{"https"}
	if ociAllowHTTP(ref.Registry) {
		schemes = []string{"https", "http"}
		p.mu.Lock()
		if p.schemes[ref.Registry] == "http" {
			schemes = []string{"http", "https"}
		}
		p.mu.Unlock()
	}
	var resp *http.Response
	var errs []error
	for _, scheme := range schemes {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+ref.Registry+"/v2/", nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("User-Agent", ociUserAgent)
		resp, err = s.client.Do(req)
		if err == nil {
			s.base = scheme + "://" + ref.Registry
			break
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	if s.base == "" {
		return nil, fmt.Errorf("registry %s unreachable: %w", ref.Registry, errors.Join(errs...))
	}
	p.mu.Lock()
	if p.schemes == nil {
		p.schemes = map[string]string{}
	}
	p.schemes[ref.Registry] = strings.SplitN(s.base, ":", 2)[0]
	p.mu.Unlock()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusUnauthorized {
		return nil, ociCheckResponse(resp)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxOCIErrorBody))
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return s, nil // anonymous registry
	}
	chs, err := parseAuthChallenge(resp.Header.Get("WWW-Authenticate"))
	if err != nil {
		return nil, fmt.Errorf("registry %s: %w", ref.Registry, err)
	}
	var ch *ociChallenge
	for i := range chs { // the first Basic or Bearer challenge wins
		if chs[i].Scheme == "basic" || chs[i].Scheme == "bearer" {
			ch = &chs[i]
			break
		}
	}
	if ch == nil {
		return nil, fmt.Errorf("registry %s: unsupported auth scheme %q", ref.Registry, chs[0].Scheme)
	}
	if s.creds, err = p.credentials(ctx, ref); err != nil {
		return nil, err
	}
	if ch.Scheme == "basic" {
		if s.creds.Username != "" || s.creds.Password != "" {
			s.auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(s.creds.Username+":"+s.creds.Password))
		}
		return s, nil
	}
	s.bearer = ch
	if err := s.refreshToken(ctx, false); err != nil {
		return nil, err
	}
	return s, nil
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

// do sends a GET or HEAD to path on the registry with the session's
// Authorization. A 401 carrying a Bearer challenge (e.g. a wider scope, or an
// expired token) gets one fresh token and one retry. Non-2xx answers become
// *ociRegistryError.
func (s *ociSession) do(ctx context.Context, method, path string, hdr http.Header) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, s.base+path, nil)
		if err != nil {
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", ociUserAgent)
		// Asking for identity stops Go's transport from silently gunzipping a
		// blob served with Content-Encoding: gzip, which would break the digest.
		req.Header.Set("Accept-Encoding", "identity")
		if s.auth != "" {
			req.Header.Set("Authorization", s.auth)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			if chs, err := parseAuthChallenge(resp.Header.Get("WWW-Authenticate")); err == nil && chs[0].Scheme == "bearer" {
				resp.Body.Close()
				if s.bearer == nil {
					// The ping was anonymous but this repository is not
					// (the reference gives up here).
					s.bearer = &chs[0]
					if s.creds, err = s.p.credentials(ctx, s.ref); err != nil {
						return nil, err
					}
				}
				if sc := chs[0].Params["scope"]; sc != "" {
					s.scopes = append(s.scopes, strings.Fields(sc)...)
				}
				if err := s.refreshToken(ctx, true); err != nil {
					return nil, err
				}
				continue
			}
		}
		if err := ociCheckResponse(resp); err != nil {
			return nil, err
		}
		return resp, nil
	}
}

// headManifest returns the digest of what the reference's tag (or digest)
// points at, from HEAD's Docker-Content-Digest. When HEAD is unusable (an
// error status, or no digest header) it falls back to GET and hashes the body,
// as the reference does; that GET also yields a readable error body.
// When it had to GET, it also returns the body and its media type.
func (s *ociSession) headManifest(ctx context.Context) (digest string, body []byte, mediaType string, err error) {
	path := "/v2/" + s.ref.Repository + "/manifests/" + s.ref.identifier()
	hdr := http.Header{"Accept": {ociManifestAccept}}
	resp, err := s.do(ctx, http.MethodHead, path, hdr)
	var re *ociRegistryError
	if err != nil && !errors.As(err, &re) {
		return "", nil, "", err // transport failure: a GET would fail the same way
	}
	if err == nil {
		resp.Body.Close()
		d := resp.Header.Get("Docker-Content-Digest")
		if ociValidDigest(d) && (s.ref.Digest == "" || d == s.ref.Digest) {
			return d, nil, "", nil
		}
	}
	body, mediaType, err = s.getManifest(ctx, s.ref.identifier(), 0)
	if err != nil {
		return "", nil, "", err
	}
	return ociHash(body), body, mediaType, nil
}

// getManifest fetches a manifest by tag or digest, capped at maxOCIManifest.
// Fetched by digest, the body must hash to it (and have size, when size > 0).
func (s *ociSession) getManifest(ctx context.Context, id string, size int64) (body []byte, mediaType string, err error) {
	path := "/v2/" + s.ref.Repository + "/manifests/" + id
	resp, err := s.do(ctx, http.MethodGet, path, http.Header{"Accept": {ociManifestAccept}})
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.ContentLength > maxOCIManifest {
		return nil, "", fmt.Errorf("manifest %s@%s: %d bytes is over the %d byte limit", s.ref.Repository, id, resp.ContentLength, maxOCIManifest)
	}
	body, err = ociReadAll(resp.Body, maxOCIManifest, "manifest "+s.ref.Repository+"@"+id)
	if err != nil {
		return nil, "", err
	}
	if strings.HasPrefix(id, "sha256:") {
		if err := ociVerify(body, ociDescriptor{Digest: id, Size: size}); err != nil {
			return nil, "", fmt.Errorf("manifest %s: %w", id, err)
		}
	}
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return body, strings.TrimSpace(mt), nil
}

// getBlob streams a blob, refusing more than d.Size bytes and verifying size
// and sha256 at EOF. Redirects (CDNs) are followed without Authorization.
func (s *ociSession) getBlob(ctx context.Context, d ociDescriptor) ([]byte, error) {
	resp, err := s.do(ctx, http.MethodGet, "/v2/"+s.ref.Repository+"/blobs/"+d.Digest, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength >= 0 && resp.ContentLength != d.Size {
		return nil, fmt.Errorf("blob %s: Content-Length %d, descriptor says %d", d.Digest, resp.ContentLength, d.Size)
	}
	h := sha256.New()
	var buf bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &buf), io.LimitReader(resp.Body, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	if n != d.Size {
		return nil, fmt.Errorf("blob %s: got %d bytes or more, descriptor says %d", d.Digest, n, d.Size)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d.Digest {
		return nil, fmt.Errorf("blob %s: content has digest %s (tampered or corrupt)", d.Digest, got)
	}
	return buf.Bytes(), nil
}

// ociReadAll reads r, failing if it holds more than limit bytes.
func ociReadAll(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", what, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over the %d byte limit", what, limit)
	}
	return b, nil
}

// ociHash returns "sha256:<hex>" of b.
func ociHash(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ociVerify checks b against a descriptor's digest and (if non-zero) size.
func ociVerify(b []byte, d ociDescriptor) error {
	if d.Size > 0 && int64(len(b)) != d.Size {
		return fmt.Errorf("size %d, descriptor says %d", len(b), d.Size)
	}
	if got := ociHash(b); got != d.Digest {
		return fmt.Errorf("content has digest %s, want %s (tampered or corrupt)", got, d.Digest)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Artifacts

// ociDescriptor points at content by digest.
type ociDescriptor struct {
	MediaType    string       `json:"mediaType"`
	Size         int64        `json:"size"`
	Digest       string       `json:"digest"`
	ArtifactType string       `json:"artifactType,omitempty"`
	Platform     *ociPlatform `json:"platform,omitempty"`
}

// ociPlatform is an index entry's platform.
type ociPlatform struct {
	OS           string `json:"os"`
	Architecture string `json:"architecture"`
}

// ociManifest is the union of an image manifest and an image index.
type ociManifest struct {
	SchemaVersion int               `json:"schemaVersion"`
	MediaType     string            `json:"mediaType"`
	ArtifactType  string            `json:"artifactType"`
	Config        *ociDescriptor    `json:"config"`
	Layers        []ociDescriptor   `json:"layers"`
	Manifests     []ociDescriptor   `json:"manifests"`
	Annotations   map[string]string `json:"annotations"`
}

// ociGetFunc returns verified content: kind is "manifests" or "blobs".
// The network and the cache both implement it, so both paths run the same
// artifact checks.
type ociGetFunc func(ctx context.Context, kind string, d ociDescriptor) ([]byte, error)

// ociCheckDescriptor validates a descriptor from a manifest before anything
// is fetched: sha256 digest (it becomes a URL and a file name) and a size
// within limit.
func ociCheckDescriptor(what string, d ociDescriptor, limit int64) error {
	if !ociValidDigest(d.Digest) {
		return fmt.Errorf("%s digest %q is not sha256:<64 hex>", what, d.Digest)
	}
	if d.Size <= 0 || d.Size > limit {
		return fmt.Errorf("%s %s: size %d outside 1..%d", what, d.Digest, d.Size, limit)
	}
	return nil
}

// ociExtractAgent resolves a top-level manifest to the agent YAML
// (spec/OCI.md §2.3): an index picks its linux/amd64 (or platform-less)
// child; the manifest must carry an agent version annotation; the first
// layer is the YAML, gzipped or raw (detected from the bytes); the config
// must be an image config whose rootfs.diff_ids[0] is the YAML's sha256.
func ociExtractAgent(ctx context.Context, get ociGetFunc, name string, top []byte, headerType string) ([]byte, error) {
	var m ociManifest
	if err := json.Unmarshal(top, &m); err != nil {
		return nil, fmt.Errorf("artifact %s: manifest is not JSON: %w", name, err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = headerType
	}
	if mt == ociMediaIndex || mt == ociMediaDockerList || (mt == "" && m.Manifests != nil && m.Config == nil) {
		var child *ociDescriptor
		for i, d := range m.Manifests {
			if d.Platform == nil || d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
				child = &m.Manifests[i]
				break
			}
		}
		if child == nil {
			return nil, fmt.Errorf("artifact %s: index has no linux/amd64 or platform-less manifest", name)
		}
		if err := ociCheckDescriptor("index entry", *child, maxOCIManifest); err != nil {
			return nil, fmt.Errorf("artifact %s: %w", name, err)
		}
		body, err := get(ctx, "manifests", *child)
		if err != nil {
			return nil, err
		}
		m = ociManifest{}
		if err := json.Unmarshal(body, &m); err != nil {
			return nil, fmt.Errorf("artifact %s: manifest %s is not JSON: %w", name, child.Digest, err)
		}
		mt = m.MediaType
		if mt == "" {
			mt = child.MediaType
		}
		if mt == ociMediaIndex || mt == ociMediaDockerList || m.Manifests != nil {
			return nil, fmt.Errorf("artifact %s: nested indexes are not supported", name)
		}
	}
	if m.SchemaVersion == 1 || mt == ociMediaDockerV1 || mt == ociMediaDockerV1Signed {
		return nil, fmt.Errorf("artifact %s: Docker schema 1 manifests are not supported", name)
	}
	if m.SchemaVersion != 2 {
		return nil, fmt.Errorf("artifact %s: manifest schemaVersion %d, want 2", name, m.SchemaVersion)
	}
	if mt != "" && mt != ociMediaManifest && mt != ociMediaDockerManifest {
		return nil, fmt.Errorf("artifact %s: unsupported manifest media type %q", name, mt)
	}
	if m.Annotations[ociAnnotationVersion] == "" && m.Annotations[ociAnnotationLegacy] == "" {
		return nil, fmt.Errorf("artifact %s wasn't created by `docker agent share push` (no %s annotation)", name, ociAnnotationVersion)
	}
	if len(m.Layers) == 0 {
		return nil, fmt.Errorf("artifact %s has no layers", name)
	}
	if m.Config == nil {
		return nil, fmt.Errorf("artifact %s has no config", name)
	}
	if err := ociCheckDescriptor("config", *m.Config, maxOCIBlob); err != nil {
		return nil, fmt.Errorf("artifact %s: %w", name, err)
	}
	if err := ociCheckDescriptor("layer", m.Layers[0], maxOCIBlob); err != nil {
		return nil, fmt.Errorf("artifact %s: %w", name, err)
	}
	cfgBytes, err := get(ctx, "blobs", *m.Config)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
		return nil, fmt.Errorf("artifact %s: config is not JSON: %w", name, err)
	}
	if len(cfg.RootFS.DiffIDs) == 0 {
		// e.g. the OCI empty config {}: the reference pulls it, then fails
		// with "local artifact store corrupted"; say why instead.
		return nil, fmt.Errorf("artifact %s: config %s (%s) has no rootfs.diff_ids, so it is not an agent artifact from `docker agent share push`", name, m.Config.Digest, m.Config.MediaType)
	}
	layer, err := get(ctx, "blobs", m.Layers[0])
	if err != nil {
		return nil, err
	}
	yaml := layer
	if len(layer) >= 2 && layer[0] == 0x1f && layer[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(layer))
		if err != nil {
			return nil, fmt.Errorf("artifact %s: layer %s: %w", name, m.Layers[0].Digest, err)
		}
		// The limit stops a gzip bomb from filling memory.
		yaml, err = ociReadAll(zr, maxOCIYAML, "artifact "+name+": decompressed layer")
		if err != nil {
			return nil, err
		}
	}
	if len(yaml) > maxOCIYAML {
		return nil, fmt.Errorf("artifact %s: agent YAML is over the %d byte limit", name, maxOCIYAML)
	}
	if got := ociHash(yaml); got != cfg.RootFS.DiffIDs[0] {
		return nil, fmt.Errorf("artifact %s: layer content %s does not match config diff_id %s", name, got, cfg.RootFS.DiffIDs[0])
	}
	return yaml, nil
}

// ---------------------------------------------------------------------------
// Cache: <dir>/blobs/sha256/<hex> holds verified manifests and blobs;
// <dir>/refs/<sha256 of the full reference> holds {"ref","digest"} for the
// last successful pull of that reference.

// cacheDir returns the cache root.
func (p *ociPuller) cacheDir() (string, error) {
	if p.CacheDir != "" {
		return p.CacheDir, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no OCI cache directory: %w", err)
	}
	return filepath.Join(d, "agentd", "oci"), nil
}

// blobPath returns the cache file for a (validated) digest.
func (p *ociPuller) blobPath(digest string) (string, error) {
	if !ociValidDigest(digest) {
		return "", fmt.Errorf("invalid digest %q", digest)
	}
	dir, err := p.cacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:")), nil
}

// refPath returns the ref-index file for a reference.
func (p *ociPuller) refPath(ref ociRef) (string, error) {
	dir, err := p.cacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(ref.String()))
	return filepath.Join(dir, "refs", hex.EncodeToString(sum[:])), nil
}

// ociWriteFileAtomic writes data to path via a temp file and rename, so
// readers never see a partial file.
func ociWriteFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// storeBlob saves verified content under its digest.
func (p *ociPuller) storeBlob(digest string, data []byte) error {
	path, err := p.blobPath(digest)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil {
		return nil // content-addressed: already there
	}
	return ociWriteFileAtomic(path, data)
}

// cachedBlob reads content by digest, re-verifying it so a corrupted cache
// file is an error, not a wrong agent.
func (p *ociPuller) cachedBlob(d ociDescriptor) ([]byte, error) {
	path, err := p.blobPath(d.Digest)
	if err != nil {
		return nil, err
	}
	b, err := ociReadFileLimit(path, max(maxOCIManifest, maxOCIBlob))
	if err != nil {
		return nil, err
	}
	if err := ociVerify(b, d); err != nil {
		return nil, fmt.Errorf("cached %s: %w", d.Digest, err)
	}
	return b, nil
}

// cachedArtifact returns the agent YAML for a top-level manifest digest
// using only the cache.
func (p *ociPuller) cachedArtifact(ctx context.Context, name, digest string) ([]byte, error) {
	top, err := p.cachedBlob(ociDescriptor{Digest: digest})
	if err != nil {
		return nil, err
	}
	get := func(_ context.Context, _ string, d ociDescriptor) ([]byte, error) { return p.cachedBlob(d) }
	return ociExtractAgent(ctx, get, name, top, "")
}

// cachedRef returns the artifact last pulled for ref.
func (p *ociPuller) cachedRef(ctx context.Context, ref ociRef) ([]byte, string, error) {
	path, err := p.refPath(ref)
	if err != nil {
		return nil, "", err
	}
	b, err := ociReadFileLimit(path, maxOCIErrorBody)
	if err != nil {
		return nil, "", err
	}
	var e struct{ Ref, Digest string }
	if err := json.Unmarshal(b, &e); err != nil || e.Ref != ref.String() {
		return nil, "", fmt.Errorf("cache entry %s for %s is corrupt", path, ref)
	}
	data, err := p.cachedArtifact(ctx, ref.String(), e.Digest)
	if err != nil {
		return nil, "", err
	}
	return data, e.Digest, nil
}

// storeRef records that ref resolved to digest.
func (p *ociPuller) storeRef(ref ociRef, digest string) error {
	path, err := p.refPath(ref)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(struct {
		Ref    string `json:"ref"`
		Digest string `json:"digest"`
	}{ref.String(), digest})
	b = append(b, '\n')
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil // unchanged tag: spare the fsync on every refresh
	}
	return ociWriteFileAtomic(path, b)
}

// ociReadFileLimit reads a file of at most limit bytes.
func ociReadFileLimit(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ociReadAll(f, limit, path)
}

// ociFileExists reports whether path exists.
func ociFileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// ---------------------------------------------------------------------------
// Entry points

// pull returns the agent YAML for ref and the digest of the manifest its tag
// points at (for a tag on an index, the index digest: the same value
// remoteDigest reports, so the two compare directly). The registry is asked
// first; if it fails for any reason other than a bad reference or a cancelled
// ctx, the last cached artifact for ref is served with a warning. Digest
// references already in the cache are served without any network traffic.
func (p *ociPuller) pull(ctx context.Context, s string) (data []byte, digest string, err error) {
	ref, err := parseOCIRef(s)
	if err != nil {
		return nil, "", err
	}
	if ref.Digest != "" {
		if data, err := p.cachedArtifact(ctx, ref.String(), ref.Digest); err == nil {
			return data, ref.Digest, nil
		}
	}
	data, digest, err = p.fetch(ctx, ref)
	if err == nil || ctx.Err() != nil {
		return data, digest, err
	}
	cached, cdigest, cerr := p.cachedRef(ctx, ref)
	if cerr != nil {
		return nil, "", err
	}
	p.logger().Warn("OCI registry failed; serving cached agent", "ref", ref.String(), "digest", cdigest, "err", err)
	return cached, cdigest, nil
}

// fetch pulls ref from the registry only: ping, HEAD for the digest, then
// (unless that digest is fully cached) the manifest and its blobs, each
// verified and cached. It records ref → digest on success.
func (p *ociPuller) fetch(ctx context.Context, ref ociRef) ([]byte, string, error) {
	s, err := p.connect(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	name := ref.String()
	digest, top, mt, err := s.headManifest(ctx)
	if err != nil {
		return nil, "", err
	}
	if data, err := p.cachedArtifact(ctx, name, digest); err == nil {
		return data, digest, p.storeRef(ref, digest)
	}
	if top == nil {
		if top, mt, err = s.getManifest(ctx, ref.identifier(), 0); err != nil {
			return nil, "", err
		}
		digest = ociHash(top)
	}
	get := func(ctx context.Context, kind string, d ociDescriptor) ([]byte, error) {
		var b []byte
		var err error
		if kind == "manifests" {
			b, _, err = s.getManifest(ctx, d.Digest, d.Size)
		} else {
			b, err = s.getBlob(ctx, d)
		}
		if err != nil {
			return nil, err
		}
		return b, p.storeBlob(d.Digest, b)
	}
	data, err := ociExtractAgent(ctx, get, name, top, mt)
	if err != nil {
		return nil, "", err
	}
	// The top manifest goes in last: a cached top manifest means its whole
	// artifact is cached.
	if err := p.storeBlob(digest, top); err != nil {
		return nil, "", err
	}
	p.logger().Info("pulled OCI agent", "ref", name, "digest", digest, "bytes", len(data))
	return data, digest, p.storeRef(ref, digest)
}

// remoteDigest returns the digest the registry currently serves for ref
// (HEAD manifest; GET and hash if HEAD is unusable), for change detection.
func (p *ociPuller) remoteDigest(ctx context.Context, s string) (string, error) {
	ref, err := parseOCIRef(s)
	if err != nil {
		return "", err
	}
	sess, err := p.connect(ctx, ref)
	if err != nil {
		return "", err
	}
	d, _, _, err := sess.headManifest(ctx)
	return d, err
}

// cmdPull implements `agentd pull [--cache-dir DIR] REF`: it downloads the
// artifact from the registry into the cache (no cache fallback: a pull that
// did not reach the registry is an error) and prints the manifest digest.
// It returns the process exit code.
func cmdPull(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cacheDir := fs.String("cache-dir", "", "OCI cache directory (default: user cache dir/agentd/oci)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: agentd pull [--cache-dir DIR] REF")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	ref, err := parseOCIRef(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "agentd pull: %v\n", err)
		return 1
	}
	p := &ociPuller{CacheDir: *cacheDir, Logger: slog.New(slog.NewTextHandler(stderr, nil))}
	// fetch logs one line on stderr when it downloads something new.
	_, digest, err := p.fetch(ctx, ref)
	if err != nil {
		fmt.Fprintf(stderr, "agentd pull: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, digest)
	return 0
}
