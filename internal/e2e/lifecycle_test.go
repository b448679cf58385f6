package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

func slowScript() testkit.Script {
	return testkit.Script{
		Name: "slow",
		Steps: []testkit.Step{
			{Tool: "Bash", Input: bash("sleep 5 && echo done > slow.txt && git add slow.txt && git commit -qm 'Add slow.txt'")},
		},
		FinalText: "Done after a while.",
	}
}

// (d) A run finishes and is recorded even if the airlock process that
// started it is killed.
func TestRunSurvivesKilledAirlock(t *testing.T) { runSurvivesKilledAirlock(t, newEnv(t)) }

func runSurvivesKilledAirlock(t *testing.T, e *env) {
	e.server(slowScript())
	cmd := exec.Command(shared.bin, "run", "-m", "Take your time.", "--name", "orphan")
	cmd.Dir = e.repo
	cmd.Env = e.environ()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if runs := e.runs(); len(runs) == 1 && runs[0].Status == store.StatusRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run never started")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()

	if r := e.runs()[0]; r.Status != store.StatusRunning {
		t.Fatalf("status right after the kill = %s, want running", r.Status)
	}
	e.ok("wait")
	r := e.runs()[0]
	if r.Status != store.StatusSucceeded || r.FinishedAt.IsZero() {
		t.Fatalf("after wait: %+v", r)
	}
	if got := e.git("log", "-1", "--format=%s", r.Branch); got != "Add slow.txt" {
		t.Fatalf("run branch head = %q", got)
	}
}

// -d returns at once with the run ID; ls reconciles the status on its own.
func TestDetachedRun(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.DemoScript())
	res := e.ok("run", "-d", "-m", "Write hello.py.", "--name", "detached")
	id := strings.TrimSpace(res.stdout)
	if !strings.HasPrefix(id, "detached-") {
		t.Fatalf("run -d printed %q, want the run ID", res.stdout)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		r := e.runs()[0]
		if r.Status.Finished() {
			if r.Status != store.StatusSucceeded {
				t.Fatalf("status = %s (%s)", r.Status, r.Error)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the run did not finish")
		}
		time.Sleep(300 * time.Millisecond)
	}
	e.ok("logs", "-f", id)
	e.ok("wait", id)
}

// (e) Files the agent creates belong to the invoking user on the host.
func TestAgentFilesOwnedByInvokingUser(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.DemoScript())
	uid, gid := os.Getuid(), os.Getgid()
	runAs := func(cmd *exec.Cmd) {}
	if uid == 0 {
		// Run airlock as an ordinary user who may use the engine.
		u, g, groups := ensureUser(t)
		uid, gid = u, g
		for _, dir := range []string{e.state, filepath.Dir(e.repo)} {
			chownR(t, dir, uid, gid)
		}
		os.Chmod(filepath.Dir(e.state), 0o755)
		runAs = func(cmd *exec.Cmd) {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
		}
	}
	home := t.TempDir()
	chownR(t, home, uid, gid)
	os.Chmod(filepath.Dir(home), 0o755)
	cmd := exec.Command(shared.bin, "run", "-m", "Write hello.py.", "--name", "owner")
	cmd.Dir = e.repo
	cmd.Env = append(e.environ(), "HOME="+home)
	runAs(cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run as uid %d: %v\n%s", uid, err, out)
	}
	runs, _ := os.ReadDir(filepath.Join(e.state, "airlock", "runs"))
	if len(runs) != 1 {
		t.Fatalf("%d runs", len(runs))
	}
	file := filepath.Join(e.state, "airlock", "runs", runs[0].Name(), "workspace", "hello.py")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Fatalf("hello.py is owned by %d:%d, want the invoking user %d:%d", st.Uid, st.Gid, uid, gid)
	}
}

// ensureUser makes (once) an unprivileged user in the docker group.
func ensureUser(t *testing.T) (uid, gid int, groups []uint32) {
	t.Helper()
	const name = "airlock-e2e"
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "--no-create-home", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
			t.Fatalf("useradd: %v\n%s", err, out)
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	// The engine's socket is group-owned; give the user that group.
	var st syscall.Stat_t
	if err := syscall.Stat("/var/run/docker.sock", &st); err != nil {
		t.Fatal(err)
	}
	return uid, gid, []uint32{st.Gid}
}

func chownR(t *testing.T, dir string, uid, gid int) {
	t.Helper()
	err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// (f) Ten runs started at once all finish and are all listed correctly.
func TestTenRunsAtOnce(t *testing.T) { tenRunsAtOnce(t, newEnv(t)) }

func tenRunsAtOnce(t *testing.T, e *env) {
	e.server(testkit.DemoScript())
	const n = 10
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(shared.bin, "run", "-d", "-m", "Write hello.py.", "--name", fmt.Sprintf("par%d", i))
			cmd.Dir = e.repo
			cmd.Env = e.environ()
			out, err := cmd.Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				errs <- fmt.Errorf("run %d: %v\n%s", i, err, stderr)
				return
			}
			ids[i] = strings.TrimSpace(string(out))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range ids {
		if res := e.airlock("wait", id); res.code != 0 {
			t.Errorf("wait %s: exit %d: %s", id, res.code, res.stderr)
		}
	}
	runs := e.runs()
	if len(runs) != n {
		t.Fatalf("ls lists %d runs, want %d", len(runs), n)
	}
	branches := map[string]bool{}
	for _, r := range runs {
		if r.Status != store.StatusSucceeded {
			t.Errorf("%s: %s (%s)", r.ID, r.Status, r.Error)
		}
		branches[r.Branch] = true
		if got := e.git("log", "-1", "--format=%s", r.Branch); got != "Add hello.py" {
			t.Errorf("%s: branch head %q", r.ID, got)
		}
	}
	if len(branches) != n {
		t.Errorf("%d distinct branches, want %d", len(branches), n)
	}
	// The table agrees with the JSON.
	ls := e.ok("ls").stdout
	for _, id := range ids {
		if !strings.Contains(ls, id) {
			t.Errorf("ls lacks %s", id)
		}
	}
}

// Bad input gets one clear error naming what and where, and changes nothing.
func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.DemoScript())
	e.write(".airlock/prompts/unknown-key.md", "---\nname: ok\ncolour: blue\n---\nDo it.\n")
	e.write(".airlock/prompts/bad-turns.md", "---\nmax_turns: lots\n---\nDo it.\n")
	e.write(".airlock/prompts/unterminated.md", "---\nname: x\nDo it.\n")
	e.write(".airlock/prompts/fine.md", "Do it.\n")
	e.git("add", ".")
	e.git("commit", "-qm", "prompts")
	before := treeHash(t, filepath.Join(e.repo, ".git"))

	tests := []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"unknown frontmatter key", []string{"run", "unknown-key"}, nil, []string{"unknown-key.md:3", "colour"}},
		{"bad max_turns", []string{"run", "bad-turns"}, nil, []string{"bad-turns.md:2", "max_turns"}},
		{"unterminated frontmatter", []string{"run", "unterminated"}, nil, []string{"unterminated.md"}},
		{"missing prompt", []string{"run", "nope"}, nil, []string{"nope", ".airlock/prompts/nope.md"}},
		{"bad name", []string{"run", "fine", "--name", "Bad Name!"}, nil, []string{"Bad Name!"}},
		{"unset variable", []string{"run", "fine", "--env", "AIRLOCK_E2E_UNSET_VAR"}, nil, []string{"AIRLOCK_E2E_UNSET_VAR", "not set"}},
		{"bad env entry", []string{"run", "fine", "--env", "1BAD=x"}, nil, []string{"1BAD"}},
		{"missing credentials", []string{"run", "fine"}, []string{"ANTHROPIC_API_KEY="}, []string{"credentials"}},
		{"unknown base branch", []string{"run", "fine", "--branch", "no-such-branch"}, nil, []string{"no-such-branch"}},
		{"unknown run", []string{"logs", "no-such-run"}, nil, []string{"no-such-run"}},
		{"missing image", []string{"run", "fine", "--image", "airlock-e2e-missing:1"}, nil, []string{"airlock-e2e-missing:1", "airlock image build"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := e.extra
			e.extra = append(append([]string{}, e.extra...), tt.env...)
			res := e.airlock(tt.args...)
			e.extra = saved
			if res.code == 0 {
				t.Fatalf("exit 0, want an error")
			}
			msg := strings.TrimSpace(res.stderr)
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
			if n := strings.Count(msg, "airlock:"); n != 1 {
				t.Errorf("want one error line, got %d:\n%s", n, msg)
			}
		})
	}
	if runs := e.runs(); len(runs) != 0 {
		t.Errorf("bad input created runs: %+v", runs)
	}
	if after := treeHash(t, filepath.Join(e.repo, ".git")); after != before {
		t.Errorf("bad input changed the repository")
	}
	eng, _ := sandbox.NewDocker()
	if cs, _ := eng.List(context.Background(), map[string]string{"airlock.project": e.repo}); len(cs) != 0 {
		t.Errorf("bad input left %d containers", len(cs))
	}
}

// The config a user sees is the config a run uses, with its sources.
func TestConfigShowAndDoctor(t *testing.T) {
	e := newEnv(t)
	e.write(".airlock/config.toml", "[agent]\nmodel = \"claude-test-model\"\n")
	res := e.ok("config", "show", "--json")
	var entries []struct{ Key, Value, Source string }
	if err := json.Unmarshal([]byte(res.stdout), &entries); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, en := range entries {
		if en.Key == "agent.model" {
			found = true
			if en.Value != `"claude-test-model"` || !strings.Contains(en.Source, ".airlock/config.toml:2") {
				t.Errorf("agent.model = %+v", en)
			}
		}
	}
	if !found {
		t.Errorf("config show lacks agent.model:\n%s", res.stdout)
	}
	e.write(".airlock/config.toml", "[agent]\nmodle = \"x\"\n")
	if res := e.airlock("config", "show"); res.code == 0 || !strings.Contains(res.stderr, "config.toml:2") {
		t.Errorf("bad config: exit %d: %s", res.code, res.stderr)
	}
	e.write(".airlock/config.toml", "")
	e.extra = []string{"ANTHROPIC_API_KEY=sk-ant-doctor"}
	if res := e.airlock("doctor"); res.code != 0 {
		t.Errorf("doctor: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	e.extra = nil
	res = e.airlock("doctor")
	if res.code == 0 || !strings.Contains(res.stdout, "credentials") {
		t.Errorf("doctor without credentials: exit %d\n%s", res.code, res.stdout)
	}
}

// init writes the starter files once and leaves them alone after.
func TestInit(t *testing.T) {
	e := newEnv(t)
	e.ok("init")
	for _, f := range []string{".airlock/config.toml", ".airlock/prompts/example.md", ".airlock/.gitignore"} {
		if _, err := os.Stat(filepath.Join(e.repo, f)); err != nil {
			t.Errorf("init did not create %s", f)
		}
	}
	e.write(".airlock/prompts/example.md", "mine\n")
	e.ok("init")
	if data, _ := os.ReadFile(filepath.Join(e.repo, ".airlock/prompts/example.md")); string(data) != "mine\n" {
		t.Errorf("init overwrote a user's file")
	}
	// The generated config parses.
	e.ok("config", "show")
}
