package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// A resumed run continues on the earlier run's work: its copy has the file
// the first run committed and the one it left uncommitted (still
// uncommitted), so the conversation, which refers to those edits, matches
// the workspace. The resumed run keeps the earlier run's name.
func TestResumeContinuesOnEarlierWork(t *testing.T) {
	e := newEnv(t)
	committed, draft := "committed-"+randHex(12), "draft-"+randHex(12)
	e.server(testkit.Script{
		Name: "write-proof",
		Steps: []testkit.Step{{Text: "Writing.", Tool: "Bash", Input: bash(
			"printf '%s\\n' " + committed + " > proof.txt && git add proof.txt && git commit -q -m 'add proof' && " +
				"printf '%s\\n' " + draft + " > draft.txt && echo written")}},
		FinalText: "Wrote proof.txt and a draft.",
	})
	e.ok("run", "-y", "-m", "Write the proof.", "--name", "proof")
	first := e.run("proof")
	if first.Status != store.StatusSucceeded || first.Head == "" || first.Head == first.BaseCommit || first.Uncommitted == "" {
		t.Fatalf("first run: %s head=%q base=%q uncommitted=%q (%s)", first.Status, first.Head, first.BaseCommit, first.Uncommitted, first.Error)
	}

	// The second conversation starts with one tool result (the first
	// run's), so it is answered from step 1: the agent looks at its copy.
	srv, _ := e.server(testkit.Script{
		Name: "check-proof",
		Steps: []testkit.Step{
			{Text: "unused", Tool: "Bash", Input: bash("true")},
			{Text: "Checking.", Tool: "Bash", Input: bash("sha256sum proof.txt draft.txt; git status --porcelain; git log -1 --format=%s")},
		},
		FinalText: "Checked.",
	})
	res := e.ok("run", "-y", "-m", "Check that your work is still there.", "--resume", "proof")
	var second store.Run
	for _, r := range e.runs() {
		if r.ResumedFrom == first.ID {
			second = r
		}
	}
	if second.ID == "" {
		t.Fatalf("no resumed run in ls; stderr:\n%s", res.stderr)
	}
	if second.Name != "proof" {
		t.Errorf("resumed run named %q, want the earlier run's name, proof", second.Name)
	}
	if second.BaseCommit != first.Head || second.BaseBranch != first.Branch {
		t.Errorf("resumed run based on %s (%s), want the first run's head %s (%s)", second.BaseBranch, second.BaseCommit, first.Head, first.Branch)
	}
	reqs := mainRequests(srv.Requests())
	if len(reqs) == 0 {
		t.Fatal("the resumed run made no requests")
	}
	// What the agent's Bash step saw in its workspace comes back to the
	// model as the tool result: both files, the draft still uncommitted.
	last := string(reqs[len(reqs)-1].Body)
	for what, want := range map[string]string{
		"the committed file":   sum(committed+"\n") + "  proof.txt",
		"the uncommitted file": sum(draft+"\n") + "  draft.txt",
		"the draft untracked":  "?? draft.txt",
		"the first run's head": "add proof",
	} {
		if !strings.Contains(last, want) {
			t.Errorf("the resumed run's workspace lacks %s: no %q in what the agent saw", what, want)
		}
	}
	if second.Status != store.StatusSucceeded {
		t.Errorf("resumed run: %s (%s)", second.Status, second.Error)
	}
}

// A run whose work never came back cannot be resumed: its conversation
// would refer to edits the new copy lacks. One clear error, nothing made.
func TestResumeRefusesLostWork(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.Script{
		Name:      "lose-work",
		Steps:     []testkit.Step{{Text: "Oops.", Tool: "Bash", Input: bash("echo work > lost.txt && rm -rf .git && echo gone")}},
		FinalText: "Done.",
	})
	e.airlock("run", "-y", "-m", "Lose the work.", "--name", "lost")
	lost := e.run("lost")
	if lost.HarvestError == "" {
		t.Fatalf("the run's work came back: %+v", lost)
	}
	count := len(e.runs())
	res := e.airlock("run", "-y", "-m", "Go on.", "--resume", "lost")
	if res.code == 0 || !strings.Contains(res.stderr, "cannot resume run "+lost.ID+": its work was not brought back") {
		t.Fatalf("resume of lost work: exit %d, stderr:\n%s", res.code, res.stderr)
	}
	if n := len(e.runs()); n != count {
		t.Errorf("a refused resume left %d run(s)", n-count)
	}
}

func sum(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// Without -j, every task of a batch runs at once, as the help and
// docs/budgets.md say.
func TestBatchRunsAllAtOnceByDefault(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.SleepScript(4))
	tasks := []string{"alpha", "bravo", "charlie"}
	for _, name := range tasks {
		e.write(".airlock/prompts/"+name+".md", "Wait a moment.\n")
	}
	res, most := e.mostAgents(append([]string{"run", "-y"}, tasks...)...)
	if res.code != 0 {
		t.Fatalf("batch exit = %d\nstderr:\n%s", res.code, res.stderr)
	}
	if most != len(tasks) {
		t.Errorf("at most %d agents ran at once, want all %d (no -j)", most, len(tasks))
	}
}
