package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzAppendJSONString checks the hand-written string encoder against encoding/json,
// which the reference uses: SSE payloads must be byte-identical.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", `q"uote\back`, "<a href='x'>&amp;</a>", "\n\r\t\b\f\x00\x1f\x7f",
		"é ünï 日本", "\u2028\u2029", "bad \xff\xfe utf8", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s; want %s", s, got, want)
		}
	})
}

// TestEventFrameMatchesEncodingJSON checks the builder's hand-written encoding of
// each kind of value against encoding/json's, in key order, framed for SSE.
func TestEventFrameMatchesEncodingJSON(t *testing.T) {
	ev := startEvent("token_usage").str("session_id", "s<1>").num("n", 3).num("big", 1<<40).flag("ok", true).
		val("f", 0.5).val("obj", map[string]any{"b": 1, "a": "x"}).val("nil", nil).val("raw", json.RawMessage(`{ "a" : "<" }`)).
		ctx("root", zeroTime)
	want := `data: {"type":"token_usage","session_id":"s\u003c1\u003e","n":3,"big":1099511627776,"ok":true,"f":0.5,"obj":{"a":"x","b":1},"nil":null,"raw":{"a":"\u003c"},"agent_name":"root","timestamp":"0001-01-01T00:00:00Z"}` + "\n\n"
	if got := string(ev.frame()); got != want {
		t.Fatalf("frame =\n%s\nwant\n%s", got, want)
	}
}

// frame is the event as the client receives it.
func (e *event) frame() []byte {
	var b bytes.Buffer
	e.writeTo(&b)
	return b.Bytes()
}
