package main

// queue.go: steering and follow-up messages (API-UPSTREAM.md §3.8). POST …/steer
// queues messages the running agent sees at its next iteration boundary; POST
// …/followup queues messages that each get a full turn of their own once the current
// one ends; GET …/queue shows both depths.
//
// The queues live in this process. A session has them once it has run here (since
// the start of the process) or had a stored question answered after a restart; they
// go with the session on DELETE. Like the reference's, they are not stored: a restart
// empties them.

import (
	"context"
	"net/http"
	"strings"
	"sync"
)

// sessionQueues holds the message queues of every session that has run in this process.
type sessionQueues struct {
	mu    sync.Mutex
	bySes map[string]*msgQueues
}

func newSessionQueues() *sessionQueues {
	return &sessionQueues{bySes: map[string]*msgQueues{}}
}

// open returns session id's queues, creating them on its first run.
func (sq *sessionQueues) open(id string) *msgQueues {
	sq.mu.Lock()
	defer sq.mu.Unlock()
	q := sq.bySes[id]
	if q == nil {
		q = &msgQueues{keys: map[string]bool{}}
		sq.bySes[id] = q
	}
	return q
}

// get returns session id's queues, nil when it has not run in this process.
func (sq *sessionQueues) get(id string) *msgQueues {
	sq.mu.Lock()
	defer sq.mu.Unlock()
	return sq.bySes[id]
}

func (sq *sessionQueues) drop(id string) {
	sq.mu.Lock()
	delete(sq.bySes, id)
	sq.mu.Unlock()
}

// msgQueues are one session's steer and follow-up queues, and the idempotency keys of
// the follow-ups it accepted (the oldest forgotten beyond maxIdempotencyKeys).
type msgQueues struct {
	mu       sync.Mutex
	steer    []runMessage
	followup []runMessage
	keys     map[string]bool
	keyOrder []string
}

// addSteer queues msgs one by one until the queue is full; the ones queued before
// stay queued (as in the reference). It reports whether all fitted.
func (q *msgQueues) addSteer(msgs []runMessage) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range msgs {
		if len(q.steer) >= steerQueueCap {
			return false
		}
		q.steer = append(q.steer, m)
	}
	return true
}

// addFollowups queues msgs, each a turn of its own, all or none so that a refused
// request can be retried whole with the same key. key "" has no idempotency.
func (q *msgQueues) addFollowups(key string, msgs []runMessage) (duplicate, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if key != "" && q.keys[key] {
		return true, true
	}
	if len(q.followup)+len(msgs) > followupQueueCap {
		return false, false
	}
	q.followup = append(q.followup, msgs...)
	if key != "" {
		q.keys[key] = true
		q.keyOrder = append(q.keyOrder, key)
		if len(q.keyOrder) > maxIdempotencyKeys {
			delete(q.keys, q.keyOrder[0])
			q.keyOrder = q.keyOrder[1:]
		}
	}
	return false, true
}

// drainSteer takes every queued steer message.
func (q *msgQueues) drainSteer() []runMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := q.steer
	q.steer = nil
	return out
}

// nextFollowup takes the oldest follow-up.
func (q *msgQueues) nextFollowup() (runMessage, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.followup) == 0 {
		return runMessage{}, false
	}
	m := q.followup[0]
	q.followup = q.followup[1:]
	return m, true
}

// queueDepth is one queue in GET …/queue.
type queueDepth struct {
	Depth    int `json:"depth"`
	Capacity int `json:"capacity"`
}

func (q *msgQueues) depths() map[string]queueDepth {
	q.mu.Lock()
	defer q.mu.Unlock()
	return map[string]queueDepth{"steer": {len(q.steer), steerQueueCap}, "followup": {len(q.followup), followupQueueCap}}
}

// queueRequest is the body of steer and followup; role is ignored, as in the reference.
type queueRequest struct {
	Messages []runMessage `json:"messages"`
}

// readQueueRequest reads the body and finds the session's queues; what failed is
// written and nil returned. op prefixes the 409 as in the reference.
func (s *server) readQueueRequest(w http.ResponseWriter, r *http.Request, op string) ([]runMessage, *msgQueues) {
	id := r.PathValue("id")
	var req queueRequest
	if err := s.readJSON(w, r, maxRunBody, &req); err != nil {
		s.writeError(w, r, err)
		return nil, nil
	}
	if len(req.Messages) == 0 {
		s.writeError(w, r, badRequest("at least one message is required"))
		return nil, nil
	}
	rec, err := s.st.session(r.Context(), id)
	if err != nil {
		s.writeError(w, r, sessionErr(id, err))
		return nil, nil
	}
	if err := checkFileParts(s.workDir(rec), req.Messages); err != nil {
		s.writeError(w, r, err)
		return nil, nil
	}
	q := s.queues.get(id)
	if q == nil {
		s.writeError(w, r, conflict("%s: session not found or not running", op))
		return nil, nil
	}
	return req.Messages, q
}

func (s *server) serveSteer(w http.ResponseWriter, r *http.Request) {
	msgs, q := s.readQueueRequest(w, r, "failed to steer session")
	if q == nil {
		return
	}
	if !q.addSteer(msgs) {
		s.writeError(w, r, &httpError{http.StatusTooManyRequests, "steer queue full"})
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "queued"})
}

func (s *server) serveFollowup(w http.ResponseWriter, r *http.Request) {
	msgs, q := s.readQueueRequest(w, r, "failed to enqueue follow-up")
	if q == nil {
		return
	}
	key := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if len(key) > maxIdempotencyKeyLen {
		s.writeError(w, r, badRequest("Idempotency-Key is longer than %d bytes", maxIdempotencyKeyLen))
		return
	}
	dup, ok := q.addFollowups(key, msgs)
	status := "queued_idle"
	switch {
	case !ok:
		s.writeError(w, r, &httpError{http.StatusTooManyRequests, "follow-up queue full"})
		return
	case dup:
		status = "duplicate"
	case s.runs.get(r.PathValue("id")) != nil:
		status = "queued_streaming"
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"status": status, "duplicate": dup})
}

func (s *server) serveQueue(w http.ResponseWriter, r *http.Request) {
	q := s.queues.get(r.PathValue("id"))
	if q == nil {
		s.writeError(w, r, notFound("session not found or not running"))
		return
	}
	writeJSON(w, http.StatusOK, q.depths())
}

// steerMessage joins drained steer messages into the one user message the model sees:
// their texts separated by newlines, as in the reference, and their parts in order.
func steerMessage(msgs []runMessage) chatMessage {
	m := chatMessage{Role: "user", CreatedAt: nowRFC3339()}
	var texts []string
	hasParts := false
	for _, x := range msgs {
		if x.Content != "" {
			texts = append(texts, x.Content)
		}
		hasParts = hasParts || len(x.MultiContent) > 0
	}
	m.Content = strings.Join(texts, "\n")
	if hasParts {
		for _, x := range msgs {
			if len(x.MultiContent) > 0 {
				m.MultiContent = append(m.MultiContent, x.MultiContent...)
			} else if x.Content != "" {
				m.MultiContent = append(m.MultiContent, messagePart{Type: "text", Text: x.Content})
			}
		}
	}
	return m
}

// addUserMessage stores m in c's session, adds it to the history and announces it as
// user_message: how steered and followed-up messages enter a run (whether the
// reference announces them is unconfirmed; a client that shows user_message shows them).
// A message that cannot be stored is still shown to the model, with a warning.
func (rn *runner) addUserMessage(ctx context.Context, c *convo, m chatMessage) {
	pos := -1
	positions, err := rn.s.st.appendUserMessages(context.WithoutCancel(ctx), c.rec.ID, []chatMessage{m})
	if err == nil {
		pos = positions[0]
	} else {
		rn.s.log.Warn("storing a queued user message failed; the model still sees it in this run", "session", c.rec.ID, "err", err)
		rn.sink.send(warningEvent("a queued message could not be stored in the session", ""))
	}
	c.history = append(c.history, m)
	rn.sink.send(userMessageEvent(m, c.rec.ID, pos))
}
