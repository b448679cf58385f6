package agent

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// stubClaude stands in for the claude binary: it records its arguments one
// per line, echoes standard input to standard output, writes a line to
// standard error and exits with $STUB_EXIT.
const stubClaude = `#!/bin/sh
printf '%s\n' "$@" >"$STUB_ARGS"
cat
echo "stub stderr" >&2
exit "${STUB_EXIT:-0}"
`

type scriptRun struct {
	exitCode int
	args     []string
	stdout   string
	stderr   string
}

// runScript runs Claude's command on this host's /bin/sh with the stub first
// on PATH. dir holds the prompt, log and stderr files, as the container's
// mounts would.
func runScript(t *testing.T, o Options, withStub bool, exitCode string) scriptRun {
	t.Helper()
	// PATH is only this directory so that a real claude on the host can
	// never be picked up; the stub needs nothing but cat.
	bin := t.TempDir()
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(cat, filepath.Join(bin, "cat")); err != nil {
		t.Fatal(err)
	}
	if withStub {
		if err := os.WriteFile(filepath.Join(bin, "claude"), []byte(stubClaude), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	argsFile := filepath.Join(t.TempDir(), "args")
	argv := Claude{}.Command(o)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"PATH=" + bin, "STUB_ARGS=" + argsFile, "STUB_EXIT=" + exitCode}
	out, err := cmd.CombinedOutput()
	var run scriptRun
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		run.exitCode = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("run %q: %v", argv, err)
	}
	if len(out) != 0 {
		t.Errorf("script wrote to its own output instead of the files: %q", out)
	}
	if data, err := os.ReadFile(argsFile); err == nil {
		run.args = strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	}
	if data, err := os.ReadFile(o.LogPath); err == nil {
		run.stdout = string(data)
	}
	if data, err := os.ReadFile(o.StderrPath); err == nil {
		run.stderr = string(data)
	}
	return run
}

func TestClaudeCommandRunsClaude(t *testing.T) {
	// Awkward names and values: if any of them reached the shell as syntax
	// the script would break or run something else.
	dir := filepath.Join(t.TempDir(), `my run's "dir" $HOME`)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	prompt := "Fix the bug; don't `rm -rf /` or $(touch pwned)\n'quotes' \"too\"\n"
	promptPath := filepath.Join(dir, "prompt.md")
	if err := os.WriteFile(promptPath, []byte(prompt), 0o644); err != nil {
		t.Fatal(err)
	}
	base := Options{
		SessionID:  "0f8fad5b-d9cb-469f-a165-70867728950e",
		PromptPath: promptPath,
		LogPath:    filepath.Join(dir, "agent.jsonl"),
		StderrPath: filepath.Join(dir, "agent stderr"),
	}
	common := []string{"-p", "--output-format=stream-json", "--verbose", "--dangerously-skip-permissions"}

	tests := []struct {
		name     string
		model    string
		maxTurns int
		exit     string
		wantArgs []string
	}{
		{
			name:     "defaults",
			exit:     "0",
			wantArgs: append(slices.Clone(common), "--session-id="+base.SessionID),
		},
		{
			name:     "model and max turns",
			model:    "claude-sonnet-4-5",
			maxTurns: 7,
			exit:     "0",
			wantArgs: append(slices.Clone(common), "--session-id="+base.SessionID, "--model=claude-sonnet-4-5", "--max-turns=7"),
		},
		{
			name:     "hostile model name stays one argument",
			model:    "-x; touch pwned $(id)",
			exit:     "0",
			wantArgs: append(slices.Clone(common), "--session-id="+base.SessionID, "--model=-x; touch pwned $(id)"),
		},
		{
			name:     "exit status is claude's",
			exit:     "3",
			wantArgs: append(slices.Clone(common), "--session-id="+base.SessionID),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.Model, o.MaxTurns = tt.model, tt.maxTurns
			run := runScript(t, o, true, tt.exit)
			if want := map[string]int{"0": 0, "3": 3}[tt.exit]; run.exitCode != want {
				t.Errorf("exit code = %d, want %d", run.exitCode, want)
			}
			if !slices.Equal(run.args, tt.wantArgs) {
				t.Errorf("claude got args\n%q\nwant\n%q", run.args, tt.wantArgs)
			}
			if run.stdout != prompt {
				t.Errorf("claude's stdin (echoed to the log) = %q, want the prompt %q", run.stdout, prompt)
			}
			if run.stderr != "stub stderr\n" {
				t.Errorf("stderr file = %q, want %q", run.stderr, "stub stderr\n")
			}
			if _, err := os.Stat(filepath.Join(dir, "pwned")); err == nil {
				t.Fatal("a value was executed by the shell")
			}
		})
	}
}

func TestClaudeCommandFailuresReachStderrFile(t *testing.T) {
	tests := []struct {
		name       string
		noPrompt   bool
		noClaude   bool
		wantExit   int
		wantStderr string
	}{
		{name: "prompt file missing", noPrompt: true, wantExit: 2, wantStderr: "prompt.md"},
		{name: "claude not installed", noClaude: true, wantExit: 127, wantStderr: "claude"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			o := Options{
				PromptPath: filepath.Join(dir, "prompt.md"),
				LogPath:    filepath.Join(dir, "agent.jsonl"),
				StderrPath: filepath.Join(dir, "agent.stderr"),
			}
			if !tt.noPrompt {
				if err := os.WriteFile(o.PromptPath, []byte("hi"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			run := runScript(t, o, !tt.noClaude, "0")
			if run.exitCode != tt.wantExit {
				t.Errorf("exit code = %d, want %d", run.exitCode, tt.wantExit)
			}
			if !strings.Contains(run.stderr, tt.wantStderr) {
				t.Errorf("stderr file = %q, want it to mention %q", run.stderr, tt.wantStderr)
			}
		})
	}
}

func TestClaudeCommandNeverCarriesThePrompt(t *testing.T) {
	argv := Claude{}.Command(Options{PromptPath: "/airlock/prompt.md", LogPath: "/airlock/log/a", StderrPath: "/airlock/log/b"})
	if argv[0] != "/bin/sh" || argv[1] != "-c" {
		t.Fatalf("argv = %q, want a /bin/sh -c script", argv)
	}
	if !slices.Contains(argv, "/airlock/prompt.md") {
		t.Errorf("argv %q does not name the prompt file", argv)
	}
}

func TestClaudeEnv(t *testing.T) {
	env := Claude{}.Env(Options{})
	for _, want := range []string{
		"HOME=/home/agent",
		"DISABLE_AUTOUPDATER=1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"DISABLE_TELEMETRY=1",
		"DISABLE_ERROR_REPORTING=1",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("Env() lacks %s", want)
		}
	}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if slices.Contains(Claude{}.CredentialNames(), name) {
			t.Errorf("Env() carries credential %s", name)
		}
	}
}

func TestClaudeHasCredentials(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"nothing", nil, false},
		{"api key", map[string]string{"ANTHROPIC_API_KEY": "sk-ant-x"}, true},
		{"empty api key", map[string]string{"ANTHROPIC_API_KEY": "  "}, false},
		{"oauth token", map[string]string{"CLAUDE_CODE_OAUTH_TOKEN": "t"}, true},
		{"auth token", map[string]string{"ANTHROPIC_AUTH_TOKEN": "t"}, true},
		{"region alone", map[string]string{"AWS_REGION": "us-east-1"}, false},
		{"bedrock with a region", map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_REGION": "us-east-1"}, true},
		{"bedrock with a default region", map[string]string{"CLAUDE_CODE_USE_BEDROCK": "true", "AWS_DEFAULT_REGION": "eu-west-1"}, true},
		{"bedrock without a region", map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}, false},
		{"bedrock ignores the api key", map[string]string{"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_API_KEY": "k"}, false},
		{"bedrock flag off", map[string]string{"CLAUDE_CODE_USE_BEDROCK": "0", "ANTHROPIC_API_KEY": "k"}, true},
		{"vertex with project and region", map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "ANTHROPIC_VERTEX_PROJECT_ID": "p", "CLOUD_ML_REGION": "us-east5"}, true},
		{"vertex without region", map[string]string{"CLAUDE_CODE_USE_VERTEX": "1", "ANTHROPIC_VERTEX_PROJECT_ID": "p"}, false},
		{"vertex without project", map[string]string{"CLAUDE_CODE_USE_VERTEX": "1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lookup := func(name string) (string, bool) { v, ok := tt.env[name]; return v, ok }
			if got := (Claude{}).HasCredentials(lookup); got != tt.want {
				t.Errorf("HasCredentials(%v) = %v, want %v", tt.env, got, tt.want)
			}
		})
	}
}

func TestClaudeIsSecret(t *testing.T) {
	tests := map[string]bool{
		"ANTHROPIC_API_KEY":       true,
		"CLAUDE_CODE_OAUTH_TOKEN": true,
		"AWS_SECRET_ACCESS_KEY":   true,
		"AWS_SESSION_TOKEN":       true,
		"AWS_REGION":              false,
		"CLAUDE_CODE_USE_BEDROCK": false,
		"PATH":                    false,
	}
	for name, want := range tests {
		if got := (Claude{}).IsSecret(name); got != want {
			t.Errorf("IsSecret(%s) = %v, want %v", name, got, want)
		}
	}
	for _, name := range (Claude{}).CredentialNames() {
		if strings.Contains(name, "KEY") || strings.Contains(name, "TOKEN") {
			if !(Claude{}).IsSecret(name) {
				t.Errorf("%s looks secret but IsSecret says no", name)
			}
		}
	}
}

func TestNewSessionID(t *testing.T) {
	uuidV4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		id := NewSessionID()
		if !uuidV4.MatchString(id) {
			t.Fatalf("NewSessionID() = %q, not a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("NewSessionID() repeated %q", id)
		}
		seen[id] = true
	}
}
