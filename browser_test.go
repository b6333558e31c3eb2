package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// webDriver is a minimal W3C WebDriver client (chromedriver's HTTP API) over net/http.
type webDriver struct {
	t    *testing.T
	base string // http://127.0.0.1:PORT/session/ID
}

// elementKey is the W3C key of an element reference.
const elementKey = "element-6066-11e4-a52e-4f735466cecf"

// startBrowser starts chromedriver and a headless Chromium session. Without them the
// test is skipped, unless AGENTD_BROWSER_TEST=1 (set by .ci/run) makes that a failure.
func startBrowser(t *testing.T) *webDriver {
	t.Helper()
	driver, err1 := exec.LookPath("chromedriver")
	browser, err2 := lookPathAny("chromium", "chromium-browser", "google-chrome")
	if err1 != nil || err2 != nil {
		msg := "browser test needs chromedriver and chromium (apt-get install chromium chromium-driver; .ci/run installs them)"
		if os.Getenv("AGENTD_BROWSER_TEST") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(driver, fmt.Sprintf("--port=%d", port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	root := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(root + "/status"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("chromedriver did not start")
		}
	}
	wd := &webDriver{t: t, base: root}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"browserName": "chrome",
		"goog:chromeOptions": map[string]any{"binary": browser, "args": []string{
			"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--no-first-run", "--disable-extensions", "--window-size=1280,800", "--user-data-dir=" + t.TempDir()}},
	}}}
	var sess struct {
		SessionID string `json:"sessionId"`
	}
	wd.call("POST", "/session", caps, &sess)
	wd.base = root + "/session/" + sess.SessionID
	t.Cleanup(func() { wd.call("DELETE", "", nil, nil) })
	return wd
}

func lookPathAny(names ...string) (string, error) {
	var err error
	for _, n := range names {
		var p string
		if p, err = exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	return "", err
}

// call sends one WebDriver command and decodes its "value" into out.
func (wd *webDriver) call(method, path string, body, out any) {
	wd.t.Helper()
	if err := wd.try(method, path, body, out); err != nil {
		wd.t.Fatal(err)
	}
}

// errStale is WebDriver's answer for an element the page has replaced since it was
// found (the chat page re-renders lists as events arrive).
var errStale = errors.New("stale element reference")

// try is call that returns the failure instead of ending the test.
func (wd *webDriver) try(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, wd.base+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var env struct{ Value json.RawMessage }
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &env)
	if resp.StatusCode != 200 {
		if bytes.Contains(b, []byte(errStale.Error())) {
			return errStale
		}
		return fmt.Errorf("webdriver %s %s = %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		json.Unmarshal(env.Value, out)
	}
	return nil
}

// js runs script in the page and returns its result.
func (wd *webDriver) js(script string, args ...any) any {
	wd.t.Helper()
	var v any
	wd.call("POST", "/execute/sync", map[string]any{"script": script, "args": append([]any{}, args...)}, &v)
	return v
}

// waitJS polls the expression until it is truthy (10 s at most).
func (wd *webDriver) waitJS(what, expr string, args ...any) {
	wd.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if v := wd.js("return Boolean("+expr+")", args...); v == true {
			return
		}
		if time.Now().After(deadline) {
			wd.t.Fatalf("timed out waiting for %s; page text:\n%s", what, wd.js("return document.body.innerText"))
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// find waits for the first element matching css and returns its reference.
func (wd *webDriver) find(css string) string {
	wd.t.Helper()
	wd.waitJS(css, "document.querySelector(arguments[0])", css)
	var el map[string]string
	wd.call("POST", "/element", map[string]string{"using": "css selector", "value": css}, &el)
	return el[elementKey]
}

func (wd *webDriver) click(css string) {
	wd.t.Helper()
	wd.onElement(css, "/click", map[string]any{})
}

func (wd *webDriver) typeInto(css, text string) {
	wd.t.Helper()
	wd.onElement(css, "/value", map[string]string{"text": text})
}

// onElement sends command to the element matching css, finding it again when the
// page replaced it between the find and the command.
func (wd *webDriver) onElement(css, command string, body any) {
	wd.t.Helper()
	for range 5 {
		err := wd.try("POST", "/element/"+wd.find(css)+command, body, nil)
		if err == nil {
			return
		}
		if !errors.Is(err, errStale) {
			wd.t.Fatal(err)
		}
	}
	wd.t.Fatalf("%s %s: the element kept being replaced", css, command)
}

// screenshot writes testdata/screenshots/NAME.png when AGENTD_SCREENSHOTS=1.
func (wd *webDriver) screenshot(name string) {
	wd.t.Helper()
	if os.Getenv("AGENTD_SCREENSHOTS") != "1" {
		return
	}
	var b64 string
	wd.call("GET", "/screenshot", nil, &b64)
	png, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		wd.t.Fatal(err)
	}
	os.MkdirAll(filepath.Join("testdata", "screenshots"), 0o755)
	if err := os.WriteFile(filepath.Join("testdata", "screenshots", name+".png"), png, 0o644); err != nil {
		wd.t.Fatal(err)
	}
}

// TestChatPageInBrowser drives the chat page in headless Chromium against the real
// server with a token, a scripted model and the test binary as an MCP server: the
// token prompt, a streamed answer, one tool call approved (it asks an elicitation
// question, answered through the generated form) and one rejected with a reason,
// a reload in the middle of an answer, the YOLO toggle, rename and delete; then the
// README's offline demo (Enter sends).
func TestChatPageInBrowser(t *testing.T) {
	wd := startBrowser(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	released := false
	release := func() {
		if !released {
			released = true
			close(hold)
		}
	}
	defer release()
	f := newFakeOpenAI(t,
		fakeTurn{Text: []string{"Hello", " from", " **agentd**", " <b>raw</b>"}},
		fakeTurn{ToolCalls: []fakeToolCall{{ID: "call_1", Name: "ask", Args: `{"text":"name?"}`}, {ID: "call_2", Name: "pid", Args: `{}`}}},
		fakeTurn{Text: []string{"Done with the tools."}},
		fakeTurn{Text: []string{"Once upon a time", " there was a server."}, Hold: hold})
	mcpYAML := fmt.Sprintf("    toolsets:\n      - type: mcp\n        command: %q\n        args: [\"-test.run=^$\"]\n        env:\n          MCP_TEST_SERVER: \"1\"\n          GORACE: atexit_sleep_ms=0\n", exe)
	e := newTestEnv(t, map[string]string{"a.yaml": fakeAgentYAML(f.URL, mcpYAML)}, func(c *serverConfig) { c.token = "browser-token" })
	e.setenv("OPENAI_API_KEY", "test-key")
	e.token = "browser-token"

	// The page loads without a token and asks for it at the first API call.
	wd.call("POST", "/url", map[string]string{"url": e.srv.URL + "/"}, nil)
	wd.waitJS("the token dialog", "document.querySelector('#auth').open")
	wd.typeInto("#token", "browser-token")
	wd.click("#auth-form button")
	wd.waitJS("the agent list", "document.querySelector('#agent').value === 'a'")
	wd.waitJS("the agent names", "[...document.querySelectorAll('#agent-name option')].some(o => o.value === 'root')")

	// A streamed answer, its markdown rendered, raw HTML shown as text.
	wd.typeInto("#input", "Hello")
	wd.click("#send")
	wd.waitJS("the answer", "document.querySelector('.msg.assistant:not(.streaming) strong')?.textContent === 'agentd'")
	if got := wd.js("return document.querySelector('.msg.assistant .body').textContent"); got != "Hello from agentd <b>raw</b>" {
		t.Fatalf("answer text = %q", got)
	}
	if n := wd.js("return document.querySelectorAll('.msg.assistant b').length"); n != 0.0 {
		t.Fatalf("model HTML became %v elements", n)
	}
	wd.waitJS("the usage", "document.querySelector('#usage').textContent.includes('12 in · 5 out')")
	sid := wd.js("return location.hash.slice(3)").(string)
	wd.waitJS("the generated title", "document.querySelector('#sessions li[data-id=\"'+arguments[0]+'\"]')?.textContent.includes('Test title')", sid)

	// Tool calls: approve the first (it asks a question), reject the second.
	wd.typeInto("#input", "Use the tools")
	wd.click("#send")
	wd.find(`.tool[data-id="call_1"] button[data-action="approve"]`)
	if got := wd.js("return document.querySelector('.tool[data-id=\"call_1\"] .args').textContent"); !strings.Contains(got.(string), `"text": "name?"`) {
		t.Fatalf("tool arguments shown = %q", got)
	}
	wd.screenshot("confirmation")
	wd.click(`.tool[data-id="call_1"] button[data-action="approve"]`)
	wd.typeInto(`form.elicitation input[name="name"]`, "Ada")
	wd.click(`form.elicitation button[type="submit"]`)
	wd.waitJS("the elicited answer", "document.querySelector('.tool[data-id=\"call_1\"] .result')?.textContent.includes('Ada')")
	wd.typeInto(`.tool[data-id="call_2"] input.reason`, "not today")
	wd.click(`.tool[data-id="call_2"] button[data-action="reject"]`)
	wd.waitJS("the rejection", "document.querySelector('.tool.error[data-id=\"call_2\"] .result')?.textContent === 'The user rejected the tool call. Reason: not today'")
	wd.waitJS("the final answer", "[...document.querySelectorAll('.msg.assistant')].some(m => m.textContent.includes('Done with the tools.'))")
	wd.waitJS("the run's end", "!document.querySelector('#send').disabled")
	wd.screenshot("idle")

	// YOLO reaches the server.
	wd.click("#yolo")
	waitFor(t, "tools_approved", func() bool {
		_, b := e.do("GET", "/api/sessions/"+sid, nil)
		return strings.Contains(string(b), `"tools_approved":true`)
	})

	// A new chat; reload while the answer is streaming. The run is detached, so it
	// goes on, and the page replays it from the event log and follows it to its end.
	wd.click("#new-session")
	wd.typeInto("#input", "Tell me a story")
	wd.click("#send")
	wd.waitJS("the first delta", "document.querySelector('.msg.assistant.streaming')?.textContent.includes('Once upon a time')")
	wd.screenshot("streaming")
	sid2 := wd.js("return location.hash.slice(3)").(string)
	wd.call("POST", "/refresh", map[string]any{}, nil)
	wd.waitJS("the replayed delta", "document.querySelector('.msg.assistant.streaming')?.textContent.includes('Once upon a time')")
	if got := wd.js("return [[...document.querySelectorAll('.msg.user')].map(m => m.textContent).join('|'), location.hash.slice(3), document.querySelector('#auth').open]"); fmt.Sprint(got) != fmt.Sprint([]any{"Tell me a story", sid2, false}) {
		t.Fatalf("after reload: [user messages, session, token dialog open] = %v", got)
	}
	release()
	wd.waitJS("the send button", "!document.querySelector('#send').disabled")
	if got := wd.js("return [...document.querySelectorAll('.msg.assistant')].map(m => m.textContent).join('|')"); !strings.Contains(fmt.Sprint(got), "Once upon a time there was a server.") || strings.Count(fmt.Sprint(got), "Once upon") != 1 {
		t.Fatalf("after reload, the answer = %q; want it once, whole", got)
	}

	// Star the first session (the session's starred field): it is listed first.
	wd.click(`#sessions li[data-id="` + sid + `"] .star`)
	wd.waitJS("the star", "document.querySelector('#sessions li:first-child .star.on')?.parentElement.dataset.id === arguments[0]", sid)
	if _, b := e.do("GET", "/api/sessions/"+sid, nil); !strings.Contains(string(b), `"starred":true`) {
		t.Fatalf("stored session after starring: %s", b)
	}

	// Rename the first session, delete the second.
	wd.click(`#sessions li[data-id="` + sid + `"] .rename`)
	// Ctrl+A, then the new title and Enter (WebDriver's clear would blur the field).
	wd.typeInto("#sessions .rename-input", "\uE009a\uE000Renamed chat\uE007")
	wd.waitJS("the new title", "document.querySelector('#sessions li[data-id=\"'+arguments[0]+'\"] .session-title')?.textContent === 'Renamed chat'", sid)
	if _, b := e.do("GET", "/api/sessions/"+sid, nil); !strings.Contains(string(b), `"title":"Renamed chat"`) {
		t.Fatalf("stored session after rename: %s", b)
	}
	del := `#sessions li[data-id="` + sid2 + `"] .delete`
	wd.click(del)
	wd.click(del)
	wd.waitJS("the deleted session to go", "!document.querySelector('#sessions li[data-id=\"'+arguments[0]+'\"]')", sid2)
	if code, _ := e.do("GET", "/api/sessions/"+sid2, nil); code != 404 {
		t.Fatalf("deleted session = %d; want 404", code)
	}
	// Stars an older page kept in localStorage move to the server once.
	sid3 := e.newSession(map[string]any{"title": "Starred here before"})
	wd.js("localStorage.setItem('agentd-starred', JSON.stringify([arguments[0]]))", sid3)
	wd.call("POST", "/refresh", map[string]any{}, nil)
	wd.waitJS("the moved star", "document.querySelector('#sessions li[data-id=\"'+arguments[0]+'\"] .star.on') !== null && localStorage.getItem('agentd-starred') === null", sid3)
	if _, b := e.do("GET", "/api/sessions/"+sid3, nil); !strings.Contains(string(b), `"starred":true`) {
		t.Fatalf("session starred in localStorage, after the page loaded: %s", b)
	}
	wd.noError()

	// The README's offline demo, served by the real command line on a real listener.
	dir, _ := os.Getwd()
	addr, stop := startServe(t, "testdata/demo.yaml", "--fake", "testdata/demo-cassette.yaml",
		"-l", "127.0.0.1:0", "--working-dir", dir, "-s", filepath.Join(t.TempDir(), "s.db"))
	defer stop()
	wd.call("POST", "/url", map[string]string{"url": "http://" + addr + "/"}, nil)
	wd.waitJS("the demo agent", "document.querySelector('#agent').value === 'demo'")
	wd.typeInto("#input", "What can you do?\uE007")
	wd.waitJS("the demo answer", "document.querySelector('.msg.assistant:not(.streaming)')?.textContent.includes('I am the agentd demo agent')")
	wd.noError()
}

// noError fails the test when the page shows its error banner.
func (wd *webDriver) noError() {
	wd.t.Helper()
	if shown := wd.js("return document.querySelector('#error').hidden"); shown != true {
		wd.t.Fatalf("the page shows an error: %v", wd.js("return document.querySelector('#error-text').textContent"))
	}
}
