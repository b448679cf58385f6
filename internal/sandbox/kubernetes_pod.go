package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// A container is a pod of three containers:
//
//   - airlock-in, an init container of the same image and user, waits on
//     its standard input for a tar stream of every mount's files (Start
//     attaches and sends them) and unpacks it into the pod's emptyDir
//     volumes: nothing on the user's disk is mounted into the cluster;
//   - agent, the command behind the airlock binary as its init
//     (kubernetes_init.go), with those volumes at the mounts' targets;
//   - airlock-files, the keeper, a sleeping shell of the same image and
//     user with the writable volumes, through which the files are copied
//     out (SyncMounts) after the command ended.
//
// Each has its own process namespace: the agent can neither see nor signal
// the keeper.
const (
	agentContainer  = "agent"
	initContainer   = "airlock-in"
	keeperContainer = "airlock-files"
	// inDir is where the init container and the keeper see the volumes,
	// one directory per mount (m0, m1...).
	inDir = "/airlock/in"

	labelManaged   = "airlock.dev/managed"
	labelRole      = "airlock.dev/role"
	labelSandbox   = "airlock.dev/sandbox"
	annotationSpec = "airlock.dev/spec"
	roleProxy      = "proxy"
	roleAgent      = "agent"

	// denyAllPolicy cuts every pod the engine makes off every network:
	// "no network but loopback" as the other backends have it. A
	// sandbox's own policies open the channel between agent and proxy,
	// and the proxy's way out.
	denyAllPolicy = "airlock-deny-all"
)

// podNet says which network a pod gets.
type podNet int

const (
	podNetNone  podNet = iota // the agent's: nothing (policies), no resolver
	podNetProxy               // the proxy's: the node's resolver
)

var dns1123 = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// podName is the pod of a container name (or of a pod name: it maps onto
// itself). A name Kubernetes cannot hold is lowered, its other characters
// replaced, and a hash of the original appended, so two names never share
// a pod; the original is kept in the pod's spec annotation.
func podName(name string) string {
	if len(name) <= 63 && dns1123.MatchString(name) {
		return name
	}
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 50 {
		s = strings.TrimRight(s[:50], "-")
	}
	sum := sha256.Sum256([]byte(name))
	if s == "" {
		s = "airlock"
	}
	return s + "-" + hex.EncodeToString(sum[:])[:8]
}

// labelSafe reports whether key=value can be a Kubernetes label.
func labelSafe(key, value string) bool {
	return len(validation.IsQualifiedName(key)) == 0 && len(validation.IsValidLabelValue(value)) == 0
}

// agentStatus is the agent container's status, or nil before the kubelet
// reported one.
func agentStatus(p *corev1.Pod) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == agentContainer {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// initDone reports whether the init container unpacked the mounts.
func initDone(p *corev1.Pod) bool {
	for _, st := range p.Status.InitContainerStatuses {
		if st.Name == initContainer {
			return st.State.Terminated != nil && st.State.Terminated.ExitCode == 0
		}
	}
	return false
}

// initRunning reports whether the init container waits for its input.
func initRunning(p *corev1.Pod) bool {
	for _, st := range p.Status.InitContainerStatuses {
		if st.Name == initContainer {
			return st.State.Running != nil
		}
	}
	return false
}

// podMount is a mount as the pod has it: its volume, and whether its source
// is one file (then mounted by subPath).
type podMount struct {
	Mount
	volume string
	file   bool
	// claim: the copy lives on the pod's claim (Mount.Persist), in the
	// claim's directory named after volume, not in an emptyDir.
	claim bool
}

// sub is where in its volume a mount's copy is: a directory of its own
// for a directory (made by the init container as the spec's user, with
// the source's mode: git refuses a repository whose top directory is
// another user's, as an emptyDir's own is the kubelet's), the file named
// after the target for a file.
func (m podMount) sub() string {
	if m.file {
		return path.Base(m.Target)
	}
	return "data"
}

// podMounts checks the mounts and gives each its volume.
func (k *Kubernetes) podMounts(ms []Mount) ([]podMount, error) {
	out := make([]podMount, 0, len(ms))
	for i, m := range ms {
		if !filepath.IsAbs(m.Source) || !filepath.IsAbs(m.Target) {
			return nil, fmt.Errorf("mount %s -> %s: both paths must be absolute", m.Source, m.Target)
		}
		if err := CheckNotEngineSocket(m.Source, append(engineSockets(""), "/run/airlock-k8s/containerd.sock", "/run/containerd/containerd.sock")); err != nil {
			return nil, err
		}
		fi, err := os.Stat(m.Source)
		if err != nil {
			return nil, fmt.Errorf("mount %s -> %s: %w", m.Source, m.Target, err)
		}
		if !fi.IsDir() && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("mount %s -> %s: the cluster gets a copy, and only files and directories can be copied", m.Source, m.Target)
		}
		out = append(out, podMountOf(m, i))
	}
	return out, nil
}

// podLabels are the labels of spec's pod: airlock's mark, and those of
// spec's labels Kubernetes can hold (the spec annotation has them all).
func podLabels(spec Spec) map[string]string {
	ls := map[string]string{labelManaged: "true"}
	for key, v := range spec.Labels {
		if labelSafe(key, v) && !strings.HasPrefix(key, "airlock.dev/") {
			ls[key] = v
		}
	}
	return ls
}

// podFor turns spec into its pod, with the hardening every sandbox gets.
func (k *Kubernetes) podFor(ctx context.Context, spec Spec, net podNet) (*corev1.Pod, error) {
	if spec.Image == "" {
		return nil, fmt.Errorf("no image given")
	}
	if err := checkUser(spec.User); err != nil {
		return nil, err
	}
	uid, gid, _ := numericUser(spec.User)
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	all, err := k.withBinary(spec.Mounts)
	if err != nil {
		return nil, err
	}
	mounts, err := k.podMounts(all)
	if err != nil {
		return nil, err
	}
	res, err := podResources(spec.Limits)
	if err != nil {
		return nil, err
	}
	runtimeClass, err := k.runtimeClass(ctx, spec.Runtime)
	if err != nil {
		return nil, err
	}
	name := podName(spec.Name)
	var aliases []corev1.HostAlias
	for _, h := range spec.ExtraHosts {
		if h.Name == "" || !h.Addr.IsValid() || strings.ContainsAny(h.Name, ": \t\n") {
			return nil, fmt.Errorf("extra host %q -> %v: want a name and an address", h.Name, h.Addr)
		}
		aliases = append(aliases, corev1.HostAlias{IP: h.Addr.String(), Hostnames: []string{h.Name}})
	}
	var env []corev1.EnvVar
	for _, e := range spec.Env {
		k, v, _ := strings.Cut(e, "=")
		env = append(env, corev1.EnvVar{Name: k, Value: v})
	}

	var volumes []corev1.Volume
	var agentMounts, inMounts, keeperMounts []corev1.VolumeMount
	for _, m := range mounts {
		// A mount on the claim is its directory there (m0, its copy in
		// m0/data), seen where an emptyDir of its own would be.
		vol, sub := m.volume, ""
		if m.claim {
			vol, sub = claimVolume, m.volume
			if !slices.ContainsFunc(volumes, func(v corev1.Volume) bool { return v.Name == claimVolume }) {
				volumes = append(volumes, corev1.Volume{Name: claimVolume, VolumeSource: corev1.VolumeSource{
					PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name},
				}})
			}
		} else {
			volumes = append(volumes, corev1.Volume{Name: m.volume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		}
		am := corev1.VolumeMount{Name: vol, MountPath: m.Target, ReadOnly: m.ReadOnly, SubPath: path.Join(sub, m.sub())}
		agentMounts = append(agentMounts, am)
		inMounts = append(inMounts, corev1.VolumeMount{Name: vol, MountPath: inDir + "/" + m.volume, SubPath: sub})
		if !m.ReadOnly {
			keeperMounts = append(keeperMounts, corev1.VolumeMount{Name: vol, MountPath: inDir + "/" + m.volume, SubPath: sub, ReadOnly: true})
		}
	}
	for i, t := range spec.Tmpfs {
		if !filepath.IsAbs(t.Target) {
			return nil, fmt.Errorf("tmpfs %q: want an absolute path", t.Target)
		}
		if t.SizeBytes < 0 {
			return nil, fmt.Errorf("tmpfs %s: negative size", t.Target)
		}
		ed := &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}
		if t.SizeBytes > 0 {
			ed.SizeLimit = resource.NewQuantity(t.SizeBytes, resource.BinarySI)
		}
		v := "t" + strconv.Itoa(i)
		volumes = append(volumes, corev1.Volume{Name: v, VolumeSource: corev1.VolumeSource{EmptyDir: ed}})
		agentMounts = append(agentMounts, corev1.VolumeMount{Name: v, MountPath: t.Target})
	}
	// The init and keeper containers write nothing but their volumes.
	small := corev1.ResourceRequirements{
		Limits: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("64Mi"),
			corev1.ResourceCPU:    resource.MustParse("500m"),
		},
		Requests: corev1.ResourceList{
			corev1.ResourceMemory: resource.MustParse("16Mi"),
			corev1.ResourceCPU:    resource.MustParse("10m"),
		},
	}
	helper := func(name string, cmd []string, vm []corev1.VolumeMount) corev1.Container {
		return corev1.Container{
			Name: name, Image: k.ImageRef(spec.Image), Command: cmd, ImagePullPolicy: k.pullPolicy(),
			SecurityContext: hardened(uid, gid, true), VolumeMounts: vm, Resources: small,
		}
	}
	// Without mounts there is no inDir; the stream is empty then.
	unpackIn := inDir
	if len(mounts) == 0 {
		unpackIn = "/"
	}
	in := helper(initContainer, []string{"tar", "-x", "-o", "-f", "-", "-C", unpackIn}, inMounts)
	in.Stdin, in.StdinOnce = true, true
	keeper := helper(keeperContainer, []string{"sh", "-c", "while :; do sleep 3600; done"}, keeperMounts)
	agent := corev1.Container{
		Name: agentContainer, Image: k.ImageRef(spec.Image), Env: env,
		Command:    append([]string{BinaryPath, KubernetesInitCommand, "--"}, spec.Cmd...),
		WorkingDir: spec.WorkDir, ImagePullPolicy: k.pullPolicy(),
		SecurityContext: hardened(uid, gid, false), VolumeMounts: agentMounts, Resources: res,
	}
	no, yes := false, true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: k.ns, Labels: podLabels(spec),
			Annotations: map[string]string{annotationSpec: string(specJSON)},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: new(int64),
			HostAliases:                   aliases,
			NodeSelector:                  k.opts.NodeSelector,
			RuntimeClassName:              runtimeClass,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsUser: ptr(int64(uid)), RunAsGroup: ptr(int64(gid)), RunAsNonRoot: &yes,
				FSGroup: ptr(int64(gid)),
				// A claim the last pod left is its group's already: the
				// kubelet need not walk the whole volume again.
				FSGroupChangePolicy: ptr(corev1.FSGroupChangeOnRootMismatch),
				SeccompProfile:      &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			InitContainers: []corev1.Container{in},
			Containers:     []corev1.Container{agent, keeper},
			Volumes:        volumes,
		},
	}
	switch net {
	case podNetNone:
		// No resolver: the only nameserver is one that is not there, so
		// a lookup fails at once (Kubernetes wants one named).
		pod.Spec.DNSPolicy = corev1.DNSNone
		pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"127.0.0.1"}}
	case podNetProxy:
		pod.Spec.DNSPolicy = corev1.DNSDefault
	}
	return pod, nil
}

func ptr[T any](v T) *T { return &v }

// hardened is every container's security context: the spec's user, no
// capabilities, no new privileges, the runtime's seccomp profile.
func hardened(uid, gid int, readOnlyRoot bool) *corev1.SecurityContext {
	no, yes := false, true
	return &corev1.SecurityContext{
		RunAsUser: ptr(int64(uid)), RunAsGroup: ptr(int64(gid)), RunAsNonRoot: &yes,
		AllowPrivilegeEscalation: &no, Privileged: &no,
		Capabilities:           &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:         &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		ReadOnlyRootFilesystem: &readOnlyRoot,
	}
}

// podResources are the agent container's limits, from [sandbox], and its
// requests. Kubernetes has no per-pod pids limit (the kubelet's
// podPidsLimit is node-wide; PidsLimitIgnored).
//
// The requests are what the scheduler reserves: an agent mostly waits on
// its model, so reserving its whole limit would fit two runs on a node
// that can carry ten. They are a twentieth of the CPU limit and a tenth
// of the memory limit, at most agentRequestCPU and agentRequestMemory.
func podResources(l Limits) (corev1.ResourceRequirements, error) {
	if l.MemoryBytes < 0 || l.CPUs < 0 || l.Pids < 0 || l.DiskBytes < 0 {
		return corev1.ResourceRequirements{}, fmt.Errorf("negative resource limit %+v: use 0 for the engine's default", l)
	}
	r := corev1.ResourceRequirements{Limits: corev1.ResourceList{}, Requests: corev1.ResourceList{}}
	if l.MemoryBytes > 0 {
		r.Limits[corev1.ResourceMemory] = *resource.NewQuantity(l.MemoryBytes, resource.BinarySI)
		r.Requests[corev1.ResourceMemory] = *resource.NewQuantity(min(l.MemoryBytes/10, agentRequestMemory), resource.BinarySI)
	}
	if l.CPUs > 0 {
		milli := int64(l.CPUs * 1000)
		r.Limits[corev1.ResourceCPU] = *resource.NewMilliQuantity(milli, resource.DecimalSI)
		r.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(max(1, min(milli/20, agentRequestCPU)), resource.DecimalSI)
	}
	if l.DiskBytes > 0 {
		r.Limits[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(l.DiskBytes, resource.BinarySI)
		r.Requests[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(min(l.DiskBytes/10, agentRequestDisk), resource.BinarySI)
	}
	return r, nil
}

// The most an agent's pod asks the scheduler to reserve (podResources).
const (
	agentRequestCPU    = 250       // millicores
	agentRequestMemory = 512 << 20 // bytes
	agentRequestDisk   = 1 << 30   // bytes
)

func (k *Kubernetes) pullPolicy() corev1.PullPolicy {
	if k.opts.Registry != "" {
		return corev1.PullIfNotPresent
	}
	return corev1.PullNever
}

// runtimeClass is the RuntimeClass for an OCI runtime ("runsc"): the one
// whose handler it is, or the configured one when none is asked for.
func (k *Kubernetes) runtimeClass(ctx context.Context, runtime string) (*string, error) {
	if runtime == "" {
		if k.opts.RuntimeClass == "" {
			return nil, nil
		}
		return &k.opts.RuntimeClass, nil
	}
	rcs := &nodev1.RuntimeClassList{}
	if err := k.api.runtimeClasses().list(ctx, k.api.params, "", rcs); err != nil {
		return nil, k.apiError("list runtime classes", err)
	}
	for _, rc := range rcs.Items {
		if rc.Handler == runtime || rc.Name == runtime {
			return &rc.Name, nil
		}
	}
	return nil, fmt.Errorf("kubernetes: no RuntimeClass of the cluster has the handler %s: %w", runtime, ErrUnsupported)
}

// ensureDenyAll makes, once per engine, the policy that cuts the engine's
// pods off every network.
func (k *Kubernetes) ensureDenyAll(ctx context.Context) error {
	k.denyMu.Lock()
	defer k.denyMu.Unlock()
	if k.denyDone {
		return nil
	}
	pol := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: denyAllPolicy, Labels: map[string]string{labelManaged: "true"}},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{labelManaged: "true"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		},
	}
	err := k.api.policies(k.ns).create(ctx, pol, &networkingv1.NetworkPolicy{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return k.apiError("create the network policy "+denyAllPolicy, err)
	}
	k.denyDone = true
	return nil
}

// binaryPath is the static airlock binary copied into every pod: the one
// UseBinary names, or this one.
func (k *Kubernetes) binaryPath() (string, error) {
	if k.binary != "" {
		return k.binary, nil
	}
	return staticExecutable()
}

// withBinary is a spec's mounts and the binary, the pod's init
// (KubernetesInit), copied in as a mount like any other, last; a sandbox's
// pods have it already.
func (k *Kubernetes) withBinary(ms []Mount) ([]Mount, error) {
	if slices.ContainsFunc(ms, func(m Mount) bool { return m.Target == BinaryPath }) {
		return ms, nil
	}
	bin, err := k.binaryPath()
	if err != nil {
		return nil, err
	}
	return append(slices.Clone(ms), Mount{Source: bin, Target: BinaryPath, ReadOnly: true}), nil
}

// ImageRef is the reference a pod pulls: with a registry configured, an
// image that names none is the registry's.
func (k *Kubernetes) ImageRef(ref string) string { return RegistryRef(k.opts.Registry, ref) }

// RegistryRef is ref in registry ("HOST[:PORT][/PATH]"): what `airlock
// image build` pushes and pods pull. A ref that names its own registry,
// or an empty registry, leaves ref as it is.
func RegistryRef(registry, ref string) string {
	if registry == "" || hasRegistry(ref) {
		return ref
	}
	return strings.TrimSuffix(registry, "/") + "/" + ref
}

// hasRegistry reports whether a reference names its registry (a first
// element with a dot or a port, or localhost).
func hasRegistry(ref string) bool {
	first, _, found := strings.Cut(ref, "/")
	return found && (strings.ContainsAny(first, ".:") || first == "localhost")
}
