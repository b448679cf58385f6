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

// These tests drive the real Gemini CLI against the scripted Gemini API,
// on the host, in a temporary git repository. The CLI needs Node >= 20; the
// one on PATH (or $AIRLOCK_GEMINI_CLI) is used as it is.

const testGeminiKey = "AIza-airlock-test-key-0123456789"

func requireGemini(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("AIRLOCK_GEMINI_CLI"); p != "" {
		return p
	}
	path, err := exec.LookPath("gemini")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" || os.Getenv("AIRLOCK_REQUIRE_GEMINI") == "1" {
		t.Fatalf("gemini not on PATH (needed with CI=true or AIRLOCK_REQUIRE_GEMINI=1): npm install -g @google/gemini-cli@0.61.0 (Node >= 20)")
	}
	t.Skip("gemini not on PATH (or $AIRLOCK_GEMINI_CLI); set AIRLOCK_REQUIRE_GEMINI=1 to make this a failure")
	return ""
}

// geminiLine is the part of a stream-json line the tests read.
type geminiLine struct {
	Type   string `json:"type"`
	Status string `json:"status"`
	Role   string `json:"role"`
	Stats  struct {
		TotalTokens  int `json:"total_tokens"`
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		ToolCalls    int `json:"tool_calls"`
	} `json:"stats"`
}

// runGemini runs the CLI headless in dir against s with model (empty: the
// CLI's default) and returns its stream-json output and exit error.
func runGemini(t *testing.T, s *GeminiServer, dir, model string) (string, error) {
	t.Helper()
	gemini := requireGemini(t)
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	home := t.TempDir()
	settings := `{"security":{"auth":{"selectedType":"gemini-api-key"}},"privacy":{"usageStatisticsEnabled":false},` +
		`"telemetry":{"enabled":false},"general":{"enableAutoUpdate":false,"enableAutoUpdateNotification":false}}`
	if err := os.MkdirAll(filepath.Join(home, ".gemini"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".gemini", "settings.json"), []byte(settings), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := []string{"-p", "do the task", "--yolo", "--skip-trust", "--output-format", "stream-json"}
	if model != "" {
		args = append(args, "-m", model)
	}
	cmd := exec.CommandContext(ctx, gemini, args...)
	cmd.Dir = dir
	env := gitEnv(t)
	for i, e := range env {
		if strings.HasPrefix(e, "HOME=") {
			env[i] = "HOME=" + home
		}
	}
	cmd.Env = append(env,
		"GOOGLE_GEMINI_BASE_URL="+url,
		"GEMINI_API_KEY="+testGeminiKey,
		"GEMINI_CLI_NO_RELAUNCH=true",
		"NO_COLOR=1",
	)
	cmd.Stdin = nil
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("gemini did not finish in time: %s\n%s", stderr.String(), out)
	}
	if os.Getenv("AIRLOCK_GEMINI_DUMP") != "" {
		_ = os.WriteFile(os.Getenv("AIRLOCK_GEMINI_DUMP"), out, 0o644)
		for i, r := range s.Requests() {
			t.Logf("request %d: %s %s?%s tools=%d results=%d body=%.300s", i, r.Method, r.Path, r.Query, r.NumTools, r.NumToolResults, r.Body)
		}
		t.Logf("stderr:\n%s", stderr.String())
	}
	for i, r := range s.Requests() {
		if r.APIKey() != testGeminiKey {
			t.Errorf("request %d to %s carried key %q, want %q", i, r.Path, r.APIKey(), testGeminiKey)
		}
	}
	return string(out), err
}

func geminiLines(t *testing.T, out string) []geminiLine {
	t.Helper()
	var lines []geminiLine
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var l geminiLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Type != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func TestGeminiCLIRunsDemoScript(t *testing.T) {
	for _, model := range []string{"gemini-2.5-flash", ""} {
		name := model
		if name == "" {
			name = "default-model"
		}
		t.Run(name, func(t *testing.T) {
			dir := newRepo(t)
			s := NewGeminiServer(GeminiDemoScript(dir))
			out, err := runGemini(t, s, dir, model)
			if err != nil {
				t.Fatalf("gemini failed: %v\n%s", err, out)
			}
			lines := geminiLines(t, out)
			if len(lines) == 0 || lines[len(lines)-1].Type != "result" {
				t.Fatalf("no result line last:\n%s", out)
			}
			res := lines[len(lines)-1]
			if res.Status != "success" || res.Stats.ToolCalls != 3 || res.Stats.InputTokens == 0 || res.Stats.OutputTokens == 0 {
				t.Errorf("result %+v, want success with 3 tool calls and non-zero usage", res)
			}
			if !strings.Contains(out, "Hello from airlock") || !strings.Contains(out, "committed it") {
				t.Errorf("stream lacks the script's output or final text:\n%s", out)
			}
			if got := git(t, dir, "log", "-1", "--format=%s"); got != "Add hello.py\n" {
				t.Errorf("last commit %q, want Add hello.py", got)
			}
			if got := git(t, dir, "show", "HEAD:hello.py"); got != "print(\"Hello from airlock\")\n" {
				t.Errorf("committed hello.py = %q", got)
			}
			main := 0
			for _, r := range s.Requests() {
				if r.NumTools > 0 {
					main++
					if !r.Stream || !strings.Contains(r.Query, "alt=sse") {
						t.Errorf("main request %s?%s is not a streamed (alt=sse) one", r.Path, r.Query)
					}
				}
			}
			if main < 4 {
				t.Errorf("server saw %d main requests, want at least 4", main)
			}
		})
	}
}

func TestGeminiCLIReportsScriptedFailure(t *testing.T) {
	dir := newRepo(t)
	s := NewGeminiServer(Script{Name: "fail", Fail: &Failure{Status: 400, Message: "airlock test model: scripted failure"}})
	out, err := runGemini(t, s, dir, "gemini-2.5-flash")
	if err == nil {
		t.Errorf("gemini succeeded against a failing model:\n%s", out)
	}
	lines := geminiLines(t, out)
	if len(lines) == 0 || lines[len(lines)-1].Type != "result" || lines[len(lines)-1].Status != "error" {
		t.Errorf("want a last result line with status error:\n%s", out)
	}
}
