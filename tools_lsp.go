package main

import "errors"

// newLSPToolset is not written yet: lsp toolsets are still skipped with a warning.
func newLSPToolset(cfgs []*toolsetConfig, opts toolsetOptions) (toolset, error) {
	return nil, errors.New("unknown toolset type: lsp")
}
