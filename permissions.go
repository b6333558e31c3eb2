package main

// permissions.go: tool-approval patterns (API.md §7.3): `tool[:arg=glob…]`, case
// insensitive; a trailing `*` with no other wildcard is a prefix match, otherwise
// filepath.Match globbing. Unlike the reference, a malformed pattern is rejected when
// it is set, so a bad deny can never fail open.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// toolPattern is a parsed permission pattern.
type toolPattern struct {
	name  string            // glob on the tool name, lower-cased
	conds map[string]string // argument name → glob on its stringified value
}

// parsePattern splits a pattern into the tool-name part (segments up to the first
// key=value) and its argument conditions, and checks every glob.
func parsePattern(p string) (toolPattern, error) {
	if strings.TrimSpace(p) == "" {
		return toolPattern{}, fmt.Errorf("empty pattern")
	}
	segs := strings.Split(strings.ToLower(p), ":")
	i := 0
	for ; i < len(segs); i++ {
		if k, _, ok := strings.Cut(segs[i], "="); ok && k != "" {
			break
		}
	}
	tp := toolPattern{name: strings.Join(segs[:i], ":"), conds: map[string]string{}}
	for _, c := range segs[i:] {
		k, v, ok := strings.Cut(c, "=")
		if !ok || k == "" {
			// The reference drops such segments silently; say so instead.
			return toolPattern{}, fmt.Errorf("pattern %q: %q is not a key=value condition", p, c)
		}
		tp.conds[k] = v
	}
	if tp.name == "" {
		return toolPattern{}, fmt.Errorf("pattern %q has no tool name", p)
	}
	for _, g := range append([]string{tp.name}, values(tp.conds)...) {
		if _, err := filepath.Match(g, ""); err != nil {
			return toolPattern{}, fmt.Errorf("pattern %q: malformed glob %q", p, g)
		}
	}
	return tp, nil
}

func values(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// globMatch matches s against g: a plain prefix test for `prefix*`, else filepath.Match.
func globMatch(g, s string) bool {
	if strings.HasSuffix(g, "*") && !strings.HasSuffix(g, `\*`) && !strings.ContainsAny(g[:len(g)-1], "*?[") {
		return strings.HasPrefix(s, g[:len(g)-1])
	}
	ok, _ := filepath.Match(g, s)
	return ok
}

// matches reports whether a call of tool name with JSON args matches the pattern.
func (tp toolPattern) matches(name, args string) bool {
	if !globMatch(tp.name, strings.ToLower(name)) {
		return false
	}
	if len(tp.conds) == 0 {
		return true
	}
	var parsed map[string]any
	if json.Unmarshal([]byte(args), &parsed) != nil {
		return false
	}
	for k, g := range tp.conds {
		v, ok := parsed[k]
		if !ok || !globMatch(g, strings.ToLower(argString(v))) {
			return false
		}
	}
	return true
}

// argString stringifies an argument as the reference does: strings as-is, whole
// numbers without decimals.
func argString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		if x == float64(int64(x)) {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// matchAny reports whether any pattern matches; unparsable ones (only possible in a
// YAML file, which config validation should have rejected) never match.
func matchAny(patterns []string, name, args string) bool {
	for _, p := range patterns {
		if tp, err := parsePattern(p); err == nil && tp.matches(name, args) {
			return true
		}
	}
	return false
}
