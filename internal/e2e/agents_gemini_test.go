package e2e

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/budget"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// geminiModel is the model the Gemini tests ask for: a concrete one, so
// that the CLI does not first ask its `auto` router.
const geminiModel = "gemini-2.5-flash"

// geminiServer starts a scripted Gemini API reachable from containers and
// gives the test's airlock a Gemini API key and the server as its gateway.
// It returns the server and the key.
func geminiServer(e *env, s testkit.Script) (*testkit.GeminiServer, string) {
	e.t.Helper()
	srv := testkit.NewGeminiServer(s)
	url, err := srv.Start(e.gateway() + ":0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { srv.Close() })
	key := "AIza-e2e-gemini-" + strings.NewReplacer("/", "-", " ", "-").Replace(e.t.Name())
	e.extra = []string{"GEMINI_API_KEY=" + key, "GOOGLE_GEMINI_BASE_URL=" + url}
	return srv, key
}

// geminiImage builds (or finds) the Gemini CLI's image.
func geminiImage(e *env) {
	e.t.Helper()
	e.ok("image", "build", "--agent", "gemini")
}

// assertKeyNotInSandbox checks that the key is nowhere the sandbox could
// read or write: the container's command line and environment, the run's
// directory on the host (the agent's home, its transcript, the bundle),
// and the repository.
func assertKeyNotInSandbox(t *testing.T, e *env, r store.Run, key string) {
	t.Helper()
	inspect, err := exec.Command("docker", "inspect", "--format", "{{json .Path}} {{json .Args}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.Env}}", r.Container).CombinedOutput()
	if err != nil {
		t.Fatalf("docker inspect: %v\n%s", err, inspect)
	}
	if strings.Contains(string(inspect), key) {
		t.Errorf("the key is in the agent container's command line or environment: %s", inspect)
	}
	if !strings.Contains(string(inspect), "GEMINI_API_KEY=") || !strings.Contains(string(inspect), "GOOGLE_GEMINI_BASE_URL=") {
		t.Errorf("the agent's environment lacks the placeholder key or the base URL: %s", inspect)
	}
	runDir := filepath.Join(e.state, "airlock", "runs", r.ID)
	filepath.Walk(runDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if data, _ := os.ReadFile(p); bytes.Contains(data, []byte(key)) {
				t.Errorf("the key is in %s", p)
			}
		}
		return nil
	})
	if out, _ := exec.Command("git", "-C", e.repo, "log", "--all", "-p").CombinedOutput(); bytes.Contains(out, []byte(key)) {
		t.Error("the key is in the repository")
	}
}

// The real Gemini CLI runs the 4-step task in its sandbox against the
// scripted Gemini API, through the egress proxy: the commit comes back on
// the run's branch, the key is injected by the proxy and never seen inside,
// `airlock logs` shows the tool calls and the final answer, and the proxy
// meters the usage the API reported at Gemini's prices.
func TestAgentGemini(t *testing.T) {
	e := newEnv(t)
	geminiImage(e)
	srv, key := geminiServer(e, testkit.GeminiDemoScript("/workspace"))

	res := e.ok("run", "--agent", "gemini", "--model", geminiModel, "-m", "Write hello.py, run it, commit it.", "--name", "gemini-hello")
	out := res.stdout + res.stderr
	for _, want := range []string{"write_file", "run_shell_command", "python3 hello.py", "succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}

	runs := e.runs()
	if len(runs) != 1 || runs[0].Status != store.StatusSucceeded {
		t.Fatalf("runs = %+v", runs)
	}
	r := runs[0]
	if r.Agent != "gemini" {
		t.Errorf("run agent = %q, want gemini", r.Agent)
	}
	if got := e.git("log", "-1", "--format=%s", r.Branch); got != "Add hello.py" {
		t.Fatalf("run branch head = %q", got)
	}
	if got := e.git("show", r.Branch+":hello.py"); got != `print("Hello from airlock")` {
		t.Errorf("hello.py on the branch = %q", got)
	}

	// The server saw the real key on every request, in x-goog-api-key, and
	// the CLI's requests were the streamed ones for the model asked for.
	reqs := srv.Requests()
	main := 0
	for i, q := range reqs {
		if got := q.Headers.Get("X-Goog-Api-Key"); got != key {
			t.Errorf("request %d (%s) carried x-goog-api-key %q, want the test's key", i, q.Path, got)
		}
		if q.Headers.Get("Authorization") != "" || strings.Contains(q.Query, "key=") {
			t.Errorf("request %d carried another credential: auth %q query %q", i, q.Headers.Get("Authorization"), q.Query)
		}
		if q.NumTools > 0 {
			main++
			if q.Model != geminiModel || !q.Stream {
				t.Errorf("request %d: model %q stream %v", i, q.Model, q.Stream)
			}
		}
	}
	if main < 4 {
		t.Errorf("the server saw %d model requests with tools, want at least 4", main)
	}
	assertKeyNotInSandbox(t, e, r, key)
	// The CLI reaches nothing but the model API: no telemetry, no update
	// check (the allowlist has no host for it).
	if r.EgressDenied != 0 || r.EgressAllowed != len(reqs) {
		t.Errorf("egress: %d allowed, %d denied; want only the %d model API requests", r.EgressAllowed, r.EgressDenied, len(reqs))
	}

	logs := e.ok("logs", r.ID).stdout
	for _, want := range []string{"write_file", "run_shell_command", "python3 hello.py", `Created hello.py, which prints "Hello from airlock", and committed it.`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}

	// The meter holds exactly what the API reported, priced as Gemini 2.5
	// Flash (not as an unknown model).
	var want budget.Usage
	for _, s := range srv.Sent() {
		want.Input += s.Prompt - s.Cached
		want.CacheRead += s.Cached
		want.Output += s.All - s.Prompt
	}
	m, err := egress.ReadMeter(filepath.Join(e.state, "airlock", "runs", r.ID, "egress", egress.MeterFileName))
	if err != nil {
		t.Fatal(err)
	}
	if m.InputTokens != want.Input || m.OutputTokens != want.Output || m.CacheReadInputTokens != want.CacheRead || m.ModelRequests != len(srv.Sent()) {
		t.Errorf("meter = %+v, want %+v over %d requests", m, want, len(srv.Sent()))
	}
	cost := budget.PriceOf(geminiModel).Cost(want)
	if cost <= 0 || math.Abs(m.CostUSD-cost) > 1e-9 || math.Abs(r.CostUSD-cost) > 1e-9 {
		t.Errorf("cost: meter %v, run %v, want %v", m.CostUSD, r.CostUSD, cost)
	}
}

// The agent sends a key of its choosing in the query string (where the
// Gemini API also reads one) and in the header: neither reaches the API,
// which sees only the real key.
func TestHostileGeminiKeyInQuery(t *testing.T) {
	e := newEnv(t)
	geminiImage(e)
	const body = `{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}`
	var cmds []string
	for _, q := range []string{"key=AIza-smuggled-1", "alt=sse&KEY=AIza-smuggled-2", "%6Bey=AIza-smuggled-3&access_token=smuggled-4"} {
		cmds = append(cmds, "curl -s -o /dev/null -w '%{http_code} ' -X POST "+
			"'http://127.0.0.1:3129/v1beta/models/gemini-2.5-flash:generateContent?"+q+"' "+
			"-H 'x-goog-api-key: AIza-smuggled-header' -H 'content-type: application/json' -d '"+body+"'")
	}
	script := testkit.Script{
		Name: "smuggle",
		Steps: []testkit.Step{{
			Text:  "Using my own key.",
			Tool:  "run_shell_command",
			Input: map[string]any{"command": strings.Join(cmds, "; ")},
		}},
		FinalText: "Sent.",
	}
	srv, key := geminiServer(e, script)
	e.ok("run", "--agent", "gemini", "--model", geminiModel, "-m", "Use your own key.", "--name", "smuggle")

	reqs := srv.Requests()
	side := 0
	for i, q := range reqs {
		all := q.Query + " " + q.Headers.Get("X-Goog-Api-Key") + " " + q.Headers.Get("Authorization")
		if strings.Contains(all, "smuggled") {
			t.Errorf("request %d reached the API with the agent's key: query %q headers %v", i, q.Query, q.Headers)
		}
		if q.Headers.Get("X-Goog-Api-Key") != key {
			t.Errorf("request %d without the real key", i)
		}
		if q.NumTools == 0 && strings.HasSuffix(q.Path, ":generateContent") {
			side++
		}
	}
	if side < 3 {
		t.Errorf("the agent's own requests did not get through (%d of 3): the test proves nothing", side)
	}
	r := e.runs()[0]
	logs := e.ok("logs", "-v", "2", r.ID).stdout
	if !strings.Contains(logs, "200 200 200") {
		t.Errorf("the agent's requests were not answered:\n%s", logs)
	}
	assertKeyNotInSandbox(t, e, r, key)
}

// Max turns and max cost stop an endless Gemini run: the proxy refuses the
// next model request and the run stops on its budget, in good time (the
// CLI does not retry the refusal for minutes).
func TestAgentGeminiBudget(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		reason string
	}{
		{"max turns", []string{"--max-turns", "3"}, "budget: reached max turns (3)"},
		{"max cost", []string{"--max-cost", "0.05", "--model", "gemini-2.5-pro"}, "budget: reached the cost limit of $0.05"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			geminiImage(e)
			srv, _ := geminiServer(e, testkit.EndlessScript())
			args := append([]string{"run", "--agent", "gemini", "-m", "Never stop.", "--name", "endless"}, tt.args...)
			if !slices.Contains(tt.args, "--model") {
				args = append(args, "--model", geminiModel)
			}
			start := time.Now()
			res := e.airlock(args...)
			if res.code != 3 {
				t.Fatalf("run exit = %d, want 3\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
			}
			if d := time.Since(start); d > 2*time.Minute {
				t.Errorf("the budget took %s to stop the run", d)
			}
			r := e.onlyRun()
			if r.Status != store.StatusStopped || r.StopReason != "budget" || !strings.HasPrefix(r.Error, tt.reason) {
				// What the proxy saw, for a failure that does not repeat.
				t.Logf("logs:\n%s\nmeter: $%.4f after %d requests%s", e.airlock("logs", "-v", "2", r.ID).stdout, r.CostUSD, len(srv.Requests()), e.egressLogs())
				t.Fatalf("run = status %s, stop reason %q, error %q; want stopped, budget, %q", r.Status, r.StopReason, r.Error, tt.reason)
			}
			if tt.name == "max turns" && (r.Turns != 3 || len(srv.Requests()) != 3) {
				t.Errorf("%d turns metered, %d requests reached the model; want 3", r.Turns, len(srv.Requests()))
			}
			if tt.name == "max cost" && r.CostUSD < 0.05 {
				t.Errorf("stopped at $%v, under the limit", r.CostUSD)
			}
			t.Logf("stopped after %s, %d requests, $%.4f", time.Since(start).Round(time.Second), len(srv.Requests()), r.CostUSD)
		})
	}
}

// TestAgentGeminiResume: a Gemini CLI run's sessions (~/.gemini/tmp, kept
// when the run ends) go into the resumed run's home, and the CLI continues
// the session (--resume=<id>): the model sees the first run's conversation.
func TestAgentGeminiResume(t *testing.T) {
	e := newEnv(t)
	geminiImage(e)
	geminiServer(e, testkit.GeminiDemoScript("/workspace"))
	e.ok("run", "--agent", "gemini", "--model", geminiModel, "-m", "FIRST-TASK: write hello.py, run it, commit it.", "--name", "gemini-resume")
	r := e.onlyRun()

	second, _ := geminiServer(e, testkit.Script{Name: "resumed", FinalText: "RESUMED-ANSWER"})
	res := e.ok("run", "--resume", r.ID, "-m", "SECOND-TASK: go on.", "--name", "gemini-resume-2")
	var sawBoth bool
	for _, q := range second.Requests() {
		sawBoth = sawBoth || bytes.Contains(q.Body, []byte("FIRST-TASK")) && bytes.Contains(q.Body, []byte("SECOND-TASK"))
	}
	if !sawBoth {
		t.Errorf("no resumed request carried the first run's conversation and the new prompt (%d requests):\n%s", len(second.Requests()), res.stderr)
	}
	for _, x := range e.runs() {
		if x.ID != r.ID && (x.Agent != "gemini" || x.Status != store.StatusSucceeded) {
			t.Fatalf("resumed run: %+v", x)
		}
	}
}
