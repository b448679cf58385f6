package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// waitForFile is a shell loop that holds the agent until the test lets it
// go on, by creating path in the sandbox (`airlock exec`).
func waitForFile(path string) string {
	return "i=0; until [ -e " + path + " ]; do sleep 0.2; i=$((i+1)); [ $i -lt 900 ] || exit 1; done"
}

// twoCommitsScript commits one.txt, waits for /tmp/go1, commits two.txt,
// waits for /tmp/go2, and ends: the test decides when each happens.
func twoCommitsScript() testkit.Script {
	return testkit.Script{
		Name: "two-commits",
		Steps: []testkit.Step{
			{Text: "First file.", Tool: "Bash", Input: bash("printf 'one\\n' > one.txt && git add one.txt && git commit -qm 'Add one.txt'")},
			{Text: "Second file.", Tool: "Bash", Input: bash(waitForFile("/tmp/go1") + " && printf 'two\\nlines\\n' > two.txt && git add two.txt && git commit -qm 'Add two.txt'")},
			{Text: "Waiting.", Tool: "Bash", Input: bash(waitForFile("/tmp/go2"))},
		},
		FinalText: "Made two commits.",
	}
}

// watchProc is a running `airlock watch`, its output gathered as it comes.
type watchProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	err  strings.Builder
	done chan struct{}
	code int
}

func startWatch(t *testing.T, e *env, args ...string) *watchProc {
	t.Helper()
	return startProc(t, e, shared.bin, append([]string{"watch"}, args...)...)
}

// startWatchTTY is startWatch with its output on a terminal (script(1)
// gives it one).
func startWatchTTY(t *testing.T, e *env, args ...string) *watchProc {
	t.Helper()
	line := shared.bin + " watch"
	for _, a := range args {
		line += " '" + a + "'"
	}
	return startProc(t, e, "script", "-qfec", line, "/dev/null")
}

func startProc(t *testing.T, e *env, name string, args ...string) *watchProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	w := &watchProc{t: t, done: make(chan struct{})}
	w.cmd = e.command(ctx, name, args...)
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := w.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var copying sync.WaitGroup
	gather := func(r io.Reader, b *strings.Builder) {
		defer copying.Done()
		br := bufio.NewReader(r)
		buf := make([]byte, 32<<10)
		for {
			n, err := br.Read(buf)
			w.mu.Lock()
			b.Write(buf[:n])
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}
	copying.Add(2)
	go gather(stdout, &w.out)
	go gather(stderr, &w.err)
	go func() {
		copying.Wait()
		w.cmd.Wait()
		w.code = w.cmd.ProcessState.ExitCode()
		close(w.done)
	}()
	t.Cleanup(func() {
		w.cmd.Process.Kill()
		<-w.done
	})
	return w
}

func (w *watchProc) output() (stdout, stderr string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String(), w.err.String()
}

// waitFor waits until watch's standard output holds want.
func (w *watchProc) waitFor(want string) string {
	w.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, errOut := w.output()
		if strings.Contains(out, want) {
			return out
		}
		select {
		case <-w.done:
			out, errOut = w.output()
			if strings.Contains(out, want) {
				return out
			}
			w.t.Fatalf("airlock watch exited (%d) without printing %q\nstdout:\n%s\nstderr:\n%s", w.code, want, out, errOut)
		default:
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("airlock watch did not print %q\nstdout:\n%s\nstderr:\n%s", want, out, errOut)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitForErr waits until watch's standard error holds want.
func (w *watchProc) waitForErr(want string) {
	w.t.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		out, errOut := w.output()
		if strings.Contains(errOut, want) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("airlock watch did not say %q\nstdout:\n%s\nstderr:\n%s", want, out, errOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// wait waits for watch to exit and returns its exit status.
func (w *watchProc) wait() int {
	w.t.Helper()
	select {
	case <-w.done:
		return w.code
	case <-time.After(3 * time.Minute):
		out, errOut := w.output()
		w.t.Fatalf("airlock watch did not exit after the run ended\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
	return -1
}

// peakRSS is watch's own peak resident memory so far (VmHWM), in bytes:
// that of airlock alone, without the git it runs on the host.
func (w *watchProc) peakRSS() int64 {
	w.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	if err != nil {
		w.t.Fatalf("watch's memory: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				w.t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	w.t.Fatal("no VmHWM in watch's status")
	return 0
}

// runStatus is the run's status as the store has it (ls reconciles).
func runStatus(t *testing.T, e *env, id string) store.Status {
	t.Helper()
	for _, r := range e.runs() {
		if r.ID == id {
			return r.Status
		}
	}
	t.Fatalf("no run %s", id)
	return ""
}

// `airlock watch` (RUN defaulting to the running run) prints each commit
// with its stat as the agent makes it, in order, while the run is still
// running, and ends with the run: its outcome and next steps.
func TestWatchShowsCommitsAsMade(t *testing.T) {
	onEngines(t, rootfulEngines, func(t *testing.T, e *env) {
		e.server(twoCommitsScript())
		id := strings.TrimSpace(e.ok("run", "-d", "-m", "Make two commits.", "--name", "watched").stdout)
		w := startWatch(t, e)

		out := w.waitFor("Add one.txt\n")
		if strings.Contains(out, "Add two.txt") {
			t.Fatalf("the second commit before the agent made it:\n%s", out)
		}
		if !strings.Contains(out, " one.txt | 1 +\n 1 file changed, 1 insertion(+)\n") {
			t.Errorf("no stat under the first commit:\n%s", out)
		}
		if s := runStatus(t, e, id); s != store.StatusRunning {
			t.Fatalf("first commit shown, run %s", s)
		}
		// On a terminal the bell rings for each new commit, not for
		// those already there.
		tty := startWatchTTY(t, e, id)
		if ttyOut := tty.waitFor("Add one.txt"); strings.Contains(ttyOut, "\a") {
			t.Errorf("a bell for a commit that was already there: %q", ttyOut)
		}
		// Ctrl-C stops watching, cleanly, and leaves the run going.
		intr := startWatch(t, e, "--new")
		intr.waitForErr("Watching the commits of run " + id)
		intr.cmd.Process.Signal(os.Interrupt)
		if code := intr.wait(); code != 0 {
			t.Errorf("watch interrupted exited %d, want 0", code)
		}
		if _, errOut := intr.output(); !strings.Contains(errOut, "Stopped watching run "+id) || strings.Contains(errOut, "interrupted") {
			t.Errorf("watch interrupted said:\n%s", errOut)
		}
		if s := runStatus(t, e, id); s != store.StatusRunning {
			t.Fatalf("after interrupting a watch, run %s", s)
		}
		e.ok("exec", id, "--", "touch", "/tmp/go1")

		out = w.waitFor("Add two.txt\n")
		ttyOut := tty.waitFor("Add two.txt")
		if i := strings.Index(ttyOut, "Add one.txt"); strings.Count(ttyOut, "\a") != 1 || strings.Index(ttyOut, "\a") < i {
			t.Errorf("on a terminal, not one bell for the new commit: %q", ttyOut)
		}
		if s := runStatus(t, e, id); s != store.StatusRunning {
			t.Fatalf("second commit shown, run %s", s)
		}
		one, two := strings.Index(out, "Add one.txt"), strings.Index(out, "Add two.txt")
		if one < 0 || two < one || strings.Count(out, "Add one.txt") != 1 {
			t.Fatalf("commits not once each, in order:\n%s", out)
		}
		if !strings.Contains(out[two:], " two.txt | 2 ++\n 1 file changed, 2 insertions(+)\n") {
			t.Errorf("no stat under the second commit:\n%s", out)
		}
		if strings.Contains(out, "\a") {
			t.Error("a bell on output that is not a terminal")
		}
		e.ok("exec", id, "--", "touch", "/tmp/go2")

		if code := w.wait(); code != 0 {
			out, errOut := w.output()
			t.Fatalf("watch exited %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		out, errOut := w.output()
		t.Logf("watch printed:\n%s\n%s", out, errOut)
		if !strings.Contains(errOut, "Run "+id+" succeeded") || !strings.Contains(errOut, "airlock merge "+id) {
			t.Errorf("no outcome and next steps at the end:\n%s", errOut)
		}
		if strings.Count(out, "Add two.txt") != 1 {
			t.Errorf("a commit printed twice:\n%s", out)
		}
		// Lines are "<short id> <subject>": the ids are the commits'.
		branch := e.git("log", "--reverse", "--format=%h %s", "main..airlock/"+id)
		for _, line := range strings.Split(strings.TrimSpace(branch), "\n") {
			if !strings.Contains(out, line+"\n") {
				t.Errorf("watch did not print %q (the branch has it)\n%s", line, out)
			}
		}

		// A finished run: its commits from its branch, then its outcome.
		again := e.ok("watch", id)
		if !strings.Contains(again.stdout, "Add one.txt") || strings.Index(again.stdout, "Add two.txt") < strings.Index(again.stdout, "Add one.txt") {
			t.Errorf("watch of the finished run:\n%s", again.stdout)
		}
		if fresh := e.ok("watch", "--new", id); strings.Contains(fresh.stdout, "Add") {
			t.Errorf("watch --new of a finished run printed old commits:\n%s", fresh.stdout)
		}
	})
}
