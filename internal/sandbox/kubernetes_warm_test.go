package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestKubernetesWarm: with a warm pool, a sandbox like a running one gets a
// pair of pods made in advance. It runs its own command, environment,
// working directory and files (a directory and a file mount), reaches the
// host through its proxy, and carries nothing of the run whose shape made
// the pair; it is found, inspected and removed by its container's name,
// and two sandboxes never get one pair.
func TestKubernetesWarm(t *testing.T) {
	k := testkit.KubernetesWith(t, func(o *sandbox.KubernetesOptions) { o.Warm = 1 })
	k.UseBinary(staticAirlock(t))
	loadKubeImage(t, k)
	cs := kubeClient(t)
	ctx := context.Background()
	t.Cleanup(func() { removeWarmPool(t, cs) })

	host, ln := hostServer(t, k)

	base := fmt.Sprintf("airlock-k8s-warm-%d", time.Now().UnixNano()%1e8)
	// sandbox makes the spec of one sandbox of the test's shape: /work
	// and /note.txt its own.
	sandboxFor := func(name, script string) (sandbox.SandboxSpec, string) {
		spec, _ := kubeSandboxSpec(t, name, name+"-proxy", host, "http://"+ln.Addr().String(), script)
		work := t.TempDir()
		os.Chmod(work, 0o777)
		note := filepath.Join(t.TempDir(), "note.txt")
		if err := os.WriteFile(note, []byte("note-for-"+name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		spec.Agent.Mounts = []sandbox.Mount{{Source: work, Target: "/work"}, {Source: note, Target: "/note.txt", ReadOnly: true}}
		spec.Agent.Env = []string{"FOO=bar-" + name}
		spec.Agent.WorkDir = "/work"
		t.Cleanup(func() {
			k.Remove(context.Background(), spec.Agent.Name)
			k.RemoveProxy(context.Background(), spec.Proxy.Name)
		})
		return spec, work
	}
	run := func(spec sandbox.SandboxSpec) (sandbox.Sandbox, string) {
		t.Helper()
		start := time.Now()
		sb, err := k.CreateSandbox(ctx, spec)
		if err != nil {
			t.Fatalf("CreateSandbox %s: %v", spec.Agent.Name, err)
		}
		t.Logf("CreateSandbox %s: %s", spec.Agent.Name, time.Since(start).Round(time.Millisecond))
		code, err := k.Wait(ctx, spec.Agent.Name)
		var out bytes.Buffer
		k.Logs(ctx, spec.Agent.Name, &out)
		if err != nil || code != 0 {
			t.Fatalf("agent %s: exit %d, %v; output:\n%s", spec.Agent.Name, code, err, out.String())
		}
		return sb, out.String()
	}

	// The first run of its shape is cold, and fills the pool.
	first, _ := sandboxFor(base+"-a", `echo secret-of-a > /work/a-was-here; echo a > /tmp/a-was-here`)
	sbA, _ := run(first)
	if strings.HasPrefix(sbA.Agent, "airlock-warm-") {
		t.Fatalf("the first sandbox got a warm pod (%s) from an empty pool", sbA.Agent)
	}
	fill := func() {
		t.Helper()
		start := time.Now()
		if err := k.Prewarm(ctx, first.Agent.Name); err != nil {
			t.Fatalf("Prewarm: %v", err)
		}
		waitWarm(t, cs, 1)
		t.Logf("a warm pair was ready %s after Prewarm began", time.Since(start).Round(time.Millisecond))
	}
	fill()
	// A free pair holds no secret, no key and no command of any run.
	pods, err := cs.CoreV1().Pods(testkit.KubernetesNamespace).List(ctx, metav1.ListOptions{LabelSelector: "airlock.dev/warm=free"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, v := range p.Spec.Volumes {
			if v.Secret != nil || v.Projected != nil {
				t.Errorf("the free warm pod %s has the volume %s from a secret", p.Name, v.Name)
			}
		}
		for _, c := range append(p.Spec.InitContainers, p.Spec.Containers...) {
			if len(c.Env) > 0 || len(c.EnvFrom) > 0 {
				t.Errorf("the free warm pod %s's container %s has an environment: %v", p.Name, c.Name, c.Env)
			}
		}
	}
	if l, err := k.List(ctx, nil); err != nil {
		t.Fatal(err)
	} else {
		for _, st := range l {
			if strings.HasPrefix(st.ID, "airlock-warm-") {
				t.Errorf("List shows the free warm pod %s as a container", st.ID)
			}
		}
	}

	script := strings.Join([]string{
		`pwd; echo "FOO=$FOO"; cat /note.txt`,
		`http_proxy=http://` + sandbox.AgentProxyAddr + ` busybox wget -q -O- http://` + ln.Addr().String() + `/x`,
		`busybox wget -q -O- http://` + sandbox.AgentAPIAddr + `/healthz && echo healthy`,
		`env | grep -c s3cr3t-proxy-token; env | grep -c AIRLOCK_CHANNEL_KEY`,
		`ls -A /work /tmp; echo "launch: $(ls -A /airlock/launch)"`,
		`cat /airlock/egress/secrets.json 2>&1 | grep -c s3cr3t`,
		`echo from-b > /work/out`,
	}, "\n")
	second, workB := sandboxFor(base+"-b", script)
	start := time.Now()
	sbB, out := run(second)
	t.Logf("the warm sandbox ran in %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	if !strings.HasPrefix(sbB.Agent, "airlock-warm-") || !strings.HasPrefix(sbB.Proxy, "airlock-warm-") {
		t.Fatalf("the second sandbox got pods %s and %s, not the warm pair", sbB.Agent, sbB.Proxy)
	}
	for _, want := range []string{"/work\n", "FOO=bar-" + second.Agent.Name + "\n", "note-for-" + second.Agent.Name + "\n",
		"hello from the host\n", "healthy\n", "0\n0\n", "launch: \n"} {
		if !strings.Contains(out, want) {
			t.Errorf("the warm agent's output lacks %q:\n%s", want, out)
		}
	}
	for _, leak := range []string{"a-was-here", "secret-of-a", "note-for-" + first.Agent.Name} {
		if strings.Contains(out, leak) {
			t.Errorf("the warm agent saw %q, the first run's:\n%s", leak, out)
		}
	}
	if strings.HasSuffix(strings.TrimSpace(out), "\n1") {
		t.Errorf("the agent read the proxy's secrets:\n%s", out)
	}
	if b, _ := os.ReadFile(filepath.Join(workB, "out")); string(b) != "from-b\n" {
		t.Errorf("the warm agent's file on the host = %q", b)
	}
	st, err := k.Inspect(ctx, second.Agent.Name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != second.Agent.Name || st.Status != sandbox.StatusExited || st.StartedAt.Before(start.Add(-time.Second)) {
		t.Errorf("Inspect of the warm agent = %+v; want its name, exited, started after %s", st, start)
	}
	if l, err := k.List(ctx, second.Agent.Labels); err != nil || len(l) == 0 {
		t.Errorf("List by the warm agent's labels = %v, %v", l, err)
	}
	if err := k.RemoveProxy(ctx, second.Proxy.Name); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(second.Proxy.ConfigDir, "audit.jsonl")); err != nil || !bytes.Contains(b, []byte(ln.Addr().String())) {
		t.Errorf("the warm proxy's audit log on the host = %q, %v", b, err)
	}
	if err := k.Remove(ctx, second.Agent.Name); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sbB.Agent, sbB.Proxy} {
		p, err := cs.CoreV1().Pods(testkit.KubernetesNamespace).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.DeletionTimestamp == nil {
			t.Errorf("the warm pod %s outlived its removal", name)
		}
	}
	sel := metav1.ListOptions{LabelSelector: "airlock.dev/pod in (" + sbB.Agent + "," + sbB.Proxy + ")"}
	if p, err := cs.NetworkingV1().NetworkPolicies(testkit.KubernetesNamespace).List(ctx, sel); err != nil || len(p.Items) != 0 {
		t.Errorf("the warm pair's policies outlived it: %d, %v", len(p.Items), err)
	}

	// Two sandboxes, one free pair: one gets it, the other is made cold;
	// both run.
	fill()
	var wg sync.WaitGroup
	got := make([]sandbox.Sandbox, 2)
	errs := make([]error, 2)
	specs := make([]sandbox.SandboxSpec, 2)
	for i := range 2 {
		specs[i], _ = sandboxFor(fmt.Sprintf("%s-c%d", base, i), `cat /note.txt`)
	}
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = k.CreateSandbox(ctx, specs[i])
			if errs[i] == nil {
				var code int
				if code, errs[i] = k.Wait(ctx, specs[i].Agent.Name); errs[i] == nil && code != 0 {
					errs[i] = fmt.Errorf("exit %d", code)
				}
			}
		}()
	}
	wg.Wait()
	warm := 0
	for i := range 2 {
		if errs[i] != nil {
			t.Errorf("sandbox %d of two at once: %v", i, errs[i])
		}
		if strings.HasPrefix(got[i].Agent, "airlock-warm-") {
			warm++
		}
	}
	if warm != 1 {
		t.Errorf("two sandboxes at once, one free pair: %d got a warm pod (%v)", warm, got)
	}
	if _, err := k.Inspect(ctx, "airlock-k8s-warm-none"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect of no container: %v", err)
	}
}

// waitWarm waits until n free warm pairs are ready.
func waitWarm(t *testing.T, cs kubernetes.Interface, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pods, err := cs.CoreV1().Pods(testkit.KubernetesNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "airlock.dev/warm=free"})
		if err != nil {
			t.Fatal(err)
		}
		ready := 0
		for _, p := range pods.Items {
			running := 0
			for _, c := range p.Status.ContainerStatuses {
				if c.State.Running != nil {
					running++
				}
			}
			if p.DeletionTimestamp == nil && running == 2 {
				ready++
			}
		}
		if ready >= 2*n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d warm pods ready after 2 minutes, want %d", ready, 2*n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// removeWarmPool deletes the pool's free pods and their policies.
func removeWarmPool(t *testing.T, cs kubernetes.Interface) {
	ctx := context.Background()
	zero := int64(0)
	sel := metav1.ListOptions{LabelSelector: "airlock.dev/warm=free"}
	pods, err := cs.CoreV1().Pods(testkit.KubernetesNamespace).List(ctx, sel)
	if err != nil {
		t.Log(err)
		return
	}
	for _, p := range pods.Items {
		cs.CoreV1().Pods(testkit.KubernetesNamespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		cs.NetworkingV1().NetworkPolicies(testkit.KubernetesNamespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
	}
}
