package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// terminal is a real terminal on the host: a tmux server of the test's
// own, whose panes run airlock with the test's environment.
type terminal struct {
	e      *env
	socket string
}

func newTerminal(e *env) *terminal {
	e.t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		e.t.Fatal("tmux is not installed on the host (scripts/setup.sh installs it)")
	}
	term := &terminal{e: e, socket: "airlock-e2e-" + strings.ReplaceAll(e.t.Name(), "/", "-")}
	e.t.Cleanup(func() { exec.Command("tmux", "-L", term.socket, "kill-server").Run() })
	return term
}

func (term *terminal) tmux(args ...string) string {
	term.e.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-L", term.socket}, args...)...)
	cmd.Dir = term.e.repo
	cmd.Env = term.e.environ()
	out, err := cmd.CombinedOutput()
	if err != nil {
		term.e.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// start opens a window of the given size running airlock with args; the
// pane stays after airlock exits so its last words can be read.
func (term *terminal) start(name string, width, height int, args ...string) {
	term.e.t.Helper()
	line := shared.bin + " " + strings.Join(args, " ") + "; echo AIRLOCK-EXIT=$?; sleep 600"
	term.tmux("new-session", "-d", "-s", name, "-x", strconv.Itoa(width), "-y", strconv.Itoa(height), "-c", term.e.repo, line)
}

func (term *terminal) screen(name string) string {
	return term.tmux("capture-pane", "-p", "-t", name)
}

// waitFor polls the window's screen until it shows want.
func (term *terminal) waitFor(name, want string, timeout time.Duration) string {
	term.e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := term.screen(name)
		if strings.Contains(s, want) {
			return s
		}
		if time.Now().After(deadline) {
			term.e.t.Fatalf("window %s never showed %q; it shows:\n%s", name, want, s)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// onlyRun returns the single run of the test.
func (e *env) onlyRun() store.Run {
	e.t.Helper()
	runs := e.runs()
	if len(runs) != 1 {
		e.t.Fatalf("want one run, have %d", len(runs))
	}
	return runs[0]
}

// startShell starts a detached interactive run and waits until the agent's
// terminal UI is ready for a prompt.
func (e *env) startShell(args ...string) string {
	e.t.Helper()
	res := e.ok(append([]string{"shell", "-d", "-y"}, args...)...)
	id := strings.TrimSpace(res.stdout)
	e.waitScreen(id, "bypass permissions", time.Minute)
	return id
}

func (e *env) waitScreen(id, want string, timeout time.Duration) string {
	e.t.Helper()
	screen, ok := e.screenWithin(id, want, timeout)
	if !ok {
		e.t.Fatalf("run %s's screen never showed %q:\n%s", id, want, screen)
	}
	return screen
}

// screenWithin waits for run id's screen to show want, and returns the
// last screen captured (with capture's errors), and whether it did.
func (e *env) screenWithin(id, want string, timeout time.Duration) (string, bool) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		res := e.airlock("tmux", "capture", id)
		if res.code == 0 && strings.Contains(res.stdout, want) {
			return res.stdout, true
		}
		if time.Now().After(deadline) {
			return res.stdout + res.stderr, false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *env) windowSize(id string) string {
	e.t.Helper()
	return strings.TrimSpace(e.ok("exec", id, "--", "tmux", "display", "-p", "#{window_width}x#{window_height}").stdout)
}

// The whole interactive loop in a real terminal: the first-run dialogs are
// pre-answered, a typed prompt gets the model's answer on screen, Ctrl-b d
// detaches and leaves the agent running, attach shows the same screen, the
// agent's window follows the terminal's size, and /exit finishes the run.
func TestShellInTerminal(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.ChatScript())
	term := newTerminal(e)

	term.start("outer", 120, 40, "shell", "-y")
	term.waitFor("outer", "bypass permissions", time.Minute)
	term.tmux("send-keys", "-t", "outer", "-l", "What is the answer?")
	term.tmux("send-keys", "-t", "outer", "Enter")
	term.waitFor("outer", testkit.ChatAnswer, time.Minute)

	term.tmux("send-keys", "-t", "outer", "C-b", "d")
	term.waitFor("outer", "Attach again: airlock attach", 30*time.Second)
	r := e.onlyRun()
	if r.Status != store.StatusRunning || r.Kind != "shell" {
		t.Fatalf("after detaching: status %s, kind %s; want a running shell", r.Status, r.Kind)
	}

	term.start("again", 100, 30, "attach", r.ID)
	// The agent redraws for the new terminal's size: the answer can show
	// before the prompt above it is back.
	s := term.waitFor("again", "What is the answer?", 30*time.Second)
	if !strings.Contains(s, testkit.ChatAnswer) {
		s = term.waitFor("again", testkit.ChatAnswer, 10*time.Second)
	}
	// One line of the window is tmux's status line.
	waitSize(t, e, r.ID, "100x29")
	term.tmux("resize-window", "-t", "again", "-x", "90", "-y", "25")
	waitSize(t, e, r.ID, "90x24")

	term.tmux("send-keys", "-t", "again", "-l", "/exit")
	term.tmux("send-keys", "-t", "again", "Enter")
	term.waitFor("again", "AIRLOCK-EXIT=0", time.Minute)
	if r := e.onlyRun(); r.Status != store.StatusSucceeded {
		t.Fatalf("after /exit: status %s (%s), want succeeded", r.Status, r.Error)
	}
	logs := e.ok("logs", r.ID).stdout
	for _, want := range []string{"❯ What is the answer?", testkit.ChatAnswer} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func waitSize(t *testing.T, e *env, id, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := e.windowSize(id)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent's window is %s, want %s", got, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Two sessions on one project at once: each has its own container, proxy,
// home and copy, and nothing written in one shows in the other.
func TestShellSlots(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.ChatScript())
	a := e.startShell("--name", "left")
	b := e.startShell("--name", "right")

	e.ok("exec", a, "--", "sh", "-c", "echo secret > ~/left-only && echo work > /workspace/left.txt")
	for _, path := range []string{"/home/agent/left-only", "/workspace/left.txt"} {
		if res := e.airlock("exec", b, "--", "test", "-e", path); res.code != 1 {
			t.Errorf("%s is visible in the other session (test -e exit %d)", path, res.code)
		}
	}
	eng, err := sandbox.NewDocker()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	seen := map[string]bool{}
	for _, id := range []string{a, b} {
		for _, name := range []string{"airlock-" + id, "airlock-" + id + "-proxy"} {
			st, err := eng.Inspect(ctx, name)
			if err != nil || st.Status != sandbox.StatusRunning {
				t.Fatalf("%s: %v %v, want running", name, st.Status, err)
			}
			if seen[st.ID] {
				t.Fatalf("%s is shared", name)
			}
			seen[st.ID] = true
		}
	}
	for _, id := range []string{a, b} {
		e.ok("tmux", "send", id, "What is the answer?", "--enter")
		e.waitScreen(id, testkit.ChatAnswer, time.Minute)
	}
}

// exec, cp and tmux send/capture on a running session, and cp out of a
// hostile sandbox.
func TestExecCpTmux(t *testing.T) { execCpTmux(t, newEnv(t)) }

func execCpTmux(t *testing.T, e *env) {
	e.server(testkit.ChatScript())
	id := e.startShell()

	res := e.ok("exec", id, "--capture", "--", "sh", "-c", "id -u; pwd; echo oops >&2; exit 3")
	var got struct {
		ExitCode int    `json:"exit_code"`
		Stdout   string `json:"stdout"`
		Stderr   string `json:"stderr"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &got); err != nil {
		t.Fatalf("exec --capture: %v\n%s", err, res.stdout)
	}
	if got.ExitCode != 3 || !strings.HasSuffix(got.Stdout, "\n/workspace\n") || got.Stdout == "0\n/workspace\n" || got.Stderr != "oops\n" {
		t.Fatalf("exec --capture = %+v", got)
	}
	if res := e.airlock("exec", id, "--", "sh", "-c", "exit 7"); res.code != 7 {
		t.Fatalf("exec exit status = %d, want the command's 7", res.code)
	}

	// cp in: a file and a directory, owned by the agent.
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "data.txt"), []byte("some data\n"), 0o644)
	os.MkdirAll(filepath.Join(host, "dir", "sub"), 0o755)
	os.WriteFile(filepath.Join(host, "dir", "sub", "f.txt"), []byte("nested\n"), 0o644)
	e.ok("cp", filepath.Join(host, "data.txt"), id+":/workspace/renamed.txt")
	e.ok("cp", filepath.Join(host, "dir"), id+":/workspace")
	out := e.ok("exec", id, "--", "sh", "-c", "cat renamed.txt dir/sub/f.txt; touch dir/sub/f.txt && echo writable").stdout
	if out != "some data\nnested\nwritable\n" {
		t.Fatalf("after cp in: %q", out)
	}

	// cp out, from a sandbox that plants a link to / and a device-like
	// name: only regular files and directories land, all inside DEST.
	e.ok("exec", id, "--", "sh", "-c", "mkdir -p out/deep && echo result > out/deep/r.txt && ln -s / out/root && ln -s /etc/passwd out/passwd && mkfifo out/fifo")
	dest := filepath.Join(t.TempDir(), "dest")
	res = e.ok("cp", id+":/workspace/out", dest)
	if data, err := os.ReadFile(filepath.Join(dest, "deep", "r.txt")); err != nil || string(data) != "result\n" {
		t.Fatalf("cp out: %q %v", data, err)
	}
	for _, name := range []string{"root", "passwd", "fifo"} {
		if _, err := os.Lstat(filepath.Join(dest, name)); err == nil {
			t.Errorf("cp out wrote %s", name)
		}
		if !strings.Contains(res.stderr, "out/"+name) {
			t.Errorf("cp out did not report skipping %s:\n%s", name, res.stderr)
		}
	}
	// A path that climbs out is refused, not followed.
	e.ok("exec", id, "--", "sh", "-c", "mkdir -p esc && ln -s ../../../../../../../../tmp esc/up")
	escDest := filepath.Join(t.TempDir(), "esc")
	e.ok("cp", id+":/workspace/esc", escDest)
	if _, err := os.Lstat(filepath.Join(escDest, "up")); err == nil {
		t.Error("cp out kept a link climbing out of DEST")
	}

	// tmux send and capture, with --json.
	e.ok("tmux", "send", id, "What is the answer?", "--enter")
	e.waitScreen(id, testkit.ChatAnswer, time.Minute)
	var capture struct {
		Run    string   `json:"run"`
		Width  int      `json:"width"`
		Height int      `json:"height"`
		Lines  []string `json:"lines"`
	}
	if err := json.Unmarshal([]byte(e.ok("tmux", "capture", id, "--json").stdout), &capture); err != nil {
		t.Fatal(err)
	}
	if capture.Run != id || capture.Width == 0 || !strings.Contains(strings.Join(capture.Lines, "\n"), testkit.ChatAnswer) {
		t.Fatalf("tmux capture --json = %+v", capture)
	}

	// The Notification hook the agent is configured with appends a
	// "waiting" event the host reads.
	var settings struct {
		Hooks map[string][]struct {
			Hooks []struct{ Command string } `json:"hooks"`
		} `json:"hooks"`
	}
	data, err := os.ReadFile(filepath.Join(e.state, "airlock", "runs", id, "home", ".claude", "settings.json"))
	if err != nil || json.Unmarshal(data, &settings) != nil || len(settings.Hooks["Notification"]) != 1 {
		t.Fatalf("settings.json: %v\n%s", err, data)
	}
	hook := settings.Hooks["Notification"][0].Hooks[0].Command
	cmd := exec.Command(shared.bin, "exec", id, "--", "sh", "-c", hook)
	cmd.Dir, cmd.Env = e.repo, e.environ()
	cmd.Stdin = strings.NewReader(`{"session_id":"s","hook_event_name":"Notification","message":"Claude is waiting for your input","notification_type":"idle_prompt"}`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hook: %v\n%s", err, out)
	}
	// On an engine whose mounts are copies (Kubernetes) the event comes
	// home with the run's next sync, every 2 s.
	var events []byte
	var ev struct{ Event, Text string }
	for deadline := time.Now().Add(15 * time.Second); ; {
		events, _ = os.ReadFile(filepath.Join(e.state, "airlock", "runs", id, "log", "events.jsonl"))
		if json.Unmarshal(bytes.TrimSpace(events), &ev) == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ev.Event != "waiting" || ev.Text != "Claude is waiting for your input" {
		t.Fatalf("events.jsonl = %q", events)
	}
}

// attach refuses a headless run and points at logs; exec and tmux refuse a
// finished one.
func TestAttachRefusesHeadless(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.DemoScript())
	e.ok("run", "-m", "Write hello.py.", "--name", "headless", "-y")
	id := e.onlyRun().ID
	for _, args := range [][]string{{"attach", id}, {"tmux", "capture", id}} {
		res := e.airlock(args...)
		if res.code == 0 || !strings.Contains(res.stderr, "airlock logs -f "+id) {
			t.Errorf("airlock %v: exit %d, stderr %q; want a pointer to logs -f", args, res.code, res.stderr)
		}
	}
	if res := e.airlock("exec", id, "--", "true"); res.code == 0 || !strings.Contains(res.stderr, "not running") {
		t.Errorf("exec in a finished run: exit %d, %q", res.code, res.stderr)
	}
}

// --here works on the project itself: the agent's writes are live, nothing
// is harvested, and removing the run leaves the project alone.
func TestShellHere(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.ChatScript())
	if os.Getuid() == 0 {
		// The agent runs as uid 1000 when airlock runs as root (and a
		// chown would make git refuse the repository as root's).
		os.Chmod(e.repo, 0o777)
	}
	res := e.ok("shell", "-d", "-y", "--here")
	id := strings.TrimSpace(res.stdout)
	if !strings.Contains(res.stderr, "--here mounts "+e.repo) {
		t.Errorf("no warning about --here:\n%s", res.stderr)
	}
	e.waitScreen(id, "bypass permissions", time.Minute)
	e.ok("exec", id, "--", "sh", "-c", "echo live > /workspace/here.txt")
	if data, err := os.ReadFile(filepath.Join(e.repo, "here.txt")); err != nil || string(data) != "live\n" {
		t.Fatalf("here.txt in the project: %q %v", data, err)
	}
	e.ok("tmux", "send", id, "/exit", "--enter")
	e.ok("wait", id)
	r := e.onlyRun()
	if r.Status != store.StatusSucceeded || r.HarvestError != "" {
		t.Fatalf("after exit: %+v", r)
	}
	if out := e.git("branch", "--list", "airlock/*"); out != "" {
		t.Fatalf("a --here run made a branch: %s", out)
	}
	e.ok("rm", "-y", id)
	if _, err := os.Stat(filepath.Join(e.repo, "here.txt")); err != nil {
		t.Fatalf("rm touched the project: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.repo, ".git")); err != nil {
		t.Fatalf("rm touched the project: %v", err)
	}
}
