package main

// safety.go: session safety modes (API-UPSTREAM.md §3.7), the successor of the boolean
// YOLO flag: which tool calls run without asking. Permission rules (allow/ask/deny)
// always win over the mode, and a deny in the agent's YAML over everything.

import (
	"strings"
)

// The safety modes. "" is a session that never chose one: the reference's default
// (read-only tools run, others ask), with tools_approved meaning autonomous.
const (
	safetyStrict     = "strict"     // ask for every call, read-only ones too
	safetyBalanced   = "balanced"   // safe calls run, the rest ask
	safetyRestricted = "restricted" // safe calls run, the rest are denied without asking
	safetyAutonomous = "autonomous" // everything runs (the old YOLO)
)

// parseSafetyPolicy reads a client's safety_policy: the four modes, the legacy names
// (unsafe; safer, safe-auto) and "" for the default. ok is false for anything else.
func parseSafetyPolicy(v string) (string, bool) {
	switch v = strings.ToLower(strings.TrimSpace(v)); v {
	case "", safetyStrict, safetyBalanced, safetyRestricted, safetyAutonomous:
		return v, true
	case "unsafe":
		return safetyAutonomous, true
	case "safer", "safe-auto":
		return safetyBalanced, true
	}
	return "", false
}

// storedSafetyPolicy reads a stored value; one this version does not know (written by
// a newer program) fails closed to strict, as the reference normalises unknown modes.
func storedSafetyPolicy(v string) string {
	if p, ok := parseSafetyPolicy(v); ok {
		return p
	}
	return safetyStrict
}

// safetyState is a session's mode with the mode tools/toggle restores (Prior, never
// autonomous). tools_approved is stored alongside as Policy == autonomous, so old
// clients and the reference reading the file see YOLO where they expect it.
type safetyState struct {
	Policy, Prior string
}

// withToolsApproved reconciles the state with a tools_approved flag that an older
// writer (the reference, an old client's row) set on its own: on means autonomous.
func (sp safetyState) withToolsApproved(on bool) safetyState {
	switch {
	case on && sp.Policy != safetyAutonomous:
		return safetyState{Policy: safetyAutonomous, Prior: sp.Policy}
	case !on && sp.Policy == safetyAutonomous:
		return safetyState{Policy: sp.Prior}
	}
	return sp
}

// set switches to policy; going autonomous remembers the current mode, so turning
// YOLO off afterwards comes back to it.
func (sp safetyState) set(policy string) safetyState {
	if policy != safetyAutonomous {
		return safetyState{Policy: policy}
	}
	if sp.Policy == safetyAutonomous {
		return sp
	}
	return safetyState{Policy: safetyAutonomous, Prior: sp.Policy}
}

// toggled is tools/toggle: on goes autonomous remembering the mode, off restores it.
func (sp safetyState) toggled() safetyState {
	if sp.Policy == safetyAutonomous {
		return safetyState{Policy: sp.Prior}
	}
	return sp.set(safetyAutonomous)
}

// confirmationPolicy is the mode a resume confirmation switches the session to, after
// mapping the legacy values (UNCONFIRMED upstream: approve-session is YOLO, so
// autonomous; approve-safe and approve-safer name the balanced mode's old names).
// ok is false for confirmations that change no mode.
func confirmationPolicy(confirmation string) (string, bool) {
	switch confirmation {
	case "approve-autonomous", "approve-session":
		return safetyAutonomous, true
	case "approve-balanced", "approve-safe", "approve-safer":
		return safetyBalanced, true
	}
	return "", false
}

// modeDecision is what the mode says about a call no permission rule matched:
// "run", "ask" or "deny".
func modeDecision(policy string, def toolDef, args callArgs) string {
	switch policy {
	case safetyAutonomous:
		return "run"
	case safetyStrict:
		return "ask"
	case safetyBalanced:
		if safeCall(def, args) {
			return "run"
		}
		return "ask"
	case safetyRestricted:
		if safeCall(def, args) {
			return "run"
		}
		return "deny"
	}
	if def.Annotations.ReadOnlyHint {
		return "run"
	}
	return "ask"
}

// safeCall is the classifier of balanced and restricted: read-only tools, and shell
// commands on the safe list.
func safeCall(def toolDef, args callArgs) bool {
	if def.Annotations.ReadOnlyHint {
		return true
	}
	if def.Name != "shell" || def.Category != "shell" {
		return false
	}
	cmd, ok := args.vals["cmd"]
	return ok && len(cmd.forms) == 1 && safeShellCommand(cmd.forms[0])
}

// safeShellPrograms only read, whatever plain arguments they get.
var safeShellPrograms = map[string]bool{
	"ls": true, "pwd": true, "cat": true, "head": true, "tail": true, "wc": true, "grep": true,
	"echo": true, "date": true, "whoami": true, "uname": true, "which": true, "stat": true,
	"file": true, "du": true, "df": true,
}

// safeShellCommand reports whether cmd is one safe-listed program with plain
// arguments: no shell syntax at all (redirections, pipes, substitutions, globs,
// quotes, variables), no absolute path and no "..", so it can neither write nor read
// outside the working directory by name. `git status` is the one subcommand allowed.
func safeShellCommand(cmd string) bool {
	if strings.ContainsAny(cmd, ";&|<>$`\\\n\r(){}*?[]~!#'\"%=") {
		return false
	}
	words := strings.Fields(cmd)
	if len(words) == 0 {
		return false
	}
	for _, w := range words[1:] {
		if strings.HasPrefix(w, "/") || strings.Contains(w, "..") {
			return false
		}
	}
	if words[0] == "git" {
		return len(words) == 2 && words[1] == "status"
	}
	return safeShellPrograms[words[0]]
}

// safety is the record's safety state.
func (r *sessionRecord) safety() safetyState {
	return safetyState{Policy: r.SafetyPolicy, Prior: r.PriorSafetyPolicy}
}
