// Command agentd serves AI agents defined in YAML over HTTP with Server-Sent Events,
// compatible with `docker agent serve api`.
package main

import (
	"errors"
	"fmt"
	"os"
)

// Every input has a limit; they are all here so an auditor can read them in one place.
const (
	maxSSELine = 8 << 20 // longest provider SSE line accepted
)

// Sentinel errors; handlers map them to HTTP statuses in one place.
var (
	errNotFound = errors.New("not found")
	errConflict = errors.New("conflict")
	errInvalid  = errors.New("invalid")
)

func main() {
	fmt.Fprintln(os.Stderr, "agentd: not yet")
	os.Exit(2)
}
