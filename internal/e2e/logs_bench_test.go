package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// BenchmarkLogs compares `airlock logs RUN` (the built binary, default
// verbosity) rendering a generated stream-json transcript with `jq -c .`
// reading and re-printing the same file, both to /dev/null, side by side
// at 25 and 100 MiB. It reports the median wall time of each over three
// pairs, their ratio (target: at most 1.0) and each one's peak resident
// memory, which must not grow with the transcript (constant memory).
//
// The run is a real one-turn run; its transcript is then replaced by the
// generated one, as an agent could write it.
func BenchmarkLogs(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	jq, err := exec.LookPath("jq")
	if err != nil {
		b.Fatal("jq is missing (scripts/setup.sh installs it)")
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		b.Fatal("GNU time is missing (scripts/setup.sh installs it)")
	}
	e, _, _ := quickBench(b)
	cmd := exec.Command(shared.bin, "run", "-d", "-m", "hi", "--name", "logs-bench")
	cmd.Dir, cmd.Env = e.repo, e.environ()
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("airlock run -d: %v", err)
	}
	id := strings.TrimSpace(string(out))
	wait := exec.Command(shared.bin, "wait", id)
	wait.Dir, wait.Env = e.repo, e.environ()
	if out, err := wait.CombinedOutput(); err != nil {
		b.Fatalf("airlock wait: %v\n%s", err, out)
	}
	defer func() {
		rm := exec.Command(shared.bin, "rm", "-y", "--force", id)
		rm.Dir, rm.Env = e.repo, e.environ()
		rm.Run()
	}()
	log := filepath.Join(e.state, "airlock", "runs", id, "log", "agent.jsonl")

	for _, mib := range []int64{25, 100} {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			f, err := os.Create(log)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := testkit.WriteTranscript(f, mib<<20); err != nil {
				b.Fatal(err)
			}
			f.Close()
			var jqT, alT []time.Duration
			var jqRSS, alRSS int64
			for b.Loop() {
				for range 3 {
					d, rss := timeChild(b, exec.Command(jq, "-c", ".", log))
					jqT, jqRSS = append(jqT, d), max(jqRSS, rss)
					logs := exec.Command(shared.bin, "logs", id)
					logs.Dir, logs.Env = e.repo, e.environ()
					d, rss = timeChild(b, logs)
					alT, alRSS = append(alT, d), max(alRSS, rss)
				}
			}
			j, a := median(jqT), median(alT)
			b.ReportMetric(j.Seconds(), "jq-s")
			b.ReportMetric(a.Seconds(), "airlock-s")
			b.ReportMetric(a.Seconds()/j.Seconds(), "ratio")
			b.ReportMetric(float64(jqRSS)/1024, "jq-rss-MiB")
			b.ReportMetric(float64(alRSS)/1024, "airlock-rss-MiB")
			b.Logf("%d MiB: airlock logs %v (spread %v-%v), jq -c . %v (spread %v-%v), ratio %.2f; peak RSS airlock %d MiB, jq %d MiB",
				mib, a, slices.Min(alT), slices.Max(alT), j, slices.Min(jqT), slices.Max(jqT), a.Seconds()/j.Seconds(), alRSS>>10, jqRSS>>10)
		})
	}
}

// timeChild runs cmd with its output to /dev/null and returns its wall
// time and peak resident memory in KiB. The memory comes from GNU time's
// own fork of the command: the rusage of a child Go starts carries the
// test binary's own peak (Go starts it with vfork, and the exec keeps the
// parent's high-water mark), which would hide the child's.
func timeChild(b *testing.B, cmd *exec.Cmd) (time.Duration, int64) {
	b.Helper()
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	rssFile := filepath.Join(b.TempDir(), "rss")
	timed := exec.Command("/usr/bin/time", append([]string{"-f", "%M", "-o", rssFile, cmd.Path}, cmd.Args[1:]...)...)
	timed.Dir, timed.Env = cmd.Dir, cmd.Env
	var stderr strings.Builder
	timed.Stdout, timed.Stderr = null, &stderr
	start := time.Now()
	if err := timed.Run(); err != nil {
		b.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
	}
	d := time.Since(start)
	out, err := os.ReadFile(rssFile)
	if err != nil {
		b.Fatal(err)
	}
	rss, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		b.Fatalf("GNU time's peak RSS %q: %v", out, err)
	}
	return d, rss
}
