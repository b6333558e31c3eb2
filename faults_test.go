package main

// faults_test.go: what clients and operators see when the session database fails: a
// lock held by another process, a full disk, a read-only or corrupt file, a newer schema.

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdDBLock takes the database's write lock from a second connection, as another
// process (the reference, a backup tool) would, and returns its release.
func holdDBLock(t *testing.T, path string) (release func()) {
	t.Helper()
	// The busy timeout lets BEGIN EXCLUSIVE wait out a write the server is making at
	// this moment instead of failing the test at random.
	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN EXCLUSIVE"); err != nil {
		t.Fatal(err)
	}
	done := false
	release = func() {
		if !done {
			done = true
			conn.ExecContext(context.Background(), "COMMIT")
			conn.Close()
			db.Close()
		}
	}
	t.Cleanup(release)
	return release
}

// setWriterPragma sets a pragma on the server's one writer connection (the pool has
// exactly one, so it sticks): a short busy_timeout, or max_page_count, which makes
// SQLite answer SQLITE_FULL exactly as on a full disk.
func setWriterPragma(t *testing.T, e *apiTest, pragma string) {
	t.Helper()
	if _, err := e.s.st.w.Exec("PRAGMA " + pragma); err != nil {
		t.Fatal(err)
	}
}

// fillDatabase caps the file at its current size: the next write that needs a page fails.
func fillDatabase(t *testing.T, e *apiTest) {
	t.Helper()
	var pages int
	if err := e.s.st.w.QueryRow("PRAGMA page_count").Scan(&pages); err != nil {
		t.Fatal(err)
	}
	setWriterPragma(t, e, fmt.Sprintf("max_page_count = %d", pages))
}

// bigPermissions is a permissions body needing several new pages.
func bigPermissions() map[string]any {
	var allow []string
	for i := range 60 {
		allow = append(allow, fmt.Sprintf("shell:cmd=%04d*%s", i, strings.Repeat("x", 900)))
	}
	return map[string]any{"permissions": map[string]any{"allow": allow}}
}

// checkFaultAnswer checks a database fault answer names the condition without leaking
// the file's path or SQL.
func checkFaultAnswer(t *testing.T, e *apiTest, what string, body []byte, want string) {
	t.Helper()
	msg := decode[map[string]any](t, body)["error"]
	s, _ := msg.(string)
	if !strings.Contains(s, want) || strings.Contains(s, e.base) || strings.Contains(s, ".db") ||
		strings.Contains(strings.ToUpper(s), "INSERT") || strings.Contains(strings.ToUpper(s), "UPDATE") {
		t.Errorf("%s: error = %q; want it to say %q and nothing about paths or SQL", what, s, want)
	}
}

func TestDatabaseBusyIs503WithRetryAfter(t *testing.T) {
	e := newTestEnv(t, nil)
	id := e.newSession(nil)
	setWriterPragma(t, e, "busy_timeout = 50")
	release := holdDBLock(t, filepath.Join(e.base, "session.db"))

	resp, err := http.Post(e.srv.URL+"/api/sessions", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("create while locked: %d Retry-After=%q %s; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	checkFaultAnswer(t, e, "create", body, "busy")
	code, body := e.do("PATCH", "/api/sessions/"+id+"/title", map[string]string{"title": "t"})
	if code != 503 {
		t.Fatalf("title while locked: %d %s; want 503", code, body)
	}
	checkFaultAnswer(t, e, "title", body, "busy")
	// Reads are not blocked by a writer in WAL mode.
	if code, body := e.do("GET", "/api/sessions/"+id, nil); code != 200 {
		t.Fatalf("read while locked: %d %s", code, body)
	}
	release()
	if code, body := e.do("PATCH", "/api/sessions/"+id+"/title", map[string]string{"title": "t"}); code != 200 {
		t.Fatalf("title after release: %d %s", code, body)
	}
}

func TestDatabaseFullIs507(t *testing.T) {
	e := newTestEnv(t, nil)
	id := e.newSession(nil)
	fillDatabase(t, e)
	code, body := e.do("PATCH", "/api/sessions/"+id+"/permissions", bigPermissions())
	if code != 507 {
		t.Fatalf("permissions on a full disk: %d %s; want 507", code, body)
	}
	checkFaultAnswer(t, e, "permissions", body, "disk is full")
	// Nothing half-written: the session is as it was.
	if code, body := e.do("GET", "/api/sessions/"+id, nil); code != 200 || strings.Contains(string(body), "shell:cmd") {
		t.Fatalf("session after the failed write: %d %s", code, body)
	}
}

func TestStartRefusesCorruptPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := openStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if err := st.createSession(context.Background(), &sessionRecord{Title: fmt.Sprintf("%03d %s", i, strings.Repeat("t", 1000))}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	// Garble the headers of a run of b-tree pages in the middle of the file; the
	// header page and the schema stay intact, so only reading those pages notices.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	pages := fi.Size() / 4096
	for p := pages / 2; p < pages/2+5; p++ {
		f.WriteAt([]byte{0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42, 0x42}, p*4096)
	}
	f.Close()
	before, _ := os.ReadFile(path)
	_, err = openStore(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("openStore on corrupt pages: %v; want a clear 'corrupt' error", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("the corrupt file was changed")
	}
}

func TestStartRefusesReadOnlyDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.db")
	st, err := openStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if err := os.Chmod(path, 0o400); err != nil { // private and read-only, for its owner
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		_, err := openStore(context.Background(), path)
		if err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Fatalf("openStore on a read-only file: %v; want a clear 'read-only' error", err)
		}
		return
	}
	// Root writes through file modes, so the check runs in a copy of the test binary
	// as nobody, who owns the file and for whom it is really read-only (the directory
	// stays writable, so only the file itself is read-only).
	exe := copyTestBinary(t, dir)
	for _, d := range []string{filepath.Dir(dir), dir} {
		os.Chmod(d, 0o777)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "AGENTD_TEST_OPEN_STORE="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "read-only") {
		t.Fatalf("openStore as nobody on a read-only file: %v\n%s\nwant a clear 'read-only' error", err, out)
	}
}

// copyTestBinary copies the running test binary to dir, where other users can run it.
func copyTestBinary(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "agentd.test")
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// testOpenStoreMain is the helper process of TestStartRefusesReadOnlyDatabase.
func testOpenStoreMain(path string) int {
	st, err := openStore(context.Background(), path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	st.Close()
	return 0
}

func TestStartWarnsAboutNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := openStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.w.Exec("INSERT INTO migrations (id, name, description, applied_at) VALUES (20, '020_from_the_future', 'x', '2030-01-01T00:00:00Z')"); err != nil {
		t.Fatal(err)
	}
	id := newUUID()
	if err := st.createSession(context.Background(), &sessionRecord{ID: id}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	lg := &mcpTestLog{t: t}
	st, err = openStoreLog(context.Background(), path, slog.New(lg))
	if err != nil {
		t.Fatalf("a newer schema must not stop the start: %v", err)
	}
	defer st.Close()
	if !lg.contains("newer schema") || !lg.contains("020_from_the_future") {
		t.Fatalf("no warning naming the unknown migration; log: %q", lg.lines)
	}
	if _, err := st.session(context.Background(), id); err != nil {
		t.Fatal(err)
	}
}

func withSaveRetry(d time.Duration) testOption {
	return func(c *serverConfig) { c.saveRetryFor = d }
}

// newGatedRun starts a server whose model answers text once gate is closed, with the
// writer's busy timeout short so a held lock fails writes quickly.
func newGatedRun(t *testing.T, retry time.Duration, text ...string) (e *apiTest, id string, gate chan struct{}) {
	t.Helper()
	gate = make(chan struct{})
	f := newFakeOpenAI(t, fakeTurn{Text: text, Gate: gate})
	t.Cleanup(func() { // a test that fails before opening the gate must not hang the server's Close
		select {
		case <-gate:
		default:
			close(gate)
		}
	})
	e = newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, "")}, withSaveRetry(retry))
	e.setenv("OPENAI_API_KEY", "test-key")
	id = e.newSession(nil)
	setWriterPragma(t, e, "busy_timeout = 50")
	return e, id, gate
}

// storedAnswer returns the session's messages as stored.
func storedSession(t *testing.T, e *apiTest, id string) sessionResponse {
	t.Helper()
	code, b := e.do("GET", "/api/sessions/"+id, nil)
	if code != 200 {
		t.Fatalf("GET session: %d %s", code, b)
	}
	return decode[sessionResponse](t, b)
}

// lastTwo are the types of the stream's last two events, leaving out session_title
// (a late title may follow stream_stopped).
func lastTwo(s *sseStream) (string, string) {
	ty := withoutTitle(s.types())
	if len(ty) < 2 {
		return "", ""
	}
	return ty[len(ty)-2], ty[len(ty)-1]
}

// lastError is the text of the stream's last error event.
func lastError(s *sseStream) string {
	for i := len(s.events) - 1; i >= 0; i-- {
		if s.events[i]["type"] == "error" {
			msg, _ := s.events[i]["error"].(string)
			return msg
		}
	}
	return ""
}

func TestRunAnswerIsStoredOnceTheLockIsReleased(t *testing.T) {
	e, id, gate := newGatedRun(t, time.Minute, "Ahoy", " there")
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "Hello!"}})
	s.until("stream_started")
	release := holdDBLock(t, filepath.Join(e.base, "session.db"))
	close(gate)
	s.until("token_usage") // the answer and its usage were shown while the lock was held
	release()
	for _, ev := range s.all() {
		if ev["type"] == "error" {
			t.Fatalf("error after the lock was released: %v", ev)
		}
	}
	if _, last := lastTwo(s); last != "stream_stopped" {
		t.Fatalf("events = %v; want stream_stopped last", s.types())
	}
	got := storedSession(t, e, id)
	if len(got.Messages) != 2 || got.Messages[1].Message.Content != "Ahoy there" || got.InputTokens != 12 || got.OutputTokens != 5 {
		t.Fatalf("stored = %+v; want the answer and its usage", got)
	}
}

func TestRunTellsTheClientWhenTheAnswerCannotBeStored(t *testing.T) {
	e, id, gate := newGatedRun(t, 300*time.Millisecond, "Ahoy", " there")
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "Hello!"}})
	s.until("stream_started")
	release := holdDBLock(t, filepath.Join(e.base, "session.db"))
	close(gate)
	s.all()
	if a, b := lastTwo(s); a != "error" || b != "stream_stopped" {
		t.Fatalf("events = %v; want error then stream_stopped at the end", s.types())
	}
	msg := lastError(s)
	if !strings.Contains(msg, "not saved") || !strings.Contains(msg, "busy") {
		t.Fatalf("error = %q; want it to say the answer was not saved because the database is busy", msg)
	}
	release()
	if got := storedSession(t, e, id); len(got.Messages) != 1 {
		t.Fatalf("stored %d messages; the client was told only the question was kept", len(got.Messages))
	}
}

func TestRunOnAFullDiskTellsTheClient(t *testing.T) {
	e, id, gate := newGatedRun(t, 300*time.Millisecond, strings.Repeat("a", 40000))
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"role": "user", "content": "Hello!"}})
	s.until("stream_started")
	fillDatabase(t, e)
	close(gate)
	s.all()
	if a, b := lastTwo(s); a != "error" || b != "stream_stopped" {
		t.Fatalf("events = %v; want error then stream_stopped at the end", s.types())
	}
	if msg := lastError(s); !strings.Contains(msg, "not saved") || !strings.Contains(msg, "disk is full") {
		t.Fatalf("error = %q", msg)
	}
}

func TestRunStartOnALockedDatabaseIs503(t *testing.T) {
	e, id, gate := newGatedRun(t, time.Minute, "ok")
	close(gate)
	release := holdDBLock(t, filepath.Join(e.base, "session.db"))
	question := []map[string]any{{"role": "user", "content": "one"}}
	s := e.run("/api/sessions/"+id+"/agent/a", question)
	body, _ := io.ReadAll(s.resp.Body)
	if s.resp.StatusCode != 503 || s.resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "busy") {
		t.Fatalf("run on a locked database: %d Retry-After=%q %s; want 503 with Retry-After", s.resp.StatusCode, s.resp.Header.Get("Retry-After"), body)
	}
	release()
	// Nothing of the refused run was kept, and the session runs normally again.
	if got := storedSession(t, e, id); len(got.Messages) != 0 {
		t.Fatalf("stored %d messages of a refused run", len(got.Messages))
	}
	s = e.run("/api/sessions/"+id+"/agent/a", question)
	s.all()
	if _, last := lastTwo(s); last != "stream_stopped" {
		t.Fatalf("events = %v", s.types())
	}
	if got := storedSession(t, e, id); len(got.Messages) != 2 {
		t.Fatalf("stored %d messages; want the question and the answer (events %v)", len(got.Messages), s.types())
	}
}
