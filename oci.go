package main

// oci.go: pulls agent definitions from OCI registries (spec/OCI.md).
