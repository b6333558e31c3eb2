package main

// yaml.go parses the YAML subset used by agent configs (spec/YAML.md §4).

import (
	"errors"
	"fmt"
)

type yamlKind int

const (
	yamlScalar yamlKind = iota
	yamlMap
	yamlSeq
)

// yamlNode is one node of a parsed document; every node knows its position.
type yamlNode struct {
	Kind      yamlKind
	Line, Col int // 1-based

	// Scalars: Text is the value after unquoting/folding; Tag is the resolved YAML 1.2
	// core-schema type: "null", "bool", "int", "float" or "str" (quoted and block
	// scalars are always "str"); Style is "plain", "single", "double", "literal" or "folded".
	Text  string
	Tag   string
	Style string

	// Maps: Keys[i] (scalar nodes, with their own positions) maps to Values[i], in
	// document order. Sequences: Values only.
	Keys   []*yamlNode
	Values []*yamlNode
}

// yamlError is a positioned parse error, printed as file:line:col: msg.
type yamlError struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *yamlError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// parseYAML parses one document. An empty document returns (nil, nil). Errors are *yamlError.
func parseYAML(file string, src []byte) (*yamlNode, error) {
	return nil, errors.New("yaml: not implemented")
}

// yamlJSON renders a node as JSON in document order: ints print as integers, floats
// with a '.', 'e' or 'E' so number kinds survive; a nil node is null.
func yamlJSON(n *yamlNode) ([]byte, error) {
	return nil, errors.New("yaml: not implemented")
}
