package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// historyContents is what a client would see of items: roles, contents and
// sub-session titles, in order.
func historyContents(items []sessionItem) []string {
	var out []string
	for _, it := range items {
		switch {
		case it.Message != nil:
			out = append(out, it.Message.Role+":"+it.Message.Content)
		case it.SubSession != nil:
			out = append(out, "sub "+it.SubSession.Title+"{"+strings.Join(historyContents(it.SubItems), ",")+"}")
		default:
			out = append(out, "summary:"+it.Summary)
		}
	}
	return out
}

// historyMustRead reads session id's items and compares them with want.
func historyMustRead(t *testing.T, st *store, id string, want ...string) {
	t.Helper()
	items, err := st.items(context.Background(), id)
	if err != nil {
		t.Fatalf("items(%s) = %v", id, err)
	}
	if got := historyContents(items); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("items(%s) = %q\nwant %q", id, got, want)
	}
}

// A second connection to the file (another process, as far as SQLite can tell)
// appends, rewrites and deletes; each is seen by the next read of the cached history.
func TestHistoryCacheSeesOtherProcessWrites(t *testing.T) {
	st, path := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "s"})
	itemID, _, err := st.appendMessage(ctx, "s", "root", &chatMessage{Role: "user", Content: "one"}, false)
	if err != nil {
		t.Fatal(err)
	}
	historyMustRead(t, st, "s", "user:one")
	historyMustRead(t, st, "s", "user:one") // now from the cache

	other, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Path: path}).String()+"?_pragma=busy_timeout(5000)&_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	mustExec := func(q string, args ...any) {
		t.Helper()
		if _, err := other.Exec(q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	mustExec(`INSERT INTO session_items (session_id, position, item_type, agent_name, message_json) VALUES ('s', 1, 'message', 'root', '{"role":"assistant","content":"two"}')`)
	historyMustRead(t, st, "s", "user:one", "assistant:two")
	mustExec(`UPDATE session_items SET message_json = '{"role":"user","content":"ONE"}' WHERE id = ?`, itemID)
	historyMustRead(t, st, "s", "user:ONE", "assistant:two")
	mustExec(`DELETE FROM sessions WHERE id = 's'`)
	if _, err := st.items(ctx, "s"); err == nil {
		t.Fatal("a session deleted by another process is still read")
	}
}

// Every write path of our own reaches the cached histories: appends, in-place updates
// of a streaming answer, sub-session links, writes to an embedded sub-session (its
// messages and its record) and deletes.
func TestHistoryCacheFollowsOwnWrites(t *testing.T) {
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "p"})
	storeMustCreate(t, st, &sessionRecord{ID: "c", Title: "child"})
	historyMustRead(t, st, "p")
	st.appendUserMessages(ctx, "p", []chatMessage{{Role: "user", Content: "hi"}})
	answer, _, _ := st.appendMessage(ctx, "p", "root", &chatMessage{Role: "assistant", Content: "par"}, false)
	historyMustRead(t, st, "p", "user:hi", "assistant:par")
	st.updateMessage(ctx, answer, &chatMessage{Role: "assistant", Content: "partial answer"})
	historyMustRead(t, st, "p", "user:hi", "assistant:partial answer")

	st.appendMessage(ctx, "c", "sub", &chatMessage{Role: "assistant", Content: "in child"}, false)
	if err := st.appendSubSession(ctx, "p", "c"); err != nil {
		t.Fatal(err)
	}
	historyMustRead(t, st, "p", "user:hi", "assistant:partial answer", "sub child{assistant:in child}")
	st.setTitle(ctx, "c", "renamed")
	historyMustRead(t, st, "p", "user:hi", "assistant:partial answer", "sub renamed{assistant:in child}")
	childMsg, _, _ := st.appendMessage(ctx, "c", "sub", &chatMessage{Role: "assistant", Content: "more"}, false)
	historyMustRead(t, st, "p", "user:hi", "assistant:partial answer", "sub renamed{assistant:in child,assistant:more}")
	st.updateMessage(ctx, childMsg, &chatMessage{Role: "assistant", Content: "more, edited"})
	historyMustRead(t, st, "p", "user:hi", "assistant:partial answer", "sub renamed{assistant:in child,assistant:more, edited}")
	st.appendSummary(ctx, "p", "so far")
	historyMustRead(t, st, "p", "user:hi", "assistant:partial answer", "sub renamed{assistant:in child,assistant:more, edited}", "summary:so far")
	if err := st.deleteSession(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	historyMustRead(t, st, "p", "user:hi", "assistant:partial answer", "summary:so far")
	st.deleteSession(ctx, "p")
	if _, err := st.items(ctx, "p"); err == nil {
		t.Fatal("a deleted session is still read from the cache")
	}
}

// Readers, appenders and an updater of one session run together (go test -race); what
// the cache ends with equals a fresh read from the file.
func TestHistoryCacheConcurrent(t *testing.T) {
	st, path := storeTestOpen(t)
	ctx := context.Background()
	storeMustCreate(t, st, &sessionRecord{ID: "s"})
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				id, _, err := st.appendMessage(ctx, "s", "root", &chatMessage{Role: "assistant", Content: fmt.Sprintf("w%d-%d", w, i)}, false)
				if err != nil {
					t.Error(err)
					return
				}
				st.updateMessage(ctx, id, &chatMessage{Role: "assistant", Content: fmt.Sprintf("w%d-%d final", w, i)})
			}
		}()
	}
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				items, err := st.items(ctx, "s")
				if err != nil {
					t.Error(err)
					return
				}
				for i := 1; i < len(items); i++ {
					if items[i].Position <= items[i-1].Position {
						t.Errorf("positions out of order at %d", i)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	got, _ := st.items(ctx, "s")
	fresh, err := openStore(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	want, _ := fresh.items(ctx, "s")
	if len(want) != 60 || !reflect.DeepEqual(historyContents(got), historyContents(want)) {
		t.Fatalf("cached history differs from the file:\n%q\n%q", historyContents(got), historyContents(want))
	}
}

// The cache holds at most its budget: older histories are evicted, and one larger
// than the whole budget is served but not kept.
func TestHistoryCacheBoundedByBytes(t *testing.T) {
	st, _ := storeTestOpen(t)
	ctx := context.Background()
	st.history = newHistoryCache(20 << 10)
	for i := range 10 {
		id := fmt.Sprint("s", i)
		storeMustCreate(t, st, &sessionRecord{ID: id})
		storeTestFill(t, st, id, 10) // about 5 KB each as estimated
		if _, err := st.items(ctx, id); err != nil {
			t.Fatal(err)
		}
		if st.history.size > st.history.max {
			t.Fatalf("after %d sessions the cache holds %d bytes; budget %d", i+1, st.history.size, st.history.max)
		}
	}
	if n := st.history.lru.Len(); n < 2 || n > 5 {
		t.Fatalf("%d histories cached; want the most recent few", n)
	}
	if st.history.byID["s9"] == nil || st.history.byID["s0"] != nil {
		t.Fatal("want the newest kept and the oldest evicted")
	}
	storeMustCreate(t, st, &sessionRecord{ID: "big"})
	storeTestFill(t, st, "big", 100)
	if items, err := st.items(ctx, "big"); err != nil || len(items) != 100 {
		t.Fatalf("items(big) = %d items, %v", len(items), err)
	}
	if st.history.byID["big"] != nil {
		t.Fatal("a history larger than the budget was cached")
	}
}

// storeTestFill appends n alternating user/assistant messages of about 200 bytes to
// session id in one transaction, as earlier runs would have left them.
func storeTestFill(t testing.TB, st *store, id string, n int) {
	t.Helper()
	ctx := context.Background()
	err := st.inTx(ctx, func(tx *sql.Tx) error {
		stmt := tx.StmtContext(ctx, st.prepared[storeAppendSQL])
		for i := range n {
			role, agent := "user", ""
			if i%2 == 1 {
				role, agent = "assistant", "root"
			}
			msg := fmt.Sprintf(`{"role":%q,"content":"message %d %s","created_at":"2026-01-01T00:00:00Z"}`, role, i, strings.Repeat("lorem ipsum ", 15))
			if _, err := stmt.ExecContext(ctx, "message", agent, msg, 0, nil, nil, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRunHistory measures one run (one user message, a 100-token answer) on a
// session that already holds 20, 1,000 or 5,000 messages. The fake model discards the
// request unread, so the figures are the server's (and the client's) work; cpu-ns/op
// is the whole process's CPU time per run.
func BenchmarkRunHistory(b *testing.B) {
	toks := make([]string, 100)
	for i := range toks {
		toks[i] = fmt.Sprintf("tok%d ", i)
	}
	fake := &fakeOpenAI{}
	model := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fake.writeTurn(w, fakeTurn{Text: toks})
	}))
	b.Cleanup(model.Close)
	for _, n := range []int{20, 1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			e := newTestEnv(b, map[string]string{"a.yaml": fakeAgentYAML(model.URL, "")})
			e.setenv("OPENAI_API_KEY", "k")
			id := e.newSession(map[string]any{"title": "long"})
			storeTestFill(b, e.s.st, id, n)
			run := func() {
				resp, err := http.Post(e.srv.URL+"/api/sessions/"+id+"/agent/a", "application/json",
					strings.NewReader(`[{"role":"user","content":"Hello there"}]`))
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(body), `"type":"stream_stopped"`) {
					b.Fatalf("run: %d %s", resp.StatusCode, body)
				}
			}
			run() // the first run of a process loads the history from the database
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			for b.Loop() {
				run()
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// storeTestFillSessions inserts n root sessions, one second apart, in one transaction.
func storeTestFillSessions(t testing.TB, st *store, n int) {
	t.Helper()
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	err := st.inTx(ctx, func(tx *sql.Tx) error {
		for i := range n {
			if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, title, created_at, working_dir) VALUES (?, ?, ?, '')`,
				fmt.Sprintf("bench-%06d", i), fmt.Sprintf("session number %d", i), start.Add(time.Duration(i)*time.Second).Format(time.RFC3339)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSessionList lists 20,000 sessions: one page of 50, and the whole list.
func BenchmarkSessionList(b *testing.B) {
	e := newTestEnv(b, nil)
	storeTestFillSessions(b, e.s.st, 20000)
	for _, path := range []string{"/api/sessions?limit=50", "/api/sessions"} {
		b.Run(strings.TrimPrefix(path, "/api/sessions"), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := http.Get(e.srv.URL + path)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n < 50*100 {
					b.Fatalf("GET %s = %d, %d bytes", path, resp.StatusCode, n)
				}
			}
		})
	}
}

// walCommits counts the transactions in a SQLite WAL file
// (https://sqlite.org/fileformat.html#the_write_ahead_log): after a 32-byte header come
// frames of a 24-byte header and one page; a frame of the current WAL (its salts match
// the header's) with a non-zero "database size" field ends a transaction.
func walCommits(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 32 {
		t.Fatalf("read WAL %s: %v (%d bytes)", path, err, len(b))
	}
	page := int(binary.BigEndian.Uint32(b[8:12]))
	n := 0
	for off := 32; off+24+page <= len(b); off += 24 + page {
		f := b[off : off+24]
		if !bytes.Equal(f[8:16], b[16:24]) {
			break // a frame left from before the WAL was restarted
		}
		if binary.BigEndian.Uint32(f[4:8]) != 0 {
			n++
		}
	}
	return n
}

// newCommitsEnv is newRunEnv without the event log, whose batches are commits of
// their own at times of their own.
func newCommitsEnv(t *testing.T, turns ...fakeTurn) (*apiTest, *fakeOpenAI) {
	f := newFakeOpenAI(t, turns...)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")}, func(c *serverConfig) { c.eventRetention = -1 })
	e.setenv("OPENAI_API_KEY", "test-key")
	return e, f
}

// A run on a titled session commits twice: the user's message before the stream
// opens, then the answer together with the session's token counters and cost.
func TestRunCommitsAnswerWithUsage(t *testing.T) {
	e, _ := newCommitsEnv(t, fakeTurn{Text: []string{"Ahoy"}})
	id := e.newSession(map[string]any{"title": "set"})
	wal := filepath.Join(e.base, "session.db-wal")
	before := walCommits(t, wal)
	e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}}).all()
	if got := walCommits(t, wal) - before; got != 2 {
		t.Fatalf("a run made %d commits; want 2 (user message; answer with usage)", got)
	}
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	got := decode[sessionResponse](t, b)
	if len(got.Messages) != 2 || got.Messages[1].Message.Content != "Ahoy" || got.InputTokens != 12 || got.OutputTokens != 5 {
		t.Fatalf("stored session: %d messages, input %d, output %d", len(got.Messages), got.InputTokens, got.OutputTokens)
	}
}

// repairToolCalls adds a "canceled" result for each tool call left unanswered, and
// hands a history whose calls are all answered back as it is (no copy per turn).
func TestRepairToolCalls(t *testing.T) {
	call := func(ids ...string) chatMessage {
		m := chatMessage{Role: "assistant"}
		for _, id := range ids {
			m.ToolCalls = append(m.ToolCalls, toolCall{ID: id})
		}
		return m
	}
	result := func(id string) chatMessage { return chatMessage{Role: "tool", ToolCallID: id, Content: "r"} }
	user := chatMessage{Role: "user", Content: "u"}
	answered := []chatMessage{user, call("a", "b"), result("b"), result("a"), user, call("c"), result("c")}
	if got := repairToolCalls(answered); &got[0] != &answered[0] || len(got) != len(answered) {
		t.Fatal("an answered history was copied")
	}
	cases := []struct {
		in   []chatMessage
		want []string // role:tool_call_id of the output
	}{
		{[]chatMessage{user, call("a", "b"), result("b")}, []string{"user:", "assistant:", "tool:b", "tool:a"}},
		{[]chatMessage{user, call("a"), user, call("b"), result("b")}, []string{"user:", "assistant:", "tool:a", "user:", "assistant:", "tool:b"}},
		{[]chatMessage{call("a")}, []string{"assistant:", "tool:a"}},
	}
	for i, tc := range cases {
		var got []string
		for _, m := range repairToolCalls(tc.in) {
			got = append(got, m.Role+":"+m.ToolCallID)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("case %d: %v; want %v", i, got, tc.want)
		}
	}
}

// On an untitled session, a title generated while the answer streams is stored in
// the answer's transaction: still two commits a run, and the title is announced.
func TestRunCommitsTitleWithAnswer(t *testing.T) {
	for attempt := 1; ; attempt++ {
		gate := make(chan struct{})
		e, f := newCommitsEnv(t, fakeTurn{Text: []string{"Ahoy"}, Gate: gate})
		id := e.newSession(nil)
		wal := filepath.Join(e.base, "session.db-wal")
		before := walCommits(t, wal)
		s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
		// The answer waits until the title has been asked for and had time to arrive.
		for f.mu.Lock(); f.titles == 0; f.mu.Lock() {
			f.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
		f.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		close(gate)
		s.all()
		types := s.types()
		commits := walCommits(t, wal) - before
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		if title := decode[sessionResponse](t, b).Title; title != "Test title" || !slices.Contains(types, "session_title") {
			t.Fatalf("title %q stored; events %v", title, types)
		}
		if commits == 2 {
			return
		}
		if attempt == 5 { // a loaded machine may deliver the title late now and then
			t.Fatalf("a run made %d commits; want 2 (user message; answer with usage and title)", commits)
		}
	}
}

// Runs' writes that arrive together share a commit: while another connection holds
// the database's write lock, 20 sessions are created at once, and they take two
// commits (the first request's, which was already waiting in BEGIN, then the other
// 19 together), all answered 200 and all stored.
func TestConcurrentCreatesShareACommit(t *testing.T) {
	e := newTestEnv(t, nil, func(c *serverConfig) { c.eventRetention = -1 })
	wal := filepath.Join(e.base, "session.db-wal")
	before := walCommits(t, wal)
	release := holdDBLock(t, filepath.Join(e.base, "session.db"))
	const n = 20
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, err := http.Post(e.srv.URL+"/api/sessions", "application/json", strings.NewReader(`{}`))
			if err == nil {
				codes[i] = resp.StatusCode
				resp.Body.Close()
			}
		})
	}
	waitQueued(t, e.s.st, n-1)
	release()
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("create %d: %d", i, c)
		}
	}
	if got := walCommits(t, wal) - before; got != 2 {
		t.Fatalf("%d sessions took %d commits; want 2", n, got)
	}
	code, b := e.do("GET", "/api/sessions", nil)
	if got := len(decode[[]map[string]any](t, b)); code != 200 || got != n {
		t.Fatalf("GET /api/sessions: %d, %d sessions; want %d", code, got, n)
	}
}

// A title that arrives just after the answer's last delta still goes into the
// answer's commit: the final save waits briefly for a title on its way (before, it
// made a third commit of its own).
func TestRunFinalSaveWaitsForTitle(t *testing.T) {
	for attempt := 1; ; attempt++ {
		hold, gate := make(chan struct{}), make(chan struct{})
		e, f := newCommitsEnv(t, fakeTurn{Text: []string{"Ahoy"}, Hold: hold})
		f.TitleTurn = &fakeTurn{Text: []string{"Late title"}, Gate: gate}
		id := e.newSession(nil)
		wal := filepath.Join(e.base, "session.db-wal")
		before := walCommits(t, wal)
		s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "hi"}})
		if ev := s.until("agent_choice"); ev["content"] != "Ahoy" {
			t.Fatalf("first delta %v", ev)
		}
		close(hold) // the answer ends; its save starts
		time.Sleep(10 * time.Millisecond)
		close(gate) // the title arrives after the answer
		s.all()
		commits := walCommits(t, wal) - before
		_, b := e.do("GET", "/api/sessions/"+id, nil)
		if title := decode[sessionResponse](t, b).Title; title != "Late title" {
			t.Fatalf("title %q stored; events %v", title, s.types())
		}
		if commits == 2 {
			return
		}
		if attempt == 3 { // a loaded machine may deliver the title later than the wait
			t.Fatalf("a run made %d commits; want 2 (user message; answer with usage and title)", commits)
		}
	}
}
