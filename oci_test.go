package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// ---------------------------------------------------------------------------
// A distribution-API registry for tests.

// ociTestManifest is a stored manifest with its Content-Type.
type ociTestManifest struct {
	body      []byte
	mediaType string
}

// ociTestTokenReq records one request to the token endpoint.
type ociTestTokenReq struct {
	Method, Auth string
	Form         url.Values // query for GET, body for POST
}

// ociTestRegistry is an in-process registry speaking the distribution API:
// ping, manifests (HEAD/GET by tag or digest), blobs, and a token endpoint at
// /token for Bearer mode. Fields may be changed between requests under mu.
type ociTestRegistry struct {
	*httptest.Server
	t    *testing.T
	host string // 127.0.0.1:port, the registry part of references

	mu            sync.Mutex
	manifests     map[string]ociTestManifest // "repo@tag-or-digest"
	blobs         map[string][]byte          // digest → content
	auth          string                     // "", "basic" or "bearer"
	user, pass    string                     // required credentials ("" = anonymous tokens allowed)
	identityToken string                     // bearer: accept this refresh_token on POST /token
	noOAuth       bool                       // POST /token answers 404 (GET-only token server)
	tokenOnlyKey  bool                       // answer {"token"} instead of {"token": junk, "access_token"}
	expiresIn     int
	tokens        map[string]bool
	tokenReqs     []ociTestTokenReq
	blobRedirect  string            // if set, blob GETs answer 307 to this base URL + path
	tamper        map[string][]byte // digest → bytes served instead
	failStatus    int               // non-zero: manifest and blob requests answer this
	failBody      string
	noLength      bool   // stream manifests without Content-Length
	realm         string // bearer: realm in the challenge instead of our /token
	openPing      bool   // bearer: GET /v2/ answers 200 without a token
	headDigest    string // if set, the Docker-Content-Digest of every manifest HEAD (not the body's hash)
	log           []string
	auths         []string // Authorization headers seen on /v2/ requests other than ping
}

// newOCITestRegistry starts a registry with the given auth mode.
func newOCITestRegistry(t *testing.T, auth string) *ociTestRegistry {
	t.Helper()
	reg := &ociTestRegistry{t: t, auth: auth, manifests: map[string]ociTestManifest{}, blobs: map[string][]byte{},
		tokens: map[string]bool{}, tamper: map[string][]byte{}, expiresIn: 300}
	reg.Server = httptest.NewServer(http.HandlerFunc(reg.serve))
	t.Cleanup(reg.Close)
	reg.host = strings.TrimPrefix(reg.URL, "http://")
	return reg
}

// ociTestError writes a distribution error body.
func ociTestError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":%q,"detail":null}]}`, code, msg)
}

func (reg *ociTestRegistry) serve(w http.ResponseWriter, r *http.Request) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.log = append(reg.log, r.Method+" "+r.URL.Path)
	if r.URL.Path == "/token" {
		reg.serveToken(w, r)
		return
	}
	if r.URL.Path == "/v2/" && reg.openPing {
		w.Write([]byte("{}"))
		return
	}
	if !reg.authorized(w, r) {
		return
	}
	if r.URL.Path == "/v2/" {
		w.Write([]byte("{}"))
		return
	}
	reg.auths = append(reg.auths, r.Header.Get("Authorization"))
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/")
	if !ok {
		reg.t.Errorf("registry: unexpected path %s", r.URL.Path)
		http.NotFound(w, r)
		return
	}
	if reg.failStatus != 0 {
		w.WriteHeader(reg.failStatus)
		io.WriteString(w, reg.failBody)
		return
	}
	if i := strings.LastIndex(rest, "/manifests/"); i > 0 {
		repo, id := rest[:i], rest[i+len("/manifests/"):]
		m, ok := reg.manifests[repo+"@"+id]
		if !ok {
			ociTestError(w, 404, "MANIFEST_UNKNOWN", "manifest unknown")
			return
		}
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Docker-Content-Digest", ociHash(m.body))
		if reg.headDigest != "" && r.Method == http.MethodHead {
			w.Header().Set("Docker-Content-Digest", reg.headDigest)
		}
		if !reg.noLength {
			w.Header().Set("Content-Length", fmt.Sprint(len(m.body)))
		}
		if r.Method == http.MethodGet {
			w.Write(m.body)
		}
		return
	}
	if i := strings.LastIndex(rest, "/blobs/"); i > 0 {
		dig := rest[i+len("/blobs/"):]
		if reg.blobRedirect != "" {
			http.Redirect(w, r, reg.blobRedirect+r.URL.Path+"?sig=secret", http.StatusTemporaryRedirect)
			return
		}
		reg.writeBlob(w, dig)
		return
	}
	reg.t.Errorf("registry: unexpected path %s", r.URL.Path)
	http.NotFound(w, r)
}

// writeBlob serves a blob (or its tampered replacement); caller holds mu.
func (reg *ociTestRegistry) writeBlob(w http.ResponseWriter, dig string) {
	b, ok := reg.blobs[dig]
	if !ok {
		ociTestError(w, 404, "BLOB_UNKNOWN", "blob unknown to registry")
		return
	}
	if tb, ok := reg.tamper[dig]; ok {
		b = tb
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.Write(b)
}

// authorized checks the request's credentials and answers 401 with a
// challenge if they are missing; caller holds mu.
func (reg *ociTestRegistry) authorized(w http.ResponseWriter, r *http.Request) bool {
	switch reg.auth {
	case "basic":
		if u, p, ok := r.BasicAuth(); ok && u == reg.user && p == reg.pass {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test registry"`)
	case "bearer":
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && reg.tokens[tok] {
			return true
		}
		realm := reg.URL + "/token"
		if reg.realm != "" {
			realm = reg.realm
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s",service="test-registry"`, realm))
	default:
		return true
	}
	ociTestError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
	return false
}

// serveToken is the token endpoint; caller holds mu.
func (reg *ociTestRegistry) serveToken(w http.ResponseWriter, r *http.Request) {
	req := ociTestTokenReq{Method: r.Method, Auth: r.Header.Get("Authorization"), Form: r.URL.Query()}
	if r.Method == http.MethodPost {
		r.ParseForm()
		req.Form = r.PostForm
	}
	reg.tokenReqs = append(reg.tokenReqs, req)
	switch {
	case r.Method == http.MethodPost && reg.noOAuth:
		http.NotFound(w, r)
		return
	case r.Method == http.MethodPost:
		if req.Form.Get("grant_type") != "refresh_token" || req.Form.Get("refresh_token") != reg.identityToken || reg.identityToken == "" {
			ociTestError(w, 401, "UNAUTHORIZED", "bad refresh token")
			return
		}
	case reg.user != "":
		if u, p, ok := r.BasicAuth(); !ok || u != reg.user || p != reg.pass {
			ociTestError(w, 401, "UNAUTHORIZED", "bad credentials")
			return
		}
	}
	tok := fmt.Sprintf("tok-%d", len(reg.tokens)+1)
	reg.tokens[tok] = true
	resp := map[string]any{"access_token": tok, "token": "not-this-one", "expires_in": reg.expiresIn}
	if reg.tokenOnlyKey {
		resp = map[string]any{"token": tok}
	}
	json.NewEncoder(w).Encode(resp)
}

// put stores a manifest under repo@id.
func (reg *ociTestRegistry) put(repo, id, mediaType string, body []byte) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.manifests[repo+"@"+id] = ociTestManifest{body, mediaType}
}

// putBlob stores a blob and returns its descriptor.
func (reg *ociTestRegistry) putBlob(mediaType string, b []byte) ociDescriptor {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	d := ociDescriptor{MediaType: mediaType, Size: int64(len(b)), Digest: ociHash(b)}
	reg.blobs[d.Digest] = b
	return d
}

// putManifest stores a manifest by digest and, if tag is set, by tag; it
// returns the manifest's descriptor.
func (reg *ociTestRegistry) putManifest(repo, tag string, m any) ociDescriptor {
	body, err := json.Marshal(m)
	if err != nil {
		reg.t.Fatal(err)
	}
	mt := ociMediaManifest
	if mm, ok := m.(map[string]any); ok {
		if s, ok := mm["mediaType"].(string); ok {
			mt = s
		}
	}
	d := ociDescriptor{MediaType: mt, Size: int64(len(body)), Digest: ociHash(body)}
	reg.put(repo, d.Digest, mt, body)
	if tag != "" {
		reg.put(repo, tag, mt, body)
	}
	return d
}

// requests returns and clears the request log.
func (reg *ociTestRegistry) requests() []string {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	l := reg.log
	reg.log = nil
	return l
}

// set runs f under the registry's lock.
func (reg *ociTestRegistry) set(f func()) {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	f()
}

// ociTestGzip compresses like the reference's pusher: BestSpeed, empty header.
func ociTestGzip(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// ociTestConfig is the Docker image config the reference pushes for yaml.
func ociTestConfig(yaml []byte) []byte {
	return []byte(`{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":["` + ociHash(yaml) + `"]},"config":{}}`)
}

// push uploads yaml in the format `docker agent share push` produces
// (spec/OCI.md §2.1) and returns the manifest digest. The manifest goes
// through a map so keys come out sorted, as the reference's do.
func (reg *ociTestRegistry) push(repo, tag string, yaml []byte, created string) string {
	cfg := reg.putBlob("application/vnd.docker.container.image.v1+json", ociTestConfig(yaml))
	layer := reg.putBlob("application/vnd.docker.image.rootfs.diff.tar.gzip", ociTestGzip(reg.t, yaml))
	m := map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociMediaManifest,
		"artifactType":  ociArtifactType,
		"config":        cfg,
		"layers":        []ociDescriptor{layer},
		"annotations": map[string]string{
			ociAnnotationVersion:                   "dev",
			ociAnnotationLegacy:                    "dev",
			"org.opencontainers.image.created":     created,
			"org.opencontainers.image.description": "OCI artifact containing agent.yaml",
		},
	}
	return reg.putManifest(repo, tag, m).Digest
}

// ociTestYAML reads a fixture from testdata/oci.
func ociTestYAML(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "oci", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ociTestLog is a goroutine-safe log sink.
type ociTestLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *ociTestLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *ociTestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// newOCITestPuller returns a puller with a temp cache and an environment
// holding only env (HOME points at an empty temp dir unless env sets it).
func newOCITestPuller(t *testing.T, env map[string]string) (*ociPuller, *ociTestLog) {
	t.Helper()
	full := map[string]string{"HOME": t.TempDir()}
	for k, v := range env {
		full[k] = v
	}
	logs := &ociTestLog{}
	p := &ociPuller{
		CacheDir: t.TempDir(),
		Getenv:   func(k string) string { return full[k] },
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	}
	return p, logs
}

// ---------------------------------------------------------------------------
// References

func TestParseOCIRef(t *testing.T) {
	t.Parallel()
	hex := strings.Repeat("ab", 32)
	tests := []struct {
		in      string
		want    ociRef
		wantErr string
	}{
		// The examples table of spec/OCI.md §1.2.
		{in: "agentcatalog/coder", want: ociRef{ociDockerHub, "agentcatalog/coder", "latest", ""}},
		{in: "agentcatalog/coder:1.2", want: ociRef{ociDockerHub, "agentcatalog/coder", "1.2", ""}},
		{in: "docker.io/x/y:tag", want: ociRef{ociDockerHub, "x/y", "tag", ""}},
		{in: "ubuntu", want: ociRef{ociDockerHub, "library/ubuntu", "latest", ""}},
		{in: "localhost:5000/a/b@sha256:" + hex, want: ociRef{"localhost:5000", "a/b", "", "sha256:" + hex}},
		{in: "127.0.0.1:5000/test/basic", want: ociRef{"127.0.0.1:5000", "test/basic", "latest", ""}},
		{in: "ghcr.io/org/repo/img:v1", want: ociRef{"ghcr.io", "org/repo/img", "v1", ""}},
		{in: "localhost/ab", want: ociRef{ociDockerHub, "localhost/ab", "latest", ""}},
		// More normalisation.
		{in: "x/y:tag@sha256:" + hex, want: ociRef{ociDockerHub, "x/y", "", "sha256:" + hex}},
		{in: "docker.io/ubuntu", want: ociRef{ociDockerHub, "library/ubuntu", "latest", ""}},
		{in: "index.docker.io/ubuntu:22.04", want: ociRef{ociDockerHub, "library/ubuntu", "22.04", ""}},
		{in: "registry-1.docker.io/ubuntu", want: ociRef{"registry-1.docker.io", "ubuntu", "latest", ""}},
		{in: "[::1]:5000/ab/cd", want: ociRef{"[::1]:5000", "ab/cd", "latest", ""}},
		{in: "localhost:5000", want: ociRef{ociDockerHub, "library/localhost", "5000", ""}}, // ggcr: port-looking tag
		{in: "my.reg:443/a__b/c-d/e--f.g:V_1.0-rc", want: ociRef{"my.reg:443", "a__b/c-d/e--f.g", "V_1.0-rc", ""}},
		{in: "ab:" + strings.Repeat("t", 128), want: ociRef{ociDockerHub, "library/ab", strings.Repeat("t", 128), ""}},
		// Errors from the spec.
		{in: "Agent", wantErr: "repository"},
		{in: "a:b:c", wantErr: "repository"},
		{in: "a/b:", wantErr: "tag"},
		{in: "x", wantErr: "2-255"},
		{in: "localhost:5000/a", wantErr: "2-255"},
		{in: "", wantErr: "2-255"},
		// Stricter than the reference, which accepts these and then fails on
		// the network (registry "." or a repository with an empty component).
		{in: "./agent", wantErr: "registry"},
		{in: "/x/agent", wantErr: "repository"},
		{in: "a//b", wantErr: "repository"},
		{in: "a/b/", wantErr: "repository"},
		{in: "a/-b", wantErr: "repository"},
		{in: "a/b-/c", wantErr: "repository"},
		{in: "a/b..c", wantErr: "repository"},
		{in: "a/b___c", wantErr: "repository"},
		{in: "a/b-_c", wantErr: "repository"},
		{in: "a/b:-tag", wantErr: "tag"},
		{in: "a/b:.tag", wantErr: "tag"},
		{in: "ab:" + strings.Repeat("t", 129), wantErr: "tag"},
		{in: "a/b@sha256:" + hex[:63], wantErr: "digest"},
		{in: "a/b@sha256:" + strings.ToUpper(hex), wantErr: "digest"},
		{in: "a/b@sha512:" + hex + hex, wantErr: "digest"},
		{in: "a/b@sha256:" + hex + "@x", wantErr: "'@'"},
		{in: "host:99999/ab", wantErr: "registry"},
		{in: "host:0/ab", wantErr: "registry"},
		{in: "ho_st.io/ab", wantErr: "registry"},
		{in: "-host.io/ab", wantErr: "registry"},
		{in: "[::1/ab", wantErr: "registry"},
		{in: "[1.2.3.4]:5/ab", wantErr: "registry"},
		{in: "a/" + strings.Repeat("b", 254), wantErr: "2-255"},
	}
	for _, tt := range tests {
		got, err := parseOCIRef(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseOCIRef(%q) = %+v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("parseOCIRef(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			continue
		}
		// The canonical form parses back to the same reference.
		if again, err := parseOCIRef(got.String()); err != nil || again != got {
			t.Errorf("parseOCIRef(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

func TestOCIRefID(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"agentcatalog/pirate", "agentcatalog_pirate.yaml"},
		{"docker.io/org/agent:v1", "docker.io_org_agent_v1.yaml"},
		{"127.0.0.1:5000/test/basic:latest", "127.0.0.1_5000_test_basic_latest.yaml"},
		{"a/b@sha256:00", "a_b_sha256_00.yaml"},
		{`a\b*c?d"e<f>g|h`, "a_b_c_d_e_f_g_h.yaml"},
		{"org/agent.yaml", "org_agent.yaml"},
	}
	for _, tt := range tests {
		if got := ociRefID(tt.in); got != tt.want {
			t.Errorf("ociRefID(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestIsOCIRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"agentcatalog/pirate", true},
		{"pirat", true}, // a missing extension-less name is a Docker Hub ref (API.md §3 quirk)
		{"ghcr.io/org/agent:v1", true},
		{"127.0.0.1:5000/test/basic", true},
		{"agent.yaml", false},
		{"dir/AGENT.YML", false},
		{"https://example.com/agent", false},
		{"HTTP://example.com/agent", false},
		{"/dev/fd/3", false},
		{"Agent", false},
		{"./agent", false},
		{"x", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := isOCIRef(tt.in); got != tt.want {
			t.Errorf("isOCIRef(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestOCIAllowHTTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"127.0.0.1:5000", true},
		{"127.0.0.2", true},
		{"localhost:5000", true},
		{"[::1]:5000", true},
		{"registry.local", true},
		{"registry.local:5000", true},
		{"a.localhost:80", true},
		{"10.1.2.3:5000", true},
		{"172.16.0.1", true},
		{"172.31.255.1:1", true},
		{"192.168.1.1:5000", true},
		{"172.32.0.1", false},
		{"8.8.8.8", false},
		{"ghcr.io", false},
		{ociDockerHub, false},
		{"local.example.com", false},
		// The reference's substring match would allow these; a public name
		// that merely contains a loopback address must not downgrade to http.
		{"127.0.0.1.example.com", false},
		{"my127.0.0.1host.io:5000", false},
	}
	for _, tt := range tests {
		if got := ociAllowHTTP(tt.in); got != tt.want {
			t.Errorf("ociAllowHTTP(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

// ---------------------------------------------------------------------------
// Pulls

func TestOCIPullAnonymous(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "")
	yaml := ociTestYAML(t, "agent.yaml")
	want := reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	p, _ := newOCITestPuller(t, nil)
	ref := reg.host + "/test/agent"
	ctx := context.Background()

	data, digest, err := p.pull(ctx, ref)
	if err != nil || !bytes.Equal(data, yaml) || digest != want {
		t.Fatalf("pull(%q) = %q, %q, %v; want the fixture, %q", ref, data, digest, err, want)
	}
	first := reg.requests()
	if n := len(first); n != 5 || first[0] != "GET /v2/" || first[1] != "HEAD /v2/test/agent/manifests/latest" || first[2] != "GET /v2/test/agent/manifests/latest" {
		t.Errorf("first pull requests = %q; want ping, HEAD, GET manifest, 2 blob GETs", first)
	}
	// Unchanged tag: ping + HEAD only, served from the cache.
	data, digest, err = p.pull(ctx, ref)
	if err != nil || !bytes.Equal(data, yaml) || digest != want {
		t.Fatalf("second pull(%q) = %q, %q, %v", ref, data, digest, err)
	}
	if got := reg.requests(); !slices.Equal(got, []string{"GET /v2/", "HEAD /v2/test/agent/manifests/latest"}) {
		t.Errorf("second pull requests = %q; want ping and HEAD only", got)
	}
	if got, err := p.remoteDigest(ctx, ref); err != nil || got != want {
		t.Errorf("remoteDigest(%q) = %q, %v; want %q", ref, got, err, want)
	}
	// Cache layout: content-addressed blobs, one ref entry naming the full reference.
	for _, d := range []string{want, ociHash(ociTestConfig(yaml)), ociHash(ociTestGzip(t, yaml))} {
		if _, err := os.Stat(filepath.Join(p.CacheDir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))); err != nil {
			t.Errorf("%s not cached: %v", d, err)
		}
	}
	refs, _ := filepath.Glob(filepath.Join(p.CacheDir, "refs", "*"))
	if len(refs) != 1 {
		t.Fatalf("refs = %q; want one entry", refs)
	}
	b, _ := os.ReadFile(refs[0])
	if !strings.Contains(string(b), `"ref":"`+reg.host+`/test/agent:latest"`) || !strings.Contains(string(b), want) {
		t.Errorf("ref entry = %s; want the full reference and its digest", b)
	}
	if tmp, _ := filepath.Glob(filepath.Join(p.CacheDir, "*", "*", ".tmp-*")); len(tmp) != 0 {
		t.Errorf("temp files left behind: %q", tmp)
	}
}

func TestOCIPullIndex(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "")
	yaml := ociTestYAML(t, "agent.yaml")
	other := ociTestYAML(t, "agent-v2.yaml")
	child := reg.push("test/agent", "", yaml, "2026-01-01T00:00:00Z")
	wrong := reg.push("test/agent", "", other, "2026-01-01T00:00:00Z")
	idx := reg.putManifest("test/agent", "latest", map[string]any{
		"schemaVersion": 2,
		"mediaType":     ociMediaIndex,
		"manifests": []ociDescriptor{
			{MediaType: ociMediaManifest, Size: int64(len(reg.manifests["test/agent@"+wrong].body)), Digest: wrong, Platform: &ociPlatform{"linux", "arm64"}},
			{MediaType: ociMediaManifest, Size: int64(len(reg.manifests["test/agent@"+child].body)), Digest: child, ArtifactType: ociArtifactType},
		},
	})
	p, _ := newOCITestPuller(t, nil)
	ref := reg.host + "/test/agent"
	ctx := context.Background()
	data, digest, err := p.pull(ctx, ref)
	if err != nil || !bytes.Equal(data, yaml) || digest != idx.Digest {
		t.Fatalf("pull(%q) = %q, %q, %v; want the platform-less child's YAML and the index digest %q", ref, data, digest, err, idx.Digest)
	}
	if got, err := p.remoteDigest(ctx, ref); err != nil || got != digest {
		t.Errorf("remoteDigest = %q, %v; want the index digest %q", got, err, digest)
	}
	reg.requests()
	// Unlike the reference (spec/OCI.md §3.6), an unchanged index is not re-downloaded.
	if _, _, err := p.pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if got := reg.requests(); len(got) != 2 {
		t.Errorf("second pull of an index = %q; want ping and HEAD only", got)
	}
}

func TestOCITamperedBlob(t *testing.T) {
	t.Parallel()
	yaml := ociTestYAML(t, "agent.yaml")
	for _, tt := range []struct {
		name    string
		replace func(orig []byte) []byte
		wantErr string
	}{
		{"same size", func(b []byte) []byte { c := bytes.Clone(b); c[len(c)-5] ^= 0xff; return c }, "tampered"},
		{"longer", func(b []byte) []byte { return append(bytes.Clone(b), 0) }, "Content-Length"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := newOCITestRegistry(t, "")
			reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
			layer := ociHash(ociTestGzip(t, yaml))
			reg.tamper[layer] = tt.replace(reg.blobs[layer])
			p, _ := newOCITestPuller(t, nil)
			_, _, err := p.pull(context.Background(), reg.host+"/test/agent")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), layer) {
				t.Fatalf("pull of a tampered layer = %v; want an error naming %s and %q", err, layer, tt.wantErr)
			}
			if _, err := os.Stat(filepath.Join(p.CacheDir, "blobs", "sha256", strings.TrimPrefix(layer, "sha256:"))); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("tampered layer reached the cache: %v", err)
			}
			if refs, _ := filepath.Glob(filepath.Join(p.CacheDir, "refs", "*")); len(refs) != 0 {
				t.Errorf("a failed pull recorded refs %q", refs)
			}
		})
	}
}

func TestOCIOversizedManifest(t *testing.T) {
	t.Parallel()
	for _, noLength := range []bool{false, true} {
		t.Run(fmt.Sprintf("noLength=%v", noLength), func(t *testing.T) {
			t.Parallel()
			reg := newOCITestRegistry(t, "")
			reg.noLength = noLength
			body := append([]byte(`{"schemaVersion":2,"pad":"`), bytes.Repeat([]byte("x"), maxOCIManifest)...)
			body = append(body, `"}`...)
			reg.put("test/agent", "latest", ociMediaManifest, body)
			p, _ := newOCITestPuller(t, nil)
			_, _, err := p.pull(context.Background(), reg.host+"/test/agent")
			if err == nil || !strings.Contains(err.Error(), "byte limit") {
				t.Fatalf("pull of a %d byte manifest = %v; want a limit error", len(body), err)
			}
		})
	}
}

func TestOCIRegistryErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		status     int
		body       string
		wantErr    string
		isNotFound bool
	}{
		{"404 json", 404, `{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}`,
			"404 Not Found: NAME_UNKNOWN: repository name not known to registry", true},
		{"500 json", 500, `{"errors":[{"code":"UNKNOWN","message":"storage backend down"},{"code":"X","message":"second"}]}`,
			"500 Internal Server Error: UNKNOWN: storage backend down; X: second", false},
		{"503 text", 503, "maintenance window\n", "503 Service Unavailable: maintenance window", false},
		{"502 html", 502, "<html>bad gateway</html>", "502 Bad Gateway", false},
		{"401 json", 401, `{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}`,
			"401 Unauthorized: DENIED: requested access to the resource is denied", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := newOCITestRegistry(t, "")
			reg.failStatus, reg.failBody = tt.status, tt.body
			p, _ := newOCITestPuller(t, nil)
			_, _, err := p.pull(context.Background(), reg.host+"/test/agent")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("pull = %v; want error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "<html>") {
				t.Errorf("error %q quotes an HTML page", err)
			}
			if got := errors.Is(err, errNotFound); got != tt.isNotFound {
				t.Errorf("errors.Is(%v, errNotFound) = %v; want %v", err, got, tt.isNotFound)
			}
		})
	}
	// A missing tag: HEAD 404 falls back to GET, whose body names the problem.
	reg := newOCITestRegistry(t, "")
	p, _ := newOCITestPuller(t, nil)
	_, err := p.remoteDigest(context.Background(), reg.host+"/test/agent:nope")
	if err == nil || !strings.Contains(err.Error(), "MANIFEST_UNKNOWN: manifest unknown") || !errors.Is(err, errNotFound) {
		t.Errorf("remoteDigest of a missing tag = %v; want MANIFEST_UNKNOWN, errNotFound", err)
	}
}

func TestOCIRepush(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "")
	v1, v2 := ociTestYAML(t, "agent.yaml"), ociTestYAML(t, "agent-v2.yaml")
	d1 := reg.push("test/agent", "latest", v1, "2026-01-01T00:00:00Z")
	p, _ := newOCITestPuller(t, nil)
	ref := reg.host + "/test/agent:latest"
	ctx := context.Background()
	if _, got, err := p.pull(ctx, ref); err != nil || got != d1 {
		t.Fatalf("pull = %q, %v; want %q", got, err, d1)
	}
	// Re-pushing identical YAML still changes the digest (the created annotation).
	d1b := reg.push("test/agent", "latest", v1, "2026-01-01T00:01:00Z")
	if got, err := p.remoteDigest(ctx, ref); err != nil || got != d1b || got == d1 {
		t.Errorf("remoteDigest after identical re-push = %q, %v; want new digest %q", got, err, d1b)
	}
	d2 := reg.push("test/agent", "latest", v2, "2026-01-02T00:00:00Z")
	if got, err := p.remoteDigest(ctx, ref); err != nil || got != d2 {
		t.Errorf("remoteDigest after push of v2 = %q, %v; want %q", got, err, d2)
	}
	data, got, err := p.pull(ctx, ref)
	if err != nil || got != d2 || !bytes.Equal(data, v2) {
		t.Errorf("pull after re-push = %q, %q, %v; want v2 at %q", data, got, err, d2)
	}
}

// TestOCIArtifactVariants covers what the reference accepts and rejects on
// pull (spec/OCI.md §2.3), with hand-made manifests.
func TestOCIArtifactVariants(t *testing.T) {
	t.Parallel()
	yaml := ociTestYAML(t, "agent.yaml")
	// Concatenated gzip members of 1 MiB of zeros: cheap to build, and
	// gzip.Reader reads multi-member streams, so it inflates past maxOCIYAML.
	bomb := bytes.Repeat(ociTestGzip(t, make([]byte, 1<<20)), maxOCIYAML>>20+1)
	ann := map[string]string{ociAnnotationVersion: "handrolled"}
	tests := []struct {
		name    string
		build   func(reg *ociTestRegistry) map[string]any
		wantErr string // "" = pulls fine and yields yaml
	}{
		{"raw yaml layer", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob(ociArtifactType, ociTestConfig(yaml)),
				"layers": []ociDescriptor{reg.putBlob("application/yaml", yaml)}}
		}, ""},
		{"legacy annotation, docker media type", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaDockerManifest,
				"annotations": map[string]string{ociAnnotationLegacy: "v1.9"},
				"config":      reg.putBlob("application/vnd.docker.container.image.v1+json", ociTestConfig(yaml)),
				"layers":      []ociDescriptor{reg.putBlob("application/vnd.docker.image.rootfs.diff.tar.gzip", ociTestGzip(t, yaml))}}
		}, ""},
		{"empty config", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob("application/vnd.oci.empty.v1+json", []byte("{}")),
				"layers": []ociDescriptor{reg.putBlob("application/yaml", yaml)}}
		}, "has no rootfs.diff_ids"},
		{"no agent annotation", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest,
				"config": reg.putBlob(ociArtifactType, ociTestConfig(yaml)),
				"layers": []ociDescriptor{reg.putBlob("application/yaml", yaml)}}
		}, "wasn't created by `docker agent share push`"},
		{"no layers", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob(ociArtifactType, ociTestConfig(yaml)), "layers": []ociDescriptor{}}
		}, "has no layers"},
		{"schema 1", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 1, "mediaType": ociMediaDockerV1Signed, "name": "test/agent"}
		}, "schema 1"},
		{"diff_id mismatch", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob(ociArtifactType, ociTestConfig([]byte("other"))),
				"layers": []ociDescriptor{reg.putBlob("application/yaml", yaml)}}
		}, "does not match config diff_id"},
		{"path traversal digest", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob(ociArtifactType, ociTestConfig(yaml)),
				"layers": []ociDescriptor{{MediaType: "application/yaml", Size: 10, Digest: "sha256:../../../etc/passwd"}}}
		}, "is not sha256:<64 hex>"},
		{"oversized layer descriptor", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob(ociArtifactType, ociTestConfig(yaml)),
				"layers": []ociDescriptor{{MediaType: "application/yaml", Size: maxOCIBlob + 1, Digest: ociHash(yaml)}}}
		}, "outside 1.."},
		{"gzip bomb", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob(ociArtifactType, ociTestConfig(yaml)),
				"layers": []ociDescriptor{reg.putBlob("application/gzip", bomb)}}
		}, "decompressed layer is over"},
		{"raw yaml over the limit", func(reg *ociTestRegistry) map[string]any {
			big := bytes.Repeat([]byte("#\n"), maxOCIYAML/2+1)
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob(ociArtifactType, ociTestConfig(big)),
				"layers": []ociDescriptor{reg.putBlob("application/yaml", big)}}
		}, "agent YAML is over"},
		{"docker manifest list", func(reg *ociTestRegistry) map[string]any {
			child := reg.putManifest("test/agent", "", map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "annotations": ann,
				"config": reg.putBlob(ociArtifactType, ociTestConfig(yaml)),
				"layers": []ociDescriptor{reg.putBlob("application/yaml", yaml)}})
			child.Platform = &ociPlatform{"linux", "amd64"}
			arm := child
			arm.Platform = &ociPlatform{"linux", "arm64"}
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaDockerList, "manifests": []ociDescriptor{arm, child}}
		}, ""},
		{"index without a usable child", func(reg *ociTestRegistry) map[string]any {
			return map[string]any{"schemaVersion": 2, "mediaType": ociMediaIndex, "manifests": []ociDescriptor{
				{MediaType: ociMediaManifest, Size: 2, Digest: ociHash([]byte("{}")), Platform: &ociPlatform{"windows", "amd64"}}}}
		}, "no linux/amd64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := newOCITestRegistry(t, "")
			reg.putManifest("test/agent", "latest", tt.build(reg))
			p, _ := newOCITestPuller(t, nil)
			data, _, err := p.pull(context.Background(), reg.host+"/test/agent")
			if tt.wantErr == "" {
				if err != nil || !bytes.Equal(data, yaml) {
					t.Errorf("pull = %q, %v; want the YAML", data, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("pull = %v; want error containing %q", err, tt.wantErr)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// cmdPull

func TestCmdPull(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "")
	yaml := ociTestYAML(t, "agent.yaml")
	want := reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	cache := t.TempDir()
	ctx := context.Background()
	var stdout, stderr bytes.Buffer
	if code := cmdPull(ctx, []string{"--cache-dir", cache, reg.host + "/test/agent"}, &stdout, &stderr); code != 0 || stdout.String() != want+"\n" {
		t.Fatalf("cmdPull = %d, stdout %q, stderr %q; want 0 and the digest", code, stdout.String(), stderr.String())
	}
	// The download is in the cache: a puller on it serves the agent offline.
	reg.Close()
	p := &ociPuller{CacheDir: cache, Getenv: func(string) string { return "" }}
	if data, d, err := p.pull(ctx, reg.host+"/test/agent"); err != nil || d != want || !bytes.Equal(data, yaml) {
		t.Errorf("pull from cmdPull's cache = %q, %q, %v", data, d, err)
	}
	for _, tt := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, 2, "usage: agentd pull"},
		{[]string{"a/b", "c/d"}, 2, "usage: agentd pull"},
		{[]string{"--bogus", "a/b"}, 2, "flag provided but not defined"},
		{[]string{"Bad"}, 1, "invalid reference"},
		// No cache fallback for an explicit pull.
		{[]string{"--cache-dir", cache, reg.host + "/test/agent"}, 1, "unreachable"},
	} {
		stdout.Reset()
		stderr.Reset()
		if code := cmdPull(ctx, tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.inStderr) || stdout.Len() != 0 {
			t.Errorf("cmdPull(%q) = %d, stdout %q, stderr %q; want %d and %q", tt.args, code, stdout.String(), stderr.String(), tt.code, tt.inStderr)
		}
	}
}

// ---------------------------------------------------------------------------
// Fuzzing

func FuzzParseOCIRef(f *testing.F) {
	for _, s := range []string{"agentcatalog/coder", "docker.io/x/y:tag", "ubuntu", "localhost:5000/a/b@sha256:" + strings.Repeat("0", 64),
		"[::1]:5000/ab/cd", "x/y:t@sha256:" + strings.Repeat("f", 64), "a//b", "a:b:c", "./agent", "ho_st:1/ab", "a__b/c--d.e_f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ref, err := parseOCIRef(s)
		if err != nil {
			return
		}
		if ref.Registry == "" || (ref.Tag == "") == (ref.Digest == "") || !ociValidRepository(ref.Repository) || !ociValidRegistry(ref.Registry) {
			t.Fatalf("parseOCIRef(%q) = %+v: invalid result", s, ref)
		}
		if ref.Digest != "" && !ociValidDigest(ref.Digest) || ref.Tag != "" && !ociValidTag(ref.Tag) {
			t.Fatalf("parseOCIRef(%q) = %+v: invalid tag or digest", s, ref)
		}
		again, err := parseOCIRef(ref.String())
		if err != nil || again != ref {
			t.Fatalf("parseOCIRef(%q) = %+v, %v; want %+v (round trip of %q)", ref.String(), again, err, ref, s)
		}
		if id := ociRefID(s); strings.ContainsAny(id, `/:@\*?"<>|`) {
			t.Fatalf("ociRefID(%q) = %q contains a path separator", s, id)
		}
	})
}

// ---------------------------------------------------------------------------
// Benchmarks

func BenchmarkParseOCIRef(b *testing.B) {
	for b.Loop() {
		if _, err := parseOCIRef("ghcr.io/org/repo/img:v1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOCIPullUnchanged measures one refresh of an unchanged tag behind
// token auth: ping, HEAD (cached token) and the artifact read from the cache.
func BenchmarkOCIPullUnchanged(b *testing.B) {
	reg := &ociTestRegistry{auth: "bearer", manifests: map[string]ociTestManifest{}, blobs: map[string][]byte{},
		tokens: map[string]bool{}, tamper: map[string][]byte{}, expiresIn: 300}
	reg.Server = httptest.NewServer(http.HandlerFunc(reg.serve))
	defer reg.Close()
	reg.host = strings.TrimPrefix(reg.URL, "http://")
	yaml, err := os.ReadFile(filepath.Join("testdata", "oci", "agent.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	cfg := reg.putBlob("application/vnd.docker.container.image.v1+json", ociTestConfig(yaml))
	layer := reg.putBlob("application/vnd.docker.image.rootfs.diff.tar.gzip", ociTestGzip(b, yaml))
	body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": ociMediaManifest, "config": cfg,
		"layers": []ociDescriptor{layer}, "annotations": map[string]string{ociAnnotationVersion: "dev"}})
	reg.put("test/agent", "latest", ociMediaManifest, body)
	p := &ociPuller{CacheDir: b.TempDir(), Getenv: func(string) string { return "" }}
	ref := reg.host + "/test/agent"
	ctx := context.Background()
	for b.Loop() {
		if _, _, err := p.pull(ctx, ref); err != nil {
			b.Fatal(err)
		}
	}
}
