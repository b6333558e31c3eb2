package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// The published AWS credentials of the SigV4 test suite, and keys for the fake endpoint.
var (
	sigv4SuiteCreds = awsCreds{AccessKey: "AKIDEXAMPLE", SecretKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
	bedrockTestKeys = awsCreds{AccessKey: "AKIATESTKEY", SecretKey: "test/secret+key", SessionToken: "FwoGZXIvYXdzEXAMPLETOKEN"}
)

const bedrockTestModel = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"

// The signer against the AWS Signature Version 4 test suite (get-vanilla and
// get-vanilla-query-order-key-case, service "service", 2015-08-30T12:36:00Z).
func TestSigV4TestSuite(t *testing.T) {
	at := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	for _, tt := range []struct{ url, sig string }{
		{"https://example.amazonaws.com/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"https://example.amazonaws.com/?Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
	} {
		u, _ := url.Parse(tt.url)
		h := http.Header{}
		sigv4Sign("GET", u, h, splicedJSON{}, sigv4SuiteCreds, "us-east-1", "service", at)
		want := "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + tt.sig
		if got := h.Get("Authorization"); got != want {
			t.Errorf("%s: Authorization =\n%s\nwant\n%s", tt.url, got, want)
		}
		if h.Get("X-Amz-Date") != "20150830T123600Z" {
			t.Errorf("X-Amz-Date = %q", h.Get("X-Amz-Date"))
		}
	}
}

// ---- a fake Bedrock runtime endpoint ----

// fakeBedrock checks each request's SigV4 signature (or bearer token) and answers with
// scripted event-stream bodies in order.
type fakeBedrock struct {
	*httptest.Server
	t       testing.TB
	keys    awsCreds // expected signing keys
	bearer  string   // when set, a bearer token is expected instead
	region  string
	mu      sync.Mutex
	replies [][]byte
	reqs    []fakeBedrockRequest
}

type fakeBedrockRequest struct {
	EscapedPath string
	Header      http.Header
	Body        map[string]any
	Raw         []byte
}

func newFakeBedrock(t testing.TB, keys awsCreds, region string, replies ...[]byte) *fakeBedrock {
	f := &fakeBedrock{t: t, keys: keys, region: region, replies: replies}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeBedrock) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var body map[string]any
	if err := json.Unmarshal(raw, &body); err != nil {
		f.t.Errorf("request body is not JSON: %v", err)
	}
	var authErr error
	if f.bearer != "" {
		if r.Header.Get("Authorization") != "Bearer "+f.bearer || r.Header.Get("X-Amz-Date") != "" {
			authErr = fmt.Errorf("want only the bearer token; got Authorization %q", r.Header.Get("Authorization"))
		}
	} else {
		authErr = checkSigV4(r, raw, f.keys, f.region, time.Now())
	}
	if authErr != nil {
		w.Header().Set("X-Amzn-ErrorType", "InvalidSignatureException")
		w.WriteHeader(403)
		json.NewEncoder(w).Encode(map[string]string{"message": authErr.Error()})
		return
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, fakeBedrockRequest{EscapedPath: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body, Raw: raw})
	if len(f.replies) == 0 {
		f.mu.Unlock()
		f.t.Errorf("unexpected request %s", r.URL)
		w.WriteHeader(500)
		return
	}
	reply := f.replies[0]
	f.replies = f.replies[1:]
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.Write(reply)
}

func (f *fakeBedrock) requests() []fakeBedrockRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeBedrockRequest(nil), f.reqs...)
}

// checkSigV4 recomputes the signature of a received request from the AWS algorithm, as
// the service does, and says what is wrong with it.
func checkSigV4(r *http.Request, body []byte, keys awsCreds, region string, now time.Time) error {
	rest, ok := strings.CutPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	if !ok {
		return fmt.Errorf("authorization %q is not AWS4-HMAC-SHA256", r.Header.Get("Authorization"))
	}
	parts := map[string]string{}
	for _, p := range strings.Split(rest, ", ") {
		k, v, _ := strings.Cut(p, "=")
		parts[k] = v
	}
	amzDate := r.Header.Get("X-Amz-Date")
	at, err := time.Parse("20060102T150405Z", amzDate)
	if err != nil || at.Sub(now).Abs() > 5*time.Minute {
		return fmt.Errorf("X-Amz-Date %q is not within 5 minutes of now", amzDate)
	}
	scope := amzDate[:8] + "/" + region + "/bedrock/aws4_request"
	if parts["Credential"] != keys.AccessKey+"/"+scope {
		return fmt.Errorf("credential %q; want %s/%s", parts["Credential"], keys.AccessKey, scope)
	}
	signed := strings.Split(parts["SignedHeaders"], ";")
	if !sort.StringsAreSorted(signed) {
		return fmt.Errorf("signed headers %v are not sorted", signed)
	}
	must := []string{"content-type", "host", "x-amz-date"}
	if keys.SessionToken != "" {
		must = append(must, "x-amz-security-token")
		if r.Header.Get("X-Amz-Security-Token") != keys.SessionToken {
			return errors.New("session token missing")
		}
	}
	for _, h := range must {
		if !strings.Contains(";"+parts["SignedHeaders"]+";", ";"+h+";") {
			return fmt.Errorf("%s is not signed (%s)", h, parts["SignedHeaders"])
		}
	}
	var canonHeaders strings.Builder
	for _, h := range signed {
		v := strings.Join(r.Header.Values(h), ",")
		if h == "host" {
			v = r.Host
		}
		canonHeaders.WriteString(h + ":" + strings.TrimSpace(v) + "\n")
	}
	// Every service but S3 URI-encodes the path as received once more.
	var uri strings.Builder
	for _, c := range []byte(r.URL.EscapedPath()) {
		if c == '/' || c == '-' || c == '_' || c == '.' || c == '~' || (c >= '0' && c <= '9') || (c|0x20 >= 'a' && c|0x20 <= 'z') {
			uri.WriteByte(c)
		} else {
			uri.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
		}
	}
	bodySum := sha256.Sum256(body)
	canon := strings.Join([]string{r.Method, uri.String(), r.URL.RawQuery, canonHeaders.String(),
		parts["SignedHeaders"], hex.EncodeToString(bodySum[:])}, "\n")
	canonSum := sha256.Sum256([]byte(canon))
	mac := func(key []byte, s string) []byte {
		m := hmac.New(sha256.New, key)
		io.WriteString(m, s)
		return m.Sum(nil)
	}
	key := mac(mac(mac(mac([]byte("AWS4"+keys.SecretKey), amzDate[:8]), region), "bedrock"), "aws4_request")
	want := hex.EncodeToString(mac(key, "AWS4-HMAC-SHA256\n"+amzDate+"\n"+scope+"\n"+hex.EncodeToString(canonSum[:])))
	if !hmac.Equal([]byte(want), []byte(parts["Signature"])) {
		return fmt.Errorf("signature mismatch; canonical request:\n%s", canon)
	}
	return nil
}

// ---- event-stream encoding ----

// esFrame encodes one event-stream message with string headers and both CRCs.
func esFrame(headers map[string]string, payload string) []byte {
	names := make([]string, 0, len(headers))
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	var hb bytes.Buffer
	for _, k := range names {
		hb.WriteByte(byte(len(k)))
		hb.WriteString(k)
		hb.WriteByte(7)
		binary.Write(&hb, binary.BigEndian, uint16(len(headers[k])))
		hb.WriteString(headers[k])
	}
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(12+hb.Len()+len(payload)+4))
	binary.Write(&b, binary.BigEndian, uint32(hb.Len()))
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(b.Bytes()))
	b.Write(hb.Bytes())
	b.WriteString(payload)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(b.Bytes()))
	return b.Bytes()
}

func esEvent(typ, payload string) []byte {
	return esFrame(map[string]string{":message-type": "event", ":event-type": typ, ":content-type": "application/json"}, payload)
}

func esException(typ, msg string) []byte {
	p, _ := json.Marshal(map[string]string{"message": msg})
	return esFrame(map[string]string{":message-type": "exception", ":exception-type": typ, ":content-type": "application/json"}, string(p))
}

// bedrockTextReply streams text in deltas and ends the turn.
func bedrockTextReply(text ...string) []byte {
	b := esEvent("messageStart", `{"role":"assistant","p":"abc"}`)
	for _, s := range text {
		d, _ := json.Marshal(s)
		b = append(b, esEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":`+string(d)+`}}`)...)
	}
	b = append(b, esEvent("contentBlockStop", `{"contentBlockIndex":0}`)...)
	b = append(b, esEvent("messageStop", `{"stopReason":"end_turn"}`)...)
	return append(b, esEvent("metadata", `{"usage":{"inputTokens":25,"outputTokens":4,"totalTokens":29,"cacheReadInputTokens":7},"metrics":{"latencyMs":120}}`)...)
}

// bedrockToolReply streams some reasoning, then one tool call whose input arrives in two
// fragments.
func bedrockToolReply(id, name, args string) []byte {
	half := len(args) / 2
	frag := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	return bytes.Join([][]byte{
		esEvent("messageStart", `{"role":"assistant"}`),
		esEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"I should use "}}}`),
		esEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"the tool."}}}`),
		esEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"sig-1"}}}`),
		esEvent("contentBlockStop", `{"contentBlockIndex":0}`),
		esEvent("contentBlockStart", `{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":`+frag(id)+`,"name":`+frag(name)+`}}}`),
		esEvent("contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":`+frag(args[:half])+`}}}`),
		esEvent("contentBlockDelta", `{"contentBlockIndex":1,"delta":{"toolUse":{"input":`+frag(args[half:])+`}}}`),
		esEvent("contentBlockStop", `{"contentBlockIndex":1}`),
		esEvent("messageStop", `{"stopReason":"tool_use"}`),
		esEvent("metadata", `{"usage":{"inputTokens":50,"outputTokens":20,"totalTokens":70}}`),
	}, nil)
}

// bedrockKeyEnv is an environment holding keys.
func bedrockKeyEnv(keys awsCreds) map[string]string {
	return map[string]string{"AWS_ACCESS_KEY_ID": keys.AccessKey, "AWS_SECRET_ACCESS_KEY": keys.SecretKey, "AWS_SESSION_TOKEN": keys.SessionToken}
}

func newTestBedrock(t *testing.T, f *fakeBedrock, spec modelSpec, env map[string]string) modelClient {
	t.Helper()
	spec.Provider, spec.BaseURL = "amazon-bedrock", f.URL
	if spec.Model == "" {
		spec.Model = bedrockTestModel
	}
	c, err := newModelClient(spec, provEnv(env))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ---- tests ----

func TestBedrockTextAndToolRoundTrip(t *testing.T) {
	f := newFakeBedrock(t, bedrockTestKeys, "eu-west-3",
		bedrockToolReply("tooluse_1", "list_directory", `{"path":"."}`), bedrockTextReply("Two", " files."))
	temp := 0.5
	c := newTestBedrock(t, f, modelSpec{Temperature: &temp, ProviderOpts: map[string]any{"region": "eu-west-3"}},
		bedrockKeyEnv(bedrockTestKeys))
	tools := []toolDef{{Name: "list_directory", Description: "List a directory", Parameters: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"}}}`)}}
	msgs := []chatMessage{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "How many files?"}}
	evs, err := provCollect(t, c, &modelRequest{Messages: msgs, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	tu := provAssemble(t, evs)
	wantCalls := []toolCall{{ID: "tooluse_1", Type: "function", Function: functionCall{Name: "list_directory", Arguments: `{"path":"."}`}}}
	if !reflect.DeepEqual(tu.Calls, wantCalls) || tu.Stop != "tool_calls" || tu.Reasoning != "I should use the tool." || tu.Signature != "sig-1" {
		t.Errorf("turn = %+v", tu)
	}
	provCheckJSON(t, "usage", tu.Usage, messageUsage{InputTokens: 50, OutputTokens: 20})

	r := f.requests()[0]
	if r.EscapedPath != "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse-stream" {
		t.Errorf("path = %s", r.EscapedPath)
	}
	if r.Header.Get("Accept") != "application/vnd.amazon.eventstream" {
		t.Errorf("Accept = %q", r.Header.Get("Accept"))
	}
	cache := map[string]any{"cachePoint": map[string]any{"type": "default"}}
	provCheckJSON(t, "first body", r.Body, map[string]any{
		"system":   []any{map[string]any{"text": "Be brief."}, cache},
		"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"text": "How many files?"}, cache}}},
		"toolConfig": map[string]any{"tools": []any{
			map[string]any{"toolSpec": map[string]any{"name": "list_directory", "description": "List a directory",
				"inputSchema": map[string]any{"json": map[string]any{"type": "object", "properties": map[string]any{"path": map[string]any{"type": "string"}}}}}},
			cache,
		}, "toolChoice": map[string]any{"auto": map[string]any{}}},
		"inferenceConfig": map[string]any{"temperature": 0.5},
	})

	msgs = append(msgs,
		chatMessage{Role: "assistant", ReasoningContent: tu.Reasoning, ThinkingSignature: tu.Signature, ToolCalls: tu.Calls},
		chatMessage{Role: "tool", ToolCallID: "tooluse_1", Content: "FILE a\nFILE b\n"})
	evs, err = provCollect(t, c, &modelRequest{Messages: msgs, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	if tu := provAssemble(t, evs); tu.Text != "Two files." || tu.Stop != "stop" || tu.Usage.CachedInputTokens != 7 {
		t.Errorf("second turn = %+v", tu)
	}
	provCheckJSON(t, "second messages", f.requests()[1].Body["messages"], []any{
		map[string]any{"role": "user", "content": []any{map[string]any{"text": "How many files?"}}},
		map[string]any{"role": "assistant", "content": []any{
			map[string]any{"reasoningContent": map[string]any{"reasoningText": map[string]any{"text": "I should use the tool.", "signature": "sig-1"}}},
			map[string]any{"toolUse": map[string]any{"toolUseId": "tooluse_1", "name": "list_directory", "input": map[string]any{"path": "."}}},
			cache,
		}},
		map[string]any{"role": "user", "content": []any{
			map[string]any{"toolResult": map[string]any{"toolUseId": "tooluse_1", "content": []any{map[string]any{"text": "FILE a\nFILE b"}}}},
			cache,
		}},
	})
}

// A signature made with the wrong secret is refused by the fake endpoint: the verifier
// does check, and the 403 surfaces without the secret in it.
func TestBedrockWrongSecretRefused(t *testing.T) {
	f := newFakeBedrock(t, bedrockTestKeys, "us-east-1")
	wrong := bedrockTestKeys
	wrong.SecretKey = "not-the-secret"
	c := newTestBedrock(t, f, modelSpec{}, bedrockKeyEnv(wrong))
	_, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}})
	me := provModelError(t, err)
	if me.Status != 403 || !strings.Contains(me.Msg, "signature mismatch") || strings.Contains(me.Msg, "not-the-secret") {
		t.Errorf("error = %+v", me)
	}
}

func TestBedrockStreamErrors(t *testing.T) {
	good := bedrockTextReply("Hello")
	badMsgCRC := bytes.Clone(good)
	badMsgCRC[len(badMsgCRC)-1] ^= 0xff // the last message's CRC
	badPrelude := bytes.Clone(good)
	badPrelude[8] ^= 0xff // the first prelude's CRC
	badPayload := bytes.Clone(good)
	badPayload[len(good)-20] ^= 0x01 // inside the last payload; its CRC no longer matches
	tests := []struct {
		name       string
		reply      []byte
		wantStatus int
		midStream  bool
		wantMsg    string
	}{
		{"bad message CRC", badMsgCRC, 0, true, "message CRC mismatch"},
		{"bad prelude CRC", badPrelude, 0, false, "prelude CRC mismatch"},
		{"corrupted payload", badPayload, 0, true, "message CRC mismatch"},
		{"cut inside a frame", good[:len(good)-10], 0, true, "unexpected EOF"},
		{"no messageStop", append(esEvent("messageStart", `{"role":"assistant"}`),
			esEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Hal"}}`)...), 0, true, "no messageStop"},
		{"throttled", esException("throttlingException", "Too many requests, please wait."), 429, false, "throttlingException: Too many requests"},
		{"mid-stream exception", append(esEvent("contentBlockDelta", `{"contentBlockIndex":0,"delta":{"text":"Hal"}}`),
			esException("modelStreamErrorException", "The model failed.")...), 424, true, "modelStreamErrorException: The model failed."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeBedrock(t, bedrockTestKeys, "us-east-1", tt.reply)
			c := newTestBedrock(t, f, modelSpec{}, bedrockKeyEnv(bedrockTestKeys))
			_, err := provCollect(t, c, &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}})
			me := provModelError(t, err)
			if me.Status != tt.wantStatus || me.MidStream != tt.midStream || !strings.Contains(me.Msg, tt.wantMsg) || !strings.HasPrefix(me.Msg, "bedrock: ") {
				t.Errorf("error = %+v; want status %d, mid-stream %v, %q", me, tt.wantStatus, tt.midStream, tt.wantMsg)
			}
		})
	}
}

// Credentials from the shared files under HOME: the profile named by AWS_PROFILE (or
// provider_opts.profile) in ~/.aws/credentials, the region from ~/.aws/config; a profile
// needing STS is reported; the bearer token wins over everything and is not signed.
func TestBedrockCredentialSources(t *testing.T) {
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".aws"), 0o700)
	work := awsCreds{AccessKey: "AKIAWORK", SecretKey: "work-secret"}
	os.WriteFile(filepath.Join(home, ".aws", "credentials"), []byte(
		"# keys\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = default-secret\n\n"+
			"[work]\naws_access_key_id=AKIAWORK\n; comment\naws_secret_access_key = work-secret\n"+
			"[sts]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n"), 0o600)
	os.WriteFile(filepath.Join(home, ".aws", "config"), []byte(
		"[default]\nregion = us-west-2\n[profile work]\nregion = ap-south-1\ns3 =\n  max_concurrent_requests = 2\n"), 0o600)

	prompt := &modelRequest{Messages: []chatMessage{{Role: "user", Content: "hi"}}}
	for _, tt := range []struct {
		name   string
		env    map[string]string
		opts   map[string]any
		keys   awsCreds
		region string
	}{
		{"default profile", map[string]string{"HOME": home}, nil, awsCreds{AccessKey: "AKIADEFAULT", SecretKey: "default-secret"}, "us-west-2"},
		{"AWS_PROFILE", map[string]string{"HOME": home, "AWS_PROFILE": "work"}, nil, work, "ap-south-1"},
		{"provider_opts.profile and region", map[string]string{"HOME": home}, map[string]any{"profile": "work", "region": "eu-north-1"}, work, "eu-north-1"},
		{"env keys win", map[string]string{"HOME": home, "AWS_PROFILE": "work", "AWS_REGION": "eu-central-1",
			"AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret"}, nil, awsCreds{AccessKey: "AKIAENV", SecretKey: "env-secret"}, "eu-central-1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeBedrock(t, tt.keys, tt.region, bedrockTextReply("ok"))
			c := newTestBedrock(t, f, modelSpec{ProviderOpts: tt.opts}, tt.env)
			if _, err := provCollect(t, c, prompt); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Run("bearer token", func(t *testing.T) {
		f := newFakeBedrock(t, awsCreds{}, "us-east-1", bedrockTextReply("ok"))
		f.bearer = "bedrock-api-key-123"
		c := newTestBedrock(t, f, modelSpec{}, map[string]string{"HOME": home, "AWS_BEARER_TOKEN_BEDROCK": f.bearer})
		if _, err := provCollect(t, c, prompt); err != nil {
			t.Fatal(err)
		}
	})
	for _, tt := range []struct {
		name, want string
		env        map[string]string
	}{
		{"STS profile", "uses role_arn, which is not supported", map[string]string{"HOME": home, "AWS_PROFILE": "sts"}},
		{"no credentials", "no AWS credentials", map[string]string{"HOME": t.TempDir()}},
		{"AWS_ROLE_ARN", "AWS_ROLE_ARN (web identity through STS) is not supported", map[string]string{"AWS_ROLE_ARN": "arn:aws:iam::1:role/x"}},
		{"provider_opts.role_arn", "provider_opts.role_arn (STS AssumeRole) is not supported", bedrockKeyEnv(bedrockTestKeys)},
		{"token_key unset", "MY_BEDROCK_KEY environment variable is required", bedrockKeyEnv(bedrockTestKeys)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeBedrock(t, bedrockTestKeys, "us-east-1")
			spec := modelSpec{}
			switch tt.name {
			case "provider_opts.role_arn":
				spec.ProviderOpts = map[string]any{"role_arn": "arn:aws:iam::1:role/x"}
			case "token_key unset":
				spec.TokenKey = "MY_BEDROCK_KEY"
			}
			c := newTestBedrock(t, f, spec, tt.env)
			if _, err := provCollect(t, c, prompt); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v; want %q", err, tt.want)
			}
		})
	}
}

// bedrockAgentYAML is a one-agent config on a Bedrock model served by f.
func bedrockAgentYAML(f *fakeBedrock) string {
	return fmt.Sprintf(`models:
  claude:
    provider: amazon-bedrock
    model: "%s"
    base_url: %s
    provider_opts:
      region: %s
agents:
  root:
    model: claude
    instruction: Be brief.
    toolsets:
      - type: think
`, bedrockTestModel, f.URL, f.region)
}

// A run through the real server on a Bedrock model: a tool call, its result sent back,
// and the answer, all signed.
func TestBedrockRunToolRoundTrip(t *testing.T) {
	f := newFakeBedrock(t, bedrockTestKeys, "eu-west-1",
		bedrockToolReply("tooluse_9", "think", `{"thought":"count files"}`), bedrockTextReply("Done", "."))
	e := newTestEnv(t, map[string]string{"a.yaml": bedrockAgentYAML(f)})
	for k, v := range bedrockKeyEnv(bedrockTestKeys) {
		e.setenv(k, v)
	}
	id := e.newSession(map[string]any{"title": "t"})
	evs := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}}).all()
	if got := toolResponses(evs); len(got) != 1 || got[0] != "Thoughts:\ncount files" {
		t.Fatalf("tool responses = %q; events %v", got, evs)
	}
	var text string
	for _, ev := range evs {
		if ev["type"] == "agent_choice" {
			text += ev["content"].(string)
		}
		if ev["type"] == "error" {
			t.Fatalf("error event: %v", ev)
		}
	}
	if text != "Done." {
		t.Errorf("answer = %q", text)
	}
	// The price table knows the model under its Bedrock id: cost and context limit.
	for _, ev := range evs {
		if u, ok := ev["usage"].(map[string]any); ok && ev["type"] == "token_usage" {
			if u["cost"].(float64) <= 0 || u["context_limit"].(float64) != 200000 {
				t.Errorf("token_usage = %v", u)
			}
		}
	}
	reqs := f.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d model requests; want 2", len(reqs))
	}
	msgs := reqs[1].Body["messages"].([]any)
	last := msgs[len(msgs)-1].(map[string]any)["content"].([]any)[0].(map[string]any)
	provCheckJSON(t, "tool result", last, map[string]any{"toolResult": map[string]any{
		"toolUseId": "tooluse_9", "content": []any{map[string]any{"text": "Thoughts:\ncount files"}}}})
	_, b := e.do("GET", "/api/sessions/"+id, nil)
	if s := decode[sessionResponse](t, b); s.InputTokens == 0 || len(s.Messages) < 4 {
		t.Errorf("stored session = %s", b)
	}
}

// An exception frame ends the run with an error event naming it.
func TestBedrockRunException(t *testing.T) {
	f := newFakeBedrock(t, bedrockTestKeys, "us-east-1", esException("validationException", "The model returned the following errors: bad input"))
	e := newTestEnv(t, map[string]string{"a.yaml": bedrockAgentYAML(f)})
	for k, v := range bedrockKeyEnv(bedrockTestKeys) {
		e.setenv(k, v)
	}
	id := e.newSession(map[string]any{"title": "t"})
	s := e.run("/api/sessions/"+id+"/agent/a", []map[string]any{{"content": "go"}})
	ev := s.until("error")
	if msg, _ := ev["error"].(string); !strings.Contains(msg, "validationException: The model returned the following errors: bad input") {
		t.Errorf("error = %q", msg)
	}
	s.all()
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d requests; a validation error is not retried", n)
	}
}

func TestReadEventStreamHeaderTypes(t *testing.T) {
	// A header of every fixed-size type before the string ones must be skipped cleanly.
	var hb bytes.Buffer
	for typ, size := range map[byte]int{0: 0, 2: 1, 3: 2, 4: 4, 5: 8, 8: 8, 9: 16} {
		hb.WriteByte(1)
		hb.WriteByte('a' + typ)
		hb.WriteByte(typ)
		hb.Write(make([]byte, size))
	}
	hb.Write([]byte{3, 'b', 'i', 'n', 6, 0, 2, 'h', 'i'})
	var msg bytes.Buffer
	binary.Write(&msg, binary.BigEndian, uint32(12+hb.Len()+2+4))
	binary.Write(&msg, binary.BigEndian, uint32(hb.Len()))
	binary.Write(&msg, binary.BigEndian, crc32.ChecksumIEEE(msg.Bytes()))
	msg.Write(hb.Bytes())
	msg.WriteString("{}")
	binary.Write(&msg, binary.BigEndian, crc32.ChecksumIEEE(msg.Bytes()))
	var got []esMessage
	err := readEventStream(bytes.NewReader(msg.Bytes()), func(m esMessage) error { got = append(got, m); return nil })
	if err != nil || len(got) != 1 || got[0].Headers["bin"] != "hi" || string(got[0].Payload) != "{}" {
		t.Fatalf("got %+v, %v", got, err)
	}
	msg.Bytes()[12] = 0xff // a header name longer than the block
	binary.BigEndian.PutUint32(msg.Bytes()[msg.Len()-4:], crc32.ChecksumIEEE(msg.Bytes()[:msg.Len()-4]))
	if err := readEventStream(bytes.NewReader(msg.Bytes()), func(esMessage) error { return nil }); err == nil {
		t.Error("a truncated header was accepted")
	}
}

// Thinking goes in additionalModelRequestFields for Claude, without sampling parameters;
// a model with no known cache price gets no cache points; a gateway gets the request
// unsigned, with the real endpoint named.
func TestBedrockRequestOptions(t *testing.T) {
	prompt := []chatMessage{{Role: "system", Content: "S"}, {Role: "user", Content: "hi"}}
	temp := 0.3
	f := newFakeBedrock(t, bedrockTestKeys, "us-east-1", bedrockTextReply("a"), bedrockTextReply("b"))
	c := newTestBedrock(t, f, modelSpec{Temperature: &temp}, bedrockKeyEnv(bedrockTestKeys))
	if _, err := provCollect(t, c, &modelRequest{Messages: prompt, Thinking: true}); err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0].Body
	provCheckJSON(t, "inferenceConfig", r["inferenceConfig"], map[string]any{"maxTokens": 16384})
	provCheckJSON(t, "additional fields", r["additionalModelRequestFields"], map[string]any{
		"thinking": map[string]any{"type": "enabled", "budget_tokens": 8192}, "anthropic_beta": []any{"interleaved-thinking-2025-05-14"}})

	// Also: a tool result without output, and two user messages in a row.
	c = newTestBedrock(t, f, modelSpec{Model: "meta.llama3-70b-instruct-v1:0", Temperature: &temp, MaxTokens: 100}, bedrockKeyEnv(bedrockTestKeys))
	history := append(slices.Clone(prompt),
		chatMessage{Role: "assistant", ToolCalls: []toolCall{{ID: "t1", Type: "function", Function: functionCall{Name: "think", Arguments: `{}`}}}},
		chatMessage{Role: "tool", ToolCallID: "t1", Content: ""},
		chatMessage{Role: "assistant", Content: ""}, // a failed turn: nothing to send
		chatMessage{Role: "user", Content: "again"})
	if _, err := provCollect(t, c, &modelRequest{Messages: history, Thinking: true, Tools: []toolDef{{Name: "think"}}}); err != nil {
		t.Fatal(err)
	}
	r = f.requests()[1].Body
	provCheckJSON(t, "llama body", r, map[string]any{
		"system": []any{map[string]any{"text": "S"}},
		"messages": []any{
			map[string]any{"role": "user", "content": []any{map[string]any{"text": "hi"}}},
			map[string]any{"role": "assistant", "content": []any{map[string]any{"toolUse": map[string]any{"toolUseId": "t1", "name": "think", "input": map[string]any{}}}}},
			map[string]any{"role": "user", "content": []any{
				map[string]any{"toolResult": map[string]any{"toolUseId": "t1", "content": []any{map[string]any{"text": "(no output)"}}}},
				map[string]any{"text": "again"},
			}},
		},
		"toolConfig": map[string]any{"tools": []any{map[string]any{"toolSpec": map[string]any{"name": "think",
			"inputSchema": map[string]any{"json": map[string]any{"type": "object", "properties": map[string]any{}}}}}},
			"toolChoice": map[string]any{"auto": map[string]any{}}},
		"inferenceConfig": map[string]any{"maxTokens": 100, "temperature": 0.3},
	})

	g := newFakeBedrock(t, awsCreds{}, "us-east-1", bedrockTextReply("c"))
	g.bearer = "docker-token"
	gc, err := newModelClient(modelSpec{Provider: "amazon-bedrock", Model: bedrockTestModel},
		clientEnv{Gateway: g.URL, Getenv: func(k string) string { return map[string]string{"DOCKER_TOKEN": "docker-token"}[k] }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := provCollect(t, gc, &modelRequest{Messages: prompt}); err != nil {
		t.Fatal(err)
	}
	h := g.requests()[0].Header
	if h.Get("X-Cagent-Forward") != "https://bedrock-runtime.us-east-1.amazonaws.com" || h.Get("X-Cagent-Provider") != "amazon-bedrock" {
		t.Errorf("gateway headers = %v", h)
	}
}
