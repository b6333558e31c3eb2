package main

// models.go: provider selection, the OpenAI-compatible chat client, retries and fallbacks.

import (
	"context"
	"errors"
)

// newModelClient returns the client for spec's API family.
func newModelClient(spec modelSpec, env clientEnv) (modelClient, error) {
	return nil, errors.New("models: not implemented")
}

// modelChain is an agent's model with its fallbacks: retries, backoff and fallback
// order as PROVIDERS.md §5 describes.
type modelChain struct {
	models []modelClient
}

// fallbackNotice describes a switch to the next model (the model_fallback event).
type fallbackNotice struct {
	FailedModel, FallbackModel, Reason string
	Attempt, MaxAttempts               int
}

// newModelChain builds the chain: primary first, then fallbacks in order.
func newModelChain(primary modelSpec, fallbacks []modelSpec, fb *fallbackConfig, env clientEnv) (*modelChain, error) {
	return nil, errors.New("models: not implemented")
}

// stream runs req on the first model that works, retrying and falling back; it
// returns the spec that answered. onFallback may be nil.
func (c *modelChain) stream(ctx context.Context, req *modelRequest, emit func(modelEvent), onFallback func(fallbackNotice)) (modelSpec, error) {
	return modelSpec{}, errors.New("models: not implemented")
}
