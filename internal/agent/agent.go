// Package agent knows what it takes to run a coding agent headless inside an
// airlock container: how its image installs it, its command lines, its
// environment and first-run configuration, its credentials and the model
// API the egress proxy forwards them to, and how to read its transcript.
// Everything above this package sees agents only through Agent; adding an
// agent is one file here and one line in All.
package agent

import (
	"crypto/rand"
	"fmt"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// Options are the per-run settings an agent's command is built from. Paths
// are inside the container.
type Options struct {
	Model      string // empty: the agent's default
	MaxTurns   int    // 0: no limit
	SessionID  string // UUID naming the agent's session; empty: the agent picks one
	Resume     bool   // continue the session SessionID (its state is in the agent's home)
	PromptPath string // file holding the prompt
	LogPath    string // the agent's machine-readable transcript (standard output)
	StderrPath string // the agent's standard error
}

// Agent is a coding agent airlock can run.
type Agent interface {
	// Name is the agent's short name, as users write it ("codex").
	Name() string
	// Title is the agent's name for people ("Codex CLI").
	Title() string
	// DefaultVersion is the release installed unless configured otherwise:
	// pinned, so every run of a project sees the same agent.
	DefaultVersion() string
	// Install is the Dockerfile text, run as root on top of airlock's base
	// image (Debian, Node.js and npm, git, Python 3, the CA bundle), that
	// installs the given release and checks it runs.
	Install(version string) string

	// Command is the argv of a headless run. It feeds the prompt file to
	// the agent, sends its machine-readable output to LogPath and its
	// standard error to StderrPath, and never carries the prompt's text or
	// a secret.
	Command(o Options) []string
	// Interactive is the argv of the agent's own terminal UI, for a person
	// to attach to (run in tmux).
	Interactive(o Options) []string
	// Env is the agent's non-secret environment, as NAME=value, including
	// the variable that points it at the in-sandbox model API endpoint.
	Env(o Options) []string
	// Seed writes the agent's first-run configuration into home (the
	// agent's home directory on the host), owned by uid:gid, so that it
	// starts without asking anything and talks only to the proxy. Files
	// already there (a resumed session's) are merged into.
	Seed(home string, o SeedOptions, uid, gid int) error
	// SessionDir is where, relative to its home, the agent keeps the
	// session state a resumed run needs; "" if it keeps none.
	SessionDir() string
	// SessionLog is the transcript of an interactive session, relative to
	// the agent's home; "" when the agent writes none that ParseLine reads.
	SessionLog(workdir, sessionID string) string

	// CredentialNames are the environment variables that carry the agent's
	// credentials or choose its model provider.
	CredentialNames() []string
	// IsSecret reports whether the named credential must never be shown.
	IsSecret(name string) bool
	// HasCredentials reports whether lookup yields enough to reach a model.
	HasCredentials(lookup func(string) (string, bool)) bool
	// API is how the proxy forwards the agent's model traffic with the
	// credential that lookup yields.
	API(lookup func(string) (string, bool)) (APIAuth, error)
	// DefaultAllow are the hosts the egress allowlist lets through for
	// this agent unless configured otherwise.
	DefaultAllow() []string

	// ParseLine turns one line of the agent's transcript into normalized
	// events. Only a line that is not a JSON object is an error
	// (transcript.ErrNotJSON); anything unknown becomes KindUnknown.
	ParseLine(line []byte) ([]transcript.Event, error)
}

// APIBaseURL is the model API endpoint as the agent sees it inside the
// sandbox (sandbox.AgentAPIAddr): the proxy forwards what arrives there,
// with the real credential, to the upstream.
const APIBaseURL = "http://127.0.0.1:3129"

// NewSessionID returns a random (version 4) UUID.
func NewSessionID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails: crypto/rand panics rather than return an error
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
