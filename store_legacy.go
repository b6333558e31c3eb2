package main

// store_legacy.go reads and migrates the reference's legacy session format: the JSON
// messages column of its early schema (before session_items), with sub-sessions
// embedded. Split from store.go, which owns the current schema.

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// storeLegacyItem is one element of the legacy messages column: the reference's
// session.Item, or in its oldest format a bare session.Message (agentName at top level).
type storeLegacyItem struct {
	Message    json.RawMessage     `json:"message"`
	SubSession *storeLegacySession `json:"sub_session"`
	Summary    string              `json:"summary"`
	AgentName  *string             `json:"agentName"` // only in the oldest format
	Implicit   bool                `json:"implicit"`  // only in the oldest format
}

// storeLegacyMessage is the reference's session.Message.
type storeLegacyMessage struct {
	AgentName string          `json:"agentName"`
	Message   json.RawMessage `json:"message"`
	Implicit  bool            `json:"implicit"`
}

// storeLegacySession is the reference's session.Session JSON (API.md §8.1) as embedded in
// a sub_session item. SendUserMessage has no tag in the reference, hence its key.
type storeLegacySession struct {
	ID                  string             `json:"id"`
	Title               string             `json:"title"`
	Messages            json.RawMessage    `json:"messages"`
	CreatedAt           string             `json:"created_at"`
	ToolsApproved       bool               `json:"tools_approved"`
	Thinking            bool               `json:"thinking"`
	WorkingDir          string             `json:"working_dir"`
	SendUserMessage     bool               `json:"SendUserMessage"`
	MaxIterations       int                `json:"max_iterations"`
	Starred             bool               `json:"starred"`
	InputTokens         int64              `json:"input_tokens"`
	OutputTokens        int64              `json:"output_tokens"`
	Cost                float64            `json:"cost"`
	Permissions         *permissionsConfig `json:"permissions"`
	AgentModelOverrides json.RawMessage    `json:"agent_model_overrides"`
	CustomModelsUsed    json.RawMessage    `json:"custom_models_used"`
}

// storeLegacyEntry is a decoded legacy element: exactly one of msg, sub, summary is set
// (none for an empty element, which keeps its position as in the reference).
type storeLegacyEntry struct {
	msg     *storeLegacyMessage
	chat    *chatMessage
	sub     *storeLegacySession
	summary string
}

// storeParseLegacy decodes a legacy messages column.
func storeParseLegacy(raw []byte) ([]storeLegacyEntry, error) {
	var elems []storeLegacyItem
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, fmt.Errorf("legacy messages JSON: %w", err)
	}
	out := make([]storeLegacyEntry, len(elems))
	for i, e := range elems {
		switch {
		case e.AgentName != nil:
			out[i].msg = &storeLegacyMessage{AgentName: *e.AgentName, Message: e.Message, Implicit: e.Implicit}
		case len(e.Message) > 0 && string(e.Message) != "null":
			out[i].msg = new(storeLegacyMessage)
			if err := json.Unmarshal(e.Message, out[i].msg); err != nil {
				return nil, fmt.Errorf("legacy item %d: %w", i, err)
			}
		case e.SubSession != nil:
			out[i].sub = e.SubSession
		default:
			out[i].summary = e.Summary
		}
		if m := out[i].msg; m != nil {
			out[i].chat = new(chatMessage)
			if len(m.Message) > 0 && string(m.Message) != "null" {
				if err := json.Unmarshal(m.Message, out[i].chat); err != nil {
					return nil, fmt.Errorf("legacy item %d: %w", i, err)
				}
			}
		}
	}
	return out, nil
}

// legacyItems turns a legacy messages column into items (IDs 0, positions by index).
func (st *store) legacyItems(owner string, raw []byte, depth int) ([]sessionItem, error) {
	entries, err := storeParseLegacy(raw)
	if err != nil {
		return nil, fmt.Errorf("session %q: %w", owner, err)
	}
	var items []sessionItem
	for i, e := range entries {
		switch {
		case e.msg != nil:
			items = append(items, sessionItem{Position: i, Type: "message", AgentName: e.msg.AgentName, Message: e.chat, Implicit: e.msg.Implicit})
		case e.sub != nil:
			if depth >= storeMaxDepth {
				continue
			}
			rec := e.sub.record(owner)
			var sub []sessionItem
			if len(e.sub.Messages) > 0 {
				if sub, err = st.legacyItems(rec.ID, e.sub.Messages, depth+1); err != nil {
					return nil, err
				}
			}
			items = append(items, sessionItem{Position: i, Type: "subsession", SubSession: rec, SubItems: sub})
		case e.summary != "":
			items = append(items, sessionItem{Position: i, Type: "summary", Summary: e.summary})
		}
	}
	return items, nil
}

// record converts an embedded legacy session into a sessionRecord owned by parent.
func (ls *storeLegacySession) record(parent string) *sessionRecord {
	rec := &sessionRecord{ID: ls.ID, Title: ls.Title, ToolsApproved: ls.ToolsApproved, Thinking: ls.Thinking,
		SendUserMessage: ls.SendUserMessage, Starred: ls.Starred, MaxIterations: ls.MaxIterations,
		WorkingDir: ls.WorkingDir, Permissions: ls.Permissions, InputTokens: ls.InputTokens,
		OutputTokens: ls.OutputTokens, Cost: ls.Cost, ParentID: parent,
		AgentModelOverrides: "{}", CustomModelsUsed: "[]"}
	rec.CreatedAt, _ = storeParseTime(ls.CreatedAt)
	return rec
}

// storeMigrateLegacyItems is migration 015: every session whose legacy messages JSON has
// no session_items yet gets one row per item; embedded sub-sessions become child sessions
// (parent_id = owner) referenced by 'subsession' items. A session that fails is rolled
// back to its savepoint, logged and skipped, as in the reference; it stays readable
// through the legacy fallback in items.
func storeMigrateLegacyItems(ctx context.Context, st *store, tx *sql.Tx) error {
	rows, err := tx.QueryContext(ctx, `SELECT id, messages FROM sessions
		WHERE messages IS NOT NULL AND messages != '' AND messages != '[]'
		AND NOT EXISTS (SELECT 1 FROM session_items si WHERE si.session_id = sessions.id)`)
	if err != nil {
		return err
	}
	type pending struct{ id, messages string }
	var todo []pending
	for rows.Next() {
		var p pending
		var msgs any
		if err := rows.Scan(&p.id, &msgs); err != nil {
			rows.Close()
			return err
		}
		p.messages = storeText(msgs)
		todo = append(todo, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, p := range todo {
		if _, err := tx.ExecContext(ctx, "SAVEPOINT m015"); err != nil {
			return err
		}
		if err := st.migrateSession(ctx, tx, p.id, []byte(p.messages), "", 0); err != nil {
			st.log.Warn("migration 015: skipping session", "session", p.id, "err", err)
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO m015"); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "RELEASE m015"); err != nil {
			return err
		}
	}
	return nil
}

// migrateSession writes the items of one legacy session (and its sub-sessions).
func (st *store) migrateSession(ctx context.Context, tx *sql.Tx, id string, raw []byte, parent string, depth int) error {
	if depth > storeMaxDepth {
		return fmt.Errorf("sub-sessions nested deeper than %d", storeMaxDepth)
	}
	entries, err := storeParseLegacy(raw)
	if err != nil {
		return err
	}
	if parent != "" {
		if _, err := tx.ExecContext(ctx, "UPDATE sessions SET parent_id = ? WHERE id = ?", parent, id); err != nil {
			return err
		}
	}
	for pos, e := range entries {
		switch {
		case e.msg != nil:
			// Re-encoded like the reference does, so message_json is canonical.
			b, err := json.Marshal(e.chat)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO session_items (session_id, position, item_type, agent_name, message_json, implicit)
				VALUES (?, ?, 'message', ?, ?, ?)`, id, pos, e.msg.AgentName, string(b), storeBit(e.msg.Implicit)); err != nil {
				return err
			}
		case e.sub != nil:
			childID := e.sub.ID
			if childID == "" {
				childID = st.newID()
			}
			if childID == id {
				return fmt.Errorf("session %q embeds itself", id)
			}
			var one int
			err := tx.QueryRowContext(ctx, "SELECT 1 FROM sessions WHERE id = ?", childID).Scan(&one)
			switch {
			case errors.Is(err, sql.ErrNoRows):
				msgs := string(e.sub.Messages)
				if msgs == "" {
					msgs = "null" // the reference marshals a nil slice
				}
				rec := e.sub.record(id)
				created := "0001-01-01T00:00:00Z" // the reference formats a missing time as zero
				if !rec.CreatedAt.IsZero() {
					created = rec.CreatedAt.Format(time.RFC3339)
				}
				if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, messages, tools_approved, input_tokens, output_tokens, title, cost,
					send_user_message, max_iterations, working_dir, created_at, starred, permissions,
					agent_model_overrides, custom_models_used, parent_id)
					VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', '{}', '[]', ?)`,
					childID, msgs, storeBit(rec.ToolsApproved), rec.InputTokens, rec.OutputTokens, rec.Title, rec.Cost,
					storeBit(rec.SendUserMessage), rec.MaxIterations, rec.WorkingDir, created, storeBit(rec.Starred), id); err != nil {
					return err
				}
				if err := st.migrateSession(ctx, tx, childID, []byte(msgs), id, depth+1); err != nil {
					return fmt.Errorf("sub-session %q: %w", childID, err)
				}
			case err != nil:
				return err
			default:
				if _, err := tx.ExecContext(ctx, "UPDATE sessions SET parent_id = ? WHERE id = ?", id, childID); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO session_items (session_id, position, item_type, subsession_id)
				VALUES (?, ?, 'subsession', ?)`, id, pos, childID); err != nil {
				return err
			}
		case e.summary != "":
			if _, err := tx.ExecContext(ctx, `INSERT INTO session_items (session_id, position, item_type, summary_text)
				VALUES (?, ?, 'summary', ?)`, id, pos, e.summary); err != nil {
				return err
			}
		}
	}
	return nil
}

// The reference's columns are loosely typed (SQLite stores what it was given, and
// older versions wrote other types): these read a scanned value leniently.

// storeText reads a scanned value as text; NULL is "".
func storeText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

// storeBool reads a boolean leniently: integers, and text as strconv.ParseBool (what the
// reference accepts); NULL or anything else gives def.
func storeBool(v any, def bool) bool {
	switch x := v.(type) {
	case int64:
		return x != 0
	case float64:
		return x != 0
	case string, []byte:
		if b, err := strconv.ParseBool(strings.TrimSpace(storeText(x))); err == nil {
			return b
		}
	}
	return def
}

// storeInt reads an integer leniently; NULL or garbage is 0.
func storeInt(v any) int64 {
	switch x := v.(type) {
	case int64:
		return x
	case float64:
		return int64(x)
	case string, []byte:
		s := strings.TrimSpace(storeText(x))
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return int64(f)
		}
	}
	return 0
}

// storeFloat reads a float leniently; NULL or garbage is 0.
func storeFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case float64:
		return x
	case string, []byte:
		if f, err := strconv.ParseFloat(strings.TrimSpace(storeText(x)), 64); err == nil {
			return f
		}
	}
	return 0
}

// storeParseTime reads created_at: RFC3339 with or without fractional seconds (Go's
// RFC3339 layout accepts both), or SQLite's "YYYY-MM-DD HH:MM:SS" forms.
func storeParseTime(v any) (time.Time, error) {
	if t, ok := v.(time.Time); ok {
		return t, nil
	}
	s := strings.TrimSpace(storeText(v))
	if s == "" {
		return time.Time{}, errors.New("empty time")
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05", "2006-01-02 15:04:05"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("bad time %q", s)
}
