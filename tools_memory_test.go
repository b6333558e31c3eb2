package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMemoryTools exercises every memory tool, then reopens the database to check
// that the memories persisted.
func TestMemoryTools(t *testing.T) {
	opts := toolsTestOpts(t, nil)
	ts := &toolsetConfig{Type: "memory", Path: "mem/memory.db"}
	s, err := newBuiltinToolset(ts, opts)
	if err != nil {
		t.Fatal(err)
	}
	env := toolsTestEnv(t)
	toolsWant(t, "get_memories(empty)", toolsCall(t, s, env, "get_memories", "{}"), "null", false)

	add := func(memory, category string) string {
		t.Helper()
		r := toolsCall(t, s, env, "add_memory", map[string]string{"memory": memory, "category": category})
		id, ok := strings.CutPrefix(r.Output, "Memory added successfully with ID: ")
		if !ok || r.IsError {
			t.Fatalf("add_memory(%q) = %+v", memory, r)
		}
		return id
	}
	id1 := add("User prefers Go over Rust", "preferences")
	id2 := add("Project uses 100% SQLite_storage", "")
	toolsWantContains(t, "add_memory(empty)", toolsCall(t, s, env, "add_memory", map[string]string{"memory": " "}), "memory is required", true)

	search := func(query, category string) []memoryRow {
		t.Helper()
		r := toolsCall(t, s, env, "search_memories", map[string]string{"query": query, "category": category})
		var rows []memoryRow
		if err := json.Unmarshal([]byte(r.Output), &rows); err != nil || r.IsError {
			t.Fatalf("search_memories(%q, %q) = %+v", query, category, r)
		}
		return rows
	}
	tests := []struct {
		query, category string
		want            []string
	}{
		{"go RUST", "", []string{id1}},
		{"go python", "", nil},
		{"", "PREFERENCES", []string{id1}},
		{"100%", "", []string{id2}},
		{"%", "", []string{id2}}, // % is literal, not a wildcard
		{"100_", "", nil},        // _ is literal too (as a wildcard it would match "100%")
		{"", "", []string{id1, id2}},
	}
	for _, tt := range tests {
		var got []string
		for _, r := range search(tt.query, tt.category) {
			got = append(got, r.ID)
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("search_memories(%q, %q) = %v; want %v", tt.query, tt.category, got, tt.want)
		}
	}

	toolsWant(t, "update_memory", toolsCall(t, s, env, "update_memory", map[string]string{"id": id1, "memory": "User prefers Zig", "category": "prefs"}),
		"Memory with ID "+id1+" updated successfully", false)
	toolsWant(t, "update_memory(unknown)", toolsCall(t, s, env, "update_memory", map[string]string{"id": "42", "memory": "x"}), "memory with ID 42 not found", true)
	toolsWant(t, "delete_memory", toolsCall(t, s, env, "delete_memory", map[string]string{"id": id2}), "Memory with ID "+id2+" deleted successfully", false)
	toolsWant(t, "delete_memory(again)", toolsCall(t, s, env, "delete_memory", map[string]string{"id": id2}), "memory with ID "+id2+" not found", true)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	if _, err := os.Stat(filepath.Join(opts.WorkingDir, "mem", "memory.db")); err != nil {
		t.Fatalf("database not under the working dir: %v", err)
	}
	s2 := toolsBuild(t, ts, opts)
	r := toolsCall(t, s2, env, "get_memories", "{}")
	var rows []memoryRow
	if err := json.Unmarshal([]byte(r.Output), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("get_memories after reopen = %+v", r)
	}
	if got := rows[0]; got.ID != id1 || got.Memory != "User prefers Zig" || got.Category != "prefs" || !strings.Contains(got.CreatedAt, "T") {
		t.Errorf("memory after reopen = %+v", got)
	}
}

// TestMemoryPath checks where databases go and that configured paths cannot leave
// the working directory.
func TestMemoryPath(t *testing.T) {
	opts := toolsTestOpts(t, nil)
	def, err := memoryPath(&toolsetConfig{Type: "memory"}, opts)
	if err != nil || !strings.HasPrefix(def, filepath.Join(opts.DataDir, "memory", "agent-")) || filepath.Base(def) != "memory.db" {
		t.Errorf("default memoryPath = %q, %v; want under %s/memory/agent-<sha8>/", def, err, opts.DataDir)
	}
	for _, p := range []string{"../x.db", "/etc/x.db", "a/../../x.db"} {
		if _, err := newBuiltinToolset(&toolsetConfig{Type: "memory", Path: p}, opts); err == nil || !strings.Contains(err.Error(), "outside") {
			t.Errorf("memory path %q: err = %v; want outside", p, err)
		}
	}
	in := filepath.Join(opts.WorkingDir, "abs.db")
	if got, err := memoryPath(&toolsetConfig{Path: in}, opts); err != nil || got != in {
		t.Errorf("memoryPath(%q) = %q, %v", in, got, err)
	}
}
