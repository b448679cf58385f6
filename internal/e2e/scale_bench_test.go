package e2e

import (
	"bufio"
	"bytes"
	"context"
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
	"github.com/airlock-dev/airlock/internal/testkit"
)

// scaleRuns is how many runs BenchmarkScale starts at once.
const scaleRuns = 20

// BenchmarkScale starts 20 one-turn runs at once, as a script would: 20
// `airlock run -d` started together, then one `airlock wait` on all of them
// (which harvests each run's work); every run must succeed. It times that
// against 20 bare `docker run --rm` of the same agent (same image, Claude
// Code, prompt and model server) started together. While the runs are in
// flight it samples the resident memory (VmRSS; the host's PID namespace
// sees the containers' processes) of airlock's own processes: each run's
// proxy (`airlock proxy`), in-sandbox relay (`airlock relay`) and detached
// watcher (`airlock watch`), and reports their sum per run, its peak and
// its mean over the samples (target: at most 30 MiB per run). VmRSS
// counts the pages of airlock's binary, mapped read-only by all 60
// processes from the one host file, once in each; the proportional set
// size (PSS, which splits shared pages among their users) is reported
// beside it as what a run really adds. The one `airlock wait` the user
// runs is reported on its own.
func BenchmarkScale(b *testing.B) {
	if shared.skip != "" {
		b.Skip(shared.skip)
	}
	e := &env{state: b.TempDir(), repo: b.TempDir() + "/repo"}
	initRepoB(b, e)
	srv := testkit.NewServer(testkit.Script{Name: "quick", FinalText: "ok"})
	url, err := srv.Start(shared.gateway + ":0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	e.extra = []string{"ANTHROPIC_API_KEY=sk-ant-bench", "ANTHROPIC_BASE_URL=" + url}

	build := exec.Command(shared.bin, "image", "build")
	build.Env = e.environ()
	imageOut, err := build.Output()
	if err != nil {
		b.Fatal(err)
	}
	image := strings.TrimSpace(string(imageOut))

	var bare, whole time.Duration
	var mem scaleMemory
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
	b.Run("airlock", func(b *testing.B) {
		for b.Loop() {
			start := time.Now()
			m, err := scaleAirlock(b, e)
			whole += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			mem.add(m)
		}
		b.ReportMetric(float64(whole.Milliseconds())/float64(b.N), "wall-ms")
		// Sub-benchmarks report their own figures only: the ratio and the
		// memory go here, bare having run first.
		if bare > 0 {
			b.ReportMetric(float64(whole)/float64(bare), "airlock/bare")
		}
		b.ReportMetric(mem.peak/(1<<20), "peak-MiB/run")
		b.ReportMetric(mem.mean()/(1<<20), "mean-MiB/run")
		b.ReportMetric(mem.pssPeak/(1<<20), "pss-peak-MiB/run")
		b.ReportMetric(mem.waitPeak/(1<<20), "wait-MiB")
		for _, k := range []string{"proxy", "relay", "watch"} {
			b.Logf("per run at the peak, %s: VmRSS %.1f MiB (anonymous %.1f, file %.1f), PSS %.1f MiB",
				k, mem.peakBy[k]/(1<<20), mem.peakBy[k+"-anon"]/(1<<20), mem.peakBy[k+"-file"]/(1<<20), mem.peakBy[k+"-pss"]/(1<<20))
		}
		b.Logf("%d samples", mem.samples)
	})
}

// scaleAirlock starts scaleRuns detached runs at once, waits for them all
// and fails unless each succeeded; meanwhile it samples airlock's memory.
func scaleAirlock(b *testing.B, e *env) (scaleMemory, error) {
	ids := make([]string, scaleRuns)
	stop := make(chan struct{})
	memc := make(chan scaleMemory, 1)
	go func() { memc <- sampleMemory(stop, scaleRuns, e) }()
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
}

// sampleMemory reads, every 200 ms until stop, the resident memory of
// the env's airlock processes by kind (proxy, relay, watch, wait), and
// divides the per-run kinds by runs.
func sampleMemory(stop <-chan struct{}, runs int, e *env) scaleMemory {
	m := scaleMemory{peakBy: map[string]float64{}}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return m
		case <-tick.C:
		}
		by := airlockRSS(e)
		perRun := (by["proxy"] + by["relay"] + by["watch"]) / float64(runs)
		m.waitPeak = max(m.waitPeak, by["wait"])
		if by["proxy"]+by["relay"]+by["watch"] == 0 {
			continue
		}
		m.samples++
		m.sum += perRun
		m.pssPeak = max(m.pssPeak, (by["proxy-pss"]+by["relay-pss"]+by["watch-pss"])/float64(runs))
		if perRun > m.peak {
			m.peak = perRun
			for k, v := range by {
				m.peakBy[k] = v / float64(runs)
			}
		}
	}
}

// airlockRSS sums VmRSS of the env's processes whose command is airlock's
// binary by their subcommand: on the host those working in the env's
// repository (watchers and wait), in containers (/airlock/bin/airlock)
// those with a mount from the env's state directory. Other work on the
// machine, other runs included, is left out.
func airlockRSS(e *env) map[string]float64 {
	by := map[string]float64{}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(string(cmdline), "\x00")
		if len(argv) < 2 || filepath.Base(argv[0]) != "airlock" {
			continue
		}
		kind := argv[1]
		switch kind {
		case "proxy", "relay", "watch", "wait":
		default:
			continue
		}
		dir := filepath.Join("/proc", p.Name())
		if argv[0] == sandbox.BinaryPath {
			mounts, _ := os.ReadFile(filepath.Join(dir, "mountinfo"))
			if !bytes.Contains(mounts, []byte(" "+e.state+"/")) {
				continue
			}
		} else if cwd, _ := os.Readlink(filepath.Join(dir, "cwd")); cwd != e.repo {
			continue
		}
		st := procFields(filepath.Join("/proc", p.Name(), "status"), "VmRSS:", "RssAnon:", "RssFile:")
		by[kind] += st[0]
		by[kind+"-anon"] += st[1]
		by[kind+"-file"] += st[2]
		by[kind+"-pss"] += procFields(filepath.Join("/proc", p.Name(), "smaps_rollup"), "Pss:")[0]
	}
	return by
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
