package main

// yaml.go parses the YAML subset used by agent configs (spec/YAML.md §4).
//
// The parser is line oriented: block structure is decided by indentation, and
// only flow collections ([...] and {...}) are scanned character by character,
// possibly across lines. Anything outside the subset is rejected with a
// positioned error rather than parsed approximately, because the rule is that
// an accepted document must mean exactly what goccy/go-yaml (the reference)
// and a YAML 1.2 core-schema parser both say it means.

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits on untrusted YAML input (STYLE.md point 10). The corpus needs depth 9
// and files of a few KiB.

type yamlKind int

const (
	yamlScalar yamlKind = iota
	yamlMap
	yamlSeq
)

// yamlNode is one node of a parsed document; every node knows its position.
type yamlNode struct {
	Kind      yamlKind
	Line, Col int // 1-based

	// Scalars: Text is the value after unquoting/folding; Tag is the resolved YAML 1.2
	// core-schema type: "null", "bool", "int", "float" or "str" (quoted and block
	// scalars are always "str"); Style is "plain", "single", "double", "literal" or "folded".
	Text  string
	Tag   string
	Style string

	// Maps: Keys[i] (scalar nodes, with their own positions) maps to Values[i], in
	// document order. Sequences: Values only.
	Keys   []*yamlNode
	Values []*yamlNode
}

// yamlError is a positioned parse error, printed as file:line:col: msg.
type yamlError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *yamlError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Messages shared by several rejection sites, so the wording stays identical.
const (
	yamlMsgTab       = "tab characters are not allowed here; indent with spaces"
	yamlMsgMultiLine = "multi-line plain scalars are not supported; quote the value or use a block scalar (|)"
	yamlMsgMapValues = "mapping values are not allowed here"
	yamlMsgBadIndent = "bad indentation: this line does not line up with any enclosing mapping key or sequence entry"
	yamlMsgMultiQ    = "multi-line quoted scalars are not supported; close the quote on the same line"
)

// yamlLine is one physical line without its line break.
type yamlLine struct {
	text string
	nl   bool // a line break followed the text (false only for a last line without one)
}

// yamlParser holds the state of one parseYAML call. It is not safe for concurrent use.
type yamlParser struct {
	file  string
	lines []yamlLine
	depth int
	cur   int // line being parsed, for "internal error" positions

	// flow cursor: flow collections are scanned across lines
	fli, foff int
	flowMaps  int // flow mappings enclosing the cursor

	// column cache: columns are counted in characters, so converting a byte offset
	// needs a scan; remembering the last answer keeps left-to-right scans linear.
	cLine, cOff, cCol int
}

// parseYAML parses one document. An empty document returns (nil, nil). Errors are *yamlError.
func parseYAML(file string, src []byte) (n *yamlNode, err error) {
	p := &yamlParser{file: file, cLine: -1}
	defer func() {
		if r := recover(); r != nil {
			ye, ok := r.(*yamlError)
			if !ok {
				// A bug, not bad input: still report a position rather than crash the server.
				ye = &yamlError{File: file, Line: p.cur + 1, Col: 1, Msg: fmt.Sprintf("internal error: %v", r)}
			}
			n, err = nil, ye
		}
	}()
	p.split(src)
	return p.document(), nil
}

// fail stops parsing with an error at byte offset off of line li (0-based).
func (p *yamlParser) fail(li, off int, format string, args ...any) {
	line, col := li+1, 1
	if li >= len(p.lines) {
		// past the end: point just after the last character
		line = len(p.lines)
		if line == 0 {
			line = 1
		} else {
			col = p.col(line-1, len(p.lines[line-1].text))
		}
	} else {
		col = p.col(li, off)
	}
	panic(&yamlError{File: p.file, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// col converts a byte offset in line li to a 1-based character column.
func (p *yamlParser) col(li, off int) int {
	t := p.lines[li].text
	off = min(off, len(t))
	from, c := 0, 1
	if li == p.cLine && off >= p.cOff {
		from, c = p.cOff, p.cCol
	}
	c += utf8.RuneCountInString(t[from:off])
	p.cLine, p.cOff, p.cCol = li, off, c
	return c
}

// split checks the character set (§4.1) and cuts src into lines. LF, CRLF and a
// lone CR are each one break; a leading BOM is dropped.
func (p *yamlParser) split(src []byte) {
	if len(src) > maxYAMLSize {
		// Point at where the limit was crossed (by lines), without scanning further.
		head := src[:maxYAMLSize]
		line := bytes.Count(head, []byte("\n")) + 1
		p.lines = []yamlLine{{text: ""}}
		panic(&yamlError{File: p.file, Line: line, Col: 1,
			Msg: fmt.Sprintf("document is larger than %d bytes", maxYAMLSize)})
	}
	s := string(src)
	s = strings.TrimPrefix(s, "\uFEFF")
	start := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			p.failRaw(s, start, i, "invalid UTF-8")
		case r == '\n' || r == '\r':
			p.lines = append(p.lines, yamlLine{text: s[start:i], nl: true})
			if r == '\r' && i+1 < len(s) && s[i+1] == '\n' {
				size++
			}
			start = i + size
		case r == '\t':
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0xfffe || r == 0xffff:
			p.failRaw(s, start, i, "control character U+%04X is not allowed", r)
		case r == 0x2028 || r == 0x2029:
			// YAML 1.1 parsers (PyYAML) break lines here and YAML 1.2 ones do not.
			p.failRaw(s, start, i, "line separator U+%04X is not allowed", r)
		case r == 0xfeff:
			p.failRaw(s, start, i, "byte order mark U+FEFF is only allowed at the start of the file")
		}
		i += size
	}
	if start < len(s) {
		p.lines = append(p.lines, yamlLine{text: s[start:]})
	}
}

// failRaw reports an error found by split, before the current line is stored.
func (p *yamlParser) failRaw(s string, start, i int, format string, args ...any) {
	p.lines = append(p.lines, yamlLine{text: s[start:i]})
	p.fail(len(p.lines)-1, i-start, format, args...)
}

// yamlIndent is the number of leading spaces of t.
func yamlIndent(t string) int {
	i := 0
	for i < len(t) && t[i] == ' ' {
		i++
	}
	return i
}

// yamlDocMarker reports whether t is a "---" or "..." line.
func yamlDocMarker(t string) string {
	if len(t) >= 3 && (t[:3] == "---" || t[:3] == "...") && (len(t) == 3 || t[3] == ' ' || t[3] == '\t') {
		return t[:3]
	}
	return ""
}

// yamlIsSeqEntry reports whether t[off] starts a block sequence entry ("-" then a space or EOL).
func yamlIsSeqEntry(t string, off int) bool {
	return off < len(t) && t[off] == '-' && (off+1 == len(t) || t[off+1] == ' ' || t[off+1] == '\t')
}

// skip returns the first line at or after li that holds content, skipping blank
// lines and comment lines (which may be indented any amount). Document markers
// end the document, which the subset does not allow to happen twice.
func (p *yamlParser) skip(li int) int {
	for ; li < len(p.lines); li++ {
		p.cur = li
		t := p.lines[li].text
		switch yamlDocMarker(t) {
		case "---":
			p.fail(li, 0, "multiple YAML documents are not supported")
		case "...":
			p.fail(li, 0, "document end markers (...) are not supported")
		}
		ind := yamlIndent(t)
		if ind == len(t) {
			continue
		}
		switch t[ind] {
		case '\t':
			p.fail(li, ind, yamlMsgTab)
		case '#':
			// Tabs inside comment text are fine (unlike YAML.md §4.1's strict
			// reading): they cannot change the document's meaning, both reference
			// parsers accept them, and rejecting them would only break configs.
			continue
		}
		return li
	}
	return len(p.lines)
}

// lineEnd checks that only spaces and a comment follow offset off of line li.
func (p *yamlParser) lineEnd(li, off int, what string) {
	t := p.lines[li].text
	i := off
	for i < len(t) && t[i] == ' ' {
		i++
	}
	switch {
	case i == len(t):
	case t[i] == '\t':
		p.fail(li, i, yamlMsgTab)
	case t[i] == '#' && (i > off || off == 0 || t[off-1] == ' '):
	case t[i] == ':' && what == "a flow collection":
		p.fail(li, i, "flow collections cannot be mapping keys")
	default:
		p.fail(li, i, "unexpected text after %s", what)
	}
}

// document parses the whole stream (§4.2): an optional "---", one node, and
// nothing but blank and comment lines after it.
func (p *yamlParser) document() *yamlNode {
	li := 0
prologue:
	for ; li < len(p.lines); li++ {
		p.cur = li
		t := p.lines[li].text
		if strings.HasPrefix(t, "%") {
			p.fail(li, 0, "directives (%%YAML, %%TAG) are not supported")
		}
		switch yamlDocMarker(t) {
		case "---":
			p.lineEnd(li, 3, `"---"; put the document on the next line`)
			li++
			break prologue
		case "...":
			p.fail(li, 0, "document end markers (...) are not supported")
		}
		ind := yamlIndent(t)
		switch {
		case ind == len(t):
		case t[ind] == '#':
		default:
			break prologue
		}
	}
	li = p.skip(li)
	if li == len(p.lines) {
		return nil
	}
	t := p.lines[li].text
	ind := yamlIndent(t)
	n, next := p.blockNode(li, ind, -1)
	if rest := p.skip(next); rest < len(p.lines) {
		p.failIndented(rest, n)
	}
	return n
}

// enter counts one more level of collection nesting.
func (p *yamlParser) enter(li, off int) {
	p.depth++
	if p.depth > maxYAMLDepth {
		p.fail(li, off, "nesting deeper than %d levels is not supported", maxYAMLDepth)
	}
}

// failIndented reports a content line that is indented more than the key or "-"
// owning the value just parsed (prev), as §4.3 "Detection" describes.
func (p *yamlParser) failIndented(li int, prev *yamlNode) {
	t := p.lines[li].text
	ind := yamlIndent(t)
	looksKey := strings.Contains(t[ind:]+" ", ": ")
	if prev != nil && prev.Kind == yamlScalar && (prev.Style == "plain" || prev.Style == "single" || prev.Style == "double") {
		if prev.Style == "plain" && !looksKey {
			p.fail(li, ind, yamlMsgMultiLine)
		}
		if looksKey {
			p.fail(li, ind, yamlMsgMapValues+"; line this key up with its siblings, or nest it under a key with no value")
		}
		p.fail(li, ind, "unexpected text on a new line after a complete value; "+yamlMsgMultiQ)
	}
	if prev != nil && prev.Kind == yamlScalar && (prev.Style == "literal" || prev.Style == "folded") {
		p.fail(li, ind, "bad indentation: this line is less indented than the block scalar started at line %d, but more than its key", prev.Line)
	}
	p.fail(li, ind, yamlMsgBadIndent)
}

// blockNode parses a node that starts a line (after its indentation, at byte off)
// and belongs to a key or "-" at column parent (-1 for the top node). It returns
// the node and the line to continue from.
func (p *yamlParser) blockNode(li, off, parent int) (*yamlNode, int) {
	p.cur = li
	t := p.lines[li].text
	switch t[off] {
	case '-':
		if yamlIsSeqEntry(t, off) {
			return p.blockSeq(li, off, false)
		}
	case '[', '{':
		return p.flowValue(li, off, parent)
	case '|', '>':
		if parent >= 0 {
			// Both reference parsers take this, but they count its indentation differently.
			p.fail(li, off, "a block scalar header (| or >) must be on the same line as its key or \"-\"")
		}
		return p.blockScalar(li, off, parent)
	}
	n, end, isKey := p.scalarOrKey(li, off, false)
	if isKey {
		return p.blockMap(li, off)
	}
	p.lineEnd(li, end, "a value")
	return n, li + 1
}

// inlineValue parses the value after "key: " on the same line; owner is the
// key's column.
func (p *yamlParser) inlineValue(li, off, owner int) (*yamlNode, int) {
	t := p.lines[li].text
	switch t[off] {
	case '-':
		if yamlIsSeqEntry(t, off) {
			p.fail(li, off, "block sequence entries are not allowed here; start the sequence on the next line")
		}
	case '[', '{':
		return p.flowValue(li, off, owner)
	case '|', '>':
		return p.blockScalar(li, off, owner)
	}
	n, end, isKey := p.scalarOrKey(li, off, false)
	if isKey {
		p.fail(li, end-1, yamlMsgMapValues)
	}
	p.lineEnd(li, end, "a value")
	return n, li + 1
}

// blockMap parses a block mapping whose first key is at byte off of line li; its
// keys are at column off (a byte offset equals the column here, since only
// spaces and "- " can precede a key).
func (p *yamlParser) blockMap(li, off int) (*yamlNode, int) {
	p.enter(li, off)
	defer func() { p.depth-- }()
	col := off
	m := &yamlNode{Kind: yamlMap, Line: li + 1, Col: p.col(li, off)}
	seen := map[string]*yamlNode{}
	for {
		p.cur = li
		t := p.lines[li].text
		if yamlIsSeqEntry(t, off) {
			p.fail(li, off, "expected a mapping key at column %d, found a sequence entry", col+1)
		}
		key, end, isKey := p.scalarOrKey(li, off, false)
		if !isKey {
			p.fail(li, off, "expected a mapping key followed by \": \"")
		}
		p.checkKey(key, seen, li, off)
		m.Keys = append(m.Keys, key)

		v := end
		for v < len(t) && t[v] == ' ' {
			v++
		}
		var val *yamlNode
		var next int
		if v < len(t) && t[v] == '\t' {
			p.fail(li, v, yamlMsgTab)
		}
		if v == len(t) || t[v] == '#' {
			val = &yamlNode{Kind: yamlScalar, Line: li + 1, Col: p.col(li, end), Tag: "null", Style: "plain"}
			next = p.skip(li + 1)
			if next < len(p.lines) {
				nt := p.lines[next].text
				ind := yamlIndent(nt)
				switch {
				case ind > col:
					val, next = p.blockNode(next, ind, col)
				case ind == col && yamlIsSeqEntry(nt, ind):
					// "key:\n- x": the indentless sequence of §4.3.
					val, next = p.blockSeq(next, ind, true)
				}
			}
		} else {
			val, next = p.inlineValue(li, v, col)
		}
		m.Values = append(m.Values, val)

		next = p.skip(next)
		if next == len(p.lines) {
			return m, next
		}
		ind := yamlIndent(p.lines[next].text)
		if ind < col {
			return m, next
		}
		if ind > col {
			p.failIndented(next, val)
		}
		li, off = next, ind
	}
}

// checkKey applies the key rules of §4.3 and records the key in seen.
func (p *yamlParser) checkKey(key *yamlNode, seen map[string]*yamlNode, li, off int) {
	if key.Style == "plain" {
		if key.Tag != "str" {
			p.fail(li, off, "non-string mapping key %q; quote it", key.Text)
		}
		if strings.Contains(key.Text, "<<") {
			// goccy also treats some keys that merely contain "<<" as merges.
			p.fail(li, off, "merge keys (<<) are not supported; quote a key that contains \"<<\"")
		}
	}
	if utf8.RuneCountInString(key.Text) > maxYAMLKeyLen {
		p.fail(li, off, "mapping key longer than %d characters", maxYAMLKeyLen)
	}
	if first, ok := seen[key.Text]; ok {
		p.fail(li, off, "key %q already defined at line %d", key.Text, first.Line)
	}
	seen[key.Text] = key
}

// blockSeq parses a block sequence whose first "-" is at byte off of line li.
// An indentless sequence (one at its key's column) ends at the first line at
// that column that is not an entry; any other sequence must not have one.
func (p *yamlParser) blockSeq(li, off int, indentless bool) (*yamlNode, int) {
	p.enter(li, off)
	defer func() { p.depth-- }()
	col := off
	s := &yamlNode{Kind: yamlSeq, Line: li + 1, Col: p.col(li, off)}
	for {
		p.cur = li
		t := p.lines[li].text
		v := off + 1
		for v < len(t) && t[v] == ' ' {
			v++
		}
		var item *yamlNode
		var next int
		if v < len(t) && t[v] == '\t' {
			p.fail(li, v, yamlMsgTab)
		}
		if v == len(t) || t[v] == '#' {
			item = &yamlNode{Kind: yamlScalar, Line: li + 1, Col: p.col(li, off+1), Tag: "null", Style: "plain"}
			next = p.skip(li + 1)
			if next < len(p.lines) {
				if ind := yamlIndent(p.lines[next].text); ind > col {
					item, next = p.blockNode(next, ind, col)
				} else if indentless && ind == col && !yamlIsSeqEntry(p.lines[next].text, ind) {
					// goccy takes the next key as this entry's value.
					p.fail(li, off, "an empty entry at the end of a sequence that is not indented under its key is ambiguous; write ~ or indent the sequence")
				}
			}
		} else {
			item, next = p.seqItem(li, v, col)
		}
		s.Values = append(s.Values, item)

		next = p.skip(next)
		if next == len(p.lines) {
			return s, next
		}
		nt := p.lines[next].text
		ind := yamlIndent(nt)
		if ind < col {
			return s, next
		}
		if ind > col {
			p.failIndented(next, item)
		}
		if !yamlIsSeqEntry(nt, ind) {
			if indentless {
				return s, next
			}
			p.fail(next, ind, "expected a sequence entry \"- \" at column %d", col+1)
		}
		li, off = next, ind
	}
}

// seqItem parses what follows "- " on the same line; dash is the column of "-".
func (p *yamlParser) seqItem(li, off, dash int) (*yamlNode, int) {
	t := p.lines[li].text
	switch t[off] {
	case '-':
		if yamlIsSeqEntry(t, off) {
			return p.blockSeq(li, off, false) // "- - x"
		}
	case '[', '{':
		return p.flowValue(li, off, dash)
	case '|', '>':
		return p.blockScalar(li, off, dash)
	}
	n, end, isKey := p.scalarOrKey(li, off, false)
	if isKey {
		return p.blockMap(li, off) // "- key: v", later keys line up with key
	}
	p.lineEnd(li, end, "a value")
	return n, li + 1
}

// scalarOrKey scans a single-line scalar at byte off of line li. If a ":" key
// indicator follows, isKey is true and end is just past the ":".
func (p *yamlParser) scalarOrKey(li, off int, flow bool) (n *yamlNode, end int, isKey bool) {
	t := p.lines[li].text
	p.checkScalarStart(li, off, flow)
	n = &yamlNode{Kind: yamlScalar, Line: li + 1, Col: p.col(li, off), Tag: "str"}
	if c := t[off]; c == '"' || c == '\'' {
		n.Text, end = p.quoted(li, off)
		n.Style = "double"
		if c == '\'' {
			n.Style = "single"
		}
		j := end
		for j < len(t) && t[j] == ' ' {
			j++
		}
		if j < len(t) && t[j] == '\t' {
			p.fail(li, j, yamlMsgTab)
		}
		isKey = j < len(t) && t[j] == ':' && (j+1 == len(t) || t[j+1] == ' ' || t[j+1] == '\t')
		if i := strings.IndexByte(t[off:end], '\t'); i >= 0 && (flow || isKey) {
			// goccy fails on these; a raw tab is fine in a quoted block value.
			p.fail(li, off+i, "a raw tab inside a quoted key or a quoted scalar in a flow collection is not supported; write \\t")
		}
		if isKey {
			return n, j + 1, true
		}
		return n, end, false
	}
	text, stop, colon := p.plain(li, off, flow)
	if strings.HasPrefix(text, "...") {
		// goccy takes a leading "..." as a document end marker.
		p.fail(li, off, "a plain scalar starting with \"...\" is not supported; quote it")
	}
	n.Text, n.Style = text, "plain"
	tag, bad := yamlResolve(text)
	if bad {
		p.fail(li, off, "ambiguous number %q; quote it", text)
	}
	n.Tag = tag
	if colon {
		return n, stop + 1, true
	}
	return n, stop, false
}

// checkScalarStart rejects the characters that cannot start a scalar (§4.4),
// naming the YAML feature they would start.
func (p *yamlParser) checkScalarStart(li, off int, flow bool) {
	t := p.lines[li].text
	c := t[off]
	spaceAfter := off+1 == len(t) || t[off+1] == ' ' || t[off+1] == '\t' ||
		(flow && strings.IndexByte(",[]{}", t[off+1]) >= 0)
	switch c {
	case '&':
		p.fail(li, off, "anchors (&name) are not supported")
	case '*':
		p.fail(li, off, "aliases (*name) are not supported")
	case '!':
		p.fail(li, off, "tags (!tag) are not supported")
	case '%':
		p.fail(li, off, "'%%' cannot start a plain scalar; quote the value")
	case '@', '`':
		p.fail(li, off, "%q is reserved and cannot start a plain scalar; quote the value", string(c))
	case ',', '[', ']', '{', '}':
		p.fail(li, off, "unexpected %q", string(c))
	case '#':
		p.fail(li, off, "unexpected '#'; a comment needs a space before it")
	case '|', '>':
		p.fail(li, off, "block scalars (| or >) are not allowed here")
	case '\t':
		p.fail(li, off, yamlMsgTab)
	case '?':
		if spaceAfter {
			p.fail(li, off, "explicit keys (\"? \") are not supported")
		}
		if flow {
			p.fail(li, off, "'?' cannot start a plain scalar inside a flow collection; quote the value")
		}
	case ':':
		if spaceAfter {
			p.fail(li, off, "missing mapping key before ':'")
		}
		if flow {
			p.fail(li, off, "':' cannot start a plain scalar inside a flow collection; quote the value")
		}
	case '-':
		if spaceAfter {
			p.fail(li, off, "block sequence entries are not allowed here")
		}
	}
}

// plain scans a plain scalar from byte off of line li (§4.4). It returns the
// text with trailing spaces trimmed, the offset where scanning stopped, and
// whether it stopped at a ":" key indicator (stop is then the ":").
func (p *yamlParser) plain(li, off int, flow bool) (text string, stop int, colon bool) {
	t := p.lines[li].text
	i := off
scan:
	for ; i < len(t); i++ {
		switch t[i] {
		case '\t':
			p.fail(li, i, yamlMsgTab)
		case ':':
			if i+1 == len(t) || t[i+1] == ' ' || t[i+1] == '\t' || (flow && strings.IndexByte(",[]{}", t[i+1]) >= 0) {
				colon = true
				break scan
			}
		case '#':
			if t[i-1] == ' ' {
				break scan
			}
		case ',', '[', ']', '{', '}':
			if flow {
				break scan
			}
		case '?':
			if flow {
				// PyYAML ends a flow plain scalar here and YAML 1.2 does not.
				p.fail(li, i, "'?' inside a plain scalar in a flow collection is not supported; quote the value")
			}
		}
	}
	return strings.TrimRight(t[off:i], " "), i, colon
}

// quoted scans a single- or double-quoted scalar that must close on line li. It
// returns the unescaped text and the offset just past the closing quote.
func (p *yamlParser) quoted(li, off int) (string, int) {
	t := p.lines[li].text
	q := t[off]
	var b strings.Builder
	for i := off + 1; i < len(t); i++ {
		c := t[i]
		if q == '\'' {
			if c == '\'' {
				if i+1 < len(t) && t[i+1] == '\'' {
					b.WriteByte('\'')
					i++
					continue
				}
				return b.String(), i + 1
			}
			b.WriteByte(c)
			continue
		}
		switch c {
		case '"':
			return b.String(), i + 1
		case '\\':
			i = p.escape(li, i, &b)
		default:
			b.WriteByte(c)
		}
	}
	p.fail(li, off, "quoted scalar is not closed on this line; "+yamlMsgMultiQ)
	return "", 0
}

// yamlEscapes maps the single-character escapes of YAML 1.2 double-quoted scalars.
var yamlEscapes = map[byte]string{
	'0': "\x00", 'a': "\a", 'b': "\b", 't': "\t", '\t': "\t", 'n': "\n", 'v': "\v",
	'f': "\f", 'r': "\r", 'e': "\x1b", ' ': " ", '"': "\"", '/': "/", '\\': "\\",
	'N': "\u0085", '_': "\u00a0", 'L': "\u2028", 'P': "\u2029",
}

// escape decodes the escape whose backslash is at byte i of line li into b and
// returns the offset of its last byte.
func (p *yamlParser) escape(li, i int, b *strings.Builder) int {
	t := p.lines[li].text
	if i+1 == len(t) {
		p.fail(li, i, "a backslash at the end of a line continues the string; "+yamlMsgMultiQ)
	}
	c := t[i+1]
	if s, ok := yamlEscapes[c]; ok {
		b.WriteString(s)
		return i + 1
	}
	width := map[byte]int{'x': 2, 'u': 4, 'U': 8}[c]
	if width == 0 {
		r, _ := utf8.DecodeRuneInString(t[i+1:])
		p.fail(li, i, "unknown escape \\%c", r)
	}
	if i+2+width > len(t) {
		p.fail(li, i, "escape \\%c needs %d hex digits", c, width)
	}
	v, err := strconv.ParseUint(t[i+2:i+2+width], 16, 32)
	if err != nil {
		p.fail(li, i, "escape \\%c needs %d hex digits", c, width)
	}
	r := rune(v)
	if (r >= 0xd800 && r <= 0xdfff) || r > utf8.MaxRune {
		p.fail(li, i, "escape \\%s is not a valid Unicode character", t[i+1:i+2+width])
	}
	b.WriteRune(r)
	return i + 1 + width
}

// blockScalar parses a literal (|) or folded (>) scalar whose header is at byte
// off of line li; parent is the column of the owning key or "-" (-1 at the top).
// It follows §4.5, which matches PyYAML's scan_block_scalar line for line.
func (p *yamlParser) blockScalar(li, off, parent int) (*yamlNode, int) {
	n := &yamlNode{Kind: yamlScalar, Line: li + 1, Col: p.col(li, off), Tag: "str", Style: "literal"}
	folded := p.lines[li].text[off] == '>'
	if folded {
		n.Style = "folded"
	}
	chomp, digit := p.blockHeader(li, off)
	bl := blockLines{p.lines, p.blockIndent(li, off, parent, digit)}
	start := li + 1
	first := start
	for first < len(p.lines) && bl.blank(first) {
		first++
	}
	p.checkBlockFirst(bl, li, off, parent, start, first, digit)
	if folded {
		p.checkFolded(bl, first)
	}
	text, lastBreak, trailing, j := bl.body(start, folded)
	if chomp != '-' {
		text += lastBreak
	}
	if chomp == '+' {
		if text == "" {
			// goccy reads "a: |+" with no content as "\n" or fails; YAML 1.2 says "".
			p.fail(li, off, "a keep (+) block scalar without content is not supported")
		}
		text += trailing
	}
	if digit > 0 && j == len(p.lines) && !bl.content(j-1) {
		// goccy fails on this ("invalid number of indent"); say so precisely.
		p.fail(j-1, 0, "blank lines at the end of the file after a block scalar with an indentation indicator are not supported; remove them")
	}
	n.Text = text
	if strings.HasSuffix(n.Text, " ") {
		// goccy drops trailing spaces when the value does not end in a line break.
		last := j - 1
		for last > li && !bl.content(last) {
			last--
		}
		p.fail(last, len(strings.TrimRight(p.lines[last].text, " ")),
			"trailing spaces at the end of a block scalar without a final line break are ambiguous; remove them")
	}
	return n, j
}

// blockHeader reads the indicators after the | or > at byte off of line li: the
// chomping indicator ('-', '+' or 0) and the indentation indicator (0 if none).
func (p *yamlParser) blockHeader(li, off int) (chomp byte, digit int) {
	t := p.lines[li].text
	i := off + 1
indicators:
	for ; i < len(t) && i < off+3; i++ {
		c := t[i]
		switch {
		case (c == '-' || c == '+') && chomp == 0:
			chomp = c
		case c >= '1' && c <= '9' && digit == 0:
			digit = int(c - '0')
		case c == '0' && digit == 0:
			p.fail(li, i, "block scalar indentation indicator must be 1-9")
		default:
			break indicators
		}
	}
	p.lineEnd(li, i, "a block scalar header")
	return chomp, digit
}

// blockIndent is the indentation of the content of the block scalar whose header is
// at line li: parent plus the indicator, else that of the first non-blank line.
func (p *yamlParser) blockIndent(li, off, parent, digit int) int {
	if digit > 0 {
		if parent < 0 {
			// YAML 1.2 counts this from -1 and libyaml-style parsers from 0.
			p.fail(li, off, "an indentation indicator on a top-level block scalar is not supported")
		}
		return parent + digit
	}
	// Auto-detect from the first non-blank line (§4.5).
	minInd := max(parent+1, 1) // a top-level block scalar still needs indented content
	start := li + 1
	maxBlank, first := 0, start
	for ; first < len(p.lines); first++ {
		lt := p.lines[first].text
		if ind := yamlIndent(lt); ind < len(lt) {
			break
		}
		maxBlank = max(maxBlank, len(lt))
	}
	m := max(minInd, maxBlank)
	if first < len(p.lines) {
		if ind := yamlIndent(p.lines[first].text); ind >= minInd {
			m = ind
			for j := start; j < first; j++ {
				if len(p.lines[j].text) > m {
					p.fail(j, m, "a whitespace-only line before the first line of a block scalar has more spaces than its content")
				}
			}
		}
	}
	return m
}

// checkBlockFirst rejects what goccy misreads at the start of a block scalar whose
// header is at line li and whose first non-blank line is first.
func (p *yamlParser) checkBlockFirst(bl blockLines, li, off, parent, start, first, digit int) {
	if first == len(p.lines) || !bl.content(first) {
		// goccy misreads an empty block scalar followed by blank lines, or by a
		// line it might take as content (it even keeps the quotes of a following
		// "key"), so only the plain "a: |\nb: x" form is accepted.
		if first > start || (first < len(p.lines) && yamlIndent(p.lines[first].text) > parent) {
			p.fail(li, off, "an empty block scalar must be followed directly by a line that is not indented more than its key; remove the | or > or add content")
		}
	} else if digit == 0 && p.lines[first].text[bl.m] == '\t' {
		// goccy counts such a tab as indentation when it detects the indentation.
		p.fail(first, bl.m, "a block scalar whose first line starts with a tab needs an indentation indicator (|2)")
	}
}

// checkFolded rejects the lines of a folded scalar, from its first non-blank line,
// that goccy folds differently from YAML 1.2 (checked against v1.19.2).
func (p *yamlParser) checkFolded(bl blockLines, first int) {
	for k := first; k < len(p.lines) && (bl.blank(k) || bl.content(k)); k++ {
		kt := p.lines[k].text
		if yamlIndent(kt) == len(kt) && len(kt) > bl.m {
			p.fail(k, bl.m, "a whitespace-only line indented more than a folded (>) block scalar is ambiguous; remove its spaces")
		}
		if !p.lines[k].nl {
			p.fail(k, len(kt), "a folded (>) block scalar must end with a line break")
		}
	}
}

// blockLines are the lines of a block scalar whose content is indented m spaces.
type blockLines struct {
	lines []yamlLine
	m     int
}

// blank reports whether line j is a blank line inside the scalar: at most m spaces.
func (bl blockLines) blank(j int) bool {
	lt := bl.lines[j].text
	return len(lt) <= bl.m && yamlIndent(lt) == len(lt)
}

func (bl blockLines) content(j int) bool {
	return yamlIndent(bl.lines[j].text) >= bl.m && !bl.blank(j)
}

// brk is the line break after line j ("" at the end of a file without one).
func (bl blockLines) brk(j int) string {
	if bl.lines[j].nl {
		return "\n"
	}
	return ""
}

// body reads the scalar from line start: its text without the last line break,
// that break, the breaks of the blank lines after the content (which chomping
// keeps or drops), and the line after the scalar.
func (bl blockLines) body(start int, folded bool) (text, lastBreak, trailing string, next int) {
	var b, breaks strings.Builder
	j := start
	for ; j < len(bl.lines) && bl.blank(j); j++ {
		breaks.WriteString(bl.brk(j))
	}
	m := bl.m
	for j < len(bl.lines) && bl.content(j) {
		b.WriteString(breaks.String())
		breaks.Reset()
		lt := bl.lines[j].text
		leadingNonSpace := lt[m] != ' ' && lt[m] != '\t'
		b.WriteString(lt[m:])
		lastBreak = bl.brk(j)
		j++
		for ; j < len(bl.lines) && bl.blank(j); j++ {
			breaks.WriteString(bl.brk(j))
		}
		if j < len(bl.lines) && bl.content(j) {
			nt := bl.lines[j].text
			if folded && lastBreak == "\n" && leadingNonSpace && nt[m] != ' ' && nt[m] != '\t' {
				if breaks.Len() == 0 {
					b.WriteByte(' ')
				}
			} else {
				b.WriteString(lastBreak)
			}
		}
	}
	return b.String(), lastBreak, breaks.String(), j
}

// flowValue parses a flow collection that starts at byte off of line li as a
// block value; owner is the column of the owning key or "-". It returns the
// line after the one holding the closing bracket.
func (p *yamlParser) flowValue(li, off, owner int) (*yamlNode, int) {
	p.fli, p.foff = li, off
	n := p.flowNode(owner, false)
	p.lineEnd(p.fli, p.foff, "a flow collection")
	return n, p.fli + 1
}

// flowSkip moves the flow cursor over spaces, comments and line breaks. A
// continuation line must be indented more than owner (§4.6).
func (p *yamlParser) flowSkip(owner, openLi, openOff int) {
	for {
		t := p.lines[p.fli].text
		start := p.foff
		for p.foff < len(t) && t[p.foff] == ' ' {
			p.foff++
		}
		if p.foff < len(t) {
			switch t[p.foff] {
			case '\t':
				p.fail(p.fli, p.foff, yamlMsgTab)
			case '#':
				if p.foff == 0 || p.foff > start || t[p.foff-1] == ' ' {
					p.foff = len(t)
					continue
				}
			}
			return
		}
		p.fli++
		p.foff = 0
		if p.fli == len(p.lines) {
			p.fail(openLi, openOff, "flow collection is not closed")
		}
		p.cur = p.fli
		t = p.lines[p.fli].text
		if yamlDocMarker(t) != "" {
			p.fail(p.fli, 0, "document markers are not allowed inside a flow collection")
		}
		if ind := yamlIndent(t); ind < len(t) && t[ind] != '#' && ind <= owner {
			p.fail(p.fli, ind, "a flow collection continuation line must be indented more than column %d", owner+1)
		}
	}
}

// flowNode parses one flow node at the flow cursor: a nested collection, a quoted
// scalar or a plain scalar. key marks flow mapping keys.
func (p *yamlParser) flowNode(owner int, key bool) *yamlNode {
	li, off := p.fli, p.foff
	t := p.lines[li].text
	switch t[off] {
	case '[', '{':
		if key {
			p.fail(li, off, "flow collections cannot be mapping keys")
		}
		return p.flowCollection(owner)
	case '-':
		if yamlIsSeqEntry(t, off) || (off+1 < len(t) && strings.IndexByte(",[]{}", t[off+1]) >= 0) {
			p.fail(li, off, "block sequence entries are not allowed inside a flow collection")
		}
	}
	n, end, isKey := p.scalarOrKey(li, off, true)
	if isKey {
		end-- // leave the ":" to the flow collection, which decides about it
	}
	p.foff = end
	return n
}

// flowCollection parses [ ... ] or { ... } at the flow cursor.
func (p *yamlParser) flowCollection(owner int) *yamlNode {
	openLi, openOff := p.fli, p.foff
	p.enter(openLi, openOff)
	defer func() { p.depth-- }()
	isMap := p.lines[openLi].text[openOff] == '{'
	n := &yamlNode{Kind: yamlSeq, Line: openLi + 1, Col: p.col(openLi, openOff)}
	closer := byte(']')
	if isMap {
		n.Kind, closer = yamlMap, '}'
		p.flowMaps++
		defer func() { p.flowMaps-- }()
	}
	seen := map[string]*yamlNode{}
	p.foff++
	cur := func() byte { return p.lines[p.fli].text[p.foff] }
	for {
		p.flowSkip(owner, openLi, openOff)
		if cur() == closer {
			p.foff++
			return n
		}
		if cur() == ',' {
			p.fail(p.fli, p.foff, "empty entry in a flow collection")
		}
		var last *yamlNode
		if isMap {
			kli, koff := p.fli, p.foff
			key := p.flowNode(owner, true)
			if key.Style == "plain" && strings.Contains(key.Text, ":") {
				// goccy splits {b:1} at the colon and YAML 1.2 does not.
				p.fail(kli, koff, "a plain key in a flow mapping must not contain ':'; quote it or add a space after ':'")
			}
			p.checkKey(key, seen, kli, koff)
			n.Keys = append(n.Keys, key)
			t := p.lines[p.fli].text
			for p.foff < len(t) && t[p.foff] == ' ' {
				p.foff++
			}
			if p.foff == len(t) || t[p.foff] != ':' {
				p.fail(p.fli, p.foff, "expected ':' after a flow mapping key")
			}
			colLi, colOff := p.fli, p.foff
			p.foff++
			p.flowSkip(owner, openLi, openOff)
			if c := cur(); c == ',' || c == closer {
				last = &yamlNode{Kind: yamlScalar, Line: colLi + 1, Col: p.col(colLi, colOff) + 1, Tag: "null", Style: "plain"}
			} else {
				last = p.flowNode(owner, false)
			}
			n.Values = append(n.Values, last)
		} else {
			eli, eoff := p.fli, p.foff
			last = p.flowNode(owner, false)
			if p.flowMaps > 0 && last.Style == "plain" && strings.Contains(last.Text, ":") {
				// goccy reads {k: [a:b]} as {k: [{a: b}]}; YAML 1.2 as {k: ["a:b"]}.
				p.fail(eli, eoff, "a plain scalar with ':' in a flow sequence inside a flow mapping is ambiguous; quote it")
			}
			n.Values = append(n.Values, last)
		}
		endLi := p.fli
		p.flowSkip(owner, openLi, openOff)
		switch c := cur(); {
		case c == ',':
			p.foff++
		case c == closer:
		case c == ':':
			if isMap {
				p.fail(p.fli, p.foff, yamlMsgMapValues)
			}
			p.fail(p.fli, p.foff, "key: value pairs inside flow sequences are not supported; use a flow mapping {k: v}")
		case p.fli != endLi && last.Kind == yamlScalar && last.Style == "plain":
			p.fail(p.fli, p.foff, yamlMsgMultiLine)
		default:
			p.fail(p.fli, p.foff, "expected ',' or %q in a flow collection", string(closer))
		}
	}
}

// yamlResolve gives the YAML 1.2 core-schema tag of a plain scalar (§4.4). bad
// is true for number-like text that goccy and YAML 1.2 read differently.
func yamlResolve(s string) (tag string, bad bool) {
	switch s {
	case "", "~", "null", "Null", "NULL":
		return "null", false
	case "true", "True", "TRUE", "false", "False", "FALSE":
		return "bool", false
	}
	if len(s) == 0 || !strings.ContainsAny(s[:1], "+-.0123456789") {
		return "str", false // cheap exit: every number-like form starts with one of these
	}
	if _, ok := yamlIntDecimal(s); ok {
		return "int", false
	}
	if yamlIntSyntax(s) || yamlPrefixed(s) {
		return "", true // out of range, signed/upper-case/invalid 0x 0o 0b, or leading zero
	}
	if yamlFloatSyntax(s) {
		if _, ok := yamlFloat(s); ok {
			return "float", false
		}
		return "", true // overflow
	}
	body := strings.TrimLeft(s, "+-")
	if len(body) < len(s)-1 {
		if t, b := yamlResolve(body); b || t == "int" || t == "float" {
			return "", true // goccy reads +-15 as 15
		}
		return "str", false
	}
	if yamlExpSyntax(body) {
		return "", true // 1e3: float in YAML 1.2, string in goccy
	}
	if l := strings.ToLower(body); l == ".inf" || l == ".nan" {
		return "", true
	}
	if strings.Contains(s, "_") {
		u := strings.ReplaceAll(s, "_", "")
		if u != "" && u != "+" && u != "-" {
			if t, b := yamlResolve(u); b || t == "int" || t == "float" {
				return "", true // 1_000: goccy reads a number, YAML 1.2 a string
			}
		}
	}
	return "str", false
}

// yamlDigits reports whether s is a non-empty run of digits valid in base.
func yamlDigits(s string, base int) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= '0' && c <= '9' && int(c-'0') < base ||
			base == 16 && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
		if !ok {
			return false
		}
	}
	return true
}

// yamlIntSyntax reports whether s is [-+]?[0-9]+ (in range or not, with or without a leading zero).
func yamlIntSyntax(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	return yamlDigits(s, 10)
}

// yamlPrefixed reports whether s looks like a 0x/0o/0b number in any case or sign.
func yamlPrefixed(s string) bool {
	s = strings.TrimLeft(s, "+-")
	return len(s) >= 2 && s[0] == '0' && strings.IndexByte("xXoObB", s[1]) >= 0 && (len(s) == 2 || yamlDigits(s[2:], 16))
}

// yamlIntDecimal converts a core-schema int (§4.4: [-+]?(0|[1-9][0-9]*) within
// int64, or uint64 when positive; 0x[0-9a-fA-F]+; 0o[0-7]+) to decimal digits.
func yamlIntDecimal(s string) (string, bool) {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o') {
		base := 16
		if s[1] == 'o' {
			base = 8
		}
		if !yamlDigits(s[2:], base) {
			return "", false
		}
		v, err := strconv.ParseUint(s[2:], base, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatUint(v, 10), true
	}
	body, neg := s, false
	if body != "" && (body[0] == '-' || body[0] == '+') {
		body, neg = body[1:], body[0] == '-'
	}
	if !yamlDigits(body, 10) || (len(body) > 1 && body[0] == '0') {
		return "", false
	}
	if neg {
		v, err := strconv.ParseInt("-"+body, 10, 64)
		if err != nil {
			return "", false
		}
		return strconv.FormatInt(v, 10), true // "-0" becomes "0"
	}
	v, err := strconv.ParseUint(body, 10, 64)
	if err != nil {
		return "", false
	}
	return strconv.FormatUint(v, 10), true
}

// yamlFloatSyntax reports whether s is [-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?.
func yamlFloatSyntax(s string) bool {
	if s != "" && (s[0] == '-' || s[0] == '+') {
		s = s[1:]
	}
	mant, exp, hasExp := strings.Cut(strings.ReplaceAll(s, "E", "e"), "e")
	if hasExp {
		exp = strings.TrimPrefix(strings.TrimPrefix(exp, "-"), "+")
		if strings.Count(s, "e")+strings.Count(s, "E") != 1 || !yamlDigits(exp, 10) {
			return false
		}
	}
	whole, frac, dot := strings.Cut(mant, ".")
	if !dot {
		return false
	}
	return (yamlDigits(whole, 10) && (frac == "" || yamlDigits(frac, 10))) || (whole == "" && yamlDigits(frac, 10))
}

// yamlExpSyntax reports whether s (unsigned) is a number with an exponent but no
// '.', like 1e3, which the core schema reads as a float and goccy as a string.
func yamlExpSyntax(s string) bool {
	mant, exp, ok := strings.Cut(strings.ReplaceAll(s, "E", "e"), "e")
	if !ok || strings.Contains(exp, "e") {
		return false
	}
	exp = strings.TrimPrefix(strings.TrimPrefix(exp, "-"), "+")
	if !yamlDigits(exp, 10) {
		return false
	}
	whole, frac, _ := strings.Cut(mant, ".")
	return (whole == "" || yamlDigits(whole, 10)) && (frac == "" || yamlDigits(frac, 10)) && whole+frac != ""
}

// yamlFloat parses a core-schema float; ok is false when it is not finite.
func yamlFloat(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil
}

// yamlJSON renders a node as JSON in document order: ints print as integers, floats
// with a '.', 'e' or 'E' so number kinds survive; a nil node is null.
func yamlJSON(n *yamlNode) ([]byte, error) {
	var b bytes.Buffer
	if err := yamlWriteJSON(&b, n, ""); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

// yamlWriteJSON appends n to b, pretty-printed with two spaces per level.
func yamlWriteJSON(b *bytes.Buffer, n *yamlNode, indent string) error {
	if n == nil {
		b.WriteString("null")
		return nil
	}
	switch n.Kind {
	case yamlMap, yamlSeq:
		open, close := "[", "]"
		if n.Kind == yamlMap {
			open, close = "{", "}"
			if len(n.Keys) != len(n.Values) {
				return fmt.Errorf("yaml: mapping at %d:%d has %d keys and %d values", n.Line, n.Col, len(n.Keys), len(n.Values))
			}
		}
		if len(n.Values) == 0 {
			b.WriteString(open + close)
			return nil
		}
		b.WriteString(open)
		inner := indent + "  "
		for i, v := range n.Values {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString("\n" + inner)
			if n.Kind == yamlMap {
				if n.Keys[i] == nil {
					return fmt.Errorf("yaml: mapping at %d:%d has a nil key", n.Line, n.Col)
				}
				yamlQuoteJSON(b, n.Keys[i].Text)
				b.WriteString(": ")
			}
			if err := yamlWriteJSON(b, v, inner); err != nil {
				return err
			}
		}
		b.WriteString("\n" + indent + close)
		return nil
	case yamlScalar:
		switch n.Tag {
		case "null":
			b.WriteString("null")
		case "bool":
			switch strings.ToLower(n.Text) {
			case "true":
				b.WriteString("true")
			case "false":
				b.WriteString("false")
			default:
				return fmt.Errorf("yaml: %d:%d: %q is not a bool", n.Line, n.Col, n.Text)
			}
		case "int":
			d, ok := yamlIntDecimal(n.Text)
			if !ok {
				return fmt.Errorf("yaml: %d:%d: %q is not an int", n.Line, n.Col, n.Text)
			}
			b.WriteString(d)
		case "float":
			f, ok := yamlFloat(n.Text)
			if !ok || !yamlFloatSyntax(n.Text) {
				return fmt.Errorf("yaml: %d:%d: %q is not a finite float", n.Line, n.Col, n.Text)
			}
			// Always print a '.', so the number stays a float for readers that tell
			// 1 from 1.0, and the output is itself inside the subset (1e+20 is not).
			s := strconv.FormatFloat(f, 'g', -1, 64)
			if !strings.Contains(s, ".") {
				mant, exp, hasExp := strings.Cut(s, "e")
				s = mant + ".0"
				if hasExp {
					s += "e" + exp
				}
			}
			b.WriteString(s)
		case "str":
			yamlQuoteJSON(b, n.Text)
		default:
			return fmt.Errorf("yaml: %d:%d: unknown tag %q", n.Line, n.Col, n.Tag)
		}
		return nil
	}
	return fmt.Errorf("yaml: %d:%d: unknown node kind %d", n.Line, n.Col, n.Kind)
}

// yamlQuoteJSON appends s as a JSON string. Unlike encoding/json it leaves <, >
// and & alone, so instructions stay readable; invalid UTF-8 becomes U+FFFD.
// Characters that parseYAML refuses to see raw (§4.1) are escaped, so the
// output can be parsed again.
func yamlQuoteJSON(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 ||
			r == 0xfeff || r == 0xfffe || r == 0xffff:
			fmt.Fprintf(b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}

// cmdYAML implements `agentd yaml FILE`: it prints the document as JSON, or the
// positioned error. It returns the exit status: 0 ok, 1 bad file, 2 usage.
func cmdYAML(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 || (strings.HasPrefix(args[0], "-") && args[0] != "-") {
		fmt.Fprintln(stderr, "usage: agentd yaml FILE\n\nPrints the YAML document in FILE as JSON, or a file:line:col error.")
		return 2
	}
	name := args[0]
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "agentd yaml: %v\n", err)
			return 1
		}
		defer f.Close()
		r = f
	}
	// Read one byte past the limit so parseYAML can report an oversized file.
	src, err := io.ReadAll(io.LimitReader(r, maxYAMLSize+1))
	if err != nil {
		fmt.Fprintf(stderr, "agentd yaml: %v\n", err)
		return 1
	}
	n, err := parseYAML(name, src)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	out, err := yamlJSON(n)
	if err != nil {
		fmt.Fprintf(stderr, "agentd yaml: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		fmt.Fprintf(stderr, "agentd yaml: %v\n", err)
		return 1
	}
	return 0
}
