package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// shInstance creates instance name (replacing any left over) running
// script as an unprivileged user, removed when the test ends.
func shInstance(t *testing.T, inc *sandbox.Incus, name, script string) {
	t.Helper()
	ctx := context.Background()
	inc.Remove(ctx, name)
	if _, err := inc.Create(ctx, sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"/bin/sh", "-c", script}, User: "1000:1000"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { inc.Remove(context.Background(), name) })
}

// exitedInstance creates instance name running `exit code`, starts it and
// waits for it to end so.
func exitedInstance(t *testing.T, inc *sandbox.Incus, name string, code int) {
	t.Helper()
	shInstance(t, inc, name, fmt.Sprintf("exit %d", code))
	ctx := context.Background()
	if err := inc.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	if got, err := inc.Wait(ctx, name); err != nil || got != code {
		t.Fatalf("Wait = %d, %v; want %d", got, err, code)
	}
}

// incusEngine connects to Incus, with the static airlock binary built from
// this tree as its instances' init and the suite's image imported.
func incusEngine(t *testing.T) *sandbox.Incus {
	t.Helper()
	inc := testkit.Incus(t)
	inc.UseBinary(staticAirlock(t))
	ctx := context.Background()
	if ok, err := inc.ImageExists(ctx, sandboxtest.Image); err != nil {
		t.Fatal(err)
	} else if !ok {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(sandboxtest.BusyboxRootfs(pw, sandboxtest.BusyboxPath)) }()
		if err := inc.ImportImage(ctx, pr, sandboxtest.Image); err != nil {
			t.Fatalf("import %s: %v", sandboxtest.Image, err)
		}
		if ok, err := inc.ImageExists(ctx, sandboxtest.Image); err != nil || !ok {
			t.Fatalf("import %s: image missing afterwards (%v)", sandboxtest.Image, err)
		}
	}
	return inc
}

var airlockBin struct {
	once sync.Once
	path string
	err  error
	out  []byte
}

// staticAirlock builds ./cmd/airlock statically, once per test binary.
func staticAirlock(t *testing.T) string {
	t.Helper()
	airlockBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-incus-test-")
		if err != nil {
			airlockBin.err = err
			return
		}
		os.Chmod(dir, 0o755)
		airlockBin.path = filepath.Join(dir, "airlock")
		cmd := exec.Command("go", "build", "-o", airlockBin.path, "github.com/airlock-dev/airlock/cmd/airlock")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		airlockBin.out, airlockBin.err = cmd.CombinedOutput()
	})
	if airlockBin.err != nil {
		t.Fatalf("build the airlock binary: %v\n%s", airlockBin.err, airlockBin.out)
	}
	return airlockBin.path
}

func TestIncusEngine(t *testing.T) {
	inc := incusEngine(t)
	sandboxtest.RunEngineSuite(t, func() sandbox.Engine { return inc })
}

func TestIncusPing(t *testing.T) {
	inc := testkit.Incus(t)
	if err := inc.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if inc.Kind() != "incus" {
		t.Errorf("Kind = %q", inc.Kind())
	}
}

// Incus runs LXC, not an OCI runtime: a runtime asked for is refused
// before anything is made, naming the engine.
func TestIncusRefusesRuntime(t *testing.T) {
	inc := incusEngine(t)
	name := "airlock-incus-runsc-test"
	_, err := inc.Create(context.Background(), sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"true"}, User: "1000:1000", Runtime: "runsc"})
	if !errors.Is(err, sandbox.ErrUnsupported) || !strings.Contains(err.Error(), "runsc") || !strings.Contains(err.Error(), "incus") {
		inc.Remove(context.Background(), name)
		t.Fatalf("Create with runtime runsc on Incus: err = %v, want ErrUnsupported naming runsc and incus", err)
	}
	if _, err := inc.Inspect(context.Background(), name); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("the refused Create left an instance: %v", err)
	}
}

// A missing image is ErrNotFound, with what to do.
func TestIncusMissingImage(t *testing.T) {
	inc := incusEngine(t)
	_, err := inc.Create(context.Background(), sandbox.Spec{Name: "airlock-incus-noimage-test", Image: "airlock-test-absent:0", Cmd: []string{"true"}, User: "1000:1000"})
	if !errors.Is(err, sandbox.ErrNotFound) || !strings.Contains(err.Error(), "build or import it first") {
		t.Fatalf("Create from a missing image: %v", err)
	}
}

// An instance whose init has ended is exited at once, though Incus tears it
// down for ~0.6 s more: Wait and Inspect say so with the init's code, a
// new start waits for the teardown and is not mistaken for the old one, and
// a removed instance is gone to the engine at once (its deletion finishing
// in the background, by Close).
func TestIncusEndedBeforeTeardown(t *testing.T) {
	inc := incusEngine(t)
	ctx := context.Background()
	name := "airlock-incus-ended-test"
	t.Cleanup(func() { inc.Close() }) // after the removal: it waits for the deletion
	shInstance(t, inc, name, "sleep 0.3; exit 7")
	var first time.Time
	for leg := 1; leg <= 2; leg++ {
		started := time.Now()
		if err := inc.Start(ctx, name); err != nil {
			t.Fatalf("start %d: %v", leg, err)
		}
		if st, err := inc.Inspect(ctx, name); err != nil || (st.Status != sandbox.StatusRunning && st.Status != sandbox.StatusExited) ||
			(st.Status == sandbox.StatusExited && st.FinishedAt.Before(started)) {
			t.Fatalf("start %d: right after it, Inspect = %+v, %v; want running, or exited since the start", leg, st, err)
		}
		code, err := inc.Wait(ctx, name)
		if err != nil || code != 7 {
			t.Fatalf("start %d: Wait = %d, %v; want 7", leg, code, err)
		}
		st, err := inc.Inspect(ctx, name)
		if err != nil || st.Status != sandbox.StatusExited || st.ExitCode != 7 || st.FinishedAt.Before(started) || !st.FinishedAt.After(first) {
			t.Fatalf("start %d: after Wait, Inspect = %+v, %v; want exited 7, finished after the start", leg, st, err)
		}
		first = st.FinishedAt
		if err := inc.Stop(ctx, name, time.Second); err != nil {
			t.Fatalf("start %d: Stop of an ended instance: %v", leg, err)
		}
	}
	if err := inc.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := inc.Inspect(ctx, name); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect after Remove: %v, want ErrNotFound", err)
	}
	// The name is free again at once.
	if _, err := inc.Create(ctx, sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"true"}, User: "1000:1000"}); err != nil {
		t.Fatalf("Create after Remove: %v", err)
	}
	if err := inc.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	inc.Close()
	if out, err := exec.Command("incus", "list", "-c", "n", "-f", "csv", name).Output(); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("after Close, incus lists %q (%v)", out, err)
	}
}

// awaitIncusStopped waits until Incus itself reports the instance stopped.
func awaitIncusStopped(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := exec.Command("incus", "list", "-c", "s", "-f", "csv", name).Output()
		if err == nil && strings.TrimSpace(string(out)) == "STOPPED" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the instance did not stop: %q %v", out, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// An exit record older than the instance's last start is an earlier
// start's: the engine does not report it as this start's outcome, and says
// why it reports the instance dead.
func TestIncusStaleExitRecord(t *testing.T) {
	inc := incusEngine(t)
	ctx := context.Background()
	name := "airlock-incus-stale-test"
	exitedInstance(t, inc, name, 4)
	// Stopped, and out of the window in which a start may be under way.
	awaitIncusStopped(t, name)
	time.Sleep(11 * time.Second)
	if st, err := inc.Inspect(ctx, name); err != nil || st.Status != sandbox.StatusExited || st.ExitCode != 4 {
		t.Fatalf("Inspect of the stopped instance = %+v, %v; want exited 4", st, err)
	}
	stale := filepath.Join(t.TempDir(), "exit")
	if err := os.WriteFile(stale, []byte(`{"code":0,"finished":"2001-01-01T00:00:00Z"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("incus", "file", "push", "--uid", "0", "--gid", "0", "--mode", "0600", stale, name+"/.airlock-incus/exit").CombinedOutput(); err != nil {
		t.Fatalf("incus file push: %v\n%s", err, out)
	}
	st, err := inc.Inspect(ctx, name)
	if err != nil || st.Status != sandbox.StatusDead || !strings.Contains(st.Why, "earlier start") {
		t.Fatalf("Inspect with an earlier start's record = %+v, %v; want dead, saying why", st, err)
	}
}

// incusReadFailure is incusd's answer to a read of an instance's file when
// the file server it reads through went with the stopping instance.
const incusReadFailure = `{"type":"error","status":"","status_code":0,"operation":"","error_code":500,"error":"read unix @->/proc/self/fd/69/forkfile.sock: read: connection reset by peer","metadata":null}`

// faultyIncus returns an engine that talks to incusd through f, which
// picks the reads of the file at path in instance.
func faultyIncus(t *testing.T, f *faultProxy, instance, path string) *sandbox.Incus {
	t.Helper()
	return incusThrough(t, f, func(r *http.Request) bool {
		return r.Method == http.MethodGet && r.URL.Path == "/1.0/instances/"+instance+"/files" && r.URL.Query().Get("path") == path
	})
}

// incusThrough returns an engine that talks to incusd through f, which
// fails what pick picks.
func incusThrough(t *testing.T, f *faultProxy, pick func(*http.Request) bool) *sandbox.Incus {
	t.Helper()
	sock := f.serve(t, testkit.IncusSocket(), pick)
	inc, err := sandbox.NewIncus("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	inc.UseBinary(staticAirlock(t))
	t.Cleanup(func() { inc.Close() })
	return inc
}

// A read of an exit record that incusd fails (its file server went with
// the stopping instance, as seen in CI) is no verdict: Inspect reads again
// and reports the code, and Wait outlasts failures that go on for seconds.
// Before, Wait failed at the first, and with it the run.
func TestIncusExitRecordReadFails(t *testing.T) {
	inc := incusEngine(t)
	ctx := context.Background()
	name := "airlock-incus-readfail-test"
	shInstance(t, inc, name, "sleep 1; exit 5")
	var f faultProxy
	faulty := faultyIncus(t, &f, name, "/.airlock-incus/exit")

	if err := inc.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	f.failNext(1<<30, incusReadFailure) // every read, from before the command ends
	done := make(chan error, 1)
	var code int
	go func() {
		var err error
		code, err = faulty.Wait(ctx, name)
		done <- err
	}()
	// Failing for 5 s, through the command's end and Incus' teardown.
	time.Sleep(5 * time.Second)
	f.failNext(0, "")
	select {
	case err := <-done:
		t.Fatalf("Wait returned while every read of the exit record failed: %d, %v", code, err)
	default:
	}
	if err := <-done; err != nil || code != 5 {
		t.Fatalf("Wait = %d, %v; want 5", code, err)
	}
	if f.failed() == 0 {
		t.Fatal("no read of the exit record went through the failing proxy")
	}

	// Stopped: two failed reads, then the record.
	awaitIncusStopped(t, name)
	before := f.failed()
	f.failNext(2, incusReadFailure)
	st, err := faulty.Inspect(ctx, name)
	if err != nil || st.Status != sandbox.StatusExited || st.ExitCode != 5 {
		t.Fatalf("Inspect of the stopped instance while reads of its record fail = %+v, %v; want exited 5", st, err)
	}
	if f.failed()-before != 2 {
		t.Errorf("%d reads failed, want 2", f.failed()-before)
	}
}

// A read of a stopped instance's output that incusd fails (its file server
// went with the instance, as in CI) is read again: Logs reports the whole
// output once. Before, Logs failed at the first.
func TestIncusLogsReadFails(t *testing.T) {
	inc := incusEngine(t)
	ctx := context.Background()
	name := "airlock-incus-logsfail-test"
	shInstance(t, inc, name, "echo from the sandbox")
	var f faultProxy
	faulty := faultyIncus(t, &f, name, "/.airlock-incus/output")
	if err := inc.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	if code, err := inc.Wait(ctx, name); err != nil || code != 0 {
		t.Fatalf("Wait = %d, %v", code, err)
	}
	f.failNext(2, incusReadFailure)
	var out strings.Builder
	if err := faulty.Logs(ctx, name, &out); err != nil || out.String() != "from the sandbox\n" {
		t.Fatalf("Logs while the first two reads fail = %q, %v; want the output once", out.String(), err)
	}
	if f.failed() != 2 {
		t.Errorf("%d reads failed, want 2", f.failed())
	}
}

// incusd's forkfile race (incus_forkfile.go), brought about as incusd
// brings it about: the socket of the live file helper of a stopped
// instance is removed, so the helper the next request spawns is orphaned.
// Two engines, as two airlock processes (the watcher and `airlock stop`),
// keep asking for the instance's state meanwhile; every Inspect reports
// its exit code, and they go on doing so at once after the pause. Before,
// every Inspect failed with CI's "forkfile.sock: connect: no such file or
// directory", each after about 15 s, for as long as they kept asking.
func TestIncusForkfileOrphaned(t *testing.T) {
	inc, other := incusEngine(t), incusEngine(t)
	ctx := context.Background()
	name := "airlock-incus-forkfile-test"
	exitedInstance(t, inc, name, 3)
	// Incus ends the file helpers of an instance as it stops it, which it
	// may finish after Wait has seen the exit; then a read spawns the
	// helper whose socket is to go.
	run := filepath.Join("/run/incus", name)
	helper := func() string {
		pid, _ := os.ReadFile(filepath.Join(run, "forkfile.pid"))
		if p := strings.TrimSpace(string(pid)); p != "" {
			if _, err := os.Stat(filepath.Join("/proc", p)); err == nil {
				return p
			}
		}
		return ""
	}
	var pid string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Second) {
		if _, err := inc.Inspect(ctx, name); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		if pid = helper(); pid != "" || time.Now().After(deadline) {
			break
		}
	}
	if pid == "" {
		t.Fatalf("no file helper of %s lives after a read", name)
	}
	if err := os.Remove(filepath.Join(run, "forkfile.sock")); err != nil {
		t.Fatalf("remove the socket of the file helper (pid %s): %v", pid, err)
	}
	// The first read fails when the helper idles out, about 15 s from now,
	// the one queued behind it 15 s later, and the pause begun then ends
	// 20 s after that.
	until := time.Now().Add(75 * time.Second)
	var wg sync.WaitGroup
	for _, e := range []*sandbox.Incus{inc, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			quick := 0 // answers in under a second
			for time.Now().Before(until) {
				start := time.Now()
				st, err := e.Inspect(ctx, name)
				if err != nil || st.Status != sandbox.StatusExited || st.ExitCode != 3 {
					t.Errorf("Inspect after %s = %+v, %v; want exited 3", time.Since(start).Round(time.Second), st, err)
					return
				}
				if time.Since(start) < time.Second {
					quick++
				}
			}
			if quick < 10 {
				t.Errorf("%d answers in under a second in the last part of a minute; the helper is still orphaned", quick)
			}
		}()
	}
	wg.Wait()
}
