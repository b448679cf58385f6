package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// BenchmarkKubernetesRun times airlock on the test cluster against the
// cluster's own bare pods of the same image, in interleaved rounds (one
// round per b.N; medians reported, every round logged):
//
//   - start-up: `airlock run -d --engine kubernetes` until the agent's
//     process runs in its pod (run -d returns then), against a bare pod
//     running `true`, created through the API server, until it has
//     Succeeded;
//   - a whole one-turn run: `airlock run` from start to its summary,
//     against a bare pod running the same agent (image, Claude Code,
//     prompt, model server) until it has Succeeded;
//   - both again with a warm pool (`[engine.kubernetes] warm = 1`): each
//     timed run finds a ready pair, made by the previous run's prewarm
//     (waited for, untimed, before every figure, so that no figure shares
//     the machine with the pool's filling).
//
// The bare agent reaches the scripted model server on the host directly
// over the pod network (the node's address, as airlock's proxy pod does);
// it has no policy, no proxy pod, no files streamed in or out (it works in
// /tmp, not in a copy of the repository): that is what the ratio prices. `make bench` prints the figures and ratios.
func BenchmarkKubernetesRun(b *testing.B) {
	needKubernetes(b) // fails on CI when the cluster does not answer
	ctx := context.Background()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	pods := cs.CoreV1().Pods(kubeNamespace)
	const benchLabel = "airlock-bench"
	defer pods.DeleteCollection(context.WithoutCancel(ctx), *metav1.NewDeleteOptions(0),
		metav1.ListOptions{LabelSelector: benchLabel + "=bare"})

	srv := testkit.NewServer(testkit.Script{Name: "quick", FinalText: "ok"})
	url, err := srv.Start(shared.hostAddr + ":0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	e := &env{state: b.TempDir(), repo: b.TempDir() + "/repo", engine: onKubernetes}
	initRepoB(b, e)
	e.extra = []string{"ANTHROPIC_API_KEY=sk-ant-bench", "ANTHROPIC_BASE_URL=" + url}
	image := kubeShared.ref
	// The same runs with a warm pool: the same repository and store, a
	// configuration of their own.
	warm := *e
	warm.configDir = b.TempDir()
	warmConfig := strings.Replace(testConfig, "namespace = \"airlock\"\n", "namespace = \"airlock\"\nwarm = 1\n", 1)
	if err := os.MkdirAll(filepath.Join(warm.configDir, "airlock"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(warm.configDir, "airlock", "config.toml"), []byte(warmConfig), 0o644); err != nil {
		b.Fatal(err)
	}
	// poolReady waits until the pool's pairs are ready and no prewarm
	// runs: then nothing but the timed run uses the machine.
	poolReady := func() {
		b.Helper()
		deadline := time.Now().Add(3 * time.Minute)
		for {
			list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "airlock.dev/warm=free"})
			if err != nil {
				b.Fatal(err)
			}
			ready := 0
			for _, p := range list.Items {
				n := 0
				for _, c := range p.Status.ContainerStatuses {
					if c.State.Running != nil {
						n++
					}
				}
				if n == 2 && p.DeletionTimestamp == nil {
					ready++
				}
			}
			busy := exec.Command("pgrep", "-f", shared.bin+" prewarm").Run() == nil
			if ready >= 2 && !busy {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("the warm pool had %d ready pods after 3 minutes (prewarm running: %t)", ready, busy)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The agent's environment as airlock gives it, but for its home (the
	// image's user's is airlock's volume) and its model API: the server
	// itself, not the relay's port, which a bare pod does not have.
	var agentEnv []corev1.EnvVar
	for _, kv := range (agent.Claude{}).Env(agent.Options{}) {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME":
			v = "/tmp"
		case "ANTHROPIC_BASE_URL":
			v = url
		}
		agentEnv = append(agentEnv, corev1.EnvVar{Name: k, Value: v})
	}
	agentEnv = append(agentEnv, corev1.EnvVar{Name: "ANTHROPIC_API_KEY", Value: "sk-ant-bench"})

	// bare is the cluster's own run of image: a pod running cmd as the
	// image's agent user, created, watched until it has Succeeded, and
	// deleted (not waited for, as `docker run --rm` does not wait for its
	// layer's removal either); it returns the pod's log.
	bare := func(cmd []string, env []corev1.EnvVar) string {
		b.Helper()
		uid := int64(1000)
		no := false
		p, err := pods.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name:   fmt.Sprintf("airlock-bench-bare-%s", randHex(4)),
				Labels: map[string]string{benchLabel: "bare"},
			},
			Spec: corev1.PodSpec{
				RestartPolicy:                corev1.RestartPolicyNever,
				AutomountServiceAccountToken: &no,
				Containers: []corev1.Container{{
					Name: "agent", Image: image, ImagePullPolicy: corev1.PullNever,
					Command: cmd, Env: env, WorkingDir: "/tmp",
					SecurityContext: &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid},
				}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatalf("create a bare pod: %v", err)
		}
		defer pods.Delete(context.WithoutCancel(ctx), p.Name, *metav1.NewDeleteOptions(0))
		phase := waitPodEnded(b, pods, p, 3*time.Minute)
		log, _ := pods.GetLogs(p.Name, &corev1.PodLogOptions{Container: "agent"}).DoRaw(ctx)
		if phase != corev1.PodSucceeded {
			b.Fatalf("the bare pod %s ended %q:\n%s", p.Name, phase, tail(string(log), 30))
		}
		return string(log)
	}
	airlockIn := func(e *env, args ...string) string {
		b.Helper()
		cmd := exec.Command(shared.bin, args...)
		cmd.Dir, cmd.Env = e.repo, e.environ()
		out, err := cmd.Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			b.Fatalf("airlock %s: %v\n%s%s", strings.Join(args, " "), err, out, tail(string(stderr), 30))
		}
		return string(out)
	}
	airlock := func(args ...string) string { b.Helper(); return airlockIn(e, args...) }

	b.Cleanup(func() {
		removeRuns(e)
		// clean empties the pool.
		airlockIn(&warm, "clean")
	})
	// The pool's first pair comes from a run of the same shape.
	airlockIn(&warm, "wait", strings.TrimSpace(airlockIn(&warm, "run", "-d", "-m", "hi", "--name", "bench-fill")))

	var startBare, startAirlock, wholeBare, wholeAirlock, startWarm, wholeWarm []time.Duration
	timed := func(into *[]time.Duration, f func()) {
		t0 := time.Now()
		f()
		*into = append(*into, time.Since(t0))
	}
	b.ResetTimer()
	for b.Loop() {
		timed(&startBare, func() { bare([]string{"true"}, nil) })
		var id string
		timed(&startAirlock, func() { id = strings.TrimSpace(airlock("run", "-d", "-m", "hi", "--name", "bench-start")) })
		// The detached run's turn ends before the next figure, so that
		// figure does not share the machine with it.
		b.StopTimer()
		airlock("wait", id)
		b.StartTimer()
		timed(&wholeBare, func() {
			if log := bare([]string{"claude", "-p", "--dangerously-skip-permissions", "hi"}, agentEnv); !strings.Contains(log, "ok") {
				b.Fatalf("the bare agent said:\n%s", tail(log, 30))
			}
		})
		timed(&wholeAirlock, func() { airlock("run", "-y", "-m", "hi", "--name", "bench-whole") })
		b.StopTimer()
		poolReady()
		b.StartTimer()
		timed(&startWarm, func() {
			id = strings.TrimSpace(airlockIn(&warm, "run", "-d", "-m", "hi", "--name", "bench-warm-start"))
		})
		b.StopTimer()
		airlockIn(&warm, "wait", id)
		poolReady()
		b.StartTimer()
		timed(&wholeWarm, func() { airlockIn(&warm, "run", "-y", "-m", "hi", "--name", "bench-warm-whole") })
		b.StopTimer()
		poolReady()
		b.StartTimer()
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 }
	sb, sa, wb, wa := median(startBare), median(startAirlock), median(wholeBare), median(wholeAirlock)
	b.ReportMetric(ms(sb), "start-bare-ms")
	b.ReportMetric(ms(sa), "start-airlock-ms")
	b.ReportMetric(float64(sa)/float64(sb), "start-ratio")
	b.ReportMetric(ms(wb), "bare-ms")
	b.ReportMetric(ms(wa), "airlock-ms")
	b.ReportMetric(float64(wa)/float64(wb), "ratio")
	sw, ww := median(startWarm), median(wholeWarm)
	b.ReportMetric(ms(sw), "start-warm-ms")
	b.ReportMetric(float64(sw)/float64(sb), "start-warm-ratio")
	b.ReportMetric(ms(ww), "warm-ms")
	b.ReportMetric(float64(ww)/float64(wb), "warm-ratio")
	b.ReportMetric(0, "ns/op")
	b.Logf("start-up: bare pod `true` %v, airlock run -d %v, warm %v\nwhole run: bare pod agent %v, airlock run %v, warm %v",
		startBare, startAirlock, startWarm, wholeBare, wholeAirlock, wholeWarm)
}

// waitPodEnded watches pod p until it has Succeeded or Failed, or timeout
// has passed, and returns its last phase. A watch the API server ends is
// taken up again where it stopped.
func waitPodEnded(b *testing.B, pods typedcorev1.PodInterface, p *corev1.Pod, timeout time.Duration) corev1.PodPhase {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	phase, rv := p.Status.Phase, p.ResourceVersion
	for ctx.Err() == nil {
		w, err := pods.Watch(ctx, metav1.ListOptions{
			FieldSelector:   fields.OneTermEqualSelector("metadata.name", p.Name).String(),
			ResourceVersion: rv,
		})
		if err != nil {
			b.Fatalf("watch the bare pod %s: %v", p.Name, err)
		}
		for ev := range w.ResultChan() {
			q, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			phase, rv = q.Status.Phase, q.ResourceVersion
			if phase == corev1.PodSucceeded || phase == corev1.PodFailed {
				w.Stop()
				return phase
			}
		}
		w.Stop()
	}
	return phase
}
