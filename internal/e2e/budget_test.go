package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// A never-ending agent is stopped by each budget, inside the sandbox, and
// recorded as stopped: budget with the reason, which logs shows.
func TestBudgets(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		reason string
	}{
		{"max turns", []string{"--max-turns", "3"}, "budget: reached max turns (3)"},
		{"timeout", []string{"--timeout", "6s"}, "budget: reached the timeout of 6s"},
		{"max cost", []string{"--max-cost", "0.25"}, "budget: reached the cost limit of $0.25"},
	}
	for _, k := range hostEngines {
		t.Run(k.String(), func(t *testing.T) {
			for _, tt := range tests {
				// Every budget stops the run the same way (the host stops
				// its container): on the other engines one budget shows it.
				if k != onDocker && tt.name != "max turns" {
					continue
				}
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					budgetStop(t, newEnvOn(t, k), tt.args, tt.reason, tt.name == "max turns")
				})
			}
		})
	}
}

// budgetStop runs a never-ending agent under the budget args and checks
// that it was stopped for reason.
func budgetStop(t *testing.T, e *env, args []string, reason string, wantTurns bool) {
	e.server(testkit.EndlessScript())
	start := time.Now()
	res := e.airlock(append([]string{"run", "-m", "Never stop.", "--name", "endless"}, args...)...)
	if res.code != 3 {
		t.Fatalf("run exit = %d, want 3\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	r := e.runs()[0]
	// From the agent's start, not the command's: on a loaded machine
	// making the run (its copy, its containers) alone took minutes.
	if d := r.FinishedAt.Sub(r.StartedAt); r.StartedAt.IsZero() || d > 2*time.Minute {
		t.Errorf("the budget took %s from the agent's start to stop the run (the command: %s)\nstderr:\n%s", d, time.Since(start), res.stderr)
	}
	if r.Status != store.StatusStopped || r.StopReason != "budget" || !strings.HasPrefix(r.Error, reason) {
		t.Fatalf("run = status %s, stop reason %q, error %q; want stopped, budget, %q", r.Status, r.StopReason, r.Error, reason)
	}
	if r.Turns == 0 && wantTurns {
		t.Errorf("no turns recorded")
	}
	logs := e.ok("logs", r.ID).stdout
	if !strings.Contains(logs, "stopped") || !strings.Contains(logs, reason) {
		t.Errorf("logs do not show the budget stop:\n%s", logs)
	}
}

// The budget holds for a detached run: its watcher stops it on time.
func TestBudgetDetached(t *testing.T) { onEngines(t, hostEngines, budgetDetached) }

func budgetDetached(t *testing.T, e *env) {
	e.server(testkit.EndlessScript())
	id := strings.TrimSpace(e.ok("run", "-d", "-m", "Never stop.", "--name", "detached-endless", "--timeout", "5s").stdout)
	e.waitContainer("airlock-"+id, 2*time.Minute)
	if r := waitStatus(t, e, id); r.Status != store.StatusStopped || r.StopReason != "budget" || !strings.Contains(r.Error, "reached the timeout of 5s") {
		t.Fatalf("run = %s (%s): %s", r.Status, r.StopReason, r.Error)
	}
}

// A batch of four with -j 2 never has more than two agents at once, and
// every line of its output names its run. On Docker only: a batch's scheduling is the host's, and each engine
// running runs at once is TestPodmanRootlessManyAtOnce's,
// TestDetachedRunsShareOneWatcher's and the core's.
func TestBatchJobs(t *testing.T) { onEngines(t, []engineKind{onDocker}, batchJobs) }

func batchJobs(t *testing.T, e *env) {
	e.server(testkit.SleepScript(4))
	tasks := []string{"alpha", "bravo", "charlie", "delta"}
	for _, name := range tasks {
		e.write(".airlock/prompts/"+name+".md", "Wait a moment.\n")
	}
	e.git("add", ".")
	e.git("commit", "-qm", "prompts")

	res, most := e.mostAgents(append([]string{"run", "-j", "2"}, tasks...)...)
	if res.code != 0 {
		t.Fatalf("batch exit = %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	if most != 2 {
		t.Errorf("at most %d agents ran at once, want 2 (-j 2)", most)
	}
	runs := e.runs()
	if len(runs) != 4 {
		t.Fatalf("%d runs, want 4", len(runs))
	}
	for _, r := range runs {
		if r.Status != store.StatusSucceeded {
			t.Errorf("run %s: %s %s", r.ID, r.Status, r.Error)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(res.stdout), "\n") {
		name, _, _ := strings.Cut(line, " ")
		if !strings.Contains(strings.Join(tasks, " "), name) || name == "" {
			t.Errorf("output line not prefixed with its run: %q", line)
		}
	}
	for _, name := range tasks {
		if !strings.Contains(res.stderr, name) || !strings.Contains(res.stderr, "succeeded") {
			t.Errorf("closing table lacks %s:\n%s", name, res.stderr)
		}
	}
}

// A batch with one bad prompt starts nothing; -d prints one ID per line;
// a batch with a failed run exits 3.
func TestBatchValidationAndStatus(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.DemoScript())
	e.write(".airlock/prompts/good.md", "Write hello.py.\n")
	e.write(".airlock/prompts/bad.md", "---\nmax_turns: lots\n---\nBroken.\n")
	e.git("add", ".")
	e.git("commit", "-qm", "prompts")

	res := e.airlock("run", "good", "bad", "missing")
	if res.code == 0 || !strings.Contains(res.stderr, "bad") {
		t.Fatalf("a batch with a bad prompt: exit %d\n%s", res.code, res.stderr)
	}
	if runs := e.runs(); len(runs) != 0 {
		t.Fatalf("a rejected batch started %d runs", len(runs))
	}

	res = e.ok("run", "-d", "good", "good")
	ids := strings.Fields(res.stdout)
	if len(ids) != 2 || !strings.HasPrefix(ids[0], "good-") || ids[0] == ids[1] {
		t.Fatalf("run -d of two tasks printed %q, want two run IDs", res.stdout)
	}
	for _, id := range ids {
		e.ok("wait", id)
	}

	e.server(testkit.FailScript())
	if res := e.airlock("run", "good", "good", "-j", "2"); res.code != 3 {
		t.Fatalf("a batch of failing runs: exit %d, want 3\n%s", res.code, res.stderr)
	}
}

// Runs of a project share its caches; another project's runs do not see
// them.
func TestCaches(t *testing.T) { onEngines(t, hostEngines, caches) }

func caches(t *testing.T, e *env) {
	e.write(".airlock/config.toml", "[sandbox]\ncaches = [\"npm\"]\n")
	e.git("add", ".")
	e.git("commit", "-qm", "config")
	const marker = "/home/agent/.npm/airlock-marker"

	e.server(testkit.CacheWriteScript(marker, "from the first run"))
	e.ok("run", "-m", "Fill the cache.", "--name", "fill")

	e.server(testkit.CacheReadScript(marker))
	e.ok("run", "-m", "Read the cache.", "--name", "read")
	r := e.runs()[0]
	if got := e.git("show", r.Branch+":seen.txt"); got != "from the first run" {
		t.Errorf("the second run of the project saw %q in its npm cache, want the first run's file", got)
	}

	// Another project, same state directory, same cache setting.
	other := newEnvOn(t, e.engine)
	other.state = e.state
	other.extra = e.extra
	other.write(".airlock/config.toml", "[sandbox]\ncaches = [\"npm\"]\n")
	other.git("add", ".")
	other.git("commit", "-qm", "config")
	other.ok("run", "-m", "Read the cache.", "--name", "other")
	var or store.Run
	for _, run := range other.runs() {
		if run.Project == other.repo {
			or = run
		}
	}
	if got := other.git("show", or.Branch+":seen.txt"); got != "missing" {
		t.Errorf("another project's run saw %q in its npm cache, want nothing", got)
	}

	if res := e.airlock("run", "-m", "x", "--cache", "maven"); res.code != 2 || !strings.Contains(res.stderr, `unknown cache "maven"`) {
		t.Errorf("--cache maven: exit %d\n%s", res.code, res.stderr)
	}
}

// The webhook gets one POST per finished run, from the attached run or
// from the detached watcher, whichever records the end. On Docker only:
// what is posted comes from the run's record, whatever the engine.
func TestWebhook(t *testing.T) { onEngines(t, []engineKind{onDocker}, webhookPosts) }

func webhookPosts(t *testing.T, e *env) {
	e.server(testkit.DemoScript())
	var mu sync.Mutex
	var got []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(body, &m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	defer hook.Close()
	posts := func() []map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]any(nil), got...)
	}
	e.write(".airlock/config.toml", "[notify]\nwebhook = \""+hook.URL+"/airlock\"\n")
	e.git("add", ".")
	e.git("commit", "-qm", "config")

	e.ok("run", "-m", "Write hello.py.", "--name", "attached")
	e.ok("ls")
	p := posts()
	if len(p) != 1 {
		t.Fatalf("%d webhook posts after an attached run, want 1: %v", len(p), p)
	}
	r := e.runs()[0]
	if p[0]["run"] != r.ID || p[0]["status"] != "succeeded" || p[0]["event"] != "finished" || p[0]["project"] != e.repo || p[0]["turns"].(float64) == 0 {
		t.Errorf("webhook body = %v", p[0])
	}

	// Detached: nobody runs another command; the watcher notifies.
	id := strings.TrimSpace(e.ok("run", "-d", "-m", "Write hello.py.", "--name", "detached").stdout)
	deadline := time.Now().Add(2 * time.Minute)
	for len(posts()) < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	p = posts()
	if len(p) != 2 || p[1]["run"] != id || p[1]["status"] != "succeeded" {
		t.Fatalf("webhook posts after a detached run = %v", p)
	}
	e.ok("wait", id)
	e.ok("ls")
	if n := len(posts()); n != 2 {
		t.Errorf("%d webhook posts after wait and ls, want still 2", n)
	}
	waitWatchers(t, e)
}

// waitWatchers waits until no `airlock watcher` of the test's runs is left,
// so the test's directories can be removed.
func waitWatchers(t *testing.T, e *env) {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		out, _ := exec.Command("pgrep", "-f", shared.bin+" watcher ").Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
