package sandbox

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/remotecommand"
)

// The warm pool ([engine.kubernetes] warm = N). A cold sandbox costs two
// pods made, scheduled and started, and the airlock binary streamed into
// each: seconds. A warm sandbox is such a pair made in advance, its
// containers already running, the agent's and the proxy's first process
// the airlock init waiting for its launch (`__k8s-init --await`). A run
// claims a pair by relabelling its agent pod (a patch conditional on the
// pod's resourceVersion, so two runs never get one pair), writes its files
// and each pod's launch through the keeper container, and the inits start
// the proxy and the relay in front of the agent: a few API calls.
//
// A pair fits only runs of its shape (warmShape: image, user, mounts'
// targets, limits, the binary): what a pod spec fixes at creation. What
// differs between runs, the command, environment and working directory,
// the channel's key, the proxy's configuration and credentials, travels in
// the launch and the files, never in the pod spec. A warm proxy therefore
// has no Secret: its configuration goes into its volume through exec, as
// the agent's files do.
//
// The pool is topped up (Prewarm) by the supervisor of a running sandbox,
// with pairs of that sandbox's shape: the first run of a shape is cold.
// Free pairs older than warmTTL, or not ready within warmReadyWithin, are
// removed by the next top-up, whatever their shape.
const (
	// labelWarm is "free" on a pool's pod, "claimed" once a run has it.
	labelWarm   = "airlock.dev/warm"
	warmFree    = "free"
	warmClaimed = "claimed"
	// labelShape is the pair's warmShape.
	labelShape = "airlock.dev/shape"
	// labelAs names, on a claimed pod, the pod name of the container it
	// stands for: pod names cannot change.
	labelAs = "airlock.dev/as"
	// annotationClaimedAt is when a run claimed the pod: its command's
	// start, not the pod's.
	annotationClaimedAt = "airlock.dev/claimed-at"
	// annotationProxySpec is, on an agent's pod, the spec of its proxy's.
	annotationProxySpec = "airlock.dev/proxy-spec"

	// launchVolume holds a warm pod's launch (warmLaunch), at launchDir in
	// the first container and launchIn in the keeper.
	launchVolume = "launch"
	launchDir    = "/airlock/launch"
	launchIn     = inDir + "/" + launchVolume

	warmTTL          = 30 * time.Minute
	warmReadyWithin  = 2 * time.Minute
	warmPodPrefix    = "airlock-warm-"
	warmLaunchVolume = 2 << 20
)

// Prewarmer keeps sandboxes like a running one made in advance, so that
// the next runs start at once (Kubernetes' warm pool).
type Prewarmer interface {
	// Prewarm tops the pool up with sandboxes of the shape of the one
	// whose agent is the container agent.
	Prewarm(ctx context.Context, agent string) error
	// Drain removes every free pre-made sandbox, and names their pods.
	Drain(ctx context.Context) ([]string, error)
}

// warmTemplate is what a warm pair is made from: the agent's spec (no
// command, no environment, its mounts without the binary), the binary, and
// the proxy's spec as launchProxy makes it.
type warmTemplate struct {
	agent  Spec
	binary string
	proxy  Spec
}

// template is the warm template of a sandbox about to be made.
func (k *Kubernetes) template(spec SandboxSpec) warmTemplate {
	return warmTemplate{agent: spec.Agent, binary: spec.Binary, proxy: k.proxySpec(spec)}
}

// proxySpec is the spec of a sandbox's proxy pod.
func (k *Kubernetes) proxySpec(spec SandboxSpec) Spec {
	p := spec.Proxy
	proxyPort, apiPort := k.ports()
	return Spec{
		Name:  p.Name,
		Image: spec.Agent.Image,
		Cmd: append(ProxyCommand(),
			"--tcp-proxy", ":"+strconv.Itoa(int(proxyPort)), "--tcp-api", ":"+strconv.Itoa(int(apiPort))),
		User: p.User,
		Mounts: []Mount{
			{Source: spec.Binary, Target: BinaryPath, ReadOnly: true},
			{Source: p.ConfigDir, Target: ProxyConfigDir},
		},
		Tmpfs:      []Tmpfs{{Target: "/tmp", SizeBytes: 64 << 20}},
		Labels:     p.Labels,
		ExtraHosts: p.ExtraHosts,
		Limits:     p.Limits,
		Runtime:    spec.Agent.Runtime,
	}
}

// shape names what a pod spec fixes of a sandbox, as a label value.
func (k *Kubernetes) shape(t warmTemplate) (string, error) {
	type mountShape struct {
		Target         string
		ReadOnly, File bool
	}
	type podShape struct {
		Image, User, Runtime string
		Mounts               []mountShape
		Tmpfs                []Tmpfs
		Limits               Limits
		ExtraHosts           []HostAddr
	}
	shapeOf := func(s Spec) (podShape, error) {
		ps := podShape{Image: s.Image, User: s.User, Runtime: s.Runtime, Tmpfs: s.Tmpfs, Limits: s.Limits, ExtraHosts: s.ExtraHosts}
		for _, m := range s.Mounts {
			if m.Target == BinaryPath {
				continue
			}
			fi, err := os.Stat(m.Source)
			if err != nil {
				return podShape{}, err
			}
			ps.Mounts = append(ps.Mounts, mountShape{m.Target, m.ReadOnly, !fi.IsDir()})
		}
		return ps, nil
	}
	bin, err := os.Stat(t.binary)
	if err != nil {
		return "", err
	}
	a, err := shapeOf(t.agent)
	if err != nil {
		return "", err
	}
	p, err := shapeOf(t.proxy)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(struct {
		Agent, Proxy                   podShape
		BinarySize, BinaryTime         int64
		RuntimeClass, Registry, Policy string
		NodeSelector                   map[string]string
		ClusterCIDRs                   []string
	}{a, p, bin.Size(), bin.ModTime().UnixNano(), k.opts.RuntimeClass, k.opts.Registry, denyAllPolicy, k.opts.NodeSelector, k.opts.ClusterCIDRs})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:32], nil
}

// claimedAs is the pod a container's pod name stands for, as this process
// has seen it claimed; name itself otherwise.
func (k *Kubernetes) claimedAs(name string) string {
	k.claimedMu.Lock()
	defer k.claimedMu.Unlock()
	if v, ok := k.claimed[name]; ok {
		return v
	}
	return name
}

func (k *Kubernetes) rememberClaim(name, pod string) {
	k.claimedMu.Lock()
	defer k.claimedMu.Unlock()
	if k.claimed == nil {
		k.claimed = map[string]string{}
	}
	k.claimed[name] = pod
}

// findClaimed looks for the warm pod claimed as the pod name.
func (k *Kubernetes) findClaimed(ctx context.Context, name string, into *corev1.Pod) (bool, error) {
	if !labelSafe(labelAs, name) {
		return false, nil
	}
	pods := &corev1.PodList{}
	sel := labels.Set{labelManaged: "true", labelWarm: warmClaimed, labelAs: name}.String()
	if err := k.api.pods(k.ns).list(ctx, k.api.params, sel, pods); err != nil {
		return false, err
	}
	for i := range pods.Items {
		if pods.Items[i].DeletionTimestamp == nil {
			*into = pods.Items[i]
			k.rememberClaim(name, into.Name)
			return true, nil
		}
	}
	return false, nil
}

// getPod gets the pod of a pod name, or the warm pod claimed as it.
func (k *Kubernetes) getPod(ctx context.Context, name string, p *corev1.Pod) error {
	if real := k.claimedAs(name); real != name {
		err := k.api.pods(k.ns).get(ctx, real, p)
		if !apierrors.IsNotFound(err) {
			return err
		}
		k.claimedMu.Lock()
		delete(k.claimed, name)
		k.claimedMu.Unlock()
	}
	err := k.api.pods(k.ns).get(ctx, name, p)
	if !apierrors.IsNotFound(err) {
		return err
	}
	if found, ferr := k.findClaimed(ctx, name, p); ferr != nil || found {
		return ferr
	}
	return err
}

// podOf is the pod name of a container, for an exec into it; errors are
// the exec's to report.
func (k *Kubernetes) podOf(ctx context.Context, id string) string {
	if p, err := k.pod(ctx, id); err == nil {
		return p.Name
	}
	return podName(id)
}

// warmReady reports whether a pool's pod waits for its launch: its files
// in, its first container and its keeper running.
func warmReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || !initDone(p) {
		return false
	}
	n := 0
	for _, st := range p.Status.ContainerStatuses {
		if st.State.Running != nil {
			n++
		}
	}
	return n == 2
}

// claimWarm gives the sandbox a free warm pair of its shape, if the pool
// has one: it is then running, its files in, its proxy listening. ok is
// false when there was none (nothing was changed).
func (k *Kubernetes) claimWarm(ctx context.Context, spec SandboxSpec) (sb Sandbox, ok bool, err error) {
	if !warmable(spec.Agent) {
		return Sandbox{}, false, nil
	}
	t := k.template(spec)
	shape, err := k.shape(t)
	if err != nil {
		return Sandbox{}, false, nil
	}
	free := labels.Set{labelManaged: "true", labelWarm: warmFree, labelShape: shape}
	pods := &corev1.PodList{}
	if err := k.api.pods(k.ns).list(ctx, k.api.params, free.String(), pods); err != nil {
		return Sandbox{}, false, k.apiError("list the warm pool", err)
	}
	proxies := map[string]*corev1.Pod{}
	var agents []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if !warmReady(p) {
			continue
		}
		switch p.Labels[labelRole] {
		case roleProxy:
			proxies[p.Labels[labelSandbox]] = p
		case roleAgent:
			agents = append(agents, p)
		}
	}
	sort.Slice(agents, func(i, j int) bool { return agents[i].CreationTimestamp.Before(&agents[j].CreationTimestamp) })
	key, err := channelKey()
	if err != nil {
		return Sandbox{}, false, err
	}
	for _, a := range agents {
		proxy := proxies[a.Labels[labelSandbox]]
		if proxy == nil {
			continue
		}
		// The agent's pod is the pair's lock: whoever relabels it first
		// has the pair.
		aspec := k.relayed(spec, proxy.Status.PodIP, key)
		pspec, err := json.Marshal(k.proxySpec(spec))
		if err != nil {
			return Sandbox{}, false, err
		}
		if !k.claimPod(ctx, a, aspec, map[string]string{annotationProxySpec: string(pspec)}) {
			continue
		}
		sb, err := k.launchWarm(ctx, spec, aspec, key, a, proxy)
		if err != nil {
			k.Remove(context.WithoutCancel(ctx), a.Name)
			k.Remove(context.WithoutCancel(ctx), proxy.Name)
			return Sandbox{}, true, err
		}
		return sb, true, nil
	}
	return Sandbox{}, false, nil
}

// claimPod relabels a free warm pod as the container of spec (spec's
// labels, its name, its spec annotation, the claim's time), if no one else
// did first.
func (k *Kubernetes) claimPod(ctx context.Context, p *corev1.Pod, spec Spec, annotations map[string]string) bool {
	specJSON, err := json.Marshal(spec)
	if err != nil {
		return false
	}
	ls := map[string]any{labelWarm: warmClaimed, labelAs: podName(spec.Name)}
	for key, v := range podLabels(spec) {
		ls[key] = v
	}
	an := map[string]any{annotationSpec: string(specJSON), annotationClaimedAt: time.Now().UTC().Format(time.RFC3339Nano)}
	for key, v := range annotations {
		an[key] = v
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		// The patch applies only to the pod as listed: another claim
		// since fails it (409).
		"resourceVersion": p.ResourceVersion,
		"labels":          ls,
		"annotations":     an,
	}})
	if err != nil {
		return false
	}
	into := &corev1.Pod{}
	if err := k.api.pods(k.ns).patch(ctx, p.Name, types.MergePatchType, patch, into); err != nil {
		return false
	}
	*p = *into
	k.rememberClaim(podName(spec.Name), p.Name)
	return true
}

// launchWarm finishes a claimed pair: the proxy's configuration and launch
// in, the agent's files and launch in, the proxy listening.
func (k *Kubernetes) launchWarm(ctx context.Context, spec SandboxSpec, aspec Spec, key string, agent, proxy *corev1.Pod) (Sandbox, error) {
	pspec := k.proxySpec(spec)
	secretFiles, _, err := proxySecret(spec.Proxy, key)
	if err != nil {
		return Sandbox{}, err
	}
	// As launchProxy has them: neither the configuration's files nor
	// those handed to the running proxy travel with the copies home.
	skip, _ := json.Marshal(map[string][]string{"m1": append(slices.Clone(secretFiles), spec.Proxy.Handed...)})
	handed, _ := json.Marshal(spec.Proxy.Handed)
	if !k.claimPod(ctx, proxy, pspec, map[string]string{annotationSecretFiles: string(skip), annotationHandedFiles: string(handed)}) {
		return Sandbox{}, fmt.Errorf("kubernetes: claim the warm proxy %s: it changed meanwhile", proxy.Name)
	}
	proxyDone := make(chan error, 1)
	go func() {
		l := warmLaunch{Cmd: pspec.Cmd, Env: append(slices.Clone(spec.Proxy.Env), channelKeyEnv+"="+key)}
		// A handed file left on the host is not the proxy's to read.
		err := k.feedWarm(ctx, proxy.Name, pspec, l, map[string][]string{"m1": spec.Proxy.Handed})
		if err != nil {
			err = fmt.Errorf("egress proxy %s: %w", proxy.Name, err)
		} else {
			err = k.awaitProxy(ctx, proxy.Name)
		}
		proxyDone <- err
	}()
	err = spec.agentReady(ctx)
	if err == nil {
		l := warmLaunch{Cmd: aspec.Cmd, Env: append(slices.Clone(aspec.Env), channelKeyEnv+"="+key), Dir: aspec.WorkDir}
		err = k.feedWarm(ctx, agent.Name, aspec, l, nil)
	}
	perr := <-proxyDone
	if err == nil && k.doneFirst(ctx, perr, agent.Name) {
		perr = nil
	}
	if err == nil {
		err = perr
	}
	if err != nil {
		return Sandbox{}, err
	}
	return Sandbox{Agent: agent.Name, Proxy: proxy.Name}, nil
}

// feedWarm writes a claimed pod's files (its spec's mounts but the binary,
// in since the pod was made) and then its launch into its volumes, through
// the keeper. Files are written in place (--overwrite): a file mount is
// bind-mounted by its inode.
func (k *Kubernetes) feedWarm(ctx context.Context, pod string, spec Spec, l warmLaunch, skip map[string][]string) error {
	all, err := k.withBinary(spec.Mounts)
	if err != nil {
		return err
	}
	mounts, err := k.podMounts(all)
	if err != nil {
		return err
	}
	withBin := mounts
	mounts = slices.DeleteFunc(slices.Clone(mounts), func(m podMount) bool { return m.Target == BinaryPath })
	launch, err := json.Marshal(l)
	if err != nil {
		return err
	}
	uid, gid, _ := numericUser(spec.User)
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(mountsTarThen(pw, mounts, skip, uid, gid, func(tw *tar.Writer) error {
			for _, f := range []struct {
				name string
				data []byte
			}{{launchFile, launch}, {launchGo, nil}} {
				h := &tar.Header{Name: launchVolume + "/" + f.name, Mode: 0o600, Size: int64(len(f.data)), Uid: uid, Gid: gid, Typeflag: tar.TypeReg}
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
				if _, err := tw.Write(f.data); err != nil {
					return err
				}
			}
			return nil
		}))
	}()
	// The keeper has the binary too: the image's tar may not write in
	// place (busybox's replaces files).
	bin := ""
	for _, m := range withBin {
		if m.Target == BinaryPath {
			bin = inDir + "/" + m.volume + "/" + m.sub()
		}
	}
	var out bytes.Buffer
	// Through the keeper's shell: the runtime's exec of the binary
	// itself, on its volume, ended with status 1 and no word here.
	code, err := k.execIn(ctx, pod, keeperContainer, []string{"sh", "-c", `exec "$0" ` + KubernetesInitCommand + ` --unpack "$1"`, bin, inDir},
		remotecommand.StreamOptions{Stdin: pr, Stdout: &out, Stderr: &out})
	pr.Close()
	if err == nil && code != 0 {
		err = fmt.Errorf("tar: exit %d: %s", code, strings.TrimSpace(out.String()))
	}
	if err != nil {
		return fmt.Errorf("kubernetes: copy the files of %s in: %w", spec.Name, err)
	}
	return nil
}

// Prewarm tops the pool up to [engine.kubernetes] warm free pairs of the
// shape of agent's sandbox, and removes free pairs that are stale (older
// than warmTTL, or never ready). It returns when the new pairs are made and
// their binaries in.
func (k *Kubernetes) Prewarm(ctx context.Context, agent string) error {
	if k.opts.Warm <= 0 {
		return nil
	}
	p, err := k.pod(ctx, agent)
	if err != nil {
		return err
	}
	aspec, err := specOf(p)
	if err != nil {
		return err
	}
	if !warmable(aspec) {
		return nil
	}
	var pspec Spec
	if err := json.Unmarshal([]byte(p.Annotations[annotationProxySpec]), &pspec); err != nil {
		return fmt.Errorf("kubernetes: warm pool: %s is not a sandbox's agent (no proxy spec): %v", agent, err)
	}
	t := warmTemplate{agent: aspec, proxy: pspec}
	for _, m := range aspec.Mounts {
		if m.Target == BinaryPath {
			t.binary = m.Source
		}
	}
	t.agent.Cmd, t.agent.Env, t.agent.Labels = nil, nil, nil
	t.agent.Mounts = slices.DeleteFunc(slices.Clone(aspec.Mounts), func(m Mount) bool { return m.Target == BinaryPath })
	shape, err := k.shape(t)
	if err != nil {
		return fmt.Errorf("kubernetes: warm pool: %w", err)
	}
	have, err := k.tidyWarm(ctx, shape)
	if err != nil {
		return err
	}
	for ; have < k.opts.Warm; have++ {
		if err := k.makeWarm(ctx, t, shape); err != nil {
			return err
		}
	}
	return nil
}

// tidyWarm removes the pool's stale pods, and counts the free pairs of
// shape that remain.
func (k *Kubernetes) tidyWarm(ctx context.Context, shape string) (int, error) {
	pods := &corev1.PodList{}
	free := labels.Set{labelManaged: "true", labelWarm: warmFree}.String()
	if err := k.api.pods(k.ns).list(ctx, k.api.params, free, pods); err != nil {
		return 0, k.apiError("list the warm pool", err)
	}
	have := 0
	for _, p := range pods.Items {
		age := time.Since(p.CreationTimestamp.Time)
		if p.DeletionTimestamp != nil {
			continue
		}
		if age > warmTTL || age > warmReadyWithin && !warmReady(&p) {
			if _, err := k.removeFree(ctx, &p); err != nil {
				return 0, err
			}
			continue
		}
		if p.Labels[labelShape] == shape && p.Labels[labelRole] == roleAgent {
			have++
		}
	}
	return have, nil
}

// Drain removes the namespace's free warm pods, of every shape, and
// their policies.
func (k *Kubernetes) Drain(ctx context.Context) ([]string, error) {
	pods := &corev1.PodList{}
	free := labels.Set{labelManaged: "true", labelWarm: warmFree}.String()
	if err := k.api.pods(k.ns).list(ctx, k.api.params, free, pods); err != nil {
		return nil, k.apiError("list the warm pool", err)
	}
	var gone []string
	for _, p := range pods.Items {
		removed, err := k.removeFree(ctx, &p)
		if err != nil {
			return gone, err
		}
		if removed {
			gone = append(gone, p.Name)
		}
	}
	return gone, nil
}

// removeFree removes a free warm pod and its policy, unless it changed
// since p was read: a run may have claimed it meanwhile.
func (k *Kubernetes) removeFree(ctx context.Context, p *corev1.Pod) (bool, error) {
	zero := int64(0)
	err := k.api.pods(k.ns).delete(ctx, p.Name, &metav1.DeleteOptions{
		GracePeriodSeconds: &zero,
		Preconditions:      &metav1.Preconditions{UID: &p.UID, ResourceVersion: &p.ResourceVersion},
	})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, k.apiError("remove the warm pod "+p.Name, err)
	}
	return true, k.Remove(ctx, p.Name)
}

// makeWarm makes one free pair of template t: its policies, its two pods,
// the binary and the mounts' empty places streamed in.
func (k *Kubernetes) makeWarm(ctx context.Context, t warmTemplate, shape string) error {
	b := make([]byte, 5)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	sb := warmPodPrefix + hex.EncodeToString(b)
	names := map[string]string{roleAgent: sb + "-agent", roleProxy: sb + "-proxy"}
	undo := func() {
		for _, n := range names {
			k.Remove(context.WithoutCancel(ctx), n)
		}
	}
	done := make(chan error, 2)
	for role, tmpl := range map[string]Spec{roleAgent: t.agent, roleProxy: t.proxy} {
		spec := tmpl
		spec.Name, spec.Cmd, spec.Env, spec.Labels = names[role], nil, nil, nil
		// The binary where the run's spec will have it: the proxy's
		// first, the agent's last (relayed); volumes are numbered in order.
		spec.Mounts = slices.Clone(tmpl.Mounts)
		if i := slices.IndexFunc(spec.Mounts, func(m Mount) bool { return m.Target == BinaryPath }); i >= 0 {
			spec.Mounts[i].Source = t.binary
		} else {
			spec.Mounts = append(spec.Mounts, Mount{Source: t.binary, Target: BinaryPath, ReadOnly: true})
		}
		net := podNetNone
		if role == roleProxy {
			net = podNetProxy
		}
		pod, err := k.warmPod(ctx, spec, net, role, sb, shape)
		if err != nil {
			undo()
			return err
		}
		owner, err := ownedBy(spec, sb)
		if err != nil {
			undo()
			return err
		}
		pol := k.agentPolicy(owner, sb)
		if role == roleProxy {
			pol = k.proxyPolicy(owner, sb)
		}
		if err := k.createPolicy(ctx, pol); err != nil {
			undo()
			return err
		}
		if _, err := k.createPod(ctx, spec.Name, pod); err != nil {
			undo()
			return err
		}
		go func() { done <- k.feedPlaces(ctx, spec) }()
	}
	for range 2 {
		if err := <-done; err != nil {
			undo()
			return fmt.Errorf("kubernetes: warm pool: %w", err)
		}
	}
	return nil
}

// warmPod is a pool's pod for spec: as podFor makes it, but its first
// container awaits its launch, and its keeper may write every volume (the
// claim's files go in through it).
func (k *Kubernetes) warmPod(ctx context.Context, spec Spec, net podNet, role, sb, shape string) (*corev1.Pod, error) {
	pod, err := k.podFor(ctx, spec, net)
	if err != nil {
		return nil, err
	}
	for key, v := range map[string]string{labelWarm: warmFree, labelShape: shape, labelSandbox: sb, labelRole: role} {
		pod.Labels[key] = v
	}
	c := &pod.Spec.Containers[0]
	c.Command = []string{BinaryPath, KubernetesInitCommand, "--await", launchDir}
	c.Env, c.WorkingDir = nil, ""
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: launchVolume, MountPath: launchDir})
	if role == roleProxy {
		c.Resources.Requests = corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("10m"),
			corev1.ResourceMemory: resource.MustParse("32Mi"),
		}
	}
	keeper := &pod.Spec.Containers[1]
	keeper.VolumeMounts = []corev1.VolumeMount{{Name: launchVolume, MountPath: launchIn}}
	for _, v := range pod.Spec.InitContainers[0].VolumeMounts {
		// Every volume writable, but the binary's: the claim's files
		// go in through the keeper, with the binary unpacking them.
		keeper.VolumeMounts = append(keeper.VolumeMounts, corev1.VolumeMount{Name: v.Name, MountPath: v.MountPath, ReadOnly: v.Name == binaryVolume(spec)})
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: launchVolume, VolumeSource: corev1.VolumeSource{
		EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: resource.NewQuantity(warmLaunchVolume, resource.BinarySI)},
	}})
	return pod, nil
}

// feedPlaces streams a pool pod's init the binary and an empty place for
// every other mount: a directory, or an empty file the claim writes over in
// place (a subPath mount of a file binds its inode).
func (k *Kubernetes) feedPlaces(ctx context.Context, spec Spec) error {
	p, err := k.pod(ctx, spec.Name)
	if err != nil {
		return err
	}
	for !initRunning(p) {
		if why := stuck(p); why != "" {
			return fmt.Errorf("kubernetes: start %s: %s", spec.Name, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if p, err = k.pod(ctx, spec.Name); err != nil {
			return err
		}
	}
	mounts, err := k.podMounts(spec.Mounts)
	if err != nil {
		return err
	}
	uid, gid, _ := numericUser(spec.User)
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		err := func() error {
			for _, m := range mounts {
				name := m.volume + "/" + m.sub()
				if m.Target == BinaryPath {
					bin, err := os.Open(m.Source)
					if err != nil {
						return err
					}
					defer bin.Close()
					fi, err := bin.Stat()
					if err != nil {
						return err
					}
					if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o555, Size: fi.Size(), Uid: uid, Gid: gid, Typeflag: tar.TypeReg}); err != nil {
						return err
					}
					if _, err := io.Copy(tw, bin); err != nil {
						return err
					}
					continue
				}
				h := &tar.Header{Name: name, Mode: 0o644, Uid: uid, Gid: gid, Typeflag: tar.TypeReg}
				if !m.file {
					h.Name, h.Mode, h.Typeflag = name+"/", 0o755, tar.TypeDir
				}
				if err := tw.WriteHeader(h); err != nil {
					return err
				}
			}
			return tw.Close()
		}()
		pw.CloseWithError(err)
	}()
	if err := k.attachInit(ctx, p.Name, pr); err != nil {
		return fmt.Errorf("kubernetes: copy the binary into %s: %w", spec.Name, err)
	}
	return nil
}

// binaryVolume is the volume of spec's binary mount (its mounts end with
// it, podFor).
func binaryVolume(spec Spec) string {
	for i, m := range spec.Mounts {
		if m.Target == BinaryPath {
			return "m" + strconv.Itoa(i)
		}
	}
	return ""
}

// warmable reports whether a sandbox's agent can be a warm pod: not one
// with mounts kept on a volume claim (a persistent run's), which a pod
// made in advance cannot have.
func warmable(agent Spec) bool {
	return !slices.ContainsFunc(agent.Mounts, func(m Mount) bool { return m.Persist })
}

// claimedAt is when a warm pod was claimed, or zero.
func claimedAt(p *corev1.Pod) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, p.Annotations[annotationClaimedAt])
	return t
}

// isWarmFree reports whether a pod is an unclaimed one of the pool.
func isWarmFree(p *corev1.Pod) bool { return p.Labels[labelWarm] == warmFree }
