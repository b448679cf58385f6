package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/store"
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

// Setup commands from the config and the prompt run before the agent, as
// its user in /workspace, behind the run's proxy (a denied host is refused
// and logged), their output in `logs --setup`; a failing one fails the
// run, named with its exit status, and the agent never starts; a
// persistent run's setup is not repeated when it is started again.
func TestSetup(t *testing.T) { onEngines(t, rootfulEngines, setupCommands) }

func setupCommands(t *testing.T, e *env) {
	e.write(".airlock/config.toml", "[sandbox]\nsetup = [\"echo prepared > .setup-made; id -u >> .setup-made; pwd >> .setup-made\", \"curl -sS --max-time 20 https://denied.example/ || echo curl refused\"]\n")
	e.write(".airlock/prompts/use-setup.md", "---\nsetup: [\"echo from the prompt >> .setup-made; echo run >> /home/agent/setup-count\"]\n---\nUse what the setup made.\n")
	e.git("add", ".")
	e.git("commit", "-qm", "setup")
	srv, url := e.server(testkit.Script{
		Name:      "setup",
		Steps:     []testkit.Step{bashStep(`cp .setup-made seen.txt && git add seen.txt && git commit -qm seen`)},
		FinalText: "Done.",
	})
	e.ok("run", "-y", "--persistent", "use-setup")
	r := e.run("use-setup")
	uid := e.uid()
	if uid == 0 {
		uid = 1000 // airlock run as root runs the agent as the image's user
	}
	want := "prepared\n" + strconv.Itoa(uid) + "\n/workspace\nfrom the prompt"
	if got := e.git("show", r.Branch+":seen.txt"); got != want {
		t.Errorf("the agent saw %q from the setup, want %q", got, want)
	}
	if !r.SetupDone || len(r.Setup) != 3 {
		t.Errorf("the run's record: setup %q, done %v", r.Setup, r.SetupDone)
	}
	logs := e.ok("logs", "--setup", r.ID).stdout
	if !strings.Contains(logs, "$ curl -sS") || !strings.Contains(logs, "curl refused") || !strings.Contains(logs, "$ echo from the prompt") {
		t.Errorf("logs --setup:\n%s", logs)
	}
	if eg := e.ok("egress", "--json", r.ID).stdout; !strings.Contains(eg, "denied.example") {
		t.Errorf("the setup's refused connection is not in the egress log:\n%s", eg)
	}

	// Started again: the setup is not repeated.
	srv.Close()
	next := testkit.NewServer(testkit.Resumed(1, testkit.Script{
		Name:      "again",
		Steps:     []testkit.Step{bashStep(`cp /home/agent/setup-count count.txt && git add count.txt && git commit -qm count`)},
		FinalText: "Done again.",
	}))
	if _, err := next.Start(strings.TrimPrefix(url, "http://")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })
	e.ok("start", r.ID, "-m", "Count the setups.")
	e.ok("wait", r.ID)
	r = e.run(r.ID)
	if got := e.git("show", r.Branch+":count.txt"); got != "run" {
		t.Errorf("after start, the setup had run %q, want once", got)
	}

	// A failing command fails the run; the agent does not start.
	e.write(".airlock/config.toml", "[sandbox]\nsetup = [\"true\", \"echo about to fail; exit 7\"]\n")
	e.git("commit", "-qam", "failing setup")
	failSrv, _ := e.server(testkit.DemoScript())
	res := e.airlock("run", "-y", "-m", "Never starts.", "--name", "failing")
	f := e.run("failing")
	wantErr := `setup command 2 of 2, "echo about to fail; exit 7", exited with status 7`
	if res.code == 0 || f.Status != store.StatusFailed || !strings.Contains(f.Error, wantErr) || !strings.Contains(res.stderr, wantErr) {
		t.Errorf("a failing setup: exit %d, status %s, error %q\n%s", res.code, f.Status, f.Error, res.stderr)
	}
	if n := len(failSrv.Requests()); n != 0 {
		t.Errorf("the agent started after a failed setup: %d model requests", n)
	}
	if logs := e.ok("logs", "--setup", f.ID).stdout; !strings.Contains(logs, "about to fail") || !strings.Contains(logs, "exited with status 7") {
		t.Errorf("logs --setup of the failed run:\n%s", logs)
	}
}
