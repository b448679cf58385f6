package e2e

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
)

// BenchmarkWholeRun times a whole minimal run on Docker, one model turn,
// attached: `airlock run` from its start to its printed summary, against the
// same agent (the same image, Claude Code, prompt and model server) in a
// bare `docker run --rm` on Docker's default network, as a user would run
// it without airlock. Each iteration runs one pair, bare then airlock, so
// that load on the machine falls on both alike; it reports the medians and
// the ratio of the medians. `make bench` prints them (target <= 1.2x).
func BenchmarkWholeRun(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	e, url, image := quickBench(b)

	// The bare agent works in the same repository, as a user would mount
	// it: Claude Code reads the repository's git state as it starts, which
	// an empty working directory would spare it. A clone owned by the
	// agent's user, made once, outside the timing (airlock's own copy is
	// timed, as a bare run needs none).
	bareRepo := b.TempDir() + "/repo"
	if out, err := exec.Command("git", "clone", "-q", e.repo, bareRepo).CombinedOutput(); err != nil {
		b.Fatalf("git clone: %v\n%s", err, out)
	}
	if out, err := exec.Command("chown", "-R", "1000:1000", bareRepo).CombinedOutput(); err != nil {
		b.Fatalf("chown: %v\n%s", err, out)
	}
	bareArgs := []string{"run", "--rm", "--user", "1000:1000", "-v", bareRepo + ":/workspace", "-w", "/workspace",
		"-e", "ANTHROPIC_API_KEY=sk-ant-bench", "-e", "ANTHROPIC_BASE_URL=" + url}
	for _, kv := range (agent.Claude{}).Env(agent.Options{}) {
		if strings.HasPrefix(kv, "HOME=") {
			kv = "HOME=/tmp"
		}
		bareArgs = append(bareArgs, "-e", kv)
	}
	bareArgs = append(bareArgs, image, "claude", "-p", "--dangerously-skip-permissions", "hi")

	var bare, whole []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		out, err := exec.Command("docker", bareArgs...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ok") {
			b.Fatalf("docker run: %v\n%s", err, out)
		}
		t1 := time.Now()
		cmd := exec.Command(shared.bin, "run", "-y", "-m", "hi", "--name", "bench-whole")
		cmd.Dir, cmd.Env = e.repo, e.environ()
		out, err = cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("airlock run: %v\n%s", err, out)
		}
		t2 := time.Now()
		bare, whole = append(bare, t1.Sub(t0)), append(whole, t2.Sub(t1))
	}
	b.StopTimer()
	mb, mw := median(bare), median(whole)
	b.ReportMetric(float64(mb.Milliseconds()), "bare-ms")
	b.ReportMetric(float64(mw.Milliseconds()), "airlock-ms")
	b.ReportMetric(float64(mw)/float64(mb), "ratio")
	b.ReportMetric(0, "ns/op")
	b.Logf("bare %v\nairlock %v", bare, whole)
	removeRuns(e)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}
