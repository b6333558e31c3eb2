package main

// tools_schema.go: the JSON schemas of the built-in tools, with the reference's
// parameters (spec/builtin-tools.json) so models and clients see the same shapes. That
// dump lost every key named "description" or "title", including the properties of
// those names (create_todo.description, create_task.title, user_prompt.title, …); they
// are restored here as strings, and every parameter carries a description in our own
// words, since models choose arguments from them. TestToolsSchemas strips those keys
// before comparing; TestToolParametersDescribed checks none is missing.

// toolsSchema is the parameter and output schema of one built-in tool.
type toolsSchema struct{ params, output string }

// toolsSchemas maps a built-in tool name to its schemas.
var toolsSchemas = map[string]toolsSchema{
	"think": {
		params: `{"additionalProperties":false,"properties":{"thought":{"description":"Your reasoning, written out: what you know, what you are unsure of, and what to do next.","type":"string"}},"required":["thought"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"create_todo": {
		params: `{"additionalProperties":false,"properties":{"description":{"description":"What needs to be done, as one short actionable sentence.","type":"string"}},"required":["description"],"type":"object"}`,
		output: `{"type":"object","properties":{"created":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false},"all_todos":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"reminder":{"type":"string"}},"required":["created","all_todos"],"additionalProperties":false}`,
	},
	"create_todos": {
		params: `{"additionalProperties":false,"properties":{"descriptions":{"description":"The todo items to add, one short actionable sentence each, in the order they should be done.","items":{"type":"string"},"type":["null","array"]}},"required":["descriptions"],"type":"object"}`,
		output: `{"type":"object","properties":{"created":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"all_todos":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"reminder":{"type":"string"}},"required":["created","all_todos"],"additionalProperties":false}`,
	},
	"update_todos": {
		params: `{"additionalProperties":false,"properties":{"updates":{"description":"The status changes to apply, one per todo item.","items":{"additionalProperties":false,"properties":{"id":{"description":"ID of the todo item to change, as returned when it was created (for example todo_1).","type":"string"},"status":{"description":"The item's new status: pending, in-progress or completed.","type":"string"}},"required":["id","status"],"type":"object"},"type":["null","array"]}},"required":["updates"],"type":"object"}`,
		output: `{"type":"object","properties":{"updated":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"}},"required":["id","status"],"additionalProperties":false}},"not_found":{"type":["null","array"],"items":{"type":"string"}},"all_todos":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"reminder":{"type":"string"}},"required":["all_todos"],"additionalProperties":false}`,
	},
	"list_todos": {
		params: `{"properties":{},"type":"object"}`,
		output: `{"type":"object","properties":{"todos":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"reminder":{"type":"string"}},"required":["todos"],"additionalProperties":false}`,
	},
	"add_memory": {
		params: `{"additionalProperties":false,"properties":{"category":{"description":"Optional label to group related memories (for example preferences or project).","type":"string"},"memory":{"description":"The fact to remember, phrased so it makes sense on its own in a later conversation.","type":"string"}},"required":["memory"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"get_memories": {
		params: `{"properties":{},"type":"object"}`,
		output: `{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"created_at":{"type":"string"},"memory":{"type":"string"},"category":{"type":"string"}},"required":["id","created_at","memory"],"additionalProperties":false}}`,
	},
	"delete_memory": {
		params: `{"additionalProperties":false,"properties":{"id":{"description":"ID of the memory to delete, as listed by get_memories or search_memories.","type":"string"}},"required":["id"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"search_memories": {
		params: `{"additionalProperties":false,"properties":{"category":{"description":"Only search memories with this category.","type":"string"},"query":{"description":"Words the memory must contain; all of them must match, case does not matter. Empty lists every memory.","type":"string"}},"type":"object"}`,
		output: `{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"created_at":{"type":"string"},"memory":{"type":"string"},"category":{"type":"string"}},"required":["id","created_at","memory"],"additionalProperties":false}}`,
	},
	"update_memory": {
		params: `{"additionalProperties":false,"properties":{"category":{"description":"The new category of the memory; leave it out to clear it.","type":"string"},"id":{"description":"ID of the memory to replace, as listed by get_memories or search_memories.","type":"string"},"memory":{"description":"The new text of the memory.","type":"string"}},"required":["id","memory"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"directory_tree": {
		params: `{"additionalProperties":false,"properties":{"path":{"description":"Directory to show, relative to the working directory (. for the working directory itself).","type":"string"}},"required":["path"],"type":"object"}`,
		output: `{"additionalProperties":false,"properties":{"children":{"items":{"$ref":"#"},"type":"array"},"name":{"type":"string"},"type":{"type":"string"}},"required":["name","type"],"type":"object"}`,
	},
	"edit_file": {
		params: `{"additionalProperties":false,"properties":{"edits":{"description":"Replacements applied in order; each oldText must occur in the file exactly as written.","items":{"additionalProperties":false,"properties":{"newText":{"description":"Text that replaces oldText.","type":"string"},"oldText":{"description":"Exact text to find in the file, including whitespace and line breaks.","type":"string"}},"required":["oldText","newText"],"type":"object"},"type":["null","array"]},"path":{"description":"File to edit, relative to the working directory.","type":"string"}},"required":["path","edits"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"list_directory": {
		params: `{"additionalProperties":false,"properties":{"path":{"description":"Directory to list, relative to the working directory.","type":"string"}},"required":["path"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"read_file": {
		params: `{"additionalProperties":false,"properties":{"path":{"description":"File to read, relative to the working directory.","type":"string"}},"required":["path"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"read_multiple_files": {
		params: `{"additionalProperties":false,"properties":{"json":{"description":"Return a JSON array of {path, content} objects instead of text sections.","type":"boolean"},"paths":{"description":"Files to read, each relative to the working directory.","items":{"type":"string"},"type":["null","array"]}},"required":["paths"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"search_files_content": {
		params: `{"additionalProperties":false,"properties":{"excludePatterns":{"description":"Glob patterns of file or directory names to skip (for example vendor or *.min.js).","items":{"type":"string"},"type":["null","array"]},"is_regex":{"description":"Treat query as a regular expression instead of plain text.","type":"boolean"},"path":{"description":"Directory to search recursively, relative to the working directory.","type":"string"},"query":{"description":"Text to look for in file contents; a regular expression when is_regex is true.","type":"string"}},"required":["path","query"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"write_file": {
		params: `{"additionalProperties":false,"properties":{"content":{"description":"The complete new content of the file.","type":"string"},"path":{"description":"File to create or overwrite, relative to the working directory; missing parent directories are created.","type":"string"}},"required":["path","content"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"create_directory": {
		params: `{"additionalProperties":false,"properties":{"paths":{"description":"Directories to create, relative to the working directory; missing parents are created too.","items":{"type":"string"},"type":["null","array"]}},"required":["paths"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"remove_directory": {
		params: `{"additionalProperties":false,"properties":{"paths":{"description":"Empty directories to remove, relative to the working directory.","items":{"type":"string"},"type":["null","array"]}},"required":["paths"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"shell": {
		params: `{"additionalProperties":false,"properties":{"cmd":{"description":"The shell command line to run.","type":"string"},"cwd":{"description":"Directory to run the command in, relative to the working directory (default: the working directory).","type":"string"},"timeout":{"description":"Seconds to wait before the command is killed.","type":"integer"}},"required":["cmd"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"run_background_job": {
		params: `{"additionalProperties":false,"properties":{"cmd":{"description":"The shell command line to start in the background.","type":"string"},"cwd":{"description":"Directory to run the command in, relative to the working directory (default: the working directory).","type":"string"}},"required":["cmd"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"list_background_jobs": {
		params: `{"properties":{},"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"view_background_job": {
		params: `{"additionalProperties":false,"properties":{"job_id":{"description":"ID of the job, as returned by run_background_job.","type":"string"}},"required":["job_id"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"stop_background_job": {
		params: `{"additionalProperties":false,"properties":{"job_id":{"description":"ID of the job to stop, as returned by run_background_job.","type":"string"}},"required":["job_id"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"fetch": {
		params: `{"properties":{"format":{"description":"How to return each page: text (tags stripped), markdown, or html as received.","enum":["text","markdown","html"],"type":"string"},"timeout":{"description":"Seconds to wait for each URL.","maximum":300,"minimum":1,"type":"integer"},"urls":{"description":"The http or https URLs to fetch.","items":{"type":"string"},"minItems":1,"type":"array"}},"required":["urls","format"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"user_prompt": {
		params: `{"additionalProperties":false,"properties":{"message":{"description":"The question or request shown to the user.","type":"string"},"schema":{"additionalProperties":true,"description":"Optional JSON schema of the answer, so the user fills in fields instead of free text.","type":"object"},"title":{"description":"Optional short heading for the prompt.","type":"string"}},"required":["message"],"type":"object"}`,
		output: `{"type":"object","properties":{"action":{"type":"string"},"content":{"type":"object","additionalProperties":true}},"required":["action"],"additionalProperties":false}`,
	},
	"create_task": {
		params: `{"additionalProperties":false,"properties":{"dependencies":{"description":"IDs of tasks that must be done before this one.","items":{"type":"string"},"type":["null","array"]},"description":{"description":"What the task involves and when it counts as done.","type":"string"},"path":{"description":"File the task is about, relative to the working directory.","type":"string"},"priority":{"description":"One of critical, high, medium or low.","type":"string"},"title":{"description":"Short name of the task.","type":"string"}},"required":["title"],"type":"object"}`,
		output: ``,
	},
	"get_task": {
		params: `{"additionalProperties":false,"properties":{"id":{"description":"ID of the task to show.","type":"string"}},"required":["id"],"type":"object"}`,
		output: ``,
	},
	"update_task": {
		params: `{"additionalProperties":false,"properties":{"dependencies":{"description":"The complete new list of IDs of tasks this one waits for.","items":{"type":"string"},"type":["null","array"]},"description":{"description":"New description of the task.","type":"string"},"id":{"description":"ID of the task to change.","type":"string"},"path":{"description":"New file the task is about, relative to the working directory.","type":"string"},"priority":{"description":"New priority: critical, high, medium or low.","type":"string"},"status":{"description":"New status: pending, in_progress, done or blocked.","type":"string"},"title":{"description":"New short name of the task.","type":"string"}},"required":["id"],"type":"object"}`,
		output: ``,
	},
	"delete_task": {
		params: `{"additionalProperties":false,"properties":{"id":{"description":"ID of the task to delete.","type":"string"}},"required":["id"],"type":"object"}`,
		output: ``,
	},
	"list_tasks": {
		params: `{"additionalProperties":false,"properties":{"priority":{"description":"Only list tasks with this priority.","type":"string"},"status":{"description":"Only list tasks with this status.","type":"string"}},"type":"object"}`,
		output: ``,
	},
	"next_task": {
		params: `{"properties":{},"type":"object"}`,
		output: ``,
	},
	"add_dependency": {
		params: `{"additionalProperties":false,"properties":{"dependsOnId":{"description":"ID of the task that must be done first.","type":"string"},"taskId":{"description":"ID of the task that has to wait.","type":"string"}},"required":["taskId","dependsOnId"],"type":"object"}`,
		output: ``,
	},
	"remove_dependency": {
		params: `{"additionalProperties":false,"properties":{"dependsOnId":{"description":"ID of the task it should no longer wait for.","type":"string"},"taskId":{"description":"ID of the task that waits.","type":"string"}},"required":["taskId","dependsOnId"],"type":"object"}`,
		output: ``,
	},
	"change_model": {
		params: `{"additionalProperties":false,"properties":{"model":{"description":"The model to switch to. Must be one of the available models.","type":"string"}},"required":["model"],"type":"object"}`,
		output: ``,
	},
	"revert_model": {
		params: `{"properties":{},"type":"object"}`,
		output: ``,
	},
	"search_tool": {
		params: `{"additionalProperties":false,"properties":{"query":{"description":"Search query to find tools by name or description (case-insensitive)","type":"string"}},"required":["query"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"add_tool": {
		params: `{"additionalProperties":false,"properties":{"name":{"description":"The name of the tool to activate","type":"string"}},"required":["name"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
}
