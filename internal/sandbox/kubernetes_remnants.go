package sandbox

import (
	"context"
	"encoding/json"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
)

// The kinds of a remnant's objects, as people name them.
const (
	kindSecret = "secret"
	kindPolicy = "network policy"
	kindClaim  = "volume claim"
)

// Remnants lists the Secrets, NetworkPolicies and volume claims the engine
// made for one pod whose pod is gone (deleted by someone else, or with its
// node): Remove would have deleted them with it. Only objects labelled as
// the engine's, for one pod, and annotated with that pod's container, are
// remnants; the namespace's deny-all policy is for no pod and never one,
// nor is anything someone else made or labelled. Each remnant carries its
// container's name and labels, so the caller decides whether that
// container's run still needs it.
func (k *Kubernetes) Remnants(ctx context.Context) ([]Remnant, error) {
	owned, err := labels.NewRequirement(labelOwner, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	sel := labels.SelectorFromSet(labels.Set{labelManaged: "true"}).Add(*owned).String()
	// The pods first: an object listed after them whose pod was made
	// meanwhile is still seen as that pod's (RemoveRemnant checks again).
	pods := &corev1.PodList{}
	if err := k.api.pods(k.ns).list(ctx, k.api.params, labelManaged+"=true", pods); err != nil {
		return nil, k.apiError("list pods", err)
	}
	live := map[string]bool{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live[p.Name] = true
		}
	}
	secrets := &corev1.SecretList{}
	if err := k.api.secrets(k.ns).list(ctx, k.api.params, sel, secrets); err != nil {
		return nil, k.apiError("list secrets", err)
	}
	policies := &networkingv1.NetworkPolicyList{}
	if err := k.api.policies(k.ns).list(ctx, k.api.params, sel, policies); err != nil {
		return nil, k.apiError("list network policies", err)
	}
	claims := &corev1.PersistentVolumeClaimList{}
	if err := k.api.claims(k.ns).list(ctx, k.api.params, sel, claims); err != nil {
		return nil, k.apiError("list volume claims", err)
	}
	// Objects are grouped by their pod and by what their note says, word
	// for word: each is judged by its own note, never by another's that
	// names the same pod.
	type key struct{ pod, note string }
	byPod := map[key]*Remnant{}
	add := func(kind string, m metav1.ObjectMeta) {
		pod, note := m.Labels[labelOwner], m.Annotations[annotationOwner]
		var made madeFor
		if live[pod] || m.DeletionTimestamp != nil || json.Unmarshal([]byte(note), &made) != nil ||
			made.Name == "" || podName(made.Name) != pod {
			return
		}
		r := byPod[key{pod, note}]
		if r == nil {
			r = &Remnant{State: State{ID: pod, Name: made.Name, Labels: made.Labels, Status: StatusDead,
				Why: "its pod is gone"}}
			byPod[key{pod, note}] = r
		}
		r.Objects = append(r.Objects, kind+" "+k.ns+"/"+m.Name)
		r.refs = append(r.refs, remnantRef{kind: kind, name: m.Name, uid: string(m.UID)})
	}
	for _, s := range secrets.Items {
		add(kindSecret, s.ObjectMeta)
	}
	for _, p := range policies.Items {
		add(kindPolicy, p.ObjectMeta)
	}
	for _, c := range claims.Items {
		add(kindClaim, c.ObjectMeta)
	}
	out := make([]Remnant, 0, len(byPod))
	for _, r := range byPod {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ID != out[j].ID {
			return out[i].ID < out[j].ID
		}
		return out[i].Objects[0] < out[j].Objects[0]
	})
	return out, nil
}

// RemoveRemnant deletes the Secrets, NetworkPolicies and claims of r, each only
// if it is still the object Remnants saw (its UID), and none if r's pod
// exists again: then they are its own.
func (k *Kubernetes) RemoveRemnant(ctx context.Context, r Remnant) error {
	p := &corev1.Pod{}
	err := k.api.pods(k.ns).get(ctx, r.ID, p)
	switch {
	case err == nil && p.DeletionTimestamp == nil:
		return nil
	case err != nil && !apierrors.IsNotFound(err):
		return k.apiError("find "+r.Name, err)
	}
	for _, o := range r.refs {
		res := k.api.secrets(k.ns)
		switch o.kind {
		case kindPolicy:
			res = k.api.policies(k.ns)
		case kindClaim:
			res = k.api.claims(k.ns)
		}
		uid := types.UID(o.uid)
		err := res.delete(ctx, o.name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		// Gone already, or another object of that name now: not ours
		// to remove.
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return k.apiError("remove the "+o.kind+" "+o.name, err)
		}
	}
	return nil
}
