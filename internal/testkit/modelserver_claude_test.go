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

// These tests drive the real Claude Code CLI against the server, on the
// host, in a temporary git repository.

const testAPIKey = "sk-ant-test-xyz"

// requireClaude skips without the CLI, unless CI or the developer demands
// that these tests run.
func requireClaude(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("claude")
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" || os.Getenv("AIRLOCK_REQUIRE_CLAUDE") == "1" {
		t.Fatalf("claude not on PATH (needed with CI=true or AIRLOCK_REQUIRE_CLAUDE=1): npm install -g @anthropic-ai/claude-code")
	}
	t.Skip("claude not on PATH; set AIRLOCK_REQUIRE_CLAUDE=1 to make this a failure")
	return ""
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", dir}, args...)...)
	cmd.Env = gitEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func gitEnv(t *testing.T) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Agent", "GIT_AUTHOR_EMAIL=agent@example.invalid",
		"GIT_COMMITTER_NAME=Agent", "GIT_COMMITTER_EMAIL=agent@example.invalid",
	}
}

func newRepo(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("test repo\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, dir, "add", "README.md")
	git(t, dir, "commit", "-q", "-m", "Initial commit")
	return dir
}

// claudeResult is the part of the final stream-json line the tests read.
type claudeResult struct {
	Type         string  `json:"type"`
	Subtype      string  `json:"subtype"`
	IsError      bool    `json:"is_error"`
	NumTurns     int     `json:"num_turns"`
	TotalCostUSD float64 `json:"total_cost_usd"`
	Result       string  `json:"result"`
	Usage        struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
	} `json:"usage"`
}

// runClaude runs the CLI in dir against s and returns the result line and
// the whole stream.
func runClaude(t *testing.T, s *Server, dir string, extraArgs ...string) (claudeResult, string) {
	t.Helper()
	requireClaude(t)
	url, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	res, out := execClaude(t, dir, []string{"ANTHROPIC_BASE_URL=" + url, "ANTHROPIC_API_KEY=" + testAPIKey}, extraArgs...)
	for i, r := range s.Requests() {
		if r.APIKey() != testAPIKey {
			t.Errorf("request %d to %s carried key %q, want %q", i, r.Path, r.APIKey(), testAPIKey)
		}
	}
	return res, out
}

// execClaude runs the CLI in dir with env added to a clean environment and
// returns the result line and the whole stream.
func execClaude(t *testing.T, dir string, env []string, extraArgs ...string) (claudeResult, string) {
	t.Helper()
	claude := requireClaude(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"-p", "do the task", "--output-format", "stream-json", "--verbose", "--dangerously-skip-permissions"}, extraArgs...)
	cmd := exec.CommandContext(ctx, claude, args...)
	cmd.Dir = dir
	cmd.Env = append(append(gitEnv(t),
		"IS_SANDBOX=1", // allows --dangerously-skip-permissions as root
		"DISABLE_AUTOUPDATER=1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
	), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("claude did not finish in time: %s\n%s", stderr.String(), out)
	}
	var res claudeResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var line claudeResult
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Type == "result" {
			res = line
		}
	}
	if res.Type != "result" {
		t.Fatalf("no result line from claude (exit %v): %s\nstdout:\n%s", err, stderr.String(), out)
	}
	return res, string(out)
}

func TestClaudeRunsDemoScript(t *testing.T) {
	dir := newRepo(t)
	s := NewServer(DemoScriptIn(dir))
	res, stream := runClaude(t, s, dir)

	if res.Subtype != "success" || res.IsError {
		t.Errorf("result %s is_error=%v: %s", res.Subtype, res.IsError, res.Result)
	}
	if res.NumTurns < 4 || res.TotalCostUSD <= 0 || res.Usage.InputTokens == 0 || res.Usage.OutputTokens == 0 {
		t.Errorf("result reports turns %d cost %v usage %+v; want 4+ turns and non-zero cost and usage", res.NumTurns, res.TotalCostUSD, res.Usage)
	}
	if !strings.Contains(res.Result, "Hello from airlock") {
		t.Errorf("result text %q, want the script's final text", res.Result)
	}
	if !strings.Contains(stream, `"stdout":"Hello from airlock"`) {
		t.Errorf("stream shows no output of running hello.py:\n%s", stream)
	}
	if got := git(t, dir, "log", "-1", "--format=%s"); got != "Add hello.py\n" {
		t.Errorf("last commit %q, want Add hello.py", got)
	}
	if got := git(t, dir, "show", "HEAD:hello.py"); got != "print(\"Hello from airlock\")\n" {
		t.Errorf("committed hello.py = %q", got)
	}
	var main int
	for _, r := range s.Requests() {
		if r.NumTools > 0 {
			main++
			if r.Model == "" || !r.Stream || r.Headers.Get("Anthropic-Version") == "" {
				t.Errorf("main request model %q stream %v version %q", r.Model, r.Stream, r.Headers.Get("Anthropic-Version"))
			}
		}
	}
	if main < 4 {
		t.Errorf("server saw %d main requests, want at least 4 (three tools and the final answer)", main)
	}
}

func TestClaudeReportsScriptedFailure(t *testing.T) {
	dir := newRepo(t)
	start := time.Now()
	res, _ := runClaude(t, NewServer(FailScript()), dir)
	if !res.IsError || !strings.Contains(res.Result, "500") || !strings.Contains(res.Result, "scripted failure") {
		t.Errorf("result is_error=%v %q, want an error naming the 500 and its message", res.IsError, res.Result)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("failed run took %v; Claude Code should not retry", d)
	}
}

func TestClaudeEndlessScriptHitsTurnLimit(t *testing.T) {
	dir := newRepo(t)
	res, _ := runClaude(t, NewServer(EndlessScript()), dir, "--max-turns", "3")
	if res.Subtype != "error_max_turns" {
		t.Errorf("result subtype %q, want error_max_turns", res.Subtype)
	}
}

func TestClaudeDestroyScriptRemovesRepository(t *testing.T) {
	dir := newRepo(t)
	res, _ := runClaude(t, NewServer(DestroyScript()), dir)
	if res.IsError {
		t.Errorf("result is an error: %s", res.Result)
	}
	if _, err := os.Stat(filepath.Join(dir, ".git")); !os.IsNotExist(err) {
		t.Errorf(".git still exists after the destroy script (stat: %v)", err)
	}
}

// The plant script's traps must be live: when git runs with the planted
// configuration (here Claude Code's own commit, on the host) they fire.
func TestClaudePlantScriptPlantsLiveTraps(t *testing.T) {
	dir := newRepo(t)
	marker := filepath.Join(t.TempDir(), "ran")
	res, _ := runClaude(t, NewServer(PlantScript(marker)), dir)
	if res.IsError {
		t.Fatalf("result is an error: %s", res.Result)
	}
	if got := git(t, dir, "log", "-1", "--format=%s"); got != "Add planted.txt\n" {
		t.Errorf("last commit %q, want Add planted.txt", got)
	}
	if got := git(t, dir, "show", "HEAD:planted.txt"); got != "planted by the airlock test model\n" {
		t.Errorf("planted.txt committed as %q; the clean filter must pass data through", got)
	}
	for _, key := range PlantConfig() {
		if v := strings.TrimSpace(git(t, dir, "config", "--get", key)); !strings.Contains(v, marker) {
			t.Errorf("git config %s = %q, want a command touching the marker", key, v)
		}
	}
	for _, h := range PlantHooks() {
		for _, d := range []string{".git/hooks", ".git/airlock-hooks"} {
			fi, err := os.Stat(filepath.Join(dir, d, h))
			if err != nil || fi.Mode()&0o111 == 0 {
				t.Errorf("hook %s/%s missing or not executable (%v)", d, h, err)
			}
		}
	}
	// The commit ran git add (clean filter) and commit (hooks from
	// core.hooksPath, which shadows .git/hooks); a diff runs the external
	// diff command.
	git(t, dir, "diff", "HEAD~1", "HEAD")
	for _, name := range []string{"filter.x.clean", "hookspath-pre-commit", "hookspath-post-commit", "hookspath-reference-transaction", "diff.external"} {
		if _, err := os.Stat(marker + "-" + name); err != nil {
			t.Errorf("trap %s did not fire: %v", name, err)
		}
	}
}
