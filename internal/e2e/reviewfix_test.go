package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
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

// A batch's closing table shows sub-cent costs as they are (not $0.00) and
// the total across its runs.
func TestReviewBatchTableCosts(t *testing.T) {
	e := newEnv(t)
	e.server(testkit.DemoScript())
	e.write(".airlock/prompts/good.md", "Write hello.py.\n")
	e.git("add", ".")
	e.git("commit", "-qm", "prompts")

	res := e.ok("run", "-y", "good", "good", "-j", "2")
	runs := e.runs()
	if len(runs) != 2 {
		t.Fatalf("%d runs, want 2", len(runs))
	}
	total := 0.0
	for _, r := range runs {
		total += r.CostUSD
		if r.CostUSD > 0 && r.CostUSD < 0.01 && !strings.Contains(res.stderr, fmt.Sprintf("$%s", strconv.FormatFloat(roundTo4(r.CostUSD), 'f', -1, 64))) {
			t.Errorf("batch table does not show run %s's cost %v with 4 significant digits:\n%s", r.ID, r.CostUSD, res.stderr)
		}
	}
	if !strings.Contains(res.stderr, "Total cost of 2 run(s): ") {
		t.Errorf("batch table has no total line:\n%s", res.stderr)
	}
	if total > 0 && total < 0.01 && strings.Contains(res.stderr, "$0.00") {
		t.Errorf("batch table shows $0.00 for sub-cent costs (total %v):\n%s", total, res.stderr)
	}
	if !strings.Contains(res.stderr, "in "+e.repo) {
		t.Errorf("batch does not name the repository its branches are in:\n%s", res.stderr)
	}
}

func roundTo4(x float64) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(x, 'g', 4, 64), 64)
	return v
}
