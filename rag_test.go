package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
)

// ragNotes is a folder of notes: only recipes/jam.md holds "quokka" and "marmalade".
var ragNotes = map[string]string{
	"groceries.md":      "Buy milk, eggs, bread and coffee for the week. Remember the coffee filters and the bread.",
	"meeting.md":        "Meeting notes: discuss the quarterly budget and the hiring plan. Coffee was served at ten.",
	"travel/lisbon.md":  "Trip to Lisbon: ride tram line 28, eat pastel de nata, keep a budget for the hotel.",
	"recipes/jam.md":    "Grandmother's quokka marmalade: simmer bitter oranges with the zest for two hours, then jar the marmalade.",
	"ideas.txt":         "Ideas: a small server written in Go that serves agents over HTTP with server-sent events.",
	"recipes/bread.txt": "Bread: flour, water, salt and yeast. Knead, rest overnight, bake in a hot oven.",
}

// writeFiles writes name → content under dir, creating folders.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ragModel is a fake chat model that, in every run, calls tool with query and then
// answers "done" once the tool result is in the conversation. toolCalls counts the
// tool calls it has asked for.
type ragModel struct {
	*fakeOpenAI
	toolCalls atomic.Int32
}

func newRAGModel(t *testing.T, tool, query string) *ragModel {
	t.Helper()
	m := &ragModel{fakeOpenAI: &fakeOpenAI{}}
	args, _ := json.Marshal(map[string]string{"query": query})
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		json.NewDecoder(r.Body).Decode(&req)
		msgs, _ := req["messages"].([]any)
		last, _ := msgs[len(msgs)-1].(map[string]any)
		switch {
		case isTitleRequest(req):
			m.writeTurn(w, fakeTurn{Text: []string{"Title"}})
		case last["role"] == "tool":
			m.writeTurn(w, fakeTurn{Text: []string{"done"}})
		default:
			m.mu.Lock()
			m.Requests = append(m.Requests, req)
			m.mu.Unlock()
			m.toolCalls.Add(1)
			m.writeTurn(w, fakeTurn{ToolCalls: []fakeToolCall{{ID: "c1", Name: tool, Args: string(args)}}})
		}
	}))
	t.Cleanup(m.Close)
	return m
}

// ragEnv starts a server whose agent "a" (root) lists the rag sources in extra; the
// notes live in <working dir>/notes, which the config reaches as ../work/notes.
func ragEnv(t *testing.T, m *ragModel, extra string) *apiTest {
	t.Helper()
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(m.URL, extra)})
	e.setenv("OPENAI_API_KEY", "test-key")
	writeFiles(t, filepath.Join(e.root, "notes"), ragNotes)
	return e
}

const ragBM25YAML = `    rag: [notes]
rag:
  notes:
    docs: [../work/notes]
    strategies:
      - type: bm25
        database: ../work/index/notes.db
        limit: 10
`

// ragRun runs agent a in a new session and returns its events.
func ragRun(e *apiTest) []map[string]any {
	id := e.newSession(nil)
	return e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "search"}}).all()
}

// ragHits decodes the run's single rag tool result.
func ragHits(t *testing.T, evs []map[string]any) []ragHit {
	t.Helper()
	res := toolResponses(evs)
	if len(res) != 1 {
		t.Fatalf("tool responses = %q; want one", res)
	}
	var hits []ragHit
	if err := json.Unmarshal([]byte(res[0]), &hits); err != nil {
		t.Fatalf("tool result %q: %v", res[0], err)
	}
	return hits
}

// ragEvents returns the run's rag_indexing_* events, in order.
func ragEvents(evs []map[string]any) []map[string]any {
	var out []map[string]any
	for _, ev := range evs {
		if strings.HasPrefix(ev["type"].(string), "rag_indexing_") {
			out = append(out, ev)
		}
	}
	return out
}

func TestRAGBM25SearchOverHTTP(t *testing.T) {
	m := newRAGModel(t, "notes", "quokka marmalade")
	e := ragEnv(t, m, ragBM25YAML)
	evs := ragRun(e)

	// The events: started, one progress per file, completed — all before the tool
	// result, because the query waits for the indexing pass.
	rag := ragEvents(evs)
	if len(rag) != len(ragNotes)+2 {
		t.Fatalf("rag events = %v", rag)
	}
	for i, ev := range rag {
		want := "rag_indexing_progress"
		switch i {
		case 0:
			want = "rag_indexing_started"
		case len(rag) - 1:
			want = "rag_indexing_completed"
		}
		if ev["type"] != want || ev["rag_name"] != "notes" || ev["strategy_name"] != "bm25" || ev["agent_name"] != "root" {
			t.Fatalf("rag event %d = %v; want %s for notes/bm25", i, ev, want)
		}
		if want == "rag_indexing_progress" && (ev["current"] != float64(i) || ev["total"] != float64(len(ragNotes))) {
			t.Fatalf("progress %d = %v", i, ev)
		}
	}
	if types := withoutTitle(typesOf(evs)); slices.Index(types, "rag_indexing_completed") > slices.Index(types, "tool_call_response") {
		t.Fatalf("indexing completed after the tool answered: %v", types)
	}

	jam := filepath.Join(e.root, "notes", "recipes", "jam.md")
	hits := ragHits(t, evs)
	if len(hits) != 1 || hits[0].SourcePath != jam || !strings.Contains(hits[0].Content, "quokka marmalade") || hits[0].Similarity <= 0 {
		t.Fatalf("hits = %+v; want only %s", hits, jam)
	}

	// The tool is offered to the model as the reference declares it.
	tools, _ := m.requests()[0]["tools"].([]any)
	if len(tools) != 1 {
		t.Fatalf("tools = %v", tools)
	}
	fn := tools[0].(map[string]any)["function"].(map[string]any)
	if fn["name"] != "notes" || !strings.HasPrefix(fn["description"].(string), "Search project documents from notes") {
		t.Fatalf("tool = %v", fn)
	}
}

func typesOf(evs []map[string]any) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev["type"].(string))
	}
	return out
}

// TestRAGReindexesChangedFilesOnly: a second run with nothing changed indexes nothing;
// an edit re-indexes that file alone; a deleted file leaves the results; ranking follows
// BM25 (the document with both rare words before the one with one).
func TestRAGReindexesChangedFilesOnly(t *testing.T) {
	m := newRAGModel(t, "notes", "quokka marmalade")
	e := ragEnv(t, m, ragBM25YAML)
	ragRun(e)
	// Files written just now are re-hashed (their mtime may still change within the
	// tick) but not re-indexed: same content, no events.
	if rag := ragEvents(ragRun(e)); len(rag) != 0 {
		t.Fatalf("nothing changed, yet %v", rag)
	}
	notes := filepath.Join(e.root, "notes")
	writeFiles(t, notes, map[string]string{"meeting.md": ragNotes["meeting.md"] + " Someone brought a quokka."})
	os.Remove(filepath.Join(notes, "recipes", "jam.md"))
	writeFiles(t, notes, map[string]string{"recipes/jam2.md": ragNotes["recipes/jam.md"]})
	evs := ragRun(e)
	rag := ragEvents(evs)
	if len(rag) != 4 || rag[1]["total"] != float64(2) {
		t.Fatalf("rag events after editing one file and adding one = %v", rag)
	}
	hits := ragHits(t, evs)
	var paths []string
	for _, h := range hits {
		paths = append(paths, strings.TrimPrefix(h.SourcePath, notes+string(filepath.Separator)))
	}
	if !slices.Equal(paths, []string{"recipes/jam2.md", "meeting.md"}) || hits[0].Similarity < hits[1].Similarity {
		t.Fatalf("hits = %v (%+v); want jam2 (both words) then meeting (one), deleted jam gone", paths, hits)
	}
}

// TestRAGRanking checks BM25 through the index directly: term frequency, rarity and
// the configured k1/b decide the order; ties fall back to the path.
func TestRAGRanking(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, filepath.Join(root, "docs"), map[string]string{
		"a.md": "zebra zebra zebra zebra grass",
		"b.md": "zebra grass water",
		"c.md": "lion grass water",
		"d.md": "lion hunts the zebra near the water",
	})
	f := cfgLoad(t, "agents:\n  root:\n    model: openai/gpt-4o\n    rag: [docs]\nrag:\n  docs:\n    docs: [docs]\n    strategies:\n      - type: bm25\n        database: idx.db\n        limit: 10\n")
	set := newRAGSet(f, toolsetOptions{WorkingDir: root})
	defer set.close()
	src := set.sources["docs"]
	hits, err := src.search(context.Background(), "zebra lion")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hits {
		got = append(got, filepath.Base(h.SourcePath))
	}
	// d has both words. lion (2 of 4 documents) is rarer than zebra (3 of 4), so c's one
	// lion outranks a's four zebras, whose weight saturates (k1); b has one zebra.
	if !slices.Equal(got, []string{"d.md", "c.md", "a.md", "b.md"}) {
		t.Fatalf("order = %v (%+v)", got, hits)
	}
	// By hand, with k1 = 1.5, b = 0.75, 4 chunks of 4 words on average: a scores
	// ln(1.5/3.5+1) · 4·2.5/(4+1.5·(0.25+0.75·5/4)) = 0.6170; similarity is per word.
	if a := hits[2]; math.Abs(a.Similarity-0.6170/2) > 1e-4 {
		t.Fatalf("a.md similarity = %v; want %v", a.Similarity, 0.6170/2)
	}
	if _, err := src.search(context.Background(), "the a"); err == nil || !strings.Contains(err.Error(), "no searchable words") {
		t.Fatalf("stopword-only query: %v", err)
	}
}

func TestRAGChunks(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var words []string
	for range 400 {
		w := make([]rune, 1+r.IntN(12))
		for i := range w {
			w[i] = rune('a' + r.IntN(26))
		}
		words = append(words, string(w))
	}
	text := strings.Join(words, " ")
	for _, c := range []ragChunking{{100, 20, true}, {100, 20, false}, {37, 10, true}, {1500, 75, true}} {
		chunks := ragChunks(text, c)
		for i, ch := range chunks {
			if n := len([]rune(ch)); n > c.size || n == 0 {
				t.Fatalf("%+v: chunk %d has %d characters", c, i, n)
			}
			if !strings.Contains(text, ch) {
				t.Fatalf("%+v: chunk %d is not a slice of the text", c, i)
			}
			if c.words {
				at := strings.Index(text, ch)
				if at > 0 && !unicode.IsSpace(rune(text[at-1])) || at+len(ch) < len(text) && !unicode.IsSpace(rune(text[at+len(ch)])) {
					t.Fatalf("%+v: chunk %d cuts a word: %q", c, i, ch)
				}
			}
		}
		// Every word is in some chunk, in order, and consecutive chunks overlap.
		joined := strings.Join(chunks, " ")
		for _, w := range words {
			if !strings.Contains(joined, w) {
				t.Fatalf("%+v: word %q lost", c, w)
			}
		}
		if c.size < len(text) && len(chunks) < 2 {
			t.Fatalf("%+v: %d chunks", c, len(chunks))
		}
	}
	if got := ragChunks("  \n ", ragChunking{10, 2, true}); len(got) != 0 {
		t.Fatalf("blank text = %q", got)
	}
}

func TestRAGToolCount(t *testing.T) {
	m := newRAGModel(t, "notes", "x")
	emb := newFakeEmbeddings(t, nil)
	e := ragEnv(t, m, `    toolsets:
      - type: think
    sub_agents: [helper]
    rag: [notes, kb, ghost, notes_again]
  helper:
    model: fake
    rag: [kb]
rag:
  notes:
    docs: [../work/notes]
    strategies:
      - type: bm25
        database: ../work/index/a.db
  kb:
    tool:
      name: search_kb
      description: Company handbook
      instruction: Look things up in the handbook first.
    docs: [../work/notes]
    strategies:
      - type: chunked-embeddings
        embedding_model: openai/text-embedding-3-small
        vector_dimensions: 8
        database: ../work/index/b.db
  notes_again:
    tool: {name: notes}
    docs: [../work/notes]
    strategies:
      - type: bm25
        database: ../work/index/c.db
`)
	e.setenv("OPENAI_BASE_URL", emb.URL+"/v1") // where openai/text-embedding-3-small is served
	// root: think, transfer_task, notes, search_kb (ghost is unknown and skipped, a
	// second tool named notes loses to the first); helper: search_kb.
	for agent, want := range map[string]int{"root": 4, "helper": 1} {
		code, b := e.do("GET", "/api/agents/a/"+agent+"/tools/count", nil)
		if code != 200 || string(b) != fmt.Sprintf(`{"available_tools":%d}`, want)+"\n" {
			t.Fatalf("tools/count %s = %d %s; want %d", agent, code, b, want)
		}
	}
	if _, err := os.Stat(filepath.Join(e.root, "index")); !os.IsNotExist(err) {
		t.Fatalf("counting tools opened the rag databases: %v", err)
	}
	// A run sees them in the reference's order, the configured description, and the
	// source's instruction in the system prompt, and a warning for the unknown source.
	evs := ragRun(e)
	req := m.requests()[0]
	var names []string
	for _, tl := range req["tools"].([]any) {
		fn := tl.(map[string]any)["function"].(map[string]any)
		names = append(names, fn["name"].(string))
		if fn["name"] == "search_kb" && fn["description"] != "Company handbook" {
			t.Errorf("search_kb description = %v", fn["description"])
		}
	}
	if !slices.Equal(names, []string{"think", "transfer_task", "notes", "search_kb"}) {
		t.Fatalf("tools = %v", names)
	}
	if b, _ := json.Marshal(req["messages"]); !strings.Contains(string(b), "Look things up in the handbook first.") {
		t.Fatalf("system prompt lacks the rag instruction: %s", b)
	}
	if w := warningsOf(evs); !slices.Contains(w, "rag ghost: no such source in the config's rag section; skipped") {
		t.Fatalf("warnings = %q", w)
	}
}

func warningsOf(evs []map[string]any) []string {
	var out []string
	for _, ev := range evs {
		if ev["type"] == "warning" {
			out = append(out, ev["message"].(string))
		}
	}
	return out
}

// fakeEmbeddings is an OpenAI-compatible /v1/embeddings endpoint. A text's vector
// counts the words of each topic (so synonyms land together); gate, when set, holds
// every answer until it is closed.
type fakeEmbeddings struct {
	*httptest.Server
	gate     chan struct{}
	fail     atomic.Bool // answer 500 Overloaded
	requests atomic.Int32
	inputs   atomic.Int32
}

var fakeTopics = [][]string{
	{"cat", "cats", "kitten", "feline", "yarn"},
	{"dog", "puppy", "canine"},
	{"rocket", "launch", "orbit", "satellite"},
	{"bread", "oven", "baking", "flour"},
	{"quokka", "marmalade"},
}

func newFakeEmbeddings(t *testing.T, gate chan struct{}) *fakeEmbeddings {
	t.Helper()
	f := &fakeEmbeddings{gate: gate}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Model string   `json:"model"`
			Input []string `json:"input"`
		}
		err := json.NewDecoder(r.Body).Decode(&req)
		if r.Method != "POST" || r.URL.Path != "/v1/embeddings" || err != nil || req.Model != "text-embedding-3-small" ||
			len(req.Input) == 0 || r.Header.Get("Authorization") != "Bearer test-key" {
			http.Error(w, `{"error":{"message":"bad request"}}`, 400)
			return
		}
		if f.fail.Load() {
			http.Error(w, `{"error":{"message":"overloaded"}}`, 500)
			return
		}
		if f.gate != nil {
			select {
			case <-f.gate:
			case <-r.Context().Done():
				return
			}
		}
		f.requests.Add(1)
		f.inputs.Add(int32(len(req.Input)))
		type item struct {
			Object    string    `json:"object"`
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		var data []item
		for i, text := range req.Input {
			v := make([]float32, 8)
			for _, word := range strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) }) {
				for d, topic := range fakeTopics {
					if slices.Contains(topic, word) {
						v[d]++
					}
				}
			}
			data = append(data, item{"embedding", i, v})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data, "model": req.Model,
			"usage": map[string]int{"prompt_tokens": 3, "total_tokens": 3}})
	}))
	t.Cleanup(f.Close)
	return f
}

var ragPetsDocs = map[string]string{
	"pets.md":    "My kitten sleeps all day and chases a ball of yarn.",
	"space.md":   "The rocket launch put a satellite into orbit.",
	"kitchen.md": "Baking bread in a hot oven fills the house.",
}

// ragEmbedEnv is a server whose source kb (docs in <working dir>/kb) uses strategies.
func ragEmbedEnv(t *testing.T, m *ragModel, emb *fakeEmbeddings, strategies, results string) *apiTest {
	t.Helper()
	yaml := fmt.Sprintf(`models:
  fake:
    provider: openai
    model: gpt-4o
    base_url: %s/v1
  embed:
    provider: openai
    model: text-embedding-3-small
    base_url: %s/v1
agents:
  root:
    model: fake
    rag: [kb]
rag:
  kb:
    docs: [../work/kb]
    strategies:
%s%s`, m.URL, emb.URL, strategies, results)
	e := newTestEnv(t, map[string]string{"a.yaml": yaml})
	e.setenv("OPENAI_API_KEY", "test-key")
	writeFiles(t, filepath.Join(e.root, "kb"), ragPetsDocs)
	return e
}

const ragEmbedStrategy = `      - type: chunked-embeddings
        embedding_model: embed
        vector_dimensions: 8
        database: ../work/index/emb.db
`

func ragPaths(hits []ragHit) []string {
	var out []string
	for _, h := range hits {
		out = append(out, filepath.Base(h.SourcePath))
	}
	return out
}

func TestRAGChunkedEmbeddingsOverHTTP(t *testing.T) {
	m := newRAGModel(t, "kb", "feline companions")
	emb := newFakeEmbeddings(t, nil)
	e := ragEmbedEnv(t, m, emb, ragEmbedStrategy, "")
	evs := ragRun(e)
	rag := ragEvents(evs)
	if len(rag) != 5 || rag[0]["strategy_name"] != "chunked-embeddings" || rag[4]["type"] != "rag_indexing_completed" {
		t.Fatalf("rag events = %v", rag)
	}
	// Embedding tokens are reported as the reference does: session_id "", cumulative.
	var usage map[string]any
	for _, ev := range evs {
		if ev["type"] == "token_usage" && ev["session_id"] == "" {
			usage = ev["usage"].(map[string]any)
		}
	}
	if usage == nil || usage["input_tokens"] != float64(9) || usage["output_tokens"] != float64(0) {
		t.Fatalf("rag token usage = %v; want 9 input tokens (3 per document)", usage)
	}
	// Found by meaning: no document says "feline".
	hits := ragHits(t, evs)
	if got := ragPaths(hits); !slices.Equal(got, []string{"pets.md"}) || hits[0].Similarity < 0.99 {
		t.Fatalf("hits = %+v", hits)
	}
	// One request per document, one for the query.
	if n := emb.requests.Load(); n != 4 {
		t.Fatalf("embedding requests = %d; want 4", n)
	}
	// Nothing changed: only the query is embedded again.
	ragRun(e)
	if n := emb.requests.Load(); n != 5 {
		t.Fatalf("embedding requests after a second run = %d; want 5", n)
	}
}

// TestRAGEmbeddingsFailure: documents that could not be embedded are reported once,
// as the reference's RAG error event, and retried by the next run.
func TestRAGEmbeddingsFailure(t *testing.T) {
	m := newRAGModel(t, "kb", "feline")
	emb := newFakeEmbeddings(t, nil)
	emb.fail.Store(true)
	e := ragEmbedEnv(t, m, emb, ragEmbedStrategy, "")
	evs := ragRun(e)
	var errs []string
	for _, ev := range evs {
		if ev["type"] == "error" {
			errs = append(errs, ev["error"].(string))
		}
	}
	if len(errs) != 1 || !strings.HasPrefix(errs[0], "RAG kb error: chunked-embeddings: 3 of 3 documents not indexed: embeddings: POST") || !strings.Contains(errs[0], "overloaded") {
		t.Fatalf("error events = %q", errs)
	}
	if res := toolResponses(evs); len(res) != 1 || !strings.HasPrefix(res[0], "RAG query failed: embeddings:") {
		t.Fatalf("tool result = %q", res)
	}
	emb.fail.Store(false)
	evs = ragRun(e)
	if rag := ragEvents(evs); len(rag) != 5 || rag[1]["total"] != float64(3) {
		t.Fatalf("retry events = %v", rag)
	}
	if got := ragPaths(ragHits(t, evs)); !slices.Equal(got, []string{"pets.md"}) {
		t.Fatalf("hits after the retry = %v", got)
	}
}

func TestRAGHybridRRFOverHTTP(t *testing.T) {
	m := newRAGModel(t, "kb", "feline rocket")
	emb := newFakeEmbeddings(t, nil)
	e := ragEmbedEnv(t, m, emb, ragEmbedStrategy+`      - type: bm25
        database: ../work/index/bm25.db
`, `    results:
      fusion: {strategy: rrf, k: 60}
      limit: 5
`)
	evs := ragRun(e)
	var strategies []string
	for _, ev := range ragEvents(evs) {
		if ev["type"] == "rag_indexing_completed" {
			strategies = append(strategies, ev["strategy_name"].(string))
		}
	}
	if !slices.Equal(strategies, []string{"chunked-embeddings", "bm25"}) {
		t.Fatalf("completed strategies = %v", strategies)
	}
	// Embeddings rank pets and space equally (tie → path order: pets, space); bm25
	// finds "rocket" in space only. RRF: space 1/62+1/61, pets 1/61.
	hits := ragHits(t, evs)
	if got := ragPaths(hits); !slices.Equal(got, []string{"space.md", "pets.md"}) {
		t.Fatalf("fused order = %v (%+v)", got, hits)
	}
	if want := 1.0/62 + 1.0/61; hits[0].Similarity < want-1e-9 || hits[0].Similarity > want+1e-9 {
		t.Fatalf("space RRF score = %v; want %v", hits[0].Similarity, want)
	}
}

// TestRAGConcurrentFirstQueries: runs that query while the first indexing pass is
// still embedding wait for it and all get the ranked answer; the run that started the
// pass leaves early, and the events meant for its closed stream are dropped safely.
// Run with -race.
func TestRAGConcurrentFirstQueries(t *testing.T) {
	const runs = 4
	m := newRAGModel(t, "kb", "quokka marmalade")
	gate := make(chan struct{})
	emb := newFakeEmbeddings(t, gate)
	e := ragEmbedEnv(t, m, emb, `      - type: bm25
        database: ../work/index/bm25.db
`+ragEmbedStrategy, "")
	filler := map[string]string{}
	for i := range 40 {
		filler[fmt.Sprintf("note%02d.md", i)] = fmt.Sprintf("Note %d about the kitchen and the garden.", i)
	}
	filler["jam.md"] = ragNotes["recipes/jam.md"]
	writeFiles(t, filepath.Join(e.root, "kb"), filler)

	// The first run starts the pass and calls the tool, which waits; then its client
	// goes away while the pass waits on the embeddings.
	first := e.run("/api/sessions/"+e.newSession(nil)+"/agent/a", []map[string]any{{"content": "go"}})
	for started, called := false, false; !started || !called; {
		ev := first.next()
		if ev == nil {
			t.Fatalf("stream ended: %v", first.types())
		}
		started = started || ev["type"] == "rag_indexing_started" && ev["strategy_name"] == "chunked-embeddings"
		called = called || ev["type"] == "tool_call"
	}
	first.cancel()

	results := make([][]ragHit, runs)
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() {
			evs := ragRun(e)
			res := toolResponses(evs)
			if len(res) == 1 {
				json.Unmarshal([]byte(res[0]), &results[i])
			}
		})
	}
	waitFor(t, "every run to call the tool", func() bool { return m.toolCalls.Load() >= runs+1 })
	time.Sleep(50 * time.Millisecond) // let the tool calls reach the wait
	close(gate)
	wg.Wait()
	// jam.md is first for both strategies: 1/61 each. A query that had not waited would
	// see no vectors yet and give 1/61 alone.
	for i, hits := range results {
		if len(hits) == 0 || filepath.Base(hits[0].SourcePath) != "jam.md" || math.Abs(hits[0].Similarity-2.0/61) > 1e-9 {
			t.Fatalf("run %d: hits = %+v", i, hits)
		}
	}
}

// TestRAGConfinedToWorkingDir: documents and databases outside --working-dir are
// refused, and a symlink out of a notes folder is not followed.
func TestRAGConfinedToWorkingDir(t *testing.T) {
	outside := t.TempDir()
	writeFiles(t, outside, map[string]string{"secret.md": "the vault code is xylophone"})
	m := newRAGModel(t, "notes", "xylophone vault")
	e := ragEnv(t, m, `    rag: [notes, leaky]
rag:
  notes:
    docs: [../work/notes, `+outside+`, ../../..]
    strategies:
      - type: bm25
        database: ../work/index/notes.db
  leaky:
    docs: [../work/notes]
    strategies:
      - type: bm25
        database: `+filepath.Join(outside, "x.db")+`
`)
	if err := os.Symlink(filepath.Join(outside, "secret.md"), filepath.Join(e.root, "notes", "link.md")); err != nil {
		t.Fatal(err)
	}
	// leaky keeps its tool (the reference counts it) but cannot search.
	if code, b := e.do("GET", "/api/agents/a/root/tools/count", nil); code != 200 || string(b) != `{"available_tools":2}`+"\n" {
		t.Fatalf("tools/count = %d %s", code, b)
	}
	evs := ragRun(e)
	if hits := ragHits(t, evs); len(hits) != 0 {
		t.Fatalf("hits = %+v; the secret is outside the working dir", hits)
	}
	w := strings.Join(warningsOf(evs), "\n")
	for _, want := range []string{
		fmt.Sprintf("rag notes: document path %q is outside the working directory; skipped", outside),
		`rag notes: document path "../../.." is outside the working directory; skipped`,
		fmt.Sprintf("rag leaky: strategy bm25: database %q is outside the working directory", filepath.Join(outside, "x.db")),
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warnings lack %q:\n%s", want, w)
		}
	}
	if !slices.ContainsFunc(evs, func(ev map[string]any) bool {
		return ev["type"] == "error" && strings.HasPrefix(ev["error"].(string), "RAG leaky error: database")
	}) {
		t.Errorf("no error event for leaky's database: %v", typesOf(evs))
	}
	if _, err := os.Stat(filepath.Join(outside, "x.db")); !os.IsNotExist(err) {
		t.Fatalf("a database was created outside the working dir")
	}
}

// TestRAGWarnsWhatItDoesNotDo: tree-sitter chunking, reranking and unknown keys are
// reported at load (a log line) and at run start (a warning event); the source works.
func TestRAGWarnsWhatItDoesNotDo(t *testing.T) {
	m := newRAGModel(t, "notes", "quokka")
	e := ragEnv(t, m, `    rag: [notes]
rag:
  notes:
    docs: [../work/notes]
    strategies:
      - type: bm25
        database: ../work/index/notes.db
        frobnicate: 3
        chunking: {size: 500, code_aware: true}
    results:
      reranking: {model: openai/gpt-4o}
`)
	want := []string{
		`rag notes: strategy bm25: key "frobnicate" is not used`,
		"rag notes: strategy bm25: code_aware chunking (tree-sitter) is not supported; files are chunked as plain text",
		"rag notes: results.reranking is not supported; results keep their retrieval order",
	}
	evs := ragRun(e)
	got := warningsOf(evs)
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("warning events lack %q: %q", w, got)
		}
	}
	if hits := ragHits(t, evs); len(hits) != 1 {
		t.Fatalf("hits = %+v", hits)
	}
	b, _ := os.ReadFile(filepath.Join(e.dir, "a.yaml"))
	f, err := loadAgentFile("a.yaml", b)
	if err != nil {
		t.Fatal(err)
	}
	h := &mcpTestLog{}
	newRAGSet(f, toolsetOptions{WorkingDir: e.root, ConfigPath: filepath.Join(e.dir, "a.yaml"), Logger: slog.New(h)})
	for _, w := range want {
		if !h.contains(w) {
			t.Errorf("load log lacks %q", w)
		}
	}
}

// BenchmarkRAGIndex indexes 1,000 small notes with bm25 from scratch and reports the
// database size.
func BenchmarkRAGIndex(b *testing.B) {
	root := b.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	files := map[string]string{}
	for i := range 1000 {
		var words []string
		for range 40 + r.IntN(40) {
			words = append(words, fmt.Sprintf("w%d", r.IntN(5000)))
		}
		files[fmt.Sprintf("n%03d/note%d.md", i%50, i)] = strings.Join(words, " ")
	}
	writeFiles(b, filepath.Join(root, "notes"), files)
	var size int64
	for i := 0; b.Loop(); i++ {
		db := fmt.Sprintf("idx%d.db", i)
		f, err := loadAgentFile("a.yaml", []byte("agents:\n  root:\n    model: openai/gpt-4o\nrag:\n  notes:\n    docs: [notes]\n    strategies:\n      - type: bm25\n        database: "+db+"\n"))
		if err != nil {
			b.Fatal(err)
		}
		set := newRAGSet(f, toolsetOptions{WorkingDir: root})
		if err := set.sources["notes"].ready(context.Background()); err != nil {
			b.Fatal(err)
		}
		set.close()
		st, err := os.Stat(filepath.Join(root, db))
		if err != nil {
			b.Fatal(err)
		}
		size = st.Size()
	}
	b.ReportMetric(float64(size), "db-bytes")
}

// TestRAGFusionAndResults checks weighted and max fusion, and that full-content
// results collapse a document's chunks into one hit.
func TestRAGFusionAndResults(t *testing.T) {
	s := &ragSource{fusion: "weighted", weights: map[string]float64{"bm25": 0.25, "chunked-embeddings": 1},
		strats: []*ragStrategy{{kind: "bm25"}, {kind: "chunked-embeddings"}}}
	lists := [][]ragHit{
		{{SourcePath: "a", Similarity: 1}, {SourcePath: "b", Similarity: 0.8}},
		{{SourcePath: "b", Similarity: 0.5}, {SourcePath: "c", Similarity: 0.6}},
	}
	fused, err := s.fuse(lists)
	if err != nil || len(fused) != 3 || fused[0].SourcePath != "b" || math.Abs(fused[0].Similarity-0.7) > 1e-9 {
		t.Fatalf("weighted = %+v, %v; want b (0.25·0.8 + 0.5) first", fused, err)
	}
	s.fusion = "max"
	if fused, _ = s.fuse(lists); ragPaths(fused)[0] != "a" || fused[1].SourcePath != "b" || fused[1].Similarity != 0.8 {
		t.Fatalf("max = %+v", fused)
	}
	s.fusion, s.weights = "weighted", map[string]float64{"bm25": 1}
	if _, err := s.fuse(lists); err == nil || err.Error() != "missing weight for strategy: chunked-embeddings" {
		t.Fatalf("missing weight: %v", err)
	}

	root := t.TempDir()
	long := strings.Repeat("filler words here. ", 10) + "the walrus sings. " + strings.Repeat("more filler text. ", 10) + "walrus again."
	writeFiles(t, root, map[string]string{"docs/long.md": long})
	f := cfgLoad(t, "agents:\n  root:\n    model: openai/gpt-4o\nrag:\n  docs:\n    docs: [docs]\n    strategies:\n      - type: bm25\n        database: idx.db\n        chunking: {size: 60, overlap: 10}\n    results:\n      return_full_content: true\n")
	set := newRAGSet(f, toolsetOptions{WorkingDir: root})
	defer set.close()
	hits, err := set.sources["docs"].search(context.Background(), "walrus")
	if err != nil || len(hits) != 1 || hits[0].Content != long || hits[0].ChunkIndex != 0 {
		t.Fatalf("full content hits = %+v, %v; want the one document once", hits, err)
	}
}
