package main

import (
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

// marshal is the event's JSON without the SSE framing.
func (e *event) marshal() []byte { return e.appendJSON(nil) }

func TestEventMarshalMatchesEncodingJSON(t *testing.T) {
	ev := newEvent("token_usage", "session_id", "s<1>", "n", 3, "big", int64(1)<<40, "ok", true, "f", 0.5,
		"obj", map[string]any{"b": 1, "a": "x"}, "nil", nil).ctx("root", zeroTime)
	want := `{"type":"token_usage","session_id":"s\u003c1\u003e","n":3,"big":1099511627776,"ok":true,"f":0.5,"obj":{"a":"x","b":1},"nil":null,"agent_name":"root","timestamp":"0001-01-01T00:00:00Z"}`
	if got := string(ev.marshal()); got != want {
		t.Fatalf("marshal =\n%s\nwant\n%s", got, want)
	}
}
