package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// bashStep is a scripted step running command with Claude Code's Bash tool.
func bashStep(command string) testkit.Step { return testkit.Step{Tool: "Bash", Input: bash(command)} }

// The user's [sandbox] mounts reach the agent: read-only unless :rw says
// otherwise; and a mount of the repository is refused, naming the entry and
// the reason, before anything is made.
func TestMounts(t *testing.T) { onEngines(t, allEngines, mounts) }

func mounts(t *testing.T, e *env) {
	data, rw := e.tempDir(), e.tempDir()
	if err := os.WriteFile(filepath.Join(data, "hello.txt"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(data, 0o777) // were it writable, only the mount's read-only flag would stop the agent
	os.Chmod(rw, 0o777)
	e.chown(data)
	userConfig(t, e, `mounts = ["`+data+`:/data", "`+rw+`:/rw:rw"]`+"\n")
	e.server(testkit.Script{
		Name: "mounts",
		Steps: []testkit.Step{
			bashStep(`cat /data/hello.txt > seen.txt; (echo x > /data/new.txt && echo writable || echo read-only) > ro.txt; echo from the sandbox > /rw/out.txt; git add seen.txt ro.txt && git commit -qm mounts`),
		},
		FinalText: "Done.",
	})
	e.ok("run", "-y", "-m", "Use the mounts.", "--name", "mounts")
	r := e.runs()[0]
	if got := e.git("show", r.Branch+":seen.txt"); got != "from the host" {
		t.Errorf("the agent read %q from /data/hello.txt, want the host's file", got)
	}
	if got := e.git("show", r.Branch+":ro.txt"); got != "read-only" {
		t.Errorf("the read-only mount was %s to the agent", got)
	}
	if _, err := os.Stat(filepath.Join(data, "new.txt")); err == nil {
		t.Error("the agent wrote into the read-only mount")
	}
	if got, _ := os.ReadFile(filepath.Join(rw, "out.txt")); string(got) != "from the sandbox\n" {
		t.Errorf("the :rw mount has %q, want the agent's file", got)
	}
	if len(r.Mounts) != 2 || !strings.HasSuffix(r.Mounts[0], ":/data:ro") || !strings.HasSuffix(r.Mounts[1], ":/rw:rw") {
		t.Errorf("ls --json mounts = %q", r.Mounts)
	}

	// Refused: the repository itself, through a link. Nothing is made.
	link := filepath.Join(e.tempDir(), "repo-link")
	if err := os.Symlink(e.repo, link); err != nil {
		t.Fatal(err)
	}
	path := userConfig(t, e, `mounts = ["`+link+`:/src"]`+"\n")
	res := e.airlock("run", "-y", "-m", "Never runs.", "--name", "refused")
	if res.code == 0 || !strings.Contains(res.stderr, path+":") || !strings.Contains(res.stderr, `mount "`+link+`:/src" refused`) || !strings.Contains(res.stderr, "leads to "+e.repo) ||
		!strings.Contains(res.stderr, "is or contains the repository") {
		t.Errorf("a mount of the repository: exit %d\n%s", res.code, res.stderr)
	}
	if n := len(e.runs()); n != 1 {
		t.Errorf("%d runs after a refused mount, want the one before", n)
	}
	eng, err := e.sandboxEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	states, err := eng.List(context.Background(), map[string]string{"airlock.project": e.repo})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if strings.Contains(s.Name, "refused") {
			t.Errorf("a refused mount left container %s", s.Name)
		}
	}
}
