package main

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestConfigRedactedKeepsReferences(t *testing.T) {
	f := cfgLoad(t, `agents:
  root:
    model: m
    toolsets:
      - type: mcp
        remote:
          url: https://u:p4ss@mcp.example/sse?api_key=abc&x=1
          transport_type: sse
          headers:
            Authorization: Bearer ${env.GH_TOKEN}
            X-Ref: ${env.GH_TOKEN}
            Cookie: session=xyz
            Accept: text/plain
      - type: shell
        env:
          API_TOKEN: literal
          REF_TOKEN: $GH_TOKEN
          BRACED: ${GH_TOKEN}
          PATH_EXTRA: /opt/bin
models:
  m:
    provider: openai
    model: gpt-4o
    token_key: MY_OPENAI_KEY
    base_url: https://proxy.example/v1
`)
	red, err := f.redactedJSON()
	if err != nil {
		t.Fatal(err)
	}
	s := string(red)
	for _, gone := range []string{"p4ss", "abc", "session=xyz", "literal"} {
		if strings.Contains(s, gone) {
			t.Errorf("%q not redacted: %s", gone, s)
		}
	}
	// Only a value that is exactly one reference is shown: "Bearer ${env.X}" and
	// harmless-looking literals are redacted too.
	for _, kept := range []string{`"X-Ref":"${env.GH_TOKEN}"`, `"REF_TOKEN":"$GH_TOKEN"`, `"BRACED":"${GH_TOKEN}"`, "MY_OPENAI_KEY",
		`"Authorization":"REDACTED"`, `"PATH_EXTRA":"REDACTED"`, `"Accept":"REDACTED"`, "https://proxy.example/v1", `"Cookie":"REDACTED"`} {
		if !strings.Contains(s, kept) {
			t.Errorf("%q missing: %s", kept, s)
		}
	}
	// Order and shape are the plain JSON's.
	plain, _ := json.Marshal(f)
	var a, b any
	json.Unmarshal(plain, &a)
	json.Unmarshal(red, &b)
	if reflect.TypeOf(a) != reflect.TypeOf(b) || !strings.HasPrefix(s, `{"version":"7","agents":[{"Name":"root"`) {
		t.Errorf("shape changed: %s", s)
	}
}
