package e2e

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/sandbox/sandboxtest"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// devBase is the locally built Debian base (the bootstrap image the suite's
// default image is built on): a dev container's Dockerfile starts FROM it,
// as a project's would start FROM its registry's image.
func devBase(t *testing.T) string {
	t.Helper()
	mirror, err := image.DetectMirror("/etc/apt")
	if err != nil {
		t.Fatal(err)
	}
	return image.BaseRef(mirror)
}

// devDockerfile is the dev container's Dockerfile; its first layers are
// the same in every test, so the engine's cache builds them once.
func devDockerfile(base, more string) string {
	return "FROM " + base + "\n" +
		"RUN mkdir -p /opt/devtool && echo 'devtool ready' > /opt/devtool/marker\n" +
		"ARG TOOL_VERSION=0\n" +
		"RUN echo \"$TOOL_VERSION\" > /opt/devtool/version\n" + more
}

// devFeature writes a local feature that records what its install script
// was given.
func devFeature(e *env, dir string) {
	e.write(dir+"/devcontainer-feature.json", `{
	"id": "greeter",
	"options": {"greeting": {"type": "string", "default": "hi"}},
	"containerEnv": {"GREETER_HOME": "/opt/greeter"},
}`)
	e.write(dir+"/install.sh", "#!/bin/sh\nset -e\nmkdir -p /opt/greeter\necho \"$GREETING\" > /opt/greeter/greeting\necho \"$(id -u) for $_REMOTE_USER\" > /opt/greeter/installed\n")
}

// imageBuild runs `airlock image build`, which may build for minutes.
func (e *env) imageBuild() result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := e.command(ctx, shared.bin, "image", "build")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		res.code = -1
		if x, ok := err.(interface{ ExitCode() int }); ok {
			res.code = x.ExitCode()
		}
	}
	return res
}

// A project's dev container is the base of its agent image: what its
// Dockerfile (with the build arguments) installs, its local feature, its
// containerEnv and its postCreateCommand are there for the agent, and an
// unchanged project is not rebuilt.
func TestDevcontainer(t *testing.T) {
	onEngines(t, rootfulEngines, devcontainerImage)
}

func devcontainerImage(t *testing.T, e *env) {
	e.write(".devcontainer/devcontainer.json", `// the team's dev container
{
	"name": "devtool",
	"build": {
		"dockerfile": "Dockerfile",
		"context": "..",
		"args": {"TOOL_VERSION": "1.2.3"},
	},
	"features": {"./greeter": {"greeting": "hello from the feature"}},
	"containerEnv": {"FOO": "bar", "TOOL_PATH": "${containerEnv:PATH}"},
	"postCreateCommand": "echo created in $(pwd) with FOO=$FOO > .post-create",
	"remoteUser": "vscode",
	"customizations": {"vscode": {"extensions": ["golang.go"]}},
}
`)
	e.write(".devcontainer/Dockerfile", devDockerfile(devBase(t), ""))
	devFeature(e, ".devcontainer/greeter")
	e.git("add", ".")
	e.git("commit", "-qm", "dev container")

	res := e.imageBuild()
	if res.code != 0 {
		t.Fatalf("image build: exit %d\n%s", res.code, tail(res.stderr, 40))
	}
	ref := strings.TrimSpace(res.stdout)
	if !strings.HasPrefix(ref, image.ProjectRepoPrefix+"repo:claude-") {
		t.Errorf("image build printed %q, want the project's Claude Code image", ref)
	}
	if !strings.Contains(res.stderr, "not applied: remoteUser (line 12): the agent runs as user agent") || strings.Contains(res.stderr, "customizations") {
		t.Errorf("image build does not list the ignored remoteUser (and only it):\n%s", tail(res.stderr, 40))
	}
	if again := e.imageBuild(); again.code != 0 || strings.TrimSpace(again.stdout) != ref || strings.Contains(again.stderr, "Building ") {
		t.Errorf("an unchanged project: exit %d, %q, want %s without building\n%s", again.code, again.stdout, ref, again.stderr)
	}

	e.server(testkit.Script{
		Name: "devcontainer",
		Steps: []testkit.Step{bashStep(`{ cat /opt/devtool/marker /opt/devtool/version /opt/greeter/greeting /opt/greeter/installed; ` +
			`echo "FOO=$FOO GREETER_HOME=$GREETER_HOME"; case "$TOOL_PATH" in */usr/bin*) echo base PATH;; esac; cat .post-create; } > seen.txt; git add seen.txt && git commit -qm seen`)},
		FinalText: "Done.",
	})
	e.ok("run", "-y", "-m", "Look at the dev container.", "--name", "dev")
	r := e.run("dev")
	want := "devtool ready\n1.2.3\nhello from the feature\n0 for agent\nFOO=bar GREETER_HOME=/opt/greeter\nbase PATH\ncreated in /workspace with FOO=bar"
	if got := e.git("show", r.Branch+":seen.txt"); got != want {
		t.Errorf("the agent saw\n%s\nwant\n%s", got, want)
	}
	if len(r.Setup) != 1 || !strings.HasPrefix(r.Setup[0], "echo created") || !r.SetupDone {
		t.Errorf("the run's setup %q (done %v), want the postCreateCommand", r.Setup, r.SetupDone)
	}
	if logs := e.ok("logs", "--setup", r.ID).stdout; !strings.Contains(logs, "$ echo created in") {
		t.Errorf("logs --setup:\n%s", logs)
	}

	// A base without apt (here a bare busybox root filesystem, as Alpine's
	// would be) is refused by the build, saying why.
	busybox(t, e)
	e.write(".devcontainer/devcontainer.json", `{"image": "`+sandboxtest.Image+`"}`)
	res = e.imageBuild()
	if res.code == 0 || !strings.Contains(res.stderr, "the dev container image has no apt-get") || !strings.Contains(res.stderr, "must be Debian or Ubuntu based") {
		t.Errorf("a base without apt: exit %d\n%s", res.code, tail(res.stderr, 20))
	}
}

// busybox makes sure the test's engine has the bare busybox image.
func busybox(t *testing.T, e *env) {
	t.Helper()
	eng, err := e.sandboxEngine()
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	if ok, err := eng.ImageExists(ctx, sandboxtest.Image); err != nil || ok {
		return
	}
	imp, ok := eng.(sandbox.ImageImporter)
	if !ok {
		t.Fatalf("%s imports no images", e.engine)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(sandboxtest.BusyboxRootfs(pw, sandboxtest.BusyboxPath)) }()
	if err := imp.ImportImage(ctx, pr, sandboxtest.Image); err != nil {
		t.Fatalf("import %s: %v", sandboxtest.Image, err)
	}
}
