package sandbox

import (
	"context"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OpenNetprobePolicies stands in for a network plugin that does not
// enforce NetworkPolicy, for the probe's pods only: it allows them every
// connection (policies only add). The returned function removes it.
func OpenNetprobePolicies(ctx context.Context, k *Kubernetes) (func(), error) {
	sel := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "netprobe.airlock.dev/id", Operator: metav1.LabelSelectorOpExists},
	}}
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "test-netprobe-open"},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: sel,
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{}},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{}},
		},
	}
	if err := k.createPolicy(ctx, pol); err != nil {
		return nil, err
	}
	return func() {
		k.api.policies(k.ns).delete(context.WithoutCancel(ctx), pol.Name, &metav1.DeleteOptions{})
	}, nil
}

// SetClaimWait shortens how long a new pod waits for its claim to be bound.
func SetClaimWait(k *Kubernetes, d time.Duration) { k.claimWait = d }
