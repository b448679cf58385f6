package testkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests drive the real Codex CLI against the Responses server, on
// the host, in a temporary git repository.

const testCodexKey = "sk-proj-test-codex-xyz"

// requireCodex skips without the CLI, unless CI or the developer demands
// that these tests run.
func requireCodex(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("codex")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" || os.Getenv("AIRLOCK_REQUIRE_CODEX") == "1" {
		t.Fatalf("codex not on PATH (needed with CI=true or AIRLOCK_REQUIRE_CODEX=1): npm install -g @openai/codex")
	}
	t.Skip("codex not on PATH; set AIRLOCK_REQUIRE_CODEX=1 to make this a failure")
	return ""
}

// codexHome writes a CODEX_HOME whose config points Codex at baseURL and
// turns off everything that would reach the internet.
func codexHome(t *testing.T, baseURL string) string {
	t.Helper()
	home := t.TempDir()
	cfg := `model = "` + ResponsesModel + `"
model_provider = "airlock"
check_for_update_on_startup = false

[model_providers.airlock]
name = "airlock"
base_url = "` + baseURL + `"
env_key = "OPENAI_API_KEY"
wire_api = "responses"

[features]
plugins = false
remote_plugin = false

[analytics]
enabled = false
`
	if err := os.WriteFile(filepath.Join(home, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// runCodex runs `codex exec --json` in dir with the prompt on stdin and
// returns its stdout lines (decoded) and stderr.
func runCodex(t *testing.T, bin, dir, baseURL, prompt string) ([]map[string]any, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "exec", "--json", "--dangerously-bypass-approvals-and-sandbox", "--skip-git-repo-check", "-")
	cmd.Dir = dir
	cmd.Env = append(gitEnv(t), "CODEX_HOME="+codexHome(t, baseURL), "OPENAI_API_KEY="+testCodexKey)
	cmd.Stdin = strings.NewReader(prompt)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var lines []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(stdout.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			lines = append(lines, l)
		}
	}
	if err != nil {
		t.Fatalf("codex exec: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if out := os.Getenv("AIRLOCK_CODEX_RECORD"); out != "" {
		// Re-recording internal/agent/testdata: the transcript as printed.
		if err := os.WriteFile(out, stdout.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return lines, stderr.String()
}

func TestResponsesServerDrivesCodex(t *testing.T) {
	bin := requireCodex(t)
	srv := NewResponsesServer(CodexDemoScript())
	base, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := newRepo(t)

	lines, stderr := runCodex(t, bin, dir, base, "Write hello.py, run it and commit it.")

	// Codex logs what it cannot follow in a stream (a text delta outside
	// an item it decoded) as ERROR lines, and carries on.
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, " ERROR ") {
			t.Errorf("codex complained about the stream: %s", l)
		}
	}
	if got := strings.TrimSpace(git(t, dir, "log", "-1", "--format=%s")); got != "Add hello.py" {
		t.Errorf("last commit %q, want %q; stderr:\n%s", got, "Add hello.py", stderr)
	}
	if got := git(t, dir, "show", "HEAD:hello.py"); got != "print(\"Hello from airlock\")\n" {
		t.Errorf("committed hello.py = %q", got)
	}
	var commands []string
	var final string
	var usage map[string]any
	for _, l := range lines {
		item, _ := l["item"].(map[string]any)
		switch {
		case l["type"] == "item.completed" && item["type"] == "command_execution":
			commands = append(commands, item["command"].(string))
		case l["type"] == "item.completed" && item["type"] == "agent_message":
			final, _ = item["text"].(string)
		case l["type"] == "turn.completed":
			usage, _ = l["usage"].(map[string]any)
		}
	}
	if len(commands) != 2 || !strings.Contains(commands[0], "python3 hello.py") || !strings.Contains(commands[1], "git commit") {
		t.Errorf("commands run = %q, want python3 hello.py then git commit", commands)
	}
	if want := CodexDemoScript().FinalText; final != want {
		t.Errorf("final message %q, want %q", final, want)
	}
	if usage == nil || usage["input_tokens"].(float64) <= 0 || usage["output_tokens"].(float64) <= 0 {
		t.Errorf("turn.completed usage = %v, want tokens the server reported", usage)
	}

	reqs := srv.Requests()
	if len(reqs) != 4 {
		t.Errorf("%d requests, want 4 (one per step and the answer)", len(reqs))
	}
	for i, r := range reqs {
		if r.Path != "/v1/responses" || r.Method != "POST" || !r.Stream {
			t.Errorf("request %d: %s %s stream=%v, want a streamed POST /v1/responses", i, r.Method, r.Path, r.Stream)
		}
		if r.APIKey() != testCodexKey {
			t.Errorf("request %d carried key %q, want the test's", i, r.APIKey())
		}
		if r.NumToolResults != i {
			t.Errorf("request %d carried %d tool outputs, want %d", i, r.NumToolResults, i)
		}
	}
}
