package main

// store_edit.go: the store writes behind direct history edits (API-UPSTREAM.md §3.10,
// §3.11): a session copied into a fork, a message replaced in place, a summary added.
// Each keeps the history cache (history.go) in step, as every write must.

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// forkSession stores rec as a new root session holding copies of items: messages and
// summaries as they are, sub-sessions as new child sessions with fresh ids (so
// deleting either side never takes the other's history with it). All or nothing.
func (st *store) forkSession(ctx context.Context, rec *sessionRecord, items []sessionItem) error {
	defer st.history.written(rec.ID)
	return st.inTx(ctx, func(tx *sql.Tx) error { return st.insertCopy(ctx, tx, rec, items, 0) })
}

// insertCopy inserts rec and its items, renumbered from position 0, recursively.
func (st *store) insertCopy(ctx context.Context, tx *sql.Tx, rec *sessionRecord, items []sessionItem, depth int) error {
	if depth > storeMaxDepth {
		return fmt.Errorf("session %q: sub-sessions nested deeper than %d: %w", rec.ID, storeMaxDepth, errInvalid)
	}
	args, err := storeSessionArgs(rec)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, storeInsertSessionSQL, args...); err != nil {
		return err
	}
	const insertItem = `INSERT INTO session_items (session_id, position, item_type, agent_name, message_json, implicit, subsession_id, summary_text)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	for pos, it := range items {
		var agent, msg, sub, summary any
		switch it.Type {
		case "message":
			b, err := marshalMessage(it.Message)
			if err != nil {
				return err
			}
			agent, msg = it.AgentName, b
		case "summary":
			summary = it.Summary
		case "subsession":
			child := *it.SubSession
			child.ID, child.ParentID = st.newID(), rec.ID
			if err := st.insertCopy(ctx, tx, &child, it.SubItems, depth+1); err != nil {
				return err
			}
			sub = child.ID
		default:
			continue
		}
		if _, err := tx.ExecContext(ctx, insertItem, rec.ID, pos, it.Type, agent, msg, storeBit(it.Implicit), sub, summary); err != nil {
			return err
		}
	}
	return nil
}

// replaceMessage replaces the message item at position pos of session id, and its
// agent. errNotFound when the session has no message there.
func (st *store) replaceMessage(ctx context.Context, id string, pos int, agent string, m *chatMessage) error {
	b, err := marshalMessage(m)
	if err != nil {
		return err
	}
	if m.Role == "user" {
		agent = "" // as appendMessage stores user messages
	}
	unlock, err := st.writeLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	res, err := st.w.ExecContext(ctx, `UPDATE session_items SET message_json = ?, agent_name = ?
		WHERE session_id = ? AND position = ? AND item_type = 'message'`, b, agent, id, pos)
	if err != nil {
		st.history.clear() // whether it committed is unknown
		return err
	}
	st.history.updated(id, pos)
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("no message at position %d of session %q: %w", pos, id, errNotFound)
	}
	return nil
}

// addSummary adds a summary item to session id, followed by implicit copies of
// kept (the messages the summary leaves in context, as compaction stores them), and
// adds cost to the session's cost. All or nothing.
func (st *store) addSummary(ctx context.Context, id, summary string, kept []sessionItem, cost float64) error {
	defer st.history.written(id)
	return st.inTx(ctx, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, st.prepared[storeAppendSQL])
		var itemID int64
		var pos int
		err := stmt.QueryRowContext(ctx, "summary", nil, nil, 0, nil, summary, id).Scan(&itemID, &pos)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("session %q: %w", id, errNotFound)
		} else if err != nil {
			return err
		}
		for _, it := range kept {
			b, err := marshalMessage(it.Message)
			if err != nil {
				return err
			}
			if err := stmt.QueryRowContext(ctx, "message", it.AgentName, b, 1, nil, nil, id).Scan(&itemID, &pos); err != nil {
				return err
			}
		}
		if cost != 0 {
			_, err = tx.ExecContext(ctx, "UPDATE sessions SET cost = coalesce(cost, 0) + ? WHERE id = ?", cost, id)
		}
		return err
	})
}
