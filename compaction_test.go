package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// openAIOverflow is OpenAI's real answer to a prompt past the context window.
var openAIOverflow = fakeTurn{Status: 400, Body: `{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}`}

// promptOf lists a model request's messages as "role: content".
func promptOf(req map[string]any) []string {
	var out []string
	for _, m := range req["messages"].([]any) {
		m := m.(map[string]any)
		c, _ := m["content"].(string)
		out = append(out, m["role"].(string)+": "+c)
	}
	return out
}

// eventsOf lists the events of the given types in stream order.
func eventsOf(evs []map[string]any, types ...string) []map[string]any {
	var out []map[string]any
	for _, ev := range evs {
		if slices.Contains(types, ev["type"].(string)) {
			out = append(out, ev)
		}
	}
	return out
}

// An overflowing turn is compacted and retried with the summary and the question; the
// summary is stored as the reference stores it, and later turns (also after a restart)
// send it and what follows it, never the compacted history.
func TestCompactionOnOverflow(t *testing.T) {
	e, f := newRunEnv(t, "",
		fakeTurn{Text: []string{"first answer"}},
		openAIOverflow,
		fakeTurn{Text: []string{"SUMMARY-1"}},
		fakeTurn{Text: []string{"second answer"}},
		fakeTurn{Text: []string{"third answer"}})
	id := e.newSession(map[string]any{"title": "t"})
	path := "/api/sessions/" + id + "/agent/a"
	e.run(path, []map[string]any{{"content": "first question"}}).all()

	s := e.run(path, []map[string]any{{"content": "second question"}})
	evs := s.all()
	want := []string{"agent_info", "team_info", "toolset_info", "user_message", "stream_started", "toolset_info",
		"warning", "session_compaction", "session_summary", "session_compaction", "token_usage",
		"toolset_info", "agent_choice", "message_added", "token_usage", "stream_stopped"}
	if got := withoutTitle(s.types()); !slices.Equal(got, want) {
		t.Fatalf("events = %v\nwant %v", got, want)
	}
	c := eventsOf(evs, "warning", "session_compaction", "session_summary", "token_usage")
	if !strings.Contains(c[0]["message"].(string), "exceeded the model's context window") ||
		c[1]["status"] != "started" || c[1]["session_id"] != id || c[1]["agent_name"] != "root" ||
		c[2]["summary"] != "SUMMARY-1" || c[2]["session_id"] != id || c[3]["status"] != "completed" {
		t.Errorf("compaction events = %v", c[:4])
	}
	// After compaction the context is the summary: its 5 output tokens, no last_message.
	u := c[4]["usage"].(map[string]any)
	if u["input_tokens"].(float64) != 5 || u["output_tokens"].(float64) != 0 || u["context_limit"].(float64) != 128000 || u["last_message"] != nil {
		t.Errorf("token_usage after compaction = %v", u)
	}

	reqs := f.requests()
	if len(reqs) != 4 {
		t.Fatalf("model requests = %d; want 4", len(reqs))
	}
	sum := promptOf(reqs[2])
	if _, ok := reqs[2]["tools"]; ok || !slices.Contains(sum, "user: first question") || !slices.Contains(sum, "assistant: first answer") ||
		!slices.Contains(sum, "user: second question") || !strings.Contains(sum[len(sum)-1], "Summarize the conversation above") {
		t.Errorf("summary request = %v", sum)
	}
	if got, want := promptOf(reqs[3]), []string{"system: Be brief.", "user: Session Summary: SUMMARY-1", "user: second question"}; !slices.Equal(got, want) {
		t.Errorf("retried turn = %q\nwant %q", got, want)
	}

	// The summary row is the reference's: only item_type and summary_text set.
	var agent, msg, sub any
	var implicit int
	var text string
	err := e.s.st.r.QueryRow(`SELECT agent_name, message_json, implicit, subsession_id, summary_text FROM session_items
		WHERE session_id = ? AND item_type = 'summary'`, id).Scan(&agent, &msg, &implicit, &sub, &text)
	if err != nil || agent != nil || msg != nil || implicit != 0 || sub != nil || text != "SUMMARY-1" {
		t.Errorf("summary row = %v %v %v %v %q, %v", agent, msg, implicit, sub, text, err)
	}

	e.restart()
	e.run(path, []map[string]any{{"content": "third question"}}).all()
	reqs = f.requests()
	want = []string{"system: Be brief.", "user: Session Summary: SUMMARY-1", "user: second question", "assistant: second answer", "user: third question"}
	if got := promptOf(reqs[len(reqs)-1]); !slices.Equal(got, want) {
		t.Errorf("turn after the compaction = %q\nwant %q", got, want)
	}

	// Clients see the whole conversation, the summary dropped as in the reference, and
	// the re-asked question marked implicit.
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	got := decode[sessionResponse](t, b)
	var texts []string
	for _, m := range got.Messages {
		texts = append(texts, m.Message.Content)
	}
	if !slices.Equal(texts, []string{"first question", "first answer", "second question", "second question", "second answer", "third question", "third answer"}) ||
		got.Messages[2].Implicit || !got.Messages[3].Implicit {
		t.Errorf("stored session = %s", b)
	}
}

// A model that overflows again after the compaction gets no second one: the run ends
// with an error. One whose summary request overflows too ends the same way.
func TestCompactionAtMostOncePerTurn(t *testing.T) {
	t.Run("retry overflows", func(t *testing.T) {
		e, f := newRunEnv(t, "", openAIOverflow, fakeTurn{Text: []string{"S"}})
		f.Default = &openAIOverflow
		id := e.newSession(map[string]any{"title": "t"})
		s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
		evs := s.all()
		want := []string{"agent_info", "team_info", "toolset_info", "user_message", "stream_started", "toolset_info",
			"warning", "session_compaction", "session_summary", "session_compaction", "token_usage",
			"toolset_info", "error", "stream_stopped"}
		if got := withoutTitle(s.types()); !slices.Equal(got, want) {
			t.Fatalf("events = %v\nwant %v", got, want)
		}
		if msg := evs[len(evs)-2]["error"].(string); !strings.Contains(msg, "still exceeds the model's context window after compaction") || !strings.Contains(msg, "maximum context length") {
			t.Errorf("error = %q", msg)
		}
		if n := len(f.requests()); n != 3 {
			t.Errorf("model requests = %d; want 3 (turn, summary, retry)", n)
		}
	})
	t.Run("summary overflows", func(t *testing.T) {
		e, f := newRunEnv(t, "")
		f.Default = &openAIOverflow
		id := e.newSession(map[string]any{"title": "t"})
		s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
		evs := s.all()
		want := []string{"agent_info", "team_info", "toolset_info", "user_message", "stream_started", "toolset_info",
			"warning", "session_compaction", "session_compaction", "error", "stream_stopped"}
		if got := withoutTitle(s.types()); !slices.Equal(got, want) {
			t.Fatalf("events = %v\nwant %v", got, want)
		}
		if msg := evs[len(evs)-2]["error"].(string); !strings.Contains(msg, "compacting it failed") {
			t.Errorf("error = %q", msg)
		}
		if n := len(f.requests()); n != 2 {
			t.Errorf("model requests = %d; want 2 (turn, summary)", n)
		}
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		if got := decode[sessionResponse](t, b); len(got.Messages) != 1 {
			t.Errorf("a failed compaction must store nothing: %s", b)
		}
	})
}

// A session the reference compacted (rows written with its SQL) is read as it reads it:
// the summary first, then only the items after it.
func TestCompactionReadsReferenceSummary(t *testing.T) {
	e, f := newRunEnv(t, "", fakeTurn{Text: []string{"new answer"}})
	id := e.newSession(map[string]any{"title": "t"})
	add := `INSERT INTO session_items (session_id, position, item_type, agent_name, message_json, implicit)
		VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM session_items WHERE session_id = ?), 'message', ?, ?, 0)`
	for _, r := range [][2]string{
		{"", `{"role":"user","content":"old question","created_at":"2026-03-10T11:02:03+01:00"}`},
		{"root", `{"role":"assistant","content":"old answer","created_at":"2026-03-10T11:02:04+01:00"}`},
	} {
		if _, err := e.s.st.exec(context.Background(), add, id, id, r[0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	// The reference's AddSummary, verbatim in effect.
	if _, err := e.s.st.exec(context.Background(), `INSERT INTO session_items (session_id, position, item_type, summary_text)
		VALUES (?, (SELECT COALESCE(MAX(position), -1) + 1 FROM session_items WHERE session_id = ?), 'summary', ?)`, id, id, "REF SUMMARY"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.st.exec(context.Background(), add, id, id, "", `{"role":"user","content":"Please continue.","created_at":"2026-03-10T11:05:00+01:00"}`); err != nil {
		t.Fatal(err)
	}
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "new question"}}).all()
	want := []string{"system: Be brief.", "user: Session Summary: REF SUMMARY", "user: Please continue.", "user: new question"}
	if got := promptOf(f.requests()[0]); !slices.Equal(got, want) {
		t.Errorf("prompt = %q\nwant %q", got, want)
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	got := decode[sessionResponse](t, b)
	if len(got.Messages) != 5 || got.Messages[0].Message.Content != "old question" || got.Messages[2].Message.Content != "Please continue." {
		t.Errorf("GET shows every message but the summary: %s", b)
	}
	_, b = e.do("GET", "/api/sessions", nil)
	if l := decode[[]sessionListItem](t, b); l[0].NumMessages != 5 {
		t.Errorf("num_messages = %d; want 5 (summary excluded)", l[0].NumMessages)
	}
}

// Past 90 % of the model's context window (gpt-4o: 128,000) the conversation is
// compacted before the next turn, without a warning; below it, it is not.
func TestCompactionProactive(t *testing.T) {
	e, f := newRunEnv(t, "",
		fakeTurn{Text: []string{"a1"}, PromptTokens: 115000}, // 115,005 of 128,000: under 90 %
		fakeTurn{Text: []string{"a2"}, PromptTokens: 116000}, // 116,005: over
		fakeTurn{Text: []string{"SUMMARY"}},
		fakeTurn{Text: []string{"a3"}})
	id := e.newSession(map[string]any{"title": "t"})
	path := "/api/sessions/" + id + "/agent/a"
	e.run(path, []map[string]any{{"content": "q1"}}).all()
	s := e.run(path, []map[string]any{{"content": "q2"}})
	s.all()
	if slices.Contains(s.types(), "session_compaction") {
		t.Fatalf("compacted under the threshold: %v", s.types())
	}
	s = e.run(path, []map[string]any{{"content": "q3"}})
	s.all()
	want := []string{"agent_info", "team_info", "toolset_info", "user_message", "stream_started", "toolset_info",
		"session_compaction", "session_summary", "session_compaction", "token_usage",
		"agent_choice", "message_added", "token_usage", "stream_stopped"}
	if got := withoutTitle(s.types()); !slices.Equal(got, want) {
		t.Fatalf("events = %v\nwant %v", got, want)
	}
	reqs := f.requests()
	if len(reqs) != 4 {
		t.Fatalf("model requests = %d; want 4", len(reqs))
	}
	if got, want := promptOf(reqs[3]), []string{"system: Be brief.", "user: Session Summary: SUMMARY", "user: q3"}; !slices.Equal(got, want) {
		t.Errorf("prompt after compaction = %q\nwant %q", got, want)
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	if got := decode[sessionResponse](t, b); got.InputTokens != 12 || got.OutputTokens != 5 {
		t.Errorf("stored counters = %d/%d; want the last answer's 12/5", got.InputTokens, got.OutputTokens)
	}
}

// The overflow errors of each provider, as their APIs word them, are recognised; other
// 400s are not.
func TestModelContextOverflow(t *testing.T) {
	for msg, want := range map[string]bool{
		`POST "x": 400 Bad Request: This model's maximum context length is 128000 tokens. However, your messages resulted in 131072 tokens. (invalid_request_error)`: true,
		`stream error: invalid_request_error: prompt is too long: 212345 tokens > 200000 maximum`:                                                                    true,
		`POST "x": 400 Bad Request: The input token count (1200000) exceeds the maximum number of tokens allowed (1048576). (INVALID_ARGUMENT)`:                      true,
		`stream error: context_length_exceeded: Your input exceeds the context window of this model. Please adjust your input and try again.`:                        true,
		`POST "x": 400 Bad Request: Invalid value for 'temperature' (invalid_request_error)`:                                                                         false,
		`POST "x": 429 Too Many Requests: Rate limit reached for gpt-4o on tokens per min (TPM)`:                                                                     false,
	} {
		if got := modelContextOverflow(errors.New(msg)); got != want {
			t.Errorf("modelContextOverflow(%q) = %v; want %v", msg, got, want)
		}
	}
}

// Tool results count too: a file read that pushes the estimate past 90 % compacts the
// conversation before the model sees the result, within the same run.
func TestCompactionAfterToolResults(t *testing.T) {
	e, f := newRunEnv(t, "    toolsets:\n      - type: filesystem\n",
		fakeTurn{ToolCalls: []fakeToolCall{{"call_1", "read_file", `{"path":"big.txt"}`}}, PromptTokens: 110000}, // + 7,500 estimated for the result (cut at 30,000 characters)
		fakeTurn{Text: []string{"SUMMARY"}},
		fakeTurn{Text: []string{"done"}})
	os.WriteFile(filepath.Join(e.root, "big.txt"), []byte(strings.Repeat("word ", 12000)), 0o644) // cut to 30,000 characters: ~7,500 tokens
	id := e.newSession(map[string]any{"title": "t", "tools_approved": true})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "read big.txt"}})
	s.all()
	types := s.types()
	i := slices.Index(types, "tool_call_response")
	if i < 0 || !slices.Equal(types[i+1:], []string{"message_added",
		"session_compaction", "session_summary", "session_compaction", "token_usage",
		"mcp_init_started", "mcp_init_finished", "toolset_info", "agent_choice", "message_added", "token_usage", "stream_stopped"}) {
		t.Fatalf("events = %v", types)
	}
	reqs := f.requests()
	if sum := promptOf(reqs[1]); !slices.ContainsFunc(sum, func(m string) bool { return strings.HasPrefix(m, "tool: word word") }) {
		t.Errorf("the summary request must hold the tool result: %.300q", sum)
	}
	if got := promptOf(reqs[2]); len(got) < 2 || got[len(got)-2] != "user: Session Summary: SUMMARY" || got[len(got)-1] != "user: read big.txt" {
		t.Errorf("prompt after compaction = %.300q", got)
	}
}
