package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestRmForceLeavesNothing: `rm --force` right after `run -d`, while the
// detached run's watcher may be collecting it (its harvest container
// coming or going), leaves nothing the run made, on every engine: not when
// rm returns, and not once the watcher has ended. On Incus a harvest
// instance used to stay behind, stopped.
func TestRmForceLeavesNothing(t *testing.T) {
	onEngines(t, hostEngines, func(t *testing.T, e *env) {
		e.server(testkit.Script{Name: "quick", FinalText: "ok"})
		eng, err := e.sandboxEngine()
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		left := func(id, when string) {
			t.Helper()
			states, err := eng.List(context.Background(), map[string]string{"airlock.run": id})
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range states {
				t.Errorf("%s: %s of run %s is still there (%s, role %s)", when, s.Name, id, s.Status, s.Labels["airlock.role"])
			}
		}
		// The agent ends about a second after the start; rm comes before,
		// as it ends, and while its work is being collected.
		for _, delay := range []time.Duration{0, 700 * time.Millisecond, 1400 * time.Millisecond, 2100 * time.Millisecond, 2800 * time.Millisecond} {
			id := strings.TrimSpace(e.ok("run", "-d", "-y", "-m", "hi", "--name", "rmrace").stdout)
			time.Sleep(delay)
			if res := e.airlock("rm", "-y", "--force", id); res.code != 0 {
				t.Errorf("rm --force %s after the start: exit %d\n%s", delay, res.code, res.stderr)
			}
			left(id, "after rm --force "+delay.String()+" after the start")
			watcher := shared.bin + " watcher " + id
			for end := time.Now().Add(time.Minute); time.Now().Before(end) && exec.Command("pgrep", "-f", watcher).Run() == nil; {
				time.Sleep(100 * time.Millisecond)
			}
			left(id, "once the watcher ended, rm --force "+delay.String()+" after the start")
		}
	})
}
