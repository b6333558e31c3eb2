package main

// tools.go: the built-in toolsets (CONFIG.md §6.3, spec/builtin-tools.json).

import "errors"

// newBuiltinToolset returns the built-in toolset for ts.Type.
func newBuiltinToolset(ts *toolsetConfig, opts toolsetOptions) (toolset, error) {
	return nil, errors.New("tools: not implemented")
}
