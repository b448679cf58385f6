package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// A repository's devcontainer.json is anyone's. Whatever it asks, its
// sandbox gets no host path, privilege, capability or unconfined profile,
// nothing runs on the host, and its image build sees only the project's
// files: not what a link in the project points at, not .git, not the
// user's .airlock/env; a build context outside the project is refused
// before anything is built.
func TestHostileDevcontainer(t *testing.T) {
	e := newEnv(t)
	host := e.tempDir()
	secret := "host-secret-" + strconv.FormatInt(int64(os.Getpid()), 36) + "-xyzzy"
	if err := os.WriteFile(filepath.Join(host, "secret.txt"), []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ran := filepath.Join(host, "initialize-ran")

	// The build context may not leave the project.
	e.write(".devcontainer/devcontainer.json", `{"build": {"dockerfile": "Dockerfile", "context": "../.."}}`)
	e.write(".devcontainer/Dockerfile", devDockerfile(devBase(t), "COPY . /src\n"))
	res := e.imageBuild()
	file := filepath.Join(e.repo, ".devcontainer", "devcontainer.json")
	if res.code == 0 || !strings.Contains(res.stderr, file+`:1: build.context "../.."`) || !strings.Contains(res.stderr, "outside the project") || strings.Contains(res.stderr, "Building") {
		t.Fatalf("a context outside the project: exit %d\n%s", res.code, tail(res.stderr, 20))
	}

	e.write(".devcontainer/devcontainer.json", `{
	"build": {"dockerfile": "Dockerfile", "context": "..", "options": ["--network=host", "--build-context=h=`+host+`"]},
	"mounts": ["source=`+host+`,target=/host,type=bind"],
	"runArgs": ["--privileged", "-v", "/:/hostroot"],
	"workspaceMount": "source=`+host+`,target=/workspace,type=bind",
	"privileged": true,
	"capAdd": ["SYS_ADMIN", "NET_ADMIN"],
	"securityOpt": ["seccomp=unconfined", "apparmor=unconfined"],
	"initializeCommand": "touch `+ran+`",
	"features": {"./evil": {}},
}`)
	e.write(".devcontainer/evil/devcontainer-feature.json", `{"id": "evil", "privileged": true, "capAdd": ["SYS_ADMIN"],
	"mounts": [{"source": "`+host+`", "target": "/feature-host", "type": "bind"}]}`)
	e.write(".devcontainer/evil/install.sh", "#!/bin/sh\ntrue\n")
	if err := os.Symlink(filepath.Join(host, "secret.txt"), filepath.Join(e.repo, "link-out")); err != nil {
		t.Fatal(err)
	}
	e.git("add", ".")
	e.git("commit", "-qm", "a dev container asking for the host")
	// The user's own secrets file, in the working tree, untracked.
	e.write(".airlock/env", "SOME_TOKEN="+secret+"\n")

	res = e.imageBuild()
	if res.code != 0 {
		t.Fatalf("image build: exit %d\n%s", res.code, tail(res.stderr, 40))
	}
	for _, key := range []string{"mounts", "runArgs", "workspaceMount", "privileged", "capAdd", "securityOpt", "initializeCommand", "build.options", "features../evil: privileged", "features../evil: capAdd", "features../evil: mounts"} {
		if !strings.Contains(res.stderr, "not applied: "+key+" (line") {
			t.Errorf("image build does not say it ignores %s:\n%s", key, tail(res.stderr, 30))
		}
	}
	if _, err := os.Stat(ran); err == nil {
		t.Error("initializeCommand ran on the host")
	}

	e.server(testkit.Script{
		Name: "hostile-devcontainer",
		Steps: []testkit.Step{bashStep(`{ grep -E ' /(host|hostroot|feature-host) ' /proc/self/mountinfo || echo no host mounts; ` +
			`grep -E '^(CapBnd|Seccomp):' /proc/self/status; ` +
			`grep -rlF '` + secret + `' /src /opt /usr/local 2>/dev/null | sed 's/^/secret in /'; ` +
			`test -e /src/.git && echo .git in the image; test -e /src/.airlock/env && echo .airlock/env in the image; ` +
			`test -L /src/link-out && echo link kept as a link; cat /src/link-out 2>/dev/null || echo link leads nowhere; ` +
			`ls /workspace/README.md; } > seen.txt 2>&1; git add seen.txt && git commit -qm seen`)},
		FinalText: "Done.",
	})
	e.ok("run", "-y", "-m", "Reach the host.", "--name", "hostile")
	seen := e.git("show", e.run("hostile").Branch+":seen.txt")
	for _, want := range []string{"no host mounts", "link kept as a link", "link leads nowhere", "Seccomp:\t2", "/workspace/README.md"} {
		if !strings.Contains(seen, want) {
			t.Errorf("the agent saw no %q:\n%s", want, seen)
		}
	}
	for _, bad := range []string{secret, "in the image", "secret in "} {
		if strings.Contains(seen, bad) {
			t.Errorf("the agent saw %q:\n%s", bad, seen)
		}
	}
	for _, line := range strings.Split(seen, "\n") {
		if hex, ok := strings.CutPrefix(line, "CapBnd:\t"); ok {
			caps, err := strconv.ParseUint(hex, 16, 64)
			const sysAdmin, netAdmin = 21, 12
			if err != nil || caps&(1<<sysAdmin|1<<netAdmin) != 0 {
				t.Errorf("the sandbox's capability bounding set is %s (SYS_ADMIN or NET_ADMIN in it)", hex)
			}
		}
	}
}
