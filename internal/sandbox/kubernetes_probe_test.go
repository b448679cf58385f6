package sandbox_test

import (
	"context"
	"errors"
	"testing"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
)

// doctor's probe on the test cluster, which enforces NetworkPolicy; and
// the same probe where the probe's pods are let through, as on a cluster
// whose network plugin ignores policies, must say so.
func TestKubernetesProbeNetworkPolicy(t *testing.T) {
	k := kubeEngine(t)
	bin := staticAirlock(t)
	ctx := context.Background()
	if err := k.ProbeNetworkPolicy(ctx, sandboxtest.Image, bin); err != nil {
		t.Fatalf("probe on a cluster that enforces policies: %v", err)
	}
	reopen, err := sandbox.OpenNetprobePolicies(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	defer reopen()
	err = k.ProbeNetworkPolicy(ctx, sandboxtest.Image, bin)
	if !errors.Is(err, sandbox.ErrPolicyNotEnforced) {
		t.Fatalf("probe where policies let the denied pod through: %v, want %v", err, sandbox.ErrPolicyNotEnforced)
	}
}
