package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestKubernetesClean: a sandbox's pods deleted behind airlock's back (its
// watcher gone too, as with a crashed host) leave its Secret and
// NetworkPolicies; `airlock clean` removes them (a run whose record is gone
// too included), and the pods of a run whose record is gone, while a live
// run's objects, the namespace's deny-all policy, a Secret that is not
// airlock's and Secrets that wear airlock's labels for a removed pod
// without airlock's note of whose they are, or with a note naming another
// registry's run, all stay.
func TestKubernetesClean(t *testing.T) {
	e := newEnvOn(t, onKubernetes)
	e.server(testkit.EndlessScript())
	kubectl := func(args ...string) (string, error) {
		out, err := exec.Command(kubectlPath, append([]string{"--kubeconfig", kubeconfigPath, "-n", kubeNamespace}, args...)...).CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := kubectl(args...)
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return out
	}
	// objects are the names ("secret/x") of airlock's objects of run id.
	objects := func(id string) []string {
		t.Helper()
		var out []string
		for _, n := range strings.Fields(must("get", "pods,secrets,networkpolicies", "-l", "airlock.dev/managed=true", "-o", "name")) {
			if strings.Contains(n, id) {
				out = append(out, strings.TrimPrefix(n, "networkpolicy.networking.k8s.io/"))
			}
		}
		slices.Sort(out)
		return out
	}

	for _, name := range []string{"live", "doomed", "forgotten", "lost"} {
		e.ok("run", "-d", "-y", "-m", "Keep going.", "--name", name)
	}
	live, doomed, forgotten, lost := e.run("live"), e.run("doomed"), e.run("forgotten"), e.run("lost")
	// What a run without a record leaves, the harness's clean-up cannot
	// find.
	t.Cleanup(func() {
		k, err := newKubeEngine()
		if err != nil {
			return
		}
		for _, id := range []string{forgotten.ID, lost.ID} {
			k.Remove(context.Background(), "airlock-"+id)
			k.Remove(context.Background(), "airlock-"+id+"-proxy")
		}
	})
	liveBefore := objects(live.ID)
	// Two pods, the proxy's Secret, a policy for each pod.
	if len(liveBefore) != 5 {
		t.Fatalf("a live sandbox's objects: %v, want 2 pods, a secret and 2 policies", liveBefore)
	}
	agentPod := "airlock-" + doomed.ID

	// Not airlock's: a plain Secret; one with airlock's labels naming the
	// doomed agent's pod but no note of whose it is; one whose note says
	// another registry's run.
	plain, bare, foreign := "clean-test-plain", "clean-test-bare", "clean-test-foreign"
	t.Cleanup(func() { kubectl("delete", "secret", plain, bare, foreign, "--ignore-not-found") })
	must("create", "secret", "generic", plain, "--from-literal=k=v")
	for _, s := range []string{bare, foreign} {
		must("create", "secret", "generic", s, "--from-literal=k=v")
		must("label", "secret", s, "airlock.dev/managed=true", "airlock.dev/pod="+agentPod, "airlock.dev/sandbox="+agentPod)
	}
	note, _ := json.Marshal(map[string]any{"name": agentPod, "labels": map[string]string{
		"airlock.run": doomed.ID, "airlock.role": "agent", "airlock.store": "/elsewhere/airlock"}})
	must("annotate", "secret", foreign, "airlock.dev/owner="+string(note))

	// The host crashes: the watcher (one supervises every detached run)
	// is gone; meanwhile someone deletes the doomed and the lost runs'
	// pods. The forgotten and the lost runs' records go.
	killWatchers(t)
	lostPod := "airlock-" + lost.ID
	must("delete", "pod", agentPod, agentPod+"-proxy", lostPod, lostPod+"-proxy", "--grace-period=0", "--force", "--wait=true")
	for _, id := range []string{forgotten.ID, lost.ID} {
		if err := os.RemoveAll(e.runDir(id)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{doomed.ID, lost.ID} {
		if got := objects(id); len(got) != 3 {
			t.Fatalf("after its pods were deleted, %s's objects: %v, want a secret and 2 policies", id, got)
		}
	}

	res := e.ok("clean")
	t.Logf("clean:\n%s", res.stderr)
	// The doomed run is found failed, and its proxy removed as that of
	// every finished run (with its Secret and policy); its agent's policy
	// is what clean finds without a pod.
	for _, want := range []string{
		"Recorded " + doomed.ID + " as failed",
		"Removed network policy airlock/" + agentPod + " (its pod is gone)",
		"Removed secret airlock/" + lostPod + "-proxy (its pod is gone)",
		"Removed network policy airlock/" + lostPod + "-proxy (its pod is gone)",
		"Removed network policy airlock/" + lostPod + " (its pod is gone)",
		"Removed container airlock-" + forgotten.ID + "\n",
		"Removed container airlock-" + forgotten.ID + "-proxy\n",
	} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("clean does not say %q:\n%s", want, res.stderr)
		}
	}
	if got := objects(doomed.ID); len(got) != 0 {
		t.Errorf("after clean, the doomed run's objects: %v", got)
	}
	for _, id := range []string{forgotten.ID, lost.ID} {
		if got := objects(id); len(got) != 0 {
			t.Errorf("after clean, the objects of %s, whose record is gone: %v", id, got)
		}
	}
	if got := objects(live.ID); !slices.Equal(got, liveBefore) {
		t.Errorf("clean touched the live run's objects: %v, before %v", got, liveBefore)
	}
	if r := e.run("live"); r.Status != store.StatusRunning {
		t.Errorf("the live run after clean: %s (%s)", r.Status, r.Error)
	}
	for _, keep := range []string{"secret/" + plain, "secret/" + bare, "secret/" + foreign, "networkpolicy/airlock-deny-all"} {
		if out, err := kubectl("get", keep, "-o", "name"); err != nil {
			t.Errorf("clean removed %s: %s", keep, out)
		}
	}
	if strings.Contains(res.stderr, live.ID) || strings.Contains(res.stderr, "clean-test-") {
		t.Errorf("clean names what it must leave:\n%s", res.stderr)
	}

	// Nothing is left to clean of it.
	again := e.ok("clean")
	if strings.Contains(again.stderr, "its pod is gone") || strings.Contains(again.stderr, "Removed container") {
		t.Errorf("a second clean removed more:\n%s", again.stderr)
	}
	e.ok("kill", "live")
}

// killWatchers ends the detached watchers of the test's airlock, as a
// crashed host would.
func killWatchers(t *testing.T) {
	t.Helper()
	pattern := shared.bin + " watcher "
	out, _ := exec.Command("pgrep", "-f", pattern).Output()
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for i := 0; i < 50; i++ {
		if exec.Command("pgrep", "-f", pattern).Run() != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the watchers did not end")
}
