package main

// stream.go: Server-Sent Events framing for the run endpoint (API.md §4.4, §5).
// Each event is one `data: {json}` line and a blank line, flushed at once; a `:`
// comment keeps idle streams alive through proxies.

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
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
	b := ev.frame()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.w.Write(b)
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
	e := &event{keys: make([]string, 1, 8), vals: make([]any, 1, 8)}
	e.keys[0], e.vals[0] = "type", typ
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
	e.vals = append(e.vals, ts)
	return e
}

// ctxKV appends more fields before the agent context.
func (e *event) ctxKV(kv ...any) *event {
	for i := 0; i+1 < len(kv); i += 2 {
		e.keys = append(e.keys, kv[i].(string))
		e.vals = append(e.vals, kv[i+1])
	}
	return e
}

// frame is the event as one SSE frame: `data: {json}` and a blank line.
func (e *event) frame() []byte {
	return append(e.appendJSON(append(make([]byte, 0, 256), "data: "...)), '\n', '\n')
}

// appendJSON appends the event as compact JSON in key order. Keys are plain
// identifiers; strings, integers and times, nearly every value, are encoded here (this
// runs once per streamed token), everything else by encoding/json.
func (e *event) appendJSON(b []byte) []byte {
	b = append(b, '{')
	for i, k := range e.keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, k...)
		b = append(b, '"', ':')
		b = appendJSONValue(b, e.vals[i])
	}
	return append(b, '}')
}

func appendJSONValue(b []byte, v any) []byte {
	switch x := v.(type) {
	case string:
		return appendJSONString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case time.Time:
		return append(x.AppendFormat(append(b, '"'), time.RFC3339Nano), '"')
	}
	j, err := json.Marshal(v)
	if err != nil {
		j = []byte("null")
	}
	return append(b, j...)
}

// appendJSONString appends s as encoding/json would: HTML-escaped, invalid UTF-8 as
// U+FFFD, U+2028 and U+2029 escaped (FuzzAppendJSONString compares the two).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
