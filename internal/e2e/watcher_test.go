package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// detachedAtOnce is how many `run -d` TestDetachedRunsShareOneWatcher
// starts together.
const detachedAtOnce = 4

// Several `run -d` started at once are supervised by one `airlock watcher`
// process, not one each: while they all run, exactly one watcher of them
// is left. Each still ends recorded, its work brought back and its own
// notification sent, with no other airlock command run; then the watcher
// is gone.
func TestDetachedRunsShareOneWatcher(t *testing.T) {
	onEngines(t, hostEngines, func(t *testing.T, e *env) {
		e.server(testkit.BashScript("share", "sleep 20; echo done > shared.txt; git add shared.txt; git commit -qm shared"))
		hook := startWebhook(t)
		e.write(".airlock/config.toml", fmt.Sprintf("[notify]\nwebhook = %q\n", hook.url))
		e.git("add", ".")
		e.git("commit", "-qm", "config")

		ids := make([]string, detachedAtOnce)
		errs := atOnce(detachedAtOnce, func(i int) error {
			res := e.airlock("run", "-d", "-y", "-m", "Share.", "--name", fmt.Sprintf("share-%d", i))
			if res.code != 0 {
				return fmt.Errorf("run -d: exit %d\n%s", res.code, res.stderr)
			}
			ids[i] = strings.TrimSpace(res.stdout)
			return nil
		})
		if failed := failures(errs); failed != "" {
			t.Fatalf("runs not started:\n%s", failed)
		}

		// Watchers that lost a race to listen hand their run over and end
		// within moments; the one left supervises all.
		var pids []int
		for end := time.Now().Add(15 * time.Second); ; {
			pids = watchersOf(ids)
			if len(pids) == 1 || time.Now().After(end) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(pids) != 1 {
			t.Fatalf("%d watchers of %d detached runs (processes %v), want 1", len(pids), len(ids), pids)
		}
		for _, id := range ids {
			r := readRun(t, e, id)
			if r.Status.Finished() {
				t.Fatalf("run %s ended (%s) before the check: the runs did not overlap", id, r.Status)
			}
		}
		shared := " process " + strconv.Itoa(pids[0])
		joined := 0
		for _, id := range ids {
			log, _ := os.ReadFile(filepath.Join(e.state, "airlock", "runs", id, "watch.log"))
			if strings.Contains(string(log), "Supervised by the shared watcher,"+shared) {
				joined++
			}
		}
		if joined == 0 {
			t.Errorf("no run's watch.log says it was taken on by watcher%s", shared)
		}

		// Nobody runs another command: the one watcher records each end,
		// brings each run's work back and notifies for each.
		deadline := time.Now().Add(4 * time.Minute)
		for time.Now().Before(deadline) && strings.Count(hook.all(), `"event":"finished"`) < len(ids) {
			time.Sleep(250 * time.Millisecond)
		}
		if strings.Count(hook.all(), `"event":"finished"`) < len(ids) {
			showWatchers(t, e, ids)
		}
		for _, id := range ids {
			if n := strings.Count(hook.all(), `"run":"`+id+`"`); n != 1 {
				t.Errorf("%d notifications of run %s, want 1", n, id)
			}
			// Read at least once, so that a failure shows the run as it is.
			r := readRun(t, e, id)
			for !r.Harvested && time.Now().Before(deadline) {
				time.Sleep(250 * time.Millisecond)
				r = readRun(t, e, id)
			}
			if r.Status != store.StatusSucceeded || !r.Harvested || r.Head == "" {
				t.Errorf("run %s: %s, harvested %v, head %q; want succeeded, its commit brought back", id, r.Status, r.Harvested, r.Head)
				continue
			}
			if got := e.git("show", r.Head+":shared.txt"); got != "done" {
				t.Errorf("run %s's branch: shared.txt = %q", id, got)
			}
		}
		for end := time.Now().Add(time.Minute); len(watchersOf(ids)) > 0 && time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
		}
		if left := watchersOf(ids); len(left) > 0 {
			t.Errorf("watchers %v outlived their runs", left)
		}
		if _, err := os.Stat(filepath.Join(e.state, "airlock", "watch")); err != nil {
			t.Errorf("no watcher directory in the store: %v", err)
		}
		if socks, _ := filepath.Glob(filepath.Join(e.state, "airlock", "watch", "*.sock")); len(socks) > 0 {
			t.Errorf("sockets left: %v", socks)
		}
	})
}

// showWatchers logs where the watchers of ids are: a Go program's
// goroutines go to its standard error on SIGQUIT, and a watcher's is the
// watch.log of the run that started it, so every run's watch.log is shown
// after the dump.
func showWatchers(t *testing.T, e *env, ids []string) {
	t.Helper()
	for _, pid := range watchersOf(ids) {
		syscall.Kill(pid, syscall.SIGQUIT)
	}
	time.Sleep(2 * time.Second)
	for _, id := range ids {
		log, _ := os.ReadFile(filepath.Join(e.state, "airlock", "runs", id, "watch.log"))
		t.Logf("run %s's watch.log:\n%s", id, log)
	}
}

// watchersOf lists the `airlock watcher` processes of any of ids.
func watchersOf(ids []string) []int {
	var pids []int
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		argv := strings.Split(string(cmdline), "\x00")
		if len(argv) > 2 && argv[0] == shared.bin && argv[1] == "watcher" && slices.Contains(ids, argv[2]) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// readRun reads a run's record from the store itself: unlike `ls`, it
// records nothing, so what it shows is the watcher's doing.
func readRun(t *testing.T, e *env, id string) store.Run {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.state, "airlock", "runs", id, "run.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r store.Run
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// A detached run's watcher uses the engine the run was started on, even
// when that was chosen by --engine against the environment's
// AIRLOCK_ENGINE: a watcher asking another engine finds no container and
// records the run as failed.
func TestDetachedRunWatcherKeepsEngineFlag(t *testing.T) {
	needPodman(t)
	e := newEnv(t)
	e.server(testkit.BashScript("flag", "sleep 3; echo ok"))
	e.extra = append(e.extra, "AIRLOCK_ENGINE=podman")
	id := strings.TrimSpace(e.ok("--engine", "docker", "run", "-d", "-y", "-m", "Hi.", "--name", "flag").stdout)
	var r store.Run
	for end := time.Now().Add(3 * time.Minute); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if r = readRun(t, e, id); r.Harvested {
			break
		}
	}
	if r.Status != store.StatusSucceeded || !r.Harvested {
		log, _ := os.ReadFile(filepath.Join(e.state, "airlock", "runs", id, "watch.log"))
		t.Fatalf("run %s: %s (%s), harvested %v; want succeeded\nwatch.log:\n%s", id, r.Status, r.Error, r.Harvested, log)
	}
}

// A shared watcher that dies loses none of its runs: the next command
// that looks (`airlock wait`) records each end, brings each run's work
// back and notifies for each, once.
func TestSharedWatcherKilled(t *testing.T) {
	onEngines(t, []engineKind{onDocker}, func(t *testing.T, e *env) {
		e.server(testkit.BashScript("orphan", "sleep 20; echo done > orphan.txt; git add orphan.txt; git commit -qm orphan"))
		hook := startWebhook(t)
		e.write(".airlock/config.toml", fmt.Sprintf("[notify]\nwebhook = %q\n", hook.url))
		e.git("add", ".")
		e.git("commit", "-qm", "config")
		var ids []string
		for i := range 3 {
			ids = append(ids, strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "Orphan.", "--name", fmt.Sprintf("orphan-%d", i)).stdout))
		}
		pids := watchersOf(ids)
		if len(pids) != 1 {
			t.Fatalf("watchers %v of 3 runs started one after another, want 1", pids)
		}
		p, err := os.FindProcess(pids[0])
		if err != nil {
			t.Fatal(err)
		}
		p.Kill()
		for end := time.Now().Add(10 * time.Second); len(watchersOf(ids)) > 0 && time.Now().Before(end); {
			time.Sleep(50 * time.Millisecond)
		}
		for _, id := range ids {
			if r := readRun(t, e, id); r.Status.Finished() {
				t.Fatalf("run %s ended (%s) before its watcher was killed", id, r.Status)
			}
		}
		e.ok(append([]string{"wait"}, ids...)...)
		for _, id := range ids {
			r := readRun(t, e, id)
			if r.Status != store.StatusSucceeded || !r.Harvested || r.Head == "" {
				t.Errorf("run %s: %s (%s), harvested %v; want succeeded and brought back", id, r.Status, r.Error, r.Harvested)
			}
			if n := strings.Count(hook.all(), `"run":"`+id+`"`); n != 1 {
				t.Errorf("%d notifications of run %s, want 1", n, id)
			}
		}
		// The next detached run finds the dead watcher's socket, starts a
		// watcher of its own, and is supervised to its end.
		id := strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "Orphan.", "--name", "after").stdout)
		var r store.Run
		for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
			if r = readRun(t, e, id); r.Harvested {
				break
			}
		}
		if r.Status != store.StatusSucceeded || !r.Harvested {
			t.Errorf("the run after the killed watcher: %s, harvested %v", r.Status, r.Harvested)
		}
	})
}
