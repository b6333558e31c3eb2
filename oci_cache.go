package main

// oci_cache.go: the OCI puller's content-addressed cache, which keeps agents
// available while a registry is down.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

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
