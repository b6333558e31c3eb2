package main

// runsave.go: a run's database writes that failed, kept in memory in order and
// retried with backoff while the run lives and for a bounded time after it. What the
// client was shown either reaches the database or the client is told it did not.

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// runSaver is used by one run's goroutine only.
type runSaver struct {
	st      *store
	log     *slog.Logger
	pending []pendingWrite
	nextTry time.Time     // no attempt before this while writes are pending
	backoff time.Duration // the wait after the last failure
	lastErr error
}

// pendingWrite is one write; a later write with the same non-nil key replaces it in
// place (the newest snapshot of a streaming message, the latest usage counters).
type pendingWrite struct {
	key  any
	what string
	fn   func(ctx context.Context) error
}

// save performs fn, or queues it behind the writes still pending (items take the next
// position, so order matters) and retries the queue once the backoff has passed. Only
// database conditions (busy, full, read-only, I/O) are retried; a session deleted
// meanwhile, or any other error, drops the write with a log line, as before.
func (sv *runSaver) save(ctx context.Context, key any, what string, fn func(context.Context) error) {
	sv.enqueue(pendingWrite{key, what, fn})
	if time.Now().Before(sv.nextTry) {
		return // the database failed moments ago: do not stall the stream on it again
	}
	sv.drain(ctx)
}

func (sv *runSaver) enqueue(w pendingWrite) {
	if w.key != nil {
		for i := range sv.pending {
			if sv.pending[i].key == w.key {
				sv.pending[i] = w
				return
			}
		}
	}
	sv.pending = append(sv.pending, w)
}

// drain runs the pending writes in order until one fails; it reports whether none is left.
func (sv *runSaver) drain(ctx context.Context) bool {
	for len(sv.pending) > 0 {
		w := sv.pending[0]
		err := w.fn(ctx)
		if err != nil && storeFaultOf(err) != nil {
			sv.lastErr = err
			sv.backoff = min(max(2*sv.backoff, saveBackoffBase), saveBackoffCap)
			sv.nextTry = time.Now().Add(sv.backoff)
			sv.log.Warn("storing failed; kept in memory and retrying", "what", w.what, "pending", len(sv.pending), "retry_in", sv.backoff, "err", err)
			return false
		}
		if errors.Is(err, errNotFound) {
			sv.log.Info("dropping a write for a session that was deleted", "what", w.what)
		} else if err != nil { // not a database condition: retrying cannot help
			sv.log.Error("storing failed", "what", w.what, "err", err)
		}
		sv.pending = sv.pending[1:]
		sv.backoff = 0
	}
	return true
}

// finish retries the pending writes until they are stored or limit has passed, and
// returns the last error when some could not be stored.
func (sv *runSaver) finish(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for !sv.drain(ctx) {
		left := time.Until(deadline)
		if left <= 0 {
			sv.log.Error("giving up storing a run's results", "pending", len(sv.pending), "err", sv.lastErr)
			return sv.lastErr
		}
		t := time.NewTimer(min(time.Until(sv.nextTry), left)) // the last try is at the deadline
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return sv.lastErr
		}
	}
	return nil
}

// notSavedMessage is the error event's text when a run's results could not be stored.
func notSavedMessage(err error) string {
	why := "the session database failed"
	if f := storeFaultOf(err); f != nil {
		why = f.msg
	}
	return "the answer was not saved: " + why + "; what this stream showed since the failure is not in the session"
}
