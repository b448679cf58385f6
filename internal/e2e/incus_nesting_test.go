package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/store"
)

// Docker in the sandbox on Incus ([engine.incus] nesting = true): a
// project image that installs Debian's docker.io, built by airlock's Incus
// builder; the agent (the real Claude Code, driven by the scripted model)
// loads a tiny image from a tarball in its workspace (there is no
// registry) and runs it. Without nesting the same step fails, clearly.
func TestIncusNesting(t *testing.T) {
	e := newEnvOn(t, onIncus)
	nestingProject(t, e)
	step := `(docker import nested.tar nested:1 && docker run --rm nested:1 sh -c 'echo NESTED-OK uid=$(id -u)') > nested.txt 2>&1; echo "exit=$?" >> nested.txt`

	t.Run("without nesting", func(t *testing.T) {
		e.server(runScript("no-nesting", step))
		e.ok("run", "-y", "-m", "Run a container.", "--name", "plain")
		got := workspaceFile(t, e, e.runs()[0], "nested.txt")
		if strings.Contains(got, "NESTED-OK") || !strings.Contains(got, "Cannot connect to the Docker daemon") || strings.Contains(got, "exit=0") {
			t.Errorf("without nesting the agent's docker should fail to reach a daemon:\n%s", got)
		}
	})

	t.Run("with nesting", func(t *testing.T) {
		e.write(".airlock/config.toml", "[engine.incus]\nnesting = true\n")
		e.git("add", ".")
		e.git("commit", "-qm", "nesting")
		e.server(runScript("nesting", step))
		start := time.Now()
		e.ok("run", "-y", "-m", "Run a container.", "--name", "nested")
		t.Logf("a run with Docker in the sandbox took %s", time.Since(start).Round(100*time.Millisecond))
		var r store.Run
		for _, x := range e.runs() {
			if x.Name == "nested" {
				r = x
			}
		}
		got := workspaceFile(t, e, r, "nested.txt")
		if !strings.Contains(got, "NESTED-OK uid=0") || !strings.Contains(got, "exit=0") {
			t.Errorf("the nested container did not run:\n%s", got)
		}
	})
}

// nestingProject gives the test's repository a project image with Docker
// (built once: the same files make the same image) and a tiny image's
// root file system as a tarball.
func nestingProject(t *testing.T, e *env) {
	t.Helper()
	e.write(".airlock/Dockerfile", "ARG AIRLOCK_BASE\nFROM ${AIRLOCK_BASE}\nUSER root\n"+
		"RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker.io && rm -rf /var/lib/apt/lists/*\n"+
		"USER agent\n")
	var rootfs bytes.Buffer
	if err := sandboxtest.BusyboxRootfs(&rootfs, sandboxtest.BusyboxPath); err != nil {
		t.Fatal(err)
	}
	e.write("nested.tar", rootfs.String())
	e.git("add", ".")
	e.git("commit", "-qm", "a project image with Docker")
	start := time.Now()
	e.ok("image", "build")
	t.Logf("the project image with docker.io: %s", time.Since(start).Round(time.Second))
}

// workspaceFile reads a file the agent left in its run's workspace.
func workspaceFile(t *testing.T, e *env, r store.Run, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.state, "airlock", "runs", r.ID, "workspace", name))
	if err != nil {
		t.Fatalf("no %s from the sandbox: %v", name, err)
	}
	return string(data)
}
