package main

// rag_index.go: the rag indexes (see rag.go). Documents are collected inside the
// working dir only (os.Root: no `..`, no escaping symlinks), cut into overlapping
// chunks and stored in SQLite with their size, mtime and SHA-256, so a pass re-reads
// only files whose size or mtime changed and re-chunks only those whose content did.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	ragBM25Candidates = 1000     // FTS5 matches re-scored with the configured k1 and b
	ragMaxEmbedBody   = 64 << 20 // an /embeddings answer larger than this is refused
	ragBatchDocs      = 64       // documents per write transaction
	ragBatchWait      = 200 * time.Millisecond
)

// ragFile is a document found by a pass.
type ragFile struct {
	rel   string // slash path relative to the root
	size  int64
	mtime int64 // UnixNano
}

// ragFileState is what the index remembers of a document.
type ragFileState struct {
	size, mtime int64
	hash        string
}

// collect lists the strategy's documents: files named directly, files matching a glob,
// and every file under a directory, minus .git and .gitignored paths when the strategy
// respects VCS. Missing paths are skipped, as the reference does.
func (s *ragSource) collect(st *ragStrategy) ([]ragFile, error) {
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var ig *fsIgnore
	if st.vcs {
		ig = (&fsToolset{ignoreVCS: true}).ignores(root) // the filesystem tool's .gitignore rules
	}
	fsys := root.FS()
	seen := map[string]bool{}
	var out []ragFile
	add := func(p string, info fs.FileInfo) {
		if info.Mode().IsRegular() && !seen[p] {
			seen[p] = true
			out = append(out, ragFile{rel: p, size: info.Size(), mtime: info.ModTime().UnixNano()})
		}
	}
	for _, d := range st.docs {
		matches := []string{d}
		if strings.ContainsAny(d, "*?[") {
			matches, _ = fs.Glob(fsys, d)
		}
		for _, m := range matches {
			info, err := fs.Stat(fsys, m)
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					s.log.Warn("rag document skipped", "rag", s.name, "path", m, "err", err)
				}
				continue
			}
			if !info.IsDir() {
				add(m, info)
				continue
			}
			fs.WalkDir(fsys, m, func(p string, e fs.DirEntry, err error) error {
				if err != nil || p != m && ig.skip(p, e.IsDir()) {
					if err == nil && e.IsDir() {
						return fs.SkipDir
					}
					return nil
				}
				if e.IsDir() {
					return nil
				}
				if info, err := fs.Stat(fsys, p); err == nil { // follows symlinks, inside the root only
					add(p, info)
				}
				return nil
			})
		}
	}
	slices.SortFunc(out, func(a, b ragFile) int { return strings.Compare(a.rel, b.rel) })
	return out, nil
}

// ragReadFile reads a document through root. Binary and oversized files read as
// empty: they are remembered (so not retried every pass) but give no chunks.
func ragReadFile(root *os.Root, rel string) ([]byte, error) {
	f, err := root.Open(filepath.FromSlash(rel))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if info, err := f.Stat(); err != nil || info.Size() > ragMaxFileBytes {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, ragMaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > ragMaxFileBytes || bytes.IndexByte(b, 0) >= 0 || !utf8.Valid(b) {
		return nil, nil
	}
	return b, nil
}

// indexStrategy brings one strategy's index up to date: forgets deleted files, indexes
// new and changed ones, and reports progress when there is anything to do.
func (s *ragSource) indexStrategy(ctx context.Context, env clientEnv, st *ragStrategy, idx *ragIndex, emit func(*event)) error {
	files, err := s.collect(st)
	if err != nil {
		return err
	}
	stored, err := idx.files(ctx)
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, f := range files {
		present[filepath.Join(s.root, filepath.FromSlash(f.rel))] = true
	}
	for p := range stored {
		if !present[p] {
			if err := idx.remove(ctx, p); err != nil {
				return err
			}
		}
	}
	root, err := os.OpenRoot(s.root)
	if err != nil {
		return err
	}
	defer root.Close()
	todo, err := s.changed(ctx, idx, root, files, stored)
	if err != nil || len(todo) == 0 {
		return err
	}
	emit(ragIndexingStartedEvent(s.name, st.kind))
	failed, err := s.write(ctx, st, idx, s.prepareAll(ctx, env, st, root, todo), stored, len(todo), emit)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	emit(ragIndexingCompletedEvent(s.name, st.kind))
	if failed > 0 {
		// Not remembered, so the next pass retries them.
		return fmt.Errorf("%s: %d of %d documents not indexed: %w", st.kind, failed, len(todo), err)
	}
	return nil
}

// write stores the prepared documents, reporting progress, and returns how many
// failed with the first error. Documents are committed in batches: one transaction per
// file spends its time writing WAL frames. A batch closes at ragBatchDocs documents or
// ragBatchWait after its first, so slow embedding calls still show progress.
func (s *ragSource) write(ctx context.Context, st *ragStrategy, idx *ragIndex, docs <-chan ragDoc, stored map[string]ragFileState, total int, emit func(*event)) (int, error) {
	done, failed := 0, 0
	var firstErr error
	var tokens int64
	var batch []ragDoc
	flush := func() {
		var ok []ragDoc
		for _, d := range batch {
			if d.err != nil {
				s.log.Warn("rag document not indexed", "rag", s.name, "strategy", st.kind, "path", d.path, "err", d.err)
				failed++
				firstErr = cmpOr(firstErr, d.err)
			} else {
				_, d.replace = stored[d.path]
				ok = append(ok, d)
			}
			tokens += d.tokens
		}
		if err := idx.store(ctx, ok, st.embed == nil); err != nil && ctx.Err() == nil {
			s.log.Warn("rag documents not stored", "rag", s.name, "strategy", st.kind, "count", len(ok), "err", err)
			failed += len(ok)
			firstErr = cmpOr(firstErr, err)
		}
		for range batch {
			done++
			emit(ragIndexingProgressEvent(s.name, st.kind, done, total))
		}
		if st.embed != nil && tokens > 0 {
			emit(st.embed.usage(tokens))
		}
		batch = batch[:0]
	}
	var timer <-chan time.Time
	for open := true; open; {
		select {
		case d, more := <-docs:
			if open = more; more {
				batch = append(batch, d)
				if len(batch) == 1 {
					timer = time.After(ragBatchWait)
				}
				if len(batch) < ragBatchDocs {
					continue
				}
			}
		case <-timer:
		}
		flush()
		timer = nil
	}
	return failed, firstErr
}

// ragDoc is a document read, chunked (and embedded), ready to store.
type ragDoc struct {
	path    string // absolute
	state   ragFileState
	chunks  []string
	vecs    [][]float32
	tokens  int64 // embedding tokens spent
	err     error
	replace bool // the index holds an older version
}

// prepareAll prepares the files on a few goroutines (several embedding calls at once;
// one for bm25, which is bound by the writer) and sends them on the returned channel,
// closed when all are done or ctx ends.
func (s *ragSource) prepareAll(ctx context.Context, env clientEnv, st *ragStrategy, root *os.Root, files []ragFile) <-chan ragDoc {
	out := make(chan ragDoc, ragBatchDocs)
	workers := 1
	if st.embed != nil {
		workers = max(1, st.embed.conc)
	}
	var mu sync.Mutex
	next := 0
	var wg sync.WaitGroup
	for range min(workers, len(files)) {
		wg.Go(func() {
			for {
				mu.Lock()
				if next == len(files) || ctx.Err() != nil {
					mu.Unlock()
					return
				}
				f := files[next]
				next++
				mu.Unlock()
				out <- s.prepare(ctx, env, st, root, f)
			}
		})
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

// changed returns the files whose content differs from the index. Files whose size or
// mtime changed are hashed; an unchanged hash only updates the remembered stat.
func (s *ragSource) changed(ctx context.Context, idx *ragIndex, root *os.Root, files []ragFile, stored map[string]ragFileState) ([]ragFile, error) {
	var todo []ragFile
	for _, f := range files {
		abs := filepath.Join(s.root, filepath.FromSlash(f.rel))
		old, ok := stored[abs]
		if ok && old.size == f.size && old.mtime == f.mtime {
			continue
		}
		if ok {
			data, err := ragReadFile(root, f.rel)
			if err != nil {
				continue // reported when indexing would have read it; the old chunks stay
			}
			if st := ragState(f, data); st.hash == old.hash {
				if err := idx.touch(ctx, abs, st); err != nil {
					return nil, err
				}
				continue
			}
		}
		todo = append(todo, f)
	}
	return todo, nil
}

// ragState is what the index remembers of f with content data. A file written in the
// last two seconds may change again within the same mtime tick, so its mtime is not
// remembered and the next pass hashes it again.
func ragState(f ragFile, data []byte) ragFileState {
	sum := sha256.Sum256(data)
	st := ragFileState{size: f.size, mtime: f.mtime, hash: hex.EncodeToString(sum[:])}
	if time.Since(time.Unix(0, f.mtime)) < 2*time.Second {
		st.mtime = 0
	}
	return st
}

// prepare reads, chunks and (for embedding strategies) embeds one document.
func (s *ragSource) prepare(ctx context.Context, env clientEnv, st *ragStrategy, root *os.Root, f ragFile) ragDoc {
	d := ragDoc{path: filepath.Join(s.root, filepath.FromSlash(f.rel))}
	data, err := ragReadFile(root, f.rel)
	if err != nil {
		d.err = err
		return d
	}
	d.state = ragState(f, data)
	d.chunks = ragChunks(string(data), st.chunk)
	if st.embed != nil && len(d.chunks) > 0 {
		d.vecs, d.tokens, d.err = st.embed.embed(ctx, env, d.chunks)
	}
	return d
}

// ragChunks cuts text into chunks of at most c.size characters, each starting
// c.overlap characters before the previous one ended. With word boundaries, a chunk
// ends at a space when there is one in its second half, and the next starts on a word.
func ragChunks(text string, c ragChunking) []string {
	r := []rune(text)
	var out []string
	for start := 0; start < len(r); {
		end := min(start+c.size, len(r))
		if c.words && end < len(r) {
			for i := end; i > start+c.size/2; i-- {
				if unicode.IsSpace(r[i]) {
					end = i
					break
				}
			}
		}
		if s := strings.TrimSpace(string(r[start:end])); s != "" {
			out = append(out, s)
		}
		if end == len(r) {
			break
		}
		next := max(end-c.overlap, start+1)
		for c.words && next < end && next > 0 && !unicode.IsSpace(r[next-1]) {
			next++ // do not start in the middle of a word
		}
		start = next
	}
	return out
}

// ragStopwords are dropped from documents and queries (the reference's list).
var ragStopwords = map[string]bool{
	"the": true, "a": true, "an": true, "and": true, "or": true, "but": true, "in": true, "on": true,
	"at": true, "to": true, "for": true, "of": true, "as": true, "by": true, "is": true, "was": true,
	"are": true, "were": true, "be": true, "been": true,
}

// ragTokens splits text into lower-case words (runs of letters and digits) without
// stopwords and one-character words. The FTS5 index stores exactly these tokens, so
// its matches and document frequencies agree with the scoring here.
func ragTokens(text string) []string {
	words := strings.FieldsFunc(strings.ToLower(text), func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsNumber(r) })
	return slices.DeleteFunc(words, func(w string) bool { return ragStopwords[w] || utf8.RuneCountInString(w) < 2 })
}

// --- storage ---

// ragIndex is one strategy's tables in a SQLite file; several strategies and sources
// may share a file because every table name carries the strategy's prefix.
type ragIndex struct {
	db *sql.DB
	t  string
}

// openRAGIndex opens path, creates the tables and clears them when the fingerprint
// (chunking, model) differs from the one they were built with.
func openRAGIndex(path, table, fingerprint string, fts bool) (*ragIndex, error) {
	db, err := ragDB(path)
	if err != nil {
		return nil, fmt.Errorf("rag database %s: %w", path, err)
	}
	x := &ragIndex{db: db, t: table}
	if err := x.init(fingerprint, fts); err != nil {
		db.Close()
		return nil, fmt.Errorf("rag database %s: %w", path, err)
	}
	return x, nil
}

func (x *ragIndex) init(fingerprint string, fts bool) error {
	t := x.t
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS ` + t + `_meta (fingerprint TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + t + `_files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime INTEGER NOT NULL, hash TEXT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS ` + t + `_chunks (id INTEGER PRIMARY KEY, path TEXT NOT NULL, chunk_index INTEGER NOT NULL, content TEXT NOT NULL, ntokens INTEGER NOT NULL, vec BLOB)`,
		`CREATE INDEX IF NOT EXISTS ` + t + `_chunks_path ON ` + t + `_chunks(path)`,
	}
	if fts {
		// Contentless: the text lives in _chunks; the index holds only ragTokens output,
		// which unicode61 splits exactly as ragTokens did.
		stmts = append(stmts,
			`CREATE VIRTUAL TABLE IF NOT EXISTS `+t+`_fts USING fts5(terms, content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 0')`,
			`CREATE VIRTUAL TABLE IF NOT EXISTS `+t+`_vocab USING fts5vocab(`+t+`_fts, 'row')`)
	}
	for _, q := range stmts {
		if _, err := x.db.Exec(q); err != nil {
			return err
		}
	}
	return x.tx(context.Background(), func(tx *sql.Tx) error {
		var old string
		err := tx.QueryRow(`SELECT fingerprint FROM ` + t + `_meta`).Scan(&old)
		if err == nil && old == fingerprint {
			return nil
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		clear := []string{`DELETE FROM ` + t + `_meta`, `DELETE FROM ` + t + `_files`, `DELETE FROM ` + t + `_chunks`}
		if fts {
			clear = append(clear, `DELETE FROM `+t+`_fts`)
		}
		for _, q := range clear {
			if _, err := tx.Exec(q); err != nil {
				return err
			}
		}
		_, err = tx.Exec(`INSERT INTO `+t+`_meta (fingerprint) VALUES (?)`, fingerprint)
		return err
	})
}

// tx runs fn in a write transaction.
func (x *ragIndex) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := x.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// files returns every indexed document by absolute path.
func (x *ragIndex) files(ctx context.Context) (map[string]ragFileState, error) {
	rows, err := x.db.QueryContext(ctx, `SELECT path, size, mtime, hash FROM `+x.t+`_files`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]ragFileState{}
	for rows.Next() {
		var p string
		var st ragFileState
		if err := rows.Scan(&p, &st.size, &st.mtime, &st.hash); err != nil {
			return nil, err
		}
		out[p] = st
	}
	return out, rows.Err()
}

// dropChunks deletes a document's chunks and their FTS rows.
func (x *ragIndex) dropChunks(tx *sql.Tx, path string) error {
	if _, err := tx.Exec(`DELETE FROM `+x.t+`_fts WHERE rowid IN (SELECT id FROM `+x.t+`_chunks WHERE path = ?)`, path); err != nil && !strings.Contains(err.Error(), "no such table") {
		return err
	}
	_, err := tx.Exec(`DELETE FROM `+x.t+`_chunks WHERE path = ?`, path)
	return err
}

// remove forgets a document that no longer exists.
func (x *ragIndex) remove(ctx context.Context, path string) error {
	return x.tx(ctx, func(tx *sql.Tx) error {
		if err := x.dropChunks(tx, path); err != nil {
			return err
		}
		_, err := tx.Exec(`DELETE FROM `+x.t+`_files WHERE path = ?`, path)
		return err
	})
}

// touch records a new size and mtime for a document whose content is unchanged.
func (x *ragIndex) touch(ctx context.Context, path string, st ragFileState) error {
	_, err := x.db.ExecContext(ctx, `UPDATE `+x.t+`_files SET size = ?, mtime = ? WHERE path = ?`, st.size, st.mtime, path)
	return err
}

// store replaces the documents' chunks (and vectors, or FTS terms) in one
// transaction, so a search sees each document's old version or its new one, never a mix.
func (x *ragIndex) store(ctx context.Context, docs []ragDoc, fts bool) error {
	if len(docs) == 0 {
		return nil
	}
	return x.tx(ctx, func(tx *sql.Tx) error {
		for _, d := range docs {
			if err := x.storeDoc(tx, d, fts); err != nil {
				return err
			}
		}
		return nil
	})
}

func (x *ragIndex) storeDoc(tx *sql.Tx, d ragDoc, fts bool) error {
	if d.replace {
		if err := x.dropChunks(tx, d.path); err != nil {
			return err
		}
	}
	for i, c := range d.chunks {
		toks := ragTokens(c)
		var vec []byte
		if d.vecs != nil {
			vec = ragEncodeVec(d.vecs[i])
		}
		res, err := tx.Exec(`INSERT INTO `+x.t+`_chunks (path, chunk_index, content, ntokens, vec) VALUES (?, ?, ?, ?, ?)`, d.path, i, c, len(toks), vec)
		if err != nil {
			return err
		}
		if fts {
			id, _ := res.LastInsertId()
			if _, err := tx.Exec(`INSERT INTO `+x.t+`_fts (rowid, terms) VALUES (?, ?)`, id, strings.Join(toks, " ")); err != nil {
				return err
			}
		}
	}
	_, err := tx.Exec(`INSERT INTO `+x.t+`_files (path, size, mtime, hash) VALUES (?, ?, ?, ?)
		ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime = excluded.mtime, hash = excluded.hash`, d.path, d.state.size, d.state.mtime, d.state.hash)
	return err
}

// --- queries ---

// query runs the strategy's search and returns at most its limit of hits, best first.
func (st *ragStrategy) query(ctx context.Context, env clientEnv, x *ragIndex, q string) ([]ragHit, error) {
	if st.embed != nil {
		return st.vectorQuery(ctx, env, x, q)
	}
	return st.bm25Query(ctx, x, q)
}

// bm25Query lets FTS5 find the chunks holding any query word, then scores them with
// BM25 using the configured k1 and b (FTS5's own bm25() fixes them at 1.2 and 0.75).
// The similarity is the score per query word capped at 1, the reference's scale, so
// its thresholds mean the same; ranking uses the uncapped score.
func (st *ragStrategy) bm25Query(ctx context.Context, x *ragIndex, q string) ([]ragHit, error) {
	terms := slices.Compact(slices.Sorted(slices.Values(ragTokens(q))))
	if len(terms) == 0 {
		return nil, errors.New("query contains no searchable words")
	}
	var n int
	var avgLen float64
	if err := x.db.QueryRowContext(ctx, `SELECT count(*), coalesce(avg(ntokens), 0) FROM `+x.t+`_chunks`).Scan(&n, &avgLen); err != nil || n == 0 {
		return nil, err
	}
	df, err := x.docFreq(ctx, terms)
	if err != nil {
		return nil, err
	}
	quoted := make([]string, len(terms))
	for i, t := range terms {
		quoted[i] = `"` + t + `"`
	}
	rows, err := x.db.QueryContext(ctx, `SELECT c.path, c.chunk_index, c.content FROM `+x.t+`_fts f JOIN `+x.t+`_chunks c ON c.id = f.rowid
		WHERE `+x.t+`_fts MATCH ? ORDER BY f.rank LIMIT ?`, strings.Join(quoted, " OR "), ragBM25Candidates)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hits []ragHit
	for rows.Next() {
		var h ragHit
		if err := rows.Scan(&h.SourcePath, &h.ChunkIndex, &h.Content); err != nil {
			return nil, err
		}
		toks := ragTokens(h.Content)
		counts := make(map[string]int, len(toks))
		for _, w := range toks {
			counts[w]++
		}
		norm := 1 - st.b + st.b*float64(len(toks))/max(avgLen, 1)
		for _, t := range terms {
			tf := float64(counts[t])
			if tf == 0 {
				continue
			}
			d := float64(df[t])
			idf := math.Log((float64(n)-d+0.5)/(d+0.5) + 1)
			h.score += idf * tf * (st.k1 + 1) / (tf + st.k1*norm)
		}
		h.Similarity = min(h.score/float64(len(terms)), 1)
		if h.Similarity >= st.threshold {
			hits = append(hits, h)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	ragSort(hits)
	return hits[:min(len(hits), st.limit)], nil
}

// docFreq returns how many chunks hold each term, from the FTS5 vocabulary.
func (x *ragIndex) docFreq(ctx context.Context, terms []string) (map[string]int, error) {
	args := make([]any, len(terms))
	for i, t := range terms {
		args[i] = t
	}
	rows, err := x.db.QueryContext(ctx, `SELECT term, doc FROM `+x.t+`_vocab WHERE term IN (?`+strings.Repeat(",?", len(terms)-1)+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	df := map[string]int{}
	for rows.Next() {
		var t string
		var n int
		if err := rows.Scan(&t, &n); err != nil {
			return nil, err
		}
		df[t] = n
	}
	return df, rows.Err()
}

// vectorQuery embeds the query and ranks every stored chunk by cosine similarity.
func (st *ragStrategy) vectorQuery(ctx context.Context, env clientEnv, x *ragIndex, q string) ([]ragHit, error) {
	qv, _, err := st.embed.embed(ctx, env, []string{q})
	if err != nil {
		return nil, err
	}
	rows, err := x.db.QueryContext(ctx, `SELECT id, vec FROM `+x.t+`_chunks WHERE vec IS NOT NULL`)
	if err != nil {
		return nil, err
	}
	type scored struct {
		id    int64
		score float64
	}
	var best []scored
	for rows.Next() {
		var s scored
		var blob []byte
		if err := rows.Scan(&s.id, &blob); err != nil {
			rows.Close()
			return nil, err
		}
		if s.score = ragCosine(qv[0], blob); s.score >= st.threshold {
			best = append(best, s)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(best, func(a, b scored) int { return -cmpFloat(a.score, b.score) })
	best = best[:min(len(best), st.limit)]
	hits := make([]ragHit, 0, len(best))
	for _, b := range best {
		h := ragHit{Similarity: b.score, score: b.score}
		err := x.db.QueryRowContext(ctx, `SELECT path, chunk_index, content FROM `+x.t+`_chunks WHERE id = ?`, b.id).Scan(&h.SourcePath, &h.ChunkIndex, &h.Content)
		if err != nil {
			return nil, err
		}
		hits = append(hits, h)
	}
	ragSort(hits)
	return hits, nil
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ragEncodeVec stores a vector as little-endian float32s.
func ragEncodeVec(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// ragCosine is the cosine similarity of q and a stored vector (0 when the dimensions
// differ or either is zero).
func ragCosine(q []float32, blob []byte) float64 {
	if len(blob) != 4*len(q) {
		return 0
	}
	var dot, nq, nv float64
	for i, a := range q {
		b := float64(math.Float32frombits(binary.LittleEndian.Uint32(blob[4*i:])))
		dot += float64(a) * b
		nq += float64(a) * float64(a)
		nv += b * b
	}
	if nq == 0 || nv == 0 {
		return 0
	}
	return dot / math.Sqrt(nq*nv)
}

// --- embeddings ---

// ragEmbedder calls an OpenAI-compatible POST {base_url}/embeddings.
type ragEmbedder struct {
	spec  modelSpec
	dims  int // vector_dimensions; 0 accepts what the model returns
	batch int // inputs per request
	conc  int // documents embedded at once
}

// embed returns one vector per text, in order, batch by batch, and the tokens used.
func (e *ragEmbedder) embed(ctx context.Context, env clientEnv, texts []string) ([][]float32, int64, error) {
	out := make([][]float32, 0, len(texts))
	var tokens int64
	for i := 0; i < len(texts); i += e.batch {
		v, n, err := e.request(ctx, env, texts[i:min(i+e.batch, len(texts))])
		if err != nil {
			return nil, 0, err
		}
		out, tokens = append(out, v...), tokens+n
	}
	return out, tokens, nil
}

// usage is the token_usage event of an indexing pass (session_id "", cumulative
// input tokens), as the reference reports embedding costs.
func (e *ragEmbedder) usage(tokens int64) *event {
	u := usageJSON{InputTokens: tokens, ContextLength: tokens, Cost: priceOf(e.spec.Model).cost(&messageUsage{InputTokens: tokens})}
	return ragTokenUsageEvent(u)
}

func (e *ragEmbedder) request(ctx context.Context, env clientEnv, input []string) ([][]float32, int64, error) {
	conn, err := newProvConn(apiEmbeddings, e.spec, env, "/embeddings", nil)
	if err != nil {
		return nil, 0, err
	}
	body, _ := json.Marshal(struct {
		Model string   `json:"model"`
		Input []string `json:"input"`
	}{e.spec.Model, input})
	rc, err := conn.post(ctx, splicedJSON{b: body})
	if err != nil {
		return nil, 0, err
	}
	defer rc.Close()
	var r struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
		Usage struct {
			PromptTokens int64 `json:"prompt_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(io.LimitReader(rc, ragMaxEmbedBody)).Decode(&r); err != nil {
		return nil, 0, fmt.Errorf("embeddings: decoding the answer: %v", err)
	}
	vecs := make([][]float32, len(input))
	for _, d := range r.Data {
		if d.Index < 0 || d.Index >= len(input) || len(d.Embedding) == 0 {
			return nil, 0, fmt.Errorf("embeddings: bad item index %d", d.Index)
		}
		if e.dims > 0 && len(d.Embedding) != e.dims {
			return nil, 0, fmt.Errorf("embeddings: the model returned %d dimensions; vector_dimensions is %d", len(d.Embedding), e.dims)
		}
		vecs[d.Index] = d.Embedding
	}
	for i, v := range vecs {
		if v == nil {
			return nil, 0, fmt.Errorf("embeddings: no vector for input %d", i)
		}
	}
	return vecs, r.Usage.PromptTokens, nil
}
