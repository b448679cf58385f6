package image_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// hostSpec is what `airlock image build --base bootstrap` builds on this
// machine, so the image this test leaves behind is the one others reuse.
func hostSpec(t *testing.T) image.Spec {
	t.Helper()
	ca, err := os.ReadFile(image.HostCABundle)
	if err != nil {
		t.Fatalf("read host CA bundle: %v", err)
	}
	return image.Spec{Base: image.BootstrapBase, CACerts: [][]byte{ca}}
}

// defaultImage builds (or finds) the default image once per test binary.
func defaultImage(t *testing.T, eng image.Engine) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the full agent image (1-2 minutes)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	ref, err := image.Build(ctx, eng, hostSpec(t), &progress)
	if err != nil {
		t.Fatalf("Build: %v\noutput:\n%s", err, tail(progress.String(), 40))
	}
	return ref
}

func TestBuildDefaultImage(t *testing.T) {
	eng := testkit.Docker(t)
	ref := defaultImage(t, eng)
	t.Logf("default image: %s", ref)
	if !regexp.MustCompile(`^airlock-claude:[0-9a-f]{12}$`).MatchString(ref) {
		t.Errorf("ref = %q, want airlock-claude:<12 hex>", ref)
	}
	if predicted := image.DefaultRef(hostSpec(t)); predicted != ref {
		t.Errorf("DefaultRef = %s, Build made %s; the CLI uses DefaultRef to find the image", predicted, ref)
	}
	if id, latest := imageID(t, ref), imageID(t, image.LatestRef(agent.Claude{})); id != latest {
		t.Errorf("%s is %s, %s is %s; want the same image", image.LatestRef(agent.Claude{}), latest, ref, id)
	}

	t.Run("claude is the pinned version", func(t *testing.T) {
		out := dockerRun(t, ref, "claude", "--version")
		if !strings.HasPrefix(out, agent.ClaudeVersion+" ") {
			t.Errorf("claude --version = %q, want %s", out, agent.ClaudeVersion)
		}
	})
	t.Run("runs as agent 1000 in /workspace", func(t *testing.T) {
		if out := dockerRun(t, ref, "id"); !strings.HasPrefix(out, "uid=1000(agent) gid=1000(agent)") {
			t.Errorf("id = %q, want uid=1000(agent) gid=1000(agent)", out)
		}
		if out := dockerRun(t, ref, "pwd"); out != "/workspace" {
			t.Errorf("pwd = %q, want /workspace", out)
		}
	})
	t.Run("tini is PID 1", func(t *testing.T) {
		out := dockerRun(t, ref, "cat", "/proc/1/cmdline")
		if prog, _, _ := strings.Cut(out, "\x00"); prog != "/usr/bin/tini" {
			t.Errorf("PID 1 is %q, want /usr/bin/tini", prog)
		}
	})
	t.Run("tools on PATH", func(t *testing.T) {
		for _, tool := range []string{"git", "node", "npm", "curl", "jq", "rg", "python3", "ps", "ssh"} {
			if _, err := exec.Command("docker", "run", "--rm", ref, "sh", "-c", "command -v "+tool).CombinedOutput(); err != nil {
				t.Errorf("%s missing from the image", tool)
			}
		}
	})
	t.Run("host CAs trusted by every client", func(t *testing.T) {
		bundle := dockerRun(t, ref, "cat", "/etc/ssl/certs/ca-certificates.crt")
		host, _ := os.ReadFile(image.HostCABundle)
		missing := 0
		for rest := host; ; {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if !strings.Contains(bundle, strings.TrimSpace(string(pem.EncodeToMemory(block)))) {
				missing++
			}
		}
		if missing > 0 {
			t.Errorf("%d certificates of %s are not in the image's bundle", missing, image.HostCABundle)
		}
		want := "/etc/ssl/certs/ca-certificates.crt"
		if out := dockerRun(t, ref, "npm", "config", "get", "cafile"); out != want {
			t.Errorf("npm cafile = %q, want %s", out, want)
		}
		if out := dockerRun(t, ref, "git", "config", "--system", "http.sslCAInfo"); out != want {
			t.Errorf("git http.sslCAInfo = %q, want %s", out, want)
		}
		env := dockerRun(t, ref, "env")
		for _, v := range []string{"NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"} {
			if !strings.Contains(env, v+"="+want+"\n") && !strings.HasSuffix(env, v+"="+want) {
				t.Errorf("%s is not %s in the image's environment:\n%s", v, want, env)
			}
		}
	})
	t.Run("no secrets in the environment", func(t *testing.T) {
		secret := regexp.MustCompile(`(?i)(key|token|secret|passw|credential|auth)[^=]*=`)
		for _, line := range strings.Split(dockerRun(t, ref, "env"), "\n") {
			if secret.MatchString(line) {
				t.Errorf("image environment has %q", line)
			}
		}
	})

	t.Run("same inputs return at once", func(t *testing.T) {
		var progress bytes.Buffer
		start := time.Now()
		again, err := image.Build(context.Background(), eng, hostSpec(t), &progress)
		if err != nil {
			t.Fatal(err)
		}
		if again != ref {
			t.Errorf("second build = %s, want %s", again, ref)
		}
		if d := time.Since(start); d > 5*time.Second || progress.Len() > 0 {
			t.Errorf("second build took %v and wrote %q; want an immediate return", d, progress.String())
		}
	})
}

func TestBuildProject(t *testing.T) {
	eng := testkit.Docker(t)
	base := defaultImage(t, eng)
	ctx := context.Background()

	dir := filepath.Join(t.TempDir(), "My Project", ".airlock")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("Dockerfile", "ARG AIRLOCK_BASE\nFROM ${AIRLOCK_BASE}\nCOPY motd /etc/project-motd\n")
	write("motd", "hello from the project\n")

	ref, err := image.BuildProject(ctx, eng, base, dir, nil)
	if err != nil {
		t.Fatalf("BuildProject: %v", err)
	}
	if !regexp.MustCompile(`^airlock-project-my-project:[0-9a-f]{12}$`).MatchString(ref) {
		t.Errorf("ref = %q, want airlock-project-my-project:<12 hex>", ref)
	}
	if predicted, err := image.ProjectRef(base, dir); err != nil || predicted != ref {
		t.Errorf("ProjectRef = %s, %v; BuildProject made %s", predicted, err, ref)
	}
	if out := dockerRun(t, ref, "cat", "/etc/project-motd"); out != "hello from the project" {
		t.Errorf("project file = %q", out)
	}
	if out := dockerRun(t, ref, "claude", "--version"); !strings.HasPrefix(out, agent.ClaudeVersion) {
		t.Errorf("project image lost the agent: claude --version = %q", out)
	}

	again, err := image.BuildProject(ctx, eng, base, dir, nil)
	if err != nil || again != ref {
		t.Errorf("rebuild with same inputs = %s, %v; want %s", again, err, ref)
	}
	write("motd", "changed\n")
	changed, err := image.BuildProject(ctx, eng, base, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if changed == ref {
		t.Errorf("changing a context file kept the tag %s", ref)
	}
	t.Cleanup(func() { exec.Command("docker", "rmi", ref, changed).Run() })

	t.Run("failing step", func(t *testing.T) {
		write("Dockerfile", "ARG AIRLOCK_BASE\nFROM ${AIRLOCK_BASE}\nRUN echo compiling widgets && echo widget 7 is broken >&2 && exit 3\n")
		_, err := image.BuildProject(ctx, eng, base, dir, nil)
		if err == nil {
			t.Fatal("build with a failing RUN succeeded")
		}
		t.Logf("as the user sees it:\n%v", err)
		for _, want := range []string{"RUN echo compiling widgets", "widget 7 is broken", "non-zero code: 3", "Dockerfile"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not mention %q:\n%v", want, err)
			}
		}
	})
}

func TestBuildProjectWithoutDockerfile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".airlock")
	os.MkdirAll(dir, 0o755)
	_, err := image.BuildProject(context.Background(), nil, "airlock-claude:0123456789ab", dir, nil)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "Dockerfile")) || !strings.Contains(err.Error(), "FROM ${AIRLOCK_BASE}") {
		t.Errorf("err = %v; want it to name the missing Dockerfile and how to start one", err)
	}
}

func dockerRun(t *testing.T, ref string, args ...string) string {
	t.Helper()
	out, err := exec.Command("docker", append([]string{"run", "--rm", ref}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("docker run %s %v: %v\n%s", ref, args, err, out)
	}
	return strings.TrimRight(string(out), "\n")
}

func imageID(t *testing.T, ref string) string {
	t.Helper()
	out, err := exec.Command("docker", "image", "inspect", "-f", "{{.Id}}", ref).CombinedOutput()
	if err != nil {
		t.Fatalf("inspect %s: %v\n%s", ref, err, out)
	}
	return strings.TrimSpace(string(out))
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
