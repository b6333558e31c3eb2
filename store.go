package main

// store.go owns all SQL: the session database, laid out exactly as the reference's after
// its 19 migrations (API.md §9) so either program can open the other's file.
//
// Concurrency design: every write goes through one dedicated connection (a database/sql
// pool of size 1), so our own writers queue in Go instead of spinning on SQLITE_BUSY, and
// each write is one short autocommit statement or one short immediate transaction.
// Reads use a separate pool of query_only connections; in WAL mode readers never block the
// writer and the writer never blocks readers. busy_timeout still covers other processes
// (the reference) that may have the same file open.

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"modernc.org/sqlite" // the only dependency: pure-Go SQLite driver "sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// store is the SQLite session database. It is safe for concurrent use; all methods
// translate a missing session to an error wrapping errNotFound.
type store struct {
	w   *sql.DB // exactly one connection: the only writer
	r   *sql.DB // read pool, query_only
	log *slog.Logger
	// wgate admits writers to w one at a time in arrival order. database/sql hands a
	// freed connection to a random waiter, which gave 100 concurrent writers a tail
	// of hundreds of milliseconds; goroutines blocked on a channel are served FIFO.
	wgate chan struct{}
	group txGroup // runs' writes waiting to share a transaction (store_runs.go)
	// prepared holds the writer's hot statements (streaming appends and updates),
	// prepared once: compiling them, including the count triggers, was half their cost.
	// Read-only after openStore.
	prepared map[string]*sql.Stmt
	// preparedR holds the read pool's per-run queries (session row, history), each
	// compiled once per pooled connection instead of on every call: parsing them was
	// a tenth of the server's CPU per run. Read-only after openStore.
	preparedR map[string]*sql.Stmt

	now   func() time.Time // clock for new sessions and migration records
	newID func() string    // session IDs (UUID v4, as the reference)

	history *historyCache // decoded histories of recent sessions (history.go)

	// legacyColumn reports whether sessions.messages still exists. The reference's
	// later migration 020 drops it; we keep working on such a file.
	legacyColumn bool
}

// sessionRecord is one row of the sessions table, without its items.
type sessionRecord struct {
	ID, Title                                         string
	CreatedAt                                         time.Time
	ToolsApproved, Thinking, SendUserMessage, Starred bool
	MaxIterations                                     int
	WorkingDir                                        string
	Permissions                                       *permissionsConfig
	InputTokens, OutputTokens                         int64
	Cost                                              float64
	ParentID                                          string
	AgentModelOverrides, CustomModelsUsed             string // raw JSON text as stored ('{}', '[]')
	// SafetyPolicy is the session's safety mode (safety.go), "" for the default;
	// PriorSafetyPolicy the mode tools/toggle turned autonomous and restores.
	SafetyPolicy, PriorSafetyPolicy string
	Attributes                      map[string]string // an embedder's metadata, set at creation
}

// sessionSummary is one element of the session list: metadata plus a message count
// computed in SQL.
type sessionSummary struct {
	ID, Title                 string
	CreatedAt                 time.Time
	NumMessages               int
	InputTokens, OutputTokens int64
	WorkingDir                string
	Starred                   bool
}

// sessionItem is one entry of a session's history: a message, a sub-session (loaded
// recursively into SubSession and SubItems) or a compaction summary.
type sessionItem struct {
	ID         int64 // session_items.id; 0 for items decoded from the legacy messages column
	Position   int
	Type       string // "message" | "subsession" | "summary"
	AgentName  string
	Message    *chatMessage
	Implicit   bool
	SubSession *sessionRecord
	SubItems   []sessionItem
	Summary    string
}

// storeMigration is one schema step. Names are the identity (the reference checks names,
// not ids), and each step runs in its own transaction together with its migrations row.
type storeMigration struct {
	id         int
	name, desc string
	sql        string
	fn         func(ctx context.Context, st *store, tx *sql.Tx) error
}

// storeMigrations is the reference's list, verbatim in name, description and effect
// (API.md §9.2). Never edit a shipped step; agentd's own steps are in storeOwnMigrations.
var storeMigrations = []storeMigration{
	{1, "001_add_tools_approved_column", "Add tools_approved column to sessions table",
		`ALTER TABLE sessions ADD COLUMN tools_approved BOOLEAN DEFAULT 0`, nil},
	{2, "002_add_usage_column", "Add usage column to sessions table",
		`ALTER TABLE sessions ADD COLUMN input_tokens INTEGER DEFAULT 0`, nil},
	{3, "003_add_output_tokens_column", "Add output_tokens column to sessions table",
		`ALTER TABLE sessions ADD COLUMN output_tokens INTEGER DEFAULT 0`, nil},
	{4, "004_add_title_column", "Add title column to sessions table",
		`ALTER TABLE sessions ADD COLUMN title TEXT DEFAULT ''`, nil},
	{5, "005_add_cost_column", "Add cost column to sessions table",
		`ALTER TABLE sessions ADD COLUMN cost REAL DEFAULT 0`, nil},
	{6, "006_add_send_user_message_column", "Add send_user_message column to sessions table",
		`ALTER TABLE sessions ADD COLUMN send_user_message BOOLEAN DEFAULT 1`, nil},
	{7, "007_add_max_iterations_column", "Add max_iterations column to sessions table",
		`ALTER TABLE sessions ADD COLUMN max_iterations INTEGER DEFAULT 0`, nil},
	{8, "008_add_working_dir_column", "Add working_dir column to sessions table",
		`ALTER TABLE sessions ADD COLUMN working_dir TEXT DEFAULT ''`, nil},
	{9, "009_add_starred_column", "Add starred column to sessions table",
		`ALTER TABLE sessions ADD COLUMN starred BOOLEAN DEFAULT 0`, nil},
	{10, "010_add_permissions_column", "Add permissions column to sessions table for session-level permission overrides",
		`ALTER TABLE sessions ADD COLUMN permissions TEXT DEFAULT ''`, nil},
	{11, "011_add_agent_model_overrides_column", "Add agent_model_overrides column to sessions table for per-session model switching",
		`ALTER TABLE sessions ADD COLUMN agent_model_overrides TEXT DEFAULT '{}'`, nil},
	{12, "012_add_custom_models_used_column", "Add custom_models_used column to sessions table for tracking custom models used in session",
		`ALTER TABLE sessions ADD COLUMN custom_models_used TEXT DEFAULT '[]'`, nil},
	{13, "013_add_thinking_column", "Add thinking column to sessions table for session-level thinking toggle (default enabled)",
		`ALTER TABLE sessions ADD COLUMN thinking BOOLEAN DEFAULT 1`, nil},
	{14, "014_normalize_session_items", "Add session_items table and parent_id column for normalized session storage", `
		ALTER TABLE sessions ADD COLUMN parent_id TEXT REFERENCES sessions(id) ON DELETE CASCADE;
		CREATE INDEX IF NOT EXISTS idx_sessions_parent_id ON sessions(parent_id);
		CREATE TABLE IF NOT EXISTS session_items (
			id INTEGER PRIMARY KEY AUTOINCREMENT,
			session_id TEXT NOT NULL,
			position INTEGER NOT NULL,     -- 0.. per session
			item_type TEXT NOT NULL,       -- 'message' | 'subsession' | 'summary'
			agent_name TEXT,               -- '' for user messages
			message_json TEXT,             -- chat.Message JSON
			implicit BOOLEAN DEFAULT 0,    -- 0/1
			subsession_id TEXT,
			summary_text TEXT,
			FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE CASCADE,
			FOREIGN KEY (subsession_id) REFERENCES sessions(id) ON DELETE SET NULL
		);
		CREATE INDEX IF NOT EXISTS idx_session_items_session ON session_items(session_id, position);`, nil},
	{15, "015_migrate_messages_to_session_items", "Migrate existing messages JSON data to session_items table",
		"", storeMigrateLegacyItems},
	{16, "016_add_branching_columns", "Add branch metadata columns for session branching", `
		ALTER TABLE sessions ADD COLUMN branch_parent_session_id TEXT REFERENCES sessions(id) ON DELETE SET NULL;
		ALTER TABLE sessions ADD COLUMN branch_parent_position INTEGER;
		ALTER TABLE sessions ADD COLUMN branch_created_at TEXT;
		CREATE INDEX IF NOT EXISTS idx_sessions_branch_parent ON sessions(branch_parent_session_id);`, nil},
	{17, "017_add_split_diff_view_column", "Add split_diff_view column to sessions table for persisting split diff toggle",
		`ALTER TABLE sessions ADD COLUMN split_diff_view BOOLEAN`, nil},
	{18, "018_add_session_items_type_index", "Add index on session_items(session_id, item_type) to speed up session summary message counts",
		`CREATE INDEX IF NOT EXISTS idx_session_items_session_type ON session_items(session_id, item_type)`, nil},
	{19, "019_drop_branch_and_split_diff_columns", "Drop unused branch metadata columns and split_diff_view column", `
		DROP INDEX IF EXISTS idx_sessions_branch_parent;
		ALTER TABLE sessions DROP COLUMN branch_parent_session_id;
		ALTER TABLE sessions DROP COLUMN branch_parent_position;
		ALTER TABLE sessions DROP COLUMN branch_created_at;
		ALTER TABLE sessions DROP COLUMN split_diff_view;`, nil},
}

// storeNonSystem is an SQL expression, 1 when the message JSON in column c is a non-system
// message and 0 otherwise (NULL or invalid JSON count as 0, matching items, which skips
// them). It reads the prefix encoding/json always writes ({"role":"...) and parses only
// JSON written some other way; CASE, unlike AND, guarantees json_extract never sees
// invalid JSON, which would fail the whole statement. The prefix is compared as bytes:
// substr of TEXT needs the value NUL-terminated, and a bound value is not, so SQLite
// copied the whole row (15 MiB for a large image) for each test; CAST to BLOB reads it
// in place. Both prefixes are ASCII, so bytes and characters agree.
func storeNonSystem(c string) string {
	return strings.ReplaceAll(`(CASE WHEN typeof(@) = 'text' AND substr(CAST(@ AS BLOB), 1, 9) = CAST('{"role":"' AS BLOB)
		THEN substr(CAST(@ AS BLOB), 10, 7) != CAST('system"' AS BLOB)
		WHEN json_valid(@) THEN coalesce(json_extract(@, '$.role'), '') != 'system' ELSE 0 END)`, "@", c)
}

// storeCountTriggers keep agentd_message_counts in step with session_items.
func storeCountTriggers() string {
	return `
		CREATE TRIGGER agentd_items_insert AFTER INSERT ON session_items WHEN NEW.item_type = 'message' BEGIN
			INSERT INTO agentd_message_counts (session_id, n) VALUES (NEW.session_id, ` + storeNonSystem("NEW.message_json") + `)
			ON CONFLICT(session_id) DO UPDATE SET n = n + excluded.n;
		END;
		CREATE TRIGGER agentd_items_delete AFTER DELETE ON session_items WHEN OLD.item_type = 'message' BEGIN
			UPDATE agentd_message_counts SET n = n - ` + storeNonSystem("OLD.message_json") + ` WHERE session_id = OLD.session_id;
		END;
		-- Per-token updates of a streaming message keep its role, so the WHEN skips them.
		CREATE TRIGGER agentd_items_update AFTER UPDATE OF session_id, item_type, message_json ON session_items
		WHEN OLD.session_id IS NOT NEW.session_id OR OLD.item_type IS NOT NEW.item_type
			OR ` + storeNonSystem("OLD.message_json") + ` != ` + storeNonSystem("NEW.message_json") + ` BEGIN
			UPDATE agentd_message_counts SET n = n - ` + storeNonSystem("OLD.message_json") + `
				WHERE session_id = OLD.session_id AND OLD.item_type = 'message';
			INSERT INTO agentd_message_counts (session_id, n)
				SELECT NEW.session_id, ` + storeNonSystem("NEW.message_json") + ` WHERE NEW.item_type = 'message'
				ON CONFLICT(session_id) DO UPDATE SET n = n + excluded.n;
		END;`
}

// storeOwnMigrations are agentd's additions, applied after the reference's and recorded
// in agentd_migrations, never in `migrations`: newer reference versions refuse a file
// whose MAX(migrations.id) they do not know. Tables are not STRICT because the reference
// may run an SQLite older than 3.37, which cannot read a schema containing STRICT.
var storeOwnMigrations = []storeMigration{
	// The reference loads every item of every session to list sessions (O(whole DB)).
	// Triggers keep a per-session count of non-system messages, so listing reads one row
	// per session. They live in the schema, so they also count what the reference writes.
	{0, "agentd_001_message_counts", "Per-session non-system message counts kept by triggers", `
		CREATE TABLE agentd_message_counts (
			session_id TEXT PRIMARY KEY,  -- sessions.id (no FK: the triggers clean up)
			n INTEGER NOT NULL DEFAULT 0   -- non-system message items of this session alone
		) WITHOUT ROWID;
		-- Sub-session edges only, so listing never scans message items.
		CREATE INDEX agentd_idx_subsession_edges ON session_items(session_id, subsession_id)
			WHERE item_type = 'subsession';
		` + storeCountTriggers() + `
		CREATE TRIGGER agentd_sessions_delete AFTER DELETE ON sessions BEGIN
			DELETE FROM agentd_message_counts WHERE session_id = OLD.id;
		END;
		INSERT INTO agentd_message_counts (session_id, n)
			SELECT session_id, sum(` + storeNonSystem("message_json") + `) FROM session_items
			WHERE item_type = 'message' GROUP BY session_id;`, nil},
	// Children of runs (procs.go), so a start after a crash can end those still alive.
	{0, "agentd_002_process_groups", "Process groups of running tool and MCP children", `
		CREATE TABLE agentd_process_groups (
			pgid INTEGER NOT NULL,           -- process group id = the leader's pid
			started INTEGER NOT NULL,        -- leader's start time, clock ticks after boot; 0 unknown
			tag TEXT NOT NULL,               -- value of AGENTD_PROCESS_GROUP in the children's environment
			owner_pid INTEGER NOT NULL,      -- the agentd that started it
			owner_started INTEGER NOT NULL,  -- and its start time, so a reused pid is not taken for it
			command TEXT NOT NULL,           -- for the log
			recorded_at TEXT NOT NULL,       -- RFC3339
			PRIMARY KEY (pgid, tag)
		);`, nil},
	// The session list is ordered by real time (created_at carries offsets), newest first;
	// this index lets a page of it read only its own rows. julianday is deterministic for
	// such arguments since SQLite 3.20, so any reader of the file can parse the schema.
	{0, "agentd_003_sessions_by_time", "Index of sessions by the real time of created_at", `
		CREATE INDEX agentd_idx_sessions_time ON sessions(coalesce(julianday(created_at), 0));`, nil},
	// The event log of every session's runs (eventlog.go): the newest events of each
	// session, replayed by GET /api/sessions/{id}/events, also after a restart.
	{0, "agentd_004_event_log", "Per-session log of stream events", `
		CREATE TABLE agentd_event_log (
			session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
			first_seq INTEGER NOT NULL,  -- sequence number of the first event in data
			last_seq INTEGER NOT NULL,   -- and of the last
			data TEXT NOT NULL,          -- the events' JSON as streamed, one a line, in order
			PRIMARY KEY (session_id, first_seq)
		);`, nil},
	// The question a run waits on (resume.go), so that an answer after a restart, or
	// after the client went away, continues the run. state 'running' marks an answered
	// question whose tool call has started and not yet stored its result.
	{0, "agentd_005_pending_questions", "Questions runs wait on: tool confirmations, elicitations, the iteration cap", `
		CREATE TABLE agentd_pending_questions (
			session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
			kind TEXT NOT NULL,        -- confirmation | elicitation | max_iterations
			source TEXT NOT NULL,      -- the run route's {agent}: the agent file or ref
			agent TEXT NOT NULL,       -- the agent that asked
			tool_call TEXT NOT NULL,   -- the call asked about (or running the elicitation), JSON
			event TEXT NOT NULL,       -- the question's event as streamed, JSON
			state TEXT NOT NULL,       -- waiting | running
			answer TEXT NOT NULL DEFAULT '',
			created_at TEXT NOT NULL   -- RFC3339
		);`, nil},
	// Safety modes and attributes of newer clients (safety.go, API-UPSTREAM.md §3.2). The columns carry our prefix so a newer
	// reference adding its own safety column to a shared file cannot collide with them;
	// the reference ignores them (and its tools_approved stays in step with ours).
	{0, "agentd_006_safety_policy", "Session safety mode, the mode tools/toggle restores, embedder attributes", `
		ALTER TABLE sessions ADD COLUMN agentd_safety_policy TEXT DEFAULT '';
		ALTER TABLE sessions ADD COLUMN agentd_prior_safety_policy TEXT DEFAULT '';
		ALTER TABLE sessions ADD COLUMN agentd_attributes TEXT DEFAULT '';  -- JSON object of strings; '' none`, nil},
	// OAuth tokens of remote MCP servers (mcp_oauth.go), one row per server.
	{0, "agentd_007_mcp_oauth_tokens", "OAuth tokens of remote MCP servers", `
		CREATE TABLE agentd_mcp_oauth_tokens (
			server_url TEXT PRIMARY KEY,  -- the MCP server URL without query or fragment
			token_json TEXT NOT NULL,     -- access and refresh token, expiry, client, token endpoint
			updated_at TEXT NOT NULL      -- RFC3339
		);`, nil},
	// The count triggers again, with storeNonSystem reading the row in place: the old
	// ones copied a 15 MiB message two or three times per insert. Same counts.
	{0, "agentd_008_count_triggers_in_place", "Message count triggers that do not copy the message", `
		DROP TRIGGER agentd_items_insert;
		DROP TRIGGER agentd_items_delete;
		DROP TRIGGER agentd_items_update;` + storeCountTriggers(), nil},
}

// storeBaseSchema is what the reference creates before any migration runs.
const storeBaseSchema = `
	CREATE TABLE IF NOT EXISTS sessions (
		id TEXT PRIMARY KEY,
		messages TEXT,     -- legacy JSON array of Items; NULL for sessions we create
		created_at TEXT    -- RFC3339, seconds, local offset
	);
	CREATE TABLE IF NOT EXISTS migrations (
		id INTEGER PRIMARY KEY,
		name TEXT UNIQUE NOT NULL,
		description TEXT,
		applied_at TEXT NOT NULL
	);`

// openStore opens (creating if needed) the session database at path and migrates it
// forward. The caller expands "~". A file that cannot be opened or migrated is left
// exactly as it was and reported as an error; unlike the reference, it is never moved
// aside to .bak and replaced by an empty database.
func openStore(ctx context.Context, path string) (*store, error) {
	return openStoreLog(ctx, path, slog.Default())
}

// openStoreLog is openStore with the logger that hears about the file (newer schema,
// skipped items, reaped processes).
func openStoreLog(ctx context.Context, path string, log *slog.Logger) (*store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("session database %q: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("session database: %w", err)
	}
	if fi, err := os.Stat(abs); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("session database %s: not a regular file", abs)
	}
	if err := storeMakePrivate(abs); err != nil {
		return nil, fmt.Errorf("session database: %w", err)
	}
	// A file: URI with an escaped path, so '?' or '#' in a directory name cannot be
	// mistaken for DSN parameters (https://sqlite.org/uri.html).
	uri := (&url.URL{Scheme: "file", Path: abs}).String()
	common := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", storeBusyTimeoutMS)

	st := &store{log: log, now: time.Now, newID: newUUID, wgate: make(chan struct{}, 1), history: newHistoryCache(historyCacheBytes)}
	// synchronous=NORMAL is the documented safe pairing with WAL: a commit cannot corrupt
	// the file, only the last commits may roll back on power loss, and commits no longer
	// fsync, which keeps writer latency flat (https://sqlite.org/pragma.html#pragma_synchronous).
	st.w, err = sql.Open("sqlite", uri+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open session database %s: %w", abs, err)
	}
	st.w.SetMaxOpenConns(1)
	st.w.SetMaxIdleConns(1)
	st.w.SetConnMaxLifetime(0)
	st.w.SetConnMaxIdleTime(0)
	if err := st.init(ctx, abs, uri, common); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// storeSuffixes are the files SQLite keeps next to a database: the WAL, its shared
// memory index and the rollback journal (https://sqlite.org/tempfiles.html).
var storeSuffixes = []string{"", "-wal", "-shm", "-journal"}

// storeMakePrivate creates the database file 0600 when it is missing and takes group
// and other access away from it and its companion files. The conversations are
// private, SQLite's own default mode is 0644, and it creates -wal and -shm with the
// database file's mode, so setting that one mode (with chmod, whatever the umask)
// keeps all of them private.
func storeMakePrivate(abs string) error {
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		f.Close()
		if err := os.Chmod(abs, 0o600); err != nil { // the umask may have taken owner bits
			return err
		}
	case !errors.Is(err, fs.ErrExist):
		return err
	}
	for _, suffix := range storeSuffixes {
		fi, err := os.Stat(abs + suffix)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(abs+suffix, fi.Mode().Perm()&0o700); err != nil {
			return err
		}
	}
	return nil
}

// init checks the pragmas took effect (SQLite ignores unknown ones silently), migrates,
// then opens the read pool.
func (st *store) init(ctx context.Context, abs, uri, common string) error {
	var mode string
	var fk int
	if err := st.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("open session database %s: %w", abs, err)
	}
	if err := st.w.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("open session database %s: %w", abs, err)
	}
	if !strings.EqualFold(mode, "wal") || fk != 1 {
		return fmt.Errorf("open session database %s: journal_mode=%s foreign_keys=%d; want wal and 1", abs, mode, fk)
	}
	if err := st.migrate(ctx); err != nil {
		// Steps before the failed one stay applied (each is its own transaction); the
		// file is never moved aside or replaced.
		return fmt.Errorf("migrate session database %s: %w (the failed step was rolled back; the file was not replaced)", abs, err)
	}
	if err := st.checkWritable(ctx); err != nil {
		return fmt.Errorf("session database %s %w", abs, err)
	}
	st.warnUnknownMigrations(ctx)
	cols, err := st.columns(ctx, "sessions")
	if err != nil {
		return fmt.Errorf("open session database %s: %w", abs, err)
	}
	st.legacyColumn = slices.Contains(cols, "messages")
	st.prepared = map[string]*sql.Stmt{}
	for _, q := range []string{storeAppendSQL, storeUpdateMessageSQL, storeSetUsageSQL, storeSetTitleSQL, storeSetTitleIfEmptySQL, storeInsertSessionSQL, storeDataVersionSQL, storeDropQuestionSQL, storeInsertEventsSQL} {
		stmt, err := st.w.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("open session database %s: %w", abs, err)
		}
		st.prepared[q] = stmt
	}

	var err2 error
	st.r, err2 = sql.Open("sqlite", uri+"?"+common+"&_pragma=query_only(1)")
	if err2 != nil {
		return fmt.Errorf("open session database %s: %w", abs, err2)
	}
	n := min(max(runtime.GOMAXPROCS(0), 2), 8)
	st.r.SetMaxOpenConns(n)
	st.r.SetMaxIdleConns(n)
	if err := st.r.PingContext(ctx); err != nil {
		return fmt.Errorf("open session database %s: %w", abs, err)
	}
	st.preparedR = map[string]*sql.Stmt{}
	for _, q := range []string{st.sessionSQL(), st.legacySQL(), storeItemsSQL, storeLastEventSQL} {
		stmt, err := st.r.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("open session database %s: %w", abs, err)
		}
		st.preparedR[q] = stmt
	}
	return nil
}

// ping checks that the database answers a read.
func (st *store) ping(ctx context.Context) error {
	var n int
	return st.r.QueryRowContext(ctx, "SELECT count(*) FROM (SELECT 1 FROM sessions LIMIT 1)").Scan(&n)
}

// Close closes both pools. The last connection to close checkpoints the WAL.
func (st *store) Close() error {
	var errs []error
	for _, stmt := range st.prepared {
		errs = append(errs, stmt.Close())
	}
	for _, stmt := range st.preparedR {
		errs = append(errs, stmt.Close())
	}
	if st.r != nil {
		errs = append(errs, st.r.Close())
	}
	if st.w != nil {
		errs = append(errs, st.w.Close())
	}
	return errors.Join(errs...)
}

// writeLock waits for this writer's turn (FIFO) and returns the release function.
func (st *store) writeLock(ctx context.Context) (func(), error) {
	select {
	case st.wgate <- struct{}{}:
		return func() { <-st.wgate }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// exec runs one autocommit write statement in turn.
func (st *store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	unlock, err := st.writeLock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if stmt := st.prepared[query]; stmt != nil {
		return stmt.ExecContext(ctx, args...)
	}
	return st.w.ExecContext(ctx, query, args...)
}

// inTx runs fn in one immediate write transaction, committing if fn returns nil.
func (st *store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	unlock, err := st.writeLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	tx, err := st.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// checkWritable fails unless the file is intact and can be written: SQLite opens a
// read-only file without complaint, and corrupt pages otherwise surface only when a
// run touches them, after the client was shown an answer. quick_check reads every page
// (measured: 2.9 s for a 271 MiB file on the 2-core CI machine); the write is a real
// insert, rolled back.
func (st *store) checkWritable(ctx context.Context) error {
	rows, err := st.w.QueryContext(ctx, "PRAGMA quick_check(5)")
	if err != nil {
		return fmt.Errorf("cannot be checked: %w", err)
	}
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return fmt.Errorf("cannot be checked: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("cannot be checked: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("is corrupt (%s); restore it from a backup or move it aside (the file was not changed)", strings.Join(problems, "; "))
	}
	errProbe := errors.New("probe")
	err = st.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO agentd_migrations (name, applied_at) VALUES ('agentd_write_probe', '')"); err != nil {
			return err
		}
		return errProbe
	})
	if err != nil && !errors.Is(err, errProbe) {
		if f := storeFaultOf(err); f != nil {
			return fmt.Errorf("cannot be written: %s (%w)", f.msg, err)
		}
		return fmt.Errorf("cannot be written: %w", err)
	}
	return nil
}

// warnUnknownMigrations logs the migrations recorded in the file that this version does
// not know: a newer docker-agent (or agentd) wrote it. We go on, as the reference does,
// since newer steps only add what we do not read.
func (st *store) warnUnknownMigrations(ctx context.Context) {
	known := map[string]bool{}
	for _, m := range storeMigrations {
		known[m.name] = true
	}
	for _, m := range storeOwnMigrations {
		known[m.name] = true
	}
	var unknown []string
	for _, table := range []string{"migrations", "agentd_migrations"} {
		rows, err := st.w.QueryContext(ctx, "SELECT name FROM "+table+" ORDER BY name")
		if err != nil {
			st.log.Warn("cannot read the migrations table", "table", table, "err", err)
			continue
		}
		for rows.Next() {
			var name string
			if rows.Scan(&name) == nil && !known[name] {
				unknown = append(unknown, name)
			}
		}
		rows.Close()
	}
	if len(unknown) > 0 {
		st.log.Warn("the session database has a newer schema than this agentd knows; continuing, but upgrade agentd if something is missing",
			"unknown_migrations", strings.Join(unknown, ", "))
	}
}

// storeFault is a database failure told to clients in words (never paths or SQL) with
// the HTTP status that fits: they can retry a busy database, not a full disk.
type storeFault struct {
	status     int
	retryAfter int // seconds; 0 = no Retry-After
	msg        string
}

// storeFaultOf classifies err, or returns nil when it is not an SQLite condition a
// client should hear about.
func storeFaultOf(err error) *storeFault {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code() & 0xff { // extended codes keep the primary code in the low byte
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return &storeFault{503, 1, "the session database is busy: another process holds its lock"}
	case sqlite3.SQLITE_FULL:
		return &storeFault{507, 0, "the session database cannot grow: the disk is full"}
	case sqlite3.SQLITE_READONLY:
		return &storeFault{503, 0, "the session database is read-only"}
	case sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN:
		return &storeFault{503, 0, "the session database cannot be read or written (I/O error)"}
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return &storeFault{500, 0, "the session database is corrupt"}
	}
	return nil
}

// columns lists a table's column names.
func (st *store) columns(ctx context.Context, table string) ([]string, error) {
	rows, err := st.w.QueryContext(ctx, "SELECT name FROM pragma_table_info(?)", table)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return nil, err
		}
		cols = append(cols, c)
	}
	return cols, rows.Err()
}

// migrate creates the base tables and applies every migration not yet recorded, each in
// its own transaction. Migrations recorded that we do not know (a newer reference) are
// left alone.
func (st *store) migrate(ctx context.Context) error {
	if _, err := st.exec(ctx, storeBaseSchema); err != nil {
		return err
	}
	for i := range storeMigrations {
		m := &storeMigrations[i]
		err := st.inTx(ctx, func(tx *sql.Tx) error {
			// Checked inside the immediate transaction: another process may be migrating too.
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM migrations WHERE name = ?", m.name).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			if m.sql != "" {
				if _, err := tx.ExecContext(ctx, m.sql); err != nil {
					return err
				}
			}
			if m.fn != nil {
				if err := m.fn(ctx, st, tx); err != nil {
					return err
				}
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO migrations (id, name, description, applied_at) VALUES (?, ?, ?, ?)",
				m.id, m.name, m.desc, st.now().Format(time.RFC3339))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	if _, err := st.exec(ctx, `CREATE TABLE IF NOT EXISTS agentd_migrations (
		name TEXT PRIMARY KEY,
		applied_at TEXT NOT NULL  -- RFC3339
	)`); err != nil {
		return err
	}
	for _, m := range storeOwnMigrations {
		err := st.inTx(ctx, func(tx *sql.Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM agentd_migrations WHERE name = ?", m.name).Scan(&n); err != nil || n > 0 {
				return err
			}
			if _, err := tx.ExecContext(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO agentd_migrations (name, applied_at) VALUES (?, ?)", m.name, st.now().Format(time.RFC3339))
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

// newUUID returns a random RFC 4122 version 4 UUID, the reference's session ID format.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// storeSessionColumns is the column list scanned by storeScanSession, in order.
const storeSessionColumns = `id, title, created_at, tools_approved, thinking, send_user_message, starred,
	max_iterations, working_dir, permissions, input_tokens, output_tokens, cost, parent_id,
	agent_model_overrides, custom_models_used, agentd_safety_policy, agentd_prior_safety_policy,
	agentd_attributes`

// createSession inserts s. An empty ID gets a fresh UUID and a zero CreatedAt gets the
// current time; both are written back into s. ParentID "" is stored as NULL. It returns
// errConflict if the ID is taken and errNotFound if ParentID names no session.
func (st *store) createSession(ctx context.Context, s *sessionRecord) error {
	if s.ID == "" {
		s.ID = st.newID()
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = st.now()
	}
	args, err := storeSessionArgs(s)
	if err != nil {
		return err
	}
	inserted := func(res sql.Result, err error) error {
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("session %q already exists: %w", s.ID, errConflict)
		}
		return nil
	}
	// messages is left NULL: items live in session_items and the reference reads them
	// when present. Maintaining the legacy column is the reference's O(n²) bug.
	if s.ParentID == "" {
		return st.groupTx(ctx, func(tx *sql.Tx) error {
			return inserted(tx.StmtContext(ctx, st.prepared[storeInsertSessionSQL]).ExecContext(ctx, args...))
		})
	}
	return st.inTx(ctx, func(tx *sql.Tx) error {
		if err := storeExists(ctx, tx, s.ParentID); err != nil {
			return fmt.Errorf("parent %w", err)
		}
		return inserted(tx.ExecContext(ctx, storeInsertSessionSQL, args...))
	})
}

// storeSessionArgs are the arguments of storeInsertSessionSQL for s.
func storeSessionArgs(s *sessionRecord) ([]any, error) {
	perms, err := storePermissionsText(s.Permissions)
	if err != nil {
		return nil, err
	}
	overrides, models := s.AgentModelOverrides, s.CustomModelsUsed
	if overrides == "" {
		overrides = "{}"
	}
	if models == "" {
		models = "[]"
	}
	var parent any // NULL for root sessions, as the reference lists roots by parent_id IS NULL
	if s.ParentID != "" {
		parent = s.ParentID
	}
	return []any{s.ID, s.Title, storeTimeText(s.CreatedAt), storeBit(s.ToolsApproved), storeBit(s.Thinking),
		storeBit(s.SendUserMessage), storeBit(s.Starred), s.MaxIterations, s.WorkingDir, perms,
		s.InputTokens, s.OutputTokens, s.Cost, parent, overrides, models, s.SafetyPolicy, s.PriorSafetyPolicy, storeAttributesText(s.Attributes)}, nil
}

// storeExists returns an error wrapping errNotFound unless session id exists.
func storeExists(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}, id string) error {
	var one int
	err := q.QueryRowContext(ctx, "SELECT 1 FROM sessions WHERE id = ?", id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("session %q: %w", id, errNotFound)
	}
	return err
}

// session returns the metadata of session id, or an error wrapping errNotFound.
func (st *store) session(ctx context.Context, id string) (*sessionRecord, error) {
	s, _, err := st.scanSession(st.preparedR[st.sessionSQL()].QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("session %q: %w", id, errNotFound)
	}
	return s, err
}

// legacyExpr selects the legacy messages column, or NULL once a newer reference dropped it.
func (st *store) legacyExpr() string {
	if st.legacyColumn {
		return "messages"
	}
	return "NULL"
}

// sessionSQL reads one session row (storeSessionColumns and the legacy messages).
func (st *store) sessionSQL() string {
	return "SELECT " + storeSessionColumns + ", " + st.legacyExpr() + " FROM sessions WHERE id = ?"
}

// legacySQL reads one session's legacy messages, and fails with no row if it is gone.
func (st *store) legacySQL() string {
	return "SELECT " + st.legacyExpr() + " FROM sessions WHERE id = ?"
}

// scanSession reads storeSessionColumns plus the legacy messages text. Values are read
// leniently (booleans as 0/1/true/false, NULLs as defaults) so one odd value written by
// another program does not make the session unreadable.
func (st *store) scanSession(row interface{ Scan(...any) error }) (*sessionRecord, string, error) {
	var v [20]any
	ptrs := make([]any, len(v))
	for i := range v {
		ptrs[i] = &v[i]
	}
	if err := row.Scan(ptrs...); err != nil {
		return nil, "", err
	}
	s := &sessionRecord{
		ID:                  storeText(v[0]),
		Title:               storeText(v[1]),
		ToolsApproved:       storeBool(v[3], false),
		Thinking:            storeBool(v[4], true),
		SendUserMessage:     storeBool(v[5], true),
		Starred:             storeBool(v[6], false),
		MaxIterations:       int(storeInt(v[7])),
		WorkingDir:          storeText(v[8]),
		InputTokens:         storeInt(v[10]),
		OutputTokens:        storeInt(v[11]),
		Cost:                storeFloat(v[12]),
		ParentID:            storeText(v[13]),
		AgentModelOverrides: storeText(v[14]),
		CustomModelsUsed:    storeText(v[15]),
		SafetyPolicy:        storedSafetyPolicy(storeText(v[16])),
		PriorSafetyPolicy:   storedSafetyPolicy(storeText(v[17])),
	}
	sp := s.safety().withToolsApproved(s.ToolsApproved)
	s.SafetyPolicy, s.PriorSafetyPolicy = sp.Policy, sp.Prior
	if s.AgentModelOverrides == "" {
		s.AgentModelOverrides = "{}"
	}
	if s.CustomModelsUsed == "" {
		s.CustomModelsUsed = "[]"
	}
	var err error
	if s.CreatedAt, err = storeParseTime(v[2]); err != nil {
		st.log.Warn("session has an unreadable created_at", "session", s.ID, "err", err)
	}
	if p := strings.TrimSpace(storeText(v[9])); p != "" && p != "null" {
		s.Permissions = new(permissionsConfig)
		if err := json.Unmarshal([]byte(p), s.Permissions); err != nil {
			st.log.Warn("session has unreadable permissions; ignoring them", "session", s.ID, "err", err)
			s.Permissions = nil
		}
	}
	if a := storeText(v[18]); a != "" {
		if err := json.Unmarshal([]byte(a), &s.Attributes); err != nil {
			st.log.Warn("session has unreadable attributes; ignoring them", "session", s.ID, "err", err)
			s.Attributes = nil
		}
	}
	return s, storeText(v[19]), nil
}

// listSessions returns all root sessions, newest first (see eachSession).
func (st *store) listSessions(ctx context.Context) ([]sessionSummary, error) {
	var out []sessionSummary
	err := st.eachSession(ctx, storeFirstPage, -1, func(s sessionSummary, _ sessionCursor) error {
		out = append(out, s)
		return nil
	})
	return out, err
}

// sessionCursor is a root session's place in the list: the real time of created_at
// as a Julian day number (0 when unreadable, so such rows come last) and the rowid,
// which orders sessions created in the same instant (the later insert first).
type sessionCursor struct {
	day   float64
	rowid int64
}

// storeFirstPage sorts before every session.
var storeFirstPage = sessionCursor{math.Inf(1), math.MaxInt64}

// eachSession calls fn for at most limit (negative: all) root sessions after the
// cursor, newest first by real time (the reference compares created_at as strings,
// wrong across UTC offsets), one row at a time: memory does not grow with the number
// of sessions. NumMessages is computed in SQL without loading messages: non-system
// messages, sub-session messages included recursively, summaries excluded. A row with
// odd values is listed as well as it can be. An error from fn stops and is returned.
func (st *store) eachSession(ctx context.Context, after sessionCursor, limit int, fn func(sessionSummary, sessionCursor) error) error {
	// Own counts come from agentd_message_counts (kept by triggers). The recursion walks
	// only subsession edges, so its cost is the number of sub-sessions, not of messages.
	// UNION (not UNION ALL) stops it on a reference cycle in a corrupt file. SQLite reads
	// a created_at without an offset as UTC (storeParseTime as local time); we write
	// offsets, so only such rows from other programs can sort differently.
	rows, err := st.r.QueryContext(ctx, `
		WITH RECURSIVE edges(parent, child) AS (
			SELECT session_id, subsession_id FROM session_items
			WHERE item_type = 'subsession' AND subsession_id IS NOT NULL
		), tree(root, sid) AS (
			SELECT parent, child FROM edges
			UNION
			SELECT t.root, e.child FROM tree t JOIN edges e ON e.parent = t.sid
		), sub(root, n) AS (
			SELECT t.root, sum(c.n) FROM tree t JOIN agentd_message_counts c ON c.session_id = t.sid
			WHERE t.sid != t.root GROUP BY t.root
		), page(rid, day) AS (
			SELECT rowid, coalesce(julianday(created_at), 0) FROM sessions INDEXED BY agentd_idx_sessions_time
			WHERE (parent_id IS NULL OR parent_id = '') AND (coalesce(julianday(created_at), 0), rowid) < (?, ?)
			ORDER BY coalesce(julianday(created_at), 0) DESC, rowid DESC LIMIT ?
		)
		SELECT p.rid, p.day, s.id, s.title, s.created_at, s.input_tokens, s.output_tokens, s.working_dir,
			coalesce(own.n, 0) + coalesce(sub.n, 0), s.starred
		FROM page p JOIN sessions s ON s.rowid = p.rid
		LEFT JOIN agentd_message_counts own ON own.session_id = s.id
		LEFT JOIN sub ON sub.root = s.id
		ORDER BY p.day DESC, p.rid DESC`, after.day, after.rowid, limit)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var c sessionCursor
		var n int64
		var id, title, created, in, out, wd, starred any
		if err := rows.Scan(&c.rowid, &c.day, &id, &title, &created, &in, &out, &wd, &n, &starred); err != nil {
			return err
		}
		s := sessionSummary{ID: storeText(id), Title: storeText(title), NumMessages: int(n),
			InputTokens: storeInt(in), OutputTokens: storeInt(out), WorkingDir: storeText(wd), Starred: storeBool(starred, false)}
		if s.CreatedAt, err = storeParseTime(created); err != nil {
			st.log.Warn("session has an unreadable created_at", "session", s.ID, "err", err)
		}
		if err := fn(s, c); err != nil {
			return err
		}
	}
	return rows.Err()
}

// deleteSession deletes session id; foreign keys cascade to its items and its
// sub-sessions. It returns an error wrapping errNotFound if there is no such session.
func (st *store) deleteSession(ctx context.Context, id string) error {
	defer st.history.clear() // the cascade reaches sub-sessions we do not know of here
	return st.update(ctx, id, "DELETE FROM sessions WHERE id = ?", id)
}

// update runs one statement that affects session id, mapping "no row" to errNotFound.
// Being field-level, no update can re-create a deleted session (the reference upserts).
func (st *store) update(ctx context.Context, id, query string, args ...any) error {
	defer st.history.written(id)
	res, err := st.exec(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("session %q: %w", id, errNotFound)
	}
	return nil
}

// setTitle sets the title of session id.
func (st *store) setTitle(ctx context.Context, id, title string) error {
	return st.update(ctx, id, storeSetTitleSQL, title, id)
}

// setTitleIfEmpty sets the title of session id only while it has none, so a generated
// title never overwrites one a client set meanwhile. It reports whether it did.
func (st *store) setTitleIfEmpty(ctx context.Context, id, title string) (bool, error) {
	defer st.history.written(id)
	res, err := st.exec(ctx, storeSetTitleIfEmptySQL, title, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// setPermissions replaces the permissions of session id; nil clears them (stored as ”).
func (st *store) setPermissions(ctx context.Context, id string, p *permissionsConfig) error {
	text, err := storePermissionsText(p)
	if err != nil {
		return err
	}
	return st.update(ctx, id, "UPDATE sessions SET permissions = ? WHERE id = ?", text, id)
}

// setSafety sets the safety mode of session id and the mode a toggle restores;
// tools_approved (the reference's YOLO flag) follows: on exactly in autonomous mode.
func (st *store) setSafety(ctx context.Context, id string, sp safetyState) error {
	return st.update(ctx, id, "UPDATE sessions SET agentd_safety_policy = ?, agentd_prior_safety_policy = ?, tools_approved = ? WHERE id = ?",
		sp.Policy, sp.Prior, storeBit(sp.Policy == safetyAutonomous), id)
}

// setModelOverrides stores session id's agent_model_overrides (JSON: agent → model).
func (st *store) setModelOverrides(ctx context.Context, id, text string) error {
	return st.update(ctx, id, "UPDATE sessions SET agent_model_overrides = ? WHERE id = ?", text, id)
}

// setModelChoice stores session id's agent_model_overrides and custom_models_used
// (both JSON text) in one write.
func (st *store) setModelChoice(ctx context.Context, id, overrides, custom string) error {
	return st.update(ctx, id, "UPDATE sessions SET agent_model_overrides = ?, custom_models_used = ? WHERE id = ?", overrides, custom, id)
}

// setThinking sets the thinking flag of session id.
func (st *store) setThinking(ctx context.Context, id string, v bool) error {
	return st.update(ctx, id, "UPDATE sessions SET thinking = ? WHERE id = ?", storeBit(v), id)
}

// toggleSafety applies tools/toggle to session id (safetyState.toggled) and returns
// the new state.
func (st *store) toggleSafety(ctx context.Context, id string) (safetyState, error) {
	return st.changeSafety(ctx, id, safetyState.toggled)
}

// changeSafety reads the safety state of session id (reconciled with tools_approved,
// as scanSession does), applies change and stores the result, in one transaction, so
// concurrent switches cannot lose one another.
func (st *store) changeSafety(ctx context.Context, id string, change func(safetyState) safetyState) (safetyState, error) {
	defer st.history.written(id)
	var next safetyState
	err := st.inTx(ctx, func(tx *sql.Tx) error {
		var approved, policy, prior any
		err := tx.QueryRowContext(ctx, "SELECT tools_approved, agentd_safety_policy, agentd_prior_safety_policy FROM sessions WHERE id = ?", id).Scan(&approved, &policy, &prior)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("session %q: %w", id, errNotFound)
		} else if err != nil {
			return err
		}
		cur := safetyState{Policy: storedSafetyPolicy(storeText(policy)), Prior: storedSafetyPolicy(storeText(prior))}
		next = change(cur.withToolsApproved(storeBool(approved, false)))
		_, err = tx.ExecContext(ctx, "UPDATE sessions SET agentd_safety_policy = ?, agentd_prior_safety_policy = ?, tools_approved = ? WHERE id = ?",
			next.Policy, next.Prior, storeBit(next.Policy == safetyAutonomous), id)
		return err
	})
	return next, err
}

// toggleThinking inverts the thinking flag of session id and returns the new value.
func (st *store) toggleThinking(ctx context.Context, id string) (bool, error) {
	return st.toggle(ctx, id, "thinking", true)
}

// toggle flips a boolean column in one transaction, reading it as leniently as scanSession.
func (st *store) toggle(ctx context.Context, id, col string, def bool) (bool, error) {
	defer st.history.written(id)
	var v bool
	err := st.inTx(ctx, func(tx *sql.Tx) error {
		var cur any
		err := tx.QueryRowContext(ctx, "SELECT "+col+" FROM sessions WHERE id = ?", id).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("session %q: %w", id, errNotFound)
		} else if err != nil {
			return err
		}
		v = !storeBool(cur, def)
		_, err = tx.ExecContext(ctx, "UPDATE sessions SET "+col+" = ? WHERE id = ?", storeBit(v), id)
		return err
	})
	return v, err
}

// setStarred sets the starred flag of session id.
func (st *store) setStarred(ctx context.Context, id string, v bool) error {
	return st.update(ctx, id, "UPDATE sessions SET starred = ? WHERE id = ?", storeBit(v), id)
}

// setTokens sets the token counters of session id, and its cost unless cost is nil.
func (st *store) setTokens(ctx context.Context, id string, in, out int64, cost *float64) error {
	if cost == nil {
		return st.update(ctx, id, "UPDATE sessions SET input_tokens = ?, output_tokens = ? WHERE id = ?", in, out, id)
	}
	return st.setUsage(ctx, id, in, out, *cost)
}

// setUsage records the last call's token counters and the session cost (API.md §8.4).
func (st *store) setUsage(ctx context.Context, id string, in, out int64, cost float64) error {
	return st.update(ctx, id, storeSetUsageSQL, in, out, cost, id)
}

// The writer's prepared statements.
const (
	storeDataVersionSQL     = "PRAGMA data_version" // history.go
	storeSetUsageSQL        = "UPDATE sessions SET input_tokens = ?, output_tokens = ?, cost = ? WHERE id = ?"
	storeSetTitleSQL        = "UPDATE sessions SET title = ? WHERE id = ?"
	storeSetTitleIfEmptySQL = "UPDATE sessions SET title = ? WHERE id = ? AND (title IS NULL OR title = '')"
	storeInsertSessionSQL   = `INSERT INTO sessions (id, title, created_at, tools_approved, thinking,
		send_user_message, starred, max_iterations, working_dir, permissions, input_tokens, output_tokens,
		cost, parent_id, agent_model_overrides, custom_models_used, agentd_safety_policy, agentd_prior_safety_policy,
		agentd_attributes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING`
	storeUpdateMessageSQL = "UPDATE session_items SET message_json = ? WHERE id = ? AND item_type = 'message' RETURNING session_id, position"
	// storeAppendSQL inserts nothing (no row returned) when the session is missing: its
	// NULL session_id is ignored. A VALUES row, unlike INSERT … SELECT, is written
	// directly; the SELECT form copied it through a temporary table (SQLite does so
	// when the table has triggers or is read by the SELECT), twice the row's size.
	storeAppendSQL = `
		INSERT OR IGNORE INTO session_items (session_id, position, item_type, agent_name, message_json, implicit, subsession_id, summary_text)
		VALUES ((SELECT id FROM sessions WHERE id = ?7), (SELECT coalesce(max(position), -1) + 1 FROM session_items WHERE session_id = ?7),
			?1, ?2, ?3, ?4, ?5, ?6)
		RETURNING id, position`
)

// appendMessage appends a message item to session sessionID and returns its item ID and
// position. agent_name is stored ” for user messages, as the reference does. It returns
// an error wrapping errNotFound if the session does not exist.
func (st *store) appendMessage(ctx context.Context, sessionID, agentName string, m *chatMessage, implicit bool) (int64, int, error) {
	b, err := marshalMessage(m)
	if err != nil {
		return 0, 0, err
	}
	if m.Role == "user" {
		agentName = ""
	}
	return st.appendItem(ctx, sessionID, "message", agentName, b, storeBit(implicit), nil, nil)
}

// appendUserMessages appends a run's user messages in one transaction, so a failure
// stores none of them, and returns their positions.
func (st *store) appendUserMessages(ctx context.Context, sessionID string, msgs []chatMessage) ([]int, error) {
	return st.appendUsers(ctx, sessionID, msgs, false)
}

// startRunMessages is appendUserMessages for a new run, which also drops, in the same
// transaction, a question a run before it left unanswered (the model sees that call
// as canceled): one commit instead of two.
func (st *store) startRunMessages(ctx context.Context, sessionID string, msgs []chatMessage) ([]int, error) {
	return st.appendUsers(ctx, sessionID, msgs, true)
}

func (st *store) appendUsers(ctx context.Context, sessionID string, msgs []chatMessage, dropQuestion bool) ([]int, error) {
	defer st.history.written(sessionID)
	positions := make([]int, len(msgs))
	err := st.groupTx(ctx, func(tx *sql.Tx) error {
		if dropQuestion {
			if _, err := tx.StmtContext(ctx, st.prepared[storeDropQuestionSQL]).ExecContext(ctx, sessionID, anyCall); err != nil {
				return err
			}
		}
		stmt := tx.StmtContext(ctx, st.prepared[storeAppendSQL])
		for i := range msgs {
			b, err := marshalMessage(&msgs[i])
			if err != nil {
				return err
			}
			var id int64
			err = stmt.QueryRowContext(ctx, "message", "", b, 0, nil, nil, sessionID).Scan(&id, &positions[i])
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("session %q: %w", sessionID, errNotFound)
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	return positions, err
}

// appendItem inserts an item at the session's next position in one statement: atomic
// without a transaction, and no row at all (errNotFound) when the session is gone.
func (st *store) appendItem(ctx context.Context, sessionID, typ string, agent, msg, implicit, sub, summary any) (int64, int, error) {
	defer st.history.written(sessionID)
	unlock, err := st.writeLock(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer unlock()
	var id int64
	var pos int
	err = st.prepared[storeAppendSQL].QueryRowContext(ctx, typ, agent, msg, implicit, sub, summary, sessionID).Scan(&id, &pos)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, fmt.Errorf("session %q: %w", sessionID, errNotFound)
	}
	return id, pos, err
}

// updateMessage replaces the message of item itemID (a streaming assistant message being
// finalised). It returns an error wrapping errNotFound if there is no such message item.
func (st *store) updateMessage(ctx context.Context, itemID int64, m *chatMessage) error {
	b, err := marshalMessage(m)
	if err != nil {
		return err
	}
	unlock, err := st.writeLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	var sid string
	var pos int
	err = st.prepared[storeUpdateMessageSQL].QueryRowContext(ctx, b, itemID).Scan(&sid, &pos)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("message item %d: %w", itemID, errNotFound)
	case err != nil:
		st.history.clear() // which session it touched, if it committed, is unknown
		return err
	}
	st.history.updated(sid, pos)
	return nil
}

// appendSubSession records child as a sub-session of parent: a 'subsession' item at the
// parent's next position, and the child's parent_id (so it is not listed as a root and is
// deleted with its parent). errNotFound if either is missing, errConflict if the child
// already belongs to another parent, errInvalid if the link would make a cycle.
func (st *store) appendSubSession(ctx context.Context, parentID, childID string) error {
	defer st.history.written(parentID)
	defer st.history.written(childID)
	return st.inTx(ctx, func(tx *sql.Tx) error {
		if err := storeExists(ctx, tx, parentID); err != nil {
			return err
		}
		var cur sql.NullString
		err := tx.QueryRowContext(ctx, "SELECT parent_id FROM sessions WHERE id = ?", childID).Scan(&cur)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("session %q: %w", childID, errNotFound)
		} else if err != nil {
			return err
		}
		if cur.String != "" && cur.String != parentID {
			return fmt.Errorf("session %q is already a sub-session of %q: %w", childID, cur.String, errConflict)
		}
		// Walk up from the parent: finding the child there would make a cycle.
		for id, depth := parentID, 0; id != ""; depth++ {
			if id == childID || depth > storeMaxDepth {
				return fmt.Errorf("session %q cannot be a sub-session of %q: %w", childID, parentID, errInvalid)
			}
			var up sql.NullString
			if err := tx.QueryRowContext(ctx, "SELECT parent_id FROM sessions WHERE id = ?", id).Scan(&up); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			id = up.String
		}
		if cur.String == "" {
			if _, err := tx.ExecContext(ctx, "UPDATE sessions SET parent_id = ? WHERE id = ?", parentID, childID); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO session_items (session_id, position, item_type, subsession_id)
			VALUES (?, (SELECT coalesce(max(position), -1) + 1 FROM session_items WHERE session_id = ?), 'subsession', ?)`,
			parentID, parentID, childID)
		return err
	})
}

// items returns the history of session id by position, sub-sessions loaded recursively.
// A session with no session_items rows is read from the legacy messages column, as the
// reference does. Sub-session items whose target is missing and message items whose
// JSON is unreadable are skipped with a warning. Error wraps errNotFound if no session.
// Recent histories are cached (history.go): the result is shared and read-only.
func (st *store) items(ctx context.Context, id string) ([]sessionItem, error) {
	_, items, err := st.readHistory(ctx, id, false)
	return items, err
}

// sessionAndItems returns session id's row and its history, both from one snapshot
// (a run reads them once, instead of the row and the history apart).
func (st *store) sessionAndItems(ctx context.Context, id string) (*sessionRecord, []sessionItem, error) {
	return st.readHistory(ctx, id, true)
}

// readHistory reads session id's history through the cache, and with row its row too.
func (st *store) readHistory(ctx context.Context, id string, row bool) (*sessionRecord, []sessionItem, error) {
	if err := st.history.sync(ctx, st); err != nil {
		return nil, nil, err
	}
	l, prefix := st.history.begin(id)
	rec, more, legacy, err := st.loadHistory(ctx, id, prefix, row)
	if err != nil || legacy {
		st.history.abandon(l) // legacy histories are not cached: a first append replaces them
		return rec, more, err
	}
	return rec, st.history.end(l, prefix, more), nil
}

// loadHistory reads the items of session id after the cached prefix (all of them when
// prefix is empty), and with row the session's row; legacy reports a history read
// from the legacy messages column.
func (st *store) loadHistory(ctx context.Context, id string, prefix []sessionItem, row bool) (rec *sessionRecord, items []sessionItem, legacy bool, err error) {
	// One read transaction: the session row and its items come from the same snapshot.
	tx, err := st.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, nil, false, err
	}
	defer tx.Rollback()
	var text string
	if row {
		rec, text, err = st.scanSession(tx.StmtContext(ctx, st.preparedR[st.sessionSQL()]).QueryRowContext(ctx, id))
	} else {
		var v any
		err = tx.StmtContext(ctx, st.preparedR[st.legacySQL()]).QueryRowContext(ctx, id).Scan(&v)
		text = storeText(v)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, false, fmt.Errorf("session %q: %w", id, errNotFound)
	} else if err != nil {
		return nil, nil, false, err
	}
	after := storeItemKey{-1, -1}
	if n := len(prefix); n > 0 {
		after = storeItemKey{prefix[n-1].Position, prefix[n-1].ID}
	}
	items, err = st.loadItems(ctx, tx, id, text, after, map[string]bool{id: true}, 0)
	return rec, items, len(items) > 0 && items[0].ID == 0, err
}

// storeItemsSQL reads one session's items after a (position, id) key, in order.
const storeItemsSQL = `SELECT id, position, item_type, agent_name, message_json, implicit, subsession_id, summary_text
	FROM session_items WHERE session_id = ? AND (position, id) > (?, ?) ORDER BY position, id`

// storeItemKey is an item's place in a history: rows sort by position, then id.
type storeItemKey struct {
	position int
	id       int64
}

// loadItems reads one session's items after the key after; seen holds the sessions
// on the current path. The legacy column is read when the session has no items at all.
func (st *store) loadItems(ctx context.Context, tx *sql.Tx, id, legacy string, after storeItemKey, seen map[string]bool, depth int) ([]sessionItem, error) {
	rows, err := tx.StmtContext(ctx, st.preparedR[storeItemsSQL]).QueryContext(ctx, id, after.position, after.id)
	if err != nil {
		return nil, err
	}
	var items []sessionItem
	var subs []string // subsession_id per item, resolved after rows is closed
	for rows.Next() {
		var it sessionItem
		var agent, msg, implicit, sub, summary any
		if err := rows.Scan(&it.ID, &it.Position, &it.Type, &agent, &msg, &implicit, &sub, &summary); err != nil {
			rows.Close()
			return nil, err
		}
		it.AgentName, it.Implicit, it.Summary = storeText(agent), storeBool(implicit, false), storeText(summary)
		if it.Type == "message" {
			it.Message = new(chatMessage)
			if err := json.Unmarshal([]byte(storeText(msg)), it.Message); err != nil {
				st.log.Warn("skipping unreadable message item", "session", id, "item", it.ID, "err", err)
				continue
			}
		}
		items = append(items, it)
		subs = append(subs, storeText(sub))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(items) == 0 && legacy != "" && after.position < 0 {
		return st.legacyItems(id, []byte(legacy), depth)
	}
	out := items[:0]
	for i, it := range items {
		if it.Type == "subsession" {
			childID := subs[i]
			if childID == "" || seen[childID] || depth >= storeMaxDepth {
				st.log.Warn("skipping sub-session item", "session", id, "item", it.ID, "target", childID)
				continue
			}
			child, childLegacy, err := st.scanSession(tx.StmtContext(ctx, st.preparedR[st.sessionSQL()]).QueryRowContext(ctx, childID))
			if errors.Is(err, sql.ErrNoRows) {
				st.log.Warn("skipping sub-session item with a missing target", "session", id, "item", it.ID, "target", childID)
				continue
			} else if err != nil {
				return nil, err
			}
			seen[childID] = true
			it.SubSession = child
			it.SubItems, err = st.loadItems(ctx, tx, childID, childLegacy, storeItemKey{-1, -1}, seen, depth+1)
			delete(seen, childID)
			if err != nil {
				return nil, err
			}
		}
		out = append(out, it)
	}
	return out, nil
}

// storeBit encodes a boolean as the reference does (INTEGER 0/1).
func storeBit(b bool) int {
	if b {
		return 1
	}
	return 0
}

// storeTimeText encodes a time as stored: RFC3339, seconds, local offset.
func storeTimeText(t time.Time) string {
	return t.Local().Format(time.RFC3339)
}

// storePermissionsText encodes permissions as stored: ” for none, else JSON.
// storeAttributesText encodes attributes; none is ”.
func storeAttributesText(a map[string]string) string {
	if len(a) == 0 {
		return ""
	}
	b, _ := json.Marshal(a)
	return string(b)
}

func storePermissionsText(p *permissionsConfig) (string, error) {
	if p == nil {
		return "", nil
	}
	b, err := json.Marshal(p)
	return string(b), err
}
