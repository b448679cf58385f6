package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

func bash(cmd string) map[string]any { return map[string]any{"command": cmd, "description": "step"} }

// (a) The agent writes and commits; merge brings the commit onto the
// user's branch.
func TestWriteCommitMerge(t *testing.T) { writeCommitMerge(t, newEnv(t)) }

func writeCommitMerge(t *testing.T, e *env) {
	srv, _ := e.server(testkit.DemoScript())

	res := e.ok("run", "-m", "Write hello.py, run it, commit it.", "--name", "hello")
	out := res.stdout + res.stderr
	for _, want := range []string{"Write", "python3 hello.py", "succeeded"} {
		if !strings.Contains(out, want) {
			t.Errorf("run output lacks %q:\n%s", want, out)
		}
	}
	key := "sk-ant-e2e-" + t.Name()
	sawKey := false
	for _, r := range srv.Requests() {
		sawKey = sawKey || r.APIKey() == key
	}
	if !sawKey {
		t.Errorf("the model server never received the API key")
	}

	runs := e.runs()
	if len(runs) != 1 || runs[0].Status != store.StatusSucceeded {
		t.Fatalf("runs = %+v", runs)
	}
	r := runs[0]
	if r.Turns == 0 || r.SessionID == "" || r.Branch != "airlock/"+r.ID {
		t.Errorf("record lacks details: %+v", r)
	}
	// The user's branch is untouched until merge.
	if e.git("log", "-1", "--format=%s", "main") != "initial" {
		t.Fatalf("main moved before merge")
	}
	if got := e.git("log", "-1", "--format=%s", r.Branch); got != "Add hello.py" {
		t.Fatalf("run branch head = %q", got)
	}
	diff := e.ok("diff").stdout
	if !strings.Contains(diff, "hello.py") || !strings.Contains(diff, "Hello from airlock") {
		t.Errorf("diff lacks the new file:\n%s", diff)
	}
	if stat := e.ok("diff", "--stat").stdout; !strings.Contains(stat, "hello.py") || strings.Contains(stat, "Hello from airlock") {
		t.Errorf("diff --stat:\n%s", stat)
	}
	logs := e.ok("logs").stdout
	if !strings.Contains(logs, "Bash") || !strings.Contains(logs, "turns") {
		t.Errorf("logs lack tool lines or summary:\n%s", logs)
	}
	if raw := e.ok("logs", "--raw").stdout; !strings.Contains(raw, `"type":"result"`) {
		t.Errorf("logs --raw is not the transcript:\n%s", raw)
	}

	e.ok("merge")
	if got := e.git("log", "-1", "--format=%s"); got != "Add hello.py" {
		t.Fatalf("after merge HEAD is %q", got)
	}
	if data, err := os.ReadFile(filepath.Join(e.repo, "hello.py")); err != nil || !strings.Contains(string(data), "Hello from airlock") {
		t.Fatalf("hello.py not in the work tree: %v", err)
	}
	if st := e.runs()[0].Status; st != store.StatusMerged {
		t.Errorf("status after merge = %s", st)
	}

	e.ok("rm", "-y")
	if branches := e.git("branch", "--list", "airlock/*"); branches != "" {
		t.Errorf("branch left after rm: %s", branches)
	}
	if _, err := os.Stat(filepath.Join(e.state, "airlock", "runs", r.ID, "workspace")); !os.IsNotExist(err) {
		t.Errorf("copy left after rm: %v", err)
	}
	if logs := e.ok("logs", r.ID).stdout; !strings.Contains(logs, "Bash") {
		t.Errorf("logs gone after rm:\n%s", logs)
	}
	if ls := e.ok("ls").stdout; strings.Contains(ls, r.ID) {
		t.Errorf("removed run listed without -a:\n%s", ls)
	}
}

// (b) An agent that destroys its copy's history changes nothing in the
// user's repository.
func TestDestroyedCopyLeavesUserRepoUnchanged(t *testing.T) {
	destroyedCopyLeavesUserRepoUnchanged(t, newEnv(t))
}

func destroyedCopyLeavesUserRepoUnchanged(t *testing.T, e *env) {
	e.server(testkit.DestroyScript())
	e.git("branch", "feature")
	before := treeHash(t, e.repo)

	res := e.airlock("run", "-m", "Destroy the repository.", "--name", "destroy")
	if res.code != 0 && res.code != 3 {
		t.Fatalf("run: exit %d\n%s", res.code, res.stderr)
	}
	if after := treeHash(t, e.repo); after != before {
		t.Fatalf("the user's repository changed")
	}
	r := e.runs()[0]
	if r.HarvestError == "" || !strings.Contains(r.HarvestError, ".git") {
		t.Errorf("harvest error = %q, want one about the missing .git", r.HarvestError)
	}
	if logs := e.ok("logs").stdout; !strings.Contains(logs, "not brought back") {
		t.Errorf("logs do not say the work was lost:\n%s", logs)
	}
	// Nothing to lose, so rm needs no --force.
	e.ok("rm", "-y")
	if after := treeHash(t, e.repo); after != before {
		t.Fatalf("rm changed the user's repository")
	}
}

// (b) Hooks and config commands the agent plants in its copy never run on
// the host, through diff, merge or rm.
func TestPlantedHooksNeverRunOnHost(t *testing.T) { plantedHooksNeverRunOnHost(t, newEnv(t)) }

func plantedHooksNeverRunOnHost(t *testing.T, e *env) {
	markers := t.TempDir()
	e.server(testkit.PlantScript(filepath.Join(markers, "m")))

	e.ok("run", "-m", "Plant traps.", "--name", "plant")
	e.ok("diff")
	e.ok("diff", "--stat")
	e.ok("logs", "-v", "2")
	e.ok("ls")
	e.ok("merge")
	if got := e.git("log", "-1", "--format=%s"); got != "Add planted.txt" {
		t.Fatalf("merge did not bring the commit: HEAD is %q", got)
	}
	e.ok("rm", "-y")
	entries, _ := os.ReadDir(markers)
	for _, m := range entries {
		t.Errorf("host ran a planted command: %s", m.Name())
	}
}

// (c) The model API fails: the run is failed and logs say why.
func TestModelErrorFailsRun(t *testing.T) { modelErrorFailsRun(t, newEnv(t)) }

func modelErrorFailsRun(t *testing.T, e *env) {
	e.server(testkit.FailScript())
	res := e.airlock("run", "-m", "Anything.", "--name", "fails")
	if res.code != 3 {
		t.Fatalf("run: exit %d, want 3\n%s", res.code, res.stderr)
	}
	r := e.runs()[0]
	if r.Status != store.StatusFailed {
		t.Fatalf("status = %s", r.Status)
	}
	logs := e.ok("logs").stdout
	if !strings.Contains(logs, "scripted failure") {
		t.Errorf("logs do not show the API error:\n%s", logs)
	}
	if res := e.airlock("wait"); res.code != 3 {
		t.Errorf("wait on a failed run: exit %d, want 3", res.code)
	}
}

// Changes the agent leaves uncommitted are shown by diff and merged only
// when asked.
func TestUncommittedLeftovers(t *testing.T) { uncommittedLeftovers(t, newEnv(t)) }

func uncommittedLeftovers(t *testing.T, e *env) {
	e.server(testkit.Script{
		Name: "leftovers",
		Steps: []testkit.Step{
			{Tool: "Bash", Input: bash("echo committed > a.txt && git add a.txt && git commit -qm 'Add a.txt'")},
			{Tool: "Bash", Input: bash("echo draft > b.txt && echo changed >> README.md")},
		},
		FinalText: "Done, b.txt is not committed.",
	})
	e.ok("run", "-m", "Leave something uncommitted.", "--name", "leftovers")
	diff := e.ok("diff").stdout
	if !strings.Contains(diff, "a.txt") || !strings.Contains(diff, "b.txt") || !strings.Contains(strings.ToLower(diff), "uncommitted") {
		t.Fatalf("diff does not show committed and uncommitted changes:\n%s", diff)
	}
	// rm must not drop the unmerged work.
	if res := e.airlock("rm", "-y"); res.code == 0 || !strings.Contains(res.stderr, "--force") {
		t.Fatalf("rm of unmerged work: exit %d: %s", res.code, res.stderr)
	}
	e.ok("merge", "--include-uncommitted")
	for _, f := range []string{"a.txt", "b.txt"} {
		if _, err := os.Stat(filepath.Join(e.repo, f)); err != nil {
			t.Errorf("%s not merged: %v", f, err)
		}
	}
	if status := e.git("status", "--porcelain"); status != "" {
		t.Errorf("merge left the tree dirty:\n%s", status)
	}
	e.ok("rm", "-y")
}

// merge refuses, changing nothing, when the user's tree is dirty; rm keeps
// unmerged commits unless forced.
func TestMergeRefusesDirtyTreeAndRmProtectsWork(t *testing.T) {
	mergeRefusesDirtyTreeAndRmProtectsWork(t, newEnv(t))
}

func mergeRefusesDirtyTreeAndRmProtectsWork(t *testing.T, e *env) {
	e.server(testkit.DemoScript())
	e.ok("run", "-m", "Write hello.py.", "--name", "dirty")
	e.write("README.md", "# my uncommitted edit\n")
	head := e.git("rev-parse", "HEAD")
	res := e.airlock("merge")
	if res.code == 0 || !strings.Contains(res.stderr, "README.md") {
		t.Fatalf("merge on a dirty tree: exit %d: %s", res.code, res.stderr)
	}
	if e.git("rev-parse", "HEAD") != head {
		t.Fatal("a refused merge moved HEAD")
	}
	if data, _ := os.ReadFile(filepath.Join(e.repo, "README.md")); string(data) != "# my uncommitted edit\n" {
		t.Fatal("a refused merge touched the user's edit")
	}
	if res := e.airlock("rm", "-y"); res.code == 0 {
		t.Fatal("rm dropped unmerged work without --force")
	}
	if e.git("branch", "--list", "airlock/*") == "" {
		t.Fatal("refused rm removed the branch")
	}
	e.ok("rm", "-y", "--force")
	if e.git("branch", "--list", "airlock/*") != "" {
		t.Fatal("rm --force left the branch")
	}
}
