package sandbox_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
	"github.com/moby/moby/client"
)

func TestDockerEngine(t *testing.T) {
	d := testkit.Docker(t)
	importBusybox(t, d)
	sandboxtest.RunEngineSuite(t, func() sandbox.Engine { return d })
}

func TestDockerUnreachable(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent.sock")
	d, err := sandbox.NewDocker()
	if err != nil {
		t.Fatalf("NewDocker: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	ctx := context.Background()

	checks := map[string]func() error{
		"Ping":    func() error { return d.Ping(ctx) },
		"Inspect": func() error { _, err := d.Inspect(ctx, "x"); return err },
		"Create": func() error {
			_, err := d.Create(ctx, sandbox.Spec{Name: "x", Image: sandboxtest.Image, User: "1000:1000"})
			return err
		},
		"List": func() error { _, err := d.List(ctx, nil); return err },
	}
	for name, call := range checks {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, sandbox.ErrEngineUnreachable) {
				t.Fatalf("err = %v, want ErrEngineUnreachable", err)
			}
			for _, hint := range []string{"is the Docker daemon running", "systemctl start docker", "DOCKER_HOST=unix:///nonexistent.sock"} {
				if !strings.Contains(err.Error(), hint) {
					t.Errorf("error %q does not tell the user %q", err, hint)
				}
			}
		})
	}
}

// importBusybox imports the suite's image unless the engine already has it.
func importBusybox(t *testing.T, d *sandbox.Docker) {
	t.Helper()
	ctx := context.Background()
	ok, err := d.ImageExists(ctx, sandboxtest.Image)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		return
	}
	cli, err := client.New(client.FromEnv)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sandboxtest.BusyboxRootfs(pw, sandboxtest.BusyboxPath)) }()
	res, err := cli.ImageImport(ctx, client.ImageImportSource{Source: pr, SourceName: "-"}, sandboxtest.Image, client.ImageImportOptions{})
	if err != nil {
		t.Fatalf("import %s: %v", sandboxtest.Image, err)
	}
	out, err := io.ReadAll(res)
	res.Close()
	if err != nil {
		t.Fatalf("import %s: %v", sandboxtest.Image, err)
	}
	if ok, err := d.ImageExists(ctx, sandboxtest.Image); err != nil || !ok {
		t.Fatalf("import %s: image missing afterwards (%v): %s", sandboxtest.Image, err, out)
	}
}
