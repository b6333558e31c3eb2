package main

// stream.go: Server-Sent Events framing for the run endpoint (API.md §4.4, §5).
// Each event is one `data: {json}` line and a blank line, flushed at once; a `:`
// comment keeps idle streams alive through proxies.

import (
	"bytes"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// sseSink writes events to one client. It is safe for concurrent use (the run and the
// title generator both write) and drops events once closed.
type sseSink struct {
	mu     sync.Mutex
	w      http.ResponseWriter
	rc     *http.ResponseController
	closed bool
	last   time.Time
	stop   chan struct{}
}

// newSSESink writes the stream headers and starts a heartbeat every beat.
func newSSESink(w http.ResponseWriter, beat time.Duration) *sseSink {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseSink{w: w, rc: http.NewResponseController(w), last: time.Now(), stop: make(chan struct{})}
	s.rc.Flush()
	go s.heartbeat(beat)
	return s
}

// send writes one event and flushes it (with any buffered before it); errors (a gone
// client) are noticed through the request context, so they are not returned.
func (s *sseSink) send(ev *event) { s.write(ev, true) }

// sendBuffered writes an event that another one follows at once (it had already
// arrived from the provider): the next send flushes both in one write.
func (s *sseSink) sendBuffered(ev *event) { s.write(ev, false) }

func (s *sseSink) write(ev *event, flush bool) {
	b := ev.marshal()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	var buf bytes.Buffer
	buf.Grow(len(b) + 8)
	buf.WriteString("data: ")
	buf.Write(b)
	buf.WriteString("\n\n")
	s.w.Write(buf.Bytes())
	if flush {
		s.rc.Flush()
	}
	s.last = time.Now()
}

func (s *sseSink) heartbeat(beat time.Duration) {
	t := time.NewTicker(beat)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			if !s.closed && time.Since(s.last) >= beat {
				s.w.Write([]byte(": ping\n\n"))
				s.rc.Flush()
				s.last = time.Now()
			}
			s.mu.Unlock()
		}
	}
}

// close ends the stream; later sends are dropped (a late session_title can never
// write to a finished response — the reference crashes there, API.md §11.6).
func (s *sseSink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
}

// event is one SSE payload with its keys in the reference's order: "type", the
// event's own fields, then the agent context (agent_name, timestamp).
type event struct {
	keys []string
	vals []any
}

// zeroTime is the timestamp of events the reference builds without an agent context.
var zeroTime time.Time

// newEvent starts an event of type typ with key/value pairs.
func newEvent(typ string, kv ...any) *event {
	e := &event{keys: []string{"type"}, vals: []any{typ}}
	for i := 0; i+1 < len(kv); i += 2 {
		e.keys = append(e.keys, kv[i].(string))
		e.vals = append(e.vals, kv[i+1])
	}
	return e
}

// ctx appends the agent context: agent_name (omitted when empty) and timestamp.
func (e *event) ctx(agent string, ts time.Time) *event {
	if agent != "" {
		e.keys = append(e.keys, "agent_name")
		e.vals = append(e.vals, agent)
	}
	e.keys = append(e.keys, "timestamp")
	e.vals = append(e.vals, ts.Format(time.RFC3339Nano))
	return e
}

// marshal renders the event as compact JSON in key order.
func (e *event) marshal() []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range e.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		vb, err := json.Marshal(e.vals[i])
		if err != nil {
			vb = []byte("null")
		}
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// get returns the value of key, for tests and logging.
func (e *event) get(key string) any {
	for i, k := range e.keys {
		if k == key {
			return e.vals[i]
		}
	}
	return nil
}
