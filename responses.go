package main

import "errors"

// newResponsesClient returns a streaming client for the Responses wire format.
func newResponsesClient(spec modelSpec, env clientEnv) (modelClient, error) {
	return nil, errors.New("responses: not implemented")
}
