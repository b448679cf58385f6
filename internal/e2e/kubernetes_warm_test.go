package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestKubernetesWarmPool: with `warm = 1` the first run is made cold and
// fills the pool; the second gets the pair made for it, and works as any
// run (its record, its log, its branch); clean empties the pool.
func TestKubernetesWarmPool(t *testing.T) {
	e := newEnvOn(t, onKubernetes)
	path := userConfig(t, e, "")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "namespace = \"airlock\"\n", "namespace = \"airlock\"\nwarm = 1\n", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.server(testkit.ChatScript())
	kubectl := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(kubectlPath, append([]string{"--kubeconfig", kubeconfigPath, "-n", kubeNamespace}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// free lists the pool's free pods, and how many of them run both
	// their containers.
	free := func() (names []string, ready int) {
		out := kubectl("get", "pods", "-l", "airlock.dev/warm=free", "-o",
			`jsonpath={range .items[*]}{.metadata.name} {range .status.containerStatuses[*]}{.state.running.startedAt},{end}{"\n"}{end}`)
		for _, line := range strings.Split(out, "\n") {
			name, states, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			names = append(names, name)
			if strings.Count(states, "T") == 2 {
				ready++
			}
		}
		return names, ready
	}
	// settled waits until the pool has its pair ready and no prewarm of
	// this test's still runs.
	settled := func() {
		t.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			_, ready := free()
			busy := exec.Command("pgrep", "-f", shared.bin+" prewarm").Run() == nil
			if ready >= 2 && !busy {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the warm pool has %d ready pods after 3 minutes (prewarm running: %t)", ready, busy)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	t.Cleanup(func() { e.airlock("clean") })

	e.ok("run", "-y", "-m", "hi", "--name", "first")
	settled()
	e.ok("run", "-y", "-m", "hi", "--name", "second")
	var second string
	for _, r := range e.runs() {
		if r.Name == "second" {
			second = r.ID
			if got := kubectl("get", "pods", "-l", "airlock.dev/as="+r.Container, "-o", "name"); !strings.HasPrefix(got, "pod/airlock-warm-") {
				t.Errorf("the second run's agent is %q, not a warm pod", got)
			}
			if r.Status != "succeeded" {
				t.Errorf("the second run %s: %+v", r.ID, r)
			}
		}
	}
	if second == "" {
		t.Fatalf("no run named second: %+v", e.runs())
	}
	if out := e.ok("logs", second).stdout; !strings.Contains(out, testkit.ChatAnswer) {
		t.Errorf("the warm run's log lacks the agent's answer:\n%s", out)
	}
	settled()
	res := e.ok("clean")
	if !strings.Contains(res.stderr, "Removed warm pod airlock-warm-") {
		t.Errorf("clean did not say it emptied the pool:\n%s", res.stderr)
	}
	if names, _ := free(); len(names) != 0 {
		t.Errorf("free warm pods after clean: %v", names)
	}
}
