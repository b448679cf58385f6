package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// Codex is OpenAI's Codex CLI, run as `codex exec --json`. Its npm package
// wraps a static binary, so it runs on the base image's Node.js. It speaks
// only the OpenAI Responses API (POST {base_url}/responses, streamed), with
// the key from OPENAI_API_KEY as a bearer token; it does not read
// OPENAI_BASE_URL, so Seed points it at airlock's endpoint with a model
// provider of its own in ~/.codex/config.toml.
type Codex struct{}

var _ Agent = Codex{}

// CodexVersion is the Codex CLI release airlock pins (scripts/setup.sh
// reads it to install the same release on the host for the tests).
const CodexVersion = "0.171.0"

// CodexModel is the model Seed names when none is asked for. Codex's own
// default (gpt-6.2-sol in 0.171.0) has no published price, so a budget
// would price it at the most expensive OpenAI model's rates; this one is in
// the price table and in Codex's model catalogue (its tools and patch
// format).
const CodexModel = "gpt-5.5"

// Name implements Agent.
func (Codex) Name() string { return "codex" }

// Title implements Agent.
func (Codex) Title() string { return "Codex CLI" }

// DefaultVersion implements Agent.
func (Codex) DefaultVersion() string { return CodexVersion }

// Install implements Agent.
func (Codex) Install(version string) string {
	return fmt.Sprintf("RUN npm install -g --no-fund --no-audit @openai/codex@%s && \\\n"+
		"    npm cache clean --force && \\\n"+
		"    codex --version\n", version)
}

// codexScript is the container's entry command, as Claude's: paths and
// arguments arrive as positional parameters, never quoted by us; standard
// error goes to its file first; the prompt is codex's standard input (the
// "-" argument), never its command line.
const codexScript = `prompt=$1 log=$2 errlog=$3
shift 3
exec 2>"$errlog"
exec codex "$@" <"$prompt" >"$log"`

// Command implements Agent: `codex exec --json` with the prompt file on
// standard input, or `codex exec resume SESSION` to continue a session.
func (Codex) Command(o Options) []string {
	argv := []string{"/bin/sh", "-c", codexScript, "airlock-agent", o.PromptPath, o.LogPath, o.StderrPath}
	args := []string{"exec"}
	if o.Resume {
		args = append(args, "resume")
	}
	args = append(args,
		"--json",
		// The container is the sandbox: Codex's own (Landlock, seccomp)
		// would only stop the agent from working, and approvals would stall
		// a run nobody is watching.
		"--dangerously-bypass-approvals-and-sandbox",
		// /workspace is a copy airlock made; whether Codex deems it a
		// repository must not decide whether the run starts.
		"--skip-git-repo-check",
	)
	if o.Model != "" {
		args = append(args, "--model="+o.Model)
	}
	if o.Resume {
		// The session id airlock names a run with is not Codex's (Codex
		// picks its own thread id), and the restored home holds the one
		// session: the latest.
		return append(append(argv, args...), "--last", "-")
	}
	// MaxTurns has no Codex flag: the proxy counts and refuses turns.
	return append(append(argv, args...), "-")
}

// Interactive implements Agent: Codex's terminal UI with the same model
// and sandbox choices as a headless run.
func (Codex) Interactive(o Options) []string {
	argv := []string{"codex"}
	if o.Resume {
		argv = append(argv, "resume")
	}
	argv = append(argv, "--dangerously-bypass-approvals-and-sandbox")
	if o.Model != "" {
		argv = append(argv, "--model="+o.Model)
	}
	if o.Resume {
		return append(argv, "--last")
	}
	return argv
}

// Env implements Agent. Codex takes its endpoint from config.toml (Seed),
// not from the environment.
func (Codex) Env(Options) []string {
	return []string{
		"HOME=/home/agent",
		"SHELL=/bin/bash",
		"CODEX_HOME=/home/agent/.codex",
	}
}

// codexConfig is ~/.codex/config.toml: a model provider that is airlock's
// endpoint, and nothing that would reach past it. plugins fetches a
// marketplace from github.com; the update checks and analytics call home.
// The workdir is trusted and the notices are marked seen so that the
// terminal UI (airlock shell) opens at its prompt; the keys are those
// Codex 0.171.0's UI wrote once its dialogs were answered.
const codexConfig = `# Written by airlock for every run: Codex reaches the model API only
# through airlock's egress proxy, which holds the real key.
model = %s
model_provider = "airlock"
check_for_update_on_startup = false

[model_providers.airlock]
name = "OpenAI (through airlock)"
base_url = %s
env_key = "OPENAI_API_KEY"
wire_api = "responses"

[features]
plugins = false
remote_plugin = false
# Codex's terminal UI would otherwise first install a background app
# server under ~/.codex/packages and start it, with an updater beside it:
# 10 to over 60 seconds in which the UI shows its prompt but holds what is
# typed. A sandbox lives for one run; the UI's own server is enough.
daemon_auto_start = false
in_app_updates = false

[analytics]
enabled = false

[projects.%s]
trust_level = "trusted"

# The terminal UI's first-run notices, as it records them once seen: the
# screen reader probe, and the offer to move from gpt-5.5 to a newer model
# (which would leave the priced one).
[tui]
screen_reader_detection_done = true

[notice.model_migrations]
"gpt-5.5" = "gpt-6-sol"
`

// Seed implements Agent: it writes ~/.codex/config.toml, replacing what is
// there (a resumed session's home is the agent's to write: its copy of the
// file is not trusted, and airlock's endpoint and switches must hold). The
// directory is opened with os.Root, so a link the agent planted cannot
// carry the write outside home.
func (Codex) Seed(home string, o SeedOptions, uid, gid int) error {
	model := o.Model
	if model == "" {
		model = CodexModel
	}
	workdir := o.Workdir
	if workdir == "" {
		workdir = "/workspace"
	}
	cfg := fmt.Sprintf(codexConfig, tomlString(model), tomlString(APIBaseURL), tomlString(workdir))
	if err := writeHomeFile(home, filepath.Join(".codex", "config.toml"), []byte(cfg), uid, gid); err != nil {
		return fmt.Errorf("pre-seed Codex's configuration: %w", err)
	}
	return nil
}

// tomlString quotes s as a TOML basic string: quotes and backslashes
// escaped, control characters as \uXXXX.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// writeHomeFile writes rel under home (making its directory), owned by
// uid:gid, through a temporary file renamed into place: the rename
// replaces whatever the agent left at rel, a link included, and never
// writes through it.
func writeHomeFile(home, rel string, data []byte, uid, gid int) error {
	root, err := os.OpenRoot(home)
	if err != nil {
		return err
	}
	defer root.Close()
	dir := filepath.Dir(rel)
	if err := root.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := root.Lchown(dir, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		return err
	}
	tmp := filepath.Join(dir, ".airlock-"+filepath.Base(rel)+".tmp")
	_ = root.Remove(tmp)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if err := errors.Join(werr, f.Close()); err != nil {
		root.Remove(tmp)
		return err
	}
	if err := root.Lchown(tmp, uid, gid); err != nil && !errors.Is(err, os.ErrPermission) {
		root.Remove(tmp)
		return err
	}
	if err := root.Rename(tmp, rel); err != nil {
		root.Remove(tmp)
		return err
	}
	return nil
}

// SessionDir implements Agent: Codex keeps each session as a rollout file
// under ~/.codex/sessions/YYYY/MM/DD/. That directory alone is enough to
// continue: in a fresh ~/.codex holding only it (and the config Seed
// writes), `codex exec resume --last` picks the session up (checked with
// 0.171.0).
func (Codex) SessionDir() string { return ".codex/sessions" }

// SessionLog implements Agent. Codex's rollout files are its own format,
// not the `exec --json` events ParseLine reads, and are named by date and
// by a thread id Codex picks, not airlock's session id: there is no one
// file to name, so resuming a Codex run needs airlock to keep SessionDir
// whole (and Command's Resume, which continues the latest session).
func (Codex) SessionLog(workdir, sessionID string) string { return "" }

// CredentialNames implements Agent: the API key only. A ChatGPT login
// (auth.json) signs in with tokens Codex refreshes itself, which a proxy
// cannot hold back.
func (Codex) CredentialNames() []string { return []string{"OPENAI_API_KEY"} }

// IsSecret implements Agent.
func (Codex) IsSecret(name string) bool { return name == "OPENAI_API_KEY" }

// HasCredentials implements Agent.
func (Codex) HasCredentials(lookup func(string) (string, bool)) bool {
	v, ok := lookup("OPENAI_API_KEY")
	return ok && strings.TrimSpace(v) != ""
}

// PlaceholderOpenAIKey is the key Codex sees: shaped like a project key,
// never valid.
const PlaceholderOpenAIKey = "sk-proj-airlock-placeholder-injected-by-the-egress-proxy"

// API implements Agent: the key goes out as a bearer token; Codex posts to
// {base_url}/responses, and to /responses/compact when it compacts a long
// conversation on the server.
func (Codex) API(lookup func(string) (string, bool)) (APIAuth, error) {
	v, _ := lookup("OPENAI_API_KEY")
	key := strings.TrimSpace(v)
	if key == "" {
		return APIAuth{}, errors.New("no model credentials for Codex: export OPENAI_API_KEY, or store it with `airlock credentials set`")
	}
	return APIAuth{
		Headers:    map[string]string{"Authorization": "Bearer " + key},
		Strip:      []string{"Authorization", "X-Api-Key", "OpenAI-Organization", "OpenAI-Project", "ChatGPT-Account-Id"},
		Env:        []string{"OPENAI_API_KEY=" + PlaceholderOpenAIKey},
		Secret:     key,
		Upstream:   "https://api.openai.com/v1",
		GatewayEnv: "OPENAI_BASE_URL",
		Routes: []Route{
			{Method: "POST", Path: "/responses", Metered: true},
			{Method: "POST", Path: "/responses/compact", Metered: true},
		},
		Usage: "openai-responses",
	}, nil
}

// DefaultAllow implements Agent: none. With plugins, analytics and update
// checks off, Codex's only traffic is the model API, which goes to
// airlock's endpoint, not through the allowlist. Allowing api.openai.com
// directly would serve nothing but a way out: an agent holding someone
// else's key (from a prompt injection) could upload the repository to
// that account's files.
func (Codex) DefaultAllow() []string { return nil }

// ParseLine implements Agent.
func (Codex) ParseLine(line []byte) ([]transcript.Event, error) { return ParseCodexLine(line) }
