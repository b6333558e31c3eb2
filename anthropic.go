package main

import "errors"

// newAnthropicClient returns a streaming client for the Anthropic wire format.
func newAnthropicClient(spec modelSpec, env clientEnv) (modelClient, error) {
	return nil, errors.New("anthropic: not implemented")
}
