package main

// tools_fs.go: the filesystem toolset (CONFIG.md §6.3 filesystem). Unlike the
// reference, every path is confined to the calling session's working directory:
// lexically (no "..", no absolute path elsewhere) and physically, because all access
// goes through an os.Root, which refuses symlinks that lead outside it.

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// fsToolset holds the filesystem options; the root directory comes from each call's
// toolEnv because one toolset serves every session.
type fsToolset struct {
	ignoreVCS bool
	postEdit  []postEditConfig
}

// newFSToolset returns the filesystem tools.
func newFSToolset(ts *toolsetConfig) (*builtinToolset, error) {
	f := &fsToolset{ignoreVCS: ts.IgnoreVCS == nil || *ts.IgnoreVCS, postEdit: ts.PostEdit}
	for _, pe := range ts.PostEdit {
		if _, err := path.Match(pe.Path, ""); err != nil {
			return nil, fmt.Errorf("post_edit path %q: %v", pe.Path, err)
		}
	}
	return &builtinToolset{
		list: []tool{
			{def: toolsDef("directory_tree", "filesystem", "Directory Tree", "Show the files and directories under a path as a JSON tree (at most 100 entries).", true), run: toolsRun(f.tree)},
			{def: toolsDef("edit_file", "filesystem", "Edit File", "Edit a text file by replacing exact text: each edit replaces the first occurrence of oldText with newText, in order.", false), run: toolsRun(f.edit)},
			{def: toolsDef("list_directory", "filesystem", "List Directory", "List the entries of a directory, marked DIR or FILE (at most 100).", true), run: toolsRun(f.list)},
			{def: toolsDef("read_file", "filesystem", "Read File", "Read the content of a file. Images (png, jpeg, gif, webp) are returned as images.", true), run: toolsRun(f.read)},
			{def: toolsDef("read_multiple_files", "filesystem", "Read Multiple Files", "Read several files at once, as text sections or, with json set, as a JSON array of {path, content}.", true), run: toolsRun(f.readMany)},
			{def: toolsDef("search_files_content", "filesystem", "Search Files", "Search the files under a path for a text (or a regular expression with is_regex) and list matching lines as path:line:column.", true), run: toolsRun(f.search)},
			{def: toolsDef("write_file", "filesystem", "Write File", "Create or overwrite a file with the given content, creating parent directories.", false), run: toolsRun(f.write)},
			{def: toolsDef("create_directory", "filesystem", "Create Directory", "Create directories, including missing parents.", false), run: toolsRun(f.mkdir)},
			{def: toolsDef("remove_directory", "filesystem", "Remove Directory", "Remove empty directories.", false), run: toolsRun(f.rmdir)},
		},
		instr: `You can read and change files under the working directory with the filesystem tools. Paths are relative to the working directory; paths outside it are refused.
- Read a file before editing it, and prefer edit_file over rewriting whole files.
- Use search_files_content and directory_tree to find your way around.`,
	}, nil
}

// fsArgs are the arguments of every filesystem tool.
type fsArgs struct {
	Path            string   `json:"path"`
	Paths           []string `json:"paths"`
	JSON            bool     `json:"json"`
	Query           string   `json:"query"`
	IsRegex         bool     `json:"is_regex"`
	ExcludePatterns []string `json:"excludePatterns"`
	Content         string   `json:"content"`
	Edits           []struct {
		OldText string `json:"oldText"`
		NewText string `json:"newText"`
	} `json:"edits"`
}

// fsLocal maps a tool path to a slash path relative to the working dir wd, or fails
// if it lies outside it. Only lexical checks are done here; os.Root does the rest.
func fsLocal(wd, p string) (string, error) {
	if p == "" {
		return "", errors.New("path is required")
	}
	q := filepath.Clean(p)
	if filepath.IsAbs(q) {
		rel, err := filepath.Rel(wd, q)
		if err != nil {
			return "", fmt.Errorf("path %q is outside the working directory", p)
		}
		q = rel
	}
	if !filepath.IsLocal(q) {
		return "", fmt.Errorf("path %q is outside the working directory", p)
	}
	return filepath.ToSlash(q), nil
}

// fsOpenRoot returns a handle on the session's working directory, which the run
// opened from the server's root (so a directory swapped for a symlink since cannot
// redirect it); the caller closes it.
func fsOpenRoot(env *toolEnv) (*os.Root, error) {
	if env == nil || env.Dir == nil {
		return nil, errors.New("no working directory for this session")
	}
	return env.Dir.OpenRoot(".")
}

// fsWith resolves p and calls fn with the open root, the local path and the protected
// files; failures to resolve and protected paths become tool errors, so nothing
// outside the root, and none of the server's secrets, is ever touched.
func fsWith(env *toolEnv, p string, fn func(root *os.Root, rel string, m *protectMatcher) toolResult) toolResult {
	root, err := fsOpenRoot(env)
	if err != nil {
		return toolErrorf("%v", err)
	}
	defer root.Close()
	rel, err := fsLocal(env.WorkingDir, p)
	if err != nil {
		return toolErrorf("%v", err)
	}
	m := env.Protected.matcher()
	if m.blocks(root, rel) {
		return toolErrorf(errProtected, p)
	}
	return fn(root, rel, m)
}

// fsErr words a filesystem error for the model without repeating the absolute root.
func fsErr(p string, err error) toolResult {
	if errors.Is(err, fs.ErrNotExist) {
		return toolErrorf("not found")
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return toolErrorf("%s: %v", p, pe.Err)
	}
	return toolErrorf("%s: %v", p, err)
}

// fsNode is one entry of directory_tree's JSON tree.
type fsNode struct {
	Name     string    `json:"name"`
	Type     string    `json:"type"`
	Children []*fsNode `json:"children,omitempty"`
}

// fsIgnore is the VCS filter of listings and searches: .git plus the rules of the
// working dir's top-level .gitignore (nested .gitignore files are not read). A nil
// *fsIgnore skips nothing.
type fsIgnore struct{ rules []fsIgnoreRule }

type fsIgnoreRule struct {
	re      *regexp.Regexp
	negate  bool
	dirOnly bool
}

// ignores returns the filter for root, or nil when ignore_vcs is off.
func (f *fsToolset) ignores(root *os.Root) *fsIgnore {
	if !f.ignoreVCS {
		return nil
	}
	ig := &fsIgnore{}
	data, err := root.ReadFile(".gitignore")
	if err != nil || len(data) > toolsMaxReadFile {
		return ig
	}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r ")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var r fsIgnoreRule
		if rest, ok := strings.CutPrefix(line, "!"); ok {
			r.negate, line = true, rest
		}
		line = strings.TrimPrefix(line, "\\")
		if rest, ok := strings.CutSuffix(line, "/"); ok {
			r.dirOnly, line = true, rest
		}
		// A pattern with a slash other than at the end is anchored to the root; one
		// without matches at any depth (gitignore(5)).
		anchored := strings.Contains(line, "/")
		line = strings.TrimPrefix(line, "/")
		expr := fsGlobRegexp(line)
		if !anchored {
			expr = "(?:.*/)?" + expr
		}
		re, err := regexp.Compile("^" + expr + "$")
		if err != nil {
			continue // a malformed line ignores nothing, as git does
		}
		r.re = re
		ig.rules = append(ig.rules, r)
	}
	return ig
}

// fsGlobRegexp translates a gitignore glob: ** spans directories, * and ? do not.
func fsGlobRegexp(glob string) string {
	var b strings.Builder
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; {
		case strings.HasPrefix(glob[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i++
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			if j := strings.IndexByte(glob[i:], ']'); j > 0 {
				class := glob[i+1 : i+j]
				if strings.HasPrefix(class, "!") {
					class = "^" + class[1:]
				}
				b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
				i += j
				continue
			}
			b.WriteString(`\[`)
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	return b.String()
}

// skip reports whether the slash path p (relative to the root) is filtered out.
// The last matching rule wins; a path under an ignored directory never gets here
// because walks skip the directory.
func (ig *fsIgnore) skip(p string, isDir bool) bool {
	if ig == nil {
		return false
	}
	if path.Base(p) == ".git" {
		return true
	}
	skip := false
	for _, r := range ig.rules {
		if (!r.dirOnly || isDir) && r.re.MatchString(p) {
			skip = !r.negate
		}
	}
	return skip
}

func (f *fsToolset) tree(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	return fsWith(env, a.Path, func(root *os.Root, rel string, m *protectMatcher) toolResult {
		fsys := root.FS()
		info, err := fs.Stat(fsys, rel)
		if err != nil {
			return fsErr(a.Path, err)
		}
		ig := f.ignores(root)
		count := 0
		var walk func(dir string, n *fsNode) error
		walk = func(dir string, n *fsNode) error {
			ents, err := fs.ReadDir(fsys, dir)
			if err != nil {
				return err
			}
			for _, e := range ents {
				if ig.skip(path.Join(dir, e.Name()), e.IsDir()) || m.hides(root, path.Join(dir, e.Name()), e) {
					continue
				}
				if count >= toolsMaxListEntries || ctx.Err() != nil {
					return nil
				}
				count++
				c := &fsNode{Name: e.Name(), Type: "file"}
				n.Children = append(n.Children, c)
				if e.IsDir() {
					c.Type = "directory"
					if err := walk(path.Join(dir, e.Name()), c); err != nil {
						return err
					}
				}
			}
			return nil
		}
		top := &fsNode{Name: path.Base(rel), Type: "file"}
		if rel == "." {
			top.Name = filepath.Base(env.WorkingDir)
		}
		if info.IsDir() {
			top.Type = "directory"
			if err := walk(rel, top); err != nil {
				return fsErr(a.Path, err)
			}
		}
		return toolsJSON(top)
	})
}

func (f *fsToolset) list(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	return fsWith(env, a.Path, func(root *os.Root, rel string, m *protectMatcher) toolResult {
		ents, err := fs.ReadDir(root.FS(), rel)
		if err != nil {
			return fsErr(a.Path, err)
		}
		ig := f.ignores(root)
		var b strings.Builder
		n := 0
		for _, e := range ents {
			if ig.skip(path.Join(rel, e.Name()), e.IsDir()) || m.hides(root, path.Join(rel, e.Name()), e) {
				continue
			}
			if n == toolsMaxListEntries {
				b.WriteString("...output truncated due to file limit...\n")
				break
			}
			n++
			if e.IsDir() {
				fmt.Fprintf(&b, "DIR  %s\n", e.Name())
			} else {
				fmt.Fprintf(&b, "FILE %s\n", e.Name())
			}
		}
		return toolResult{Output: strings.TrimSuffix(b.String(), "\n")}
	})
}

// fsImageTypes are the file extensions read_file returns as image content.
var fsImageTypes = map[string]string{".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}

// fsReadFile reads a regular file of at most toolsMaxReadFile bytes inside root.
func fsReadFile(root *os.Root, rel string) ([]byte, error) {
	info, err := root.Stat(rel)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		return nil, errors.New("is a directory")
	}
	if info.Size() > toolsMaxReadFile {
		return nil, fmt.Errorf("file is too large (%d bytes, limit %d)", info.Size(), toolsMaxReadFile)
	}
	return root.ReadFile(rel)
}

func (f *fsToolset) read(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	return fsWith(env, a.Path, func(root *os.Root, rel string, m *protectMatcher) toolResult {
		data, err := fsReadFile(root, rel)
		if err != nil {
			return fsErr(a.Path, err)
		}
		if mime, ok := fsImageTypes[strings.ToLower(path.Ext(rel))]; ok {
			return toolResult{
				Output: fmt.Sprintf("Read image file %s [%s] (%d bytes)", a.Path, mime, len(data)),
				Images: []mediaContent{{Data: base64.StdEncoding.EncodeToString(data), MimeType: mime}},
			}
		}
		return toolResult{Output: toolsTruncate(string(data))}
	})
}

func (f *fsToolset) readMany(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	root, err := fsOpenRoot(env)
	if err != nil {
		return toolErrorf("%v", err)
	}
	defer root.Close()
	type entry struct {
		Path    string `json:"path"`
		Content string `json:"content"`
	}
	var out []entry
	m := env.Protected.matcher()
	for _, p := range a.Paths {
		e := entry{Path: p}
		rel, err := fsLocal(env.WorkingDir, p)
		if err == nil && m.blocks(root, rel) {
			err = fmt.Errorf(errProtected, p)
		}
		if err == nil {
			var data []byte
			data, err = fsReadFile(root, rel)
			e.Content = toolsTruncate(string(data))
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			e.Content = "not found"
		case err != nil:
			e.Content = fsErr(p, err).Output
		}
		out = append(out, e)
	}
	if a.JSON {
		return toolsJSON(out)
	}
	var b strings.Builder
	for _, e := range out {
		fmt.Fprintf(&b, "=== %s ===\n%s\n\n", e.Path, e.Content)
	}
	return toolResult{Output: b.String()}
}

func (f *fsToolset) search(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	if a.Query == "" {
		return toolErrorf("query is required")
	}
	match := func(line string) int { return strings.Index(line, a.Query) }
	if a.IsRegex {
		re, err := regexp.Compile(a.Query)
		if err != nil {
			return toolErrorf("invalid regular expression: %v", err)
		}
		match = func(line string) int {
			if loc := re.FindStringIndex(line); loc != nil {
				return loc[0]
			}
			return -1
		}
	}
	excluded := func(p string) bool {
		return slices.ContainsFunc(a.ExcludePatterns, func(pat string) bool {
			m1, _ := path.Match(pat, path.Base(p))
			m2, _ := path.Match(pat, p)
			return m1 || m2
		})
	}
	return fsWith(env, a.Path, func(root *os.Root, rel string, m *protectMatcher) toolResult {
		fsys := root.FS()
		ig := f.ignores(root)
		var b strings.Builder
		hits := 0
		err := fs.WalkDir(fsys, rel, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if p != rel && (ig.skip(p, d.IsDir()) || excluded(p)) || m.hides(root, p, d) {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if !d.Type().IsRegular() {
				return nil
			}
			if info, err := d.Info(); err != nil || info.Size() > toolsMaxSearchFile {
				return nil
			}
			data, err := fs.ReadFile(fsys, p)
			if err != nil || bytes.IndexByte(data, 0) >= 0 { // unreadable or binary
				return nil
			}
			for i, line := range strings.Split(string(data), "\n") {
				col := match(line)
				if col < 0 {
					continue
				}
				fmt.Fprintf(&b, "%s:%d:%d: %s\n", p, i+1, utf8.RuneCountInString(line[:col])+1, fsPreview(line, col))
				if hits++; hits >= toolsMaxSearchHits {
					return fs.SkipAll
				}
			}
			return nil
		})
		if err != nil {
			return fsErr(a.Path, err)
		}
		if hits == 0 {
			return toolResult{Output: "No results found"}
		}
		return toolResult{Output: strings.TrimSuffix(b.String(), "\n")}
	})
}

// fsPreview shortens a long matching line to about 40 characters around the match.
func fsPreview(line string, at int) string {
	line = strings.TrimRight(line, "\r")
	if utf8.RuneCountInString(line) <= 100 {
		return strings.TrimSpace(line)
	}
	start, end := max(0, at-20), min(len(line), at+20)
	for start > 0 && !utf8.RuneStart(line[start]) {
		start--
	}
	for end < len(line) && !utf8.RuneStart(line[end]) {
		end++
	}
	return "..." + line[start:end] + "..."
}

func (f *fsToolset) write(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	return fsWith(env, a.Path, func(root *os.Root, rel string, m *protectMatcher) toolResult {
		if dir := path.Dir(rel); dir != "." {
			if err := root.MkdirAll(dir, 0o755); err != nil {
				return fsErr(a.Path, err)
			}
		}
		if err := root.WriteFile(rel, []byte(a.Content), 0o644); err != nil {
			return fsErr(a.Path, err)
		}
		out := fmt.Sprintf("File written successfully: %s (%d bytes)", a.Path, len(a.Content))
		return toolResult{Output: out + f.runPostEdit(ctx, env, rel)}
	})
}

func (f *fsToolset) edit(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	if len(a.Edits) == 0 {
		return toolErrorf("no edits given")
	}
	return fsWith(env, a.Path, func(root *os.Root, rel string, m *protectMatcher) toolResult {
		info, err := root.Stat(rel)
		if err != nil {
			return fsErr(a.Path, err)
		}
		data, err := fsReadFile(root, rel)
		if err != nil {
			return fsErr(a.Path, err)
		}
		text := string(data)
		var changes []string
		for i, e := range a.Edits {
			if e.OldText == "" || !strings.Contains(text, e.OldText) {
				return toolErrorf("Edit %d failed: old text not found", i+1)
			}
			text = strings.Replace(text, e.OldText, e.NewText, 1)
			changes = append(changes, fmt.Sprintf("Edit %d: Replaced %d characters", i+1, utf8.RuneCountInString(e.OldText)))
		}
		if err := root.WriteFile(rel, []byte(text), info.Mode().Perm()); err != nil {
			return fsErr(a.Path, err)
		}
		out := "File edited successfully. Changes:\n" + strings.Join(changes, "\n")
		if len(changes) == 1 {
			out = "File edited successfully. " + strings.TrimPrefix(changes[0], "Edit 1: ")
		}
		return toolResult{Output: out + f.runPostEdit(ctx, env, rel)}
	})
}

// runPostEdit runs the post_edit commands whose glob matches the file's base name,
// with $path set to the file, in the working dir. A failure is reported in the
// output, not as an error: the write itself succeeded.
func (f *fsToolset) runPostEdit(ctx context.Context, env *toolEnv, rel string) string {
	var notes strings.Builder
	for _, pe := range f.postEdit {
		if ok, _ := path.Match(pe.Path, path.Base(rel)); !ok {
			continue
		}
		dir, err := shellDir(env, "")
		if err != nil {
			fmt.Fprintf(&notes, "\npost_edit command %q not run: %v", pe.Cmd, err)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, toolsShellTimeout*time.Second)
		cmd := exec.CommandContext(cctx, "/bin/sh", "-c", pe.Cmd)
		cmd.Dir = dir
		cmd.Env = childEnv("path=" + filepath.Join(env.WorkingDir, filepath.FromSlash(rel)))
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			fmt.Fprintf(&notes, "\npost_edit command %q failed: %v\n%s", pe.Cmd, err, toolsTruncate(strings.TrimSpace(string(out))))
		}
	}
	return notes.String()
}

func (f *fsToolset) mkdir(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	return f.eachDir(env, a.Paths, func(root *os.Root, p, rel string) (string, error) {
		if err := root.MkdirAll(rel, 0o755); err != nil {
			return "", err
		}
		return "Directory created successfully: " + p, nil
	})
}

func (f *fsToolset) rmdir(ctx context.Context, env *toolEnv, a fsArgs) toolResult {
	return f.eachDir(env, a.Paths, func(root *os.Root, p, rel string) (string, error) {
		if rel == "." {
			return "", errors.New("refusing to remove the working directory")
		}
		info, err := root.Lstat(rel)
		if err != nil {
			return "", err
		}
		if !info.IsDir() {
			return "", errors.New("not a directory")
		}
		// Remove fails on a non-empty directory, which is the contract of this tool.
		if err := root.Remove(rel); err != nil {
			return "", err
		}
		return "Directory removed successfully: " + p, nil
	})
}

// eachDir applies fn to every path in turn and stops at the first failure, which
// becomes the tool error (the lines already done are kept in it).
func (f *fsToolset) eachDir(env *toolEnv, paths []string, fn func(root *os.Root, p, rel string) (string, error)) toolResult {
	if len(paths) == 0 {
		return toolErrorf("paths is required")
	}
	root, err := fsOpenRoot(env)
	if err != nil {
		return toolErrorf("%v", err)
	}
	defer root.Close()
	var lines []string
	m := env.Protected.matcher()
	for _, p := range paths {
		rel, err := fsLocal(env.WorkingDir, p)
		if err == nil && m.blocks(root, rel) {
			err = fmt.Errorf(errProtected, p)
		}
		var line string
		if err == nil {
			line, err = fn(root, p, rel)
		}
		if err != nil {
			r := fsErr(p, err)
			r.Output = strings.Join(append(lines, r.Output), "\n")
			return r
		}
		lines = append(lines, line)
	}
	return toolResult{Output: strings.Join(lines, "\n")}
}
