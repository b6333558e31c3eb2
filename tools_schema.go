package main

// tools_schema.go: the JSON schemas of the built-in tools, identical to the reference's
// (spec/builtin-tools.json) so models and clients see the same parameters. That dump
// lost every key named "description" or "title", including the properties of those
// names (create_todo.description, create_task.title, user_prompt.title, …); they are
// restored here as strings. TestToolsSchemas strips the same keys before comparing.

// toolsSchema is the parameter and output schema of one built-in tool.
type toolsSchema struct{ params, output string }

// toolsSchemas maps a built-in tool name to its schemas.
var toolsSchemas = map[string]toolsSchema{
	"think": {
		params: `{"additionalProperties":false,"properties":{"thought":{"type":"string"}},"required":["thought"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"create_todo": {
		params: `{"additionalProperties":false,"properties":{"description":{"type":"string"}},"required":["description"],"type":"object"}`,
		output: `{"type":"object","properties":{"created":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false},"all_todos":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"reminder":{"type":"string"}},"required":["created","all_todos"],"additionalProperties":false}`,
	},
	"create_todos": {
		params: `{"additionalProperties":false,"properties":{"descriptions":{"items":{"type":"string"},"type":["null","array"]}},"required":["descriptions"],"type":"object"}`,
		output: `{"type":"object","properties":{"created":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"all_todos":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"reminder":{"type":"string"}},"required":["created","all_todos"],"additionalProperties":false}`,
	},
	"update_todos": {
		params: `{"additionalProperties":false,"properties":{"updates":{"items":{"additionalProperties":false,"properties":{"id":{"type":"string"},"status":{"type":"string"}},"required":["id","status"],"type":"object"},"type":["null","array"]}},"required":["updates"],"type":"object"}`,
		output: `{"type":"object","properties":{"updated":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"}},"required":["id","status"],"additionalProperties":false}},"not_found":{"type":["null","array"],"items":{"type":"string"}},"all_todos":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"reminder":{"type":"string"}},"required":["all_todos"],"additionalProperties":false}`,
	},
	"list_todos": {
		params: `{"properties":{},"type":"object"}`,
		output: `{"type":"object","properties":{"todos":{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"status":{"type":"string"},"description":{"type":"string"}},"required":["id","description","status"],"additionalProperties":false}},"reminder":{"type":"string"}},"required":["todos"],"additionalProperties":false}`,
	},
	"add_memory": {
		params: `{"additionalProperties":false,"properties":{"category":{"type":"string"},"memory":{"type":"string"}},"required":["memory"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"get_memories": {
		params: `{"properties":{},"type":"object"}`,
		output: `{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"created_at":{"type":"string"},"memory":{"type":"string"},"category":{"type":"string"}},"required":["id","created_at","memory"],"additionalProperties":false}}`,
	},
	"delete_memory": {
		params: `{"additionalProperties":false,"properties":{"id":{"type":"string"}},"required":["id"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"search_memories": {
		params: `{"additionalProperties":false,"properties":{"category":{"type":"string"},"query":{"type":"string"}},"type":"object"}`,
		output: `{"type":["null","array"],"items":{"type":"object","properties":{"id":{"type":"string"},"created_at":{"type":"string"},"memory":{"type":"string"},"category":{"type":"string"}},"required":["id","created_at","memory"],"additionalProperties":false}}`,
	},
	"update_memory": {
		params: `{"additionalProperties":false,"properties":{"category":{"type":"string"},"id":{"type":"string"},"memory":{"type":"string"}},"required":["id","memory"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"directory_tree": {
		params: `{"additionalProperties":false,"properties":{"path":{"type":"string"}},"required":["path"],"type":"object"}`,
		output: `{"additionalProperties":false,"properties":{"children":{"items":{"$ref":"#"},"type":"array"},"name":{"type":"string"},"type":{"type":"string"}},"required":["name","type"],"type":"object"}`,
	},
	"edit_file": {
		params: `{"additionalProperties":false,"properties":{"edits":{"items":{"additionalProperties":false,"properties":{"newText":{"type":"string"},"oldText":{"type":"string"}},"required":["oldText","newText"],"type":"object"},"type":["null","array"]},"path":{"type":"string"}},"required":["path","edits"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"list_directory": {
		params: `{"additionalProperties":false,"properties":{"path":{"type":"string"}},"required":["path"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"read_file": {
		params: `{"additionalProperties":false,"properties":{"path":{"type":"string"}},"required":["path"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"read_multiple_files": {
		params: `{"additionalProperties":false,"properties":{"json":{"type":"boolean"},"paths":{"items":{"type":"string"},"type":["null","array"]}},"required":["paths"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"search_files_content": {
		params: `{"additionalProperties":false,"properties":{"excludePatterns":{"items":{"type":"string"},"type":["null","array"]},"is_regex":{"type":"boolean"},"path":{"type":"string"},"query":{"type":"string"}},"required":["path","query"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"write_file": {
		params: `{"additionalProperties":false,"properties":{"content":{"type":"string"},"path":{"type":"string"}},"required":["path","content"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"create_directory": {
		params: `{"additionalProperties":false,"properties":{"paths":{"items":{"type":"string"},"type":["null","array"]}},"required":["paths"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"remove_directory": {
		params: `{"additionalProperties":false,"properties":{"paths":{"items":{"type":"string"},"type":["null","array"]}},"required":["paths"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"shell": {
		params: `{"additionalProperties":false,"properties":{"cmd":{"type":"string"},"cwd":{"type":"string"},"timeout":{"type":"integer"}},"required":["cmd"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"run_background_job": {
		params: `{"additionalProperties":false,"properties":{"cmd":{"type":"string"},"cwd":{"type":"string"}},"required":["cmd"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"list_background_jobs": {
		params: `{"properties":{},"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"view_background_job": {
		params: `{"additionalProperties":false,"properties":{"job_id":{"type":"string"}},"required":["job_id"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"stop_background_job": {
		params: `{"additionalProperties":false,"properties":{"job_id":{"type":"string"}},"required":["job_id"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"fetch": {
		params: `{"properties":{"format":{"enum":["text","markdown","html"],"type":"string"},"timeout":{"maximum":300,"minimum":1,"type":"integer"},"urls":{"items":{"type":"string"},"minItems":1,"type":"array"}},"required":["urls","format"],"type":"object"}`,
		output: `{"type":"string"}`,
	},
	"user_prompt": {
		params: `{"additionalProperties":false,"properties":{"message":{"type":"string"},"schema":{"additionalProperties":true,"type":"object"},"title":{"type":"string"}},"required":["message"],"type":"object"}`,
		output: `{"type":"object","properties":{"action":{"type":"string"},"content":{"type":"object","additionalProperties":true}},"required":["action"],"additionalProperties":false}`,
	},
	"create_task": {
		params: `{"additionalProperties":false,"properties":{"dependencies":{"items":{"type":"string"},"type":["null","array"]},"description":{"type":"string"},"path":{"type":"string"},"priority":{"type":"string"},"title":{"type":"string"}},"required":["title"],"type":"object"}`,
		output: ``,
	},
	"get_task": {
		params: `{"additionalProperties":false,"properties":{"id":{"type":"string"}},"required":["id"],"type":"object"}`,
		output: ``,
	},
	"update_task": {
		params: `{"additionalProperties":false,"properties":{"dependencies":{"items":{"type":"string"},"type":["null","array"]},"description":{"type":"string"},"id":{"type":"string"},"path":{"type":"string"},"priority":{"type":"string"},"status":{"type":"string"},"title":{"type":"string"}},"required":["id"],"type":"object"}`,
		output: ``,
	},
	"delete_task": {
		params: `{"additionalProperties":false,"properties":{"id":{"type":"string"}},"required":["id"],"type":"object"}`,
		output: ``,
	},
	"list_tasks": {
		params: `{"additionalProperties":false,"properties":{"priority":{"type":"string"},"status":{"type":"string"}},"type":"object"}`,
		output: ``,
	},
	"next_task": {
		params: `{"properties":{},"type":"object"}`,
		output: ``,
	},
	"add_dependency": {
		params: `{"additionalProperties":false,"properties":{"dependsOnId":{"type":"string"},"taskId":{"type":"string"}},"required":["taskId","dependsOnId"],"type":"object"}`,
		output: ``,
	},
	"remove_dependency": {
		params: `{"additionalProperties":false,"properties":{"dependsOnId":{"type":"string"},"taskId":{"type":"string"}},"required":["taskId","dependsOnId"],"type":"object"}`,
		output: ``,
	},
}
