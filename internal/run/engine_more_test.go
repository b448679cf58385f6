package run

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/notify"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/memengine"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/workspace"
)

// fakeTmux answers the tmux and infocmp commands a session runs, as the
// sandbox's own would.
func fakeTmux(p *memengine.Proc, spec sandbox.ExecSpec) int {
	out := spec.Stdout
	if out == nil {
		out = io.Discard
	}
	switch {
	case spec.Cmd[0] == "infocmp":
		if spec.Cmd[len(spec.Cmd)-1] == "xterm-unknown" {
			return 1
		}
		return 0
	case len(spec.Cmd) > 1 && spec.Cmd[1] == "display-message":
		fmt.Fprint(out, "120 40\n")
	case len(spec.Cmd) > 1 && spec.Cmd[1] == "capture-pane":
		fmt.Fprint(out, "the agent's screen\n")
	case len(spec.Cmd) > 2 && spec.Cmd[2] == "attach-session":
		io.Copy(out, spec.Stdin)
	case spec.Cmd[0] == "false":
		fmt.Fprint(spec.Stderr, "no\n")
		return 1
	}
	return 0
}

func TestShellSession(t *testing.T) {
	w := newWorld(t)
	eng := w.eng.WithExec(fakeTmux)
	w.m.Engine, w.m.Caps = eng, sandbox.CapsOf(eng)
	w.setAgent(func(p *memengine.Proc) int {
		p.WriteFile(containerLogDir+"/"+agentLog, []byte(`{"type":"system"}`+"\n"))
		return untilKilled(p)
	})
	req := w.request("shell")
	req.Kind = KindShell
	r := w.start(req)
	if err := RequireShell(r); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := w.m.Session(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WaitTmux(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := s.Terminal(ctx, "xterm-kitty"); got != "xterm-kitty" {
		t.Errorf("Terminal(known) = %s", got)
	}
	for _, term := range []string{"xterm-unknown", "a/b", ""} {
		if got := s.Terminal(ctx, term); got != "xterm-256color" {
			t.Errorf("Terminal(%q) = %s, want the fallback", term, got)
		}
	}
	if sz, err := s.Size(ctx); err != nil || sz != (sandbox.TermSize{Width: 120, Height: 40}) {
		t.Errorf("Size = %v, %v", sz, err)
	}
	if screen, err := s.Capture(ctx); err != nil || !strings.Contains(screen, "screen") {
		t.Errorf("Capture = %q, %v", screen, err)
	}
	if err := s.SendKeys(ctx, "hello", true); err != nil {
		t.Errorf("SendKeys: %v", err)
	}
	if _, err := s.Output(ctx, "false"); err == nil || !strings.Contains(err.Error(), "exit status 1: no") {
		t.Errorf("Output of a failing command: %v", err)
	}
	var out bytes.Buffer
	if _, err := s.Attach(ctx, "xterm", strings.NewReader("typed"), &out, sandbox.TermSize{}, nil); err != nil || out.String() != "typed" {
		t.Errorf("Attach = %q, %v", out.String(), err)
	}
	if f, err := w.m.OpenTranscript(r); err == nil {
		f.Close()
	}
	if _, err := w.m.Stop(ctx, r, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := w.m.Session(ctx, r); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Session of a stopped run: %v", err)
	}
	headless := &store.Run{ID: "h", Kind: KindHeadless}
	if err := RequireShell(headless); !errors.Is(err, ErrNotInteractive) {
		t.Errorf("RequireShell(headless) = %v", err)
	}
}

func TestNotifications(t *testing.T) {
	var mu sync.Mutex
	var got []notify.Message
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var msg notify.Message
		json.NewDecoder(r.Body).Decode(&msg)
		mu.Lock()
		got = append(got, msg)
		mu.Unlock()
	}))
	defer srv.Close()
	w := newWorld(t)
	started := make(chan struct{})
	w.setAgent(func(p *memengine.Proc) int {
		p.WriteFile(containerLogDir+"/"+eventsFile, []byte(`{"event":"waiting","text":"need \u001b[31minput"}`+"\n"))
		close(started)
		return untilKilled(p)
	})
	req := w.request("task")
	req.Notify = notify.Config{Webhook: srv.URL}
	r := w.start(req)
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	w.m.NotifyEvents(ctx, r)
	cancel()
	if _, err := w.m.Stop(context.Background(), r, time.Second); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var events []string
	for _, m := range got {
		events = append(events, m.Event)
		if strings.ContainsRune(m.Reason, 0x1b) {
			t.Errorf("a notification carries an escape: %q", m.Reason)
		}
	}
	if strings.Join(events, ",") != notify.EventWaiting+","+notify.EventFinished {
		t.Errorf("notifications %v, want waiting then finished", events)
	}
}

func TestCachesAndEgressCounts(t *testing.T) {
	w := newWorld(t)
	w.setProxy(func(p *memengine.Proc) int {
		lines := `{"time":"2026-01-01T00:00:00Z","kind":"connect","host":"a.test","allowed":true}` + "\n" +
			`{"time":"2026-01-01T00:00:00Z","kind":"connect","host":"b.test","allowed":false}` + "\n" +
			`{"time":"2026-01-01T00:00:00Z","kind":"connect","host":"c.test","allowed":false}` + "\n"
		p.WriteFile(sandbox.ProxyConfigDir+"/"+auditLogName, []byte(lines))
		return untilKilled(p)
	})
	var npm string
	w.setAgent(func(p *memengine.Proc) int {
		npm, _, _ = p.HostPath(containerHome + "/.npm")
		return 0
	})
	req := w.request("task")
	req.Caches = []string{"npm"}
	r := w.wait(w.start(req))
	if r.EgressAllowed != 1 || r.EgressDenied != 2 {
		t.Errorf("egress counts %d allowed, %d denied; want 1, 2", r.EgressAllowed, r.EgressDenied)
	}
	if want := w.m.CacheDir(w.repo, "npm"); npm != want {
		t.Errorf("npm cache mounted from %q, want %q", npm, want)
	}
}

func TestOrphansAndElapsed(t *testing.T) {
	w := newWorld(t)
	r := w.wait(w.start(w.request("task")))
	ctx := context.Background()
	orphan := &store.Run{ID: "gone-1", Project: w.repo}
	if _, err := w.eng.Create(ctx, sandbox.Spec{Name: "airlock-gone-1", Image: testImage, User: "1000:1000", Labels: w.m.labels(orphan, "agent")}); err != nil {
		t.Fatal(err)
	}
	got, err := w.m.Orphans(ctx)
	if err != nil || len(got) != 1 || got[0].Name != "airlock-gone-1" {
		t.Fatalf("Orphans = %v, %v", got, err)
	}
	if d := Elapsed(r, time.Now()); d <= 0 || d > time.Minute {
		t.Errorf("Elapsed = %v", d)
	}
	if d := Elapsed(&store.Run{}, time.Now()); d != 0 {
		t.Errorf("Elapsed of a run never started = %v", d)
	}
	if d := Elapsed(&store.Run{StartedAt: time.Now().Add(-time.Minute)}, time.Now()); d < time.Minute {
		t.Errorf("Elapsed of a running run = %v", d)
	}
}

// A run whose creator died mid-start is recorded as failed, and its
// leftovers are cleaned.
func TestInterruptedCreation(t *testing.T) {
	w := newWorld(t)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	r := &store.Run{ID: "task-dead0000", Name: "task", Project: w.repo, Status: store.StatusCreating,
		Container: ContainerName("task-dead0000"), CreatorPID: dead.Process.Pid, CreatedAt: time.Now()}
	if err := w.m.Store.Create(r); err != nil {
		t.Fatal(err)
	}
	got, err := w.m.Collect(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusFailed || !strings.Contains(got.Error, "interrupted") || !got.Harvested {
		t.Fatalf("interrupted run: %s %q harvested %v", got.Status, got.Error, got.Harvested)
	}
	if _, err := w.m.Remove(context.Background(), got, true); err != nil {
		t.Fatalf("Remove --force: %v", err)
	}
}

// A headless run's Resume needs a saved conversation; a run still going
// cannot be resumed.
func TestResumeRefusals(t *testing.T) {
	w := newWorld(t)
	w.setAgent(untilKilled)
	r := w.start(w.request("task"))
	if err := w.m.Resumable(r); err == nil || !strings.Contains(err.Error(), "running") {
		t.Errorf("Resumable(running) = %v", err)
	}
	r, err := w.m.Stop(context.Background(), r, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.m.Resumable(r); !errors.Is(err, ErrSessionLost) {
		t.Errorf("Resumable without a conversation = %v", err)
	}
	req := w.request("again")
	req.Resume = r
	if _, err := w.m.Start(context.Background(), req); err == nil {
		t.Error("a run resumed without a conversation started")
	}
	if _, err := os.Stat(filepath.Join(w.m.Store.Dir(), "runs")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(w.m.Store.Dir(), "runs"))
		if len(entries) != 1 {
			t.Errorf("run directories after a refused resume: %d, want 1", len(entries))
		}
	}
	_ = agent.APIAuth{}
}

// Work that could not be brought back is neither diffed nor silently
// dropped.
func TestHarvestFailure(t *testing.T) {
	w := newWorld(t)
	w.mu.Lock()
	w.harvest = func(p *memengine.Proc) int { return 3 }
	w.mu.Unlock()
	r := w.wait(w.start(w.request("task")))
	if !strings.Contains(r.HarvestError, "exited with status 3") {
		t.Fatalf("HarvestError = %q", r.HarvestError)
	}
	ctx := context.Background()
	if err := w.m.Diff(ctx, r, workspaceDiff(), io.Discard); err == nil || !strings.Contains(err.Error(), "could not be brought back") {
		t.Errorf("Diff: %v", err)
	}
	if _, err := w.m.Remove(ctx, r, false); !errors.Is(err, ErrUnmerged) {
		t.Errorf("Remove without --force: %v", err)
	}
	if r, err := w.m.Remove(ctx, r, true); err != nil || !r.Removed() {
		t.Errorf("Remove --force: %v", err)
	}
	if err := w.m.Resumable(r); err == nil {
		t.Error("a run whose work was lost is resumable")
	}
}

func TestRunningRunRefusesReview(t *testing.T) {
	w := newWorld(t)
	w.setAgent(untilKilled)
	r := w.start(w.request("task"))
	ctx := context.Background()
	if err := w.m.Diff(ctx, r, workspaceDiff(), io.Discard); !errors.Is(err, ErrStillRunning) {
		t.Errorf("Diff of a running run: %v", err)
	}
	if _, err := w.m.Remove(ctx, r, false); !errors.Is(err, ErrStillRunning) {
		t.Errorf("Remove of a running run: %v", err)
	}
	r, err := w.m.Remove(ctx, r, true)
	if err != nil || !r.Removed() {
		t.Fatalf("Remove --force of a running run: %v", err)
	}
	if left, _ := w.eng.List(ctx, nil); len(left) != 0 {
		t.Errorf("containers after Remove --force: %v", left)
	}
}

func TestResumeNeedsItsWorkInTheProject(t *testing.T) {
	w := newWorld(t)
	r := w.wait(w.start(w.request("task")))
	r.Head = strings.Repeat("ab", 20)
	req := w.request("again")
	req.Resume = r
	if err := w.m.Check(context.Background(), req); err == nil || !strings.Contains(err.Error(), "no longer in") || !strings.Contains(err.Error(), "abababababab") {
		t.Errorf("Check: %v", err)
	}
}

// The proxy and relay run this binary in containers without a libc.
func TestStaticSelf(t *testing.T) {
	path, err := staticSelf()
	if err != nil {
		if !strings.Contains(err.Error(), "CGO_ENABLED=0") {
			t.Fatalf("staticSelf: %v, want a hint how to build a static binary", err)
		}
		return
	}
	if !filepath.IsAbs(path) {
		t.Errorf("staticSelf = %s, want an absolute path", path)
	}
}

func workspaceDiff() workspace.DiffOptions { return workspace.DiffOptions{} }
