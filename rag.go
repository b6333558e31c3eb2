package main

// rag.go: retrieval sources (top-level `rag:`, CONFIG.md §6.3 "rag tool"). Each source
// an agent lists becomes one read-only search tool over its documents. Strategies are
// `bm25` (SQLite FTS5 finds the candidates, BM25 with the configured k1/b ranks them)
// and `chunked-embeddings` (vectors from the provider's OpenAI-compatible /embeddings
// endpoint, stored in SQLite, cosine similarity in Go); several strategies are fused
// (reciprocal-rank fusion by default). Indexing, storage and search are in
// rag_index.go; this file holds the configuration, the tool and the index lifecycle.
//
// Lifecycle: a run of an agent with rag starts an indexing pass in the background (only
// changed files are re-read) and its stream gets the rag_indexing_* events. A query
// waits for the pass in progress, so the first answer is complete and ranked — the
// reference searches a half-built index and can panic sending to a closed stream.

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// ragConfig is one source of the top-level `rag:` map (reference RAGConfig).
type ragConfig struct {
	Tool struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		Instruction string `json:"instruction"`
	} `json:"tool"`
	Docs       []string          `json:"docs"`
	RespectVCS *bool             `json:"respect_vcs"`
	Strategies []json.RawMessage `json:"strategies"`
	Results    struct {
		Limit             *int  `json:"limit"`
		Deduplicate       *bool `json:"deduplicate"`
		IncludeScore      bool  `json:"include_score"`
		ReturnFullContent bool  `json:"return_full_content"`
		Fusion            *struct {
			Strategy string             `json:"strategy"`
			K        int                `json:"k"`
			Weights  map[string]float64 `json:"weights"`
		} `json:"fusion"`
		Reranking json.RawMessage `json:"reranking"`
	} `json:"results"`
}

// ragStrategyConfig is one entry of `strategies:`. The reference keeps unknown keys as
// free-form parameters; the ones we act on are listed here and any other is warned about.
type ragStrategyConfig struct {
	Type     string   `json:"type"`
	Docs     []string `json:"docs"`
	Database string   `json:"database"`
	Chunking struct {
		Size                  int   `json:"size"`
		Overlap               int   `json:"overlap"`
		RespectWordBoundaries *bool `json:"respect_word_boundaries"`
		CodeAware             bool  `json:"code_aware"`
	} `json:"chunking"`
	Limit                   int      `json:"limit"`
	Threshold               *float64 `json:"threshold"`
	K1                      *float64 `json:"k1"`
	B                       *float64 `json:"b"`
	EmbeddingModel          string   `json:"embedding_model"`
	Model                   string   `json:"model"`
	VectorDimensions        int      `json:"vector_dimensions"`
	BatchSize               int      `json:"batch_size"`
	EmbeddingBatchSize      int      `json:"embedding_batch_size"`
	MaxEmbeddingConcurrency int      `json:"max_embedding_concurrency"`
	SimilarityMetric        string   `json:"similarity_metric"`
	RespectVCS              *bool    `json:"respect_vcs"`
	ChatModel               string   `json:"chat_model"`
}

// ragStrategyKeys are the strategy keys acted on (chat_model only to say it is not).
var ragStrategyKeys = []string{"type", "docs", "database", "chunking", "limit", "threshold", "k1", "b",
	"embedding_model", "model", "vector_dimensions", "batch_size", "embedding_batch_size",
	"max_embedding_concurrency", "similarity_metric", "respect_vcs"}

// Reference defaults (pkg/rag/strategy): chunks of 1500 characters (4000 when code-aware)
// overlapping by 75; 5 results per strategy; 15 after fusion; RRF with k = 60.
const (
	ragChunkSize        = 1500
	ragCodeChunkSize    = 4000
	ragChunkOverlap     = 75
	ragStrategyLimit    = 5
	ragResultsLimit     = 15
	ragRRFK             = 60
	ragEmbedBatch       = 50
	ragEmbedConcurrency = 3
	ragMaxFileBytes     = 8 << 20 // larger documents are skipped: they are not notes
)

// ragSet is every source of one loaded config, built (not opened) at load so that its
// warnings are logged then; databases open on the first indexing pass.
type ragSet struct {
	sources map[string]*ragSource
	errs    map[string]error // sources that cannot work, reported to agents that use them
}

// newRAGSet builds the config's sources and logs what cannot be acted on.
func newRAGSet(f *agentFile, opts toolsetOptions) *ragSet {
	set := &ragSet{sources: map[string]*ragSource{}, errs: map[string]error{}}
	for _, name := range f.RAG.keys() {
		src, err := newRAGSource(name, f.RAG.Values[name], f, opts)
		if err != nil {
			set.errs[name] = err
			ragLog(opts).Warn("rag source unusable", "rag", name, "err", err)
			continue
		}
		for _, w := range src.warnings {
			ragLog(opts).Warn(w)
		}
		set.sources[name] = src
	}
	return set
}

func ragLog(opts toolsetOptions) *slog.Logger {
	if opts.Logger != nil {
		return opts.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// forAgent returns the sources an agent lists, in its order, and the warnings to show
// at run start. Unknown names are skipped, as the reference does.
func (set *ragSet) forAgent(ag *agentConfig) ([]*ragSource, []string) {
	var out []*ragSource
	var warnings []string
	for _, name := range ag.RAG {
		if src := set.sources[name]; src != nil {
			out = append(out, src)
			warnings = append(warnings, src.warnings...)
		} else if err := set.errs[name]; err != nil {
			warnings = append(warnings, fmt.Sprintf("rag %s failed: %v", name, err))
		} else {
			warnings = append(warnings, fmt.Sprintf("rag %s: no such source in the config's rag section; skipped", name))
		}
	}
	return out, warnings
}

// close stops every source's indexing and closes its databases.
func (set *ragSet) close() {
	for _, src := range set.sources {
		src.close()
	}
}

// ragSource is one rag entry: its strategies and the tool that searches them.
type ragSource struct {
	name     string
	toolName string
	desc     string
	instr    string
	root     string // --working-dir: every document and database lies inside it
	strats   []*ragStrategy
	limit    int
	dedup    bool
	full     bool
	fusion   string
	fusionK  int
	weights  map[string]float64
	warnings []string
	log      *slog.Logger

	ctx    context.Context // cancelled by close: stops a pass
	cancel context.CancelFunc

	mu      sync.Mutex
	env     clientEnv     // for embedding calls; set by the run that starts a pass
	pass    chan struct{} // closed when the latest pass ends; nil before the first
	running bool
	closed  bool
}

// ragStrategy is one configured retrieval strategy with its own index.
type ragStrategy struct {
	kind      string   // bm25, chunked-embeddings or semantic-embeddings (embedded like chunked)
	docs      []string // slash paths relative to root
	dbPath    string
	dbErr     error  // why dbPath cannot be used
	table     string // table-name prefix inside the database
	limit     int
	threshold float64
	k1, b     float64
	chunk     ragChunking
	vcs       bool
	embed     *ragEmbedder // nil for bm25
	idx       *ragIndex    // opened by the first pass, under ragSource.mu
}

// ragChunking is how documents are cut (reference chunk.TextDocumentProcessor).
type ragChunking struct {
	size, overlap int
	words         bool // respect word boundaries
}

// newRAGSource validates one source and resolves its paths. Errors make the source
// unusable (the reference fails the whole team); warnings name what is not acted on.
func newRAGSource(name string, raw json.RawMessage, f *agentFile, opts toolsetOptions) (*ragSource, error) {
	var c ragConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("invalid rag config: %v", err)
	}
	if len(c.Strategies) == 0 {
		return nil, fmt.Errorf("no strategies configured for RAG %q", name)
	}
	root, base, err := ragRoots(opts)
	if err != nil {
		return nil, err
	}
	s := &ragSource{
		name: name, toolName: cmpOr(c.Tool.Name, name), desc: c.Tool.Description, instr: c.Tool.Instruction,
		root: root, limit: ragResultsLimit, dedup: c.Results.Deduplicate == nil || *c.Results.Deduplicate,
		full: c.Results.ReturnFullContent, fusion: "rrf", fusionK: ragRRFK, log: ragLog(opts),
	}
	if c.Results.Limit != nil {
		s.limit = *c.Results.Limit
	}
	if fu := c.Results.Fusion; fu != nil {
		s.fusion, s.weights = cmpOr(fu.Strategy, "rrf"), fu.Weights
		if fu.K > 0 {
			s.fusionK = fu.K
		}
	}
	if !slices.Contains([]string{"rrf", "weighted", "max"}, s.fusion) {
		return nil, fmt.Errorf("unknown fusion strategy: %s (available: rrf, weighted, max)", s.fusion)
	}
	if len(c.Results.Reranking) > 0 && string(c.Results.Reranking) != "null" {
		s.warn("results.reranking is not supported; results keep their retrieval order")
	}
	vcs := c.RespectVCS == nil || *c.RespectVCS
	shared := s.docPaths(base, c.Docs)
	for i, rawStrat := range c.Strategies {
		st, err := s.newStrategy(i, rawStrat, f, opts, base, shared, vcs)
		if err != nil {
			return nil, err
		}
		s.strats = append(s.strats, st)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// ragRoots returns the confinement root (--working-dir) and the directory relative
// paths are resolved against: the config file's, else the working dir (CONFIG.md §8.2).
func ragRoots(opts toolsetOptions) (root, base string, err error) {
	if opts.WorkingDir == "" {
		return "", "", errors.New("no working directory to hold rag documents")
	}
	if root, err = filepath.Abs(opts.WorkingDir); err != nil {
		return "", "", err
	}
	base = root
	if opts.ConfigPath != "" {
		if base, err = filepath.Abs(filepath.Dir(opts.ConfigPath)); err != nil {
			return "", "", err
		}
	}
	return root, base, nil
}

func (s *ragSource) warn(format string, args ...any) {
	s.warnings = append(s.warnings, fmt.Sprintf("rag %s: ", s.name)+fmt.Sprintf(format, args...))
}

// docPaths resolves document paths against base and keeps those inside the root, as
// slash paths relative to it; the others are dropped with a warning.
func (s *ragSource) docPaths(base string, docs []string) []string {
	var out []string
	for _, d := range docs {
		rel, ok := s.inRoot(base, d)
		if !ok {
			s.warn("document path %q is outside the working directory; skipped", d)
			continue
		}
		out = append(out, rel)
	}
	return out
}

// inRoot resolves p against base and returns it relative to the root, if inside.
func (s *ragSource) inRoot(base, p string) (string, bool) {
	rel, err := filepath.Rel(s.root, absPath(base, p))
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return "", false
	}
	return filepath.ToSlash(rel), true
}

// newStrategy validates strategy i and resolves its documents and database.
func (s *ragSource) newStrategy(i int, raw json.RawMessage, f *agentFile, opts toolsetOptions, base string, shared []string, vcs bool) (*ragStrategy, error) {
	var c ragStrategyConfig
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("strategy %d: %v", i, err)
	}
	var keys map[string]json.RawMessage
	json.Unmarshal(raw, &keys)
	for k := range keys {
		if !slices.Contains(ragStrategyKeys, k) && !(k == "chat_model" && c.Type == "semantic-embeddings") {
			s.warn("strategy %s: key %q is not used", c.Type, k)
		}
	}
	st := &ragStrategy{kind: c.Type, limit: c.Limit, vcs: vcs, k1: 1.5, b: 0.75}
	if st.limit <= 0 {
		st.limit = ragStrategyLimit
	}
	if c.RespectVCS != nil {
		st.vcs = *c.RespectVCS
	}
	st.docs = slices.Compact(append(slices.Clone(shared), s.docPaths(base, c.Docs)...))
	switch c.Type {
	case "bm25":
		st.k1, st.b = derefOr(c.K1, 1.5), derefOr(c.B, 0.75)
		st.threshold = derefOr(c.Threshold, 0)
	case "chunked-embeddings", "semantic-embeddings":
		e, err := s.newEmbedder(c, f, opts)
		if err != nil {
			return nil, err
		}
		st.embed, st.threshold = e, derefOr(c.Threshold, 0.5)
	default:
		return nil, fmt.Errorf("unknown strategy type: %s (available: chunked-embeddings, semantic-embeddings, bm25)", c.Type)
	}
	size := c.Chunking.Size
	if size <= 0 {
		size = ragChunkSize
		if c.Chunking.CodeAware {
			size = ragCodeChunkSize
		}
	}
	st.chunk = ragChunking{size: size, overlap: c.Chunking.Overlap, words: derefOr(c.Chunking.RespectWordBoundaries, true)}
	if st.chunk.overlap <= 0 {
		st.chunk.overlap = ragChunkOverlap
	}
	if st.chunk.overlap >= size {
		st.chunk.overlap = size / 2
	}
	if c.Chunking.CodeAware {
		s.warn("strategy %s: code_aware chunking (tree-sitter) is not supported; files are chunked as plain text", c.Type)
	}
	st.table = ragIdent(s.name + "_" + c.Type + "_" + fmt.Sprint(i))
	// A database we refuse to open leaves the tool in place (so tool counts match the
	// reference's) and fails its searches with the reason.
	if st.dbPath, st.dbErr = s.dbPath(c.Database, base, opts); st.dbErr != nil {
		s.warn("strategy %s: %v", c.Type, st.dbErr)
	}
	return st, nil
}

// newEmbedder resolves the embedding model (`embedding_model`, or `model` as the
// reference's documentation writes it) through the config's models and providers.
func (s *ragSource) newEmbedder(c ragStrategyConfig, f *agentFile, opts toolsetOptions) (*ragEmbedder, error) {
	ref := cmpOr(c.EmbeddingModel, c.Model)
	if ref == "" {
		return nil, fmt.Errorf("'embedding_model' parameter required for %s strategy", c.Type)
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	spec, err := f.modelSpec(ref, getenv)
	if err != nil {
		return nil, fmt.Errorf("model '%s' not found: %v", ref, err)
	}
	if api, err := modelAPIType(spec); err != nil || api != apiOpenAIChat && api != apiOpenAIResponses {
		return nil, fmt.Errorf("embedding model %s: only OpenAI-compatible providers serve /embeddings", modelName(spec))
	}
	if m := c.SimilarityMetric; m != "" && m != "cosine_similarity" {
		return nil, fmt.Errorf("unknown similarity_metric %q (available: cosine_similarity)", m)
	}
	if c.Type == "semantic-embeddings" {
		s.warn("strategy semantic-embeddings: chunks are embedded as they are, without chat_model summaries")
	}
	e := &ragEmbedder{spec: spec, dims: c.VectorDimensions, batch: cmpOr(c.EmbeddingBatchSize, c.BatchSize, ragEmbedBatch),
		conc: cmpOr(c.MaxEmbeddingConcurrency, ragEmbedConcurrency)}
	return e, nil
}

// dbPath is the strategy's SQLite file: `database` relative to the config's directory
// and inside the working dir, else one file per config under the data dir.
func (s *ragSource) dbPath(db, base string, opts toolsetOptions) (string, error) {
	if db == "" {
		if opts.DataDir == "" {
			return "", errors.New("no database set and no data dir to default to")
		}
		sum := sha256.Sum256([]byte(opts.ConfigPath + "\x00" + s.root))
		return filepath.Join(opts.DataDir, "rag", hex.EncodeToString(sum[:])[:16], ragIdent(s.name)+".db"), nil
	}
	if strings.Contains(db, "://") {
		return "", fmt.Errorf("database %q: only SQLite file paths are supported", db)
	}
	rel, ok := s.inRoot(base, db)
	if !ok || rel == "." {
		return "", fmt.Errorf("database %q is outside the working directory", db)
	}
	return filepath.Join(s.root, filepath.FromSlash(rel)), nil
}

// ragIdent makes a SQL identifier of s: lower-case letters, digits and underscores,
// with a hash suffix when anything had to change (so distinct names stay distinct).
func ragIdent(s string) string {
	b := []byte(strings.ToLower(s))
	changed := string(b) != s
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			b[i], changed = '_', true
		}
	}
	if changed {
		sum := sha256.Sum256([]byte(s))
		return string(b) + "_" + hex.EncodeToString(sum[:4])
	}
	return string(b)
}

func cmpOr[T comparable](vals ...T) T {
	var zero T
	for _, v := range vals {
		if v != zero {
			return v
		}
	}
	return zero
}

func derefOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// --- the tool ---

// ragResultSchema is the reference's output schema ([]QueryResult through jsonschema-go).
const ragResultSchema = `{"type":["null","array"],"items":{"type":"object","required":["source_path","content","similarity","chunk_index"],"properties":{"source_path":{"type":"string","description":"Path to the source document"},"content":{"type":"string","description":"Relevant document chunk content"},"similarity":{"type":"number","description":"Similarity score (0-1)"},"chunk_index":{"type":"integer","description":"Index of the chunk within the source document"}},"additionalProperties":false}}`

// tool is the source's search tool, named and described as configured (reference
// builtin.RAGTool).
func (s *ragSource) tool() tool {
	desc := cmpOr(s.desc, fmt.Sprintf("Search project documents from %s to find relevant code or documentation. "+
		"Provide a natural language query describing what you need. Returns the most relevant document chunks with file paths.", s.toolName))
	return tool{
		def: toolDef{
			Name:         s.toolName,
			Category:     "knowledge",
			Description:  desc,
			Parameters:   json.RawMessage(`{"type":"object","required":["query"],"properties":{"query":{"type":"string","description":"Search query"}},"additionalProperties":false}`),
			OutputSchema: json.RawMessage(ragResultSchema),
			Annotations:  toolAnnotations{Title: "Query " + s.toolName, ReadOnlyHint: true},
		},
		run: toolsRun(func(ctx context.Context, env *toolEnv, a struct {
			Query string `json:"query"`
		}) toolResult {
			if strings.TrimSpace(a.Query) == "" {
				return toolErrorf("query cannot be empty")
			}
			hits, err := s.search(ctx, a.Query)
			if err != nil {
				return toolErrorf("RAG query failed: %v", err)
			}
			if hits == nil {
				hits = []ragHit{}
			}
			return toolsJSON(hits)
		}),
	}
}

// instruction is the source's system-prompt text (reference default when unset).
func (s *ragSource) instruction() string {
	return cmpOr(s.instr, fmt.Sprintf("Search documents in %s to find relevant code or documentation. "+
		"Provide a clear search query describing what you need.", s.toolName))
}

// --- index lifecycle ---

// refresh starts an indexing pass unless one is running; emit receives its events
// (the run that started it forwards them to its stream; a closed stream drops them).
func (s *ragSource) refresh(env clientEnv, emit func(*event)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.env = env
	s.startLocked(emit)
}

// startLocked starts a pass if none is running; the caller holds s.mu.
func (s *ragSource) startLocked(emit func(*event)) {
	if s.running || s.closed {
		return
	}
	s.running = true
	done := make(chan struct{})
	s.pass = done
	go func() {
		defer func() {
			s.mu.Lock()
			s.running = false
			s.mu.Unlock()
			close(done)
		}()
		s.indexAll(emit)
	}()
}

// ready waits for the pass in progress (starting the first one if no run has), so a
// query never sees a half-built index.
func (s *ragSource) ready(ctx context.Context) error {
	s.mu.Lock()
	if s.pass == nil {
		s.startLocked(func(*event) {})
	}
	done, closed := s.pass, s.closed
	s.mu.Unlock()
	if closed || done == nil {
		return errors.New("rag source is closed")
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// indexAll brings every strategy's index up to date, one strategy after another.
func (s *ragSource) indexAll(emit func(*event)) {
	s.mu.Lock()
	env := s.env
	s.mu.Unlock()
	for _, st := range s.strats {
		idx, err := s.open(st)
		if err == nil {
			err = s.indexStrategy(s.ctx, env, st, idx, emit)
		}
		if err != nil && s.ctx.Err() == nil {
			s.log.Error("rag indexing failed", "rag", s.name, "strategy", st.kind, "err", err)
			emit(errorEvent(fmt.Sprintf("RAG %s error: %v", s.name, err), "", ""))
		}
	}
}

// open returns the strategy's index, opening the database on first use.
func (s *ragSource) open(st *ragStrategy) (*ragIndex, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.idx != nil {
		return st.idx, nil
	}
	if s.closed {
		return nil, errors.New("rag source is closed")
	}
	if st.dbErr != nil {
		return nil, st.dbErr
	}
	idx, err := openRAGIndex(st.dbPath, st.table, st.fingerprint(), st.embed == nil)
	if err != nil {
		return nil, err
	}
	st.idx = idx
	return idx, nil
}

// index returns the strategy's open index, nil if it never opened.
func (s *ragSource) index(st *ragStrategy) *ragIndex {
	s.mu.Lock()
	defer s.mu.Unlock()
	return st.idx
}

// close stops a running pass and closes the databases.
func (s *ragSource) close() {
	s.mu.Lock()
	s.closed = true
	pass := s.pass
	s.mu.Unlock()
	s.cancel()
	if pass != nil {
		<-pass
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.strats {
		if st.idx != nil {
			st.idx.db.Close()
			st.idx = nil
		}
	}
}

// fingerprint names what the stored chunks depend on; a change re-indexes everything.
func (st *ragStrategy) fingerprint() string {
	fp := fmt.Sprintf("v1 %s size=%d overlap=%d words=%v", st.kind, st.chunk.size, st.chunk.overlap, st.chunk.words)
	if st.embed != nil {
		fp += fmt.Sprintf(" model=%s dims=%d", modelName(st.embed.spec), st.embed.dims)
	}
	return fp
}

// --- search ---

// ragHit is one search result, as the reference's QueryResult.
type ragHit struct {
	SourcePath string  `json:"source_path"`
	Content    string  `json:"content"`
	Similarity float64 `json:"similarity"`
	ChunkIndex int     `json:"chunk_index"`
	score      float64 // ranking score (BM25 before normalisation); ties keep path order
}

// search runs every strategy on query, fuses their rankings, then applies the results
// options (limit, full content, de-duplication).
func (s *ragSource) search(ctx context.Context, query string) ([]ragHit, error) {
	if err := s.ready(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	env := s.env
	s.mu.Unlock()
	lists := make([][]ragHit, len(s.strats))
	errs := make([]error, len(s.strats))
	var wg sync.WaitGroup
	for i, st := range s.strats {
		wg.Go(func() {
			idx := s.index(st)
			if idx == nil {
				errs[i] = fmt.Errorf("strategy %s: index unavailable: %v", st.kind, cmpOr(st.dbErr, errors.New("see the server log")))
				return
			}
			lists[i], errs[i] = st.query(ctx, env, idx, query)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	hits := lists[0]
	if len(lists) > 1 {
		var err error
		if hits, err = s.fuse(lists); err != nil {
			return nil, err
		}
	}
	if s.limit > 0 && len(hits) > s.limit {
		hits = hits[:s.limit]
	}
	if s.full {
		s.fullContent(hits)
	}
	if s.dedup {
		seen := map[string]bool{}
		hits = slices.DeleteFunc(hits, func(h ragHit) bool {
			dup := seen[h.Content]
			seen[h.Content] = true
			return dup
		})
	}
	return hits, nil
}

// fuse combines per-strategy rankings into one, keyed by document chunk.
func (s *ragSource) fuse(lists [][]ragHit) ([]ragHit, error) {
	type key struct {
		path  string
		chunk int
	}
	byKey := map[key]*ragHit{}
	var order []key
	for i, list := range lists {
		w := 1.0
		if s.fusion == "weighted" {
			var ok bool
			if w, ok = s.weights[s.strats[i].kind]; !ok {
				return nil, fmt.Errorf("missing weight for strategy: %s", s.strats[i].kind)
			}
		}
		for rank, h := range list {
			k := key{h.SourcePath, h.ChunkIndex}
			f := byKey[k]
			if f == nil {
				c := h
				c.score = 0
				f = &c
				byKey[k] = f
				order = append(order, k)
			}
			switch s.fusion {
			case "rrf":
				f.score += 1 / float64(s.fusionK+rank+1)
			case "weighted":
				f.score += w * h.Similarity
			case "max":
				f.score = max(f.score, h.Similarity)
			}
		}
	}
	out := make([]ragHit, 0, len(order))
	for _, k := range order {
		h := *byKey[k]
		h.Similarity = h.score
		out = append(out, h)
	}
	ragSort(out)
	return out, nil
}

// ragSort orders hits best first; equal scores keep a stable path/chunk order.
func ragSort(hits []ragHit) {
	slices.SortStableFunc(hits, func(a, b ragHit) int {
		switch {
		case a.score != b.score:
			if a.score > b.score {
				return -1
			}
			return 1
		case a.SourcePath != b.SourcePath:
			return strings.Compare(a.SourcePath, b.SourcePath)
		}
		return a.ChunkIndex - b.ChunkIndex
	})
}

// fullContent replaces each chunk with its whole document (return_full_content).
func (s *ragSource) fullContent(hits []ragHit) {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return
	}
	defer root.Close()
	cache := map[string]string{}
	for i := range hits {
		p := hits[i].SourcePath
		text, ok := cache[p]
		if !ok {
			rel, err := filepath.Rel(s.root, p)
			if err != nil {
				continue
			}
			b, err := ragReadFile(root, rel)
			if err != nil {
				continue // keep the chunk, as the reference does
			}
			text = string(b)
			cache[p] = text
		}
		hits[i].Content, hits[i].ChunkIndex = text, 0
	}
}

// --- hooks used by the team and the runner ---

// ragStart starts an indexing pass of each source; the events go to emit stamped
// with the agent's name (the reference forwards them to the run's stream).
func ragStart(srcs []*ragSource, env clientEnv, agent string, send func(*event)) {
	for _, src := range srcs {
		src.refresh(env, func(ev *event) { send(ev.forAgent(agent)) })
	}
}

// ragDB opens a rag database: WAL so that several processes may read, a busy timeout
// for concurrent writers, and one connection so this process never contends with itself.
// synchronous=NORMAL skips the fsync per commit: the index is derived data, and a
// commit lost to a power cut only means that file is indexed again.
func ragDB(path string) (*sql.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}
