package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// airlock version reports the commit the binary was built from, as go build
// records it in a git checkout, and says when the tree was dirty.
func TestVersionNamesTheCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds airlock twice")
	}
	// The machine's Go caches, asked for before newWorld moves HOME: with
	// empty ones each build downloaded and compiled every dependency (13
	// minutes of CI).
	caches, err := exec.Command("go", "env", "GOCACHE", "GOMODCACHE").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	dirs := strings.Fields(string(caches))
	if len(dirs) != 2 {
		t.Fatalf("go env GOCACHE GOMODCACHE = %q", caches)
	}
	env := []string{"GOCACHE=" + dirs[0], "GOMODCACHE=" + dirs[1]}
	w := newWorld(t) // git identity
	src := w.checkout()
	commit := w.git(src, "rev-parse", "HEAD")

	out := buildAndRun(t, src, env, "version")
	if !strings.Contains(out, "commit "+commit+"\n") || strings.Contains(out, "dirty") {
		t.Fatalf("airlock version in a clean checkout at %s:\n%s", commit, out)
	}
	writeTestFile(t, filepath.Join(src, "untracked.txt"), "local change\n")
	if out := buildAndRun(t, src, env, "version"); !strings.Contains(out, "commit "+commit+" (dirty)") {
		t.Fatalf("airlock version in a dirty checkout:\n%s", out)
	}
}

// checkout copies airlock's source (tracked and untracked files, not
// ignored ones) into a fresh repository with one commit: a plain checkout,
// as go build expects to find (it records no VCS state in a git worktree).
func (w *world) checkout() string {
	w.t.Helper()
	top := w.git(".", "rev-parse", "--show-toplevel")
	dst := filepath.Join(w.t.TempDir(), "airlock")
	for _, rel := range strings.Split(w.git(top, "ls-files", "-co", "--exclude-standard"), "\n") {
		data, err := os.ReadFile(filepath.Join(top, rel))
		if os.IsNotExist(err) {
			continue // deleted, not yet committed
		}
		if err != nil {
			w.t.Fatal(err)
		}
		writeTestFile(w.t, filepath.Join(dst, rel), string(data))
	}
	w.git(dst, "init", "-q", "-b", "main")
	w.git(dst, "add", ".")
	w.git(dst, "commit", "-q", "-m", "airlock")
	return dst
}

func buildAndRun(t *testing.T, src string, env []string, args ...string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "airlock")
	build := exec.Command("go", "build", "-buildvcs=true", "-trimpath", "-o", bin, "./cmd/airlock")
	build.Dir = src
	build.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("airlock %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
