package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/remotecommand"
)

// On Kubernetes a sandbox is two pods. The proxy pod runs `airlock proxy
// serve` with its channel on TCP (the ports of AgentProxyAddr and
// AgentAPIAddr), admitting only connections that open with the sandbox's
// channel key; its configuration's files are in a Secret only it mounts,
// and what it writes (meter, audit log) is in a volume copied back to
// ProxySpec.ConfigDir (SyncMounts, RemoveProxy). The agent pod runs the
// relay in front of the agent's command, carrying its loopback ports to
// the proxy pod's address. Two NetworkPolicies besides the engine's
// deny-all one: the agent may reach its proxy's two ports and nothing else;
// the proxy may be reached by its agent alone, and may reach anything but
// the cluster (pod and service ranges) and the metadata address.
const (
	// channelKeyEnv is the environment variable of the channel's key, in
	// the relay and the proxy (egress.ChannelKeyEnv).
	channelKeyEnv = "AIRLOCK_CHANNEL_KEY"
	// annotationSecretFiles lists, per volume, the files that are neither
	// copied in nor back: those that come from the Secret, and those the
	// host hands the running proxy (annotationHandedFiles).
	annotationSecretFiles = "airlock.dev/secret-files"
	// annotationHandedFiles lists the files of the proxy's configuration
	// directory the host may hand it while it runs (ProxySpec.Handed).
	annotationHandedFiles = "airlock.dev/handed-files"
	// labelOwner marks the Secrets and NetworkPolicies of one pod, which
	// Remove deletes with it.
	labelOwner = "airlock.dev/pod"
	// annotationOwner is, on those Secrets and NetworkPolicies, the name
	// and labels of the container they were made for: what remains of a
	// pod deleted behind airlock's back is still known as whose
	// (Remnants).
	annotationOwner = "airlock.dev/owner"

	metadataCIDR = "169.254.169.254/32"
)

// KubernetesDefaultClusterCIDRs are the ranges a proxy may not reach when
// the cluster's own are not given: every private range clusters use.
func KubernetesDefaultClusterCIDRs() []string {
	return []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"}
}

func (k *Kubernetes) ports() (proxy, api int32) {
	_, p, _ := net.SplitHostPort(AgentProxyAddr)
	_, a, _ := net.SplitHostPort(AgentAPIAddr)
	pp, _ := strconv.Atoi(p)
	ap, _ := strconv.Atoi(a)
	return int32(pp), int32(ap)
}

// CreateSandbox makes the proxy pod, then, once it has an address, the
// agent pod (AgentReady between its creation and its start) while the
// proxy's files go in, and returns when the proxy listens and the agent
// runs. Whatever it made is removed
// again if a step fails.
func (k *Kubernetes) CreateSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	if err := k.checkSandbox(ctx, spec); err != nil {
		return Sandbox{}, err
	}
	if k.opts.Warm > 0 {
		if sb, ok, err := k.claimWarm(ctx, spec); ok {
			return sb, err
		}
	}
	undo := func() {
		ctx := context.WithoutCancel(ctx)
		k.Remove(ctx, spec.Agent.Name)
		k.RemoveProxy(ctx, spec.Proxy.Name)
	}
	key, err := channelKey()
	if err != nil {
		return Sandbox{}, err
	}
	proxy, ip, err := k.launchProxy(ctx, spec, key)
	if err != nil {
		undo()
		return Sandbox{}, err
	}
	ready := make(chan error, 1)
	go func() { ready <- k.startProxy(ctx, spec.Proxy.Name) }()
	agent, err := k.createAgent(ctx, spec, ip, key)
	if err == nil {
		err = spec.agentReady(ctx)
	}
	if err == nil {
		err = k.Start(ctx, agent)
	}
	perr := <-ready
	if err == nil && k.doneFirst(ctx, perr, agent) {
		perr = nil
	}
	if err == nil {
		err = perr
	}
	if err != nil {
		undo()
		return Sandbox{}, err
	}
	return Sandbox{Agent: agent, Proxy: proxy}, nil
}

// doneFirst reports whether the proxy's start failed only because the
// agent was done before the proxy was seen listening (a setup command that
// failed at once, a short command, a slow node): the relay's lifeline ended
// the proxy, as at the end of every run.
func (k *Kubernetes) doneFirst(ctx context.Context, perr error, agent string) bool {
	var exited *proxyExitedError
	return errors.As(perr, &exited) && exited.code == 0 && k.ended(ctx, agent)
}

// ended reports whether the agent's command is seen to have ended within
// agentEndGrace.
func (k *Kubernetes) ended(ctx context.Context, id string) bool {
	ctx, cancel := context.WithTimeout(ctx, agentEndGrace)
	defer cancel()
	return k.waitAgent(ctx, id, func(st *corev1.ContainerStatus) bool { return st.State.Terminated != nil }) == nil
}

// RestartSandbox makes a new proxy, then the agent's pod again from its
// spec, pointed at the new proxy (a pod's containers cannot start twice;
// its writable mounts were copied back when it ended, and go in again, but
// those on its claim: the new pod mounts the claim as the old one left it).
func (k *Kubernetes) RestartSandbox(ctx context.Context, spec SandboxSpec) (Sandbox, error) {
	old, err := k.pod(ctx, spec.Agent.Name)
	if err != nil {
		return Sandbox{}, err
	}
	agentSpec, err := specOf(old)
	if err != nil {
		return Sandbox{}, err
	}
	if cs := agentStatus(old); cs != nil && cs.State.Running != nil {
		return Sandbox{}, fmt.Errorf("kubernetes: restart %s: it is running", spec.Agent.Name)
	}
	if err := k.SyncMounts(ctx, old.Name, copiedIn(agentSpec)); err != nil {
		return Sandbox{}, err
	}
	// What the old pod left is home; the caller finishes the copy the
	// new pod starts from (SandboxSpec.AgentReady).
	if err := spec.agentReady(ctx); err != nil {
		return Sandbox{}, err
	}
	key, err := channelKey()
	if err != nil {
		return Sandbox{}, err
	}
	restart := spec
	restart.Agent = agentSpec
	restart.Agent.Cmd = unrelayed(agentSpec.Cmd)
	// createAgent adds the binary again.
	restart.Agent.Mounts = slices.DeleteFunc(slices.Clone(agentSpec.Mounts), func(m Mount) bool { return m.Target == BinaryPath })
	restart.AgentReady = nil
	if restart.Agent.Cmd == nil {
		return Sandbox{}, fmt.Errorf("kubernetes: restart %s: its command has no relay: it is not a sandbox's agent", spec.Agent.Name)
	}
	proxy, ip, err := k.launchProxy(ctx, restart, key)
	if err != nil {
		k.RemoveProxy(context.WithoutCancel(ctx), spec.Proxy.Name)
		return Sandbox{}, err
	}
	ready := make(chan error, 1)
	go func() { ready <- k.startProxy(ctx, spec.Proxy.Name) }()
	// The claim stays: the new pod mounts it.
	var agent string
	if err = k.removePod(ctx, old.Name); err == nil {
		if agent, err = k.createAgent(ctx, restart, ip, key); err == nil {
			err = k.Start(ctx, agent)
		}
	}
	if perr := <-ready; err == nil && !k.doneFirst(ctx, perr, agent) {
		err = perr
	}
	if err != nil {
		k.RemoveProxy(context.WithoutCancel(ctx), spec.Proxy.Name)
		return Sandbox{}, err
	}
	return Sandbox{Agent: podName(spec.Agent.Name), Proxy: proxy}, nil
}

// unrelayed is the agent's own command behind the relay of cmd, with the
// relay's other flags, so the relay can be made again for a new proxy; nil
// if cmd is not a relay's.
func unrelayed(cmd []string) []string {
	if len(cmd) < 2 || cmd[0] != BinaryPath || cmd[1] != "relay" {
		return nil
	}
	i := slices.Index(cmd, "--")
	if i < 0 {
		return nil
	}
	return cmd[i+1:]
}

// RemoveProxy copies what the proxy wrote (meter, audit log) back to its
// configuration directory, then removes the proxy pod, its Secret and its
// policy; a missing proxy is not an error.
func (k *Kubernetes) RemoveProxy(ctx context.Context, name string) error {
	var serr error
	if _, err := k.pod(ctx, name); err == nil {
		serr = k.SyncMounts(ctx, name, nil)
	}
	if err := k.Remove(ctx, name); err != nil {
		return err
	}
	return serr
}

// checkSandbox refuses what a sandbox on Kubernetes cannot have.
func (k *Kubernetes) checkSandbox(ctx context.Context, spec SandboxSpec) error {
	if spec.Proxy.Network != "" {
		return fmt.Errorf("kubernetes: egress network %q: a proxy pod is on the pod network, with a NetworkPolicy; leave egress.network empty: %w", spec.Proxy.Network, ErrUnsupported)
	}
	if len(spec.Proxy.Mounts) > 0 {
		return fmt.Errorf("kubernetes: the proxy cannot reach host paths such as %s (ssh-agent forwarding) from a cluster: %w", spec.Proxy.Mounts[0].Source, ErrUnsupported)
	}
	for _, n := range spec.Proxy.Handed {
		if n == "" || n == "." || n == ".." || strings.ContainsRune(n, '/') || strings.HasPrefix(n, handedTempPrefix) {
			return fmt.Errorf("kubernetes: the proxy's handed file %q is not a file name", n)
		}
	}
	if spec.Binary == "" {
		return errors.New("kubernetes: no airlock binary for the sandbox")
	}
	if err := k.checkImage(ctx, spec.Agent.Image); err != nil {
		return err
	}
	return k.ensureDenyAll(ctx)
}

func channelKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("kubernetes: make the channel key: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// sandboxLabel names a sandbox in its pods' and policies' labels: its
// agent's pod name.
func sandboxLabel(spec SandboxSpec) string { return podName(spec.Agent.Name) }

// launchProxy makes the proxy's Secret, policy and pod, and returns its
// pod name and address once it has one, without starting it (startProxy).
func (k *Kubernetes) launchProxy(ctx context.Context, spec SandboxSpec, key string) (string, string, error) {
	p := spec.Proxy
	if err := k.Remove(ctx, p.Name); err != nil {
		return "", "", err
	}
	name := podName(p.Name)
	sb := sandboxLabel(spec)
	secretFiles, data, err := proxySecret(p, key)
	if err != nil {
		return "", "", err
	}
	owner, err := ownedBy(Spec{Name: p.Name, Labels: p.Labels}, sb)
	if err != nil {
		return "", "", err
	}
	secret := &corev1.Secret{ObjectMeta: owner, Data: data}
	if err := k.api.secrets(k.ns).create(ctx, secret, &corev1.Secret{}); err != nil {
		return "", "", k.apiError("create the proxy's secret "+name, err)
	}
	if err := k.createPolicy(ctx, k.proxyPolicy(owner, sb)); err != nil {
		return "", "", err
	}
	pspec := k.proxySpec(spec)
	pod, err := k.podFor(ctx, pspec, podNetProxy)
	if err != nil {
		return "", "", err
	}
	pod.Labels[labelSandbox], pod.Labels[labelRole] = sb, roleProxy
	// The proxy mostly waits on the network: it reserves little of a node,
	// within its limits.
	pod.Spec.Containers[0].Resources.Requests = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("32Mi"),
	}
	// The configuration's files from the Secret, each over its name in the
	// writable configuration volume (m1); the environment from it too.
	const cfgVolume = "m1"
	pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: "secret", VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: name, DefaultMode: ptr(int32(0o440))},
	}})
	c := &pod.Spec.Containers[0]
	for _, f := range secretFiles {
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{
			Name: "secret", MountPath: ProxyConfigDir + "/" + f, SubPath: secretFileKey(f), ReadOnly: true,
		})
	}
	for _, e := range append(slices.Clone(p.Env), channelKeyEnv+"="+key) {
		n, _, _ := strings.Cut(e, "=")
		c.Env = append(c.Env, corev1.EnvVar{Name: n, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: secretEnvKey(n)},
		}})
	}
	// Neither the Secret's files nor those handed to the running proxy
	// (credentials it removes once read) travel with the copies.
	skip, _ := json.Marshal(map[string][]string{cfgVolume: append(slices.Clone(secretFiles), p.Handed...)})
	pod.Annotations[annotationSecretFiles] = string(skip)
	handed, _ := json.Marshal(p.Handed)
	pod.Annotations[annotationHandedFiles] = string(handed)
	// The Secret's files are root's, readable by the pod's fsGroup, the
	// proxy's group.
	if _, err := k.createPod(ctx, p.Name, pod); err != nil {
		return "", "", err
	}
	ip, err := k.podIP(ctx, name)
	if err != nil {
		return "", "", err
	}
	return name, ip, nil
}

// HandProxyFile writes data to the running proxy's configuration
// directory as name, one of the files its sandbox was made to be handed
// (ProxySpec.Handed), through exec of the pod's init in the proxy's
// container, as its user: the bytes travel on the exec's standard input,
// never in a command line. Syncs never copy the file (nor its temporary
// name) home, and the proxy removes it once read, so it is on no disk but
// the proxy pod's volume, and there until the proxy takes it up.
func (k *Kubernetes) HandProxyFile(ctx context.Context, proxy, name string, data []byte) error {
	if len(data) > maxHandedFile {
		return fmt.Errorf("kubernetes: hand %s to %s: over %d KiB", name, proxy, maxHandedFile>>10)
	}
	p, err := k.pod(ctx, proxy)
	if err != nil {
		return err
	}
	var handed []string
	json.Unmarshal([]byte(p.Annotations[annotationHandedFiles]), &handed)
	if !slices.Contains(handed, name) {
		return fmt.Errorf("kubernetes: hand %s to %s: its proxy was not made to be handed that file", name, proxy)
	}
	var out bytes.Buffer
	code, err := k.execIn(ctx, p.Name, agentContainer, []string{BinaryPath, KubernetesInitCommand, "put", ProxyConfigDir, name, strconv.Itoa(len(data))},
		remotecommand.StreamOptions{Stdin: bytes.NewReader(data), Stdout: &out, Stderr: &out})
	if err == nil && code != 0 {
		err = fmt.Errorf("exit %d: %s", code, strings.TrimSpace(out.String()))
	}
	if err != nil {
		return fmt.Errorf("kubernetes: hand %s to %s: %w", name, proxy, err)
	}
	return nil
}

// startProxy streams a launched proxy's files in and waits until it
// listens; meanwhile the agent's pod is made and started.
func (k *Kubernetes) startProxy(ctx context.Context, name string) error {
	if err := k.Start(ctx, name); err != nil {
		return fmt.Errorf("egress proxy %s: %w", name, err)
	}
	return k.awaitProxy(ctx, name)
}

// proxySecret is the proxy's Secret: every file of its configuration
// directory but those it writes itself (audit log, meter) and those handed
// to it while it runs, and its environment with the channel key.
func proxySecret(p ProxySpec, key string) ([]string, map[string][]byte, error) {
	var written struct {
		AuditLog  string `json:"audit_log"`
		MeterFile string `json:"meter_file"`
	}
	cfg, err := os.ReadFile(filepath.Join(p.ConfigDir, "config.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: the proxy's configuration: %w", err)
	}
	if err := json.Unmarshal(cfg, &written); err != nil {
		return nil, nil, fmt.Errorf("kubernetes: the proxy's configuration: %w", err)
	}
	ents, err := os.ReadDir(p.ConfigDir)
	if err != nil {
		return nil, nil, fmt.Errorf("kubernetes: the proxy's configuration: %w", err)
	}
	data := map[string][]byte{}
	var files []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || n == filepath.Base(written.AuditLog) || n == filepath.Base(written.MeterFile) || slices.Contains(p.Handed, n) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.ConfigDir, n))
		if err != nil {
			return nil, nil, fmt.Errorf("kubernetes: the proxy's configuration: %w", err)
		}
		files = append(files, n)
		data[secretFileKey(n)] = b
	}
	for _, e := range append(slices.Clone(p.Env), channelKeyEnv+"="+key) {
		n, v, _ := strings.Cut(e, "=")
		data[secretEnvKey(n)] = []byte(v)
	}
	return files, data, nil
}

// Secret keys may hold [-._a-zA-Z0-9]; file and variable names are kept
// apart by their prefix, and anything else in them is hex-escaped.
func secretFileKey(name string) string { return "file." + secretKey(name) }
func secretEnvKey(name string) string  { return "env." + secretKey(name) }

func secretKey(s string) string {
	var b strings.Builder
	for _, r := range []byte(s) {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			b.WriteByte(r)
		} else {
			fmt.Fprintf(&b, "_%02x", r)
		}
	}
	return b.String()
}

// podIP waits until the pod has an address.
func (k *Kubernetes) podIP(ctx context.Context, name string) (string, error) {
	for {
		p, err := k.pod(ctx, name)
		if err != nil {
			return "", err
		}
		if p.Status.PodIP != "" {
			return p.Status.PodIP, nil
		}
		if why := stuck(p); why != "" {
			return "", fmt.Errorf("kubernetes: %s cannot run: %s", name, why)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// listening is true in a container whose network namespace has a TCP
// listener on port $1 (hex); /proc/net is the pod's.
const listening = `grep -qiE ":$1 [0:]+ 0A" /proc/net/tcp /proc/net/tcp6 2>/dev/null`

// awaitProxy waits until the proxy listens on its channel's ports, or says
// why it will not (it ended: its log then says why).
func (k *Kubernetes) awaitProxy(ctx context.Context, name string) error {
	proxyPort, apiPort := k.ports()
	deadline := time.Now().Add(proxyHealthy)
	for {
		p, err := k.pod(ctx, name)
		if err != nil {
			return err
		}
		if cs := agentStatus(p); cs != nil && cs.State.Terminated != nil {
			var out bytes.Buffer
			k.Logs(ctx, name, &out)
			return fmt.Errorf("egress proxy %s: %w", name, &proxyExitedError{code: int(cs.State.Terminated.ExitCode), output: strings.TrimSpace(out.String())})
		} else if cs != nil && cs.State.Running != nil {
			ok := true
			for _, port := range []int32{proxyPort, apiPort} {
				code, err := k.execIn(ctx, name, keeperContainer, []string{"sh", "-c", listening, "sh", fmt.Sprintf("%04X", port)}, remotecommand.StreamOptions{Stdout: io.Discard})
				if err != nil || code != 0 {
					ok = false
					break
				}
			}
			if ok {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("egress proxy %s: it did not listen within %s", name, proxyHealthy)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// createAgent makes the agent's pod and its policy: the relay in front of
// its command carries its loopback ports to the proxy at ip.
func (k *Kubernetes) createAgent(ctx context.Context, spec SandboxSpec, ip, key string) (string, error) {
	agent := k.relayed(spec, ip, key)
	pod, err := k.podFor(ctx, agent, podNetNone)
	if err != nil {
		return "", err
	}
	sb := sandboxLabel(spec)
	pod.Labels[labelSandbox], pod.Labels[labelRole] = sb, roleAgent
	c := &pod.Spec.Containers[0]
	c.Env = append(c.Env, corev1.EnvVar{Name: channelKeyEnv, Value: key})
	// The proxy's spec, for the warm pool's pairs of this shape
	// (Prewarm): the proxy's pod may be gone by then.
	pspec, err := json.Marshal(k.proxySpec(spec))
	if err != nil {
		return "", err
	}
	pod.Annotations[annotationProxySpec] = string(pspec)
	owner, err := ownedBy(agent, sb)
	if err != nil {
		return "", err
	}
	if err := k.createPolicy(ctx, k.agentPolicy(owner, sb)); err != nil {
		return "", err
	}
	if err := k.claimFor(ctx, pod, agent, sb); err != nil {
		return "", err
	}
	return k.createPod(ctx, agent.Name, pod)
}

// relayed is the agent's spec with the relay in front of its command,
// carrying its loopback ports to the proxy at ip, and the binary mounted.
func (k *Kubernetes) relayed(spec SandboxSpec, ip, key string) Spec {
	agent := spec.Agent
	proxyPort, apiPort := k.ports()
	target := func(port int32) string { return "tcp:" + net.JoinHostPort(ip, strconv.Itoa(int(port))) }
	relay := []string{BinaryPath, "relay",
		"--listen", AgentProxyAddr + "=" + target(proxyPort),
		"--listen", AgentAPIAddr + "=" + target(apiPort)}
	agent.Cmd = append(append(append(relay, spec.RelayFlags...), "--"), agent.Cmd...)
	agent.Mounts = append(slices.Clone(agent.Mounts), Mount{Source: spec.Binary, Target: BinaryPath, ReadOnly: true})
	return agent
}

// ownedBy is the metadata of an object made for the pod of spec alone, in
// sandbox sb: named and labelled after the pod (Remove deletes it with the
// pod), and annotated with the container's name and labels.
func ownedBy(spec Spec, sb string) (metav1.ObjectMeta, error) {
	name := podName(spec.Name)
	own, err := json.Marshal(madeFor{Name: spec.Name, Labels: spec.Labels})
	if err != nil {
		return metav1.ObjectMeta{}, err
	}
	return metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{labelManaged: "true", labelSandbox: sb, labelOwner: name},
		Annotations: map[string]string{annotationOwner: string(own)},
	}, nil
}

// madeFor is the container an object was made for (annotationOwner).
type madeFor struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

func (k *Kubernetes) createPolicy(ctx context.Context, pol *networkingv1.NetworkPolicy) error {
	err := k.api.policies(k.ns).create(ctx, pol, &networkingv1.NetworkPolicy{})
	if apierrors.IsAlreadyExists(err) {
		// Left by an earlier leg: replace it.
		if err = k.api.policies(k.ns).delete(ctx, pol.Name, &metav1.DeleteOptions{}); err == nil {
			err = k.api.policies(k.ns).create(ctx, pol, &networkingv1.NetworkPolicy{})
		}
	}
	if err != nil {
		return k.apiError("create the network policy "+pol.Name, err)
	}
	return nil
}

func (k *Kubernetes) channelPorts() []networkingv1.NetworkPolicyPort {
	tcp := corev1.ProtocolTCP
	proxyPort, apiPort := k.ports()
	return []networkingv1.NetworkPolicyPort{
		{Protocol: &tcp, Port: ptr(intstr.FromInt32(proxyPort))},
		{Protocol: &tcp, Port: ptr(intstr.FromInt32(apiPort))},
	}
}

// agentPolicy: the agent reaches its proxy's channel and nothing else;
// nothing reaches it.
func (k *Kubernetes) agentPolicy(owner metav1.ObjectMeta, sb string) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		ObjectMeta: owner,
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{labelSandbox: sb, labelRole: roleAgent}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{labelSandbox: sb, labelRole: roleProxy}}}},
				Ports: k.channelPorts(),
			}},
		},
	}
}

// proxyPolicy: only its agent reaches the proxy, on the channel's ports;
// the proxy reaches anything but the cluster and the metadata address.
func (k *Kubernetes) proxyPolicy(owner metav1.ObjectMeta, sb string) *networkingv1.NetworkPolicy {
	except := k.opts.ClusterCIDRs
	if len(except) == 0 {
		except = KubernetesDefaultClusterCIDRs()
	}
	except = append(slices.Clone(except), metadataCIDR)
	return &networkingv1.NetworkPolicy{
		ObjectMeta: owner,
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{labelSandbox: sb, labelRole: roleProxy}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: map[string]string{labelSandbox: sb, labelRole: roleAgent}}}},
				Ports: k.channelPorts(),
			}},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: except}}},
			}},
		},
	}
}
