package main

// eventlog.go: the per-session event log behind GET /api/sessions/{id}/events
// (API-UPSTREAM.md §3.6, §5.3). Every event a run streams (its sub-sessions' too) gets
// the session's next sequence number, 1, 2, …, and is kept in memory until a single
// writer goroutine stores it in SQLite, many events of many sessions per transaction,
// so a run never waits for the database. The newest events stay in memory for live
// viewers; older ones are read back from the database, so a slow viewer is never
// dropped and a restarted server replays what it had logged. Each session keeps its
// newest `retention` events.

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"hash/crc32"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

const (
	defaultEventRetention = 1024                   // events kept per session (--event-log-retention)
	eventLogFlushDelay    = 100 * time.Millisecond // how long the writer gathers a batch
	eventLogTail          = 64                     // stored events kept in memory for live viewers
	eventLogRetryDelay    = time.Second            // pause after a failed batch
	eventReadBatch        = 256                    // events a viewer takes per read from memory
	eventReadChunks       = 4                      // stored chunks a viewer reads at once
	maxFreshEventLogs     = 4096                   // new sessions remembered as having empty logs
)

// loggedEvent is one event of a log, as the stream wrote it.
type loggedEvent struct {
	seq int64
	ev  event
}

// appendJSON appends the event's JSON object, as streamed.
func (le *loggedEvent) appendJSON(b []byte) []byte {
	at := len("data: ")
	for _, r := range le.ev.refs {
		b = append(append(b, le.ev.b[at:r.at]...), r.s...)
		at = r.at
	}
	return append(append(b, le.ev.b[at:]...), '}')
}

// storedRowRef heads the stored form of an event whose large strings are the images of
// a stored message (user_message echoes one): '@', this header as JSON, then the
// event's JSON without them. A 15 MiB image is then not stored a second time (nor
// copied to store it); replay reads it back from the message. Had the message changed
// since (an edit), the event can no longer be given as it was streamed: it is replayed
// as a gap.
type storedRowRef struct {
	eventRow
	Refs [][3]int64 `json:"refs"` // per string: offset in the JSON, length, CRC-32
}

// appendStored appends the event as the log stores it: its JSON, or for an event
// referring to a stored message, the storedRowRef form.
func (le *loggedEvent) appendStored(b []byte) []byte {
	if len(le.ev.refs) == 0 || le.ev.row.Session == "" {
		return le.appendJSON(b)
	}
	h := storedRowRef{eventRow: le.ev.row}
	for _, r := range le.ev.refs {
		h.Refs = append(h.Refs, [3]int64{int64(r.at - len("data: ")), int64(len(r.s)), int64(crcString(r.s))})
	}
	hj, _ := json.Marshal(h)
	b = append(append(append(b, '@'), hj...), le.ev.b[len("data: "):]...)
	return append(b, '}')
}

// loggedFromStored turns a stored event back into one the stream can write, reading
// the images of a storedRowRef form from their message.
func (l *sessionLog) loggedFromStored(ctx context.Context, seq int64, j []byte) (*loggedEvent, error) {
	if len(j) == 0 || j[0] != '@' {
		return loggedFromJSON(seq, j), nil
	}
	d := json.NewDecoder(bytes.NewReader(j[1:]))
	var h storedRowRef
	if err := d.Decode(&h); err != nil {
		return &loggedEvent{seq: seq, ev: *startEvent("gap")}, nil
	}
	le := loggedFromJSON(seq, j[1+d.InputOffset():])
	mj, err := l.owner.st.messageAt(ctx, h.Session, h.Position)
	if errors.Is(err, errNotFound) {
		return &loggedEvent{seq: seq, ev: *startEvent("gap")}, nil
	} else if err != nil {
		return nil, err
	}
	var m chatMessage
	refs := newImageRefs()
	if json.Unmarshal([]byte(mj), &m) == nil {
		refs.parts(m.MultiContent)
	}
	for i, r := range h.Refs {
		if i >= len(refs.urls) || int64(len(refs.urls[i])) != r[1] || int64(crcString(refs.urls[i])) != r[2] {
			return &loggedEvent{seq: seq, ev: *startEvent("gap")}, nil
		}
		le.ev.refs = append(le.ev.refs, eventRef{int(r[0]) + len("data: "), refs.urls[i]})
	}
	return le, nil
}

// crcString is the CRC-32 of s, computed without copying s whole.
func crcString(s string) uint32 {
	var buf [4096]byte
	var crc uint32
	for len(s) > 0 {
		n := copy(buf[:], s)
		crc = crc32.Update(crc, crc32.IEEETable, buf[:n])
		s = s[n:]
	}
	return crc
}

// loggedFromJSON turns a stored event back into one the stream can write.
func loggedFromJSON(seq int64, j []byte) *loggedEvent {
	b := make([]byte, 0, len(j)+5)
	b = append(append(b, "data: "...), j[:max(len(j)-1, 0)]...)
	return &loggedEvent{seq: seq, ev: event{b: b}}
}

// eventLogs holds the logs of the sessions in use and stores their events. A nil
// *eventLogs is a disabled log: it logs nothing and has no log for any session.
type eventLogs struct {
	st        *store
	log       *slog.Logger
	retention int64

	mu      sync.Mutex
	logs    map[string]*sessionLog
	dirty   map[*sessionLog]bool // logs with events not yet stored
	removed uint64               // bumped whenever a log leaves logs (see acquire)
	fresh   map[string]bool      // sessions created here whose logs are known to be empty
	kick    chan struct{}        // wakes the writer; capacity 1
	quit    chan struct{}        // closed by close
	done    chan struct{}        // closed when the writer has stored everything and ended
}

// sessionLog is the event log of one session.
type sessionLog struct {
	id    string
	owner *eventLogs
	refs  int // runs and viewers using the log; guarded by owner.mu

	mu     sync.Mutex
	last   int64          // sequence number of the newest event
	stored int64          // newest sequence number in the database
	window []*loggedEvent // the newest events, contiguous, ending at last
	queued bool           // in owner.dirty, or about to be
	exited bool           // the session was deleted: session_exited is the last event
	wake   chan struct{}  // closed by the next append; nil until a viewer waits
}

// newEventLogs starts the writer; retention <= 0 disables the log (nil).
func newEventLogs(st *store, log *slog.Logger, retention int) *eventLogs {
	if retention <= 0 {
		return nil
	}
	ls := &eventLogs{st: st, log: log, retention: int64(retention), logs: map[string]*sessionLog{}, fresh: map[string]bool{},
		dirty: map[*sessionLog]bool{}, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go ls.writer()
	return ls
}

// acquire returns session id's log, loading its position from the database if it is
// not in memory; without create, nil when the session has never logged an event.
// Every log acquired must be released.
func (ls *eventLogs) acquire(ctx context.Context, id string, create bool) (*sessionLog, error) {
	if ls == nil {
		return nil, nil
	}
	for {
		ls.mu.Lock()
		if l := ls.logs[id]; l != nil {
			l.refs++
			ls.mu.Unlock()
			return l, nil
		}
		gen, fresh := ls.removed, ls.fresh[id]
		delete(ls.fresh, id)
		ls.mu.Unlock()
		var last int64
		if !fresh {
			var err error
			if last, err = ls.st.lastEventSeq(ctx, id); err != nil {
				return nil, err
			}
		}
		if last == 0 && !create {
			return nil, nil
		}
		ls.mu.Lock()
		if ls.logs[id] != nil || ls.removed != gen {
			// Another caller loaded it meanwhile, or a log left memory while we read
			// (its last events may have been stored after our read): look again.
			ls.mu.Unlock()
			continue
		}
		l := &sessionLog{id: id, owner: ls, refs: 1, last: last, stored: last}
		ls.logs[id] = l
		ls.mu.Unlock()
		return l, nil
	}
}

// created records that session id was just created here with a new id, so its log is
// empty: its first run does not read the log's position back. Only a saving: when
// many sessions are created and never run, the set is emptied and they are read.
func (ls *eventLogs) created(id string) {
	if ls == nil {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.fresh) >= maxFreshEventLogs {
		clear(ls.fresh)
	}
	ls.fresh[id] = true
}

// release gives back a log from acquire; an idle log whose events are all stored
// leaves memory.
func (ls *eventLogs) release(l *sessionLog) {
	if ls == nil || l == nil {
		return
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l.refs--
	ls.forgetIdle(l)
}

// forgetIdle drops l from memory when nobody uses it and the database holds all of
// it. The caller holds ls.mu.
func (ls *eventLogs) forgetIdle(l *sessionLog) {
	l.mu.Lock()
	idle := l.refs <= 0 && !l.queued && l.stored == l.last
	l.mu.Unlock()
	if idle && ls.logs[l.id] == l {
		delete(ls.logs, l.id)
		ls.removed++
	}
}

// lastSeq is the sequence number of session id's newest event; 0 without a log.
func (ls *eventLogs) lastSeq(ctx context.Context, id string) (int64, error) {
	if ls == nil {
		return 0, nil
	}
	l, err := ls.acquire(ctx, id, false)
	if l == nil || err != nil {
		return 0, err
	}
	defer ls.release(l)
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}

// append gives ev the log's next sequence number and keeps it; 0 when there is no log
// or the session is gone. ev must not change afterwards (events never do once sent).
func (l *sessionLog) append(ev *event) int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	if l.exited {
		l.mu.Unlock()
		return 0
	}
	seq := l.add(*ev)
	mark := !l.queued
	l.queued = true
	l.mu.Unlock()
	if mark {
		l.owner.markDirty(l)
	}
	return seq
}

// add appends ev to the window, evicting what is beyond retention (stored or not: the
// database would drop it anyway), and wakes the viewers. The caller holds l.mu.
func (l *sessionLog) add(ev event) int64 {
	l.last++
	l.window = append(l.window, &loggedEvent{seq: l.last, ev: ev})
	if int64(len(l.window)) > l.owner.retention {
		l.window[0] = nil
		l.window = l.window[1:]
	}
	if l.wake != nil {
		close(l.wake)
		l.wake = nil
	}
	return l.last
}

// exit ends the log of a deleted session: a sequenced session_exited, then nothing.
// The log leaves memory at once, so a later viewer gets 404.
func (ls *eventLogs) exit(l *sessionLog) {
	if ls == nil || l == nil {
		return
	}
	l.mu.Lock()
	if !l.exited {
		ev := startEvent("session_exited").str("reason", "session ended")
		l.add(*ev)
		l.exited = true
		l.stored = l.last // the rows went with the session; nothing to store
	}
	l.mu.Unlock()
	ls.mu.Lock()
	if ls.logs[l.id] == l {
		delete(ls.logs, l.id)
		ls.removed++
	}
	delete(ls.dirty, l)
	ls.mu.Unlock()
}

func (ls *eventLogs) markDirty(l *sessionLog) {
	ls.mu.Lock()
	ls.dirty[l] = true
	ls.mu.Unlock()
	select {
	case ls.kick <- struct{}{}:
	default:
	}
}

// read returns the events after seq after (at most eventReadBatch), from memory or,
// for older ones, the database. The first event's seq is beyond after+1 when events
// in between were evicted. With none to return, wake is closed by the next event;
// exited says none will come.
func (l *sessionLog) read(ctx context.Context, after int64) (evs []*loggedEvent, exited bool, wake <-chan struct{}, err error) {
	l.mu.Lock()
	first := l.last + 1
	if len(l.window) > 0 {
		first = l.window[0].seq
	}
	if after+1 >= first || after >= l.stored {
		evs = l.fromWindow(after)
		if len(evs) == 0 && !l.exited {
			if l.wake == nil {
				l.wake = make(chan struct{})
			}
			wake = l.wake
		}
		exited = l.exited
		l.mu.Unlock()
		return evs, exited, wake, nil
	}
	floor := l.last - l.owner.retention // evicted, even if its chunk is still stored
	l.mu.Unlock()
	evs, err = l.fromStore(ctx, max(after, floor), first)
	if err != nil {
		return nil, false, nil, err
	}
	if len(evs) == 0 {
		// Evicted (or the session is being deleted): go on from memory.
		l.mu.Lock()
		evs = l.fromWindow(first - 1)
		exited = l.exited
		l.mu.Unlock()
	}
	return evs, exited, nil, nil
}

// fromStore reads the stored events with after < seq < before (a few chunks' worth).
func (l *sessionLog) fromStore(ctx context.Context, after, before int64) ([]*loggedEvent, error) {
	chunks, err := l.owner.st.eventChunks(ctx, l.id, after, before, eventReadChunks)
	if err != nil {
		return nil, err
	}
	var evs []*loggedEvent
	for _, c := range chunks {
		seq := c.first
		for line := range bytes.SplitSeq(c.data, []byte("\n")) {
			if seq > after && seq < before {
				le, err := l.loggedFromStored(ctx, seq, line)
				if err != nil {
					return nil, err
				}
				evs = append(evs, le)
			}
			seq++
		}
	}
	return evs, nil
}

// fromWindow copies the window's events after seq after. The caller holds l.mu.
func (l *sessionLog) fromWindow(after int64) []*loggedEvent {
	var out []*loggedEvent
	for _, le := range l.window {
		if le.seq > after {
			out = append(out, le)
			if len(out) == eventReadBatch {
				break
			}
		}
	}
	return out
}

// writer stores dirty logs' events, one transaction per batch, until close.
func (ls *eventLogs) writer() {
	defer close(ls.done)
	for {
		select {
		case <-ls.kick:
		case <-ls.quit:
			ls.flush()
			return
		}
		select {
		case <-time.After(eventLogFlushDelay):
		case <-ls.quit:
		}
		if !ls.flush() {
			select {
			case <-time.After(eventLogRetryDelay):
			case <-ls.quit:
			}
		}
	}
}

// flush stores every event not yet stored; false if the database refused them (they
// stay queued for the next try).
func (ls *eventLogs) flush() bool {
	ls.mu.Lock()
	logs := make([]*sessionLog, 0, len(ls.dirty))
	for l := range ls.dirty {
		logs = append(logs, l)
	}
	clear(ls.dirty)
	ls.mu.Unlock()
	if len(logs) == 0 {
		return true
	}
	batch := make(map[string]eventChunk, len(logs))
	upTo := make(map[*sessionLog]int64, len(logs))
	for _, l := range logs {
		// Events never change once logged: the JSON is built outside the lock.
		l.mu.Lock()
		l.queued = false
		i, _ := slices.BinarySearchFunc(l.window, l.stored+1, func(le *loggedEvent, seq int64) int { return cmp.Compare(le.seq, seq) })
		evs := slices.Clone(l.window[i:])
		l.mu.Unlock()
		c := eventChunk{}
		for _, le := range evs {
			if c.first == 0 {
				c.first = le.seq
			} else {
				c.data = append(c.data, '\n')
			}
			c.data, c.last = le.appendStored(c.data), le.seq
		}
		if c.first != 0 {
			batch[l.id] = c
			upTo[l] = c.last
		}
	}
	if err := ls.st.storeEvents(context.Background(), batch, ls.retention); err != nil {
		ls.log.Warn("storing the event log failed; retrying", "sessions", len(batch), "err", err)
		for _, l := range logs {
			ls.requeue(l)
		}
		return false
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, l := range logs {
		l.mu.Lock()
		l.stored = max(l.stored, upTo[l])
		l.trim()
		l.mu.Unlock()
		ls.forgetIdle(l)
	}
	return true
}

// requeue marks l dirty again after a failed batch.
func (ls *eventLogs) requeue(l *sessionLog) {
	l.mu.Lock()
	l.queued = !l.exited
	l.mu.Unlock()
	ls.mu.Lock()
	if !l.exited {
		ls.dirty[l] = true
	}
	ls.mu.Unlock()
}

// trim drops stored events from memory beyond the tail live viewers read. The caller
// holds l.mu.
func (l *sessionLog) trim() {
	keep := 0
	for i, le := range l.window {
		if le.seq > l.stored-eventLogTail {
			keep = i
			break
		}
		keep = i + 1
	}
	if keep > 0 {
		l.window = append([]*loggedEvent(nil), l.window[keep:]...)
	}
}

// close stores what is left and stops the writer.
func (ls *eventLogs) close() {
	if ls == nil {
		return
	}
	select {
	case <-ls.quit:
	default:
		close(ls.quit)
	}
	<-ls.done
}

// resumePoint is where a viewer resumes: ?since=N, else Last-Event-ID; ok is false
// when neither is given (or parses), and then the whole log is replayed.
func resumePoint(since, lastID string) (after int64, ok bool) {
	for _, v := range []string{since, lastID} {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			return n, true
		}
	}
	return 0, false
}

// serveEvents is GET /api/sessions/{id}/events: the session's logged events with
// their `id:` lines, from ?since=N or Last-Event-ID (else all that are kept), then
// live ones as they come, until the client leaves, the session is deleted
// (session_exited) or the server shuts down. A viewer asking for evicted events gets
// {"type":"gap"} (no id) first; one reading slower than the run reads from the
// database, so it is never dropped. Several viewers may follow one session.
func (s *server) serveEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	after, resumed := resumePoint(r.URL.Query().Get("since"), r.Header.Get("Last-Event-ID"))
	l, err := s.events.acquire(r.Context(), id, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if l == nil {
		s.writeError(w, r, notFound("no event source for session"))
		return
	}
	defer s.events.release(l)
	sink := newSSESink(w, cmp.Or(s.cfg.heartbeat, heartbeatEvery))
	defer sink.close()
	for r.Context().Err() == nil {
		evs, exited, wake, err := l.read(r.Context(), after)
		if err != nil {
			s.log.Warn("reading the event log failed; ending the stream", "session", id, "err", err)
			return
		}
		if len(evs) > 0 && resumed && evs[0].seq > after+1 {
			sink.send(startEvent("gap"))
		}
		resumed = true // from here on, any jump is events evicted while we read
		for _, le := range evs {
			sink.sendLogged(le)
			after = le.seq
		}
		switch {
		case len(evs) > 0:
			continue
		case exited:
			return
		}
		select {
		case <-wake:
		case <-r.Context().Done():
			return
		case <-s.life.Done():
			return
		}
	}
}
