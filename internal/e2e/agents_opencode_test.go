package e2e

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestAgentOpencode runs the real opencode CLI (its pinned npm release, in
// its own image) through airlock's sandbox and egress proxy against the
// scripted Chat Completions server: it writes hello.py, runs it, commits it
// and answers. The key reaches the server on every request and never the
// sandbox; logs shows the run like any other agent's; the proxy metered
// the usage the server reported.
func TestAgentOpencode(t *testing.T) {
	e := newEnv(t)
	// The agent's own image (content-addressed: built once, then found).
	e.ok("image", "build", "--agent", "opencode")

	srv := testkit.NewChatServer(testkit.Script{
		Name: "opencode-demo",
		Steps: []testkit.Step{
			// opencode offers GPT-5 models apply_patch instead of write.
			{Text: "I'll create a small Python script.", Tool: "apply_patch", Input: map[string]any{
				"patchText": "*** Begin Patch\n*** Add File: hello.py\n+print(\"Hello from airlock\")\n*** End Patch",
			}},
			// env: what the agent holds is in the transcript, for the
			// check below that the key never was.
			{Text: "Let me run it.", Tool: "bash", Input: map[string]any{"command": "python3 hello.py && env", "description": "Run hello.py"}},
			{Text: "It works. Committing.", Tool: "bash", Input: map[string]any{"command": `git add hello.py && git commit -m "Add hello.py"`, "description": "Commit hello.py"}},
		},
		FinalText: "Created hello.py, which prints \"Hello from airlock\", and committed it.",
	})
	key := opencodeServe(e, srv)

	res := e.ok("run", "--agent", "opencode", "-m", "Write hello.py, run it, commit it.", "--name", "hello")
	out := res.stdout + res.stderr
	t.Logf("airlock run:\n%s", out)

	runs := e.runs()
	if len(runs) != 1 || runs[0].Status != store.StatusSucceeded {
		t.Fatalf("runs = %+v\n%s", runs, out)
	}
	r := runs[0]
	// Nothing but the model API: opencode fetches no catalogue, update,
	// plugin or language server at start.
	if !regexp.MustCompile(`Egress: \d+ allowed, 0 denied`).MatchString(out) {
		eg := e.airlock("egress", r.ID)
		t.Errorf("the run tried to reach something:\n%s%s", eg.stdout, eg.stderr)
	}
	if got := e.git("log", "-1", "--format=%s", r.Branch); got != "Add hello.py" {
		t.Fatalf("run branch head = %q\n%s", got, out)
	}
	if got := e.git("show", r.Branch+":hello.py"); got != `print("Hello from airlock")` {
		t.Errorf("hello.py on the branch = %q", got)
	}

	// The real key reached the model server on every request, in the
	// header OpenAI reads; the main conversation advanced step by step.
	reqs := srv.Requests()
	var steps []int
	for _, q := range reqs {
		if got := q.Headers.Get("Authorization"); got != "Bearer "+key {
			t.Errorf("request %s %s carried Authorization %q, want the real key", q.Method, q.Path, got)
		}
		if q.Path != "/v1/chat/completions" || !q.Stream {
			t.Errorf("request %s %s stream=%v", q.Method, q.Path, q.Stream)
		}
		if q.NumTools > 0 {
			steps = append(steps, q.NumToolResults)
		}
	}
	if len(steps) != 4 || steps[0] != 0 || steps[3] != 3 {
		t.Errorf("tool results per main request = %v, want 0 1 2 3", steps)
	}

	// The sandbox never held the key: not in the agent's environment (the
	// env the script printed is in the transcript, with the placeholder),
	// not in any file the run left (transcript, home, workspace, bundle).
	raw := e.ok("logs", "--raw", r.ID).stdout
	if !strings.Contains(raw, "OPENAI_API_KEY=sk-proj-airlock-placeholder") {
		t.Errorf("the agent's environment (in the transcript) lacks the placeholder:\n%s", tail(raw, 20))
	}
	filepath.WalkDir(e.runDir(r.ID), func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(key)) {
			t.Errorf("the real key is in %s", path)
		}
		return nil
	})

	// logs renders opencode's run like any other: the tool calls, the
	// final text, the outcome.
	logs := e.ok("logs", r.ID).stdout
	for _, want := range []string{"apply_patch", "hello.py", "bash", "python3 hello.py", "git commit", "committed it", "succeeded"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}

	// The proxy metered what the server reported.
	if r.CostUSD <= 0 {
		t.Errorf("recorded cost = %v, want > 0 (metered by the proxy)", r.CostUSD)
	}
}

// opencodeServe starts srv where containers reach it and points the test's
// airlock at it with a key of the test's; it returns the key.
func opencodeServe(e *env, srv *testkit.ChatServer) string {
	e.t.Helper()
	url, err := srv.Start(e.gateway() + ":0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { srv.Close() })
	key := "sk-proj-e2e-opencode-" + strings.ReplaceAll(e.t.Name(), "/", "-")
	e.extra = []string{"OPENAI_API_KEY=" + key, "OPENAI_BASE_URL=" + url + "/v1"}
	return key
}

// A resumed opencode run continues the first run's conversation: the
// model sees both prompts.
func TestAgentOpencodeResume(t *testing.T) {
	e := newEnv(t)
	e.ok("image", "build", "--agent", "opencode")
	opencodeServe(e, testkit.NewChatServer(testkit.Script{Name: "first", FinalText: "FIRST-ANSWER"}))
	e.ok("run", "--agent", "opencode", "-m", "FIRST-TASK: say something.", "--name", "oc-resume")
	r := e.onlyRun()

	second := testkit.NewChatServer(testkit.Script{Name: "resumed", FinalText: "RESUMED-ANSWER"})
	opencodeServe(e, second)
	res := e.ok("run", "--resume", r.ID, "-m", "SECOND-TASK: go on.", "--name", "oc-resume-2")
	var sawBoth bool
	for _, q := range second.Requests() {
		sawBoth = sawBoth || q.NumTools > 0 && bytes.Contains(q.Body, []byte("FIRST-TASK")) && bytes.Contains(q.Body, []byte("FIRST-ANSWER")) && bytes.Contains(q.Body, []byte("SECOND-TASK"))
	}
	if !sawBoth {
		t.Errorf("no resumed request carried the first run's conversation and the new prompt (%d requests):\n%s", len(second.Requests()), res.stderr)
	}
	for _, x := range e.runs() {
		if x.Agent != "opencode" || x.Status != store.StatusSucceeded {
			t.Fatalf("run: %+v", x)
		}
	}
	if logs := e.ok("logs", "--raw", r.ID).stdout + e.ok("logs").stdout; !strings.Contains(logs, "RESUMED-ANSWER") {
		t.Errorf("logs lack the resumed answer:\n%s", logs)
	}
}
