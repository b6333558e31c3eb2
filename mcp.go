package main

// mcp.go: Model Context Protocol client toolsets (stdio, streamable HTTP, HTTP+SSE).

import "errors"

// newMCPToolset returns a toolset backed by the MCP server ts describes.
func newMCPToolset(ts *toolsetConfig, opts toolsetOptions) (toolset, error) {
	return nil, errors.New("mcp: not implemented")
}
