// Package agent knows what it takes to run a coding agent headless inside an
// airlock container: its command line, its environment and its credentials.
package agent

import (
	"crypto/rand"
	"fmt"
)

// Options are the per-run settings an agent's command is built from. Paths
// are inside the container.
type Options struct {
	Model      string // empty: the agent's default
	MaxTurns   int    // 0: no limit
	SessionID  string // UUID naming the agent's session; empty: the agent picks one
	Resume     bool   // continue the session SessionID (its transcript is in the agent's home)
	PromptPath string // file holding the prompt, fed on standard input
	LogPath    string // the agent's machine-readable transcript (standard output)
	StderrPath string // the agent's standard error
}

// Agent is a coding agent airlock can run.
type Agent interface {
	// Name is the agent's short name, as users write it.
	Name() string
	// Command is the argv run in the container. It never carries the prompt
	// or a secret.
	Command(o Options) []string
	// Env is the agent's non-secret environment, as NAME=value.
	Env(o Options) []string
	// CredentialNames are the environment variables that carry credentials
	// or choose the model provider.
	CredentialNames() []string
	// IsSecret reports whether the named credential must never be shown.
	IsSecret(name string) bool
	// HasCredentials reports whether lookup yields enough to reach a model.
	HasCredentials(lookup func(string) (string, bool)) bool
}

// NewSessionID returns a random (version 4) UUID.
func NewSessionID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand panics rather than return an error
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
