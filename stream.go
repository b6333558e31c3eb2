package main

// stream.go: Server-Sent Events framing for the run endpoint (API.md §4.4, §5).
// Each event is one `data: {json}` line and a blank line, flushed at once; a `:`
// comment keeps idle streams alive through proxies.

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// sseSink writes events to one client. It is safe for concurrent use (the run and the
// title generator both write) and drops events once closed. With a log, every event
// it sends is logged first (eventlog.go), also once the client has gone.
type sseSink struct {
	mu     sync.Mutex
	w      http.ResponseWriter // nil: nobody watches (a background agent)
	bw     *bufio.Writer       // in front of w while events wait for a flush (sseBuffers)
	rc     *http.ResponseController
	closed bool
	gone   bool        // a write failed: the client went away, events are only logged
	log    *sessionLog // nil: events are not logged
	ids    bool        // precede each logged event with its `id:` line
	last   time.Time
	stop   chan struct{}
}

// sseBuffers hold the events of a stream between flushes, 8 KiB each: through
// net/http's 2 KiB response buffer alone a burst of deltas (a run's 100 are about
// 15 KiB) cost a system call per 2 KiB. A stream holds one only until its next flush.
var sseBuffers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 8<<10) }}

// newSSESink writes the stream headers at once and starts a heartbeat every beat.
func newSSESink(w http.ResponseWriter, beat time.Duration) *sseSink {
	s := openSSESink(w, beat)
	s.rc.Flush()
	return s
}

// openSSESink is newSSESink for a stream whose first event follows at once (a run's):
// the headers go out with it, in one write.
func openSSESink(w http.ResponseWriter, beat time.Duration) *sseSink {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseSink{w: w, rc: http.NewResponseController(w), last: time.Now(), stop: make(chan struct{})}
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	seq := s.log.append(ev)
	if !s.ids {
		seq = 0
	}
	s.frame(seq, ev, flush)
}

// sendLogged writes an event of a log with its `id:` line (GET …/events).
func (s *sseSink) sendLogged(le *loggedEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.frame(le.seq, &le.ev, true)
	}
}

// frame writes one frame, with an `id:` line when seq is not 0. The caller holds s.mu.
func (s *sseSink) frame(seq int64, ev *event, flush bool) {
	if s.w == nil || s.gone {
		return
	}
	bw := s.buffer()
	if seq > 0 {
		bw.WriteString("id: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), seq, 10))
		bw.WriteByte('\n')
	}
	err := ev.writeTo(bw)
	if flush && err == nil {
		err = s.flush()
	}
	s.gone = err != nil
	s.last = time.Now()
}

// buffer is where frames are written until the next flush. The caller holds s.mu.
func (s *sseSink) buffer() *bufio.Writer {
	if s.bw == nil {
		s.bw = sseBuffers.Get().(*bufio.Writer)
		s.bw.Reset(s.w)
	}
	return s.bw
}

// flush sends what is buffered to the client and gives the buffer back, so an idle
// stream holds none. The caller holds s.mu.
func (s *sseSink) flush() error {
	if s.bw != nil {
		err := s.bw.Flush()
		s.bw.Reset(nil)
		sseBuffers.Put(s.bw)
		s.bw = nil
		if err != nil {
			return err
		}
	}
	return s.rc.Flush()
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
			if !s.closed && !s.gone && time.Since(s.last) >= beat {
				s.buffer().WriteString(": ping\n\n")
				s.gone = s.flush() != nil
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
		if s.bw != nil && !s.gone {
			s.flush() // an event sent buffered with none after it
		}
	}
}

// discardSink is the sink of a run nobody watches (a background agent): it writes
// nothing; with a log, it logs every event.
func discardSink(log *sessionLog) *sseSink {
	return &sseSink{log: log, stop: make(chan struct{})}
}

// The events of a run's stream (API.md §5), one constructor each: the wire schema
// of the whole stream is this list. Keys appear in the reference's order: "type",
// the event's own fields, then the agent context — agent_name (left out when empty)
// and timestamp, the zero time where the reference builds the event without an
// agent context.

// userMessageEvent echoes a stored user message with its position in the session.
func userMessageEvent(m chatMessage, sessionID string, position int) *event {
	e := startEvent("user_message").str("message", m.Content)
	if len(m.MultiContent) > 0 {
		e.parts("multi_content", m.MultiContent)
		e.row = eventRow{sessionID, position}
	}
	return e.str("session_id", sessionID).num("session_position", int64(position)).ctx("", time.Now())
}

func streamStartedEvent(sessionID, agent string) *event {
	return startEvent("stream_started").str("session_id", sessionID).ctx(agent, time.Now())
}

// streamStoppedEvent ends a session's stream; reason (newer clients) is how the
// turn ended: normal, error or canceled.
func streamStoppedEvent(sessionID, agent, reason string) *event {
	return startEvent("stream_stopped").str("session_id", sessionID).str("reason", reason).ctx(agent, time.Now())
}

// errorEvent ends a run's work with a message; it carries no agent context. The
// newer clients also read the session that failed (a child's id for a sub-session)
// and a code (errorCode), each left out when empty.
func errorEvent(msg, code, sessionID string) *event {
	e := startEvent("error")
	if sessionID != "" {
		e.str("session_id", sessionID)
	}
	e.str("error", msg)
	if code != "" {
		e.str("code", code)
	}
	return e.ctx("", zeroTime)
}

// The error codes of API-UPSTREAM.md §4.4 that agentd's failures map to.
const (
	errCodeModel           = "model_error"
	errCodeRateLimited     = "rate_limited"
	errCodeContextExceeded = "context_exceeded"
	errCodeRequestTooLarge = "request_too_large"
)

// errorCode classifies a model call's failure for the error event.
func errorCode(err error) string {
	var me *modelError
	switch {
	case modelContextOverflow(err):
		return errCodeContextExceeded
	case errors.As(err, &me) && me.Status == http.StatusTooManyRequests:
		return errCodeRateLimited
	case errors.As(err, &me) && me.Status == http.StatusRequestEntityTooLarge:
		return errCodeRequestTooLarge
	}
	return errCodeModel
}

func warningEvent(msg, agent string) *event {
	return startEvent("warning").str("message", msg).ctx(agent, time.Now())
}

// agentInfoEvent describes the answering agent and, for newer clients, its model's
// context window when known. Its timestamp is a plain field: the reference sends no
// agent context here.
func agentInfoEvent(name, model, description, welcome string, contextLimit int64) *event {
	e := startEvent("agent_info").str("agent_name", name).str("model", model).str("description", description)
	if welcome != "" {
		e.str("welcome_message", welcome)
	}
	if contextLimit > 0 {
		e.num("context_limit", contextLimit)
	}
	return e.str("timestamp", time.Now().Format(time.RFC3339Nano))
}

// teamAgentJSON is an element of team_info's available_agents.
type teamAgentJSON struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Provider    string `json:"provider"`
	Model       string `json:"model"`
}

func teamInfoEvent(agents []teamAgentJSON, current string) *event {
	return startEvent("team_info").val("available_agents", agents).str("current_agent", current).ctx(current, time.Now())
}

func mcpInitStartedEvent(agent string) *event {
	return startEvent("mcp_init_started").ctx(agent, time.Now())
}

func mcpInitFinishedEvent(agent string) *event {
	return startEvent("mcp_init_finished").ctx(agent, time.Now())
}

func toolsetInfoEvent(tools int, agent string) *event {
	return startEvent("toolset_info").num("available_tools", int64(tools)).flag("loading", false).ctx(agent, time.Now())
}

func agentChoiceEvent(text, sessionID, agent string) *event {
	return startEvent("agent_choice").str("content", text).str("session_id", sessionID).ctx(agent, time.Now())
}

func agentChoiceReasoningEvent(text, sessionID, agent string) *event {
	return startEvent("agent_choice_reasoning").str("content", text).str("session_id", sessionID).ctx(agent, time.Now())
}

// partialToolCallEvent shows a tool call as it streams in; def is left out when nil
// (the newer clients get it on a call's first partial only).
func partialToolCallEvent(call *toolCall, def *toolDef, agent string) *event {
	e := startEvent("partial_tool_call").val("tool_call", call)
	if def != nil {
		e.val("tool_definition", def)
	}
	return e.ctx(agent, time.Now())
}

func modelFallbackEvent(n fallbackNotice, agent string) *event {
	return startEvent("model_fallback").str("failed_model", n.FailedModel).str("fallback_model", n.FallbackModel).
		str("reason", n.Reason).num("attempt", int64(n.Attempt)).num("max_attempts", int64(n.MaxAttempts)).ctx(agent, zeroTime)
}

func messageAddedEvent(sessionID, agent string) *event {
	return startEvent("message_added").str("session_id", sessionID).ctx(agent, time.Now())
}

func tokenUsageEvent(sessionID string, usage usageJSON, agent string) *event {
	return startEvent("token_usage").str("session_id", sessionID).val("usage", usage).ctx(agent, time.Now())
}

// sessionCompactionEvent brackets a compaction: status "started" or "completed",
// the latter with the outcome newer clients read (applied, skipped or failed).
func sessionCompactionEvent(sessionID, status, outcome, agent string) *event {
	e := startEvent("session_compaction").str("session_id", sessionID).str("status", status)
	if outcome != "" {
		e.str("outcome", outcome)
	}
	return e.ctx(agent, time.Now())
}

// sessionSummaryEvent carries the summary a compaction produced.
func sessionSummaryEvent(sessionID, summary, agent string) *event {
	return startEvent("session_summary").str("session_id", sessionID).str("summary", summary).ctx(agent, time.Now())
}

// maxIterationsReachedEvent asks whether to go on; POST …/resume answers.
func maxIterationsReachedEvent(max int) *event {
	return startEvent("max_iterations_reached").num("max_iterations", int64(max)).ctx("", zeroTime)
}

// toolCallConfirmationEvent asks the client to approve a call; POST …/resume answers.
func toolCallConfirmationEvent(call toolCall, def toolDef, agent string) *event {
	return startEvent("tool_call_confirmation").val("tool_call", call).val("tool_definition", def).ctx(agent, time.Now())
}

// toolCallEvent announces a call that runs now.
func toolCallEvent(call toolCall, def toolDef, agent string) *event {
	return startEvent("tool_call").val("tool_call", call).val("tool_definition", def).ctx(agent, time.Now())
}

// hookBlockedEvent reports a call a pre_tool_use hook refused, with the hook's reason.
func hookBlockedEvent(call toolCall, def toolDef, msg, agent string) *event {
	return startEvent("hook_blocked").val("tool_call", call).val("tool_definition", def).str("message", msg).ctx(agent, time.Now())
}

// toolCallResponseEvent carries both the reference's tool_call (older clients read
// it) and the newer tool_call_id.
func toolCallResponseEvent(call toolCall, def toolDef, res toolResult, agent string) *event {
	return startEvent("tool_call_response").val("tool_call", call).str("tool_call_id", call.ID).val("tool_definition", def).
		str("response", res.Output).val("result", res).ctx(agent, time.Now())
}

// authorizationEvent tells the client an MCP server's OAuth authorization completed.
func authorizationEvent() *event {
	return startEvent("authorization_event").str("confirmation", "accept").ctx("", zeroTime)
}

// toolCallOutputEvent is one chunk of a tool's output while it runs (the shell tool's
// process output); tool_call_response still carries the whole result.
func toolCallOutputEvent(callID string, def toolDef, output, agent string) *event {
	return startEvent("tool_call_output").str("tool_call_id", callID).val("tool_definition", def).str("output", output).ctx(agent, time.Now())
}

// hookStartedEvent and hookFinishedEvent bracket the dispatch of one hook event
// (pre_tool_use, session_start, …) to the agent's hooks.
func hookStartedEvent(sessionID, hookEvent, agent string) *event {
	return startEvent("hook_started").str("session_id", sessionID).str("hook_event", hookEvent).ctx(agent, time.Now())
}

func hookFinishedEvent(sessionID, hookEvent string, d time.Duration, allowed bool, msg, agent string) *event {
	e := startEvent("hook_finished").str("session_id", sessionID).str("hook_event", hookEvent).
		num("duration_ms", d.Milliseconds()).flag("allowed", allowed)
	if msg != "" {
		e.str("message", msg)
	}
	return e.ctx(agent, time.Now())
}

// elicitationRequestEvent asks the client a tool's question (MCP elicitation); POST
// …/elicitation answers. schema is null when the tool gave none.
func elicitationRequestEvent(req elicitationRequest) *event {
	e := startEvent("elicitation_request").str("message", req.Message)
	if req.Mode != "" {
		e.str("mode", req.Mode)
	}
	if len(req.Schema) == 0 {
		e.val("schema", json.RawMessage("null"))
	} else {
		e.val("schema", req.Schema)
	}
	if req.URL != "" {
		e.str("url", req.URL)
	}
	if req.ElicitationID != "" {
		e.str("elicitation_id", req.ElicitationID)
	}
	if len(req.Meta) > 0 {
		e.val("meta", req.Meta)
	}
	return e.ctx("", time.Now())
}

// agentSwitchingEvent marks a transfer_task starting (switching true) or ending.
func agentSwitchingEvent(switching bool, from, to string) *event {
	return startEvent("agent_switching").flag("switching", switching).str("from_agent", from).str("to_agent", to).ctx(to, time.Now())
}

func subSessionCompletedEvent(parentID string, sub *sessionJSON, agent string) *event {
	return startEvent("sub_session_completed").str("parent_session_id", parentID).val("sub_session", sub).ctx(agent, time.Now())
}

func sessionTitleEvent(sessionID, title string) *event {
	return startEvent("session_title").str("session_id", sessionID).str("title", title).ctx("", zeroTime)
}

// The events of a RAG indexing pass are built before the agent is known (one pass
// serves every agent that lists the source); forAgent completes them.

func ragIndexingStartedEvent(rag, strategy string) *event {
	return startEvent("rag_indexing_started").str("rag_name", rag).str("strategy_name", strategy)
}

func ragIndexingProgressEvent(rag, strategy string, current, total int) *event {
	return startEvent("rag_indexing_progress").str("rag_name", rag).str("strategy_name", strategy).
		num("current", int64(current)).num("total", int64(total))
}

func ragIndexingCompletedEvent(rag, strategy string) *event {
	return startEvent("rag_indexing_completed").str("rag_name", rag).str("strategy_name", strategy)
}

// ragTokenUsageEvent reports an indexing pass's embedding tokens, with an empty
// session id, as the reference does.
func ragTokenUsageEvent(usage usageJSON) *event {
	return startEvent("token_usage").str("session_id", "").val("usage", usage)
}

// forAgent adds the agent context to a RAG indexing event. An error already has its
// own (none), as in the reference.
func (e *event) forAgent(agent string) *event {
	if e.typ == "error" {
		return e
	}
	return e.ctx(agent, time.Now())
}

// event is one SSE payload, encoded as its constructor adds fields: the builder
// methods below append each key and value to the frame directly (strings, integers,
// booleans and times by hand, as this runs once per streamed token; everything else
// through encoding/json). Keys are plain identifiers, never escaped.
type event struct {
	typ  string
	b    []byte     // `data: {"type":…` and the fields so far; writeTo ends it
	refs []eventRef // large strings written between parts of b, not copied into it
	// row is the stored message the refs are images of: the event log keeps them as a
	// reference to it instead of a copy (eventlog.go).
	row eventRow
}

// eventRow is a stored session item, by session and position.
type eventRow struct {
	Session  string `json:"session_id"`
	Position int    `json:"position"`
}

// eventRef is a large string that goes after b[:at].
type eventRef struct {
	at int
	s  string
}

// zeroTime is the timestamp of events the reference builds without an agent context.
var zeroTime time.Time

// startEvent begins an event of type typ.
func startEvent(typ string) *event {
	e := &event{typ: typ, b: make([]byte, 0, 256)}
	e.b = append(e.b, `data: {"type":`...)
	e.b = appendJSONString(e.b, typ)
	return e
}

func (e *event) key(k string) {
	e.b = append(e.b, ',', '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

func (e *event) str(k, v string) *event {
	e.key(k)
	e.b = appendJSONString(e.b, v)
	return e
}

func (e *event) num(k string, v int64) *event {
	e.key(k)
	e.b = strconv.AppendInt(e.b, v, 10)
	return e
}

func (e *event) flag(k string, v bool) *event {
	e.key(k)
	e.b = strconv.AppendBool(e.b, v)
	return e
}

func (e *event) when(k string, t time.Time) *event {
	e.key(k)
	e.b = append(t.AppendFormat(append(e.b, '"'), time.RFC3339Nano), '"')
	return e
}

// val adds v as encoding/json writes it; a value it cannot encode becomes null.
func (e *event) val(k string, v any) *event {
	e.key(k)
	j, err := json.Marshal(v)
	if err != nil {
		j = []byte("null")
	}
	e.b = append(e.b, j...)
	return e
}

// parts adds message parts as encoding/json writes them; large images are written to
// the client from the message's own strings, never copied into the event.
func (e *event) parts(k string, parts []messagePart) *event {
	refs := newImageRefs()
	j, err := json.Marshal(refs.parts(parts))
	if err != nil {
		return e.val(k, nil)
	}
	e.key(k)
	sj := refs.splice(j)
	for _, r := range sj.refs {
		e.refs = append(e.refs, eventRef{len(e.b) + r.at, r.s})
	}
	e.b = append(e.b, sj.b...)
	return e
}

// ctx appends the agent context: agent_name (omitted when empty) and timestamp.
func (e *event) ctx(agent string, ts time.Time) *event {
	if agent != "" {
		e.str("agent_name", agent)
	}
	return e.when("timestamp", ts)
}

// writeTo writes the event as one SSE frame, `data: {json}` and a blank line, its
// large strings from where they are held.
func (e *event) writeTo(w io.Writer) error {
	at := 0
	for _, r := range e.refs {
		if _, err := w.Write(e.b[at:r.at]); err != nil {
			return err
		}
		if _, err := io.WriteString(w, r.s); err != nil {
			return err
		}
		at = r.at
	}
	if _, err := w.Write(e.b[at:]); err != nil {
		return err
	}
	_, err := io.WriteString(w, "}\n\n")
	return err
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
