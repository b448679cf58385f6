package sandbox_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// noRuntimes is an engine that cannot choose a container's runtime.
type noRuntimes struct{ sandbox.Engine }

func TestCheckRuntime(t *testing.T) {
	d := testkit.Docker(t)
	ctx := context.Background()
	have, err := d.Runtimes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(have, "runc") {
		t.Fatalf("Runtimes = %v, want runc among them", have)
	}
	tests := []struct {
		name    string
		engine  sandbox.Engine
		runtime string
		wantErr []string // all in the error; none means no error
	}{
		{"the default", d, "", nil},
		{"one the engine has", d, "runc", nil},
		{"one it lacks", d, "nosuch", []string{`runtime "nosuch" is not one the container engine has`, "runc", "--runtime"}},
		{"an engine that cannot choose", noRuntimes{d}, "runsc", []string{"cannot choose a container's runtime"}},
		{"the default on such an engine", noRuntimes{d}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := sandbox.CheckRuntime(ctx, tt.engine, tt.runtime)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("CheckRuntime(%q) = %v, want nil", tt.runtime, err)
				}
				return
			}
			for _, w := range tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("CheckRuntime(%q) = %v, want an error containing %q", tt.runtime, err, w)
				}
			}
		})
	}
}

// Podman 4's Docker-compatible API takes a container's runtime and ignores
// it: asking for one is refused up front (CheckRuntime, before a run makes
// anything), and Create refuses it too.
func TestRuntimeOnPodman(t *testing.T) {
	p := testkit.Podman(t)
	importImage(t, p)
	ctx := context.Background()
	if err := sandbox.CheckRuntime(ctx, p, ""); err != nil {
		t.Errorf("CheckRuntime(\"\") = %v, want nil", err)
	}
	const want = "ignores a container's runtime"
	if err := sandbox.CheckRuntime(ctx, p, "runsc"); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckRuntime(runsc) = %v, want an error containing %q", err, want)
	}
	name := "airlock-runtime-" + strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-")
	p.Remove(ctx, name)
	id, err := p.Create(ctx, sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"true"}, User: "1000:1000", Runtime: "runsc"})
	if err == nil || !strings.Contains(err.Error(), "Podman") {
		p.Remove(ctx, id)
		t.Fatalf("Create with runtime runsc = %q, %v; want an error saying Podman cannot", id, err)
	}
	if _, err := p.Inspect(ctx, name); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("the refused container is still there: %v", err)
	}
}
