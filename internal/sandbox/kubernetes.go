package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/airlock-dev/airlock/internal/archive"
)

// KindKubernetes runs every container as a pod on a Kubernetes cluster. It
// is never autodetected: a cluster is chosen, not found.
const KindKubernetes = "kubernetes"

// KubernetesOptions are the settings a Kubernetes engine is made with
// ([engine.kubernetes]).
type KubernetesOptions struct {
	// Kubeconfig is the kubeconfig file; "" means $KUBECONFIG or
	// ~/.kube/config, as kubectl reads them.
	Kubeconfig string
	// Context is the kubeconfig context; "" means its current one.
	Context string
	// Namespace holds airlock's pods; "" means the context's namespace, or
	// "default".
	Namespace string
	// RuntimeClass is the RuntimeClass of every pod (gVisor, Kata), unless
	// a Spec names a runtime.
	RuntimeClass string
	// NodeSelector pins the pods to these nodes.
	NodeSelector map[string]string
	// StorageClass is the class of the claims that hold mounts to keep
	// (Mount.Persist); "" means the cluster's default class.
	StorageClass string
	// Registry prefixes image references that name no registry; the
	// kubelet pulls them. "" means images must already be on the nodes.
	Registry string
	// Warm is the number of pre-created pods (not implemented yet).
	Warm int
	// ClusterCIDRs are the cluster's pod and service ranges, which a
	// sandbox's proxy may not reach (nor the metadata address); none means
	// every private range (KubernetesDefaultClusterCIDRs).
	ClusterCIDRs []string
}

// Kubernetes is the Kubernetes backend. A container is a pod (see
// kubernetes_pod.go); a sandbox is two pods, agent and proxy, with
// NetworkPolicies between them (kubernetes_sandbox.go).
type Kubernetes struct {
	api  *kubeAPI
	cfg  *rest.Config
	ns   string
	opts KubernetesOptions
	// binary is the static airlock binary copied into the pods (UseBinary);
	// "" is this one.
	binary string
	// syncMax caps what one SyncMounts copies back: the files come from
	// the sandbox.
	syncMax archive.Options
	// claimWait is how long a new pod may wait for its claim to be bound.
	claimWait time.Duration

	denyMu   sync.Mutex
	denyDone bool

	// claimed maps the pod name of a container to the warm pod it was
	// given, as this process has seen.
	claimedMu sync.Mutex
	claimed   map[string]string
}

// NewKubernetes makes a Kubernetes engine from a kubeconfig, without
// contacting the cluster.
func NewKubernetes(opts KubernetesOptions) (*Kubernetes, error) {
	// client-go reports what it cannot return (a stream's copy cut short
	// when airlock stops reading) through klog, on the user's terminal;
	// airlock reports its own errors.
	klog.SetLogger(logr.Discard())
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if opts.Kubeconfig != "" {
		rules.ExplicitPath = opts.Kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: opts.Context})
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, fmt.Errorf("kubernetes: no cluster configured: name a kubeconfig ([engine.kubernetes] kubeconfig, or KUBECONFIG), or write ~/.kube/config")
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: read the kubeconfig: %w", err)
	}
	ns := opts.Namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil || ns == "" {
			ns = "default"
		}
	}
	// Exec and attach streams carry whole workspaces; the default QPS of 5
	// throttles the pollers of ten sandboxes at once.
	cfg.QPS, cfg.Burst = 50, 100
	api, err := newKubeAPI(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return &Kubernetes{api: api, cfg: cfg, ns: ns, opts: opts,
		syncMax:   archive.Options{MaxBytes: KubernetesSyncMaxBytes, MaxEntries: KubernetesSyncMaxEntries},
		claimWait: claimBindFor}, nil
}

// UseBinary names the static airlock binary copied into every pod as its
// init; by default it is this one.
func (k *Kubernetes) UseBinary(path string) { k.binary = path }

// SetSyncLimits caps what SyncMounts copies back from one mount (bytes,
// entries); the defaults are KubernetesSyncMaxBytes and
// KubernetesSyncMaxEntries.
func (k *Kubernetes) SetSyncLimits(bytes int64, entries int) {
	k.syncMax = archive.Options{MaxBytes: bytes, MaxEntries: entries}
}

// Namespace is where the engine's pods are.
func (k *Kubernetes) Namespace() string { return k.ns }

// Kind is "kubernetes".
func (k *Kubernetes) Kind() string { return KindKubernetes }

// Ping asks the API server for its version, and checks the namespace.
func (k *Kubernetes) Ping(ctx context.Context) error {
	if err := k.api.serverVersion(ctx); err != nil {
		return k.apiError("reach the cluster", err)
	}
	if err := k.api.namespaces().get(ctx, k.ns, &corev1.Namespace{}); err != nil && !apierrors.IsForbidden(err) {
		return k.apiError("find namespace "+k.ns, err)
	}
	return nil
}

// apiError wraps an API error with what was being done; an unreachable
// server is ErrEngineUnreachable, a missing object ErrNotFound.
func (k *Kubernetes) apiError(doing string, err error) error {
	switch {
	case err == nil:
		return nil
	case apierrors.IsNotFound(err):
		return fmt.Errorf("kubernetes: %s: %w: %v", doing, ErrNotFound, err)
	case isUnreachable(err):
		return fmt.Errorf("kubernetes: %s: %w: %v (is the cluster of %s up?)", doing, ErrEngineUnreachable, err, k.cfg.Host)
	}
	return fmt.Errorf("kubernetes: %s: %w", doing, err)
}

func isUnreachable(err error) bool {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return se.Status().Code == http.StatusServiceUnavailable
	}
	s := err.Error()
	return strings.Contains(s, "connection refused") || strings.Contains(s, "no such host") ||
		strings.Contains(s, "i/o timeout") || strings.Contains(s, "no route to host")
}

// Create makes the container's pod. Its command does not run yet: the init
// container that receives the mounts' files waits on its standard input
// until Start.
func (k *Kubernetes) Create(ctx context.Context, spec Spec) (string, error) {
	if err := k.checkImage(ctx, spec.Image); err != nil {
		return "", err
	}
	if err := k.ensureDenyAll(ctx); err != nil {
		return "", err
	}
	pod, err := k.podFor(ctx, spec, podNetNone)
	if err != nil {
		return "", err
	}
	if err := k.claimFor(ctx, pod, spec, pod.Name); err != nil {
		return "", err
	}
	return k.createPod(ctx, spec.Name, pod)
}

// claimFor makes the claim of pod, of spec in sandbox sb, if it has one,
// and marks the pod when the claim holds its mounts already.
func (k *Kubernetes) claimFor(ctx context.Context, pod *corev1.Pod, spec Spec, sb string) error {
	filled, err := k.ensureClaim(ctx, spec, sb)
	if err != nil {
		return err
	}
	if filled {
		pod.Annotations[annotationOnClaim] = "true"
	}
	return nil
}

func (k *Kubernetes) createPod(ctx context.Context, name string, pod *corev1.Pod) (string, error) {
	created := &corev1.Pod{}
	err := k.api.pods(k.ns).create(ctx, pod, created)
	if apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("kubernetes: create %s: the name %s is already in use (pod %s/%s)", name, name, k.ns, pod.Name)
	}
	if err != nil {
		return "", k.apiError("create "+name, err)
	}
	return created.Name, nil
}

// checkImage refuses an image the nodes do not hold when no registry is
// configured (the kubelet would never pull it), or that the configured
// registry says it does not hold (the pod would wait on a pull that fails).
func (k *Kubernetes) checkImage(ctx context.Context, ref string) error {
	if ref == "" {
		return errors.New("no image given")
	}
	ok, err := k.ImageExists(ctx, ref)
	if err != nil {
		return err
	}
	switch {
	case ok:
		return nil
	case k.opts.Registry == "":
		return fmt.Errorf("kubernetes: image %s is on none of the cluster's nodes and no registry is configured: build or import it first and load it into the nodes: %w", ref, ErrNotFound)
	default:
		return fmt.Errorf("kubernetes: image %s is on none of the cluster's nodes and registry %s does not hold it: push it there with `airlock image build`: %w", ref, k.opts.Registry, ErrNotFound)
	}
}

// pod returns the pod of a container given by ID or name. A container that
// got a warm pod (kubernetes_warm.go) is found by the pod's label naming it.
func (k *Kubernetes) pod(ctx context.Context, id string) (*corev1.Pod, error) {
	p := &corev1.Pod{}
	if err := k.getPod(ctx, podName(id), p); err != nil {
		return nil, k.apiError("find "+id, err)
	}
	// A pod being deleted is gone to airlock: Remove force-deletes, so this
	// is one someone else is deleting.
	if p.DeletionTimestamp != nil || p.Labels[labelManaged] != "true" {
		return nil, fmt.Errorf("kubernetes: find %s: %w", id, ErrNotFound)
	}
	return p, nil
}

// Start streams the mounts' files into the pod's init container; once it
// has unpacked them, the kubelet starts the command. Start returns when the
// command runs (or already ended). A container that ran already is made
// again from its spec, with the mounts copied afresh: a pod's containers
// cannot be started twice.
func (k *Kubernetes) Start(ctx context.Context, id string) error {
	p, err := k.pod(ctx, id)
	if err != nil {
		return err
	}
	if st := agentStatus(p); st != nil && st.State.Terminated != nil {
		if p, err = k.recreate(ctx, p); err != nil {
			return err
		}
	}
	if !initDone(p) {
		spec, err := specOf(p)
		if err != nil {
			return err
		}
		if err := k.feedInit(ctx, p, spec); err != nil {
			return err
		}
	}
	return k.waitAgent(ctx, p.Name, func(st *corev1.ContainerStatus) bool {
		return st.State.Running != nil || st.State.Terminated != nil
	})
}

// recreate replaces a pod whose command ended with a new one from the same
// spec.
func (k *Kubernetes) recreate(ctx context.Context, p *corev1.Pod) (*corev1.Pod, error) {
	spec, err := specOf(p)
	if err != nil {
		return nil, err
	}
	// Files the command wrote are on the host already (Wait syncs them);
	// the new pod gets them from there, or from its claim.
	if err := k.SyncMounts(ctx, p.Name, copiedIn(spec)); err != nil {
		return nil, err
	}
	if err := k.deletePod(ctx, p.Name); err != nil {
		return nil, err
	}
	net := podNetNone
	if p.Labels[labelRole] == roleProxy {
		net = podNetProxy
	}
	np, err := k.podFor(ctx, spec, net)
	if err != nil {
		return nil, err
	}
	// What a sandbox added to the pod stays: its labels, the channel's
	// key, the Secret's files and environment.
	np.Labels, np.Annotations = p.Labels, maps.Clone(p.Annotations)
	// Its claim, if any, stays with the spec: the copies on it are the
	// ended command's.
	if slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == claimVolume }) {
		np.Annotations[annotationOnClaim] = "true"
	}
	np.Spec.Containers[0].Env = p.Spec.Containers[0].Env
	np.Spec.Containers[0].VolumeMounts = p.Spec.Containers[0].VolumeMounts
	np.Spec.Volumes = p.Spec.Volumes
	np.Spec.InitContainers = p.Spec.InitContainers
	np.Spec.Containers[0].Command = p.Spec.Containers[0].Command
	created := &corev1.Pod{}
	if err := k.api.pods(k.ns).create(ctx, np, created); err != nil {
		return nil, k.apiError("restart "+spec.Name, err)
	}
	return created, nil
}

// waitAgent polls the pod until the agent container's status satisfies ok,
// or says why it never will.
func (k *Kubernetes) waitAgent(ctx context.Context, name string, ok func(*corev1.ContainerStatus) bool) error {
	for {
		p, err := k.pod(ctx, name)
		if err != nil {
			return err
		}
		if st := agentStatus(p); st != nil && ok(st) {
			return nil
		}
		if why := stuck(p); why != "" {
			return fmt.Errorf("kubernetes: %s cannot run: %s", name, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unschedulableFor is how long a pod may wait for a node with room.
const unschedulableFor = 2 * time.Minute

// stuck says why a pod's containers will never run, or "".
func stuck(p *corev1.Pod) string {
	if p.Status.Phase == corev1.PodFailed && agentStatus(p) == nil {
		return cmpOr(p.Status.Message, p.Status.Reason, "the pod failed")
	}
	for _, st := range append(slices.Clone(p.Status.InitContainerStatuses), p.Status.ContainerStatuses...) {
		if t := st.State.Terminated; t != nil && st.Name == initContainer && t.ExitCode != 0 {
			return fmt.Sprintf("copying the mounts in failed (exit %d): %s", t.ExitCode, strings.TrimSpace(t.Message))
		}
		if w := st.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
				"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
				return fmt.Sprintf("container %s: %s: %s", st.Name, w.Reason, w.Message)
			}
		}
	}
	// A pod no node has room for now may get one as other runs end: it
	// waits, for a while.
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable &&
			time.Since(p.CreationTimestamp.Time) > unschedulableFor {
			return fmt.Sprintf("no node could take it for %s: %s", unschedulableFor, c.Message)
		}
	}
	return ""
}

func cmpOr(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// Wait blocks until the command ended, copies what it wrote in the
// writable mounts back to the host (as a bind mount would have them), and
// returns its exit code.
func (k *Kubernetes) Wait(ctx context.Context, id string) (int, error) {
	var code int
	err := k.waitAgent(ctx, id, func(st *corev1.ContainerStatus) bool {
		if t := st.State.Terminated; t != nil {
			code = int(t.ExitCode)
			return true
		}
		return false
	})
	if err != nil {
		return 0, err
	}
	if err := k.SyncMounts(ctx, id, nil); err != nil {
		return code, err
	}
	return code, nil
}

// Inspect reports the agent container's state, not the pod's phase: the
// pod lives on (its keeper holds the files) after the command ended.
func (k *Kubernetes) Inspect(ctx context.Context, id string) (State, error) {
	p, err := k.pod(ctx, id)
	if err != nil {
		return State{}, err
	}
	return stateOfPod(p), nil
}

func stateOfPod(p *corev1.Pod) State {
	spec, err := specOf(p)
	st := State{ID: p.Name, Name: spec.Name, Image: spec.Image, Labels: spec.Labels, Status: StatusCreated}
	if err != nil {
		st.Status, st.Why = StatusDead, err.Error()
		return st
	}
	cs := agentStatus(p)
	switch {
	case cs == nil || !initDone(p):
		if why := stuck(p); why != "" {
			st.Status, st.Why = StatusDead, why
		}
	case cs.State.Running != nil:
		st.Status = StatusRunning
		st.StartedAt = cs.State.Running.StartedAt.Time
	case cs.State.Terminated != nil:
		t := cs.State.Terminated
		st.Status = StatusExited
		st.ExitCode = int(t.ExitCode)
		st.OOMKilled = t.Reason == "OOMKilled"
		st.StartedAt, st.FinishedAt = t.StartedAt.Time, t.FinishedAt.Time
	case cs.State.Waiting != nil:
		// Init done, the command not started yet: Start waits this out.
		st.Status = StatusRunning
		if why := stuck(p); why != "" {
			st.Status, st.Why = StatusDead, why
		}
	default:
		st.Status = StatusUnknown
	}
	// A warm pod's command started when it was claimed, not with the pod.
	if t := claimedAt(p); !t.IsZero() && !st.StartedAt.IsZero() {
		st.StartedAt = t
	}
	return st
}

// Stop signals the command with SIGTERM and, after timeout, SIGKILL. The
// pod stays, with its keeper and the files: a pod cannot be stopped and
// kept, but its agent container can end.
func (k *Kubernetes) Stop(ctx context.Context, id string, timeout time.Duration) error {
	p, err := k.pod(ctx, id)
	if err != nil {
		return err
	}
	if cs := agentStatus(p); cs == nil || cs.State.Running == nil {
		return nil
	}
	ended := func() bool {
		p, err := k.pod(ctx, id)
		if err != nil {
			return true
		}
		cs := agentStatus(p)
		return cs == nil || cs.State.Terminated != nil
	}
	for _, sig := range []string{"TERM", "KILL"} {
		if err := k.signal(ctx, p, sig); err != nil {
			// It may have ended on its own, or on the last signal,
			// meanwhile: the runtime refuses an exec in a stopped
			// container a moment before the kubelet reports it ended.
			for wait := time.Now().Add(10 * time.Second); time.Now().Before(wait); {
				if ended() {
					return nil
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(200 * time.Millisecond):
				}
			}
			return err
		}
		deadline := time.Now().Add(timeout)
		if sig == "KILL" {
			deadline = time.Now().Add(30 * time.Second)
		}
		for !ended() {
			if time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		if ended() {
			return nil
		}
	}
	return fmt.Errorf("kubernetes: stop %s: the command did not end after SIGKILL", id)
}

// Remove force-deletes the pod and what was made for it alone (its Secret
// and NetworkPolicy, for a sandbox's pods; its volume claim); a missing pod
// is not an error.
func (k *Kubernetes) Remove(ctx context.Context, id string) error {
	if err := k.removePod(ctx, id); err != nil {
		return err
	}
	owned := labels.Set{labelManaged: "true", labelOwner: podName(id)}.String()
	if err := k.api.claims(k.ns).deleteCollection(ctx, k.api.params, owned); err != nil && !apierrors.IsNotFound(err) {
		return k.apiError("remove the volume claim of "+id, err)
	}
	return nil
}

// removePod is Remove but for the pod's claim, which a pod made again
// mounts (RestartSandbox).
func (k *Kubernetes) removePod(ctx context.Context, id string) error {
	name := podName(id)
	if p, err := k.pod(ctx, id); err == nil {
		name = p.Name
	}
	if err := k.deletePod(ctx, name); err != nil {
		return err
	}
	owned := labels.Set{labelManaged: "true", labelOwner: name}.String()
	if err := k.api.policies(k.ns).deleteCollection(ctx, k.api.params, owned); err != nil && !apierrors.IsNotFound(err) {
		return k.apiError("remove the network policy of "+id, err)
	}
	if err := k.api.secrets(k.ns).deleteCollection(ctx, k.api.params, owned); err != nil && !apierrors.IsNotFound(err) {
		return k.apiError("remove the secret of "+id, err)
	}
	return nil
}

func (k *Kubernetes) deletePod(ctx context.Context, name string) error {
	zero := int64(0)
	err := k.api.pods(k.ns).delete(ctx, name, &metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		return k.apiError("remove "+name, err)
	}
	return nil
}

// List returns the containers carrying all the given labels. Labels that
// Kubernetes cannot hold as labels are matched on the spec's own copy.
func (k *Kubernetes) List(ctx context.Context, want map[string]string) ([]State, error) {
	sel := labels.Set{labelManaged: "true"}
	for key, v := range want {
		if labelSafe(key, v) {
			sel[key] = v
		}
	}
	pods := &corev1.PodList{}
	if err := k.api.pods(k.ns).list(ctx, k.api.params, sel.AsSelector().String(), pods); err != nil {
		return nil, k.apiError("list pods", err)
	}
	var out []State
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil || isWarmFree(p) {
			continue
		}
		st := stateOfPod(p)
		match := true
		for key, v := range want {
			if st.Labels[key] != v {
				match = false
			}
		}
		if match {
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Logs copies the agent container's log (stdout and stderr as the kubelet
// interleaved them). A command that never started has none.
func (k *Kubernetes) Logs(ctx context.Context, id string, w io.Writer) error {
	p, err := k.pod(ctx, id)
	if err != nil {
		return err
	}
	if cs := agentStatus(p); cs == nil || (cs.State.Running == nil && cs.State.Terminated == nil) {
		return nil
	}
	rc, err := k.api.logs(ctx, k.ns, p.Name, agentContainer)
	if err != nil {
		return k.apiError("read the logs of "+id, err)
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

// ImageExists reports whether a node of the cluster holds ref (what the
// kubelets report in Node.Status.Images). With a registry configured, an
// image the nodes lack is looked for in the registry (RegistryHolds) when
// airlock put it there (ref names no registry of its own); when the
// registry gives no answer the image is taken to be there: the kubelet
// pulls it at the start, and a missing one fails the start with the
// kubelet's message (stuck).
func (k *Kubernetes) ImageExists(ctx context.Context, ref string) (bool, error) {
	nodes := &corev1.NodeList{}
	if err := k.api.nodes().list(ctx, k.api.params, "", nodes); err != nil {
		return false, k.apiError("list the nodes' images", err)
	}
	unsure := false
	for _, n := range nodes.Items {
		if !selected(n.Labels, k.opts.NodeSelector) {
			continue
		}
		// With a registry, pods pull the image under its name there.
		has, maybe := reported(n.Status.Images, k.ImageRef(ref))
		if has {
			return true, nil
		}
		unsure = unsure || maybe
	}
	if unsure || k.opts.Registry == "" {
		return unsure, nil
	}
	if hasRegistry(ref) {
		return true, nil // not airlock's to push: the kubelet decides
	}
	held, err := RegistryHolds(ctx, k.ImageRef(ref))
	return held || err != nil, nil
}

// kubeletNamesPerImage is how many names of one image a kubelet reports
// (MaxNamesPerImageInNodeStatus), digests first: an image pushed to and
// pulled from a few registries can hide its local tag past them.
const kubeletNamesPerImage = 5

// reported says whether a node's image list names one of refs; maybe is
// true when it does not, but an image's names were cut off at the
// kubelet's limit, so the node may hold it anyway. Then the kubelet
// decides at the start, and says so if it does not have it.
func reported(images []corev1.ContainerImage, refs ...string) (has, maybe bool) {
	for _, img := range images {
		for _, name := range img.Names {
			for _, ref := range refs {
				if normalImage(name) == normalImage(ref) {
					return true, false
				}
			}
		}
		maybe = maybe || len(img.Names) >= kubeletNamesPerImage
	}
	return false, maybe
}

func selected(have, want map[string]string) bool {
	for key, v := range want {
		if have[key] != v {
			return false
		}
	}
	return true
}

// normalImage spells a reference as the kubelet reports it:
// docker.io/library/NAME:latest for a bare name.
func normalImage(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		return ref
	}
	name := ref
	first, _, found := strings.Cut(ref, "/")
	if !found || !strings.ContainsAny(first, ".:") && first != "localhost" {
		if !found {
			name = "library/" + name
		}
		name = "docker.io/" + name
	}
	if i := strings.LastIndex(name, ":"); i < 0 || strings.Contains(name[i:], "/") {
		name += ":latest"
	}
	return name
}

// secretFiles are, per volume, the names that come from the pod's Secret.
func secretFiles(p *corev1.Pod) map[string][]string {
	var m map[string][]string
	json.Unmarshal([]byte(p.Annotations[annotationSecretFiles]), &m)
	return m
}

// specOf is the spec a pod was made from.
func specOf(p *corev1.Pod) (Spec, error) {
	var spec Spec
	if err := json.Unmarshal([]byte(p.Annotations[annotationSpec]), &spec); err != nil {
		return Spec{}, fmt.Errorf("pod %s has no readable airlock spec: %v", p.Name, err)
	}
	return spec, nil
}

// PidsLimitIgnored says why Limits.Pids has no effect: Kubernetes has no
// per-pod limit of processes, only the kubelet's node-wide podPidsLimit.
func (k *Kubernetes) PidsLimitIgnored() string {
	return "Kubernetes has no per-pod process limit; the kubelet's podPidsLimit (node-wide) bounds every pod"
}

// NetworkProbe names an address outside every pod that answers TCP: a
// node's kubelet, on the node's internal address. A pod of the engine must
// not reach it (the deny-all NetworkPolicy).
func (k *Kubernetes) NetworkProbe(ctx context.Context) (string, error) {
	nodes := &corev1.NodeList{}
	if err := k.api.nodes().list(ctx, k.api.params, "", nodes); err != nil {
		return "", k.apiError("list nodes", err)
	}
	for _, n := range nodes.Items {
		port := n.Status.DaemonEndpoints.KubeletEndpoint.Port
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && port > 0 {
				return net.JoinHostPort(a.Address, strconv.Itoa(int(port))), nil
			}
		}
	}
	return "", errors.New("kubernetes: no node has an internal address and a kubelet port")
}
