package main

// Tests for oci_cache.go: serving agents from the cache when the registry is
// down, and digest references without any network traffic.

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestOCICacheFallback(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "bearer")
	yaml := ociTestYAML(t, "agent.yaml")
	want := reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	p, logs := newOCITestPuller(t, nil)
	ref := reg.host + "/test/agent"
	ctx := context.Background()
	if _, _, err := p.pull(ctx, ref); err != nil {
		t.Fatal(err)
	}
	reg.Close()

	data, digest, err := p.pull(ctx, ref)
	if err != nil || !bytes.Equal(data, yaml) || digest != want {
		t.Fatalf("pull with the registry down = %q, %q, %v; want the cached artifact %q", data, digest, err, want)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "serving cached agent") || !strings.Contains(l, "unreachable") {
		t.Errorf("log = %q; want a warning about serving the cached agent", l)
	}
	if _, err := p.remoteDigest(ctx, ref); err == nil {
		t.Error("remoteDigest with the registry down succeeded")
	}
	if _, _, err := p.pull(ctx, reg.host+"/test/other"); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("pull of an uncached ref with the registry down = %v; want unreachable", err)
	}
}

func TestOCIPullByDigest(t *testing.T) {
	t.Parallel()
	reg := newOCITestRegistry(t, "")
	yaml := ociTestYAML(t, "agent.yaml")
	d := reg.push("test/agent", "latest", yaml, "2026-01-01T00:00:00Z")
	p, _ := newOCITestPuller(t, nil)
	ref := reg.host + "/test/agent@" + d
	ctx := context.Background()
	if data, got, err := p.pull(ctx, ref); err != nil || got != d || !bytes.Equal(data, yaml) {
		t.Fatalf("pull(%q) = %q, %q, %v", ref, data, got, err)
	}
	reg.requests()
	// Content-addressed and cached: no network at all.
	if data, got, err := p.pull(ctx, ref); err != nil || got != d || !bytes.Equal(data, yaml) {
		t.Fatalf("second pull(%q) = %q, %q, %v", ref, data, got, err)
	}
	if got := reg.requests(); len(got) != 0 {
		t.Errorf("cached digest pull made requests %q", got)
	}
	// A registry answering a digest with other content is caught.
	other := reg.push("test/agent", "", ociTestYAML(t, "agent-v2.yaml"), "2026-01-01T00:00:00Z")
	fake := strings.Repeat("0", 64)
	reg.put("test/agent", "sha256:"+fake, ociMediaManifest, reg.manifests["test/agent@"+other].body)
	_, _, err := p.pull(ctx, reg.host+"/test/agent@sha256:"+fake)
	if err == nil || !strings.Contains(err.Error(), "tampered") {
		t.Errorf("pull of a digest the registry answers wrongly = %v; want a digest mismatch", err)
	}
}
