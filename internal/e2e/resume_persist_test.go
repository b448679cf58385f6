package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

func (e *env) run(id string) store.Run {
	e.t.Helper()
	for _, r := range e.runs() {
		if r.ID == id || r.Name == id {
			return r
		}
	}
	e.t.Fatalf("no run %s in ls", id)
	return store.Run{}
}

func (e *env) runDir(id string) string {
	return filepath.Join(e.state, "airlock", "runs", id)
}

// mainRequests are the requests that carry the conversation (side requests
// offer no tools).
func mainRequests(reqs []testkit.Request) []testkit.Request {
	var out []testkit.Request
	for _, r := range reqs {
		if r.NumTools > 0 {
			out = append(out, r)
		}
	}
	return out
}

// A run continued with --resume carries the earlier run's conversation in
// its requests to the model, under the same session id, with fresh
// credentials; the conversation outlives rm; lost state and other
// projects' runs are refused, creating nothing.
func TestResumeContinuesConversation(t *testing.T) { resumeContinuesConversation(t, newEnv(t)) }

func resumeContinuesConversation(t *testing.T, e *env) {
	srv, _ := e.server(testkit.Script{
		Name:      "remember",
		Steps:     []testkit.Step{{Text: "Noted.", Tool: "Bash", Input: bash("echo first-run-tool-output")}},
		FinalText: "I will remember it.",
	})
	word := "PINEAPPLE-" + randHex(8)
	e.ok("run", "-y", "-m", "Remember the word "+word, "--name", "first")
	first := e.run("first")
	before := len(srv.Requests())

	question := "Which word did I ask you to remember? " + randHex(6)
	setAPIKey(e, "sk-ant-e2e-second-key-"+randHex(12))
	e.ok("run", "-y", "-m", question, "--name", "second", "--resume", "first")
	second := e.run("second")
	if second.Status != store.StatusSucceeded {
		t.Fatalf("resumed run: %s (%s)", second.Status, second.Error)
	}
	if second.ResumedFrom != first.ID || second.SessionID != first.SessionID {
		t.Fatalf("resumed run: resumed_from=%q session=%q, want %q and %q", second.ResumedFrom, second.SessionID, first.ID, first.SessionID)
	}
	reqs := mainRequests(srv.Requests()[before:])
	if len(reqs) == 0 {
		t.Fatal("the resumed run made no requests")
	}
	body := string(reqs[0].Body)
	for _, want := range []string{word, "first-run-tool-output", question} {
		if !strings.Contains(body, want) {
			t.Errorf("the resumed run's first request lacks %q", want)
		}
	}
	if got := reqs[0].APIKey(); !strings.HasPrefix(got, "sk-ant-e2e-second-key-") {
		t.Errorf("the resumed run used key %q, want the new credentials", got)
	}
	// Claude Code continues the same session: one transcript, both turns.
	transcript, err := os.ReadFile(filepath.Join(e.runDir(second.ID), "home", ".claude", "projects", "-workspace", first.SessionID+".jsonl"))
	if err != nil {
		t.Fatalf("the resumed run's session transcript: %v", err)
	}
	if !bytes.Contains(transcript, []byte(word)) || !bytes.Contains(transcript, []byte(question)) {
		t.Error("the resumed session's transcript does not hold both runs' prompts")
	}

	// rm keeps the conversation, as it keeps the logs.
	e.ok("rm", "-y", "first")
	if _, err := os.Stat(filepath.Join(e.runDir(first.ID), "session", first.SessionID+".jsonl")); err != nil {
		t.Fatalf("rm did not keep the conversation: %v", err)
	}
	before = len(srv.Requests())
	e.ok("run", "-y", "-m", "Once more.", "--name", "third", "--resume", first.ID)
	if reqs := mainRequests(srv.Requests()[before:]); len(reqs) == 0 || !strings.Contains(string(reqs[0].Body), word) {
		t.Error("a run resumed from a removed run does not see its conversation")
	}

	count := len(e.runs())
	// Lost state: one clear error, nothing created.
	if err := os.RemoveAll(filepath.Join(e.runDir(first.ID), "session")); err != nil {
		t.Fatal(err)
	}
	res := e.airlock("run", "-y", "-m", "Again.", "--name", "lost", "--resume", first.ID)
	if res.code == 0 || !strings.Contains(res.stderr, "conversation was not kept") {
		t.Fatalf("resume of lost state: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	// Another project's run, named explicitly: refused.
	other := *e
	other.repo = filepath.Join(t.TempDir(), "other")
	other.initRepo()
	other.ok("run", "-y", "-m", "Elsewhere.", "--name", "elsewhere")
	elsewhere := other.run("elsewhere")
	res = e.airlock("run", "-y", "-m", "Mix.", "--name", "mixed", "--resume", elsewhere.ID)
	if res.code == 0 || !strings.Contains(res.stderr, "not to this project") {
		t.Fatalf("resume of another project's run: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	if got := len(e.runs()); got != count {
		t.Fatalf("refused resumes left runs behind: %d runs, want %d", got, count)
	}
}

// A tool installed in a persistent container survives the agent's exit, a
// clean, and start: the restarted agent (continuing its conversation) runs
// it, and its new commits are collected.
func TestPersistentContainerKeepsInstalledTool(t *testing.T) {
	persistentContainerKeepsInstalledTool(t, newEnv(t))
}

func persistentContainerKeepsInstalledTool(t *testing.T, e *env) {
	greeting := "tool says hi " + randHex(8)
	e.write("tool/package.json", `{"name":"airlock-e2e-tool","version":"1.0.0","bin":{"airlock-e2e-tool":"cli.js"}}`+"\n")
	e.write("tool/cli.js", "#!/usr/bin/env node\nconsole.log("+`"`+greeting+`"`+")\n")
	e.git("add", ".")
	e.git("commit", "-qm", "Add a tool")

	srv, url := e.server(testkit.InstallToolScript("tool"))
	e.ok("run", "-y", "--persistent", "-m", "Install the tool.", "--name", "tools")
	r := e.run("tools")
	if r.Status != store.StatusSucceeded || !r.Persistent {
		t.Fatalf("first leg: status %s persistent %v (%s)", r.Status, r.Persistent, r.Error)
	}
	eng, err := e.sandboxEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	if st, err := eng.Inspect(ctx, r.Container); err != nil || st.Status != sandbox.StatusExited {
		t.Fatalf("the persistent container after the run: %+v, %v", st, err)
	}
	e.ok("clean")
	if _, err := eng.Inspect(ctx, r.Container); err != nil {
		t.Fatalf("clean removed the persistent container: %v", err)
	}

	// The same model address, now answering the continued conversation.
	srv.Close()
	next := testkit.NewServer(testkit.Resumed(1, testkit.UseToolScript("airlock-e2e-tool")))
	if _, err := next.Start(strings.TrimPrefix(url, "http://")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })

	res := e.ok("start", "tools", "-m", "Run the tool and commit its output.")
	if strings.TrimSpace(res.stdout) != r.ID {
		t.Fatalf("start printed %q, want %s", res.stdout, r.ID)
	}
	e.ok("wait", "tools")
	r = e.run("tools")
	if r.Status != store.StatusSucceeded {
		t.Fatalf("second leg: %s (%s)\n%s", r.Status, r.Error, e.airlock("logs", "tools").stdout)
	}
	if got := e.git("show", r.Branch+":tool-output.txt"); got != greeting {
		t.Fatalf("tool-output.txt on %s = %q, want %q", r.Branch, got, greeting)
	}
	if _, err := os.Stat(filepath.Join(e.runDir(r.ID), "log", "agent.jsonl.1")); err != nil {
		t.Errorf("the first leg's transcript was not kept: %v", err)
	}
	if reqs := mainRequests(next.Requests()); len(reqs) == 0 || !strings.Contains(string(reqs[0].Body), "Install the tool.") {
		t.Error("the restarted agent did not continue its conversation")
	}
}

// stop (graceful, --all) and kill (at once) keep the work; clean removes
// stopped non-persistent containers, its own orphans and unused egress
// networks, and leaves persistent containers, unmerged work, other
// registries' containers and users' networks alone.
func TestStopKillClean(t *testing.T) { stopKillClean(t, newEnv(t)) }

func stopKillClean(t *testing.T, e *env) {
	e.server(testkit.EndlessScript())
	for _, args := range [][]string{
		{"--name", "a"}, {"--name", "b"}, {"--name", "c", "--persistent"},
	} {
		e.ok(append([]string{"run", "-y", "-d", "-m", "Keep going."}, args...)...)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		running := 0
		for _, r := range e.runs() {
			if r.Status == store.StatusRunning {
				running++
			}
		}
		if running == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the runs never all started: %+v", e.runs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	start := time.Now()
	e.ok("kill", "a")
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("kill took %s", d)
	}
	if r := e.run("a"); r.Status != store.StatusStopped || r.StopReason != "user" || r.Error != "killed by the user" || !r.Harvested {
		t.Fatalf("killed run: %+v", r)
	}
	if res := e.airlock("start", "a"); res.code == 0 || !strings.Contains(res.stderr, "not persistent") {
		t.Fatalf("start of a non-persistent run: exit %d\n%s", res.code, res.stderr)
	}
	e.ok("stop", "--all", "--timeout", "5s")
	for _, name := range []string{"b", "c"} {
		if r := e.run(name); r.Status != store.StatusStopped || r.StopReason != "user" || !r.Harvested {
			t.Fatalf("run %s after stop --all: %+v", name, r)
		}
	}
	if res := e.ok("stop", "--all"); !strings.Contains(res.stderr, "No running agents") {
		t.Errorf("stop --all with nothing running: %q", res.stderr)
	}

	// A finished run with unmerged commits.
	e.server(testkit.DemoScript())
	e.ok("run", "-y", "-m", "Write hello.py.", "--name", "d")
	d := e.run("d")

	ctx := context.Background()
	eng, err := sandbox.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	tag := randHex(8)
	ours := "airlock-e2e-orphan-" + tag
	foreign := "airlock-e2e-foreign-" + tag
	for name, reg := range map[string]string{ours: filepath.Join(e.state, "airlock"), foreign: "/elsewhere/airlock"} {
		docker(t, "create", "--name", name, "--label", "airlock.run=gone-"+tag, "--label", "airlock.role=agent",
			"--label", "airlock.store="+reg, d.Image, "true")
		t.Cleanup(func() { exec.Command("docker", "rm", "-f", name).Run() })
	}
	airlockNet, userNet := "airlock-e2e-net-"+tag, "e2e-user-net-"+tag
	docker(t, "network", "create", "--label", "airlock.role=egress", airlockNet)
	docker(t, "network", "create", userNet)
	t.Cleanup(func() { exec.Command("docker", "network", "rm", airlockNet, userNet).Run() })

	res := e.ok("clean")
	gone := func(name string) bool {
		_, err := eng.Inspect(ctx, name)
		if err != nil && !errors.Is(err, sandbox.ErrNotFound) {
			t.Fatal(err)
		}
		return err != nil
	}
	for _, name := range []string{"airlock-" + e.run("a").ID, "airlock-" + e.run("b").ID, "airlock-" + d.ID, ours} {
		if !gone(name) {
			t.Errorf("clean left %s\n%s", name, res.stderr)
		}
	}
	for _, name := range []string{"airlock-" + e.run("c").ID, foreign} {
		if gone(name) {
			t.Errorf("clean removed %s", name)
		}
	}
	if err := exec.Command("docker", "network", "inspect", airlockNet).Run(); err == nil {
		t.Errorf("clean left the unused airlock network %s", airlockNet)
	}
	if err := exec.Command("docker", "network", "inspect", userNet).Run(); err != nil {
		t.Errorf("clean removed the user's network: %v", err)
	}
	// The work is all still there.
	if got := e.git("log", "-1", "--format=%s", d.Branch); got != "Add hello.py" {
		t.Fatalf("after clean, %s = %q", d.Branch, got)
	}
	if diff := e.ok("diff", "d").stdout; !strings.Contains(diff, "hello.py") {
		t.Fatalf("diff after clean:\n%s", diff)
	}

	// The persistent run comes back after clean, and kill stops it again.
	e.server(testkit.EndlessScript())
	e.ok("start", "c")
	if r := e.run("c"); r.Status != store.StatusRunning {
		t.Fatalf("after start: %+v", r)
	}
	e.ok("kill", "--all")
	if r := e.run("c"); r.Status != store.StatusStopped || r.Error != "killed by the user" {
		t.Fatalf("after kill --all: %+v", r)
	}
}

func docker(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("docker", args...).CombinedOutput(); err != nil {
		t.Fatalf("docker %v: %v\n%s", args, err, out)
	}
}
