package testkit

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// KubernetesConfig is the kubeconfig of the test cluster
// (scripts/k8s-cluster.sh), unless KUBECONFIG names another.
const KubernetesConfig = "/var/lib/airlock-k8s/kubeconfig"

// KubernetesNamespace is the test cluster's namespace for airlock's pods.
const KubernetesNamespace = "airlock"

// KubernetesClusterCIDRs are the test cluster's pod and service ranges.
func KubernetesClusterCIDRs() []string { return []string{"10.244.0.0/24", "10.96.0.0/16"} }

// Kubernetes connects to the test cluster; without one the test is skipped,
// or fails on CI (make test brings the cluster up).
func Kubernetes(t testing.TB) *sandbox.Kubernetes {
	t.Helper()
	return KubernetesWith(t, nil)
}

// KubernetesWith is Kubernetes with its options edited by edit (nil: as
// they are).
func KubernetesWith(t testing.TB, edit func(*sandbox.KubernetesOptions)) *sandbox.Kubernetes {
	t.Helper()
	cfg := os.Getenv("KUBECONFIG")
	if cfg == "" {
		cfg = KubernetesConfig
	}
	missing := func(err error) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs the Kubernetes test cluster (make k8s-up): %v", err)
		}
		t.Skipf("no Kubernetes cluster: %v", err)
	}
	if _, err := os.Stat(cfg); err != nil {
		missing(err)
	}
	opts := sandbox.KubernetesOptions{Kubeconfig: cfg, Namespace: KubernetesNamespace, ClusterCIDRs: KubernetesClusterCIDRs()}
	if edit != nil {
		edit(&opts)
	}
	k, err := sandbox.NewKubernetes(opts)
	if err != nil {
		missing(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.Ping(ctx); err != nil {
		missing(err)
	}
	return k
}
