package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox"
)

// The Kubernetes e2e runs on the single-node cluster scripts/k8s-cluster.sh
// brings up (make test does): pods reach the host, and so the scripted
// model server, at the node's address.
const (
	kubeconfigPath = "/var/lib/airlock-k8s/kubeconfig"
	kubeNamespace  = "airlock"
	kubeScript     = "scripts/k8s-cluster.sh"
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
	k, err := newKubeEngine()
	if err != nil {
		t.Fatal(err)
	}
	st, err := k.Inspect(context.Background(), r.Container)
	if err != nil {
		t.Fatalf("the cluster does not know the run's pod %s: %v", r.Container, err)
	}
	if st.Status != sandbox.StatusExited || st.ExitCode != 0 {
		t.Errorf("the run's pod: %+v, want its agent exited 0", st)
	}
}

// The isolation attempts from inside a run on Kubernetes: only loopback,
// no route, no DNS, no service account token, no proxy files, no real key;
// the proxy refuses unlisted and forbidden destinations before dialling,
// and the network policy keeps the agent's pod from everything but its
// proxy.
func TestKubernetesIsolation(t *testing.T) {
	e := newEnvOn(t, onKubernetes)
	srv, url := e.server(runScript("isolation", "sh attempts.sh > results.txt 2>&1; echo finished"))
	realKey := "sk-ant-api03-" + randHex(80)
	setAPIKey(e, realKey)
	attempts, vars, files := isolationAttemptsVia(t, e.gateway(), url)
	runAttempts(t, e, srv, realKey, attempts, vars, files)
}

// The lifecycle around runs on Kubernetes.
func TestKubernetesLifecycle(t *testing.T) {
	for name, body := range map[string]func(*testing.T, *env){
		"TenRunsAtOnce": tenRunsAtOnce,
	} {
		t.Run(name, func(t *testing.T) { body(t, newEnvOn(t, onKubernetes)) })
	}
}
