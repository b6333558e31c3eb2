package main

// store_runs.go: what runs write beyond their messages — a turn's answer with the
// session's usage and title in one transaction, the event log's chunks (eventlog.go),
// and the questions runs wait on (resume.go).

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// maxGroupJobs bounds the writes one transaction commits together.
const maxGroupJobs = 64

// txGroup holds the writes of concurrent runs waiting for the write lock: whoever
// takes it next commits all of them in one transaction (group commit). A run writes
// a few small rows; at 100 concurrent runs BEGIN and COMMIT were over half of the
// writes' CPU, and rows written together share pages.
type txGroup struct {
	mu    sync.Mutex
	queue []*groupJob
}

type groupJob struct {
	ctx  context.Context
	fn   func(tx *sql.Tx) error
	done chan error // buffered: whoever runs the job never waits for its caller
}

// groupTx runs fn in a write transaction as inTx does, possibly together with the fns
// of concurrent callers, and returns fn's error or the commit's. When one fn fails,
// the transaction is rolled back, that fn gets its error, and the others are run
// again without it: so fn may run more than once and must only set its results,
// never add to them. Like inTx's, fn must not take the write lock.
func (st *store) groupTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	j := &groupJob{ctx: ctx, fn: fn, done: make(chan error, 1)}
	g := &st.group
	g.mu.Lock()
	g.queue = append(g.queue, j)
	g.mu.Unlock()
	select {
	case err := <-j.done: // another caller's transaction held it
		return err
	case <-ctx.Done():
		if g.remove(j) {
			return ctx.Err()
		}
		return <-j.done // being run: its outcome is known soon
	case st.wgate <- struct{}{}:
	}
	defer func() { <-st.wgate }()
	g.mu.Lock()
	batch := g.queue[:min(len(g.queue), maxGroupJobs)]
	g.queue = slices.Clone(g.queue[len(batch):]) // the rest's callers wait for the lock too
	g.mu.Unlock()
	st.commitGroup(batch)
	return <-j.done
}

// remove takes j out of the queue; false if a transaction already took it.
func (g *txGroup) remove(j *groupJob) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := slices.Index(g.queue, j)
	if i >= 0 {
		g.queue = slices.Delete(g.queue, i, i+1)
	}
	return i >= 0
}

// commitGroup runs batch's jobs in one transaction, again without each one that fails,
// and tells each job its outcome.
func (st *store) commitGroup(batch []*groupJob) {
	for len(batch) > 0 {
		failed, err := st.tryGroup(batch)
		if failed < 0 {
			for _, j := range batch {
				j.done <- err
			}
			return
		}
		batch[failed].done <- err
		batch = slices.Delete(batch, failed, failed+1)
	}
}

// tryGroup runs batch in one transaction and commits it: -1 and the error of BEGIN or
// COMMIT, or the index and error of the first job that failed (nothing committed).
// The transaction is not tied to any job's context; each job's statements are.
func (st *store) tryGroup(batch []*groupJob) (int, error) {
	tx, err := st.w.BeginTx(context.Background(), nil)
	if err != nil {
		return -1, err
	}
	defer tx.Rollback()
	for i, j := range batch {
		if err := j.run(tx); err != nil {
			return i, err
		}
	}
	return -1, tx.Commit()
}

// run runs the job's fn in tx. A panic in it is the job's error: the caller running
// the transaction is another request, which must still answer and free the lock.
func (j *groupJob) run(tx *sql.Tx) (err error) {
	if err := j.ctx.Err(); err != nil {
		return err
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("store write panicked: %v", v)
		}
	}()
	return j.fn(tx)
}

// saveAnswer stores a turn's final answer and the session's token counters and cost,
// and title unless it is "" or the session has one, in one transaction (one commit a
// turn instead of three): the message is appended when itemID is 0, else item itemID
// is replaced. It returns the item's ID and whether the title was set.
func (st *store) saveAnswer(ctx context.Context, sessionID, agent string, itemID int64, m *chatMessage, in, out int64, cost float64, title string) (int64, bool, error) {
	b, err := marshalMessage(m)
	if err != nil {
		return 0, false, err
	}
	titled := false
	var pos int
	appended := itemID == 0
	err = st.groupTx(ctx, func(tx *sql.Tx) error {
		var err error
		if appended {
			err = tx.StmtContext(ctx, st.prepared[storeAppendSQL]).QueryRowContext(ctx, "message", agent, b, 0, nil, nil, sessionID).Scan(&itemID, &pos)
		} else {
			var sid string
			err = tx.StmtContext(ctx, st.prepared[storeUpdateMessageSQL]).QueryRowContext(ctx, b, itemID).Scan(&sid, &pos)
		}
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("session %q: %w", sessionID, errNotFound)
		} else if err != nil {
			return err
		}
		if _, err = tx.StmtContext(ctx, st.prepared[storeSetUsageSQL]).ExecContext(ctx, in, out, cost, sessionID); err != nil || title == "" {
			return err
		}
		res, err := tx.StmtContext(ctx, st.prepared[storeSetTitleIfEmptySQL]).ExecContext(ctx, title, sessionID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		titled = n == 1
		return err
	})
	switch {
	case errors.Is(err, errNotFound):
	case err != nil:
		st.history.clear() // a failed commit may or may not have landed
	case appended:
		st.history.written(sessionID)
	default:
		st.history.updated(sessionID, pos)
	}
	return itemID, titled && err == nil, err
}

// eventChunk is a run of consecutive events of one session's log, stored as one row
// (a row per event made the log cost a fifth of the throughput).
type eventChunk struct {
	first, last int64
	data        []byte // the events' JSON, separated by newlines
}

// storeEvents writes one chunk per session in one transaction and drops the chunks
// holding only events older than each session's newest keep. A session deleted
// meanwhile gets nothing.
func (st *store) storeEvents(ctx context.Context, batch map[string]eventChunk, keep int64) error {
	return st.groupTx(ctx, func(tx *sql.Tx) error {
		insert := tx.StmtContext(ctx, st.prepared[storeInsertEventsSQL])
		for id, c := range batch {
			if _, err := insert.ExecContext(ctx, id, c.first, c.last, c.data); err != nil {
				return err
			}
			if c.last > keep {
				if _, err := tx.ExecContext(ctx, "DELETE FROM agentd_event_log WHERE session_id = ? AND last_seq <= ?", id, c.last-keep); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// storeInsertEventsSQL stores a chunk of a session's log, unless the session is gone.
const storeInsertEventsSQL = `INSERT INTO agentd_event_log (session_id, first_seq, last_seq, data)
	SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM sessions WHERE id = ?1)
	ON CONFLICT DO NOTHING`

// lastEventSeq is the newest stored sequence number of session id's log; 0 if none.
func (st *store) lastEventSeq(ctx context.Context, id string) (int64, error) {
	var n int64
	err := st.preparedR[storeLastEventSQL].QueryRowContext(ctx, id).Scan(&n)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return n, err
}

const storeLastEventSQL = "SELECT last_seq FROM agentd_event_log WHERE session_id = ? ORDER BY first_seq DESC LIMIT 1"

// eventChunks reads at most limit stored chunks of session id holding events with
// after < seq < before, oldest first.
func (st *store) eventChunks(ctx context.Context, id string, after, before int64, limit int) ([]eventChunk, error) {
	rows, err := st.r.QueryContext(ctx, `SELECT first_seq, last_seq, data FROM agentd_event_log
		WHERE session_id = ? AND last_seq > ? AND first_seq < ? ORDER BY first_seq LIMIT ?`, id, after, before, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []eventChunk
	for rows.Next() {
		var c eventChunk
		if err := rows.Scan(&c.first, &c.last, &c.data); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// messageAt is the stored JSON of the message at position of session id; errNotFound
// when there is none.
func (st *store) messageAt(ctx context.Context, id string, position int) (string, error) {
	var j sql.NullString
	err := st.r.QueryRowContext(ctx, "SELECT message_json FROM session_items WHERE session_id = ? AND position = ? AND item_type = 'message'", id, position).Scan(&j)
	if errors.Is(err, sql.ErrNoRows) || err == nil && !j.Valid {
		return "", fmt.Errorf("message %d of session %q: %w", position, id, errNotFound)
	}
	return j.String, err
}

// storedQuestion is one row of agentd_pending_questions (resume.go).
type storedQuestion struct {
	SessionID, Kind, Source, Agent string
	Call                           toolCall
	Event                          json.RawMessage
	State                          string
	Answer                         json.RawMessage
	CreatedAt                      string
}

// saveQuestion stores q as session q.SessionID's question, replacing any older one.
func (st *store) saveQuestion(ctx context.Context, q *storedQuestion) error {
	call, err := json.Marshal(q.Call)
	if err != nil {
		return err
	}
	_, err = st.exec(ctx, `INSERT OR REPLACE INTO agentd_pending_questions
		(session_id, kind, source, agent, tool_call, event, state, answer, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, '', ?)`,
		q.SessionID, q.Kind, q.Source, q.Agent, string(call), string(q.Event), q.State, q.CreatedAt)
	return err
}

// questions returns the stored questions of session id ("" for every session) in
// state ("" for any).
func (st *store) questions(ctx context.Context, id, state string) ([]*storedQuestion, error) {
	rows, err := st.r.QueryContext(ctx, `SELECT session_id, kind, source, agent, tool_call, event, state, answer, created_at
		FROM agentd_pending_questions WHERE (?1 = '' OR session_id = ?1) AND (?2 = '' OR state = ?2)`, id, state)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*storedQuestion
	for rows.Next() {
		q := &storedQuestion{}
		var call, ev, answer string
		if err := rows.Scan(&q.SessionID, &q.Kind, &q.Source, &q.Agent, &call, &ev, &q.State, &answer, &q.CreatedAt); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(call), &q.Call); err != nil {
			return nil, fmt.Errorf("stored question of session %s: %w", q.SessionID, err)
		}
		q.Event, q.Answer = json.RawMessage(ev), json.RawMessage(answer)
		out = append(out, q)
	}
	return out, rows.Err()
}

// claimQuestion records the answer to session id's waiting question and marks it
// running; false when no question of that call waits (another answer won).
func (st *store) claimQuestion(ctx context.Context, id, callID string, answer []byte) (bool, error) {
	res, err := st.exec(ctx, `UPDATE agentd_pending_questions SET state = 'running', answer = ?
		WHERE session_id = ? AND state = 'waiting' AND coalesce(json_extract(tool_call, '$.id'), '') = ?`, string(answer), id, callID)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// dropQuestion deletes session id's question about call callID ("" for a question
// about no call, anyCall for any), leaving a newer one alone.
func (st *store) dropQuestion(ctx context.Context, id, callID string) error {
	_, err := st.exec(ctx, storeDropQuestionSQL, id, callID)
	return err
}

const storeDropQuestionSQL = `DELETE FROM agentd_pending_questions WHERE session_id = ?1
	AND (?2 = '` + anyCall + `' OR coalesce(json_extract(tool_call, '$.id'), '') = ?2)`

// anyCall makes dropQuestion delete whatever question the session has.
const anyCall = "*"
