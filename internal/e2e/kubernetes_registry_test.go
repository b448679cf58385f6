package e2e

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// kubeRegistry is the test cluster's registry (scripts/k8s-cluster.sh
// starts it): plain HTTP on loopback, which the cluster's containerd pulls
// from.
const kubeRegistry = "127.0.0.1:23500"

// needKubeRegistry skips (or on CI fails) a test when the test cluster's
// registry does not answer.
func needKubeRegistry(t *testing.T) {
	t.Helper()
	res, err := http.Get("http://" + kubeRegistry + "/v2/")
	if err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			err = fmt.Errorf("GET /v2/: %s", res.Status)
		}
	}
	if err != nil {
		why := fmt.Sprintf("the test cluster's registry on %s does not answer (%s up starts it): %v", kubeRegistry, kubeScript, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(why)
		}
		t.Skip(why)
	}
}

// kubeRegistryConfig gives the test's airlock the test configuration with
// [engine.kubernetes] registry set.
func kubeRegistryConfig(t *testing.T, e *env, reg string) {
	t.Helper()
	cfg := strings.Replace(testConfig, "[engine.kubernetes]\n", fmt.Sprintf("[engine.kubernetes]\nregistry = %q\n", reg), 1)
	if e.configDir == "" {
		e.configDir = e.tempDir()
	}
	path := filepath.Join(e.configDir, "airlock", "config.toml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// With [engine.kubernetes] registry set, `airlock image build` pushes the
// image there under the name pods pull, and a run on the cluster pulls it
// from there: the nodes' containerd does not have it under that name when
// the run starts.
func TestKubernetesRegistry(t *testing.T) {
	e := newEnvOn(t, onKubernetes)
	needKubeRegistry(t)
	// A repository path of the test's own: other runs of it may push too.
	reg := fmt.Sprintf("%s/e2e-%d", kubeRegistry, time.Now().UnixNano())
	removeClusterImages(t, kubeRegistry+"/e2e-") // what killed runs left
	kubeRegistryConfig(t, e, reg)

	res := e.imageBuild()
	if res.code != 0 {
		t.Fatalf("airlock image build: exit %d\n%s", res.code, tail(res.stderr, 40))
	}
	ref := strings.TrimSpace(res.stdout)
	if ref != kubeShared.ref {
		t.Fatalf("image build printed %q, want the image the tests built, %q", ref, kubeShared.ref)
	}
	target := reg + "/" + ref
	if !strings.Contains(res.stderr, "Pushed: "+target+" (sha256:") {
		t.Errorf("image build does not say it pushed %s:\n%s", target, tail(res.stderr, 20))
	}
	// In the registry, under the name the pods pull.
	name, tag, _ := strings.Cut(strings.TrimPrefix(target, kubeRegistry+"/"), ":")
	manifest := "http://" + kubeRegistry + "/v2/" + name + "/manifests/" + tag
	head, err := http.Head(manifest)
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK {
		t.Fatalf("HEAD %s: %s: the image is not in the registry", manifest, head.Status)
	}
	t.Cleanup(func() {
		req, _ := http.NewRequest(http.MethodDelete, manifest, nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	})
	// Docker keeps only the image's own name.
	if out, err := exec.Command("docker", "image", "inspect", target).CombinedOutput(); err == nil {
		t.Errorf("Docker still has the tag %s the push used:\n%s", target, out)
	}
	// The nodes must pull it: not in their containerd under that name.
	ctr := exec.Command("ctr", "-a", "/run/airlock-k8s/containerd.sock", "-n", "k8s.io", "images", "rm", target)
	if out, err := ctr.CombinedOutput(); err != nil && !strings.Contains(string(out), "not found") {
		t.Fatalf("remove %s from the cluster's containerd: %v\n%s", target, err, out)
	}
	// The pull leaves the name and a digest name (repo@sha256:...); the
	// kubelet reports five names of an image, digests first, so kept ones
	// would hide the image's own tag from later runs' check.
	t.Cleanup(func() { removeClusterImages(t, reg+"/") })

	writeCommitMerge(t, e)
	r := e.runs()[0]
	out, err := exec.Command(kubectlPath, "--kubeconfig", kubeconfigPath, "-n", kubeNamespace, "get", "events",
		"--field-selector", "reason=Pulled", "-o", "custom-columns=OBJECT:.involvedObject.name,MESSAGE:.message").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Successfully pulled image \""+target+"\"") {
		t.Errorf("no pod of run %s pulled %s from the registry (%v):\n%s", r.ID, target, err, out)
	}
	ls, err := exec.Command("ctr", "-a", "/run/airlock-k8s/containerd.sock", "-n", "k8s.io", "images", "ls", "-q", "name=="+target).Output()
	if err != nil || strings.TrimSpace(string(ls)) != target {
		t.Errorf("the cluster's containerd does not hold %s after the run (%v): %q", target, err, ls)
	}
}

// A registry that refuses the push: one error naming the registry and
// where it was configured, and the registry's own reason.
func TestKubernetesRegistryPushRefused(t *testing.T) {
	e := newEnvOn(t, onKubernetes)
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, `{"errors":[{"code":"DENIED","message":"this registry takes no pushes"}]}`)
			return
		}
		reg.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	where := strings.TrimPrefix(srv.URL, "http://") + "/team"
	kubeRegistryConfig(t, e, where)

	res := e.imageBuild()
	if res.code == 0 {
		t.Fatalf("image build succeeded with a registry that refuses pushes:\n%s", tail(res.stderr, 20))
	}
	want := "push " + kubeShared.ref + " to registry " + where + " (engine.kubernetes.registry, "
	if !strings.Contains(res.stderr, want) || !strings.Contains(res.stderr, "this registry takes no pushes") {
		t.Errorf("stderr lacks %q and the registry's reason:\n%s", want, tail(res.stderr, 20))
	}
	if out, err := exec.Command("docker", "image", "inspect", where+"/"+kubeShared.ref).CombinedOutput(); err == nil {
		t.Errorf("a failed push left the tag %s on Docker:\n%s", where+"/"+kubeShared.ref, out)
	}

	// The nodes hold the image under its own name, but pods would pull it
	// from the registry, which does not have it: doctor says so, and a run
	// is refused before it creates anything, not left waiting on a pull.
	missing := fmt.Sprintf("%s is neither on the cluster's nodes nor in the registry the pods pull it from (%s/%s)", kubeShared.ref, where, kubeShared.ref)
	if res := e.airlock("doctor"); res.code == 0 || !strings.Contains(res.stdout, "FAIL  image") || !strings.Contains(res.stdout, missing) {
		t.Errorf("doctor (exit %d) does not say the registry lacks the image:\n%s", res.code, res.stdout)
	}
	model, _ := e.server(testkit.DemoScript())
	res = e.airlock("run", "-m", "Do something.", "--name", "unpushed")
	if res.code == 0 || !strings.Contains(res.stderr, "push it there with `airlock image build`") {
		t.Errorf("run of an image the registry lacks (exit %d):\n%s%s", res.code, res.stdout, tail(res.stderr, 20))
	}
	if runs := e.runs(); len(runs) != 0 {
		t.Errorf("the refused run left records: %+v", runs)
	}
	if n := len(model.Requests()); n != 0 {
		t.Errorf("the refused run asked the model %d times", n)
	}
}

// removeClusterImages removes every name under prefix from the test
// cluster's containerd.
func removeClusterImages(t *testing.T, prefix string) {
	t.Helper()
	ctr := func(args ...string) *exec.Cmd {
		return exec.Command("ctr", append([]string{"-a", "/run/airlock-k8s/containerd.sock", "-n", "k8s.io", "images"}, args...)...)
	}
	out, err := ctr("ls", "-q").Output()
	if err != nil {
		t.Errorf("list the cluster's images: %v", err)
		return
	}
	var names []string
	for _, name := range strings.Fields(string(out)) {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return
	}
	if out, err := ctr(append([]string{"rm"}, names...)...).CombinedOutput(); err != nil {
		t.Errorf("remove %s from the cluster's containerd: %v\n%s", strings.Join(names, " "), err, out)
	}
}
