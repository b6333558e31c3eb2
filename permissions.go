package main

// permissions.go: tool-approval patterns (API.md §7.3): `tool[:arg=glob…]`, case
// insensitive; a trailing `*` with no other wildcard is a prefix match, otherwise
// filepath.Match globbing. Unlike the reference, a malformed pattern is rejected when
// it is set, so a bad deny can never fail open.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
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
	for _, g := range append([]string{tp.name}, slices.Collect(maps.Values(tp.conds))...) {
		if _, err := filepath.Match(g, ""); err != nil {
			return toolPattern{}, fmt.Errorf("pattern %q: malformed glob %q", p, g)
		}
	}
	return tp, nil
}

// globMatch matches s against g: a plain prefix test for `prefix*`, else filepath.Match.
func globMatch(g, s string) bool {
	if strings.HasSuffix(g, "*") && !strings.HasSuffix(g, `\*`) && !strings.ContainsAny(g[:len(g)-1], "*?[") {
		return strings.HasPrefix(s, g[:len(g)-1])
	}
	ok, _ := filepath.Match(g, s)
	return ok
}

// matches reports whether a call of tool name with arguments a matches the pattern.
// For a deny or ask rule (restrictive) a condition whose key the tool may take but the
// call leaves out matches, so leaving an argument out never slips past a deny, and a
// list of paths matches when any one of them does.
func (tp toolPattern) matches(name string, a callArgs, restrictive bool) bool {
	if !globMatch(tp.name, strings.ToLower(name)) {
		return false
	}
	for k, g := range tp.conds {
		v, ok := a.vals[k]
		if !ok {
			if restrictive && a.mayTake(k) {
				continue
			}
			return false
		}
		if !v.match(g, restrictive) {
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
func matchAny(patterns []string, name string, a callArgs, restrictive bool) bool {
	for _, p := range patterns {
		if tp, err := parsePattern(p); err == nil && tp.matches(name, a, restrictive) {
			return true
		}
	}
	return false
}

// exactPattern returns the pattern that matches the tool called name and no other
// (glob characters escaped), for approve-tool; false if there is none.
func exactPattern(name string) (string, bool) {
	var b strings.Builder
	for _, r := range name {
		if strings.ContainsRune(`\*?[`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	p := b.String()
	tp, err := parsePattern(p)
	if err != nil || len(tp.conds) > 0 || !globMatch(tp.name, strings.ToLower(name)) {
		return "", false
	}
	return p, true
}

// callArgs are a call's arguments as the tool will use them, keyed by lower-cased name
// (checkArgs has made sure no two keys differ only in case).
type callArgs struct {
	vals     map[string]argValue
	declared map[string]bool // lower-cased parameter names of the tool's schema
	open     bool            // the tool may take undeclared arguments (MCP passes them on)
}

// argValue is one argument's spellings for matching. Every form names the same thing
// (a path relative to the working dir, absolute, with symlinks resolved).
type argValue struct {
	forms []string // the whole value
	parts []string // each path of a list of paths: restrictive rules match on any one
}

// mayTake reports whether the tool could receive argument key (lower-cased).
func (a callArgs) mayTake(key string) bool { return a.open || a.declared[key] }

func (v argValue) match(g string, restrictive bool) bool {
	ok := func(s string) bool { return globMatch(g, strings.ToLower(s)) }
	if slices.ContainsFunc(v.forms, ok) {
		return true
	}
	return restrictive && slices.ContainsFunc(v.parts, ok)
}

// newCallArgs reads args (already passed by checkArgs) for matching; wd is the
// session's working dir, against which filesystem tools resolve their paths.
func newCallArgs(def toolDef, args, wd string) callArgs {
	a := callArgs{vals: map[string]argValue{}, declared: map[string]bool{}, open: def.Category == "mcp"}
	for k := range schemaProps(def.Parameters) {
		a.declared[strings.ToLower(k)] = true
	}
	var parsed map[string]any
	json.Unmarshal([]byte(args), &parsed)
	for k, v := range parsed {
		a.vals[strings.ToLower(k)] = argValueOf(def, k, v, wd)
	}
	return a
}

// argValueOf stringifies v; the path arguments of filesystem tools are resolved the
// way the tools resolve them, so `./secret.txt` is `secret.txt`.
func argValueOf(def toolDef, key string, v any, wd string) argValue {
	if def.Category != "filesystem" {
		return argValue{forms: []string{argString(v)}}
	}
	switch x := v.(type) {
	case string:
		if key == "path" {
			return argValue{forms: pathForms(wd, x)}
		}
	case []any:
		if key == "paths" {
			var rel, abs []string
			var parts []string
			for _, e := range x {
				s, _ := e.(string)
				f := pathForms(wd, s)
				rel, abs, parts = append(rel, f[0]), append(abs, f[len(f)-1]), append(parts, f...)
			}
			return argValue{forms: []string{argString(rel), argString(abs)}, parts: parts}
		}
	}
	return argValue{forms: []string{argString(v)}}
}

// pathForms returns p relative to wd as the filesystem tools see it, any symlink-
// resolved spelling, and last the absolute path. A path the tools would refuse is
// only cleaned.
func pathForms(wd, p string) []string {
	rel, err := fsLocal(wd, p)
	if err != nil {
		return []string{filepath.Clean(p)}
	}
	forms := []string{rel}
	if real, err := filepath.EvalSymlinks(filepath.Join(wd, rel)); err == nil {
		if realWD, err := filepath.EvalSymlinks(wd); err == nil {
			if r, err := fsLocal(realWD, real); err == nil && r != rel {
				forms = append(forms, r, filepath.Join(wd, r))
			}
		}
	}
	return append(forms, filepath.Join(wd, rel))
}

// schemaProps returns the property names a JSON schema declares.
func schemaProps(schema json.RawMessage) map[string]json.RawMessage {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	json.Unmarshal(schema, &s)
	return s.Properties
}

// checkArgs decodes a call's arguments strictly before any rule sees them, because
// tools decode with encoding/json, which takes `Cmd` for `cmd`: the arguments must be
// a JSON object with no key given twice (in any case) and none differing only in case
// from a declared parameter; built-in tools take no undeclared key. MCP tools get
// other keys passed on as given.
func checkArgs(def toolDef, args string) error {
	keys, err := objectKeys(args)
	if err != nil {
		return err
	}
	props := schemaProps(def.Parameters)
	seen := map[string]string{}
	for _, k := range keys {
		if prev, dup := seen[strings.ToLower(k)]; dup {
			return fmt.Errorf("argument %q is given twice (also as %q)", k, prev)
		}
		seen[strings.ToLower(k)] = k
		if _, ok := props[k]; ok {
			continue
		}
		for p := range props {
			if strings.EqualFold(p, k) {
				return fmt.Errorf("unknown argument %q: argument names are case-sensitive, did you mean %q?", k, p)
			}
		}
		if def.Category != "mcp" {
			return fmt.Errorf("unknown argument %q", k)
		}
	}
	return nil
}

// objectKeys returns the top-level keys of a JSON object in order; empty arguments
// and null mean {}.
func objectKeys(args string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(args))
	tok, err := dec.Token()
	if err == io.EOF || (err == nil && tok == nil) {
		return nil, nil
	}
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("arguments must be a JSON object")
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("arguments are not valid JSON: %v", err)
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("arguments are not valid JSON: %v", err)
		}
		keys = append(keys, k.(string))
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("arguments are not valid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("arguments must be one JSON object")
	}
	return keys, nil
}
