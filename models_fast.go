package main

// models_fast.go: a reflection-free decoder for the one chunk shape that makes up
// nearly all of an OpenAI-compatible stream — a text delta. A run decodes one per
// token, and encoding/json was a quarter of the server's CPU under load.

import (
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// openAIFastChunk decodes data into ch when it is a plain text delta: an object whose
// known keys are "model", at most one choice with a delta of only "content"/"role",
// a null finish_reason, and null usage/error; other keys may only hold scalars. It
// reports false, leaving ch untouched, for anything else — encoding/json then decodes
// it. FuzzOpenAIFastChunk checks that both agree whenever this one says yes.
func openAIFastChunk(data string, ch *openAIChatChunk) bool {
	p := fastJSON{s: data}
	var out openAIChatChunk
	var seen keySet
	ok := p.object(func(key string) bool {
		if !seen.add(key) {
			return false // duplicate keys: leave the precedence rules to encoding/json
		}
		switch key {
		case "model":
			s, ok := p.str()
			out.Model = s
			return ok
		case "choices":
			return p.choices(&out)
		case "usage", "error":
			return p.null()
		}
		return !foldsTo(key, "model", "choices", "usage", "error") && p.scalar()
	})
	if !ok || strings.TrimSpace(p.s[p.i:]) != "" {
		return false
	}
	*ch = out
	return true
}

func (p *fastJSON) choices(out *openAIChatChunk) bool {
	if !p.lit("[") {
		return false
	}
	if p.lit("]") {
		out.Choices = []openAIChatChoice{}
		return true
	}
	var c openAIChatChoice
	var seen keySet
	ok := p.object(func(key string) bool {
		if !seen.add(key) {
			return false
		}
		switch key {
		case "delta":
			return p.delta(&c.Delta)
		case "finish_reason":
			return p.null()
		}
		return !foldsTo(key, "delta", "finish_reason") && p.scalar()
	})
	if !ok || !p.lit("]") {
		return false // several choices: the general decoder
	}
	out.Choices = []openAIChatChoice{c}
	return true
}

func (p *fastJSON) delta(d *openAIChatDelta) bool {
	var seen keySet
	return p.object(func(key string) bool {
		if !seen.add(key) {
			return false
		}
		switch key {
		case "content":
			if p.null() {
				return true
			}
			s, ok := p.str()
			d.Content = s
			return ok
		case "role":
			return p.scalar()
		}
		return false // reasoning, tool calls, refusals …: the general decoder
	})
}

// keySet remembers the keys of one object; objects with more keys than it holds are
// left to encoding/json.
type keySet struct {
	keys [12]string
	n    int
}

// add records key; false if it was already there or the set is full.
func (k *keySet) add(key string) bool {
	if k.n == len(k.keys) {
		return false
	}
	for _, s := range k.keys[:k.n] {
		if s == key {
			return false
		}
	}
	k.keys[k.n] = key
	k.n++
	return true
}

// foldsTo reports whether key matches one of names case-insensitively, as
// encoding/json matches field names.
func foldsTo(key string, names ...string) bool {
	for _, n := range names {
		if strings.EqualFold(key, n) {
			return true
		}
	}
	return false
}

// fastJSON is a cursor over JSON text with just the steps the chunk decoder needs.
type fastJSON struct {
	s string
	i int
}

func (p *fastJSON) ws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

// lit consumes tok (after whitespace) if it comes next.
func (p *fastJSON) lit(tok string) bool {
	p.ws()
	if strings.HasPrefix(p.s[p.i:], tok) {
		p.i += len(tok)
		return true
	}
	return false
}

func (p *fastJSON) null() bool { return p.lit("null") }

// object walks an object, calling member for each key with the cursor on its value.
func (p *fastJSON) object(member func(key string) bool) bool {
	if !p.lit("{") {
		return false
	}
	if p.lit("}") {
		return true
	}
	for {
		key, ok := p.str()
		if !ok || !p.lit(":") || !member(key) {
			return false
		}
		if p.lit("}") {
			return true
		}
		if !p.lit(",") {
			return false
		}
	}
}

// str reads a string. Strings with escapes or unusual bytes are decoded by
// encoding/json, so their meaning is exactly its own.
func (p *fastJSON) str() (string, bool) {
	p.ws()
	if p.i >= len(p.s) || p.s[p.i] != '"' {
		return "", false
	}
	start := p.i
	escaped := false
	for j := p.i + 1; j < len(p.s); j++ {
		switch c := p.s[j]; {
		case c == '"':
			tok := p.s[start : j+1]
			p.i = j + 1
			if !escaped && utf8.ValidString(tok) {
				return tok[1 : len(tok)-1], true
			}
			var v string
			if json.Unmarshal([]byte(tok), &v) != nil {
				return "", false
			}
			return v, true
		case c == '\\':
			escaped = true
			j++ // the escaped character cannot end the string
		case c < 0x20:
			return "", false // control characters are not allowed raw
		}
	}
	return "", false
}

// scalar skips a string, number, true, false or null.
func (p *fastJSON) scalar() bool {
	p.ws()
	if p.i >= len(p.s) {
		return false
	}
	switch c := p.s[p.i]; {
	case c == '"':
		_, ok := p.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		n := jsonNumberLen(p.s[p.i:])
		if n == 0 {
			return false
		}
		p.i += n
		return true
	}
	return p.lit("true") || p.lit("false") || p.null()
}

// jsonNumberLen is the length of the JSON number at the start of s (RFC 8259 §6:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?), or 0 if there is none.
func jsonNumberLen(s string) int {
	i := 0
	digits := func() int {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - j
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return 0
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return 0
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0
		}
	}
	return i
}
