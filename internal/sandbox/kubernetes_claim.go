package sandbox

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
)

// A pod whose spec has mounts to keep (Mount.Persist: a persistent run's
// workspace and home) holds them on a PersistentVolumeClaim of its own,
// of the engine's StorageClass, named, labelled and annotated as its
// Secret and policies are (ownedBy): Remove deletes it with the pod, and
// what remains of a pod deleted behind airlock's back is a remnant
// (Remnants). A pod made again from the spec (RestartSandbox, Start after
// the command ended) mounts the same claim, and only the other mounts are
// copied in: the claim's copies are as the last pod left them. What is on
// the claim comes home through the keeper, as every mount does (SyncMounts).
const (
	// claimVolume is the claim's volume in the pod; each mount is its
	// directory there (m0, m1...), the copy in its data directory.
	claimVolume = "claim"
	// annotationOnClaim marks a pod whose claim holds its mounts already
	// (a pod made again): they are not copied in.
	annotationOnClaim = "airlock.dev/on-claim"
	// KubernetesClaimDefaultBytes is a claim's size when the pod's spec
	// has no disk limit ([sandbox] disk).
	KubernetesClaimDefaultBytes = 10 << 30
	// claimBindFor is how long a new pod may wait for its claim to be
	// bound (a volume provisioned) before the start fails.
	claimBindFor = 90 * time.Second
)

// hasClaim reports whether a pod of mounts has a claim.
func hasClaim(mounts []podMount) bool {
	return slices.ContainsFunc(mounts, func(m podMount) bool { return m.claim })
}

// ensureClaim makes the claim of spec's pod, in sandbox sb, if its mounts
// have one and it does not exist yet; filled is true when it existed: the
// copies on it are the last pod's. A claim of that name that is not the
// engine's own for this pod, or that is being deleted, is an error.
func (k *Kubernetes) ensureClaim(ctx context.Context, spec Spec, sb string) (filled bool, err error) {
	all, err := k.withBinary(spec.Mounts)
	if err != nil {
		return false, err
	}
	mounts, err := k.podMounts(all)
	if err != nil || !hasClaim(mounts) {
		return false, err
	}
	owner, err := ownedBy(spec, sb)
	if err != nil {
		return false, err
	}
	size := spec.Limits.DiskBytes
	if size <= 0 {
		size = KubernetesClaimDefaultBytes
	}
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: owner,
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: *resource.NewQuantity(size, resource.BinarySI),
			}},
		},
	}
	// No class named: the cluster's default one.
	if k.opts.StorageClass != "" {
		claim.Spec.StorageClassName = &k.opts.StorageClass
	}
	err = k.api.claims(k.ns).create(ctx, claim, &corev1.PersistentVolumeClaim{})
	if err == nil {
		return false, nil
	}
	if !apierrors.IsAlreadyExists(err) {
		return false, k.apiError("create the volume claim "+owner.Name, err)
	}
	old := &corev1.PersistentVolumeClaim{}
	if err := k.api.claims(k.ns).get(ctx, owner.Name, old); err != nil {
		return false, k.apiError("find the volume claim "+owner.Name, err)
	}
	switch {
	case old.Labels[labelManaged] != "true" || old.Labels[labelOwner] != owner.Name:
		return false, fmt.Errorf("kubernetes: create %s: the volume claim %s/%s is in the way and is not airlock's for it", spec.Name, k.ns, owner.Name)
	case old.DeletionTimestamp != nil:
		return false, fmt.Errorf("kubernetes: create %s: its volume claim %s/%s is being deleted", spec.Name, k.ns, owner.Name)
	}
	return true, nil
}

// claimStuck is an error when pod p has waited claimBindFor for a node
// while its claim is not bound: the class does not exist, no provisioner
// serves it, or it cannot make the volume.
func (k *Kubernetes) claimStuck(ctx context.Context, p *corev1.Pod) error {
	var claim string
	for _, v := range p.Spec.Volumes {
		if v.Name == claimVolume && v.PersistentVolumeClaim != nil {
			claim = v.PersistentVolumeClaim.ClaimName
		}
	}
	if claim == "" || p.Spec.NodeName != "" || time.Since(p.CreationTimestamp.Time) < k.claimWait {
		return nil
	}
	c := &corev1.PersistentVolumeClaim{}
	if err := k.api.claims(k.ns).get(ctx, claim, c); err != nil {
		return k.apiError("find the volume claim "+claim, err)
	}
	if c.Status.Phase == corev1.ClaimBound {
		return nil
	}
	class := "the cluster's default"
	if c.Spec.StorageClassName != nil {
		class = fmt.Sprintf("%q", *c.Spec.StorageClassName)
	}
	why := ""
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Message != "" {
			why = ": " + strings.TrimSpace(cond.Message)
		}
	}
	return fmt.Errorf("its volume claim %s/%s (storage class %s) was not bound within %s (%s)%s; check [engine.kubernetes] storage_class against the cluster's classes (kubectl get storageclass; an empty one needs a default class)",
		k.ns, claim, class, k.claimWait, cmpOr(string(c.Status.Phase), "no phase"), why)
}

// copiedIn are the targets of spec's writable mounts that a pod made again
// gets from the host: all but those on the claim, which came home when the
// command ended (Wait) and which the new pod finds on the claim. Syncing
// those again before a restart would copy a whole workspace for nothing.
func copiedIn(spec Spec) []string {
	targets := []string{}
	for i, m := range spec.Mounts {
		if !m.ReadOnly && !podMountOf(m, i).claim {
			targets = append(targets, m.Target)
		}
	}
	return targets
}
