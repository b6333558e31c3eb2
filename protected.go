package main

// protected.go: the built-in, always-on denies. The server keeps secrets in files
// that often lie inside --working-dir, and so inside every session's sandbox: the
// session database with its -wal/-shm/-journal (every session's conversation), the
// --env-from-file files (keys, passwords), the auth token file and the served agent
// configs (which a model could rewrite into one that runs anything). File tools refuse
// to read, write, list or search them whatever YOLO or allow rules say. Files are
// compared by identity (device and inode), not by spelling, so "./x", symlinks, hard
// links and case-insensitive file systems all lead to the same refusal. The shell is
// not confined: it refuses commands that name such a file, which stops the obvious
// `cat app.env` and nothing cleverer.

import (
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// protectedFiles names the server's secret files. It is read-only once built, so safe
// for concurrent use; a nil *protectedFiles protects nothing.
type protectedFiles struct {
	files    []string // absolute paths; they need not exist (a -wal comes and goes)
	yamlDirs []string // directories served as a source: every *.yaml/*.yml in them
}

// newProtectedFiles protects files and the agent configs of yamlDirs (absolute paths).
func newProtectedFiles(files, yamlDirs []string) *protectedFiles {
	return &protectedFiles{files: files, yamlDirs: yamlDirs}
}

// errProtected is what a file tool answers for a protected path.
const errProtected = "path %q is protected: agentd keeps its session database, env files, auth token and agent configs out of reach of file tools"

// isAgentConfigName reports whether name is a file a directory source would serve.
func isAgentConfigName(name string) bool {
	ext := strings.ToLower(path.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// protectedName is one protected path split into its directory's identity and its
// base name, for files that do not exist yet.
type protectedName struct {
	dir  os.FileInfo
	base string
}

// protectMatcher is a snapshot of the protected files' identities, taken once per tool
// call because the -wal and -shm files are recreated as SQLite works.
type protectMatcher struct {
	files    []os.FileInfo // protected files that exist now
	names    []protectedName
	yamlDirs []os.FileInfo
}

// matcher takes the snapshot. Paths that cannot be stat'ed are skipped: what does not
// exist cannot be read, and creating it is caught by name.
func (p *protectedFiles) matcher() *protectMatcher {
	m := &protectMatcher{}
	if p == nil {
		return m
	}
	for _, f := range p.files {
		if fi, err := os.Stat(f); err == nil {
			m.files = append(m.files, fi)
		}
		if di, err := os.Stat(filepath.Dir(f)); err == nil {
			m.names = append(m.names, protectedName{di, filepath.Base(f)})
		}
	}
	for _, d := range p.yamlDirs {
		di, err := os.Stat(d)
		if err != nil {
			continue
		}
		m.yamlDirs = append(m.yamlDirs, di)
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if isAgentConfigName(e.Name()) {
				if fi, err := os.Stat(filepath.Join(d, e.Name())); err == nil {
					m.files = append(m.files, fi)
				}
			}
		}
	}
	return m
}

// isFile reports whether fi (from Stat or a walk's Lstat) is a protected file.
func (m *protectMatcher) isFile(fi os.FileInfo) bool {
	return fi.Mode().IsRegular() && slices.ContainsFunc(m.files, func(g os.FileInfo) bool { return os.SameFile(fi, g) })
}

// blocks reports whether a file tool must refuse the root-relative slash path rel:
// it, or one of its parents, is a protected file or would create one. A dangling
// symlink is refused too, because writing through it could create a protected file.
func (m *protectMatcher) blocks(root *os.Root, rel string) bool {
	if m.empty() {
		return false
	}
	parts := strings.Split(rel, "/")
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		fi, err := root.Stat(p)
		if err == nil {
			if fi.Mode().IsRegular() && (m.isFile(fi) || m.named(root, p)) {
				return true
			}
			continue
		}
		if li, lerr := root.Lstat(p); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
			return true
		}
		return m.named(root, p) // nothing below a missing path exists either
	}
	return false
}

// hides reports whether a listing or search must leave out the entry d found at the
// root-relative path rel.
func (m *protectMatcher) hides(root *os.Root, rel string, d fs.DirEntry) bool {
	if m.empty() || !d.Type().IsRegular() {
		return false
	}
	if fi, err := d.Info(); err == nil && m.isFile(fi) {
		return true
	}
	return m.named(root, rel)
}

func (m *protectMatcher) empty() bool {
	return len(m.files) == 0 && len(m.names) == 0 && len(m.yamlDirs) == 0
}

// named reports whether p has a protected file's name in that file's directory, so
// it is one, or creating it would make one (a -wal that SQLite has not made yet, a new
// agent config in a served directory).
func (m *protectMatcher) named(root *os.Root, p string) bool {
	base := path.Base(p)
	var dirs []os.FileInfo
	for _, n := range m.names {
		if strings.EqualFold(n.base, base) {
			dirs = append(dirs, n.dir)
		}
	}
	if isAgentConfigName(base) {
		dirs = append(dirs, m.yamlDirs...)
	}
	if len(dirs) == 0 {
		return false
	}
	di, err := root.Stat(path.Dir(p))
	return err == nil && slices.ContainsFunc(dirs, func(d os.FileInfo) bool { return os.SameFile(d, di) })
}

// namedIn returns the base name of a protected file that the shell command cmd names
// literally (case-insensitively), or "". It is a tripwire, not a sandbox: a shell can
// reach any file by a glob or a variable.
func (p *protectedFiles) namedIn(cmd string) string {
	if p == nil {
		return ""
	}
	lower := strings.ToLower(cmd)
	names := make([]string, 0, len(p.files))
	for _, f := range p.files {
		names = append(names, filepath.Base(f))
	}
	for _, d := range p.yamlDirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if isAgentConfigName(e.Name()) {
				names = append(names, e.Name())
			}
		}
	}
	for _, n := range names {
		if containsWord(lower, strings.ToLower(n)) {
			return n
		}
	}
	return ""
}

// containsWord reports whether s contains word not glued to other file-name
// characters, so "a.yaml" is not found in "data.yaml".
func containsWord(s, word string) bool {
	nameChar := func(c byte) bool {
		return c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
	}
	for i := 0; ; {
		j := strings.Index(s[i:], word)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(word)
		if (start == 0 || !nameChar(s[start-1])) && (end == len(s) || !nameChar(s[end])) {
			return true
		}
		i = start + 1
	}
}
