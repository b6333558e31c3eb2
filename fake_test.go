package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// fakeTurn is one scripted answer of fakeOpenAI: text deltas, or tool calls, or an
// HTTP error status with a body.
type fakeTurn struct {
	Text      []string       // content deltas
	Reasoning []string       // reasoning_content deltas
	ToolCalls []fakeToolCall // streamed as one start chunk plus one argument chunk each
	Status    int            // non-zero: answer with this status and Body instead of a stream
	Body      string
	CutAfter  int           // > 0: drop the connection after this many text deltas
	EndEarly  bool          // end the response cleanly after the text deltas: no finish_reason, no [DONE]
	Hold      chan struct{} // non-nil: after the first text delta, wait until it is closed
	// Gate, when set, holds the answer after its headers until it is closed, so a test
	// can change the world (lock the database, fill the disk) mid-run.
	Gate chan struct{}
	// PromptTokens, when set, is the prompt_tokens the final usage chunk reports (else 12).
	PromptTokens int
	// ArgChunks, when > 1, streams each tool call's arguments in that many chunks.
	ArgChunks int
}

type fakeToolCall struct {
	ID, Name, Args string
}

// fakeOpenAI is an in-process OpenAI-compatible chat completions server speaking the
// real streaming wire format. It serves turns in order and records every request body.
type fakeOpenAI struct {
	*httptest.Server
	mu       sync.Mutex
	turns    []fakeTurn
	Requests []map[string]any // chat requests, title requests excluded
	Title    string           // answer to title-generation requests ("Test title" if empty)
	// TitleTurn, when set, answers title requests instead of Title; TitleRequest is the
	// last title request received.
	TitleTurn    *fakeTurn
	TitleRequest map[string]any
	Default      *fakeTurn // answer once the scripted turns are used up ("ok" if nil)
	titles       int
}

// newFakeOpenAI starts the server; its URL + "/v1" is the base_url to configure.
func newFakeOpenAI(t testing.TB, turns ...fakeTurn) *fakeOpenAI {
	t.Helper()
	f := &fakeOpenAI{turns: turns}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

// requests returns a copy of the recorded request bodies.
func (f *fakeOpenAI) requests() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.Requests...)
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != "POST" || !strings.HasSuffix(r.URL.Path, "/chat/completions") {
		http.Error(w, `{"error":{"message":"unexpected path"}}`, 404)
		return
	}
	b, _ := io.ReadAll(r.Body)
	var req map[string]any
	json.Unmarshal(b, &req)
	f.mu.Lock()
	if isTitleRequest(req) {
		f.titles++
		title, turn := f.Title, f.TitleTurn
		f.TitleRequest = req
		f.mu.Unlock()
		if turn != nil {
			f.writeTurn(w, *turn)
			return
		}
		if title == "" {
			title = "Test title"
		}
		f.writeTurn(w, fakeTurn{Text: []string{title}})
		return
	}
	f.Requests = append(f.Requests, req)
	var turn fakeTurn
	if len(f.turns) > 0 {
		turn, f.turns = f.turns[0], f.turns[1:]
	} else if f.Default != nil {
		turn = *f.Default
	} else {
		turn = fakeTurn{Text: []string{"ok"}}
	}
	f.mu.Unlock()
	f.writeTurn(w, turn)
}

// isTitleRequest recognises the runtime's title-generation call by its system prompt,
// so titles never consume scripted turns.
func isTitleRequest(req map[string]any) bool {
	msgs, _ := req["messages"].([]any)
	if len(msgs) == 0 {
		return false
	}
	m, _ := msgs[0].(map[string]any)
	c, _ := m["content"].(string)
	return strings.Contains(c, "generates concise, descriptive titles")
}

// writeTurn answers one request with turn in the OpenAI streaming format.
func (f *fakeOpenAI) writeTurn(w http.ResponseWriter, turn fakeTurn) {
	if turn.Status != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(turn.Status)
		io.WriteString(w, turn.Body)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	if turn.Gate != nil {
		fl.Flush()
		<-turn.Gate
	}
	chunk := func(delta string, finish string, usage string) {
		fin := "null"
		if finish != "" {
			fin = `"` + finish + `"`
		}
		fmt.Fprintf(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"fake-model","choices":[{"index":0,"delta":%s,"finish_reason":%s}],"usage":%s}`+"\n\n", delta, fin, usage)
		fl.Flush()
	}
	for _, r := range turn.Reasoning {
		chunk(fmt.Sprintf(`{"reasoning_content":%q}`, r), "", "null")
	}
	for i, txt := range turn.Text {
		if turn.CutAfter > 0 && i == turn.CutAfter {
			panic(http.ErrAbortHandler)
		}
		chunk(fmt.Sprintf(`{"content":%q}`, txt), "", "null")
		if i == 0 && turn.Hold != nil {
			<-turn.Hold
		}
	}
	if turn.EndEarly {
		return
	}
	for i, tc := range turn.ToolCalls {
		chunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"id":%q,"type":"function","function":{"name":%q,"arguments":""}}]}`, i, tc.ID, tc.Name), "", "null")
		for _, part := range splitN(tc.Args, turn.ArgChunks) {
			chunk(fmt.Sprintf(`{"tool_calls":[{"index":%d,"function":{"arguments":%q}}]}`, i, part), "", "null")
		}
	}
	finish := "stop"
	if len(turn.ToolCalls) > 0 {
		finish = "tool_calls"
	}
	chunk(`{}`, finish, "null")
	prompt := cmp.Or(turn.PromptTokens, 12)
	fmt.Fprintf(w, `data: {"id":"chatcmpl-1","object":"chat.completion.chunk","model":"fake-model","choices":[],"usage":{"prompt_tokens":%d,"completion_tokens":5,"total_tokens":%d,"prompt_tokens_details":{"cached_tokens":2}}}`+"\n\n", prompt, prompt+5)
	fmt.Fprint(w, "data: [DONE]\n\n")
	fl.Flush()
}

// splitN cuts s into n nearly equal byte pieces (one piece when n <= 1).
func splitN(s string, n int) []string {
	if n <= 1 || len(s) < n {
		return []string{s}
	}
	var out []string
	for i := range n {
		out = append(out, s[i*len(s)/n:(i+1)*len(s)/n])
	}
	return out
}
