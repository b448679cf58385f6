package image_test

import (
	"context"
	"io"
	"os/exec"
	"reflect"
	"sort"
	"testing"

	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// storeEngine is an engine that can import, list and remove images.
type storeEngine interface {
	image.Store
	sandbox.ImageImporter
}

// TestPrune prunes test images (their own prefix, never airlock's real
// ones, which other tests and users share) on Docker and on Incus: the kept
// reference's image stays, the others go, and on Docker an image a
// container was made from is kept and reported.
func TestPrune(t *testing.T) {
	engines := []struct {
		name string
		eng  func(t *testing.T) storeEngine
		// use makes a container from ref; it returns a clean-up.
		use      func(t *testing.T, ref string) func()
		keepUsed bool
	}{
		{"docker", func(t *testing.T) storeEngine { return testkit.Docker(t) }, func(t *testing.T, ref string) func() {
			out, err := exec.Command("docker", "create", "--name", "airlock-test-prune-user", ref, "true").CombinedOutput()
			if err != nil {
				t.Fatalf("docker create: %v\n%s", err, out)
			}
			return func() { exec.Command("docker", "rm", "-f", "airlock-test-prune-user").Run() }
		}, true},
		{"incus", func(t *testing.T) storeEngine { return testkit.Incus(t) }, func(t *testing.T, ref string) func() {
			out, err := exec.Command("incus", "init", "local:"+ref, "airlock-test-prune-user", "-s", sandbox.IncusDefaultPool).CombinedOutput()
			if err != nil {
				t.Fatalf("incus init: %v\n%s", err, out)
			}
			return func() { exec.Command("incus", "delete", "-f", "airlock-test-prune-user").Run() }
		}, false},
	}
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			eng := e.eng(t)
			ctx := context.Background()
			refs := []string{"airlock-test-prune-a:keep", "airlock-test-prune-b:1", "airlock-test-prune-b:2", "airlock-test-prune-c:used"}
			for _, ref := range refs {
				pr, pw := io.Pipe()
				go func() { pw.CloseWithError(sandboxtest.BusyboxRootfs(pw, sandboxtest.BusyboxPath)) }()
				if err := eng.ImportImage(ctx, pr, ref); err != nil {
					t.Fatalf("import %s: %v", ref, err)
				}
			}
			t.Cleanup(func() {
				for _, ref := range refs {
					eng.RemoveImage(context.Background(), ref)
				}
			})
			defer e.use(t, "airlock-test-prune-c:used")()

			imgs, err := eng.Images(ctx, []string{"airlock-test-prune-"})
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			for _, img := range imgs {
				if img.ID == "" || img.Size <= 0 || img.Created.IsZero() {
					t.Errorf("image %+v lacks an ID, size or creation time", img)
				}
				listed = append(listed, img.Refs...)
			}
			sort.Strings(listed)
			if want := append([]string(nil), refs...); !reflect.DeepEqual(listed, want) {
				t.Errorf("listed %q, want %q", listed, want)
			}

			res, err := image.Prune(ctx, eng, []string{"airlock-test-prune-"}, []string{"airlock-test-prune-a:keep"})
			if err != nil {
				t.Fatal(err)
			}
			wantRemoved := []string{"airlock-test-prune-b:1", "airlock-test-prune-b:2", "airlock-test-prune-c:used"}
			var wantInUse []string
			if e.keepUsed {
				wantRemoved, wantInUse = wantRemoved[:2], []string{"airlock-test-prune-c:used"}
			}
			sort.Strings(res.Removed)
			if !reflect.DeepEqual(res.Removed, wantRemoved) || !reflect.DeepEqual(res.InUse, wantInUse) {
				t.Errorf("Prune removed %q and kept in use %q; want %q and %q", res.Removed, res.InUse, wantRemoved, wantInUse)
			}
			imgs, _ = eng.Images(ctx, []string{"airlock-test-prune-"})
			listed = listed[:0]
			for _, img := range imgs {
				listed = append(listed, img.Refs...)
			}
			sort.Strings(listed)
			if want := append([]string{"airlock-test-prune-a:keep"}, wantInUse...); !reflect.DeepEqual(listed, want) {
				t.Errorf("after Prune: %q, want %q", listed, want)
			}
		})
	}
}
