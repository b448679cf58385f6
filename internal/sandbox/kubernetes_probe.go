package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ErrPolicyNotEnforced is returned (wrapped) when the cluster's network
// plugin lets a pod through the network policy that should stop it.
var ErrPolicyNotEnforced = errors.New("the cluster does not enforce NetworkPolicy")

// netprobePort is where the probe's listener listens.
const netprobePort = 8080

// ProbeNetworkPolicy shows, with real pods, whether the cluster enforces
// the NetworkPolicies a sandbox relies on: a listener pod, a pod a policy
// lets reach it (which must connect: the probe works), and a pod under
// airlock's deny-all policy alone (which must not). The pods run the
// airlock binary (`airlock netprobe`) from image; everything is removed
// afterwards. It returns ErrPolicyNotEnforced when the denied pod got
// through.
func (k *Kubernetes) ProbeNetworkPolicy(ctx context.Context, image, binary string) error {
	b := make([]byte, 4)
	rand.Read(b)
	id := hex.EncodeToString(b)
	name := func(role string) string { return "airlock-netprobe-" + id + "-" + role }
	labels := func(role string) map[string]string {
		return map[string]string{"netprobe.airlock.dev/id": id, "netprobe.airlock.dev/role": role}
	}
	spec := func(role string, cmd ...string) Spec {
		return Spec{
			Name: name(role), Image: image, User: "65534:65534",
			Cmd:    append([]string{BinaryPath, "netprobe"}, cmd...),
			Mounts: []Mount{{Source: binary, Target: BinaryPath, ReadOnly: true}},
			Labels: labels(role),
			Limits: Limits{MemoryBytes: 64 << 20, CPUs: 0.2},
		}
	}
	defer func() {
		ctx := context.WithoutCancel(ctx)
		for _, role := range []string{"listen", "allowed", "denied"} {
			k.Remove(ctx, name(role))
		}
	}()

	listener, err := k.Create(ctx, spec("listen", "listen", fmt.Sprintf(":%d", netprobePort)))
	if err != nil {
		return fmt.Errorf("probe pod: %w", err)
	}
	// The listener's own policy (removed with it): the allowed pod may
	// reach it, on its port.
	port := []networkingv1.NetworkPolicyPort{{Protocol: ptr(corev1.ProtocolTCP), Port: ptr(intstr.FromInt32(netprobePort))}}
	peer := func(role string) []networkingv1.NetworkPolicyPeer {
		return []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: labels(role)}}}
	}
	owner := map[string]string{labelManaged: "true", labelOwner: podName(name("listen"))}
	for _, pol := range []*networkingv1.NetworkPolicy{
		{
			ObjectMeta: metav1.ObjectMeta{Name: name("listen-in"), Labels: owner},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: labels("listen")},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: peer("allowed"), Ports: port}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: name("allowed-out"), Labels: owner},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: labels("allowed")},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress:      []networkingv1.NetworkPolicyEgressRule{{To: peer("listen"), Ports: port}},
			},
		},
	} {
		if err := k.createPolicy(ctx, pol); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
	}
	if err := k.Start(ctx, listener); err != nil {
		return fmt.Errorf("probe pod: %w", err)
	}
	p, err := k.pod(ctx, listener)
	if err != nil {
		return fmt.Errorf("probe pod: %w", err)
	}
	if p.Status.PodIP == "" {
		return fmt.Errorf("probe pod %s has no address", p.Name)
	}
	target := fmt.Sprintf("%s:%d", p.Status.PodIP, netprobePort)

	type outcome struct {
		code int
		err  error
	}
	try := func(role string, within time.Duration) <-chan outcome {
		out := make(chan outcome, 1)
		go func() {
			id, err := k.Create(ctx, spec(role, "connect", target, "--within", within.String()))
			if err == nil {
				err = k.Start(ctx, id)
			}
			code := -1
			if err == nil {
				code, err = k.Wait(ctx, id)
			}
			out <- outcome{code, err}
		}()
		return out
	}
	allowedc, deniedc := try("allowed", 30*time.Second), try("denied", 10*time.Second)
	allowed, denied := <-allowedc, <-deniedc
	switch {
	case allowed.err != nil:
		return fmt.Errorf("probe pod: %w", allowed.err)
	case denied.err != nil:
		return fmt.Errorf("probe pod: %w", denied.err)
	case allowed.code != 0:
		return fmt.Errorf("probe inconclusive: a pod a policy allows could not reach the listener at %s either (exit %d)", target, allowed.code)
	case denied.code == 0:
		return fmt.Errorf("a pod under airlock's deny-all policy connected to another pod: %w; a sandbox's agent could reach more than its proxy, and other pods its proxy (see docs/kubernetes.md)", ErrPolicyNotEnforced)
	}
	return nil
}
