package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// The commands around a live run on Podman, rootful and rootless: shell
// (Claude Code's terminal UI in tmux), tmux capture and send, attach from a
// real terminal and detach, stop, clean, start, kill and rm. One persistent
// shell serves them all, to keep the added CI time small.

// podmanCLI is how a test runs airlock against one Podman: as root for
// rootful Podman, as the test user for rootless.
type podmanCLI struct {
	t      *testing.T
	try    func(args ...string) (string, error) // airlock args, combined output
	line   func(args ...string) string          // a shell line running airlock args in the repository
	env    []string                             // the terminal's environment
	repo   string
	podman sandbox.Engine // the engine, for looks at its containers
	// killWithin bounds kill, which waits for no grace period (stop's is
	// 10 s); 20 s when zero. On Kubernetes kill also copies the workspace
	// and home back through exec streams, which a loaded 2-core node
	// takes past 20 s (24.7 s seen at a load of 15).
	killWithin time.Duration
}

func (c *podmanCLI) ok(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("airlock %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *podmanCLI) run(ref string) store.Run {
	c.t.Helper()
	out := c.ok("ls", "-a", "--json")
	var runs []store.Run
	// ls may say something on stderr too: the JSON starts at the first '['.
	if i := strings.Index(out, "["); i < 0 || json.Unmarshal([]byte(out[i:]), &runs) != nil {
		c.t.Fatalf("ls -a --json: %s", out)
	}
	for _, r := range runs {
		if r.ID == ref || r.Name == ref {
			return r
		}
	}
	c.t.Fatalf("no run %s in ls:\n%s", ref, out)
	return store.Run{}
}

func (c *podmanCLI) waitScreen(id, want string, timeout time.Duration) string {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, err := c.try("tmux", "capture", id)
		if err == nil && strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("run %s's screen never showed %q:\n%s", id, want, out)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// exists says whether Podman still has the container.
func (c *podmanCLI) exists(name string) bool {
	c.t.Helper()
	_, err := c.podman.Inspect(context.Background(), name)
	if err != nil && !errors.Is(err, sandbox.ErrNotFound) {
		c.t.Fatal(err)
	}
	return err == nil
}

func podmanCommands(t *testing.T, c *podmanCLI) {
	// shell, detached: tmux capture shows Claude Code's UI; tmux send types
	// a prompt the model answers on screen.
	started := c.ok("shell", "-d", "-y", "--persistent", "--name", "chat")
	id := regexp.MustCompile(`\bchat-[0-9a-f]+\b`).FindString(started)
	if id == "" {
		t.Fatalf("shell -d printed no run ID:\n%s", started)
	}
	c.waitScreen(id, "bypass permissions", 2*time.Minute)
	c.ok("tmux", "send", id, "What is the answer?", "--enter")
	c.waitScreen(id, testkit.ChatAnswer, time.Minute)
	r := c.run(id)
	if r.Status != store.StatusRunning || r.Kind != "shell" || !r.Persistent {
		t.Fatalf("the shell: status %s kind %s persistent %v; want a running persistent shell", r.Status, r.Kind, r.Persistent)
	}

	// attach from a real terminal shows the same screen; Ctrl-b d detaches
	// and leaves the agent running.
	socket := "airlock-e2e-" + strings.ReplaceAll(t.Name(), "/", "-")
	t.Cleanup(func() { exec.Command("tmux", "-L", socket, "kill-server").Run() })
	tmux := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("tmux", append([]string{"-L", socket}, args...)...)
		cmd.Env, cmd.Dir = c.env, c.repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	waitFor := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			s := tmux("capture-pane", "-p", "-t", "att")
			if strings.Contains(s, want) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("the attached terminal never showed %q; it shows:\n%s", want, s)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	tmux("new-session", "-d", "-s", "att", "-x", "100", "-y", "30", c.line("attach", id)+"; echo AIRLOCK-EXIT=$?; sleep 600")
	if s := waitFor(testkit.ChatAnswer); !strings.Contains(s, "What is the answer?") {
		t.Fatalf("the attached screen lacks the prompt:\n%s", s)
	}
	tmux("send-keys", "-t", "att", "C-b", "d")
	waitFor("AIRLOCK-EXIT=0")
	if r := c.run(id); r.Status != store.StatusRunning {
		t.Fatalf("after detaching: %s (%s), want running", r.Status, r.Error)
	}

	// A finished non-persistent run, for clean to remove.
	c.ok("run", "-y", "-m", "What is the answer?", "--name", "once")
	once := c.run("once")
	if once.Status != store.StatusSucceeded {
		t.Fatalf("the one-off run: %s (%s)", once.Status, once.Error)
	}

	// stop is graceful; the persistent container stays, through clean too.
	c.ok("stop", id, "--timeout", "5s")
	if r := c.run(id); r.Status != store.StatusStopped || r.StopReason != "user" || !r.Harvested {
		t.Fatalf("after stop: %+v", r)
	}
	c.ok("clean")
	if !c.exists(r.Container) {
		t.Fatalf("clean removed the persistent container %s", r.Container)
	}
	if c.exists(once.Container) {
		t.Errorf("clean left the finished run's container %s", once.Container)
	}

	// start brings the shell back in the same container; kill stops it at
	// once.
	c.ok("start", id)
	if r := c.run(id); r.Status != store.StatusRunning {
		t.Fatalf("after start: %s (%s)", r.Status, r.Error)
	}
	c.waitScreen(id, "bypass permissions", 2*time.Minute)
	begin := time.Now()
	c.ok("kill", id)
	if d, within := time.Since(begin), cmp.Or(c.killWithin, 20*time.Second); d > within {
		t.Errorf("kill took %s, more than %s", d, within)
	}
	if r := c.run(id); r.Status != store.StatusStopped || r.Error != "killed by the user" {
		t.Fatalf("after kill: %+v", r)
	}

	// rm removes the run and its container.
	c.ok("rm", "-y", "--force", id)
	if c.exists(r.Container) {
		t.Errorf("rm left the container %s", r.Container)
	}
	if out := c.ok("ls"); strings.Contains(out, id) {
		t.Errorf("rm left the run in ls:\n%s", out)
	}
	if r := c.run(id); !r.Removed() {
		t.Errorf("rm did not record the run as removed: %+v", r)
	}
}

// Rootful Podman: every command around a live run works.
func TestPodmanCommands(t *testing.T) {
	needPodman(t)
	rootfulPodmanImage(t)
	e := newEnv(t)
	e.server(testkit.ChatScript())
	e.extra = append(e.extra, "AIRLOCK_ENGINE=podman")
	p, err := sandbox.NewPodman("")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	podmanCleanup(t, e.state, p)
	podmanCommands(t, &podmanCLI{
		t: t, repo: e.repo, podman: p, env: e.environ(),
		try: func(args ...string) (string, error) {
			res := e.airlock(args...)
			if res.code != 0 {
				return res.stdout + res.stderr, errors.New("exit " + strconv.Itoa(res.code))
			}
			return res.stdout + res.stderr, nil
		},
		line: func(args ...string) string {
			return shared.bin + " " + strings.Join(args, " ")
		},
	})
}

// Rootless Podman, as the test user: the same commands work.
func TestPodmanRootlessCommands(t *testing.T) {
	e := newRootlessEnv(t, testkit.ChatScript())
	podmanCommands(t, &podmanCLI{
		t: t, repo: e.repo, podman: e.podman, env: os.Environ(),
		try: func(args ...string) (string, error) { return e.try(shared.bin, args...) },
		line: func(args ...string) string {
			cmd := rootlessCmd(e.u, e.repo, append(e.env, "TERM=screen"), shared.bin, args...)
			var quoted []string
			for _, a := range cmd.Args {
				quoted = append(quoted, strconv.Quote(a))
			}
			return strings.Join(quoted, " ")
		},
	})
}

// image ls on Podman lists airlock's images (Podman reports them qualified,
// docker.io/library/airlock-claude:…, under the names airlock gave them),
// and prune keeps the current one.
func TestPodmanImageLsPrune(t *testing.T) {
	onEngines(t, []engineKind{onPodman, onRootlessPodman}, func(t *testing.T, e *env) {
		ref := podmanImages.ref
		want := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ref) + `\s+[0-9a-f]{12}\s+\S+\s+\S+\s+current$`)
		if out := e.ok("image", "ls").stdout; !want.MatchString(out) {
			t.Errorf("image ls lacks %s as current:\n%s", ref, out)
		}
		e.ok("image", "prune")
		if out := e.ok("image", "ls").stdout; !want.MatchString(out) {
			t.Errorf("after prune, image ls lacks %s as current:\n%s", ref, out)
		}
	})
}
