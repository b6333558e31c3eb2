package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// storeTestOpen opens a fresh store in t.TempDir(), closed at cleanup.
func storeTestOpen(t testing.TB) (*store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "session.db")
	st, err := openStore(context.Background(), path)
	if err != nil {
		t.Fatalf("openStore(%q) = %v", path, err)
	}
	t.Cleanup(func() { st.Close() })
	return st, path
}

// storeMustCreate creates a session with the given fields filled in.
func storeMustCreate(t testing.TB, st *store, s *sessionRecord) *sessionRecord {
	t.Helper()
	if err := st.createSession(context.Background(), s); err != nil {
		t.Fatalf("createSession(%+v) = %v", s, err)
	}
	return s
}

// storeRawRow returns the stored text of the given columns of a sessions row, NULL as "<nil>".
func storeRawRow(t *testing.T, st *store, table, where string, cols ...string) []string {
	t.Helper()
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = fmt.Sprintf("CASE WHEN %[1]s IS NULL THEN '<nil>' ELSE typeof(%[1]s) || ':' || %[1]s END", c)
	}
	vals := make([]string, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	q := "SELECT " + strings.Join(exprs, ", ") + " FROM " + table + " WHERE " + where
	if err := st.r.QueryRow(q).Scan(ptrs...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return vals
}

// appendSummary appends a compaction summary item to session sessionID, as the
// reference's compaction does; agentd only reads such items, so only tests write them.
func (st *store) appendSummary(ctx context.Context, sessionID, summary string) error {
	_, _, err := st.appendItem(ctx, sessionID, "summary", nil, nil, 0, nil, summary)
	return err
}

func TestStorePragmas(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	for _, tt := range []struct {
		db     *sql.DB
		pragma string
		want   string
	}{
		{st.w, "journal_mode", "wal"},
		{st.w, "foreign_keys", "1"},
		{st.w, "busy_timeout", "5000"},
		{st.w, "synchronous", "1"}, // NORMAL
		{st.w, "query_only", "0"},
		{st.r, "journal_mode", "wal"},
		{st.r, "foreign_keys", "1"},
		{st.r, "busy_timeout", "5000"},
		{st.r, "query_only", "1"},
	} {
		var got string
		if err := tt.db.QueryRowContext(ctx, "PRAGMA "+tt.pragma).Scan(&got); err != nil {
			t.Fatalf("PRAGMA %s: %v", tt.pragma, err)
		}
		if got != tt.want {
			t.Errorf("PRAGMA %s = %q; want %q (writer=%v)", tt.pragma, got, tt.want, tt.db == st.w)
		}
	}
	if _, err := st.r.ExecContext(ctx, "DELETE FROM sessions"); err == nil {
		t.Errorf("write through the read pool succeeded; want query_only error")
	}
}

func TestStoreDirCreated0700(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "a", "b")
	st, err := openStore(context.Background(), filepath.Join(dir, "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("parent dir mode = %v; want 0700", fi.Mode().Perm())
	}
}

// TestStoreSchema checks the final layout against API.md §9.3, column by column, so the
// reference can open our file.
func TestStoreSchema(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	type col struct{ name, typ, dflt string }
	cols := func(table string) []col {
		rows, err := st.r.Query("SELECT name, type, coalesce(dflt_value, '<nil>') FROM pragma_table_info(?) ORDER BY cid", table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []col
		for rows.Next() {
			var c col
			if err := rows.Scan(&c.name, &c.typ, &c.dflt); err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
	}
	wantSessions := []col{
		{"id", "TEXT", "<nil>"}, {"messages", "TEXT", "<nil>"}, {"created_at", "TEXT", "<nil>"},
		{"tools_approved", "BOOLEAN", "0"}, {"input_tokens", "INTEGER", "0"}, {"output_tokens", "INTEGER", "0"},
		{"title", "TEXT", "''"}, {"cost", "REAL", "0"}, {"send_user_message", "BOOLEAN", "1"},
		{"max_iterations", "INTEGER", "0"}, {"working_dir", "TEXT", "''"}, {"starred", "BOOLEAN", "0"},
		{"permissions", "TEXT", "''"}, {"agent_model_overrides", "TEXT", "'{}'"},
		{"custom_models_used", "TEXT", "'[]'"}, {"thinking", "BOOLEAN", "1"}, {"parent_id", "TEXT", "<nil>"},
		// agentd's own (agentd_004), prefixed so no reference migration can collide.
		{"agentd_safety_policy", "TEXT", "''"}, {"agentd_prior_safety_policy", "TEXT", "''"}, {"agentd_attributes", "TEXT", "''"},
	}
	if got := cols("sessions"); !reflect.DeepEqual(got, wantSessions) {
		t.Errorf("sessions columns =\n%v\nwant\n%v", got, wantSessions)
	}
	wantItems := []col{
		{"id", "INTEGER", "<nil>"}, {"session_id", "TEXT", "<nil>"}, {"position", "INTEGER", "<nil>"},
		{"item_type", "TEXT", "<nil>"}, {"agent_name", "TEXT", "<nil>"}, {"message_json", "TEXT", "<nil>"},
		{"implicit", "BOOLEAN", "0"}, {"subsession_id", "TEXT", "<nil>"}, {"summary_text", "TEXT", "<nil>"},
	}
	if got := cols("session_items"); !reflect.DeepEqual(got, wantItems) {
		t.Errorf("session_items columns =\n%v\nwant\n%v", got, wantItems)
	}
	wantMig := []col{{"id", "INTEGER", "<nil>"}, {"name", "TEXT", "<nil>"}, {"description", "TEXT", "<nil>"}, {"applied_at", "TEXT", "<nil>"}}
	if got := cols("migrations"); !reflect.DeepEqual(got, wantMig) {
		t.Errorf("migrations columns = %v; want %v", got, wantMig)
	}

	var objs []string
	rows, err := st.r.Query("SELECT type || ' ' || name || ' ' || tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_autoindex%' ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		objs = append(objs, s)
	}
	rows.Close()
	// The reference's objects, plus ours, all named agentd_*.
	wantObjs := []string{
		"index agentd_idx_sessions_time sessions",
		"index agentd_idx_subsession_edges session_items",
		"index idx_session_items_session session_items",
		"index idx_session_items_session_type session_items",
		"index idx_sessions_parent_id sessions",
		"table agentd_event_log agentd_event_log",
		"table agentd_mcp_oauth_tokens agentd_mcp_oauth_tokens",
		"table agentd_message_counts agentd_message_counts",
		"table agentd_migrations agentd_migrations",
		"table agentd_pending_questions agentd_pending_questions",
		"table agentd_process_groups agentd_process_groups",
		"table migrations migrations",
		"table session_items session_items",
		"table sessions sessions",
		"table sqlite_sequence sqlite_sequence",
		"trigger agentd_items_delete session_items",
		"trigger agentd_items_insert session_items",
		"trigger agentd_items_update session_items",
		"trigger agentd_sessions_delete sessions",
	}
	if !slices.Equal(objs, wantObjs) {
		t.Errorf("schema objects = %q; want %q", objs, wantObjs)
	}

	// Foreign keys: items cascade with their session; sub-session references go NULL.
	var fks []string
	rows, err = st.r.Query("SELECT \"from\" || '->' || \"table\" || '.' || \"to\" || ' ' || on_delete FROM pragma_foreign_key_list('session_items') ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		rows.Scan(&s)
		fks = append(fks, s)
	}
	rows.Close()
	if want := []string{"session_id->sessions.id CASCADE", "subsession_id->sessions.id SET NULL"}; !slices.Equal(fks, want) {
		t.Errorf("session_items foreign keys = %q; want %q", fks, want)
	}

	rows, err = st.r.Query("SELECT id, name FROM migrations ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 1; rows.Next(); i++ {
		var id int
		var name string
		rows.Scan(&id, &name)
		if id != i || !strings.HasPrefix(name, fmt.Sprintf("%03d_", i)) {
			t.Errorf("migration row %d = (%d, %q)", i, id, name)
		}
		names = append(names, name)
	}
	rows.Close()
	if len(names) != 19 || names[14] != "015_migrate_messages_to_session_items" || names[18] != "019_drop_branch_and_split_diff_columns" {
		t.Errorf("migrations = %q; want the reference's 19", names)
	}
}

func TestStoreCreateAndGet(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	zone := time.FixedZone("X", 5*3600+30*60)
	created := time.Date(2026, 2, 3, 9, 56, 37, 123456789, zone)
	in := &sessionRecord{
		Title: "hello", CreatedAt: created, ToolsApproved: true, Thinking: false, SendUserMessage: true,
		MaxIterations: 7, WorkingDir: "/tmp/w", Permissions: &permissionsConfig{Allow: []string{"read_*"}, Deny: []string{"shell"}},
		InputTokens: 10, OutputTokens: 20, Cost: 0.5,
	}
	storeMustCreate(t, st, in)
	if len(in.ID) != 36 || in.ID[14] != '4' {
		t.Errorf("generated ID = %q; want a UUID v4", in.ID)
	}
	got, err := st.session(ctx, in.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *in
	want.CreatedAt = created.Truncate(time.Second)
	want.AgentModelOverrides, want.CustomModelsUsed = "{}", "[]"
	want.SafetyPolicy = safetyAutonomous // tools_approved alone reads as the autonomous mode
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("CreatedAt = %v; want %v", got.CreatedAt, want.CreatedAt)
	}
	got.CreatedAt = want.CreatedAt
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("session() =\n%+v\nwant\n%+v", *got, want)
	}

	// Stored encodings, as the reference writes and reads them.
	raw := storeRawRow(t, st, "sessions", "id = '"+in.ID+"'", "messages", "created_at", "tools_approved", "thinking",
		"send_user_message", "starred", "permissions", "parent_id", "agent_model_overrides", "custom_models_used")
	wantRaw := []string{"<nil>", "text:" + created.Local().Format(time.RFC3339), "integer:1", "integer:0", "integer:1",
		"integer:0", `text:{"allow":["read_*"],"deny":["shell"]}`, "<nil>", "text:{}", "text:[]"}
	if !slices.Equal(raw, wantRaw) {
		t.Errorf("stored row = %q; want %q", raw, wantRaw)
	}

	// Fixed ID, conflict, missing parent, child.
	storeMustCreate(t, st, &sessionRecord{ID: "fixed"})
	if err := st.createSession(ctx, &sessionRecord{ID: "fixed"}); !errors.Is(err, errConflict) {
		t.Errorf("createSession(duplicate) = %v; want errConflict", err)
	}
	if err := st.createSession(ctx, &sessionRecord{ID: "orphan", ParentID: "nope"}); !errors.Is(err, errNotFound) {
		t.Errorf("createSession(missing parent) = %v; want errNotFound", err)
	}
	storeMustCreate(t, st, &sessionRecord{ID: "child", ParentID: "fixed"})
	if c, err := st.session(ctx, "child"); err != nil || c.ParentID != "fixed" {
		t.Errorf("session(child) = %+v, %v; want ParentID fixed", c, err)
	}
	if _, err := st.session(ctx, "nope"); !errors.Is(err, errNotFound) {
		t.Errorf("session(missing) = %v; want errNotFound", err)
	}
}

func TestStoreUpdates(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "s", Thinking: true})
	perms := &permissionsConfig{Ask: []string{"x"}}
	tests := []struct {
		name   string
		update func(id string) error
		check  func(s *sessionRecord) bool
	}{
		{"setTitle", func(id string) error { return st.setTitle(ctx, id, "t1") }, func(s *sessionRecord) bool { return s.Title == "t1" }},
		{"setPermissions", func(id string) error { return st.setPermissions(ctx, id, perms) }, func(s *sessionRecord) bool { return reflect.DeepEqual(s.Permissions, perms) }},
		{"setPermissions(nil)", func(id string) error { return st.setPermissions(ctx, id, nil) }, func(s *sessionRecord) bool { return s.Permissions == nil }},
		{"setSafety", func(id string) error {
			return st.setSafety(ctx, id, safetyState{Policy: safetyAutonomous, Prior: safetyStrict})
		}, func(s *sessionRecord) bool {
			return s.ToolsApproved && s.SafetyPolicy == safetyAutonomous && s.PriorSafetyPolicy == safetyStrict
		}},
		{"setThinking", func(id string) error { return st.setThinking(ctx, id, false) }, func(s *sessionRecord) bool { return !s.Thinking }},
		{"setUsage", func(id string) error { return st.setUsage(ctx, id, 100, 200, 1.25) }, func(s *sessionRecord) bool {
			return s.InputTokens == 100 && s.OutputTokens == 200 && s.Cost == 1.25
		}},
		{"toggleSafety", func(id string) error {
			v, err := st.toggleSafety(ctx, id)
			if err == nil && v.Policy != safetyStrict {
				return fmt.Errorf("toggle from autonomous (prior strict) gave %+v", v)
			}
			return err
		}, func(s *sessionRecord) bool { return !s.ToolsApproved && s.SafetyPolicy == safetyStrict }},
		{"toggleThinking", func(id string) error {
			v, err := st.toggleThinking(ctx, id)
			if err == nil && !v {
				return errors.New("toggle from false returned false")
			}
			return err
		}, func(s *sessionRecord) bool { return s.Thinking }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.update("s"); err != nil {
				t.Fatalf("%s(s) = %v", tt.name, err)
			}
			s, err := st.session(ctx, "s")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(s) {
				t.Errorf("after %s: %+v", tt.name, s)
			}
			if err := tt.update("missing"); !errors.Is(err, errNotFound) {
				t.Errorf("%s(missing) = %v; want errNotFound", tt.name, err)
			}
		})
	}

	// Nothing resurrects a deleted session (the reference's upsert does).
	if err := st.deleteSession(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if err := st.deleteSession(ctx, "s"); !errors.Is(err, errNotFound) {
		t.Errorf("deleteSession twice = %v; want errNotFound", err)
	}
	for _, tt := range tests {
		if err := tt.update("s"); !errors.Is(err, errNotFound) {
			t.Errorf("%s(deleted) = %v; want errNotFound", tt.name, err)
		}
	}
	if _, _, err := st.appendMessage(ctx, "s", "root", &chatMessage{Role: "assistant"}, false); !errors.Is(err, errNotFound) {
		t.Errorf("appendMessage(deleted) = %v; want errNotFound", err)
	}
	if err := st.appendSummary(ctx, "s", "x"); !errors.Is(err, errNotFound) {
		t.Errorf("appendSummary(deleted) = %v; want errNotFound", err)
	}
	var n int
	st.r.QueryRow("SELECT count(*) FROM sessions").Scan(&n)
	if n != 0 {
		t.Errorf("%d sessions after delete; want 0", n)
	}
}

// TestStoreToggleLenient reads booleans written as text by another program.
func TestStoreToggleLenient(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "s"})
	if _, err := st.w.Exec("UPDATE sessions SET tools_approved = 'true', thinking = NULL WHERE id = 's'"); err != nil {
		t.Fatal(err)
	}
	s, err := st.session(ctx, "s")
	if err != nil || !s.ToolsApproved || !s.Thinking {
		t.Fatalf("session = %+v, %v; want tools_approved and thinking (NULL = default 1)", s, err)
	}
	if v, err := st.toggleSafety(ctx, "s"); err != nil || v.Policy != "" {
		t.Errorf("toggleSafety = %+v, %v; want the default mode", v, err)
	}
	if got := storeRawRow(t, st, "sessions", "id='s'", "tools_approved"); got[0] != "integer:0" {
		t.Errorf("tools_approved stored as %q; want integer:0", got[0])
	}
}

func TestStoreItems(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "p"})
	storeMustCreate(t, st, &sessionRecord{ID: "c"})
	user := &chatMessage{Role: "user", Content: "hi <there> & co", CreatedAt: "2026-01-01T10:00:00+01:00"}
	id0, pos0, err := st.appendMessage(ctx, "p", "root", user, false)
	if err != nil || pos0 != 0 {
		t.Fatalf("appendMessage = %d, %d, %v", id0, pos0, err)
	}
	asst := &chatMessage{Role: "assistant", Content: "par"}
	id1, pos1, err := st.appendMessage(ctx, "p", "root", asst, false)
	if err != nil || pos1 != 1 {
		t.Fatalf("appendMessage = %d, %d, %v", id1, pos1, err)
	}
	asst.Content = "partial, then final"
	asst.ToolCalls = []toolCall{{ID: "t1", Type: "function", Function: functionCall{Name: "transfer_task", Arguments: `{"agent":"c"}`}}}
	asst.Usage = &messageUsage{InputTokens: 3, OutputTokens: 4}
	if err := st.updateMessage(ctx, id1, asst); err != nil {
		t.Fatal(err)
	}
	if err := st.updateMessage(ctx, 9999, asst); !errors.Is(err, errNotFound) {
		t.Errorf("updateMessage(missing) = %v; want errNotFound", err)
	}
	if err := st.appendSubSession(ctx, "p", "c"); err != nil {
		t.Fatal(err)
	}
	childSys := &chatMessage{Role: "system", Content: "you are c"}
	childUser := &chatMessage{Role: "user", Content: "Please proceed."}
	childAns := &chatMessage{Role: "assistant", Content: "done"}
	st.appendMessage(ctx, "c", "c", childSys, false)
	st.appendMessage(ctx, "c", "c", childUser, true)
	st.appendMessage(ctx, "c", "c", childAns, false)
	tool := &chatMessage{Role: "tool", Content: "done", ToolCallID: "t1"}
	if _, pos, err := st.appendMessage(ctx, "p", "root", tool, false); err != nil || pos != 3 {
		t.Fatalf("appendMessage(tool) = %d, %v; want position 3", pos, err)
	}
	if err := st.appendSummary(ctx, "p", "we talked"); err != nil {
		t.Fatal(err)
	}

	// Raw encodings: message JSON exactly as encoding/json writes chat.Message, '' agent for
	// user messages, implicit 0/1.
	wantJSON, _ := json.Marshal(user)
	if got := storeRawRow(t, st, "session_items", fmt.Sprintf("id = %d", id0), "agent_name", "message_json", "implicit", "item_type"); !slices.Equal(got,
		[]string{"text:", "text:" + string(wantJSON), "integer:0", "text:message"}) {
		t.Errorf("user item stored as %q", got)
	}
	if !strings.Contains(string(wantJSON), `\u003cthere\u003e \u0026 co`) {
		t.Errorf("message JSON %s does not escape HTML as the reference's encoder does", wantJSON)
	}
	if got := storeRawRow(t, st, "session_items", "session_id = 'c' AND position = 1", "agent_name", "implicit"); !slices.Equal(got, []string{"text:", "integer:1"}) {
		t.Errorf("implicit user item stored as %q", got)
	}
	if got := storeRawRow(t, st, "session_items", "session_id = 'p' AND position = 2", "item_type", "subsession_id", "message_json"); !slices.Equal(got, []string{"text:subsession", "text:c", "<nil>"}) {
		t.Errorf("subsession item stored as %q", got)
	}
	if got := storeRawRow(t, st, "sessions", "id = 'c'", "parent_id"); got[0] != "text:p" {
		t.Errorf("child parent_id = %q; want p", got[0])
	}

	items, err := st.items(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, it := range items {
		kinds = append(kinds, fmt.Sprintf("%d:%s", it.Position, it.Type))
	}
	if want := []string{"0:message", "1:message", "2:subsession", "3:message", "4:summary"}; !slices.Equal(kinds, want) {
		t.Fatalf("items = %q; want %q", kinds, want)
	}
	if items[0].AgentName != "" || !reflect.DeepEqual(items[0].Message, user) || items[0].ID != id0 {
		t.Errorf("items[0] = %+v", items[0])
	}
	if items[1].AgentName != "root" || !reflect.DeepEqual(items[1].Message, asst) {
		t.Errorf("items[1].Message = %+v; want %+v", items[1].Message, asst)
	}
	sub := items[2]
	if sub.SubSession == nil || sub.SubSession.ID != "c" || sub.SubSession.ParentID != "p" || len(sub.SubItems) != 3 {
		t.Fatalf("items[2] = %+v", sub)
	}
	if !sub.SubItems[1].Implicit || sub.SubItems[1].Message.Content != "Please proceed." || sub.SubItems[2].AgentName != "c" {
		t.Errorf("sub items = %+v", sub.SubItems)
	}
	if items[4].Summary != "we talked" {
		t.Errorf("summary = %q", items[4].Summary)
	}
	if _, err := st.items(ctx, "missing"); !errors.Is(err, errNotFound) {
		t.Errorf("items(missing) = %v; want errNotFound", err)
	}

	// Listing: only the root; 4 non-system messages of p + 2 of c; summary excluded.
	list, err := st.listSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != "p" || list[0].NumMessages != 5 {
		t.Errorf("listSessions = %+v; want only p with 5 messages", list)
	}

	// Deleting the parent cascades to the child and every item.
	if err := st.deleteSession(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	var n int
	st.r.QueryRow("SELECT (SELECT count(*) FROM sessions) + (SELECT count(*) FROM session_items)").Scan(&n)
	if n != 0 {
		t.Errorf("%d rows left after deleting the parent; want 0", n)
	}
}

func TestStoreAppendSubSessionErrors(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		storeMustCreate(t, st, &sessionRecord{ID: id})
	}
	if err := st.appendSubSession(ctx, "a", "b"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		parent, child string
		want          error
	}{
		{"a", "a", errInvalid},
		{"b", "a", errInvalid}, // a is b's parent: a cycle
		{"c", "b", errConflict},
		{"missing", "c", errNotFound},
		{"a", "missing", errNotFound},
	}
	for _, tt := range tests {
		if err := st.appendSubSession(ctx, tt.parent, tt.child); !errors.Is(err, tt.want) {
			t.Errorf("appendSubSession(%q, %q) = %v; want %v", tt.parent, tt.child, err, tt.want)
		}
	}
	// The same child may be referenced again by its own parent (a resumed transfer).
	if err := st.appendSubSession(ctx, "a", "b"); err != nil {
		t.Errorf("appendSubSession(a, b) again = %v", err)
	}
}

// TestStoreListOrderAndBadRows: real-time order across UTC offsets (the reference sorts
// strings), and odd rows written by other programs are listed instead of failing the list.
func TestStoreListOrderAndBadRows(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	// 10:30+02:00 is 08:30Z, earlier than 09:00Z although it sorts later as a string.
	rows := []string{
		`INSERT INTO sessions (id, created_at) VALUES ('early', '2026-01-01T10:30:00+02:00')`,
		`INSERT INTO sessions (id, created_at) VALUES ('late', '2026-01-01T09:00:00Z')`,
		`INSERT INTO sessions (id, created_at, title) VALUES ('nano', '2026-01-01T09:00:01.5Z', 't')`,
		`INSERT INTO sessions (id, created_at, tools_approved, input_tokens, title, working_dir) VALUES ('odd', 'yesterday', 'maybe', 'lots', NULL, NULL)`,
		`INSERT INTO sessions (id, created_at, parent_id) VALUES ('kid', '2027-01-01T00:00:00Z', 'late')`,
		`INSERT INTO session_items (session_id, position, item_type, message_json) VALUES ('odd', 0, 'message', '{not json')`,
		`INSERT INTO session_items (session_id, position, item_type, message_json) VALUES ('odd', 1, 'message', '{"content":"x","role":"user"}')`,
		`INSERT INTO session_items (session_id, position, item_type, message_json) VALUES ('odd', 2, 'message', '{"content":"x","role":"system"}')`,
		`INSERT INTO session_items (session_id, position, item_type, message_json) VALUES ('odd', 3, 'message', NULL)`,
		// A subsession cycle in a corrupt file must not hang the count.
		`INSERT INTO session_items (session_id, position, item_type, subsession_id) VALUES ('late', 0, 'subsession', 'kid')`,
		`INSERT INTO session_items (session_id, position, item_type, subsession_id) VALUES ('kid', 0, 'subsession', 'late')`,
		`INSERT INTO session_items (session_id, position, item_type, message_json) VALUES ('kid', 1, 'message', '{"role":"assistant","content":"k"}')`,
	}
	for _, q := range rows {
		if _, err := st.w.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	list, err := st.listSessions(ctx)
	if err != nil {
		t.Fatalf("listSessions = %v", err)
	}
	var got []string
	for _, s := range list {
		got = append(got, fmt.Sprintf("%s:%d", s.ID, s.NumMessages))
	}
	if want := []string{"nano:0", "late:1", "early:0", "odd:1"}; !slices.Equal(got, want) {
		t.Errorf("listSessions = %q; want %q", got, want)
	}
	if list[0].Title != "t" || !list[0].CreatedAt.Equal(time.Date(2026, 1, 1, 9, 0, 1, 5e8, time.UTC)) {
		t.Errorf("list[0] = %+v", list[0])
	}
	// The unreadable message is skipped by items too, so GET and the count agree.
	items, err := st.items(ctx, "odd")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Message.Role != "user" || items[1].Message.Role != "system" {
		t.Errorf("items(odd) = %+v", items)
	}
	// The cycle is cut when loading items as well.
	items, err = st.items(ctx, "late")
	if err != nil || len(items) != 1 || len(items[0].SubItems) != 1 {
		t.Errorf("items(late) = %+v, %v; want the sub-session once, its back-reference skipped", items, err)
	}
}

// TestStorePersistence: close and reopen gives the same data.
func TestStorePersistence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := openStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	rec := storeMustCreate(t, st, &sessionRecord{Title: "keep", CreatedAt: time.Now(), Thinking: true, Permissions: &permissionsConfig{Allow: []string{"a"}}})
	st.appendMessage(ctx, rec.ID, "", &chatMessage{Role: "user", Content: "one"}, false)
	st.appendMessage(ctx, rec.ID, "root", &chatMessage{Role: "assistant", Content: "two", Cost: 0.1}, false)
	st.setUsage(ctx, rec.ID, 5, 6, 0.1)
	before, _ := st.session(ctx, rec.ID)
	beforeItems, _ := st.items(ctx, rec.ID)
	beforeList, _ := st.listSessions(ctx)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = openStore(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer st.Close()
	after, err := st.session(ctx, rec.ID)
	if err != nil || !reflect.DeepEqual(after, before) {
		t.Errorf("after reopen session = %+v, %v; want %+v", after, err, before)
	}
	afterItems, _ := st.items(ctx, rec.ID)
	if !reflect.DeepEqual(afterItems, beforeItems) {
		t.Errorf("after reopen items = %+v; want %+v", afterItems, beforeItems)
	}
	afterList, _ := st.listSessions(ctx)
	if !reflect.DeepEqual(afterList, beforeList) {
		t.Errorf("after reopen list = %+v; want %+v", afterList, beforeList)
	}
	var n int
	st.r.QueryRow("SELECT count(*) FROM migrations").Scan(&n)
	if n != 19 {
		t.Errorf("%d migration rows after reopen; want 19 (no step applied twice)", n)
	}
}

// TestStoreRefusesCorruptFile: the reference renames a DB it cannot open to .bak and starts
// empty, silently losing the user's history. We fail with an error and touch nothing.
func TestStoreRefusesCorruptFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "session.db")
	garbage := bytes.Repeat([]byte("this is not an SQLite database\n"), 300)
	if err := os.WriteFile(path, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(context.Background(), path)
	if err == nil {
		st.Close()
		t.Fatal("openStore(corrupt) succeeded; want an error")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
	got, _ := os.ReadFile(path)
	if !bytes.Equal(got, garbage) {
		t.Errorf("corrupt file was modified")
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "session.db" {
			t.Errorf("openStore left %s behind; want nothing but the original", e.Name())
		}
	}
}

// TestStoreRefusesFailedMigration: a file whose migration fails is reported, not replaced.
func TestStoreRefusesFailedMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	// A sessions table without the columns migration 002 expects to be absent:
	// input_tokens already exists, so ALTER TABLE ADD COLUMN fails.
	if _, err := db.Exec(`CREATE TABLE sessions (id TEXT PRIMARY KEY, messages TEXT, created_at TEXT, input_tokens INTEGER);
		INSERT INTO sessions VALUES ('keep', '[]', '2026-01-01T00:00:00Z', 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st, err := openStore(ctx, path)
	if err == nil {
		st.Close()
		t.Fatal("openStore succeeded; want a migration error")
	}
	if !strings.Contains(err.Error(), "002_add_usage_column") {
		t.Errorf("error %q does not name the failed migration", err)
	}
	db, _ = sql.Open("sqlite", path)
	defer db.Close()
	var id string
	if err := db.QueryRow("SELECT id FROM sessions").Scan(&id); err != nil || id != "keep" {
		t.Errorf("session row after failed migration = %q, %v; want it kept", id, err)
	}
	if _, err := os.Stat(path + ".bak"); err == nil {
		t.Errorf(".bak created")
	}
}

// storeV13Schema builds the layout the reference had after migration 13 (API.md §9.2), written
// out here independently of storeMigrations.
const storeV13Schema = `
CREATE TABLE sessions (id TEXT PRIMARY KEY, messages TEXT, created_at TEXT,
	tools_approved BOOLEAN DEFAULT 0, input_tokens INTEGER DEFAULT 0, output_tokens INTEGER DEFAULT 0,
	title TEXT DEFAULT '', cost REAL DEFAULT 0, send_user_message BOOLEAN DEFAULT 1,
	max_iterations INTEGER DEFAULT 0, working_dir TEXT DEFAULT '', starred BOOLEAN DEFAULT 0,
	permissions TEXT DEFAULT '', agent_model_overrides TEXT DEFAULT '{}',
	custom_models_used TEXT DEFAULT '[]', thinking BOOLEAN DEFAULT 1);
CREATE TABLE migrations (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, description TEXT, applied_at TEXT NOT NULL);
INSERT INTO migrations (id, name, applied_at) VALUES
	(1, '001_add_tools_approved_column', '2025-01-01T00:00:00Z'), (2, '002_add_usage_column', '2025-01-01T00:00:00Z'),
	(3, '003_add_output_tokens_column', '2025-01-01T00:00:00Z'), (4, '004_add_title_column', '2025-01-01T00:00:00Z'),
	(5, '005_add_cost_column', '2025-01-01T00:00:00Z'), (6, '006_add_send_user_message_column', '2025-01-01T00:00:00Z'),
	(7, '007_add_max_iterations_column', '2025-01-01T00:00:00Z'), (8, '008_add_working_dir_column', '2025-01-01T00:00:00Z'),
	(9, '009_add_starred_column', '2025-01-01T00:00:00Z'), (10, '010_add_permissions_column', '2025-01-01T00:00:00Z'),
	(11, '011_add_agent_model_overrides_column', '2025-01-01T00:00:00Z'), (12, '012_add_custom_models_used_column', '2025-01-01T00:00:00Z'),
	(13, '013_add_thinking_column', '2025-01-01T00:00:00Z');
`

// storeBuildDB creates a database file from SQL statements, in WAL mode as the reference leaves it.
func storeBuildDB(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("building test DB: %v\n%s", err, q)
		}
	}
}

func TestStoreMigrateV13(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v13.db")
	legacy, err := os.ReadFile("testdata/store/v13-transfer.json")
	if err != nil {
		t.Fatal(err)
	}
	legacyBad := `[{"message":{"agentName":"root","message":{"role":"user","content":`
	// The oldest format: an array of session.Message, agentName at top level.
	legacyOld := `[{"agentName":"","message":{"role":"user","content":"old hi"}},{"agentName":"root","message":{"role":"assistant","content":"old yo"}}]`
	storeBuildDB(t, path, storeV13Schema)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range [][]any{
		{"root1", string(legacy), "2026-01-02T10:00:00+01:00", 1, "transfer", "/w"},
		{"bad", legacyBad, "2026-01-01T10:00:00Z", 0, "", ""},
		{"old", legacyOld, "2026-01-01T09:00:00Z", 0, "", ""},
		{"empty", "[]", "2026-01-01T08:00:00Z", 0, "", ""},
	} {
		if _, err := db.Exec(`INSERT INTO sessions (id, messages, created_at, tools_approved, title, working_dir) VALUES (?, ?, ?, ?, ?, ?)`, r...); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	st, err := openStore(ctx, path)
	if err != nil {
		t.Fatalf("openStore(v13) = %v", err)
	}
	defer st.Close()

	var n int
	st.r.QueryRow("SELECT count(*) FROM migrations").Scan(&n)
	if n != 19 {
		t.Errorf("%d migrations after upgrade; want 19", n)
	}
	// Items rows for the transfer session: user, assistant(transfer_task), subsession, tool, assistant.
	rows, err := st.r.Query("SELECT position, item_type, coalesce(agent_name, '<nil>'), coalesce(subsession_id, '') FROM session_items WHERE session_id = 'root1' ORDER BY position")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var pos int
		var typ, agent, sub string
		rows.Scan(&pos, &typ, &agent, &sub)
		got = append(got, fmt.Sprintf("%d %s %s %s", pos, typ, agent, sub))
	}
	rows.Close()
	want := []string{"0 message  ", "1 message root ", "2 subsession <nil> sub-1", "3 message root ", "4 message root "}
	if !slices.Equal(got, want) {
		t.Errorf("migrated items =\n%q\nwant\n%q", got, want)
	}
	child, err := st.session(ctx, "sub-1")
	if err != nil {
		t.Fatal(err)
	}
	if child.ParentID != "root1" || child.Title != "pirate task" || !child.SendUserMessage || child.MaxIterations != 3 ||
		!child.CreatedAt.Equal(time.Date(2026, 1, 2, 9, 0, 5, 0, time.UTC)) {
		t.Errorf("migrated child = %+v", child)
	}
	// The child row keeps its own JSON in messages, as the reference writes it.
	if got := storeRawRow(t, st, "sessions", "id = 'sub-1'", "typeof(messages)"); got[0] != "text:text" {
		t.Errorf("child messages column type = %q", got[0])
	}

	items, err := st.items(ctx, "root1")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 5 || items[2].SubSession == nil || len(items[2].SubItems) != 3 {
		t.Fatalf("items(root1) = %+v", items)
	}
	if si := items[2].SubItems; si[0].Message.Role != "system" || !si[1].Implicit || si[2].Message.Content != "Arr, done." || si[2].AgentName != "pirate" {
		t.Errorf("sub items = %+v", si)
	}
	if m := items[1].Message; len(m.ToolCalls) != 1 || m.ToolCalls[0].Function.Name != "transfer_task" || m.Usage == nil || m.Usage.CachedInputTokens != 1 {
		t.Errorf("assistant message = %+v", m)
	}

	storeCheckCounts(t, st)
	// The undecodable session is skipped by the migration, then fails only its own read.
	var badItems int
	st.r.QueryRow("SELECT count(*) FROM session_items WHERE session_id = 'bad'").Scan(&badItems)
	if badItems != 0 {
		t.Errorf("bad session got %d items; want 0", badItems)
	}
	if _, err := st.items(ctx, "bad"); err == nil {
		t.Errorf("items(bad) succeeded; want a JSON error")
	}
	oldItems, err := st.items(ctx, "old")
	if err != nil || len(oldItems) != 2 || oldItems[0].Message.Content != "old hi" || oldItems[1].AgentName != "root" {
		t.Errorf("items(old) = %+v, %v", oldItems, err)
	}

	list, err := st.listSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, s := range list {
		got = append(got, fmt.Sprintf("%s:%d", s.ID, s.NumMessages))
	}
	// root1: 4 own non-system + 2 non-system in the child (system excluded).
	if want := []string{"root1:6", "bad:0", "old:2", "empty:0"}; !slices.Equal(got, want) {
		t.Errorf("listSessions = %q; want %q", got, want)
	}
	if list[0].WorkingDir != "/w" {
		t.Errorf("root1 working dir = %q", list[0].WorkingDir)
	}
}

// TestStoreLegacyFallback: a session with a legacy messages column and no items (written
// by an old reference after our migration ran, or skipped by it) is read from the JSON.
func TestStoreLegacyFallback(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	legacy, err := os.ReadFile("testdata/store/v13-transfer.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.w.Exec("INSERT INTO sessions (id, messages, created_at) VALUES ('l', ?, '2026-01-01T00:00:00Z')", string(legacy)); err != nil {
		t.Fatal(err)
	}
	items, err := st.items(ctx, "l")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 5 || items[0].ID != 0 || items[2].Type != "subsession" || items[2].SubSession.ID != "sub-1" ||
		items[2].SubSession.ParentID != "l" || len(items[2].SubItems) != 3 || items[4].Position != 4 {
		t.Errorf("legacy items = %+v", items)
	}
}

func TestStoreMigrateV15(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v15.db")
	storeBuildDB(t, path, storeV13Schema,
		`ALTER TABLE sessions ADD COLUMN parent_id TEXT REFERENCES sessions(id) ON DELETE CASCADE`,
		`CREATE INDEX idx_sessions_parent_id ON sessions(parent_id)`,
		`CREATE TABLE session_items (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, position INTEGER NOT NULL,
			item_type TEXT NOT NULL, agent_name TEXT, message_json TEXT, implicit BOOLEAN DEFAULT 0, subsession_id TEXT, summary_text TEXT,
			FOREIGN KEY (session_id) REFERENCES sessions(id) ON DELETE CASCADE,
			FOREIGN KEY (subsession_id) REFERENCES sessions(id) ON DELETE SET NULL)`,
		`CREATE INDEX idx_session_items_session ON session_items(session_id, position)`,
		`INSERT INTO migrations (id, name, applied_at) VALUES (14, '014_normalize_session_items', '2025-01-01T00:00:00Z'),
			(15, '015_migrate_messages_to_session_items', '2025-01-01T00:00:00Z')`,
		// Synced legacy column plus items, as the reference writes them.
		`INSERT INTO sessions (id, messages, created_at, thinking) VALUES ('s1',
			'[{"message":{"agentName":"","message":{"role":"user","content":"hi"}}},{"message":{"agentName":"root","message":{"role":"assistant","content":"yo"}}}]',
			'2026-01-01T00:00:00Z', 0)`,
		`INSERT INTO session_items (session_id, position, item_type, agent_name, message_json, implicit) VALUES
			('s1', 0, 'message', '', '{"role":"user","content":"hi"}', 0),
			('s1', 1, 'message', 'root', '{"role":"assistant","content":"yo"}', 0)`)
	st, err := openStore(ctx, path)
	if err != nil {
		t.Fatalf("openStore(v15) = %v", err)
	}
	defer st.Close()
	cols, _ := st.columns(ctx, "sessions")
	for _, c := range []string{"branch_parent_session_id", "branch_parent_position", "branch_created_at", "split_diff_view"} {
		if slices.Contains(cols, c) {
			t.Errorf("column %s survived migration 19", c)
		}
	}
	var names []string
	rows, _ := st.r.Query("SELECT name FROM migrations WHERE id > 15 ORDER BY id")
	for rows.Next() {
		var s string
		rows.Scan(&s)
		names = append(names, s)
	}
	rows.Close()
	if want := []string{"016_add_branching_columns", "017_add_split_diff_view_column", "018_add_session_items_type_index", "019_drop_branch_and_split_diff_columns"}; !slices.Equal(names, want) {
		t.Errorf("applied = %q; want %q", names, want)
	}
	items, err := st.items(ctx, "s1")
	if err != nil || len(items) != 2 || items[1].Message.Content != "yo" || items[0].ID == 0 {
		t.Errorf("items(s1) = %+v, %v", items, err)
	}
	list, _ := st.listSessions(ctx)
	if len(list) != 1 || list[0].NumMessages != 2 {
		t.Errorf("list = %+v", list)
	}
	// Appending continues after the existing positions.
	if _, pos, err := st.appendMessage(ctx, "s1", "", &chatMessage{Role: "user", Content: "more"}, false); err != nil || pos != 2 {
		t.Errorf("appendMessage = %d, %v; want position 2", pos, err)
	}
}

// TestStoreNewerReferenceDB: a later reference drops sessions.messages (its migration 020);
// we still open and use such a file.
func TestStoreNewerReferenceDB(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := openStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	storeMustCreate(t, st, &sessionRecord{ID: "a"})
	st.Close()
	storeBuildDB(t, path, `ALTER TABLE sessions DROP COLUMN messages`,
		`INSERT INTO migrations (id, name, applied_at) VALUES (20, '020_drop_messages_column', '2026-01-01T00:00:00Z')`)
	st, err = openStore(ctx, path)
	if err != nil {
		t.Fatalf("openStore(newer) = %v", err)
	}
	defer st.Close()
	storeMustCreate(t, st, &sessionRecord{ID: "b"})
	if _, _, err := st.appendMessage(ctx, "b", "", &chatMessage{Role: "user", Content: "x"}, false); err != nil {
		t.Fatal(err)
	}
	if items, err := st.items(ctx, "a"); err != nil || len(items) != 0 {
		t.Errorf("items(a) = %v, %v", items, err)
	}
	if s, err := st.session(ctx, "b"); err != nil || s.ID != "b" {
		t.Errorf("session(b) = %v, %v", s, err)
	}
}

// TestStoreConcurrentWriters: 100 sessions streaming at once, with readers alongside, never
// see "database is locked" (run with -race).
func TestStoreConcurrentWriters(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	const writers, msgs = 100, 2
	var wg sync.WaitGroup
	errc := make(chan error, writers*2)
	for w := range writers {
		wg.Go(func() {
			rec := &sessionRecord{ID: fmt.Sprintf("w%03d", w)}
			if err := st.createSession(ctx, rec); err != nil {
				errc <- err
				return
			}
			for i := range msgs {
				id, _, err := st.appendMessage(ctx, rec.ID, "root", &chatMessage{Role: "assistant", Content: "a"}, false)
				if err == nil {
					err = st.updateMessage(ctx, id, &chatMessage{Role: "assistant", Content: fmt.Sprint("final ", i)})
				}
				if err == nil {
					err = st.setUsage(ctx, rec.ID, int64(i), int64(i), 0)
				}
				if err == nil && i%3 == 0 {
					_, err = st.toggleThinking(ctx, rec.ID)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 10 {
				if _, err := st.listSessions(ctx); err != nil {
					errc <- err
					return
				}
				if _, err := st.items(ctx, "w000"); err != nil && !errors.Is(err, errNotFound) {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("concurrent store use: %v", err)
	}
	list, err := st.listSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != writers {
		t.Fatalf("%d sessions; want %d", len(list), writers)
	}
	for _, s := range list {
		if s.NumMessages != msgs {
			t.Errorf("session %s has %d messages; want %d", s.ID, s.NumMessages, msgs)
		}
	}
	storeCheckCounts(t, st)
	items, _ := st.items(ctx, "w042")
	for i, it := range items {
		if it.Position != i || it.Message.Content != fmt.Sprint("final ", i) {
			t.Errorf("w042 item %d = %d %q", i, it.Position, it.Message.Content)
		}
	}
}

// storeCheckCounts compares the trigger-kept counts with a recount from scratch.
func storeCheckCounts(t *testing.T, st *store) {
	t.Helper()
	var bad int
	err := st.r.QueryRow(`SELECT count(*) FROM (
		SELECT s.id, coalesce(c.n, 0) AS kept, (SELECT count(*) FROM session_items m
			WHERE m.session_id = s.id AND m.item_type = 'message' AND ` + storeNonSystem("m.message_json") + `) AS real
		FROM sessions s LEFT JOIN agentd_message_counts c ON c.session_id = s.id) WHERE kept != real`).Scan(&bad)
	if err != nil || bad != 0 {
		t.Errorf("%d sessions with a wrong kept message count (err %v)", bad, err)
	}
}

// TestStoreMessageCountTriggers: the kept counts follow inserts, updates and deletes made
// directly in SQL, as the reference makes them.
func TestStoreMessageCountTriggers(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "a"})
	storeMustCreate(t, st, &sessionRecord{ID: "b"})
	id, _, _ := st.appendMessage(ctx, "a", "root", &chatMessage{Role: "system", Content: "s"}, false)
	storeCheckCounts(t, st)
	for _, q := range []string{
		fmt.Sprintf(`UPDATE session_items SET message_json = '{"role":"assistant","content":"x"}' WHERE id = %d`, id),
		`INSERT INTO session_items (session_id, position, item_type, message_json) VALUES ('a', 1, 'message', '{"content":"y","role":"user"}')`,
		`INSERT INTO session_items (session_id, position, item_type, summary_text) VALUES ('a', 2, 'summary', 'sum')`,
		`UPDATE session_items SET session_id = 'b' WHERE position = 1`,
		`UPDATE session_items SET item_type = 'summary' WHERE session_id = 'b'`,
		fmt.Sprintf(`DELETE FROM session_items WHERE id = %d`, id),
		`INSERT INTO session_items (session_id, position, item_type, message_json) VALUES ('b', 3, 'message', 'garbage')`,
		`DELETE FROM sessions WHERE id = 'b'`,
	} {
		if _, err := st.w.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		storeCheckCounts(t, st)
	}
	var n int
	st.r.QueryRow("SELECT count(*) FROM agentd_message_counts WHERE session_id = 'b'").Scan(&n)
	if n != 0 {
		t.Errorf("count row of a deleted session kept")
	}
}

func TestStoreParseHelpers(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   any
		def  bool
		want bool
	}{
		{int64(1), false, true}, {int64(0), true, false}, {"true", false, true}, {"0", true, false},
		{"F", true, false}, {[]byte("1"), false, true}, {nil, true, true}, {"junk", false, false},
	} {
		if got := storeBool(tt.in, tt.def); got != tt.want {
			t.Errorf("storeBool(%#v, %v) = %v; want %v", tt.in, tt.def, got, tt.want)
		}
	}
	for _, s := range []string{"2026-02-03T09:56:37+01:00", "2026-02-03T08:56:37.123456789Z", "2026-02-03 08:56:37Z"} {
		tm, err := storeParseTime(s)
		if err != nil || tm.Truncate(time.Second).UTC() != time.Date(2026, 2, 3, 8, 56, 37, 0, time.UTC) {
			t.Errorf("storeParseTime(%q) = %v, %v", s, tm, err)
		}
	}
	if _, err := storeParseTime("yesterday"); err == nil {
		t.Errorf("storeParseTime(yesterday) succeeded")
	}
}

func BenchmarkStoreCreateSession(b *testing.B) {
	st, _ := storeTestOpen(b)
	ctx := context.Background()
	for b.Loop() {
		if err := st.createSession(ctx, &sessionRecord{Title: "bench", SendUserMessage: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStoreGetSession200 reads one session with 200 messages, as GET /api/sessions/{id} does.
func BenchmarkStoreGetSession200(b *testing.B) {
	st, _ := storeTestOpen(b)
	ctx := context.Background()
	rec := storeMustCreate(b, st, &sessionRecord{})
	for i := range 200 {
		m := &chatMessage{Role: "assistant", Content: strings.Repeat("word ", 50), Model: "gpt-4o", Usage: &messageUsage{InputTokens: int64(i)}}
		if i%2 == 0 {
			m = &chatMessage{Role: "user", Content: fmt.Sprint("question ", i)}
		}
		if _, _, err := st.appendMessage(ctx, rec.ID, "root", m, false); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := st.session(ctx, rec.ID); err != nil {
			b.Fatal(err)
		}
		items, err := st.items(ctx, rec.ID)
		if err != nil || len(items) != 200 {
			b.Fatal(len(items), err)
		}
	}
}

// BenchmarkStoreList10k lists 10,000 root sessions of 4 messages each (target < 50 ms/op).
func BenchmarkStoreList10k(b *testing.B) {
	st, _ := storeTestOpen(b)
	ctx := context.Background()
	err := st.inTx(ctx, func(tx *sql.Tx) error {
		base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		for i := range 10000 {
			id := fmt.Sprintf("s%05d", i)
			if _, err := tx.Exec(`INSERT INTO sessions (id, created_at, title) VALUES (?, ?, 't')`, id, storeTimeText(base.Add(time.Duration(i)*time.Minute))); err != nil {
				return err
			}
			for j, role := range []string{"system", "user", "assistant", "user", "assistant"} {
				msg, _ := json.Marshal(&chatMessage{Role: role, Content: "some text of a typical length for a chat message"})
				if _, err := tx.Exec(`INSERT INTO session_items (session_id, position, item_type, agent_name, message_json) VALUES (?, ?, 'message', 'root', ?)`, id, j, string(msg)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		list, err := st.listSessions(ctx)
		if err != nil || len(list) != 10000 || list[0].NumMessages != 4 {
			b.Fatal(len(list), err)
		}
	}
}

// BenchmarkStoreConcurrentWriters runs 100 writers at once (a streaming run each: append
// then update its message) and reports the slowest single write (target < 100 ms).
func BenchmarkStoreConcurrentWriters(b *testing.B) {
	st, _ := storeTestOpen(b)
	ctx := context.Background()
	const writers = 100
	ids := make([]string, writers)
	for i := range ids {
		ids[i] = storeMustCreate(b, st, &sessionRecord{}).ID
	}
	per := max(b.N/writers, 1)
	var mu sync.Mutex
	var worst time.Duration
	var lat []time.Duration
	b.ResetTimer()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			var local []time.Duration
			var itemID int64
			for i := range per {
				start := time.Now()
				var err error
				if i%2 == 0 {
					itemID, _, err = st.appendMessage(ctx, ids[w], "root", &chatMessage{Role: "assistant", Content: "tok"}, false)
				} else {
					err = st.updateMessage(ctx, itemID, &chatMessage{Role: "assistant", Content: "tok tok"})
				}
				local = append(local, time.Since(start))
				if err != nil {
					b.Error(err)
					return
				}
			}
			mu.Lock()
			lat = append(lat, local...)
			worst = max(worst, slices.Max(local))
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// TestStoreAppendWritesInPlace: appending a message writes the row directly. The
// INSERT … SELECT form went through a temporary table (a second and third copy of a
// 15 MiB image row); a missing session still inserts nothing.
func TestStoreAppendWritesInPlace(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	rows, err := st.w.Query("EXPLAIN "+storeAppendSQL, "message", "a", "{}", 0, nil, nil, "s")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]any, len(cols))
	for i := range vals {
		vals[i] = new(any)
	}
	for rows.Next() {
		// EXPLAIN's columns: addr, opcode, p1, p2 (for OpenEphemeral, its column count), …
		rows.Scan(vals...)
		// RETURNING buffers its two columns in one; a table of the row's is a copy.
		if op, cols := fmt.Sprint(*vals[1].(*any)), fmt.Sprint(*vals[3].(*any)); op == "OpenEphemeral" && cols != "2" {
			t.Errorf("the append statement copies rows through a temporary table of %s columns", cols)
		}
	}
	if _, _, err := st.appendMessage(context.Background(), "missing", "a", &chatMessage{Role: "user", Content: "x"}, false); !errors.Is(err, errNotFound) {
		t.Errorf("append to a missing session = %v; want errNotFound", err)
	}
	var n int
	st.r.QueryRow("SELECT count(*) FROM session_items").Scan(&n)
	if n != 0 {
		t.Errorf("%d items after appending to a missing session", n)
	}
}

// TestStoreNonSystemMatchesJSON: the count expression, which reads a prefix as bytes,
// says what a JSON decode of the value says, for every storage class and for text
// written by other encoders.
func TestStoreNonSystemMatchesJSON(t *testing.T) {
	t.Parallel()
	st, _ := storeTestOpen(t)
	for _, tt := range []struct {
		sql  string // an SQL value
		want int
	}{
		{`'{"role":"system","content":"s"}'`, 0},
		{`'{"role":"user","content":"s"}'`, 1},
		{`'{"role":"systemx"}'`, 1},
		{`'{"role":"sÿstem"}'`, 1},
		{`'{"role":"é","content":"system"}'`, 1},
		{`'{"content":"x","role":"system"}'`, 0},
		{`'{ "role": "system" }'`, 0},
		{`'{"content":"x"}'`, 1},
		{`'garbage'`, 0},
		{`'{"role":"'`, 1}, // encoding/json's prefix is trusted, as before
		{`NULL`, 0},
		{`42`, 1},                                // valid JSON without a role, as before
		{`CAST('{"role":"system"}' AS BLOB)`, 0}, // not text: json_valid decides, as before
		{`CAST('{"role":"user"}' AS BLOB)`, 1},
	} {
		var got int
		if err := st.r.QueryRow("SELECT " + storeNonSystem("("+tt.sql+")")).Scan(&got); err != nil {
			t.Fatalf("%s: %v", tt.sql, err)
		}
		if got != tt.want {
			t.Errorf("non-system(%s) = %d; want %d", tt.sql, got, tt.want)
		}
	}
}

// TestStoreCountTriggersReplaced: a file whose count triggers an older agentd made
// gets the current ones when opened (agentd_008), and its counts stay right.
func TestStoreCountTriggersReplaced(t *testing.T) {
	t.Parallel()
	st, path := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "a"})
	for _, q := range []string{
		"DELETE FROM agentd_migrations WHERE name = 'agentd_008_count_triggers_in_place'",
		"DROP TRIGGER agentd_items_insert",
		// Stands for the old trigger; one that miscounts shows whether it was replaced.
		`CREATE TRIGGER agentd_items_insert AFTER INSERT ON session_items BEGIN
			UPDATE agentd_message_counts SET n = n + 100 WHERE session_id = NEW.session_id; END`,
	} {
		if _, err := st.w.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	st.Close()
	st, err := openStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, role := range []string{"system", "user", "assistant"} {
		if _, _, err := st.appendMessage(ctx, "a", "root", &chatMessage{Role: role, Content: "x"}, false); err != nil {
			t.Fatal(err)
		}
	}
	storeCheckCounts(t, st)
	var n int
	st.r.QueryRow("SELECT n FROM agentd_message_counts WHERE session_id = 'a'").Scan(&n)
	if n != 2 {
		t.Errorf("kept count = %d; want 2", n)
	}
}

// groupQueued is how many writes wait to share a transaction.
func groupQueued(st *store) int {
	st.group.mu.Lock()
	defer st.group.mu.Unlock()
	return len(st.group.queue)
}

// waitQueued waits until n writes are queued for the next transaction.
func waitQueued(t *testing.T, st *store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for groupQueued(st) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued; want %d", groupQueued(st), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Writes that queue while the write lock is taken are committed in one transaction;
// one that fails there (a message for a session that does not exist) gets its own
// error and takes nothing of the others with it.
func TestStoreGroupCommit(t *testing.T) {
	st, path := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "old"})
	before := walCommits(t, path+"-wal")
	st.wgate <- struct{}{} // as a write in progress
	errs := make([]error, 4)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = st.createSession(ctx, &sessionRecord{ID: "a"}) })
	waitQueued(t, st, 1)
	wg.Go(func() { _, errs[1] = st.startRunMessages(ctx, "gone", []chatMessage{{Role: "user", Content: "x"}}) })
	waitQueued(t, st, 2)
	wg.Go(func() { _, errs[2] = st.startRunMessages(ctx, "old", []chatMessage{{Role: "user", Content: "hi"}}) })
	waitQueued(t, st, 3)
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	errs[3] = st.createSession(canceled, &sessionRecord{ID: "c"}) // leaves the queue at once
	wg.Go(func() { _ = st.createSession(ctx, &sessionRecord{ID: "b"}) })
	waitQueued(t, st, 4)
	<-st.wgate
	wg.Wait()
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], errNotFound) || !errors.Is(errs[3], context.Canceled) {
		t.Fatalf("errors %v; want nil, not found, nil, canceled", errs)
	}
	if got := walCommits(t, path+"-wal") - before; got != 1 {
		t.Fatalf("%d commits; want 1 for the three writes that succeeded", got)
	}
	list, err := st.listSessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, fmt.Sprintf("%s:%d", s.ID, s.NumMessages))
	}
	slices.Sort(ids)
	if want := []string{"a:0", "b:0", "old:1"}; !slices.Equal(ids, want) {
		t.Fatalf("sessions %v; want %v (each write once, the failed one not at all)", ids, want)
	}
	storeCheckCounts(t, st)
}

// A write that panics inside a shared transaction fails alone: the request running
// the transaction still commits the others and frees the write lock.
func TestStoreGroupCommitSurvivesPanic(t *testing.T) {
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	st.wgate <- struct{}{}
	var wg sync.WaitGroup
	var perr, cerr error
	wg.Go(func() { perr = st.groupTx(ctx, func(*sql.Tx) error { panic("boom") }) })
	waitQueued(t, st, 1)
	wg.Go(func() { cerr = st.createSession(ctx, &sessionRecord{ID: "d"}) })
	waitQueued(t, st, 2)
	<-st.wgate
	wg.Wait()
	if perr == nil || !strings.Contains(perr.Error(), "panicked: boom") || cerr != nil {
		t.Fatalf("panicking write: %v; other write: %v", perr, cerr)
	}
	storeMustCreate(t, st, &sessionRecord{ID: "e"}) // the lock is free
	if _, err := st.session(ctx, "d"); err != nil {
		t.Fatalf("session d: %v", err)
	}
}
