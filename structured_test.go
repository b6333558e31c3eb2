package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

// structuredYAML is an agent with a structured_output on a model of provider at base.
func structuredYAML(provider, base, opts string) string {
	return fmt.Sprintf(`models:
  m:
    provider: %s
    model: gpt-4o
    base_url: %s
%sagents:
  root:
    model: m
    structured_output:
      name: weather
      description: A city's weather
      strict: true
      schema:
        type: object
        properties:
          city:
            type: string
        required: [city]
        additionalProperties: false
`, provider, base, opts)
}

// chatAnswer answers a chat completions request with one streamed text chunk.
func chatAnswer(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":"{\"city\":\"Paris\"}"},"finish_reason":"stop"}]}`+"\n\ndata: [DONE]\n\n")
}

// TestStructuredOutputSentNatively: a run of an agent with structured_output sends its
// schema in each provider's native response format; the title request does not.
func TestStructuredOutputSentNatively(t *testing.T) {
	schema := map[string]any{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}},
		"required": []any{"city"}, "additionalProperties": false}
	named := map[string]any{"type": "json_schema", "name": "weather", "description": "A city's weather", "schema": schema, "strict": true}
	cases := []struct {
		name, provider, path, opts string
		reply                      provReply
		// format returns where the provider carries the response format in body.
		format func(body map[string]any) any
		want   any
	}{
		{"chat", "openai", "/v1", "", provReply{Func: chatAnswer},
			func(b map[string]any) any { return b["response_format"] },
			map[string]any{"type": "json_schema", "json_schema": map[string]any{
				"name": "weather", "description": "A city's weather", "schema": schema, "strict": true}}},
		{"responses", "openai", "/v1", "    provider_opts:\n      api_type: openai_responses\n", provReply{File: "responses_text.sse"},
			func(b map[string]any) any { return b["text"] },
			map[string]any{"format": named}},
		{"anthropic", "anthropic", "", "", provReply{File: "anthropic_text.sse"},
			func(b map[string]any) any { return b["output_format"] },
			map[string]any{"type": "json_schema", "schema": schema}},
		{"gemini", "google", "", "", provReply{File: "gemini_text.sse"},
			func(b map[string]any) any {
				gc, _ := b["generationConfig"].(map[string]any)
				return map[string]any{"mime": gc["responseMimeType"], "schema": gc["responseJsonSchema"]}
			},
			map[string]any{"mime": "application/json", "schema": schema}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// The title request runs beside the turn, so both get the same reply.
			s := newProvServer(t, c.reply, c.reply)
			e := newTestEnv(t, map[string]string{"a.yaml": structuredYAML(c.provider, s.URL+c.path, c.opts)})
			for _, k := range []string{"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY"} {
				e.setenv(k, "k")
			}
			evs := e.run("/api/sessions/"+e.newSession(nil)+"/agent/a", []map[string]any{{"content": "Weather in Paris?"}}).all()
			if types := typesOf(evs); slices.Contains(types, "error") || !slices.Contains(types, "session_title") {
				t.Fatalf("events %v: want a titled run without error", types)
			}
			var turn, title *provRequest
			for _, r := range s.requests() {
				b, _ := json.Marshal(r.Body)
				if strings.Contains(string(b), "generates concise, descriptive titles") {
					title = &r
				} else {
					turn = &r
				}
			}
			if turn == nil || title == nil {
				t.Fatalf("requests %v: want a turn and a title", s.requests())
			}
			provCheckJSON(t, "turn response format", c.format(turn.Body), c.want)
			none := provJSON(t, c.format(map[string]any{}))
			provCheckJSON(t, "title response format", c.format(title.Body), none)
			if c.provider == "anthropic" {
				if beta := turn.Header.Get("Anthropic-Beta"); turn.RawQuery != "beta=true" || !strings.Contains(beta, anthropicBetaStructured) {
					t.Errorf("turn sent to ?%s with anthropic-beta %q, want the Beta API with %s", turn.RawQuery, beta, anthropicBetaStructured)
				}
				if beta := title.Header.Get("Anthropic-Beta"); strings.Contains(beta, anthropicBetaStructured) {
					t.Errorf("title request has anthropic-beta %q", beta)
				}
			}
		})
	}
}

// TestStructuredOutputNotOnSummary: the compaction summary request asks for prose, so it
// carries no response format; the retried turn does.
func TestStructuredOutputNotOnSummary(t *testing.T) {
	e, f := newRunEnv(t, "    structured_output:\n      name: weather\n      schema:\n        type: object\n",
		openAIOverflow, fakeTurn{Text: []string{"SUMMARY-1"}}, fakeTurn{Text: []string{`{}`}})
	e.run("/api/sessions/"+e.newSession(map[string]any{"title": "t"})+"/agent/a", []map[string]any{{"content": "q"}}).all()
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("model requests = %d; want the turn, the summary and the retried turn", len(reqs))
	}
	want := map[string]any{"type": "json_schema", "json_schema": map[string]any{"name": "weather", "schema": map[string]any{"type": "object"}, "strict": false}}
	provCheckJSON(t, "turn response format", reqs[0]["response_format"], want)
	provCheckJSON(t, "summary response format", reqs[1]["response_format"], nil)
	provCheckJSON(t, "retried turn response format", reqs[2]["response_format"], want)
}
