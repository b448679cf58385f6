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

// These tests drive the real opencode CLI against the chat server, on the
// host, in a temporary git repository.

const testOpenAIKey = "sk-test-opencode-xyz"

// requireOpencode skips without the CLI, unless CI or the developer demands
// that these tests run.
func requireOpencode(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("opencode")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" || os.Getenv("AIRLOCK_REQUIRE_OPENCODE") == "1" {
		t.Fatalf("opencode not on PATH (needed with CI=true or AIRLOCK_REQUIRE_OPENCODE=1): npm install -g opencode-ai")
	}
	t.Skip("opencode not on PATH; set AIRLOCK_REQUIRE_OPENCODE=1 to make this a failure")
	return ""
}

// opencodeConfig points opencode at url through an openai-compatible
// provider whose key comes from OPENAI_API_KEY.
func opencodeConfig(url string) string {
	return `{
  "$schema": "https://opencode.ai/config.json",
  "autoupdate": false,
  "share": "disabled",
  "model": "airlock/gpt-4.1",
  "small_model": "airlock/gpt-4.1",
  "provider": {
    "airlock": {
      "npm": "@ai-sdk/openai-compatible",
      "name": "OpenAI (airlock)",
      "options": {"baseURL": "` + url + `/v1", "apiKey": "{env:OPENAI_API_KEY}"},
      "models": {"gpt-4.1": {"name": "gpt-4.1"}}
    }
  }
}
`
}

// runOpencode runs `opencode run --format json` in dir and returns its
// stdout lines and how it exited.
func runOpencode(t *testing.T, bin, dir, url, prompt string) ([]string, error) {
	t.Helper()
	home := t.TempDir()
	cfg := filepath.Join(home, ".config", "opencode")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg, "opencode.json"), []byte(opencodeConfig(url)), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run", "--format", "json", "--auto", prompt)
	cmd.Dir = dir
	cmd.Stdin = nil
	cmd.Env = append(gitEnv(t)[2:], // after its PATH and HOME
		"PATH="+os.Getenv("PATH"),
		"HOME="+home,
		"OPENAI_API_KEY="+testOpenAIKey,
		"OPENCODE_DISABLE_MODELS_FETCH=1",
		"OPENCODE_DISABLE_AUTOUPDATE=1",
		"OPENCODE_DISABLE_SHARE=1",
		"OPENCODE_DISABLE_LSP_DOWNLOAD=1",
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if runErr != nil {
		t.Logf("opencode run: %v\nstderr:\n%s", runErr, stderr.String())
	}
	if dir := os.Getenv("AIRLOCK_SAVE_OPENCODE_TRANSCRIPTS"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, t.Name()+".jsonl"), stdout.Bytes(), 0o644)
	}
	var lines []string
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, runErr
}

func TestChatServerDrivesOpencode(t *testing.T) {
	bin := requireOpencode(t)
	dir := newRepo(t)
	srv := NewChatServer(OpencodeDemoScript(dir))
	url, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	lines, err := runOpencode(t, bin, dir, url, "Write hello.py, run it and commit it.")
	if err != nil {
		t.Fatalf("opencode failed: %v\n%s", err, strings.Join(lines, "\n"))
	}

	// The scripted plan really ran: the file exists and is committed.
	got, err := os.ReadFile(filepath.Join(dir, "hello.py"))
	if err != nil || string(got) != "print(\"Hello from airlock\")\n" {
		t.Fatalf("hello.py = %q, %v", got, err)
	}
	if log := git(t, dir, "log", "--format=%s", "-1"); strings.TrimSpace(log) != "Add hello.py" {
		t.Fatalf("last commit = %q, want Add hello.py", log)
	}

	// opencode reported each tool call and its output, and the final text.
	var tools []string
	var ran, final bool
	for _, l := range lines {
		var ev struct {
			Type string `json:"type"`
			Part struct {
				Tool  string `json:"tool"`
				Text  string `json:"text"`
				State struct {
					Status string `json:"status"`
					Output string `json:"output"`
				} `json:"state"`
			} `json:"part"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("stdout line is not JSON: %q", l)
		}
		switch ev.Type {
		case "tool_use":
			tools = append(tools, ev.Part.Tool+":"+ev.Part.State.Status)
			if strings.Contains(ev.Part.State.Output, "Hello from airlock") {
				ran = true
			}
		case "text":
			if strings.Contains(ev.Part.Text, "committed it") {
				final = true
			}
		}
	}
	if want := "write:completed bash:completed bash:completed"; strings.Join(tools, " ") != want {
		t.Errorf("tool events = %v, want %s", tools, want)
	}
	if !ran || !final {
		t.Errorf("python output seen %v, final text seen %v in:\n%s", ran, final, strings.Join(lines, "\n"))
	}

	// Every request was a streamed chat completion carrying the key; the
	// main conversation advanced one tool result at a time.
	reqs := srv.Requests()
	var main []int
	for _, r := range reqs {
		if r.Path != "/v1/chat/completions" || !r.Stream {
			t.Errorf("request %s %s stream=%v, want streamed POST /v1/chat/completions", r.Method, r.Path, r.Stream)
		}
		if r.APIKey() != testOpenAIKey {
			t.Errorf("request carried key %q, want %q", r.APIKey(), testOpenAIKey)
		}
		if r.NumTools > 0 {
			main = append(main, r.NumToolResults)
		}
	}
	if want := []int{0, 1, 2, 3}; !equalInts(main, want) {
		t.Errorf("tool results per main request = %v, want %v", main, want)
	}
}

func TestChatServerFailureEndsOpencode(t *testing.T) {
	bin := requireOpencode(t)
	dir := newRepo(t)
	srv := NewChatServer(Script{Name: "fail", Fail: &Failure{Status: 400, Type: "invalid_request_error", Message: "airlock test model: scripted failure"}})
	url, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	lines, err := runOpencode(t, bin, dir, url, "Do something.")
	joined := strings.Join(lines, "\n")
	if err == nil {
		t.Errorf("opencode exited 0 after the API failed:\n%s", joined)
	}
	if !strings.Contains(joined, `"type":"error"`) || !strings.Contains(joined, "scripted failure") {
		t.Fatalf("no error event carrying the server's message in:\n%s", joined)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestChatServerOpencodeToolError(t *testing.T) {
	bin := requireOpencode(t)
	dir := newRepo(t)
	srv := NewChatServer(Script{
		Name: "tool-error",
		Steps: []Step{
			{Tool: "read", Input: map[string]any{"filePath": filepath.Join(dir, "missing.txt")}},
		},
		FinalText: "The file does not exist.",
	})
	url, err := srv.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	lines, err := runOpencode(t, bin, dir, url, "Read missing.txt.")
	if err != nil {
		t.Fatalf("opencode failed: %v\n%s", err, strings.Join(lines, "\n"))
	}
	joined := strings.Join(lines, "\n")
	// A tool that fails is reported as such and the run goes on to the end.
	if !strings.Contains(joined, `"tool":"read"`) || !strings.Contains(joined, `"status":"error"`) ||
		!strings.Contains(joined, "The file does not exist.") {
		t.Fatalf("no failed read followed by the final text in:\n%s", joined)
	}
}
