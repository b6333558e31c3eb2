package main

// config_redact.go renders a configuration as JSON with literal secrets removed.

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// redactedJSON is the config's JSON with literal secrets replaced by "REDACTED": header
// values named like credentials, env values whose key looks secret, and passwords in
// URLs. `${env.X}` / `$X` references are kept: they are names, not secrets, as are
// token_key values. The reference returns everything verbatim; we do not.
func (f *agentFile) redactedJSON() ([]byte, error) {
	raw, err := json.Marshal(f)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	v, err := cfgReadJSON(dec)
	if err != nil {
		return nil, err
	}
	v = cfgRedact(v, "")
	var b bytes.Buffer
	if err := cfgWriteJSON(&b, v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// cfgJSONObject is a JSON object that keeps its key order.
type cfgJSONObject struct {
	keys []string
	vals []any
}

func cfgReadJSON(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			o := &cfgJSONObject{}
			for dec.More() {
				k, err := dec.Token()
				if err != nil {
					return nil, err
				}
				v, err := cfgReadJSON(dec)
				if err != nil {
					return nil, err
				}
				o.keys = append(o.keys, k.(string))
				o.vals = append(o.vals, v)
			}
			_, err := dec.Token()
			return o, err
		case '[':
			a := []any{}
			for dec.More() {
				v, err := cfgReadJSON(dec)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			_, err := dec.Token()
			return a, err
		}
	}
	return tok, nil
}

func cfgWriteJSON(b *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case *cfgJSONObject:
		b.WriteByte('{')
		for i, k := range t.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			if err := cfgWriteJSON(b, t.vals[i]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, x := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := cfgWriteJSON(b, x); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		vb, err := json.Marshal(t)
		if err != nil {
			return err
		}
		b.Write(vb)
	}
	return nil
}

// cfgRedact walks the JSON; parent is the key of the object holding v. Values of
// `headers` and `env` maps and `args` lists are shown only when they are exactly one
// environment reference: anything else may be, or contain, a credential, whatever its
// name. Elsewhere secret-named options, URL credentials and token-shaped text go.
func cfgRedact(v any, parent string) any {
	switch t := v.(type) {
	case *cfgJSONObject:
		for i, k := range t.keys {
			if s, ok := t.vals[i].(string); ok {
				switch {
				case k == "token_key":
					// the name of a variable, not its value
				case parent == "oauth" && k == "clientSecret":
					t.vals[i] = cfgRedactUnlessRef(s, "headers")
				case parent == "headers" || parent == "env":
					t.vals[i] = cfgRedactUnlessRef(s, parent)
				case (parent == "provider_opts" || parent == "config") && cfgSecretName(k) && !cfgWholeEnvRef(s, parent):
					t.vals[i] = "REDACTED"
				default:
					t.vals[i] = cfgRedactString(s)
				}
				continue
			}
			child := k
			if parent == "config" || parent == "provider_opts" {
				child = parent // free-form trees: every level is checked alike
			}
			t.vals[i] = cfgRedact(t.vals[i], child)
		}
		return t
	case []any:
		for i := range t {
			switch s, ok := t[i].(string); {
			case ok && parent == "args":
				t[i] = cfgRedactUnlessRef(s, parent)
			case ok:
				t[i] = cfgRedactString(s)
			default:
				t[i] = cfgRedact(t[i], parent)
			}
		}
		return t
	}
	return v
}

func cfgRedactUnlessRef(s, parent string) string {
	if s == "" || cfgWholeEnvRef(s, parent) {
		return s
	}
	return "REDACTED"
}

// cfgSecretName reports whether a header, env or option name looks like it holds a
// credential.
func cfgSecretName(name string) bool {
	n := strings.ToUpper(name)
	for _, w := range []string{"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "AUTH", "COOKIE", "CREDENTIAL", "PRIVATE", "SESSION", "SIGNATURE"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// cfgWholeEnvRef reports whether s is exactly one environment reference, so that it
// names a secret instead of containing one: `${env.X}` (expanded in headers and URLs),
// and for `env` values, which are expanded shell-style, also `${X}` and `$X`.
func cfgWholeEnvRef(s, parent string) bool {
	if name, ok := strings.CutPrefix(s, "${env."); ok && strings.HasSuffix(name, "}") {
		return cfgEnvName(name[:len(name)-1])
	}
	if parent != "env" {
		return false
	}
	if name, ok := strings.CutPrefix(s, "${"); ok && strings.HasSuffix(name, "}") {
		return cfgEnvName(name[:len(name)-1])
	}
	name, ok := strings.CutPrefix(s, "$")
	return ok && cfgEnvName(name)
}

// cfgEnvName: a letter or underscore, then letters, digits and underscores.
func cfgEnvName(s string) bool {
	for i, c := range s {
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// cfgTokenText matches the shapes of well-known credentials (GitHub, GitLab, OpenAI
// and Anthropic, Slack, AWS, Google, Hugging Face) wherever they appear.
var cfgTokenText = regexp.MustCompile(`\b(?:gh[pousr]_|github_pat_|glpat-|sk-|xox[abposr]-|AKIA|AIza|hf_)[A-Za-z0-9_\-]{12,}`)

// cfgRedactString replaces token-shaped text, and redacts URL credentials.
func cfgRedactString(s string) string {
	return cfgRedactURL(cfgTokenText.ReplaceAllString(s, "REDACTED"))
}

// cfgSecretSegment reports whether a URL path segment looks like a credential (a
// webhook secret, a key in the path): long, with upper and lower case and digits.
// Model names, versions and UUIDs are lower case and stay readable.
func cfgSecretSegment(seg string) bool {
	var upper, lower, digit bool
	for _, c := range seg {
		switch {
		case c >= 'A' && c <= 'Z':
			upper = true
		case c >= 'a' && c <= 'z':
			lower = true
		case c >= '0' && c <= '9':
			digit = true
		case c != '-' && c != '_' && c != '.' && c != '~':
			return false
		}
	}
	return len(seg) >= 20 && upper && lower && digit
}

// cfgRedactURL hides a URL's userinfo password (or a lone user name, often a token),
// secret-looking path segments and query values, and the values of secret-named
// query parameters; other strings are returned unchanged.
func cfgRedactURL(s string) string {
	if !strings.Contains(s, "://") || strings.ContainsAny(s, " \n\t") {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return s
	}
	changed := false
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		} else {
			u.User = url.User("REDACTED")
		}
		changed = true
	}
	if segs := strings.Split(u.Path, "/"); slices.ContainsFunc(segs, cfgSecretSegment) {
		for i, seg := range segs {
			if cfgSecretSegment(seg) {
				segs[i] = "REDACTED"
			}
		}
		u.Path, u.RawPath = strings.Join(segs, "/"), ""
		changed = true
	}
	if u.RawQuery != "" {
		q := u.Query()
		qChanged := false
		for k, vs := range q {
			for i, v := range vs {
				if v != "" && !cfgWholeEnvRef(v, "") && (cfgSecretName(k) || cfgSecretSegment(v) || cfgTokenText.MatchString(v)) {
					vs[i] = "REDACTED"
					qChanged = true
				}
			}
		}
		if qChanged {
			u.RawQuery = q.Encode()
			changed = true
		}
	}
	if !changed {
		return s
	}
	return u.String()
}
