package main

// toon.go: TOON (Token-Oriented Object Notation) for the toolset `toon` key. The output
// is what the reference's encoder (github.com/alpkeskin/gotoon, default options) gives
// for a decoded JSON object, so a model sees the same text through either server:
// keys sorted, two-space indentation, arrays with their length (`tags[2]: a,b`),
// uniform arrays of flat objects as tables (`users[2]{id,name}:` then one row each),
// other arrays as `- ` list items; strings quoted only when they would be ambiguous.

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// toonWriter collects indented lines.
type toonWriter struct{ lines []string }

func (w *toonWriter) push(depth int, s string) {
	w.lines = append(w.lines, strings.Repeat("  ", depth)+s)
}

// toonEncode encodes a JSON object decoded into map[string]any.
func toonEncode(obj map[string]any) string {
	w := &toonWriter{}
	toonObject(w, obj, 0)
	return strings.Join(w.lines, "\n")
}

func toonObject(w *toonWriter, obj map[string]any, depth int) {
	for _, k := range toonKeys(obj) {
		toonPair(w, k, obj[k], depth)
	}
}

func toonKeys(obj map[string]any) []string {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func toonPair(w *toonWriter, key string, v any, depth int) {
	switch v := v.(type) {
	case []any:
		toonArray(w, key, v, depth)
	case map[string]any:
		w.push(depth, toonKey(key)+":")
		toonObject(w, v, depth+1)
	default:
		w.push(depth, toonKey(key)+": "+toonPrimitive(v))
	}
}

func toonArray(w *toonWriter, key string, arr []any, depth int) {
	switch {
	case len(arr) == 0:
		w.push(depth, toonHeader(key, 0, nil))
	case toonAllPrimitive(arr):
		w.push(depth, toonInline(key, arr))
	case toonAll(arr, func(v any) bool { _, ok := v.([]any); return ok }) &&
		toonAll(arr, func(v any) bool { return toonAllPrimitive(v.([]any)) }):
		w.push(depth, toonHeader(key, len(arr), nil))
		for _, item := range arr {
			w.push(depth+1, "- "+toonInline("", item.([]any)))
		}
	default:
		if objs, fields := toonTable(arr); fields != nil {
			w.push(depth, toonHeader(key, len(arr), fields))
			toonRows(w, objs, fields, depth+1)
			return
		}
		w.push(depth, toonHeader(key, len(arr), nil))
		toonListItems(w, arr, depth+1)
	}
}

// toonListItems writes the items of a mixed array; arrays of non-primitives inside
// it are left out, as the reference's encoder does.
func toonListItems(w *toonWriter, arr []any, depth int) {
	for _, item := range arr {
		switch item := item.(type) {
		case []any:
			if toonAllPrimitive(item) {
				w.push(depth, "- "+toonInline("", item))
			}
		case map[string]any:
			toonListObject(w, item, depth)
		default:
			w.push(depth, "- "+toonPrimitive(item))
		}
	}
}

// toonListObject writes an object as a list item: its first key on the "- " line,
// the others indented under it.
func toonListObject(w *toonWriter, obj map[string]any, depth int) {
	keys := toonKeys(obj)
	if len(keys) == 0 {
		w.push(depth, "-")
		return
	}
	first, v := keys[0], obj[keys[0]]
	switch v := v.(type) {
	case []any:
		switch objs, fields := toonTable(v); {
		case toonAllPrimitive(v):
			w.push(depth, "- "+toonInline(first, v))
		case fields != nil:
			w.push(depth, "- "+toonHeader(first, len(v), fields))
			toonRows(w, objs, fields, depth+1)
		default:
			w.push(depth, "- "+toonKey(first)+"["+strconv.Itoa(len(v))+"]:")
			toonListItems(w, v, depth+1)
		}
	case map[string]any:
		w.push(depth, "- "+toonKey(first)+":")
		toonObject(w, v, depth+2) // two levels, as the reference
	default:
		w.push(depth, "- "+toonKey(first)+": "+toonPrimitive(v))
	}
	for _, k := range keys[1:] {
		toonPair(w, k, obj[k], depth+1)
	}
}

// toonTable returns arr as objects and their common sorted keys when every element is
// an object with the same keys and only primitive values; fields is nil otherwise.
func toonTable(arr []any) (objs []map[string]any, fields []string) {
	for _, v := range arr {
		o, ok := v.(map[string]any)
		if !ok {
			return nil, nil
		}
		objs = append(objs, o)
	}
	if len(objs) == 0 || len(objs[0]) == 0 {
		return nil, nil
	}
	fields = toonKeys(objs[0])
	for _, o := range objs {
		if len(o) != len(fields) {
			return nil, nil
		}
		for _, f := range fields {
			v, ok := o[f]
			if !ok || !toonIsPrimitive(v) {
				return nil, nil
			}
		}
	}
	return objs, fields
}

func toonRows(w *toonWriter, objs []map[string]any, fields []string, depth int) {
	for _, o := range objs {
		vals := make([]string, len(fields))
		for i, f := range fields {
			vals[i] = toonPrimitive(o[f])
		}
		w.push(depth, strings.Join(vals, ","))
	}
}

func toonHeader(key string, n int, fields []string) string {
	s := ""
	if key != "" {
		s = toonKey(key)
	}
	s += "[" + strconv.Itoa(n) + "]"
	if len(fields) > 0 {
		keys := make([]string, len(fields))
		for i, f := range fields {
			keys[i] = toonKey(f)
		}
		s += "{" + strings.Join(keys, ",") + "}"
	}
	return s + ":"
}

func toonInline(key string, arr []any) string {
	h := toonHeader(key, len(arr), nil)
	if len(arr) == 0 {
		return h
	}
	vals := make([]string, len(arr))
	for i, v := range arr {
		vals[i] = toonPrimitive(v)
	}
	return h + " " + strings.Join(vals, ",")
}

func toonIsPrimitive(v any) bool {
	switch v.(type) {
	case nil, bool, float64, string:
		return true
	}
	return false
}

func toonAllPrimitive(arr []any) bool { return toonAll(arr, toonIsPrimitive) }

func toonAll(arr []any, f func(any) bool) bool {
	for _, v := range arr {
		if !f(v) {
			return false
		}
	}
	return true
}

func toonPrimitive(v any) string {
	switch v := v.(type) {
	case bool:
		return strconv.FormatBool(v)
	case float64:
		if v == float64(int64(v)) {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	case string:
		if toonSafe(v) {
			return v
		}
		return `"` + toonEscape(v) + `"`
	}
	return "null"
}

var (
	toonNumeric  = regexp.MustCompile(`^-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?$|^0\d+$`)
	toonPlainKey = regexp.MustCompile(`^[A-Za-z_][\w.]*$`)
)

// toonSafe reports whether s can be written unquoted without reading as something
// else (a number, a literal, structure or a list item).
func toonSafe(s string) bool {
	return s != "" && strings.TrimSpace(s) == s && s != "true" && s != "false" && s != "null" &&
		!toonNumeric.MatchString(s) && !strings.ContainsAny(s, ":\"\\[]{}\n\r\t,") && !strings.HasPrefix(s, "-")
}

func toonEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(s)
}

func toonKey(k string) string {
	if toonPlainKey.MatchString(k) {
		return k
	}
	return `"` + toonEscape(k) + `"`
}
