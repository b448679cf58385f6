package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// The agent's container bundles the work as the agent exits, into a
// directory the agent can write too. The agent plants a fake bundle of a
// commit it never made on its branch, and leaves a process behind that keeps
// writing it back while the real bundle is made: what reaches the user's
// repository is the branch as the agent left it, never the fake.
func TestHostileBundlePlantedAndRewritten(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.Script{
		Name: "plant-bundle",
		Steps: []testkit.Step{
			{Tool: "Bash", Input: bash("echo real > real.txt && git add real.txt && git commit -qm 'Real work'")},
			{Tool: "Bash", Input: bash(plantFakeBundle + `
setsid sh -c 'while :; do cp /tmp/fake.bundle /airlock/out/run.bundle.tmp; cp /tmp/fake.bundle /airlock/out/run.bundle; cp /tmp/h.json /airlock/out/harvest.json; done' </dev/null >/dev/null 2>&1 &
echo planted`)},
		},
		FinalText: "Done.",
	})
	e.ok("run", "-y", "-m", "Plant a bundle.", "--name", "plant")
	r := e.run("plant")
	if r.Status != store.StatusSucceeded || !r.Harvested || r.HarvestError != "" {
		t.Fatalf("run: %+v", r)
	}
	checkRealWork(t, e, r)
}

// A killed agent's container bundles nothing, and what the agent left in
// its place (a link to a file, a bundle far too big to be real) is refused:
// the harvest container bundles the copy instead.
func TestHostileBundleLeftByKilledRun(t *testing.T) {
	for _, tc := range []struct{ name, plant string }{
		{"symlink", "ln -sf /workspace/.git/config /airlock/out/run.bundle"},
		{"oversized", "head -c 64M /dev/zero > /airlock/out/run.bundle"},
		{"fake", "cp /tmp/fake.bundle /airlock/out/run.bundle"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.server(testkit.Script{
				Name: "plant-and-hang",
				Steps: []testkit.Step{
					{Tool: "Bash", Input: bash("echo real > real.txt && git add real.txt && git commit -qm 'Real work'")},
					{Tool: "Bash", Input: bash(plantFakeBundle + "\n" + tc.plant + "\ntouch /airlock/out/planted\nsleep 600")},
				},
				FinalText: "Done.",
			})
			e.ok("run", "-y", "-d", "-m", "Plant a bundle and hang.", "--name", "hang")
			r := e.run("hang")
			planted := filepath.Join(e.state, "airlock", "runs", r.ID, "out", "planted")
			deadline := time.Now().Add(3 * time.Minute)
			for {
				if _, err := os.Lstat(planted); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the agent never planted its bundle: %+v", e.run("hang"))
				}
				time.Sleep(200 * time.Millisecond)
			}
			e.ok("kill", "hang")
			r = e.run("hang")
			if r.Status != store.StatusStopped || !r.Harvested || r.HarvestError != "" {
				t.Fatalf("killed run: %+v", r)
			}
			checkRealWork(t, e, r)
		})
	}
}

// plantFakeBundle makes /tmp/fake.bundle, a bundle of the run's branch with
// a commit "FAKE" in place of the agent's work, and a report for it in
// /tmp/h.json, and puts both in /airlock/out.
const plantFakeBundle = `set -e
b=$(git -C /workspace branch --show-current)
rm -rf /tmp/fake && git init -q -b "$b" /tmp/fake
git -C /tmp/fake -c user.name=x -c user.email=x@example.invalid commit -q --allow-empty -m FAKE
git -C /tmp/fake bundle create -q /tmp/fake.bundle "refs/heads/$b"
printf '{"head":"%s","uncommitted":null,"error":null}\n' "$(git -C /tmp/fake rev-parse HEAD)" > /tmp/h.json
cp /tmp/fake.bundle /airlock/out/run.bundle && cp /tmp/h.json /airlock/out/harvest.json`

func checkRealWork(t *testing.T, e *env, r store.Run) {
	t.Helper()
	if got := e.git("log", "-1", "--format=%s", r.Branch); got != "Real work" {
		t.Errorf("branch %s ends in %q, want the agent's real commit", r.Branch, got)
	}
	if all := e.git("log", "--all", "--format=%s"); strings.Contains(all, "FAKE") {
		t.Errorf("the planted commit reached the user's repository:\n%s", all)
	}
}
