package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fsTestTree writes files (name → content; a name ending in / is a directory) under dir.
func fsTestTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFSReadTools(t *testing.T) {
	s := toolsBuild(t, &toolsetConfig{Type: "filesystem"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	png := "\x89PNG\r\n\x1a\nfake"
	fsTestTree(t, env.WorkingDir, map[string]string{
		"a.txt":          "hello\nworld\n",
		"src/main.go":    "package main\n\nfunc main() { println(\"hello\") }\n",
		"src/empty/":     "",
		"img.png":        png,
		".git/HEAD":      "ref: refs/heads/main\n",
		"long.txt":       strings.Repeat("x", 200) + "needle" + strings.Repeat("y", 200) + "\n",
		"bin.dat":        "needle\x00",
		"vendor/dep.txt": "needle\n",
	})

	toolsWant(t, "read_file", toolsCall(t, s, env, "read_file", map[string]string{"path": "a.txt"}), "hello\nworld\n", false)
	toolsWant(t, "read_file(abs inside)", toolsCall(t, s, env, "read_file", map[string]string{"path": filepath.Join(env.WorkingDir, "a.txt")}), "hello\nworld\n", false)
	toolsWant(t, "read_file(missing)", toolsCall(t, s, env, "read_file", map[string]string{"path": "nope.txt"}), "not found", true)
	toolsWantContains(t, "read_file(dir)", toolsCall(t, s, env, "read_file", map[string]string{"path": "src"}), "is a directory", true)
	img := toolsCall(t, s, env, "read_file", map[string]string{"path": "img.png"})
	if img.Output != "Read image file img.png [image/png] (12 bytes)" || len(img.Images) != 1 || img.Images[0].MimeType != "image/png" || img.Images[0].Data != base64.StdEncoding.EncodeToString([]byte(png)) {
		t.Errorf("read_file(img.png) = %+v", img)
	}

	toolsWant(t, "read_multiple_files", toolsCall(t, s, env, "read_multiple_files", map[string]any{"paths": []string{"a.txt", "nope"}}),
		"=== a.txt ===\nhello\nworld\n\n\n=== nope ===\nnot found\n\n", false)
	toolsWant(t, "read_multiple_files(json)", toolsCall(t, s, env, "read_multiple_files", map[string]any{"paths": []string{"a.txt", "../x"}, "json": true}),
		`[{"path":"a.txt","content":"hello\nworld\n"},{"path":"../x","content":"../x: path \"../x\" is outside the working directory"}]`, false)

	toolsWant(t, "list_directory", toolsCall(t, s, env, "list_directory", map[string]string{"path": "."}),
		"FILE a.txt\nFILE bin.dat\nFILE img.png\nFILE long.txt\nDIR  src\nDIR  vendor", false)
	toolsWant(t, "list_directory(missing)", toolsCall(t, s, env, "list_directory", map[string]string{"path": "nope"}), "not found", true)

	r := toolsCall(t, s, env, "directory_tree", map[string]string{"path": "src"})
	toolsWant(t, "directory_tree", r, `{"name":"src","type":"directory","children":[{"name":"empty","type":"directory"},{"name":"main.go","type":"file"}]}`, false)
	var tree fsNode
	if r := toolsCall(t, s, env, "directory_tree", map[string]string{"path": "."}); json.Unmarshal([]byte(r.Output), &tree) != nil || len(tree.Children) != 6 {
		t.Errorf("directory_tree(.) = %s; want 6 children and no .git", r.Output)
	}

	toolsWant(t, "search_files_content", toolsCall(t, s, env, "search_files_content", map[string]any{"path": ".", "query": "hello"}),
		"a.txt:1:1: hello\nsrc/main.go:3:24: func main() { println(\"hello\") }", false)
	toolsWant(t, "search_files_content(long line, exclude)", toolsCall(t, s, env, "search_files_content", map[string]any{"path": ".", "query": "needle", "excludePatterns": []string{"vendor"}}),
		"long.txt:1:201: ..."+strings.Repeat("x", 20)+"needle"+strings.Repeat("y", 14)+"...", false)
	toolsWant(t, "search_files_content(regex)", toolsCall(t, s, env, "search_files_content", map[string]any{"path": "src", "query": `println\(".*"\)`, "is_regex": true}),
		"src/main.go:3:15: func main() { println(\"hello\") }", false)
	toolsWant(t, "search_files_content(none)", toolsCall(t, s, env, "search_files_content", map[string]any{"path": ".", "query": "absent"}), "No results found", false)
	toolsWantContains(t, "search_files_content(bad regex)", toolsCall(t, s, env, "search_files_content", map[string]any{"path": ".", "query": "(", "is_regex": true}), "invalid regular expression", true)
	toolsWantContains(t, "search_files_content(.git)", toolsCall(t, s, env, "search_files_content", map[string]any{"path": ".", "query": "refs/heads"}), "No results found", false)
}

// TestFSListLimit checks the 100-entry cap of list_directory and directory_tree.
func TestFSListLimit(t *testing.T) {
	s := toolsBuild(t, &toolsetConfig{Type: "filesystem"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	files := map[string]string{}
	for i := range 150 {
		files[filepath.Join("many", strings.Repeat("f", 1+i%3)+string(rune('a'+i%26))+string(rune('a'+i/26)))] = ""
	}
	fsTestTree(t, env.WorkingDir, files)
	r := toolsCall(t, s, env, "list_directory", map[string]string{"path": "many"})
	lines := strings.Split(r.Output, "\n")
	if len(lines) != 101 || lines[100] != "...output truncated due to file limit..." {
		t.Errorf("list_directory(150 files) has %d lines, last %q", len(lines), lines[len(lines)-1])
	}
	var tree fsNode
	if r := toolsCall(t, s, env, "directory_tree", map[string]string{"path": "."}); json.Unmarshal([]byte(r.Output), &tree) != nil || len(tree.Children) != 1 || len(tree.Children[0].Children) != 99 {
		t.Errorf("directory_tree(150 files) = %d entries; want 1 + 99", len(tree.Children[0].Children))
	}
}

func TestFSWriteTools(t *testing.T) {
	s := toolsBuild(t, &toolsetConfig{Type: "filesystem", PostEdit: []postEditConfig{{Path: "*.go", Cmd: `echo "formatted $path" >> "$PWD/post.log"`}}}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(env.WorkingDir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	toolsWant(t, "write_file", toolsCall(t, s, env, "write_file", map[string]string{"path": "d/e/f.go", "content": "package x\n"}), "File written successfully: d/e/f.go (10 bytes)", false)
	if got := read("d/e/f.go"); got != "package x\n" {
		t.Errorf("written content = %q", got)
	}
	if got, want := read("post.log"), "formatted "+filepath.Join(env.WorkingDir, "d/e/f.go")+"\n"; got != want {
		t.Errorf("post_edit log = %q; want %q", got, want)
	}
	toolsWant(t, "write_file(txt)", toolsCall(t, s, env, "write_file", map[string]string{"path": "n.txt", "content": "one two one"}), "File written successfully: n.txt (11 bytes)", false)

	toolsWant(t, "edit_file(one)", toolsCall(t, s, env, "edit_file", map[string]any{"path": "n.txt", "edits": []map[string]string{{"oldText": "one", "newText": "três"}}}),
		"File edited successfully. Replaced 3 characters", false)
	toolsWant(t, "edit_file(two)", toolsCall(t, s, env, "edit_file", map[string]any{"path": "n.txt", "edits": []map[string]string{{"oldText": "two", "newText": "2"}, {"oldText": "one", "newText": "1"}}}),
		"File edited successfully. Changes:\nEdit 1: Replaced 3 characters\nEdit 2: Replaced 3 characters", false)
	if got := read("n.txt"); got != "três 2 1" {
		t.Errorf("edited content = %q", got)
	}
	toolsWant(t, "edit_file(missing text)", toolsCall(t, s, env, "edit_file", map[string]any{"path": "n.txt", "edits": []map[string]string{{"oldText": "2", "newText": "x"}, {"oldText": "zzz", "newText": "y"}}}),
		"Edit 2 failed: old text not found", true)
	if got := read("n.txt"); got != "três 2 1" {
		t.Errorf("a failed edit changed the file: %q", got)
	}
	toolsWant(t, "edit_file(missing file)", toolsCall(t, s, env, "edit_file", map[string]any{"path": "x.txt", "edits": []map[string]string{{"oldText": "a", "newText": "b"}}}), "not found", true)

	toolsWant(t, "create_directory", toolsCall(t, s, env, "create_directory", map[string]any{"paths": []string{"p/q", "r"}}),
		"Directory created successfully: p/q\nDirectory created successfully: r", false)
	toolsWant(t, "remove_directory", toolsCall(t, s, env, "remove_directory", map[string]any{"paths": []string{"p/q", "r"}}),
		"Directory removed successfully: p/q\nDirectory removed successfully: r", false)
	toolsWantContains(t, "remove_directory(non-empty)", toolsCall(t, s, env, "remove_directory", map[string]any{"paths": []string{"d"}}), "d: ", true)
	toolsWantContains(t, "remove_directory(.)", toolsCall(t, s, env, "remove_directory", map[string]any{"paths": []string{"."}}), "refusing", true)
	toolsWantContains(t, "remove_directory(file)", toolsCall(t, s, env, "remove_directory", map[string]any{"paths": []string{"n.txt"}}), "not a directory", true)
}

// TestFSEscapes checks that no tool reads or writes outside the working directory,
// whatever the path: "..", absolute, a symlinked file or a symlinked directory
// pointing outside. The reference does not confine these paths at all.
func TestFSEscapes(t *testing.T) {
	s := toolsBuild(t, &toolsetConfig{Type: "filesystem"}, toolsTestOpts(t, nil))
	env := toolsTestEnv(t)
	outside := t.TempDir()
	fsTestTree(t, outside, map[string]string{"secret.txt": "secret", "dir/inner.txt": "secret"})
	fsTestTree(t, env.WorkingDir, map[string]string{"ok.txt": "fine", "sub/": ""})
	for link, target := range map[string]string{
		"link.txt":    filepath.Join(outside, "secret.txt"),
		"linkdir":     filepath.Join(outside, "dir"),
		"sub/up":      "../../" + filepath.Base(outside),
		"inside-link": "ok.txt",
	} {
		if err := os.Symlink(target, filepath.Join(env.WorkingDir, link)); err != nil {
			t.Fatal(err)
		}
	}
	toolsWant(t, "read_file(inside symlink)", toolsCall(t, s, env, "read_file", map[string]string{"path": "inside-link"}), "fine", false)

	paths := []string{"../x", "../" + filepath.Base(outside) + "/secret.txt", "/etc/passwd", filepath.Join(outside, "secret.txt"),
		"link.txt", "linkdir/inner.txt", "linkdir", "sub/up/secret.txt", "sub/../../x"}
	for _, p := range paths {
		calls := []struct {
			tool string
			args map[string]any
		}{
			{"read_file", map[string]any{"path": p}},
			{"list_directory", map[string]any{"path": p}},
			{"directory_tree", map[string]any{"path": p}},
			{"search_files_content", map[string]any{"path": p, "query": "secret"}},
			{"write_file", map[string]any{"path": p, "content": "pwned"}},
			{"write_file", map[string]any{"path": p + "/new.txt", "content": "pwned"}},
			{"edit_file", map[string]any{"path": p, "edits": []map[string]string{{"oldText": "secret", "newText": "pwned"}}}},
			{"create_directory", map[string]any{"paths": []string{p + "/newdir"}}},
			{"remove_directory", map[string]any{"paths": []string{p}}},
		}
		for _, c := range calls {
			r := toolsCall(t, s, env, c.tool, c.args)
			if !r.IsError || strings.Contains(r.Output, "secret") && !strings.Contains(r.Output, "secret.txt") {
				t.Errorf("%s(%q) = (%q, isError=%v); want an error and no content", c.tool, p, r.Output, r.IsError)
			}
		}
		r := toolsCall(t, s, env, "read_multiple_files", map[string]any{"paths": []string{p}, "json": true})
		if strings.Contains(r.Output, `"content":"secret"`) {
			t.Errorf("read_multiple_files(%q) leaked: %s", p, r.Output)
		}
	}
	// Nothing outside changed or appeared.
	fsCheckTree(t, outside, map[string]string{"secret.txt": "secret", "dir/inner.txt": "secret"})
	if _, err := os.Stat(filepath.Join(filepath.Dir(env.WorkingDir), "x")); err == nil {
		t.Errorf("a file was created next to the working dir")
	}
	toolsWantContains(t, "read_file(no working dir)", toolsCall(t, s, &toolEnv{}, "read_file", map[string]string{"path": "ok.txt"}), "no working directory", true)
}

// fsCheckTree asserts that dir holds exactly the given regular files.
func fsCheckTree(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			rel, _ := filepath.Rel(dir, p)
			got[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	if len(got) != len(want) {
		t.Errorf("%s holds %v; want %v", dir, got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s/%s = %q; want %q", dir, k, got[k], v)
		}
	}
}

// TestFSIgnoreVCS checks that listings and searches skip .git and .gitignored paths
// unless ignore_vcs is false, and that direct reads are not filtered.
func TestFSIgnoreVCS(t *testing.T) {
	env := toolsTestEnv(t)
	fsTestTree(t, env.WorkingDir, map[string]string{
		".gitignore":       "# build output\n*.log\n/build/\ndocs/**/*.tmp\n!keep.log\nnode_modules/\n",
		".git/config":      "needle",
		"a.log":            "needle",
		"keep.log":         "needle",
		"build/out":        "needle",
		"sub/build/x":      "needle", // /build/ is anchored
		"sub/b.log":        "needle",
		"docs/x/y/z.tmp":   "needle",
		"docs/readme":      "needle",
		"node_modules/m/i": "needle",
	})
	on := toolsBuild(t, &toolsetConfig{Type: "filesystem"}, toolsTestOpts(t, nil))
	toolsWant(t, "search_files_content(ignore_vcs)", toolsCall(t, on, env, "search_files_content", map[string]any{"path": ".", "query": "needle"}),
		"docs/readme:1:1: needle\nkeep.log:1:1: needle\nsub/build/x:1:1: needle", false)
	toolsWant(t, "list_directory(ignore_vcs)", toolsCall(t, on, env, "list_directory", map[string]string{"path": "."}),
		"FILE .gitignore\nDIR  docs\nFILE keep.log\nDIR  sub", false)
	toolsWant(t, "read_file(ignored)", toolsCall(t, on, env, "read_file", map[string]string{"path": "a.log"}), "needle", false)

	no := false
	off := toolsBuild(t, &toolsetConfig{Type: "filesystem", IgnoreVCS: &no}, toolsTestOpts(t, nil))
	r := toolsCall(t, off, env, "search_files_content", map[string]any{"path": ".", "query": "needle"})
	if n := strings.Count(r.Output, "\n") + 1; n != 9 {
		t.Errorf("search_files_content(ignore_vcs=false) found %d files; want 9:\n%s", n, r.Output)
	}
}

// BenchmarkFSSearch searches 200 files of 500 lines each for a literal.
func BenchmarkFSSearch(b *testing.B) {
	dir := b.TempDir()
	line := strings.Repeat("lorem ipsum dolor sit amet ", 3) + "\n"
	for i := range 200 {
		os.WriteFile(filepath.Join(dir, "f"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+string(rune('a'+i/26))), []byte(strings.Repeat(line, 499)+"needle\n"), 0o644)
	}
	s, _ := newBuiltinToolset(&toolsetConfig{Type: "filesystem"}, toolsetOptions{})
	list, _ := s.tools(b.Context())
	var search tool
	for _, tl := range list {
		if tl.def.Name == "search_files_content" {
			search = tl
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	env := &toolEnv{WorkingDir: dir, Dir: root}
	args := json.RawMessage(`{"path":".","query":"needle"}`)
	for b.Loop() {
		if r := search.run(b.Context(), env, args); strings.Count(r.Output, "\n") != 199 {
			b.Fatalf("search found %d lines", strings.Count(r.Output, "\n")+1)
		}
	}
}

// FuzzFSGlobRegexp checks that every gitignore line yields a filter without panics.
func FuzzFSGlobRegexp(f *testing.F) {
	for _, s := range []string{"*.log", "/build/", "a/**/b", "[!a-z]x", "[", `\#x`, "!keep", "**"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		root, err := os.OpenRoot(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		if err := root.WriteFile(".gitignore", []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
		ig := (&fsToolset{ignoreVCS: true}).ignores(root)
		ig.skip("a/b.log", false)
		ig.skip("build", true)
	})
}
