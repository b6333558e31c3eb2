package main

// Tests for oci_auth.go: challenges, Basic and Bearer auth against the fake
// registry in oci_test.go, docker config.json and credential helpers.

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Test helpers

// ociTestDockerConfig writes config.json into a new DOCKER_CONFIG dir and
// returns the env pointing at it.
func ociTestDockerConfig(t *testing.T, cfg string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"DOCKER_CONFIG": dir}
}

func ociB64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// ---------------------------------------------------------------------------
// Challenges

func TestParseAuthChallenge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    []ociChallenge
		wantErr string
	}{
		{in: `Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`,
			want: []ociChallenge{{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io"}}}},
		{in: `Basic realm="Registry Realm"`, want: []ociChallenge{{"basic", map[string]string{"realm": "Registry Realm"}}}},
		{in: `Bearer realm="http://127.0.0.1:5201/token",service="local",scope="repository:a/b:pull,push",error="insufficient_scope"`,
			want: []ociChallenge{{"bearer", map[string]string{"realm": "http://127.0.0.1:5201/token", "service": "local", "scope": "repository:a/b:pull,push", "error": "insufficient_scope"}}}},
		{in: `Basic realm="a", Bearer realm="b", service="c"`,
			want: []ociChallenge{{"basic", map[string]string{"realm": "a"}}, {"bearer", map[string]string{"realm": "b", "service": "c"}}}},
		{in: `BEARER Realm=tok ,  Service = "s"`, want: []ociChallenge{{"bearer", map[string]string{"realm": "tok", "service": "s"}}}},
		{in: `Bearer realm="a\"b\\c"`, want: []ociChallenge{{"bearer", map[string]string{"realm": `a"b\c`}}}},
		{in: `Negotiate abc==, Basic realm="r"`,
			want: []ociChallenge{{"negotiate", map[string]string{}}, {"basic", map[string]string{"realm": "r"}}}},
		{in: `Basic`, want: []ociChallenge{{"basic", map[string]string{}}}},
		{in: `Bearer realm="unterminated`, wantErr: "unterminated"},
		{in: `realm="x"`, wantErr: "before any auth scheme"},
		{in: ``, wantErr: "empty"},
		{in: `Bearer "x"`, wantErr: "unexpected"},
		{in: `Bearer realm="x";`, wantErr: "unexpected"},
	}
	for _, tt := range tests {
		got, err := parseAuthChallenge(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseAuthChallenge(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseAuthChallenge(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

// ociFormatChallenges writes challenges back in canonical form.
func ociFormatChallenges(chs []ociChallenge) string {
	var parts []string
	for _, c := range chs {
		keys := make([]string, 0, len(c.Params))
		for k := range c.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		s := c.Scheme
		for i, k := range keys {
			sep := ","
			if i == 0 {
				sep = " "
			}
			s += sep + k + `="` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(c.Params[k]) + `"`
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

func FuzzParseAuthChallenge(f *testing.F) {
	for _, s := range []string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io"`, `Basic realm="x"`,
		`Basic realm="a", Bearer realm="b",service="c",scope="repository:x:pull"`, `Negotiate abc==`, `Bearer realm="a\"b"`, `a=b`, `Bearer realm=`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		chs, err := parseAuthChallenge(s)
		if err != nil {
			return
		}
		for _, c := range chs {
			if c.Scheme == "" || c.Scheme != strings.ToLower(c.Scheme) || c.Params == nil {
				t.Fatalf("parseAuthChallenge(%q) = %+v: bad challenge", s, chs)
			}
		}
		canon := ociFormatChallenges(chs)
		again, err := parseAuthChallenge(canon)
		if err != nil || !reflect.DeepEqual(again, chs) {
			t.Fatalf("parseAuthChallenge(%q) = %+v, %v; want %+v (round trip of %q)", canon, again, err, chs, s)
		}
	})
}

// ---------------------------------------------------------------------------
// Pulls with auth

func TestOCIPullBearer(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "bearer")
	reg.user, reg.pass = "alice", "s3cret"
	yaml := ociTestYAML(t, "agent.yaml")
	want := reg.push("test/agent", "v1", yaml, "2026-01-01T00:00:00Z")
	env := ociTestDockerConfig(t, `{"auths":{"`+reg.host+`":{"auth":"`+ociB64("alice:s3cret")+`"}}}`)
	p, _ := newOCITestPuller(t, env)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return clock }
	ref := reg.host + "/test/agent:v1"
	ctx := context.Background()

	data, digest, err := p.pull(ctx, ref)
	if err != nil || !bytes.Equal(data, yaml) || digest != want {
		t.Fatalf("pull(%q) = %q, %q, %v; want the fixture, %q", ref, data, digest, err, want)
	}
	reg.set(func() {
		if len(reg.tokenReqs) != 1 {
			t.Fatalf("token requests = %+v; want 1", reg.tokenReqs)
		}
		tr := reg.tokenReqs[0]
		if tr.Method != "GET" || tr.Auth != "Basic "+ociB64("alice:s3cret") ||
			!slices.Equal(tr.Form["scope"], []string{"repository:test/agent:pull"}) || tr.Form.Get("service") != "test-registry" {
			t.Errorf("token request = %+v; want GET with Basic, scope repository:test/agent:pull, service test-registry", tr)
		}
		for _, a := range reg.auths {
			if a != "Bearer tok-1" { // access_token wins over token
				t.Errorf("registry saw Authorization %q; want Bearer tok-1", a)
			}
		}
	})
	// The token is cached until it expires (expires_in 300 s, renewed 30 s early).
	clock = clock.Add(4 * time.Minute)
	if _, _, err := p.pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(1 * time.Minute)
	if _, _, err := p.pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	reg.set(func() {
		if n := len(reg.tokenReqs); n != 2 {
			t.Errorf("token requests after 3 pulls over 5 minutes = %d; want 2 (one cached reuse, one renewal)", n)
		}
	})
}

func TestOCIPullBearerAnonymousTokenKey(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "bearer")
	reg.tokenOnlyKey = true
	yaml := ociTestYAML(t, "agent.yaml")
	reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	p, _ := newOCITestPuller(t, nil)
	if data, _, err := p.pull(context.Background(), reg.host+"/test/agent"); err != nil || !bytes.Equal(data, yaml) {
		t.Fatalf("pull = %q, %v", data, err)
	}
	reg.set(func() {
		if len(reg.tokenReqs) != 1 || reg.tokenReqs[0].Auth != "" {
			t.Errorf("token requests = %+v; want one without Authorization", reg.tokenReqs)
		}
	})
}

// TestOCITokenRevoked: a cached token the registry no longer accepts is
// replaced after the 401 re-challenge, and the request retried once.
func TestOCITokenRevoked(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "bearer")
	yaml := ociTestYAML(t, "agent.yaml")
	reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	p, _ := newOCITestPuller(t, nil)
	ref := reg.host + "/test/agent"
	if _, _, err := p.pull(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	reg.set(func() { clear(reg.tokens) })
	reg.requests()
	if data, _, err := p.pull(context.Background(), ref); err != nil || !bytes.Equal(data, yaml) {
		t.Fatalf("pull after token revocation = %q, %v", data, err)
	}
	want := []string{"GET /v2/", "HEAD /v2/test/agent/manifests/latest", "GET /token", "HEAD /v2/test/agent/manifests/latest"}
	if got := reg.requests(); !slices.Equal(got, want) {
		t.Errorf("requests = %q; want %q", got, want)
	}
}

// TestOCIAnonymousPingBearerRepo: a registry whose ping is open but whose
// repository wants a token is answered on the first 401.
func TestOCIAnonymousPingBearerRepo(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "bearer")
	reg.openPing = true
	yaml := ociTestYAML(t, "agent.yaml")
	reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	p, _ := newOCITestPuller(t, nil)
	if data, _, err := p.pull(context.Background(), reg.host+"/test/agent"); err != nil || !bytes.Equal(data, yaml) {
		t.Fatalf("pull = %q, %v", data, err)
	}
}

// TestOCIRealmRefused: a public registry may not send credentials to a
// plain-http token realm.
func TestOCIRealmRefused(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "bearer")
	reg.realm = "http://auth.example.com/token"
	env := ociTestDockerConfig(t, `{"auths":{"`+reg.host+`":{"auth":"`+ociB64("u:p")+`"}}}`)
	p, _ := newOCITestPuller(t, env)
	_, err := p.remoteDigest(context.Background(), reg.host+"/test/agent")
	if err == nil || !strings.Contains(err.Error(), `refusing token realm "http://auth.example.com/token"`) {
		t.Errorf("remoteDigest with an http realm on a public host = %v; want refusal", err)
	}
}

func TestOCIPullBasic(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "basic")
	reg.user, reg.pass = "bob", "pw:with:colons"
	yaml := ociTestYAML(t, "agent.yaml")
	reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	ref := reg.host + "/test/agent"

	env := ociTestDockerConfig(t, `{"auths":{"`+reg.host+`":{"username":"bob","password":"pw:with:colons"}}}`)
	p, _ := newOCITestPuller(t, env)
	if data, _, err := p.pull(context.Background(), ref); err != nil || !bytes.Equal(data, yaml) {
		t.Fatalf("pull with creds = %q, %v", data, err)
	}
	reg.set(func() {
		for _, a := range reg.auths {
			if a != "Basic "+ociB64("bob:pw:with:colons") {
				t.Errorf("registry saw Authorization %q; want Basic for bob", a)
			}
		}
	})

	anon, _ := newOCITestPuller(t, nil)
	_, _, err := anon.pull(context.Background(), ref)
	if err == nil || !strings.Contains(err.Error(), "401 Unauthorized: UNAUTHORIZED: authentication required") {
		t.Errorf("pull without creds = %v; want the registry's UNAUTHORIZED message", err)
	}
}

func TestOCIBlobRedirectDropsAuthorization(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "bearer")
	var cdnHits int
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("blob host got Authorization %q; the registry token must not leave the registry host", a)
		}
		if r.URL.Query().Get("sig") != "secret" {
			t.Errorf("blob host request %s lost its query", r.URL)
		}
		reg.mu.Lock()
		defer reg.mu.Unlock()
		cdnHits++
		reg.writeBlob(w, r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:])
	}))
	t.Cleanup(cdn.Close)
	reg.blobRedirect = cdn.URL // same IP, other port: Go's default policy would keep the header
	yaml := ociTestYAML(t, "agent.yaml")
	reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	p, _ := newOCITestPuller(t, nil)
	if data, _, err := p.pull(context.Background(), reg.host+"/test/agent"); err != nil || !bytes.Equal(data, yaml) {
		t.Fatalf("pull = %q, %v", data, err)
	}
	reg.set(func() {
		if cdnHits != 2 {
			t.Errorf("blob host hits = %d; want 2 (config and layer)", cdnHits)
		}
	})
}

// ---------------------------------------------------------------------------
// Credentials

// ociTestHelper writes a fake docker-credential-<name> into a new PATH dir.
// It logs each server URL it is asked about to the returned file and answers
// from answers (server URL → JSON line); anything else is "not found", and
// the server URL "boom" fails.
func ociTestHelper(t *testing.T, name string, answers map[string]string) (pathDir, logFile string) {
	t.Helper()
	dir := t.TempDir()
	logFile = filepath.Join(dir, "helper.log")
	var cases strings.Builder
	keys := make([]string, 0, len(answers))
	for k := range answers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&cases, "  '%s') echo '%s' ;;\n", k, answers[k])
	}
	script := "#!/bin/sh\n" +
		"[ \"$1\" = get ] || { echo \"unexpected action $1\"; exit 3; }\n" +
		"addr=$(cat)\n" +
		"echo \"$addr\" >> '" + logFile + "'\n" +
		"case \"$addr\" in\n" + cases.String() +
		"  *) echo 'credentials not found in native keychain'; exit 1 ;;\n" +
		"esac\n"
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, logFile
}

func TestOCICredHelper(t *testing.T) {
	t.Parallel()
	t.Run("credsStore", func(t *testing.T) {
		t.Parallel()
		reg := newOCITestRegistry(t, "bearer")
		reg.user, reg.pass = "alice", "from-helper"
		yaml := ociTestYAML(t, "agent.yaml")
		reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
		dir, log := ociTestHelper(t, "x", map[string]string{reg.host: `{"ServerURL":"` + reg.host + `","Username":"alice","Secret":"from-helper"}`})
		env := ociTestDockerConfig(t, `{"credsStore":"x","auths":{"`+reg.host+`":{"auth":"`+ociB64("wrong:wrong")+`"}}}`)
		env["PATH"] = dir
		p, _ := newOCITestPuller(t, env)
		if data, _, err := p.pull(context.Background(), reg.host+"/test/agent"); err != nil || !bytes.Equal(data, yaml) {
			t.Fatalf("pull = %q, %v", data, err)
		}
		b, _ := os.ReadFile(log)
		if got, want := string(b), reg.host+"/test/agent\n"+reg.host+"\n"; got != want {
			t.Errorf("helper was asked for %q; want %q (repository key first, then registry)", got, want)
		}
		reg.set(func() {
			if len(reg.tokenReqs) != 1 || reg.tokenReqs[0].Auth != "Basic "+ociB64("alice:from-helper") {
				t.Errorf("token requests = %+v; want Basic with the helper's credentials", reg.tokenReqs)
			}
		})
	})
	t.Run("credHelpers identity token", func(t *testing.T) {
		t.Parallel()
		reg := newOCITestRegistry(t, "bearer")
		reg.identityToken = "idtok-123"
		yaml := ociTestYAML(t, "agent.yaml")
		reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
		key := reg.host + "/test/agent"
		dir, log := ociTestHelper(t, "x", map[string]string{key: `{"ServerURL":"` + key + `","Username":"<token>","Secret":"idtok-123"}`})
		// credHelpers for the repository key wins over credsStore "missing",
		// which would fail if it were run.
		env := ociTestDockerConfig(t, `{"credsStore":"missing","credHelpers":{"`+key+`":"x"}}`)
		env["PATH"] = dir
		p, _ := newOCITestPuller(t, env)
		if data, _, err := p.pull(context.Background(), key); err != nil || !bytes.Equal(data, yaml) {
			t.Fatalf("pull = %q, %v", data, err)
		}
		if b, _ := os.ReadFile(log); string(b) != key+"\n" {
			t.Errorf("helper was asked for %q; want only %q", b, key)
		}
		reg.set(func() {
			if len(reg.tokenReqs) != 1 {
				t.Fatalf("token requests = %+v; want one POST", reg.tokenReqs)
			}
			f := reg.tokenReqs[0].Form
			if reg.tokenReqs[0].Method != "POST" || f.Get("grant_type") != "refresh_token" || f.Get("refresh_token") != "idtok-123" ||
				f.Get("service") != "test-registry" || f.Get("scope") != "repository:test/agent:pull" {
				t.Errorf("token request = %+v; want the refresh_token grant", reg.tokenReqs[0])
			}
		})
	})
	t.Run("helper failure", func(t *testing.T) {
		t.Parallel()
		reg := newOCITestRegistry(t, "bearer")
		dir, _ := ociTestHelper(t, "x", nil)
		if err := os.WriteFile(filepath.Join(dir, "docker-credential-x"), []byte("#!/bin/sh\necho 'keychain locked' >&2\nexit 2\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		env := ociTestDockerConfig(t, `{"credsStore":"x"}`)
		env["PATH"] = dir
		p, _ := newOCITestPuller(t, env)
		_, _, err := p.pull(context.Background(), reg.host+"/test/agent")
		if err == nil || !strings.Contains(err.Error(), "keychain locked") || !strings.Contains(err.Error(), "docker-credential-x") {
			t.Errorf("pull with a failing helper = %v; want the helper's message", err)
		}
	})
	t.Run("helper missing", func(t *testing.T) {
		t.Parallel()
		reg := newOCITestRegistry(t, "bearer")
		env := ociTestDockerConfig(t, `{"credsStore":"nope"}`)
		env["PATH"] = t.TempDir()
		p, _ := newOCITestPuller(t, env)
		_, _, err := p.pull(context.Background(), reg.host+"/test/agent")
		if err == nil || !strings.Contains(err.Error(), "docker-credential-nope not found on PATH") {
			t.Errorf("pull with a missing helper = %v", err)
		}
	})
}

func TestOCIIdentityTokenFallback(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "bearer")
	reg.noOAuth = true
	yaml := ociTestYAML(t, "agent.yaml")
	reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	env := ociTestDockerConfig(t, `{"auths":{"`+reg.host+`":{"identitytoken":"idtok"}}}`)
	p, _ := newOCITestPuller(t, env)
	if data, _, err := p.pull(context.Background(), reg.host+"/test/agent"); err != nil || !bytes.Equal(data, yaml) {
		t.Fatalf("pull = %q, %v", data, err)
	}
	reg.set(func() {
		if len(reg.tokenReqs) != 2 || reg.tokenReqs[0].Method != "POST" || reg.tokenReqs[1].Method != "GET" {
			t.Errorf("token requests = %+v; want POST (404) then GET", reg.tokenReqs)
		}
	})
}

// TestOCICredentialLookup checks the config discovery and key order of
// spec/OCI.md §3.2 without a registry.
func TestOCICredentialLookup(t *testing.T) {
	t.Parallel()
	hub, _ := parseOCIRef("agentcatalog/coder")
	local, _ := parseOCIRef("127.0.0.1:5000/test/basic")
	basic := func(u, p string) ociCreds { return ociCreds{Username: u, Password: p} }
	tests := []struct {
		name    string
		config  string            // DOCKER_CONFIG/config.json; "" = none
		env     map[string]string // extra environment; files named in values are created by the case
		ref     ociRef
		want    ociCreds
		wantErr string
	}{
		{name: "no config", ref: local},
		{name: "auth base64", config: `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("u:p:q") + `"}}}`, ref: local, want: basic("u", "p:q")},
		{name: "username password", config: `{"auths":{"127.0.0.1:5000":{"username":"u","password":"p"}}}`, ref: local, want: basic("u", "p")},
		{name: "identity token", config: `{"auths":{"127.0.0.1:5000":{"identitytoken":"it"}}}`, ref: local, want: ociCreds{IdentityToken: "it"}},
		{name: "registry token", config: `{"auths":{"127.0.0.1:5000":{"registrytoken":"rt"}}}`, ref: local, want: ociCreds{RegistryToken: "rt"}},
		{name: "repository key wins", config: `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("reg:1") + `"},"127.0.0.1:5000/test/basic":{"auth":"` + ociB64("repo:2") + `"}}}`,
			ref: local, want: basic("repo", "2")},
		{name: "url key reduced to host", config: `{"auths":{"https://127.0.0.1:5000/v2/":{"auth":"` + ociB64("u:p") + `"}}}`, ref: local, want: basic("u", "p")},
		{name: "other host ignored", config: `{"auths":{"127.0.0.1:5001":{"auth":"` + ociB64("u:p") + `"}}}`, ref: local},
		{name: "docker hub v1 key", config: `{"auths":{"https://index.docker.io/v1/":{"auth":"` + ociB64("hub:p") + `"}}}`, ref: hub, want: basic("hub", "p")},
		{name: "docker hub repository key", config: `{"auths":{"https://index.docker.io/v1/":{"auth":"` + ociB64("hub:p") + `"},"index.docker.io/agentcatalog/coder":{"auth":"` + ociB64("repo:p") + `"}}}`,
			ref: hub, want: basic("repo", "p")},
		// Beyond the reference: podman and older tools key Docker Hub as "docker.io".
		{name: "docker hub docker.io alias", config: `{"auths":{"docker.io":{"auth":"` + ociB64("alias:p") + `"}}}`, ref: hub, want: basic("alias", "p")},
		{name: "bad base64", config: `{"auths":{"127.0.0.1:5000":{"auth":"%%%"}}}`, ref: local, wantErr: "base64"},
		{name: "auth without colon", config: `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("nocolon") + `"}}}`, ref: local, wantErr: "user:password"},
		{name: "bad json", config: `{"auths":`, ref: local, wantErr: "parsing"},
		{name: "DOCKER_AUTH_CONFIG first", config: `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("file:p") + `"}}}`,
			env: map[string]string{"DOCKER_AUTH_CONFIG": `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("env:p") + `"}}}`}, ref: local, want: basic("env", "p")},
		{name: "DOCKER_AUTH_CONFIG needs a config file", env: map[string]string{"DOCKER_AUTH_CONFIG": `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("env:p") + `"}}}`}, ref: local},
		{name: "podman REGISTRY_AUTH_FILE", env: map[string]string{"REGISTRY_AUTH_FILE": `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("podman:p") + `"}}}`}, ref: local, want: basic("podman", "p")},
		{name: "podman XDG_RUNTIME_DIR", env: map[string]string{"XDG_RUNTIME_DIR": `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("xdg:p") + `"}}}`}, ref: local, want: basic("xdg", "p")},
		{name: "docker config wins over podman", config: `{}`, env: map[string]string{"REGISTRY_AUTH_FILE": `{"auths":{"127.0.0.1:5000":{"auth":"` + ociB64("podman:p") + `"}}}`}, ref: local},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			if tt.config != "" {
				env = ociTestDockerConfig(t, tt.config)
			}
			for k, v := range tt.env {
				switch k {
				case "REGISTRY_AUTH_FILE":
					f := filepath.Join(t.TempDir(), "auth.json")
					os.WriteFile(f, []byte(v), 0o600)
					v = f
				case "XDG_RUNTIME_DIR":
					d := t.TempDir()
					os.MkdirAll(filepath.Join(d, "containers"), 0o700)
					os.WriteFile(filepath.Join(d, "containers", "auth.json"), []byte(v), 0o600)
					v = d
				}
				env[k] = v
			}
			p, _ := newOCITestPuller(t, env)
			got, err := p.credentials(context.Background(), tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("credentials(%s) = %+v, %v; want error containing %q", tt.ref, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("credentials(%s) = %+v, %v; want %+v", tt.ref, got, err, tt.want)
			}
		})
	}
	// ~/.docker/config.json is used when DOCKER_CONFIG is unset.
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".docker"), 0o700)
	os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(`{"auths":{"127.0.0.1:5000":{"auth":"`+ociB64("home:p")+`"}}}`), 0o600)
	p, _ := newOCITestPuller(t, map[string]string{"HOME": home})
	if got, err := p.credentials(context.Background(), local); err != nil || got != basic("home", "p") {
		t.Errorf("credentials from ~/.docker = %+v, %v", got, err)
	}
}
