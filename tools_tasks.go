package main

// tools_tasks.go: the tasks toolset, a persistent task list with priorities and
// dependencies stored as a JSON file (CONFIG.md §6.3 tasks).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tasksMu serialises every read-modify-write of every tasks file in the process; the
// calls are rare and short, so one lock is simpler than one per file.
var tasksMu sync.Mutex

// task is one entry of the tasks file.
type task struct {
	ID           string   `json:"id"`
	Title        string   `json:"title"`
	Description  string   `json:"description,omitempty"`
	Path         string   `json:"path,omitempty"`
	Priority     string   `json:"priority"`
	Status       string   `json:"status"`
	Dependencies []string `json:"dependencies,omitempty"`
	CreatedAt    string   `json:"created_at"`
	UpdatedAt    string   `json:"updated_at"`
	BlockedBy    []string `json:"blocked_by,omitempty"` // computed, never stored
}

// tasksFile is the JSON document on disk.
type tasksFile struct {
	Tasks []*task `json:"tasks"`
}

var (
	tasksPriorities = []string{"critical", "high", "medium", "low"} // most urgent first
	tasksStatuses   = []string{"pending", "in_progress", "done", "blocked"}
)

// newTasksToolset returns the tasks tools over the file at ts.Path (default
// tasks.json), resolved like a memory path and confined the same way.
func newTasksToolset(ts *toolsetConfig, opts toolsetOptions) (*builtinToolset, error) {
	p := ts.Path
	if p == "" {
		p = "tasks.json"
	}
	cfg := *ts
	cfg.Path = p
	path, err := memoryPath(&cfg, opts)
	if err != nil {
		return nil, fmt.Errorf("tasks: %w", err)
	}
	t := &tasksStore{path: path}
	return &builtinToolset{
		list: []tool{
			{def: toolsDef("create_task", "tasks", "Create Task", "Create a task with a title and optional description, file path, priority (critical, high, medium, low) and dependencies (task IDs).", false), run: toolsRun(t.create)},
			{def: toolsDef("get_task", "tasks", "Get Task", "Show one task by ID.", true), run: toolsRun(t.get)},
			{def: toolsDef("update_task", "tasks", "Update Task", "Change fields of a task. Status is pending, in_progress, done or blocked.", false), run: toolsRun(t.update)},
			{def: tasksDestructive(toolsDef("delete_task", "tasks", "Delete Task", "Delete a task and remove it from other tasks' dependencies.", false)), run: toolsRun(t.delete)},
			{def: toolsDef("list_tasks", "tasks", "List Tasks", "List tasks by priority, optionally filtered by status and priority.", true), run: toolsRun(t.list)},
			{def: toolsDef("next_task", "tasks", "Next Task", "Show the most urgent task that is not done and not blocked by unfinished dependencies.", true), run: toolsRun(t.next)},
			{def: toolsDef("add_dependency", "tasks", "Add Dependency", "Make a task depend on another task.", false), run: toolsRun(t.addDep)},
			{def: toolsDef("remove_dependency", "tasks", "Remove Dependency", "Remove a dependency between two tasks.", false), run: toolsRun(t.removeDep)},
		},
		instr: `You have a persistent task list. Use next_task to pick what to work on, set a task in_progress when you start it and done when it is finished, and record new work with create_task. A task is blocked while any of its dependencies is not done.`,
	}, nil
}

// tasksStore reads and writes one tasks file.
type tasksStore struct{ path string }

// tasksArgs are the arguments of every tasks tool; pointers tell "not given" apart.
type tasksArgs struct {
	ID           string    `json:"id"`
	Title        *string   `json:"title"`
	Description  *string   `json:"description"`
	Path         *string   `json:"path"`
	Priority     *string   `json:"priority"`
	Status       *string   `json:"status"`
	Dependencies *[]string `json:"dependencies"`
	TaskID       string    `json:"taskId"`
	DependsOnID  string    `json:"dependsOnId"`
}

// with loads the file, calls fn and, when fn reports a change, saves it atomically.
func (s *tasksStore) with(fn func(f *tasksFile) (toolResult, bool)) toolResult {
	tasksMu.Lock()
	defer tasksMu.Unlock()
	f := &tasksFile{}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return toolErrorf("reading tasks: %v", err)
	default:
		if err := json.Unmarshal(data, f); err != nil {
			return toolErrorf("tasks file %s is corrupt: %v", filepath.Base(s.path), err)
		}
	}
	r, changed := fn(f)
	if !changed || r.IsError {
		return r
	}
	for _, t := range f.Tasks {
		t.BlockedBy = nil
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return toolErrorf("encoding tasks: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return toolErrorf("saving tasks: %v", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".tasks-*.json")
	if err != nil {
		return toolErrorf("saving tasks: %v", err)
	}
	_, werr := tmp.Write(append(out, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return toolErrorf("saving tasks: %v", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		os.Remove(tmp.Name())
		return toolErrorf("saving tasks: %v", err)
	}
	return r
}

func (f *tasksFile) find(id string) *task {
	i := slices.IndexFunc(f.Tasks, func(t *task) bool { return t.ID == id })
	if i < 0 {
		return nil
	}
	return f.Tasks[i]
}

// view returns a copy of t with BlockedBy computed and, for a task that is not done,
// the status shown as blocked while dependencies are unfinished.
func (f *tasksFile) view(t *task) task {
	v := *t
	v.BlockedBy = nil
	for _, d := range t.Dependencies {
		if dt := f.find(d); dt != nil && dt.Status != "done" {
			v.BlockedBy = append(v.BlockedBy, d)
		}
	}
	if len(v.BlockedBy) > 0 && v.Status != "done" {
		v.Status = "blocked"
	}
	return v
}

// checkDeps validates dependency IDs of task id (which may not exist yet).
func (f *tasksFile) checkDeps(id string, deps []string) error {
	for _, d := range deps {
		if d == id {
			return errors.New("a task cannot depend on itself")
		}
		if f.find(d) == nil {
			return fmt.Errorf("dependency %s not found", d)
		}
		if f.reaches(d, id) {
			return fmt.Errorf("dependency %s would create a cycle", d)
		}
	}
	return nil
}

// reaches reports whether from depends, directly or not, on to.
func (f *tasksFile) reaches(from, to string) bool {
	seen := map[string]bool{}
	stack := []string{from}
	for len(stack) > 0 {
		id := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if id == to {
			return true
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		if t := f.find(id); t != nil {
			stack = append(stack, t.Dependencies...)
		}
	}
	return false
}

func tasksNow() string { return time.Now().UTC().Format(time.RFC3339) }

func (s *tasksStore) create(ctx context.Context, env *toolEnv, a tasksArgs) toolResult {
	if a.Title == nil || strings.TrimSpace(*a.Title) == "" {
		return toolErrorf("title is required")
	}
	return s.with(func(f *tasksFile) (toolResult, bool) {
		n := 0
		for _, t := range f.Tasks {
			if k, err := strconv.Atoi(strings.TrimPrefix(t.ID, "task_")); err == nil {
				n = max(n, k)
			}
		}
		t := &task{ID: fmt.Sprintf("task_%d", n+1), Title: *a.Title, Priority: "medium", Status: "pending", CreatedAt: tasksNow()}
		t.UpdatedAt = t.CreatedAt
		if r, ok := tasksApply(f, t, a); !ok {
			return r, false
		}
		f.Tasks = append(f.Tasks, t)
		return toolsJSON(f.view(t)), true
	})
}

// tasksApply copies the given optional fields of a into t after validating them.
func tasksApply(f *tasksFile, t *task, a tasksArgs) (toolResult, bool) {
	if a.Priority != nil && *a.Priority != "" {
		if !slices.Contains(tasksPriorities, *a.Priority) {
			return toolErrorf("invalid priority %q: use critical, high, medium or low", *a.Priority), false
		}
		t.Priority = *a.Priority
	}
	if a.Status != nil && *a.Status != "" {
		if !slices.Contains(tasksStatuses, *a.Status) {
			return toolErrorf("invalid status %q: use pending, in_progress, done or blocked", *a.Status), false
		}
		t.Status = *a.Status
	}
	if a.Dependencies != nil {
		if err := f.checkDeps(t.ID, *a.Dependencies); err != nil {
			return toolErrorf("%v", err), false
		}
		t.Dependencies = slices.Compact(slices.Clone(*a.Dependencies))
	}
	if a.Title != nil && *a.Title != "" {
		t.Title = *a.Title
	}
	if a.Description != nil {
		t.Description = *a.Description
	}
	if a.Path != nil {
		t.Path = *a.Path
	}
	return toolResult{}, true
}

func (s *tasksStore) get(ctx context.Context, env *toolEnv, a tasksArgs) toolResult {
	return s.with(func(f *tasksFile) (toolResult, bool) {
		t := f.find(a.ID)
		if t == nil {
			return toolErrorf("task %s not found", a.ID), false
		}
		return toolsJSON(f.view(t)), false
	})
}

func (s *tasksStore) update(ctx context.Context, env *toolEnv, a tasksArgs) toolResult {
	return s.with(func(f *tasksFile) (toolResult, bool) {
		t := f.find(a.ID)
		if t == nil {
			return toolErrorf("task %s not found", a.ID), false
		}
		c := *t
		if r, ok := tasksApply(f, &c, a); !ok {
			return r, false
		}
		c.UpdatedAt = tasksNow()
		*t = c
		return toolsJSON(f.view(t)), true
	})
}

func (s *tasksStore) delete(ctx context.Context, env *toolEnv, a tasksArgs) toolResult {
	return s.with(func(f *tasksFile) (toolResult, bool) {
		if f.find(a.ID) == nil {
			return toolErrorf("task %s not found", a.ID), false
		}
		f.Tasks = slices.DeleteFunc(f.Tasks, func(t *task) bool { return t.ID == a.ID })
		for _, t := range f.Tasks {
			t.Dependencies = slices.DeleteFunc(t.Dependencies, func(d string) bool { return d == a.ID })
		}
		return toolResult{Output: fmt.Sprintf("Task %s deleted successfully", a.ID)}, true
	})
}

// sorted returns views of the tasks, most urgent priority first, then oldest first.
func (f *tasksFile) sorted() []task {
	var out []task
	for _, t := range f.Tasks {
		out = append(out, f.view(t))
	}
	slices.SortStableFunc(out, func(x, y task) int {
		return slices.Index(tasksPriorities, x.Priority) - slices.Index(tasksPriorities, y.Priority)
	})
	return out
}

func (s *tasksStore) list(ctx context.Context, env *toolEnv, a tasksArgs) toolResult {
	return s.with(func(f *tasksFile) (toolResult, bool) {
		out := []task{}
		for _, t := range f.sorted() {
			if a.Status != nil && *a.Status != "" && t.Status != *a.Status {
				continue
			}
			if a.Priority != nil && *a.Priority != "" && t.Priority != *a.Priority {
				continue
			}
			out = append(out, t)
		}
		return toolsJSON(out), false
	})
}

func (s *tasksStore) next(ctx context.Context, env *toolEnv, a tasksArgs) toolResult {
	return s.with(func(f *tasksFile) (toolResult, bool) {
		for _, t := range f.sorted() {
			if t.Status == "pending" || t.Status == "in_progress" {
				return toolsJSON(t), false
			}
		}
		return toolResult{Output: "No tasks available: every task is done or blocked"}, false
	})
}

func (s *tasksStore) addDep(ctx context.Context, env *toolEnv, a tasksArgs) toolResult {
	return s.with(func(f *tasksFile) (toolResult, bool) {
		t := f.find(a.TaskID)
		if t == nil {
			return toolErrorf("task %s not found", a.TaskID), false
		}
		if slices.Contains(t.Dependencies, a.DependsOnID) {
			return toolResult{Output: fmt.Sprintf("Task %s already depends on %s", a.TaskID, a.DependsOnID)}, false
		}
		if err := f.checkDeps(t.ID, []string{a.DependsOnID}); err != nil {
			return toolErrorf("%v", err), false
		}
		t.Dependencies = append(t.Dependencies, a.DependsOnID)
		t.UpdatedAt = tasksNow()
		return toolResult{Output: fmt.Sprintf("Task %s now depends on %s", a.TaskID, a.DependsOnID)}, true
	})
}

func (s *tasksStore) removeDep(ctx context.Context, env *toolEnv, a tasksArgs) toolResult {
	return s.with(func(f *tasksFile) (toolResult, bool) {
		t := f.find(a.TaskID)
		if t == nil {
			return toolErrorf("task %s not found", a.TaskID), false
		}
		if !slices.Contains(t.Dependencies, a.DependsOnID) {
			return toolErrorf("task %s does not depend on %s", a.TaskID, a.DependsOnID), false
		}
		t.Dependencies = slices.DeleteFunc(t.Dependencies, func(d string) bool { return d == a.DependsOnID })
		t.UpdatedAt = tasksNow()
		return toolResult{Output: fmt.Sprintf("Removed dependency of task %s on %s", a.TaskID, a.DependsOnID)}, true
	})
}

// tasksDestructive marks a definition destructive, as the reference marks delete_task.
func tasksDestructive(d toolDef) toolDef {
	yes := true
	d.Annotations.DestructiveHint = &yes
	return d
}
