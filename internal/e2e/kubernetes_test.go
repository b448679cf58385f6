package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// The Kubernetes e2e runs on the single-node cluster scripts/k8s-cluster.sh
// brings up (make test does): pods reach the host, and so the scripted
// model server, at the node's address.
const (
	kubeconfigPath = "/var/lib/airlock-k8s/kubeconfig"
	kubeNamespace  = "airlock"
	kubeScript     = "scripts/k8s-cluster.sh"
	// kubectlPath is the test cluster's own kubectl, for the tests' looks
	// and set-up (airlock itself never runs kubectl).
	kubectlPath = "/var/cache/airlock-k8s/v1.33.13/bin/kubectl"
)

var kubeShared struct {
	once    sync.Once
	ref     string
	err     error
	skipWhy string
}

// kubeEngine is the test's own look at the cluster.
type kubeEngine struct{ *sandbox.Kubernetes }

func (kubeEngine) Close() error { return nil }

func newKubeEngine() (kubeEngine, error) {
	k, err := sandbox.NewKubernetes(sandbox.KubernetesOptions{Kubeconfig: kubeconfigPath, Namespace: kubeNamespace})
	return kubeEngine{k}, err
}

// needKubernetes skips (or on CI fails) a test when the cluster does not
// answer, and loads the default image into it, once.
func needKubernetes(t testing.TB) {
	t.Helper()
	// scripts/test.sh runs the cluster's tests by this name, and takes the
	// cluster down before the others.
	if n := t.Name(); !strings.HasPrefix(n, "TestKubernetes") && !strings.HasPrefix(n, "BenchmarkKubernetes") {
		t.Fatalf("%s uses the test cluster: name it TestKubernetes…", n)
	}
	if shared.skip != "" {
		t.Skip("no container engine: ", shared.skip)
	}
	if os.Getuid() != 0 {
		t.Skip("the Kubernetes e2e runs as root (the test cluster's kubeconfig is root's)")
	}
	kubeShared.once.Do(func() {
		k, err := newKubeEngine()
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			err = k.Ping(ctx)
			cancel()
		}
		if err != nil {
			kubeShared.skipWhy = fmt.Sprintf("no Kubernetes cluster (%s up starts one): %v", kubeScript, err)
			return
		}
		// The image is built by Docker (as the e2e's setup did) and
		// loaded into the cluster's nodes, as a user without a registry
		// would (docs/kubernetes.md).
		ref, err := buildImageOn(t, "docker")
		if err != nil {
			kubeShared.err = err
			return
		}
		load := exec.Command("bash", kubeScript, "load", ref)
		load.Dir = repoRoot()
		if out, err := load.CombinedOutput(); err != nil {
			kubeShared.err = fmt.Errorf("%s load %s: %v\n%s", kubeScript, ref, err, out)
		}
		kubeShared.ref = ref
		// The node reports its images every few tens of seconds; airlock
		// checks that report before it starts a run.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			ok, err := k.ImageExists(context.Background(), ref)
			if err != nil || ok {
				kubeShared.err = err
				break
			}
			if time.Now().After(deadline) {
				kubeShared.err = fmt.Errorf("the node never reported the image %s it was loaded with", ref)
				break
			}
			time.Sleep(2 * time.Second)
		}
	})
	if kubeShared.skipWhy != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI needs the Kubernetes cluster: %s", kubeShared.skipWhy)
		}
		t.Skip(kubeShared.skipWhy)
	}
	if kubeShared.err != nil {
		t.Fatal(kubeShared.err)
	}
}

// The core e2e on Kubernetes: the real Claude Code in a pod, its copy of
// the repository streamed in and its work streamed back, merged on the
// host.
func TestKubernetesCore(t *testing.T) {
	for name, body := range map[string]func(*testing.T, *env){
		"WriteCommitMerge":      kubeWriteCommitMerge,
		"DestroyedCopy":         destroyedCopyLeavesUserRepoUnchanged,
		"PlantedHooks":          plantedHooksNeverRunOnHost,
		"UncommittedLeftovers":  uncommittedLeftovers,
		"ModelErrorFailsRun":    modelErrorFailsRun,
		"MergeRefusesDirtyTree": mergeRefusesDirtyTreeAndRmProtectsWork,
		// Forwarded ports reach the agent's pod through the API
		// server's portforward.
		"Ports": ports,
	} {
		t.Run(name, func(t *testing.T) { body(t, newEnvOn(t, onKubernetes)) })
	}
}

// kubeWriteCommitMerge is the core run, and the run's sandbox was pods on
// the cluster, not Docker's containers.
func kubeWriteCommitMerge(t *testing.T, e *env) {
	writeCommitMerge(t, e)
	r := e.runs()[0]
	if out, err := exec.Command("docker", "inspect", r.Container).CombinedOutput(); err == nil {
		t.Errorf("Docker knows the agent container %s; the run did not use Kubernetes:\n%s", r.Container, out)
	}
	// Merged, its pods are gone; the cluster's events tell of its agent.
	out, err := exec.Command(kubectlPath, "--kubeconfig", kubeconfigPath, "-n", kubeNamespace, "get", "events",
		"--field-selector", "involvedObject.name="+r.Container, "-o", "custom-columns=REASON:.reason,MESSAGE:.message").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Started container agent") {
		t.Errorf("the cluster has no record of the run's agent in pod %s (%v):\n%s", r.Container, err, out)
	}
	if r.Status != store.StatusMerged {
		t.Errorf("run status %s, want merged", r.Status)
	}
}

// The isolation attempts from inside a run on Kubernetes. The agent's pod
// has an interface and a route (every pod has), so those attempts give way
// to what the network policy must stop: a connection to another pod of the
// cluster, open to anyone else, and to the node. The rest are as on one
// machine: no DNS, no service account token, no proxy files, no real key;
// the proxy refuses unlisted and forbidden destinations before dialling.
func TestKubernetesIsolation(t *testing.T) {
	e := newEnvOn(t, onKubernetes)
	srv, url := e.server(runScript("isolation", "sh attempts.sh > results.txt 2>&1; echo finished"))
	realKey := "sk-ant-api03-" + randHex(80)
	setAPIKey(e, realKey)
	podIP := kubeListener(t)
	attempts, _, _ := isolationAttemptsVia(t, e.gateway(), url)
	attempts = slices.DeleteFunc(attempts, func(a attempt) bool {
		switch a.name {
		case "network interface besides lo", "a route out", "IPv6 address besides loopback":
			return true
		}
		return false
	})
	attempts = append(attempts,
		attempt{name: "TCP to another pod of the cluster", script: `py tcp ` + podIP + ` 8080`, want: "failed"},
		attempt{name: "a service account token", want: "failed",
			script: `if [ -e /var/run/secrets/kubernetes.io/serviceaccount/token ]; then verdict ok "a token"; else verdict failed "no token"; fi`},
	)
	// Nothing in the namespace is the sandbox's to make or label (clean
	// trusts airlock's labels and notes on Secrets and policies): it
	// reaches the API server neither by its service nor on the node.
	for _, api := range []struct{ name, what, jsonpath string }{
		{"the API server's service", "service/kubernetes", `{.spec.clusterIP} {.spec.ports[0].port}`},
		{"the API server on its node", "endpointslice/kubernetes", `{.endpoints[0].addresses[0]} {.ports[0].port}`},
	} {
		out, err := exec.Command(kubectlPath, "--kubeconfig", kubeconfigPath, "-n", "default", "get", api.what, "-o", "jsonpath="+api.jsonpath).Output()
		if err != nil || len(strings.Fields(string(out))) != 2 {
			t.Fatalf("where is %s: %q, %v", api.name, out, err)
		}
		attempts = append(attempts, attempt{name: api.name, script: `py tcp ` + string(out), want: "failed"})
	}
	_, vars, files := isolationAttemptsVia(t, e.gateway(), url)
	files["attempts.sh"] = attemptsScript(attempts, vars)
	runAttempts(t, e, srv, realKey, attempts, vars, files)
}

// kubeListener starts a pod no policy covers, listening on 8080, and
// returns its address once the host reaches it: a pod the agent's must
// not reach.
func kubeListener(t *testing.T) string {
	t.Helper()
	name := "e2e-listener-" + randHex(4)
	kubectl := func(args ...string) (string, error) {
		out, err := exec.Command(kubectlPath, append([]string{"--kubeconfig", kubeconfigPath, "-n", kubeNamespace}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := kubectl("run", name, "--image="+kubeShared.ref, "--image-pull-policy=Never", "--restart=Never",
		"--command", "--", "python3", "-m", "http.server", "8080"); err != nil {
		t.Fatalf("kubectl run: %v\n%s", err, out)
	}
	t.Cleanup(func() { kubectl("delete", "pod", name, "--grace-period=0", "--ignore-not-found") })
	deadline := time.Now().Add(time.Minute)
	for {
		ip, _ := kubectl("get", "pod", name, "-o", "jsonpath={.status.podIP}")
		if ip != "" {
			if c, err := net.DialTimeout("tcp", ip+":8080", time.Second); err == nil {
				c.Close()
				return ip
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the listener pod %s never answered on %s:8080", name, ip)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// The lifecycle around runs on Kubernetes.
func TestKubernetesLifecycle(t *testing.T) {
	for name, body := range map[string]func(*testing.T, *env){
		"TenRunsAtOnce":     tenRunsAtOnce,
		"Resume":            resumeContinuesConversation,
		"Persistent":        kubePersistentKeepsWorkspace,
		"ExecCpTmux":        execCpTmux,
		"SurvivesKilledCLI": runSurvivesKilledAirlock,
	} {
		t.Run(name, func(t *testing.T) { body(t, newEnvOn(t, onKubernetes)) })
	}
}

// TestKubernetesRBAC runs a whole run as a service account bound to
// exactly the Role and ClusterRole of docs/kubernetes-rbac.yaml: what the
// docs say airlock needs is enough (and a verb airlock starts to use
// without saying so fails here).
func TestKubernetesRBAC(t *testing.T) {
	e := newEnvOn(t, onKubernetes)
	kubectl := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(kubectlPath, append([]string{"--kubeconfig", kubeconfigPath}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	sa := "airlock-rbac-test"
	t.Cleanup(func() {
		for _, args := range [][]string{
			{"-n", kubeNamespace, "delete", "serviceaccount", sa, "--ignore-not-found"},
			{"-n", kubeNamespace, "delete", "rolebinding", sa, "--ignore-not-found"},
			{"delete", "clusterrolebinding", sa, "--ignore-not-found"},
		} {
			exec.Command(kubectlPath, append([]string{"--kubeconfig", kubeconfigPath}, args...)...).Run()
		}
	})
	kubectl("", "apply", "-f", filepath.Join(repoRoot(), "docs", "kubernetes-rbac.yaml"))
	kubectl("", "-n", kubeNamespace, "create", "serviceaccount", sa)
	kubectl("", "-n", kubeNamespace, "create", "rolebinding", sa, "--role=airlock", "--serviceaccount="+kubeNamespace+":"+sa)
	kubectl("", "create", "clusterrolebinding", sa, "--clusterrole=airlock-reader", "--serviceaccount="+kubeNamespace+":"+sa)
	token := strings.TrimSpace(kubectl("", "-n", kubeNamespace, "create", "token", sa, "--duration=1h"))

	// A kubeconfig with the cluster of the admin's and the account's token.
	admin, err := os.ReadFile(kubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	server := regexp.MustCompile(`server: (\S+)`).FindStringSubmatch(string(admin))
	caFile := regexp.MustCompile(`certificate-authority: (\S+)`).FindStringSubmatch(string(admin))
	if server == nil || caFile == nil {
		t.Fatalf("no server or CA in %s", kubeconfigPath)
	}
	caPEM, err := os.ReadFile(caFile[1])
	if err != nil {
		t.Fatal(err)
	}
	ca := []string{"", base64.StdEncoding.EncodeToString(caPEM)}
	kc := filepath.Join(e.tempDir(), "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %s, certificate-authority-data: %s}
users:
- name: %s
  user: {token: %s}
contexts:
- name: rbac
  context: {cluster: test, user: %s, namespace: %s}
current-context: rbac
`, server[1], ca[1], sa, token, sa, kubeNamespace)
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.kubeconfig = kc
	writeCommitMerge(t, e)
	// Forwarded ports go through pods/portforward.
	ports(t, e)
	// clean lists the namespace's Secrets and policies (what remains of
	// pods deleted behind airlock's back) under the same rights.
	e.ok("clean")
	// And what the run made is gone again with rm, under the same rights.
	r := e.run("hello")
	if out := kubectl("", "-n", kubeNamespace, "get", "pods,secrets,networkpolicies,persistentvolumeclaims", "-l", "airlock.dev/managed=true", "-o", "name"); strings.Contains(out, r.ID) {
		t.Errorf("the merged run's objects are still on the cluster:\n%s", out)
	}
	// A persistent run's volume claim: made, found again by start, listed
	// by clean, removed by rm.
	kubePersistentKeepsWorkspace(t, e)
}

// Kubernetes: every command around a live run works (shell in tmux, tmux
// capture and send, attach and detach, stop, clean, start, kill, rm).
func TestKubernetesCommands(t *testing.T) {
	e := newEnvOn(t, onKubernetes)
	e.server(testkit.ChatScript())
	k, err := newKubeEngine()
	if err != nil {
		t.Fatal(err)
	}
	podmanCommands(t, &podmanCLI{
		t: t, repo: e.repo, podman: k, env: e.environ(), killWithin: 45 * time.Second,
		try: func(args ...string) (string, error) {
			res := e.airlock(args...)
			if res.code != 0 {
				return res.stdout + res.stderr, fmt.Errorf("exit %d", res.code)
			}
			return res.stdout + res.stderr, nil
		},
		line: func(args ...string) string {
			return "AIRLOCK_ENGINE=kubernetes KUBECONFIG=" + kubeconfigPath + " " + shared.bin + " " + strings.Join(args, " ")
		},
	})
}

// kubePersistentKeepsWorkspace: a persistent run on Kubernetes is stopped
// and started again in a new pod, with what its first leg left in the
// workspace and home, and says that nothing else of its container stays.
// Those are on the run's volume claim: the host's copy of the home, which
// came back for review, is changed before the start, and the second leg
// reads the file as the first left it (the new pod got it from the claim,
// not from the host). clean keeps a persistent run's claim though its pod is gone;
// rm removes it.
func kubePersistentKeepsWorkspace(t *testing.T, e *env) {
	srv, url := e.server(testkit.BashScript("leave", "echo kept > /workspace/left.txt && echo home > ~/home.txt"))
	res := e.ok("run", "-y", "--persistent", "-m", "Leave files.", "--name", "keep")
	if !strings.Contains(res.stderr, "not what is installed elsewhere in its container") {
		t.Errorf("a persistent run on Kubernetes does not say what it keeps:\n%s", res.stderr)
	}
	r := e.run("keep")
	if r.Status != store.StatusSucceeded || !r.Persistent {
		t.Fatalf("first leg: status %s persistent %v (%s)", r.Status, r.Persistent, r.Error)
	}
	claims := func() string {
		out, err := exec.Command(kubectlPath, "--kubeconfig", kubeconfigPath, "-n", kubeNamespace, "get", "persistentvolumeclaims",
			"-l", "airlock.dev/pod="+r.Container, "-o", "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}").CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl get persistentvolumeclaims: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := claims(); got != r.Container {
		t.Fatalf("the persistent run's claims: %q, want one named %s", got, r.Container)
	}
	hostHome := filepath.Join(e.runDir(r.ID), "home", "home.txt")
	if b, err := os.ReadFile(hostHome); err != nil || string(b) != "home\n" {
		t.Fatalf("the first leg's home file did not come home for review: %q, %v", b, err)
	}
	if err := os.WriteFile(hostHome, []byte("changed on the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	next := testkit.NewServer(testkit.Resumed(1, testkit.BashScript("read",
		"cat /workspace/left.txt ~/home.txt > both.txt && git add both.txt && git commit -qm 'Add both'")))
	if _, err := next.Start(strings.TrimPrefix(url, "http://")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { next.Close() })
	e.ok("start", "keep", "-m", "Read them back.")
	e.ok("wait", "keep")
	r = e.run("keep")
	if r.Status != store.StatusSucceeded {
		t.Fatalf("second leg: %s (%s)\n%s", r.Status, r.Error, e.airlock("logs", "keep").stdout)
	}
	if out, _ := exec.Command("git", "-C", e.repo, "log", "--oneline", r.Branch).CombinedOutput(); !strings.Contains(string(out), "Add both") {
		ws, _ := exec.Command("git", "-c", "safe.directory=*", "-C", filepath.Join(e.runDir(r.ID), "workspace"), "log", "--oneline", "--all").CombinedOutput()
		t.Fatalf("the second leg's commit is not on %s:\n%s\nworkspace: %s\nrecord: %+v", r.Branch, out, ws, r)
	}
	if got := e.git("show", r.Branch+":both.txt"); got != "kept\nhome" {
		t.Fatalf("both.txt on %s = %q, want the first leg's files (the home's from the claim)", r.Branch, got)
	}

	// Its pod deleted behind airlock's back, the claim of a persistent run
	// is not clean's to remove; rm removes it.
	if out, err := exec.Command(kubectlPath, "--kubeconfig", kubeconfigPath, "-n", kubeNamespace, "delete", "pod", r.Container,
		"--grace-period=0", "--force", "--wait=true").CombinedOutput(); err != nil {
		t.Fatalf("kubectl delete pod: %v\n%s", err, out)
	}
	e.ok("clean")
	if got := claims(); got != r.Container {
		t.Fatalf("clean removed a persistent run's claim: %q left", got)
	}
	e.ok("rm", "-y", "--force", "keep")
	for deadline := time.Now().Add(time.Minute); ; {
		// Gone, or being deleted (it has a deletion time).
		got := claims()
		if got == "" || len(strings.Fields(got)) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rm left the run's claim: %q", got)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
