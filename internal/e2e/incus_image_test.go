package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/sandbox"
	"github.com/airlock-dev/airlock/internal/testkit"
)

// TestIncusImageBuild builds the real agent image on Incus with the CLI
// (`airlock image build --engine incus`: the debootstrap base imported, the
// default Dockerfile run in a build instance that installs packages and
// Claude Code through the bridge's NAT, the result published), lists it,
// and runs the pinned Claude Code in an instance of it as the image's user,
// through its entrypoint (tini), with its environment.
func TestIncusImageBuild(t *testing.T) {
	if shared.skip != "" {
		t.Skip("no container engine: ", shared.skip)
	}
	inc := testkit.Incus(t) // fails on CI when Incus does not answer
	inc.UseBinary(shared.bin)

	cmd := exec.Command(shared.bin, "image", "build", "--engine", "incus")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+shared.configDir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("airlock image build --engine incus: %v\n%s", err, tail(stderr.String(), 40))
	}
	ref := strings.TrimSpace(stdout.String())
	t.Logf("built or found %s on Incus in %s", ref, time.Since(start).Round(time.Second))
	if !regexp.MustCompile(`^airlock-claude:[0-9a-f]{12}$`).MatchString(ref) {
		t.Fatalf("image build printed %q, want airlock-claude:<12 hex>", ref)
	}

	ls := exec.Command(shared.bin, "image", "ls", "--engine", "incus")
	ls.Env = cmd.Env
	out, err := ls.CombinedOutput()
	if err != nil {
		t.Fatalf("airlock image ls --engine incus: %v\n%s", err, out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ref) + `\s+[0-9a-f]{12}\s+\S+\s+\S+\s+current$`),
		regexp.MustCompile(`(?m)^airlock-claude:latest\s+[0-9a-f]{12}\s+\S+\s+\S+\s+latest$`),
		regexp.MustCompile(`(?m)^airlock-base:bookworm-[0-9a-f]{12}\s+[0-9a-f]{12}\s+\S+\s+\S+\s+base$`),
	} {
		if !want.Match(out) {
			t.Errorf("image ls lacks %s:\n%s", want, out)
		}
	}

	// The image as a sandbox would run it: Create applies its properties.
	got := incusOutput(t, inc, ref, `claude --version; id -un; echo "HOME=$HOME"; ps -o args= -p $PPID`)
	for _, want := range []string{agent.ClaudeVersion + " (Claude Code)", "\nagent\n", "HOME=/home/agent", "tini"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}

	t.Run("project image", func(t *testing.T) {
		// A project's .airlock/Dockerfile on top of the default image:
		// its USER, WORKDIR, ENV and entrypoint carry over, and airlock's
		// own files (the env file with its secrets) stay out of the image.
		repo := t.TempDir()
		if out, err := exec.Command("git", "init", "-q", repo).CombinedOutput(); err != nil {
			t.Fatalf("git init: %v\n%s", err, out)
		}
		dir := filepath.Join(repo, ".airlock")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("ARG AIRLOCK_BASE\nFROM ${AIRLOCK_BASE}\nUSER root\n"+
			"RUN apt-get --version | head -n 1 >/etc/project-marker\nCOPY . /opt/project/\nUSER agent\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("project file\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "env"), []byte("SECRET=do-not-ship\n"), 0o600)
		cmd := exec.Command(shared.bin, "image", "build", "--engine", "incus")
		cmd.Dir, cmd.Env = repo, append(os.Environ(), "XDG_CONFIG_HOME="+shared.configDir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("airlock image build --engine incus in a project: %v\n%s", err, tail(stderr.String(), 40))
		}
		pref := strings.TrimSpace(stdout.String())
		t.Cleanup(func() { inc.RemoveImage(context.Background(), pref) })
		if !strings.HasPrefix(pref, "airlock-project-") {
			t.Fatalf("project image build printed %q", pref)
		}
		got := incusOutput(t, inc, pref, `cat /etc/project-marker; ls -A /opt/project; id -un; pwd; claude --version; ps -o args= -p $PPID`)
		for _, want := range []string{"apt ", "\nDockerfile\nnotes.txt\nagent\n/workspace\n", agent.ClaudeVersion, "tini"} {
			if !strings.Contains(got, want) {
				t.Errorf("project image: output lacks %q:\n%s", want, got)
			}
		}
	})
}

// incusOutput runs script in an instance of ref made as a sandbox's
// container is (as the agent's user, the image's configuration applied)
// and returns its output.
func incusOutput(t *testing.T, inc *sandbox.Incus, ref, script string) string {
	t.Helper()
	ctx := context.Background()
	name := "airlock-test-incusimage-run"
	inc.Remove(ctx, name)
	defer inc.Remove(context.Background(), name)
	if _, err := inc.Create(ctx, sandbox.Spec{Name: name, Image: ref, User: "1000:1000", Cmd: []string{"sh", "-c", script}}); err != nil {
		t.Fatalf("Create from %s: %v", ref, err)
	}
	if err := inc.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	code, err := inc.Wait(wctx, name)
	var logs bytes.Buffer
	inc.Logs(ctx, name, &logs)
	if err != nil || code != 0 {
		t.Fatalf("%s in %s: exit %d, %v\n%s", script, ref, code, err, logs.String())
	}
	return logs.String()
}
