package sandbox_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestKubernetesRemnants: a sandbox whose pods someone else deleted leaves
// its Secret and policies; Remnants reports them under the container they
// were made for, with its labels, and RemoveRemnant removes exactly them.
// A Secret that wears the engine's labels for that pod but carries no
// note of whose it is, or a note naming another pod, is no remnant; nor is
// the deny-all policy; nor an object of a pod that exists. One whose note
// names the pod with other labels (another registry's run) is a remnant of
// its own: it never decides for the engine's own objects of that pod.
func TestKubernetesRemnants(t *testing.T) {
	k := kubeEngine(t)
	cs := kubeClient(t)
	ctx := context.Background()
	ns := testkit.KubernetesNamespace
	host := nodeHost(t, k)
	id := fmt.Sprintf("airlock-k8s-rem-%d", time.Now().UnixNano()%1e8)
	spec, _ := kubeSandboxSpec(t, id, id+"-proxy", host, "http://"+net.JoinHostPort(host, "9"), "sleep 300")
	spec.Agent.Labels = map[string]string{"airlock.run": id, "airlock.role": "agent", "airlock.store": "/a/store"}
	spec.Proxy.Labels = map[string]string{"airlock.run": id, "airlock.role": "proxy", "airlock.store": "/a/store"}
	t.Cleanup(func() {
		k.Remove(context.Background(), spec.Agent.Name)
		k.RemoveProxy(context.Background(), spec.Proxy.Name)
	})
	if _, err := k.CreateSandbox(ctx, spec); err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	mine := func() []sandbox.Remnant {
		t.Helper()
		all, err := k.Remnants(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return slices.DeleteFunc(all, func(r sandbox.Remnant) bool { return r.Labels["airlock.run"] != id })
	}
	if got := mine(); len(got) != 0 {
		t.Fatalf("a live sandbox has remnants: %+v", got)
	}

	// Secrets that are not the engine's own, on the agent's pod's name.
	fake := func(name string, annotations map[string]string) {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations,
			Labels: map[string]string{"airlock.dev/managed": "true", "airlock.dev/pod": id, "airlock.dev/sandbox": id}}}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.CoreV1().Secrets(ns).Delete(context.Background(), name, metav1.DeleteOptions{}) })
	}
	fake(id+"-bare", nil)
	fake(id+"-other", map[string]string{"airlock.dev/owner": `{"name":"someone-else","labels":{"airlock.run":"` + id + `"}}`})
	fake(id+"-forged", map[string]string{"airlock.dev/owner": `{"name":"` + id + `","labels":{"airlock.run":"` + id + `","airlock.store":"/elsewhere"}}`})

	zero := int64(0)
	for _, p := range []string{id, id + "-proxy"} {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(time.Minute); ; {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "airlock.dev/sandbox=" + id})
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Items) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pods were not deleted: %d left", len(l.Items))
		}
		time.Sleep(200 * time.Millisecond)
	}

	got := mine()
	want := map[string][]string{
		"/a/store " + id:            {"network policy " + ns + "/" + id},
		"/a/store " + id + "-proxy": {"secret " + ns + "/" + id + "-proxy", "network policy " + ns + "/" + id + "-proxy"},
		"/elsewhere " + id:          {"secret " + ns + "/" + id + "-forged"},
	}
	if len(got) != len(want) {
		t.Fatalf("remnants: %+v, want %d", got, len(want))
	}
	for _, r := range got {
		store := r.Labels["airlock.store"]
		if w := want[store+" "+r.ID]; !slices.Equal(r.Objects, w) {
			t.Errorf("remnant %s of %s: %v, want %v", r.ID, store, r.Objects, w)
		}
		if r.Name != r.ID || r.Status != sandbox.StatusDead {
			t.Errorf("remnant %s: name %q status %s", r.ID, r.Name, r.Status)
		}
		if store != "/a/store" {
			continue
		}
		if err := k.RemoveRemnant(ctx, r); err != nil {
			t.Fatalf("RemoveRemnant %s: %v", r.ID, err)
		}
	}
	if got := mine(); len(got) != 1 || got[0].Labels["airlock.store"] != "/elsewhere" {
		t.Errorf("remnants after RemoveRemnant: %+v, want the forged one alone", got)
	}
	sel := metav1.ListOptions{LabelSelector: "airlock.dev/sandbox=" + id}
	pols, err := cs.NetworkingV1().NetworkPolicies(ns).List(ctx, sel)
	if err != nil || len(pols.Items) != 0 {
		t.Errorf("policies left: %v, %v", pols, err)
	}
	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, s := range secrets.Items {
		left = append(left, s.Name)
	}
	slices.Sort(left)
	if !slices.Equal(left, []string{id + "-bare", id + "-forged", id + "-other"}) {
		t.Errorf("secrets after RemoveRemnant: %v, want only the three that are not the engine's", left)
	}
	if _, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, "airlock-deny-all", metav1.GetOptions{}); err != nil {
		t.Errorf("the deny-all policy: %v", err)
	}
}
