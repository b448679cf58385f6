package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
)

// scaleRuns is how many runs BenchmarkScale starts at once.
const scaleRuns = 20

// BenchmarkScale starts 20 one-turn runs at once, two ways a user would:
// "airlock", as a script would, 20 `airlock run -d` started together, then
// one `airlock wait` on all of them (which harvests each run's work); and
// "batch", one attached `airlock run T1 ... T20`. Every run must succeed.
// Each is timed against 20 bare `docker run --rm` of the same agent (same
// image, Claude Code, prompt and model server) started together. While the
// runs are in flight it samples the resident memory (VmRSS; the host's PID
// namespace sees the containers' processes) of airlock's own processes:
// each run's proxy (`airlock proxy`) and in-sandbox relay (`airlock
// relay`), and what supervises it (the detached runs' `airlock watcher`,
// one for all of them, or the batch's one `airlock run`); it reports their
// sum divided by 20, its peak and its mean over the samples (target: at
// most 30 MiB per run), and the most one run's own processes (proxy and
// relay) took. VmRSS counts the pages of airlock's binary, mapped read-only
// by every process from the one host file, once in each; the proportional set
// size (PSS, which splits shared pages among their users) is reported
// beside it as what a run really adds. The one `airlock wait` the user
// runs is reported on its own.
func BenchmarkScale(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	e, url, image := quickBench(b)

	var bare time.Duration
	b.Run("bare", func(b *testing.B) {
		args := []string{"run", "--rm", "--user", "1000:1000", "-e", "ANTHROPIC_API_KEY=sk-ant-bench", "-e", "ANTHROPIC_BASE_URL=" + url}
		for _, kv := range (agent.Claude{}).Env(agent.Options{}) {
			if strings.HasPrefix(kv, "HOME=") {
				kv = "HOME=/tmp"
			}
			args = append(args, "-e", kv)
		}
		args = append(args, image, "claude", "-p", "--dangerously-skip-permissions", "hi")
		for b.Loop() {
			start := time.Now()
			errs := atOnce(scaleRuns, func(i int) error {
				out, err := exec.Command("docker", args...).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "ok") {
					return fmt.Errorf("docker run: %v\n%s", err, out)
				}
				return nil
			})
			bare += time.Since(start)
			if failed := failures(errs); failed != "" {
				b.Fatalf("bare runs failed:\n%s", failed)
			}
		}
		b.ReportMetric(float64(bare.Milliseconds())/float64(b.N), "wall-ms")
	})
	b.Run("airlock", scaleWay(e, &bare, scaleDetached))
	b.Run("batch", scaleWay(e, &bare, scaleBatch))
}

// scaleWay times one way of starting scaleRuns runs at once and waiting
// for them all (start), and reports its figures: sub-benchmarks print
// their own only, so the ratio to bare (run first) and the memory go here.
func scaleWay(e *env, bare *time.Duration, start func(b *testing.B, e *env) (scaleMemory, error)) func(b *testing.B) {
	return func(b *testing.B) {
		var whole time.Duration
		var mem scaleMemory
		for b.Loop() {
			t := time.Now()
			m, err := start(b, e)
			whole += time.Since(t)
			if err != nil {
				b.Fatal(err)
			}
			mem.add(m)
		}
		b.ReportMetric(float64(whole.Milliseconds())/float64(b.N), "wall-ms")
		if *bare > 0 {
			b.ReportMetric(float64(whole)/float64(*bare), "airlock/bare")
		}
		b.ReportMetric(mem.peak/(1<<20), "peak-MiB/run")
		b.ReportMetric(mem.mean()/(1<<20), "mean-MiB/run")
		b.ReportMetric(mem.pssPeak/(1<<20), "pss-peak-MiB/run")
		b.ReportMetric(mem.onePeak/(1<<20), "one-run-peak-MiB")
		b.ReportMetric(mem.waitPeak/(1<<20), "wait-MiB")
		for _, k := range []string{"proxy", "relay", "supervisor"} {
			b.Logf("per run at the peak, %s: VmRSS %.1f MiB (anonymous %.1f, file %.1f), PSS %.1f MiB",
				k, mem.peakBy[k]/(1<<20), mem.peakBy[k+"-anon"]/(1<<20), mem.peakBy[k+"-file"]/(1<<20), mem.peakBy[k+"-pss"]/(1<<20))
		}
		b.Logf("%d samples", mem.samples)
	}
}

// scaleBatch runs scaleRuns tasks as one attached batch, `airlock run -y
// T1 ... T20` (all at once: -j defaults to all), which follows every run,
// brings its work back and exits 0 only if each succeeded; that one
// process supervises them all.
func scaleBatch(b *testing.B, e *env) (scaleMemory, error) {
	dir := b.TempDir()
	args := []string{"run", "-y"}
	for i := range scaleRuns {
		p := filepath.Join(dir, fmt.Sprintf("scale-batch-%02d.md", i))
		if err := os.WriteFile(p, []byte("hi\n"), 0o644); err != nil {
			return scaleMemory{}, err
		}
		args = append(args, p)
	}
	stop := make(chan struct{})
	memc := make(chan scaleMemory, 1)
	go func() { memc <- sampleMemory(stop, scaleRuns, e, "run") }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, shared.bin, args...)
	cmd.Dir, cmd.Env = e.repo, e.environ()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	close(stop)
	mem := <-memc
	defer removeRuns(e)
	if err != nil {
		return mem, fmt.Errorf("airlock run (batch of %d): %v\n%s", scaleRuns, err, tail(stderr.String(), 40))
	}
	return mem, nil
}

// removeRuns removes every run of the env's project.
func removeRuns(e *env) {
	ls := exec.Command(shared.bin, "ls", "-a", "--json")
	ls.Dir, ls.Env = e.repo, e.environ()
	out, _ := ls.Output()
	var runs []store.Run
	json.Unmarshal(out, &runs)
	for _, r := range runs {
		rm := exec.Command(shared.bin, "rm", "-y", "--force", r.ID)
		rm.Dir, rm.Env = e.repo, e.environ()
		rm.Run()
	}
}

// scaleDetached starts scaleRuns detached runs at once, waits for them all
// and fails unless each succeeded; meanwhile it samples airlock's memory.
func scaleDetached(b *testing.B, e *env) (scaleMemory, error) {
	ids := make([]string, scaleRuns)
	stop := make(chan struct{})
	memc := make(chan scaleMemory, 1)
	go func() { memc <- sampleMemory(stop, scaleRuns, e, "watcher") }()
	defer func() {
		for _, id := range ids {
			if id == "" {
				continue
			}
			rm := exec.Command(shared.bin, "rm", "-y", "--force", id)
			rm.Dir, rm.Env = e.repo, e.environ()
			rm.Run()
		}
	}()
	errs := atOnce(scaleRuns, func(i int) error {
		cmd := exec.Command(shared.bin, "run", "-d", "-y", "-m", "hi", "--name", fmt.Sprintf("scale-%d", i))
		cmd.Dir, cmd.Env = e.repo, e.environ()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("airlock run -d: %v\n%s", err, stderr.String())
		}
		ids[i] = strings.TrimSpace(string(out))
		return nil
	})
	if failed := failures(errs); failed != "" {
		close(stop)
		<-memc
		return scaleMemory{}, fmt.Errorf("runs not started:\n%s", failed)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	wait := exec.CommandContext(ctx, shared.bin, append([]string{"wait"}, ids...)...)
	wait.Dir, wait.Env = e.repo, e.environ()
	out, err := wait.CombinedOutput()
	close(stop)
	mem := <-memc
	if err != nil {
		ls := exec.Command(shared.bin, "ls", "-a")
		ls.Dir, ls.Env = e.repo, e.environ()
		lsOut, _ := ls.CombinedOutput()
		return mem, fmt.Errorf("airlock wait: %v\n%s\nairlock ls -a:\n%s", err, out, lsOut)
	}
	return mem, nil
}

// atOnce calls f(0..n-1) each in its own goroutine, released together,
// and returns their errors.
func atOnce(n int, f func(i int) error) []error {
	errs := make([]error, n)
	var ready, done sync.WaitGroup
	gate := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-gate
			errs[i] = f(i)
		}()
	}
	ready.Wait()
	close(gate)
	done.Wait()
	return errs
}

// failures lists the errors, one numbered entry each; "" if none.
func failures(errs []error) string {
	var sb strings.Builder
	for i, err := range errs {
		if err != nil {
			fmt.Fprintf(&sb, "#%d: %v\n", i, err)
		}
	}
	return sb.String()
}

// scaleMemory is what sampling airlock's processes found, in bytes.
type scaleMemory struct {
	peak     float64            // the most, summed over every run's processes, per run
	sum      float64            // of the per-run figures, over samples
	onePeak  float64            // the most of one run's own processes, summed
	samples  int                // taken while at least one run's processes were up
	peakBy   map[string]float64 // per run, by kind, at the peak
	waitPeak float64            // the user's `airlock wait`
	pssPeak  float64            // as peak, in proportional set size: shared pages split among their users
}

func (m scaleMemory) mean() float64 {
	if m.samples == 0 {
		return 0
	}
	return m.sum / float64(m.samples)
}

// add keeps the larger peak and pools the samples.
func (m *scaleMemory) add(o scaleMemory) {
	if o.peak > m.peak {
		m.peak, m.peakBy = o.peak, o.peakBy
	}
	m.sum += o.sum
	m.samples += o.samples
	m.waitPeak = max(m.waitPeak, o.waitPeak)
	m.pssPeak = max(m.pssPeak, o.pssPeak)
	m.onePeak = max(m.onePeak, o.onePeak)
}

// sampleMemory reads, every 200 ms until stop, the resident memory of
// the env's airlock processes by kind (proxy, relay, supervisor: the
// subcommand supervisor names, wait) and by run. The per-run figures are
// what all of them take for runs runs at once, divided by runs; one
// run's own processes (not a batch's one supervisor) are kept apart.
func sampleMemory(stop <-chan struct{}, runs int, e *env, supervisor string) scaleMemory {
	m := scaleMemory{peakBy: map[string]float64{}}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	n := float64(runs)
	for {
		select {
		case <-stop:
			return m
		case <-tick.C:
		}
		by, perRun, _ := airlockRSS(e, supervisor)
		m.waitPeak = max(m.waitPeak, by["wait"])
		total := by["proxy"] + by["relay"] + by["supervisor"]
		if total == 0 {
			continue
		}
		m.samples++
		m.sum += total / n
		m.pssPeak = max(m.pssPeak, (by["proxy-pss"]+by["relay-pss"]+by["supervisor-pss"])/n)
		for _, rss := range perRun {
			m.onePeak = max(m.onePeak, rss)
		}
		if total/n > m.peak {
			m.peak = total / n
			for k, v := range by {
				m.peakBy[k] = v / n
			}
		}
	}
}

// airlockRSS sums VmRSS of the env's processes whose command is airlock's
// binary by their subcommand, and by run: on the host those working in
// the env's repository (watchers and wait), in containers
// (/airlock/bin/airlock) those with a mount from a run's directory in the
// env's state directory. Other work on the machine, other runs included,
// is left out. shared is what serves many runs: a batch's one process,
// the detached runs' shared watcher.
func airlockRSS(e *env, supervisor string) (by, perRun map[string]float64, shared float64) {
	by, perRun = map[string]float64{}, map[string]float64{}
	runsDir := []byte(" " + filepath.Join(e.state, "airlock", "runs") + "/")
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		dir := filepath.Join("/proc", p.Name())
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(string(cmdline), "\x00")
		if len(argv) < 2 || filepath.Base(argv[0]) != "airlock" {
			continue
		}
		kind := argv[1]
		switch kind {
		case supervisor:
			kind = "supervisor"
		case "proxy", "relay", "wait":
		default:
			continue
		}
		id := ""
		if argv[0] == sandbox.BinaryPath {
			mounts, _ := os.ReadFile(filepath.Join(dir, "mountinfo"))
			i := bytes.Index(mounts, runsDir)
			if i < 0 {
				continue
			}
			id, _, _ = strings.Cut(string(mounts[i+len(runsDir):]), "/")
		} else if cwd, _ := os.Readlink(filepath.Join(dir, "cwd")); cwd != e.repo {
			continue
		}
		st := procFields(filepath.Join(dir, "status"), "VmRSS:", "RssAnon:", "RssFile:")
		by[kind] += st[0]
		by[kind+"-anon"] += st[1]
		by[kind+"-file"] += st[2]
		by[kind+"-pss"] += procFields(filepath.Join(dir, "smaps_rollup"), "Pss:")[0]
		switch {
		case id != "":
			perRun[id] += st[0]
		case kind == "supervisor":
			shared += st[0]
		}
	}
	return by, perRun, shared
}

// procFields reads the given kB fields of a /proc file (status,
// smaps_rollup), in bytes, 0 for each one missing.
func procFields(path string, names ...string) []float64 {
	out := make([]float64, len(names))
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for i, name := range names {
			if rest, ok := strings.CutPrefix(sc.Text(), name); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
				out[i] = kb * 1024
			}
		}
	}
	return out
}
