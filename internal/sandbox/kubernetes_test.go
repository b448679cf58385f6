package sandbox_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/archive"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// kubeEngine connects to the test cluster, with the static airlock binary
// built from this tree as its pods' init and the suite's image loaded into
// its containerd.
func kubeEngine(t *testing.T) *sandbox.Kubernetes {
	t.Helper()
	// scripts/test.sh runs the cluster's tests by this name, and takes the
	// cluster down before the others.
	if n := t.Name(); !strings.HasPrefix(n, "TestKubernetes") && !strings.HasPrefix(n, "BenchmarkKubernetes") {
		t.Fatalf("%s uses the test cluster: name it TestKubernetes…", n)
	}
	k := testkit.Kubernetes(t)
	k.UseBinary(staticAirlock(t))
	loadKubeImage(t, k)
	return k
}

// kubeContainerd is the test cluster's containerd (scripts/k8s-cluster.sh).
func kubeContainerd() string {
	if s := os.Getenv("AIRLOCK_K8S_CONTAINERD"); s != "" {
		return s
	}
	return "/run/airlock-k8s/containerd.sock"
}

// loadKubeImage imports the suite's busybox image into the cluster's
// containerd, as an OCI archive made here, unless a node has it; then waits
// until the kubelet reports it.
func loadKubeImage(t *testing.T, k *sandbox.Kubernetes) {
	t.Helper()
	ctx := context.Background()
	if ok, err := k.ImageExists(ctx, sandboxtest.Image); err != nil {
		t.Fatal(err)
	} else if ok {
		return
	}
	var rootfs bytes.Buffer
	if err := sandboxtest.BusyboxRootfs(&rootfs, sandboxtest.BusyboxPath); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(file, ociArchive(t, rootfs.Bytes(), "docker.io/library/"+sandboxtest.Image), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ctr", "-a", kubeContainerd(), "-n", "k8s.io", "images", "import", file).CombinedOutput()
	if err != nil {
		t.Fatalf("import %s into the cluster's containerd: %v\n%s", sandboxtest.Image, err, out)
	}
	// The kubelet reports a node's images with its status, every 10 s.
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, err := k.ImageExists(ctx, sandboxtest.Image)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("imported %s, but no node reports it", sandboxtest.Image)
		}
		time.Sleep(time.Second)
	}
}

// ociArchive is an OCI image layout, as a tar, of one uncompressed layer.
func ociArchive(t *testing.T, layer []byte, name string) []byte {
	t.Helper()
	type desc struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	blobs := map[string][]byte{}
	put := func(b []byte, mt string) desc {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return desc{MediaType: mt, Digest: d, Size: len(b)}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	l := put(layer, "application/vnd.oci.image.layer.v1.tar")
	cfg := put(mustJSON(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{l.Digest}},
	}), "application/vnd.oci.image.config.v1+json")
	man := put(mustJSON(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": cfg, "layers": []desc{l},
	}), "application/vnd.oci.image.manifest.v1+json")
	man.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name[strings.LastIndex(name, ":")+1:]}
	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": mustJSON(map[string]any{"schemaVersion": 2, "manifests": []desc{man}}),
	}
	for d, b := range blobs {
		files["blobs/sha256/"+strings.TrimPrefix(d, "sha256:")] = b
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755})
	}
	for n, b := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestKubernetesEngine(t *testing.T) {
	k := kubeEngine(t)
	sandboxtest.RunEngineSuite(t, func() sandbox.Engine { return k })
}

// A name Kubernetes cannot hold as a pod's still finds its container, and
// Inspect reports it as given.
func TestKubernetesNames(t *testing.T) {
	k := kubeEngine(t)
	ctx := t.Context()
	name := "Airlock_Run.Name-" + strings.Repeat("x", 60)
	id, err := k.Create(ctx, sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"true"}, User: "1000:1000"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Remove(context.Background(), name) })
	if len(id) > 63 || strings.ContainsAny(id, "_.A") {
		t.Errorf("pod name %q is not a DNS-1123 label", id)
	}
	st, err := k.Inspect(ctx, name)
	if err != nil || st.Name != name || st.ID != id {
		t.Fatalf("Inspect(%q) = %+v, %v; want name %q and ID %s", name, st, err, name, id)
	}
	if err := k.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Inspect(ctx, id); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Inspect after Remove by name: %v, want ErrNotFound", err)
	}
}

// Mounts are copies: what the command wrote comes back to the host by
// Wait, and what comes back is the sandbox's, so it is extracted as hostile:
// a link out of the copy, a fifo and a file past the cap do not arrive.
func TestKubernetesMountsCopiedBack(t *testing.T) {
	k := kubeEngine(t)
	ctx := t.Context()
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	if err := os.WriteFile(filepath.Join(dir, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := t.TempDir()
	os.WriteFile(filepath.Join(ro, "conf"), []byte("read only\n"), 0o644)
	run := func(t *testing.T, script string) (int, error) {
		name := "airlock-k8s-mounts-" + strings.ToLower(strings.ReplaceAll(t.Name()[len("TestKubernetesMountsCopiedBack/"):], "_", "-"))
		k.Remove(ctx, name)
		id, err := k.Create(ctx, sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"sh", "-c", script}, User: "1000:1000",
			Mounts: []sandbox.Mount{{Source: dir, Target: "/data"}, {Source: filepath.Join(ro, "conf"), Target: "/etc/airlock.conf", ReadOnly: true}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Remove(context.Background(), id) })
		if err := k.Start(ctx, id); err != nil {
			t.Fatal(err)
		}
		code, err := k.Wait(ctx, id)
		if code != 0 {
			var logs bytes.Buffer
			k.Logs(ctx, id, &logs)
			t.Logf("exit %d; logs:\n%s", code, logs.String())
		}
		return code, err
	}
	t.Run("written", func(t *testing.T) {
		code, err := run(t, `cat /data/in /etc/airlock.conf > /data/out && mkdir -p /data/sub && echo deep > /data/sub/f && ! echo x > /etc/airlock.conf`)
		if err != nil || code != 0 {
			t.Fatalf("Wait = %d, %v", code, err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "out")); string(b) != "from the host\nread only\n" {
			t.Errorf("out on the host = %q", b)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "sub", "f")); string(b) != "deep\n" {
			t.Errorf("sub/f on the host = %q", b)
		}
		if b, _ := os.ReadFile(filepath.Join(ro, "conf")); string(b) != "read only\n" {
			t.Errorf("the read-only mount's source changed: %q", b)
		}
	})
	t.Run("hostile", func(t *testing.T) {
		code, err := run(t, `ln -s /etc/passwd /data/passwd && ln -s ../../../../etc/shadow /data/up && mkfifo /data/fifo && echo ok > /data/fine`)
		if err != nil || code != 0 {
			t.Fatalf("Wait = %d, %v", code, err)
		}
		for _, n := range []string{"passwd", "up", "fifo"} {
			if fi, err := os.Lstat(filepath.Join(dir, n)); err == nil {
				t.Errorf("%s came back to the host as %v", n, fi.Mode())
			}
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "fine")); string(b) != "ok\n" {
			t.Errorf("fine on the host = %q", b)
		}
	})
	t.Run("huge", func(t *testing.T) {
		k.SetSyncLimits(1<<20, 1000)
		t.Cleanup(func() { k.SetSyncLimits(sandbox.KubernetesSyncMaxBytes, sandbox.KubernetesSyncMaxEntries) })
		_, err := run(t, `dd if=/dev/zero of=/data/huge bs=1024 count=3072 2>/dev/null; echo small > /data/small2`)
		if !errors.Is(err, archive.ErrTooLarge) {
			t.Fatalf("Wait with 3 MiB over a 1 MiB cap: %v, want ErrTooLarge", err)
		}
		for _, n := range []string{"huge", "small2"} {
			if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
				t.Errorf("%s came back though the copy was over its cap", n)
			}
		}
	})
}

// Exec, Stat and the copies in and out reach the agent's container through
// the API.
func TestKubernetesExecer(t *testing.T) {
	k := kubeEngine(t)
	ctx := t.Context()
	name := fmt.Sprintf("airlock-k8s-exec-%d", time.Now().UnixNano()%1e8)
	id, err := k.Create(ctx, sandbox.Spec{Name: name, Image: sandboxtest.Image, Cmd: []string{"sleep", "600"}, User: "1000:1000", WorkDir: "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Remove(context.Background(), id) })
	if err := k.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code, err := k.Exec(ctx, id, sandbox.ExecSpec{
		Cmd: []string{"sh", "-c", `echo "$GREETING from $(pwd)"; cat; echo oops >&2; exit 3`}, WorkDir: "/bin",
		Env: []string{"GREETING=hello"}, Stdin: strings.NewReader("piped\n"), Stdout: &out, Stderr: &errOut,
	})
	if err != nil || code != 3 || out.String() != "hello from /bin\npiped\n" || errOut.String() != "oops\n" {
		t.Errorf("Exec = %d, %v; stdout %q stderr %q", code, err, out.String(), errOut.String())
	}
	// One writer for both outputs gets all of them, every time (a race of
	// the two copies into it lost what a command printed, now and then).
	lost := 0
	for i := range 40 {
		var out bytes.Buffer
		code, err := k.Exec(ctx, id, sandbox.ExecSpec{Cmd: []string{"sh", "-c", "ls -a /; echo end $0", strconv.Itoa(i)}, Stdout: &out, Stderr: &out})
		if err != nil || code != 0 {
			t.Fatalf("exec %d = %d, %v", i, code, err)
		}
		if !strings.HasSuffix(out.String(), "end "+strconv.Itoa(i)+"\n") || !strings.Contains(out.String(), "..\n") {
			lost++
			t.Logf("exec %d: output %q", i, out.String())
		}
	}
	if lost > 0 {
		t.Errorf("%d of 40 execs lost output", lost)
	}
	if _, err := k.Exec(ctx, id, sandbox.ExecSpec{Cmd: []string{"true"}, User: "2000:2000"}); !errors.Is(err, sandbox.ErrUnsupported) {
		t.Errorf("Exec as another user: %v, want ErrUnsupported", err)
	}
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	tw.WriteHeader(&tar.Header{Name: "note.txt", Mode: 0o644, Size: 3, Typeflag: tar.TypeReg})
	tw.Write([]byte("hi\n"))
	tw.Close()
	if err := k.CopyTo(ctx, id, "/tmp", &in); err != nil {
		t.Fatalf("CopyTo: %v", err)
	}
	st, err := k.Stat(ctx, id, "/tmp/note.txt")
	if err != nil || st.Size != 3 || !st.Mode.IsRegular() || st.Name != "note.txt" {
		t.Errorf("Stat = %+v, %v", st, err)
	}
	if _, err := k.Stat(ctx, id, "/tmp/absent"); !errors.Is(err, sandbox.ErrNotFound) {
		t.Errorf("Stat of a missing path: %v, want ErrNotFound", err)
	}
	rc, err := k.CopyFrom(ctx, id, "/tmp/note.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil || h.Name != "note.txt" {
		t.Fatalf("CopyFrom: first entry %+v, %v", h, err)
	}
	if b, _ := io.ReadAll(tr); string(b) != "hi\n" {
		t.Errorf("CopyFrom content = %q", b)
	}
}

// With a registry, a pod pulls an image that names none from it, and the
// nodes' copy under either name counts.
func TestKubernetesRegistryRefs(t *testing.T) {
	k, err := sandbox.NewKubernetes(sandbox.KubernetesOptions{Kubeconfig: writeKubeconfig(t), Registry: "registry.test:5000/team/"})
	if err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{
		"airlock-claude:1":            "registry.test:5000/team/airlock-claude:1",
		"library/x:2":                 "registry.test:5000/team/library/x:2",
		"ghcr.io/o/x:3":               "ghcr.io/o/x:3",
		"localhost/x:4":               "localhost/x:4",
		"registry.test:5000/team/x:5": "registry.test:5000/team/x:5",
	} {
		if got := k.ImageRef(ref); got != want {
			t.Errorf("ImageRef(%s) = %s, want %s", ref, got, want)
		}
		// What `airlock image build` pushes is what the pods pull.
		if got := sandbox.RegistryRef("registry.test:5000/team/", ref); got != want {
			t.Errorf("RegistryRef(%s) = %s, want %s", ref, got, want)
		}
	}
	if got := sandbox.RegistryRef("", "airlock-claude:1"); got != "airlock-claude:1" {
		t.Errorf("RegistryRef without a registry = %s, want the image's own name", got)
	}
}

// writeKubeconfig is a kubeconfig of a cluster that is not there.
func writeKubeconfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(p, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600)
	return p
}
