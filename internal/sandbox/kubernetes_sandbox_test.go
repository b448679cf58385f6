package sandbox_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// kubeClient is a client of the test cluster of its own, to look at what
// the engine made and to make a pod that is not the engine's.
func kubeClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	path := os.Getenv("KUBECONFIG")
	if path == "" {
		path = testkit.KubernetesConfig
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// policiesEnforced reports whether the test cluster enforces
// NetworkPolicies: scripts/k8s-cluster.sh runs kube-network-policies, so it
// does, unless AIRLOCK_K8S_NETPOL=0 says a cluster without enforcement is
// under test.
func policiesEnforced() bool { return os.Getenv("AIRLOCK_K8S_NETPOL") != "0" }

// TestKubernetesSandbox makes a real sandbox on the cluster: the proxy pod
// with its Secret, the agent pod behind the relay, the policies between
// them. The agent reaches a server on the host through its proxy and
// nothing else; it sees none of the proxy's secrets; what it writes comes
// home, and so does the proxy's audit log.
func TestKubernetesSandbox(t *testing.T) {
	k := kubeEngine(t)
	cs := kubeClient(t)
	ctx := context.Background()
	host, ln := hostServer(t, k)

	// A pod that is not the engine's, listening: the agent must not reach
	// it, though the host does.
	target := kubeTarget(t, cs)

	id := fmt.Sprintf("airlock-k8s-sb-%d", time.Now().UnixNano()%1e8)
	work := t.TempDir()
	os.Chmod(work, 0o777)
	script := strings.Join([]string{
		`http_proxy=http://` + sandbox.AgentProxyAddr + ` busybox wget -q -O- http://` + ln.Addr().String() + `/x`,
		`busybox wget -q -O- http://` + sandbox.AgentAPIAddr + `/healthz && echo healthy`,
		`nc -w 3 ` + strings.ReplaceAll(ln.Addr().String(), ":", " ") + ` </dev/null && echo LEAK-host`,
		`nc -w 3 ` + target + ` 8080 </dev/null && echo LEAK-pod`,
		`env | grep -c s3cr3t-proxy-token; env | grep -c AIRLOCK_CHANNEL_KEY`,
		`ls /airlock/egress 2>&1; cat /airlock/egress/secrets.json 2>&1`,
		`echo from-the-agent > /work/out`,
	}, "\n")
	spec, writeConfig := kubeSandboxSpec(t, id, id+"-proxy", host, "http://"+ln.Addr().String(), script)
	spec.Agent.Mounts = []sandbox.Mount{{Source: work, Target: "/work"}}
	t.Cleanup(func() {
		k.Remove(context.Background(), spec.Agent.Name)
		k.RemoveProxy(context.Background(), spec.Proxy.Name)
	})
	start := time.Now()
	sb, err := k.CreateSandbox(ctx, spec)
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	t.Logf("CreateSandbox took %s", time.Since(start))
	code, err := k.Wait(ctx, sb.Agent)
	var out bytes.Buffer
	k.Logs(ctx, sb.Agent, &out)
	if err != nil || code != 0 {
		t.Fatalf("agent: exit %d, %v; output:\n%s", code, err, out.String())
	}
	t.Logf("agent output:\n%s", out.String())
	for _, want := range []string{"hello from the host\n", "healthy\n", "0\n0\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("agent output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), `"api_headers"`) {
		t.Errorf("the agent read the proxy's secrets:\n%s", out.String())
	}
	if policiesEnforced() {
		for _, leak := range []string{"LEAK-host", "LEAK-pod"} {
			if strings.Contains(out.String(), leak) {
				t.Errorf("the agent reached past its proxy (%s):\n%s", leak, out.String())
			}
		}
	} else {
		t.Log("the cluster does not enforce NetworkPolicies: the agent's reach is not checked")
	}
	if b, _ := os.ReadFile(filepath.Join(work, "out")); string(b) != "from-the-agent\n" {
		t.Errorf("the agent's file on the host = %q", b)
	}
	// The agent's pod names no Secret: not in its volumes, not in its
	// environment.
	pod, err := cs.CoreV1().Pods(testkit.KubernetesNamespace).Get(ctx, sb.Agent, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range pod.Spec.Volumes {
		if v.Secret != nil || v.Projected != nil {
			t.Errorf("the agent's pod has the volume %s from a secret", v.Name)
		}
	}
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		for _, e := range c.Env {
			if e.ValueFrom != nil || strings.Contains(e.Value, "s3cr3t") {
				t.Errorf("the agent's container %s has %s from a secret", c.Name, e.Name)
			}
		}
		if len(c.EnvFrom) > 0 {
			t.Errorf("the agent's container %s takes its environment from elsewhere", c.Name)
		}
	}

	// Its proxy goes, its audit log comes home first; the agent's pod
	// stays, and comes back with a new proxy.
	if err := k.RemoveProxy(ctx, spec.Proxy.Name); err != nil {
		t.Fatalf("RemoveProxy: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(spec.Proxy.ConfigDir, "audit.jsonl")); err != nil || !bytes.Contains(b, []byte(ln.Addr().String())) {
		t.Errorf("the proxy's audit log on the host = %q, %v; want the request to %s", b, err, ln.Addr())
	}
	if _, err := k.Inspect(ctx, spec.Proxy.Name); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("proxy after RemoveProxy: %v, want not found", err)
	}
	if s, err := cs.CoreV1().Secrets(testkit.KubernetesNamespace).List(ctx, metav1.ListOptions{LabelSelector: "airlock.dev/sandbox=" + sb.Agent}); err != nil || len(s.Items) != 0 {
		t.Errorf("after RemoveProxy, the sandbox's secrets: %v, %v", s, err)
	}
	writeConfig()
	start = time.Now()
	if _, err := k.RestartSandbox(ctx, spec); err != nil {
		t.Fatalf("RestartSandbox: %v", err)
	}
	t.Logf("RestartSandbox took %s", time.Since(start))
	if code, err := k.Wait(ctx, sb.Agent); err != nil || code != 0 {
		out.Reset()
		k.Logs(ctx, sb.Agent, &out)
		t.Fatalf("restarted agent: exit %d, %v; output:\n%s", code, err, out.String())
	}

	// A sandbox whose agent cannot be made leaves nothing behind.
	bad := spec
	bad.Agent.Name, bad.Proxy.Name = id+"-bad", id+"-bad-proxy"
	bad.AgentReady = func(context.Context) error { return errors.New("the caller gave up") }
	if _, err := k.CreateSandbox(ctx, bad); err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("CreateSandbox whose AgentReady fails: %v", err)
	}
	for _, name := range []string{bad.Agent.Name, bad.Proxy.Name} {
		if _, err := k.Inspect(ctx, name); !errors.Is(err, sandbox.ErrNotFound) {
			t.Errorf("a failed CreateSandbox left %s: %v", name, err)
		}
	}
	sel := metav1.ListOptions{LabelSelector: "airlock.dev/sandbox=" + bad.Agent.Name}
	if s, err := cs.CoreV1().Secrets(testkit.KubernetesNamespace).List(ctx, sel); err != nil || len(s.Items) != 0 {
		t.Errorf("a failed CreateSandbox left secrets: %v, %v", len(s.Items), err)
	}
	if p, err := cs.NetworkingV1().NetworkPolicies(testkit.KubernetesNamespace).List(ctx, sel); err != nil || len(p.Items) != 0 {
		t.Errorf("a failed CreateSandbox left policies: %v, %v", len(p.Items), err)
	}
}

// nodeHost is the node's address, where the pods reach this machine.
func nodeHost(t *testing.T, k *sandbox.Kubernetes) string {
	t.Helper()
	probe, err := k.NetworkProbe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := net.SplitHostPort(probe)
	return host
}

// hostServer serves "hello from the host" on the node's address, for the
// pods to reach (through their proxy), and returns the address and its
// listener.
func hostServer(t *testing.T, k *sandbox.Kubernetes) (string, net.Listener) {
	t.Helper()
	host := nodeHost(t, k)
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the host\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return host, ln
}

// kubeTarget runs a pod that is not airlock's, listening on 8080, and
// returns its address once the host reaches it.
func kubeTarget(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("airlock-k8s-target-%d", time.Now().UnixNano()%1e8)
	no, yes := false, true
	uid := int64(4242)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever, AutomountServiceAccountToken: &no,
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "listen", Image: sandboxtest.Image, ImagePullPolicy: corev1.PullNever,
				Command: []string{"sh", "-c", "while :; do echo hi | nc -l -p 8080; done"},
				SecurityContext: &corev1.SecurityContext{RunAsUser: &uid, RunAsGroup: &uid, RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
	if _, err := cs.CoreV1().Pods(testkit.KubernetesNamespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		cs.CoreV1().Pods(testkit.KubernetesNamespace).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := cs.CoreV1().Pods(testkit.KubernetesNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.Status.PodIP != "" && p.Status.Phase == corev1.PodRunning {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(p.Status.PodIP, "8080"), time.Second)
			if err == nil {
				c.Close()
				return p.Status.PodIP
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the target pod never answered: %+v", p.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubeSandboxSpec is a sandbox whose agent runs script, and a function
// that writes its proxy's configuration again (the proxy deletes its
// secrets once read, so each start needs them).
func kubeSandboxSpec(t *testing.T, agent, proxy, host, api, script string) (sandbox.SandboxSpec, func()) {
	t.Helper()
	const uid, gid = 4242, 4343
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	egDir := filepath.Join(dir, "egress")
	os.Mkdir(egDir, 0o700)
	cfg := egress.SidecarConfig{
		Mode: "open", AllowCIDRs: []string{host + "/32"},
		ProxySocket: sandbox.ProxySocket, APISocket: sandbox.APISocket,
		AuditLog: sandbox.ProxyConfigDir + "/audit.jsonl", APIUpstream: api,
		SecretsFile: sandbox.ProxyConfigDir + "/secrets.json",
	}
	writeConfig := func() {
		secrets := egress.SidecarSecrets{APIHeaders: map[string]string{"x-api-key": "s3cr3t-api-key"}}
		for name, v := range map[string]any{"config.json": cfg, "secrets.json": secrets} {
			data, _ := json.Marshal(v)
			p := filepath.Join(egDir, name)
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
			os.Chown(p, uid, gid)
		}
	}
	writeConfig()
	os.Chown(egDir, uid, gid)
	return sandbox.SandboxSpec{
		Agent: sandbox.Spec{
			Name: agent, Image: sandboxtest.Image, User: fmt.Sprintf("%d:%d", uid, gid),
			Cmd: []string{"sh", "-c", script},
		},
		Proxy: sandbox.ProxySpec{
			Name: proxy, User: fmt.Sprintf("%d:%d", uid, gid), ConfigDir: egDir,
			Env: []string{"HOME=/tmp", "PROXY_TOKEN=s3cr3t-proxy-token"}, Labels: map[string]string{"airlock.role": "proxy"},
		},
		Binary: staticAirlock(t),
		Dir:    dir,
	}, writeConfig
}

// TestKubernetesHandProxyFile hands a running proxy pod a file, as run
// does refreshed cloud credentials: it appears whole in the proxy's
// configuration directory, as the proxy's user and readable by it alone,
// replacing even a link there; only the files the sandbox was made to be
// handed may be. Neither the file nor a half-written one ever comes home
// with the syncs of that directory, nor does a stale copy on the host go
// into the pod.
func TestKubernetesHandProxyFile(t *testing.T) {
	k := kubeEngine(t)
	cs := kubeClient(t)
	ctx := context.Background()
	id := fmt.Sprintf("airlock-k8s-hand-%d", time.Now().UnixNano()%1e8)
	spec, _ := kubeSandboxSpec(t, id, id+"-proxy", "127.0.0.1", "http://127.0.0.1:9", "sleep 300")
	spec.Proxy.Handed = []string{"credentials.json"}
	// A copy left on the host (by an older airlock) is not the proxy's.
	stale := filepath.Join(spec.Proxy.ConfigDir, "credentials.json")
	if err := os.WriteFile(stale, []byte(`{"bearer":"stale-host-token"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		k.Remove(context.Background(), spec.Agent.Name)
		k.RemoveProxy(context.Background(), spec.Proxy.Name)
	})
	sb, err := k.CreateSandbox(ctx, spec)
	if err != nil {
		t.Fatalf("CreateSandbox: %v", err)
	}
	inProxy := func(script string) string {
		t.Helper()
		var out bytes.Buffer
		code, err := k.Exec(ctx, sb.Proxy, sandbox.ExecSpec{Cmd: []string{"sh", "-c", script}, Stdout: &out, Stderr: &out})
		if err != nil || code != 0 {
			t.Fatalf("%s in the proxy: exit %d, %v\n%s", script, code, err, out.String())
		}
		return out.String()
	}
	// readProxy is inProxy for a script whose output always ends with
	// end, whatever the proxy's files, read again if it does not: under
	// load containerd 1.6 loses an exec's output now and then ("Failed to
	// pipe stdout for container exec"). The empty reads this test saw on
	// CI were the engine's own race (TestKubernetesExecer); each retry is
	// logged.
	readProxy := func(script, end string) string {
		t.Helper()
		got := ""
		for try := range 5 {
			if got = inProxy(script); strings.Contains(got, end) {
				return got
			}
			t.Logf("try %d: %q lacks %q: read again", try+1, got, end)
			time.Sleep(time.Second)
		}
		return got
	}
	secret, err := cs.CoreV1().Secrets(testkit.KubernetesNamespace).Get(ctx, sb.Proxy, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for key := range secret.Data {
		if strings.Contains(key, "credentials") {
			t.Errorf("the proxy's Secret has %s, the host's stale copy", key)
		}
	}
	if got := readProxy(`ls -a /airlock/egress; echo end`, "end"); strings.Contains(got, "credentials.json") {
		t.Errorf("the host's stale credentials.json went into the proxy pod:\n%s", got)
	}

	for _, bad := range []struct{ name, why string }{
		{"secrets.json", "not made to be handed"},
		{"../credentials.json", "not made to be handed"},
	} {
		if err := k.HandProxyFile(ctx, sb.Proxy, bad.name, []byte("x")); err == nil || !strings.Contains(err.Error(), bad.why) {
			t.Errorf("HandProxyFile(%q) = %v, want %q", bad.name, err, bad.why)
		}
	}
	if err := k.HandProxyFile(ctx, sb.Proxy, "credentials.json", bytes.Repeat([]byte("x"), 2<<20)); err == nil || !strings.Contains(err.Error(), "over") {
		t.Errorf("HandProxyFile of 2 MiB = %v, want it refused", err)
	}

	// A link at the name (the pod's, not the sandbox's to make: defence
	// in depth) is replaced, not followed.
	inProxy(`ln -s /tmp/followed /airlock/egress/credentials.json`)
	const token = `{"bearer":"handed-token-AbCdEf"}`
	if err := k.HandProxyFile(ctx, sb.Proxy, "credentials.json", []byte(token)); err != nil {
		t.Fatalf("HandProxyFile: %v", err)
	}
	got := readProxy(`stat -c '%F %a %u' /airlock/egress/credentials.json; cat /airlock/egress/credentials.json; echo; ls -a /airlock/egress /tmp`, "/tmp:")
	if !strings.HasPrefix(got, "regular file 600 4242\n"+token+"\n") {
		t.Errorf("the handed file in the proxy pod:\n%s", got)
	}
	if strings.Contains(got, "followed") || strings.Contains(got, ".airlock-handed-") {
		t.Errorf("the handed file went through the link, or its temporary name stayed:\n%s", got)
	}
	// The sandbox (the agent's pod) has no way to it.
	var look bytes.Buffer
	for try := 0; try < 3 && !strings.Contains(look.String(), ".."); try++ { // output lost: as readProxy
		look.Reset()
		if _, err := k.Exec(ctx, sb.Agent, sandbox.ExecSpec{Cmd: []string{"sh", "-c", "grep -rl handed-token /airlock /tmp /work /etc /home /root 2>/dev/null; ls -a /airlock"}, Stdout: &look, Stderr: &look}); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(look.String(), "..") || strings.Contains(look.String(), "/") || strings.Contains(look.String(), "credentials") {
		t.Errorf("the agent's pod sees the handed file:\n%s", look.String())
	}

	// The syncs of the proxy's directory bring its files home, never the
	// handed one nor a half-written one; the host's own is left alone.
	inProxy(`echo '{"bearer":"half-written"}' > /airlock/egress/.airlock-handed-0123456789abcdef; echo '{"n":1}' > /airlock/egress/meter.json`)
	if err := k.SyncMounts(ctx, sb.Proxy, []string{sandbox.ProxyConfigDir}); err != nil {
		t.Fatalf("SyncMounts: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(spec.Proxy.ConfigDir, "meter.json")); err != nil || string(b) != "{\"n\":1}\n" {
		t.Errorf("the proxy's meter did not come home: %q, %v", b, err)
	}
	ents, _ := os.ReadDir(spec.Proxy.ConfigDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".airlock-handed-") {
			t.Errorf("a sync brought %s home", e.Name())
		}
	}
	filepath.Walk(spec.Proxy.ConfigDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte("handed-token")) || bytes.Contains(b, []byte("half-written")) {
				t.Errorf("a sync brought the handed credentials home: %s has them", p)
			}
		}
		return nil
	})
	if b, err := os.ReadFile(stale); err != nil || !bytes.Contains(b, []byte("stale-host-token")) {
		t.Errorf("the host's own credentials.json after a sync: %q, %v", b, err)
	}
	// Taken up by the proxy (removed): a sync does not bring it back.
	inProxy(`rm /airlock/egress/credentials.json`)
	os.Remove(stale)
	if err := k.SyncMounts(ctx, sb.Proxy, []string{sandbox.ProxyConfigDir}); err != nil {
		t.Fatalf("SyncMounts: %v", err)
	}
	if got := readProxy(`ls -a /airlock/egress; echo end`, "end"); strings.Contains(got, "credentials.json") {
		t.Errorf("credentials.json is back in the proxy pod after a sync:\n%s", got)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("credentials.json on the host after the proxy took it up: %v", err)
	}
}

// TestKubernetesDialPort reaches a server on a pod's port through the API
// server's portforward (run -p), a connection at a time; a port nobody
// listens on is an error on that connection, not a hang.
func TestKubernetesDialPort(t *testing.T) {
	k := kubeEngine(t)
	ctx := context.Background()
	name := fmt.Sprintf("airlock-k8s-port-%d", time.Now().UnixNano()%1e8)
	t.Cleanup(func() { k.Remove(context.Background(), name) })
	id, err := k.Create(ctx, sandbox.Spec{
		Name: name, Image: sandboxtest.Image, User: "4242:4343",
		Cmd: []string{"sh", "-c", `while :; do echo served-from-the-pod | nc -l -p 8000; done`},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	read := func(port int) (string, error) {
		c, err := k.DialPort(ctx, id, port)
		if err != nil {
			return "", err
		}
		defer c.Close()
		done := make(chan struct{})
		var b []byte
		go func() { b, err = io.ReadAll(c); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			c.Close()
			<-done
			return string(b), errors.New("no end within 20 s")
		}
		return string(b), err
	}
	// nc serves one connection and is started again: a connection in
	// between is refused, and tried again.
	served := func(within time.Duration) (string, error) {
		var got string
		var err error
		for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
			if got, err = read(8000); strings.Contains(got, "served-from-the-pod") || time.Now().After(deadline) {
				return got, err
			}
		}
	}
	for i, within := range []time.Duration{30 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second} {
		if got, err := served(within); !strings.Contains(got, "served-from-the-pod") {
			t.Fatalf("connection %d to port 8000 of the pod: %q, %v", i+1, got, err)
		}
	}
	if got, err := read(8001); err == nil || got != "" {
		t.Errorf("port 8001, where nothing listens: %q, %v; want an error", got, err)
	} else {
		t.Logf("port 8001: %v", err)
	}
}
