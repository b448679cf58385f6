package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// doctor does not fail for a missing debootstrap when the (bootstrap) image
// is built and runs work: only rebuilding it needs debootstrap, so that is a
// note, and doctor exits 0.
func TestReviewDoctorNotesWhatIsNotNeededNow(t *testing.T) {
	e := newEnv(t)
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir() // PATH with git and nothing else: no debootstrap
	if err := os.Symlink(gitPath, filepath.Join(bin, "git")); err != nil {
		t.Fatal(err)
	}
	e.extra = []string{"ANTHROPIC_API_KEY=sk-ant-e2e-doctor", "PATH=" + bin}

	res := e.airlock("doctor")
	if res.code != 0 {
		t.Fatalf("doctor: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var deboot string
	for _, l := range strings.Split(res.stdout, "\n") {
		if strings.Contains(l, "debootstrap") && !strings.Contains(l, "fix:") {
			deboot = l
		}
	}
	if !strings.HasPrefix(deboot, "NOTE") || !strings.Contains(res.stdout, "ok    image") {
		t.Fatalf("doctor without debootstrap, image built: want a NOTE for debootstrap and the image ok:\n%s", res.stdout)
	}
}
