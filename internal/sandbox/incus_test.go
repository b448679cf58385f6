package sandbox_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

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
