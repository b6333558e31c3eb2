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
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fixed names for the OCI puller (its limits are in main.go's const block).
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
	if err := s.authenticate(ctx, resp.Header.Get("WWW-Authenticate")); err != nil {
		return nil, err
	}
	return s, nil
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
		var err error
		if m, mt, err = ociIndexChild(ctx, get, name, m); err != nil {
			return nil, err
		}
	}
	if err := ociCheckAgentManifest(name, m, mt); err != nil {
		return nil, err
	}
	cfgBytes, err := get(ctx, "blobs", *m.Config)
	if err != nil {
		return nil, err
	}
	diffID, err := ociConfigDiffID(name, *m.Config, cfgBytes)
	if err != nil {
		return nil, err
	}
	layer, err := get(ctx, "blobs", m.Layers[0])
	if err != nil {
		return nil, err
	}
	yaml, err := ociLayerYAML(name, m.Layers[0], layer)
	if err != nil {
		return nil, err
	}
	if got := ociHash(yaml); got != diffID {
		return nil, fmt.Errorf("artifact %s: layer content %s does not match config diff_id %s", name, got, diffID)
	}
	return yaml, nil
}

// ociIndexChild fetches the manifest an index points at for linux/amd64 (or
// the first platform-less entry) and returns it with its media type.
func ociIndexChild(ctx context.Context, get ociGetFunc, name string, idx ociManifest) (ociManifest, string, error) {
	var child *ociDescriptor
	for i, d := range idx.Manifests {
		if d.Platform == nil || d.Platform.OS == "linux" && d.Platform.Architecture == "amd64" {
			child = &idx.Manifests[i]
			break
		}
	}
	if child == nil {
		return ociManifest{}, "", fmt.Errorf("artifact %s: index has no linux/amd64 or platform-less manifest", name)
	}
	if err := ociCheckDescriptor("index entry", *child, maxOCIManifest); err != nil {
		return ociManifest{}, "", fmt.Errorf("artifact %s: %w", name, err)
	}
	body, err := get(ctx, "manifests", *child)
	if err != nil {
		return ociManifest{}, "", err
	}
	var m ociManifest
	if err := json.Unmarshal(body, &m); err != nil {
		return ociManifest{}, "", fmt.Errorf("artifact %s: manifest %s is not JSON: %w", name, child.Digest, err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = child.MediaType
	}
	if mt == ociMediaIndex || mt == ociMediaDockerList || m.Manifests != nil {
		return ociManifest{}, "", fmt.Errorf("artifact %s: nested indexes are not supported", name)
	}
	return m, mt, nil
}

// ociCheckAgentManifest checks that m (of media type mt) is a schema 2 image
// manifest pushed by `docker agent share push`, with a config and a layer
// whose descriptors are safe to fetch.
func ociCheckAgentManifest(name string, m ociManifest, mt string) error {
	if m.SchemaVersion == 1 || mt == ociMediaDockerV1 || mt == ociMediaDockerV1Signed {
		return fmt.Errorf("artifact %s: Docker schema 1 manifests are not supported", name)
	}
	if m.SchemaVersion != 2 {
		return fmt.Errorf("artifact %s: manifest schemaVersion %d, want 2", name, m.SchemaVersion)
	}
	if mt != "" && mt != ociMediaManifest && mt != ociMediaDockerManifest {
		return fmt.Errorf("artifact %s: unsupported manifest media type %q", name, mt)
	}
	if m.Annotations[ociAnnotationVersion] == "" && m.Annotations[ociAnnotationLegacy] == "" {
		return fmt.Errorf("artifact %s wasn't created by `docker agent share push` (no %s annotation)", name, ociAnnotationVersion)
	}
	if len(m.Layers) == 0 {
		return fmt.Errorf("artifact %s has no layers", name)
	}
	if m.Config == nil {
		return fmt.Errorf("artifact %s has no config", name)
	}
	if err := ociCheckDescriptor("config", *m.Config, maxOCIBlob); err != nil {
		return fmt.Errorf("artifact %s: %w", name, err)
	}
	if err := ociCheckDescriptor("layer", m.Layers[0], maxOCIBlob); err != nil {
		return fmt.Errorf("artifact %s: %w", name, err)
	}
	return nil
}

// ociConfigDiffID returns rootfs.diff_ids[0] of an image config: the sha256
// the agent YAML must have.
func ociConfigDiffID(name string, d ociDescriptor, config []byte) (string, error) {
	var cfg struct {
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(config, &cfg); err != nil {
		return "", fmt.Errorf("artifact %s: config is not JSON: %w", name, err)
	}
	if len(cfg.RootFS.DiffIDs) == 0 {
		// e.g. the OCI empty config {}: the reference pulls it, then fails
		// with "local artifact store corrupted"; say why instead.
		return "", fmt.Errorf("artifact %s: config %s (%s) has no rootfs.diff_ids, so it is not an agent artifact from `docker agent share push`", name, d.Digest, d.MediaType)
	}
	return cfg.RootFS.DiffIDs[0], nil
}

// ociLayerYAML returns the agent YAML in a layer, gunzipping it when the
// bytes start with the gzip magic.
func ociLayerYAML(name string, d ociDescriptor, layer []byte) ([]byte, error) {
	yaml := layer
	if len(layer) >= 2 && layer[0] == 0x1f && layer[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(layer))
		if err != nil {
			return nil, fmt.Errorf("artifact %s: layer %s: %w", name, d.Digest, err)
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
	return yaml, nil
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
