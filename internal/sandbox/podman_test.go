package sandbox_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/user"
	"strings"
	"testing"

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
func TestPodmanRootlessEngine(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("not root: TestPodmanEngine runs on this user's rootless Podman already")
	}
	name := testkit.RootlessUser()
	u, err := user.Lookup(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs the rootless test user %s (scripts/setup.sh creates it): %v", name, err)
		}
		t.Skipf("no rootless test user %s (scripts/setup.sh creates it): %v", name, err)
	}
	out, err := testkit.AsUser(t, u, os.Args[0], "-test.run", "^TestPodmanEngine$", "-test.v", "-test.count=1")
	t.Logf("as %s:\n%s", name, out)
	if err != nil {
		t.Fatalf("TestPodmanEngine as %s: %v", name, err)
	}
	if strings.Contains(out, "--- SKIP: TestPodmanEngine ") {
		t.Fatalf("TestPodmanEngine was skipped as %s", name)
	}
}

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

// Podman's compatible API ignores the runtime asked for (a gVisor run would
// silently get runc); the Podman engine refuses it before creating anything.
func TestPodmanRefusesRunsc(t *testing.T) {
	p := testkit.Podman(t)
	importImage(t, p)
	name := "airlock-podman-runsc-test"
	_, err := p.Create(context.Background(), sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"true"}, User: "1000:1000", Runtime: "runsc"})
	if err == nil || !strings.Contains(err.Error(), "runsc runtime") || !strings.Contains(err.Error(), "Podman") {
		p.Remove(context.Background(), name)
		t.Fatalf("Create with runtime runsc on Podman: err = %v, want one saying the runtime cannot be chosen on Podman", err)
	}
	if _, err := p.Inspect(context.Background(), name); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("the refused Create left a container: %v", err)
	}
}
