package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestKubernetesClaim: a mount to keep (a persistent run's home) is on a
// volume claim of its own. What the first pod left there is what the pod
// made again by RestartSandbox finds, though the host's copy was changed
// in between: it came from the claim, not from the host. What the claim
// holds comes home through the keeper as any mount's copy does: a link
// the sandbox planted there that points out of it is not brought home,
// and stays a link on the claim. A pod deleted behind the engine's back
// leaves its claim as a remnant, which RemoveRemnant deletes.
func TestKubernetesClaim(t *testing.T) {
	k := kubeEngine(t)
	cs := kubeClient(t)
	ctx := context.Background()
	ns := testkit.KubernetesNamespace
	host := nodeHost(t, k)
	id := fmt.Sprintf("airlock-k8s-claim-%d", time.Now().UnixNano()%1e8)
	script := `if [ -f /home/u/first ]; then
	echo "second saw $(cat /home/u/first)" > /log/seen
	[ -L /home/u/escape ] && echo "link kept: $(readlink /home/u/escape)" >> /log/seen
	echo two > /home/u/second
else
	echo one > /home/u/first
	ln -s /etc/hostname /home/u/escape
	echo first > /log/seen
fi`
	spec, writeConfig := kubeSandboxSpec(t, id, id+"-proxy", host, "http://"+net.JoinHostPort(host, "9"), script)
	home, logDir := t.TempDir(), t.TempDir()
	for _, d := range []string{home, logDir} {
		os.Chmod(d, 0o777)
	}
	spec.Agent.Mounts = []sandbox.Mount{
		{Source: home, Target: "/home/u", Persist: true},
		{Source: logDir, Target: "/log"},
	}
	spec.Agent.Labels = map[string]string{"airlock.run": id, "airlock.role": "agent"}
	t.Cleanup(func() {
		k.Remove(context.Background(), spec.Agent.Name)
		k.RemoveProxy(context.Background(), spec.Proxy.Name)
	})
	sb, err := k.CreateSandbox(ctx, spec)
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	leg := func(n int) {
		t.Helper()
		code, err := k.Wait(ctx, sb.Agent)
		if err != nil || code != 0 {
			var out bytes.Buffer
			k.Logs(ctx, sb.Agent, &out)
			t.Fatalf("leg %d: exit %d, %v:\n%s", n, code, err, out.String())
		}
	}
	leg(1)
	claims, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{LabelSelector: "airlock.dev/pod=" + id})
	if err != nil || len(claims.Items) != 1 {
		t.Fatalf("the agent's claims: %v, %v; want one", claims, err)
	}
	if c := claims.Items[0]; c.Annotations["airlock.dev/owner"] == "" || c.Labels["airlock.dev/managed"] != "true" {
		t.Errorf("the claim is not marked as the engine's for %s: %+v", id, c.ObjectMeta)
	}
	if b, err := os.ReadFile(filepath.Join(home, "first")); err != nil || string(b) != "one\n" {
		t.Fatalf("the first leg's file on the host = %q, %v: it did not come home", b, err)
	}
	if _, err := os.Lstat(filepath.Join(home, "escape")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a link out of the copy came home: %v", err)
	}

	// The host's copy changes; the next pod must not get it.
	if err := os.WriteFile(filepath.Join(home, "first"), []byte("from the host\n"), 0o666); err != nil {
		t.Fatal(err)
	}
	if err := k.RemoveProxy(ctx, spec.Proxy.Name); err != nil {
		t.Fatal(err)
	}
	writeConfig()
	if _, err := k.RestartSandbox(ctx, spec); err != nil {
		t.Fatalf("RestartSandbox: %v", err)
	}
	leg(2)
	seen, _ := os.ReadFile(filepath.Join(logDir, "seen"))
	if want := "second saw one\nlink kept: /etc/hostname\n"; string(seen) != want {
		t.Errorf("the second leg saw %q, want %q (the claim's copy, not the host's)", seen, want)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "second")); string(b) != "two\n" {
		t.Errorf("the second leg's file on the host = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(home, "first")); string(b) != "one\n" {
		t.Errorf("after the second leg the host's first = %q, want the claim's", b)
	}

	// Its pods deleted behind the engine's back, the claim is a remnant.
	zero := int64(0)
	for _, p := range []string{id, id + "-proxy"} {
		cs.CoreV1().Pods(ns).Delete(ctx, p, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}
	var mine sandbox.Remnant
	for deadline := time.Now().Add(time.Minute); ; {
		all, err := k.Remnants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(all, func(r sandbox.Remnant) bool { return r.ID == id })
		if i >= 0 {
			mine = all[i]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no remnant of %s: %+v", id, all)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !slices.Contains(mine.Objects, "volume claim "+ns+"/"+id) || mine.Labels["airlock.run"] != id {
		t.Fatalf("the remnant of %s: %+v, want its volume claim and its labels", id, mine)
	}
	if err := k.RemoveRemnant(ctx, mine); err != nil {
		t.Fatal(err)
	}
	claimGone(t, cs, id)
}

// claimGone waits until the claims of pod are deleted (a claim in use
// stays until its pod is gone).
func claimGone(t *testing.T, cs kubernetes.Interface, pod string) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		l, err := cs.CoreV1().PersistentVolumeClaims(testkit.KubernetesNamespace).List(context.Background(), metav1.ListOptions{LabelSelector: "airlock.dev/pod=" + pod})
		if err != nil {
			t.Fatal(err)
		}
		live := slices.DeleteFunc(l.Items, func(c corev1.PersistentVolumeClaim) bool { return c.DeletionTimestamp != nil })
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the claim of %s was not deleted", pod)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKubernetesClaimUnbound: a storage class the cluster does not have
// is one clear error, within the engine's wait for the claim, and the
// failed sandbox leaves nothing behind, its claim included.
func TestKubernetesClaimUnbound(t *testing.T) {
	kubeEngine(t) // the cluster and its image
	cs := kubeClient(t)
	ctx := context.Background()
	cfg := os.Getenv("KUBECONFIG")
	if cfg == "" {
		cfg = testkit.KubernetesConfig
	}
	k, err := sandbox.NewKubernetes(sandbox.KubernetesOptions{Kubeconfig: cfg, Namespace: testkit.KubernetesNamespace,
		ClusterCIDRs: testkit.KubernetesClusterCIDRs(), StorageClass: "airlock-no-such-class"})
	if err != nil {
		t.Fatal(err)
	}
	k.UseBinary(staticAirlock(t))
	sandbox.SetClaimWait(k, 5*time.Second)
	host := nodeHost(t, k)
	id := fmt.Sprintf("airlock-k8s-unbound-%d", time.Now().UnixNano()%1e8)
	spec, _ := kubeSandboxSpec(t, id, id+"-proxy", host, "http://"+net.JoinHostPort(host, "9"), "true")
	home := t.TempDir()
	spec.Agent.Mounts = []sandbox.Mount{{Source: home, Target: "/home/u", Persist: true}}
	t.Cleanup(func() {
		k.Remove(context.Background(), spec.Agent.Name)
		k.RemoveProxy(context.Background(), spec.Proxy.Name)
	})
	start := time.Now()
	_, err = k.CreateSandbox(ctx, spec)
	if err == nil || !strings.Contains(err.Error(), "was not bound within 5s") || !strings.Contains(err.Error(), `"airlock-no-such-class"`) ||
		!strings.Contains(err.Error(), "storage_class") {
		t.Fatalf("CreateSandbox with a class the cluster lacks: %v", err)
	}
	t.Logf("failed after %s: %v", time.Since(start), err)
	if time.Since(start) > time.Minute {
		t.Errorf("the error took %s", time.Since(start))
	}
	for _, name := range []string{spec.Agent.Name, spec.Proxy.Name} {
		if _, err := k.Inspect(ctx, name); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("a failed CreateSandbox left %s: %v", name, err)
		}
	}
	sel := metav1.ListOptions{LabelSelector: "airlock.dev/sandbox=" + id}
	if s, err := cs.CoreV1().Secrets(testkit.KubernetesNamespace).List(ctx, sel); err != nil || len(s.Items) != 0 {
		t.Errorf("a failed CreateSandbox left secrets: %v, %v", s, err)
	}
	if p, err := cs.NetworkingV1().NetworkPolicies(testkit.KubernetesNamespace).List(ctx, sel); err != nil || len(p.Items) != 0 {
		t.Errorf("a failed CreateSandbox left policies: %v, %v", p, err)
	}
	claimGone(t, cs, id)
}
