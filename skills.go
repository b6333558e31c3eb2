package main

// skills.go: agent skills (CONFIG.md §4 `skills`, §6.3 read_skill). A skill is a
// directory holding a SKILL.md whose YAML front matter gives its name and description.
// Skills come from the user's home, from the session's project directories and from
// remote sources; the agent sees their names in an <available_skills> instruction and
// loads one with read_skill (and its supporting files with read_skill_file).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Limits on what skills may cost: remote sources and skill directories are not ours.
const (
	skillFileName      = "SKILL.md"
	maxSkillFile       = 1 << 20  // bytes of one SKILL.md or supporting file
	maxSkillIndex      = 1 << 20  // bytes of a remote index.json
	maxSkillSource     = 32 << 20 // bytes downloaded from one remote source per fetch
	maxRemoteSkills    = 100      // skills taken from one remote index
	maxSkillFiles      = 32       // files taken per remote skill
	maxSkillWalk       = 10000    // entries visited in one recursive home directory
	skillsLocalTTL     = 2 * time.Second
	skillsRemoteTTL    = time.Hour   // a remote index without Cache-Control max-age
	skillsRetryTTL     = time.Minute // before fetching again after a failure
	skillsFetchTimeout = 30 * time.Second
)

// skill is one loaded skill.
type skill struct {
	Name, Description string
	Dir               string   // holds SKILL.md; read_skill_file stays inside it
	Files             []string // supporting files a remote index lists (SKILL.md excluded)
}

// --- SKILL.md ---

// parseSkillMD returns the name and description of a SKILL.md's front matter: a
// "---" line, a YAML mapping, a "---" line. Both keys are required, as in the reference.
func parseSkillMD(src []byte) (name, desc string, ok bool) {
	s := strings.ReplaceAll(string(src), "\r\n", "\n")
	rest, found := strings.CutPrefix(s, "---\n")
	if !found {
		return "", "", false
	}
	end := strings.Index("\n"+rest, "\n---")
	if end < 0 {
		return "", "", false
	}
	n, err := parseYAML(skillFileName, []byte(rest[:end])) // up to and with its last line break
	if err != nil || n == nil || n.Kind != yamlMap {
		return "", "", false
	}
	for i, k := range n.Keys {
		if v := n.Values[i]; v.Kind == yamlScalar && v.Tag != "null" {
			switch k.Text {
			case "name":
				name = strings.TrimSpace(v.Text)
			case "description":
				desc = strings.TrimSpace(v.Text)
			}
		}
	}
	return name, desc, name != "" && desc != ""
}

// readSkillDir loads the skill in dir. SKILL.md is read through an os.Root, so a
// symlink leading out of the skill's directory is not followed.
func readSkillDir(dir string) (skill, bool) {
	b, err := readSkillFile(dir, skillFileName)
	if err != nil {
		return skill{}, false
	}
	name, desc, ok := parseSkillMD(b)
	return skill{Name: name, Description: desc, Dir: dir}, ok
}

// readSkillFile reads the slash path rel inside dir, refusing escapes and big files.
func readSkillFile(dir, rel string) ([]byte, error) {
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.Open(filepath.FromSlash(rel))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", rel)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSkillFile+1))
	if err == nil && len(b) > maxSkillFile {
		err = fmt.Errorf("%s is larger than %d bytes", rel, maxSkillFile)
	}
	return b, err
}

// --- local skills ---

// localSkills finds the skills of the user's home, then of the project: .claude/skills
// of dir itself, and .agents/skills of every directory from the git root down to dir
// but never above root (the reference climbs from the server's cwd to the git root).
// Later places override earlier ones by name, as in the reference.
func localSkills(home, root, dir string) []skill {
	var found []skill
	if home != "" {
		found = append(found, skillsUnder(filepath.Join(home, ".codex", "skills"))...)
		found = append(found, skillsIn(filepath.Join(home, ".claude", "skills"))...)
		found = append(found, skillsUnder(filepath.Join(home, ".agents", "skills"))...)
	}
	if !within(root, dir) {
		return found
	}
	inRoot := func(p string) []skill {
		if real, err := filepath.EvalSymlinks(p); err == nil && within(root, real) {
			return skillsIn(real)
		}
		return nil
	}
	found = append(found, inRoot(filepath.Join(dir, ".claude", "skills"))...)
	for _, d := range projectDirs(root, dir) {
		found = append(found, inRoot(filepath.Join(d, ".agents", "skills"))...)
	}
	return found
}

// projectDirs lists the directories from dir's git root (or root, if that is lower)
// down to dir; just dir when it is in no git repository. Above root only .git is
// looked for, nothing is read.
func projectDirs(root, dir string) []string {
	var dirs []string
	for d := dir; ; d = filepath.Dir(d) {
		if within(root, d) {
			dirs = append(dirs, d)
		}
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			slices.Reverse(dirs)
			return dirs
		}
		if d == filepath.Dir(d) {
			return []string{dir}
		}
	}
}

// skillsIn loads the skills of dir's immediate subdirectories (Claude's layout);
// hidden and symlinked entries are skipped, as in the reference.
func skillsIn(dir string) []skill {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []skill
	for _, e := range ents {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			if s, ok := readSkillDir(filepath.Join(dir, e.Name())); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// skillsUnder loads every SKILL.md below dir (Codex's layout), skipping hidden
// directories. WalkDir does not follow symlinked directories, so it cannot loop.
func skillsUnder(dir string) []skill {
	var out []skill
	seen := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if seen++; err != nil || seen > maxSkillWalk {
			return fs.SkipDir
		}
		switch {
		case d.IsDir() && p != dir && strings.HasPrefix(d.Name(), "."):
			return fs.SkipDir
		case !d.IsDir() && d.Name() == skillFileName:
			if s, ok := readSkillDir(filepath.Dir(p)); ok {
				out = append(out, s)
			}
		}
		return nil
	})
	return out
}

// --- remote skills ---

// skillsIndex is a remote source's /.well-known/skills/index.json.
type skillsIndex struct {
	Skills []struct {
		Name        string   `json:"name"`
		Description string   `json:"description"`
		Files       []string `json:"files"`
	} `json:"skills"`
}

// remoteSkills fetches source's index and every file it lists into cacheDir, so
// reading a skill needs no network. When the source cannot be reached, the copy
// cached by the last successful fetch is used. It returns how long the answer holds.
func remoteSkills(ctx context.Context, client *http.Client, cacheDir, source string) ([]skill, time.Duration, error) {
	source = strings.TrimRight(source, "/")
	base := source + "/.well-known/skills/"
	sum := sha256.Sum256([]byte(source))
	dir := filepath.Join(cacheDir, hex.EncodeToString(sum[:8]))
	ctx, cancel := context.WithTimeout(ctx, skillsFetchTimeout)
	defer cancel()
	budget := int64(maxSkillSource)
	body, hdr, err := skillsGet(ctx, client, base+"index.json", maxSkillIndex, &budget)
	online := err == nil
	ttl := skillsRetryTTL
	if online {
		ttl = max(cacheMaxAge(hdr.Get("Cache-Control")), skillsRetryTTL)
	} else if body, err = os.ReadFile(filepath.Join(dir, "index.json")); err != nil {
		return nil, ttl, fmt.Errorf("skills source %s: unreachable and not cached", redactURL(source))
	}
	var idx skillsIndex
	if err := json.Unmarshal(body, &idx); err != nil {
		return nil, skillsRetryTTL, fmt.Errorf("skills source %s: index.json: %v", redactURL(source), err)
	}
	var out []skill
	for _, e := range idx.Skills[:min(len(idx.Skills), maxRemoteSkills)] {
		if e.Description == "" || !validSkillName(e.Name) {
			continue
		}
		files := slices.DeleteFunc(slices.Clone(e.Files), func(f string) bool { return !validSkillPath(f) || f == skillFileName })
		files = files[:min(len(files), maxSkillFiles)]
		k := skill{Name: e.Name, Description: e.Description, Dir: filepath.Join(dir, "skills", e.Name), Files: files}
		if online {
			for _, f := range append([]string{skillFileName}, files...) {
				// A file that fails to download keeps its cached copy.
				if b, _, err := skillsGet(ctx, client, base+e.Name+"/"+f, maxSkillFile, &budget); err == nil {
					writeFileAtomic(filepath.Join(k.Dir, filepath.FromSlash(f)), b)
				}
			}
		}
		if _, err := os.Stat(filepath.Join(k.Dir, skillFileName)); err == nil {
			out = append(out, k) // one never fetched has nothing to read
		}
	}
	if online {
		writeFileAtomic(filepath.Join(dir, "index.json"), body)
	}
	return out, ttl, nil
}

// skillsGet GETs url, reading at most limit bytes and no more than *budget in total.
func skillsGet(ctx context.Context, client *http.Client, url string, limit int64, budget *int64) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("%s: %s", redactURL(url), resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, min(limit, *budget)+1))
	if err == nil && int64(len(b)) > min(limit, *budget) {
		err = fmt.Errorf("%s: larger than %d bytes", redactURL(url), min(limit, *budget))
	}
	*budget -= int64(len(b))
	return b, resp.Header, err
}

// cacheMaxAge is how long a response stays fresh by its Cache-Control header.
func cacheMaxAge(cc string) time.Duration {
	for d := range strings.SplitSeq(cc, ",") {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "no-store" || d == "no-cache" {
			return 0
		}
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return skillsRemoteTTL
}

// writeFileAtomic replaces path with b through a temporary file, so a reader (or
// another server sharing the cache) never sees half a file.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// validSkillName accepts a remote skill name usable as one cache directory name.
func validSkillName(s string) bool {
	return s != "" && len(s) <= 128 && s[0] != '.' && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}

// validSkillPath accepts a relative slash path without "..", empty or hidden
// segments, and without characters that change a URL's meaning.
func validSkillPath(p string) bool {
	if p == "" || len(p) > 256 || strings.ContainsAny(p, `\?#[]%`) {
		return false
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == "" || seg[0] == '.' || strings.IndexFunc(seg, func(r rune) bool { return r < 0x21 || r > 0x7e }) >= 0 {
			return false
		}
	}
	return true
}

// --- the toolset ---

// skillSet is the skills one agent sees; nil when it has none.
type skillSet struct{ skills []skill }

func (s *skillSet) find(name string) *skill {
	for i := range s.skills {
		if s.skills[i].Name == name {
			return &s.skills[i]
		}
	}
	return nil
}

// hasFiles reports whether a skill lists supporting files; only then is
// read_skill_file offered, as in the reference (which keeps tool counts equal).
func (s *skillSet) hasFiles() bool {
	return s != nil && slices.ContainsFunc(s.skills, func(k skill) bool { return len(k.Files) > 0 })
}

// xmlText escapes what could end an XML element early.
var xmlText = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// instruction is the system-prompt text listing the skills.
func (s *skillSet) instruction() string {
	if s == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("Skills provide specialized instructions for specific tasks. When a user's request matches a skill's description, use read_skill to load its instructions.\n\n")
	if s.hasFiles() {
		b.WriteString("Some skills have supporting files. Use read_skill_file to load referenced files on demand — do not preload them.\n\n")
	}
	b.WriteString("<available_skills>\n")
	for _, k := range s.skills {
		fmt.Fprintf(&b, "  <skill>\n    <name>%s</name>\n    <description>%s</description>\n", xmlText.Replace(k.Name), xmlText.Replace(k.Description))
		if len(k.Files) > 0 {
			fmt.Fprintf(&b, "    <files>%s</files>\n", xmlText.Replace(strings.Join(k.Files, ", ")))
		}
		b.WriteString("  </skill>\n")
	}
	b.WriteString("</available_skills>")
	return b.String()
}

var (
	readSkillDef = toolDef{
		Name: "read_skill", Category: "skills",
		Description:  "Read the content of a skill by name. Use this when a user's request matches an available skill.",
		Parameters:   json.RawMessage(`{"additionalProperties":false,"properties":{"name":{"description":"The name of the skill to read","type":"string"}},"required":["name"],"type":"object"}`),
		OutputSchema: json.RawMessage(`{"type":"string"}`),
		Annotations:  toolAnnotations{Title: "Read Skill", ReadOnlyHint: true},
	}
	readSkillFileDef = toolDef{
		Name: "read_skill_file", Category: "skills",
		Description:  "Read a supporting file from a skill (e.g. references, scripts, assets). Use when skill instructions reference additional files.",
		Parameters:   json.RawMessage(`{"additionalProperties":false,"properties":{"path":{"description":"The relative path to the file within the skill (e.g. references/FORMS.md)","type":"string"},"skill_name":{"description":"The name of the skill that contains the file","type":"string"}},"required":["skill_name","path"],"type":"object"}`),
		OutputSchema: json.RawMessage(`{"type":"string"}`),
		Annotations:  toolAnnotations{Title: "Read Skill File", ReadOnlyHint: true},
	}
)

// tools are read_skill, and read_skill_file when some skill has supporting files.
func (s *skillSet) tools() []tool {
	if s == nil {
		return nil
	}
	out := []tool{{def: readSkillDef, run: toolsRun(func(ctx context.Context, env *toolEnv, a struct {
		Name string `json:"name"`
	}) toolResult {
		return s.read(env, a.Name, skillFileName)
	})}}
	if s.hasFiles() {
		out = append(out, tool{def: readSkillFileDef, run: toolsRun(func(ctx context.Context, env *toolEnv, a struct {
			SkillName string `json:"skill_name"`
			Path      string `json:"path"`
		}) toolResult {
			p := filepath.ToSlash(a.Path)
			if p == "" || strings.HasPrefix(p, "/") || strings.Contains(p, "..") || filepath.IsAbs(a.Path) {
				return toolErrorf("invalid file path %q", a.Path)
			}
			return s.read(env, a.SkillName, p)
		})})
	}
	return out
}

// read returns the file rel of skill name, confined to the skill's directory.
func (s *skillSet) read(env *toolEnv, name, rel string) toolResult {
	k := s.find(name)
	if k == nil {
		return toolErrorf("skill %q not found", name)
	}
	if r, err := os.OpenRoot(k.Dir); err == nil {
		blocked := env != nil && env.Protected.matcher().blocks(r, rel)
		r.Close()
		if blocked {
			return toolErrorf(errProtected, rel)
		}
	}
	b, err := readSkillFile(k.Dir, rel)
	if err != nil {
		return toolErrorf("reading file: %v", err)
	}
	return toolResult{Output: toolsTruncate(string(b))}
}

// --- per-team cache ---

// skillsCache remembers a team's skills: local ones per directory for a moment (runs
// ask on every turn), remote ones for as long as their source says.
type skillsCache struct {
	mu     sync.Mutex
	local  map[string]skillsLocal
	remote map[string]*skillsRemote
}

type skillsLocal struct {
	at     time.Time
	skills []skill
}

type skillsRemote struct {
	mu     sync.Mutex // held while fetching, so one fetch serves concurrent runs
	until  time.Time
	skills []skill
}

// skillsFor returns the skills agent ag sees from the session directory dir ("" for
// the server's root), or nil when it has none.
func (t *team) skillsFor(ctx context.Context, ag *agentConfig, dir string) *skillSet {
	if len(ag.SkillSources) == 0 {
		return nil
	}
	byName := map[string]skill{}
	for _, src := range ag.SkillSources {
		var found []skill
		if src == "local" {
			found = t.localSkills(dir)
		} else {
			found = t.remoteSkills(ctx, src)
		}
		for _, k := range found {
			byName[k.Name] = k // later sources override earlier ones
		}
	}
	if len(byName) == 0 {
		return nil
	}
	s := &skillSet{}
	for _, k := range byName {
		s.skills = append(s.skills, k)
	}
	slices.SortFunc(s.skills, func(a, b skill) int { return strings.Compare(a.Name, b.Name) })
	return s
}

func (t *team) localSkills(dir string) []skill {
	root := t.opts.WorkingDir
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	if dir == "" {
		dir = root
	}
	c := &t.skills
	c.mu.Lock()
	if e, ok := c.local[dir]; ok && time.Since(e.at) < skillsLocalTTL {
		c.mu.Unlock()
		return e.skills
	}
	c.mu.Unlock()
	home, _ := os.UserHomeDir()
	found := localSkills(home, root, dir)
	c.mu.Lock()
	if c.local == nil || len(c.local) >= 64 {
		c.local = map[string]skillsLocal{}
	}
	c.local[dir] = skillsLocal{time.Now(), found}
	c.mu.Unlock()
	return found
}

func (t *team) remoteSkills(ctx context.Context, source string) []skill {
	c := &t.skills
	c.mu.Lock()
	if c.remote == nil {
		c.remote = map[string]*skillsRemote{}
	}
	e := c.remote[source]
	if e == nil {
		e = &skillsRemote{}
		c.remote[source] = e
	}
	c.mu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	if time.Now().Before(e.until) {
		return e.skills
	}
	client := t.opts.HTTP
	if client == nil {
		client = withRedirectPolicy(nil)
	}
	found, ttl, err := remoteSkills(ctx, client, skillsCacheDir(t.opts.CacheDir), source)
	if err != nil && ctx.Err() != nil {
		return found // the caller gave up: not the source's fault, ask again next time
	}
	if err != nil && t.opts.Logger != nil {
		t.opts.Logger.Warn("skills source failed", "err", err)
	}
	e.skills, e.until = found, time.Now().Add(ttl)
	return found
}

// skillsCacheDir is where remote skills are kept: <--cache-dir>/skills, or the user
// cache dir's agentd/skills.
func skillsCacheDir(cacheDir string) string {
	if cacheDir != "" {
		return filepath.Join(cacheDir, "skills")
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "agentd", "skills")
	}
	return filepath.Join(os.TempDir(), "agentd", "skills")
}
