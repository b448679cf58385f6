package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/budget"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestAgentCodex runs the real Codex CLI (the image's, at its pinned
// version) through `airlock run --agent codex` against the scripted
// Responses API server, through the run's egress proxy: it writes, runs
// and commits hello.py, and looks at what its sandbox holds.
func TestAgentCodex(t *testing.T) {
	e := newEnv(t)
	codexImage(e)
	script := testkit.CodexDemoScript()
	// Before the answer: the agent looks for the key where it could be,
	// and writes terminal escapes (a window title, a clipboard write, a
	// screen clear) in its text and in a command's output.
	script.Steps = append(script.Steps, testkit.ExecStep("Checking my environment.\x1b]0;pwned\x07\x1b[2J",
		`env | grep -i openai; cat ~/.codex/config.toml; grep -rl "sk-proj-e2e" ~ /workspace /tmp 2>/dev/null; printf '\033]52;c;ZXZpbA==\007\033[31mred\n'; true`))
	srv := testkit.NewResponsesServer(script)
	url, err := srv.Start(e.gateway() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	const key = "sk-proj-e2e-codex-0123456789abcdefABCDEF"
	e.extra = []string{"OPENAI_API_KEY=" + key, "OPENAI_BASE_URL=" + url}

	res := e.ok("run", "--agent", "codex", "-m", "Write hello.py, run it, commit it.", "--name", "codex-hello")
	if out := res.stdout + res.stderr; strings.Contains(out, key) {
		t.Errorf("the key was printed:\n%s", out)
	}

	runs := e.runs()
	if len(runs) != 1 || runs[0].Status != store.StatusSucceeded || runs[0].Agent != "codex" {
		t.Fatalf("runs = %+v\n%s", runs, res.stderr)
	}
	r := runs[0]
	if got := e.git("log", "-1", "--format=%s", r.Branch); got != "Add hello.py" {
		t.Errorf("run branch head = %q, want the agent's commit", got)
	}
	if got := e.git("show", r.Branch+":hello.py"); got != `print("Hello from airlock")` {
		t.Errorf("hello.py on the branch = %q", got)
	}

	// The server saw the real key on every request, as Codex sends it (a
	// bearer token) on the path it uses; and the model saw what the
	// sandbox holds: the placeholder, never the key.
	reqs := srv.Requests()
	if len(reqs) != len(script.Steps)+1 {
		t.Errorf("%d model requests, want %d%s", len(reqs), len(script.Steps)+1, e.egressLogs())
	}
	sawPlaceholder := false
	for i, q := range reqs {
		if q.Path != "/v1/responses" || q.Headers.Get("Authorization") != "Bearer "+key {
			t.Errorf("request %d: %s with Authorization %q, want the real key as a bearer", i, q.Path, q.Headers.Get("Authorization"))
		}
		if bytes.Contains(q.Body, []byte(key)) {
			t.Errorf("request %d: the sandbox's output carries the real key", i)
		}
		sawPlaceholder = sawPlaceholder || bytes.Contains(q.Body, []byte(agent.PlaceholderOpenAIKey))
	}
	if !sawPlaceholder {
		t.Errorf("the agent's env dump never reached the model: the test did not look")
	}
	inspect, err := exec.Command("docker", "inspect", "--format", "{{json .Args}} {{json .Config.Env}}", r.Container).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect: %v\n%s", err, inspect)
	}
	if strings.Contains(string(inspect), key) || strings.Contains(string(inspect), "Write hello.py") {
		t.Errorf("the key or the prompt is in the agent container's command line or environment: %s", inspect)
	}
	filepath.Walk(filepath.Join(e.state, "airlock", "runs", r.ID), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(key)) {
				t.Errorf("the key is in %s", p)
			}
		}
		return nil
	})

	// logs renders Codex's transcript as it does Claude's.
	logs := e.ok("logs", r.ID).stdout
	for _, want := range []string{"▸ apply_patch", "▸ exec_command  python3 hello.py", `git commit -m "Add hello.py"`, script.FinalText, "the agent reports success"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}

	// What the agent and its commands printed reaches the terminal
	// without its escapes, at every verbosity.
	for _, v := range []string{"0", "1", "2"} {
		out := e.ok("logs", "-v", v, r.ID).stdout
		if strings.ContainsAny(out, "\x1b\x07") || strings.Contains(out, "pwned") || strings.Contains(out, "ZXZpbA") {
			t.Errorf("logs -v %s passes terminal escapes through:\n%q", v, out)
		}
		if v == "2" && !strings.Contains(out, "red") {
			t.Errorf("logs -v 2 lacks the command's output:\n%s", out)
		}
	}

	// The proxy metered what the server reported, at GPT-5.5's price.
	var in, cached, out int
	var cost float64
	for _, s := range srv.Sent() {
		in, cached, out = in+s.Input-s.Cached, cached+s.Cached, out+s.Output
		cost += budget.PriceOf(s.Model).Cost(budget.Usage{Input: s.Input - s.Cached, CacheRead: s.Cached, Output: s.Output})
	}
	// A run's input tokens count the cached ones too.
	if r.Turns != len(reqs) || r.InputTokens != in+cached || r.OutputTokens != out || cached == 0 {
		t.Errorf("metered %d turns, %d in, %d out; the server answered %d, %d in (+%d cached), %d out", r.Turns, r.InputTokens, r.OutputTokens, len(reqs), in, cached, out)
	}
	if d := r.CostUSD - cost; cost <= 0 || d > 1e-6 || d < -1e-6 {
		t.Errorf("metered cost $%v, want $%v", r.CostUSD, cost)
	}
}

// codexImage builds the codex agent image, once per machine (it is
// content-addressed).
func codexImage(e *env) {
	e.t.Helper()
	if res := e.airlock("image", "build", "--agent", "codex"); res.code != 0 {
		e.t.Fatalf("image build --agent codex: exit %d\n%s", res.code, tail(res.stderr, 30))
	}
}

// TestAgentCodexShell: `airlock shell --agent codex` opens Codex's terminal
// UI at its prompt (the seeded config answers its first-run dialogs), and a
// task typed there goes through the proxy and ends in a commit.
func TestAgentCodexShell(t *testing.T) {
	e := newEnv(t)
	codexImage(e)
	srv := testkit.NewResponsesServer(testkit.CodexDemoScript())
	url, err := srv.Start(e.gateway() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	const key = "sk-proj-e2e-codex-shell-0123456789"
	e.extra = []string{"OPENAI_API_KEY=" + key, "OPENAI_BASE_URL=" + url}

	id := strings.TrimSpace(e.ok("shell", "-d", "-y", "--agent", "codex").stdout)
	const placeholder = "Ask Codex to do anything"
	e.waitScreen(id, placeholder, 2*time.Minute)
	// The session header names the permissions once the UI's app server
	// answers; until then the UI holds what is typed. With a background
	// server to install and start (Codex's default) that took 10 s here
	// and over a minute in CI; the seeded config runs the UI's own.
	e.waitScreen(id, "permissions:", time.Minute)
	if ps := e.ok("exec", id, "--", "ps", "-eo", "args").stdout; strings.Contains(ps, "app-server") {
		t.Errorf("Codex started a background app server in the sandbox:\n%s", ps)
	}
	// Codex's UI takes an Enter that comes in the same burst as typed text
	// for part of a paste: the text first, then Enter on its own. Should
	// keys still go missing under load, they are typed again, but only
	// while the placeholder shows: the composer is empty then, and typing
	// again cannot double the text.
	const task = "Write hello.py, run it and commit it."
	for try := 1; ; try++ {
		e.ok("tmux", "send", id, task)
		screen, ok := e.screenWithin(id, "› "+task, 20*time.Second)
		if ok {
			break
		}
		if try == 3 || !strings.Contains(screen, placeholder) {
			t.Fatalf("run %s's screen never showed the typed task (%d tries):\n%s", id, try, screen)
		}
		t.Logf("try %d: the typed task did not show; typing it again", try)
	}
	time.Sleep(time.Second)
	e.ok("tmux", "send", id, "", "--enter")
	e.waitScreen(id, testkit.CodexDemoScript().FinalText, 2*time.Minute)
	e.ok("tmux", "send", id, "/quit")
	time.Sleep(time.Second)
	e.ok("tmux", "send", id, "", "--enter")
	e.ok("wait", id)
	r := e.onlyRun()
	if r.Status != store.StatusSucceeded || r.Agent != "codex" {
		t.Fatalf("after /quit: %+v", r)
	}
	if got := e.git("log", "-1", "--format=%s", r.Branch); got != "Add hello.py" {
		t.Errorf("run branch head = %q, want the agent's commit", got)
	}
	for i, q := range srv.Requests() {
		if q.APIKey() != key {
			t.Errorf("request %d carried %q, want the real key", i, q.APIKey())
		}
	}
	if r.CostUSD <= 0 {
		t.Errorf("the session was not metered: %+v", r)
	}
}

// TestAgentCodexModelError: a model API that refuses the request fails the
// run, and says why.
func TestAgentCodexModelError(t *testing.T) {
	e := newEnv(t)
	codexImage(e)
	srv := testkit.NewResponsesServer(testkit.Script{Fail: &testkit.Failure{Status: 400, Type: "invalid_request_error", Message: "airlock test model: scripted failure"}})
	url, err := srv.Start(e.gateway() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.extra = []string{"OPENAI_API_KEY=sk-proj-e2e-codex-fail", "OPENAI_BASE_URL=" + url}

	res := e.airlock("run", "--agent", "codex", "-m", "Do something.", "--name", "codex-fail")
	r := e.onlyRun()
	if res.code == 0 || r.Status != store.StatusFailed {
		t.Fatalf("run %s, exit %d; want a failed run", r.Status, res.code)
	}
	if out := res.stdout + res.stderr; !strings.Contains(out, "scripted failure") {
		t.Errorf("the run's output does not say why:\n%s", out)
	}
	if logs := e.ok("logs", r.ID).stdout; !strings.Contains(logs, "✗ the agent reports failure") || !strings.Contains(logs, "airlock test model: scripted failure (invalid_request_error)") {
		t.Errorf("logs:\n%s", logs)
	}
}

// TestAgentCodexBudget: the proxy's budgets stop a Codex run that would
// never end, as they stop Claude Code's (a refused request is a 429, which
// Codex gives up on after its retries).
func TestAgentCodexBudget(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		reason string
	}{
		{"max turns", []string{"--max-turns", "3"}, "budget: reached max turns (3)"},
		{"max cost", []string{"--max-cost", "0.25"}, "budget: reached the cost limit of $0.25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			codexImage(e)
			srv := testkit.NewResponsesServer(testkit.EndlessScript())
			url, err := srv.Start(e.gateway() + ":0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Close() })
			e.extra = []string{"OPENAI_API_KEY=sk-proj-e2e-codex-budget", "OPENAI_BASE_URL=" + url}
			start := time.Now()
			res := e.airlock(append([]string{"run", "--agent", "codex", "-m", "Never stop.", "--name", "endless"}, tt.args...)...)
			if res.code != 3 {
				t.Fatalf("run exit = %d, want 3\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
			}
			if d := time.Since(start); d > 2*time.Minute {
				t.Errorf("the budget took %s to stop the run", d)
			}
			r := e.onlyRun()
			if r.Status != store.StatusStopped || r.StopReason != "budget" || !strings.HasPrefix(r.Error, tt.reason) {
				t.Fatalf("run = status %s, stop reason %q, error %q; want stopped, budget, %q", r.Status, r.StopReason, r.Error, tt.reason)
			}
			if tt.name == "max turns" && (r.Turns != 3 || len(srv.Requests()) != 3) {
				t.Errorf("%d turns metered, %d requests reached the model; want 3", r.Turns, len(srv.Requests()))
			}
			if tt.name == "max cost" && r.CostUSD < 0.25 {
				t.Errorf("stopped at $%v, under the limit", r.CostUSD)
			}
		})
	}
}

// TestAgentCodexResume: a Codex run's session (~/.codex/sessions, kept when
// the run ends) goes into the resumed run's home, and Codex continues the
// thread: the model sees the first run's conversation, and the resumed run
// works on the first one's branch.
func TestAgentCodexResume(t *testing.T) {
	e := newEnv(t)
	codexImage(e)
	const key = "sk-proj-e2e-codex-resume-0123456789abcdef"
	first := testkit.NewResponsesServer(testkit.CodexDemoScript())
	url, err := first.Start(e.gateway() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Close() })
	e.extra = []string{"OPENAI_API_KEY=" + key, "OPENAI_BASE_URL=" + url}
	e.ok("run", "--agent", "codex", "-m", "FIRST-TASK: write hello.py, run it, commit it.", "--name", "codex-resume")
	r := e.onlyRun()

	// Everything the first run did is history now: its server answers the
	// continuation with its final text.
	second := testkit.NewResponsesServer(testkit.Script{Name: "resumed", FinalText: "RESUMED-ANSWER"})
	url2, err := second.Start(e.gateway() + ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })
	e.extra = []string{"OPENAI_API_KEY=" + key, "OPENAI_BASE_URL=" + url2}
	res := e.ok("run", "--resume", r.ID, "-m", "SECOND-TASK: go on.", "--name", "codex-resume-2")
	reqs := second.Requests()
	if len(reqs) == 0 {
		t.Fatalf("the resumed run made no model request:\n%s", res.stderr)
	}
	body := reqs[0].Body
	if !bytes.Contains(body, []byte("FIRST-TASK")) || !bytes.Contains(body, []byte("SECOND-TASK")) {
		t.Errorf("the resumed request lacks the first run's conversation or the new prompt:\n%.2000s", body)
	}
	var resumed store.Run
	for _, x := range e.runs() {
		if x.ID != r.ID {
			resumed = x
		}
	}
	if resumed.Agent != "codex" || resumed.Status != store.StatusSucceeded {
		t.Fatalf("resumed run: %+v", resumed)
	}
	if logs := e.ok("logs", resumed.ID).stdout; !strings.Contains(logs, "RESUMED-ANSWER") {
		t.Errorf("logs of the resumed run:\n%s", logs)
	}
	if res := e.airlock("run", "--resume", r.ID, "--agent", "claude", "-m", "go on"); res.code == 0 || !strings.Contains(res.stderr, "was Codex CLI's conversation; Claude Code cannot continue it") {
		t.Errorf("resuming a Codex run with Claude Code: exit %d\n%s", res.code, res.stderr)
	}
}
