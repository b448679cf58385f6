package sandbox_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
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
