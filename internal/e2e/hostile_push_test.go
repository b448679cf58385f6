package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// The agent plants every hook and command-running git setting in its
// copy, makes branches of its own (one named like the user's, one in
// airlock's namespace), commits with escape sequences in the subject and
// ends with a hostile summary. push and pr run none of what it planted,
// push only the run's branch, send GitHub head airlock/<run> and an inert
// body, and print no escape sequence.
func TestHostilePushAndPR(t *testing.T) {
	e := newEnv(t)
	markers := t.TempDir()
	s := testkit.PlantScript(filepath.Join(markers, "m"))
	s.Steps = append(s.Steps,
		testkit.Step{Tool: "Bash", Input: bash(`git branch -f main HEAD; git branch airlock/other HEAD; git branch evil-branch HEAD; true`)},
		testkit.Step{Tool: "Bash", Input: bash(`echo more >> planted.txt && git commit -qam "$(printf 'Subject \033]0;pwned\007\033[2J with escapes \342\200\256')"`)},
	)
	s.FinalText = hostileSummary
	e.server(s)
	e.ok("run", "-m", "Plant traps.", "--name", "plant")
	r := onlyRun(t, e)
	if subj := e.git("log", "-1", "--format=%s", "airlock/"+r.ID); !strings.Contains(subj, "with escapes") {
		t.Fatalf("the run's branch does not end with the agent's hostile commit: %q", subj)
	}
	gh, bare := githubRemote(t, e)
	e.extra = append(e.extra, "GH_TOKEN=ghp_e2e_token")

	out := e.ok("push")
	pr := e.ok("pr")
	all := out.stdout + out.stderr + pr.stdout + pr.stderr
	if strings.ContainsAny(all, "\x1b\x07\u202e") {
		t.Errorf("push/pr printed escapes: %q", all)
	}
	if got, want := remoteRefs(t, bare), r.Head+" refs/heads/airlock/"+r.ID; got != want {
		t.Errorf("the remote has\n%s\nwant only the run's branch\n%s", got, want)
	}
	pulls := gh.Pulls()
	if len(pulls) != 1 || pulls[0].Head != "airlock/"+r.ID || pulls[0].Base != "main" {
		t.Fatalf("pull requests %+v: want one, head airlock/%s into main", pulls, r.ID)
	}
	checkInertBody(t, pulls[0].Body)
	entries, _ := os.ReadDir(markers)
	for _, m := range entries {
		t.Errorf("host ran a planted command: %s", m.Name())
	}
}
