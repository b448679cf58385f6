package agent

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// Claude is Anthropic's Claude Code, run as `claude -p` with stream-json
// output.
type Claude struct{}

var _ Agent = Claude{}

// Name implements Agent.
func (Claude) Name() string { return "claude" }

// Title implements Agent.
func (Claude) Title() string { return "Claude Code" }

// ClaudeVersion is the Claude Code release airlock pins.
const ClaudeVersion = "2.1.330"

// DefaultVersion implements Agent.
func (Claude) DefaultVersion() string { return ClaudeVersion }

// Install implements Agent.
func (Claude) Install(version string) string {
	return fmt.Sprintf("RUN npm install -g --no-fund --no-audit @anthropic-ai/claude-code@%s && \\\n"+
		"    npm cache clean --force && \\\n"+
		"    claude --version\n", version)
}

// DefaultAllow implements Agent. Claude Code run headless with
// CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 sends its model traffic to
// ANTHROPIC_BASE_URL (airlock's API endpoint, which is not subject to the
// allowlist); telemetry (statsig) and error reporting (sentry.io) are
// switched off by that variable. What remains is api.anthropic.com, which
// WebFetch asks whether a domain is safe to fetch.
func (Claude) DefaultAllow() []string { return []string{"api.anthropic.com"} }

// ParseLine implements Agent: Claude Code's stream-json is the transcript
// package's own format.
func (Claude) ParseLine(line []byte) ([]transcript.Event, error) { return transcript.ParseLine(line) }

// SessionDir implements Agent.
func (Claude) SessionDir() string { return ".claude" }

// SessionLog implements Agent: ~/.claude/projects/<cwd with / as ->/<session>.jsonl.
func (Claude) SessionLog(workdir, sessionID string) string {
	return filepath.Join(".claude", "projects", strings.ReplaceAll(workdir, "/", "-"), sessionID+".jsonl")
}

// claudeScript is the container's entry command. The paths and claude's
// arguments arrive as positional parameters, so nothing here is ever quoted
// by us and no value can become shell syntax. Standard error is redirected
// first so that the shell's own complaints (a missing prompt file, claude
// not on PATH) land in the file airlock reads failure reasons from. exec
// hands claude's exit status straight to the container.
const claudeScript = `prompt=$1 log=$2 errlog=$3
shift 3
exec 2>"$errlog"
exec claude "$@" <"$prompt" >"$log"`

// Command implements Agent: a /bin/sh script that feeds the prompt file to
// claude on standard input and sends its standard output and error to files.
func (Claude) Command(o Options) []string {
	argv := []string{"/bin/sh", "-c", claudeScript, "airlock-agent", o.PromptPath, o.LogPath, o.StderrPath}
	return append(argv, claudeArgs(o)...)
}

// claudeArgs uses --flag=value throughout so that a value starting with a
// dash cannot be taken for another flag.
func claudeArgs(o Options) []string {
	args := []string{
		"-p",
		"--output-format=stream-json",
		"--verbose",
		// The container is the sandbox; permission prompts would only stall
		// a run nobody is watching.
		"--dangerously-skip-permissions",
	}
	args = append(args, sessionArgs(o)...)
	if o.MaxTurns > 0 {
		args = append(args, "--max-turns="+strconv.Itoa(o.MaxTurns))
	}
	return args
}

// Env implements Agent.
func (Claude) Env(Options) []string {
	return []string{
		"HOME=/home/agent",
		"SHELL=/bin/bash",
		// The sandbox has no route to the internet besides airlock's proxy:
		// updates, telemetry and error reports would only fail or leak.
		"DISABLE_AUTOUPDATER=1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"DISABLE_TELEMETRY=1",
		"DISABLE_ERROR_REPORTING=1",
		"DISABLE_BUG_COMMAND=1",
		"CLAUDE_CODE_IDE_SKIP_AUTO_INSTALL=1",
		// The interactive UI would otherwise fetch the plugin marketplace
		// from github.com at start, which the egress policy denies.
		"CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL=1",
		// Claude Code refuses --dangerously-skip-permissions as root unless
		// told it is sandboxed; it is, whatever uid the container runs as.
		"IS_SANDBOX=1",
		// Keep the Bash tool in /workspace between calls.
		"CLAUDE_BASH_MAINTAIN_PROJECT_WORKING_DIR=1",
		"ANTHROPIC_BASE_URL=" + APIBaseURL,
	}
}

type credential struct {
	name   string
	secret bool
}

// claudeCredentials lists what Claude Code reads to authenticate and to pick
// a provider. The flags and the region/project names select an endpoint and
// are not secret. ANTHROPIC_BASE_URL is deliberately absent: airlock sets it
// itself to route the model API through its proxy.
var claudeCredentials = []credential{
	{"ANTHROPIC_API_KEY", true},
	{"CLAUDE_CODE_OAUTH_TOKEN", true},
	{"ANTHROPIC_AUTH_TOKEN", true},
	{"CLAUDE_CODE_USE_BEDROCK", false},
	{"AWS_BEARER_TOKEN_BEDROCK", true},
	{"AWS_ACCESS_KEY_ID", true},
	{"AWS_SECRET_ACCESS_KEY", true},
	{"AWS_SESSION_TOKEN", true},
	{"AWS_REGION", false},
	{"CLAUDE_CODE_USE_VERTEX", false},
	{"ANTHROPIC_VERTEX_PROJECT_ID", false},
	{"CLOUD_ML_REGION", false},
}

// CredentialNames implements Agent.
func (Claude) CredentialNames() []string {
	names := make([]string, len(claudeCredentials))
	for i, c := range claudeCredentials {
		names[i] = c.name
	}
	return names
}

// IsSecret implements Agent. Names that are not credentials are not secret.
func (Claude) IsSecret(name string) bool {
	for _, c := range claudeCredentials {
		if c.name == name {
			return c.secret
		}
	}
	return false
}

// HasCredentials implements Agent, following Claude Code's own order: a
// provider flag wins over the Anthropic API credentials.
func (Claude) HasCredentials(lookup func(string) (string, bool)) bool {
	set := func(name string) bool {
		v, ok := lookup(name)
		return ok && strings.TrimSpace(v) != ""
	}
	switch {
	// Bedrock's and Vertex's credentials are the host's (profiles, SSO,
	// ADC files: internal/provider finds them); what lookup must yield is
	// what Claude Code needs to reach them.
	case truthy(lookup, "CLAUDE_CODE_USE_BEDROCK"):
		return set("AWS_REGION") || set("AWS_DEFAULT_REGION")
	case truthy(lookup, "CLAUDE_CODE_USE_VERTEX"):
		return set("ANTHROPIC_VERTEX_PROJECT_ID") && set("CLOUD_ML_REGION")
	default:
		return set("ANTHROPIC_API_KEY") || set("CLAUDE_CODE_OAUTH_TOKEN") || set("ANTHROPIC_AUTH_TOKEN")
	}
}

// truthy mirrors how Claude Code reads its boolean variables.
func truthy(lookup func(string) (string, bool), name string) bool {
	v, _ := lookup(name)
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// sessionArgs are the flags headless and interactive runs share: which
// conversation (new with this id, or resumed) and which model.
func sessionArgs(o Options) []string {
	var args []string
	switch {
	case o.SessionID != "" && o.Resume:
		args = append(args, "--resume="+o.SessionID)
	case o.SessionID != "":
		args = append(args, "--session-id="+o.SessionID)
	}
	if o.Model != "" {
		args = append(args, "--model="+o.Model)
	}
	return args
}
