package main

// tools_memory.go: the memory toolset, a SQLite table of facts the agent keeps across
// sessions (CONFIG.md §6.3 memory). The schema is the reference's so databases are
// interchangeable.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// memoryRow is one stored memory (JSON as the reference's).
type memoryRow struct {
	ID        string `json:"id"`
	CreatedAt string `json:"created_at"`
	Memory    string `json:"memory"`
	Category  string `json:"category,omitempty"`
}

// memoryPath resolves the database file of a memory toolset: a configured path is
// relative to the working dir (else the config file's dir) and must stay inside it;
// no path means <DataDir>/memory/<configbase>-<sha8>/memory.db.
func memoryPath(ts *toolsetConfig, opts toolsetOptions) (string, error) {
	if ts.Path == "" {
		if opts.DataDir == "" {
			return "", errors.New("memory toolset: no path set and no data dir to default to")
		}
		base, sum := "agent", sha256.Sum256([]byte(opts.ConfigPath))
		if opts.ConfigPath != "" {
			base = strings.TrimSuffix(filepath.Base(opts.ConfigPath), filepath.Ext(opts.ConfigPath))
		}
		return filepath.Join(opts.DataDir, "memory", base+"-"+hex.EncodeToString(sum[:])[:8], "memory.db"), nil
	}
	root := opts.WorkingDir
	if root == "" && opts.ConfigPath != "" {
		root = filepath.Dir(opts.ConfigPath)
	}
	if root == "" {
		return "", fmt.Errorf("memory path %q: no working dir to resolve it against", ts.Path)
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	p := ts.Path
	if filepath.IsAbs(p) {
		rel, err := filepath.Rel(root, p)
		if err != nil || !filepath.IsLocal(rel) {
			return "", fmt.Errorf("memory path %q is outside %s", ts.Path, root)
		}
		p = rel
	}
	if !filepath.IsLocal(p) {
		return "", fmt.Errorf("memory path %q is outside %s", ts.Path, root)
	}
	return filepath.Join(root, p), nil
}

// newMemoryToolset opens (creating if needed) the memory database; close() closes it.
func newMemoryToolset(ts *toolsetConfig, opts toolsetOptions) (*builtinToolset, error) {
	path, err := memoryPath(ts, opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("memory database: %w", err)
	}
	// busy_timeout: several agents (or processes) may share one file; wait rather
	// than fail on a concurrent write (https://sqlite.org/c3ref/busy_timeout.html).
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		return nil, fmt.Errorf("memory database: %w", err)
	}
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS memories (
		id TEXT PRIMARY KEY, created_at TEXT, memory TEXT, category TEXT DEFAULT '')`); err != nil {
		db.Close()
		return nil, fmt.Errorf("memory database %s: %w", path, err)
	}
	m := &memoryDB{db: db}
	return &builtinToolset{
		list: []tool{
			{def: toolsDef("add_memory", "memory", "Add Memory", "Store a fact worth remembering across conversations, optionally with a category.", false), run: toolsRun(m.add)},
			{def: toolsDef("get_memories", "memory", "Get Memories", "List every stored memory.", true), run: toolsRun(m.getAll)},
			{def: toolsDef("delete_memory", "memory", "Delete Memory", "Delete a memory by ID.", false), run: toolsRun(m.delete)},
			{def: toolsDef("search_memories", "memory", "Search Memories", "Find memories containing all the given words (case-insensitive), optionally within a category.", true), run: toolsRun(m.search)},
			{def: toolsDef("update_memory", "memory", "Update Memory", "Replace the text (and optionally the category) of a memory by ID.", false), run: toolsRun(m.update)},
		},
		instr: `You have a persistent memory shared across conversations.
- Search or list memories at the start of a task to recall what you know about the user and the project.
- Add a memory when you learn a durable fact or preference; update or delete memories that become wrong.
- Use categories to keep memories organised.`,
		closeFn: db.Close,
	}, nil
}

// memoryDB implements the memory tools over one database.
type memoryDB struct{ db *sql.DB }

type memoryArgs struct {
	ID       string `json:"id"`
	Memory   string `json:"memory"`
	Category string `json:"category"`
	Query    string `json:"query"`
}

func (m *memoryDB) add(ctx context.Context, env *toolEnv, a memoryArgs) toolResult {
	if strings.TrimSpace(a.Memory) == "" {
		return toolErrorf("memory is required")
	}
	now := time.Now()
	id := strconv.FormatInt(now.UnixNano(), 10)
	if _, err := m.db.ExecContext(ctx, `INSERT INTO memories (id, created_at, memory, category) VALUES (?, ?, ?, ?)`,
		id, now.UTC().Format(time.RFC3339), a.Memory, a.Category); err != nil {
		return toolErrorf("failed to add memory: %v", err)
	}
	return toolResult{Output: "Memory added successfully with ID: " + id}
}

func (m *memoryDB) getAll(ctx context.Context, env *toolEnv, a memoryArgs) toolResult {
	return m.query(ctx, `SELECT id, created_at, memory, category FROM memories ORDER BY created_at, id`)
}

// search requires every whitespace-separated word of the query to appear in the
// memory (LIKE with escaping, so % and _ are literal) and filters by category.
func (m *memoryDB) search(ctx context.Context, env *toolEnv, a memoryArgs) toolResult {
	q := `SELECT id, created_at, memory, category FROM memories WHERE 1=1`
	var params []any
	for _, w := range strings.Fields(a.Query) {
		q += ` AND LOWER(memory) LIKE ? ESCAPE '\'`
		w = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(w))
		params = append(params, "%"+w+"%")
	}
	if a.Category != "" {
		q += ` AND LOWER(category) = LOWER(?)`
		params = append(params, a.Category)
	}
	return m.query(ctx, q+` ORDER BY created_at, id`, params...)
}

// query runs a SELECT of memories and returns them as JSON; no rows prints as null,
// as the reference's nil slice does.
func (m *memoryDB) query(ctx context.Context, q string, params ...any) toolResult {
	rows, err := m.db.QueryContext(ctx, q, params...)
	if err != nil {
		return toolErrorf("failed to read memories: %v", err)
	}
	defer rows.Close()
	var out []memoryRow
	for rows.Next() {
		var r memoryRow
		var cat sql.NullString
		if err := rows.Scan(&r.ID, &r.CreatedAt, &r.Memory, &cat); err != nil {
			return toolErrorf("failed to read memories: %v", err)
		}
		r.Category = cat.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return toolErrorf("failed to read memories: %v", err)
	}
	return toolsJSON(out)
}

func (m *memoryDB) delete(ctx context.Context, env *toolEnv, a memoryArgs) toolResult {
	res, err := m.db.ExecContext(ctx, `DELETE FROM memories WHERE id = ?`, a.ID)
	if err != nil {
		return toolErrorf("failed to delete memory: %v", err)
	}
	// The reference reports success for an unknown ID; telling the model is better.
	if n, _ := res.RowsAffected(); n == 0 {
		return toolErrorf("memory with ID %s not found", a.ID)
	}
	return toolResult{Output: fmt.Sprintf("Memory with ID %s deleted successfully", a.ID)}
}

func (m *memoryDB) update(ctx context.Context, env *toolEnv, a memoryArgs) toolResult {
	if strings.TrimSpace(a.Memory) == "" {
		return toolErrorf("memory is required")
	}
	res, err := m.db.ExecContext(ctx, `UPDATE memories SET memory = ?, category = ? WHERE id = ?`, a.Memory, a.Category, a.ID)
	if err != nil {
		return toolErrorf("failed to update memory: %v", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return toolErrorf("memory with ID %s not found", a.ID)
	}
	return toolResult{Output: fmt.Sprintf("Memory with ID %s updated successfully", a.ID)}
}
