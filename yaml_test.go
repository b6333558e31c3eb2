package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// yamlUpdate reports whether -update (STYLE.md point 21) was given. Other test
// files may register the same flag, so it is registered only once and read by name.
var yamlUpdate = func() func() bool {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite golden files")
	}
	return func() bool { return flag.Lookup("update").Value.String() == "true" }
}()

// yamlCompact parses src and returns its JSON in compact form ("" and the error on failure).
func yamlCompact(t *testing.T, src string) (string, error) {
	t.Helper()
	n, err := parseYAML("test.yaml", []byte(src))
	if err != nil {
		return "", err
	}
	out, err := yamlJSON(n)
	if err != nil {
		t.Fatalf("yamlJSON(parseYAML(%q)): %v", src, err)
	}
	var b bytes.Buffer
	if err := json.Compact(&b, out); err != nil {
		t.Fatalf("yamlJSON(parseYAML(%q)) is not JSON: %v\n%s", src, err, out)
	}
	return b.String(), nil
}

func TestParseYAMLAccept(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"empty", "", `null`},
		{"only comments", "# a\n\n  # b\n", `null`},
		{"doc start", "# c\n---\na: 1\n", `{"a":1}`},
		{"doc start only", "--- # c\n", `null`},
		{"top scalar", "hello world\n", `"hello world"`},
		{"top quoted", "'x'  # c\n", `"x"`},
		{"top block scalar", "|\n  x\n", `"x\n"`},
		{"top flow", "[a,\nb]\n", `["a","b"]`},
		{"top sequence", "- a\n- b\n", `["a","b"]`},
		{"indented top", "  a: 1\n  b: 2\n", `{"a":1,"b":2}`},
		{"key order", "z: 1\na: 2\nm: 3\n", `{"z":1,"a":2,"m":3}`},
		{"nested", "a:\n  b:\n    c: d\n", `{"a":{"b":{"c":"d"}}}`},
		{"three spaces", "a:\n   b: 1\n   c: 2\n", `{"a":{"b":1,"c":2}}`},
		{"indentless seq", "a:\n- x\n- y\nb: 1\n", `{"a":["x","y"],"b":1}`},
		{"compact map", "- k: v\n  k2: w\n- x\n", `[{"k":"v","k2":"w"},"x"]`},
		{"compact map wide", "-   k: v\n    k2: w\n", `[{"k":"v","k2":"w"}]`},
		{"compact seq", "- - x\n  - y\n- z\n", `[["x","y"],"z"]`},
		{"dash then block", "-\n  k: v\n", `[{"k":"v"}]`},
		{"empty entries", "- \n- x\n-\n", `[null,"x",null]`},
		{"empty values", "a:\nb: 1\nc:   # c\n", `{"a":null,"b":1,"c":null}`},
		{"compact indentless", "- a:\n  - x\n  b: 1\n", `[{"a":["x"],"b":1}]`},
		{"value next line", "a:\n  b\n", `{"a":"b"}`},
		{"comment between", "a:\n# c\n    # d\n  b: 1\n", `{"a":{"b":1}}`},
		{"indented comment after value", "a: b\n      # c\nc: d\n", `{"a":"b","c":"d"}`},
		{"key spaces", "a  : 1\n", `{"a":1}`},
		{"quoted keys", "\"a b\": 1\n'c:d': 2\n", `{"a b":1,"c:d":2}`},
		{"odd keys", "brave.api_key: x\nhf.co/a: y\n", `{"brave.api_key":"x","hf.co/a":"y"}`},
		{"nulls", "[~, null, Null, NULL]", `[null,null,null,null]`},
		{"bools", "[true, True, TRUE, false, False, FALSE]", `[true,true,true,false,false,false]`},
		{"yaml 1.1 bools are strings", "[yes, no, on, off, y, n]", `["yes","no","on","off","y","n"]`},
		{"ints", "[0, -1, +5, -0, 0x1F, 0o17, 64000]", `[0,-1,5,0,31,15,64000]`},
		{"int limits", "[18446744073709551615, -9223372036854775808]", `[18446744073709551615,-9223372036854775808]`},
		{"floats", "[1., .5, -.5, 1.5e3, 1.5E-3, 01.5, 0.0, 0.7, 1.0e+20]", `[1.0,0.5,-0.5,1500.0,0.0015,1.5,0.0,0.7,1.0e+20]`},
		{"string lookalikes", "[1.2.3, 2024-01-02, 1:20, 0xZZ, ---x]", `["1.2.3","2024-01-02","1:20","0xZZ","---x"]`},
		{"hash", "a: C#\nb: x#y\nc: x #y\n", `{"a":"C#","b":"x#y","c":"x"}`},
		{"dashes", "a: -ub 1024\nb: --flag\nc: -x\n", `{"a":"-ub 1024","b":"--flag","c":"-x"}`},
		{"colons", "a: docker:x\nb: http://h:80/p\nc: a:b\n", `{"a":"docker:x","b":"http://h:80/p","c":"a:b"}`},
		{"specials inside", "a: shell:cmd=gh pr view *\n", `{"a":"shell:cmd=gh pr view *"}`},
		{"question colon starts", "- ?x\n- :x\n", `["?x",":x"]`},
		{"trailing spaces", "a: value   \nb: x  \n", `{"a":"value","b":"x"}`},
		{"unicode", "a: héllo 👋 ♔\n", `{"a":"héllo 👋 ♔"}`},
		{"dq escapes", `a: "t\tn\n q\" b\\ \u00e9 \x41 \/ \U0001F600 \_ \N \L \e \0 \ "`,
			`{"a":"t\tn\n q\" b\\ é A / 😀 ` + "\u00a0 \\u0085 \\u2028 \\u001b \\u0000  " + `"}`},
		{"dq raw tab", "a: \"x\ty\"\n", `{"a":"x\ty"}`},
		{"sq escape", "a: 'it''s \\n'\n", `{"a":"it's \\n"}`},
		{"quoted empty", "a: \"\"\nb: ''\n", `{"a":"","b":""}`},
		{"quoted not typed", "a: \"2\"\nb: 'true'\nc: \"~\"\n", `{"a":"2","b":"true","c":"~"}`},
		{"quoted colon hash", "a: \"k: v # not a comment\"\n", `{"a":"k: v # not a comment"}`},
		{"literal clip", "a: |\n  one\n  two\n\nb: x\n", `{"a":"one\ntwo\n","b":"x"}`},
		{"literal strip", "a: |-\n  one\n\nb: x\n", `{"a":"one","b":"x"}`},
		{"literal keep", "a: |+\n  one\n\n\nb: x\n", `{"a":"one\n\n\n","b":"x"}`},
		{"keep at eof", "a: |+\n  one\n\n", `{"a":"one\n\n"}`},
		{"clip no final newline", "a: |\n  one", `{"a":"one"}`},
		{"folded", "a: >\n  one\n  two\n\n  three\n    indented\n  four\nb: x\n",
			`{"a":"one two\nthree\n  indented\nfour\n","b":"x"}`},
		{"folded strip", "a: >-\n  one\n  two\n", `{"a":"one two"}`},
		{"indent indicator", "a: |2\n    extra\n  base\n", `{"a":"  extra\nbase\n"}`},
		{"indicator and chomp", "a: |-2\n   x\n", `{"a":" x"}`},
		{"chomp and indicator", "a: |2-\n   x\n", `{"a":" x"}`},
		{"header comment", "a: | # c\n  x\n", `{"a":"x\n"}`},
		{"leading blank", "a: |\n\n  x\n", `{"a":"\nx\n"}`},
		{"hash content", "a: |\n  # not a comment\n  x\n", `{"a":"# not a comment\nx\n"}`},
		{"yaml-looking content", "a: |\n  - x\n  k: v\nb: 1\n", `{"a":"- x\nk: v\n","b":1}`},
		{"less indented comment ends", "a:\n  b: |\n    x\n  # c\n  c: y\n", `{"a":{"b":"x\n","c":"y"}}`},
		{"content trailing spaces", "a: |\n  x  \n  y\n", `{"a":"x  \ny\n"}`},
		{"spaces-only line", "a: |\n  x\n    \n  y\n", `{"a":"x\n  \ny\n"}`},
		{"tab in content", "a: |\n  x\tz\n", `{"a":"x\tz\n"}`},
		{"empty block", "a: |\nb: x\n", `{"a":"","b":"x"}`},
		{"block in seq", "- |\n  x\n- y\n", `["x\n","y"]`},
		{"block in compact map", "- a: |\n    x\n  b: 1\n", `[{"a":"x\n","b":1}]`},
		{"flow empty", "a: {}\nb: []\n", `{"a":{},"b":[]}`},
		{"flow nested", "a: {b: 1, c: [x, y], d: {e: f}, g: http://h}\n",
			`{"a":{"b":1,"c":["x","y"],"d":{"e":"f"},"g":"http://h"}}`},
		{"flow multi-line", "a:\n  [\n    x,  # c\n    \"y\",\n  ]\n", `{"a":["x","y"]}`},
		{"flow comment after comma", "a: [x, # c\n  y]\n", `{"a":["x","y"]}`},
		{"flow plain spaces", "a: [x y, z]\n", `{"a":["x y","z"]}`},
		{"flow colons", "a: [docker:x, http://y, b:1]\n", `{"a":["docker:x","http://y","b:1"]}`},
		{"flow null value", "a: {b: , c:}\n", `{"a":{"b":null,"c":null}}`},
		{"flow json style", `{"a":1, "b":[true]}`, `{"a":1,"b":[true]}`},
		{"crlf", "a: 1\r\nb: |\r\n  x\r\n  y\r\n", `{"a":1,"b":"x\ny\n"}`},
		{"lone cr", "a: 1\rb: 2\r", `{"a":1,"b":2}`},
		{"bom", "\uFEFFa: 1\n", `{"a":1}`},
		{"tab in comment", "a: 1 # x\ty\n#\tz\n", `{"a":1}`},
		{"shebang", "#!/usr/bin/env agentd run\na: 1\n", `{"a":1}`},
		{"key 1024", strings.Repeat("k", 1024) + ": 1\n", `{"` + strings.Repeat("k", 1024) + `":1}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := yamlCompact(t, tt.src)
			if err != nil {
				t.Fatalf("parseYAML(%q) error: %v", tt.src, err)
			}
			if got != tt.want {
				t.Errorf("parseYAML(%q) = %s; want %s", tt.src, got, tt.want)
			}
		})
	}
}

func TestParseYAMLReject(t *testing.T) {
	tests := []struct {
		name, src, wantErr string
	}{
		// numbers goccy and YAML 1.2 read differently (YAML.md §3)
		{"leading zero", "a: 0755\n", `1:4: ambiguous number "0755"`},
		{"leading zero 8", "a: 08\n", `1:4: ambiguous number "08"`},
		{"binary", "a: 0b101\n", `1:4: ambiguous number`},
		{"underscore", "a: 1_000\n", `1:4: ambiguous number`},
		{"float underscore", "a: 1_0.5\n", `1:4: ambiguous number`},
		{"exponent without dot", "a: 1e3\n", `1:4: ambiguous number`},
		{"inf", "a: -.Inf\n", `1:4: ambiguous number`},
		{"nan", "a: .nan\n", `1:4: ambiguous number`},
		{"too big", "a: 18446744073709551616\n", `1:4: ambiguous number`},
		{"too small", "a: -9223372036854775809\n", `1:4: ambiguous number`},
		{"float overflow", "a: 1.0e400\n", `1:4: ambiguous number`},
		{"signed hex", "a: -0x1F\n", `1:4: ambiguous number`},
		{"upper hex", "a: 0X1F\n", `1:4: ambiguous number`},
		// keys
		{"int key", "1: a\n", `1:1: non-string mapping key "1"; quote it`},
		{"bool key", "a: 1\ntrue: a\n", `2:1: non-string mapping key "true"`},
		{"null key", "~: a\n", `1:1: non-string mapping key "~"`},
		{"merge key", "a:\n  <<: {x: 1}\n", `2:3: merge keys (<<) are not supported`},
		{"long key", strings.Repeat("k", 1025) + ": 1\n", `1:1: mapping key longer than 1024 characters`},
		{"duplicate", "a: 1\nb: 2\na: 3\n", `3:1: key "a" already defined at line 1`},
		{"duplicate quoted", "a: 1\n\"a\": 2\n", `2:1: key "a" already defined at line 1`},
		{"duplicate nested", "x:\n  model: a\n  model: b\n", `3:3: key "model" already defined at line 2`},
		{"duplicate flow", "a: {b: 1, b: 2}\n", `1:11: key "b" already defined at line 1`},
		{"explicit key", "? a\n: b\n", `1:1: explicit keys`},
		{"empty key", ": b\n", `1:1: missing mapping key`},
		{"flow key", "a: 1\n[x]: 2\n", `2:1: unexpected "["`},
		{"top flow key", "[x]: 2\n", `1:4: flow collections cannot be mapping keys`},
		// unsupported features
		{"anchor", "a: &x 1\n", `1:4: anchors (&name) are not supported`},
		{"alias", "a: *x\n", `1:4: aliases (*name) are not supported`},
		{"tag", "a: !!str 1\n", `1:4: tags (!tag) are not supported`},
		{"at", "a: @x\n", `1:4: "@" is reserved`},
		{"backtick", "a: `x`\n", "1:4: \"`\" is reserved"},
		{"percent", "a: %x\n", `1:4: '%' cannot start a plain scalar`},
		{"directive", "%YAML 1.2\n---\na: 1\n", `1:1: directives (%YAML, %TAG) are not supported`},
		{"doc end", "a: 1\n...\n", `2:1: document end markers (...) are not supported`},
		{"two docs", "a: 1\n---\nb: 2\n", `2:1: multiple YAML documents are not supported`},
		{"second start", "---\n---\n", `2:1: multiple YAML documents`},
		{"text after doc start", "--- a\n", `1:5: unexpected text after "---"`},
		// tabs
		{"tab indent", "a:\n\tb: 1\n", `2:1: tab characters are not allowed here`},
		{"tab after colon", "a:\tb\n", `1:3: tab characters are not allowed here`},
		{"tab before comment", "a: b\t# c\n", `1:5: tab characters are not allowed here`},
		{"tab after quote", "a: \"x\"\t\n", `1:7: tab characters are not allowed here`},
		{"tab in plain", "a: x\ty\n", `1:5: tab characters are not allowed here`},
		{"tab after dash", "-\tx\n", `1:2: tab characters are not allowed here`},
		{"tab in flow", "a: [x,\ty]\n", `1:7: tab characters are not allowed here`},
		// characters
		{"control", "a: b\x07c\n", `1:5: control character U+0007 is not allowed`},
		{"del", "a: \x7f\n", `1:4: control character U+007F`},
		{"c1", "a: x\u0085\n", `1:5: control character U+0085`},
		{"line separator", "a: x\u2028y\n", `1:5: line separator U+2028`},
		{"invalid utf8", "a: \xff\n", `1:4: invalid UTF-8`},
		{"column counts characters", "a: é👋\x01\n", `1:6: control character U+0001`},
		{"bom inside", "a: 1\n\uFEFFb: 2\n", `2:1: byte order mark`},
		// plain scalars and structure
		{"multi-line plain", "a: b\n  c\n", `2:3: multi-line plain scalars are not supported`},
		{"multi-line plain after blank", "a: b\n\n  c\n", `3:3: multi-line plain scalars`},
		{"multi-line plain in seq", "- a\n  b\n", `2:3: multi-line plain scalars`},
		{"multi-line top plain", "a\nb\n", `2:1: multi-line plain scalars`},
		{"multi-line next line", "a:\n  b\n  c\n", `3:3: multi-line plain scalars`},
		{"mapping on same line", "a: b: c\n", `1:5: mapping values are not allowed here`},
		{"colon at end", "a: b:\n", `1:5: mapping values are not allowed here`},
		{"value then nested", "a: 1\n  b: 2\n", `2:3: mapping values are not allowed here`},
		{"seq on same line", "a: - x\n", `1:4: block sequence entries are not allowed here`},
		{"bad dedent", "a:\n    b: 1\n  c: 2\n", `3:3: bad indentation`},
		{"misaligned sibling", "a:\n  b: 1\n   c: 2\n", `3:4: mapping values are not allowed here`},
		{"misaligned compact key", "a:\n  - k: v\n     x: y\n", `3:6: mapping values are not allowed here`},
		{"key where entry expected", "a:\n  - x\n  b: y\n", `3:3: expected a sequence entry "- " at column 3`},
		{"entry where key expected", "a: 1\n- x\n", `2:1: expected a mapping key at column 1, found a sequence entry`},
		{"missing colon", "a: 1\nb\n", `2:1: expected a mapping key followed by ": "`},
		{"block header on own line", "a:\n  |\n    x\n", `2:3: a block scalar header (| or >) must be on the same line`},
		// quoted scalars
		{"bad escape", `a: "x\q"` + "\n", `1:6: unknown escape \q`},
		{"short hex escape", `a: "\x4"` + "\n", `1:5: escape \x needs 2 hex digits`},
		{"surrogate escape", `a: "\uD83D"` + "\n", `1:5: escape \uD83D is not a valid Unicode character`},
		{"dq multi-line", "a: \"x\n  y\"\n", `1:4: quoted scalar is not closed on this line`},
		{"sq multi-line", "a: 'x\n  y'\n", `1:4: quoted scalar is not closed on this line`},
		{"line continuation", "a: \"x\\\n  y\"\n", `1:6: a backslash at the end of a line`},
		{"text after quote", "a: \"x\" y\n", `1:8: unexpected text after a value`},
		{"hash right after quote", "a: \"x\"#c\n", `1:7: unexpected text after a value`},
		{"text after flow", "a: [x] y\n", `1:8: unexpected text after a flow collection`},
		// block scalars
		{"more indented first", "a: |\n    deeper\n  shallower\n", `3:3: bad indentation: this line is less indented than the block scalar`},
		{"leading spaces line", "a: |\n      \n  x\n", `2:3: a whitespace-only line before the first line of a block scalar`},
		{"content after comment", "a: |\n  x\n # c\n  y\n", `4:3: bad indentation`},
		{"zero indicator", "a: |0\n  x\n", `1:5: block scalar indentation indicator must be 1-9`},
		{"bad header", "a: |x\n  x\n", `1:5: unexpected text after a block scalar header`},
		{"top indicator", "|2\n  x\n", `1:1: an indentation indicator on a top-level block scalar`},
		// where goccy v1.19.2 (the reference) and YAML 1.2 disagree; found by
		// differential testing, so these are rejected rather than guessed
		{"colon in flow seq in flow map", "a: {k: [b:1]}\n", `1:9: a plain scalar with ':' in a flow sequence inside a flow mapping is ambiguous`},
		{"strip trailing spaces", "a: |-\n  x  \nb: 1\n", `2:4: trailing spaces at the end of a block scalar`},
		{"eof trailing spaces", "a: |\n  x  ", `2:4: trailing spaces at the end of a block scalar`},
		{"empty keep", "a: |+\nb: 1\n", `1:4: a keep (+) block scalar without content`},
		{"empty then blank", "a: |\n\n\"b\": 1\n", `1:4: an empty block scalar must be followed directly`},
		{"empty then comment", "a:\n   b: |2\n    # c\n", `2:7: an empty block scalar must be followed directly`},
		{"first line tab", "a: |\n  \tx\n  y\n", `2:3: a block scalar whose first line starts with a tab needs an indentation indicator`},
		{"indicator blank at eof", "a: |2\n  x\n\n", `3:1: blank lines at the end of the file after a block scalar with an indentation indicator`},
		{"folded no final break", "a: >\n  x\n  y", `3:4: a folded (>) block scalar must end with a line break`},
		{"folded spaces line", "a: >\n  x\n   \n\n  y\n", `3:3: a whitespace-only line indented more than a folded`},
		{"key containing merge", "x<<: y\n", `1:1: merge keys (<<) are not supported`},
		{"dots", "...w\n", `1:1: a plain scalar starting with "..." is not supported`},
		{"double sign", "a: +-15\n", `1:4: ambiguous number "+-15"`},
		{"raw tab in quoted key", "\"\ta\": 1\n", `1:2: a raw tab inside a quoted key`},
		{"raw tab in flow quote", "a: [\"x\ty\"]\n", `1:7: a raw tab inside a quoted key or a quoted scalar in a flow collection`},
		{"empty indentless entry", "a:\n  k:\n  -\n  b: 1\n", `3:3: an empty entry at the end of a sequence that is not indented`},
		// flow collections
		{"under-indented continuation", "k:\n  a: [x,\ny]\n", `3:1: a flow collection continuation line must be indented more than column 3`},
		{"closing bracket at key column", "a: [x,\n]\n", `2:1: a flow collection continuation line`},
		{"empty entry", "a: [x, , y]\n", `1:8: empty entry in a flow collection`},
		{"leading comma", "a: [,]\n", `1:5: empty entry`},
		{"flow key colon", "a: {b:1}\n", `1:5: a plain key in a flow mapping must not contain ':'`},
		{"implicit pair", "a: [b: c]\n", `1:6: key: value pairs inside flow sequences are not supported`},
		{"flow key without value", "a: {b}\n", `1:6: expected ':' after a flow mapping key`},
		{"flow double colon", "a: {b: c: d}\n", `1:9: mapping values are not allowed here`},
		{"unclosed flow", "a: [x,\n  y\n", `1:4: flow collection is not closed`},
		{"flow multi-line plain", "a: [x\n  y]\n", `2:3: multi-line plain scalars`},
		{"flow question", "a: [x?y]\n", `1:6: '?' inside a plain scalar in a flow collection`},
		{"flow dash", "a: [- x]\n", `1:5: block sequence entries are not allowed inside a flow collection`},
		{"flow block scalar", "a: [|]\n", `1:5: block scalars (| or >) are not allowed here`},
		{"flow hash no space", "a: [x,#c\n  y]\n", `1:7: unexpected '#'`},
		{"bare prefix", "a: 0x\n", `1:4: ambiguous number "0x"`},
		{"flow doc marker", "[a,\n---\n]\n", `2:1: document markers are not allowed inside a flow collection`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := parseYAML("test.yaml", []byte(tt.src))
			if err == nil {
				out, _ := yamlJSON(n)
				t.Fatalf("parseYAML(%q) = %s; want error %q", tt.src, out, tt.wantErr)
			}
			var ye *yamlError
			if !errors.As(err, &ye) || ye.Line < 1 || ye.Col < 1 || ye.File != "test.yaml" {
				t.Fatalf("parseYAML(%q) error %#v is not a positioned *yamlError", tt.src, err)
			}
			if !strings.HasPrefix(err.Error(), "test.yaml:") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseYAML(%q) error = %q; want it to contain %q", tt.src, err, tt.wantErr)
			}
		})
	}
}

// TestParseYAMLNodes checks what the config decoder relies on beyond the JSON
// value: tags, styles, raw texts and positions (columns count characters).
func TestParseYAMLNodes(t *testing.T) {
	src := "# c\nname: x\nsize: 0x10\n\"é\": {k: [1.5, 'q']}\nlist:\n  - |\n    t\n  - \"d\"\nnone:\n"
	n, err := parseYAML("n.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		kind             yamlKind
		line, col        int
		text, tag, style string
	}
	check := func(what string, got *yamlNode, w want) {
		t.Helper()
		if got.Kind != w.kind || got.Line != w.line || got.Col != w.col || got.Text != w.text || got.Tag != w.tag || got.Style != w.style {
			t.Errorf("%s = {kind %d %d:%d %q tag %q style %q}; want {kind %d %d:%d %q tag %q style %q}",
				what, got.Kind, got.Line, got.Col, got.Text, got.Tag, got.Style, w.kind, w.line, w.col, w.text, w.tag, w.style)
		}
	}
	check("root", n, want{kind: yamlMap, line: 2, col: 1})
	if len(n.Keys) != 5 || len(n.Values) != 5 {
		t.Fatalf("root has %d keys and %d values; want 5", len(n.Keys), len(n.Values))
	}
	check("key name", n.Keys[0], want{kind: yamlScalar, line: 2, col: 1, text: "name", tag: "str", style: "plain"})
	check("name", n.Values[0], want{kind: yamlScalar, line: 2, col: 7, text: "x", tag: "str", style: "plain"})
	check("size", n.Values[1], want{kind: yamlScalar, line: 3, col: 7, text: "0x10", tag: "int", style: "plain"})
	check("key é", n.Keys[2], want{kind: yamlScalar, line: 4, col: 1, text: "é", tag: "str", style: "double"})
	flow := n.Values[2]
	check("flow map", flow, want{kind: yamlMap, line: 4, col: 6})
	check("flow key k", flow.Keys[0], want{kind: yamlScalar, line: 4, col: 7, text: "k", tag: "str", style: "plain"})
	check("flow seq", flow.Values[0], want{kind: yamlSeq, line: 4, col: 10})
	check("1.5", flow.Values[0].Values[0], want{kind: yamlScalar, line: 4, col: 11, text: "1.5", tag: "float", style: "plain"})
	check("'q'", flow.Values[0].Values[1], want{kind: yamlScalar, line: 4, col: 16, text: "q", tag: "str", style: "single"})
	list := n.Values[3]
	check("list", list, want{kind: yamlSeq, line: 6, col: 3})
	check("literal", list.Values[0], want{kind: yamlScalar, line: 6, col: 5, text: "t\n", tag: "str", style: "literal"})
	check("double", list.Values[1], want{kind: yamlScalar, line: 8, col: 5, text: "d", tag: "str", style: "double"})
	check("none", n.Values[4], want{kind: yamlScalar, line: 9, col: 6, text: "", tag: "null", style: "plain"})
}

func TestParseYAMLLimits(t *testing.T) {
	deep := strings.Repeat("[", maxYAMLDepth+1) + strings.Repeat("]", maxYAMLDepth+1)
	if _, err := parseYAML("d.yaml", []byte(deep)); err == nil || !strings.Contains(err.Error(), "d.yaml:1:101: nesting deeper than 100 levels") {
		t.Errorf("parseYAML(%d nested flow sequences) error = %v; want a depth error at 1:101", maxYAMLDepth+1, err)
	}
	ok := strings.Repeat("[", maxYAMLDepth) + strings.Repeat("]", maxYAMLDepth)
	if _, err := parseYAML("d.yaml", []byte(ok)); err != nil {
		t.Errorf("parseYAML(%d nested flow sequences): %v", maxYAMLDepth, err)
	}
	var b strings.Builder
	for i := range maxYAMLDepth + 1 {
		b.WriteString(strings.Repeat(" ", i) + "k:\n")
	}
	b.WriteString(strings.Repeat(" ", maxYAMLDepth+1) + "v\n")
	if _, err := parseYAML("d.yaml", []byte(b.String())); err == nil || !strings.Contains(err.Error(), "d.yaml:101:101: nesting deeper") {
		t.Errorf("parseYAML(%d nested block mappings) error = %v; want a depth error at 101:101", maxYAMLDepth+1, err)
	}
	if _, err := parseYAML("d.yaml", []byte(strings.Repeat("- ", maxYAMLDepth+1)+"x\n")); err == nil || !strings.Contains(err.Error(), "nesting deeper") {
		t.Errorf("parseYAML(%d compact sequences) error = %v; want a depth error", maxYAMLDepth+1, err)
	}

	big := []byte("a: |\n" + strings.Repeat("  0123456789abcdef\n", maxYAMLSize/19+1))
	_, err := parseYAML("big.yaml", big)
	var ye *yamlError
	if !errors.As(err, &ye) || ye.Line < 2 || !strings.Contains(err.Error(), "document is larger than 4194304 bytes") {
		t.Errorf("parseYAML(%d bytes) error = %v; want a positioned size error", len(big), err)
	}
	under := big[:5+19*((maxYAMLSize-5)/19)] // whole lines, at most maxYAMLSize bytes
	if _, err := parseYAML("big.yaml", under); err != nil {
		t.Errorf("parseYAML(just under the limit): %v", err)
	}
}

// TestYAMLJSON covers node trees the parser never builds, as the config layer may.
func TestYAMLJSON(t *testing.T) {
	str := func(s string) *yamlNode { return &yamlNode{Kind: yamlScalar, Tag: "str", Text: s} }
	tests := []struct {
		name    string
		n       *yamlNode
		want    string
		wantErr string
	}{
		{"nil", nil, "null", ""},
		{"escapes", str("a\"b\\c\n\t\x01\u2028<&>é"), `"a\"b\\c\n\t\u0001\u2028<&>é"`, ""},
		{"invalid utf8", str("\xff"), `"` + "\uFFFD" + `"`, ""},
		{"float exponent", &yamlNode{Tag: "float", Text: "1.5e300"}, "1.5e+300", ""},
		{"float gets dot", &yamlNode{Tag: "float", Text: "2.e5"}, "200000.0", ""},
		{"negative zero", &yamlNode{Tag: "float", Text: "-0.0"}, "-0.0", ""},
		{"bad int", &yamlNode{Tag: "int", Text: "x"}, "", `"x" is not an int`},
		{"bad float", &yamlNode{Tag: "float", Text: ".inf"}, "", `".inf" is not a finite float`},
		{"bad tag", &yamlNode{Tag: "timestamp", Text: "x"}, "", `unknown tag "timestamp"`},
		{"short map", &yamlNode{Kind: yamlMap, Values: []*yamlNode{str("x")}}, "", "has 0 keys and 1 values"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := yamlJSON(tt.n)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("yamlJSON() error = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(string(out), "\n"); got != tt.want {
				t.Errorf("yamlJSON() = %s; want %s", got, tt.want)
			}
			if !json.Valid(out) {
				t.Errorf("yamlJSON() = %s is not valid JSON", out)
			}
		})
	}
}

// TestYAMLGolden parses every testdata/yaml/*.yaml and compares the JSON (or the
// error) with the .golden file beside it; -update rewrites the golden files.
func TestYAMLGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/yaml/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			n, err := parseYAML(filepath.Base(file), src)
			if err == nil {
				got, err = yamlJSON(n)
			}
			if err != nil {
				got = []byte("error: " + err.Error() + "\n")
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if yamlUpdate() {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s:\n%s", file, golden, yamlLineDiff(string(want), string(got)))
			}
		})
	}
}

// yamlLineDiff is a small line diff for golden failures: lines only in want are
// marked "-", lines only in got "+", from the first difference on.
func yamlLineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	i := 0
	for i < len(w) && i < len(g) && w[i] == g[i] {
		i++
	}
	var b strings.Builder
	for j := i; j < len(w) && j < i+10; j++ {
		b.WriteString("- " + w[j] + "\n")
	}
	for j := i; j < len(g) && j < i+10; j++ {
		b.WriteString("+ " + g[j] + "\n")
	}
	return fmt.Sprintf("from line %d:\n%s", i+1, b.String())
}

func TestCmdYAML(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("a: [1, 1.5]\n"), 0o644)
	os.WriteFile(bad, []byte("a: 1\na: 2\n"), 0o644)
	tests := []struct {
		name           string
		args           []string
		code           int
		stdout, stderr string
	}{
		{"ok", []string{good}, 0, "{\n  \"a\": [\n    1,\n    1.5\n  ]\n}\n", ""},
		{"parse error", []string{bad}, 1, "", bad + ":2:1: key \"a\" already defined at line 1\n"},
		{"missing file", []string{filepath.Join(dir, "nope.yaml")}, 1, "", "no such file"},
		{"no args", nil, 2, "", "usage: agentd yaml FILE"},
		{"two args", []string{good, good}, 2, "", "usage:"},
		{"flag", []string{"-x"}, 2, "", "usage:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := cmdYAML(tt.args, &stdout, &stderr)
			if code != tt.code || stdout.String() != tt.stdout || !strings.Contains(stderr.String(), tt.stderr) || (tt.stderr == "" && stderr.Len() > 0) {
				t.Errorf("cmdYAML(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, stdout.String(), stderr.String(), tt.code, tt.stdout, tt.stderr)
			}
		})
	}
}

// FuzzParseYAML checks that the parser never panics, that every error is a
// positioned *yamlError, and that accepted input gives stable, valid JSON which
// itself parses back (JSON is in the subset) to the same value.
func FuzzParseYAML(f *testing.F) {
	files, _ := filepath.Glob("testdata/yaml/*.yaml")
	for _, file := range files {
		if src, err := os.ReadFile(file); err == nil {
			f.Add(src)
		}
	}
	for _, s := range []string{
		"", "a:\tb", "\ta: 1", "a: &x 1\nb: *x", "a: \"unterminated", "a: 'x", "[[[[[[[[", "{a: [b, {c: d}]}",
		strings.Repeat("- ", 200) + "x", strings.Repeat("a:\n ", 150), "a: |\n  x\n b\n", "a: |2+\n    x\n\n\n",
		"a: >\n  x\n   y\n  z\n\n", "- - - x\n  - y\n- z", "a:\n- b\n-\n  c: d\n", "? x\n: y", "a: \"\\U0010FFFF\\x00\"",
		"\uFEFF---\na: 1\r\n", "a: 1\r\r\nb: 2", "%TAG ! x\n", "a: [x,\n  y, # c\n  ]\n", "a: {b: , c: [], d: {}}",
		"0x\n", "-0\n", "1.e5\n", "\"a\": {\"b\": [1, 2.5, true, null, \"\\u00e9\"]}\n", "a: |-\n\n\n", "|+\n\n x\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		n, err := parseYAML("f.yaml", src)
		if err != nil {
			var ye *yamlError
			if !errors.As(err, &ye) || ye.Line < 1 || ye.Col < 1 {
				t.Fatalf("parseYAML(%q) error %#v is not a positioned *yamlError", src, err)
			}
			if strings.Contains(ye.Msg, "internal error") {
				t.Fatalf("parseYAML(%q): %v", src, err)
			}
			return
		}
		out, err := yamlJSON(n)
		if err != nil {
			t.Fatalf("yamlJSON(parseYAML(%q)): %v", src, err)
		}
		if !json.Valid(out) {
			t.Fatalf("yamlJSON(parseYAML(%q)) = %s is not valid JSON", src, out)
		}
		n2, err := parseYAML("f.yaml", src)
		if err != nil {
			t.Fatalf("second parseYAML(%q): %v", src, err)
		}
		if out2, _ := yamlJSON(n2); !bytes.Equal(out, out2) {
			t.Fatalf("parseYAML(%q) is not deterministic:\n%s\n%s", src, out, out2)
		}
		if len(out) > maxYAMLSize {
			return
		}
		n3, err := parseYAML("f.json", out)
		if err != nil {
			t.Fatalf("parseYAML(yamlJSON(parseYAML(%q))) = %v; JSON output:\n%s", src, err, out)
		}
		if out3, _ := yamlJSON(n3); !bytes.Equal(out, out3) {
			t.Fatalf("round trip of %q changed the value:\n%s\n%s", src, out, out3)
		}
	})
}

// BenchmarkParseYAML measures a typical config and a 1 MiB generated one.
func BenchmarkParseYAML(b *testing.B) {
	agent, err := os.ReadFile("testdata/yaml/agent.yaml")
	if err != nil {
		b.Fatal(err)
	}
	var big bytes.Buffer
	for i := 0; big.Len() < 1<<20; i++ {
		fmt.Fprintf(&big, "agent%d:\n  model: m%d\n  temperature: 0.%d\n  toolsets:\n    - type: shell\n      env: {A: \"x\", B: [1, 2]}\n  instruction: |\n    line one\n    line two\n", i, i, i%10)
	}
	for _, tt := range []struct {
		name string
		src  []byte
	}{{"agent", agent}, {"1MiB", big.Bytes()}} {
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(tt.src)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseYAML("b.yaml", tt.src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
