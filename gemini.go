package main

import "errors"

// newGeminiClient returns a streaming client for the Gemini wire format.
func newGeminiClient(spec modelSpec, env clientEnv) (modelClient, error) {
	return nil, errors.New("gemini: not implemented")
}
