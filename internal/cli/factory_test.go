package cli

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// [engine.incus] reaches the Incus engine, and nesting is refused on any
// other engine, before anything is made.
func TestChooseEngineIncusSettings(t *testing.T) {
	for _, tc := range []struct {
		name, toml, flag string
		wantErr          string
		want             sandbox.IncusOptions
	}{
		{"incus settings", "[engine]\nkind = \"incus\"\n[engine.incus]\npool = \"fast\"\nnetwork = \"br9\"\nnesting = true\n", "",
			"", sandbox.IncusOptions{Pool: "fast", Network: "br9", Nesting: true}},
		{"nesting on docker", "[engine]\nkind = \"docker\"\n[engine.incus]\nnesting = true\n", "",
			"running containers inside the sandbox is offered on Incus only", sandbox.IncusOptions{}},
		{"nesting, flag picks podman", "[engine.incus]\nnesting = true\n", "podman",
			"engine.incus.nesting is true", sandbox.IncusOptions{}},
		{"nesting, flag picks incus", "[engine]\nkind = \"docker\"\n[engine.incus]\nnesting = true\n", "incus",
			"", sandbox.IncusOptions{Nesting: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.MkdirAll(filepath.Join(dir, "airlock"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "airlock", "config.toml"), []byte(tc.toml), 0o644); err != nil {
				t.Fatal(err)
			}
			env := map[string]string{"XDG_CONFIG_HOME": dir, "HOME": dir}
			f := &Factory{IO: &IOStreams{In: strings.NewReader(""), Out: io.Discard, ErrOut: io.Discard}, Getenv: func(k string) string { return env[k] }, Getwd: func() (string, error) { return dir, nil }, EngineKind: tc.flag}
			ep, err := f.chooseEngine()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("chooseEngine = %+v, %v; want an error saying %q", ep, err, tc.wantErr)
				}
				return
			}
			if err != nil || ep.Kind != sandbox.KindIncus || ep.Incus != tc.want {
				t.Fatalf("chooseEngine = %+v, %v; want incus with %+v", ep, err, tc.want)
			}
		})
	}
}
