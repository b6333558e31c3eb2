package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// apiTest is a running server over the real mux, a real SQLite file and a directory
// of agent YAML files.
type apiTest struct {
	t    testing.TB
	srv  *httptest.Server
	s    *server
	base string
	dir  string // agent files
	root string // --working-dir
	opts []testOption

	token string // sent as a bearer token when set (servers started by startServe)

	mu   sync.Mutex
	env  map[string]string
	stop func()
}

type testOption func(*serverConfig)

// newTestEnv writes files (name → YAML) into an agent directory and starts a server.
func newTestEnv(t testing.TB, files map[string]string, opts ...testOption) *apiTest {
	t.Helper()
	base := t.TempDir()
	e := &apiTest{t: t, base: base, dir: filepath.Join(base, "agents"), root: filepath.Join(base, "work"), env: map[string]string{}, opts: opts}
	os.MkdirAll(e.dir, 0o755)
	os.MkdirAll(e.root, 0o755)
	for name, body := range files {
		e.write(name, body)
	}
	e.start()
	t.Cleanup(func() { e.stop() })
	return e
}

// start opens the store and the agent sources and serves them.
func (e *apiTest) start() {
	t := e.t
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, bench := t.(*testing.B); bench {
		log = slog.New(slog.DiscardHandler)
	}
	ctx := context.Background()
	st, err := openStoreLog(ctx, filepath.Join(e.base, "session.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	procs := newProcGroups(st, log)
	procs.reap(ctx)
	srcs, err := newAgentSources(ctx, e.dir, sourceOptions{root: e.root, getenv: e.getenv, log: log, procs: procs})
	if err != nil {
		t.Fatal(err)
	}
	cfg := serverConfig{root: e.root, getenv: e.getenv, clientEnv: clientEnv{HTTP: &http.Client{}, Getenv: e.getenv}}
	for _, o := range e.opts {
		o(&cfg)
	}
	if e.s, err = newServer(st, srcs, log, cfg); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(e.s)
	e.stop = func() {
		e.s.shutdown() // detached runs end too
		e.srv.CloseClientConnections()
		e.srv.Close()
		e.s.close()
		srcs.close()
		st.Close()
	}
}

// restart stops the server and starts a new one on the same database and agents.
func (e *apiTest) restart() {
	e.stop()
	e.start()
}

func (e *apiTest) getenv(k string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.env[k]
}

func (e *apiTest) setenv(k, v string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if v == "" {
		delete(e.env, k)
		return
	}
	e.env[k] = v
}

// testWriter routes server logs into the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (e *apiTest) write(name, body string) {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), []byte(body), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

// do sends a request with an optional JSON body and returns status and body.
func (e *apiTest) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		r = strings.NewReader(string(j))
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, r)
	if r != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// decode unmarshals b into v or fails the test.
func decode[T any](t testing.TB, b []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return v
}

// newSession creates a session and returns its id.
func (e *apiTest) newSession(body any) string {
	e.t.Helper()
	code, b := e.do("POST", "/api/sessions", body)
	if code != 200 {
		e.t.Fatalf("create session: %d %s", code, b)
	}
	return decode[map[string]any](e.t, b)["id"].(string)
}

// sseStream reads events of a run as a client does.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	sc     *bufio.Scanner
	cancel context.CancelFunc
	events []map[string]any
	raw    []string // the JSON of each event, as sent

	withIDs bool    // `id:` lines are allowed (GET …/events, detached runs)
	ids     []int64 // with withIDs: each event's id, 0 when it had none
}

// run starts an agent run and returns the open stream (status checked by caller
// through resp.StatusCode).
func (e *apiTest) run(path string, msgs any) *sseStream {
	e.t.Helper()
	j, _ := json.Marshal(msgs)
	return e.openStream("POST", path, string(j), nil)
}

// openStream sends a request and returns its response as an open SSE stream, which
// accepts `id:` lines when the request asks for a log or a detached run.
func (e *apiTest) openStream(method, path, body string, header http.Header) *sseStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, method, e.srv.URL+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	s := &sseStream{t: e.t, resp: resp, sc: bufio.NewScanner(resp.Body), cancel: cancel}
	s.withIDs = strings.Contains(path, "/events") || strings.Contains(path, "detach=true") || req.Header.Get("Prefer") != ""
	s.sc.Buffer(make([]byte, 1<<20), 16<<20)
	e.t.Cleanup(func() { cancel(); resp.Body.Close() })
	return s
}

// next returns the next event, or nil at the end of the stream. It fails the test if
// a frame is not exactly `data: {json}` (after an `id: N` line when withIDs) followed
// by a blank line.
func (s *sseStream) next() map[string]any {
	s.t.Helper()
	var id int64
	for s.sc.Scan() {
		line := s.sc.Text()
		if line == "" || strings.HasPrefix(line, ":") {
			continue
		}
		if v, ok := strings.CutPrefix(line, "id: "); ok && s.withIDs && id == 0 {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				s.t.Fatalf("bad id line %q", line)
			}
			id = n
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			s.t.Fatalf("unexpected SSE line %q", line)
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			s.t.Fatalf("event is not JSON: %q", data)
		}
		s.events = append(s.events, ev)
		s.raw = append(s.raw, data)
		if s.withIDs {
			s.ids = append(s.ids, id)
		}
		return ev
	}
	return nil
}

// until reads events up to and including the first of type typ.
func (s *sseStream) until(typ string) map[string]any {
	s.t.Helper()
	for {
		ev := s.next()
		if ev == nil {
			s.t.Fatalf("stream ended before %s; got %v", typ, s.types())
		}
		if ev["type"] == typ {
			return ev
		}
	}
}

// all reads the stream to its end.
func (s *sseStream) all() []map[string]any {
	for s.next() != nil {
	}
	return s.events
}

// types lists the event types read so far.
func (s *sseStream) types() []string {
	var out []string
	for _, ev := range s.events {
		out = append(out, ev["type"].(string))
	}
	return out
}

// waitFor polls cond until it holds or a generous deadline passes; used for
// asynchronous effects such as hot reload, not to assert speed.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
