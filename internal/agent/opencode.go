package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// OpencodeVersion is the opencode release (npm opencode-ai) airlock pins;
// scripts/setup.sh installs the same on the host for the tests that drive
// the CLI there.
const OpencodeVersion = "1.18.33"

// opencode's `run --format json` prints one JSON object per line:
//
//	{"type":"step_start","sessionID":…,"part":{…}}     a model call begins
//	{"type":"text","sessionID":…,"part":{"text":…}}     the model's text, once complete
//	{"type":"reasoning",…,"part":{"text":…}}            its reasoning (with --thinking)
//	{"type":"tool_use",…,"part":{"tool":…,"callID":…,"state":{"status":"completed"|"error",
//	  "input":{…},"output":…,"error":…}}}               a tool call and its outcome, in one line
//	{"type":"step_finish",…,"part":{"reason":"tool-calls"|"stop"|…,
//	  "tokens":{"input":…,"output":…,"reasoning":…,"cache":{"read":…,"write":…}},"cost":…}}
//	{"type":"error",…,"error":{"name":…,"data":{"message":…}}}   the run failed (exit 1)
//
// There is no init or result line: the session id is on every line, and the
// run ends with the step that finishes for any reason but "tool-calls" (or
// with an error line). tokens.input excludes the cached prompt tokens.

// opencodeLine is the part of a line that is read.
type opencodeLine struct {
	Type      string          `json:"type"`
	SessionID string          `json:"sessionID"`
	Part      json.RawMessage `json:"part"`
	Error     json.RawMessage `json:"error"`
}

type opencodePart struct {
	Text   string `json:"text"`
	Tool   string `json:"tool"`
	CallID string `json:"callID"`
	State  struct {
		Status string          `json:"status"`
		Input  json.RawMessage `json:"input"`
		Output string          `json:"output"`
		Error  string          `json:"error"`
	} `json:"state"`
	Reason string `json:"reason"`
	Tokens *struct {
		Input     int `json:"input"`
		Output    int `json:"output"`
		Reasoning int `json:"reasoning"`
		Cache     struct {
			Read  int `json:"read"`
			Write int `json:"write"`
		} `json:"cache"`
	} `json:"tokens"`
}

type opencodeError struct {
	Name string `json:"name"`
	Data struct {
		Message string `json:"message"`
	} `json:"data"`
}

// parseOpencodeLine turns one line of opencode's JSON output into events.
// It fails only for a line that is not a JSON object; a line of unknown
// type, or whose fields have unexpected types, is KindUnknown.
func parseOpencodeLine(line []byte) ([]transcript.Event, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, transcript.ErrNotJSON
	}
	base := transcript.Event{Kind: transcript.KindUnknown, Raw: json.RawMessage(bytes.Clone(line))}
	var l opencodeLine
	if err := json.Unmarshal(line, &l); err != nil {
		if !json.Valid(line) {
			return nil, transcript.ErrNotJSON
		}
		return []transcript.Event{base}, nil
	}
	base.SessionID = l.SessionID
	var p opencodePart
	if len(l.Part) > 0 && json.Unmarshal(l.Part, &p) != nil {
		return []transcript.Event{base}, nil
	}
	switch l.Type {
	case "step_start":
		base.Kind, base.Subtype = transcript.KindSystem, "step_start"
	case "text":
		base.Kind, base.Text = transcript.KindText, p.Text
	case "reasoning":
		base.Kind, base.Text = transcript.KindThinking, p.Text
	case "tool_use":
		use := base
		use.Kind, use.Tool, use.ToolUseID, use.ToolInput = transcript.KindToolUse, p.Tool, p.CallID, p.State.Input
		switch p.State.Status {
		case "completed", "error":
			res := base
			res.Kind, res.ToolUseID = transcript.KindToolResult, p.CallID
			res.ToolResult, res.IsError = p.State.Output, p.State.Status == "error"
			if res.IsError {
				res.ToolResult = p.State.Error
			}
			return []transcript.Event{use, res}, nil
		}
		return []transcript.Event{use}, nil
	case "step_finish":
		base.Kind, base.Subtype = transcript.KindSystem, "step_finish"
		if t := p.Tokens; t != nil {
			// The model call's usage. Reasoning tokens are reported
			// apart and left out; opencode's own cost is not used (it
			// prices only models it knows from models.dev, which airlock
			// keeps it from fetching): the proxy meters the cost.
			base.Usage = &transcript.Usage{Input: t.Input, Output: t.Output, CacheRead: t.Cache.Read, CacheWrite: t.Cache.Write}
		}
		if p.Reason == "tool-calls" || p.Reason == "" {
			return []transcript.Event{base}, nil
		}
		// The model stopped: opencode's loop ends here.
		end := base
		end.Usage = nil // a result's usage would be the run's total
		end.Kind, end.Subtype = transcript.KindResult, "success"
		if p.Reason != "stop" {
			end.Subtype, end.IsError = p.Reason, true
		}
		return []transcript.Event{base, end}, nil
	case "error":
		var e opencodeError
		_ = json.Unmarshal(l.Error, &e) // a field of the wrong type only loses it
		base.Kind, base.Subtype, base.IsError = transcript.KindResult, "error", true
		base.Text = e.Data.Message
		if base.Text == "" {
			base.Text = e.Name
		}
	}
	return []transcript.Event{base}, nil
}

// Opencode is opencode (the npm package opencode-ai, a compiled Bun binary
// in a per-platform optional dependency), run as `opencode run --format
// json` against OpenAI's Chat Completions API through an OpenAI-compatible
// provider of airlock's making.
type Opencode struct{}

var _ Agent = Opencode{}

// OpencodeModel is the model asked for unless the run names one.
const OpencodeModel = "gpt-5.4"

// opencodeProvider is the id of the provider airlock configures; models
// are named "airlock/<model>".
const opencodeProvider = "airlock"

// Name implements Agent.
func (Opencode) Name() string { return "opencode" }

// Title implements Agent.
func (Opencode) Title() string { return "opencode" }

// DefaultVersion implements Agent.
func (Opencode) DefaultVersion() string { return OpencodeVersion }

// Install implements Agent. opencode-ai's postinstall copies the binary of
// the platform package that fits the CPU (AVX2 or baseline) into its own
// bin; the platform packages it leaves behind (two of them, ~170 MB each)
// are then removed. opencodeConfigHome is made read-only: opencode installs
// @opencode-ai/plugin from npm into every config directory it may write
// to, at every start (registry.npmjs.org, which the proxy denies, ~20 s).
func (Opencode) Install(version string) string {
	return fmt.Sprintf("RUN npm install -g --no-fund --no-audit opencode-ai@%s && \\\n"+
		"    rm -rf \"$(npm root -g)/opencode-ai/node_modules\" && \\\n"+
		"    npm cache clean --force && \\\n"+
		"    mkdir -p %s/opencode && chmod -R 0555 %s && \\\n"+
		"    opencode --version\n", version, opencodeConfigHome, opencodeConfigHome)
}

// opencodeConfigHome is opencode's XDG_CONFIG_HOME: a directory of the
// image the agent cannot write (its configuration comes in
// OPENCODE_CONFIG_CONTENT).
const opencodeConfigHome = "/opt/opencode/config"

// opencodeScript is the container's entry command: the prompt is opencode's
// standard input (it reads it when no message is given), so it is never an
// argument. Standard error goes first to the file airlock reads failure
// reasons from.
const opencodeScript = `prompt=$1 log=$2 errlog=$3
shift 3
exec 2>"$errlog"
exec opencode run "$@" <"$prompt" >"$log"`

// Command implements Agent.
func (Opencode) Command(o Options) []string {
	args := []string{
		"--format=json",
		// The container is the sandbox: approve what would otherwise wait
		// for a person nobody is.
		"--auto",
	}
	args = append(args, opencodeSessionArgs(o)...)
	return append([]string{"/bin/sh", "-c", opencodeScript, "airlock-agent", o.PromptPath, o.LogPath, o.StderrPath}, args...)
}

// opencodeSessionArgs: the model, and on resume the last session (the run's
// home holds only its own; opencode names sessions itself, so airlock's
// session id cannot name one).
func opencodeSessionArgs(o Options) []string {
	args := []string{"--model=" + opencodeProvider + "/" + opencodeModel(o.Model)}
	if o.Resume {
		args = append(args, "--continue")
	}
	return args
}

func opencodeModel(m string) string {
	if m == "" {
		return OpencodeModel
	}
	return m
}

// Interactive implements Agent: opencode's terminal UI in the workspace.
func (Opencode) Interactive(o Options) []string {
	return append([]string{"opencode"}, opencodeSessionArgs(o)...)
}

// Env implements Agent. The configuration travels in OPENCODE_CONFIG_CONTENT
// rather than in a file under the agent's home: nothing to write on the host,
// and a resumed run's home (written by the sandbox) is not read. It holds no
// secret: the key is read from OPENAI_API_KEY, the placeholder.
func (Opencode) Env(o Options) []string {
	return []string{
		"HOME=/home/agent",
		"SHELL=/bin/bash",
		"OPENCODE_CONFIG_CONTENT=" + opencodeConfig(opencodeModel(o.Model)),
		"XDG_CONFIG_HOME=" + opencodeConfigHome,
		// The sandbox reaches nothing but the proxy: no model catalogue
		// from models.dev, no update check, no sharing, no language
		// servers or plugins fetched at start.
		"OPENCODE_DISABLE_MODELS_FETCH=1",
		"OPENCODE_DISABLE_AUTOUPDATE=1",
		"OPENCODE_DISABLE_SHARE=1",
		"OPENCODE_DISABLE_LSP_DOWNLOAD=1",
		"OPENCODE_DISABLE_DEFAULT_PLUGINS=1",
	}
}

// opencodeConfig is opencode's configuration: one provider, the AI SDK's
// OpenAI-compatible one (bundled in the binary, so nothing is installed at
// start), whose base URL is airlock's API endpoint; the same model for the
// side requests (session titles).
func opencodeConfig(model string) string {
	cfg := map[string]any{
		"$schema":     "https://opencode.ai/config.json",
		"autoupdate":  false,
		"share":       "disabled",
		"model":       opencodeProvider + "/" + model,
		"small_model": opencodeProvider + "/" + model,
		"provider": map[string]any{
			opencodeProvider: map[string]any{
				"npm":  "@ai-sdk/openai-compatible",
				"name": "OpenAI (through airlock)",
				"options": map[string]any{
					"baseURL": APIBaseURL,
					"apiKey":  "{env:OPENAI_API_KEY}",
				},
				"models": map[string]any{model: map[string]any{"name": model}},
			},
		},
	}
	out, _ := json.Marshal(cfg) // strings and maps: cannot fail
	return string(out)
}

// Seed implements Agent: opencode needs no file (Env carries its
// configuration) and asks nothing at first start.
func (Opencode) Seed(string, SeedOptions, int, int) error { return nil }

// SessionDir implements Agent: opencode keeps its sessions in a SQLite
// database here; a resumed run continues the last one (--continue), the
// run's home holding no other.
func (Opencode) SessionDir() string { return ".local/share/opencode" }

// SessionLog implements Agent: the terminal UI writes no transcript.
func (Opencode) SessionLog(string, string) string { return "" }

// CredentialNames implements Agent.
func (Opencode) CredentialNames() []string { return []string{"OPENAI_API_KEY"} }

// IsSecret implements Agent.
func (Opencode) IsSecret(name string) bool { return name == "OPENAI_API_KEY" }

// HasCredentials implements Agent.
func (Opencode) HasCredentials(lookup func(string) (string, bool)) bool {
	v, ok := lookup("OPENAI_API_KEY")
	return ok && strings.TrimSpace(v) != ""
}

// API implements Agent: the key goes out as a bearer token; the sandbox
// holds a placeholder. Only chat completions are forwarded: the upstream
// (OPENAI_BASE_URL on the host, as OpenAI's SDKs read it, names a gateway)
// ends in /v1, and opencode's base URL is the endpoint's root.
func (Opencode) API(lookup func(string) (string, bool)) (APIAuth, error) {
	v, _ := lookup("OPENAI_API_KEY")
	key := strings.TrimSpace(v)
	if key == "" {
		return APIAuth{}, errors.New("no OpenAI API key: set OPENAI_API_KEY")
	}
	return APIAuth{
		Headers:    map[string]string{"Authorization": "Bearer " + key},
		Strip:      []string{"Authorization", "X-Api-Key", "Api-Key", "Openai-Organization", "Openai-Project"},
		Env:        []string{"OPENAI_API_KEY=" + opencodePlaceholderKey},
		Secret:     key,
		Upstream:   "https://api.openai.com/v1",
		GatewayEnv: "OPENAI_BASE_URL",
		Routes:     []Route{{Method: "POST", Path: "/chat/completions", Metered: true}},
		Usage:      "openai-chat",
	}, nil
}

// opencodePlaceholderKey is what opencode holds instead of the key: shaped
// like an OpenAI project key, worthless outside the sandbox.
const opencodePlaceholderKey = "sk-proj-airlock-placeholder-injected-by-the-egress-proxy"

// DefaultAllow implements Agent: nothing. opencode's model traffic goes to
// the API endpoint, and with models.dev, updates, sharing and plugin
// installs off it reaches for no other host; api.openai.com reached
// directly would only take whatever key the agent was handed.
func (Opencode) DefaultAllow() []string { return nil }

// ParseLine implements Agent.
func (Opencode) ParseLine(line []byte) ([]transcript.Event, error) { return parseOpencodeLine(line) }
