package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestPodmanEngine runs the engine suite on the Podman of the user the test
// runs as: rootful as root, rootless otherwise (TestPodmanRootlessEngine
// runs it so).
func TestPodmanEngine(t *testing.T) {
	p := testkit.Podman(t)
	importImage(t, p)
	rootless, err := p.Rootless(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := os.Getuid() != 0; rootless != want {
		t.Fatalf("Rootless() = %v for uid %d, want %v", rootless, os.Getuid(), want)
	}
	sandboxtest.RunEngineSuite(t, func() sandbox.Engine { return p })
}

// TestPodmanRootlessEngine runs TestPodmanEngine again as an unprivileged
// user, on that user's rootless Podman: this test binary, re-executed by
// runuser.
func TestPodmanRootlessEngine(t *testing.T) { runAsRootless(t, "TestPodmanEngine") }

// runAsRootless runs the test named test again, as the rootless test user
// on its own Podman, and fails if it fails or skips there.
func runAsRootless(t *testing.T, test string) {
	if os.Getuid() != 0 {
		t.Skipf("not root: %s runs on this user's rootless Podman already", test)
	}
	name := testkit.RootlessUser()
	u, err := user.Lookup(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs the rootless test user %s (scripts/setup.sh creates it): %v", name, err)
		}
		t.Skipf("no rootless test user %s (scripts/setup.sh creates it): %v", name, err)
	}
	out, err := testkit.AsUser(t, u, os.Args[0], "-test.run", "^"+test+"$", "-test.v", "-test.count=1")
	t.Logf("as %s:\n%s", name, out)
	if err != nil {
		// The reasons, on their own: the whole output above is long.
		t.Fatalf("%s as %s: %v:\n%s", test, name, err, failureLines(out))
	}
	if strings.Contains(out, "--- SKIP: "+test+" ") {
		t.Fatalf("%s was skipped as %s", test, name)
	}
}

// failureLines picks from go test -v output the failed tests and the
// messages they logged.
func failureLines(out string) string {
	var b strings.Builder
	for line := range strings.Lines(out) {
		trim := strings.TrimSpace(line)
		if strings.HasPrefix(trim, "--- FAIL") || fileLine.MatchString(trim) {
			b.WriteString(line)
		}
	}
	return b.String()
}

// fileLine matches the start of a message a test logged: "suite.go:456: ".
var fileLine = regexp.MustCompile(`^[\w.-]+\.go:\d+: `)

func TestPodmanUnreachable(t *testing.T) {
	p, err := sandbox.NewPodman("unix:///nonexistent/podman.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	for name, call := range map[string]func() error{
		"Ping": func() error { return p.Ping(ctx) },
		"Create": func() error {
			_, err := p.Create(ctx, sandbox.Spec{Name: "x", Image: sandboxtest.Image, User: "1000:1000"})
			return err
		},
		"Rootless": func() error { _, err := p.Rootless(ctx); return err },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, sandbox.ErrEngineUnreachable) {
				t.Fatalf("err = %v, want ErrEngineUnreachable", err)
			}
			for _, hint := range []string{"Podman", "podman system service", "/nonexistent/podman.sock"} {
				if !strings.Contains(err.Error(), hint) {
					t.Errorf("error %q does not tell the user %q", err, hint)
				}
			}
		})
	}
}

func TestPodmanHost(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for _, tc := range []struct {
		name string
		env  map[string]string
		uid  int
		want string
	}{
		{"root", nil, 0, "unix:///run/podman/podman.sock"},
		{"user", map[string]string{"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "unix:///run/user/1000/podman/podman.sock"},
		{"user without runtime dir", nil, 1001, "unix:///run/user/1001/podman/podman.sock"},
		{"CONTAINER_HOST", map[string]string{"CONTAINER_HOST": "unix:///x.sock", "XDG_RUNTIME_DIR": "/r"}, 1000, "unix:///x.sock"},
	} {
		if got := sandbox.PodmanHost(env(tc.env), tc.uid); got != tc.want {
			t.Errorf("%s: PodmanHost = %s, want %s", tc.name, got, tc.want)
		}
	}
}

// importImage imports the suite's image unless the engine already has it.
func importImage(t *testing.T, d *sandbox.Docker) {
	t.Helper()
	ctx := context.Background()
	if ok, err := d.ImageExists(ctx, sandboxtest.Image); err != nil {
		t.Fatal(err)
	} else if ok {
		return
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sandboxtest.BusyboxRootfs(pw, sandboxtest.BusyboxPath)) }()
	if err := d.ImportImage(ctx, pr, sandboxtest.Image); err != nil {
		t.Fatalf("import %s: %v", sandboxtest.Image, err)
	}
	if ok, err := d.ImageExists(ctx, sandboxtest.Image); err != nil || !ok {
		t.Fatalf("import %s: image missing afterwards (%v)", sandboxtest.Image, err)
	}
}

// TestPodmanRuntime: a container asking for gVisor on Podman runs under it
// (created through the Podman service whose default runtime is runsc),
// while one asking for nothing runs under runc; a runtime without a
// service is refused with what to start. On the Podman of the user the test
// runs as (TestPodmanRootlessRuntime runs it rootless).
func TestPodmanRuntime(t *testing.T) {
	p := testkit.Podman(t)
	importImage(t, p)
	ctx := context.Background()
	if err := sandbox.CheckRuntime(ctx, p, "runsc"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs gVisor on Podman (scripts/setup.sh): %v", err)
		}
		t.Skipf("no gVisor on Podman (scripts/setup.sh): %v", err)
	}
	have, err := p.Runtimes(ctx)
	if err != nil || !slices.Contains(have, "runc") || !slices.Contains(have, "runsc") {
		t.Errorf("Runtimes = %v, %v; want runc and runsc among them", have, err)
	}
	err = sandbox.CheckRuntime(ctx, p, "nosuch")
	for _, w := range []string{`runtime "nosuch" is not one the container engine has`, "runsc", "podman-nosuch.sock", "--runtime nosuch system service"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("CheckRuntime(nosuch) = %v, want an error containing %q", err, w)
		}
	}

	for _, tt := range []struct {
		runtime string
		gvisor  bool
	}{{"runsc", true}, {"", false}} {
		t.Run("runtime "+tt.runtime, func(t *testing.T) {
			name := "airlock-podman-runtime-test-" + tt.runtime
			p.Remove(ctx, name)
			t.Cleanup(func() { p.Remove(ctx, name) })
			id, err := p.Create(ctx, sandbox.Spec{
				Name: name, Image: sandboxtest.Image, User: "1000:1000", Runtime: tt.runtime,
				Cmd: []string{"sh", "-c", "cat /proc/version; dmesg 2>&1 | head -n 3"},
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Start(ctx, id); err != nil {
				t.Fatal(err)
			}
			if code, err := p.Wait(ctx, id); err != nil || code != 0 {
				t.Fatalf("Wait = %d, %v", code, err)
			}
			var out strings.Builder
			if err := p.Logs(ctx, id, &out); err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(out.String(), "gVisor"); got != tt.gvisor {
				t.Errorf("under gVisor = %v, want %v; the container printed:\n%s", got, tt.gvisor, out.String())
			}
		})
	}
}

// TestPodmanRootlessRuntime runs TestPodmanRuntime again on the rootless
// test user's Podman.
func TestPodmanRootlessRuntime(t *testing.T) { runAsRootless(t, "TestPodmanRuntime") }

// A gVisor service that is not what airlock needs is refused before
// anything is created, saying what to fix: one whose default runtime is
// another, and one that runs runsc as another program than the main
// service does (it read another containers.conf, or the main service was
// started before runsc was registered). Rootful: the services are root's.
func TestPodmanRuntimeServiceChecked(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("starts rootful Podman services")
	}
	testkit.Podman(t)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	dir := t.TempDir()
	if err := os.Symlink("/run/podman/podman.sock", filepath.Join(dir, "podman.sock")); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte("[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n[engine.runtimes]\nrunsc = [\"/usr/bin/runsc\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"another default runtime", nil, []string{"--runtime", "runc"}, `its default runtime is "runc", not "runsc"`},
		{"runsc as another program", []string{"CONTAINERS_CONF=" + conf}, []string{"--runtime", "runsc"}, "restart the one started before runsc was registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(dir, "podman-runsc.sock")
			os.Remove(sock)
			cmd := exec.Command("podman", append(tt.args, "system", "service", "--time=0", "unix://"+sock)...)
			cmd.Env = append(os.Environ(), tt.env...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the service did not start:\n%s", out.String())
				}
			}
			p, err := sandbox.NewPodman("unix://" + filepath.Join(dir, "podman.sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			err = sandbox.CheckRuntime(context.Background(), p, "runsc")
			t.Logf("CheckRuntime: %v", err)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), sock) {
				t.Errorf("CheckRuntime(runsc) = %v, want an error naming %s and saying %q", err, sock, tt.want)
			}
		})
	}
}

// A container's process that exits while Podman inspects it fails that
// inspect ("read /proc/N/cgroup: no such process", seen in CI from a List
// while another container ended). Inspect, List and Wait look again and
// report the container; a failure that goes on is still reported, and
// other errors are not retried.
func TestPodmanInspectWhileExiting(t *testing.T) {
	p := testkit.Podman(t)
	importImage(t, p)
	ctx := context.Background()
	label := map[string]string{"airlock.test": "podman-exiting"}
	spec := sandbox.Spec{Name: "airlock-podman-exiting-test", Image: sandboxtest.Image,
		Cmd: []string{"sh", "-c", "sleep 2; exit 5"}, User: "1000:1000", Labels: label}
	p.Remove(ctx, spec.Name) // left by an earlier, killed test
	id, err := p.Create(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Remove(context.Background(), id) })
	var f faultProxy
	faulty := faultyPodman(t, &f, id, spec.Name)
	if err := p.Start(ctx, id); err != nil {
		t.Fatal(err)
	}

	f.failNext(3, processGone)
	st, err := faulty.Inspect(ctx, id)
	if err != nil || st.Status != sandbox.StatusRunning {
		t.Fatalf("Inspect while the first inspects fail = %+v, %v; want running", st, err)
	}
	f.failNext(3, processGone)
	all, err := faulty.List(ctx, label)
	if err != nil || len(all) != 1 || all[0].Name != spec.Name {
		t.Fatalf("List while the first inspects fail = %+v, %v; want the container", all, err)
	}
	f.failNext(3, processGone)
	if code, err := faulty.Wait(ctx, id); err != nil || code != 5 {
		t.Fatalf("Wait while the first inspects fail = %d, %v; want 5", code, err)
	}
	if got := f.failed(); got != 9 {
		t.Errorf("%d inspects failed, want 9", got)
	}

	// A failure that does not end is reported, after a bounded wait.
	f.failNext(1<<30, processGone)
	start := time.Now()
	if _, err := faulty.Inspect(ctx, id); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Fatalf("Inspect while every inspect fails = %v; want Podman's error", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Inspect took %v to give up", d)
	}
	// Any other failure counts at once.
	before := f.failed()
	f.failNext(1<<30, `{"cause":"some other failure","message":"some other failure","response":500}`)
	if _, err := faulty.Inspect(ctx, id); err == nil || !strings.Contains(err.Error(), "some other failure") {
		t.Fatalf("Inspect = %v; want the other failure", err)
	}
	if got := f.failed() - before; got != 1 {
		t.Errorf("another failure was tried %d times, want once", got)
	}
}

// processGone is Podman's answer to the inspect of a container whose
// process has just gone, as CI met it.
const processGone = `{"cause":"no such process","message":"read /proc/32321/cgroup: no such process","response":500}`

// faultyPodman returns an engine that talks to the Podman service of the
// user the test runs as through f, which picks the inspects of the
// container, named by its id or its name.
func faultyPodman(t *testing.T, f *faultProxy, id, name string) *sandbox.Docker {
	t.Helper()
	real := strings.TrimPrefix(sandbox.PodmanHost(os.Getenv, os.Getuid()), "unix://")
	sock := f.serve(t, real, func(r *http.Request) bool {
		return r.Method == http.MethodGet && (strings.HasSuffix(r.URL.Path, "/containers/"+id+"/json") || strings.HasSuffix(r.URL.Path, "/containers/"+name+"/json"))
	})
	d, err := sandbox.NewPodman("unix://" + sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
