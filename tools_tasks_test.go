package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTasksTools(t *testing.T) {
	opts := toolsTestOpts(t, nil)
	s := toolsBuild(t, &toolsetConfig{Type: "tasks"}, opts)
	env := toolsTestEnv(t)
	decode := func(r toolResult) task {
		t.Helper()
		var v task
		if err := json.Unmarshal([]byte(r.Output), &v); err != nil || r.IsError {
			t.Fatalf("result %+v is not a task", r)
		}
		return v
	}
	a := decode(toolsCall(t, s, env, "create_task", map[string]any{"title": "design", "priority": "high"}))
	if a.ID != "task_1" || a.Status != "pending" || a.Priority != "high" {
		t.Errorf("create_task = %+v", a)
	}
	b := decode(toolsCall(t, s, env, "create_task", map[string]any{"title": "build", "priority": "critical", "dependencies": []string{"task_1"}, "path": "main.go"}))
	if b.ID != "task_2" || b.Status != "blocked" || len(b.BlockedBy) != 1 {
		t.Errorf("create_task(dependent) = %+v; want blocked by task_1", b)
	}
	c := decode(toolsCall(t, s, env, "create_task", map[string]any{"title": "docs", "priority": "low"}))

	toolsWantContains(t, "create_task(no title)", toolsCall(t, s, env, "create_task", map[string]any{}), "title is required", true)
	toolsWantContains(t, "create_task(bad priority)", toolsCall(t, s, env, "create_task", map[string]any{"title": "x", "priority": "urgent"}), "invalid priority", true)
	toolsWantContains(t, "create_task(bad dep)", toolsCall(t, s, env, "create_task", map[string]any{"title": "x", "dependencies": []string{"task_9"}}), "dependency task_9 not found", true)

	// The critical task is blocked, so the high one comes next.
	if got := decode(toolsCall(t, s, env, "next_task", "{}")); got.ID != a.ID {
		t.Errorf("next_task = %s; want %s", got.ID, a.ID)
	}
	if got := decode(toolsCall(t, s, env, "update_task", map[string]any{"id": a.ID, "status": "done"})); got.Status != "done" {
		t.Errorf("update_task(done) = %+v", got)
	}
	if got := decode(toolsCall(t, s, env, "next_task", "{}")); got.ID != b.ID || got.Status != "pending" {
		t.Errorf("next_task after done = %+v; want %s pending", got, b.ID)
	}
	toolsWantContains(t, "update_task(bad status)", toolsCall(t, s, env, "update_task", map[string]any{"id": a.ID, "status": "finished"}), "invalid status", true)
	toolsWantContains(t, "get_task(unknown)", toolsCall(t, s, env, "get_task", map[string]any{"id": "task_9"}), "task task_9 not found", true)
	if got := decode(toolsCall(t, s, env, "get_task", map[string]any{"id": b.ID})); got.Path != "main.go" {
		t.Errorf("get_task = %+v", got)
	}

	toolsWant(t, "add_dependency", toolsCall(t, s, env, "add_dependency", map[string]string{"taskId": c.ID, "dependsOnId": b.ID}), "Task task_3 now depends on task_2", false)
	toolsWantContains(t, "add_dependency(cycle)", toolsCall(t, s, env, "add_dependency", map[string]string{"taskId": b.ID, "dependsOnId": c.ID}), "cycle", true)
	toolsWantContains(t, "add_dependency(self)", toolsCall(t, s, env, "add_dependency", map[string]string{"taskId": b.ID, "dependsOnId": b.ID}), "itself", true)
	toolsWant(t, "remove_dependency", toolsCall(t, s, env, "remove_dependency", map[string]string{"taskId": c.ID, "dependsOnId": b.ID}), "Removed dependency of task task_3 on task_2", false)
	toolsWantContains(t, "remove_dependency(absent)", toolsCall(t, s, env, "remove_dependency", map[string]string{"taskId": c.ID, "dependsOnId": b.ID}), "does not depend", true)

	var list []task
	r := toolsCall(t, s, env, "list_tasks", map[string]string{})
	if err := json.Unmarshal([]byte(r.Output), &list); err != nil || len(list) != 3 || list[0].ID != b.ID || list[2].ID != c.ID {
		t.Errorf("list_tasks = %s; want critical first, low last", r.Output)
	}
	toolsWantContains(t, "list_tasks(done)", toolsCall(t, s, env, "list_tasks", map[string]string{"status": "done"}), `"id":"task_1"`, false)
	toolsWant(t, "list_tasks(low, done)", toolsCall(t, s, env, "list_tasks", map[string]string{"status": "done", "priority": "low"}), "[]", false)

	toolsWant(t, "delete_task", toolsCall(t, s, env, "delete_task", map[string]string{"id": a.ID}), "Task task_1 deleted successfully", false)
	if got := decode(toolsCall(t, s, env, "get_task", map[string]any{"id": b.ID})); len(got.Dependencies) != 0 {
		t.Errorf("dependencies after delete = %v; want none", got.Dependencies)
	}

	data, err := os.ReadFile(filepath.Join(opts.WorkingDir, "tasks.json"))
	if err != nil || !strings.Contains(string(data), `"title": "build"`) || strings.Contains(string(data), "blocked_by") {
		t.Errorf("tasks.json = %s, %v", data, err)
	}
	if _, err := newBuiltinToolset(&toolsetConfig{Type: "tasks", Path: "../t.json"}, opts); err == nil {
		t.Errorf("tasks path ../t.json accepted")
	}
}
